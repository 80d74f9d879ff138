#!/usr/bin/perl

# Tests for the security level a forwarded chain (auth_cert_header) is verified with: the
# level of a new TLS context, here raised to 2 by the OpenSSL configuration, as a system's
# `CipherString = DEFAULT:@SECLEVEL=2` does. Level 2 refuses RSA keys under 2048 bits.

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

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        location / {
            auth_cert on;
            auth_cert_header X-Client-Cert from=127.0.0.0/8 ca=root.crt;
            proxy_set_header X-User $auth_cert_identity;
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

$pki->ca('root', subject => '/CN=Test Root CA', key => 'rsa');
$pki->ca('ca', issuer => 'root', subject => '/CN=Test CA', key => 'rsa');
$pki->cert('rsa2048', issuer => 'ca', subject => '/UID=rsa2048', key => 'rsa');
$pki->cert('rsa1024', issuer => 'ca', subject => '/UID=rsa1024', key => 'rsa1024');
$pki->cert('ec', issuer => 'ca', subject => '/UID=ec');
$pki->bundle("$_.pem", "$_.crt", 'ca.crt') for qw/ rsa2048 rsa1024 ec /;

# nginx (its master, which reads the configuration) loads this OpenSSL configuration.
$t->write_file('openssl.cnf', <<'EOF');
openssl_conf = openssl_init

[openssl_init]
ssl_conf = ssl_sect

[ssl_sect]
system_default = system_default_sect

[system_default_sect]
CipherString = DEFAULT:@SECLEVEL=2
EOF
$ENV{OPENSSL_CONF} = "$d/openssl.cnf";

$t->run()->plan(5);

###############################################################################

sub fwd {
	my ($chain) = @_;
	return get('/', headers => ['X-Client-Cert: ' . $pki->escaped($chain)]);
}

like(fwd('rsa2048.pem'), qr/^user=rsa2048$/m, 'level 2: 2048-bit RSA key');
like(fwd('ec.pem'), qr/^user=ec$/m, 'level 2: P-256 key');
my $r = fwd('rsa1024.pem');
is(status($r), 403, 'level 2: 1024-bit RSA key refused');
is(body($r), "auth_cert: header: the forwarded client certificate is malformed or does not "
	. "verify\n", 'level 2: 1024-bit RSA key, reason header');

$t->stop();

like($t->read_file('error.log'),
	qr/\[info\].*auth_cert: access denied: .* \(verify failed at depth 0: EE certificate key too weak\), reason: header/,
	'log: weak key');

###############################################################################
