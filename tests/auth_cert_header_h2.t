#!/usr/bin/perl

# Tests for auth_cert_header over HTTP/2 (curl, prior knowledge): a forwarded certificate from
# a trusted peer is used, one from an untrusted peer is refused, and in both cases the header
# never reaches the upstream, as over HTTP/1.x.

###############################################################################

use warnings;
use strict;

use Test::More;

BEGIN { use FindBin; chdir($FindBin::Bin); }

use lib "$FindBin::Bin/support";
use Test::Nginx;
use PKI;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http http_v2 proxy/)
	->has_daemon('openssl')->has_daemon('curl');

plan(skip_all => 'curl without HTTP/2') unless `curl -V` =~ /\bHTTP2\b/;

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    error_log %%TESTDIR%%/error.log info;

    large_client_header_buffers 4 32k;

    proxy_set_header X-User $auth_cert_identity;
    proxy_set_header X-Auth "$auth_cert_status/$auth_cert_reason/$auth_cert_source";

    # The listen parameter, not "http2 on": also nginx before 1.25.1.
    server {
        listen       127.0.0.1:8080 http2;
        server_name  localhost;

        auth_cert_header X-Client-Cert from=127.0.0.0/8 ca=root.crt;

        location /on/ {
            auth_cert on;
            proxy_pass http://127.0.0.1:8081/;
        }
    }

    server {
        listen       127.0.0.1:8082 http2;
        server_name  localhost;

        auth_cert_header X-Client-Cert from=192.0.2.0/24 ca=root.crt;

        location /optional/ {
            auth_cert optional;
            proxy_pass http://127.0.0.1:8081/;
        }
    }

    server {
        listen       127.0.0.1:8081;
        server_name  localhost;

        access_log off;

        location / {
            return 200 "user=$http_x_user auth=$http_x_auth forwarded=[$http_x_client_cert]\n";
        }
    }
}

EOF

my $d = $t->testdir();
my $pki = PKI->new($d);

$pki->ca('root', subject => '/CN=Test Root CA');
$pki->ca('issuing', issuer => 'root', subject => '/CN=Test Issuing CA');
$pki->cert('client', issuer => 'issuing', subject => '/UID=jdoe/CN=John Doe',
	ext => ['extendedKeyUsage = clientAuth']);
$pki->bundle('client-chain.pem', 'client.crt', 'issuing.crt');

$t->try_run('no auth_cert')->plan(4);

###############################################################################

my $cert = $pki->escaped('client-chain.pem');

# One request over HTTP/2 without TLS; the response's HTTP version, status and body.
sub h2 {
	my ($port, $uri) = @_;
	my $url = 'http://127.0.0.1:' . port($port) . $uri;
	open my $curl, '-|', 'curl', '-s', '--http2-prior-knowledge',
		'-H', "X-Client-Cert: $cert", '-w', '%{http_version} %{http_code}', $url
		or die "curl: $!";
	local $/;
	my $out = <$curl> // '';
	close $curl;
	return $out;
}

my $r = h2(8080, '/on/');
like($r, qr/^user=jdoe auth=ok\/\/header forwarded=\[\]$/m,
	'HTTP/2, trusted peer: forwarded certificate used');
like($r, qr/^2 200$/m, 'HTTP/2, trusted peer: over HTTP/2');

$r = h2(8082, '/optional/');
like($r, qr/^user= auth=invalid\/network\/ forwarded=\[\]$/m,
	'HTTP/2, untrusted peer: refused, nothing of it upstream');
like($r, qr/^2 200$/m, 'HTTP/2, untrusted peer: over HTTP/2');

###############################################################################
