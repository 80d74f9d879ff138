#!/usr/bin/perl

# Tests for the token's `amr` claim (RFC 8176): "x509" alone unless the certificate shows
# evidence of a card or a hardware key: the smartcardLogon or PIV card-authentication EKU, or
# a certificate policy listed by auth_cert_token_amr.

###############################################################################

use warnings;
use strict;

use Test::More;

use JSON::PP;
use MIME::Base64 qw/ decode_base64url /;

BEGIN { use FindBin; chdir($FindBin::Bin); }

use lib "$FindBin::Bin/support";
use Test::Nginx;
use PKI;
use Test::Nginx::AuthCert qw/ cert_dir get body /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http http_ssl/)->has_daemon('openssl');

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

    auth_cert_token_key ec.key kid=ec1;

    # no auth_cert_token_amr
    server {
        listen       127.0.0.1:8443 ssl;
        server_name  localhost;

        location = /login {
            auth_cert_login;
        }
    }

    server {
        listen       127.0.0.1:8444 ssl;
        server_name  localhost;

        auth_cert_token_amr hwk policy=2.16.840.1.101.3.2.1.3.7 policy=1.3.6.1.4.1.55555.1;

        location = /login {
            auth_cert_login;
        }

        # Its own list: none of the server's.
        location = /login-own {
            auth_cert_token_amr sc policy=1.3.6.1.4.1.55555.2;
            auth_cert_login;
        }
    }
}

EOF

my $d = $t->testdir();
my $pki = PKI->new($d);
cert_dir($d);

$pki->ca('ca', subject => '/CN=Test Root CA');
$pki->cert('server', issuer => 'ca', subject => '/CN=localhost');
$pki->cert('uid', issuer => 'ca', subject => '/UID=plain/CN=Plain',
	ext => ['extendedKeyUsage = clientAuth']);
$pki->cert('cac', issuer => 'ca', subject => '/CN=cac',
	ext => ['extendedKeyUsage = clientAuth, 1.3.6.1.4.1.311.20.2.2']);
$pki->cert('piv', issuer => 'ca', subject => '/CN=piv',
	ext => ['extendedKeyUsage = clientAuth, 2.16.840.1.101.3.6.8']);
$pki->cert('hw', issuer => 'ca', subject => '/CN=hw',
	ext => ['certificatePolicies = 2.16.840.1.101.3.2.1.3.7']);
$pki->cert('card', issuer => 'ca', subject => '/CN=card',
	ext => ['certificatePolicies = 1.3.6.1.4.1.55555.2']);
$pki->cert('other', issuer => 'ca', subject => '/CN=other',
	ext => ['certificatePolicies = 1.3.6.1.4.1.55555.9']);

$pki->run_openssl("genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $d/ec.key");

$t->run()->plan(14);

###############################################################################

# The amr claim of the token a login with `cert` gets, as a comma-separated list.
sub amr {
	my ($port, $uri, $cert) = @_;
	my $json = eval { decode_json(body(get($uri, port => $port, cert => $cert))) } // {};
	my (undef, $claims) = split /\./, $json->{token} // '';
	my $c = eval { decode_json(decode_base64url($claims // '')) } // {};
	return join ',', @{ $c->{amr} // ['none'] };
}

is(amr(8443, '/login', 'uid'), 'x509', 'no evidence: x509 alone');
is(amr(8443, '/login', 'cac'), 'sc,hwk,x509', 'smartcardLogon EKU: a card');
is(amr(8443, '/login', 'piv'), 'sc,hwk,x509', 'PIV card-authentication EKU: a card');
is(amr(8443, '/login', 'hw'), 'x509', 'a policy nobody listed: x509 alone');
is(amr(8443, '/login', 'card'), 'x509', 'another policy nobody listed: x509 alone');

is(amr(8444, '/login', 'uid'), 'x509', 'hwk policies: no policy, x509 alone');
is(amr(8444, '/login', 'hw'), 'hwk,x509', 'hwk policy: a hardware key');
is(amr(8444, '/login', 'cac'), 'sc,hwk,x509', 'hwk policies: the card EKU still says sc');
is(amr(8444, '/login', 'card'), 'x509', 'hwk policies: a policy not listed');
is(amr(8444, '/login', 'other'), 'x509', 'hwk policies: another policy not listed');

is(amr(8444, '/login-own', 'card'), 'sc,hwk,x509', 'sc policy: a card');
is(amr(8444, '/login-own', 'hw'), 'x509', 'a level with its own list inherits none');
is(amr(8444, '/login-own', 'piv'), 'sc,hwk,x509', 'sc policy: the card EKU still says sc');
is(amr(8444, '/login-own', 'other'), 'x509', 'sc policy: a policy not listed');

###############################################################################
