"""Part 3: reload under load. Two nginx instances, one with the module and one plain (same
TLS setup, no module), get the same load and the same configuration changes at the same
moments: `nginx -s reload` that change auth_cert_max_age, the policy, the token key and the
CA files; then binary upgrades (USR2, WINCH, QUIT); then reloads that remove the module
(configuration without load_module) and add it again. Every answered request must have the
status its configuration generation (X-Gen header) expects, no worker may exit on a signal,
and the module instance may not show more transport errors than the plain one."""

import os
import signal
import sys
import time
import urllib.parse

from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier

from common import (QUICK, Nginx, Part, ec_key, free_port, globals_, issue, name,
                    pem_key, workdir)
from loadgen import Load

OID_A = "1.3.6.1.4.1.99999.7.1"
OID_B = "1.3.6.1.4.1.99999.7.2"
PATHS = ["/app", "/policy", "/token", "/app"]
# auth_cert_max_age of /stale, the location of the `reauth` clients: short, since a reload
# ends every keep-alive connection (one every 2 to 3 s here) and a connection must outlive it
STALE_AGE = 1


def config(gen, port, fwd_port, module):
    """The configuration of generation `gen`; `module` False: no load_module, no auth_cert."""
    ca = f"ca-{gen % 2}.pem"
    if module:
        age = f"auth_cert_max_age {10 + gen % 7}m;"
        policy = OID_A if gen % 2 == 0 else OID_B
        app = "auth_cert on;"
        pol = f"auth_cert on; auth_cert_policy {policy};"
        tok = f"auth_cert on; auth_cert_token_key token-{gen % 2}.key kid=k{gen % 2};"
        check = "$auth_cert_token"
        fwd = f"auth_cert on; auth_cert_header X-Client-Cert from=127.0.0.1 ca={ca};"
        stale = f"auth_cert on; auth_cert_max_age {STALE_AGE}s; auth_cert_stale reauth;"
    else:
        age = app = pol = tok = fwd = stale = ""
        check = "none"
    return f"""{globals_(module)}
pid nginx.pid;
worker_processes 2;
error_log error.log notice;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    default_type text/plain;
    {age}
    server {{
        listen 127.0.0.1:{port} ssl;
        http2 on;
        server_name localhost;
        ssl_certificate server.crt;
        ssl_certificate_key server.key;
        ssl_client_certificate {ca};
        ssl_verify_client optional;
        ssl_session_cache shared:SSL:1m;
        # a static file: `return` would answer in the rewrite phase, before access checks
        location = /app {{ {app} add_header X-Gen {gen} always; alias ok.txt; }}
        location = /policy {{ {pol} add_header X-Gen {gen} always; alias ok.txt; }}
        location = /token {{ {tok} add_header X-Gen {gen} always;
                            add_header X-Check {check} always; alias ok.txt; }}
        location = /stale {{ {stale} add_header X-Gen {gen} always; alias ok.txt; }}
    }}
    server {{
        listen 127.0.0.1:{fwd_port};
        location ~ ^/ {{ {fwd} add_header X-Gen {gen} always; add_header X-Check none always;
                     alias ok.txt; }}
    }}
}}
"""


def expected(path, gen, module, kind="", verdict=""):
    """(statuses, X-Check) an answer of generation `gen` must have."""
    if kind == "reauth":
        # the loadgen's verdict from the connection's age (see loadgen.reauth_verdict)
        if not module:
            return {200}, ""
        return {"fresh": {200}, "stale": {307}, "edge": {200, 307}}.get(verdict, set()), ""
    if kind == "forwarded":
        return {200}, "none"
    if path == "/token":
        return {200}, (f"k{gen % 2}" if module else "none")
    if path == "/policy" and module:
        return {200 if gen % 2 == 0 else 403}, ""
    return {200}, ""


class Instance:
    def __init__(self, tag, module):
        self.module = module
        self.n = Nginx(workdir(tag))
        self.port, self.fwd_port = free_port(), free_port()
        self.gen_module = {}        # generation -> module loaded in that configuration

    def write(self, gen, module_on):
        self.gen_module[gen] = self.module and module_on
        self.n.write("nginx.conf", config(gen, self.port, self.fwd_port,
                                          self.module and module_on))


