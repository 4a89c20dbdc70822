"""Where `matrix`, `explain` and `validate` read the cluster from: snapshot files (`-f`) or the live cluster
(`--kubeconfig`, or the pod's service account inside a cluster), and `epgbridge snapshot`, which saves what a
live read saw as a file that `-f` loads back.

A live read lists every input kind once with the informers' own list code (controller/watch.py: paging, the
kind and apiVersion the loader needs), so the CLI sees what the controller and the agents see. A kind that
cannot be listed stops the command with one line: a failed read is never an empty cluster.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from contracts.loader import Document
from contracts.model import Model
from controller.snapshot import add_files_argument, model_of, read_documents
from epg.errors import EpgbridgeError, InvalidInput, UsageError

try:  # the C emitter is several times faster on large clusters
    _YamlDumper: Any = yaml.CSafeDumper
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _YamlDumper = yaml.SafeDumper

IN_CLUSTER = "KUBERNETES_SERVICE_HOST"  # set in every pod: the service account's credentials are there


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """`--kubeconfig`, `--context` and `--config`: a live cluster as the input."""
    parser.add_argument("--kubeconfig", metavar="FILE",
                        help="read the live cluster of this kubeconfig instead of -f (inside a pod, without -f: "
                        "the pod's service account)")
    parser.add_argument("--context", metavar="CTX", help="kubeconfig context (default: the current one)")
    parser.add_argument("--config", metavar="FILE",
                        help="with a live cluster: the epgbridge.io/v1alpha1 Config the controller runs with "
                        "(config.yaml of the ConfigMap epgbridge-config); default: the built-in defaults")


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """The input of `matrix`, `explain` and `validate`: `-f PATH` (files) or a live cluster."""
    add_files_argument(parser, required=False)
    add_cluster_arguments(parser)


def is_live(args: argparse.Namespace) -> bool:
    """Whether the command reads a live cluster; a usage error when it is given both inputs or neither."""
    if args.files and (args.kubeconfig or args.context):
        raise UsageError("-f reads snapshot files and --kubeconfig/--context a live cluster: give one of them")
    if args.files:
        return False
    if args.kubeconfig or IN_CLUSTER in os.environ:
        return True
    raise UsageError("give -f PATH (snapshot files, a directory or - for stdin) or --kubeconfig FILE (a live "
                     "cluster)")


def _config(path: str | None) -> list[Document]:
    """The `--config` Config, checked as the controller checks it at start."""
    if path is None:
        return []
    from controller.runtime import read_config  # the runtime's imports (the kubernetes client) only when needed

    return list(read_config(path))


def source_documents(args: argparse.Namespace) -> list[Document]:
    """The documents of the command's input, files or live cluster, with the `--config` Config first."""
    config = _config(args.config)
    if is_live(args):
        return [*config, *read_cluster(args.kubeconfig, args.context)]
    return [*config, *read_documents(args.files)]


def source_model(args: argparse.Namespace) -> Model:
    return model_of(source_documents(args), args.verbose)


def _api_client(kubeconfig: str | None, context: str | None) -> Any:
    from controller.cmd_runtime import kube_client

    if kubeconfig is not None:
        path = Path(os.path.expanduser(kubeconfig))
        if not path.is_file():
            raise EpgbridgeError(f"--kubeconfig {kubeconfig}: no such file")
        kubeconfig = str(path)
    return kube_client(kubeconfig, context)


def read_cluster(kubeconfig: str | None, context: str | None) -> list[Document]:
    """Every input object of the live cluster, listed once; raises EpgbridgeError (one line) when a kind cannot
    be listed or the API server cannot be reached."""
    from controller.watch import ClusterCache, ListFailed  # the kubernetes client: only for a live read

    api = _api_client(kubeconfig, context)
    host = api.configuration.host
    cache = ClusterCache(api)
    try:
        cache.list_once()
    except ListFailed as failed:
        raise EpgbridgeError(_list_failure(failed, host)) from None
    finally:
        api.close()
    return cache.documents()


