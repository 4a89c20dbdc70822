"""Rebuilding with a ParseCache and the previous Model gives exactly what a fresh build gives, whatever
changed; unchanged objects are reused, changed ones are not."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.engine import Engine
from contracts.ir import Rules
from contracts.loader import ParseCache, documents, load_cluster_lenient
from contracts.model import Model
from tests.core.randomcluster import PROBES, addresses, random_cluster


def versioned(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for i, d in enumerate(docs):
        d["metadata"]["resourceVersion"] = str(i + 1)
    return docs


def mutate(docs: list[dict[str, Any]], rnd: random.Random, version: int) -> list[dict[str, Any]]:
    """One change, as the API server would make it: the object gets a new resourceVersion."""
    docs = copy.deepcopy(docs)
    target = rnd.choice([d for d in docs if d["kind"] in ("Namespace", "Pod", "Deployment", "NetworkPolicy")])
    meta = target["metadata"]
    choice = rnd.randrange(3)
    if choice == 0:
        meta.setdefault("annotations", {})["opflex.cisco.com/endpoint-group"] = rnd.choice(
            [json.dumps({"name": "e2"}), json.dumps({"tenant": "t2", "app-profile": "ap1", "name": "e4"}), "{bad"])
    elif choice == 1:
        meta.setdefault("labels", {})["app"] = rnd.choice(["a", "b", "c"])
    else:
        meta.get("annotations", {}).pop("opflex.cisco.com/endpoint-group", None)
    meta["resourceVersion"] = str(version)
    return docs


def summary(model: Model) -> tuple[Any, ...]:
    placements = sorted((p.key, str(pl.epg), pl.origin, pl.isolated_by) for p, pl in model.placements.items())
    return placements, sorted(map(str, model.errors)), sorted(map(str, model.warnings))


@settings(max_examples=50, deadline=None)
@given(st.randoms(use_true_random=False))
def test_incremental_rebuild_equals_a_fresh_build(rnd: random.Random) -> None:
    docs = versioned(random_cluster(rnd))
    cache = ParseCache()
    cluster, _ = load_cluster_lenient(documents("a", docs), cache)
    model = Model(cluster)
    for step in range(4):
        docs = mutate(docs, rnd, 1000 + step)
        cluster, _ = load_cluster_lenient(documents("b", docs), cache)
        incremental = Model(cluster, model)
        fresh = Model(load_cluster_lenient(documents("c", docs))[0])
        assert summary(incremental) == summary(fresh)
        eng_i, eng_f = Engine(incremental), Engine(fresh)
        for s in incremental.endpoints:
            for d in incremental.endpoints:
                for port, proto in PROBES[:2]:
                    a = eng_i.decide(eng_i.endpoint(s.key), eng_i.endpoint(d.key), port, proto).allowed
                    b = eng_f.decide(eng_f.endpoint(s.key), eng_f.endpoint(d.key), port, proto).allowed
                    assert a == b
        model = incremental


def test_unchanged_objects_are_reused_changed_ones_parsed_again() -> None:
    docs = versioned(random_cluster(random.Random(5)))
    cache = ParseCache()
    first, _ = load_cluster_lenient(documents("a", docs), cache)
    pod_doc = next(d for d in docs if d["kind"] == "Pod")
    pod_doc["metadata"]["labels"] = {"app": "changed"}
    pod_doc["metadata"]["resourceVersion"] = "999"
    second, _ = load_cluster_lenient(documents("a", docs), cache)
    changed = f"{pod_doc['metadata']['namespace']}/{pod_doc['metadata']['name']}"
    before = {p.key: p for p in first.pods}
    for pod in second.pods:
        assert (pod is before[pod.key]) == (pod.key != changed)
    assert dict(next(p for p in second.pods if p.key == changed).labels) == {"app": "changed"}
    model1 = Model(first)
    model2 = Model(second, model1)
    reused = sum(1 for p in second.pods if model2.placements[p] is model1.placements.get(p))
    assert reused == len(second.pods) - 1


def test_objects_without_resource_version_are_never_cached() -> None:
    docs = random_cluster(random.Random(6))  # snapshot files carry no resourceVersion
    cache = ParseCache()
    a, _ = load_cluster_lenient(documents("a", docs), cache)
    b, _ = load_cluster_lenient(documents("a", docs), cache)
    assert len(cache) == 0 and all(x is not y for x, y in zip(a.pods, b.pods, strict=True))


def test_cached_endpoint_groups_follow_a_config_change() -> None:
    from tests.core.builders import GROUP
    eg = {"apiVersion": GROUP, "kind": "EndpointGroup", "metadata": {"name": "web", "resourceVersion": "7"},
          "spec": {"provides": ["c"]}}

    def config(tenant: str) -> dict[str, Any]:
        return {"apiVersion": GROUP, "kind": "Config", "metadata": {"name": "c"}, "spec": {
            "defaultEndpointGroup": {"tenant": tenant, "applicationProfile": "ap", "name": "d"}}}

    cache = ParseCache()
    first, _ = load_cluster_lenient(documents("a", [config("t1"), eg]), cache)
    again, _ = load_cluster_lenient(documents("a", [config("t1"), eg]), cache)
    other, _ = load_cluster_lenient(documents("a", [config("t2"), eg]), cache)
    assert [str(r) for r in first.groups] == ["t1/ap/web"] and [str(r) for r in other.groups] == ["t2/ap/web"]
    assert next(iter(again.groups.values())) is next(iter(first.groups.values()))


def _status(ips: str | list[str]) -> dict[str, Any]:
    return {"podIP": ips} if isinstance(ips, str) else {"podIP": ips[0], "podIPs": [{"ip": a} for a in ips]}


def _ips(status: dict[str, Any]) -> list[str]:
    return [a["ip"] for a in status.get("podIPs") or []] or [status["podIP"]]


def pod_changes(docs: list[dict[str, Any]], rnd: random.Random, step: int, family: str = "ipv4"
                ) -> tuple[list[dict[str, Any]], dict[tuple[str, str], dict[str, Any] | None]]:
    """A few pod events at once, as a watch delivers them: pods created (valid, with an invalid annotation,
    on a taken address (dual-stack: maybe only its second), in a namespace nobody declared), deleted, relabelled,
    re-annotated, re-addressed. Addresses are of the cluster's `family` (randomcluster.FAMILIES)."""
    docs = copy.deepcopy(docs)
    changed: dict[tuple[str, str], dict[str, Any] | None] = {}
    pods = [d for d in docs if d["kind"] == "Pod"]
    v6_first = any(":" in d["status"]["podIP"] for d in pods) and family == "dual"
    for i in range(rnd.randint(1, 3)):
        kind = rnd.randrange(5)
        if kind == 0 or not pods:
            ns = rnd.choice(["x", "y", "x", "y", "z"])
            ips = addresses(f"10.3.{step}.{i + 1}", family, v6_first)
            if pods and rnd.random() < 0.25:  # on an address another pod has
                taken = rnd.choice(_ips(rnd.choice(pods)["status"]))
                ips = taken if isinstance(ips, str) else [taken if (":" in a) == (":" in taken) else a for a in ips]
            new = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": f"n{step}-{i}", "namespace": ns, "labels": {"app": rnd.choice("abc")},
                                "resourceVersion": f"{step}{i}"},
                   "spec": {"nodeName": rnd.choice(["node0", "node1"]), "containers": [{"name": "c"}]},
                   "status": _status(ips)}
            if rnd.random() < 0.3:
                new["metadata"]["annotations"] = {"opflex.cisco.com/endpoint-group": rnd.choice(
                    [json.dumps({"name": "e2"}), "{bad"])}
            docs.append(new)
            target = new
        else:
            target = rnd.choice(pods)
            what = rnd.randrange(4)
            if what == 0:
                docs.remove(target)
                pods.remove(target)
                changed[(target["metadata"]["namespace"], target["metadata"]["name"])] = None
                continue
            meta = target["metadata"]
            if what == 1:
                meta.setdefault("labels", {})["app"] = rnd.choice("abc")
            elif what == 2:
                meta.setdefault("annotations", {})["opflex.cisco.com/endpoint-group"] = rnd.choice(
                    [json.dumps({"name": "e3"}), "{bad", json.dumps({"tenant": "t2", "app-profile": "ap1", "name": "e4"})])
            else:
                target["status"] = _status(addresses(f"10.4.{step}.{i + 1}", family, v6_first))
            meta["resourceVersion"] = f"{step}{i}"
        changed[(target["metadata"]["namespace"], target["metadata"]["name"])] = target
    return docs, changed


