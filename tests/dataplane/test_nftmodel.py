"""The rendered table against the engine without root: every node's script loaded into the nftables model
(dataplane/nftmodel.py), every (pod, peer, probe) traced through it and compared with `decide`, for full loads
and for updates; and an update must leave the same table a fresh load of the new policy writes."""

from __future__ import annotations

import copy
import ipaddress
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.engine import Engine
from contracts.netpol import PROTOCOL_NUMBERS
from dataplane import names
from dataplane.apply import NodeDataplane
from dataplane.nftmodel import ModelError, NftModel, Packet
from dataplane.render import render_node
from tests.core.builders import EPG_KEY, engine, epg_value, namespace, netpol, pod
from tests.core.randomcluster import EPGS, EXTERNAL, LABELS, PROBES, addresses, random_cluster

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# IPv6 and dual-stack: a few examples each (the IPv4 ones cover the policy features at length).
FAMILY_SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def model_runner(model: NftModel) -> Callable[..., None]:
    """A `run_nft` for NodeDataplane that applies scripts to the model (`check`: to a copy)."""
    def run(script: str, *, netns: str | None = None, check: bool = False) -> None:
        if check:
            probe = NftModel()
            probe.tables = copy.deepcopy(model.tables)
            probe.apply(script)
        else:
            model.apply(script)
    return run


def differences(eng: Engine, models: dict[str, NftModel]) -> list[str]:
    """Trace every pod -> pod and pod -> outside connection, every probe, through the nodes it crosses (the
    source's, then the destination's), from every address of every pod to every address of its family: the
    verdict must be the engine's, and what the table logs must say the same: a drop is logged once, by a place
    of a layer the engine denies in; a pass logs would-drops exactly when the engine reports one, each by a
    place of a layer whose audit verdict denies."""
    pods = [p for p in eng.model.endpoints if p.node is not None]
    node_of = {ip: p.node for p in pods for ip in p.ips}
    out = []
    sources = [eng.endpoint(ip) for p in pods for ip in p.ips]
    targets = sources + [eng.endpoint(ip) for family in (4, 6) for ip in EXTERNAL[family]]
    for s in sources:
        for d in targets:
            if s.ip == d.ip or s.ip.version != d.ip.version:
                continue
            for port, proto in PROBES:
                packet = Packet(s.ip, d.ip, PROTOCOL_NUMBERS[proto], port)
                crossed = list(dict.fromkeys([node_of[s.ip], *([node_of[d.ip]] if d.ip in node_of else [])]))
                traces = []
                for n in crossed:
                    traces.append(models[n].trace(packet))
                    if traces[-1].verdict == "drop":
                        break
                passed = all(t.verdict == "accept" for t in traces)
                verdict = eng.decide(s, d, port, proto)
                what = f"{port}/{proto} {s.name} -> {d.name}"
                if passed != verdict.allowed:
                    where = "; ".join(f"{c}: {r}" for t in traces for c, r in t.path[-2:])
                    out.append(f"{what} ({d.ip}): table {'passes' if passed else 'drops'} ({where}); engine: "
                               f"{verdict.summary}")
                    continue
                out += _log_differences(f"{what} ({d.ip})", verdict, [log for t in traces for log in t.logs], passed)
    return out


def _log_differences(what: str, verdict: Any, logs: list[str], passed: bool) -> list[str]:
    found = [names.place(log) for log in logs]
    if None in found:
        return [f"{what}: a log prefix that is no place: {logs}"]
    places = [p for p in found if p is not None]
    drops, woulds = [p for p in places if not p.audit], [p for p in places if p.audit]
    out = []
    if not passed:
        denying = {name for name in ("epg", "networkPolicy") if not verdict.layer(name).allowed}
        if len(drops) != 1 or drops[0].layer not in denying:
            out.append(f"{what}: dropped with logs {logs}; engine denies in {sorted(denying)}: {verdict.summary}")
    else:
        auditing = {name for name in ("epg", "networkPolicy") if verdict.layer(name).audit is not None}
        if drops or bool(woulds) != verdict.would_drop or any(p.layer not in auditing for p in woulds):
            out.append(f"{what}: passed with logs {logs}; engine: would drop {verdict.would_drop} in "
                       f"{sorted(auditing)}: {verdict.summary}")
    return out


