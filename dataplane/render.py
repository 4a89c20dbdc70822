"""Render one node's nftables ruleset from the policy IR.

The script holds generated identifiers, addresses formatted from `ipaddress` objects and integers: no
label, name or annotation value can reach it.

Shape: the local pods of a node fall into *classes*, pods whose rules for one layer and direction are equal
(the pods of one EPG; the pods the same NetworkPolicies select). A verdict map sends a packet from the local
pod's address to its class's chain, which matches (peer, protocol, port) against the class's own set. So a
packet meets a constant handful of rules and hash lookups whatever the number of pods, policies, EPGs or
contracts; a class's elements are written once, not once per pod; and a pod that joins a class is one map
element. Classes are numbered per node; `Table.build` keeps the numbers of a previous table where the same
pods still share rules, so an update stays an element delta.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import templates
from contracts.ir import NodeIR, PodIR, PolicyIR, Rules, disjoint
from contracts.sets import AddressSet

# A class gets a chain and a set of its own when that saves this many elements over the shared set (where each
# pod's rules are written out with its address): few, large sets are what nft and the kernel load fastest.
OWN_CLASS_SAVES = 16

FAMILIES = ((4, "ip", "ipv4_addr", "IPv4"), (6, "ip6", "ipv6_addr", "IPv6"))
TABLE = "inet epgbridge"

# Per layer and direction: the IR attribute, the peer's address field, and where a match goes (the EPG layer
# hands over to the NetworkPolicy layer; a NetworkPolicy match returns to the base chain: both layers passed).
KINDS = (
    ("epg_in", "ingress_epg", "saddr", "goto ingress_np"),
    ("epg_out", "egress_epg", "daddr", "goto egress_np"),
    ("np_in", "ingress_netpol", "saddr", "return"),
    ("np_out", "egress_netpol", "daddr", "return"),
)


@dataclass(frozen=True, slots=True)
class NftSet:
    name: str
    type: str
    interval: bool
    elements: tuple[str, ...]
    map: str | None = None  # a map's value type ("verdict"); None for a plain set


@dataclass(frozen=True, slots=True)
class NftClass:
    """The local pods of one class: a chain matching the peer against the class's set (same name)."""

    name: str
    kind: str  # one of KINDS' names
    ip: str  # "ip" | "ip6"
    peer: str  # "saddr" | "daddr"
    verdict: str  # what a match does
    set: NftSet
    members: frozenset[str]  # local pod addresses, to keep class numbers stable across updates


class ElementCache:
    """Rendered class elements by (rules, family): an update renders only the classes whose rules changed.
    `turn()` keeps what the last build used and forgets the rest."""

    def __init__(self) -> None:
        self._kept: dict[tuple[Rules, int], tuple[str, ...]] = {}
        self._used: dict[tuple[Rules, int], tuple[str, ...]] = {}

    def elements(self, rules: Rules, v: int) -> tuple[str, ...]:
        key = (rules, v)
        found = self._used.get(key)
        if found is None:
            found = self._kept.get(key)
            if found is None:
                found = class_elements(rules, v)
            self._used[key] = found
        return found

    def turn(self) -> None:
        self._kept, self._used = self._used, {}


@dataclass(frozen=True, slots=True)
class Table:
    """One node's whole table: fixed sets and maps (template order) and the classes."""

    sets: tuple[NftSet, ...]
    classes: tuple[NftClass, ...]

    @property
    def elements(self) -> int:
        return sum(len(s.elements) for s in self.all_sets())

    def all_sets(self) -> Iterator[NftSet]:
        yield from self.sets
        for c in self.classes:
            yield c.set

    @staticmethod
    def build(ir: PolicyIR, node: NodeIR, previous: Table | None = None, cache: ElementCache | None = None) -> Table:
        """The table for `node`. `previous`: the table now applied, whose class numbers are kept where they
        still fit. `cache`: rendered class elements kept from earlier builds."""
        sets: list[NftSet] = []
        classes: list[NftClass] = []
        old = defaultdict(list)
        for c in previous.classes if previous is not None else ():
            old[(c.kind, c.ip)].append(c)
        cache = cache if cache is not None else ElementCache()
        for v, ip, addr_type, _ in FAMILIES:
            pods = sorted((p for p in node.pods if p.ip.version == v), key=lambda p: p.ip)
            sets += _fixed_sets(ir, pods, v, addr_type)
            for kind, attr, peer, verdict in KINDS:
                vmap, shared, kind_classes = _classify(pods, kind, attr, v, ip, peer, f"{verdict}_v{v}"
                                               if verdict.startswith("goto") else verdict, addr_type,
                                               old[(kind, ip)], cache)
                sets += (vmap, shared)
                classes += kind_classes
        return Table(tuple(sets), tuple(classes))


def _addr(value: int, v: int) -> str:
    return str(ipaddress.IPv4Address(value) if v == 4 else ipaddress.IPv6Address(value))


def _span(lo: int, hi: int, fmt: Callable[[int], str] = str) -> str:
    return fmt(lo) if lo == hi else f"{fmt(lo)}-{fmt(hi)}"


def _ranges(addrs: AddressSet, v: int) -> tuple[tuple[int, int], ...]:
    return addrs.v4 if v == 4 else addrs.v6


