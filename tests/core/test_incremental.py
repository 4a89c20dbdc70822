"""Rebuilding with a ParseCache and the previous Model gives exactly what a fresh build gives, whatever
changed; unchanged objects are reused, changed ones are not."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.engine import Engine
from contracts.loader import ParseCache, documents, load_cluster_lenient
from contracts.model import Model
from tests.core.randomcluster import PROBES, random_cluster


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
