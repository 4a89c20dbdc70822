"""Benchmark: the CLI on mid-sized and large clusters, as a user runs it: `matrix`, `render nft --node`,
`explain`.

    python bench/cli.py                  # matrix: 1,000 pods x 2 probes and 5,000 pods x 1 probe (-o json), the
                                         # 10,000-pod cluster grouped by namespace and by EPG; render nft for
                                         # its busiest node and explain of one pair
    python bench/cli.py --mix uniform    # the other mix of bench/synth.py

Each case writes its cluster to a snapshot file (indented JSON, as `kubectl get -o json` writes it: ~15 MB at
10,000 pods), then runs the real CLI in a process of its own (`python -m controller.cli ...`, output to
/dev/null): wall time and peak memory (max RSS) of that process, loading the snapshot included.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.synth import synthetic_cluster

ROOT = Path(__file__).resolve().parent.parent
CASES = [  # (pods, policies, namespaces, command and arguments, target seconds, target MB); FILE: the snapshot
    (1_000, 100, 10, ["matrix", "--probe", "80/TCP", "--probe", "53/UDP", "-o", "json"], 10, 500),
    (5_000, 500, 50, ["matrix", "--probe", "80/TCP", "-o", "json"], 180, 2_000),
    (10_000, 1_000, 100, ["matrix", "--probe", "80/TCP", "--group-by", "namespace", "-o", "json"], 10, None),
    (10_000, 1_000, 100, ["matrix", "--probe", "80/TCP", "--group-by", "epg", "-o", "json"], 10, None),
    (10_000, 1_000, 100, ["render", "nft", "--node", "BUSIEST"], 3, None),
    (10_000, 1_000, 100, ["explain", "--from", "FIRST", "--to", "LAST", "--probe", "80/TCP"], 2, None),
]
NODES = 20


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
    print(f"$ python bench/cli.py --mix {args.mix}")
    print(f"{'pods':>6} {'policies':>8}  {'command':<60} {'wall':>7} {'peak RSS':>9}  target")
    with tempfile.TemporaryDirectory() as tmp:
        for pods, policies, namespaces, command, target_s, target_mb in CASES:
            path = Path(tmp) / f"cluster-{pods}.json"
            if not path.exists():
                docs = synthetic_cluster(pods=pods, namespaces=namespaces, policies=policies,
                                         epgs=min(500, pods // 20), contracts=min(2_000, pods // 5), nodes=NODES,
                                         mix=args.mix)
                path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}, indent=2))
                pod_docs = [d for d in docs if d["kind"] == "Pod"]
                names = {"BUSIEST": Counter(d["spec"]["nodeName"] for d in pod_docs).most_common(1)[0][0],
                         "FIRST": "{namespace}/{name}".format(**pod_docs[0]["metadata"]),
                         "LAST": "{namespace}/{name}".format(**pod_docs[-1]["metadata"])}
            argv = [names.get(a, a) for a in command]
            wall, rss = run([*argv[:2], "-f", str(path), *argv[2:]] if argv[0] == "render"
                            else [argv[0], "-f", str(path), *argv[1:]])
            ok = wall <= target_s and (target_mb is None or rss <= target_mb)
            target = f"<= {target_s} s" + (f", <= {target_mb} MB" if target_mb else "")
            size = path.stat().st_size / 1e6
            print(f"{pods:>6} {policies:>8}  {' '.join(argv) + f' ({size:.0f} MB)':<60} {wall:6.1f}s "
                  f"{rss:6.0f} MB  {target} {'ok' if ok else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
