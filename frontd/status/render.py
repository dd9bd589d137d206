"""The three views of a status snapshot: JSON, Prometheus text exposition, and an HTML page.

Pure functions from a `metrics.Snapshot` (and which routes use each backend) to bytes. The JSON
schema is documented in docs/status.md; the Prometheus names are all `frontd_*` (text exposition
format 0.0.4); the HTML page refreshes itself and has a table per backend.
"""

from __future__ import annotations

import html
import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from frontd import SERVER_SOFTWARE
from frontd.certs.files import CertificateStatus
from frontd.config.model import Config
from frontd.status.metrics import CLASSES, LATENCY_BOUNDS, BackendView, Counts, Snapshot, backend_key

JSON_VERSION = 1
PERCENTILES: tuple[tuple[str, float], ...] = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))
HTML_REFRESH = 5  # seconds between reloads of the HTML view
PROMETHEUS_CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


def backend_routes(config: Config) -> dict[str, list[str]]:
    """For each backend address, the routes that use it, as "host/prefix" (the first vhost name)."""
    uses: dict[str, list[str]] = {}
    for vhost in config.vhosts:
        host = vhost.names[0] if vhost.names else "(default)"
        for route in vhost.routes:
            addresses = [t.address for t in route.proxy] if route.kind == "proxy" else list(route.backends)
            for address in addresses:
                uses.setdefault(backend_key(address), []).append(f"{host}{route.prefix}")
    return uses


# -- JSON -----------------------------------------------------------------------------------------


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _latency(counts: Counts) -> dict[str, Any]:
    buckets: list[dict[str, Any]] = []
    cumulative = 0
    for bound, count in zip((*LATENCY_BOUNDS, math.inf), counts.buckets):
        cumulative += count
        buckets.append({"le": bound if bound != math.inf else "+Inf", "count": cumulative})
    doc: dict[str, Any] = {"count": cumulative, "sum": round(counts.latency_sum_us / 1e6, 6)}
    for name, q in PERCENTILES:
        doc[name] = _round(counts.percentile(q))
    doc["buckets"] = buckets
    return doc


def _counts(counts: Counts) -> dict[str, Any]:
    return {
        "requests": counts.requests,
        "responses": dict(zip(CLASSES, counts.responses)),
        "bytes_sent": counts.bytes_sent,
        "latency": _latency(counts),
    }


def _backend_json(backend: BackendView, routes: list[str]) -> dict[str, Any]:
    return {
        "address": backend.address,
        "kind": backend.kind,
        "routes": routes,
        "configured": backend.configured,
        "state": "up" if backend.up else "down",
        "down_workers": backend.down_workers,
        "failures": backend.failures,
        "last_failure": backend.last_failure / 1e6 if backend.last_failure else None,
        "processes": backend.processes,
        "restarts": backend.restarts,
        **_counts(backend.counts),
        "workers": [
            {"worker": w.number, "down": w.down, "failures": w.failures, "requests": w.counts.requests,
             "responses": dict(zip(CLASSES, w.counts.responses))}
            for _, w in sorted(backend.workers.items())
        ],
    }


AcmeStates = Mapping[str, dict[str, Any]]  # certs/acme.py status(): by the vhost's first name


def _certificate_json(cert: CertificateStatus, acme: AcmeStates) -> dict[str, Any]:
    found = cert.facts
    return {
        "vhost": cert.source.label,
        "source": cert.source.source,
        "file": cert.source.cert_path,
        "names": list(found.names) if found else [],
        "issuer": found.issuer if found else None,
        "not_after": found.not_after if found else None,
        "error": cert.error,
        "acme": acme.get(cert.source.label) if cert.source.source == "acme" else None,
    }


def to_dict(snap: Snapshot, routes: dict[str, list[str]],
            certificates: Sequence[CertificateStatus] = (), acme: AcmeStates | None = None) -> dict[str, Any]:
    """The JSON document as Python values (schema: docs/status.md)."""
    return {
        "version": JSON_VERSION,
        "server": SERVER_SOFTWARE,
        "time": round(snap.now, 6),
        "master_pid": snap.master_pid,
        "started": round(snap.started, 6),
        "uptime": round(snap.uptime, 3),
        "config_loaded": round(snap.config_loaded, 6),
        "generation": snap.generation,
        "answered_by": snap.answered_by,
        "totals": {**_counts(snap.totals), "active_connections": snap.active, "connections": snap.connections,
                   "auth_failures": snap.auth_failures,
                   "http2": {"active_connections": snap.http2_active, "connections": snap.http2_connections,
                             "streams": snap.http2_streams}},
        "workers": [
            {"worker": w.number, "pids": w.pids, "generation": w.generation,
             **_counts(w.counts), "active_connections": w.active, "connections": w.connections}
            for w in snap.workers
        ],
        "backends": [_backend_json(b, routes.get(b.address, [])) for b in snap.backends],
        "certificates": [_certificate_json(c, acme or {}) for c in certificates],
    }


