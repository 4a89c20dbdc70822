"""The engine: the one place that knows the policy semantics (DESIGN 4).

`decide` answers one connection with a verdict per layer and the objects that decided it; `compile`
turns the whole model into the policy IR every renderer consumes. Both are built on the same primitives
(an EPG's addresses, the services a pair of EPGs may use, a peer's addresses, a rule's services), so a
verdict and a rendered rule cannot disagree.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from functools import cached_property

from contracts.contract import Action, ContractEntry
from contracts.ir import EVERY_ADDRESS, AddressGroup, IRRule, NamedPort, NodeIR, PodIR, PolicyIR, Rules
from contracts.model import Model
from contracts.netpol import PROTOCOL_NUMBERS, NetworkPolicy, Peer, Rule, protocol_name
from contracts.sets import (
    ALL_SERVICES,
    EVERYWHERE,
    NO_SERVICES,
    NOWHERE,
    AddressSet,
    IPAddress,
    ServiceSet,
    service,
)
from epg.identity import EPGRef
from epg.kube import LabelSelector, Pod, parse_ip


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One end of a connection: one address, a pod's (a dual-stack pod is one endpoint per family) or no pod's."""

    ip: IPAddress
    pod: Pod | None = None

    @property
    def name(self) -> str:
        return self.pod.key if self.pod is not None else str(self.ip)


@dataclass(frozen=True, slots=True)
class Reason:
    text: str
    objects: tuple[str, ...] = ()
    denies: bool = False  # this reason is (part of) why the layer denies


@dataclass(frozen=True, slots=True)
class LayerVerdict:
    allowed: bool
    reasons: tuple[Reason, ...]
    # The verdict with the objects in audit mode enforced, where it denies what this verdict allows: the reasons
    # of a "would drop". None where audit mode changes nothing.
    audit: LayerVerdict | None = None

    @property
    def denied_by(self) -> tuple[str, ...]:
        """The objects of the reasons that deny, once each (what a drop is attributed to)."""
        return tuple(dict.fromkeys(o for r in self.reasons if r.denies for o in r.objects))


@dataclass(frozen=True, slots=True)
class Verdict:
    src: Endpoint
    dst: Endpoint
    port: int
    protocol: str
    allowed: bool
    epg: LayerVerdict
    netpol: LayerVerdict
    src_epg: str = ""  # how the EPG layer classified each end, in words
    dst_epg: str = ""

    @property
    def would_drop(self) -> bool:
        """Allowed, but denied once the objects in audit mode are enforced: passes, reported as "would drop"."""
        return self.allowed and (self.epg.audit is not None or self.netpol.audit is not None)

    def layer(self, name: str) -> LayerVerdict:
        """A layer by its JSON name: "epg" or "networkPolicy"."""
        return self.epg if name == "epg" else self.netpol

    @property
    def deciding_layer(self) -> str | None:
        """The layer a drop (or, for an allowed connection, a would-drop) is attributed to when both could be:
        the EPG layer first, as a packet meets it first in each direction. None: nothing to attribute."""
        for name in LAYERS:
            lv = self.layer(name)
            if (not self.allowed and not lv.allowed) or (self.would_drop and lv.audit is not None):
                return name
        return None

    @property
    def summary(self) -> str:
        """One line: why, from the layer that decided."""
        if self.src.ip == self.dst.ip or self.src.ip.version != self.dst.ip.version:
            return self.epg.reasons[0].text
        if self.allowed:
            text = "; ".join(r.text for r in (*self.epg.reasons[:1], *self.netpol.reasons[:1]))
            if self.would_drop:
                would = [r.text for v in (self.epg, self.netpol) if v.audit is not None for r in v.audit.reasons
                         if r.denies]
                text += "; would be denied in audit mode: " + "; ".join(would[:2])
            return text
        deciding = [v for v in (self.epg, self.netpol) if not v.allowed]
        return "; ".join(r.text for v in deciding for r in v.reasons[:1])

    def to_json(self) -> dict[str, object]:
        def layer(v: LayerVerdict) -> dict[str, object]:
            out: dict[str, object] = {
                "allowed": v.allowed,
                "reasons": [{"text": r.text, "objects": list(r.objects), "denies": r.denies} for r in v.reasons]}
            if v.audit is not None:
                out["audit"] = layer(v.audit)
            return out
        return {"from": self.src.name, "to": self.dst.name, "port": self.port, "protocol": self.protocol,
                "allowed": self.allowed, "wouldDrop": self.would_drop, "epg": layer(self.epg),
                "networkPolicy": layer(self.netpol), "fromEpg": self.src_epg, "toEpg": self.dst_epg}


LAYERS = ("epg", "networkPolicy")


@dataclass(frozen=True, slots=True, order=True)
class Origin:
    """Where a compiled rule comes from: an object and which of its rules, e.g. ("NetworkPolicy shop/web",
    "ingress rule 1"), ("Contract shop/web-to-api", "shop/store/web -> shop/store/api"), ("EndpointGroup
    shop/store/web", "intra-EPG"); an object in audit mode with rule "audit mode"."""

    object: str
    rule: str
# A rule that passes what only objects in audit mode would drop: the dataplane logs it as a would-drop.
AUDIT_EVERYTHING = IRRule(EVERY_ADDRESS, ALL_SERVICES, audit=True)


