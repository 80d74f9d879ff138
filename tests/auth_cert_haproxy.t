#!/usr/bin/perl

# Tests for auth_cert_header format=der64 behind a real HAProxy: HAProxy terminates TLS with
# client verification and forwards %[ssl_c_der,base64] and %[ssl_c_chain_der,base64] to
# nginx, which verifies the certificate again and maps the identity; a header spoofed
# through HAProxy or sent straight to nginx from another address is removed and refused.

###############################################################################

use warnings;
use strict;

use Test::More;

BEGIN { use FindBin; chdir($FindBin::Bin); }

use lib "$FindBin::Bin/support";
use Test::Nginx;
use PKI;
use Test::Nginx::AuthCert qw/ cert_dir get status body /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

# Debian installs it in /usr/sbin, which a user's PATH may lack.
my ($haproxy) = grep { -f && -x _ }
	map { "$_/haproxy" } File::Spec->path(), '/usr/sbin', '/usr/local/sbin';
plan(skip_all => 'haproxy is not installed (scripts/test installs the haproxy package)')
	unless $haproxy;

my $t = Test::Nginx->new()->has(qw/http proxy/)->has_daemon('openssl');

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    error_log %%TESTDIR%%/error.log info;

    proxy_set_header X-User $auth_cert_identity;
    proxy_set_header X-Auth "$auth_cert_status/$auth_cert_reason/$auth_cert_source";

    # HAProxy connects from 127.0.0.2, the only trusted address; the tests from 127.0.0.1.
    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        auth_cert_header X-SSL-Client-Der from=127.0.0.2 ca=root.crt format=der64
                         chain=X-SSL-Client-Chain;

        location / {
            auth_cert on;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /optional/ {
            auth_cert optional;
            proxy_pass http://127.0.0.1:8081/;
        }

        # The issuing CA in the CA file: the leaf alone verifies.
        location /bundle/ {
            auth_cert on;
            auth_cert_header X-SSL-Client-Der from=127.0.0.2 ca=cas.crt format=der64
                             chain=X-SSL-Client-Chain;
            proxy_pass http://127.0.0.1:8081/;
        }
    }

    server {
        listen       127.0.0.1:8081;
        server_name  localhost;

        access_log off;

        location / {
            return 200 "user=$http_x_user auth=$http_x_auth fwd=[$http_x_ssl_client_der|$http_x_ssl_client_chain]\n";
        }
    }
}

EOF

$t->write_file_expand('haproxy.cfg', <<'EOF');
global
    maxconn 64

defaults
    mode http
    timeout connect 5s
    timeout client 10s
    timeout server 10s

frontend tls
    bind 127.0.0.1:%%PORT_8443%% ssl crt %%TESTDIR%%/haproxy.pem ca-file %%TESTDIR%%/cas.crt verify optional
    http-request del-header X-SSL-Client-Der
    http-request del-header X-SSL-Client-Chain
    http-request set-header X-SSL-Client-Der %[ssl_c_der,base64] if { ssl_c_used }
    http-request set-header X-SSL-Client-Chain %[ssl_c_chain_der,base64] if { ssl_c_used }
    default_backend nginx

backend nginx
    server nginx 127.0.0.1:%%PORT_8080%% source 127.0.0.2
EOF

my $d = $t->testdir();
my $pki = PKI->new($d);
cert_dir($d);

$pki->ca('root', subject => '/O=Example/CN=Example Root CA');
$pki->ca('issuing', issuer => 'root', subject => '/O=Example/CN=Example Issuing CA');
$pki->bundle('cas.crt', 'root.crt', 'issuing.crt');
$pki->cert('server', issuer => 'root', subject => '/CN=localhost');
$pki->bundle('haproxy.pem', 'server.crt', 'server.key');
$pki->cert('alice', issuer => 'issuing', subject => '/O=Example/UID=alice/CN=Alice',
	ext => ['extendedKeyUsage = clientAuth']);
# The client sends its chain: leaf and issuing CA.
$pki->bundle('alicechain.crt', 'alice.crt', 'issuing.crt');
$pki->bundle('alicechain.key', 'alice.key');

$t->try_run('no auth_cert')->plan(9);

$t->run_daemon($haproxy, '-db', '-f', "$d/haproxy.cfg");
$t->waitforsocket('127.0.0.1:' . port(8443)) or die "haproxy did not start\n";

###############################################################################

my $alice = $pki->der64('alice.crt');

my $r = get('/', port => 8443, cert => 'alicechain');
like($r, qr/^user=alice auth=ok\/\/header fwd=\[\|\]$/m,
	'through HAProxy with leaf and chain: accepted, headers not passed upstream');
like(get('/bundle/', port => 8443, cert => 'alice'), qr/^user=alice auth=ok\/\/header /m,
	'through HAProxy with the leaf only, issuing CA in the ca= file');
like(get('/', port => 8443, cert => 'alice'), qr/^auth_cert: header: /m,
	'leaf only, issuing CA unknown to nginx: header');
like(get('/', port => 8443, SSL => 1, headers => ["X-SSL-Client-Der: $alice"]),
	qr/^HTTP\/1\.\d 400/, 'spoofed header through HAProxy without a certificate: no_cert');

# Straight to nginx, from 127.0.0.1

$r = get('/', headers => ["X-SSL-Client-Der: $alice"]);
is(status($r), 403, 'spoofed header from an untrusted address: 403');
is(body($r),
	"auth_cert: network: a forwarded client certificate is not accepted from this address\n",
	'spoofed header from an untrusted address: network');
like(get('/optional/', headers => ["X-SSL-Client-Der: $alice", "X-SSL-Client-Chain: x"]),
	qr/^user= auth=invalid\/network\/ fwd=\[\|\]$/m,
	'spoofed headers from an untrusted address: removed, no identity');

$t->stop();

my $log = $t->read_file('error.log');
like($log, qr/\(verify failed at depth 0: unable to get local issuer certificate\), reason: header/,
	'log: leaf without its issuing CA');
like($log, qr/reason: network, .* client: 127\.0\.0\.1/, 'log: untrusted address');

###############################################################################
