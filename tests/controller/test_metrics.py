"""/metrics and /healthz over a real socket, as Prometheus and the kubelet's probes read them."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from controller.cli import build_parser
from controller.metrics import Metrics, serve
from epg.errors import EpgbridgeError


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


def test_metrics_and_health_endpoints() -> None:
    m = Metrics()
    m.describe("apic_posts_total", "counter", "writes (POSTs) sent to the APIC")
    m.describe("sync_duration_seconds", "summary", "APIC sync duration")
    m.describe("applies_total", "counter", "ruleset transactions by kind")
    m.inc("apic_posts_total", 3)
    m.inc("applies_total", kind="delta")
    for seconds in (0.1, 0.2, 0.3):
        m.observe("sync_duration_seconds", seconds)
    healthy = {"ok": False}
    server = serve(m, "127.0.0.1:0", lambda: healthy["ok"])
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        status, ctype, body = get(f"{url}/metrics")
        assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
        lines = body.splitlines()
        assert "# TYPE epgbridge_apic_posts_total counter" in lines and "epgbridge_apic_posts_total 3" in lines
        assert 'epgbridge_applies_total{kind="delta"} 1' in lines
        assert 'epgbridge_sync_duration_seconds{quantile="0.5"} 0.200000' in lines
        assert "epgbridge_sync_duration_seconds_count 3" in lines
        assert get(f"{url}/healthz")[0] == 503
        assert get(f"{url}/livez")[0] == 200  # alive while not ready: liveness probes do not restart it
        healthy["ok"] = True
        assert get(f"{url}/healthz")[:1] == (200,)
        assert get(f"{url}/nope")[0] == 404
    finally:
        server.shutdown()


@pytest.mark.parametrize("address", ["127.0.0.1:0", ":0"])
def test_addresses(address: str) -> None:
    server = serve(Metrics(), address, lambda: True)
    try:
        assert get(f"http://127.0.0.1:{server.server_address[1]}/healthz")[0] == 200
    finally:
        server.shutdown()


def handler_threads() -> int:
    return sum(1 for t in threading.enumerate() if "process_request_thread" in t.name)


def test_idle_connections_do_not_starve_a_real_request() -> None:
    server = serve(Metrics(), "127.0.0.1:0", lambda: True, timeout=0.3, deadline=5.0, max_connections=4)
    port = server.server_address[1]
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(12)]  # connect, then say nothing
    try:
        time.sleep(0.1)
        assert handler_threads() <= 4  # the others wait in the listen backlog, not in threads of their own
        started = time.monotonic()
        assert get(f"http://127.0.0.1:{port}/healthz")[0] == 200  # waits for the idle ones to time out
        assert time.monotonic() - started < 3
        for s in idle:  # every idle connection was closed by the server (recv: end of stream)
            s.settimeout(5)
            assert s.recv(1024) == b""
    finally:
        for s in idle:
            s.close()
        server.shutdown()


def test_a_slow_sender_is_cut_off_at_the_deadline() -> None:
    server = serve(Metrics(), "127.0.0.1:0", lambda: True, timeout=1.0, deadline=0.6)
    slow = socket.create_connection(("127.0.0.1", server.server_address[1]))
    try:
        started = time.monotonic()
        with pytest.raises(OSError):  # a byte every 0.2 s keeps each read under the timeout, not the deadline
            for byte in b"GET /healthz HTTP/1.0\r\nX-Padding: " + b"x" * 100:
                slow.sendall(bytes([byte]))
                time.sleep(0.2)
                if time.monotonic() - started > 5:
                    pytest.fail("the server still listens to a client that never finishes its request")
        assert time.monotonic() - started < 2
    finally:
        slow.close()
        server.shutdown()


def test_loopback_by_default() -> None:
    for argv, default in ((["controller"], "127.0.0.1:9090"), (["agent", "--node", "n1"], "127.0.0.1:9091")):
        assert build_parser().parse_args(argv).metrics_address == default
    server = serve(Metrics(), "127.0.0.1:0", lambda: True)
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.shutdown()


def test_ipv6_address_in_brackets() -> None:
    server = serve(Metrics(), "[::1]:0", lambda: True)
    try:
        assert server.server_address[0] == "::1"
        assert get(f"http://[::1]:{server.server_address[1]}/healthz")[0] == 200
    finally:
        server.shutdown()


@pytest.mark.parametrize("address", ["::1:9090", "9090", "127.0.0.1:99999", "127.0.0.1:", "localhost:http",
                                     "127.0.0.1:９０"])
def test_bad_addresses_are_one_line_errors(address: str) -> None:
    with pytest.raises(EpgbridgeError, match="must be HOST:PORT"):
        serve(Metrics(), address, lambda: True)


def test_an_address_in_use_is_an_error_not_a_traceback() -> None:
    first = serve(Metrics(), "127.0.0.1:0", lambda: True)
    try:
        with pytest.raises(EpgbridgeError, match=r"cannot serve metrics on '127.0.0.1:\d+': Address already in use"):
            serve(Metrics(), f"127.0.0.1:{first.server_address[1]}", lambda: True)
    finally:
        first.shutdown()