def render_json(snap: Snapshot, routes: dict[str, list[str]],
                certificates: Sequence[CertificateStatus] = (), acme: AcmeStates | None = None) -> bytes:
    return json.dumps(to_dict(snap, routes, certificates, acme), separators=(",", ":")).encode() + b"\n"


# -- Prometheus text exposition format 0.0.4 ------------------------------------------------------


def _label_value(value: str) -> str:
    # Exposition format: backslash, double quote and line feed are escaped in label values.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    text = ",".join(f'{name}="{_label_value(value)}"' for name, value in pairs)
    return "{" + text + "}" if text else ""


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class _Exposition:
    """Collects families: each name gets its HELP and TYPE lines once, then all its samples."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str,
               samples: Iterable[tuple[list[tuple[str, str]], float]], suffix: str = "") -> None:
        self.lines.append(f"# HELP {name}{suffix} {help_text}")
        self.lines.append(f"# TYPE {name}{suffix} {kind}")
        for labels, value in samples:
            self.lines.append(f"{name}{suffix}{_labels(labels)} {_number(value)}")

    def histogram(self, name: str, help_text: str, series: Iterable[tuple[list[tuple[str, str]], Counts]]) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} histogram")
        for labels, counts in series:
            cumulative = 0
            for bound, count in zip((*LATENCY_BOUNDS, math.inf), counts.buckets):
                cumulative += count
                le = "+Inf" if bound == math.inf else repr(bound)
                self.lines.append(f"{name}_bucket{_labels([*labels, ('le', le)])} {cumulative}")
            self.lines.append(f"{name}_sum{_labels(labels)} {_number(counts.latency_sum_us / 1e6)}")
            self.lines.append(f"{name}_count{_labels(labels)} {cumulative}")

    def text(self) -> bytes:
        return ("\n".join(self.lines) + "\n").encode()


def render_prometheus(snap: Snapshot, routes: dict[str, list[str]],
                      certificates: Sequence[CertificateStatus] = (), acme: AcmeStates | None = None) -> bytes:
    out = _Exposition()
    out.family("frontd_start_time_seconds", "gauge", "When the master process started, in seconds since the epoch.",
               [([], snap.started)])
    out.family("frontd_uptime_seconds", "gauge", "Seconds since the master process started.", [([], snap.uptime)])
    out.family("frontd_config_load_time_seconds", "gauge",
               "When the running configuration was loaded, in seconds since the epoch.", [([], snap.config_loaded)])
    out.family("frontd_config_generation", "gauge",
               "Configurations loaded since start: 1, then one more per successful reload.", [([], snap.generation)])
    workers = [([("worker", str(w.number))], w) for w in snap.workers]
    out.family("frontd_worker_processes", "gauge",
               "Live processes with this worker number (two while a reload replaces one).",
               [(labels, len(w.pids)) for labels, w in workers])
    out.family("frontd_requests_total", "counter", "Requests answered (each access log line).",
               [(labels, w.counts.requests) for labels, w in workers])
    out.family("frontd_responses_total", "counter", "Responses by status class.",
               [([*labels, ("class", cls)], n) for labels, w in workers
                for cls, n in zip(CLASSES, w.counts.responses)])
    out.family("frontd_sent_bytes_total", "counter", "Response body bytes sent to clients.",
               [(labels, w.counts.bytes_sent) for labels, w in workers])
    out.family("frontd_connections_active", "gauge", "Client connections open now.",
               [(labels, w.active) for labels, w in workers])
    out.family("frontd_connections_total", "counter", "Client connections accepted.",
               [(labels, w.connections) for labels, w in workers])
    out.family("frontd_http2_connections_active", "gauge", "HTTP/2 client connections open now (among the active).",
               [([], snap.http2_active)])
    out.family("frontd_http2_connections_total", "counter", "HTTP/2 client connections accepted (among all).",
               [([], snap.http2_connections)])
    out.family("frontd_http2_streams_total", "counter", "HTTP/2 streams opened by clients (each a request).",
               [([], snap.http2_streams)])
    out.family("frontd_auth_failures_total", "counter",
               "Requests whose Basic-auth credentials were wrong, unknown or malformed.",
               [([], snap.auth_failures)])
    out.histogram("frontd_request_duration_seconds",
                  "Time from a request's first byte to its last response byte handed to the kernel.",
                  [(labels, w.counts) for labels, w in workers])
    backends = [([("backend", b.address), ("kind", b.kind)], b) for b in snap.backends]
    out.family("frontd_backend_up", "gauge", "1 unless a live worker currently skips the backend after a failure.",
               [(labels, int(b.up)) for labels, b in backends])
    out.family("frontd_backend_down_workers", "gauge", "Live workers that currently skip the backend.",
               [(labels, b.down_workers) for labels, b in backends])
    out.family("frontd_backend_requests_total", "counter",
               "Requests answered by or on behalf of the backend (its connect failures included).",
               [(labels, b.counts.requests) for labels, b in backends])
    out.family("frontd_backend_responses_total", "counter", "Responses to the backend's requests, by status class.",
               [([*labels, ("class", cls)], n) for labels, b in backends
                for cls, n in zip(CLASSES, b.counts.responses)])
    out.family("frontd_backend_sent_bytes_total", "counter",
               "Response body bytes sent to clients for the backend's requests.",
               [(labels, b.counts.bytes_sent) for labels, b in backends])
    out.family("frontd_backend_failures_total", "counter", "Failed connection attempts to the backend.",
               [(labels, b.failures) for labels, b in backends])
    out.family("frontd_backend_processes", "gauge", "Backend processes frontd runs for this address.",
               [(labels, b.processes) for labels, b in backends])
    out.family("frontd_backend_restarts_total", "counter", "Backend processes frontd restarted after they died.",
               [(labels, b.restarts) for labels, b in backends])
    out.histogram("frontd_backend_request_duration_seconds",
                  "Duration of the backend's requests, from their first byte to their last response byte.",
                  [(labels, b.counts) for labels, b in backends])
    out.family("frontd_tls_certificate_expiry_timestamp_seconds", "gauge",
               "When the vhost's certificate expires, in seconds since the epoch.",
               [([("vhost", c.source.label), ("source", c.source.source)], c.facts.not_after)
                for c in certificates if c.facts is not None])
    states = [([("vhost", name)], state) for name, state in (acme or {}).items()]
    out.family("frontd_acme_failures", "gauge",
               "Consecutive failed attempts to obtain or renew the vhost's ACME certificate (0 after a success).",
               [(labels, state["failures"]) for labels, state in states])
    out.family("frontd_acme_next_attempt_timestamp_seconds", "gauge",
               "When the vhost's ACME certificate is next renewed or retried, in seconds since the epoch.",
               [(labels, state["retry_at"] or state["renew_at"]) for labels, state in states
                if state["retry_at"] or state["renew_at"]])
    return out.text()


# -- HTML -----------------------------------------------------------------------------------------

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; margin: 0 0 .3em; } h2 { font-size: 1.15em; margin: 1.4em 0 .4em; }
p.meta { color: #555; margin: 0 0 1em; }
table { border-collapse: collapse; margin: 0 0 1.2em; }
caption { text-align: left; font-weight: 600; padding: .3em 0; }
th, td { padding: .25em .7em; border-bottom: 1px solid #ddd; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; } th:first-child, td:first-child { text-align: left; }
tr.total td { font-weight: 600; border-top: 2px solid #999; }
.up { color: #fff; background: #2a7d2a; padding: 0 .4em; border-radius: 3px; }
.down { color: #fff; background: #b22; padding: 0 .4em; border-radius: 3px; }
.err { color: #b22; font-weight: 600; } .dim { color: #999; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def human_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms" if seconds < 0.1 else f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s"


def human_duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days}d"] if days else []
    if days or hours:
        parts.append(f"{hours}h")
    if days or hours or minutes:
        parts.append(f"{minutes}m")
    parts.append(f"{secs}s")
    return " ".join(parts)


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def _count_cells(counts: Counts) -> list[str]:
    cells = [f"{counts.requests}"]
    for cls, n in zip(CLASSES, counts.responses):
        cells.append(f'<span class="err">{n}</span>' if cls == "5xx" and n else str(n))
    cells.append(human_bytes(counts.bytes_sent))
    cells.extend(human_seconds(counts.percentile(q)) for _, q in PERCENTILES)
    return cells


_COUNT_HEADS = ["requests", *CLASSES, "sent", *(name for name, _ in PERCENTILES)]


def _row(cells: list[str], css: str = "") -> str:
    attr = f' class="{css}"' if css else ""
    return f"<tr{attr}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _head(names: list[str]) -> str:
    return "<tr>" + "".join(f'<th scope="col">{_e(n)}</th>' for n in names) + "</tr>"


def _backend_table(b: BackendView, routes: list[str], now: float) -> str:
    state = '<span class="up">UP</span>' if b.up else f'<span class="down">DOWN</span> in {b.down_workers} worker(s)'
    used = ", ".join(_e(r) for r in routes) if routes else (
        "" if b.configured else '<span class="dim">not in the running configuration</span>')
    facts = [f"failures {b.failures}"]
    if b.last_failure:
        facts.append(f"last {human_duration(now - b.last_failure / 1e6)} ago")
    if b.processes or b.restarts:
        facts.append(f"processes {b.processes}, restarts {b.restarts}")
    caption = (f"{_e(b.kind)} {_e(b.address)} {state}"
               + (f" &middot; {used}" if used else "") + " &middot; " + ", ".join(facts))
    heads = ["worker", *_COUNT_HEADS[:7], "failures", "health", *_COUNT_HEADS[7:]]
    rows = []
    for number, w in sorted(b.workers.items()):
        cells = _count_cells(w.counts)
        health = '<span class="down">down</span>' if w.down else "up"
        rows.append(_row([f"worker {number}", *cells[:7], str(w.failures), health, *cells[7:]]))
    total = _count_cells(b.counts)
    rows.append(_row(["total", *total[:7], str(b.failures), "up" if b.up else "down", *total[7:]], "total"))
    return (f'<table class="backend" id="backend-{b.id}"><caption>{caption}</caption>'
            f"<thead>{_head(heads)}</thead><tbody>{''.join(rows)}</tbody></table>")


def _acme_cell(state: dict[str, Any] | None) -> str:
    """A tls = "acme" certificate's state, next attempt and last error."""
    if state is None:
        return ""
    text = f'<span class="err">{_e(state["state"])}</span>' if state["state"] == "failed" else _e(state["state"])
    due = state["retry_at"] or state["renew_at"]
    if due:
        text += f", next attempt {_e(_when(due))}"
    if state["last_error"]:
        text += (f'<br><span class="err">{_e(state["last_error"])}</span>'
                 f' ({_e(_when(state["last_error_at"] or 0))}, {state["failures"]} failed in a row)')
    return text


