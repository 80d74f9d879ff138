package PKI;

# Test certificates made at run time with the openssl command: CAs, intermediates and leaf
# certificates with any subject, extensions and validity window.
#
# SPDX-License-Identifier: Apache-2.0
#
#   my $pki = PKI->new($t->testdir);
#   $pki->ca('root', subject => '/CN=Test Root CA');
#   $pki->ca('inter', issuer => 'root', subject => '/CN=Test Issuing CA');
#   $pki->cert('client', issuer => 'inter', subject => '/UID=jdoe/CN=John Doe',
#       ext => ['extendedKeyUsage = clientAuth']);
#
# Each name gives NAME.crt and NAME.key in the directory; a CA also gets its own database.
# Dates: `days` (default 30) or `start`/`end` in openssl's YYYYMMDDHHMMSSZ form. Keys: `key`
# 'ec' (P-256, the default), 'rsa' (2048 bits) or 'rsaBITS' ('rsa1024'). The issuer signs
# with SHA-256 unless `md` names another digest ('sha1').

use strict;
use warnings;

use File::Path qw/ make_path /;
use POSIX qw/ strftime /;

sub new {
	my ($class, $dir) = @_;
	return bless { dir => $dir }, $class;
}

sub dir { $_[0]->{dir} }

sub path {
	my ($self, $file) = @_;
	return "$self->{dir}/$file";
}

# An openssl-style UTC time, `$offset` seconds from now.
sub when {
	my ($offset) = @_;
	return strftime('%Y%m%d%H%M%SZ', gmtime(time() + $offset));
}

sub run_openssl {
	my ($self, @args) = @_;
	my $log = "$self->{dir}/openssl.log";
	system("openssl @args >>$log 2>&1") == 0
		or die "openssl @args failed, see $log\n";
}

sub keygen {
	my ($self, $name, $type) = @_;
	$type //= 'ec';
	my $key = $self->path("$name.key");
	if ($type =~ /^rsa(\d*)$/) {
		my $bits = $1 || 2048;
		$self->run_openssl("genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:$bits -out $key");
	} else {
		$self->run_openssl("genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $key");
	}
	return $key;
}

sub write_config {
	my ($self, $name, $ext) = @_;
	my $dir = $self->{dir};
	my $db = "$dir/$name.db";
	make_path($db);
	open my $fh, '>', "$db/index.txt" or die; close $fh;
	open $fh, '>', "$db/serial" or die;
	printf $fh "%016X\n", int(rand(2**31)) * 2**16 + int(rand(2**16)) + 1;
	close $fh;

	open $fh, '>', "$dir/$name.cnf" or die "$dir/$name.cnf: $!";
	print $fh <<"EOF";
[ ca ]
default_ca = ca_section

[ ca_section ]
database = $db/index.txt
new_certs_dir = $db
serial = $db/serial
default_md = sha256
policy = policy_anything
preserve = yes
unique_subject = no
email_in_dn = yes
copy_extensions = none
utf8 = yes
string_mask = utf8only

[ policy_anything ]

[ req ]
distinguished_name = req_dn
prompt = no
utf8 = yes
string_mask = utf8only

[ req_dn ]
CN = unused
EOF
	close $fh;
}

sub extfile {
	my ($self, $name, @lines) = @_;
	my $file = $self->path("$name.ext");
	open my $fh, '>', $file or die "$file: $!";
	print $fh "$_\n" for @lines;
	close $fh;
	return $file;
}

sub dates {
	my (%opts) = @_;
	my $start = $opts{start} // when(-60);
	my $end = $opts{end} // when(($opts{days} // 30) * 86400);
	my $md = defined $opts{md} ? " -md $opts{md}" : '';
	return "-startdate $start -enddate $end$md";
}

