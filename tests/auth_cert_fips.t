#!/usr/bin/perl

# Tests for tokens with OpenSSL's FIPS provider: nginx runs with the OpenSSL configuration that
# TEST_NGINX_FIPS_CONF names (the fips and base providers, default_properties = fips=yes; see
# scripts/fips-provider). An Ed25519 token key fails `nginx -t`; ES256, RS256 and HS256 keys
# sign tokens that PyJWT and jwcrypto verify; TLS with a client certificate still works, with
# FIPS-approved ciphers only.
#
# Only nginx runs with the FIPS configuration: the keys are made, and the tokens verified,
# with the OpenSSL of the system as it is.

###############################################################################

use warnings;
use strict;

use Test::More;

use JSON::PP;

BEGIN { use FindBin; chdir($FindBin::Bin); }

use lib "$FindBin::Bin/support";
use Test::Nginx;
use PKI;
use Test::Nginx::AuthCert qw/ cert_dir get connect_tls request status body config_errors /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $fips_conf = $ENV{TEST_NGINX_FIPS_CONF};
plan(skip_all => 'TEST_NGINX_FIPS_CONF does not name an OpenSSL configuration with the FIPS '
		. 'provider (scripts/fips-provider builds one)')
	unless defined $fips_conf && -f $fips_conf;

my $t = Test::Nginx->new()->has(qw/http http_ssl/)
	->has_daemon('openssl')->has_daemon('python3');

plan(skip_all => 'no PyJWT with cryptography, or no jwcrypto')
	unless system("python3 -c 'import jwt, jwcrypto, cryptography' 2>/dev/null") == 0;

my $conf = <<'EOF';

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

    auth_cert_token_key ec.key kid=ec1;
    auth_cert_token_key rsa.key kid=rsa1;
    auth_cert_token_key rsa3072.key kid=rsa2;
    auth_cert_token_issuer https://login.example;
    auth_cert_token_audience api;

    server {
        listen       127.0.0.1:8443 ssl;
        server_name  localhost;

        ssl_verify_client on;
        ssl_protocols TLSv1.2 TLSv1.3;

        location = /login {
            auth_cert_login;
        }

        location = /login-rsa {
            auth_cert_token_key rsa.key kid=rsa1;
            auth_cert_login;
        }

        location = /login-rsa3072 {
            auth_cert_token_key rsa3072.key kid=rsa2;
            auth_cert_login;
        }

        location = /login-hs {
            auth_cert_token_key hmac:secret kid=hs1;
            auth_cert_login;
        }

        location = /identity {
            auth_cert on;
            return 200 "identity=$auth_cert_identity protocol=$ssl_protocol\n";
        }
    }

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        location = /jwks {
            auth_cert_jwks;
        }
    }
}

EOF
$t->write_file_expand('nginx.conf', $conf);

my $d = $t->testdir();
my $pki = PKI->new($d);
cert_dir($d);

$pki->ca('ca', subject => '/CN=Test Root CA');
$pki->cert('server', issuer => 'ca', subject => '/CN=localhost');
$pki->cert('uid', issuer => 'ca', subject => '/DC=org/DC=example/UID=jdoe/CN=John Doe',
	ext => ['extendedKeyUsage = clientAuth']);

$pki->run_openssl("genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $d/ec.key");
$pki->run_openssl("genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out $d/rsa.key");
$pki->run_openssl("genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out $d/rsa3072.key");
$pki->run_openssl("genpkey -algorithm ED25519 -out $d/ed.key");
$pki->run_openssl("rand -out $d/secret 32");

# `nginx -t` on a configuration with the FIPS configuration (the test object is passed in, as
# to config_errors).
sub fips_config_errors {
	my ($t, $name, $conf) = @_;
	local $ENV{OPENSSL_CONF} = $fips_conf;
	return config_errors($t, $name, $conf);
}

(my $ed_conf = $conf) =~ s/(auth_cert_token_key ec\.key kid=ec1;)/auth_cert_token_key ed.key;\n    $1/;

# nginx runs with the FIPS provider; its environment is inherited by the workers.
{
	local $ENV{OPENSSL_CONF} = $fips_conf;
	$t->run();
}

$t->plan(20);

###############################################################################

# nginx -t: Ed25519 is refused with the FIPS provider, and only with it.

like(fips_config_errors($t, 'ed', $ed_conf),
	qr/\[emerg\] invalid key "\Q$d\E\/ed\.key": Ed25519 is not approved by the FIPS provider OpenSSL runs with, use a P-256 or RSA key in "auth_cert_token_key" directive in \S+ed\.conf:\d+/,
	'nginx -t: an Ed25519 key is refused under FIPS, naming the directive');
{
	# OpenSSL's defaults (the default provider), whatever the system's configuration says.
	local $ENV{OPENSSL_CONF} = '/dev/null';
	is(config_errors($t, 'ed-nofips', $ed_conf), '',
		'nginx -t: the same Ed25519 key passes without the FIPS provider');
}
is(fips_config_errors($t, 'valid', $conf), '',
	'nginx -t: ES256, RS256 (2048 and 3072 bits) and HS256 keys pass under FIPS');

