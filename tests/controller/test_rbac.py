"""The shipped RBAC (deploy/rbac.yaml) suffices, and no more is granted than the code uses: the real controller,
the agent's cache and `epgbridge annotate` run against the fake API server enforcing those very rules as
their ServiceAccounts or users; a rule taken away shows up as a 403."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from annotations.keys import EPG_ANNOTATION
from apic_client.simulator import Simulator
from controller.cli import main
from controller.watch import ClusterCache
from tests.controller.cluster_fixtures import ROOT, eventually, load_example
from tests.fakekube import CRD_DIR, FakeKube

RBAC_FILE = ROOT / "deploy" / "rbac.yaml"


def apply_rbac(kube: FakeKube, *, without: tuple[str, str, str] | None = None) -> None:
    """Create deploy/rbac.yaml's ServiceAccounts, roles and bindings, and let them decide from now on.
    `without=(role, resource, verb)` drops one verb of one resource from that role first."""
    if kube.get("Namespace", None, "epgbridge-system") is None:
        kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "epgbridge-system"}})
    for doc in yaml.safe_load_all(RBAC_FILE.read_text(encoding="utf-8")):
        doc = copy.deepcopy(doc)
        if without and doc["metadata"]["name"] == without[0] and doc["kind"] in ("Role", "ClusterRole"):
            for rule in doc["rules"]:
                if without[1] in rule["resources"]:
                    rule["verbs"] = [v for v in rule["verbs"] if v != without[2]]
        kube.create(doc)
    kube.authorize = True


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube(bookmark_interval=0.2, crds=[CRD_DIR]) as fake:
        load_example(fake)
        yield fake
        assert fake.server_errors == []


def test_controller_runs_on_its_role(kube: FakeKube, tmp_path: Path) -> None:
    from tests.controller.test_runtime import apic_dns, start_controller

    apply_rbac(kube)
    sim = Simulator(tmp_path / "apic.sqlite", tls=False, password="pw")
    url = sim.start("127.0.0.1", 0)
    ctl, thread = start_controller(kube, url, rbac=True)
    try:
        eventually(lambda: "uni/tn-shop/ap-storefront/epg-api" in apic_dns(sim, url), timeout=15)
        kube.patch("Namespace", None, "sandbox", {"metadata": {"annotations": {EPG_ANNOTATION: "{broken"}}})
        eventually(lambda: [e for e in kube.list("Event") if e["involvedObject"]["name"] == "sandbox"], timeout=15)
        eventually(lambda: (kube.get("Contract", None, "shop-web-to-api") or {}).get("status"), timeout=15)
        assert kube.get("Lease", "epgbridge-system", "epgbridge-controller") is not None
        assert ctl.metrics.get("api_errors_total", target="kubernetes") == 0
    finally:
        ctl.stop()
        thread.join(10)
        sim.stop()
    assert kube.denied == []
    verbs = {(r.verb, r.resource) for r in kube.requests if r.resource}
    assert ("patch", "contracts.epgbridge.io/status") in verbs and ("create", "events") in verbs


def test_agent_cache_runs_on_its_role(kube: FakeKube) -> None:
    apply_rbac(kube)
    cache = ClusterCache(kube.api_client(kube.service_account_token("epgbridge-system", "epgbridge-agent")))
    cache.start()
    try:
        assert cache.wait_synced(10)
        assert cache.get("Pod", "storefront", "api-7b9f8c5d44-r5nz8") is not None
    finally:
        cache.stop()
    assert kube.denied == []


def test_controller_without_a_verb_is_refused(kube: FakeKube, tmp_path: Path) -> None:
    """The check can fail: without `patch` on contracts/status the controller's status writes get 403."""
    from tests.controller.test_runtime import start_controller

    apply_rbac(kube, without=("epgbridge-controller", "contracts/status", "patch"))
    sim = Simulator(tmp_path / "apic.sqlite", tls=False, password="pw")
    url = sim.start("127.0.0.1", 0)
    ctl, thread = start_controller(kube, url, rbac=True)
    try:
        eventually(lambda: ctl.metrics.get("api_errors_total", target="kubernetes") >= 1, timeout=15)
    finally:
        ctl.stop()
        thread.join(10)
        sim.stop()
    assert any(d.startswith("system:serviceaccount:epgbridge-system:epgbridge-controller: patch contracts/status")
               for d in kube.denied)


