"""The netns lab with real namespaces and real packets: reachability, rulesets, teardown, timing.

Topology of the shared lab (see dataplane.lab for the address plan):

    node n1: pod a/web (10.1.0.2), pod a/db (10.1.0.3)      node n2: pod b/api (10.2.0.2)
    external host "internet" 203.0.113.10 on the fabric
    every pod listens on 80 and 81 for TCP, UDP and SCTP; nobody listens on 82.

The IPv6 lab is the same with web dual-stack (IPv4 first), db dual-stack (IPv6 first), api IPv6 only, and one
more external host, 2001:db8::10.
"""

from __future__ import annotations

import re
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dataplane import Lab, LabError, LabPod, Probe, cleanup_leftovers
from dataplane.netns import list_netns
from tests.dataplane.netns_support import requires_netns

PROTOCOLS = ("TCP", "UDP", "SCTP")
PORTS = tuple((port, protocol) for port in (80, 81) for protocol in PROTOCOLS)
WEB, DB, API = "a/web", "a/db", "b/api"
PODS = (
    LabPod(WEB, "10.1.0.2", "n1", PORTS),
    LabPod(DB, "10.1.0.3", "n1", PORTS),
    LabPod(API, "10.2.0.2", "n2", PORTS),
)
IP = {pod.key: pod.ip for pod in PODS}
INTERNET = "203.0.113.10"
REPO = Path(__file__).resolve().parents[2]




def drop_in(hook: str, rule: str) -> str:
    """A hand-written ruleset: one inet table, one base chain on `hook`, accept all but `rule`."""
    return textwrap.dedent(
        f"""\
        table inet t {{
          chain filter_{hook} {{
            type filter hook {hook} priority 0; policy accept;
            {rule}
          }}
        }}
        """
    )


def matrix(lab: Lab, port: int, protocol: str, *, timeout: float = 0.3) -> dict[str, dict[str, bool]]:
    """Observed reachability pod x pod for one port, as {src: {dst: allowed}}."""
    pairs = [(src.key, dst.key) for src in PODS for dst in PODS]
    results = lab.probe([Probe(s, IP[d], port, protocol) for s, d in pairs], timeout=timeout)
    observed: dict[str, dict[str, bool]] = {}
    for (src, dst), allowed in zip(pairs, results, strict=True):
        observed.setdefault(src, {})[dst] = allowed
    return observed


def table(text: str) -> dict[str, dict[str, bool]]:
    """Parse a truth table: a header row of destinations, then one row per source with `Y` / `.` cells."""
    header, *rows = (line.split() for line in textwrap.dedent(text).strip().splitlines())
    return {row[0]: {dst: cell == "Y" for dst, cell in zip(header, row[1:], strict=True)} for row in rows}


ALL = table(
    f"""
              {WEB}  {DB}  {API}
        {WEB}   Y     Y     Y
        {DB}    Y     Y     Y
        {API}   Y     Y     Y
    """
)
# Dropped in the nodes' forward path: only a pod talking to itself (over its own loopback) gets through.
SELF_ONLY = table(
    f"""
              {WEB}  {DB}  {API}
        {WEB}   Y     .     .
        {DB}    .     Y     .
        {API}   .     .     Y
    """
)
NOBODY = {src: dict.fromkeys(row, False) for src, row in ALL.items()}


@pytest.fixture(scope="module")
def shared_lab() -> Iterator[Lab]:
    with Lab(PODS, externals=[("internet", INTERNET)]) as lab:
        yield lab


@pytest.fixture
def lab(shared_lab: Lab) -> Iterator[Lab]:
    yield shared_lab
    for node in shared_lab.nodes:
        shared_lab.run_in_node(node, ["nft", "flush", "ruleset"])


