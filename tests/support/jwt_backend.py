#!/usr/bin/env python3
"""A backend that trusts nothing but a valid token: it verifies `Authorization: Bearer` with
PyJWT against the JWKS URL and answers with the token's subject.

    jwt_backend.py PORT JWKS_URL AUDIENCE

200 "sub=SUBJECT kid=KID" for a valid token, 401 "invalid: REASON" otherwise.
"""

import http.server
import sys

import jwt


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        auth = self.headers.get("Authorization", "")
        try:
            scheme, _, token = auth.partition(" ")
            if scheme != "Bearer" or not token:
                raise ValueError("no bearer token")
            client = jwt.PyJWKClient(self.server.jwks_url, cache_keys=False)
            signing_key = client.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                signing_key.key,
                algorithms=[signing_key.algorithm_name],
                audience=self.server.audience,
                options={"require": ["exp", "iat", "sub"]},
            )
            status, body = 200, f"sub={claims['sub']} kid={signing_key.key_id}\n"
        except Exception as e:  # the verdict goes to the client
            status, body = 401, f"invalid: {type(e).__name__}\n"
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def main():
    port, jwks_url, audience = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    server = http.server.HTTPServer(("127.0.0.1", port), Handler)
    server.jwks_url, server.audience = jwks_url, audience
    server.serve_forever()


if __name__ == "__main__":
    main()
