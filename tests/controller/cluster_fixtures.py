"""Load the example cluster into a FakeKube, in an order the API server accepts (namespaces first)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tests.fakekube import FakeKube

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "cluster"
ORDER = {"Namespace": 0, "EndpointGroup": 1, "Contract": 1}


def example_docs() -> list[dict[str, Any]]:
    docs = [d for f in sorted(EXAMPLE.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    return sorted(docs, key=lambda d: ORDER.get(d["kind"], 2))


def load_example(kube: FakeKube) -> None:
    """Create the example's objects; pods as they come to be on a real cluster: created without an address,
    then started by their kubelet (`status.podIP(s)` through the status subresource)."""
    for doc in example_docs():
        meta = doc["metadata"]
        if doc["kind"] == "Namespace" and kube.get("Namespace", None, meta["name"]) is not None:
            kube.patch("Namespace", None, meta["name"], {"metadata": {
                "labels": meta.get("labels") or {}, "annotations": meta.get("annotations") or {}}})
            continue
        if doc["kind"] == "Pod":
            status = doc.get("status") or {}
            kube.create({k: v for k, v in doc.items() if k != "status"})
            ips = [a["ip"] for a in status.get("podIPs") or []] or [status["podIP"]]
            kube.pod_started(meta.get("namespace", "default"), meta["name"], ips)
            continue
        kube.create(doc)


def eventually(check: Callable[[], Any], timeout: float = 10.0, every: float = 0.05) -> Any:
    """Poll until `check()` is truthy; return its value, or fail with the last one."""
    deadline = time.monotonic() + timeout
    value = check()
    while not value and time.monotonic() < deadline:
        time.sleep(every)
        value = check()
    assert value, f"not true within {timeout}s: {check}"
    return value
