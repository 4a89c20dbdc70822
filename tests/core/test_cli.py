"""The CLI contract (DESIGN 7): commands, JSON shapes, exit codes 0/1/2, one line per problem, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from controller.cli import main
from tests.core.builders import epg_value, namespace, netpol, pod

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
                       "EndpointGroup, Namespace, NetworkPolicy, Pod, ReplicaSet, StatefulSet)"]


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