def pki(dirs):
    ca = issue(name("Load CA"), ca=True)
    server = issue(name("localhost"), issuer=ca)
    pol = x509.CertificatePolicies([x509.PolicyInformation(ObjectIdentifier(OID_A), None)])
    client = issue(name("loaduser"), issuer=ca, extensions=[(pol, False)])
    keys = [ec_key(), ec_key()]
    for d in dirs:
        d.write("server.crt", server.pem)
        d.write("server.key", pem_key(server.key))
        d.write("client.crt", client.pem)
        d.write("client.key", pem_key(client.key))
        d.write("ok.txt", "ok\n")
        for i in range(2):
            d.write(f"token-{i}.key", pem_key(keys[i]))
    return ca, client


def write_cas(dirs, ca, gen):
    """The CA file of this generation: the client CA and a new unrelated CA (the file changes
    at every reload)."""
    extra = issue(name(f"Unrelated CA {gen}"), ca=True)
    for d in dirs:
        d.write(f"ca-{gen % 2}.pem", ca.pem + extra.pem)


def run_phase(part, label, mod, plain, ca, seconds, events, action, redirects=True):
    """Load on both instances for `seconds` while `events` actions happen at even intervals;
    then the checks. `redirects`: the module instance must have sent re-authentication
    redirects (not required while the module is removed every other generation)."""
    loads = []
    for inst in (mod, plain):
        d = inst.n
        fwd_value = urllib.parse.quote(open(d.path("client.crt")).read(), safe="").encode()
        load = Load(inst.port, d.path("client.crt"), d.path("client.key"), PATHS,
                    fwd_port=inst.fwd_port, fwd_value=fwd_value,
                    kinds=("keepalive", "newconn", "resume", "h2", "reauth"),
                    reauth_path="/stale", reauth_age=STALE_AGE, pace={"reauth": 0.01})
        loads.append(load)
        load.start()
    interval = seconds / (events + 1)
    start = time.monotonic()
    for i in range(events):
        time.sleep(max(0, start + (i + 1) * interval - time.monotonic()))
        action(i)
    time.sleep(max(0, start + seconds - time.monotonic()))
    for load in loads:
        load.stop()
    time.sleep(1)

    results = []
    for inst, load in zip((mod, plain), loads):
        wrong = 0
        examples = []
        for (kind, path, status, gen, check), count in load.answers.items():
            g = int(gen) if gen.isdigit() else None
            if g is None:
                wrong += count
                examples.append(f"{kind} {path} {status} without X-Gen")
                continue
            want_status, want_check = expected(path, g, inst.gen_module.get(g, inst.module),
                                               kind, check)
            if status not in want_status or (want_check and check != want_check):
                wrong += count
                what = f"verdict {check}" if kind == "reauth" else repr(check)
                examples.append(f"{kind} {path} gen {g}: {status} {what}, expected "
                                f"{sorted(want_status)} {want_check!r} (x{count})")
        total = sum(load.requests.values())
        errors = sum(load.errors.values())
        tag = "module" if inst.module else "plain"
        part.check(total > 0, f"{label} {tag}: no request answered")
        part.check(wrong == 0, f"{label} {tag}: {wrong} requests answered wrongly: "
                               f"{examples[:4]}")
        part.check(load.errors["h2-not-h2"] == 0, f"{label} {tag}: curl did not use HTTP/2")
        log = inst.n.log()
        signals = [l for l in log.splitlines() if "exited on signal" in l]
        part.check(not signals, f"{label} {tag}: {len(signals)} 'exited on signal' lines: "
                                f"{signals[:2]}")
        if inst.module and redirects:
            stale = sum(c for (kind, _, st, _, _), c in load.answers.items()
                        if kind == "reauth" and st == 307)
            part.check(stale > 0, f"{label} {tag}: no re-authentication redirect")
        reauth = (sum(c for (kind, _, st, _, v), c in load.answers.items()
                      if kind == "reauth" and st == 307), load.followed)
        results.append((tag, total, errors, dict(load.requests), dict(load.errors),
                        sum(load.resumed.values()), len(signals), reauth))
    (_, mt, me, mreq, merr, mres, _, (m307, mfol)), (_, pt, pe, preq, perr, pres, _, _) = results
    for kind in set(merr) | set(perr):
        m, p = merr.get(kind, 0), perr.get(kind, 0)
        mr, pr = mreq.get(kind, 1), preq.get(kind, 1)
        # as a rate, with room for the noise of a 2-core machine
        part.check(m / max(mr, 1) <= 2 * p / max(pr, 1) + 0.002,
                   f"{label}: {kind} transport errors, module {m} of {mr}, plain {p} of {pr}")
    part.figure(f"{label}: {events} events in {seconds}s; module {mt} req ({fmt(mreq)}), "
                f"{me} transport errors ({fmt(merr)}), {mres} resumed, {m307} re-authentication "
                f"redirects ({mfol} followed); plain {pt} req "
                f"({fmt(preq)}), {pe} transport errors ({fmt(perr)}), {pres} resumed")


