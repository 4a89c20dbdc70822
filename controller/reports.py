"""Human renderings of engine answers: the matrix as a text table or HTML, and `explain` as text."""

from __future__ import annotations

import os
import sys

import templates
from contracts.engine import LayerVerdict, Verdict
from contracts.matrix import Matrix

GREEN, RED, DIM, BOLD, RESET = "\033[32m", "\033[31m", "\033[2m", "\033[1m", "\033[0m"


def use_colour(stream: object = sys.stdout) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)()) and "NO_COLOR" not in os.environ


def matrix_table(m: Matrix, colour: bool) -> str:
    def paint(text: str, code: str) -> str:
        return f"{code}{text}{RESET}" if colour else text

    width = max((len(p) for p in m.pods), default=4)
    ids = [str(i + 1) for i in range(len(m.pods))]
    cell = max(2, max((len(i) for i in ids), default=1))
    lines = []
    for pi, probe in enumerate(m.probes):
        lines.append(paint(f"{probe}", BOLD) + "  (rows: from, columns: to; ✓ allowed, ✗ denied)")
        lines.append(" " * (width + 5) + " ".join(i.rjust(cell) for i in ids))
        for si, src in enumerate(m.pods):
            cells = []
            for di in range(len(m.pods)):
                ok = m.allowed(pi, si, di)
                mark = ("✓" if ok else "✗").rjust(cell)
                cells.append(paint(mark, DIM if si == di else GREEN if ok else RED))
            lines.append(f"{ids[si].rjust(3)}  {src.ljust(width)} " + " ".join(cells))
        lines.append("")
    return "\n".join(lines)


def matrix_html(m: Matrix) -> str:
    probes = []
    for pi, probe in enumerate(m.probes):
        rows = []
        for si, src in enumerate(m.pods):
            cells = []
            for di in range(len(m.pods)):
                v = m.verdicts[pi][si][di]
                css = "self" if si == di else "allow" if v.allowed else "deny"
                cells.append({"allowed": v.allowed, "css": css, "reason": v.summary})
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
