"""Benchmark: a flood of dropped connections at one pod, and what the drop attribution costs the agent.

    python bench/drops.py                   # root, nft and ip; about 15 s
    python bench/drops.py --rate 10000 --seconds 5

A lab node with two pods: a target that a NetworkPolicy closes, and a flooder that sends hand-written TCP SYNs
(each from another source port: a new connection each) at RATE a second for SECONDS. The agent's drop watcher
(dataplane/drops.py DropWatcher: the NFLOG reader, attribution by the engine, aggregation, counters) runs on
the node's namespace as in the agent. Reported: packets sent and counted by the table (exact), logged by the
kernel (its rate limit: LOG_BURST, then LOG_RATE), the lines the watcher wrote (one per kind of drop, then a
summary with the count, and the suppressed ones), the watcher thread's CPU time, and the process's memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from contracts.matrix import Probe
from dataplane import Lab, NodeDataplane, names
from dataplane.drops import DropWatcher, read_counters
from dataplane.netns import open_netns
from dataplane.observe import lab_pods
from dataplane.probe import syn_flood
from tests.core.builders import engine, namespace, netpol, pod

COMMAND = "python bench/drops.py"


def _thread_cpu(native_id: int) -> float:
    with open(f"/proc/self/task/{native_id}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=10_000, help="SYNs a second (default 10000)")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long (default 5)")
    args = parser.parse_args()
    if os.geteuid() != 0 or any(shutil.which(t) is None for t in ("nft", "ip")):
        print("error: bench/drops.py needs root, nft and ip", file=sys.stderr)
        return 1
    print(f"$ {COMMAND}" + "".join(f" {a}" for a in sys.argv[1:]))
    nft = subprocess.run(["nft", "--version"], capture_output=True, text=True).stdout.strip()
    print(f"kernel {os.uname().release}, {nft}, {os.cpu_count()} CPUs; log rate {names.LOG_RATE}, burst "
          f"{names.LOG_BURST} per drop rule\n")
    eng = engine(namespace("x"), pod("x", "target", "10.9.7.1", {"app": "t"}, node="n1"),
                 pod("x", "flooder", "10.9.7.2", {"app": "f"}, node="n1"),
                 netpol("x", "closed", podSelector={"matchLabels": {"app": "t"}}))
    lines: list[dict[str, object]] = []
    with Lab(lab_pods(eng, [Probe(8080, "TCP")])) as lab:
        netns = lab.node_netns("n1")
        dataplane = NodeDataplane("n1", netns=netns)
        dataplane.apply(eng.compile(["n1"]))
        table = dataplane.table
        assert table is not None
        watcher = DropWatcher("n1", lambda: (eng, table), netns=netns, write=lambda t: lines.append(json.loads(t)),
                              flush_every=1.0)
        watcher.start()
        time.sleep(0.3)
        thread = watcher._thread
        assert thread is not None and thread.native_id is not None
        counter = names.fixed_place("none_np_in", 4)
        before, rss_before, cpu_before = read_counters(netns)[counter], _rss_mib(), _thread_cpu(thread.native_id)
        fd = open_netns(lab.pod_netns("x/flooder"))
        try:
            started = time.monotonic()
            sent = syn_flood(fd, "10.9.7.2", "10.9.7.1", 8080, rate=args.rate, seconds=args.seconds)
            elapsed = time.monotonic() - started
        finally:
            os.close(fd)
        time.sleep(1.5)  # the watcher's last flush
        cpu = _thread_cpu(thread.native_id) - cpu_before
        rss_after = _rss_mib()
        watcher.stop()
        counted = read_counters(netns)[counter] - before
    drops = [line for line in lines if "suppressed" not in line]
    logged = sum(int(str(line["count"])) for line in drops)
    suppressed = sum(int(str(line["suppressed"])) for line in lines if "suppressed" in line)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = [
        ("SYNs sent", f"{sent:,} in {elapsed:.2f} s ({sent / elapsed:,.0f}/s)"),
        ("counted by the table (drop counter)", f"{counted:,}" + (" (exact)" if counted == sent else " (MISSED)")),
        ("logged by the kernel, read and attributed", f"{logged:,} (burst {names.LOG_BURST} + {names.LOG_RATE})"),
        ("summed up as suppressed (counter - logged)", f"{suppressed:,}"),
        ("lines written by the watcher", f"{len(lines)} ({len(drops)} drop lines, "
                                         f"{len(lines) - len(drops)} suppressed summaries)"),
        ("watcher thread CPU", f"{cpu:.2f} s over {elapsed + 1.5:.1f} s ({cpu / (elapsed + 1.5):.1%} of a core)"),
        ("process memory (RSS) before / after", f"{rss_before:.0f} MiB / {rss_after:.0f} MiB (peak {peak:.0f})"),
        ("aggregated kinds kept / lines kept", f"{len(watcher.log._entries)} / {len(watcher.log.lines())}"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key.ljust(width)}  {value}")
    print("\nfirst line:", json.dumps(drops[0]) if drops else "none")
    return 0 if counted == sent else 1


if __name__ == "__main__":
    sys.exit(main())
