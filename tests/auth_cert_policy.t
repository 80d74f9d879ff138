#!/usr/bin/perl

# Tests for auth_cert policy and identity with certificates like the real ones: a CAC-like
# certificate under an intermediate CA, a PIV-like one, an e-mail-only one and a software
# certificate; every policy rejection, validity re-checked per request, the certificate
# variables, non-ASCII and duplicate attributes.

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

my $t = Test::Nginx->new()->has(qw/http http_ssl proxy/)->has_daemon('openssl');

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
    ssl_client_certificate cas.crt;
    ssl_verify_depth 2;

    proxy_set_header X-User $auth_cert_identity;
    proxy_set_header X-Auth "$auth_cert_status/$auth_cert_reason/$auth_cert_source";
    proxy_set_header X-Mail "$auth_cert_email|$auth_cert_upn|$auth_cert_not_after";
    proxy_set_header X-DN "$auth_cert_subject";

    server {
        listen       127.0.0.1:8443 ssl;
        server_name  localhost;

        ssl_verify_client optional;

        # The smartcard policy: DoD-like issuer, policy and EKUs, identity = EDIPI.
        location /cac/ {
            auth_cert on;
            auth_cert_eku clientAuth smartcardLogon;
            auth_cert_key_usage digitalSignature;
            auth_cert_policy 2.16.840.1.101.2.1.11.39 2.16.840.1.101.2.1.11.42;
            auth_cert_issuer "^CN=Test DOD ID CA-\d+,OU=PKI,OU=DoD,O=U\.S\. Government,C=US$";
            auth_cert_identity cn;
            auth_cert_identity_regex "\.(?<id>\d{10})$";
            proxy_pass http://127.0.0.1:8081/;
        }

        location /upn/ {
            auth_cert on;
            auth_cert_identity upn;
            auth_cert_identity_regex "^(\d{10})@mil$";
            proxy_pass http://127.0.0.1:8081/;
        }

        location /piv/ {
            auth_cert on;
            auth_cert_eku 2.16.840.1.101.3.6.8;
            auth_cert_policy 2.16.840.1.101.3.2.1.3.13;
            auth_cert_identity san_uri;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /email/ {
            auth_cert on;
            auth_cert_identity email;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /sources/ {
            auth_cert on;
            auth_cert_identity upn email san_dns uid cn;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /oid/ {
            auth_cert on;
            auth_cert_identity oid:2.5.4.5 serial;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /fingerprint/ {
            auth_cert on;
            auth_cert_identity fingerprint;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /subject/ {
            auth_cert on;
            auth_cert_identity subject;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /ku/ {
            auth_cert on;
            auth_cert_key_usage keyAgreement;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /policy/ {
            auth_cert on;
            auth_cert_policy 1.2.3.4;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /issuer/ {
            auth_cert on;
            auth_cert_issuer "^CN=Somebody Else";
            proxy_pass http://127.0.0.1:8081/;
        }

        location /optional/ {
            auth_cert optional;
            proxy_pass http://127.0.0.1:8081/;
        }

        location = /dn {
            return 200 "$ssl_client_s_dn\n";
        }
    }

    server {
        listen       127.0.0.1:8081;
        server_name  localhost;

        access_log off;

        location / {
            return 200 "user=$http_x_user auth=$http_x_auth mail=$http_x_mail dn=$http_x_dn\n";
        }
    }
}

EOF

my $d = $t->testdir();
my $pki = PKI->new($d);
cert_dir($d);

my $dod = '/C=US/O=U.S. Government/OU=DoD/OU=PKI';
$pki->ca('root', subject => "$dod/CN=Test DoD Root CA 3");
$pki->ca('dodca', issuer => 'root', subject => "$dod/CN=Test DOD ID CA-59");
$pki->ca('pivca', issuer => 'root', subject => '/C=US/O=Example Agency/CN=Test PIV CA');
$pki->bundle('cas.crt', 'root.crt', 'dodca.crt', 'pivca.crt');
$pki->cert('server', issuer => 'root', subject => '/CN=localhost');

$pki->cert('cac', issuer => 'dodca', subject => "$dod/OU=USA/CN=LAST.FIRST.MIDDLE.1234567890",
	ext => ['keyUsage = critical, digitalSignature, nonRepudiation',
		'extendedKeyUsage = clientAuth, 1.3.6.1.4.1.311.20.2.2',
		'subjectAltName = email:first.m.last.civ@mail.mil, '
			. 'otherName:1.3.6.1.4.1.311.20.2.3;UTF8:1234567890@mil',
		'certificatePolicies = 2.16.840.1.101.2.1.11.42']);
$pki->cert('piv', issuer => 'pivca', subject => '/C=US/O=Example Agency/CN=Jane Q. Public',
	ext => ['keyUsage = critical, digitalSignature',
		'extendedKeyUsage = clientAuth, 2.16.840.1.101.3.6.8',
		'subjectAltName = URI:urn:uuid:a0b1c2d3-0000-4000-8000-000000000001',
		'certificatePolicies = 2.16.840.1.101.3.2.1.3.13']);
$pki->cert('mail', issuer => 'dodca', subject => '/O=Example Corp/OU=People',
	ext => ['extendedKeyUsage = clientAuth, emailProtection',
		'subjectAltName = email:alice@example.org']);
$pki->cert('soft', issuer => 'dodca', subject => "$dod/OU=USA/CN=SOFT.USER.9876543210",
	ext => ['keyUsage = critical, digitalSignature',
		'extendedKeyUsage = clientAuth',
		'certificatePolicies = 2.16.840.1.101.2.1.11.42']);
$pki->cert('zoe', issuer => 'dodca', subject => '/O=R&D+OU=Ops/CN=Zoë Ørsted, Jr./serialNumber=S-42');
$pki->cert('twice', issuer => 'dodca', subject => '/CN=first/CN=second');
$pki->cert('empty', issuer => 'dodca', subject => '/',
	ext => ['subjectAltName = critical, email:nobody@example.org']);
$pki->cert('host', issuer => 'dodca', subject => '/O=Robots',
	ext => ['subjectAltName = DNS:robot.example.org, DNS:other.example.org']);
# Valid for a few seconds: the handshake succeeds, a later request on the connection not.
$pki->cert('short', issuer => 'dodca', subject => '/UID=brief',
	start => PKI::when(-60), end => PKI::when(10));
my $short_end = $pki->not_after('short');

$t->try_run('no auth_cert')->plan(38);

###############################################################################

my $cac_end = $pki->not_after('cac');

# The CAC-like certificate through the whole smartcard policy

my $r = get('/cac/', cert => 'cac');
like($r, qr/^user=1234567890 auth=ok\/\/tls /m, 'cac: EDIPI from the CN');
like($r, qr/ mail=first\.m\.last\.civ\@mail\.mil\|1234567890\@mil\|$cac_end /,
	'cac: $auth_cert_email, $auth_cert_upn, $auth_cert_not_after');
like($r, qr/ dn=CN=LAST\.FIRST\.MIDDLE\.1234567890,OU=USA,OU=PKI,OU=DoD,O=U\.S\. Government,C=US$/m,
	'cac: subject');
like(get('/upn/', cert => 'cac'), qr/^user=1234567890 auth=ok/m, 'cac: EDIPI from the UPN');
like(get('/sources/', cert => 'cac'), qr/^user=1234567890\@mil /m, 'sources in order: upn first');
like(get('/oid/', cert => 'cac'), qr/^user=[0-9A-F]+ /m, 'oid: absent attribute, serial next');

# PIV-like, e-mail-only and software certificates

like(get('/piv/', cert => 'piv'), qr/^user=urn:uuid:a0b1c2d3-0000-4000-8000-000000000001 auth=ok/m,
	'piv: card UUID from the SAN URI, PIV EKU and policy');
$r = get('/cac/', cert => 'piv');
is(status($r), 403, 'piv at the cac policy: 403');
is(body($r), "auth_cert: eku: the client certificate lacks a required extended key usage\n",
	'piv at the cac policy: eku first');

like(get('/email/', cert => 'mail'), qr/^user=alice\@example\.org auth=ok\/\/tls mail=alice\@example\.org\|\|/m,
	'e-mail-only: identity from the SAN rfc822Name');
like(get('/sources/', cert => 'mail'), qr/^user=alice\@example\.org /m, 'sources in order: email');
$r = get('/optional/', cert => 'mail');
like($r, qr/^user= auth=denied\/identity\/tls /m, 'e-mail-only: no uid or cn');

$r = get('/cac/', cert => 'soft');
is(status($r), 403, 'software certificate: 403');
like(body($r), qr/^auth_cert: eku: /, 'software certificate: no smartcardLogon');
like(get('/sources/', cert => 'host'), qr/^user=robot\.example\.org /m, 'san_dns: first value');

# Every policy rejection

$r = get('/ku/', cert => 'cac');
is(body($r), "auth_cert: key_usage: the client certificate lacks a required key usage\n",
	'key_usage');
is(body(get('/ku/', cert => 'mail')), body($r), 'key_usage: extension absent');
is(body(get('/policy/', cert => 'cac')),
	"auth_cert: policy: the client certificate has no accepted certificate policy\n", 'policy');
is(body(get('/policy/', cert => 'mail')),
	"auth_cert: policy: the client certificate has no accepted certificate policy\n",
	'policy: extension absent');
is(body(get('/issuer/', cert => 'cac')),
	"auth_cert: issuer: the client certificate issuer is not accepted\n", 'issuer');
$r = get('/cac/', cert => 'zoe');
like(body($r), qr/^auth_cert: eku: /, 'cac policy: no EKU extension at all');

# identity: regex without a match, and no source with a value
$pki->cert('nomatch', issuer => 'dodca', subject => "$dod/CN=LAST.FIRST.12345",
	ext => ['keyUsage = digitalSignature', 'extendedKeyUsage = clientAuth, 1.3.6.1.4.1.311.20.2.2',
		'certificatePolicies = 2.16.840.1.101.2.1.11.39']);
is(body(get('/cac/', cert => 'nomatch')),
	"auth_cert: identity: no identity found in the client certificate\n",
	'identity: regex does not match an 5-digit number');
is(status(get('/upn/', cert => 'soft')), 403, 'identity: no UPN');

# Non-ASCII, escaping, duplicate attributes, fixed sources

# nginx writes each non-ASCII byte as \XX; the module keeps UTF-8 (RFC 4514 allows both).
my $zoe_dn = body(get('/dn', cert => 'zoe'));
chomp $zoe_dn;
$zoe_dn =~ s/\\([0-9A-F]{2})/chr(hex $1)/ge;
$r = get('/optional/', cert => 'zoe');
like($r, qr/ dn=\Q$zoe_dn\E$/m, 'subject equals $ssl_client_s_dn, but in UTF-8');
like($r, qr/ dn=serialNumber=S-42,CN=Zoë Ørsted\\, Jr\.,OU=Ops\+O=R&D$/m,
	'subject: UTF-8 kept, comma escaped, multi-valued RDN');
like($r, qr/^user=Zoë Ørsted, Jr\. auth=ok/m, 'non-ASCII identity in UTF-8');
like(get('/oid/', cert => 'zoe'), qr/^user=S-42 /m, 'oid:2.5.4.5');
like(get('/optional/', cert => 'twice'), qr/^user=first /m, 'duplicate CN: first in DER order');
like(get('/optional/', cert => 'empty'), qr/^user= auth=denied\/identity\/tls .* dn=$/m,
	'empty subject: no identity, empty $auth_cert_subject');
like(get('/email/', cert => 'empty'), qr/^user=nobody\@example\.org auth=ok/m,
	'empty subject: identity from the SAN');
my $fp = $pki->fingerprint('cac');
like(get('/fingerprint/', cert => 'cac'), qr/^user=$fp /m, 'fingerprint');
like(get('/subject/', cert => 'twice'), qr/^user=CN=second,CN=first /m, 'subject as identity');

# Validity is checked on every request, not only at the handshake

my $s = connect_tls(8443, cert => 'short');
my $first = request($s, '/optional/');
like($first, qr/^user=brief auth=ok\/\/tls /m, 'short-lived certificate: valid at first');
select undef, undef, undef, 0.2 while time() <= $short_end + 1;
my $second = request($s, '/optional/', Connection => 'close');
like($second, qr/^user= auth=invalid\/expired\/tls /m, 'same connection, past notAfter: expired');
$s = connect_tls(8443, cert => 'short');
my $third = request($s, '/cac/', Connection => 'close');
is(status($third), 400, 'new connection: nginx refuses the expired certificate itself');

# Log lines

$t->stop();

my $log = $t->read_file('error.log');
my $soft = $pki->serial('soft');
like($log, qr/\[info\].*reason: eku, identity: "9876543210", serial: $soft, client: 127\.0\.0\.1/,
	'log: eku with identity and serial');
like($log, qr/reason: key_usage, identity: "LAST\.FIRST\.MIDDLE\.1234567890"/, 'log: key_usage');
like($log, qr/reason: identity, identity: "", serial: /, 'log: identity');

###############################################################################