# Tokens: signed under FIPS, verified by PyJWT and jwcrypto.

my $jwks_url = 'http://127.0.0.1:' . port(8080) . '/jwks';

sub login { my $body = body(get(@_)); eval { decode_json($body) } // { error => $body } }

sub verify {
	my ($token, @args) = @_;
	return { error => 'no token' } unless defined $token;
	my $out = `python3 $FindBin::Bin/support/verify_jwt.py @args '$token' 2>&1`;
	return $? == 0 ? decode_json($out) : { error => $out };
}

for ([ '/login', 'ES256', 'ec1' ], [ '/login-rsa', 'RS256', 'rsa1' ],
	[ '/login-rsa3072', 'RS256', 'rsa2' ])
{
	my ($uri, $alg, $kid) = @$_;
	my $login = login($uri, cert => 'uid');
	my $v = verify($login->{token}, '--jwks', $jwks_url, '--audience', 'api',
		'--issuer', 'https://login.example');
	is($v->{claims}{sub}, 'jdoe', "$alg ($kid): signed under FIPS, verified")
		or diag($v->{error} // $login->{error});
	is("$v->{header}{alg} $v->{header}{kid}", "$alg $kid", "$alg ($kid): header");
}

my $v = verify(login('/login-hs', cert => 'uid')->{token}, '--secret-file', "$d/secret");
is($v->{claims}{sub}, 'jdoe', 'HS256: signed under FIPS, verified') or diag($v->{error});
is($v->{header}{alg}, 'HS256', 'HS256: header');

my $jwks = eval { decode_json(body(get('/jwks'))) } // {};
is(join(' ', sort map { "$_->{kid}:$_->{kty}" } @{ $jwks->{keys} // [] }),
	'ec1:EC rsa1:RSA rsa2:RSA', 'JWKS under FIPS');

# TLS with a client certificate under the FIPS provider, TLS 1.2 and 1.3.

for my $version (qw/ TLSv1_2 TLSv1_3 /) {
	(my $name = $version) =~ tr/_/./;
	my $s = connect_tls(8443, cert => 'uid', version => $version);
	is(body(request($s, '/identity')), "identity=jdoe protocol=$name\n",
		"$name handshake with a client certificate");
}

# Resumed sessions (a ticket in TLS 1.3, the session cache or a ticket in TLS 1.2) keep the
# identity of the certificate.

for my $version (qw/ TLSv1_2 TLSv1_3 /) {
	(my $name = $version) =~ tr/_/./;
	my $cache = IO::Socket::SSL::Session_Cache->new(4);
	my $s = connect_tls(8443, cert => 'uid', version => $version, cache => $cache);
	request($s, '/identity');
	close $s if $s;
	$s = connect_tls(8443, cert => 'uid', version => $version, cache => $cache);
	my $r = body(request($s, '/identity'));
	is(($s && $s->get_session_reused ? 'resumed ' : 'full ') . $r,
		"resumed identity=jdoe protocol=$name\n", "$name session resumed");
}

my $s = connect_tls(8443, version => 'TLSv1_3');
like(status(request($s, '/identity')), qr/^(400|none)$/, 'no client certificate: refused');

# What only the FIPS provider refuses: it has no ChaCha20-Poly1305, so a client that offers
# nothing else cannot connect; AES-GCM with P-256 can.

$s = connect_tls(8443, cert => 'uid', version => 'TLSv1_3',
	SSL_ciphersuites => 'TLS_AES_128_GCM_SHA256', SSL_ecdh_curve => 'prime256v1');
is(body(request($s, '/identity')), "identity=jdoe protocol=TLSv1.3\n",
	'AES-128-GCM with P-256: accepted');

{
	local $SIG{__WARN__} = sub {};
	my $chacha = IO::Socket::SSL->new(PeerAddr => '127.0.0.1:' . port(8443),
		SSL_verify_mode => IO::Socket::SSL::SSL_VERIFY_NONE(), SSL_version => 'TLSv1_3',
		SSL_ciphersuites => 'TLS_CHACHA20_POLY1305_SHA256',
		SSL_cert_file => "$d/uid.crt", SSL_key_file => "$d/uid.key", Timeout => 5);
	ok(!$chacha, 'ChaCha20-Poly1305 alone: refused, not FIPS-approved');

}

# The signing went through: nothing logged as failed.

$t->stop();

unlike($t->read_file('error.log'), qr/\[(alert|crit)\]|signing failed/,
	'no signing failure nor alert in the log');

###############################################################################