def full_loads(eng: Engine) -> dict[str, NftModel]:
    ir = eng.compile()
    models = {}
    for node in ir.nodes:
        models[node] = NftModel()
        models[node].apply(render_node(ir, node))
    return models


@SETTINGS
@given(st.randoms(use_true_random=False))
def test_rendered_tables_agree_with_decide(rnd: random.Random) -> None:
    eng = engine(*random_cluster(rnd, pods=6, nodes=2, audit=True))
    diffs = differences(eng, full_loads(eng))
    assert not diffs, "\n".join(diffs[:10])


@pytest.mark.parametrize("family", ["ipv6", "dual"])
@FAMILY_SETTINGS
@given(rnd=st.randoms(use_true_random=False))
def test_rendered_tables_agree_with_decide_ipv6_and_dual_stack(family: str, rnd: random.Random) -> None:
    eng = engine(*random_cluster(rnd, pods=6, nodes=2, family=family, audit=True))
    diffs = differences(eng, full_loads(eng))
    assert not diffs, "\n".join(diffs[:10])


def _status(ips: str | list[str]) -> dict[str, Any]:
    return {"podIP": ips} if isinstance(ips, str) else {"podIP": ips[0], "podIPs": [{"ip": a} for a in ips]}


def _changed(rnd: random.Random, docs: list[dict[str, Any]], family: str = "ipv4") -> list[dict[str, Any]]:
    """Random pod and policy events: pods relabelled, moved to other EPGs, added, removed, re-addressed; a
    NetworkPolicy removed or its selector changed; an EPG's intra-EPG rule flipped."""
    out = copy.deepcopy(docs)
    pods = [d for d in out if d["kind"] == "Pod"]
    for p in rnd.sample(pods, min(len(pods), rnd.randint(1, 3))):
        what = rnd.randrange(5)
        if what == 0:
            p["metadata"]["labels"]["app"] = rnd.choice(LABELS)
        elif what == 1:
            p["metadata"].setdefault("annotations", {})[EPG_KEY] = epg_value(*rnd.choice(EPGS))
        elif what == 2:
            out.remove(p)
        elif what == 3:
            p["status"] = _status(addresses(f"10.3.0.{rnd.randrange(10, 250)}", family))
        else:
            out.append(pod(p["metadata"]["namespace"], p["metadata"]["name"] + "x",
                           addresses(f"10.3.1.{rnd.randrange(10, 250)}", family), dict(p["metadata"]["labels"]),
                           node=p["spec"]["nodeName"]))
    policies = [d for d in out if d["kind"] == "NetworkPolicy"]
    if policies and rnd.random() < 0.3:
        out.remove(rnd.choice(policies))
    elif policies and rnd.random() < 0.5:
        rnd.choice(policies)["spec"]["podSelector"] = {"matchLabels": {"app": rnd.choice(LABELS)}}
    if rnd.random() < 0.3:
        group = rnd.choice([d for d in out if d["kind"] == "EndpointGroup"])
        group["spec"]["intraEpg"] = "permit" if group["spec"].get("intraEpg") == "isolate" else "isolate"
    seen: set[object] = set()  # names and addresses stay unique
    for p in [d for d in out if d["kind"] == "Pod"]:
        ident = (p["metadata"]["namespace"], p["metadata"]["name"])
        ips = [a["ip"] for a in p["status"].get("podIPs") or []] or [p["status"]["podIP"]]
        if ident in seen or not seen.isdisjoint(ips):
            out.remove(p)
        seen.update((*ips, ident))
    return out


@SETTINGS
@given(st.randoms(use_true_random=False))
def test_updates_agree_with_decide_and_with_a_fresh_load(rnd: random.Random) -> None:
    _updates_agree(rnd, "ipv4")


@pytest.mark.parametrize("family", ["ipv6", "dual"])
@FAMILY_SETTINGS
@given(rnd=st.randoms(use_true_random=False))
def test_updates_agree_with_decide_and_with_a_fresh_load_ipv6_and_dual_stack(family: str,
                                                                             rnd: random.Random) -> None:
    _updates_agree(rnd, family)


