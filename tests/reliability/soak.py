"""Part 7: soak with certificate churn. nginx with the module (master process, 2 workers,
`auth_cert_zone`) under a bounded mixed load for a long time (30 minutes; 2 with --quick;
RELIABILITY_SOAK_SECONDS): TLS keep-alive, a new connection per request, TLS 1.2 resumption,
HTTP/2, tokens, forwarded certificates and stale re-authentication, each new connection
presenting another of a few thousand client certificates of one CA (RELIABILITY_SOAK_CERTS,
default 3,000; 300 with --quick) and each forwarded request another certificate, so that the
per-certificate state of a worker (parsed certificates kept, token cache, zone marks) keeps
being filled and emptied. Every worker's VmRSS is sampled every 5 s; from the end of the
warm-up (the first 40 % of the time) to the end it may grow by at most 1 %. Every answer
must have its expected status, and no worker may exit.

The warm-up is long because a bounded cache reaches its last size late: the token cache (at
most 1,024 tokens, a Rust HashMap) is full after a minute at this load, but the churn of its
evictions leaves tombstones in the table, which grows once more, from 2,048 to 4,096 buckets
(324 KiB more), after about 10,000 new tokens in a worker: 8 to 10 minutes here. A 20 %
warm-up (6 minutes) ends before that step.

The shared zones (session cache, `auth_cert_zone`) are small: a page of a zone counts in a
worker's VmRSS once the worker has touched it, and a large zone would be touched page by page
for long after the warm-up, which is growth without a leak. Small ones are full early."""

import os
import sys
import time
import urllib.parse

from cryptography import x509

from common import (QUICK, Nginx, Part, crash_lines, ec_key, free_port, globals_, issue, name,
                    pem_key, workdir)
from loadgen import Load

CONF = """{globals}
pid nginx.pid;
worker_processes 2;
error_log error.log notice;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    default_type text/plain;
    auth_cert_zone auth_cert:32k;
    auth_cert_max_age 1h;
    server {{
        listen 127.0.0.1:{port} ssl;
        http2 on;
        server_name localhost;
        ssl_certificate server.crt;
        ssl_certificate_key server.key;
        ssl_client_certificate ca.crt;
        ssl_verify_client optional;
        ssl_session_cache shared:SSL:128k;
        auth_cert_token_key token.key kid=s;
        location = /app {{ auth_cert on; alias ok.txt; }}
        location = /token {{ auth_cert on; add_header X-Check $auth_cert_token always;
                            alias ok.txt; }}
        location = /deny {{ auth_cert on; auth_cert_policy 1.2.3.4.5.6; alias ok.txt; }}
        location = /vars {{ auth_cert optional;
                           add_header X-V "$auth_cert_identity $auth_cert_subject $auth_cert_issuer $auth_cert_serial $auth_cert_fingerprint $auth_cert_email $auth_cert_not_after $auth_cert_age" always;
                           alias ok.txt; }}
        location = /stale {{ auth_cert on; auth_cert_max_age {stale}s; auth_cert_stale reauth;
                            alias ok.txt; }}
        location = /metrics {{ auth_cert_metrics; }}
    }}
    server {{
        listen 127.0.0.1:{fwd};
        location ~ ^/ {{ auth_cert on; auth_cert_header X-Client-Cert from=127.0.0.1 ca=ca.crt;
                        auth_cert_token_key token.key kid=s;
                        add_header X-Check $auth_cert_token always; alias ok.txt; }}
    }}
}}
"""

PATHS = ["/app", "/token", "/deny", "/app", "/vars", "/token"]
STALE = 2
# seconds each client thread waits after a request: a bounded load (about 170 requests per
# second in all), so that the soak does not take both cores
PACE = {"keepalive": 0.02, "forwarded": 0.02, "newconn": 0.05, "resume": 0.05, "h2": 0.5,
        "reauth": 0.05}
SAMPLE = 5
WARMUP = 0.4        # the share of the time before the RSS of reference (see above)


