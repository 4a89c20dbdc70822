"""Reads: DN and class queries with the APIC's query options, filters and paging, and how objects are
rendered.

Supported options: ``query-target`` (self, children, subtree), ``target-subtree-class``,
``query-target-filter`` (eq, ne, lt, gt, le, ge, bw, wcard, anybit, allbits, and, or, xor, not),
``rsp-subtree`` (no, children, full), ``rsp-subtree-class``, ``rsp-subtree-filter`` (the same expressions,
on the returned children), ``rsp-subtree-include`` (``count`` answers one ``moCount``; the other values are
accepted and add nothing: the simulator has no faults, health, stats or records), ``rsp-prop-include``
(all, naming-only, config-only), ``order-by``, ``page`` and ``page-size`` (``totalCount`` counts every page).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..meta import CLASSES, READ_ONLY_PROPS, split_dn
from .store import MoStore, StoredMo
from .writes import Rejection

Predicate = Callable[[StoredMo, dict[str, str]], bool]

_QUERY_TARGETS = ("self", "children", "subtree")
_RSP_SUBTREES = ("no", "children", "full")
_PROP_INCLUDES = ("all", "naming-only", "config-only", "config-explicit", "config-all", "oper")
_SUBTREE_INCLUDES = frozenset({
    "audit-logs", "event-logs", "faults", "fault-records", "ep-records", "health", "health-records",
    "deployment-records", "relations", "stats", "tasks", "count", "no-scoped", "required", "subtree",
})


@dataclass(frozen=True)
class Query:
    """The parsed options of one GET."""

    target: str = "self"
    target_classes: frozenset[str] = frozenset()
    predicate: Predicate | None = None
    rsp_subtree: str = "no"
    rsp_classes: frozenset[str] = frozenset()
    rsp_predicate: Predicate | None = None
    rsp_include: frozenset[str] = frozenset()
    props: str = "all"
    order_by: tuple[str, str, bool] | None = None
    page: int | None = None
    page_size: int | None = None

    @classmethod
    def parse(cls, args: Mapping[str, str]) -> Query:
        def choice(name: str, allowed: tuple[str, ...], default: str) -> str:
            value = args.get(name, default) or default
            if value not in allowed:
                raise Rejection("400", f"Request failed, invalid value '{value}' for option {name}")
            return value

        def classes(name: str) -> frozenset[str]:
            return frozenset(c.strip() for c in args.get(name, "").split(",") if c.strip())

        def number(name: str) -> int | None:
            raw = args.get(name)
            if raw is None:
                return None
            if not raw.isdigit():
                raise Rejection("400", f"Request failed, invalid value '{raw}' for option {name}")
            return int(raw)

        order_by = None
        if args.get("order-by"):
            spec, _, direction = args["order-by"].partition("|")
            order_cls, _, prop = spec.partition(".")
            order_by = (order_cls, prop, direction == "desc")
        filter_text = args.get("query-target-filter", "")
        rsp_filter = args.get("rsp-subtree-filter", "")
        include = classes("rsp-subtree-include")
        if include - _SUBTREE_INCLUDES:
            raise Rejection("400", f"Request failed, invalid value '{args['rsp-subtree-include']}' for option "
                            "rsp-subtree-include")
        page_size = number("page-size")
        if page_size == 0:
            raise Rejection("400", "Request failed, invalid value '0' for option page-size")
        return cls(
            target=choice("query-target", _QUERY_TARGETS, "self"),
            target_classes=classes("target-subtree-class"),
            predicate=parse_filter(filter_text) if filter_text else None,
            rsp_subtree=choice("rsp-subtree", _RSP_SUBTREES, "no"),
            rsp_classes=classes("rsp-subtree-class"),
            rsp_predicate=parse_filter(rsp_filter) if rsp_filter else None,
            rsp_include=include,
            props=choice("rsp-prop-include", _PROP_INCLUDES, "all"),
            order_by=order_by,
            page=number("page"),
            page_size=page_size,
        )


def run_query(store: MoStore, bases: list[StoredMo], query: Query) -> tuple[int, list[dict[str, Any]]]:
    """Select from `bases` as the options say; returns the total count and the rendered page."""
    selected: list[StoredMo] = []
    for base in bases:
        if query.target in ("self", "subtree"):
            selected.append(base)
        if query.target == "children":
            selected.extend(store.children(base.dn))
        elif query.target == "subtree":
            selected.extend(store.descendants(base.dn))
    if query.target_classes and query.target != "self":
        selected = [mo for mo in selected if mo.cls in query.target_classes]
    if query.predicate is not None:
        predicate = query.predicate
        selected = [mo for mo in selected if predicate(mo, visible_attributes(store, mo))]
    if query.order_by is not None:
        _, prop, reverse = query.order_by
        selected.sort(key=lambda mo: _sort_key(visible_attributes(store, mo).get(prop, "")), reverse=reverse)
    total = len(selected)
    if "count" in query.rsp_include:
        counted = total
        if query.rsp_subtree != "no" and "subtree" not in query.rsp_include:  # count the returned children
            counted = sum(1 for mo in selected for child in _returned(store, mo, query))
        return 1, [{"moCount": {"attributes": {"childAction": "", "count": str(counted), "dn": "", "status": ""}}}]
    if query.page_size is not None:
        start = (query.page or 0) * query.page_size
        selected = selected[start : start + query.page_size]
    return total, [render(store, mo, query, top=True) for mo in selected]


def _sort_key(value: str) -> tuple[int, float, str]:
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def visible_attributes(store: MoStore, mo: StoredMo) -> dict[str, str]:
    """What a GET shows: stored attributes, dn and rn, status and childAction, resolved relation fields."""
    attributes = dict(mo.attributes)
    attributes.update(dn=mo.dn, rn=split_dn(mo.dn)[-1], status="", childAction="")
    meta = CLASSES.get(mo.cls)
    if meta is not None and meta.relation is not None:
        attributes.update(_resolve_relation(store, mo, attributes))
    return attributes


def _resolve_relation(store: MoStore, mo: StoredMo, attributes: Mapping[str, str]) -> dict[str, str]:
    """Where a named relation points: the tenant's own object of that name, else tenant common's."""
    relation = CLASSES[mo.cls].relation
    assert relation is not None
    name = attributes.get(relation.name_prop, "")
    tenant = "/".join(split_dn(mo.dn)[:2])
    target_rn = relation.target_rn.format(name or "default")
    candidates = (
        [f"uni/tn-common/{target_rn}"]
        if not name
        else [f"{tenant}/{target_rn}", f"uni/tn-common/{target_rn}"]
    )
    found = next((dn for dn in candidates if store.get(dn) is not None), None)
    return {
        "tDn": found or candidates[0],
        "tRn": target_rn,
        "tCl": relation.target,
        "tType": "name",
        "state": "formed" if found else "missing-target",
        "stateQual": "none" if found == candidates[0] and name else ("default-target" if found else "none"),
        "forceResolve": "yes",
        "rType": "mo",
        "tContextDn": "",
    }


def render(store: MoStore, mo: StoredMo, query: Query, *, top: bool, depth: int = 0) -> dict[str, Any]:
    """One object in APIC JSON: top-level objects carry ``dn``, nested ones ``rn``; attributes sorted."""
    attributes = visible_attributes(store, mo)
    meta = CLASSES.get(mo.cls)
    if query.props == "naming-only" and meta is not None:
        attributes = {k: v for k, v in attributes.items() if k in meta.naming or k in ("dn", "rn")}
    elif query.props.startswith("config") and meta is not None:
        attributes = {
            k: v
            for k, v in attributes.items()
            if (k in meta.props and (k not in READ_ONLY_PROPS or k in meta.naming)) or k in ("dn", "rn")
        }
    attributes.pop("rn" if top else "dn", None)
    body: dict[str, Any] = {"attributes": dict(sorted(attributes.items()))}
    if query.rsp_subtree != "no" and (query.rsp_subtree == "full" or depth == 0):
        children = [render(store, child, query, top=False, depth=depth + 1) for child in store.children(mo.dn)
                    if _wanted(store, child, query)]
        if children:
            body["children"] = children
    return {mo.cls: body}


def _returned(store: MoStore, mo: StoredMo, query: Query) -> list[StoredMo]:
    """The objects of `mo`'s subtree a response shows (children, or every level with ``full``)."""
    out = []
    for child in store.children(mo.dn):
        if _wanted(store, child, query):
            out.append(child)
            if query.rsp_subtree == "full":
                out.extend(_returned(store, child, query))
    return out


