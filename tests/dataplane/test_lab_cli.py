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
        assert observed == expected

        assert main(["lab", "probe", "-f", EXAMPLE, "--prefix", prefix, "--probe", "80/TCP"]) == 0
        assert "agrees with the engine on all 81 cells" in capsys.readouterr().out
    finally:
        assert main(["lab", "down", "--prefix", prefix]) == 0
        cleanup_leftovers(prefix)  # only if `lab down` failed; a no-op otherwise
    assert [n for n in _netns() if n.startswith(prefix)] == []


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
