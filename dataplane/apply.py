"""Apply a node's ruleset: the first time (or when the table's shape changes) by checking and replacing the
whole table in one transaction, afterwards by set-element deltas computed against the state we committed.
The kernel is never listed on this path; a failed transaction leaves the previous ruleset in force and our
record of it unchanged."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from contracts.ir import NodeIR, PolicyIR
from dataplane.render import TABLE, NftSet, node_sets, render_script
from epg.errors import EpgbridgeError


class NftError(EpgbridgeError):
    """nft refused a script; the message is nft's own."""


def run_nft(script: str, *, netns: str | None = None, check: bool = False) -> None:
    """Run a script with `nft -f -` (or only check it, `-c`), inside a network namespace if given."""
    argv = ["nft", *(["-c"] if check else []), "-f", "-"]
    if netns is not None:
        argv = ["ip", "netns", "exec", netns, *argv]
    try:
        proc = subprocess.run(argv, input=script, text=True, capture_output=True, check=False, timeout=120)
    except FileNotFoundError as exc:
        raise NftError(f"cannot run {argv[0]}: {exc.strerror} (install nftables and iproute2)") from None
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        raise NftError("nft rejected the ruleset: " + (" | ".join(lines[:6]) or f"exit status {proc.returncode}"))


@dataclass(frozen=True, slots=True)
class Transaction:
    """What one apply does: a whole-table replace, a set-element delta, or nothing. Printable."""

    kind: str  # "replace" | "delta" | "noop"
    script: str
    added: int = 0
    removed: int = 0

    def __str__(self) -> str:
        if self.kind == "replace":
            return f"replace table {TABLE} ({self.added} set elements)"
        if self.kind == "delta":
            return f"update table {TABLE}: +{self.added} -{self.removed} set elements"
        return "no change"


def _delta_script(old: dict[str, NftSet], new: list[NftSet]) -> tuple[str, int, int]:
    lines: list[str] = []
    added = removed = 0
    for s in new:
        before, after = set(old[s.name].elements), set(s.elements)
        gone, fresh = sorted(before - after), sorted(after - before)
        if gone:
            lines.append(f"delete element {TABLE} {s.name} {{ {', '.join(gone)} }}")
            removed += len(gone)
        if fresh:
            lines.append(f"add element {TABLE} {s.name} {{ {', '.join(fresh)} }}")
            added += len(fresh)
    return "\n".join(lines) + ("\n" if lines else ""), added, removed


class NodeDataplane:
    """Keeps one node's `inet epgbridge` table equal to what the IR says, with the smallest transaction."""

    def __init__(self, node: str, *, netns: str | None = None,
                 runner: Callable[..., None] = run_nft) -> None:
        self.node = node
        self.netns = netns
        self._run = runner
        self._committed: dict[str, NftSet] | None = None

    @property
    def committed(self) -> dict[str, NftSet] | None:
        return self._committed

    def plan(self, ir: PolicyIR) -> tuple[Transaction, list[NftSet]]:
        sets = node_sets(ir, ir.nodes.get(self.node, NodeIR(self.node, ())))
        old = self._committed
        if old is None or [(s.name, s.type, s.interval) for s in sets] != [
                (s.name, s.type, s.interval) for s in old.values()]:
            return Transaction("replace", render_script(sets), sum(len(s.elements) for s in sets)), sets
        script, added, removed = _delta_script(old, sets)
        return Transaction("delta" if script else "noop", script, added, removed), sets

    def apply(self, ir: PolicyIR) -> Transaction:
        tx, sets = self.plan(ir)
        if tx.kind == "replace":
            self._run(tx.script, netns=self.netns, check=True)
        if tx.kind != "noop":
            self._run(tx.script, netns=self.netns)
        self._committed = {s.name: s for s in sets}
        return tx

    def forget(self) -> None:
        """Drop the record of what was committed: the next apply replaces the whole table."""
        self._committed = None
