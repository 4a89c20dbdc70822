"""Render one node's nftables table from the policy IR.

The script holds generated names (dataplane/names.py), addresses formatted from `ipaddress` objects and
integers: no label, name or annotation value can reach it.

Shape (docs/dataplane.md explains it for network engineers): every address group a rule uses is one named set
(a selector's pods in a hash set, an ipBlock's CIDRs in an interval set), written once per node however many
rules, policies and classes use it. The local pods fall into *classes*, the pods whose rules for one layer and
direction are equal (the pods of one EPG; the pods the same NetworkPolicies select); a class is one chain with a
line per rule, `<peer> @group <services> return`, ending in `drop`, and a verdict map sends each local pod to
its class's chain. So the table's size follows the policy (groups + rules), never local pods x peers, and a
packet meets the rules of the policies that select its pod, whatever the size of the cluster.

A pod added, removed or relabelled changes the elements of the groups it is in and of the verdict maps; a
policy or contract change adds and removes the chains and sets it changes. Chains and derived sets are named by
their content (chains) or definition (groups), so an update never changes a chain in place.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import templates
from contracts.ir import AddressGroup, IRRule, NamedPort, NodeIR, PodIR, PolicyIR, Rules
from contracts.sets import AddressSet, ServiceSet
from dataplane import names
from dataplane.names import FAMILIES, KINDS, PEER, TABLE

__all__ = ["TABLE", "NftChain", "NftSet", "RenderState", "Table", "node_table", "render_changes", "render_hold",
           "render_node", "render_script"]

# Per kind: the PodIR attribute with the rules.
RULES_OF = {"epg_in": "ingress_epg", "np_in": "ingress_netpol", "epg_out": "egress_epg", "np_out": "egress_netpol"}


@dataclass(frozen=True, slots=True)
class NftSet:
    name: str
    type: str
    interval: bool
    elements: tuple[str, ...]
    map: str | None = None  # a map's value type ("verdict"); None for a plain set


@dataclass(frozen=True, slots=True)
class NftChain:
    """A class's chain: a line per rule, each counting the new connections it admits and ending in `return`
    (this layer allows it; an audit rule logs a would-drop first), then the logged, counted `drop`."""

    name: str
    lines: tuple[str, ...]
    # Its counters by name: one per rule, then the drop's. They are anonymous `counter` statements (a named
    # counter object per line doubled the cost of every update); the names (names.rule_counter, drop_counter)
    # are given back to them in line order when they are read (drops.read_counters).
    counters: tuple[str, ...] = ()
    # Per rule (the counters' order, the drop's left out): the IR rules it renders, for attribution.
    sources: tuple[tuple[IRRule, ...], ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class Table:
    """One node's whole table: its sets and maps (fixed ones first) and the class chains. The base chains are
    the template's."""

    sets: tuple[NftSet, ...]
    chains: tuple[NftChain, ...]

    @property
    def elements(self) -> int:
        return sum(len(s.elements) for s in self.sets)

    @staticmethod
    def build(ir: PolicyIR, node: NodeIR, state: RenderState | None = None) -> Table:
        """The table for `node`. `state`: what earlier builds rendered, reused where its input is unchanged."""
        state = state if state is not None else RenderState()
        sets: list[NftSet] = []
        chains: dict[str, NftChain] = {}
        for v, ip, addr_type, _ in FAMILIES:
            # A pod is all of its addresses: a dual-stack pod is a local pod of both families, with the same rules.
            local = sorted(((int(a), p) for p in node.pods for a in p.ips if a.version == v), key=lambda t: t[0])
            pods = [p for _, p in local]
            fam = _Family(v, ip, addr_type, pods, state.formatted(tuple(a for a, _ in local), v))
            sets += _fixed_sets(ir, node, fam, state)
            used = _Used()
            alias = _aliases(ir, fam, state)
            for kind in KINDS:
                vmap, classes = _classify(ir, fam, kind, alias, used, state)
                sets.append(vmap)
                for chain in classes:
                    chains.setdefault(chain.name, chain)
            sets += _used_sets(ir, fam, used, state)
        state.turn()
        return Table(_unique(sets), tuple(sorted(chains.values(), key=lambda c: c.name)))


@dataclass(frozen=True, slots=True)
class _Family:
    v: int
    ip: str  # "ip" | "ip6"
    addr_type: str
    pods: list[PodIR]  # the local pods with an address of this family, in address order
    local: tuple[str, ...]  # those addresses, formatted


