"""deploy/: the manifests parse; the CRD schemas are structural and agree with contracts/loader.py; RBAC is
least privilege; the controller and agent pods are wired as DESIGN.md section 6 says; the Config loads.

The CRD schemas are checked as the fake API server checks custom resources (tests/fakekube/schema.py: the
jsonschema library after the conversion the API server's validation implies, and the CEL rules run by
cel-python), with unknown fields as errors (kubectl's fieldValidation=Strict). The CEL rules also have hand
translations here (`CEL`), and both evaluations must agree on every object of the tables. The differential
tables run every object through both the schema and the loader: they must agree, and the cases where they
cannot are listed with the reason (`DISAGREEMENTS`).
"""

from __future__ import annotations

import argparse
import copy
import fnmatch
import re
import shutil
import subprocess
import tomllib
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from annotations.config import Config
from contracts.loader import documents, load_cluster
from controller.cli import build_parser
from controller.runtime import _condition as status_condition
from epg.errors import InvalidInput
from tests.fakekube.schema import FORMATS, cel_causes, schema_causes, to_jsonschema

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
EXAMPLES = ROOT / "examples" / "cluster"
GROUP = "epgbridge.io/v1alpha1"
NAMESPACE = "epgbridge-system"
INT_OR_STRING = [{"type": "integer"}, {"type": "string"}]


def load_yaml(path: Path) -> list[Any]:
    with path.open(encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


MANIFESTS = sorted(p for p in DEPLOY.rglob("*.yaml"))


@cache
def objects() -> tuple[dict[str, Any], ...]:
    return tuple(doc for path in MANIFESTS for doc in load_yaml(path))


def find(kind: str, name: str) -> dict[str, Any]:
    (obj,) = [o for o in objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def crd(kind: str) -> dict[str, Any]:
    (obj,) = [o for o in objects() if o["kind"] == "CustomResourceDefinition" and o["spec"]["names"]["kind"] == kind]
    return obj


def openapi(kind: str) -> dict[str, Any]:
    (version,) = crd(kind)["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


# --- every manifest -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_manifest_parses_with_apiversion_kind_metadata(path: Path) -> None:
    docs = load_yaml(path)
    assert docs, f"{path} holds no object"
    for doc in docs:
        assert isinstance(doc, dict)
        assert isinstance(doc.get("apiVersion"), str) and doc["apiVersion"]
        assert isinstance(doc.get("kind"), str) and doc["kind"]
        assert isinstance(doc.get("metadata"), dict) and doc["metadata"].get("name")


def test_namespaced_objects_live_in_epgbridge_system() -> None:
    cluster_scoped = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "Kustomization"}
    for obj in objects():
        if obj["kind"] not in cluster_scoped:
            assert obj["metadata"].get("namespace") == NAMESPACE, f"{obj['kind']} {obj['metadata']['name']}"


def test_kustomization_lists_every_manifest_but_the_example_secret() -> None:
    kustomization = find("Kustomization", "epgbridge")
    listed = {DEPLOY / r for r in kustomization["resources"]}
    assert listed == set(MANIFESTS) - {DEPLOY / "kustomization.yaml", DEPLOY / "apic-secret.example.yaml"}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (for its built-in kustomize) is not installed")
def test_kustomize_builds() -> None:
    out = subprocess.run(["kubectl", "kustomize", str(DEPLOY)], capture_output=True, text=True, check=True).stdout
    kinds = sorted(doc["kind"] for doc in yaml.safe_load_all(out) if doc)
    assert kinds == sorted(o["kind"] for o in objects() if o["kind"] not in ("Kustomization", "Secret"))
    assert "kind: Secret" not in out


def test_example_secret_holds_only_placeholders() -> None:
    secret = find("Secret", "epgbridge-apic")
    assert set(secret["stringData"]) == {"APIC_USERNAME", "APIC_PASSWORD"}
    assert all(v.startswith("CHANGE-ME") for v in secret["stringData"].values())
    assert "data" not in secret
    assert "EXAMPLE ONLY" in (DEPLOY / "apic-secret.example.yaml").read_text(encoding="utf-8")


# --- CRDs: shape and structural schemas ----------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "plural", "short"), [("EndpointGroup", "endpointgroups", "epg"),
                                                       ("Contract", "contracts", "brc")])
def test_crd_names_scope_version_status(kind: str, plural: str, short: str) -> None:
    obj = crd(kind)
    assert obj["apiVersion"] == "apiextensions.k8s.io/v1"
    assert obj["metadata"]["name"] == f"{plural}.epgbridge.io"
    spec = obj["spec"]
    assert (spec["group"], spec["scope"]) == ("epgbridge.io", "Cluster")
    assert spec["names"]["plural"] == plural and spec["names"]["shortNames"] == [short]
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert set(status["conditions"]["items"]["properties"]) == {
        "type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"}
    assert status["observedGeneration"]["type"] == "integer"


