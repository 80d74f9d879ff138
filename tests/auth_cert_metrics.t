#!/usr/bin/perl

# Tests for auth_cert_zone and auth_cert_metrics: counters in the shared zone, summed over two
# workers, read with prometheus_client's parser (an implementation independent of the module);
# kept across a reload; nginx -t refuses auth_cert_metrics without a zone and bad zones.

###############################################################################

use warnings;
use strict;

use Test::More;

BEGIN { use FindBin; chdir($FindBin::Bin); }

use lib "$FindBin::Bin/support";
use Test::Nginx;
use PKI;
use Test::Nginx::AuthCert qw/ cert_dir get request connect_tls status body header
	config_errors /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http http_ssl access/)
	->has_daemon('openssl')->has_daemon('python3');

plan(skip_all => 'no prometheus_client')
	unless system("python3 -c 'import prometheus_client' 2>/dev/null") == 0;

my $conf = <<'EOF';

%%TEST_GLOBALS%%

daemon off;
worker_processes 2;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    error_log %%TESTDIR%%/error.log info;

    auth_cert_zone auth_cert:1m;

    ssl_certificate server.crt;
    ssl_certificate_key server.key;
    ssl_client_certificate ca.crt;
    auth_cert_token_key ed.key kid=ed1;

    server {
        listen       127.0.0.1:8443 ssl;
        server_name  localhost;

        ssl_verify_client optional;
        auth_cert on;

        location / {
            try_files /index.html =404;
        }

        location /eku {
            auth_cert_eku 1.3.6.1.4.1.99999.1;
            try_files /index.html =404;
        }

        location = /login {
            auth_cert_login;
        }
    }

    # A short age, session tickets: stale requests and stale tickets.
    server {
        listen       127.0.0.1:8444 ssl;
        server_name  localhost;

        ssl_verify_client optional;
        ssl_session_cache off;
        ssl_session_tickets on;
        auth_cert on;
        auth_cert_max_age 2s;

        location / {
            try_files /index.html =404;
        }
    }

    server {
        listen       127.0.0.1:8081;
        server_name  localhost;

        auth_cert on;
        auth_cert_header X-Client-Cert from=127.0.0.1 ca=ca.crt;

        location / {
            try_files /index.html =404;
        }

        location /untrusted {
            auth_cert_header X-Client-Cert from=192.0.2.0/24 ca=ca.crt;
            try_files /index.html =404;
        }
    }

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        location = /metrics {
            allow 127.0.0.1;
            deny all;
            auth_cert_metrics;
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
$pki->cert('client', issuer => 'ca', subject => '/UID=jdoe/CN=John Doe',
	ext => ['extendedKeyUsage = clientAuth']);
$pki->run_openssl("genpkey -algorithm ED25519 -out $d/ed.key");
$t->write_file('index.html', "ok\n");

$t->try_run('no auth_cert_zone')->plan(42);

###############################################################################

# The samples of /metrics as prometheus_client parses them: name{labels} => value; undef
# when the text does not parse.
sub metrics {
	my $r = get('/metrics');
	return undef unless status($r) eq '200';
	my $file = "$d/metrics.txt";
	open my $fh, '>', $file or die "$file: $!\n";
	print $fh body($r);
	close $fh;
	my $out = `python3 $FindBin::Bin/support/prometheus_samples.py < $file`;
	return undef if $?;
	return { map { /^(\S+) (\S+)$/ ? ($1, $2) : () } split /\n/, $out };
}

# How much each named sample grew between two readings.
sub grew {
	my ($before, $after, $name) = @_;
	return ($after->{$name} // 'none') - ($before->{$name} // 0);
}

my $ok = 'nginx_auth_cert_requests_total{reason="",status="ok"}';
my $no_cert = 'nginx_auth_cert_requests_total{reason="no_cert",status="none"}';
my $eku = 'nginx_auth_cert_requests_total{reason="eku",status="denied"}';
my $stale = 'nginx_auth_cert_requests_total{reason="stale",status="stale"}';
my $reauth = 'nginx_auth_cert_reauth_total{}';
my $refused = 'nginx_auth_cert_resumption_refused_total{reason="stale"}';
my $signed = 'nginx_auth_cert_tokens_signed_total{alg="EdDSA"}';
my $age_count = 'nginx_auth_cert_auth_age_seconds_count{}';
my $age_1 = 'nginx_auth_cert_auth_age_seconds_bucket{le="1"}';
my $age_inf = 'nginx_auth_cert_auth_age_seconds_bucket{le="+Inf"}';
my %fwd = map { $_ => "nginx_auth_cert_forwarded_total{result=\"$_\"}" }
	qw/ accepted rejected untrusted arg /;

my $r = get('/metrics');
is(status($r), 200, 'metrics');
like(header($r, 'Content-Type'), qr!^text/plain; version=0\.0\.4!, 'metrics content type');
is(header($r, 'Cache-Control'), 'no-store', 'metrics not cached');

my $m0 = metrics();
ok($m0, 'parsed by prometheus_client');
is($m0->{$ok}, 0, 'no request yet');
# ok, and the 15 reasons (revoked included).
is(scalar(grep { /^nginx_auth_cert_requests_total\{/ } keys %$m0), 16,
	'a series per status and reason');
ok(grep({ /^nginx_auth_cert_requests_total\{.*reason="revoked"/ } keys %$m0),
	'a series for revoked');
is(scalar(grep { /^nginx_auth_cert_resumption_refused_total\{/ } keys %$m0), 4,
	'a series per refusal');

# Requests of each kind, each on a new connection, spread over both workers.

my $n = 0;
$n += status(get('/', port => 8443, cert => 'client')) eq '200' for 1 .. 12;
is($n, 12, 'authenticated requests');
$n = 0;
$n += status(get('/', port => 8443, SSL => 1)) eq '400' for 1 .. 5;
is($n, 5, 'requests without a certificate');
$n = 0;
$n += status(get('/eku', port => 8443, cert => 'client')) eq '403' for 1 .. 3;
is($n, 3, 'requests refused by the policy');
is(status(get('/login', port => 8443, cert => 'client')), 200, 'login');

my $client = $pki->escaped('client.crt');
is(status(get('/', port => 8081, headers => ["X-Client-Cert: $client"])), 200,
	'forwarded certificate');
is(status(get('/', port => 8081, headers => ['X-Client-Cert: garbage'])), 403,
	'forwarded garbage');
is(status(get('/untrusted', port => 8081, headers => ["X-Client-Cert: $client"])), 403,
	'forwarded from an untrusted peer');

my $m1 = metrics();
is(grew($m0, $m1, $ok), 14, 'ok counted over both workers');
is(grew($m0, $m1, $no_cert), 5, 'no_cert counted');
is(grew($m0, $m1, 'nginx_auth_cert_requests_total{reason="network",status="invalid"}'), 1,
	'network counted');
is(grew($m0, $m1, $eku), 3, 'eku counted');
is(grew($m0, $m1, 'nginx_auth_cert_requests_total{reason="header",status="invalid"}'), 1,
	'header counted');
is(grew($m0, $m1, $signed), 1, 'token signed counted');
is(grew($m0, $m1, $fwd{accepted}), 1, 'forwarded accepted');
is(grew($m0, $m1, $fwd{rejected}), 1, 'forwarded rejected');
is(grew($m0, $m1, $fwd{untrusted}), 1, 'forwarded untrusted');
is(grew($m0, $m1, $age_count), 13, 'ages of TLS authentications');
is(grew($m0, $m1, $age_1), 13, 'all fresh');
is(grew($m0, $m1, $age_inf), 13, 'histogram +Inf bucket');

# A stale request on a kept connection: a re-authentication redirect; its TLS 1.2 ticket
# is then refused at resumption.

# (openssl s_client: IO::Socket::SSL does not offer a session past its lifetime.)
sub s_client {
	my ($session) = @_;
	my $port = port(8444);
	my $out = `echo | openssl s_client -connect 127.0.0.1:$port -tls1_2 -no_ign_eof \\
		-cert $d/client.crt -key $d/client.key $session 2>&1`;
	return $out =~ /^(New|Reused),/m ? $1 : "none: $out";
}

is(s_client("-sess_out $d/session"), 'New', 'fresh, session kept');
my $kept = connect_tls(8444, cert => 'client', version => 'TLSv1_2');
is(status(request($kept, '/')), 200, 'fresh, connection kept');
sleep 3;
is(status(request($kept, '/')), 307, 'stale: re-authentication');
is(s_client("-sess_in $d/session"), 'New', 'stale ticket not resumed');

my $m2 = metrics();
is(grew($m1, $m2, $reauth), 1, 're-authentication counted');
is(grew($m1, $m2, $stale), 1, 'stale request counted');
is(grew($m1, $m2, $refused), 1, 'refused resumption counted');

# Never an identity or a serial in the text.
$r = body(get('/metrics'));
my $serial = $pki->serial('client');
ok($r !~ /jdoe|John|\Q$serial\E/i, 'no identity or serial');

# A reload with the same zone keeps the counters.

$t->reload();
for (1 .. 50) {
	last if $t->read_file('error.log') =~ /exited with code/;
	select undef, undef, undef, 0.1;
}
my $m3 = metrics();
is(grew($m2, $m3, $ok), 0, 'counters kept across a reload');

# Configuration errors.

(my $no_zone = $conf) =~ s/auth_cert_zone auth_cert:1m;//;
like(config_errors($t, 'nozone', $no_zone),
	qr/"auth_cert_metrics" in .* requires "auth_cert_zone"/, 'metrics without a zone');
(my $small = $conf) =~ s/auth_cert:1m/auth_cert:16k/;
like(config_errors($t, 'small', $small), qr/it must be from 32k/, 'zone too small');
(my $smallest = $conf) =~ s/auth_cert:1m/auth_cert:32k/;
is(config_errors($t, 'smallest', $smallest), '', 'the smallest zone');
(my $content = $conf) =~ s/(auth_cert_metrics;)/$1 auth_cert_jwks;/;
like(config_errors($t, 'content', $content), qr/exclude each other/, 'metrics and jwks');
(my $twice = $conf) =~ s/(auth_cert_zone auth_cert:1m;)/$1 $1/;
like(config_errors($t, 'twice', $twice), qr/duplicate/, 'zone twice');
(my $in_server = $conf) =~ s/(auth_cert on;\n        auth_cert_max_age)/auth_cert_zone b:1m; $1/;
like(config_errors($t, 'server', $in_server), qr/"auth_cert_zone" directive is not allowed/,
	'zone in a server');

###############################################################################
