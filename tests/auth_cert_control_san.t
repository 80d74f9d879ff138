#!/usr/bin/perl

# Tests for auth_cert with CA-signed certificates whose texts hold control characters (CR/LF,
# \x01, \x7f) in SAN rfc822Name, UPN, dNSName and URI and in the subject emailAddress: no
# variable may carry one, so proxy_set_header can never split the upstream request. Such SAN
# values are left out, the next value counts, and an info line tells why.

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

eval { require IO::Socket::SSL; };
plan(skip_all => 'IO::Socket::SSL not installed') if $@;

my $t = Test::Nginx->new()->has(qw/http http_ssl proxy/)->has_daemon('openssl');

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    error_log %%TESTDIR%%/error.log info;

    proxy_set_header X-Email $auth_cert_email;
    proxy_set_header X-Upn $auth_cert_upn;
    proxy_set_header X-Subject $auth_cert_subject;
    proxy_set_header X-Identity $auth_cert_identity;

    server {
        listen       127.0.0.1:8443 ssl;
        server_name  localhost;

        ssl_certificate server.crt;
        ssl_certificate_key server.key;
        ssl_client_certificate ca.crt;
        ssl_verify_client on;

        auth_cert on;

        location / {
            proxy_pass http://127.0.0.1:8081/;
        }
        location /email {
            auth_cert_identity email;
            proxy_pass http://127.0.0.1:8081/;
        }
        location /upn {
            auth_cert_identity upn;
            proxy_pass http://127.0.0.1:8081/;
        }
        location /dns {
            auth_cert_identity san_dns;
            proxy_pass http://127.0.0.1:8081/;
        }
        location /uri {
            auth_cert_identity san_uri;
            proxy_pass http://127.0.0.1:8081/;
        }
    }

    # A load balancer's forwarded certificate: the same rules.
    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        auth_cert on;
        auth_cert_header X-Client-Cert from=127.0.0.1 ca=ca.crt;

        location / {
            proxy_pass http://127.0.0.1:8081/;
        }
    }

    server {
        listen       127.0.0.1:8081;
        server_name  localhost;

        auth_cert off;

        location / {
            return 200 "admin=[$http_x_admin] email=[$http_x_email] upn=[$http_x_upn] id=[$http_x_identity] subject=[$http_x_subject]\n";
        }
    }
}

EOF

my $d = $t->testdir();
my $pki = PKI->new($d);
cert_dir($d);

$pki->ca('ca', subject => '/CN=Test CA');
$pki->cert('server', issuer => 'ca', subject => '/CN=localhost');

# openssl's configuration turns \r and \n into CR and LF; other bytes go in as they are.
my $upn = 'otherName.%d = 1.3.6.1.4.1.311.20.2.3;UTF8:%s';

# Every SAN text of this one splits a header.
$pki->cert('crlf', issuer => 'ca', subject => '/CN=crlf',
	ext => ['subjectAltName = @alt', '[alt]',
		'email.1 = bob@corp\r\nX-Admin: 1',
		sprintf($upn, 1, 'bob@corp\r\nX-Admin: 2'),
		'DNS.1 = crlf.example\r\nX-Admin: 3',
		'URI.1 = urn:crlf\r\nX-Admin: 4']);

# A bad value of each type first, then a good one.
$pki->cert('mixed', issuer => 'ca', subject => '/CN=mixed',
	ext => ['subjectAltName = @alt', '[alt]',
		"email.1 = bad\x01\@corp.example",
		'email.2 = mixed@corp.example',
		sprintf($upn, 1, "bad\x7f\@corp"),
		sprintf($upn, 2, 'mixed@corp'),
		"DNS.1 = bad\x01.example",
		'DNS.2 = mixed.example',
		"URI.1 = urn:bad\x7f",
		'URI.2 = urn:mixed']);

# Nothing unusual: the SAN identities work as before.
$pki->cert('plain', issuer => 'ca', subject => '/CN=plain',
	ext => ['subjectAltName = @alt', '[alt]',
		'email.1 = plain@corp.example',
		sprintf($upn, 1, 'plain@corp'),
		'DNS.1 = plain.example',
		'URI.1 = urn:plain']);

