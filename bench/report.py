"""The table, the results page (docs/benchmarks.md) and its chart, from a run's JSON."""

from html import escape
from pathlib import Path

LOGIN = ("login_python", "login_module")
# Instructions per token signature when the module signed with the RustCrypto crates (p256,
# ed25519-dalek, rsa), from the run of 2026-11-30 04:07 UTC (20261130T040712Z.json): per new connection (a full
# handshake and one request, which signs one token), token_<alg> minus identity:
# ES256 9,656,562 - 7,643,866, EdDSA 7,922,994 - 7,643,866, RS256 32,439,817 - 7,643,866.
SIGNATURE_BEFORE_DATE = "2026-11-30"
SIGNATURE_BEFORE = {"token_es256": 2_012_696, "token_eddsa": 279_128, "token_rs256": 24_795_951}
# The configuration a signature's cost is measured against.
SIGNATURE_REFERENCE = "identity"


def peers(data):
    """The names of the other servers' configurations (HAProxy, Apache) in a run."""
    return [name for name, c in data["configs"].items() if c.get("peer")]
# The kinds of memory measurement (the `kind` of bench.py's memory results), in table order.
MEMORY_KINDS = {"same_certificate": "one certificate for all connections",
                "certificate_per_connection": "a certificate per connection"}


def fmt(value, spec, missing="–"):
    return missing if value is None else format(value, spec)


def verdict(row):
    if "met" not in row:
        return ""
    return "met" if row["met"] else "NOT MET"


def throughput_rows(data):
    """The rows of the main table: the nginx configurations (the peers have their own)."""
    order_s = list(data["scenarios"])
    order_c = list(data["configs"])
    rows = [r for r in data.get("summary", []) if r["config"] not in peers(data)]
    rows.sort(key=lambda r: (r["config"] in LOGIN, order_s.index(r["scenario"])
                             if r["scenario"] in order_s else 99,
                             order_c.index(r["config"]) if r["config"] in order_c else 99))
    return rows


def table_lines(data, markdown):
    head = ["scenario", "configuration", "req/s", "p50 ms", "p99 ms", "ratio", "target", ""]
    lines = []
    rows = []
    for r in throughput_rows(data):
        ratio = r.get("ratio")
        ratio_text = fmt(ratio, ".3f") if r["config"] not in LOGIN else fmt(ratio, ".1f") + "×" \
            if ratio is not None else "–"
        low, high = r.get("ratio_range") or (None, None)
        if low is not None and high > low:
            spec = ".2f" if r["config"] not in LOGIN else ".1f"
            ratio_text += f" ({low:{spec}}–{high:{spec}})"
        target = r.get("target")
        target_text = "" if target is None else (f"≥ {target:g}×" if r["config"] in LOGIN
                                                 else f"≥ {target:g}")
        if r["config"] == "login_module" and "p99_no_worse" in r:
            target_text += ", p99 ≤ Python"
        state = verdict(r)
        if r.get("resumed_share") is not None:
            state = (state + " " if state else "") + f"({r['resumed_share']:.0%} resumed)"
        if r.get("failed_rounds"):
            state = (state + " " if state else "") + f"({r['failed_rounds']} FAILED rounds)"
        rows.append([r["scenario"], r["config"], fmt(r.get("rps"), ",.0f"),
                     fmt(r.get("p50_ms"), ".2f"), fmt(r.get("p99_ms"), ".2f"),
                     ratio_text, target_text, state])
    for name, c in data["configs"].items():
        if not c["available"] and not c.get("peer"):
            rows.append(["all", name, "NOT AVAILABLE", "", "", "", "", c["error"] or ""])
    if markdown:
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "|".join("---:" if i in (2, 3, 4, 5) else "---"
                                    for i in range(len(head))) + "|")
        for row in rows:
            cells = [escape(str(c), quote=False).replace("|", "\\|") for c in row]
            if cells[1] != "baseline" and cells[1] != "login_python":
                cells[1] = f"`{cells[1]}`"
            lines.append("| " + " | ".join(cells) + " |")
    else:
        widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
        widths[-1] = 0
        for row in [head] + rows:
            lines.append("  ".join(str(c).rjust(w) if i in (2, 3, 4, 5) else str(c).ljust(w)
                                   for i, (c, w) in enumerate(zip(row, widths))).rstrip())
    return lines


