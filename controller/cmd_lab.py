"""`epgbridge lab {up|probe|down}`: the netns lab as something that outlives one command.

`up` builds the lab from a snapshot (every pod with its IP, node and container ports) and applies every node's
ruleset; the namespaces stay after the command exits. `probe` attaches to that lab by its prefix, starts the
probe servers (on the container ports and on every probe) and prints the observed matrix, in the shape of
`matrix -o json`. `down` removes one lab, or every leftover `epgb-` namespace.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from contracts.engine import Engine
from contracts.matrix import Probe, compute_matrix
from controller import reports
from controller.snapshot import add_files_argument, load_model
from dataplane.apply import NodeDataplane
from dataplane.lab import Lab, LabError, cleanup_leftovers
from dataplane.lab import Probe as LabProbe
from dataplane.netns import require_tools
from dataplane.observe import lab_pods
from epg.errors import EpgbridgeError

LEFTOVER_PREFIX = "epgb-"


def _probe(text: str) -> Probe:
    try:
        return Probe.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _require(*tools: str) -> None:
    try:
        require_tools(*tools)
    except LabError as exc:
        raise EpgbridgeError(str(exc)) from None


def cmd_up(args: argparse.Namespace) -> int:
    _require("ip", "nft")
    engine = Engine(load_model(args.files))
    try:
        lab = Lab(lab_pods(engine, ()), prefix=args.prefix)
        lab.up()
    except LabError as exc:
        raise EpgbridgeError(str(exc)) from None
    try:
        ir = engine.compile(lab.nodes)
        applied = [f"{node}: {NodeDataplane(node, netns=lab.node_netns(node)).apply(ir).added} set elements"
                   for node in ir.nodes]
        # The probe servers belong to this process; `lab probe` starts its own (Lab.attach).
        lab.detach()
    except BaseException:
        lab.down()
        raise
    files = " ".join(f"-f {f}" for f in args.files)
    print(f"lab {lab.prefix} is up: {len(lab.nodes)} nodes, {len(lab.pods)} pods; rulesets applied "
          f"({'; '.join(applied)})")
    print(f"probe it:     epgbridge lab probe {files} --prefix {lab.prefix} --probe 80/TCP")
    print(f"tear it down: epgbridge lab down --prefix {lab.prefix}")
    return 0


def observe(engine: Engine, probes: Sequence[Probe], prefix: str) -> dict[str, Any]:
    """Probe every ordered pod pair in the running lab `prefix`; the matrix in the shape of `matrix -o json`."""
    pods = lab_pods(engine, probes)
    keys = [p.key for p in pods]
    lab = Lab(pods, prefix=prefix)
    lab.attach()
    try:
        jobs = [LabProbe(s.key, d.ip, probe.port, probe.protocol) for probe in probes for s in pods for d in pods]
        results = iter(lab.probe(jobs))
    finally:
        lab.detach()
    return {"pods": keys, "probes": [{"port": p.port, "protocol": p.protocol,
                                      "allowed": {s: {d: next(results) for d in keys} for s in keys}}
                                     for p in probes]}


def _table(observed: dict[str, Any], expected: dict[str, Any], colour: bool) -> str:
    """The observed matrix as the engine's table draws it, each cell marked where the packets and the engine
    disagree."""
    pods: list[str] = observed["pods"]
    width = max((len(p) for p in pods), default=4)
    ids = [str(i + 1) for i in range(len(pods))]
    cell = max(2, max((len(i) for i in ids), default=1)) + 1
    lines, wrong = [], []
    for got, want in zip(observed["probes"], expected["probes"], strict=True):
        name = f"{got['port']}/{got['protocol']}"
        lines.append(f"{name}  observed (rows: from, columns: to; ✓ passed, ✗ dropped, ! the engine disagrees)")
        lines.append(" " * (width + 5) + " ".join(i.rjust(cell) for i in ids))
        for si, src in enumerate(pods):
            cells = []
            for dst in pods:
                ok, agree = got["allowed"][src][dst], got["allowed"][src][dst] == want["allowed"][src][dst]
                mark = ("✓" if ok else "✗") + ("" if agree else "!")
                code = reports.DIM if src == dst else reports.GREEN if ok else reports.RED
                cells.append(f"{code}{mark.rjust(cell)}{reports.RESET}" if colour else mark.rjust(cell))
                if not agree:
                    wrong.append(f"{name} {src} -> {dst}: engine {'allows' if not ok else 'denies'}, "
                                 f"packets {'passed' if ok else 'dropped'}")
            lines.append(f"{ids[si].rjust(3)}  {src.ljust(width)} " + " ".join(cells))
        lines.append("")
    cells = len(pods) ** 2 * len(observed["probes"])
    lines.append(f"the dataplane disagrees with the engine on {len(wrong)} of {cells} cells:" if wrong
                 else f"the dataplane agrees with the engine on all {cells} cells")
    lines += [f"  {w}" for w in wrong]
    return "\n".join(lines) + "\n"


def cmd_probe(args: argparse.Namespace) -> int:
    _require("ip", "nft")
    engine = Engine(load_model(args.files))
    try:
        observed = observe(engine, args.probes, args.prefix)
    except LabError as exc:
        raise EpgbridgeError(f"{exc} (build it with `epgbridge lab up` and the same snapshot)") from None
    if args.output == "json":
        print(json.dumps(observed, indent=2))
    else:
        expected = compute_matrix(engine, args.probes).to_json()
        sys.stdout.write(_table(observed, expected, reports.use_colour()))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    _require("ip")
    prefix = args.prefix or LEFTOVER_PREFIX
    try:
        if args.prefix is not None:
            Lab((), prefix=args.prefix)  # validates the prefix before anything is deleted
        removed = cleanup_leftovers(prefix)
    except LabError as exc:
        raise EpgbridgeError(str(exc)) from None
    what = f"lab {prefix}" if args.prefix is not None else f"every {prefix}* lab"
    print(f"{what}: removed {len(removed)} namespaces and links" if removed else f"{what}: nothing to remove")
    return 0


def register(subparsers: Any) -> None:
    """Add `lab {up|probe|down}` to the CLI's subcommands."""
    lab = subparsers.add_parser(
        "lab", help="nodes and pods as network namespaces: real packets through the rendered rulesets",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Build a lab of network namespaces from a snapshot (each node a namespace with its rendered "
        "nftables ruleset, each pod a namespace with its IP), probe it with real packets, tear it down. Needs "
        "root, nft and ip.\n\nexample:\n  epgbridge lab up -f examples/cluster\n  epgbridge lab probe -f "
        "examples/cluster --prefix epgb-1a2b3c- --probe 80/TCP\n  epgbridge lab down --prefix epgb-1a2b3c-")
    actions = lab.add_subparsers(dest="lab_command", metavar="ACTION", parser_class=type(lab))
    actions.required = True

    p = actions.add_parser("up", help="build the lab and apply every node's ruleset; it stays up",
                           description="Build the lab from the snapshot and apply every node's ruleset. The "
                           "namespaces stay after the command exits; it prints the lab's prefix.")
    add_files_argument(p)
    p.add_argument("--prefix", metavar="P", help="namespace name prefix (default: epgb-<6 hex>-)")
    p.set_defaults(func=cmd_up)

    p = actions.add_parser("probe", help="send real packets between every pod pair of a running lab",
                           description="Attach to the lab built by `lab up` from the same snapshot, send a new "
                           "connection for every ordered pod pair and probe, and print the observed matrix "
                           "(json: the shape of `matrix -o json`).")
    add_files_argument(p)
    p.add_argument("--prefix", required=True, metavar="P", help="the prefix `lab up` printed")
    p.add_argument("--probe", dest="probes", action="append", type=_probe, required=True, metavar="PORT/PROTO",
                   help="destination port and protocol (TCP, UDP, SCTP), e.g. 80/TCP; repeatable")
    p.add_argument("-o", "--output", choices=("table", "json"), default="table",
                   help="table (default; marks cells where the engine disagrees) or json")
    p.set_defaults(func=cmd_probe)

    p = actions.add_parser("down", help="remove a lab (or every epgb- leftover)",
                           description="Remove the lab with this prefix; without --prefix, every namespace "
                           f"whose name starts with {LEFTOVER_PREFIX}.")
    p.add_argument("--prefix", metavar="P", help="the lab's prefix (default: every epgb- lab)")
    p.set_defaults(func=cmd_down)
