"""Fail safe (issue 10), with the real `kubernetes` client against the fake API server and the real APIC
simulator: unknown is never absent (a kind that cannot be listed leaves the APIC exactly as it is), a failed
apply backs off and says what is in force, conflicts go to the oldest object, Events are correlated and
bounded. Time is a fake clock wherever the code waits on one."""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import sys
import threading
import types
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from apic_client.simulator import Simulator
from controller.events import EventCorrelator, EventSettings, Involved, truncate
from controller.leader import LeaderElectionSettings
from controller.metrics import serve
from controller.runtime import Agent, ApicTarget, Controller
from controller.timing import Backoff, FakeClock
from controller.watch import KINDS, ClusterCache
from dataplane.apply import NftError, NodeDataplane
from tests.controller.cluster_fixtures import eventually, load_example
from tests.controller.test_runtime import FAST_ELECTION, apic
from tests.fakekube import CRD_DIR, FakeKube

NS = "epgbridge-system"


def resource(kind: str) -> str:
    """The resource name the fake API server's fault injection matches ("networkpolicies.networking.k8s.io")."""
    k = next(k for k in KINDS if k.kind == kind)
    group, _, plural = k.path.removeprefix("/apis/").removeprefix("/api/").rpartition("/")
    group = group.rpartition("/")[0] if "/" in group else ""
    return f"{plural}.{group}" if group else plural


def apic_state(url: str) -> dict[str, dict[str, str]]:
    """Every object under uni with its attributes (the APIC as a user would compare it)."""
    data = apic(url).get(f"{url}/api/mo/uni.json", params={"query-target": "subtree"}, timeout=10).json()
    out = {}
    for item in data["imdata"]:
        (body,) = item.values()
        attrs = {k: v for k, v in body["attributes"].items() if k not in ("modTs", "status")}
        out[attrs["dn"]] = attrs
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeKube, Simulator, str]]:
    """The example cluster, and an APIC a controller has brought in sync with it."""
    sim = Simulator(tmp_path_factory.mktemp("apic") / "apic.sqlite", tls=False, password="pw")
    url = sim.start("127.0.0.1", 0)
    with FakeKube(bookmark_interval=0.2, crds=[CRD_DIR]) as kube:
        kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        load_example(kube)
        ctl, thread = start(kube, url)
        eventually(lambda: ctl.metrics.get("sync_duration_seconds_count") >= 1, timeout=15)
        ctl.stop()
        thread.join(10)
        yield kube, sim, url
    sim.stop()


# On a fake clock that only the test moves, a failed attempt at the Lease is not retried: give each attempt
# time enough for the fake server's short listen queue (a lost SYN costs a second).
FAKE_CLOCK_ELECTION = LeaderElectionSettings(request_timeout=5)


def start(kube: FakeKube, url: str | None, clock: Any = None, token: str | None = None,
          **kw: Any) -> tuple[Controller, threading.Thread]:
    target = ApicTarget([url], "admin", "pw", retries=1, backoff=0.05) if url else None
    extra = ({"clock": clock, "debounce": 0.0, "election": FAKE_CLOCK_ELECTION} if clock is not None
             else {"debounce": 0.05, "election": FAST_ELECTION})
    ctl = Controller(kube.api_client(token), target, identity="c", namespace=NS, **extra, **kw)
    t = threading.Thread(target=ctl.run, daemon=True)
    t.start()
    return ctl, t


def health_over_http(fn: Any) -> tuple[int, str]:
    from controller.metrics import Metrics

    server = serve(Metrics(), "127.0.0.1:0", fn)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_address[1]}/healthz", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    finally:
        server.shutdown()


# ---- 1. unknown is never absent: the controller


