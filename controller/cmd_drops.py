"""`epgbridge drops`: the live, attributed drops of a node, from its agent.

The agent reads its node's drop log, attributes every drop to the layer and objects that decided it (the ones
`explain` names) and serves the lines on its local HTTP port (the metrics address, loopback by default):
`/drops` (numbered lines, filtered by the query) and `/drops/stats` (new connections per NetworkPolicy rule and
contract, from the table's counters). This command reads them, once or (`--follow`) as they come.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from controller.metrics import split_address
from epg.errors import EpgbridgeError

DEFAULT_ADDRESS = "127.0.0.1:9091"  # the agent's default --metrics-address
HINT = ("run it on the node (the agent serves on loopback by default), e.g. kubectl -n epgbridge-system exec "
        "$(kubectl -n epgbridge-system get pod -l app.kubernetes.io/component=agent --field-selector "
        "spec.nodeName=NODE -o name) -- epgbridge drops")


def fetch(address: str, path: str, query: dict[str, str | None], timeout: float = 5.0) -> dict[str, Any]:
    host, port = split_address(address)
    url_host = f"[{host}]" if ":" in host else (host or "127.0.0.1")
    params = urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
    url = f"http://{url_host}:{port}{path}" + (f"?{params}" if params else "")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            data: dict[str, Any] = json.loads(answer.read())
            return data
    except urllib.error.HTTPError as exc:
        try:
            why = json.loads(exc.read()).get("error", exc.reason)
        except (ValueError, OSError):
            why = exc.reason
        raise EpgbridgeError(f"the agent at {address} answered {exc.code}: {why}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise EpgbridgeError(f"cannot reach an agent at {address}: {reason}; {HINT}") from None


def cmd_drops(args: argparse.Namespace) -> int:
    from dataplane.drops import describe

    if args.stats:
        answer = fetch(args.address, "/drops/stats", {})
        _check(answer, args.node)
        return _print_stats(answer, args.output)
    query: dict[str, str | None] = {"namespace": args.namespace, "pod": args.pod, "layer": args.layer,
                                    "verdict": args.verdict}
    after = 0
    first = True
    while True:
        answer = fetch(args.address, "/drops", {**query, "after": str(after)})
        if first:
            _check(answer, args.node)
        for line in answer["lines"]:
            print(json.dumps(line) if args.output == "json" else describe(line), flush=True)
        if first and not answer["lines"] and args.output == "text" and not args.follow:
            print(f"no drops on node {answer['node']} (with these filters) in the agent's recent history")
        after = max([after, answer.get("seq", 0), *(line["seq"] for line in answer["lines"])])
        first = False
        if not args.follow:
            return 0
        time.sleep(args.interval)


def _check(answer: dict[str, Any], node: str | None) -> None:
    if node is not None and answer.get("node") != node:
        raise EpgbridgeError(f"the agent at this address is node {answer.get('node')!r}'s, not {node!r}'s; {HINT}")
    if answer.get("error"):
        print(f"warning: {answer['error']}: drops are counted but not attributed on this node", file=sys.stderr)


def _print_stats(answer: dict[str, Any], output: str) -> int:
    rules = answer.get("rules") or []
    if output == "json":
        print(json.dumps(answer, indent=2))
        return 0
    if answer.get("time") is None:
        print(f"node {answer['node']}: the agent has not read its table's counters yet (it does every few seconds)")
        return 0
    if not rules:
        print(f"node {answer['node']}: no rule lines (no policy or contract applies to this node's pods)")
        return 0
    width = max(len(r["object"]) for r in rules)
    print(f"node {answer['node']}, counters read at {answer['time']}: new connections admitted per rule")
    for r in sorted(rules, key=lambda r: (-r["connections"], r["object"], r["rule"])):
        count = "never matched" if r["connections"] == 0 else f"{r['connections']:>8}"
        shared = "  (its line counts for other rules too)" if r["shared"] else ""
        print(f"  {r['object'].ljust(width)}  {count}  {r['rule']}{shared}")
    idle = sorted({r["object"] for r in rules} - {r["object"] for r in rules if r["connections"]})
    if idle:
        print(f"never matched on this node: {', '.join(idle)} (candidates for a look: cleanup, or a rule that "
              "misses its traffic)")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "drops", help="why packets are dropped on a node, live (from its agent)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Show the connections a node's table dropped, each attributed to the layer and the objects "
        "that decided it (the EPG pair and the missing contract, or the NetworkPolicies that isolate the pod and "
        "allow nothing from the peer: the objects `explain` names), and, for objects in audit mode, what they "
        "would drop. Identical drops are one line with a count; drops the kernel's log rate left unlogged are "
        "summed up as suppressed (the table's counters count every one). Reads the agent's local HTTP port "
        "(its --metrics-address), so run it on the node. --stats shows the new connections each NetworkPolicy "
        "rule and contract admitted on the node, and the ones that never matched.\n\nexamples:\n"
        "  epgbridge drops --namespace shop\n  epgbridge drops --pod shop/web-1 --follow\n"
        "  epgbridge drops --stats -o json")
    p.add_argument("--node", help="check that the agent at the address is this node's")
    p.add_argument("--address", default=DEFAULT_ADDRESS, metavar="HOST:PORT",
                   help=f"the agent's --metrics-address (default {DEFAULT_ADDRESS})")
    p.add_argument("-n", "--namespace", help="only drops from or to pods of this namespace")
    p.add_argument("--pod", metavar="NAME|NS/NAME", help="only drops from or to this pod")
    p.add_argument("--layer", choices=("epg", "networkPolicy"), help="only drops of this layer")
    p.add_argument("--verdict", choices=("drop", "wouldDrop"), help="only drops, or only would-drops (audit mode)")
    p.add_argument("--follow", action="store_true", help="keep printing drops as they come (Ctrl-C ends)")
    p.add_argument("--interval", type=float, default=1.0, metavar="SECONDS", help=argparse.SUPPRESS)
    p.add_argument("--stats", action="store_true", help="new connections per NetworkPolicy rule and contract instead")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text",
                   help="text (default) or json (one drop per line; --stats: one object)")
    p.set_defaults(func=cmd_drops)
