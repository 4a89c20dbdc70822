"""`epgbridge lab {up|probe|down}`: the netns lab as something that outlives one command.

`up` builds the lab from a snapshot (every pod with its IP, node and container ports), applies every node's
ruleset and records the lab (its prefix and a copy of the snapshot) under the state directory; the namespaces
stay after the command exits. `probe` attaches to that lab by its prefix, refuses a snapshot other than the
lab's, starts the probe servers (on the container ports and on every probe) and prints the observed matrix,
in the shape of `matrix -o json`, with the nodes' attributed drops; it exits 3 when the packets (or their
attribution) disagree with the engine, and records the drops for `drops`, which shows them (and, `--stats`,
the rule counters of every node's table). `down` removes one lab, the labs `up` recorded, or (`--all`) every
leftover `epgb-` namespace.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from contracts.engine import Engine
from contracts.matrix import FAMILIES, Probe, compute_matrix
from contracts.model import Model
from controller import reports
from controller.live import snapshot_text, write_output
from controller.snapshot import add_files_argument, model_of, read_documents
from dataplane.apply import NodeDataplane
from dataplane.lab import Lab, LabError, cleanup_leftovers
from dataplane.netns import require_tools
from dataplane.observe import attribution_differences, differences, lab_pods, probe_matrix
from epg.errors import Disagreement, EpgbridgeError, UsageError

LEFTOVER_PREFIX = "epgb-"
# Where `lab up` records its labs: $EPGBRIDGE_STATE_DIR/labs, by default /run/epgbridge/labs (gone at reboot, like
# the namespaces themselves).
STATE_DIR_ENV = "EPGBRIDGE_STATE_DIR"


def _probe(text: str) -> Probe:
    try:
        return Probe.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _records() -> Path:
    return Path(os.environ.get(STATE_DIR_ENV) or "/run/epgbridge") / "labs"


def recorded_labs() -> list[str]:
    """The prefixes of the labs `lab up` built and `lab down` has not removed yet."""
    folder = _records()
    return sorted(f.name.removesuffix(".yaml") for f in folder.glob("*.yaml")) if folder.is_dir() else []


def _record(prefix: str, docs_text: str) -> None:
    try:
        _records().mkdir(parents=True, exist_ok=True)
        write_output(str(_records() / f"{prefix}.yaml"), docs_text)
    except (OSError, EpgbridgeError) as exc:
        print(f"warning: could not record lab {prefix} under {_records()} ({exc}): `lab down` will need "
              f"--prefix {prefix}", file=sys.stderr)


def _forget(prefix: str) -> None:
    (_records() / f"{prefix}.yaml").unlink(missing_ok=True)


def cmd_up(args: argparse.Namespace) -> int:
    require_tools("ip", "nft")
    docs = read_documents(args.files)
    engine = Engine(model_of(docs, args.verbose))
    lab = Lab(lab_pods(engine, ()), prefix=args.prefix)
    lab.up()
    try:
        ir = engine.compile(lab.nodes)
        applied = [f"{node}: {NodeDataplane(node, netns=lab.node_netns(node)).apply(ir).added} set elements"
                   for node in ir.nodes]
        # The probe servers belong to this process; `lab probe` starts its own (Lab.attach).
        lab.detach()
    except BaseException:
        lab.down()
        raise
    _record(lab.prefix, snapshot_text(docs, "the files " + " ".join(args.files)))
    files = " ".join(f"-f {f}" for f in args.files)
    print(f"lab {lab.prefix} is up: {len(lab.nodes)} nodes, {len(lab.pods)} pods; rulesets applied "
          f"({'; '.join(applied)})")
    print(f"probe it:     epgbridge lab probe {files} --prefix {lab.prefix} --probe 80/TCP")
    print(f"tear it down: epgbridge lab down --prefix {lab.prefix}")
    return 0


def observe(engine: Engine, probes: Sequence[Probe], prefix: str, family: int | None = None
            ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Probe every ordered pod pair in the running lab `prefix` (each pod at its address of `family`, or its
    first): the matrix in the shape of `matrix -o json` (with the drops attributed), and the drop lines,
    aggregated."""
    from dataplane.drops import Drop, DropLog

    lab = Lab(lab_pods(engine, probes), prefix=prefix)
    lab.attach()
    drops: list[Drop] = []
    try:
        observed = probe_matrix(lab, engine, probes, family, drops=drops)
    finally:
        lab.detach()
    aggregated = DropLog("lab", lines_per_window=len(drops) + 1)
    lines = [line for d in drops if (line := aggregated.add(d, time.time()))]
    lines += aggregated.flush(time.time())
    return observed, lines


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


