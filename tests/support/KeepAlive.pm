package KeepAlive;

# Requests on a connection the test keeps open (keep-alive), for the .t files; independent of
# Test::Nginx, so that they run the same with the official library.
#
#   use KeepAlive qw/request/;
#   my $r = request($s, '/uri');                          # one request, its whole response
#   my $r = request($s, '/uri', Connection => 'close');   # with extra request headers

use warnings;
use strict;

use Exporter qw/import/;
our @EXPORT_OK = qw/request/;

# Sends one HTTP/1.1 GET on the open connection $s and reads exactly its response: the head,
# then as many body bytes as Content-Length says. '' without a connection; what arrived
# when the server closes or after 5 seconds.
sub request {
	my ($s, $uri, %headers) = @_;
	return '' unless $s;
	my $extra = join '', map { "$_: $headers{$_}\r\n" } sort keys %headers;
	my $r = '';
	eval {
		local $SIG{ALRM} = sub { die "timeout\n" };
		local $SIG{PIPE} = 'IGNORE';
		alarm(5);
		print $s "GET $uri HTTP/1.1\r\nHost: localhost\r\n$extra\r\n";
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

1;
