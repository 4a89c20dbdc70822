"""Authentication: the aaaLogin answer, session tokens with their lifetimes, and the login throttle.

Tokens live in memory only, so a restarted simulator rejects old tokens with 403, like an APIC whose sessions
were lost; clients then log in again. The throttle limits aaaLogin and aaaRefresh per client address with a
token bucket and answers 503 beyond it (our choice; see the module `apic_client.simulator` docstring).
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from .writes import Rejection

NO_COOKIE_TEXT = (
    "Need a valid webtoken cookie (named APIC-Cookie) or a signed request with signature in the cookie "
    "APIC-Request-Signature for all REST API requests"
)
TOKEN_TIMEOUT_TEXT = "Token was invalid (Error: Token timeout)"
BAD_LOGIN_TEXT = "Username or password is incorrect - FAILED local authentication"
APIC_VERSION = "5.2(7f)"


@dataclass
class _Session:
    user: str
    created: float
    refreshed: float
    refresh_timeout: int
    max_lifetime: int
    session_id: str


class Authenticator:
    """Checks passwords and tokens for one simulator run."""

    def __init__(self, username: str, password: str) -> None:
        self._username = username
        self._password = password
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}

    def login(self, name: str, password: str, refresh_timeout: int, max_lifetime: int) -> dict[str, Any]:
        # "apic:<domain>\\<user>" selects a login domain; every domain is local here.
        user = name.rsplit("\\", 1)[-1] if name.startswith("apic:") else name
        ok_user = hmac.compare_digest(user.encode(), self._username.encode())
        ok_password = hmac.compare_digest(password.encode(), self._password.encode())
        if not (ok_user and ok_password):
            raise Rejection("401", BAD_LOGIN_TEXT, status=401)
        now = time.time()
        token = secrets.token_urlsafe(96)
        session = _Session(user, now, now, refresh_timeout, max_lifetime, secrets.token_urlsafe(16))
        with self._lock:
            self._sessions[token] = session
        return self._login_answer(token, session)

    def check(self, token: str | None) -> str:
        """The user of a valid token; raises the 403 Rejection the APIC sends otherwise."""
        if not token:
            raise Rejection("403", NO_COOKIE_TEXT, status=403)
        with self._lock:
            session = self._sessions.get(token)
            now = time.time()
            if session is None or self._expired(session, now):
                self._sessions.pop(token, None)
                raise Rejection("403", TOKEN_TIMEOUT_TEXT, status=403)
            return session.user

    def refresh(self, token: str | None) -> dict[str, Any]:
        """A new token for a valid one; the old token stays valid until its own timeout."""
        self.check(token)
        assert token is not None
        with self._lock:
            old = self._sessions[token]
            now = time.time()
            old.refreshed = now
            new_token = secrets.token_urlsafe(96)
            session = _Session(
                old.user, old.created, now, old.refresh_timeout, old.max_lifetime, old.session_id
            )
            self._sessions[new_token] = session
        return self._login_answer(new_token, session)

    def logout(self, token: str | None) -> None:
        with self._lock:
            if token:
                self._sessions.pop(token, None)

    def expire_all(self) -> None:
        with self._lock:
            self._sessions.clear()

    def throttle(self, client: str, rate: float, burst: int) -> None:
        """Raise 503 when `client` exceeds `rate` logins per second (bursts of `burst`)."""
        if rate <= 0:
            return
        with self._lock:
            now = time.monotonic()
            tokens, stamp = self._buckets.get(client, (float(burst), now))
            tokens = min(float(burst), tokens + (now - stamp) * rate)
            if tokens < 1.0:
                self._buckets[client] = (tokens, now)
                raise Rejection("503", "Login request throttled, please retry later", status=503)
            self._buckets[client] = (tokens - 1.0, now)

    @staticmethod
    def _expired(session: _Session, now: float) -> bool:
        return (
            now - session.refreshed > session.refresh_timeout or now - session.created > session.max_lifetime
        )

    def _login_answer(self, token: str, session: _Session) -> dict[str, Any]:
        attributes = {
            "token": token,
            "siteFingerprint": "simulator",
            "refreshTimeoutSeconds": str(session.refresh_timeout),
            "maximumLifetimeSeconds": str(session.max_lifetime),
            "guiIdleTimeoutSeconds": "1200",
            "restTimeoutSeconds": "90",
            "creationTime": str(int(session.created)),
            "firstLoginTime": str(int(session.created)),
            "userName": session.user,
            "remoteUser": "false",
            "unixUserId": "15374",
            "sessionId": session.session_id,
            "lastName": "",
            "firstName": "",
            "version": APIC_VERSION,
            "buildTime": "Sat Jan 01 00:00:00 UTC 2022",
            "node": "topology/pod-1/node-1",
        }
        children = [
            {
                "aaaUserDomain": {
                    "attributes": {"name": "all", "rolesR": "admin", "rolesW": "admin"},
                    "children": [
                        {"aaaReadRoles": {"attributes": {}}},
                        {
                            "aaaWriteRoles": {
                                "attributes": {},
                                "children": [{"role": {"attributes": {"name": "admin"}}}],
                            }
                        },
                    ],
                }
            },
            {
                "DnDomainMapEntry": {
                    "attributes": {
                        "dn": "uni/tn-common",
                        "readPrivileges": "admin",
                        "writePrivileges": "admin",
                    }
                }
            },
        ]
        return {"aaaLogin": {"attributes": attributes, "children": children}}
