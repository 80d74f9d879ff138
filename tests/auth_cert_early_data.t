#!/usr/bin/perl

# Tests for auth_cert and TLS 1.3 early data (0-RTT, ssl_early_data on): a request received in
# early data can be replayed by anyone who captured it, so it is never authenticated: 425 Too
# Early (RFC 8470) with reason early_data where auth_cert is on, no identity where it is
# optional, no token from auth_cert_login. The same request sent after the handshake passes.
#
# Early data is sent with openssl s_client: a full handshake with the client certificate saves
# the session (-sess_out), then -sess_in resumes it and -early_data sends a file in 0-RTT;
# what s_client reads from its standard input is sent after the handshake. The attack itself,
# a captured first flight replayed by someone who cannot finish the handshake, is replayed
# over plain TCP: only the logs tell what nginx did with it.

###############################################################################

use warnings;
use strict;

use Test::More;

use IO::Select;
use IO::Socket::INET;

BEGIN { use FindBin; chdir($FindBin::Bin); }

use lib "$FindBin::Bin/support";
use Test::Nginx;
use PKI;
use Test::Nginx::AuthCert qw/ cert_dir /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http http_ssl http_v2 proxy/)->has_daemon('openssl');

plan(skip_all => 'no s_client -early_data')
	unless `openssl s_client -help 2>&1` =~ /-early_data/;

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
    ssl_verify_client on;
    ssl_protocols TLSv1.3;
    ssl_early_data on;

    auth_cert_token_key hmac:secret kid=hs1;

    add_header X-Early "[$ssl_early_data]" always;

    server {
        # The listen parameter, not "http2 on": also nginx before 1.25.1.
        listen       127.0.0.1:8443 ssl http2;
        server_name  localhost;

        # An idle HTTP/2 connection is closed soon, which ends s_client.
        keepalive_timeout 2s;

        location / {
            auth_cert on;
            proxy_set_header X-Identity $auth_cert_identity;
            proxy_pass http://127.0.0.1:8081/;
        }

        location /optional/ {
            auth_cert optional;
            proxy_set_header X-Identity $auth_cert_identity;
            proxy_set_header X-Auth "$auth_cert_status/$auth_cert_reason";
            proxy_set_header X-Token $auth_cert_token;
            proxy_pass http://127.0.0.1:8081/;
        }

        location = /login {
            auth_cert_login;
        }
    }

    server {
        listen       127.0.0.1:8081;
        server_name  localhost;

        auth_cert off;

        location / {
            access_log %%TESTDIR%%/backend.log;
            return 200 "uri=$uri identity=$http_x_identity auth=$http_x_auth token=$http_x_token\n";
        }
    }
}

EOF

my $d = $t->testdir();
my $pki = PKI->new($d);
cert_dir($d);

$pki->ca('ca', subject => '/CN=Test Root CA');
$pki->cert('server', issuer => 'ca', subject => '/CN=localhost');
$pki->cert('alice', issuer => 'ca', subject => '/UID=alice/CN=Alice');
$pki->run_openssl("rand -out $d/secret 32");

$t->try_run('no auth_cert');
$t->run_daemon(\&delaying_relay, port(8082), port(8443));
$t->waitforsocket('127.0.0.1:' . port(8082)) or die "relay did not start\n";
$t->plan(27);

###############################################################################

# A TCP relay to nginx that holds the server's first flight back for half a second: the client
# sends its Finished only after it, so nginx has read and answered the early data by then, as
# it does for a replayed flight that never finishes. (Without the relay, a busy machine may
# deliver early data and Finished together, and nginx then serves the request after the
# handshake, rightly.)
sub delaying_relay {
	my ($port, $to) = @_;
	my $server = IO::Socket::INET->new(Proto => 'tcp', LocalAddr => "127.0.0.1:$port",
		Listen => 5, Reuse => 1) or die "Can't listen on $port: $!\n";
	local $SIG{PIPE} = 'IGNORE';
	while (my $client = $server->accept()) {
		my $nginx = IO::Socket::INET->new("127.0.0.1:$to") or next;
		my $select = IO::Select->new($client, $nginx);
		my $first = 1;
		RELAY: while (my @ready = $select->can_read(10)) {
			for my $from (@ready) {
				my $to = $from == $nginx ? $client : $nginx;
				my $n = $from->sysread(my $buf, 65536);
				last RELAY unless $n;
				if ($from == $nginx && $first) {
					select(undef, undef, undef, 0.5);
					$first = 0;
				}
				$to->syswrite($buf);
			}
		}
		close $nginx;
		close $client;
	}
}

