"""Deterministic synthetic clusters for benchmarks: Kubernetes-shaped documents that go through the same
loader as real snapshots. Same parameters and seed, same cluster.

Two mixes of the same sizes:
- `uniform`: every policy ingress-only, one `app` peer, one port; every pod of a deployment alike. The kindest
  cluster for the engine and the table: a node's pods fall into a handful of classes.
- `diverse`: what many teams' policies look like (`Mix` holds the knobs): ingress, egress and both; several peers
  per rule, pod and namespace selectors alone and together, matchExpressions, ipBlocks with excepts; named ports
  (whose numbers differ between workloads), `endPort` ranges, UDP; Deployments, StatefulSets and DaemonSets of
  varied sizes; 2-4 labels per pod drawn so that the pods of one workload differ (version, track, shard).
Benchmarks report both, and the worse of the two is the figure that counts.
"""

from __future__ import annotations

import ipaddress
import json
import random
from dataclasses import dataclass
from typing import Any

EPG_KEY = "opflex.cisco.com/endpoint-group"
GROUP = "epgbridge.io/v1alpha1"
MIXES = ("uniform", "diverse")


def pod_ip(n: int, nodes: int, pods: int) -> str:
    """Pod number n (on node n % nodes) gets the next address of its node's block, as node IPAM does: the pods
    of one deployment or namespace are scattered over the nodes' blocks (at least /24s, within 10.0.0.0/8)."""
    per_node = -(-pods // nodes) + 2
    block = max(256, 1 << (per_node - 1).bit_length())
    if nodes * block > 1 << 24:
        raise ValueError(f"{pods} pods on {nodes} nodes do not fit in 10.0.0.0/8")
    return str(ipaddress.IPv4Address((10 << 24) + (n % nodes) * block + n // nodes + 1))


def synthetic_cluster(pods: int = 10_000, namespaces: int = 100, policies: int = 1_000, epgs: int = 500,
                      contracts: int = 2_000, nodes: int = 50, seed: int = 1, mix: str = "uniform",
                      knobs: Mix | None = None) -> list[dict[str, Any]]:
    """A cluster of the given size; `mix` is "uniform" or "diverse" (then `knobs`, default `Mix()`)."""
    if mix == "diverse":
        return diverse_cluster(pods, namespaces, policies, epgs, contracts, nodes, seed, knobs or Mix())
    if mix != "uniform":
        raise ValueError(f"unknown mix {mix!r} (one of {', '.join(MIXES)})")
    rng = random.Random(seed)
    docs: list[dict[str, Any]] = []
    epg_refs, _ = _epgs_and_contracts(docs, rng, epgs, contracts, diverse=False)
    ns_names = [f"ns{i}" for i in range(namespaces)]
    for ns in ns_names:
        meta: dict[str, Any] = {"name": ns, "labels": {"team": f"team{rng.randrange(10)}"}}
        if rng.random() < 0.5:
            meta["annotations"] = {EPG_KEY: json.dumps(dict(zip(("tenant", "app-profile", "name"),
                                                                rng.choice(epg_refs), strict=True)))}
        docs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": meta})
    apps = [f"app{i}" for i in range(20)]
    per_deploy = 10
    for d in range(max(1, pods // per_deploy)):
        ns = ns_names[d % namespaces]
        app = apps[d % len(apps)]
        deploy = f"d{d}"
        dmeta: dict[str, Any] = {"name": deploy, "namespace": ns, "creationTimestamp": "2026-01-01T00:00:00Z"}
        if rng.random() < 0.7:
            dmeta["annotations"] = {EPG_KEY: json.dumps({"name": rng.choice(epg_refs)[2]})}
        docs.append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": dmeta,
                     "spec": {"selector": {"matchLabels": {"app": app, "d": deploy}}}})
        docs.append({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                     "metadata": {"name": f"{deploy}-rs", "namespace": ns, "ownerReferences": [
                         {"apiVersion": "apps/v1", "kind": "Deployment", "name": deploy, "controller": True}]},
                     "spec": {"selector": {"matchLabels": {"app": app, "d": deploy}}}})
        for r in range(per_deploy):
            n = d * per_deploy + r
            if n >= pods:
                break
            docs.append({"apiVersion": "v1", "kind": "Pod", "metadata": {
                "name": f"{deploy}-{r}", "namespace": ns, "labels": {"app": app, "d": deploy,
                                                                     "tier": rng.choice(["fe", "be", "db"])},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"{deploy}-rs",
                                     "controller": True}]},
                "spec": {"nodeName": f"node{n % nodes}", "containers": [{"name": "c", "ports": [
                    {"containerPort": 8080, "name": "http"}, {"containerPort": 9100, "name": "metrics"}]}]},
                "status": {"podIP": pod_ip(n, nodes, pods)}})
    for p in range(policies):
        ns = ns_names[p % namespaces]
        kind = rng.randrange(4)
        peer: dict[str, Any]
        if kind == 0:
            peer = {"podSelector": {"matchLabels": {"app": rng.choice(apps)}}}
        elif kind == 1:
            peer = {"namespaceSelector": {"matchLabels": {"team": f"team{rng.randrange(10)}"}}}
        elif kind == 2:
            peer = {"namespaceSelector": {"matchLabels": {"team": f"team{rng.randrange(10)}"}},
                    "podSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", "be"]}]}}
        else:
            peer = {"ipBlock": {"cidr": f"10.{rng.randrange(2)}.0.0/16", "except": [f"10.{rng.randrange(2)}.1.0/24"]}}
            peer["ipBlock"]["except"] = [peer["ipBlock"]["cidr"].replace(".0.0/16", ".1.0/24")]
        port: dict[str, Any] = rng.choice([{"port": 8080}, {"port": "http"}, {"port": 9000, "endPort": 9100},
                                           {"protocol": "UDP", "port": 53}])
        docs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                     "metadata": {"name": f"np{p}", "namespace": ns},
                     "spec": {"podSelector": {"matchLabels": {"app": rng.choice(apps)}},
                              "ingress": [{"from": [peer], "ports": [port]}]}})
    return docs


