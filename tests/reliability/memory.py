"""Part 5: valgrind memcheck of nginx (master_process off; daemon off;) under mixed requests:
TLS keep-alive, a new connection per request, TLS 1.2 resumption, HTTP/2, forwarded
certificates, tokens, re-authentication (a short auth_cert_max_age with `reauth`) and
rejections (a policy the certificate lacks). Two runs, the longer with 2 (--quick) or 4 times the
requests of the other: 0 invalid reads or writes, and no more definitely-lost blocks in the longer run."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse

from cryptography import x509

from common import (MODULE, NGINX, QUICK, Nginx, Part, ec_key, free_port, globals_, issue,
                    name, pem_key, workdir)
from loadgen import Load

CONF = """{globals}
master_process off;
daemon off;
pid nginx.pid;
error_log error.log notice;
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
        auth_cert_token_key token.key;
        location = /app {{ auth_cert on; alias ok.txt; }}
        location = /token {{ auth_cert on; add_header X-Check $auth_cert_token always;
                            alias ok.txt; }}
        location = /login {{ auth_cert_login; }}
        location = /deny {{ auth_cert on; auth_cert_policy 1.2.3.4.5.6; alias ok.txt; }}
        location = /reauth {{ auth_cert on; auth_cert_max_age 2s; alias ok.txt; }}
        location = /vars {{ auth_cert optional;
                           add_header X-V "$auth_cert_identity $auth_cert_subject $auth_cert_issuer $auth_cert_serial $auth_cert_fingerprint $auth_cert_email $auth_cert_upn $auth_cert_not_after $auth_cert_age" always;
                           alias ok.txt; }}
    }}
    server {{
        listen 127.0.0.1:{fwd};
        location ~ ^/ {{ auth_cert on; auth_cert_header X-Client-Cert from=127.0.0.1 ca=ca.crt;
                        auth_cert_token_key token.key; add_header X-Check $auth_cert_token always;
                        alias ok.txt; }}
    }}
}}
"""

PATHS = ["/app", "/token", "/login", "/deny", "/reauth", "/vars", "/app", "/app"]


def cpu_ticks(pid):
    """The user and system clock ticks a process has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def stop(proc, port):
    """Stops nginx with SIGQUIT. In single-process mode nginx checks for the signal once per
    event-loop iteration, between returning from epoll_wait and calling it again; a signal
    handled in that window (valgrind delivers signals where it polls for them, so the window is
    wide under valgrind) leaves it in epoll_wait until the next event, forever when no timer is
    pending. Such an nginx is idle: a connection to its port wakes it and it exits. A busy one
    (a loop that never returns to epoll_wait) is a defect. Returns None when nginx exited on
    its own, else what was seen of it before it was woken."""
    proc.send_signal(signal.SIGQUIT)
    try:
        proc.wait(timeout=30)
        return None
    except subprocess.TimeoutExpired:
        pass
    before = cpu_ticks(proc.pid)
    time.sleep(3)
    seen = {"cpu_ticks_in_3s": cpu_ticks(proc.pid) - before}
    try:
        with open(f"/proc/{proc.pid}/syscall") as f:
            seen["syscall"] = f.read().split()[0]
    except OSError as e:
        seen["syscall"] = str(e)
    seen["idle"] = seen["cpu_ticks_in_3s"] < 30
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except OSError:
        pass
    try:
        proc.wait(timeout=120)
        seen["exited_when_woken"] = True
    except subprocess.TimeoutExpired:
        seen["exited_when_woken"] = False
        seen["idle"] = False
        proc.kill()
        proc.wait()
    return seen