def _updates_agree(rnd: random.Random, family: str) -> None:
    """A sequence of changed clusters, each applied as one update transaction against the table in force (as
    the agent does): after each, the table is the one a fresh load writes, and it agrees with `decide`."""
    docs = random_cluster(rnd, pods=6, nodes=2, family=family, audit=True)
    nodes = sorted({d["spec"]["nodeName"] for d in docs if d["kind"] == "Pod"})
    models = {n: NftModel() for n in nodes}
    planes = {n: NodeDataplane(n, runner=model_runner(models[n])) for n in nodes}
    for step in range(4):
        eng = engine(*docs)
        ir = eng.compile(nodes)
        for n in nodes:
            tx = planes[n].apply(ir)
            assert (tx.kind == "replace") == (step == 0), tx.script
            fresh = NftModel()
            fresh.apply(render_node(ir, n))
            assert models[n].dump() == fresh.dump(), f"step {step}, node {n}: the update differs from a fresh load"
        diffs = differences(eng, models)
        assert not diffs, f"step {step}:\n" + "\n".join(diffs[:10])
        docs = _changed(rnd, docs, family)


def test_a_pod_event_changes_elements_only() -> None:
    """A pod that joins existing classes and groups: its update touches set and map elements, no chain."""
    def docs(extra: bool) -> list[dict[str, Any]]:
        out = [namespace("x"), pod("x", "a", "10.9.4.1", {"app": "a"}, node="n1"),
               pod("x", "db0", "10.9.4.10", {"role": "db"}, node="n1"),
               netpol("x", "db", podSelector={"matchLabels": {"role": "db"}},
                      ingress=[{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}], "ports": [{"port": 5432}]}])]
        if extra:
            out += [pod("x", "db1", "10.9.4.11", {"role": "db"}, node="n1"),
                    pod("x", "a2", "10.9.4.2", {"app": "a"}, node="n2")]
        return out
    model = NftModel()
    dp = NodeDataplane("n1", runner=model_runner(model))
    dp.apply(engine(*docs(False)).compile(["n1"]))
    tx = dp.apply(engine(*docs(True)).compile(["n1"]))
    assert tx.kind == "delta" and "chain" not in tx.script and "set " not in tx.script, tx.script
    assert tx.script.count("add element") == tx.script.count("\n") == 7, tx.script  # 5 maps + 2 groups
    assert "10.9.4.2" in tx.script  # a2, on another node, joins app=a's group here


def test_the_model_refuses_what_nft_refuses() -> None:
    """The model is only worth its verdicts if it fails where nft does."""
    base = render_node(engine(namespace("x"), pod("x", "a", "10.9.0.1", {"app": "a"}, node="n1"),
                              netpol("x", "p", podSelector={}, ingress=[{"ports": [{"port": 80}]}])).compile(), "n1")
    model = NftModel()
    model.apply(base)
    bad = [
        "delete element inet epgbridge local_v4 { 10.9.0.9 }",  # not there
        "add element inet epgbridge np_in_v4 { 10.9.0.1 : drop }",  # there, with another verdict
        "add element inet epgbridge epg_subnets_v4 { 10.0.0.0/8 }\nadd element inet epgbridge epg_subnets_v4 "
        "{ 10.1.0.0/16 }",  # overlapping intervals
        "add element inet epgbridge local_v4 { 10.9.0.0/24 }",  # a range in a hash set
        "add element inet epgbridge nope { 10.9.0.1 }",  # no such set
        f"delete chain inet epgbridge {next(iter(c for c in model.table().chains if c.startswith('np_in_')))}",
        "delete set inet epgbridge local_v4",  # still used by the forward chain
        "table inet epgbridge {\n\tchain c {\n\t\tip saddr @nope return\n\t}\n}",
        "table inet epgbridge {\n\tchain c {\n\t\tjump nowhere\n\t}\n}",
        "table inet epgbridge {\n\tchain c {\n\t\tip saddr . meta l4proto @local_v4 return\n\t}\n}",
        "table inet epgbridge {\n\tchain c {\n\t\tip saddr frobnicate return\n\t}\n}",
    ]
    before = model.dump()
    for script in bad:
        with pytest.raises(ModelError):
            model.apply(script)
        assert model.dump() == before, script  # all or nothing


