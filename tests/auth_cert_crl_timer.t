#!/usr/bin/perl

# Tests for the timer that keeps auth_cert_crl current in each worker: a CRL file replaced
# while no request arrives is re-read by the worker's timer, and a bad or missing file is
# logged by it, so that requests only take the CRLs in force; a CRL past its nextUpdate is
# warned of once per refresh. A graceful shutdown does not wait for the timer, the workers of
# a reloaded configuration run their own, and so does the single process of
# "master_process off"; the cache processes, which serve no request, run none. A wall clock
# set back does not hold the checks up.

###############################################################################

use warnings;
use strict;

use Test::More;

use POSIX qw/ WNOHANG /;
use Time::HiRes qw/ time /;

BEGIN { use FindBin; chdir($FindBin::Bin); }

use lib "$FindBin::Bin/support";
use Test::Nginx;
use PKI;
use Test::Nginx::AuthCert qw/ cert_dir get status body /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http http_ssl proxy cache/)->has_daemon('openssl');

# The configuration: in one master process with a worker, or in a single process; its CRL
# file is $crl.
sub conf {
	my ($crl, %opts) = @_;
	my $master = $opts{single} ? 'master_process off;' : '';
	# libfaketime's settings, which nginx otherwise clears for its worker
	my $env = $opts{faketime}
		? 'env FAKETIME_TIMESTAMP_FILE; env FAKETIME_NO_CACHE; env DONT_FAKE_MONOTONIC;' : '';
	return <<"EOF";

%%TEST_GLOBALS%%

daemon off;
$master
$env

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    ssl_certificate server.crt;
    ssl_certificate_key server.key;
    ssl_client_certificate ca.crt;
    ssl_verify_client optional;

    auth_cert_crl $crl refresh=1s;

    # A cache manager and a cache loader process, which serve no request.
    proxy_cache_path %%TESTDIR%%/cache keys_zone=cache:1m;

    server {
        listen       127.0.0.1:8443 ssl;
        server_name  localhost;

        auth_cert on;

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
$pki->cert('client', issuer => 'ca', subject => '/CN=alice');
# Another CA with the same name: its CRLs do not verify.
$pki->ca('evil', subject => '/CN=Test Root CA');

$pki->crl('crl-empty.pem', issuer => 'ca');
$pki->revoke('client', issuer => 'ca', reason => 'keyCompromise');
$pki->crl('crl-revoked.pem', issuer => 'ca');
$pki->crl('crl-outdated.pem', issuer => 'ca',
	last_update => PKI::when(-7200), next_update => PKI::when(-3600));
$pki->crl('crl-evil.pem', issuer => 'evil');
$t->write_file('index.html', "hello\n");

# Replaces the CRL file $name (crl.pem by default) with the CRL $file at once.
sub install {
	my ($file, $name) = @_;
	$name //= 'crl.pem';
	open my $fh, '>', "$d/crl.new" or die "crl.new: $!";
	print $fh $pki->pem($file);
	close $fh;
	rename("$d/crl.new", "$d/$name") or die "rename: $!";
}

install('crl-empty.pem');
$t->write_file_expand('nginx.conf', conf('crl.pem'));
$t->try_run('no auth_cert_crl')->plan(22);

###############################################################################

# How many lines of error.log match $re.
sub count_log {
	my ($t, $re) = @_;
	return scalar(() = $t->read_file('error.log') =~ /$re/g);
}

# Waits up to 5 seconds, sending no request, for error.log to have more than $before lines
# matching $re; returns whether it does.
sub log_grows {
	my ($t, $re, $before) = @_;
	for (1 .. 50) {
		return 1 if count_log($t, $re) > $before;
		select undef, undef, undef, 0.1;
	}
	return 0;
}

my $reread = qr/\[notice\].*"auth_cert_crl" "[^"]*crl\.pem" re-read: 1 CRLs, 1 revoked/;
my $refused = qr/\[error\].*"auth_cert_crl" "[^"]*crl\.pem" refused: the CRL of "CN=Test Root CA" does not verify against the trusted CAs; the CRLs in force stay/;
my $missing = qr/\[error\].*"auth_cert_crl" "[^"]*crl\.pem": No such file or directory.*; the CRLs in force stay/;
my $emptied = qr/\[notice\].*"auth_cert_crl" "[^"]*crl\.pem" re-read: 1 CRLs, 0 revoked/;
my $outdated = qr/\[warn\].*"auth_cert_crl" "[^"]*crl\.pem": the CRL of "CN=Test Root CA" is past its nextUpdate/;
my $exited = qr/worker process \d+ exited with code 0/;

