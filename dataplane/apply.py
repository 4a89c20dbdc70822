"""Apply a node's ruleset: the first time by checking and replacing the whole table in one transaction,
afterwards by one transaction computed against the state we committed: set and map element changes, plus the
sets and chains that appear or go away (a policy changed). The kernel is never listed on this path; a failed
transaction leaves the previous ruleset in force and our record of it unchanged."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from contracts.ir import NodeIR, PolicyIR
from dataplane import libnft
from dataplane.render import TABLE, NftSet, RenderState, Table, render_changes, render_hold, render_script
from epg.errors import EpgbridgeError


class NftError(EpgbridgeError):
    """nft refused a script; the message is nft's own."""


def _refused(text: str) -> NftError:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return NftError("nft rejected the ruleset: " + (" | ".join(lines[:6]) or "no reason given"))


# Scripts past this size (a whole table) run in an `nft` process: nft holds about a kilobyte per element while it
# parses, which a long-lived agent would keep as its peak memory; small updates run in-process (libnftables).
IN_PROCESS_MAX = 256 * 1024


def run_nft(script: str, *, netns: str | None = None, check: bool = False) -> None:
    """Run a script as `nft -f` would (or only check it, `-c`), inside a network namespace if given: in-process
    through libnftables where it is installed and the script is small, else with the `nft` program."""
    if libnft.available() and len(script) <= IN_PROCESS_MAX:
        with libnft.NftContext(netns) as ctx:
            error = ctx.run(script, check=check)
        if error is not None:
            raise _refused(error)
        return
    _run_program(script, netns=netns, check=check)


def _run_program(script: str, *, netns: str | None, check: bool) -> None:
    argv = ["nft", *(["-c"] if check else []), "-f", "-"]
    if netns is not None:
        argv = ["ip", "netns", "exec", netns, *argv]
    try:
        proc = subprocess.run(argv, input=script, text=True, capture_output=True, check=False, timeout=120)
    except FileNotFoundError as exc:
        raise NftError(f"cannot run {argv[0]}: {exc.strerror} (install nftables and iproute2)") from None
    if proc.returncode != 0:
        raise _refused(proc.stderr or f"exit status {proc.returncode}")


@dataclass(frozen=True, slots=True)
class Transaction:
    """What one apply does: a whole-table replace, an update, or nothing. Printable."""

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


def _key(s: NftSet, element: str) -> str:
    return element.split(" : ", 1)[0] if s.map else element  # a map element is deleted by its key


def _changes(old: Table, new: Table) -> tuple[str, int, int]:
    """The transaction from `old` to `new`: sets and chains that appear, element changes, sets and chains that
    go. Chains are named by their content, so a chain is added or removed, never changed in place."""
    before = {s.name: s for s in old.sets}
    after = {s.name for s in new.sets}
    old_chains, new_chains = {c.name for c in old.chains}, {c.name for c in new.chains}
    sets = [s for s in new.sets if s.name not in before]
    chains = [c for c in new.chains if c.name not in old_chains]
    removed_chains = [c.name for c in old.chains if c.name not in new_chains]
    removed_sets = [s.name for s in old.sets if s.name not in after]
    deletes: list[str] = []
    adds: list[str] = []
    n_added = sum(len(s.elements) for s in sets)
    n_removed = sum(len(before[name].elements) for name in removed_sets)
    for s in new.sets:
        was = before.get(s.name)
        if was is None or was.elements is s.elements or was.elements == s.elements:
            continue
        old_elements, new_elements = set(was.elements), set(s.elements)
        gone, fresh = sorted(old_elements - new_elements), sorted(new_elements - old_elements)
        if gone:
            deletes.append(f"delete element {TABLE} {s.name} {{ {', '.join(_key(s, e) for e in gone)} }}")
        if fresh:
            adds.append(f"add element {TABLE} {s.name} {{ {', '.join(fresh)} }}")
        n_added, n_removed = n_added + len(fresh), n_removed + len(gone)
    if not (sets or chains or deletes or adds or removed_chains or removed_sets):
        return "", 0, 0
    # Deletions first: a map key that now points elsewhere is deleted, then added again.
    return (render_changes(sets, chains, deletes + adds, removed_chains, removed_sets),
            n_added, n_removed)


class NodeDataplane:
    """Keeps one node's `inet epgbridge` table equal to what the IR says, with the smallest transaction."""

    def __init__(self, node: str, *, netns: str | None = None,
                 runner: Callable[..., None] | None = None) -> None:
        """`runner`: what runs a script (`run_nft`'s signature); by default one libnftables context kept for
        this node (its netlink socket stays open between updates), or the `nft` program without the library."""
        self.node = node
        self.netns = netns
        self._run = runner or self._in_process
        self._ctx: libnft.NftContext | None = None
        self._table: Table | None = None
        self._state = RenderState()

    @property
    def committed(self) -> dict[str, NftSet] | None:
        """Every set and map of the applied table by name, or None before the first apply."""
        return None if self._table is None else {s.name: s for s in self._table.sets}

    @property
    def table(self) -> Table | None:
        return self._table

    def plan(self, ir: PolicyIR) -> tuple[Transaction, Table]:
        """The transaction that brings the table to `ir`: the whole table the first time, else the changes."""
        table = Table.build(ir, ir.nodes.get(self.node, NodeIR(self.node, ())), self._state)
        if self._table is None:
            return Transaction("replace", render_script(table), table.elements), table
        script, added, removed = _changes(self._table, table)
        return Transaction("delta" if script else "noop", script, added, removed), table

    def apply(self, ir: PolicyIR) -> Transaction:
        tx, table = self.plan(ir)
        if tx.kind == "replace":
            self._run(tx.script, netns=self.netns, check=True)
        if tx.kind != "noop":
            self._run(tx.script, netns=self.netns)
        self._table = table
        return tx

    def _in_process(self, script: str, *, netns: str | None = None, check: bool = False) -> None:
        if not libnft.available() or len(script) > IN_PROCESS_MAX:
            _run_program(script, netns=netns, check=check)
            return
        if self._ctx is None:
            self._ctx = libnft.NftContext(netns)
        error = self._ctx.run(script, check=check)
        if error is not None:
            raise _refused(error)

    def hold(self) -> None:
        """Before the first apply on a node where no table of ours is in force (it just started, or someone
        removed the table): close the node's forwarded traffic until the first full table replaces it. Only
        for a node known to have no table: a table in force (an agent restarted) stays as it is."""
        self._run(render_hold(), netns=self.netns)

    def forget(self) -> None:
        """Drop the record of what was committed: the next apply replaces the whole table."""
        self._table = None
