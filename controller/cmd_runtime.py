"""`epgbridge controller` and `epgbridge agent`: the processes a cluster runs (deploy/)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from typing import Any

from controller.metrics import Metrics, serve
from epg.errors import EpgbridgeError


def kube_client(kubeconfig: str | None, context: str | None) -> Any:
    """In-cluster credentials when running in a pod (and no --kubeconfig), else the kubeconfig."""
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    try:
        if kubeconfig is None and "KUBERNETES_SERVICE_HOST" in os.environ:
            k8s_config.load_incluster_config()
            return k8s.ApiClient()
        configuration = k8s.Configuration()
        k8s_config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=configuration)
        return k8s.ApiClient(configuration)
    except (k8s_config.ConfigException, OSError) as exc:
        raise EpgbridgeError(f"cannot configure the Kubernetes client: {exc}") from None


def _run_until_signalled(loop: Any, metrics_server: Any) -> int:
    done = threading.Event()

    def stop(signum: int, _frame: object) -> None:
        logging.getLogger("epgbridge").info("signal %d: shutting down", signum)
        loop.stop()
        done.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    try:
        loop.run()
    finally:
        if metrics_server is not None:
            metrics_server.shutdown()
    return 0


def _logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def cmd_controller(args: argparse.Namespace) -> int:
    from controller.cmd_apic import _password, check_ca
    from controller.leader import LeaderElectionSettings
    from controller.runtime import ApicTarget, Controller, read_config

    _logging(args.verbose)
    election = LeaderElectionSettings(args.leader_elect_lease_duration, args.leader_elect_renew_deadline,
                                      args.leader_elect_retry_period)
    try:
        election.validate()
    except ValueError as exc:
        raise EpgbridgeError(str(exc)) from None
    config = read_config(args.config)
    apic = None
    if args.apic:
        check_ca(args.ca)
        apic = ApicTarget(args.apic, os.environ.get("APIC_USERNAME", "admin"), _password(args.password_file),
                          args.ca, args.insecure, args.host_protection)
    metrics = Metrics()
    loop = Controller(kube_client(args.kubeconfig, args.context), apic, identity=args.identity,
                      namespace=args.leader_elect_namespace, lease_name=args.lease_name, resync=args.resync,
                      metrics=metrics, config=config, election=election)
    server = serve(metrics, args.metrics_address, loop.health) if args.metrics_address else None
    return _run_until_signalled(loop, server)


def cmd_agent(args: argparse.Namespace) -> int:
    from controller.runtime import Agent, read_config

    _logging(args.verbose)
    config = read_config(args.config)
    metrics = Metrics()
    lines = logging.getLogger("epgbridge.drops.lines")  # one JSON object per line, on standard output
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    lines.addHandler(handler)
    lines.propagate = False
    loop = Agent(kube_client(args.kubeconfig, args.context), args.node, netns=args.netns,
                 drift_every=args.drift_check, metrics=metrics, config=config, drops=not args.no_drops)
    server = (serve(metrics, args.metrics_address, loop.health, routes=loop.routes()) if args.metrics_address
              else None)
    return _run_until_signalled(loop, server)


def _apic_url(text: str) -> str:
    from controller.cmd_apic import apic_url

    return apic_url(text)


def _common(p: argparse.ArgumentParser, metrics_default: str) -> None:
    p.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig (default: in-cluster, else ~/.kube/config)")
    p.add_argument("--context", help="kubeconfig context")
    p.add_argument("--config", metavar="FILE", help="a epgbridge.io/v1alpha1 Config object (default EPG, annotation "
                   "key, invalidAnnotation); the deployment mounts it from the ConfigMap epgbridge-config")
    p.add_argument("--metrics-address", default=metrics_default, metavar="HOST:PORT",
                   help=f"serve /metrics and /healthz here (default {metrics_default}: this host only, as "
                   "kube-proxy's --metrics-bind-address; :PORT for every address, [ADDRESS]:PORT for one; "
                   "empty to disable)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "controller", help="keep the APIC in sync with the cluster (one active replica)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Watch namespaces, pods, workloads, NetworkPolicies, EndpointGroups and Contracts; push the "
        "EPGs and contracts to the APIC on start, on every change and periodically (drift repair); report "
        "invalid input as Kubernetes Events and status conditions. Replicas elect one leader through a Lease. "
        "Nothing is written to the APIC until every kind has been listed: a kind that cannot be (RBAC, a missing "
        "CRD) leaves the APIC as it is, and /healthz says which (docs/install.md, failure semantics).\n\n"
        "example:\n  APIC_PASSWORD=... epgbridge controller --apic https://apic1 --ca apic-ca.pem")
    p.add_argument("--apic", action="append", metavar="URL", default=[], type=_apic_url,
                   help="APIC URL, repeatable for failover; without it only Events and status are written")
    p.add_argument("--password-file", metavar="FILE", help="file holding the APIC password (else APIC_PASSWORD)")
    tls = p.add_mutually_exclusive_group()
    tls.add_argument("--ca", metavar="FILE", help="CA bundle that signed the APIC's certificate")
    tls.add_argument("--insecure", action="store_true", help="do not verify the APIC's certificate")
    p.add_argument("--host-protection", action="store_true", help="also push NetworkPolicies as hostprotPol")
    p.add_argument("--leader-elect-namespace", default=os.environ.get("POD_NAMESPACE", "epgbridge-system"),
                   metavar="NS", help="namespace of the leader-election Lease")
    p.add_argument("--lease-name", default="epgbridge-controller")
    p.add_argument("--leader-elect-lease-duration", type=float, default=15.0, metavar="SECONDS",
                   help="a standby takes the Lease when it has not changed for this long, by the standby's own "
                   "clock (default 15)")
    p.add_argument("--leader-elect-renew-deadline", type=float, default=10.0, metavar="SECONDS",
                   help="the leader stops writing when it could not renew the Lease for this long; must be "
                   "shorter than the lease duration (default 10)")
    p.add_argument("--leader-elect-retry-period", type=float, default=2.0, metavar="SECONDS",
                   help="between attempts to take or renew the Lease (default 2)")
    p.add_argument("--identity", default=os.environ.get("POD_NAME", socket.gethostname()),
                   help="this replica's name in the Lease (default: POD_NAME or the host name)")
    p.add_argument("--resync", type=float, default=60.0, metavar="SECONDS",
                   help="full APIC comparison at least this often, to repair hand edits (default 60)")
    _common(p, "127.0.0.1:9090")
    p.set_defaults(func=cmd_controller)

    p = sub.add_parser(
        "agent", help="enforce both layers on this node with nftables",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Watch the cluster and keep table inet epgbridge on this node equal to the policy of the "
        "node's pods: a full replace at start, then one transaction per change with only what changed (a pod "
        "event patches the last model: only that pod is read again, and its table update is set and map "
        "elements), and a periodic drift check that restores a hand-edited table (docs/dataplane.md). Until "
        "every kind has been listed it applies nothing (the table in force stays); a failed apply is retried "
        "with backoff. Every drop is counted and logged (rate-limited) by the table; the agent attributes each "
        "logged drop to the layer and objects that decided it (explain's), writes it as a JSON line on standard "
        "output (identical drops aggregated with a count), counts it in /metrics, raises a rate-limited Event on "
        "the pod, and serves the lines on /drops for `epgbridge drops` (docs/dataplane.md). Needs NET_ADMIN in "
        "the host network namespace.\n\n"
        "example:\n  epgbridge agent --node \"$NODE_NAME\"")
    p.add_argument("--node", required=True, help="this node's name (spec.nodeName of its pods)")
    p.add_argument("--netns", help=argparse.SUPPRESS)  # the lab: program a node namespace instead of the host
    p.add_argument("--drift-check", type=float, default=30.0, metavar="SECONDS",
                   help="compare the table with what was applied this often (default 30)")
    p.add_argument("--no-drops", action="store_true",
                   help="do not read the node's drop log (NFLOG group 2718): drops are still counted in the "
                   "table, but not attributed, served (epgbridge drops) or raised as Events")
    _common(p, "127.0.0.1:9091")
    p.set_defaults(func=cmd_agent)
