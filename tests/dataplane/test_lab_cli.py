"""`epgbridge lab up | probe | down` on the example cluster: the packets agree with `matrix -o json`, and
nothing of the lab is left afterwards.

    lab up -f examples/cluster --prefix P      namespaces + every node's ruleset; stays up
    lab probe ... --prefix P --probe ... -o json   == matrix -o json (same snapshot, same probes)
    lab down --prefix P                        ip netns list holds no P* namespace
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from controller.cli import main
from dataplane import cleanup_leftovers
from tests.dataplane.netns_support import WHY_NOT

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "cluster")
PROBES = ("80/TCP", "8080/TCP", "8081/TCP", "5432/TCP", "53/UDP")


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`lab up` records its labs here, not in /run/epgbridge where other runs on this host keep theirs."""
    monkeypatch.setenv("EPGBRIDGE_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def _netns() -> list[str]:
    shown = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in shown.splitlines() if line.strip()]


@pytest.mark.netns
@pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")
def test_up_probe_down_agrees_with_the_engine(capsys: pytest.CaptureFixture[str]) -> None:
    prefix = f"epgb-cli{secrets.token_hex(3)}-"
    probes = [arg for probe in PROBES for arg in ("--probe", probe)]
    try:
        assert main(["lab", "up", "-f", EXAMPLE, "--prefix", prefix]) == 0
        up = capsys.readouterr().out
        assert prefix in up and f"lab down --prefix {prefix}" in up
        assert len([n for n in _netns() if n.startswith(prefix)]) == 12  # fabric, 2 nodes, 9 pods

        assert main(["lab", "probe", "-f", EXAMPLE, "--prefix", prefix, *probes, "-o", "json"]) == 0
        observed = json.loads(capsys.readouterr().out)
        assert main(["matrix", "-f", EXAMPLE, *probes, "-o", "json"]) == 0
        expected = json.loads(capsys.readouterr().out)
        # The engine's matrix, plus each probe's drops as the nodes attributed them: every denied cell has one.
        dropped = [p.pop("dropped") for p in observed["probes"]]
        assert [p.pop("wouldDrop") for p in observed["probes"]] == [{}] * len(PROBES)
        assert observed == expected
        for probe, cells in zip(expected["probes"], dropped, strict=True):
            assert {(s, d) for s, row in cells.items() for d in row} == {
                (s, d) for s, row in probe["allowed"].items() for d, ok in row.items() if not ok}
        assert main(["lab", "drops", "--prefix", prefix, "-o", "json"]) == 0
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert {(x["from"], x["to"], x["port"]) for x in lines if x.get("verdict") == "drop"} == {
            (s, d, int(pr["port"])) for pr, cells in zip(expected["probes"], dropped, strict=True)
            for s, row in cells.items() for d in row}
        assert main(["lab", "drops", "--prefix", prefix, "--stats"]) == 0
        assert "new connection(s)" in capsys.readouterr().out

        assert main(["lab", "probe", "-f", EXAMPLE, "--prefix", prefix, "--probe", "80/TCP"]) == 0
        assert "agrees with the engine on all 81 cells" in capsys.readouterr().out
    finally:
        assert main(["lab", "down", "--prefix", prefix]) == 0
        cleanup_leftovers(prefix)  # only if `lab down` failed; a no-op otherwise
    assert [n for n in _netns() if n.startswith(prefix)] == []


