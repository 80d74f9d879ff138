"""Prints the results table of scripts/reliability from the JSON lines the parts wrote;
exits 1 when a part failed or did not report."""

import json
import sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(f"| {'part':<22} | {'checks':>6} | {'passed':>6} | {'failed':>6} | figures")
print(f"|{'-' * 24}|{'-' * 8}|{'-' * 8}|{'-' * 8}|---------")
bad = False
for r in rows:
    checks = r["passed"] + r["failed"]
    print(f"| {r['part']:<22} | {checks:>6} | {r['passed']:>6} | {r['failed']:>6} | "
          + "; ".join(r["figures"]))
    bad |= r["failed"] > 0
for r in rows:
    for f in r["failures"][:40]:
        print(f"FAILED {r['part']}: {f}")
    if len(r["failures"]) > 40:
        print(f"FAILED {r['part']}: ... and {len(r['failures']) - 40} more")
sys.exit(1 if bad or not rows else 0)
