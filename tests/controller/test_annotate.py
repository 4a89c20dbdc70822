"""`epgbridge annotate` against the fake API server with the real client (a temporary kubeconfig), and
offline on manifest files."""

from __future__ import annotations

import io
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from annotations.keys import EPG_ANNOTATION
from controller.cli import main
from tests.fakekube import CRD_DIR, FakeKube

TEMPLATE = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "nginx"}]}}


def epg(tenant: str | None = None, ap: str | None = None, name: str | None = None) -> str:
    value = {k: v for k, v in (("tenant", tenant), ("app-profile", ap), ("name", name)) if v is not None}
    return json.dumps(value)


def obj(kind: str, name: str, ns: str | None = "shop", annotations: dict[str, str] | None = None,
        owner: tuple[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    api = "v1" if kind in ("Namespace", "Pod") else "apps/v1"
    meta: dict[str, Any] = {"name": name}
    if ns and kind != "Namespace":
        meta["namespace"] = ns
    if annotations:
        meta["annotations"] = annotations
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner[0], "name": owner[1],
                                    "uid": f"uid-{owner[1]}", "controller": True}]
    body: dict[str, Any] = {"apiVersion": api, "kind": kind, "metadata": meta}
    if kind == "Pod":
        body["spec"] = TEMPLATE["spec"]
    elif kind != "Namespace":
        body["spec"] = {"selector": {"matchLabels": {"app": "web"}}, "template": TEMPLATE}
    body.update(extra)
    return body


# The cluster's Config, as deploy/ installs it: these tests name undeclared EPGs of these tenants.
CONFIG = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "epgbridge-config",
                                                                 "namespace": "epgbridge-system"},
          "data": {"config.yaml": yaml.safe_dump({"apiVersion": "epgbridge.io/v1alpha1", "kind": "Config",
                                                  "metadata": {"name": "epgbridge"},
                                                  "spec": {"tenants": ["kube", "prod", "retail", "a", "t"]}})}}


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube(crds=[CRD_DIR]) as fake:
        fake.create(obj("Namespace", "epgbridge-system"))
        fake.create(CONFIG)
        fake.create(obj("Namespace", "shop", annotations={"team": "retail"}))
        for kind in ("Deployment", "StatefulSet", "DaemonSet"):
            fake.create(obj(kind, "web", annotations={"team": "retail"}))
        fake.create(obj("Pod", "web", annotations={"team": "retail"}))
        fake.reset_counters()
        yield fake
        assert fake.server_errors == []


@pytest.fixture
def kubeconfig(kube: FakeKube, tmp_path: Path) -> str:
    return str(kube.write_kubeconfig(tmp_path / "kubeconfig"))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(["annotate", *argv])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def annotations_of(kube: FakeKube, kind: str, name: str, ns: str | None = "shop") -> dict[str, str]:
    found = kube.get(kind, None if kind == "Namespace" else ns, name)
    assert found is not None
    return dict(found["metadata"].get("annotations") or {})


CASES = [("namespace", "Namespace", ()), ("deployment", "Deployment", ("-n", "shop")),
         ("statefulset", "StatefulSet", ("-n", "shop")), ("daemonset", "DaemonSet", ("-n", "shop")),
         ("pod", "Pod", ("-n", "shop"))]


