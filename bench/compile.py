"""Benchmark: cold load + compile of synthetic clusters, peak memory, and time per `decide`.

    python bench/compile.py                 # the two sizes of the targets (10k and 100k pods), both mixes
    python bench/compile.py --pods 2000 ... # one custom size
    python bench/compile.py --mix diverse   # one mix (bench/synth.py: uniform, diverse)

Each size and mix runs in a fresh process so peak memory (max RSS) belongs to it alone. Load+compile is
measured from in-memory documents (what the cluster watch hands over), through the same loader, model
and engine as the CLI; generating the documents is not counted. The diverse mix is the one that counts:
the uniform one is kind to any design (every policy alike).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SIZES = [
    {"pods": 10_000, "namespaces": 100, "policies": 1_000, "epgs": 500, "contracts": 2_000, "nodes": 20},
    {"pods": 100_000, "namespaces": 1_000, "policies": 10_000, "epgs": 500, "contracts": 2_000, "nodes": 500},
]


def run_one(params: dict[str, int], decides: int, mix: str) -> dict[str, float]:
    from bench.synth import synthetic_cluster
    from contracts.engine import Engine
    from contracts.loader import documents, load_cluster
    from contracts.model import Model

    docs = synthetic_cluster(**params, mix=mix)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    cluster = load_cluster(documents("synthetic", docs))
    t1 = time.perf_counter()
    model = Model(cluster)
    t2 = time.perf_counter()
    engine = Engine(model)
    ir = engine.compile()
    t3 = time.perf_counter()
    rules = sum(len(r) for n in ir.nodes.values() for p in n.pods for _, _, r in p.layers() if r)
    rng = random.Random(7)
    eps = [engine.endpoint(p) for p in rng.sample(model.endpoints, min(2_000, len(model.endpoints)))]
    pairs = [(rng.choice(eps), rng.choice(eps), rng.choice([8080, 9100, 53, 443])) for _ in range(decides)]
    t4 = time.perf_counter()
    for s, d, port in pairs:
        engine.decide(s, d, port, "UDP" if port == 53 else "TCP")
    t5 = time.perf_counter()
    return {
        "load_s": t1 - t0, "model_s": t2 - t1, "compile_s": t3 - t2, "total_s": t3 - t0,
        "decide_ms": (t5 - t4) / decides * 1000, "ir_rules": rules,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rss_before_mb": rss_before,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for key in SIZES[0]:
        parser.add_argument(f"--{key}", type=int)
    parser.add_argument("--decides", type=int, default=5_000)
    parser.add_argument("--mix", choices=["uniform", "diverse", "both"], default="both")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    custom = {k: getattr(args, k) for k in SIZES[0] if getattr(args, k) is not None}
    if args.child:
        print(json.dumps(run_one({**SIZES[0], **custom}, args.decides, args.mix)))
        return 0
    sizes = [{**SIZES[0], **custom}] if custom else SIZES
    mixes = ("uniform", "diverse") if args.mix == "both" else (args.mix,)
    print(f"{'mix':>8} {'pods':>7} {'policies':>8} {'epgs':>5} {'contracts':>9} {'nodes':>5} | {'load':>6} "
          f"{'model':>6} {'compile':>7} {'total':>6} | {'peak RSS':>9} | {'decide':>8} | IR rules")
    for size, mix in ((size, mix) for size in sizes for mix in mixes):
        argv = [sys.executable, __file__, "--child", "--decides", str(args.decides), "--mix", mix]
        for k, v in size.items():
            argv += [f"--{k}", str(v)]
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        r = json.loads(out)
        print(f"{mix:>8} {size['pods']:>7} {size['policies']:>8} {size['epgs']:>5} {size['contracts']:>9} "
              f"{size['nodes']:>5} | {r['load_s']:5.2f}s {r['model_s']:5.2f}s {r['compile_s']:6.2f}s "
              f"{r['total_s']:5.2f}s | {r['peak_rss_mb']:6.0f} MB | {r['decide_ms']:5.3f}ms | {r['ir_rules']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