def peer_lines(data, markdown):
    """The module's reference configuration (`identity`) and each peer, per scenario: req/s,
    latency, and the module's throughput over the peer's (median of the per-round ratios)."""
    names = peers(data)
    reference = data.get("peer_reference", "identity")
    summary = {(r["config"], r["scenario"]): r for r in data.get("summary", [])}
    rows = []
    for scenario in data["scenarios"]:
        if not any((name, scenario) in summary for name in names):
            continue
        for name in [reference] + names:
            r = summary.get((name, scenario))
            if r is None:
                continue
            ratio = r.get("reference_to_peer")
            text = fmt(ratio, ".2f")
            low, high = r.get("reference_to_peer_range") or (None, None)
            if low is not None and high > low:
                text += f" ({low:.2f}–{high:.2f})"
            state = ""
            if r.get("resumed_share") is not None:
                state = f"({r['resumed_share']:.0%} resumed)"
            if r.get("failed_rounds"):
                state = (state + " " if state else "") + f"({r['failed_rounds']} FAILED rounds)"
            rows.append([scenario, name if name in names else f"nginx + module ({name})",
                         fmt(r.get("rps"), ",.0f"), fmt(r.get("p50_ms"), ".2f"),
                         fmt(r.get("p99_ms"), ".2f"), text if name in names else "", state])
    for name in names:
        c = data["configs"][name]
        if not c["available"]:
            rows.append(["all", name, "NOT AVAILABLE", "", "", "", c["error"] or ""])
    head = ["scenario", "server", "req/s", "p50 ms", "p99 ms", f"{reference} ÷ server", ""]
    return simple_table(head, rows, markdown, left=2)


def signature_lines(data, markdown):
    """The token's instructions per new connection: the token configuration's per new
    connection minus `identity`'s; against the same figure from the run of
    SIGNATURE_BEFORE_DATE, when every new connection signed a token."""
    per = {c["config"]: c["instructions_per"] for c in data.get("callgrind") or []
           if c["kind"] == "connection"}
    rows = []
    for config, before in SIGNATURE_BEFORE.items():
        after = per.get(config) - per[SIGNATURE_REFERENCE] if config in per and \
            SIGNATURE_REFERENCE in per else None
        rows.append([config, f"{before:,}", fmt(after, ",.0f"),
                     fmt(after / before if after is not None else None, ".2f")])
    head = ["configuration", f"{SIGNATURE_BEFORE_DATE}: a signature per connection",
            "this run: one token per authentication", "this run ÷ before"]
    return simple_table(head, rows, markdown)


def memory_lines(data, markdown):
    """One group of rows per kind, named on its first row; the added bytes are against the
    baseline of the same kind."""
    rows = []
    kind = None
    for m in data.get("memory_summary") or []:
        added = m.get("added_bytes_per_connection")
        label = MEMORY_KINDS[m["kind"]] if m["kind"] != kind else ""
        kind = m["kind"]
        rows.append([label, m["config"], fmt(m["bytes_per_connection"], ",.0f"),
                     fmt(added, "+,.0f", ""),
                     f"≤ {m['target']:,}" if "target" in m else "", verdict(m)])
    head = ["client certificates", "configuration", "bytes per idle connection",
            "added by the module", "target", ""]
    return simple_table(head, rows, markdown, left=2)


def callgrind_lines(data, markdown):
    per = {}
    for c in data.get("callgrind") or []:
        per.setdefault(c["config"], {})[c["kind"]] = c["instructions_per"]
    rows = []
    for config, kinds in per.items():
        row = [config]
        for kind in ("request", "connection", "resumed connection"):
            value = kinds.get(kind)
            row.append(fmt(value, ",.0f"))
            for ref in ("baseline", "plain"):
                ref_value = per.get(ref, {}).get(kind)
                row.append(fmt(value - ref_value, "+,.0f", "") if value is not None
                           and ref_value is not None and config != ref else "")
        rows.append(row)
    head = ["configuration", "per keep-alive request", "vs baseline", "vs plain",
            "per new connection", "vs baseline", "vs plain",
            "per resumed connection", "vs baseline", "vs plain"]
    return simple_table(head, rows, markdown)