@pytest.mark.parametrize("kind", ["EndpointGroup", "Contract"])
def test_printer_columns(kind: str) -> None:
    (version,) = crd(kind)["spec"]["versions"]
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert {"Tenant", "Valid", "Synced", "Age"} <= set(columns)
    assert ("EPG" if kind == "EndpointGroup" else "Contract") in columns
    assert columns["Valid"]["jsonPath"] == '.status.conditions[?(@.type=="Valid")].status'
    assert columns["Synced"]["jsonPath"] == '.status.conditions[?(@.type=="Synced")].status'
    schema = openapi(kind)
    for column in columns.values():  # every column shows a field the schema has
        path = re.sub(r"\[\?\(.*?\)\]", "", column["jsonPath"]).strip(".").split(".")
        if path[0] == "metadata":
            continue
        node = schema
        for part in path:
            node = node["items"] if node.get("type") == "array" else node
            assert part in node["properties"], f"{column['jsonPath']}: no field {part!r} in the schema"
            node = node["properties"][part]


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node below properties, items and additionalProperties (not inside anyOf and the like)."""
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


JUNCTORS = ("anyOf", "allOf", "oneOf", "not")
NOT_IN_JUNCTORS = {"type", "default", "description", "nullable", "additionalProperties"}


@pytest.mark.parametrize("kind", ["EndpointGroup", "Contract"])
def test_schema_is_structural(kind: str) -> None:
    """The API server's rules for structural schemas, as far as these schemas use the features."""
    root = openapi(kind)
    assert root["type"] == "object"
    assert root["properties"]["metadata"] == {"type": "object"}  # nothing but name/generateName is allowed
    for path, node in walk(root):
        if node.get("x-kubernetes-int-or-string"):
            assert "type" not in node, path
            assert node.get("anyOf") == INT_OR_STRING and not {"allOf", "oneOf", "not"} & node.keys(), path
        else:
            assert node.get("x-kubernetes-preserve-unknown-fields") or "type" in node, f"{path} has no type"
            for junctor in JUNCTORS:
                subs = node.get(junctor, [])
                for sub in subs if isinstance(subs, list) else [subs]:
                    assert not NOT_IN_JUNCTORS & sub.keys(), f"{path}.{junctor}"
                    assert not [k for k in sub if k.startswith("x-kubernetes-")], f"{path}.{junctor}"
        assert not ("properties" in node and "additionalProperties" in node), path
        if node.get("x-kubernetes-list-type") == "map":
            assert set(node["x-kubernetes-list-map-keys"]) <= set(node["items"].get("required", [])), path
        if "default" in node:  # the API server refuses defaults its own schema would reject
            jsonschema.Draft7Validator(to_jsonschema(node), format_checker=FORMATS).validate(node["default"])
        if "pattern" in node:
            re.compile(node["pattern"])


# --- the API server's validation, emulated ---------------------------------------------------------------------


# CEL rules of the CRDs, translated by hand. Keys are the rule texts with whitespace collapsed; a rule without a
# translation fails test_every_cel_rule_is_translated. A rule that raises counts as failed, as an evaluation
# error does in the API server.
APIC_PORTS = {"ftpData": 20, "smtp": 25, "dns": 53, "http": 80, "pop3": 110, "https": 443, "rtsp": 554}
PORTED = (6, 17, 132)


def cel_int(text: str) -> int:
    """CEL int(string): Go's strconv.ParseInt(s, 10, 64), ASCII digits with an optional sign only."""
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise ValueError(text)
    return int(text)


def lower_ascii(text: str) -> str:
    return "".join(c.lower() if "A" <= c <= "Z" else c for c in text)


def ports_need_ported_protocol(e: dict[str, Any]) -> bool:
    if "destinationPorts" not in e or e["destinationPorts"] == "unspecified":
        return True
    if "protocol" not in e:
        return False
    p = e["protocol"]
    return lower_ascii(p) in ("tcp", "udp", "sctp") or (re.fullmatch("[0-9]+", p) is not None and cel_int(p) in PORTED)


def port_range_not_empty(e: dict[str, Any]) -> bool:
    ports = e.get("destinationPorts")
    if not isinstance(ports, str) or "-" not in ports:
        return True
    p = ports.split("-")
    if len(p) != 2:
        return True
    lo, hi = p[0].strip(), p[1].strip()  # CEL trim(): Unicode white space, as str.strip()
    return (APIC_PORTS[lo] if lo in APIC_PORTS else cel_int(lo)) <= (APIC_PORTS[hi] if hi in APIC_PORTS else cel_int(hi))


def selector_values_match_operator(e: dict[str, Any]) -> bool:
    if e["operator"] in ("In", "NotIn"):
        return "values" in e and len(e["values"]) > 0
    return "values" not in e or len(e["values"]) == 0


CEL: dict[str, Callable[[Any], bool]] = {
    "self.operator in ['In', 'NotIn'] ? has(self.values) && self.values.size() > 0 : !has(self.values) || "
    "self.values.size() == 0": selector_values_match_operator,
    "!self.key.contains('/') || self.key.split('/')[0].size() <= 253":
        lambda e: "/" not in e["key"] or len(e["key"].split("/")[0]) <= 253,
    "(has(self.spec) && has(self.spec.name)) || self.metadata.name.size() <= 64":
        lambda o: "name" in o.get("spec", {}) or len(o["metadata"]["name"]) <= 64,
    "!has(self.destinationPorts) || self.destinationPorts == 'unspecified' || (has(self.protocol) && "
    "(self.protocol.lowerAscii() in ['tcp', 'udp', 'sctp'] || (self.protocol.matches('^[0-9]+$') && "
    "int(self.protocol) in [6, 17, 132])))":
        ports_need_ported_protocol,
    "!has(self.destinationPorts) || !self.destinationPorts.contains('-') || "
    "[{'ftpData': 20, 'smtp': 25, 'dns': 53, 'http': 80, 'pop3': 110, 'https': 443, 'rtsp': 554}].all(n, "
    "[self.destinationPorts.split('-')].all(p, p.size() != 2 || (p[0].trim() in n ? n[p[0].trim()] : "
    "int(p[0].trim())) <= (p[1].trim() in n ? n[p[1].trim()] : int(p[1].trim()))))":
        port_range_not_empty,
}


