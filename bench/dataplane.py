"""Benchmark: the node dataplane against the kernel, in network namespaces of its own (never the host's ruleset).

    python bench/dataplane.py               # root, nft and ip; a few minutes
    python bench/dataplane.py --mix diverse # one mix of bench/synth.py

One run, so the figures compare:
  1. full load: `NodeDataplane.apply` replacing the table of the node with the most pods of a 10,000-pod
     cluster on 20 nodes (both mixes of bench/synth.py; the diverse one is the figure that counts), `nft -c`
     check and `nft -f` apply timed apart, with the elements by kind of set;
  2. incremental pod update, the agent's path: one pod added to that node (a copy of one of its pods under
     another name and address: the same policies select it), then removed: the last model patched, the node
     compiled, its table diffed, one transaction; nft and each stage timed;
  3. connection setup: sequential TCP connect() from a client pod to a server pod on one lab node, with no
     ruleset, with a conntrack-only chain (`ct state`: what any stateful ruleset costs before its first lookup),
     with epgbridge's table where the server is selected for ingress, and the client for egress, by 1, 5 and
     20 NetworkPolicies (the connection matches the last rule of the last one: every rule is looked at), each
     rule's peers a group of 250 pods, and the 5-policy table once more without its rule counters (the only
     statements the drop attribution adds to the accept path: the drops' logs are met by dropped packets
     only); and with a naive chain of N `ip saddr . ip daddr . tcp dport accept` rules that the flow matches
     last. Each case has a lab node of its own with its ruleset loaded once; the
     connects run in interleaved rounds.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import random
import re
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
from contracts.ir import PolicyIR
from contracts.loader import Document, documents, load_cluster, patch_pods
from contracts.model import Model
from dataplane.apply import NodeDataplane, run_nft
from dataplane.lab import Lab, LabPod, Probe
from dataplane.netns import delete_netns, entered, ip_batch, open_netns
from dataplane.render import node_table, render_node

COMMAND = "python bench/dataplane.py"
CLUSTER = {"pods": 10_000, "namespaces": 100, "policies": 1_000, "epgs": 500, "contracts": 2_000, "nodes": 20}
POLICY_COUNTS = (1, 5, 20)
NAIVE_SIZES = (1_000, 10_000, 100_000)
GROUP_SIZE = 250
UPDATES = 5
TCP = 6
PORT = 8080


# -- helpers -------------------------------------------------------------------------------------------------

@dataclass
class TimedRunner:
    """What NodeDataplane runs scripts with (one libnftables context kept open, as the agent does), remembering
    how long each call took (check and apply apart)."""

    calls: list[tuple[bool, float]] = field(default_factory=list)
    plane: NodeDataplane | None = None

    def __call__(self, script: str, *, netns: str | None = None, check: bool = False) -> None:
        if self.plane is None:
            self.plane = NodeDataplane("timed", netns=netns)
        started = time.perf_counter()
        self.plane._in_process(script, netns=netns, check=check)
        self.calls.append((check, time.perf_counter() - started))

    def took(self, check: bool) -> float:
        return sum(t for c, t in self.calls if c == check)


@dataclass
class Table:
    rows: list[tuple[str, ...]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append(tuple(str(c) for c in cells))

    def render(self, header: tuple[str, ...]) -> str:
        widths = [max(len(r[i]) for r in [header, *self.rows]) for i in range(len(header))]
        line = "  ".join("-" * w for w in widths)

        def fmt(r: tuple[str, ...]) -> str:
            return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths,
                                                                                                   strict=True)))
        return "\n".join([fmt(header), line, *(fmt(r) for r in self.rows), *self.notes])


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

def _busiest(docs: list[dict[str, Any]]) -> str:
    return Counter(d["spec"]["nodeName"] for d in docs if d["kind"] == "Pod").most_common(1)[0][0]


def _new_pod(docs: list[dict[str, Any]], node: str) -> dict[str, Any]:
    """One more pod on `node`: a copy of one of its pods (same labels, owner, ports), with a free address."""
    pods = [d for d in docs if d["kind"] == "Pod"]
    template = next(d for d in pods if d["spec"]["nodeName"] == node)
    taken = {d["status"]["podIP"] for d in pods}
    address = next(a for n in range(len(pods), 2 * len(pods) + 2)
                   if (a := pod_ip(n, CLUSTER["nodes"], 2 * CLUSTER["pods"])) not in taken)
    return {**template, "metadata": {**template["metadata"], "name": template["metadata"]["name"] + "-new"},
            "status": {"podIP": address}}


def bench_ruleset(table: Table, netns: str, mix: str) -> None:
    docs = synthetic_cluster(**CLUSTER, mix=mix)
    node = _busiest(docs)
    model = Model(load_cluster(documents("synthetic", docs)))
    engine = Engine(model)
    ir = engine.compile([node])
    built = node_table(ir, node)
    elements = built.elements
    runner = TimedRunner()
    dp = NodeDataplane(node, netns=netns, runner=runner)
    started = time.perf_counter()
    tx = dp.apply(ir)
    total = time.perf_counter() - started
    assert tx.kind == "replace" and tx.added == elements, tx
    check, apply = runner.took(True), runner.took(False)
    local = sum(1 for d in docs if d["kind"] == "Pod" and d["spec"]["nodeName"] == node)
    what = f"{elements:,} elements"
    table.add(f"[{mix}] {node}: {local} local pods, {len(built.chains)} class chains "
              f"({sum(len(c.lines) for c in built.chains):,} rules)", what, "", verdict(elements, 150_000))
    table.add("  full load: nft -c (check)", "", ms(check), "")
    table.add("  full load: nft -f (replace)", "", ms(apply), verdict(apply, 1.0))
    table.add("  full load: render + check + replace", "", ms(total), "")
    kinds = {"g": "address groups", "n": "named ports", "s": "service sets", "epg": "EPG classification and maps",
             "np": "NetworkPolicy maps", "local": "local pods"}
    shapes = Counter(kinds.get(s.name.split("_")[0], "other") for s in built.sets for _ in s.elements)
    table.notes.append(f"[{mix}] {node}'s elements: " + ", ".join(f"{n:,} {k}" for k, n in shapes.most_common()))

    floor = TimedRunner()
    for _ in range(5):
        floor("", netns=netns)
    started = time.perf_counter()
    subprocess.run(["ip", "netns", "exec", netns, "nft", "-f", "/dev/null"], check=True)
    table.add("  floor: an empty transaction in-process / the nft program", "-",
              f"{ms(min(t for _, t in floor.calls))} / {ms(time.perf_counter() - started)}", "")

    # The agent's path for a pod event: the last model patched (only that pod parsed and placed), the node
    # compiled (the last engine's groups updated), its table diffed against what was committed, one nft
    # transaction. The first one after a full load also fills libnftables' cache of the table's sets (kept
    # after that): shown apart; then UPDATES rounds of add + remove, medians.
    pod = _new_pod(docs, node)
    key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
    stages: dict[str, list[tuple[float, ...]]] = {"add pod": [], "remove pod": []}
    sizes: dict[str, str] = {}
    for round_ in range(UPDATES + 1):
        for label, change in (("add pod", Document("event", pod)), ("remove pod", None)):
            runner.calls.clear()
            started = time.perf_counter()
            patched = patch_pods(model.cluster, (), {key: change})
            assert patched is not None
            model = Model.with_pods(model, *patched)
            modelled = time.perf_counter()
            engine = Engine(model, engine)
            new_ir = engine.compile([node])
            compiled = time.perf_counter()
            tx = dp.apply(new_ir)
            done = time.perf_counter()
            assert tx.kind == "delta" and "chain" not in tx.script, tx.script
            nft = runner.took(False)
            sizes[label] = f"+{tx.added} -{tx.removed}"
            if round_ == 0 and label == "add pod":
                table.add("  first update after the full load: nft transaction", sizes[label], ms(nft), "")
                continue
            stages[label].append((nft, modelled - started, compiled - modelled, done - compiled - nft,
                                  done - started))
    for label, runs in stages.items():
        nft, model_s, compile_s, render_s, total = (statistics.median(col) for col in zip(*runs, strict=True))
        worst = max(r[0] for r in runs)
        table.add(f"  {label}: nft transaction (median, max of {len(runs)})", sizes[label],
                  f"{ms(nft)}, {ms(worst)}", verdict(nft, 0.010))
        table.add(f"  {label}: model (patched) / compile ({node}) / render + diff", "",
                  f"{ms(model_s)} / {ms(compile_s)} / {ms(render_s)}", "")
        table.add(f"  {label}: end to end", "", ms(total), "")


# -- 3: connection setup latency -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Pair:
    """A client and a server pod on one lab node of their own; the client may open PORT on the server."""

    node: str
    client: LabPod
    server: LabPod
    outsider: LabPod  # a pod no policy admits: its connection to the server shows the ruleset is in force

    @staticmethod
    def number(i: int) -> Pair:
        node = f"bench{i}"
        return Pair(node, LabPod(f"lat{i}/client", f"10.10.{i}.1", node, ((PORT, "TCP"),)),
                    LabPod(f"lat{i}/server", f"10.10.{i}.2", node, ((PORT, "TCP"),)),
                    LabPod(f"lat{i}/outsider", f"10.10.{i}.3", node, ((PORT, "TCP"),)))


def policy_docs(pair: Pair, policies: int, seed: int = 3) -> list[dict[str, Any]]:
    """The pair in a namespace of its own where `policies` NetworkPolicies select the server for ingress and as
    many select the client for egress. Policy k admits the pods labelled g<k> (GROUP_SIZE pods on other nodes)
    on its own port; only the last one's group holds the peer, on PORT: a SYN meets every rule before it."""
    rng = random.Random(seed)
    ns = pair.client.key.split("/")[0]
    first = ipaddress.IPv4Address(f"10.{100 + int(pair.node.removeprefix('bench'))}.0.0")  # a /16 per case
    docs: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}]

    def pod(name: str, ip: str, node: str, labels: dict[str, str]) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels},
                "spec": {"nodeName": node, "containers": [{"name": "c", "ports": [{"containerPort": PORT}]}]},
                "status": {"podIP": ip}}
    last = f"g{policies - 1}"
    docs.append(pod("client", pair.client.ip, pair.node, {"role": "client", "grp": last}))
    docs.append(pod("server", pair.server.ip, pair.node, {"role": "server", "grp": last}))
    docs.append(pod("outsider", pair.outsider.ip, pair.node, {"role": "outsider"}))
    n = 0
    for k in range(policies):
        for _ in range(GROUP_SIZE):
            docs.append(pod(f"f{n}", str(first + 16 + n), f"other{n % 7}", {"grp": f"g{k}"}))
            n += 1
    for k in range(policies):
        port = PORT if k == policies - 1 else rng.randrange(20_000, 30_000)
        peers = [{"podSelector": {"matchLabels": {"grp": f"g{k}"}}}]
        for direction, role, way in (("Ingress", "server", "from"), ("Egress", "client", "to")):
            docs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                         "metadata": {"name": f"{role}-{k}", "namespace": ns},
                         "spec": {"podSelector": {"matchLabels": {"role": role}}, "policyTypes": [direction],
                                  direction.lower(): [{way: peers, "ports": [{"port": port}]}]}})
    return docs


