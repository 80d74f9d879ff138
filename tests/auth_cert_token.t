#!/usr/bin/perl

# Tests for auth_cert tokens: $auth_cert_token, auth_cert_login and auth_cert_jwks, each token
# verified by PyJWT and by jwcrypto (two implementations independent of the module and of each
# other, tests/support/verify_jwt.py) against the JWKS endpoint.

###############################################################################

use warnings;
use strict;

use Test::More;

use JSON::PP;
use MIME::Base64 qw/ encode_base64url decode_base64url /;

BEGIN { use FindBin; chdir($FindBin::Bin); }

use lib "$FindBin::Bin/support";
use Test::Nginx;
use PKI;
use Test::Nginx::AuthCert qw/ cert_dir get request connect_tls status body header /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http http_ssl http_v2 proxy access/)
	->has_daemon('openssl')->has_daemon('python3')->has_daemon('curl');

plan(skip_all => 'no PyJWT with cryptography, or no jwcrypto')
	unless system("python3 -c 'import jwt, jwcrypto, cryptography' 2>/dev/null") == 0;

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

    # The first key signs; all three are published.
    auth_cert_token_key ec.key kid=ec1;
    auth_cert_token_key rsa.key kid=rsa1;
    auth_cert_token_key ed.key kid=ed1;
    auth_cert_token_issuer https://login.example;
    auth_cert_token_audience api;

    server {
        # The listen parameter, not "http2 on": also nginx before 1.25.1.
        listen       127.0.0.1:8443 ssl http2;
        server_name  localhost;

        ssl_verify_client optional;

        location = /login {
            auth_cert_login;
        }

        location = /login-rsa {
            auth_cert_token_key rsa.key kid=rsa1;
            auth_cert_token_key ec.key kid=ec1;
            auth_cert_login;
        }

        location = /login-ed {
            auth_cert_token_key ed.key kid=ed1;
            auth_cert_login;
        }

        location = /login-default-kid {
            auth_cert_token_key ec.key;
            auth_cert_login;
        }

        location = /login-hs {
            auth_cert_token_key hmac:secret kid=hs1;
            auth_cert_token_key ec.key kid=ec1;
            auth_cert_login;
        }

        location = /login-aged {
            auth_cert_max_age 40s;
            auth_cert_login;
        }

        location = /login-short {
            auth_cert_token_ttl 6s;
            auth_cert_login;
        }

        location = /login-claims {
            auth_cert_token_claim role $arg_role;
            auth_cert_token_claim tenant "example $auth_cert_serial";
            auth_cert_login;
        }

        location = /login-redirect {
            auth_cert_login redirect=https://app.example/callback;
        }

        location = /login-net {
            allow 192.0.2.0/24;
            deny all;
            auth_cert_login;
        }

        location = /login-any {
            satisfy any;
            allow 127.0.0.1;
            deny all;
            auth_cert_login;
        }

        location = /jwks-hs {
            auth_cert_token_key hmac:secret kid=hs1;
            auth_cert_token_key ed.key kid=ed1;
            auth_cert_jwks;
        }

        location /api/ {
            auth_cert on;
            proxy_set_header Authorization "Bearer $auth_cert_token";
            proxy_pass http://127.0.0.1:8081/;
        }

        location /echo/ {
            auth_cert optional;
            proxy_set_header X-Token $auth_cert_token;
            proxy_pass http://127.0.0.1:8082/;
        }
    }

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        location = /jwks {
            auth_cert_jwks;
        }
    }

    server {
        listen       127.0.0.1:8082;
        server_name  localhost;

        location / {
            return 200 "token=$http_x_token\n";
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
$pki->cert('cac', issuer => 'ca', subject => '/O=U.S. Government/CN=DOE.JOHN.Q.1234567890',
	ext => ['extendedKeyUsage = clientAuth, 1.3.6.1.4.1.311.20.2.2']);
$pki->cert('noid', issuer => 'ca', subject => '/O=Example/OU=Robots');
$pki->cert('brief', issuer => 'ca', subject => '/CN=brief', end => PKI::when(90));

$pki->run_openssl("genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $d/ec.key");
$pki->run_openssl("genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out $d/rsa.key");
$pki->run_openssl("genpkey -algorithm ED25519 -out $d/ed.key");
$pki->run_openssl("rand -out $d/secret 32");

my $backend = port(8081);
$t->run_daemon('python3', "$FindBin::Bin/support/jwt_backend.py", $backend,
	'http://127.0.0.1:' . port(8080) . '/jwks', 'api');

$t->try_run('no auth_cert tokens')->plan(78);

$t->waitforsocket("127.0.0.1:$backend") or die "no token backend\n";

###############################################################################

my $jwks_url = 'http://127.0.0.1:' . port(8080) . '/jwks';

sub login { my $body = body(get(@_)); eval { decode_json($body) } // { error => $body } }

# The verdict of PyJWT and jwcrypto on a token: the header and claims, or the reason one of
# them refused it.
sub verify {
	my ($token, @args) = @_;
	my $out = `python3 $FindBin::Bin/support/verify_jwt.py @args '$token' 2>&1`;
	return $? == 0 ? decode_json($out) : { error => $out };
}

# The claims of a token, read without verifying it.
sub payload {
	my (undef, $claims) = split /\./, $_[0] // '';
	return eval { decode_json(decode_base64url($claims // '')) } // {};
}

# Several requests on one TLS connection, `pause` seconds apart; returns the bodies.
sub keepalive {
	my ($cert, $pause, @uris) = @_;
	my $s = connect_tls(8443, cert => $cert) or die "no TLS connection\n";
	my @bodies;
	for my $i (0 .. $#uris) {
		sleep $pause if $i > 0;
		push @bodies, body(request($s, $uris[$i]));
	}
	close $s;
	return @bodies;
}

my $start = time();

# auth_cert_login: JSON with a token PyJWT accepts with the key from the JWKS

my $r = get('/login', cert => 'uid');
is(status($r), 200, 'login: 200');
like(header($r, 'Content-Type'), qr{^application/json}, 'login: JSON');
is(header($r, 'Cache-Control'), 'no-store', 'login: Cache-Control no-store');

my $login = login('/login', cert => 'uid');
is($login->{identity}, 'jdoe', 'login: identity from UID');
ok($login->{auth_time} >= $start - 1 && $login->{auth_time} <= time(), 'login: auth_time');
ok($login->{expires_in} > 295 && $login->{expires_in} <= 300, 'login: expires_in');

my $v = verify($login->{token}, '--jwks', $jwks_url, '--audience', 'api',
	'--issuer', 'https://login.example');
my $c = $v->{claims} // {};
ok($c->{sub}, 'PyJWT and jwcrypto verify the ES256 token') or diag($v->{error});
is($v->{header}{alg}, 'ES256', 'header: alg ES256');
is($v->{header}{kid}, 'ec1', 'header: kid of the first key');
is($c->{sub}, 'jdoe', 'claim sub');
is($c->{iss}, 'https://login.example', 'claim iss');
is($c->{aud}, 'api', 'claim aud');
is($c->{exp} - $c->{iat}, 300, 'claim exp: 5 minutes by default');
is($c->{nbf}, $c->{iat}, 'claim nbf');
ok($c->{iat} >= $start - 1 && $c->{iat} <= time(), 'claim iat: the time of signing');
is($c->{auth_time}, $login->{auth_time}, 'claim auth_time');
is_deeply($c->{amr}, ['x509'], 'claim amr: x509 alone, no evidence of a hardware key');
like($c->{jti}, qr/^[A-Za-z0-9_-]{22}$/, 'claim jti: 128 random bits');
my $x5t = encode_base64url(pack('H*', $pki->fingerprint('uid')));
is($c->{cnf}{'x5t#S256'}, $x5t, 'claim cnf x5t#S256: SHA-256 of the certificate');

$login = login('/login-aged', cert => 'uid');
$c = verify($login->{token}, '--jwks', $jwks_url)->{claims} // {};
is($c->{exp}, $login->{auth_time} + 40, 'exp bound by auth_cert_max_age from auth_time');
ok($login->{expires_in} <= 40, 'expires_in bound by auth_cert_max_age');

$c = verify(login('/login', cert => 'cac')->{token}, '--jwks', $jwks_url)->{claims} // {};
is($c->{sub}, 'DOE.JOHN.Q.1234567890', 'smartcard: identity from CN');
is_deeply($c->{amr}, ['sc', 'hwk', 'x509'], 'smartcard: amr has sc');

# every key type, and key rotation: several keys, the first signs, all verify

$v = verify(login('/login-rsa', cert => 'uid')->{token}, '--jwks', $jwks_url);
is($v->{header}{alg}, 'RS256', 'RS256 token');
is($v->{header}{kid}, 'rsa1', 'RS256 token: kid') or diag($v->{error});
is($v->{claims}{sub}, 'jdoe', 'RS256 token verifies');

$v = verify(login('/login-ed', cert => 'uid')->{token}, '--jwks', $jwks_url);
is($v->{header}{alg}, 'EdDSA', 'EdDSA token') or diag($v->{error});
is($v->{claims}{sub}, 'jdoe', 'EdDSA token verifies');

$v = verify(login('/login-hs', cert => 'uid')->{token}, '--secret-file', "$d/secret");
is($v->{header}{alg}, 'HS256', 'HS256 token') or diag($v->{error});
is($v->{claims}{sub}, 'jdoe', 'HS256 token verifies with the secret');
like(verify(login('/login-hs', cert => 'uid')->{token}, '--jwks', $jwks_url)->{error},
	qr/invalid/, 'HS256 token: no key in the JWKS');

# auth_cert_jwks

$r = http_get('/jwks');
like(header($r, 'Content-Type'), qr{^application/json}, 'jwks: JSON');
is(header($r, 'Cache-Control'), 'public, max-age=300', 'jwks: cacheable');
my $jwks = eval { decode_json(body($r)) } // {};
my %keys = map { $_->{kid} => $_ } @{ $jwks->{keys} // [] };
is(join(',', map { $_->{kid} } @{ $jwks->{keys} // [] }), 'ec1,rsa1,ed1',
	'jwks: every key, in order');
is(join(',', map { $keys{ec1}{$_} } qw/kty crv alg use/), 'EC,P-256,ES256,sig', 'jwks: EC key');
ok(length($keys{ec1}{x}) == 43 && length($keys{ec1}{y}) == 43, 'jwks: EC coordinates');
is(join(',', map { $keys{rsa1}{$_} } qw/kty alg use e/), 'RSA,RS256,sig,AQAB', 'jwks: RSA key');
is(length($keys{rsa1}{n}), 342, 'jwks: RSA modulus of 2048 bits');
is(join(',', map { $keys{ed1}{$_} } qw/kty crv alg use/), 'OKP,Ed25519,EdDSA,sig',
	'jwks: Ed25519 key');
unlike(body($r), qr/"(d|p|q|k|dp|dq|qi)"/, 'jwks: no private member');

$r = get('/jwks-hs', SSL => 1);
is(body($r) =~ s/\s+$//r, '{"keys":[' . encode_json_canonical($keys{ed1}) . ']}',
	'jwks: an HMAC secret is never published');

sub encode_json_canonical { JSON::PP->new->canonical->encode($_[0]) }

# kid defaults to the RFC 7638 thumbprint

my ($jose) = split /\./, login('/login-default-kid', cert => 'uid')->{token} // '';
my $header = eval { decode_json(decode_base64url($jose)) } // {};
my $thumbprint = encode_base64url(pack('H*', sha256_hex(sprintf(
	'{"crv":"P-256","kty":"EC","x":"%s","y":"%s"}', $keys{ec1}{x}, $keys{ec1}{y}))));
is($header->{kid}, $thumbprint, 'default kid: RFC 7638 thumbprint');

sub sha256_hex {
	my ($data) = @_;
	my $file = "$d/thumbprint.in";
	open my $fh, '>', $file or die; print $fh $data; close $fh;
	my $out = `openssl dgst -sha256 -r $file`;
	return (split ' ', $out)[0];
}

# a token is reused on a connection until half its TTL has passed

my @b = keepalive('uid', 0, '/login', '/login');
my ($one, $two) = map { eval { decode_json($_) } // {} } @b;
ok($one->{token}, 'keep-alive: token');
is($two->{token}, $one->{token}, 'keep-alive: the same token is reused');

# (A full handshake in the same second is the same authentication: same auth_time.)
my $second = time();
select undef, undef, undef, 0.05 while time() == $second;
isnt(login('/login', cert => 'uid')->{token}, $one->{token},
	'a new full handshake gets a new token');

@b = keepalive('uid', 1, '/login-short', '/login-short');
($one, $two) = map { eval { decode_json($_) } // {} } @b;
is($two->{token}, $one->{token}, 'ttl 6s: reused after 1s');

# (Read without verification: the first token is close to its expiry by now.)
@b = keepalive('uid', 4, '/login-short', '/login-short');
($one, $two) = map { payload($_->{token}) } map { eval { decode_json($_) } // {} } @b;
is($one->{exp} - $one->{iat}, 6, 'ttl 6s: lifetime');
ok($two->{jti} && $two->{jti} ne $one->{jti}, 'ttl 6s: new jti after half the TTL');
ok($two->{iat} >= $one->{iat} + 3, 'ttl 6s: new iat after half the TTL');

# an expired token is refused by both libraries
sleep 3;
like(verify((eval { decode_json($b[0]) } // {})->{token}, '--jwks', $jwks_url)->{error},
	qr/PyJWT: ExpiredSignature.*; jwcrypto: JWTExpired/, 'ttl 6s: expired token refused by both');

# HTTP/2: the streams of one connection share the token

my $url = 'https://127.0.0.1:' . port(8443) . '/login';
my @h2 = split /\n/, `curl -sk --http2 --cert $d/uid.crt --key $d/uid.key -w '%{http_version}\n' $url $url`;
is("$h2[1] $h2[3]", '2 2', 'HTTP/2: two streams');
($one, $two) = map { eval { decode_json($_) } // {} } @h2[0, 2];
ok($one->{token}, 'HTTP/2: token');
is($two->{token}, $one->{token}, 'HTTP/2: the same token on the second stream');

# a token never outlives the certificate

$c = verify(login('/login', cert => 'brief')->{token}, '--jwks', $jwks_url)->{claims} // {};
ok($c->{exp} && $c->{exp} - time() <= 90, 'exp bounded by the certificate');

# claims with variables; tokens with other claim values are not shared

@b = keepalive('uid', 0, '/login-claims?role=admin', '/login-claims?role=user',
	'/login-claims?role=admin');
my @claims = map { verify($_->{token}, '--jwks', $jwks_url)->{claims} // {} }
	map { eval { decode_json($_) } // {} } @b;
is($claims[0]{role}, 'admin', 'claim with a variable');
is($claims[0]{tenant}, 'example ' . $pki->serial('uid'), 'claim with text and a variable');
is($claims[1]{role}, 'user', 'claim value per request');
is($claims[2]{jti}, $claims[0]{jti}, 'token reused for the same claim values');

# redirect with the token in the fragment

$r = get('/login-redirect', cert => 'uid');
is(status($r), 302, 'redirect: 302');
is(header($r, 'Cache-Control'), 'no-store', 'redirect: no-store');
my ($token) = (header($r, 'Location') // '')
	=~ m!^https://app\.example/callback#access_token=([^&]+)&token_type=Bearer&expires_in=\d+$!;
is(verify($token // '', '--jwks', $jwks_url)->{claims}{sub}, 'jdoe', 'redirect: token verifies');

# rejections follow the module's rules

$r = get('/login', SSL => 1);
is(status($r), 400, 'login without certificate: 400 (nginx 496)');
is(body($r), "auth_cert: no_cert: no client certificate was sent\n", 'login: no_cert body');
$r = get('/login', cert => 'noid');
is(status($r), 403, 'login without identity: 403');
is(status(get('/login-net', cert => 'uid')), 403, 'login: deny by network');
$r = get('/login-any', SSL => 1);
is(status($r), 400, 'login under satisfy any: still no token without a certificate');
unlike($r, qr/token/, 'login under satisfy any: no token');
is(login('/login-any', cert => 'uid')->{identity}, 'jdoe', 'login under satisfy any: login');

# methods

$r = http(<<EOF, SSL => 1, SSL_cert_file => "$d/uid.crt", SSL_key_file => "$d/uid.key");
POST /login HTTP/1.0
Host: localhost
Content-Length: 5

hello
EOF
is((eval { decode_json(body($r)) } // {})->{identity}, 'jdoe', 'login: POST');
$r = http(<<EOF, SSL => 1, SSL_cert_file => "$d/uid.crt", SSL_key_file => "$d/uid.key");
PUT /login HTTP/1.0
Host: localhost

EOF
is(status($r), 405, 'login: PUT not allowed');
$r = http(<<EOF, SSL => 1, SSL_cert_file => "$d/uid.crt", SSL_key_file => "$d/uid.key");
HEAD /login HTTP/1.0
Host: localhost

EOF
is(status($r) . body($r), '200', 'login: HEAD');

# $auth_cert_token reaches a backend that verifies it against the JWKS

is(body(get('/api/', cert => 'uid')), "sub=jdoe kid=ec1\n", 'backend verifies the bearer token');
is(status(get('/api/', SSL => 1)), 400, 'backend: no certificate, no request');
like(get('/echo/', cert => 'uid'), qr/^token=[\w-]+\.[\w-]+\.[\w-]+$/m, '$auth_cert_token');
like(get('/echo/', SSL => 1), qr/^token=$/m, '$auth_cert_token is empty without authentication');

# the error log: rejections at info, no key material anywhere

$t->stop();

my $log = $t->read_file('error.log');
like($log, qr/\[info\].*auth_cert: access denied: .*reason: identity, identity: "", serial: \w+/,
	'log: login rejection');
like($log, qr/\[info\].*auth_cert: access denied: .*reason: no_cert, .*request: "GET \/login-any /,
	'log: login rejection under satisfy any');
my $ec_key = $t->read_file('ec.key');
my ($ec_line) = $ec_key =~ /^([A-Za-z0-9+\/]{40,})$/m;
unlike($log, qr/\Q$ec_line\E/, 'log: no key material');

###############################################################################
