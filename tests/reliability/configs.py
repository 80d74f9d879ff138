"""Part 1: invalid configurations refused by `nginx -t` with a message naming the directive
(table in invalid-configs.txt), and valid edge configurations that must pass."""

import datetime
import os
import re
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa, ed25519, ed448, dsa

from common import (Nginx, Part, globals_, issue, name, pem_key, workdir, ec_key, now)

HERE = os.path.dirname(os.path.abspath(__file__))


def fixtures(n):
    ca = issue(name("Reliability CA"), ca=True)
    server = issue(name("localhost"), issuer=ca)
    n.write("ca.crt", ca.pem)
    n.write("server.crt", server.pem)
    n.write("server.key", pem_key(server.key))
    n.write("empty.pem", "")
    n.write("garbage.pem", "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n")
    n.write("key-only.pem", pem_key(ec_key()))
    n.write("rsa1024.key", pem_key(rsa.generate_private_key(65537, 1024)))
    n.write("rsa2048.key", pem_key(rsa.generate_private_key(65537, 2048)))
    n.write("p256.key", pem_key(ec_key()))
    n.write("p384.key", pem_key(ec.generate_private_key(ec.SECP384R1())))
    n.write("k256.key", pem_key(ec.generate_private_key(ec.SECP256K1())))
    n.write("ed25519.key", pem_key(ed25519.Ed25519PrivateKey.generate()))
    n.write("ed448.key", pem_key(ed448.Ed448PrivateKey.generate()))
    n.write("dsa.key", pem_key(dsa.generate_private_key(2048)))
    n.write("encrypted.key", ec_key().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))
    n.write("secret16", os.urandom(16))
    n.write("secret31", os.urandom(31))
    n.write("secret32", os.urandom(32))
    n.write("cert-as-key.pem", ca.pem)
    expired = issue(name("Expired CA"), ca=True,
                    not_before=now() - datetime.timedelta(days=10),
                    not_after=now() - datetime.timedelta(days=1))
    n.write("expired-ca.crt", expired.pem)
    leaf = issue(name("leaf"), issuer=ca)
    n.write("leaf.crt", leaf.pem)
    unreadable = n.path("unreadable.pem")
    with open(unreadable, "wb") as f:
        f.write(ca.pem)
    os.chmod(unreadable, 0)


def conf(place, snippet, verify="optional"):
    main = snippet if place == "main" else ""
    http = snippet if place == "http" else ""
    server = snippet if place == "server" else ""
    location = snippet if place == "location" else ""
    plain = snippet if place == "plain" else ""
    limit = snippet if place == "if" else ""
    upstream = snippet if place == "upstream" else ""
    events = snippet if place == "events" else ""
    mail = f"mail {{ {snippet} }}" if place == "mail" else ""
    stream = f"stream {{ {snippet} }}" if place == "stream" else ""
    return f"""{globals_()}
{main}
daemon off;
pid nginx.pid;
events {{ {events} }}
{mail}
{stream}
http {{
    access_log access.log;
    {http}
    upstream backend {{ server 127.0.0.1:9; {upstream} }}
    server {{
        listen 127.0.0.1:{PORT} ssl;
        server_name localhost;
        ssl_certificate server.crt;
        ssl_certificate_key server.key;
        ssl_client_certificate ca.crt;
        ssl_verify_client {verify};
        {server}
        location / {{
            {location}
            if ($arg_x) {{ {limit} }}
        }}
    }}
    server {{
        listen 127.0.0.1:{PORT2};
        {plain}
        location / {{ }}
    }}
}}
"""


PORT = 0
PORT2 = 0


def parse_table(path):
    rows = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            head, _, expect = line.partition(" => ")
            place, _, snippet = head.strip().partition(" ")
            verify = "optional"
            if place.startswith("verify="):
                verify = place.split("=", 1)[1]
                place, _, snippet = snippet.strip().partition(" ")
            rows.append((lineno, place, verify, snippet.strip(), expect.strip()))
    return rows


def main():
    global PORT, PORT2
    from common import free_port
    PORT, PORT2 = free_port(), free_port()
    part = Part("1 configurations")
    n = Nginx(workdir("configs"))
    fixtures(n)
    rows = parse_table(os.path.join(HERE, "invalid-configs.txt"))
    refused = accepted = 0
    show = os.environ.get("RELIABILITY_SHOW") == "1"
    for i, (lineno, place, verify, snippet, expect) in enumerate(rows):
        cname = f"c{lineno}.conf"
        n.write(cname, conf(place, snippet, verify))
        rc, out = n.test(cname)
        msg = " ".join(l for l in out.splitlines() if "[emerg]" in l or "[crit]" in l
                       or "[alert]" in l or "[error]" in l)
        if show:
            print(f"{lineno}: rc={rc} {msg}")
        if expect == "OK":
            accepted += 1
            part.check(rc == 0, f"line {lineno}: valid `{snippet}` refused: {msg or out.strip()}")
        else:
            refused += 1
            ok = rc != 0 and re.search(expect, msg) is not None
            part.check(ok, f"line {lineno}: `{snippet}` rc={rc}, message {msg or out.strip()!r} "
                           f"does not match /{expect}/")
        part.check("exited on signal" not in out and "[alert]" not in out,
                   f"line {lineno}: crash or alert in nginx -t: {out.strip()}")
    part.figure(f"{refused} invalid configs, {accepted} valid edge configs")
    return part


if __name__ == "__main__":
    p = main()
    p.save(sys.argv[1] if len(sys.argv) > 1 else "/dev/null")
    sys.exit(1 if p.failed else 0)
