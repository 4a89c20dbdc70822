"""Why a packet was dropped, live: logged packets attributed by the engine, aggregated, counted.

The node table tags every drop with its place (dataplane/names.py) and logs it, rate-limited, to an NFLOG group
(dataplane/nflog.py reads it); a counter counts every packet of each place exactly. Here:

- `attribute`: a logged packet -> a `Drop`: its pods (`ns/name`, or the address of what is no pod), port and
  protocol, and, from the engine's `decide` for that connection, the deciding layer (the place's) and the
  objects that decide there (`Verdict.layer(...).denied_by`, the same objects `explain -o json` names as the
  denying reasons). A would-drop (audit mode) is attributed alike. Where the engine does not deny what the
  table dropped (a table behind the cluster), the drop says so (`engineAgrees: false`).
- `DropLog`: identical drops aggregated with a count; a JSON line for the first of each in a window and a
  summary with the count for the rest; what the kernel's log rate left unlogged ("N suppressed", from the
  counters); the last lines kept, numbered, for `epgbridge drops`.
- `rule_stats`: the rule lines' counters (new connections each line of a class chain admitted) as counts per
  NetworkPolicy rule and contract: which policies carry traffic, which never match. A line that several
  rules render to (equal peers and ports in two policies that select the same pods; contracts between the
  same pair) counts its connections for each of them.
- `DropWatcher`: the agent's loop around all of it.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import logging
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from contracts.engine import LAYERS, Engine, Origin
from contracts.netpol import PROTOCOL_NUMBERS, protocol_name
from dataplane import libnft, names
from dataplane.nflog import LoggedPacket, NflogReader
from dataplane.render import TABLE, Table
from epg.kube import parse_ip

log = logging.getLogger("epgbridge.drops")

LAYER_NAMES = {"epg": "EPG layer", "networkPolicy": "NetworkPolicy layer"}


def now_text(at: float | None = None) -> str:
    moment = dt.datetime.fromtimestamp(time.time() if at is None else at, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class Drop:
    """One attributed drop or would-drop (`audit`)."""

    node: str
    src: str  # "ns/name", or the address of what is no pod
    dst: str
    port: int | None
    protocol: str  # TCP, UDP, SCTP, or the IP protocol number
    audit: bool
    layer: str | None  # "epg" | "networkPolicy"; None: conntrack, an unknown pod, the holding table
    direction: str | None  # "ingress": the destination's rules dropped it; "egress": the source's
    pod: str | None  # the node's pod whose rules decided (the destination for ingress, the source for egress)
    objects: tuple[str, ...]
    reason: str
    place: str  # the table's tag
    agrees: bool = True  # the engine denies it too (False: the table in force is behind the cluster)

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.src, self.dst, self.port, self.protocol, self.audit, self.place)

    @property
    def namespace(self) -> str:
        return self.pod.partition("/")[0] if self.pod else ""

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "verdict": "wouldDrop" if self.audit else "drop", "from": self.src,
                "to": self.dst, "port": self.port, "protocol": self.protocol, "layer": self.layer,
                "direction": self.direction, "pod": self.pod, "objects": list(self.objects), "reason": self.reason,
                "place": self.place, "engineAgrees": self.agrees}


def attribute(engine: Engine | None, node: str, packet: LoggedPacket) -> Drop | None:
    """A logged packet as a Drop, or None when its prefix is not one of our places (or it is a would-drop of a
    connection the engine denies: the table drops it further on, and that drop is what is reported)."""
    place = names.place(packet.prefix)
    if place is None or (engine is None and place.layer is not None):
        return None
    if engine is None:  # before the first apply (the holding table): no model yet, and no policy decides
        return Drop(node, str(packet.src), str(packet.dst), packet.dport,
                    protocol_name(packet.protocol), False, None, place.direction, None, (),
                    place.what, place.tag)
    src, dst = engine.endpoint(packet.src), engine.endpoint(packet.dst)
    protocol = protocol_name(packet.protocol)
    pod = (dst if place.direction == "ingress" else src if place.direction == "egress" else None)
    pod_name = pod.name if pod is not None and pod.pod is not None else None
    base = Drop(node, src.name, dst.name, packet.dport, protocol, place.audit, place.layer, place.direction,
                pod_name, (), place.what, place.tag)
    if place.layer is None:
        return base
    if protocol not in PROTOCOL_NUMBERS or packet.dport is None:
        return replace(base, reason=f"{protocol} is not TCP, UDP or SCTP: the engine decides those only")
    verdict = engine.decide(src, dst, packet.dport, protocol)
    if place.audit and not verdict.allowed:
        return None  # logged on its way, dropped further on (by the other layer or end): that drop is reported
    layer = verdict.layer(place.layer)
    decided = layer.audit if place.audit else layer
    # A would-drop: this layer allows, and would deny with the objects in audit mode enforced (the connection
    # may still be dropped further on, by the other layer or direction).
    agrees = decided is not None if place.audit else not layer.allowed
    if not agrees or decided is None:
        now = "allows it" if verdict.allowed and not verdict.would_drop else "does not attribute it to this layer"
        if place.audit:
            now = "reports no would-drop in this layer"
        return replace(base, agrees=False, reason=f"the engine {now} now ({verdict.summary}): the table in force "
                        "was built from another view of the cluster (an update is on its way, or was refused)")
    reasons = [r.text for r in decided.reasons if r.denies]
    return replace(base, objects=decided.denied_by, reason="; ".join(reasons))


# -- aggregation ----------------------------------------------------------------------------------------------

@dataclass
class _Entry:
    drop: Drop
    first: float
    last: float
    count: int = 1
    pending: int = 0  # occurrences since the last line about it


@dataclass
class DropLog:
    """Identical drops aggregated. `add` returns the line to write now (the first of its kind in a window)
    or None; `flush` the summaries: each kind's count where more came, and what the kernel's log rate left
    unlogged. The last `history` lines are kept, numbered (`seq`), for `epgbridge drops`. Bounded: at most
    `kinds` kinds remembered (the least recent forgotten) and `lines_per_window` first lines per window (the
    rest are counted into the window's summary)."""

    node: str
    kinds: int = 4096
    history: int = 2000
    lines_per_window: int = 200
    _entries: collections.OrderedDict[tuple[Any, ...], _Entry] = field(default_factory=collections.OrderedDict)
    _lines: collections.deque[dict[str, Any]] = field(default_factory=collections.deque)
    _seq: int = 0
    _budget: int = 0
    _held_back: int = 0
    _logged: collections.Counter[str] = field(default_factory=collections.Counter)  # packets logged, by counter
    _counted: dict[str, int] | None = None  # the counters at the last reading (None: never read)
    _unlogged: collections.Counter[str] = field(default_factory=collections.Counter)

    def __post_init__(self) -> None:
        self._budget = self.lines_per_window

    def add(self, drop: Drop, at: float) -> dict[str, Any] | None:
        place = names.place(drop.place)
        if place is not None and not place.audit:
            self._logged[place.counter] += 1
        entry = self._entries.get(drop.key)
        if entry is not None:
            entry.count += 1
            entry.pending += 1
            entry.last = at
            self._entries.move_to_end(drop.key)
            return None
        entry = self._entries[drop.key] = _Entry(drop, at, at)
        while len(self._entries) > self.kinds:
            self._entries.popitem(last=False)
        if self._budget <= 0:
            entry.pending = 1
            self._held_back += 1
            return None
        self._budget -= 1
        return self._line(entry, 1, at)

    def _line(self, entry: _Entry, count: int, at: float, **extra: Any) -> dict[str, Any]:
        self._seq += 1
        line = {"seq": self._seq, "time": now_text(at), **entry.drop.to_json(), "count": count,
                "total": entry.count, "firstSeen": now_text(entry.first), "lastSeen": now_text(entry.last), **extra}
        self._keep(line)
        return line

    def _keep(self, line: dict[str, Any]) -> None:
        self._lines.append(line)
        while len(self._lines) > self.history:
            self._lines.popleft()

    def flush(self, at: float, counters: Mapping[str, int] | None = None) -> list[dict[str, Any]]:
        """The window's summaries: a line per kind with occurrences since its last line (`count`: those), and
        per place the drops the kernel counted but did not log (`suppressed`), from `counters` (the table's
        counters by name, None when they could not be read)."""
        out = []
        for entry in list(self._entries.values()):
            if entry.pending:
                out.append(self._line(entry, entry.pending, at, summary=True))
                entry.pending = 0
        if counters is not None:
            first = self._counted is None
            if first:
                self._logged.clear()  # before the first reading: counted in its baseline
            counted = self._counted if self._counted is not None else {}
            self._counted = counted
            for name, value in counters.items():
                place = _counter_place(name)
                if place is None:
                    continue
                # The first reading is the baseline; a counter that appeared since the last one (a new chain)
                # started from zero.
                before = counted.get(name, value if first else 0)
                self._unlogged[name] += (value - before if value >= before else value) - self._logged.pop(name, 0)
                counted[name] = value
                if self._unlogged[name] > 0:
                    self._seq += 1
                    line = {"seq": self._seq, "time": now_text(at), "node": self.node, "place": place.tag,
                            "layer": place.layer, "direction": place.direction, "suppressed": self._unlogged[name],
                            "reason": f"{self._unlogged[name]} drop(s) at {place.tag} not logged (the log's rate "
                                      "limit, or a reader that fell behind); the table's counter counts every one"}
                    self._keep(line)
                    out.append(line)
                    self._unlogged[name] = 0
        self._budget, self._held_back = self.lines_per_window, 0
        return out

    def baseline(self, counters: Mapping[str, int]) -> None:
        """The counters before anything was read: what they counted until now is no drop this log missed."""
        if self._counted is None:
            self._counted = {name: value for name, value in counters.items() if _counter_place(name) is not None}
            self._logged.clear()

    def lines(self, after: int = 0) -> list[dict[str, Any]]:
        return [line for line in self._lines if line["seq"] > after]

    @property
    def seq(self) -> int:
        return self._seq


def _counter_place(counter: str) -> names.Place | None:
    """The drop place a counter counts (a class chain's drop or a fixed place), by its name, else None."""
    if counter.endswith("_drop"):
        return names.place(names.tag(names.DROP_TAG, counter.removesuffix("_drop")))
    return names.place(names.tag("", counter))


# -- counters -------------------------------------------------------------------------------------------------

def read_counters(netns: str | None = None, ctx: libnft.NftContext | None = None) -> dict[str, int]:
    """Every counter of the node's table: name -> packets. The named ones (the fixed drop places') by name; a
    class chain's anonymous counters by the names the renderer gives them in line order (`names.rule_counter`
    for the k-th counted rule, `names.drop_counter` for the one that drops). One terse listing (rules and
    counters, no set elements). Raises OSError when the table cannot be read (missing, or nft refused): unknown,
    never zero."""
    command = f"list table {TABLE}"
    if ctx is not None or libnft.available():
        own = ctx is None
        context = ctx or libnft.NftContext(netns)
        try:
            error, text = context.query(command, terse=True)
        finally:
            if own:
                context.close()
        if error is not None:
            raise OSError(f"cannot read the counters of table {TABLE}: {error.strip().splitlines()[0]}")
    else:
        argv = ["nft", "-j", "-t", *command.split()]
        if netns is not None:
            argv = ["ip", "netns", "exec", netns, *argv]
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
        if proc.returncode != 0:
            raise OSError(f"cannot read the counters of table {TABLE}: {proc.stderr.strip()}")
        text = proc.stdout
    out: dict[str, int] = {}
    counted: dict[str, int] = {}  # per class chain: anonymous counters seen so far
    for item in json.loads(text).get("nftables", []):
        if "counter" in item:
            out[item["counter"]["name"]] = int(item["counter"]["packets"])
            continue
        rule = item.get("rule")
        if rule is None or not names.is_class_chain(rule.get("chain", "")):
            continue
        exprs = [e for e in rule.get("expr", ()) if isinstance(e, dict)]
        for expr in exprs:
            counter = expr.get("counter")
            if isinstance(counter, dict):  # anonymous (a named one is its name, a string)
                if any("drop" in e for e in exprs):
                    out[names.drop_counter(rule["chain"])] = int(counter["packets"])
                else:
                    k = counted.get(rule["chain"], 0)
                    counted[rule["chain"]] = k + 1
                    out[names.rule_counter(rule["chain"], k)] = int(counter["packets"])
    return out


@dataclass(frozen=True, slots=True)
class RuleStat:
    """What one object's rule admitted on this node: new connections, summed over the rule lines it renders
    to (`lines`); `shared`: some of those lines count for other rules too."""

    origin: Origin
    connections: int
    lines: int
    shared: bool

    def to_json(self) -> dict[str, Any]:
        return {"object": self.origin.object, "rule": self.origin.rule, "connections": self.connections,
                "lines": self.lines, "shared": self.shared}


def rule_stats(engine: Engine, table: Table, counters: Mapping[str, int]) -> list[RuleStat]:
    """Per object and rule (NetworkPolicy rules, contracts between pairs, intra-EPG, audit mode): the new
    connections the class chains' lines admitted, from their counters. The lines' rules come from the renderer
    (`NftChain.sources`), their origins from the engine, for the pods each chain serves."""
    members: dict[str, list[str]] = collections.defaultdict(list)
    for s in table.sets:
        if s.map:
            for element in s.elements:
                address, _, verdict = element.partition(" : ")
                if verdict.startswith("goto "):
                    members[verdict[5:]].append(address)
    totals: dict[Origin, list[int]] = {}
    shared: set[Origin] = set()
    cache: dict[tuple[Any, ...], dict[Any, tuple[Origin, ...]]] = {}
    for chain in table.chains:
        kind = chain.name.rsplit("_", 2)[0]
        layer, direction = names.KIND_LAYER[kind]
        origins: dict[int, set[Origin]] = collections.defaultdict(set)
        for address in members.get(chain.name, ()):
            pod = engine.model.pod_by_ip.get(parse_ip(address))
            if pod is None:
                continue
            key = (layer, direction, tuple(id(p) for p in engine.selecting(pod, direction))
                   if layer == "networkPolicy" else engine.model.epg_of(pod))
            found = cache.get(key)
            if found is None:
                found = cache[key] = engine.rule_origins(pod, layer, direction)
            for i, rules in enumerate(chain.sources):
                for rule in rules:
                    origins[i].update(found.get(rule, ()))
        for i, counter in enumerate(chain.counters[:-1]):
            for origin in origins.get(i, ()):
                total = totals.setdefault(origin, [0, 0])
                total[0] += counters.get(counter, 0)
                total[1] += 1
                if len(origins[i]) > 1:
                    shared.add(origin)
    return sorted((RuleStat(o, t[0], t[1], o in shared) for o, t in totals.items()),
                  key=lambda r: (r.origin.object, r.origin.rule))


# -- the agent's loop -----------------------------------------------------------------------------------------

class DropWatcher:
    """Reads the node's drop log, attributes and aggregates what it reads, writes each line (`write`), counts
    drops in `metrics`, raises Events (`event`) and serves the lines and the rule counts for `epgbridge drops`.
    `view()` gives the engine and table in force (None before the first apply): the attribution is that of the
    policy the node enforces. Runs in a daemon thread of its own; bounded in memory and, by the kernel's log
    rate, in work."""

    def __init__(self, node: str, view: Callable[[], tuple[Engine, Table] | None], *, netns: str | None = None,
                 metrics: Any = None, write: Callable[[str], None] | None = None,
                 event: Callable[[Drop, dict[str, Any]], None] | None = None, flush_every: float = 10.0,
                 group: int = names.LOG_GROUP, series: int = 1000) -> None:
        self.node, self.netns, self.group = node, netns, group
        self._view = view
        self.metrics = metrics
        self._write = write or (lambda text: log.info("%s", text))
        self._event = event
        self.flush_every = flush_every
        self.log = DropLog(node)
        self.error: str | None = None  # why drops are not being read (the group could not be bound)
        self._series_cap = series
        self._series: set[tuple[str, ...]] = set()
        self._stats: list[RuleStat] = []
        self._stats_at: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ctx: libnft.NftContext | None = None
        if metrics is not None:
            metrics.describe("drops_total", "counter", "packets the node dropped (verdict=drop) or passed as a "
                             "would-drop (audit mode), attributed: by layer, the deciding pod's namespace and "
                             "object (a drop that names several objects counts for each)")
            metrics.describe("drops_unattributed_total", "counter", "logged drops the agent could not attribute "
                             "to pods (conntrack, unknown pods, the holding table, other protocols)")
            metrics.describe("drops_not_logged_total", "counter", "drops the table counted but the log's rate "
                             "limit (or a reader that fell behind) left unlogged")
            metrics.describe("drop_log_lost_total", "counter", "NFLOG messages lost by the reader (socket "
                             "buffer overflow)")
            metrics.describe("rule_connections_total", "counter", "new connections admitted per NetworkPolicy "
                             "rule and contract on this node (from the table's rule counters; a line shared by "
                             "several rules counts for each)")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"drops {self.node}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            reader = NflogReader(self.group, netns=self.netns)
        except OSError as exc:
            self.error = f"cannot read the drop log (NFLOG group {self.group}): {exc.strerror or exc}"
            log.error("node %s: %s; drops are counted in the table but not attributed", self.node, self.error)
            return
        with reader:
            counters = self._counters()
            if counters is not None:
                with self._lock:
                    self.log.baseline(counters)
            next_flush = time.monotonic() + self.flush_every
            lost = 0
            while not self._stop.is_set():
                for packet in reader.read(timeout=0.2):
                    self.handle(packet)
                if reader.lost != lost:
                    if self.metrics is not None:
                        self.metrics.inc("drop_log_lost_total", reader.lost - lost)
                    lost = reader.lost
                if time.monotonic() >= next_flush:
                    self.flush()
                    next_flush = time.monotonic() + self.flush_every

    def handle(self, packet: LoggedPacket) -> None:
        view = self._view()
        drop = attribute(view[0] if view is not None else None, self.node, packet)
        if drop is None:
            return
        with self._lock:
            line = self.log.add(drop, packet.at)
        self._count(drop)
        if line is not None:
            self._write(json.dumps(line))
            if self._event is not None and drop.pod is not None:
                self._event(drop, line)

    def _count(self, drop: Drop) -> None:
        if self.metrics is None:
            return
        if drop.layer is None or not drop.objects:
            self.metrics.inc("drops_unattributed_total", place=drop.place.split(":", 1)[-1].split(":")[0])
            return
        verdict = "wouldDrop" if drop.audit else "drop"
        for obj in drop.objects:
            labels = (drop.layer, drop.namespace, obj, verdict)
            if labels not in self._series and len(self._series) >= self._series_cap:
                labels = (drop.layer, "(other)", "(other)", verdict)  # bounded cardinality
            self._series.add(labels)
            self.metrics.inc("drops_total", layer=labels[0], namespace=labels[1], object=labels[2],
                             verdict=labels[3])

    def flush(self) -> None:
        """The window's summaries, and the counters read once: suppressed drops, rule counts."""
        counters = self._counters()
        with self._lock:
            lines = self.log.flush(time.time(), counters)
        for line in lines:
            self._write(json.dumps(line))
            if self.metrics is not None and "suppressed" in line:
                self.metrics.inc("drops_not_logged_total", line["suppressed"])
        view = self._view()
        if counters is not None and view is not None:
            stats = rule_stats(view[0], view[1], counters)
            with self._lock:
                self._stats, self._stats_at = stats, now_text()
            if self.metrics is not None:
                for stat in stats[:self._series_cap]:
                    self.metrics.set("rule_connections_total", float(stat.connections), object=stat.origin.object,
                                     rule=stat.origin.rule)

    def _counters(self) -> dict[str, int] | None:
        try:
            if self._ctx is None and libnft.available():
                self._ctx = libnft.NftContext(self.netns)
            return read_counters(self.netns, self._ctx)
        except OSError as exc:
            log.debug("node %s: %s", self.node, exc)
            return None

    def lines(self, after: int = 0, **filters: str | None) -> list[dict[str, Any]]:
        with self._lock:
            found = self.log.lines(after)
        return [line for line in found if matches(line, **filters)]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"node": self.node, "time": self._stats_at, "rules": [s.to_json() for s in self._stats]}

    def status(self) -> dict[str, Any]:
        return {"node": self.node, "seq": self.log.seq, "error": self.error}