my $n = 0;

# (Not $t->write_file: a named sub closing over $t keeps it alive past the end of the test.)
sub write_file {
	my ($name, $content) = @_;
	open my $fh, '>', $name or die "Can't write $name: $!\n";
	binmode $fh;
	print $fh $content;
	close $fh;
}

# Runs openssl s_client on $port with the client certificate alice; returns what it printed.
# Options: in => text sent after the handshake (standard input), early => text sent in early
# data, sess_in / sess_out => session files, alpn => protocol. It runs until the server
# closes the connection.
sub s_client {
	my ($port, %o) = @_;
	$n++;
	my $in = "$d/in$n";
	write_file($in, $o{in} // '');
	my $cmd = 'openssl s_client -tls1_3 -connect 127.0.0.1:' . port($port)
		. " -servername localhost -cert $d/alice.crt -key $d/alice.key";
	$cmd .= " -sess_out $o{sess_out}" if $o{sess_out};
	$cmd .= " -sess_in $o{sess_in}" if $o{sess_in};
	$cmd .= " -alpn $o{alpn}" if $o{alpn};
	if (defined $o{early}) {
		write_file("$d/early$n", $o{early});
		$cmd .= " -early_data $d/early$n";
	}
	return `timeout 10 $cmd -ign_eof < $in 2>&1`;
}

# A new session of alice (full handshake, client certificate sent), saved in a file; returns
# the file and s_client's output. Options as s_client's.
sub session {
	my ($port, %o) = @_;
	my $file = "$d/sess" . ($n + 1);
	my $out = s_client($port, sess_out => $file, %o);
	return ($file, $out);
}

sub http11 {
	my ($method, $uri, %o) = @_;
	my $body = $o{body} // '';
	my $close = $o{close} ? "Connection: close\r\n" : '';
	return "$method $uri HTTP/1.1\r\nHost: localhost\r\n$close"
		. ($method eq 'POST' ? 'Content-Length: ' . length($body) . "\r\n" : '')
		. "\r\n$body";
}

# The HTTP/1.1 responses in s_client's output, in order (each with what s_client printed
# after it).
sub responses {
	my ($out) = @_;
	my @parts = split m{(?=HTTP/1\.1 \d{3} )}, $out;
	shift @parts;
	return @parts;
}

sub early_accepted { $_[0] =~ /Early data was accepted/ }

###############################################################################

# A full handshake: alice is authenticated; the session allows early data.

my ($sess, $out) = session(8443, in => http11('GET', '/first', close => 1));
like($out, qr{HTTP/1\.1 200 .*identity=alice}s, 'full handshake: authenticated');
like($out, qr/Max Early Data: [1-9]/, 'session allows early data');

# GET in early data, then the same request after the handshake on the same connection.

$out = s_client(8082, sess_in => $sess,
	early => http11('GET', '/early'), in => http11('GET', '/early', close => 1));
ok(early_accepted($out), 'early data accepted');
my @r = responses($out);
like($r[0] // '', qr{^HTTP/1\.1 425 Too Early\x0d\x0a}, 'early GET: 425');
like($r[0] // '', qr{X-Early: \[1\]}, 'early GET: nginx saw early data');
like($r[0] // '', qr{\x0d\x0a\x0d\x0aauth_cert: early_data: }, 'early GET: module body');
unlike($r[0] // '', qr/identity=/, 'early GET: not proxied');
like($r[1] // '', qr{^HTTP/1\.1 200 .*X-Early: \[\].*uri=/early identity=alice}s,
	'same request after the handshake: 200');

# POST in early data, twice with the same session.

my $post = http11('POST', '/transfer', body => 'to=mallory&amount=1000', close => 1);

for my $try (1 .. 2) {
	$out = s_client(8082, sess_in => $sess, early => $post);
	@r = responses($out);
	ok(early_accepted($out) && ($r[0] // '') =~ m{^HTTP/1\.1 425 .*auth_cert: early_data: }s,
		"early POST, try $try: 425");
}

# The attack of the report: a captured first flight (ClientHello and the POST in early data)
# sent again three times, by someone who cannot finish the handshake.

my $flight = capture_flight($sess, $post);
ok(length $flight > 500, 'first flight captured');
replay($flight) for 1 .. 3;

# auth_cert optional: no identity, status and reason tell why.

$out = s_client(8082, sess_in => $sess,
	early => http11('GET', '/optional/x'), in => http11('GET', '/optional/y', close => 1));
@r = responses($out);
like($r[0] // '', qr{^HTTP/1\.1 200 }, 'optional, early: passes');
like($r[0] // '', qr{uri=/x identity= auth=invalid/early_data token=\n},
	'optional, early: no identity, no token');
like($r[1] // '', qr{uri=/y identity=alice auth=ok/ token=ey},
	'optional, after the handshake: identity');

# auth_cert_login signs no token for a request in early data.

$out = s_client(8082, sess_in => $sess,
	early => http11('GET', '/login'), in => http11('GET', '/login', close => 1));
@r = responses($out);
like($r[0] // '', qr{^HTTP/1\.1 425 .*auth_cert: early_data: }s, 'login, early: 425');
unlike($r[0] // '', qr/"token"/, 'login, early: no token');
like($r[1] // '', qr{^HTTP/1\.1 200 .*"token":"ey}s, 'login after the handshake: token');

# HTTP/2: a stream opened in early data.

# Connection preface, SETTINGS, HEADERS of stream 1 (GET https://localhost/h2, END_STREAM).
my $hpack = "\x82\x87\x44\x03/h2\x41\x09localhost";
my $h2 = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	. "\x00\x00\x00\x04\x00\x00\x00\x00\x00"
	. pack('CnCCN', 0, length $hpack, 1, 0x5, 1) . $hpack;

# A session with ALPN h2, which early data must repeat.
my ($sess2) = session(8443, alpn => 'h2', in => $h2);

$out = s_client(8082, sess_in => $sess2, alpn => 'h2', early => $h2);
ok(early_accepted($out), 'h2: early data accepted');
like($out, qr/auth_cert: early_data: /, 'h2, early stream: module body');
unlike($out, qr/identity=alice/, 'h2, early stream: not proxied');

$out = s_client(8082, sess_in => $sess2, alpn => 'h2', in => $h2);
like($out, qr{uri=/h2 identity=alice}, 'h2, stream after the handshake: proxied');

# Every rejection is logged once; nothing in early data reached the backend.

$t->stop();

my $log = $t->read_file('error.log');
my @lines = $log =~ /^.*reason: early_data.*$/mg;
is(scalar @lines, 8, 'one log line per rejection');
is(scalar(grep { /POST \/transfer/ } @lines), 5, 'the replays were refused');
like($lines[0] // '', qr/auth_cert: access denied: .*early data/, 'log line');
unlike($log, qr/\[(alert|emerg|crit)\]/, 'no alerts');

my $backend = $t->read_file('backend.log');
unlike($backend, qr{/transfer}, 'no early POST reached the backend');
like($backend, qr{GET /early }, 'the request after the handshake did');

###############################################################################

# What openssl s_client sends first when it resumes session file $sess with early data
# $early: the ClientHello and the early data, caught by a listener that never answers.
sub capture_flight {
	my ($sess, $early) = @_;
	my $port = port(8083);
	my $listen = IO::Socket::INET->new(Proto => 'tcp', LocalAddr => "127.0.0.1:$port",
		Listen => 1, Reuse => 1, Timeout => 5) or return '';
	$n++;
	write_file("$d/early$n", $early);
	system("timeout 5 openssl s_client -tls1_3 -connect 127.0.0.1:$port "
		. "-servername localhost -sess_in $sess -early_data $d/early$n "
		. '</dev/null >/dev/null 2>&1 &');
	my $c = $listen->accept() or return '';
	my $flight = '';
	while (IO::Select->new($c)->can_read(1)) {
		$c->sysread($flight, 65536, length $flight) or last;
	}
	close $c;
	close $listen;
	return $flight;
}

# Sends a captured flight to nginx and reads what comes back (encrypted: only the server can
# tell what happened) until nginx closes or a second of silence.
sub replay {
	my ($flight) = @_;
	my $s = IO::Socket::INET->new('127.0.0.1:' . port(8443)) or return;
	$s->syswrite($flight);
	my $r = '';
	while (IO::Select->new($s)->can_read(1)) {
		$s->sysread($r, 65536, length $r) or last;
	}
	close $s;
}

###############################################################################
