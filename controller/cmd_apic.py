"""The APIC commands of `epgbridge`: ``render apic``, ``push`` and ``apic-sim``, plus the APIC part of the demo.

``push`` reads the snapshot, renders one fvTenant tree per tenant, plans the difference against the APIC and
writes it (``--dry-run``: plans only). The APIC password comes from ``--password-file`` when given, else from
``APIC_PASSWORD`` (the same rule for ``push``, ``controller`` and ``apic-sim``), the user from ``APIC_USERNAME``
(default ``admin``); never from the command line, where other users could read them. Exit status: 0 done, 1
invalid input or an APIC error (one line each, never a traceback), 2 usage, 3 with ``--strict`` when objects it
wants are someone else's on the APIC (written all the same where it may).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import yaml

from apic_client import ApicSession, Plan, apply, plan, render
from apic_client.session import url_problem
from apic_client.simulator import Simulator
from apic_client.simulator import cli as sim_cli
from contracts.model import Model
from controller.snapshot import add_files_argument, load_model
from epg.errors import Disagreement, EpgbridgeError

PUSH_EXAMPLES = """\
Objects epgbridge wants but finds under another annotation (say orchestrator:ansible after an Ansible edit)
are someone else's: push leaves them as they are and warns; --strict turns that into exit status 3 (for CI).

exit status: 0 done, 1 invalid input or an APIC error, 2 usage error, 3 (--strict) objects not ours

examples:
  APIC_PASSWORD=... epgbridge push -f examples/cluster --apic https://apic1 --apic https://apic2 --ca apic-ca.pem
  epgbridge push -f examples/cluster --apic http://127.0.0.1:8443 --password-file pw.txt --dry-run -o json
  epgbridge push -f examples/cluster --apic https://apic1 --ca apic-ca.pem --dry-run --strict   # CI check
"""


def register(subparsers: Any) -> None:
    """Add ``render apic``, ``push`` and ``apic-sim`` to the `epgbridge` subcommands."""
    targets = _render_targets(subparsers)
    p = targets.add_parser("apic", help="the APIC object trees (one fvTenant per tenant) the snapshot renders to",
                           description="Print the desired APIC managed-object trees, one fvTenant tree per tenant, "
                           "as `push` would write them (before ownership annotations).")
    add_files_argument(p)
    p.add_argument("--host-protection", action="store_true",
                   help="also render NetworkPolicies as host-protection policies (hostprotPol)")
    p.add_argument("--host-protection-tenant", metavar="TENANT",
                   help="tenant for the host-protection policies (default: the cluster default EPG's tenant)")
    p.add_argument("-o", "--output", choices=("json", "yaml"), default="json")
    p.set_defaults(func=cmd_render_apic)

    p = subparsers.add_parser("push", help="sync the snapshot's EPGs and contracts to the APIC (diff, few POSTs)",
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              description="Render the snapshot, compare it with what epgbridge owns on the APIC, "
                              "print the plan (create/modify/delete per DN) and write the difference. Objects "
                              "without annotation orchestrator:epgbridge are never changed. Password from "
                              "--password-file or APIC_PASSWORD, user from APIC_USERNAME (default admin).\n\n"
                              + PUSH_EXAMPLES)
    add_files_argument(p)
    p.add_argument("--apic", dest="urls", action="append", required=True, metavar="URL", type=apic_url,
                   help="APIC URL, e.g. https://apic1; repeat for failover between cluster members")
    p.add_argument("--dry-run", action="store_true", help="print the plan and write nothing")
    p.add_argument("--strict", action="store_true",
                   help="exit 3 when objects epgbridge wants are someone else's on the APIC, or when its EPGs "
                   "use contracts that are (see docs/apic.md, 'Sharing the APIC')")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    p.add_argument("--host-protection", action="store_true",
                   help="also push NetworkPolicies as host-protection policies (hostprotPol)")
    p.add_argument("--host-protection-tenant", metavar="TENANT",
                   help="tenant for the host-protection policies (default: the cluster default EPG's tenant)")
    tls = p.add_mutually_exclusive_group()
    tls.add_argument("--ca", metavar="FILE", help="CA certificate (PEM) to verify the APIC with")
    tls.add_argument("--insecure", action="store_true", help="do not verify the APIC's TLS certificate")
    p.add_argument("--password-file", metavar="FILE",
                   help="file holding the APIC password (given, it wins over APIC_PASSWORD)")
    p.set_defaults(func=cmd_push)

    p = subparsers.add_parser("apic-sim", help="run the APIC simulator (REST, SQLite state) in the foreground",
                              description="Serve an APIC REST simulator until interrupted. User admin; password "
                              "from --password-file, else APIC_PASSWORD, else generated and printed.")
    sim_cli.add_arguments(p)
    p.set_defaults(func=sim_cli.run)


def _render_targets(subparsers: Any) -> Any:
    """The subcommands of ``render`` (created here unless another module added ``render`` first)."""
    existing = subparsers.choices.get("render")
    if existing is not None:
        for action in existing._actions:
            if isinstance(action, argparse._SubParsersAction):
                return action
    render_parser = subparsers.add_parser("render", help="print what the snapshot renders to (apic)",
                                          description="Print a rendering of the snapshot.")
    targets = render_parser.add_subparsers(dest="target", metavar="TARGET", parser_class=type(render_parser))
    targets.required = True
    return targets


def _load(files: list[str], verbose: bool = False) -> Model:
    model = load_model(files, verbose)
    for notice in model.errors:
        print(f"warning: {notice} (pods that read it are isolated)", file=sys.stderr)
    for notice in model.warnings:
        print(f"warning: {notice}", file=sys.stderr)
    return model


def _desired(model: Model, args: argparse.Namespace) -> list[dict[str, Any]]:
    rendering = render(model, host_protection=args.host_protection,
                       host_protection_tenant=args.host_protection_tenant)
    for warning in rendering.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return list(rendering.tenants)


def cmd_render_apic(args: argparse.Namespace) -> int:
    desired = _desired(_load(args.files, args.verbose), args)
    if args.output == "yaml":
        sys.stdout.write(yaml.safe_dump(desired, sort_keys=False, default_flow_style=False))
    else:
        print(json.dumps(desired, indent=2))
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    password = _password(args.password_file)
    check_ca(args.ca)
    desired = _desired(_load(args.files, args.verbose), args)
    username = os.environ.get("APIC_USERNAME") or "admin"
    with warnings.catch_warnings(), _quiet("apic_client", not args.verbose):
        if args.insecure:
            # The user chose not to verify; say it once instead of once per request.
            print("warning: --insecure: the APIC's certificate is not verified", file=sys.stderr)
            warnings.simplefilter("ignore")
        with ApicSession(args.urls, username, password, ca_file=args.ca, insecure=args.insecure) as session:
            result = plan(desired, session)
            written = 0 if args.dry_run else apply(result, session)
    _print_plan(result, written, args.dry_run, args.output, sys.stdout)
    for skipped in result.not_owned:
        print(f"warning: {skipped.cls} {skipped.dn} is {skipped.owner or 'unannotated'}, not "
              "orchestrator:epgbridge: left as it is", file=sys.stderr)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.strict and (result.not_owned or result.warnings):
        raise Disagreement(f"--strict: {len(result.not_owned)} object(s) not ours, {len(result.warnings)} EPG(s) "
                           "using contracts that are not ours")
    return 0


@contextlib.contextmanager
def _quiet(logger: str, quiet: bool) -> Iterator[None]:
    """Without -v, only errors of `logger`: each retry and failover logs a warning, and the one error line at
    the end says enough."""
    log = logging.getLogger(logger)
    level = log.level
    if quiet:
        log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def apic_url(text: str) -> str:
    """`--apic URL` as argparse checks it: a usage error unless it is http(s)://HOST[:PORT]."""
    problem = url_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem.removeprefix(f"--apic {text}: ") + f" (got {text!r})")
    return text


