#!/usr/bin/perl

# Tests for auth_cert configuration: what `nginx -t` accepts and the errors it prints.

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

# A configuration that loads: the reference for the broken ones below.
$t->write_file_expand('nginx.conf', conf('auth_cert on;'));

my $d = $t->testdir();
my $pki = PKI->new($d);
$pki->ca('ca');
$pki->cert('server', issuer => 'ca', subject => '/CN=localhost');

$t->try_run('no auth_cert')->plan(21);

###############################################################################

# The server block of every configuration, with `$extra` inside its location.
sub conf {
	my ($extra, %opts) = @_;
	my $verify = $opts{verify} // 'on';
	my $server_extra = $opts{server} // '';
	return <<"EOF";

%%TEST_GLOBALS%%

daemon off;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    server {
        listen       127.0.0.1:8443 ssl;
        server_name  localhost;

        ssl_certificate server.crt;
        ssl_certificate_key server.key;
        ssl_client_certificate ca.crt;
        ssl_verify_client $verify;
        $server_extra

        location / {
            $extra
        }
    }

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;
    }
}

EOF
}

is(config_errors($t, 'valid', conf(<<'EOF')), '', 'a full location passes');
auth_cert on;
auth_cert_identity upn email oid:2.5.4.5 uid cn;
auth_cert_identity_regex "\.(?<id>\d{10})$";
auth_cert_eku clientAuth smartcardLogon 1.3.6.1.5.5.7.3.4;
auth_cert_key_usage digitalSignature;
auth_cert_policy 2.16.840.1.101.2.1.11.42;
auth_cert_issuer "^CN=ca$";
EOF

is(config_errors($t, 'optional', conf('auth_cert optional;', verify => 'optional_no_ca')), '',
	'optional with optional_no_ca passes');

like(config_errors($t, 'noverify', conf('auth_cert on;', verify => 'off')),
	qr/\[emerg\] "auth_cert" in \S+noverify\.conf:\d+ requires "ssl_verify_client on", "optional" or "optional_no_ca" in its server/,
	'auth_cert without ssl_verify_client');

like(config_errors($t, 'noverify_http', conf('', server => '', verify => 'on')
		=~ s/(server \{\s+listen\s+127.0.0.1:\d+;)/$1\n        auth_cert optional;/r),
	qr/"auth_cert" in \S+noverify_http\.conf:\d+ requires/,
	'auth_cert in a plain http server');

like(config_errors($t, 'mode', conf('auth_cert yes;')),
	qr/invalid value "yes" in "auth_cert" directive, it must be "on", "optional" or "off" in \S+mode\.conf:\d+/,
	'bad auth_cert value');

like(config_errors($t, 'dup', conf("auth_cert on;\nauth_cert off;")),
	qr/"auth_cert" directive is duplicate/, 'duplicate auth_cert');

like(config_errors($t, 'source', conf('auth_cert on; auth_cert_identity uid nickname;')),
	qr/unknown identity source "nickname" in "auth_cert_identity" directive/,
	'unknown identity source');

like(config_errors($t, 'oid', conf('auth_cert on; auth_cert_identity oid:2.5.x;')),
	qr/invalid OID in "oid:2\.5\.x" in "auth_cert_identity" directive/, 'bad oid source');

like(config_errors($t, 'regex', conf('auth_cert on; auth_cert_identity_regex "(\d+";')),
	qr/invalid regex "\(\\d\+" in "auth_cert_identity_regex" directive/, 'bad identity regex');

like(config_errors($t, 'eku', conf('auth_cert on; auth_cert_eku clientAuth smartcard;')),
	qr/unknown extended key usage "smartcard" in "auth_cert_eku" directive/, 'bad eku');

like(config_errors($t, 'ku', conf('auth_cert on; auth_cert_key_usage cRLSign;')),
	qr/unknown key usage "cRLSign" in "auth_cert_key_usage" directive/, 'bad key usage');

like(config_errors($t, 'policy', conf('auth_cert on; auth_cert_policy anyPolicy;')),
	qr/invalid certificate policy OID "anyPolicy" in "auth_cert_policy" directive/,
	'bad policy oid');

like(config_errors($t, 'issuer', conf('auth_cert on; auth_cert_issuer "[a-";')),
	qr/invalid regex "\[a-" in "auth_cert_issuer" directive/, 'bad issuer regex');

like(config_errors($t, 'args', conf('auth_cert;')),
	qr/invalid number of arguments in "auth_cert" directive/, 'missing argument');

# auth_cert_max_age and auth_cert_stale

is(config_errors($t, 'age_valid', conf(<<'EOF')), '', 'max_age and stale pass');
auth_cert on;
auth_cert_max_age 15m;
auth_cert_stale reject;
EOF

is(config_errors($t, 'age_units', conf("auth_cert optional;\nauth_cert_max_age 1h30m;")), '',
	'max_age with several units');

is(config_errors($t, 'age_off',
		conf("auth_cert on;\nauth_cert_max_age off;\nauth_cert_stale reauth;")),
	'', 'max_age off');

like(config_errors($t, 'age_value', conf("auth_cert on;\nauth_cert_max_age 15x;")),
	qr/\[emerg\] invalid value "15x" in "auth_cert_max_age" directive in \S+age_value\.conf:\d+/,
	'bad max_age');

like(config_errors($t, 'age_zero', conf("auth_cert on;\nauth_cert_max_age 0s;")),
	qr/invalid value "0s" in "auth_cert_max_age" directive/, 'zero max_age');

like(config_errors($t, 'age_stale', conf("auth_cert on;\nauth_cert_stale logout;")),
	qr/invalid value "logout" in "auth_cert_stale" directive, it must be "reauth" or "reject"/,
	'bad stale action');

like(config_errors($t, 'age_dup',
		conf("auth_cert on;\nauth_cert_max_age 1m;\nauth_cert_max_age 2m;")),
	qr/"auth_cert_max_age" directive is duplicate/, 'duplicate max_age');

###############################################################################
