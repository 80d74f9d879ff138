"""Part 6: nginx's own TLS tests (ssl*.t, h2_ssl*.t, which include ssl_session*.t,
ssl_ocsp.t and ssl_verify_client.t) from the nginx-tests checkout named by NGINX_TESTS, run
with the module loaded and `auth_cert_max_age 1h;` in every http block, and without the
module: every test must have the same outcome in both runs. Never vendored: skipped with a
message when NGINX_TESTS is unset."""

import concurrent.futures
import glob
import os
import re
import subprocess
import sys

from common import MODULE, NGINX, QUICK, ROOT, Part

QUICK_FILES = ["ssl.t", "ssl_verify_client.t", "ssl_session_reuse.t", "ssl_ocsp.t",
               "h2_ssl_verify_client.t", "ssl_sni_sessions.t"]


def run_file(tests, path, module):
    env = dict(os.environ)
    env["TEST_NGINX_BINARY"] = NGINX
    g = "user root;" if ROOT else ""
    if module:
        g += f" load_module {MODULE};"
        env["TEST_NGINX_GLOBALS_HTTP"] = "auth_cert_max_age 1h;"
    else:
        env.pop("TEST_NGINX_GLOBALS_HTTP", None)
    env["TEST_NGINX_GLOBALS"] = g
    env.pop("TEST_NGINX_LEAVE", None)
    r = subprocess.run(["perl", "-I", os.path.join(tests, "lib"), path], cwd=tests, env=env,
                       capture_output=True, text=True, timeout=600)
    out = r.stdout
    if re.search(r"^1\.\.0 # SKIP", out, re.M):
        return ("skip", re.search(r"^1\.\.0 # SKIP(.*)", out, re.M).group(1).strip(), set(),
                0)
    failed = set()
    passed = 0
    for m in re.finditer(r"^(not ok|ok) (\d+)(.*)$", out, re.M):
        todo = "# TODO" in m.group(3) or "# SKIP" in m.group(3)
        if m.group(1) == "not ok" and not todo:
            failed.add(int(m.group(2)))
        else:
            passed += 1
    crashed = "exited on signal" in r.stderr or "exited on signal" in out
    status = "fail" if failed or r.returncode != 0 else "pass"
    return (status, r.stderr.strip().splitlines()[-1:] if r.returncode else "", failed,
            passed) if not crashed else ("crash", "exited on signal", failed, passed)


def main():
    part = Part("6 official TLS tests")
    tests = os.environ.get("NGINX_TESTS")
    if not tests:
        print("  NGINX_TESTS is not set: nginx's own tests skipped (point it at an "
              "nginx-tests checkout to run them)")
        part.skip("NGINX_TESTS unset")
        return part
    files = sorted(set(os.path.basename(f) for pattern in ("ssl*.t", "h2_ssl*.t")
                       for f in glob.glob(os.path.join(tests, pattern))))
    if QUICK:
        files = [f for f in QUICK_FILES if f in files]
    results = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = {pool.submit(run_file, tests, f, m): (f, m) for f in files
                   for m in (True, False)}
        for fut in concurrent.futures.as_completed(futures):
            results[futures[fut]] = fut.result()
    same = differ = skipped = 0
    subtests = 0
    retried = []
    for f in files:
        with_m, without = results[(f, True)], results[(f, False)]
        if (with_m[0], with_m[2]) != (without[0], without[2]):
            # a second chance, one run at a time: the test files make their PKI with the
            # openssl command, which fails now and then on a loaded machine
            retried.append(f)
            with_m = results[(f, True)] = run_file(tests, f, True)
            without = results[(f, False)] = run_file(tests, f, False)
        if with_m[0] == "skip" and without[0] == "skip":
            skipped += 1
            continue
        subtests += with_m[3] + len(with_m[2])
        ok = with_m[0] == without[0] and with_m[2] == without[2]
        part.check(ok, f"{f}: with the module {with_m[0]} {sorted(with_m[2])} {with_m[1]}, "
                       f"without {without[0]} {sorted(without[2])} {without[1]}")
        part.check(with_m[0] != "crash", f"{f}: a worker crashed with the module")
        same += ok
        differ += not ok
    ran = [f for f in files if results[(f, True)][0] != "skip"]
    fails = [f"{f} ({sorted(results[(f, False)][2])})" for f in files
             if results[(f, False)][0] == "fail"]
    skips = [f"{f} ({results[(f, True)][1][:40]})" for f in files
             if results[(f, True)][0] == "skip" and results[(f, False)][0] == "skip"]
    part.figure(f"{len(files)} files, {len(ran)} ran ({subtests} subtests with the module), "
                f"{same} same outcome, {differ} differ; skipped in both runs: "
                + (", ".join(skips) or "none")
                + (f"; failing without the module too: {', '.join(fails)}" if fails else "")
                + (f"; run again after differing once: {', '.join(retried)}" if retried else ""))
    return part


if __name__ == "__main__":
    p = main()
    p.save(sys.argv[1] if len(sys.argv) > 1 else "/dev/null")
    sys.exit(1 if p.failed else 0)
