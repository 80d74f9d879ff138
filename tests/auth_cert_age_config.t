#!/usr/bin/perl

# Tests for auth_cert_max_age and auth_cert_stale configuration: what `nginx -t` accepts and
# the errors it prints.

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

my $t = Test::Nginx->new()->has(qw/http http_ssl/)->has_daemon('openssl');

# A configuration that loads: the reference for the broken ones below.
$t->write_file_expand('nginx.conf', conf('auth_cert on;'));

my $d = $t->testdir();
my $pki = PKI->new($d);
$pki->ca('ca');
$pki->cert('server', issuer => 'ca', subject => '/CN=localhost');

$t->try_run('no auth_cert')->plan(7);

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

# Runs `nginx -t` on a configuration; returns its output when it fails, '' when it passes.
# (The test object is passed in: a named sub closing over it would keep it alive past the
# end of the test, when its final checks can no longer report.)
sub check {
	my ($t, $name, $conf) = @_;
	my $d = $t->testdir();
	$t->write_file_expand("$name.conf", $conf);
	my $out = `$Test::Nginx::NGINX -t -p $d/ -c $name.conf -e error.log 2>&1`;
	return $? == 0 ? '' : $out;
}

is(check($t, 'valid', conf(<<'EOF')), '', 'max_age and stale pass');
auth_cert on;
auth_cert_max_age 15m;
auth_cert_stale reject;
EOF

is(check($t, 'units', conf("auth_cert optional;\nauth_cert_max_age 1h30m;")), '',
	'max_age with several units');

is(check($t, 'off', conf("auth_cert on;\nauth_cert_max_age off;\nauth_cert_stale reauth;")),
	'', 'max_age off');

like(check($t, 'value', conf("auth_cert on;\nauth_cert_max_age 15x;")),
	qr/\[emerg\] invalid value "15x" in "auth_cert_max_age" directive in \S+value\.conf:\d+/,
	'bad max_age');

like(check($t, 'zero', conf("auth_cert on;\nauth_cert_max_age 0s;")),
	qr/invalid value "0s" in "auth_cert_max_age" directive/, 'zero max_age');

like(check($t, 'stale', conf("auth_cert on;\nauth_cert_stale logout;")),
	qr/invalid value "logout" in "auth_cert_stale" directive, it must be "reauth" or "reject"/,
	'bad stale action');

like(check($t, 'dup', conf("auth_cert on;\nauth_cert_max_age 1m;\nauth_cert_max_age 2m;")),
	qr/"auth_cert_max_age" directive is duplicate/, 'duplicate max_age');

###############################################################################
