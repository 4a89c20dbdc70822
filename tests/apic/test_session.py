"""ApicSession against the real simulator over sockets: login, refresh, retries, rate limit, failover, TLS."""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from apic_client import (
    ApicAuthError,
    ApicConnectionError,
    ApicRequestError,
    ApicSession,
    ApicUnavailableError,
)
from apic_client.simulator import Faults, Simulator

from .conftest import PASSWORD, SessionFactory, SimFactory, closed_port_url


def test_one_login_serves_many_requests(sim, session: ApicSession) -> None:
    for _ in range(5):
        assert session.get("/api/class/fvTenant.json")["totalCount"] == "3"
    assert session.counters.logins == 1
    assert sim.counters.logins == 1
    assert session.counters.gets == 5
    assert session.apic_version  # from the aaaLogin answer


def test_wrong_password_is_an_auth_error_without_the_password(sim, make_session: SessionFactory) -> None:
    session = make_session(sim.url, password="wrong-Secret-42")
    with pytest.raises(ApicAuthError) as caught:
        session.get("/api/class/fvTenant.json")
    assert caught.value.status == 401
    assert caught.value.code == "401"
    assert "Username or password is incorrect" in str(caught.value)
    assert "wrong-Secret-42" not in str(caught.value)
    assert "wrong-Secret-42" not in repr(session)


def test_token_is_refreshed_at_half_its_lifetime(make_sim: SimFactory, make_session: SessionFactory) -> None:
    sim = make_sim(faults=Faults(token_lifetime=2))
    session = make_session(sim.url)
    session.get("/api/class/fvTenant.json")
    time.sleep(1.1)  # past half of refreshTimeoutSeconds=2, before expiry
    session.get("/api/class/fvTenant.json")
    assert session.counters.refreshes == 1
    assert sim.counters.refreshes == 1
    assert session.counters.logins == 1
    time.sleep(1.1)  # the refreshed token is again refreshed, never expires
    session.get("/api/class/fvTenant.json")
    assert (session.counters.logins, session.counters.refreshes) == (1, 2)


def test_expired_token_gives_one_new_login(sim, session: ApicSession) -> None:
    session.get("/api/class/fvTenant.json")
    sim.expire_sessions()
    assert session.get("/api/class/fvTenant.json")["totalCount"] == "3"
    assert session.counters.logins == 2
    assert sim.counters.logins == 2


@pytest.mark.parametrize("status", [503, 429])
def test_busy_answers_are_retried_with_backoff(sim, session: ApicSession, status: int) -> None:
    session.login()
    sim.faults.fail_next(3, status)
    assert session.get("/api/class/fvTenant.json")["totalCount"] == "3"
    assert session.counters.retries == 3
    assert sim.counters.injected_errors == 3


def test_retries_are_bounded(sim, make_session: SessionFactory) -> None:
    session = make_session(sim.url, retries=2)
    session.login()
    sim.faults.fail_next(10)
    with pytest.raises(ApicUnavailableError) as caught:
        session.get("/api/class/fvTenant.json")
    assert caught.value.status == 503
    assert caught.value.code == "503"
    assert sim.counters.injected_errors == 3  # the first try and two retries


def test_rate_limit_spaces_requests(sim, make_session: SessionFactory) -> None:
    session = make_session(sim.url, rate_limit=20.0, burst=1)
    session.login()
    start = time.monotonic()
    for _ in range(10):
        session.get("/api/mo/uni/tn-common.json")
    elapsed = time.monotonic() - start
    assert elapsed >= 9 / 20 * 0.95  # 10 requests at 20/s with no burst take at least 9 intervals


def test_fails_over_to_the_second_url_when_the_first_refuses(sim, make_session: SessionFactory) -> None:
    session = make_session([closed_port_url(), sim.url])
    assert session.get("/api/class/fvTenant.json")["totalCount"] == "3"
    assert session.url == sim.url
    assert session.counters.failovers >= 1


def test_no_apic_answering_is_a_connection_error(make_session: SessionFactory) -> None:
    session = make_session([closed_port_url(), closed_port_url()], retries=2)
    with pytest.raises(ApicConnectionError, match="no APIC answered"):
        session.get("/api/class/fvTenant.json")


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls_is_verified_by_default(make_sim: SimFactory, make_session: SessionFactory) -> None:
    sim = make_sim(tls=True)
    with pytest.raises(ApicConnectionError, match="TLS check"):
        make_session(sim.url).get("/api/class/fvTenant.json")
    assert sim.counters.logins == 0
    verified = make_session(sim.url, ca_file=str(sim.cert_path))
    assert verified.get("/api/class/fvTenant.json")["totalCount"] == "3"
    unverified = make_session(sim.url, insecure=True)
    assert unverified.get("/api/class/fvTenant.json")["totalCount"] == "3"