def normalise(rule: str) -> str:
    return " ".join(rule.split())


def cel_rules(kind: str) -> Iterator[str]:
    for _, node in walk(openapi(kind)):
        for rule in node.get("x-kubernetes-validations", []):
            yield normalise(rule["rule"])


def cel_errors(node: dict[str, Any], value: Any, path: str = "") -> list[str]:
    errors = []
    for rule in node.get("x-kubernetes-validations", []):
        translation = CEL[normalise(rule["rule"])]
        try:
            ok = translation(value)
        except (KeyError, TypeError, ValueError, AttributeError):
            ok = False
        if not ok:
            errors.append(f"{path or '<root>'}: {rule['message']}")
    if isinstance(value, dict):
        for name, sub in node.get("properties", {}).items():
            if name in value:
                errors += cel_errors(sub, value[name], f"{path}.{name}")
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        for i, item in enumerate(value):
            errors += cel_errors(node["items"], item, f"{path}[{i}]")
    return errors


DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\Z")


def schema_errors(obj: dict[str, Any]) -> list[str]:
    """What the API server would say about creating `obj` with kubectl (empty: accepted): the fake API server's
    schema and CEL checks, unknown fields as errors (Strict), and the hand translations of the CEL rules, which
    must come to the same verdict as cel-python."""
    kind = obj["kind"]
    causes = schema_causes(openapi(kind), obj, strict=True)
    errors = [str(c) for c in causes]
    name = obj.get("metadata", {}).get("name", "")
    if not DNS_SUBDOMAIN.match(name):  # the API server's own check of custom resource names
        errors.append(f"metadata.name {name!r} is not a DNS-1123 subdomain")
    if any(c.reason == "FieldValueTypeInvalid" for c in causes):
        return errors  # a type error: the API server runs no CEL rule (see cel_causes_unless_blocked)
    by_hand = cel_errors(openapi(kind), obj)
    by_celpy = [str(c) for c in cel_causes(openapi(kind), obj)]
    assert len(by_hand) == len(by_celpy), f"CEL: by hand {by_hand}, cel-python {by_celpy}"
    return errors + by_celpy


def loader_errors(obj: dict[str, Any]) -> list[str]:
    """What contracts.loader says (empty: accepted). Exceptions other than InvalidInput propagate."""
    try:
        load_cluster(documents("t", [obj]))
    except InvalidInput as exc:
        return [str(p) for p in exc.problems]
    return []


def test_every_cel_rule_is_translated() -> None:
    used = {rule for kind in ("EndpointGroup", "Contract") for rule in cel_rules(kind)}
    assert used == set(CEL)


# --- the differential: schema and loader agree ---------------------------------------------------------------

EPG = {"apiVersion": GROUP, "kind": "EndpointGroup", "metadata": {"name": "shop-web"},
       "spec": {"tenant": "shop", "applicationProfile": "storefront", "name": "web", "bridgeDomain": "shop-bd",
                "intraEpg": "isolate", "provides": ["monitoring"], "consumes": ["web-to-api", "dns"],
                "subnets": []}}
CONTRACT = {"apiVersion": GROUP, "kind": "Contract", "metadata": {"name": "shop-web-to-api"},
            "spec": {"tenant": "shop", "name": "web-to-api", "scope": "application-profile",
                     "subjects": [{"name": "api", "filters": [
                         {"name": "api-range", "action": "permit", "entries": [
                             {"name": "tcp-8080", "etherType": "ip", "protocol": "tcp", "destinationPorts": "8080"}]}]}]}}
SPEC, SUBJECT, FILTER, ENTRY = "spec", "spec.subjects.0", "spec.subjects.0.filters.0", "spec.subjects.0.filters.0.entries.0"
DROP = object()


def changed(base: dict[str, Any], path: str, **fields: Any) -> dict[str, Any]:
    """A copy of `base` with `fields` set (or removed, with DROP) in the mapping at dotted `path`."""
    obj = copy.deepcopy(base)
    node: Any = obj
    for key in path.split("."):
        node = node[int(key)] if isinstance(node, list) else node[key]
    for key, value in fields.items():
        if value is DROP:
            node.pop(key, None)
        else:
            node[key] = value
    return obj


def epg(**spec: Any) -> dict[str, Any]:
    return changed(EPG, SPEC, **spec)


def entry(**fields: Any) -> dict[str, Any]:
    return changed(CONTRACT, ENTRY, **fields)