@pytest.mark.parametrize("kind", [k.kind for k in KINDS])
def test_a_kind_that_cannot_be_listed_leaves_the_apic_as_it_is(world: tuple[FakeKube, Simulator, str],
                                                               kind: str) -> None:
    """Issue 10.1: with one kind's LIST failing, the model would lack its objects and the sync would delete
    their APIC objects (every contract, filter and relation when it is EndpointGroups or Contracts). Instead
    nothing is written until every kind has synced, and the hold is reported."""
    kube, sim, url = world
    before, posts = apic_state(url), sim.counters.posts
    clock = FakeClock()  # the informer's retry waits on it: the failure lasts until the test moves it
    kube.fail_next(1, 500, verb="list", resource=resource(kind))
    ctl, thread = start(kube, url, clock)
    try:
        eventually(lambda: ctl.elector.is_leader and ctl.metrics.get("syncs_held_total") >= 1
                   and len(ctl.cache.unsynced()) == 1 and "500" in (ctl._held or ""))
        assert set(ctl.cache.unsynced()) == {kind}
        assert ctl.metrics.get("cache_synced", kind=kind) == 0
        assert f'epgbridge_cache_synced{{kind="{kind}"}} 0' in ctl.metrics.render()
        ok, text = ctl.health()
        assert not ok and f"{kind} (not listed yet: 500" in text and "the APIC is left as it is" in text
        if kind not in ("EndpointGroup", "Contract"):  # the custom resources we know say so
            eg = eventually(lambda: {c["type"]: c for c in (kube.get("EndpointGroup", None, "shop-api") or {})
                                     .get("status", {}).get("conditions", [])}.get("Synced", {}).get("reason")
                            == "CacheNotSynced" and kube.get("EndpointGroup", None, "shop-api"))
            synced = {c["type"]: c for c in eg["status"]["conditions"]}["Synced"]
            assert synced["status"] == "False" and kind in synced["message"]
        assert apic_state(url) == before and sim.counters.posts == posts
        clock.advance(1)  # the informer lists again, and succeeds
        eventually(lambda: ctl.cache.synced and ctl.metrics.get("sync_duration_seconds_count") >= 1)
        assert ctl.health() == (True, "ok: leader")
        assert ctl.metrics.get("cache_synced", kind=kind) == 1
        assert apic_state(url) == before and sim.counters.posts == posts  # in sync: nothing to write
        eventually(lambda: {c["type"]: c["status"] for c in (kube.get("EndpointGroup", None, "shop-api") or {})
                            .get("status", {}).get("conditions", [])} == {"Valid": "True", "Synced": "True"})
    finally:
        ctl.stop()
        thread.join(10)


def test_healthz_names_the_kind_and_answers_503(world: tuple[FakeKube, Simulator, str]) -> None:
    kube, _, url = world
    clock = FakeClock()
    kube.fail_next(1, 403, verb="list", resource=resource("NetworkPolicy"))
    ctl, thread = start(kube, url, clock)
    try:
        eventually(lambda: ctl.alive and list(ctl.cache.unsynced()) == ["NetworkPolicy"]
                   and "403" in ctl.cache.unsynced()["NetworkPolicy"])
        code, body = health_over_http(ctl.health)
        assert code == 503
        assert body.startswith("not ready: the cluster cache has not synced NetworkPolicy (not listed yet: 403 ")
        assert "deploy/rbac.yaml" in body and body.count("\n") == 1
        clock.advance(1)
        eventually(lambda: ctl.cache.synced)
        assert health_over_http(ctl.health) == (200, "ok: leader\n")
    finally:
        ctl.stop()
        thread.join(10)


def test_a_kind_is_unsynced_from_410_until_its_relist_succeeds(world: tuple[FakeKube, Simulator, str]) -> None:
    kube, _, _ = world
    clock = FakeClock()
    cache = ClusterCache(kube.api_client(), watch_timeout=5, clock=clock)
    cache.start()
    try:
        assert cache.wait_synced(10)
        listed = len(cache.objects("NetworkPolicy"))
        kube.wait_for_watches(len(cache.kinds))
        kube.fail_next(1, 410, verb="watch", resource=resource("NetworkPolicy"))  # too old: relist
        kube.fail_next(1, 500, verb="list", resource=resource("NetworkPolicy"))  # and the relist fails
        kube.drop_watches()  # every informer watches again from its resourceVersion
        eventually(lambda: "NetworkPolicy" in cache.unsynced() and cache.unsynced()["NetworkPolicy"].startswith(
            "relisting after its watch expired (410 Gone): 500"))
        assert not cache.synced
        assert len(cache.objects("NetworkPolicy")) == listed  # a failed list empties nothing
        clock.advance(1)
        eventually(lambda: cache.synced)
    finally:
        cache.stop()


# ---- 6. a failed apply backs off and says what is in force