def _epgs_and_contracts(docs: list[dict[str, Any]], rng: random.Random, epgs: int, contracts: int,
                        *, diverse: bool) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """EndpointGroups and Contracts (appended to `docs`); the EPG refs and contract refs."""
    tenants = [f"t{i}" for i in range(max(1, epgs // 50))]
    epg_refs = [(tenants[i % len(tenants)], f"ap{i % 5}", f"epg{i}") for i in range(epgs)]
    contract_refs = [(rng.choice([*tenants, "common"]), f"c{i}") for i in range(contracts)]
    for i, (tenant, name) in enumerate(contract_refs):
        if diverse:
            entries = []
            for j in range(rng.randint(1, 4)):
                proto = rng.choice(["tcp", "tcp", "tcp", "udp", "icmp", "unspecified"])
                entry: dict[str, Any] = {"name": f"e{j}", "protocol": proto}
                if proto in ("tcp", "udp"):
                    low = rng.choice([22, 53, 80, 443, 3306, 5432, 6379, 8080, 9000 + 10 * j,
                                      10000 + rng.randrange(50000)])
                    entry["destinationPorts"] = (f"{low}-{low + rng.choice([1, 9, 99])}" if rng.random() < 0.2
                                                 else str(low))
                entries.append(entry)
        else:
            entries = [{"name": f"e{j}", "protocol": rng.choice(["tcp", "udp"]),
                        "destinationPorts": str(rng.choice([80, 443, 5432, 8080, 9000 + j]))}
                       for j in range(rng.randint(1, 3))]
        filters = [{"name": f"f{i}", "entries": entries}]
        if rng.random() < 0.1:
            filters.append({"name": f"f{i}-deny", "action": "deny",
                            "entries": [{"name": "d", "protocol": "tcp", "destinationPorts": "22"}]})
        docs.append({"apiVersion": GROUP, "kind": "Contract", "metadata": {"name": f"{tenant}-{name}"},
                     "spec": {"tenant": tenant, "name": name,
                              "scope": rng.choice(["context", "tenant", "global", "application-profile"]),
                              "subjects": [{"name": "s", "filters": filters}]}})
    # Every placement the annotations make is one the tenancy guard allows: EPGs open to every namespace, and
    # undeclared EPGs (a workload's name in its namespace's tenant) allowed in every tenant.
    docs.append({"apiVersion": GROUP, "kind": "Config", "metadata": {"name": "epgbridge"},
                 "spec": {"tenants": ["kube", *tenants]}})
    usable: dict[str, list[str]] = {}  # diverse: the contracts an EPG of a tenant can name (its own and common)
    for tenant, name in contract_refs:
        for t in tenants if tenant == "common" else [tenant]:
            usable.setdefault(t, []).append(name)
    for n, (tenant, ap, name) in enumerate(epg_refs):
        pool = usable[tenant] if diverse else [c for _, c in contract_refs]
        spec: dict[str, Any] = {"tenant": tenant, "applicationProfile": ap, "name": name, "namespaceSelector": {},
                                "provides": rng.sample(pool, 4), "consumes": rng.sample(pool, 4)}
        if diverse and n % 7 == 0:
            spec["intraEpg"] = "isolate"
        docs.append({"apiVersion": GROUP, "kind": "EndpointGroup", "metadata": {"name": f"{tenant}-{ap}-{name}"},
                     "spec": spec})
    return epg_refs, contract_refs


@dataclass(frozen=True)
class Mix:
    """The knobs of the diverse mix: fractions and counts the generator draws from."""

    ingress_only: float = 0.47  # of policies; the rest egress-only or both, in this proportion:
    egress_only: float = 0.175
    rules_per_direction: tuple[int, ...] = (1, 1, 1, 1, 2)  # drawn uniformly
    peers_per_rule: tuple[int, ...] = (1, 1, 1, 2)
    peer_kinds: tuple[float, float, float, float] = (0.30, 0.26, 0.24, 0.20)  # pods, namespaces, both, ipBlock
    named_ports: float = 0.25  # of rule ports; egress rules draw them more often (x1.5)
    end_ports: float = 0.12
    no_ports: float = 0.1  # rules without ports (every port)
    match_expressions: float = 0.35  # of pod selectors
    excepts: float = 0.6  # of ipBlocks
    labels_per_pod: tuple[int, int] = (2, 4)
    statefulsets: float = 0.17  # of workloads; DaemonSets next, the rest Deployments
    daemonsets: float = 0.10


# Named ports and the numbers workloads give them (a name means different numbers in different workloads).
PORT_NAMES = {"http": (80, 8080, 8000, 3000), "metrics": (9090, 9100, 8081), "grpc": (50051, 9000),
              "db": (5432, 3306, 27017), "cache": (6379, 11211), "dns": (53,), "admin": (8443, 9443)}
COMPONENTS = ("api", "web", "worker", "db", "cache", "queue", "gateway", "auth", "search", "batch")


def diverse_cluster(pods: int, namespaces: int, policies: int, epgs: int, contracts: int, nodes: int, seed: int,
                    mix: Mix) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    docs: list[dict[str, Any]] = []
    epg_refs, _ = _epgs_and_contracts(docs, rng, epgs, contracts, diverse=True)
    ns_names = [f"ns{i}" for i in range(namespaces)]
    ns_labels: dict[str, dict[str, str]] = {}
    for ns in ns_names:
        labels = {"team": f"team{rng.randrange(12)}", "env": rng.choice(["prod", "prod", "staging", "dev"])}
        if rng.random() < 0.3:
            labels["compliance"] = rng.choice(["pci", "hipaa"])
        ns_labels[ns] = labels
        meta: dict[str, Any] = {"name": ns, "labels": labels}
        if rng.random() < 0.5:
            meta["annotations"] = {EPG_KEY: json.dumps(dict(zip(("tenant", "app-profile", "name"),
                                                                rng.choice(epg_refs), strict=True)))}
        docs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": meta})

    # Workloads of varied kinds and sizes until the pods are placed; each namespace gets its share.
    workloads: dict[str, list[tuple[str, dict[str, str]]]] = {ns: [] for ns in ns_names}  # (name, pod labels)
    pod_labels_seen: dict[str, list[dict[str, str]]] = {ns: [] for ns in ns_names}
    n = 0
    w = 0
    while n < pods:
        ns = ns_names[w % namespaces]
        roll = rng.random()
        kind = ("StatefulSet" if roll < mix.statefulsets
                else "DaemonSet" if roll < mix.statefulsets + mix.daemonsets else "Deployment")
        size = min(pods - n, rng.choice([1, 1, 2, 2, 3, 3, 4, 5, 6, 8]))
        name = f"{kind[0].lower()}{w}"
        component = rng.choice(COMPONENTS)
        base = {"app": name, "component": component}
        extra_keys = rng.sample(["tier", "version", "track", "shard", "release"],
                                rng.randint(mix.labels_per_pod[0], mix.labels_per_pod[1]) - 2)
        ports = [{"name": pname, "containerPort": rng.choice(numbers),
                  "protocol": "UDP" if pname == "dns" else "TCP"}
                 for pname, numbers in rng.sample(sorted(PORT_NAMES.items()), rng.randint(1, 3))]
        meta: dict[str, Any] = {"name": name, "namespace": ns,
                                "creationTimestamp": f"2026-01-{1 + w % 28:02d}T00:00:00Z"}
        if rng.random() < 0.6:
            ref = rng.choice(epg_refs)
            value = ({"name": ref[2]} if rng.random() < 0.2  # tenant and application profile from the namespace
                     else dict(zip(("tenant", "app-profile", "name"), ref, strict=True)))
            meta["annotations"] = {EPG_KEY: json.dumps(value)}
        docs.append({"apiVersion": "apps/v1", "kind": kind, "metadata": meta,
                     "spec": {"selector": {"matchLabels": base}}})
        owner = {"apiVersion": "apps/v1", "kind": kind, "name": name, "controller": True}
        if kind == "Deployment":
            docs.append({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                         "metadata": {"name": f"{name}-rs", "namespace": ns, "ownerReferences": [owner]},
                         "spec": {"selector": {"matchLabels": base}}})
            owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"{name}-rs", "controller": True}
        for r in range(size):
            labels = dict(base)
            for key in extra_keys:  # drawn per pod: the pods of one workload differ
                labels[key] = {"tier": rng.choice(["fe", "be", "data"]), "version": rng.choice(["v1", "v2", "v3"]),
                               "track": rng.choice(["stable", "stable", "canary"]),
                               "shard": str(rng.randrange(4)), "release": rng.choice(["r1", "r2"])}[key]
            node = (n * 7919 + r) % nodes if kind == "DaemonSet" else n % nodes
            docs.append({"apiVersion": "v1", "kind": "Pod", "metadata": {
                "name": f"{name}-{r}", "namespace": ns, "labels": labels, "ownerReferences": [owner]},
                "spec": {"nodeName": f"node{node}", "containers": [{"name": "c", "ports": ports}]},
                "status": {"podIP": pod_ip(n, nodes, pods)}})
            pod_labels_seen[ns].append(labels)
            n += 1
        workloads[ns].append((name, base))
        w += 1

    def pod_selector(ns: str) -> dict[str, Any]:
        """A selector that picks some of a namespace's pods (by app, component, or an expression)."""
        seen = pod_labels_seen[ns] or [{"app": "none"}]
        labels = rng.choice(seen)
        if rng.random() < mix.match_expressions:
            key = rng.choice(sorted(labels))
            op = rng.choice(["In", "In", "NotIn", "Exists"])
            if op == "Exists":
                return {"matchExpressions": [{"key": key, "operator": "Exists"}]}
            values = sorted({labels[key], rng.choice(seen).get(key, labels[key])})
            expr = {"matchExpressions": [{"key": key, "operator": op, "values": values}]}
            if rng.random() < 0.3:
                expr["matchLabels"] = {"component": labels["component"]}
            return expr
        key = rng.choice(["app", "app", "component", *sorted(set(labels) - {"app", "component"})])
        return {"matchLabels": {key: labels[key]}}

    def ns_selector() -> dict[str, Any]:
        ns = rng.choice(ns_names)
        key = rng.choice(sorted(ns_labels[ns]))
        if rng.random() < 0.2:
            return {"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "staging"]}]}
        if rng.random() < 0.15:
            return {"matchLabels": {"kubernetes.io/metadata.name": ns}}
        return {"matchLabels": {key: ns_labels[ns][key]}}

    def peer(ns: str) -> dict[str, Any]:
        roll, (p_pods, p_ns, p_both, _) = rng.random(), mix.peer_kinds
        if roll < p_pods:
            return {"podSelector": pod_selector(ns)}
        if roll < p_pods + p_ns:
            return {"namespaceSelector": ns_selector()}
        if roll < p_pods + p_ns + p_both:
            other = rng.choice(ns_names)
            return {"namespaceSelector": ns_selector(), "podSelector": pod_selector(other)}
        cidr = rng.choice(["0.0.0.0/0", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                           f"10.{rng.randrange(16)}.0.0/16", f"192.168.{rng.randrange(256)}.0/24"])
        block: dict[str, Any] = {"cidr": cidr}
        net = ipaddress.IPv4Network(cidr)
        if rng.random() < mix.excepts and net.prefixlen < 24:
            subnets = list(net.subnets(new_prefix=min(net.prefixlen + 8, 28)))
            block["except"] = sorted({str(rng.choice(subnets)) for _ in range(rng.randint(1, 3))})
        return {"ipBlock": block}

    def ports(egress: bool) -> list[dict[str, Any]]:
        if rng.random() < mix.no_ports:
            return []
        out = []
        for _ in range(rng.choice([1, 1, 2, 3])):
            roll = rng.random()
            named = mix.named_ports * (1.5 if egress else 1.0)
            if roll < named:
                pname = rng.choice(sorted(PORT_NAMES))
                out.append({"protocol": "UDP", "port": pname} if pname == "dns" else {"port": pname})
            elif roll < named + mix.end_ports:
                low = rng.choice([8000, 9000, 30000, 10000 + rng.randrange(40000)])
                out.append({"port": low, "endPort": low + rng.choice([10, 99, 1000])})
            else:
                proto = rng.choice(["TCP", "TCP", "TCP", "UDP", "SCTP"])
                out.append({"protocol": proto, "port": rng.choice([53, 80, 443, 5432, 6379, 8080, 8443, 9090])})
        return out

    for p in range(policies):
        ns = ns_names[(p * 37) % namespaces]
        roll = rng.random()
        types = (["Ingress"] if roll < mix.ingress_only else ["Egress"]
                 if roll < mix.ingress_only + mix.egress_only else ["Ingress", "Egress"])
        spec: dict[str, Any] = {"podSelector": {} if rng.random() < 0.08 else pod_selector(ns),
                                "policyTypes": types}
        for direction, key, way in (("Ingress", "ingress", "from"), ("Egress", "egress", "to")):
            if direction not in types:
                continue
            rules = []
            for _ in range(rng.choice(mix.rules_per_direction)):
                rule: dict[str, Any] = {way: [peer(ns) for _ in range(rng.choice(mix.peers_per_rule))]}
                rule_ports = ports(direction == "Egress")
                if rule_ports:
                    rule["ports"] = rule_ports
                rules.append(rule)
            if rng.random() < 0.05:
                rules = []  # a default deny for that direction
            spec[key] = rules
        docs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                     "metadata": {"name": f"np{p}", "namespace": ns}, "spec": spec})
    return docs


def describe(docs: list[dict[str, Any]]) -> str:
    """A one-paragraph census of a generated cluster (what the README's tables state about it)."""
    kinds: dict[str, int] = {}
    for d in docs:
        kinds[d["kind"]] = kinds.get(d["kind"], 0) + 1
    only_in = only_out = both = rules = peers = named = ranges = 0
    peer_kinds = {"podSelector": 0, "namespaceSelector": 0, "both": 0, "ipBlock": 0}
    for d in docs:
        if d["kind"] != "NetworkPolicy":
            continue
        spec = d["spec"]
        types = spec.get("policyTypes", ["Ingress"])
        if types == ["Ingress"]:
            only_in += 1
        elif types == ["Egress"]:
            only_out += 1
        else:
            both += 1
        for key, way in (("ingress", "from"), ("egress", "to")):
            for rule in spec.get(key, ()):
                rules += 1
                for p in rule.get(way, ()):
                    peers += 1
                    if "ipBlock" in p:
                        peer_kinds["ipBlock"] += 1
                    elif "namespaceSelector" in p and "podSelector" in p:
                        peer_kinds["both"] += 1
                    else:
                        peer_kinds[next(iter(p))] += 1
                for port in rule.get("ports", ()):
                    named += isinstance(port.get("port"), str)
                    ranges += "endPort" in port
    counts = ", ".join(f"{n:,} {k}" for k, n in sorted(kinds.items()))
    return (f"{counts}; policies: {only_in} ingress-only, {only_out} egress-only, {both} both; {rules} rules, "
            f"{peers} peers ({', '.join(f'{n} {k}' for k, n in peer_kinds.items())}); {named} named ports, "
            f"{ranges} endPort ranges")
