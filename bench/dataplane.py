"""Benchmark: the node dataplane against the kernel, in network namespaces of its own (never the host's ruleset).

    python bench/dataplane.py               # root, nft and ip; well under a minute

One run, so the figures compare:
  1. full load: `NodeDataplane.apply` replacing the table of a node whose sets hold ~100,000 elements
     (a synthetic cluster, node0 of 8), `nft -c` check and `nft -f` apply timed apart, with the elements by
     shape; and beside it the cluster's pod addresses alone (the cheapest element nft parses);
  2. incremental pod update, the agent's path: one pod added to that node (the last model patched, the node
     compiled, its table diffed, one transaction of set elements), then removed; nft and each stage timed;
  3. connection setup: sequential TCP connect() from a client pod to a server pod on one lab node, with no
     ruleset, with a conntrack-only chain (`ct state`: what any stateful ruleset costs before its first lookup),
     with epgbridge's table holding N elements that do not match the flow (in the structures the SYN is looked
     up in: the server's ingress class sets, the client's egress class set, the cluster's pod addresses, the
     local pods), and with a naive chain of N `ip saddr . ip daddr . tcp dport accept` rules that the flow
     matches last. Each case has a lab node of its own with its ruleset loaded once; the connects run in
     interleaved rounds.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import random
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.synth import pod_ip, synthetic_cluster
from contracts.engine import Engine
from contracts.ir import IRRule, NodeIR, PodIR, PolicyIR
from contracts.loader import Document, documents, load_cluster, patch_pods
from contracts.model import Model
from contracts.sets import AddressSet, service
from dataplane.apply import NodeDataplane, run_nft
from dataplane.lab import Lab, LabPod, Probe
from dataplane.netns import delete_netns, entered, ip_batch, open_netns
from dataplane.render import node_table

COMMAND = "python bench/dataplane.py"
CLUSTER = {"pods": 14_000, "namespaces": 140, "policies": 1_400, "epgs": 500, "contracts": 2_000, "nodes": 8}
NODE = "node0"
LATENCY_SIZES = (0, 1_000, 10_000, 100_000)
TCP = 6
PORT = 8080


# -- helpers -------------------------------------------------------------------------------------------------

@dataclass
class TimedRunner:
    """run_nft, remembering how long each call took (check and apply apart)."""

    calls: list[tuple[bool, float]] = field(default_factory=list)

    def __call__(self, script: str, *, netns: str | None = None, check: bool = False) -> None:
        started = time.perf_counter()
        run_nft(script, netns=netns, check=check)
        self.calls.append((check, time.perf_counter() - started))

    def took(self, check: bool) -> float:
        return sum(t for c, t in self.calls if c == check)


@dataclass
class Table:
    rows: list[tuple[str, ...]] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append(tuple(str(c) for c in cells))

    def render(self, header: tuple[str, ...]) -> str:
        widths = [max(len(r[i]) for r in [header, *self.rows]) for i in range(len(header))]
        line = "  ".join("-" * w for w in widths)

        def fmt(r: tuple[str, ...]) -> str:
            return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths,
                                                                                                   strict=True)))
        return "\n".join([fmt(header), line, *(fmt(r) for r in self.rows)])


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def verdict(value: float, target: float) -> str:
    return "ok" if value <= target else f"MISSED x{value / target:.1f}"


@dataclass
class Scratch:
    """A bare network namespace of our own for nft, deleted on exit."""

    name: str

    def __enter__(self) -> str:
        ip_batch([f"netns add {self.name}"])
        return self.name

    def __exit__(self, *exc: object) -> None:
        delete_netns([self.name])


def _elements(ir: PolicyIR, node: str) -> int:
    return node_table(ir, node).elements


# -- 1 and 2: full load and incremental ----------------------------------------------------------------------

def _compile(docs: list[dict[str, Any]]) -> tuple[PolicyIR, dict[str, float]]:
    t0 = time.perf_counter()
    model = Model(load_cluster(documents("synthetic", docs)))
    t1 = time.perf_counter()
    ir = Engine(model).compile([NODE])
    t2 = time.perf_counter()
    return ir, {"load": t1 - t0, "compile": t2 - t1}


def _new_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """One more replica of deployment d0 (namespace ns0) on node0, with the next free address."""
    pods = [d for d in docs if d["kind"] == "Pod"]
    template = next(d for d in pods if d["metadata"]["name"] == "d0-0")
    nodes = CLUSTER["nodes"]
    n = -(-len(pods) // nodes) * nodes  # the first pod number after the cluster's that lands on node0
    pod: dict[str, Any] = {**template, "metadata": {**template["metadata"], "name": "d0-new"},
                           "spec": {**template["spec"], "nodeName": NODE},
                           "status": {"podIP": pod_ip(n, nodes, CLUSTER["pods"])}}
    return pod


def bench_ruleset(table: Table, netns: str) -> None:
    docs = synthetic_cluster(**CLUSTER)
    ir, _ = _compile(docs)
    elements = _elements(ir, NODE)
    runner = TimedRunner()
    dp = NodeDataplane(NODE, netns=netns, runner=runner)
    started = time.perf_counter()
    tx = dp.apply(ir)
    total = time.perf_counter() - started
    assert tx.kind == "replace" and tx.added == elements, tx
    check, apply = runner.took(True), runner.took(False)
    what = f"{elements:,} elements"
    table.add("full load: nft -c (check)", what, ms(check), "")
    table.add("full load: nft -f (replace)", what, ms(apply), "")
    table.add("full load: render + check + replace", what, ms(total), verdict(total, 1.0))
    table.add("full load: check + replace only", what, ms(check + apply), verdict(check + apply, 1.0))
    shapes = Counter("map" if s.map else f"{s.type.count('.') + 1} field(s)"
                     for s in node_table(ir, NODE).all_sets() for _ in s.elements)
    table.add("  of which", ", ".join(f"{n:,} {k}" for k, n in sorted(shapes.items())), "", "")

    floor = TimedRunner()
    for _ in range(5):
        floor("", netns=netns)
    table.add("nft process floor (empty script, ip netns exec)", "-",
              ms(min(t for _, t in floor.calls)), "")

    # The agent's path for a pod event: the last model patched (only that pod parsed and placed), the node
    # compiled, its table diffed against what was committed, one nft transaction.
    pod = _new_pod(docs)
    model = Model(load_cluster(documents("synthetic", docs)))
    key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
    for label, change in (("add pod", Document("event", pod)), ("remove pod", None)):
        runner.calls.clear()
        started = time.perf_counter()
        patched = patch_pods(model.cluster, (), {key: change})
        assert patched is not None
        model = Model.with_pods(model, *patched)
        modelled = time.perf_counter()
        new_ir = Engine(model).compile([NODE])
        compiled = time.perf_counter()
        tx = dp.apply(new_ir)
        done = time.perf_counter()
        assert tx.kind == "delta", tx
        nft = runner.took(False)
        what = f"+{tx.added} -{tx.removed}"
        table.add(f"{label}: nft transaction", what, ms(nft), verdict(nft, 0.010))
        table.add(f"{label}: model (patched), compile ({NODE}), render + diff", what,
                  f"{ms(modelled - started)} / {ms(compiled - modelled)} / {ms(done - compiled - nft)}", "")
        table.add(f"{label}: end to end", what, ms(done - started), "")

    # For scale: the same node with only the cluster's pod addresses (a single-field hash set, the cheapest
    # element nft parses): the per-element cost of the full load depends on the element's shape.
    pods_only = PolicyIR({NODE: NodeIR(NODE, ())}, ir.epg_open, ir.epg_pods)
    runner.calls.clear()
    NodeDataplane(NODE, netns=netns, runner=runner).apply(pods_only)
    table.add("full load, the cluster's pod addresses only", f"{node_table(pods_only, NODE).elements:,} elements",
              ms(runner.took(True) + runner.took(False)), "")


# -- 3: connection setup latency -----------------------------------------------------------------------------

def _addresses(rng: random.Random, count: int) -> Iterator[ipaddress.IPv4Address]:
    """Distinct, pairwise non-adjacent addresses in 10.64.0.0/10 (each one its own range in a set)."""
    base = int(ipaddress.IPv4Address("10.64.0.0"))
    for offset in rng.sample(range(1 << 21), count):
        yield ipaddress.IPv4Address(base + 2 * offset)


@dataclass(frozen=True)
class Pair:
    """A client and a server pod on one lab node of their own; the client may open PORT on the server."""

    node: str
    client: LabPod
    server: LabPod

    @staticmethod
    def number(i: int) -> Pair:
        node = f"bench{i}"
        return Pair(node, LabPod(f"bench{i}/client", f"10.10.{i}.1", node, ((PORT, "TCP"),)),
                    LabPod(f"bench{i}/server", f"10.10.{i}.2", node, ((PORT, "TCP"),)))


def latency_ir(pair: Pair, filler: int, seed: int = 3) -> PolicyIR:
    """The pair's flow allowed by both layers in both directions; `filler` more elements, a quarter in each
    structure the client's SYN is looked up in: the server's ingress class sets (other peers, other ports), the
    client's egress class set, the cluster's pod addresses, and the local pods (other pods of the server's
    classes: one element in the local set and in each map)."""
    rng = random.Random(seed)
    client, server = (ipaddress.IPv4Address(p.ip) for p in (pair.client, pair.server))
    quarter = filler // 4
    peers = _addresses(rng, 3 * quarter + quarter // 4)

    def rules(own: ipaddress.IPv4Address, count: int) -> tuple[IRRule, ...]:
        extra = (IRRule(AddressSet.of([next(peers)]), service(TCP, rng.randrange(1, 65536))) for _ in range(count))
        return (IRRule(AddressSet.of([own]), service(TCP, PORT)), *extra)

    server_in = rules(client, quarter // 2), rules(client, quarter - quarter // 2)  # EPG layer, NetworkPolicy
    client_out = rules(server, 0), rules(server, quarter)
    pods = [PodIR(pair.client.key, client, (), client_out[0], None, client_out[1]),
            PodIR(pair.server.key, server, server_in[0], (), server_in[1], None)]
    pods += [PodIR(f"filler/{i}", next(peers), server_in[0], (), server_in[1], None) for i in range(quarter // 4)]
    cluster = AddressSet.of([*(next(peers) for _ in range(quarter)), *(p.ip for p in pods)])
    classified = AddressSet.of([ipaddress.IPv4Network("10.0.0.0/8")])  # so every lookup reaches the EPG sets
    return PolicyIR({pair.node: NodeIR(pair.node, tuple(pods))}, classified.complement(), epg_pods=cluster,
                    epg_subnets=classified)


def naive_script(pair: Pair, rules: int, seed: int = 4) -> str:
    """One chain, one rule per allowed (source, destination, port); the pair's flow matches the last rule."""
    rng = random.Random(seed)
    lines = ["table inet naive {", "\tchain forward {",
             "\t\ttype filter hook forward priority filter; policy drop;",
             "\t\tct state established,related accept"]
    sources, destinations = _addresses(rng, rules), _addresses(rng, rules)
    lines += [f"\t\tip saddr {next(sources)} ip daddr {next(destinations)} tcp dport {rng.randrange(1, 65536)} "
              "accept" for _ in range(rules - 1)]
    lines += [f"\t\tip saddr {pair.client.ip} ip daddr {pair.server.ip} tcp dport {PORT} accept", "\t}", "}"]
    return "\n".join(lines) + "\n"