def annotate(kube: FakeKube, tmp_path: Path, token: str, *args: str) -> int:
    config = kube.write_kubeconfig(tmp_path / "kubeconfig", token=token)
    return main(["annotate", *args, "--kubeconfig", str(config)])


def bind_team(kube: FakeKube, namespace: str, user: str, guard: bool = True) -> None:
    """The team's role in its namespace, and (`guard`) the tenancy guard's reads, as docs/install.md says."""
    subjects = [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]
    kube.create({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                 "metadata": {"name": "epg", "namespace": namespace},
                 "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                             "name": "epgbridge-annotate"}, "subjects": subjects})
    if guard:
        kube.create({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                     "metadata": {"name": f"epg-guard-{user}"},
                     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                 "name": "epgbridge-annotate-guard"}, "subjects": subjects})
        kube.create({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                     "metadata": {"name": f"epg-config-{user}", "namespace": "epgbridge-system"},
                     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                 "name": "epgbridge-config-reader"}, "subjects": subjects})


def test_annotate_role_suffices_for_a_team(kube: FakeKube, tmp_path: Path, capsys: Any) -> None:
    apply_rbac(kube)
    bind_team(kube, "storefront", "dev")
    token = kube.add_user("dev-token", "dev")
    assert annotate(kube, tmp_path, token, "deployment", "web", "-n", "storefront", "--epg", "shop/storefront/web") == 0
    got = kube.get("Deployment", "storefront", "web")
    assert json.loads(got["metadata"]["annotations"][EPG_ANNOTATION])["name"] == "web"
    assert annotate(kube, tmp_path, token, "pod", "api-7b9f8c5d44-r5nz8", "-n", "storefront") == 0
    assert "effective EPG" in capsys.readouterr().out
    assert annotate(kube, tmp_path, token, "deployment", "web", "-n", "storefront", "--clear") == 0
    assert kube.denied == []
    # Outside the team's namespace (its Namespace cannot even be read for the tenancy guard), and on the
    # namespace itself (the cluster admins'): refused.
    epg = "shop/storefront/web"
    assert annotate(kube, tmp_path, token, "deployment", "coredns", "-n", "kube-system", "--epg", epg) == 1
    assert annotate(kube, tmp_path, token, "namespace", "storefront", "--epg", epg) == 1
    assert capsys.readouterr().err.count("error: forbidden") == 2
    assert kube.denied == ["dev: get namespaces kube-system in kube-system",
                           "dev: patch namespaces storefront in storefront"]


def test_annotate_without_the_guard_roles_warns_and_writes(kube: FakeKube, tmp_path: Path, capsys: Any) -> None:
    apply_rbac(kube)
    bind_team(kube, "storefront", "dev", guard=False)
    token = kube.add_user("dev-token", "dev")
    assert annotate(kube, tmp_path, token, "deployment", "web", "-n", "storefront", "--epg", "shop/storefront/web") == 0
    assert capsys.readouterr().err.startswith("warning: the tenancy guard is not checked here (cannot list "
                                              "EndpointGroups: forbidden: ")
    assert kube.denied == ["dev: get configmaps epgbridge-config in epgbridge-system",
                           "dev: list endpointgroups in (cluster) (epgbridge.io)"]


def test_annotate_without_patch_is_refused(kube: FakeKube, tmp_path: Path, capsys: Any) -> None:
    apply_rbac(kube, without=("epgbridge-annotate", "deployments", "patch"))
    bind_team(kube, "storefront", "dev")
    token = kube.add_user("dev-token", "dev")
    assert annotate(kube, tmp_path, token, "deployment", "web", "-n", "storefront", "--epg", "shop/storefront/web") == 1
    assert 'cannot patch resource "deployments"' in capsys.readouterr().err
    assert kube.denied == ["dev: patch deployments web in storefront (apps)"]
