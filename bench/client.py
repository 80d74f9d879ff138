"""TLS client for the measurements oha cannot make (standard library only).

  client.py idle  N  HOST PORT PATH CA CERT KEY
      opens N keep-alive connections with the client certificate, sends one request on each,
      prints "ready" and keeps them open until stdin closes.
  client.py idle-many N HOST PORT PATH CA CERTDIR KEY
      the same, connection i presenting its own certificate CERTDIR/<i, 4 digits>.crt (all
      with the private key KEY).
  client.py serial N HOST PORT PATH CA CERT KEY
      one connection: a few warm-up requests, prints "warm", waits for a line on stdin, sends
      N requests one after the other, prints "done".
  client.py connections N HOST PORT PATH CA CERT KEY
      the same with N connections one after the other, one request each (full handshakes:
      this client never resumes a session).
  client.py resumed N HOST PORT PATH CA CERT KEY
      the same, each connection resuming the session of the one before (abbreviated
      handshakes).
Every response must be 200, else the client exits with status 1 and says why.
"""

import os
import socket
import ssl
import sys


def connect(host, port, context, session=None):
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return context.wrap_socket(sock, server_hostname="localhost", session=session)


def request(conn, host, path, buffer):
    conn.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    while b"\r\n\r\n" not in buffer:
        chunk = conn.recv(65536)
        if not chunk:
            sys.exit("connection closed by the server")
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    status = head.split(b" ", 2)[1]
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            sys.exit("connection closed by the server")
        rest += chunk
    if status != b"200":
        sys.exit(f"status {status.decode()} for {path}: {head.decode(errors='replace')}")
    return rest[length:]


def client_context(ca, cert, key):
    context = ssl.create_default_context(cafile=ca)
    context.load_cert_chain(cert, key)
    return context


def idle(host, port, path, contexts):
    """One keep-alive connection per context, one request on each; holds them until stdin
    closes."""
    conns = []
    for context in contexts:
        conn = connect(host, port, context)
        request(conn, host, path, b"")
        conns.append(conn)
    print("ready", flush=True)
    sys.stdin.read()


def main():
    mode, count, host, port, path, ca, cert, key = sys.argv[1:9]
    count, port = int(count), int(port)
    if mode == "idle-many":
        # A context presents one certificate: one context per connection.
        idle(host, port, path, [client_context(ca, os.path.join(cert, f"{i:04}.crt"), key)
                                for i in range(count)])
        return
    context = client_context(ca, cert, key)
    if mode == "idle":
        idle(host, port, path, [context] * count)
    elif mode == "serial":
        conn = connect(host, port, context)
        buffer = b""
        for _ in range(20):
            buffer = request(conn, host, path, buffer)
        print("warm", flush=True)
        sys.stdin.readline()
        for _ in range(count):
            buffer = request(conn, host, path, buffer)
        print("done", flush=True)
        sys.stdin.read()
    elif mode == "connections":
        for _ in range(5):
            with connect(host, port, context) as conn:
                request(conn, host, path, b"")
        print("warm", flush=True)
        sys.stdin.readline()
        for _ in range(count):
            with connect(host, port, context) as conn:
                request(conn, host, path, b"")
        print("done", flush=True)
        sys.stdin.read()
    elif mode == "resumed":
        session = None
        resumed = 0
        for i in range(count + 5):
            if i == 5:
                print("warm", flush=True)
                sys.stdin.readline()
            with connect(host, port, context, session) as conn:
                request(conn, host, path, b"")
                resumed += i >= 5 and conn.session_reused
                session = conn.session
        if resumed < count:
            sys.exit(f"{count - resumed} of {count} connections did not resume")
        print("done", flush=True)
        sys.stdin.read()
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
