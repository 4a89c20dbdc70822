"""Writes: applying a POSTed MO tree to the store as one transaction, with the APIC's validation and codes.

Codes (docs/apic-rest-facts.md section 2): 102 parent missing, 103 create on an existing object, 120 value
outside an enumeration, 122 unknown class, 801 a value that fails validation, 822 naming property missing
(also when ``children`` comes before ``attributes``), 400 for malformed payloads and unknown attributes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ..meta import (
    CLASSES,
    READ_ONLY_PROPS,
    BadValue,
    ClassMeta,
    FailedValidation,
    class_for_rn,
    parent_dn,
    split_dn,
)
from .store import MoStore, StoredMo, Transaction

ADMIN_UID = "15374"
SYSTEM_UID = "0"
_STATUS_WORDS = frozenset({"created", "modified", "deleted"})
# Objects the APIC adds on its own when a parent is created (seen live; see the facts file).
_IMPLICIT_CHILDREN: Mapping[str, list[tuple[str, dict[str, str]]]] = {
    "fvTenant": [("fvEpTags", {}), ("fvRsTenantMonPol", {"tnMonEPGPolName": ""}), ("vnsSvcCont", {})],
    "fvAEPg": [("fvRsCustQosPol", {"tnQosCustomPolName": ""})],
    "fvCtx": [("vzAny", {})],
}
# Port pairs the APIC completes: a range given by its first port alone is that one port.
_PORT_PAIRS: Mapping[str, tuple[tuple[str, str], ...]] = {
    "vzEntry": (("dFromPort", "dToPort"), ("sFromPort", "sToPort")),
    "hostprotRule": (("fromPort", "toPort"),),
}


class Rejection(Exception):
    """The APIC's answer to a bad request: HTTP status plus the code and text of the error envelope."""

    def __init__(self, code: str, text: str, status: int = 400) -> None:
        super().__init__(text)
        self.code = code
        self.text = text
        self.status = status


def timestamp() -> str:
    """APIC-style modTs: ``2019-09-07T06:04:20.673+00:00``."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}+00:00"


def canonical_dn(dn: str) -> str:
    """`dn` with the APIC's optional brackets around naming values removed (``uni/tn-[a]`` is ``uni/tn-a``),
    where the class's own RN format has none; unknown RNs are left as they are."""
    rns = split_dn(dn)
    if not rns or rns[0] != "uni":
        return dn
    out, parent = ["uni"], "polUni"
    for rn in rns[1:]:
        found = class_for_rn(parent, rn)
        if found is None or ("[" in rn and "[" not in found[0].rn):
            bare = re.sub(r"-\[(.*)\]$", r"-\1", rn)
            found_bare = class_for_rn(parent, bare)
            if found_bare is not None and "[" not in found_bare[0].rn:
                rn, found = bare, found_bare
        if found is None:
            return "/".join(out + rns[len(out):])
        out.append(rn)
        parent = found[0].name
    return "/".join(out)


def resolve_dn(dn: str) -> list[tuple[ClassMeta, str]]:
    """The class of every RN along `dn` (``uni/tn-a`` -> polUni, fvTenant); raises Rejection for a bad DN."""
    rns = split_dn(dn)
    if not rns or rns[0] != "uni":
        raise Rejection("400", f"Invalid DN {dn} wrong rn prefix {rns[0] if rns else dn} at position 0")
    path: list[tuple[ClassMeta, str]] = [(CLASSES["polUni"], "uni")]
    for position, rn in enumerate(rns[1:], start=1):
        found = class_for_rn(path[-1][0].name, rn)
        if found is None:
            raise Rejection("400", f"Invalid DN {dn} wrong rn prefix {rn} at position {position}")
        path.append((found[0], "/".join(rns[: position + 1])))
    return path


def apply_post(txn: Transaction, url_dn: str, body: Any, *, uid: str = ADMIN_UID) -> None:
    """Stage the changes of one POST in `txn`; raises Rejection (the store is untouched until commit)."""
    if not isinstance(body, Mapping) or len(body) != 1:
        raise Rejection("400", "invalid data at line '1'. Expected a single managed object at the top level")
    ((cls, node),) = body.items()
    _check_class(cls)
    attributes = _attributes_of(cls, node)
    if attributes.get("dn"):
        attributes["dn"] = canonical_dn(str(attributes["dn"]))
        if isinstance(node, Mapping) and isinstance(node.get("attributes"), dict):
            node["attributes"]["dn"] = attributes["dn"]
    if url_dn:
        path = resolve_dn(canonical_dn(url_dn))
        url_meta, url_dn = path[-1]
    elif attributes.get("dn"):
        url_meta, url_dn = resolve_dn(str(attributes["dn"]))[-1]
    else:
        raise Rejection("400", "invalid data: the DN of the object is not given")
    if cls == url_meta.name:
        dn = str(attributes.get("dn") or url_dn)
        parent_meta_name = resolve_dn(dn)[-2][0].name if dn != "uni" else ""
        parent = "/".join(split_dn(dn)[:-1])
    else:
        parent_meta_name, parent = url_meta.name, url_dn
        dn = str(attributes.get("dn") or f"{parent}/{_rn(CLASSES[cls], attributes, '')}")
    _Writer(txn, uid, url_dn).write(cls, node, dn, parent, parent_meta_name)


