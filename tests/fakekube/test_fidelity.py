"""What makes the fake answer as a real API server would (issue 13): CRDs with their schemas and CEL rules,
dryRun, the pod lifecycle, the protocol details kubectl relies on, and RBAC."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from tests.fakekube import CRD_DIR, ApiError, FakeKube

GROUP, VERSION = "epgbridge.io", "v1alpha1"
CONTRACT = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Contract", "metadata": {"name": "web"},
            "spec": {"tenant": "shop", "subjects": [{"name": "http", "filters": [{"name": "http", "entries": [
                {"name": "tcp-80", "protocol": "tcp", "destinationPorts": "80"}]}]}]}}


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube(bookmark_interval=0.2) as fake:
        yield fake
        assert fake.server_errors == []


@pytest.fixture
def api(kube: FakeKube) -> Iterator[client.ApiClient]:
    api_client = kube.api_client()
    yield api_client
    api_client.close()


def status_of(exc: ApiException) -> dict[str, Any]:
    return json.loads(exc.body)


def entry(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["subjects"][0]["filters"][0]["entries"][0]


# --- CRDs --------------------------------------------------------------------------------------------------------


def test_custom_kinds_exist_only_while_their_crd_does(api: client.ApiClient, kube: FakeKube) -> None:
    custom = client.CustomObjectsApi(api)
    with pytest.raises(ApiException) as exc:  # CRDs not installed yet
        custom.list_cluster_custom_object(GROUP, VERSION, "contracts")
    assert exc.value.status == 404
    assert client.ApisApi(api).get_api_versions().groups is not None
    assert GROUP not in {g.name for g in client.ApisApi(api).get_api_versions().groups}

    kube.install_crds(CRD_DIR)
    crd = client.ApiextensionsV1Api(api).read_custom_resource_definition("contracts.epgbridge.io")
    assert {c.type: c.status for c in crd.status.conditions} == {"NamesAccepted": "True", "Established": "True"}
    assert GROUP in {g.name for g in client.ApisApi(api).get_api_versions().groups}
    custom.create_cluster_custom_object(GROUP, VERSION, "contracts", CONTRACT)
    rv = custom.list_cluster_custom_object(GROUP, VERSION, "contracts")["metadata"]["resourceVersion"]

    events: list[tuple[str, str]] = []

    def follow() -> None:
        for ev in watch.Watch().stream(custom.list_cluster_custom_object, GROUP, VERSION, "contracts",
                                       resource_version=rv, timeout_seconds=5):
            events.append((ev["type"], ev["object"]["metadata"]["name"]))

    t = threading.Thread(target=follow)
    t.start()
    kube.wait_for_watches(1)
    client.ApiextensionsV1Api(api).delete_custom_resource_definition("contracts.epgbridge.io")
    t.join(10)
    assert not t.is_alive() and events == [("DELETED", "web")]  # the objects go first, then the watch ends
    with pytest.raises(ApiException) as exc:  # CRD deleted: the kind is gone
        custom.list_cluster_custom_object(GROUP, VERSION, "contracts")
    assert exc.value.status == 404
    with pytest.raises(ApiError) as err:
        kube.create(CONTRACT)
    assert err.value.code == 404
    kube.install_crds(CRD_DIR / "contracts.yaml")  # installed again: empty
    assert custom.list_cluster_custom_object(GROUP, VERSION, "contracts")["items"] == []


def test_a_crd_with_a_broken_rule_is_refused(api: client.ApiClient) -> None:
    crd = yaml.safe_load((CRD_DIR / "contracts.yaml").read_text())
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["x-kubernetes-validations"] = [
        {"rule": "self.spec.(", "message": "broken"}]
    with pytest.raises(ApiException) as exc:
        client.ApiextensionsV1Api(api).create_custom_resource_definition(crd)
    assert exc.value.status == 422 and "compilation failed" in status_of(exc.value)["message"]


def test_unknown_fields_are_pruned_with_a_warning_or_refused_when_strict(api: client.ApiClient,
                                                                          kube: FakeKube) -> None:
    """A typo (destinationPort) silently allows every TCP port on a real cluster: the fake must show that."""
    kube.install_crds(CRD_DIR)
    custom = client.CustomObjectsApi(api)
    typo = copy.deepcopy(CONTRACT)
    entry(typo)["destinationPort"] = entry(typo).pop("destinationPorts")
    raw = custom.create_cluster_custom_object(GROUP, VERSION, "contracts", typo, _preload_content=False)
    stored = json.loads(raw.data)
    assert entry(stored) == {"name": "tcp-80", "protocol": "tcp", "etherType": "ip"}  # pruned, defaulted
    assert raw.headers.getlist("Warning") == [
        '299 - "unknown field "spec.subjects[0].filters[0].entries[0].destinationPort""']
    typo["metadata"]["name"] = "strict"
    with pytest.raises(ApiException) as exc:  # kubectl's default: fieldValidation=Strict
        custom.create_cluster_custom_object(GROUP, VERSION, "contracts", typo, field_validation="Strict")
    assert exc.value.status == 400
    assert 'strict decoding error: unknown field "spec.subjects[0].filters[0].entries[0].destinationPort"' in \
        status_of(exc.value)["message"]
    assert kube.get("Contract", None, "strict") is None


@pytest.mark.parametrize(("change", "field", "message"), [
    ({"scope": "vrf"}, "spec.scope", 'Unsupported value: "vrf": supported values: "context", "tenant", '
     '"application-profile", "global"'),
    ({"tenant": "a b"}, "spec.tenant", "should match '^[a-zA-Z0-9_.:-]+$'"),
    ({"subjects": "http"}, "spec.subjects", "must be of type array"),  # and the CEL rules are not run:
    ({"subjects": "http"}, "<root>", "some validation rules were not checked because the object was invalid"),
    ({"subjects": [{"filters": []}]}, "spec.subjects[0].name", "Required value"),
    ({"entry": {"protocol": "icmp"}}, "spec.subjects[0].filters[0].entries[0]",
     "destinationPorts needs protocol tcp, udp or sctp"),  # a CEL rule
    ({"entry": {"destinationPorts": "90-80"}}, "spec.subjects[0].filters[0].entries[0]",
     "the range is empty"),  # a CEL rule
])
def test_schema_and_cel_rules_refuse_bad_objects(api: client.ApiClient, kube: FakeKube, change: dict[str, Any],
                                                  field: str, message: str) -> None:
    kube.install_crds(CRD_DIR)
    bad = copy.deepcopy(CONTRACT)
    if "entry" in change:
        entry(bad).update(change["entry"])
    else:
        bad["spec"].update(change)
    with pytest.raises(ApiException) as exc:
        client.CustomObjectsApi(api).create_cluster_custom_object(GROUP, VERSION, "contracts", bad)
    status = status_of(exc.value)
    assert exc.value.status == 422 and status["reason"] == "Invalid"
    assert status["message"].startswith('Contract.epgbridge.io "web" is invalid: ')
    assert field in [c["field"] for c in status["details"]["causes"]] and message in status["message"]
    with pytest.raises(ApiError):  # the in-process helper is held to the same schema
        kube.create(bad)


def test_status_writes_are_validated_against_the_status_schema(api: client.ApiClient, kube: FakeKube) -> None:
    kube.install_crds(CRD_DIR)
    custom = client.CustomObjectsApi(api)
    custom.create_cluster_custom_object(GROUP, VERSION, "contracts", CONTRACT)
    bad = {"status": {"conditions": [{"type": "Valid", "status": "Yes", "reason": "R", "message": "",
                                      "lastTransitionTime": "yesterday"}]}}
    with pytest.raises(ApiException) as exc:
        custom.patch_cluster_custom_object_status(GROUP, VERSION, "contracts", "web", bad)
    fields = sorted(c["field"] for c in status_of(exc.value)["details"]["causes"])
    assert fields == ["status.conditions[0].lastTransitionTime", "status.conditions[0].status"]


# --- dryRun ------------------------------------------------------------------------------------------------------


def test_dry_run_answers_as_if_done_and_changes_nothing(api: client.ApiClient, kube: FakeKube) -> None:
    kube.install_crds(CRD_DIR)
    custom = client.CustomObjectsApi(api)
    custom.create_cluster_custom_object(GROUP, VERSION, "contracts", CONTRACT)
    before = kube.get("Contract", None, "web")
    rv = kube.resource_version
    events: list[str] = []

    def follow() -> None:
        for ev in watch.Watch().stream(custom.list_cluster_custom_object, GROUP, VERSION, "contracts",
                                       resource_version=rv, timeout_seconds=2):
            events.append(ev["type"])

    t = threading.Thread(target=follow)
    t.start()
    kube.wait_for_watches(1)
    other = {**CONTRACT, "metadata": {"name": "other"}}
    made = custom.create_cluster_custom_object(GROUP, VERSION, "contracts", other, dry_run="All")
    assert made["metadata"]["name"] == "other" and made["metadata"]["uid"]
    patched = custom.patch_cluster_custom_object(GROUP, VERSION, "contracts", "web", {"spec": {"scope": "global"}},
                                                 dry_run="All")
    assert patched["spec"]["scope"] == "global" and patched["metadata"]["generation"] == 2
    replaced = custom.replace_cluster_custom_object(GROUP, VERSION, "contracts", "web",
                                                    {**before, "spec": {"tenant": "other"}}, dry_run="All")
    assert replaced["spec"]["tenant"] == "other"
    gone = custom.delete_cluster_custom_object(GROUP, VERSION, "contracts", "web", dry_run="All")
    assert gone["metadata"]["name"] == "web"
    core = client.CoreV1Api(api)
    core.delete_namespace("default", dry_run="All")
    with pytest.raises(ApiException) as exc:  # a dry run is still checked as the real write would be
        custom.patch_cluster_custom_object(GROUP, VERSION, "contracts", "web", {"spec": {"scope": "vrf"}},
                                           dry_run="All")
    assert exc.value.status == 422
    with pytest.raises(ApiException) as exc:
        custom.create_cluster_custom_object(GROUP, VERSION, "contracts", other, dry_run="Some")
    assert exc.value.status == 400
    t.join(5)
    assert kube.get("Contract", None, "web") == before and kube.get("Contract", None, "other") is None
    assert kube.get("Namespace", None, "default") is not None
    assert kube.resource_version == rv and events == []


# --- pods: created without an address, deleted gracefully ----------------------------------------------------


def test_pod_lifecycle_as_a_kubelet_drives_it(api: client.ApiClient, kube: FakeKube) -> None:
    core = client.CoreV1Api(api)
    rv = core.list_namespaced_pod("default").metadata.resource_version
    pod = {"metadata": {"name": "web"}, "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x"}]},
           "status": {"podIP": "10.0.0.1"}}
    created = core.create_namespaced_pod("default", pod)
    assert created.status.pod_ip is None and created.status.phase == "Pending"
    kube.pod_started("default", "web", ["10.0.0.1", "fd00::1"])
    running = core.read_namespaced_pod("web", "default")
    assert running.status.pod_ip == "10.0.0.1" and [i.ip for i in running.status.pod_ips] == ["10.0.0.1", "fd00::1"]
    terminating = core.delete_namespaced_pod("web", "default")
    assert terminating.metadata.deletion_timestamp and terminating.metadata.deletion_grace_period_seconds == 30
    assert core.read_namespaced_pod("web", "default").status.pod_ip == "10.0.0.1"  # still there, still running
    kube.finish_deletion("default", "web")
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_pod("web", "default")
    assert exc.value.status == 404
    seen = [(e["type"], e["object"].status.pod_ip, bool(e["object"].metadata.deletion_timestamp))
            for e in watch.Watch().stream(core.list_namespaced_pod, "default", resource_version=rv,
                                          timeout_seconds=1)]
    assert seen == [("ADDED", None, False), ("MODIFIED", "10.0.0.1", False), ("MODIFIED", "10.0.0.1", True),
                    ("DELETED", "10.0.0.1", True)]
    # An unscheduled pod, or a grace period of 0, goes at once.
    core.create_namespaced_pod("default", {"metadata": {"name": "pending"}, "spec": pod["spec"] | {"nodeName": None}})
    core.delete_namespaced_pod("pending", "default")
    core.create_namespaced_pod("default", {"metadata": {"name": "forced"}, "spec": pod["spec"]})
    core.delete_namespaced_pod("forced", "default", grace_period_seconds=0)
    assert kube.list("Pod", "default") == []


# --- protocol ----------------------------------------------------------------------------------------------------


def test_protobuf_bodies_get_415_and_yaml_is_read(api: client.ApiClient, kube: FakeKube) -> None:
    for media in ("application/vnd.kubernetes.protobuf", "text/plain"):
        resp = api.rest_client.pool_manager.request(
            "POST", f"{kube.url}/api/v1/namespaces/default/configmaps", body=b"\x6b\x38\x73\x00",
            headers={"Content-Type": media})
        assert resp.status == 415 and json.loads(resp.data)["reason"] == "UnsupportedMediaType"
    resp = api.rest_client.pool_manager.request(
        "POST", f"{kube.url}/api/v1/namespaces/default/configmaps",
        body=b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: from-yaml}\n", headers={"Content-Type": "application/yaml"})
    assert resp.status == 201 and kube.get("ConfigMap", "default", "from-yaml") is not None


def test_server_version_openapi_and_tables(api: client.ApiClient, kube: FakeKube) -> None:
    version = client.VersionApi(api).get_code()
    assert (version.major, version.minor) == ("1", "37")
    kube.install_crds(CRD_DIR)
    client.CustomObjectsApi(api).create_cluster_custom_object(GROUP, VERSION, "contracts", CONTRACT)
    kube.patch("Contract", None, "web", {"status": {"conditions": [
        {"type": "Valid", "status": "True", "reason": "Valid", "message": "accepted",
         "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}, subresource="status")
    pool = api.rest_client.pool_manager
    index = json.loads(pool.request("GET", f"{kube.url}/openapi/v3").data)
    url = index["paths"][f"apis/{GROUP}/{VERSION}"]["serverRelativeURL"]
    doc = json.loads(pool.request("GET", kube.url + url).data)
    schema = doc["components"]["schemas"]["io.epgbridge.v1alpha1.Contract"]
    assert schema["x-kubernetes-group-version-kind"] == [{"group": GROUP, "version": VERSION, "kind": "Contract"}]
    assert "subjects" in schema["properties"]["spec"]["properties"]
    # kubectl validates on the server (fieldValidation=Strict) when the PATCH operation lists the parameter;
    # otherwise it downloads /openapi/v2 as protobuf, which the fake does not speak (404: no such document).
    patch = doc["paths"][f"/apis/{GROUP}/{VERSION}/contracts/{{name}}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {"group": GROUP, "version": VERSION, "kind": "Contract"}
    assert "fieldValidation" in [p["name"] for p in patch["parameters"]]
    core = json.loads(pool.request("GET", kube.url + index["paths"]["api/v1"]["serverRelativeURL"]).data)
    assert "/api/v1/namespaces/{namespace}/pods/{name}" in core["paths"]
    assert "io.epgbridge.v1alpha1.EndpointGroup" in json.loads(
        pool.request("GET", f"{kube.url}/openapi/v2").data)["definitions"]
    protobuf = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
    assert pool.request("GET", f"{kube.url}/openapi/v2", headers={"Accept": protobuf}).status == 404

    accept = "application/json;as=Table;g=meta.k8s.io;v=v1"
    listed = json.loads(pool.request("GET", f"{kube.url}/apis/{GROUP}/{VERSION}/contracts",
                                     headers={"Accept": accept}).data)
    assert listed["kind"] == "Table"
    assert [c["name"] for c in listed["columnDefinitions"]] == [
        "Name", "Tenant", "Contract", "Scope", "Valid", "Synced", "Age"]
    (row,) = listed["rows"]
    assert row["cells"][:6] == ["web", "shop", None, "context", "True", None]
    assert row["cells"][6].endswith("s")  # Age: a duration, as the server prints date columns
    assert row["object"]["kind"] == "PartialObjectMetadata"
    one = json.loads(pool.request("GET", f"{kube.url}/api/v1/namespaces/default", headers={"Accept": accept}).data)
    assert [c["name"] for c in one["columnDefinitions"]] == ["Name", "Created At"]
    assert one["rows"][0]["cells"][0] == "default"


@pytest.mark.parametrize(("seconds", "printed"), [(-5, "<invalid>"), (0, "0s"), (119, "119s"), (125, "2m5s"),
                                                  (600, "10m"), (3 * 3600 + 60, "3h1m"), (30 * 3600, "30h"),
                                                  (3 * 86400 + 3600, "3d1h"), (10 * 86400, "10d")])
def test_ages_print_as_the_server_prints_them(seconds: int, printed: str) -> None:
    from tests.fakekube.tables import human_duration
    assert human_duration(seconds) == printed


# --- RBAC --------------------------------------------------------------------------------------------------------

RBAC = yaml.safe_load_all("""
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: pod-reader}
rules:
- {apiGroups: [""], resources: [pods], verbs: [get, list]}
- {apiGroups: [""], resources: [pods/status], verbs: [patch]}
- {apiGroups: [""], resources: [configmaps], resourceNames: [allowed], verbs: [get]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reader, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: pod-reader}
subjects: [{kind: ServiceAccount, name: reader, namespace: kube-system}, {kind: User, name: alice}]
""")


def test_rbac_is_enforced_for_the_bound_users_only(kube: FakeKube) -> None:
    for doc in RBAC:
        kube.create(doc)
    kube.authorize = True
    kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "allowed", "namespace": "default"}})
    kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other", "namespace": "default"}})
    sa = client.CoreV1Api(kube.api_client(kube.service_account_token("kube-system", "reader")))
    alice = client.CoreV1Api(kube.api_client(kube.add_user("alice-token", "alice")))
    for who in (sa, alice):
        assert who.list_namespaced_pod("default").items == []
        assert who.read_namespaced_config_map("allowed", "default").metadata.name == "allowed"
    refused = [lambda: sa.list_namespaced_pod("kube-system"),  # bound in default only
               lambda: sa.list_pod_for_all_namespaces(),
               lambda: sa.read_namespaced_config_map("other", "default"),  # not among resourceNames
               lambda: sa.create_namespaced_pod("default", {"metadata": {"name": "p"}, "spec": {"containers": []}}),
               lambda: client.CoreV1Api(kube.api_client()).list_namespaced_pod("default")]  # anonymous
    for call in refused:
        with pytest.raises(ApiException) as exc:
            call()
        assert exc.value.status == 403
    assert status_of(exc.value)["message"] == ('pods is forbidden: User "system:anonymous" cannot list resource '
                                               '"pods" in API group "" in the namespace "default"')
    assert len(kube.denied) == 5
    with pytest.raises(ApiException) as exc:
        client.CoreV1Api(kube.api_client("no-such-token")).list_namespaced_pod("default")
    assert exc.value.status == 401
    admin = client.CoreV1Api(kube.api_client(kube.add_user("root", "admin", groups=["system:masters"])))
    assert len(admin.list_pod_for_all_namespaces().items) == 0
