"""Rendering the model as APIC object trees: one fvTenant tree per tenant, in the form `sync` takes.

Per tenant (DESIGN 5.2):
- fvAp > fvAEPg (pcEnfPref from intraEpg; fvRsBd when a bridge domain is named; fvRsProv/fvRsCons by contract
  name, which the APIC resolves in the EPG's tenant, then in common, as the model does);
- vzBrCP (scope) > vzSubj > vzRsSubjFiltAtt (filter name, action);
- vzFilter > vzEntry (etherT, prot, dFromPort/dToPort in the APIC's own spelling: ``tcp``, ``http``, ``132``);
- optionally (``host_protection``) every NetworkPolicy as hostprotPol > hostprotSubj > hostprotRule >
  hostprotRemoteIp, as the ACI CNI renders them, in one tenant.

Which EPGs: every declared EndpointGroup, and every EPG that pods are placed in by annotation (the cluster
default EPG included) so that the network admin sees them. External EndpointGroups (with ``subnets``) are
not rendered: on the APIC they are l3extInstP objects under an L3Out that epgbridge does not own; each one
yields a warning naming what to configure instead.

The peers and ports of host-protection rules come from the engine (`Engine.rule_peers`, `Engine.selecting`,
`Rule.services`), so they cannot disagree with `decide`. The output is deterministic: every list is sorted.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from contracts.contract import Contract, Filter, FilterEntry
from contracts.engine import Engine
from contracts.model import Model
from contracts.netpol import NetworkPolicy, Rule
from contracts.sets import EVERYWHERE, FULL_PORTS, AddressSet, IPAddress, ServiceSet
from epg.endpointgroup import EndpointGroup
from epg.errors import InvalidInput, Problem
from epg.identity import EPGRef
from epg.kube import Pod

from .meta import CLASSES, PORT_NAMES, PROTOCOL_NAMES, FailedValidation

JsonObject = dict[str, Any]

# hostprotSubj names of the ACI CNI, so both render NetworkPolicies alike.
HPP_SUBJECTS = {"ingress": "networkpolicy-ingress", "egress": "networkpolicy-egress"}
_NAME_LIMIT = 64
_SAFE = re.compile(r"[a-zA-Z0-9_.-]{1,64}\Z")
_V4_ALL = ((0, (1 << 32) - 1),)
_V6_ALL = ((0, (1 << 128) - 1),)


@dataclass(frozen=True)
class Rendering:
    """The desired trees (one fvTenant each, sorted by name) and what was left out, in words."""

    tenants: tuple[JsonObject, ...]
    warnings: tuple[str, ...] = ()


def render_tenants(model: Model, *, host_protection: bool = False,
                   host_protection_tenant: str | None = None) -> list[JsonObject]:
    """The desired fvTenant trees of `model`; raises InvalidInput when a name breaks an APIC naming rule."""
    return list(render(model, host_protection=host_protection,
                       host_protection_tenant=host_protection_tenant).tenants)


def render(model: Model, *, host_protection: bool = False, host_protection_tenant: str | None = None) -> Rendering:
    """Like `render_tenants`, with the warnings about what is not rendered."""
    builder = _TenantBuilder()
    warnings: list[str] = []

    groups = dict(model.cluster.groups)
    for ref in sorted({p.epg for p in model.placements.values() if p.epg is not None} - set(groups)):
        groups[ref] = EndpointGroup(ref, source=f"pods placed in EPG {ref} by annotation")
    for ref in sorted(groups):
        group = groups[ref]
        if group.is_external:
            nets = ", ".join(str(n) for n in group.subnets)
            warnings.append(
                f"EndpointGroup {ref} is external (subnets {nets}): not pushed; on the APIC, classify these "
                f"subnets with an l3extInstP under your L3Out in tenant {ref.tenant}"
                + (f" and have it provide {', '.join(group.provides)}" if group.provides else "")
                + (f" and consume {', '.join(group.consumes)}" if group.consumes else "")
            )
            continue
        builder.epg(group)

    for contract in sorted(model.cluster.contracts.values(), key=lambda c: c.key):
        builder.contract(contract)

    if host_protection:
        tenant = host_protection_tenant or model.config.default_epg.tenant
        engine = Engine(model)
        for policy in sorted(model.cluster.policies, key=lambda p: (p.namespace, p.name)):
            builder.add(tenant, "hostprotPol", _hostprot_policy(engine, policy, warnings))

    return Rendering(builder.build(), tuple(warnings))


def hostprot_name(namespace: str, name: str) -> str:
    """The hostprotPol name of a NetworkPolicy: ``<ns>_<name>``, or, when that is longer than 64 characters or
    holds characters the APIC refuses, a readable prefix and 16 hex digits of its SHA-256 (deterministic)."""
    plain = f"{namespace}_{name}"
    if _SAFE.match(plain):
        return plain
    digest = hashlib.sha256(plain.encode()).hexdigest()[:16]
    prefix = re.sub(r"[^a-zA-Z0-9_.-]", "-", plain)[: _NAME_LIMIT - len(digest) - 1]
    return f"{prefix}_{digest}"


# ---------------------------------------------------------------------------------------------- trees


def _mo(cls: str, attributes: dict[str, str], children: Iterable[JsonObject] = ()) -> JsonObject:
    body: JsonObject = {"attributes": attributes}
    kids = list(children)
    if kids:
        body["children"] = kids
    return {cls: body}


class _TenantBuilder:
    """Collects the objects of each tenant, checks names against the APIC's rules, and builds sorted trees."""

    def __init__(self) -> None:
        self.epgs: dict[str, dict[str, dict[str, JsonObject]]] = defaultdict(lambda: defaultdict(dict))
        self.objects: dict[str, dict[tuple[str, str], JsonObject]] = defaultdict(dict)
        self.problems: list[Problem] = []

    def check(self, where: str, cls: str, prop: str, value: str) -> None:
        rule = CLASSES[cls].props[prop]
        try:
            rule.canonical(value)
        except FailedValidation:
            self.problems.append(Problem(where, f"{value!r} cannot be an APIC {cls} {prop}: it must be "
                                         f"{rule.min_len}-{rule.max_len} of {(rule.pattern or '').rstrip('+*')}"))

    def epg(self, group: EndpointGroup) -> None:
        ref: EPGRef = group.ref
        where = group.source or f"EndpointGroup {ref}"
        self.check(where, "fvTenant", "name", ref.tenant)
        self.check(where, "fvAp", "name", ref.app_profile)
        self.check(where, "fvAEPg", "name", ref.name)
        children = []
        if group.bridge_domain:
            self.check(where, "fvBD", "name", group.bridge_domain)
            children.append(_mo("fvRsBd", {"tnFvBDName": group.bridge_domain}))
        for cls, names in (("fvRsProv", group.provides), ("fvRsCons", group.consumes)):
            for name in sorted(set(names)):
                self.check(where, "vzBrCP", "name", name)
                children.append(_mo(cls, {"tnVzBrCPName": name}))
        enforcement = "enforced" if group.intra_epg == "isolate" else "unenforced"
        self.epgs[ref.tenant][ref.app_profile][ref.name] = _mo(
            "fvAEPg", {"name": ref.name, "pcEnfPref": enforcement}, children)

    def contract(self, contract: Contract) -> None:
        where = contract.source or f"Contract {contract.tenant}/{contract.name}"
        self.check(where, "fvTenant", "name", contract.tenant)
        self.check(where, "vzBrCP", "name", contract.name)
        subjects = []
        for subject in sorted(contract.subjects, key=lambda s: s.name):
            self.check(where, "vzSubj", "name", subject.name)
            attachments = {
                sf.filter.name: _mo("vzRsSubjFiltAtt", {"tnVzFilterName": sf.filter.name, "action": sf.action.value})
                for sf in subject.filters
            }
            subjects.append(_mo("vzSubj", {"name": subject.name}, (attachments[k] for k in sorted(attachments))))
            for sf in subject.filters:
                self.add(contract.tenant, "vzFilter", self._filter(where, sf.filter))
        self.add(contract.tenant, "vzBrCP",
                 _mo("vzBrCP", {"name": contract.name, "scope": contract.scope.value}, subjects))

    def _filter(self, where: str, flt: Filter) -> JsonObject:
        self.check(where, "vzFilter", "name", flt.name)
        entries = []
        for entry in sorted(flt.entries, key=lambda e: e.name):
            self.check(where, "vzEntry", "name", entry.name)
            entries.append(_mo("vzEntry", _entry_attributes(entry)))
        return _mo("vzFilter", {"name": flt.name}, entries)

    def add(self, tenant: str, cls: str, tree: JsonObject) -> None:
        """A tenant-level object; the first of a name wins (filters shared by contracts are identical)."""
        name = tree[cls]["attributes"]["name"]
        if cls == "hostprotPol":
            self.check(f"host-protection policy {name}", "fvTenant", "name", tenant)
        self.objects[tenant].setdefault((cls, name), tree)

    def build(self) -> tuple[JsonObject, ...]:
        if self.problems:
            raise InvalidInput(sorted(set(self.problems)))
        order = {"vzBrCP": 0, "vzFilter": 1, "hostprotPol": 2}
        trees = []
        for tenant in sorted(set(self.epgs) | set(self.objects)):
            aps = [
                _mo("fvAp", {"name": ap}, (epgs[name] for name in sorted(epgs)))
                for ap, epgs in sorted(self.epgs.get(tenant, {}).items())
            ]
            objects = self.objects.get(tenant, {})
            rest = [objects[key] for key in sorted(objects, key=lambda k: (order[k[0]], k[1]))]
            trees.append(_mo("fvTenant", {"name": tenant}, [*aps, *rest]))
        return tuple(trees)


