#!/usr/bin/perl

# Tests for auth_cert_max_age across hosts sharing ssl_session_ticket_key: a ticket issued by
# one host and resumed on another keeps the time of the original certificate authentication,
# because that time travels inside the ticket; once stale, no host resumes it. The hosts are
# two nginx instances (a and b); a third server (c) has another ticket key.

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
    ssl_verify_client optional;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache off;
    ssl_session_tickets on;

    auth_cert on;
    auth_cert_max_age 2s;

    proxy_set_header X-Age "host=a reused=$ssl_session_reused auth_time=$auth_cert_auth_time";

    # host a
    server {
        listen       127.0.0.1:8443 ssl;
        server_name  localhost;
        ssl_session_ticket_key fleet.key;

        location / {
            proxy_pass http://127.0.0.1:8081/;
        }
    }

    # host c: another ticket key
    server {
        listen       127.0.0.1:8445 ssl;
        server_name  localhost;
        ssl_session_ticket_key other.key;

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

# Host b: a second nginx instance with the same certificates and ticket key.
mkdir "$d/b" or die "mkdir: $!";
my $globals = $t->test_globals();
$globals =~ s!^pid .*?;!pid $d/b/nginx.pid;!m;
$globals =~ s!^error_log .*?;!error_log $d/b/error.log info;!m;
$t->write_file_expand('b/nginx.conf', $globals . <<"EOF");

daemon off;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    ssl_certificate $d/server.crt;
    ssl_certificate_key $d/server.key;
    ssl_client_certificate $d/ca.crt;
    ssl_verify_client optional;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache off;
    ssl_session_tickets on;

    auth_cert on;
    auth_cert_max_age 2s;

    server {
        listen       127.0.0.1:8543 ssl;
        server_name  localhost;
        ssl_session_ticket_key $d/fleet.key;

        location / {
            proxy_set_header X-Age "host=b reused=\$ssl_session_reused auth_time=\$auth_cert_auth_time";
            proxy_pass http://127.0.0.1:8581/;
        }
    }

    server {
        listen       127.0.0.1:8581;
        server_name  localhost;

        auth_cert off;
        access_log off;

        location / {
            return 200 "\$http_x_age\n";
        }
    }
}

EOF

$pki->ca('ca', subject => '/CN=Test Root CA');
$pki->cert('server', issuer => 'ca', subject => '/CN=localhost');
$pki->cert('client', issuer => 'ca', subject => '/UID=jdoe/CN=John Doe');
$t->write_file('fleet.key', join '', map { chr(($_ * 7 + 3) % 256) } 1 .. 80);
$t->write_file('other.key', join '', map { chr(($_ * 11 + 5) % 256) } 1 .. 80);

my @versions = ('TLSv1_2', 'TLSv1_3');

$t->try_run('no auth_cert');
$t->run_daemon($Test::Nginx::NGINX, '-p', "$d/b/", '-c', "$d/b/nginx.conf",
	'-e', "$d/b/error.log");
$t->waitforsocket('127.0.0.1:' . port(8543)) or die "host b did not start\n";
$t->plan(8 * @versions);

###############################################################################

# A TLS connection to a host; every host resumes from the one client session slot.
sub connect_host {
	my ($port, $version, $cache, $cert) = @_;
	return connect_tls($port, version => $version, cache => $cache, session_key => 'fleet',
		cert => $cert);
}

my (%cache, %auth_time, @keep);

for my $v (@versions) {
	my $cache = $cache{$v} = IO::Socket::SSL::Session_Cache->new(4);

	# (Connections stay open until the end: a client drops the session of a connection
	# it abandons without a TLS shutdown.)
	push @keep, connect_host(8443, $v, $cache, 'client');
	my $r = body(get('/', socket => $keep[-1]));
	like($r, qr/^host=a reused=\. auth_time=\d+$/, "$v: full handshake on host a");
	my ($a) = $r =~ /auth_time=(\d+)/;
	$auth_time{$v} = $a // 0;

	push @keep, connect_host(8543, $v, $cache);
	like(body(get('/', socket => $keep[-1])), qr/^host=b reused=r auth_time=$auth_time{$v}$/,
		"$v: ticket of host a resumed on host b with its auth_time");

	push @keep, connect_host(8443, $v, $cache);
	like(body(get('/', socket => $keep[-1])), qr/^host=a reused=r auth_time=$auth_time{$v}$/,
		"$v: ticket renewed by host b resumed on host a");

	my $other = IO::Socket::SSL::Session_Cache->new(4);
	my $s = connect_host(8443, $v, $other, 'client');
	get('/', socket => $s);
	push @keep, $s, connect_host(8445, $v, $other);
	like(get('/', socket => $keep[-1]), qr/no_cert/, "$v: not resumed on a host with another key");

	# A second session, from host b, for the stale test on host a.
	$cache{"$v b"} = IO::Socket::SSL::Session_Cache->new(4);
	push @keep, connect_host(8543, $v, $cache{"$v b"}, 'client');
	($auth_time{"$v b"}) = body(get('/', socket => $keep[-1])) =~ /auth_time=(\d+)/;
	$auth_time{"$v b"} //= 0;
}

my $newest = (sort values %auth_time)[-1];
select undef, undef, undef, 0.2 while time() <= $newest + 2;

for my $v (@versions) {
	my $cache = $cache{$v};

	my $s = connect_host(8543, $v, $cache);
	my $r = get('/', socket => $s);
	like($r, qr/no_cert/, "$v: stale ticket not resumed on host b");
	ok(!($s && $s->get_session_reused), "$v: stale ticket: full handshake");

	push @keep, $s;
	$s = connect_host(8443, $v, $cache{"$v b"});
	like(get('/', socket => $s), qr/no_cert/, "$v: stale ticket of host b not resumed on host a");

	$s = connect_host(8543, $v, $cache, 'client');
	$r = body(get('/', socket => $s));
	ok($r =~ /^host=b reused=\. auth_time=(\d+)$/ && $1 > $auth_time{$v},
		"$v: re-authenticated on host b");
}

###############################################################################
