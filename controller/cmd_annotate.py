"""`epgbridge annotate`: set, clear or show the EPG annotation of a namespace, workload or pod, in a live
cluster (a single-key merge patch of metadata.annotations) or in manifest files (-f); for a pod, also
its effective EPG and the layer each field came from, resolved by annotations.resolve."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from annotations.config import Config
from annotations.keys import EPG_ANNOTATION
from annotations.resolve import (
    AnnotationReader,
    Layer,
    Notice,
    Placement,
    TenancyGuard,
    WorkloadIndex,
    namespace_epg,
    place_pod,
)
from annotations.value import AnnotationError, format_epg_annotation, parse_epg_annotation
from contracts.loader import GROUP, Bad, Document, documents, load_cluster, load_cluster_lenient, parse_selector
from controller.snapshot import parse_text, snapshot_files
from epg.errors import EpgbridgeError
from epg.identity import EPGRef
from epg.kube import WORKLOAD_KINDS, Namespace, OwnerRef, Pod, Workload
from epg.text import clipped

NS_NAME_LABEL = "kubernetes.io/metadata.name"
MERGE_PATCH = "application/merge-patch+json"

# CLI kind -> (Kind, apiVersion, client method suffix)
KINDS: dict[str, tuple[str, str, str]] = {
    "namespace": ("Namespace", "v1", "namespace"),
    "deployment": ("Deployment", "apps/v1", "deployment"),
    "statefulset": ("StatefulSet", "apps/v1", "stateful_set"),
    "daemonset": ("DaemonSet", "apps/v1", "daemon_set"),
    "replicaset": ("ReplicaSet", "apps/v1", "replica_set"),
    "pod": ("Pod", "v1", "pod"),
}
CLI_KINDS = ("namespace", "deployment", "statefulset", "daemonset", "pod")
_BY_KIND = {kind: cli for cli, (kind, _, _) in KINDS.items()}

EXAMPLES = f"""\
Without --epg or --clear, shows the annotation; for a pod, also its effective EPG and the layer
(pod, workload, namespace, cluster default) each field comes from.

A live change is a JSON merge patch of the one annotation {EPG_ANNOTATION}: it never
overwrites other annotations or another writer's concurrent change.

With -f, manifests are read (and edited) offline instead: -f takes files, directories and - (stdin) like
every other command and may repeat, so a pod resolves with its namespace and workloads from other files (and
a kind: Config among them). The file holding the object is rewritten (from -: the edited documents go to
stdout). Comments and formatting are NOT preserved (the YAML is re-emitted).

examples:
  epgbridge annotate deployment web -n shop --epg kube/shop/web
  epgbridge annotate namespace shop --epg kube/shop/shop-default
  epgbridge annotate pod web-6d4cf56db6-7xkq2 -n shop           # show the effective EPG
  epgbridge annotate statefulset db -n shop --clear
  epgbridge annotate deployment web -n shop --epg kube/shop/web -f deploy/shop.yaml
  epgbridge annotate pod web-6d4cf56db6-7xkq2 -n storefront -f examples/cluster
  epgbridge annotate pod api-0 -n shop --kubeconfig ~/.kube/lab --context lab
