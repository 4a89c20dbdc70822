"""CLI commands of the node dataplane: `render nft` and the lab-backed `matrix --dataplane`."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from typing import Any

from contracts.engine import Engine
from contracts.matrix import Matrix, Probe
from controller.snapshot import add_files_argument, load_model
from dataplane.render import render_node
from epg.errors import EpgbridgeError


def require_lab_tools() -> None:
    if os.geteuid() != 0:
        raise EpgbridgeError("the lab needs root (network namespaces and nftables): run as root")
    missing = [tool for tool in ("nft", "ip") if shutil.which(tool) is None]
    if missing:
        raise EpgbridgeError(f"the lab needs {' and '.join(missing)}: install nftables and iproute2")


def observed_matrix(engine: Engine, expected: Matrix, probes: Sequence[Probe], family: int | None = None
                    ) -> tuple[dict[str, Any], int, list[str]]:
    """Run the lab: what the packets did, the cells compared, and one line per cell where they disagree with
    the engine (the caller reports those and exits 3)."""
    from dataplane.observe import attribution_differences, differences, observe_matrix

    require_lab_tools()
    observed = observe_matrix(engine, probes, family, progress=lambda msg: print(msg, file=sys.stderr))
    cells, diffs = differences(observed, expected.to_json())
    if not diffs:
        diffs = attribution_differences(observed, engine, family)
        dropped = sum(len(row) for p in observed["probes"] for row in p["dropped"].values())
        would = sum(len(row) for p in observed["probes"] for row in p["wouldDrop"].values())
        if not diffs:
            print(f"the dataplane agrees with the engine on all {cells} cells; the nodes attributed every drop "
                  f"({dropped}) and would-drop ({would}) as explain does", file=sys.stderr)
    return observed, cells, diffs


def cmd_render_nft(args: argparse.Namespace) -> int:
    model = load_model(args.files, args.verbose)
    for n in model.errors:
        print(f"warning: {n} (pods that read it are isolated)", file=sys.stderr)
    ir = Engine(model).compile([args.node])
    if not ir.nodes[args.node].pods:
        known = sorted({p.node for p in model.endpoints if p.node})
        print(f"warning: no pod runs on node {args.node!r} (nodes in the input: {', '.join(known) or 'none'})",
              file=sys.stderr)
    sys.stdout.write(render_node(ir, args.node))
    return 0


def register(sub: Any, render_sub: Any) -> None:
    del sub  # the lab commands live in controller/cmd_lab.py
    p = render_sub.add_parser(
        "nft", help="the nftables ruleset of one node",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Print the nft script that replaces table inet epgbridge on NODE in one transaction: a few "
        "constant rules, and the policy of the node's pods in sets.\n\nexample:\n"
        "  epgbridge render nft --node worker-1 -f examples/cluster | nft -c -f -")
    p.add_argument("--node", required=True, help="the node name (spec.nodeName of its pods)")
    add_files_argument(p)
    p.set_defaults(func=cmd_render_nft)