@pytest.mark.netns
@requires_netns
@pytest.mark.parametrize("protocol", PROTOCOLS)
class TestReachability:
    def test_no_ruleset_every_pod_reaches_every_pod(self, lab: Lab, protocol: str) -> None:
        assert matrix(lab, 80, protocol) == ALL
        assert matrix(lab, 81, protocol) == ALL

    def test_nothing_listens_on_82(self, lab: Lab, protocol: str) -> None:
        assert matrix(lab, 82, protocol) == NOBODY

    def test_forward_drop_stops_exactly_that_port(self, lab: Lab, protocol: str) -> None:
        for node in lab.nodes:
            lab.apply_nft(node, drop_in("forward", f"{protocol.lower()} dport 81 drop"))
        assert matrix(lab, 81, protocol) == SELF_ONLY
        assert matrix(lab, 80, protocol) == ALL
        for other in PROTOCOLS:
            if other != protocol:
                assert matrix(lab, 81, other) == ALL
        # A node talks to its own pods through its output path, which this ruleset leaves alone.
        assert lab.probe([Probe("node:n1", IP[WEB], 81, protocol), Probe("node:n2", IP[API], 81, protocol)])

    def test_output_drop_stops_only_the_node_itself(self, lab: Lab, protocol: str) -> None:
        lab.apply_nft("n1", drop_in("output", f"{protocol.lower()} dport 81 drop"))
        from_node = [Probe("node:n1", IP[WEB], 81, protocol), Probe("node:n1", IP[WEB], 80, protocol)]
        assert lab.probe(from_node) == [False, True]
        assert matrix(lab, 81, protocol) == ALL

    def test_stateful_ruleset_lets_replies_back(self, lab: Lab, protocol: str) -> None:
        # What renderers emit: drop by default, established/related by conntrack, new flows by port.
        proto = protocol.lower()
        stateful = drop_in(
            "forward", f"ct state established,related accept\n{proto} dport 80 ct state new counter accept"
        ).replace("policy accept", "policy drop")
        for node in lab.nodes:
            lab.apply_nft(node, stateful)
        assert matrix(lab, 80, protocol) == ALL
        assert matrix(lab, 81, protocol) == SELF_ONLY
        # Connection tracking counted the cross-node probes as new flows of that protocol (SCTP INITs too).
        listing = lab.run_in_node("n2", ["nft", "list", "chain", "inet", "t", "filter_forward"]).stdout
        assert int(re.search(r"counter packets (\d+)", listing).group(1)) >= 4  # type: ignore[union-attr]

    def test_every_probe_is_a_new_flow(self, lab: Lab, protocol: str) -> None:
        # Flows that conntrack saw answered must not let later probes through as "established" once the
        # ruleset stops allowing the port (a reused UDP source port would).
        again = [Probe(WEB, IP[API], 81, protocol)] * 5
        for verdict, expected in (("accept", True), ("drop", False)):
            rules = f"ct state established,related accept\n{protocol.lower()} dport 81 {verdict}"
            lab.apply_nft("n2", "flush ruleset\n" + drop_in("forward", rules))
            for _ in range(3):
                assert lab.probe(again, timeout=0.3) == [expected] * 5

    def test_external_host(self, lab: Lab, protocol: str) -> None:
        probes = [
            Probe(WEB, INTERNET, 80, protocol),
            Probe(API, INTERNET, 80, protocol),
            Probe("external:internet", IP[DB], 80, protocol),
            Probe(WEB, INTERNET, 82, protocol),
        ]
        assert lab.probe(probes) == [True, True, True, False]
        lab.apply_nft("n1", drop_in("forward", f"ip daddr {INTERNET} ct state new drop"))
        assert lab.probe(probes) == [False, True, True, False]


DUAL = (
    LabPod(WEB, "10.1.0.2", "n1", PORTS, ("10.1.0.2", "fd00:1::2")),
    LabPod(DB, "fd00:1::3", "n1", PORTS, ("fd00:1::3", "10.1.0.3")),  # IPv6 first
    LabPod(API, "fd00:2::2", "n2", PORTS),  # IPv6 only
)
IP6 = {WEB: "fd00:1::2", DB: "fd00:1::3", API: "fd00:2::2"}
INTERNET6 = "2001:db8::10"


@pytest.fixture(scope="module")
def shared_dual_lab() -> Iterator[Lab]:
    with Lab(DUAL, externals=[("internet", INTERNET), ("internet6", INTERNET6)]) as lab:
        yield lab


@pytest.fixture
def dual_lab(shared_dual_lab: Lab) -> Iterator[Lab]:
    yield shared_dual_lab
    for node in shared_dual_lab.nodes:
        shared_dual_lab.run_in_node(node, ["nft", "flush", "ruleset"])


def matrix6(lab: Lab, port: int, protocol: str) -> dict[str, dict[str, bool]]:
    pairs = [(src.key, dst.key) for src in DUAL for dst in DUAL]
    results = lab.probe([Probe(s, IP6[d], port, protocol) for s, d in pairs], timeout=0.3)
    observed: dict[str, dict[str, bool]] = {}
    for (src, dst), allowed in zip(pairs, results, strict=True):
        observed.setdefault(src, {})[dst] = allowed
    return observed


