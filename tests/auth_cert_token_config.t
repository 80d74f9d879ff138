#!/usr/bin/perl

# Tests for the token directives: what `nginx -t` accepts and the errors it prints for bad,
# weak, missing or unsupported keys.

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

my $t = Test::Nginx->new()->has(qw/http http_ssl/)->has_daemon('openssl');

$t->write_file_expand('nginx.conf', conf('auth_cert_token_key ec.key;', 'auth_cert_login;'));

my $d = $t->testdir();
my $pki = PKI->new($d);
$pki->ca('ca');
$pki->cert('server', issuer => 'ca', subject => '/CN=localhost');

my %keys = (
	ec => 'genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256',
	p384 => 'genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384',
	ed => 'genpkey -algorithm ED25519',
	ed448 => 'genpkey -algorithm ED448',
	rsa => 'genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048',
	rsa1024 => 'genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024',
);
$pki->run_openssl("$keys{$_} -out $d/$_.key") for keys %keys;
# SEC 1 (EC PRIVATE KEY) and PKCS #1 (RSA PRIVATE KEY) files.
$pki->run_openssl("ecparam -genkey -name prime256v1 -noout -out $d/sec1.key");
$pki->run_openssl("ecparam -genkey -name secp384r1 -noout -out $d/sec1p384.key");
$pki->run_openssl("genrsa -traditional -out $d/pkcs1.key 2048");
$pki->run_openssl("genrsa -traditional -out $d/pkcs1weak.key 1024");
$pki->run_openssl("rand -out $d/secret 32");
$pki->run_openssl("rand -out $d/short 16");

$t->try_run('no auth_cert tokens')->plan(28);

###############################################################################

# A server with client certificates: `$http` at http level, `$location` in its location.
sub conf {
	my ($http, $location, %opts) = @_;
	my $verify = $opts{verify} // 'optional';
	return <<"EOF";

%%TEST_GLOBALS%%

daemon off;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    $http

    server {
        listen       127.0.0.1:8443 ssl;
        server_name  localhost;

        ssl_certificate server.crt;
        ssl_certificate_key server.key;
        ssl_client_certificate ca.crt;
        ssl_verify_client $verify;

        location / {
            $location
        }
    }
}

EOF
}

is(config_errors($t, 'valid',
		conf(<<'EOF', "auth_cert_login;\nauth_cert_token_claim role \$arg_role;")),
auth_cert_token_key ec.key kid=one;
auth_cert_token_key ed.key;
auth_cert_token_key rsa.key kid=three;
auth_cert_token_key hmac:secret kid=four;
auth_cert_token_ttl 10m;
auth_cert_token_issuer https://login.example;
auth_cert_token_audience api desktop;
EOF
	'', 'every key type and directive passes');

is(config_errors($t, 'jwks',
		conf('auth_cert_token_key ed.key;', 'auth_cert_jwks;', verify => 'off')),
	'', 'auth_cert_jwks needs no client certificates');

like(config_errors($t, 'missing', conf('auth_cert_token_key missing.key;', '')),
	qr/\[emerg\] cannot read "\Q$d\E\/missing\.key": No such file or directory .* in "auth_cert_token_key" directive in \S+missing\.conf:\d+/,
	'missing key file');

like(config_errors($t, 'rsa1024', conf('auth_cert_token_key rsa1024.key;', '')),
	qr/invalid key "\Q$d\E\/rsa1024\.key": RSA key of 1024 bits is too weak, at least 2048 bits are needed in "auth_cert_token_key" directive/,
	'short RSA key');

like(config_errors($t, 'p384', conf('auth_cert_token_key p384.key;', '')),
	qr/invalid key "\Q$d\E\/p384\.key": unsupported key algorithm: EC curve P-384, expected P-256 in "auth_cert_token_key"/,
	'unsupported curve');

like(config_errors($t, 'ed448', conf('auth_cert_token_key ed448.key;', '')),
	qr/invalid key "\Q$d\E\/ed448\.key": unsupported key algorithm: Ed448, expected P-256, Ed25519 or RSA/,
	'unknown algorithm');

my $out = config_errors($t, 'cert', conf('auth_cert_token_key server.crt;', ''));
like($out, qr/invalid key "\Q$d\E\/server\.crt": expected exactly one "PRIVATE KEY"/,
	'wrong type: a certificate');

like(config_errors($t, 'short', conf('auth_cert_token_key hmac:short;', '')),
	qr/HMAC secret of 16 bytes is too short, at least 32 bytes are needed/, 'short HMAC secret');

like(config_errors($t, 'param', conf('auth_cert_token_key ec.key alg=ES512;', '')),
	qr/invalid parameter "alg=ES512" in "auth_cert_token_key" directive/, 'unknown parameter');

like(config_errors($t, 'kid',
		conf("auth_cert_token_key ec.key kid=a;\nauth_cert_token_key ed.key kid=a;",
			'')),
	qr/duplicate kid "a" in "auth_cert_token_key" directive/, 'duplicate kid');

like(config_errors($t, 'nokey', conf('', 'auth_cert_login;')),
	qr/\[emerg\] "auth_cert_login" requires "auth_cert_token_key"/, 'login without key');