@pytest.mark.parametrize(("cli_kind", "kind", "ns_args"), CASES, ids=[c[0] for c in CASES])
def test_set_get_clear_on_each_kind(capsys: pytest.CaptureFixture[str], kube: FakeKube, kubeconfig: str,
                                    cli_kind: str, kind: str, ns_args: tuple[str, ...]) -> None:
    base = [cli_kind, "web" if kind != "Namespace" else "shop", *ns_args, "--kubeconfig", kubeconfig]
    name = base[1]
    code, out, err = run(capsys, *base, "--epg", "prod/shop/web")
    assert (code, err) == (0, "")
    assert out.strip().endswith(f'{EPG_ANNOTATION}={epg("prod", "shop", "web")}')
    assert annotations_of(kube, kind, name) == {"team": "retail", EPG_ANNOTATION: epg("prod", "shop", "web")}
    # One write, a merge patch of the one key; the object is not read first (nothing to lose between a read and a
    # write: the reads are the tenancy guard's EndpointGroups, Config and Namespace).
    (request,) = [r for r in kube.requests if r.verb != "get" and r.verb != "list"]
    assert (request.verb, request.content_type) == ("patch", "application/merge-patch+json")
    assert {r.resource for r in kube.requests if r is not request} == {
        "endpointgroups.epgbridge.io", "configmaps", "namespaces"}
    assert json.loads(request.body) == {"metadata": {"annotations": {EPG_ANNOTATION: epg("prod", "shop", "web")}}}

    code, out, err = run(capsys, *base)
    assert code == 0
    assert f"{EPG_ANNOTATION}: {epg('prod', 'shop', 'web')}" in out
    assert "reads as: tenant prod, app-profile shop, name web" in out

    code, out, err = run(capsys, *base, "--clear")
    assert code == 0 and "removed" in out
    assert annotations_of(kube, kind, name) == {"team": "retail"}
    code, out, _ = run(capsys, *base)
    assert f"{EPG_ANNOTATION}: (none)" in out


def test_pod_effective_epg_through_deployment_replicaset_and_namespace(capsys: pytest.CaptureFixture[str],
                                                                       kube: FakeKube, kubeconfig: str) -> None:
    kube.create(obj("Namespace", "store", annotations={EPG_ANNOTATION: epg("retail", "storefront", "store-default")}))
    kube.create(obj("Deployment", "api", ns="store", annotations={EPG_ANNOTATION: epg(name="api")}))
    kube.create(obj("ReplicaSet", "api-7b9f8c5d44", ns="store", owner=("Deployment", "api")))
    kube.create(obj("Pod", "api-7b9f8c5d44-h2wlt", ns="store", owner=("ReplicaSet", "api-7b9f8c5d44")))
    code, out, err = run(capsys, "pod", "api-7b9f8c5d44-h2wlt", "-n", "store", "--kubeconfig", kubeconfig)
    assert (code, err) == (0, "")
    lines = [line.split() for line in out.splitlines()]
    assert f"{EPG_ANNOTATION}: (none)" in out
    assert "effective EPG: retail/storefront/api (tenant, app-profile from namespace store; name from deployment " \
           "store/api)" in out
    assert "workload: deployment store/api" in out
    assert ["tenant", "retail", "from", "namespace:", "namespace", "store"] in lines
    assert ["app-profile", "storefront", "from", "namespace:", "namespace", "store"] in lines
    assert ["name", "api", "from", "workload:", "deployment", "store/api"] in lines

    # The pod's own partial annotation wins for its field only.
    run(capsys, "pod", "api-7b9f8c5d44-h2wlt", "-n", "store", "--kubeconfig", kubeconfig, "--epg", "t/ap/e")
    kube.patch("Pod", "store", "api-7b9f8c5d44-h2wlt", {"metadata": {"annotations": {EPG_ANNOTATION: epg(ap="pod-ap")}}})
    code, out, _ = run(capsys, "pod", "api-7b9f8c5d44-h2wlt", "-n", "store", "--kubeconfig", kubeconfig)
    assert "effective EPG: retail/pod-ap/api" in out
    assert ["app-profile", "pod-ap", "from", "pod:", "pod", "store/api-7b9f8c5d44-h2wlt"] in \
        [line.split() for line in out.splitlines()]

    # An invalid workload annotation isolates the pod (the default, fail closed), and is reported.
    kube.patch("Deployment", "store", "api", {"metadata": {"annotations": {EPG_ANNOTATION: "{not json"}}})
    code, out, err = run(capsys, "pod", "api-7b9f8c5d44-h2wlt", "-n", "store", "--kubeconfig", kubeconfig)
    assert code == 0
    assert "effective EPG: isolated: invalid EPG annotation on deployment store/api" in out
    assert "invalid annotation on deployment store/api" in err


