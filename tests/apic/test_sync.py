"""Diff-sync against the simulator: POST counts, idempotence, ownership, and recovery from faults."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from apic_client import OWNER_ANNOTATION, ApicSession, MoTreeError, Plan, apply, plan, sync
from apic_client.simulator import Simulator

from .conftest import SessionFactory, kube_tenant, mo

OBJECTS_PER_KUBE_TENANT = (
    16  # tenant, AP, 2 EPGs + 4 relations, BD + rsctx, ctx, contract + subject + relation, filter + entry
)


def owned_census(session: ApicSession) -> Counter[str]:
    """How many objects of each class carry our annotation, read with a fresh class query per class."""
    census: Counter[str] = Counter()
    for cls in (
        "fvTenant",
        "fvAp",
        "fvAEPg",
        "fvRsBd",
        "fvRsProv",
        "fvRsCons",
        "fvBD",
        "fvRsCtx",
        "fvCtx",
        "vzBrCP",
        "vzSubj",
        "vzRsSubjFiltAtt",
        "vzFilter",
        "vzEntry",
    ):
        reply = session.get(
            f"/api/class/{cls}.json", {"query-target-filter": f'eq({cls}.annotation,"{OWNER_ANNOTATION}")'}
        )
        census[cls] = int(reply["totalCount"])
    return census


def expected_census(tenants: int) -> Counter[str]:
    per_tenant = {
        "fvTenant": 1,
        "fvAp": 1,
        "fvAEPg": 2,
        "fvRsBd": 2,
        "fvRsProv": 1,
        "fvRsCons": 1,
        "fvBD": 1,
        "fvRsCtx": 1,
        "fvCtx": 1,
        "vzBrCP": 1,
        "vzSubj": 1,
        "vzRsSubjFiltAtt": 1,
        "vzFilter": 1,
        "vzEntry": 1,
    }
    assert sum(per_tenant.values()) == OBJECTS_PER_KUBE_TENANT
    return Counter({cls: n * tenants for cls, n in per_tenant.items()})


def foreign_post(
    sim: Simulator, make_session: SessionFactory, payload: dict[str, Any], path: str = "/api/mo/uni.json"
) -> None:
    """Somebody else (no annotation) writes to the APIC."""
    make_session(sim.url).post(path, payload)


def test_cold_sync_packs_tenants_into_one_post(sim: Simulator, session: ApicSession) -> None:
    desired = [kube_tenant(tenant="a"), kube_tenant(tenant="b")]
    result = plan(desired, session)
    assert result.summary() == {"create": 2 * OBJECTS_PER_KUBE_TENANT, "modify": 0, "delete": 0, "posts": 1}
    assert session.counters.gets == 3  # discovery + one read per tenant
    assert apply(result, session) == 1
    assert sim.counters.post_paths == ["/api/mo/uni.json"]  # both tenants under one polUni root
    assert owned_census(session) == expected_census(2)


def test_payload_limit_splits_posts_per_tenant_and_within_a_tenant(sim: Simulator, session: ApicSession) -> None:
    desired = [kube_tenant(tenant="a"), kube_tenant(tenant="b")]
    one_tenant = len(json.dumps(plan(desired[:1], session).posts[0].payload))
    per_tenant = plan(desired, session, max_payload=one_tenant + 10)
    assert [p.path for p in per_tenant.posts] == ["/api/mo/uni/tn-a.json", "/api/mo/uni/tn-b.json"]
    tiny = plan(desired, session, max_payload=one_tenant // 3)
    assert tiny.post_count > 2
    assert all(len(json.dumps(p.payload)) <= one_tenant // 3 for p in tiny.posts)
    assert apply(tiny, session) == tiny.post_count
    assert owned_census(session) == expected_census(2)
    assert plan(desired, session).is_empty


def test_resync_is_a_no_op_that_writes_nothing(sim: Simulator, session: ApicSession) -> None:
    desired = [kube_tenant()]
    sync(desired, session)
    posts = sim.counters.posts
    again = sync(desired, session)
    assert again.is_empty and again.changes == ()
    assert sim.counters.posts == posts
    assert again.render_text() == "APIC is in sync: nothing to write."


def test_one_changed_entry_is_one_post(sim: Simulator, session: ApicSession) -> None:
    sync([kube_tenant(port="80")], session)
    posts = sim.counters.posts
    result = plan([kube_tenant(port="8080")], session)
    assert [(c.action, c.cls, c.dn) for c in result.changes] == [
        ("modify", "vzEntry", "uni/tn-kube/flt-http/e-tcp-80")
    ]
    assert dict(result.changes[0].attributes) == {"dFromPort": "8080", "dToPort": "8080"}
    assert dict(result.changes[0].previous) == {
        "dFromPort": "http",
        "dToPort": "http",
    }  # as the APIC stores it
    apply(result, session)
    assert sim.counters.posts == posts + 1
    assert plan([kube_tenant(port="8080")], session).is_empty


def test_values_are_compared_as_the_apic_stores_them(session: ApicSession) -> None:
    desired = [
        mo(
            "fvTenant",
            {"name": "n"},
            mo(
                "vzFilter",
                {"name": "f"},
                mo(
                    "vzEntry",
                    {
                        "name": "e",
                        "etherT": "ip",
                        "prot": "tcp",
                        "dFromPort": "443",
                        "dToPort": "https",
                        "sFromPort": "0",
                        "stateful": "0",
                        "tcpRules": "unspecified",
                    },
                ),
            ),
            mo("fvCtx", {"name": "v", "pcEnfPref": "1"}),
        )
    ]
    sync(desired, session)
    assert plan(desired, session).is_empty


def test_removed_objects_are_deleted_in_the_same_post(sim: Simulator, session: ApicSession) -> None:
    sync([kube_tenant(epgs=("web", "db"))], session)
    result = plan([kube_tenant(epgs=("web",))], session)
    assert [(c.action, c.dn) for c in result.changes] == [("delete", "uni/tn-kube/ap-kubernetes/epg-db")]
    payload = json.dumps(result.tenants[0].payload)
    assert '"status": "deleted"' in payload
    apply(result, session)
    assert session.get("/api/mo/uni/tn-kube/ap-kubernetes/epg-db.json")["totalCount"] == "0"
    # Dropping the whole tenant deletes it (it is ours and holds nothing foreign).
    sync([], session)
    assert session.get("/api/mo/uni/tn-kube.json")["totalCount"] == "0"


def test_foreign_objects_are_never_touched(
    sim: Simulator, session: ApicSession, make_session: SessionFactory
) -> None:
    sync([kube_tenant()], session)
    # An administrator adds a filter of their own to our tenant, and edits our contract's scope.
    foreign_post(
        sim,
        make_session,
        mo("vzFilter", {"name": "theirs"}, mo("vzEntry", {"name": "e"})),
        "/api/mo/uni/tn-kube.json",
    )
    # Their filter survives a sync that does not mention it...
    sync([kube_tenant()], session)
    assert session.get("/api/mo/uni/tn-kube/flt-theirs/e-e.json")["totalCount"] == "1"
    # ...and when we no longer want the tenant, it is kept for their filter while our objects go.
    result = plan([], session)
    assert [s.dn for s in result.skipped] == ["uni/tn-kube"]
    apply(result, session)
    census = owned_census(session)
    assert census["fvTenant"] == 1 and sum(census.values()) == 1
    assert session.get("/api/mo/uni/tn-kube/flt-theirs.json")["totalCount"] == "1"


def test_object_with_our_name_but_not_ours_is_left_alone(
    sim: Simulator, session: ApicSession, make_session: SessionFactory
) -> None:
    foreign_post(
        sim,
        make_session,
        mo("fvTenant", {"name": "kube"}, mo("vzBrCP", {"name": "web-http", "scope": "global"})),
    )
    result = plan([kube_tenant()], session)
    assert [s.dn for s in result.skipped] == ["uni/tn-kube/brc-web-http"]
    assert not any(c.dn.startswith("uni/tn-kube/brc-web-http") for c in result.changes)
    apply(result, session)
    contract = session.get("/api/mo/uni/tn-kube/brc-web-http.json", {"query-target": "subtree"})["imdata"]
    assert len(contract) == 1  # nothing added under it
    attributes = contract[0]["vzBrCP"]["attributes"]
    assert (attributes["scope"], attributes["annotation"]) == ("global", "")


def test_pre_existing_tenant_is_used_but_never_deleted(
    sim: Simulator, session: ApicSession, make_session: SessionFactory
) -> None:
    foreign_post(sim, make_session, mo("fvTenant", {"name": "shared", "descr": "made by hand"}))
    desired = [
        mo("fvTenant", {"name": "shared"}, mo("vzFilter", {"name": "dns"}, mo("vzEntry", {"name": "udp-53"})))
    ]
    result = plan(desired, session)
    assert [(c.action, c.dn) for c in result.changes] == [
        ("create", "uni/tn-shared/flt-dns"),
        ("create", "uni/tn-shared/flt-dns/e-udp-53"),
    ]
    apply(result, session)
    tenant = session.get("/api/mo/uni/tn-shared.json")["imdata"][0]["fvTenant"]["attributes"]
    assert (tenant["annotation"], tenant["descr"]) == ("", "made by hand")
    # Forgetting the tenant removes our filter (found through the discovery query), not the tenant.
    result = plan([], session)
    assert [(c.action, c.dn) for c in result.changes] == [("delete", "uni/tn-shared/flt-dns")]
    apply(result, session)
    assert session.get("/api/mo/uni/tn-shared.json")["totalCount"] == "1"
    assert session.get("/api/mo/uni/tn-shared/flt-dns.json")["totalCount"] == "0"
    assert plan([], session).is_empty


def test_plan_prints_as_text_and_json(session: ApicSession) -> None:
    sync([kube_tenant(port="80")], session)
    result = plan([kube_tenant(port="8080", epgs=("web",))], session)
    document = json.loads(result.to_json())
    assert document["summary"] == {"create": 0, "modify": 1, "delete": 1, "posts": 1}
    (tenant,) = document["tenants"]
    assert tenant["dn"] == "uni/tn-kube"
    assert {
        "action": "modify",
        "class": "vzEntry",
        "dn": "uni/tn-kube/flt-http/e-tcp-80",
        "attributes": {
            "dFromPort": {"from": "http", "to": "8080"},
            "dToPort": {"from": "http", "to": "8080"},
        },
    } in tenant["changes"]
    text = result.render_text()
    assert "uni/tn-kube: 0 to create, 1 to modify, 1 to delete" in text
    assert text.endswith("1 POST: /api/mo/uni/tn-kube.json")
    assert "  - fvAEPg uni/tn-kube/ap-kubernetes/epg-db" in text
    assert "dFromPort 'http' -> '8080'" in text


def test_malformed_desired_trees_are_rejected(session: ApicSession) -> None:
    with pytest.raises(MoTreeError, match="rooted at fvTenant"):
        plan([mo("fvAp", {"name": "x", "dn": "uni/tn-a/ap-x"})], session)
    with pytest.raises(MoTreeError, match="naming property 'name'"):
        plan([mo("fvTenant", {"descr": "nameless"})], session)
    with pytest.raises(MoTreeError, match="twice"):
        plan([kube_tenant(), kube_tenant()], session)


# Faults: every run completes with nothing lost or duplicated, and the next sync is a no-op.

DESIRED = [kube_tenant(tenant=f"t{i}") for i in range(3)]


def assert_converged(session: ApicSession) -> None:
    assert owned_census(session) == expected_census(len(DESIRED))
    assert plan(DESIRED, session).is_empty


def per_tenant(result: Plan) -> Plan:
    """The plan with one POST per tenant, so that a fault can strike between two POSTs."""
    largest = max(len(json.dumps(t.payload)) for t in result.tenants if t.payload is not None)
    split = dataclasses.replace(result, max_payload=largest)
    assert split.post_count == sum(1 for t in result.tenants if t.payload is not None) > 1
    return split


def during_apply(sim: Simulator, action: Callable[[], None], after_posts: int = 1) -> threading.Thread:
    """Run `action` once the simulator has committed `after_posts` POSTs (the sync is slowed by latency)."""

    def watch() -> None:
        deadline = time.monotonic() + 10
        while sim.counters.posts < after_posts and time.monotonic() < deadline:
            time.sleep(0.002)
        action()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_burst_of_503_during_sync(sim: Simulator, make_session: SessionFactory) -> None:
    session = make_session(sim.url, retries=6)
    result = plan(DESIRED, session)
    sim.faults.fail_next(5, 503)
    assert apply(result, session) == 1
    assert sim.counters.injected_errors == 5
    assert_converged(session)


def test_token_expiring_mid_sync(sim: Simulator, session: ApicSession) -> None:
    result = per_tenant(plan(DESIRED, session))
    sim.faults.latency = 0.05
    watcher = during_apply(sim, sim.expire_sessions)
    apply(result, session)
    watcher.join(10)
    sim.faults.latency = 0.0
    assert session.counters.logins == 2
    assert_converged(session)


@pytest.mark.parametrize("after_commit", [False, True], ids=["before-commit", "after-commit"])
def test_connection_reset_mid_sync(sim: Simulator, session: ApicSession, after_commit: bool) -> None:
    sync(DESIRED[:1], session)
    result = plan(DESIRED, session)
    sim.faults.reset_next(1, after_commit=after_commit)
    assert apply(result, session) == 1  # the other two tenants in one POST, the one that is cut
    assert sim.counters.resets == 1
    assert session.counters.retries >= 1
    assert_converged(session)


def test_simulator_restarted_mid_sync(sim: Simulator, make_session: SessionFactory) -> None:
    session = make_session(sim.url, retries=8, backoff=0.05, backoff_max=0.2)
    result = per_tenant(plan(DESIRED, session))
    sim.faults.latency = 0.1
    restarted = threading.Event()

    def restart() -> None:
        sim.restart()
        restarted.set()

    watcher = during_apply(sim, restart)
    apply(result, session)
    watcher.join(10)
    sim.faults.latency = 0.0
    assert restarted.is_set()
    assert session.counters.logins == 2  # the restart dropped every session
    assert_converged(session)
