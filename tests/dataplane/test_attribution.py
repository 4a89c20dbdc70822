"""Drop attribution without root (issue 14): packets traced through the nft model of the rendered table, their
logs attributed as the agent attributes what it reads from NFLOG, compared with `explain`; the aggregation of
identical drops and the suppressed summaries; rule counters as counts per policy rule and contract; the agent's
/drops endpoints and `epgbridge drops` over a real HTTP server."""

from __future__ import annotations

import ipaddress
import json
import random
import re
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.engine import Engine
from contracts.netpol import PROTOCOL_NUMBERS
from controller.cli import main
from controller.metrics import Metrics, serve
from dataplane import names
from dataplane.drops import Drop, DropLog, DropWatcher, attribute, rule_stats
from dataplane.nflog import LoggedPacket, parse_payload
from dataplane.nftmodel import NftModel, Packet
from dataplane.render import node_table, render_node
from tests.core.builders import contract, endpoint_group, engine, entry, epg_value, namespace, netpol, pod
from tests.core.randomcluster import PROBES, random_cluster

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _logged(prefix: str, packet: Packet) -> LoggedPacket:
    return LoggedPacket(prefix, packet.saddr, packet.daddr, packet.proto, 40000, packet.dport, time.time())


@SETTINGS
@given(st.randoms(use_true_random=False))
def test_what_the_table_logs_is_attributed_as_explain_says(rnd: random.Random) -> None:
    """Every connection of a random cluster (objects in audit mode too) traced through the node tables: each
    logged drop is attributed to a layer where the engine denies, with the objects explain names there; each
    would-drop to the layer and objects of the audit verdict."""
    eng = engine(*random_cluster(rnd, pods=6, nodes=2, audit=True))
    ir = eng.compile()
    models = {}
    for node in ir.nodes:
        models[node] = NftModel()
        models[node].apply(render_node(ir, node))
    pods = [p for p in eng.model.endpoints if p.node is not None]
    checked = 0
    for s in (eng.endpoint(p) for p in pods):
        for d in (eng.endpoint(p) for p in pods):
            if s.ip == d.ip:
                continue
            for port, proto in PROBES:
                packet = Packet(s.ip, d.ip, PROTOCOL_NUMBERS[proto], port)
                for node in dict.fromkeys([s.pod.node, d.pod.node]):  # type: ignore[union-attr]
                    trace = models[str(node)].trace(packet)
                    for prefix in trace.logs:
                        drop = attribute(eng, str(node), _logged(prefix, packet))
                        v = eng.decide(s, d, port, proto)
                        if drop is None:  # a would-drop on the way of a connection dropped further on
                            assert names.place(prefix).audit and not v.allowed  # type: ignore[union-attr]
                            continue
                        assert drop.agrees, (prefix, drop)
                        assert drop.layer is not None
                        decided = v.layer(drop.layer).audit if drop.audit else v.layer(drop.layer)
                        assert decided is not None and drop.objects == decided.denied_by
                        assert drop.pod == (d.name if drop.direction == "ingress" else s.name)
                        checked += 1
                    if trace.verdict == "drop":
                        break
    assert checked or not any(not eng.decide(s, d, p, q).allowed for s in map(eng.endpoint, pods)
                              for d in map(eng.endpoint, pods) for p, q in PROBES if s.ip != d.ip)


def _small() -> Engine:
    return engine(namespace("x"), pod("x", "a", "10.9.0.1", {"app": "a"}), pod("x", "b", "10.9.0.2", {"app": "b"}),
                  pod("x", "c", "10.9.0.3", {"app": "c"}),
                  netpol("x", "b-in", podSelector={"matchLabels": {"app": "b"}},
                         ingress=[{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}], "ports": [{"port": 80}]}]),
                  netpol("x", "b-in-too", podSelector={"matchLabels": {"app": "b"}},
                         ingress=[{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}], "ports": [{"port": 80}]},
                                  {"from": [{"podSelector": {"matchLabels": {"app": "c"}}}], "ports": [{"port": 9}]}]))


def test_tags_name_their_place_and_nothing_else() -> None:
    chain = "np_in_0123456789ab_v4"
    place = names.place(names.tag(names.DROP_TAG, chain))
    assert place is not None and (place.layer, place.direction, place.chain, place.audit) == (
        "networkPolicy", "ingress", chain, False)
    assert place.counter == names.drop_counter(chain)
    audit = names.place(names.tag(names.AUDIT_TAG, "epg_out_0123456789ab_v6"))
    assert audit is not None and (audit.layer, audit.direction, audit.audit, audit.family) == ("epg", "egress", True, 6)
    fixed = names.place(names.tag("", names.fixed_place("isolated_in", 4)))
    assert fixed is not None and fixed.layer == "epg" and fixed.counter == "isolated_in_v4"
    for bad in ("epgb:d:np_in_xyz_v4", "epgb:q:np_in_0123456789ab_v4", "other:thing", "epgb:nope_v4", "epgb:d:"):
        assert names.place(bad) is None, bad
    assert max(len(names.tag(k, "epg_out_0123456789ab_v6")) for k in (names.DROP_TAG, names.AUDIT_TAG)) < 127


