"""Invariants of the engine over random clusters (hypothesis drives the random generator)."""

from __future__ import annotations

import copy
import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.engine import Endpoint, Engine
from contracts.netpol import PROTOCOL_NUMBERS
from tests.core.builders import engine
from tests.core.randomcluster import PROBES, random_cluster, v6

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# IPv6 and dual-stack clusters: a few examples each (the IPv4 ones above cover the policy features at length).
FAMILY_SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EXTERNAL = ("10.1.0.200", "10.2.0.99", "192.0.2.7")


def matrix(eng: Engine) -> dict[tuple[str, str, int, str], bool]:
    pods = [eng.endpoint(p) for p in eng.model.endpoints]
    return {(s.name, d.name, port, proto): eng.decide(s, d, port, proto).allowed
            for s in pods for d in pods for port, proto in PROBES}


def every_address(eng: Engine) -> list[Endpoint]:
    """Every pod once per address (a dual-stack pod is an endpoint of each family)."""
    return [eng.endpoint(ip) for p in eng.model.endpoints for ip in p.ips]


def assert_ir_agrees_with_decide(eng: Engine, external: tuple[str, ...]) -> None:
    """What renderers consume (the IR) allows exactly what `decide` allows, for every address of every pod and
    for outside addresses; an address reaches none of the other family. With objects in audit mode, the IR
    with them enforced too denies exactly what `decide` reports as a would-drop."""
    ir = eng.compile()
    pods = {p.key: p for node in ir.nodes.values() for p in node.pods}
    eps = every_address(eng)
    outside = [eng.endpoint(ip) for ip in external]
    for s in eps:
        for d in [*eps, *outside]:
            if s.ip == d.ip:
                continue
            for port, proto in PROBES:
                verdict = eng.decide(s, d, port, proto)
                if s.ip.version != d.ip.version:  # the IR answers per address: the pod's of the peer's family
                    assert not verdict.allowed
                    continue
                number = PROTOCOL_NUMBERS[proto]
                src_ir, dst_ir = pods[s.name], pods.get(d.name)
                via_ir = ir.allows(src_ir, "egress", d.ip, number, port)
                if dst_ir is not None:
                    via_ir = via_ir and ir.allows(dst_ir, "ingress", s.ip, number, port)
                assert via_ir == verdict.allowed, f"{s.ip} {s.name} -> {d.ip} {d.name} {port}/{proto}: {verdict.summary}"
                full = ir.allows(src_ir, "egress", d.ip, number, port, with_audit=True) and (
                    dst_ir is None or ir.allows(dst_ir, "ingress", s.ip, number, port, with_audit=True))
                assert (verdict.allowed and not full) == verdict.would_drop, (
                    f"{s.name} -> {d.name} {port}/{proto}: {verdict.summary}")


@SETTINGS
@given(st.randoms(use_true_random=False))
def test_compiled_ir_agrees_with_decide(rnd: random.Random) -> None:
    assert_ir_agrees_with_decide(engine(*random_cluster(rnd, audit=True)), EXTERNAL)


@FAMILY_SETTINGS
@given(st.randoms(use_true_random=False), st.sampled_from(["ipv6", "dual"]))
def test_compiled_ir_agrees_with_decide_ipv6_and_dual_stack(rnd: random.Random, family: str) -> None:
    assert_ir_agrees_with_decide(engine(*random_cluster(rnd, family=family)), (*EXTERNAL, *map(v6, EXTERNAL)))


@FAMILY_SETTINGS
@given(st.integers(0, 2**32))
def test_the_ipv6_twin_of_a_cluster_has_the_same_verdicts(seed: int) -> None:
    """A cluster and its IPv6 twin (every pod, ipBlock and outside address mapped into IPv6, nothing else
    changed) allow the same connections."""
    twins = {f: engine(*random_cluster(random.Random(seed), family=f)) for f in ("ipv4", "ipv6")}

    def verdicts(eng: Engine, family: int) -> dict[tuple[str, str, int, str], bool]:
        eps = {p.key: eng.endpoint(p, family) for p in eng.model.endpoints}
        targets = {**eps, **{ip: eng.endpoint(ip if family == 4 else v6(ip)) for ip in EXTERNAL}}
        return {(s, d, port, proto): eng.decide(eps[s], targets[d], port, proto).allowed
                for s in eps for d in targets for port, proto in PROBES}
    assert verdicts(twins["ipv6"], 6) == verdicts(twins["ipv4"], 4)


@SETTINGS
@given(st.randoms(use_true_random=False))
def test_combined_verdict_never_more_permissive_than_either_layer(rnd: random.Random) -> None:
    eng = engine(*random_cluster(rnd))
    pods = [eng.endpoint(p) for p in eng.model.endpoints]
    for s in pods:
        for d in pods:
            for port, proto in PROBES:
                v = eng.decide(s, d, port, proto)
                if s.ip == d.ip:
                    assert v.allowed
                else:
                    assert v.allowed == (v.epg.allowed and v.netpol.allowed)