def simple_table(head, rows, markdown, left=1):
    """The first `left` columns (names) aligned left, the others (numbers) right."""
    if not rows:
        return ["(not measured)"]
    if markdown:
        return (["| " + " | ".join(head) + " |",
                 "|" + "|".join("---" if i < left else "---:" for i in range(len(head))) + "|"]
                + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    return ["  ".join(str(c).ljust(w) if i < left else str(c).rjust(w)
                      for i, (c, w) in enumerate(zip(row, widths))).rstrip()
            for row in [head] + rows]


def print_table(data):
    print()
    print(f"Throughput ({data['settings']['client']}, {data['settings']['duration_s']:g} s x "
          f"{data['settings']['rounds']} rounds; medians; ratio to the baseline runs around each run, "
          "login_module to login_python):")
    for line in table_lines(data, markdown=False):
        print("  " + line)
    print(f"\nPeers (the same job on the same core; {data.get('peer_reference', 'identity')} "
          "÷ server: median of the per-round ratios):")
    for line in peer_lines(data, markdown=False):
        print("  " + line)
    print("\nMemory (nginx worker RSS):")
    for line in memory_lines(data, markdown=False):
        print("  " + line)
    print("\nInstructions (callgrind; a new connection = full handshake + one request, "
          "a resumed one = session cache + one request):")
    for line in callgrind_lines(data, markdown=False):
        print("  " + line)
    print("\nInstructions per token signature (per new connection, token_<alg> minus "
          f"{SIGNATURE_REFERENCE}):")
    for line in signature_lines(data, markdown=False):
        print("  " + line)
    print()


def chart_svg(data):
    """Horizontal bars: each configuration's throughput ratio to the baseline, per scenario,
    with its target."""
    rows = [r for r in throughput_rows(data) if r["config"] not in LOGIN and "ratio" in r]
    bar_h, gap, left, width, top = 18, 6, 260, 420, 40
    scale_max = max([1.1] + [r["ratio"] * 1.05 for r in rows])
    height = top + len(rows) * (bar_h + gap) + 40
    x = lambda v: left + v / scale_max * width
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 90}" '
           f'height="{height}" font-family="sans-serif" font-size="12">',
           '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="{left}" y="20" font-size="14" font-weight="bold">Throughput relative to '
           'nginx without the module (1.0 = same)</text>']
    for tick in [i / 10 for i in range(0, int(scale_max * 10) + 1, 2)]:
        out.append(f'<line x1="{x(tick):.1f}" y1="{top - 6}" x2="{x(tick):.1f}" '
                   f'y2="{height - 30}" stroke="#ddd"/>')
        out.append(f'<text x="{x(tick):.1f}" y="{height - 16}" text-anchor="middle" '
                   f'fill="#555">{tick:.1f}</text>')
    for i, r in enumerate(rows):
        y = top + i * (bar_h + gap)
        color = "#999" if "met" not in r else ("#2e8b57" if r["met"] else "#c0392b")
        out.append(f'<text x="{left - 8}" y="{y + 13}" text-anchor="end">'
                   f'{escape(r["scenario"])} · {escape(r["config"])}</text>')
        out.append(f'<rect x="{left}" y="{y}" width="{x(r["ratio"]) - left:.1f}" '
                   f'height="{bar_h}" fill="{color}"/>')
        out.append(f'<text x="{x(r["ratio"]) + 4:.1f}" y="{y + 13}">{r["ratio"]:.3f}</text>')
        if "target" in r:
            out.append(f'<line x1="{x(r["target"]):.1f}" y1="{y - 2}" x2="{x(r["target"]):.1f}" '
                       f'y2="{y + bar_h + 2}" stroke="black" stroke-width="2"/>')
    out.append(f'<text x="{left}" y="{height - 2}" fill="#555">black mark: target; green: met; '
               'red: not met; grey: no target</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


METHOD = """\
## How it is measured

`scripts/bench` (see its header for options) does everything on 127.0.0.1 of one machine:

- **nginx** (the release build this repository makes, {nginx}) runs one worker pinned to
  CPU {server_cpu} (`worker_cpu_affinity`); **oha** runs on CPU {client_cpu} with one worker
  thread. The module is loaded in every configuration; the baseline locations just do not use
  it, so the ratios isolate the per-request work of its directives.
- Every configuration is a location answering with `empty_gif` plus a response header with the
  identity (`$ssl_client_s_dn` for the baseline, `$auth_cert_identity` or `$auth_cert_token`
  for the module). `empty_gif` rather than `return`: `return` answers in the rewrite phase,
  before the access phase in which the module checks the request.
- Scenarios: HTTP/1.1 keep-alive (32 connections), HTTP/2 keep-alive (4 connections × 8
  streams), a new connection per request with a full handshake (server: `ssl_session_cache
  off; ssl_session_tickets off`, since oha always resumes), and a new connection per request
  with a resumed session (server: session cache on, tickets off).
- `identity_zone` needs `auth_cert_zone` in the http block, where it would count the requests
  of every other configuration too: it runs in a second nginx like the first (one worker on
  the same CPU), whose servers also hold an `auth_cert_metrics` location, not requested during
  the runs (the counting happens on every request anyway).
- **Peers**: HAProxy and Apache do the same job on the same CPU: TLS with client certificate
  verification, the identity from the subject into an `X-User` response header, a fixed 200
  answer. HAProxy ({haproxy}): one thread (`nbthread 1`), `verify required`, the identity from
  `ssl_c_s_dn(UID)`, else `ssl_c_s_dn(CN)`, answered by `http-request return`. Apache
  ({apache}): mod_ssl and the event MPM, one process with 64 threads, `SSLVerifyClient
  require`, `SSLUserName SSL_CLIENT_S_DN_UID`, `Header set X-User` from it, a 2-byte static
  file. Each runs as two instances, one per listener as nginx's two servers, since both set
  the session cache for the whole process: one with a session cache (tickets off), one
  without resumption. They are measured over HTTP/1.1 in the keep-alive, full-handshake and
  resumed scenarios, in the same rounds as the other configurations.
- Each round runs every scenario over every configuration, in reverse order every other round;
  the table shows medians over rounds, and each ratio is the median of the per-round ratios to
  the baseline.
- Each run is checked: oha's status distribution must hold only 200s, and the nginx access log
  must show the run's requests with status 200, `$ssl_client_verify` SUCCESS,
  `$auth_cert_status` ok (module configurations), no resumed session in full-handshake runs
  and resumed sessions in resumption runs. Before measuring, curl checks over HTTP/1.1 and
  HTTP/2 that each location answers with the expected identity or token. The peers are
  checked alike from their own counts: HAProxy's frontend counters (statistics socket:
  responses by class, TLS sessions new and reused, failed handshakes), Apache's access log
  (status, `SSL_SESSION_RESUMED`, `SSL_CLIENT_VERIFY`, the connection's request count; written
  unbuffered, one write per request, since a buffered log keeps lines in each thread's buffer),
  and curl checks that their answer carries the identity.
- **Login**: `auth_cert_login` against nginx forwarding `$ssl_client_escaped_cert` to a Python
  service (`bench/login_service.py`: gunicorn, {login_workers} sync workers, gunicorn's advice
  of 2 × cores + 1 for the one core they share with nginx, pinned to it; `cryptography`
  parses the PEM, PyJWT signs ES256), which checks the peer network, takes UID then CN and
  answers the same JSON.
- **Memory**: worker RSS (`VmRSS`) of a fresh nginx with the measured location alone (a
  location that reads a large file at start-up, as `identity_crl` does, would leave freed heap
  for the connections to fill unseen) before and after {connections} idle
  keep-alive connections, each with a client certificate and one request (`bench/client.py`),
  measured twice: with one certificate for all connections (the one the other measurements
  use), and with a certificate per connection ({connections} certificates from the same CA
  with the same key and extensions, each with its own subject UID and serial). Where the
  module shares one parsed certificate between the connections that present the same
  certificate, the first shows the sharing and the second the worst case. The bytes added by
  the module are against the baseline of the same kind.
- **Instructions**: nginx as a single process with the measured location alone under
  `valgrind --tool=callgrind`, counting instructions executed by nginx, OpenSSL and the
  module, free of timing noise. Per
  keep-alive request: one connection is warmed up, the counters are zeroed, {cg_requests}
  requests are sent on it and the counters dumped. Per new connection: the same with
  {cg_connections} connections made one after the other, each a full handshake (the client
  never resumes) and one request. Per resumed connection: the same, each connection resuming
  the session of the one before from nginx's shared session cache. HAProxy runs the same way
  (`haproxy -db`, one thread). Apache runs as `apache2 -X` (one process), as the user it would
  serve as, where callgrind_control cannot reach it: it is counted from start to exit twice,
  with N and with 2N requests or connections, and the difference divided by N, which leaves
  out start-up, warm-up and shutdown.
- **The token per new connection**: the token configuration's instructions per new
  connection minus those of `identity`. On 2026-11-30 every new connection signed a token, so
  that was the cost of one signature (RustCrypto). Tokens are now kept per authentication,
  the certificate and the second of its handshake: the connections of one client certificate
  made within one second share a token, so this run's figure is mostly reuse, not the cost of
  a signature with OpenSSL, which this benchmark does not isolate.
"""


def cg_count(data, kind):
    return next((c["count"] for c in data.get("callgrind") or [] if c["kind"] == kind), "N")


def write_docs(data, docs: Path, json_name):
    docs.mkdir(exist_ok=True)
    (docs / "benchmarks-ratios.svg").write_text(chart_svg(data))
    m = data["machine"]
    s = data["settings"]
    lines = ["# Benchmarks", ""]
    if data["mode"] == "quick" or data.get("note"):
        lines += [f"> **{data.get('note') or 'Smoke test (--quick): the numbers mean nothing.'}**",
                  ""]
    lines += [
        "The cost of the module against plain nginx and against the service it replaces, "
        "measured by `scripts/bench` in one run on one machine. Regenerate this page with "
        "`scripts/bench` (or `scripts/bench --report target/bench/<run>.json`).",
        "",
        f"Run {data['date']} ({json_name}); {s['duration_s']:g} s per run, "
        f"{s['rounds']} rounds, load generator {m['load_generator']}.",
        "",
        "| machine | |",
        "|---|---|",
        f"| CPU | {m['cpu']}, {m['cores']} cores |",
        f"| system | {m.get('os', '')}, Linux {m['kernel']} |",
        f"| nginx | {m['nginx']}, {m['openssl']} |",
        f"| login service | {m.get('login_service') or '–'} |",
        "| load average (1, 5, 15 min) | start {}, end {} |".format(
            ", ".join(f"{v:.2f}" for v in m["loadavg_start"]),
            ", ".join(f"{v:.2f}" for v in m.get("loadavg_end", []))),
        "",
        "## Throughput and latency",
        "",
        "![Throughput ratios to the baseline](benchmarks-ratios.svg)",
        "",
        *table_lines(data, markdown=True),
        "",
        "`ratio` is the median over rounds of the ratio to the `baseline` runs just before and "
        "after (for `login_module`: to `login_python`), with the range over rounds in "
        "parentheses. Configurations:",
        "",
    ]
    for name, c in data["configs"].items():
        if c.get("peer"):
            continue
        directives = " ".join(c["directives"].split()) or "(no module directive)"
        if c.get("http"):
            directives = f"{c['http']} (http)` + `{directives}"
        state = "" if c["available"] else f" — **not available in this build**: {c['error']}"
        lines.append(f"- `{name}`: {c['title']}: `{directives}`{state}")
    if peers(data):
        versions = m.get("peers") or {}
        lines += ["", "## Peers", "",
                  "The same job done by other servers on the same core (TLS with client "
                  "certificate verification, the identity in a response header, a fixed 200 "
                  "answer), alternated with the other configurations in every round. The last "
                  f"column is the module's `{data.get('peer_reference', 'identity')}` "
                  "throughput over the server's, the median of the per-round ratios.", "",
                  *peer_lines(data, markdown=True), ""]
        for name in peers(data):
            c = data["configs"][name]
            version = f" ({versions[name]})" if name in versions else ""
            lines.append(f"- `{name}`{version}: {c['title']}")
    lines += ["", "## Memory", "", *memory_lines(data, markdown=True), "",
              "## Instructions (callgrind)", "", *callgrind_lines(data, markdown=True), "",
              "The token per new connection: the token configuration's instructions per new "
              f"connection minus those of `{SIGNATURE_REFERENCE}`. On {SIGNATURE_BEFORE_DATE} "
              "every new connection signed a token with the RustCrypto crates (p256, "
              "ed25519-dalek, rsa), so the first column is the cost of one signature then. "
              "Tokens are now kept per authentication (the certificate and the second of its "
              "handshake): the benchmark's connections, one client certificate, made many per "
              "second, share a token, so this run's column is mostly reuse, not the cost of an "
              "OpenSSL signature, which this benchmark does not isolate.", "",
              *signature_lines(data, markdown=True), ""]
    notes = Path(__file__).with_name("NOTES.md")
    if notes.exists():
        lines += ["## Notes", "", notes.read_text().strip(), ""]
    if data.get("failures"):
        lines += ["## Failed checks", ""] + [f"- {escape(f)}" for f in data["failures"]] + [""]
    versions = m.get("peers") or {}
    lines.append(METHOD.format(nginx=m["nginx"], server_cpu=s["server_cpu"],
                               haproxy=versions.get("haproxy", "not measured"),
                               apache=versions.get("apache", "not measured"),
                               client_cpu=s["client_cpu"], login_workers=s["login_workers"],
                               connections=s["idle_connections"],
                               cg_requests=cg_count(data, "request"),
                               cg_connections=cg_count(data, "connection")))
    (docs / "benchmarks.md").write_text("\n".join(lines))
