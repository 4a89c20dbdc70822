"""/metrics and /healthz over a real socket, as Prometheus and the kubelet's probes read them."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from controller.metrics import Metrics, serve


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
