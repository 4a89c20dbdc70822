"""The controller beside another tool on the APIC (issue 13, item 10): objects it wants but finds re-annotated
by Ansible are counted in a metric and turn the owning custom resource's Synced condition False (NotOwned)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from apic_client.simulator import Simulator
from tests.controller.cluster_fixtures import eventually, load_example
from tests.controller.test_runtime import apic, start_controller
from tests.fakekube import CRD_DIR, FakeKube

CONTRACT_DN = "uni/tn-shop/brc-payments-https"


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube(bookmark_interval=0.2, crds=[CRD_DIR]) as fake:
        fake.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "epgbridge-system"}})
        load_example(fake)
        yield fake


def synced(kube: FakeKube, name: str) -> dict[str, Any]:
    status = (kube.get("Contract", None, name) or {}).get("status") or {}
    return next((c for c in status.get("conditions", []) if c["type"] == "Synced"), {})


def test_controller_reports_objects_it_does_not_own(kube: FakeKube, tmp_path: Path) -> None:
    sim = Simulator(tmp_path / "apic.sqlite", tls=False, password="pw")
    url = sim.start("127.0.0.1", 0)
    ctl, thread = start_controller(kube, url, resync=0.5)
    try:
        eventually(lambda: synced(kube, "shop-payments-https").get("status") == "True", timeout=15)
        assert ctl.metrics.get("apic_objects_not_owned") == 0
        apic(url).post(f"{url}/api/mo/{CONTRACT_DN}.json", json={"vzBrCP": {"attributes": {
            "dn": CONTRACT_DN, "annotation": "orchestrator:ansible", "scope": "global"}}}, timeout=5)
        condition = eventually(lambda: synced(kube, "shop-payments-https").get("reason") == "NotOwned"
                               and synced(kube, "shop-payments-https"), timeout=15)
        assert condition["status"] == "False"
        assert condition["message"] == (f"vzBrCP {CONTRACT_DN} is orchestrator:ansible on the APIC, not "
                                        "orchestrator:epgbridge: not written")
        assert ctl.metrics.get("apic_objects_not_owned") == 1
        assert synced(kube, "shop-web-to-api")["status"] == "True"  # the others are still ours and in sync
    finally:
        ctl.stop()
        thread.join(10)
        sim.stop()