@dataclass(frozen=True, slots=True)
class EPGClass:
    """How the EPG layer sees an endpoint: in an EPG, isolated (invalid annotation), or outside every EPG."""

    ref: EPGRef | None
    why: str
    isolated: bool = False


def _pods_addresses(pods: Iterable[Pod]) -> AddressSet:
    """Every address of the pods: a pod is all of its addresses (status.podIPs), in every group."""
    return AddressSet.of(ip for p in pods for ip in p.ips)


# What defines a group, by kind: its members follow from this and the model.
@dataclass(frozen=True, slots=True)
class _Selection:
    """A NetworkPolicy peer's pods: the pod selector's pods in these namespaces."""

    namespaces: frozenset[str]
    selector: LabelSelector | None


@dataclass(frozen=True, slots=True)
class _EPGMembers:
    ref: EPGRef
    family: int


@dataclass(frozen=True, slots=True)
class _EPGSubnets:
    ref: EPGRef
    family: int


@dataclass(frozen=True, slots=True)
class _Fixed:
    """An ipBlock's addresses."""

    addresses: AddressSet


_Definition = _Selection | _EPGMembers | _EPGSubnets | _Fixed


class _Members(Mapping[str, AddressSet]):
    """The members of an engine's groups by key, each computed when first asked for: a whole cluster's compile
    needs the groups' identities only, a node's table the members of the groups its pods' rules use."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def __getitem__(self, key: str) -> AddressSet:
        return self._engine.members(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._engine._defs)

    def __len__(self) -> int:
        return len(self._engine._defs)


class Engine:
    def __init__(self, model: Model, previous: Engine | None = None) -> None:
        """`previous`: the engine of the model this one's was patched from (Model.with_pods: pods changed,
        nothing else). Everything that does not depend on pods is taken over (the rules among it: they refer to
        groups, not to their members), and the members of the groups the previous engine computed are updated
        by the changed pods only: the agent's path for a pod event."""
        self.model = model
        self._pair_entries: dict[tuple[EPGRef, EPGRef], tuple[ContractEntry, ...]] = {}
        self._pair_services: dict[tuple[EPGRef, EPGRef, int, bool], ServiceSet] = {}
        self._selected_pods: dict[tuple[str, LabelSelector | None], tuple[Pod, ...]] = {}
        self._ns_selected: dict[LabelSelector, frozenset[str]] = {}
        self._groups: dict[str, AddressGroup] = {}  # by definition: one object however many rules use it
        self._defs: dict[str, _Definition] = {}
        self._members: dict[str, AddressSet] = {}  # the groups' members computed so far
        self._rule_peers: dict[tuple[int, str], AddressSet] = {}
        self._selected: dict[tuple[Pod, str], list[NetworkPolicy]] = {}
        self._policy_rules: dict[tuple[NetworkPolicy, str], tuple[IRRule, ...]] = {}
        self._pod_rules: dict[tuple[str, tuple[int, ...]], tuple[IRRule, ...]] = {}
        self._epg_rules: dict[tuple[EPGRef | None, str], tuple[IRRule, ...]] = {}
        patch = model.patched_from
        if previous is not None and patch is not None and patch[0]() is previous.model:
            self._inherit(previous, patch[1], patch[2])

    def _inherit(self, previous: Engine, gone: tuple[Pod, ...], fresh: tuple[Pod, ...]) -> None:
        """Take over from `previous`, whose model had `gone` where this one has `fresh` (pods only)."""
        gone = tuple(p for p in gone if p.is_endpoint)
        fresh = tuple(p for p in fresh if p.is_endpoint)
        out, left, came = set(gone), _pods_addresses(gone), _pods_addresses(fresh)
        changed_ns = {p.namespace for p in (*gone, *fresh)}
        # Contracts, EPGs, policies and namespaces did not change: what follows from them alone holds.
        self._pair_entries, self._pair_services = previous._pair_entries, previous._pair_services
        self._ns_selected, self._groups, self._defs = previous._ns_selected, previous._groups, previous._defs
        for name in ("_contract_users", "_policies_by_ns"):
            if name in previous.__dict__:
                self.__dict__[name] = previous.__dict__[name]
        if "_pod_addresses" in previous.__dict__:
            self.__dict__["_pod_addresses"] = previous._pod_addresses.patched(left, came)
        if self._families == previous._families:  # else the EPG rules gain or lose a family
            self._policy_rules, self._pod_rules = previous._policy_rules, previous._pod_rules
            self._epg_rules = previous._epg_rules
        # Which policies select a pod: the pods that stayed are the same objects, the new ones are asked anew.
        # (Entries of pods that went stay behind unused, until the dictionary is twice its usual size.)
        if len(previous._selected) < 4 * len(self.model.endpoints) + 64:
            self._selected = previous._selected
        for (ns, sel), pods in previous._selected_pods.items():
            if ns in changed_ns:
                pods = (*(p for p in pods if p not in out),
                        *(p for p in fresh if p.namespace == ns and (sel is None or sel.matches(p.labels))))
            self._selected_pods[(ns, sel)] = pods
        old_epg, new_epg = previous.model.placements, self.model.placements
        for key, before in previous._members.items():
            definition = self._defs[key]
            if isinstance(definition, _Selection):
                if not changed_ns & definition.namespaces:
                    self._members[key] = before
                    continue
                joined = _pods_addresses(p for p in fresh if p.namespace in definition.namespaces
                                         and (definition.selector is None or definition.selector.matches(p.labels)))
            elif isinstance(definition, _EPGMembers):
                ref = definition.ref
                if not any(old_epg[p].epg == ref for p in gone) and not any(new_epg[p].epg == ref for p in fresh):
                    self._members[key] = before
                    continue
                joined = _family(_pods_addresses(p for p in fresh if new_epg[p].epg == ref), definition.family)
            elif isinstance(definition, _Fixed):
                self._members[key] = before
                continue
            else:
                continue  # EPG subnets: what pods hold is not the EPG's, computed again when asked for
            self._members[key] = before.patched(left, joined)
        if "_named_ports" in previous.__dict__:
            table = dict(previous._named_ports)
            names = {NamedPort(cp.name, PROTOCOL_NUMBERS[cp.protocol]) for p in (*gone, *fresh) for cp in p.ports
                     if cp.name is not None}
            for n in names:
                entries = {ip: port for ip, port in table.get(n, {}).items() if not left.contains(ip)}
                for p in fresh:
                    number = p.named_port(n.name, protocol_name(n.protocol))
                    if number is not None:
                        entries.update(dict.fromkeys(p.ips, number))
                table[n] = dict(sorted(entries.items(), key=lambda e: (e[0].version, int(e[0]))))
            self.__dict__["_named_ports"] = table

    # ------------------------------------------------------------------ groups

    def _group(self, key: str, definition: _Definition, *, pods: bool = True, family: int | None = None
               ) -> AddressGroup:
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = AddressGroup(key, pods, family)
            self._defs[key] = definition
        return group

    def members(self, key: str) -> AddressSet:
        """A group's members (computed once per engine; taken over from the previous engine where it can)."""
        found = self._members.get(key)
        if found is None:
            d = self._defs[key]
            if isinstance(d, _Selection):
                found = _pods_addresses(p for ns in d.namespaces for p in self._select(ns, d.selector))
            elif isinstance(d, _EPGMembers):
                found = _family(_pods_addresses(self.model.members.get(d.ref, ())), d.family)
            elif isinstance(d, _EPGSubnets):
                found = NOWHERE
                for owner, owned in self._subnet_owners:
                    if owner == d.ref:
                        found = found.union(_family(owned, d.family))
            else:
                found = d.addresses
            self._members[key] = found
        return found

    # ------------------------------------------------------------------ EPG layer primitives

    @cached_property
    def _subnet_owners(self) -> tuple[tuple[EPGRef, AddressSet], ...]:
        """The addresses each EPG's `subnets` classify: longest prefix wins (ties: the smaller EPG name),
        pod addresses excluded (pods are classified by annotation only)."""
        claimed = self._pod_addresses
        subnets = sorted(((net, g.ref) for g in self.model.cluster.groups.values() for net in g.subnets),
                         key=lambda t: (-t[0].prefixlen, t[1]))
        owned: dict[EPGRef, AddressSet] = defaultdict(lambda: NOWHERE)
        for net, ref in subnets:
            mine = AddressSet.of([net]).difference(claimed)
            owned[ref] = owned[ref].union(mine)
            claimed = claimed.union(mine)
        return tuple(owned.items())

    @cached_property
    def _subnet_addresses(self) -> AddressSet:
        known = NOWHERE
        for _, addrs in self._subnet_owners:
            known = known.union(addrs)
        return known

    @cached_property
    def _pod_addresses(self) -> AddressSet:
        return _pods_addresses(self.model.endpoints)

    @cached_property
    def _families(self) -> tuple[int, ...]:
        """The address families the cluster's pods and EPG subnets use (an IPv4-only cluster gets no IPv6 rules:
        the first IPv6 address changes the EPG rules, as any new kind of member would)."""
        known = self._pod_addresses.union(self._subnet_addresses)
        return tuple(f for f, ranges in ((4, known.v4), (6, known.v6)) if ranges)

    @cached_property
    def _unclassified(self) -> AddressSet:
        """Addresses that are no pod's and in no EPG subnet: the EPG layer leaves them to NetworkPolicy."""
        return self._pod_addresses.union(self._subnet_addresses).complement()

    def epg_groups(self, ref: EPGRef, family: int) -> tuple[AddressGroup, ...]:
        """An EPG's addresses of one family as groups: its pods, and (an EPG with subnets) the part of its
        subnets no pod holds."""
        members = self._group(f"epg {ref} v{family}", _EPGMembers(ref, family), family=family)
        group = self.model.group(ref)
        if group is None or not any(net.version == family for net in group.subnets):
            return (members,)
        return members, self._group(f"epg-subnets {ref} v{family}", _EPGSubnets(ref, family), pods=False,
                                    family=family)

    def classify(self, ep: Endpoint) -> EPGClass:
        if ep.pod is not None:
            placement = self.model.placements[ep.pod]
            if placement.epg is None:
                return EPGClass(None, f"{ep.name} is {placement.describe()}", isolated=True)
            return EPGClass(placement.epg, f"{ep.name} is in EPG {placement.describe()}")
        for ref, addrs in self._subnet_owners:
            if addrs.contains(ep.ip):
                return EPGClass(ref, f"{ep.name} is in EPG {ref} (external: one of its subnets)")
        return EPGClass(None, f"{ep.name} is no pod and in no EPG subnet")

    @cached_property
    def _contract_users(self) -> tuple[dict[tuple[str, str], list[EPGRef]], dict[tuple[str, str], list[EPGRef]]]:
        providers: dict[tuple[str, str], list[EPGRef]] = defaultdict(list)
        consumers: dict[tuple[str, str], list[EPGRef]] = defaultdict(list)
        for g in self.model.cluster.groups.values():
            for name in g.provides:
                c = self.model.lookup_contract(g.ref, name)
                if c is not None:
                    providers[c.key].append(g.ref)
            for name in g.consumes:
                c = self.model.lookup_contract(g.ref, name)
                if c is not None:
                    consumers[c.key].append(g.ref)
        return providers, consumers

    def _contracts_of(self, ref: EPGRef, role: str) -> set[tuple[str, str]]:
        group = self.model.group(ref)
        if group is None:
            return set()
        names = group.provides if role == "provides" else group.consumes
        found = (self.model.lookup_contract(ref, n) for n in names)
        return {c.key for c in found if c is not None}

    def contract_entries(self, consumer: EPGRef, provider: EPGRef) -> tuple[ContractEntry, ...]:
        """Every filter entry of the contracts that connect consumer to provider and whose scope admits them."""
        key = (consumer, provider)
        cached = self._pair_entries.get(key)
        if cached is None:
            shared = self._contracts_of(provider, "provides") & self._contracts_of(consumer, "consumes")
            contracts = self.model.cluster.contracts
            cached = tuple(
                e for k in sorted(shared) if contracts[k].scope.admits(consumer, provider)
                for e in contracts[k].entries()
            )
            self._pair_entries[key] = cached
        return cached

    def epg_services(self, consumer: EPGRef, provider: EPGRef, family: int, *, enforced: bool = False
                     ) -> ServiceSet:
        """What consumer may open towards provider: intra-EPG by `intraEpg`, else permits minus denies. With
        `enforced`, the deny entries of contracts in audit mode are left out (they report, not drop)."""
        key = (consumer, provider, family, enforced)
        cached = self._pair_services.get(key)
        if cached is None:
            if consumer == provider:
                group = self.model.group(consumer)
                cached = NO_SERVICES if group is not None and group.intra_epg == "isolate" else ALL_SERVICES
            else:
                permit, deny = NO_SERVICES, NO_SERVICES
                for e in self.contract_entries(consumer, provider):
                    if e.action is Action.PERMIT:
                        permit = permit.union(e.entry.services(family))
                    elif not (enforced and e.contract.audit):
                        deny = deny.union(e.entry.services(family))
                cached = permit.difference(deny)
            self._pair_services[key] = cached
        return cached

    @cached_property
    def audit_epgs(self) -> tuple[EPGRef, ...]:
        """The EPGs in audit mode, in order."""
        return tuple(sorted(g.ref for g in self.model.cluster.groups.values() if g.audit))

    @cached_property
    def has_audit(self) -> bool:
        """Whether any EndpointGroup, Contract or NetworkPolicy is in audit mode."""
        c = self.model.cluster
        return (bool(self.audit_epgs) or any(k.audit for k in c.contracts.values())
                or any(p.audit for p in c.policies))

    def _audit_epg(self, ref: EPGRef | None) -> bool:
        group = self.model.group(ref) if ref is not None else None
        return group is not None and group.audit

    # ------------------------------------------------------------------ NetworkPolicy primitives

    @cached_property
    def _policies_by_ns(self) -> dict[str, list[NetworkPolicy]]:
        by_ns: dict[str, list[NetworkPolicy]] = defaultdict(list)
        for pol in self.model.cluster.policies:
            by_ns[pol.namespace].append(pol)
        return by_ns

    def selecting(self, pod: Pod, direction: str) -> list[NetworkPolicy]:
        """The policies that select this pod for `direction`, in policy order (computed on first use: a node's
        compile needs them for its own pods only)."""
        found = self._selected.get((pod, direction))
        if found is None:
            ingress: list[NetworkPolicy] = []
            egress: list[NetworkPolicy] = []
            if pod.is_endpoint:
                for pol in self._policies_by_ns.get(pod.namespace, ()):
                    if pol.pod_selector.matches(pod.labels):
                        if pol.affects_ingress:
                            ingress.append(pol)
                        if pol.affects_egress:
                            egress.append(pol)
            self._selected[(pod, "ingress")], self._selected[(pod, "egress")] = ingress, egress
            found = ingress if direction == "ingress" else egress
        return found

    @cached_property
    def _label_index(self) -> dict[str, dict[tuple[str, str | None], list[Pod]]]:
        """Per namespace: (label key, value) -> its pods, and (label key, None) -> the pods that have the key,
        so a selector starts from its rarest term (and checks the rest on those pods only)."""
        index: dict[str, dict[tuple[str, str | None], list[Pod]]] = defaultdict(lambda: defaultdict(list))
        for pod in self.model.endpoints:
            by_label = index[pod.namespace]
            for key, value in pod.labels.items():
                by_label[(key, value)].append(pod)
                by_label[(key, None)].append(pod)
        return index

    def _select(self, namespace: str, selector: LabelSelector | None) -> tuple[Pod, ...]:
        """The namespace's pods a pod selector matches (once per namespace and selector)."""
        key = (namespace, selector)
        found = self._selected_pods.get(key)
        if found is None:
            pods: list[Pod] = self.model.pods_by_ns.get(namespace, [])
            if selector is not None and not selector.is_empty:
                by_label = self._label_index.get(namespace, {})
                candidates = [by_label.get(item, []) for item in selector.match_labels]
                for req in selector.match_expressions:
                    if req.operator == "Exists":
                        candidates.append(by_label.get((req.key, None), []))
                    elif req.operator == "In":
                        candidates.append([p for v in req.values for p in by_label.get((req.key, v), [])])
                if candidates:
                    pods = min(candidates, key=len)
                pods = [p for p in pods if selector.matches(p.labels)]
            found = self._selected_pods[key] = tuple(pods)
        return found

    def _namespaces(self, peer: Peer, policy_ns: str) -> frozenset[str]:
        sel = peer.namespace_selector
        if sel is None:
            return frozenset((policy_ns,))
        found = self._ns_selected.get(sel)
        if found is None:
            namespaces = self.model.cluster.namespaces.values()
            found = self._ns_selected[sel] = frozenset(n.name for n in namespaces if sel.matches(n.labels))
        return found

    def peer_group(self, peer: Peer, policy_ns: str) -> AddressGroup:
        """A `from`/`to` element as an address group, named by its definition: the same selector (or ipBlock)
        in any policy of any namespace it means the same pods in is one group."""
        if peer.ip_block is not None:
            block = peer.ip_block
            key = f"ipBlock {block.cidr} except [{','.join(sorted(map(str, block.excepts)))}]"
            return self._groups.get(key) or self._group(key, _Fixed(block.addresses), pods=False)
        scope = (f"ns={policy_ns}" if peer.namespace_selector is None
                 else f"namespaces [{peer.namespace_selector.canonical}]")
        key = f"pods {scope} [{'all' if peer.pod_selector is None else peer.pod_selector.canonical}]"
        return self._groups.get(key) or self._group(key, _Selection(self._namespaces(peer, policy_ns),
                                                                    peer.pod_selector))

    def peer_matches(self, peer: Peer, policy_ns: str, ep: Endpoint) -> bool:
        if peer.ip_block is not None:
            return peer.ip_block.contains(ep.ip)  # ipBlocks match pod addresses too
        pod = ep.pod  # a selector peer: the pod's namespace is one it reaches, and its labels match
        return (pod is not None and pod.is_endpoint and pod.namespace in self._namespaces(peer, policy_ns)
                and (peer.pod_selector is None or peer.pod_selector.matches(pod.labels)))

    def rule_peers(self, rule: Rule, policy_ns: str) -> AddressSet:
        """Every address the rule's `from`/`to` admits: everywhere when it has none."""
        key = (id(rule), policy_ns)
        cached = self._rule_peers.get(key)
        if cached is None:
            cached = EVERYWHERE if not rule.peers else NOWHERE
            for peer in rule.peers:
                cached = cached.union(self.members(self.peer_group(peer, policy_ns).key))
            self._rule_peers[key] = cached
        return cached

    # ------------------------------------------------------------------ decide

    def endpoint(self, value: Pod | IPAddress | str, family: int | None = None) -> Endpoint:
        """An Endpoint from a pod, a pod key ("ns/name"), or an address (a pod's address is that pod). A pod is
        taken by its address of `family` (4 or 6; default: its primary address); ValueError if it has none."""
        if isinstance(value, Pod):
            ip = value.ip if family is None else value.address(family)
            if ip is None:
                raise ValueError(f"pod {value.key} has no {'' if family is None else f'IPv{family} '}address")
            return Endpoint(ip, value)
        if isinstance(value, str):
            if "/" in value and value in self.model.pods_by_key:
                return self.endpoint(self.model.pods_by_key[value], family)
            value = parse_ip(value)
        pod = self.model.pod_by_ip.get(value)
        return Endpoint(value, pod)

    def decide(self, src: Endpoint, dst: Endpoint, port: int, protocol: str) -> Verdict:
        """The verdict on a new connection from src to dst, with each layer's reasons. The two ends are two
        addresses of one family: an IPv4 address opens no connection to an IPv6 one (denied, saying so)."""
        proto = PROTOCOL_NUMBERS[protocol]
        if src.ip == dst.ip:
            own = LayerVerdict(True, (Reason(f"{src.name} may always reach itself"),))
            return Verdict(src, dst, port, protocol, True, own, own)
        if src.ip.version != dst.ip.version:
            none = LayerVerdict(False, (Reason(f"{src.name} ({src.ip}) is IPv{src.ip.version} and {dst.name} "
                                               f"({dst.ip}) IPv{dst.ip.version}: no connection across families"),))
            return Verdict(src, dst, port, protocol, False, none, none)
        cs, cd = self.classify(src), self.classify(dst)
        epg = self._epg_layer(cs, cd, dst.ip.version, proto, port)
        netpol = self._netpol_layer(src, dst, protocol, proto, port)
        return Verdict(src, dst, port, protocol, epg.allowed and netpol.allowed, epg, netpol, cs.why, cd.why)

    def _epg_layer(self, cs: EPGClass, cd: EPGClass, family: int, proto: int, port: int) -> LayerVerdict:
        """The EPG layer as enforced; where objects in audit mode would deny what it allows, with that verdict
        as `audit` (an EPG in audit mode: its pairs pass; a contract in audit mode: its deny entries do not
        drop)."""
        for c in (cs, cd):
            if c.isolated:
                return LayerVerdict(False, (Reason(f"{c.why}: it reaches nobody and nobody reaches it",
                                                   denies=True),))
        if cs.ref is None or cd.ref is None:
            outside = cs if cs.ref is None else cd
            return LayerVerdict(True, (Reason(f"{outside.why}: the EPG layer leaves it to NetworkPolicy"),))
        full = self._epg_pair(cs.ref, cd.ref, family, proto, port, enforced=False)
        auditing = [r for r in dict.fromkeys((cs.ref, cd.ref)) if self._audit_epg(r)]
        if auditing:
            enforced = LayerVerdict(True, tuple(
                Reason(f"EPG {r} is in audit mode: the EPG layer reports its members' drops, does not enforce them",
                       (f"EndpointGroup {r}",)) for r in auditing))
        elif any(e.contract.audit and e.action is Action.DENY for e in self.contract_entries(cs.ref, cd.ref)):
            enforced = self._epg_pair(cs.ref, cd.ref, family, proto, port, enforced=True)
        else:
            return full
        return replace(enforced, audit=full if enforced.allowed and not full.allowed else None)

    def _epg_pair(self, consumer: EPGRef, provider: EPGRef, family: int, proto: int, port: int, *,
                  enforced: bool) -> LayerVerdict:
        """Two EPGs: intra-EPG by `intraEpg`, else the contracts between them (deny wins; with `enforced`, the
        deny entries of contracts in audit mode are left out)."""
        if consumer == provider:
            group = self.model.group(consumer)
            if group is not None and group.intra_epg == "isolate":
                return LayerVerdict(False, (Reason(f"both in EPG {consumer}, which is intraEpg: isolate",
                                                   (f"EndpointGroup {consumer}",), denies=True),))
            return LayerVerdict(True, (Reason(f"both in EPG {consumer} (intra-EPG traffic is permitted)"),))
        permits: list[ContractEntry] = []
        denies: list[ContractEntry] = []
        for e in self.contract_entries(consumer, provider):
            if e.entry.services(family).contains(proto, port):
                if e.action is Action.PERMIT:
                    permits.append(e)
                elif not (enforced and e.contract.audit):
                    denies.append(e)
        what = f"{port}/{protocol_name(proto)}"
        if denies:
            return LayerVerdict(False, tuple(
                Reason(f"denied by {e.describe()} (deny wins)" + (" (audit mode)" if e.contract.audit else ""),
                       (f"Contract {e.contract.tenant}/{e.contract.name}",), denies=True)
                for e in denies))
        if permits:
            return LayerVerdict(True, tuple(
                Reason(f"permitted by {e.describe()}: {provider} provides it, {consumer} consumes it",
                       (f"Contract {e.contract.tenant}/{e.contract.name}",))
                for e in permits))
        return LayerVerdict(False, (Reason(self._no_contract(consumer, provider, what),
                                           (f"EndpointGroup {consumer}", f"EndpointGroup {provider}"), denies=True),))

    def _no_contract(self, consumer: EPGRef, provider: EPGRef, what: str) -> str:
        shared = self._contracts_of(provider, "provides") & self._contracts_of(consumer, "consumes")
        if not shared:
            return f"no contract provided by EPG {provider} is consumed by EPG {consumer}"
        contracts = self.model.cluster.contracts
        out_of_scope = [f"{t}/{n} (scope {contracts[(t, n)].scope.value})" for t, n in sorted(shared)
                        if not contracts[(t, n)].scope.admits(consumer, provider)]
        text = f"no permit entry for {what} in the contracts between EPG {consumer} and EPG {provider}"
        if out_of_scope:
            text += f"; out of scope for this pair: {', '.join(out_of_scope)}"
        return text

    def _netpol_layer(self, src: Endpoint, dst: Endpoint, protocol: str, proto: int, port: int) -> LayerVerdict:
        """The NetworkPolicy layer as enforced (policies in audit mode left out); where the policies in audit
        mode would deny what it allows, with that verdict as `audit`."""
        ends = [(direction, target.pod, peer) for direction, target, peer in (("egress", src, dst),
                                                                               ("ingress", dst, src))
                if target.pod is not None]
        if not ends:
            return LayerVerdict(True, (Reason("neither end is a pod: no NetworkPolicy applies"),))
        enforced = self._directions(ends, dst.pod, proto, port, with_audit=False)
        if not any(p.audit for direction, target, _ in ends for p in self.selecting(target, direction)):
            return enforced
        full = self._directions(ends, dst.pod, proto, port, with_audit=True)
        return replace(enforced, audit=full if enforced.allowed and not full.allowed else None)

    def _directions(self, ends: list[tuple[str, Pod, Endpoint]], dst_pod: Pod | None, proto: int, port: int, *,
                    with_audit: bool) -> LayerVerdict:
        verdicts = [self._direction(direction, target, peer, dst_pod, proto, port, with_audit=with_audit)
                    for direction, target, peer in ends]
        verdicts.sort(key=lambda v: v[0])  # the deciding (denying) direction first; stable otherwise
        return LayerVerdict(all(ok for ok, _ in verdicts), tuple(reason for _, reason in verdicts))

    def _direction(self, direction: str, target: Pod, peer: Endpoint, dst_pod: Pod | None, proto: int,
                   port: int, *, with_audit: bool = False) -> tuple[bool, Reason]:
        selecting = self.selecting(target, direction)
        policies = selecting if with_audit else [p for p in selecting if not p.audit]
        what = f"{port}/{protocol_name(proto)}"
        if not policies:
            audited = ", ".join(p.key for p in selecting if p.audit)
            return True, Reason(f"no NetworkPolicy selects {target.key} for {direction}: {direction} is open"
                                + (f" (in audit mode: NetworkPolicy {audited})" if audited else ""))
        for pol in policies:
            rules = pol.ingress if direction == "ingress" else pol.egress
            for i, rule in enumerate(rules):
                peer_ok = not rule.peers or any(self.peer_matches(p, pol.namespace, peer) for p in rule.peers)
                if peer_ok and rule.services(dst_pod).contains(proto, port):
                    way = "from" if direction == "ingress" else "to"
                    return True, Reason(f"NetworkPolicy {pol.key} {direction} rule {i + 1} allows {what} {way} "
                                        f"{peer.name}", (f"NetworkPolicy {pol.key}",))
        names = ", ".join(p.key + (" (refused: over its element budget, it allows nothing)" if p.refused else "")
                          + (" (audit mode)" if p.audit else "") for p in policies)
        way = "from" if direction == "ingress" else "to"
        return False, Reason(f"no rule allows {what} {way} {peer.name}: {target.key} is selected for {direction} "
                             f"by NetworkPolicy {names}", tuple(f"NetworkPolicy {p.key}" for p in policies),
                             denies=True)

    # ------------------------------------------------------------------ compile

    def compile(self, nodes: Iterable[str] | None = None) -> PolicyIR:
        """The policy IR of the given nodes (default: every node that runs a pod)."""
        wanted = set(nodes) if nodes is not None else None
        by_node: dict[str, list[PodIR]] = defaultdict(list)
        named: set[NamedPort] = set()
        for pod in self.model.endpoints:
            if pod.node is None or (wanted is not None and pod.node not in wanted) or not pod.ips:
                continue
            compiled = self.pod_ir(pod)
            for rules in (compiled.ingress_netpol, compiled.egress_netpol):
                for rule in rules or ():
                    named.update(rule.named)
            by_node[pod.node].append(compiled)
        for node in wanted or ():
            by_node.setdefault(node, [])
        resolved = {n: self._named_ports.get(n, {}) for n in sorted(named, key=lambda n: (n.name, n.protocol))}
        nodes = self.model.cluster.nodes
        cidrs = {n: AddressSet.of(nodes[n].pod_cidrs) if n in nodes else NOWHERE for n in by_node}
        return PolicyIR({n: NodeIR(n, tuple(pods), cidrs[n]) for n, pods in sorted(by_node.items())},
                        self._unclassified,
                        self._pod_addresses, self._subnet_addresses, resolved, _Members(self))

    def pod_ir(self, pod: Pod) -> PodIR:
        """One pod's rules, both layers, both directions (pods the same policies select, or of one EPG, share
        their rules objects)."""
        if not pod.ips:
            raise ValueError(f"pod {pod.key} has no IP address")
        ref = self.model.epg_of(pod)
        return PodIR(pod.key, pod.ips, self._compile_epg(ref, "ingress"), self._compile_epg(ref, "egress"),
                     self._netpol_rules(pod, "ingress"), self._netpol_rules(pod, "egress"), epg_isolated=ref is None)

    def named_port(self, port: NamedPort) -> Mapping[IPAddress, int]:
        """A named port resolved: every pod that has it -> its number, in address order."""
        return self._named_ports.get(port, {})

    def _compile_epg(self, ref: EPGRef | None, direction: str) -> tuple[IRRule, ...]:
        """An EPG's rules for one direction: a rule per peer EPG (and family), its group and the services the
        pair may use. Addresses outside every EPG pass through PolicyIR.epg_open."""
        key = (ref, direction)
        cached = self._epg_rules.get(key)
        if cached is not None:
            return cached
        rules: list[IRRule] = []
        audit: list[IRRule] = []  # after the rules: what only objects in audit mode would drop passes, logged
        if ref is not None:  # else isolated by an invalid annotation: no rules
            own_audit = self._audit_epg(ref)
            providers, consumers = self._contract_users
            peers: set[EPGRef] = {ref}
            for contract in self._contracts_of(ref, "provides" if direction == "ingress" else "consumes"):
                peers.update((consumers if direction == "ingress" else providers).get(contract, ()))
            for other in sorted(peers):
                consumer, provider = (other, ref) if direction == "ingress" else (ref, other)
                for family in self._families:
                    services = self.epg_services(consumer, provider, family)
                    if not services.is_empty:
                        rules.extend(IRRule(group, services) for group in self.epg_groups(other, family))
                    if own_audit or self._audit_epg(other):
                        continue  # the audit rules below pass all of it
                    extra = self.epg_services(consumer, provider, family, enforced=True).difference(services)
                    if not extra.is_empty:  # a contract in audit mode denies it
                        audit.extend(IRRule(group, extra, audit=True) for group in self.epg_groups(other, family))
            if own_audit:
                audit = [AUDIT_EVERYTHING]
            else:
                for other in self.audit_epgs:
                    if other != ref:
                        audit.extend(IRRule(group, ALL_SERVICES, audit=True)
                                     for family in self._families for group in self.epg_groups(other, family))
        cached = self._epg_rules[key] = (*rules, *audit)
        return cached

    def _netpol_rules(self, pod: Pod, direction: str) -> Rules:
        """The rules of the policies that select the pod for `direction` (None: none does), shared by every pod
        the same policies select. Policies in audit mode count only where no enforced policy selects the pod
        (elsewhere they could only allow more): then their rules, and a last rule that passes the rest, logged
        as a would-drop."""
        selecting = self.selecting(pod, direction)
        policies = [p for p in selecting if not p.audit] or selecting
        if not policies:
            return None
        key = (direction, tuple(id(p) for p in policies))
        cached = self._pod_rules.get(key)
        if cached is None:
            rules = dict.fromkeys(r for pol in policies for r in self._compile_policy(pol, direction))
            if policies[0].audit:
                rules[AUDIT_EVERYTHING] = None
            cached = self._pod_rules[key] = tuple(rules)
        return cached

    def _compile_policy(self, pol: NetworkPolicy, direction: str) -> tuple[IRRule, ...]:
        """One policy's rules for one direction, the same for every pod it selects: named ports stay names,
        which the destination pod resolves (PolicyIR.named_ports)."""
        key = (pol, direction)
        cached = self._policy_rules.get(key)
        if cached is None:
            out: list[IRRule] = []
            for rule in pol.ingress if direction == "ingress" else pol.egress:
                out.extend(self._compile_rule(pol, rule))
            cached = self._policy_rules[key] = tuple(out)
        return cached

    def _compile_rule(self, pol: NetworkPolicy, rule: Rule) -> tuple[IRRule, ...]:
        numbered = rule.services(None)  # a named port resolves to nothing without a destination pod
        named = tuple(dict.fromkeys(NamedPort(p.port, PROTOCOL_NUMBERS[p.protocol])
                                    for p in rule.ports if isinstance(p.port, str)))
        if numbered.is_empty and not named:
            return ()
        groups = [self.peer_group(p, pol.namespace) for p in rule.peers] if rule.peers else [EVERY_ADDRESS]
        return tuple(IRRule(g, numbered, named) for g in groups
                     if g.pods or g.everywhere or not self.members(g.key).is_empty)

    def rule_origins(self, pod: Pod, layer: str, direction: str) -> dict[IRRule, tuple[Origin, ...]]:
        """Each compiled rule of one pod's layer ("epg" | "networkPolicy") and direction -> the objects and
        rules it comes from (several, where equal rules of several policies or contracts are one), for
        counting what each policy and contract admits (`epgbridge drops --stats`)."""
        out: dict[IRRule, list[Origin]] = defaultdict(list)
        if layer == "networkPolicy":
            selecting = self.selecting(pod, direction)
            policies = [p for p in selecting if not p.audit] or selecting
            for pol in policies:
                for i, rule in enumerate(pol.ingress if direction == "ingress" else pol.egress):
                    for r in self._compile_rule(pol, rule):
                        out[r].append(Origin(f"NetworkPolicy {pol.key}", f"{direction} rule {i + 1}"))
                if pol.audit:
                    out[AUDIT_EVERYTHING].append(Origin(f"NetworkPolicy {pol.key}", "audit mode"))
            return {r: tuple(dict.fromkeys(o)) for r, o in out.items()}
        ref = self.model.epg_of(pod)
        if ref is None:
            return {}
        for r in self._compile_epg(ref, direction):
            if r.peers.everywhere:
                out[r].append(Origin(f"EndpointGroup {ref}", "audit mode"))
                continue
            definition = self._defs[r.peers.key]
            assert isinstance(definition, (_EPGMembers, _EPGSubnets))
            other = definition.ref
            consumer, provider = (other, ref) if direction == "ingress" else (ref, other)
            if other == ref:
                out[r].append(Origin(f"EndpointGroup {ref}", "intra-EPG"))
            elif r.audit and self._audit_epg(other):
                out[r].append(Origin(f"EndpointGroup {other}", "audit mode"))
            else:
                action = Action.DENY if r.audit else Action.PERMIT
                for e in self.contract_entries(consumer, provider):
                    if e.action is action and (not r.audit or e.contract.audit):
                        out[r].append(Origin(f"Contract {e.contract.tenant}/{e.contract.name}",
                                             f"{consumer} -> {provider}" + (" (audit mode)" if r.audit else "")))
        return {r: tuple(dict.fromkeys(o)) for r, o in out.items()}

    @cached_property
    def _named_ports(self) -> dict[NamedPort, dict[IPAddress, int]]:
        """Every pod's named container ports: (name, protocol) -> pod address -> number, in address order."""
        table: dict[NamedPort, dict[IPAddress, int]] = defaultdict(dict)
        addresses = [(ip, pod) for pod in self.model.endpoints for ip in pod.ips]
        addresses.sort(key=lambda t: (t[0].version, int(t[0])))
        for ip, pod in addresses:
            for cp in pod.ports:
                if cp.name is not None:
                    table[NamedPort(cp.name, PROTOCOL_NUMBERS[cp.protocol])].setdefault(ip, cp.port)
        return table


def _family(addrs: AddressSet, family: int) -> AddressSet:
    return AddressSet(addrs.v4) if family == 4 else AddressSet(v6=addrs.v6)



__all__ = ["Endpoint", "Engine", "LayerVerdict", "Origin", "Reason", "Verdict", "service"]
