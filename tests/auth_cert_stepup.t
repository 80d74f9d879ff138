#!/usr/bin/perl

# Tests for step-up with auth_cert_zone: on one server, / at 60 s and /admin at 2 s. The
# handshake limit is the longest age, so that / keeps resuming sessions; a stale request on
# /admin is redirected and marks its authentication, whose session is then refused, so that
# the redirect ends in a full handshake with a new auth_time, never in a loop. Another
# client is unaffected. TLS 1.2 and 1.3, session tickets and nginx's shared cache, HTTP/2.

###############################################################################

use warnings;
use strict;

use Test::More;

BEGIN { use FindBin; chdir($FindBin::Bin); }

use lib "$FindBin::Bin/support";
use Test::Nginx;
use PKI;
use Test::Nginx::AuthCert qw/ cert_dir get s_client status body field /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http http_ssl http_v2 proxy/)
	->has_daemon('openssl')->has_daemon('curl');

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;
worker_processes 2;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    error_log %%TESTDIR%%/error.log info;

    log_format stepup '$connection $server_protocol $request_uri $status '
                      '$ssl_protocol $ssl_session_reused $auth_cert_auth_time';

    auth_cert_zone auth_cert:1m;

    ssl_certificate server.crt;
    ssl_certificate_key server.key;
    ssl_client_certificate ca.crt;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_verify_client optional;
    ssl_session_ticket_key ticket.key;

    proxy_set_header X-Age "reused=$ssl_session_reused auth_time=$auth_cert_auth_time status=$auth_cert_status";

    auth_cert on;
    auth_cert_max_age 60s;

    # session tickets
    server {
        listen       127.0.0.1:8443 ssl http2;
        server_name  localhost;

        access_log %%TESTDIR%%/access.log stepup;

        ssl_session_cache off;
        ssl_session_tickets on;

        location / {
            proxy_pass http://127.0.0.1:8081/;
        }

        location /admin {
            auth_cert_max_age 2s;
            proxy_pass http://127.0.0.1:8081/;
        }

        # a slow response keeps an HTTP/2 connection busy until /admin finds it stale
        location /slow/ {
            limit_rate 1000;
            alias %%TESTDIR%%/;
        }
    }

    # nginx's shared session cache (TLS 1.3: stateful tickets)
    server {
        listen       127.0.0.1:8444 ssl;
        server_name  localhost;

        ssl_session_cache shared:SSL:1m;
        ssl_session_tickets off;

        location / {
            proxy_pass http://127.0.0.1:8081/;
        }

        location /admin {
            auth_cert_max_age 2s;
            proxy_pass http://127.0.0.1:8081/;
        }
    }

    server {
        listen       127.0.0.1:8081;
        server_name  localhost;

        auth_cert off;
        access_log off;

        location / {
            return 200 "$http_x_age\n";
        }
    }

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        auth_cert off;

        location = /metrics {
            auth_cert_metrics;
        }
    }
}

EOF

my $d = $t->testdir();
my $pki = PKI->new($d);
cert_dir($d);

$pki->ca('ca', subject => '/CN=Test Root CA');
$pki->cert('server', issuer => 'ca', subject => '/CN=localhost');
$pki->cert('client', issuer => 'ca', subject => '/UID=jdoe/CN=John Doe');
$pki->cert('other', issuer => 'ca', subject => '/UID=other/CN=Other');
$t->write_file('ticket.key', '3' x 80);
$t->write_file('slow.txt', 'x' x 4000);

$t->try_run('no auth_cert_zone')->plan(48);

###############################################################################

sub refused {
	my ($n) = body(get('/metrics')) =~
		/^nginx_auth_cert_resumption_refused_total\{reason="stepup"\} (\d+)$/m;
	return $n // 'none';
}

my %ports = (tickets => 8443, cache => 8444);
my @modes = map { my $v = $_; map { [$v, $_] } qw/ tickets cache / } qw/ TLSv1_2 TLSv1_3 /;
my %auth_time;

# Full handshakes: the client on /admin, another client on /.

for (@modes) {
	my ($v, $m) = @$_;
	my ($reused, $r) = s_client($ports{$m}, $v, '/admin/', cert => 'client',
		sess_out => "$v-$m-a");
	is($reused, '.', "$v $m: full handshake");
	$auth_time{"$v $m"} = field($r, 'auth_time');
	($reused) = s_client($ports{$m}, $v, '/', cert => 'other', sess_out => "$v-$m-b");
	is($reused, '.', "$v $m: another client");
}

sleep 3;

for (@modes) {
	my ($v, $m) = @$_;
	my ($port, $name, $auth_time) = ($ports{$m}, "$v $m", $auth_time{"$v $m"});
	my ($reused, $r);

	# Stale for /admin, not for /: / still resumes.
	($reused, $r) = s_client($port, $v, '/', cert => 'client', sess_in => "$v-$m-a");
	is($reused, 'r', "$name: / resumes after the age of /admin");
	is(field($r, 'auth_time'), $auth_time, "$name: / keeps the auth_time");

	my $before = refused();

	($reused, $r) = s_client($port, $v, '/admin/', cert => 'client', sess_in => "$v-$m-a");
	is(status($r), 307, "$name: /admin stale: redirect");
	is($reused, 'r', "$name: on the resumed session");

	# The session is refused: the redirect ends in a full handshake.
	($reused, $r) = s_client($port, $v, '/admin/', cert => 'client', sess_in => "$v-$m-a");
	is($reused, '.', "$name: session refused after the redirect");
	is(status($r), 200, "$name: /admin after a full handshake");
	ok(field($r, 'auth_time') > $auth_time, "$name: new auth_time");

	is(refused() - $before, 1, "$name: refusal counted");

	($reused) = s_client($port, $v, '/', cert => 'other', sess_in => "$v-$m-b");
	is($reused, 'r', "$name: other client still resumes");
}

# HTTP/2: a slow transfer keeps the connection until /admin is stale; the redirect, followed
# by curl, ends on a new connection in a full handshake, with a new auth_time: no loop.

my $port = port(8443);
my $base = "https://localhost:$port";
my @curl = ('curl', '-sk', '--http2', '--resolve', "localhost:$port:127.0.0.1",
	'--cert', "$d/client.crt", '--key', "$d/client.key", '-L', '--max-redirs', '3',
	'-w', '%{http_version} %{http_code} %{num_connects} %{num_redirects}\n');
my %tls = ('1.2' => ['--tlsv1.2', '--tls-max', '1.2'], '1.3' => ['--tlsv1.3']);
my @pids;
for my $v (sort keys %tls) {
	my $pid = fork() // die "fork: $!";
	if ($pid == 0) {
		open STDOUT, '>', "$d/curl-$v.out" or die;
		open STDERR, '>', "$d/curl-$v.err" or die;
		exec(@curl, @{$tls{$v}},
			'-o', "$d/slow-$v.body", "$base/slow/slow.txt?v=$v",
			'-o', "$d/admin-$v.body", "$base/admin/?v=$v");
	}
	push @pids, $pid;
}
waitpid($_, 0) for @pids;

for my $v (sort keys %tls) {
	my @w = split /\n/, $t->read_file("curl-$v.out");
	is($w[1] // '', '2 200 1 1', "HTTP/2 TLS $v: one redirect, then a new connection");
	like($t->read_file("admin-$v.body"), qr/^reused=\. auth_time=\d+ status=ok$/,
		"HTTP/2 TLS $v: served after a full handshake");
}

###############################################################################
