"""The NetworkPolicy layer: upstream Kubernetes semantics, as truth tables. No annotations here, so every
pod is in the default EPG (intra-EPG permit) and NetworkPolicy alone decides."""

from __future__ import annotations

from typing import Any

import pytest

from tests.core.builders import assert_matrix, engine, namespace, netpol, pod

WEB = [{"containerPort": 80, "name": "http"}, {"containerPort": 53, "protocol": "UDP", "name": "dns"}]
ALT = [{"containerPort": 8080, "name": "http"}]


def base(*policies: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        namespace("x", {"team": "x"}), namespace("y", {"team": "y"}),
        pod("x", "a", "10.0.0.1", {"app": "a"}, ports=WEB),
        pod("x", "b", "10.0.0.2", {"app": "b"}, ports=ALT),
        pod("y", "c", "10.0.1.3", {"app": "a"}, ports=WEB),
        pod("y", "d", "10.0.1.4", {"app": "d"}, ports=ALT),
        *policies,
    ]


def test_no_policy_everything_open() -> None:
    assert_matrix(engine(*base()), "80/TCP", """
      a b c d
    a . . . .
    b . . . .
    c . . . .
    d . . . .
    """)


def test_deny_all_ingress_in_one_namespace_only() -> None:
    eng = engine(*base(netpol("x", "deny", ingress=[])))
    assert_matrix(eng, "80/TCP", """
      a b c d
    a . X . .
    b X . . .
    c X X . .
    d X X . .
    """)


def test_default_deny_one_direction_only_egress() -> None:
    eng = engine(*base(netpol("x", "deny-egress", policy_types=["Egress"])))
    assert_matrix(eng, "80/TCP", """
      a b c d
    a . X X X
    b X . X X
    c . . . .
    d . . . .
    """)


def test_policy_types_default_ingress_only_even_with_empty_egress_list() -> None:
    # policyTypes absent: Ingress always, Egress only when there are egress rules (an empty list has none).
    eng = engine(*base(netpol("x", "p", podSelector={"matchLabels": {"app": "a"}}, ingress=[{}], egress=[])))
    assert_matrix(eng, "80/TCP", """
      a b c d
    a . . . .
    b . . . .
    c . . . .
    d . . . .
    """)


def test_policy_types_default_egress_when_egress_rules_exist() -> None:
    eng = engine(*base(netpol("x", "p", podSelector={"matchLabels": {"app": "a"}},
                              egress=[{"to": [{"podSelector": {"matchLabels": {"app": "b"}}}]}])))
    # a: ingress now isolated too (Ingress is always defaulted) with no ingress rules.
    assert_matrix(eng, "8080/TCP", """
      a b c d
    a . . X X
    b X . . .
    c X . . .
    d X . . .
    """)


def test_empty_policy_types_are_defaulted_as_if_absent() -> None:
    # SetDefaults_NetworkPolicy fills an empty list exactly as a missing one: Ingress always, and Egress
    # when there are egress rules. So `podSelector: {}` with `policyTypes: []` isolates x's ingress.
    empty = engine(*base(netpol("x", "deny", policy_types=[])))
    assert_matrix(empty, "80/TCP", """
      a b c d
    a . X . .
    b X . . .
    c X X . .
    d X X . .
    """)
    with_egress = engine(*base(netpol("x", "p", podSelector={"matchLabels": {"app": "a"}}, policy_types=[],
                                      egress=[{"to": [{"podSelector": {"matchLabels": {"app": "b"}}}]}])))
    # a: both directions isolated; it may only connect to b.
    assert_matrix(with_egress, "8080/TCP", """
      a b c d
    a . . X X
    b X . . .
    c X . . .
    d X . . .
    """)


@pytest.mark.parametrize("spelling", ["absent", "null"])
def test_missing_pod_selector_selects_every_pod_of_the_namespace(spelling: str) -> None:
    policy = netpol("x", "deny", ingress=[{"from": [{"podSelector": {"matchLabels": {"app": "b"}}}]}])
    if spelling == "absent":
        del policy["spec"]["podSelector"]
    else:
        policy["spec"]["podSelector"] = None
    assert_matrix(engine(*base(policy)), "80/TCP", """
      a b c d
    a . X . .
    b . . . .
    c X X . .
    d X X . .
    """)


