"""Diff-sync of desired MO trees against an APIC: read what we own, plan the difference, write it per tenant.

Ownership: everything epgbridge creates carries ``annotation="orchestrator:epgbridge"`` (`OWNER_ANNOTATION`);
only such objects are ever modified or deleted. Tenants and application profiles that exist without it are
used as containers (we add children under them) and never changed or deleted. An owned object that somebody
else put objects under is kept, and only our objects below it are deleted.

The plan is an object (`Plan`) that prints as text or JSON (``--dry-run``) and is applied in as few POSTs as
the APIC's 1 MB request limit allows: the changed subtree of each tenant, several tenants packed under one
``polUni`` root (``/api/mo/uni.json``), a tenant too large for one request split between its children. A single
changed tenant is POSTed to its own DN. Payloads are upserts (no ``status`` on creates and modifies) plus
``status="deleted"`` for removals, so a POST retried after a lost answer, or a whole sync rerun after a
failure, converges without duplicates: a no-op sync sends no POST at all.

Sharing the APIC (with Ansible, Terraform, the GUI): an object we want that exists under another annotation
(an Ansible edit stamps ``orchestrator:ansible``) is someone else's from then on. The plan reports it
(`Plan.not_owned`, with the owner it found) instead of writing it, and warns (`Plan.warnings`) when one of our
EPGs provides or consumes a contract that is, wholly or in part (subjects, filters, entries), someone else's:
the fabric then enforces entries the engine did not reason about.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from .errors import ApicError, MoTreeError, SyncError
from .meta import CLASSES, split_dn
from .mo import Mo, config_attributes, default_of, from_json, naming_attributes, normalise
from .session import ApicSession

OWNER_ANNOTATION = "orchestrator:epgbridge"
# Classes that may have existed before us: we nest our objects under them but never touch them.
CONTAINER_CLASSES = frozenset({"fvTenant", "fvAp"})
# The APIC refuses request bodies over 1 MB; stay well below it.
MAX_PAYLOAD_BYTES = 900_000

Action = Literal["create", "modify", "delete"]
JsonObject = dict[str, Any]


@dataclass(frozen=True)
class Change:
    """One object to create, modify or delete; `previous` holds the old values of modified attributes."""

    action: Action
    cls: str
    dn: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    previous: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> JsonObject:
        out: JsonObject = {"action": self.action, "class": self.cls, "dn": self.dn}
        if self.action == "create":
            out["attributes"] = dict(self.attributes)
        elif self.action == "modify":
            out["attributes"] = {
                k: {"from": self.previous.get(k, ""), "to": v} for k, v in self.attributes.items()
            }
        return out

    def render(self) -> str:
        mark = {"create": "+", "modify": "~", "delete": "-"}[self.action]
        line = f"  {mark} {self.cls} {self.dn}"
        if self.action == "modify":
            line += ": " + ", ".join(
                f"{k} {self.previous.get(k, '')!r} -> {v!r}" for k, v in sorted(self.attributes.items())
            )
        return line


@dataclass(frozen=True)
class Skipped:
    """An object the plan leaves alone, and why: `wanted` and someone else's (its annotation is `owner`), or
    ours, no longer wanted, but holding somebody else's objects."""

    cls: str
    dn: str
    reason: str
    wanted: bool = False
    owner: str = ""

    def to_dict(self) -> JsonObject:
        out: JsonObject = {"class": self.cls, "dn": self.dn, "reason": self.reason}
        if self.wanted:
            out["owner"] = self.owner
        return out


@dataclass(frozen=True)
class TenantPlan:
    """The changes in one tenant and the single POST body that makes them (None when nothing changes)."""

    dn: str
    changes: tuple[Change, ...]
    payload: JsonObject | None

    @property
    def path(self) -> str:
        return f"/api/mo/{self.dn}.json"


