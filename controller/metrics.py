"""Prometheus text exposition and `/healthz`, with nothing but the standard library."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Metrics:
    """Counters, gauges and summaries (count, sum, and the last values' quantiles) by name and labels."""

    def __init__(self, prefix: str = "epgbridge") -> None:
        self.prefix = prefix
        self._lock = threading.Lock()
        self._help: dict[str, tuple[str, str]] = {}
        self._values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._samples: dict[str, list[float]] = {}

    def describe(self, name: str, kind: str, text: str) -> None:
        self._help[name] = (kind, text)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self._values[(name, tuple(sorted(labels.items())))] = value

    def observe(self, name: str, seconds: float) -> None:
        with self._lock:
            samples = self._samples.setdefault(name, [])
            samples.append(seconds)
            del samples[:-1000]
            self._values[(f"{name}_count", ())] = self._values.get((f"{name}_count", ()), 0.0) + 1
            self._values[(f"{name}_sum", ())] = self._values.get((f"{name}_sum", ()), 0.0) + seconds

    def get(self, name: str, **labels: str) -> float:
        with self._lock:
            return self._values.get((name, tuple(sorted(labels.items()))), 0.0)

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            values = dict(self._values)
            samples = {k: sorted(v) for k, v in self._samples.items()}
        for name, (kind, text) in sorted(self._help.items()):
            full = f"{self.prefix}_{name}"
            lines += [f"# HELP {full} {text}", f"# TYPE {full} {kind}"]
            if kind == "summary":
                data = samples.get(name, [])
                for q in (0.5, 0.9, 0.99):
                    if data:
                        lines.append(f'{full}{{quantile="{q}"}} {data[min(len(data) - 1, int(q * len(data)))]:.6f}')
                lines.append(f"{full}_count {values.get((f'{name}_count', ()), 0.0):g}")
                lines.append(f"{full}_sum {values.get((f'{name}_sum', ()), 0.0):.6f}")
                continue
            for (n, labels), v in sorted(values.items()):
                if n == name:
                    lab = ",".join(f'{k}="{val}"' for k, val in labels)
                    lines.append(f"{full}{{{lab}}} {v:g}" if lab else f"{full} {v:g}")
        return "\n".join(lines) + "\n"


def serve(metrics: Metrics, address: str, healthy: Callable[[], bool | tuple[bool, str]]) -> ThreadingHTTPServer:
    """Serve `/metrics`, `/healthz` (ready: `healthy` answers True/False, or (ok, one line saying why) for the
    body) and `/livez` (the process serves: for liveness probes, which should not restart a process for what it
    is waiting for) on HOST:PORT (":9090" = every address) in a daemon thread."""
    host, _, port = address.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                body, code, ctype = metrics.render().encode(), 200, "text/plain; version=0.0.4"
            elif self.path == "/livez":
                body, code, ctype = b"ok\n", 200, "text/plain; charset=utf-8"
            elif self.path == "/healthz":
                answer = healthy()
                ok, text = answer if isinstance(answer, tuple) else (answer, "ok" if answer else "not ready")
                body, code, ctype = f"{text}\n".encode(), (200 if ok else 503), "text/plain; charset=utf-8"
            else:
                body, code, ctype = b"not found\n", 404, "text/plain"
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((host or "0.0.0.0", int(port)), Handler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
