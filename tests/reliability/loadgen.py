"""Bounded load for the reload and fault parts: client threads that count every answer by
(status, generation) and every transport error, until told to stop.

Kinds: `keepalive` (HTTP/1.1, many requests per TLS connection), `newconn` (a full handshake
per request), `resume` (TLS 1.2 session resumption per request), `h2` (curl --http2, 20
streams per connection), `forwarded` (plain HTTP keep-alive with a forwarded certificate),
`reauth` (keep-alive requests to a location with a short `auth_cert_max_age` and
`auth_cert_stale reauth` until the 307, which it follows on a new connection: a full
handshake).

With `certs` (a list of (certificate file, key file) pairs) every new TLS connection, and
every curl run, presents the next certificate of the list, and with `fwd_values` every
forwarded request the next value: certificate churn. `pace` (seconds, or a dict by kind)
bounds the load: each client thread waits that long after each request."""

import base64
import json
import re
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections import Counter

from common import client_context


def kid(token):
    """The `kid` of a JWT's header, or the value itself when it is not a JWT."""
    if token.count(".") != 2:
        return token
    try:
        head = token.split(".")[0]
        return json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))).get("kid", "")
    except ValueError:
        return "bad-jwt"


def read_response(s, buf):
    """(status, headers dict (lower-case names), body, rest of buffer, close wanted)."""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            raise ConnectionError("closed before the response head")
        buf += d
    head, _, buf = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    m = re.match(rb"HTTP/1\.[01] (\d{3})", lines[0])
    if not m:
        raise ConnectionError("bad status line %r" % lines[0][:40])
    headers = {}
    for l in lines[1:]:
        k, _, v = l.partition(b":")
        headers[k.strip().lower().decode()] = v.strip().decode("latin-1")
    n = int(headers.get("content-length", "0"))
    while len(buf) < n:
        d = s.recv(65536)
        if not d:
            raise ConnectionError("closed in the body")
        buf += d
    body, buf = buf[:n], buf[n:]
    close = headers.get("connection", "").lower() == "close"
    return int(m.group(1)), headers, body, buf, close


def reauth_verdict(lower, upper, max_age):
    """What a request to a location with `auth_cert_max_age max_age` must get, from bounds of
    the age the server sees: `lower` (request sent minus handshake completed) and `upper`
    (response read minus handshake started), in seconds. The module compares whole seconds
    (stale when now - auth_time > max_age, both truncated), so an age below max_age is always
    fresh and one of max_age + 1 or more always stale; nginx's cached clock may lag a little."""
    if upper < max_age - 0.25:
        return "fresh"
    if lower >= max_age + 1.25:
        return "stale"
    return "edge"


