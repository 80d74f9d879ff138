#!/usr/bin/perl

# Tests for auth_cert_handshake: with "require", a client that sends no certificate, or one
# that does not verify, fails the TLS handshake with an alert (certificate_required in TLS 1.3,
# handshake_failure in TLS 1.2, the verify error's alert such as unknown_ca), so that browsers
# forget a cached "no certificate" choice; with "http" (the default) the handshake completes
# and the module answers at the HTTP level. The mode of the server chosen by SNI applies. The
# alert waits for the client's first request (a browser takes an alert that comes earlier for
# a network error), also under load and across a reload.

###############################################################################

use warnings;
use strict;

use Test::More;

BEGIN { use FindBin; chdir($FindBin::Bin); }

use lib "$FindBin::Bin/support";
use Test::Nginx;
use PKI;
use Test::Nginx::AuthCert qw/ cert_dir get status body config_errors connect_tls /;
use IO::Select;

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

    ssl_certificate server.crt;
    ssl_certificate_key server.key;
    ssl_client_certificate ca.crt;
    ssl_protocols TLSv1.2 TLSv1.3;

    auth_cert on;

    # require, ssl_verify_client optional: the default server of 8443
    server {
        listen       127.0.0.1:8443 ssl default_server;
        server_name  localhost;

        ssl_verify_client optional;
        auth_cert_handshake require;

        location / {
            proxy_set_header X-Seen "require: $auth_cert_identity";
            proxy_pass http://127.0.0.1:8081/;
        }
    }

    # http (the default), chosen by SNI on 8443
    server {
        listen       127.0.0.1:8443 ssl;
        server_name  http.example;

        ssl_verify_client optional;

        location / {
            proxy_set_header X-Seen "http: $auth_cert_identity";
            proxy_pass http://127.0.0.1:8081/;
        }
    }

    # http in the default server of 8444, require in the one chosen by SNI
    server {
        listen       127.0.0.1:8444 ssl default_server;
        server_name  localhost;

        ssl_verify_client on;
        auth_cert_handshake http;

        location / {
            proxy_set_header X-Seen "http: $auth_cert_identity";
            proxy_pass http://127.0.0.1:8081/;
        }
    }

    server {
        listen       127.0.0.1:8444 ssl;
        server_name  require.example;

        ssl_verify_client on;
        auth_cert_handshake require;

        location / {
            proxy_set_header X-Seen "require: $auth_cert_identity";
            proxy_pass http://127.0.0.1:8081/;
        }
    }

    server {
        listen       127.0.0.1:8081;
        server_name  localhost;

        auth_cert off;

        location / {
            return 200 "$http_x_seen\n";
        }
    }
}

EOF

my $d = $t->testdir();
my $pki = PKI->new($d);
cert_dir($d);

$pki->ca('ca', subject => '/CN=Test Root CA');
$pki->ca('other', subject => '/CN=Another CA');
$pki->cert('server', issuer => 'ca', subject => '/CN=localhost');
$pki->cert('client', issuer => 'ca', subject => '/UID=jdoe/CN=John Doe');
$pki->cert('stranger', issuer => 'other', subject => '/UID=eve/CN=Eve');

$t->try_run("no auth_cert_handshake")->plan(29);

###############################################################################

# One request with openssl s_client: what it prints, alerts included (-quiet implies
# -ign_eof: it reads until the server closes, so that a TLS 1.3 alert, which comes after the
# client's own Finished, is seen).
sub s_client {
	my ($port, $version, %opts) = @_;
	my @args = ('-connect', '127.0.0.1:' . port($port), "-$version", '-quiet',
		'-CAfile', "$d/ca.crt");
	push @args, '-servername', $opts{sni} if $opts{sni};
	push @args, '-noservername' unless $opts{sni};
	push @args, '-cert', "$d/$opts{cert}.crt", '-key', "$d/$opts{cert}.key" if $opts{cert};
	my $host = $opts{sni} // 'localhost';
	my $in = "$d/request.txt";
	open my $fh, '>', $in or die "$in: $!";
	print $fh "GET / HTTP/1.0\r\nHost: $host\r\n\r\n";
	close $fh;
	return `(sleep $opts{delay}; cat $in) | openssl s_client @args 2>&1` if $opts{delay};
	return `openssl s_client @args < $in 2>&1`;
}

my %alert = (
	certificate_required => qr/alert certificate required|alert number 116\b/,
	handshake_failure => qr/alert handshake failure|alert number 40\b/,
	unknown_ca => qr/alert unknown ca|alert number 48\b/,
);

# require: no certificate

my $r = s_client(8443, 'tls1_3');
like($r, $alert{certificate_required}, 'require, TLS 1.3, no certificate: certificate_required');
unlike($r, qr/HTTP\/1\.\d/, 'require, TLS 1.3, no certificate: no HTTP answer');
$r = s_client(8443, 'tls1_2');
like($r, $alert{handshake_failure}, 'require, TLS 1.2, no certificate: handshake_failure');
unlike($r, qr/HTTP\/1\.\d/, 'require, TLS 1.2, no certificate: no HTTP answer');

# require: a certificate nginx cannot verify

$r = s_client(8443, 'tls1_3', cert => 'stranger');
like($r, $alert{unknown_ca}, 'require, TLS 1.3, unverifiable certificate: unknown_ca');
unlike($r, qr/HTTP\/1\.\d/, 'require, TLS 1.3, unverifiable certificate: no HTTP answer');
$r = s_client(8443, 'tls1_2', cert => 'stranger');
like($r, $alert{unknown_ca}, 'require, TLS 1.2, unverifiable certificate: unknown_ca');

