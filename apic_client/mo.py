"""Managed-object trees: parsing APIC JSON, computing DNs, and the value normalisation the diff relies on.

An MO tree in APIC JSON form is ``{"<class>": {"attributes": {...}, "children": [...]}}``. Top-level objects
returned by the APIC carry ``dn``; nested children carry only ``rn``; objects we build carry neither and get
their RN from the naming properties (``tn-{name}``). `Mo` holds one node with its DN resolved.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import MoTreeError
from .meta import CLASSES, READ_ONLY_PROPS, BadValue, FailedValidation, split_dn

JsonObject = dict[str, Any]


@dataclass
class Mo:
    """One managed object: its class, DN, attributes (strings) and children."""

    cls: str
    dn: str
    attributes: dict[str, str]
    children: list[Mo] = field(default_factory=list)

    @property
    def rn(self) -> str:
        return split_dn(self.dn)[-1]

    def walk(self) -> Iterator[Mo]:
        """This object and every descendant, parents before children."""
        yield self
        for child in self.children:
            yield from child.walk()

    def to_json(self) -> JsonObject:
        """APIC JSON with `attributes` before `children` (the APIC rejects the other order)."""
        body: JsonObject = {"attributes": dict(self.attributes)}
        if self.children:
            body["children"] = [child.to_json() for child in self.children]
        return {self.cls: body}


def rn_of(cls: str, attributes: Mapping[str, str]) -> str:
    """The RN of an object of class `cls` with these attributes (an explicit ``rn`` wins)."""
    if attributes.get("rn"):
        return str(attributes["rn"])
    meta = CLASSES.get(cls)
    if meta is None:
        raise MoTreeError(
            f"cannot compute the RN of unknown class {cls!r}; give it an 'rn' or 'dn' attribute"
        )
    try:
        return meta.rn_for(attributes)
    except KeyError as missing:
        raise MoTreeError(f"{cls} object is missing its naming property {missing.args[0]!r}") from None


def from_json(obj: Mapping[str, Any], parent_dn: str = "") -> Mo:
    """Parse one APIC JSON object (and its children) into an `Mo` tree.

    The DN comes from ``dn`` when present, else from the parent's DN and the object's RN.
    """
    if not isinstance(obj, Mapping) or len(obj) != 1:
        raise MoTreeError(f"expected an object of the form {{'<class>': {{...}}}}, got {_short(obj)}")
    ((cls, body),) = obj.items()
    if not isinstance(body, Mapping):
        raise MoTreeError(f"{cls}: expected an object with 'attributes' and 'children', got {_short(body)}")
    raw_attributes = body.get("attributes", {})
    if not isinstance(raw_attributes, Mapping):
        raise MoTreeError(f"{cls}: 'attributes' must be an object")
    attributes = {str(k): str(v) for k, v in raw_attributes.items()}
    if attributes.get("dn"):
        dn = attributes["dn"]
    else:
        rn = rn_of(cls, attributes)
        dn = f"{parent_dn}/{rn}" if parent_dn else rn
    children_json = body.get("children", [])
    if not isinstance(children_json, list):
        raise MoTreeError(f"{cls} {dn}: 'children' must be a list")
    return Mo(cls, dn, attributes, [from_json(child, dn) for child in children_json])


def index(root: Mo) -> dict[str, Mo]:
    """Every object of the tree by DN."""
    return {mo.dn: mo for mo in root.walk()}


def config_attributes(mo: Mo) -> dict[str, str]:
    """The attributes one may write: without DN, RN, status and the APIC's computed properties."""
    return {k: v for k, v in mo.attributes.items() if k not in READ_ONLY_PROPS}


def naming_attributes(mo: Mo) -> dict[str, str]:
    """Just the naming properties (enough to address a nested object in a POST)."""
    meta = CLASSES.get(mo.cls)
    if meta is None:
        return {"rn": mo.rn}
    return {prop: mo.attributes[prop] for prop in meta.naming if prop in mo.attributes}


def normalise(cls: str, prop: str, value: str) -> str:
    """`value` in the form the APIC stores it (``80`` -> ``http``, ``6`` -> ``tcp``, ``1`` -> ``enforced``).

    Values the model does not know, or that it would reject, are returned unchanged so that comparing them
    still works and the APIC gets to report the error.
    """
    meta = CLASSES.get(cls)
    rule = meta.props.get(prop) if meta is not None else None
    if rule is None:
        return value
    try:
        return rule.canonical(value)
    except (BadValue, FailedValidation):
        return value


def default_of(cls: str, prop: str) -> str | None:
    """The value the APIC fills in for `prop` when it is not given, if the model knows it."""
    meta = CLASSES.get(cls)
    rule = meta.props.get(prop) if meta is not None else None
    return rule.default_value if rule is not None else None


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
