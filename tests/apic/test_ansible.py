"""Interoperability with Ansible: real `cisco.aci` modules (the `ansible` package's collection) against the
simulator, as a network team would run them, and epgbridge beside them. Skipped when ansible is not installed
(it is in the `test` extra).

The playbook runs twice: the first run must change every object (the modules read ``rsp-subtree=modified``
to tell), the second nothing (they query the object first, through ``rsp-subtree-filter`` and friends, and
compare); no task may fail (each attribute must be in the class catalogue).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from apic_client import ApicSession, apply, plan, render
from apic_client.simulator import Simulator
from controller.snapshot import load_model

from .conftest import PASSWORD
from .test_push import EXAMPLE

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ansible") is None or importlib.util.find_spec("ansible_collections.cisco.aci") is None,
    reason="ansible with the cisco.aci collection is not installed",
)

WRITES = [
    ("aci_tenant", {"tenant": "net"}),
    ("aci_vrf", {"tenant": "net", "vrf": "vrf", "ip_data_plane_learning": "enabled",
                 "policy_control_preference": "enforced"}),
    ("aci_bd", {"tenant": "net", "bd": "bd", "vrf": "vrf", "endpoint_clear": False, "endpoint_move_detect": "garp",
                "enable_multicast": False, "host_based_routing": False, "link_local_address": "::",
                "vmac": "not-applicable", "allow_ipv6_multicast": False, "optimize_wan_bandwidth": False,
                "multicast_arp_drop": True, "limit_ip_learn": True}),
    ("aci_bd_subnet", {"tenant": "net", "bd": "bd", "gateway": "10.1.0.1", "mask": 24, "scope": "private"}),
    ("aci_ap", {"tenant": "net", "ap": "app"}),
    ("aci_epg", {"tenant": "net", "ap": "app", "epg": "web", "bd": "bd", "intra_epg_isolation": "unenforced"}),
    ("aci_filter", {"tenant": "net", "filter": "web"}),
    ("aci_filter_entry", {"tenant": "net", "filter": "web", "entry": "http", "ether_type": "ip",
                          "ip_protocol": "tcp", "destination_port_start": "80"}),
    ("aci_filter_entry", {"tenant": "net", "filter": "web", "entry": "alt", "ether_type": "ip",
                          "ip_protocol": "tcp", "destination_port_start": "8080", "destination_port_end": "8089"}),
    ("aci_contract", {"tenant": "net", "contract": "web", "scope": "context"}),
    ("aci_contract_subject", {"tenant": "net", "contract": "web", "subject": "web"}),
    ("aci_contract_subject_to_filter", {"tenant": "net", "contract": "web", "subject": "web", "filter": "web"}),
    ("aci_epg_to_contract", {"tenant": "net", "ap": "app", "epg": "web", "contract": "web",
                             "contract_type": "provider"}),
    ("aci_vzany_to_contract", {"tenant": "net", "vrf": "vrf", "contract": "web", "type": "consumer"}),
    ("aci_epg_to_domain", {"tenant": "net", "ap": "app", "epg": "web", "domain": "phys", "domain_type": "phys"}),
    ("aci_static_binding_to_epg", {"tenant": "net", "ap": "app", "epg": "web", "encap_id": 100,
                                   "interface_type": "switch_port", "pod_id": 1, "leafs": 101, "interface": "1/7"}),
    ("aci_tag", {"dn": "uni/tn-net/ap-app/epg-web", "tag_key": "team", "tag_value": "net", "tag_type": "tag"}),
    ("aci_rest", {"path": "/api/mo/uni/tn-net.json", "method": "post",
                  "content": {"fvTenant": {"attributes": {"name": "net", "descr": "by aci_rest"}}}}),
]


def playbook(sim: Simulator, tasks: list[tuple[str, dict[str, Any]]], *, extra: list[dict[str, Any]] = ()) -> str:
    port = int(sim.url.rsplit(":", 1)[1])
    connection = {"host": "127.0.0.1", "port": port, "use_ssl": False, "validate_certs": False,
                  "username": "admin", "password": PASSWORD}
    body = [{f"cisco.aci.{module}": {**connection, **args, **({} if module in ("aci_rest",) else
                                                                 {"state": "present"})}}
            for module, args in tasks]
    body += [{**task, **{k: {**connection, **v} for k, v in task.items() if k.startswith("cisco.aci.")}}
             for task in extra]
    return yaml.safe_dump([{"hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": body}])


def run(tmp_path: Path, text: str) -> dict[str, int]:
    """Run a playbook with ansible-playbook; the PLAY RECAP counts (ok, changed, failed, ...)."""
    book = tmp_path / "play.yml"
    book.write_text(text)
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCALHOST_WARNING": "0", "ANSIBLE_RETRY_FILES_ENABLED":
           "0", "ANSIBLE_PYTHON_INTERPRETER": sys.executable, "ANSIBLE_HOME": str(tmp_path / "ansible")}
    proc = subprocess.run([sys.executable, "-m", "ansible.cli.playbook", "-i", "localhost,", str(book)],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    recap = re.search(r"localhost\s*:\s*(.*)", proc.stdout.split("PLAY RECAP")[-1])
    assert recap, proc.stdout[-3000:] + proc.stderr[-3000:]
    counts = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", recap.group(1))}
    assert counts["failed"] == 0 and counts["unreachable"] == 0, proc.stdout[-6000:]
    return counts


def test_cisco_aci_modules_create_then_find_everything_in_place(sim: Simulator, tmp_path: Path) -> None:
    # Without the tenant, the module asks for the filter by class and for the entry with rsp-subtree-filter.
    query = {"cisco.aci.aci_filter_entry": {"filter": "web", "entry": "http", "state": "query"}, "register": "found"}
    check = {"ansible.builtin.assert": {"that": ["found.current | length == 1",
                                                 "found.current[0].vzFilter.children | length == 1",
                                                 "found.current[0].vzFilter.children[0].vzEntry.attributes.dToPort"
                                                 " == 'http'"]}}
    first = run(tmp_path, playbook(sim, WRITES, extra=[query, check]))
    assert first["changed"] == len(WRITES)
    second = run(tmp_path, playbook(sim, WRITES))
    assert second["changed"] == 0
    with ApicSession(sim.url, "admin", PASSWORD) as session:
        epg = session.get("/api/mo/uni/tn-net/ap-app/epg-web.json", {"rsp-subtree": "children"})
    (body,) = epg["imdata"][0].values()
    classes = {next(iter(child)) for child in body["children"]}
    assert {"fvRsBd", "fvRsProv", "fvRsDomAtt", "fvRsPathAtt", "tagTag"} <= classes
    assert body["attributes"]["annotation"] == "orchestrator:ansible"


def test_an_ansible_edit_of_an_epgbridge_object_is_reported(sim: Simulator, tmp_path: Path) -> None:
    """The issue's story: a network engineer fixes one entry with Ansible; the next push must say so."""
    desired = list(render(load_model([EXAMPLE])).tenants)
    with ApicSession(sim.url, "admin", PASSWORD) as session:
        apply(plan(desired, session), session)
        edit = ("aci_filter_entry", {"tenant": "shop", "filter": "https", "entry": "tcp-443", "ether_type": "ip",
                                     "ip_protocol": "tcp", "destination_port_start": "8443"})
        assert run(tmp_path, playbook(sim, [edit]))["changed"] == 1
        result = plan(desired, session)
    assert [(s.dn, s.owner) for s in result.not_owned] == [("uni/tn-shop/flt-https/e-tcp-443", "orchestrator:ansible")]
    assert result.warnings and "uni/tn-shop/brc-payments-https" in result.warnings[0]
    assert json.loads(result.to_json())["notOwned"][0]["owner"] == "orchestrator:ansible"
