"""The Quick start on a stock machine: `make demo` and `make test` keep epgbridge in a project virtualenv made
from $(PYTHON) and never install into the interpreter itself (Debian's refuses: externally managed), and
scripts/install-system-deps installs the interpreter's venv package where it is missing. Driven with stand-ins
for apt-get, apt-cache, id and the interpreter, so nothing is installed here; the real run from a fresh clone
is in README's Quick start."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VERSION = f"{sys.version_info[0]}.{sys.version_info[1]}"


def test_make_uses_a_project_virtualenv_and_leaves_the_interpreter_alone(tmp_path: Path) -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    shown = subprocess.run(["make", "-n", "demo", "test", "lint", "PYTHON=/usr/bin/python3"], cwd=tmp_path,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    assert 'PYTHON="/usr/bin/python3" bash scripts/install-system-deps' in shown
    assert "/usr/bin/python3 -m venv .venv" in shown
    pip = [line for line in shown if " -m pip install " in line]
    assert pip and all(line.startswith(".venv/bin/python -m pip install --quiet --quiet ") for line in pip)
    assert [line.rsplit(" ", 1)[1] for line in pip] == [".", "'.[test,acitoolkit]'", "'.[test,acitoolkit,dev]'"]
    assert ".venv/bin/python -m controller.cli demo" in shown and ".venv/bin/python -m pytest -q" in shown
    # Only the venv is made with $(PYTHON); everything else runs in it.
    assert [line for line in shown if line.startswith("/usr/bin/python3")] == ["/usr/bin/python3 -m venv .venv"]


def stand_ins(tmp_path: Path, *, uid: int = 0, venv: bool = False, version: str = VERSION) -> dict[str, str]:
    """PATH with apt-get, apt-cache and id stand-ins (apt-get logs what it was asked), and an interpreter that
    has (or lacks) venv and reports `version`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "apt.log"
    scripts = {
        "apt-get": f'echo "$@" >> {log}\n',
        "apt-cache": f'[ "$2" = "python{VERSION}-venv" ]\n',
        "id": f"echo {uid}\n",
        "python": (f'case "$2" in *ensurepip*) exit {0 if venv else 1};; '
                   f'*version_info\\ \\<*) exit {int(tuple(map(int, version.split("."))) < (3, 11))};; '
                   f'*-V*) echo "Python {version}";; esac\n'
                   f'exec {sys.executable} "$@"\n'),
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHON": str(bin_dir / "python")}


def deps(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(ROOT / "scripts" / "install-system-deps")], env=env, capture_output=True,
                          text=True, check=False)


def test_install_system_deps_installs_the_interpreters_venv_package_as_root(tmp_path: Path) -> None:
    if shutil.which("nft") is None or shutil.which("ip") is None:
        pytest.skip("this checks the venv part alone: nft and ip would be installed too")
    done = deps(stand_ins(tmp_path, uid=0, venv=False))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "apt.log").read_text().splitlines() == [
        "update -qq", f"install -y -qq --no-install-recommends python{VERSION}-venv"]

    (tmp_path / "apt.log").unlink()
    assert deps(stand_ins(tmp_path, uid=0, venv=True)).returncode == 0  # nothing missing: apt is not asked
    assert not (tmp_path / "apt.log").exists()


def test_install_system_deps_says_what_to_do_without_root_or_with_an_old_python(tmp_path: Path) -> None:
    done = deps(stand_ins(tmp_path, uid=1000, venv=False))
    assert done.returncode == 1 and not (tmp_path / "apt.log").exists()
    assert f"sudo apt-get install python{VERSION}-venv" in done.stderr and done.stderr.count("\n") == 1
    done = deps(stand_ins(tmp_path, uid=0, venv=True, version="3.9"))
    assert done.returncode == 1 and "epgbridge needs Python >= 3.11" in done.stderr
