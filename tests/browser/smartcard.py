#!/usr/bin/env python3
"""The smartcard story in a real browser: headless Chromium, a SoftHSM2 token as the card,
nginx with the module. Prints TAP (run it with `prove --exec python3`).

    TEST_NGINX_BINARY=/path/to/nginx \
    TEST_NGINX_GLOBALS="load_module /path/to/libngx_http_auth_cert_module.so;" \
        python3 tests/browser/smartcard.py

Needs the Debian packages chromium, chromium-driver, softhsm2, libnss3-tools, opensc and the
Python modules selenium, PyKCS11 and cryptography (scripts/test installs them).

The card: a SoftHSM2 token holding the user's EC key and certificate. Chromium reads it through
NSS: the private NSS database of a private $HOME ($HOME/.pki/nssdb) trusts the test CA and has
the SoftHSM2 library registered with modutil. Headless Chromium cannot answer a PIN prompt, so
the card never asks for one: the key is stored with CKA_PRIVATE false (readable and usable
without logging in to the token; the PIN is only needed to write or delete objects) and the
module is registered with NSS's FRIENDLY flag (its certificates are read without a login).
Without either of the two, Chromium waits for a PIN that nobody types and the page never loads.
Chromium picks the card's certificate for the test origins without its (invisible) certificate
picker thanks to the content setting that the managed policy AutoSelectCertificateForUrls
would set, written here into the new profile's Preferences instead: no system-wide policy file,
no root needed.

Two sites, one over HTTP/2 and one over HTTP/1.1, go through every step side by side, asserted
from the page and from nginx's access log: login; a new connection within the age (TLS session
resumed, same auth_time); a reload after the age (a 307 followed silently, a new full handshake,
a new auth_time); a form POST after the age (its body reaches the backend); a location whose
policy the certificate fails (the module's 403 page); the card pulled (objects deleted from the
token: the module's no_cert page); the card re-inserted. A screenshot of each step is written
to target/browser/.

The card re-inserted step needs a mode in which nginx fails the TLS handshake when no
certificate comes (`auth_cert_handshake require`): without it Chromium keeps its cached "no
certificate" choice for the site. Two more sites (HTTP/2, HTTP/1.1) run with that mode: the
card pulled shows the browser's own error page, the card put back brings the identity back,
in the same browser session (the module holds the alert of the failed handshake until
Chromium has sent its request, see step 7; the reloads a user would need are counted in a
diagnostic, normally none, and at most RELOADS are allowed). The sites without it show the no_cert
page again, on a new connection. When this nginx does not know the directive, the recovery
sites are left out and the step is skipped.
"""

