"""What Ansible's cisco.aci modules showed the simulator lacked (issue 13, items 6-9): writes answered with
what changed (``rsp-subtree=modified``), ``rsp-subtree-filter`` and ``rsp-subtree-include``, bracketed
names in DNs, the classes and attributes of a network team's tenant subtree, and details of real answers."""

from __future__ import annotations

import argparse
import json
from typing import Any

import pytest
import requests

from apic_client.meta import CLASSES
from apic_client.simulator import Simulator
from apic_client.simulator.cli import add_arguments

from .conftest import SimFactory, mo
from .test_simulator import attrs, error_of, get, login, post


@pytest.fixture
def http(sim: Simulator) -> requests.Session:
    return login(sim)


def write(sim: Simulator, http: requests.Session, path: str, payload: Any) -> dict[str, Any]:
    reply = http.post(sim.url + path, params={"rsp-subtree": "modified"}, data=json.dumps(payload), timeout=5)
    assert reply.status_code == 200, reply.text
    return reply.json()


def statuses(imdata: list[dict[str, Any]]) -> dict[str, str]:
    """dn -> status of every object in an answer (nested objects' DNs rebuilt from their RNs)."""
    out: dict[str, str] = {}

    def walk(obj: dict[str, Any], parent: str) -> None:
        ((_, body),) = obj.items()
        a = body["attributes"]
        dn = a.get("dn") or f"{parent}/{a['rn']}"
        out[dn] = a.get("status", "")
        for child in body.get("children", []):
            walk(child, dn)

    for obj in imdata:
        walk(obj, "")
    return out


def test_writes_echo_what_they_changed(sim: Simulator, http: requests.Session) -> None:
    tenant = mo("fvTenant", {"name": "t1"}, mo("fvAp", {"name": "ap"}))
    created = write(sim, http, "/api/mo/uni/tn-t1.json", tenant)
    assert statuses(created["imdata"]).items() >= {("uni/tn-t1", "created"), ("uni/tn-t1/ap-ap", "created")}
    assert created["totalCount"] == "1"
    assert write(sim, http, "/api/mo/uni/tn-t1.json", tenant) == {"totalCount": "0", "imdata": []}  # no change
    modified = write(sim, http, "/api/mo/uni/tn-t1.json", mo("fvTenant", {"name": "t1", "descr": "new"}))
    ((_, body),) = modified["imdata"][0].items()
    assert body["attributes"] == {"descr": "new", "dn": "uni/tn-t1", "status": "modified"}
    deleted = write(sim, http, "/api/mo/uni/tn-t1/ap-ap.json", mo("fvAp", {"name": "ap", "status": "deleted"}))
    assert statuses(deleted["imdata"]) == {"uni/tn-t1/ap-ap": "deleted"}
    reply = http.delete(sim.url + "/api/mo/uni/tn-t1.json", params={"rsp-subtree": "modified"}, timeout=5)
    assert statuses(reply.json()["imdata"])["uni/tn-t1"] == "deleted"
    reply = http.delete(sim.url + "/api/mo/uni/tn-t1.json", params={"rsp-subtree": "modified"}, timeout=5)
    assert reply.json() == {"totalCount": "0", "imdata": []}  # already gone: nothing changed
    plain = post(sim, http, "/api/mo/uni.json", mo("fvTenant", {"name": "t2"}))
    assert plain.text == '{"totalCount":"0","imdata":[]}'  # without the option: the 30-byte answer


@pytest.fixture
def filters(sim: Simulator, http: requests.Session) -> None:
    entries = [mo("vzEntry", {"name": f"e{i}", "etherT": "ip", "prot": "tcp", "dFromPort": str(80 + i)})
               for i in range(6)]
    post(sim, http, "/api/mo/uni.json", mo("fvTenant", {"name": "t"}, mo("vzFilter", {"name": "f"}, *entries)))


def test_rsp_subtree_filter_and_count(sim: Simulator, http: requests.Session, filters: None) -> None:
    one = get(sim, http, "/api/mo/uni/tn-t/flt-f.json", **{
        "rsp-subtree": "full", "rsp-subtree-class": "vzEntry", "rsp-subtree-filter": 'eq(vzEntry.name,"e3")'})
    ((_, body),) = one["imdata"][0].items()
    assert [attrs(c)["name"] for c in body["children"]] == ["e3"]
    both = get(sim, http, "/api/mo/uni/tn-t.json", **{
        "rsp-subtree": "full", "rsp-subtree-filter": 'or(eq(vzEntry.name,"e1"),eq(vzEntry.dFromPort,"85"))'})
    ((_, tenant),) = both["imdata"][0].items()
    (flt,) = tenant["children"]  # the filter only as the way to the matching entries
    assert [attrs(c)["name"] for c in flt["vzFilter"]["children"]] == ["e1", "e5"]
    count = get(sim, http, "/api/mo/uni/tn-t.json", **{
        "query-target": "subtree", "target-subtree-class": "vzEntry", "rsp-subtree-include": "count"})
    assert count == {"totalCount": "1", "imdata": [
        {"moCount": {"attributes": {"childAction": "", "count": "6", "dn": "", "status": ""}}}]}
    reply = http.get(sim.url + "/api/mo/uni/tn-t.json", params={"rsp-subtree-include": "everything"}, timeout=5)
    assert reply.status_code == 400


