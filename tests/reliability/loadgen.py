"""Bounded load for the reload and fault parts: client threads that count every answer by
(status, generation) and every transport error, until told to stop.

Kinds: `keepalive` (HTTP/1.1, many requests per TLS connection), `newconn` (a full handshake
per request), `resume` (TLS 1.2 session resumption per request), `h2` (curl --http2, 20
streams per connection), `forwarded` (plain HTTP keep-alive with a forwarded certificate)."""

import base64
import json
import re
import socket
import ssl
import subprocess
import threading
import time
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


class Load:
    def __init__(self, port, cert, key, paths, fwd_port=None, fwd_value=None, h2=True,
                 kinds=("keepalive", "newconn", "resume", "h2")):
        self.port = port
        self.cert, self.key = cert, key
        self.paths = paths            # request paths, cycled
        self.fwd_port, self.fwd_value = fwd_port, fwd_value
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
                s = self.tls(ctx)
            except (OSError, ssl.SSLError):
                self.error("keepalive")
                time.sleep(0.05)
                continue
            buf = b""
            try:
                for _ in range(200):
                    if self.stop_event.is_set():
                        break
                    path = self.paths[i % len(self.paths)]
                    i += 1
                    s.sendall(self.request(path))
                    status, headers, _, buf, close = read_response(s, buf)
                    self.record("keepalive", path, status, headers)
                    if close:
                        break
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
                self.one_shot("newconn", ctx)
            except (OSError, ssl.SSLError, ConnectionError):
                if not self.stop_event.is_set():
                    self.error("newconn")

    def run_resume(self):
        ctx = client_context(self.cert, self.key, tls13=False)
        session = None
        while not self.stop_event.is_set():
            try:
                session = self.one_shot("resume", ctx, session)
            except (OSError, ssl.SSLError, ConnectionError):
                session = None
                if not self.stop_event.is_set():
                    self.error("resume")

    def run_h2(self):
        urls = []
        for i in range(20):
            urls.append(f"https://localhost:{self.port}{self.paths[i % len(self.paths)]}")
        while not self.stop_event.is_set():
            cmd = ["curl", "--http2", "-sk", "--cert", self.cert, "--key", self.key,
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
                for _ in range(200):
                    if self.stop_event.is_set():
                        break
                    path = self.paths[i % len(self.paths)]
                    i += 1
                    s.sendall(self.request(path, b"X-Client-Cert: " + self.fwd_value + b"\r\n"))
                    status, headers, _, buf, close = read_response(s, buf)
                    self.record("forwarded", path, status, headers)
                    if close:
                        break
            except (OSError, ConnectionError):
                if not self.stop_event.is_set():
                    self.error("forwarded")
            finally:
                s.close()
