"""Audit mode (issue 14): a NetworkPolicy annotated epgbridge.io/mode: audit, an EndpointGroup or Contract with
spec.mode: audit is evaluated, not enforced. What it alone would drop passes and is reported as a would-drop
(`~` in the truth tables), attributed to the same objects as an enforced drop would be."""

from __future__ import annotations

import json

import pytest

from contracts.matrix import Probe, compute_matrix
from controller.cli import main
from tests.core.builders import (
    assert_matrix,
    contract,
    endpoint_group,
    engine,
    entry,
    epg_value,
    model,
    namespace,
    netpol,
    pod,
)

AUDIT = {"epgbridge.io/mode": "audit"}


def _audited(doc: dict[str, object]) -> dict[str, object]:
    doc["metadata"]["annotations"] = dict(AUDIT)  # type: ignore[index]
    return doc


def _pods() -> list[dict[str, object]]:
    return [namespace("x"), pod("x", "a", "10.9.0.1", {"app": "a"}), pod("x", "b", "10.9.0.2", {"app": "b"}),
            pod("x", "c", "10.9.0.3", {"app": "c"})]


def test_a_networkpolicy_in_audit_mode_drops_nothing_and_reports_what_it_would() -> None:
    eng = engine(*_pods(), _audited(netpol("x", "b-in", podSelector={"matchLabels": {"app": "b"}},
                                           ingress=[{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}]}])))
    assert_matrix(eng, "80/TCP", """
       a b c
    a  . . .
    b  . . .
    c  . ~ .
    """)
    v = eng.decide(eng.endpoint("x/c"), eng.endpoint("x/b"), 80, "TCP")
    assert v.allowed and v.would_drop and v.deciding_layer == "networkPolicy"
    assert v.netpol.allowed and v.netpol.audit is not None
    assert v.netpol.audit.denied_by == ("NetworkPolicy x/b-in",)
    assert any("in audit mode: NetworkPolicy x/b-in" in r.text for r in v.netpol.reasons)
    doc = v.to_json()
    assert doc["wouldDrop"] is True and doc["networkPolicy"]["audit"]["allowed"] is False


def test_an_enforced_policy_beside_an_audit_one_decides_alone() -> None:
    """Where an enforced policy selects the pod, the audit one could only allow more: nothing to report."""
    eng = engine(*_pods(),
                 netpol("x", "b-in", podSelector={"matchLabels": {"app": "b"}},
                        ingress=[{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}]}]),
                 _audited(netpol("x", "b-in-audit", podSelector={"matchLabels": {"app": "b"}},
                                 ingress=[{"from": [{"podSelector": {"matchLabels": {"app": "c"}}}]}])))
    assert_matrix(eng, "80/TCP", """
       a b c
    a  . . .
    b  . . .
    c  . X .
    """)
    v = eng.decide(eng.endpoint("x/c"), eng.endpoint("x/b"), 80, "TCP")
    assert v.netpol.denied_by == ("NetworkPolicy x/b-in",)


def _epg_docs(*, db_mode: str | None = None, contract_mode: str | None = None) -> list[dict[str, object]]:
    db = endpoint_group("db", "t", "ap", provides=["sql"], **({"mode": db_mode} if db_mode else {}))
    sql = contract("sql", "t", permit=[entry("pg", "tcp", "5432-5440")], deny=[entry("old", "tcp", "5433")])
    if contract_mode:
        sql["spec"]["mode"] = contract_mode  # type: ignore[index]
    return [namespace("x"),
            pod("x", "web", "10.9.1.1", epg=epg_value("t", "ap", "web")),
            pod("x", "db", "10.9.1.2", epg=epg_value("t", "ap", "db")),
            pod("x", "other", "10.9.1.3", epg=epg_value("t", "ap", "other")),
            endpoint_group("web", "t", "ap", consumes=["sql"]), db, endpoint_group("other", "t", "ap"), sql]


