"""Rendering the model as APIC trees: the example cluster against hand-written expectations, and the rules
for names, protocols, ports, undeclared EPGs, external EPGs and host-protection policies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from apic_client.mo import from_json
from apic_client.render import hostprot_name, render, render_tenants
from contracts.loader import load_cluster
from contracts.model import Model
from controller.snapshot import load_model, parse_text
from epg.errors import InvalidInput

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "cluster"


def flatten(trees: list[dict[str, Any]]) -> dict[str, tuple[str, dict[str, str]]]:
    """Every rendered object by DN: (class, attributes)."""
    return {mo.dn: (mo.cls, mo.attributes) for tree in trees for mo in from_json(tree, "uni").walk()}


def model_of(text: str) -> Model:
    return Model(load_cluster(parse_text("test.yaml", text)))


@pytest.fixture(scope="module")
def example() -> Model:
    return load_model([str(EXAMPLE)])


def test_example_renders_the_expected_objects(example: Model) -> None:
    objects = flatten(render_tenants(example))
    expected = {
        # dn: (class, the attributes that matter)
        "uni/tn-shop/ap-storefront/epg-web": ("fvAEPg", {"name": "web", "pcEnfPref": "enforced"}),  # isolate
        "uni/tn-shop/ap-storefront/epg-api": ("fvAEPg", {"name": "api", "pcEnfPref": "unenforced"}),
        "uni/tn-shop/ap-storefront/epg-web/rsbd": ("fvRsBd", {"tnFvBDName": "shop-bd"}),
        "uni/tn-shop/ap-storefront/epg-web/rscons-web-to-api": ("fvRsCons", {"tnVzBrCPName": "web-to-api"}),
        "uni/tn-shop/ap-storefront/epg-web/rscons-dns": ("fvRsCons", {"tnVzBrCPName": "dns"}),  # in common
        "uni/tn-shop/ap-storefront/epg-api/rsprov-web-to-api": ("fvRsProv", {"tnVzBrCPName": "web-to-api"}),
        "uni/tn-shop/ap-data/epg-db/rsprov-db-access": ("fvRsProv", {"tnVzBrCPName": "db-access"}),
        "uni/tn-kube/ap-kubernetes/epg-kube-default/rscons-dns": ("fvRsCons", {"tnVzBrCPName": "dns"}),
        "uni/tn-shop/brc-web-to-api": ("vzBrCP", {"name": "web-to-api", "scope": "application-profile"}),
        "uni/tn-shop/brc-db-access": ("vzBrCP", {"name": "db-access", "scope": "context"}),  # the default
        "uni/tn-common/brc-dns": ("vzBrCP", {"name": "dns", "scope": "global"}),
        "uni/tn-shop/brc-web-to-api/subj-api/rssubjFiltAtt-api-admin": (
            "vzRsSubjFiltAtt", {"tnVzFilterName": "api-admin", "action": "deny"}),
        "uni/tn-shop/brc-web-to-api/subj-api/rssubjFiltAtt-api-range": (
            "vzRsSubjFiltAtt", {"tnVzFilterName": "api-range", "action": "permit"}),
        "uni/tn-common/brc-monitoring/subj-scrape/rssubjFiltAtt-exporters": (
            "vzRsSubjFiltAtt", {"tnVzFilterName": "exporters", "action": "permit"}),  # action defaults to permit
        "uni/tn-shop/flt-api-range/e-tcp-8080-8090": (
            "vzEntry", {"etherT": "ip", "prot": "tcp", "dFromPort": "8080", "dToPort": "8090"}),
        "uni/tn-common/flt-http-probe/e-http": (
            "vzEntry", {"etherT": "ip", "prot": "tcp", "dFromPort": "http", "dToPort": "http"}),
        "uni/tn-common/flt-dns/e-udp-53": (
            "vzEntry", {"etherT": "ip", "prot": "udp", "dFromPort": "dns", "dToPort": "dns"}),
        "uni/tn-shop/flt-https/e-tcp-443": (
            "vzEntry", {"etherT": "ip", "prot": "tcp", "dFromPort": "https", "dToPort": "https"}),
    }
    for dn, (cls, attributes) in expected.items():
        assert dn in objects, dn
        got_cls, got = objects[dn]
        assert got_cls == cls, dn
        assert {k: got.get(k) for k in attributes} == attributes, dn


def test_example_renders_these_epgs_tenants_and_nothing_for_the_external_epg(example: Model) -> None:
    rendering = render(example)
    objects = flatten(list(rendering.tenants))
    assert [t["fvTenant"]["attributes"]["name"] for t in rendering.tenants] == ["common", "kube", "ops", "shop"]
    assert sorted(dn for dn, (cls, _) in objects.items() if cls == "fvAEPg") == [
        "uni/tn-kube/ap-kubernetes/epg-kube-default",
        "uni/tn-kube/ap-kubernetes/epg-kube-system",
        "uni/tn-ops/ap-monitoring/epg-prometheus",
        "uni/tn-shop/ap-data/epg-db",
        "uni/tn-shop/ap-storefront/epg-api",
        "uni/tn-shop/ap-storefront/epg-web",
    ]
    # The payment provider is external (subnets): an l3extInstP on a real APIC, so it is left out, with a warning.
    assert not any("payment-provider" in dn for dn in objects)
    (warning,) = rendering.warnings
    assert "shop/storefront/payment-provider" in warning and "l3extInstP" in warning
    # The contract it provides is still rendered: api consumes it.
    assert "uni/tn-shop/brc-payments-https" in objects
    # The shared filter "postgres" (two contracts) is one object.
    assert sum(1 for dn in objects if dn.endswith("/flt-postgres")) == 1
    assert not any(cls.startswith("hostprot") for cls, _ in objects.values())


def test_rendering_is_deterministic_and_json(example: Model) -> None:
    first = json.dumps(render_tenants(example, host_protection=True))
    again = json.dumps(render_tenants(load_model([str(EXAMPLE)]), host_protection=True))
    assert first == again


SMALL = """
apiVersion: epgbridge.io/v1alpha1
kind: Config
metadata: {name: epgbridge}
spec: {tenants: [kube, t]}
---
apiVersion: v1
kind: Namespace
metadata: {name: plain, labels: {kubernetes.io/metadata.name: plain}}
---
apiVersion: v1
kind: Pod
metadata:
  name: p1
  namespace: plain
  annotations: {opflex.cisco.com/endpoint-group: '{"tenant": "t", "app-profile": "a", "name": "ghost"}'}