def test_pod_without_owner_references_uses_the_selector_fallback(capsys: pytest.CaptureFixture[str],
                                                                  kube: FakeKube, kubeconfig: str) -> None:
    kube.create(obj("Namespace", "solo"))
    kube.create(obj("StatefulSet", "db", ns="solo", annotations={EPG_ANNOTATION: epg("a", "b", "c")}))
    kube.create(obj("Pod", "db-0", ns="solo", metadata={"name": "db-0", "namespace": "solo",
                                                      "labels": {"app": "web"}}))
    code, out, err = run(capsys, "pod", "db-0", "-n", "solo", "--kubeconfig", kubeconfig)
    assert code == 0
    assert "effective EPG: a/b/c (from statefulset solo/db)" in out
    assert err == "warning: pod solo/db-0: has no ownerReferences; inherits from statefulset solo/db (selector " \
                  "match)\n"  # the resolver's own warning, passed on


def test_bad_epg_is_refused_before_any_request(capsys: pytest.CaptureFixture[str], kube: FakeKube,
                                               kubeconfig: str) -> None:
    code, out, err = run(capsys, "deployment", "web", "-n", "shop", "--kubeconfig", kubeconfig,
                         "--epg", "bad/na me/x")
    assert code == 1 and out == ""
    assert err.startswith("error: --epg: ") and err.count("\n") == 1
    assert "app-profile" in err
    assert kube.requests == []
    code, _, err = run(capsys, "deployment", "web", "-n", "shop", "--kubeconfig", kubeconfig, "--epg", "a/b")
    assert code == 1 and "TENANT/APP-PROFILE/EPG" in err and kube.requests == []


def test_a_concurrent_writer_keeps_its_annotations(capsys: pytest.CaptureFixture[str], kube: FakeKube,
                                                   kubeconfig: str) -> None:
    stop = threading.Event()
    written: list[str] = []

    def someone_else() -> None:
        i = 0
        while not stop.is_set():
            key = f"example.com/other-{i}"
            kube.patch("Deployment", "shop", "web", {"metadata": {"annotations": {key: str(i)}}})
            written.append(key)
            i += 1

    t = threading.Thread(target=someone_else)
    t.start()
    try:
        for i in range(8):
            code, _, err = run(capsys, "deployment", "web", "-n", "shop", "--kubeconfig", kubeconfig,
                               "--epg", f"kube/ap/epg-{i}")
            assert (code, err) == (0, "")
    finally:
        stop.set()
        t.join()
    final = annotations_of(kube, "Deployment", "web")
    assert len(written) > 8
    assert all(key in final for key in written)  # no update of the other writer was lost
    assert final[EPG_ANNOTATION] == epg("kube", "ap", "epg-7")
    assert final["team"] == "retail"


