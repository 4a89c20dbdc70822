"""Render one node's nftables ruleset from the policy IR.

The script holds generated identifiers, addresses formatted from `ipaddress` objects and integers: no
label, name or annotation value can reach it.

Shape: the local pods of a node fall into *classes*, pods whose rules for one layer and direction are equal
(the pods of one EPG; the pods the same NetworkPolicies select). A verdict map sends a packet from the local
pod's address to its class's chain, which matches (peer, protocol, port) against the class's sets. Classes too
small to be worth a chain share one (class 0), whose sets carry the local pod's address as well.

Every class has three sets, so that lookups stay hash lookups wherever the policy allows: exact
(peer . protocol . port) tuples and peers allowed everything in hash sets; only true ranges (CIDRs, port
ranges, runs of more than a few addresses) in an interval set, whose lookup cost grows with its size. So a
packet meets a constant handful of rules and lookups whatever the number of pods, policies, EPGs or contracts;
a class's elements are written once, not once per pod; a pod that joins a class is one map element.

Only the local pods' map elements name chains: the kernel re-validates every chain a new element can reach,
so peers never point to chains (a peer update would cost a walk of the whole table). Classes are numbered
per node and kept across builds: an update (a pod added, removed or relabelled, a policy changed) only
changes set and map elements; which pods deserve a chain of their own is decided again when the agent
regroups (at start and periodically), which may add and remove class chains in one transaction.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import templates
from contracts.ir import NodeIR, PodIR, PolicyIR, Rules, disjoint
from contracts.sets import AddressSet, ServiceSet

# A class gets a chain and sets of its own when that saves this many elements over the shared sets (where each
# pod's rules are written out with its address): few chains and sets are what nft and the kernel load fastest.
OWN_CLASS_SAVES = 64
# Runs of at most this many addresses are written address by address (hash sets), longer ones as ranges.
SHORT_RUN = 16
# Peers allowed a port range (an endPort, a contract's "8000-8100") would be interval elements, and nft reads an
# interval set back before it deletes from it: so a class's most used such service sets get a slot of their
# own, a hash set of peers and a set of (protocol . port) ranges (one more rule in the class's chain each).
MAX_SLOTS = 4
SLOT_MIN_PEERS = 4

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
class Parts:
    """One class's rules as set elements: exact (peer . protocol . port) tuples, peers allowed everything,
    ranges (address ranges, port ranges, every protocol); and apart, the peers of each service set that has port
    ranges (`ported`), which go to a slot or, written out, to the tuples."""

    exact: tuple[str, ...] = ()
    any: tuple[str, ...] = ()
    ranges: tuple[str, ...] = ()
    ported: tuple[tuple[ServiceSet, tuple[str, ...]], ...] = ()

    def __len__(self) -> int:
        return len(self.exact) + len(self.any) + len(self.ranges) + sum(len(p) for _, p in self.ported)

    def slotted(self, slots: tuple[ServiceSet, ...]) -> Placed:
        """The elements with the peers of `slots` in their slots and every other ported peer written out."""
        exact, ranges = list(self.exact), list(self.ranges)
        peers: dict[ServiceSet, tuple[str, ...]] = {}
        for services, members in self.ported:
            if services in slots:
                peers[services] = members
                continue
            for plo, phi, qlo, qhi in services.intervals():
                if plo == phi and qlo == qhi:
                    exact += (f"{a} . {plo} . {qlo}" for a in members)
                else:
                    ranges += (f"{a} . {_span(plo, phi)} . {_span(qlo, qhi)}" for a in members)
        return Placed(tuple(sorted(exact)), self.any, tuple(sorted(ranges)),
                      tuple(peers.get(services, ()) for services in slots))

    def best_slots(self) -> tuple[ServiceSet, ...]:
        """The service sets worth a slot: the most used, by enough peers."""
        ranked = sorted((p for p in self.ported if len(p[1]) >= SLOT_MIN_PEERS), key=lambda p: -len(p[1]))
        return tuple(services for services, _ in ranked[:MAX_SLOTS])


@dataclass(frozen=True, slots=True)
class Placed:
    """A class's elements as they go to its sets."""

    exact: tuple[str, ...]
    any: tuple[str, ...]
    ranges: tuple[str, ...]
    slot_peers: tuple[tuple[str, ...], ...]

    def sets(self, name: str, addr_type: str, keys: int, slots: tuple[ServiceSet, ...] = ()) -> tuple[NftSet, ...]:
        """The class's sets, for `keys` address fields before (protocol . port): 1 for a class, 2 for class 0."""
        addrs = " . ".join([addr_type] * keys)
        out = [NftSet(name, f"{addrs} . inet_proto . inet_service", False, self.exact),
               NftSet(f"{name}_any", addrs, False, self.any),
               NftSet(f"{name}_r", f"{addrs} . inet_proto . inet_service", True, self.ranges)]
        for i, (services, peers) in enumerate(zip(slots, self.slot_peers, strict=True), 1):
            out.append(NftSet(f"{name}_p{i}", addrs, False, peers))
            out.append(NftSet(f"{name}_s{i}", "inet_proto . inet_service", True, tuple(
                f"{_span(plo, phi)} . {_span(qlo, qhi)}" for plo, phi, qlo, qhi in services.intervals())))
        return tuple(out)


