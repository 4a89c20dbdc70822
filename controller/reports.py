"""Human renderings of engine answers: the matrix as a text table or HTML, and `explain` as text."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

import templates
from contracts.engine import LayerVerdict, Verdict
from contracts.matrix import GroupedMatrix, Matrix
from contracts.model import Model

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
        would = probe.get("wouldDrop", {})
        lines.append(paint(f"{probe['port']}/{probe['protocol']}", BOLD)
                     + "  (rows: from, columns: to; ✓ allowed, ✗ denied"
                     + (", ~ allowed, would be denied in audit mode)" if would else ")"))
        lines.append(" " * (width + 5) + " ".join(i.rjust(cell) for i in ids))
        for si, src in enumerate(pods):
            cells = []
            for di, dst in enumerate(pods):
                ok = allowed[src][dst]
                mark = "~" if dst in would.get(src, {}) else "✓" if ok else "✗"
                cells.append(paint(mark.rjust(cell), DIM if si == di else GREEN if ok else RED))
            lines.append(f"{ids[si].rjust(3)}  {src.ljust(width)} " + " ".join(cells))
        lines.append("")
    return "\n".join(lines)


# A denied cell names the layer that denied it: (EPG layer allowed, NetworkPolicy layer allowed) -> mark, css.
_DENIED = {(False, True): ("E", "deny-epg"), (True, False): ("N", "deny-np"), (False, False): ("EN", "deny-both")}


def pod_epgs(model: Model) -> dict[str, tuple[str, str]]:
    """Each pod's EPG for the HTML matrix: (short, how it got there)."""
    out = {}
    for pod in model.endpoints:
        placement = model.placements[pod]
        out[pod.key] = (str(placement.epg) if placement.epg is not None else "isolated", placement.describe())
    return out


def _cell(v: Verdict, self_cell: bool, observed: bool | None, drop: dict[str, Any] | None = None
          ) -> dict[str, str]:
    """One cell of the HTML matrix: its mark, css class and hover text (the templates' `cell` macro). `drop`:
    the node's attribution of the observed drop or would-drop (matrix --dataplane)."""
    if observed is not None and observed != v.allowed:
        seen = "passed" if observed else "was dropped"
        return {"mark": "!" + ("✓" if observed else "✗"), "css": "disagree",
                "reason": f"observed: the packet {seen}; engine: {'allowed' if v.allowed else 'denied'}: {v.summary}"}
    prefix = "" if observed is None else f"observed: the packet {'passed' if observed else 'was dropped'}; engine: "
    if drop is not None:
        prefix = (f"the node attributed the {'would-drop' if v.allowed else 'drop'} to the {drop['layer']} layer: "
                  f"{', '.join(drop['objects']) or 'no object'}; " + prefix)
    if self_cell:
        return {"mark": "✓", "css": "self", "reason": prefix + v.summary}
    if v.would_drop:
        return {"mark": "~", "css": "would", "reason": prefix + v.summary}
    if v.allowed:
        return {"mark": "✓", "css": "allow", "reason": prefix + v.summary}
    mark, css = _DENIED[(v.epg.allowed, v.netpol.allowed)]
    return {"mark": mark, "css": css, "reason": prefix + v.summary}