@pytest.mark.netns
@requires_netns
@pytest.mark.parametrize("protocol", PROTOCOLS)
class TestIPv6:
    """Real IPv6 packets (TCP, UDP, SCTP INITs): pods of both stacks and IPv6 only, on one node and across nodes,
    the nodes' output path, an external IPv6 host; the IPv4 addresses of the same pods beside them."""

    def test_every_pod_reaches_every_pod_over_ipv6(self, dual_lab: Lab, protocol: str) -> None:
        assert matrix6(dual_lab, 80, protocol) == ALL
        v4 = [(WEB, "10.1.0.3"), (DB, "10.1.0.2"), (API, "10.1.0.2")]  # api has no IPv4 address: no route
        assert dual_lab.probe([Probe(s, d, 80, protocol) for s, d in v4]) == [True, True, False]

    def test_an_ip6_rule_stops_ipv6_only(self, dual_lab: Lab, protocol: str) -> None:
        for node in dual_lab.nodes:
            dual_lab.apply_nft(node, drop_in("forward", f"meta nfproto ipv6 {protocol.lower()} dport 81 drop"))
        assert matrix6(dual_lab, 81, protocol) == SELF_ONLY
        assert matrix6(dual_lab, 80, protocol) == ALL
        assert dual_lab.probe([Probe(WEB, "10.1.0.3", 81, protocol)]) == [True]
        # The node reaches its pods over IPv6 through its output path (from its fd00:eb:: fabric address).
        assert dual_lab.probe([Probe("node:n1", IP6[WEB], 81, protocol), Probe("node:n2", IP6[API], 81, protocol)]
                              ) == [True, True]

    def test_external_ipv6_host(self, dual_lab: Lab, protocol: str) -> None:
        probes = [Probe(WEB, INTERNET6, 80, protocol), Probe(API, INTERNET6, 80, protocol),
                  Probe("external:internet6", IP6[DB], 80, protocol), Probe("external:internet", "10.1.0.3", 80,
                                                                           protocol)]
        assert dual_lab.probe(probes) == [True, True, True, True]
        dual_lab.apply_nft("n1", drop_in("forward", f"ip6 daddr {INTERNET6} ct state new drop"))
        assert dual_lab.probe(probes) == [False, True, True, True]


@pytest.mark.netns
@requires_netns
class TestLifecycle:
    def test_broken_script_raises_and_keeps_previous_ruleset(self, lab: Lab) -> None:
        lab.apply_nft("n1", drop_in("forward", "tcp dport 81 drop"))
        broken = "flush ruleset\n" + drop_in("forward", "tcp dport 81 frobnicate")
        with pytest.raises(LabError, match=r"node n1.*\n.*[Ee]rror"):
            lab.apply_nft("n1", broken)
        assert lab.probe([Probe(WEB, IP[DB], 81, "TCP"), Probe(WEB, IP[DB], 80, "TCP")], timeout=0.3) == [
            False,
            True,
        ]

    def test_prefix_in_use_is_refused_and_left_alone(self, lab: Lab) -> None:
        with pytest.raises(LabError, match="is in use"):
            Lab(PODS, prefix=lab.prefix).up()
        assert set(lab.namespaces()) <= set(list_netns())
        assert lab.probe([Probe(WEB, IP[API], 80, "TCP")]) == [True]

    def test_unknown_names_are_errors(self, lab: Lab) -> None:
        with pytest.raises(LabError, match="no pod x/y"):
            lab.probe([Probe("x/y", IP[WEB], 80, "TCP")])
        with pytest.raises(LabError, match="no node n9"):
            lab.apply_nft("n9", "")

    def test_host_namespace_untouched(self) -> None:
        def host_network() -> tuple[str, str, str]:
            shown = [["ip", "-o", "link"], ["ip", "-o", "addr"], ["ip", "route", "show", "table", "all"]]
            a, b, c = (subprocess.run(argv, capture_output=True, text=True).stdout for argv in shown)
            return a, b, c

        before = host_network()
        with Lab(PODS[:2]) as lab:
            assert lab.probe([Probe(WEB, IP[DB], 80, "TCP")]) == [True]
            assert host_network() == before

    def test_teardown_when_the_body_raises(self) -> None:
        with pytest.raises(RuntimeError, match="boom"), Lab(PODS) as lab:
            names = lab.namespaces()
            assert set(names) <= set(list_netns())
            raise RuntimeError("boom")
        assert not set(names) & set(list_netns())

    @pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
    def test_teardown_on_signal(self, sig: signal.Signals) -> None:
        prefix = f"epgb-s{secrets.token_hex(2)}-"
        script = textwrap.dedent(
            f"""
            import sys, time
            from dataplane import Lab, LabPod
            with Lab([LabPod("a/x", "10.9.0.2", "n1", ((80, "TCP"),))], prefix={prefix!r}):
                print("up", flush=True)
                time.sleep(30)
            """
        )
        child = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None and child.stdout.readline() == "up\n"
            assert any(name.startswith(prefix) for name in list_netns())
            child.send_signal(sig)
            assert child.wait(timeout=10) != 0
        finally:
            child.kill()
            cleanup_leftovers(prefix)
        assert not [name for name in list_netns() if name.startswith(prefix)]

    def test_attach_to_a_lab_built_by_another_process(self) -> None:
        # The `lab up` / `lab probe` / `lab down` workflow: namespaces and rulesets outlive the process.
        prefix = f"epgb-a{secrets.token_hex(2)}-"
        script = textwrap.dedent(
            f"""
            from dataplane import Lab, LabPod
            lab = Lab({PODS!r}, prefix={prefix!r})
            lab.up()
            lab.apply_nft("n1", {drop_in("forward", "udp dport 81 drop")!r})
            """
        )
        subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True)
        lab = Lab(PODS, prefix=prefix)
        try:
            lab.attach()
            assert matrix(lab, 81, "UDP") == SELF_ONLY
            assert matrix(lab, 80, "UDP") == ALL
        finally:
            lab.down()
        assert not [name for name in list_netns() if name.startswith(prefix)]

    def test_cleanup_leftovers_removes_an_abandoned_lab(self) -> None:
        prefix = f"epgb-c{secrets.token_hex(2)}-"
        abandoned = Lab(PODS, prefix=prefix)
        abandoned.up()  # and never brought down, as if the process had been killed
        names = abandoned.namespaces()
        try:
            assert sorted(cleanup_leftovers(prefix)) == sorted(names)
            assert not set(names) & set(list_netns())
            assert cleanup_leftovers(prefix) == []
        finally:
            abandoned.down()
        abandoned.down()  # idempotent