def long_name(kind_base: dict[str, Any]) -> dict[str, Any]:
    obj = changed(kind_base, SPEC, name=DROP)
    obj["metadata"]["name"] = "a" * 70
    return obj


REJECTED = [
    ("epg-name-with-space", epg(name="web app")),
    ("epg-name-with-trailing-newline", epg(name="web\n")),  # RE2's $ is not Python's: see go_pattern
    ("tenant-65-characters", epg(tenant="t" * 65)),
    ("bridge-domain-with-slash", epg(bridgeDomain="kube/bd")),
    ("provides-empty-name", epg(provides=[""])),
    ("provides-not-a-list", epg(provides="web")),
    ("intraEpg-deny", epg(intraEpg="deny")),
    ("epg-mode-dry-run", epg(mode="dry-run")),
    ("contract-mode-off", changed(CONTRACT, SPEC, mode="off")),
    ("subnet-prefix-33", epg(subnets=["10.0.0.0/33"])),
    ("subnet-v6-prefix-129", epg(subnets=["2001:db8::/129"])),
    ("subnet-without-prefix", epg(subnets=["10.0.0.1"])),
    ("subnet-not-an-address", epg(subnets=["web/24"])),
    ("metadata-name-over-64-without-spec-name", long_name(EPG)),
    ("contract-metadata-name-over-64-without-spec-name", long_name(CONTRACT)),
    ("scope-vrf", changed(CONTRACT, SPEC, scope="vrf")),
    ("subject-without-name", changed(CONTRACT, SUBJECT, name=DROP)),
    ("filter-without-name", changed(CONTRACT, FILTER, name=DROP)),
    ("filter-action-allow", changed(CONTRACT, FILTER, action="allow")),
    ("filter-without-entries", changed(CONTRACT, FILTER, entries=[])),
    ("entry-without-name", entry(name=DROP)),
    ("entry-unknown-field", entry(sourcePorts="1024-65535")),
    ("epg-unknown-spec-field", epg(intraEPG="isolate")),
    ("filter-unknown-field", changed(CONTRACT, FILTER, acton="deny")),
    ("subject-unknown-field", changed(CONTRACT, SUBJECT, filter=[])),
    ("subnet-netmask-form", epg(subnets=["10.0.0.0/255.0.0.0"])),
    ("subnet-v6-zone", epg(subnets=["fe80::1%eth0/64"])),
    ("ether-type-arp", entry(etherType="arp")),
    ("protocol-gre", entry(protocol="gre", destinationPorts=DROP)),
    ("protocol-256", entry(protocol=256, destinationPorts=DROP)),
    ("protocol-true", entry(protocol=True, destinationPorts=DROP)),
    ("protocol-UNSPECIFIED", entry(protocol="UNSPECIFIED", destinationPorts=DROP)),
    ("port-99999", entry(destinationPorts="99999")),
    ("port-99999-as-number", entry(destinationPorts=99999)),
    ("port-0", entry(destinationPorts="0")),
    ("port-range-90-80", entry(destinationPorts="90-80")),
    ("port-range-https-http", entry(destinationPorts="https-http")),
    ("port-range-three-ends", entry(destinationPorts="80-90-100")),
    ("port-range-open", entry(destinationPorts="80-")),
    ("port-unknown-name", entry(destinationPorts="ssh")),
    ("port-name-wrong-case", entry(destinationPorts="HTTP")),
    ("port-true", entry(destinationPorts=True)),
    ("ports-with-icmp", entry(protocol="icmp", destinationPorts="80")),
    ("ports-with-protocol-1", entry(protocol="1", destinationPorts="80")),
    ("ports-with-protocol-0", entry(protocol="0", destinationPorts="80")),
    ("ports-without-protocol", entry(protocol=DROP, destinationPorts="80")),
    ("ports-with-protocol-unspecified", entry(protocol="unspecified", destinationPorts="80")),
    ("port-superscript-digit", entry(destinationPorts="²")),
    ("port-fullwidth-digits", entry(destinationPorts="８０")),
    ("port-7-digits", entry(destinationPorts="0000080")),
    ("protocol-superscript-digit", entry(protocol="²", destinationPorts=DROP)),
    ("protocol-7-digits", entry(protocol="0000006", destinationPorts=DROP)),
    ("namespace-selector-not-an-object", epg(namespaceSelector="all")),
    ("namespace-selector-unknown-field", epg(namespaceSelector={"matchLabel": {"team": "x"}})),
    ("namespace-selector-label-value", epg(namespaceSelector={"matchLabels": {"team": "a b"}})),
    ("namespace-selector-operator-like", epg(namespaceSelector={"matchExpressions": [
        {"key": "team", "operator": "Like", "values": ["x"]}]})),
    ("namespace-selector-in-without-values", epg(namespaceSelector={"matchExpressions": [
        {"key": "team", "operator": "In"}]})),
    ("namespace-selector-exists-with-values", epg(namespaceSelector={"matchExpressions": [
        {"key": "team", "operator": "Exists", "values": ["x"]}]})),
    ("namespace-selector-expression-value", epg(namespaceSelector={"matchExpressions": [
        {"key": "team", "operator": "NotIn", "values": ["a b"]}]})),
    ("namespace-selector-expression-key", epg(namespaceSelector={"matchExpressions": [
        {"key": "bad key", "operator": "Exists"}]})),
    ("namespace-selector-key-prefix-254", epg(namespaceSelector={"matchExpressions": [
        {"key": "a" * 254 + "/k", "operator": "Exists"}]})),
    ("namespace-selector-key-name-64", epg(namespaceSelector={"matchExpressions": [
        {"key": "example.com/" + "k" * 64, "operator": "Exists"}]})),
]