"""


def register(subparsers: Any) -> None:
    """Add `annotate` to the `epgbridge` subcommands."""
    p = subparsers.add_parser("annotate", help="set, clear or show the EPG annotation of an object",
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              description="Set, clear or show the EPG annotation of a namespace, workload or pod.",
                              epilog=EXAMPLES)
    p.add_argument("kind", choices=CLI_KINDS, metavar="{" + "|".join(CLI_KINDS) + "}", help="the object's kind")
    p.add_argument("name", metavar="NAME", help="the object's name")
    p.add_argument("-n", "--namespace", metavar="NS",
                   help="the object's namespace (default: the kubeconfig context's, else default)")
    action = p.add_mutually_exclusive_group()
    action.add_argument("--epg", metavar="TENANT/AP/EPG", help="set the annotation to this EPG")
    action.add_argument("--clear", action="store_true", help="remove the annotation (inherit from the next layer)")
    p.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    p.add_argument("--context", metavar="CTX", help="kubeconfig context (default: the current context)")
    p.add_argument("-f", "--filename", dest="files", action="append", metavar="PATH",
                   help="read (and edit) manifests instead of the cluster: a file, a directory or - (stdin); "
                   "repeat to combine (comments and formatting of an edited file are not preserved)")
    p.add_argument("--config", metavar="FILE",
                   help="the epgbridge.io Config to resolve and check with (default: the epgbridge-config ConfigMap "
                   "in epgbridge-system, as deploy/ installs it; with -f, a Config among the files)")
    p.set_defaults(func=cmd_annotate, annotate_parser=p)


def cmd_annotate(args: argparse.Namespace) -> int:
    kind = KINDS[args.kind][0]
    if kind == "Namespace" and args.namespace:
        _usage(args, "-n/--namespace does not apply to a namespace")
    if args.files and (args.kubeconfig or args.context):
        _usage(args, "-f edits a file offline; --kubeconfig and --context do not apply")
    value: str | None = None
    ref: EPGRef | None = None
    if args.epg is not None:
        try:
            ref = EPGRef.parse(args.epg)
        except ValueError as exc:
            raise EpgbridgeError(f"--epg: {exc}") from None
        value = format_epg_annotation(ref)
    source: _Source = _FileSource(args.files) if args.files else _ApiSource(args.kubeconfig, args.context)
    ns = "" if kind == "Namespace" else (args.namespace or source.default_namespace())
    target = _Target(kind, ns, args.name)
    if ref is not None:
        _check_tenancy(source, target, ref, args.config)
    if args.epg is not None or args.clear:
        where = source.set_annotation(target, value)
        # The edited documents of stdin go to stdout: then the message goes to stderr.
        out = sys.stderr if where == _STDIN else sys.stdout
        where = f" in {where}" if where else ""
        if value is None:
            print(f"{target}{where}: {EPG_ANNOTATION} removed", file=out)
        else:
            print(f"{target}{where}: {EPG_ANNOTATION}={value}", file=out)
        return 0
    _show(source, target, args.config)
    return 0


def _usage(args: argparse.Namespace, message: str) -> None:
    parser: argparse.ArgumentParser = args.annotate_parser
    parser.error(message)  # exits 2 with the usage line, as any other usage error


@dataclass(frozen=True)
class _Target:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return clipped(f"{self.kind.lower()} {self.namespace + '/' if self.namespace else ''}{self.name}")


class _Source:
    """Where objects come from: the cluster or a manifest file. Objects are Kubernetes-shaped dicts."""

    def default_namespace(self) -> str:
        return "default"

    def get(self, target: _Target) -> dict[str, Any] | None:
        raise NotImplementedError

    def list_workloads(self, namespace: str) -> list[dict[str, Any]]:
        raise NotImplementedError

    def set_annotation(self, target: _Target, value: str | None) -> str:
        """Set or clear the annotation; returns where (a file, <stdin>), or "" for the cluster."""
        raise NotImplementedError

    def config(self) -> Config:
        """The Config the controller uses; raises _Unknown when it cannot be read here."""
        return Config()

    def endpoint_groups(self) -> list[Any]:
        """The EndpointGroups as the controller sees them; raises _Unknown when they cannot be read here."""
        raise NotImplementedError

    def must_get(self, target: _Target) -> dict[str, Any]:
        obj = self.get(target)
        if obj is None:
            raise EpgbridgeError(f"{target} not found")
        return obj


class _Unknown(Exception):
    """What the tenancy guard needs is not readable here."""


# --- the live cluster ---


class _ApiSource(_Source):
    def __init__(self, kubeconfig: str | None, context: str | None) -> None:
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        # $KUBECONFIG may list several files (path:path); the client merges them as kubectl does.
        path = os.path.expanduser(kubeconfig) if kubeconfig else (
            os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config"))
        self._namespace = "default"
        try:
            self.api = config.new_client_from_config(config_file=path, context=context, persist_config=False)
            contexts, active = config.list_kube_config_contexts(config_file=path)
            chosen = next((c for c in contexts if c["name"] == context), active) if context else active
            self._namespace = (chosen or {}).get("context", {}).get("namespace") or "default"
        except (ConfigException, OSError) as exc:
            raise EpgbridgeError(f"cannot load kubeconfig {path}: {exc}") from None
        self.host = self.api.configuration.host
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)

    def default_namespace(self) -> str:
        return self._namespace

    def _call(self, target: _Target | str, fn: Callable[[], Any]) -> Any:
        import urllib3
        from kubernetes.client.exceptions import ApiException

        try:
            return fn()
        except ApiException as exc:
            message = _status_message(exc)
            if exc.status == 404:
                raise _NotFound(f"{target} not found") from None
            if exc.status == 403:
                raise _Forbidden(f"forbidden: {message}") from None
            if exc.status == 401:
                raise EpgbridgeError(f"unauthorized: check the credentials in the kubeconfig ({message})") from None
            raise EpgbridgeError(f"{target}: the API server answered {exc.status}: {message}") from None
        except urllib3.exceptions.HTTPError as exc:
            reason = getattr(exc, "reason", None) or exc
            text = "connection refused" if "refused" in str(reason).lower() else str(reason)
            raise EpgbridgeError(f"cannot reach the Kubernetes API server at {self.host}: {text}") from None

    def _method(self, verb: str, kind: str) -> Callable[..., Any]:
        _, api_version, suffix = KINDS[_BY_KIND[kind]]
        api = self.core if api_version == "v1" else self.apps
        scope = "" if kind == "Namespace" else "namespaced_"
        method: Callable[..., Any] = getattr(api, f"{verb}_{scope}{suffix}")
        return method

    def _args(self, target: _Target) -> tuple[str, ...]:
        return (target.name,) if target.kind == "Namespace" else (target.name, target.namespace)

    def get(self, target: _Target) -> dict[str, Any] | None:
        read = self._method("read", target.kind)
        try:
            resp = self._call(target, lambda: read(*self._args(target), _preload_content=False))
        except _NotFound:
            return None
        doc: dict[str, Any] = json.loads(resp.data)
        return doc

    def list_workloads(self, namespace: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for kind in WORKLOAD_KINDS:
            lister = self._method("list", kind)
            resp = self._call(f"{kind.lower()}s in namespace {namespace}",
                              lambda lister=lister: lister(namespace, _preload_content=False))  # type: ignore[misc]
            for item in json.loads(resp.data).get("items") or []:
                out.append({**item, "kind": kind})
        return out

    def set_annotation(self, target: _Target, value: str | None) -> str:
        # Only our key: a merge patch never drops another writer's annotation, so no read-modify-write.
        body = {"metadata": {"annotations": {EPG_ANNOTATION: value}}}
        patch = self._method("patch", target.kind)
        self._call(target, lambda: patch(*self._args(target), body, _content_type=MERGE_PATCH,
                                         _preload_content=False))
        return ""


    def config(self) -> Config:
        where = f"configmap {CONFIG_MAP[0]}/{CONFIG_MAP[1]}"
        try:
            found = self._call(where, lambda: self.core.read_namespaced_config_map(
                CONFIG_MAP[1], CONFIG_MAP[0], _preload_content=False))
        except _NotFound:
            return Config()  # not deployed: the built-in defaults
        except _Forbidden as exc:
            raise _Unknown(f"cannot read the Config in {where}: {exc}") from None
        text = (json.loads(found.data).get("data") or {}).get("config.yaml")
        return load_cluster(parse_text(where, text)).config if isinstance(text, str) else Config()

    def endpoint_groups(self) -> list[Any]:
        from kubernetes import client

        custom = client.CustomObjectsApi(self.api)
        try:
            groups = self._call("endpointgroups.epgbridge.io", lambda: custom.list_cluster_custom_object(
                "epgbridge.io", "v1alpha1", "endpointgroups", _preload_content=False))
        except _NotFound:
            return []  # the CRD is not installed: no EPG is declared
        except _Forbidden as exc:
            raise _Unknown(f"cannot list EndpointGroups: {exc}") from None
        return [{**item, "apiVersion": "epgbridge.io/v1alpha1", "kind": "EndpointGroup"}
                for item in json.loads(groups.data).get("items") or []]


class _NotFound(EpgbridgeError):
    pass


class _Forbidden(EpgbridgeError):
    pass


def _status_message(exc: Any) -> str:
    try:
        status = json.loads(exc.body)
        return str(status.get("message") or exc.reason)
    except (TypeError, ValueError, AttributeError):
        return str(exc.reason)


# --- manifest files ---


_STDIN = "<stdin>"


class _FileSource(_Source):
    """Manifests: every file of every -f path (directories expanded, `-` is stdin), kept per file so that an edit
    rewrites only the file holding the object."""

    def __init__(self, paths: list[str]) -> None:
        self.files: dict[str, list[Any]] = {}  # file (or <stdin>) -> its top-level documents
        for path in paths:
            if path == "-":
                self.files[_STDIN] = self._parse(_STDIN, sys.stdin.read(), False)
                continue
            if not Path(path).exists():
                raise EpgbridgeError(f"cannot read {path}: no such file or directory")
            found = snapshot_files(path)
            if not found:
                raise EpgbridgeError(f"{path}: no *.yaml, *.yml or *.json files in this directory")
            for f in found:
                try:
                    text = f.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as exc:
                    reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                    raise EpgbridgeError(f"cannot read {f}: {reason}") from None
                self.files[str(f)] = self._parse(str(f), text, f.suffix == ".json")

    @staticmethod
    def _parse(origin: str, text: str, is_json: bool) -> list[Any]:
        return [d.body for d in parse_text(origin, text, is_json)]  # InvalidInput: one line per problem

    def _objects(self, docs: list[Any] | None = None) -> Iterator[dict[str, Any]]:
        for doc in (docs if docs is not None else [d for ds in self.files.values() for d in ds]):
            if not isinstance(doc, dict):
                continue
            if str(doc.get("kind", "")).endswith("List") and isinstance(doc.get("items"), list):
                yield from (item for item in doc["items"] if isinstance(item, dict))
            else:
                yield doc

    @staticmethod
    def _ident(obj: dict[str, Any]) -> tuple[str, str, str]:
        kind = str(obj.get("kind", ""))
        raw = obj.get("metadata")
        meta: dict[str, Any] = raw if isinstance(raw, dict) else {}
        ns = "" if kind in ("Namespace", "Config") else str(meta.get("namespace") or "default")
        return kind, ns, str(meta.get("name", ""))

    def _where(self) -> str:
        return ", ".join(self.files) or "the files"

    def _find(self, target: _Target) -> tuple[str, dict[str, Any]] | None:
        want = (target.kind, target.namespace, target.name)
        hits = [(f, o) for f, docs in self.files.items() for o in self._objects(docs) if self._ident(o) == want]
        if len(hits) > 1:
            raise EpgbridgeError(f"{target} is defined more than once: in {', '.join(f for f, _ in hits)}")
        return hits[0] if hits else None

    def get(self, target: _Target) -> dict[str, Any] | None:
        hit = self._find(target)
        return hit[1] if hit else None

    def must_get(self, target: _Target) -> dict[str, Any]:
        obj = self.get(target)
        if obj is None:
            raise EpgbridgeError(f"{target} not found in {self._where()}")
        return obj

    def config(self) -> Config:
        """The kind: Config among the files, as the loader reads it (the built-in defaults without one)."""
        docs = [Document(f"{f}#{i}", o) for f, ds in self.files.items() for i, o in enumerate(self._objects(ds), 1)
                if o.get("kind") == "Config" and o.get("apiVersion") == GROUP]
        return load_cluster(docs).config if docs else Config()

    def list_workloads(self, namespace: str) -> list[dict[str, Any]]:
        return [o for o in self._objects() if self._ident(o)[0] in WORKLOAD_KINDS and self._ident(o)[1] == namespace]

    def endpoint_groups(self) -> list[Any]:
        groups = [o for o in self._objects() if o.get("kind") == "EndpointGroup"]
        if not groups:
            raise _Unknown(f"no EndpointGroup in {self._where()}")
        return groups

    def set_annotation(self, target: _Target, value: str | None) -> str:
        hit = self._find(target)
        if hit is None:
            raise EpgbridgeError(f"{target} not found in {self._where()}")
        file, obj = hit
        meta = obj.setdefault("metadata", {})
        notes = meta.get("annotations") or {}
        if value is None:
            notes.pop(EPG_ANNOTATION, None)
        else:
            notes[EPG_ANNOTATION] = value
        if notes:
            meta["annotations"] = notes
        else:
            meta.pop("annotations", None)
        docs = self.files[file]
        if file.endswith(".json"):
            text = json.dumps(docs[0], indent=2) + "\n"
        else:
            text = yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False, allow_unicode=True)
        if file == _STDIN:
            sys.stdout.write(text)
            return file
        path = Path(file)
        # Write a sibling and rename it over the file, so a failure never leaves half a manifest.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(tmp, path.stat().st_mode & 0o7777)
            os.replace(tmp, path)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise EpgbridgeError(f"cannot write {path}: {exc.strerror or exc}") from None
        return file


# --- showing ---


def _annotations(obj: dict[str, Any]) -> dict[str, str]:
    notes = (obj.get("metadata") or {}).get("annotations") or {}
    return {str(k): str(v) for k, v in notes.items()} if isinstance(notes, dict) else {}


def _owners(obj: dict[str, Any]) -> tuple[OwnerRef, ...]:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return tuple(OwnerRef(str(r.get("kind", "")), str(r.get("name", "")), bool(r.get("controller")))
                 for r in refs if isinstance(r, dict))


def _workload(obj: dict[str, Any], kind: str) -> Workload:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    try:
        selector = parse_selector(spec["selector"], "spec.selector") if spec.get("selector") is not None else None
    except Bad:
        selector = None  # a selector the API server accepted; we only need it for the ownerless fallback
    return Workload(kind, str(meta.get("namespace") or "default"), str(meta["name"]), _annotations(obj), selector,
                    _owners(obj), str(meta.get("creationTimestamp") or ""))


def _reading(value: str) -> str:
    """How a single annotation value reads: each field, or why it is invalid."""
    try:
        parsed = parse_epg_annotation(value)
    except AnnotationError as exc:
        return f"invalid: {exc}"
    parts = [f"{label} {parsed.get(field) or '(inherited)'}"
             for field, label in (("tenant", "tenant"), ("app_profile", "app-profile"), ("name", "name"))]
    return ", ".join(parts)


def _show(source: _Source, target: _Target, config_path: str | None) -> None:
    obj = source.must_get(target)
    value = _annotations(obj).get(EPG_ANNOTATION)
    print(str(target))
    if value is None:
        print(f"  {EPG_ANNOTATION}: (none)")
    else:
        print(f"  {EPG_ANNOTATION}: {clipped(value)}")  # whoever wrote it: escaped and cut
        print(f"  reads as: {_reading(value)}")
    if target.kind == "Pod":
        guard, unknown = tenancy_guard(source, config_path)
        placement, notices = effective_epg(source, obj, guard)
        _print_placement(placement)
        for notice in notices:
            print(f"warning: {notice}", file=sys.stderr)
        # Whether the controller would refuse it matters where a pod or workload chose the EPG, or where no
        # EndpointGroup declares it (then only the Config's tenants allow it).
        chosen = any(layer in (Layer.POD, Layer.WORKLOAD) for _, layer, _ in placement.origin)
        if unknown is not None and placement.epg is not None and placement.epg != guard.config.default_epg and (
                chosen or placement.epg not in guard.groups):
            print(f"warning: the tenancy guard is not checked here ({unknown}): the controller may refuse EPG "
                  f"{placement.epg}", file=sys.stderr)


CONFIG_MAP = ("epgbridge-system", "epgbridge-config")  # namespace, name: where deploy/ installs the Config


class _Unchecked(TenancyGuard):
    """The guard where its inputs cannot be read: it refuses nothing here (the controller still does)."""

    __slots__ = ()

    def refusal(self, ref: EPGRef, namespace: Namespace | None, own: EPGRef, trusted: bool) -> str | None:
        return None


def tenancy_guard(source: _Source, config_path: str | None) -> tuple[TenancyGuard, str | None]:
    """The tenancy guard as the controller applies it: the EndpointGroups and the Config the source holds
    (`config_path` instead of the source's Config). When they cannot be read: a guard that refuses nothing,
    and why."""
    unknown = None
    try:
        if config_path is not None:
            from controller.runtime import read_config

            config = load_cluster(read_config(config_path)).config
        else:
            config = source.config()
    except _Unknown as exc:
        config, unknown = Config(), str(exc)
    try:
        groups = source.endpoint_groups()
    except _Unknown as exc:
        groups, unknown = [], str(exc)
    # Invalid EndpointGroups are left out, as the controller leaves them out.
    cluster, _ = load_cluster_lenient(documents("EndpointGroup", groups), config=config)
    if unknown is not None:
        return _Unchecked(cluster.groups, config), unknown
    return TenancyGuard(cluster.groups, config), None


def _check_tenancy(source: _Source, target: _Target, ref: EPGRef, config_path: str | None) -> None:
    """Refuse up front what the controller would refuse: a workload or pod naming an EPG that does not admit
    its namespace, or anything naming an undeclared EPG outside the Config's tenants."""
    guard, unknown = tenancy_guard(source, config_path)
    namespace = _namespace(source, target.name if target.kind == "Namespace" else target.namespace)
    own = namespace_epg(namespace, guard.config, AnnotationReader(guard.config))
    trusted = target.kind == "Namespace"
    if unknown is not None:
        # Without the EndpointGroups: a check that passes whether or not the EPG is declared still holds.
        allowed = ref == guard.config.default_epg or ref.tenant in guard.config.allowed_tenants
        if not (allowed and (trusted or ref == own)):
            print(f"warning: the tenancy guard is not checked here ({unknown}); the controller still refuses an "
                  "EPG the namespace may not use", file=sys.stderr)
        return
    reason = guard.refusal(ref, namespace, own, trusted=trusted)
    if reason is not None:
        raise EpgbridgeError(f"{target}: refused by the tenancy guard: {reason}")


def _namespace(source: _Source, name: str) -> Namespace:
    ns_obj = source.get(_Target("Namespace", "", name))
    if ns_obj is None:
        return Namespace(name, {NS_NAME_LABEL: name}, {}, declared=False)
    labels = {str(k): str(v) for k, v in ((ns_obj.get("metadata") or {}).get("labels") or {}).items()}
    return Namespace(name, {**labels, NS_NAME_LABEL: name}, _annotations(ns_obj))


def effective_epg(source: _Source, pod_obj: dict[str, Any], guard: TenancyGuard) -> tuple[Placement, list[Notice]]:
    """The pod's placement, from the pod, the workloads its ownerReferences lead to (or, with none, the
    workloads of its namespace) and its namespace; the resolution itself is annotations.resolve's."""
    config = guard.config
    meta = pod_obj.get("metadata") or {}
    ns_name = str(meta.get("namespace") or "default")
    pod = Pod(ns_name, str(meta["name"]), meta.get("labels") or {}, _annotations(pod_obj), owners=_owners(pod_obj))
    workloads = _fetch_owners(source, ns_name, pod.owners) if pod.owners else [
        _workload(o, str(o["kind"])) for o in source.list_workloads(ns_name)]
    namespace = _namespace(source, ns_name)
    warnings: list[Notice] = []
    if not namespace.declared and isinstance(source, _FileSource):
        # In a cluster a pod's namespace exists; in files it may just be in a file not given.
        warnings.append(Notice("warning", f"pod {pod.key}", f"namespace {ns_name} is not in {source._where()}: "
                               "its EPG annotation is unknown and taken as absent (add its file with another -f)"))
    workload = WorkloadIndex(workloads).workload_of(pod, warnings)
    reader = AnnotationReader(config)
    placement = place_pod(pod, workload, namespace, config, reader, guard)
    return placement, [*reader.notices, *placement.refusals, *warnings]


def _fetch_owners(source: _Source, namespace: str, owners: tuple[OwnerRef, ...]) -> list[Workload]:
    """Every workload reachable through ownerReferences (fetching only; which one wins is WorkloadIndex's)."""
    found: dict[tuple[str, str], Workload] = {}
    pending = [ref for ref in owners if ref.kind in WORKLOAD_KINDS]
    while pending:
        ref = pending.pop()
        if (ref.kind, ref.name) in found:
            continue
        obj = source.get(_Target(ref.kind, namespace, ref.name))
        if obj is None:
            continue
        w = _workload(obj, ref.kind)
        found[(ref.kind, ref.name)] = w
        pending.extend(r for r in w.owners if r.kind in WORKLOAD_KINDS)
    return list(found.values())


def _print_placement(placement: Placement) -> None:
    print(f"  effective EPG: {placement.describe()}")
    if placement.workload is not None:
        print(f"  workload: {placement.workload.ref}")
    for field, layer, who in placement.origin:
        value = getattr(placement.epg, field) if placement.epg is not None else ""
        print(f"    {field.replace('_', '-'):<12} {value:<24} from {layer.value}: {who}")
