#!/usr/bin/perl

# Tests for auth_cert_max_age with several servers: sessions are resumed before the server
# name is known, so the handshake uses the smallest age of the servers sharing a listen
# address (no redirect loop when a name-based server has a shorter age than the default
# server), while other addresses keep their own.

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

my $t = Test::Nginx->new()->has(qw/http http_ssl proxy/)->has_daemon('openssl');

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
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_verify_client optional;
    ssl_session_cache shared:SSL:1m;
    ssl_session_ticket_key ticket.key;

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
$t->write_file('ticket.key', join '', map { chr(($_ * 13 + 1) % 256) } 1 .. 80);

my @versions = ('TLSv1_2', 'TLSv1_3');

$t->try_run('no auth_cert')->plan(6 * @versions);

###############################################################################

# The auth_time in a response, 0 without one.
sub auth_time { body($_[0]) =~ /auth_time=(\d+)/ ? $1 : 0 }

my (%cache, %auth_time, @keep);

for my $v (@versions) {
	for my $name (qw/ long short other /) {
		my $port = $name eq 'other' ? 8444 : 8443;
		my $cache = $cache{"$v $name"} = IO::Socket::SSL::Session_Cache->new(4);
		# (Connections stay open: a client drops the session of a connection it
		# abandons without a TLS shutdown.)
		push @keep, connect_tls($port, sni => $name, version => $v, cache => $cache,
			cert => 'client');
		my $r = get('/admin/', socket => $keep[-1], host => $name);
		like(body($r), qr/^reused=\. auth_time=\d+ status=ok$/, "$v $name: full handshake");
		$auth_time{"$v $name"} = auth_time($r);
	}
}

my $newest = (sort values %auth_time)[-1];
select undef, undef, undef, 0.2 while time() <= $newest + 2;

for my $v (@versions) {
	# The short age of one location of "short" applies to every session on its address,
	# even one of the default server "long": a stale session is never resumed where a
	# request would be redirected for it, so a redirect cannot loop.

	for my $name (qw/ short long /) {
		my $s = connect_tls(8443, sni => $name, version => $v, cache => $cache{"$v $name"},
			cert => 'client');
		push @keep, $s;
		my $r = get('/admin/', socket => $s, host => $name);
		ok(body($r) =~ /^reused=\. auth_time=(\d+) status=ok$/
				&& $1 > $auth_time{"$v $name"},
			"$v $name: session past the smallest age of the address not resumed");
	}

	# Another address keeps its own age.

	my $s = connect_tls(8444, sni => 'other', version => $v, cache => $cache{"$v other"},
		cert => 'client');
	push @keep, $s;
	like(body(get('/', socket => $s, host => 'other')),
		qr/^reused=r auth_time=$auth_time{"$v other"} status=ok$/,
		"$v other: resumed on an address with a longer age");
}

###############################################################################
