"""EPG annotations: value parsing, precedence pod > workload > namespace > default with field-by-field
inheritance, workloads through ownerReferences or by selector, invalid values (isolate / fallback)."""

from __future__ import annotations

import pytest

from annotations.value import AnnotationError, format_epg_annotation, parse_epg_annotation
from epg.identity import EPGRef
from tests.core.builders import (
    GROUP,
    assert_matrix,
    config,
    engine,
    epg_value,
    model,
    namespace,
    owner,
    pod,
    workload,
)


@pytest.mark.parametrize(("text", "expected"), [
    ('{"tenant": "t", "app-profile": "ap", "name": "e"}', ("t", "ap", "e")),
    ('{"tenant": null, "app-profile": "", "name": "e"}', (None, None, "e")),
    ('{"name": "e"}', (None, None, "e")),
    ('{"policy-space": "ps", "name": "e"}', ("ps", None, "e")),
    ('{"tenant": "t", "policy-space": "ps"}', ("t", None, None)),
    ('{"tenant": "t", "name": "ap|e"}', ("t", "ap", "e")),
    ('{"name": "kubernetes|kube-default", "policy-space": "kube"}', ("kube", "kubernetes", "kube-default")),
    ('{"name": "e", "color": 7}', (None, None, "e")),
    ('{}', (None, None, None)),
])
def test_parse_values(text: str, expected: tuple[str | None, ...]) -> None:
    v = parse_epg_annotation(text)
    assert (v.tenant, v.app_profile, v.name) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("{not json", "not valid JSON"),
    ('["t", "ap", "e"]', "must be a JSON object"),
    ('"web"', "must be a JSON object"),
    ('{"name": 5}', '"name" must be a string, not 5'),
    ('{"tenant": ["t"]}', '"tenant" must be a string'),
    ('{"name": "has space"}', '"name" \'has space\' must be 1-64 of [a-zA-Z0-9_.:-]'),
    ('{"name": "' + "x" * 65 + '"}', "must be 1-64"),
    ('{"app-profile": "ap", "name": "a|b"}', '"name" \'a|b\' must be 1-64'),
    ('{"tenant": "t;flush ruleset"}', "must be 1-64"),
])
def test_invalid_values_name_the_field(text: str, message: str) -> None:
    with pytest.raises(AnnotationError, match=None) as exc:
        parse_epg_annotation(text)
    assert message in str(exc.value)


def test_format_round_trips() -> None:
    ref = EPGRef("t", "ap", "e")
    parsed = parse_epg_annotation(format_epg_annotation(ref))
    assert (parsed.tenant, parsed.app_profile, parsed.name) == ("t", "ap", "e")


def placements(*docs: dict) -> dict[str, str]:  # type: ignore[type-arg]
    m = model(*docs)
    return {p.key: str(pl.epg) if pl.epg else "ISOLATED" for p, pl in m.placements.items()}


DEPLOY_CHAIN = [
    workload("Deployment", "ns", "web", {"matchLabels": {"app": "web"}}, epg=epg_value(name="web-dep")),
    workload("ReplicaSet", "ns", "web-1", {"matchLabels": {"app": "web"}}, epg=epg_value(name="web-rs"),
             owners=[owner("Deployment", "web")]),
]


def test_precedence_and_field_inheritance() -> None:
    got = placements(
        config(tenants=["t-ns"]),  # undeclared EPGs are allowed in this tenant only (the tenancy guard)
        namespace("ns", epg=epg_value("t-ns", "ap-ns", "epg-ns")),
        *DEPLOY_CHAIN,
        pod("ns", "plain", "10.0.0.1"),
        pod("ns", "from-deploy", "10.0.0.2", {"app": "web"}, owners=[owner("ReplicaSet", "web-1")]),
        pod("ns", "own", "10.0.0.3", owners=[owner("ReplicaSet", "web-1")], epg=epg_value(ap="ap-pod")),
        pod("other", "default", "10.0.0.4"),
    )
    assert got == {
        "ns/plain": "t-ns/ap-ns/epg-ns",
        "ns/from-deploy": "t-ns/ap-ns/web-dep",  # the Deployment (top-most owner) wins over its ReplicaSet
        "ns/own": "t-ns/ap-pod/web-dep",  # each field from the highest layer that sets it
        "other/default": "kube/kubernetes/kube-default",
    }


def test_owner_chain_ends_at_missing_object_or_other_kind_with_warning() -> None:
    m = model(
        namespace("ns", epg=epg_value(name="ns-epg")),
        workload("ReplicaSet", "ns", "rs", epg=epg_value(name="rs-epg"), owners=[owner("Deployment", "gone")]),
        pod("ns", "a", "10.0.0.1", owners=[owner("ReplicaSet", "rs")]),
        pod("ns", "b", "10.0.0.2", owners=[owner("ReplicaSet", "missing")]),
        pod("ns", "c", "10.0.0.3", owners=[{"kind": "Job", "name": "j", "controller": True}]),
    )
    got = {p.key: str(pl.epg) for p, pl in m.placements.items()}
    assert got == {"ns/a": "kube/kubernetes/rs-epg", "ns/b": "kube/kubernetes/ns-epg",
                   "ns/c": "kube/kubernetes/ns-epg"}
    messages = [str(w) for w in m.warnings]
    assert any("deployment ns/gone is not in the input" in w for w in messages)
    assert any("replicaset ns/missing is not in the input" in w for w in messages)


