"""Render one node's nftables ruleset from the policy IR.

The script holds generated identifiers, addresses formatted from `ipaddress` objects and integers: no
label, name or annotation value can reach it.

Shape: the local pods of a node fall into *classes*, pods whose rules for one layer and direction are equal
(the pods of one EPG; the pods the same NetworkPolicies select). A verdict map sends a packet from the local
pod's address to its class's chain. There a second verdict map, keyed by the peer's address, sends it on to
the chain of the services that peer may use (a set of (protocol . port) boxes, one chain per distinct set and
verdict on the node), or straight on where the peer may use everything. Classes too small to be worth a chain
share one (class 0), whose maps are keyed by (local pod . peer).

So a packet meets a constant handful of rules and hash lookups whatever the number of pods, policies, EPGs
or contracts; a class's peers are written once, not once per pod and service; a pod that joins a class is one
map element and a new peer one element per class that admits it, all in hash maps that nft updates without
reading them back. Only CIDRs and long runs of addresses go to interval maps. Class and service numbers are
kept across updates (`RenderState`), so that an update stays an element update.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import templates
from contracts.ir import NodeIR, PodIR, PolicyIR, Rules, disjoint
from contracts.sets import AddressSet, ServiceSet

# A class gets a chain and maps of its own when that saves this many elements over the shared maps (where each
# pod's peers are written out with its address): few chains and sets are what nft and the kernel load fastest.
OWN_CLASS_SAVES = 64
# Runs of at most this many addresses are written address by address (hash maps), longer ones as ranges.
SHORT_RUN = 16

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
    """The local pods of one class: a chain that looks the peer up in the class's two maps (same name, and
    `_r` for ranges)."""

    name: str
    kind: str  # one of KINDS' names
    ip: str  # "ip" | "ip6"
    peer: str  # "saddr" | "daddr"
    maps: tuple[NftSet, NftSet]
    members: frozenset[str]  # local pod addresses, to keep class numbers stable across updates


@dataclass(frozen=True, slots=True)
class NftServices:
    """A chain (and its set, same name) that lets the (protocol . port) boxes of one service set through
    with one verdict, and drops the rest."""

    name: str
    verdict: str
    set: NftSet


@dataclass(frozen=True, slots=True)
class Table:
    """One node's whole table: fixed sets and maps (template order), the classes and the service chains."""

    sets: tuple[NftSet, ...]
    classes: tuple[NftClass, ...]
    services: tuple[NftServices, ...] = ()

    @property
    def elements(self) -> int:
        return sum(len(s.elements) for s in self.all_sets())

    def all_sets(self) -> Iterator[NftSet]:
        yield from self.sets
        for c in self.classes:
            yield from c.maps
        for svc in self.services:
            yield svc.set

    @staticmethod
    def build(ir: PolicyIR, node: NodeIR, previous: Table | None = None, state: RenderState | None = None) -> Table:
        """The table for `node`. `previous`: the table now applied, whose class numbers are kept where they
        still fit. `state`: service numbers and rendered peers kept from earlier builds (the same state must
        come with the same `previous`)."""
        state = state if state is not None else RenderState()
        sets: list[NftSet] = []
        classes: list[NftClass] = []
        old = defaultdict(list)
        for c in previous.classes if previous is not None else ():
            old[(c.kind, c.ip)].append(c)
        for v, ip, addr_type, _ in FAMILIES:
            pods = sorted((p for p in node.pods if p.ip.version == v), key=lambda p: p.ip)
            sets += _fixed_sets(ir, pods, v, addr_type)
            for kind, attr, peer, verdict in KINDS:
                go = f"{verdict}_v{v}" if verdict.startswith("goto") else verdict
                vmap, shared, kind_classes = _classify(pods, kind, attr, v, ip, peer, go, addr_type,
                                                       old[(kind, ip)], state)
                sets += (vmap, *shared)
                classes += kind_classes
        services = state.turn()
        return Table(tuple(sets), tuple(classes), services)


@dataclass(frozen=True, slots=True)
class _Peers:
    exact: tuple[str, ...]
    ranged: tuple[str, ...]
    services: tuple[ServiceSet, ...]


