"""End to end on the node side: the fake API server, one agent per node programming its lab namespace, and
real packets after each change to the cluster. Every step must change the matrix, and the packets must always
agree with the engine's verdicts on the cluster as it now is. The API server enforces the shipped RBAC
(deploy/rbac.yaml): the agents and the controller run as their ServiceAccounts."""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from contracts.engine import Engine
from contracts.matrix import Probe
from controller.runtime import Agent, build_model
from controller.watch import ClusterCache
from dataplane import Lab, LabPod
from dataplane import Probe as LabProbe
from dataplane.observe import lab_pods
from tests.controller.cluster_fixtures import eventually, load_example
from tests.controller.test_rbac import apply_rbac
from tests.dataplane.netns_support import requires_netns
from tests.fakekube import CRD_DIR, FakeKube

pytestmark = [pytest.mark.netns, requires_netns]
PROBES = [Probe(80, "TCP"), Probe(8080, "TCP"), Probe(53, "UDP")]
ADMIN = "test-admin-token"


class Scene:
    def __init__(self, kube: FakeKube, lab: Lab, pods: list[Any], agents: list[Agent]) -> None:
        self.kube, self.lab, self.agents = kube, lab, agents
        self.ips = {p.key: p.ip for p in pods}
        self.cache = ClusterCache(kube.api_client(ADMIN))
        self.cache.start()
        self.cache.wait_synced(10)

    def expected(self) -> dict[tuple[str, str, str], bool]:
        model, _ = build_model(self.cache)
        engine = Engine(model)
        eps = [engine.endpoint(p) for p in model.endpoints]
        return {(str(p), s.name, d.name): engine.decide(s, d, p.port, p.protocol).allowed
                for p in PROBES for s in eps for d in eps}

    def observed(self, cells: list[tuple[str, str, str]]) -> dict[tuple[str, str, str], bool]:
        jobs = [LabProbe(s, self.ips[d], int(p.split("/")[0]), p.split("/")[1]) for p, s, d in cells]
        return dict(zip(cells, self.lab.probe(jobs), strict=True))

    def agreement(self) -> dict[tuple[str, str, str], bool] | None:
        """The matrix when packets and engine agree on every cell, else None."""
        want = self.expected()
        got = self.observed(sorted(want))
        return want if got == want else None


@pytest.fixture
def scene() -> Iterator[Scene]:
    with running_scene() as s:
        yield s


@contextlib.contextmanager
def running_scene(extra: tuple[LabPod, ...] = ()) -> Iterator[Scene]:
    """The example in the fake API server, a lab of its pods (and `extra` lab pods the API does not know),
    one agent per node."""
    with FakeKube(bookmark_interval=0.2, crds=[CRD_DIR]) as kube:
        kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "epgbridge-system"}})
        load_example(kube)
        apply_rbac(kube)
        kube.add_user(ADMIN, "admin", ["system:masters"])
        cache = ClusterCache(kube.api_client(ADMIN))
        cache.start()
        cache.wait_synced(10)
        model, _ = build_model(cache)
        cache.stop()
        pods = [*lab_pods(Engine(model), PROBES), *extra]
        with Lab(pods) as lab:
            agent_token = kube.service_account_token("epgbridge-system", "epgbridge-agent")
            agents = [Agent(kube.api_client(agent_token), node, netns=lab.node_netns(node), debounce=0.01,
                            drift_every=0.5) for node in sorted({p.node for p in pods})]
            threads = [threading.Thread(target=a.run, daemon=True) for a in agents]
            for t in threads:
                t.start()
            s = Scene(kube, lab, pods, agents)
            try:
                eventually(lambda: all(a.applied_version >= 0 for a in agents), timeout=15)
                yield s
            finally:
                s.cache.stop()
                for a in agents:
                    a.stop()
                for t in threads:
                    t.join(10)
        assert kube.denied == []  # the shipped RBAC let them do all they did


