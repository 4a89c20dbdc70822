"""Exact set algebra over the two dimensions policy speaks about.

`ServiceSet`: sets of (IP protocol, destination port). `AddressSet`: sets of IP addresses as merged ranges.
Both the engine's `decide` (membership) and its compiler (the sets themselves) use these, so a verdict and
a rendered rule can never disagree about what an entry or a peer covers.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

TCP, UDP, ICMP, SCTP = 6, 17, 1, 132
PORTED = frozenset({TCP, UDP, SCTP})
PROTOCOL_NAMES = {TCP: "TCP", UDP: "UDP", SCTP: "SCTP", ICMP: "ICMP"}
FULL_PORTS = ((0, 65535),)

Intervals = tuple[tuple[int, int], ...]
_INFINITE = 1 << 129  # above every address and port: bisect's key for "intervals starting at or before v"


def _merge(intervals: Iterable[tuple[int, int]]) -> Intervals:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(intervals):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return tuple(out)


def _subtract(a: Intervals, b: Intervals) -> Intervals:
    out: list[tuple[int, int]] = []
    for lo, hi in a:
        cur = lo
        for blo, bhi in b:
            if bhi < cur or blo > hi:
                continue
            if blo > cur:
                out.append((cur, blo - 1))
            cur = max(cur, bhi + 1)
            if cur > hi:
                break
        if cur <= hi:
            out.append((cur, hi))
    return tuple(out)


def _contains(intervals: Intervals, value: int) -> bool:
    """Binary search: the last interval that starts at or before `value` is the only candidate."""
    i = bisect.bisect_right(intervals, (value, _INFINITE)) - 1
    return i >= 0 and intervals[i][1] >= value


def _patch(intervals: Intervals, remove: Intervals, add: Intervals) -> Intervals:
    """`intervals` minus `remove` plus `add`, rebuilding only the stretch the changes reach."""
    if not remove and not add:
        return intervals
    if len(remove) + len(add) > 16:
        return _merge(_subtract(intervals, remove) + add)
    lo = min(r[0] for r in (*remove, *add))
    hi = max(r[1] for r in (*remove, *add))
    # From the last interval that starts before lo - 1 to the last that starts at or before hi + 1: whatever
    # the changes can touch or be adjacent to; the intervals outside stay apart from it (they were merged).
    first = max(0, bisect.bisect_left(intervals, (lo - 1, -1)) - 1)
    last = bisect.bisect_right(intervals, (hi + 1, _INFINITE))
    return intervals[:first] + _merge(_subtract(intervals[first:last], remove) + add) + intervals[last:]


@dataclass(frozen=True, slots=True)
class ServiceSet:
    """A set of (protocol, port). `ports[p]` lists the covered port intervals of protocol p; every protocol
    not in `ports` is entirely covered when `others` is true and not at all otherwise. Protocols without
    ports (ICMP, ...) are covered whole or not at all ((0, 65535) or absent)."""

    ports: tuple[tuple[int, Intervals], ...] = ()
    others: bool = False

    @staticmethod
    def of(ports: Mapping[int, Iterable[tuple[int, int]]], others: bool = False) -> ServiceSet:
        norm: dict[int, Intervals] = {}
        for proto, ivs in ports.items():
            merged = _merge(ivs) if proto in PORTED else (FULL_PORTS if any(True for _ in ivs) else ())
            if others and merged == FULL_PORTS:
                continue
            if not others and not merged:
                continue
            norm[proto] = merged
        return ServiceSet(tuple(sorted(norm.items())), others)

    def _get(self, proto: int) -> Intervals:
        for p, ivs in self.ports:
            if p == proto:
                return ivs
        return FULL_PORTS if self.others else ()

    def contains(self, proto: int, port: int | None) -> bool:
        ivs = self._get(proto)
        if proto not in PORTED or port is None:
            return ivs == FULL_PORTS
        return _contains(ivs, port)

    @property
    def is_empty(self) -> bool:
        return not self.others and not self.ports

    @property
    def is_all(self) -> bool:
        return self.others and not self.ports

    def _protocols(self, other: ServiceSet) -> set[int]:
        return {p for p, _ in self.ports} | {p for p, _ in other.ports}

    def union(self, other: ServiceSet) -> ServiceSet:
        return ServiceSet.of(
            {p: self._get(p) + other._get(p) for p in self._protocols(other)}, self.others or other.others
        )

    def difference(self, other: ServiceSet) -> ServiceSet:
        return ServiceSet.of(
            {p: _subtract(self._get(p), other._get(p)) for p in self._protocols(other)},
            self.others and not other.others,
        )

    def intervals(self) -> Iterator[tuple[int, int, int, int]]:
        """The set as disjoint boxes (first protocol, last protocol, first port, last port): what a dataplane
        matches on. Protocols without ports always span ports 0-65535."""
        listed = []
        for proto, ivs in self.ports:
            listed.append(proto)
            for lo, hi in ivs:
                yield proto, proto, lo, hi
        if self.others:
            for lo, hi in _subtract(((0, 255),), tuple((p, p) for p in listed)):
                yield lo, hi, 0, 65535

    def __str__(self) -> str:
        if self.is_all:
            return "any"
        if self.is_empty:
            return "nothing"
        parts = []
        for proto, ivs in self.ports:
            name = PROTOCOL_NAMES.get(proto, str(proto))
            if ivs == FULL_PORTS:
                parts.append(f"{name} any port" if proto in PORTED else name)
            elif not ivs:
                parts.append(f"not {name}")
            else:
                parts.append(name + " " + ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ivs))
        if self.others:
            parts.append("every other protocol")
        return "; ".join(parts)


ALL_SERVICES = ServiceSet((), True)
NO_SERVICES = ServiceSet((), False)


def service(proto: int | None, first: int | None = None, last: int | None = None) -> ServiceSet:
    """One protocol (None = every protocol), optionally one destination port range."""
    if proto is None:
        return ALL_SERVICES
    if first is None or proto not in PORTED:
        return ServiceSet.of({proto: FULL_PORTS})
    return ServiceSet.of({proto: ((first, last if last is not None else first),)})


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_V4_MAX = (1 << 32) - 1
_V6_MAX = (1 << 128) - 1


@dataclass(frozen=True, slots=True)
class AddressSet:
    """IP addresses as sorted, merged, inclusive integer ranges, per family."""

    v4: Intervals = ()
    v6: Intervals = ()

    @staticmethod
    def of(items: Iterable[IPAddress | IPNetwork]) -> AddressSet:
        v4: list[tuple[int, int]] = []
        v6: list[tuple[int, int]] = []
        for item in items:
            if isinstance(item, ipaddress.IPv4Address | ipaddress.IPv6Address):
                rng = (int(item), int(item))
            else:
                rng = (int(item.network_address), int(item.broadcast_address))
            (v4 if item.version == 4 else v6).append(rng)
        return AddressSet(_merge(v4), _merge(v6))

    def contains(self, ip: IPAddress) -> bool:
        return _contains(self.v4 if ip.version == 4 else self.v6, int(ip))

    def union(self, other: AddressSet) -> AddressSet:
        return AddressSet(_merge(self.v4 + other.v4), _merge(self.v6 + other.v6))

    def difference(self, other: AddressSet) -> AddressSet:
        return AddressSet(_subtract(self.v4, other.v4), _subtract(self.v6, other.v6))

    def patched(self, remove: AddressSet, add: AddressSet) -> AddressSet:
        """`self` without `remove`, with `add`: for a few addresses changing in a large set, only the ranges
        around them are touched (the rest is copied as it is). The same object when nothing changes."""
        v4, v6 = _patch(self.v4, remove.v4, add.v4), _patch(self.v6, remove.v6, add.v6)
        return self if v4 is self.v4 and v6 is self.v6 else AddressSet(v4, v6)

    def complement(self) -> AddressSet:
        return EVERYWHERE.difference(self)

    @property
    def is_empty(self) -> bool:
        return not self.v4 and not self.v6

    def ranges(self) -> Iterator[tuple[IPAddress, IPAddress]]:
        for lo, hi in self.v4:
            yield ipaddress.IPv4Address(lo), ipaddress.IPv4Address(hi)
        for lo, hi in self.v6:
            yield ipaddress.IPv6Address(lo), ipaddress.IPv6Address(hi)

    def prefixes(self) -> Iterator[IPNetwork]:
        for lo, hi in self.ranges():
            yield from ipaddress.summarize_address_range(lo, hi)

    def __str__(self) -> str:
        items = [str(p) for p in self.prefixes()]
        if len(items) > 6:
            items = [*items[:5], f"... ({len(items)} prefixes)"]
        return ", ".join(items) if items else "nothing"


EVERYWHERE = AddressSet(((0, _V4_MAX),), ((0, _V6_MAX),))
NOWHERE = AddressSet()