def matches(line: Mapping[str, Any], *, namespace: str | None = None, pod: str | None = None,
            layer: str | None = None, verdict: str | None = None) -> bool:
    """Whether a drop line passes `epgbridge drops`' filters (a summary of suppressed drops names no pod: it
    passes only the layer filter)."""
    ends = [e for e in (line.get("from"), line.get("to"), line.get("pod")) if isinstance(e, str)]
    if namespace is not None and not any(e.partition("/")[0] == namespace for e in ends if "/" in e):
        return False
    if pod is not None and pod not in ends and not any(e.partition("/")[2] == pod for e in ends if "/" in e):
        return False
    if layer is not None and line.get("layer") != layer:
        return False
    return verdict is None or line.get("verdict", "drop") == verdict


def describe(line: Mapping[str, Any]) -> str:
    """One drop line for people: `epgbridge drops` without -o json."""
    if "suppressed" in line:
        return f"{line['time']}  {line['node']}: {line['reason']}"
    what = "WOULD DROP (audit mode)" if line.get("verdict") == "wouldDrop" else "DROPPED"
    port = f"{line['port']}/{line['protocol']}" if line.get("port") is not None else str(line.get("protocol"))
    layer = LAYER_NAMES.get(line.get("layer") or "", "the node")
    count = f" (x{line['count']}, {line['total']} in all)" if line.get("summary") else ""
    objects = ", ".join(line.get("objects") or []) or "no object"
    text = (f"{line['time']}  {what} {port} {line['from']} -> {line['to']} on {line['node']}{count}\n"
            f"    by the {layer}" + (f" ({line['direction']} of {line['pod']})" if line.get("pod") else "")
            + f": {objects}\n    {line['reason']}")
    if not line.get("engineAgrees", True):
        text += "\n    (the engine disagrees with the table in force: see the reason)"
    return text


def observed_drops(engine: Engine, node_packets: Iterable[tuple[str, LoggedPacket]]) -> list[Drop]:
    """The lab's attribution: each (node, logged packet) as a Drop (packets that are no drop of ours left out)."""
    out = []
    for node, packet in node_packets:
        drop = attribute(engine, node, packet)
        if drop is not None:
            out.append(drop)
    return out


__all__ = ["LAYERS", "Drop", "DropLog", "DropWatcher", "RuleStat", "attribute", "describe", "matches",
           "observed_drops", "read_counters", "rule_stats"]
