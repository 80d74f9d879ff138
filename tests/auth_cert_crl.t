#!/usr/bin/perl

# Tests for auth_cert_crl: a CRL file replaced while connections live reaches their next
# request without a reload (HTTP/1.1 keep-alive, HTTP/2, a forwarded certificate); a CRL whose
# signature does not verify fails `nginx -t`, and at run time is ignored with an error line
# while the CRLs in force stay; a CRL past its nextUpdate is applied with a warning.

###############################################################################

use warnings;
use strict;

use Test::More;

use IO::Socket::IP;

BEGIN { use FindBin; chdir($FindBin::Bin); }

use lib "$FindBin::Bin/support";
use Test::Nginx;
use PKI;
use Test::Nginx::AuthCert qw/ cert_dir get request connect_tls status body config_errors /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http http_ssl http_v2 proxy/)->has_daemon('openssl');

my $conf = <<'EOF';

%%TEST_GLOBALS%%

daemon off;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    error_log %%TESTDIR%%/error.log info;

    ssl_certificate server.crt;
    ssl_certificate_key server.key;
    # TLS 1.3 explicitly: nginx before 1.23.4 allows TLS 1.2 at most by default.
    ssl_protocols TLSv1.2 TLSv1.3;

    auth_cert_crl crl.pem refresh=1s;

    proxy_set_header X-Auth "identity=$auth_cert_identity reason=$auth_cert_reason";

    server {
        # The listen parameter, not "http2 on": also nginx before 1.25.1.
        listen       127.0.0.1:8443 ssl http2;
        server_name  localhost;

        ssl_client_certificate ca.crt;
        ssl_verify_client optional;
        ssl_session_cache shared:SSL:1m;

        auth_cert on;

        # a slow response keeps an HTTP/2 connection busy past a CRL change
        location /slow/ {
            limit_rate 1000;
            alias %%TESTDIR%%/;
        }

        location / {
            proxy_pass http://127.0.0.1:8081/;
        }

        location /optional/ {
            auth_cert optional;
            proxy_pass http://127.0.0.1:8081/;
        }
    }

    # Sessions resumed from nginx's shared cache only.
    server {
        listen       127.0.0.1:8444 ssl;
        server_name  localhost;

        ssl_client_certificate ca.crt;
        ssl_verify_client optional;
        ssl_session_cache shared:SSL:1m;
        ssl_session_tickets off;

        auth_cert on;

        location / {
            proxy_pass http://127.0.0.1:8081/;
        }
    }

    # The load balancer's network is 127.0.0.0/8 here.
    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        auth_cert on;
        auth_cert_header X-Client-Cert from=127.0.0.0/8 ca=ca.crt;

        location / {
            proxy_pass http://127.0.0.1:8081/;
        }
    }

    server {
        listen       127.0.0.1:8081;
        server_name  localhost;

        location / {
            return 200 "$http_x_auth\n";
        }
    }
}

EOF
$t->write_file_expand('nginx.conf', $conf);

my $d = $t->testdir();
my $pki = PKI->new($d);
cert_dir($d);

$pki->ca('ca', subject => '/CN=Test Root CA');
$pki->cert('server', issuer => 'ca', subject => '/CN=localhost');
$pki->cert('client', issuer => 'ca', subject => '/CN=alice');
$pki->cert('other', issuer => 'ca', subject => '/CN=bob');
# Another CA with the same name: its CRLs must not verify.
$pki->ca('evil', subject => '/CN=Test Root CA');
# A trusted CA whose key usage does not allow signing CRLs.
$pki->ca('nosign', subject => '/CN=No CRL Sign CA', key_usage => 'critical, keyCertSign');
$pki->bundle('trusted.pem', 'ca.crt', 'nosign.crt');

$pki->crl('crl-empty.pem', issuer => 'ca');
$pki->revoke('client', issuer => 'ca', reason => 'keyCompromise');
$pki->crl('crl-revoked.pem', issuer => 'ca');
$pki->crl('crl-outdated.pem', issuer => 'ca',
	last_update => PKI::when(-7200), next_update => PKI::when(-3600));
$pki->crl('crl-evil.pem', issuer => 'evil');
$pki->crl('crl-nosign.pem', issuer => 'nosign');
$t->write_file('slow.txt', 'x' x 3000);