def ir_summary(model: Model, eng: Engine | None = None) -> list[tuple[Any, ...]]:
    """The compiled IR, groups with their members (groups compare by definition alone)."""
    ir = (eng or Engine(model)).compile()

    def rules(rs: Rules) -> Any:
        return None if rs is None else [(r.peers, ir.members(r.peers), r.services, r.named) for r in rs]
    return [(node, p.key, p.ips, *(rules(r) for _, _, r in p.layers()), p.epg_isolated)
            for node, n in ir.nodes.items() for p in n.pods] + [
        (ir.epg_open, ir.epg_pods, ir.epg_subnets, {n: dict(t) for n, t in ir.named_ports.items()})]


@pytest.mark.parametrize(("family", "seeds"), [("ipv4", 40), ("ipv6", 10), ("dual", 15)])
def test_an_engine_taken_over_equals_a_fresh_one(family: str, seeds: int) -> None:
    """Engine(model, previous) for a model patched from previous.model (the agent's path for pod events: groups
    updated by the changed pods only) compiles what a fresh Engine compiles, members of every group included,
    over sequences of random pod events, whichever groups the previous engine had computed."""
    from contracts.loader import Document, patch_pods
    taken_over = 0
    for seed in range(seeds):
        rnd = random.Random(seed)
        docs = versioned(random_cluster(rnd, pods=6, family=family))
        cluster, rejected = load_cluster_lenient(documents("a", docs))
        model = Model(cluster)
        eng = Engine(model)
        for step in range(4):
            ir = eng.compile()
            for node in ir.nodes.values():  # compute the members of some groups (a node's table computes its own)
                for pod in node.pods:
                    for _, _, rules in pod.layers():
                        for rule in rules or ():
                            if rnd.random() < 0.7:
                                ir.members(rule.peers)
            docs, changed = pod_changes(docs, rnd, step, family)
            patched = patch_pods(model.cluster, rejected, {k: None if d is None else Document("w", d)
                                                          for k, d in changed.items()})
            if patched is None:
                cluster, rejected = load_cluster_lenient(documents("b", docs))
                model = Model(cluster)
                eng = Engine(model)
                continue
            model = Model.with_pods(model, *patched)
            eng = Engine(model, eng)
            taken_over += bool(eng._members)
            assert ir_summary(model, eng) == ir_summary(model, Engine(model))
    assert taken_over >= seeds, taken_over