# The subject's emailAddress splits a header; the SAN address is the e-mail.
$pki->cert('dnemail', issuer => 'ca',
	subject => "/CN=dnemail/emailAddress=x\@corp\r\nX-Admin: 5",
	ext => ['subjectAltName = email:dnemail@corp.example']);

$t->try_run('no auth_cert')->plan(25);

###############################################################################

my $r = get('/', cert => 'crlf');
is(status($r), 200, 'CR/LF in SAN: the request passes');
is(body($r), "admin=[] email=[] upn=[] id=[crlf] subject=[CN=crlf]\n",
	'CR/LF in SAN: no header injected, e-mail and UPN empty');

$r = get('/email', cert => 'crlf');
is(status($r), 403, 'CR/LF e-mail as identity: denied');
like(body($r), qr/^auth_cert: identity:/, 'CR/LF e-mail as identity: reason');
unlike($r, qr/admin=/, 'CR/LF e-mail as identity: not proxied');

is(status(get('/upn', cert => 'crlf')), 403, 'CR/LF UPN as identity: denied');
is(status(get('/dns', cert => 'crlf')), 403, 'CR/LF DNS as identity: denied');
is(status(get('/uri', cert => 'crlf')), 403, 'CR/LF URI as identity: denied');

$r = get('/', cert => 'mixed');
is(status($r), 200, 'control characters in first SAN values: the request passes');
is(body($r), "admin=[] email=[mixed\@corp.example] upn=[mixed\@corp] id=[mixed] "
	. "subject=[CN=mixed]\n", 'control characters: the next SAN value counts');
like(get('/dns', cert => 'mixed'), qr/id=\[mixed\.example\]/, 'san_dns: the next value');
like(get('/uri', cert => 'mixed'), qr/id=\[urn:mixed\]/, 'san_uri: the next value');
like(get('/email', cert => 'mixed'), qr/id=\[mixed\@corp\.example\]/, 'email: the next value');
like(get('/upn', cert => 'mixed'), qr/id=\[mixed\@corp\]/, 'upn: the next value');

like(get('/dns', cert => 'plain'), qr/id=\[plain\.example\]/, 'san_dns identity');
like(get('/uri', cert => 'plain'), qr/id=\[urn:plain\]/, 'san_uri identity');
like(get('/email', cert => 'plain'), qr/id=\[plain\@corp\.example\]/, 'email identity');
like(get('/upn', cert => 'plain'), qr/id=\[plain\@corp\]/, 'upn identity');

$r = get('/', cert => 'dnemail');
is(body($r), "admin=[] email=[dnemail\@corp.example] upn=[] id=[dnemail] "
	. 'subject=[emailAddress=x@corp\0D\0AX-Admin: 5,CN=dnemail]' . "\n",
	'CR/LF in subject emailAddress: SAN e-mail, subject escaped');

# Forwarded by a trusted load balancer.

$r = get('/', port => 8080, headers => ['X-Client-Cert: ' . $pki->escaped('crlf.crt')]);
is(status($r), 200, 'forwarded, CR/LF in SAN: the request passes');
is(body($r), "admin=[] email=[] upn=[] id=[crlf] subject=[CN=crlf]\n",
	'forwarded, CR/LF in SAN: no header injected');

$t->stop();

my $log = $t->read_file('error.log');
my $all = qr/values with control characters left out of the client certificate \(SAN email, SAN UPN, SAN DNS, SAN URI\), serial: [0-9A-F]+/;
is(() = $log =~ /\[info\].*auth_cert: $all/g, 3,
	'log: once per certificate (crlf and mixed over TLS, crlf forwarded)');
like($log, qr/\[info\].*auth_cert: values with control characters left out of the client certificate \(subject emailAddress\), serial: [0-9A-F]+/,
	'log: the subject emailAddress left out');
like($log, qr/\[info\].*auth_cert: access denied: no identity found in the client certificate \(values with control characters left out: SAN email, SAN UPN, SAN DNS, SAN URI\), reason: identity, .*"GET \/email/,
	'log: a rejection tells what was left out');
is(() = $log =~ /auth_cert: .*"GET \/upn /g, 1, 'log: one line for a rejection');

###############################################################################
