"""Custom resources as the API server treats them: pruning, defaulting and validation against the CRD's OpenAPI
v3 schema, and its CEL rules (`x-kubernetes-validations`).

- Pruning (structural schemas): a field the schema does not declare is dropped, unless its object says
  `x-kubernetes-preserve-unknown-fields`; `apiVersion`, `kind` and `metadata` at the root are the server's.
  A null where the schema does not say `nullable` is dropped too. With `fieldValidation=Strict` (kubectl's
  default) each dropped field is an error instead, with `Warn` (the API's default) a warning.
- Defaulting: `default` values fill missing fields, outside in, after pruning.
- Validation: the `jsonschema` library (Draft 7) on the schema translated to JSON Schema (`to_jsonschema`):
  `nullable` as a null type, RE2 patterns read the way Go reads them, Kubernetes formats (`cidr`, `date-time`,
  `int32`, `int64`, ...). Messages follow the API server's wording (`Unsupported value`, `Required value`, ...).
- CEL: rules are compiled and run with cel-python (`celpy`), plus the Kubernetes string library functions the
  rules here use (`lowerAscii`, `upperAscii`, `trim`, `split`, `replace`, `indexOf`, `lastIndexOf`,
  `substring`, `join`), `int(string)` and `matches` with Go's semantics. Not evaluated: transition rules
  (`oldSelf`; they are skipped on create and update alike), `messageExpression` (the static `message` is
  used), the cost budget (the server refuses rules that could cost too much: a test of the CRDs' `maxItems`
  and `maxLength`, not of the fake), and the Kubernetes libraries for lists, regexes with `find`, URLs, IPs,
  CIDRs and quantities. A rule that calls a function celpy does not know is not passed: the fake records it
  as its own error (`FakeKube.server_errors`), so a test notices.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import celpy
import jsonschema
from celpy import celtypes

ROOT_FIELDS = ("apiVersion", "kind", "metadata")
JUNCTORS = ("anyOf", "allOf", "oneOf")


class CelUnsupported(Exception):
    """A CEL rule the fake cannot evaluate (not an object's fault)."""


@dataclass(frozen=True)
class Cause:
    """One field error, as a `Status` cause: `reason` FieldValueInvalid, FieldValueNotSupported, ..."""

    field: str
    reason: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"

    def to_dict(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message, "field": self.field}


# --- formats and patterns -------------------------------------------------------------------------------------

FORMATS = jsonschema.FormatChecker(formats=())


@FORMATS.checks("cidr")
def go_parse_cidr(value: object) -> bool:
    """Go's net.ParseCIDR, which validates the `cidr` format: ADDRESS/BITS, no netmask form, no zone."""
    if not isinstance(value, str):
        return True
    addr, sep, bits = value.partition("/")
    if not sep or not (bits.isascii() and bits.isdigit()) or "%" in addr:
        return False
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return int(bits) <= ip.max_prefixlen


_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})\Z")


@FORMATS.checks("date-time")
def rfc3339(value: object) -> bool:
    """kube-openapi's date-time: RFC 3339 (T or a space between date and time, fraction optional)."""
    return not isinstance(value, str) or _DATE_TIME.match(value) is not None


@FORMATS.checks("int32")
def int32(value: object) -> bool:
    return not isinstance(value, int) or -(2**31) <= value < 2**31


@FORMATS.checks("int64")
def int64(value: object) -> bool:
    return not isinstance(value, int) or -(2**63) <= value < 2**63


def go_pattern(pattern: str) -> str:
    """An RE2 pattern as Python's re reads it the same way: RE2's `$` is Python's `\\Z` (Python's `$` also
    matches before a trailing newline)."""
    return re.sub(r"(?<!\\)\$", r"\\Z", pattern)


def to_jsonschema(node: dict[str, Any], *, strict: bool = False) -> dict[str, Any]:
    """One OpenAPI v3 schema node of a CRD as JSON Schema: `x-kubernetes-*` keys dropped (their effect is
    modelled here), `nullable` as a null type, RE2 patterns for Python. `strict` adds `additionalProperties:
    false` to objects with properties (unknown fields as errors, as `fieldValidation=Strict` reports them)."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key == "nullable":
            continue
        if key == "properties":
            out[key] = {name: to_jsonschema(sub, strict=strict) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = to_jsonschema(value, strict=strict)
        elif key in JUNCTORS:
            out[key] = [to_jsonschema(sub, strict=strict) for sub in value]
        elif key == "pattern":
            out[key] = go_pattern(value)
        else:
            out[key] = value
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if node.get("x-kubernetes-int-or-string"):
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if (strict and "properties" in out and "additionalProperties" not in out
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


# --- pruning and defaulting -----------------------------------------------------------------------------------


def _join(path: str, key: str | int) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else key)


def prune(node: dict[str, Any], value: Any, path: str = "") -> list[str]:
    """Drop what `node` does not declare from `value` (in place); returns the dropped fields' paths."""
    dropped: list[str] = []
    if isinstance(value, dict):
        props = node.get("properties")
        extra = node.get("additionalProperties")
        keep_unknown = node.get("x-kubernetes-preserve-unknown-fields") or extra is True
        for key in list(value):
            if not path and key in ROOT_FIELDS:
                continue
            sub = (props or {}).get(key)
            if sub is None and isinstance(extra, dict):
                sub = extra
            if sub is None:
                if not keep_unknown:
                    del value[key]
                    dropped.append(_join(path, key))
                continue
            if value[key] is None and not sub.get("nullable"):
                del value[key]
                continue
            dropped += prune(sub, value[key], _join(path, key))
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        for i, item in enumerate(value):
            dropped += prune(node["items"], item, _join(path, i))
    return dropped


