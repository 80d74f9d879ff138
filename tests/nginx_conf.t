#!/usr/bin/perl

# Every example configuration in nginx-conf/ must pass `nginx -t`.
#
# The convention the examples follow (new ones are picked up by the glob below):
#   - each file is a complete nginx.conf, run as `nginx -p PREFIX -c FILE.conf` with the file
#     copied into PREFIX, so relative paths resolve against PREFIX;
#   - every file it reads lives under `certs/` and is written `certs/NAME`; its logs and pid
#     go to `logs/`;
#   - the module is loaded from the command line (`-g 'load_module ...;'`), not by the file.
# For the check, each file gets its own PREFIX with placeholders for every `certs/NAME` the
# file mentions: `*.crt`, `*.pem`, `*.cer`: a self-signed CA certificate whose key is
# `certs/<same base>.key`; `*.key`: an EC P-256 private key; `*.ticket`: 80 random bytes (an
# `ssl_session_ticket_key`); anything else: 32 random bytes.

###############################################################################

use warnings;
use strict;

use Test::More;

use File::Basename qw/ basename /;
use File::Path qw/ make_path /;

BEGIN { use FindBin; chdir($FindBin::Bin); }

use lib "$FindBin::Bin/support";
use Test::Nginx;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http http_ssl proxy/)->has_daemon('openssl');

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    auth_cert off;
}

EOF

my @confs = sort glob("$FindBin::Bin/../nginx-conf/*.conf");

$t->try_run('no auth_cert')->plan(scalar @confs + 1);

###############################################################################

ok(scalar(grep { basename($_) eq 'smartcard.conf' } @confs), 'smartcard.conf is among them');

my $d = $t->testdir();
my $globals = $ENV{TEST_NGINX_GLOBALS} // '';

for my $conf (@confs) {
	my $name = basename($conf, '.conf');
	my $prefix = "$d/$name";
	make_path("$prefix/certs", "$prefix/logs");

	open my $in, '<', $conf or die "$conf: $!";
	my $text = do { local $/; <$in> };
	close $in;
	open my $out, '>', "$prefix/$name.conf" or die "$prefix/$name.conf: $!";
	print $out $text;
	close $out;

	my %files = map { $_ => 1 } $text =~ m!\bcerts/([A-Za-z0-9._-]+)!g;
	placeholder($prefix, $_) for sort keys %files;

	SKIP: {
		my ($needs) = $text =~ /^# Needs nginx ([0-9.]*[0-9]) or newer/m;
		skip("nginx-conf/$name.conf needs nginx $needs", 1)
			if $needs && !$t->has_version($needs);

		my $output = `$Test::Nginx::NGINX -t -p $prefix/ -c $name.conf -g '$globals' 2>&1`;
		is($? == 0 ? '' : $output, '', "nginx -t nginx-conf/$name.conf");
	}
}

###############################################################################

# Creates the placeholder for certs/$file under $prefix (see the convention at the top).
sub placeholder {
	my ($prefix, $file) = @_;
	my $path = "$prefix/certs/$file";
	return if -e $path;
	my ($base, $ext) = $file =~ /^(.*?)(?:\.([^.]+))?$/;
	$ext //= '';
	my $key = "$prefix/certs/$base.key";
	if ($ext =~ /^(crt|pem|cer|key)$/ && !-e $key) {
		openssl("genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $key");
	}
	if ($ext =~ /^(crt|pem|cer)$/) {
		openssl("req -x509 -new -key $key -subj '/CN=placeholder $base' -days 30"
			. " -addext 'basicConstraints = critical, CA:true' -out $path");
	} elsif ($ext ne 'key') {
		open my $fh, '>', $path or die "$path: $!";
		print $fh pack('C*', map { int rand 256 } 1 .. ($ext eq 'ticket' ? 80 : 32));
		close $fh;
	}
}

sub openssl {
	my ($args) = @_;
	system("openssl $args >/dev/null 2>&1") == 0 or die "openssl $args failed\n";
}

###############################################################################
