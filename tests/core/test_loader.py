"""The snapshot loader: every defect is one line naming the file and object; nothing half-loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from contracts.loader import documents, load_cluster
from controller.snapshot import load_paths
from epg.errors import InvalidInput
from tests.core.builders import GROUP, contract, endpoint_group, entry, namespace, netpol, pod


def problems(*docs: Any) -> list[str]:
    with pytest.raises(InvalidInput) as exc:
        load_cluster(documents("in.yaml", docs))
    return [str(p) for p in exc.value.problems]


def test_each_problem_is_one_line_naming_file_and_object() -> None:
    got = problems(
        pod("ns", "a", "10.0.0.300"),
        {"apiVersion": GROUP, "kind": "Service", "metadata": {"name": "s"}},
        netpol("ns", "p", ingress=[{"from": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}]),
        netpol("ns", "q", ingress=[{"ports": [{"port": 70000}]}]),
        netpol("ns", "r", podSelector={"matchExpressions": [{"key": "a", "operator": "Like", "values": ["x"]}]}),
        endpoint_group("bad name!"),
        contract("c c", permit=[entry("e", "tcp", "80")]),
    )
    assert got == [
        "in.yaml#1: Pod ns/a: status.podIP '10.0.0.300' is not an IP address",
        "in.yaml#2: unknown kind 'Service' (known: Config, Contract, DaemonSet, Deployment, EndpointGroup, "
        "Namespace, NetworkPolicy, Node, Pod, ReplicaSet, StatefulSet)",
        "in.yaml#3: NetworkPolicy ns/p: spec.ingress[0].from[0].ipBlock.cidr '10.0.0.0/33' is not a CIDR "
        "(like 10.0.0.0/16)",
        "in.yaml#4: NetworkPolicy ns/q: spec.ingress[0].ports[0].port 70000 must be a number 1-65535",
        "in.yaml#5: NetworkPolicy ns/r: spec.podSelector.matchExpressions[0]: operator 'Like' is not one of In, "
        "NotIn, Exists, DoesNotExist",
        "in.yaml#6: EndpointGroup: metadata.name 'bad name!' is not a valid Kubernetes name (lowercase DNS-1123)",
        "in.yaml#7: Contract: metadata.name 'kube-c c' is not a valid Kubernetes name (lowercase DNS-1123)",
    ]
    assert all("\n" not in p for p in got)


def test_bad_apic_names_in_specs() -> None:
    eg = endpoint_group("web")
    eg["spec"]["name"] = "web;drop"
    c = contract("ok", permit=[entry("e", "tcp", "80")])
    c["spec"]["subjects"][0]["name"] = "s/1"
    got = problems(eg, c)
    assert got == [
        "in.yaml#1: EndpointGroup web: spec.name 'web;drop' must be 1-64 of [a-zA-Z0-9_.:-]",
        "in.yaml#2: Contract kube-ok: spec.subjects[0].name 's/1' must be 1-64 of [a-zA-Z0-9_.:-]",
    ]


def test_cidr_with_host_bits_is_accepted_as_the_api_server_does() -> None:
    cluster = load_cluster(documents("in.yaml", [
        netpol("ns", "p", ingress=[{"from": [{"ipBlock": {"cidr": "10.0.1.1/4", "except": ["10.0.1.1/24"]}}]}]),
    ]))
    block = cluster.policies[0].ingress[0].peers[0].ip_block
    assert block is not None and str(block.cidr) == "0.0.0.0/4" and str(block.excepts[0]) == "10.0.1.0/24"


@pytest.mark.parametrize(("port", "message"), [
    ({"port": "8080"}, "is not a port number or a valid port name"),
    ({"port": "http--x"}, "is not a port number or a valid port name"),
    ({"port": "http", "endPort": 90}, "endPort needs a numeric port"),
    ({"port": 90, "endPort": 80}, "endPort 80 must be >= port 90"),
    ({"port": 80, "protocol": "ICMP"}, "must be TCP, UDP or SCTP"),
    ({"port": 0}, "must be a number 1-65535"),
    ({"endPort": 80}, "endPort needs a numeric port"),
])
def test_bad_policy_ports(port: dict[str, Any], message: str) -> None:
    (got,) = problems(netpol("ns", "p", ingress=[{"ports": [port]}]))
    assert message in got


@pytest.mark.parametrize(("peer", "message"), [
    ({}, "must have podSelector, namespaceSelector or ipBlock"),
    ({"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}, "cannot be combined"),
    ({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}}, "must be a strict subset"),
    ({"podSelector": {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}}, "takes no values"),
    ({"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}, "needs values"),
    ({"podSelector": {"matchLabels": {"a": "b c"}}}, "invalid value 'b c' for label 'a'"),
])
def test_bad_peers(peer: dict[str, Any], message: str) -> None:
    (got,) = problems(netpol("ns", "p", ingress=[{"from": [peer]}]))
    assert message in got


@pytest.mark.parametrize(("bad_entry", "message"), [
    (entry("e", "tcp", "99999"), "is not a port 1-65535"),
    (entry("e", "tcp", "90-80"), "the range is empty"),
    (entry("e", "icmp", "80"), "destinationPorts needs protocol tcp, udp or sctp"),
    (entry("e", "gre"), "must be tcp, udp, icmp, sctp"),
    (entry("e", 256), "must be tcp, udp, icmp, sctp"),
    (entry("e", "tcp", "80", sourcePorts="1"), "unsupported field 'sourcePorts'"),
    (entry("e", "tcp", "80", etherType="arp"), "etherType 'arp'"),
])
def test_bad_contract_entries(bad_entry: dict[str, Any], message: str) -> None:
    (got,) = problems(contract("c", permit=[bad_entry]))
    assert message in got


def test_duplicates_are_reported_with_both_places() -> None:
    got = problems(pod("ns", "a", "10.0.0.1"), pod("ns", "a", "10.0.0.2"),
                   pod("ns", "b", "10.0.0.1"),
                   endpoint_group("web"), {**endpoint_group("web"), "metadata": {"name": "web2"}},
                   contract("c", permit=[entry("e", "tcp", "80")]),
                   {**contract("c", permit=[entry("e", "tcp", "80")]), "metadata": {"name": "other"}})
    assert got == [
        "in.yaml#2: Pod ns/a: duplicate: Pod ns/a is also defined in in.yaml#1",
        "in.yaml#3: Pod ns/b: address 10.0.0.1 is also an address of pod ns/a",
        "in.yaml#5: EndpointGroup web2: EPG kube/kubernetes/web is also declared by EndpointGroup web (in.yaml#4); "
        "the oldest object wins (creationTimestamp, then name), so this one is ignored",
        "in.yaml#7: Contract other: contract kube/c is also declared by Contract kube-c (in.yaml#6); "
        "the oldest object wins (creationTimestamp, then name), so this one is ignored",
    ]


def test_filters_are_tenant_scoped() -> None:
    a = contract("a", permit=[entry("e", "tcp", "80")], filter_prefix="shared")
    b = contract("b", permit=[entry("e", "tcp", "81")], filter_prefix="shared")
    same = contract("c", permit=[entry("e", "tcp", "80")], filter_prefix="shared")
    other_tenant = contract("d", tenant="t2", permit=[entry("e", "tcp", "81")], filter_prefix="shared")
    (got,) = problems(a, b)
    assert "filter 'shared-permit' of tenant kube is also defined with other entries" in got
    load_cluster(documents("in.yaml", [a, same, other_tenant]))  # identical entries, or another tenant: fine


def test_unsupported_api_version_and_missing_name() -> None:
    got = problems({"apiVersion": "extensions/v1beta1", "kind": "Deployment", "metadata": {"name": "d"}},
                   {"apiVersion": "v1", "kind": "Pod", "metadata": {}}, "just a string")
    assert got == [
        "in.yaml#1: Deployment default/d: apiVersion 'extensions/v1beta1' is not supported for Deployment; "
        "use apps/v1",
        "in.yaml#2: Pod: metadata.name is missing",
        "in.yaml#3: not an object (expected a mapping with apiVersion, kind and metadata)",
    ]


def test_lists_json_directories_and_implicit_namespaces(tmp_path: Path) -> None:
    import json

    import yaml
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.yaml").write_text(yaml.safe_dump_all([namespace("x", {"team": "x"}), None]))
    (tmp_path / "sub" / "b.json").write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        pod("x", "p", "10.0.0.1"), pod("y", "q", "10.0.0.2")]}))
    (tmp_path / "notes.txt").write_text("ignored")
    cluster = load_paths([str(tmp_path)])
    assert [p.key for p in cluster.pods] == ["x/p", "y/q"]
    assert dict(cluster.namespaces["x"].labels) == {"team": "x", "kubernetes.io/metadata.name": "x"}
    assert dict(cluster.namespaces["y"].labels) == {"kubernetes.io/metadata.name": "y"}
    assert not cluster.namespaces["y"].declared


def test_syntax_errors_name_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("kind: Pod\nmetadata: {name: [unclosed\n")
    (tmp_path / "bad.json").write_text('{"kind": "Pod",}')
    with pytest.raises(InvalidInput) as exc:
        load_paths([str(tmp_path / "bad.yaml"), str(tmp_path / "bad.json"), str(tmp_path / "missing.yaml")])
    got = [str(p) for p in exc.value.problems]
    assert got[0].startswith(f"{tmp_path / 'bad.yaml'}: YAML syntax error at line 3")
    assert got[1].startswith(f"{tmp_path / 'bad.json'}: JSON syntax error at line 1")
    assert got[2] == f"{tmp_path / 'missing.yaml'}: no such file or directory"


def test_config_object() -> None:
    cfg = {"apiVersion": GROUP, "kind": "Config", "metadata": {"name": "c"},
           "spec": {"invalidAnnotation": "explode"}}
    (got,) = problems(cfg)
    assert "spec.invalidAnnotation 'explode' must be isolate or fallback" in got


@pytest.mark.parametrize("field", [{"destinationPorts": "²"}, {"protocol": "²"}, {"destinationPorts": "８０"}])
def test_non_ascii_digits_are_invalid_not_a_crash(field: dict[str, Any]) -> None:
    e = {"name": "e", "protocol": "tcp", **field}
    (got,) = problems(contract("c", permit=[e]))
    assert "must be" in got or "is not a port" in got


def test_kinds_that_do_not_affect_policy_are_skipped_not_refused() -> None:
    dump = {"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "ns"}},
        pod("ns", "a", "10.0.0.1"),
        {"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy", "metadata": {"name": "p", "namespace": "ns"}},
        {"apiVersion": "v1", "kind": "Config", "clusters": []},  # a kubeconfig lying in the folder
    ]}
    cluster = load_cluster(documents("dump.yaml", [dump]))
    assert [p.key for p in cluster.pods] == ["ns/a"]
    assert [(s.where, s.kind, s.name, s.policy) for s in cluster.skipped] == [
        ("dump.yaml#1 items[0]", "Service", "ns/web", False),
        ("dump.yaml#1 items[2]", "CiliumNetworkPolicy", "ns/p", True),
        ("dump.yaml#1 items[3]", "Config", "", False),
    ]


@pytest.mark.parametrize(("kind", "api"), [
    ("Pods", "v1"), ("pod", "v1"), ("Deploymnet", "apps/v1"), ("StatefullSet", "apps/v1"),
    ("Contracts", GROUP), ("Anything", GROUP), ("Service", None),
])
def test_what_may_be_meant_for_us_is_still_an_error(kind: str, api: str | None) -> None:
    body = {"kind": kind, "metadata": {"name": "x"}, **({"apiVersion": api} if api else {})}
    assert problems(body) == [f"in.yaml#1: unknown kind {kind!r} (known: Config, Contract, DaemonSet, Deployment, "
                              "EndpointGroup, Namespace, NetworkPolicy, Node, Pod, ReplicaSet, StatefulSet)"]


def created(doc: dict[str, Any], name: str, when: str) -> dict[str, Any]:
    return {**doc, "metadata": {"name": name, "creationTimestamp": when}}


def test_conflicts_are_won_by_the_oldest_object_not_the_first_name() -> None:
    """Issue 10.7: a newer object whose name sorts first must not displace the one in force."""
    from contracts.loader import load_cluster_lenient
    from epg.identity import EPGRef

    old_eg = created(endpoint_group("api", provides=["web-http"]), "shop-api", "2025-01-01T00:00:00Z")
    new_eg = created(endpoint_group("api", consumes=["x"]), "a-shop-api", "2025-03-01T00:00:00Z")
    old_c = created(contract("web-http", permit=[entry("tcp-80", "tcp", "80")]), "z-web", "2025-01-01T00:00:00Z")
    new_c = created(contract("web-http", permit=[entry("tcp-81", "tcp", "81")]), "a-web", "2025-03-01T00:00:00Z")
    cluster, rejected = load_cluster_lenient(documents("in.yaml", [new_eg, old_eg, new_c, old_c]))
    assert cluster.groups[EPGRef("kube", "kubernetes", "api")].provides == ("web-http",)
    (entry_in_force,) = [e.entry.name for e in cluster.contracts[("kube", "web-http")].entries()]
    assert entry_in_force == "tcp-80"
    lost = {(r.kind, r.name): r for r in rejected}
    assert set(lost) == {("EndpointGroup", "a-shop-api"), ("Contract", "a-web")}
    assert lost[("EndpointGroup", "a-shop-api")].conflict == "EndpointGroup shop-api"
    assert lost[("EndpointGroup", "a-shop-api")].problem.message == (
        "EPG kube/kubernetes/api is also declared by EndpointGroup shop-api (created 2025-01-01T00:00:00Z); "
        "the oldest object wins (creationTimestamp, then name), so this one is ignored")
    assert lost[("Contract", "a-web")].conflict == "Contract z-web"
    # The same creationTimestamp: the name decides.
    tie = created(endpoint_group("api"), "b-shop-api", "2025-01-01T00:00:00Z")
    _, rejected = load_cluster_lenient(documents("in.yaml", [tie, old_eg]))
    assert [(r.name, r.conflict) for r in rejected] == [("shop-api", "EndpointGroup b-shop-api")]


def test_a_filter_conflict_is_won_by_the_older_contract_and_the_loser_leaves_no_filter() -> None:
    from contracts.loader import load_cluster_lenient

    older = created(contract("b", permit=[entry("e", "tcp", "80")], filter_prefix="shared"), "z-b",
                    "2025-01-01T00:00:00Z")
    loser = {**contract("a", permit=[entry("e", "tcp", "81")], filter_prefix="shared"),
             "metadata": {"name": "a-a", "creationTimestamp": "2025-02-01T00:00:00Z"}}
    loser["spec"]["subjects"][0]["filters"].insert(0, {"name": "only-a", "entries": [entry("e", "udp", "53")]})
    # A third contract defines "only-a" otherwise: fine, since the loser's definition never counted.
    third = created(contract("c", permit=[entry("e", "udp", "54")], filter_prefix="only-a"), "m-c",
                    "2025-03-01T00:00:00Z")
    third["spec"]["subjects"][0]["filters"][0]["name"] = "only-a"
    cluster, rejected = load_cluster_lenient(documents("in.yaml", [loser, older, third]))
    assert [(r.name, r.conflict) for r in rejected] == [("a-a", "Contract z-b")]
    assert "filter 'shared-permit' of tenant kube is also defined with other entries by Contract z-b" in (
        rejected[0].problem.message)
    assert set(cluster.contracts) == {("kube", "b"), ("kube", "c")}


# NetworkPolicy validation as the API server's (ValidateNetworkPolicySpec, ValidateLabelSelector, the object
# name rules); docs/semantics.md section 5.1 lists what was compared.
@pytest.mark.parametrize(("doc", "message"), [
    (netpol("ns", "p", policy_types=["Ingress", "Egress", "Ingress"]), "may not list more than two types"),
    (netpol("ns", "p", podSelector={"matchExpressions": [{"key": "a", "operator": "In", "values": ["b c"]}]}),
     "'b c' is not a valid label value"),
    (netpol("ns", "p", podSelector={"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["x" * 64]}]}),
     "is not a valid label value"),
    (netpol("ns", "p", podSelector={"matchLabels": {"/a": "b"}}), "invalid label key '/a'"),
    (netpol("ns", "p", podSelector={"matchLabels": {"a..b/c": "d"}}), "invalid label key 'a..b/c'"),
    (netpol("ns", "p..q"), "is not a valid Kubernetes name"),
    (netpol("ns", "p.-q"), "is not a valid Kubernetes name"),
    (pod("ns", "a", "10.0.0.1", node="n-.1"), "spec.nodeName 'n-.1' is not a valid node name"),
    (netpol("ns", "p", ingress=[{"from": [{"podSelector": None}]}]), "must have podSelector, namespaceSelector"),
])
def test_network_policy_validation_as_the_api_server(doc: dict[str, Any], message: str) -> None:
    (got,) = problems(doc)
    assert message in got


def test_what_the_api_server_accepts_loads() -> None:
    cluster = load_cluster(documents("in.yaml", [
        netpol("ns", "dup", policy_types=["Ingress", "Ingress"]),  # duplicates: accepted upstream too
        netpol("ns", "a.b-c", podSelector={"matchLabels": {"example.com/tier": "web"}}),
        netpol("ns", "nulls", podSelector=None, ingress=None, egress=None, policyTypes=None),
    ]))
    assert [(p.name, p.affects_ingress, p.affects_egress) for p in cluster.policies] == [
        ("a.b-c", True, False), ("dup", True, False), ("nulls", True, False)]


def test_a_live_object_that_becomes_invalid_keeps_its_last_valid_version() -> None:
    """Unknown is never absent: a NetworkPolicy (or EndpointGroup) the controller or agent read fine before and
    cannot read now must not vanish (that would open what the policy closed, or delete the EPG's objects on
    the APIC). Its last valid version stays in force, and the problem is reported; an object that was never
    valid is left out as before, and the next valid version replaces the kept one."""
    from contracts.loader import ParseCache, load_cluster_lenient

    def docs(version: str, cidr: str, tenant: str) -> list[Any]:
        policy = netpol("x", "p", podSelector={}, ingress=[{"from": [{"ipBlock": {"cidr": cidr}}]}])
        group = endpoint_group("api", tenant)
        for d in (policy, group):
            d["metadata"]["resourceVersion"] = version
        return [namespace("x"), policy, group]

    cache = ParseCache()
    first, _ = load_cluster_lenient(documents("live", docs("1", "10.0.0.0/8", "shop")), cache)
    broken, rejected = load_cluster_lenient(documents("live", docs("2", "010.0.0.0/8", "shop!")), cache)
    assert [(r.kind, r.name, r.kept) for r in rejected] == [("NetworkPolicy", "p", True), ("EndpointGroup", "api", True)]
    assert all(r.problem.message.endswith("; its last valid version stays in force") for r in rejected)
    assert broken.policies[0] is first.policies[0] and list(broken.groups) == list(first.groups)
    again, rejected = load_cluster_lenient(documents("live", docs("3", "10.1.0.0/16", "shop")), cache)
    assert not rejected and str(again.policies[0].ingress[0].peers[0].ip_block) == "10.1.0.0/16"
    # Never valid (no version kept): left out, as a file load refuses it.
    _, rejected = load_cluster_lenient(documents("live", docs("4", "010.0.0.0/8", "shop")), ParseCache())
    assert [(r.kind, r.kept) for r in rejected] == [("NetworkPolicy", False)]


def _status_pod(name: str, status: dict[str, Any]) -> dict[str, Any]:
    doc = pod("ns", name, None)
    doc["status"] = status
    return doc


def test_a_pod_is_all_of_its_addresses() -> None:
    """status.podIPs, one address per family, the primary first; status.podIP alone where there is no podIPs
    (older snapshots), and podIPs alone is fine too."""
    cluster = load_cluster(documents("in.yaml", [
        pod("ns", "dual", ["10.0.0.1", "fd00::1"]),
        pod("ns", "v6-first", ["fd00::2", "10.0.0.2"]),
        pod("ns", "v6", "fd00::3"),
        _status_pod("only-podips", {"podIPs": [{"ip": "10.0.0.4"}, {"ip": "fd00::4"}]}),
        pod("ns", "v4", "10.0.0.5"),
        _status_pod("pending", {"podIP": "", "podIPs": []}),
    ]))
    got = {p.name: [str(a) for a in p.ips] for p in cluster.pods}
    assert got == {"dual": ["10.0.0.1", "fd00::1"], "v6-first": ["fd00::2", "10.0.0.2"], "v6": ["fd00::3"],
                   "only-podips": ["10.0.0.4", "fd00::4"], "v4": ["10.0.0.5"], "pending": []}
    assert {p.name: str(p.ip) for p in cluster.pods if p.ip} == {
        "dual": "10.0.0.1", "v6-first": "fd00::2", "v6": "fd00::3", "only-podips": "10.0.0.4", "v4": "10.0.0.5"}
    assert [p.name for p in cluster.pods if p.is_endpoint] == ["dual", "only-podips", "v4", "v6", "v6-first"]


@pytest.mark.parametrize(("status", "message"), [
    ({"podIPs": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}]},
     "status.podIPs: at most one address per family (IPv4: 10.0.0.1 and 10.0.0.2)"),
    ({"podIPs": [{"ip": "fd00::1"}, {"ip": "10.0.0.1"}, {"ip": "fd00::2"}]}, "at most one address per family"),
    ({"podIPs": [{"ip": "fd00::1"}, {"ip": "fd00:0::1"}]}, "status.podIPs[1]: fd00::1 is listed twice"),
    ({"podIP": "10.0.0.2", "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]},
     "status.podIP 10.0.0.2 is not status.podIPs[0] 10.0.0.1"),
    ({"podIP": "fd00::1", "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]}, "is not status.podIPs[0]"),
    ({"podIPs": [{"ip": "fe80::1%eth0"}]}, "status.podIPs[0].ip 'fe80::1%eth0' is not an IP address"),
    ({"podIP": "fe80::1%x flush ruleset"}, "status.podIP 'fe80::1%x flush ruleset' is not an IP address"),
    ({"podIP": "10.0.0.01"}, "is not an IP address"),
    ({"podIP": 167772161}, "status.podIP 167772161 is not an IP address"),
    ({"podIPs": [{"ip": "::ffff:10.0.0.1"}]}, "is an IPv4-mapped IPv6 address: give the IPv4 address 10.0.0.1"),
    ({"podIPs": ["10.0.0.1"]}, "status.podIPs[0] must be a mapping"),
    ({"podIPs": "10.0.0.1"}, "status.podIPs must be a list"),
    ({"podIPs": [{}]}, "status.podIPs[0].ip None is not an IP address"),
])
def test_pod_addresses_are_validated_as_the_api_server_does(status: dict[str, Any], message: str) -> None:
    (got,) = problems(_status_pod("a", status))
    assert got.startswith("in.yaml#1: Pod ns/a: ") and message in got, got


def test_every_address_is_unique_across_pods() -> None:
    """The second address of a dual-stack pod counts as much as its first."""
    got = problems(pod("ns", "a", ["10.0.0.1", "fd00::1"]), pod("ns", "b", ["10.0.0.2", "fd00::1"]),
                   pod("ns", "c", "fd00::1"), pod("ns", "d", ["fd00::2", "10.0.0.1"]))
    assert got == ["in.yaml#2: Pod ns/b: address fd00::1 is also an address of pod ns/a",
                   "in.yaml#3: Pod ns/c: address fd00::1 is also an address of pod ns/a",
                   "in.yaml#4: Pod ns/d: address 10.0.0.1 is also an address of pod ns/a"]


def test_patching_a_pod_onto_another_pods_second_address_declines() -> None:
    """The agent's incremental path (patch_pods) checks every address too: a pod event that takes another pod's
    IPv6 address is left to a full load, which rejects that pod."""
    from contracts.loader import Document, load_cluster_lenient, patch_pods
    docs = [namespace("ns"), pod("ns", "a", ["10.0.0.1", "fd00::1"])]
    cluster, rejected = load_cluster_lenient(documents("in.yaml", docs))
    fine = pod("ns", "b", ["10.0.0.2", "fd00::2"])
    patched = patch_pods(cluster, rejected, {("ns", "b"): Document("w", fine)})
    assert patched is not None and [[str(a) for a in p.ips] for p in patched[0].pods] == [
        ["10.0.0.1", "fd00::1"], ["10.0.0.2", "fd00::2"]]
    clash = pod("ns", "b", ["10.0.0.2", "fd00::1"])
    assert patch_pods(cluster, rejected, {("ns", "b"): Document("w", clash)}) is None
    _, rejected = load_cluster_lenient(documents("in.yaml", [*docs, clash]))
    assert [str(r.problem) for r in rejected] == [
        "in.yaml#3: Pod ns/b: address fd00::1 is also an address of pod ns/a"]