def test_trace_follows_jumps_gotos_and_returns() -> None:
    eng = engine(namespace("x"), pod("x", "a", "10.9.0.1", {"app": "a"}, node="n1"),
                 pod("x", "b", "10.9.0.2", {"app": "b"}, node="n1"),
                 netpol("x", "b-in", podSelector={"matchLabels": {"app": "b"}},
                        ingress=[{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}], "ports": [{"port": 80}]}]))
    model = NftModel()
    model.apply(render_node(eng.compile(), "n1"))
    a, b = ipaddress.ip_address("10.9.0.1"), ipaddress.ip_address("10.9.0.2")
    assert model.trace(Packet(a, b, 6, 80)).verdict == "accept"
    dropped = model.trace(Packet(a, b, 6, 81))
    assert dropped.verdict == "drop" and dropped.last_chain.startswith("np_in_")
    assert model.trace(Packet(b, a, 6, 81)).verdict == "accept"  # a is not selected: open
    assert model.trace(Packet(a, b, 6, 81, ct="established")).verdict == "accept"


def test_an_address_of_the_nodes_pod_blocks_that_no_known_pod_has_is_closed() -> None:
    """A pod that started before its watch event reached the agent: its address is in the node's podCIDRs but
    in no set of ours, so nothing reaches it and it reaches nothing (a pod of no policy would be open)."""
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}, "spec": {"podCIDRs": ["10.9.4.0/24"]}}
    eng = engine(namespace("x"), node, pod("x", "a", "10.9.4.1", node="n1"), pod("x", "b", "10.9.4.2", node="n1"))
    model = NftModel()
    model.apply(render_node(eng.compile(["n1"]), "n1"))
    a, b, new, outside = (ipaddress.ip_address(x) for x in ("10.9.4.1", "10.9.4.2", "10.9.4.50", "192.0.2.7"))
    assert model.trace(Packet(a, b, 6, 80)).verdict == "accept"
    assert model.trace(Packet(outside, a, 6, 80)).verdict == "accept"
    assert model.trace(Packet(a, new, 6, 80)).verdict == "drop"
    assert model.trace(Packet(new, a, 6, 80)).verdict == "drop"
    assert model.trace(Packet(new, outside, 6, 80)).verdict == "drop"
    assert model.trace(Packet(new, outside, 6, 80), hook="input").verdict == "drop"
    assert model.trace(Packet(new, a, 6, 80, ct="established")).verdict == "accept"


def test_neighbour_discovery_from_a_policed_ipv6_pod_reaches_its_node() -> None:
    """Neighbour discovery (hop limit 255, untracked) from a pod whose egress policy allows nothing towards its
    node passes the input chain; anything else from it to the node meets its egress rules."""
    eng = engine(namespace("x"), pod("x", "a", "fd00::1", {"app": "a"}, node="n1"),
                 netpol("x", "no-egress", podSelector={}, policy_types=["Egress"]))
    model = NftModel()
    model.apply(render_node(eng.compile(), "n1"))
    a, gateway = ipaddress.ip_address("fd00::1"), ipaddress.ip_address("fe80::1")
    solicit = Packet(a, ipaddress.ip_address("ff02::1:ff00:1"), 58, icmp_type=135, hoplimit=255, ct="untracked")
    advert = Packet(a, gateway, 58, icmp_type=136, hoplimit=255, ct="untracked")
    assert model.trace(solicit, "input").verdict == model.trace(advert, "input").verdict == "accept"
    routed = Packet(a, gateway, 58, icmp_type=136, hoplimit=64, ct="untracked")  # not from the pod's link
    echo = Packet(a, gateway, 58, icmp_type=128, hoplimit=255)
    assert model.trace(routed, "input").verdict == model.trace(echo, "input").verdict == "drop"
    assert model.trace(Packet(a, gateway, 6, 53), "input").verdict == "drop"
