"""Shared by the reliability parts: a PKI made with `cryptography`, nginx instances in
private directories, free ports, and the result table rows."""

import datetime
import warnings
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID, ExtendedKeyUsageOID

NGINX = os.environ.get("NGINX_BIN", "nginx")
MODULE = os.environ.get("MODULE_SO", "")
QUICK = os.environ.get("RELIABILITY_QUICK") == "1"
ROOT = os.geteuid() == 0


warnings.filterwarnings("ignore", message=".*serial number.*")


def now():
    return datetime.datetime.now(datetime.timezone.utc)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def globals_(module=True):
    g = "user root;\n" if ROOT else ""
    if module:
        g += f"load_module {MODULE};\n"
    return g


# ---------------------------------------------------------------------------------------------
# PKI

def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


def pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def pem_cert(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def name(cn=None, attrs=None):
    if attrs is not None:
        return x509.Name(attrs)
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class Issued:
    def __init__(self, cert, key):
        self.cert = cert
        self.key = key

    @property
    def pem(self):
        return pem_cert(self.cert)


def issue(subject, issuer=None, key=None, ca=False, serial=None, not_before=None,
          not_after=None, extensions=(), sans=None, eku=True, path_len=None, unsafe=False):
    """A certificate of `subject` (x509.Name) signed by `issuer` (an Issued; self-signed when
    None). `extensions`: (extension, critical) pairs. `unsafe` builds the certificate from
    raw DER so that fields `cryptography` refuses (negative serial) can be used."""
    key = key or ec_key()
    b = x509.CertificateBuilder().subject_name(subject)
    b = b.issuer_name(issuer.cert.subject if issuer else subject)
    b = b.public_key(key.public_key())
    plain = serial is not None and 0 < serial < (1 << 159) and not unsafe
    b = b.serial_number(serial if plain else x509.random_serial_number())
    b = b.not_valid_before(not_before or now() - datetime.timedelta(hours=1))
    b = b.not_valid_after(not_after or now() + datetime.timedelta(days=30))
    if ca:
        b = b.add_extension(x509.BasicConstraints(ca=True, path_length=path_len), critical=True)
        b = b.add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False,
                                          False), critical=True)
    else:
        b = b.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        if eku:
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                                critical=False)
    b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    if issuer:
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            issuer.key.public_key()), False)
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    for ext, critical in extensions:
        b = b.add_extension(ext, critical)
    signer = issuer.key if issuer else key
    cert = b.sign(signer, None if isinstance(signer, ed25519.Ed25519PrivateKey) else hashes.SHA256())
    if serial is not None and not plain:
        cert = resign_with_serial(cert, serial, signer)
    return Issued(cert, key)


def _der_len(n):
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def _der_read(buf, pos):
    """(tag, header length, content length) of the DER element at pos."""
    tag = buf[pos]
    first = buf[pos + 1]
    if first < 0x80:
        return tag, 2, first
    n = first & 0x7F
    return tag, 2 + n, int.from_bytes(buf[pos + 2:pos + 2 + n], "big")