def rss(pid):
    """VmRSS, RssAnon and RssShmem of a process in kB (None when it is gone)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "RssAnon", "RssShmem"):
                    out[k] = int(v.split()[0])
    except OSError:
        return None
    return out


def expected(kind, path, verdict):
    """The statuses an answer may have, and the token `kid` it must carry ('' for none)."""
    if kind == "reauth":
        return {"fresh": {200}, "stale": {307}, "edge": {200, 307}}.get(verdict, set()), ""
    if kind == "forwarded":
        return {200}, "s"
    if path == "/deny":
        return {403}, ""
    if path == "/token":
        return {200}, "s"
    return {200}, ""


def main():
    part = Part("7 soak")
    seconds = int(os.environ.get("RELIABILITY_SOAK_SECONDS") or (120 if QUICK else 1800))
    count = int(os.environ.get("RELIABILITY_SOAK_CERTS") or (300 if QUICK else 3000))
    n = Nginx(workdir("soak"))
    ca = issue(name("Soak CA"), ca=True)
    server = issue(name("localhost"), issuer=ca)
    for f, d in [("ca.crt", ca.pem), ("server.crt", server.pem),
                 ("server.key", pem_key(server.key)), ("token.key", pem_key(ec_key())),
                 ("ok.txt", "ok\n")]:
        n.write(f, d)
    os.makedirs(n.path("clients"))
    certs, values = [], []
    t0 = time.monotonic()
    for i in range(count):
        sans = [x509.RFC822Name(f"user{i}@soak.example")] if i % 2 else None
        c = issue(name(f"soak-user-{i}"), issuer=ca, sans=sans)
        crt, key = f"clients/{i}.crt", f"clients/{i}.key"
        n.write(crt, c.pem)
        n.write(key, pem_key(c.key))
        certs.append((n.path(crt), n.path(key)))
        values.append(urllib.parse.quote(c.pem.decode(), safe="").encode())
    made = time.monotonic() - t0
    port, fwd = free_port(), free_port()
    n.write("nginx.conf", CONF.format(globals=globals_(), port=port, fwd=fwd, stale=STALE))
    n.start()
    workers = sorted(n.workers())
    part.check(len(workers) == 2, f"{len(workers)} worker processes at the start, not 2")

    load = Load(port, None, None, PATHS, fwd_port=fwd,
                kinds=("keepalive", "newconn", "resume", "h2", "reauth"), certs=certs,
                fwd_values=values, pace=PACE, per_conn=50, reauth_path="/stale",
                reauth_age=STALE)
    samples = []        # (seconds since start, {pid: VmRSS kB})
    start = time.monotonic()
    load.start()
    while True:
        t = time.monotonic() - start
        samples.append((t, {p: rss(p) for p in workers}))
        if len(samples) % 12 == 1:
            print(f"  soak {t:.0f} s: {sum(load.requests.values())} requests, VmRSS "
                  + ", ".join(f"{p} {v['VmRSS'] if v else '-'} kB"
                              for p, v in sorted(samples[-1][1].items())), flush=True)
        if t >= seconds:
            break
        time.sleep(min(SAMPLE, max(0.0, seconds - t)))
    load.stop()
    elapsed = time.monotonic() - start
    final = sorted(n.workers())
    n.stop()

    part.check(final == workers, f"worker processes changed: {workers} at the start, {final} "
                                 f"at the end")
    crashes = crash_lines(n.log())
    part.check(not crashes, f"{len(crashes)} 'exited on signal' or [alert] lines: "
                            f"{crashes[:2]}")

    wrong, examples = 0, []
    statuses = {}
    for (kind, path, status, _, check), c in load.answers.items():
        statuses[status] = statuses.get(status, 0) + c
        want, want_kid = expected(kind, path, check)
        if status not in want or (want_kid and check != want_kid):
            wrong += c
            what = f"verdict {check}" if kind == "reauth" else f"kid {check!r}"
            examples.append(f"{kind} {path}: {status} {what}, expected {sorted(want)} (x{c})")
    total = sum(load.requests.values())
    part.check(total > 0, "no request answered")
    part.check(wrong == 0, f"{wrong} requests answered wrongly: {examples[:4]}")
    part.check(load.errors["h2-not-h2"] == 0, "curl did not use HTTP/2")
    redirects = sum(c for (kind, _, st, _, _), c in load.answers.items()
                    if kind == "reauth" and st == 307)
    part.check(redirects > 0, "no re-authentication redirect")

    warm_at = seconds * WARMUP
    warm = next(s for s in samples if s[0] >= warm_at)
    end = samples[-1]
    figures = []
    for p in workers:
        w, e = warm[1].get(p), end[1].get(p)
        if not part.check(w is not None and e is not None, f"worker {p}: no RSS sample"):
            continue
        peak = max(s[1][p]["VmRSS"] for s in samples if s[1].get(p))
        peak_after = max(s[1][p]["VmRSS"] for s in samples if s[1].get(p) and s[0] >= warm_at)
        growth = 100.0 * (e["VmRSS"] - w["VmRSS"]) / w["VmRSS"]
        half = next(x for x in samples if x[0] >= seconds / 2)[1].get(p)
        half_growth = 100.0 * (e["VmRSS"] - half["VmRSS"]) / half["VmRSS"] if half else 0.0
        part.check(growth <= 1.0, f"worker {p}: VmRSS grew {growth:.2f} % after the warm-up "
                                  f"({w['VmRSS']} kB at {warm[0]:.0f} s, {e['VmRSS']} kB at "
                                  f"the end)")
        figures.append(f"worker {p} VmRSS {w['VmRSS']} kB at warm-up, {e['VmRSS']} kB at the "
                       f"end, max {peak} kB ({peak_after} kB after the warm-up), growth "
                       f"{growth:+.2f} % ({half_growth:+.2f} % over the second half; "
                       f"anonymous {w['RssAnon']} -> {e['RssAnon']} kB, "
                       f"shared {w['RssShmem']} -> {e['RssShmem']} kB)")
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(load.requests.items()))
    errs = ", ".join(f"{k} {v}" for k, v in sorted(load.errors.items())) or "none"
    st = ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))
    part.figure(f"{elapsed:.0f} s ({len(samples)} RSS samples, warm-up {warm_at:.0f} s): "
                f"{total} requests ({kinds}; status {st}), "
                f"{sum(load.resumed.values())} resumed, transport errors {errs}; "
                f"{len(load.used)} of {count} certificates presented over TLS "
                f"({load.cert_index} connections or curl runs), {len(load.fwd_used)} forwarded "
                f"({load.fwd_index} requests); {redirects} re-authentication redirects "
                f"({load.followed} followed); certificates made in {made:.0f} s")
    for f in figures:
        part.figure(f)
    # every sample, for the record (kept with the work directory)
    with open(n.path("rss.txt"), "w") as f:
        for t, d in samples:
            f.write(f"{t:.1f} " + " ".join(f"{p}:{v['VmRSS'] if v else '-'}"
                                           for p, v in sorted(d.items())) + "\n")
    return part


if __name__ == "__main__":
    p = main()
    p.save(sys.argv[1] if len(sys.argv) > 1 else "/dev/null")
    sys.exit(1 if p.failed else 0)
