#!/usr/bin/perl

# Tests for auth_cert_max_age over HTTP/2 (curl): a stale request on a long-lived HTTP/2
# connection is redirected, the whole connection is closed after the response (GOAWAY), and
# the redirect is followed on a new connection with a new TLS handshake.

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

my $t = Test::Nginx->new()->has(qw/http http_ssl http_v2 proxy/)
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

    log_format age '$connection $server_protocol $request_uri $status '
                   '$ssl_protocol $ssl_session_reused $auth_cert_auth_time';

    ssl_certificate server.crt;
    ssl_certificate_key server.key;
    ssl_client_certificate ca.crt;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_verify_client optional;
    ssl_session_ticket_key ticket.key;

    proxy_set_header X-Age "reused=$ssl_session_reused auth_time=$auth_cert_auth_time status=$auth_cert_status";

    server {
        # The listen parameter, not "http2 on": also nginx before 1.25.1.
        listen       127.0.0.1:8443 ssl http2;
        server_name  localhost;

        access_log %%TESTDIR%%/access.log age;

        auth_cert on;
        auth_cert_max_age 2s;

        # a slow response keeps the connection busy until the authentication is stale
        location /slow/ {
            limit_rate 1000;
            alias %%TESTDIR%%/;
        }

        location / {
            proxy_pass http://127.0.0.1:8081/;
        }

        location /reject/ {
            auth_cert_stale reject;
            proxy_pass http://127.0.0.1:8081/;
        }
    }

    server {
        listen       127.0.0.1:8081;
        server_name  localhost;

        access_log off;

        location / {
            return 200 "$http_x_age\n";
        }
    }
}

EOF

my $d = $t->testdir();
my $pki = PKI->new($d);

$pki->ca('ca', subject => '/CN=Test Root CA');
$pki->cert('server', issuer => 'ca', subject => '/CN=localhost');
$pki->cert('client', issuer => 'ca', subject => '/UID=jdoe/CN=John Doe');
$t->write_file('ticket.key', '1' x 80);
$t->write_file('slow.txt', 'x' x 4000);

$t->try_run('no auth_cert')->plan(15);

###############################################################################

my $port = port(8443);
my $base = "https://localhost:$port";
my @curl = ('curl', '-sk', '--http2', '-v', '--resolve', "localhost:$port:127.0.0.1",
	'--cert', "$d/client.crt", '--key', "$d/client.key",
	'-w', '%{http_version} %{http_code} %{num_connects} %{num_redirects}\n');

# Two transfers on one connection: a slow one, then one sent once the authentication is
# stale, with redirects followed. TLS 1.2 and TLS 1.3 run side by side.
my %tls = ('1.2' => ['--tlsv1.2', '--tls-max', '1.2'], '1.3' => ['--tlsv1.3']);
my @pids;
for my $v (sort keys %tls) {
	my $pid = fork() // die "fork: $!";
	if ($pid == 0) {
		open STDOUT, '>', "$d/curl-$v.out" or die;
		open STDERR, '>', "$d/curl-$v.err" or die;
		exec(@curl, @{$tls{$v}}, '-L',
			'-o', "$d/slow-$v.body", "$base/slow/slow.txt?v=$v",
			'-o', "$d/age-$v.body", "$base/age/?v=$v");
	}
	push @pids, $pid;
}
waitpid($_, 0) for @pids;

for my $v (sort keys %tls) {
	my @w = split /\n/, $t->read_file("curl-$v.out");
	is($w[0], '2 200 1 0', "TLS $v: slow transfer over HTTP/2 on the first connection");
	is($w[1], '2 200 1 1', "TLS $v: stale request redirected, followed on a new connection");
	like($t->read_file("age-$v.body"), qr/^reused=\. auth_time=\d+ status=ok$/,
		"TLS $v: served after a full handshake");

	my $err = $t->read_file("curl-$v.err");
	like($err, qr/^< HTTP\/2 307/m, "TLS $v: 307 over HTTP/2");
	like($err, qr!^< location: https://localhost:$port/age/\?v=$v\x0d?$!mi,
		"TLS $v: to the same URL");
}

# nginx logs a stream once it is closed, which may be just after curl has its response.
my $log = '';
for (1 .. 50) {
	$log = $t->read_file('access.log');
	last if (() = $log =~ /^\d+ HTTP\/2\.0 \/age\/\S* 200 /mg) == 2;
	select undef, undef, undef, 0.1;
}

for my $v (sort keys %tls) {
	my ($slow) = $log =~ m!^(\d+) HTTP/2\.0 /slow/slow\.txt\?v=$v 200 TLSv$v \. (\d+)$!m;
	my ($stale, $stale_time) =
		$log =~ m!^(\d+) HTTP/2\.0 /age/\?v=$v 307 TLSv$v \S+ (\d+)$!m;
	my ($again, $again_time) =
		$log =~ m!^(\d+) HTTP/2\.0 /age/\?v=$v 200 TLSv$v \. (\d+)$!m;
	ok(defined $slow && defined $stale && $slow == $stale,
		"TLS $v: stale request on the same HTTP/2 connection");
	ok(defined $again && defined $stale && $again != $stale && $again_time > $stale_time,
		"TLS $v: new connection, full handshake, new auth_time");
}

# auth_cert_stale reject: 401, and the connection stays.

my @one = ('-sk', '--http2', '--resolve', "localhost:$port:127.0.0.1",
	'--cert', "$d/client.crt", '--key', "$d/client.key",
	'-w', '%{http_code} %{num_connects}\n');
my $pid = open(my $fh, '-|') // die "fork: $!";
exec('curl', @one, '-o', '/dev/null', "$base/reject/",
	'--next', @one, '-o', '/dev/null', "$base/slow/slow.txt?reject",
	'--next', @one, "$base/reject/") if $pid == 0;
my $out = join '', <$fh>;
close $fh;
like($out, qr/^200 1\n200 0\nauth_cert: stale: [^\n]*\n401 0\n$/,
	'reject over HTTP/2: 401 on the same connection');

###############################################################################