class RenderState:
    """What a node's renderer keeps between builds: the numbers of its service chains, and each class's
    rendered peers by (rules, family, verdict), so that an update renders only the classes whose rules changed.
    Each `turn()` (the end of a build) forgets what that build did not use."""

    def __init__(self) -> None:
        self._services: dict[tuple[ServiceSet, int, str], int] = {}
        self._used_services: dict[tuple[ServiceSet, int, str], int] = {}
        self._next = 1
        self._kept: dict[tuple[Rules, int, str], _Peers] = {}
        self._used: dict[tuple[Rules, int, str], _Peers] = {}

    def service(self, services: ServiceSet, v: int, verdict: str) -> str:
        """The verdict that sends a packet on to the chain of these services."""
        if services.is_all:
            return verdict
        key = (services, v, verdict)
        number = self._used_services.get(key) or self._services.get(key)
        if number is None:
            number, self._next = self._next, self._next + 1
        self._used_services[key] = number
        return f"goto svc_{number}_v{v}"

    def peers(self, rules: Rules, v: int, verdict: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """A class's map elements, (exact peers, ranges): `peer : verdict`."""
        key = (rules, v, verdict)
        found = self._used.get(key)
        if found is None:
            found = self._kept.get(key)
            if found is None:
                found = self._render(rules, v, verdict)
            else:  # kept from the last build: its service chains are in use again, under the same numbers
                for services in found.services:
                    self.service(services, v, verdict)
            self._used[key] = found
        return found.exact, found.ranged

    def _render(self, rules: Rules, v: int, verdict: str) -> _Peers:
        exact: list[str] = []
        ranged: list[str] = []
        used: set[ServiceSet] = set()
        for lo, hi, services in disjoint(rules, v):
            go = self.service(services, v, verdict)
            used.add(services)
            if hi - lo < SHORT_RUN:
                exact += (f"{_addr(a, v)} : {go}" for a in range(lo, hi + 1))
            else:
                ranged.append(f"{_addr(lo, v)}-{_addr(hi, v)} : {go}")
        return _Peers(tuple(exact), tuple(ranged), tuple(used))

    def turn(self) -> tuple[NftServices, ...]:
        """End a build: the service chains it uses, by number."""
        self._kept, self._used = self._used, {}
        self._services, self._used_services = self._used_services, {}
        # Numbers are never reused: a service chain's name always means the same services and verdict, even
        # when a transaction failed and the table in the kernel is older than this state.
        out = []
        for (services, v, verdict), number in sorted(self._services.items(), key=lambda kv: kv[1]):
            elements = tuple(f"{_span(plo, phi)} . {_span(qlo, qhi)}" for plo, phi, qlo, qhi in services.intervals())
            name = f"svc_{number}_v{v}"
            out.append(NftServices(name, verdict, NftSet(name, "inet_proto . inet_service", True, elements)))
        return tuple(out)


def _addr(value: int, v: int) -> str:
    return str(ipaddress.IPv4Address(value) if v == 4 else ipaddress.IPv6Address(value))


def _span(lo: int, hi: int, fmt: Callable[[int], str] = str) -> str:
    return fmt(lo) if lo == hi else f"{fmt(lo)}-{fmt(hi)}"


def _ranges(addrs: AddressSet, v: int) -> tuple[tuple[int, int], ...]:
    return addrs.v4 if v == 4 else addrs.v6


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


def _number(name: str) -> int:
    return int(name.split("_")[2])  # "epg_in_3_v4" -> 3


def _maps(name: str, key: str, exact: tuple[str, ...], ranged: tuple[str, ...]) -> tuple[NftSet, NftSet]:
    return (NftSet(name, key, False, exact, map="verdict"), NftSet(f"{name}_r", key, True, ranged, map="verdict"))


def _classify(pods: list[PodIR], kind: str, attr: str, v: int, ip: str, peer: str, verdict: str, addr_type: str,
              old: list[NftClass], state: RenderState) -> tuple[NftSet, tuple[NftSet, ...], list[NftClass]]:
    """One layer and direction: its verdict map (local pod -> its class's chain, or drop where the layer allows
    it nothing; pods the layer leaves open are not in it), the shared maps of the small classes (class 0, keyed
    by local pod too), and the classes of their own."""
    # Pods share their rules objects (the IR's pods of one EPG do): group by identity first, so that each
    # distinct object is hashed once, then merge equal rules.
    by_id: dict[int, tuple[Rules, list[str]]] = {}
    for p in pods:
        rules = getattr(p, attr)
        if rules is not None:
            by_id.setdefault(id(rules), (rules, []))[1].append(str(p.ip))
    groups: dict[Rules, list[str]] = {}
    for rules, members in by_id.values():
        groups.setdefault(rules, []).extend(members)

    verdicts: dict[str, str] = {}
    shared: tuple[list[str], list[str]] = ([], [])
    classes: list[NftClass] = []
    taken: set[str] = set()
    by_member = {m: c for c in old for m in c.members}
    by_elements = {tuple(m.elements for m in c.maps): c for c in old}
    next_id = max((_number(c.name) for c in old), default=0) + 1
    for rules, members in groups.items():
        exact, ranged = state.peers(rules, v, verdict)
        size = len(exact) + len(ranged)
        if not size:
            verdicts.update(dict.fromkeys(members, "drop"))
            continue
        if (len(members) - 1) * size < OWN_CLASS_SAVES:
            # Too small to be worth a chain and maps of its own: its pods' peers go to the shared maps,
            # keyed by the local pod's address too.
            shared[0].extend(f"{m} . {e}" for m in members for e in exact)
            shared[1].extend(f"{m} . {e}" for m in members for e in ranged)
            verdicts.update(dict.fromkeys(members, f"goto {kind}_0_v{v}"))
            continue
        mine = frozenset(members)
        # Keep the number of the previous class that shares the most of these pods (else: the same elements).
        candidates = {c.name: c for m in members if (c := by_member.get(m)) is not None and c.name not in taken}
        best = max(candidates.values(), key=lambda c: (len(c.members & mine), -_number(c.name)), default=None)
        same = by_elements.get((exact, ranged))
        if best is None and same is not None and same.name not in taken:
            best = same
        if best is not None:
            name = best.name
        else:
            name = f"{kind}_{next_id}_v{v}"
            next_id += 1
        taken.add(name)
        classes.append(NftClass(name, kind, ip, peer, _maps(name, addr_type, exact, ranged), mine))
        verdicts.update(dict.fromkeys(members, f"goto {name}"))
    classes.sort(key=lambda c: _number(c.name))
    entries = tuple(f"{a} : {verdicts[a]}" for p in pods if (a := str(p.ip)) in verdicts)
    zero = _maps(f"{kind}_0_v{v}", f"{addr_type} . {addr_type}", tuple(sorted(shared[0])), tuple(sorted(shared[1])))
    return NftSet(f"{kind}_v{v}", addr_type, False, entries, map="verdict"), zero, classes


def node_table(ir: PolicyIR, node: str) -> Table:
    return Table.build(ir, ir.nodes.get(node, NodeIR(node, ())))


def _families() -> list[dict[str, str]]:
    return [{"v": f"v{v}", "ip": ip, "label": label} for v, ip, _, label in FAMILIES]


def render_script(table: Table, *, replace: bool = True) -> str:
    """The full table: with `replace`, one transaction that creates, deletes and re-creates it atomically."""
    kinds = [{"name": name, "peer": peer, "local": "daddr" if peer == "saddr" else "saddr"}
             for name, _, peer, _ in KINDS]
    return templates.render("nft_node.j2", table=table, families=_families(), kinds=kinds, replace=replace)


def render_changes(added: list[NftClass], services: list[NftServices], elements: list[str],
                   removed: list[NftClass], unused: list[NftServices]) -> str:
    """An update of a live table in one transaction: new service chains and classes (chains, sets and
    elements), element changes (`add element ...` / `delete element ...` lines, deletions first), then the
    classes and service chains nothing refers to any more."""
    return templates.render("nft_update.j2", added=added, services=services, elements=elements, removed=removed,
                            unused=unused, table_name=TABLE)


def render_node(ir: PolicyIR, node: str) -> str:
    """The nft script that replaces this node's table (a node without pods gets the empty policy)."""
    return render_script(node_table(ir, node))
