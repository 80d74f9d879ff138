"""TLS client for the measurements oha cannot make (standard library only).

  client.py idle  N  HOST PORT PATH CA CERT KEY
      opens N keep-alive connections with the client certificate, sends one request on each,
      prints "ready" and keeps them open until stdin closes.
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


def main():
    mode, count, host, port, path, ca, cert, key = sys.argv[1:9]
    count, port = int(count), int(port)
    context = ssl.create_default_context(cafile=ca)
    context.load_cert_chain(cert, key)
    if mode == "idle":
        conns = []
        for _ in range(count):
            conn = connect(host, port, context)
            request(conn, host, path, b"")
            conns.append(conn)
        print("ready", flush=True)
        sys.stdin.read()
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