def test_null_selector_in_a_peer_is_absent() -> None:
    # The API's selectors are pointers: `podSelector: null` beside an ipBlock or a namespaceSelector is no
    # selector at all (not the empty one), as the API server decodes it.
    eng = engine(*base(
        netpol("x", "p", ingress=[{"from": [{"ipBlock": {"cidr": "10.0.1.0/24"}, "podSelector": None}]}]),
        netpol("y", "q", ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"team": "x"}},
                                              "podSelector": None}]}]),
    ))
    assert_matrix(eng, "80/TCP", """
      a b c d
    a . X . .
    b X . . .
    c . . . X
    d . . X .
    """)


def test_empty_from_vs_missing_from_vs_empty_peer_list() -> None:
    missing = engine(*base(netpol("x", "p", ingress=[{"ports": [{"port": 80}]}])))
    empty = engine(*base(netpol("x", "p", ingress=[{"from": [], "ports": [{"port": 80}]}])))
    for eng in (missing, empty):  # both mean: from everywhere
        assert_matrix(eng, "80/TCP", """
          a b c d
        a . . . .
        b . . . .
        c . . . .
        d . . . .
        """)
    no_rules = engine(*base(netpol("x", "p", ingress=[])))
    assert_matrix(no_rules, "80/TCP", """
      a b
    c X X
    """)


def test_empty_pod_selector_peer_means_own_namespace_only() -> None:
    eng = engine(*base(netpol("x", "p", ingress=[{"from": [{"podSelector": {}}]}])))
    assert_matrix(eng, "80/TCP", """
      a b c d
    a . . . .
    b . . . .
    c X X . .
    d X X . .
    """)


def test_empty_namespace_selector_peer_means_every_namespace() -> None:
    eng = engine(*base(netpol("x", "p", ingress=[{"from": [{"namespaceSelector": {}}]}])))
    assert_matrix(eng, "80/TCP", """
      a b c d
    a . . . .
    c . . . .
    """)


def test_namespace_and_pod_selector_in_one_peer_is_and() -> None:
    both = engine(*base(netpol("x", "p", ingress=[{"from": [
        {"namespaceSelector": {"matchLabels": {"team": "y"}}, "podSelector": {"matchLabels": {"app": "a"}}}]}])))
    assert_matrix(both, "80/TCP", """
      a b
    a . X
    b X .
    c . .
    d X X
    """)
    # Two peers instead of one: OR.
    either = engine(*base(netpol("x", "p", ingress=[{"from": [
        {"namespaceSelector": {"matchLabels": {"team": "y"}}}, {"podSelector": {"matchLabels": {"app": "a"}}}]}])))
    assert_matrix(either, "80/TCP", """
      a b
    a . .
    b X .
    c . .
    d . .
    """)


def test_match_expressions_operators() -> None:
    eng = engine(*base(netpol("x", "p", podSelector={"matchExpressions": [
        {"key": "app", "operator": "NotIn", "values": ["a"]}]}, ingress=[{"from": [{"namespaceSelector": {
            "matchExpressions": [{"key": "team", "operator": "Exists"}]}, "podSelector": {
            "matchExpressions": [{"key": "app", "operator": "In", "values": ["d"]},
                                 {"key": "tier", "operator": "DoesNotExist"}]}}]}])))
    assert_matrix(eng, "8080/TCP", """
      a b
    a . X
    c . X
    d . .
    """)


def test_ip_block_with_except_and_host_bits() -> None:
    # 10.0.1.0/24 written with host bits, as the API server accepts it; except c's /32.
    eng = engine(*base(netpol("x", "p", podSelector={"matchLabels": {"app": "b"}}, ingress=[{"from": [
        {"ipBlock": {"cidr": "10.0.1.9/24", "except": ["10.0.1.3/32"]}}]}])))
    assert_matrix(eng, "8080/TCP", """
      b
    a X
    c X
    d .
    """)


def test_ip_block_matches_pod_addresses_in_own_namespace() -> None:
    eng = engine(*base(netpol("x", "p", podSelector={"matchLabels": {"app": "b"}},
                              ingress=[{"from": [{"ipBlock": {"cidr": "10.0.0.1/32"}}]}])))
    assert_matrix(eng, "8080/TCP", """
      b
    a .
    c X
    """)