@pytest.mark.netns
@pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")
def test_dual_stack_lab_per_family(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A dual-stack snapshot: `lab probe --family F` equals `matrix --family F` in each family, and `matrix
    --dataplane --family ipv6` sends its packets over IPv6."""
    import yaml

    from tests.core.builders import namespace, netpol, pod
    snap = tmp_path / "dual.yaml"
    snap.write_text(yaml.safe_dump_all([
        namespace("x"), pod("x", "a", ["10.9.9.1", "fd00:9:9::1"], {"app": "a"}, node="n1"),
        pod("x", "b", ["10.9.9.2", "fd00:9:9::2"], {"app": "b"}, node="n2"), pod("x", "c", "fd00:9:9::3", node="n2"),
        netpol("x", "b-from-v4", podSelector={"matchLabels": {"app": "b"}},
               ingress=[{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}])]))
    prefix = f"epgb-cli{secrets.token_hex(3)}-"
    try:
        assert main(["lab", "up", "-f", str(snap), "--prefix", prefix]) == 0
        capsys.readouterr()
        for family in ("ipv4", "ipv6"):
            args = ["-f", str(snap), "--probe", "80/TCP", "--probe", "53/UDP", "-o", "json", "--family", family]
            assert main(["lab", "probe", "--prefix", prefix, *args]) == 0
            observed = json.loads(capsys.readouterr().out)
            assert main(["matrix", *args]) == 0
            dropped = [p.pop("dropped") for p in observed["probes"]]
            assert [p.pop("wouldDrop") for p in observed["probes"]] == [{}, {}]
            assert observed == json.loads(capsys.readouterr().out)
            for probe, cells in zip(observed["probes"], dropped, strict=True):  # every drop attributed, per family
                assert {(s, d) for s, row in cells.items() for d in row} == {
                    (s, d) for s, row in probe["allowed"].items() for d, ok in row.items() if not ok}
            assert len(observed["pods"]) == (2 if family == "ipv4" else 3)
            assert observed["probes"][0]["allowed"]["x/a"]["x/b"] is (family == "ipv4")
    finally:
        assert main(["lab", "down", "--prefix", prefix]) == 0
        cleanup_leftovers(prefix)
    assert main(["matrix", "-f", str(snap), "--probe", "80/TCP", "--dataplane", "--family", "ipv6"]) == 0
    assert "the dataplane agrees with the engine on all 9 cells" in capsys.readouterr().err


@pytest.mark.netns
@pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")
def test_probe_without_a_lab_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    prefix = f"epgb-cli{secrets.token_hex(3)}-"
    assert main(["lab", "probe", "-f", EXAMPLE, "--prefix", prefix, "--probe", "80/TCP"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: lab {prefix} is not built") and err.count("\n") == 1


def test_without_root_or_tools_a_one_line_error(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert main(["lab", "down"]) == 1
    assert capsys.readouterr().err == "error: the netns lab needs root (network namespaces, veth pairs, nftables)\n"
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda tool: None if tool == "nft" else "/usr/sbin/" + tool)
    assert main(["lab", "up", "-f", EXAMPLE]) == 1
    assert capsys.readouterr().err == "error: the netns lab needs nft on PATH (iproute2, nftables)\n"


def _without(tmp_path: Path, name: str, drop: str) -> str:
    """A copy of the example without one of its files: another snapshot than the lab's."""
    copy = tmp_path / name
    shutil.copytree(EXAMPLE, copy)
    drop_path = copy / drop
    drop_path.unlink()
    return str(copy)


@pytest.mark.netns
@pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")
def test_probe_refuses_another_snapshot_and_exits_3_when_packets_disagree(
        tmp_path: Path, state_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prefix = f"epgb-cli{secrets.token_hex(3)}-"
    decoy = f"epgb-decoy{secrets.token_hex(3)}-x"  # someone else's lab: `lab down` must leave it alone
    subprocess.run(["ip", "netns", "add", decoy], check=True)
    try:
        assert main(["lab", "up", "-f", EXAMPLE, "--prefix", prefix]) == 0
        capsys.readouterr()
        assert (state_dir / "labs" / f"{prefix}.yaml").is_file()

        no_policies = _without(tmp_path, "no-netpol", "netpol.yaml")
        assert main(["lab", "probe", "-f", no_policies, "--probe", "5432/TCP"]) == 1
        out, err = capsys.readouterr()
        assert out == "" and err.startswith(f"error: lab {prefix} was built from another snapshot: for these probes "
                                            "the engine answers ") and err.count("\n") == 1
        no_pods = _without(tmp_path, "no-workloads", "workloads.yaml")
        assert main(["lab", "probe", "-f", no_pods, "--prefix", prefix, "--probe", "80/TCP"]) == 1
        assert "its pods differ (data/postgres-5f8d7c9b6-tq4wx only in the lab" in capsys.readouterr().err

        # The lab's one node namespace loses its table: packets now pass where the engine denies.
        node = next(n for n in _netns() if n.startswith(f"{prefix}n0-"))
        subprocess.run(["ip", "netns", "exec", node, "nft", "delete", "table", "inet", "epgbridge"], check=True)
        assert main(["lab", "probe", "-f", EXAMPLE, "--probe", "5432/TCP"]) == 3  # the one recorded lab
        out, err = capsys.readouterr()
        assert "!" in out and "the dataplane disagrees with the engine on" in out
        assert err.startswith("error: the dataplane disagrees with the engine on ") and err.count("\n") == 1
        assert main(["lab", "probe", "-f", EXAMPLE, "--probe", "5432/TCP", "-o", "json"]) == 3
        out, err = capsys.readouterr()
        assert json.loads(out)["probes"][0]["port"] == 5432 and "packets passed, engine says denied" in err

        assert main(["lab", "down"]) == 0  # the labs `lab up` recorded, and only those
        assert f"lab {prefix}: removed" in capsys.readouterr().out
        assert [n for n in _netns() if n.startswith(prefix)] == [] and decoy in _netns()
        assert not (state_dir / "labs" / f"{prefix}.yaml").exists()
        assert main(["lab", "down"]) == 0
        assert "no lab recorded by `epgbridge lab up` on this host" in capsys.readouterr().out
        assert decoy in _netns()
    finally:
        cleanup_leftovers(prefix)
        subprocess.run(["ip", "netns", "delete", decoy], check=False)


@pytest.mark.netns
@pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")
def test_matrix_dataplane_exits_3_when_packets_disagree(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from dataplane import observe

    class NoRuleset:  # a node agent that applies nothing: every packet passes
        def __init__(self, node: str, netns: str | None = None) -> None:
            pass

        def apply(self, ir: object) -> None:
            pass

    monkeypatch.setattr(observe, "NodeDataplane", NoRuleset)
    assert main(["matrix", "-f", EXAMPLE, "--probe", "5432/TCP", "--dataplane", "-o", "json"]) == 3
    out, err = capsys.readouterr()
    assert json.loads(out)["probes"][0]["allowed"]["sandbox/netshoot"]["data/postgres-5f8d7c9b6-tq4wx"] is True
    assert "5432/TCP sandbox/netshoot -> data/postgres-5f8d7c9b6-tq4wx: packets passed, engine says denied" in err
    assert err.splitlines()[-1].startswith("error: the dataplane disagrees with the engine on ")
