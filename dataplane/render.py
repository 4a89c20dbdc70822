"""Render one node's nftables ruleset from the policy IR.

The script holds generated identifiers, addresses formatted from `ipaddress` objects and integers: no
label, name or annotation value can reach it. Its shape is constant (a few rules per chain); policy lives
in sets keyed by (local pod, peer range, protocol range, port range), so per-packet cost does not grow
with pods, policies, EPGs or contracts.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import templates
from contracts.ir import NodeIR, PodIR, PolicyIR, Rules, disjoint
from contracts.sets import AddressSet

FAMILIES = ((4, "ip", "ipv4_addr", "IPv4"), (6, "ip6", "ipv6_addr", "IPv6"))
TABLE = "inet epgbridge"


@dataclass(frozen=True, slots=True)
class NftSet:
    name: str
    type: str
    interval: bool
    elements: tuple[str, ...]


def _addr(value: int, v: int) -> str:
    return str(ipaddress.IPv4Address(value) if v == 4 else ipaddress.IPv6Address(value))


def _span(lo: int, hi: int, fmt: Callable[[int], str] = str) -> str:
    return fmt(lo) if lo == hi else f"{fmt(lo)}-{fmt(hi)}"


def _ranges(addrs: AddressSet, v: int) -> tuple[tuple[int, int], ...]:
    return addrs.v4 if v == 4 else addrs.v6


def _rule_elements(pod: PodIR, rules: Rules, v: int) -> Iterator[str]:
    """(local pod . peer range . protocol range . port range), disjoint: the kernel refuses an element of a
    concatenated interval set that another element covers, so overlapping rules are first made disjoint."""
    if not rules or pod.ip.version != v:
        return
    local = str(pod.ip)
    for lo, hi, services in disjoint(rules, v):
        peer = _span(lo, hi, lambda x: _addr(x, v))
        for plo, phi, qlo, qhi in services.intervals():
            yield f"{local} . {peer} . {_span(plo, phi)} . {_span(qlo, qhi)}"


def _family_sets(ir: PolicyIR, node: NodeIR, v: int, addr_type: str) -> list[NftSet]:
    pods = [p for p in node.pods if p.ip.version == v]
    key = f"{addr_type} . {addr_type} . inet_proto . inet_service"

    def addresses(name: str, members: Iterable[PodIR]) -> NftSet:
        ips = sorted({p.ip for p in members})
        return NftSet(f"{name}_v{v}", addr_type, False, tuple(str(ip) for ip in ips))

    def rules(name: str, attr: str) -> NftSet:
        elements = {e for p in pods for e in _rule_elements(p, getattr(p, attr), v)}
        return NftSet(f"{name}_v{v}", key, True, tuple(sorted(elements)))

    # Addresses that are some pod's (a hash set: a new pod is one element) or in some EPG's subnets (intervals);
    # all others pass the EPG layer (the IR's epg_open).
    pod_ips = tuple(_addr(a, v) for lo, hi in _ranges(ir.epg_pods, v) for a in range(lo, hi + 1))
    subnets = tuple(_span(lo, hi, lambda x: _addr(x, v)) for lo, hi in _ranges(ir.epg_subnets, v))
    return [
        addresses("local", pods),
        addresses("epg_isolated", (p for p in pods if p.epg_isolated)),
        NftSet(f"epg_pods_v{v}", addr_type, False, pod_ips),
        NftSet(f"epg_subnets_v{v}", addr_type, True, subnets),
        rules("epg_in", "ingress_epg"),
        rules("epg_out", "egress_epg"),
        addresses("np_in_open", (p for p in pods if p.ingress_netpol is None)),
        addresses("np_out_open", (p for p in pods if p.egress_netpol is None)),
        rules("np_in", "ingress_netpol"),
        rules("np_out", "egress_netpol"),
    ]


def node_sets(ir: PolicyIR, node: NodeIR) -> list[NftSet]:
    """Every set of the node's table with its elements, sorted: the whole state an apply must reach."""
    return [s for v, _, addr_type, _ in FAMILIES for s in _family_sets(ir, node, v, addr_type)]


def render_script(sets: list[NftSet], *, replace: bool = True) -> str:
    """The full table: with `replace`, one transaction that creates, deletes and re-creates it atomically."""
    families = [{"v": f"v{v}", "ip": ip, "label": label} for v, ip, _, label in FAMILIES]
    return templates.render("nft_node.j2", sets=sets, families=families, replace=replace)


def render_node(ir: PolicyIR, node: str) -> str:
    """The nft script that replaces this node's table (a node without pods gets the empty policy)."""
    return render_script(node_sets(ir, ir.nodes.get(node, NodeIR(node, ()))))
