"""Random small clusters for property and differential tests: every feature of both layers in play
(selectors, ipBlocks with except, named ports, endPort, policyTypes, EPG inheritance and its tenancy guard,
invalid annotations isolated or skipped, scopes, deny), in one address family or dual-stack (`family`: "ipv4",
the default, "ipv6" or "dual")."""

from __future__ import annotations

import random
from typing import Any

from tests.core.builders import GROUP, config, epg_value, namespace, netpol, owner, pod, workload

LABELS = ("a", "b", "c")
PORTS = (80, 81, 443, 8080)
PROBES = ((80, "TCP"), (81, "TCP"), (8080, "TCP"), (53, "UDP"), (443, "SCTP"))
EPGS = (("t1", "ap1", "e1"), ("t1", "ap1", "e2"), ("t1", "ap2", "e3"), ("t2", "ap1", "e4"))
FAMILIES = ("ipv4", "ipv6", "dual")
# Outside addresses worth probing, per family: in a pod subnet but no pod's, and far from every pod.
EXTERNAL = {4: ("10.1.0.200", "192.0.2.7"), 6: ("fd00:1::c8", "2001:db8::7")}


def v6(ip: str) -> str:
    """The IPv6 twin of a random cluster's IPv4 address or CIDR: 10.N.0.H/L -> fd00:N::H(hex)/(96 + L)."""
    address, _, length = ip.partition("/")
    octets = [int(o) for o in address.split(".")]
    twin = f"fd00:{octets[1]:x}::{octets[3]:x}" if octets[0] == 10 else f"2001:db8::{octets[3]:x}"
    return f"{twin}/{96 + int(length)}" if length else twin


def _selector(rng: random.Random) -> dict[str, Any]:
    choice = rng.randrange(4)
    if choice == 0:
        return {}
    if choice == 1:
        return {"matchLabels": {"app": rng.choice(LABELS)}}
    op = rng.choice(["In", "NotIn", "Exists", "DoesNotExist"])
    expr: dict[str, Any] = {"key": "app" if choice == 2 else "tier", "operator": op}
    if op in ("In", "NotIn"):
        expr["values"] = rng.sample(LABELS, rng.randint(1, 2))
    return {"matchExpressions": [expr]}


def _peer(rng: random.Random, pod_ips: list[str], family: str = "ipv4") -> dict[str, Any]:
    kind = rng.randrange(5)
    if kind == 0:
        base = rng.choice(pod_ips).rsplit(".", 1)[0]
        cidr = f"{base}.0/{rng.choice([24, 25, 26])}"
        block: dict[str, Any] = {"cidr": cidr}
        if rng.random() < 0.5:
            block["except"] = [f"{rng.choice(pod_ips)}/32"] if rng.random() < 0.5 else [f"{base}.0/27"]
            if not all(_inside(e, cidr) for e in block["except"]):
                del block["except"]
        if family == "ipv6" or (family == "dual" and rng.random() < 0.5):  # dual-stack: blocks of either family
            block = {"cidr": v6(block["cidr"]), **({"except": [v6(e) for e in block["except"]]}
                                                   if "except" in block else {})}
        return {"ipBlock": block}
    if kind == 1:
        return {"namespaceSelector": {"matchLabels": {"team": rng.choice(["x", "y"])}}}
    if kind == 2:
        return {"namespaceSelector": _ns_selector(rng), "podSelector": _selector(rng)}
    return {"podSelector": _selector(rng)}


def _ns_selector(rng: random.Random) -> dict[str, Any]:
    return {} if rng.random() < 0.3 else {"matchLabels": {"team": rng.choice(["x", "y"])}}


def _inside(sub: str, cidr: str) -> bool:
    import ipaddress
    s, c = ipaddress.ip_network(sub, strict=False), ipaddress.ip_network(cidr, strict=False)
    return s.subnet_of(c) and s != c  # type: ignore[arg-type]


def _np_port(rng: random.Random) -> dict[str, Any]:
    kind = rng.randrange(5)
    proto = rng.choice(["TCP", "TCP", "UDP", "SCTP"])
    if kind == 0:
        return {"protocol": proto}
    if kind == 1:
        return {"port": rng.choice(["web", "alt"]), "protocol": proto}
    if kind == 2:
        lo = rng.choice(PORTS)
        return {"port": lo, "endPort": lo + rng.choice([0, 1, 500]), "protocol": proto}
    return {"port": rng.choice([*PORTS, 53]), "protocol": proto}


def _rule(rng: random.Random, pod_ips: list[str], key: str, family: str = "ipv4") -> dict[str, Any]:
    rule: dict[str, Any] = {}
    if rng.random() < 0.8:
        rule[key] = [_peer(rng, pod_ips, family) for _ in range(rng.randint(0, 2))]
    if rng.random() < 0.7:
        rule["ports"] = [_np_port(rng) for _ in range(rng.randint(1, 2))]
    return rule


def _entry(rng: random.Random, i: int) -> dict[str, Any]:
    kind = rng.randrange(4)
    if kind == 0:
        return {"name": f"e{i}"}
    proto = rng.choice(["tcp", "udp", "sctp", "132"])
    lo = rng.choice([53, 80, 81, 443, 8000])
    ports = f"{lo}" if rng.random() < 0.5 else f"{lo}-{lo + rng.choice([1, 100, 8000])}"
    return {"name": f"e{i}", "protocol": proto, "destinationPorts": ports}


