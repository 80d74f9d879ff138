#!/usr/bin/perl

# Tests for the reuse of tokens per authentication: the connections that resume one TLS
# session (shared session cache, session tickets; TLS 1.2 and 1.3) get the same token until
# half its lifetime has passed; a new full handshake, another certificate or another claim
# value gets a new one.

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
use Test::Nginx::AuthCert qw/ cert_dir request connect_tls status body header /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

eval { require IO::Socket::SSL; };
plan(skip_all => 'IO::Socket::SSL not installed') if $@;

my $t = Test::Nginx->new()->has(qw/http http_ssl/)->has_daemon('openssl');

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
    ssl_verify_client optional;
    ssl_protocols TLSv1.2 TLSv1.3;

    auth_cert_token_key ec.key kid=ec1;

    add_header X-Reused $ssl_session_reused always;

    # the shared session cache
    server {
        listen       127.0.0.1:8443 ssl;
        server_name  localhost;

        ssl_session_cache shared:SSL:1m;
        ssl_session_tickets off;

        location = /login {
            auth_cert_login;
        }

        location = /login-claims {
            auth_cert_token_claim role $arg_role;
            auth_cert_login;
        }

        location = /login-short {
            auth_cert_token_ttl 4s;
            auth_cert_login;
        }
    }

    # session tickets
    server {
        listen       127.0.0.1:8444 ssl;
        server_name  localhost;

        ssl_session_cache off;
        ssl_session_tickets on;

        location = /login {
            auth_cert_login;
        }

        location = /login-claims {
            auth_cert_token_claim role $arg_role;
            auth_cert_login;
        }

        location = /login-short {
            auth_cert_token_ttl 4s;
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
$pki->cert('uid', issuer => 'ca', subject => '/DC=org/DC=example/UID=jdoe/CN=John Doe');
# The same identity in a renewed certificate: another key, another fingerprint.
$pki->cert('renewed', issuer => 'ca', subject => '/DC=org/DC=example/UID=jdoe/CN=John Doe');

$pki->run_openssl("genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $d/ec.key");

$t->try_run('no auth_cert tokens')->plan(46);

###############################################################################

my %ports = (cache => 8443, tickets => 8444);
my @versions = qw/ TLSv1_2 TLSv1_3 /;

# Connections stay open until the end: a client drops the session of a connection it
# abandons without a TLS shutdown.
my @open;

# A login on a new connection: the token, whether the session was resumed, the claims.
sub login {
	my ($port, $uri, %opts) = @_;
	my $s = connect_tls($port, %opts);
	push @open, $s;
	my $r = request($s, $uri);
	my $json = eval { decode_json(body($r)) } // {};
	my (undef, $claims) = split /\./, $json->{token} // '';
	return {
		status => status($r),
		reused => header($r, 'X-Reused') // 'none',
		token => $json->{token} // '',
		claims => eval { decode_json(decode_base64url($claims // '')) } // {},
	};
}

# Waits until the clock reaches the next second: the handshakes before and after it have
# different times.
sub next_second {
	my $now = time();
	select undef, undef, undef, 0.05 while time() == $now;
}

for my $v (@versions) {
	for my $m (sort keys %ports) {
		my $port = $ports{$m};
		my $name = "$v $m";
		my $cache = IO::Socket::SSL::Session_Cache->new(4);
		my %o = (version => $v, cache => $cache);

		my $full = login($port, '/login', %o, cert => 'uid');
		is("$full->{status} $full->{reused}", '200 .', "$name: full handshake");
		ok($full->{token}, "$name: token");

		my $one = login($port, '/login', %o, cert => 'uid');
		is("$one->{status} $one->{reused}", '200 r', "$name: resumed");
		is($one->{token}, $full->{token}, "$name: resumed connection: the same token");

		my $two = login($port, '/login', %o);
		is($two->{reused}, 'r', "$name: resumed again");
		is($two->{token}, $full->{token}, "$name: second resumed connection: the same token");

		# Another claim value: another token, kept for that value.
		my $admin = login($port, '/login-claims?role=admin', %o);
		my $user = login($port, '/login-claims?role=user', %o);
		my $again = login($port, '/login-claims?role=admin', %o);
		is("$admin->{reused} $user->{reused} $again->{reused}", 'r r r',
			"$name: claims: resumed");
		isnt($user->{token}, $admin->{token}, "$name: another claim value, another token");
		is($again->{token}, $admin->{token}, "$name: the same claim value, the same token");
	}
}

# A new full handshake is a new authentication, with its own token.

my $cache = IO::Socket::SSL::Session_Cache->new(4);
my $first = login(8443, '/login', cache => $cache, cert => 'uid');
next_second();
my $new = login(8443, '/login', cert => 'uid');
is($new->{reused}, '.', 'new handshake: not resumed');
isnt($new->{token}, $first->{token}, 'new handshake: a new token');
isnt($new->{claims}{auth_time}, $first->{claims}{auth_time}, 'new handshake: its auth_time');
is(login(8443, '/login', cache => $cache)->{token}, $first->{token},
	'the first session still resumes with its token');

# Another certificate of the same identity, in the same second or not: its own token.

my $renewed = login(8443, '/login', cert => 'renewed');
is($renewed->{claims}{sub}, 'jdoe', 'renewed certificate: the same identity');
isnt($renewed->{claims}{cnf}{'x5t#S256'}, $new->{claims}{cnf}{'x5t#S256'},
	'renewed certificate: a token bound to it');

# Until half the lifetime: a resumed connection then gets a new token.

$cache = IO::Socket::SSL::Session_Cache->new(4);
my $short = login(8444, '/login-short', cache => $cache, version => 'TLSv1_3', cert => 'uid');
my $reused = login(8444, '/login-short', cache => $cache, version => 'TLSv1_3');
is($reused->{token}, $short->{token}, 'ttl 4s: reused at once');
select undef, undef, undef, 0.1 while time() < ($short->{claims}{iat} // 0) + 2;
my $later = login(8444, '/login-short', cache => $cache, version => 'TLSv1_3');
is($later->{reused}, 'r', 'ttl 4s: resumed after half the lifetime');
isnt($later->{token}, $short->{token}, 'ttl 4s: a new token after half the lifetime');
is($later->{claims}{auth_time}, $short->{claims}{auth_time}, 'ttl 4s: the same authentication');

close $_ for grep { $_ } @open;

###############################################################################
