#!/usr/bin/perl

# Tests for the formats of auth_cert_header (format=pem|rfc9440|xfcc|der64, chain=) with
# header values written as each sender writes them: nginx in front (URL-escaped PEM, and its
# module's $auth_cert_client_cert as RFC 9440 Client-Cert), RFC 9440 with Client-Cert-Chain,
# Envoy's x-forwarded-client-cert, Traefik, Cloudflare, AWS ALB; both headers removed on
# every path; $auth_cert_client_cert.

###############################################################################

use warnings;
use strict;

use Test::More;

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

    large_client_header_buffers 4 64k;

    proxy_set_header X-User $auth_cert_identity;
    proxy_set_header X-Auth "$auth_cert_status/$auth_cert_reason/$auth_cert_source";
    proxy_set_header X-CC $auth_cert_client_cert;

    # The module behind the senders; the senders' network is 127.0.0.1.
    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        # nginx in front: $ssl_client_escaped_cert, the leaf only.
        location /pem/ {
            auth_cert on;
            auth_cert_header X-SSL-Client-Cert from=127.0.0.1 ca=cas.crt;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /alb/ {
            auth_cert on;
            auth_cert_header X-Amzn-Mtls-Clientcert from=127.0.0.1 ca=root.crt format=pem;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /rfc9440/ {
            auth_cert on;
            auth_cert_header Client-Cert from=127.0.0.1 ca=root.crt format=rfc9440
                             chain=Client-Cert-Chain;
            proxy_pass http://127.0.0.1:8081/;
        }

        # nginx in front with the module: $auth_cert_client_cert, the leaf only.
        location /front/ {
            auth_cert on;
            auth_cert_header Client-Cert from=127.0.0.1 ca=cas.crt format=rfc9440;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /xfcc/ {
            auth_cert on;
            auth_cert_header X-Forwarded-Client-Cert from=127.0.0.1 ca=root.crt format=xfcc;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /traefik/ {
            auth_cert on;
            auth_cert_header X-Forwarded-Tls-Client-Cert from=127.0.0.1 ca=root.crt
                             format=der64;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /cloudflare/ {
            auth_cert on;
            auth_cert_header Cf-Client-Cert-Der-Base64 from=127.0.0.1 ca=cas.crt format=der64;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /optional/ {
            auth_cert optional;
            auth_cert_header Client-Cert from=127.0.0.1 ca=root.crt format=rfc9440
                             chain=Client-Cert-Chain;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /off/ {
            auth_cert_header Client-Cert from=127.0.0.1 ca=root.crt format=rfc9440
                             chain=Client-Cert-Chain;
            proxy_pass http://127.0.0.1:8081/;
        }
    }

    # A peer that is not the load balancer.
    server {
        listen       127.0.0.1:8082;
        server_name  localhost;

        auth_cert_header Client-Cert from=192.0.2.0/24 ca=root.crt format=rfc9440
                         chain=Client-Cert-Chain;

        location / {
            auth_cert optional;
            proxy_pass http://127.0.0.1:8081/;
        }
    }

    # nginx in front: terminates TLS and forwards the certificate.
    server {
        listen       127.0.0.1:8443 ssl;
        server_name  localhost;

        ssl_certificate server.crt;
        ssl_certificate_key server.key;
        ssl_client_certificate cas.crt;
        ssl_verify_client optional;
        ssl_verify_depth 3;

        location /to-pem/ {
            proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;
            proxy_pass http://127.0.0.1:8080/pem/;
        }

        # The deprecated $ssl_client_cert: PEM with a newline and a tab between lines.
        location /to-pem-tabs/ {
            proxy_set_header X-SSL-Client-Cert $ssl_client_cert;
            proxy_pass http://127.0.0.1:8080/pem/;
        }

        # Its own module verifies, and hands the certificate on as RFC 9440 says.
        location /to-rfc9440/ {
            auth_cert optional;
            proxy_set_header Client-Cert $auth_cert_client_cert;
            proxy_pass http://127.0.0.1:8080/front/;
        }

        location /to-rfc9440-eku/ {
            auth_cert optional;
            auth_cert_eku 1.2.3.4;
            proxy_set_header Client-Cert $auth_cert_client_cert;
            proxy_pass http://127.0.0.1:8080/front/;
        }
    }

    server {
        listen       127.0.0.1:8081;
        server_name  localhost;

        access_log off;

        location / {
            return 200 "user=$http_x_user auth=$http_x_auth cc=[$http_x_cc] fwd=[$http_client_cert|$http_client_cert_chain|$http_x_forwarded_client_cert|$http_x_forwarded_tls_client_cert|$http_x_ssl_client_cert|$http_x_amzn_mtls_clientcert|$http_cf_client_cert_der_base64]\n";
        }
    }
}

EOF

my $d = $t->testdir();
my $pki = PKI->new($d);
cert_dir($d);

$pki->ca('root', subject => '/O=Example/CN=Example Root CA');
$pki->ca('issuing', issuer => 'root', subject => '/O=Example/CN=Example Issuing CA');
$pki->ca('team', issuer => 'issuing', subject => '/O=Example/CN=Example Team CA');
$pki->bundle('cas.crt', 'root.crt', 'issuing.crt', 'team.crt');
$pki->cert('server', issuer => 'root', subject => '/CN=localhost');
$pki->cert('alice', issuer => 'issuing', subject => '/O=Example/UID=alice/CN=Alice',
	ext => ['extendedKeyUsage = clientAuth']);
$pki->cert('bob', issuer => 'team', subject => '/O=Example/UID=bob/CN=Bob',
	ext => ['extendedKeyUsage = clientAuth']);
$pki->ca('rogue', subject => '/O=Example/CN=Example Root CA');
$pki->ca('rogueca', issuer => 'rogue', subject => '/O=Example/CN=Example Issuing CA');
$pki->cert('mallory', issuer => 'rogueca', subject => '/O=Example/UID=alice/CN=Alice',
	ext => ['extendedKeyUsage = clientAuth']);
$pki->bundle('alice-chain.pem', 'alice.crt', 'issuing.crt');
$pki->bundle('mallory-chain.pem', 'mallory.crt', 'rogueca.crt');

$t->try_run('no auth_cert')->plan(40);

###############################################################################

sub fwd { return (headers => [@_]) }
sub fields { my ($r) = @_; body($r) =~ /fwd=\[([^\]]*)\]/ ? $1 : 'none' }

my $none = '||||||';
my ($alice, $issuing) = ($pki->der64('alice.crt'), $pki->der64('issuing.crt'));
my ($bob, $team) = ($pki->der64('bob.crt'), $pki->der64('team.crt'));
my ($mallory, $rogueca) = ($pki->der64('mallory.crt'), $pki->der64('rogueca.crt'));

# As Envoy escapes Cert and Chain: newline, space, +, / and = only.
sub envoy {
	my ($file) = @_;
	(my $v = $pki->pem($file)) =~ s/([\n +\/=])/sprintf('%%%02X', ord $1)/ge;
	return $v;
}

# As AWS ALB writes X-Amzn-Mtls-Clientcert: URL-encoded, +, = and / left literal.
sub alb {
	my ($file) = @_;
	(my $v = $pki->pem($file)) =~ s/([^A-Za-z0-9\-._~+=\/])/sprintf('%%%02X', ord $1)/ge;
	return $v;
}

# nginx in front

my $r = get('/to-pem/', port => 8443, cert => 'alice');
like($r, qr/^user=alice auth=ok\/\/header cc=\[:\Q$alice\E:\]/m,
	'nginx in front, $ssl_client_escaped_cert, format pem');
is(fields($r), $none, 'nginx in front, pem: header not passed upstream');
# Its newlines make folded header lines, which nginx refuses before any module runs.
like(get('/to-pem-tabs/', port => 8443, cert => 'alice'), qr/^HTTP\/1\.\d 400/,
	'nginx in front, deprecated $ssl_client_cert: nginx refuses the folded lines');
$r = get('/to-rfc9440/', port => 8443, cert => 'bob');
like($r, qr/^user=bob auth=ok\/\/header cc=\[:\Q$bob\E:\]/m,
	'nginx in front, $auth_cert_client_cert, format rfc9440');
is(fields($r), $none, 'nginx in front, rfc9440: header not passed upstream');
like(get('/to-rfc9440/', port => 8443, SSL => 1), qr/^HTTP\/1\.\d 400/,
	'front without a certificate: Client-Cert empty, not sent: no_cert');
like(get('/to-rfc9440-eku/', port => 8443, cert => 'alice'), qr/^HTTP\/1\.\d 400/,
	'front whose policy refuses the certificate: $auth_cert_client_cert empty: no_cert');

# RFC 9440

$r = get('/rfc9440/', fwd("Client-Cert: :$alice:", "Client-Cert-Chain: :$issuing:"));
like($r, qr/^user=alice auth=ok\/\/header cc=\[:\Q$alice\E:\]/m,
	'Client-Cert and Client-Cert-Chain');
is(fields($r), $none, 'rfc9440: both headers removed');
like(get('/rfc9440/', fwd("Client-Cert: :$bob:", "Client-Cert-Chain: :$team:, :$issuing:")),
	qr/^user=bob auth=ok\/\/header /m, 'Client-Cert-Chain with two certificates');
like(get('/rfc9440/', fwd("Client-Cert: :$bob:", "Client-Cert-Chain: :$team:",
	"Client-Cert-Chain: :$issuing:")),
	qr/^user=bob auth=ok\/\/header /m, 'Client-Cert-Chain over two header lines');
like(get('/rfc9440/', fwd("Client-Cert: :$alice:")), qr/^auth_cert: header: /m,
	'Client-Cert without its chain: header');
$r = get('/rfc9440/', fwd("Client-Cert: :$alice:", "Client-Cert: :$alice:",
	"Client-Cert-Chain: :$issuing:"));
is(status($r), 403, 'two Client-Cert fields: 403');
like(body($r), qr/^auth_cert: header: /, 'two Client-Cert fields: header');
like(get('/rfc9440/', fwd("Client-Cert: $alice", "Client-Cert-Chain: :$issuing:")),
	qr/^auth_cert: header: /m, 'Client-Cert without colons: header');
like(get('/rfc9440/', fwd('Client-Cert: ', "Client-Cert-Chain: :$issuing:")),
	qr/^auth_cert: header: /m, 'empty Client-Cert (a sender\'s size limit): header');
like(get('/rfc9440/', fwd("Client-Cert: :$mallory:", "Client-Cert-Chain: :$rogueca:")),
	qr/^auth_cert: header: /m, 'chain of another CA with the same names: header');
like(get('/rfc9440/', fwd("Client-Cert: :$alice:", "Client-Cert-Chain: :$issuing:,")),
	qr/^auth_cert: header: /m, 'trailing comma in Client-Cert-Chain: header');

# Envoy x-forwarded-client-cert

my $xfcc = 'By=spiffe://cluster.local/ns/default/sa/api;'
	. 'Hash=' . $pki->fingerprint('alice') . ';'
	. 'Cert="' . envoy('alice.crt') . '";'
	. 'Chain="' . envoy('alice-chain.pem') . '";'
	. 'Subject="O=Example,UID=alice,CN=Alice";URI=spiffe://cluster.local/ns/default/sa/web';
$r = get('/xfcc/', fwd("X-Forwarded-Client-Cert: $xfcc"));
like($r, qr/^user=alice auth=ok\/\/header cc=\[:\Q$alice\E:\]/m, 'Envoy XFCC with Cert and Chain');
is(fields($r), $none, 'xfcc: header removed');
my $forged = 'By=spiffe://x;Cert="' . envoy('mallory.crt') . '";Chain="'
	. envoy('mallory-chain.pem') . '";Subject="CN=\"Alice\", O=Example"';
like(get('/xfcc/', fwd("X-Forwarded-Client-Cert: $forged,$xfcc")),
	qr/^user=alice auth=ok\/\/header /m, 'XFCC: the last element, the nearest proxy\'s, counts');
like(get('/xfcc/', fwd("X-Forwarded-Client-Cert: $xfcc,$forged")),
	qr/^auth_cert: header: /m, 'XFCC: a forged last element: header');
like(get('/xfcc/', fwd("X-Forwarded-Client-Cert: $xfcc,By=spiffe://y;Hash=00")),
	qr/^auth_cert: header: /m, 'XFCC: last element without Cert: header');
like(get('/xfcc/', fwd('X-Forwarded-Client-Cert: Cert="' . envoy('alice.crt'))),
	qr/^auth_cert: header: /m, 'XFCC: unterminated quote: header');

# Traefik, Cloudflare: base64 DER

like(get('/traefik/', fwd("X-Forwarded-Tls-Client-Cert: $alice,$issuing")),
	qr/^user=alice auth=ok\/\/header cc=\[:\Q$alice\E:\]/m, 'Traefik, leaf and intermediate');
(my $old_traefik = "$alice,$issuing") =~ s/([^A-Za-z0-9\-._~])/sprintf('%%%02X', ord $1)/ge;
like(get('/traefik/', fwd("X-Forwarded-Tls-Client-Cert: $old_traefik")),
	qr/^auth_cert: header: /m, 'Traefik before 2.9.4 (URL-escaped): header');
like(get('/cloudflare/', fwd("Cf-Client-Cert-Der-Base64: $bob")),
	qr/^user=bob auth=ok\/\/header /m, 'Cloudflare Cf-Client-Cert-Der-Base64');

# AWS ALB: URL-encoded PEM with a literal +

my $alb = alb('alice-chain.pem');
like(get('/alb/', fwd("X-Amzn-Mtls-Clientcert: $alb")),
	qr/^user=alice auth=ok\/\/header /m, 'ALB X-Amzn-Mtls-Clientcert, literal + = /');
(my $plus_as_space = $alb) =~ s/\+/%20/g;
SKIP: {
skip 'no + in this certificate', 1 if $alb !~ /\+/;
like(get('/alb/', fwd("X-Amzn-Mtls-Clientcert: $plus_as_space")),
	qr/^auth_cert: header: /m, 'ALB: + read as a space is another certificate: header');
}

# $auth_cert_client_cert: empty unless ok; headers removed on every path

like(get('/optional/', fwd("Client-Cert: :$mallory:", "Client-Cert-Chain: :$rogueca:")),
	qr/^user= auth=invalid\/header\/header cc=\[\] fwd=\[\Q$none\E\]$/m,
	'optional, refused: no identity, no certificate, no headers upstream');
like(get('/off/', fwd("Client-Cert: :$alice:", "Client-Cert-Chain: :$issuing:")),
	qr/ fwd=\[\Q$none\E\]$/m, 'auth_cert off: both headers removed');
like(get('/off/', fwd("Client-Cert-Chain: :$issuing:")),
	qr/ fwd=\[\Q$none\E\]$/m, 'auth_cert off: a lone chain header removed');
$r = get('/', port => 8082, fwd("Client-Cert: :$alice:", "Client-Cert-Chain: :$issuing:"));
like($r, qr/^user= auth=invalid\/network\/ cc=\[\] fwd=\[\Q$none\E\]$/m,
	'untrusted peer: network, both headers removed');
like(get('/rfc9440/', fwd("Client-Cert-Chain: :$issuing:")), qr/^HTTP\/1\.\d 400/,
	'chain header without Client-Cert: no_cert');

# Log lines: the precise cause

$t->stop();

my $log = $t->read_file('error.log');
like($log, qr/access denied: .* \(2 "Client-Cert" headers\), reason: header/,
	'log: two Client-Cert fields');
like($log, qr/\(not a byte sequence \(":base64:"\)\), reason: header/,
	'log: Client-Cert without colons');
like($log, qr/\(trailing comma in the list\), reason: header/, 'log: trailing comma');
like($log, qr/\(empty value\), reason: header/, 'log: empty Client-Cert');
like($log, qr/\(no Cert in the last XFCC element\), reason: header/, 'log: XFCC without Cert');
like($log, qr/\(invalid base64\), reason: header/, 'log: URL-escaped base64');

###############################################################################