def _matches(store: MoStore, mo: StoredMo, query: Query) -> bool:
    """Whether `mo` itself is what the response subtree asks for (class and filter)."""
    if query.rsp_classes and mo.cls not in query.rsp_classes:
        return False
    return query.rsp_predicate is None or query.rsp_predicate(mo, visible_attributes(store, mo))


def _wanted(store: MoStore, mo: StoredMo, query: Query) -> bool:
    if _matches(store, mo, query):
        return True
    # In a full subtree, keep the objects on the way to a wanted one.
    return query.rsp_subtree == "full" and (bool(query.rsp_classes) or query.rsp_predicate is not None) and any(
        _matches(store, d, query) for d in store.descendants(mo.dn))


# Filters

_TOKEN = re.compile(r'\s*(?:(?P<name>[A-Za-z][\w.-]*)|(?P<string>"(?:[^"\\]|\\.)*")|(?P<punct>[(),]))')


def parse_filter(text: str) -> Predicate:
    """Parse ``and(eq(fvTenant.name,"a"),wcard(fvTenant.dn,"tn-"))`` into a predicate."""
    tokens = _tokenize(text)
    predicate, rest = _parse_expression(tokens, text)
    if rest:
        raise _bad_filter(text)
    return predicate


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise _bad_filter(text)
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "string":
            value = value[1:-1].replace('\\"', '"')
        tokens.append((kind, value))
        position = match.end()
    return tokens


