#!/usr/bin/perl

# Tests for auth_cert_header (a client certificate forwarded by a trusted load balancer,
# verified by the module) and auth_cert_identity_arg (the test-rig identity): trusted and
# untrusted peers, the header never reaching the upstream, bad header values, $auth_cert_source.

###############################################################################

use warnings;
use strict;

use Test::More;

use IO::Socket::IP;

BEGIN { use FindBin; chdir($FindBin::Bin); }

use lib "$FindBin::Bin/support";
use Test::Nginx;
use PKI;
use Test::Nginx::AuthCert qw/ cert_dir get status body /;

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

    large_client_header_buffers 4 128k;

    proxy_set_header X-User $auth_cert_identity;
    proxy_set_header X-Auth "$auth_cert_status/$auth_cert_reason/$auth_cert_source";
    proxy_set_header X-Mail "$auth_cert_upn|$auth_cert_serial";

    # The load balancer's network is 127.0.0.0/8 here.
    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        auth_cert_header X-Client-Cert from=10.0.0.0/8 from=127.0.0.0/8 ca=root.crt;

        location /on/ {
            auth_cert on;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /cac/ {
            auth_cert on;
            auth_cert_eku clientAuth smartcardLogon;
            auth_cert_policy 2.16.840.1.101.2.1.11.42;
            auth_cert_identity cn;
            auth_cert_identity_regex "\.(\d{10})$";
            proxy_pass http://127.0.0.1:8081/;
        }

        location /optional/ {
            auth_cert optional;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /off/ {
            proxy_pass http://127.0.0.1:8081/;
        }

        # The CA file also holds the issuing CA: the leaf alone is enough, as nginx's
        # $ssl_client_escaped_cert sends it.
        location /bundle/ {
            auth_cert on;
            auth_cert_header X-Client-Cert from=127.0.0.1 ca=cas.crt;
            proxy_pass http://127.0.0.1:8081/;
        }

        # The internal redirect clears module contexts: the taken header must survive it.
        location /redirect/ {
            auth_cert on;
            auth_cert_eku 1.2.3.4;
            error_page 403 = /optional/;
        }

        location /rig/ {
            auth_cert on;
            auth_cert_identity_arg as_user from=127.0.0.1;
            proxy_pass http://127.0.0.1:8081/;
        }

        # Another CA: a chain that verified against the server's does not here.
        location /rogue-ca/ {
            auth_cert on;
            auth_cert_header X-Client-Cert from=127.0.0.0/8 ca=rogue.crt;
            proxy_pass http://127.0.0.1:8081/;
        }
    }

    # The load balancer: an nginx that terminates TLS and forwards the certificate.
    server {
        listen       127.0.0.1:8444 ssl;
        server_name  localhost;

        ssl_certificate server.crt;
        ssl_certificate_key server.key;
        ssl_client_certificate cas.crt;
        ssl_verify_client optional;
        ssl_verify_depth 2;

        location / {
            proxy_set_header X-Client-Cert $ssl_client_escaped_cert;
            proxy_pass http://127.0.0.1:8080/bundle/;
        }
    }

    # A peer that is not the load balancer.
    server {
        listen       127.0.0.1:8082;
        server_name  localhost;

        auth_cert_header X-Client-Cert from=192.0.2.0/24 ca=root.crt;
        auth_cert_identity_arg as_user from=192.0.2.0/24;

        location /on/ {
            auth_cert on;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /optional/ {
            auth_cert optional;
            proxy_pass http://127.0.0.1:8081/;
        }
    }

    # IPv6 peers.
    server {
        listen       [::1]:%%PORT_8085%%;
        server_name  localhost;

        location / {
            auth_cert on;
            auth_cert_header X-Client-Cert from=::1 ca=root.crt;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /v4/ {
            auth_cert on;
            auth_cert_header X-Client-Cert from=127.0.0.0/8 ca=root.crt;
            proxy_pass http://127.0.0.1:8081/;
        }
    }

    # No auth_cert_header: the header is none of the module's business.
    server {
        listen       127.0.0.1:8083;
        server_name  localhost;

        location / {
            proxy_pass http://127.0.0.1:8081/;
        }
    }

    # TLS with a client certificate and a forwarded one.
    server {
        listen       127.0.0.1:8443 ssl;
        server_name  localhost;

        ssl_certificate server.crt;
        ssl_certificate_key server.key;
        ssl_client_certificate cas.crt;
        ssl_verify_client optional;
        ssl_verify_depth 2;

        auth_cert_header X-Client-Cert from=127.0.0.1 ca=root.crt;

        location / {
            auth_cert on;
            proxy_pass http://127.0.0.1:8081/;
        }
    }

    server {
        listen       127.0.0.1:8081;
        server_name  localhost;

        access_log off;

        location / {
            return 200 "user=$http_x_user auth=$http_x_auth mail=$http_x_mail forwarded=[$http_x_client_cert]\n";
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
$pki->bundle('cas.crt', 'root.crt', 'dodca.crt');
$pki->cert('server', issuer => 'root', subject => '/CN=localhost');

my @cac_ext = ('keyUsage = critical, digitalSignature, nonRepudiation',
	'extendedKeyUsage = clientAuth, 1.3.6.1.4.1.311.20.2.2',
	'subjectAltName = otherName:1.3.6.1.4.1.311.20.2.3;UTF8:1234567890@mil',
	'certificatePolicies = 2.16.840.1.101.2.1.11.42');
$pki->cert('cac', issuer => 'dodca', subject => "$dod/OU=USA/CN=LAST.FIRST.MIDDLE.1234567890",
	ext => \@cac_ext);
$pki->cert('soft', issuer => 'dodca', subject => '/UID=soft/CN=Soft User',
	ext => ['extendedKeyUsage = clientAuth']);
$pki->cert('old', issuer => 'dodca', subject => "$dod/OU=USA/CN=OLD.CARD.1111111111",
	ext => \@cac_ext, start => PKI::when(-86400), end => PKI::when(-3600));
# Large, unknown non-critical extensions do not get in the way.
$pki->cert('odd', issuer => 'dodca', subject => '/UID=odd',
	ext => ['1.2.3.4.5 = DER:' . join(':', ('04', '82', '10', '00', ('41') x 4096)),
		'1.2.3.4.6 = ASN1:UTF8String:odd']);
$pki->ca('rogue', subject => "$dod/CN=Test DoD Root CA 3");
$pki->ca('rogueca', issuer => 'rogue', subject => "$dod/CN=Test DOD ID CA-59");
$pki->cert('forged', issuer => 'rogueca', subject => "$dod/OU=USA/CN=LAST.FIRST.MIDDLE.1234567890",
	ext => \@cac_ext);

$pki->bundle('cac-chain.pem', 'cac.crt', 'dodca.crt');
$pki->bundle('soft-chain.pem', 'soft.crt', 'dodca.crt');
$pki->bundle('old-chain.pem', 'old.crt', 'dodca.crt');
$pki->bundle('odd-chain.pem', 'odd.crt', 'dodca.crt');
$pki->bundle('forged-chain.pem', 'forged.crt', 'rogueca.crt');
# An issuing CA that expires a few seconds from now, the last made so that it lasts the longest.
$pki->ca('brief', issuer => 'root', subject => "$dod/CN=Test Brief CA", end => PKI::when(5));
$pki->cert('briefuser', issuer => 'brief', subject => '/UID=brief');
$pki->bundle('brief-chain.pem', 'briefuser.crt', 'brief.crt');

$t->try_run('no auth_cert')->plan(46);

###############################################################################

# A request over IPv6 to [::1], with the certificate header.
sub get6 {
	my ($uri, $value) = @_;
	my $s = IO::Socket::IP->new(PeerHost => '::1', PeerPort => port(8085), Timeout => 8)
		or return '';
	print $s "GET $uri HTTP/1.0\r\nHost: localhost\r\nX-Client-Cert: $value\r\n\r\n";
	local $/;
	return <$s> // '';
}

sub fwd { my ($value) = @_; return (headers => ["X-Client-Cert: $value"]) }

my $cac = $pki->escaped('cac-chain.pem');
my $cac_serial = $pki->serial('cac');
(my $spaced = $pki->pem('cac-chain.pem')) =~ s/\n/ /g;
(my $tabbed = $pki->pem('cac-chain.pem')) =~ s/\n/\t/g;

# Trusted load balancer

my $r = get('/on/', fwd($cac));
like($r, qr/^user=LAST\.FIRST\.MIDDLE\.1234567890 auth=ok\/\/header /m,
	'escaped PEM with its intermediate: accepted');
like($r, qr/ mail=1234567890\@mil\|$cac_serial /, 'forwarded certificate variables');
like($r, qr/ forwarded=\[\]$/m, 'header not passed upstream');
like(get('/cac/', fwd($cac)), qr/^user=1234567890 auth=ok\/\/header /m,
	'smartcard policy and EDIPI on a forwarded certificate');
like(get('/on/', fwd($spaced)), qr/^user=LAST\.FIRST\.MIDDLE\.1234567890 auth=ok\/\/header /m,
	'raw PEM with spaces for newlines');
like(get('/on/', fwd($tabbed)), qr/^user=LAST\.FIRST\.MIDDLE\.1234567890 auth=ok\/\/header /m,
	'raw PEM with tabs for newlines');
like(get('/on/', fwd($pki->escaped('odd-chain.pem'))), qr/^user=odd auth=ok/m,
	'certificate with large unknown extensions');
like(get('/bundle/', fwd($pki->escaped('cac.crt'))),
	qr/^user=LAST\.FIRST\.MIDDLE\.1234567890 auth=ok\/\/header /m,
	'leaf only, issuing CA in the ca= file');
$r = get('/', port => 8444, cert => 'cac');
like($r, qr/^user=LAST\.FIRST\.MIDDLE\.1234567890 auth=ok\/\/header .* forwarded=\[\]$/m,
	'through an nginx load balancer forwarding $ssl_client_escaped_cert');
like(get('/', port => 8444, SSL => 1), qr/^HTTP\/1\.\d 400/,
	'through the load balancer without a certificate: no_cert');

$r = get('/cac/', fwd($pki->escaped('soft-chain.pem')));
like(body($r), qr/^auth_cert: eku: /, 'forwarded certificate without smartcardLogon: eku');

like(get('/redirect/', fwd($cac)), qr/^user=LAST\.FIRST\.MIDDLE\.1234567890 auth=ok\/\/header .* forwarded=\[\]$/m,
	'after an internal redirect: the same forwarded certificate');

$r = get('/on/');
is(status($r), 400, 'no header, no TLS: no_cert');
like(body($r), qr/^auth_cert: no_cert: /, 'no header body');
like(get('/off/', fwd($cac)), qr/ forwarded=\[\]$/m, 'auth_cert off: header still removed');
like(get('/off/', headers => ['X-Other: 1']), qr/^user= auth=none\/no_cert\/ /m,
	'auth_cert off: variables without a header');

# Bad header values: reason header, never an identity

my $bad = "auth_cert: header: the forwarded client certificate is malformed or does not verify\n";
$r = get('/on/', fwd($pki->escaped('cac.crt')));
is(status($r), 403, 'chain that does not verify: 403');
is(body($r), $bad, 'chain that does not verify: header');
is(body(get('/on/', fwd($pki->escaped('forged-chain.pem')))), $bad,
	'chain from a CA with the same names: header');
is(body(get('/on/', fwd('garbage'))), $bad, 'not PEM: header');
is(body(get('/on/', fwd(substr($cac, 0, length($cac) / 2)))), $bad, 'truncated: header');
is(body(get('/on/', fwd('-----BEGIN%20CERTIFICATE-----%0AaGVsbG8gd29ybGQ%3D%0A-----END%20CERTIFICATE-----'))),
	$bad, 'PEM of something that is not a certificate: header');
is(body(get('/on/', fwd('%ZZ'))), $bad, 'broken escaping: header');
$r = get('/on/', fwd('A' x 65536));
is(body($r), $bad, '64 KiB header value: header');
$r = get('/on/', headers => ["X-Client-Cert: $cac", "X-Client-Cert: $cac"]);
is(body($r), $bad, 'two certificate headers: header');
like(get('/optional/', fwd('garbage')), qr/^user= auth=invalid\/header\/header mail=\| forwarded=\[\]$/m,
	'optional: invalid/header, nothing of it upstream');

$r = get('/on/', fwd($pki->escaped('old-chain.pem')));
is(body($r), "auth_cert: expired: the client certificate is expired or not yet valid\n",
	'expired forwarded certificate: expired');

# A chain that verified is not verified again for every request, but only within its own
# validity (an intermediate's included) and for the CA it verified against.

like(get('/rogue-ca/', fwd($cac)), qr/^auth_cert: header: /m,
	'chain verified for one CA file: refused for another');
my $brief = $pki->escaped('brief-chain.pem');
like(get('/on/', fwd($brief)), qr/^user=brief auth=ok/m, 'chain before its CA expires');
like(get('/on/', fwd($brief)), qr/^user=brief auth=ok/m, 'again, from the verified chains');
my $wait = $pki->not_after('brief') + 1.5 - time();
select undef, undef, undef, $wait if $wait > 0;
like(get('/on/', fwd($brief)), qr/^auth_cert: header: /m, 'refused once its CA has expired');

# Untrusted peer: the header is ignored and removed

$r = get('/on/', port => 8082, fwd($cac));
is(status($r), 403, 'untrusted peer: 403');
is(body($r), "auth_cert: network: a forwarded client certificate is not accepted from this address\n",
	'untrusted peer: network');
like(get('/optional/', port => 8082, fwd($cac)), qr/^user= auth=invalid\/network\/ mail=\| forwarded=\[\]$/m,
	'untrusted peer: nothing upstream');
like(get('/x', port => 8083, headers => ['X-Client-Cert: kept']), qr/forwarded=\[kept\]/,
	'without auth_cert_header the header is left alone');

# IPv6 peer

like(get6('/', $cac), qr/^user=LAST\.FIRST\.MIDDLE\.1234567890 auth=ok\/\/header /m,
	'IPv6 peer in an IPv6 network');
like(get6('/v4/', $cac), qr/auth_cert: network: /, 'IPv6 peer, IPv4 networks only: network');

# TLS connection: a trusted forwarded certificate wins, else the TLS one

like(get('/', port => 8443, cert => 'soft', fwd($cac)),
	qr/^user=LAST\.FIRST\.MIDDLE\.1234567890 auth=ok\/\/header /m, 'TLS and header: header');
like(get('/', port => 8443, cert => 'soft'), qr/^user=soft auth=ok\/\/tls /m,
	'TLS only: tls');

# auth_cert_identity_arg

like(get('/rig/?as_user=test%20user'), qr/^user=test user auth=ok\/\/arg /m,
	'identity argument from a trusted peer');
like(body(get('/rig/?as_user=a%0d%0ab')), qr/^auth_cert: identity: /,
	'identity argument with control characters: identity');
like(get('/on/?as_user=admin', port => 8082), qr/^HTTP\/1\.\d 400/,
	'identity argument from an untrusted peer: ignored');

# Log lines

$t->stop();

my $log = $t->read_file('error.log');
like($log, qr/\[info\].*auth_cert: access denied: the forwarded client certificate is malformed or does not verify \(verify failed at depth 0: unable to get local issuer certificate\), reason: header/,
	'log: unverifiable chain with the OpenSSL reason');
like($log, qr/\[info\].*\(header value too long\), reason: header, identity: "", serial: -, client: 127\.0\.0\.1/,
	'log: oversized header');
my $old = $pki->serial('old');
like($log, qr/\(certificate has expired\), reason: expired, identity: "OLD\.CARD\.1111111111", serial: $old,/,
	'log: expired forwarded certificate with its identity and serial');
like($log, qr/\[warn\].*auth_cert: identity "test user" taken from query argument "as_user" \(auth_cert_identity_arg\)/,
	'log: identity argument at warn');

###############################################################################
