"""The REST session to an APIC cluster: login, token refresh, retries, rate limiting and failover.

`ApicSession` logs in once with aaaLogin and sends the token back as the ``APIC-cookie`` cookie. It refreshes
the token (aaaRefresh) once half of ``refreshTimeoutSeconds`` has passed, as acitoolkit does, logs in again
once when the APIC answers 403 anyway (token timed out, APIC restarted), retries 429/503 and connection errors
with capped exponential backoff and jitter, spaces requests with a token bucket, and moves to the next APIC
URL when one stops answering. Every loop is bounded by `retries`. Redirects are never followed.

The password and the token never appear in logs, reprs or exception messages.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from epg.text import shown

from .errors import (
    ApicAuthError,
    ApicConnectionError,
    ApicError,
    ApicRequestError,
    ApicTLSError,
    ApicUnavailableError,
)

log = logging.getLogger(__name__)

JsonObject = dict[str, Any]
_RETRY_STATUSES = frozenset({429, 503})


@dataclass
class SessionCounters:
    """What the session sent; tests and the benchmark read these."""

    logins: int = 0
    refreshes: int = 0
    requests: int = 0
    gets: int = 0
    posts: int = 0
    retries: int = 0
    failovers: int = 0


class _TokenBucket:
    """Allows `rate` requests per second on average, `burst` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._capacity = float(burst)
        self._tokens = float(burst)
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        if self._rate <= 0:
            return
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now
            self._tokens -= 1.0
            wait = -self._tokens / self._rate if self._tokens < 0 else 0.0
        if wait > 0:
            time.sleep(wait)


