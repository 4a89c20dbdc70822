"""Label and field selectors in their query-string syntax (`app=web,tier in (a,b),!legacy`), parsed and
matched as the API server does; a malformed selector is a ValueError (the server answers 400)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Matcher = Callable[[Mapping[str, str]], bool]

_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_SET = re.compile(rf"\s*(?P<key>{_KEY})\s+(?P<op>in|notin)\s+\((?P<values>[^)]*)\)\s*\Z")
_EQ = re.compile(rf"\s*(?P<key>{_KEY})\s*(?P<op>==|=|!=)\s*(?P<value>{_VALUE})\s*\Z")
_EXISTS = re.compile(rf"\s*(?P<neg>!?)\s*(?P<key>{_KEY})\s*\Z")


def _split(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p for p in parts if p.strip()]


def _requirement(term: str) -> Matcher:
    m = _SET.match(term)
    if m:
        key, values = m["key"], {v.strip() for v in m["values"].split(",") if v.strip()}
        if not values:
            raise ValueError(f"{term!r}: for 'in', 'notin' operators, values set can't be empty")
        if m["op"] == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    m = _EQ.match(term)
    if m:
        key, value = m["key"], m["value"]
        if m["op"] == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: key in labels and labels[key] == value
    m = _EXISTS.match(term)
    if m:
        key = m["key"]
        if m["neg"]:
            return lambda labels: key not in labels
        return lambda labels: key in labels
    raise ValueError(f"unable to parse requirement: {term!r}")


def label_selector(text: str | None) -> Matcher:
    """`labelSelector=`: every requirement must hold; the empty selector matches everything."""
    if not text:
        return lambda labels: True
    reqs = [_requirement(t) for t in _split(text)]
    return lambda labels: all(r(labels) for r in reqs)


def field_selector(text: str | None, allowed: tuple[str, ...]) -> Callable[[dict[str, Any]], bool]:
    """`fieldSelector=`: `field=value`, `field==value`, `field!=value`, comma-separated; only the fields
    the resource supports (metadata.name, metadata.namespace and `allowed`)."""
    if not text:
        return lambda obj: True
    terms: list[tuple[str, bool, str]] = []
    for term in text.split(","):
        m = re.match(r"\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*\Z", term)
        if not m:
            raise ValueError(f"invalid selector: {text!r}; can't understand {term!r}")
        field, op, value = m.groups()
        if field not in ("metadata.name", "metadata.namespace", *allowed):
            raise ValueError(f'field label not supported: {field}')
        terms.append((field, op == "!=", value))

    def matches(obj: dict[str, Any]) -> bool:
        return all((field_value(obj, field) == value) != negate for field, negate, value in terms)

    return matches


def field_value(obj: dict[str, Any], path: str) -> str:
    """A field as the server's field-label conversion renders it: missing is "", booleans are lowercase."""
    cur: Any = obj
    if path == "source" and isinstance(obj.get("source"), dict):  # core Event: source.component
        return str(obj["source"].get("component") or "")
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)
