"""Every mistake a user makes ends in one line and its exit status, never a traceback: the installed entry point
driven as a separate process, as a user (or a CI job reading exit codes) runs it.

Exit status: 1 invalid input or a failed operation, 2 usage error (bare `epgbridge`: the help, on stdout).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from apic_client.simulator import Simulator
from tests.fakekube import CRD_DIR, FakeKube

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = str(ROOT / "examples" / "cluster")
PASSWORD = "s3cret-Pa55word"


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """An HTTPS APIC simulator, a live fake API server and one that is gone, and their kubeconfigs."""
    tmp = tmp_path_factory.mktemp("mistakes")
    with Simulator(tmp / "apic.sqlite", tls=True, password=PASSWORD) as sim, FakeKube(crds=[CRD_DIR]) as kube:
        tls_url = sim.start("127.0.0.1", 0)
        with FakeKube() as gone:
            dead = gone.write_kubeconfig(tmp / "dead")
        bad = tmp / "bad.yaml"
        bad.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x}\nstatus: {podIP: 999.1.1.1}\n")
        yield {"tls": tls_url, "kubeconfig": str(kube.write_kubeconfig(tmp / "live")), "dead": str(dead),
               "missing": str(tmp / "missing"), "bad": str(bad)}


def mistakes(p: dict[str, str]) -> list[tuple[list[str], dict[str, str], int, str]]:
    """(argv, extra environment, exit status, a part of the one line) for each mistake."""
    pw = {"APIC_PASSWORD": PASSWORD}
    return [
        (["push", "-f", EXAMPLE, "--apic", "127.0.0.1:8443"], pw, 2, "--apic: give the scheme and the host"),
        (["push", "-f", EXAMPLE, "--apic", "https://127.0.0.1:1", "--ca", "/nonexistent.pem"], pw, 1,
         "--ca /nonexistent.pem: cannot read the CA certificate"),
        (["push", "-f", EXAMPLE, "--apic", p["tls"]], pw, 1, "pass the CA that signed the APIC's certificate with "
         "--ca FILE, or --insecure to skip the check"),
        (["push", "-f", EXAMPLE, "--apic", p["tls"], "--password-file", p["missing"]], {}, 1,
         "cannot read the password file"),
        (["push", "-f", p["bad"], "--apic", p["tls"]], pw, 1, "status.podIP '999.1.1.1' is not an IP address"),
        (["controller", "--apic", p["tls"], "--kubeconfig", p["kubeconfig"], "--metrics-address", ""], {}, 1,
         "no APIC password: set APIC_PASSWORD or pass --password-file FILE"),
        (["controller", "--apic", "apic1", "--kubeconfig", p["kubeconfig"]], pw, 2, "--apic: give the scheme"),
        (["agent", "--node", "n1", "--kubeconfig", p["missing"], "--metrics-address", ""], {}, 1,
         "cannot configure the Kubernetes client"),
        (["apic-sim", "--listen", "127.0.0.1:0", "--password-file", p["missing"]], {}, 1,
         "cannot read the password file"),
        (["validate", "-f", p["missing"]], {}, 1, "no such file or directory"),
        (["matrix", "--kubeconfig", p["missing"], "--probe", "80/TCP"], {}, 1, "no such file"),
        (["matrix", "--kubeconfig", p["dead"], "--probe", "80/TCP"], {}, 1, "connection refused"),
        (["matrix", "-f", EXAMPLE, "--kubeconfig", p["kubeconfig"], "--probe", "80/TCP"], {}, 2, "give one of them"),
        (["matrix", "-f", EXAMPLE, "--probe", "80"], {}, 2, "must be PORT/PROTO"),
        (["explain", "-f", EXAMPLE, "--from", "x/nope", "--to", "x/a", "--probe", "80/TCP"], {}, 1, "no pod x/nope"),
        (["snapshot", "--kubeconfig", p["kubeconfig"], "-o", "/nonexistent-dir/cluster.yaml"], {}, 1,
         "-o /nonexistent-dir/cluster.yaml: cannot write there"),
        (["annotate", "deployment", "api", "-n", "storefront", "--epg", "not/an", "-f", EXAMPLE], {}, 1, "--epg"),
        (["annotate", "pod", "nope", "-n", "storefront", "-f", EXAMPLE], {}, 1, "pod storefront/nope not found"),
    ]


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("APIC_PASSWORD", "KUBERNETES_SERVICE_HOST")}
    return subprocess.run([sys.executable, "-m", "controller.cli", *argv], capture_output=True, text=True,
                          cwd=ROOT, env={**base, **env}, timeout=120, stdin=subprocess.DEVNULL, check=False)


def test_every_mistake_is_one_line_and_its_exit_status(places: dict[str, str]) -> None:
    cases = mistakes(places)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda case: run(case[0], case[1]), cases))
    for (argv, _, status, part), done in zip(cases, results, strict=True):
        what = f"epgbridge {' '.join(argv)}"
        assert "Traceback" not in done.stderr, what
        lines = [line for line in done.stderr.splitlines() if not line.startswith("warning: ")]  # the example's
        assert len(lines) == 1, f"{what}: {done.stderr}"
        assert (done.returncode, done.stdout) == (status, ""), f"{what}: {done.stderr}"
        assert part in lines[0] and ("error: " in lines[0] or "apic-sim" in argv), f"{what}: {lines[0]}"


def test_bare_epgbridge_prints_its_help_and_exits_2() -> None:
    done = run([], {})
    assert (done.returncode, done.stderr) == (2, "")
    assert done.stdout.startswith("usage: epgbridge") and "exit status:" in done.stdout
