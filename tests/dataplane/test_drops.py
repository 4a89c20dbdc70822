"""Drop attribution with real packets (issue 14): every drop of the node table is logged to NFLOG with its
place's tag and counted exactly; the node's attribution names the layer and the objects `explain` names;
audit mode passes and reports; counters equal the connections sent; a flood is counted exactly and logged at
the kernel's rate, with the rest summed up as suppressed."""

from __future__ import annotations

import json
import os
import random
import time
from typing import Any

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from contracts.matrix import Probe
from dataplane import Lab, NodeDataplane, names
from dataplane import Probe as LabProbe
from dataplane.drops import DropWatcher, read_counters, rule_stats
from dataplane.netns import open_netns
from dataplane.observe import DropReaders, attribution_differences, differences, lab_pods, observe_matrix
from dataplane.probe import syn_flood
from dataplane.render import node_table
from tests.core.builders import contract, endpoint_group, engine, entry, epg_value, namespace, netpol, pod
from tests.core.randomcluster import PROBES, random_cluster
from tests.dataplane.netns_support import requires_netns

pytestmark = [pytest.mark.netns, requires_netns]
AUDIT = {"epgbridge.io/mode": "audit"}


def _cluster() -> list[dict[str, Any]]:
    """web consumes sql from db (5432 only); db is selected by a NetworkPolicy that admits web; cache by an
    audit-mode one that admits nothing."""
    cache_policy = netpol("x", "cache-in", podSelector={"matchLabels": {"app": "cache"}})
    cache_policy["metadata"]["annotations"] = dict(AUDIT)
    return [namespace("x"),
            pod("x", "web", "10.9.6.1", {"app": "web"}, node="n1", epg=epg_value("t", "ap", "web")),
            pod("x", "db", "10.9.6.2", {"app": "db"}, node="n2", epg=epg_value("t", "ap", "db")),
            pod("x", "cache", "10.9.6.3", {"app": "cache"}, node="n2", epg=epg_value("t", "ap", "web")),
            endpoint_group("web", "t", "ap", consumes=["sql"]), endpoint_group("db", "t", "ap", provides=["sql"]),
            contract("sql", "t", permit=[entry("pg", "tcp", "5432"), entry("dns", "udp", "53")]),
            netpol("x", "db-in", podSelector={"matchLabels": {"app": "db"}},
                   ingress=[{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                             "ports": [{"port": 5432}]}]),
            cache_policy]


def test_drops_are_attributed_as_explain_says_with_real_packets() -> None:
    eng = engine(*_cluster())
    probes = [Probe(5432, "TCP"), Probe(53, "UDP"), Probe(80, "TCP")]
    observed = observe_matrix(eng, probes)
    assert differences(observed, _expected(eng, probes)) == (27, [])
    assert attribution_differences(observed, eng) == []
    pg, dns, http = observed["probes"]
    # db is reached on 5432 from web only: cache (EPG web too) is refused by db's NetworkPolicy, at db's node.
    assert pg["dropped"]["x/cache"]["x/db"] == {"layer": "networkPolicy", "objects": ["NetworkPolicy x/db-in"]}
    # 53/UDP: the contract lets web's EPG reach db; db's policy does not (only 5432).
    assert dns["dropped"]["x/web"]["x/db"] == {"layer": "networkPolicy", "objects": ["NetworkPolicy x/db-in"]}
    # 80/TCP: no contract permits it: the EPG layer, naming the pair.
    assert http["dropped"]["x/web"]["x/db"] == {
        "layer": "epg", "objects": ["EndpointGroup t/ap/web", "EndpointGroup t/ap/db"]}
    # db -> web: db's EPG consumes nothing: dropped by the EPG layer; cache's audit policy admits nothing, so
    # everything to cache passes and is reported (web -> cache is intra-EPG).
    assert http["dropped"]["x/db"]["x/web"]["layer"] == "epg"
    assert http["allowed"]["x/web"]["x/cache"] and http["wouldDrop"]["x/web"]["x/cache"] == {
        "layer": "networkPolicy", "objects": ["NetworkPolicy x/cache-in"]}
    assert pg["wouldDrop"] == {"x/web": {"x/cache": {"layer": "networkPolicy",
                                                      "objects": ["NetworkPolicy x/cache-in"]}}}


def _expected(eng: Any, probes: list[Probe]) -> dict[str, Any]:
    from contracts.matrix import compute_matrix

    return compute_matrix(eng, probes).to_json()


def test_counters_equal_the_connections_sent() -> None:
    """Each line of a class chain counts the new connections it admitted; the drop counter each one dropped;
    the log carries every drop (well under the rate), with addresses and ports as sent."""
    eng = engine(*_cluster())
    probes = [Probe(5432, "TCP")]
    pods = lab_pods(eng, probes)
    with Lab(pods) as lab:
        ir = eng.compile(lab.nodes)
        for node in lab.nodes:
            NodeDataplane(node, netns=lab.node_netns(node)).apply(ir)
        with DropReaders(lab, lab.nodes) as readers:
            allowed, dropped = 7, 5
            got = lab.probe([LabProbe("x/web", "10.9.6.2", 5432, "TCP")] * allowed
                            + [LabProbe("x/cache", "10.9.6.2", 5432, "TCP")] * dropped, parallel=4)
            packets = list(readers.packets())
        assert got == [True] * allowed + [False] * dropped
        counters = read_counters(lab.node_netns("n2"))
    table = node_table(ir, "n2")
    (np_in,) = [s for s in table.sets if s.name == names.verdict_map("np_in", 4)]
    (target,) = [e.split(" : goto ")[1] for e in np_in.elements if e.startswith("10.9.6.2 ")]
    (db_chain,) = [c for c in table.chains if c.name == target]
    assert counters[db_chain.counters[0]] == allowed  # the line that admits web on 5432
    assert counters[db_chain.counters[-1]] == dropped  # the chain's drop
    assert [(n, p.prefix, str(p.src), str(p.dst), p.protocol, p.dport) for n, p in packets] == [
        ("n2", names.tag(names.DROP_TAG, db_chain.name), "10.9.6.3", "10.9.6.2", 6, 5432)] * dropped
    stats = {(s.origin.object, s.origin.rule): s.connections for s in rule_stats(eng, table, counters)}
    assert stats[("NetworkPolicy x/db-in", "ingress rule 1")] == allowed
    assert stats[("Contract t/sql", "t/ap/web -> t/ap/db")] == allowed + dropped  # the EPG layer passed all


