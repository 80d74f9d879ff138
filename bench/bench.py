"""The benchmark behind scripts/bench: the module against plain nginx and a Python login service.

Run through scripts/bench, which builds what this needs and passes it in the environment:
NGINX_BIN, MODULE_SO, OHA (unless --client curl), BENCH_PYTHON (venv python with gunicorn,
cryptography and PyJWT). Everything runs on 127.0.0.1; the nginx worker (and the Python
service) run on BENCH_SERVER_CPU, the load generator on BENCH_CLIENT_CPU.
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

KEEPALIVE_TARGETS = {"identity": 0.98, "identity_age": 0.98, "policy": 0.97,
                     "token_es256": 0.97, "token_eddsa": 0.97, "token_rs256": 0.97}
HANDSHAKE_TARGETS = {"identity": 0.97, "identity_age": 0.97, "policy": 0.97}
TARGETS = {
    "h1_keepalive": KEEPALIVE_TARGETS,
    "h2_keepalive": KEEPALIVE_TARGETS,
    "full_handshake": HANDSHAKE_TARGETS,
    "resumed": HANDSHAKE_TARGETS,
}
LOGIN_TARGET = 20.0
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
    for port, cache in ((ports.cached, "shared:bench:10m"), (ports.full, "off")):
        locations = "\n".join(location(c, ports) for c in configs)
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
{''.join(servers)}
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
# Checks that a configuration does what it claims, before measuring it


def curl(pki: Path, url, http2=False):
    cmd = ["curl", "-sS", "-D", "-", "--max-time", "10", "--cacert", pki / "ca.crt",
           "--cert", pki / "client.crt", "--key", pki / "client.key",
           "--http2" if http2 else "--http1.1", url]
    result = subprocess.run(cmd, text=True, capture_output=True, errors="replace")
    return result.returncode, result.stdout + result.stderr


def check_config(config: Config, pki: Path, ports: Ports):
    """None when every listener answers this location as expected, else what went wrong."""
    for port in (ports.cached, ports.full):
        for http2 in (False, True):
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
    available: list = field(default_factory=list)
    runs: list = field(default_factory=list)
    failures: list = field(default_factory=list)

    def one_run(self, config: Config, scenario: Scenario, round_no, log: AccessLog):
        port = self.ports.full if scenario.port == "full" else self.ports.cached
        url = f"https://127.0.0.1:{port}/{config.name}"
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
        record["server_log"], log_problems = check_log(log.take(), config, scenario, record)
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

    def throughput(self, configs, scenarios, log):
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
                    sequence += [config, reference]
                records = [self.one_run(config, scenario, round_no, log) for config in sequence]
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
    worker = bench.nginx.start(nginx_conf(bench.available, bench.ports, cpu))
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
    for kind, mode, port, n in (
            ("request", "serial", bench.ports.full, bench.args.callgrind_requests),
            ("connection", "connections", bench.ports.full, bench.args.callgrind_connections),
            ("resumed connection", "resumed", bench.ports.cached,
             bench.args.callgrind_connections)):
        for config in configs:
            try:
                results.append(callgrind_one(bench, config, cpu, kind, mode, port, n))
            except (BenchError, subprocess.CalledProcessError) as e:
                warn(f"callgrind {config.name} per {kind} FAILED: {e}")
                bench.failures.append(f"callgrind {config.name} per {kind}: {e}")
    return results


def callgrind_one(bench: Bench, config: Config, cpu, kind, mode, port, n):
    out = bench.work / "callgrind" / f"{config.name}-{kind.replace(' ', '-')}.out"
    out.parent.mkdir(exist_ok=True)
    for old in out.parent.glob(f"{out.name}*"):
        old.unlink()
    conf = nginx_conf(bench.available, bench.ports, cpu, single_process=True)
    (bench.work / "callgrind.conf").write_text(conf)
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
         *bench.nginx.cmd("callgrind.conf")],
        stdout=subprocess.DEVNULL,
        stderr=open(bench.work / "logs" / f"valgrind-{out.stem}.log", "w"))
    client = None
    try:
        wait_port(bench.ports.full, timeout=300, alive=proc)
        client = subprocess.Popen(
            [sys.executable, str(HERE / "client.py"), mode, str(n), "127.0.0.1",
             str(port), f"/{config.name}", str(bench.pki / "ca.crt"),
             str(bench.pki / "client.crt"), str(bench.pki / "client.key")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if client.stdout.readline().strip() != "warm":
            raise BenchError(f"callgrind client for /{config.name} failed")
        run(["callgrind_control", "--zero", str(proc.pid)])
        client.stdin.write("go\n")
        client.stdin.flush()
        if client.stdout.readline().strip() != "done":
            raise BenchError(f"callgrind client for /{config.name} failed")
        run(["callgrind_control", "--dump", str(proc.pid)])
        client.stdin.close()
        client.wait(timeout=60)
    finally:
        if client and client.poll() is None:
            client.kill()
        # The counters are dumped already: stop at once, and for good before the next start,
        # which needs the port.
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            warn("nginx under valgrind ignored SIGTERM for 15 s: killing it")
            proc.kill()
            proc.wait()
    dumps = sorted(out.parent.glob(f"{out.name}.*"))
    if not dumps:
        raise BenchError(f"callgrind wrote no dump for /{config.name}")
    total = int(re.search(r"^(?:summary|totals): (\d+)", dumps[0].read_text(), re.M).group(1))
    print(f"  {config.name:13} {total / n:10.0f} instructions per {kind} "
          f"({n} {kind}s)", flush=True)
    return {"config": config.name, "kind": kind, "count": n, "instructions": total,
            "instructions_per": total / n,
            "profile": str(dumps[0].relative_to(ROOT))}


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
            target = LOGIN_TARGET if config == "login_module" else \
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
        rows.append(row)
    data["summary"] = rows
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

    say("checking every configuration with nginx -t")
    for config in CONFIGS + LOGIN_CONFIGS:
        if config in LOGIN_CONFIGS and "login" in args.skip or not wanted(config) \
                and config not in LOGIN_CONFIGS:
            continue
        error = nginx.test(nginx_conf([config], ports, server_cpu), config.name)
        data["configs"][config.name] = {"title": config.title,
                                        "directives": config.directives.format(login_port="…"),
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
    results_file = ROOT / "target" / "bench" / f"{stamp}{'-quick' if quick else ''}.json"
    try:
        login_needed = "login" not in args.skip and any(
            c.proxy for c in bench.available)
        if login_needed:
            login.start()
        worker = nginx.start(nginx_conf(bench.available, ports, server_cpu))
        affinity = run(["taskset", "-pc", str(worker)]).stdout.strip()
        print(f"  nginx worker {worker}: {affinity}")
        say("checking that every configuration answers as it should (curl, HTTP/1.1 and 2)")
        for config in list(bench.available):
            problem = check_config(config, pki, ports)
            if problem:
                warn(f"{config.name}: FAILS ITS CHECK, not measured: {problem}")
                data["configs"][config.name].update(available=False, error=problem)
                bench.failures.append(f"{config.name}: {problem}")
                bench.available.remove(config)
        log = AccessLog(work / "logs" / "access.log")
        log.take()
        plain = [c for c in bench.available if c in CONFIGS]
        if "throughput" not in args.skip:
            say(f"throughput: {len(plain)} configurations x {len(SCENARIOS)} scenarios x "
                f"{args.rounds} rounds x {args.duration:g} s ({loader.name})")
            bench.throughput(plain, SCENARIOS, log)
        logins = [c for c in bench.available if c in LOGIN_CONFIGS]
        if "login" not in args.skip and logins:
            say("login endpoint: auth_cert_login against the Python service")
            if len(logins) < 2:
                warn("login comparison INCOMPLETE: login_module is not available")
            bench.throughput(logins, [s for s in SCENARIOS if s.name in LOGIN_SCENARIOS], log)
        nginx.stop()
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
        nginx.stop()
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
