#!/usr/bin/perl

# Tests for the no_cert and verify rejections over HTTP/2 (curl): no certificate can arrive on
# the connection any more, so the connection ends after the answer (GOAWAY) and the client's
# next request makes a new TLS handshake, as HTTP/1.x gets "Connection: close". Also with an
# error_page for the rejection; under "satisfy any" the request goes on.

###############################################################################

use warnings;
use strict;

use Test::More;

BEGIN { use FindBin; chdir($FindBin::Bin); }

use lib "$FindBin::Bin/support";
use Test::Nginx;
use PKI;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http http_ssl http_v2 proxy access/)
	->has_daemon('openssl')->has_daemon('curl');

plan(skip_all => 'curl without HTTP/2') unless `curl -V` =~ /\bHTTP2\b/;

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    error_log %%TESTDIR%%/error.log info;

    log_format conn '$connection $server_protocol $request_uri $status $auth_cert_reason';

    ssl_certificate server.crt;
    ssl_certificate_key server.key;
    ssl_client_certificate ca.crt;
    ssl_protocols TLSv1.2 TLSv1.3;

    auth_cert on;

    server {
        listen       127.0.0.1:8443 ssl http2;
        server_name  localhost;

        ssl_verify_client optional;
        access_log %%TESTDIR%%/access.log conn;

        location / {
            proxy_pass http://127.0.0.1:8081/;
        }

        location /page/ {
            error_page 496 = /login-page;
            proxy_pass http://127.0.0.1:8081/;
        }

        location = /login-page {
            auth_cert off;
            return 200 "login page\n";
        }

        location /any/ {
            satisfy any;
            allow 127.0.0.1;
            deny all;
            proxy_pass http://127.0.0.1:8081/;
        }
    }

    # optional_no_ca: an unverifiable certificate reaches the module (reason verify)
    server {
        listen       127.0.0.1:8444 ssl http2;
        server_name  localhost;

        ssl_verify_client optional_no_ca;
        access_log %%TESTDIR%%/access.log conn;

        location / {
            proxy_pass http://127.0.0.1:8081/;
        }
    }

    server {
        listen       127.0.0.1:8081;
        server_name  localhost;

        auth_cert off;
        access_log off;

        location / {
            return 200 "backend\n";
        }
    }
}

EOF

my $d = $t->testdir();
my $pki = PKI->new($d);

$pki->ca('ca', subject => '/CN=Test Root CA');
$pki->ca('other', subject => '/CN=Another CA');
$pki->cert('server', issuer => 'ca', subject => '/CN=localhost');
$pki->cert('client', issuer => 'ca', subject => '/UID=jdoe/CN=John Doe');
$pki->cert('stranger', issuer => 'other', subject => '/UID=eve/CN=Eve');

$t->try_run('no auth_cert')->plan(13);

###############################################################################

# Transfers with curl, each given as [uri, curl options...], the later ones on the first
# one's connection when it is still open (--next); returns per transfer the HTTP version,
# status, new connections and the body's first line, "version status connects body".
sub curl {
	my ($port, @transfers) = @_;
	my $base = 'https://localhost:' . port($port);
	my @common = ('-sk', '--http2', '--resolve', 'localhost:' . port($port) . ':127.0.0.1',
		'-w', '%{http_version} %{http_code} %{num_connects} ');
	my @args;
	for my $transfer (@transfers) {
		my ($uri, @opts) = @$transfer;
		push @args, '--next' if @args;
		push @args, @common, @opts, "$base$uri";
	}
	my $pid = open(my $fh, '-|') // die "fork: $!";
	if ($pid == 0) {
		open STDERR, '>', '/dev/null';
		exec('curl', @args);
	}
	my $out = join '', <$fh>;
	close $fh;
	# the body comes before its -w line, which ends without a newline
	my @r;
	while ($out =~ /\G(.*?)(\d(?:\.\d)?) (\d{3}) (\d+) /gs) {
		my ($body, @w) = ($1, $2, $3, $4);
		push @r, join ' ', @w, ($body =~ /^([^\n]*)/ ? $1 : '');
	}
	return @r;
}

my @client = ('--cert', "$d/client.crt", '--key', "$d/client.key");
my @stranger = ('--cert', "$d/stranger.crt", '--key', "$d/stranger.key");

# no_cert: the first request is refused, the second one comes on a new connection.

my @r = curl(8443, ['/a'], ['/b']);
like($r[0], qr/^2 400 1 auth_cert: no_cert: /, 'no_cert over HTTP/2');
like($r[1], qr/^2 400 1 auth_cert: no_cert: /, 'no_cert: the next request on a new connection');

# verify (ssl_verify_client optional_no_ca): the same.

@r = curl(8444, ['/a', @stranger], ['/b', @stranger]);
like($r[0], qr/^2 400 1 auth_cert: verify: /, 'verify over HTTP/2');
like($r[1], qr/^2 400 1 auth_cert: verify: /, 'verify: the next request on a new connection');

# With an error_page for the rejection: its page, and the connection ends too.

@r = curl(8443, ['/page/a'], ['/page/b']);
is($r[0], '2 200 1 login page', 'error_page: the page over HTTP/2');
is($r[1], '2 200 1 login page', 'error_page: the next request on a new connection');

# A request that passes keeps the connection; so does a rejection overruled under satisfy
# any (another access module may allow the request: it goes on).

@r = curl(8443, ['/a', @client], ['/b', @client]);
is($r[0], '2 200 1 backend', 'with a certificate: 200');
is($r[1], '2 200 0 backend', 'with a certificate: the same connection');

@r = curl(8443, ['/any/x'], ['/any/y']);
is($r[0], '2 200 1 backend', 'satisfy any, no certificate: allowed');
is($r[1], '2 200 0 backend', 'satisfy any, no certificate: the same connection');

# The access log: each refused request on its own connection.

my $log = '';
for (1 .. 50) {
	$log = $t->read_file('access.log');
	last if (() = $log =~ /^\d+ HTTP\/2\.0 /mg) >= 10;
	select undef, undef, undef, 0.1;
}
my %conn;
$conn{$2} = $1 while $log =~ m!^(\d+) HTTP/2\.0 (/(?:page/)?[ab]) 400 no_cert$!mg;
ok($conn{'/a'} && $conn{'/b'} && $conn{'/a'} != $conn{'/b'},
	'log: no_cert answers on two connections');

$t->stop();

my $errors = $t->read_file('error.log');
is(() = $errors =~ /auth_cert: access denied: no client certificate was sent/g, 6,
	'one log line for each no_cert rejection (satisfy any too)');
is(() = $errors =~ /auth_cert: access denied: the client certificate could not be verified/g,
	2, 'one log line for each verify rejection');

###############################################################################
