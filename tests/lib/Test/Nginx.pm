package Test::Nginx;

# Minimal implementation of the Test::Nginx API used by this project's tests;
# compatible with the official nginx-tests library.
#
# SPDX-License-Identifier: Apache-2.0
#
# Only the parts of the API the test suite relies on are provided: feature
# detection, configuration templating with port remapping, starting and
# stopping nginx in a private directory, helper daemons, and a tiny HTTP(S)
# client.  Mail, stream and HTTP/2-3 helper packages are not included.
#
# Environment variables:
#   TEST_NGINX_BINARY        nginx executable (default ../nginx/objs/nginx)
#   TEST_NGINX_MODULES       directory holding dynamic modules of the binary
#   TEST_NGINX_GLOBALS       appended to %%TEST_GLOBALS%% (main context)
#   TEST_NGINX_GLOBALS_HTTP  appended to %%TEST_GLOBALS_HTTP%% (http context)
#   TEST_NGINX_GLOBALS_STREAM  appended to %%TEST_GLOBALS_STREAM%%
#   TEST_NGINX_VERBOSE       log client traffic as TAP comments
#   TEST_NGINX_CATLOG        print error.log when the test finishes
#   TEST_NGINX_LEAVE         keep the temporary test directory

use strict;
use warnings;

use Exporter qw/ import /;

our @EXPORT = qw/ log_in log_out http http_get http_head port /;
our @EXPORT_OK = qw/
	http_start http_end http_content http_gzip_request http_gzip_like
/;
our %EXPORT_TAGS = (gzip => [ qw/ http_gzip_request http_gzip_like / ]);

use File::Path qw/ rmtree /;
use File::Spec;
use File::Temp qw/ tempdir /;
use IO::Socket::INET;
use POSIX qw/ WNOHANG /;
use Test::More qw//;

# Public package variables, also used directly by some test scripts.
our $NGINX = $ENV{TEST_NGINX_BINARY} // '../nginx/objs/nginx';
our %ports;

# Consulted by Test::Builder for the checks run from DESTROY.
our $TODO;

# Seconds a single client exchange may take.
use constant IO_TIMEOUT => 8;

###############################################################################
# Small helpers.

# Sleep for a fractional number of seconds.
sub _nap { select(undef, undef, undef, $_[0]); }

# Poll $check every 0.1s, at most $tries times; return its first true value.
sub _poll {
	my ($tries, $check) = @_;
	for (1 .. $tries) {
		my $r = $check->();
		return $r if $r;
		_nap(0.1);
	}
	return undef;
}

# True if the numeric parts of @$have are at least those of @$need.
sub _version_ge {
	my ($have, $need) = @_;
	my @have = @$have;
	for my $want (@$need) {
		my $got = shift(@have) || 0;
		return 0 if $got < $want;
		return 1 if $got > $want;
	}
	return 1;
}

###############################################################################
# Object life cycle.

sub new {
	my ($class) = @_;

	my $dir = tempdir('nginx-test-XXXXXXXXXX', TMPDIR => 1)
		or die "Can't create temp directory: $!\n";

	my $self = bless {
		_testdir => $dir,	# key name relied upon by some tests
		_pid => $$,		# only the creating process cleans up
		_alerts => 1,		# 0 after todo_alerts()
		_daemons => [],
	}, __PACKAGE__;

	Test::More::BAIL_OUT("no $NGINX binary found") unless -x $NGINX;

	return $self;
}