def test_agents_follow_every_change_with_real_packets(scene: Scene, tmp_path: Any) -> None:
    """Issue 5's story in one run: the controller keeps the APIC simulator in sync and the agents keep the lab
    in sync, through each change; the controller is killed and restarted half-way."""
    from apic_client.simulator import Simulator
    from tests.controller.test_runtime import apic_dns, start_controller

    kube = scene.kube
    sim = Simulator(tmp_path / "apic.sqlite", tls=False, password="pw")
    url = sim.start("127.0.0.1", 0)
    ctl, ctl_thread = start_controller(kube, url, rbac=True)
    step0 = eventually(scene.agreement, timeout=15)
    eventually(lambda: "uni/tn-shop/brc-web-to-api" in apic_dns(sim, url), timeout=15)

    # 1. Annotate a namespace: netshoot joins the prometheus EPG (common/monitoring lets it reach web on 80).
    kube.patch("Namespace", None, "sandbox", {"metadata": {"annotations": {
        "opflex.cisco.com/endpoint-group": json.dumps({"tenant": "ops", "app-profile": "monitoring",
                                                       "name": "prometheus"})}}})
    step1 = eventually(scene.agreement, timeout=15)
    assert step1 != step0
    assert step1[("80/TCP", "sandbox/netshoot", "storefront/web-6d4cf56db6-7xkq2")]

    # 2. Add a contract: the prometheus EPG provides any TCP to the web EPG (prometheus has no ingress policy
    #    and web no egress policy, so the contract alone opens web -> prometheus on 8080).
    kube.create({"apiVersion": "epgbridge.io/v1alpha1", "kind": "Contract", "metadata": {"name": "debug"},
                 "spec": {"tenant": "common", "name": "debug", "scope": "global", "subjects": [{"name": "s", "filters": [
                     {"name": "debug", "entries": [{"name": "any-tcp", "protocol": "tcp"}]}]}]}})
    for name, field in (("ops-prometheus", "provides"), ("shop-web", "consumes")):
        eg = kube.get("EndpointGroup", None, name)
        assert eg is not None, name
        kube.patch("EndpointGroup", None, name, {"spec": {field: [*eg["spec"].get(field, []), "debug"]}})
    step2 = eventually(scene.agreement, timeout=15)
    eventually(lambda: {"uni/tn-common/brc-debug", "uni/tn-common/flt-debug/e-any-tcp"} <= apic_dns(sim, url),
               timeout=15)
    assert step2[("8080/TCP", "storefront/web-6d4cf56db6-7xkq2", "monitoring/prometheus-8c5b7d9f4-zl6sd")]

    # The controller dies; the nodes keep enforcing; a new replica picks up where it left off.
    ctl.stop()
    ctl_thread.join(10)
    objects_before = apic_dns(sim, url)
    ctl, ctl_thread = start_controller(kube, url, identity="c2", rbac=True)
    assert not step1[("8080/TCP", "storefront/web-6d4cf56db6-7xkq2", "monitoring/prometheus-8c5b7d9f4-zl6sd")]

    # 3. Add a NetworkPolicy: default-deny egress in storefront cuts web and api off DNS. (A deny-all ingress
    #    in kube-system would not: the DNS policy there still allows, and NetworkPolicies are a union.)
    kube.create({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                 "metadata": {"name": "deny-egress", "namespace": "storefront"},
                 "spec": {"podSelector": {}, "policyTypes": ["Egress"]}})
    step3 = eventually(scene.agreement, timeout=15)
    assert step2[("53/UDP", "storefront/web-6d4cf56db6-7xkq2", "kube-system/coredns-7db6d8ff4d-4lq9c")]
    assert not step3[("53/UDP", "storefront/web-6d4cf56db6-7xkq2", "kube-system/coredns-7db6d8ff4d-4lq9c")]

    # 4. A pod is replaced, as on a real cluster: deleted gracefully (terminating, still running), removed once
    #    its kubelet confirms, created again without an address, and started with one by its kubelet.
    api_pod = kube.get("Pod", "storefront", "api-7b9f8c5d44-r5nz8")
    gone_ip = api_pod["status"]["podIP"]
    cell = ("8080/TCP", "storefront/web-6d4cf56db6-7xkq2", "storefront/api-7b9f8c5d44-r5nz8")
    kube.delete("Pod", "storefront", "api-7b9f8c5d44-r5nz8")
    eventually(lambda: (scene.cache.get("Pod", "storefront", "api-7b9f8c5d44-r5nz8") or {}).get(
        "metadata", {}).get("deletionTimestamp"), timeout=15)
    terminating = eventually(scene.agreement, timeout=15)
    assert terminating[cell] == step3[cell]
    kube.finish_deletion("storefront", "api-7b9f8c5d44-r5nz8")

    def in_sets(ip: str) -> bool:
        return any(ip in " ".join(e for s in (a.dataplane.committed or {}).values() for e in s.elements)
                   for a in scene.agents)

    eventually(lambda: not in_sets(gone_ip), timeout=15)
    removed = eventually(scene.agreement, timeout=15)
    assert cell not in removed
    kube.create({k: v for k, v in api_pod.items() if k != "status"} | {"metadata": {
        k: v for k, v in api_pod["metadata"].items() if k not in ("uid", "resourceVersion", "creationTimestamp",
                                                                   "deletionTimestamp", "deletionGracePeriodSeconds")}})
    eventually(lambda: scene.cache.get("Pod", "storefront", "api-7b9f8c5d44-r5nz8") is not None, timeout=15)
    assert eventually(scene.agreement, timeout=15) == removed and not in_sets(gone_ip)  # no address: no peer
    kube.pod_started("storefront", "api-7b9f8c5d44-r5nz8", [gone_ip])
    eventually(lambda: in_sets(gone_ip), timeout=15)
    assert eventually(lambda: scene.agreement() == step3, timeout=15)  # back where it was
    eventually(lambda: ctl.metrics.get("sync_duration_seconds_count") >= 1, timeout=15)
    assert apic_dns(sim, url) == objects_before  # nothing lost or duplicated across the restart
    ctl.stop()
    ctl_thread.join(10)
    sim.stop()