CONNTRACK_ONLY = """table inet ct_only {
\tchain forward {
\t\ttype filter hook forward priority filter; policy accept;
\t\tct state established,related accept
\t\tct state invalid drop
\t}
}
"""


def connect_times(client_fd: int, server_ip: str, count: int) -> list[float]:
    """Microseconds per blocking connect() (SYN out, SYN-ACK back); each socket is reset on close."""
    linger = struct.pack("ii", 1, 0)
    out = []
    with entered(client_fd):
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            started = time.perf_counter_ns()
            sock.connect((server_ip, PORT))
            out.append((time.perf_counter_ns() - started) / 1000)
            sock.close()
    return out


@dataclass
class Case:
    label: str
    size: str
    script: Callable[[Pair], str | PolicyIR | None]  # the ruleset for this case's node (None: no ruleset)
    pair: Pair | None = None
    loaded: float = 0.0
    times: list[float] = field(default_factory=list)


def bench_latency(table: Table, connects: int, rounds: int, naive_cap: int) -> None:
    cases = [Case("no ruleset (baseline)", "-", lambda pair: None),
             Case("conntrack only (ct state, no policy)", "-", lambda pair: CONNTRACK_ONLY)]
    for n in LATENCY_SIZES:
        total = _elements(latency_ir(Pair.number(0), n), "bench0")
        cases.append(Case(f"epgbridge sets, {n:,} filler elements", f"{total:,} elements",
                          lambda pair, n=n: latency_ir(pair, n)))
    for n in LATENCY_SIZES[1:]:
        if n <= naive_cap:
            cases.append(Case(f"naive chain, {n:,} rules", f"{n:,} rules", lambda pair, n=n: naive_script(pair, n)))
    for i, case in enumerate(cases):
        case.pair = Pair.number(i)

    pods = [pod for case in cases if case.pair for pod in (case.pair.client, case.pair.server)]
    with Lab(pods) as lab:
        fds = {}
        try:
            for case in cases:
                assert case.pair is not None
                netns = lab.node_netns(case.pair.node)
                ruleset = case.script(case.pair)
                started = time.perf_counter()
                if isinstance(ruleset, PolicyIR):
                    NodeDataplane(case.pair.node, netns=netns).apply(ruleset)
                elif ruleset is not None:
                    run_nft(ruleset, netns=netns)
                case.loaded = time.perf_counter() - started if ruleset is not None else 0.0
                forward, backward = lab.probe([Probe(case.pair.client.key, case.pair.server.ip, PORT, "TCP"),
                                               Probe(case.pair.server.key, case.pair.client.ip, PORT, "TCP")],
                                              timeout=0.3)
                if not forward or backward != (ruleset is None or ruleset is CONNTRACK_ONLY):
                    raise SystemExit(f"{case.label}: the ruleset does not do what the benchmark needs "
                                     f"(client to server {forward}, server to client {backward})")
                fds[case.label] = open_netns(lab.pod_netns(case.pair.client.key))
                connect_times(fds[case.label], case.pair.server.ip, max(50, connects // 10))  # warm-up
            # Rounds in a shuffled order: drift (other work on the machine) reaches every case alike.
            rng = random.Random(5)
            for _ in range(rounds):
                for case in rng.sample(cases, len(cases)):
                    assert case.pair is not None
                    case.times += connect_times(fds[case.label], case.pair.server.ip, connects // rounds)
        finally:
            for fd in fds.values():
                os.close(fd)

    baseline = statistics.median(cases[0].times)
    for case in cases:
        times = sorted(case.times)
        median, p99 = statistics.median(times), times[int(len(times) * 0.99) - 1]
        table.add(case.label, case.size, ms(case.loaded) if case.loaded else "-", f"{median:.1f}", f"{p99:.1f}",
                  f"{(median - baseline) / baseline * 100:+.1f}%")
    if naive_cap < LATENCY_SIZES[-1]:
        table.add(f"naive chain, {LATENCY_SIZES[-1]:,} rules", "skipped", f"> --naive-cap {naive_cap:,}", "", "", "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connects", type=int, default=2_000, help="TCP connects per case (default 2000)")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds they are split into (10)")
    parser.add_argument("--naive-cap", type=int, default=100_000,
                        help="largest naive chain to load (default 100000)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("error: bench/dataplane.py needs root (network namespaces, nftables)", file=sys.stderr)
        return 1
    missing = [tool for tool in ("nft", "ip") if shutil.which(tool) is None]
    if missing:
        print(f"error: bench/dataplane.py needs {' and '.join(missing)} on PATH", file=sys.stderr)
        return 1

    started = time.perf_counter()
    print(f"$ {COMMAND}" + "".join(f" {a}" for a in sys.argv[1:]))
    nft = subprocess.run(["nft", "--version"], capture_output=True, text=True).stdout.strip()
    print(f"kernel {os.uname().release}, {nft}, "
          f"{os.cpu_count()} CPUs; synthetic cluster {CLUSTER}, measured node {NODE}\n")
    ruleset = Table()
    with Scratch(f"epgb-bench-{os.getpid()}") as netns:
        bench_ruleset(ruleset, netns)
    print(ruleset.render(("ruleset update", "size", "time", "target")))
    print()
    latency = Table()
    bench_latency(latency, args.connects, args.rounds, args.naive_cap)
    print(latency.render(("connection setup (client pod -> server pod, one node)", "policy", "load",
                          "median µs", "p99 µs", "vs baseline")))
    print(f"\n{args.connects} sequential connect() per case after {args.connects // 10} warm-up, in {args.rounds} "
          "interleaved rounds, each case on a lab node of its own; "
          f"targets: full load <= 1 s, pod update <= 10 ms, connect within +10% of the baseline. "
          f"Total {time.perf_counter() - started:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
