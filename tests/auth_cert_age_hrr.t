#!/usr/bin/perl

# Tests for auth_cert_max_age after a TLS 1.3 HelloRetryRequest: the session lookup of the
# second ClientHello comes after the first one selected the server by SNI, yet a session
# stale for the handshake limit of the address (its default server's context) must not be
# resumed from nginx's shared cache.

###############################################################################

use warnings;
use strict;

use Test::More;

BEGIN { use FindBin; chdir($FindBin::Bin); }

use lib "$FindBin::Bin/support";
use Test::Nginx;
use PKI;
use Test::Nginx::AuthCert qw/ cert_dir get connect_tls body /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

eval { require IO::Socket::SSL; };
plan(skip_all => 'IO::Socket::SSL not installed') if $@;
plan(skip_all => 'IO::Socket::SSL cannot choose the groups of a client')
	unless defined &Net::SSLeay::CTX_set1_groups_list;

my $t = Test::Nginx->new()->has(qw/http http_ssl proxy/)->has_daemon('openssl');

# The server accepts P-256 only: a client offering an X25519 key share first is asked for a
# P-256 one by a HelloRetryRequest. With tickets off, TLS 1.3 sessions are resumed from
# nginx's shared cache.

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    ssl_certificate server.crt;
    ssl_certificate_key server.key;
    ssl_client_certificate ca.crt;
    ssl_protocols TLSv1.3;
    ssl_verify_client optional;
    ssl_session_cache shared:SSL:1m;
    ssl_session_tickets off;
    ssl_ecdh_curve prime256v1;

    auth_cert on;

    proxy_set_header X-Age "reused=$ssl_session_reused auth_time=$auth_cert_auth_time status=$auth_cert_status";

    server {
        listen       127.0.0.1:8443 ssl;
        server_name  long;

        auth_cert_max_age 1h;

        location / {
            proxy_pass http://127.0.0.1:8081/;
        }
    }

    server {
        listen       127.0.0.1:8443 ssl;
        server_name  short;

        location / {
            proxy_pass http://127.0.0.1:8081/;
        }

        location /admin/ {
            auth_cert_max_age 2s;
            proxy_pass http://127.0.0.1:8081/;
        }
    }

    server {
        listen       127.0.0.1:8444 ssl;
        server_name  other;

        auth_cert_max_age 1h;

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

$t->try_run('no auth_cert')->plan(11);

###############################################################################

# The groups a client offers: only the first one gets a key share in its first ClientHello.
my %groups = (hrr => 'X25519:P-256', plain => 'P-256');

# The auth_time in a response, 0 without one.
sub auth_time { body($_[0]) =~ /auth_time=(\d+)/ ? $1 : 0 }

# (Connections stay open: a client drops the session of a connection it abandons without a
# TLS shutdown.)
my (%cache, %auth_time, @keep);

# A request to /admin/ of "short" on 8443, or of "other" on 8444, on a new connection that
# offers the groups of $how and the session kept under $key.
sub admin {
	my ($port, $how, $key) = @_;
	$cache{$key} //= IO::Socket::SSL::Session_Cache->new(4);
	my $s = connect_tls($port, sni => $port == 8443 ? 'short' : 'other',
		version => 'TLSv1_3', cache => $cache{$key}, session_key => $key,
		SSL_ecdh_curve => $groups{$how}, cert => 'client');
	push @keep, $s;
	return get('/admin/', socket => $s, host => $port == 8443 ? 'short' : 'other');
}

# The HelloRetryRequest happens: openssl s_client shows two ClientHellos for one handshake.

my $port = port(8443);
my $out = `openssl s_client -connect 127.0.0.1:$port -servername short -tls1_3 -groups $groups{hrr} -msg </dev/null 2>&1`;
my $hellos = () = $out =~ />>> .*ClientHello/g;
is($hellos, 2, 'X25519 key share: HelloRetryRequest');

# Fresh sessions of 8443 are resumed from the shared cache, with or without a
# HelloRetryRequest; sessions of 8444, whose limit is an hour, go to the same cache.

for my $how (qw/ hrr plain /) {
	my $r = admin(8443, $how, "own $how");
	like(body($r), qr/^reused=\. auth_time=\d+ status=ok$/, "$how: full handshake");
	$auth_time{"own $how"} = auth_time($r);

	$r = admin(8443, $how, "own $how");
	like(body($r), qr/^reused=r auth_time=$auth_time{"own $how"} status=ok$/,
		"$how: fresh session resumed from the shared cache");

	$r = admin(8444, 'plain', "other $how");
	like(body($r), qr/^reused=\. auth_time=\d+ status=ok$/, "$how: session of 8444");
	$auth_time{"other $how"} = auth_time($r);
}

my $newest = (sort values %auth_time)[-1];
select undef, undef, undef, 0.2 while time() <= $newest + 2;

# Every session is now past the limit of 8443 (2 s, of a location of "short", the server
# SNI selects): never resumed there, with or without a HelloRetryRequest. The sessions of
# 8444 are still within OpenSSL's own timeout (an hour): only the module refuses them.

for my $how (qw/ hrr plain /) {
	for my $which (qw/ own other /) {
		my $r = admin(8443, $how, "$which $how");
		ok(body($r) =~ /^reused=\. auth_time=(\d+) status=ok$/
				&& $1 > $auth_time{"$which $how"},
			"$how: stale session ($which) not resumed")
			or diag(body($r));
	}
}

###############################################################################