@dataclass(frozen=True)
class Post:
    """One request of the plan: a path, its body, and the tenants it writes to."""

    path: str
    payload: JsonObject
    tenants: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    """What a sync will write: per tenant, the changes and their subtree; `posts` packs them into requests."""

    tenants: tuple[TenantPlan, ...]
    skipped: tuple[Skipped, ...] = ()
    max_payload: int = MAX_PAYLOAD_BYTES
    warnings: tuple[str, ...] = ()

    @property
    def not_owned(self) -> tuple[Skipped, ...]:
        """Objects we want that exist as someone else's: not written, so the APIC differs from the model."""
        return tuple(s for s in self.skipped if s.wanted)

    @property
    def changes(self) -> tuple[Change, ...]:
        return tuple(change for tenant in self.tenants for change in tenant.changes)

    @property
    def is_empty(self) -> bool:
        return not any(tenant.payload for tenant in self.tenants)

    @cached_property
    def posts(self) -> tuple[Post, ...]:
        """The POSTs `apply` sends, in order."""
        return _pack(self.tenants, self.max_payload)

    @property
    def post_count(self) -> int:
        return len(self.posts)

    def summary(self) -> dict[str, int]:
        counts = {"create": 0, "modify": 0, "delete": 0}
        for change in self.changes:
            counts[change.action] += 1
        return {**counts, "posts": self.post_count}

    def to_dict(self) -> JsonObject:
        return {
            "summary": self.summary(),
            "tenants": [
                {"dn": t.dn, "changes": [c.to_dict() for c in t.changes]} for t in self.tenants if t.changes
            ],
            "skipped": [s.to_dict() for s in self.skipped],
            "notOwned": [s.to_dict() for s in self.not_owned],
            "warnings": list(self.warnings),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def render_text(self) -> str:
        lines: list[str] = []
        for tenant in self.tenants:
            if not tenant.changes:
                continue
            counts = {
                a: sum(1 for c in tenant.changes if c.action == a) for a in ("create", "modify", "delete")
            }
            lines.append(
                f"{tenant.dn}: {counts['create']} to create, {counts['modify']} to modify, "
                f"{counts['delete']} to delete"
            )
            lines.extend(change.render() for change in tenant.changes)
        if self.skipped:
            lines.append("left alone:")
            lines.extend(f"  ! {s.cls} {s.dn}: {s.reason}" for s in self.skipped)
        if self.not_owned:
            lines.append(
                f"{len(self.not_owned)} object(s) wanted but not ours: the APIC differs from the snapshot there "
                f"(see docs/apic.md, 'Sharing the APIC')"
            )
        if self.is_empty:
            lines.insert(0, "APIC is in sync: nothing to write." if not self.not_owned else
                         "Nothing epgbridge may write, but the APIC is not in sync: objects it wants are not its own.")
        else:
            lines.append(
                f"{self.post_count} POST{'s' if self.post_count != 1 else ''}: "
                + ", ".join(post.path for post in self.posts)
            )
        return "\n".join(lines)


def plan(
    desired: Sequence[Mapping[str, Any]], session: ApicSession, *, max_payload: int = MAX_PAYLOAD_BYTES
) -> Plan:
    """Compare `desired` (a list of fvTenant trees in APIC JSON) with what the APIC holds.

    Reads one GET to find the tenants holding our objects and one GET per tenant involved. `max_payload`
    bounds the size of each POST body (in bytes of JSON).
    """
    wanted: dict[str, Mo] = {}
    for tree in desired:
        tenant = _desired_tenant(tree)
        if tenant.dn in wanted:
            raise MoTreeError(f"tenant {tenant.dn} appears twice in the desired state; merge the trees first")
        wanted[tenant.dn] = tenant
    tenant_dns = list(wanted) + sorted(_tenants_with_our_objects(session) - set(wanted))
    tenants: list[TenantPlan] = []
    skipped: list[Skipped] = []
    actuals: dict[str, Mo | None] = {}
    for dn in tenant_dns:
        actual = actuals[dn] = _read_tenant(session, dn)
        diff = _TenantDiff()
        node = diff.merge(wanted.get(dn), actual)
        payload = None
        if node is not None:
            body = node["fvTenant"]
            body["attributes"] = {"dn": dn, **body["attributes"]}
            payload = node
        tenants.append(TenantPlan(dn, tuple(diff.changes), payload))
        skipped.extend(diff.skipped)
    return Plan(tuple(tenants), tuple(skipped), max_payload, tuple(_foreign_contracts(wanted, actuals)))


def apply(plan: Plan, session: ApicSession) -> int:
    """Write the plan: its `posts`, in order. Returns the number of POSTs sent."""
    written = 0
    for post in plan.posts:
        try:
            session.post(post.path, post.payload)
        except ApicError as error:
            raise SyncError(
                f"writing {', '.join(post.tenants)} failed after {written} of {plan.post_count} POSTs: "
                f"{error}. Rerunning the sync is safe."
            ) from error
        written += 1
    return written


def sync(desired: Sequence[Mapping[str, Any]], session: ApicSession) -> Plan:
    """Plan and apply in one go; returns the plan that was applied."""
    result = plan(desired, session)
    apply(result, session)
    return result


# Reading


def _tenants_with_our_objects(session: ApicSession) -> set[str]:
    """DNs of tenants holding objects we own at tenant or application-profile level (one GET)."""
    classes = sorted(
        {"fvTenant"}
        | {m.name for m in CLASSES.values() if not m.system and set(m.parents) & {"fvTenant", "fvAp"}}
    )
    condition = ",".join(f'eq({cls}.annotation,"{OWNER_ANNOTATION}")' for cls in classes)
    params = {
        "query-target": "subtree",
        "target-subtree-class": ",".join(classes),
        "query-target-filter": f"or({condition})",
    }
    reply = session.get("/api/mo/uni.json", params)
    found: set[str] = set()
    for obj in reply.get("imdata", []):
        for body in obj.values():
            rns = split_dn(str(body.get("attributes", {}).get("dn", "")))
            if len(rns) >= 2:
                found.add("/".join(rns[:2]))
    return found


def _read_tenant(session: ApicSession, dn: str) -> Mo | None:
    reply = session.get(f"/api/mo/{dn}.json", {"rsp-subtree": "full"})
    imdata = reply.get("imdata", [])
    if not imdata:
        return None
    try:
        return from_json(imdata[0])
    except MoTreeError as error:
        raise ApicError(f"unexpected answer reading {dn}: {error}") from None


def _desired_tenant(tree: Mapping[str, Any]) -> Mo:
    tenant = from_json(tree, "uni")
    if tenant.cls != "fvTenant":
        raise MoTreeError(f"desired trees must be rooted at fvTenant, got {tenant.cls} {tenant.dn}")
    for mo in tenant.walk():
        if mo.cls not in CLASSES:
            raise MoTreeError(f"unknown APIC class {mo.cls} at {mo.dn}")
        mo.attributes.pop("status", None)
        mo.attributes["annotation"] = OWNER_ANNOTATION
    return tenant


# Diffing


def _owned(mo: Mo) -> bool:
    return mo.attributes.get("annotation") == OWNER_ANNOTATION


def _system(mo: Mo) -> bool:
    meta = CLASSES.get(mo.cls)
    return (meta is not None and meta.system) or mo.attributes.get("uid") == "0"


def _foreign_below(mo: Mo) -> Mo | None:
    """The first object below `mo` that is neither ours nor the APIC's own."""
    for below in mo.walk():
        if below is not mo and not _owned(below) and not _system(below):
            return below
    return None


class _TenantDiff:
    """Merges one desired tenant tree with the APIC's, collecting changes and building the POST body."""

    def __init__(self) -> None:
        self.changes: list[Change] = []
        self.skipped: list[Skipped] = []

    def merge(self, desired: Mo | None, actual: Mo | None) -> JsonObject | None:
        """The payload node for this object (None when nothing under it changes)."""
        if desired is None:
            return self._remove(actual) if actual is not None else None
        if actual is None:
            return self._create(desired)
        attributes: dict[str, str] = {}
        if _owned(actual):
            changed, previous = _changed_attributes(desired, actual)
            if changed:
                self.changes.append(Change("modify", desired.cls, desired.dn, changed, previous))
                attributes.update(changed)
        elif desired.cls not in CONTAINER_CLASSES:
            owner = actual.attributes.get("annotation", "")
            self.skipped.append(
                Skipped(
                    desired.cls,
                    desired.dn,
                    f"wanted, but exists on the APIC as {_owner_text(owner)}; not ours, not written",
                    wanted=True,
                    owner=owner,
                )
            )
            return None
        children = self._merge_children(desired, actual)
        if not attributes and not children:
            return None
        return _node(desired.cls, {**naming_attributes(desired), **attributes}, children)

    def _merge_children(self, desired: Mo, actual: Mo) -> list[JsonObject]:
        actual_children = {child.dn: child for child in actual.children}
        desired_dns = {child.dn for child in desired.children}
        nodes = [self.merge(child, actual_children.get(child.dn)) for child in desired.children]
        nodes += [self.merge(None, child) for child in actual.children if child.dn not in desired_dns]
        return [node for node in nodes if node is not None]

    def _create(self, desired: Mo) -> JsonObject:
        for mo in desired.walk():
            self.changes.append(Change("create", mo.cls, mo.dn, config_attributes(mo)))
        return _node(
            desired.cls,
            config_attributes(desired),
            [self._create_payload(child) for child in desired.children],
        )

    def _create_payload(self, mo: Mo) -> JsonObject:
        return _node(mo.cls, config_attributes(mo), [self._create_payload(child) for child in mo.children])

    def _remove(self, actual: Mo) -> JsonObject | None:
        if _owned(actual):
            foreign = _foreign_below(actual)
            if foreign is None:
                self.changes.append(Change("delete", actual.cls, actual.dn))
                return _node(actual.cls, {**naming_attributes(actual), "status": "deleted"}, [])
            self.skipped.append(
                Skipped(
                    actual.cls,
                    actual.dn,
                    f"ours but no longer wanted; kept because {foreign.cls} {foreign.dn} "
                    "below it is not ours",
                )
            )
        # Not ours (or kept): look for our objects further down.
        children = [node for node in (self._remove(child) for child in actual.children) if node is not None]
        if not children:
            return None
        return _node(actual.cls, naming_attributes(actual), children)


def _owner_text(annotation: str) -> str:
    return f"{annotation}'s" if annotation else "someone else's (no annotation)"


def _foreign_contracts(wanted: Mapping[str, Mo], actuals: Mapping[str, Mo | None]) -> list[str]:
    """Warnings for our EPGs' contracts that are someone else's on the APIC, wholly or in part."""
    on_apic: dict[str, Mo] = {mo.dn: mo for tree in actuals.values() if tree is not None for mo in tree.walk()}
    desired: dict[str, Mo] = {mo.dn: mo for tree in wanted.values() for mo in tree.walk()}

    def foreign(dn: str) -> Mo | None:
        mo = on_apic.get(dn)
        return mo if mo is not None and not _owned(mo) and not _system(mo) else None

    def parts(contract_dn: str) -> list[str]:
        """The contract, its subjects and their filter relations, and the filters and entries they use."""
        tree = desired.get(contract_dn) or on_apic.get(contract_dn)
        if tree is None:
            return []
        tenant = "/".join(split_dn(contract_dn)[:2])
        dns = [mo.dn for mo in tree.walk()]
        for mo in tree.walk():
            name = mo.attributes.get("tnVzFilterName")
            if mo.cls in ("vzRsSubjFiltAtt", "vzRsFiltAtt") and name:
                for filter_dn in (f"{tenant}/flt-{name}", f"uni/tn-common/flt-{name}"):
                    found = desired.get(filter_dn) or on_apic.get(filter_dn)
                    if found is not None:
                        dns += [f.dn for f in found.walk()]
                        break
        return dns

    warnings: list[str] = []
    for tree in wanted.values():
        for mo in tree.walk():
            name = mo.attributes.get("tnVzBrCPName")
            if mo.cls not in ("fvRsProv", "fvRsCons") or not name:
                continue
            tenant = "/".join(split_dn(mo.dn)[:2])
            candidates = (f"{tenant}/brc-{name}", f"uni/tn-common/brc-{name}")
            contract = next((dn for dn in candidates if dn in desired or dn in on_apic), None)
            if contract is None:
                continue
            others = [f for f in (foreign(dn) for dn in parts(contract)) if f is not None]
            if others:
                epg = "/".join(split_dn(mo.dn)[:-1])
                verb = "provides" if mo.cls == "fvRsProv" else "consumes"
                owners = sorted({_owner_text(f.attributes.get("annotation", "")) for f in others})
                warnings.append(
                    f"EPG {epg} {verb} contract {contract}, of which {len(others)} object(s) are "
                    f"{' and '.join(owners)} ({others[0].cls} {others[0].dn}{', ...' if len(others) > 1 else ''}): "
                    "the fabric enforces their entries, not the ones epgbridge reasoned from"
                )
    return warnings


def not_owned_by_object(model: Any, not_owned: Sequence[Skipped]) -> dict[tuple[str, str], str]:
    """Which EndpointGroup and Contract objects (kind, name) render to objects someone else owns, with a message
    naming the first of them: for the controller's Synced condition."""
    if not not_owned:
        return {}
    out: dict[tuple[str, str], str] = {}

    def mark(source: str, prefixes: list[str]) -> None:
        kind, _, name = source.rpartition(": ")[2].partition(" ")
        for s in not_owned:
            if any(s.dn == p or s.dn.startswith(p + "/") for p in prefixes):
                out.setdefault((kind, name), f"{s.cls} {s.dn} is {s.owner or 'unannotated'} on the APIC, not "
                               f"{OWNER_ANNOTATION}: not written")

    for group in model.cluster.groups.values():
        mark(group.source, [group.ref.dn])
    for contract in model.cluster.contracts.values():
        filters = [f"uni/tn-{contract.tenant}/flt-{sf.filter.name}" for subject in contract.subjects
                   for sf in subject.filters]
        mark(contract.source, [contract.dn, *filters])
    return out


def _changed_attributes(desired: Mo, actual: Mo) -> tuple[dict[str, str], dict[str, str]]:
    """Attributes whose normalised values differ; attributes we no longer set go back to their default."""
    meta = CLASSES.get(desired.cls)
    naming = set(meta.naming) if meta is not None else set()
    wanted = {k: v for k, v in config_attributes(desired).items() if k not in naming}
    if meta is not None:
        for prop in meta.props:
            default = default_of(desired.cls, prop)
            if (
                prop not in wanted
                and prop not in naming
                and prop in actual.attributes
                and default is not None
            ):
                wanted[prop] = default
    changed: dict[str, str] = {}
    previous: dict[str, str] = {}
    for prop, value in wanted.items():
        current = actual.attributes.get(prop)
        if current is None or normalise(desired.cls, prop, value) != normalise(desired.cls, prop, current):
            changed[prop] = value
            previous[prop] = current if current is not None else ""
    return changed, previous


# Packing


def _pack(tenants: Sequence[TenantPlan], limit: int) -> tuple[Post, ...]:
    """Tenant payloads packed into as few bodies of at most `limit` bytes as possible, in tenant order."""
    pieces = [(t.dn, piece) for t in tenants if t.payload is not None for piece in _split(t.payload, limit)]
    root_size = _size({"polUni": {"attributes": {"dn": "uni"}, "children": []}})
    groups: list[list[tuple[str, JsonObject]]] = []
    size = 0
    for dn, piece in pieces:
        grown = _size(piece) + 2
        if not groups or size + grown > limit:
            groups.append([])
            size = root_size
        groups[-1].append((dn, piece))
        size += grown
    posts = []
    for group in groups:
        dns = tuple(dict.fromkeys(dn for dn, _ in group))
        if len(group) == 1:
            posts.append(Post(f"/api/mo/{group[0][0]}.json", group[0][1], dns))
        else:
            body = _node("polUni", {"dn": "uni"}, [piece for _, piece in group])
            posts.append(Post("/api/mo/uni.json", body, dns))
    return tuple(posts)


def _split(node: JsonObject, limit: int) -> list[JsonObject]:
    """`node` as subtrees of at most `limit` bytes, each repeating the ancestors' attributes (an upsert)."""
    if _size(node) <= limit:
        return [node]
    ((cls, body),) = node.items()
    children = body.get("children", [])
    if not children:
        return [node]  # one object over the limit: nothing to split, the APIC will say so
    shell_size = _size(_node(cls, body["attributes"], [])) + len(',"children": []')
    parts = [part for child in children for part in _split(child, limit - shell_size)]
    groups: list[list[JsonObject]] = []
    size = 0
    for part in parts:
        grown = _size(part) + 2
        if not groups or size + grown > limit:
            groups.append([])
            size = shell_size
        groups[-1].append(part)
        size += grown
    return [_node(cls, dict(body["attributes"]), group) for group in groups]


def _size(obj: JsonObject) -> int:
    return len(json.dumps(obj))


def _node(cls: str, attributes: Mapping[str, str], children: list[JsonObject]) -> JsonObject:
    body: JsonObject = {"attributes": dict(attributes)}
    if children:
        body["children"] = children
    return {cls: body}