# A CA: self-signed without `issuer`, an intermediate with one. `key_usage` replaces the
# value of its keyUsage extension (keyCertSign and cRLSign).
sub ca {
	my ($self, $name, %opts) = @_;
	my $subject = $opts{subject} // "/CN=$name";
	$self->keygen($name, $opts{key});
	$self->write_config($name);
	my @ext = ('basicConstraints = critical, CA:true',
		'keyUsage = ' . ($opts{key_usage} // 'critical, keyCertSign, cRLSign'),
		'subjectKeyIdentifier = hash',
		@{ $opts{ext} // [] });
	my $ext = $self->extfile($name, @ext);
	my $dir = $self->{dir};

	$self->run_openssl("req -new -config $dir/$name.cnf -key $dir/$name.key"
		. " -subj '$subject' -utf8 -out $dir/$name.csr");
	my $issuer = $opts{issuer} // $name;
	my $selfsign = defined $opts{issuer} ? '' : "-selfsign -keyfile $dir/$name.key";
	my $cakey = defined $opts{issuer} ? "-cert $dir/$issuer.crt -keyfile $dir/$issuer.key" : '';
	$self->run_openssl("ca -batch -notext -preserveDN -config $dir/$issuer.cnf $selfsign $cakey"
		. " -in $dir/$name.csr -out $dir/$name.crt -extfile $ext "
		. dates(%opts));
	return $self->path("$name.crt");
}

# A leaf certificate signed by CA `issuer`.
sub cert {
	my ($self, $name, %opts) = @_;
	my $issuer = $opts{issuer} or die "cert $name needs an issuer\n";
	my $subject = $opts{subject} // "/CN=$name";
	my $dir = $self->{dir};
	$self->keygen($name, $opts{key});
	my $ext = $self->extfile($name, 'basicConstraints = CA:false',
		@{ $opts{ext} // [] });
	my $multi = $subject =~ /[^\\]\+/ ? '-multivalue-rdn' : '';
	$self->run_openssl("req -new -config $dir/$issuer.cnf -key $dir/$name.key"
		. " -subj '$subject' $multi -utf8 -out $dir/$name.csr");
	$self->run_openssl("ca -batch -notext -preserveDN -config $dir/$issuer.cnf"
		. " -cert $dir/$issuer.crt -keyfile $dir/$issuer.key"
		. " -in $dir/$name.csr -out $dir/$name.crt -extfile $ext $multi "
		. dates(%opts));
	return $self->path("$name.crt");
}

# Marks certificate NAME revoked in the database of CA `issuer` (see crl). `reason` is a CRL
# reason name (keyCompromise, certificateHold...).
sub revoke {
	my ($self, $name, %opts) = @_;
	my $issuer = $opts{issuer} or die "revoke $name needs an issuer\n";
	my $dir = $self->{dir};
	my $reason = $opts{reason} ? "-crl_reason $opts{reason}" : '';
	$self->run_openssl("ca -batch -config $dir/$issuer.cnf -cert $dir/$issuer.crt"
		. " -keyfile $dir/$issuer.key -revoke $dir/$name.crt $reason");
}

# A PEM CRL FILE of CA `issuer`, listing what its database says is revoked. It is valid from
# now for a day, or from `last_update` to `next_update` when both are given (openssl's
# YYYYMMDDHHMMSSZ, see when()), also in the past.
sub crl {
	my ($self, $file, %opts) = @_;
	my $issuer = $opts{issuer} or die "crl $file needs an issuer\n";
	my $dir = $self->{dir};
	my $dates = defined $opts{next_update}
		? "-crl_lastupdate $opts{last_update} -crl_nextupdate $opts{next_update}"
		: '-crldays 1';
	$self->run_openssl("ca -batch -gencrl -config $dir/$issuer.cnf -cert $dir/$issuer.crt"
		. " -keyfile $dir/$issuer.key -out $dir/$file $dates");
	return $self->path($file);
}

# Concatenates files (a chain, or a certificate with its key).
sub bundle {
	my ($self, $name, @parts) = @_;
	my $out = $self->path($name);
	open my $fh, '>', $out or die "$out: $!";
	for my $part (@parts) {
		open my $in, '<', $self->path($part) or die "$part: $!";
		local $/;
		my $content = <$in>;
		print $fh $content;
		close $in;
	}
	close $fh;
	return $out;
}

# The PEM text of a file of the directory (a certificate, or a chain made by `bundle`).
sub pem {
	my ($self, $file) = @_;
	open my $in, '<', $self->path($file) or die "$file: $!";
	local $/;
	my $pem = <$in>;
	close $in;
	return $pem;
}

# URL-escaped as nginx's $ssl_client_escaped_cert: everything but unreserved characters.
sub escaped {
	my ($self, $file) = @_;
	(my $escaped = $self->pem($file)) =~ s/([^A-Za-z0-9\-._~])/sprintf('%%%02X', ord $1)/ge;
	return $escaped;
}

# Base64 of the DER of each certificate of a file (one, or a chain made by `bundle`), in
# order, on one line each: as HAProxy's %[ssl_c_der,base64], Traefik or RFC 9440 send it.
sub der64 {
	my ($self, $file) = @_;
	my @b64 = $self->pem($file) =~ /-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----/gs;
	s/\s+//g for @b64;
	return wantarray ? @b64 : $b64[0];
}

# notAfter of a certificate, Unix seconds.
sub not_after {
	my ($self, $name) = @_;
	my $file = $self->path("$name.crt");
	my $out = `openssl x509 -in $file -noout -enddate -dateopt iso_8601`;
	$out =~ /notAfter=(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)Z/
		or die "no notAfter in $file\n";
	require Time::Local;
	return Time::Local::timegm($6, $5, $4, $3, $2 - 1, $1);
}

# The serial number of a certificate, as upper-case hex (as $ssl_client_serial).
sub serial {
	my ($self, $name) = @_;
	my $file = $self->path("$name.crt");
	my $out = `openssl x509 -in $file -noout -serial`;
	$out =~ /serial=([0-9A-F]+)/ or die "no serial in $file\n";
	return $1;
}

# The SHA-256 fingerprint, lower-case hex without colons.
sub fingerprint {
	my ($self, $name) = @_;
	my $file = $self->path("$name.crt");
	my $out = `openssl x509 -in $file -noout -fingerprint -sha256`;
	$out =~ /=([0-9A-F:]+)/ or die "no fingerprint in $file\n";
	(my $hex = lc $1) =~ s/://g;
	return $hex;
}

1;