class TestInput:
    """Checks done before any namespace exists: no root needed."""

    def test_bad_addresses_and_names(self) -> None:
        with pytest.raises(LabError, match="is also used by pod a/web"):
            Lab([PODS[0], LabPod("a/copy", PODS[0].ip, "n1")])
        with pytest.raises(LabError, match="reserved by the lab"):
            Lab([LabPod("a/x", "198.18.0.1", "n1")])
        with pytest.raises(LabError, match="reserved by the lab"):
            Lab([LabPod("a/x", "fd00:eb::7", "n1")])  # the IPv6 fabric
        with pytest.raises(LabError, match="is not an IP address"):
            Lab([LabPod("a/x", "fd00::1%eth0", "n1")])
        with pytest.raises(LabError, match="more than one address of a family"):
            Lab([LabPod("a/x", "fd00::1", "n1", ips=("fd00::1", "fd00::2"))])
        with pytest.raises(LabError, match="do not start with"):
            Lab([LabPod("a/x", "10.0.0.1", "n1", ips=("fd00::1", "10.0.0.1"))])
        with pytest.raises(LabError, match="is also used by pod a/x"):
            Lab([LabPod("a/x", "10.0.0.1", "n1", ips=("10.0.0.1", "fd00::1")), LabPod("a/y", "fd00::1", "n1")])
        with pytest.raises(LabError, match="bad port"):
            Lab([LabPod("a/x", "10.0.0.1", "n1", ((80, "ICMP"),))])
        with pytest.raises(LabError, match="bad lab prefix"):
            Lab(PODS, prefix="-x")

    def test_down_without_up_is_harmless(self) -> None:
        Lab(PODS).down()


@pytest.mark.netns
@requires_netns
def test_timing_9_pods_6_probes(capsys: pytest.CaptureFixture[str]) -> None:
    pods = [LabPod(f"ns{n}/p{i}", f"10.{n}.0.{i + 2}", f"node{n}", PORTS) for n in range(3) for i in range(3)]
    probes = [Probe(s.key, d.ip, port, proto) for s in pods for d in pods for port, proto in PORTS]
    messages: list[str] = []
    started = time.monotonic()
    with Lab(pods, progress=messages.append) as lab:
        ready = time.monotonic()
        for node in lab.nodes:
            lab.apply_nft(node, drop_in("forward", "tcp dport 81 drop"))
        applied = time.monotonic()
        results = lab.probe(probes)
        probed = time.monotonic()
    finished = time.monotonic()
    owner = {pod.ip: pod.key for pod in pods}
    expected = [not (p.port == 81 and p.protocol == "TCP" and p.src != owner[p.dst_ip]) for p in probes]
    assert results == expected
    assert any("configured 13/13 namespaces" in message for message in messages)
    with capsys.disabled():
        print(
            f"\n9 pods x 9 pods x 6 probes = {len(probes)} probes ({expected.count(False)} dropped): "
            f"setup {ready - started:.2f}s, nft {applied - ready:.2f}s, probing {probed - applied:.2f}s, "
            f"teardown {finished - probed:.2f}s, total {finished - started:.2f}s"
        )
    assert finished - started < 30