@dataclass(frozen=True, slots=True)
class NftClass:
    """The local pods of one class and its chain, which matches the peer against the class's sets: `name`
    (exact tuples), `name_any`, `name_r` (ranges), and per slot `name_pN` (peers) with `name_sN` (services)."""

    name: str
    kind: str  # one of KINDS' names
    ip: str  # "ip" | "ip6"
    peer: str  # "saddr" | "daddr"
    verdict: str  # what a match does
    sets: tuple[NftSet, ...]  # exact, _any, _r, then each slot's _pN (peers) and _sN (services)
    members: frozenset[str]  # local pod addresses, to keep class numbers stable across updates
    slots: tuple[ServiceSet, ...] = ()

    @property
    def slot_numbers(self) -> range:
        return range(1, len(self.slots) + 1)


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
            yield from c.sets

    @staticmethod
    def build(ir: PolicyIR, node: NodeIR, previous: Table | None = None, state: RenderState | None = None,
              *, regroup: bool = True) -> Table:
        """The table for `node`. `previous`: the table now applied, whose class numbers are kept where they
        still fit. `state`: rendered class elements kept from earlier builds. Without `regroup` (an update of
        `previous`), the classes are the previous ones: pods move between them and their elements change,
        but no chain appears or goes (a pod whose rules fit no class gets rows in class 0)."""
        state = state if state is not None else RenderState()
        old = defaultdict(list)
        for c in previous.classes if previous is not None else ():
            old[(c.kind, c.ip)].append(c)
        sets: list[NftSet] = []
        classes: list[NftClass] = []
        for v, ip, addr_type, _ in FAMILIES:
            pods = sorted((p for p in node.pods if p.ip.version == v), key=lambda p: p.ip)
            fam = _Family(v, ip, addr_type, pods, [str(p.ip) for p in pods])
            sets += _fixed_sets(ir, fam, state)
            for kind, attr, peer, verdict in KINDS:
                layer = _Layer(kind, attr, peer, f"{verdict}_v{v}" if verdict.startswith("goto") else verdict)
                vmap, shared, own = _classify(fam, layer, old[(kind, ip)], state, previous is not None and not regroup)
                sets += (vmap, *shared)
                classes += own
        state.turn()
        return Table(tuple(sets), tuple(classes))


@dataclass(frozen=True, slots=True)
class _Family:
    v: int
    ip: str  # "ip" | "ip6"
    addr_type: str
    pods: list[PodIR]  # the local pods of this family, in address order
    local: list[str]  # their addresses, formatted


@dataclass(frozen=True, slots=True)
class _Layer:
    kind: str  # one of KINDS' names
    attr: str  # the PodIR attribute with its rules
    peer: str  # the peer's address field
    verdict: str  # what a match does


