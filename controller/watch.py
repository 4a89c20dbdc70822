"""The cluster cache: one informer per input kind (list, then watch from the list's resourceVersion; relist on
410 Gone; reconnect with backoff; bookmarks), on the official `kubernetes` client's transport. Objects are
kept as the API's JSON, which is what the loader reads, and every change bumps a version the controller and
the agent wait on. One implementation serves both.

Unknown is never absent: a kind is *synced* once a LIST of it has succeeded, and again unsynced from the moment
its watch says a relist is needed (410 Gone) until that relist succeeds. `synced` is True only while every kind
is; until then the controller and the agent act on nothing (`unsynced` says which kinds and why, for logs,
/healthz and the `cache_synced` metric). A failed LIST never empties a kind: what was listed before stays."""

from __future__ import annotations

import collections
import contextlib
import copy
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes.watch.watch import iter_resp_lines

from contracts.loader import Document
from controller.metrics import Metrics
from controller.timing import SYSTEM, Backoff, Clock

log = logging.getLogger("epgbridge.watch")


@dataclass(frozen=True, slots=True)
class Kind:
    kind: str
    path: str  # the list/watch path, across namespaces
    field_selector: str = ""  # e.g. "metadata.name=node-1": only these objects (the agent's own Node)

    def selector(self) -> list[tuple[str, Any]]:
        return [("fieldSelector", self.field_selector)] if self.field_selector else []

    @property
    def api_version(self) -> str:
        parts = self.path.strip("/").split("/")
        return parts[1] if parts[0] == "api" else f"{parts[1]}/{parts[2]}"


KINDS = (
    Kind("Namespace", "/api/v1/namespaces"),
    Kind("Pod", "/api/v1/pods"),
    Kind("Deployment", "/apis/apps/v1/deployments"),
    Kind("StatefulSet", "/apis/apps/v1/statefulsets"),
    Kind("DaemonSet", "/apis/apps/v1/daemonsets"),
    Kind("ReplicaSet", "/apis/apps/v1/replicasets"),
    Kind("NetworkPolicy", "/apis/networking.k8s.io/v1/networkpolicies"),
    Kind("EndpointGroup", "/apis/epgbridge.io/v1alpha1/endpointgroups"),
    Kind("Contract", "/apis/epgbridge.io/v1alpha1/contracts"),
)


def node_kind(node: str) -> Kind:
    """One Node, the agent's own: its pod address blocks (spec.podCIDRs)."""
    return Kind("Node", "/api/v1/nodes", f"metadata.name={node}")


class Gone(Exception):
    """The watch's resourceVersion is too old (410): relist."""


class ListFailed(Exception):
    """A one-off read (`ClusterCache.list_once`) could not list `kind`; `cause` says why."""

    def __init__(self, kind: Kind, cause: Exception) -> None:
        super().__init__(f"listing {kind.kind} ({kind.path}) failed: {cause}")
        self.kind = kind
        self.cause = cause


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace") or "", meta.get("name") or ""


LOG_SIZE = 4096  # changes remembered for incremental readers (`changes`)


@dataclass
class KindState:
    """Where one kind's informer stands: listed since start (`listed`), whether its watch needs a relist
    (`relisting`, after 410 Gone), and the last error talking to the API server about it."""

    listed: bool = False
    relisting: bool = False
    error: str | None = None

    @property
    def synced(self) -> bool:
        return self.listed and not self.relisting

    def reason(self) -> str:
        what = "relisting after its watch expired (410 Gone)" if self.relisting else "not listed yet"
        return f"{what}: {self.error}" if self.error else what