def test_ports_by_number_end_port_and_protocol_default_tcp() -> None:
    eng = engine(*base(netpol("x", "p", podSelector={"matchLabels": {"app": "b"}},
                              ingress=[{"ports": [{"port": 8000, "endPort": 8080}]}])))
    e = eng
    a, b = e.endpoint("x/a"), e.endpoint("x/b")
    assert e.decide(a, b, 8000, "TCP").allowed
    assert e.decide(a, b, 8080, "TCP").allowed
    assert not e.decide(a, b, 8081, "TCP").allowed
    assert not e.decide(a, b, 7999, "TCP").allowed
    assert not e.decide(a, b, 8080, "UDP").allowed  # protocol defaults to TCP


def test_protocol_without_port_means_every_port_of_that_protocol() -> None:
    eng = engine(*base(netpol("x", "p", podSelector={"matchLabels": {"app": "b"}},
                              ingress=[{"ports": [{"protocol": "UDP"}]}])))
    a, b = eng.endpoint("x/a"), eng.endpoint("x/b")
    assert eng.decide(a, b, 1, "UDP").allowed and eng.decide(a, b, 65535, "UDP").allowed
    assert not eng.decide(a, b, 53, "TCP").allowed
    assert not eng.decide(a, b, 53, "SCTP").allowed


def test_named_port_ingress_resolves_against_the_selected_pod() -> None:
    # "http" is 80 on a and c, 8080 on b and d.
    eng = engine(*base(netpol("x", "p", ingress=[{"ports": [{"port": "http"}]}])))
    assert_matrix(eng, "80/TCP", """
      a b
    c . X
    """)
    assert_matrix(eng, "8080/TCP", """
      a b
    c X .
    """)


def test_named_port_must_match_protocol_too() -> None:
    # "dns" is a UDP port: a named port with protocol TCP does not resolve to it.
    tcp = engine(*base(netpol("x", "p", podSelector={"matchLabels": {"app": "a"}},
                              ingress=[{"ports": [{"port": "dns"}]}])))
    udp = engine(*base(netpol("x", "p", podSelector={"matchLabels": {"app": "a"}},
                              ingress=[{"ports": [{"port": "dns", "protocol": "UDP"}]}])))
    c, a = tcp.endpoint("y/c"), tcp.endpoint("x/a")
    assert not tcp.decide(c, a, 53, "TCP").allowed
    assert not tcp.decide(c, a, 53, "UDP").allowed
    assert udp.decide(udp.endpoint("y/c"), udp.endpoint("x/a"), 53, "UDP").allowed
    assert not udp.decide(udp.endpoint("y/c"), udp.endpoint("x/a"), 53, "TCP").allowed


def test_named_port_egress_resolves_per_destination_and_never_for_non_pods() -> None:
    eng = engine(*base(netpol("x", "p", podSelector={"matchLabels": {"app": "a"}}, policy_types=["Egress"],
                              egress=[{"ports": [{"port": "http"}]}])))
    a = eng.endpoint("x/a")
    assert eng.decide(a, eng.endpoint("y/c"), 80, "TCP").allowed
    assert not eng.decide(a, eng.endpoint("y/c"), 8080, "TCP").allowed
    assert eng.decide(a, eng.endpoint("y/d"), 8080, "TCP").allowed
    assert not eng.decide(a, eng.endpoint("y/d"), 80, "TCP").allowed
    assert not eng.decide(a, eng.endpoint("192.0.2.1"), 80, "TCP").allowed


def test_egress_to_non_pod_addresses() -> None:
    eng = engine(*base(netpol("x", "p", podSelector={"matchLabels": {"app": "a"}}, policy_types=["Egress"],
                              egress=[{"to": [{"ipBlock": {"cidr": "192.0.2.0/24", "except": ["192.0.2.128/25"]}}],
                                       "ports": [{"port": 443}]}])))
    a = eng.endpoint("x/a")
    assert eng.decide(a, eng.endpoint("192.0.2.10"), 443, "TCP").allowed
    assert not eng.decide(a, eng.endpoint("192.0.2.200"), 443, "TCP").allowed
    assert not eng.decide(a, eng.endpoint("198.51.100.1"), 443, "TCP").allowed
    assert not eng.decide(a, eng.endpoint("192.0.2.10"), 80, "TCP").allowed
    # b is not selected: its egress stays open.
    assert eng.decide(eng.endpoint("x/b"), eng.endpoint("198.51.100.1"), 1, "UDP").allowed


def test_several_policies_are_a_union() -> None:
    eng = engine(*base(
        netpol("x", "from-a", podSelector={"matchLabels": {"app": "b"}},
               ingress=[{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}]}]),
        netpol("x", "from-y", podSelector={"matchLabels": {"app": "b"}},
               ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"team": "y"}}, "podSelector": {
                   "matchLabels": {"app": "d"}}}]}]),
    ))
    assert_matrix(eng, "8080/TCP", """
      b
    a .
    c X
    d .
    """)