def _list_failure(failed: Any, host: str) -> str:
    """One line for a ListFailed: which kind, from where, and what to do about it."""
    from kubernetes.client.exceptions import ApiException

    kind, cause = failed.kind, failed.cause
    what = f"cannot list {kind.kind} objects ({kind.path}) from the API server at {host}"
    if isinstance(cause, ApiException):
        if cause.status == 401:
            return f"{what}: 401 Unauthorized (check the credentials of the kubeconfig)"
        if cause.status == 403:
            return (f"{what}: 403 Forbidden (a live read needs list on it in every namespace, as the ClusterRole "
                    "epgbridge-agent of deploy/rbac.yaml grants)")
        if cause.status == 404 and kind.api_version.startswith("epgbridge.io/"):
            return f"{what}: 404 (install the CRDs first: kubectl apply -f deploy/crds/)"
        return f"{what}: the API server answered {cause.status} {cause.reason or ''}".rstrip()
    reason = getattr(cause, "reason", None) or cause
    text = str(reason)
    if "refused" in text.lower():
        text = "connection refused"
    elif "certificate" in text.lower() or "ssl" in text.lower():
        text = f"TLS check failed ({text}); check certificate-authority in the kubeconfig"
    return f"{what}: {text}"


# --- epgbridge snapshot


def _portable(body: dict[str, Any]) -> dict[str, Any]:
    """The object as a snapshot keeps it: without managedFields (the API server's bookkeeping of who wrote which
    field, often the larger part of an object, never read by the loader)."""
    meta = body.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        body = {**body, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
    return body


def snapshot_text(docs: list[Document], source: str) -> str:
    """A `kind: List` of every object, as YAML, with a comment saying where and when it was read."""
    kinds: dict[str, int] = {}
    for d in docs:
        kinds[str(d.body.get("kind"))] = kinds.get(str(d.body.get("kind")), 0) + 1
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    header = (f"# epgbridge snapshot of {source} at {when}: "
              + ", ".join(f"{n} {kind}" for kind, n in kinds.items()) + "\n"
              "# Load it with any -f: epgbridge matrix -f THIS_FILE --probe 80/TCP\n")
    body = {"apiVersion": "v1", "kind": "List", "items": [_portable(d.body) for d in docs]}
    return header + yaml.dump(body, Dumper=_YamlDumper, sort_keys=False, default_flow_style=False,
                              allow_unicode=True)


def write_output(path: str, text: str) -> None:
    """Write `text` to `path` (`-`: standard output) through a sibling file renamed over it, so a failure never
    leaves half a snapshot."""
    if path == "-":
        sys.stdout.write(text)
        return
    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent if str(target.parent) else ".", prefix=f".{target.name}.")
    except OSError as exc:
        raise EpgbridgeError(f"-o {path}: cannot write there: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise EpgbridgeError(f"-o {path}: cannot write: {exc.strerror or exc}") from None


def cmd_snapshot(args: argparse.Namespace) -> int:
    docs = [*_config(args.config), *read_cluster(args.kubeconfig, args.context)]
    source = f"the cluster of {args.kubeconfig}" if args.kubeconfig else "this cluster (in-cluster credentials)"
    write_output(args.output, snapshot_text(docs, source))
    where = "the snapshot" if args.output == "-" else args.output
    try:  # what `-f` will say about it, now rather than later
        model_of(docs)
    except InvalidInput as exc:
        for problem in exc.problems:
            print(f"warning: {problem}", file=sys.stderr)
        print(f"warning: {where} was written as read, but does not load as is ({len(exc.problems)} problem(s) "
              "above; `epgbridge validate -f` shows them again)", file=sys.stderr)
    if args.output != "-":
        counts = f"{sum(1 for d in docs if d.body.get('kind') == 'Pod')} pods, {len(docs)} objects"
        print(f"wrote {args.output}: {counts}; use it with -f {args.output}", file=sys.stderr)
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "snapshot", help="save the live cluster's inputs as a snapshot file for -f",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="List every input of the live cluster once (namespaces, pods, Deployments, StatefulSets, "
        "DaemonSets, ReplicaSets, NetworkPolicies, EndpointGroups, Contracts), as the controller does, and write "
        "them as one YAML `kind: List` that any -f loads back: the same matrix, explanations and rulesets, "
        "offline.\n\nexample:\n  epgbridge snapshot --kubeconfig ~/.kube/config -o cluster.yaml\n"
        "  epgbridge matrix -f cluster.yaml --probe 80/TCP")
    p.add_argument("-o", "--output", default="-", metavar="FILE", help="where to write it (default: - for stdout)")
    add_cluster_arguments(p)
    p.set_defaults(func=_snapshot_entry)


def _snapshot_entry(args: argparse.Namespace) -> int:
    if args.kubeconfig is None and IN_CLUSTER not in os.environ:
        raise UsageError("give --kubeconfig FILE (or run it in a pod, with the pod's service account)")
    return cmd_snapshot(args)
