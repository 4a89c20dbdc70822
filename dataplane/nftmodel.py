"""A model of the nftables our tables are written in, to test the renderer and its updates without root.

It parses the scripts the renderer writes (a whole table, an update transaction), applies them to an in-memory
ruleset as nft and the kernel would (all or nothing; the checks that make nft refuse a script: unknown sets and
chains, an element added twice to a map with another value, an element deleted that is not there, overlapping
intervals, a chain or set deleted while something still refers to it), and traces a packet through the hooks
(knftables' `Fake` and kube-proxy's nftables tracer do the same for kube-proxy). It knows the subset of the
language our templates use, and refuses anything else, so a template change it does not understand fails
loudly instead of passing unexamined. The lab (real kernel, real packets) stays the proof; this model is what
lets every test run check the table the renderer wrote, for every packet the engine decides.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

PROTOCOLS = {"icmp": 1, "tcp": 6, "udp": 17, "ipv6-icmp": 58, "sctp": 132}
ICMPV6_TYPES = {"nd-router-solicit": 133, "nd-router-advert": 134, "nd-neighbor-solicit": 135,
                "nd-neighbor-advert": 136, "nd-redirect": 137}
ADDRESS_TYPES = {"ipv4_addr": 4, "ipv6_addr": 6}
TYPES = {*ADDRESS_TYPES, "inet_proto", "inet_service"}
_BYTE_TYPES = {"inet_proto": PROTOCOLS, "icmpv6_type": ICMPV6_TYPES, "hoplimit": {}}  # one byte, maybe by name


class ModelError(Exception):
    """The script would be refused by nft or the kernel: the message says why."""


@dataclass(frozen=True, slots=True)
class Packet:
    """A packet of a new connection (or `ct` = "established"...), as the hooks see it."""

    saddr: ipaddress.IPv4Address | ipaddress.IPv6Address
    daddr: ipaddress.IPv4Address | ipaddress.IPv6Address
    proto: int
    dport: int = 0  # for protocols without ports: what `th dport` reads there (any value)
    ct: str = "new"  # or "untracked": what conntrack makes of IPv6 neighbour discovery
    icmp_type: int | None = None  # ICMPv6 (proto 58): the message type
    hoplimit: int = 64  # IPv6: 255 for neighbour discovery, which never crosses a router

    @property
    def family(self) -> int:
        return self.saddr.version


@dataclass
class SetState:
    type: tuple[str, ...]  # the fields of the key
    interval: bool
    map: str | None  # "verdict" for a verdict map
    elements: dict[tuple[tuple[int, int], ...], str | None] = field(default_factory=dict)  # key -> map value

    def contains(self, key: tuple[int, ...]) -> str | bool | None:
        """The map value (or True for a set) of the element that covers `key`; False when none does."""
        exact = tuple((k, k) for k in key)
        if exact in self.elements:
            return self.elements[exact] if self.map else True
        if self.interval:
            for element, value in self.elements.items():
                if all(lo <= k <= hi for (lo, hi), k in zip(element, key, strict=True)):
                    return value if self.map else True
        return False


@dataclass(frozen=True, slots=True)
class Match:
    fields: tuple[str, ...]  # selectors, e.g. ("ip saddr",) or ("meta l4proto", "th dport")
    negate: bool
    set: str | None  # a named set ("@name") ...
    values: tuple[tuple[int, int], ...] = ()  # ... or literal values/ranges of a single field
    vmap: bool = False  # `<fields> vmap @map`: the verdict comes from the map
    states: tuple[str, ...] = ()  # `ct state a,b`


@dataclass(frozen=True, slots=True)
class Rule:
    matches: tuple[Match, ...]
    verdict: str | None  # accept | drop | return | jump X | goto X; None: a vmap rule (or no verdict)
    text: str
    counter: str | None = None  # `counter name "X"`: a named counter every matching packet counts in; "": anonymous
    log: str | None = None  # `log prefix "P" group N`: the prefix (the model does not rate-limit: `limit` passes)


@dataclass
class Chain:
    rules: list[Rule]
    hook: str | None = None  # "forward", "input" for base chains
    policy: str = "accept"


@dataclass
class Table:
    sets: dict[str, SetState] = field(default_factory=dict)
    chains: dict[str, Chain] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)  # named counters: packets counted
    anonymous: dict[tuple[str, int], int] = field(default_factory=dict)  # (chain, rule index): packets counted


@dataclass
class Trace:
    """Where a packet went: the rules it matched, in order, and the final verdict."""

    verdict: str
    path: list[tuple[str, str]] = field(default_factory=list)  # (chain, rule text) of each matching rule
    logs: list[str] = field(default_factory=list)  # the log prefixes of the rules that logged the packet

    @property
    def last_chain(self) -> str:
        return self.path[-1][0] if self.path else ""


# -- values ---------------------------------------------------------------------------------------------------

def _value(text: str, typ: str) -> tuple[int, int]:
    """One field of an element or literal: a value, a range `a-b`, or (addresses) a prefix `a/n`."""
    try:
        return _parse_value(text.strip(), typ)
    except ValueError as exc:
        raise ModelError(f"{text!r} is not an {typ}: {exc}") from None


def _parse_value(text: str, typ: str) -> tuple[int, int]:
    if typ in ADDRESS_TYPES:
        version = ADDRESS_TYPES[typ]
        if "/" in text:
            net = ipaddress.ip_network(text, strict=True)
            if net.version != version:
                raise ModelError(f"{text} is not an {typ}")
            return int(net.network_address), int(net.broadcast_address)
        if "-" in text:
            lo_text, hi_text = text.split("-", 1)
            lo, hi = ipaddress.ip_address(lo_text), ipaddress.ip_address(hi_text)
            if lo.version != version or hi.version != version or int(lo) > int(hi):
                raise ModelError(f"bad {typ} range {text}")
            return int(lo), int(hi)
        addr = ipaddress.ip_address(text)
        if addr.version != version:
            raise ModelError(f"{text} is not an {typ}")
        return int(addr), int(addr)
    if "-" in text and text not in _BYTE_TYPES.get(typ, {}):  # a range, not a name like nd-neighbor-solicit
        lo_text, hi_text = text.split("-", 1)
        lo, hi = _number(lo_text, typ), _number(hi_text, typ)
        if lo > hi:
            raise ModelError(f"bad range {text}")
        return lo, hi
    n = _number(text, typ)
    return n, n


def _number(text: str, typ: str) -> int:
    text = text.strip()
    if text in _BYTE_TYPES.get(typ, {}):
        return _BYTE_TYPES[typ][text]
    if not re.fullmatch(r"[0-9]+", text):
        raise ModelError(f"{text!r} is not an {typ}")
    n = int(text)
    if n > (255 if typ in _BYTE_TYPES else 65535):
        raise ModelError(f"{text} is out of range for {typ}")
    return n


def _element(text: str, s: SetState) -> tuple[tuple[tuple[int, int], ...], str | None]:
    key_text, value = text, None
    if s.map:
        if " : " not in text:
            raise ModelError(f"map element {text!r} has no value")
        key_text, value = (t.strip() for t in text.split(" : ", 1))
        _check_verdict(value)
    parts = [p.strip() for p in key_text.split(" . ")]
    if len(parts) != len(s.type):
        raise ModelError(f"element {text!r} does not fit type {' . '.join(s.type)}")
    key = tuple(_value(p, t) for p, t in zip(parts, s.type, strict=True))
    if not s.interval and any(lo != hi for lo, hi in key):
        raise ModelError(f"element {text!r}: ranges need flags interval")
    return key, value


def _check_verdict(value: str) -> None:
    if value not in ("accept", "drop", "return") and not re.fullmatch(r"(jump|goto) [A-Za-z0-9_]+", value):
        raise ModelError(f"bad verdict {value!r}")


def _overlaps(a: tuple[tuple[int, int], ...], b: tuple[tuple[int, int], ...]) -> bool:
    return all(alo <= bhi and blo <= ahi for (alo, ahi), (blo, bhi) in zip(a, b, strict=True))


# -- rules ----------------------------------------------------------------------------------------------------

_SELECTORS = ("ip saddr", "ip daddr", "ip6 saddr", "ip6 daddr", "meta l4proto", "th dport", "ct state",
              "icmpv6 type", "ip6 hoplimit")
_COUNTER = re.compile(r'counter name "([A-Za-z0-9_]+)"(?: |\Z)')
_ANONYMOUS_COUNTER = re.compile(r"counter(?: |\Z)")
ANONYMOUS = ""  # Rule.counter of a rule with an anonymous `counter` statement
_LIMIT = re.compile(r"limit rate [1-9][0-9]*/(?:second|minute) burst [1-9][0-9]* packets(?: |\Z)")
_LOG = re.compile(r'log prefix "([A-Za-z0-9_:.-]{1,127})" group ([0-9]{1,5})(?: |\Z)')
_FIELD_TYPE = {"ip saddr": "ipv4_addr", "ip daddr": "ipv4_addr", "ip6 saddr": "ipv6_addr",
               "ip6 daddr": "ipv6_addr", "meta l4proto": "inet_proto", "th dport": "inet_service",
               "icmpv6 type": "icmpv6_type", "ip6 hoplimit": "hoplimit"}
_VERDICT = re.compile(r"(accept|drop|return|(?:jump|goto) [A-Za-z0-9_]+)\Z")


def parse_rule(text: str) -> Rule:
    rest = text.strip()
    matches: list[Match] = []
    verdict: str | None = None
    counter: str | None = None
    log: str | None = None
    while rest:
        m = _VERDICT.match(rest)
        if m:
            verdict = m.group(1)
            break
        m = _COUNTER.match(rest)
        if m and counter is None and log is None:
            counter, rest = m.group(1), rest[m.end():]
            continue
        m = _ANONYMOUS_COUNTER.match(rest)
        if m and counter is None and log is None:
            counter, rest = ANONYMOUS, rest[m.end():]
            continue
        m = _LIMIT.match(rest)
        if m and log is None:
            rest = rest[m.end():]
            continue
        m = _LOG.match(rest)
        if m and log is None and int(m.group(2)) <= 65535:
            log, rest = m.group(1), rest[m.end():]
            continue
        if counter is not None or log is not None:
            raise ModelError(f"rule {text!r}: a match after a statement ({rest!r})")
        fields: list[str] = []
        while True:
            sel = next((s for s in _SELECTORS if rest.startswith(s + " ") or rest == s), None)
            if sel is None:
                raise ModelError(f"rule {text!r}: cannot read {rest!r}")
            fields.append(sel)
            rest = rest[len(sel):].lstrip()
            if rest.startswith(". "):
                rest = rest[2:].lstrip()
                continue
            break
        negate = rest.startswith("!= ")
        if negate:
            rest = rest[3:]
        if rest.startswith("vmap @"):
            name, _, rest = rest[6:].partition(" ")
            matches.append(Match(tuple(fields), False, name, vmap=True))
            rest = rest.lstrip()
            continue
        if rest.startswith("{ ") and len(fields) == 1 and fields != ["ct state"]:  # an anonymous set
            inside, brace, rest = rest[2:].partition(" }")
            if not brace:
                raise ModelError(f"rule {text!r}: set not closed")
            values = tuple(_value(v, _FIELD_TYPE[fields[0]]) for v in inside.split(","))
            matches.append(Match(tuple(fields), negate, None, values))
            rest = rest.lstrip()
            continue
        token, _, rest = rest.partition(" ")
        rest = rest.lstrip()
        if token.startswith("@"):
            matches.append(Match(tuple(fields), negate, token[1:]))
        elif fields == ["ct state"]:
            states = tuple(token.split(","))
            if not all(s in _CT_STATES for s in states):
                raise ModelError(f"rule {text!r}: bad ct state {token!r}")
            matches.append(Match(("ct state",), negate, None, states=states))
        elif len(fields) == 1:
            matches.append(Match(tuple(fields), negate, None, (_value(token, _FIELD_TYPE[fields[0]]),)))
        else:
            raise ModelError(f"rule {text!r}: a concatenation needs a set")
    return Rule(tuple(matches), verdict, text.strip(), counter, log)


_CT_STATES = ("new", "established", "related", "invalid", "untracked")


def _field(packet: Packet, sel: str) -> int | None:
    if sel == "icmpv6 type":  # an IPv6 ICMP header only: nft adds that dependency
        return packet.icmp_type if packet.family == 6 and packet.proto == 58 else None
    if sel == "ip6 hoplimit":
        return packet.hoplimit if packet.family == 6 else None
    family, _, what = sel.partition(" ")
    if family in ("ip", "ip6"):
        if packet.family != (4 if family == "ip" else 6):
            return None  # `ip saddr` in an inet table: an IPv6 packet does not match
        return int(packet.saddr if what == "saddr" else packet.daddr)
    if sel == "meta l4proto":
        return packet.proto
    return packet.dport


# -- the ruleset ----------------------------------------------------------------------------------------------

class NftModel:
    """Tables as nft would hold them after the scripts applied so far."""

    def __init__(self) -> None:
        self.tables: dict[str, Table] = {}

    def apply(self, script: str) -> None:
        """Apply one script as one transaction: all of it, or (ModelError) nothing."""
        work = copy.deepcopy(self.tables)
        _Script(work, script).run()
        _check_references(work)
        self.tables = work

    def table(self, name: str = "inet epgbridge") -> Table:
        return self.tables[name]

    def trace(self, packet: Packet, hook: str = "forward") -> Trace:
        """The verdict of every table's base chain on `hook` (a drop anywhere wins), and the rules on the way."""
        trace = Trace("accept")
        for table in self.tables.values():
            for name, chain in table.chains.items():
                if chain.hook == hook:
                    verdict = _run(table, name, packet, trace)
                    if verdict == "drop":
                        trace.verdict = "drop"
                        return trace
        return trace

    def dump(self, name: str = "inet epgbridge") -> dict[str, object]:
        """The table's content, comparable between two models (an update vs. a fresh load)."""
        t = self.tables[name]
        return {"sets": {n: (s.type, s.interval, s.map, dict(s.elements)) for n, s in t.sets.items()},
                "chains": {n: ([r.text for r in c.rules], c.hook, c.policy) for n, c in t.chains.items()},
                "counters": sorted(t.counters)}

    def counters(self, name: str = "inet epgbridge") -> dict[str, int]:
        """A table's counters, packets counted by the traces so far: the named ones by name, the anonymous ones
        of a class chain by the names dataplane/names.py gives them in line order (as the agent reads them)."""
        from dataplane.names import drop_counter, rule_counter

        table = self.tables[name]
        out = dict(table.counters)
        for chain_name, chain in table.chains.items():
            k = 0
            for i, rule in enumerate(chain.rules):
                if rule.counter != ANONYMOUS:
                    continue
                if rule.verdict == "drop":
                    out[drop_counter(chain_name)] = table.anonymous.get((chain_name, i), 0)
                else:
                    out[rule_counter(chain_name, k)] = table.anonymous.get((chain_name, i), 0)
                    k += 1
        return out


