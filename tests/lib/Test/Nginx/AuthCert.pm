package Test::Nginx::AuthCert;

# Client helpers shared by the auth_cert test scripts: requests over plain HTTP and TLS with
# or without a client certificate, TLS connections kept open across requests (session
# resumption, keep-alive), reading a response, and `nginx -t` on a configuration.
#
# SPDX-License-Identifier: Apache-2.0
#
# An extension of Test::Nginx, as nginx-tests keeps Test::Nginx::Stream or ::HTTP2: it uses
# only the public Test::Nginx API (http(), port(), $t->write_file_expand, $Test::Nginx::NGINX),
# so the scripts run the same with the official library. Functions are exported by name:
#
#   use Test::Nginx::AuthCert qw/ cert_dir get status body /;
#   cert_dir($t->testdir());                    # where cert => NAME finds NAME.crt, NAME.key
#   my $r = get('/uri', cert => 'client');      # HTTP/1.0 over TLS, the whole response
#   is(status($r), 200); like(body($r), qr/.../);
#
#   my $s = connect_tls(8443, cert => 'client', version => 'TLSv1_3', cache => $cache);
#   my $r = request($s, '/uri');                # HTTP/1.1, the connection stays open
#
#   my ($reused, $r) = s_client(8443, 'TLSv1_3', '/uri', cert => 'client', sess_in => 'a');

use warnings;
use strict;

use base qw/ Exporter /;
our @EXPORT_OK = qw/
	cert_dir get request connect_tls s_client
	status body header field
	config_errors
/;

use Test::More qw//;

use Test::Nginx;

###############################################################################

my $cert_dir;

# Sets the directory holding the client certificates that the `cert` option of get() and
# connect_tls() names (NAME.crt and NAME.key, as PKI.pm writes them): the test directory.
sub cert_dir {
	($cert_dir) = @_;
}

# The SSL_cert_file and SSL_key_file options for the client certificate NAME.
sub cert_files {
	my ($name) = @_;
	die "cert => '$name' without cert_dir()\n" unless defined $cert_dir;
	return (SSL_cert_file => "$cert_dir/$name.crt", SSL_key_file => "$cert_dir/$name.key");
}

###############################################################################

