"""The cluster cache, leader election and the controller, with the real `kubernetes` client against the fake
API server (tests/fakekube: no kube-apiserver can be had on these machines) and the real APIC simulator."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from apic_client.simulator import Simulator
from contracts.loader import load_cluster
from controller.leader import LeaderElectionSettings, LeaderElector
from controller.runtime import ApicTarget, Controller
from controller.snapshot import load_paths
from controller.watch import ClusterCache
from tests.controller.cluster_fixtures import EXAMPLE, eventually, load_example
from tests.fakekube import CRD_DIR, FakeKube

FAST_ELECTION = LeaderElectionSettings(lease_duration=3, renew_deadline=2, retry_period=0.2, request_timeout=1)


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube(bookmark_interval=0.2, crds=[CRD_DIR]) as fake:
        fake.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "epgbridge-system"}})
        load_example(fake)
        yield fake


@pytest.fixture
def cache(kube: FakeKube) -> Iterator[ClusterCache]:
    c = ClusterCache(kube.api_client(), watch_timeout=5, backoff_max=0.5)
    c.start()
    assert c.wait_synced(10)
    yield c
    c.stop()


def keys(c: ClusterCache) -> set[str]:
    return {p.key for p in load_cluster(c.documents()).pods}


def test_cache_equals_the_snapshot_files(cache: ClusterCache) -> None:
    live, files = load_cluster(cache.documents()), load_paths([str(EXAMPLE)])
    assert [p.key for p in live.pods] == [p.key for p in files.pods]
    assert [(p.key, p.ip, p.node, dict(p.labels)) for p in live.pods] == [
        (p.key, p.ip, p.node, dict(p.labels)) for p in files.pods]
    assert set(live.groups) == set(files.groups) and set(live.contracts) == set(files.contracts)
    assert [p.key for p in live.policies] == [p.key for p in files.policies]


def test_cache_follows_watch_events(kube: FakeKube, cache: ClusterCache) -> None:
    kube.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "late", "namespace": "sandbox"},
                 "spec": {"nodeName": "worker-1", "containers": [{"name": "c"}]}, "status": {"podIP": "10.2.1.99"}})
    eventually(lambda: "sandbox/late" in keys(cache))
    kube.patch("Pod", "sandbox", "late", {"metadata": {"labels": {"app": "x"}}})
    eventually(lambda: (cache.get("Pod", "sandbox", "late") or {}).get("metadata", {}).get("labels") == {"app": "x"})
    kube.delete("Pod", "sandbox", "late")  # graceful: terminating first, still there
    eventually(lambda: (cache.get("Pod", "sandbox", "late") or {}).get("metadata", {}).get("deletionTimestamp"))
    assert "sandbox/late" in keys(cache)
    kube.finish_deletion("sandbox", "late")
    eventually(lambda: "sandbox/late" not in keys(cache))


def test_cache_relists_after_410_and_survives_dropped_watches(kube: FakeKube, cache: ClusterCache) -> None:
    kube.wait_for_watches(len(cache.kinds))
    kube.compact()
    kube.drop_watches(abrupt=True)
    kube.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "after-gap", "namespace": "sandbox"},
                 "spec": {"nodeName": "worker-2", "containers": [{"name": "c"}]}, "status": {"podIP": "10.2.2.99"}})
    kube.compact()  # the event above is gone from history too: only a relist can find it
    eventually(lambda: "sandbox/after-gap" in keys(cache), timeout=15)
    assert cache.stats["relists_410"] + cache.stats["lists"] > len(cache.kinds)


def test_cache_reports_what_changed_since_a_version(kube: FakeKube, cache: ClusterCache) -> None:
    since = cache.version
    assert cache.changes(since) == (since, {})
    kube.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "new", "namespace": "sandbox"},
                 "spec": {"nodeName": "worker-1", "containers": [{"name": "c"}]}, "status": {"podIP": "10.2.1.98"}})
    kube.delete("Pod", "storefront", "api-7b9f8c5d44-r5nz8", grace_period=0)
    eventually(lambda: len(cache.changes(since)[1] or {}) == 2)
    version, changed = cache.changes(since)
    assert changed is not None and version == cache.version
    assert changed[("Pod", "storefront", "api-7b9f8c5d44-r5nz8")] is None
    doc = changed[("Pod", "sandbox", "new")]
    assert doc is not None and doc.body["kind"] == "Pod" and doc.body["status"]["podIP"] == "10.2.1.98"
    kube.wait_for_watches(len(cache.kinds))
    kube.compact()
    kube.drop_watches(abrupt=True)  # the informers relist: a relisted kind may have changed in any way
    eventually(lambda: cache.changes(since)[1] is None, timeout=15)


def test_agent_patches_its_model_for_pod_events_and_reloads_for_others(kube: FakeKube, cache: ClusterCache) -> None:
    from controller.runtime import Incremental, update_model
    state = Incremental()
    first, _ = update_model(cache, (), state)
    kube.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "sandbox"},
                 "spec": {"nodeName": "worker-1", "containers": [{"name": "c"}]}, "status": {"podIP": "10.2.1.97"}})
    eventually(lambda: cache.get("Pod", "sandbox", "p") is not None)
    patched, _ = update_model(cache, (), state)
    assert patched.cluster.workloads is first.cluster.workloads  # the rest of the cluster is the very same
    assert "sandbox/p" in patched.pods_by_key
    kube.patch("Namespace", "", "sandbox", {"metadata": {"labels": {"team": "new"}}})
    eventually(lambda: (cache.get("Namespace", "", "sandbox") or {}).get("metadata", {}).get("labels", {})
               .get("team") == "new")
    reloaded, _ = update_model(cache, (), state)
    assert reloaded.cluster.namespaces["sandbox"].labels["team"] == "new"
    assert reloaded.cluster.namespaces is not patched.cluster.namespaces
    assert [p.key for p in reloaded.cluster.pods] == [p.key for p in load_cluster(cache.documents()).pods]


def test_leader_election_one_leader_and_fast_hand_over(kube: FakeKube) -> None:
    a = LeaderElector(kube.api_client(), "epgbridge-system", "lock", "a", settings=FAST_ELECTION)
    b = LeaderElector(kube.api_client(), "epgbridge-system", "lock", "b", settings=FAST_ELECTION)
    a.start()
    eventually(lambda: a.is_leader)
    b.start()
    for _ in range(10):
        assert not (a.is_leader and b.is_leader)
        threading.Event().wait(0.1)
    assert not b.is_leader
    a.stop()  # a clean shutdown releases the lease: b takes over well before it would expire
    eventually(lambda: b.is_leader, timeout=1.5)
    lease = kube.get("Lease", "epgbridge-system", "lock")
    assert lease is not None and lease["spec"]["holderIdentity"] == "b"
    b.stop()


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[tuple[Simulator, str]]:
    sim = Simulator(tmp_path / "apic.sqlite", tls=False, password="pw")
    url = sim.start("127.0.0.1", 0)
    yield sim, url
    sim.stop()


def start_controller(kube: FakeKube, url: str, identity: str = "c1", resync: float = 60.0,
                     rbac: bool = False) -> tuple[Controller, threading.Thread]:
    """A controller thread; with `rbac`, authenticated as its ServiceAccount (see tests/controller/test_rbac.py)."""
    target = ApicTarget([url], "admin", "pw", retries=1, backoff=0.05)
    token = kube.service_account_token("epgbridge-system", "epgbridge-controller") if rbac else None
    ctl = Controller(kube.api_client(token), target, identity=identity,
                     namespace="epgbridge-system", resync=resync, debounce=0.05, election=FAST_ELECTION)
    t = threading.Thread(target=ctl.run, daemon=True)
    t.start()
    return ctl, t


_SESSIONS: dict[str, Any] = {}


def apic(url: str) -> Any:
    """One logged-in session per simulator: the APIC (and our simulator) throttle logins."""
    import requests
    if url not in _SESSIONS:
        s = requests.Session()
        s.post(f"{url}/api/aaaLogin.json", json={"aaaUser": {"attributes": {"name": "admin", "pwd": "pw"}}},
               timeout=5).raise_for_status()
        _SESSIONS[url] = s
    return _SESSIONS[url]


def apic_dns(sim: Simulator, url: str, *classes: str) -> set[str]:
    s = apic(url)
    out = set()
    for cls in classes or ("fvAEPg", "vzBrCP", "vzEntry"):
        data = s.get(f"{url}/api/class/{cls}.json", timeout=5).json()
        out |= {next(iter(o.values()))["attributes"]["dn"] for o in data["imdata"]}
    return out


def test_controller_syncs_repairs_drift_and_reports(kube: FakeKube, simulator: tuple[Simulator, str]) -> None:
    sim, url = simulator
    ctl, thread = start_controller(kube, url, resync=1.0)
    try:
        eventually(lambda: "uni/tn-shop/ap-storefront/epg-api" in apic_dns(sim, url), timeout=15)
        # A contract edited in the cluster reaches the APIC.
        kube.patch("Contract", None, "shop-web-to-api", {"spec": {"subjects": [{"name": "api", "filters": [
            {"name": "api-range", "entries": [{"name": "tcp-9000", "protocol": "tcp", "destinationPorts": "9000"}]}]}]}})
        eventually(lambda: "uni/tn-shop/flt-api-range/e-tcp-9000" in apic_dns(sim, url), timeout=15)
        # An object deleted by hand on the APIC comes back at the next periodic sync.
        apic(url).post(f"{url}/api/mo/uni/tn-shop/ap-storefront/epg-api.json",
               json={"fvAEPg": {"attributes": {"dn": "uni/tn-shop/ap-storefront/epg-api", "status": "deleted"}}},
               timeout=5)
        assert "uni/tn-shop/ap-storefront/epg-api" not in apic_dns(sim, url)
        eventually(lambda: "uni/tn-shop/ap-storefront/epg-api" in apic_dns(sim, url), timeout=15)
        # Invalid input: an Event on the object, and the CR's status conditions.
        kube.patch("Namespace", None, "sandbox", {"metadata": {"annotations": {
            "opflex.cisco.com/endpoint-group": "{broken"}}})
        events = eventually(lambda: [e for e in kube.list("Event")
                                     if e.get("involvedObject", {}).get("name") == "sandbox"], timeout=15)
        assert events[0]["reason"] == "InvalidEPGAnnotation" and "not valid JSON" in events[0]["message"]
        eg = eventually(lambda: (kube.get("EndpointGroup", None, "shop-api") or {}).get("status"), timeout=15)
        conditions = {c["type"]: c for c in eg["conditions"]}
        assert conditions["Valid"]["status"] == "True" and conditions["Synced"]["status"] == "True"
        assert eg["observedGeneration"] == kube.get("EndpointGroup", None, "shop-api")["metadata"]["generation"]
        assert ctl.metrics.get("apic_posts_total") >= 3
    finally:
        ctl.stop()
        thread.join(10)


def test_controller_refuses_placements_and_never_creates_a_tenant_outside_the_allow_list(
        kube: FakeKube, simulator: tuple[Simulator, str]) -> None:
    sim, url = simulator
    ctl, thread = start_controller(kube, url, resync=1.0)
    try:
        eventually(lambda: "uni/tn-shop/ap-storefront/epg-api" in apic_dns(sim, url), timeout=15)
        # A sandbox pod names an EPG in tenant infra, which no EndpointGroup declares and the Config does not
        # allow (only kube): refused, with an Event on the pod; the pod is isolated, and no tenant infra.
        kube.patch("Pod", "sandbox", "netshoot", {"metadata": {"annotations": {
            "opflex.cisco.com/endpoint-group": '{"tenant": "infra", "app-profile": "core", "name": "admin"}'}}})
        events = eventually(lambda: [e for e in kube.list("Event")
                                     if e.get("involvedObject", {}).get("name") == "netshoot"], timeout=15)
        assert events[0]["reason"] == "EPGNotAllowed"
        assert events[0]["message"] == (
            "annotation refused on pod sandbox/netshoot: opflex.cisco.com/endpoint-group: no EndpointGroup "
            "declares EPG infra/core/admin, and annotations may name undeclared EPGs only in tenant kube (Config "
            "spec.tenants)")
        # A later change reaches the APIC, so a sync ran after the refusal: still no tenant infra.
        kube.patch("Contract", None, "shop-web-to-api", {"spec": {"subjects": [{"name": "api", "filters": [
            {"name": "api-range", "entries": [{"name": "tcp-9001", "protocol": "tcp", "destinationPorts": "9001"}]}]}]}})
        eventually(lambda: "uni/tn-shop/flt-api-range/e-tcp-9001" in apic_dns(sim, url), timeout=15)
        # (infra, like common and mgmt, is a tenant every APIC has: nothing of ours may appear in it.)
        assert not [dn for dn in apic_dns(sim, url, "fvAp", "fvAEPg") if dn.startswith("uni/tn-infra/")]
    finally:
        ctl.stop()
        thread.join(10)


def test_controller_restart_loses_and_duplicates_nothing(kube: FakeKube, simulator: tuple[Simulator, str]) -> None:
    sim, url = simulator
    ctl, thread = start_controller(kube, url)
    eventually(lambda: "uni/tn-shop/ap-storefront/epg-api" in apic_dns(sim, url), timeout=15)
    before = apic_dns(sim, url)
    ctl.stop()
    thread.join(10)
    # A change while no controller runs: one more entry in a contract.
    contract = kube.get("Contract", None, "shop-payments-https")
    assert contract is not None
    subjects = contract["spec"]["subjects"]
    subjects[0]["filters"][0]["entries"].append({"name": "tcp-8443", "protocol": "tcp", "destinationPorts": "8443"})
    kube.patch("Contract", None, "shop-payments-https", {"spec": {"subjects": subjects}})
    posts = sim.counters.posts
    ctl2, thread2 = start_controller(kube, url, identity="c2")
    try:
        eventually(lambda: ctl2.elector.is_leader, timeout=10)
        eventually(lambda: ctl2.metrics.get("sync_duration_seconds_count") >= 1, timeout=15)
        after = apic_dns(sim, url)
        # Exactly the new entry appears, in one write; nothing is lost or duplicated.
        new_entry = {f"uni/tn-shop/flt-{subjects[0]['filters'][0]['name']}/e-tcp-8443"}
        assert after == before | new_entry
        assert sim.counters.posts - posts == 1
    finally:
        ctl2.stop()
        thread2.join(10)


def test_apic_unreachable_retries_with_backoff(kube: FakeKube, tmp_path: Path) -> None:
    ctl, thread = start_controller(kube, "http://127.0.0.1:9")  # nothing listens on the discard port
    try:
        eventually(lambda: ctl.metrics.get("api_errors_total", target="apic") >= 2, timeout=20)
        assert ctl.last_error and "Traceback" not in ctl.last_error
        eg: Any = eventually(lambda: (kube.get("EndpointGroup", None, "shop-api") or {}).get("status"), timeout=15)
        assert {c["type"]: c["status"] for c in eg["conditions"]} == {"Valid": "True", "Synced": "False"}
    finally:
        ctl.stop()
        thread.join(10)


def test_config_file_is_read_and_checked(tmp_path: Path, kube: FakeKube) -> None:
    from controller.cli import main
    from controller.runtime import build_model, read_config

    good = tmp_path / "config.yaml"
    good.write_text("apiVersion: epgbridge.io/v1alpha1\nkind: Config\nmetadata: {name: epgbridge}\n"
                    "spec: {defaultEndpointGroup: {tenant: t0, applicationProfile: ap0, name: d0}}\n")
    c = ClusterCache(kube.api_client())
    c.start()
    try:
        assert c.wait_synced(10)
        model, _ = build_model(c, read_config(str(good)))
        assert str(model.config.default_epg) == "t0/ap0/d0"
    finally:
        c.stop()
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: epgbridge.io/v1alpha1\nkind: Config\nmetadata: {name: x}\nspec: {invalidAnnotations: x}\n")
    assert main(["agent", "--node", "n1", "--config", str(bad), "--metrics-address", ""]) == 1
