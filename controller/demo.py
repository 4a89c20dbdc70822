"""`epgbridge demo`: a guided tour of the example cluster through the same code paths as the CLI."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from contracts.engine import Engine
from contracts.matrix import Matrix, Probe, compute_matrix
from controller import reports
from controller.snapshot import load_model
from epg.errors import Disagreement, EpgbridgeError

PROBES = (Probe(80, "TCP"), Probe(8080, "TCP"), Probe(8081, "TCP"), Probe(5432, "TCP"), Probe(53, "UDP"),
          Probe(9100, "TCP"))
# Two instructive verdicts of the example: a contract's deny entry wins although NetworkPolicy allows, and a
# named port resolves per destination pod although the contract permits.
EXPLAIN = (
    ("storefront/web-6d4cf56db6-7xkq2", "storefront/api-7b9f8c5d44-h2wlt", Probe(8081, "TCP")),
    ("monitoring/prometheus-8c5b7d9f4-zl6sd", "data/postgres-5f8d7c9b6-tq4wx", Probe(9100, "TCP")),
)


EXAMPLE_HINT = "examples/cluster"


def _step(title: str) -> None:
    print(f"\n== {title}")


def run_demo(args: argparse.Namespace) -> int:
    from controller.cli import EXAMPLE

    files = args.files or [_shown(EXAMPLE)]
    if not args.files and not EXAMPLE.is_dir():
        raise EpgbridgeError(f"the example cluster is not at {EXAMPLE}; run the demo from a checkout, "
                             "or pass -f PATH")
    colour = reports.use_colour()
    _step(f"epgbridge validate -f {' '.join(files)}")
    model = load_model(files)
    c = model.cluster
    for n in (*model.errors, *model.warnings):
        print(f"  {n.severity}: {n}")
    print(f"  {len(c.namespaces)} namespaces, {len(c.pods)} pods, {len(c.policies)} NetworkPolicies, "
          f"{len(c.groups)} EndpointGroups, {len(c.contracts)} Contracts")
    _step("where each pod sits (annotation inheritance: pod > workload > namespace > cluster default)")
    width = max((len(p.key) for p in model.endpoints), default=0)
    for pod in sorted(model.endpoints, key=lambda p: p.key):
        print(f"  {pod.key:<{width}}  {model.placements[pod].describe()}")
    engine = Engine(model)
    _step("epgbridge matrix " + " ".join(f"--probe {p}" for p in PROBES))
    print(reports.matrix_table(compute_matrix(engine, PROBES).to_json(), colour))
    matrix = compute_matrix(engine, PROBES)
    for src, dst, probe in EXPLAIN:
        if src in model.pods_by_key and dst in model.pods_by_key:
            _step(f"epgbridge explain --from {src} --to {dst} --probe {probe}")
            verdict = engine.decide(engine.endpoint(src), engine.endpoint(dst), probe.port, probe.protocol)
            print(reports.explain_text(verdict, colour))
    _step("epgbridge push: the EPGs and contracts to an APIC (the simulator we ship, started here)")
    sys.stdout.flush()
    from controller.cmd_apic import demo_apic

    demo_apic(model, sys.stdout)
    _step("epgbridge matrix --dataplane: the same policy as nftables rulesets, tested with real packets")
    agrees = _demo_dataplane(engine, matrix)
    _step("what you just saw")
    print(WHAT_YOU_SAW.format(files=" ".join(files) if args.files else EXAMPLE_HINT), end="")
    sys.stdout.flush()
    if not agrees:
        raise Disagreement("the dataplane disagrees with the engine (see above)")
    return 0


WHAT_YOU_SAW = """\
  - validate: the snapshot loads; each pod's EPG comes from annotations (pod > workload > namespace > default)
  - matrix: a connection passes only when the EPG layer (contracts) AND the NetworkPolicy layer allow it
  - explain: the contract, filter entry and NetworkPolicy rule behind one verdict
  - push: the same EPGs and contracts as APIC objects; pushing again writes nothing
  - the dataplane: each node's nftables ruleset, compiled by the same engine, checked with real packets

== where next
  epgbridge matrix -f {files} --probe 8080/TCP -o html > matrix.html   # open it in a browser
  epgbridge explain -f {files} --from NS/POD --to NS/POD --probe PORT/PROTO
  your cluster:  epgbridge matrix --kubeconfig ~/.kube/config --probe 80/TCP  (or `epgbridge snapshot`)
  read: docs/walkthrough.md (this example, cell by cell), docs/semantics.md (the rules), docs/apic.md,
        docs/install.md (controller and agents in a cluster)
"""


def _shown(path: Path) -> str:
    """The path as the user would type it: relative to the current directory when it lies below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _demo_dataplane(engine: Engine, matrix: Matrix) -> bool:
    """Whether the packets agreed with the engine (True when the lab cannot run here)."""
    from controller.cmd_dataplane import require_lab_tools

    try:
        require_lab_tools()
    except EpgbridgeError as exc:
        print(f"  skipped: {exc}.\n  As root with nftables and iproute2, run: epgbridge matrix -f "
              f"{EXAMPLE_HINT} --probe 8080/TCP --dataplane")
        return True
    from dataplane.observe import differences, observe_matrix

    observed = observe_matrix(engine, PROBES)
    cells, diffs = differences(observed, matrix.to_json())
    nodes = sorted({p.node for p in engine.model.endpoints if p.node})
    print(f"  built {len(nodes)} node and {len(observed['pods'])} pod network namespaces, applied each node's "
          f"ruleset, sent {cells} probes:")
    if diffs:
        print(f"  the packets disagree with the engine on {len(diffs)} of {cells} cells "
              "(run matrix --dataplane to see them)")
        return False
    print(f"  what the packets did equals what the engine predicted, on all {cells} cells")
    return True
