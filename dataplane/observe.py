"""What the packets do: build the lab from a snapshot, apply every node's rendered ruleset, probe every
ordered pod pair, tear down. The result has the shape of the engine's matrix so the two compare cell by
cell (`epgbridge matrix --dataplane`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from contracts.engine import Engine
from contracts.matrix import Probe
from dataplane.apply import NodeDataplane
from dataplane.lab import Lab, LabPod
from dataplane.lab import Probe as LabProbe
from epg.errors import EpgbridgeError


def lab_pods(engine: Engine, probes: Sequence[Probe]) -> list[LabPod]:
    """Every pod with its snapshot IP and node, listening on its container ports and on every probe, so that
    a probe measures policy and never a closed port."""
    out = []
    for pod in sorted(engine.model.endpoints, key=lambda p: p.key):
        if pod.node is None:
            raise EpgbridgeError(f"pod {pod.key} has no spec.nodeName: the lab needs to know its node")
        ports = {(cp.port, cp.protocol) for cp in pod.ports} | {(p.port, p.protocol) for p in probes}
        out.append(LabPod(pod.key, str(pod.ip), pod.node, tuple(sorted(ports))))
    return out


def observe_matrix(engine: Engine, probes: Sequence[Probe], *, progress: Callable[[str], None] | None = None,
                   timeout: float = 0.5) -> dict[str, Any]:
    """The observed matrix, in the JSON shape of `matrix -o json`."""
    pods = lab_pods(engine, probes)
    ir = engine.compile(sorted({p.node for p in pods}))
    keys = [p.key for p in pods]
    with Lab(pods, progress=progress) as lab:
        for node in ir.nodes:
            NodeDataplane(node, netns=lab.node_netns(node)).apply(ir)
        jobs = [LabProbe(s.key, d.ip, probe.port, probe.protocol) for probe in probes for s in pods for d in pods]
        if progress is not None:
            progress(f"probing {len(jobs)} connections")
        results = iter(lab.probe(jobs, timeout=timeout))
        allowed = [{s: {d: next(results) for d in keys} for s in keys} for _ in probes]
    return {"pods": keys, "probes": [{"port": p.port, "protocol": p.protocol, "allowed": a}
                                     for p, a in zip(probes, allowed, strict=True)]}


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
