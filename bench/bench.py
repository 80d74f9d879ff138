"""The benchmark behind scripts/bench: the module against plain nginx, against HAProxy and Apache
doing the same job, and against a Python login service.

Run through scripts/bench, which builds what this needs and passes it in the environment:
NGINX_BIN, MODULE_SO, OHA (unless --client curl), BENCH_PYTHON (venv python with gunicorn,
cryptography and PyJWT); haproxy and apache2 from Debian's packages. Everything runs on
127.0.0.1; the nginx workers, the peers (and the Python service) run on BENCH_SERVER_CPU, the
load generator on BENCH_CLIENT_CPU.
"""

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import report

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# The policy OID of the client certificate (US DoD medium hardware, as on a CAC).
POLICY_OID = "2.16.840.1.101.3.2.1.3.13"


@dataclass
class Config:
    """One nginx location: the work it does per request and how to check that it did it."""

    name: str
    title: str
    directives: str
    # The response header proving the configuration ran, and the value it must have
    # (a regex), checked before measuring.
    header: str
    value: str
    expect: str
    module: bool = True
    proxy: bool = False
    # Which server answers: "nginx", "nginx_zone" (a second nginx, for directives of the http
    # block that would change the other configurations) or a peer ("haproxy", "apache").
    server: str = "nginx"
    # http-level directives, and lines added to each server block (nginx only).
    http: str = ""
    server_lines: str = ""
    # The scenarios measured (None: all).
    scenarios: tuple = None


IDENTITY_HEADER = "X-Identity"
# Revoked serials in the CRL of identity_crl (none of them the client's).
CRL_ENTRIES = 100_000
CONFIGS = [
    Config("baseline", "nginx: ssl_verify_client on, $ssl_client_s_dn", "",
           IDENTITY_HEADER, "$ssl_client_s_dn", r"^CN=Alice Example,UID=alice,", module=False),
    # The floor: the same response with a constant header ($ssl_client_s_dn is not free), so
    # that a module configuration against it shows the module's own cost.
    Config("plain", "nginx: ssl_verify_client on, a constant X-Identity header", "",
           IDENTITY_HEADER, "alice", r"^alice$", module=False),
    Config("identity", "auth_cert on (identity uid cn)", "auth_cert on;",
           IDENTITY_HEADER, "$auth_cert_identity", r"^alice$"),
    Config("identity_age", "auth_cert on; auth_cert_max_age 15m",
           "auth_cert on;\nauth_cert_max_age 15m;",
           IDENTITY_HEADER, "$auth_cert_identity", r"^alice$"),
    Config("identity_crl", f"auth_cert on + auth_cert_crl ({CRL_ENTRIES:,} revoked serials)",
           "auth_cert on;\nauth_cert_crl pki/crl.pem;",
           IDENTITY_HEADER, "$auth_cert_identity", r"^alice$"),
    # The zone and metrics: every request is counted in the shared zone (the metrics location
    # is not requested during the runs). The zone is of the http block and so would count the
    # other configurations' requests too: it runs in a second nginx.
    Config("identity_zone", "auth_cert on + auth_cert_zone and an auth_cert_metrics location",
           "auth_cert on;", IDENTITY_HEADER, "$auth_cert_identity", r"^alice$",
           server="nginx_zone", http="auth_cert_zone auth_cert_bench:1m;",
           server_lines="location = /metrics {\n    auth_cert_metrics;\n    allow 127.0.0.1;\n"
                        "    deny all;\n}"),
    Config("policy", "auth_cert on + EKU, policy OID, identity regex",
           "auth_cert on;\nauth_cert_eku clientAuth;\n"
           f"auth_cert_policy {POLICY_OID};\nauth_cert_identity uid cn;\n"
           'auth_cert_identity_regex "^([a-z]+)$";',
           IDENTITY_HEADER, "$auth_cert_identity", r"^alice$"),
] + [
    Config(f"token_{alg.lower()}", f"auth_cert on + token {alg} in a response header",
           f"auth_cert on;\nauth_cert_token_key keys/{alg.lower()}.pem kid={alg.lower()};",
           "X-Token", "$auth_cert_token", r"^eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+$")
    for alg in ("ES256", "EdDSA", "RS256")
]
# The same job done by other servers (identity, UID else CN, in a response header, after TLS
# client certificate verification), on the same core: see HAProxy and Apache below.
PEER_SCENARIOS = ("h1_keepalive", "full_handshake", "resumed")
PEER_CONFIGS = [
    Config("haproxy", "HAProxy: verify required, ssl_c_s_dn(UID) else (CN) into X-User, "
           "http-request return 200", "", "X-User", "", r"^alice$", module=False,
           server="haproxy", scenarios=PEER_SCENARIOS),
    Config("apache", "Apache mod_ssl: SSLVerifyClient require, SSLUserName SSL_CLIENT_S_DN_UID, "
           "Header set X-User, a static file", "", "X-User", "", r"^alice$", module=False,
           server="apache", scenarios=PEER_SCENARIOS),
]
PEERS = [c.name for c in PEER_CONFIGS]
# The module's configuration compared with the peers.
PEER_REFERENCE = "identity"
LOGIN_CONFIGS = [
    Config("login_python", "nginx + Python login service (gunicorn, cryptography, PyJWT)",
           "proxy_set_header X-Client-Cert $ssl_client_escaped_cert;\n"
           "proxy_pass http://127.0.0.1:{login_port};",
           "", "", r'"identity": ?"alice"', module=False, proxy=True),
    Config("login_module", "auth_cert_login (token ES256)",
           "auth_cert_login;\nauth_cert_token_key keys/es256.pem kid=es256;",
           "", "", r'"identity": ?"alice"'),
]


@dataclass
class Scenario:
    name: str
    title: str
    port: str  # "cached" (session cache on, tickets off) or "full" (no resumption at all)
    oha_args: list
    new_connections: bool = False
    http2: bool = False


SCENARIOS = [
    Scenario("h1_keepalive", "HTTP/1.1 keep-alive, 32 connections", "cached", ["-c", "32"]),
    Scenario("h2_keepalive", "HTTP/2 keep-alive, 4 connections x 8 streams", "cached",
             ["--http2", "-c", "4", "-p", "8"], http2=True),
    Scenario("full_handshake", "new connection per request, full handshake", "full",
             ["-c", "32", "--disable-keepalive"], new_connections=True),
    Scenario("resumed", "new connection per request, resumed session", "cached",
             ["-c", "32", "--disable-keepalive"], new_connections=True),
]
LOGIN_SCENARIOS = ["h1_keepalive", "full_handshake"]

KEEPALIVE_TARGETS = {"identity": 0.98, "identity_age": 0.98, "identity_crl": 0.98,
                     "identity_zone": 0.97, "policy": 0.97,
                     "token_es256": 0.97, "token_eddsa": 0.97, "token_rs256": 0.97}
HANDSHAKE_TARGETS = {"identity": 0.97, "identity_age": 0.97, "policy": 0.97}
TARGETS = {
    "h1_keepalive": KEEPALIVE_TARGETS,
    "h2_keepalive": KEEPALIVE_TARGETS,
    # A full handshake with a token is a new authentication: it signs a token.
    "full_handshake": {**HANDSHAKE_TARGETS, "token_es256": 0.95, "token_eddsa": 0.93,
                       "token_rs256": 0.60},
    # A resumed session keeps its authentication, and its token from the cache.
    "resumed": {**HANDSHAKE_TARGETS, "token_es256": 0.97, "token_eddsa": 0.97,
                "token_rs256": 0.97},
}
# login_module against login_python. With a new connection per login both pay a full handshake,
# which bounds the ratio (bench/NOTES.md).
LOGIN_TARGETS = {"h1_keepalive": 20.0, "full_handshake": 2.0}
MEMORY_TARGET = 1024  # bytes per connection added by the module
# The memory test's kinds (report.MEMORY_KINDS names them): every connection presents the same
# client certificate, which the module may parse once for all of them, or each its own, the
# worst case.
SAME_CERTIFICATE = "same_certificate"
CERTIFICATE_PER_CONNECTION = "certificate_per_connection"
MEMORY_CONFIGS = {SAME_CERTIFICATE: ("baseline", "identity", "identity_age", "token_es256"),
                  CERTIFICATE_PER_CONNECTION: ("baseline", "identity", "identity_age")}