# require: a good certificate

$r = s_client(8443, 'tls1_3', cert => 'client');
like($r, qr/^HTTP\/1\.. 200 .*^require: jdoe$/ms, 'require, TLS 1.3, good certificate: 200');
$r = s_client(8443, 'tls1_2', cert => 'client');
like($r, qr/^HTTP\/1\.. 200 .*^require: jdoe$/ms, 'require, TLS 1.2, good certificate: 200');
$r = get('/', cert => 'client', SSL_hostname => 'localhost');
is(status($r), 200, 'require, good certificate, IO::Socket::SSL: 200');

# http, chosen by SNI after a default server with require: the module's answer

$r = s_client(8443, 'tls1_3', sni => 'http.example');
like($r, qr/^HTTP\/1\.. 400 .*^auth_cert: no_cert: /ms,
	'SNI to a server with http: the handshake completes, the no_cert answer');
$r = s_client(8443, 'tls1_3', sni => 'http.example', cert => 'stranger');
like($r, qr/^HTTP\/1\.. 400 .*The SSL certificate error/ms,
	'SNI to a server with http: nginx\'s answer to an unverified certificate');

# require, chosen by SNI after a default server with http (and ssl_verify_client on)

$r = s_client(8444, 'tls1_3');
like($r, qr/^HTTP\/1\.. 400 .*No required SSL certificate was sent/ms,
	'http, ssl_verify_client on: nginx\'s answer without a certificate');
$r = s_client(8444, 'tls1_3', sni => 'require.example');
like($r, $alert{certificate_required}, 'SNI to a server with require: certificate_required');
$r = s_client(8444, 'tls1_2', sni => 'require.example', cert => 'stranger');
like($r, $alert{unknown_ca}, 'SNI to a server with require: unknown_ca');
$r = s_client(8444, 'tls1_3', sni => 'require.example', cert => 'client');
like($r, qr/^HTTP\/1\.. 200 .*^require: jdoe$/ms, 'SNI to a server with require: 200');

# The alert waits for the client's request (TLS 1.3: the client's side of the handshake is
# complete before the server checks the certificate). A browser that gets the alert before it
# sends its request does not recognise it as a refused certificate.

my $s = connect_tls(8443, version => 'TLSv1_3', SSL_hostname => 'localhost');
ok($s, 'TLS 1.3, no certificate: the client side of the handshake completes');
SKIP: {
	skip 'no connection', 2 unless $s;
	ok(!IO::Select->new($s)->can_read(0.05), 'no alert before the request');
	$s->syswrite("GET / HTTP/1.0\r\nHost: localhost\r\n\r\n");
	my $n = $s->sysread(my $buf, 1024);
	ok(!$n, 'no answer to the request');
}
$r = s_client(8443, 'tls1_3', delay => 0.1);
like($r, $alert{certificate_required}, 'a request 100 ms after the handshake: then the alert');

# Many refused handshakes at once, half of their clients gone at once, and a reload while the
# alerts wait: the old worker exits, no socket is left open (the final "no alerts" check), and
# nginx serves.

my @held = grep { defined } map {
	connect_tls(8443, version => 'TLSv1_3', SSL_hostname => 'localhost') } 1 .. 20;
is(scalar @held, 20, '20 refused handshakes at once');
close $_ for @held[0 .. 9];
my $exited = () = $t->read_file('error.log') =~ /exited with code/g;
$t->reload();
my $gone;
for (1 .. 50) {
	$gone = (() = $t->read_file('error.log') =~ /exited with code/g) > $exited;
	last if $gone;
	select undef, undef, undef, 0.1;
}
ok($gone, 'reload: the old worker exits');
close $_ for @held[10 .. 19];
is(status(get('/', cert => 'client', SSL_hostname => 'localhost')), 200, 'then served');

# What nginx logs for a failed handshake: one line each, OpenSSL's reason.

my $log = $t->read_file('error.log');
like($log, qr/SSL_do_handshake\(\) failed .*peer did not return a certificate/,
	'log: peer did not return a certificate');
like($log, qr/SSL_do_handshake\(\) failed .*certificate verify failed/,
	'log: certificate verify failed');

# nginx -t

my $base = sub {
	my ($server) = @_;
	return <<"EOF";

%%TEST_GLOBALS%%

daemon off;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    auth_cert_handshake require;

    server {
        listen       127.0.0.1:8445 ssl;
        server_name  localhost;

        ssl_certificate server.crt;
        ssl_certificate_key server.key;
        ssl_client_certificate ca.crt;
$server
    }

    server {
        listen       127.0.0.1:8446;
        server_name  localhost;
    }
}

EOF
};

is(config_errors($t, 'optional', $base->('ssl_verify_client optional;')), '',
	'nginx -t: require with ssl_verify_client optional, and a plain server');
like(config_errors($t, 'off', $base->('')),
	qr/"auth_cert_handshake require" requires "ssl_verify_client on" or "optional"/,
	'nginx -t: require without ssl_verify_client');
like(config_errors($t, 'no_ca', $base->('ssl_verify_client optional_no_ca;')),
	qr/"auth_cert_handshake require" requires "ssl_verify_client on" or "optional"/,
	'nginx -t: require with ssl_verify_client optional_no_ca');
like(config_errors($t, 'location', $base->('location / { auth_cert_handshake http; }')),
	qr/"auth_cert_handshake" directive is not allowed here/,
	'nginx -t: not in a location');

###############################################################################
