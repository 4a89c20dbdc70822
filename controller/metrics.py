"""Prometheus text exposition and `/healthz`, with nothing but the standard library: bounded in time and
connections, bound to loopback unless told otherwise."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from epg.errors import EpgbridgeError
from epg.text import shown


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


def split_address(address: str) -> tuple[str, int]:
    """HOST:PORT as Go's net.SplitHostPort reads it: an IPv6 host in brackets, an empty host for every
    address. Raises EpgbridgeError."""
    host, sep, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        sep = ""  # an IPv6 address needs its brackets: is "::1:9090" port 9090 of ::1, or no port?
    if not sep or not port.isascii() or not port.isdigit() or int(port) > 65535:
        raise EpgbridgeError(f"metrics address {shown(address)} must be HOST:PORT, like 127.0.0.1:9090, "
                             "[::1]:9090, or :9090 for every address")
    return host, int(port)


class _Server(ThreadingHTTPServer):
    """At most `max_connections` connections are served at once; the accept loop waits for a free one, so
    more wait in the listen backlog instead of each taking a thread."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], max_connections: int) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        self._slots.acquire()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


# An extra JSON endpoint: query parameters -> (HTTP status, a JSON-able answer).
Route = Callable[[Mapping[str, str]], tuple[int, Any]]


def serve(metrics: Metrics, address: str, healthy: Callable[[], bool | tuple[bool, str]], *, timeout: float = 5.0,
          deadline: float = 15.0, max_connections: int = 16,
          routes: Mapping[str, Route] | None = None) -> ThreadingHTTPServer:
    """Serve `/metrics`, `/healthz` and `/livez` on HOST:PORT in daemon threads (the CLI's default is loopback only,
    as kube-proxy's --metrics-bind-address; ":9090" is every address). A connection that sends nothing for
    `timeout` seconds, or is not done after `deadline` seconds, is closed; at most `max_connections` are
    served at once, so idle or slow clients cannot hold threads or keep a real request out for long. `healthy`
    answers True/False, or (ok, one line saying why) for the body of `/healthz` (ready); `/livez` answers 200
    while the process serves (for liveness probes, which should not restart a process for what it waits for).
    `routes`: more paths answered in JSON (the agent's `/drops`, `/drops/stats`), given the query parameters."""
    extra = dict(routes or {})
    host, port = split_address(address)
    per_read = timeout

    class Handler(BaseHTTPRequestHandler):
        timeout = per_read  # each read and write of the socket (StreamRequestHandler sets it)

        def setup(self) -> None:
            super().setup()
            self._expiry = threading.Timer(deadline, self._expire)  # the whole exchange (slow senders)
            self._expiry.daemon = True
            self._expiry.start()

        def finish(self) -> None:
            self._expiry.cancel()
            super().finish()

        def _expire(self) -> None:
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            if url.path in extra:
                query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
                try:
                    code, answer = extra[url.path](query)
                except ValueError as exc:
                    code, answer = 400, {"error": str(exc)}
                body, ctype = (json.dumps(answer) + "\n").encode(), "application/json"
            elif self.path == "/metrics":
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

    try:
        server = _Server((host or "0.0.0.0", port), Handler, max_connections)
    except OSError as exc:
        raise EpgbridgeError(f"cannot serve metrics on {shown(address)}: {exc.strerror or exc}") from None
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