ACCEPTED = [
    ("epg-spec-empty", changed(EPG, "metadata", name="web") | {"spec": {}}),
    ("epg-without-spec", {k: v for k, v in EPG.items() if k != "spec"}),
    ("metadata-name-over-64-with-spec-name", changed(EPG, "metadata", name="a" * 70)),
    ("subnet-v6", epg(subnets=["2001:db8::/32"])),
    ("epg-mode-audit", epg(mode="audit")),
    ("contract-mode-audit", changed(CONTRACT, SPEC, mode="audit")),
    ("epg-mode-enforce", epg(mode="enforce")),
    ("subnet-host-bits-set", epg(subnets=["10.0.0.1/24"])),
    ("subnet-v4-mapped", epg(subnets=["::ffff:10.0.0.0/104"])),
    ("contract-without-subjects", changed(CONTRACT, SPEC, subjects=DROP)),
    ("contract-defaults", changed(CONTRACT, SPEC, tenant=DROP, name=DROP, scope=DROP)),
    ("subject-without-filters", changed(CONTRACT, SUBJECT, filters=DROP)),
    ("filter-deny", changed(CONTRACT, FILTER, action="deny")),
    ("entry-only-name", {**CONTRACT, "spec": {**CONTRACT["spec"], "subjects": [
        {"name": "any", "filters": [{"name": "any", "entries": [{"name": "any"}]}]}]}}),
    ("port-leading-zero", entry(destinationPorts="080")),
    ("port-6-digits", entry(destinationPorts="065535")),
    ("port-range-6-digits", entry(destinationPorts="000080-008080")),
    ("port-65535", entry(destinationPorts="65535")),
    ("port-range", entry(destinationPorts="8000-8080")),
    ("port-range-single", entry(destinationPorts="443-443")),
    ("port-range-with-spaces", entry(destinationPorts=" 80 - 90 ")),
    ("port-apic-name", entry(destinationPorts="ftpData")),
    ("port-range-apic-names", entry(destinationPorts="http-https")),
    ("port-range-name-and-number", entry(destinationPorts="http-8080")),
    ("ports-unspecified-with-icmp", entry(protocol="icmp", destinationPorts="unspecified")),
    ("protocol-upper-case", entry(protocol="TCP")),
    ("protocol-6", entry(protocol="6")),
    ("protocol-006-with-ports", entry(protocol="006", destinationPorts="80")),
    ("protocol-6-digits", entry(protocol="000000", destinationPorts=DROP)),
    ("protocol-17-as-string", entry(protocol="17", destinationPorts="53")),
    ("protocol-sctp-with-ports", entry(protocol="sctp", destinationPorts="3868")),
    ("protocol-132-with-ports", entry(protocol="132", destinationPorts="3868")),
    ("protocol-0-without-ports", entry(protocol="0", destinationPorts=DROP)),
    ("protocol-255", entry(protocol="255", destinationPorts=DROP)),
    ("protocol-unspecified", entry(protocol="unspecified", destinationPorts=DROP)),
    ("protocol-icmpv6-ipv6", entry(protocol="icmpv6", etherType="ipv6", destinationPorts=DROP)),
    ("ether-type-unspecified", entry(etherType="unspecified")),
    ("namespace-selector-everything", epg(namespaceSelector={})),
    ("namespace-selector-labels", epg(namespaceSelector={"matchLabels": {
        "kubernetes.io/metadata.name": "shop", "team": ""}})),
    ("namespace-selector-expressions", epg(namespaceSelector={"matchExpressions": [
        {"key": "example.com/tier", "operator": "In", "values": ["a", "b"]},
        {"key": "team", "operator": "DoesNotExist"}, {"key": "a" * 253 + "/" + "k" * 63, "operator": "Exists"}]})),
]


def params(table: list[Any]) -> list[Any]:
    return [pytest.param(*case, id=case[0]) if type(case) is tuple else case for case in table]


@pytest.mark.parametrize(("case", "obj"), params(REJECTED))
def test_schema_and_loader_both_reject(case: str, obj: dict[str, Any]) -> None:
    by_loader = loader_errors(obj)
    by_schema = schema_errors(obj)
    assert by_schema, f"{case}: the CRD schema accepts what the loader rejects: {by_loader}"
    assert by_loader, f"{case}: the loader accepts what the CRD schema rejects: {by_schema}"


@pytest.mark.parametrize(("case", "obj"), params(ACCEPTED))
def test_schema_and_loader_both_accept(case: str, obj: dict[str, Any]) -> None:
    assert schema_errors(obj) == []
    assert loader_errors(obj) == []


def two_filters_named_alike() -> dict[str, Any]:
    obj = copy.deepcopy(CONTRACT)
    other = copy.deepcopy(obj["spec"]["subjects"][0])
    other["name"] = "admin"
    other["filters"][0]["entries"][0]["destinationPorts"] = "8081"
    obj["spec"]["subjects"].append(other)
    return obj