def fmt(d):
    return ", ".join(f"{k} {v}" for k, v in sorted(d.items())) or "none"


def upgrade(inst):
    """USR2, WINCH, QUIT: the binary upgrade sequence of nginx's documentation."""
    n = inst.n
    old = n.pid()
    os.kill(old, signal.SIGUSR2)
    for _ in range(100):
        if os.path.exists(n.path("nginx.pid.oldbin")) and n.pid() and n.pid() != old:
            break
        time.sleep(0.05)
    else:
        return False
    time.sleep(0.5)
    os.kill(old, signal.SIGWINCH)
    time.sleep(0.5)
    os.kill(old, signal.SIGQUIT)
    for _ in range(200):
        try:
            os.kill(old, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def main():
    part = Part("3 reload under load")
    seconds = int(os.environ.get("RELIABILITY_SECONDS") or (15 if QUICK else 60))
    reloads = 5 if QUICK else 20
    mod, plain = Instance("reload-mod", True), Instance("reload-plain", False)
    ca, _ = pki([mod.n, plain.n])
    gen = [0]
    for inst in (mod, plain):
        write_cas([inst.n], ca, 0)
        write_cas([inst.n], ca, 1)
        inst.write(0, True)
        inst.n.start()

    def next_gen(module_on=True):
        gen[0] += 1
        write_cas([mod.n, plain.n], ca, gen[0])
        for inst in (mod, plain):
            inst.write(gen[0], module_on)

    def reload(_):
        next_gen()
        for inst in (mod, plain):
            inst.n.reload()

    run_phase(part, "reload", mod, plain, ca, seconds, reloads, reload)

    ups = [0]

    def binary_upgrade(_):
        next_gen()
        for inst in (mod, plain):
            ok = upgrade(inst)
            part.check(ok, f"binary upgrade of the {'module' if inst.module else 'plain'} "
                           f"instance did not complete")
        ups[0] += 1

    up_seconds = max(10, seconds // 3)
    run_phase(part, "binary upgrade", mod, plain, ca, up_seconds, 2 if QUICK else 4,
              binary_upgrade)

    def toggle(i):
        next_gen(module_on=(i % 2 == 1))
        for inst in (mod, plain):
            inst.n.reload()

    run_phase(part, "module removed/re-added", mod, plain, ca, up_seconds, 4 if QUICK else 6,
              toggle, redirects=False)

    for inst in (mod, plain):
        inst.n.stop()
    alerts = [l for l in mod.n.log().splitlines() if "[alert]" in l]
    part.figure(f"module instance: {len(alerts)} [alert] lines"
                + (f" (first: {alerts[0][:160]})" if alerts else ""))
    return part


if __name__ == "__main__":
    p = main()
    p.save(sys.argv[1] if len(sys.argv) > 1 else "/dev/null")
    sys.exit(1 if p.failed else 0)