spec: {nodeName: n1}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: p2, namespace: plain}
spec: {nodeName: n1}
status: {podIP: 10.0.0.2}
---
apiVersion: epgbridge.io/v1alpha1
kind: Contract
metadata: {name: misc}
spec:
  tenant: t
  subjects:
  - name: s
    filters:
    - name: f
      entries:
      - {name: sctp, protocol: sctp, destinationPorts: "3868"}
      - {name: anything}
      - {name: icmp, protocol: icmp}
      - {name: v6-range, etherType: ipv6, protocol: udp, destinationPorts: "1000-1024"}
"""


def test_protocols_ports_and_epgs_known_only_from_annotations() -> None:
    objects = flatten(render_tenants(model_of(SMALL)))
    entry = {dn.rsplit("/e-", 1)[1]: attrs for dn, (cls, attrs) in objects.items() if cls == "vzEntry"}
    assert entry["sctp"] == {"name": "sctp", "etherT": "ip", "prot": "132", "dFromPort": "3868", "dToPort": "3868"}
    assert entry["anything"] == {"name": "anything", "etherT": "ip", "prot": "unspecified",
                                 "dFromPort": "unspecified", "dToPort": "unspecified"}
    assert entry["icmp"]["prot"] == "icmp" and entry["icmp"]["dFromPort"] == "unspecified"
    assert entry["v6-range"] == {"name": "v6-range", "etherT": "ipv6", "prot": "udp",
                                 "dFromPort": "1000", "dToPort": "1024"}
    # p1 names an EPG no EndpointGroup declares; p2 is in the cluster default EPG, declared nowhere either.
    assert objects["uni/tn-t/ap-a/epg-ghost"] == ("fvAEPg", {"name": "ghost", "pcEnfPref": "unenforced"})
    assert objects["uni/tn-kube/ap-kubernetes/epg-kube-default"][0] == "fvAEPg"
    assert not any(dn.startswith("uni/tn-t/ap-a/epg-ghost/") for dn in objects)  # no BD, no contracts


def test_names_the_apic_refuses_are_invalid_input() -> None:
    text = SMALL.replace("metadata: {name: misc}\nspec:\n  tenant: t", "metadata: {name: misc}\nspec:\n  tenant: t\n  name: a:b")
    model = model_of(text)  # the model allows ':' in names; the APIC does not, for contracts
    with pytest.raises(InvalidInput) as caught:
        render_tenants(model)
    assert any("'a:b' cannot be an APIC vzBrCP name" in str(p) for p in caught.value.problems)


def test_hostprot_names_are_apic_safe_and_deterministic() -> None:
    assert hostprot_name("storefront", "web-ingress") == "storefront_web-ingress"
    long = hostprot_name("n" * 40, "p" * 40)
    assert len(long) == 64 and long == hostprot_name("n" * 40, "p" * 40)
    assert long != hostprot_name("n" * 40, "p" * 39 + "q")
    assert all(c.isalnum() or c in "_.-" for c in hostprot_name("a", "b:c"))


def test_network_policies_as_host_protection_policies(example: Model) -> None:
    objects = flatten(render_tenants(example, host_protection=True))
    web = "uni/tn-kube/pol-storefront_web-ingress/subj-networkpolicy-ingress"
    # Rule 1 of web-ingress: port "http" (80 on the web pods) from anywhere: no remote IP, both families.
    for family in ("ipv4", "ipv6"):
        assert objects[f"{web}/rule-0_0-{family}"][1] == {
            "name": f"0_0-{family}", "direction": "ingress", "ethertype": family, "protocol": "tcp",
            "fromPort": "http", "toPort": "http", "connTrack": "reflexive"}
    assert not any(dn.startswith(f"{web}/rule-0_0-ipv4/ip-") for dn in objects)
    # Rule 2: "metrics" (9100) from the prometheus pod only.
    assert objects[f"{web}/rule-1_0-ipv4"][1]["fromPort"] == "9100"
    assert [dn for dn in objects if dn.startswith(f"{web}/rule-1_0-ipv4/ip-")] == [
        f"{web}/rule-1_0-ipv4/ip-[10.2.2.41/32]"]
    # default-deny: a subject without rules. Egress policies get an egress subject.
    deny = "uni/tn-kube/pol-data_default-deny-ingress"
    assert objects[f"{deny}/subj-networkpolicy-ingress"][0] == "hostprotSubj"
    assert not any(dn.startswith(f"{deny}/subj-networkpolicy-ingress/") for dn in objects)
    assert "uni/tn-kube/pol-monitoring_prometheus-egress/subj-networkpolicy-egress" in objects
    # Another tenant on request.
    elsewhere = flatten(render_tenants(example, host_protection=True, host_protection_tenant="k8s-policy"))
    assert "uni/tn-k8s-policy/pol-storefront_web-ingress" in elsewhere


def test_a_host_protection_policy_over_the_budget_renders_without_allow_rules() -> None:
    """A hostprotRule has one port range and lists every remote prefix: 1,000 excepts x 1,000 ports would be
    millions of APIC objects. Over the budget the policy's subject has no allow rules (its pods isolated, as a
    refused policy's are on the nodes), with a warning; the other policies render as before."""
    excepts = ", ".join(f"10.9.{i // 250}.{i % 250}/32" for i in range(1000))
    ports = ", ".join(f"{{port: {1000 + 2 * i}}}" for i in range(1000))
    text = f"""
apiVersion: v1
kind: Namespace
metadata: {{name: x}}
---
apiVersion: v1
kind: Pod
metadata: {{name: a, namespace: x, labels: {{app: a}}}}
spec: {{nodeName: n1}}
status: {{podIP: 10.200.0.1}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: bomb, namespace: x}}
spec:
  podSelector: {{}}
  ingress: [{{from: [{{ipBlock: {{cidr: 0.0.0.0/0, except: [{excepts}]}}}}], ports: [{ports}]}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: web, namespace: x}}
spec:
  podSelector: {{}}
  ingress: [{{ports: [{{port: 80}}]}}]
"""
    rendering = render(model_of(text), host_protection=True)
    objects = flatten(list(rendering.tenants))
    assert len(objects) < 100, len(objects)
    assert [w for w in rendering.warnings if "x/bomb" in w] == [
        "NetworkPolicy x/bomb: its host-protection ingress rules would be 31,000 APIC objects, over the budget "
        "of 10,000 (Config spec.maxPolicyElements): rendered without allow rules (its pods isolated on the APIC; "
        "nodes enforce it)"]
    bomb = "uni/tn-kube/pol-x_bomb/subj-networkpolicy-ingress"
    assert bomb in objects and not any(dn.startswith(bomb + "/") for dn in objects)
    assert "uni/tn-kube/pol-x_web/subj-networkpolicy-ingress/rule-0_0-ipv4" in objects


