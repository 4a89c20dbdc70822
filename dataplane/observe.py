"""What the packets do: build the lab from a snapshot, apply every node's rendered ruleset, probe every
ordered pod pair, tear down. The result has the shape of the engine's matrix so the two compare cell by
cell (`epgbridge matrix --dataplane`): the same pods, each probed at the address the matrix shows (its
address of the family asked for, or its first)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from contracts.engine import Engine
from contracts.matrix import Probe, matrix_pods
from dataplane.apply import NodeDataplane
from dataplane.lab import Lab, LabPod
from dataplane.lab import Probe as LabProbe
from epg.errors import EpgbridgeError


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
                 timeout: float = 0.5) -> dict[str, Any]:
    """Probe every ordered pair of the matrix's pods in a running lab: the observed matrix, in the JSON shape of
    `matrix -o json`. A pair whose two addresses are of different families has no connection to probe: denied,
    as the engine says."""
    chosen = matrix_pods(engine, family)
    keys = [p.key for p, _ in chosen]
    pairs = [(s.key, str(d), probe) for probe in probes for s, a in chosen for _, d in chosen
             if d.version == a.version]
    results = iter(lab.probe([LabProbe(s, d, probe.port, probe.protocol) for s, d, probe in pairs],
                             timeout=timeout))
    return {"pods": keys, "probes": [
        {"port": p.port, "protocol": p.protocol,
         "allowed": {s.key: {d.key: next(results) if b.version == a.version else False for d, b in chosen}
                     for s, a in chosen}}
        for p in probes]}


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
