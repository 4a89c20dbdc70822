"""The simulator on the wire with plain `requests`: auth, cookies, writes, error codes, queries, restarts."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests

from apic_client.simulator import Faults, Simulator

from .conftest import PASSWORD, SimFactory, mo


def login(sim: Simulator, http: requests.Session | None = None) -> requests.Session:
    http = http or requests.Session()
    body = {"aaaUser": {"attributes": {"name": "admin", "pwd": PASSWORD}}}
    reply = http.post(
        sim.url + "/api/aaaLogin.json", data=json.dumps(body), verify=str(sim.cert_path), timeout=5
    )
    assert reply.status_code == 200, reply.text
    return http


@pytest.fixture
def http(sim: Simulator) -> requests.Session:
    return login(sim)


def post(sim: Simulator, http: requests.Session, path: str, payload: Any) -> requests.Response:
    return http.post(sim.url + path, data=json.dumps(payload), timeout=5)


def get(sim: Simulator, http: requests.Session, path: str, **params: str) -> dict[str, Any]:
    reply = http.get(sim.url + path, params=params, timeout=5)
    assert reply.status_code == 200, reply.text
    return reply.json()


def error_of(reply: requests.Response) -> tuple[int, str, str]:
    attributes = reply.json()["imdata"][0]["error"]["attributes"]
    return reply.status_code, attributes["code"], attributes["text"]


def attrs(obj: dict[str, Any]) -> dict[str, str]:
    return next(iter(obj.values()))["attributes"]


# Authentication


def test_login_answer_has_what_clients_read(sim: Simulator) -> None:
    reply = requests.post(
        sim.url + "/api/aaaLogin.json",
        data=json.dumps({"aaaUser": {"attributes": {"name": "admin", "pwd": PASSWORD}}}),
        timeout=5,
    )
    assert reply.status_code == 200
    document = reply.json()
    assert document["totalCount"] == "1"
    login_attributes = document["imdata"][0]["aaaLogin"]["attributes"]
    for key in ("token", "refreshTimeoutSeconds", "version", "creationTime", "maximumLifetimeSeconds"):
        assert isinstance(login_attributes[key], str) and login_attributes[key]
    assert int(login_attributes["creationTime"]) > 0
    cookie = reply.headers["Set-Cookie"]
    assert cookie.startswith(f"APIC-cookie={login_attributes['token']}")
    assert "HttpOnly" in cookie
    assert "Secure" not in cookie  # plain http: a Secure cookie would never come back


def test_cookie_is_secure_over_https(make_sim: SimFactory) -> None:
    sim = make_sim(tls=True)
    http = requests.Session()
    reply = http.post(
        sim.url + "/api/aaaLogin.json",
        data=json.dumps({"aaaUser": {"attributes": {"name": "admin", "pwd": PASSWORD}}}),
        verify=str(sim.cert_path),
        timeout=5,
    )
    assert "Secure" in reply.headers["Set-Cookie"]
    back = http.get(sim.url + "/api/mo/uni/tn-common.json", verify=str(sim.cert_path), timeout=5)
    assert back.json()["totalCount"] == "1"  # the Secure cookie does come back over https


def test_bad_password_is_401(sim: Simulator) -> None:
    reply = requests.post(
        sim.url + "/api/aaaLogin.json",
        data='{"aaaUser":{"attributes":{"name":"admin","pwd":"nope"}}}',
        timeout=5,
    )
    assert error_of(reply) == (401, "401", "Username or password is incorrect - FAILED local authentication")


def test_no_cookie_is_403(sim: Simulator) -> None:
    reply = requests.get(sim.url + "/api/class/fvTenant.json", timeout=5)
    status, code, text = error_of(reply)
    assert (status, code) == (403, "403")
    assert text.startswith("Need a valid webtoken cookie (named APIC-Cookie)")


def test_expired_token_is_403_token_timeout(make_sim: SimFactory) -> None:
    sim = make_sim(faults=Faults(token_lifetime=1))
    http = login(sim)
    assert http.get(sim.url + "/api/class/fvTenant.json", timeout=5).status_code == 200
    time.sleep(1.2)
    reply = http.get(sim.url + "/api/class/fvTenant.json", timeout=5)
    assert error_of(reply) == (403, "403", "Token was invalid (Error: Token timeout)")


def test_refresh_returns_a_new_token_and_cookie(sim: Simulator, http: requests.Session) -> None:
    old = http.cookies["APIC-cookie"]
    reply = http.get(sim.url + "/api/aaaRefresh.json", timeout=5)
    assert reply.status_code == 200
    new = reply.json()["imdata"][0]["aaaLogin"]["attributes"]["token"]
    assert new != old and http.cookies["APIC-cookie"] == new
    assert get(sim, http, "/api/class/fvTenant.json")["totalCount"] == "3"


def test_cookie_name_is_case_insensitive_and_logout_ends_the_session(
    sim: Simulator, http: requests.Session
) -> None:
    token = http.cookies["APIC-cookie"]
    other = requests.get(
        sim.url + "/api/class/fvTenant.json", headers={"Cookie": f"APIC-Cookie={token}"}, timeout=5
    )
    assert other.status_code == 200
    assert (
        post(sim, http, "/api/aaaLogout.json", {"aaaUser": {"attributes": {"name": "admin"}}}).status_code
        == 200
    )
    gone = requests.get(
        sim.url + "/api/class/fvTenant.json", headers={"Cookie": f"APIC-cookie={token}"}, timeout=5
    )
    assert gone.status_code == 403


def test_login_throttle_answers_503(make_sim: SimFactory) -> None:
    sim = make_sim(faults=Faults(login_rate=1.0, login_burst=2))
    body = json.dumps({"aaaUser": {"attributes": {"name": "admin", "pwd": PASSWORD}}})
    statuses = [
        requests.post(sim.url + "/api/aaaLogin.json", data=body, timeout=5).status_code for _ in range(4)
    ]
    assert statuses[:2] == [200, 200]
    assert 503 in statuses[2:]


def test_unknown_path_is_cisco_404(sim: Simulator) -> None:
    reply = requests.get(sim.url + "/nothing/here", timeout=5)
    assert reply.status_code == 404
    assert "<center>Cisco APIC</center>" in reply.text
    assert reply.headers["Server"] == "Cisco APIC"


# Writes


def test_post_answers_the_30_byte_envelope_and_stores_metadata(
    sim: Simulator, http: requests.Session
) -> None:
    reply = post(sim, http, "/api/mo/uni.json", mo("fvTenant", {"name": "t1"}))
    assert reply.status_code == 200
    assert reply.text == '{"totalCount":"0","imdata":[]}' and len(reply.content) == 30
    (tenant,) = get(sim, http, "/api/mo/uni/tn-t1.json")["imdata"]
    attributes = attrs(tenant)
    assert attributes["dn"] == "uni/tn-t1"
    assert (attributes["status"], attributes["childAction"], attributes["uid"]) == ("", "", "15374")
    assert attributes["modTs"].endswith("+00:00")
    assert list(attributes) == sorted(attributes)
    # The APIC adds implicit children, created by the system.
    children = get(sim, http, "/api/mo/uni/tn-t1.json", **{"query-target": "children"})["imdata"]
    assert {next(iter(c)) for c in children} == {"fvEpTags", "fvRsTenantMonPol", "vnsSvcCont"}
    assert {attrs(c)["uid"] for c in children} == {"0"}


def test_post_to_own_dn_and_to_mo_root(sim: Simulator, http: requests.Session) -> None:
    assert post(sim, http, "/api/mo/uni/tn-t2.json", mo("fvTenant", {"dn": "uni/tn-t2", "name": "t2"})).ok
    assert post(sim, http, "/api/node/mo/uni/tn-t2/ap-a.json", mo("fvAp", {"name": "a"})).ok
    assert post(sim, http, "/api/mo.json", mo("fvAp", {"dn": "uni/tn-t2/ap-b", "name": "b"})).ok
    names = {attrs(o)["name"] for o in get(sim, http, "/api/class/fvAp.json")["imdata"]}
    assert names == {"a", "b"}


def test_status_values(sim: Simulator, http: requests.Session) -> None:
    tenant = mo("fvTenant", {"name": "t3", "status": "created"}, mo("fvAp", {"name": "a"}))
    assert post(sim, http, "/api/mo/uni.json", tenant).ok
    assert post(
        sim,
        http,
        "/api/mo/uni.json",
        mo("fvTenant", {"name": "t3", "descr": "x", "status": "created, modified"}),
    ).ok
    assert attrs(get(sim, http, "/api/mo/uni/tn-t3.json")["imdata"][0])["descr"] == "x"
    assert post(sim, http, "/api/mo/uni/tn-t3.json", mo("fvAp", {"name": "a", "status": "deleted"})).ok
    assert get(sim, http, "/api/mo/uni/tn-t3/ap-a.json")["totalCount"] == "0"
    # Deleting what is not there is a no-op, as POST is idempotent.
    assert post(sim, http, "/api/mo/uni/tn-t3.json", mo("fvAp", {"name": "a", "status": "deleted"})).ok
    assert post(sim, http, "/api/mo/uni.json", mo("fvTenant", {"name": "t3", "status": "deleted"})).ok
    assert get(sim, http, "/api/mo/uni/tn-t3.json", **{"query-target": "subtree"})["totalCount"] == "0"


@pytest.mark.parametrize(
    ("path", "payload", "code", "text"),
    [
        (
            "/api/mo/uni/tn-missing.json",
            mo("fvAp", {"name": "a"}),
            "102",
            "configured object ((Dn0)) not found Dn0=uni/tn-missing, ",
        ),
        (
            "/api/mo/uni.json",
            mo("fvTenant", {"name": "common", "status": "created"}),
            "103",
            "child (tn-common) of class fvTenant is already attached.",
        ),
        (
            "/api/mo/uni.json",
            mo(
                "fvTenant",
                {"name": "t"},
                mo("fvAp", {"name": "a"}, mo("fvAEPg", {"name": "e", "pcEnfPref": "maybe"})),
            ),
            "120",
            "unknown property value maybe, name pcEnfPref, class fvAEPg [(Dn0)] Dn0=uni/tn-t/ap-a/epg-e, ",
        ),
        ("/api/mo/uni.json", mo("fvFoobar", {"name": "x"}), "122", "unknown managed object class fvFoobar"),
        (
            "/api/mo/uni.json",
            mo("fvTenant", {"descr": "no name"}),
            "822",
            "naming property ('fvTenant.name') is not set.",
        ),
        (
            "/api/mo/uni.json",
            mo("fvTenant", {"name": "bad name!"}),
            "801",
            "property name of tn-bad name! failed validation for value 'bad name!'",
        ),
        (
            "/api/mo/uni.json",
            mo("fvTenant", {"name": "t", "description": "x"}),
            "400",
            "unknown attribute 'description' in element 'fvTenant'",
        ),
    ],
)
def test_write_errors_have_apic_codes(
    sim: Simulator, http: requests.Session, path: str, payload: Any, code: str, text: str
) -> None:
    reply = post(sim, http, path, payload)
    assert error_of(reply) == (400, code, text)
    assert get(sim, http, "/api/mo/uni/tn-t.json")["totalCount"] == "0"  # nothing of a failed POST stays


def test_children_before_attributes_is_822(sim: Simulator, http: requests.Session) -> None:
    raw = (
        '{"fvTenant":{"attributes":{"name":"t"},'
        '"children":[{"fvAp":{"children":[],"attributes":{"name":"a"}}}]}}'
    )
    reply = http.post(sim.url + "/api/mo/uni.json", data=raw, timeout=5)
    assert error_of(reply) == (400, "822", "naming property ('fvAp.name') is not set.")


def test_numeric_forms_are_stored_as_names(sim: Simulator, http: requests.Session) -> None:
    entry = mo(
        "vzEntry",
        {
            "name": "e",
            "etherT": "ip",
            "prot": "6",
            "dFromPort": "80",
            "dToPort": "443",
            "sFromPort": "1",
            "applyToFrag": "0",
            "stateful": "0",
            "tcpRules": "0",
            "arpOpc": "0",
        },
    )
    assert post(
        sim, http, "/api/mo/uni.json", mo("fvTenant", {"name": "t"}, mo("vzFilter", {"name": "f"}, entry))
    ).ok
    stored = attrs(get(sim, http, "/api/mo/uni/tn-t/flt-f/e-e.json")["imdata"][0])
    assert (stored["prot"], stored["dFromPort"], stored["dToPort"], stored["sFromPort"]) == (
        "tcp",
        "http",
        "https",
        "1",
    )
    assert (stored["applyToFrag"], stored["stateful"], stored["tcpRules"], stored["arpOpc"]) == (
        "no",
        "no",
        "",
        "unspecified",
    )


# Reads


@pytest.fixture
def tree(sim: Simulator, http: requests.Session) -> None:
    payload = mo(
        "fvTenant",
        {"name": "q"},
        mo(
            "fvAp",
            {"name": "app"},
            *[
                mo(
                    "fvAEPg",
                    {"name": f"epg{i}", "pcEnfPref": "enforced" if i % 2 else "unenforced"},
                    mo("fvRsBd", {"tnFvBDName": "bd"}),
                )
                for i in range(5)
            ],
        ),
        mo("fvBD", {"name": "bd"}),
        mo("vzFilter", {"name": "f"}, mo("vzEntry", {"name": "e1"}), mo("vzEntry", {"name": "e2"})),
    )
    assert post(sim, http, "/api/mo/uni.json", payload).ok


def names(document: dict[str, Any]) -> list[str]:
    return [attrs(o).get("name", attrs(o).get("dn", "")) for o in document["imdata"]]


@pytest.mark.usefixtures("tree")
def test_query_targets(sim: Simulator, http: requests.Session) -> None:
    assert names(get(sim, http, "/api/mo/uni/tn-q/ap-app.json")) == ["app"]
    assert names(get(sim, http, "/api/mo/uni/tn-q/ap-app.json", **{"query-target": "children"})) == [
        f"epg{i}" for i in range(5)
    ]
    subtree = get(sim, http, "/api/mo/uni/tn-q/ap-app.json", **{"query-target": "subtree"})
    assert subtree["totalCount"] == str(1 + 5 + 5 + 5)  # AP, EPGs, their fvRsBd and implicit fvRsCustQosPol
    only = get(
        sim,
        http,
        "/api/node/mo/uni/tn-q.json",
        **{"query-target": "subtree", "target-subtree-class": "vzEntry"},
    )
    assert names(only) == ["e1", "e2"]


@pytest.mark.usefixtures("tree")
@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('eq(fvAEPg.name,"epg3")', ["epg3"]),
        ('ne(fvAEPg.pcEnfPref,"enforced")', ["epg0", "epg2", "epg4"]),
        ('lt(fvAEPg.name,"epg2")', ["epg0", "epg1"]),
        ('gt(fvAEPg.name,"epg2")', ["epg3", "epg4"]),
        ('wcard(fvAEPg.dn,"epg[34]")', ["epg3", "epg4"]),
        ('and(eq(fvAEPg.pcEnfPref,"enforced"),wcard(fvAEPg.name,"3"))', ["epg3"]),
        ('or(eq(fvAEPg.name,"epg0"),eq(fvAEPg.name,"epg4"))', ["epg0", "epg4"]),
        ('not(wcard(fvAEPg.name,"epg[0-3]"))', ["epg4"]),
    ],
)
def test_filters(sim: Simulator, http: requests.Session, expression: str, expected: list[str]) -> None:
    assert names(get(sim, http, "/api/class/fvAEPg.json", **{"query-target-filter": expression})) == expected


@pytest.mark.usefixtures("tree")
def test_unencoded_filter_and_bad_filter(sim: Simulator, http: requests.Session) -> None:
    raw = http.get(
        sim.url + '/api/node/class/fvAEPg.json?query-target-filter=eq(fvAEPg.name,"epg1")', timeout=5
    )
    assert names(raw.json()) == ["epg1"]
    bad = http.get(
        sim.url + "/api/class/fvAEPg.json", params={"query-target-filter": "eq(fvAEPg.name"}, timeout=5
    )
    assert bad.status_code == 400


@pytest.mark.usefixtures("tree")
def test_rsp_subtree_and_prop_include(sim: Simulator, http: requests.Session) -> None:
    children = get(sim, http, "/api/mo/uni/tn-q.json", **{"rsp-subtree": "children"})["imdata"][0]["fvTenant"]
    assert all("children" not in next(iter(c.values())) for c in children["children"])
    full = get(sim, http, "/api/mo/uni/tn-q.json", **{"rsp-subtree": "full", "rsp-subtree-class": "vzEntry"})
    (tenant,) = full["imdata"]
    (flt,) = tenant["fvTenant"]["children"]  # only the way to vzEntry objects
    entries = flt["vzFilter"]["children"]
    assert [attrs(e)["rn"] for e in entries] == ["e-e1", "e-e2"]
    assert all("dn" not in attrs(e) for e in entries)  # nested children carry rn, not dn
    naming = attrs(
        get(sim, http, "/api/mo/uni/tn-q/BD-bd.json", **{"rsp-prop-include": "naming-only"})["imdata"][0]
    )
    assert naming == {"dn": "uni/tn-q/BD-bd", "name": "bd"}
    config = attrs(
        get(sim, http, "/api/mo/uni/tn-q/BD-bd.json", **{"rsp-prop-include": "config-only"})["imdata"][0]
    )
    assert "unicastRoute" in config and "modTs" not in config and "uid" not in config


@pytest.mark.usefixtures("tree")
def test_paging_counts_every_page(sim: Simulator, http: requests.Session) -> None:
    pages = [get(sim, http, "/api/class/fvAEPg.json", **{"page-size": "2", "page": str(p)}) for p in range(3)]
    assert [p["totalCount"] for p in pages] == ["5", "5", "5"]
    assert [names(p) for p in pages] == [["epg0", "epg1"], ["epg2", "epg3"], ["epg4"]]
    ordered = get(sim, http, "/api/class/fvAEPg.json", **{"order-by": "fvAEPg.name|desc", "page-size": "1"})
    assert names(ordered) == ["epg4"]


@pytest.mark.usefixtures("tree")
def test_relations_are_resolved(sim: Simulator, http: requests.Session) -> None:
    relation = attrs(get(sim, http, "/api/mo/uni/tn-q/ap-app/epg-epg0/rsbd.json")["imdata"][0])
    assert (relation["tDn"], relation["tRn"], relation["tCl"], relation["state"]) == (
        "uni/tn-q/BD-bd",
        "BD-bd",
        "fvBD",
        "formed",
    )
    assert post(
        sim, http, "/api/mo/uni/tn-q/ap-app/epg-epg0.json", mo("fvRsProv", {"tnVzBrCPName": "nope"})
    ).ok
    missing = attrs(get(sim, http, "/api/mo/uni/tn-q/ap-app/epg-epg0/rsprov-nope.json")["imdata"][0])
    assert missing["state"] == "missing-target"
    common = attrs(get(sim, http, "/api/mo/uni/tn-q/ap-app/epg-epg0/rscustQosPol.json")["imdata"][0])
    assert (common["tDn"], common["state"]) == ("uni/tn-common/qoscustom-default", "formed")


def test_unknown_dn_is_empty_and_unknown_class_is_400(sim: Simulator, http: requests.Session) -> None:
    assert get(sim, http, "/api/mo/uni/tn-nothing.json") == {"totalCount": "0", "imdata": []}
    reply = http.get(sim.url + "/api/class/fvTenantt.json", timeout=5)
    assert error_of(reply) == (400, "400", "Request failed, unresolved class for fvTenantt")


def test_subscription_answer_has_a_string_id(sim: Simulator, http: requests.Session) -> None:
    document = get(sim, http, "/api/class/fvTenant.json", subscription="yes")
    assert isinstance(document["subscriptionId"], str)
    assert all(attrs(o)["status"] == "" and attrs(o)["dn"] for o in document["imdata"])


# Persistence and faults


def test_state_survives_restart(sim: Simulator, http: requests.Session) -> None:
    assert post(sim, http, "/api/mo/uni.json", mo("fvTenant", {"name": "keep"}, mo("fvAp", {"name": "a"}))).ok
    before = get(sim, http, "/api/mo/uni/tn-keep.json", **{"rsp-subtree": "full"})
    sim.restart()
    http = login(sim)  # sessions do not survive a restart
    assert get(sim, http, "/api/mo/uni/tn-keep.json", **{"rsp-subtree": "full"}) == before


def test_new_simulator_on_the_same_state_file(make_sim: SimFactory, tmp_path) -> None:
    first = make_sim("shared")
    assert post(first, login(first), "/api/mo/uni.json", mo("fvTenant", {"name": "persisted"})).ok
    first.stop()
    second = Simulator(tmp_path / "shared.sqlite", tls=False, password=PASSWORD)
    second.start()
    try:
        assert get(second, login(second), "/api/mo/uni/tn-persisted.json")["totalCount"] == "1"
    finally:
        second.stop()


def test_injected_failures_latency_and_resets(sim: Simulator, http: requests.Session) -> None:
    sim.faults.fail_next(2, 503)
    statuses = [http.get(sim.url + "/api/class/fvTenant.json", timeout=5).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    sim.faults.latency = 0.2
    start = time.monotonic()
    get(sim, http, "/api/class/fvTenant.json")
    assert time.monotonic() - start >= 0.2
    sim.faults.latency = 0.0
    sim.faults.reset_next(1)
    with pytest.raises(requests.ConnectionError):
        http.get(sim.url + "/api/class/fvTenant.json", timeout=5)
    sim.faults.error_rate, sim.faults.error_status = 1.0, 500
    assert http.get(sim.url + "/api/class/fvTenant.json", timeout=5).status_code == 500
    sim.faults.error_rate = 0.0
    assert sim.counters.injected_errors == 3 and sim.counters.resets == 1