@dataclass
class _Used:
    """What the classes of one family refer to: the sets to write."""

    groups: dict[str, AddressGroup] = field(default_factory=dict)
    services: dict[str, ServiceSet] = field(default_factory=dict)
    named_ports: set[NamedPort] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class _Lines:
    """A class's rendered rules and the service sets they refer to (the groups they refer to are the rules').
    `lines` are bare (`<match> return`, `<match> audit`, then `drop`): they name the chain; `_chain` writes them
    out with their counters and logs."""

    lines: tuple[str, ...]
    services: tuple[ServiceSet, ...]
    sources: tuple[tuple[IRRule, ...], ...] = ()  # per line but the drop: the rules it renders


class _Content:
    """Address ranges as a memo key: hashed once, compared by identity first (a group's members that did not
    change are the very same object from one build to the next)."""

    __slots__ = ("hash", "ranges")

    def __init__(self, ranges: tuple[tuple[int, int], ...]) -> None:
        self.ranges, self.hash = ranges, hash(ranges)

    def __hash__(self) -> int:
        return self.hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Content) and (self.ranges is other.ranges or self.ranges == other.ranges)


class RenderState:
    """What builds rendered, by input, kept from one build to the next: an update renders only what changed.
    Each `turn()` (the end of a build) forgets what that build did not use."""

    def __init__(self) -> None:
        self._kept: dict[Any, Any] = {}
        self._used: dict[Any, Any] = {}

    def _memo(self, key: Any, make: Callable[[], Any]) -> Any:
        found = self._used.get(key)
        if found is None:
            found = self._kept.get(key)
            if found is None:
                found = make()
            self._used[key] = found
        return found

    def content(self, addrs: AddressSet, v: int) -> _Content:
        """The ranges of one family of `addrs`, as a memo key (by the object's identity while it is kept)."""
        key = ("content", id(addrs), v)
        found = self._used.get(key) or self._kept.get(key)
        if found is None or found[0] is not addrs:
            found = (addrs, _Content(addrs.v4 if v == 4 else addrs.v6))
        self._used[key] = found
        return found[1]  # type: ignore[no-any-return]

    def lines(self, rules: tuple[Any, ...], v: int, kind: str, alias: dict[str, AddressGroup]) -> _Lines:
        # By the rules' identity: the engine hands the same rules objects over while the policy is unchanged.
        sets = tuple(alias[r.peers.key].key if r.peers.key in alias else None for r in rules)
        return self._memo(("lines", self.identity(rules), v, kind, sets),  # type: ignore[no-any-return]
                          lambda: _class_lines(rules, v, kind, alias))

    def chain(self, name: str, rendered: _Lines) -> NftChain:
        found: NftChain = self._memo(("chain", name), lambda: _chain(name, rendered))
        return found

    def formatted(self, addresses: tuple[int, ...], v: int) -> tuple[str, ...]:
        return self._memo(("fmt", addresses, v), lambda: tuple(_addr(a, v) for a in addresses))  # type: ignore[no-any-return]

    def addresses(self, content: _Content, v: int, *, single: bool) -> tuple[str, ...]:
        """Ranges as set elements: every address (`single`, for hash sets) or prefixes and ranges."""
        def make() -> tuple[str, ...]:
            if single:
                return tuple(_addr(a, v) for lo, hi in content.ranges for a in range(lo, hi + 1))
            return tuple(_range(lo, hi, v) for lo, hi in content.ranges)
        return self._memo(("addresses", content, v, single), make)  # type: ignore[no-any-return]

    def identity(self, obj: object) -> tuple[str, int]:
        """A memo key for an object by identity (kept alive while the state keeps the key)."""
        self._used[("alive", id(obj))] = obj
        return ("id", id(obj))

    def elements(self, key: tuple[Any, ...], make: Callable[[], tuple[str, ...]]) -> tuple[str, ...]:
        return self._memo(("elements", *key), make)  # type: ignore[no-any-return]

    def turn(self) -> None:
        self._kept, self._used = self._used, {}


def _addr(value: int, v: int) -> str:
    if v == 4:  # the common case, without ipaddress objects: a full load formats ~100,000 of them
        return f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}"
    return str(ipaddress.IPv6Address(value))


def _span(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"{lo}-{hi}"


PROTOCOL_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "ipv6-icmp", 132: "sctp"}  # as nft spells them


def _protocols(lo: int, hi: int) -> str:
    return PROTOCOL_NAMES.get(lo, str(lo)) if lo == hi else f"{lo}-{hi}"


