"""The EPG layer (DESIGN 4.2, 4.5): intra-EPG, provide/consume, scope, deny wins, tenant then common
lookup, external subnets and unclassified addresses. No NetworkPolicy here, so the EPG layer decides."""

from __future__ import annotations

from typing import Any

from tests.core.builders import (
    assert_matrix,
    config,
    contract,
    endpoint_group,
    engine,
    entry,
    epg_value,
    model,
    namespace,
    pod,
)

HTTP = [entry("http", "tcp", "80")]


def cluster(*extra: dict[str, Any], web_tenant: str = "shop", db_tenant: str = "shop",
            web_ap: str = "store", db_ap: str = "store") -> list[dict[str, Any]]:
    return [
        config(tenants=sorted({"kube", "shop", web_tenant, db_tenant})),  # undeclared EPGs of these tenants
        namespace("shop"),
        pod("shop", "web1", "10.0.0.1", epg=epg_value(web_tenant, web_ap, "web")),
        pod("shop", "web2", "10.0.0.2", epg=epg_value(web_tenant, web_ap, "web")),
        pod("shop", "api", "10.0.0.3", epg=epg_value("shop", "store", "api")),
        pod("shop", "db", "10.0.0.4", epg=epg_value(db_tenant, db_ap, "db")),
        *extra,
    ]


def test_no_contracts_only_intra_epg_traffic() -> None:
    eng = engine(*cluster())
    assert_matrix(eng, "80/TCP", """
         web1 web2 api db
    web1 .    .    X   X
    web2 .    .    X   X
    api  X    X    .   X
    """)


def test_intra_epg_isolate() -> None:
    eng = engine(*cluster(endpoint_group("web", "shop", "store", intraEpg="isolate")))
    assert_matrix(eng, "80/TCP", """
         web1 web2
    web1 .    X
    web2 X    .
    """)


def test_provider_and_consumer_direction() -> None:
    eng = engine(*cluster(
        endpoint_group("web", "shop", "store", consumes=["web-to-api"]),
        endpoint_group("api", "shop", "store", provides=["web-to-api"]),
        contract("web-to-api", "shop", permit=HTTP),
    ))
    assert_matrix(eng, "80/TCP", """
         web1 web2 api db
    web1 .    .    .   X
    api  X    X    .   X
    db   X    X    X   .
    """)
    assert_matrix(eng, "81/TCP", """
         api
    web1 X
    """)


def test_deny_entry_wins_over_permit_in_another_contract() -> None:
    eng = engine(*cluster(
        endpoint_group("web", "shop", "store", consumes=["wide", "no-8081"]),
        endpoint_group("api", "shop", "store", provides=["wide", "no-8081"]),
        contract("wide", "shop", permit=[entry("range", "tcp", "8000-8090")]),
        contract("no-8081", "shop", deny=[entry("x", "tcp", "8081")], permit=[entry("p", "udp", "53")]),
    ))
    web, api = eng.endpoint("shop/web1"), eng.endpoint("shop/api")
    assert eng.decide(web, api, 8080, "TCP").allowed
    denied = eng.decide(web, api, 8081, "TCP")
    assert not denied.allowed and "deny wins" in denied.epg.reasons[0].text
    assert "no-8081" in denied.epg.reasons[0].text
    assert eng.decide(web, api, 8082, "TCP").allowed
    assert eng.decide(web, api, 53, "UDP").allowed


def test_deny_entry_matches_consumer_to_provider_only() -> None:
    eng = engine(*cluster(
        endpoint_group("web", "shop", "store", consumes=["c"], provides=["back"]),
        endpoint_group("api", "shop", "store", provides=["c"], consumes=["back"]),
        contract("c", "shop", deny=[entry("no-http", "tcp", "80")]),
        contract("back", "shop", permit=HTTP),
    ))
    # The deny of contract c covers web -> api only; api -> web is permitted by contract back.
    assert eng.decide(eng.endpoint("shop/api"), eng.endpoint("shop/web1"), 80, "TCP").allowed
    assert not eng.decide(eng.endpoint("shop/web1"), eng.endpoint("shop/api"), 80, "TCP").allowed


def test_unspecified_protocol_and_apic_port_names() -> None:
    eng = engine(*cluster(
        endpoint_group("web", "shop", "store", consumes=["any", "named"]),
        endpoint_group("api", "shop", "store", provides=["named"]),
        endpoint_group("db", "shop", "store", provides=["any"]),
        contract("any", "shop", permit=[entry("all")]),
        contract("named", "shop", permit=[entry("h", "tcp", "http-https")]),
    ))
    web = eng.endpoint("shop/web1")
    assert eng.decide(web, eng.endpoint("shop/db"), 5432, "TCP").allowed
    assert eng.decide(web, eng.endpoint("shop/db"), 9, "SCTP").allowed
    assert eng.decide(web, eng.endpoint("shop/api"), 443, "TCP").allowed
    assert eng.decide(web, eng.endpoint("shop/api"), 80, "TCP").allowed
    assert not eng.decide(web, eng.endpoint("shop/api"), 444, "TCP").allowed


def test_sctp_entries_by_name_and_number() -> None:
    eng = engine(*cluster(
        endpoint_group("web", "shop", "store", consumes=["s"]),
        endpoint_group("api", "shop", "store", provides=["s"]),
        contract("s", "shop", permit=[entry("sctp", "sctp", "3868"), entry("n", 132, "2905")]),
    ))
    web, api = eng.endpoint("shop/web1"), eng.endpoint("shop/api")
    assert eng.decide(web, api, 3868, "SCTP").allowed and eng.decide(web, api, 2905, "SCTP").allowed
    assert not eng.decide(web, api, 3868, "TCP").allowed


