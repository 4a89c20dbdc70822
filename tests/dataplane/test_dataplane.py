"""The nftables dataplane with real packets in the lab: both layers as truth tables, the engine against
the packets on random clusters, incremental updates, failed applies, hostile input."""

from __future__ import annotations

import copy
import random
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from contracts.engine import Engine
from contracts.matrix import Probe
from contracts.netpol import PROTOCOL_NUMBERS
from dataplane import Lab, LabExternal, LabPod, NftError, NodeDataplane, render_node, run_nft
from dataplane import Probe as LabProbe
from dataplane.netns import run_in_netns
from dataplane.observe import lab_pods, observe_matrix
from tests.core.builders import (
    EPG_KEY,
    contract,
    endpoint_group,
    engine,
    entry,
    epg_value,
    namespace,
    netpol,
    pod,
)
from tests.core.randomcluster import EPGS, EXTERNAL, LABELS, PROBES, random_cluster
from tests.dataplane.netns_support import requires_netns

pytestmark = [pytest.mark.netns, requires_netns]


def table(observed: dict[str, Any], probe: int = 0) -> str:
    """An observed matrix as a truth table of short pod names (`.` passed, `X` dropped)."""
    pods = observed["pods"]
    names = [p.split("/", 1)[1] for p in pods]
    allowed = observed["probes"][probe]["allowed"]
    width = max(len(n) for n in names)
    lines = [" " * width + " " + " ".join(names)]
    for s, sn in zip(pods, names, strict=True):
        cells = [("." if allowed[s][d] else "X").ljust(len(dn)) for d, dn in zip(pods, names, strict=True)]
        lines.append(sn.ljust(width) + " " + " ".join(cells).rstrip())
    return "\n".join(lines)


def dedent(text: str) -> str:
    rows = [r.strip() for r in text.splitlines() if r.strip()]
    width = max(len(r.split()[0]) for r in rows[1:])
    header = rows[0].split()
    out = [" " * width + " " + " ".join(header)]
    for r in rows[1:]:
        name, *cells = r.split()
        out.append(name.ljust(width) + " " + " ".join(c.ljust(len(h)) for c, h in zip(cells, header, strict=True)).rstrip())
    return "\n".join(out)


def test_epg_layer_with_packets_contract_deny_and_isolate() -> None:
    eng = engine(
        namespace("shop", epg=epg_value("shop", "store", "web")),
        pod("shop", "web1", "10.9.0.11", node="n1"),
        pod("shop", "web2", "10.9.0.12", node="n2"),
        pod("shop", "api", "10.9.0.21", node="n1", epg=epg_value(name="api")),
        pod("shop", "other", "10.9.0.31", node="n2", epg=epg_value(name="other")),
        endpoint_group("web", "shop", "store", consumes=["api"], intraEpg="isolate"),
        endpoint_group("api", "shop", "store", provides=["api"]),
        contract("api", "shop", permit=[entry("r", "tcp", "8080-8090")], deny=[entry("d", "tcp", "8081")]),
    )
    observed = observe_matrix(eng, [Probe(8080, "TCP"), Probe(8081, "TCP")])
    assert table(observed, 0) == dedent("""
          api other web1 web2
    api   .   X     X    X
    other X   .     X    X
    web1  .   X     .    X
    web2  .   X     X    .
    """)
    assert table(observed, 1) == dedent("""
          api other web1 web2
    api   .   X     X    X
    other X   .     X    X
    web1  X   X     .    X
    web2  X   X     X    .
    """)


@pytest.mark.parametrize(("net", "prefix", "host"), [("10.9.1.", "0/24", "/32"), ("fd00:9:1::", "/64", "/128")],
                         ids=["ipv4", "ipv6"])
