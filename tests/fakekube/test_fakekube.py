"""The fake API server against the real `kubernetes` client: every kind, list/watch semantics,
conflicts, patches, status subresources, 410 Gone, disconnects, fault injection."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3
from kubernetes import client, dynamic, watch
from kubernetes.client.rest import ApiException

from tests.fakekube import CRD_DIR, ApiError, FakeKube

GROUP, VERSION = "epgbridge.io", "v1alpha1"


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    before = set(threading.enumerate())
    fake = FakeKube(bookmark_interval=0.2, crds=[CRD_DIR])
    fake.start()
    yield fake
    fake.stop()
    assert fake.server_errors == []
    deadline = time.monotonic() + 2
    while set(threading.enumerate()) - before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not [t for t in set(threading.enumerate()) - before if t.name.startswith(("fakekube", "Thread-"))]


@pytest.fixture
def api(kube: FakeKube) -> Iterator[client.ApiClient]:
    api_client = kube.api_client()
    yield api_client
    api_client.close()


def status_of(exc: ApiException) -> dict[str, Any]:
    return json.loads(exc.body)


def pod(name: str, ns: str = "default", labels: dict[str, str] | None = None, node: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "app", "image": "nginx"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
            "spec": spec}


SELECTOR = {"matchLabels": {"app": "web"}}
TEMPLATE = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "nginx"}]}}

# (API class, method suffix, namespaced, body): one row per kind the server serves.
KINDS: list[tuple[type, str, bool, dict[str, Any]]] = [
    (client.CoreV1Api, "namespace", False, {"apiVersion": "v1", "kind": "Namespace"}),
    (client.CoreV1Api, "pod", True, {"apiVersion": "v1", "kind": "Pod", "spec": TEMPLATE["spec"]}),
    (client.CoreV1Api, "config_map", True, {"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v"}}),
    (client.CoreV1Api, "secret", True, {"apiVersion": "v1", "kind": "Secret", "stringData": {"k": "v"}}),
    (client.CoreV1Api, "event", True, {"apiVersion": "v1", "kind": "Event", "reason": "Test", "message": "m",
                                       "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"}}),
    (client.CoreV1Api, "node", False, {"apiVersion": "v1", "kind": "Node", "spec": {"podCIDR": "10.0.0.0/24"}}),
    (client.AppsV1Api, "deployment", True, {"apiVersion": "apps/v1", "kind": "Deployment",
                                            "spec": {"selector": SELECTOR, "template": TEMPLATE}}),
    (client.AppsV1Api, "stateful_set", True, {"apiVersion": "apps/v1", "kind": "StatefulSet",
                                              "spec": {"selector": SELECTOR, "template": TEMPLATE,
                                                       "serviceName": "web"}}),
    (client.AppsV1Api, "daemon_set", True, {"apiVersion": "apps/v1", "kind": "DaemonSet",
                                            "spec": {"selector": SELECTOR, "template": TEMPLATE}}),
    (client.AppsV1Api, "replica_set", True, {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                             "spec": {"selector": SELECTOR, "template": TEMPLATE}}),
    (client.NetworkingV1Api, "network_policy", True, {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                                                      "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}),
    (client.CoordinationV1Api, "lease", True, {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                               "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}}),
    (client.EventsV1Api, "event", True, {"apiVersion": "events.k8s.io/v1", "kind": "Event", "reason": "Test",
                                         "eventTime": "2024-01-01T00:00:00.000000Z", "action": "Test",
                                         "reportingController": "epgbridge", "reportingInstance": "x"}),
]


@pytest.mark.parametrize(("api_class", "suffix", "namespaced", "body"), KINDS,
                         ids=[f"{k[0].__name__}.{k[1]}" for k in KINDS])
def test_create_list_get_patch_delete_each_kind(api: client.ApiClient, kube: FakeKube, api_class: type, suffix: str,
                                                 namespaced: bool, body: dict[str, Any]) -> None:
    typed = api_class(api)
    scope = "namespaced_" if namespaced else ""
    ns_args: tuple[str, ...] = ("default",) if namespaced else ()
    body = {**body, "metadata": {"name": "thing-1", "labels": {"app": "web"}}}

    created = getattr(typed, f"create_{scope}{suffix}")(*ns_args, body)
    assert created.metadata.uid and created.metadata.creation_timestamp
    assert int(created.metadata.resource_version) > 0

    listed = getattr(typed, f"list_{scope}{suffix}")(*ns_args, label_selector="app=web")
    assert [o.metadata.name for o in listed.items] == ["thing-1"]
    assert int(listed.metadata.resource_version) >= int(created.metadata.resource_version)
    assert getattr(typed, f"list_{scope}{suffix}")(*ns_args, label_selector="app=db").items == []

    got = getattr(typed, f"read_{scope}{suffix}")("thing-1", *ns_args)
    assert got.metadata.resource_version == created.metadata.resource_version

    patched = getattr(typed, f"patch_{scope}{suffix}")("thing-1", *ns_args, {"metadata": {"annotations": {"a": "1"}}})
    assert patched.metadata.annotations == {"a": "1"}
    assert int(patched.metadata.resource_version) > int(created.metadata.resource_version)

    getattr(typed, f"delete_{scope}{suffix}")("thing-1", *ns_args)
    with pytest.raises(ApiException) as exc:
        getattr(typed, f"read_{scope}{suffix}")("thing-1", *ns_args)
    assert exc.value.status == 404
    assert status_of(exc.value)["reason"] == "NotFound"


@pytest.mark.parametrize("plural", ["endpointgroups", "contracts"])
def test_custom_resources_crud_and_status_subresource(api: client.ApiClient, plural: str) -> None:
    custom = client.CustomObjectsApi(api)
    kind = {"endpointgroups": "EndpointGroup", "contracts": "Contract"}[plural]
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": "web"},
            "spec": {"tenant": "kube"}, "status": {"observedGeneration": 7}}
    created = custom.create_cluster_custom_object(GROUP, VERSION, plural, body)
    assert created["metadata"]["generation"] == 1
    assert "status" not in created  # dropped on create, as with a /status subresource
    defaults = {"intraEpg": "permit"} if kind == "EndpointGroup" else {"scope": "context"}
    assert created["spec"] == {"tenant": "kube", **defaults}  # the schema's defaults

    with_status = custom.patch_cluster_custom_object_status(GROUP, VERSION, plural, "web",
                                                            {"status": {"observedGeneration": 1},
                                                             "spec": {"tenant": "x"}})
    assert with_status["status"] == {"observedGeneration": 1}
    assert with_status["spec"] == {"tenant": "kube", **defaults}  # /status changes status only
    assert with_status["metadata"]["generation"] == 1

    spec_change = custom.patch_cluster_custom_object(GROUP, VERSION, plural, "web",
                                                     {"spec": {"tenant": "prod"}, "status": {"observedGeneration": 9}})
    assert spec_change["metadata"]["generation"] == 2
    assert spec_change["status"] == {"observedGeneration": 1}  # the main resource ignores status

    meta_change = custom.patch_cluster_custom_object(GROUP, VERSION, plural, "web", {"metadata": {"labels": {"a": "b"}}})
    assert meta_change["metadata"]["generation"] == 2

    items = custom.list_cluster_custom_object(GROUP, VERSION, plural)
    assert items["kind"] == f"{kind}List" and [i["metadata"]["name"] for i in items["items"]] == ["web"]

    stale = dict(created, spec={"tenant": "old"})  # created's resourceVersion is stale by now
    with pytest.raises(ApiException) as exc:
        custom.replace_cluster_custom_object(GROUP, VERSION, plural, "web", stale)
    assert exc.value.status == 409
    no_rv = {**meta_change, "metadata": {"name": "web"}}
    with pytest.raises(ApiException) as exc:
        custom.replace_cluster_custom_object(GROUP, VERSION, plural, "web", no_rv)
    assert exc.value.status == 422  # custom resources need metadata.resourceVersion on PUT

    custom.delete_cluster_custom_object(GROUP, VERSION, plural, "web")
    with pytest.raises(ApiException) as exc:
        custom.get_cluster_custom_object(GROUP, VERSION, plural, "web")
    assert exc.value.status == 404
    assert status_of(exc.value)["message"] == f'{plural}.{GROUP} "web" not found'


def test_watch_after_list_sees_added_modified_deleted_in_order(api: client.ApiClient, kube: FakeKube) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_pod("default", pod("before"))
    listed = core.list_namespaced_pod("default")
    events: list[tuple[str, str, str]] = []

    def run() -> None:
        w = watch.Watch()
        for ev in w.stream(core.list_namespaced_pod, "default", resource_version=listed.metadata.resource_version,
                           timeout_seconds=5):
            events.append((ev["type"], ev["object"].metadata.name, ev["object"].metadata.resource_version))
            if ev["type"] == "DELETED":
                w.stop()

    t = threading.Thread(target=run)
    t.start()
    kube.wait_for_watches(1)
    core.create_namespaced_pod("default", pod("p1"))
    core.patch_namespaced_pod("p1", "default", {"metadata": {"labels": {"v": "2"}}})
    kube.patch("Pod", "default", "before", {"metadata": {"labels": {"x": "y"}}})  # in-process writes are seen too
    core.delete_namespaced_pod("p1", "default")
    t.join(10)
    assert not t.is_alive()
    assert [(t, n) for t, n, _ in events] == [("ADDED", "p1"), ("MODIFIED", "p1"), ("MODIFIED", "before"),
                                              ("DELETED", "p1")]
    versions = [int(rv) for _, _, rv in events]
    assert versions == sorted(versions) and len(set(versions)) == 4


def test_watch_replays_history_and_applies_selectors(api: client.ApiClient, kube: FakeKube) -> None:
    core = client.CoreV1Api(api)
    start = core.list_namespaced_pod("default").metadata.resource_version
    core.create_namespaced_pod("default", pod("a", labels={"app": "web"}, node="n1"))
    core.create_namespaced_pod("default", pod("b", labels={"app": "db"}, node="n2"))
    core.patch_namespaced_pod("a", "default", {"metadata": {"labels": {"app": "other"}}})
    w = watch.Watch()
    by_label = [(e["type"], e["object"].metadata.name)
                for e in w.stream(core.list_namespaced_pod, "default", resource_version=start,
                                  label_selector="app in (web)", timeout_seconds=1)]
    assert by_label == [("ADDED", "a"), ("DELETED", "a")]  # no longer selected: a DELETED event
    by_node = [(e["type"], e["object"].metadata.name)
               for e in w.stream(core.list_pod_for_all_namespaces, resource_version=start,
                                 field_selector="spec.nodeName=n2", timeout_seconds=1)]
    assert by_node == [("ADDED", "b")]
    # No resourceVersion: synthetic ADDED events for what exists, as the real server sends.
    initial = [(e["type"], e["object"].metadata.name)
               for e in w.stream(core.list_namespaced_pod, "default", timeout_seconds=1)]
    assert initial == [("ADDED", "a"), ("ADDED", "b")]
    with pytest.raises(ApiException) as exc:
        core.list_namespaced_pod("default", field_selector="spec.unknownField=x")
    assert exc.value.status == 400


def test_compacted_history_gives_410(api: client.ApiClient, kube: FakeKube) -> None:
    core = client.CoreV1Api(api)
    old = core.list_namespaced_pod("default").metadata.resource_version
    core.create_namespaced_pod("default", pod("a"))
    kube.compact()
    with pytest.raises(ApiException) as exc:
        list(watch.Watch().stream(core.list_namespaced_pod, "default", resource_version=old, timeout_seconds=2))
    assert exc.value.status == 410
    assert "Expired" in exc.value.reason

    raw = core.list_namespaced_pod("default", watch=True, resource_version=old, _preload_content=False)
    lines = [json.loads(line) for line in raw.read().decode().splitlines()]
    raw.release_conn()
    assert raw.status == 200 and len(lines) == 1
    assert lines[0]["type"] == "ERROR"
    assert lines[0]["object"]["kind"] == "Status"
    assert (lines[0]["object"]["code"], lines[0]["object"]["reason"]) == (410, "Expired")

    with pytest.raises(ApiException) as exc:
        core.list_namespaced_pod("default", resource_version=old, resource_version_match="Exact")
    assert exc.value.status == 410
    current = core.list_namespaced_pod("default")  # a fresh list and watch from its version work again
    assert [e["type"] for e in watch.Watch().stream(core.list_namespaced_pod, "default", timeout_seconds=1,
                                                    resource_version=current.metadata.resource_version)] == []


def test_drop_watches_ends_the_stream(api: client.ApiClient, kube: FakeKube) -> None:
    core = client.CoreV1Api(api)
    outcome: dict[str, Any] = {}

    def run(key: str) -> None:
        try:
            outcome[key] = list(watch.Watch().stream(core.list_namespaced_pod, "default", timeout_seconds=30))
        except Exception as exc:
            outcome[key] = exc

    t = threading.Thread(target=run, args=("clean",))
    t.start()
    kube.wait_for_watches(1)
    began = time.monotonic()
    assert kube.drop_watches() == 1
    t.join(5)
    assert not t.is_alive() and time.monotonic() - began < 5
    assert outcome["clean"] == []

    t = threading.Thread(target=run, args=("abrupt",))
    t.start()
    kube.wait_for_watches(1)
    kube.drop_watches(abrupt=True)
    t.join(5)
    assert not t.is_alive()
    assert isinstance(outcome["abrupt"], urllib3.exceptions.HTTPError)  # a cut connection, mid-stream
    assert kube.open_watches() == 0


def test_bookmarks_and_timeout(api: client.ApiClient, kube: FakeKube) -> None:
    core = client.CoreV1Api(api)
    rv = core.list_namespaced_pod("default").metadata.resource_version
    began = time.monotonic()
    raw = core.list_namespaced_pod("default", watch=True, resource_version=rv, allow_watch_bookmarks=True,
                                   timeout_seconds=1, _preload_content=False)
    events = [json.loads(line) for line in raw.read().decode().splitlines()]
    raw.release_conn()
    assert 0.9 < time.monotonic() - began < 3
    assert events and all(e["type"] == "BOOKMARK" for e in events)
    assert events[-1]["object"]["metadata"]["resourceVersion"] == rv
    assert events[-1]["object"]["kind"] == "Pod"
    # Without allowWatchBookmarks: no bookmarks, and the stream still ends cleanly on time.
    raw = core.list_namespaced_pod("default", watch=True, resource_version=rv, timeout_seconds=1,
                                   _preload_content=False)
    assert raw.read() == b""
    raw.release_conn()
    # sendInitialEvents: the state, then a bookmark marking its end.
    kube.create(pod("p"))
    raw = core.list_namespaced_pod("default", watch=True, send_initial_events=True, allow_watch_bookmarks=True,
                                   resource_version_match="NotOlderThan", resource_version="",
                                   timeout_seconds=1, _preload_content=False)
    events = [json.loads(line) for line in raw.read().decode().splitlines()]
    raw.release_conn()
    assert events[0]["type"] == "ADDED" and events[1]["type"] == "BOOKMARK"
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_put_with_stale_resource_version_conflicts(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    cm = core.create_namespaced_config_map("default", {"metadata": {"name": "c"}, "data": {"a": "1"}})
    cm.data = {"a": "2"}
    updated = core.replace_namespaced_config_map("c", "default", cm)
    cm.data = {"a": "3"}  # still carries the first resourceVersion
    with pytest.raises(ApiException) as exc:
        core.replace_namespaced_config_map("c", "default", cm)
    assert exc.value.status == 409
    status = status_of(exc.value)
    assert status["reason"] == "Conflict" and "the object has been modified" in status["message"]
    assert core.read_namespaced_config_map("c", "default").data == {"a": "2"}
    # No-op update: same object back, no new resourceVersion (as etcd skips identical writes).
    again = core.replace_namespaced_config_map("c", "default", updated)
    assert again.metadata.resource_version == updated.metadata.resource_version
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map("default", {"metadata": {"name": "c"}})
    assert exc.value.status == 409 and status_of(exc.value)["reason"] == "AlreadyExists"


def test_merge_patch_of_one_annotation_leaves_the_others(api: client.ApiClient) -> None:
    apps = client.AppsV1Api(api)
    body = {"metadata": {"name": "web", "annotations": {"keep": "me", "change": "old"}},
            "spec": {"selector": SELECTOR, "template": TEMPLATE}}
    apps.create_namespaced_deployment("default", body)
    merge = "application/merge-patch+json"
    got = apps.patch_namespaced_deployment("web", "default", {"metadata": {"annotations": {"change": "new"}}},
                                           _content_type=merge)
    assert got.metadata.annotations == {"keep": "me", "change": "new"}
    got = apps.patch_namespaced_deployment("web", "default", {"metadata": {"annotations": {"change": None}}},
                                           _content_type=merge)
    assert got.metadata.annotations == {"keep": "me"}
    assert got.metadata.generation == 1  # metadata changes leave generation alone
    got = apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 3}})
    assert got.metadata.generation == 2


def test_strategic_and_json_patch(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    spec = {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}
    core.create_namespaced_pod("default", {"metadata": {"name": "p"}, "spec": spec})
    got = core.patch_namespaced_pod("p", "default", {"spec": {"containers": [{"name": "b", "image": "z"}]}})
    assert [(c.name, c.image) for c in got.spec.containers] == [("a", "x"), ("b", "z")]  # merged by name
    got = core.patch_namespaced_pod("p", "default", [{"op": "add", "path": "/metadata/labels", "value": {"k": "v"}},
                                                     {"op": "replace", "path": "/spec/containers/0/image",
                                                      "value": "w"}])
    assert got.metadata.labels == {"k": "v"} and got.spec.containers[0].image == "w"
    with pytest.raises(ApiException) as exc:
        core.patch_namespaced_pod("p", "default", {"metadata": {"resourceVersion": "1"}},
                                  _content_type="application/merge-patch+json")
    assert exc.value.status == 409  # a patch carrying a stale resourceVersion is a conditional write
    with pytest.raises(ApiException) as exc:
        client.CustomObjectsApi(api).patch_cluster_custom_object(GROUP, VERSION, "contracts", "c", {},
                                                                 _content_type="application/strategic-merge-patch+json")
    assert exc.value.status == 415


def test_pod_status_subresource(api: client.ApiClient, kube: FakeKube) -> None:
    core = client.CoreV1Api(api)
    created = core.create_namespaced_pod("default", {**pod("p"), "status": {"podIP": "10.0.0.9"}})
    assert created.status.phase == "Pending" and created.status.pod_ip is None  # the server drops sent status
    got = core.patch_namespaced_pod_status("p", "default", {"status": {"podIP": "10.0.0.9", "phase": "Running"},
                                                            "metadata": {"labels": {"ignored": "yes"}}})
    assert (got.status.pod_ip, got.status.phase) == ("10.0.0.9", "Running")
    assert got.metadata.labels is None
    assert core.read_namespaced_pod_status("p", "default").status.pod_ip == "10.0.0.9"
    # The in-process helper keeps status, as if a kubelet had reported it.
    kube.create({**pod("q"), "status": {"podIP": "10.0.0.10"}})
    assert core.read_namespaced_pod("q", "default").status.pod_ip == "10.0.0.10"


def test_lease_update_with_stale_resource_version_fails(api: client.ApiClient) -> None:
    leases = client.CoordinationV1Api(api)
    body = {"metadata": {"name": "epgbridge-controller", "namespace": "kube-system"},
            "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}}
    leases.create_namespaced_lease("kube-system", body)
    with pytest.raises(ApiException) as exc:
        leases.create_namespaced_lease("kube-system", body)
    assert exc.value.status == 409
    seen_by_a = leases.read_namespaced_lease("epgbridge-controller", "kube-system")
    seen_by_b = leases.read_namespaced_lease("epgbridge-controller", "kube-system")
    seen_by_b.spec.holder_identity = "b"
    leases.replace_namespaced_lease("epgbridge-controller", "kube-system", seen_by_b)
    seen_by_a.spec.holder_identity = "a"
    seen_by_a.spec.renew_time = "2024-01-01T00:00:00.000000Z"
    with pytest.raises(ApiException) as exc:
        leases.replace_namespaced_lease("epgbridge-controller", "kube-system", seen_by_a)
    assert exc.value.status == 409
    assert leases.read_namespaced_lease("epgbridge-controller", "kube-system").spec.holder_identity == "b"


def test_paging_with_limit_and_continue(api: client.ApiClient, kube: FakeKube) -> None:
    core = client.CoreV1Api(api)
    for i in range(5):
        kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{i}", "namespace": "default"}})
    first = core.list_namespaced_config_map("default", limit=2)
    assert [c.metadata.name for c in first.items] == ["c0", "c1"]
    assert first.metadata.remaining_item_count == 3
    kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c10", "namespace": "default"}})
    second = core.list_namespaced_config_map("default", limit=2, _continue=first.metadata._continue)
    third = core.list_namespaced_config_map("default", limit=2, _continue=second.metadata._continue)
    # One consistent snapshot at the first page's version: c10, created later, is not in it.
    assert [c.metadata.name for c in second.items + third.items] == ["c2", "c3", "c4"]
    assert third.metadata._continue is None
    assert second.metadata.resource_version == first.metadata.resource_version
    kube.compact()
    with pytest.raises(ApiException) as exc:
        core.list_namespaced_config_map("default", limit=2, _continue=first.metadata._continue)
    assert exc.value.status == 410


def test_errors_fault_injection_and_counters(api: client.ApiClient, kube: FakeKube) -> None:
    core = client.CoreV1Api(api)
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_pod("nowhere", pod("p", ns="nowhere"))
    assert exc.value.status == 404 and status_of(exc.value)["message"] == 'namespaces "nowhere" not found'
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_pod("default", pod("Bad_Name"))
    assert exc.value.status == 422 and status_of(exc.value)["reason"] == "Invalid"
    kube.reset_counters()
    kube.fail_next(1, status=500)
    with pytest.raises(ApiException) as exc:
        core.list_namespaced_pod("default")
    assert exc.value.status == 500 and status_of(exc.value)["kind"] == "Status"
    core.list_namespaced_pod("default")
    kube.fail_next(1, status=403, verb="patch", resource="pods")
    core.create_namespaced_pod("default", pod("p"))
    with pytest.raises(ApiException) as exc:
        core.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"a": "b"}}})
    assert exc.value.status == 403 and status_of(exc.value)["reason"] == "Forbidden"
    assert kube.count("list", "pods") == 2 and kube.count("patch") == 1 and kube.count("create", "pods") == 1
    assert kube.counters()[("create", "pods")] == 1


def test_namespace_delete_cascades_and_generate_name(api: client.ApiClient, kube: FakeKube) -> None:
    core = client.CoreV1Api(api)
    ns = core.create_namespace({"metadata": {"name": "shop"}})
    assert ns.metadata.labels == {"kubernetes.io/metadata.name": "shop"}
    made = core.create_namespaced_pod("shop", {"metadata": {"generateName": "web-", "namespace": "shop"},
                                                "spec": TEMPLATE["spec"]})
    assert made.metadata.name.startswith("web-") and len(made.metadata.name) == 9
    core.delete_namespace("shop")
    assert kube.list("Pod", "shop") == [] and kube.get("Namespace", None, "shop") is None
    with pytest.raises(ApiError) as err:
        kube.create(pod("x", ns="shop"))
    assert err.value.code == 404


def test_finalizers_delay_deletion(api: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(api)
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Contract",
            "metadata": {"name": "c", "finalizers": ["epgbridge.io/apic"]}, "spec": {}}
    custom.create_cluster_custom_object(GROUP, VERSION, "contracts", body)
    pending = custom.delete_cluster_custom_object(GROUP, VERSION, "contracts", "c")
    assert pending["metadata"]["deletionTimestamp"]
    custom.patch_cluster_custom_object(GROUP, VERSION, "contracts", "c", {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as exc:
        custom.get_cluster_custom_object(GROUP, VERSION, "contracts", "c")
    assert exc.value.status == 404


def test_discovery_serves_the_dynamic_client(api: client.ApiClient, kube: FakeKube) -> None:
    assert client.VersionApi(api).get_code().major == "1"
    groups = {g.name for g in client.ApisApi(api).get_api_versions().groups}
    assert {"apps", "networking.k8s.io", "coordination.k8s.io", "events.k8s.io", GROUP} <= groups
    dyn = dynamic.DynamicClient(api)
    groups_api = dyn.resources.get(api_version=f"{GROUP}/{VERSION}", kind="EndpointGroup")
    groups_api.create(body={"apiVersion": f"{GROUP}/{VERSION}", "kind": "EndpointGroup",
                            "metadata": {"name": "web"}, "spec": {}})
    assert [i.metadata.name for i in groups_api.get().items] == ["web"]
    deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    assert deployments.namespaced and deployments.get(namespace="default").items == []
