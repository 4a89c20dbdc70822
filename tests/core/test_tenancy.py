"""The tenancy guard (docs/semantics.md 3.5): which EPG each pod lands in when pods, workloads and namespaces name EPGs
they may or may not use, as a table per configuration; the refusals as errors and in explain; the APIC trees
never hold a tenant that only a refused annotation named."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from apic_client.render import render_tenants
from contracts.model import Model
from controller.cli import main
from tests.core.builders import (
    config,
    endpoint_group,
    engine,
    epg_value,
    model,
    namespace,
    owner,
    pod,
    workload,
)

API = epg_value("shop", "store", "api")


def cluster(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        *extra,
        namespace("shop", {"team": "shop"}, epg=epg_value("shop", "store", "web")),
        namespace("corp", {"team": "corp"}, epg=epg_value("shop", "store", "web")),  # trusted: no selector needed
        namespace("ops", {"team": "ops"}, epg=epg_value("infra", "core", "monitor")),  # undeclared, tenant infra
        namespace("sandbox", {"team": "dev"}),
        endpoint_group("web", "shop", "store", namespaceSelector=None),  # namespace annotations only
        endpoint_group("api", "shop", "store", namespaceSelector={"matchLabels": {"team": "shop"}}),
        endpoint_group("open", "shop", "store"),  # namespaceSelector: {}: every namespace
        endpoint_group("kube-default", namespaceSelector=None),  # the cluster default EPG, declared
        workload("Deployment", "sandbox", "thief", epg=API),
        pod("shop", "plain", "10.0.0.1"),
        pod("shop", "to-api", "10.0.0.2", epg=epg_value(name="api")),  # the rest from the namespace
        pod("shop", "to-own", "10.0.0.3", epg=epg_value("shop", "store", "web")),
        pod("shop", "to-default", "10.0.0.4", epg=epg_value("kube", "kubernetes", "kube-default")),
        pod("corp", "plain", "10.0.1.1"),
        pod("corp", "to-api", "10.0.1.2", epg=API),
        pod("ops", "plain", "10.0.2.1"),
        pod("sandbox", "plain", "10.0.3.1"),
        pod("sandbox", "to-api", "10.0.3.2", epg=API),
        pod("sandbox", "to-web", "10.0.3.3", epg=epg_value("shop", "store", "web")),
        pod("sandbox", "to-open", "10.0.3.4", epg=epg_value("shop", "store", "open")),
        pod("sandbox", "to-infra", "10.0.3.5", epg=epg_value("infra", "core", "admin")),
        pod("sandbox", "to-scratch", "10.0.3.6", epg=epg_value(name="scratch")),  # undeclared, tenant kube
        pod("sandbox", "to-default", "10.0.3.7", epg=epg_value("kube", "kubernetes", "kube-default")),
        pod("sandbox", "thief-1", "10.0.3.8", owners=[owner("Deployment", "thief")]),
    ]


def table(m: Model) -> str:
    return "\n".join(f"{p.key:<19} {pl.epg or 'ISOLATED'}" for p, pl in m.placements.items())


def rows(text: str) -> str:
    return "\n".join(" ".join(line.split()[:1]).ljust(19) + " " + line.split()[1]
                     for line in text.strip().splitlines())


def test_who_lands_where_by_default() -> None:
    assert table(model(*cluster())) == rows("""
    corp/plain          shop/store/web
    corp/to-api         ISOLATED
    ops/plain           ISOLATED
    sandbox/plain       kube/kubernetes/kube-default
    sandbox/thief-1     ISOLATED
    sandbox/to-api      ISOLATED
    sandbox/to-default  kube/kubernetes/kube-default
    sandbox/to-infra    ISOLATED
    sandbox/to-open     shop/store/open
    sandbox/to-scratch  kube/kubernetes/scratch
    sandbox/to-web      ISOLATED
    shop/plain          shop/store/web
    shop/to-api         shop/store/api
    shop/to-default     ISOLATED
    shop/to-own         shop/store/web
    """)
    # corp/to-api: api admits team=shop only; ops: infra is not an allowed tenant, not even for a namespace
    # annotation; thief-1: its Deployment's annotation is refused like the pods' own.


def test_who_lands_where_with_fallback() -> None:
    # A refused layer is skipped: the next one down decides (the namespace's EPG, or the cluster default).
    assert table(model(*cluster(config(invalidAnnotation="fallback")))) == rows("""
    corp/plain          shop/store/web
    corp/to-api         shop/store/web
    ops/plain           kube/kubernetes/kube-default
    sandbox/plain       kube/kubernetes/kube-default
    sandbox/thief-1     kube/kubernetes/kube-default
    sandbox/to-api      kube/kubernetes/kube-default
    sandbox/to-default  kube/kubernetes/kube-default
    sandbox/to-infra    kube/kubernetes/kube-default
    sandbox/to-open     shop/store/open
    sandbox/to-scratch  kube/kubernetes/scratch
    sandbox/to-web      kube/kubernetes/kube-default
    shop/plain          shop/store/web
    shop/to-api         shop/store/api
    shop/to-default     shop/store/web
    shop/to-own         shop/store/web
    """)


def test_who_lands_where_with_more_tenants_allowed() -> None:
    # Config spec.tenants: undeclared EPGs of infra are allowed now; kube is no longer listed, but the cluster
    # default EPG always is.
    assert table(model(*cluster(config(tenants=["infra"])))) == rows("""
    corp/plain          shop/store/web
    corp/to-api         ISOLATED
    ops/plain           infra/core/monitor
    sandbox/plain       kube/kubernetes/kube-default
    sandbox/thief-1     ISOLATED
    sandbox/to-api      ISOLATED
    sandbox/to-default  kube/kubernetes/kube-default
    sandbox/to-infra    infra/core/admin
    sandbox/to-open     shop/store/open
    sandbox/to-scratch  ISOLATED
    sandbox/to-web      ISOLATED
    shop/plain          shop/store/web
    shop/to-api         shop/store/api
    shop/to-default     ISOLATED
    shop/to-own         shop/store/web
    """)


def test_a_namespace_selector_change_moves_pods() -> None:
    docs = cluster()
    before = model(*docs)
    api = next(d for d in docs if d["kind"] == "EndpointGroup" and d["spec"]["name"] == "api")
    api["spec"]["namespaceSelector"] = {"matchExpressions": [{"key": "team", "operator": "In",
                                                              "values": ["shop", "dev"]}]}
    # The same pod, workload and namespace objects (as a live cluster's parse cache keeps them), other groups:
    # the placements of the previous model must not be reused.
    after = Model(replace(before.cluster, groups=model(*docs).cluster.groups), previous=before)
    placed = {p.key: str(pl.epg) for p, pl in after.placements.items()}
    assert (placed["sandbox/to-api"], placed["sandbox/thief-1"], placed["corp/to-api"]) == (
        "shop/store/api", "shop/store/api", "None")


def test_refusals_are_errors_once_per_object() -> None:
    m = model(*cluster(pod("sandbox", "thief-2", "10.0.3.9", owners=[owner("Deployment", "thief")])))
    refused = [str(e) for e in m.errors]
    key = "opflex.cisco.com/endpoint-group"
    assert refused == [
        f"annotation refused on pod corp/to-api: {key}: EPG shop/store/api is not open to namespace corp: its "
        "spec.namespaceSelector [team=shop] does not match",
        f"annotation refused on namespace ops: {key}: no EndpointGroup declares EPG infra/core/monitor, and "
        "annotations may name undeclared EPGs only in tenant kube (Config spec.tenants)",
        f"annotation refused on deployment sandbox/thief: {key}: EPG shop/store/api is not open to namespace "
        "sandbox: its spec.namespaceSelector [team=shop] does not match",
        f"annotation refused on pod sandbox/to-api: {key}: EPG shop/store/api is not open to namespace sandbox: "
        "its spec.namespaceSelector [team=shop] does not match",
        f"annotation refused on pod sandbox/to-infra: {key}: no EndpointGroup declares EPG infra/core/admin, and "
        "annotations may name undeclared EPGs only in tenant kube (Config spec.tenants)",
        f"annotation refused on pod sandbox/to-web: {key}: EPG shop/store/web is not open to namespace sandbox: "
        "its EndpointGroup has no spec.namespaceSelector (only namespace annotations place pods in it)",
        f"annotation refused on pod shop/to-default: {key}: EPG kube/kubernetes/kube-default is not open to "
        "namespace shop: its EndpointGroup has no spec.namespaceSelector (only namespace annotations place pods "
        "in it)",
    ]


def test_explain_says_why() -> None:
    eng = engine(*cluster())
    verdict = eng.decide(eng.endpoint("sandbox/to-api"), eng.endpoint("shop/to-api"), 80, "TCP")
    assert not verdict.allowed
    assert verdict.src_epg == (
        "sandbox/to-api is isolated; the annotation on pod sandbox/to-api is refused: EPG shop/store/api is not "
        "open to namespace sandbox: its spec.namespaceSelector [team=shop] does not match")
    fallback = engine(*cluster(config(invalidAnnotation="fallback")))
    verdict = fallback.decide(fallback.endpoint("corp/to-api"), fallback.endpoint("shop/to-api"), 80, "TCP")
    assert verdict.src_epg == (
        "corp/to-api is in EPG shop/store/web (from namespace corp; the annotation on pod corp/to-api is refused: "
        "EPG shop/store/api is not open to namespace corp: its spec.namespaceSelector [team=shop] does not match)")


@pytest.mark.parametrize("mode", ["isolate", "fallback"])
def test_the_apic_trees_hold_no_tenant_only_a_refused_annotation_named(mode: str) -> None:
    trees = render_tenants(model(*cluster(config(invalidAnnotation=mode))))
    tenants = {next(iter(t.values()))["attributes"]["name"] for t in trees}
    assert tenants == {"kube", "shop"}  # no infra: only ops and to-infra named it, and both were refused
    allowed = render_tenants(model(*cluster(config(invalidAnnotation=mode, tenants=["kube", "infra"]))))
    assert {next(iter(t.values()))["attributes"]["name"] for t in allowed} == {"kube", "shop", "infra"}


def test_validate_fails_and_matrix_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap = tmp_path / "s.yaml"
    snap.write_text(yaml.safe_dump_all(cluster()))
    assert main(["validate", "-f", str(snap)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert "error: annotation refused on pod sandbox/to-web: opflex.cisco.com/endpoint-group: EPG shop/store/web " \
           "is not open to namespace sandbox: its EndpointGroup has no spec.namespaceSelector (only namespace " \
           "annotations place pods in it)" in err
    assert err[-1].startswith("invalid: 7 invalid annotation(s), 7 pod(s) isolated;")
    assert main(["matrix", "-f", str(snap), "--probe", "80/TCP", "-o", "json"]) == 0
    assert sum(line.startswith("warning: annotation refused on ") for line in capsys.readouterr().err.splitlines()) == 7