import html
import importlib.util
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ARTIFACTS = os.path.join(ROOT, "target", "browser")
CHROMIUM = os.environ.get("CHROMIUM_BINARY", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_BINARY", "/usr/bin/chromedriver")
SOFTHSM_LIB = "/usr/lib/softhsm/libsofthsm2.so"
MAX_AGE = 4  # seconds: auth_cert_max_age
TIME_LIMIT = 120  # seconds for the whole test; a run takes about 20
RELOADS = 8  # the most reloads a user makes after re-inserting the card (recovery mode)
PIN, SO_PIN = "1234", "12345678"
IDENTITY = "jdoe"
P256_OID = bytes.fromhex("06082a8648ce3d030107")  # DER of prime256v1
NO_CERT_BODY = "auth_cert: no_cert: no client certificate was sent"
POLICY_BODY = "auth_cert: policy:"

# --- TAP ---------------------------------------------------------------------------------

tests = 0
failed = 0


def ok(cond, name):
    global tests, failed
    tests += 1
    if not cond:
        failed += 1
    print(f"{'ok' if cond else 'not ok'} {tests} - {name}", flush=True)
    return cond


def is_(got, expected, name):
    if not ok(got == expected, name):
        diag(f"     got: {got!r}\nexpected: {expected!r}")


def skip(name, why):
    global tests
    tests += 1
    print(f"ok {tests} # skip {name}: {why}", flush=True)


def diag(msg):
    for line in str(msg).splitlines():
        print(f"# {line}", flush=True)


def skip_all(why):
    print(f"1..0 # SKIP {why}", flush=True)
    sys.exit(0)


# --- helpers -----------------------------------------------------------------------------


def run(*args, env=None, input=None):
    r = subprocess.run(args, env=env, input=input, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({r.returncode}):\n{r.stdout}{r.stderr}")
    return r.stdout


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_pki(d):
    def openssl(*args):
        run("openssl", *args)

    def ext(name, lines):
        path = os.path.join(d, f"{name}.ext")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", f"{d}/ca.key", "-out", f"{d}/ca.crt",
            "-subj", "/CN=Browser Test CA", "-days", "2",
            "-addext", "basicConstraints=critical,CA:true",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    leaves = {
        "server": ("/CN=localhost", ["basicConstraints=CA:false", "subjectAltName=DNS:localhost",
                                     "extendedKeyUsage=serverAuth",
                                     "keyUsage=critical,digitalSignature"]),
        "client": (f"/UID={IDENTITY}/CN=John Doe", ["basicConstraints=CA:false",
                                                    "extendedKeyUsage=clientAuth",
                                                    "keyUsage=critical,digitalSignature"]),
    }
    for name, (subject, lines) in leaves.items():
        openssl("req", "-new", *ec, "-keyout", f"{d}/{name}.key", "-out", f"{d}/{name}.csr",
                "-subj", subject)
        openssl("x509", "-req", "-in", f"{d}/{name}.csr", "-CA", f"{d}/ca.crt",
                "-CAkey", f"{d}/ca.key", "-CAcreateserial", "-days", "2",
                "-out", f"{d}/{name}.crt", "-extfile", ext(name, lines))
    openssl("x509", "-in", f"{d}/client.crt", "-outform", "DER", "-out", f"{d}/client.der")


class Card:
    """A SoftHSM2 token standing for the smartcard."""

    def __init__(self, d):
        self.dir = d
        self.conf = os.path.join(d, "softhsm2.conf")
        os.makedirs(os.path.join(d, "tokens"))
        with open(self.conf, "w") as f:
            f.write(f"directories.tokendir = {d}/tokens\nobjectstore.backend = file\n"
                    "log.level = ERROR\n")
        self.env = dict(os.environ, SOFTHSM2_CONF=self.conf)
        run("softhsm2-util", "--init-token", "--free", "--label", "card",
            "--pin", PIN, "--so-pin", SO_PIN, env=self.env)

    def _session(self):
        import PyKCS11

        os.environ["SOFTHSM2_CONF"] = self.conf
        lib = PyKCS11.PyKCS11Lib()
        lib.load(SOFTHSM_LIB)
        for slot in lib.getSlotList(tokenPresent=True):
            if lib.getTokenInfo(slot).label.strip() == "card":
                s = lib.openSession(slot, PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
                s.login(PIN)
                return PyKCS11, lib, s
        raise RuntimeError("no SoftHSM2 token labelled card")

    def insert(self):
        """Writes the user's key and certificate to the token: the card is in."""
        from cryptography.hazmat.primitives import serialization

        with open(os.path.join(self.dir, "client.key"), "rb") as f:
            key = serialization.load_pem_private_key(f.read(), None)
        point = key.public_key().public_bytes(serialization.Encoding.X962,
                                              serialization.PublicFormat.UncompressedPoint)
        p11, lib, s = self._session()
        try:
            # NSS recognises a certificate with a key by a public key object with its point.
            s.createObject([
                (p11.CKA_CLASS, p11.CKO_PUBLIC_KEY), (p11.CKA_KEY_TYPE, p11.CKK_EC),
                (p11.CKA_TOKEN, True), (p11.CKA_PRIVATE, False), (p11.CKA_VERIFY, True),
                (p11.CKA_ID, (1,)), (p11.CKA_LABEL, IDENTITY),
                (p11.CKA_EC_PARAMS, P256_OID),
                (p11.CKA_EC_POINT, bytes([0x04, len(point)]) + point),  # DER OCTET STRING
            ])
            # CKA_PRIVATE false: NSS finds and uses the key without a login, hence no PIN prompt.
            s.createObject([
                (p11.CKA_CLASS, p11.CKO_PRIVATE_KEY), (p11.CKA_KEY_TYPE, p11.CKK_EC),
                (p11.CKA_TOKEN, True), (p11.CKA_PRIVATE, False), (p11.CKA_SENSITIVE, True),
                (p11.CKA_EXTRACTABLE, False), (p11.CKA_SIGN, True), (p11.CKA_ID, (1,)),
                (p11.CKA_LABEL, IDENTITY),
                (p11.CKA_EC_PARAMS, P256_OID),
                (p11.CKA_VALUE, key.private_numbers().private_value.to_bytes(32, "big")),
            ])
        finally:
            s.logout()
            s.closeSession()
        run("pkcs11-tool", "--module", SOFTHSM_LIB, "--token-label", "card", "--login",
            "--pin", PIN, "--write-object", os.path.join(self.dir, "client.der"),
            "--type", "cert", "--id", "01", "--label", IDENTITY, env=self.env)

    def pull(self):
        """Deletes the key and the certificate from the token: the card is out."""
        for kind in ("privkey", "pubkey", "cert"):
            run("pkcs11-tool", "--module", SOFTHSM_LIB, "--token-label", "card", "--login",
                "--pin", PIN, "--delete-object", "--type", kind, "--id", "01", env=self.env)

    def objects(self):
        return run("pkcs11-tool", "--module", SOFTHSM_LIB, "--token-label", "card", "--login",
                   "--pin", PIN, "--list-objects", env=self.env)


def make_nssdb(home, card):
    db = os.path.join(home, ".pki", "nssdb")
    os.makedirs(db)
    sql = f"sql:{db}"
    run("certutil", "-N", "-d", sql, "--empty-password")
    run("certutil", "-A", "-d", sql, "-n", "Browser Test CA", "-t", "CT,C,C",
        "-i", os.path.join(card.dir, "ca.crt"))
    run("modutil", "-dbdir", sql, "-add", "card", "-libfile", SOFTHSM_LIB,
        "-mechanisms", "FRIENDLY", "-force", env=card.env)
    return db


class Backend(http.server.ThreadingHTTPServer):
    """The application behind nginx: shows who nginx says the user is, serves a form and
    echoes POST bodies."""

    daemon_threads = True

    class Handler(http.server.BaseHTTPRequestHandler):
        def page(self, title, body):
            h = self.headers
            data = (f"<!doctype html><html><head><title>{html.escape(title)}</title></head>"
                    f"<body><h1>{html.escape(title)}</h1>"
                    f"<p>request: <b id=request>{html.escape(self.command)} "
                    f"{html.escape(self.path)}</b></p>"
                    f"<p>identity: <b id=identity>{html.escape(h.get('X-User', ''))}</b></p>"
                    f"<p>auth_time: <b id=auth_time>{html.escape(h.get('X-Auth-Time', ''))}</b>"
                    f"</p><p>protocol: <b id=protocol>{html.escape(h.get('X-Proto', ''))}</b>"
                    f"</p>{body}</body></html>").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path.startswith("/form"):
                self.page("form", '<form method=post action="/echo">'
                          '<input id=note name=note value="">'
                          '<button id=send type=submit>send</button></form>')
            else:
                self.page("welcome", "")

        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(n).decode("utf-8", "replace")
            self.page("posted", f"<pre id=body>{html.escape(body)}</pre>")

        def log_message(self, *args):
            pass


NGINX_CONF = """
{globals}
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ }}
http {{
    client_body_temp_path {d}/client_body_temp;
    proxy_temp_path {d}/proxy_temp;
    fastcgi_temp_path {d}/fastcgi_temp;
    uwsgi_temp_path {d}/uwsgi_temp;
    scgi_temp_path {d}/scgi_temp;

    log_format browser '$connection $ssl_session_reused $auth_cert_auth_time $status '
                       '$server_port $request_method $uri $auth_cert_status $auth_cert_reason '
                       '$msec $connection_time';
    access_log {d}/access.log browser;

    ssl_certificate {d}/server.crt;
    ssl_certificate_key {d}/server.key;
    ssl_client_certificate {d}/ca.crt;
    ssl_verify_client optional;
    ssl_session_cache shared:SSL:1m;
    keepalive_timeout 60s;

    auth_cert on;
    auth_cert_max_age {max_age}s;

    proxy_set_header X-User $auth_cert_identity;
    proxy_set_header X-Auth-Time $auth_cert_auth_time;
    proxy_set_header X-Proto $server_protocol;

{servers}
}}
"""

SERVER = """
    server {{
        listen 127.0.0.1:{port} ssl;
        http2 {http2};
        server_name localhost;
{extra}
        location / {{
            proxy_pass http://127.0.0.1:{backend};
        }}

        location /policy/ {{
            auth_cert_policy 1.3.6.1.4.1.55555.1.1;
            proxy_pass http://127.0.0.1:{backend};
        }}
    }}
"""


class Site:
    def __init__(self, name, http2, recovery=False):
        self.name = name
        self.http2 = http2
        self.recovery = recovery
        self.port = free_port()
        self.origin = f"https://localhost:{self.port}"
        self.auth_time = None


class Nginx:
    def __init__(self, d, sites, backend_port, globals_):
        self.dir = d
        servers = "".join(SERVER.format(
            port=s.port, http2="on" if s.http2 else "off", backend=backend_port,
            extra="        auth_cert_handshake require;\n" if s.recovery else "")
            for s in sites)
        self.conf = os.path.join(d, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(NGINX_CONF.format(globals=globals_, d=d, max_age=MAX_AGE, servers=servers))
        self.binary = os.environ["TEST_NGINX_BINARY"]
        self.proc = None
        self.log = os.path.join(d, "access.log")

    def start(self):
        args = [self.binary, "-p", f"{self.dir}/", "-e", f"{self.dir}/error.log", "-c", self.conf]
        run(*args, "-t")
        # (its output goes to error.log: it must not hold the test's stdout, read by prove)
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pid = os.path.join(self.dir, "nginx.pid")
        for _ in range(100):
            if os.path.exists(pid):
                return
            time.sleep(0.05)
        raise RuntimeError("nginx did not start, see error.log")

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)

    def aborted_handshakes(self, site):
        """Handshakes on the site's port that the client abandoned (error log, info level)."""
        needle = f"closed connection in SSL handshake while SSL handshaking, client: 127.0.0.1, " \
                 f"server: 127.0.0.1:{site.port}"
        with open(os.path.join(self.dir, "error.log")) as f:
            return sum(needle in line for line in f)

    def lines(self):
        """The access log, parsed."""
        out = []
        with open(self.log) as f:
            for line in f:
                (conn, reused, auth_time, status, port, method, uri, st, reason, msec,
                 conn_time) = line.split(" ")
                out.append(dict(conn=conn, reused=reused, auth_time=auth_time,
                                status=int(status), port=int(port), method=method, uri=uri,
                                cert_status=st, reason=reason,
                                # when the connection was accepted
                                opened=float(msec) - float(conn_time)))
        return out


def nginx_knows(binary, globals_, directive, d):
    """Whether nginx accepts a server-level directive (nginx -t on a minimal configuration)."""
    conf = os.path.join(d, "probe.conf")
    with open(conf, "w") as f:
        f.write(f"{globals_}\npid {d}/probe.pid;\nevents {{ }}\n"
                f"http {{ access_log off; server {{ listen 127.0.0.1:{free_port()} ssl; "
                f"ssl_certificate {d}/server.crt; ssl_certificate_key {d}/server.key; "
                f"ssl_client_certificate {d}/ca.crt; ssl_verify_client optional; "
                f"auth_cert on; {directive} }} }}\n")
    r = subprocess.run([binary, "-p", f"{d}/", "-e", f"{d}/probe.log", "-c", conf, "-t"],
                       capture_output=True, text=True)
    if r.returncode != 0 and "unknown directive" not in r.stderr:
        diag(f"nginx -t with {directive!r} failed:\n{r.stderr}")
    return r.returncode == 0


# --- the browser ---------------------------------------------------------------------------


def start_chromium(d, home, card):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                "--no-default-browser-check", "--window-size=900,500",
                # chrome.benchmarking.closeConnections(): a new connection on demand
                "--enable-net-benchmarking",
                f"--user-data-dir={d}/profile"):
        opts.add_argument(arg)
    env = dict(os.environ, HOME=home, SOFTHSM2_CONF=card.conf)
    service = Service(executable_path=CHROMEDRIVER, env=env,
                      log_output=os.path.join(d, "chromedriver.log"))
    driver = webdriver.Chrome(options=opts, service=service)
    driver.set_page_load_timeout(20)
    return driver


def write_profile(d, sites):
    """A new Chromium profile that selects the client certificate for the sites by itself (the
    per-profile form of the AutoSelectCertificateForUrls policy, any certificate)."""
    os.makedirs(os.path.join(d, "profile", "Default"))
    rules = {f"{s.origin},*": {"setting": {"filters": [{}]}} for s in sites}
    prefs = {"profile": {"content_settings": {"exceptions": {"auto_select_certificate": rules}}}}
    with open(os.path.join(d, "profile", "Default", "Preferences"), "w") as f:
        json.dump(prefs, f)


class Browser:
    def __init__(self, driver, nginx):
        self.driver = driver
        self.nginx = nginx
        self.step = 0
        self.windows = 0

    def text(self):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.TAG_NAME, "body").text

    def field(self, name):
        from selenium.webdriver.common.by import By

        found = self.driver.find_elements(By.ID, name)
        return found[0].text if found else None

    def shot(self, site, what):
        self.step += 1
        self.driver.save_screenshot(
            os.path.join(ARTIFACTS, f"{self.step:02d}-{site.name}-{what}.png"))

    def tab(self, site):
        """Each site has its own tab, so that a page can wait there while the others move on."""
        if getattr(site, "window", None) is None:
            if self.windows:
                self.driver.switch_to.new_window("tab")
            site.window = self.driver.current_window_handle
            self.windows += 1
        else:
            self.driver.switch_to.window(site.window)

    def get(self, site, path, what):
        """Opens a URL in the site's tab; returns the new access log lines of this site."""
        self.tab(site)
        before = len(self.nginx.lines())
        from selenium.common.exceptions import WebDriverException

        try:
            self.driver.get(site.origin + path)
        except WebDriverException as e:
            # chromedriver sometimes reports a network error of the navigation instead of
            # showing Chromium's error page; the page is what the user sees either way
            if "net::ERR_" not in str(e):
                raise
        self.shot(site, what)
        return self.new_lines(site, before)

    def new_lines(self, site, before):
        # nginx writes the access log line after the response: give it a moment
        time.sleep(0.1)
        # (Chromium also asks each site for /favicon.ico: not part of the story)
        return [ln for ln in self.nginx.lines()[before:]
                if ln["port"] == site.port and ln["uri"] != "/favicon.ico"]

    def close_connections(self):
        self.driver.execute_script("chrome.benchmarking.closeConnections()")

    def submit(self, site, note, what):
        """Types a note into the site's form and sends it; returns the new log lines."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        self.tab(site)
        before = len(self.nginx.lines())
        self.driver.find_element(By.ID, "note").send_keys(note)
        self.driver.find_element(By.ID, "send").click()
        WebDriverWait(self.driver, 20).until(
            lambda d: d.find_elements(By.ID, "body") or "auth_cert" in self.text()
            or "ERR_" in self.text())
        self.shot(site, what)
        return self.new_lines(site, before)


def summary(lines):
    return " | ".join(f"conn={ln['conn']} reused={ln['reused']} auth_time={ln['auth_time']} "
                      f"{ln['method']} {ln['uri']} {ln['status']} {ln['reason']}".rstrip()
                      for ln in lines)


def wait_stale(sites):
    """Sleeps until the authentication of every site is older than the maximum age (whole
    seconds: stale once the age exceeds the maximum by one second)."""
    t = max(int(s.auth_time) for s in sites) + MAX_AGE + 1.05
    time.sleep(max(0, t - time.time()))


def first_line(text):
    return (text.strip().splitlines() or [""])[0]


def scenarios(b, card, sites, recovery_sites):
    every = sites + recovery_sites

    # 1. Login: a full handshake, the card signs, the page shows the identity.
    for s in every:
        lines = b.get(s, "/", "login")
        is_(b.field("identity"), IDENTITY, f"{s.name}: login shows the identity")
        is_(b.field("protocol"), "HTTP/2.0" if s.http2 else "HTTP/1.1",
            f"{s.name}: the page came over {'HTTP/2' if s.http2 else 'HTTP/1.1'}")
        ok(len(lines) == 1 and lines[0]["status"] == 200 and lines[0]["reused"] == "."
           and lines[0]["auth_time"] == b.field("auth_time"),
           f"{s.name}: log: one 200, full handshake, the page's auth_time")
        diag(f"{s.name} login: {summary(lines)}")
        s.auth_time = b.field("auth_time")
        s.conn = lines[-1]["conn"] if lines else None

    # 2. A new connection within the age: the TLS session is resumed, same auth_time.
    b.close_connections()
    for s in sites:
        lines = b.get(s, "/", "new-connection")
        is_(b.field("identity"), IDENTITY, f"{s.name}: new connection: the identity")
        is_(b.field("auth_time"), s.auth_time, f"{s.name}: new connection: the same auth_time")
        ok(len(lines) == 1 and lines[0]["status"] == 200 and lines[0]["reused"] == "r"
           and lines[0]["conn"] != s.conn and lines[0]["auth_time"] == s.auth_time,
           f"{s.name}: log: another connection, session resumed, the same auth_time")
        diag(f"{s.name} new connection: {summary(lines)}")
        s.conn = lines[-1]["conn"] if lines else None

    # 3. After the age: the stale connection answers 307, the browser follows it on a new
    #    connection with a full handshake (the card signs again); a new auth_time, no error.
    wait_stale(sites)
    for s in sites:
        old = s.auth_time
        lines = b.get(s, "/", "after-age")
        s.auth_time = b.field("auth_time")
        is_(b.field("identity"), IDENTITY, f"{s.name}: after the age: the identity")
        ok(s.auth_time and int(s.auth_time) > int(old),
           f"{s.name}: after the age: a new auth_time ({old} -> {s.auth_time})")
        ok("ERR_" not in b.text() and b.driver.current_url == s.origin + "/",
           f"{s.name}: after the age: no error, the same URL")
        ok(len(lines) >= 2 and lines[0]["status"] == 307 and lines[0]["reason"] == "stale"
           and lines[-1]["status"] == 200 and lines[-1]["reused"] == "."
           and lines[-1]["auth_time"] == s.auth_time,
           f"{s.name}: log: 307 stale, then 200 after a full handshake, the new auth_time")
        diag(f"{s.name} after the age: {summary(lines)}")
        s.redirects = [ln["status"] for ln in lines].count(307)

    # 4. A form POST after the age: the 307 keeps the method and the body.
    for s in sites:
        b.get(s, "/form", "form")
        s.auth_time = b.field("auth_time")
        is_(b.field("identity"), IDENTITY, f"{s.name}: the form page")
    wait_stale(sites)
    for s in sites:
        old = s.auth_time
        lines = b.submit(s, f"card still here {s.name}", "post-after-age")
        s.auth_time = b.field("auth_time")
        is_(b.field("body"), f"note=card+still+here+{s.name}",
            f"{s.name}: POST after the age: the backend got the body")
        ok(b.field("identity") == IDENTITY and s.auth_time and int(s.auth_time) > int(old),
           f"{s.name}: POST after the age: the identity, a new auth_time")
        ok(len(lines) >= 2 and all(ln["method"] == "POST" for ln in lines)
           and lines[0]["status"] == 307 and lines[-1]["status"] == 200
           and lines[-1]["reused"] == ".",
           f"{s.name}: log: POST 307 stale, then POST 200 after a full handshake")
        diag(f"{s.name} POST after the age: {summary(lines)}")

    # 5. A location whose policy the certificate fails: the module's page.
    for s in sites:
        lines = b.get(s, "/policy/", "policy-denied")
        ok(b.text().startswith(POLICY_BODY), f"{s.name}: policy failure: the module's page")
        ok(len(lines) == 1 and lines[0]["status"] == 403 and lines[0]["reason"] == "policy",
           f"{s.name}: log: 403, reason policy")
        diag(f"{s.name} policy: {first_line(b.text())!r}: {summary(lines)}")

    # 6. The card pulled: within the age nothing changes (documented); after it, the
    #    re-authentication finds no card and the module answers with its no_cert page.
    card.pull()
    wait_stale(sites + recovery_sites)
    for s in every:
        aborted = b.nginx.aborted_handshakes(s)
        lines = b.get(s, "/", "card-pulled")
        aborted = b.nginx.aborted_handshakes(s) - aborted
        text = b.text()
        if s.recovery:
            ok(IDENTITY not in text and not text.startswith("auth_cert:"),
               f"{s.name}: card pulled: the browser's own error page, not the module's")
        else:
            is_(first_line(text), NO_CERT_BODY, f"{s.name}: card pulled: the no_cert page")
            ok(len(lines) >= 2 and lines[0]["status"] == 307 and lines[-1]["status"] == 400
               and lines[-1]["reason"] == "no_cert",
               f"{s.name}: log: 307 stale, then 400 no_cert")
        diag(f"{s.name} card pulled: {first_line(text)!r}: {summary(lines)}; "
             f"{aborted} handshakes abandoned by the browser")
        s.conn = lines[-1]["conn"] if lines else None

    # No session was resumed after its authentication had become too old (whole seconds).
    late = [ln for ln in b.nginx.lines() if ln["reused"] == "r"
            and int(ln["opened"]) - int(ln["auth_time"]) > MAX_AGE]
    ok(not late, "log: every resumed connection was opened within the age of its authentication")
    for ln in late:
        diag(f"resumed late: {ln}")

    # 7. The card re-inserted: the identity should come back in the same browser session.
    #    Chromium keeps its "no certificate" choice for the site; without the recovery mode it
    #    gets the no_cert page again (on a new connection: the no_cert answer ended the last
    #    one, HTTP/2 included). With auth_cert_handshake require the handshake fails with an
    #    alert, and Chromium forgets the choice only when that alert comes while a request is
    #    on the connection (ERR_BAD_SSL_CLIENT_AUTH_CERT). The client finishes its side of the
    #    handshake first (TLS 1.3; False Start in TLS 1.2): an alert that arrives before the
    #    request is sent gives ERR_SOCKET_NOT_CONNECTED, Chromium keeps its choice, and the
    #    user must reload. The module holds the alert until the request has come; the reloads
    #    a user would need are counted all the same (docs/authentication-age.md).
    card.insert()
    for s in every:
        lines = b.get(s, "/", "card-reinserted")
        errors = []
        if s.recovery:
            while b.field("identity") is None and len(errors) < RELOADS:
                errors.append(net_error(b.text()))
                lines += b.get(s, "/", "card-reinserted-reload")
        text = b.text()
        diag(f"{s.name} card re-inserted: {first_line(text)!r}: {summary(lines)}"
             + (f"; reloads: {len(errors)} ({', '.join(errors)})" if s.recovery else ""))
        if s.recovery:
            is_(b.field("identity"), IDENTITY, f"{s.name}: card re-inserted: the identity")
            continue
        ok(lines and lines[0]["conn"] != s.conn,
           f"{s.name}: card re-inserted: not on the connection of the no_cert answer")
        if not recovery_sites:
            skip(f"{s.name}: card re-inserted: the identity comes back",
                 "needs the directive auth_cert_handshake require, which this nginx does "
                 f"not know; Chromium shows {first_line(text)!r}")


def net_error(text):
    """The network error code of Chromium's error page ("?" without one)."""
    found = re.findall(r"ERR_[A-Z_]+", text)
    return found[0] if found else "?"


def main():
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        skip_all(f"no Chromium ({CHROMIUM}) or chromedriver ({CHROMEDRIVER})")
    for tool in ("softhsm2-util", "pkcs11-tool", "certutil", "modutil", "openssl"):
        if not shutil.which(tool):
            skip_all(f"{tool} is not installed")
    for module in ("PyKCS11", "selenium", "cryptography"):
        if importlib.util.find_spec(module) is None:
            skip_all(f"the Python module {module} is not installed")
    binary = os.environ.get("TEST_NGINX_BINARY")
    if not binary:
        skip_all("TEST_NGINX_BINARY is not set")
    globals_ = os.environ.get("TEST_NGINX_GLOBALS", "")

    def give_up(signum, frame):
        raise TimeoutError(f"signal {signum}: stopped (time limit {TIME_LIMIT} s or terminated)")

    signal.signal(signal.SIGALRM, give_up)
    signal.signal(signal.SIGTERM, give_up)
    signal.alarm(TIME_LIMIT)

    started = time.time()
    d = tempfile.mkdtemp(prefix="auth-cert-browser-")
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    os.makedirs(ARTIFACTS)
    nginx = driver = backend = None
    try:
        make_pki(d)
        card = Card(d)
        card.insert()
        home = os.path.join(d, "home")
        make_nssdb(home, card)

        backend = Backend(("127.0.0.1", 0), Backend.Handler)
        threading.Thread(target=backend.serve_forever, daemon=True).start()

        sites = [Site("h2", http2=True), Site("h1", http2=False)]
        recovery_sites = []
        if nginx_knows(binary, globals_, "auth_cert_handshake require;", d):
            recovery_sites = [Site("h2-recovery", True, recovery=True),
                              Site("h1-recovery", False, recovery=True)]
        nginx = Nginx(d, sites + recovery_sites, backend.server_address[1], globals_)
        nginx.start()
        write_profile(d, sites + recovery_sites)
        driver = start_chromium(d, home, card)
        ready = time.time()
        scenarios(Browser(driver, nginx), card, sites, recovery_sites)
        diag(f"timing: setup {ready - started:.1f}s, scenarios {time.time() - ready:.1f}s")
    except Exception:
        ok(False, "the test ran to its end")
        diag(traceback.format_exc())
    finally:
        signal.alarm(30)  # for the cleanup
        if nginx:
            nginx.stop()
        if driver:
            driver.quit()
        signal.alarm(0)
        if backend:
            backend.shutdown()
        if failed or os.environ.get("TEST_NGINX_LEAVE"):
            diag(f"files kept in {d}")
        else:
            shutil.rmtree(d, ignore_errors=True)
    print(f"1..{tests}", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