@pytest.mark.parametrize(("family", "seeds"), [("ipv4", 40), ("ipv6", 10), ("dual", 15)])
def test_patching_pods_equals_loading_everything(family: str, seeds: int) -> None:
    """patch_pods + Model.with_pods (the agent's path for pod events) == a fresh load, on random clusters and
    random pod events; where it declines (returns None), a full load is the agent's answer."""
    from contracts.loader import Document, patch_pods
    patched_steps = 0
    for seed in range(seeds):
        rnd = random.Random(seed)
        docs = versioned(random_cluster(rnd, pods=5, family=family))
        for d in docs:  # invalid values above the pods too: a new pod reading them must not report them again
            if d["kind"] in ("Namespace", "Deployment") and rnd.random() < 0.5:
                d["metadata"].setdefault("annotations", {})["opflex.cisco.com/endpoint-group"] = "{bad"
        cluster, rejected = load_cluster_lenient(documents("a", docs))
        model = Model(cluster)
        for step in range(3):
            docs, changed = pod_changes(docs, rnd, step, family)
            fresh_cluster, fresh_rejected = load_cluster_lenient(documents("b", docs))
            fresh = Model(fresh_cluster)
            patched = patch_pods(model.cluster, rejected, {k: None if d is None else Document("w", d)
                                                          for k, d in changed.items()})
            if patched is None:
                model, rejected = fresh, fresh_rejected
                continue
            patched_steps += 1
            new_cluster, gone, came = patched
            assert [p.key for p in new_cluster.pods] == [p.key for p in fresh_cluster.pods]
            assert rejected == fresh_rejected
            model = Model.with_pods(model, new_cluster, gone, came)
            assert summary(model) == summary(fresh)
            assert model.warnings == fresh.warnings  # in the same order, too
            assert ir_summary(model) == ir_summary(fresh)
    assert patched_steps >= seeds, patched_steps  # the patch path, not only the fallback, is what was tested
