"""The service the module replaces: a certificate login behind nginx.

nginx verifies the client certificate and forwards it URL-escaped in a header
(`proxy_set_header X-Client-Cert $ssl_client_escaped_cert;`). Like such services do, this
one trusts the header only from the proxy's address, parses the PEM, takes UID then CN as
the identity, signs an ES256 JWT and answers the JSON that `auth_cert_login` answers.

Settings (environment): LOGIN_KEY (PEM private key, EC P-256), LOGIN_KID, LOGIN_TTL
(seconds, default 300), LOGIN_TRUSTED (comma-separated networks, default 127.0.0.1/32).
Run: gunicorn --chdir bench login_service:app
"""

import base64
import hashlib
import ipaddress
import json
import os
import time
import uuid
from urllib.parse import unquote

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

with open(os.environ["LOGIN_KEY"], "rb") as key_file:
    KEY = serialization.load_pem_private_key(key_file.read(), password=None)
KID = os.environ.get("LOGIN_KID", "bench")
TTL = int(os.environ.get("LOGIN_TTL", "300"))
TRUSTED = [
    ipaddress.ip_network(net.strip())
    for net in os.environ.get("LOGIN_TRUSTED", "127.0.0.1/32").split(",")
]
SMARTCARD_LOGON = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.2")
PIV_CARD_AUTH = x509.ObjectIdentifier("2.16.840.1.101.3.6.8")


def answer(start_response, status, body, content_type="text/plain"):
    data = body.encode()
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(data)))])
    return [data]


def identity_of(cert):
    for oid in (NameOID.USER_ID, NameOID.COMMON_NAME):
        values = cert.subject.get_attributes_for_oid(oid)
        if values and values[0].value:
            return values[0].value
    return None


def amr_of(cert):
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = []
    smartcard = any(oid in usages for oid in (SMARTCARD_LOGON, PIV_CARD_AUTH))
    return ["sc", "hwk", "x509"] if smartcard else ["x509"]


def app(environ, start_response):
    peer = ipaddress.ip_address(environ.get("REMOTE_ADDR", "0.0.0.0"))
    if not any(peer in net for net in TRUSTED):
        return answer(start_response, "403 Forbidden", "login: network: untrusted peer\n")
    escaped = environ.get("HTTP_X_CLIENT_CERT", "")
    if not escaped:
        return answer(start_response, "401 Unauthorized", "login: no_cert: no certificate\n")
    try:
        cert = x509.load_pem_x509_certificate(unquote(escaped).encode())
    except ValueError:
        return answer(start_response, "403 Forbidden", "login: parse: bad certificate\n")
    identity = identity_of(cert)
    if not identity:
        return answer(start_response, "403 Forbidden", "login: identity: no identity\n")
    now = int(time.time())
    thumbprint = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()
    claims = {
        "sub": identity,
        "iat": now,
        "nbf": now,
        "exp": now + TTL,
        "jti": uuid.uuid4().hex,
        "auth_time": now,
        "amr": amr_of(cert),
        "cnf": {"x5t#S256": base64.urlsafe_b64encode(thumbprint).rstrip(b"=").decode()},
    }
    token = jwt.encode(claims, KEY, algorithm="ES256", headers={"kid": KID})
    body = json.dumps(
        {"identity": identity, "token": token, "expires_in": TTL, "auth_time": now}
    )
    return answer(start_response, "200 OK", body, "application/json")