def policy_ir(pair: Pair, policies: int) -> PolicyIR:
    return Engine(Model(load_cluster(documents("latency", policy_docs(pair, policies))))).compile([pair.node])


def _addresses(rng: random.Random, count: int) -> Iterator[str]:
    """Distinct, pairwise non-adjacent addresses in 10.64.0.0/10."""
    for offset in rng.sample(range(1 << 21), count):
        value = (10 << 24 | 64 << 16) + 2 * offset
        yield f"{value >> 24}.{value >> 16 & 255}.{value >> 8 & 255}.{value & 255}"


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


def without_counters(ir: PolicyIR, node: str) -> str:
    """The node's table with the rules' counter statements left out (the counters themselves stay, unused)."""
    return re.sub(r' counter name "[^"]+"', "", render_node(ir, node))


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
    for n in POLICY_COUNTS:
        cases.append(Case(f"epgbridge, each end selected by {n} polic{'y' if n == 1 else 'ies'}",
                          f"{2 * n} rules", lambda pair, n=n: policy_ir(pair, n)))
        if n == 5:
            cases.append(Case("  the same 5, without rule counters", f"{2 * n} rules",
                              lambda pair: without_counters(policy_ir(pair, 5), pair.node)))
    for n in NAIVE_SIZES:
        if n <= naive_cap:
            cases.append(Case(f"naive chain, {n:,} rules", f"{n:,} rules", lambda pair, n=n: naive_script(pair, n)))
    for i, case in enumerate(cases):
        case.pair = Pair.number(i)

    pods = [pod for case in cases if case.pair for pod in (case.pair.client, case.pair.server, case.pair.outsider)]
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
                forward, outsider = lab.probe([Probe(case.pair.client.key, case.pair.server.ip, PORT, "TCP"),
                                               Probe(case.pair.outsider.key, case.pair.server.ip, PORT, "TCP")],
                                              timeout=0.3)
                if not forward or outsider != (ruleset is None or ruleset is CONNTRACK_ONLY):
                    raise SystemExit(f"{case.label}: the ruleset does not do what the benchmark needs "
                                     f"(client to server {forward}, outsider to server {outsider})")
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
    if naive_cap < NAIVE_SIZES[-1]:
        table.add(f"naive chain, {NAIVE_SIZES[-1]:,} rules", "skipped", f"> --naive-cap {naive_cap:,}", "", "", "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connects", type=int, default=2_000, help="TCP connects per case (default 2000)")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds they are split into (10)")
    parser.add_argument("--naive-cap", type=int, default=100_000,
                        help="largest naive chain to load (default 100000)")
    parser.add_argument("--mix", choices=["uniform", "diverse", "both"], default="both",
                        help="the synthetic clusters of the full load and pod updates (default both)")
    parser.add_argument("--no-latency", action="store_true", help="skip the connection setup cases")
    parser.add_argument("--no-ruleset", action="store_true", help="skip the full load and pod update cases")
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
    print(f"kernel {os.uname().release}, {nft}, {os.cpu_count()} CPUs; synthetic cluster {CLUSTER}\n")
    if not args.no_ruleset:
        ruleset = Table()
        for mix in ("uniform", "diverse") if args.mix == "both" else (args.mix,):
            with Scratch(f"epgb-bench-{os.getpid()}") as netns:
                bench_ruleset(ruleset, netns, mix)
        print(ruleset.render(("ruleset update", "size", "time", "target")))
        print()
    if args.no_latency:
        return 0
    latency = Table()
    bench_latency(latency, args.connects, args.rounds, args.naive_cap)
    print(latency.render(("connection setup (client pod -> server pod, one node)", "policy", "load",
                          "median µs", "p99 µs", "vs baseline")))
    print(f"\n{args.connects} sequential connect() per case after {args.connects // 10} warm-up, in {args.rounds} "
          "interleaved rounds, each case on a lab node of its own; "
          f"targets: <= 150,000 elements, full load <= 1 s, pod update <= 10 ms of nft, connect within +10% of "
          f"the baseline with 5 policies. "
          f"Total {time.perf_counter() - started:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
