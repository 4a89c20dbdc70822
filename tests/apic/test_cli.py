"""``epgbridge apic-sim`` through its module entry points, in a real child process."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from apic_client import ApicAuthError, ApicSession
from apic_client.simulator.cli import add_arguments, parse_listen, run

_RUNNER = (
    "import argparse, sys\n"
    "from apic_client.simulator.cli import add_arguments, run\n"
    "parser = argparse.ArgumentParser(prog='epgbridge apic-sim')\n"
    "add_arguments(parser)\n"
    "sys.exit(run(parser.parse_args(sys.argv[1:])))\n"
)


def start(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], list[str]]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _RUNNER,
            "--listen",
            "127.0.0.1:0",
            "--state",
            str(tmp_path / "sim.sqlite"),
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert process.stdout is not None
    lines = [process.stdout.readline()]
    if "--no-tls" not in args:
        lines.append(process.stdout.readline())
    return process, lines


def stop(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()


def test_password_from_environment_over_http(tmp_path: Path) -> None:
    env = {**os.environ, "APIC_PASSWORD": "from-env-Secret"}
    process, lines = start(tmp_path, "--no-tls", env=env)
    try:
        url = lines[0].split(" listening on ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        with ApicSession(url, "admin", "from-env-Secret", rate_limit=0) as session:
            assert session.get("/api/class/fvTenant.json")["totalCount"] == "3"
    finally:
        assert stop(process) == 0
    assert "from-env-Secret" not in "".join(lines)


def test_an_explicit_password_file_beats_the_environment(tmp_path: Path) -> None:
    """The rule `push` and `controller` follow too: --password-file, when given, wins over APIC_PASSWORD."""
    secret = tmp_path / "password"
    secret.write_text("from-file-Secret\n")
    env = {**os.environ, "APIC_PASSWORD": "from-env-Secret"}
    process, lines = start(tmp_path, "--no-tls", "--password-file", str(secret), env=env)
    try:
        url = lines[0].split(" listening on ")[1].split()[0]
        with ApicSession(url, "admin", "from-file-Secret", rate_limit=0) as session:
            assert session.get("/api/class/fvTenant.json")["totalCount"] == "3"
        with pytest.raises(ApicAuthError), ApicSession(url, "admin", "from-env-Secret", rate_limit=0) as session:
            session.get("/api/class/fvTenant.json")
    finally:
        assert stop(process) == 0


def test_generated_password_is_printed_and_tls_is_the_default(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "APIC_PASSWORD"}
    process, lines = start(tmp_path, env=env)
    try:
        assert process.stdout is not None
        lines.append(process.stdout.readline())
        url = lines[0].split(" listening on ")[1].split()[0]
        assert url.startswith("https://")
        certificate = lines[1].split("certificate: ")[1].split()[0]
        password = lines[2].rsplit(" ", 1)[1].strip()
        with ApicSession(url, "admin", password, ca_file=certificate, rate_limit=0) as session:
            assert session.get("/api/mo/uni/tn-common.json")["totalCount"] == "1"
    finally:
        assert stop(process) == 0


def test_password_file_and_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("APIC_PASSWORD", raising=False)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run(parser.parse_args(["--listen", "nonsense"])) == 2
    missing = str(tmp_path / "missing")
    assert run(parser.parse_args(["--listen", "127.0.0.1:0", "--password-file", missing])) == 1
    assert "cannot read the password file" in capsys.readouterr().err
    assert parse_listen("[::1]:8443") == ("::1", 8443)
    assert parse_listen(":8443") == ("127.0.0.1", 8443)
