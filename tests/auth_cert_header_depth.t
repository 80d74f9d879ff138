#!/usr/bin/perl

# Tests for the limits a forwarded chain (auth_cert_header) is verified with, as nginx
# verifies TLS clients: the depth (depth=N, at most N intermediate CAs, default 2) and
# OpenSSL's security level (no SHA-1 signature, no key weaker than the level allows).

###############################################################################

use warnings;
use strict;

use Test::More;

BEGIN { use FindBin; chdir($FindBin::Bin); }

use lib "$FindBin::Bin/support";
use Test::Nginx;
use PKI;
use Test::Nginx::AuthCert qw/ get status body /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http proxy/)->has_daemon('openssl');

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    error_log %%TESTDIR%%/error.log info;

    large_client_header_buffers 4 64k;

    proxy_set_header X-User $auth_cert_identity;

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        location /default/ {
            auth_cert on;
            auth_cert_header X-Client-Cert from=127.0.0.0/8 ca=root.crt;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /depth1/ {
            auth_cert on;
            auth_cert_header X-Client-Cert from=127.0.0.0/8 ca=root.crt depth=1;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /depth3/ {
            auth_cert on;
            auth_cert_header X-Client-Cert depth=3 from=127.0.0.0/8 ca=root.crt;
            proxy_pass http://127.0.0.1:8081/;
        }
    }

    server {
        listen       127.0.0.1:8081;
        server_name  localhost;

        auth_cert off;
        access_log off;

        location / {
            return 200 "user=$http_x_user\n";
        }
    }
}

EOF

my $d = $t->testdir();
my $pki = PKI->new($d);

$pki->ca('root', subject => '/CN=Test Root CA');
$pki->ca('ca1', issuer => 'root', subject => '/CN=Test CA 1');
$pki->ca('ca2', issuer => 'ca1', subject => '/CN=Test CA 2');
$pki->ca('ca3', issuer => 'ca2', subject => '/CN=Test CA 3');
$pki->cert('one', issuer => 'ca1', subject => '/UID=one');
$pki->cert('two', issuer => 'ca2', subject => '/UID=two');
$pki->cert('three', issuer => 'ca3', subject => '/UID=three');
$pki->bundle('one.pem', 'one.crt', 'ca1.crt');
$pki->bundle('two.pem', 'two.crt', 'ca2.crt', 'ca1.crt');
$pki->bundle('three.pem', 'three.crt', 'ca3.crt', 'ca2.crt', 'ca1.crt');

# Below OpenSSL's security level 1: a SHA-1 signature on the client certificate, on the
# intermediate, and a 512-bit RSA key.
$pki->cert('sha1', issuer => 'ca1', subject => '/UID=sha1', md => 'sha1');
$pki->bundle('sha1.pem', 'sha1.crt', 'ca1.crt');
$pki->ca('sha1ca', issuer => 'root', subject => '/CN=Test SHA-1 CA', md => 'sha1');
$pki->cert('undersha1', issuer => 'sha1ca', subject => '/UID=undersha1');
$pki->bundle('undersha1.pem', 'undersha1.crt', 'sha1ca.crt');
$pki->cert('rsa512', issuer => 'ca1', subject => '/UID=rsa512', key => 'rsa512');
$pki->bundle('rsa512.pem', 'rsa512.crt', 'ca1.crt');
$pki->ca('rsa512ca', issuer => 'root', subject => '/CN=Test RSA-512 CA', key => 'rsa512');
$pki->cert('under512', issuer => 'rsa512ca', subject => '/UID=under512');
$pki->bundle('under512.pem', 'under512.crt', 'rsa512ca.crt');

$t->run()->plan(21);

###############################################################################

sub fwd {
	my ($uri, $chain) = @_;
	return get($uri, headers => ['X-Client-Cert: ' . $pki->escaped($chain)]);
}

my $bad = "auth_cert: header: the forwarded client certificate is malformed or does not verify\n";

# Depth: intermediate CAs between the client certificate and the trust anchor.

like(fwd('/default/', 'one.pem'), qr/^user=one$/m, 'default depth: one intermediate');
like(fwd('/default/', 'two.pem'), qr/^user=two$/m, 'default depth: two intermediates');
my $r = fwd('/default/', 'three.pem');
is(status($r), 403, 'default depth: three intermediates refused');
is(body($r), $bad, 'default depth: three intermediates, reason header');

like(fwd('/depth1/', 'one.pem'), qr/^user=one$/m, 'depth=1: one intermediate');
is(body(fwd('/depth1/', 'two.pem')), $bad, 'depth=1: two intermediates refused');

like(fwd('/depth3/', 'three.pem'), qr/^user=three$/m, 'depth=3: three intermediates');

# Security level.

$r = fwd('/default/', 'sha1.pem');
is(status($r), 403, 'SHA-1 signed client certificate refused');
is(body($r), $bad, 'SHA-1 signed client certificate: reason header');
is(body(fwd('/default/', 'undersha1.pem')), $bad, 'SHA-1 signed intermediate refused');
is(body(fwd('/default/', 'rsa512.pem')), $bad, '512-bit RSA client key refused');
is(body(fwd('/default/', 'under512.pem')), $bad, '512-bit RSA intermediate key refused');
is(body(fwd('/depth3/', 'sha1.pem')), $bad, 'SHA-1 refused with an explicit depth too');

# Log lines: one per refusal, naming the cause.

$t->stop();

my $log = $t->read_file('error.log');
my $denied = qr/\[info\].*auth_cert: access denied: the forwarded client certificate is malformed or does not verify/;

like($log, qr/$denied \(verify failed at depth \d: certificate chain too long\), reason: header.*"GET \/default\//,
	'log: chain too long');
like($log, qr/$denied \(verify failed at depth \d: certificate chain too long\), reason: header.*"GET \/depth1\//,
	'log: chain too long for depth=1');
like($log, qr/$denied \(verify failed at depth 0: CA signature digest algorithm too weak\), reason: header/,
	'log: SHA-1 signature of the client certificate');
like($log, qr/$denied \(verify failed at depth 1: CA signature digest algorithm too weak\), reason: header/,
	'log: SHA-1 signature of the intermediate');
like($log, qr/$denied \(verify failed at depth 0: EE certificate key too weak\), reason: header/,
	'log: weak client key');
like($log, qr/$denied \(verify failed at depth 1: CA certificate key too weak\), reason: header/,
	'log: weak intermediate key');
my $n = () = $log =~ /auth_cert: access denied/g;
is($n, 7, "one log line per refusal");
unlike($log, qr/exited on signal/, 'no worker crash');

###############################################################################