class ApicSession:
    """A logged-in conversation with one APIC cluster (several URLs for failover).

    >>> with ApicSession(["https://apic1", "https://apic2"], "admin", password) as apic:
    ...     tenants = apic.get("/api/class/fvTenant.json")["imdata"]
    """

    def __init__(
        self,
        urls: str | Sequence[str],
        username: str,
        password: str,
        *,
        ca_file: str | None = None,
        insecure: bool = False,
        rate_limit: float = 10.0,
        burst: int | None = None,
        timeout: float = 30.0,
        retries: int = 5,
        backoff: float = 0.5,
        backoff_max: float = 8.0,
    ) -> None:
        self._urls = [urls] if isinstance(urls, str) else list(urls)
        if not self._urls:
            raise ApicError("no APIC URL given")
        self._urls = [url.rstrip("/") for url in self._urls]
        for url in self._urls:
            problem = url_problem(url)
            if problem:
                raise ApicError(problem)
        if ca_file and insecure:
            raise ApicError("give either a CA file (--ca) or --insecure, not both")
        if ca_file and not os.path.isfile(ca_file):
            raise ApicError(f"--ca {ca_file}: no such file (the CA certificate, PEM, that signed the APIC's)")
        self._username = username
        self._password = password
        self._timeout = timeout
        self._retries = max(0, retries)
        self._backoff = backoff
        self._backoff_max = backoff_max
        self._http = requests.Session()
        # Passed with every request: a Session-level verify loses against REQUESTS_CA_BUNDLE in requests.
        self._verify: str | bool = ca_file if ca_file else not insecure
        self._bucket = _TokenBucket(rate_limit, burst if burst is not None else max(1, int(rate_limit)))
        self._current = 0
        self._token: str | None = None
        self._refresh_at = 0.0
        self._auth_lock = threading.RLock()
        self.counters = SessionCounters()
        self.apic_version = ""

    def __repr__(self) -> str:
        return f"ApicSession(urls={self._urls!r}, username={self._username!r})"

    def __enter__(self) -> ApicSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        """The APIC URL in use (it changes on failover)."""
        return self._urls[self._current]

    # Public API

    def login(self) -> None:
        """Log in with aaaLogin (done automatically before the first request)."""
        with self._auth_lock:
            body = {"aaaUser": {"attributes": {"name": self._username, "pwd": self._password}}}
            self.counters.logins += 1
            reply = self._send("POST", "/api/aaaLogin.json", None, body, authenticated=False)
            self._accept_token(reply)
            log.info("logged in to %s as %s", self.url, self._username)

    def get(self, path: str, params: Mapping[str, str] | None = None) -> JsonObject:
        """GET an API path (``/api/mo/uni/tn-x.json``) and return the parsed envelope."""
        self.counters.gets += 1
        return self._call("GET", path, params, None)

    def post(self, path: str, payload: Mapping[str, Any]) -> JsonObject:
        """POST an MO tree to an API path and return the parsed envelope.

        Retried POSTs are safe for the payloads the sync sends (upserts and ``status="deleted"``): the APIC
        applies a POST as one transaction, and applying the same tree twice changes nothing.
        """
        self.counters.posts += 1
        return self._call("POST", path, None, payload)

    def close(self) -> None:
        """Log out (best effort) and release the connections."""
        with self._auth_lock:
            if self._token is not None:
                try:
                    self._http.post(
                        self.url + "/api/aaaLogout.json",
                        data=json.dumps({"aaaUser": {"attributes": {"name": self._username}}}),
                        headers=self._cookie_header(),
                        timeout=self._timeout,
                        verify=self._verify,
                        allow_redirects=False,
                    )
                except requests.RequestException:
                    log.debug("logout from %s failed; the token will time out", self.url)
                self._token = None
        self._http.close()

    # Internals

    def _call(self, method: str, path: str, params: Mapping[str, str] | None, body: Any) -> JsonObject:
        relogged = False
        while True:
            with self._auth_lock:
                if self._token is None:
                    self.login()
                elif time.monotonic() >= self._refresh_at:
                    self._refresh()
            try:
                return self._send(method, path, params, body, authenticated=True)
            except ApicAuthError as error:
                # A 403 means the token is gone (timed out, APIC restarted, failover to another cluster
                # member): log in again, once per call, then give up with the APIC's own message.
                if error.status != 403 or relogged:
                    raise
                relogged = True
                log.info("%s rejected the session token (%s); logging in again", self.url, error.text)
                with self._auth_lock:
                    self._token = None

    def _refresh(self) -> None:
        self.counters.refreshes += 1
        try:
            reply = self._send("GET", "/api/aaaRefresh.json", None, None, authenticated=True)
        except ApicAuthError:
            self._token = None
            self.login()
            return
        self._accept_token(reply)

    def _accept_token(self, reply: JsonObject) -> None:
        try:
            attributes = reply["imdata"][0]["aaaLogin"]["attributes"]
            token = str(attributes["token"])
            lifetime = float(attributes.get("refreshTimeoutSeconds", "600"))
        except (KeyError, IndexError, TypeError, ValueError):
            raise ApicError(f"{self.url} answered the login without a token") from None
        self._token = token
        self._refresh_at = time.monotonic() + lifetime / 2
        self.apic_version = str(attributes.get("version", ""))

    def _cookie_header(self) -> dict[str, str]:
        return {"Cookie": f"APIC-cookie={self._token}"} if self._token else {}

    def _send(
        self, method: str, path: str, params: Mapping[str, str] | None, body: Any, *, authenticated: bool
    ) -> JsonObject:
        """One logical request: retried on 429/503 and connection errors, failing over between URLs."""
        data = json.dumps(body) if body is not None else None
        last_problem = ""
        last_status: requests.Response | None = None
        for attempt in range(self._retries + 1):
            if attempt:
                self.counters.retries += 1
            for _ in range(len(self._urls)):
                url = self.url + path
                self._bucket.acquire()
                self.counters.requests += 1
                headers = self._cookie_header() if authenticated else {}
                try:
                    response = self._http.request(
                        method,
                        url,
                        params=params,
                        data=data,
                        headers=headers,
                        timeout=self._timeout,
                        verify=self._verify,
                        # Never: a redirect would carry the password (aaaLogin's body, re-sent on 307/308)
                        # or the token to wherever the answer points.
                        allow_redirects=False,
                    )
                except requests.exceptions.SSLError as error:
                    raise ApicTLSError(
                        f"TLS check of {self.url} failed ({_reason(error)}): pass the CA that signed the "
                        "APIC's certificate with --ca FILE, or --insecure to skip the check"
                    ) from None
                # An answer cut off mid-body (APIC restarted while answering) is a broken connection too.
                # Writes post whole trees, so sending one again is as safe as rerunning a sync.
                except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as error:
                    last_problem, last_status = f"{url}: {type(error).__name__}", None
                    log.warning("%s %s failed (%s)", method, url, type(error).__name__)
                    self._fail_over()
                    continue
                except (requests.RequestException, OSError) as error:  # a URL or CA file requests cannot use
                    raise ApicError(f"{method} {url}: {error}") from None
                # The token travels in our own Cookie header; a jar would mix tokens of several APICs.
                self._http.cookies.clear()
                log.debug("%s %s -> %d", method, url, response.status_code)
                if response.status_code in _RETRY_STATUSES:
                    last_problem, last_status = self._describe(method, path, response), response
                    if attempt < self._retries:
                        self._sleep(attempt, response.headers.get("Retry-After"))
                    break
                return self._parse(method, path, response)
            else:
                if attempt < self._retries:
                    self._sleep(attempt, None)
        if last_status is None:
            raise ApicConnectionError(
                f"no APIC answered {method} {path} after {self._retries + 1} attempts (last: {last_problem}); "
                "check the --apic URLs"
            )
        code, text = _error_of(last_status)
        raise ApicUnavailableError(
            f"{last_problem} (gave up after {self._retries + 1} attempts)",
            status=last_status.status_code,
            code=code,
            text=text,
        )

    def _fail_over(self) -> None:
        if len(self._urls) > 1:
            self._current = (self._current + 1) % len(self._urls)
            self.counters.failovers += 1
            log.warning("failing over to %s", self.url)

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        delay = min(self._backoff_max, self._backoff * (2**attempt)) * random.uniform(0.5, 1.0)
        if retry_after and retry_after.isdigit():
            delay = min(self._backoff_max, max(delay, float(retry_after)))
        time.sleep(delay)

    def _parse(self, method: str, path: str, response: requests.Response) -> JsonObject:
        if response.status_code == 200:
            try:
                parsed = response.json()
            except ValueError:
                raise ApicError(f"{method} {path}: {self.url} answered with invalid JSON") from None
            if not isinstance(parsed, dict):
                raise ApicError(f"{method} {path}: {self.url} answered with unexpected JSON")
            return parsed
        if response.is_redirect:
            location = shown(response.headers.get("Location", ""))
            raise ApicRequestError(
                f"APIC {self.url} answered {method} {path} with a redirect ({response.status_code} to {location}); "
                "epgbridge does not follow redirects, which would send the credentials there: give the APIC's "
                "own address",
                status=response.status_code,
            )
        code, text = _error_of(response)
        message = self._describe(method, path, response)
        if response.status_code in (401, 403):
            raise ApicAuthError(message, status=response.status_code, code=code, text=text)
        raise ApicRequestError(message, status=response.status_code, code=code, text=text)

    def _describe(self, method: str, path: str, response: requests.Response) -> str:
        code, text = _error_of(response)
        detail = f"error {code}: {text}" if code else f"HTTP {response.status_code}"
        return f"APIC {self.url} rejected {method} {path}: {detail}"


def url_problem(url: str) -> str | None:
    """Why `url` cannot be an APIC URL (scheme http or https, a host, no path), or None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as error:
        return f"--apic {url}: not a URL ({error})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"--apic {url}: give the scheme and the host, e.g. https://{url.split('://')[-1] or 'apic1'}"
    if parts.path.strip("/") or parts.query or parts.fragment:
        return f"--apic {url}: give only the scheme, host and port (e.g. https://apic1:443), no path"
    return None


def _reason(error: Exception) -> str:
    """The innermost cause of a requests error, which names the actual TLS problem."""
    text = str(error)
    marker = text.rfind("(")
    return (
        text[marker + 1 :].rstrip(")")
        if "certificate verify failed" not in text
        else (
            "certificate verify failed: "
            + text.split("certificate verify failed:", 1)[1].split("(", 1)[0].strip()
        )
    )


def _error_of(response: requests.Response) -> tuple[str, str]:
    """The code and text of an APIC error envelope, or ("", "") when the body is not one."""
    try:
        attributes = response.json()["imdata"][0]["error"]["attributes"]
        return str(attributes.get("code", "")), str(attributes.get("text", ""))
    except (ValueError, KeyError, IndexError, TypeError):
        return "", ""