def _add(docs: list[dict[str, Any]], rnd: random.Random) -> list[dict[str, Any]]:
    """The same cluster with one more allow: a NetworkPolicy rule, or a contract permit entry."""
    docs = copy.deepcopy(docs)
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    contracts = [d for d in docs if d["kind"] == "Contract"]
    if policies and rnd.random() < 0.6:
        pol = rnd.choice(policies)
        spec = pol["spec"]
        types = spec.get("policyTypes")
        # Only directions the policy already governs: an egress rule added to a policy whose policyTypes is
        # defaulted would make it an egress policy, which restricts (Kubernetes' defaulting, not an allow).
        governed = ["ingress"] if types is None else [t.lower() for t in types]
        if types is None and spec.get("egress"):
            governed.append("egress")
        direction = rnd.choice(governed) if governed else "ingress"
        rule = rnd.choice([{}, {"ports": [{"port": 80}]}, {"from" if direction == "ingress" else "to": [
            {"podSelector": {}}]}])
        pol["spec"].setdefault(direction, []).append(rule)
    else:
        c = rnd.choice(contracts)
        c["spec"]["subjects"].append({"name": "extra", "filters": [
            {"name": f"{c['spec']['name']}-extra", "entries": [{"name": "x", "protocol": "tcp",
                                                              "destinationPorts": "80-8080"}]}]})
    return docs


@SETTINGS
@given(st.randoms(use_true_random=False))
def test_adding_an_allow_never_removes_reachability(rnd: random.Random) -> None:
    docs = random_cluster(rnd)
    before, after = matrix(engine(*docs)), matrix(engine(*_add(docs, rnd)))
    lost = [k for k, ok in before.items() if ok and not after[k]]
    assert not lost


@SETTINGS
@given(st.randoms(use_true_random=False))
def test_adding_a_deny_entry_never_adds_reachability(rnd: random.Random) -> None:
    docs = random_cluster(rnd)
    more = copy.deepcopy(docs)
    c = rnd.choice([d for d in more if d["kind"] == "Contract"])
    c["spec"]["subjects"].append({"name": "deny", "filters": [
        {"name": f"{c['spec']['name']}-deny-extra", "action": "deny",
         "entries": [{"name": "d", "protocol": "tcp", "destinationPorts": "80-81"}]}]})
    before, after = matrix(engine(*docs)), matrix(engine(*more))
    gained = [k for k, ok in after.items() if ok and not before[k]]
    assert not gained


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 6)), max_size=30),
       st.lists(st.tuples(st.integers(0, 200), st.integers(0, 6)), max_size=6),
       st.lists(st.tuples(st.integers(0, 200), st.integers(0, 6)), max_size=6))
def test_patching_an_address_set_equals_difference_then_union(base: list[tuple[int, int]],
                                                              remove: list[tuple[int, int]],
                                                              add: list[tuple[int, int]]) -> None:
    """AddressSet.patched (the agent's update of a group by a few pods) == difference, then union."""
    from contracts.sets import AddressSet, _merge

    def aset(items: list[tuple[int, int]]) -> AddressSet:
        return AddressSet(_merge((lo, lo + n) for lo, n in items))
    a, r, d = aset(base), aset(remove), aset(add)
    assert a.patched(r, d) == a.difference(r).union(d)


@SETTINGS
@given(st.randoms(use_true_random=False))
def test_matrix_rows_agree_with_decide(rnd: random.Random) -> None:
    assert_matrix_agrees_with_decide(engine(*random_cluster(rnd, pods=7, audit=True)), None)


@FAMILY_SETTINGS
@given(st.randoms(use_true_random=False), st.sampled_from([("ipv6", None), ("dual", None), ("dual", 4), ("dual", 6),
                                                           ("mixed", None), ("mixed", 6)]))
def test_matrix_rows_agree_with_decide_ipv6_and_dual_stack(rnd: random.Random, case: tuple[str, int | None]) -> None:
    """Per family asked for (each pod at its address of that family), and by default (each pod at its first
    address; "mixed": pods of one family, of the other and of both in one cluster, where pairs across families
    are denied)."""
    family, asked = case
    docs = random_cluster(rnd, pods=7, family="ipv4" if family == "mixed" else family, audit=True)
    if family == "mixed":
        for d in docs:
            if d["kind"] == "Pod" and rnd.random() < 0.6:
                ip = d["status"]["podIP"]
                ips = rnd.choice([[v6(ip)], [v6(ip), ip], [ip, v6(ip)]])
                d["status"] = {"podIP": ips[0], "podIPs": [{"ip": a} for a in ips]}
    assert_matrix_agrees_with_decide(engine(*docs), asked)


def assert_matrix_agrees_with_decide(eng: Engine, family: int | None) -> None:
    """The matrix, set algebra over the compiled groups, allows exactly what `decide` allows, pair by pair; the
    grouped matrix counts exactly those pairs."""
    from contracts.matrix import Probe, compute_matrix

    probes = [Probe(port, proto) for port, proto in PROBES]
    m = compute_matrix(eng, probes, family)
    want = [p for p in eng.model.endpoints if family is None or p.address(family) is not None]
    assert sorted(m.pods) == sorted(p.key for p in want)
    pods = [eng.endpoint(p, family if family is not None else p.ips[0].version) for p in m.pod_objects]
    assert [e.ip for e in pods] == list(m.addresses)
    for pi, probe in enumerate(probes):
        for si, s in enumerate(pods):
            for di, d in enumerate(pods):
                expected = eng.decide(s, d, probe.port, probe.protocol)
                assert m.allowed(pi, si, di) == expected.allowed, f"{probe} {s.name} -> {d.name}: {expected.summary}"
                assert m.would_drop(pi, si, di) == expected.would_drop, f"{probe} {s.name} -> {d.name}: {expected.summary}"
    for by in ("namespace", "epg"):
        g = m.group_by(by)
        for pi in range(len(probes)):
            allowed = sum(c.allowed for row in g.cells[pi].values() for c in row.values())
            pairs = sum(c.pairs for row in g.cells[pi].values() for c in row.values())
            assert pairs == len(pods) * (len(pods) - 1)
            assert allowed == sum(m.allowed(pi, si, di) for si in range(len(pods)) for di in range(len(pods))
                                  if si != di)