# Replaces crl.pem at once, as a CRL publisher should. (Not with $t: a named sub closing over
# it would keep it alive past the end of the test, when its final checks can no longer report.)
sub install {
	my ($file) = @_;
	open my $fh, '>', "$d/crl.new" or die "crl.new: $!";
	print $fh $pki->pem($file);
	close $fh;
	rename("$d/crl.new", "$d/crl.pem") or die "rename: $!";
}

install('crl-empty.pem');

$t->try_run('no auth_cert_crl')->plan(36);

###############################################################################

my $serial = $pki->serial('client');
my $escaped = $pki->escaped('client.crt');


# Waits past the refresh interval of the workers.
sub past_refresh { select undef, undef, undef, 1.5; }

# Sessions to resume after the revocation: tickets (TLS 1.2 and 1.3) and the shared cache,
# of the certificate to be revoked and of another one.
require IO::Socket::SSL;
my @sessions = map {
	my ($name, $port, $version, $cert) = @$_;
	my $cache = IO::Socket::SSL::Session_Cache->new(4);
	my $s = connect_tls($port, cert => $cert, version => $version, cache => $cache);
	# read a response: a TLS 1.3 ticket comes after the handshake
	my $r = request($s, '/');
	# (kept open: a connection dropped without a shutdown makes its session unusable)
	{ name => $name, port => $port, version => $version, cert => $cert, cache => $cache,
		status => status($r), socket => $s };
} (['TLS 1.2 ticket', 8443, 'TLSv1_2', 'client'], ['TLS 1.3 ticket', 8443, 'TLSv1_3', 'client'],
	['TLS 1.2 shared cache', 8444, 'TLSv1_2', 'client'],
	['TLS 1.3 ticket of another certificate', 8443, 'TLSv1_3', 'other'],
	['TLS 1.2 shared cache of another certificate', 8444, 'TLSv1_2', 'other']);
is(join(' ', map { $_->{status} } @sessions), '200 200 200 200 200', 'sessions made');

my $tls = connect_tls(8443, cert => 'client');
my $r = request($tls, '/');
is(status($r), 200, 'keep-alive TLS: good certificate passes');

my $plain = IO::Socket::IP->new(PeerAddr => '127.0.0.1:' . port(8080), Timeout => 5);
$r = request($plain, '/', 'X-Client-Cert' => $escaped);
is(status($r), 200, 'keep-alive forwarded: good certificate passes');

# HTTP/2: a slow transfer, then a request on the same connection once the CRL has changed.
my ($curl_pid, @curl_out);
my $port = port(8443);
my $h2 = `curl -V 2>/dev/null` =~ /\bHTTP2\b/;
if ($h2) {
	$curl_pid = fork() // die "fork: $!";
	if ($curl_pid == 0) {
		open STDOUT, '>', "$d/curl.out" or die;
		open STDERR, '>', "$d/curl.err" or die;
		exec('curl', '-sk', '--http2', '--resolve', "localhost:$port:127.0.0.1",
			'--cert', "$d/client.crt", '--key', "$d/client.key",
			'-w', '%{http_version} %{http_code} %{num_connects}\n',
			'-o', "$d/slow.body", "https://localhost:$port/slow/slow.txt",
			'-o', "$d/h2.body", "https://localhost:$port/h2");
	}
}

select undef, undef, undef, 0.5;
install('crl-revoked.pem');
past_refresh();

$r = request($tls, '/');
is(status($r), 403, 'keep-alive TLS: revoked on the next request, without a reload');
like(body($r), qr/^auth_cert: revoked: the client certificate is revoked$/m,
	'keep-alive TLS: body');

$r = request($plain, '/', 'X-Client-Cert' => $escaped);
is(status($r), 403, 'keep-alive forwarded: revoked');
like(body($r), qr/^auth_cert: revoked: /m, 'keep-alive forwarded: body');

like(get('/', cert => 'other'), qr/identity=bob reason=\n/, 'another certificate passes');
like(get('/optional/', cert => 'client'), qr/identity= reason=revoked\n/,
	'$auth_cert_reason is revoked');
is(status(get('/', cert => 'client')), 403, 'revoked on a new connection');

