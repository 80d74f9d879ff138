"""Part 2: hostile input corpus. Certificates made at run time are presented over TLS and
forwarded in `auth_cert_header` (URL-escaped PEM) from a trusted address; forwarded headers
are also truncated, doubled, oversized and percent-garbage. For each input: the expected
status, exactly one `auth_cert:` error_log line for a rejection (none for an acceptance), no
control character in any header line reaching the upstream or the client, and no crash or
[alert] in the error log."""

import datetime
import os
import ssl
import sys
import urllib.parse

from cryptography import x509
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID, ObjectIdentifier

from common import (Nginx, Part, Upstream, client_context, control_chars, crash_lines,
                    free_port, globals_, issue, name, now, pem_key, raw_request, workdir)

VARIABLES = ["status", "reason", "identity", "source", "serial", "fingerprint", "subject",
             "issuer", "email", "upn", "not_after", "auth_time", "age"]

UPN = ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")


def utf8_der(text):
    b = text.encode("utf-8")
    if len(b) < 0x80:
        return b"\x0c" + bytes([len(b)]) + b
    n = len(b).to_bytes((len(b).bit_length() + 7) // 8, "big")
    return b"\x0c" + bytes([0x80 | len(n)]) + n + b


def attr(oid, value, t=None):
    if t is None:
        return x509.NameAttribute(oid, value)
    return x509.NameAttribute(oid, value, _type=t)


def unchecked_email(value):
    return x509.RFC822Name._init_without_validation(value)


CONF = """{globals}
pid nginx.pid;
worker_processes 1;
error_log error.log info;
events {{ }}
http {{
    access_log access.log;
    large_client_header_buffers 4 128k;
    server {{
        listen 127.0.0.1:{tls} ssl;
        server_name localhost;
        ssl_certificate server.crt;
        ssl_certificate_key server.key;
        ssl_client_certificate ca.crt;
        ssl_verify_client optional_no_ca;
        ssl_verify_depth 12;
        location / {{
            auth_cert on;
{vars}
            proxy_pass http://127.0.0.1:{up};
        }}
    }}
    server {{
        listen 127.0.0.1:{fwd};
        location / {{
            auth_cert on;
            auth_cert_header X-Client-Cert from=127.0.0.1 ca=ca.crt;
{vars}
            proxy_pass http://127.0.0.1:{up};
        }}
    }}
    server {{
        listen 127.0.0.1:{untrusted};
        location / {{
            auth_cert on;
            auth_cert_header X-Client-Cert from=192.0.2.1 ca=ca.crt;
{vars}
            proxy_pass http://127.0.0.1:{up};
        }}
    }}
}}
"""


class Corpus:
    def __init__(self, part):
        self.part = part
        self.n = Nginx(workdir("corpus"))
        self.up = Upstream()
        self.seq = 0
        self.ca = issue(name("Corpus Root CA"), ca=True)
        self.requests = 0
        self.unloadable = []

    def setup(self):
        n = self.n
        server = issue(name("localhost"), issuer=self.ca)
        n.write("ca.crt", self.ca.pem)
        n.write("server.crt", server.pem)
        n.write("server.key", pem_key(server.key))
        self.tls, self.fwd, self.untrusted = free_port(), free_port(), free_port()
        vars_ = "\n".join(
            f"            proxy_set_header X-AC-{v} $auth_cert_{v};\n"
            f"            add_header X-AC-{v} $auth_cert_{v} always;" for v in VARIABLES)
        n.write("nginx.conf", CONF.format(globals=globals_(), tls=self.tls, fwd=self.fwd,
                                          untrusted=self.untrusted, up=self.up.port, vars=vars_))
        n.start()

    def log_size(self):
        return os.path.getsize(self.n.path("error.log"))

    def new_log(self, since):
        with open(self.n.path("error.log"), "rb") as f:
            f.seek(since)
            return f.read().decode("utf-8", "replace")

    def write_chain(self, tag, leaf, chain=()):
        cert = self.n.path(f"{tag}.crt")
        with open(cert, "wb") as f:
            f.write(leaf.pem)
            for c in chain:
                f.write(c.pem)
        key = self.n.path(f"{tag}.key")
        with open(key, "wb") as f:
            f.write(pem_key(leaf.key))
        return cert, key

    def check(self, label, port, head_lines, ctx, expect, identity=None, body=b"",
              forbidden_upstream=()):
        """One request; the checks listed in the module docstring."""
        self.seq += 1
        self.requests += 1
        rid = f"c{self.seq}"
        head = f"GET /{rid} HTTP/1.1\r\nHost: localhost\r\nX-Req: {rid}\r\nConnection: close"
        head = head.encode() + b"".join(b"\r\n" + h for h in head_lines)
        before = self.log_size()
        try:
            status, rhead, rbody = raw_request(port, head, ctx)
        except Exception as e:  # noqa: BLE001
            status, rhead, rbody = -1, b"", str(e).encode()
        log = self.new_log(before)
        p = self.part
        ok_status = status in expect if isinstance(expect, tuple) else status == expect
        p.check(ok_status, f"{label}: status {status}, expected {expect}"
                           f" ({rbody[:120]!r})")
        # nginx's own rejection of a certificate that does not verify (expired, not yet
        # valid: errors optional_no_ca does not excuse) is logged by nginx, not the module
        lines = [l for l in log.splitlines()
                 if "auth_cert:" in l or "client SSL certificate verify error" in l]
        rejected = status not in (200,)
        if rejected:
            p.check(len(lines) == 1, f"{label}: {len(lines)} auth_cert: log lines for a rejection"
                                     f" (or nginx's verify error), expected 1: {lines[:3]}")
        else:
            bad = [l for l in lines if "[error]" in l or "[crit]" in l or "[alert]" in l]
            p.check(not bad, f"{label}: error lines for an acceptance: {bad[:2]}")
        up_head = self.up.heads.get(rid, b"")
        if status == 200:
            p.check(bool(up_head), f"{label}: 200 but the upstream saw no request")
        cc = control_chars(up_head)
        p.check(not cc, f"{label}: control characters in upstream header lines: {cc[:3]!r}")
        injected = [l for l in up_head.split(b"\r\n")
                    if l.lower().startswith(b"x-injected")]
        p.check(not injected, f"{label}: injected header reached the upstream: {injected[:2]!r}")
        for name_ in forbidden_upstream:
            p.check(name_.lower() + b":" not in up_head.lower(),
                    f"{label}: header {name_!r} reached the upstream")
        rcc = control_chars(rhead)
        rinj = [l for l in rhead.split(b"\r\n") if l.lower().startswith(b"x-injected")]
        p.check(not rcc and not rinj,
                f"{label}: control characters or injected lines in the response head: "
                f"{(rcc + rinj)[:3]!r}")
        crashes = crash_lines(log)
        p.check(not crashes, f"{label}: {crashes[:2]}")
        if identity is not None and status == 200:
            m = [l for l in up_head.split(b"\r\n") if l.lower().startswith(b"x-ac-identity:")]
            got = m[0].split(b":", 1)[1].strip().decode("utf-8", "replace") if m else None
            p.check(got == identity, f"{label}: identity {got!r}, expected {identity!r}")
        return status

    def tls_and_forwarded(self, label, leaf, chain=(), tls_expect=200, fwd_expect=200,
                          identity=None):
        cert, key = self.write_chain(f"k{self.seq}", leaf, chain)
        try:
            ctx = client_context(cert, key)
        except ssl.SSLError:
            # OpenSSL itself does not load it (as a client): only the forwarded path
            self.unloadable.append(label)
            ctx = None
        if ctx:
            self.check(f"{label} (TLS)", self.tls, [], ctx, tls_expect, identity)
        pem = leaf.pem + b"".join(c.pem for c in chain)
        value = urllib.parse.quote(pem.decode(), safe="").encode()
        if fwd_expect is not None:
            self.check(f"{label} (forwarded)", self.fwd, [b"X-Client-Cert: " + value], None,
                       fwd_expect, identity)
        return value


def main():
    part = Part("2 hostile corpus")
    c = Corpus(part)
    c.setup()
    ca = c.ca
    day = datetime.timedelta(days=1)

    # a plain certificate: the reference
    ok = issue(name("alice"), issuer=ca)
    valid_value = c.tls_and_forwarded("plain", ok, identity="alice")

    # 1,000 SANs
    sans = [x509.DNSName(f"host{i}.example.org") for i in range(1000)]
    c.tls_and_forwarded("1000 SANs", issue(name("many-sans"), issuer=ca, sans=sans),
                        identity="many-sans")

    # a 60 KiB extension (unknown, non-critical)
    big = x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.99999.1"),
                                     b"\x04\x82\xf0\x00" + os.urandom(0xF000))
    c.tls_and_forwarded("60 KiB extension", issue(name("big-ext"), issuer=ca,
                                                  extensions=[(big, False)]),
                        fwd_expect=403, identity="big-ext")  # forwarded: over 32 KiB

    # every ASN.1 string type in the subject (CN of that type, then all in one subject)
    for t, text in [(_ASN1Type.UTF8String, "type-utf8"),
                    (_ASN1Type.PrintableString, "type-printable"),
                    (_ASN1Type.IA5String, "type-ia5"),
                    (_ASN1Type.T61String, "type-t61"),
                    (_ASN1Type.BMPString, "type-bmp"),
                    (_ASN1Type.UniversalString, "type-universal")]:
        c.tls_and_forwarded(f"CN as {t.name}",
                            issue(name(attrs=[attr(NameOID.COMMON_NAME, text, t)]), issuer=ca),
                            identity=text)
    for t, text in [(_ASN1Type.NumericString, "12345"), (_ASN1Type.VisibleString, "visible")]:
        # not among the documented decodings: a 200 with the value or a 403 `identity`
        c.tls_and_forwarded(f"CN as {t.name}",
                            issue(name(attrs=[attr(NameOID.COMMON_NAME, text, t)]), issuer=ca),
                            tls_expect=(200, 403), fwd_expect=(200, 403))
    mixed = name(attrs=[
        attr(NameOID.COUNTRY_NAME, "US", _ASN1Type.PrintableString),
        attr(NameOID.ORGANIZATION_NAME, "org-t61", _ASN1Type.T61String),
        attr(NameOID.ORGANIZATIONAL_UNIT_NAME, "ou-bmp", _ASN1Type.BMPString),
        attr(NameOID.LOCALITY_NAME, "loc-universal", _ASN1Type.UniversalString),
        attr(NameOID.STATE_OR_PROVINCE_NAME, "st-ia5", _ASN1Type.IA5String),
        attr(NameOID.SERIAL_NUMBER, "0042", _ASN1Type.NumericString),
        attr(NameOID.EMAIL_ADDRESS, "mixed@example.org", _ASN1Type.IA5String),
        attr(NameOID.USER_ID, "mixed-uid", _ASN1Type.UTF8String),
        attr(NameOID.COMMON_NAME, "mixed-cn", _ASN1Type.PrintableString)])
    c.tls_and_forwarded("every string type in one subject", issue(mixed, issuer=ca),
                        tls_expect=(200, 403), fwd_expect=(200, 403), identity="mixed-uid")

    # UTF-8 in every field, issuer included
    uca = issue(name(attrs=[attr(NameOID.COMMON_NAME, "Zertifizierungsstelle Ä 日本")]),
                issuer=ca, ca=True)
    u = "Jürgen 日本語 😀"
    usub = name(attrs=[attr(NameOID.COUNTRY_NAME, "DE"),
                       attr(NameOID.ORGANIZATION_NAME, "Größe GmbH"),
                       attr(NameOID.ORGANIZATIONAL_UNIT_NAME, "Ünit ☃"),
                       attr(NameOID.LOCALITY_NAME, "Zürich"),
                       attr(NameOID.EMAIL_ADDRESS, "jürgen@例え.jp", _ASN1Type.UTF8String),
                       attr(NameOID.COMMON_NAME, u)])
    usans = [unchecked_email("jürgen@例え.jp"),
             x509.OtherName(UPN, utf8_der("jürgen@例え.jp")),
             x509.UniformResourceIdentifier._init_without_validation("https://例え.jp/ü")]
    c.tls_and_forwarded("UTF-8 in every field", issue(usub, issuer=uca, sans=usans), [uca],
                        identity=u)

    # empty subject: no identity
    c.tls_and_forwarded("empty subject", issue(x509.Name([]), issuer=ca), tls_expect=403,
                        fwd_expect=403)

    # negative and 40-byte serials
    c.tls_and_forwarded("negative serial", issue(name("neg-serial"), issuer=ca, serial=-12345),
                        tls_expect=(200, 403), fwd_expect=(200, 403))
    c.tls_and_forwarded("zero serial", issue(name("zero-serial"), issuer=ca, serial=0),
                        tls_expect=(200, 403), fwd_expect=(200, 403))
    c.tls_and_forwarded("40-byte serial",
                        issue(name("long-serial"), issuer=ca, serial=(1 << 318) + 12345,
                              unsafe=True), tls_expect=(200, 403), fwd_expect=(200, 403))

    # validity: notBefore in the future, expired
    c.tls_and_forwarded("notBefore in the future",
                        issue(name("future"), issuer=ca, not_before=now() + day,
                              not_after=now() + 30 * day), tls_expect=400, fwd_expect=403)
    c.tls_and_forwarded("expired", issue(name("expired"), issuer=ca,
                                         not_before=now() - 30 * day,
                                         not_after=now() - day), tls_expect=400, fwd_expect=403)
    # an unknown CA
    other = issue(name("Other CA"), ca=True)
    c.tls_and_forwarded("unknown CA", issue(name("stranger"), issuer=other), tls_expect=400,
                        fwd_expect=403)

    # a chain 10 deep (root, 9 intermediates, leaf): TLS with ssl_verify_depth 12 accepts it;
    # forwarded it holds 10 certificates, over the limit of 8
    chain = []
    parent = ca
    for i in range(9):
        parent = issue(name(f"Intermediate {i}"), issuer=parent, ca=True)
        chain.append(parent)
    deep = issue(name("deep"), issuer=parent)
    c.tls_and_forwarded("chain 10 deep", deep, list(reversed(chain)), tls_expect=200,
                        fwd_expect=403, identity="deep")
    # forwarded chain leaf + 3 intermediates (5 with the root): within 8 certificates, deeper
    # than the forwarded depth limit that issue 13 asks for (leaf, intermediate, root)
    mid = chain[:3]
    leaf4 = issue(name("four-deep"), issuer=mid[-1])
    c.tls_and_forwarded("forwarded chain 4 deep (depth limit)", leaf4, list(reversed(mid)),
                        tls_expect=200, fwd_expect=403)

    # control characters in fields that reach variables
    inj = "\r\nX-Injected: 1"
    c.tls_and_forwarded("SAN email with CR/LF",
                        issue(name("crlf-email"), issuer=ca,
                              sans=[unchecked_email("bob@corp" + inj)]),
                        identity="crlf-email")
    c.tls_and_forwarded("SAN UPN with CR/LF",
                        issue(name("crlf-upn"), issuer=ca,
                              sans=[x509.OtherName(UPN, utf8_der("bob@corp" + inj))]),
                        identity="crlf-upn")
    c.tls_and_forwarded("subject emailAddress with CR/LF",
                        issue(name(attrs=[attr(NameOID.EMAIL_ADDRESS, "bob@corp" + inj,
                                               _ASN1Type.UTF8String),
                                          attr(NameOID.COMMON_NAME, "crlf-subject-email")]),
                              issuer=ca), identity="crlf-subject-email")
    for ch, label in [("\x00", "NUL"), ("\x1b", "ESC"), ("\x7f", "DEL"), ("\t", "TAB"),
                      ("\n", "LF"), ("\x85", "NEL")]:
        c.tls_and_forwarded(f"SAN email with {label}",
                            issue(name(f"ctl-email-{label}"), issuer=ca,
                                  sans=[unchecked_email(f"a{ch}b@corp")]),
                            identity=f"ctl-email-{label}")
        c.tls_and_forwarded(f"SAN UPN with {label}",
                            issue(name(f"ctl-upn-{label}"), issuer=ca,
                                  sans=[x509.OtherName(UPN, utf8_der(f"a{ch}b@corp"))]),
                            identity=f"ctl-upn-{label}")
    # an identity with CR/LF is refused (reason identity)
    c.tls_and_forwarded("CN with CR/LF", issue(name("bob" + inj), issuer=ca),
                        tls_expect=403, fwd_expect=403)
    c.tls_and_forwarded("CN with NUL", issue(name("bob\x00admin"), issuer=ca),
                        tls_expect=403, fwd_expect=403)
    # control characters in the issuer DN (an intermediate CA named with CR/LF)
    cca = issue(name("Evil CA" + inj), issuer=ca, ca=True)
    c.tls_and_forwarded("issuer with CR/LF", issue(name("via-evil-ca"), issuer=cca), [cca],
                        identity="via-evil-ca")

    # forwarded headers: truncated, doubled, oversized, percent-garbage
    fwd = c.fwd
    half = valid_value[:len(valid_value) // 2]
    c.check("forwarded truncated", fwd, [b"X-Client-Cert: " + half], None, 403)
    c.check("forwarded truncated to 1 byte", fwd, [b"X-Client-Cert: " + valid_value[:1]], None,
            403)
    c.check("forwarded doubled", fwd, [b"X-Client-Cert: " + valid_value] * 2, None, 403)
    big_value = b"%2D" * 12000  # 36 KB, over the 32 KiB limit
    c.check("forwarded oversized (36 KB)", fwd, [b"X-Client-Cert: " + big_value], None, 403)
    pem = ok.pem
    c.check("forwarded 9 certificates", fwd,
            [b"X-Client-Cert: " + urllib.parse.quote((pem * 9).decode(), safe="").encode()],
            None, 403)
    for g in [b"%zz%%%", b"%", b"%2", b"%00", b"%0d%0aX-Injected:%201", b"-----BEGIN%20CERT",
              valid_value.replace(b"%0A", b"%0G"), valid_value + b"%0Agarbage",
              b"%FF%FE%FD" * 100]:
        c.check(f"forwarded percent-garbage {g[:24]!r}", fwd, [b"X-Client-Cert: " + g], None,
                403)
    c.check("forwarded private key PEM", fwd,
            [b"X-Client-Cert: " + urllib.parse.quote(pem_key(ok.key).decode(), safe="").encode()],
            None, 403)
    raw_spaces = pem.replace(b"\n", b" ").strip()
    c.check("forwarded raw PEM with spaces", fwd, [b"X-Client-Cert: " + raw_spaces], None, 200,
            identity="alice")
    c.check("forwarded from an untrusted address", c.untrusted,
            [b"X-Client-Cert: " + valid_value], None, 403,
            forbidden_upstream=(b"X-Client-Cert",))

    c.n.stop()
    crashes = crash_lines(c.n.log())
    part.check(not crashes, f"crash or alert in the error log: {crashes[:3]}")
    part.figure(f"{c.requests} requests, upstream saw {c.up.count}")
    if c.unloadable:
        part.figure("forwarded only (the TLS client cannot load them): "
                    + ", ".join(c.unloadable))
    return part


if __name__ == "__main__":
    p = main()
    p.save(sys.argv[1] if len(sys.argv) > 1 else "/dev/null")
    sys.exit(1 if p.failed else 0)
