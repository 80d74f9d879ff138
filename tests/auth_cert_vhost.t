#!/usr/bin/perl

# Tests for auth_cert with several TLS servers on one address, each trusting its own CA: a
# certificate counts as verified only when the server that serves the request verified it.
# Without SNI the handshake runs in the default server, and Host may name another one.

###############################################################################

use warnings;
use strict;

use Test::More;

BEGIN { use FindBin; chdir($FindBin::Bin); }

use lib "$FindBin::Bin/support";
use Test::Nginx;
use PKI;
use Test::Nginx::AuthCert qw/ cert_dir get /;

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
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:1m;

    auth_cert on;

    server {
        listen       127.0.0.1:8443 ssl default_server;
        server_name  x;

        ssl_client_certificate ca_x.crt;
        ssl_verify_client on;

        location / {
            proxy_set_header X-Seen "server x: $auth_cert_identity";
            proxy_pass http://127.0.0.1:8081/;
        }
    }

    server {
        listen       127.0.0.1:8443 ssl;
        server_name  y;

        ssl_client_certificate ca_y.crt;
        ssl_verify_client on;

        location / {
            proxy_set_header X-Seen "server y: $auth_cert_identity";
            proxy_pass http://127.0.0.1:8081/;
        }
    }

    server {
        listen       127.0.0.1:8081;
        server_name  localhost;

        auth_cert off;

        location / {
            return 200 "$http_x_seen\n";
        }
    }
}

EOF

my $d = $t->testdir();
my $pki = PKI->new($d);
cert_dir($d);

$pki->ca('ca_x', subject => '/CN=Tenant X CA');
$pki->ca('ca_y', subject => '/CN=Tenant Y CA');
$pki->cert('server', issuer => 'ca_x', subject => '/CN=localhost');
$pki->cert('alice', issuer => 'ca_x', subject => '/UID=alice/CN=Alice');
$pki->cert('bob', issuer => 'ca_y', subject => '/UID=bob/CN=Bob');

$t->try_run('no auth_cert')->plan(6);

###############################################################################

# No SNI: SSL_hostname ''.

like(get('/', cert => 'alice', SSL_hostname => '', host => 'x'),
	qr/^HTTP\/1\.. 200.*server x: alice$/ms, 'no SNI, default server: its own tenant');
like(get('/', cert => 'alice', SSL_hostname => 'x', host => 'x'),
	qr/^HTTP\/1\.. 200.*server x: alice$/ms, 'SNI x, host x');
like(get('/', cert => 'bob', SSL_hostname => 'y', host => 'y'),
	qr/^HTTP\/1\.. 200.*server y: bob$/ms, 'SNI y, host y');

# The hole: X's certificate, verified against X's CA in the default server's handshake,
# must not authenticate a request that Host sends to server y.

my $r = get('/', cert => 'alice', SSL_hostname => '', host => 'y');
like($r, qr/^HTTP\/1\.. 400 .*auth_cert: verify:/ms, 'no SNI, host y: refused');
unlike($r, qr/server y: alice/, 'no SNI, host y: no identity');

$t->stop();

like($t->read_file('error.log'),
	qr/certificate verified for another server.*reason: verify/,
	'refusal logged');

###############################################################################