def check_ca(path: str | None) -> None:
    """`--ca FILE` must be a readable file: said now, in one line, not as a TLS library's OSError later."""
    if path is None:
        return
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise EpgbridgeError(f"--ca {path}: cannot read the CA certificate: {exc.strerror or exc}") from None


def _print_plan(result: Plan, written: int, dry_run: bool, output: str, out: TextIO) -> None:
    if output == "json":
        document = result.to_dict()
        document["dryRun"] = dry_run
        document["written"] = written
        out.write(json.dumps(document, indent=2) + "\n")
        return
    out.write(result.render_text() + "\n")
    if dry_run:
        out.write("dry run: nothing written.\n")
    elif not result.is_empty:
        out.write(f"wrote {written} POST{'s' if written != 1 else ''}.\n")


def _password(password_file: str | None) -> str:
    """The APIC password: the file named by --password-file when given (an explicit flag beats the environment),
    else APIC_PASSWORD."""
    if password_file:
        try:
            password = Path(password_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise EpgbridgeError(f"cannot read the password file {password_file}: {reason}") from None
        if not password:
            raise EpgbridgeError(f"the password file {password_file} is empty")
        return password
    password = os.environ.get("APIC_PASSWORD", "")
    if not password:
        raise EpgbridgeError("no APIC password: set APIC_PASSWORD or pass --password-file FILE")
    return password


def demo_apic(model: Model, out: TextIO) -> None:
    """Push `model` to an APIC simulator started here (127.0.0.1, plain HTTP, temporary state): what the first
    push creates, counted per tenant and class, and a second push that finds nothing to write."""
    desired = list(render(model).tenants)
    with tempfile.TemporaryDirectory(prefix="epgbridge-apic-demo-") as tmp:
        password = os.urandom(12).hex()
        with Simulator(Path(tmp) / "apic.sqlite", tls=False, password=password) as sim:
            url = sim.start("127.0.0.1", 0)
            out.write(f"APIC simulator on {url}\n")
            with ApicSession(url, "admin", password) as session:
                out.write("\n== epgbridge push (first time: everything is created)\n")
                first = plan(desired, session)
                written = apply(first, session)
                out.write(plan_counts(first) + "\n")
                out.write(f"   wrote {written} POST(s); {sim.object_count} objects on the APIC now "
                          "(`epgbridge push --dry-run` lists every one)\n")
                out.write("\n== epgbridge push (again: already in sync)\n")
                posts = sim.counters.posts
                second = plan(desired, session)
                apply(second, session)
                _print_plan(second, 0, False, "text", out)
                out.write(f"   {sim.counters.posts - posts} writes; {session.counters.logins} login for both "
                          "pushes\n")
    out.flush()


def plan_counts(result: Plan) -> str:
    """A plan in a few lines: per tenant, how many objects of each class it creates, modifies or deletes."""
    lines = []
    for tenant in result.tenants:
        for action in ("create", "modify", "delete"):
            classes = Counter(c.cls for c in tenant.changes if c.action == action)
            if classes:
                listed = ", ".join(f"{n} {cls}" for cls, n in sorted(classes.items(), key=lambda kv: (-kv[1], kv[0])))
                lines.append(f"   {tenant.dn}: {action} {sum(classes.values())} ({listed})")
    return "\n".join(lines) if lines else "   APIC is in sync: nothing to write."