def _run(table: Table, start: str, packet: Packet, trace: Trace) -> str:
    """Run a base chain: jump pushes, goto replaces, return pops; falling off a base chain is its policy."""
    stack: list[tuple[str, int]] = [(start, 0)]
    while stack:
        name, i = stack.pop()
        chain = table.chains[name]
        if len(stack) > 16:
            raise ModelError(f"chain {name}: jumps nested too deep")
        next_step: tuple[str, int] | None = None
        verdict: str | None = None
        while i < len(chain.rules):
            rule = chain.rules[i]
            i += 1
            matched, verdict = _evaluate(table, rule, packet)
            if not matched:
                continue
            trace.path.append((name, rule.text))
            if rule.counter == ANONYMOUS:
                table.anonymous[(name, i - 1)] = table.anonymous.get((name, i - 1), 0) + 1
            elif rule.counter is not None:
                table.counters[rule.counter] += 1
            if rule.log is not None:
                trace.logs.append(rule.log)
            if verdict is None:
                continue  # a rule without a verdict
            if verdict.startswith("jump "):
                stack.append((name, i))
                next_step = (verdict[5:], 0)
            elif verdict.startswith("goto "):
                next_step = (verdict[5:], 0)
            break
        if next_step is not None:
            stack.append(next_step)
            continue
        if verdict in ("accept", "drop"):
            return verdict
        # `return`, or the end of the chain: back to the caller (a base chain's end is its policy)
        if not stack:
            return chain.policy
    return "accept"