def test_errors_are_one_line_and_exit_1(capsys: pytest.CaptureFixture[str], kube: FakeKube, kubeconfig: str,
                                        tmp_path: Path) -> None:
    code, out, err = run(capsys, "deployment", "nope", "-n", "shop", "--kubeconfig", kubeconfig, "--epg", "a/b/c")
    assert (code, out, err) == (1, "", "error: deployment shop/nope not found\n")
    code, _, err = run(capsys, "pod", "nope", "-n", "shop", "--kubeconfig", kubeconfig)
    assert (code, err) == (1, "error: pod shop/nope not found\n")

    kube.fail_next(1, status=403, verb="patch")
    code, _, err = run(capsys, "namespace", "shop", "--kubeconfig", kubeconfig, "--epg", "a/b/c")
    assert code == 1 and err.startswith("error: forbidden: ") and err.count("\n") == 1

    kube.fail_next(1, status=500)
    code, _, err = run(capsys, "daemonset", "web", "-n", "shop", "--kubeconfig", kubeconfig, "--clear")
    assert code == 1 and "answered 500" in err and err.count("\n") == 1

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = tmp_path / "dead-kubeconfig"
    dead.write_text(Path(kubeconfig).read_text().replace(kube.url, f"http://127.0.0.1:{port}"))
    code, _, err = run(capsys, "pod", "web", "-n", "shop", "--kubeconfig", str(dead))
    assert (code, err) == (1, f"error: cannot reach the Kubernetes API server at http://127.0.0.1:{port}: "
                              "connection refused\n")

    code, _, err = run(capsys, "pod", "web", "--kubeconfig", str(tmp_path / "missing"))
    assert code == 1 and err.startswith("error: cannot load kubeconfig") and err.count("\n") == 1


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], kubeconfig: str) -> None:
    assert run(capsys, "deployment")[0] == 2
    assert run(capsys, "service", "x")[0] == 2
    assert run(capsys, "pod", "x", "--epg", "a/b/c", "--clear")[0] == 2
    code, _, err = run(capsys, "namespace", "shop", "-n", "shop", "--kubeconfig", kubeconfig)
    assert code == 2 and "does not apply" in err
    code, _, err = run(capsys, "pod", "x", "-f", "x.yaml", "--kubeconfig", kubeconfig)
    assert code == 2


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert "examples:" in out and "epgbridge annotate deployment web -n shop --epg" in out
    assert "not preserved" in " ".join(out.split())


def test_namespace_and_context_from_the_kubeconfig(capsys: pytest.CaptureFixture[str], kube: FakeKube,
                                                   tmp_path: Path) -> None:
    path = kube.write_kubeconfig(tmp_path / "kc", context="lab", namespace="shop")
    doc = yaml.safe_load(path.read_text())
    doc["contexts"].append({"name": "broken", "context": {"cluster": "nowhere", "user": "fakekube"}})
    path.write_text(yaml.safe_dump(doc))
    code, _, err = run(capsys, "deployment", "web", "--kubeconfig", str(path), "--epg", "a/b/c")
    assert (code, err) == (0, "")
    assert annotations_of(kube, "Deployment", "web")[EPG_ANNOTATION] == epg("a", "b", "c")
    code, _, err = run(capsys, "deployment", "web", "--kubeconfig", str(path), "--context", "lab", "--clear")
    assert code == 0
    code, _, err = run(capsys, "deployment", "web", "--kubeconfig", str(path), "--context", "missing")
    assert code == 1 and err.startswith("error: cannot load kubeconfig")


MANIFEST = """\
# the shop
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  annotations:
    opflex.cisco.com/endpoint-group: '{"tenant": "retail", "app-profile": "storefront"}'
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  annotations: {team: retail}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: app, image: nginx}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: Pod
metadata:
  name: web-1
  namespace: shop
  labels: {app: web}
  ownerReferences: [{apiVersion: apps/v1, kind: Deployment, name: web, uid: u1, controller: true}]
spec: {containers: [{name: app, image: nginx}]}
"""