like(config_errors($t, 'hsjwks', conf('auth_cert_token_key hmac:secret;', 'auth_cert_jwks;')),
	qr/"auth_cert_jwks" requires an "auth_cert_token_key" with a public key/,
	'jwks with a secret only');

like(config_errors($t, 'noverify', conf('auth_cert_token_key ec.key;', 'auth_cert_login;',
		verify => 'off')),
	qr/"auth_cert_login" in \S+noverify\.conf:\d+ requires "ssl_verify_client on", "optional" or "optional_no_ca" in its server/,
	'login without client certificates');

like(config_errors($t, 'claim',
		conf('auth_cert_token_key ec.key;', 'auth_cert_token_claim sub x;')),
	qr/claim "sub" cannot be set in "auth_cert_token_claim" directive/, 'reserved claim');

like(config_errors($t, 'ttl', conf('auth_cert_token_ttl 5 minutes;', '')),
	qr/invalid number of arguments in "auth_cert_token_ttl" directive/, 'bad ttl');

like(config_errors($t, 'context', conf('auth_cert_token_key ec.key; auth_cert_login;', '')),
	qr/"auth_cert_login" directive is not allowed here/, 'login outside a location');

like(config_errors($t, 'both',
		conf('auth_cert_token_key ec.key;', "auth_cert_login;\nauth_cert_jwks;")),
	qr/"auth_cert_login" and "auth_cert_jwks" exclude each other in \S+both\.conf:\d+/,
	'login and jwks in one location');

is(config_errors($t, 'amr', conf(
		"auth_cert_token_amr hwk policy=2.16.840.1.101.3.2.1.3.7 policy=1.2.3;\n"
		. 'auth_cert_token_key ec.key;',
		"auth_cert_token_amr sc policy=1.2.4;\nauth_cert_token_amr hwk policy=1.2.5;")),
	'', 'auth_cert_token_amr: hwk and sc');

like(config_errors($t, 'amr-method', conf('auth_cert_token_amr pin policy=1.2.3;', '')),
	qr/\[emerg\] invalid method "pin" in "auth_cert_token_amr" directive, it must be "hwk" or "sc" in \S+amr-method\.conf:\d+/,
	'auth_cert_token_amr: unknown method');

like(config_errors($t, 'amr-word', conf('auth_cert_token_amr hwk 1.2.3;', '')),
	qr/invalid parameter "1\.2\.3" in "auth_cert_token_amr" directive, it must be "policy=OID"/,
	'auth_cert_token_amr: a parameter without policy=');

like(config_errors($t, 'amr-oid', conf('auth_cert_token_amr hwk policy=anyPolicy;', '')),
	qr/invalid certificate policy OID "anyPolicy" in "auth_cert_token_amr" directive/,
	'auth_cert_token_amr: not an OID');

like(config_errors($t, 'amr-none', conf('auth_cert_token_amr hwk;', '')),
	qr/invalid number of arguments in "auth_cert_token_amr" directive/,
	'auth_cert_token_amr: no policy');

like(config_errors($t, 'amr-twice',
		conf("auth_cert_token_amr hwk policy=1.2.3;\nauth_cert_token_amr hwk policy=1.2.4;", '')),
	qr/duplicate method "hwk" in "auth_cert_token_amr" directive/,
	'auth_cert_token_amr: a method twice');

is(config_errors($t, 'formats',
		conf("auth_cert_token_key sec1.key kid=a;\nauth_cert_token_key pkcs1.key kid=b;", '')),
	'', 'SEC 1 and PKCS #1 key files');

like(config_errors($t, 'sec1p384', conf('auth_cert_token_key sec1p384.key;', '')),
	qr/invalid key "\Q$d\E\/sec1p384\.key": not a valid P-256 EC private key in "auth_cert_token_key"/,
	'SEC 1 key of another curve');

like(config_errors($t, 'pkcs1weak', conf('auth_cert_token_key pkcs1weak.key;', '')),
	qr/RSA key of 1024 bits is too weak, at least 2048 bits are needed in "auth_cert_token_key"/,
	'short PKCS #1 RSA key');

# A bad key file is named, never shown.
my ($key_line) = $t->read_file('p384.key') =~ /^([A-Za-z0-9+\/]{40,})$/m;
unlike(config_errors($t, 'p384b', conf('auth_cert_token_key p384.key;', '')), qr/\Q$key_line\E/,
	'no key material in errors');

# nginx-conf/desktop-login.conf loads, with the files its header names.

my $desktop = "$d/desktop";
mkdir $desktop;
mkdir "$desktop/$_" for qw/ certs logs /;
system("cp $d/server.crt $d/server.key $d/ca.crt $desktop/certs/") == 0 or die;
system("cp $d/ec.key $desktop/certs/token.key") == 0 or die;
system("cp $FindBin::Bin/../nginx-conf/desktop-login.conf $desktop/nginx.conf") == 0 or die;
my $globals = $ENV{TEST_NGINX_GLOBALS} // '';
$out = `$Test::Nginx::NGINX -t -p $desktop/ -c nginx.conf -g '$globals' 2>&1`;
is($? >> 8, 0, 'nginx-conf/desktop-login.conf loads') or diag($out);

###############################################################################
