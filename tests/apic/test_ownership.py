"""Sharing the APIC with another tool (issue 13, item 10): an object epgbridge wants that an Ansible edit
re-annotated (`orchestrator:ansible`, the modules' default) is reported, not silently skipped; the EPGs whose
contracts are, in part, someone else's are warned about; `push --strict` fails."""

from __future__ import annotations

import json
from typing import Any

import pytest

from apic_client import ApicSession, apply, plan, render
from apic_client.simulator import Simulator
from controller.snapshot import load_model

from .conftest import SessionFactory
from .test_push import EXAMPLE, Cli, cli  # noqa: F401 (the cli fixture)

FILTER_ENTRY = "uni/tn-shop/flt-https/e-tcp-443"


def desired() -> list[dict[str, Any]]:
    return list(render(load_model([EXAMPLE])).tenants)


def ansible_edits(session: ApicSession, dn: str, cls: str, **attributes: str) -> None:
    """What cisco.aci's modules POST: the object at its own DN, with their default annotation."""
    session.post(f"/api/mo/{dn}.json", {cls: {"attributes": {"dn": dn, "annotation": "orchestrator:ansible",
                                                            **attributes}}})


@pytest.fixture
def pushed(sim: Simulator, make_session: SessionFactory) -> ApicSession:
    session = make_session(sim.url)
    apply(plan(desired(), session), session)
    return session


def test_a_clean_push_owns_everything(pushed: ApicSession) -> None:
    again = plan(desired(), pushed)
    assert again.is_empty and again.not_owned == () and again.warnings == ()
    assert again.render_text() == "APIC is in sync: nothing to write."


def test_an_ansible_edit_is_reported_not_silently_skipped(pushed: ApicSession) -> None:
    ansible_edits(pushed, FILTER_ENTRY, "vzEntry", dFromPort="8443", dToPort="8443")
    result = plan(desired(), pushed)
    (foreign,) = result.not_owned
    assert (foreign.cls, foreign.dn, foreign.owner) == ("vzEntry", FILTER_ENTRY, "orchestrator:ansible")
    assert result.is_empty  # nothing is written over it
    text = result.render_text()
    assert text.startswith("Nothing epgbridge may write, but the APIC is not in sync")
    assert f"vzEntry {FILTER_ENTRY}: wanted, but exists on the APIC as orchestrator:ansible's" in text
    document = result.to_dict()
    assert document["notOwned"] == [{"class": "vzEntry", "dn": FILTER_ENTRY, "owner": "orchestrator:ansible",
                                     "reason": foreign.reason}]
    # Every EPG that provides or consumes the contract using that filter is warned about.
    (warning,) = result.warnings
    assert warning.startswith("EPG uni/tn-shop/ap-storefront/epg-api consumes contract "
                              "uni/tn-shop/brc-payments-https, of which 1 object(s) are orchestrator:ansible's")
    assert "the fabric enforces their entries" in warning


def test_taking_ownership_back(pushed: ApicSession) -> None:
    """docs/apic.md: edit with annotation orchestrator:epgbridge (or none) and the next push owns it again."""
    ansible_edits(pushed, FILTER_ENTRY, "vzEntry", dFromPort="8443", dToPort="8443")
    pushed.post(f"/api/mo/{FILTER_ENTRY}.json",
                {"vzEntry": {"attributes": {"dn": FILTER_ENTRY, "annotation": "orchestrator:epgbridge"}}})
    result = plan(desired(), pushed)
    assert result.not_owned == () and [(c.action, c.dn) for c in result.changes] == [("modify", FILTER_ENTRY)]
    apply(result, pushed)
    entry = pushed.get(f"/api/mo/{FILTER_ENTRY}.json")["imdata"][0]["vzEntry"]["attributes"]
    assert (entry["dFromPort"], entry["dToPort"]) == ("https", "https")  # the snapshot's port again


def test_push_warns_and_strict_fails(sim: Simulator, pushed: ApicSession, cli: Cli) -> None:  # noqa: F811
    ansible_edits(pushed, "uni/tn-shop/brc-payments-https", "vzBrCP", scope="global")
    status, out, err = cli("push", "-f", EXAMPLE, "--apic", sim.url)
    assert status == 0
    assert "warning: vzBrCP uni/tn-shop/brc-payments-https is orchestrator:ansible, not orchestrator:epgbridge" in err
    assert "warning: EPG uni/tn-shop/ap-storefront/epg-api consumes contract uni/tn-shop/brc-payments-https" in err
    status, out, err = cli("push", "-f", EXAMPLE, "--apic", sim.url, "--dry-run", "--strict", "-o", "json")
    assert status == 3 and "error: --strict: 1 object(s) not ours" in err
    assert [o["dn"] for o in json.loads(out)["notOwned"]] == ["uni/tn-shop/brc-payments-https"]