def class_elements(rules: Rules, v: int) -> tuple[str, ...]:
    """(peer range . protocol range . port range), disjoint: the kernel refuses an element of a concatenated
    interval set that another element covers, so overlapping rules are first made disjoint."""
    out = []
    for lo, hi, services in disjoint(rules, v):
        peer = _span(lo, hi, lambda x: _addr(x, v))
        for plo, phi, qlo, qhi in services.intervals():
            out.append(f"{peer} . {_span(plo, phi)} . {_span(qlo, qhi)}")
    return tuple(sorted(out))


def _fixed_sets(ir: PolicyIR, pods: list[PodIR], v: int, addr_type: str) -> list[NftSet]:
    # Addresses that are some pod's (a hash set: a new pod is one element) or in some EPG's subnets (intervals);
    # all others pass the EPG layer (the IR's epg_open).
    pod_ips = tuple(_addr(a, v) for lo, hi in _ranges(ir.epg_pods, v) for a in range(lo, hi + 1))
    subnets = tuple(_span(lo, hi, lambda x: _addr(x, v)) for lo, hi in _ranges(ir.epg_subnets, v))
    return [
        NftSet(f"local_v{v}", addr_type, False, tuple(str(p.ip) for p in pods)),
        NftSet(f"epg_isolated_v{v}", addr_type, False, tuple(str(p.ip) for p in pods if p.epg_isolated)),
        NftSet(f"epg_pods_v{v}", addr_type, False, pod_ips),
        NftSet(f"epg_subnets_v{v}", addr_type, True, subnets),
    ]


def _classify(pods: list[PodIR], kind: str, attr: str, v: int, ip: str, peer: str, verdict: str, addr_type: str,
              old: list[NftClass], cache: ElementCache) -> tuple[NftSet, NftSet, list[NftClass]]:
    """One layer and direction: its verdict map (local pod -> its class's chain, or drop where the layer allows
    it nothing; pods the layer leaves open are not in it), the shared set of the small classes (class 0, keyed
    by local pod too), and the classes of their own."""
    groups: dict[Rules, list[str]] = {}
    for p in pods:
        rules = getattr(p, attr)
        if rules is not None:
            groups.setdefault(rules, []).append(str(p.ip))
    verdicts: dict[str, str] = {}
    shared: list[str] = []
    classes: list[NftClass] = []
    taken: set[str] = set()
    by_member = {m: c for c in old for m in c.members}
    by_elements = {c.set.elements: c for c in old}
    next_id = max((_number(c.name) for c in old), default=0) + 1
    for rules, members in groups.items():
        if not rules:
            verdicts.update(dict.fromkeys(members, "drop"))
            continue
        elements = cache.elements(rules, v)
        if not elements:
            verdicts.update(dict.fromkeys(members, "drop"))
            continue
        if (len(members) - 1) * len(elements) < OWN_CLASS_SAVES:
            # Too small to be worth a chain and a set of its own: its pods' rules go to the shared set,
            # keyed by the local pod's address too.
            shared += (f"{m} . {e}" for m in members for e in elements)
            verdicts.update(dict.fromkeys(members, f"goto {kind}_0_v{v}"))
            continue
        mine = frozenset(members)
        # Keep the number of the previous class that shares the most of these pods (else: the same elements).
        candidates = {c.name: c for m in members if (c := by_member.get(m)) is not None and c.name not in taken}
        best = max(candidates.values(), key=lambda c: (len(c.members & mine), -_number(c.name)), default=None)
        if best is None and (same := by_elements.get(elements)) is not None and same.name not in taken:
            best = same
        if best is not None:
            name = best.name
        else:
            name = f"{kind}_{next_id}_v{v}"
            next_id += 1
        taken.add(name)
        classes.append(NftClass(name, kind, ip, peer, verdict,
                                NftSet(name, f"{addr_type} . inet_proto . inet_service", True, elements), mine))
        verdicts.update(dict.fromkeys(members, f"goto {name}"))
    classes.sort(key=lambda c: _number(c.name))
    entries = tuple(f"{a} : {verdicts[a]}" for p in pods if (a := str(p.ip)) in verdicts)
    return (NftSet(f"{kind}_v{v}", addr_type, False, entries, map="verdict"),
            NftSet(f"{kind}_0_v{v}", f"{addr_type} . {addr_type} . inet_proto . inet_service", True,
                   tuple(sorted(shared))), classes)


def _number(name: str) -> int:
    return int(name.split("_")[2])  # "epg_in_3_v4" -> 3


def node_table(ir: PolicyIR, node: str) -> Table:
    return Table.build(ir, ir.nodes.get(node, NodeIR(node, ())))


def _families() -> list[dict[str, str]]:
    return [{"v": f"v{v}", "ip": ip, "label": label} for v, ip, _, label in FAMILIES]


def render_script(table: Table, *, replace: bool = True) -> str:
    """The full table: with `replace`, one transaction that creates, deletes and re-creates it atomically."""
    kinds = [{"name": name, "peer": peer, "local": "daddr" if peer == "saddr" else "saddr", "verdict": verdict}
             for name, _, peer, verdict in KINDS]
    return templates.render("nft_node.j2", table=table, families=_families(), kinds=kinds, replace=replace)


def render_changes(added: list[NftClass], elements: list[str], removed: list[NftClass]) -> str:
    """An update of a live table in one transaction: new classes (chain, set and elements), element changes
    (`add element ...` / `delete element ...` lines, deletions first), then the classes nothing refers to."""
    return templates.render("nft_update.j2", added=added, elements=elements, removed=removed, table_name=TABLE)


def render_node(ir: PolicyIR, node: str) -> str:
    """The nft script that replaces this node's table (a node without pods gets the empty policy)."""
    return render_script(node_table(ir, node))
