"""Benchmark: from a watch event to the rule being live on the node, and controller/agent memory.

    python bench/e2e.py                       # both mixes: 10,000 pods on 20 nodes for latency, 100,000 for memory
    python bench/e2e.py --mix diverse --pods 2000 --memory-pods 0

The API server is the fake one of the tests (tests/fakekube: the real wire protocol, in this process). The
agent is the real `epgbridge agent` process, programming a network namespace of its own. Latency: a pod is
created on the agent's node (a copy of one of that node's pods, under another name and address, so the same
policies select it), and the clock stops when the agent's `applies_total` moves (its nft transaction has
returned). Memory: the real `epgbridge controller` and `epgbridge agent` processes, their peak RSS once they
have applied/synced. Each mix of bench/synth.py (uniform, diverse) is measured; the worse is the figure.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.synth import synthetic_cluster
from tests.fakekube import CRD_DIR, FakeKube

ORDER = {"Namespace": 0, "EndpointGroup": 1, "Contract": 1}


def fill(kube: FakeKube, pods: int, nodes: int, mix: str, config: Path) -> tuple[float, dict[str, Any]]:
    """The cluster into the fake API server (its Config into the file `config`, for --config, as the ConfigMap
    is mounted); the time it took and a pod of node0 to copy."""
    docs = synthetic_cluster(pods=pods, namespaces=max(10, pods // 100), policies=max(10, pods // 10),
                             epgs=min(500, max(10, pods // 20)), contracts=min(2000, max(20, pods // 5)), nodes=nodes,
                             mix=mix)
    config.write_text(json.dumps(next(d for d in docs if d["kind"] == "Config")))
    t0 = time.perf_counter()
    for doc in sorted((d for d in docs if d["kind"] != "Config"), key=lambda d: ORDER.get(d["kind"], 2)):
        kube.create(doc)
    template = next(d for d in docs if d["kind"] == "Pod" and d["spec"]["nodeName"] == "node0")
    return time.perf_counter() - t0, template


def netns(name: str, op: str) -> None:
    subprocess.run(["ip", "netns", op, name], check=False, capture_output=True)


def _applies(port: int) -> float | None:
    """The agent's applies_total, all kinds: it moves when a transaction has returned from nft."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return None
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("epgbridge_applies_total")]
    return sum(values) if values else None


