"""The CLI contract (DESIGN 7): commands, JSON shapes, exit codes 0/1/2, one line per problem, no tracebacks."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from contracts.engine import Engine
from contracts.matrix import Probe, compute_matrix
from controller import reports
from controller.cli import main
from controller.snapshot import load_model
from tests.core.builders import config, epg_value, namespace, netpol, pod

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = str(ROOT / "examples/cluster")


def write(tmp_path: Path, *docs: dict) -> str:  # type: ignore[type-arg]
    path = tmp_path / "snap.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return str(path)


def small(tmp_path: Path, *extra: dict) -> str:  # type: ignore[type-arg]
    return write(tmp_path, namespace("x"), pod("x", "a", "10.0.0.1"), pod("x", "b", "10.0.0.2", {"app": "b"}),
                 netpol("x", "only-a", podSelector={"matchLabels": {"app": "b"}}, ingress=[]), *extra)


def test_matrix_json_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap = write(tmp_path, namespace("x"), pod("x", "a", "10.0.0.1"), pod("x", "b", "10.0.0.2", {"app": "b"}),
                 netpol("x", "deny-b", podSelector={"matchLabels": {"app": "b"}}, ingress=[]))
    assert main(["matrix", "-f", snap, "--probe", "80/TCP", "--probe", "53/udp", "-o", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"pods": ["x/a", "x/b"], "probes": [
        {"port": 80, "protocol": "TCP", "allowed": {"x/a": {"x/a": True, "x/b": False},
                                                    "x/b": {"x/a": True, "x/b": True}}},
        {"port": 53, "protocol": "UDP", "allowed": {"x/a": {"x/a": True, "x/b": False},
                                                    "x/b": {"x/a": True, "x/b": True}}},
    ]}


def test_matrix_table_and_html(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap = small(tmp_path)
    assert main(["matrix", "-f", snap, "--probe", "80/TCP"]) == 0
    table = capsys.readouterr().out
    assert "80/TCP" in table and "x/a" in table and "\033[" not in table  # no colour when not a terminal
    assert main(["matrix", "-f", snap, "--probe", "80/TCP", "-o", "html"]) == 0
    html = capsys.readouterr().out
    assert html.startswith("<!DOCTYPE html>") and 'class="allow"' in html and 'class="self"' in html
    assert ('class="deny-np" title="no rule allows 80/TCP from x/a: x/b is selected for ingress by NetworkPolicy '
            'x/only-a">N</td>') in html


def test_html_template_escapes_hostile_names(tmp_path: Path) -> None:
    """Whatever text reaches the template (a pod name, an EPG, a reason) is text, never markup: autoescape."""
    m = compute_matrix(Engine(load_model([small(tmp_path)])), [Probe(80, "TCP")])
    hostile = ('x/<script>alert(1)</script>', 'x/b" onmouseover="alert(2)')
    m.pods = hostile  # the names the template gets
    html = reports.matrix_html(m, epgs={hostile[0]: ("<img src=x onerror=alert(3)>", "a & b"),
                                        hostile[1]: ("t/ap/e", "</td><td onclick=alert(4)>")})
    assert "<script>" not in html and "<img" not in html and 'b" onmouseover' not in html and "<td onclick" not in html
    assert "x/&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;img src=x onerror=alert(3)&gt;" in html
    assert 'x/b&#34; onmouseover=&#34;alert(2)' in html and "a &amp; b" in html


def test_html_escapes_untrusted_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap = write(tmp_path, pod("x", "a", "10.0.0.1", {"app": "b"}), pod("x", "b", "10.0.0.2"),
                 netpol("x", "deny", podSelector={"matchLabels": {"app": "b"}}, ingress=[]))
    main(["matrix", "-f", snap, "--probe", "80/TCP", "-o", "html"])
    html = capsys.readouterr().out
    assert "<script" not in html


def test_explain_text_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["explain", "-f", EXAMPLE, "--from", "storefront/web-6d4cf56db6-7xkq2",
            "--to", "storefront/api-7b9f8c5d44-h2wlt", "--probe", "8081/TCP"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "verdict: DENIED" in text
    assert "EPG layer (contracts): DENIED" in text and "(deny wins)" in text
    assert "NetworkPolicy layer: ALLOWED" in text
    assert main([*args, "-o", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["allowed"] is False and out["epg"]["allowed"] is False and out["networkPolicy"]["allowed"] is True
    assert any("Contract shop/web-to-api" in o for r in out["epg"]["reasons"] for o in r["objects"])


def test_explain_to_an_address(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "-f", EXAMPLE, "--from", "storefront/api-7b9f8c5d44-h2wlt", "--to", "203.0.113.10",
                 "--probe", "443/TCP", "-o", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["allowed"] is True and "payment-provider" in out["toEpg"]


@pytest.mark.parametrize(("args", "message"), [
    (["--from", "x/nope", "--to", "x/a"], "error: --from x/nope: no pod x/nope in the input"),
    (["--from", "x/a", "--to", "x/nope"], "error: --to x/nope: no pod x/nope in the input"),
    (["--from", "x/a", "--to", "not-an-address"], "must be NAMESPACE/POD or an IP address"),
])
def test_explain_unknown_endpoints(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                   message: str) -> None:
    assert main(["explain", "-f", small(tmp_path), *args, "--probe", "80/TCP"]) == 1
    assert message in capsys.readouterr().err


def test_validate_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "-f", EXAMPLE]) == 0
    assert capsys.readouterr().out.startswith("valid: 5 namespaces, 9 pods")
    bad = small(tmp_path, pod("x", "c", "10.0.0.3", epg='{"name": "bad name"}'))
    assert main(["validate", "-f", bad]) == 1
    err = capsys.readouterr().err
    assert 'error: invalid annotation on pod x/c: opflex.cisco.com/endpoint-group: "name"' in err
    # matrix/explain: the same snapshot is usable; the pod is isolated and a warning is printed.
    assert main(["matrix", "-f", bad, "--probe", "80/TCP", "-o", "json"]) == 0
    captured = capsys.readouterr()
    assert "warning: invalid annotation on pod x/c" in captured.err and "isolated" in captured.err
    assert json.loads(captured.out)["probes"][0]["allowed"]["x/a"]["x/c"] is False


def test_invalid_input_exit_1_one_line_per_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap = write(tmp_path, pod("x", "a", "999.0.0.1"), {"apiVersion": "v1", "kind": "Pods", "metadata": {
        "name": "s"}})
    for cmd in (["validate"], ["matrix", "--probe", "80/TCP"], ["render-nothing"]):
        if cmd == ["render-nothing"]:
            continue
        assert main([*cmd, "-f", snap]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"error: {snap}#1: Pod x/a: status.podIP '999.0.0.1' is not an IP address",
                       f"error: {snap}#2: unknown kind 'Pods' (known: Config, Contract, DaemonSet, Deployment, "
                       "EndpointGroup, Namespace, NetworkPolicy, Node, Pod, ReplicaSet, StatefulSet)"]


@pytest.mark.parametrize("argv", [
    ["matrix", "-f", "x.yaml"],
    ["matrix", "-f", "x.yaml", "--probe", "80"],
    ["matrix", "-f", "x.yaml", "--probe", "80/ICMP"],
    ["matrix", "-f", "x.yaml", "--probe", "0/TCP"],
    ["matrix", "-f", "x.yaml", "--probe", "²/TCP"],
    ["explain", "-f", "x.yaml", "--from", "a/b"],
    ["nonsense"],
])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("epgbridge") and ": error: " in err and "--help)" in err and err.count("\n") == 1


def test_stdin_and_the_installed_command_never_show_a_traceback(tmp_path: Path) -> None:
    docs = yaml.safe_dump_all([pod("x", "a", "10.0.0.1", epg=epg_value("t", "a", "e")), pod("x", "b", "10.0.0.2")])
    ok = subprocess.run([sys.executable, "-m", "controller.cli", "matrix", "-f", "-", "--probe", "80/TCP",
                         "-o", "json"], input=docs, capture_output=True, text=True, cwd=ROOT, check=False)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["pods"] == ["x/a", "x/b"]
    for garbage in ("kind: [", "- just\n- a list\n", "\x00\x01"):
        bad = subprocess.run([sys.executable, "-m", "controller.cli", "validate", "-f", "-"], input=garbage,
                             capture_output=True, text=True, cwd=ROOT, check=False)
        assert bad.returncode == 1, bad.stderr
        assert "Traceback" not in bad.stderr and bad.stderr.startswith("error: <stdin>")


def test_help_teaches(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["matrix", "--help"])
    out = capsys.readouterr().out
    assert "--probe PORT/PROTO" in out and "examples:" in out and "--kubeconfig" in out


def test_demo_runs_on_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "== epgbridge validate" in out and "== epgbridge matrix" in out and out.count("== epgbridge explain") == 2
    # The push as counts, not one line per object; it ends saying what was shown and where to go next.
    assert "uni/tn-shop: create 43 (" in out and "+ fvAEPg" not in out
    assert out.index("== what you just saw") < out.index("== where next") and "docs/semantics.md" in out


def kubectl_dump(*items: dict) -> dict:  # type: ignore[type-arg]
    """What `kubectl get ... -A -o yaml` prints: one `kind: List`."""
    return {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": list(items)}


def other(kind: str, api: str, name: str, ns: str | None = "x") -> dict:  # type: ignore[type-arg]
    meta = {"name": name, **({"namespace": ns} if ns else {})}
    return {"apiVersion": api, "kind": kind, "metadata": meta, "spec": {}}


def test_a_kubectl_dump_loads_and_kinds_that_do_not_affect_policy_are_counted(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap = write(tmp_path, kubectl_dump(
        namespace("x"), pod("x", "a", "10.0.0.1"), pod("x", "b", "10.0.0.2", {"app": "b"}),
        netpol("x", "only-a", podSelector={"matchLabels": {"app": "b"}}, ingress=[]),
        other("Service", "v1", "web"), other("Service", "v1", "api"), other("ConfigMap", "v1", "conf"),
        other("Endpoints", "v1", "web"), other("PersistentVolume", "v1", "pv1", ns=None),
        other("Ingress", "networking.k8s.io/v1", "front")))
    assert main(["matrix", "-f", snap, "--probe", "80/TCP", "-o", "json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["probes"][0]["allowed"]["x/a"] == {"x/a": True, "x/b": False}
    assert err == ("note: skipped 6 objects of kinds that do not affect policy (2 Service, 1 ConfigMap, 1 Endpoints, "
                   "1 Ingress, 1 PersistentVolume); -v lists them\n")
    assert main(["validate", "-f", snap, "-v"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 6 and f"note: skipped {snap}#1 items[4]: Service x/web (this kind does not affect policy)" in err
    assert f"note: skipped {snap}#1 items[8]: PersistentVolume pv1 (this kind does not affect policy)" in err


def test_policies_of_other_engines_are_skipped_with_a_warning_and_typos_of_ours_are_errors(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap = write(tmp_path, namespace("x"), pod("x", "a", "10.0.0.1"),
                 other("NetworkPolicy", "crd.projectcalico.org/v1", "deny-all"),
                 other("AdminNetworkPolicy", "policy.networking.k8s.io/v1alpha1", "tenants", ns=None))
    assert main(["validate", "-f", snap]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == [f"warning: {snap}#3: NetworkPolicy x/deny-all is not evaluated (epgbridge reads NetworkPolicy of "
                   "networking.k8s.io/v1, EndpointGroups and Contracts): the traffic it decides is not in this answer",
                   f"warning: {snap}#4: AdminNetworkPolicy tenants is not evaluated (epgbridge reads NetworkPolicy of "
                   "networking.k8s.io/v1, EndpointGroups and Contracts): the traffic it decides is not in this answer"]
    typos = write(tmp_path, other("Namespaces", "v1", "x", ns=None), other("Deploymnet", "apps/v1", "d"),
                  other("Policy", "epgbridge.io/v1alpha1", "p", ns=None), other("NetworkPolicy", "extensions/v1beta1", "np"))
    assert main(["validate", "-f", typos]) == 1
    err = capsys.readouterr().err.splitlines()
    assert [line.split(": ", 2)[-1][:30] for line in err] == [
        "unknown kind 'Namespaces' (kno", "unknown kind 'Deploymnet' (kno", "unknown kind 'Policy' (known: ",
        "NetworkPolicy x/np: apiVersion"]


def test_a_missing_path_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "-f", str(tmp_path / "nope.yaml"), "-f", str(tmp_path)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"error: {tmp_path / 'nope.yaml'}: no such file or directory",
        f"error: {tmp_path}: no *.yaml, *.yml or *.json files in this directory"]


def test_explain_answers_every_probe(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["explain", "-f", EXAMPLE, "--from", "storefront/web-6d4cf56db6-7xkq2", "--to",
            "storefront/api-7b9f8c5d44-h2wlt", "--probe", "8081/TCP", "--probe", "8080/TCP"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert text.count("verdict:") == 2
    first, second = text.split("\n\n")
    assert first.startswith("8081/TCP from") and "verdict: DENIED" in first
    assert second.startswith("8080/TCP from") and "verdict: ALLOWED" in second
    assert main([*args, "-o", "json"]) == 0
    several = json.loads(capsys.readouterr().out)
    assert [(v["port"], v["allowed"]) for v in several] == [(8081, False), (8080, True)]
    assert main([*args[:-2], "-o", "json"]) == 0  # one probe: the verdict object itself, as before
    one = json.loads(capsys.readouterr().out)
    assert one == several[0]


def test_version_and_bare_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and re.fullmatch(r"epgbridge \d+\.\d+\.\d+\S*\n", capsys.readouterr().out)
    assert main([]) == 2
    out, err = capsys.readouterr()
    assert out.startswith("usage: epgbridge") and "examples:" in out and "exit status:" in out and err == ""
    assert main(["lab"]) == 2 and capsys.readouterr().out.startswith("usage: epgbridge lab [-h] ACTION")
    assert main(["render"]) == 2 and capsys.readouterr().out.startswith("usage: epgbridge render [-h] TARGET")


def test_html_names_the_denying_layer_and_each_pods_epg(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap = write(tmp_path, config(tenants=["t"]),  # undeclared EPGs of tenant t are allowed (the tenancy guard)
                 namespace("x", epg=epg_value("t", "ap", "front")), pod("x", "a", "10.0.0.1"),
                 pod("x", "b", "10.0.0.2", {"app": "b"}, epg=epg_value(name="back")),
                 netpol("x", "only-a", podSelector={"matchLabels": {"app": "b"}}, ingress=[]))
    assert main(["matrix", "-f", snap, "--probe", "80/TCP", "-o", "html"]) == 0
    html = capsys.readouterr().out
    cells = re.findall(r'<td class="([a-z-]+)" title="[^"]*">([^<]*)</td>', html)
    # a->b: no contract between the EPGs and b is isolated for ingress: both layers; b->a: the EPG layer only.
    assert cells == [("self", "✓"), ("deny-both", "EN"), ("deny-epg", "E"), ("self", "✓")]
    assert '<th class="src">x/a<span class="epg">t/ap/front</span></th>' in html
    assert '<th class="src">x/b<span class="epg">t/ap/back</span></th>' in html
    legend = re.findall(r'<span class="([a-z-]+)"><b>([^<]+)</b>', html)
    assert legend == [("allow", "✓"), ("deny-epg", "E"), ("deny-np", "N"), ("deny-both", "EN"), ("self", "✓")]
    for css in ("allow", "deny-epg", "deny-np", "deny-both", "self"):  # every legend entry has its colours
        assert re.search(rf"\.{css} {{ background: #[0-9a-f]+; color: #[0-9a-f]+; }}", html)



def dual_stack(tmp_path: Path) -> str:
    """a and b dual-stack (IPv4 first), c IPv6 only; b takes 80 from a over IPv4 only (its ipBlock's family)."""
    return write(tmp_path, namespace("x"), pod("x", "a", ["10.0.0.1", "fd00::1"]),
                 pod("x", "b", ["10.0.0.2", "fd00::2"], {"app": "b"}), pod("x", "c", "fd00::3"),
                 netpol("x", "b-from-v4", podSelector={"matchLabels": {"app": "b"}},
                        ingress=[{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]))


def test_matrix_family(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--family: every pod at its address of that family, pods without one left out; the JSON shape is the
    same. By default each pod's first address, and pairs across families are denied (with a note)."""
    snap = dual_stack(tmp_path)
    rows = {}
    for family in ("ipv4", "ipv6", None):
        assert main(["matrix", "-f", snap, "--probe", "80/TCP", "-o", "json",
                     *(["--family", family] if family else [])]) == 0
        out, err = capsys.readouterr()
        doc = json.loads(out)
        assert set(doc) == {"pods", "probes"} and set(doc["probes"][0]) == {"port", "protocol", "allowed"}
        rows[family] = ({s: [d for d, ok in row.items() if ok] for s, row in doc["probes"][0]["allowed"].items()},
                        err)
    assert rows["ipv4"] == ({"x/a": ["x/a", "x/b"], "x/b": ["x/a", "x/b"]},
                            "note: 1 pod(s) without an IPv4 address are left out\n")
    assert rows["ipv6"] == ({"x/a": ["x/a", "x/c"], "x/b": ["x/a", "x/b", "x/c"], "x/c": ["x/a", "x/c"]}, "")
    assert rows[None][0] == {"x/a": ["x/a", "x/b"], "x/b": ["x/a", "x/b"], "x/c": ["x/c"]}
    assert "pairs across families are denied here (--family ipv4 or ipv6 shows one family)" in rows[None][1]
    with pytest.raises(SystemExit) as usage:
        main(["matrix", "-f", snap, "--probe", "80/TCP", "--family", "ipv5"])
    assert usage.value.code == 2 and "argument --family: invalid choice: 'ipv5'" in capsys.readouterr().err


def test_explain_family(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap = dual_stack(tmp_path)

    def explain(*args: str) -> tuple[int, str, str]:
        code = main(["explain", "-f", snap, "--probe", "80/TCP", *args])
        out, err = capsys.readouterr()
        return code, out, err
    code, out, _ = explain("--from", "x/a", "--to", "x/b")
    assert code == 0 and "verdict: ALLOWED" in out and "x/b (10.0.0.2;" in out
    code, out, _ = explain("--from", "x/a", "--to", "x/b", "--family", "ipv6")
    assert code == 0 and "verdict: DENIED" in out and "x/b (fd00::2;" in out
    code, out, _ = explain("--from", "x/a", "--to", "fd00::2", "-o", "json")  # an address: its family
    assert code == 0 and json.loads(out)["allowed"] is False
    code, out, _ = explain("--from", "x/c", "--to", "x/a")  # c's first (only) address is IPv6: a's IPv6 address
    assert code == 0 and "x/a (fd00::1;" in out
    assert explain("--from", "x/c", "--to", "x/a", "--family", "ipv4")[2] == (
        "error: --from x/c: the pod has no IPv4 address (it has fd00::3)\n")
    assert explain("--from", "x/a", "--to", "x/c")[2] == (
        "error: --to x/c: the pod has no IPv4 address (it has fd00::3)\n")
    assert explain("--from", "x/c", "--to", "10.0.0.2")[2] == (
        "error: --from x/c: the pod has no IPv4 address (it has fd00::3)\n")
    assert explain("--from", "x/a", "--to", "10.0.0.2", "--family", "ipv6")[2] == (
        "error: --to 10.0.0.2 is an IPv4 address, not --family ipv6\n")
