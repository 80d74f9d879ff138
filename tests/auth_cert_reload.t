#!/usr/bin/perl

# Tests for reloads that remove the module and load it again: nginx unloads the module's
# shared object when a configuration without its load_module line replaces the one with it,
# so nothing OpenSSL keeps may still point into it. Every later TLS connection, and every
# later reload, must find nginx serving, with no worker or master killed by a signal.

###############################################################################

use warnings;
use strict;

use Test::More;

use POSIX qw/ WNOHANG /;

BEGIN { use FindBin; chdir($FindBin::Bin); }

use lib "$FindBin::Bin/support";
use Test::Nginx;
use PKI;
use Test::Nginx::AuthCert qw/ cert_dir get connect_tls status header /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

eval { require IO::Socket::SSL; };
plan(skip_all => 'IO::Socket::SSL not installed') if $@;

my $t = Test::Nginx->new()->has(qw/http http_ssl/)->has_daemon('openssl');

plan(skip_all => 'the module is not loaded with load_module')
	unless $t->test_globals() =~ /\bload_module\s+\S*auth_cert/;

# The configuration with the module (its load_module line among the globals), serving TLS
# with certificates, session resumption by shared cache and tickets, and a handshake limit;
# or the same server without the module, as after the package is removed.
sub conf {
	my ($t, $name, %opts) = @_;
	my $globals = $t->test_globals();
	$globals =~ s/\bload_module\s+\S*auth_cert\S*\s*;//g unless $opts{module};
	my $auth = $opts{module} ? <<"EOF" : '';
    auth_cert on;
    auth_cert_max_age $opts{max_age};
EOF
	my $identity = $opts{module} ? 'add_header X-Identity $auth_cert_identity always;' : '';
	return <<"EOF";

$globals

daemon off;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    ssl_certificate server.crt;
    ssl_certificate_key server.key;
    ssl_client_certificate ca.crt;
    ssl_verify_client optional;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:1m;

$auth
    server {
        listen       127.0.0.1:8443 ssl;
        server_name  localhost;

        add_header X-Config $name always;
        $identity

        location / {
        }
    }

    server {
        listen       127.0.0.1:8444 ssl;
        server_name  other;

        add_header X-Config $name always;
        $identity

        location / {
        }
    }
}

EOF
}

my $d = $t->testdir();
my $pki = PKI->new($d);
cert_dir($d);

$pki->ca('ca', subject => '/CN=Test Root CA');
$pki->cert('server', issuer => 'ca', subject => '/CN=localhost');
$pki->cert('client', issuer => 'ca', subject => '/UID=jdoe/CN=John Doe');
$t->write_file('index.html', "hello\n");

$t->write_file_expand('nginx.conf', conf($t, 'A', module => 1, max_age => '1h'));
$t->try_run('no auth_cert')->plan(22);

###############################################################################

# Writes the configuration, reloads, and waits until the old worker has exited and a new
# connection is answered by the new configuration. (The test object is passed in: a named
# sub closing over it would keep it alive past the end of the test, when its final checks
# can no longer report.)
sub reload_to {
	my ($t, $name, %opts) = @_;
	my $exited = () = $t->read_file('error.log') =~ /exited with code/g;
	$t->write_file_expand('nginx.conf', conf($t, $name, %opts));
	$t->reload();
	for (1 .. 50) {
		my $now = () = $t->read_file('error.log') =~ /exited with code/g;
		my $r = $now > $exited && get('/', cert => 'client');
		return 1 if $r && (header($r, 'X-Config') // '') eq $name;
		select undef, undef, undef, 0.2;
	}
	return 0;
}

# How many of $n new TLS connections, each with a request, get 200 from configuration
# $name (with the identity when the module is loaded), over both versions and ports.
sub served {
	my ($name, $n, %opts) = @_;
	my $ok = 0;
	for my $i (1 .. $n) {
		my $v = $i % 2 ? 'TLSv1_3' : 'TLSv1_2';
		my $port = $i % 3 ? 8443 : 8444;
		my $r = get('/', port => $port, cert => 'client', SSL_version => $v);
		$ok++ if status($r) eq '200'
			&& (header($r, 'X-Config') // '') eq $name
			&& (header($r, 'X-Identity') // '') eq ($opts{module} ? 'jdoe' : '');
	}
	return $ok;
}

# A request on a new connection, then one on a connection resuming its session: how many
# got 200, the second only when it was resumed. (The connections stay open until both are
# done: a client drops the session of a connection it abandons without a TLS shutdown.)
sub resumed {
	my $cache = IO::Socket::SSL::Session_Cache->new(4);
	my ($ok, @keep) = (0);
	for my $i (1 .. 2) {
		my $s = connect_tls(8443, cert => 'client', cache => $cache) or next;
		push @keep, $s;
		$ok++ if status(get('/', socket => $s)) eq '200'
			&& ($i == 1 || $s->get_session_reused());
	}
	return $ok;
}

sub crashed { $_[0]->read_file('error.log') =~ /exited on signal/ }

# The master is a child of this script (daemon off): a dead one is a zombie to reap.
sub master_alive {
	my ($pid) = $_[0]->read_file('nginx.pid') =~ /(\d+)/;
	return kill(0, $pid) && waitpid($pid, WNOHANG) == 0;
}

is(served('A', 6, module => 1), 6, 'with the module: served');

# The module is removed.

ok(reload_to($t, 'B'), 'reloaded without the module');
is(served('B', 6), 6, 'without the module: served');
is(resumed(), 2, 'without the module: resumed connections served');
select undef, undef, undef, 0.5;
ok(!crashed($t), 'without the module: no worker crashed');

# Another configuration without it: the master frees the TLS contexts of the previous one,
# made after the module was unloaded.

ok(reload_to($t, 'D'), 'reloaded without the module, other configuration');
ok(master_alive($t), 'master alive after a reload without the module');
is(served('D', 6), 6, 'other configuration without the module: served');

# Added again.

ok(reload_to($t, 'A', module => 1, max_age => '1h'), 'reloaded with the module again');
ok(master_alive($t), 'master alive after adding the module');
is(served('A', 6, module => 1), 6, 'with the module again: served');
is(resumed(), 2, 'with the module again: resumed connections served');

# Its directives changed, with the module staying loaded.

ok(reload_to($t, 'C', module => 1, max_age => '10m'), 'reloaded with other directives');
is(served('C', 6, module => 1), 6, 'other directives: served');

# Removed once more, and added once more.

ok(reload_to($t, 'B'), 'reloaded without the module again');
is(served('B', 6), 6, 'without the module again: served');
ok(reload_to($t, 'A', module => 1, max_age => '1h'), 'reloaded with the module a third time');
is(served('A', 6, module => 1), 6, 'with the module a third time: served');
ok(reload_to($t, 'B'), 'reloaded without the module a third time');
is(served('B', 6), 6, 'without the module a third time: served');

select undef, undef, undef, 0.5;
ok(master_alive($t), 'master alive at the end');
ok(!crashed($t), 'no process exited on a signal');


###############################################################################