def addresses(ip: str, family: str, v6_first: bool = False) -> str | list[str]:
    """A pod's addresses in a cluster of `family`, from its IPv4 address."""
    if family == "ipv4":
        return ip
    if family == "ipv6":
        return v6(ip)
    return [v6(ip), ip] if v6_first else [ip, v6(ip)]


def random_cluster(rng: random.Random, pods: int = 6, nodes: int = 2, family: str = "ipv4",
                   audit: bool = False) -> list[dict[str, Any]]:
    """A random cluster; `family` "ipv6" gives every pod, ipBlock and outside address its IPv6 twin, "dual" both
    (each pod both addresses, the primary family chosen per cluster; each ipBlock of either family). `audit`:
    then some EndpointGroups, Contracts and NetworkPolicies in audit mode (drawn after everything else, so the
    same generator makes the same cluster with and without)."""
    v6_first = family == "dual" and rng.random() < 0.5
    docs: list[dict[str, Any]] = [
        *([config(invalidAnnotation="fallback")] if rng.random() < 0.3 else []),
        namespace("x", {"team": "x"}, epg=epg_value(*rng.choice(EPGS)) if rng.random() < 0.4 else None),
        namespace("y", {"team": "y"}),
        workload("Deployment", "x", "dep", {"matchLabels": {"app": "a"}},
                 epg=epg_value(name=rng.choice(EPGS)[2]) if rng.random() < 0.5 else None),
    ]
    ips = [f"10.{rng.choice([1, 2])}.0.{10 + i}" for i in range(pods)]
    for i, ip in enumerate(ips):
        ns = rng.choice(["x", "y"])
        labels = {"app": rng.choice(LABELS)}
        if rng.random() < 0.3:
            labels["tier"] = "t"
        ports = [{"containerPort": rng.choice(PORTS), "name": "web", "protocol": rng.choice(["TCP", "UDP"])},
                 {"containerPort": rng.choice(PORTS), "name": "alt", "protocol": "TCP"}]
        annotation = None
        r = rng.random()
        if r < 0.5:
            annotation = epg_value(*rng.choice(EPGS))
        elif r < 0.6:
            annotation = epg_value(name=rng.choice(EPGS)[2])
        elif r < 0.65:
            annotation = "{invalid"
        owners = [owner("Deployment", "dep")] if ns == "x" and labels["app"] == "a" and rng.random() < 0.5 else None
        docs.append(pod(ns, f"p{i}", addresses(ip, family, v6_first), labels, node=f"node{i % nodes}", ports=ports,
                        epg=annotation, owners=owners))
    contract_names = ["c1", "c2", "c3"]
    for t, ap, name in EPGS:
        spec = {"tenant": t, "applicationProfile": ap, "name": name,
                "intraEpg": rng.choice(["permit", "permit", "isolate"]),
                "provides": rng.sample(contract_names, rng.randint(0, 2)),
                "consumes": rng.sample(contract_names, rng.randint(0, 2))}
        # Who may name the EPG in pod and workload annotations (the tenancy guard): mostly everyone.
        admits = rng.choice([{}, {}, {}, {"matchLabels": {"team": rng.choice(["x", "y"])}}, None])
        if admits is not None:
            spec["namespaceSelector"] = admits
        docs.append({"apiVersion": GROUP, "kind": "EndpointGroup", "metadata": {"name": name}, "spec": spec})
    for ci, cname in enumerate(contract_names):
        tenant = rng.choice(["t1", "t2", "common"])
        filters = [{"name": f"{cname}-f{fi}", "action": "deny" if fi == 1 else "permit",
                    "entries": [_entry(rng, k) for k in range(rng.randint(1, 2))]}
                   for fi in range(rng.randint(1, 2))]
        docs.append({"apiVersion": GROUP, "kind": "Contract", "metadata": {"name": f"k{ci}"},
                     "spec": {"tenant": tenant, "name": cname,
                              "scope": rng.choice(["context", "tenant", "application-profile", "global"]),
                              "subjects": [{"name": "s", "filters": filters}]}})
    for pi in range(rng.randint(0, 3)):
        spec: dict[str, Any] = {"podSelector": _selector(rng)}
        types = rng.choice([None, ["Ingress"], ["Egress"], ["Ingress", "Egress"]])
        if types is not None:
            spec["policy_types"] = types
        if types is None or "Ingress" in types:
            spec["ingress"] = [_rule(rng, ips, "from", family) for _ in range(rng.randint(0, 2))]
        if types is None or "Egress" in types:
            spec["egress"] = [_rule(rng, ips, "to", family) for _ in range(rng.randint(0, 2))]
        docs.append(netpol(rng.choice(["x", "y"]), f"np{pi}", **spec))
    if audit:
        for doc in docs:
            if doc["kind"] in ("EndpointGroup", "Contract") and rng.random() < 0.3:
                doc["spec"]["mode"] = "audit"
            elif doc["kind"] == "NetworkPolicy" and rng.random() < 0.4:
                doc["metadata"]["annotations"] = {"epgbridge.io/mode": "audit"}
    return docs