def test_offline_editing_of_a_manifest(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "shop.yaml"
    path.write_text(MANIFEST)
    before = list(yaml.safe_load_all(MANIFEST))

    code, out, err = run(capsys, "deployment", "web", "-n", "shop", "-f", str(path), "--epg", "retail/storefront/web")
    assert code == 0
    assert err == (f"warning: the tenancy guard is not checked here (no EndpointGroup in {path}); the "
                   "controller still refuses an EPG the namespace may not use\n")
    assert f"in {path}" in out
    after = list(yaml.safe_load_all(path.read_text()))
    assert after[1]["metadata"]["annotations"] == {"team": "retail",
                                                   EPG_ANNOTATION: epg("retail", "storefront", "web")}
    assert [after[i] for i in (0, 2, 3)] == [before[i] for i in (0, 2, 3)]  # everything else as it was

    code, out, _ = run(capsys, "pod", "web-1", "-n", "shop", "-f", str(path))
    assert code == 0
    assert "effective EPG: retail/storefront/web (from deployment shop/web)" in out

    assert run(capsys, "deployment", "web", "-n", "shop", "-f", str(path), "--clear")[0] == 0
    code, out, _ = run(capsys, "pod", "web-1", "-n", "shop", "-f", str(path))
    assert "effective EPG: retail/storefront/kube-default (tenant, app-profile from namespace shop; name from " \
           "cluster default)" in out

    assert run(capsys, "namespace", "shop", "-f", str(path), "--clear")[0] == 0
    assert "annotations" not in next(yaml.safe_load_all(path.read_text()))["metadata"]
    code, out, _ = run(capsys, "pod", "web-1", "-n", "shop", "-f", str(path))
    assert "effective EPG: kube/kubernetes/kube-default (cluster default: no annotation)" in out

    code, out, err = run(capsys, "statefulset", "web", "-n", "shop", "-f", str(path), "--epg", "a/b/c")
    assert (code, out) == (1, "") and err.splitlines()[-1] == f"error: statefulset shop/web not found in {path}"
    code, _, err = run(capsys, "pod", "web-1", "-f", str(tmp_path / "missing.yaml"))
    assert code == 1 and err.startswith("error: cannot read") and err.count("\n") == 1


def test_f_takes_files_directories_and_stdin_like_every_command(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    docs = list(yaml.safe_load_all(MANIFEST))
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "namespace.yaml").write_text(yaml.safe_dump(docs[0]))  # the namespace apart from its pods
    (folder / "apps.json").write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": docs[1:3]}))
    pods = tmp_path / "pods.yaml"
    pods.write_text(yaml.safe_dump(docs[3]))

    # One file alone: the namespace is missing, and the answer says so instead of quietly using the default.
    code, out, err = run(capsys, "pod", "web-1", "-n", "shop", "-f", str(pods))
    assert code == 0 and "effective EPG: kube/kubernetes/kube-default" in out
    assert err.splitlines() == [
        f"warning: pod shop/web-1: namespace shop is not in {pods}: its EPG annotation is unknown and taken as "
        "absent (add its file with another -f)",
        "warning: pod shop/web-1: owner deployment shop/web is not in the input; annotations above it are not "
        "inherited"]
    # With the directory too, the pod resolves through its Deployment and its namespace (whether the tenancy
    # guard allows tenant retail cannot be known from files that declare no EndpointGroup).
    code, out, err = run(capsys, "pod", "web-1", "-n", "shop", "-f", str(folder), "-f", str(pods))
    assert code == 0
    assert err.startswith("warning: the tenancy guard is not checked here (no EndpointGroup in ")
    assert err.endswith("): the controller may refuse EPG retail/storefront/kube-default\n") and err.count("\n") == 1
    assert "effective EPG: retail/storefront/kube-default (tenant, app-profile from namespace shop; name from " \
           "cluster default)" in out

    # An edit rewrites the one file that holds the object, in its own format (a JSON List stays one).
    code, out, _ = run(capsys, "deployment", "web", "-n", "shop", "-f", str(folder), "-f", str(pods),
                       "--epg", "retail/storefront/web")
    assert code == 0 and f"in {folder / 'apps.json'}" in out
    apps = json.loads((folder / "apps.json").read_text())
    assert apps["items"][0]["metadata"]["annotations"][EPG_ANNOTATION] == epg("retail", "storefront", "web")
    assert yaml.safe_load(pods.read_text()) == docs[3]

    # A Config among the files sets the cluster default the pod falls back to.
    (folder / "config.yaml").write_text("apiVersion: epgbridge.io/v1alpha1\nkind: Config\nmetadata: {name: c}\n"
                                        "spec: {defaultEndpointGroup: {tenant: lab, applicationProfile: k8s, "
                                        "name: rest}}\n")
    assert run(capsys, "deployment", "web", "-n", "shop", "-f", str(folder), "--clear")[0] == 0
    code, out, _ = run(capsys, "pod", "web-1", "-n", "shop", "-f", str(folder), "-f", str(pods))
    assert "effective EPG: retail/storefront/rest" in out

    # From stdin: shown as any file; an edit prints the edited documents (the message goes to stderr).
    monkeypatch.setattr("sys.stdin", io.StringIO(MANIFEST))
    code, out, err = run(capsys, "namespace", "shop", "-f", "-", "--epg", "kube/a/e")  # kube: allowed undeclared
    assert code == 0 and err == f"namespace shop in <stdin>: {EPG_ANNOTATION}={epg('kube', 'a', 'e')}\n"
    assert next(yaml.safe_load_all(out))["metadata"]["annotations"][EPG_ANNOTATION] == epg("kube", "a", "e")
    (tmp_path / "twice.yaml").write_text(yaml.safe_dump(docs[0]))
    code, _, err = run(capsys, "namespace", "shop", "-f", str(folder), "-f", str(tmp_path / "twice.yaml"))
    assert code == 1 and err.startswith("error: namespace shop is defined more than once: in ")


def test_hostile_annotation_values_are_shown_escaped_and_cut(capsys: pytest.CaptureFixture[str],
                                                             tmp_path: Path) -> None:
    path = tmp_path / "hostile.yaml"
    forged = '{"name": "web"}\nwarning: none\x1b[2J\u202e'
    path.write_text(yaml.safe_dump_all([
        obj("Pod", "forged", annotations={EPG_ANNOTATION: forged}),
        obj("Pod", "long", annotations={EPG_ANNOTATION: json.dumps({"name": "web", "pad": "x" * 10_000})}),
    ]))
    code, out, _ = run(capsys, "pod", "forged", "-n", "shop", "-f", str(path))
    assert code == 0
    assert "\x1b" not in out and "\u202e" not in out
    assert f'  {EPG_ANNOTATION}: {{"name": "web"}}\\nwarning: none\\x1b[2J\\u202e' in out.splitlines()
    assert not any(line.startswith("warning") for line in out.splitlines())

    code, out, _ = run(capsys, "pod", "long", "-n", "shop", "-f", str(path))
    assert code == 0
    line = next(line for line in out.splitlines() if line.startswith(f"  {EPG_ANNOTATION}:"))
    assert len(line) < 400 and line.endswith("... (10026 bytes)")


def test_an_alias_bomb_manifest_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from tests.core.test_hostile import alias_bomb

    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb())
    code, out, err = run(capsys, "pod", "p", "-n", "x", "-f", str(path))
    assert (code, out) == (1, "")
    assert err.startswith(f"error: {path}: refused: document 1: its aliases expand") and err.count("\n") == 1


