"""Build a Cluster from Kubernetes-shaped documents (dicts), validating as the API server would.

Pure: it takes documents and their origin, and returns a Cluster or raises InvalidInput with one Problem
per defect, each naming the file and the object. Reading files is the shell's job (controller/snapshot.py).
"""

from __future__ import annotations

import bisect
import functools
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from annotations.config import Config
from annotations.keys import MODE_ANNOTATION, MODES
from contracts.contract import (
    ETHER_TYPES,
    PORT_NAMES,
    PROTOCOLS,
    Action,
    Contract,
    Filter,
    FilterEntry,
    Scope,
    Subject,
    SubjectFilter,
)
from contracts.model import Cluster, Skipped
from contracts.netpol import IPBlock, NetworkPolicy, Peer, PolicyPort, Rule
from contracts.sets import PORTED, IPNetwork
from epg.endpointgroup import EndpointGroup
from epg.errors import InvalidInput, Problem
from epg.identity import EPGRef, aci_name_error
from epg.kube import (
    SELECTOR_OPERATORS,
    WORKLOAD_KINDS,
    ContainerPort,
    IPAddress,
    LabelSelector,
    Namespace,
    Node,
    OwnerRef,
    Pod,
    Requirement,
    Workload,
    parse_ip,
)
from epg.text import shown, size

GROUP = "epgbridge.io/v1alpha1"
API_VERSIONS = {
    "Namespace": "v1", "Pod": "v1", "Node": "v1",
    "Deployment": "apps/v1", "StatefulSet": "apps/v1", "DaemonSet": "apps/v1", "ReplicaSet": "apps/v1",
    "NetworkPolicy": "networking.k8s.io/v1",
    "EndpointGroup": GROUP, "Contract": GROUP, "Config": GROUP,
}
NAMESPACED = {"Pod", "NetworkPolicy", *WORKLOAD_KINDS}
# The API groups each known kind lives in (extensions: where old manifests have Deployments and NetworkPolicies,
# refused with the version to use). The same name in another group is another kind (Calico's NetworkPolicy).
_GROUPS = {kind: {api.rpartition("/")[0]} | ({"extensions"} if kind in ("NetworkPolicy", *WORKLOAD_KINDS) else set())
           for kind, api in API_VERSIONS.items()}
_POLICY_KIND = re.compile(r"NetworkPolicy\Z")


def _group(api: Any) -> str | None:
    return api.rpartition("/")[0] if isinstance(api, str) else None


def _affects_policy(kind: str, api: Any) -> bool:
    """Whether an object of a kind we do not read may still be meant for us: no apiVersion, our API group, or
    a kind name one typo away from ours (`Namespaces`, `Deploymnet`, `networkpolicy`). Anything else (Service,
    ConfigMap, Endpoints, Calico's NetworkPolicy ...) does not affect the policy epgbridge evaluates."""
    if not isinstance(api, str) or not api or _group(api) == GROUP.partition("/")[0]:
        return True
    if kind in API_VERSIONS:
        return _group(api) in _GROUPS[kind]
    folded = kind.lower()
    for known in API_VERSIONS:
        k = known.lower()
        limit = 1 if len(k) < 8 else 2
        # The length test first: a distance costs len(a) * len(b), and a kind is whatever a document says.
        if folded in (k, k + "s", k + "es") or (abs(len(folded) - len(k)) <= limit and
                                                _typo_distance(folded, k) <= limit):
            return True
    return False


def _typo_distance(a: str, b: str) -> int:
    """Edit distance counting a swap of two neighbours as one edit (optimal string alignment)."""
    rows = [list(range(len(b) + 1))]
    for i, ca in enumerate(a, 1):
        row = [i]
        for j, cb in enumerate(b, 1):
            row.append(min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + (ca != cb)))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                row[j] = min(row[j], rows[-2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")  # and <= 253
_LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]\Z")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?\Z")
_PORT_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?\Z")
_DIGITS = re.compile(r"[0-9]{1,6}\Z")  # ASCII digits only: str.isdigit() also takes "²"
NS_NAME_LABEL = "kubernetes.io/metadata.name"
ANNOTATIONS_LIMIT = 256 * 1024  # bytes of keys and values together: the API server's TotalAnnotationSizeLimitB


@dataclass(frozen=True, slots=True)
class Document:
    """One object and where it came from ("file.yaml#3" style `origin`)."""

    origin: str
    body: Any


class Bad(Exception):
    """Raised inside a parser for the current object; carries the user-facing message."""


class Conflict(Bad):
    """The current object declares what an older object already declares: the older one wins (as the API
    server's own objects cannot say which is meant, age decides, then the name)."""

    def __init__(self, message: str, winner: str) -> None:
        super().__init__(message)
        self.winner = winner


@dataclass(frozen=True, slots=True)
class Rejected:
    """An object left out of a leniently loaded cluster (or, `kept`, held at its last valid version), and why
    (for Events and logs)."""

    kind: str
    namespace: str
    name: str
    problem: Problem
    conflict: str = ""  # when it lost a conflict: the object that won ("EndpointGroup shop-api")
    kept: bool = False  # its last valid version stays in force (a live cluster's object that became invalid)


