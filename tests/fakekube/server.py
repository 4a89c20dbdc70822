"""`FakeKube`: a Kubernetes API server on 127.0.0.1 that speaks the real HTTP/JSON wire protocol, so the
official `kubernetes` client (lists, watches, patches, leases) runs against it unchanged.

>>> kube = FakeKube()
>>> url = kube.start()
>>> core = kubernetes.client.CoreV1Api(kube.api_client())
>>> kube.stop()

As the real server: string resourceVersions from one counter; uid, creationTimestamp, generation (kinds with
a spec; bumped on changes outside metadata and status); Status objects for errors (404, 409 AlreadyExists and
Conflict, 410 Expired, 422 Invalid, 415 for what it cannot decode: protobuf bodies, strategic merge on custom
resources); no-op writes keep the resourceVersion; list items without apiVersion/kind (built-ins); paged lists
over one snapshot; watches with synthetic ADDED for no/"0" resourceVersion, selector transitions as
ADDED/DELETED, bookmarks, 410 as an ERROR event; finalizers delay deletion; namespaces must exist and their
deletion cascades; version v1.37.
- Custom resources exist only while their CustomResourceDefinition does (`crds=[CRD_DIR]` or
  `install_crds`): a kind without one answers 404, deleting the CRD deletes its objects and ends their watches.
  Writes are pruned, defaulted and validated with the CRD's schema and CEL rules (tests/fakekube/schema.py
  says what of CEL is evaluated), unknown fields warned about (`Warning` header) or refused with
  `fieldValidation=Strict`.
- `dryRun=All` on every write: the answer of the real write (validation included), nothing stored, no event.
- Pods: created without status (Pending, no address); the kubelet's part is `pod_started` (podIP(s) through
  /status) and `finish_deletion`; deleting a pod on a node marks it (deletionTimestamp, grace period) until then.
- Table output (`Accept: ...;as=Table;...`) with the CRDs' printer columns; /openapi/v3 with every kind's PATCH
  operation (so kubectl validates on the server, fieldValidation=Strict) and the CRDs' schemas (kubectl
  explain), /openapi/v2 as JSON (tests/fakekube/tables.py). Checked by hand with kubectl 1.37: apply, get
  (-o wide), diff, delete --dry-run=server, explain.
- Authentication by bearer token (`add_user`, `service_account_token`; an unknown token is a 401) and, with
  `authorize`, RBAC over the stored Roles, ClusterRoles and bindings (tests/fakekube/rbac.py); 403 otherwise.

Unfaithful (known): no admission plugins or built-in defaulting and validation (a Deployment without a
selector is stored); no controllers (a Deployment makes no ReplicaSet, no garbage collection of owned
objects, pods never start by themselves: tests drive the kubelet's part); /status writes change status only
(metadata too is ignored); strategic merge is merge patch plus merge-by-key lists, without directives;
server-side apply is a merge patch that may create (no managedFields, no conflicts); the two Event APIs are
separate stores; protobuf is refused rather than decoded (/openapi/v2 asked as protobuf only answers 404),
aggregated discovery is not served (clients fall back to the legacy documents); built-in kinds print the
default table (Name, Created At), not their real columns; the OpenAPI documents hold no schemas of built-in
kinds (kubectl explain pod fails); CRD conversion webhooks, scale subresources and multiple
stored versions are not modelled; bookmarks every `bookmark_interval` seconds (1 s by default, about a minute
on a real server).
"""

from __future__ import annotations

import collections
import contextlib
import json
import queue
import socket
import threading
import time
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kubernetes
import yaml

from . import rbac, resources, tables
from .resources import PODS, ResourceType
from .store import NS, ApiError, FakeLimit, Options, Store, Watch, bad_request

_TRUE = {"1", "t", "T", "true", "TRUE", "True"}  # Go's strconv.ParseBool
CRD_DIR = Path(__file__).resolve().parents[2] / "deploy" / "crds"  # epgbridge's CRDs, for `crds=[CRD_DIR]`