def matrix_html(m: Matrix, observed: dict[str, Any] | None = None,
                epgs: Mapping[str, tuple[str, str]] | None = None) -> str:
    """The engine's matrix: each denied cell names the layer that denied it, each pod its EPG (`epgs`, from
    `pod_epgs`), the reason on hover. With `observed`, the cells are the lab's verdicts and a cell where the
    packets disagree with the engine is marked."""
    epgs = epgs or {}
    probes = []
    for pi, probe in enumerate(m.probes):
        rows = []
        for si, src in enumerate(m.pods):
            cells = []
            for di, dst in enumerate(m.pods):
                seen = None if observed is None else bool(observed["probes"][pi]["allowed"][src][dst])
                drop = None
                if observed is not None:
                    found = observed["probes"][pi]
                    drop = (found.get("dropped", {}).get(src, {}).get(dst)
                            or found.get("wouldDrop", {}).get(src, {}).get(dst))
                cells.append(_cell(m.verdict(pi, si, di), si == di, seen, drop))
            rows.append({"src": src, "epg": epgs.get(src, ("", ""))[0], "cells": cells})
        probes.append({"name": str(probe), "rows": rows})
    pod_rows = [{"key": k, "epg": epgs.get(k, ("", ""))[0], "detail": epgs.get(k, ("", ""))[1]} for k in m.pods]
    return templates.render("matrix.html.j2", pods=list(m.pods), probes=probes, pod_rows=pod_rows,
                            observed=observed is not None, audit=m.would is not None)


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
        if lv.audit is not None:
            word = f"{RED}WOULD DENY{RESET}" if colour else "WOULD DENY"
            out.append(f"    in audit mode (reported, not enforced): {word}")
            out += [f"      - {r.text}" for r in lv.audit.reasons]
        return out

    lines = [
        f"{v.port}/{v.protocol} from {_describe(v, 'src')}",
        f"{' ' * len(f'{v.port}/{v.protocol} ')}to {_describe(v, 'dst')}",
        f"verdict: {paint(v.allowed)}"
        + ("" if v.src.ip == v.dst.ip else " (a connection needs both layers to allow it)")
        + ("; it would be denied once the objects in audit mode are enforced" if v.would_drop else ""),
    ]
    lines += layer("EPG layer (contracts)", v.epg)
    lines += layer("NetworkPolicy layer", v.netpol)
    return "\n".join(lines)


def grouped_table(g: GroupedMatrix, colour: bool) -> str:
    """A matrix summarised by namespace or EPG: per cell, the pairs allowed out of the pairs there."""
    def paint(text: str, code: str) -> str:
        return f"{code}{text}{RESET}" if colour else text

    width = max((len(n) for n in g.groups), default=4)
    ids = [str(i + 1) for i in range(len(g.groups))]
    lines = []
    for pi, probe in enumerate(g.probes):
        cells = g.cells[pi]
        texts = {(a, b): f"{c.allowed}/{c.pairs}" if c.pairs else "-" for a, row in cells.items()
                 for b, c in row.items()}
        cell = max([len(t) for t in texts.values()] + [len(i) for i in ids])
        lines.append(paint(f"{probe.port}/{probe.protocol}", BOLD) + f"  by {g.by} (rows: from, columns: to; "
                     "pairs allowed / pairs)")
        lines.append(" " * (width + 5) + " ".join(i.rjust(cell) for i in ids))
        for ai, a in enumerate(g.groups):
            row = []
            for b in g.groups:
                c = cells[a][b]
                code = "" if not c.pairs else GREEN if c.allowed == c.pairs else RED if c.allowed == 0 else ""
                row.append(paint(texts[(a, b)].rjust(cell), code) if code else texts[(a, b)].rjust(cell))
            lines.append(f"{ids[ai].rjust(3)}  {a.ljust(width)} " + " ".join(row))
        lines.append("")
    return "\n".join(lines)


def grouped_html(g: GroupedMatrix) -> str:
    """The grouped matrix as HTML: a cell per pair of groups, shaded by the share of pairs allowed, the deciding
    objects on hover where every pair agrees; each group's row folds open to its numbers."""
    probes = []
    for pi, probe in enumerate(g.probes):
        rows = []
        for a in g.groups:
            cells = []
            for b in g.groups:
                c = g.cells[pi][a][b]
                share = c.allowed / c.pairs if c.pairs else 0.0
                css = ("self" if not c.pairs else "allow" if c.allowed == c.pairs else "deny" if c.allowed == 0
                       else "mixed")
                title = f"{a} -> {b}: {c.allowed} of {c.pairs} pairs allowed"
                if c.objects:
                    title += "; decided by " + ", ".join(c.objects)
                cells.append({"text": f"{share:.0%}" if c.pairs else "-", "css": css, "title": title,
                              "allowed": c.allowed, "pairs": c.pairs, "to": b})
            rows.append({"src": a, "size": g.sizes[a], "cells": cells})
        probes.append({"name": str(probe), "rows": rows})
    return templates.render("matrix_grouped.html.j2", by=g.by, groups=list(g.groups), probes=probes)