def endpoint_group(name: str, tenant: str, ap: str, epg_name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "epgbridge.io/v1alpha1", "kind": "EndpointGroup", "metadata": {"name": name},
            "spec": {"tenant": tenant, "applicationProfile": ap, "name": epg_name, **spec}}


SHOP_ONLY = {"matchLabels": {"kubernetes.io/metadata.name": "shop"}}


def test_the_tenancy_guard_refuses_up_front(capsys: pytest.CaptureFixture[str], kube: FakeKube,
                                            kubeconfig: str) -> None:
    kube.create(endpoint_group("shop-api", "shop", "storefront", "api", namespaceSelector=SHOP_ONLY))
    kube.create(endpoint_group("shop-db", "shop", "data", "db"))  # no namespaceSelector
    live = ("--kubeconfig", kubeconfig)

    def writes() -> int:
        return kube.count("patch")

    assert run(capsys, "deployment", "web", "-n", "shop", *live, "--epg", "shop/storefront/api")[:2] == (
        0, f'deployment shop/web: {EPG_ANNOTATION}={epg("shop", "storefront", "api")}\n')
    code, out, err = run(capsys, "deployment", "web", "-n", "shop", *live, "--epg", "shop/data/db")
    assert (code, out) == (1, "")
    assert err == ("error: deployment shop/web: refused by the tenancy guard: EPG shop/data/db is not open to "
                   "namespace shop: its EndpointGroup has no spec.namespaceSelector (only namespace annotations "
                   "place pods in it)\n")
    code, _, err = run(capsys, "pod", "web", "-n", "shop", *live, "--epg", "infra/core/admin")
    assert code == 1 and err == (
        "error: pod shop/web: refused by the tenancy guard: no EndpointGroup declares EPG infra/core/admin, and "
        "annotations may name undeclared EPGs only in tenants a, kube, prod, retail, t (Config spec.tenants)\n")
    assert writes() == 1  # the refused ones wrote nothing
    # A namespace annotation is trusted (cluster admins edit Namespaces), but not to create tenants either.
    assert run(capsys, "namespace", "shop", *live, "--epg", "shop/data/db")[0] == 0
    code, _, err = run(capsys, "namespace", "shop", *live, "--epg", "infra/core/admin")
    assert code == 1 and "no EndpointGroup declares EPG infra/core/admin" in err and err.count("\n") == 1
    assert writes() == 2

    # What annotate shows for a pod is what the controller does: the refused placement, and why.
    kube.patch("Pod", "shop", "web", {"metadata": {"annotations": {EPG_ANNOTATION: epg("shop", "storefront",
                                                                                        "web")}}})
    code, out, err = run(capsys, "pod", "web", "-n", "shop", *live)
    assert code == 0
    assert ("  effective EPG: isolated; the annotation on pod shop/web is refused: no EndpointGroup declares EPG "
            "shop/storefront/web, and annotations may name undeclared EPGs only in tenants a, kube, prod, retail, "
            "t (Config spec.tenants)") in out.splitlines()
    assert err.startswith("warning: annotation refused on pod shop/web: ")


