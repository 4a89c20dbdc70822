"""Benchmark: `epgbridge matrix` on mid-sized and large clusters, as a user runs it.

    python bench/matrix.py                  # 1,000 pods x 2 probes and 5,000 pods x 1 probe (-o json), and the
                                            # 10,000-pod cluster grouped by namespace and by EPG
    python bench/matrix.py --mix uniform    # the other mix of bench/synth.py

Each case writes its cluster to a snapshot file, then runs the real CLI in a process of its own (`python -m
controller.cli matrix -f FILE ...`, output to /dev/null): wall time and peak memory (max RSS) of that process,
loading the snapshot included.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.synth import synthetic_cluster

ROOT = Path(__file__).resolve().parent.parent
CASES = [  # (pods, policies, namespaces, nodes, probes, extra CLI arguments, target seconds, target MB)
    (1_000, 100, 10, 20, ["80/TCP", "53/UDP"], ["-o", "json"], 10, 500),
    (5_000, 500, 50, 20, ["80/TCP"], ["-o", "json"], 180, 2_000),
    (10_000, 1_000, 100, 20, ["80/TCP"], ["--group-by", "namespace", "-o", "json"], 10, None),
    (10_000, 1_000, 100, 20, ["80/TCP"], ["--group-by", "epg", "-o", "json"], 10, None),
]


def run(args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one CLI process."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "controller.cli", *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"epgbridge {' '.join(args)} failed (status {proc.returncode})")
    return time.perf_counter() - started, usage.ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mix", choices=["uniform", "diverse"], default="diverse")
    args = parser.parse_args()
    print(f"$ python bench/matrix.py --mix {args.mix}")
    print(f"{'pods':>6} {'policies':>8} {'probes':>7}  {'arguments':<28} {'wall':>8} {'peak RSS':>9}  target")
    with tempfile.TemporaryDirectory() as tmp:
        for pods, policies, namespaces, nodes, probes, extra, target_s, target_mb in CASES:
            path = Path(tmp) / f"cluster-{pods}.json"
            if not path.exists():
                docs = synthetic_cluster(pods=pods, namespaces=namespaces, policies=policies,
                                         epgs=min(500, pods // 20), contracts=min(2_000, pods // 5), nodes=nodes,
                                         mix=args.mix)
                path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
            argv = ["matrix", "-f", str(path), *(a for p in probes for a in ("--probe", p)), *extra]
            wall, rss = run(argv)
            ok = wall <= target_s and (target_mb is None or rss <= target_mb)
            target = f"<= {target_s} s" + (f", <= {target_mb} MB" if target_mb else "")
            print(f"{pods:>6} {policies:>8} {len(probes):>7}  {' '.join(extra):<28} {wall:7.1f}s {rss:7.0f} MB  "
                  f"{target} {'ok' if ok else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