class ClusterCache:
    """Every object of every kind, as last seen; `version` increases on each change."""

    def __init__(self, api: k8s.ApiClient, kinds: tuple[Kind, ...] = KINDS, *, watch_timeout: int = 300,
                 backoff_max: float = 30.0, clock: Clock = SYSTEM, metrics: Metrics | None = None) -> None:
        self.api = api
        self.kinds = kinds
        self.watch_timeout = watch_timeout
        self.backoff_max = backoff_max
        self.clock = clock
        self.metrics = metrics
        if metrics is not None:
            metrics.describe("cache_synced", "gauge", "1 when the kind's informer has listed (and needs no relist)")
            metrics.describe("watch_errors_total", "counter", "failed lists and watches, by kind")
            for k in kinds:
                metrics.set("cache_synced", 0.0, kind=k.kind)
        self._objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {k.kind: {} for k in kinds}
        self._documents: dict[int, tuple[dict[str, Any], Document]] = {}
        self._api_versions = {k.kind: k.api_version for k in kinds}
        # What each version changed: (version, kind, key); key None: the whole kind was listed again.
        self._log: collections.deque[tuple[int, str, tuple[str, str] | None]] = collections.deque(maxlen=LOG_SIZE)
        self._state = {k.kind: KindState() for k in kinds}
        self._version = 0
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._responses: set[Any] = set()
        self.listeners: list[Callable[[str, str, dict[str, Any]], None]] = []
        self.on_change: list[Callable[[], None]] = []  # after every change of objects or of sync state
        self.stats = {"lists": 0, "watches": 0, "events": 0, "relists_410": 0, "errors": 0}

    # ---- lifecycle

    def start(self) -> None:
        for kind in self.kinds:
            t = threading.Thread(target=self._run, args=(kind,), name=f"informer-{kind.kind}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for resp in list(self._responses):
            with contextlib.suppress(Exception):  # the socket may already be gone
                resp.shutdown() if hasattr(resp, "shutdown") else resp.close()
        with self._changed:
            self._changed.notify_all()
        for t in self._threads:
            t.join(timeout=5)

    @property
    def synced(self) -> bool:
        """Every kind listed since start and since its last relist: only then may anyone act on the cache."""
        with self._changed:
            return all(st.synced for st in self._state.values())

    def unsynced(self) -> dict[str, str]:
        """Each kind that is not synced, and why (in the kinds' order)."""
        with self._changed:
            return {kind: st.reason() for kind, st in self._state.items() if not st.synced}

    def failing(self) -> bool:
        """Some kind is unsynced for a reason (a failed list, a relist), not merely still listing at start."""
        with self._changed:
            return any(not st.synced and (st.error or st.relisting) for st in self._state.values())

    def describe_unsynced(self) -> str:
        """One line for logs, /healthz and conditions, e.g. `NetworkPolicy (not listed yet: 503 ...)`."""
        return "; ".join(f"{kind} ({why})" for kind, why in self.unsynced().items())

    def _notify(self) -> None:
        for callback in self.on_change:
            callback()

    def _sync_state(self, kind: str, *, listed: bool | None = None, relisting: bool | None = None,
                    error: str | None = None, failed: bool = False) -> None:
        with self._changed:
            st = self._state[kind]
            before, said = st.synced, st.error
            if listed is not None:
                st.listed = listed
            if relisting is not None:
                st.relisting = relisting
            st.error = error
            after = st.synced
            if after != before:
                self._version += 1
                self._log.append((self._version, kind, None))
            self._changed.notify_all()
        if self.metrics is not None:
            self.metrics.set("cache_synced", 1.0 if after else 0.0, kind=kind)
            if failed:
                self.metrics.inc("watch_errors_total", kind=kind)
        if after != before and after:
            log.info("%s: synced", kind)
        if after != before or (not after and error != said):
            self._notify()  # the loops act, or report why they do not

    def wait_synced(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not self.synced and not self._stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return self.synced

    @property
    def version(self) -> int:
        return self._version

    # ---- reading

    def documents(self) -> list[Document]:
        """A consistent copy of every object, as loader documents."""
        with self._changed:
            items = [(kind, dict(objs)) for kind, objs in self._objects.items()]
        docs = []
        memo: dict[int, tuple[dict[str, Any], Document]] = {}
        for kind, objs in items:
            for (ns, name), obj in sorted(objs.items()):
                # The same object gives the same document (so the loader knows it has seen it).
                doc = self._document(kind, ns, name, obj)
                memo[id(obj)] = (obj, doc)
                docs.append(doc)
        self._documents = memo
        return docs

    def changes(self, since: int) -> tuple[int, dict[tuple[str, str, str], Document | None] | None]:
        """The current version and what changed after version `since`: (kind, namespace, name) -> the
        object's document now, or None if it is gone. None instead of the map when the log does not reach back
        that far or a kind was listed again (then only reading everything is right)."""
        with self._changed:
            version = self._version
            if since == version:
                return version, {}
            if not self._log or self._log[0][0] > since + 1:
                return version, None
            keys: set[tuple[str, str, str]] = set()
            for v, kind, key in reversed(self._log):
                if v <= since:
                    break
                if key is None:
                    return version, None
                keys.add((kind, *key))
            out: dict[tuple[str, str, str], Document | None] = {}
            for kind, ns, name in keys:
                obj = self._objects[kind].get((ns, name))
                out[(kind, ns, name)] = None if obj is None else self._document(kind, ns, name, obj)
            return version, out

    def _document(self, kind: str, ns: str, name: str, obj: dict[str, Any]) -> Document:
        known = self._documents.get(id(obj))
        if known is None or known[0] is not obj:
            body = obj if obj.get("kind") else {**obj, "kind": kind, "apiVersion": self._api_versions[kind]}
            known = (obj, Document(f"{kind.lower()} {ns + '/' if ns else ''}{name}", body))
        return known[1]

    def objects(self, kind: str) -> list[dict[str, Any]]:
        """A copy of the list of one kind's objects, as last seen."""
        with self._changed:
            return list(self._objects.get(kind, {}).values())

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self._changed:
            return self._objects.get(kind, {}).get((namespace, name))

    def count(self) -> int:
        with self._changed:
            return sum(len(v) for v in self._objects.values())

    def list_once(self) -> None:
        """List every kind once, through the informers' list code, without watching: a one-off read of the
        cluster (`epgbridge snapshot`, `matrix --kubeconfig`). Raises ListFailed for the first kind that cannot
        be listed: a read that failed is never an empty cluster."""
        for kind in self.kinds:
            try:
                self._list(kind)
            except Exception as exc:
                raise ListFailed(kind, exc) from exc

    # ---- informer loop

    def _apply(self, kind: str, event: str, obj: dict[str, Any]) -> None:
        with self._changed:
            store = self._objects[kind]
            if event == "DELETED":
                store.pop(_key(obj), None)
            else:
                store[_key(obj)] = obj
            self._version += 1
            self._log.append((self._version, kind, _key(obj)))
            self._changed.notify_all()
        for listener in self.listeners:
            listener(kind, event, obj)
        self._notify()

    def _replace(self, kind: str, items: list[dict[str, Any]]) -> None:
        fresh = {_key(o): o for o in items}
        with self._changed:
            old = self._objects[kind]
            gone = [o for k, o in old.items() if k not in fresh]
            changed = [o for k, o in fresh.items()
                       if old.get(k, {}).get("metadata", {}).get("resourceVersion")
                       != o.get("metadata", {}).get("resourceVersion")]
            self._objects[kind] = fresh
            self._version += 1
            self._log.append((self._version, kind, None))
            self._changed.notify_all()
        for listener in self.listeners:
            for o in gone:
                listener(kind, "DELETED", o)
            for o in changed:
                listener(kind, "MODIFIED", o)
        self._sync_state(kind, listed=True, relisting=False)
        self._notify()

    def _request(self, path: str, query: list[tuple[str, Any]], timeout: Any) -> Any:
        method, url, headers, body, post = self.api.param_serialize(
            method="GET", resource_path=path, query_params=query,
            header_params={"Accept": "application/json"}, auth_settings=["BearerToken"])
        resp = self.api.call_api(method, url, headers, body, post, _request_timeout=timeout)
        if not 200 <= resp.status < 300:
            data = resp.read()
            if resp.status == 410:
                raise Gone()
            raise k8s.ApiException(status=resp.status, reason=resp.reason, body=data)
        return resp

    def _list(self, kind: Kind) -> str:
        items: list[dict[str, Any]] = []
        cont = None
        while True:
            query: list[tuple[str, Any]] = [("limit", 500), *kind.selector()]
            if cont:
                query.append(("continue", cont))
            data = json.loads(self._request(kind.path, query, (5, 60)).read())
            items.extend(data.get("items") or [])
            meta = data.get("metadata") or {}
            cont = meta.get("continue")
            if not cont:
                break
        self.stats["lists"] += 1
        for item in items:  # list items carry no kind; the loader needs it
            item.setdefault("kind", kind.kind)
            item.setdefault("apiVersion", kind.api_version)
        self._replace(kind.kind, items)
        return str(meta.get("resourceVersion") or "")

    def _watch(self, kind: Kind, rv: str) -> Iterator[tuple[str, dict[str, Any]]]:
        query = [("watch", "true"), ("resourceVersion", rv), ("allowWatchBookmarks", "true"),
                 ("timeoutSeconds", self.watch_timeout), *kind.selector()]
        resp = self._request(kind.path, query, (5, self.watch_timeout + 30))
        raw = resp.response
        self._responses.add(raw)
        self.stats["watches"] += 1
        try:
            for line in iter_resp_lines(raw):
                if self._stop.is_set():
                    return
                if not line:
                    continue
                event = json.loads(line)
                yield event.get("type", ""), event.get("object") or {}
        finally:
            self._responses.discard(raw)
            raw.release_conn()

    def _run(self, kind: Kind) -> None:
        rv: str | None = None
        backoff = Backoff(0.2, self.backoff_max, jitter=0.5)
        while not self._stop.is_set():
            try:
                if rv is None:
                    rv = self._list(kind)
                for etype, obj in self._watch(kind, rv):
                    if etype == "ERROR":
                        if obj.get("code") == 410:
                            raise Gone()
                        raise k8s.ApiException(status=obj.get("code"), reason=obj.get("message"))
                    new_rv = (obj.get("metadata") or {}).get("resourceVersion")
                    if etype != "BOOKMARK":
                        obj.setdefault("kind", kind.kind)
                        obj.setdefault("apiVersion", kind.api_version)
                        self.stats["events"] += 1
                        self._apply(kind.kind, etype, obj)
                    if new_rv:
                        rv = str(new_rv)
                backoff.reset()
            except Gone:
                self.stats["relists_410"] += 1
                log.info("%s: resourceVersion %s expired (410); relisting", kind.kind, rv)
                self._sync_state(kind.kind, relisting=True)
                rv = None
            except Exception as exc:
                if self._stop.is_set():
                    return
                self.stats["errors"] += 1
                listing = rv is None
                problem = _short(exc) + (_hint(exc, kind) if listing else "")
                delay = backoff.next()
                if listing:
                    log.warning("%s: list failed (%s); the controller and agents act on nothing until it succeeds; "
                                "retrying in %.1fs", kind.kind, problem, delay)
                else:
                    log.warning("%s: watch failed (%s); retrying in %.1fs", kind.kind, problem, delay)
                self._sync_state(kind.kind, error=problem, failed=True)
                self.clock.wait(self._stop, delay)


def _hint(exc: Exception, kind: Kind) -> str:
    status = getattr(exc, "status", None)
    if status == 404 and kind.path.startswith("/apis/epgbridge.io/"):
        return " (are the CRDs installed? kubectl apply -f deploy/crds/)"
    if status in (401, 403):
        return " (does the service account's role allow list and watch? see deploy/rbac.yaml)"
    return ""


def single_attempt(api: k8s.ApiClient) -> k8s.ApiClient:
    """A client on `api`'s configuration without urllib3's retries, so that a request timeout bounds the whole
    call (writes and Lease calls: the loops decide themselves when to try again)."""
    config = copy.copy(api.configuration)
    config.retries = 0
    return k8s.ApiClient(config)


def describe_error(exc: BaseException) -> str:
    """One short line for an error talking to the API server: the Status message of an API error, the cause
    of a connection failure (without urllib3's wrapping), never a traceback."""
    if isinstance(exc, k8s.ApiException) and exc.status:
        message = ""
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            message = str(json.loads(exc.body).get("message") or "")
        return f"{exc.status} {exc.reason or ''}{': ' + message if message else ''}".strip()[:200]
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    text = re.sub(r"^(<[^>]*>: |None: )?(HTTPS?ConnectionPool\([^)]*\): )?", "", text)
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        return f"cannot connect to the API server: {text.rpartition('connection: ')[2]}"[:200]
    if isinstance(exc, urllib3.exceptions.TimeoutError):
        limit = re.sub(r"\d+\.\d+", lambda m: f"{float(m[0]):.1f}", text.rpartition("(")[2].rstrip(")"))
        return f"the API server did not answer in time ({limit})"[:200]
    return text[:200]


_short = describe_error