class FailingNft:
    def __init__(self, clock: FakeClock) -> None:
        self.clock, self.calls, self.fail = clock, [], True  # type: list[float]

    def __call__(self, script: str, *, netns: str | None = None, check: bool = False) -> None:
        self.calls.append(self.clock.monotonic())
        if self.fail:
            raise NftError("nft rejected the ruleset: Error: Could not process rule: No buffer space available")


def test_apply_failures_back_off_and_say_what_is_in_force(world: tuple[FakeKube, Simulator, str],
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """Issue 10.6: a failing apply was retried about 30 times a second, saying that "the previous ruleset stays
    in force" on a node that had none. Now: 1, 2, 4 ... 30 s apart (whatever changes meanwhile), and the truth."""
    kube, _, _ = world
    clock = FakeClock()
    nft = FailingNft(clock)
    agent = Agent(kube.api_client(), "worker-1", clock=clock, drift_every=1000, debounce=0.0,
                  lister=lambda _ns: "missing: Error: No such file or directory",
                  backoff=Backoff(1.0, 30.0, jitter=0.0), dataplane=NodeDataplane("worker-1", runner=nft),
                  drops=False)  # no drop log to read: its dataplane is a fake
    assert Agent(kube.api_client(), "n").runner.backoff.cap == 30.0  # the default's cap
    thread = threading.Thread(target=agent.run, daemon=True)
    caplog.set_level(logging.ERROR, logger="epgbridge")
    thread.start()
    try:
        eventually(lambda: nft.calls == [0.0, 0.0])  # holding the node's traffic (issue 10.5), the first apply
        clock.settle(1)
        ok, text = agent.health()
        assert not ok and "no inet epgbridge table is in force on this node (nothing applied yet)" in text
        assert "stays in force" not in caplog.text
        assert "no inet epgbridge table is in force on this node (nothing applied yet)" in caplog.text
        for second in range(70):
            if second % 3 == 0:  # changes keep coming: they do not cut the backoff short
                kube.patch("Pod", "sandbox", "netshoot", {"metadata": {"labels": {"step": str(second)}}})
                eventually(lambda s=second: (agent.cache.get("Pod", "sandbox", "netshoot") or {})
                           .get("metadata", {}).get("labels", {}).get("step") == str(s))
            clock.advance(1)
            clock.settle(1)
        assert nft.calls == [0, 0, 1, 3, 7, 15, 31, 61]
        nft.fail = False
        clock.advance(91 - 70)  # the next retry (61 + 30) applies
        clock.settle(1)
        eventually(lambda: agent.applied_version >= 0)
        ok, text = agent.health()
        assert ok and text == "ok: the table this agent applied at 2025-01-01T00:01:31Z is in force"
        nft.fail = True  # a later failure: the table applied before is what is in force
        kube.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "new", "namespace": "sandbox"},
                     "spec": {"nodeName": "worker-1", "containers": [{"name": "c"}]}, "status": {"podIP": "10.2.1.77"}})
        eventually(lambda: agent.last_error is not None)
        ok, text = agent.health()
        assert not ok and text.endswith("the table this agent applied at 2025-01-01T00:01:31Z is in force")
    finally:
        agent.stop()
        thread.join(10)
        if kube.get("Pod", "sandbox", "new"):
            kube.delete("Pod", "sandbox", "new", grace_period=0)


# ---- 7. conflicts go to the oldest object


def test_a_newer_endpointgroup_does_not_displace_the_one_in_force(world: tuple[FakeKube, Simulator, str]) -> None:
    """Issue 10.7: a newer EndpointGroup for the same EPG whose name sorts first took over (its contracts and
    BD replaced the older one's on the APIC). Now the older one stays; the newer one says which won."""
    kube, _, url = world
    before = apic_state(url)
    winner = kube.get("EndpointGroup", None, "shop-api")
    assert winner is not None
    eventually(lambda: _now() > winner["metadata"]["creationTimestamp"], timeout=3)  # created a second later
    rival = {"apiVersion": "epgbridge.io/v1alpha1", "kind": "EndpointGroup", "metadata": {"name": "a-shop-api"},
             "spec": {**winner["spec"], "bridgeDomain": "rival-bd", "provides": [], "consumes": []}}
    kube.create(rival)
    ctl, thread = start(kube, url)
    try:
        cond = eventually(lambda: {c["type"]: c for c in (kube.get("EndpointGroup", None, "a-shop-api") or {})
                                   .get("status", {}).get("conditions", [])}.get("Valid"), timeout=15)
        assert cond["status"] == "False" and cond["reason"] == "Conflict"
        assert "also declared by EndpointGroup shop-api (created " in cond["message"]
        eventually(lambda: ctl.metrics.get("sync_duration_seconds_count") >= 1, timeout=15)
        assert apic_state(url) == before  # the EPG keeps its contracts and bridge domain
        ours = {c["type"]: c["status"] for c in kube.get("EndpointGroup", None, "shop-api")["status"]["conditions"]}
        assert ours == {"Valid": "True", "Synced": "True"}
        event = eventually(lambda: [e for e in kube.list("Event", "default")
                                    if e["involvedObject"]["name"] == "a-shop-api"])
        assert event[0]["reason"] == "Conflict" and "EndpointGroup shop-api" in event[0]["message"]
    finally:
        ctl.stop()
        thread.join(10)
        kube.delete("EndpointGroup", None, "a-shop-api")


