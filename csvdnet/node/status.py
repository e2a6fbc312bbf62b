"""What the node is doing: ``csvdnet node status`` and the HTTP health / metrics endpoint.

Both read the study records on disk (:mod:`csvdnet.node.queue`), so ``status`` works whether the
node runs or not. The endpoint (``http.port`` in node.yaml; loopback unless ``http.bind`` says
otherwise) answers ``/metrics`` in the Prometheus text format (``prometheus_client``) and
``/health`` with a JSON line (``ok`` while the storage SCP listens and the rating loop is alive).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterable

from csvdnet.node.queue import STATES, read_records

__all__ = ["HealthServer", "format_status", "summarize"]


def _span(times: dict, start: str, end: str) -> float | None:
    return times[end] - times[start] if start in times and end in times else None


def summarize(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Queue counts, the last error and per-study timings from study records."""
    records = list(records)
    counts = {state: 0 for state in STATES}
    studies, last_error = [], None
    for record in records:
        counts[record["state"]] += 1
        times = record.get("times", {})
        errors = [(record.get("updated", 0), record["error"])] if record.get("error") else []
        errors += [(s.get("at") or s.get("next", 0), s["error"])
                   for s in record.get("sends", {}).values() if s.get("error")]
        for when, text in errors:
            if last_error is None or when >= last_error["at"]:
                last_error = {"at": when, "study_uid": record["study_uid"], "error": text}
        studies.append({"study_uid": record["study_uid"], "state": record["state"],
                        "revision": record.get("revision", 0),
                        "instances": record.get("rated_instances"),
                        "rating_seconds": record.get("rating_seconds"),
                        "predict_seconds": record.get("predict_seconds"),
                        "received_to_sent_seconds": _span(times, "received", "sent"),
                        "error": record.get("error") or next(
                            (s["error"] for s in record.get("sends", {}).values()
                             if s.get("error") and not s.get("done")), None)})
    return {"counts": counts, "last_error": last_error, "studies": studies}


def format_status(summary: dict[str, Any]) -> str:
    """The text ``csvdnet node status`` prints."""
    lines = ["studies: " + ", ".join(f"{k} {v}" for k, v in summary["counts"].items())]
    error = summary["last_error"]
    if error:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(error["at"]))
        lines.append(f"last error ({when}, study {error['study_uid']}): {error['error']}")
    for study in summary["studies"]:
        parts = [f"{study['state']:<8}", study["study_uid"], f"rev {study['revision']}"]
        for name in ("instances", "rating_seconds", "received_to_sent_seconds"):
            value = study[name]
            if value is not None:
                parts.append(f"{name.replace('_seconds', '')} "
                             f"{value:.1f} s" if "seconds" in name else f"{name} {value}")
        if study["error"]:
            parts.append(f"error: {study['error']}")
        lines.append("  ".join(parts))
    return "\n".join(lines)


class _Collector:
    """prometheus_client collector reading the records at each scrape."""

    def __init__(self, state_dir: Path, live: Callable[[], dict[str, float]]) -> None:
        self.state_dir = state_dir
        self.live = live

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        summary = summarize(read_records(self.state_dir))
        studies = GaugeMetricFamily("csvdnet_node_studies", "Studies by queue state",
                                    labels=["state"])
        for state, count in summary["counts"].items():
            studies.add_metric([state], count)
        yield studies
        rated = [s["rating_seconds"] for s in summary["studies"] if s["rating_seconds"]]
        yield GaugeMetricFamily("csvdnet_node_last_rating_seconds",
                                "Wall seconds of the latest rating", value=rated[-1] if rated else 0)
        live = self.live()
        for name, help_text in (("instances", "Instances written to the spool"),
                                ("refused", "Instances refused (malformed, quota)"),
                                ("rejected", "Associations rejected (allow-list)")):
            yield CounterMetricFamily(f"csvdnet_node_{name}", help_text, value=live.get(name, 0))
        yield GaugeMetricFamily("csvdnet_node_spool_bytes", "Bytes held in the spool",
                                value=live.get("spool_bytes", 0))
        yield GaugeMetricFamily("csvdnet_node_resident_bytes", "Resident memory of the node",
                                value=live.get("resident_bytes", 0))


class HealthServer:
    """``/metrics`` and ``/health`` on a small threaded HTTP server."""

    def __init__(self, bind: str, port: int, state_dir: Path,
                 live: Callable[[], dict[str, float]], healthy: Callable[[], bool]) -> None:
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.exposition import CONTENT_TYPE_LATEST

        registry = CollectorRegistry()
        registry.register(_Collector(Path(state_dir), live))

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path.split("?")[0] == "/metrics":
                    body, kind, code = generate_latest(registry), CONTENT_TYPE_LATEST, 200
                elif self.path.split("?")[0] == "/health":
                    ok = healthy()
                    body = json.dumps({"status": "ok" if ok else "unhealthy"}).encode() + b"\n"
                    kind, code = "application/json", 200 if ok else 503
                else:
                    body, kind, code = b"not found\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:  # scrapes stay out of the node's log
                pass

        self.server = ThreadingHTTPServer((bind, port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                       name="node-http")

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
