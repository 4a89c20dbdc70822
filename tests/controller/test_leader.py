"""Leader election by client-go's rules, on fake clocks against the fake API server (real HTTP): a leader cut
off from the API server stops acting before a standby may take over, and a wrong clock takes nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from controller.leader import LeaderElectionSettings, LeaderElector
from controller.timing import FakeClock
from tests.controller.partition import Partition
from tests.fakekube import FakeKube

NS = "epgbridge-system"
# client-go's defaults; each Lease request gives up after 0.3 s of real time.
SETTINGS = LeaderElectionSettings(lease_duration=15, renew_deadline=10, retry_period=2, request_timeout=0.3)


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube() as fake:
        fake.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        yield fake


class Replica:
    def __init__(self, api: object, identity: str, clock: FakeClock) -> None:
        self.clock = clock
        self.changes: list[tuple[float, bool]] = []
        self.elector = LeaderElector(api, NS, "lock", identity, settings=SETTINGS, clock=clock,  # type: ignore[arg-type]
                                     on_change=lambda leading: self.changes.append((clock.monotonic(), leading)))

    def start(self) -> None:
        self.elector.start()
        self.clock.settle(1)


def run_for(seconds: int, *replicas: Replica) -> list[tuple[int, bool, bool]]:
    """Move every replica's clock one second at a time; (second, a leads, b leads) after each."""
    timeline = []
    for second in range(1, seconds + 1):
        for r in replicas:
            r.clock.advance(1)
        for r in replicas:
            r.clock.settle(1)
        timeline.append((second, replicas[0].elector.is_leader, replicas[1].elector.is_leader))
    return timeline


def test_a_partitioned_leader_stops_before_the_standby_takes_over(kube: FakeKube) -> None:
    with Partition(kube) as partition:
        a = Replica(partition.api_client(), "a", FakeClock())
        b = Replica(kube.api_client(), "b", FakeClock())
        a.start()
        assert a.elector.is_leader
        b.start()
        assert not b.elector.is_leader
        partition.cut.set()  # a's requests now hang until their timeout; b's go through
        timeline = run_for(25, a, b)
        assert not any(x and y for _, x, y in timeline), "two leaders at once"
        a_stopped = next(s for s, x, _ in timeline if not x)
        b_started = next(s for s, _, y in timeline if y)
        # a renewed last at 0: it acts until 0 + renew deadline. b saw the Lease change last at 0: it waits
        # the lease duration from then, by its own clock, and takes the Lease at its next attempt.
        assert a_stopped == 10
        assert b_started == 16
        assert a.changes == [(0, True), (10, False)]  # a stepped down at once, not when a request returned
        assert a.elector.last_error and "Traceback" not in a.elector.last_error
        # The partition heals: a sees b's Lease and stays a standby.
        partition.cut.clear()
        timeline = run_for(20, a, b)
        assert all(not x and y for _, x, y in timeline)
        lease = kube.get("Lease", NS, "lock")
        assert lease is not None and lease["spec"]["holderIdentity"] == "b"
        assert lease["spec"]["leaseTransitions"] == 1
        for r in (a, b):
            r.elector.stop()


@pytest.mark.parametrize("who", ["standby", "leader"])
def test_a_clock_30_seconds_off_takes_no_healthy_lease(kube: FakeKube, who: str) -> None:
    """Expiry is judged by the standby's own observation, never by comparing the holder's renewTime with the
    standby's clock: neither a standby whose clock runs ahead nor a leader whose clock lags loses anything."""
    a = Replica(kube.api_client(), "a", FakeClock(skew=-30 if who == "leader" else 0))
    b = Replica(kube.api_client(), "b", FakeClock(skew=30 if who == "standby" else 0))
    a.start()
    b.start()
    timeline = run_for(45, a, b)
    assert all(x and not y for _, x, y in timeline)
    a.elector.stop()  # a clean shutdown releases the Lease: b takes it at its next attempt
    b.clock.advance(2)
    b.clock.settle(1)
    assert b.elector.is_leader
    b.elector.stop()


def test_settings_are_checked_as_client_go_checks_them() -> None:
    LeaderElectionSettings().validate()
    for bad, message in [(dict(lease_duration=10, renew_deadline=10), "longer than the renew deadline"),
                         (dict(renew_deadline=2, retry_period=2), "1.2 x the retry period"),
                         (dict(retry_period=0), "must be positive"),
                         (dict(request_timeout=10), "below the renew deadline")]:
        with pytest.raises(ValueError, match=message):
            LeaderElectionSettings(**bad).validate()  # type: ignore[arg-type]


def test_the_cli_refuses_inconsistent_timing(capsys: pytest.CaptureFixture[str]) -> None:
    from controller.cli import main

    assert main(["controller", "--leader-elect-renew-deadline", "20", "--metrics-address", ""]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "must be longer than the renew deadline" in err[0] and "Traceback" not in err[0]