def _range(lo: int, hi: int, v: int) -> str:
    """An address range as one element: a prefix where it is one, else `first-last`."""
    size = hi - lo + 1
    if size & (size - 1) == 0 and lo % size == 0:
        bits = (32 if v == 4 else 128) - size.bit_length() + 1
        return _addr(lo, v) if size == 1 else f"{_addr(lo, v)}/{bits}"
    return f"{_addr(lo, v)}-{_addr(hi, v)}"


def _family_ranges(addrs: AddressSet, v: int) -> tuple[tuple[int, int], ...]:
    return addrs.v4 if v == 4 else addrs.v6


def _services_match(services: ServiceSet) -> str:
    """The match for a service set: nothing for every service, inline for one protocol (and port range), else
    a lookup in the service set's named set."""
    if services.is_all:
        return ""
    boxes = list(services.intervals())
    if len(boxes) == 1:
        plo, phi, qlo, qhi = boxes[0]
        proto = f"meta l4proto {_protocols(plo, phi)}"
        return proto if (qlo, qhi) == (0, 65535) else f"{proto} th dport {_span(qlo, qhi)}"
    return f"meta l4proto . th dport @{names.services(services)}"


def _matchable(ir: PolicyIR, g: AddressGroup, v: int) -> bool:
    """Whether addresses of family v can be in the group (pods may come; CIDRs of the other family never)."""
    return g.family in (None, v) and (g.pods or g.everywhere or bool(_family_ranges(ir.members(g), v)))


def _aliases(ir: PolicyIR, fam: _Family, state: RenderState) -> dict[str, AddressGroup]:
    """Every group the local pods' rules use -> the group whose set stands for it: groups of different
    definitions that hold the same addresses right now (`app` Exists and `{}`, say) share one set, named after
    the first definition. While they stay equal, pod events change elements only; when they part, the
    chains that used the shared set are replaced by chains that use a set of their own."""
    groups: dict[str, AddressGroup] = {}
    seen: set[int] = set()
    for p in fam.pods:
        for attr in RULES_OF.values():
            rules = getattr(p, attr)
            if rules and id(rules) not in seen:
                seen.add(id(rules))
                for rule in rules:
                    g = rule.peers
                    if not g.everywhere and _matchable(ir, g, fam.v):
                        groups[g.key] = g
    first: dict[tuple[bool, _Content], AddressGroup] = {}
    alias: dict[str, AddressGroup] = {}
    for key in sorted(groups):
        g = groups[key]
        alias[key] = first.setdefault((g.pods, state.content(ir.members(g), fam.v)), g)
    return alias


def _class_lines(rules: tuple[Any, ...], v: int, kind: str, alias: dict[str, AddressGroup]) -> _Lines:
    ip = "ip" if v == 4 else "ip6"
    peer = PEER[kind]
    lines: dict[str, list[IRRule]] = {}  # a line -> the rules that render it (equal lines are written once)
    services: dict[str, ServiceSet] = {}
    for rule in rules:
        g = rule.peers
        if not g.everywhere and g.key not in alias:
            continue  # not matchable in this family (see _aliases)
        where = [] if g.everywhere else [f"{ip} {peer} @{names.group(alias[g.key], v)}"]
        verdict = "audit" if rule.audit else "return"
        if not rule.services.is_empty:
            match = _services_match(rule.services)
            if "@" in match:
                services[repr(rule.services)] = rule.services
            lines.setdefault(" ".join([*where, *([match] if match else []), verdict]), []).append(rule)
        for n in rule.named:
            lines.setdefault(" ".join([*where, f"meta l4proto {_protocols(n.protocol, n.protocol)} {ip} daddr . "
                                               f"th dport @{names.named_port(n, v)}", verdict]), []).append(rule)
    return _Lines((*lines, "drop"), tuple(services.values()), tuple(tuple(r) for r in lines.values()))


def _log(tag: str) -> str:
    """Rate-limited logging to the drops' NFLOG group (after the counter, which counts every packet)."""
    return (f"limit rate {names.LOG_RATE} burst {names.LOG_BURST} packets log prefix \"{tag}\" "
            f"group {names.LOG_GROUP}")


def logged_drop(counter: str, tag: str) -> str:
    """A drop's first rule (its second is the plain `drop` for what the log's rate lets through unlogged)."""
    return f"counter name \"{counter}\" {_log(tag)} drop"