def changed_tree(store: MoStore, changes: Mapping[str, StoredMo | None]) -> list[dict[str, Any]]:
    """What ``rsp-subtree=modified`` answers after a write: the changed objects, nested, each with
    ``status`` created, modified or deleted (and its new or changed attributes)."""
    found: dict[str, tuple[str, dict[str, str]]] = {}
    for dn, mo in changes.items():
        before = store.get(dn)
        if mo is None and before is not None:
            found[dn] = (before.cls, {"status": "deleted"})
        elif mo is not None and before is None:
            found[dn] = (mo.cls, {**_shown(mo.attributes), "status": "created"})
        elif mo is not None and before is not None and mo.attributes != before.attributes:
            changed = {k: v for k, v in mo.attributes.items() if before.attributes.get(k) != v and k != "modTs"}
            found[dn] = (mo.cls, {**_shown(changed), "status": "modified"})

    def node(dn: str, top: bool) -> dict[str, Any]:
        cls, attributes = found[dn]
        attributes = {**attributes, "dn" if top else "rn": dn if top else split_dn(dn)[-1]}
        body: dict[str, Any] = {"attributes": dict(sorted(attributes.items()))}
        below = sorted(d for d in found if parent_dn(d) == dn)
        if below:
            body["children"] = [node(d, False) for d in below]
        return {cls: body}

    return [node(dn, True) for dn in sorted(found) if parent_dn(dn) not in found]


def _shown(attributes: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in attributes.items() if k not in ("uid", "lcOwn", "extMngdBy", "monPolDn")}


class _Writer:
    def __init__(self, txn: Transaction, uid: str, url_dn: str = "") -> None:
        self.txn = txn
        self.uid = uid
        self.url_dn = url_dn
        self.now = timestamp()

    def _named(self, dn: str) -> str:
        """How error texts name an object: relative to the URL's DN below it, in full otherwise."""
        return dn[len(self.url_dn) + 1 :] if self.url_dn and dn.startswith(self.url_dn + "/") else dn

    def write(self, cls: str, node: Any, dn: str, parent: str, parent_cls: str) -> None:
        _check_class(cls)
        meta = CLASSES[cls]
        if parent_cls and parent_cls not in meta.parents and "*" not in meta.parents:
            raise Rejection("400", f"Invalid request. Cannot contain child {cls} under parent {parent_cls}")
        attributes = _attributes_of(cls, node)
        naming = meta.naming_from_rn(split_dn(dn)[-1])
        if naming is None:
            raise Rejection("400", f"Invalid DN {dn} wrong rn prefix {split_dn(dn)[-1]} for class {cls}")
        for prop, value in naming.items():
            given = attributes.get(prop)
            if given not in (None, "") and str(given) != value:
                raise Rejection("400", f"dn {dn} does not match the naming property {cls}.{prop}='{given}'")
            attributes.setdefault(prop, value)

        status = _status_of(attributes.pop("status", ""), dn)
        existing = self.txn.get(dn)
        if "deleted" in status:
            if existing is not None:
                self.txn.delete_subtree(dn)
            return
        if dn != "uni" and self.txn.get(parent) is None:
            raise Rejection("102", f"configured object ((Dn0)) not found Dn0={parent}, ")
        if status == {"created"} and existing is not None:
            raise Rejection(
                "103", f"child ({meta.rn_for(existing.attributes)}) of class {cls} is already attached."
            )
        if status == {"modified"} and existing is None:
            raise Rejection("102", f"configured object ((Dn0)) not found Dn0={dn}, ")

        values = self._validated(meta, attributes, dn)
        if existing is None:
            stored = {prop: rule.default_value for prop, rule in meta.props.items()}
            stored.update(values)
            _complete_ports(meta.name, stored)
            stored.update(
                uid=self.uid,
                modTs=self.now,
                lcOwn="local",
                extMngdBy="",
                monPolDn="uni/tn-common/monepg-default",
            )
            self.txn.put(StoredMo(cls, dn, stored))
            for child_cls, child_attributes in _IMPLICIT_CHILDREN.get(cls, []):
                child_dn = f"{dn}/{CLASSES[child_cls].rn}"
                self._system_child(child_cls, child_dn, child_attributes)
        else:
            merged = {**existing.attributes, **values}
            _complete_ports(meta.name, merged)
            if merged != existing.attributes:
                merged["modTs"] = self.now
                self.txn.put(StoredMo(cls, dn, merged))

        children = node.get("children", []) if isinstance(node, Mapping) else []
        if not isinstance(children, list):
            raise Rejection("400", f"invalid data: children of {dn} must be a list")
        for child in children:
            if not isinstance(child, Mapping) or len(child) != 1:
                raise Rejection("400", "incomplete node at line 1")
            ((child_cls, child_node),) = child.items()
            _check_class(child_cls)
            child_attributes = _attributes_of(child_cls, child_node)
            child_dn = str(
                child_attributes.get("dn") or f"{dn}/{_rn(CLASSES[child_cls], child_attributes, dn)}"
            )
            self.write(child_cls, child_node, child_dn, dn, cls)

    def _system_child(self, cls: str, dn: str, attributes: dict[str, str]) -> None:
        if self.txn.get(dn) is not None:
            return
        meta = CLASSES[cls]
        stored = {prop: rule.default_value for prop, rule in meta.props.items()}
        stored.update(attributes)
        stored.update(
            uid=SYSTEM_UID,
            modTs=self.now,
            lcOwn="local",
            extMngdBy="",
            monPolDn="uni/tn-common/monepg-default",
        )
        self.txn.put(StoredMo(cls, dn, stored))

    def _validated(self, meta: ClassMeta, attributes: dict[str, Any], dn: str) -> dict[str, str]:
        values: dict[str, str] = {}
        for prop, raw in attributes.items():
            if prop in READ_ONLY_PROPS and prop not in meta.naming:  # tDn names fvRsDomAtt, fvRsPathAtt
                continue
            rule = meta.props.get(prop)
            if rule is None:
                raise Rejection("400", f"unknown attribute '{prop}' in element '{meta.name}'")
            value = str(raw)
            try:
                values[prop] = rule.canonical(value)
            except BadValue:
                raise Rejection(
                    "120",
                    f"unknown property value {value}, name {prop}, class {meta.name} [(Dn0)] Dn0={dn}, ",
                ) from None
            except FailedValidation:
                raise Rejection(
                    "801", f"property {prop} of {self._named(dn)} failed validation for value '{value}'"
                ) from None
        return values


