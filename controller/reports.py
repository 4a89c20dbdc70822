"""Human renderings of engine answers: the matrix as a text table or HTML, and `explain` as text."""

from __future__ import annotations

import os
import sys
from typing import Any

import templates
from contracts.engine import LayerVerdict, Verdict
from contracts.matrix import Matrix

GREEN, RED, DIM, BOLD, RESET = "\033[32m", "\033[31m", "\033[2m", "\033[1m", "\033[0m"


def use_colour(stream: object = sys.stdout) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)()) and "NO_COLOR" not in os.environ


def matrix_table(data: dict[str, Any], colour: bool) -> str:
    """A matrix in the JSON shape of `matrix -o json` (the engine's or the observed one) as text tables."""
    def paint(text: str, code: str) -> str:
        return f"{code}{text}{RESET}" if colour else text

    pods: list[str] = data["pods"]
    width = max((len(p) for p in pods), default=4)
    ids = [str(i + 1) for i in range(len(pods))]
    cell = max(2, max((len(i) for i in ids), default=1))
    lines = []
    for probe in data["probes"]:
        allowed = probe["allowed"]
        lines.append(paint(f"{probe['port']}/{probe['protocol']}", BOLD)
                     + "  (rows: from, columns: to; ✓ allowed, ✗ denied)")
        lines.append(" " * (width + 5) + " ".join(i.rjust(cell) for i in ids))
        for si, src in enumerate(pods):
            cells = []
            for di, dst in enumerate(pods):
                ok = allowed[src][dst]
                cells.append(paint(("✓" if ok else "✗").rjust(cell), DIM if si == di else GREEN if ok else RED))
            lines.append(f"{ids[si].rjust(3)}  {src.ljust(width)} " + " ".join(cells))
        lines.append("")
    return "\n".join(lines)


def matrix_html(m: Matrix, observed: dict[str, Any] | None = None) -> str:
    """The engine's matrix with each cell's reason on hover; with `observed`, the lab's verdicts are shown
    and the engine's reason says what was expected."""
    probes = []
    for pi, probe in enumerate(m.probes):
        rows = []
        for si, src in enumerate(m.pods):
            cells = []
            for di, dst in enumerate(m.pods):
                v = m.verdicts[pi][si][di]
                allowed, reason = v.allowed, v.summary
                if observed is not None:
                    allowed = observed["probes"][pi]["allowed"][src][dst]
                    seen = "passed" if allowed else "was dropped"
                    reason = f"observed: the packet {seen}; engine: {reason}"
                css = "self" if si == di else "allow" if allowed else "deny"
                cells.append({"allowed": allowed, "css": css, "reason": reason})
            rows.append({"src": src, "cells": cells})
        probes.append({"name": str(probe), "rows": rows})
    return templates.render("matrix.html.j2", pods=list(m.pods), probes=probes)


def _describe(v: Verdict, end: str) -> str:
    ep, why = (v.src, v.src_epg) if end == "src" else (v.dst, v.dst_epg)
    why = why.removeprefix(ep.name + " ")
    return f"{ep.name} ({why})" if ep.pod is None else f"{ep.name} ({ep.ip}; {why})"


def explain_text(v: Verdict, colour: bool) -> str:
    def paint(ok: bool) -> str:
        word = "ALLOWED" if ok else "DENIED"
        return f"{GREEN if ok else RED}{word}{RESET}" if colour else word

    def layer(title: str, lv: LayerVerdict) -> list[str]:
        out = [f"  {title}: {paint(lv.allowed)}"]
        out += [f"    - {r.text}" for r in lv.reasons]
        return out

    lines = [
        f"{v.port}/{v.protocol} from {_describe(v, 'src')}",
        f"{' ' * len(f'{v.port}/{v.protocol} ')}to {_describe(v, 'dst')}",
        f"verdict: {paint(v.allowed)}"
        + ("" if v.src.ip == v.dst.ip else " (a connection needs both layers to allow it)"),
    ]
    lines += layer("EPG layer (contracts)", v.epg)
    lines += layer("NetworkPolicy layer", v.netpol)
    return "\n".join(lines)
