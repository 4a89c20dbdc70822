"""What the packets do: build the lab from a snapshot, apply every node's rendered ruleset, probe every
ordered pod pair, tear down. The result has the shape of the engine's matrix so the two compare cell by
cell (`epgbridge matrix --dataplane`): the same pods, each probed at the address the matrix shows (its
address of the family asked for, or its first); plus, per probe, `dropped` and `wouldDrop`: each node
namespace's drop log (its own NFLOG stream, read in-process while the probes run) attributed as the agent
attributes it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from typing import Any

from contracts.engine import LAYERS, Engine
from contracts.matrix import Probe, matrix_pods
from dataplane import names
from dataplane.apply import NodeDataplane
from dataplane.drops import Drop, observed_drops
from dataplane.lab import Lab, LabPod
from dataplane.lab import Probe as LabProbe
from dataplane.nflog import LoggedPacket, NflogReader
from epg.errors import EpgbridgeError


class DropReaders:
    """The drop log of every node namespace of a lab, read while probes run (a context manager)."""

    def __init__(self, lab: Lab, nodes: Sequence[str]) -> None:
        self._stack = ExitStack()
        self.readers = {node: self._stack.enter_context(NflogReader(names.LOG_GROUP, netns=lab.node_netns(node)))
                        for node in nodes}

    def packets(self, quiet: float = 0.15, limit: float = 5.0) -> Iterator[tuple[str, LoggedPacket]]:
        """Everything logged so far, reading until no node has logged anything for `quiet` seconds."""
        deadline = time.monotonic() + limit
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < quiet and time.monotonic() < deadline:
            got = False
            for node, reader in self.readers.items():
                for packet in reader.read(timeout=0.02):
                    got = True
                    yield node, packet
            if got:
                idle_since = time.monotonic()

    @property
    def lost(self) -> int:
        return sum(r.lost for r in self.readers.values())

    def __enter__(self) -> DropReaders:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()


def drop_cells(drops: Sequence[Drop], pods: Sequence[str], probes: Sequence[Probe]
               ) -> list[tuple[dict[str, dict[str, dict[str, Any]]], dict[str, dict[str, dict[str, Any]]]]]:
    """Per probe: `dropped` and `wouldDrop`, {SRC: {DST: {"layer", "objects"}}}, from the nodes' attributed
    drops (a connection dropped at one node and logged once; a would-drop may be logged by both ends and both
    layers: the EPG layer's is named first, as `Verdict.deciding_layer` does)."""
    known = set(pods)
    index = {(p.port, p.protocol): i for i, p in enumerate(probes)}
    out: list[tuple[dict[str, Any], dict[str, Any]]] = [({}, {}) for _ in probes]
    for d in sorted(drops, key=lambda d: LAYERS.index(d.layer) if d.layer in LAYERS else len(LAYERS)):
        i = index.get((d.port, d.protocol))
        if i is None or d.src not in known or d.dst not in known:
            continue
        cells = out[i][1 if d.audit else 0]
        cells.setdefault(d.src, {}).setdefault(d.dst, {"layer": d.layer, "objects": list(d.objects)})
    return out


def lab_pods(engine: Engine, probes: Sequence[Probe]) -> list[LabPod]:
    """Every pod with all of its snapshot addresses and its node, listening on its container ports and on
    every probe, so that a probe measures policy and never a closed port."""
    out = []
    for pod in sorted(engine.model.endpoints, key=lambda p: p.key):
        if pod.node is None:
            raise EpgbridgeError(f"pod {pod.key} has no spec.nodeName: the lab needs to know its node")
        ports = {(cp.port, cp.protocol) for cp in pod.ports} | {(p.port, p.protocol) for p in probes}
        ips = tuple(str(a) for a in pod.ips)
        out.append(LabPod(pod.key, ips[0], pod.node, tuple(sorted(ports)), ips))
    return out


def probe_matrix(lab: Lab, engine: Engine, probes: Sequence[Probe], family: int | None = None, *,
                 timeout: float = 0.5, drops: list[Drop] | None = None) -> dict[str, Any]:
    """Probe every ordered pair of the matrix's pods in a running lab: the observed matrix, in the JSON shape of
    `matrix -o json`, with each probe's drops as the nodes logged them, attributed (also added to `drops`). A
    pair whose two addresses are of different families has no connection to probe: denied, as the engine
    says."""
    chosen = matrix_pods(engine, family)
    keys = [p.key for p, _ in chosen]
    pairs = [(s.key, str(d), probe) for probe in probes for s, a in chosen for _, d in chosen
             if d.version == a.version]
    with DropReaders(lab, lab.nodes) as readers:
        results = iter(lab.probe([LabProbe(s, d, probe.port, probe.protocol) for s, d, probe in pairs],
                                 timeout=timeout))
        found = observed_drops(engine, readers.packets())
    if drops is not None:
        drops.extend(found)
    allowed = [{s.key: {d.key: next(results) if b.version == a.version else False for d, b in chosen}
                for s, a in chosen} for _ in probes]
    return observed_json(keys, probes, allowed, found)


def observe_matrix(engine: Engine, probes: Sequence[Probe], family: int | None = None, *,
                   progress: Callable[[str], None] | None = None, timeout: float = 0.5) -> dict[str, Any]:
    """The observed matrix, in the JSON shape of `matrix -o json`."""
    pods = lab_pods(engine, probes)
    ir = engine.compile(sorted({p.node for p in pods}))
    with Lab(pods, progress=progress) as lab:
        for node in ir.nodes:
            NodeDataplane(node, netns=lab.node_netns(node)).apply(ir)
        if progress is not None:
            progress(f"probing {len(probes) * len(matrix_pods(engine, family)) ** 2} connections")
        return probe_matrix(lab, engine, probes, family, timeout=timeout)


def differences(observed: dict[str, Any], expected: dict[str, Any]) -> tuple[int, list[str]]:
    """Compare two matrices of the `matrix -o json` shape: (cells compared, one line per cell that differs)."""
    cells, lines = 0, []
    for p, q in zip(observed["probes"], expected["probes"], strict=True):
        for s, row in p["allowed"].items():
            for d, ok in row.items():
                cells += 1
                if ok != q["allowed"][s][d]:
                    lines.append(f"{p['port']}/{p['protocol']} {s} -> {d}: packets {'passed' if ok else 'dropped'}, "
                                 f"engine says {'denied' if ok else 'allowed'}")
    return cells, lines


def observed_json(keys: Sequence[str], probes: Sequence[Probe], allowed: Sequence[dict[str, dict[str, bool]]],
                  drops: Sequence[Drop]) -> dict[str, Any]:
    """The observed matrix in the shape of `matrix -o json`, with each probe's `dropped` and `wouldDrop` (for
    the cells whose probe the node dropped, and passed: a would-drop logged on the way of a connection dropped
    further on is no would-drop of it)."""
    cells = drop_cells(drops, keys, probes)
    out = []
    for p, a, (dropped, would) in zip(probes, allowed, cells, strict=True):
        dropped = {s: kept for s, row in dropped.items() if (kept := {d: c for d, c in row.items() if not a[s][d]})}
        would = {s: kept for s, row in would.items() if (kept := {d: c for d, c in row.items() if a[s][d]})}
        out.append({"port": p.port, "protocol": p.protocol, "allowed": a, "dropped": dropped, "wouldDrop": would})
    return {"pods": list(keys), "probes": out}


def attribution_differences(observed: dict[str, Any], engine: Engine, family: int | None = None) -> list[str]:
    """Where the nodes' attribution is not the engine's: a dropped probe with no attributed drop, or with a
    layer where the engine does not deny, or other objects than `explain` names there; a would-drop missing,
    unexpected or attributed otherwise."""
    lines = []
    at = {p.key: engine.endpoint(address) for p, address in matrix_pods(engine, family)}
    for probe in observed["probes"]:
        what = f"{probe['port']}/{probe['protocol']}"
        for s, row in probe["allowed"].items():
            for d, passed in row.items():
                if s == d or at[s].ip.version != at[d].ip.version:
                    continue  # a pair across families: no connection, nothing to log
                v = engine.decide(at[s], at[d], probe["port"], probe["protocol"])
                if not passed:
                    cell = probe["dropped"].get(s, {}).get(d)
                    if cell is None:
                        lines.append(f"{what} {s} -> {d}: dropped, but no node logged the drop")
                    elif v.allowed or v.layer(cell["layer"]).allowed:
                        lines.append(f"{what} {s} -> {d}: the node attributes the drop to the {cell['layer']} "
                                     f"layer, where the engine does not deny: {v.summary}")
                    elif cell["objects"] != list(v.layer(cell["layer"]).denied_by):
                        lines.append(f"{what} {s} -> {d}: the node names {cell['objects']}, explain names "
                                     f"{list(v.layer(cell['layer']).denied_by)}")
                    continue
                cell = probe["wouldDrop"].get(s, {}).get(d)
                if (cell is None) != (not v.would_drop):
                    lines.append(f"{what} {s} -> {d}: {'a would-drop logged' if cell else 'no would-drop logged'}"
                                 f"; engine: {v.summary}")
                elif cell is not None:
                    audit = v.layer(cell["layer"]).audit
                    if audit is None or cell["objects"] != list(audit.denied_by) or cell["layer"] != v.deciding_layer:
                        lines.append(f"{what} {s} -> {d}: the would-drop is attributed to {cell['layer']} "
                                     f"{cell['objects']}; engine: {v.summary}")
    return lines