def test_netpol_layer_with_packets_named_port_and_ip_block_except(net: str, prefix: str, host: str) -> None:
    """The same verdicts in an IPv4 and in an IPv6-only cluster."""
    eng = engine(
        namespace("x", {"team": "x"}),
        pod("x", "a", f"{net}1", {"app": "a"}, node="n1", ports=[{"containerPort": 8080, "name": "http"}]),
        pod("x", "b", f"{net}2", {"app": "b"}, node="n2", ports=[{"containerPort": 9090, "name": "http"}]),
        pod("x", "c", f"{net}3", {"app": "c"}, node="n2"),
        netpol("x", "a-in", podSelector={"matchLabels": {"app": "a"}},
               ingress=[{"from": [{"ipBlock": {"cidr": f"{net}{prefix}", "except": [f"{net}3{host}"]}}],
                         "ports": [{"port": "http"}]}]),
        netpol("x", "c-out", podSelector={"matchLabels": {"app": "c"}}, policyTypes=["Egress"],
               egress=[{"ports": [{"port": "http"}]}]),
    )
    observed = observe_matrix(eng, [Probe(8080, "TCP"), Probe(9090, "TCP")])
    assert table(observed, 0) == dedent("""
      a b c
    a . . .
    b . . .
    c X X .
    """)
    assert table(observed, 1) == dedent("""
      a b c
    a . . .
    b X . .
    c X . .
    """)


def test_a_dual_stack_pod_isolated_by_policy_is_isolated_on_both_families() -> None:
    """The issue's hole: db's IPv6 address was unknown to the table and IPv6 passed unfiltered. Now every
    address of a pod is policed: db takes 5432 from app=client only and may not open anything, over IPv4 and
    over IPv6 alike (TCP, UDP and SCTP), on its node and across nodes."""
    eng = engine(
        namespace("x"),
        pod("x", "client", ["10.9.6.1", "fd00:9:6::1"], {"app": "client"}, node="n1"),
        pod("x", "db", ["10.9.6.2", "fd00:9:6::2"], {"app": "db"}, node="n1"),
        pod("x", "other", ["10.9.6.3", "fd00:9:6::3"], {"app": "other"}, node="n2"),
        netpol("x", "db", podSelector={"matchLabels": {"app": "db"}}, policy_types=["Ingress", "Egress"],
               ingress=[{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}], "ports": [
                   {"port": 5432}, {"port": 5432, "protocol": "UDP"}, {"port": 5432, "protocol": "SCTP"}]}]),
    )
    probes = [Probe(5432, "TCP"), Probe(5432, "UDP"), Probe(5432, "SCTP")]
    for family in (4, 6):
        observed = observe_matrix(eng, probes, family)
        for probe in range(len(probes)):
            assert table(observed, probe) == dedent("""
                   client db other
            client .      .  .
            db     X      .  X
            other  .      X  .
            """), (family, probes[probe])


def test_ipv6_neighbour_discovery_passes_the_table() -> None:
    """A node and its pods find each other by neighbour discovery, which reaches the node's input hook from the
    pod's address (untracked by conntrack): a pod whose egress policy allows only TCP 80 to b must still resolve
    its gateway, and its node must still resolve it, or every IPv6 connection to and from it fails."""
    eng = engine(
        namespace("x"),
        pod("x", "a", "fd00:9:7::1", {"app": "a"}, node="n1"),
        pod("x", "b", "fd00:9:7::2", {"app": "b"}, node="n2"),
        pod("x", "c", "fd00:9:7::3", {"app": "c"}, node="n1"),
        netpol("x", "a-out", podSelector={"matchLabels": {"app": "a"}}, policy_types=["Egress"],
               egress=[{"to": [{"podSelector": {"matchLabels": {"app": "b"}}}], "ports": [{"port": 80}]}]),
    )
    pods = lab_pods(eng, [Probe(80, "TCP")])
    with Lab(pods) as lab:
        ir = eng.compile(lab.nodes)
        for node in lab.nodes:
            NodeDataplane(node, netns=lab.node_netns(node)).apply(ir)
        got = lab.probe([LabProbe(s, d, 80, "TCP") for s, d in (
            ("x/a", "fd00:9:7::2"), ("x/b", "fd00:9:7::1"), ("x/c", "fd00:9:7::1"), ("x/a", "fd00:9:7::3"))])
        assert got == [True, True, True, False]
        # The node learnt a's address by neighbour discovery (not a static entry), and a its gateway.
        node = lab.run_in_node("n1", ["ip", "-6", "neigh", "show", "fd00:9:7::1"]).stdout
        assert "lladdr" in node and "PERMANENT" not in node and "FAILED" not in node, node
        pod_side = run_in_netns(lab.pod_netns("x/a"), ["ip", "-6", "neigh", "show", "fe80::1"]).stdout
        assert "lladdr" in pod_side and "FAILED" not in pod_side, pod_side


