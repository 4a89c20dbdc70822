"""Reachability matrices: the engine's verdict for every ordered pair of pods and every probe."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from contracts.engine import Engine, Verdict

PROTOCOLS = ("TCP", "UDP", "SCTP")


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


@dataclass(frozen=True, slots=True)
class Matrix:
    pods: tuple[str, ...]
    probes: tuple[Probe, ...]
    verdicts: tuple[tuple[tuple[Verdict, ...], ...], ...]  # [probe][src][dst]

    def allowed(self, probe: int, src: int, dst: int) -> bool:
        return self.verdicts[probe][src][dst].allowed

    def to_json(self) -> dict[str, Any]:
        """The stable shape of `matrix -o json` (DESIGN 7)."""
        return {
            "pods": list(self.pods),
            "probes": [
                {"port": p.port, "protocol": p.protocol,
                 "allowed": {s: {d: self.allowed(i, si, di) for di, d in enumerate(self.pods)}
                             for si, s in enumerate(self.pods)}}
                for i, p in enumerate(self.probes)
            ],
        }


def compute_matrix(engine: Engine, probes: Sequence[Probe]) -> Matrix:
    pods = sorted(engine.model.endpoints, key=lambda p: p.key)
    eps = [engine.endpoint(p) for p in pods]
    verdicts = tuple(
        tuple(tuple(engine.decide(s, d, probe.port, probe.protocol) for d in eps) for s in eps)
        for probe in probes
    )
    return Matrix(tuple(p.key for p in pods), tuple(probes), verdicts)
