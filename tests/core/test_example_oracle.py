"""The engine against an independent oracle: tests/data/example_expected.yaml was derived by hand from
DESIGN.md for examples/cluster, without reading any engine code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from contracts.engine import Engine
from contracts.matrix import Probe, compute_matrix
from controller.snapshot import load_model

ROOT = Path(__file__).resolve().parents[2]
ORACLE: dict[str, Any] = yaml.safe_load((ROOT / "tests/data/example_expected.yaml").read_text())


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(load_model([str(ROOT / "examples/cluster")]))


def test_example_is_valid(engine: Engine) -> None:
    assert not engine.model.errors
    assert sorted(p.key for p in engine.model.endpoints) == sorted(ORACLE["pods"])


def test_every_pod_is_in_the_expected_epg(engine: Engine) -> None:
    got = {p.key: str(engine.model.epg_of(p)) for p in engine.model.endpoints}
    assert got == ORACLE["epgs"]


@pytest.mark.parametrize("probe", ORACLE["probes"], ids=lambda p: f"{p['port']}/{p['protocol']}")
def test_matrix_equals_the_oracle(engine: Engine, probe: dict[str, Any]) -> None:
    got = compute_matrix(engine, [Probe(probe["port"], probe["protocol"])]).to_json()["probes"][0]["allowed"]
    diffs = [f"{s} -> {d}: engine {got[s][d]}, oracle {want}"
             for s, row in probe["allowed"].items() for d, want in row.items() if got[s][d] != want]
    assert not diffs, "\n".join(diffs)


@pytest.mark.parametrize("case", ORACLE["decisions"] + ORACLE["to_ip"],
                         ids=lambda c: f"{c['from'].split('/')[1][:6]}-{c['to'][-8:]}-{c['port']}")
def test_decided_by_the_expected_layer(engine: Engine, case: dict[str, Any]) -> None:
    v = engine.decide(engine.endpoint(case["from"]), engine.endpoint(case["to"]), case["port"], case["protocol"])
    assert v.allowed == case["allowed"], v.summary
    if case["decided_by"] == "epg":
        assert not v.epg.allowed and v.netpol.allowed, v.summary
    elif case["decided_by"] == "netpol":
        assert not v.netpol.allowed or v.allowed, v.summary
        assert v.epg.allowed, v.summary
    else:
        assert v.epg.allowed == v.netpol.allowed == case["allowed"], v.summary
