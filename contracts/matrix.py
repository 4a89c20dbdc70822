"""Reachability matrices: the verdict for every ordered pair of pods and every probe, from the compiled rules.

Per probe, a pod's row is a bit set over the pods it may open connections to. The rows come from the same
compiled rules the dataplane enforces (a property test checks them against `decide` on random clusters), as
set algebra over the address groups, never pair by pair: a pod's egress (both layers) is the union of the
groups its rules allow for the probe; its peers' ingress is turned around by group (a source reaches the
destinations whose rules allow a group it is in). So a matrix costs about the size of the policy plus a few
big-integer operations per pod, and no reason is built for a cell nobody looks at: `Matrix.verdict` asks the
engine for one cell's reasons when they are shown. `group_by` summarises a large matrix by namespace or EPG.

A pod is all of its addresses; a matrix probes one of them per pod: its address of the family asked for (pods
without one are left out), or by default its first address (then two pods whose first addresses are of
different families have no connection: the cell is denied, as `decide` says).
"""

from __future__ import annotations

import bisect
import json
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any

from contracts.engine import Engine, Verdict
from contracts.ir import AddressGroup, NamedPort, PodIR, Rules
from contracts.netpol import PROTOCOL_NUMBERS
from contracts.sets import AddressSet, IPAddress
from epg.kube import Pod

PROTOCOLS = ("TCP", "UDP", "SCTP")
GROUP_BY = ("namespace", "epg")


@dataclass(frozen=True, slots=True)
class Probe:
    port: int
    protocol: str

    def __str__(self) -> str:
        return f"{self.port}/{self.protocol}"

    @staticmethod
    def parse(text: str) -> Probe:
        """`PORT/PROTO`, e.g. 80/TCP or 53/udp; raises ValueError with a user-facing message."""
        port_text, sep, proto = text.partition("/")
        proto = proto.upper()
        if (not sep or not re.fullmatch(r"[0-9]{1,5}", port_text) or not 1 <= int(port_text) <= 65535
                or proto not in PROTOCOLS):
            raise ValueError(f"probe {text!r} must be PORT/PROTO with PORT 1-65535 and PROTO one of "
                             f"{', '.join(PROTOCOLS)} (e.g. 80/TCP)")
        return Probe(int(port_text), proto)


