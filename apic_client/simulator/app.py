"""The simulator's WSGI application: routing of APIC REST paths, cookies, envelopes, fault injection."""

from __future__ import annotations

import json
import secrets
import socket
import struct
import threading
import time
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

from werkzeug.wrappers import Request, Response

from ..meta import CLASSES
from .auth import Authenticator
from .faults import Counters, Faults
from .queries import Query, run_query
from .store import MoStore, Transaction
from .writes import Rejection, apply_post, canonical_dn, changed_tree

MAX_PAYLOAD = 1024 * 1024
_EMPTY = '{"totalCount":"0","imdata":[]}'
_NOT_FOUND_HTML = (
    "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n"
    "<center><h1>404 Not Found</h1></center>\r\n"
    "<hr><center>Cisco APIC</center>\r\n</body>\r\n</html>\r\n"
)
_STATUS_TEXT = {
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class _Stopped(Exception):
    """The simulator was stopped while this request was being handled: it must not answer."""


class ApicApp:
    """Answers APIC REST requests from one store; `stopped` makes it refuse to commit anything more."""

    def __init__(
        self, store: MoStore, auth: Authenticator, faults: Faults, counters: Counters, tls: bool
    ) -> None:
        self.store = store
        self.auth = auth
        self.faults = faults
        self.counters = counters
        self.tls = tls
        self.stopped = False
        self._counter_lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        response = self._handle(request, environ)
        return response(environ, start_response)

    def _count(self, **increments: int) -> None:
        with self._counter_lock:
            for name, step in increments.items():
                setattr(self.counters, name, getattr(self.counters, name) + step)

    def _handle(self, request: Request, environ: dict[str, Any]) -> Response:
        self._count(requests=1)
        if self.faults.latency > 0:
            time.sleep(self.faults.latency)
        path = request.path
        if not path.startswith("/api/"):
            return Response(_NOT_FOUND_HTML, status=404, content_type="text/html")
        reset = self.faults.take_reset()
        if reset is False or self.stopped:
            return self._abort(environ)
        failure = self.faults.take_failure()
        if failure is not None:
            self._count(injected_errors=1)
            return _error(str(failure), _STATUS_TEXT.get(failure, "Injected failure"), failure)
        try:
            response = self._route(request, path)
        except Rejection as rejection:
            response = _error(rejection.code, rejection.text, rejection.status)
        except _Stopped:
            return self._abort(environ)
        if reset is True:
            return self._abort(environ)
        return response

    def _abort(self, environ: dict[str, Any]) -> Response:
        """Cut the connection without an answer; werkzeug's write then fails quietly as a dropped client."""
        self._count(resets=1)
        sock = environ.get("werkzeug.socket")
        if isinstance(sock, socket.socket):
            try:
                # Linger 0 turns the final close into a TCP reset, as when an APIC process dies.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return Response(b"", status=500)

    def _route(self, request: Request, path: str) -> Response:
        if not path.endswith(".json"):
            if path.endswith(".xml"):
                raise Rejection("400", "this simulator speaks JSON only; use the .json suffix")
            raise Rejection("400", f"Request failed, unknown API path {path}")
        name = path[len("/api/") : -len(".json")]
        method = request.method
        if name == "aaaLogin" and method == "POST":
            return self._login(request)
        if name == "aaaRefresh" and method in ("GET", "POST"):
            self.auth.throttle(request.remote_addr or "", self.faults.login_rate, self.faults.login_burst)
            self._count(refreshes=1)
            return self._with_cookie(self.auth.refresh(_token_of(request)))
        if name == "aaaLogout" and method == "POST":
            self._count(logouts=1)
            self.auth.logout(_token_of(request))
            response = _json(_EMPTY)
            response.delete_cookie("APIC-cookie", path="/")
            return response
        if name == "aaaListDomains" and method == "GET":
            return _json(
                json.dumps({"imdata": [{"name": "DefaultAuth", "guiBanner": ""}], "totalCount": "1"})
            )
        self.auth.check(_token_of(request))
        for prefix in ("node/mo/", "mo/"):
            if name.startswith(prefix) or name == prefix[:-1]:
                dn = name[len(prefix) :] if name.startswith(prefix) else ""
                return self._mo(request, method, dn)
        for prefix in ("node/class/", "class/"):
            if name.startswith(prefix) and method == "GET":
                return self._class(request, name[len(prefix) :])
        if name == "subscriptionRefresh" and method == "GET":
            return _json(_EMPTY)
        raise Rejection("400", f"Request failed, unknown API {method} {path}")

    def _login(self, request: Request) -> Response:
        self._count(logins=1)
        self.auth.throttle(request.remote_addr or "", self.faults.login_rate, self.faults.login_burst)
        body = _body_of(request)
        try:
            attributes = body["aaaUser"]["attributes"]
            name, password = str(attributes["name"]), str(attributes["pwd"])
        except (KeyError, TypeError):
            raise Rejection(
                "400", 'invalid data: expected {"aaaUser": {"attributes": {name, pwd}}}'
            ) from None
        answer = self.auth.login(name, password, self.faults.token_lifetime, self.faults.max_lifetime)
        return self._with_cookie(answer)

    def _with_cookie(self, answer: dict[str, Any]) -> Response:
        response = _json(json.dumps({"totalCount": "1", "imdata": [answer]}))
        token = answer["aaaLogin"]["attributes"]["token"]
        # A Secure cookie is not sent back over plain http, so the flag goes only with TLS.
        response.set_cookie("APIC-cookie", token, path="/", httponly=True, secure=self.tls)
        return response

    def _mo(self, request: Request, method: str, dn: str) -> Response:
        dn = canonical_dn(dn)
        echo = request.args.get("rsp-subtree") == "modified"  # answer a write with what it changed
        if method == "GET":
            with self.store.lock:
                base = self.store.get(dn)
                query = Query.parse(request.args)
                total, objects = run_query(self.store, [base] if base is not None else [], query)
            self._count(gets=1)
            return _envelope(total, objects, request)
        if method == "POST":
            body = _body_of(request)
            with self.store.lock:
                txn = Transaction(self.store)
                apply_post(txn, dn, body)
                if self.stopped:
                    raise _Stopped()
                changed = changed_tree(self.store, txn.changes) if echo else []
                self.store.commit(txn.changes)
            with self._counter_lock:
                self.counters.posts += 1
                self.counters.post_paths.append(request.path)
            return _envelope(len(changed), changed, request) if echo else _json(_EMPTY)
        if method == "DELETE":
            with self.store.lock:
                txn = Transaction(self.store)
                txn.delete_subtree(dn)
                doomed = self.store.get(dn)
                changed: list[dict[str, Any]] = []
                if doomed is not None:
                    changed = [{doomed.cls: {"attributes": {"dn": dn, "status": "deleted"}}}]
                    self.store.commit(txn.changes)
            self._count(deletes=1)
            return _envelope(len(changed), changed, request) if echo else _json(_EMPTY)
        raise Rejection("400", f"Request failed, method {method} not allowed on /api/mo")

    def _class(self, request: Request, cls: str) -> Response:
        if cls not in CLASSES:
            raise Rejection("400", f"Request failed, unresolved class for {cls}")
        with self.store.lock:
            query = Query.parse(request.args)
            total, objects = run_query(self.store, self.store.of_class(cls), query)
        self._count(gets=1)
        return _envelope(total, objects, request)


def _token_of(request: Request) -> str | None:
    # aci-go-client spells the cookie APIC-Cookie; the APIC does not mind.
    for name, value in request.cookies.items():
        if name.lower() == "apic-cookie":
            return value
    return None


def _body_of(request: Request) -> Any:
    if (request.content_length or 0) > MAX_PAYLOAD:
        raise Rejection("400", "payload too large: at most 1 MB per request", status=413)
    raw = request.get_data(cache=False)
    if len(raw) > MAX_PAYLOAD:
        raise Rejection("400", "payload too large: at most 1 MB per request", status=413)
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise Rejection("400", f"JSON parsing failed - {error}") from None


def _envelope(total: int, objects: list[dict[str, Any]], request: Request) -> Response:
    document: dict[str, Any] = {"totalCount": str(total)}
    if request.args.get("subscription") == "yes":
        document["subscriptionId"] = str(secrets.randbelow(10**17) + 10**16)
    document["imdata"] = objects
    return _json(json.dumps(document, separators=(",", ":")))


def _json(text: str, status: int = 200) -> Response:
    # The reason phrase as an APIC (nginx) sends it: "Bad Request", not werkzeug's "BAD REQUEST".
    try:
        line = f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        line = str(status)
    return Response(text, status=line, content_type="application/json")


def _error(code: str, text: str, status: int) -> Response:
    document = {"totalCount": "1", "imdata": [{"error": {"attributes": {"code": code, "text": text}}}]}
    return _json(json.dumps(document, separators=(",", ":")), status)