is(status(get('/', cert => 'client')), 200, 'good certificate passes');

# Replaced while no request arrives: the worker's timer reads it.
install('crl-revoked.pem');
ok(log_grows($t, $reread, 0), 'CRL re-read by the timer, with no request');
select undef, undef, undef, 1.5;
is(count_log($t, $reread), 1, 'CRL re-read by the worker only, not by the cache processes');
my $r = get('/', cert => 'client');
is(status($r), 403, 'the next request is refused');
like(body($r), qr/^auth_cert: revoked: /m, 'revoked');

# A bad file: refused by the timer, the CRL in force stays.
install('crl-evil.pem');
ok(log_grows($t, $refused, 0), 'bad CRL refused by the timer, with no request');
is(status(get('/', cert => 'client')), 403, 'bad CRL: the previous CRL applies');

# A missing file: logged at each refresh, the CRL in force stays; a new one is read.
unlink("$d/crl.pem") or die "unlink: $!";
ok(log_grows($t, $missing, 0), 'missing CRL file logged by the timer');
is(status(get('/', cert => 'client')), 403, 'missing CRL file: the previous CRL applies');
install('crl-empty.pem');
ok(log_grows($t, $emptied, 0), 'new CRL file read by the timer');
is(status(get('/', cert => 'client')), 200, 'new CRL applies');

# An outdated CRL: warned of once per refresh (1s), requests or not.
install('crl-outdated.pem');
ok(log_grows($t, $outdated, 0), 'outdated CRL: warning');
my $warned = count_log($t, $outdated);
select undef, undef, undef, 2.5;
my $more = count_log($t, $outdated) - $warned;
ok($more >= 1 && $more <= 3, "outdated CRL: warned again each refresh ($more in 2.5s)");

# A reload: the old worker exits without waiting for its timer; the new one runs its own.
install('crl-empty.pem');
my $before = count_log($t, $exited);
$t->write_file_expand('nginx.conf', conf('crl.pem'));
$t->reload();
ok(log_grows($t, $exited, $before), 'reload: the old worker exits');
my $rereads = count_log($t, $reread);
install('crl-revoked.pem');
ok(log_grows($t, $reread, $rereads), 'reload: the new worker\'s timer re-reads');
is(status(get('/', cert => 'client')), 403, 'reload: the new CRL applies');

# A graceful shutdown does not wait for the timer.
my $start = time();
$t->stop();
my $took = time() - $start;
ok($took < 5, sprintf('graceful shutdown without waiting (%.1fs)', $took));

# master_process off: the single process runs the timer as a worker does.
install('crl-empty.pem');
$t->write_file_expand('nginx.conf', conf('crl.pem', single => 1));
$t->run();
is(status(get('/', cert => 'client')), 200, 'master_process off: good certificate passes');
$rereads = count_log($t, $reread);
install('crl-revoked.pem');
ok(log_grows($t, $reread, $rereads), 'master_process off: CRL re-read by the timer');
is(status(get('/', cert => 'client')), 403, 'master_process off: the new CRL applies');

# The wall clock goes back by an hour (libfaketime; nginx's timers run on the monotonic clock):
# the files are still checked once per refresh, not again only an hour later.
$t->stop();
my ($faketime) = grep { -f } map { glob("$_/faketime/libfaketime.so.1") }
	qw(/usr/lib/*-linux-gnu /usr/lib /usr/local/lib);

SKIP: {
	skip 'libfaketime not found', 2 unless $faketime;
	install('crl-empty.pem');
	$t->write_file('clock', "+0\n");
	$t->write_file_expand('nginx.conf', conf('crl.pem', faketime => 1));
	{
		local $ENV{LD_PRELOAD} = $faketime;
		local $ENV{FAKETIME_TIMESTAMP_FILE} = "$d/clock";
		local $ENV{FAKETIME_NO_CACHE} = 1;
		local $ENV{DONT_FAKE_MONOTONIC} = 1;
		$t->run();
	}
	is(status(get('/', cert => 'client')), 200, 'clock back: good certificate passes');
	$t->write_file('clock', "-1h\n");
	select undef, undef, undef, 1.5;
	$rereads = count_log($t, $reread);
	install('crl-revoked.pem');
	ok(log_grows($t, $reread, $rereads), 'clock back: CRL re-read within refresh');
}

###############################################################################
