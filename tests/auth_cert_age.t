#!/usr/bin/perl

# Tests for auth_cert_max_age and auth_cert_stale: the time of the certificate authentication
# across TLS 1.2 and 1.3, without resumption, with the shared session cache, with session
# tickets and with OpenSSL's internal cache (not used where an age applies); fresh and stale
# sessions; keep-alive; re-authentication and rejection.

###############################################################################

use warnings;
use strict;

use Test::More;

BEGIN { use FindBin; chdir($FindBin::Bin); }

use lib "$FindBin::Bin/support";
use Test::Nginx;
use PKI;
use Test::Nginx::AuthCert qw/ cert_dir request connect_tls status body field /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

eval { require IO::Socket::SSL; };
plan(skip_all => 'IO::Socket::SSL not installed') if $@;

my $t = Test::Nginx->new()->has(qw/http http_ssl proxy access/)->has_daemon('openssl');

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    error_log %%TESTDIR%%/error.log info;

    ssl_certificate server.crt;
    ssl_certificate_key server.key;
    ssl_client_certificate ca.crt;
    ssl_verify_client optional;
    ssl_protocols TLSv1.2 TLSv1.3;

    auth_cert on;
    auth_cert_max_age 2s;

    proxy_set_header X-Age "reused=$ssl_session_reused auth_time=$auth_cert_auth_time age=$auth_cert_age status=$auth_cert_status conn=$connection";

    # no resumption
    server {
        listen       127.0.0.1:8443 ssl;
        server_name  localhost;

        ssl_session_cache off;
        ssl_session_tickets off;

        location / {
            proxy_pass http://127.0.0.1:8081/;
        }

        location /reject/ {
            auth_cert_stale reject;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /optional/ {
            auth_cert optional;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /any/ {
            satisfy any;
            deny all;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /any-local/ {
            satisfy any;
            allow 127.0.0.1;
            deny all;
            proxy_pass http://127.0.0.1:8081/;
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

        location /reject/ {
            auth_cert_stale reject;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /optional/ {
            auth_cert optional;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /any/ {
            satisfy any;
            deny all;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /any-local/ {
            satisfy any;
            allow 127.0.0.1;
            deny all;
            proxy_pass http://127.0.0.1:8081/;
        }
    }

    # OpenSSL's internal cache
    server {
        listen       127.0.0.1:8448 ssl;
        server_name  localhost;

        ssl_session_cache builtin:1000;
        ssl_session_tickets off;

        location / {
            proxy_pass http://127.0.0.1:8081/;
        }

        location /reject/ {
            auth_cert_stale reject;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /optional/ {
            auth_cert optional;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /any/ {
            satisfy any;
            deny all;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /any-local/ {
            satisfy any;
            allow 127.0.0.1;
            deny all;
            proxy_pass http://127.0.0.1:8081/;
        }
    }

    # session tickets
    server {
        listen       127.0.0.1:8445 ssl;
        server_name  localhost;

        ssl_session_cache off;
        ssl_session_tickets on;

        location / {
            proxy_pass http://127.0.0.1:8081/;
        }

        location /reject/ {
            auth_cert_stale reject;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /optional/ {
            auth_cert optional;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /any/ {
            satisfy any;
            deny all;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /any-local/ {
            satisfy any;
            allow 127.0.0.1;
            deny all;
            proxy_pass http://127.0.0.1:8081/;
        }
    }

    # a longer age, for chains of resumptions
    server {
        listen       127.0.0.1:8446 ssl;
        server_name  localhost;

        ssl_session_cache shared:SSL:1m;
        ssl_session_tickets off;
        auth_cert_max_age 5s;

        location / {
            proxy_pass http://127.0.0.1:8081/;
        }
    }

    server {
        listen       127.0.0.1:8447 ssl;
        server_name  localhost;

        ssl_session_cache off;
        ssl_session_tickets on;
        auth_cert_max_age 5s;

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
            return 200 "$http_x_age\n";
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

my @versions = ('TLSv1_2', 'TLSv1_3');
my %modes = (none => 8443, cache => 8444, tickets => 8445, builtin => 8448);
my @modes = qw/ none cache tickets builtin /;
my $per_cell = 25;

$t->try_run('no auth_cert')->plan($per_cell * @versions * @modes + 12 + 2);

###############################################################################

# Whether the server closed the connection (end of stream within a few seconds).
sub closed {
	my ($s) = @_;
	my $buf = '';
	my $n = eval {
		local $SIG{ALRM} = sub { die "timeout\n" };
		local $SIG{PIPE} = "IGNORE";
		alarm(3);
		my $n = $s->sysread($buf, 1);
		alarm(0);
		$n;
	};
	return defined $n && $n == 0;
}

# A chain of resumptions, each within the age: every TLS 1.3 resumption re-issues a ticket
# (and OpenSSL resets the session's own time), yet the authentication keeps its age and the
# chain ends once that age passes auth_cert_max_age (5 s here), though the last ticket is
# younger than that. (Connections stay open: a client drops the session of a connection it
# abandons without a TLS shutdown.)

my %chain_ports = (cache => 8446, tickets => 8447);
my @chain = map { my $v = $_; map { "$v $_" } qw/ cache tickets / } @versions;
my %chain;

sub chain_connect {
	my ($name, %opts) = @_;
	my ($v, $m) = split / /, $name;
	my $c = $chain{$name};
	my $s = connect_tls($chain_ports{$m}, version => $v, cache => $c->{cache}, %opts);
	push @{$c->{conns}}, $s;
	return request($s, '/');
}

for my $name (@chain) {
	$chain{$name} = { cache => IO::Socket::SSL::Session_Cache->new(4) };
	$chain{$name}{auth_time} = field(chain_connect($name, cert => 'client'), 'auth_time');
}

my $last = (sort map { $_->{auth_time} } values %chain)[-1];

my %cell;

# Fresh: a full handshake, then new connections resuming its session.

for my $v (@versions) {
	for my $m (@modes) {
		my $port = $modes{$m};
		my $c = $cell{"$v $m"} = {
			cache => IO::Socket::SSL::Session_Cache->new(4),
			name => "$v $m",
		};
		my %o = (version => $v, cache => $c->{cache});
		# OpenSSL's internal cache is not consulted where an age is set.
		my $resumes = $m ne 'none' && $m ne 'builtin';

		$c->{first} = connect_tls($port, %o, cert => 'client');
		my $r = request($c->{first}, '/');
		is(status($r), 200, "$c->{name}: full handshake");
		is(field($r, 'reused'), '.', "$c->{name}: not resumed");
		my $auth_time = $c->{auth_time} = field($r, 'auth_time');
		like($auth_time, qr/^\d{10}$/, "$c->{name}: auth_time");
		ok(abs($auth_time - time()) <= 1, "$c->{name}: auth_time is now");
		like(field($r, 'age'), qr/^[01]$/, "$c->{name}: age");

		$c->{second} = connect_tls($port, %o, cert => 'client');
		$r = request($c->{second}, '/');
		is(status($r), 200, "$c->{name}: second connection");
		is(field($r, 'reused'), $resumes ? 'r' : '.',
			"$c->{name}: second connection " . ($resumes ? 'resumed' : 'full'));
		if ($resumes) {
			is(field($r, 'auth_time'), $auth_time,
				"$c->{name}: auth_time unchanged by resumption");
		} else {
			ok(field($r, 'auth_time') >= $auth_time,
				"$c->{name}: auth_time of the new handshake");
		}
		$c->{second_conn} = field($r, 'conn');

		# A client without its certificate resumes a fresh session: the session is
		# the authentication, bounded by auth_cert_max_age.
		my $s = connect_tls($port, %o);
		$r = request($s, '/');
		if ($resumes) {
			like($r, qr/^HTTP\/1\.1 200.*reused=r auth_time=$auth_time /ms,
				"$c->{name}: fresh session resumed without certificate");
		} else {
			like(body($r), qr/^auth_cert: no_cert: /,
				"$c->{name}: no resumption, no certificate");
		}
	}
}

# The chain: resumed at age 2 to 4.

select undef, undef, undef, 0.05 while time() < $last + 2;

for my $name (@chain) {
	my $a = $chain{$name}{auth_time};
	like($a, qr/^\d{10}$/, "$name chain: auth_time");
	like(body(chain_connect($name, cert => 'client')), qr/^reused=r auth_time=$a /,
		"$name chain: resumed within the age");
}

# Let every authentication above pass auth_cert_max_age.

my $newest = 0;
$newest = $_->{auth_time} > $newest ? $_->{auth_time} : $newest for values %cell;
select undef, undef, undef, 0.2 while time() <= $newest + 2;

# The chain: not resumed past the age (a client without its certificate shows it).

select undef, undef, undef, 0.05 while time() <= $last + 5;

for my $name (@chain) {
	like(body(chain_connect($name)), qr/^auth_cert: no_cert: /,
		"$name chain: not resumed past the age");
}

# Stale.

for my $v (@versions) {
	for my $m (@modes) {
		my $port = $modes{$m};
		my $c = $cell{"$v $m"};
		my %o = (version => $v, cache => $c->{cache});

		# keep-alive: the same connection, once the age has passed

		my $r = request($c->{second}, '/path/?a=1');
		is(status($r), 307, "$c->{name}: stale keep-alive request redirected");
		like($r, qr!^Location: https://localhost:\d+/path/\?a=1\x0d?$!mi,
			"$c->{name}: redirect to the same URL");
		like($r, qr/^Connection: close/mi, "$c->{name}: Connection: close");
		like($r, qr/^Cache-Control: no-store/mi, "$c->{name}: Cache-Control: no-store");
		ok(closed($c->{second}), "$c->{name}: connection closed after the redirect");

		$r = request($c->{first}, '/reject/');
		is(status($r), 401, "$c->{name}: auth_cert_stale reject");
		is(body($r), "auth_cert: stale: the client certificate authentication is older "
			. "than allowed\n", "$c->{name}: stale body");

		$r = request($c->{first}, '/optional/');
		like(body($r), qr/^reused=\S+ auth_time=$c->{auth_time} age=[3-9] status=stale /,
			"$c->{name}: optional: stale reaches the backend");

		is(status(request($c->{first}, '/any/')), 403,
			"$c->{name}: satisfy any: stale is a 403");
		like(request($c->{first}, '/any-local/'), qr/^HTTP\/1\.1 200.*status=stale /ms,
			"$c->{name}: satisfy any: another module allows");

		# The stale session is not resumed: a client whose card is pulled gets a full
		# handshake without a certificate, and is refused.

		my $s = connect_tls($port, %o);
		$r = request($s, '/');
		is(field($r, 'reused'), 'none', "$c->{name}: pulled card: no response body");
		like(body($r), qr/^auth_cert: no_cert: /, "$c->{name}: pulled card refused");
		ok(!($s && $s->get_session_reused), "$c->{name}: stale session not resumed");

		# A client that still has its certificate is served after a new handshake.

		$s = connect_tls($port, %o, cert => 'client');
		$r = request($s, '/path/?a=1');
		is(status($r), 200, "$c->{name}: served again after re-authentication");
		is(field($r, 'reused'), '.', "$c->{name}: with a full handshake");
		ok(field($r, 'auth_time') > $c->{auth_time}, "$c->{name}: new auth_time");
	}
}

###############################################################################

$t->stop();

my $log = $t->read_file('error.log');
like($log, qr/\[info\].*auth_cert: re-authentication required: .*reason: stale, auth_time: \d+, age: [3-9]/,
	'log: re-authentication');
like($log, qr/\[info\].*auth_cert: access denied: .*reason: stale, identity: "jdoe"/,
	'log: stale rejected');

###############################################################################
