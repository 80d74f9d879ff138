#!/usr/bin/perl

# Tests for auth_cert: certificate checks, identity, variables reaching a backend,
# rejections with their bodies and log lines.

###############################################################################

use warnings;
use strict;

use Test::More;

BEGIN { use FindBin; chdir($FindBin::Bin); }

use lib "$FindBin::Bin/support";
use Test::Nginx;
use PKI;
use Test::Nginx::AuthCert qw/ cert_dir get request connect_tls status body /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http http_ssl proxy rewrite map/)
	->has_daemon('openssl');

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    error_log %%TESTDIR%%/error.log info;

    log_format auth '$auth_cert_status $auth_cert_reason "$auth_cert_identity"';
    access_log %%TESTDIR%%/access.log auth;

    map $auth_cert_identity $is_jdoe {
        jdoe     yes;
        default  no;
    }

    ssl_certificate server.crt;
    ssl_certificate_key server.key;
    ssl_client_certificate ca.crt;

    proxy_set_header X-User $auth_cert_identity;
    proxy_set_header X-Auth "$auth_cert_status/$auth_cert_reason";
    proxy_set_header X-Cert "$auth_cert_serial|$auth_cert_fingerprint";
    proxy_set_header X-DN "$auth_cert_subject|$auth_cert_issuer";

    server {
        listen       127.0.0.1:8443 ssl;
        server_name  localhost;

        ssl_verify_client optional;

        location /on/ {
            auth_cert on;
            add_header X-Identity $auth_cert_identity;
            add_header X-Jdoe $is_jdoe;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /optional/ {
            auth_cert optional;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /cn/ {
            auth_cert on;
            auth_cert_identity cn;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /pages/ {
            auth_cert on;
            error_page 496 /nocert.html;
            error_page 403 /denied.html;
            proxy_pass http://127.0.0.1:8081/;
        }

        location = /nocert.html {
            return 200 "custom page: no certificate\n";
        }

        location = /denied.html {
            return 200 "custom page: denied\n";
        }

        location /off/ {
            proxy_pass http://127.0.0.1:8081/;
        }

        location = /dn {
            return 200 "$ssl_client_s_dn|$ssl_client_i_dn|$ssl_client_serial\n";
        }
    }

    server {
        listen       127.0.0.1:8444 ssl;
        server_name  localhost;

        ssl_verify_client on;
        auth_cert on;

        location / {
            proxy_pass http://127.0.0.1:8081/;
        }
    }

    server {
        listen       127.0.0.1:8445 ssl;
        server_name  localhost;

        ssl_verify_client optional_no_ca;

        location /on/ {
            auth_cert on;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /optional/ {
            auth_cert optional;
            proxy_pass http://127.0.0.1:8081/;
        }
    }

    server {
        listen       127.0.0.1:8081;
        server_name  localhost;

        access_log off;

        location / {
            return 200 "user=$http_x_user auth=$http_x_auth cert=$http_x_cert dn=$http_x_dn\n";
        }
    }
}

EOF

my $d = $t->testdir();
my $pki = PKI->new($d);
cert_dir($d);

$pki->ca('ca', subject => '/CN=Test Root CA');
$pki->cert('server', issuer => 'ca', subject => '/CN=localhost');
$pki->cert('uid', issuer => 'ca', subject => '/DC=org/DC=example/UID=jdoe/CN=John Doe',
	ext => ['extendedKeyUsage = clientAuth']);
$pki->cert('cn', issuer => 'ca', subject => '/O=Example/CN=Jane Roe');
$pki->cert('noid', issuer => 'ca', subject => '/O=Example/OU=Robots');
$pki->ca('rogue', subject => '/CN=Rogue CA');
$pki->cert('stranger', issuer => 'rogue', subject => '/UID=admin/CN=Mallory');

$t->try_run('no auth_cert')->plan(37);

###############################################################################

my $uid_serial = $pki->serial('uid');
my $uid_fp = $pki->fingerprint('uid');

# auth_cert on

my $r = get('/on/', cert => 'uid');
like($r, qr/^user=jdoe auth=ok\/ /m, 'uid wins over cn');
like($r, qr/^X-Identity: jdoe/mi, 'identity in add_header');
like($r, qr/^X-Jdoe: yes/mi, 'identity in map');
like($r, qr/cert=$uid_serial\|$uid_fp /, 'serial and SHA-256 fingerprint');

my $dn = body(get('/dn', cert => 'uid'));
chomp $dn;
my ($ssl_s_dn, $ssl_i_dn) = split /\|/, $dn;
like($r, qr/dn=\Q$ssl_s_dn|$ssl_i_dn\E$/m, 'subject and issuer as $ssl_client_s_dn');

like(get('/on/', cert => 'cn'), qr/^user=Jane Roe auth=ok\/ /m, 'cn when no uid');
like(get('/cn/', cert => 'uid'), qr/^user=John Doe /m, 'auth_cert_identity cn');

$r = get('/on/', SSL => 1);
is(status($r), 400, 'no certificate: 400 (nginx 496)');
is(body($r), "auth_cert: no_cert: no client certificate was sent\n", 'no certificate body');
like($r, qr/^Connection: close/mi, 'no certificate closes the connection');

$r = get('/on/', cert => 'noid');
is(status($r), 403, 'no identity: 403');
is(body($r), "auth_cert: identity: no identity found in the client certificate\n",
	'no identity body');

like(get('/on/', cert => 'stranger'), qr/^HTTP\/1\.\d 400/,
	'unknown CA: refused by nginx before the module');

# error_page sees the module's statuses

like(get('/pages/', SSL => 1), qr/custom page: no certificate/, 'error_page 496');
like(get('/pages/', cert => 'noid'), qr/custom page: denied/, 'error_page 403');
like(get('/pages/', cert => 'uid'), qr/^user=jdoe /m, 'error_page location passes');

# auth_cert optional: every status reaches the backend

like(get('/optional/', cert => 'uid'), qr/^user=jdoe auth=ok\/ /m, 'optional ok');
like(get('/optional/', SSL => 1), qr/^user= auth=none\/no_cert cert=\| dn=\|$/m,
	'optional none');
like(get('/optional/', cert => 'noid'), qr/^user= auth=denied\/identity cert=\w+\|\w+ /m,
	'optional denied');

# spoofed headers never override the module

like(get('/on/', cert => 'cn', headers => ['X-User: admin']), qr/^user=Jane Roe /m,
	'spoofed X-User replaced');
like(get('/optional/', SSL => 1, headers => ['X-User: admin']), qr/^user= auth=none/m,
	'spoofed X-User removed without certificate');
like(get('/off/', SSL => 1, headers => ['X-Auth: ok/']), qr/^user= auth=none\/no_cert /m,
	'variables evaluate where auth_cert is off');

# ssl_verify_client on: nginx answers first, the module sees verified certificates only

like(get('/', port => 8444, cert => 'uid'), qr/^user=jdoe auth=ok\/ /m, 'verify on: passes');
like(get('/', port => 8444, SSL => 1), qr/^HTTP\/1\.\d 400/, 'verify on: no certificate');

# optional_no_ca: a certificate nginx did not verify is never trusted

$r = get('/on/', port => 8445, cert => 'stranger');
is(status($r), 400, 'optional_no_ca: unverified rejected (nginx 495)');
is(body($r), "auth_cert: verify: the client certificate could not be verified\n",
	'optional_no_ca body');
like(get('/optional/', port => 8445, cert => 'stranger'),
	qr/^user= auth=invalid\/verify cert=\| dn=\|$/m,
	'optional_no_ca: nothing of an unverified certificate reaches the backend');
like(get('/on/', port => 8445, cert => 'uid'), qr/^user=jdoe auth=ok/m,
	'optional_no_ca: verified certificate passes');

# HTTP/1.1 keep-alive: the second request reuses the connection's certificate

$r = http(<<EOF, SSL => 1, SSL_cert_file => "$d/uid.crt", SSL_key_file => "$d/uid.key");
GET /on/ HTTP/1.1
Host: localhost

GET /cn/ HTTP/1.1
Host: localhost

GET /optional/ HTTP/1.1
Host: localhost
Connection: close

EOF
like($r, qr/user=jdoe auth=ok.*user=John Doe auth=ok.*user=jdoe auth=ok/s,
	'one connection, each location its own identity sources');

# Connections presenting the same certificate share its parse: one that stays open keeps
# its identity while another with the same certificate comes and goes.

my $s = connect_tls(8443, cert => 'uid');
like(request($s, '/on/'), qr/^user=jdoe auth=ok/m, 'shared parse: first connection');
like(get('/on/', cert => 'cn'), qr/^user=Jane Roe auth=ok/m,
	'shared parse: another certificate meanwhile');
like(get('/on/', cert => 'uid'), qr/^user=jdoe auth=ok\/ cert=$uid_serial\|$uid_fp /m,
	'shared parse: second connection with the same certificate');
like(request($s, '/on/', Connection => 'close'),
	qr/^user=jdoe auth=ok\/ cert=$uid_serial\|$uid_fp /m,
	'shared parse: first connection after the second has closed');

# log lines

$t->stop();

my $log = $t->read_file('error.log');
like($log, qr/\[info\].*auth_cert: access denied: no client certificate was sent, reason: no_cert, identity: "", serial: -, client: 127\.0\.0\.1/,
	'log: no certificate');
my $noid_serial = $pki->serial('noid');
like($log, qr/auth_cert: access denied: .*reason: identity, identity: "", serial: $noid_serial, client: 127\.0\.0\.1/,
	'log: identity with serial');
my $stranger_serial = $pki->serial('stranger');
like($log, qr/reason: verify, identity: "admin", serial: $stranger_serial/,
	'log: unverified certificate');

like($t->read_file('access.log'), qr/^ok  "jdoe"$/m, 'identity in log_format');

###############################################################################
