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
# A service set gets a chain when at least this many peers on the node use it (and it is among the
# MAX_SERVICE_CHAINS most used); the other peers' services are written out as (peer . protocol . port) tuples
# in their class's sets, so that odd inputs (every peer its own port) cannot make thousands of chains.
SERVICE_SHARE = 4
MAX_SERVICE_CHAINS = 512

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
    """The local pods of one class and its chain: the peer's address looks up the service chain it may use
    (maps `name` and `name_r`), or (peer . protocol . port) is looked up in the tuple sets (`_t`, `_tr`)."""

    name: str
    kind: str  # one of KINDS' names
    ip: str  # "ip" | "ip6"
    peer: str  # "saddr" | "daddr"
    verdict: str  # what a tuple match does
    sets: tuple[NftSet, NftSet, NftSet, NftSet]
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
            yield from c.sets
        for svc in self.services:
            yield svc.set

    @staticmethod
    def build(ir: PolicyIR, node: NodeIR, previous: Table | None = None, state: RenderState | None = None) -> Table:
        """The table for `node`. `previous`: the table now applied, whose class numbers are kept where they
        still fit. `state`: what earlier builds rendered (the state must have built `previous`)."""
        state = state if state is not None else RenderState()
        old = defaultdict(list)
        for c in previous.classes if previous is not None else ():
            old[(c.kind, c.ip)].append(c)
        sets: list[NftSet] = []
        classes: list[NftClass] = []
        for v, ip, addr_type, _ in FAMILIES:
            pods = sorted((p for p in node.pods if p.ip.version == v), key=lambda p: p.ip)
            sets += _fixed_sets(ir, pods, v, addr_type)
            kinds = [_Kind(kind, peer, f"{verdict}_v{v}" if verdict.startswith("goto") else verdict,
                           _groups(pods, attr, v, state)) for kind, attr, peer, verdict in KINDS]
            state.choose_services(kinds, v)
            for k in kinds:
                vmap, shared, own = _classify(k, v, ip, addr_type, old[(k.name, ip)], state)
                sets += (vmap, *shared)
                classes += own
        return Table(tuple(sets), tuple(classes), state.turn())


@dataclass(frozen=True, slots=True)
class _Peers:
    """A class's peers in disjoint form: (address or range text, is a range, services), and the services with
    how many addresses use them."""

    entries: tuple[tuple[str, bool, ServiceSet], ...]
    uses: tuple[tuple[ServiceSet, int], ...]


@dataclass(frozen=True, slots=True)
class _Group:
    rules: Rules
    members: list[str]
    peers: _Peers

    @property
    def own(self) -> bool:
        """Worth a chain and sets of its own (rather than rows in class 0's)."""
        return (len(self.members) - 1) * len(self.peers.entries) >= OWN_CLASS_SAVES


@dataclass(frozen=True, slots=True)
class _Kind:
    name: str
    peer: str
    verdict: str
    groups: list[_Group]


class RenderState:
    """What a node's renderer keeps between builds: the numbers of its service chains, and each class's
    peers (in disjoint form, and as map and set elements), so that an update renders only the classes whose
    rules changed. Each `turn()` (the end of a build) forgets what that build did not use."""

    def __init__(self) -> None:
        self._peers: dict[tuple[Rules, int], _Peers] = {}
        self._peers_used: dict[tuple[Rules, int], _Peers] = {}
        self._elements: dict[tuple[object, ...], tuple[tuple[str, ...], ...]] = {}
        self._elements_used: dict[tuple[object, ...], tuple[tuple[str, ...], ...]] = {}
        # (services, family, verdict) -> number; numbers are never reused: a service chain's name always means
        # the same services and verdict, even after a failed transaction left an older table in the kernel.
        self._numbers: dict[tuple[ServiceSet, int, str], int] = {}
        self._next = 1
        self._chained: dict[tuple[ServiceSet, int, str], int] = {}

    def peers(self, rules: Rules, v: int) -> _Peers:
        key = (rules, v)
        found = self._peers_used.get(key) or self._peers.get(key)
        if found is None:
            entries = []
            uses: dict[ServiceSet, int] = defaultdict(int)
            for lo, hi, services in disjoint(rules, v):
                uses[services] += hi - lo + 1 if hi - lo < SHORT_RUN else 1
                if hi - lo < SHORT_RUN:
                    entries += ((_addr(a, v), False, services) for a in range(lo, hi + 1))
                else:
                    entries.append((f"{_addr(lo, v)}-{_addr(hi, v)}", True, services))
            found = _Peers(tuple(entries), tuple(uses.items()))
        self._peers_used[key] = found
        return found

    def choose_services(self, kinds: list[_Kind], v: int) -> None:
        """Which service sets of this family get a chain: the most used ones, as many peers as it takes."""
        uses: dict[tuple[ServiceSet, int, str], int] = defaultdict(int)
        for k in kinds:
            for g in k.groups:
                times = 1 if g.own else len(g.members)
                for services, n in g.peers.uses:
                    if not services.is_all:
                        uses[(services, v, k.verdict)] += n * times
        ranked = sorted((key for key, n in uses.items() if n >= SERVICE_SHARE),
                        key=lambda key: (-uses[key], self._numbers.get(key, self._next)))
        for key in ranked[:MAX_SERVICE_CHAINS]:
            number = self._numbers.get(key)
            if number is None:
                number, self._next = self._next, self._next + 1
                self._numbers[key] = number
            self._chained[key] = number

    def elements(self, group: _Group, v: int, verdict: str) -> tuple[tuple[str, ...], ...]:
        """The group's (exact map, range map, tuple set, ranged tuple set) elements, peers first."""
        numbers = tuple(self._chained.get((s, v, verdict)) for s, _ in group.peers.uses)
        key = (group.rules, v, verdict, numbers)
        found = self._elements_used.get(key) or self._elements.get(key)
        if found is None:
            chain = {s: n for (s, _), n in zip(group.peers.uses, numbers, strict=True)}
            out: tuple[list[str], list[str], list[str], list[str]] = ([], [], [], [])
            for peer, is_range, services in group.peers.entries:
                number = chain[services]
                if services.is_all or number is not None:
                    go = verdict if services.is_all else f"goto svc_{number}_v{v}"
                    out[1 if is_range else 0].append(f"{peer} : {go}")
                    continue
                for plo, phi, qlo, qhi in services.intervals():
                    if is_range or plo != phi or qlo != qhi:
                        out[3].append(f"{peer} . {_span(plo, phi)} . {_span(qlo, qhi)}")
                    else:
                        out[2].append(f"{peer} . {plo} . {qlo}")
            found = tuple(tuple(x) for x in out)
        self._elements_used[key] = found
        return found

    def turn(self) -> tuple[NftServices, ...]:
        """End a build: the service chains its elements point to, by number."""
        self._peers, self._peers_used = self._peers_used, {}
        self._elements, self._elements_used = self._elements_used, {}
        used = {(s, v, verdict): n for (s, v, verdict), n in self._chained.items()}
        self._numbers = dict(used)  # forgotten ones get a new number if they come back
        self._chained = {}
        out = []
        for (services, v, verdict), number in sorted(used.items(), key=lambda kv: kv[1]):
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