def _complete_ports(cls: str, attributes: dict[str, str]) -> None:
    for first, last in _PORT_PAIRS.get(cls, ()):
        if attributes.get(first, "unspecified") != "unspecified" and attributes.get(last) == "unspecified":
            attributes[last] = attributes[first]


def _check_class(cls: str) -> None:
    if cls not in CLASSES:
        raise Rejection("122", f"unknown managed object class {cls}")


def _attributes_of(cls: str, node: Any) -> dict[str, Any]:
    if not isinstance(node, Mapping) or "attributes" not in node:
        raise Rejection(
            "400",
            "invalid data at line '1'. Attributes are missing, tag 'attributes' must be specified first, "
            "before any other tag",
        )
    keys = list(node)
    meta = CLASSES[cls]
    # The APIC parses JSON as a stream: children seen before attributes are created without a name.
    if "children" in keys and keys.index("children") < keys.index("attributes") and meta.naming:
        raise Rejection("822", f"naming property ('{cls}.{meta.naming[0]}') is not set.")
    attributes = node["attributes"]
    if not isinstance(attributes, Mapping):
        raise Rejection("400", f"invalid data: attributes of {cls} must be an object")
    return dict(attributes)


def _rn(meta: ClassMeta, attributes: Mapping[str, Any], parent: str) -> str:
    if attributes.get("rn"):
        return str(attributes["rn"])
    try:
        return meta.rn_for({k: str(v) for k, v in attributes.items()})
    except KeyError as missing:
        raise Rejection("822", f"naming property ('{meta.name}.{missing.args[0]}') is not set.") from None


def _status_of(raw: Any, dn: str) -> set[str]:
    words = {w.strip() for w in str(raw).split(",") if w.strip()}
    if not words <= _STATUS_WORDS:
        raise Rejection("120", f"unknown property value {raw}, name status [(Dn0)] Dn0={dn}, ")
    return words


def seed_tree() -> list[dict[str, Any]]:
    """What a fresh APIC holds: tenants common (with its default objects), infra and mgmt."""

    def mo(cls: str, attributes: dict[str, str], *children: dict[str, Any]) -> dict[str, Any]:
        return {cls: {"attributes": attributes, "children": list(children)}}

    common = mo(
        "fvTenant",
        {"name": "common"},
        mo("fvCtx", {"name": "default"}),
        mo("fvBD", {"name": "default"}, mo("fvRsCtx", {"tnFvCtxName": "default"})),
        mo("vzFilter", {"name": "default"}, mo("vzEntry", {"name": "default"})),
        mo(
            "vzBrCP",
            {"name": "default"},
            mo("vzSubj", {"name": "default"}, mo("vzRsSubjFiltAtt", {"tnVzFilterName": "default"})),
        ),
        mo("qosCustomPol", {"name": "default"}),
        mo("monEPGPol", {"name": "default"}),
    )
    return [common, mo("fvTenant", {"name": "infra"}), mo("fvTenant", {"name": "mgmt"})]