# Where the two cannot agree: (case, object, schema accepts, loader accepts, why). Should one side change, the
# test fails: move the case into REJECTED or ACCEPTED.
DISAGREEMENTS = [
    ("port-as-a-number", entry(destinationPorts=8080), False, True,
     "the schema types destinationPorts and protocol as strings: the API server estimates the CEL cost of an "
     "int-or-string as that of a 3 MiB string and would refuse the CRD. Deliberate; the docs always quote them."),
    ("protocol-as-a-number", entry(protocol=6), False, True, "the same for protocol"),
    ("entries-over-maxItems", changed(CONTRACT, FILTER, entries=[
        {"name": f"tcp-{p}", "protocol": "tcp", "destinationPorts": str(p)} for p in range(1000, 1033)]), False, True,
     "the schema bounds subjects (16), filters (16) and entries (32) so that the API server accepts the CEL "
     "rules' cost estimate; the loader has no bound. Deliberate; raise maxItems if real contracts need more."),
    ("port-string-over-32-characters", entry(destinationPorts="80" + " " * 40), False, True,
     "maxLength bounds the CEL cost too; only runs of spaces, which the loader strips, reach it."),
    ("namespace-selector-label-key", epg(namespaceSelector={"matchLabels": {"/team": "x"}}), True, False,
     "a schema cannot check map keys (no propertyNames in structural schemas), and a CEL rule over them would be "
     "costed as if each key were megabytes long; the controller reports it (Valid=False)."),
    ("namespace-selector-over-16-expressions", epg(namespaceSelector={"matchExpressions": [
        {"key": f"k{i}", "operator": "Exists"} for i in range(17)]}), False, True,
     "maxItems bounds the CEL cost of the per-expression rules, as for contracts' entries."),
    ("filter-name-reused-with-other-entries", two_filters_named_alike(), True, False,
     "filters are tenant-scoped: one name, one set of entries across every contract of the tenant. That is a "
     "rule across objects, which no object schema can check; the controller reports it (Valid=False)."),
]


@pytest.mark.parametrize(("case", "obj", "schema_ok", "loader_ok", "why"), params(DISAGREEMENTS))
def test_known_disagreements(case: str, obj: dict[str, Any], schema_ok: bool, loader_ok: bool, why: str) -> None:
    assert (schema_errors(obj) == [], loader_errors(obj) == []) == (schema_ok, loader_ok), why


def example_objects() -> list[tuple[str, dict[str, Any]]]:
    return [(f"{p.name}:{d['metadata']['name']}", d) for p in sorted(EXAMPLES.glob("*.yaml"))
            for d in load_yaml(p) if d.get("kind") in ("EndpointGroup", "Contract")]


@pytest.mark.parametrize(("name", "obj"), example_objects(), ids=[n for n, _ in example_objects()])
def test_examples_pass_the_schema(name: str, obj: dict[str, Any]) -> None:
    assert schema_errors(obj) == []


def test_examples_cover_both_kinds_and_load() -> None:
    kinds = {obj["kind"] for _, obj in example_objects()}
    assert kinds == {"EndpointGroup", "Contract"}
    load_cluster(documents("examples", [d for p in sorted(EXAMPLES.glob("*.yaml")) for d in load_yaml(p)]))


@pytest.mark.parametrize("kind", ["EndpointGroup", "Contract"])
def test_status_as_the_controller_writes_it(kind: str) -> None:
    """The status patch of controller/runtime.py (its own condition builder) fits the status schema."""
    obj = copy.deepcopy(EPG if kind == "EndpointGroup" else CONTRACT)
    now = "2025-01-01T00:00:00Z"
    obj["status"] = {"observedGeneration": 3, "conditions": [
        status_condition("Valid", False, "Invalid", "spec.intraEpg 'deny' must be permit or isolate", 3, now),
        status_condition("Synced", True, "Synced", "in sync with the APIC", 3, now)]}
    assert schema_errors(obj) == []
    obj["status"]["conditions"][0]["status"] = "Yes"
    obj["status"]["conditions"][1]["lastTransitionTime"] = "yesterday"
    assert len(schema_errors(obj)) == 2


# --- RBAC -----------------------------------------------------------------------------------------------------

INPUTS = {("", "namespaces"), ("", "pods"), ("apps", "deployments"), ("apps", "statefulsets"),
          ("apps", "daemonsets"), ("apps", "replicasets"), ("networking.k8s.io", "networkpolicies"),
          ("epgbridge.io", "endpointgroups"), ("epgbridge.io", "contracts")}


