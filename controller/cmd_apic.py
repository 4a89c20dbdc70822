"""The APIC commands of `epgbridge`: ``render apic``, ``push`` and ``apic-sim``, plus the APIC part of the demo.

``push`` reads the snapshot, renders one fvTenant tree per tenant, plans the difference against the APIC and
writes it (``--dry-run``: plans only). The APIC password comes from ``--password-file`` or ``APIC_PASSWORD``,
the user from ``APIC_USERNAME`` (default ``admin``); never from the command line, where other users could read
them. Exit status: 0 done, 1 invalid input or an APIC error (one line each, never a traceback), 2 usage,
3 with ``--strict`` when objects it wants are someone else's on the APIC (written all the same where it may).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, TextIO

import yaml

from apic_client import ApicError, ApicSession, Plan, apply, plan, render
from apic_client.simulator import Simulator
from apic_client.simulator import cli as sim_cli
from contracts.model import Model
from controller.snapshot import add_files_argument, load_model
from epg.errors import InvalidInput

PUSH_EXAMPLES = """\
Objects epgbridge wants but finds under another annotation (say orchestrator:ansible after an Ansible edit)
are someone else's: push leaves them as they are and warns; --strict turns that into exit status 3 (for CI).

exit status: 0 done, 1 invalid input or an APIC error, 2 usage error, 3 (--strict) objects not ours

examples:
  APIC_PASSWORD=... epgbridge push -f examples/cluster --apic https://apic1 --apic https://apic2 --ca apic-ca.pem
  epgbridge push -f examples/cluster --apic http://127.0.0.1:8443 --password-file pw.txt --dry-run -o json
  epgbridge push -f examples/cluster --apic https://apic1 --ca apic-ca.pem --dry-run --strict   # CI check
"""
EXIT_NOT_OWNED = 3


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
    p.add_argument("--apic", dest="urls", action="append", required=True, metavar="URL",
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
    p.add_argument("--password-file", metavar="FILE", help="file holding the APIC password (else APIC_PASSWORD)")
    p.set_defaults(func=cmd_push)

    p = subparsers.add_parser("apic-sim", help="run the APIC simulator (REST, SQLite state) in the foreground",
                              description="Serve an APIC REST simulator until interrupted. User admin; password "
                              "from APIC_PASSWORD or --password-file, else generated and printed.")
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


def _load(files: list[str]) -> Model:
    model = load_model(files)
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
    try:
        desired = _desired(_load(args.files), args)
    except InvalidInput as exc:
        return _problems(exc)
    if args.output == "yaml":
        sys.stdout.write(yaml.safe_dump(desired, sort_keys=False, default_flow_style=False))
    else:
        print(json.dumps(desired, indent=2))
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    try:
        password = _password(args.password_file)
        desired = _desired(_load(args.files), args)
    except InvalidInput as exc:
        return _problems(exc)
    except _Refused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    username = os.environ.get("APIC_USERNAME") or "admin"
    with warnings.catch_warnings():
        if args.insecure:
            # The user chose not to verify; say it once instead of once per request.
            print("warning: --insecure: the APIC's certificate is not verified", file=sys.stderr)
            warnings.simplefilter("ignore")
        try:
            with ApicSession(args.urls, username, password, ca_file=args.ca, insecure=args.insecure) as session:
                result = plan(desired, session)
                written = 0 if args.dry_run else apply(result, session)
        except ApicError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    _print_plan(result, written, args.dry_run, args.output, sys.stdout)
    for skipped in result.not_owned:
        print(f"warning: {skipped.cls} {skipped.dn} is {skipped.owner or 'unannotated'}, not "
              "orchestrator:epgbridge: left as it is", file=sys.stderr)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.strict and (result.not_owned or result.warnings):
        print(f"error: --strict: {len(result.not_owned)} object(s) not ours, {len(result.warnings)} EPG(s) using "
              "contracts that are not ours", file=sys.stderr)
        return EXIT_NOT_OWNED
    return 0


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


class _Refused(Exception):
    """A problem with the command's own inputs (the password), reported in one line."""


def _password(password_file: str | None) -> str:
    if password_file:
        try:
            password = Path(password_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise _Refused(f"cannot read the password file {password_file}: {reason}") from None
        if not password:
            raise _Refused(f"the password file {password_file} is empty")
        return password
    password = os.environ.get("APIC_PASSWORD", "")
    if not password:
        raise _Refused("no APIC password: set APIC_PASSWORD or pass --password-file FILE")
    return password


def _problems(exc: InvalidInput) -> int:
    for problem in exc.problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1


def demo_apic(model: Model, out: TextIO) -> None:
    """Push `model` to an APIC simulator started here (127.0.0.1, plain HTTP, temporary state): the plan, the
    push, and a second push that finds nothing to write."""
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
                _print_plan(first, written, False, "text", out)
                out.write(f"   {sim.object_count} objects on the APIC now; "
                          f"{sim.counters.posts} POST(s) received\n")
                out.write("\n== epgbridge push (again: already in sync)\n")
                posts = sim.counters.posts
                second = plan(desired, session)
                apply(second, session)
                _print_plan(second, 0, False, "text", out)
                out.write(f"   {sim.counters.posts - posts} writes; {session.counters.logins} login for both "
                          "pushes\n")
    out.flush()