@settings(max_examples=8, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate])
@given(rnd=st.randoms(use_true_random=False))
def test_differential_random_clusters_attribution_equals_explain(rnd: random.Random) -> None:
    """Random clusters with objects in audit mode, every probe: packets == engine, every dropped probe is
    attributed to the layer and the objects explain names (100%), every would-drop reported alike, and the drop
    counters equal the drops logged (none suppressed at this rate)."""
    eng = engine(*random_cluster(rnd, pods=5, nodes=2, audit=True))
    probes = [Probe(port, proto) for port, proto in PROBES]
    pods = lab_pods(eng, probes)
    keys = [p.key for p in pods]
    with Lab(pods) as lab:
        ir = eng.compile(lab.nodes)
        for node in lab.nodes:
            NodeDataplane(node, netns=lab.node_netns(node)).apply(ir)
        jobs = [LabProbe(s.key, d.ip, p.port, p.protocol) for p in probes for s in pods for d in pods]
        with DropReaders(lab, lab.nodes) as readers:
            results = iter(lab.probe(jobs))
            packets = list(readers.packets())
            assert readers.lost == 0
        counted = sum(value for node in lab.nodes for name, value in read_counters(lab.node_netns(node)).items()
                      if name.endswith("_drop") or names.place(names.tag("", name)) is not None)
    from dataplane.drops import observed_drops
    from dataplane.observe import observed_json

    allowed = [{s: {d: next(results) for d in keys} for s in keys} for _ in probes]
    observed = observed_json(keys, probes, allowed, observed_drops(eng, packets))
    assert differences(observed, _expected(eng, probes))[1] == []
    assert attribution_differences(observed, eng) == []
    logged_drops = [p for _, p in packets if (place := names.place(p.prefix)) is not None and not place.audit]
    assert counted == len(logged_drops)


def test_a_flood_is_counted_exactly_and_logged_at_the_kernels_rate() -> None:
    """10,000 SYN/s at one pod for a second: the drop counter counts each one; the log carries the burst and the
    rate (the agent's lines: one, aggregated with its count), the rest summed up as suppressed; the watcher
    stays well under a core and its memory bounded."""
    docs = [namespace("x"), pod("x", "target", "10.9.7.1", {"app": "t"}, node="n1"),
            pod("x", "flooder", "10.9.7.2", {"app": "f"}, node="n1"),
            netpol("x", "closed", podSelector={"matchLabels": {"app": "t"}})]
    eng = engine(*docs)
    pods = lab_pods(eng, [Probe(8080, "TCP")])
    lines: list[dict[str, Any]] = []
    with Lab(pods) as lab:
        netns = lab.node_netns("n1")
        dataplane = NodeDataplane("n1", netns=netns)
        dataplane.apply(eng.compile(["n1"]))
        table = dataplane.table
        assert table is not None
        watcher = DropWatcher("n1", lambda: (eng, table), netns=netns, write=lambda t: lines.append(json.loads(t)),
                              flush_every=3600)
        watcher.start()
        time.sleep(0.2)  # bound
        counter = names.fixed_place("none_np_in", 4)  # the policy allows the pod nothing: its layer's none chain
        before = read_counters(netns)[counter]
        fd = open_netns(lab.pod_netns("x/flooder"))
        cpu = _thread_cpu(watcher)
        try:
            started = time.monotonic()
            sent = syn_flood(fd, "10.9.7.2", "10.9.7.1", 8080, rate=10_000, seconds=1.0)
            elapsed = time.monotonic() - started
        finally:
            os.close(fd)
        time.sleep(0.5)
        used = _thread_cpu(watcher) - cpu
        watcher.flush()
        watcher.stop()
        after = read_counters(netns)[counter]
    assert sent == 10_000 and elapsed < 2.5
    assert after - before == sent  # exact, whatever the log's rate
    drops = [line for line in lines if "suppressed" not in line]
    logged = sum(line["count"] for line in drops)
    assert names.LOG_BURST <= logged <= names.LOG_BURST + 100 * (elapsed + 1)
    first, *rest = drops
    assert first["count"] == 1 and first["objects"] == ["NetworkPolicy x/closed"] and first["pod"] == "x/target"
    assert [line["summary"] for line in rest] == [True]  # one kind: one summary line with its count
    (suppressed,) = [line for line in lines if "suppressed" in line]
    assert suppressed["suppressed"] == sent - logged and "not logged" in suppressed["reason"]
    assert used < 0.5 * elapsed  # the watcher's own CPU: well below one core
    assert len(watcher.log._entries) == 1 and len(watcher.log.lines()) == 3


def _thread_cpu(watcher: DropWatcher) -> float:
    """CPU seconds of the watcher's thread (Linux: /proc/self/task/TID/stat, utime + stime)."""
    thread = watcher._thread
    assert thread is not None and thread.native_id is not None
    with open(f"/proc/self/task/{thread.native_id}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