def run(part, count, tag):
    n = Nginx(workdir(f"memory-{tag}"))
    ca = issue(name("Memory CA"), ca=True)
    server = issue(name("localhost"), issuer=ca)
    client = issue(name("memuser"), issuer=ca,
                   sans=[x509.RFC822Name("mem@example.org")])
    for f, d in [("ca.crt", ca.pem), ("server.crt", server.pem),
                 ("server.key", pem_key(server.key)), ("client.crt", client.pem),
                 ("client.key", pem_key(client.key)), ("token.key", pem_key(ec_key())),
                 ("ok.txt", "ok\n")]:
        n.write(f, d)
    port, fwd = free_port(), free_port()
    n.write("nginx.conf", CONF.format(globals=globals_(), port=port, fwd=fwd))
    vglog = n.path("valgrind.log")
    proc = subprocess.Popen(
        ["valgrind", "--tool=memcheck", "--leak-check=full", "--show-leak-kinds=definite",
         "--num-callers=30", f"--log-file={vglog}", NGINX, "-p", n.dir + "/", "-c",
         "nginx.conf", "-e", "error.log"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", fwd), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    value = urllib.parse.quote(client.pem.decode(), safe="").encode()
    # mostly keep-alive requests: a handshake costs about a hundred of them under valgrind
    load = Load(port, n.path("client.crt"), n.path("client.key"), PATHS, fwd_port=fwd,
                fwd_value=value, kinds=("keepalive",) * 4 + ("newconn", "resume", "h2")
                + ("forwarded",) * 2)
    load.start()
    deadline = time.monotonic() + (600 if QUICK else 1800)
    while sum(load.requests.values()) < count and time.monotonic() < deadline:
        time.sleep(0.5)
    load.stop()
    answered = sum(load.requests.values())
    woken = stop(proc, fwd)
    text = open(vglog, errors="replace").read()
    invalid = len(re.findall(r"Invalid (read|write|free)", text))
    uninit = len(re.findall(r"(depends on|Use of|contains) uninitialised", text))
    m = re.search(r"definitely lost: ([\d,]+) bytes in ([\d,]+) blocks", text)
    lost_bytes = int(m.group(1).replace(",", "")) if m else 0
    lost_blocks = int(m.group(2).replace(",", "")) if m else 0
    summary = re.search(r"ERROR SUMMARY: ([\d,]+) errors", text)
    part.check(answered >= count, f"{tag}: only {answered} of {count} requests answered")
    part.check(invalid == 0, f"{tag}: {invalid} invalid reads/writes/frees (see {vglog})")
    part.check(summary is not None, f"{tag}: valgrind did not finish (no ERROR SUMMARY)")
    part.check(woken is None or woken["idle"],
               f"{tag}: nginx did not exit after SIGQUIT and was busy: {woken}")
    statuses = {}
    for (kind, path, status, _, _), c in load.answers.items():
        statuses[status] = statuses.get(status, 0) + c
    return dict(answered=answered, invalid=invalid, uninit=uninit, lost_bytes=lost_bytes,
                lost_blocks=lost_blocks, statuses=statuses, errors=sum(load.errors.values()),
                kinds=dict(load.requests), log=vglog, text=text, woken=woken)


def main():
    part = Part("5 memory (valgrind)")
    if not MODULE:
        part.skip("no module")
        return part
    small, large = (300, 600) if QUICK else (2500, 10000)
    if os.environ.get("RELIABILITY_MEMORY_REQUESTS"):
        small, large = map(int, os.environ["RELIABILITY_MEMORY_REQUESTS"].split(","))
    a = run(part, small, "small")
    b = run(part, large, "large")
    part.check(b["lost_blocks"] <= a["lost_blocks"],
               f"definitely-lost blocks grow with the request count: {a['lost_blocks']} "
               f"after {a['answered']} requests, {b['lost_blocks']} after {b['answered']}")
    for r, tag in ((a, "small"), (b, "large")):
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(r["kinds"].items()))
        st = ", ".join(f"{k}: {v}" for k, v in sorted(r["statuses"].items()))
        part.figure(f"{tag}: {r['answered']} requests ({kinds}; status {st}), "
                    f"{r['invalid']} invalid accesses, {r['uninit']} uninitialised-value "
                    f"reports, definitely lost {r['lost_bytes']} bytes in {r['lost_blocks']} "
                    f"blocks"
                    + ("" if r["woken"] is None else
                       f"; did not exit on SIGQUIT until a connection woke it: {r['woken']}"))
    return part


if __name__ == "__main__":
    p = main()
    p.save(sys.argv[1] if len(sys.argv) > 1 else "/dev/null")
    sys.exit(1 if p.failed else 0)