def test_bracketed_names_in_dns(sim: Simulator, http: requests.Session) -> None:
    """Ansible writes to uni/tn-[Dag].json: the brackets quote the name."""
    write(sim, http, "/api/mo/uni/tn-[Dag].json", mo("fvTenant", {"name": "Dag"}))
    assert attrs(get(sim, http, "/api/mo/uni/tn-Dag.json")["imdata"][0])["dn"] == "uni/tn-Dag"
    assert attrs(get(sim, http, "/api/mo/uni/tn-[Dag].json")["imdata"][0])["name"] == "Dag"
    write(sim, http, "/api/mo/uni/tn-[Dag]/ap-[web].json", mo("fvAp", {"dn": "uni/tn-[Dag]/ap-[web]", "name": "web"}))
    assert get(sim, http, "/api/mo/uni/tn-Dag/ap-web.json")["totalCount"] == "1"


# The options Ansible's modules send, which the simulator refused with 400/122 before.
NETWORK_TEAM_TENANT = mo(
    "fvTenant", {"name": "net"},
    mo("fvCtx", {"name": "vrf", "ipDataPlaneLearning": "enabled", "pcEnfPref": "enforced"},
       mo("vzAny", {"matchT": "AtleastOne"}, mo("vzRsAnyToProv", {"tnVzBrCPName": "c"}),
          mo("vzRsAnyToCons", {"tnVzBrCPName": "c"}))),
    mo("fvBD", {"name": "bd", "epClear": "no", "epMoveDetectMode": "garp", "mcastAllow": "no",
                "hostBasedRouting": "no", "llAddr": "::", "vmac": "not-applicable", "ipv6McastAllow": "no",
                "OptimizeWanBandwidth": "no", "intersiteBumTrafficAllow": "no", "intersiteL2Stretch": "no",
                "enableRogueExceptMac": "no", "mcastARPDrop": "yes", "limitIpLearnToSubnets": "yes"},
       mo("fvRsCtx", {"tnFvCtxName": "vrf"}), mo("fvRsBdToEpRet", {"tnFvEpRetPolName": "", "resolveAct": "resolve"}),
       mo("fvRsIgmpsn", {"tnIgmpSnoopPolName": ""}), mo("fvRsMldsn", {"tnMldSnoopPolName": ""}),
       mo("fvRsBDToNdP", {"tnNdIfPolName": ""}), mo("fvRsABDPolMonPol", {"tnMonEPGPolName": ""}),
       mo("fvRsBDToOut", {"tnL3extOutName": "out"}),
       mo("fvSubnet", {"ip": "10.0.0.1/24", "scope": "private", "virtual": "no", "ipDPLearning": "enabled"},
          mo("fvRsBDSubnetToProfile", {"tnRtctrlProfileName": ""}))),
    mo("vzBrCP", {"name": "c", "scope": "context"},
       mo("vzSubj", {"name": "s"}, mo("vzRsSubjFiltAtt", {"tnVzFilterName": "f"}),
          mo("vzConsSubjLbl", {"name": "l1", "tag": "yellow-green"}), mo("vzProvSubjLbl", {"name": "l2"}))),
    mo("vzFilter", {"name": "f"}, mo("vzEntry", {"name": "e", "prot": "tcp", "dFromPort": "443"})),
    mo("fvAp", {"name": "ap"},
       mo("fvAEPg", {"name": "epg"}, mo("fvRsBd", {"tnFvBDName": "bd"}), mo("fvRsAEPgMonPol", {"tnMonEPGPolName": ""}),
          mo("fvRsDomAtt", {"tDn": "uni/vmmp-VMware/dom-vmm", "resImedcy": "immediate", "encapMode": "auto",
                            "instrImedcy": "lazy", "switchingMode": "native"}),
          mo("fvRsPathAtt", {"tDn": "topology/pod-1/paths-101/pathep-[eth1/1]", "encap": "vlan-10",
                             "mode": "regular"}),
          mo("vzConsLbl", {"name": "l1"}), mo("fvRsCons", {"tnVzBrCPName": "c"}),
          mo("tagTag", {"key": "team", "value": "net"}), mo("fvCrtrn", {"name": "default", "match": "any"}))),
)