def _chain(name: str, rendered: _Lines) -> NftChain:
    """A class's chain written out: each rule counts what it admits; an audit rule logs a would-drop and
    returns (twice: the second returns what the log's rate lets through unlogged); the end logs and drops."""
    out: list[str] = []
    counters: list[str] = []
    for i, line in enumerate(rendered.lines[:-1]):
        match, _, verdict = line.rpartition(" ")
        counter = names.rule_counter(name, i)
        counters.append(counter)
        where = f"{match} " if match else ""
        if verdict == "audit":
            out += [f"{where}counter {_log(names.tag(names.AUDIT_TAG, name))} return", f"{where}return"]
        else:
            out.append(f"{where}counter return")
    counters.append(names.drop_counter(name))
    out += [f"counter {_log(names.tag(names.DROP_TAG, name))} drop", "drop"]
    return NftChain(name, tuple(out), tuple(counters), rendered.sources)


def _fixed_sets(ir: PolicyIR, node: NodeIR, fam: _Family, state: RenderState) -> list[NftSet]:
    # Addresses that are some pod's (a hash set: a new pod is one element) or in some EPG's subnets (intervals);
    # all others pass the EPG layer (the IR's epg_open).
    v, addr_type = fam.v, fam.addr_type
    isolated = tuple(a for p, a in zip(fam.pods, fam.local, strict=True) if p.epg_isolated)
    return [
        NftSet(names.local(v), addr_type, False, fam.local),
        NftSet(names.pod_cidrs(v), addr_type, True, state.addresses(state.content(node.pod_cidrs, v), v, single=False)),
        NftSet(names.epg_isolated(v), addr_type, False, isolated),
        NftSet(names.epg_pods(v), addr_type, False, state.addresses(state.content(ir.epg_pods, v), v, single=True)),
        NftSet(names.epg_subnets(v), addr_type, True,
               state.addresses(state.content(ir.epg_subnets, v), v, single=False)),
    ]


def _classify(ir: PolicyIR, fam: _Family, kind: str, alias: dict[str, AddressGroup], used: _Used,
              state: RenderState) -> tuple[NftSet, list[NftChain]]:
    """One layer and direction: its verdict map (local pod -> its class's chain, or drop where the layer allows
    it nothing; pods the layer leaves open are not in it) and the class chains."""
    v = fam.v
    # Pods share their rules objects (the IR's pods of one EPG, of the same policies do): group by identity
    # first, so that each distinct object is hashed once, then merge equal rules.
    by_id: dict[int, tuple[Rules, list[str]]] = {}
    for p, address in zip(fam.pods, fam.local, strict=True):
        rules = getattr(p, RULES_OF[kind])
        if rules is not None:
            by_id.setdefault(id(rules), (rules, []))[1].append(address)
    groups: dict[tuple[Any, ...], list[str]] = {}
    for rules, members in by_id.values():
        assert rules is not None
        groups.setdefault(rules, []).extend(members)
    verdicts: dict[str, str] = {}
    chains: list[NftChain] = []
    for rules, members in groups.items():
        rendered = state.lines(rules, v, kind, alias)
        if len(rendered.lines) == 1:  # only `drop`: this layer allows the pods nothing
            verdicts.update(dict.fromkeys(members, f"goto {names.nothing_chain(kind, v)}"))
            continue
        name = names.class_chain(kind, rendered.lines, v)
        chains.append(state.chain(name, rendered))
        verdicts.update(dict.fromkeys(members, f"goto {name}"))
        for s in rendered.services:
            used.services[names.services(s)] = s
        for rule in rules:
            g = rule.peers
            if not g.everywhere:
                if g.key not in alias:
                    continue
                g = alias[g.key]
                used.groups[g.key] = g
            used.named_ports.update(rule.named)
    entries = tuple(f"{a} : {verdicts[a]}" for a in fam.local if a in verdicts)
    return NftSet(names.verdict_map(kind, v), fam.addr_type, False, entries, map="verdict"), chains