def test_agent_repairs_a_hand_edited_table(scene: Scene) -> None:
    before = eventually(scene.agreement, timeout=15)
    agent = scene.agents[0]
    eventually(lambda: agent._baseline is not None, timeout=10)
    subprocess.run(["ip", "netns", "exec", agent.netns or "", "nft", "flush", "map", "inet", "epgbridge",
                    "epg_in_v4"], check=True)
    eventually(lambda: agent.metrics.get("drift_repairs_total") >= 1, timeout=10)
    assert eventually(scene.agreement, timeout=15) == before


def test_agent_metrics_and_health(scene: Scene) -> None:
    agent: Any = scene.agents[0]
    assert agent.health()[0]
    text = agent.metrics.render()
    assert "epgbridge_set_elements" in text and "epgbridge_apply_duration_seconds_count" in text
    assert agent.metrics.get("applies_total", kind="replace") == 1


def test_an_agent_restarted_during_a_partial_outage_keeps_the_table_in_force(scene: Scene) -> None:
    """Issue 10.2: an agent that starts while NetworkPolicies cannot be listed used to replace the table with
    one built without them, and NetworkPolicy-denied traffic passed until the API recovered. Now it keeps the
    table a previous agent left (packets keep their verdicts), says so, and applies once the kind has synced."""
    from controller.timing import FakeClock

    kube = scene.kube
    kube.create({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                 "metadata": {"name": "deny-egress", "namespace": "storefront"},
                 "spec": {"podSelector": {}, "policyTypes": ["Egress"]}})
    before = eventually(scene.agreement, timeout=15)
    cell = ("53/UDP", "storefront/web-6d4cf56db6-7xkq2", "kube-system/coredns-7db6d8ff4d-4lq9c")
    assert not before[cell]  # denied by the NetworkPolicy alone (the EPG layer allows it)
    web = kube.get("Pod", "storefront", "web-6d4cf56db6-7xkq2")
    assert web is not None
    i = next(n for n, a in enumerate(scene.agents) if a.node == web["spec"]["nodeName"])
    old = scene.agents[i]
    old.stop()  # the agent process ends; its table stays in the kernel
    eventually(lambda: not old.cache._threads[0].is_alive())
    clock = FakeClock()  # the informer's retry waits on it: the failure lasts until the test moves it
    kube.fail_next(1, 500, verb="list", resource="networkpolicies.networking.k8s.io")
    token = kube.service_account_token("epgbridge-system", "epgbridge-agent")
    agent = Agent(kube.api_client(token), old.node, netns=old.netns, debounce=0.0, drift_every=1000, clock=clock)
    scene.agents[i] = agent
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    try:
        eventually(lambda: "500" in (agent._held or "") or agent.applied_version >= 0)
        assert scene.observed(sorted(before)) == before  # every packet as before, the denied one too
        ok, text = agent.health()
        assert not ok and "NetworkPolicy (not listed yet: 500" in text
        assert text.endswith("the table a previous agent left is in force (this agent has not applied yet)")
        assert agent.applied_version < 0 and agent.metrics.get("applies_total", kind="replace") == 0
        clock.advance(1)  # the list succeeds: the agent applies what the cluster says
        eventually(lambda: agent.applied_version >= 0)
        assert eventually(scene.agreement, timeout=15) == before
        assert agent.health() == (True, f"ok: {agent.in_force()}") and "this agent applied" in agent.in_force()
    finally:
        agent.stop()
        thread.join(10)