def test_egress_and_ingress_must_both_allow() -> None:
    eng = engine(*base(
        netpol("x", "a-out", podSelector={"matchLabels": {"app": "a"}}, policy_types=["Egress"],
               egress=[{"to": [{"namespaceSelector": {}}]}]),
        netpol("y", "d-in", podSelector={"matchLabels": {"app": "d"}}, ingress=[{"from": [{"podSelector": {}}]}]),
    ))
    assert_matrix(eng, "8080/TCP", """
      a b c d
    a . . . X
    b . . . X
    c . . . .
    """)


def test_pod_always_reaches_itself_even_when_isolated() -> None:
    eng = engine(*base(netpol("x", "deny", policy_types=["Ingress", "Egress"])))
    a = eng.endpoint("x/a")
    assert eng.decide(a, a, 80, "TCP").allowed


def test_pods_without_ip_and_host_network_pods_are_not_targets() -> None:
    docs = [
        *base(netpol("x", "deny", ingress=[])),
        pod("x", "pending", None, {"app": "b"}),
        pod("x", "hostnet", "192.168.9.9", {"app": "b"}, host_network=True),
    ]
    eng = engine(*docs)
    assert {p.key for p in eng.model.endpoints} == {"x/a", "x/b", "y/c", "y/d"}
    # The host-network pod's address is the node's: it is no pod to the engine.
    assert eng.endpoint("192.168.9.9").pod is None


@pytest.mark.parametrize("probe", ["80/TCP", "53/UDP", "9/SCTP"])
def test_deny_all_covers_every_protocol(probe: str) -> None:
    eng = engine(*base(netpol("y", "deny", ingress=[])))
    assert_matrix(eng, probe, """
      c d
    a X X
    c . X
    """)


def _bomb(excepts: int, ports: int) -> dict[str, Any]:
    """An ipBlock 0.0.0.0/0 with `excepts` /32 holes, on `ports` ports that are not adjacent (issue 10's bomb)."""
    return netpol("x", "bomb", podSelector={"matchLabels": {"app": "a"}}, ingress=[{
        "from": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": [f"10.9.{i // 250}.{i % 250}/32" for i in range(excepts)]}}],
        "ports": [{"port": 1000 + 2 * i} for i in range(ports)]}])


def test_a_policy_over_the_element_budget_is_refused_and_its_pods_get_none_of_its_allows() -> None:
    """Fail closed: the refused policy still selects `a` (isolated for ingress), allows nothing, says why; the
    rest of the cluster's policy is untouched."""
    config = {"apiVersion": "epgbridge.io/v1alpha1", "kind": "Config", "metadata": {"name": "c"},
              "spec": {"maxPolicyElements": 500}}
    eng = engine(*base(_bomb(300, 300), netpol("y", "c-in", podSelector={"matchLabels": {"app": "a"}},
                                                ingress=[{"ports": [{"port": 80}]}])), config)
    assert_matrix(eng, "1000/TCP", """
      a b c d
    a . . X .
    b X . X .
    c X . . .
    d X . X .
    """)  # c's own policy (port 80 only) holds as it did
    assert [str(e) for e in eng.model.errors] == [
        "NetworkPolicy x/bomb refused: it costs 601 elements (ipBlocks, excepts and ports), over the budget of 500 "
        "(Config spec.maxPolicyElements): the pods it selects get none of its allows"]
    v = eng.decide(eng.endpoint("y/c"), eng.endpoint("x/a"), 1000, "TCP")
    assert "x/bomb (refused" in v.netpol.reasons[0].text
    # Under the budget the same policy holds: its ports from everywhere but the holes.
    eng = engine(*base(_bomb(300, 300)))
    assert not eng.model.errors and eng.decide(eng.endpoint("y/c"), eng.endpoint("x/a"), 1000, "TCP").allowed


def test_the_policy_bomb_costs_what_it_adds_up_to() -> None:
    """1,000 excepts and 1,000 ports used to be 1,000,000 set elements (ranges x ports); now a group and a
    service set: about 2,000."""
    from dataplane.render import node_table

    eng = engine(*base(_bomb(1000, 1000)))
    assert not eng.model.errors
    table = node_table(eng.compile(), "n1")
    assert table.elements < 2_100, table.elements