def test_identical_drops_are_one_line_with_a_count_and_unlogged_ones_are_summed_up() -> None:
    eng = _small()
    ip = ipaddress.ip_address
    chain = "np_in_0123456789ab_v4"
    drop = attribute(eng, "n1", LoggedPacket(names.tag(names.DROP_TAG, chain), ip("10.9.0.3"), ip("10.9.0.2"),
                                             6, 40000, 80, 0.0))
    assert drop is not None and drop.objects == ("NetworkPolicy x/b-in", "NetworkPolicy x/b-in-too")
    log = DropLog("n1", lines_per_window=2)
    log.baseline({names.drop_counter(chain): 100})
    first = log.add(drop, 1.0)
    assert first is not None and first["count"] == 1 and first["from"] == "x/c" and first["pod"] == "x/b"
    assert all(log.add(drop, 1.0 + i) is None for i in range(4))  # the same drop: counted, no line
    other = Drop("n1", "x/a", "x/b", 81, "TCP", False, "networkPolicy", "ingress", "x/b", drop.objects, "r",
                 drop.place)
    assert log.add(other, 2.0) is not None
    third = Drop("n1", "x/a", "x/b", 82, "TCP", False, "networkPolicy", "ingress", "x/b", drop.objects, "r",
                 drop.place)
    assert log.add(third, 2.0) is None  # past the window's budget of lines: counted into its summary
    lines = log.flush(10.0, {names.drop_counter(chain): 100 + 7 + 40})  # 7 drops logged, 40 not
    summaries = [line for line in lines if line.get("summary")]
    assert sorted((line["port"], line["count"], line["total"]) for line in summaries) == [(80, 4, 5), (82, 1, 1)]
    (suppressed,) = [line for line in lines if "suppressed" in line]
    assert suppressed["suppressed"] == 40 and suppressed["place"] == names.tag(names.DROP_TAG, chain)
    assert [line["seq"] for line in log.lines(after=first["seq"])] == list(range(2, 6))


def test_a_table_behind_the_cluster_is_said_so() -> None:
    """The table dropped what the engine now allows (an update on its way): the drop says the engine disagrees."""
    eng = _small()
    ip = ipaddress.ip_address
    drop = attribute(eng, "n1", LoggedPacket(names.tag(names.DROP_TAG, "np_in_0123456789ab_v4"), ip("10.9.0.1"),
                                             ip("10.9.0.2"), 6, 40000, 80, 0.0))
    assert drop is not None and not drop.agrees and drop.objects == () and "allows it now" in drop.reason


def test_rule_counters_count_for_every_rule_their_line_renders() -> None:
    """b is selected by two policies whose first rules are equal: one line, counted for both; c's rule on 9
    never matched."""
    eng = _small()
    ir = eng.compile(["n1"])
    model = NftModel()
    model.apply(render_node(ir, "n1"))
    a, b = ipaddress.ip_address("10.9.0.1"), ipaddress.ip_address("10.9.0.2")
    for _ in range(3):
        assert model.trace(Packet(a, b, 6, 80)).verdict == "accept"
    stats = {(s.origin.object, s.origin.rule): (s.connections, s.shared)
             for s in rule_stats(eng, node_table(ir, "n1"), model.counters())}
    assert stats[("NetworkPolicy x/b-in", "ingress rule 1")] == (3, True)
    assert stats[("NetworkPolicy x/b-in-too", "ingress rule 1")] == (3, True)
    assert stats[("NetworkPolicy x/b-in-too", "ingress rule 2")] == (0, False)
    assert stats[("EndpointGroup kube/kubernetes/kube-default", "intra-EPG")][0] == 3 * 2  # a's egress, b's ingress


def test_contracts_count_per_pair() -> None:
    eng = engine(namespace("x"), pod("x", "w", "10.9.1.1", epg=epg_value("t", "ap", "web")),
                 pod("x", "d", "10.9.1.2", epg=epg_value("t", "ap", "db")),
                 endpoint_group("web", "t", "ap", consumes=["sql", "all"]),
                 endpoint_group("db", "t", "ap", provides=["sql", "all"]),
                 contract("sql", "t", permit=[entry("pg", "tcp", "5432")]),
                 contract("all", "t", permit=[entry("pg", "tcp", "5432")], filter_prefix="sql"))
    ir = eng.compile(["n1"])
    model = NftModel()
    model.apply(render_node(ir, "n1"))
    w, d = ipaddress.ip_address("10.9.1.1"), ipaddress.ip_address("10.9.1.2")
    assert model.trace(Packet(w, d, 6, 5432)).verdict == "accept"
    assert model.trace(Packet(w, d, 6, 5433)).verdict == "drop"
    stats = {(s.origin.object, s.origin.rule): s.connections for s in rule_stats(eng, node_table(ir, "n1"),
                                                                                model.counters())}
    assert stats[("Contract t/sql", "t/ap/web -> t/ap/db")] == 2  # web's egress line and db's ingress line
    assert stats[("Contract t/all", "t/ap/web -> t/ap/db")] == 2