class RenderState:
    """Rendered class elements by (rules, family), kept between builds: an update renders only the classes
    whose rules changed. Each `turn()` (the end of a build) forgets what that build did not use."""

    def __init__(self) -> None:
        self._kept: dict[tuple[Any, ...], Any] = {}
        self._used: dict[tuple[Any, ...], Any] = {}

    def _memo(self, key: tuple[Any, ...], make: Callable[[], Any]) -> Any:
        found = self._used.get(key)
        if found is None:
            found = self._kept.get(key)
            if found is None:
                found = make()
            self._used[key] = found
        return found

    def parts(self, rules: Rules, v: int) -> Parts:
        return self._memo((rules, v), lambda: class_parts(rules, v))

    def placed(self, rules: Rules, v: int, slots: tuple[ServiceSet, ...]) -> Placed:
        return self._memo((rules, v, slots), lambda: self.parts(rules, v).slotted(slots))

    def rows(self, rules: Rules, v: int, members: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
        """A small class's rows in the shared sets: its elements, once per local pod."""
        def make() -> tuple[tuple[str, ...], ...]:
            placed = self.placed(rules, v, ())
            return tuple(tuple(f"{m} . {e}" for m in members for e in part)
                         for part in (placed.exact, placed.any, placed.ranges))
        return self._memo(("rows", rules, v, members), make)

    def addresses(self, ranges: tuple[tuple[int, int], ...], v: int) -> tuple[str, ...]:
        """Every address of some ranges, formatted (the cluster's pod addresses: formatted once)."""
        return self._memo(("addresses", ranges, v),
                          lambda: tuple(_addr(a, v) for lo, hi in ranges for a in range(lo, hi + 1)))

    def turn(self) -> None:
        self._kept, self._used = self._used, {}


def _addr(value: int, v: int) -> str:
    return str(ipaddress.IPv4Address(value) if v == 4 else ipaddress.IPv6Address(value))


def _span(lo: int, hi: int, fmt: Callable[[int], str] = str) -> str:
    return fmt(lo) if lo == hi else f"{fmt(lo)}-{fmt(hi)}"


def _ranges(addrs: AddressSet, v: int) -> tuple[tuple[int, int], ...]:
    return addrs.v4 if v == 4 else addrs.v6


def class_parts(rules: Rules, v: int) -> Parts:
    """The rules as (peer . protocol . port) elements, from their disjoint form (the kernel refuses an element
    of a concatenated interval set that another element covers): exact tuples and peers allowed everything,
    address by address where the run of addresses is short, and the rest as ranges; short runs of peers allowed
    port ranges apart, by service set (`Parts.ported`)."""
    exact: list[str] = []
    anything: list[str] = []
    ranged: list[str] = []
    ported: dict[ServiceSet, list[str]] = defaultdict(list)
    for lo, hi, services in disjoint(rules, v):
        short = hi - lo < SHORT_RUN
        peers = [_addr(a, v) for a in range(lo, hi + 1)] if short else []
        if short and services.is_all:
            anything += peers
            continue
        boxes = list(services.intervals())
        if short and any(qlo != qhi for _, _, qlo, qhi in boxes):
            ported[services] += peers
            continue
        for plo, phi, qlo, qhi in boxes:
            if short and plo == phi and qlo == qhi:
                exact += (f"{a} . {plo} . {qlo}" for a in peers)
            else:
                ranged.append(f"{_span(lo, hi, lambda x: _addr(x, v))} . {_span(plo, phi)} . {_span(qlo, qhi)}")
    return Parts(tuple(sorted(exact)), tuple(sorted(anything)), tuple(sorted(ranged)),
                 tuple((services, tuple(members)) for services, members in ported.items()))


def _fixed_sets(ir: PolicyIR, fam: _Family, state: RenderState) -> list[NftSet]:
    # Addresses that are some pod's (a hash set: a new pod is one element) or in some EPG's subnets (intervals);
    # all others pass the EPG layer (the IR's epg_open).
    v, addr_type = fam.v, fam.addr_type
    subnets = tuple(_span(lo, hi, lambda x: _addr(x, v)) for lo, hi in _ranges(ir.epg_subnets, v))
    isolated = tuple(a for p, a in zip(fam.pods, fam.local, strict=True) if p.epg_isolated)
    return [
        NftSet(f"local_v{v}", addr_type, False, tuple(fam.local)),
        NftSet(f"epg_isolated_v{v}", addr_type, False, isolated),
        NftSet(f"epg_pods_v{v}", addr_type, False, state.addresses(_ranges(ir.epg_pods, v), v)),
        NftSet(f"epg_subnets_v{v}", addr_type, True, subnets),
    ]


def _number(name: str) -> int:
    return int(name.split("_")[2])  # "epg_in_3_v4" -> 3


def _classify(fam: _Family, layer: _Layer, old: list[NftClass], state: RenderState,
              fixed: bool) -> tuple[NftSet, tuple[NftSet, ...], list[NftClass]]:
    """One layer and direction: its verdict map (local pod -> its class's chain, or drop where the layer allows
    it nothing; pods the layer leaves open are not in it), the shared sets of the small classes (class 0, keyed
    by local pod too), and the classes of their own. `fixed`: the classes are the old ones (an update)."""
    # Pods share their rules objects (the IR's pods of one EPG do): group by identity first, so that each
    # distinct object is hashed once, then merge equal rules.
    v, kind, addr_type = fam.v, layer.kind, fam.addr_type
    by_id: dict[int, tuple[Rules, list[str]]] = {}
    for p, address in zip(fam.pods, fam.local, strict=True):
        rules = getattr(p, layer.attr)
        if rules is not None:
            by_id.setdefault(id(rules), (rules, []))[1].append(address)
    groups: dict[Rules, list[str]] = {}
    for rules, members in by_id.values():
        groups.setdefault(rules, []).extend(members)

    verdicts: dict[str, str] = {}
    shared: tuple[list[str], list[str], list[str]] = ([], [], [])
    classes: list[NftClass] = []
    taken: set[str] = set()
    by_member = {m: c for c in old for m in c.members}
    by_elements = {tuple(s.elements for s in c.sets): c for c in old if not c.slots}
    next_id = max((_number(c.name) for c in old), default=0) + 1
    for rules, members in groups.items():
        parts = state.parts(rules, v)
        if not len(parts):
            verdicts.update(dict.fromkeys(members, "drop"))
            continue
        mine = frozenset(members)
        # The previous class that shares the most of these pods (else: one with the same elements).
        candidates = {c.name: c for m in members if (c := by_member.get(m)) is not None and c.name not in taken}
        best = max(candidates.values(), key=lambda c: (len(c.members & mine), -_number(c.name)), default=None)
        if best is None:  # else one without slots that has the very same elements
            unslotted = state.placed(rules, v, ())
            same = by_elements.get((unslotted.exact, unslotted.any, unslotted.ranges))
            if same is not None and same.name not in taken:
                best = same
        small = (len(members) - 1) * len(parts) < OWN_CLASS_SAVES
        if (best is None and fixed) or (small and not fixed):
            # No chain of its own (too small to be worth one, or an update, which adds no chain): its pods'
            # rules go to the shared sets, keyed by the local pod's address too.
            for into, rows in zip(shared, state.rows(rules, v, tuple(members)), strict=True):
                into += rows
            verdicts.update(dict.fromkeys(members, f"goto {kind}_0_v{v}"))
            continue
        # A class's chain has a rule per slot: an update keeps the old class's slots; a regroup chooses them
        # again, and a class whose slots change gets a new number (its chain is new).
        slots = best.slots if fixed and best is not None else parts.best_slots()
        if best is not None and best.slots == slots:
            name = best.name
        else:
            name = f"{kind}_{next_id}_v{v}"
            next_id += 1
        taken.add(name)
        placed = state.placed(rules, v, slots)
        classes.append(NftClass(name, kind, fam.ip, layer.peer, layer.verdict, placed.sets(name, addr_type, 1, slots),
                                mine, slots))
        verdicts.update(dict.fromkeys(members, f"goto {name}"))
    if fixed:  # an update removes no chain either: classes no pod uses now stay, unchanged, until a regroup
        classes += (c for c in old if c.name not in taken)
    classes.sort(key=lambda c: _number(c.name))
    entries = tuple(f"{a} : {verdicts[a]}" for a in fam.local if a in verdicts)
    zero = Placed(*(tuple(sorted(x)) for x in shared), ()).sets(f"{kind}_0_v{v}", addr_type, 2)
    return NftSet(f"{kind}_v{v}", addr_type, False, entries, map="verdict"), zero, classes


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
    """An update of a live table in one transaction: new classes (chain, sets and elements), element changes
    (`add element ...` / `delete element ...` lines, deletions first), then the classes nothing refers to."""
    return templates.render("nft_update.j2", added=added, elements=elements, removed=removed, table_name=TABLE)


def render_node(ir: PolicyIR, node: str) -> str:
    """The nft script that replaces this node's table (a node without pods gets the empty policy)."""
    return render_script(node_table(ir, node))