def _sets(name: str, key: str, elements: tuple[tuple[str, ...], ...]) -> tuple[NftSet, NftSet, NftSet, NftSet]:
    tuples = f"{key} . inet_proto . inet_service"
    exact, ranged, exact_tuples, ranged_tuples = elements
    return (NftSet(name, key, False, exact, map="verdict"), NftSet(f"{name}_r", key, True, ranged, map="verdict"),
            NftSet(f"{name}_t", tuples, False, exact_tuples), NftSet(f"{name}_tr", tuples, True, ranged_tuples))


def _groups(pods: list[PodIR], attr: str, v: int, state: RenderState) -> list[_Group]:
    """The local pods of one layer and direction grouped by equal rules (pods the layer leaves open: none)."""
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
    return [_Group(rules, members, state.peers(rules, v)) for rules, members in groups.items()]


def _classify(kind: _Kind, v: int, ip: str, addr_type: str, old: list[NftClass], state: RenderState
              ) -> tuple[NftSet, tuple[NftSet, ...], list[NftClass]]:
    """One layer and direction: its verdict map (local pod -> its class's chain, or drop where the layer allows
    it nothing; pods the layer leaves open are not in it), the shared sets of the small classes (class 0, keyed
    by local pod too), and the classes of their own."""
    verdicts: dict[str, str] = {}
    shared: tuple[list[str], list[str], list[str], list[str]] = ([], [], [], [])
    classes: list[NftClass] = []
    taken: set[str] = set()
    by_member = {m: c for c in old for m in c.members}
    by_elements = {tuple(m.elements for m in c.sets): c for c in old}
    next_id = max((_number(c.name) for c in old), default=0) + 1
    for group in kind.groups:
        members = group.members
        if not group.peers.entries:
            verdicts.update(dict.fromkeys(members, "drop"))
            continue
        elements = state.elements(group, v, kind.verdict)
        if not group.own:
            # Too small to be worth a chain and sets of its own: its pods' peers go to the shared sets,
            # keyed by the local pod's address too.
            for into, part in zip(shared, elements, strict=True):
                into.extend(f"{m} . {e}" for m in members for e in part)
            verdicts.update(dict.fromkeys(members, f"goto {kind.name}_0_v{v}"))
            continue
        mine = frozenset(members)
        # Keep the number of the previous class that shares the most of these pods (else: the same elements).
        candidates = {c.name: c for m in members if (c := by_member.get(m)) is not None and c.name not in taken}
        best = max(candidates.values(), key=lambda c: (len(c.members & mine), -_number(c.name)), default=None)
        same = by_elements.get(elements)
        if best is None and same is not None and same.name not in taken:
            best = same
        if best is not None:
            name = best.name
        else:
            name = f"{kind.name}_{next_id}_v{v}"
            next_id += 1
        taken.add(name)
        classes.append(NftClass(name, kind.name, ip, kind.peer, kind.verdict, _sets(name, addr_type, elements), mine))
        verdicts.update(dict.fromkeys(members, f"goto {name}"))
    classes.sort(key=lambda c: _number(c.name))
    entries = tuple(f"{a} : {verdicts[a]}" for a in sorted(verdicts, key=ipaddress.ip_address))
    zero = _sets(f"{kind.name}_0_v{v}", f"{addr_type} . {addr_type}", tuple(tuple(sorted(x)) for x in shared))
    return NftSet(f"{kind.name}_v{v}", addr_type, False, entries, map="verdict"), zero, classes


def node_table(ir: PolicyIR, node: str) -> Table:
    return Table.build(ir, ir.nodes.get(node, NodeIR(node, ())))


def _families() -> list[dict[str, str]]:
    return [{"v": f"v{v}", "ip": ip, "label": label} for v, ip, _, label in FAMILIES]


def render_script(table: Table, *, replace: bool = True) -> str:
    """The full table: with `replace`, one transaction that creates, deletes and re-creates it atomically."""
    kinds = [{"name": name, "peer": peer, "local": "daddr" if peer == "saddr" else "saddr", "verdict": verdict}
             for name, _, peer, verdict in KINDS]
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
