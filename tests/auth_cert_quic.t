#!/usr/bin/perl

# Tests for auth_cert with HTTP/3: `auth_cert_stale reauth` ends the connection after its
# redirect, and `auth_cert_logout` after its answer, which an HTTP/3 (QUIC) connection does not
# do, so `nginx -t` refuses them in a server that listens with "quic". Configuration checks
# only: no QUIC client is needed.

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

my $t = Test::Nginx->new()->has(qw/http http_ssl http_v3/)->has_daemon('openssl');

# The reference: HTTP/3 with `auth_cert_stale reject` loads and serves.
$t->write_file_expand('nginx.conf', conf(location => "auth_cert_stale reject;"));

my $d = $t->testdir();
my $pki = PKI->new($d);
$pki->ca('ca');
$pki->cert('server', issuer => 'ca', subject => '/CN=localhost');
$t->write_file('secret', 'k' x 32);

$t->try_run('no auth_cert')->plan(17);

###############################################################################

# One http block: the server "localhost" with `auth_cert on` and `auth_cert_max_age 1h` (unless
# `age` says otherwise), `location` inside its location, listening as `listen` says ("quic",
# "tcp" or "both"); `other` is a whole server block added after it.
sub conf {
	my (%o) = @_;
	my $age = $o{age} // 'auth_cert_max_age 1h;';
	my $mode = $o{mode} // 'auth_cert on;';
	my $listen = $o{listen} // 'quic';
	my $location = $o{location} // '';
	my $other = $o{other} // '';
	my $quic = "listen       127.0.0.1:%%PORT_8980_UDP%% quic;";
	my $tcp = "listen       127.0.0.1:%%PORT_8443%% ssl;";
	my $listens = $listen eq 'quic' ? $quic : $listen eq 'tcp' ? $tcp : "$quic\n        $tcp";
	return <<"EOF";

%%TEST_GLOBALS%%

daemon off;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    ssl_certificate server.crt;
    ssl_certificate_key server.key;
    ssl_client_certificate ca.crt;
    ssl_verify_client on;

    server {
        $listens
        server_name  localhost;

        $age

        location / {
            $mode
            $location
        }
    }

    $other
}

EOF
}

# The message of a refused configuration written as NAME.conf.
sub refused {
	my ($name) = @_;
	return qr/\[emerg\] "auth_cert_stale reauth" \(the default\) cannot re-authenticate over HTTP\/3: the location of "auth_cert[a-z_]*" in \S+\Q$name\E\.conf:\d+ has "auth_cert_max_age" and its server listens with "quic"; use "auth_cert_stale reject" there, or remove "auth_cert_max_age"/;
}

# Refused: every location that would answer a stale HTTP/3 request with the redirect.

like(config_errors($t, 'default', conf()), refused('default'),
	'reauth by default, quic: refused');

like(config_errors($t, 'explicit', conf(location => 'auth_cert_stale reauth;')),
	refused('explicit'), 'auth_cert_stale reauth, quic: refused');

like(config_errors($t, 'both', conf(listen => 'both')), refused('both'),
	'a server with TCP and QUIC listeners: refused');

like(config_errors($t, 'inherited', conf(age => "auth_cert_max_age 1h;\nauth_cert on;",
		mode => '', location => 'location /in { }')), refused('inherited'),
	'auth_cert at the server level, a nested location: refused');

like(config_errors($t, 'login', conf(mode => "auth_cert_token_key hmac:secret;\n"
		. "auth_cert_login;")), refused('login'), 'auth_cert_login, quic: refused');

# A server that is not the default of its QUIC address.
like(config_errors($t, 'second', conf(age => '', other => <<'EOF')), refused('second'),
    server {
        listen       127.0.0.1:%%PORT_8980_UDP%% quic;
        server_name  second;
        auth_cert on;
        auth_cert_max_age 10m;
    }
EOF
	'reauth in the second server of a QUIC address: refused');

# A logout closes its connection to end the authentication, which HTTP/3 does not do.
like(config_errors($t, 'logout', conf(age => '', mode => '', location => 'auth_cert_logout;',
		other => 'auth_cert_zone auth:1m;')),
	qr/\[emerg\] "auth_cert_logout" cannot end an HTTP\/3 connection: the location "\/" has "auth_cert_logout" and its server listens with "quic"; serve the logout from a server without "quic"/,
	'auth_cert_logout, quic: refused');

like(config_errors($t, 'logout_both', conf(listen => 'both', age => '', mode => '',
		location => 'auth_cert_logout;', other => 'auth_cert_zone auth:1m;')),
	qr/"auth_cert_logout" cannot end an HTTP\/3 connection/,
	'auth_cert_logout, TCP and QUIC: refused');

is(config_errors($t, 'logout_tcp', conf(listen => 'tcp', age => '', mode => '',
		location => 'auth_cert_logout;', other => 'auth_cert_zone auth:1m;')), '',
	'auth_cert_logout without quic: accepted');

# Accepted: no redirect can happen, or not over HTTP/3.

is(config_errors($t, 'reject', conf(location => 'auth_cert_stale reject;')), '',
	'auth_cert_stale reject, quic: accepted');

is(config_errors($t, 'both_reject', conf(listen => 'both',
		location => 'auth_cert_stale reject;')), '',
	'auth_cert_stale reject, TCP and QUIC: accepted');

is(config_errors($t, 'no_age', conf(age => '')), '', 'no max_age, quic: accepted');

is(config_errors($t, 'age_off', conf(location => 'auth_cert_max_age off;')), '',
	'max_age off in the location, quic: accepted');

# Under `satisfy any` a stale request is refused (403), never redirected.
is(config_errors($t, 'satisfy_any', conf(location => 'satisfy any;')), '',
	'satisfy any, quic: accepted');

is(config_errors($t, 'tcp', conf(listen => 'tcp')), '', 'reauth without quic: accepted');

is(config_errors($t, 'mode_off', conf(mode => 'auth_cert off;')), '',
	'auth_cert off with max_age, quic: accepted');

# The documented layout: HTTP/3 in its own server with `reject`, reauth over TCP.
is(config_errors($t, 'split', conf(listen => 'tcp', other => <<'EOF')), '',
    server {
        listen       127.0.0.1:%%PORT_8980_UDP%% quic;
        server_name  localhost;
        auth_cert on;
        auth_cert_max_age 1h;
        auth_cert_stale reject;
    }
EOF
	'reauth over TCP, reject in a QUIC server of the same name: accepted');

###############################################################################