def test_an_endpointgroup_in_audit_mode_passes_its_pairs_and_reports_them() -> None:
    enforced = engine(*_epg_docs())
    audited = engine(*_epg_docs(db_mode="audit"))
    for probe, web_db in (("5432/TCP", "."), ("5433/TCP", "X"), ("80/TCP", "X")):
        assert_matrix(enforced, probe, f"""
              web db    other
        web   .   {web_db}     X
        db    X   .     X
        other X   X     .
        """)
    for probe, web_db in (("5432/TCP", "."), ("5433/TCP", "~"), ("80/TCP", "~")):
        assert_matrix(audited, probe, f"""
              web db    other
        web   .   {web_db}     X
        db    ~   .     ~
        other X   ~     .
        """)
    v = audited.decide(audited.endpoint("x/other"), audited.endpoint("x/db"), 80, "TCP")
    assert v.deciding_layer == "epg" and v.epg.audit is not None
    assert v.epg.audit.denied_by == ("EndpointGroup t/ap/other", "EndpointGroup t/ap/db")
    assert v.epg.reasons[0].objects == ("EndpointGroup t/ap/db",)


def test_a_contract_in_audit_mode_reports_its_deny_entries() -> None:
    eng = engine(*_epg_docs(contract_mode="audit"))
    assert_matrix(eng, "5433/TCP", """
          web db other
    web   .   ~  X
    """)
    assert_matrix(eng, "5434/TCP", """
          web db other
    web   .   .  X
    """)
    v = eng.decide(eng.endpoint("x/web"), eng.endpoint("x/db"), 5433, "TCP")
    assert v.epg.audit is not None and v.epg.audit.denied_by == ("Contract t/sql",)
    assert "(audit mode)" in v.epg.audit.reasons[0].text
    ir = eng.compile()
    web = ir.pod("x/web")
    assert web is not None and web.egress_epg is not None
    assert [r.audit for r in web.egress_epg].count(True) == 1  # the deny entry's port, passed and logged


def test_matrix_json_reports_would_drops_in_the_shape_of_dropped() -> None:
    eng = engine(*_epg_docs(db_mode="audit"))
    m = compute_matrix(eng, [Probe(80, "TCP")])
    doc = m.to_json()
    assert doc["probes"][0]["wouldDrop"] == {
        "x/db": {"x/other": {"layer": "epg", "objects": ["EndpointGroup t/ap/db", "EndpointGroup t/ap/other"]},
                 "x/web": {"layer": "epg", "objects": ["EndpointGroup t/ap/db", "EndpointGroup t/ap/web"]}},
        "x/other": {"x/db": {"layer": "epg", "objects": ["EndpointGroup t/ap/other", "EndpointGroup t/ap/db"]}},
        "x/web": {"x/db": {"layer": "epg", "objects": ["EndpointGroup t/ap/web", "EndpointGroup t/ap/db"]}}}
    import io
    streamed = io.StringIO()
    m.write_json(streamed)
    assert json.loads(streamed.getvalue()) == doc
    plain = compute_matrix(engine(*_epg_docs()), [Probe(80, "TCP")]).to_json()
    assert "wouldDrop" not in plain["probes"][0]  # no audit objects: the shape of DESIGN 7, unchanged


def test_mode_is_validated_and_a_bad_annotation_enforces_with_a_warning() -> None:
    from epg.errors import InvalidInput

    bad = endpoint_group("db", "t", "ap", mode="dry-run")
    with pytest.raises(InvalidInput, match=r"spec.mode 'dry-run' must be enforce or audit"):
        model(bad)
    policy = netpol("x", "p", podSelector={})
    policy["metadata"]["annotations"] = {"epgbridge.io/mode": "audti"}
    m = model(*_pods(), policy)
    (pol,) = m.cluster.policies
    assert not pol.audit
    assert any("neither audit nor enforce: the policy is enforced" in n.message for n in m.warnings)


def test_explain_shows_the_audit_verdict_beside_the_enforced_one(tmp_path: object, capsys: pytest.CaptureFixture[str]
                                                                 ) -> None:
    import pathlib

    import yaml

    path = pathlib.Path(str(tmp_path)) / "c.yaml"
    path.write_text(yaml.safe_dump_all(_epg_docs(db_mode="audit")))
    assert main(["explain", "-f", str(path), "--from", "x/other", "--to", "x/db", "--probe", "80/TCP"]) == 0
    out = capsys.readouterr().out
    assert "verdict: ALLOWED" in out and "would be denied once the objects in audit mode are enforced" in out
    assert "in audit mode (reported, not enforced): WOULD DENY" in out
    assert main(["matrix", "-f", str(path), "--probe", "80/TCP"]) == 0
    assert "~ allowed, would be denied in audit mode" in capsys.readouterr().out