def _evaluate(table: Table, rule: Rule, packet: Packet) -> tuple[bool, str | None]:
    """Whether every match of the rule holds, and the verdict: the rule's, or what its verdict map found (a
    verdict map without an element for the packet is a rule that does not match)."""
    verdict = rule.verdict
    for match in rule.matches:
        if match.fields == ("ct state",):
            hit = packet.ct in match.states
        else:
            values = [_field(packet, f) for f in match.fields]
            if any(v is None for v in values):
                return False, None
            key = tuple(v for v in values if v is not None)
            if match.set is not None:
                found = table.sets[match.set].contains(key)
                if match.vmap:
                    if not isinstance(found, str):
                        return False, None
                    verdict, hit = found, True
                else:
                    hit = found is not False
            else:
                hit = any(lo <= key[0] <= hi for lo, hi in match.values)
        if hit == match.negate:
            return False, None
    return True, verdict


class _Script:
    """The statements of one script, applied in order to `tables`."""

    def __init__(self, tables: dict[str, Table], script: str) -> None:
        self.tables = tables
        self.lines = [ln.split("#", 1)[0].strip() for ln in script.splitlines()]
        self.lines = [ln for ln in self.lines if ln]
        self.i = 0

    def run(self) -> None:
        while self.i < len(self.lines):
            line = self.lines[self.i]
            self.i += 1
            self.statement(line)

    def _table(self, name: str) -> Table:
        if name not in self.tables:
            raise ModelError(f"no table {name}")
        return self.tables[name]

    def statement(self, line: str) -> None:
        m = re.fullmatch(r"table (inet [A-Za-z0-9_]+)( \{)?", line)
        if m:
            self.tables.setdefault(m.group(1), Table())
            if m.group(2):
                self.block(self.tables[m.group(1)])
            return
        m = re.fullmatch(r"delete table (inet [A-Za-z0-9_]+)", line)
        if m:
            self._table(m.group(1))
            del self.tables[m.group(1)]
            return
        m = re.fullmatch(r"(add|delete) element (inet [A-Za-z0-9_]+) ([A-Za-z0-9_]+) \{ (.*) \}", line)
        if m:
            table = self._table(m.group(2))
            if m.group(3) not in table.sets:
                raise ModelError(f"no set {m.group(3)}")
            s = table.sets[m.group(3)]
            items = [e.strip() for e in m.group(4).split(",") if e.strip()]
            if m.group(1) == "add":
                for e in items:
                    _add(s, e, m.group(3))
            else:
                for e in items:
                    key, _ = _element(e + (" : drop" if s.map and " : " not in e else ""), s)
                    if key not in s.elements:
                        raise ModelError(f"delete element {m.group(3)} {e}: no such element")
                    del s.elements[key]
            return
        m = re.fullmatch(r"delete counter (inet [A-Za-z0-9_]+) ([A-Za-z0-9_]+)", line)
        if m:
            table = self._table(m.group(1))
            if m.group(2) not in table.counters:
                raise ModelError(f"delete counter {m.group(2)}: no such counter")
            users = list(_users(table, m.group(2)))
            if users:
                raise ModelError(f"delete counter {m.group(2)}: still used by {users[0]}")
            del table.counters[m.group(2)]
            return
        m = re.fullmatch(r"(flush|delete) (chain|set|map) (inet [A-Za-z0-9_]+) ([A-Za-z0-9_]+)", line)
        if m:
            table = self._table(m.group(3))
            where = table.chains if m.group(2) == "chain" else table.sets
            if m.group(4) not in where:
                raise ModelError(f"{m.group(1)} {m.group(2)} {m.group(4)}: no such {m.group(2)}")
            if m.group(1) == "flush":
                if m.group(2) == "chain":
                    table.chains[m.group(4)].rules = []
                else:
                    table.sets[m.group(4)].elements.clear()
                return
            users = list(_users(table, m.group(4)))
            if users:
                raise ModelError(f"delete {m.group(2)} {m.group(4)}: still used by {users[0]}")
            del where[m.group(4)]
            return
        raise ModelError(f"cannot read {line!r}")

    def block(self, table: Table) -> None:
        while self.i < len(self.lines):
            line = self.lines[self.i]
            self.i += 1
            if line == "}":
                return
            m = re.fullmatch(r"(set|map) ([A-Za-z0-9_]+) \{", line)
            if m:
                self.set_block(table, m.group(2), m.group(1) == "map")
                continue
            m = re.fullmatch(r"chain ([A-Za-z0-9_]+) \{", line)
            if m:
                self.chain_block(table, m.group(1))
                continue
            m = re.fullmatch(r"counter ([A-Za-z0-9_]+) \{", line)
            if m:
                if m.group(1) in table.counters:
                    raise ModelError(f"counter {m.group(1)} exists")  # our updates only ever add new ones
                while self.lines[self.i] != "}":
                    if not re.fullmatch(r"packets [0-9]+ bytes [0-9]+", self.lines[self.i]):
                        raise ModelError(f"counter {m.group(1)}: cannot read {self.lines[self.i]!r}")
                    self.i += 1
                self.i += 1
                table.counters[m.group(1)] = 0
                continue
            raise ModelError(f"cannot read {line!r} in a table block")
        raise ModelError("table block not closed")

    def set_block(self, table: Table, name: str, is_map: bool) -> None:
        if name in table.sets:
            raise ModelError(f"set {name} exists")  # our updates only ever create sets that are new
        typ: tuple[str, ...] = ()
        value: str | None = None
        interval = False
        pending: list[str] = []
        while True:
            line = self.lines[self.i]
            self.i += 1
            if line == "}":
                break
            m = re.fullmatch(r"type (.+?)(?: : (verdict))?", line)
            if m and not typ:
                typ = tuple(t.strip() for t in m.group(1).split(" . "))
                value = m.group(2)
                if not all(t in TYPES for t in typ) or (is_map != (value is not None)):
                    raise ModelError(f"set {name}: bad type {line!r}")
                continue
            if line == "flags interval":
                interval = True
                continue
            if line == "elements = {":
                while self.lines[self.i] != "}":
                    pending += [e.strip() for e in self.lines[self.i].split(",") if e.strip()]
                    self.i += 1
                self.i += 1
                continue
            raise ModelError(f"set {name}: cannot read {line!r}")
        if not typ:
            raise ModelError(f"set {name} has no type")
        s = table.sets[name] = SetState(typ, interval, value)
        for e in pending:
            _add(s, e, name)

    def chain_block(self, table: Table, name: str) -> None:
        if name in table.chains:
            raise ModelError(f"chain {name} exists")
        chain = table.chains[name] = Chain([])
        while True:
            line = self.lines[self.i]
            self.i += 1
            if line == "}":
                return
            m = re.fullmatch(r"type filter hook (forward|input) priority filter; policy (accept|drop);", line)
            if m:
                chain.hook, chain.policy = m.group(1), m.group(2)
                continue
            chain.rules.append(parse_rule(line))