def _expectations(eng: Engine, pods: Sequence[LabPod], externals: Sequence[str]
                  ) -> tuple[list[LabProbe], list[tuple[str, Any]]]:
    """Every pod pair and every pod -> outside host, for every probe and every address of the destination from
    the source's address of its family: the lab jobs and the engine's verdicts."""
    probes = [Probe(port, proto) for port, proto in PROBES]
    jobs, expected = [], []
    targets = [(p.key, ip) for p in pods for ip in p.addresses] + [(ip, ip) for ip in externals]
    for probe in probes:
        for s in pods:
            for name, ip in targets:
                dst = eng.endpoint(ip)
                if eng.model.pods_by_key[s.key].address(dst.ip.version) is None:
                    continue  # no address of that family: no such connection
                jobs.append(LabProbe(s.key, ip, probe.port, probe.protocol))
                expected.append((f"{probe} {s.key} -> {name} ({ip})", eng.decide(
                    eng.endpoint(s.key, dst.ip.version), dst, probe.port, probe.protocol)))
    return jobs, expected


def _differences(lab: Lab, eng: Engine, pods: Sequence[LabPod], externals: Sequence[str]) -> list[str]:
    """Probe in the lab as it is; return the cells where packets and engine differ."""
    jobs, expected = _expectations(eng, pods, externals)
    got = lab.probe(jobs)
    return [f"{what}: packets {'passed' if ok else 'dropped'}; engine: {v.summary}"
            for (what, v), ok in zip(expected, got, strict=True) if ok != v.allowed]


def _compare(eng: Engine, pods: Sequence[LabPod], externals: Sequence[str]) -> list[str]:
    """Build the lab, apply every node's ruleset, return the cells where packets and engine differ."""
    ir = eng.compile(sorted({p.node for p in pods}))
    exts = [LabExternal(f"ext{i}", ip) for i, ip in enumerate(externals)]
    with Lab(pods, externals=exts) as lab:
        for node in ir.nodes:
            NodeDataplane(node, netns=lab.node_netns(node)).apply(ir)
        return _differences(lab, eng, pods, externals)


def test_both_layers_whatever_line_the_match_is_on() -> None:
    """A contract's port range and its single port (a service set, an inline port), intra-EPG traffic (a peer
    group allowed everything) and a NetworkPolicy's CIDR (an interval set): a match on any line must still hand
    over to the other layer and to the source's egress (same node): `blocked` may not leave."""
    eng = engine(
        namespace("r"),
        pod("r", "client", "10.9.5.10", {"app": "client"}, node="n1", epg=epg_value("r", "ap", "cli")),
        pod("r", "blocked", "10.9.5.11", {"app": "blocked"}, node="n1", epg=epg_value("r", "ap", "cli")),
        pod("r", "server", "10.9.5.20", {"app": "server"}, node="n1", epg=epg_value("r", "ap", "srv")),
        endpoint_group("cli", "r", "ap", consumes=["svc"]),
        endpoint_group("srv", "r", "ap", provides=["svc"]),
        contract("svc", "r", permit=[entry("range", "tcp", "8000-8100"), entry("one", "tcp", "9090")]),
        netpol("r", "server-from-cidr", podSelector={"matchLabels": {"app": "server"}},
               ingress=[{"from": [{"ipBlock": {"cidr": "10.9.5.0/24"}}]}]),
        netpol("r", "blocked-no-egress", podSelector={"matchLabels": {"app": "blocked"}}, policy_types=["Egress"]),
    )
    observed = observe_matrix(eng, [Probe(8080, "TCP"), Probe(9090, "TCP")])
    for probe in (0, 1):
        assert table(observed, probe) == dedent("""
                blocked client server
        blocked .       X      X
        client  .       .      .
        server  X       X      .
        """)


@settings(max_examples=16, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate])
@given(rnd=st.randoms(use_true_random=False))
def test_differential_random_clusters_packets_equal_engine(rnd: random.Random) -> None:
    """Random clusters, pods and outside hosts, every probe: packets == engine."""
    eng = engine(*random_cluster(rnd, pods=5, nodes=2))
    pods = lab_pods(eng, [Probe(port, proto) for port, proto in PROBES])
    diffs = _compare(eng, pods, list(EXTERNAL[4]))
    assert not diffs, "\n".join(diffs)