def _same_snapshot(prefix: str, model: Model, probes: Sequence[Probe], family: int | None = None) -> None:
    """Refuse to probe lab `prefix` with a snapshot other than the one `lab up` built it from: the packets would
    follow the lab's rulesets and every difference would look like a dataplane bug. Same means the same pods
    (name, address, node) and the same engine answers for these probes; a lab without a record is not checked."""
    record = _records() / f"{prefix}.yaml"
    if not record.is_file():
        return
    built = model_of(read_documents([str(record)]))
    theirs, ours = lab_pods(Engine(built), ()), lab_pods(Engine(model), ())
    how = (f"probe it with the snapshot it was built from, or rebuild it: epgbridge lab down --prefix {prefix}; "
           "epgbridge lab up -f ...")
    if [(p.key, p.addresses, p.node) for p in theirs] != [(p.key, p.addresses, p.node) for p in ours]:
        gone = sorted({p.key for p in theirs} - {p.key for p in ours})
        new = sorted({p.key for p in ours} - {p.key for p in theirs})
        detail = ", ".join([*(f"{k} only in the lab" for k in gone[:2]), *(f"{k} not in the lab" for k in new[:2])])
        raise EpgbridgeError(f"lab {prefix} was built from another snapshot: its pods differ "
                             f"({detail or 'in their addresses or nodes'}); " + how)
    _, diffs = differences(compute_matrix(Engine(model), probes, family).to_json(),
                           compute_matrix(Engine(built), probes, family).to_json())
    if diffs:
        raise EpgbridgeError(f"lab {prefix} was built from another snapshot: for these probes the engine answers "
                             f"{len(diffs)} cell(s) differently (the lab's rulesets are the old snapshot's); " + how)


def cmd_probe(args: argparse.Namespace) -> int:
    require_tools("ip", "nft")
    prefix = args.prefix or _only_recorded()
    model = model_of(read_documents(args.files), args.verbose)
    family = FAMILIES[args.family] if args.family else None
    _same_snapshot(prefix, model, args.probes, family)
    engine = Engine(model)
    try:
        observed, lines = observe(engine, args.probes, prefix, family)
    except LabError as exc:
        raise EpgbridgeError(f"{exc} (build it with `epgbridge lab up` and the same snapshot)") from None
    _record_drops(prefix, lines)
    expected = compute_matrix(engine, args.probes, family).to_json()
    if args.output == "json":
        print(json.dumps(observed, indent=2))
    else:
        sys.stdout.write(_table(observed, expected, reports.use_colour()))
    cells, diffs = differences(observed, expected)
    diffs = diffs or attribution_differences(observed, engine, family)
    if diffs:
        sys.stdout.flush()
        if args.output == "json":  # the table marks them; JSON readers get them on stderr
            for line in diffs:
                print(f"  {line}", file=sys.stderr)
        raise Disagreement(f"the dataplane disagrees with the engine on {len(diffs)} of {cells} cells")
    return 0


def _record_drops(prefix: str, lines: list[dict[str, Any]]) -> None:
    try:
        write_output(str(_records() / f"{prefix}.drops.json"), json.dumps(lines, indent=1) + "\n")
    except (OSError, EpgbridgeError) as exc:
        print(f"warning: could not record the drops under {_records()} ({exc}): `lab drops` will not show them",
              file=sys.stderr)


def cmd_drops(args: argparse.Namespace) -> int:
    """The drops of the lab's last `lab probe` (filtered), or with --stats its tables' rule counters now."""
    from dataplane.drops import describe, matches

    prefix = args.prefix or _only_recorded()
    if args.stats:
        return _stats(prefix, args)
    record = _records() / f"{prefix}.drops.json"
    if not record.is_file():
        raise EpgbridgeError(f"no drops recorded for lab {prefix}: run `epgbridge lab probe --prefix {prefix} ...` "
                             "first")
    lines = [line for line in json.loads(record.read_text())
             if matches(line, namespace=args.namespace, pod=args.pod, layer=args.layer)]
    if args.output == "json":
        for line in lines:
            print(json.dumps(line))
    else:
        print("\n".join(describe(line) for line in lines) if lines else "no drops (with these filters)")
    return 0


def _stats(prefix: str, args: argparse.Namespace) -> int:
    """Every node's rule counters, as counts per NetworkPolicy rule and contract (the tables `lab up` applied,
    rebuilt from the recorded snapshot to know which line is which)."""
    from dataplane.drops import read_counters, rule_stats
    from dataplane.render import node_table

    record = _records() / f"{prefix}.yaml"
    if not record.is_file():
        raise EpgbridgeError(f"lab {prefix} has no recorded snapshot (was it built by `epgbridge lab up`?)")
    engine = Engine(model_of(read_documents([str(record)])))
    lab = Lab(lab_pods(engine, ()), prefix=prefix)
    ir = engine.compile(lab.nodes)
    out = []
    for node in lab.nodes:
        try:
            counters = read_counters(lab.node_netns(node))
        except OSError as exc:
            raise EpgbridgeError(f"lab {prefix}, node {node}: {exc}") from None
        out += [{"node": node, **s.to_json()} for s in rule_stats(engine, node_table(ir, node), counters)]
    return _print_stats(out, args.output)


def _print_stats(rows: list[dict[str, Any]], output: str) -> int:
    if output == "json":
        print(json.dumps({"rules": rows}, indent=2))
        return 0
    if not rows:
        print("no rule lines on these nodes (no policy selects their pods)")
        return 0
    width = max(len(r["object"]) for r in rows)
    for r in rows:
        shared = " (a line shared with other rules)" if r["shared"] else ""
        mark = "never matched" if r["connections"] == 0 else f"{r['connections']} new connection(s)"
        print(f"{r['node']}  {r['object'].ljust(width)}  {r['rule']}: {mark}{shared}")
    return 0


