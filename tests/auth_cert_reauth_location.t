#!/usr/bin/perl

# Tests for the Location of the re-authentication redirect (auth_cert_stale reauth): it always
# names this server, whatever the request line says. With absolute_redirect off it is a path
# that starts with exactly one "/" (never "//" or "/\", which a browser reads as another
# host), with absolute_redirect on it is this server's URL; it never carries a control
# character, a space or a raw non-ASCII byte.

###############################################################################

use warnings;
use strict;

use Test::More;

BEGIN { use FindBin; chdir($FindBin::Bin); }

use lib "$FindBin::Bin/support";
use Test::Nginx;
use PKI;
use Test::Nginx::AuthCert qw/ cert_dir request connect_tls status header /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

eval { require IO::Socket::SSL; };
plan(skip_all => 'IO::Socket::SSL not installed') if $@;

my $t = Test::Nginx->new()->has(qw/http http_ssl proxy rewrite/)->has_daemon('openssl');

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
    ssl_session_cache off;
    ssl_session_tickets off;

    auth_cert on;
    auth_cert_max_age 1s;
    auth_cert_stale reauth;

    server {
        listen       127.0.0.1:8443 ssl;
        server_name  localhost;

        absolute_redirect off;

        rewrite ^/old/(.*)$ /new/$1;

        location / {
            proxy_pass http://127.0.0.1:8081/;
        }
    }

    server {
        listen       127.0.0.1:8444 ssl;
        server_name  localhost;

        absolute_redirect off;
        merge_slashes off;

        location / {
            proxy_pass http://127.0.0.1:8081/;
        }
    }

    server {
        listen       127.0.0.1:8445 ssl;
        server_name  localhost;

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
            return 200 "ok\n";
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

# [port, request target, what the Location must be: a path of this server (undef: any), or
# this server's URL ("abs")]
my @cases = (
	[8443, '//evil.example/%2e%2e/app/x'],
	[8443, '/\\evil.example/x'],
	[8443, '/\\/evil.example/x'],
	[8443, '/%2F%2Fevil.example/x'],
	[8443, '/%5C%5Cevil.example/x'],
	[8443, '/%5C/evil.example/x'],
	[8443, 'https://evil.example/x', '/x'],
	[8443, '/x%0D%0ASet-Cookie:%20a=b'],
	[8443, '/caf%C3%A9/%20sp%3F%23%25?q=1&r=%2F', '/caf%C3%A9/%20sp%3F%23%25?q=1&r=%2F'],
	[8443, '/old/x?a=1', '/new/x?a=1'],
	[8444, '//evil.example/x', '/evil.example/x'],
	[8444, '/%2F%2Fevil.example/x'],
	[8444, '///\\\\evil.example/x'],
	[8445, '//evil.example/%2e%2e/app/x', 'abs'],
	[8445, '/\\evil.example/x', 'abs'],
);

$t->try_run('no auth_cert')->plan(2 * @cases + 5);

###############################################################################

# One connection per case, authenticated now; the 307 closes its connection. (On a loaded
# machine a connection may already be stale at its first request: then another one.)

sub fresh_connection {
	my ($port) = @_;
	for (1 .. 5) {
		my $s = connect_tls($port, cert => 'client');
		return $s if status(request($s, '/')) eq '200';
	}
	return undef;
}

my @conns = map { fresh_connection($_->[0]) } @cases;
is(scalar(grep { defined } @conns), scalar @cases, 'fresh requests pass');

select undef, undef, undef, 2.2;

for my $i (0 .. $#cases) {
	my ($port, $uri, $want) = @{$cases[$i]};
	my $r = request($conns[$i], $uri);
	my $loc = header($r, 'Location') // '';
	my $name = "$port $uri";

	is(status($r), 307, "$name: redirected");

	if (defined $want && $want eq 'abs') {
		my $p = port($port);
		like($loc, qr{^https://localhost:$p/(?![/\\])[\x21-\x7e]*$},
			"$name: Location is this server's URL");
	} elsif (defined $want) {
		is($loc, $want, "$name: Location");
	} else {
		like($loc, qr{^/(?![/\\])[\x21-\x7e]*$},
			"$name: Location is a path of this server");
	}

	if ($uri =~ /Set-Cookie/) {
		unlike($r, qr/^Set-Cookie/mi, "$name: no header injected");
		(my $head = $r) =~ s/\x0d\x0a\x0d\x0a.*//s;
		$head =~ s/\x0d\x0a/\n/g;
		unlike($head, qr/[\x00-\x09\x0b-\x1f\x7f]/,
			"$name: no stray control character in the head");
	}
}

# The log line of each redirect, and no crash.

$t->stop();

my $log = $t->read_file('error.log');
# (a fresh connection that was already stale logged its "GET /")
my $n = () = $log =~ /auth_cert: re-authentication required: .* request: "GET (?!\/ )/g;
is($n, scalar @cases, 'one log line per redirect');
unlike($log, qr/exited on signal/, "no worker crash");

###############################################################################