sub DESTROY {
	my ($self) = @_;
	local $?;

	# forked children (daemons) must not tear down the test
	return if $self->{_pid} != $$;

	$self->stop();
	$self->stop_daemons();

	# The two extra tests announced by plan(): error.log must not contain
	# any "[alert]" line, nor any report from a sanitizer.
	if (Test::More->builder->expected_tests) {
		local $TODO = 'alerts' unless $self->{_alerts};
		my @alerts = $self->read_file('error.log') =~ /.+\[alert\].+/gm;
		Test::More::is(join("\n", @alerts), '', 'no alerts');
	}

	if (Test::More->builder->expected_tests) {
		local $TODO;
		my @reports = $self->read_file('error.log') =~ /.+Sanitizer.+/gm;
		Test::More::is(join("\n", @reports), '', 'no sanitizer errors');
	}

	system('cat', "$self->{_testdir}/error.log") if $ENV{TEST_NGINX_CATLOG};

	eval { rmtree($self->{_testdir}); } unless $ENV{TEST_NGINX_LEAVE};
}

# Announce $n tests plus the two log checks done on destruction.
sub plan {
	my ($self, $n) = @_;
	Test::More::plan(tests => $n + 2);
	return $self;
}

# Report alerts found in error.log as TODO failures instead of failures.
sub todo_alerts {
	my ($self) = @_;
	$self->{_alerts} = 0;
	return $self;
}

sub testdir { return $_[0]->{_testdir}; }

###############################################################################
# Feature detection.

# Output of "nginx -V", fetched once.
sub _build_info {
	my ($self) = @_;
	$self->{_configure_args} //= `$NGINX -V 2>&1`;
	return $self->{_configure_args};
}

# Names understood by has_module() and the pattern searched for in -V output.
my %MODULE_RE;
{
	# built unless "--without-<name>" is given
	my @http = qw/
		charset gzip ssi mirror userid access auth_basic autoindex geo map
		referer rewrite proxy fastcgi uwsgi scgi grpc memcached limit_conn
		limit_req empty_gif browser split_clients tunnel upstream_hash
		upstream_ip_hash upstream_least_conn upstream_least_time
		upstream_random upstream_keepalive upstream_zone
	/;
	my @stream = qw/
		access geo limit_conn map pass return set split_clients
		upstream_hash upstream_least_conn upstream_least_time
		upstream_random upstream_zone
	/;
	my %absent = (
		http => '--without-http(?!\S)',
		cache => '--without-http-cache',
		pcre => '--without-pcre',
		upstream_sticky => '--without-http_upstream_sticky',
		(map { $_ => "--without-mail_${_}_module" } qw/ pop3 imap smtp /),
		(map { $_ => "--without-http_${_}_module" } @http),
		(map {; "stream_$_" => "--without-stream_${_}_module" } @stream),
	);
	$MODULE_RE{$_} = "(?s)^(?!.*$absent{$_})" for keys %absent;

	# built only if "--with-<name>" is given
	%MODULE_RE = (%MODULE_RE,
		sni => 'TLS SNI support enabled',
		mail => '--with-mail((?!\S)|=dynamic)',
		stream => '--with-stream((?!\S)|=dynamic)',
		stream_ssl => '--with-stream_ssl_module',
		(map { $_ => "--with-http_${_}_module" }
			qw/ flv perl auth_request realip sub /),
	);
}

# Dynamic modules that may instead be loaded through TEST_NGINX_GLOBALS.
my %LOADABLE = (
	http_geoip => 'ngx_http_geoip_module',
	image_filter => 'ngx_http_image_filter_module',
	perl => 'ngx_http_perl_module',
	xslt => 'ngx_http_xslt_filter_module',
	mail => 'ngx_mail_module',
	stream => 'ngx_stream_module',
	stream_geoip => 'ngx_stream_geoip_module',
);

# A known name is looked up in the table above; any other name is itself
# used as a regular expression against the "nginx -V" output (this is how
# names like "http_ssl" or "http_v2" are recognised).
sub has_module {
	my ($self, $name) = @_;

	my $re = $MODULE_RE{$name} // $name;
	return 1 if $self->_build_info() =~ $re;

	my $so = $LOADABLE{$name};
	my $globals = $ENV{TEST_NGINX_GLOBALS};
	return 1 if defined $so && defined $globals
		&& $globals =~ /load_module\s+[^;]*\Q$so\E[-\w]*\.so\s*;/;

	return 0;
}