DUAL_STACK = """
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: x, labels: {app: web}}
spec: {nodeName: n1, containers: [{name: c, ports: [{containerPort: 8080, name: http}]}]}
status: {podIP: 10.0.0.1, podIPs: [{ip: 10.0.0.1}, {ip: "fd00::1"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: x, labels: {app: client}}
spec: {nodeName: n1}
status: {podIP: "fd00::2", podIPs: [{ip: "fd00::2"}, {ip: 10.0.0.2}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-client, namespace: x}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{podSelector: {matchLabels: {app: client}}}], ports: [{port: 8080}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client-to-web, namespace: x}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
  egress: [{to: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: http}]}]
"""


def test_host_protection_policies_hold_every_address_of_a_pod() -> None:
    """A dual-stack pod is a remote IP of both families (named ports too): its IPv6 traffic is not left out."""
    objects = flatten(render_tenants(model_of(DUAL_STACK), host_protection=True))
    remote = sorted(dn.removeprefix("uni/tn-kube/pol-x_") for dn, (cls, _) in objects.items()
                    if cls == "hostprotRemoteIp")
    assert remote == [
        "client-to-web/subj-networkpolicy-egress/rule-0_0-ipv4/ip-[10.0.0.1/32]",  # a named port: web's own
        "client-to-web/subj-networkpolicy-egress/rule-0_0-ipv6/ip-[fd00::1/128]",
        "web-from-client/subj-networkpolicy-ingress/rule-0_0-ipv4/ip-[10.0.0.2/32]",
        "web-from-client/subj-networkpolicy-ingress/rule-0_0-ipv6/ip-[fd00::2/128]",
    ]
    assert objects["uni/tn-kube/pol-x_client-to-web/subj-networkpolicy-egress/rule-0_0-ipv6"][1]["fromPort"] == "8080"
