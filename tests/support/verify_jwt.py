#!/usr/bin/env python3
"""Verifies a JWT as a backend would, with PyJWT: independently of the module.

    verify_jwt.py --jwks URL [--audience AUD] [--issuer ISS] TOKEN
    verify_jwt.py --secret-file FILE [--audience AUD] [--issuer ISS] TOKEN

The key comes from the JWKS at URL (chosen by the token's `kid`) or, for HS256, from the
secret file. Signature, `exp`, `nbf`, `iat` and, when given, `aud` and `iss` are checked.
Prints {"header": ..., "claims": ...} as JSON; on failure prints "invalid: REASON" and
exits with status 1.
"""

import argparse
import json
import sys

import jwt


def main():
    parser = argparse.ArgumentParser()
    key = parser.add_mutually_exclusive_group(required=True)
    key.add_argument("--jwks")
    key.add_argument("--secret-file")
    parser.add_argument("--audience")
    parser.add_argument("--issuer")
    parser.add_argument("token")
    args = parser.parse_args()

    try:
        if args.jwks:
            signing_key = jwt.PyJWKClient(args.jwks, cache_keys=False).get_signing_key_from_jwt(
                args.token
            )
            key, algorithms = signing_key.key, [signing_key.algorithm_name]
        else:
            with open(args.secret_file, "rb") as f:
                key, algorithms = f.read(), ["HS256"]
        claims = jwt.decode(
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
    except Exception as e:  # every failure is a verdict, printed for the test
        print(f"invalid: {type(e).__name__}: {e}")
        return 1
    header = jwt.get_unverified_header(args.token)
    print(json.dumps({"header": header, "claims": claims}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