def _entry_attributes(entry: FilterEntry) -> dict[str, str]:
    """vzEntry attributes as the APIC stores them: names where it has them (``tcp``, ``http``), else numbers."""
    first = "unspecified" if entry.first_port is None else _port(entry.first_port)
    last_port = entry.last_port if entry.last_port is not None else entry.first_port
    last = "unspecified" if last_port is None else _port(last_port)
    return {
        "name": entry.name,
        "etherT": entry.ether_type,
        "prot": "unspecified" if entry.protocol is None else _protocol(entry.protocol),
        "dFromPort": first,
        "dToPort": last,
    }


def _port(number: int) -> str:
    return PORT_NAMES.get(number, str(number))


def _protocol(number: int) -> str:
    return PROTOCOL_NAMES.get(number, str(number))


# ---------------------------------------------------------------------------------------------- host protection


def _hostprot_policy(engine: Engine, policy: NetworkPolicy, warnings: list[str]) -> JsonObject:
    """One NetworkPolicy as a hostprotPol: a subject per direction it isolates, rules that allow.

    As in the ACI CNI, HPPs only hold allow rules; a pod selected for a direction gets default-deny there and
    the union of the rules. A rule with no peers, or an ipBlock covering a whole family, has no remote IP
    (any address); peers that match nothing give no rule at all.
    """
    subjects = []
    for direction, isolates, rules in (("ingress", policy.affects_ingress, policy.ingress),
                                       ("egress", policy.affects_egress, policy.egress)):
        if not isolates:
            continue
        selected = [p for p in engine.model.pods_by_ns.get(policy.namespace, ())
                    if any(pol is policy for pol in engine.selecting(p, direction))]
        parts = [_rule_parts(engine, policy, rule, direction, selected, warnings) for rule in rules]
        budget = engine.model.config.max_policy_elements
        cost = sum(_hostprot_cost(p) for p in parts)
        hp_rules: list[JsonObject] = []
        if cost > budget:  # a rule per port range, each listing every remote prefix: this multiplies
            warnings.append(f"NetworkPolicy {policy.key}: its host-protection {direction} rules would be {cost:,} "
                            f"APIC objects, over the budget of {budget:,} (Config spec.maxPolicyElements): "
                            "rendered without allow rules (its pods isolated on the APIC; nodes enforce it)")
        else:
            for index, rule_parts in enumerate(parts):
                hp_rules.extend(_hostprot_rules(index, direction, rule_parts))
        subjects.append(_mo("hostprotSubj", {"name": HPP_SUBJECTS[direction]}, hp_rules))
    return _mo("hostprotPol", {"name": hostprot_name(policy.namespace, policy.name)}, subjects)