def latency(pods: int, events: int, mix: str, nodes: int) -> dict[str, Any]:
    """The real `epgbridge agent` process (as deployed: a process of its own) against the fake API server."""
    ns = f"epgb-e2e-{secrets.token_hex(3)}"
    netns(ns, "add")
    port = 19410
    try:
        with FakeKube(bookmark_interval=5.0, crds=[CRD_DIR]) as kube, tempfile.TemporaryDirectory() as tmp:
            load_s, template = fill(kube, pods, nodes, mix, Path(tmp) / "config.json")
            kubeconfig = Path(tmp) / "kubeconfig"
            kube.write_kubeconfig(str(kubeconfig))
            proc = subprocess.Popen([sys.executable, "-m", "controller.cli", "agent", "--node", "node0", "--netns", ns,
                                     "--drift-check", "3600", "--kubeconfig", str(kubeconfig),
                                     "--config", str(Path(tmp) / "config.json"),
                                     "--metrics-address", f"127.0.0.1:{port}"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    cwd=Path(__file__).resolve().parent.parent)
            try:
                t0 = time.perf_counter()
                while _applies(port) is None and proc.poll() is None:
                    time.sleep(0.05)
                first_apply = time.perf_counter() - t0
                samples = []
                for i in range(events):
                    ip = f"10.250.{i // 250}.{i % 250 + 1}"
                    meta = {**template["metadata"], "name": f"probe-{i}"}
                    pod = {**template, "metadata": meta, "status": {"podIP": ip}}
                    before = _applies(port) or 0.0
                    start = time.perf_counter()
                    kube.create(pod)
                    while (_applies(port) or 0.0) <= before:
                        time.sleep(0.02)  # gentle: every poll is an HTTP request the agent serves
                    samples.append(time.perf_counter() - start)
                    time.sleep(0.2)
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
                inside = [line for line in text.splitlines() if line.startswith("epgbridge_apply_duration_seconds{")]
                stages = {name: next(float(line.rsplit(" ", 1)[1]) * 1000 for line in text.splitlines()
                                     if line.startswith(f'epgbridge_stage_{name}_seconds{{quantile="0.5"}}'))
                          for name in ("model", "compile", "nft")}
            finally:
                proc.terminate()
                proc.wait(30)
    finally:
        netns(ns, "delete")
    samples.sort()
    return {"load_s": load_s, "first_apply_s": first_apply, "p50_ms": statistics.median(samples) * 1000,
            "inside": {line.split('"')[1]: float(line.rsplit(" ", 1)[1]) * 1000 for line in inside},
            "stages": stages,
            "applies": [line for line in text.splitlines() if line.startswith("epgbridge_applies_total")],
            "p99_ms": samples[min(len(samples) - 1, int(0.99 * len(samples)))] * 1000,
            "max_ms": samples[-1] * 1000, "events": len(samples)}


def _rss(pid: int) -> tuple[float, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def _metric(port: int, name: str) -> float | None:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            return float(line.rsplit(" ", 1)[1])
    return None


def memory(pods: int, mix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    ns = f"epgb-mem-{secrets.token_hex(3)}"
    netns(ns, "add")
    try:
        with FakeKube(bookmark_interval=30.0, crds=[CRD_DIR]) as kube, tempfile.TemporaryDirectory() as tmp:
            kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "epgbridge-system"}})
            out["load_s"], _ = fill(kube, pods, 500, mix, Path(tmp) / "config.json")
            kubeconfig = Path(tmp) / "kubeconfig"
            kube.write_kubeconfig(str(kubeconfig))
            runs = {
                "agent": (["agent", "--node", "node0", "--netns", ns, "--drift-check", "3600"],
                          "epgbridge_applies_total"),
                "controller": (["controller", "--leader-elect-namespace", "epgbridge-system"],
                               "epgbridge_invalid_objects"),
            }
            for i, (what, (argv, ready)) in enumerate(runs.items()):
                port = 19400 + i
                proc = subprocess.Popen([sys.executable, "-m", "controller.cli", *argv, "--config",
                                         str(Path(tmp) / "config.json"), "--kubeconfig",
                                         str(kubeconfig), "--metrics-address", f"127.0.0.1:{port}"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        cwd=Path(__file__).resolve().parent.parent)
                t0 = time.perf_counter()
                try:
                    while _metric(port, ready) is None and proc.poll() is None and time.perf_counter() - t0 < 600:
                        time.sleep(0.2)
                    out[f"{what}_ready_s"] = time.perf_counter() - t0
                    out[f"{what}_rss_mb"], out[f"{what}_peak_mb"] = _rss(proc.pid)
                finally:
                    proc.terminate()
                    proc.wait(30)
    finally:
        netns(ns, "delete")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--events", type=int, default=40)
    parser.add_argument("--memory-pods", type=int, default=100_000)
    parser.add_argument("--mix", choices=["uniform", "diverse", "both"], default="both")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (the agent programs nftables in a network namespace)", file=sys.stderr)
        return 1
    print(f"$ python bench/e2e.py --pods {args.pods} --nodes {args.nodes} --events {args.events} "
          f"--memory-pods {args.memory_pods} --mix {args.mix}")
    for mix in ("uniform", "diverse") if args.mix == "both" else (args.mix,):
        r = latency(args.pods, args.events, mix, args.nodes)
        print(f"[{mix}] watch event -> rule live, {args.pods} pods on {args.nodes} nodes, {r['events']} pod "
              f"creations on the agent's node: p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms, max "
              f"{r['max_ms']:.0f} ms (targets p50 <= 250 ms, p99 <= 1000 ms); first full apply "
              f"{r['first_apply_s']:.2f} s")
        inside = ", ".join(f"p{float(q) * 100:g} {ms:.0f} ms" for q, ms in r["inside"].items())
        print(f"  of which inside the agent (cache -> model -> compile -> nft), by its own summary: {inside}")
        print("  agent stages, p50: " + ", ".join(f"{k} {v:.0f} ms" for k, v in r["stages"].items())
              + "; transactions: " + ", ".join(r["applies"]))
        if args.memory_pods:
            m = memory(args.memory_pods, mix)
            print(f"[{mix}] memory at {args.memory_pods} pods (fake API filled in {m['load_s']:.0f} s): "
                  f"agent peak RSS {m['agent_peak_mb']:.0f} MB (ready after {m['agent_ready_s']:.1f} s), "
                  f"controller peak RSS {m['controller_peak_mb']:.0f} MB (ready after "
                  f"{m['controller_ready_s']:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
