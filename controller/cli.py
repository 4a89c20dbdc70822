"""The `epgbridge` command. Every error a user can cause is an EpgbridgeError carrying its exit status (0 done,
1 invalid input or a failed operation, 2 usage error, 3 the dataplane disagrees with the engine); `main` shows
it once, as one line, and never a traceback."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from contracts.engine import Engine, Verdict
from contracts.matrix import FAMILIES, GROUP_BY, OBJECTS_UP_TO, Probe, compute_matrix
from contracts.model import Model
from controller import reports
from controller.live import add_source_arguments, source_model
from epg.errors import Disagreement, EpgbridgeError
from epg.kube import Pod, parse_ip
from epg.text import shown

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "cluster"

MAIN_HELP = """\
epgbridge lets Cisco ACI endpoint groups and contracts and Kubernetes NetworkPolicy apply at once:
a connection passes only when both the EPG layer and the NetworkPolicy layer allow it.

Inputs (-f) are snapshot files: Kubernetes objects (Namespace, Pod, Deployment, StatefulSet, DaemonSet,
ReplicaSet, NetworkPolicy) and epgbridge.io/v1alpha1 EndpointGroup, Contract and Config objects, as
multi-document YAML, JSON or `kind: List` (so `kubectl get -A -o yaml` dumps load: kinds that do not affect
policy are skipped and counted); a directory means every *.yaml, *.yml and *.json in it; `-` is standard
input. `matrix`, `explain` and `validate` also read a live cluster (--kubeconfig FILE), and `snapshot` saves
one as a file. The semantics: docs/semantics.md.

examples:
  epgbridge demo
  epgbridge validate -f examples/cluster
  epgbridge matrix -f examples/cluster --probe 80/TCP --probe 53/UDP
  epgbridge explain -f examples/cluster --from storefront/web-6d4cf56db6-7xkq2 \\
      --to storefront/api-7b9f8c5d44-h2wlt --probe 8081/TCP
  epgbridge matrix --kubeconfig ~/.kube/config --probe 80/TCP
  epgbridge drops --namespace storefront      (on a node: its dropped connections, and why)

exit status: 0 done, 1 invalid input or a failed operation (one line each), 2 usage error (and bare
`epgbridge`, which prints this help), 3 a check found a difference: real packets disagree with the engine
(matrix --dataplane, lab probe).
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        """A usage error: one line and exit status 2 (the usage of a command like push fills several lines)."""
        self.exit(2, f"{self.prog}: error: {message} (see: {self.prog} --help)\n")


def _probe(text: str) -> Probe:
    try:
        return Probe.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _report_notices(model: Model, strict: bool) -> None:
    """Invalid annotations and refused objects: errors for `validate`, warnings elsewhere (the pods reading
    them are isolated; a refused policy's pods get none of its allows)."""
    for n in model.errors:
        if strict:
            print(f"error: {n}", file=sys.stderr)
        elif n.severity == "refused":
            print(f"warning: {n}", file=sys.stderr)
        else:
            print(f"warning: {n} (pods that read it are isolated)", file=sys.stderr)
    for n in model.warnings:
        print(f"warning: {n}", file=sys.stderr)


def cmd_validate(args: argparse.Namespace) -> int:
    model = source_model(args)
    _report_notices(model, strict=True)
    c = model.cluster
    isolated = sum(1 for p in model.placements.values() if p.isolated)
    summary = (f"{len(c.namespaces)} namespaces, {len(c.pods)} pods, {len(c.workloads)} workloads, "
               f"{len(c.policies)} NetworkPolicies, {len(c.groups)} EndpointGroups, {len(c.contracts)} Contracts")
    if model.errors:
        refused = sum(1 for n in model.errors if n.severity == "refused")
        what = f"{len(model.errors) - refused} invalid annotation(s)" + (f", {refused} refused object(s)"
                                                                          if refused else "")
        print(f"invalid: {what}, {isolated} pod(s) isolated; {summary}",
              file=sys.stderr)
        return 1
    print(f"valid: {summary}")
    return 0


# Beyond this many pods a cell per pair is no longer readable as a table or a page: they are grouped.
READABLE_PODS = {"table": 60, "html": 150}