CLIENT_CONNECTIONS = 32  # -c of the HTTP/1.1 scenarios

LOG_FORMAT = "$uri $status $ssl_session_reused $ssl_client_verify $connection"


class BenchError(Exception):
    pass


STARTED = time.monotonic()


def say(text):
    elapsed = int(time.monotonic() - STARTED)
    print(f"\033[1m==> [{elapsed // 60}:{elapsed % 60:02}] {text}\033[0m", flush=True)


def warn(text):
    print(f"\033[1;31m!!! {text}\033[0m", flush=True)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw)


def wait_port(port, timeout=30.0, alive=None):
    """Waits until `port` accepts connections (and process `alive`, if given, still runs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None and alive.poll() is not None:
            raise BenchError(f"the server exited ({alive.returncode}) before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# Certificates and keys


def make_pki(d: Path):
    """A P-256 CA, server and client certificate (the client one meets every policy used),
    and the token signing keys."""
    d.mkdir(parents=True, exist_ok=True)
    keys = d.parent / "keys"
    keys.mkdir(exist_ok=True)

    def openssl(*args):
        run(["openssl", *args])

    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-days", "30", "-subj", "/CN=Bench CA", "-keyout", d / "ca.key", "-out", d / "ca.crt")

    def issue(name, subject, ext):
        (d / f"{name}.ext").write_text(ext)
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-subj", subject, "-keyout", d / f"{name}.key", "-out", d / f"{name}.csr")
        openssl("x509", "-req", "-in", d / f"{name}.csr", "-CA", d / "ca.crt",
                "-CAkey", d / "ca.key", "-CAcreateserial", "-days", "30",
                "-extfile", d / f"{name}.ext", "-out", d / f"{name}.crt")

    issue("server", "/CN=localhost", "subjectAltName = DNS:localhost, IP:127.0.0.1\n")
    issue("client", "/DC=org/DC=example/UID=alice/CN=Alice Example",
          "extendedKeyUsage = clientAuth\nkeyUsage = digitalSignature\n"
          f"certificatePolicies = {POLICY_OID}\n")
    (d / "client.pem").write_text((d / "client.crt").read_text() + (d / "client.key").read_text())
    make_crl(d, CRL_ENTRIES)
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-out", keys / "es256.pem")
    openssl("genpkey", "-algorithm", "ED25519", "-out", keys / "eddsa.pem")
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
            "-out", keys / "rs256.pem")


def make_crl(d: Path, n):
    """pki/crl.pem: a CRL of the CA revoking n serials (10000000, 10000001, ... in hex; the
    client's serial is a random 20-byte number), made by `openssl ca -gencrl` from a database
    written directly."""
    db = d / "crl-db"
    db.mkdir(exist_ok=True)
    with open(db / "index.txt", "w") as index:
        for i in range(n):
            index.write(f"R\t491231235959Z\t240101000000Z,keyCompromise\t{0x10000000 + i:08X}"
                        f"\tunknown\t/CN=revoked {i}\n")
    (db / "crlnumber").write_text("01\n")
    (db / "ca.cnf").write_text(
        f"[ca]\ndefault_ca = c\n[c]\ndatabase = {db}/index.txt\ncrlnumber = {db}/crlnumber\n"
        "default_md = sha256\ndefault_crl_days = 30\nunique_subject = no\n")
    run(["openssl", "ca", "-gencrl", "-batch", "-config", db / "ca.cnf", "-cert", d / "ca.crt",
         "-keyfile", d / "ca.key", "-out", d / "crl.pem"])


def make_clients(pki: Path, n):
    """N client certificates for the memory test with a certificate per connection, in
    pki/many/0000.crt, ...: like the client certificate (its key, issuer and extensions) but
    each with its own subject UID and serial. Issued by issue_clients in one process of
    BENCH_PYTHON, which has `cryptography` (this script's python may not): the openssl CLI
    would take about 20 s for 1000."""
    python = os.environ.get("BENCH_PYTHON")
    if not python:
        raise BenchError("BENCH_PYTHON (a python with cryptography) unset")
    result = subprocess.run(
        [python, "-c", "import sys, bench; bench.issue_clients(sys.argv[1], int(sys.argv[2]))",
         str(pki), str(n)], cwd=HERE, text=True, capture_output=True)
    if result.returncode:
        raise BenchError(f"issuing {n} client certificates failed: {result.stderr.strip()[-500:]}")


def issue_clients(pki, n):
    """make_clients' work, run by BENCH_PYTHON. The extensions are those openssl gives the
    client certificate (make_pki), so that the module parses the same amount per connection."""
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    pki = Path(pki)
    ca = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
    key = serialization.load_pem_private_key((pki / "client.key").read_bytes(), None)
    extensions = [
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
        x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                      data_encipherment=False, key_agreement=False, key_cert_sign=False,
                      crl_sign=False, encipher_only=False, decipher_only=False),
        x509.CertificatePolicies([x509.PolicyInformation(x509.ObjectIdentifier(POLICY_OID),
                                                         None)]),
        x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
        x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
    ]
    now = datetime.datetime.now(datetime.timezone.utc)
    out = pki / "many"
    out.mkdir(exist_ok=True)
    for i in range(n):
        subject = x509.Name([
            x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "org"),
            x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "example"),
            x509.NameAttribute(NameOID.USER_ID, client_uid(i)),
            x509.NameAttribute(NameOID.COMMON_NAME, "Alice Example"),
        ])
        builder = x509.CertificateBuilder().subject_name(subject).issuer_name(ca.subject) \
            .public_key(key.public_key()).serial_number(x509.random_serial_number()) \
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=30))
        for extension in extensions:
            builder = builder.add_extension(extension, critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        (out / f"{i:04}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def client_uid(i):
    """Letters only, as the policy configuration's identity regex wants, and as long as
    "alice": "uaaaa", "uaaab", ..."""
    return "u" + "".join(chr(ord("a") + i // 26 ** k % 26) for k in (3, 2, 1, 0))


# ---------------------------------------------------------------------------------------------
# nginx


@dataclass
class Ports:
    cached: int
    full: int
    login: int


def location(config: Config, ports: Ports):
    directives = config.directives.format(login_port=ports.login)
    log = "bench_module" if config.module else "bench"
    lines = [f"location = /{config.name} {{",
             *(f"    {line}" for line in directives.splitlines()),
             f"    access_log logs/access.log {log} buffer=256k flush=200ms;"]
    if config.header:
        lines.append(f"    add_header {config.header} \"{config.value}\" always;")
    if not config.proxy and "auth_cert_login" not in config.directives:
        # empty_gif rather than `return`: `return` answers in the rewrite phase, before the
        # access phase in which the module checks the request.
        lines.append("    empty_gif;")
    lines.append("}")
    return "\n".join(lines)


def nginx_conf(configs, ports: Ports, cpu: int, single_process=False):
    affinity = "1" + "0" * cpu
    servers = []
    http_lines = "".join(dict.fromkeys(f"    {c.http}\n" for c in configs if c.http))
    extra = "\n".join(dict.fromkeys(c.server_lines for c in configs if c.server_lines))
    for port, cache in ((ports.cached, "shared:bench:10m"), (ports.full, "off")):
        locations = "\n".join([location(c, ports) for c in configs] + ([extra] if extra else []))
        servers.append(f"""
    server {{
        listen 127.0.0.1:{port} ssl;
        http2 on;
        server_name localhost;
        ssl_certificate        pki/server.crt;
        ssl_certificate_key    pki/server.key;
        ssl_client_certificate pki/ca.crt;
        ssl_verify_client      on;
        ssl_session_cache      {cache};
        ssl_session_tickets    off;
{indent(locations, 8)}
    }}""")
    user = "user root;\n" if os.geteuid() == 0 else ""
    single = "master_process off;\ndaemon off;\n" if single_process else ""
    return f"""{user}load_module {os.environ['MODULE_SO']};
{single}worker_processes 1;
worker_cpu_affinity {affinity};
worker_rlimit_nofile 8192;
pid logs/nginx.pid;
error_log logs/error.log warn;

events {{
    worker_connections 4096;
}}

http {{
    log_format bench '{LOG_FORMAT} -';
    log_format bench_module '{LOG_FORMAT} $auth_cert_status';
    access_log off;
    keepalive_timeout 600s;
    keepalive_requests 100000000;
{http_lines}{''.join(servers)}
}}
"""


def indent(text, n):
    return "\n".join((" " * n + line) if line else line for line in text.splitlines())


class Nginx:
    def __init__(self, prefix: Path):
        self.prefix = prefix
        self.bin = os.environ["NGINX_BIN"]
        self.master = None

    def cmd(self, conf, *args):
        return [self.bin, "-p", f"{self.prefix}/", "-c", conf, "-e", "logs/error.log", *args]

    def test(self, conf_text, name):
        """`nginx -t` on a configuration; returns None or the error nginx printed."""
        path = self.prefix / f"test-{name}.conf"
        path.write_text(conf_text)
        result = subprocess.run(self.cmd(path.name, "-t", "-q"), text=True, capture_output=True)
        if result.returncode == 0:
            return None
        errors = [l for l in result.stderr.splitlines() if "[emerg]" in l] or \
            result.stderr.strip().splitlines()[-1:]
        if not errors:
            return "nginx -t failed"
        return re.sub(r" in \S+:\d+$", "", re.sub(r"^.*\[emerg\] (\d+#\d+: )?", "", errors[0]))

    def start(self, conf_text):
        (self.prefix / "nginx.conf").write_text(conf_text)
        (self.prefix / "logs" / "access.log").unlink(missing_ok=True)
        run(self.cmd("nginx.conf"))
        pid_file = self.prefix / "logs" / "nginx.pid"
        for _ in range(100):
            if pid_file.exists() and pid_file.read_text().strip():
                break
            time.sleep(0.05)
        self.master = int(pid_file.read_text())
        for _ in range(100):
            workers = self.workers()
            if workers:
                return workers[0]
            time.sleep(0.05)
        raise BenchError("nginx started no worker")

    def workers(self):
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.master)], text=True,
                             capture_output=True).stdout
        return [int(p) for p in out.split()]

    def stop(self):
        if self.master is None:
            return
        try:
            os.kill(self.master, signal.SIGQUIT)
        except ProcessLookupError:
            pass
        for _ in range(200):
            try:
                os.kill(self.master, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            os.kill(self.master, signal.SIGKILL)
        self.master = None


def rss_bytes(pid):
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024


# ---------------------------------------------------------------------------------------------
# The servers that answer the configurations: nginx with the module, a second nginx with a zone,
# and the peers. Each has a listener with a session cache and no tickets ("cached") and one
# without any resumption ("full"), and says what it saw during a run.


class NginxSide:
    http2 = True

    def __init__(self, name, nginx: Nginx, ports: Ports, cpu):
        self.name, self.nginx, self.ports, self.cpu = name, nginx, ports, cpu
        self.configs = []
        self.log = AccessLog(nginx.prefix / "logs" / "access.log")

    def conf(self, single_process=False):
        return nginx_conf(self.configs, self.ports, self.cpu, single_process)

    def start(self):
        worker = self.nginx.start(self.conf())
        affinity = run(["taskset", "-pc", str(worker)]).stdout.strip()
        print(f"  {self.name} worker {worker}: {affinity}")
        self.log.take()

    def stop(self):
        self.nginx.stop()

    def begin(self, scenario):
        pass

    def take(self, config, scenario, result):
        return check_log(self.log.take(), config, scenario, result)

    def callgrind_cmd(self, listener, config):
        """nginx as one process with this configuration's location alone: the others' start-up
        (the CRL of identity_crl: seconds under valgrind) would only slow every session."""
        (self.nginx.prefix / "callgrind.conf").write_text(
            nginx_conf([config], self.ports, self.cpu, single_process=True))
        return self.nginx.cmd("callgrind.conf")

    def callgrind_user(self):
        return None


def check_counts(scenario: Scenario, result, requests, connections, resumed):
    """The checks of check_log that a peer's log or counters allow."""
    problems = []
    served = sum(result["statuses"].values())
    if requests < served:
        problems.append(f"server counted {requests} requests, the client {served}")
    if scenario.name == "full_handshake" and resumed:
        problems.append(f"{resumed} resumed sessions in a full-handshake run")
    if scenario.name == "resumed" and resumed < 0.5 * (connections - CLIENT_CONNECTIONS):
        problems.append(f"only {resumed} of {connections} connections resumed")
    if scenario.new_connections and requests and connections < 0.9 * requests:
        problems.append(f"{requests} requests over only {connections} connections")
    return problems


class Peer:
    """Another server doing the module's `identity` job on the same core: two instances, one
    per listener, since both peers set their session cache for the whole process."""

    http2 = False
    binary = ""

    def __init__(self, name, work: Path, pki: Path, cpu):
        self.name, self.pki, self.cpu = name, pki, cpu
        self.dir = work / name
        self.ports = Ports(cached=free_port(), full=free_port(), login=0)
        self.procs = {}

    def available(self):
        return None if shutil.which(self.binary) else f"{self.binary} is not installed"

    def port(self, listener):
        return getattr(self.ports, listener)

    def write_conf(self, listener):
        self.dir.mkdir(exist_ok=True)
        path = self.dir / f"{listener}.conf"
        path.write_text(self.conf(listener))
        return path

    def start(self):
        for listener in ("cached", "full"):
            self.write_conf(listener)
            out = open(self.dir / f"{listener}.out", "w")
            proc = subprocess.Popen(["taskset", "-c", str(self.cpu), *self.command(listener)],
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            self.procs[listener] = proc
            wait_port(self.port(listener), alive=proc)
        print(f"  {self.name}: " + ", ".join(
            f"{listener} {proc.pid} ({run(['taskset', '-pc', str(proc.pid)]).stdout.strip()})"
            for listener, proc in self.procs.items()))

    def stop(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs = {}

    def callgrind_cmd(self, listener, config):
        self.write_conf(listener)
        return self.single_command(listener)

    def callgrind_user(self):
        """The user to run valgrind as, when not the current one."""
        return None


class HAProxy(Peer):
    """One thread; the identity from the verified certificate's subject, UID else CN; the
    answer from `http-request return`. Counts from its stats socket."""

    binary = "haproxy"

    def conf(self, listener):
        pem = self.dir / "server.pem"
        pem.write_text((self.pki / "server.crt").read_text() + (self.pki / "server.key").read_text())
        # The session cache is of the process: 0 turns it off; tickets are off on both.
        cache = 20000 if listener == "cached" else 0
        return f"""global
    nbthread 1
    cpu-map 1/1 {self.cpu}
    maxconn 4096
    tune.ssl.cachesize {cache}
    stats socket {self.dir}/{listener}.sock mode 600 level user

defaults
    mode http
    timeout client 600s
    timeout http-request 30s
    timeout http-keep-alive 600s

frontend bench
    bind 127.0.0.1:{self.port(listener)} ssl crt {pem} ca-file {self.pki}/ca.crt verify required no-tls-tickets alpn http/1.1
    http-request set-var(txn.user) ssl_c_s_dn(UID)
    http-request set-var(txn.user) ssl_c_s_dn(CN) if !{{ var(txn.user) -m found }}
    http-request return status 200 content-type text/plain string "ok" hdr X-User "%[var(txn.user)]"
"""

    def command(self, listener):
        return ["haproxy", "-db", "-f", str(self.dir / f"{listener}.conf")]

    single_command = command

    def version(self):
        return run(["haproxy", "-v"]).stdout.splitlines()[0].split(" - ")[0]

    def stats(self, listener):
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(self.dir / f"{listener}.sock"))
            sock.sendall(b"show stat\n")
            out = b""
            while chunk := sock.recv(65536):
                out += chunk
        lines = out.decode().splitlines()
        head = lines[0].lstrip("# ").split(",")
        for line in lines[1:]:
            row = dict(zip(head, line.split(",")))
            if row.get("pxname") == "bench" and row.get("svname") == "FRONTEND":
                return {k: int(v) for k, v in row.items() if v.isdigit()}
        raise BenchError(f"haproxy {listener}: no frontend in its stats")

    def begin(self, scenario):
        self.listener = scenario.port
        self.before = self.stats(self.listener)

    def take(self, config, scenario, result):
        """The frontend's counters over the run, once they stop moving (the requests in
        flight at the client's deadline)."""
        deadline = time.monotonic() + 120
        after = self.stats(self.listener)
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = self.stats(self.listener)
            if now == after:
                break
            after = now
        d = {k: after.get(k, 0) - self.before.get(k, 0) for k in after}
        statuses = {f"{k[-3:]}": d[k] for k in ("hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx",
                                                "hrsp_5xx", "hrsp_other") if d.get(k)}
        # ssl_sess counts the new sessions (full handshakes), ssl_reused_sess the others.
        summary = {"lines": d.get("req_tot", 0),
                   "connections": d.get("ssl_sess", 0) + d.get("ssl_reused_sess", 0),
                   "resumed": d.get("ssl_reused_sess", 0), "statuses": statuses,
                   "failed_handshakes": d.get("ssl_failed_handshake", 0)}
        problems = check_counts(scenario, result, summary["lines"], summary["connections"],
                                summary["resumed"])
        in_flight = result.get("aborted_at_deadline", 0) + 64
        bad = sum(v for k, v in statuses.items() if k != "2xx")
        if bad > in_flight:
            problems.append(f"server answered {statuses}")
        if summary["failed_handshakes"] > in_flight:
            problems.append(f"{summary['failed_handshakes']} failed handshakes")
        return summary, problems


APACHE_MODULES = "/usr/lib/apache2/modules"


class Apache(Peer):
    """Apache 2.4 with mod_ssl, event MPM: one process with threads; the identity from
    SSLUserName (the subject's UID) into a response header, a static file as the answer.
    Counts from its access log, which it writes unbuffered (a buffered one keeps lines in each
    thread's buffer until it fills)."""

    binary = "apache2"
    # Apache started as root serves as this user. Under valgrind it must run as that user from
    # the start: valgrind's channel to callgrind_control, made by root, is closed to the user
    # Apache would switch to.
    USER = "www-data"

    def conf(self, listener):
        d = self.dir
        docs = d / "docs"
        docs.mkdir(exist_ok=True)
        (docs / "apache").write_text("ok")
        (d / f"run-{listener}").mkdir(exist_ok=True)
        for name in ("server.crt", "server.key"):
            shutil.copyfile(self.pki / name, d / name)
        os.chmod(d / "server.key", 0o600)
        if os.geteuid() == 0:
            for path in [d, *d.rglob("*")]:
                shutil.chown(path, self.USER, self.USER)
        cache = f"shmcb:{d}/run-{listener}/ssl-cache(1048576)" if listener == "cached" else "none"
        user = f"User {self.USER}\nGroup {self.USER}\n" if os.geteuid() == 0 else ""
        modules = "".join(f"LoadModule {m}_module {APACHE_MODULES}/mod_{f}.so\n" for m, f in (
            ("mpm_event", "mpm_event"), ("ssl", "ssl"), ("headers", "headers"),
            ("socache_shmcb", "socache_shmcb"), ("authz_core", "authz_core"),
            ("authn_core", "authn_core")))
        return f"""{modules}ServerName localhost
{user}PidFile {d}/{listener}.pid
DefaultRuntimeDir {d}/run-{listener}
ErrorLog {d}/{listener}-error.log
LogLevel warn
StartServers 1
ServerLimit 1
ThreadsPerChild 64
ThreadLimit 64
MaxRequestWorkers 64
MinSpareThreads 1
MaxSpareThreads 128
MaxConnectionsPerChild 0
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 600
Listen 127.0.0.1:{self.port(listener)} https
SSLSessionCache {cache}
SSLSessionCacheTimeout 600
LogFormat "%U %>s %{{SSL_SESSION_RESUMED}}x %{{SSL_CLIENT_VERIFY}}x %k" bench
DocumentRoot {docs}
<Directory {docs}>
    Require all granted
</Directory>
<VirtualHost 127.0.0.1:{self.port(listener)}>
    SSLEngine on
    SSLCertificateFile {d}/server.crt
    SSLCertificateKeyFile {d}/server.key
    SSLCACertificateFile {self.pki}/ca.crt
    SSLVerifyClient require
    SSLSessionTickets off
    SSLUserName SSL_CLIENT_S_DN_UID
    Header always set X-User "expr=%{{REMOTE_USER}}"
    CustomLog {d}/{listener}-access.log bench
</VirtualHost>
"""

    def command(self, listener):
        return ["apache2", "-f", str(self.dir / f"{listener}.conf"), "-d", str(self.dir),
                "-DFOREGROUND"]

    def single_command(self, listener):
        return ["apache2", "-X", "-f", str(self.dir / f"{listener}.conf"), "-d", str(self.dir)]

    def callgrind_user(self):
        return self.USER if os.geteuid() == 0 else None

    def version(self):
        return run(["apache2", "-v"]).stdout.splitlines()[0].split(": ", 1)[-1]

    def begin(self, scenario):
        self.log = AccessLog(self.dir / f"{scenario.port}-access.log")
        self.log.take()

    def take(self, config, scenario, result):
        lines = [line.split() for line in self.log.take()]
        mine = [f for f in lines if len(f) == 5 and f[0] == f"/{config.name}"]
        problems = []
        if len(mine) != len(lines):
            problems.append(f"{len(lines) - len(mine)} log lines for other paths")
        statuses, verify = {}, {}
        for f in mine:
            statuses[f[1]] = statuses.get(f[1], 0) + 1
            verify[f[3]] = verify.get(f[3], 0) + 1
        # %k: the number of earlier requests on the connection.
        connections = sum(f[4] == "0" for f in mine)
        resumed = sum(f[4] == "0" and f[2] == "Resumed" for f in mine)
        summary = {"lines": len(mine), "connections": connections, "resumed": resumed,
                   "statuses": statuses}
        problems += check_counts(scenario, result, len(mine), connections, resumed)
        in_flight = result.get("aborted_at_deadline", 0) + 64
        if sum(v for k, v in statuses.items() if k != "200") > in_flight:
            problems.append(f"server logged statuses {statuses}")
        if set(verify) - {"SUCCESS"}:
            problems.append(f"certificate verification in the log: {verify}")
        return summary, problems


# ---------------------------------------------------------------------------------------------
# Checks that a configuration does what it claims, before measuring it


def curl(pki: Path, url, http2=False):
    cmd = ["curl", "-sS", "-D", "-", "--max-time", "10", "--cacert", pki / "ca.crt",
           "--cert", pki / "client.crt", "--key", pki / "client.key",
           "--http2" if http2 else "--http1.1", url]
    result = subprocess.run(cmd, text=True, capture_output=True, errors="replace")
    return result.returncode, result.stdout + result.stderr


def check_config(config: Config, pki: Path, ports: Ports, h2=True):
    """None when every listener answers this location as expected, else what went wrong."""
    for port in (ports.cached, ports.full):
        for http2 in (False, True) if h2 else (False,):
            rc, out = curl(pki, f"https://127.0.0.1:{port}/{config.name}", http2)
            head, _, body = out.replace("\r\n", "\n").partition("\n\n")
            status = re.match(r"HTTP/\S+ (\d+)", head)
            if rc or not status or status.group(1) != "200":
                return f"GET /{config.name} (port {port}, h2={http2}): {out.strip()[:300]}"
            if not config.expect:
                continue
            if config.header:
                value = re.search(rf"^{config.header}: (.*)$", head, re.M | re.I)
                if not value or not re.search(config.expect, value.group(1).strip()):
                    return f"/{config.name}: header {config.header} is " \
                           f"{value.group(1) if value else 'missing'}, expected /{config.expect}/"
            elif not re.search(config.expect, body):
                return f"/{config.name}: body {body[:200]!r} does not match /{config.expect}/"
    return None


# ---------------------------------------------------------------------------------------------
# Load generators


class Oha:
    name = "oha"

    def __init__(self, binary, pki: Path, cpu: int):
        self.binary = binary
        self.pki = pki
        self.cpu = cpu

    def version(self):
        return run([self.binary, "--version"]).stdout.strip()

    def run(self, scenario: Scenario, url, duration, out: Path):
        cmd = ["taskset", "-c", str(self.cpu), self.binary, "--worker-threads", "1",
               "-z", f"{duration}s", "--no-tui", "--output-format", "json", "-o", str(out),
               "--cacert", str(self.pki / "ca.crt"), "--cert", str(self.pki / "client.crt"),
               "--key", str(self.pki / "client.key"), *scenario.oha_args, url]
        result = subprocess.run(cmd, text=True, capture_output=True)
        if result.returncode != 0 or not out.exists():
            raise BenchError(f"oha failed ({result.returncode}): {result.stderr.strip()[:500]}")
        data = json.loads(out.read_text())
        summary = data["summary"]
        percentiles = data.get("latencyPercentiles") or {}
        statuses = {str(k): v for k, v in (data.get("statusCodeDistribution") or {}).items()}
        errors = dict(data.get("errorDistribution") or {})
        # oha -z cuts off the requests in flight at the deadline: not an error of the server.
        aborted = sum(v for k, v in errors.items() if "aborted due to deadline" in k)
        errors = {k: v for k, v in errors.items() if "aborted due to deadline" not in k}
        return {
            "rps": summary["requestsPerSec"],
            "p50_ms": (percentiles.get("p50") or 0) * 1000,
            "p99_ms": (percentiles.get("p99") or 0) * 1000,
            "statuses": statuses,
            "errors": errors,
            "aborted_at_deadline": aborted,
        }


class Curl:
    """A slow stand-in for oha (smoke tests only): curl processes looping over the URL."""

    name = "curl"

    def __init__(self, pki: Path, cpu: int):
        self.pki = pki
        self.cpu = cpu

    def version(self):
        return run(["curl", "--version"]).stdout.splitlines()[0]

    def run(self, scenario: Scenario, url, duration, out: Path):
        base = ["taskset", "-c", str(self.cpu), "curl", "-sS",
                "-w", "%{http_code} %{time_total}\n", "--cacert", str(self.pki / "ca.crt"),
                "--cert", str(self.pki / "client.crt"), "--key", str(self.pki / "client.key")]
        if scenario.http2:
            base += ["--http2", "--parallel", "--parallel-max", "8"]
        else:
            base += ["--http1.1"]
        if scenario.new_connections:
            # Every URL on a new connection; curl resumes sessions within one process.
            base += ["-H", "Connection: close"]
        codes, times = [], []
        start = time.monotonic()
        while time.monotonic() - start < duration:
            result = subprocess.run(base + ["-o", "/dev/null", url] * 50, text=True,
                                    capture_output=True)
            for line in result.stdout.splitlines():
                code, seconds = line.split()
                codes.append(code)
                times.append(float(seconds))
        elapsed = time.monotonic() - start
        out.write_text(json.dumps({"codes": codes, "times": times}))
        times.sort()
        statuses = {}
        for code in codes:
            statuses[code] = statuses.get(code, 0) + 1
        pick = (lambda q: times[min(len(times) - 1, int(q * len(times)))] * 1000) if times \
            else (lambda q: 0.0)
        return {"rps": len(codes) / elapsed, "p50_ms": pick(0.50), "p99_ms": pick(0.99),
                "statuses": statuses, "errors": {}, "aborted_at_deadline": 0}


# ---------------------------------------------------------------------------------------------
# The access log: what the server saw during one run


class AccessLog:
    def __init__(self, path: Path):
        self.path = path

    def take(self):
        """The lines logged since the last call. The server may still be answering requests
        the client gave up on at its deadline: wait until the log stops growing (flush=200ms),
        so that they count for this run and do not run into the next one."""
        deadline = time.monotonic() + 120
        size = -1
        while time.monotonic() < deadline:
            time.sleep(0.5)
            current = self.path.stat().st_size if self.path.exists() else 0
            if current == size:
                break
            size = current
        if not self.path.exists():
            return []
        text = self.path.read_text(errors="replace")
        # nginx appends (O_APPEND), so emptying the file is safe between runs.
        os.truncate(self.path, 0)
        return text.splitlines()


def check_log(lines, config: Config, scenario: Scenario, result):
    """What the server saw must match the run: the location, 200s, verified certificates, the
    module's verdict, and the kind of handshake the scenario claims."""
    uri = f"/{config.name}"
    seen = [l.split() for l in lines]
    mine = [f for f in seen if f and f[0] == uri]
    problems = []
    if len(mine) != len(seen):
        problems.append(f"{len(seen) - len(mine)} log lines for other locations")
    statuses, verify, module, reused, conns = {}, {}, {}, 0, set()
    for f in mine:
        if len(f) < 6:
            continue
        statuses[f[1]] = statuses.get(f[1], 0) + 1
        verify[f[3]] = verify.get(f[3], 0) + 1
        module[f[5]] = module.get(f[5], 0) + 1
        reused += f[2] == "r"
        conns.add(f[4])
    served = sum(result["statuses"].values())
    in_flight = result.get("aborted_at_deadline", 0) + 64
    bad_status = {k: v for k, v in statuses.items() if k != "200"}
    # A request cut off by the client at the deadline may be logged 499.
    if sum(v for k, v in bad_status.items() if k != "499") or bad_status.get("499", 0) > in_flight:
        problems.append(f"server logged statuses {statuses}")
    if set(verify) - {"SUCCESS"}:
        problems.append(f"certificate verification in the log: {verify}")
    if config.module and set(module) - {"ok"}:
        problems.append(f"$auth_cert_status in the log: {module}")
    if len(mine) < served:
        problems.append(f"server logged {len(mine)} requests, the client counted {served}")
    summary = {"lines": len(mine), "connections": len(conns), "resumed": reused,
               "statuses": statuses, "auth_cert_status": module if config.module else None}
    if scenario.name == "full_handshake" and reused:
        problems.append(f"{reused} resumed sessions in a full-handshake run")
    # Not every connection can resume: the first ones of a run (one per client connection
    # slot), and those oha starts before earlier ones brought back a session ticket (10-20 %
    # on a busy machine). The table shows the share; a run resuming less than half of the
    # others is no resumption run.
    if scenario.name == "resumed" and reused < 0.5 * (len(conns) - CLIENT_CONNECTIONS):
        problems.append(f"only {reused} of {len(conns)} connections resumed")
    if scenario.new_connections and mine and len(conns) < 0.9 * len(mine):
        problems.append(f"{len(mine)} requests over only {len(conns)} connections")
    return summary, problems


# ---------------------------------------------------------------------------------------------
# The Python login service


class LoginService:
    def __init__(self, work: Path, port: int, cpu: int, workers: int):
        self.work, self.port, self.cpu, self.workers = work, port, cpu, workers
        self.proc = None

    def start(self):
        python = os.environ.get("BENCH_PYTHON")
        if not python:
            raise BenchError("BENCH_PYTHON (a python with gunicorn, cryptography, PyJWT) unset")
        env = dict(os.environ, LOGIN_KEY=str(self.work / "keys" / "es256.pem"), LOGIN_KID="es256")
        self.log = open(self.work / "logs" / "gunicorn.log", "w")
        self.proc = subprocess.Popen(
            ["taskset", "-c", str(self.cpu), python, "-m", "gunicorn", "--chdir", str(HERE),
             "--workers", str(self.workers), "--bind", f"127.0.0.1:{self.port}",
             "--log-level", "warning", "login_service:app"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_port(self.port)

    def versions(self):
        python = os.environ["BENCH_PYTHON"]
        code = ("import gunicorn, cryptography, jwt, platform; print(f'Python "
                "{platform.python_version()}, gunicorn {gunicorn.__version__}, cryptography "
                "{cryptography.__version__}, PyJWT {jwt.__version__}')")
        return run([python, "-c", code]).stdout.strip()

    def stop(self):
        if self.proc:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
            self.proc = None


# ---------------------------------------------------------------------------------------------
# Measurements


@dataclass
class Bench:
    args: argparse.Namespace
    work: Path
    pki: Path
    ports: Ports
    loader: object
    nginx: Nginx
    servers: dict = field(default_factory=dict)
    available: list = field(default_factory=list)
    runs: list = field(default_factory=list)
    failures: list = field(default_factory=list)

    def nginx_configs(self):
        """The configurations of the main nginx."""
        return [c for c in self.available if c.server == "nginx"]

    def one_run(self, config: Config, scenario: Scenario, round_no):
        side = self.servers[config.server]
        port = side.ports.full if scenario.port == "full" else side.ports.cached
        url = f"https://127.0.0.1:{port}/{config.name}"
        side.begin(scenario)
        out = self.work / "runs" / f"{len(self.runs):04}-{config.name}-{scenario.name}.json"
        record = {"config": config.name, "scenario": scenario.name, "round": round_no}
        try:
            record.update(self.loader.run(scenario, url, self.args.duration, out))
        except BenchError as e:
            record.update(rps=0, p50_ms=0, p99_ms=0, statuses={}, errors={"run": str(e)})
        problems = []
        statuses = record["statuses"]
        if not statuses.get("200"):
            problems.append("no 200 response")
        if set(statuses) - {"200"}:
            problems.append(f"non-200 statuses {statuses}")
        if record["errors"]:
            problems.append(f"errors {record['errors']}")
        try:
            record["server_log"], log_problems = side.take(config, scenario, record)
        except (BenchError, OSError) as e:
            record["server_log"], log_problems = {}, [f"server counts: {e}"]
        problems += log_problems
        record["problems"] = problems
        mark = "FAILED: " + "; ".join(problems) if problems else "ok"
        print(f"  round {round_no} {scenario.name:15} {config.name:13} "
              f"{record['rps']:10.0f} req/s  p50 {record['p50_ms']:7.2f} ms  "
              f"p99 {record['p99_ms']:7.2f} ms  {mark}", flush=True)
        if problems:
            warn(f"{config.name}/{scenario.name} round {round_no}: " + "; ".join(problems))
            self.failures.append(f"{config.name}/{scenario.name} round {round_no}: "
                                 + "; ".join(problems))
        self.runs.append(record)
        return record

    def throughput(self, configs, scenarios):
        """Rounds of A/B/A/B runs: the reference (first configuration) runs before and after
        every other configuration, whose ratio is to the mean of the two reference runs around
        it; the order of the others flips every round, so that a drift of the machine hits all
        of them alike."""
        reference, others = configs[0], configs[1:]
        for round_no in range(1, self.args.rounds + 1):
            say(f"round {round_no} of {self.args.rounds}")
            order = others if round_no % 2 else list(reversed(others))
            for scenario in scenarios:
                sequence = [reference]
                for config in order:
                    if config.scenarios is None or scenario.name in config.scenarios:
                        sequence += [config, reference]
                records = [self.one_run(config, scenario, round_no) for config in sequence]
                for i, record in enumerate(records):
                    if record["config"] == reference.name:
                        continue
                    around = [r["rps"] for r in (records[i - 1], records[i + 1])
                              if not r["problems"] and r["rps"]]
                    if around:
                        record["reference"] = reference.name
                        record["reference_rps"] = statistics.mean(around)


def measure_memory(bench: Bench, measurements, cpu):
    """Worker RSS before and after opening N idle keep-alive client-certificate connections
    (one request each), on a fresh nginx for every measurement. `measurements`: (kind,
    configuration) pairs, in reverse order every other round."""
    results = []
    for round_no in range(1, bench.args.memory_rounds + 1):
        order = measurements if round_no % 2 else list(reversed(measurements))
        for kind, config in order:
            try:
                results.append(memory_one(bench, config, kind, cpu, round_no))
            except (BenchError, subprocess.CalledProcessError, OSError) as e:
                what = f"memory {config.name} ({report.MEMORY_KINDS[kind]}) round {round_no}"
                warn(f"{what} FAILED: {e}")
                bench.failures.append(f"{what}: {e}")
    return results


def memory_one(bench: Bench, config: Config, kind, cpu, round_no):
    n = bench.args.connections
    if kind == SAME_CERTIFICATE:
        mode, cert = "idle", bench.pki / "client.crt"
    else:
        mode, cert = "idle-many", bench.pki / "many"
    # This configuration's location alone, as under callgrind: a configuration that reads a
    # large file at start-up (the CRL of identity_crl) leaves freed heap behind, which the
    # connections would then fill without the RSS moving.
    worker = bench.nginx.start(nginx_conf([config], bench.ports, cpu))
    client = None
    try:
        for _ in range(3):
            curl(bench.pki, f"https://127.0.0.1:{bench.ports.full}/{config.name}")
        time.sleep(0.3)
        before = rss_bytes(worker)
        client = subprocess.Popen(
            [sys.executable, str(HERE / "client.py"), mode, str(n), "127.0.0.1",
             str(bench.ports.full), f"/{config.name}", str(bench.pki / "ca.crt"), str(cert),
             str(bench.pki / "client.key")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            preexec_fn=raise_nofile)
        if client.stdout.readline().strip() != "ready":
            raise BenchError(f"idle client for /{config.name} failed")
        time.sleep(0.5)
        after = rss_bytes(worker)
        client.stdin.close()
        client.wait(timeout=60)
    finally:
        if client and client.poll() is None:
            client.kill()
        bench.nginx.stop()
    per_conn = (after - before) / n
    print(f"  round {round_no} {config.name:13} {report.MEMORY_KINDS[kind]:35} "
          f"RSS {before / 1024:8.0f} KiB -> {after / 1024:8.0f} KiB: "
          f"{per_conn:7.0f} bytes per connection", flush=True)
    return {"config": config.name, "kind": kind, "round": round_no, "connections": n,
            "rss_before": before, "rss_after": after, "bytes_per_connection": per_conn}


def raise_nofile():
    import resource
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def measure_callgrind(bench: Bench, configs, cpu):
    """Instructions under callgrind, nginx running as one process: per request on one
    keep-alive connection, per connection (full handshake and one request) and per resumed
    connection (abbreviated handshake from the session cache and one request). A client
    warms up, the counters are zeroed, N requests or connections are made, the counters are
    dumped: start-up and shutdown stay outside the window."""
    results = []
    for kind, mode, listener, n in (
            ("request", "serial", "full", bench.args.callgrind_requests),
            ("connection", "connections", "full", bench.args.callgrind_connections),
            ("resumed connection", "resumed", "cached", bench.args.callgrind_connections)):
        for config in configs:
            try:
                results.append(callgrind_one(bench, config, cpu, kind, mode, listener, n))
            except (BenchError, subprocess.CalledProcessError) as e:
                warn(f"callgrind {config.name} per {kind} FAILED: {e}")
                bench.failures.append(f"callgrind {config.name} per {kind}: {e}")
    return results


def callgrind_one(bench: Bench, config: Config, cpu, kind, mode, listener, n):
    """Instructions per `kind` of one configuration. Where callgrind_control cannot reach the
    server (Apache: see Apache), the count of a session with 2n requests or connections minus
    that of one with n, each session counted from start to exit: what is not per request
    (start-up, warm-up, shutdown) cancels."""
    side = bench.servers[config.server]
    user = side.callgrind_user()
    stem = f"{config.name}-{kind.replace(' ', '-')}"
    if not user:
        total, profile = callgrind_session(bench, config, side, mode, listener, n, stem, None)
    else:
        first, _ = callgrind_session(bench, config, side, mode, listener, n, f"{stem}-n", user)
        second, profile = callgrind_session(bench, config, side, mode, listener, 2 * n,
                                            f"{stem}-2n", user)
        total = second - first
    print(f"  {config.name:13} {total / n:10.0f} instructions per {kind} "
          f"({n} {kind}s)", flush=True)
    return {"config": config.name, "kind": kind, "count": n, "instructions": total,
            "instructions_per": total / n, "profile": str(profile.relative_to(ROOT)),
            "method": "difference" if user else "window"}


def callgrind_session(bench: Bench, config: Config, side, mode, listener, n, stem, user):
    """One server under callgrind, a client making n requests or connections. Without `user`:
    counters zeroed after the client's warm-up and dumped after its n, with callgrind_control;
    with `user`: the server runs as that user without a channel for callgrind_control, and is
    counted whole, until it exits. Returns the count and the profile."""
    out = bench.work / "callgrind" / f"{stem}.out"
    out.parent.mkdir(exist_ok=True)
    for old in out.parent.glob(f"{out.name}*"):
        old.unlink()
    port = getattr(side.ports, listener)
    command = side.callgrind_cmd(listener, config)
    prefix, options = [], []
    if user:
        # valgrind writes its output file as that user.
        shutil.chown(out.parent, user)
        prefix = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups"]
        options = ["--vgdb=no"]
    proc = subprocess.Popen(
        [*prefix, "valgrind", "--tool=callgrind", *options, f"--callgrind-out-file={out}",
         *command],
        stdout=subprocess.DEVNULL,
        stderr=open(bench.work / "logs" / f"valgrind-{out.stem}.log", "w"))
    client = None
    try:
        wait_port(port, timeout=300, alive=proc)
        client = subprocess.Popen(
            [sys.executable, str(HERE / "client.py"), mode, str(n), "127.0.0.1",
             str(port), f"/{config.name}", str(bench.pki / "ca.crt"),
             str(bench.pki / "client.crt"), str(bench.pki / "client.key")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if client.stdout.readline().strip() != "warm":
            raise BenchError(f"callgrind client for /{config.name} failed")
        if not user:
            run(["callgrind_control", "--zero", str(proc.pid)])
        client.stdin.write("go\n")
        client.stdin.flush()
        if client.stdout.readline().strip() != "done":
            raise BenchError(f"callgrind client for /{config.name} failed")
        if not user:
            run(["callgrind_control", "--dump", str(proc.pid)])
        client.stdin.close()
        client.wait(timeout=60)
    finally:
        if client and client.poll() is None:
            client.kill()
        # With callgrind_control, the counters are dumped already: stop at once, and for good
        # before the next start, which needs the port. Without, callgrind writes them at exit.
        proc.terminate()
        try:
            proc.wait(timeout=60 if user else 15)
        except subprocess.TimeoutExpired:
            warn(f"{config.server} under valgrind ignored SIGTERM: killing it")
            proc.kill()
            proc.wait()
    dumps = [out] if user else sorted(out.parent.glob(f"{out.name}.*"))
    if not dumps or not dumps[0].exists():
        raise BenchError(f"callgrind wrote no dump for /{config.name}")
    found = re.search(r"^(?:summary|totals): (\d+)", dumps[0].read_text(), re.M)
    if not found:
        raise BenchError(f"callgrind's dump for /{config.name} has no total")
    return int(found.group(1)), dumps[0]


# ---------------------------------------------------------------------------------------------


def openssl_versions(built_with, runtime):
    return built_with if built_with == runtime else f"built with {built_with}, runs {runtime}"


def machine_info(loader, nginx_bin, login):
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    nginx_v = subprocess.run([nginx_bin, "-V"], text=True, capture_output=True).stderr
    version = re.search(r"nginx version: (\S+)", nginx_v)
    built_with = re.search(r"built with (OpenSSL [^\n]*)", nginx_v)
    openssl_run = subprocess.run(["openssl", "version"], text=True, capture_output=True)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "os": platform.freedesktop_os_release().get("PRETTY_NAME", "") if hasattr(
            platform, "freedesktop_os_release") else "",
        "nginx": version.group(1) if version else "unknown",
        "openssl": openssl_versions(built_with.group(1) if built_with else "",
                                    openssl_run.stdout.split(" (Library")[0].strip()),
        "load_generator": loader.version(),
        "login_service": login,
        "loadavg_start": os.getloadavg(),
    }


def summarize(data):
    """Medians over rounds and ratios against the baseline of the same round."""
    runs = [r for r in data["runs"]]
    by = {}
    for r in runs:
        by.setdefault((r["config"], r["scenario"]), []).append(r)
    rows = []
    for (config, scenario), group in by.items():
        ok = [r for r in group if not r["problems"]]
        row = {"config": config, "scenario": scenario, "rounds": len(group),
               "failed_rounds": len(group) - len(ok)}
        if ok:
            row["rps"] = statistics.median(r["rps"] for r in ok)
            row["p50_ms"] = statistics.median(r["p50_ms"] for r in ok)
            row["p99_ms"] = statistics.median(r["p99_ms"] for r in ok)
            if scenario == "resumed":
                row["resumed_share"] = statistics.median(
                    r["server_log"]["resumed"] / max(1, r["server_log"]["connections"])
                    for r in ok)
        reference = "login_python" if config.startswith("login_") else "baseline"
        if config != reference and ok:
            ratios = [r["rps"] / r["reference_rps"] for r in ok if r.get("reference_rps")]
            if ratios:
                row["ratio"] = statistics.median(ratios)
                row["ratio_range"] = [min(ratios), max(ratios)]
                row["ratio_to"] = reference
            target = LOGIN_TARGETS.get(scenario) if config == "login_module" else \
                TARGETS.get(scenario, {}).get(config)
            if target is not None:
                row["target"] = target
                row["met"] = row.get("ratio", 0) >= target
                if config == "login_module":
                    ref = [b for b in by.get((reference, scenario), []) if not b["problems"]]
                    if ref:
                        ref_p99 = statistics.median(b["p99_ms"] for b in ref)
                        row["p99_no_worse"] = row["p99_ms"] <= ref_p99
                        row["met"] = row["met"] and row["p99_no_worse"]
        if config in PEERS and ok:
            # The module's identity configuration against this peer, round by round.
            mine = {r["round"]: r["rps"] for r in by.get((PEER_REFERENCE, scenario), [])
                    if not r["problems"] and r["rps"]}
            ratios = [mine[r["round"]] / r["rps"] for r in ok if r["round"] in mine and r["rps"]]
            if ratios:
                row["reference_to_peer"] = statistics.median(ratios)
                row["reference_to_peer_range"] = [min(ratios), max(ratios)]
        rows.append(row)
    data["summary"] = rows
    data["peer_reference"] = PEER_REFERENCE
    memory = {}
    for m in data.get("memory") or []:
        # Results from before the certificate per connection have no kind.
        kind = m.get("kind", SAME_CERTIFICATE)
        memory.setdefault((kind, m["config"]), []).append(m["bytes_per_connection"])
    mem_rows = []
    kinds = list(report.MEMORY_KINDS)
    for (kind, config), values in sorted(memory.items(), key=lambda m: kinds.index(m[0][0])):
        row = {"config": config, "kind": kind, "bytes_per_connection": statistics.median(values)}
        base = memory.get((kind, "baseline"))
        if base and config != "baseline":
            row["added_bytes_per_connection"] = row["bytes_per_connection"] - \
                statistics.median(base)
            row["target"] = MEMORY_TARGET
            row["met"] = row["added_bytes_per_connection"] <= MEMORY_TARGET
        mem_rows.append(row)
    data["memory_summary"] = mem_rows
    return data


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke test: short runs, 1 round")
    parser.add_argument("--duration", type=float, help="seconds per run (default 8, quick 1)")
    parser.add_argument("--rounds", type=int, help="rounds (default 3, quick 1)")
    parser.add_argument("--client", choices=["oha", "curl"], default="oha",
                        help="load generator; curl is a slow stand-in for smoke tests")
    parser.add_argument("--connections", type=int,
                        help="idle connections for the memory test (default 1000, quick 100)")
    parser.add_argument("--memory-rounds", type=int, help="default 2, quick 1")
    parser.add_argument("--callgrind-requests", type=int, help="default 2000, quick 200")
    parser.add_argument("--callgrind-connections", type=int, help="default 200, quick 20")
    parser.add_argument("--skip", action="append", default=[],
                        choices=["throughput", "login", "memory", "callgrind"])
    parser.add_argument("--only", action="append", default=[],
                        help="measure only these configurations (baseline always runs)")
    parser.add_argument("--docs", action="store_true",
                        help="write docs/benchmarks.md and its chart (default: full runs)")
    parser.add_argument("--no-docs", action="store_true")
    parser.add_argument("--note", default="", help="a note for the results page")
    parser.add_argument("--report", metavar="JSON",
                        help="only print the table and write the docs from a previous run")
    args = parser.parse_args()

    if args.report:
        data = summarize(json.loads(Path(args.report).read_text()))
        report.print_table(data)
        report.write_docs(data, ROOT / "docs", Path(args.report).name)
        return 0

    quick = args.quick
    args.duration = args.duration or (1 if quick else 8)
    args.rounds = args.rounds or (1 if quick else 3)
    args.connections = args.connections or (100 if quick else 1000)
    args.memory_rounds = args.memory_rounds or (1 if quick else 2)
    args.callgrind_requests = args.callgrind_requests or (200 if quick else 2000)
    args.callgrind_connections = args.callgrind_connections or (20 if quick else 200)
    write_docs = (args.docs or not quick) and not args.no_docs

    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        warn("only one CPU: nginx and the load generator share it; ratios only")
    server_cpu = int(os.environ.get("BENCH_SERVER_CPU", cpus[0]))
    client_cpu = int(os.environ.get("BENCH_CLIENT_CPU", cpus[min(1, len(cpus) - 1)]))
    work = ROOT / "target" / "bench" / "work"
    if work.exists():
        shutil.rmtree(work)
    for d in ("logs", "runs"):
        (work / d).mkdir(parents=True)
    pki = work / "pki"
    make_pki(pki)
    ports = Ports(cached=free_port(), full=free_port(), login=free_port())
    nginx = Nginx(work)
    if args.client == "oha":
        loader = Oha(os.environ["OHA"], pki, client_cpu)
    else:
        loader = Curl(pki, client_cpu)
    bench = Bench(args, work, pki, ports, loader, nginx)
    # The second nginx (configurations with http-level directives), on its own prefix.
    zone_prefix = work / "zone"
    (zone_prefix / "logs").mkdir(parents=True)
    for d in ("pki", "keys"):
        (zone_prefix / d).symlink_to(work / d)
    zone_nginx = Nginx(zone_prefix)
    bench.servers = {
        "nginx": NginxSide("nginx", nginx, ports, server_cpu),
        "nginx_zone": NginxSide("nginx_zone", zone_nginx,
                                Ports(cached=free_port(), full=free_port(), login=0), server_cpu),
        "haproxy": HAProxy("haproxy", work, pki, server_cpu),
        "apache": Apache("apache", work, pki, server_cpu),
    }
    login = LoginService(work, ports.login, server_cpu, workers=int(
        os.environ.get("BENCH_LOGIN_WORKERS", "3")))
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    data = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "mode": "quick" if quick else "full",
        "note": args.note,
        "settings": {"duration_s": args.duration, "rounds": args.rounds,
                     "client": loader.name, "server_cpu": server_cpu, "client_cpu": client_cpu,
                     "login_workers": login.workers, "idle_connections": args.connections},
        "scenarios": {s.name: s.title for s in SCENARIOS},
        "configs": {},
        "runs": [],
    }
    wanted = lambda c: not args.only or c.name in args.only or c.name == "baseline"

    say("checking every configuration with nginx -t (the peers: that they are installed)")
    for config in CONFIGS + PEER_CONFIGS + LOGIN_CONFIGS:
        if config in LOGIN_CONFIGS and "login" in args.skip or not wanted(config) \
                and config not in LOGIN_CONFIGS:
            continue
        if config in PEER_CONFIGS:
            error = bench.servers[config.server].available()
        else:
            error = nginx.test(nginx_conf([config], ports, server_cpu), config.name)
        data["configs"][config.name] = {"title": config.title,
                                        "directives": config.directives.format(login_port="…"),
                                        "http": config.http, "server": config.server,
                                        "peer": config in PEER_CONFIGS,
                                        "available": error is None, "error": error}
        if error:
            warn(f"{config.name}: NOT AVAILABLE in this build: {error}")
        else:
            bench.available.append(config)
            print(f"  {config.name:13} ok")
    if "baseline" not in [c.name for c in bench.available]:
        raise BenchError("the baseline configuration does not load")

    data["machine"] = machine_info(loader, nginx.bin, login.versions()
                                   if os.environ.get("BENCH_PYTHON") else "")
    data["machine"]["peers"] = {c.name: bench.servers[c.server].version()
                                for c in bench.available if c in PEER_CONFIGS}
    results_file = ROOT / "target" / "bench" / f"{stamp}{'-quick' if quick else ''}.json"
    try:
        login_needed = "login" not in args.skip and any(
            c.proxy for c in bench.available)
        if login_needed:
            login.start()
        for side in bench.servers.values():
            side.configs = [c for c in bench.available if c.server == side.name]
        for name, side in bench.servers.items():
            if not side.configs:
                continue
            try:
                side.start()
            except (BenchError, subprocess.CalledProcessError, OSError) as e:
                if name == "nginx":
                    raise
                side.stop()
                warn(f"{name} DOES NOT START: {e}")
                for config in side.configs:
                    data["configs"][config.name].update(available=False, error=f"{e}")
                    bench.failures.append(f"{config.name}: {name} does not start: {e}")
                    bench.available.remove(config)
        say("checking that every configuration answers as it should (curl, HTTP/1.1 and 2)")
        for config in list(bench.available):
            side = bench.servers[config.server]
            problem = check_config(config, pki, side.ports, side.http2)
            if problem:
                warn(f"{config.name}: FAILS ITS CHECK, not measured: {problem}")
                data["configs"][config.name].update(available=False, error=problem)
                bench.failures.append(f"{config.name}: {problem}")
                bench.available.remove(config)
        bench.servers["nginx"].log.take()
        plain = [c for c in bench.available if c in CONFIGS + PEER_CONFIGS]
        if "throughput" not in args.skip:
            say(f"throughput: {len(plain)} configurations x {len(SCENARIOS)} scenarios x "
                f"{args.rounds} rounds x {args.duration:g} s ({loader.name})")
            bench.throughput(plain, SCENARIOS)
        logins = [c for c in bench.available if c in LOGIN_CONFIGS]
        if "login" not in args.skip and logins:
            say("login endpoint: auth_cert_login against the Python service")
            if len(logins) < 2:
                warn("login comparison INCOMPLETE: login_module is not available")
            bench.throughput(logins, [s for s in SCENARIOS if s.name in LOGIN_SCENARIOS])
        for side in bench.servers.values():
            side.stop()
        login.stop()
        data["runs"] = bench.runs
        if "memory" not in args.skip:
            say(f"memory: worker RSS with {args.connections} idle keep-alive connections, "
                "with one client certificate for all and with one each")
            make_clients(pki, args.connections)
            measurements = [(kind, c) for kind, names in MEMORY_CONFIGS.items()
                            for c in plain if c.name in names]
            data["memory"] = measure_memory(bench, measurements, server_cpu)
        if "callgrind" not in args.skip:
            cg_configs = plain
            say("callgrind: instructions per keep-alive request and per new connection")
            data["callgrind"] = measure_callgrind(bench, cg_configs, server_cpu)
    finally:
        for side in bench.servers.values():
            side.stop()
        login.stop()
        data["runs"] = bench.runs
        data["failures"] = bench.failures
        data["machine"]["loadavg_end"] = os.getloadavg()
        summarize(data)
        results_file.write_text(json.dumps(data, indent=1))
        say(f"results: {results_file.relative_to(ROOT)}")

    report.print_table(data)
    if write_docs:
        report.write_docs(data, ROOT / "docs", results_file.name)
        say("wrote docs/benchmarks.md and docs/benchmarks-ratios.svg")
    unavailable = [n for n, c in data["configs"].items() if not c["available"]]
    if unavailable:
        warn("NOT AVAILABLE in this build (not measured): " + ", ".join(unavailable))
    if bench.failures:
        warn(f"{len(bench.failures)} FAILED checks (see above and the JSON 'failures'):")
        for f in bench.failures:
            warn("  " + f)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        warn(str(e))
        sys.exit(1)