def test_apic_errors_carry_code_and_text(session: ApicSession) -> None:
    with pytest.raises(ApicRequestError) as caught:
        session.post("/api/mo/uni.json", {"fvFoobar": {"attributes": {"name": "x"}}})
    assert caught.value.code == "122"
    assert "error 122: unknown managed object class fvFoobar" in str(caught.value)


def test_credentials_never_logged(
    sim, make_session: SessionFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    session = make_session(sim.url)
    session.get("/api/class/fvTenant.json")
    sim.expire_sessions()
    session.get("/api/class/fvTenant.json")
    token = session._token
    bad = make_session(sim.url, password="another-Secret-7")
    with pytest.raises(ApicAuthError) as caught:
        bad.login()
    text = caplog.text + repr(session) + repr(bad) + str(caught.value)
    assert PASSWORD not in text
    assert "another-Secret-7" not in text
    assert token and token not in text
    assert "logged in" in caplog.text  # logging does happen, just without secrets


def test_session_argument_errors() -> None:
    with pytest.raises(Exception, match="no APIC URL"):
        ApicSession([], "admin", "x")
    with pytest.raises(Exception, match="not both"):
        ApicSession("https://apic", "admin", "x", ca_file="ca.pem", insecure=True)


class _Redirector(ThreadingHTTPServer):
    """An HTTPS server that answers every request with a redirect to `target`, and keeps what it was sent."""

    def __init__(self, target: str, status: int, cert: str, key: str) -> None:
        self.target, self.status, self.seen = target, status, []
        redirector = self

        class Handler(BaseHTTPRequestHandler):
            def _redirect(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                redirector.seen.append((self.command, self.path, self.rfile.read(length)))
                self.send_response(redirector.status)
                self.send_header("Location", redirector.target + self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = _redirect

            def log_message(self, format: str, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.socket = context.wrap_socket(self.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def redirect_to(make_sim: SimFactory) -> Iterator[tuple[Simulator, Callable[[int], _Redirector]]]:
    """A TLS simulator (the other host) and redirectors to it that present the same certificate."""
    target = make_sim("elsewhere", tls=True)
    servers: list[_Redirector] = []

    def start(status: int) -> _Redirector:
        server = _Redirector(target.url, status, str(target.cert_path), str(target.key_path))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield target, start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("status", [307, 308, 302, 301])
def test_login_never_follows_a_redirect_with_the_password(redirect_to: Any, make_session: SessionFactory,
                                                          status: int) -> None:
    target, start = redirect_to
    redirector = start(status)
    session = make_session(redirector.url, ca_file=str(target.cert_path))
    with pytest.raises(ApicRequestError) as caught:
        session.get("/api/class/fvTenant.json")
    assert caught.value.status == status
    assert str(caught.value) == (
        f"APIC {redirector.url} answered POST /api/aaaLogin.json with a redirect ({status} to "
        f"'{target.url}/api/aaaLogin.json'); epgbridge does not follow redirects, which would send the "
        "credentials there: give the APIC's own address")
    assert [(m, p) for m, p, _ in redirector.seen] == [("POST", "/api/aaaLogin.json")]
    assert PASSWORD.encode() in redirector.seen[0][2]  # the address we were given, and no other
    assert target.counters.logins == 0 and target.counters.requests == 0


class _CutOnce(ThreadingHTTPServer):
    """A plain-HTTP front for the simulator that relays every request, but cuts the answer to the first POST
    off after its headers (the write is done upstream, its answer lost: a restart or a reset mid-response)."""

    def __init__(self, upstream: str) -> None:
        import requests

        self.cut = False
        front = self

        class Handler(BaseHTTPRequestHandler):
            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                answer = requests.request(self.command, upstream + self.path, data=body, timeout=10,
                                          headers={k: v for k, v in self.headers.items() if k.lower() == "cookie"})
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.headers.get("Content-Type", "application/json"))
                if self.command == "POST" and not front.cut:
                    front.cut = True
                    self.send_header("Content-Length", str(len(answer.content) + 30))
                    self.end_headers()
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = _relay

            def log_message(self, format: str, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


def test_an_answer_cut_off_mid_response_is_retried(make_sim: SimFactory, make_session: SessionFactory) -> None:
    """A connection that breaks after the APIC answered the headers (IncompleteRead) is a connection problem,
    retried like a reset, not a request the APIC refused: writes are whole object trees, so sending one again
    is safe (as a sync rerun is)."""
    sim = make_sim("cut", tls=False)
    front = _CutOnce(sim.url)
    threading.Thread(target=front.serve_forever, daemon=True).start()
    try:
        session = make_session(front.url)
        tree = {"fvTenant": {"attributes": {"dn": "uni/tn-cut", "name": "cut"}}}
        session.post("/api/mo/uni/tn-cut.json", tree)
        assert front.cut and session.counters.retries >= 1
        assert session.get("/api/mo/uni/tn-cut.json")["totalCount"] == "1"
    finally:
        front.shutdown()
        front.server_close()
