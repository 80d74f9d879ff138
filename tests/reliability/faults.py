"""Part 4: worker faults. A worker killed with SIGKILL mid-traffic is replaced and traffic
resumes, with no request answered wrongly; a session made before the kill and resumed after
the respawn, once older than auth_cert_max_age, is not accepted as fresh (TLS 1.2 session
cache, TLS 1.3 tickets)."""

import os
import signal
import sys
import time

import common

from common import (QUICK, Nginx, Part, client_context, free_port, globals_, issue, name,
                    pem_key, raw_request, workdir)
from loadgen import Load

CONF = """{globals}
pid nginx.pid;
worker_processes 2;
error_log error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    default_type text/plain;
    server {{
        listen 127.0.0.1:{port} ssl;
        http2 on;
        server_name localhost;
        ssl_certificate server.crt;
        ssl_certificate_key server.key;
        ssl_client_certificate ca.crt;
        ssl_verify_client optional;
        ssl_session_cache shared:SSL:1m;
        ssl_session_timeout 1h;
        location = /app {{ auth_cert on; add_header X-Gen 1 always; alias ok.txt; }}
        location = /short-reject {{ auth_cert on; auth_cert_max_age {age}s;
                                   auth_cert_stale reject; alias ok.txt; }}
        location = /short-reauth {{ auth_cert on; auth_cert_max_age {age}s;
                                   auth_cert_stale reauth; alias ok.txt; }}
    }}
}}
"""

AGE = 2


def main():
    part = Part("4 worker faults")
    n = Nginx(workdir("faults"))
    ca = issue(name("Fault CA"), ca=True)
    server = issue(name("localhost"), issuer=ca)
    client = issue(name("faultuser"), issuer=ca)
    n.write("ca.crt", ca.pem)
    n.write("server.crt", server.pem)
    n.write("server.key", pem_key(server.key))
    n.write("client.crt", client.pem)
    n.write("client.key", pem_key(client.key))
    n.write("ok.txt", "ok\n")
    port = free_port()
    n.write("nginx.conf", CONF.format(globals=globals_(), port=port, age=AGE))
    n.start()
    crt, key = n.path("client.crt"), n.path("client.key")

    # sessions made before the kills, on the short-age locations
    sessions = {}
    for tls13 in (False, True):
        ctx = client_context(crt, key, tls13=tls13)
        for loc in ("/short-reject", "/short-reauth"):
            st, _, _, sess = raw_request(port, f"GET {loc} HTTP/1.1\r\nHost: localhost\r\n"
                                               "Connection: close", ctx, want_session=True)
            part.check(st == 200, f"fresh request to {loc} (TLS 1.{3 if tls13 else 2}): {st}")
            sessions[(tls13, loc)] = (ctx, sess)

    # SIGKILL workers mid-traffic
    load = Load(port, crt, key, ["/app"])
    load.start()
    kills = 3 if QUICK else 10
    killed = []
    for i in range(kills):
        time.sleep(1.5)
        workers = n.workers()
        if not workers:
            part.check(False, "no worker to kill")
            break
        before = sum(load.requests.values())
        os.kill(workers[i % len(workers)], signal.SIGKILL)
        killed.append(workers[i % len(workers)])
        time.sleep(1.5)
        after = sum(load.requests.values())
        part.check(after > before, f"kill {i + 1}: no request answered in the 1.5 s after it")
    load.stop()
    wrong = {k: v for k, v in load.answers.items() if k[2] != 200 or k[3] != "1"}
    total = sum(load.requests.values())
    errors = sum(load.errors.values())
    part.check(total > 0 and not wrong, f"requests answered wrongly after kills: {wrong}")
    respawned = len(n.workers())
    part.check(respawned == 2, f"{respawned} workers after the kills, expected 2")
    log = n.log()
    signals = [l for l in log.splitlines() if "exited on signal" in l
               and not any(f"process {p} exited on signal 9" in l for p in killed)]
    part.check(not signals, f"unexpected worker exits: {signals[:3]}")

    # all workers replaced: the sessions made just before are resumed (the control), and
    # once older than the age they are not accepted as fresh
    sessions = {}
    for tls13 in (False, True):
        ctx = client_context(crt, key, tls13=tls13)
        for loc in ("/short-reject", "/short-reauth"):
            _, _, _, sess = raw_request(port, f"GET {loc} HTTP/1.1\r\nHost: localhost\r\n"
                                              "Connection: close", ctx, want_session=True)
            sessions[(tls13, loc)] = (ctx, sess)
    for w in n.workers():
        os.kill(w, signal.SIGKILL)
    time.sleep(0.5)
    control = 0
    for (tls13, loc), (ctx, sess) in list(sessions.items()):
        st, _, _, s2 = raw_request(port, f"GET {loc} HTTP/1.1\r\nHost: localhost\r\n"
                                         "Connection: close", ctx, session=sess,
                                   want_session=True)
        control += common.LAST_REUSED
        part.check(st == 200, f"fresh session resumed after the respawn on {loc}: {st}")
        sessions[(tls13, loc)] = (ctx, s2 if common.LAST_REUSED else sess)
    part.check(control >= 2, f"only {control} of 4 fresh sessions were resumed after the "
                             "respawn: the stale-session checks below prove nothing")
    time.sleep(AGE + 1.5)
    resumed = 0
    for (tls13, loc), (ctx, sess) in sessions.items():
        st, rhead, _, s2 = raw_request(port, f"GET {loc} HTTP/1.1\r\nHost: localhost\r\n"
                                             "Connection: close", ctx, session=sess,
                                       want_session=True)
        reused = common.LAST_REUSED
        resumed += reused
        label = f"old session on {loc}, TLS 1.{3 if tls13 else 2}, resumed={reused}"
        if loc == "/short-reject":
            ok = st == 401 if reused else st == 200
        else:
            ok = st == 307 if reused else st == 200
        part.check(ok, f"{label}: status {st}")
    # the re-authentication must not loop: after a 307, a new connection with the same
    # client context gets a full handshake and 200
    for tls13 in (False, True):
        ctx, sess = sessions[(tls13, "/short-reauth")]
        st, _, _ = raw_request(port, "GET /short-reauth HTTP/1.1\r\nHost: localhost\r\n"
                                     "Connection: close", ctx, session=sess)
        st2, _, _ = raw_request(port, "GET /short-reauth HTTP/1.1\r\nHost: localhost\r\n"
                                      "Connection: close", client_context(crt, key, tls13))
        part.check(st2 == 200, f"new connection after the stale session (TLS 1.{3 if tls13 else 2}):"
                               f" {st2}")
    n.stop()
    part.figure(f"{len(killed)} workers killed under load, {total} requests, {errors} transport "
                f"errors ({', '.join(f'{k} {v}' for k, v in sorted(load.errors.items())) or 'none'});"
                f" {control} of 4 fresh sessions resumed after the respawn, {resumed} of 4 "
                f"stale ones")
    return part


if __name__ == "__main__":
    p = main()
    p.save(sys.argv[1] if len(sys.argv) > 1 else "/dev/null")
    sys.exit(1 if p.failed else 0)