def attempt_until(check: Any, ctl: Controller, clock: FakeClock) -> None:
    """Wait for `check`; when a request got lost meanwhile (the fake server's listen queue is short, and a lost
    SYN costs a second), the retry waits on the fake clock: move it on to the next attempt."""
    for _ in range(8):
        with contextlib.suppress(AssertionError):
            eventually(check, timeout=3)
            return
        clock.advance(ctl.elector.settings.retry_period)
    assert check()


def _now() -> str:
    import datetime as dt
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- 8. Events: correlated, rate-limited, truncated, bounded


def test_truncate_keeps_utf8_whole_and_says_it_cut() -> None:
    assert truncate("short") == "short"
    cut = truncate("é" * 2000)
    assert len(cut.encode()) <= 1024 and cut.endswith(" ...") and "\ufffd" not in cut


def test_the_correlator_counts_combines_and_limits_like_client_go() -> None:
    clock = FakeClock()
    c = EventCorrelator("epgbridge-controller", EventSettings(cache_size=8), clock)
    obj = Involved("Namespace", "", "sandbox", "uid-1")
    first = c.correlate(obj, "Warning", "InvalidEPGAnnotation", "bad")
    assert (first.skip, first.name, first.count) == (False, None, 1)
    c.sent(first.key, "sandbox.1")
    again = c.correlate(obj, "Warning", "InvalidEPGAnnotation", "bad")
    assert (again.name, again.count, again.message) == ("sandbox.1", 2, "bad")  # patch the same Event
    decisions = [c.correlate(obj, "Warning", "InvalidEPGAnnotation", f"bad {i}") for i in range(10)]
    combined = [d for d in decisions if d.message.startswith("(combined from similar events): ")]
    assert len(combined) == 2 and combined[0].key == combined[1].key and combined[1].count == 2
    spent = 2 + 10
    rest = [c.correlate(obj, "Warning", "InvalidEPGAnnotation", "bad") for _ in range(40)]
    assert sum(not d.skip for d in rest) == 25 - spent  # the burst is per object
    clock.advance(600)  # the bucket refills at one per five minutes
    assert [c.correlate(obj, "Warning", "InvalidEPGAnnotation", "bad").skip for _ in range(3)] == [False, False, True]
    for i in range(100):  # other objects: the caches stay at their size
        c.correlate(Involved("Pod", "ns", f"p{i}"), "Warning", "InvalidPod", "x")
    assert len(c) <= 3 * 8


def retained(obj: Any, *skip: Any) -> int:
    """Bytes reachable from `obj` (not through `skip`, types, modules or functions)."""
    seen, stack, total = {id(s) for s in skip}, [obj], 0
    while stack:
        o = stack.pop()
        if id(o) in seen or isinstance(o, type | types.ModuleType | types.FunctionType | types.MethodType):
            continue
        seen.add(id(o))
        total += sys.getsizeof(o)
        stack.extend(gc.get_referents(o))
    return total