def test_parse_payload_reads_ipv4_and_ipv6_ports() -> None:
    import struct

    v4 = bytes([0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]) + struct.pack("!HH", 1234, 80)
    assert parse_payload(v4) == (ipaddress.ip_address("10.0.0.1"), ipaddress.ip_address("10.0.0.2"), 6, 1234, 80)
    fragment = bytearray(v4)
    fragment[6:8] = struct.pack("!H", 100)  # a later fragment: no ports
    assert parse_payload(bytes(fragment))[3:] == (None, None)  # type: ignore[index]
    v6 = (bytes([0x60, 0, 0, 0, 0, 8, 17, 64]) + ipaddress.ip_address("fd00::1").packed
          + ipaddress.ip_address("fd00::2").packed + struct.pack("!HH", 53, 5353))
    assert parse_payload(v6) == (ipaddress.ip_address("fd00::1"), ipaddress.ip_address("fd00::2"), 17, 53, 5353)
    assert parse_payload(b"") is None and parse_payload(b"\x45\x00") is None


class _Agent:
    """The agent's /drops routes around a watcher fed by hand (no NFLOG, no kernel)."""

    def __init__(self, watcher: DropWatcher) -> None:
        self.drops = watcher

    from controller.runtime import Agent as _Real

    routes = _Real.routes


@pytest.fixture
def served(capsys: pytest.CaptureFixture[str]) -> Any:
    eng = _small()
    watcher = DropWatcher("n1", lambda: (eng, node_table(eng.compile(["n1"]), "n1")), write=lambda _t: None)
    ip = ipaddress.ip_address
    chain = "np_in_0123456789ab_v4"
    for src, port in (("10.9.0.3", 80), ("10.9.0.3", 80), ("10.9.0.1", 81)):
        watcher.handle(LoggedPacket(names.tag(names.DROP_TAG, chain), ip(src), ip("10.9.0.2"), 6, 4000, port, 1.0))
    server = serve(Metrics(), "127.0.0.1:0", lambda: True, routes=_Agent(watcher).routes())  # type: ignore[arg-type]
    yield f"127.0.0.1:{server.server_address[1]}", watcher
    server.shutdown()


def test_epgbridge_drops_reads_the_agent(served: Any, capsys: pytest.CaptureFixture[str]) -> None:
    address, _ = served
    assert main(["drops", "--address", address, "-o", "json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(d["from"], d["port"], d["count"]) for d in lines] == [("x/c", 80, 1), ("x/a", 81, 1)]
    assert lines[0]["objects"] == ["NetworkPolicy x/b-in", "NetworkPolicy x/b-in-too"]
    assert main(["drops", "--address", address, "--pod", "x/c"]) == 0
    out = capsys.readouterr().out
    assert "DROPPED 80/TCP x/c -> x/b on n1" in out and "by the NetworkPolicy layer (ingress of x/b)" in out
    assert "x/a" not in out.replace("x/a ->", "")  # the other drop is filtered out
    assert main(["drops", "--address", address, "--node", "n2"]) == 1
    assert "is node 'n1''s, not 'n2''s" in capsys.readouterr().err
    assert main(["drops", "--address", address, "--stats"]) == 0
    assert "has not read its table's counters yet" in capsys.readouterr().out


def test_epgbridge_drops_stats(served: Any, capsys: pytest.CaptureFixture[str]) -> None:
    address, watcher = served
    eng = _small()
    table = node_table(eng.compile(["n1"]), "n1")
    watcher._stats = rule_stats(eng, table, {c.counters[0]: 5 for c in table.chains})
    watcher._stats_at = "2026-01-01T00:00:00.000Z"
    assert main(["drops", "--address", address, "--stats"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"NetworkPolicy x/b-in-too +5  ingress rule 1  \(its line counts for other rules too\)", out)
    assert re.search(r"NetworkPolicy x/b-in-too +never matched  ingress rule 2", out)


def test_the_holding_tables_drops_are_reported_before_any_model() -> None:
    ip = ipaddress.ip_address
    packet = LoggedPacket(names.tag("", names.HOLD_PLACE), ip("10.9.0.1"), ip("10.9.0.2"), 6, 4000, 80, 0.0)
    drop = attribute(None, "n1", packet)
    assert drop is not None and drop.layer is None and "has not applied" in drop.reason and drop.src == "10.9.0.1"
    chain = names.tag(names.DROP_TAG, "np_in_0123456789ab_v4")
    assert attribute(None, "n1", LoggedPacket(chain, ip("10.9.0.1"), ip("10.9.0.2"), 6, 4000, 80, 0.0)) is None