class Matrix:
    """Every ordered pair of pods, every probe: `rows[probe][src]` is a bit set over the destinations."""

    def __init__(self, engine: Engine, pods: Sequence[Pod], probes: Sequence[Probe],
                 rows: Sequence[Sequence[int]], addresses: Sequence[IPAddress] | None = None,
                 would: Sequence[Sequence[int]] | None = None) -> None:
        """`would`: where objects are in audit mode, the rows with them enforced too."""
        self.engine = engine
        self.pod_objects = tuple(pods)
        self.pods = tuple(p.key for p in pods)
        # The address each pod is probed at (default: its first).
        self.addresses = tuple(addresses) if addresses is not None else tuple(p.ips[0] for p in pods)
        self.probes = tuple(probes)
        self.rows = tuple(tuple(r) for r in rows)
        self.would = None if would is None else tuple(tuple(r) for r in would)

    def allowed(self, probe: int, src: int, dst: int) -> bool:
        return bool(self.rows[probe][src] >> dst & 1)

    def would_drop(self, probe: int, src: int, dst: int) -> bool:
        """Allowed, but denied once the objects in audit mode are enforced."""
        return self.would is not None and bool((self.rows[probe][src] & ~self.would[probe][src]) >> dst & 1)

    def would_drops(self, probe: int) -> dict[str, dict[str, dict[str, Any]]]:
        """The `wouldDrop` map of one probe: {SRC: {DST: {"layer", "objects"}}} for the would-drop cells."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        if self.would is None:
            return out
        for si, src in enumerate(self.pods):
            for di in _bits(self.rows[probe][si] & ~self.would[probe][si]):
                out.setdefault(src, {})[self.pods[di]] = attribution(self.verdict(probe, si, di))
        return out

    def verdict(self, probe: int, src: int, dst: int) -> Verdict:
        """One cell with its reasons (the engine's `decide`: only for the cells that are shown)."""
        p = self.probes[probe]
        return self.engine.decide(self.engine.endpoint(self.addresses[src]),
                                  self.engine.endpoint(self.addresses[dst]), p.port, p.protocol)

    def to_json(self) -> dict[str, Any]:
        """The stable shape of `matrix -o json` (DESIGN 7), as objects (small matrices; `write_json` streams)."""
        return {"pods": list(self.pods), "probes": [
            {"port": p.port, "protocol": p.protocol,
             "allowed": {s: {d: self.allowed(i, si, di) for di, d in enumerate(self.pods)}
                         for si, s in enumerate(self.pods)},
             **({"wouldDrop": self.would_drops(i)} if self.would is not None else {})}
            for i, p in enumerate(self.probes)]}

    def write_json(self, out: IO[str]) -> None:
        """`to_json()`, written row by row: the memory of one row, however many pods."""
        names = [json.dumps(p) for p in self.pods]
        out.write('{"pods": [' + ", ".join(names) + '], "probes": [')
        for i, probe in enumerate(self.probes):
            out.write(("" if i == 0 else ", ") + f'{{"port": {probe.port}, "protocol": "{probe.protocol}", '
                      '"allowed": {')
            for si, src in enumerate(names):
                row = self.rows[i][si]
                cells = ", ".join(f"{d}: {'true' if row >> di & 1 else 'false'}" for di, d in enumerate(names))
                out.write(("" if si == 0 else ", ") + f"{src}: {{{cells}}}")
            out.write("}")
            if self.would is not None:
                out.write(', "wouldDrop": ' + json.dumps(self.would_drops(i)))
            out.write("}")
        out.write("]}\n")

    def group_by(self, by: str) -> GroupedMatrix:
        """The matrix summarised by namespace or by EPG (pods whose annotation isolates them: "(isolated)").
        A cell counts the pairs allowed; where all or none are, it names the objects that decided, if the few
        pairs asked agree (up to OBJECTS_UP_TO cells: past that, counts only, as `objects_omitted` says)."""
        if by == "namespace":
            keys = [p.namespace for p in self.pod_objects]
        else:
            keys = [str(ref) if (ref := self.engine.model.epg_of(p)) is not None else "(isolated)"
                    for p in self.pod_objects]
        names = sorted(set(keys))
        number = {n: i for i, n in enumerate(names)}
        group_of = [number[k] for k in keys]
        masks = [0] * len(names)
        for i, g in enumerate(group_of):
            masks[g] |= 1 << i
        sizes = [m.bit_count() for m in masks]
        with_objects = len(names) ** 2 <= OBJECTS_UP_TO
        cells = []
        for pi in range(len(self.probes)):
            counts = [[0] * len(names) for _ in names]
            for s, row in enumerate(self.rows[pi]):
                tally = counts[group_of[s]]
                if row.bit_count() < 16 * len(names):  # sparse: count the pods themselves
                    for d in _bits(row):
                        tally[group_of[d]] += 1
                else:
                    for b, mask in enumerate(masks):
                        tally[b] += (row & mask).bit_count()
            table: dict[str, dict[str, GroupCell]] = {}
            for a, name_a in enumerate(names):
                table[name_a] = {}
                for b, name_b in enumerate(names):
                    own = sizes[a] if a == b else 0  # a pod and itself: not a pair
                    pairs, allowed = sizes[a] * sizes[b] - own, counts[a][b] - own
                    objects = (self._deciding(pi, masks[a], masks[b])
                               if with_objects and pairs and allowed in (0, pairs) else None)
                    table[name_a][name_b] = GroupCell(allowed, pairs, objects)
            cells.append(table)
        return GroupedMatrix(by, tuple(names), dict(zip(names, sizes, strict=True)), self.probes, cells,
                             objects_omitted=not with_objects)

    def _deciding(self, probe: int, sources: int, destinations: int) -> tuple[str, ...] | None:
        """The objects that decided a few pairs of a uniform cell, if they agree (else None)."""
        srcs, dsts = _bits(sources), _bits(destinations)
        sample = {(srcs[0], dsts[0]), (srcs[-1], dsts[-1]), (srcs[len(srcs) // 2], dsts[-1]),
                  (srcs[0], dsts[len(dsts) // 2])}
        seen = {_deciding(self.verdict(probe, s, d)) for s, d in sample if s != d}
        return next(iter(seen)) if len(seen) == 1 else None


# Grouped cells whose deciding objects are looked up (each asks the engine about a few pairs).
OBJECTS_UP_TO = 20_000


@dataclass(frozen=True, slots=True)
class GroupCell:
    allowed: int  # pairs allowed
    pairs: int  # ordered pairs of two pods in the cell
    objects: tuple[str, ...] | None  # where every pair agrees: the objects that decided (None: not uniform)


@dataclass(frozen=True, slots=True)
class GroupedMatrix:
    by: str
    groups: tuple[str, ...]
    sizes: dict[str, int]
    probes: tuple[Probe, ...]
    cells: list[dict[str, dict[str, GroupCell]]]  # [probe][from][to]
    objects_omitted: bool = False  # too many cells to name the deciding objects (OBJECTS_UP_TO)

    def to_json(self) -> dict[str, Any]:
        def cell(c: GroupCell) -> dict[str, Any]:
            out: dict[str, Any] = {"allowed": c.allowed, "pairs": c.pairs}
            if c.objects is not None:
                out["objects"] = list(c.objects)
            return out
        return {"groupBy": self.by, "groups": [{"name": g, "pods": self.sizes[g]} for g in self.groups],
                "objectsOmitted": self.objects_omitted,
                "probes": [{"port": p.port, "protocol": p.protocol,
                            "cells": {a: {b: cell(c) for b, c in row.items()} for a, row in self.cells[i].items()}}
                           for i, p in enumerate(self.probes)]}


def attribution(v: Verdict) -> dict[str, Any]:
    """The layer a drop or would-drop of this verdict is attributed to, and the objects that decide it there
    (the shape of `dropped` and `wouldDrop` cells)."""
    layer = v.deciding_layer
    if layer is None:
        return {"layer": None, "objects": []}
    lv = v.layer(layer)
    decided = lv.audit if v.allowed and lv.audit is not None else lv
    return {"layer": layer, "objects": list(decided.denied_by)}


def _deciding(v: Verdict) -> tuple[str, ...]:
    """The objects of the layer(s) that decided a verdict: the denying ones, or for an allowed one both."""
    layers = [v.epg, v.netpol] if v.allowed else [lv for lv in (v.epg, v.netpol) if not lv.allowed]
    return tuple(sorted({o for lv in layers for r in lv.reasons for o in r.objects}))


_BYTE_BITS = tuple(tuple(b for b in range(8) if byte >> b & 1) for byte in range(256))


def _bits(value: int) -> list[int]:
    """The positions of the set bits, in order."""
    data = value.to_bytes((value.bit_length() + 7) // 8, "little")
    return [i * 8 + b for i, byte in enumerate(data) if byte for b in _BYTE_BITS[byte]]


class _Index:
    """Pods by their address of one family, for turning address sets into bit sets over the pods (a pod without
    an address of the family is in no set)."""

    def __init__(self, pods: Sequence[Pod], family: int) -> None:
        pairs = sorted((int(a), i) for i, p in enumerate(pods) for a in p.ips if a.version == family)
        self.family = family
        self._addresses = [a for a, _ in pairs]
        self._positions = [i for _, i in pairs]
        self.size = len(pods)
        self._cache: dict[str, int] = {}

    def bits(self, addrs: AddressSet) -> int:
        out = bytearray((self.size + 8) // 8)
        ints, positions = self._addresses, self._positions
        for lo, hi in addrs.v4 if self.family == 4 else addrs.v6:
            for i in positions[bisect.bisect_left(ints, lo):bisect.bisect_right(ints, hi)]:
                out[i >> 3] |= 1 << (i & 7)
        return int.from_bytes(out, "little")

    def group(self, key: str, members: Callable[[], AddressSet]) -> int:
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = self.bits(members())
        return found


def _members_of(engine: Engine, key: str) -> Callable[[], AddressSet]:
    return lambda: engine.members(key)


FAMILIES = {"ipv4": 4, "ipv6": 6}


def matrix_pods(engine: Engine, family: int | None = None) -> list[tuple[Pod, IPAddress]]:
    """The pods of a matrix in key order, each with the address it is probed at: its address of `family`, or
    (None) its first address. Pods without an address of `family` are left out."""
    out = []
    for p in sorted(engine.model.endpoints, key=lambda p: p.key):
        address = p.ips[0] if family is None else p.address(family)
        if address is not None:
            out.append((p, address))
    return out


def compute_matrix(engine: Engine, probes: Sequence[Probe], family: int | None = None) -> Matrix:
    """Every ordered pair of pods, every probe, at each pod's address of `family` (4 or 6; default: each pod's
    first address); pods without an address of `family` are left out."""
    chosen = matrix_pods(engine, family)
    pods = [p for p, _ in chosen]
    compiled = [engine.pod_ir(p) for p in pods]
    rows = [[1 << s for s in range(len(pods))] for _ in probes]  # a pod may always reach itself
    would = [[1 << s for s in range(len(pods))] for _ in probes] if engine.has_audit else None
    for f in sorted({a.version for _, a in chosen}):
        # The pods probed at an address of this family: a connection from one of them goes to one of them.
        speaking = sum(1 << i for i, (_, a) in enumerate(chosen) if a.version == f)
        index = _Index(pods, f)
        for pi, probe in enumerate(probes):
            for target, with_audit in ((rows, False), *(((would, True),) if would is not None else ())):
                part = _rows(engine, pods, compiled, index, probe, with_audit=with_audit)
                if speaking == (1 << len(pods)) - 1:  # one family (the common case): the rows as they are
                    target[pi] = part
                    continue
                for s in _bits(speaking):
                    target[pi][s] |= part[s] & speaking
    return Matrix(engine, pods, probes, rows, [a for _, a in chosen], would)


def _rows(engine: Engine, pods: list[Pod], compiled: list[PodIR], index: _Index, probe: Probe, *,
          with_audit: bool = False) -> list[int]:
    """Each source's row: the destinations it may open `probe` to, as enforced, or (`with_audit`) with the
    objects in audit mode enforced too (their audit rules, which pass what they would drop, left out)."""
    proto, port = PROTOCOL_NUMBERS[probe.protocol], probe.port
    everyone = (1 << len(pods)) - 1

    def group_bits(g: AddressGroup) -> int:
        return everyone if g.everywhere else index.group(g.key, _members_of(engine, g.key))

    named_cache: dict[NamedPort, int] = {}

    def named(n: NamedPort) -> int:
        """The pods whose port `n` is the probe's."""
        found = named_cache.get(n)
        if found is None:
            hits = [a for a, number in engine.named_port(n).items() if number == port] if n.protocol == proto else []
            found = named_cache[n] = index.bits(AddressSet.of(hits))
        return found

    # Egress: the destinations each source's rules allow (rules objects are shared: once per object).
    egress_cache: dict[int, int] = {}

    def egress(rules: Rules) -> int:
        if rules is None:
            return everyone
        found = egress_cache.get(id(rules))
        if found is None:
            found = 0
            for r in rules:
                if with_audit and r.audit:
                    continue
                if r.services.contains(proto, port):
                    found |= group_bits(r.peers)
                for n in r.named:
                    found |= group_bits(r.peers) & named(n)
            egress_cache[id(rules)] = found
        return found

    # Ingress, turned around: for every group, the destinations whose rules admit it on the probe; a source
    # reaches the union of that over the groups it is in (and whatever admits everyone).
    def admitted_by(attr: str, open_when_none: bool) -> tuple[int, dict[str, int]]:
        to_all = 0  # destinations open to every source (unrestricted, or a rule without peers)
        by_group: dict[str, int] = defaultdict(int)
        classes: dict[int, tuple[Rules, int]] = {}
        for i, c in enumerate(compiled):
            rules = getattr(c, attr)
            entry = classes.get(id(rules))
            classes[id(rules)] = (rules, (entry[1] if entry else 0) | 1 << i)
        for rules, members in classes.values():
            if rules is None:
                if open_when_none:
                    to_all |= members
                continue
            for r in rules:
                if with_audit and r.audit:
                    continue
                targets = members if r.services.contains(proto, port) else 0
                for n in r.named:  # the destination's own port by that name
                    targets |= members & named(n)
                if not targets:
                    continue
                if r.peers.everywhere:
                    to_all |= targets
                else:
                    by_group[r.peers.key] |= targets
        return to_all, by_group

    layers = [admitted_by("ingress_epg", False), admitted_by("ingress_netpol", True)]
    groups_of: list[list[tuple[int, int]]] = [[] for _ in pods]  # source -> (layer, destinations) to OR in
    for layer, (_, by_group) in enumerate(layers):
        for key, destinations in by_group.items():
            for s in _bits(index.group(key, _members_of(engine, key))):
                groups_of[s].append((layer, destinations))
    rows = []
    for s, c in enumerate(compiled):
        reach = [layers[0][0], layers[1][0]]
        for layer, destinations in groups_of[s]:
            reach[layer] |= destinations
        row = egress(c.egress_epg) & egress(c.egress_netpol) & reach[0] & reach[1]
        rows.append(row | 1 << s)  # a pod may always reach itself
    return rows