def _add(s: SetState, text: str, name: str) -> None:
    key, value = _element(text, s)
    if key in s.elements:
        if s.map and s.elements[key] != value:
            raise ModelError(f"add element {name} {text}: the key is there with another value")
        return
    if s.interval and any(_overlaps(key, other) for other in s.elements):
        raise ModelError(f"add element {name} {text}: overlaps an element of the set")
    s.elements[key] = value


def _users(table: Table, name: str) -> Iterator[str]:
    """What refers to a set or chain: rules (lookups, jumps) and verdict map elements."""
    for chain_name, chain in table.chains.items():
        for rule in chain.rules:
            if (any(m.set == name for m in rule.matches) or rule.verdict in (f"jump {name}", f"goto {name}")
                    or rule.counter == name):
                yield f"a rule of chain {chain_name}"
    for set_name, s in table.sets.items():
        if s.map and any(v in (f"jump {name}", f"goto {name}") for v in s.elements.values()):
            yield f"an element of map {set_name}"


def _check_references(tables: dict[str, Table]) -> None:
    """What the kernel checks at commit: every set and chain a rule or map element names exists, lookups fit
    the set's type."""
    for table in tables.values():
        for chain_name, chain in table.chains.items():
            for rule in chain.rules:
                for m in rule.matches:
                    if m.set is None:
                        continue
                    s = table.sets.get(m.set)
                    if s is None:
                        raise ModelError(f"chain {chain_name}: no set {m.set} ({rule.text})")
                    if len(s.type) != len(m.fields) or any(
                            f in _FIELD_TYPE and _FIELD_TYPE[f] != t for f, t in zip(m.fields, s.type, strict=True)):
                        raise ModelError(f"chain {chain_name}: {' . '.join(m.fields)} does not fit set {m.set}")
                    if m.vmap != bool(s.map):
                        raise ModelError(f"chain {chain_name}: {m.set} used as a {'map' if m.vmap else 'set'}")
                if rule.counter and rule.counter not in table.counters:
                    raise ModelError(f"chain {chain_name}: no counter {rule.counter} ({rule.text})")
                target = rule.verdict.split(" ", 1)[1] if rule.verdict and " " in rule.verdict else None
                if target is not None and target not in table.chains:
                    raise ModelError(f"chain {chain_name}: no chain {target}")
        for set_name, s in table.sets.items():
            for v in s.elements.values():
                if v and " " in v and v.split(" ", 1)[1] not in table.chains:
                    raise ModelError(f"map {set_name}: no chain {v.split(' ', 1)[1]}")