@pytest.mark.parametrize("family", ["ipv6", "dual"])
@settings(max_examples=4, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate])
@given(rnd=st.randoms(use_true_random=False))
def test_differential_random_clusters_packets_equal_engine_ipv6_and_dual_stack(family: str,
                                                                                rnd: random.Random) -> None:
    """The same in IPv6-only and dual-stack clusters, probing every address of every pod (both families) and
    outside hosts of both families."""
    eng = engine(*random_cluster(rnd, pods=5, nodes=2, family=family))
    pods = lab_pods(eng, [Probe(port, proto) for port, proto in PROBES])
    diffs = _compare(eng, pods, [*EXTERNAL[6], *(EXTERNAL[4] if family == "dual" else ())])
    assert not diffs, "\n".join(diffs)


def _changed(rnd: random.Random, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same pods (names, addresses, nodes, ports) under changed policy: two pods relabelled, one of them
    maybe moved to another EPG, one NetworkPolicy gone, one EndpointGroup's intra-EPG rule flipped."""
    out = copy.deepcopy(docs)
    for p in rnd.sample([d for d in out if d["kind"] == "Pod"], 2):
        p["metadata"]["labels"]["app"] = rnd.choice(LABELS)
        if rnd.random() < 0.5:
            p["metadata"].setdefault("annotations", {})[EPG_KEY] = epg_value(*rnd.choice(EPGS))
    policies = [d for d in out if d["kind"] == "NetworkPolicy"]
    if policies:
        out.remove(rnd.choice(policies))
    group = rnd.choice([d for d in out if d["kind"] == "EndpointGroup"])
    group["spec"]["intraEpg"] = "permit" if group["spec"].get("intraEpg") == "isolate" else "isolate"
    return out


@settings(max_examples=8, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate])
@given(rnd=st.randoms(use_true_random=False))
def test_differential_updates_packets_equal_engine(rnd: random.Random) -> None:
    _updates_packets_equal_engine(rnd, "ipv4")


@settings(max_examples=2, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate])
@given(rnd=st.randoms(use_true_random=False))
def test_differential_updates_packets_equal_engine_dual_stack(rnd: random.Random) -> None:
    _updates_packets_equal_engine(rnd, "dual")


def _updates_packets_equal_engine(rnd: random.Random, family: str) -> None:
    """A random cluster applied, then a changed one applied as an update (one transaction against the table in
    force, never a replace): packets == engine for the changed cluster, and back again (dual-stack: both
    families)."""
    docs = random_cluster(rnd, pods=5, nodes=2, family=family)
    before, after = engine(*docs), engine(*_changed(rnd, docs))
    pods = lab_pods(after, [Probe(port, proto) for port, proto in PROBES])
    nodes = sorted({p.node for p in pods})
    externals = [*EXTERNAL[4], *(EXTERNAL[6] if family == "dual" else ())]
    with Lab(pods, externals=[LabExternal(f"ext{i}", ip) for i, ip in enumerate(externals)]) as lab:
        planes = [NodeDataplane(n, netns=lab.node_netns(n)) for n in nodes]
        for dp in planes:
            dp.apply(before.compile(nodes))
        for step, eng in (("after the update", after), ("back again", before)):
            for dp in planes:
                tx = dp.apply(eng.compile(nodes))
                assert tx.kind != "replace" and "delete table" not in tx.script, tx.script
            diffs = _differences(lab, eng, pods, externals)
            assert not diffs, f"{step}:\n" + "\n".join(diffs)


def _incremental_docs(with_new: bool) -> list[dict[str, Any]]:
    docs = [
        namespace("x"),
        pod("x", "a", "10.9.2.1", {"app": "a"}, node="n1"),
        pod("x", "b", "10.9.2.2", {"app": "b"}, node="n1"),
        netpol("x", "only-from-a", podSelector={"matchLabels": {"role": "db"}},
               ingress=[{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}]}]),
    ]
    if with_new:
        docs.append(pod("x", "db", "10.9.2.3", {"role": "db"}, node="n1"))
    return docs


def _class_docs(dbs: int, *, admit_b: bool = False) -> list[dict[str, Any]]:
    """`dbs` database pods that one NetworkPolicy admits on 5432 from app=a (and app=b with `admit_b`)."""
    peers = [{"podSelector": {"matchLabels": {"app": "a"}}}]
    if admit_b:
        peers.append({"podSelector": {"matchLabels": {"app": "b"}}})
    return [namespace("x"), pod("x", "a", "10.9.4.1", {"app": "a"}, node="n1"),
            pod("x", "b", "10.9.4.2", {"app": "b"}, node="n1"),
            netpol("x", "only-from-a", podSelector={"matchLabels": {"role": "db"}},
                   ingress=[{"from": peers, "ports": [{"port": 5432}]}]),
            *(pod("x", f"db{i}", f"10.9.4.{10 + 2 * i}", {"role": "db"}, node="n1") for i in range(dbs))]