def test_a_network_teams_tenant_is_accepted(sim: Simulator, http: requests.Session) -> None:
    reply = post(sim, http, "/api/mo/uni.json", NETWORK_TEAM_TENANT)
    assert reply.status_code == 200, reply.text
    tree = get(sim, http, "/api/mo/uni/tn-net.json", **{"rsp-subtree": "full"})
    dns = set(statuses(tree["imdata"]))
    assert {"uni/tn-net/ctx-vrf/any/rsanyToProv-c", "uni/tn-net/ap-ap/epg-epg/tagKey-team",
            "uni/tn-net/ap-ap/epg-epg/rsdomAtt-[uni/vmmp-VMware/dom-vmm]",
            "uni/tn-net/ap-ap/epg-epg/rspathAtt-[topology/pod-1/paths-101/pathep-[eth1/1]]",
            "uni/tn-net/BD-bd/subnet-[10.0.0.1/24]/rsBDSubnetToProfile"} <= dns
    path = get(sim, http, "/api/mo/uni/tn-net/ap-ap/epg-epg/rspathAtt-[topology/pod-1/paths-101/pathep-[eth1/1]].json")
    assert attrs(path["imdata"][0])["tDn"] == "topology/pod-1/paths-101/pathep-[eth1/1]"


def test_every_vrf_has_its_vz_any(sim: Simulator, http: requests.Session) -> None:
    post(sim, http, "/api/mo/uni.json", mo("fvTenant", {"name": "v"}, mo("fvCtx", {"name": "vrf"})))
    (any_,) = get(sim, http, "/api/mo/uni/tn-v/ctx-vrf/any.json")["imdata"]
    assert attrs(any_)["uid"] == "0" and attrs(any_)["matchT"] == "AtleastOne"


def test_catalogue_covers_what_ansible_sends() -> None:
    assert {"ipDataPlaneLearning"} <= set(CLASSES["fvCtx"].props)
    assert {"epClear", "epMoveDetectMode", "mcastAllow", "hostBasedRouting", "llAddr", "vmac", "ipv6McastAllow",
            "OptimizeWanBandwidth", "intersiteBumTrafficAllow", "intersiteL2Stretch", "enableRogueExceptMac",
            "mcastARPDrop", "v6unkMcastAct"} <= set(CLASSES["fvBD"].props)
    assert {"fvRsAEPgMonPol", "vzAny", "vzRsAnyToProv", "vzRsAnyToCons", "vzRsAnyToConsIf", "fvRsDomAtt",
            "fvRsPathAtt", "fvRsBdToEpRet", "fvRsIgmpsn", "fvRsMldsn", "fvRsBDToNdP", "fvRsABDPolMonPol",
            "fvRsBDToOut", "vzConsLbl", "vzProvLbl", "vzConsSubjLbl", "vzProvSubjLbl", "tagTag"} <= set(CLASSES)


def test_an_entry_given_its_first_port_reads_back_one_port(sim: Simulator, http: requests.Session) -> None:
    post(sim, http, "/api/mo/uni.json", mo("fvTenant", {"name": "p"}, mo("vzFilter", {"name": "f"}, mo(
        "vzEntry", {"name": "e", "prot": "tcp", "dFromPort": "8080", "sFromPort": "http"}))))
    entry = attrs(get(sim, http, "/api/mo/uni/tn-p/flt-f/e-e.json")["imdata"][0])
    assert (entry["dFromPort"], entry["dToPort"], entry["sFromPort"], entry["sToPort"]) == (
        "8080", "8080", "http", "http")
    post(sim, http, "/api/mo/uni/tn-p/flt-f/e-e.json", mo("vzEntry", {"name": "e", "dToPort": "8090"}))
    assert attrs(get(sim, http, "/api/mo/uni/tn-p/flt-f/e-e.json")["imdata"][0])["dToPort"] == "8090"


def test_errors_read_as_a_real_apics(sim: Simulator, http: requests.Session) -> None:
    reply = post(sim, http, "/api/mo/uni/tn-e.json", mo("fvTenant", {"name": "e"}, mo("vzBrCP", {"name": "bad name"})))
    assert reply.reason == "Bad Request"
    assert error_of(reply) == (400, "801", "property name of brc-bad name failed validation for value 'bad name'")
    reply = post(sim, http, "/api/mo/uni/tn-e.json", mo("fvTenant", {"name": "e", "descr": "[x]"}))
    assert error_of(reply)[2] == "property descr of uni/tn-e failed validation for value '[x]'"


def test_login_throttle_is_configurable(make_sim: SimFactory) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--login-rate", "0.5", "--login-burst", "2"])
    assert (args.login_rate, args.login_burst) == (0.5, 2)
    assert "--login-rate" in parser.format_help() and "503" in parser.format_help()
