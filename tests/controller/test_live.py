"""Live mode: `matrix`, `explain` and `validate --kubeconfig`, and `epgbridge snapshot`, with the real `kubernetes`
client against the fake API server (the controller's own list code: controller/watch.py). What the cluster
holds gives the answers the same files give, and a snapshot of it loads back to the same answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from controller.cli import main
from controller.watch import KINDS
from tests.controller.cluster_fixtures import EXAMPLE, load_example
from tests.fakekube import CRD_DIR, FakeKube

PROBES = ["--probe", "80/TCP", "--probe", "8081/TCP", "--probe", "53/UDP"]
EXPLAIN = ["--from", "storefront/web-6d4cf56db6-7xkq2", "--to", "storefront/api-7b9f8c5d44-h2wlt",
           "--probe", "8081/TCP", "--probe", "8080/TCP"]


@pytest.fixture(scope="module")
def kube() -> Iterator[FakeKube]:
    with FakeKube(crds=[CRD_DIR]) as fake:
        load_example(fake)
        yield fake
        assert fake.server_errors == []


@pytest.fixture(scope="module")
def kubeconfig(kube: FakeKube, tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(kube.write_kubeconfig(tmp_path_factory.mktemp("kube") / "config"))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_matrix_explain_validate_read_the_cluster_as_the_files_give_it(
        capsys: pytest.CaptureFixture[str], kube: FakeKube, kubeconfig: str) -> None:
    for argv in (["matrix", *PROBES, "-o", "json"], ["matrix", *PROBES, "-o", "html"], ["explain", *EXPLAIN]):
        live = run(capsys, *argv, "--kubeconfig", kubeconfig)
        files = run(capsys, *argv, "-f", str(EXAMPLE))
        assert live[0] == 0, live[2]
        assert live == files
    # The API server adds its own namespaces (default, kube-system, ...); everything else is the example's.
    namespaces = len(kube.list("Namespace"))
    assert namespaces > 5
    assert run(capsys, "validate", "--kubeconfig", kubeconfig) == (
        0, f"valid: {namespaces} namespaces, 9 pods, 10 workloads, 7 NetworkPolicies, 7 EndpointGroups, 6 Contracts\n",
        "")
    # Each kind was listed once, by the informers' list code (paged), and nothing was watched.
    kinds = {r for (verb, r), n in kube.counters().items() if verb == "list"}
    assert {"pods", "namespaces", "networkpolicies.networking.k8s.io", "endpointgroups.epgbridge.io",
            "contracts.epgbridge.io", "deployments.apps", "replicasets.apps"} <= kinds
    assert kube.count("watch") == 0


def test_a_snapshot_loads_back_to_the_same_answers(capsys: pytest.CaptureFixture[str], kube: FakeKube,
                                                   kubeconfig: str, tmp_path: Path) -> None:
    objects = sum(len(kube.list(kind.kind)) for kind in KINDS)
    out_file = tmp_path / "cluster.yaml"
    code, out, err = run(capsys, "snapshot", "--kubeconfig", kubeconfig, "-o", str(out_file))
    assert (code, out) == (0, ""), err
    assert err == f"wrote {out_file}: 9 pods, {objects} objects; use it with -f {out_file}\n"
    text = out_file.read_text()
    assert text.startswith(f"# epgbridge snapshot of the cluster of {kubeconfig} at ")
    saved = yaml.safe_load(text)
    assert saved["kind"] == "List" and len(saved["items"]) == objects
    assert all("managedFields" not in item["metadata"] for item in saved["items"])
    for argv in (["matrix", *PROBES, "-o", "json"], ["matrix", *PROBES, "-o", "html"], ["explain", *EXPLAIN],
                 ["validate"]):
        assert run(capsys, *argv, "-f", str(out_file)) == run(capsys, *argv, "--kubeconfig", kubeconfig)
    code, out, _ = run(capsys, "snapshot", "--kubeconfig", kubeconfig)  # default: stdout
    assert code == 0 and yaml.safe_load(out)["items"] == saved["items"]


def test_live_mode_takes_the_config_the_controller_runs_with(capsys: pytest.CaptureFixture[str], kubeconfig: str,
                                                             tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("apiVersion: epgbridge.io/v1alpha1\nkind: Config\nmetadata: {name: epgbridge}\n"
                      "spec: {defaultEndpointGroup: {tenant: lab, applicationProfile: k8s, name: rest}}\n")
    code, out, _ = run(capsys, "matrix", "--kubeconfig", kubeconfig, "--config", str(config), "--probe", "80/TCP",
                       "-o", "html")
    assert code == 0 and '<td>sandbox/netshoot</td><td>lab/k8s/rest</td>' in out


def test_what_cannot_be_read_is_one_line_never_an_empty_cluster(
        capsys: pytest.CaptureFixture[str], kube: FakeKube, kubeconfig: str, tmp_path: Path) -> None:
    kube.fail_next(1, 404, verb="list", resource="endpointgroups.epgbridge.io")
    code, out, err = run(capsys, "matrix", "--kubeconfig", kubeconfig, "--probe", "80/TCP")
    assert (code, out) == (1, "")
    assert err == (f"error: cannot list EndpointGroup objects (/apis/epgbridge.io/v1alpha1/endpointgroups) from the "
                   f"API server at {kube.url}: 404 (install the CRDs first: kubectl apply -f deploy/crds/)\n")
    kube.fail_next(1, 403, verb="list", resource="pods")
    code, _, err = run(capsys, "snapshot", "--kubeconfig", kubeconfig, "-o", str(tmp_path / "s.yaml"))
    assert code == 1 and err.endswith("403 Forbidden (a live read needs list on it in every namespace, as the "
                                      "ClusterRole epgbridge-agent of deploy/rbac.yaml grants)\n")
    assert err.count("\n") == 1
    assert not (tmp_path / "s.yaml").exists()  # nothing half-read is saved

    code, _, err = run(capsys, "validate", "--kubeconfig", str(tmp_path / "missing"))
    assert (code, err) == (1, f"error: --kubeconfig {tmp_path / 'missing'}: no such file\n")

    with FakeKube() as gone:
        dead = str(gone.write_kubeconfig(tmp_path / "dead"))
        url = gone.url
    code, _, err = run(capsys, "explain", "--kubeconfig", dead, *EXPLAIN)
    assert code == 1 and err == (f"error: cannot list Namespace objects (/api/v1/namespaces) from the API server at "
                                 f"{url}: connection refused\n")


def test_one_input_please(capsys: pytest.CaptureFixture[str], kubeconfig: str,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    code, _, err = run(capsys, "matrix", "--probe", "80/TCP")
    assert (code, err) == (2, "error: give -f PATH (snapshot files, a directory or - for stdin) or --kubeconfig "
                              "FILE (a live cluster)\n")
    code, _, err = run(capsys, "validate", "-f", str(EXAMPLE), "--kubeconfig", kubeconfig)
    assert code == 2 and "give one of them" in err
    code, _, err = run(capsys, "snapshot")
    assert code == 2 and "--kubeconfig FILE" in err


def test_in_a_pod_without_f_the_service_account_is_used(capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from kubernetes.config import incluster_config

    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "1")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(tmp_path / "token"))
    code, _, err = run(capsys, "validate")
    # The in-cluster loader was chosen: it looks for the service account's token (not here, so one line).
    assert code == 1 and err.startswith("error: cannot configure the Kubernetes client: ") and "token" in err.lower()
    assert err.count("\n") == 1


def test_json_of_a_live_matrix_is_the_stable_shape(capsys: pytest.CaptureFixture[str], kubeconfig: str) -> None:
    code, out, _ = run(capsys, "matrix", "--kubeconfig", kubeconfig, "--probe", "80/TCP", "-o", "json")
    data = json.loads(out)
    assert code == 0 and set(data) == {"pods", "probes"} and len(data["pods"]) == 9


def test_a_live_read_needs_what_the_agents_role_grants_and_no_more(capsys: pytest.CaptureFixture[str],
                                                                    tmp_path: Path) -> None:
    from tests.controller.test_rbac import apply_rbac

    with FakeKube(crds=[CRD_DIR]) as kube:
        load_example(kube)
        apply_rbac(kube)  # from now on deploy/rbac.yaml decides
        kube.create({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                     "metadata": {"name": "ops-reads-policy"},
                     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                 "name": "epgbridge-agent"},
                     "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "ops"}]})
        ops = kube.write_kubeconfig(tmp_path / "ops", token=kube.add_user("ops-token", "ops"))
        code, out, err = run(capsys, "matrix", "--kubeconfig", str(ops), "--probe", "80/TCP", "-o", "json")
        assert (code, err) == (0, "") and len(json.loads(out)["pods"]) == 9
        assert kube.denied == []
        dev = kube.write_kubeconfig(tmp_path / "dev", token=kube.add_user("dev-token", "dev"))
        code, _, err = run(capsys, "validate", "--kubeconfig", str(dev))
        assert code == 1 and "403 Forbidden (a live read needs list on it in every namespace" in err
