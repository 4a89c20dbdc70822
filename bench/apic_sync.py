"""Benchmark: pushing a synthetic cluster (1,000 EPGs, 2,000 contracts) to the APIC simulator.

    python bench/apic_sync.py                    # the target size
    python bench/apic_sync.py --epgs 200 ...     # a custom size

Three runs against one simulator on 127.0.0.1 (plain HTTP, temporary SQLite state), each with its own session,
as three `epgbridge push` invocations would: a cold sync, a no-op resync, and a resync after one filter entry
of one contract changed. Targets: cold sync in at most 10 POSTs, no writes on the no-op, 1 POST for the
change, 1 login per run. Rendering and planning are timed apart from writing.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from apic_client import ApicSession, apply, plan, render_tenants
from apic_client.mo import from_json
from apic_client.simulator import Simulator
from bench.synth import synthetic_cluster
from contracts.loader import documents, load_cluster
from contracts.model import Model

PASSWORD = "bench-Passw0rd"


def model_of(docs: list[dict[str, Any]]) -> Model:
    return Model(load_cluster(documents("synthetic", docs)))


def change_one_contract(docs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """A copy of the documents with the first entry of the first contract moved to another port."""
    changed = copy.deepcopy(docs)
    contract = next(d for d in changed if d["kind"] == "Contract")
    entry = contract["spec"]["subjects"][0]["filters"][0]["entries"][0]
    entry["destinationPorts"] = "65001"
    flt = contract["spec"]["subjects"][0]["filters"][0]["name"]
    return changed, f"uni/tn-{contract['spec']['tenant']}/flt-{flt}/e-{entry['name']}"


def run(sim: Simulator, desired: list[dict[str, Any]]) -> dict[str, Any]:
    posts, gets = sim.counters.posts, sim.counters.gets
    with ApicSession(sim.url, "admin", PASSWORD, rate_limit=0) as session:
        t0 = time.perf_counter()
        result = plan(desired, session)
        t1 = time.perf_counter()
        apply(result, session)
        t2 = time.perf_counter()
        logins = session.counters.logins
    return {
        "plan_s": t1 - t0,
        "write_s": t2 - t1,
        "posts": sim.counters.posts - posts,
        "gets": sim.counters.gets - gets,
        "logins": logins,
        "changes": len(result.changes),
        "dns": [c.dn for c in result.changes],
        "kib": sum(len(json.dumps(p.payload)) for p in result.posts) / 1024,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epgs", type=int, default=1_000)
    parser.add_argument("--contracts", type=int, default=2_000)
    parser.add_argument("--pods", type=int, default=2_000)
    args = parser.parse_args()

    docs = synthetic_cluster(pods=args.pods, namespaces=50, policies=0, epgs=args.epgs,
                             contracts=args.contracts, nodes=10)
    t0 = time.perf_counter()
    desired = render_tenants(model_of(docs))
    render_s = time.perf_counter() - t0
    objects = sum(1 for tree in desired for _ in from_json(tree, "uni").walk())
    changed_docs, changed_dn = change_one_contract(docs)
    changed = render_tenants(model_of(changed_docs))

    with tempfile.TemporaryDirectory(prefix="epgbridge-bench-") as tmp:
        sim = Simulator(Path(tmp) / "apic.sqlite", tls=False, password=PASSWORD)
        sim.start("127.0.0.1", 0)
        try:
            rows = [("cold sync", run(sim, desired)), ("no-op resync", run(sim, desired)),
                    ("1 contract changed", run(sim, changed))]
        finally:
            sim.stop()

    print(f"synthetic cluster: {args.epgs} EPGs, {args.contracts} contracts, {len(desired)} tenants, "
          f"{objects} objects to own; render {render_s:.2f} s")
    print(f"{'run':<20} {'changes':>8} {'POSTs':>6} {'GETs':>5} {'logins':>7} {'KiB sent':>9} "
          f"{'plan s':>7} {'write s':>8} {'target':>22}")
    targets = {"cold sync": ("POSTs <= 10", lambda r: r["posts"] <= 10),
               "no-op resync": ("0 writes", lambda r: r["posts"] == 0 and r["changes"] == 0),
               "1 contract changed": ("1 POST", lambda r: r["posts"] == 1 and r["dns"] == [changed_dn])}
    ok = True
    for name, r in rows:
        label, check = targets[name]
        met = check(r) and r["logins"] == 1
        ok &= met
        print(f"{name:<20} {r['changes']:>8} {r['posts']:>6} {r['gets']:>5} {r['logins']:>7} {r['kib']:>9.0f} "
              f"{r['plan_s']:>7.2f} "
              f"{r['write_s']:>8.2f} {label + (' met' if met else ' MISSED'):>22}")
    print(f"changed object: {', '.join(rows[2][1]['dns'])}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