def cmd_matrix(args: argparse.Namespace) -> int:
    model = source_model(args)
    _report_notices(model, strict=False)
    engine = Engine(model)
    family = FAMILIES[args.family] if args.family else None
    matrix = compute_matrix(engine, args.probes, family)
    _note_families(model, matrix.addresses, family)
    group_by = args.group_by
    if group_by is None and not args.dataplane and len(matrix.pods) > READABLE_PODS.get(args.output, 10**9):
        group_by = "namespace"
        print(f"note: {len(matrix.pods)} pods: grouped by namespace (--group-by epg groups by EPG; -o json gives "
              "every pair)", file=sys.stderr)
    if group_by is not None:
        if args.dataplane:
            raise EpgbridgeError("--group-by summarises the engine's matrix; --dataplane shows packets per pair")
        grouped = matrix.group_by(group_by)
        if grouped.objects_omitted:
            print(f"note: {len(grouped.groups)} groups: cells give counts only (the deciding objects are named up to "
                  f"{OBJECTS_UP_TO:,} cells)", file=sys.stderr)
        if args.output == "json":
            print(json.dumps(grouped.to_json(), indent=2))
        elif args.output == "html":
            sys.stdout.write(reports.grouped_html(grouped))
        else:
            print(reports.grouped_table(grouped, reports.use_colour()), end="")
        return 0
    diffs: list[str] = []
    data: dict[str, Any] | None = None
    if args.dataplane:
        from controller.cmd_dataplane import observed_matrix

        data, cells, diffs = observed_matrix(engine, matrix, args.probes, family)
    if args.output == "json":
        if data is not None:
            print(json.dumps(data, indent=2))
        else:
            matrix.write_json(sys.stdout)  # row by row: the memory of one row however many pods
    elif args.output == "html":
        sys.stdout.write(reports.matrix_html(matrix, observed=data, epgs=reports.pod_epgs(model)))
    else:
        print(reports.matrix_table(data if data is not None else matrix.to_json(), reports.use_colour()), end="")
    if diffs:
        sys.stdout.flush()
        for line in diffs:
            print(f"  {line}", file=sys.stderr)
        raise Disagreement(f"the dataplane disagrees with the engine on {len(diffs)} of {cells} cells (above)")
    return 0


def _note_families(model: Model, addresses: Sequence[Any], family: int | None) -> None:
    """Say which addresses a matrix shows where the pods have more than one family."""
    if family is not None:
        left_out = sum(1 for p in model.endpoints if p.address(family) is None)
        if left_out:
            print(f"note: {left_out} pod(s) without an IPv{family} address are left out", file=sys.stderr)
        return
    first = {a.version for a in addresses}
    if len(first) > 1:
        print("note: the pods' first addresses are of both families, and a connection has one family: pairs "
              "across families are denied here (--family ipv4 or ipv6 shows one family)", file=sys.stderr)
    elif any(len(p.ips) > 1 for p in model.endpoints):
        other = "ipv6" if first == {4} else "ipv4"
        print(f"note: dual-stack pods: this is each pod's first address (--family {other} shows the other "
              "family)", file=sys.stderr)


def _family_of(pod: Pod, family: int | None, flag: str) -> int:
    """The family a pod speaks in: the one asked for, else its first address's; an error if it has none."""
    if family is None:
        assert pod.ip is not None
        return pod.ip.version
    if pod.address(family) is None:
        have = ", ".join(str(a) for a in pod.ips)
        raise EpgbridgeError(f"{flag} {pod.key}: the pod has no IPv{family} address (it has {have})")
    return family


def cmd_explain(args: argparse.Namespace) -> int:
    model = source_model(args)
    _report_notices(model, strict=False)
    engine = Engine(model)
    family = FAMILIES[args.family] if args.family else None
    src_pod = model.pods_by_key.get(args.src)
    if src_pod is None:
        raise EpgbridgeError(f"--from {args.src}: no pod {args.src} in the input (use NAMESPACE/POD)")
    if not src_pod.is_endpoint:
        raise EpgbridgeError(f"--from {args.src}: the pod has no IP of its own (no status.podIP(s), or "
                             "hostNetwork)")
    if "/" in args.dst and not _looks_like_ip(args.dst):
        dst_pod = model.pods_by_key.get(args.dst)
        if dst_pod is None:
            raise EpgbridgeError(f"--to {args.dst}: no pod {args.dst} in the input (use NAMESPACE/POD or an IP)")
        if not dst_pod.is_endpoint:
            raise EpgbridgeError(f"--to {args.dst}: the pod has no IP of its own (no status.podIP(s), or "
                                 "hostNetwork)")
        family = _family_of(src_pod, family, "--from")
        dst = engine.endpoint(dst_pod, _family_of(dst_pod, family, "--to"))
    elif _looks_like_ip(args.dst):
        dst = engine.endpoint(args.dst)
        if family is not None and dst.ip.version != family:
            raise EpgbridgeError(f"--to {args.dst} is an IPv{dst.ip.version} address, not --family "
                                 f"{args.family}")
        family = _family_of(src_pod, dst.ip.version, "--from")
    else:
        raise EpgbridgeError(f"--to {shown(args.dst)} must be NAMESPACE/POD or an IP address")
    src = engine.endpoint(src_pod, family)
    verdicts: list[Verdict] = [engine.decide(src, dst, probe.port, probe.protocol)
                               for probe in args.probes]
    if args.output == "json":
        # One probe: the verdict object, as always; several: a list of them, in the order of the --probe flags.
        doc: Any = verdicts[0].to_json() if len(verdicts) == 1 else [v.to_json() for v in verdicts]
        print(json.dumps(doc, indent=2))
    else:
        print("\n\n".join(reports.explain_text(v, reports.use_colour()) for v in verdicts))
    return 0


def _looks_like_ip(text: str) -> bool:
    try:
        parse_ip(text)  # strictly: no zone, no prefix
    except ValueError:
        return False
    return True


def cmd_demo(args: argparse.Namespace) -> int:
    from controller.demo import run_demo
    return run_demo(args)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"epgbridge {version('epgbridge')}"
    except PackageNotFoundError:
        return "epgbridge (not installed: run from a checkout)"