# The sessions of the revoked certificate are not resumed: the full handshake that follows
# presents the certificate, which the request then meets revoked. Other sessions resume.
for my $c (@sessions) {
	my $s = connect_tls($c->{port}, cert => $c->{cert}, version => $c->{version},
		cache => $c->{cache});
	my $revoked = $c->{cert} eq 'client';
	is($s && $s->get_session_reused ? 'resumed' : 'full', $revoked ? 'full' : 'resumed',
		"$c->{name}: " . ($revoked ? 'not resumed' : 'resumed'));
	is(status(request($s, '/')), $revoked ? 403 : 200, "$c->{name}: request");
}

SKIP: {
	skip 'curl without HTTP/2', 3 unless $h2;
	waitpid($curl_pid, 0);
	my @w = split /\n/, $t->read_file('curl.out');
	is($w[0], '2 200 1', 'HTTP/2: slow transfer authenticated');
	is($w[1], '2 403 0', 'HTTP/2: next stream on the same connection revoked');
	like($t->read_file('h2.body'), qr/^auth_cert: revoked: /, 'HTTP/2: body');
}

my $log = $t->read_file('error.log');
like($log, qr/access denied: the client certificate is revoked \(serial $serial revoked on \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\), reason: revoked, identity: "alice", serial: $serial/,
	'log line with serial and revocation date');
unlike($log, qr/\[(error|warn|alert|crit|emerg)\].*auth_cert/, 'no error or warning so far');

# A CRL signed by another key (of a CA with the same name) is refused at run time, and the
# CRLs in force stay.
install('crl-evil.pem');
past_refresh();

is(status(get('/', cert => 'client')), 403, 'bad CRL at run time: previous CRL applies');
$r = request($tls, '/');
is(status($r), 403, 'bad CRL at run time: keep-alive still revoked');
$log = $t->read_file('error.log');
is(() = $log =~ /\[error\].*"auth_cert_crl" "[^"]*crl\.pem" refused: the CRL of "CN=Test Root CA" does not verify against the trusted CAs; the CRLs in force stay/g,
	1, 'bad CRL at run time: one error line');

# A CRL past its nextUpdate is applied, with a warning.
install('crl-outdated.pem');
past_refresh();

is(status(get('/', cert => 'client')), 403, 'outdated CRL still applied');
like($t->read_file('error.log'),
	qr/\[warn\].*"auth_cert_crl" "[^"]*crl\.pem": the CRL of "CN=Test Root CA" is past its nextUpdate/,
	'outdated CRL: warning');

# At load time, a CRL that does not verify, or does not parse, fails the configuration.
$t->write_file('evil.conf.pem', $pki->pem('crl-evil.pem'));
my $err = config_errors($t, 'evil', $conf =~ s/crl\.pem/evil.conf.pem/r);
like($err, qr/"auth_cert_crl" "[^"]*evil\.conf\.pem": the CRL of "CN=Test Root CA" does not verify against the trusted CAs/,
	'nginx -t: CRL signed by an untrusted key');

my $trusted = $conf =~ s/ssl_client_certificate ca\.crt/ssl_client_certificate trusted.pem/gr;
$err = config_errors($t, 'nosign', $trusted =~ s/crl\.pem/crl-nosign.pem/r);
like($err, qr/"auth_cert_crl" "[^"]*crl-nosign\.pem": the CRL of "CN=No CRL Sign CA" does not verify against the trusted CAs/,
	'nginx -t: CRL of a CA without cRLSign');
is(config_errors($t, 'trusted', $trusted =~ s/crl\.pem/crl-revoked.pem/r), '',
	'nginx -t: CRL of a trusted CA');

$t->write_file('garbage.pem', "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n");
$err = config_errors($t, 'garbage', $conf =~ s/crl\.pem/garbage.pem/r);
like($err, qr/"auth_cert_crl" "[^"]*garbage\.pem": CRL #1: malformed CRL/,
	'nginx -t: CRL that does not parse');

$err = config_errors($t, 'missing', $conf =~ s/crl\.pem/missing.pem/r);
like($err, qr/"auth_cert_crl" "[^"]*missing\.pem": No such file/,
	'nginx -t: missing file');

$err = config_errors($t, 'refresh', $conf =~ s/refresh=1s/refresh=0/r);
like($err, qr/invalid value "refresh=0" in "auth_cert_crl" directive/,
	'nginx -t: bad refresh');

###############################################################################