def _rule_parts(engine: Engine, policy: NetworkPolicy, rule: Rule, direction: str, selected: list[Pod],
                warnings: list[str]) -> list[tuple[AddressSet, ServiceSet]]:
    """(peer addresses, services) pairs that together make up one NetworkPolicy rule."""
    peers = engine.rule_peers(rule, policy.namespace)
    if not rule.has_named_ports:
        return [(peers, rule.services(None))]
    if direction == "ingress":
        # Named ports resolve against the selected pods; one HPP serves them all, so it takes the union.
        resolved = {p: rule.services(p) for p in selected}
        services = rule.services(None)
        for s in resolved.values():
            services = services.union(s)
        if len({str(s) for s in resolved.values()}) > 1:
            warnings.append(f"NetworkPolicy {policy.key}: named ports resolve to different numbers on the pods "
                            f"it selects; its host-protection policy allows their union ({services})")
        return [(peers, services)]
    # Egress: each destination pod resolves the names against its own ports (as the engine compiles it).
    unnamed = rule.services(None)
    parts: list[tuple[AddressSet, ServiceSet]] = [(peers, unnamed)]
    by_services: dict[ServiceSet, list[IPAddress]] = defaultdict(list)
    for pod in engine.model.endpoints:
        addresses = [a for a in pod.ips if peers.contains(a)] if pod.ports else []  # a pod is all its addresses
        if addresses:
            extra = rule.services(pod).difference(unnamed)
            if not extra.is_empty:
                by_services[extra].extend(addresses)
    for services, found in sorted(by_services.items(), key=lambda item: str(item[0])):
        parts.append((AddressSet.of(found), services))
    return parts