@dataclass(frozen=True)
class Request:
    """One request as the server saw it; `verb` is the Kubernetes verb (get, list, watch, create, ...)."""

    method: str
    path: str
    query: dict[str, str]
    verb: str
    resource: str  # "pods", "deployments.apps", "pods/status"; "" for discovery and health
    content_type: str = ""
    body: bytes = b""


@dataclass
class _Failure:
    remaining: int
    code: int
    verb: str | None
    resource: str | None


_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
            410: "Expired", 422: "Invalid", 429: "TooManyRequests", 500: "InternalError",
            503: "ServiceUnavailable", 504: "Timeout"}


class _Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True
    fake: FakeKube

    def __init__(self, fake: FakeKube) -> None:
        self.fake = fake
        self.connections: set[socket.socket] = set()
        self.conn_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as separate writes; without this, delayed ACKs add 40 ms per request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.conn_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.conn_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def handle(self) -> None:
        with contextlib.suppress(OSError):
            super().handle()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def version_string(self) -> str:
        return "fakekube"

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    # --- plumbing ---

    def _send_json(self, code: int, doc: Any, headers: dict[str, str] | list[tuple[str, str]] | None = None) -> None:
        data = json.dumps(doc, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers.items() if isinstance(headers, dict) else headers or []:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _send_error(self, err: ApiError) -> None:
        headers = {"Retry-After": "1"} if err.code in (429, 503) else None
        self._send_json(err.code, err.status, headers)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _body(self) -> bytes:
        return self.raw_body

    def _json_body(self) -> Any:
        raw = self._body()
        if not raw:
            return None
        media = self.headers.get("Content-Type", "application/json").split(";")[0].strip().lower()
        if media not in ("application/json", "application/yaml", ""):
            raise ApiError(415, "UnsupportedMediaType", 'the body of the request was in an unknown format - '
                           'accepted media types include: application/json, application/yaml')
        try:
            return yaml.safe_load(raw) if media == "application/yaml" else json.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise bad_request(f"the body of the request was in an unknown format: {exc}") from None

    # --- routing ---

    def _dispatch(self) -> None:
        fake = self.server.fake
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        parts = [p for p in url.path.split("/") if p]
        self.raw_body = self._read_body()
        content_type = self.headers.get("Content-Type", "")
        try:
            route = self._route(parts, query)
        except ApiError as err:
            fake._record(Request(self.command, url.path, query, self.command.lower(), "", content_type,
                                 self.raw_body))
            self._send_error(err)
            return
        verb, rt, ns, name, sub = route
        resource = "" if rt is None else rt.qualified + (f"/{sub}" if sub else "")
        fake._record(Request(self.command, url.path, query, verb, resource, content_type, self.raw_body))
        try:
            self._authorize(verb, rt, ns, name, sub)
        except ApiError as err:
            self._send_error(err)
            return
        failure = fake._take_failure(verb, resource)
        if failure is not None:
            reason = _REASONS.get(failure, "InternalError")
            message = (f'{resource} is forbidden: User "system:anonymous" cannot {verb} resource "{resource}"'
                       if failure == 403 else f"injected failure ({failure})")
            self._send_error(ApiError(failure, reason, message))
            return
        try:
            if rt is None:
                self._discovery(parts)
            else:
                self._serve(verb, rt, ns, name, sub, query)
        except ApiError as err:
            self._send_error(err)
        except FakeLimit as exc:  # something the fake cannot do faithfully: a 500 the test sees
            fake.server_errors.append(f"{self.command} {self.path}: {exc}")
            self._send_error(ApiError(500, "InternalError", str(exc)))
        except Exception as exc:  # a bug in the fake: answer 500 and keep it for the test to see
            fake.server_errors.append(f"{self.command} {self.path}: {traceback.format_exc()}")
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._send_error(ApiError(500, "InternalError", f"fakekube: {exc!r}"))

    def _authorize(self, verb: str, rt: ResourceType | None, ns: str | None, name: str, sub: str) -> None:
        """401 for an unknown bearer token; with `FakeKube.authorize`, 403 unless the stored RBAC allows it."""
        fake = self.server.fake
        header = self.headers.get("Authorization", "")
        user = rbac.ANONYMOUS
        if header.startswith("Bearer "):
            found = fake.tokens.get(header[len("Bearer "):].strip())
            if found is None:
                raise ApiError(401, "Unauthorized", "Unauthorized")
            user = found
        if not fake.authorize or (rt is None and user is not rbac.ANONYMOUS) or "system:masters" in user.groups:
            return
        namespace = ns or (name if rt is NS else "")
        attributes = rbac.Attributes(verb, rt.group if rt else "", rt.plural if rt else "", sub, namespace, name)
        if rt is None or not rbac.allowed(fake.store.rbac_objects(), user, attributes):
            message = attributes.describe(user) if rt else f'forbidden: User "{user.name}" cannot get path'
            fake._deny(user.name, attributes)
            raise ApiError(403, "Forbidden", message, {"name": name, "kind": rt.plural if rt else ""})

    def _route(self, parts: list[str], query: dict[str, str]) -> tuple[str, ResourceType | None, str | None,
                                                                        str, str]:
        """(verb, resource type, namespace or None for all, name, subresource) of a request path."""
        if not parts or parts[0] not in ("api", "apis") or self._is_discovery(parts):
            return ("get", None, None, "", "")
        if parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        else:
            if len(parts) < 3:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            group, version, rest = parts[1], parts[2], parts[3:]
        legacy_watch = bool(rest) and rest[0] == "watch"
        if legacy_watch:
            rest = rest[1:]
        ns: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
            ns, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        rt = self.server.fake.store.catalogue.by_path(group, version, rest[0])
        if rt is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        if sub and not (sub == "status" and rt.status):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if rt.namespaced and ns is None and name:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if not rt.namespaced and ns is not None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        method = self.command
        watching = legacy_watch or query.get("watch", "") in _TRUE
        if method == "GET":
            verb = ("watch" if watching else "get" if name else "list")
        else:
            verb = {"POST": "create", "PUT": "update", "PATCH": "patch",
                    "DELETE": "delete" if name else "deletecollection"}.get(method, method.lower())
        if legacy_watch and name:  # /watch/.../NAME watches one object
            query["fieldSelector"] = ",".join(filter(None, [query.get("fieldSelector"), f"metadata.name={name}"]))
            name = ""
        return (verb, rt, ns, name, sub)

    @staticmethod
    def _is_discovery(parts: list[str]) -> bool:
        return (parts == ["api"] or parts == ["api", "v1"] or parts == ["apis"]
                or (parts[0] == "apis" and len(parts) in (2, 3)))

    def _options(self, q: dict[str, str]) -> Options:
        dry = q.get("dryRun")
        if dry not in (None, "", "All"):
            raise bad_request(f'dryRun: Unsupported value: "{dry}": supported values: "All"')
        return Options(dry_run=dry == "All", field_validation=q.get("fieldValidation") or "Warn")

    def _written(self, code: int, obj: Any, opts: Options) -> None:
        self._send_json(code, obj, [("Warning", f'299 - "{w}"') for w in opts.warnings])

    def _send_read(self, rt: ResourceType, doc: dict[str, Any], q: dict[str, str], single: bool) -> None:
        """JSON, or a Table when the client asks for one (kubectl get)."""
        if not tables.TABLE_ACCEPT.search(self.headers.get("Accept", "")):
            self._send_json(200, doc)
            return
        items = [doc] if single else doc["items"]
        meta = None if single else {k: v for k, v in doc["metadata"].items() if k != "remainingItemCount"}
        self._send_json(200, tables.table(rt, items, meta, q.get("includeObject") or "Metadata"))

    def _discovery(self, parts: list[str]) -> None:
        doc: Any = None
        catalogue = self.server.fake.store.catalogue
        if parts == ["version"]:
            doc = resources.SERVER_VERSION
        elif parts in (["healthz"], ["livez"], ["readyz"]):
            data = b"ok"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        elif parts == ["api"]:
            doc = resources.core_versions()
        elif parts == ["api", "v1"]:
            doc = catalogue.resource_list("", "v1")
        elif parts == ["apis"]:
            doc = catalogue.group_list()
        elif len(parts) == 2 and parts[0] == "apis":
            doc = catalogue.group_doc(parts[1])
        elif len(parts) == 3 and parts[0] == "apis":
            doc = catalogue.resource_list(parts[1], parts[2])
        elif parts == ["openapi", "v2"] and _accepts_json(self.headers.get("Accept", "")):
            doc = tables.openapi_v2(catalogue.all())  # kubectl asks for protobuf only: a 404 says "no v2 here"
        elif parts == ["openapi", "v3"]:
            doc = tables.openapi_v3_index(catalogue.all())
        elif parts[:2] == ["openapi", "v3"] and len(parts) in (4, 5):
            gv = "/".join(parts[3:])
            if any(rt.group_version == gv for rt in catalogue.all()):
                doc = tables.openapi_v3(catalogue.all(), gv)
        if doc is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        self._send_json(200, doc)

    def _serve(self, verb: str, rt: ResourceType, ns: str | None, name: str, sub: str, q: dict[str, str]) -> None:
        store = self.server.fake.store
        namespace = ns or ""
        if verb == "watch":
            self._watch(rt, ns, q)
        elif verb == "list":
            listed = store.list(rt, ns, labels=q.get("labelSelector"), fields=q.get("fieldSelector"),
                                limit=_int(q.get("limit"), "limit"), continue_=q.get("continue"),
                                resource_version=q.get("resourceVersion"), match=q.get("resourceVersionMatch"))
            self._send_read(rt, listed, q, single=False)
        elif verb == "get":
            obj = store.get(rt, namespace, name)
            if sub == "status" or not sub:
                self._send_read(rt, obj, q, single=True)
        elif verb == "create":
            if name or (rt.namespaced and ns is None):
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested "
                               "resource")
            opts = self._options(q)
            self._written(201, store.create(rt, namespace, self._json_body(), keep_status=False, opts=opts), opts)
        elif verb == "update":
            opts = self._options(q)
            obj, created = store.update(rt, namespace, name, self._json_body(), subresource=sub, opts=opts)
            self._written(201 if created else 200, obj, opts)
        elif verb == "patch":
            opts = self._options(q)
            obj, created = store.patch(rt, namespace, name, self.headers.get("Content-Type", ""), self._body(),
                                       subresource=sub, field_manager=q.get("fieldManager"), opts=opts)
            self._written(201 if created else 200, obj, opts)
        elif verb == "delete":
            opts = self._options(q)
            options = self._json_body() or {}
            if q.get("gracePeriodSeconds"):
                options["gracePeriodSeconds"] = _int(q["gracePeriodSeconds"], "gracePeriodSeconds")
            if options.get("dryRun"):
                opts.dry_run = options["dryRun"] == ["All"]
            obj = store.delete(rt, namespace, name, options, opts=opts)
            if rt.delete_returns_object or (obj["metadata"].get("deletionTimestamp") and rt is not NS):
                self._send_json(200, obj)
            else:
                details: dict[str, Any] = {"name": name, "kind": rt.plural, "uid": obj["metadata"]["uid"]}
                if rt.group:
                    details["group"] = rt.group
                self._send_json(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                      "details": details})
        elif verb == "deletecollection":
            self._send_json(200, store.delete_collection(rt, ns, q.get("labelSelector"), q.get("fieldSelector"),
                                                         opts=self._options(q)))
        else:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    # --- watch ---

    def _watch(self, rt: ResourceType, ns: str | None, q: dict[str, str]) -> None:
        fake = self.server.fake
        timeout = _int(q.get("timeoutSeconds"), "timeoutSeconds") or fake.default_watch_timeout
        bookmarks = q.get("allowWatchBookmarks", "") in _TRUE
        send_initial = q.get("sendInitialEvents", "") in _TRUE
        w = fake.store.watch(rt, ns, labels=q.get("labelSelector"), fields=q.get("fieldSelector"),
                             resource_version=q.get("resourceVersion"), send_initial=send_initial,
                             bookmarks=bookmarks)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        deadline = time.monotonic() + timeout
        next_bookmark = time.monotonic() + fake.bookmark_interval
        ending = False
        try:
            while True:
                now = time.monotonic()
                if now >= deadline and not ending:
                    ending = True  # a last bookmark (if asked), then close cleanly
                    if bookmarks:
                        fake.store.bookmark(w, then_end=True)
                    else:
                        w.queue.put(Watch.END)
                if bookmarks and now >= next_bookmark and not ending:
                    fake.store.bookmark(w)
                    next_bookmark = now + fake.bookmark_interval
                wait = min(deadline, next_bookmark if bookmarks else deadline) - time.monotonic()
                try:
                    item = w.queue.get(timeout=max(wait, 0.0) if not ending else 1.0)
                except queue.Empty:
                    continue
                if item[0] == "END":
                    break
                if item[0] == "DROP":
                    if item[1]:
                        self.close_connection = True
                        with contextlib.suppress(OSError):
                            self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    break
                _, type_, obj = item
                if type_ == "BOOKMARK" and not bookmarks:
                    continue
                self._chunk(json.dumps({"type": type_, "object": obj}, separators=(",", ":")).encode() + b"\n")
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True
        finally:
            fake.store.close_watch(w)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))