def test_pod_added_and_removed_incrementally() -> None:
    before, after = engine(*_incremental_docs(False)), engine(*_incremental_docs(True))
    pods = lab_pods(after, [Probe(5432, "TCP")])
    probes = [LabProbe(s, "10.9.2.3", 5432, "TCP") for s in ("x/a", "x/b")]
    with Lab(pods) as lab:
        dp = NodeDataplane("n1", netns=lab.node_netns("n1"))
        assert dp.apply(before.compile(["n1"])).kind == "replace"
        assert lab.probe(probes) == [True, True]  # the db pod is unknown to policy: nothing selects it yet
        tx = dp.apply(after.compile(["n1"]))
        assert tx.kind == "delta" and "delete table" not in tx.script, tx.script
        full = sum(len(x.elements) for x in dp.committed.values()) if dp.committed else 0
        assert 0 < tx.added + tx.removed < full, tx.script
        assert lab.probe(probes) == [True, False]  # isolated as soon as it is in its class's map
        assert dp.apply(after.compile(["n1"])).kind == "noop"
        tx = dp.apply(before.compile(["n1"]))
        assert tx.kind == "delta" and "delete chain" in tx.script and tx.removed > tx.added, tx.script
        assert lab.probe(probes) == [True, True]


def test_pods_join_their_class_by_map_element_and_a_policy_change_swaps_chains() -> None:
    """One db pod: its class gets a chain. A second and a third join it: a map element each, no chain. The
    policy then admits app=b too: the class's rules change, so one transaction adds the new chain (and b's
    group), points the pods at it and removes the old chain. Back to one pod: map elements only. Packets are
    right at every step."""
    steps = [engine(*_class_docs(n, admit_b=b)) for n, b in ((1, False), (2, False), (3, False), (3, True),
                                                             (1, True))]
    pods = lab_pods(steps[2], [Probe(5432, "TCP")])
    dbs = ["10.9.4.10", "10.9.4.12", "10.9.4.14"]
    probes = [LabProbe(s, d, 5432, "TCP") for d in dbs for s in ("x/a", "x/b")]
    with Lab(pods) as lab:
        dp = NodeDataplane("n1", netns=lab.node_netns("n1"))
        assert dp.apply(steps[0].compile(["n1"])).kind == "replace"
        assert lab.probe(probes) == [True, False, True, True, True, True]
        tx = dp.apply(steps[1].compile(["n1"]))
        assert tx.kind == "delta" and "chain" not in tx.script and "table inet" not in tx.script, tx.script
        assert "add element inet epgbridge np_in_v4 { 10.9.4.12 : goto np_in_" in tx.script
        assert lab.probe(probes) == [True, False, True, False, True, True]
        tx = dp.apply(steps[2].compile(["n1"]))
        assert tx.kind == "delta" and "chain" not in tx.script, tx.script
        assert lab.probe(probes) == [True, False, True, False, True, False]
        tx = dp.apply(steps[3].compile(["n1"]))
        assert tx.kind == "delta" and tx.script.count("delete chain") == 1 and "\tchain np_in_" in tx.script
        assert lab.probe(probes) == [True] * 6
        tx = dp.apply(steps[4].compile(["n1"]))
        assert tx.kind == "delta" and "chain" not in tx.script, tx.script
        assert lab.probe(probes) == [True, True, True, True, True, True]
        assert dp.apply(steps[4].compile(["n1"])).kind == "noop"