def _map(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Bad(f"{what} must be a mapping")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise Bad(f"{what} must be a list")
    return value


def _known(body: dict[str, Any], fields: set[str], what: str) -> None:
    """Refuse unknown fields: a mistyped `intraEPG: isolate` must not quietly leave traffic permitted."""
    unknown = sorted(set(body) - fields, key=str)  # YAML keys need not be strings
    if unknown:
        raise Bad(f"{what}: unknown field {shown(unknown[0])} (known: {', '.join(sorted(fields))})")


def _text(value: Any) -> str:
    """A header field for Rejected records, before it is checked: a string as it is, anything else empty."""
    return value if isinstance(value, str) else ""


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise Bad(f"{what} must be a non-empty string")
    return value


def _subdomain_ok(name: str) -> bool:
    return len(name) <= 253 and bool(_DNS_SUBDOMAIN.match(name))


@functools.lru_cache(maxsize=8192)  # a cluster has few distinct label keys and values, on many objects
def _label_key_ok(key: str) -> bool:
    prefix, slash, name = key.rpartition("/")
    if slash and not _subdomain_ok(prefix):
        return False
    return bool(_LABEL_NAME.match(name))


@functools.lru_cache(maxsize=8192)
def _label_value_ok(value: str) -> bool:
    return bool(_LABEL_VALUE.match(value))


def _labels(value: Any, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in _map(value, what).items():
        if not isinstance(k, str) or not _label_key_ok(k):
            raise Bad(f"{what}: invalid label key {shown(k)}")
        if not isinstance(v, str) or not _label_value_ok(v):
            raise Bad(f"{what}: invalid value {shown(v)} for label {shown(k)}")
        out[k] = v
    return out


def _annotations(value: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    total = 0
    for k, v in _map(value, "metadata.annotations").items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise Bad(f"metadata.annotations: {shown(k)} must map to a string")
        total += size(k) + size(v)
        out[k] = v
    if total > ANNOTATIONS_LIMIT:
        raise Bad(f"metadata.annotations: {total} bytes, more than the API server's limit of {ANNOTATIONS_LIMIT}")
    return out


def _bool(value: Any, what: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise Bad(f"{what} {shown(value)} must be true or false")
    return value


def parse_selector(value: Any, what: str) -> LabelSelector:
    body = _map(value, what)
    unknown = set(body) - {"matchLabels", "matchExpressions"}
    if unknown:
        raise Bad(f"{what}: unknown field {shown(min(unknown, key=str))}")
    labels = _labels(body.get("matchLabels"), f"{what}.matchLabels")
    reqs = []
    for i, expr in enumerate(_list(body.get("matchExpressions"), f"{what}.matchExpressions")):
        e = _map(expr, f"{what}.matchExpressions[{i}]")
        key, op = e.get("key"), e.get("operator")
        values = _list(e.get("values"), f"{what}.matchExpressions[{i}].values")
        if not isinstance(key, str) or not _label_key_ok(key):
            raise Bad(f"{what}.matchExpressions[{i}]: invalid key {shown(key)}")
        if op not in SELECTOR_OPERATORS:
            raise Bad(f"{what}.matchExpressions[{i}]: operator {shown(op)} is not one of "
                      f"{', '.join(SELECTOR_OPERATORS)}")
        if op in ("In", "NotIn") and not values:
            raise Bad(f"{what}.matchExpressions[{i}]: operator {op} needs values")
        if op in ("Exists", "DoesNotExist") and values:
            raise Bad(f"{what}.matchExpressions[{i}]: operator {op} takes no values")
        for v in values:
            if not isinstance(v, str) or not _LABEL_VALUE.match(v):
                raise Bad(f"{what}.matchExpressions[{i}]: {shown(v)} is not a valid label value")
        reqs.append(Requirement(key, op, frozenset(values)))
    return LabelSelector(tuple(sorted(labels.items())), tuple(reqs))


_CIDR = re.compile(r"[0-9a-fA-F:.]+/[0-9]{1,3}\Z")  # no netmask form, no IPv6 zone: as Go's net.ParseCIDR


def _cidr(value: Any, what: str) -> IPNetwork:
    if not isinstance(value, str) or not _CIDR.match(value):
        raise Bad(f"{what} {shown(value)} is not a CIDR (like 10.0.0.0/16)")
    try:
        return ipaddress.ip_network(value, strict=False)  # host bits allowed, as the API server allows them
    except ValueError:
        raise Bad(f"{what} {shown(value)} is not a CIDR (like 10.0.0.0/16)") from None


def _address(value: Any, what: str) -> IPAddress:
    """A pod address, strictly (epg.kube.parse_ip: no zone, no leading zeros), and not IPv4-mapped IPv6 (which
    the API server counts as IPv4)."""
    try:
        ip = parse_ip(value)
    except ValueError:
        raise Bad(f"{what} {shown(value)} is not an IP address") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        raise Bad(f"{what} {shown(value)} is an IPv4-mapped IPv6 address: give the IPv4 address {ip.ipv4_mapped}")
    return ip


def _pod_ips(status: dict[str, Any]) -> tuple[IPAddress, ...]:
    """A pod's addresses, as the API server validates them: status.podIPs (at most one per family, no
    duplicates), or status.podIP alone; where both are given, podIP is podIPs[0]. The primary comes first."""
    ips: list[IPAddress] = []
    for i, item in enumerate(_list(status.get("podIPs"), "status.podIPs")):
        entry = _map(item, f"status.podIPs[{i}]")
        ip = _address(entry.get("ip"), f"status.podIPs[{i}].ip")
        if ip in ips:
            raise Bad(f"status.podIPs[{i}]: {ip} is listed twice")
        if any(other.version == ip.version for other in ips):
            raise Bad(f"status.podIPs: at most one address per family (IPv{ip.version}: "
                      f"{', '.join(str(a) for a in ips if a.version == ip.version)} and {ip})")
        ips.append(ip)
    primary = status.get("podIP")
    if primary is not None and primary != "":
        ip = _address(primary, "status.podIP")
        if not ips:
            ips.append(ip)
        elif ip != ips[0]:
            raise Bad(f"status.podIP {ip} is not status.podIPs[0] {ips[0]} (the first of podIPs is the pod's "
                      "primary address, podIP)")
    return tuple(ips)


def _owners(meta: dict[str, Any]) -> tuple[OwnerRef, ...]:
    out = []
    for i, ref in enumerate(_list(meta.get("ownerReferences"), "metadata.ownerReferences")):
        r = _map(ref, f"metadata.ownerReferences[{i}]")
        out.append(OwnerRef(_str(r.get("kind"), f"ownerReferences[{i}].kind"),
                            _str(r.get("name"), f"ownerReferences[{i}].name"),
                            _bool(r.get("controller"), f"ownerReferences[{i}].controller")))
    return tuple(out)


def _port_number(value: Any, what: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 65535:
        raise Bad(f"{what} {shown(value)} must be a number {low}-65535")
    return value


def _np_protocol(value: Any, what: str) -> str:
    proto = "TCP" if value is None else value
    if proto not in ("TCP", "UDP", "SCTP"):
        raise Bad(f"{what} {shown(value)} must be TCP, UDP or SCTP")
    return str(proto)


class ParseCache:
    """Parsed objects by (kind, namespace, name, resourceVersion), for loading a live cluster again and again:
    an object the API server has not changed is not parsed again. Holds only what the last load used."""

    def __init__(self) -> None:
        self._entries: dict[tuple[Any, ...], Any] = {}
        self._next: dict[tuple[Any, ...], Any] = {}
        # Each object's last valid version by (kind, namespace, name): unknown is never absent, so an object
        # that becomes invalid keeps what it had in force (and is reported) instead of vanishing.
        self._good: dict[tuple[str, str, str], Any] = {}
        self._next_good: dict[tuple[str, str, str], Any] = {}
        # A document's checked header by the identity of its body (bodies are replaced, never edited, by the
        # cluster cache): an unchanged object skips the header checks too.
        self._headers: dict[int, tuple[Any, str, tuple[str, str, str, str]]] = {}
        self._next_headers: dict[int, tuple[Any, str, tuple[str, str, str, str]]] = {}

    def get(self, key: tuple[Any, ...]) -> Any:
        return self._entries.get(key)

    def keep(self, key: tuple[Any, ...], obj: Any) -> None:
        self._next[key] = obj

    def last_good(self, ident: tuple[str, str, str]) -> Any:
        found = self._good.get(ident)
        if found is not None:
            self._next_good[ident] = found
        return found

    def keep_good(self, ident: tuple[str, str, str], obj: Any) -> None:
        self._next_good[ident] = obj

    def header(self, doc: Document) -> tuple[str, str, str, str] | None:
        hit = self._headers.get(id(doc.body))
        if hit is None or hit[0] is not doc.body or hit[1] != doc.origin:
            return None
        self._next_headers[id(doc.body)] = hit
        return hit[2]

    def keep_header(self, doc: Document, head: tuple[str, str, str, str]) -> None:
        self._next_headers[id(doc.body)] = (doc.body, doc.origin, head)

    def turn(self) -> None:
        self._entries, self._next = self._next, {}
        self._headers, self._next_headers = self._next_headers, {}
        self._good, self._next_good = self._next_good, {}

    def __len__(self) -> int:
        return len(self._entries)


class _Loader:
    def __init__(self, cache: ParseCache | None = None) -> None:
        self.cache = cache if cache is not None else ParseCache()
        self.problems: list[tuple[int, Problem]] = []
        self.seq = 0  # the current document's position, so problems come out in input order
        self.seen: dict[tuple[str, str, str], str] = {}
        self.namespaces: dict[str, Namespace] = {}
        self.pods: list[Pod] = []
        self.workloads: list[Workload] = []
        self.policies: list[NetworkPolicy] = []
        self.groups: dict[EPGRef, EndpointGroup] = {}
        self.contracts: dict[tuple[str, str], Contract] = {}
        self.filters: dict[tuple[str, str], tuple[tuple[FilterEntry, ...], str]] = {}  # -> (entries, winner)
        self.declared: dict[object, str] = {}  # an EPG or contract key -> who declared it, for conflicts
        self.order: dict[object, int] = {}  # an EPG or contract key -> its document's position
        self.pod_ips: dict[object, str] = {}
        self.rejected: list[Rejected] = []
        self.current: tuple[str, str, str] = ("", "", "")
        self.config = Config()
        self.skipped: list[Skipped] = []
        self.nodes: dict[str, Node] = {}
        self.lenient = False

    def problem(self, where: str, message: str, conflict: str = "", *, kept: bool = False) -> None:
        problem = Problem(where, message)
        self.problems.append((self.seq, problem))
        self.rejected.append(Rejected(*self.current, problem, conflict, kept))

    def flatten(self, docs: Iterable[Document]) -> list[Document]:
        out = []
        for doc in docs:
            if doc.body is None:
                continue
            kind = doc.body.get("kind") if isinstance(doc.body, dict) else None
            items = doc.body.get("items") if isinstance(kind, str) and kind.endswith("List") else None
            if kind == "List" and items is not None and not isinstance(items, list):
                self.current = ("List", "", "")
                self.problem(doc.origin, f"List: items must be a list, not {shown(items)}")
            elif kind == "List" or isinstance(items, list):
                for i, item in enumerate(items or []):
                    out.append(Document(f"{doc.origin} items[{i}]", item))
            else:
                out.append(doc)
        return out

    def run(self, docs: Iterable[Document], lenient: bool = False) -> Cluster:
        self.lenient = lenient
        objects: list[tuple[str, str, str, str, dict[str, Any], int]] = []
        for seq, doc in enumerate(self.flatten(docs)):
            self.seq = seq
            head = self.header(doc)
            if head is not None:
                objects.append((*head, seq))
        # Config first: its default EPG fills EndpointGroup and Contract defaults.
        for kind, ns, name, where, body, seq in objects:
            if kind == "Config":
                self.seq, self.current = seq, (kind, ns, name)
                self.guard(where, self.config_object, body)
        # EndpointGroups and Contracts last, oldest first: when two declare one EPG, contract or filter, the
        # older one is in force, however the names sort (a newer object must not displace what is in force).
        for kind, ns, name, where, body, seq in sorted(objects, key=_admission_order):
            self.seq, self.current = seq, (kind, ns, name)
            if kind != "Config":
                self.guard(where, self.parse_and_admit, kind, ns, name, body)
        if self.problems and not lenient:
            raise InvalidInput(p for _, p in sorted(self.problems, key=lambda t: t[0]))
        for pod in self.pods:
            if pod.namespace not in self.namespaces:
                self.namespaces[pod.namespace] = Namespace(pod.namespace, {NS_NAME_LABEL: pod.namespace}, {}, False)
        return Cluster(
            namespaces=dict(sorted(self.namespaces.items())),
            pods=tuple(sorted(self.pods, key=lambda p: (p.namespace, p.name))),
            workloads=tuple(self.workloads),
            policies=tuple(sorted(self.policies, key=lambda p: (p.namespace, p.name))),
            groups=dict(sorted(self.groups.items(), key=lambda kv: self.order[kv[0]])),
            contracts=dict(sorted(self.contracts.items(), key=lambda kv: self.order[kv[0]])),
            config=self.config,
            skipped=tuple(self.skipped),
            nodes=dict(sorted(self.nodes.items())),
        )

    def parse_and_admit(self, where: str, kind: str, ns: str, name: str, body: dict[str, Any]) -> None:
        version = str((body.get("metadata") or {}).get("resourceVersion") or "")
        # EndpointGroups and Contracts take defaults from the Config: it is part of their key.
        key = (kind, ns, name, version, self.config if kind in ("EndpointGroup", "Contract") else None)
        obj: Any = self.cache.get(key) if version else None
        if obj is None:
            try:
                obj = self.parse(where, kind, ns, name, body)
            except Bad as exc:
                obj = self.cache.last_good((kind, ns, name)) if self.lenient else None
                if obj is None:
                    raise
                self.problem(where, f"{exc}; its last valid version stays in force", kept=True)
        self.cache.keep_good((kind, ns, name), obj)
        if version:
            self.cache.keep(key, obj)
        if isinstance(obj, EndpointGroup):
            self.admit_group(obj, _declarer(kind, name, where, body))
        elif isinstance(obj, Contract):
            self.admit_contract(obj, _declarer(kind, name, where, body))
        else:
            self.admit(obj)

    def parse(self, where: str, kind: str, ns: str, name: str, body: dict[str, Any]) -> Any:
        if kind in WORKLOAD_KINDS:
            return self.workload(where, body, kind, ns, name)
        if kind == "Namespace":
            return self.namespace(where, body, ns, name)
        if kind == "Pod":
            return self.pod(where, body, ns, name)
        if kind == "Node":
            return self.node(where, body, ns, name)
        if kind == "NetworkPolicy":
            return self.network_policy(where, body, ns, name)
        if kind == "EndpointGroup":
            return self.endpoint_group(where, body, ns, name)
        return self.contract(where, body, ns, name)

    def guard(self, where: str, fn: Any, *args: Any) -> None:
        try:
            fn(where, *args)
        except Conflict as exc:
            self.problem(where, str(exc), exc.winner)
        except Bad as exc:
            self.problem(where, str(exc))

    def header(self, doc: Document) -> tuple[str, str, str, str, dict[str, Any]] | None:
        known = self.cache.header(doc)
        if known is not None:
            kind, ns, name, where = known
            self.current = (kind, ns, name)
            return self.admit_key(doc, kind, ns, name, where)
        head = self.check_header(doc)
        if head is not None:
            self.cache.keep_header(doc, head[:4])
        return head

    def admit_key(self, doc: Document, kind: str, ns: str, name: str,
                  where: str) -> tuple[str, str, str, str, dict[str, Any]] | None:
        key = (kind, ns, name)
        if key in self.seen:
            self.problem(where, f"duplicate: {kind} {ns + '/' if ns else ''}{name} is also defined in {self.seen[key]}")
            return None
        self.seen[key] = doc.origin
        return kind, ns, name, where, doc.body

    def check_header(self, doc: Document) -> tuple[str, str, str, str, dict[str, Any]] | None:
        body = doc.body
        meta0 = body.get("metadata") if isinstance(body, dict) else None
        self.current = (_text(body.get("kind")) if isinstance(body, dict) else "",
                        _text(meta0.get("namespace")) if isinstance(meta0, dict) else "",
                        _text(meta0.get("name")) if isinstance(meta0, dict) else "")
        if not isinstance(body, dict):
            self.problem(doc.origin, "not an object (expected a mapping with apiVersion, kind and metadata)")
            return None
        kind, api = body.get("kind"), body.get("apiVersion")
        if not isinstance(kind, str) or not kind:
            self.problem(doc.origin, "missing kind")
            return None
        if kind not in API_VERSIONS or (isinstance(api, str) and api and _group(api) not in _GROUPS[kind]):
            if _affects_policy(kind, api):
                self.problem(doc.origin, f"unknown kind {shown(kind)} (known: {', '.join(sorted(API_VERSIONS))})")
            else:
                _, ns0, name0 = self.current
                self.skipped.append(Skipped(doc.origin, kind, f"{ns0}/{name0}" if ns0 else name0,
                                            _POLICY_KIND.search(kind) is not None))
            return None
        meta = body.get("metadata")
        name = meta.get("name") if isinstance(meta, dict) else None
        if not isinstance(name, str) or not name:
            self.problem(doc.origin, f"{kind}: metadata.name is missing")
            return None
        # The name is checked before it is part of any message's "where": a name is whatever its author typed.
        if not (_DNS_LABEL.match(name) if kind == "Namespace" else _subdomain_ok(name)):
            self.problem(doc.origin, f"{kind}: metadata.name {shown(name)} is not a valid Kubernetes name "
                         "(lowercase DNS-1123)")
            return None
        ns = ""
        if kind in NAMESPACED:
            ns = meta.get("namespace") or "default"  # type: ignore[union-attr]
            if not isinstance(ns, str) or not _DNS_LABEL.match(ns):
                self.problem(doc.origin, f"{kind} {name}: metadata.namespace {shown(ns)} is not a valid namespace name")
                return None
        where = f"{doc.origin}: {kind} {ns + '/' if ns else ''}{name}"
        if api != API_VERSIONS[kind]:
            self.problem(where, f"apiVersion {shown(api)} is not supported for {kind}; use {API_VERSIONS[kind]}")
            return None
        return self.admit_key(doc, kind, ns, name, where)

    # --- Kubernetes kinds ---

    def namespace(self, where: str, body: dict[str, Any], _ns: str, name: str) -> Namespace:
        meta = _map(body.get("metadata"), "metadata")
        labels = _labels(meta.get("labels"), "metadata.labels")
        labels[NS_NAME_LABEL] = name  # set by the API server on every namespace
        return Namespace(name, labels, _annotations(meta.get("annotations")))

    def pod(self, where: str, body: dict[str, Any], ns: str, name: str) -> Pod:
        meta = _map(body.get("metadata"), "metadata")
        spec = _map(body.get("spec"), "spec")
        status = _map(body.get("status"), "status")
        ips = _pod_ips(status)  # "" or none at all: not assigned yet
        ports = []
        for ci, c in enumerate(_list(spec.get("containers"), "spec.containers")):
            container = _map(c, f"spec.containers[{ci}]")
            for pi, p in enumerate(_list(container.get("ports"), f"spec.containers[{ci}].ports")):
                what = f"spec.containers[{ci}].ports[{pi}]"
                port = _map(p, what)
                pname = port.get("name")
                if pname is not None and (not isinstance(pname, str) or not _port_name_ok(pname)):
                    raise Bad(f"{what}.name {shown(pname)} is not a valid port name (1-15 of [a-z0-9-], with a letter)")
                ports.append(ContainerPort(_port_number(port.get("containerPort"), f"{what}.containerPort"),
                                           _np_protocol(port.get("protocol"), f"{what}.protocol"), pname))
        node = spec.get("nodeName")
        if node is not None and (not isinstance(node, str) or not _subdomain_ok(node)):
            raise Bad(f"spec.nodeName {shown(node)} is not a valid node name")
        return Pod(ns, name, _labels(meta.get("labels"), "metadata.labels"), _annotations(meta.get("annotations")),
                   ips, node, _bool(spec.get("hostNetwork"), "spec.hostNetwork"), tuple(ports), _owners(meta))

    def node(self, where: str, body: dict[str, Any], _ns: str, name: str) -> Node:
        """Only `spec.podCIDRs` (`podCIDR` as fallback): the addresses the agent keeps closed for pods it does not
        know yet."""
        spec = _map(body.get("spec"), "spec")
        cidrs = _list(spec.get("podCIDRs"), "spec.podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
        nets = tuple(_cidr(c, f"spec.podCIDRs[{i}]") for i, c in enumerate(cidrs))
        if len({n.version for n in nets}) != len(nets):
            raise Bad("spec.podCIDRs: at most one CIDR per address family")
        return Node(name, nets)

    def admit(self, obj: Namespace | Pod | Workload | NetworkPolicy | Node) -> None:
        """Add a parsed object, with the checks that span objects."""
        if isinstance(obj, Node):
            self.nodes[obj.name] = obj
        elif isinstance(obj, Namespace):
            self.namespaces[obj.name] = obj
        elif isinstance(obj, Pod):
            if obj.is_endpoint:
                for ip in obj.ips:
                    other = self.pod_ips.get(ip)
                    if other is not None:
                        raise Bad(f"address {ip} is also an address of pod {other}")
                self.pod_ips.update(dict.fromkeys(obj.ips, obj.key))
            self.pods.append(obj)
        elif isinstance(obj, Workload):
            self.workloads.append(obj)
        else:
            self.policies.append(obj)

    def workload(self, where: str, body: dict[str, Any], kind: str, ns: str, name: str) -> Workload:
        meta = _map(body.get("metadata"), "metadata")
        spec = _map(body.get("spec"), "spec")
        selector = parse_selector(spec["selector"], "spec.selector") if spec.get("selector") is not None else None
        created = meta.get("creationTimestamp") or ""
        return Workload(kind, ns, name, _annotations(meta.get("annotations")), selector, _owners(meta), str(created))

    def network_policy(self, where: str, body: dict[str, Any], ns: str, name: str) -> NetworkPolicy:
        spec = _map(body.get("spec"), "spec")
        # Optional, as in the API server: absent or null is the empty selector (every pod of the namespace).
        selector = parse_selector(spec.get("podSelector"), "spec.podSelector")
        ingress = tuple(self.np_rule(r, f"spec.ingress[{i}]", "from")
                        for i, r in enumerate(_list(spec.get("ingress"), "spec.ingress")))
        egress = tuple(self.np_rule(r, f"spec.egress[{i}]", "to")
                       for i, r in enumerate(_list(spec.get("egress"), "spec.egress")))
        types = _list(spec.get("policyTypes"), "spec.policyTypes")
        if len(types) > 2:
            raise Bad(f"spec.policyTypes may not list more than two types (it lists {len(types)})")
        for t in types:
            if t not in ("Ingress", "Egress"):
                raise Bad(f"spec.policyTypes: {shown(t)} must be Ingress or Egress")
        if not types:
            # The API server's defaulting (SetDefaults_NetworkPolicy) of an absent, null or empty list: Ingress
            # always, Egress when there are egress rules.
            affects_ingress, affects_egress = True, len(egress) > 0
        else:
            affects_ingress, affects_egress = "Ingress" in types, "Egress" in types
        mode = _annotations((body.get("metadata") or {}).get("annotations")).get(MODE_ANNOTATION, "enforce")
        policy = NetworkPolicy(ns, name, selector, ingress, egress, affects_ingress, affects_egress, where,
                               audit=mode == "audit", mode_note="" if mode in MODES else shown(mode))
        budget = self.config.max_policy_elements
        if policy.cost > budget:
            # Fail closed: it still selects its pods (isolating them where it would), with none of its allows.
            return replace(policy, ingress=(), egress=(), refused=f"it costs {policy.cost:,} elements (ipBlocks, "
                           f"excepts and ports), over the budget of {budget:,} (Config spec.maxPolicyElements): "
                           "the pods it selects get none of its allows")
        return policy

    def np_rule(self, value: Any, what: str, peers_key: str) -> Rule:
        rule = _map(value, what)
        peers = []
        for i, p in enumerate(_list(rule.get(peers_key), f"{what}.{peers_key}")):
            pw = f"{what}.{peers_key}[{i}]"
            peer = _map(p, pw)
            # A null selector is an absent one (the API's pointers), as in the API server.
            pod_sel, ns_sel, block = peer.get("podSelector"), peer.get("namespaceSelector"), peer.get("ipBlock")
            if block is not None:
                if pod_sel is not None or ns_sel is not None:
                    raise Bad(f"{pw}: ipBlock cannot be combined with podSelector or namespaceSelector")
                b = _map(block, f"{pw}.ipBlock")
                cidr = _cidr(b.get("cidr"), f"{pw}.ipBlock.cidr")
                excepts = []
                for e in _list(b.get("except"), f"{pw}.ipBlock.except"):
                    ex = _cidr(e, f"{pw}.ipBlock.except")
                    if ex.version != cidr.version or not ex.subnet_of(cidr) or ex == cidr:  # type: ignore[arg-type]
                        raise Bad(f"{pw}.ipBlock.except {shown(e)} must be a strict subset of cidr "
                                  f"{shown(b.get('cidr'))}")
                    excepts.append(ex)
                peers.append(Peer(ip_block=IPBlock(cidr, tuple(excepts))))
                continue
            if pod_sel is None and ns_sel is None:
                raise Bad(f"{pw}: must have podSelector, namespaceSelector or ipBlock")
            peers.append(Peer(
                parse_selector(pod_sel, f"{pw}.podSelector") if pod_sel is not None else None,
                parse_selector(ns_sel, f"{pw}.namespaceSelector") if ns_sel is not None else None,
            ))
        ports = []
        for i, p in enumerate(_list(rule.get("ports"), f"{what}.ports")):
            pw = f"{what}.ports[{i}]"
            port = _map(p, pw)
            proto = _np_protocol(port.get("protocol"), f"{pw}.protocol")
            number: int | str | None = port.get("port")
            end = port.get("endPort")
            if isinstance(number, str):
                if not _port_name_ok(number):
                    raise Bad(f"{pw}.port {shown(number)} is not a port number or a valid port name")
                if end is not None:
                    raise Bad(f"{pw}.endPort needs a numeric port")
            elif number is not None:
                number = _port_number(number, f"{pw}.port")
                if end is not None and _port_number(end, f"{pw}.endPort") < number:
                    raise Bad(f"{pw}.endPort {end} must be >= port {number}")
            elif end is not None:
                raise Bad(f"{pw}.endPort needs a numeric port")
            ports.append(PolicyPort(proto, number, end))
        return Rule(tuple(peers), tuple(ports))

    # --- epgbridge.io kinds ---

    def config_object(self, where: str, body: dict[str, Any]) -> None:
        spec = _map(body.get("spec"), "spec")
        _known(spec, {"defaultEndpointGroup", "annotationKey", "invalidAnnotation", "tenants", "maxPolicyElements"},
               "spec")
        default = self.config.default_epg
        d = spec.get("defaultEndpointGroup")
        if d is not None:
            dm = _map(d, "spec.defaultEndpointGroup")
            _known(dm, {"tenant", "applicationProfile", "name"}, "spec.defaultEndpointGroup")
            default = EPGRef(
                _aci(dm.get("tenant"), "spec.defaultEndpointGroup.tenant"),
                _aci(dm.get("applicationProfile"), "spec.defaultEndpointGroup.applicationProfile"),
                _aci(dm.get("name"), "spec.defaultEndpointGroup.name"),
            )
        key = spec.get("annotationKey", self.config.epg_annotation_key)
        if not isinstance(key, str) or not _label_key_ok(key):
            raise Bad(f"spec.annotationKey {shown(key)} is not a valid annotation key")
        mode = spec.get("invalidAnnotation", "isolate")
        if mode not in ("isolate", "fallback"):
            raise Bad(f"spec.invalidAnnotation {shown(mode)} must be isolate or fallback")
        tenants = spec.get("tenants")
        if tenants is not None:
            tenants = tuple(sorted({_aci(t, "spec.tenants[]") for t in _list(tenants, "spec.tenants")}))
        budget = spec.get("maxPolicyElements", self.config.max_policy_elements)
        if not isinstance(budget, int) or isinstance(budget, bool) or not 1 <= budget <= 10_000_000:
            raise Bad(f"spec.maxPolicyElements {shown(budget)} must be a whole number from 1 to 10000000")
        self.config = Config(default, key, mode, tenants, budget)

    def endpoint_group(self, where: str, body: dict[str, Any], _ns: str, name: str) -> EndpointGroup:
        spec = _map(body.get("spec"), "spec")
        _known(spec, {"tenant", "applicationProfile", "name", "bridgeDomain", "intraEpg", "provides", "consumes",
                      "subnets", "namespaceSelector", "mode"}, "spec")
        d = self.config.default_epg
        ref = EPGRef(_aci(spec.get("tenant", d.tenant), "spec.tenant"),
                     _aci(spec.get("applicationProfile", d.app_profile), "spec.applicationProfile"),
                     _aci(spec.get("name", name), "spec.name"))
        intra = spec.get("intraEpg", "permit")
        if intra not in ("permit", "isolate"):
            raise Bad(f"spec.intraEpg {shown(intra)} must be permit or isolate")
        bd = spec.get("bridgeDomain")
        if bd is not None:
            _aci(bd, "spec.bridgeDomain")
        provides = tuple(_aci(c, "spec.provides[]") for c in _list(spec.get("provides"), "spec.provides"))
        consumes = tuple(_aci(c, "spec.consumes[]") for c in _list(spec.get("consumes"), "spec.consumes"))
        subnets = tuple(_cidr(s, "spec.subnets[]") for s in _list(spec.get("subnets"), "spec.subnets"))
        selector = spec.get("namespaceSelector")
        namespaces = parse_selector(selector, "spec.namespaceSelector") if selector is not None else None
        return EndpointGroup(ref, bd, intra, provides, consumes, subnets, where, namespaces, _mode(spec) == "audit")

    def contract(self, where: str, body: dict[str, Any], _ns: str, name: str) -> Contract:
        spec = _map(body.get("spec"), "spec")
        _known(spec, {"tenant", "name", "scope", "subjects", "mode"}, "spec")
        tenant = _aci(spec.get("tenant", self.config.default_epg.tenant), "spec.tenant")
        cname = _aci(spec.get("name", name), "spec.name")
        scope_text = spec.get("scope", "context")
        try:
            scope = Scope(scope_text)
        except ValueError:
            raise Bad(f"spec.scope {shown(scope_text)} must be one of {', '.join(s.value for s in Scope)}") from None
        subjects = []
        for si, s in enumerate(_list(spec.get("subjects"), "spec.subjects")):
            sw = f"spec.subjects[{si}]"
            sm = _map(s, sw)
            _known(sm, {"name", "filters"}, sw)
            filters = []
            for fi, f in enumerate(_list(sm.get("filters"), f"{sw}.filters")):
                fw = f"{sw}.filters[{fi}]"
                fm = _map(f, fw)
                _known(fm, {"name", "action", "entries"}, fw)
                fname = _aci(fm.get("name"), f"{fw}.name")
                action = fm.get("action", "permit")
                if action not in ("permit", "deny"):
                    raise Bad(f"{fw}.action {shown(action)} must be permit or deny")
                entries = tuple(_entry(e, f"{fw}.entries[{ei}]")
                                for ei, e in enumerate(_list(fm.get("entries"), f"{fw}.entries")))
                if not entries:
                    raise Bad(f"{fw}: a filter needs at least one entry")
                filters.append(SubjectFilter(Filter(fname, entries), Action(action)))
            subjects.append(Subject(_aci(sm.get("name"), f"{sw}.name"), tuple(filters)))
        return Contract(tenant, cname, scope, tuple(subjects), where, _mode(spec) == "audit")

    def admit_group(self, group: EndpointGroup, who: str) -> None:
        winner = self.declared.get(group.ref)
        if winner is not None:
            raise Conflict(f"EPG {group.ref} is also declared by {winner}; {_OLDEST}", winner.partition(" (")[0])
        self.groups[group.ref] = group
        self.declared[group.ref], self.order[group.ref] = who, self.seq

    def admit_contract(self, contract: Contract, who: str) -> None:
        """Filters are tenant-scoped: one name, one set of entries, across the tenant's contracts. Checked in
        full before anything is admitted, so a contract that loses leaves no filter behind."""
        tenant = contract.tenant
        winner = self.declared.get(contract.key)
        if winner is not None:
            raise Conflict(f"contract {tenant}/{contract.name} is also declared by {winner}; {_OLDEST}",
                           winner.partition(" (")[0])
        mine: dict[tuple[str, str], tuple[FilterEntry, ...]] = {}
        for si, subject in enumerate(contract.subjects):
            for fi, sf in enumerate(subject.filters):
                fw, fname, entries = f"spec.subjects[{si}].filters[{fi}]", sf.filter.name, sf.filter.entries
                seen = self.filters.get((tenant, fname))
                if seen is not None and seen[0] != entries:
                    raise Conflict(f"{fw}: filter {shown(fname)} of tenant {tenant} is also defined with other entries "
                                   f"by {seen[1]} (filters are tenant-scoped: one name, one set of entries); "
                                   f"{_OLDEST}", seen[1].partition(" (")[0])
                if mine.get((tenant, fname), entries) != entries:
                    raise Bad(f"{fw}: filter {shown(fname)} is defined twice in this contract with other entries")
                mine[(tenant, fname)] = entries
        for key, entries in mine.items():
            self.filters.setdefault(key, (entries, who))
        self.contracts[contract.key] = contract
        self.declared[contract.key], self.order[contract.key] = who, self.seq


_OLDEST = "the oldest object wins (creationTimestamp, then name), so this one is ignored"
_NEWEST = "\uffff"  # sorts after every timestamp: an object without one counts as the newest


def _age(body: dict[str, Any]) -> str:
    created = (body.get("metadata") or {}).get("creationTimestamp")
    return created if isinstance(created, str) and created else _NEWEST


def _admission_order(obj: tuple[str, str, str, str, dict[str, Any], int]) -> tuple[Any, ...]:
    kind, _, name, _, body, seq = obj
    if kind in ("EndpointGroup", "Contract"):
        return (1, _age(body), name, seq)
    return (0, "", "", seq)


def _declarer(kind: str, name: str, where: str, body: dict[str, Any]) -> str:
    """How a conflict names the object that won: `EndpointGroup shop-api (created ...)`, or where it came from."""
    created = _age(body)
    origin = where.rpartition(f": {kind} ")[0]
    if created != _NEWEST:
        return f"{kind} {name} (created {created})"
    return f"{kind} {name} ({origin})" if origin else f"{kind} {name}"


def _mode(spec: dict[str, Any]) -> str:
    mode = spec.get("mode", "enforce")
    if mode not in MODES:
        raise Bad(f"spec.mode {shown(mode)} must be enforce or audit")
    return str(mode)


def _port_name_ok(name: str) -> bool:
    return bool(_PORT_NAME.match(name)) and "--" not in name and any(c.isalpha() for c in name)


def _aci(value: Any, what: str) -> str:
    err = aci_name_error(value)
    if err:
        raise Bad(f"{what} {err}")
    return str(value)


_ENTRY_FIELDS = {"name", "etherType", "protocol", "destinationPorts"}


def _entry(value: Any, what: str) -> FilterEntry:
    e = _map(value, what)
    unknown = set(e) - _ENTRY_FIELDS
    if unknown:
        raise Bad(f"{what}: unsupported field {shown(min(unknown, key=str))} "
                  f"(supported: {', '.join(sorted(_ENTRY_FIELDS))})")
    name = _aci(e.get("name"), f"{what}.name")
    ether = e.get("etherType", "ip")
    if ether not in ETHER_TYPES:
        raise Bad(f"{what}.etherType {shown(ether)} must be one of {', '.join(ETHER_TYPES)}")
    proto = _entry_protocol(e.get("protocol"), f"{what}.protocol")
    ports = e.get("destinationPorts")
    first = last = None
    if ports is not None and ports != "unspecified":
        if proto not in PORTED:
            raise Bad(f"{what}.destinationPorts needs protocol tcp, udp or sctp")
        first, last = _port_range(ports, f"{what}.destinationPorts")
    return FilterEntry(name, ether, proto, first, last)


def _entry_protocol(value: Any, what: str) -> int | None:
    if value is None or value == "unspecified":
        return None
    if isinstance(value, str) and value.lower() in PROTOCOLS:
        return PROTOCOLS[value.lower()]
    if isinstance(value, str) and _DIGITS.match(value):
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 255:
        return value or None  # 0 is the APIC's "unspecified"
    raise Bad(f"{what} {shown(value)} must be tcp, udp, icmp, sctp, another APIC protocol name, or 0-255")


def _port_value(text: str, what: str, whole: Any) -> int:
    if text in PORT_NAMES:
        return PORT_NAMES[text]
    if _DIGITS.match(text) and 1 <= int(text) <= 65535:
        return int(text)
    raise Bad(f"{what} {shown(whole)}: {shown(text)} is not a port 1-65535 or one of {', '.join(PORT_NAMES)}")


def _port_range(value: Any, what: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise Bad(f"{what} {shown(value)} must be a port (\"80\"), a range (\"8000-8080\") or an APIC name (\"http\")")
    lo_text, sep, hi_text = value.partition("-")
    lo = _port_value(lo_text.strip(), what, value)
    hi = _port_value(hi_text.strip(), what, value) if sep else lo
    if hi < lo:
        raise Bad(f"{what} {shown(value)}: the range is empty")
    return lo, hi


def load_cluster(documents: Iterable[Document]) -> Cluster:
    """Validate and type the documents; raises InvalidInput listing every problem found."""
    return _Loader().run(documents)


def load_cluster_lenient(documents: Iterable[Document], cache: ParseCache | None = None,
                         config: Config | None = None) -> tuple[Cluster, tuple[Rejected, ...]]:
    """For a live cluster: report each object that is invalid instead of refusing all. With a `cache` (the
    controller's and the agent's, from one load to the next), an object that was valid and became invalid keeps
    its last valid version in force (unknown is never absent: a NetworkPolicy we cannot read now must not open
    what it closed); an object never valid is left out (EndpointGroups and Contracts then fail closed: an EPG
    without its declaration has no contracts, a contract that is not there permits nothing). Unchanged objects
    are not parsed again; `config`: the Config when it is not among the documents."""
    loader = _Loader(cache)
    if config is not None:
        loader.config = config
    cluster = loader.run(documents, lenient=True)
    loader.cache.turn()
    return cluster, tuple(loader.rejected)


def patch_pods(previous: Cluster, rejected: tuple[Rejected, ...],
               changed: Mapping[tuple[str, str], Document | None]) -> tuple[Cluster, list[Pod], list[Pod]] | None:
    """`previous` (loaded leniently, with `rejected` left out) after changes to pods only: `changed` maps each
    changed pod's (namespace, name) to its document now, or None if it is gone. Returns the cluster with the
    pods that went and the ones that came, or None where only a full load gives the right answer: a changed
    pod that is invalid or takes another pod's address, a pod rejected before (its rival may have gone), or a
    namespace that exists only through its pods."""
    if any(r.kind == "Pod" for r in rejected):
        return None
    loader = _Loader()
    for (ns, name), doc in changed.items():
        if doc is None:
            continue
        head = loader.header(doc)
        if head is None or head[:3] != ("Pod", ns, name):
            return None
        loader.guard(head[3], loader.parse_and_admit, *head[:3], head[4])
    if loader.problems:
        return None
    fresh = loader.pods
    gone = [p for p in previous.pods if (p.namespace, p.name) in changed]
    kept = [p for p in previous.pods if (p.namespace, p.name) not in changed]
    for pod in (*fresh, *gone):
        ns_obj = previous.namespaces.get(pod.namespace)
        if ns_obj is None or not ns_obj.declared:
            return None
    taken = {ip for p in kept if p.is_endpoint for ip in p.ips}
    if any(p.is_endpoint and not taken.isdisjoint(p.ips) for p in fresh):
        return None
    pods = list(kept)  # in (namespace, name) order, as every load leaves them
    for pod in fresh:
        bisect.insort(pods, pod, key=lambda p: (p.namespace, p.name))
    return replace(previous, pods=tuple(pods)), gone, fresh


def documents(origin: str, bodies: Iterable[Any]) -> list[Document]:
    """Number the documents of one source as `origin#N` (1-based) for messages."""
    return [Document(f"{origin}#{i}", body) for i, body in enumerate(bodies, 1)]


__all__ = ["Document", "ParseCache", "Rejected", "documents", "load_cluster", "load_cluster_lenient", "parse_selector",
           "patch_pods"]


