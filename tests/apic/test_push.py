"""``epgbridge render apic``, ``push`` and the APIC demo, run in-process against a real simulator over sockets."""

from __future__ import annotations

import argparse
import io
import json
import shutil
from pathlib import Path

import pytest
import yaml

from apic_client import ApicSession
from apic_client.simulator import Simulator
from apic_client.simulator import cli as sim_cli
from controller.cli import run_command
from controller.cmd_apic import demo_apic, register
from controller.snapshot import load_model

from .conftest import PASSWORD, SessionFactory, mo

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "cluster")


class Cli:
    """Runs the commands `register` adds, capturing their output (and checking it never holds the password)."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        parser = argparse.ArgumentParser(prog="epgbridge")
        register(parser.add_subparsers(dest="command", required=True))
        self.parser = parser
        self.capsys = capsys

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        args = self.parser.parse_args(argv)
        status = run_command(args)  # as `main` runs it: errors become one line and an exit status
        out, err = self.capsys.readouterr()
        assert PASSWORD not in out + err
        assert "Traceback" not in err
        return status, out, err


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.setenv("APIC_PASSWORD", PASSWORD)
    monkeypatch.delenv("APIC_USERNAME", raising=False)
    return Cli(capsys)


def changed_example(tmp_path: Path) -> str:
    """A copy of the example where one filter entry (payments-https, tcp-443) moves to port 8443."""
    copy = tmp_path / "cluster"
    shutil.copytree(EXAMPLE, copy)
    contracts = copy / "contracts.yaml"
    text = contracts.read_text()
    assert text.count('destinationPorts: "443"') == 1
    contracts.write_text(text.replace('destinationPorts: "443"', 'destinationPorts: "8443"'))
    return str(copy)


def test_push_creates_then_writes_nothing_then_exactly_the_change(cli: Cli, sim: Simulator, tmp_path: Path) -> None:
    status, out, err = cli("push", "-f", EXAMPLE, "--apic", sim.url)
    assert status == 0, err
    assert "+ fvAEPg uni/tn-shop/ap-storefront/epg-web" in out
    assert "+ vzRsSubjFiltAtt uni/tn-shop/brc-web-to-api/subj-api/rssubjFiltAtt-api-admin" in out
    assert "payment-provider" in err  # the external EPG is not pushed: a warning says so
    assert sim.counters.posts == 1 and sim.counters.logins == 1

    status, out, _ = cli("push", "-f", EXAMPLE, "--apic", sim.url)
    assert status == 0
    assert out.startswith("APIC is in sync: nothing to write.")
    assert sim.counters.posts == 1

    status, out, _ = cli("push", "-f", changed_example(tmp_path), "--apic", sim.url, "-o", "json")
    assert status == 0
    document = json.loads(out)
    assert document["summary"] == {"create": 0, "modify": 1, "delete": 0, "posts": 1}
    (change,) = [c for t in document["tenants"] for c in t["changes"]]
    assert change["dn"] == "uni/tn-shop/flt-https/e-tcp-443"
    assert change["attributes"] == {"dFromPort": {"from": "https", "to": "8443"},
                                    "dToPort": {"from": "https", "to": "8443"}}
    assert sim.counters.posts == 2
    assert sim.counters.post_paths[-1] == "/api/mo/uni/tn-shop.json"


def test_hand_made_objects_in_our_tenants_survive(
    cli: Cli, sim: Simulator, make_session: SessionFactory, tmp_path: Path
) -> None:
    assert cli("push", "-f", EXAMPLE, "--apic", sim.url)[0] == 0
    hand = make_session(sim.url)
    hand.post("/api/mo/uni/tn-shop.json", mo("fvTenant", {"name": "shop"},
                                             mo("vzFilter", {"name": "by-hand"}, mo("vzEntry", {"name": "ssh"})),
                                             mo("fvAp", {"name": "storefront"}, mo("fvAEPg", {"name": "legacy"}))))
    status, out, _ = cli("push", "-f", changed_example(tmp_path), "--apic", sim.url)
    assert status == 0 and "- " not in out  # nothing deleted
    for dn in ("uni/tn-shop/flt-by-hand/e-ssh", "uni/tn-shop/ap-storefront/epg-legacy"):
        assert hand.get(f"/api/mo/{dn}.json")["totalCount"] == "1", dn


def test_dry_run_writes_nothing(cli: Cli, sim: Simulator, make_session: SessionFactory) -> None:
    status, out, _ = cli("push", "-f", EXAMPLE, "--apic", sim.url, "--dry-run")
    assert status == 0
    assert "+ fvAEPg uni/tn-shop/ap-storefront/epg-web" in out and out.rstrip().endswith("dry run: nothing written.")
    assert sim.counters.posts == 0
    assert make_session(sim.url).get("/api/mo/uni/tn-shop.json")["totalCount"] == "0"


def test_password_sources_and_errors(
    cli: Cli, sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("APIC_PASSWORD")
    status, out, err = cli("push", "-f", EXAMPLE, "--apic", sim.url, "--dry-run")
    assert (status, out) == (1, "")
    assert err == "error: no APIC password: set APIC_PASSWORD or pass --password-file FILE\n"

    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    status, _, _ = cli("push", "-f", EXAMPLE, "--apic", sim.url, "--dry-run", "--password-file", str(secret))
    assert status == 0

    monkeypatch.setenv("APIC_PASSWORD", "not-" + PASSWORD)
    status, out, err = cli("push", "-f", EXAMPLE, "--apic", sim.url)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert status == 1 and out == ""
    assert errors == [f"error: APIC {sim.url} rejected POST /api/aaaLogin.json: error 401: "
                      "Username or password is incorrect - FAILED local authentication"]
    assert "not-" + PASSWORD not in err
    assert sim.counters.posts == 0


def test_invalid_input_is_one_line_per_problem(cli: Cli, sim: Simulator, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Contract\napiVersion: epgbridge.io/v1alpha1\nmetadata: {name: x}\nspec: {scope: wide}\n")
    for argv in (("push", "-f", str(bad), "--apic", sim.url), ("render", "apic", "-f", str(bad))):
        status, out, err = cli(*argv)
        assert status == 1 and out == ""
        assert err.startswith("error: ") and len(err.splitlines()) >= 1
    assert sim.counters.requests == 0


def test_render_apic_prints_json_or_yaml(cli: Cli) -> None:
    status, out, _ = cli("render", "apic", "-f", EXAMPLE)
    assert status == 0
    trees = json.loads(out)
    assert [t["fvTenant"]["attributes"]["name"] for t in trees] == ["common", "kube", "ops", "shop"]
    status, out, _ = cli("render", "apic", "-f", EXAMPLE, "-o", "yaml", "--host-protection")
    assert status == 0
    assert any(child.get("hostprotPol") for t in yaml.safe_load(out) for child in t["fvTenant"]["children"])


def test_host_protection_push_then_without_removes_them(cli: Cli, sim: Simulator) -> None:
    assert cli("push", "-f", EXAMPLE, "--apic", sim.url, "--host-protection")[0] == 0
    status, out, _ = cli("push", "-f", EXAMPLE, "--apic", sim.url)
    assert status == 0
    assert "- hostprotPol uni/tn-kube/pol-storefront_web-ingress" in out
    assert "fvAEPg" not in out


def test_apic_sim_is_wired(cli: Cli) -> None:
    args = cli.parser.parse_args(["apic-sim", "--listen", "127.0.0.1:0", "--no-tls"])
    assert args.func is sim_cli.run and args.no_tls


def test_demo_pushes_then_finds_nothing_to_write() -> None:
    out = io.StringIO()
    demo_apic(load_model([EXAMPLE]), out)
    text = out.getvalue()
    # The first push as counts per tenant and class (the plan's 73 DNs are `push --dry-run`'s to list).
    assert "uni/tn-shop: create 43 (7 fvRsCons, 6 fvRsProv, 5 vzRsSubjFiltAtt, 4 vzBrCP, 4 vzEntry, " in text
    assert "uni/tn-common: create 16 (5 vzEntry, 3 vzFilter, 3 vzRsSubjFiltAtt, 3 vzSubj, 2 vzBrCP)" in text
    assert "+ fvAEPg" not in text and len(text.splitlines()) < 20
    assert "APIC is in sync: nothing to write." in text
    assert "0 writes; 1 login for both pushes" in text


def test_session_reads_back_what_push_wrote(cli: Cli, sim: Simulator) -> None:
    assert cli("push", "-f", EXAMPLE, "--apic", sim.url)[0] == 0
    with ApicSession(sim.url, "admin", PASSWORD, rate_limit=0) as session:
        reply = session.get("/api/class/vzRsSubjFiltAtt.json",
                            {"query-target-filter": 'eq(vzRsSubjFiltAtt.action,"deny")'})
    (only,) = reply["imdata"]
    attributes = only["vzRsSubjFiltAtt"]["attributes"]
    assert attributes["dn"] == "uni/tn-shop/brc-web-to-api/subj-api/rssubjFiltAtt-api-admin"
    assert attributes["annotation"] == "orchestrator:epgbridge"
    assert attributes["tDn"] == "uni/tn-shop/flt-api-admin"