def test_a_pod_that_starts_before_its_watch_event_meets_no_open_door() -> None:
    """Issue 10.5: a pod whose address is live before the agent has seen it used to pass everything (the hooks
    only looked at known pods). Its address is in its node's pod block (the example's Node objects), in no set
    of ours: closed both ways, until the API server tells the agent about it; then the engine's verdicts."""
    early = LabPod("sandbox/early", "10.2.1.90", "worker-1", ((80, "TCP"), (8080, "TCP"), (53, "UDP")))
    web = "storefront/web-6d4cf56db6-7xkq2"  # on worker-1 too, and open to the sandbox on 80 before
    with running_scene((early,)) as s:
        web_ip = s.ips[web]
        assert s.lab.probe([LabProbe(early.key, web_ip, 80, "TCP"), LabProbe(web, early.ip, 80, "TCP"),
                            LabProbe("sandbox/netshoot", early.ip, 80, "TCP")]) == [False, False, False]
        s.kube.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "early", "namespace": "sandbox"},
                       "spec": {"nodeName": "worker-1", "containers": [{"name": "c", "ports": [
                           {"containerPort": 80}, {"containerPort": 8080}, {"containerPort": 53, "protocol": "UDP"}]}]}})
        s.kube.pod_started("sandbox", "early", [early.ip])
        seen = eventually(lambda: (m := s.agreement()) is not None and ("80/TCP", early.key, web) in m and m,
                          timeout=15)
        opened = [cell for cell, ok in seen.items() if ok and early.key in cell[1:] and cell[1] != cell[2]]
        assert opened, "the engine allows the pod something now, and the packets agree"