def _only_recorded() -> str:
    labs = recorded_labs()
    if len(labs) != 1:
        raise UsageError("give --prefix P: " + (f"{len(labs)} labs are up ({', '.join(labs)})" if labs
                                                 else "no lab recorded by `epgbridge lab up`"))
    return labs[0]


def cmd_down(args: argparse.Namespace) -> int:
    require_tools("ip")
    if args.prefix is not None:
        Lab((), prefix=args.prefix)  # validates the prefix before anything is deleted
        prefixes = [args.prefix]
    elif args.all:
        prefixes = [LEFTOVER_PREFIX]
    else:
        prefixes = recorded_labs()
        if not prefixes:
            print("no lab recorded by `epgbridge lab up` on this host: name one with --prefix P, or remove every "
                  f"{LEFTOVER_PREFIX}* namespace with --all")
            return 0
    for prefix in prefixes:
        removed = cleanup_leftovers(prefix)
        what = f"every {prefix}* lab" if args.all else f"lab {prefix}"
        print(f"{what}: removed {len(removed)} namespaces and links" if removed else f"{what}: nothing to remove")
    for prefix in recorded_labs() if args.all else prefixes:
        _forget(prefix)
        (_records() / f"{prefix}.drops.json").unlink(missing_ok=True)
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
    lab.set_defaults(func=lambda _args: (lab.print_help(), 2)[1])
    actions = lab.add_subparsers(dest="lab_command", metavar="ACTION", parser_class=type(lab))

    p = actions.add_parser("up", help="build the lab and apply every node's ruleset; it stays up",
                           description="Build the lab from the snapshot and apply every node's ruleset. The "
                           "namespaces stay after the command exits; it prints the lab's prefix.")
    add_files_argument(p)
    p.add_argument("--prefix", metavar="P", help="namespace name prefix (default: epgb-<6 hex>-)")
    p.set_defaults(func=cmd_up)

    p = actions.add_parser("probe", help="send real packets between every pod pair of a running lab",
                           description="Attach to the lab built by `lab up` from the same snapshot (a different "
                           "snapshot is refused), send a new connection for every ordered pod pair and probe, and "
                           "print the observed matrix (json: the shape of `matrix -o json`). Exit status 3 when the "
                           "packets disagree with the engine.")
    add_files_argument(p)
    p.add_argument("--prefix", metavar="P", help="the prefix `lab up` printed (default: the one lab recorded)")
    p.add_argument("--probe", dest="probes", action="append", type=_probe, required=True, metavar="PORT/PROTO",
                   help="destination port and protocol (TCP, UDP, SCTP), e.g. 80/TCP; repeatable")
    p.add_argument("-o", "--output", choices=("table", "json"), default="table",
                   help="table (default; marks cells where the engine disagrees) or json")
    p.add_argument("--family", choices=tuple(FAMILIES), metavar="ipv4|ipv6",
                   help="probe every pod at its address of this family, leaving out pods without one (default: "
                   "each pod's first address)")
    p.set_defaults(func=cmd_probe)

    p = actions.add_parser("drops", help="the drops of the last `lab probe`, attributed (or --stats: rule counters)",
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           description="Show the drops the lab's nodes logged during the last `lab probe`: each "
                           "connection the node dropped (or, audit mode, passed as a would-drop), with the layer "
                           "and the objects that decided it, as the agent reports them on a real node "
                           "(`epgbridge drops`). Identical drops are one line with a count. --stats shows every "
                           "node's rule counters instead: the new connections each NetworkPolicy rule and contract "
                           "admitted, and the ones that never matched.\n\nexample:\n  epgbridge lab drops "
                           "--namespace shop\n  epgbridge lab drops --stats")
    p.add_argument("--prefix", metavar="P", help="the lab's prefix (default: the one lab recorded)")
    p.add_argument("-n", "--namespace", help="only drops from or to pods of this namespace")
    p.add_argument("--pod", metavar="NAME|NS/NAME", help="only drops from or to this pod")
    p.add_argument("--layer", choices=("epg", "networkPolicy"), help="only drops of this layer")
    p.add_argument("--stats", action="store_true", help="the rule counters of every node's table instead")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text", help="text (default) or json "
                   "(one object per line)")
    p.set_defaults(func=cmd_drops)

    p = actions.add_parser("down", help="remove a lab (default: the labs `lab up` recorded)",
                           description="Remove the lab with this prefix; without --prefix, the labs `lab up` "
                           f"recorded on this host; with --all, every namespace whose name starts with "
                           f"{LEFTOVER_PREFIX} (leftovers of any run, other users' labs included).")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--prefix", metavar="P", help="the lab's prefix")
    which.add_argument("--all", action="store_true", help=f"every {LEFTOVER_PREFIX}* namespace on this host")
    p.set_defaults(func=cmd_down)