def resign_with_serial(cert, serial, signer):
    """Replaces the serial of a certificate's TBS with any integer (negative included) and
    signs it again: `cryptography` refuses serials that are not positive."""
    der = cert.public_bytes(serialization.Encoding.DER)
    _, h, _ = _der_read(der, 0)
    tbs_start = h
    _, th, tl = _der_read(der, tbs_start)
    tbs = der[tbs_start:tbs_start + th + tl]
    pos = th
    # optional [0] version
    if tbs[pos] == 0xA0:
        _, vh, vl = _der_read(tbs, pos)
        pos += vh + vl
    _, sh, sl = _der_read(tbs, pos)
    length = max(1, (serial.bit_length() + 8) // 8)
    sbytes = serial.to_bytes(length, "big", signed=True)
    new_serial = b"\x02" + _der_len(len(sbytes)) + sbytes
    body = tbs[th:pos] + new_serial + tbs[pos + sh + sl:]
    new_tbs = b"\x30" + _der_len(len(body)) + body
    sig_alg_start = tbs_start + th + tl
    _, ah, al = _der_read(der, sig_alg_start)
    sig_alg = der[sig_alg_start:sig_alg_start + ah + al]
    if isinstance(signer, ec.EllipticCurvePrivateKey):
        sig = signer.sign(new_tbs, ec.ECDSA(hashes.SHA256()))
    else:
        from cryptography.hazmat.primitives.asymmetric import padding
        sig = signer.sign(new_tbs, padding.PKCS1v15(), hashes.SHA256())
    bitstr = b"\x03" + _der_len(len(sig) + 1) + b"\x00" + sig
    body = new_tbs + sig_alg + bitstr
    out = b"\x30" + _der_len(len(body)) + body
    return x509.load_der_x509_certificate(out)


# ---------------------------------------------------------------------------------------------
# nginx

class Nginx:
    """One nginx in a private directory: write nginx.conf, start, reload, stop."""

    def __init__(self, workdir, binary=None):
        self.dir = workdir
        self.binary = binary or NGINX
        os.makedirs(self.dir, exist_ok=True)
        self.proc = None

    def path(self, name):
        return os.path.join(self.dir, name)

    def write(self, name, data):
        mode = "wb" if isinstance(data, bytes) else "w"
        with open(self.path(name), mode) as f:
            f.write(data)

    def test(self, conf_name="nginx.conf"):
        r = subprocess.run([self.binary, "-t", "-p", self.dir + "/", "-c", conf_name,
                            "-e", "error.log"], capture_output=True, text=True)
        return r.returncode, r.stdout + r.stderr

    def start(self, conf_name="nginx.conf"):
        open(self.path("error.log"), "a").close()
        r = subprocess.run([self.binary, "-p", self.dir + "/", "-c", conf_name, "-e", "error.log"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("nginx did not start: " + r.stderr + self.log_tail())
        STARTED.append(self)
        for _ in range(100):
            if os.path.exists(self.path("nginx.pid")):
                break
            time.sleep(0.05)
        time.sleep(0.2)

    def pid(self):
        try:
            with open(self.path("nginx.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def signal(self, sig):
        p = self.pid()
        if p:
            os.kill(p, sig)

    def reload(self):
        self.signal(signal.SIGHUP)

    def stop(self):
        p = self.pid()
        if not p:
            return
        try:
            os.kill(p, signal.SIGQUIT)
        except ProcessLookupError:
            return
        for _ in range(100):
            try:
                os.kill(p, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def log(self):
        try:
            with open(self.path("error.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_tail(self, n=20):
        return "\n".join(self.log().splitlines()[-n:])

    def workers(self):
        master = self.pid()
        out = subprocess.run(["ps", "-o", "pid=,ppid=,args=", "-e"], capture_output=True,
                             text=True).stdout
        return [int(l.split()[0]) for l in out.splitlines()
                if l.split()[1] == str(master) and "worker process" in l]


def crash_lines(log):
    return [l for l in log.splitlines()
            if "exited on signal" in l or "[alert]" in l]


def workdir(tag):
    base = os.environ.get("RELIABILITY_DIR") or tempfile.gettempdir()
    d = tempfile.mkdtemp(prefix=f"rel-{tag}-", dir=base)
    WORKDIRS.append(d)
    return d


WORKDIRS = []


STARTED = []


def cleanup(keep):
    """Stops every nginx still running (a part that stopped with an exception leaves them)
    and removes the work directories, unless `keep` (a failed part keeps them for reading)."""
    for n in STARTED:
        n.stop()
    for d in WORKDIRS:
        if keep:
            print(f"  files kept in {d}")
        else:
            shutil.rmtree(d, ignore_errors=True)


class Part:
    """Counts the checks of one part and remembers its failures and figures."""

    def __init__(self, name):
        self.name = name
        self.passed = 0
        self.failed = 0
        self.failures = []
        self.figures = []

    def check(self, ok, what):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            self.failures.append(what)
            print(f"  FAIL {self.name}: {what}", flush=True)
        return ok

    def figure(self, text):
        self.figures.append(text)

    def skip(self, why):
        self.figures.append("skipped: " + why)

    def save(self, path):
        with open(path, "a") as f:
            f.write(json.dumps({"part": self.name, "passed": self.passed, "failed": self.failed,
                                "failures": self.failures, "figures": self.figures}) + "\n")


# ---------------------------------------------------------------------------------------------
# An upstream that records the raw head of every request, and a raw HTTP/1.1 client

import ssl
import threading


class Upstream:
    """A threaded HTTP/1.1 server on 127.0.0.1 that answers 200 and keeps each request head
    (raw bytes) under the value of its X-Req header."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]
        self.heads = {}
        self.count = 0
        self.lock = threading.Lock()
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(c,), daemon=True).start()

    def handle(self, c):
        buf = b""
        c.settimeout(30)
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                head, _, buf = buf.partition(b"\r\n\r\n")
                m = re.search(rb"(?im)^x-req:\s*(\S+)", head)
                with self.lock:
                    self.count += 1
                    if m:
                        self.heads[m.group(1).decode()] = head
                clen = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                if clen:
                    n = int(clen.group(1))
                    while len(buf) < n:
                        buf += c.recv(65536)
                    buf = buf[n:]
                body = b"ok\n"
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: text/plain\r\n"
                          b"\r\n%s" % (len(body), body))
        except OSError:
            pass
        finally:
            c.close()


def control_chars(head):
    """The header lines of a raw head (bytes) that hold a control character (tab included:
    no variable may carry one), after splitting on CRLF."""
    bad = []
    for line in head.split(b"\r\n"):
        if any(b < 0x20 or b == 0x7F for b in line):
            bad.append(line)
    return bad


def client_context(cert_file=None, key_file=None, tls13=True):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if not tls13:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if cert_file:
        ctx.load_cert_chain(cert_file, key_file)
    return ctx


LAST_REUSED = False


def raw_request(port, head, ctx=None, timeout=30, session=None, want_session=False):
    """Sends one request head (str or bytes, without the final CRLF CRLF) on a new connection
    (TLS when ctx is given) and returns (status, raw response head, body[, session])."""
    if isinstance(head, str):
        head = head.encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if ctx:
        s = ctx.wrap_socket(s, server_hostname="localhost", session=session)
    s.sendall(head + b"\r\n\r\n")
    data = b""
    while True:
        try:
            d = s.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            break
        if not d:
            break
        data += d
    sess = s.session if ctx else None
    global LAST_REUSED
    LAST_REUSED = bool(ctx) and s.session_reused
    s.close()
    rhead, _, body = data.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.[01] (\d{3})", rhead)
    status = int(m.group(1)) if m else 0
    if want_session:
        return status, rhead, body, sess
    return status, rhead, body
