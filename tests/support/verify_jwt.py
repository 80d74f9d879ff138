#!/usr/bin/env python3
"""Verifies a JWT as a backend would, with two libraries independent of the module and of
each other: PyJWT and jwcrypto. Both must accept the token, and agree on its claims.

    verify_jwt.py --jwks URL [--audience AUD] [--issuer ISS] TOKEN
    verify_jwt.py --secret-file FILE [--audience AUD] [--issuer ISS] TOKEN

The key comes from the JWKS at URL (chosen by the token's `kid`) or, for HS256, from the
secret file. Signature, `exp`, `nbf`, `iat` and, when given, `aud` and `iss` are checked.
Prints {"header": ..., "claims": ...} as JSON; when a library refuses the token, prints
"invalid: LIBRARY: REASON[; LIBRARY: REASON]" (every refusal), or "invalid: the libraries
disagree: ..." when both accept it with other claims, and exits with status 1.
"""

import argparse
import base64
import json
import sys
import time
import urllib.request

import jwt
from jwcrypto import jwk as jc_jwk
from jwcrypto import jwt as jc_jwt


def main():
    parser = argparse.ArgumentParser()
    key = parser.add_mutually_exclusive_group(required=True)
    key.add_argument("--jwks")
    key.add_argument("--secret-file")
    parser.add_argument("--audience")
    parser.add_argument("--issuer")
    parser.add_argument("token")
    args = parser.parse_args()

    errors, verdicts = [], {}
    for library, verify in (("PyJWT", pyjwt_claims), ("jwcrypto", jwcrypto_claims)):
        try:
            verdicts[library] = verify(args)
        except Exception as e:  # every failure is a verdict, printed for the test
            errors.append(f"{library}: {type(e).__name__}: {e}")
    if errors:
        print("invalid: " + "; ".join(errors))
        return 1
    if verdicts["PyJWT"] != verdicts["jwcrypto"]:
        print(f"invalid: the libraries disagree: {verdicts}")
        return 1
    claims = verdicts["PyJWT"]
    header = jwt.get_unverified_header(args.token)
    print(json.dumps({"header": header, "claims": claims}, sort_keys=True))
    return 0


def pyjwt_claims(args):
    """The claims as PyJWT verifies them."""
    if args.jwks:
        signing_key = jwt.PyJWKClient(args.jwks, cache_keys=False).get_signing_key_from_jwt(
            args.token
        )
        key, algorithms = signing_key.key, [signing_key.algorithm_name]
    else:
        with open(args.secret_file, "rb") as f:
            key, algorithms = f.read(), ["HS256"]
    return jwt.decode(
        args.token,
        key,
        algorithms=algorithms,
        audience=args.audience,
        issuer=args.issuer,
        options={
            "require": ["exp", "iat", "nbf", "sub", "jti"],
            "verify_aud": args.audience is not None,
        },
    )


def jwcrypto_claims(args):
    """The claims as jwcrypto verifies them: the signature with the JWKS key of the token's
    `kid` (or the secret), `exp` and `nbf` with no leeway (as PyJWT), `aud` and `iss` when
    given, and the claims PyJWT requires present."""
    if args.jwks:
        with urllib.request.urlopen(args.jwks, timeout=10) as f:
            keys = jc_jwk.JWKSet.from_json(f.read())
    else:
        with open(args.secret_file, "rb") as f:
            secret = base64.urlsafe_b64encode(f.read()).rstrip(b"=").decode()
        keys = jc_jwk.JWK(kty="oct", k=secret)
    checks = {"exp": None, "nbf": None, "iat": None, "sub": None, "jti": None}
    if args.audience is not None:
        checks["aud"] = args.audience
    if args.issuer is not None:
        checks["iss"] = args.issuer
    token = jc_jwt.JWT(check_claims=checks, expected_type="JWS")
    token.leeway = 0
    token.deserialize(args.token, keys)
    claims = json.loads(token.claims)
    if claims["iat"] > time.time():
        raise ValueError("iat is in the future")
    return claims


if __name__ == "__main__":
    sys.exit(main())