def test_a_node_without_a_table_holds_new_connections_until_its_first_apply() -> None:
    """Issue 10.5: an agent that starts on a node with no table of ours closes forwarded connections (nothing
    knows yet which policy applies to whom); its first full table replaces that in one transaction."""
    eng = engine(*_incremental_docs(False))
    pods = lab_pods(eng, [Probe(5432, "TCP")])
    with Lab(pods) as lab:
        dp = NodeDataplane("n1", netns=lab.node_netns("n1"))
        assert lab.probe([LabProbe("x/a", "10.9.2.2", 5432, "TCP")]) == [True]  # no table: nothing filters
        dp.hold()
        assert lab.probe([LabProbe("x/a", "10.9.2.2", 5432, "TCP"), LabProbe("x/b", "10.9.2.1", 5432, "TCP")]) == [
            False, False]
        assert dp.apply(eng.compile(["n1"])).kind == "replace"
        assert lab.probe([LabProbe("x/a", "10.9.2.2", 5432, "TCP"), LabProbe("x/b", "10.9.2.1", 5432, "TCP")]) == [
            True, True]


def test_failed_apply_keeps_the_previous_ruleset() -> None:
    eng = engine(*_incremental_docs(True))
    pods = lab_pods(eng, [Probe(5432, "TCP")])
    probes = [LabProbe(s, "10.9.2.3", 5432, "TCP") for s in ("x/a", "x/b")]
    with Lab(pods) as lab:
        netns = lab.node_netns("n1")
        dp = NodeDataplane("n1", netns=netns)
        dp.apply(eng.compile(["n1"]))
        broken = render_node(engine(*_incremental_docs(False)).compile(["n1"]), "n1") + "\nadd rule inet epgbridge nope\n"
        with pytest.raises(NftError, match="nft rejected the ruleset"):
            run_nft(broken, netns=netns)
        assert lab.probe(probes) == [True, False]

        def failing(script: str, **kw: Any) -> None:
            raise NftError("nft rejected the ruleset: simulated")
        flaky = NodeDataplane("n1", netns=netns, runner=failing)
        flaky.apply  # noqa: B018 - a fresh applier records nothing until a transaction succeeds
        with pytest.raises(NftError):
            flaky.apply(eng.compile(["n1"]))
        assert flaky.committed is None
        assert lab.probe(probes) == [True, False]


HOSTILE = ['x; flush ruleset', 'a}b', '"quoted"', "new\nline", "flush ruleset", "'; drop table inet epgbridge"]


def test_hostile_strings_never_reach_the_script() -> None:
    """Labels and names are validated on load; annotation values are free text in Kubernetes, so they must be
    inert: the script for a hostile snapshot equals the script for the same snapshot without the hostile text."""
    def docs(hostile: bool) -> list[dict[str, Any]]:
        extra = {f"note-{i}": h for i, h in enumerate(HOSTILE)} if hostile else {}
        bad_epg = '{"name": "x; flush ruleset"}' if hostile else '{"name": 7}'
        a = pod("x", "a", "10.9.3.1", {"app": "a"}, node="n1")
        a["metadata"]["annotations"] = extra
        return [namespace("x"), a, pod("x", "b", "10.9.3.2", node="n1", epg=bad_epg),
                netpol("x", "p", podSelector={"matchLabels": {"app": "a"}}, ingress=[{"ports": [{"port": 80}]}])]
    hostile = render_node(engine(*docs(True)).compile(["n1"]), "n1")
    plain = render_node(engine(*docs(False)).compile(["n1"]), "n1")
    assert hostile == plain
    for h in HOSTILE:
        assert h not in hostile
    assert hostile.count("table inet epgbridge") == 3 and "flush" not in hostile
    with Lab(lab_pods(engine(*docs(True)), [Probe(80, "TCP")])) as lab:
        NodeDataplane("n1", netns=lab.node_netns("n1")).apply(engine(*docs(True)).compile(["n1"]))
        # b is isolated by its invalid annotation; a takes port 80 from anyone not isolated.
        assert lab.probe([LabProbe("x/b", "10.9.3.1", 80, "TCP"), LabProbe("x/a", "10.9.3.2", 80, "TCP")]) == [
            False, False]


def test_hostile_labels_and_names_are_rejected_on_load() -> None:
    from contracts.loader import documents, load_cluster
    from epg.errors import InvalidInput
    for h in HOSTILE:
        with pytest.raises(InvalidInput):
            load_cluster(documents("in.yaml", [pod("x", "a", "10.0.0.1", {"app": h})]))
        with pytest.raises(InvalidInput):
            load_cluster(documents("in.yaml", [pod("x", h, "10.0.0.1")]))


def test_protocol_numbers_cover_the_probes() -> None:
    assert {PROTOCOL_NUMBERS[p] for _, p in PROBES} == {6, 17, 132}
