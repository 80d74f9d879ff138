#!/usr/bin/perl

# Tests for the configuration of auth_cert_header and auth_cert_identity_arg: what `nginx -t`
# accepts (a plain-HTTP server behind a load balancer) and the errors it prints.

###############################################################################

use warnings;
use strict;

use Test::More;

BEGIN { use FindBin; chdir($FindBin::Bin); }

use lib "$FindBin::Bin/support";
use Test::Nginx;
use PKI;
use Test::Nginx::AuthCert qw/ config_errors /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http/)->has_daemon('openssl');

$t->write_file_expand('nginx.conf', conf('auth_cert_header X-Cert from=10.0.0.0/8 ca=ca.crt;'));

my $d = $t->testdir();
my $pki = PKI->new($d);
$pki->ca('ca');
$t->write_file('notcert.crt', "not a certificate\n");

$t->try_run('no auth_cert')->plan(19);

###############################################################################

# A plain-HTTP server with `$extra` in its location.
sub conf {
	my ($extra) = @_;
	return <<"EOF";

%%TEST_GLOBALS%%

daemon off;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        location / {
            auth_cert on;
            $extra
        }
    }
}

EOF
}

is(config_errors($t, 'lb',
		conf('auth_cert_header X-Cert from=10.0.0.0/8 from=2001:db8::/32 ca=ca.crt;')),
	'', 'auth_cert on behind a load balancer, without TLS');
is(config_errors($t, 'rig', conf('auth_cert_identity_arg as_user from=127.0.0.1;')), '',
	'auth_cert on with an identity argument, without TLS');
like(config_errors($t, 'plain', conf('')),
	qr/"auth_cert" in \S+plain\.conf:\d+ requires "ssl_verify_client/,
	'auth_cert without TLS and without a forwarded credential');

like(config_errors($t, 'noca', conf('auth_cert_header X-Cert from=10.0.0.0/8 ca=missing.crt;')),
	qr/\[emerg\] cannot load CA certificates from "\S+\/missing\.crt" in "auth_cert_header" directive in \S+noca\.conf:\d+/,
	'CA file missing, named');
like(config_errors($t, 'badca', conf('auth_cert_header X-Cert from=10.0.0.0/8 ca=notcert.crt;')),
	qr/cannot load CA certificates from "\S+\/notcert\.crt" in "auth_cert_header" directive/,
	'CA file without certificates');
like(config_errors($t, 'cidr', conf('auth_cert_header X-Cert from=10.0.0.0/33 ca=ca.crt;')),
	qr/invalid network "10\.0\.0\.0\/33" in "auth_cert_header" directive/, 'bad CIDR');
like(config_errors($t, 'nofrom', conf('auth_cert_header X-Cert ca=ca.crt;')),
	qr/missing "from=" parameter in "auth_cert_header" directive/, 'no from=');
like(config_errors($t, 'param',
		conf('auth_cert_header X-Cert from=10.0.0.0/8 ca=ca.crt verify=off;')),
	qr/invalid parameter "verify=off" in "auth_cert_header" directive/, 'unknown parameter');
is(config_errors($t, 'depth', conf('auth_cert_header X-Cert from=10.0.0.0/8 ca=ca.crt depth=0;')),
	'', 'depth=0');
like(config_errors($t, 'baddepth',
		conf('auth_cert_header X-Cert from=10.0.0.0/8 ca=ca.crt depth=-1;')),
	qr/\[emerg\] invalid depth "-1", it must be a number from 0 to 100 in "auth_cert_header" directive in \S+baddepth\.conf:\d+/,
	'negative depth');
like(config_errors($t, 'bigdepth',
		conf('auth_cert_header X-Cert from=10.0.0.0/8 ca=ca.crt depth=101;')),
	qr/invalid depth "101", it must be a number from 0 to 100 in "auth_cert_header" directive/,
	'depth too large');
like(config_errors($t, 'twodepths',
		conf('auth_cert_header X-Cert from=10.0.0.0/8 ca=ca.crt depth=1 depth=2;')),
	qr/invalid parameter "depth=2" in "auth_cert_header" directive/, 'depth= twice');
like(config_errors($t, 'name', conf('auth_cert_header X:Cert from=10.0.0.0/8 ca=ca.crt;')),
	qr/invalid name "X:Cert" in "auth_cert_header" directive/, 'bad header name');
is(config_errors($t, 'formats',
		conf('auth_cert_header Client-Cert from=10.0.0.0/8 ca=ca.crt format=rfc9440'
			. ' chain=Client-Cert-Chain;')),
	'', 'format=rfc9440 with chain=');
like(config_errors($t, 'format',
		conf('auth_cert_header X-Cert from=10.0.0.0/8 ca=ca.crt format=base64;')),
	qr/invalid parameter "format=base64": format is pem, rfc9440, xfcc or der64 in "auth_cert_header" directive/,
	'unknown format');
like(config_errors($t, 'xfccchain',
		conf('auth_cert_header XFCC from=10.0.0.0/8 ca=ca.crt format=xfcc chain=X;')),
	qr/"chain=" with "format=xfcc": the chain is in its "Chain=" in "auth_cert_header" directive/,
	'chain= with format=xfcc');
like(config_errors($t, 'samechain',
		conf('auth_cert_header X-Cert from=10.0.0.0/8 ca=ca.crt chain=x-cert;')),
	qr/invalid parameter "chain=x-cert" in "auth_cert_header" directive/,
	'chain header named as the certificate header');
like(config_errors($t, 'argcidr', conf('auth_cert_identity_arg u from=localhost;')),
	qr/invalid network "localhost" in "auth_cert_identity_arg" directive/,
	'bad CIDR in auth_cert_identity_arg');
like(config_errors($t, 'dup',
		conf("auth_cert_header X from=::1 ca=ca.crt;\nauth_cert_header Y from=::1 ca=ca.crt;")),
	qr/"auth_cert_header" directive is duplicate/, 'duplicate auth_cert_header');

###############################################################################
