"""EPG inheritance: which EPG a pod is in, and which layer said so.

Precedence, highest first: the pod, its workload, its namespace, the cluster default; a field missing at
one layer is taken from the next layer down. A layer whose value is invalid isolates the pods that read it
(config `invalid_annotation: isolate`, the default) or is skipped (`fallback`). A pod reads a layer only
while fields are still missing, so an invalid namespace annotation does not touch a pod whose own or
workload annotation is complete (it is still reported).

The tenancy guard (`TenancyGuard`) then checks the EPG the layers give: an EPG named by a pod or workload
annotation must admit the pod's namespace, and an EPG no EndpointGroup declares must be in a tenant the
Config allows. A refused placement is treated like an invalid value: isolated, or (`fallback`) resolved
again without the refused layer.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from annotations.config import Config
from annotations.value import FIELDS, AnnotationError, EPGAnnotation, parse_epg_annotation
from epg.endpointgroup import EndpointGroup
from epg.identity import EPGRef
from epg.kube import WORKLOAD_KINDS, Namespace, OwnerRef, Pod, Workload
from epg.text import printable


class Layer(Enum):
    POD = "pod"
    WORKLOAD = "workload"
    NAMESPACE = "namespace"
    DEFAULT = "default"


@dataclass(frozen=True, slots=True)
class Notice:
    """A finding about one object's annotation or ownership: an error (an invalid value, or one the tenancy
    guard refused) or a warning."""

    severity: str  # "error" | "warning" | "refused" (an object set aside: an error too)
    obj: str  # e.g. "deployment shop/web"
    message: str
    refused: bool = False  # a valid value naming an EPG the object may not name

    def __str__(self) -> str:
        if self.severity == "error":
            what = "annotation refused on" if self.refused else "invalid annotation on"
            return printable(f"{what} {self.obj}: {self.message}")
        if self.severity == "refused":
            return printable(f"{self.obj} refused: {self.message}")
        return printable(f"{self.obj}: {self.message}")


@dataclass(frozen=True, slots=True)
class Placement:
    """The EPG of one pod. `epg` is None when an invalid or refused annotation isolates the pod."""

    epg: EPGRef | None
    origin: tuple[tuple[str, Layer, str], ...]  # (field, layer, object) for each of the three fields
    workload: Workload | None
    isolated_by: str | None = None  # the object whose invalid or refused annotation isolates the pod
    refusals: tuple[Notice, ...] = ()  # what the tenancy guard refused on the way (at most one per layer)

    @property
    def isolated(self) -> bool:
        return self.epg is None

    def describe(self) -> str:
        refused = "".join(f"; the annotation on {n.obj} is refused: {n.message.partition(': ')[2]}"
                          for n in self.refusals)
        if self.epg is None:
            if self.refusals:
                return f"isolated{refused}"
            return f"isolated: invalid EPG annotation on {self.isolated_by}"
        layers = {layer for _, layer, _ in self.origin}
        if layers == {Layer.DEFAULT}:
            return f"{self.epg} (cluster default: no annotation{refused})"
        by_obj: dict[str, list[str]] = {}
        for f, _, obj in self.origin:
            by_obj.setdefault(obj, []).append(f.replace("_", "-"))
        parts = [("" if len(fs) == 3 else ", ".join(fs) + " ") + f"from {obj}" for obj, fs in by_obj.items()]
        return f"{self.epg} ({'; '.join(parts)}{refused})"


@dataclass(frozen=True, slots=True)
class TenancyGuard:
    """Who decides which EPG a pod joins: cluster and network admins, not whoever writes pods.

    - A namespace annotation is trusted (cluster admins edit Namespaces).
    - A pod or workload annotation (namespace users write those) may name its namespace's own EPG (what the
      namespace annotation and the cluster default give) or an EPG whose EndpointGroup admits the namespace
      through `spec.namespaceSelector`.
    - An EPG that no EndpointGroup declares may be named, at any layer, only in a tenant of the Config's
      `tenants` (default: the default EPG's tenant): annotations never create other tenants on the APIC.
    The cluster default EPG needs no allowed tenant; declared, it admits namespaces like any other EPG.
    """

    groups: Mapping[EPGRef, EndpointGroup]
    config: Config

    def refusal(self, ref: EPGRef, namespace: Namespace | None, own: EPGRef, trusted: bool) -> str | None:
        """Why a pod of `namespace` may not be placed in `ref` (None: it may). `trusted`: the EPG comes from
        the namespace annotation and the defaults alone; `own`: the namespace's own EPG."""
        group = self.groups.get(ref)
        if group is None:
            allowed = self.config.allowed_tenants
            if ref.tenant not in allowed and ref != self.config.default_epg:
                return (f"no EndpointGroup declares EPG {ref}, and annotations may name undeclared EPGs only in "
                        f"tenant{'s' if len(allowed) != 1 else ''} {', '.join(allowed)} (Config spec.tenants)")
            return None
        if trusted or ref == own:
            return None
        ns = namespace.name if namespace is not None else "?"
        selector = group.namespace_selector
        if selector is None:
            return (f"EPG {ref} is not open to namespace {ns}: its EndpointGroup has no spec.namespaceSelector "
                    "(only namespace annotations place pods in it)")
        if namespace is None or not selector.matches(namespace.labels):
            return f"EPG {ref} is not open to namespace {ns}: its spec.namespaceSelector [{selector}] does not match"
        return None


def _controller_ref(owners: tuple[OwnerRef, ...]) -> OwnerRef | None:
    for ref in owners:
        if ref.controller:
            return ref
    return owners[0] if owners else None


class WorkloadIndex:
    """Workloads by (namespace, kind, name) and by namespace, built once per model."""

    def __init__(self, workloads: Iterable[Workload]) -> None:
        self._by_key: dict[tuple[str, str, str], Workload] = {}
        self._by_ns: dict[str, list[Workload]] = defaultdict(list)
        for w in workloads:
            self._by_key[(w.namespace, w.kind, w.name)] = w
            self._by_ns[w.namespace].append(w)
        for lst in self._by_ns.values():
            lst.sort(key=lambda w: (w.created or "~", w.name, w.kind))

    def _climb(self, namespace: str, ref: OwnerRef | None, warnings: list[Notice], who: str) -> Workload | None:
        """Follow controller ownerReferences up to the top-most workload kind we know."""
        found: Workload | None = None
        seen: set[tuple[str, str]] = set()
        while ref is not None and ref.kind in WORKLOAD_KINDS and (ref.kind, ref.name) not in seen:
            seen.add((ref.kind, ref.name))
            w = self._by_key.get((namespace, ref.kind, ref.name))
            if w is None:
                warnings.append(
                    Notice("warning", who, f"owner {ref.kind.lower()} {namespace}/{ref.name} is not in the "
                           "input; annotations above it are not inherited")
                )
                break
            found, who = w, w.ref
            ref = _controller_ref(w.owners)
        return found

    def workload_of(self, pod: Pod, warnings: list[Notice]) -> Workload | None:
        """The pod's workload: the top-most owner, or (no ownerReferences) the oldest selector match."""
        who = f"pod {pod.key}"
        if pod.owners:
            return self._climb(pod.namespace, _controller_ref(pod.owners), warnings, who)
        candidates = [
            w for w in self._by_ns.get(pod.namespace, ())
            if w.selector is not None and w.selector.matches(pod.labels)
        ]
        if not candidates:
            return None
        chosen = candidates[0]
        top = self._climb(pod.namespace, OwnerRef(chosen.kind, chosen.name), warnings, who)
        others = ", ".join(w.ref for w in candidates[1:])
        warnings.append(
            Notice("warning", who, f"has no ownerReferences; inherits from {chosen.ref} (selector match"
                   + (f"; also matched {others}, the oldest wins)" if others else ")"))
        )
        return top


class AnnotationReader:
    """Parses each object's EPG annotation once and reports each invalid value once."""

    def __init__(self, config: Config) -> None:
        self.key = config.epg_annotation_key
        self.notices: list[Notice] = []
        self._cache: dict[int, EPGAnnotation | AnnotationError | None] = {}
        self.own: dict[int, EPGRef] = {}  # namespace_epg's, by the namespace object's identity

    def prime(self, obj: object, annotations: Mapping[str, str]) -> None:
        """Read an object's value without reporting it (it was reported before)."""
        if id(obj) not in self._cache:
            notices = len(self.notices)
            self.read(obj, annotations, "")
            del self.notices[notices:]

    def read(self, obj: object, annotations: Mapping[str, str], who: str) -> EPGAnnotation | AnnotationError | None:
        cached = self._cache.get(id(obj), False)
        if cached is not False:
            return cached  # type: ignore[return-value]
        raw = annotations.get(self.key)
        result: EPGAnnotation | AnnotationError | None
        if raw is None:
            result = None
        else:
            try:
                result = parse_epg_annotation(raw)
            except AnnotationError as exc:
                result = exc
                self.notices.append(Notice("error", who, f"{self.key}: {exc}"))
        self._cache[id(obj)] = result
        return result


def place_pod(
    pod: Pod,
    workload: Workload | None,
    namespace: Namespace | None,
    config: Config,
    reader: AnnotationReader,
    guard: TenancyGuard,
) -> Placement:
    """Resolve the pod's EPG through the layers, top-down, field by field, and check it with the guard."""
    layers: list[tuple[Layer, object, Mapping[str, str], str]] = [(Layer.POD, pod, pod.annotations, f"pod {pod.key}")]
    if workload is not None:
        layers.append((Layer.WORKLOAD, workload, workload.annotations, workload.ref))
    ns_layer = None
    if namespace is not None:
        ns_layer = (Layer.NAMESPACE, namespace, namespace.annotations, f"namespace {namespace.name}")
        layers.append(ns_layer)
    refusals: list[Notice] = []
    while True:
        placement = _resolve(layers, workload, config, reader)
        if placement.epg is None:
            return Placement(None, (), workload, placement.isolated_by, tuple(refusals))
        used = {who for _, _, who in placement.origin}
        top = next((layer for layer in layers if layer[3] in used), None)  # the highest layer that counted
        if top is None:  # the cluster default alone
            return placement
        reason = guard.refusal(placement.epg, namespace, namespace_epg(namespace, config, reader),
                               trusted=top[0] == Layer.NAMESPACE)
        if reason is None:
            return Placement(placement.epg, placement.origin, workload, refusals=tuple(refusals)) if refusals \
                else placement
        refusals.append(Notice("error", top[3], f"{config.epg_annotation_key}: {reason}", refused=True))
        if config.invalid_annotation == "isolate":
            return Placement(None, (), workload, isolated_by=top[3], refusals=tuple(refusals))
        layers = [layer for layer in layers if layer is not top]


def namespace_epg(namespace: Namespace | None, config: Config, reader: AnnotationReader) -> EPGRef:
    """The namespace's own EPG: its annotation's fields, the rest from the cluster default (all of it when the
    annotation is invalid). Once per namespace and reader."""
    if namespace is None:
        return config.default_epg
    own = reader.own.get(id(namespace))
    if own is None:
        layers = [(Layer.NAMESPACE, namespace, namespace.annotations, f"namespace {namespace.name}")]
        own = reader.own[id(namespace)] = _resolve(layers, None, config, reader).epg or config.default_epg
    return own


def _resolve(layers: Sequence[tuple[Layer, object, Mapping[str, str], str]], workload: Workload | None,
             config: Config, reader: AnnotationReader) -> Placement:
    values: dict[str, str] = {}
    origin: dict[str, tuple[Layer, str]] = {}
    for layer, obj, notes, who in layers:
        if len(values) == len(FIELDS):
            break
        parsed = reader.read(obj, notes, who)
        if parsed is None:
            continue
        if isinstance(parsed, AnnotationError):
            if config.invalid_annotation == "isolate":
                return Placement(None, (), workload, isolated_by=who)
            continue
        for field in FIELDS:
            value = parsed.get(field)
            if field not in values and value is not None:
                values[field] = value
                origin[field] = (layer, who)
    default = config.default_epg
    for field in FIELDS:
        if field not in values:
            values[field] = getattr(default, field)
            origin[field] = (Layer.DEFAULT, "cluster default")
    ref = EPGRef(values["tenant"], values["app_profile"], values["name"])
    return Placement(ref, tuple((f, *origin[f]) for f in FIELDS), workload)