def _certificate_table(certificates: Sequence[CertificateStatus], now: float, acme: AcmeStates) -> str:
    rows = []
    for cert in certificates:
        found = cert.facts
        if found is None:
            expiry = f'<span class="err">{_e(cert.error)}</span>'
            names = issuer = ""
        else:
            left = found.not_after - now
            css = "err" if left < 14 * 86400 else ""
            when = _e(_when(found.not_after))
            expiry = (f'<span class="{css}">{when} (in {human_duration(left)})</span>' if left > 0
                      else f'<span class="err">{when} (expired)</span>')
            names, issuer = _e(", ".join(found.names)), _e(found.issuer)
        rows.append(_row([_e(cert.source.label), names, issuer, expiry, _e(cert.source.source),
                          _e(cert.source.cert_path),
                          _acme_cell(acme.get(cert.source.label) if cert.source.source == "acme" else None)]))
    heads = ["vhost", "names", "issuer", "expires", "source", "file", "ACME"]
    return f'<table id="certificates"><thead>{_head(heads)}</thead><tbody>{"".join(rows)}</tbody></table>'


def render_html(snap: Snapshot, routes: dict[str, list[str]],
                certificates: Sequence[CertificateStatus] = (), acme: AcmeStates | None = None) -> bytes:
    meta = (f"{_e(SERVER_SOFTWARE)} &middot; master {snap.master_pid} &middot; up {human_duration(snap.uptime)}"
            f" &middot; configuration generation {snap.generation}, loaded {_e(_when(snap.config_loaded))}"
            f" &middot; answered by worker {snap.answered_by} at {_e(_when(snap.now))}"
            f" &middot; failed auth attempts {snap.auth_failures}"
            f" &middot; HTTP/2: {snap.http2_active} open, {snap.http2_connections} connections,"
            f" {snap.http2_streams} streams"
            f" &middot; refreshes every {HTML_REFRESH}s")
    worker_heads = ["worker", "pids", "generation", "active", "connections", *_COUNT_HEADS]
    worker_rows = []
    for w in snap.workers:
        pids = " ".join(str(p) for p in w.pids) or '<span class="dim">none</span>'
        worker_rows.append(_row([f"worker {w.number}", pids, str(w.generation or "–"), str(w.active),
                                 str(w.connections), *_count_cells(w.counts)]))
    worker_rows.append(_row(["total", "", "", str(snap.active), str(snap.connections),
                             *_count_cells(snap.totals)], "total"))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="refresh" content="{HTML_REFRESH}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>frontd status</title><style>{_STYLE}</style></head><body>",
        "<h1>frontd status</h1>",
        f'<p class="meta">{meta}</p>',
        "<h2>Workers</h2>",
        f'<table id="workers"><thead>{_head(worker_heads)}</thead><tbody>{"".join(worker_rows)}</tbody></table>',
        "<h2>Backends</h2>",
    ]
    if snap.backends:
        parts.extend(_backend_table(b, routes.get(b.address, []), snap.now) for b in snap.backends)
    else:
        parts.append('<p class="dim">No backends.</p>')
    if certificates:
        parts.extend(["<h2>Certificates</h2>", _certificate_table(certificates, snap.now, acme or {})])
    parts.append("</body></html>")
    return "\n".join(parts).encode() + b"\n"