def _hostprot_cost(parts: list[tuple[AddressSet, ServiceSet]]) -> int:
    """How many objects `_hostprot_rules` makes of a rule's parts: per port range a rule and its remote prefixes."""
    total = 0
    for addrs, services in parts:
        if services.is_empty:
            continue
        prefixes = sum(1 for _ in addrs.prefixes()) if addrs != EVERYWHERE else 0
        total += len(_service_boxes(services)) * (1 + prefixes)
    return total


def _hostprot_rules(index: int, direction: str, parts: list[tuple[AddressSet, ServiceSet]]) -> list[JsonObject]:
    rules: list[JsonObject] = []
    for family, ethertype in ((4, "ipv4"), (6, "ipv6")):
        count = 0
        for addrs, services in parts:
            ranges = addrs.v4 if family == 4 else addrs.v6
            if not ranges or services.is_empty:
                continue
            if ranges in (_V4_ALL, _V6_ALL):
                remote: list[JsonObject] = []
            else:
                family_set = AddressSet(v4=ranges) if family == 4 else AddressSet(v6=ranges)
                remote = [_mo("hostprotRemoteIp", {"addr": str(net)}) for net in family_set.prefixes()]
            for protocol, first, last in _service_boxes(services):
                rules.append(_mo("hostprotRule", {
                    "name": f"{index}_{count}-{ethertype}",
                    "direction": direction,
                    "ethertype": ethertype,
                    "protocol": protocol,
                    "fromPort": first,
                    "toPort": last,
                    "connTrack": "reflexive",
                }, remote))
                count += 1
    return rules


def _service_boxes(services: ServiceSet) -> list[tuple[str, str, str]]:
    """(protocol, fromPort, toPort) rows covering `services`; every protocol at once is ``unspecified``."""
    if services.others:
        # NetworkPolicy produces "every protocol" only whole (a rule without ports).
        return [("unspecified", "unspecified", "unspecified")]
    rows = []
    for proto, intervals in services.ports:
        for lo, hi in intervals:
            if (lo, hi) == FULL_PORTS[0]:
                rows.append((_protocol(proto), "unspecified", "unspecified"))
            else:
                rows.append((_protocol(proto), _port(lo), _port(hi)))
    return rows