def test_200_rewrites_of_a_100_kb_annotation_stay_bounded(world: tuple[FakeKube, Simulator, str]) -> None:
    """Issue 10.8: one Event per distinct message, each kept forever: 200 rewrites of a 100 KB annotation held
    20 MB and wrote 200 Events. Now a handful of Events (counted, combined), at most the burst of writes, each
    message at most 1 KiB, and what the controller keeps does not grow with the messages."""
    kube, _, _ = world
    kube.reset_counters()
    ctl, thread = start(kube, None)
    try:
        eventually(lambda: ctl.elector.is_leader and ctl.cache.synced and ctl.runner.runs >= 1)
        for i in range(200):
            value = json.dumps({"tenant": [f"{i:03d}" + "x" * 100_000]})
            kube.patch("Namespace", None, "sandbox", {"metadata": {"annotations": {
                "opflex.cisco.com/endpoint-group": value}}})
            if i % 20 == 19:  # let the controller see a good share of the versions
                eventually(lambda: (ctl.cache.get("Namespace", "", "sandbox") or {}).get("metadata", {})
                           .get("resourceVersion") == kube.get("Namespace", None, "sandbox")["metadata"]["resourceVersion"])
        last = kube.get("Namespace", None, "sandbox")["metadata"]["resourceVersion"]
        eventually(lambda: ctl.runner.runs > 1 and (ctl.cache.get("Namespace", "", "sandbox") or {})
                   .get("metadata", {}).get("resourceVersion") == last, timeout=15)
        ctl.runner.run()
        runs = ctl.runner.runs
        eventually(lambda: ctl.runner.runs > runs)
        events = [e for e in kube.list("Event", "default") if e["involvedObject"]["name"] == "sandbox"]
        writes = kube.count("create", "events") + kube.count("patch", "events")
        assert 1 <= len(events) <= 10 and writes <= 25
        assert all(len(e["message"].encode()) <= 1024 for e in events)
        assert ctl.events.written <= 25
        assert retained(ctl.events, ctl.events.core, ctl.events.clock) < 200_000
        assert retained(ctl._reported) < 10_000
    finally:
        ctl.stop()
        thread.join(10)
        kube.patch("Namespace", None, "sandbox", {"metadata": {"annotations": {
            "opflex.cisco.com/endpoint-group": None}}})


def test_a_problem_that_stays_is_reported_once(world: tuple[FakeKube, Simulator, str]) -> None:
    """... and one that comes back is counted on its Event: a patch the shipped role allows (the API server
    enforces deploy/rbac.yaml here, and the controller runs as its ServiceAccount)."""
    from tests.controller.test_rbac import apply_rbac

    kube, _, _ = world
    kube.patch("Namespace", None, "sandbox", {"metadata": {"annotations": {
        "opflex.cisco.com/endpoint-group": "{broken"}}})
    kube.reset_counters()
    apply_rbac(kube)
    ctl, thread = start(kube, None, token=kube.service_account_token(NS, "epgbridge-controller"))
    try:
        eventually(lambda: kube.count("create", "events") == 1)
        for i in range(5):  # passes for other changes do not report it again
            kube.patch("Pod", "sandbox", "netshoot", {"metadata": {"labels": {"n": str(i)}}})
            runs = ctl.runner.runs
            eventually(lambda r=runs: ctl.runner.runs > r)
        assert kube.count("create", "events") == 1 and kube.count("patch", "events") == 0
        kube.patch("Namespace", None, "sandbox", {"metadata": {"annotations": {
            "opflex.cisco.com/endpoint-group": None}}})
        runs = ctl.runner.runs
        eventually(lambda: ctl.runner.runs > runs and not ctl._reported)
        kube.patch("Namespace", None, "sandbox", {"metadata": {"annotations": {
            "opflex.cisco.com/endpoint-group": "{broken"}}})  # it comes back: the same Event, counted
        event = eventually(lambda: [e for e in kube.list("Event", "default")
                                    if e["involvedObject"]["name"] == "sandbox" and "not valid JSON" in e["message"]
                                    and e.get("count") == 2])
        assert kube.count("create", "events") == 1 and len(event) == 1 and kube.count("patch", "events") == 1
        assert kube.denied == []
    finally:
        ctl.stop()
        thread.join(10)
        kube.authorize = False
        kube.patch("Namespace", None, "sandbox", {"metadata": {"annotations": {
            "opflex.cisco.com/endpoint-group": None}}})


@pytest.fixture(autouse=True)
def _no_fake_server_bugs(world: tuple[FakeKube, Simulator, str]) -> Iterator[None]:
    yield
    # (a client that went away mid-answer, as the partition's proxy does at the end, is no bug of the fake)
    assert [e for e in world[0].server_errors if "BrokenPipeError" not in e and "ConnectionResetError" not in e] == []