def default(node: dict[str, Any], value: Any) -> None:
    """Fill in the schema's `default`s (in place), outside in."""
    if isinstance(value, dict):
        for key, sub in (node.get("properties") or {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                default(sub, value[key])
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            for item in value.values():
                default(extra, item)
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        for item in value:
            default(node["items"], item)


# --- validation -----------------------------------------------------------------------------------------------


def _quote(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number",
            type(None): "null"}.get(type(value), type(value).__name__)


def _cause(error: jsonschema.ValidationError) -> Cause:
    path = ""
    for part in error.absolute_path:
        path = _join(path, part)
    field = path or "<root>"
    v, rule = error.instance, error.validator_value
    if error.validator == "required":
        missing = error.message.split("'")[1]
        return Cause(_join(path, missing), "FieldValueRequired", "Required value")
    if error.validator == "enum":
        allowed = ", ".join(_quote(a) for a in rule)
        return Cause(field, "FieldValueNotSupported", f"Unsupported value: {_quote(v)}: supported values: {allowed}")
    if error.validator == "type":
        wanted = rule[0] if isinstance(rule, list) else rule
        return Cause(field, "FieldValueTypeInvalid",
                     f'Invalid value: "{_type_name(v)}": {field} in body must be of type {wanted}: {_quote(v)}')
    if error.validator == "maxLength":
        return Cause(field, "FieldValueTooLong", f"Too long: may not be more than {rule} bytes")
    if error.validator == "maxItems":
        return Cause(field, "FieldValueTooMany", f"Too many: {len(v)}: must have at most {rule} items")
    if error.validator == "pattern":
        return Cause(field, "FieldValueInvalid", f"Invalid value: {_quote(v)}: {field} in body should match "
                     f"'{rule.replace(chr(92) + 'Z', '$')}'")
    if error.validator == "format":
        return Cause(field, "FieldValueInvalid", f"Invalid value: {_quote(v)}: {field} in body must be of type "
                     f"{rule}: {_quote(v)}")
    what = {"minLength": f"should be at least {rule} chars long", "minItems": f"should have at least {rule} items",
            "minimum": f"should be greater than or equal to {rule}",
            "maximum": f"should be less than or equal to {rule}"}.get(str(error.validator), error.message)
    return Cause(field, "FieldValueInvalid", f"Invalid value: {_quote(v)}: {field} in body {what}")


def schema_causes(schema: dict[str, Any], obj: dict[str, Any], *, strict: bool = False) -> list[Cause]:
    """What the OpenAPI schema says about `obj` (metadata aside: the server checks it as ObjectMeta)."""
    body = {k: v for k, v in obj.items() if k != "metadata"}
    node = {**schema, "properties": {k: v for k, v in (schema.get("properties") or {}).items() if k != "metadata"}}
    validator = jsonschema.Draft7Validator(to_jsonschema(node, strict=strict), format_checker=FORMATS)
    return [_cause(e) for e in sorted(validator.iter_errors(body), key=lambda e: list(map(str, e.absolute_path)))]


# --- CEL ------------------------------------------------------------------------------------------------------


def _go_int(value: Any) -> celtypes.IntType:
    """CEL int(): from a string as Go's strconv.ParseInt(s, 10, 64) reads it (ASCII digits, optional sign)."""
    if isinstance(value, str):
        if not re.fullmatch(r"[+-]?[0-9]+", value) or not -(2**63) <= int(value) < 2**63:
            raise ValueError(f"cannot convert {value!r} to int")
        return celtypes.IntType(int(value))
    return celtypes.IntType(value)


def _matches(text: str, pattern: str) -> celtypes.BoolType:
    return celtypes.BoolType(re.search(go_pattern(pattern), text) is not None)


def _string_list(values: list[str]) -> celtypes.ListType:
    return celtypes.ListType([celtypes.StringType(v) for v in values])


def _split(text: str, sep: str, limit: int = -1) -> celtypes.ListType:
    if limit == 0:
        return _string_list([])
    return _string_list(text.split(sep, limit - 1 if limit > 0 else -1) if sep else list(text))


def _substring(text: str, start: int, end: int | None = None) -> celtypes.StringType:
    if not 0 <= start <= len(text) or (end is not None and not start <= end <= len(text)):
        raise IndexError(f"substring({start}, {end}) out of range")
    return celtypes.StringType(text[start:end])


# Kubernetes' CEL string library (k8s.io/apiserver/pkg/cel/library/strings), with ASCII case mapping as there.
K8S_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "lowerAscii": lambda s: celtypes.StringType("".join(c.lower() if "A" <= c <= "Z" else c for c in s)),
    "upperAscii": lambda s: celtypes.StringType("".join(c.upper() if "a" <= c <= "z" else c for c in s)),
    "trim": lambda s: celtypes.StringType(s.strip()),
    "split": _split,
    "replace": lambda s, old, new, n=-1: celtypes.StringType(s.replace(old, new, n)),
    "indexOf": lambda s, sub, start=0: celtypes.IntType(s.find(sub, start)),
    "lastIndexOf": lambda s, sub: celtypes.IntType(s.rfind(sub)),
    "substring": _substring,
    "join": lambda items, sep="": celtypes.StringType(sep.join(items)),
    "int": _go_int,
    "matches": _matches,
}
_ENV = celpy.Environment()


@cache
def _program(rule: str) -> Any:
    return _ENV.program(_ENV.compile(rule), functions=K8S_FUNCTIONS)


def compile_rule(rule: str) -> str | None:
    """None when `rule` compiles, else the compiler's complaint (the server refuses such a CRD)."""
    try:
        _program(rule)
    except Exception as exc:  # celpy's parser raises its own error types
        return str(exc).splitlines()[0]
    return None


def _self_of(value: Any, root: bool) -> Any:
    if root:  # at the root, metadata shows only name and generateName
        meta = value.get("metadata") or {}
        value = {**value, "metadata": {k: meta[k] for k in ("name", "generateName") if k in meta}}
    return celpy.json_to_cel(value)


def cel_causes(node: dict[str, Any], value: Any, path: str = "") -> list[Cause]:
    """Every failed `x-kubernetes-validations` rule in `value`; raises CelUnsupported for a rule celpy cannot
    evaluate (an unknown function)."""
    causes: list[Cause] = []
    for rule in node.get("x-kubernetes-validations") or []:
        if "oldSelf" in rule["rule"]:
            continue
        try:
            ok = _program(rule["rule"]).evaluate({"self": _self_of(value, not path)})
        except celpy.CELEvalError as exc:
            if len(exc.args) > 1 and exc.args[1] is KeyError:  # celpy's "undeclared reference"
                raise CelUnsupported(f"{rule['rule']!r}: {exc.args[0].splitlines()[0][:200]}") from None
            ok = False  # an evaluation error (int("x"), an index out of range) fails the rule, as on the server
        if not (isinstance(ok, celtypes.BoolType) and bool(ok)):
            causes.append(Cause(path or "<root>", rule.get("reason", "FieldValueInvalid"),
                                f"Invalid value: \"{_type_name(value)}\": {rule.get('message') or 'failed rule: ' + rule['rule']}"))
    if isinstance(value, dict):
        for key, sub in (node.get("properties") or {}).items():
            if key in value and not (not path and key == "metadata"):
                causes += cel_causes(sub, value[key], _join(path, key))
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            for key, item in value.items():
                causes += cel_causes(extra, item, _join(path, key))
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        for i, item in enumerate(value):
            causes += cel_causes(node["items"], item, _join(path, i))
    return causes


def cel_causes_unless_blocked(schema: dict[str, Any], obj: dict[str, Any], causes: list[Cause]) -> list[Cause]:
    """The CEL rules' causes, unless a type error blocks them: the API server then runs no rule (a rule
    reading a field of the wrong type would only add noise) and says so."""
    if any(c.reason == "FieldValueTypeInvalid" for c in causes):
        return [Cause("<root>", "FieldValueInvalid", "Invalid value: \"object\": some validation rules were not "
                      "checked because the object was invalid; correct the existing errors to complete validation")]
    return cel_causes(schema, obj)


def rules(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every CEL rule in a schema."""
    yield from node.get("x-kubernetes-validations") or []
    for sub in (node.get("properties") or {}).values():
        yield from rules(sub)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            yield from rules(node[key])


# --- all together ---------------------------------------------------------------------------------------------


@dataclass
class Admission:
    """The outcome for one custom resource write: the object as stored, what was pruned, what is wrong."""

    obj: dict[str, Any]
    pruned: list[str]
    causes: list[Cause]


def admit(schema: dict[str, Any], obj: dict[str, Any], *, only: str | None = None) -> Admission:
    """Prune, default and validate `obj` against `schema` (a copy is returned). `only="status"` or `"spec"`
    validates that part alone (a /status write changes status only; the main resource everything else)."""
    out = copy.deepcopy(obj)
    dropped = prune(schema, out)
    default(schema, out)
    causes = schema_causes(schema, out)
    causes += cel_causes_unless_blocked(schema, out, causes)
    if only == "status":
        causes = [c for c in causes if c.field == "status" or c.field.startswith("status.")]
    return Admission(out, dropped, causes)