class Load:
    def __init__(self, port, cert, key, paths, fwd_port=None, fwd_value=None, h2=True,
                 kinds=("keepalive", "newconn", "resume", "h2"), certs=None,
                 fwd_values=None, pace=0.0, per_conn=200, reauth_path="/stale",
                 reauth_age=2):
        self.port = port
        self.cert, self.key = cert, key
        self.paths = paths            # request paths, cycled
        self.fwd_port, self.fwd_value = fwd_port, fwd_value
        self.certs = certs            # churn: each new connection takes the next pair
        self.fwd_values = fwd_values  # churn: each forwarded request takes the next value
        self.pace = pace
        self.per_conn = per_conn      # keep-alive requests per connection
        self.reauth_path, self.reauth_age = reauth_path, reauth_age
        self.cert_index = 0
        self.fwd_index = 0
        self.used = set()             # certificates presented (index into certs)
        self.fwd_used = set()         # forwarded values sent (index into fwd_values)
        self.followed = 0             # reauth: redirects followed
        self.kinds = [k for k in kinds if k != "h2" or h2]
        if fwd_port and "forwarded" not in self.kinds:
            self.kinds.append("forwarded")
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.answers = Counter()      # (kind, path, status, gen, extra) -> count
        self.errors = Counter()       # kind -> transport errors
        self.requests = Counter()     # kind -> answered requests
        self.resumed = Counter()
        self.threads = []
        self.procs = []

    def next_cert(self):
        """The certificate and key files of the next connection."""
        if not self.certs:
            return self.cert, self.key
        with self.lock:
            i = self.cert_index % len(self.certs)
            self.cert_index += 1
            self.used.add(i)
        return self.certs[i]

    def context(self, tls13=True):
        return client_context(*self.next_cert(), tls13=tls13)

    def next_fwd(self):
        if not self.fwd_values:
            return self.fwd_value
        with self.lock:
            i = self.fwd_index % len(self.fwd_values)
            self.fwd_index += 1
            self.fwd_used.add(i)
        return self.fwd_values[i]

    def wait(self, kind):
        """The pause of `kind` after a request (bounded load)."""
        pace = self.pace.get(kind, 0) if isinstance(self.pace, dict) else self.pace
        if pace:
            self.stop_event.wait(pace)

    def record(self, kind, path, status, headers):
        key = (kind, path, status, headers.get("x-gen", "?"), kid(headers.get("x-check", "")))
        with self.lock:
            self.answers[key] += 1
            self.requests[kind] += 1

    def error(self, kind):
        with self.lock:
            self.errors[kind] += 1

    def start(self):
        for kind in self.kinds:
            t = threading.Thread(target=getattr(self, "run_" + kind), daemon=True)
            t.start()
            self.threads.append(t)

    def stop(self):
        self.stop_event.set()
        for p in self.procs:
            try:
                p.kill()
            except OSError:
                pass
        for t in self.threads:
            t.join(timeout=30)

    def tls(self, ctx, session=None):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        return ctx.wrap_socket(s, server_hostname="localhost", session=session)

    def request(self, path, extra=b""):
        return (b"GET %s HTTP/1.1\r\nHost: localhost\r\n%s\r\n" % (path.encode(), extra))

    def run_keepalive(self):
        ctx = client_context(self.cert, self.key)
        i = 0
        while not self.stop_event.is_set():
            try:
                if self.certs:
                    ctx = self.context()
                s = self.tls(ctx)
            except (OSError, ssl.SSLError):
                self.error("keepalive")
                time.sleep(0.05)
                continue
            buf = b""
            try:
                for _ in range(self.per_conn):
                    if self.stop_event.is_set():
                        break
                    path = self.paths[i % len(self.paths)]
                    i += 1
                    s.sendall(self.request(path))
                    status, headers, _, buf, close = read_response(s, buf)
                    self.record("keepalive", path, status, headers)
                    if close:
                        break
                    self.wait("keepalive")
            except (OSError, ssl.SSLError, ConnectionError):
                if not self.stop_event.is_set():
                    self.error("keepalive")
            finally:
                s.close()

    def one_shot(self, kind, ctx, session=None):
        path = self.paths[int(time.monotonic() * 1000) % len(self.paths)]
        s = self.tls(ctx, session)
        try:
            s.sendall(self.request(path, b"Connection: close\r\n"))
            status, headers, _, _, _ = read_response(s, b"")
            self.record(kind, path, status, headers)
            if s.session_reused:
                with self.lock:
                    self.resumed[kind] += 1
            return s.session
        finally:
            s.close()

    def run_newconn(self):
        ctx = client_context(self.cert, self.key)
        while not self.stop_event.is_set():
            try:
                if self.certs:
                    ctx = self.context()
                self.one_shot("newconn", ctx)
            except (OSError, ssl.SSLError, ConnectionError):
                if not self.stop_event.is_set():
                    self.error("newconn")
            self.wait("newconn")

    def run_resume(self):
        """TLS 1.2 resumption per request; with `certs`, another certificate (and a full
        handshake) every 10 requests."""
        ctx = client_context(self.cert, self.key, tls13=False)
        session = None
        n = 0
        while not self.stop_event.is_set():
            if self.certs and n % 10 == 0:
                ctx, session = self.context(tls13=False), None
            n += 1
            try:
                session = self.one_shot("resume", ctx, session)
            except (OSError, ssl.SSLError, ConnectionError):
                session = None
                if not self.stop_event.is_set():
                    self.error("resume")
            self.wait("resume")

    def run_h2(self):
        urls = []
        for i in range(20):
            urls.append(f"https://localhost:{self.port}{self.paths[i % len(self.paths)]}")
        while not self.stop_event.is_set():
            cert, key = self.next_cert()
            cmd = ["curl", "--http2", "-sk", "--cert", cert, "--key", key,
                   "--resolve", f"localhost:{self.port}:127.0.0.1", "--max-time", "10"]
            for u in urls:
                cmd += ["-o", "/dev/null", "-w",
                        "%{http_code} %{http_version} %header{x-gen} %header{x-check} %{url}\\n",
                        u]
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 text=True)
            self.procs.append(p)
            out, _ = p.communicate()
            self.procs.remove(p)
            if self.stop_event.is_set():
                break
            for line in out.splitlines():
                parts = line.split(" ")
                code = parts[0]
                path = "/" + parts[-1].split("/", 3)[-1] if "/" in parts[-1] else "?"
                if code == "000" or not code.isdigit():
                    self.error("h2")
                    continue
                if parts[1] != "2":
                    self.error("h2-not-h2")
                self.record("h2", path, int(code), {"x-gen": parts[2] or "?",
                                                    "x-check": parts[3] if len(parts) > 4 else ""})
            missing = len(urls) - len(out.splitlines())
            for _ in range(max(0, missing)):
                self.error("h2")
            self.wait("h2")

    def run_forwarded(self):
        i = 0
        while not self.stop_event.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", self.fwd_port), timeout=10)
            except OSError:
                self.error("forwarded")
                time.sleep(0.05)
                continue
            buf = b""
            try:
                for _ in range(self.per_conn):
                    if self.stop_event.is_set():
                        break
                    path = self.paths[i % len(self.paths)]
                    i += 1
                    s.sendall(self.request(path, b"X-Client-Cert: " + self.next_fwd() + b"\r\n"))
                    status, headers, _, buf, close = read_response(s, buf)
                    self.record("forwarded", path, status, headers)
                    if close:
                        break
                    self.wait("forwarded")
            except (OSError, ConnectionError):
                if not self.stop_event.is_set():
                    self.error("forwarded")
            finally:
                s.close()

    def run_reauth(self):
        """Keep-alive requests to `reauth_path` (a location with `auth_cert_max_age
        reauth_age` and `auth_cert_stale reauth`) on a connection made with a full handshake,
        until the 307; then the redirect's Location on a new connection (full handshake, no
        session), and so on. Each answer is recorded with its verdict in place of X-Check:
        `fresh` (must be 200), `stale` (must be 307: a 200 is a stale authentication
        accepted), `edge` (either), `badlocation` (a 307 whose Location is not this server's
        path). A 307 on the first request of a new connection is `fresh`, so a redirect loop
        counts as wrong."""
        path = self.reauth_path
        while not self.stop_event.is_set():
            ctx = self.context()
            started = time.monotonic()
            try:
                s = self.tls(ctx)
            except (OSError, ssl.SSLError):
                self.error("reauth")
                self.stop_event.wait(0.05)
                continue
            done = time.monotonic()
            buf = b""
            try:
                while not self.stop_event.is_set():
                    sent = time.monotonic()
                    s.sendall(self.request(path))
                    status, headers, _, buf, close = read_response(s, buf)
                    verdict = reauth_verdict(sent - done, time.monotonic() - started,
                                             self.reauth_age)
                    if status == 307:
                        loc = urllib.parse.urlsplit(headers.get("location", ""))
                        host = loc.netloc in ("", f"localhost:{self.port}")
                        if not host or loc.path != path:
                            verdict = "badlocation"
                    self.record("reauth", path, status,
                                {"x-gen": headers.get("x-gen", "?"), "x-check": verdict})
                    if status == 307:
                        with self.lock:
                            self.followed += 1
                        break
                    if close:
                        break
                    self.wait("reauth")
            except (OSError, ssl.SSLError, ConnectionError):
                if not self.stop_event.is_set():
                    self.error("reauth")
            finally:
                s.close()