def _accepts_json(accept: str) -> bool:
    return not accept or any(m.split(";")[0].strip() in ("application/json", "*/*", "application/*")
                             for m in accept.split(","))


def _int(value: str | None, what: str) -> int:
    if value in (None, ""):
        return 0
    try:
        return int(value)
    except ValueError:
        raise bad_request(f"{what}: invalid value {value!r}") from None


class FakeKube:
    """A fake kube-apiserver for tests: real HTTP and JSON, one process, state in memory.

    The in-process helpers (`create`, `get`, `list`, `patch`, `update`, `delete`) act on the same state and
    produce the same watch events as API requests; `create` keeps a given `status` (as if a kubelet or
    controller had already reported it), where a POST over HTTP drops it as the real server does.
    """

    def __init__(self, *, bookmark_interval: float = 1.0, default_watch_timeout: int = 1800,
                 crds: Iterable[str | Path | dict[str, Any]] = ()) -> None:
        self.store = Store()
        self.authorize = False  # True: the stored Roles, ClusterRoles and bindings decide (403 otherwise)
        self.tokens: dict[str, rbac.User] = {}
        self.denied: list[str] = []  # what authorization refused, "user: verb resource ..."
        self.bookmark_interval = bookmark_interval
        self.default_watch_timeout = default_watch_timeout
        self.requests: list[Request] = []
        self.server_errors: list[str] = []  # tracebacks of requests the fake failed to handle (its own bugs)
        self.url = ""
        self._failures: list[_Failure] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.install_crds(*crds)

    # --- lifecycle ---

    def start(self) -> str:
        """Listen on 127.0.0.1, an ephemeral port; returns the base URL."""
        if self._server is not None:
            return self.url
        self._server = _Server(self)
        port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fakekube", daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """End every watch, cut every connection, and wait for every server thread."""
        server, self._server = self._server, None
        if server is None:
            return
        self.store.drop_watches(abrupt=False)
        server.shutdown()
        with server.conn_lock:
            conns = list(server.connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> FakeKube:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client_config(self, token: str | None = None) -> kubernetes.client.Configuration:
        config = kubernetes.client.Configuration()
        config.host = self.url
        if token:
            config.api_key = {"BearerToken": token}
            config.api_key_prefix = {"BearerToken": "Bearer"}
        return config

    def api_client(self, token: str | None = None) -> kubernetes.client.ApiClient:
        """A client of this server; with `token` it authenticates as that token's user (see `add_user`)."""
        return kubernetes.client.ApiClient(self.client_config(token))

    def write_kubeconfig(self, path: str | Path, *, context: str = "fakekube", namespace: str | None = None,
                         token: str | None = None) -> Path:
        """A kubeconfig file pointing at this server (with `token` as the user's bearer token, if given)."""
        ctx: dict[str, Any] = {"cluster": "fakekube", "user": "fakekube"}
        if namespace:
            ctx["namespace"] = namespace
        doc = {"apiVersion": "v1", "kind": "Config", "current-context": context,
               "clusters": [{"name": "fakekube", "cluster": {"server": self.url}}],
               "users": [{"name": "fakekube", "user": {"token": token} if token else {}}],
               "contexts": [{"name": context, "context": ctx}]}
        path = Path(path)
        path.write_text(yaml.safe_dump(doc))
        return path

    # --- authentication and authorization ---

    def add_user(self, token: str, user: str, groups: Iterable[str] = ()) -> str:
        """Let bearer `token` authenticate as `user` (in `groups` and system:authenticated); returns the token."""
        self.tokens[token] = rbac.User(user, (*groups, rbac.AUTHENTICATED))
        return token

    def service_account_token(self, namespace: str, name: str) -> str:
        """A token for ServiceAccount `namespace`/`name` (as a projected token would authenticate it)."""
        token = f"sa-{namespace}-{name}"
        self.tokens[token] = rbac.User.service_account(namespace, name)
        return token

    def _deny(self, user: str, a: rbac.Attributes) -> None:
        with self._lock:
            self.denied.append(f"{user}: {a.verb} {a.resource}{'/' + a.subresource if a.subresource else ''}"
                               f"{' ' + a.name if a.name else ''} in {a.namespace or '(cluster)'}"
                               f"{' (' + a.group + ')' if a.group else ''}")

    # --- CRDs ---

    def install_crds(self, *crds: str | Path | dict[str, Any]) -> None:
        """Create CustomResourceDefinitions (objects, or YAML files / directories of them) as `kubectl apply`
        would; their kinds are served from then on."""
        for crd in crds:
            if isinstance(crd, dict):
                self.create(crd)
                continue
            path = Path(crd)
            for file in sorted(path.glob("*.yaml")) if path.is_dir() else [path]:
                for doc in yaml.safe_load_all(file.read_text(encoding="utf-8")):
                    if doc:
                        self.create(doc)

    # --- in-process helpers ---

    def resource(self, kind: str, api_version: str | None = None) -> ResourceType:
        """A kind ("Pod"), a plural ("pods", "deployments.apps"), or (api_version, kind); a 404 ApiError for a
        kind not served (a custom resource whose CRD is not installed)."""
        catalogue = self.store.catalogue
        rt = catalogue.resolve(api_version, kind) if api_version else catalogue.find(kind)
        if rt is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource "
                           f"({api_version + ' ' if api_version else ''}{kind})")
        return rt

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        rt = self.resource(obj["kind"], obj.get("apiVersion"))
        ns = (obj.get("metadata") or {}).get("namespace") or ("default" if rt.namespaced else "")
        return self.store.create(rt, ns, obj, keep_status=True)

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The object, or None when there is none."""
        try:
            return self.store.get(self.resource(kind), namespace or "", name)
        except ApiError as err:
            if err.code == 404:
                return None
            raise

    def list(self, kind: str, namespace: str | None = None, *, labels: str | None = None) -> list[dict[str, Any]]:
        rt = self.resource(kind)
        items: list[dict[str, Any]] = self.store.list(rt, namespace, labels=labels)["items"]
        for item in items:
            item["apiVersion"], item["kind"] = rt.group_version, rt.kind
        return items

    def update(self, obj: dict[str, Any], *, subresource: str = "") -> dict[str, Any]:
        """PUT semantics (a stale metadata.resourceVersion raises a 409 ApiError); status is kept."""
        rt = self.resource(obj["kind"], obj.get("apiVersion"))
        meta = obj["metadata"]
        return self.store.update(rt, meta.get("namespace") or "", meta["name"], obj, subresource=subresource,
                                 from_api=False)[0]

    def patch(self, kind: str, namespace: str | None, name: str, patch: Any, *, type: str = "merge",
              subresource: str = "") -> dict[str, Any]:
        """`type`: merge, strategic or json (a list of operations)."""
        media = {"merge": "application/merge-patch+json", "strategic": "application/strategic-merge-patch+json",
                 "json": "application/json-patch+json"}[type]
        return self.store.patch(self.resource(kind), namespace or "", name, media, json.dumps(patch).encode(),
                                subresource=subresource, from_api=False)[0]

    def delete(self, kind: str, namespace: str | None, name: str, *,
               grace_period: int | None = None) -> dict[str, Any]:
        """DELETE semantics: a pod on a node only starts terminating (see `finish_deletion`), unless
        `grace_period` is 0."""
        options = {} if grace_period is None else {"gracePeriodSeconds": grace_period}
        return self.store.delete(self.resource(kind), namespace or "", name, options)

    # --- a kubelet's part in a pod's life ---

    def pod_started(self, namespace: str, name: str, ips: Iterable[str], *, phase: str = "Running") -> dict[str, Any]:
        """What the kubelet reports once the sandbox is up: `status.podIP(s)` and the phase, through /status."""
        addresses = list(ips)
        status: dict[str, Any] = {"phase": phase, "podIPs": [{"ip": ip} for ip in addresses]}
        if addresses:
            status["podIP"] = addresses[0]
        return self.patch("Pod", namespace, name, {"status": status}, subresource="status")

    def finish_deletion(self, namespace: str, name: str) -> None:
        """The kubelet's last word on a terminating pod (containers stopped): a DELETE with grace period 0."""
        pod = self.get("Pod", namespace, name)
        if pod is None or not pod["metadata"].get("deletionTimestamp"):
            raise ApiError(409, "Conflict", f'pod "{name}" is not terminating')
        self.store.delete(PODS, namespace, name, {"gracePeriodSeconds": 0})

    @property
    def resource_version(self) -> str:
        return str(self.store.rv)

    def compact(self) -> None:
        """Forget the change history: watches from an older resourceVersion get a 410 Expired ERROR."""
        self.store.compact()

    def drop_watches(self, *, abrupt: bool = False) -> int:
        """Close every open watch stream; returns how many. Clean (the chunked stream ends, as when the
        server ends a watch) or `abrupt` (the TCP connection is cut mid-stream)."""
        return self.store.drop_watches(abrupt)

    def open_watches(self) -> int:
        with self.store.lock:
            return len(self.store.watches)

    def wait_for_watches(self, count: int = 1, timeout: float = 5.0) -> None:
        """Block until at least `count` watches are open (so events a test makes next are seen)."""
        deadline = time.monotonic() + timeout
        while self.open_watches() < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.open_watches()} watches open, wanted {count}")
            time.sleep(0.01)

    # --- fault injection and counters ---

    def fail_next(self, n: int = 1, status: int = 500, *, verb: str | None = None,
                  resource: str | None = None) -> None:
        """Answer the next `n` matching requests (any, or only `verb`/`resource` like "patch",
        "deployments.apps") with a `Status` of HTTP `status` (403 reads as Forbidden, 429 carries Retry-After)."""
        with self._lock:
            self._failures.append(_Failure(n, status, verb, resource))

    def _take_failure(self, verb: str, resource: str) -> int | None:
        with self._lock:
            for f in self._failures:
                if (f.verb in (None, verb)) and (f.resource in (None, resource)):
                    f.remaining -= 1
                    if f.remaining <= 0:
                        self._failures.remove(f)
                    return f.code
        return None

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def count(self, verb: str | None = None, resource: str | None = None, *, method: str | None = None) -> int:
        """How many requests matched (a verb like "patch", a resource like "pods" or "pods/status")."""
        with self._lock:
            return sum(1 for r in self.requests if verb in (None, r.verb) and resource in (None, r.resource)
                       and method in (None, r.method))

    def counters(self) -> collections.Counter[tuple[str, str]]:
        """Requests by (verb, resource)."""
        with self._lock:
            return collections.Counter((r.verb, r.resource) for r in self.requests)

    def reset_counters(self) -> None:
        with self._lock:
            self.requests.clear()

    def objects(self) -> Iterator[dict[str, Any]]:
        for _, obj in self.store.all_objects():
            yield obj