def _used_sets(ir: PolicyIR, fam: _Family, used: _Used, state: RenderState) -> list[NftSet]:
    """The sets the classes refer to: groups, service sets, named ports (every pod's number for the name: the
    rules ask for the destination's own, so a set holds a pair per pod with that port name)."""
    v, addr_type = fam.v, fam.addr_type
    out: list[NftSet] = []
    owners: dict[str, str] = {}
    for g in sorted(used.groups.values(), key=lambda g: g.key):
        if owners.setdefault(names.group(g, v), g.key) != g.key:
            raise ValueError(f"groups {owners[names.group(g, v)]!r} and {g.key!r} have one name: the digest "
                             "collided (lengthen names.DIGEST)")
        out.append(NftSet(names.group(g, v), addr_type, not g.pods,
                          state.addresses(state.content(ir.members(g), v), v, single=g.pods)))
    for name, s in sorted(used.services.items()):
        out.append(NftSet(name, "inet_proto . inet_service", True, tuple(
            f"{_protocols(plo, phi)} . {_span(qlo, qhi)}" for plo, phi, qlo, qhi in s.intervals())))
    for n in sorted(used.named_ports, key=lambda n: (n.name, n.protocol)):
        resolved = ir.named_ports.get(n, {})

        def make(resolved: Any = resolved) -> tuple[str, ...]:
            return tuple(f"{_addr(int(a), v)} . {port}" for a, port in resolved.items() if a.version == v)
        # The resolved table is the engine's object: the same while no pod with that port name changed.
        out.append(NftSet(names.named_port(n, v), f"{addr_type} . inet_service", False,
                          state.elements((n, v, state.identity(resolved)), make)))
    return out


def _unique(sets: list[NftSet]) -> tuple[NftSet, ...]:
    """The sets once each (a service set serves both families); two different sets of one name are refused."""
    seen: dict[str, NftSet] = {}
    for s in sets:
        if seen.setdefault(s.name, s) != s:
            raise ValueError(f"two sets named {s.name}: the name digest collided (lengthen names.DIGEST)")
    return tuple(seen.values())


def node_table(ir: PolicyIR, node: str) -> Table:
    return Table.build(ir, ir.nodes.get(node, NodeIR(node, ())))


def _drops(v: int) -> dict[str, str]:
    """Each fixed drop place of a family: its counted, logged first rule's statements (`... drop`)."""
    return {place: logged_drop(names.fixed_place(place, v), names.tag("", names.fixed_place(place, v)))
            for place in names.FIXED_PLACES}


def fixed_counters() -> tuple[str, ...]:
    """The named counters of the fixed drop places, every family."""
    return tuple(names.fixed_place(place, v) for v, *_ in FAMILIES for place in names.FIXED_PLACES)


def _families() -> list[dict[str, Any]]:
    return [{"v": v, "ip": ip, "label": label, "local": names.local(v), "isolated": names.epg_isolated(v),
             "drop": _drops(v), "nothing": {kind: names.nothing_chain(kind, v) for kind in KINDS},
             "pod_cidrs": names.pod_cidrs(v),
             "pods": names.epg_pods(v), "subnets": names.epg_subnets(v),
             "ingress": names.direction_chain("ingress", v), "egress": names.direction_chain("egress", v),
             "ingress_epg": names.layer_chain("ingress", "epg", v), "ingress_np": names.layer_chain("ingress", "np", v),
             "egress_epg": names.layer_chain("egress", "epg", v), "egress_np": names.layer_chain("egress", "np", v),
             "epg_in": names.verdict_map("epg_in", v), "np_in": names.verdict_map("np_in", v),
             "epg_out": names.verdict_map("epg_out", v), "np_out": names.verdict_map("np_out", v)}
            for v, ip, _, label in FAMILIES]


def render_script(table: Table, *, replace: bool = True) -> str:
    """The full table: with `replace`, one transaction that creates, deletes and re-creates it atomically."""
    return templates.render("nft_node.j2", table=table, families=_families(), replace=replace, table_name=TABLE,
                            forward=names.FORWARD, input=names.INPUT, fixed_counters=fixed_counters())


def render_hold() -> str:
    """The table a node holds until its agent's first apply: new forwarded connections dropped (logged)."""
    return templates.render("nft_hold.j2", table_name=TABLE, forward=names.FORWARD, counter=names.HOLD_PLACE,
                            drop=logged_drop(names.HOLD_PLACE, names.tag("", names.HOLD_PLACE)))


def render_changes(sets: list[NftSet], chains: list[NftChain], elements: list[str], removed_chains: list[str],
                   removed_sets: list[str]) -> str:
    """An update of a live table in one transaction: new sets and chains (with their counters), element changes
    (`add element ...` / `delete element ...` lines, deletions first), then the chains, counters and sets
    nothing refers to any more."""
    return templates.render("nft_update.j2", sets=sets, chains=chains, elements=elements,
                            removed_chains=removed_chains, removed_sets=removed_sets,
                            table_name=TABLE)


def render_node(ir: PolicyIR, node: str) -> str:
    """The nft script that replaces this node's table (a node without pods gets the empty policy)."""
    return render_script(node_table(ir, node))
