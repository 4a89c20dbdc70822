"""A pod is all of its addresses: IPv6-only and dual-stack clusters through the engine, the IR and the rendered
table (traced in the nftables model). Each family is policed alike: a policy that isolates a pod isolates every
address it has; an ipBlock or an EPG subnet holds addresses of its own family only."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from contracts.engine import Engine
from dataplane.nftmodel import NftModel, Packet
from dataplane.render import render_node
from tests.core.builders import (
    assert_matrix,
    contract,
    endpoint_group,
    engine,
    entry,
    epg_value,
    namespace,
    netpol,
    pod,
)

WEB = [{"containerPort": 8080, "name": "http"}]


def test_an_ipv6_cluster_follows_the_same_rules() -> None:
    """Selectors and an ipBlock with except, in IPv6 only."""
    eng = engine(
        namespace("x"), namespace("y"),
        pod("x", "a", "fd00:1::1", {"app": "a"}), pod("x", "b", "fd00:1::2", {"app": "b"}),
        pod("y", "c", "fd00:2::3", {"app": "a"}), pod("y", "d", "fd00:2::4", {"app": "d"}),
        netpol("x", "b-from-a", podSelector={"matchLabels": {"app": "b"}},
               ingress=[{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "a"}}}],
                         "ports": [{"port": 80}]}]),
        netpol("y", "d-from-x", podSelector={"matchLabels": {"app": "d"}},
               ingress=[{"from": [{"ipBlock": {"cidr": "fd00:1::/64", "except": ["fd00:1::2/128"]}}]}]),
    )
    assert_matrix(eng, "80/TCP", """
      a b c d
    a . . . .
    b . . . X
    c . . . X
    d . X . .
    """)


def dual_stack(*policies: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        namespace("x"),
        pod("x", "client", ["10.0.0.1", "fd00::1"], {"app": "client"}, node="n1"),
        pod("x", "db", ["10.0.0.2", "fd00::2"], {"app": "db"}, node="n1", ports=WEB),
        pod("x", "web", ["10.0.0.3", "fd00::3"], {"app": "web"}, node="n2", ports=WEB),
        *policies,
    ]


ISOLATE_DB = netpol("x", "db-isolated", podSelector={"matchLabels": {"app": "db"}},
                    policy_types=["Ingress", "Egress"])


def test_a_dual_stack_pod_isolated_by_policy_is_isolated_on_both_families() -> None:
    eng = engine(*dual_stack(ISOLATE_DB))
    for family in (4, 6):
        assert_matrix(eng, "8080/TCP", """
               client db web
        client .      X  .
        db     X      .  X
        web    .      X  .
        """, family)


def traced(eng: Engine, family: int, port: int = 8080) -> dict[tuple[str, str], bool]:
    """Every pod pair at its address of `family`, traced through the tables of the nodes it crosses."""
    ir = eng.compile()
    models = {}
    for node in ir.nodes:
        models[node] = NftModel()
        models[node].apply(render_node(ir, node))
    out = {}
    for s in eng.model.endpoints:
        for d in eng.model.endpoints:
            a, b = s.address(family), d.address(family)
            if s is d or a is None or b is None:
                continue
            crossed = sorted({s.node, d.node} - {None})
            out[(s.name, d.name)] = all(models[n].trace(Packet(a, b, 6, port)).verdict == "accept" for n in crossed)
    return out


def test_the_table_holds_every_address_of_a_dual_stack_pod() -> None:
    """Both addresses of a local pod are local (the forward chain jumps for them) and in their class's maps: IPv6
    packets meet the same rules as IPv4 ones (before: the IPv6 address was unknown and passed unfiltered)."""
    eng = engine(*dual_stack(ISOLATE_DB))
    table = NftModel()
    table.apply(render_node(eng.compile(), "n1"))
    sets = table.table().sets
    for v, db in ((4, "10.0.0.2"), (6, "fd00::2")):
        key = ((int(ipaddress.ip_address(db)),) * 2,)
        assert key in sets[f"local_v{v}"].elements
        # The policy allows db nothing: its layer's `none` chain (which logs, counts and drops).
        assert sets[f"np_in_v{v}"].elements[key] == f"goto np_in_none_v{v}"
        assert sets[f"np_out_v{v}"].elements[key] == f"goto np_out_none_v{v}"
    expected = {(s, d): "db" not in (s, d) for s in ("client", "db", "web") for d in ("client", "db", "web") if s != d}
    assert traced(eng, 4) == expected
    assert traced(eng, 6) == expected


def test_ip_blocks_hold_addresses_of_their_own_family_only() -> None:
    """0.0.0.0/0 is every IPv4 address and no IPv6 one; ::/0 the reverse (as upstream Kubernetes: a policy that
    means both families says both)."""
    v4_only = netpol("x", "db-from-v4", podSelector={"matchLabels": {"app": "db"}},
                     ingress=[{"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}])
    v6_only = netpol("x", "web-from-v6", podSelector={"matchLabels": {"app": "web"}},
                     ingress=[{"from": [{"ipBlock": {"cidr": "::/0", "except": ["fd00::1/128"]}}]}])
    eng = engine(*dual_stack(v4_only, v6_only))
    assert_matrix(eng, "8080/TCP", """
           client db web
    client .      .  X
    db     .      .  X
    web    .      .  .
    """, 4)
    assert_matrix(eng, "8080/TCP", """
           client db web
    client .      X  X
    db     .      .  .
    web    .      X  .
    """, 6)
    for outside, db, web in (("192.0.2.9", True, False), ("2001:db8::9", False, True)):
        src = eng.endpoint(outside)
        assert eng.decide(src, eng.endpoint("x/db", src.ip.version), 8080, "TCP").allowed == db
        assert eng.decide(src, eng.endpoint("x/web", src.ip.version), 8080, "TCP").allowed == web
    ir = eng.compile()
    groups = {g.key: ir.members(g) for p in (ir.pod("x/db"), ir.pod("x/web")) if p is not None
              for r in p.ingress_netpol or () for g in [r.peers]}
    assert not groups["ipBlock 0.0.0.0/0 except []"].v6 and not groups["ipBlock ::/0 except [fd00::1/128]"].v4
    for family in (4, 6):
        assert traced(eng, family) == {(s, d): eng.decide(eng.endpoint(f"x/{s}", family), eng.endpoint(
            f"x/{d}", family), 8080, "TCP").allowed for s, d in traced(eng, family)}


def test_epg_subnets_of_either_family_classify_outside_addresses() -> None:
    eng = engine(
        namespace("shop", epg=epg_value("shop", "ap", "web")),
        pod("shop", "web", ["10.0.0.1", "fd00::1"], node="n1"),
        endpoint_group("web", "shop", "ap", consumes=["partner"]),
        endpoint_group("partner", "shop", "ap", provides=["partner"],
                       subnets=["198.51.100.0/24", "2001:db8:5::/48"]),
        contract("partner", "shop", permit=[entry("https", "tcp", "443")]),
    )
    web = {v: eng.endpoint("shop/web", v) for v in (4, 6)}
    cases = [("198.51.100.7", 443, True), ("198.51.100.7", 80, False), ("2001:db8:5::10", 443, True),
             ("2001:db8:5::10", 80, False), ("2001:db8:6::10", 80, True), ("203.0.113.1", 80, True)]
    got = [(ip, port, eng.decide(web[ipaddress.ip_address(ip).version], eng.endpoint(ip), port, "TCP").allowed)
           for ip, port, _ in cases]
    assert got == cases
    assert str(eng.classify(eng.endpoint("2001:db8:5::10")).ref) == "shop/ap/partner"
    assert eng.classify(eng.endpoint("2001:db8:6::10")).ref is None
    # The table agrees, in each family.
    table = NftModel()
    table.apply(render_node(eng.compile(), "n1"))
    for ip, port, allowed in cases:
        src = web[ipaddress.ip_address(ip).version].ip
        packet = Packet(src, ipaddress.ip_address(ip), 6, port)
        assert (table.trace(packet).verdict == "accept") == allowed, (ip, port)


def test_an_ipv6_epg_subnet_gives_an_ipv4_cluster_ipv6_rules() -> None:
    docs = [namespace("shop", epg=epg_value("shop", "ap", "web")), pod("shop", "web", "10.0.0.1", node="n1"),
            endpoint_group("web", "shop", "ap", consumes=["partner"]),
            endpoint_group("partner", "shop", "ap", provides=["partner"], subnets=["2001:db8:5::/48"]),
            contract("partner", "shop", permit=[entry("https", "tcp", "443")])]
    ir = engine(*docs).compile()
    web = ir.pod("shop/web")
    assert web is not None and web.egress_epg is not None
    assert {r.peers.family for r in web.egress_epg} == {4, 6}


def test_named_ports_resolve_on_every_address() -> None:
    eng = engine(*dual_stack(netpol("x", "web-http", podSelector={"matchLabels": {"app": "web"}},
                                    ingress=[{"ports": [{"port": "http"}]}])))
    for family in (4, 6):
        for port, allowed in ((8080, True), (80, False)):
            v = eng.decide(eng.endpoint("x/client", family), eng.endpoint("x/web", family), port, "TCP")
            assert v.allowed == allowed, (family, port, v.summary)
    (resolved,) = eng.compile().named_ports.values()
    assert {str(a): n for a, n in resolved.items()} == {"10.0.0.2": 8080, "10.0.0.3": 8080, "fd00::2": 8080,
                                                         "fd00::3": 8080}


def test_an_endpoint_is_one_address_and_a_connection_has_one_family() -> None:
    eng = engine(*dual_stack(), pod("x", "v4", "10.0.0.9", node="n1"))
    assert str(eng.endpoint("x/db").ip) == "10.0.0.2" and str(eng.endpoint("x/db", 6).ip) == "fd00::2"
    assert eng.endpoint("fd00::2").pod is eng.endpoint("10.0.0.2").pod is eng.model.pods_by_key["x/db"]
    with pytest.raises(ValueError, match="pod x/v4 has no IPv6 address"):
        eng.endpoint("x/v4", 6)
    v = eng.decide(eng.endpoint("x/client", 4), eng.endpoint("x/db", 6), 8080, "TCP")
    assert not v.allowed and v.summary == ("x/client (10.0.0.1) is IPv4 and x/db (fd00::2) IPv6: no connection "
                                           "across families")
    ir = eng.compile()
    v4_only, db = ir.pod("x/v4"), ir.pod("x/db")
    assert v4_only is not None and db is not None
    assert not ir.allows(v4_only, "ingress", ipaddress.ip_address("fd00::1"), 6, 8080)  # it has no IPv6 address
    assert ir.allows(db, "ingress", ipaddress.ip_address("fd00::1"), 6, 8080)