def _bad_filter(text: str) -> Rejection:
    return Rejection("400", f"Request failed, invalid query-target-filter expression {text}")


_COMPARISONS: Mapping[str, Callable[[str, list[str]], bool]] = {
    "eq": lambda v, a: v == a[0],
    "ne": lambda v, a: v != a[0],
    "lt": lambda v, a: _ordered(v) < _ordered(a[0]),
    "gt": lambda v, a: _ordered(v) > _ordered(a[0]),
    "le": lambda v, a: _ordered(v) <= _ordered(a[0]),
    "ge": lambda v, a: _ordered(v) >= _ordered(a[0]),
    "bw": lambda v, a: len(a) == 2 and _ordered(a[0]) <= _ordered(v) <= _ordered(a[1]),
    "wcard": lambda v, a: _wildcard(v, a[0]),
    "anybit": lambda v, a: bool(_flag_set(v) & _flag_set(a[0])),
    "allbits": lambda v, a: _flag_set(a[0]) <= _flag_set(v),
}


def _ordered(value: str) -> tuple[int, float, str]:
    return _sort_key(value)


def _wildcard(value: str, pattern: str) -> bool:
    try:
        return re.search(pattern, value) is not None
    except re.error:
        return pattern in value


def _flag_set(value: str) -> set[str]:
    return {part.strip() for part in value.split(",") if part.strip()}


def _parse_expression(tokens: list[tuple[str, str]], text: str) -> tuple[Predicate, list[tuple[str, str]]]:
    if len(tokens) < 3 or tokens[0][0] != "name" or tokens[1] != ("punct", "("):
        raise _bad_filter(text)
    operator, rest = tokens[0][1], tokens[2:]
    if operator in ("and", "or", "xor", "not"):
        operands: list[Predicate] = []
        while True:
            operand, rest = _parse_expression(rest, text)
            operands.append(operand)
            if rest[:1] == [("punct", ",")]:
                rest = rest[1:]
                continue
            if rest[:1] != [("punct", ")")]:
                raise _bad_filter(text)
            return _combine(operator, operands, text), rest[1:]
    if operator not in _COMPARISONS:
        raise _bad_filter(text)
    if not rest or rest[0][0] != "name" or "." not in rest[0][1]:
        raise _bad_filter(text)
    cls, _, prop = rest[0][1].partition(".")
    rest = rest[1:]
    arguments: list[str] = []
    while rest[:1] == [("punct", ",")]:
        if len(rest) < 2 or rest[1][0] not in ("string", "name"):
            raise _bad_filter(text)
        arguments.append(rest[1][1])
        rest = rest[2:]
    if not arguments or rest[:1] != [("punct", ")")]:
        raise _bad_filter(text)
    compare = _COMPARISONS[operator]

    def term(mo: StoredMo, attributes: dict[str, str]) -> bool:
        # A condition on another class's property does not hold for this object.
        return mo.cls == cls and compare(attributes.get(prop, ""), arguments)

    return term, rest[1:]


def _combine(operator: str, operands: list[Predicate], text: str) -> Predicate:
    if operator == "not":
        if len(operands) != 1:
            raise _bad_filter(text)
        (inner,) = operands
        return lambda mo, attributes: not inner(mo, attributes)
    if operator == "and":
        return lambda mo, attributes: all(p(mo, attributes) for p in operands)
    if operator == "or":
        return lambda mo, attributes: any(p(mo, attributes) for p in operands)
    return lambda mo, attributes: sum(p(mo, attributes) for p in operands) % 2 == 1