# ---- 4. one leader at a time, also for the APIC


def test_a_partitioned_leader_stops_writing_before_the_standby_takes_over(world: tuple[FakeKube, Simulator, str]
                                                                          ) -> None:
    """Issue 10.4: a leader cut off from the API server kept writing to the APIC while a standby took over,
    and the two flapped an entry's port. Now the cut-off leader stops at its renew deadline, before the
    standby's lease duration has passed; the standby's change stays."""
    from tests.controller.partition import Partition

    kube, _, url = world
    election = LeaderElectionSettings(lease_duration=15, renew_deadline=10, retry_period=2, request_timeout=0.5)
    entry = "uni/tn-shop/flt-api-range/e-tcp-8080-8090"
    with Partition(kube) as partition:
        clocks = [FakeClock(), FakeClock()]
        ctls = [Controller(api, ApicTarget([url], "admin", "pw", retries=1, backoff=0.05), identity=name,
                           namespace=NS, resync=5, debounce=0.0, election=election, clock=clock)
                for api, name, clock in ((partition.api_client(), "c1", clocks[0]),
                                         (kube.api_client(), "c2", clocks[1]))]
        threads = [threading.Thread(target=c.run, daemon=True) for c in ctls]
        c1, c2 = ctls
        threads[0].start()
        attempt_until(lambda: c1.elector.is_leader and c1.metrics.get("sync_duration_seconds_count") >= 1,
                      c1, clocks[0])
        threads[1].start()
        attempt_until(lambda: c2.cache.synced and c2.elector._observed is not None and c2.runner.runs >= 1,
                      c2, clocks[1])

        def seen_own_status() -> bool:  # c1's cache holds the statuses it wrote: its next passes write none
            return all((c1.cache.get(kind, "", o["metadata"]["name"]) or {}).get("metadata", {}).get(
                "resourceVersion") == o["metadata"]["resourceVersion"] and o.get("status")
                for kind in ("EndpointGroup", "Contract") for o in kube.list(kind))

        eventually(seen_own_status)
        assert not c2.elector.is_leader
        posts = c1.metrics.get("apic_posts_total")
        try:
            partition.cut.set()
            contract = kube.get("Contract", None, "shop-web-to-api")
            subjects = contract["spec"]["subjects"]
            subjects[0]["filters"][0]["entries"][0]["destinationPorts"] = "9000-9010"
            kube.patch("Contract", None, "shop-web-to-api", {"spec": {"subjects": subjects}})
            eventually(lambda: "9000" in json.dumps((c2.cache.get("Contract", "", "shop-web-to-api") or {})["spec"]))
            timeline = []
            for second in range(1, 31):
                for clock in clocks:
                    clock.advance(1)
                clocks[0].settle(1)  # its elector; its loop may be in a status write that has to time out
                clocks[1].settle(2)
                timeline.append((second, c1.elector.is_leader, c2.elector.is_leader))
                if c2.elector.is_leader:  # the new leader's first pass has written the change
                    eventually(lambda: apic_state(url)[entry]["dFromPort"] == "9000", timeout=5)
            assert not any(a and b for _, a, b in timeline)
            # c1 renewed last at the cut (or a retry period before, if a request was lost): it acts until 10 s
            # after that. c2 saw that renew at or before its last attempt and waits 15 s from then, by its clock.
            stopped = next(s for s, a, _ in timeline if not a)
            started = next(s for s, _, b in timeline if b)
            assert 8 <= stopped <= 10 and 15 <= started <= 19
            assert apic_state(url)[entry]["dFromPort"] == "9000"  # no flapping back
            assert c1.metrics.get("apic_posts_total") == posts  # c1 wrote nothing after the cut
        finally:
            for c in ctls:
                c.stop()
            partition.close()  # c1's requests lost in the partition end now, not at their timeout
            for t in threads:
                t.join(15)
            kube.patch("Contract", None, "shop-web-to-api", {"spec": {"subjects": [{
                **subjects[0], "filters": [{**subjects[0]["filters"][0], "entries": [
                    {**subjects[0]["filters"][0]["entries"][0], "destinationPorts": "8080-8090"}]},
                    *subjects[0]["filters"][1:]]}]}})
