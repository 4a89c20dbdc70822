"""acitoolkit's own Session against the simulator: log in, push a tenant, read it back with get_deep.

acitoolkit is an optional extra (``epgbridge[acitoolkit]``); these tests skip when it is not installed.
"""

from __future__ import annotations

from typing import Any

import pytest

from apic_client.acitoolkit_compat import import_acitoolkit
from apic_client.simulator import Faults, Simulator

from .conftest import PASSWORD, SimFactory

try:
    aci: Any = import_acitoolkit()
except ImportError:  # pragma: no cover - depends on the environment
    pytest.skip("acitoolkit is not installed (pip install 'epgbridge[acitoolkit]')", allow_module_level=True)

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")


@pytest.fixture
def atk_session(make_sim: SimFactory) -> Any:
    # A short token lifetime keeps acitoolkit's refresh thread waking up, so it can exit at teardown.
    sim = make_sim(tls=True, faults=Faults(token_lifetime=2))
    session = aci.Session(sim.url, "admin", PASSWORD, subscription_enabled=False)
    session.simulator = sim
    yield session
    session.login_thread.exit()
    session.login_thread.join(timeout=5)
    session.close()


def build_tenant() -> Any:
    tenant = aci.Tenant("atk-demo")
    app = aci.AppProfile("app", tenant)
    web = aci.EPG("web", app)
    db = aci.EPG("db", app)
    bd = aci.BridgeDomain("bd1", tenant)
    vrf = aci.Context("vrf1", tenant)
    bd.add_context(vrf)
    web.add_bd(bd)
    db.add_bd(bd)
    contract = aci.Contract("web-http", tenant)
    aci.FilterEntry(
        "tcp-80",
        applyToFrag="no",
        arpOpc="unspecified",
        dFromPort="80",
        dToPort="80",
        etherT="ip",
        prot="tcp",
        sFromPort="1",
        sToPort="65535",
        tcpRules="unspecified",
        parent=contract,
    )
    web.provide(contract)
    db.consume(contract)
    return tenant


def test_acitoolkit_logs_in_pushes_and_reads_back(atk_session: Any) -> None:
    sim: Simulator = atk_session.simulator
    assert atk_session.login().ok
    assert atk_session.logged_in()
    response = build_tenant().push_to_apic(atk_session)
    assert response.ok, response.text
    assert sim.counters.post_paths == ["/api/mo/uni.json"]

    (tenant,) = aci.Tenant.get_deep(atk_session, names=["atk-demo"])
    (app,) = tenant.get_children(aci.AppProfile)
    epgs = {epg.name: epg for epg in app.get_children(aci.EPG)}
    assert set(epgs) == {"web", "db"}
    assert [c.name for c in epgs["web"].get_all_provided()] == ["web-http"]
    assert [c.name for c in epgs["db"].get_all_consumed()] == ["web-http"]
    assert epgs["web"].get_bd().name == "bd1"
    assert [c.name for c in tenant.get_children(aci.Contract)] == ["web-http"]
    (flt,) = tenant.get_children(aci.Filter)
    entries = flt.get_children(aci.FilterEntry)
    # The APIC stores port 80 as "http": acitoolkit reads back what the APIC holds.
    assert [(e.name, e.dFromPort, e.prot) for e in entries] == [("tcp-80", "http", "tcp")]


def test_acitoolkit_deletes_with_status_deleted(atk_session: Any) -> None:
    assert atk_session.login().ok
    tenant = build_tenant()
    assert tenant.push_to_apic(atk_session).ok
    tenant.mark_as_deleted()
    assert tenant.push_to_apic(atk_session).ok
    assert aci.Tenant.get_deep(atk_session, names=["atk-demo"]) == []
    assert {t.name for t in aci.Tenant.get(atk_session)} == {"common", "infra", "mgmt"}
