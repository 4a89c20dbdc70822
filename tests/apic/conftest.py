"""Fixtures for the APIC tests: real simulators on 127.0.0.1 ephemeral ports and real sessions to them."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from apic_client import ApicSession
from apic_client.simulator import Faults, Simulator

PASSWORD = "s3cret-Pa55word"
FAST = {"backoff": 0.01, "backoff_max": 0.05, "rate_limit": 0.0, "timeout": 5.0}

SimFactory = Callable[..., Simulator]
SessionFactory = Callable[..., ApicSession]


@pytest.fixture
def make_sim(tmp_path: Path) -> Iterator[SimFactory]:
    """Start simulators (plain HTTP unless tls=True); all are stopped at the end of the test."""
    started: list[Simulator] = []

    def factory(name: str = "apic", *, tls: bool = False, faults: Faults | None = None) -> Simulator:
        sim = Simulator(tmp_path / f"{name}.sqlite", tls=tls, password=PASSWORD, faults=faults)
        sim.start("127.0.0.1", 0)
        started.append(sim)
        return sim

    yield factory
    for sim in started:
        sim.stop()


@pytest.fixture
def sim(make_sim: SimFactory) -> Simulator:
    return make_sim()


@pytest.fixture
def make_session() -> Iterator[SessionFactory]:
    """Sessions with tiny backoff and no rate limit unless asked; all are closed at the end of the test."""
    opened: list[ApicSession] = []

    def factory(urls: str | list[str], password: str = PASSWORD, **options: Any) -> ApicSession:
        settings = {**FAST, **options}
        session = ApicSession(urls, "admin", password, **settings)
        opened.append(session)
        return session

    yield factory
    for session in opened:
        session.close()


@pytest.fixture
def session(sim: Simulator, make_session: SessionFactory) -> ApicSession:
    return make_session(sim.url)


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def mo(cls: str, attributes: dict[str, str], *children: dict[str, Any]) -> dict[str, Any]:
    """An MO in APIC JSON form."""
    body: dict[str, Any] = {"attributes": attributes}
    if children:
        body["children"] = list(children)
    return {cls: body}


def kube_tenant(
    port: str = "80", *, tenant: str = "kube", epgs: tuple[str, ...] = ("web", "db")
) -> dict[str, Any]:
    """A desired tenant as the renderer will produce it: an AP with EPGs, a BD, a contract and its filter."""
    return mo(
        "fvTenant",
        {"name": tenant},
        mo(
            "fvAp",
            {"name": "kubernetes"},
            *[
                mo(
                    "fvAEPg",
                    {"name": name, "pcEnfPref": "unenforced"},
                    mo("fvRsBd", {"tnFvBDName": "kube-pod-bd"}),
                    mo("fvRsProv" if name == "web" else "fvRsCons", {"tnVzBrCPName": "web-http"}),
                )
                for name in epgs
            ],
        ),
        mo("fvBD", {"name": "kube-pod-bd"}, mo("fvRsCtx", {"tnFvCtxName": "kube-vrf"})),
        mo("fvCtx", {"name": "kube-vrf"}),
        mo(
            "vzBrCP",
            {"name": "web-http", "scope": "context"},
            mo(
                "vzSubj",
                {"name": "http", "revFltPorts": "yes"},
                mo("vzRsSubjFiltAtt", {"tnVzFilterName": "http", "action": "permit"}),
            ),
        ),
        mo(
            "vzFilter",
            {"name": "http"},
            mo(
                "vzEntry", {"name": "tcp-80", "etherT": "ip", "prot": "6", "dFromPort": port, "dToPort": port}
            ),
        ),
    )
