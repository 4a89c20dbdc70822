"""acitoolkit as an independent check of the renderer: the same EPGs, contract and filter entries built with
acitoolkit give the same objects as `render_tenants`, once both are normalised the way the APIC stores them.

Normalisation (the same one the diff-sync uses): every configurable property of the class catalogue that is
absent gets the APIC's default, and every value is put in the APIC's spelling (``"0"`` -> ``no``,
``"53"`` -> ``dns``, ``"tcp"`` stays ``tcp``). What differs beyond that is listed in IGNORED with a reason.
"""

from __future__ import annotations

from typing import Any

import pytest

from apic_client.acitoolkit_compat import import_acitoolkit
from apic_client.meta import CLASSES
from apic_client.mo import from_json, normalise
from apic_client.render import render_tenants
from contracts.loader import load_cluster
from contracts.model import Model
from controller.snapshot import parse_text

try:
    aci: Any = import_acitoolkit()
except ImportError:  # pragma: no cover - depends on the environment
    pytest.skip("acitoolkit is not installed (pip install 'epgbridge[acitoolkit]')", allow_module_level=True)

# acitoolkit names a contract's only subject "<contract>_Subject" and gives each entry its own filter
# "<entry>_Filter"; the snapshot uses those names so that both sides describe the same objects.
SNAPSHOT = """
apiVersion: epgbridge.io/v1alpha1
kind: EndpointGroup
metadata: {name: web}
spec: {tenant: eq, applicationProfile: app, name: web, bridgeDomain: bd1, intraEpg: isolate, provides: [web-http],
       consumes: [dns]}
---
apiVersion: epgbridge.io/v1alpha1
kind: EndpointGroup
metadata: {name: db}
spec: {tenant: eq, applicationProfile: app, name: db, bridgeDomain: bd1, consumes: [web-http], provides: [dns]}
---
apiVersion: epgbridge.io/v1alpha1
kind: Contract
metadata: {name: web-http}
spec:
  tenant: eq
  name: web-http
  scope: tenant
  subjects:
  - name: web-http_Subject
    filters:
    - name: tcp-80_Filter
      entries: [{name: tcp-80, etherType: ip, protocol: tcp, destinationPorts: "80"}]
    - name: tcp-8000-8080_Filter
      entries: [{name: tcp-8000-8080, etherType: ip, protocol: tcp, destinationPorts: "8000-8080"}]
---
apiVersion: epgbridge.io/v1alpha1
kind: Contract
metadata: {name: dns}
spec:
  tenant: eq
  name: dns
  scope: global
  subjects:
  - name: dns_Subject
    filters:
    - name: udp-53_Filter
      entries: [{name: udp-53, protocol: udp, destinationPorts: "53"}]
"""

# Objects one side has and the other leaves out on purpose: not compared at all.
IGNORED: dict[tuple[str, str], str] = {
    ("fvBD", "*"): "acitoolkit's EPG.add_bd needs a BridgeDomain object and pushes it with its own defaults; "
    "epgbridge only names the BD (fvRsBd tnFvBDName) and leaves the BD to the fabric admin",
}
# Attributes whose raw values differ but mean the same once the APIC's defaults and spelling are applied.
DEFAULTED: dict[tuple[str, str], str] = {
    ("fvAEPg", "pcEnfPref"): "acitoolkit sets it only to isolate (enforced); we always set it (default unenforced)",
    ("vzRsSubjFiltAtt", "action"): "acitoolkit leaves the action to the APIC's default, permit; we always set it",
    **{("vzEntry", prop): "acitoolkit sends '0', the APIC's default; we leave it out"
       for prop in ("applyToFrag", "arpOpc", "sFromPort", "sToPort", "tcpRules", "stateful")},
    **{("vzEntry", prop): "acitoolkit sends the number (53, 80); we the name the APIC stores (dns, http)"
       for prop in ("dFromPort", "dToPort")},
}


def acitoolkit_tree() -> dict[str, Any]:
    tenant = aci.Tenant("eq")
    app = aci.AppProfile("app", tenant)
    web, db = aci.EPG("web", app), aci.EPG("db", app)
    bd = aci.BridgeDomain("bd1", tenant)
    web.add_bd(bd)
    db.add_bd(bd)
    web.set_intra_epg_isolation(True)
    web_http = aci.Contract("web-http", tenant)
    web_http.set_scope("tenant")
    aci.FilterEntry("tcp-80", parent=web_http, etherT="ip", prot="tcp", dFromPort="80", dToPort="80")
    aci.FilterEntry("tcp-8000-8080", parent=web_http, etherT="ip", prot="tcp", dFromPort="8000", dToPort="8080")
    dns = aci.Contract("dns", tenant)
    dns.set_scope("global")
    aci.FilterEntry("udp-53", parent=dns, etherT="ip", prot="udp", dFromPort="53", dToPort="53")
    web.provide(web_http)
    web.consume(dns)
    db.consume(web_http)
    db.provide(dns)
    tree: dict[str, Any] = tenant.get_json()
    return tree


def raw_differences(ours: dict[str, Any], theirs: dict[str, Any]) -> set[tuple[str, str]]:
    """(class, attribute) pairs whose raw values differ between the two trees (objects in both)."""
    mine = {mo.dn: mo for mo in from_json(ours, "uni").walk()}
    atk = {mo.dn: mo for mo in from_json(theirs, "uni").walk()}
    found = set()
    for dn in mine.keys() & atk.keys():
        a, b = mine[dn].attributes, atk[dn].attributes
        found |= {(mine[dn].cls, k) for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
    return found


def normalised(tree: dict[str, Any]) -> dict[str, tuple[str, dict[str, str]]]:
    out: dict[str, tuple[str, dict[str, str]]] = {}
    for mo in from_json(tree, "uni").walk():
        if (mo.cls, "*") in IGNORED:
            continue
        meta = CLASSES[mo.cls]
        attributes = {prop: rule.default_value for prop, rule in meta.props.items()}
        attributes.update(mo.attributes)
        out[mo.dn] = (mo.cls, {k: normalise(mo.cls, k, v) for k, v in attributes.items()})
    return out


def test_render_equals_acitoolkit_for_the_same_epgs_contracts_and_filters() -> None:
    (ours,) = render_tenants(Model(load_cluster(parse_text("eq.yaml", SNAPSHOT))))
    theirs = acitoolkit_tree()
    assert any("fvBD" in child for child in theirs["fvTenant"]["children"])  # what IGNORED leaves out
    assert raw_differences(ours, theirs) <= DEFAULTED.keys()
    mine, atk = normalised(ours), normalised(theirs)
    assert sorted(mine) == sorted(atk)
    for dn in mine:
        assert mine[dn] == atk[dn], dn
    # The comparison has teeth: the isolated EPG, the port names and the scopes made it through.
    assert mine["uni/tn-eq/ap-app/epg-web"][1]["pcEnfPref"] == "enforced"
    assert mine["uni/tn-eq/flt-udp-53_Filter/e-udp-53"][1]["dFromPort"] == "dns"
    assert atk["uni/tn-eq/brc-dns"][1]["scope"] == "global"