def test_agents_police_both_families_of_dual_stack_pods() -> None:
    """Issue 11: pods whose kubelet reports two addresses (status.podIPs). The agents police both families from
    their first apply and through pod events (the incremental path): db takes traffic from app=client only,
    over IPv4 and IPv6 alike, and a pod relabelled app=client gains it on both."""
    addresses = {"client": ["10.9.8.1", "fd00:9:8::1"], "db": ["fd00:9:8::2", "10.9.8.2"],
                 "other": ["10.9.8.3", "fd00:9:8::3"]}
    nodes = {"client": "n1", "db": "n1", "other": "n2"}
    with FakeKube(bookmark_interval=0.2, crds=[CRD_DIR]) as kube:
        kube.add_user(ADMIN, "admin", ["system:masters"])
        kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}})
        for name, ips in addresses.items():
            kube.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "x",
                                                                         "labels": {"app": name}},
                         "spec": {"nodeName": nodes[name], "containers": [{"name": "c"}]}})
            kube.pod_started("x", name, ips)
        kube.create({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                     "metadata": {"name": "db", "namespace": "x"},
                     "spec": {"podSelector": {"matchLabels": {"app": "db"}},
                              "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}]}})
        cache = ClusterCache(kube.api_client(ADMIN))
        cache.start()
        cache.wait_synced(10)

        def expected() -> dict[tuple[str, str, str], bool]:
            engine = Engine(build_model(cache)[0])
            return {(s.key, d.key, str(b)): engine.decide(engine.endpoint(a), engine.endpoint(b), 80, "TCP").allowed
                    for s in engine.model.endpoints for d in engine.model.endpoints if s is not d
                    for a in s.ips for b in d.ips if a.version == b.version}

        try:
            pods = lab_pods(Engine(build_model(cache)[0]), [Probe(80, "TCP")])
            assert [p.addresses for p in pods] == [tuple(addresses[p.key[2:]]) for p in pods]
            with Lab(pods) as lab:
                agents = [Agent(kube.api_client(ADMIN), node, netns=lab.node_netns(node), debounce=0.01)
                          for node in lab.nodes]
                threads = [threading.Thread(target=a.run, daemon=True) for a in agents]
                for t in threads:
                    t.start()

                def agreement() -> dict[tuple[str, str, str], bool] | None:
                    want = expected()
                    got = lab.probe([LabProbe(s, d, 80, "TCP") for s, _, d in want])
                    return want if got == list(want.values()) else None
                try:
                    before = eventually(agreement, timeout=15)
                    denied = sorted((s, d) for (s, _, d), ok in before.items() if not ok)
                    assert denied == [("x/other", "10.9.8.2"), ("x/other", "fd00:9:8::2")]
                    kube.patch("Pod", "x", "other", {"metadata": {"labels": {"app": "client"}}})
                    after = eventually(lambda: (found := agreement()) is not None and found != before and found,
                                       timeout=15)
                    assert all(after.values())
                    assert all(a.metrics.get("applies_total", kind="replace") == 1 for a in agents)
                finally:
                    for a in agents:
                        a.stop()
                    for t in threads:
                        t.join(10)
        finally:
            cache.stop()


def test_agents_attribute_drops_serve_them_and_raise_events(scene: Scene, capsys: Any) -> None:
    """Issue 14, on the agents as they run: connections the policy denies, sent for real; the agent of the node
    that dropped each attributes it to the layer and objects `explain` names, counts it in /metrics, raises a
    Warning Event on the pod whose rules dropped it (as its ServiceAccount: the shipped RBAC allows it), and
    serves it on /drops, where `epgbridge drops` reads it."""
    from controller.cli import main
    from controller.metrics import serve

    want = eventually(scene.agreement, timeout=15)
    model, _ = build_model(scene.cache)
    engine = Engine(model)
    denied = sorted(cell for cell, ok in want.items() if not ok and cell[1] != cell[2])[:8]
    assert denied
    scene.observed(denied)

    def attributed() -> dict[tuple[str, str, str], dict[str, Any]] | None:
        lines = [line for a in scene.agents if a.drops is not None for line in a.drops.lines()]
        got = {(f"{line['port']}/{line['protocol']}", line["from"], line["to"]): line for line in lines
               if line.get("verdict") == "drop"}
        return got if all(cell in got for cell in denied) else None

    got = eventually(attributed, timeout=15)
    for cell in denied:
        port, proto = cell[0].split("/")
        v = engine.decide(engine.endpoint(cell[1]), engine.endpoint(cell[2]), int(port), proto)
        line = got[cell]
        assert line["engineAgrees"] and not v.layer(line["layer"]).allowed, line
        assert line["objects"] == list(v.layer(line["layer"]).denied_by), line
    events = eventually(lambda: [e for e in scene.kube.list("Event") if e.get("reason") == "ConnectionDropped"],
                        timeout=15)
    assert {e["involvedObject"]["kind"] for e in events} == {"Pod"}
    assert any(e["source"]["component"] == "epgbridge-agent" for e in events)
    agent = next(a for a in scene.agents if a.drops is not None and a.drops.lines())
    assert "epgbridge_drops_total{" in agent.metrics.render()
    server = serve(agent.metrics, "127.0.0.1:0", agent.health, routes=agent.routes())
    try:
        assert main(["drops", "--address", f"127.0.0.1:{server.server_address[1]}", "--node", agent.node,
                     "-o", "json"]) == 0
    finally:
        server.shutdown()
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert printed and all(line["node"] == agent.node for line in printed)
    # The counters moved; the table did not drift (the drift check compares the table without its counts).
    eventually(lambda: all(a._baseline is not None for a in scene.agents), timeout=10)
    scene.observed(denied)
    time.sleep(1.2)  # past two drift checks (every 0.5 s here)
    assert [a.metrics.get("drift_repairs_total") for a in scene.agents] == [0.0] * len(scene.agents)