def test_standalone_statefulset_daemonset_replicaset_are_workloads() -> None:
    got = placements(
        workload("StatefulSet", "ns", "db", epg=epg_value(name="db")),
        workload("DaemonSet", "ns", "agent", epg=epg_value(name="agent")),
        workload("ReplicaSet", "ns", "bare", epg=epg_value(name="bare")),
        pod("ns", "db-0", "10.0.0.1", owners=[owner("StatefulSet", "db")]),
        pod("ns", "agent-x", "10.0.0.2", owners=[owner("DaemonSet", "agent")]),
        pod("ns", "bare-x", "10.0.0.3", owners=[owner("ReplicaSet", "bare")]),
    )
    assert got == {"ns/db-0": "kube/kubernetes/db", "ns/agent-x": "kube/kubernetes/agent",
                   "ns/bare-x": "kube/kubernetes/bare"}


def test_selector_fallback_oldest_then_name_with_warning() -> None:
    m = model(
        workload("Deployment", "ns", "young", {"matchLabels": {"app": "x"}}, epg=epg_value(name="young"),
                 created="2026-05-01T00:00:00Z"),
        workload("Deployment", "ns", "old-b", {"matchLabels": {"app": "x"}}, epg=epg_value(name="old-b"),
                 created="2024-01-01T00:00:00Z"),
        workload("StatefulSet", "ns", "old-a", {"matchLabels": {"app": "x"}}, epg=epg_value(name="old-a"),
                 created="2024-01-01T00:00:00Z"),
        workload("Deployment", "ns", "other", {"matchLabels": {"app": "y"}}, epg=epg_value(name="other"),
                 created="2020-01-01T00:00:00Z"),
        pod("ns", "p", "10.0.0.1", {"app": "x"}),
        pod("ns", "lonely", "10.0.0.2", {"app": "z"}),
    )
    got = {p.key: str(pl.epg) for p, pl in m.placements.items()}
    assert got == {"ns/p": "kube/kubernetes/old-a", "ns/lonely": "kube/kubernetes/kube-default"}
    warning = next(str(w) for w in m.warnings if "pod ns/p" in str(w))
    assert "no ownerReferences" in warning and "statefulset ns/old-a" in warning and "deployment ns/young" in warning
    assert not any("lonely" in str(w) for w in m.warnings)


def test_invalid_annotation_isolates_by_default_and_is_reported() -> None:
    docs = [
        config(tenants=["kube", "t"]),
        namespace("ns", epg="{broken"),
        pod("ns", "reads-ns", "10.0.0.1"),
        pod("ns", "complete", "10.0.0.2", epg=epg_value("t", "ap", "e")),
        pod("ns", "partial", "10.0.0.3", epg=epg_value(name="e")),
        pod("ns", "peer", "10.0.0.4", epg=epg_value("kube", "kubernetes", "kube-default")),
    ]
    m = model(*docs)
    got = {p.key: str(pl.epg) if pl.epg else "ISOLATED" for p, pl in m.placements.items()}
    # Only pods that read the namespace layer are affected; the invalid value is reported once anyway.
    assert got == {"ns/reads-ns": "ISOLATED", "ns/complete": "t/ap/e", "ns/partial": "ISOLATED",
                   "ns/peer": "kube/kubernetes/kube-default"}
    assert [str(e) for e in m.errors] == [
        "invalid annotation on namespace ns: opflex.cisco.com/endpoint-group: not valid JSON "
        "(Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"]


def test_isolated_pods_reach_nobody_not_even_each_other() -> None:
    eng = engine(
        namespace("ns", epg='{"name": 7}'),
        pod("ns", "i1", "10.0.0.1"), pod("ns", "i2", "10.0.0.2"),
        pod("ok", "a", "10.0.0.3"), pod("ok", "b", "10.0.0.4"),
    )
    assert_matrix(eng, "80/TCP", """
       i1 i2 a b
    i1 .  X  X X
    i2 X  .  X X
    a  X  X  . .
    """)
    reason = eng.decide(eng.endpoint("ok/a"), eng.endpoint("ns/i1"), 80, "TCP").epg.reasons[0].text
    assert "isolated: invalid EPG annotation on namespace ns" in reason


def test_fallback_uses_the_next_layer() -> None:
    config = {"apiVersion": GROUP, "kind": "Config", "metadata": {"name": "epgbridge"},
              "spec": {"invalidAnnotation": "fallback",
                       "defaultEndpointGroup": {"tenant": "t0", "applicationProfile": "ap0", "name": "d0"}}}
    got = placements(
        config,
        namespace("ns", epg=epg_value(name="ns-epg")),
        workload("Deployment", "ns", "web", epg='{"name": "bad name"}'),
        pod("ns", "p", "10.0.0.1", owners=[owner("Deployment", "web")]),
        pod("ns", "q", "10.0.0.2", epg="not json"),
    )
    assert got == {"ns/p": "t0/ap0/ns-epg", "ns/q": "t0/ap0/ns-epg"}


def test_naming_the_default_epg_equals_no_annotation() -> None:
    eng_a = engine(pod("ns", "a", "10.0.0.1", epg=epg_value("kube", "kubernetes", "kube-default")),
                   pod("ns", "b", "10.0.0.2"))
    assert eng_a.model.epg_of(eng_a.model.pods_by_key["ns/a"]) == eng_a.model.epg_of(eng_a.model.pods_by_key["ns/b"])
    assert not eng_a.model.warnings  # the default EPG needs no EndpointGroup


def test_configurable_annotation_key() -> None:
    config = {"apiVersion": GROUP, "kind": "Config", "metadata": {"name": "c"},
              "spec": {"annotationKey": "example.com/epg", "tenants": ["t"]}}
    m = model(config, {"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": "p", "namespace": "ns",
                                    "annotations": {"example.com/epg": epg_value("t", "a", "e"),
                                                    "opflex.cisco.com/endpoint-group": epg_value("x", "y", "z")}},
                       "status": {"podIP": "10.0.0.1"}})
    assert str(next(iter(m.placements.values())).epg) == "t/a/e"