def _help_of(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """For a command that needs a subcommand (`epgbridge`, `lab`, `render`): its help, and exit status 2."""
    def show(_args: argparse.Namespace) -> int:
        parser.print_help()
        return 2
    return show


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="epgbridge", description=MAIN_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=_version())
    parser.set_defaults(func=_help_of(parser))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("validate", help="check a snapshot: syntax, objects, annotations (exit 1 if invalid)",
                       description="Load a snapshot (or a live cluster) and report every problem, one line each, "
                       "naming the file and the object. Exits 1 when anything is invalid, invalid EPG annotations "
                       "included.")
    add_source_arguments(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("matrix", help="reachability of every pod pair for each probe",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Print the engine's verdict for a new connection between every ordered pair of "
                       "pods, for each probe.\n\nexamples:\n  epgbridge matrix -f examples/cluster --probe 80/TCP "
                       "--probe 53/UDP -o html > matrix.html\n"
                       "  epgbridge matrix --kubeconfig ~/.kube/config --probe 8080/TCP")
    add_source_arguments(p)
    p.add_argument("--probe", dest="probes", action="append", type=_probe, required=True, metavar="PORT/PROTO",
                   help="destination port and protocol (TCP, UDP, SCTP), e.g. 80/TCP; repeatable")
    p.add_argument("-o", "--output", choices=("table", "json", "html"), default="table",
                   help="table (default; coloured on a terminal), json, or html (the layer that denied in each "
                   "cell, each pod's EPG, the reason on hover)")
    p.add_argument("--group-by", choices=GROUP_BY, metavar="namespace|epg",
                   help="summarise: a cell per pair of namespaces (or EPGs) with the pairs allowed and, where every "
                   "pair agrees, the objects that decided (tables of more than 60 pods and pages of more than 150 "
                   "are grouped by namespace unless this says otherwise)")
    p.add_argument("--dataplane", action="store_true",
                   help="root: build the network-namespace lab, apply the rendered rulesets, send real packets "
                   "and print what they did; exit 3 when they disagree with the engine (listed on stderr)")
    p.add_argument("--family", choices=tuple(FAMILIES), metavar="ipv4|ipv6",
                   help="probe every pod at its address of this family, leaving out pods without one (default: "
                   "each pod's first address; a dual-stack pod is policed on both of its addresses)")
    p.set_defaults(func=cmd_matrix)

    p = sub.add_parser("explain", help="why one connection is allowed or denied, layer by layer",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Explain the verdict for a new connection: the EPG layer's and the "
                       "NetworkPolicy layer's answers and the objects that decided them. With several --probe, "
                       "each is answered in turn (-o json: a list of verdicts; with one --probe, the verdict "
                       "object alone).\n\nexample:\n"
                       "  epgbridge explain -f examples/cluster --from storefront/web-6d4cf56db6-7xkq2 \\\n"
                       "      --to storefront/api-7b9f8c5d44-h2wlt --probe 8081/TCP --probe 8080/TCP")
    add_source_arguments(p)
    p.add_argument("--from", dest="src", required=True, metavar="NS/POD", help="the client pod")
    p.add_argument("--to", dest="dst", required=True, metavar="NS/POD|IP", help="the server pod or an address")
    p.add_argument("--probe", dest="probes", action="append", required=True, type=_probe, metavar="PORT/PROTO",
                   help="e.g. 8080/TCP; repeatable")
    p.add_argument("--family", choices=tuple(FAMILIES), metavar="ipv4|ipv6",
                   help="the connection's address family, for dual-stack pods (default: the --from pod's first "
                   "address's, or the family of the --to address)")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_explain)

    from controller import live

    live.register(sub)

    p = sub.add_parser("demo", help="walk through the example cluster",
                       description="Load the example cluster, validate it, print its matrix, explain two "
                       "verdicts, push it to an APIC simulator and (as root) test it with real packets.")
    p.add_argument("-f", "--filename", dest="files", action="append", metavar="PATH",
                   help=f"snapshot to use instead of the example ({EXAMPLE})")
    p.set_defaults(func=cmd_demo)

    render = sub.add_parser("render", help="print what epgbridge would apply: an nft ruleset or APIC objects",
                            description="Render the policy for one consumer without applying it.")
    render.set_defaults(func=_help_of(render))
    render_sub = render.add_subparsers(dest="target", metavar="TARGET", parser_class=_Parser)
    from controller import cmd_dataplane

    cmd_dataplane.register(sub, render_sub)
    from controller import cmd_apic

    cmd_apic.register(sub)
    from controller import cmd_lab

    cmd_lab.register(sub)
    from controller import cmd_drops

    cmd_drops.register(sub)
    from controller import cmd_runtime

    cmd_runtime.register(sub)
    from controller import cmd_annotate

    cmd_annotate.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    return run_command(parser.parse_args(argv))


def run_command(args: argparse.Namespace) -> int:
    """Run the parsed command: the one place errors become `error:` lines and exit codes."""
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except EpgbridgeError as exc:
        for line in exc.lines():
            print(f"error: {line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
