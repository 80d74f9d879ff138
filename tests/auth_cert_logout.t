#!/usr/bin/perl

# Tests for auth_cert_logout: the authentication of the connection is ended, its session is
# not resumed again (TLS 1.2 and 1.3, session tickets and nginx's shared cache), the
# connection is closed (HTTP/1.1: Connection: close; HTTP/2: GOAWAY), the next connection is
# a full handshake, and another client's session is unaffected.

###############################################################################

use warnings;
use strict;

use Test::More;

use IO::Socket::SSL;

BEGIN { use FindBin; chdir($FindBin::Bin); }

use lib "$FindBin::Bin/support";
use Test::Nginx;
use PKI;
use Test::Nginx::AuthCert qw/ cert_dir get request connect_tls s_client status body header field
	config_errors /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http http_ssl http_v2 proxy/)
	->has_daemon('openssl')->has_daemon('curl');

my $conf = <<'EOF';

%%TEST_GLOBALS%%

daemon off;
worker_processes 2;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    error_log %%TESTDIR%%/error.log info;

    log_format logout '$connection $server_protocol $request_uri $status '
                      '$ssl_protocol $ssl_session_reused $auth_cert_auth_time';

    auth_cert_zone auth_cert:1m;

    ssl_certificate server.crt;
    ssl_certificate_key server.key;
    ssl_client_certificate ca.crt;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_verify_client optional;
    ssl_session_ticket_key ticket.key;

    proxy_set_header X-Age "reused=$ssl_session_reused auth_time=$auth_cert_auth_time status=$auth_cert_status";

    # session tickets
    server {
        listen       127.0.0.1:8443 ssl http2;
        server_name  localhost;

        access_log %%TESTDIR%%/access.log logout;

        ssl_session_cache off;
        ssl_session_tickets on;

        location / {
            auth_cert on;
            proxy_pass http://127.0.0.1:8081/;
        }

        location = /logout {
            auth_cert_logout;
        }

        location = /bye {
            auth_cert_logout redirect=/goodbye;
        }
    }

    # nginx's shared session cache (TLS 1.3: stateful tickets)
    server {
        listen       127.0.0.1:8444 ssl http2;
        server_name  localhost;

        access_log %%TESTDIR%%/access.log logout;

        ssl_session_cache shared:SSL:1m;
        ssl_session_tickets off;

        location / {
            auth_cert on;
            proxy_pass http://127.0.0.1:8081/;
        }

        location = /logout {
            auth_cert_logout;
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

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        location = /metrics {
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
$pki->cert('client', issuer => 'ca', subject => '/UID=jdoe/CN=John Doe');
$pki->cert('other', issuer => 'ca', subject => '/UID=other/CN=Other');
$t->write_file('ticket.key', '2' x 80);

$t->try_run('no auth_cert_logout')->plan(74);

###############################################################################

# Whether the server closed the connection: a read returns end of file.
sub closed {
	my ($s) = @_;
	my $buf;
	my $n = eval {
		local $SIG{ALRM} = sub { die "timeout\n" };
		alarm(5);
		my $n = $s->sysread($buf, 1);
		alarm(0);
		$n;
	};
	return defined $n && $n == 0;
}

# The resumptions refused for a logout so far.
sub refused {
	my ($n) = body(get('/metrics')) =~
		/^nginx_auth_cert_resumption_refused_total\{reason="logout"\} (\d+)$/m;
	return $n // 'none';
}

my %ports = (tickets => 8443, cache => 8444);

for my $v (qw/ TLSv1_2 TLSv1_3 /) {
	for my $m (qw/ tickets cache /) {
		my $name = "$v $m";
		my $port = $ports{$m};
		my ($reused, $r);

		($reused, $r) = s_client($port, $v, '/', cert => 'client', sess_out => 'a1');
		is($reused, '.', "$name: full handshake");
		my $auth_time = field($r, 'auth_time');

		($reused) = s_client($port, $v, '/', cert => 'other', sess_out => 'b1');
		is($reused, '.', "$name: another client");

		($reused) = s_client($port, $v, '/', cert => 'client', sess_in => 'a1');
		is($reused, 'r', "$name: resumed before the logout");

		# Refused: a GET (a link, an image, a prefetch), and a POST from another site's
		# page. Neither ends the authentication.
		($reused, $r) = s_client($port, $v, '/logout', cert => 'client', sess_in => 'a1');
		ok(status($r) eq '405' && header($r, 'Allow') eq 'POST', "$name: GET refused");
		($reused, $r) = s_client($port, $v, '/logout', cert => 'client', sess_in => 'a1',
			method => 'POST', headers => 'Sec-Fetch-Site: cross-site');
		is(status($r), 403, "$name: cross-site POST refused");
		is($reused, 'r', "$name: still resumed after the refusals");

		($reused, $r) = s_client($port, $v, '/logout', cert => 'client', sess_in => 'a1',
			method => 'POST', headers => 'Sec-Fetch-Site: same-origin');
		is(status($r), 204, "$name: logout");
		is($reused, 'r', "$name: logout on a resumed session");

		my $before = refused();

		# The logged-out session offered again, with the card: a new authentication.
		($reused, $r) = s_client($port, $v, '/', cert => 'client', sess_in => 'a1');
		is($reused, '.', "$name: full handshake after the logout");
		ok(status($r) eq '200' && field($r, 'auth_time') >= $auth_time,
			"$name: new authentication");

		# Offered again without the card: no certificate.
		($reused, $r) = s_client($port, $v, '/', sess_in => 'a1');
		is($reused, '.', "$name: not resumed without the card either");
		like(body($r), qr/^auth_cert: no_cert: /, "$name: without the card, refused");

		# TLS 1.2 with the shared cache: the logout took the session out of nginx's cache,
		# so that the offers are misses there, not refusals.
		is(refused() - $before, $v eq 'TLSv1_2' && $m eq 'cache' ? 0 : 2,
			"$name: refusals counted");

		($reused) = s_client($port, $v, '/', cert => 'other', sess_in => 'b1');
		is($reused, 'r', "$name: other client still resumes");
	}
}

# HTTP/1.1 keep-alive: the answer, and the end of the connection.

{
	my $s = connect_tls(8443, cert => 'client');
	is(status(request($s, '/')), 200, 'keep-alive: authenticated');
	my $r = request($s, '/logout', -method => 'POST');
	is(status($r), 204, 'keep-alive: logout');
	is(header($r, 'Cache-Control'), 'no-store', 'keep-alive: not cached');
	is(header($r, 'Clear-Site-Data'), '"cookies"', 'keep-alive: cookies cleared');
	ok(closed($s), 'keep-alive: connection closed');
}

# redirect=

{
	my $s = connect_tls(8443, cert => 'client');
	my $r = request($s, '/bye', -method => 'POST');
	is(status($r), 303, 'redirect: 303');
	like(header($r, 'Location'), qr!/goodbye$!, 'redirect: Location');
	is(header($r, 'Clear-Site-Data'), '"cookies"', 'redirect: cookies cleared');
	ok(closed($s), 'redirect: connection closed');
}

# HTTP/2: three requests of one curl, the third after the logout: GOAWAY, then a new
# connection (whose session the tests above show refused).

my $port = port(8443);
my $base = "https://localhost:$port";
my @one = ('-sk', '--http2', '--resolve', "localhost:$port:127.0.0.1",
	'--cert', "$d/client.crt", '--key', "$d/client.key",
	'-w', '%{http_version} %{http_code} %{num_connects}\n');
for my $v (qw/ 1.2 1.3 /) {
	my @tls = $v eq '1.2' ? ('--tlsv1.2', '--tls-max', '1.2') : ('--tlsv1.3');
	my $pid = open(my $fh, '-|') // die "fork: $!";
	exec('curl', @one, @tls, '-o', '/dev/null', "$base/?h2=$v-1",
		'--next', @one, @tls, '-o', '/dev/null', '--data', '', "$base/logout?h2=$v",
		'--next', @one, @tls, '-o', '/dev/null', "$base/?h2=$v-2") if $pid == 0;
	my $out = join '', <$fh>;
	close $fh;
	is($out, "2 200 1\n2 204 0\n2 200 1\n", "HTTP/2 TLS $v: logout, then a new connection");
}

# nginx logs a stream once it is closed, which may be just after curl has its response.
my $log = '';
for (1 .. 50) {
	$log = $t->read_file('access.log');
	last if (() = $log =~ /^\d+ HTTP\/2\.0 \/\?h2=\S+-2 200 /mg) == 2;
	select undef, undef, undef, 0.1;
}
for my $v (qw/ 1.2 1.3 /) {
	my ($first) = $log =~ m!^(\d+) HTTP/2\.0 /\?h2=$v-1 200 TLSv$v !m;
	my ($out) = $log =~ m!^(\d+) HTTP/2\.0 /logout\?h2=$v 204 TLSv$v !m;
	my ($next) = $log =~ m!^(\d+) HTTP/2\.0 /\?h2=$v-2 200 TLSv$v !m;
	ok(defined $first && defined $out && $first == $out, "HTTP/2 TLS $v: same connection");
	ok(defined $next && $next != $out, "HTTP/2 TLS $v: new connection after the logout");
}

# Counted, and logged once per logout.

my $lines = () = $t->read_file('error.log') =~ /auth_cert: logout: authentication ended/g;
is($lines, 8, 'one line per logout');

# Configuration errors.

(my $no_zone = $conf) =~ s/auth_cert_zone auth_cert:1m;//;
$no_zone =~ s/auth_cert_metrics;//;
like(config_errors($t, 'nozone', $no_zone),
	qr/"auth_cert_logout" in .* requires "auth_cert_zone"/, 'logout without a zone');
(my $bad = $conf) =~ s/redirect=\/goodbye/goodbye/;
like(config_errors($t, 'bad', $bad), qr/it must be "redirect=URL"/, 'bad argument');

###############################################################################