def grants(role: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    for rule in role["rules"]:
        assert "nonResourceURLs" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert "*" not in (group, resource, verb), f"wildcard in {role['metadata']['name']}"
                    yield group, resource, verb


WATCH = {"list", "watch"}
# Every request the code makes, by role: (API group, resource, verb). Keep in step with the code; the live
# proof is tests/controller/test_rbac.py (the real processes against an API server enforcing these rules).
CONTROLLER_CALLS = (
    {(g, r, v) for g, r in INPUTS for v in WATCH}  # controller/watch.py: informers list and watch
    | {("epgbridge.io", "endpointgroups/status", "patch"), ("epgbridge.io", "contracts/status", "patch")}
    | {("", "events", "create"), ("", "events", "patch")}  # controller/events.py EventRecorder
)
LEASE_CALLS = {("coordination.k8s.io", "leases", v) for v in ("create", "get", "update")}  # controller/leader.py
AGENT_CALLS = (
    {(g, r, v) for g, r in (*INPUTS, ("", "nodes")) for v in WATCH}  # nodes: its own (a field selector)
    | {("", "events", "create"), ("", "events", "patch")}  # dataplane/drops.py: Events on pods whose packets dropped
)
ANNOTATE_CALLS = (  # controller/cmd_annotate.py: get and merge-patch the target; show reads owners and namespace
    {("", "pods", "get"), ("", "pods", "patch"), ("", "namespaces", "get")}
    | {("apps", r, v) for r in ("deployments", "statefulsets", "daemonsets") for v in ("get", "list", "patch")}
    | {("apps", "replicasets", v) for v in ("get", "list")}
)


def test_agent_lists_and_watches_its_inputs_and_writes_only_events() -> None:
    assert set(grants(find("ClusterRole", "epgbridge-agent"))) == AGENT_CALLS
    assert not [o for o in objects() if o["kind"] in ("Role", "RoleBinding")
                and any(s["name"] == "epgbridge-agent" for s in o.get("subjects", []))]


def test_controller_is_granted_exactly_what_it_calls() -> None:
    assert set(grants(find("ClusterRole", "epgbridge-controller"))) == CONTROLLER_CALLS
    lease = find("Role", "epgbridge-controller-leader-election")
    assert lease["metadata"]["namespace"] == NAMESPACE
    assert set(grants(lease)) == LEASE_CALLS
    for rule in lease["rules"]:  # create cannot be limited by name; everything else is
        assert rule["verbs"] == ["create"] or rule.get("resourceNames") == ["epgbridge-controller"]


def test_annotate_roles() -> None:
    assert set(grants(find("ClusterRole", "epgbridge-annotate"))) == ANNOTATE_CALLS
    assert set(grants(find("ClusterRole", "epgbridge-annotate-namespaces"))) == {
        ("", "namespaces", "get"), ("", "namespaces", "patch")}
    # The tenancy guard's inputs (controller/cmd_annotate.py guard_inputs): EndpointGroups, the Config.
    assert set(grants(find("ClusterRole", "epgbridge-annotate-guard"))) == {("epgbridge.io", "endpointgroups", "list")}
    config = find("Role", "epgbridge-config-reader")
    assert set(grants(config)) == {("", "configmaps", "get")} and config["metadata"]["namespace"] == NAMESPACE
    assert [rule["resourceNames"] for rule in config["rules"]] == [["epgbridge-config"]]


def test_no_role_touches_secrets_or_configmaps() -> None:
    """But for the one ConfigMap that holds the Config, which annotate reads (no secrets in it)."""
    for role in (o for o in objects() if o["kind"] in ("Role", "ClusterRole")):
        if role["metadata"]["name"] == "epgbridge-config-reader":
            continue
        assert not {r for _, r, _ in grants(role)} & {"secrets", "configmaps"}, role["metadata"]["name"]


@pytest.mark.parametrize(("binding_kind", "name"), [("ClusterRoleBinding", "epgbridge-controller"),
                                                    ("ClusterRoleBinding", "epgbridge-agent"),
                                                    ("RoleBinding", "epgbridge-controller-leader-election")])
def test_bindings_point_at_existing_roles_and_service_accounts(binding_kind: str, name: str) -> None:
    binding = find(binding_kind, name)
    role = find(binding["roleRef"]["kind"], binding["roleRef"]["name"])
    assert binding["roleRef"]["apiGroup"] == "rbac.authorization.k8s.io"
    for subject in binding["subjects"]:
        assert subject["kind"] == "ServiceAccount" and subject["namespace"] == NAMESPACE
        find("ServiceAccount", subject["name"])
    if binding_kind == "RoleBinding":
        assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == NAMESPACE


# --- controller and agent -------------------------------------------------------------------------------------


def container(kind: str, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    pod = find(kind, name)["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    return pod, c


def parsed_args(c: dict[str, Any]) -> argparse.Namespace:
    """The container's arguments as the real `epgbridge` CLI parses them, $(VAR) expanded as the kubelet does."""
    env = {e["name"]: f"<{e['name']}>" for e in c.get("env", [])}
    args = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg) for arg in c["args"]]
    try:
        return build_parser().parse_args(args)
    except SystemExit:
        pytest.fail(f"epgbridge rejects the container's arguments {c['args']}")


def assert_config_mounted(pod: dict[str, Any], c: dict[str, Any]) -> None:
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "epgbridge-config"
    assert mounts["config"]["mountPath"] == "/etc/epgbridge" and mounts["config"]["readOnly"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert "emptyDir" in volumes[mounts["tmp"]["name"]] and mounts["tmp"]["mountPath"] == "/tmp"


def assert_probes(c: dict[str, Any], port: int, host: str | None = None) -> None:
    (named,) = [p for p in c["ports"] if p["containerPort"] == port]
    for probe, path in (("startupProbe", "/livez"), ("livenessProbe", "/livez"), ("readinessProbe", "/healthz")):
        expected = {"path": path, "port": named["name"], **({"host": host} if host else {})}
        assert c[probe]["httpGet"] == expected, probe
    assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
    assert c["resources"]["limits"]["memory"]


def test_controller_deployment() -> None:
    deployment = find("Deployment", "epgbridge-controller")
    assert deployment["spec"]["replicas"] == 2
    pod, c = container("Deployment", "epgbridge-controller")
    assert pod["serviceAccountName"] == "epgbridge-controller"
    args = parsed_args(c)
    assert args.command == "controller"
    assert args.apic and all(url.startswith("https://") for url in args.apic) and not args.insecure
    # Metrics and probes on the pod's address: the kubelet and Prometheus are outside the pod's loopback.
    assert (args.metrics_address, args.leader_elect_namespace, args.identity) == (
        "[<POD_IP>]:9090", "<POD_NAMESPACE>", "<POD_NAME>")
    lease = find("Role", "epgbridge-controller-leader-election")
    assert [args.lease_name] in [rule.get("resourceNames") for rule in lease["rules"]]
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    for key in ("APIC_USERNAME", "APIC_PASSWORD"):  # from the Secret, never a literal or an argument
        assert env[key]["valueFrom"]["secretKeyRef"] == {"name": "epgbridge-apic", "key": key}
    assert not any("password" in arg.lower() for arg in c["args"])
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert "hostNetwork" not in pod
    assert_config_mounted(pod, c)
    assert_probes(c, 9090)
    pdb = find("PodDisruptionBudget", "epgbridge-controller")
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"] and pdb["spec"]["minAvailable"] == 1


def test_agent_daemonset() -> None:
    pod, c = container("DaemonSet", "epgbridge-agent")
    assert pod["serviceAccountName"] == "epgbridge-agent"
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert pod["tolerations"] == [{"operator": "Exists"}], "runs on every node, tainted or not"
    args = parsed_args(c)
    # hostNetwork: every address of the node would be exposed; loopback only, probed on 127.0.0.1.
    assert (args.command, args.node, args.metrics_address) == ("agent", "<NODE_NAME>", "127.0.0.1:9091")
    (node,) = [e for e in c["env"] if e["name"] == "NODE_NAME"]
    assert node["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    security = c["securityContext"]
    assert security["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN"]}
    assert not security.get("privileged") and security["allowPrivilegeEscalation"] is False
    assert not any("hostPath" in v for v in pod["volumes"]) and "hostPID" not in pod
    assert_config_mounted(pod, c)
    assert_probes(c, 9091, host="127.0.0.1")


def test_namespace_admits_the_agent() -> None:
    labels = find("Namespace", NAMESPACE)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"


# --- the Config in the ConfigMap ------------------------------------------------------------------------------


def test_configmap_config_loads_through_the_loader() -> None:
    configmap = find("ConfigMap", "epgbridge-config")
    assert set(configmap["data"]) == {"config.yaml"}
    config = yaml.safe_load(configmap["data"]["config.yaml"])
    assert (config["apiVersion"], config["kind"]) == (GROUP, "Config")
    cluster = load_cluster(documents("epgbridge-config", [config]))
    assert set(config["spec"]) == {"defaultEndpointGroup", "annotationKey", "invalidAnnotation"}
    assert not re.search(r"(?i)password|secret", configmap["data"]["config.yaml"])
    # Both processes read it through --config from where the ConfigMap is mounted.
    assert cluster.config == Config()
    for kind, name in (("Deployment", "epgbridge-controller"), ("DaemonSet", "epgbridge-agent")):
        assert "--config=/etc/epgbridge/config.yaml" in container(kind, name)[1]["args"]


# --- the image --------------------------------------------------------------------------------------------------


def dockerfile() -> list[str]:
    return (DEPLOY / "Dockerfile").read_text(encoding="utf-8").splitlines()


def package_patterns() -> list[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns: list[str] = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    return patterns


def test_dockerfile_copies_every_package_and_drops_root() -> None:
    lines = dockerfile()
    assert [line for line in lines if line.startswith("FROM ")] == ["FROM python:3.11-slim"]
    copied = {src.rstrip("/") for line in lines if line.startswith("COPY ") for src in line.split()[1:-1]}
    assert {p.rstrip("*") for p in package_patterns()} | {"pyproject.toml", "README.md"} <= copied
    assert any("nftables" in line and "iproute2" in line for line in lines)
    users = [line for line in lines if line.startswith("USER ")]
    assert users == ["USER 65532:65532"]
    assert next(line for line in lines if line.startswith("ENTRYPOINT")) == 'ENTRYPOINT ["epgbridge"]'


def test_every_subpackage_is_packaged() -> None:
    """`pip install .` in the image must take every subpackage (apic_client.simulator was once left out)."""
    patterns = package_patterns()
    tops = [p.rstrip("*") for p in patterns]
    on_disk = {str(init.parent.relative_to(ROOT)).replace("/", ".") for top in tops
               for init in (ROOT / top).rglob("__init__.py")}
    assert "apic_client.simulator" in on_disk
    assert all(any(fnmatch.fnmatchcase(pkg, pattern) for pattern in patterns) for pkg in on_disk)