sub has_feature {
	my ($self, $feature) = @_;

	return 1 if $feature =~ /^(symlink|unix|udp)$/;

	if ($feature =~ /^socket_ssl/) {
		return 0 unless eval {
			require IO::Socket::SSL;
			IO::Socket::SSL::SSL_VERIFY_NONE();
			1;
		};
		return 1 if $feature eq 'socket_ssl';
		return IO::Socket::SSL->can_client_sni() ? 1 : 0
			if $feature eq 'socket_ssl_sni';
		return IO::Socket::SSL->can_alpn() ? 1 : 0
			if $feature eq 'socket_ssl_alpn';
		return IO::Socket::SSL->can('get_sslversion')
			if $feature eq 'socket_ssl_sslversion';
		return IO::Socket::SSL->can('get_session_reused')
			if $feature eq 'socket_ssl_reused';
		return 0;
	}

	# "openssl:1.1.1", "libressl:3.4.0", optionally with a letter suffix
	if ($feature =~ /^(openssl|libressl):([0-9.]+)([a-z]*)/) {
		my ($lib, $need, $suffix) = ($1, $2, $3);
		$self->_build_info() =~ /with $lib ([0-9.]+)([a-z]*)/i
			or return 0;
		my @have = (split(/\./, $1), unpack('C*', $2));
		return _version_ge(\@have,
			[ split(/\./, $need), unpack('C*', $suffix) ]);
	}

	if ($feature eq 'cryptx') {
		return eval {
			require Crypt::Misc;
			$Crypt::Misc::VERSION >= 0.067;
		} ? 1 : 0;
	}

	return 0;
}

# Skip the whole test unless every feature is either a module or a feature.
sub has {
	my ($self, @features) = @_;
	for my $f (@features) {
		next if $self->has_module($f) || $self->has_feature($f);
		Test::More::plan(skip_all => "no $f available");
	}
	return $self;
}