def test_the_tenancy_guard_unknown_is_not_refused(capsys: pytest.CaptureFixture[str], kube: FakeKube,
                                                  kubeconfig: str) -> None:
    # Who cannot list EndpointGroups cannot check: annotate says so and leaves the refusal to the controller.
    kube.fail_next(1, 403, verb="list", resource="endpointgroups.epgbridge.io")
    code, _, err = run(capsys, "deployment", "web", "-n", "shop", "--kubeconfig", kubeconfig, "--epg", "x/y/z")
    assert code == 0
    assert err.startswith("warning: the tenancy guard is not checked here (cannot list EndpointGroups: forbidden: ")
    assert annotations_of(kube, "Deployment", "web")[EPG_ANNOTATION] == epg("x", "y", "z")


def test_the_tenancy_guard_offline_with_endpoint_groups_in_the_file(capsys: pytest.CaptureFixture[str],
                                                                    tmp_path: Path) -> None:
    path = tmp_path / "shop.yaml"
    path.write_text(MANIFEST + "---\n" + yaml.safe_dump(endpoint_group("shop-db", "shop", "data", "db")))
    before = path.read_text()
    code, _, err = run(capsys, "deployment", "web", "-n", "shop", "-f", str(path), "--epg", "shop/data/db")
    assert code == 1 and "EPG shop/data/db is not open to namespace shop" in err and err.count("\n") == 1
    assert path.read_text() == before
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"apiVersion": "epgbridge.io/v1alpha1", "kind": "Config",
                                      "metadata": {"name": "c"}, "spec": {"tenants": ["scratch"]}}))
    code, _, err = run(capsys, "deployment", "web", "-n", "shop", "-f", str(path), "--epg", "scratch/a/b",
                       "--config", str(config))
    assert (code, err) == (0, "")