def scoped(scope: str, **kw: Any) -> Any:
    return engine(*cluster(
        endpoint_group("web", kw.get("web_tenant", "shop"), kw.get("web_ap", "store"), consumes=["c"]),
        endpoint_group("db", kw.get("db_tenant", "shop"), kw.get("db_ap", "store"), provides=["c"]),
        contract("c", "common", scope=scope, permit=[entry("pg", "tcp", "5432")]),
        **kw,
    ))


def test_scope_application_profile_needs_same_tenant_and_ap() -> None:
    same = scoped("application-profile")
    assert same.decide(*_web_db(same), 5432, "TCP").allowed
    other_ap = scoped("application-profile", db_ap="data")
    verdict = other_ap.decide(*_web_db(other_ap), 5432, "TCP")
    assert not verdict.allowed and "out of scope" in verdict.epg.reasons[0].text


def test_scope_context_and_tenant_need_same_tenant() -> None:
    for scope in ("context", "tenant"):
        same = scoped(scope, db_ap="data")
        assert same.decide(*_web_db(same), 5432, "TCP").allowed
        other = scoped(scope, db_tenant="data")
        assert not other.decide(*_web_db(other), 5432, "TCP").allowed


def test_scope_global_crosses_tenants() -> None:
    eng = scoped("global", db_tenant="data", db_ap="pg")
    assert eng.decide(*_web_db(eng), 5432, "TCP").allowed


def _web_db(eng: Any) -> tuple[Any, Any]:
    return eng.endpoint("shop/web1"), eng.endpoint("shop/db")


def test_contract_lookup_tenant_first_then_common() -> None:
    docs = cluster(
        endpoint_group("web", "shop", "store", consumes=["dns"]),
        endpoint_group("api", "shop", "store", provides=["dns"]),
        contract("dns", "common", scope="global", permit=[entry("dns", "udp", "53")]),
        contract("dns", "shop", permit=[entry("dns-tcp", "tcp", "53")], filter_prefix="shop-dns"),
    )
    eng = engine(*docs)
    web, api = eng.endpoint("shop/web1"), eng.endpoint("shop/api")
    assert eng.decide(web, api, 53, "TCP").allowed  # shop/dns shadows common/dns
    assert not eng.decide(web, api, 53, "UDP").allowed
    only_common = engine(*[d for d in docs if d["metadata"]["name"] != "shop-dns"])
    assert only_common.decide(only_common.endpoint("shop/web1"), only_common.endpoint("shop/api"), 53, "UDP").allowed


def test_cross_tenant_common_contract_is_one_contract_for_both() -> None:
    # web (tenant shop) consumes "mon" and db (tenant data) provides "mon": both resolve to common/mon.
    eng = engine(*cluster(
        endpoint_group("web", "shop", "store", consumes=["mon"]),
        endpoint_group("db", "data", "pg", provides=["mon"]),
        contract("mon", "common", scope="global", permit=[entry("m", "tcp", "9100")]),
        db_tenant="data", db_ap="pg",
    ))
    assert eng.decide(eng.endpoint("shop/web1"), eng.endpoint("shop/db"), 9100, "TCP").allowed


def test_unresolved_contract_name_warns_and_permits_nothing() -> None:
    m = model(*cluster(endpoint_group("web", "shop", "store", consumes=["ghost"]),
                       endpoint_group("api", "shop", "store", provides=["ghost"])))
    assert any("'ghost'" in str(w) and "permits nothing" in str(w) for w in m.warnings)
    from contracts.engine import Engine
    eng = Engine(m)
    assert not eng.decide(eng.endpoint("shop/web1"), eng.endpoint("shop/api"), 80, "TCP").allowed


def test_external_epg_subnets_classify_non_pod_addresses() -> None:
    eng = engine(*cluster(
        endpoint_group("web", "shop", "store", consumes=["to-internet"]),
        endpoint_group("internet", "shop", "store", subnets=["203.0.113.0/24"], provides=["to-internet"]),
        endpoint_group("partner", "shop", "store", subnets=["203.0.113.128/25"]),
        contract("to-internet", "shop", permit=[entry("https", "tcp", "443")]),
    ))
    web = eng.endpoint("shop/web1")
    assert eng.decide(web, eng.endpoint("203.0.113.5"), 443, "TCP").allowed
    assert not eng.decide(web, eng.endpoint("203.0.113.5"), 80, "TCP").allowed
    # Longest prefix wins: .200 is in partner, which provides nothing.
    partner = eng.decide(web, eng.endpoint("203.0.113.200"), 443, "TCP")
    assert not partner.allowed and "shop/store/partner" in partner.dst_epg
    # Outside every EPG: the EPG layer leaves it to NetworkPolicy.
    assert eng.decide(web, eng.endpoint("198.51.100.7"), 80, "TCP").allowed


def test_subnets_never_reclassify_pods() -> None:
    eng = engine(*cluster(
        endpoint_group("corp", "shop", "store", subnets=["10.0.0.0/8"], intraEpg="permit"),
    ))
    # db is a pod in 10/8 but stays in its annotated EPG; corp's subnet does not capture it.
    assert eng.classify(eng.endpoint("shop/db")).ref is not None
    assert str(eng.classify(eng.endpoint("shop/db")).ref) == "shop/store/db"
    assert str(eng.classify(eng.endpoint("10.9.9.9")).ref) == "shop/store/corp"


def test_undeclared_epg_is_intra_only_with_warning() -> None:
    m = model(*cluster())
    assert any("no EndpointGroup declares it" in str(w) for w in m.warnings)