sub has_version {
	my ($self, $need) = @_;
	my ($v) = $self->_build_info() =~ m!nginx version: nginx/([0-9.]+)!;
	return _version_ge([ split(/\./, $v // '') ], [ split(/\./, $need) ]);
}

# Skip the whole test unless an executable named $name is found in PATH.
sub has_daemon {
	my ($self, $name) = @_;

	my @dirs = $name =~ m!/! ? ('') : File::Spec->path();
	my $found = grep {
		my $p = length $_ ? "$_/$name" : $name;
		-f $p && -x _;
	} @dirs;

	Test::More::plan(skip_all => "$name not found") unless $found;
	return $self;
}

###############################################################################
# Files and configuration.

sub read_file {
	my ($self, $name) = @_;
	open(my $fh, '<', "$self->{_testdir}/$name")
		or die "Can't open $name: $!";
	local $/;
	my $content = <$fh>;
	close $fh;
	return $content;
}

sub write_file {
	my ($self, $name, $content) = @_;
	open(my $fh, '>', "$self->{_testdir}/$name")
		or die "Can't create $name: $!";
	binmode $fh;
	print $fh $content;
	close $fh;
	return $self;
}

# Like write_file(), after substituting the %%...%% placeholders and moving
# every "127.0.0.1:8NNN" address to the port reserved for it by port().
sub write_file_expand {
	my ($self, $name, $content) = @_;

	# In this order, so that globals from the environment may themselves
	# use %%TESTDIR%% and 127.0.0.1:8NNN addresses.
	my @vars = (
		TEST_GLOBALS => sub { $self->test_globals() },
		TEST_GLOBALS_HTTP => sub { $self->test_globals_http() },
		TEST_GLOBALS_STREAM => sub { $self->test_globals_stream() },
		TESTDIR => sub { $self->{_testdir} },
	);
	while (my ($var, $value) = splice(@vars, 0, 2)) {
		$content =~ s/%%$var%%/$value->()/ge;
	}

	$content =~ s/127\.0\.0\.1:(8\d\d\d)/'127.0.0.1:' . port($1)/ge;
	$content =~ s/%%PORT_(\d+)%%/port($1)/ge;
	$content =~ s/%%PORT_(\d+)_UDP%%/port($1, udp => 1)/ge;

	return $self->write_file($name, $content);
}

# Main-context directives for %%TEST_GLOBALS%%.  Once computed, nginx is
# started without "-g" since the configuration sets pid and error_log.
sub test_globals {
	my ($self) = @_;
	return $self->{_test_globals} if defined $self->{_test_globals};

	my $dir = $self->{_testdir};
	my $s = "pid $dir/nginx.pid;\nerror_log $dir/error.log debug;\n";
	$s .= $ENV{TEST_NGINX_GLOBALS} if $ENV{TEST_NGINX_GLOBALS};
	$s .= $self->_load_dynamic_modules();
	$s .= $self->_perl5lib() unless $s =~ /env PERL5LIB/;

	return $self->{_test_globals} = $s;
}

# Directory of the nginx binary, as an absolute path.
sub _binary_dir {
	my ($volume, $dir) = File::Spec->splitpath($NGINX);
	return File::Spec->rel2abs(File::Spec->catpath($volume, $dir, ''));
}

# load_module lines for modules the binary was configured to build as
# dynamic ones (looked for in TEST_NGINX_MODULES, else next to the binary).
sub _load_dynamic_modules {
	my ($self) = @_;

	my $dir = defined $ENV{TEST_NGINX_MODULES}
		? File::Spec->rel2abs($ENV{TEST_NGINX_MODULES}) : _binary_dir();

	my @dynamic = (
		[ 'http_geoip\S+=dynamic', 'ngx_http_geoip_module' ],
		[ 'image_filter\S+=dynamic', 'ngx_http_image_filter_module' ],
		[ 'perl\S+=dynamic', 'ngx_http_perl_module' ],
		[ 'xslt\S+=dynamic', 'ngx_http_xslt_filter_module' ],
		[ 'mail=dynamic', 'ngx_mail_module' ],
		[ 'stream=dynamic', 'ngx_stream_module' ],
		[ 'stream_geoip\S+=dynamic', 'ngx_stream_geoip_module' ],
	);

	return join '', map { "load_module $dir/$_->[1].so;\n" }
		grep { $self->has_module($_->[0]) } @dynamic;
}

# Lets the embedded perl module find its objects in a source build.
sub _perl5lib {
	my ($self) = @_;
	return '' unless $self->has_module('perl');
	my $objs = _binary_dir() . '/src/http/modules/perl';
	return "env PERL5LIB=$objs:$objs/blib/arch;\n";
}

sub test_globals_http {
	my ($self) = @_;
	return $self->{_test_globals_http}
		if defined $self->{_test_globals_http};

	my $dir = $self->{_testdir};
	my $s = "root $dir;\naccess_log $dir/access.log;\n"
		. "client_body_temp_path $dir/client_body_temp;\n";
	for my $m (qw/ fastcgi proxy uwsgi scgi /) {
		$s .= "${m}_temp_path $dir/${m}_temp;\n" if $self->has_module($m);
	}
	$s .= $ENV{TEST_NGINX_GLOBALS_HTTP} if $ENV{TEST_NGINX_GLOBALS_HTTP};

	return $self->{_test_globals_http} = $s;
}

sub test_globals_stream {
	my ($self) = @_;
	return $self->{_test_globals_stream} //=
		$ENV{TEST_NGINX_GLOBALS_STREAM} || '';
}

# Map a nominal port number to a free local port, the same one for the whole
# test.  The nominal number itself is tried first, then random ports within
# the same block of 500.  The port is kept reserved by holding a socket of the
# other protocol bound to it (UDP for TCP ports, TCP for "udp => 1"); that
# socket is returned when called with "socket => 1".
sub port {
	my ($num, %opts) = @_;

	unless (defined $ports{$num}) {
		my $tcp = sub {
			IO::Socket::INET->new(Proto => 'tcp', Listen => 1,
				Reuse => 1, LocalAddr => "127.0.0.1:$_[0]");
		};
		my $udp = sub {
			IO::Socket::INET->new(Proto => 'udp',
				LocalAddr => "127.0.0.1:$_[0]");
		};
		my ($hold, $probe) = $opts{udp} ? ($tcp, $udp) : ($udp, $tcp);

		my $base = int($num / 500) * 500;
		my $lock;

		for my $try (1 .. 10) {
			my $p = $try == 1 ? $num : $base + int(rand(500));
			$lock = $hold->($p) or next;
			if ($probe->($p)) {
				$ports{$num} = { port => $p, socket => $lock };
				last;
			}
			undef $lock;
		}

		die "Port limit exceeded" unless defined $ports{$num};
	}

	return $opts{socket} ? $ports{$num}{socket} : $ports{$num}{port};
}

###############################################################################
# Running nginx and helper daemons.

# Command line options for nginx.  If the configuration does not include
# %%TEST_GLOBALS%%, pid and error_log are given with "-g".
sub _nginx_args {
	my ($self) = @_;
	my $dir = $self->{_testdir};
	my @args = ('-p', "$dir/", '-c', 'nginx.conf', '-e', 'error.log');
	push @args, '-g', "pid $dir/nginx.pid; error_log $dir/error.log debug;"
		unless $self->{_test_globals};
	return @args;
}

# Start nginx (in the foreground: configurations use "daemon off"), and wait
# until it writes its pid file.  Dies if it does not come up.
sub run {
	my ($self, $conf) = @_;

	if (defined $conf) {
		open(my $fh, '<', $conf) or die "Can't open $conf: $!";
		local $/;
		$self->write_file_expand('nginx.conf', scalar <$fh>);
	}

	my @args = $self->_nginx_args();

	my $pid = fork();
	die "Unable to fork(): $!\n" unless defined $pid;

	if ($pid == 0) {
		exec($NGINX, @args) or die "Unable to exec(): $!\n";
	}

	$self->waitforfile("$self->{_testdir}/nginx.pid", $pid)
		or die "Can't start nginx";

	$self->{_started} = 1;
	return $self;
}

# Like run(), but skip the whole test with $message if nginx cannot start
# (e.g. a directive is unknown to this binary).  nginx's own complaints on
# stderr are silenced meanwhile.
sub try_run {
	my ($self, $message) = @_;

	open(my $saved, '>&', \*STDERR) or die "Can't dup STDERR: $!";
	close STDERR;
	my $ok = eval { $self->run(); 1 };
	open(STDERR, '>&', $saved) or die "Can't restore STDERR: $!";

	return $self if $ok;

	if ($ENV{TEST_NGINX_VERBOSE}
		&& open(my $log, '<', "$self->{_testdir}/error.log"))
	{
		log_core($_) while <$log>;
	}

	Test::More::plan(skip_all => $message);
	return $self;
}

sub _master_pid {
	my ($self) = @_;
	my $pid = $self->read_file('nginx.pid');
	$pid =~ s/\s+//g;
	return $pid;
}

# Ask the master process to re-read its configuration (does not wait).
sub reload {
	my ($self) = @_;
	return $self unless $self->{_started};
	kill 'HUP', $self->_master_pid();
	return $self;
}

# Graceful shutdown: QUIT, then up to 90 seconds for the master to exit,
# then TERM.
sub stop {
	my ($self) = @_;
	return $self unless $self->{_started};

	my $pid = $self->_master_pid();
	kill 'QUIT', $pid;

	_poll(900, sub { waitpid($pid, WNOHANG) != 0 }) or do {
		kill 'TERM', $pid;
		waitpid($pid, 0);
	};

	$self->{_started} = 0;
	return $self;
}

# Output of "nginx -T" with the test's configuration (stdout and stderr).
sub dump_config {
	my ($self) = @_;
	my @cmd = ($NGINX, '-T', $self->_nginx_args());

	my $pid = open(my $fh, '-|') // die "Can't fork: $!";
	if ($pid == 0) {
		open(STDERR, '>&', \*STDOUT);
		exec(@cmd) or POSIX::_exit(127);
	}
	local $/;
	my $out = <$fh>;
	close $fh;
	return $out // '';
}

# Fork a helper: either call a code reference with @args, or exec a program.
# Helpers are terminated when the test object goes away.
sub run_daemon {
	my ($self, $code, @args) = @_;

	my $pid = fork();
	die "Can't fork daemon: $!\n" unless defined $pid;

	if ($pid == 0) {
		if (ref $code eq 'CODE') {
			$code->(@args);
		} else {
			exec($code, @args);
		}
		exit 0;
	}

	push @{$self->{_daemons}}, $pid;
	return $self;
}

sub stop_daemons {
	my ($self) = @_;

	while (my $pid = shift @{$self->{_daemons}}) {
		kill 'TERM', $pid;
		_poll(50, sub { waitpid($pid, WNOHANG) != 0 }) or do {
			kill 'TERM', $pid;
			waitpid($pid, 0);
		};
	}

	return $self;
}

# Wait up to 5 seconds for $file to exist.  Returns 1 once it does, 0 if the
# optional process $pid exited first, undef on timeout.
sub waitforfile {
	my ($self, $file, $pid) = @_;
	my $gone = 0;

	for (1 .. 50) {
		return 1 if -e $file;
		return 0 if $gone;
		$gone = waitpid($pid, WNOHANG) != 0 if $pid;
		_nap(0.1);
	}

	return undef;
}

# Wait up to 5 seconds for "host:port" to accept TCP connections.
sub waitforsocket {
	my ($self, $peer) = @_;
	return _poll(50, sub {
		IO::Socket::INET->new(Proto => 'tcp', PeerAddr => $peer)
			? 1 : 0;
	});
}

###############################################################################
# Logging of client traffic (only with TEST_NGINX_VERBOSE).

# log_core([$prefix,] $message): print $message as TAP comment lines, with
# non-printable bytes shown as \xNN, truncated after 2048 bytes.
sub log_core {
	return unless $ENV{TEST_NGINX_VERBOSE};

	my ($prefix, $msg) = @_;
	($prefix, $msg) = ('', $prefix) unless defined $msg;
	$prefix .= ' ' if length $prefix;

	my $len = length $msg;
	$msg = substr($msg, 0, 2048) . "(...logged only 2048 of $len bytes)"
		if $len > 2048;

	$msg =~ s/^/# $prefix/gm;
	$msg =~ s{([^\x20-\x7e])}
		{ sprintf('\\x%02x', ord $1) . ($1 eq "\n" ? "\n" : '') }ge;
	$msg .= "\n" unless $msg =~ /\n\z/;

	print $msg;
}

sub log_out { log_core('>>', @_); }
sub log_in { log_core('<<', @_); }

###############################################################################
# HTTP client.

# Declared up front so that the prototypes apply to calls made below.
sub http($;%);
sub http_start($;%);
sub http_end($;%);

sub http_get($;%) {
	my ($uri, %extra) = @_;
	return http("GET $uri HTTP/1.0\nHost: localhost\n\n", %extra);
}

sub http_head($;%) {
	my ($uri, %extra) = @_;
	return http("HEAD $uri HTTP/1.0\nHost: localhost\n\n", %extra);
}

# Send $request and return the whole response, or undef on any error or
# timeout.  With "start => 1" the connected socket is returned instead, to
# be finished later with http_end().
sub http($;%) {
	my ($request, %extra) = @_;
	my $s = http_start($request, %extra);
	return $s if !defined $s || $extra{start};
	return http_end($s, %extra);
}

# Connect (unless "socket" gives an existing connection) and send $request.
#
# Options: socket, sleep (seconds to wait after the request), body (sent
# after the pause), aborted (send nothing after the pause), SSL (TLS, and
# default port 8443 instead of 8080).  All options are also handed to
# IO::Socket::INET->new (e.g. PeerAddr to use another port) and, with SSL,
# to IO::Socket::SSL->start_SSL (any SSL_* option; SSL_verify_mode defaults
# to SSL_VERIFY_NONE).  Returns the socket, or undef on failure.
sub http_start($;%) {
	my ($request, %extra) = @_;
	my $s;

	my $ok = eval {
		local $SIG{ALRM} = sub { die "timeout\n" };
		local $SIG{PIPE} = sub { die "sigpipe\n" };
		alarm(IO_TIMEOUT);

		$s = $extra{socket} || IO::Socket::INET->new(
			Proto => 'tcp',
			PeerAddr => '127.0.0.1:' . port($extra{SSL} ? 8443 : 8080),
			%extra,
		) or die "Can't connect to nginx: $!\n";

		if ($extra{SSL}) {
			require IO::Socket::SSL;
			IO::Socket::SSL->start_SSL($s,
				SSL_verify_mode => IO::Socket::SSL::SSL_VERIFY_NONE(),
				%extra,
			) or die IO::Socket::SSL->errstr() . "\n";

			unless (defined $extra{SSL_startHandshake}) {
				log_in('ssl cipher: ' . ($s->get_cipher() // ''));
				log_in('ssl cert: '
					. ($s->peer_certificate('issuer') // ''));
			}
		}

		log_out($request);
		$s->print($request);

		_nap($extra{sleep}) if $extra{sleep};

		if ($extra{body} && !$extra{aborted}) {
			log_out($extra{body});
			$s->print($extra{body});
		}

		alarm(0);
		1;
	};
	alarm(0);

	unless ($ok) {
		log_in("died: $@");
		return undef;
	}

	return $s;
}

# Read the rest of the response from $s until EOF and close it.
# Returns undef on timeout.
sub http_end($;%) {
	my ($s) = @_;
	my $reply;

	my $ok = eval {
		local $SIG{ALRM} = sub { die "timeout\n" };
		local $SIG{PIPE} = sub { die "sigpipe\n" };
		alarm(IO_TIMEOUT);

		local $/;
		$reply = $s->getline();
		$s->close();

		alarm(0);
		1;
	};
	alarm(0);

	unless ($ok) {
		log_in("died: $@");
		return undef;
	}

	log_in($reply);
	return $reply;
}

# Body of a raw HTTP response, with chunked transfer encoding undone
# ("[no-last-chunk]" is appended if the terminating chunk is missing).
sub http_content {
	my ($text) = @_;
	return undef unless defined $text;

	my ($head, $body) = $text =~ /(.*?)\x0d\x0a?\x0d\x0a?(.*)/s
		or return undef;
	return $body unless $head =~ /Transfer-Encoding: chunked/i;

	my ($content, $size) = ('', -1);
	while ($body =~ /\G\x0d?\x0a?([0-9a-f]+)\x0d\x0a?/gci) {
		$size = hex $1;
		$content .= substr($body, pos($body), $size);
		pos($body) += $size;
	}
	$content .= '[no-last-chunk]' if $size != 0;

	return $content;
}

sub http_gzip_request {
	my ($uri) = @_;
	return http("GET $uri HTTP/1.1\nHost: localhost\nConnection: close\n"
		. "Accept-Encoding: gzip\n\n");
}

# like() on the gunzipped body of $text; skipped without IO::Uncompress.
sub http_gzip_like {
	my ($text, $re, $name) = @_;

	SKIP: {
		eval { require IO::Uncompress::Gunzip; 1 }
			or Test::More::skip('IO::Uncompress::Gunzip not installed', 1);

		my $in = http_content($text);
		my $out;
		IO::Uncompress::Gunzip::gunzip(\$in => \$out);
		Test::More->builder->like($out, $re, $name);
	}
}

1;