# One HTTP/1.0 GET; returns the whole response, read until the server closes the connection
# (undef or '' when there is none). Options:
#   port => 8443        the port of the configuration (default: Test::Nginx's, 8080 or
#                       8443 with TLS)
#   SSL => 1            TLS (implied by cert)
#   cert => NAME        TLS with the client certificate NAME (see cert_dir)
#   host => NAME        the Host header (default localhost)
#   headers => [ 'X-Name: value', ... ]   more request headers
#   socket => $s        on this open connection instead of a new one, which stays open
#                       afterwards (its TLS session can still be inspected)
# Any other option goes to Test::Nginx's http() (SSL_hostname and other IO::Socket::SSL ones).
sub get {
	my ($uri, %opts) = @_;
	my $host = delete $opts{host} // 'localhost';
	my $headers = join '', map { "$_\r\n" } @{ delete $opts{headers} // [] };
	my $request = "GET $uri HTTP/1.0\r\nHost: $host\r\n$headers\r\n";

	return read_until_close($opts{socket}, $request) if exists $opts{socket};

	my $port = delete $opts{port};
	my $cert = delete $opts{cert};
	return http($request,
		defined $port ? (PeerAddr => '127.0.0.1:' . port($port)) : (),
		$cert ? (SSL => 1, cert_files($cert)) : (),
		%opts);
}

sub read_until_close {
	my ($s, $request) = @_;
	return '' unless $s;
	my $r = '';
	eval {
		local $SIG{ALRM} = sub { die "timeout\n" };
		local $SIG{PIPE} = 'IGNORE';
		alarm(5);
		print $s $request;
		while ($s->sysread($r, 4096, length $r)) {}
		alarm(0);
	};
	alarm(0);
	return $r;
}

# Sends one HTTP/1.1 request (GET, or the method of -method => 'POST', sent with an empty
# body) on the open connection $s and reads exactly its response: the head, then as many body
# bytes as Content-Length says. The connection stays open for the next request. Extra request
# headers as name => value pairs (Host => NAME replaces localhost).
# '' without a connection; what arrived when the server closes or after 5 seconds.
sub request {
	my ($s, $uri, %headers) = @_;
	return '' unless $s;
	my $method = delete $headers{-method} // 'GET';
	$headers{'Content-Length'} //= 0 if $method eq 'POST';
	my $host = delete $headers{Host} // 'localhost';
	my $extra = join '', map { "$_: $headers{$_}\r\n" } sort keys %headers;
	my $r = '';
	eval {
		local $SIG{ALRM} = sub { die "timeout\n" };
		local $SIG{PIPE} = 'IGNORE';
		alarm(5);
		print $s "$method $uri HTTP/1.1\r\nHost: $host\r\n$extra\r\n";
		while ($r !~ /\x0d\x0a\x0d\x0a/) {
			$s->sysread($r, 4096, length $r) or last;
		}
		my ($len) = $r =~ /^Content-Length: (\d+)/mi;
		my $head = index($r, "\x0d\x0a\x0d\x0a") + 4;
		while (defined $len && length($r) < $head + $len) {
			$s->sysread($r, 4096, length $r) or last;
		}
		alarm(0);
	};
	alarm(0);
	return $r;
}

# One HTTP/1.0 request by the openssl command (s_client), which offers a saved session
# whatever its state, where IO::Socket::SSL would not offer one it considers expired:
# (whether the session was resumed: 'r', '.' for a full handshake, 'none'; the response).
# $v is 'TLSv1_2' or 'TLSv1_3'. Options (files in the cert_dir directory):
#   cert => NAME         the client certificate NAME
#   sess_in => FILE      offer the session saved in FILE
#   sess_out => FILE     save the session in FILE
#   method => 'POST'     the method (default GET), POST with an empty body
#   headers => 'Name: value'   one more request header line
sub s_client {
	my ($port, $v, $uri, %o) = @_;
	die "s_client() without cert_dir()\n" unless defined $cert_dir;
	my $d = $cert_dir;
	my @args = ('-connect', '127.0.0.1:' . port($port), '-ign_eof',
		$v eq 'TLSv1_2' ? '-tls1_2' : '-tls1_3');
	push @args, '-cert', "$d/$o{cert}.crt", '-key', "$d/$o{cert}.key" if $o{cert};
	push @args, '-sess_in', "$d/$o{sess_in}" if $o{sess_in};
	push @args, '-sess_out', "$d/$o{sess_out}" if $o{sess_out};
	my $method = $o{method} // 'GET';
	my $extra = $method eq 'POST' ? "Content-Length: 0\r\n" : '';
	$extra .= "$o{headers}\r\n" if $o{headers};
	open my $fh, '>', "$d/s_client.request" or die "s_client.request: $!\n";
	print $fh "$method $uri HTTP/1.0\r\nHost: localhost\r\n$extra\r\n";
	close $fh;
	my $out = `openssl s_client @args < $d/s_client.request 2>&1`;
	my $reused = $out =~ /^Reused,/m ? 'r' : $out =~ /^New,/m ? '.' : 'none';
	my ($response) = $out =~ m!(HTTP/1\.1 .*)!s;
	return ($reused, $response // '');
}

# A TLS connection to 127.0.0.1:port($port), or undef (with the reason as a diagnostic).
# Options:
#   cert => NAME         the client certificate NAME (see cert_dir); none without it
#   sni => NAME          the server name sent (none without it)
#   version => 'TLSv1_3' the protocol version (SSL_version)
#   cache => $cache      an IO::Socket::SSL::Session_Cache: the session is resumed from it
#                        and kept in it
#   session_key => KEY   the key of the session in the cache (default: port and sni)
# Any other option goes to IO::Socket::SSL->new.
sub connect_tls {
	my ($port, %opts) = @_;
	require IO::Socket::SSL;
	my $cert = delete $opts{cert};
	my $sni = delete $opts{sni};
	my $version = delete $opts{version};
	my $cache = delete $opts{cache};
	my $key = delete $opts{session_key} // join ' ', $port, $sni // ();
	my $s = IO::Socket::SSL->new(
		PeerAddr => '127.0.0.1:' . port($port),
		SSL_verify_mode => IO::Socket::SSL::SSL_VERIFY_NONE(),
		defined $sni ? (SSL_hostname => $sni) : (),
		defined $version ? (SSL_version => $version) : (),
		$cache ? (SSL_session_cache => $cache, SSL_session_key => $key) : (),
		$cert ? cert_files($cert) : (),
		Timeout => 5,
		%opts,
	);
	Test::More::diag('connect: ' . IO::Socket::SSL::errstr()) unless $s;
	return $s;
}

###############################################################################

# The status code of a response, 'none' without one.
sub status { ($_[0] // '') =~ m!^HTTP/1\.\d (\d{3})! ? $1 : 'none' }

# The body of a response ('' without one).
sub body { my ($r) = @_; $r //= ''; $r =~ s/.*?\x0d\x0a\x0d\x0a//s; $r }

# The value of the first response header NAME (case-insensitive), undef without one.
sub header { my ($r, $name) = @_; ($r // '') =~ /^\Q$name\E: ([^\x0d]*)/mi ? $1 : undef }

# The value of NAME in a body of "name=value" words, 'none' without one.
sub field { my ($r, $name) = @_; body($r) =~ /\b\Q$name\E=(\S*)/ ? $1 : 'none' }

###############################################################################

# Writes $conf (with Test::Nginx's %%...%% placeholders) as NAME.conf in the test directory
# and runs `nginx -t` on it: '' when it passes, else nginx's output. (The test object is
# passed in: a named sub of the script closing over it would keep it alive past the end of
# the test, when its final checks can no longer report.)
sub config_errors {
	my ($t, $name, $conf) = @_;
	my $d = $t->testdir();
	$t->write_file_expand("$name.conf", $conf);
	my $out = `$Test::Nginx::NGINX -t -p $d/ -c $name.conf -e error.log 2>&1`;
	return $? == 0 ? '' : $out;
}

###############################################################################

1;
