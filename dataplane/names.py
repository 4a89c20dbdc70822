"""Every name in a node's nftables table, spelled once (the renderer, the templates, the updates and the table
model all read them from here).

Fixed names for the table, the base chains and the per-family sets and maps; per-object names derived from
the object's definition, never numbered and parsed back: an address group's set from its definition (the same
selector is the same set on every node and in every update), a service set and a class chain from their
content. Derived names are a short digest, so no label, name or annotation value can reach a script.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from contracts.ir import AddressGroup, NamedPort
from contracts.sets import ServiceSet

TABLE_FAMILY = "inet"
TABLE_NAME = "epgbridge"
TABLE = f"{TABLE_FAMILY} {TABLE_NAME}"

FORWARD = "forward"
INPUT = "input"

# (family number, nft address keyword, nft address type, label)
FAMILIES = ((4, "ip", "ipv4_addr", "IPv4"), (6, "ip6", "ipv6_addr", "IPv6"))

# The class kinds: one verdict map each (local pod -> its class's chain), per family. The peer is the source
# for ingress and the destination for egress; the destination of a connection is always `daddr`.
KINDS = ("epg_in", "np_in", "epg_out", "np_out")
PEER = {"epg_in": "saddr", "np_in": "saddr", "epg_out": "daddr", "np_out": "daddr"}
DIGEST = 12  # hex digits of a derived name: 48 bits; the renderer refuses a collision rather than share a set


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=DIGEST // 2).hexdigest()


def local(v: int) -> str:
    """The node's own pods."""
    return f"local_v{v}"


def pod_cidrs(v: int) -> str:
    """The node's pod address blocks: an address there that is not in `local` is a pod the agent does not know."""
    return f"pod_cidrs_v{v}"


def epg_isolated(v: int) -> str:
    """Local pods an invalid annotation isolates."""
    return f"epg_isolated_v{v}"


def epg_pods(v: int) -> str:
    """Every pod address of the cluster (the EPG layer classifies them by annotation)."""
    return f"epg_pods_v{v}"


def epg_subnets(v: int) -> str:
    """The EPGs' subnets: addresses the EPG layer classifies although they are no pod's."""
    return f"epg_subnets_v{v}"


def verdict_map(kind: str, v: int) -> str:
    return f"{kind}_v{v}"


def direction_chain(direction: str, v: int) -> str:
    """`ingress_v4` / `egress_v4`: a local pod's traffic in one direction, both layers."""
    return f"{direction}_v{v}"


def layer_chain(direction: str, layer: str, v: int) -> str:
    """`ingress_epg_v4`, `ingress_np_v4`, ...: one layer of one direction (looks the local pod up in its map)."""
    return f"{direction}_{layer}_v{v}"


def group(g: AddressGroup, v: int) -> str:
    return f"g_{_digest(g.key)}_v{v}"


def services(s: ServiceSet) -> str:
    return f"s_{_digest(repr(s))}"


def named_port(n: NamedPort, v: int) -> str:
    return f"n_{_digest(f'{n.name}/{n.protocol}')}_v{v}"


def class_chain(kind: str, lines: tuple[str, ...], v: int) -> str:
    """A class's chain, named by its rules: equal classes are one chain, and a chain never changes in place."""
    return f"{kind}_{_digest(chr(10).join(lines))}_v{v}"


# -- drops: where the table drops, each place's tag and counter ------------------------------------------------
#
# Every drop is logged to the NFLOG group below, rate-limited in the kernel (LOG_RATE with a burst of LOG_BURST
# per rule: a flood costs the reader a bounded stream), behind a named counter that counts every packet of the
# place whatever the log rate. The log prefix is a tag generated here (never a user string): "epgb:" and the
# place, a class chain's name or a fixed place. `place()` reads a tag back.

LOG_GROUP = 2718  # the NFLOG group of every node's drops (one reader per network namespace: the agent)
LOG_RATE = "100/second"
LOG_BURST = 1000  # packets: a burst of probes in the lab is logged whole
TAG_PREFIX = "epgb:"
DROP_TAG, AUDIT_TAG = "d", "w"  # a class chain's drop; a class chain's would-drop (audit rules: logged, passed)

# The layer and direction of each class kind, as `explain -o json` names layers.
KIND_LAYER = {"epg_in": ("epg", "ingress"), "np_in": ("networkPolicy", "ingress"),
              "epg_out": ("epg", "egress"), "np_out": ("networkPolicy", "egress")}
# Fixed places, per family: (layer, direction, what happened). "none_<kind>": the layer allows the pod nothing
# (its verdict map sends it to that chain); "unmapped_<kind>": a local pod the layer's map does not know.
FIXED_PLACES: dict[str, tuple[str | None, str, str]] = {
    "invalid_in": (None, "ingress", "conntrack marked the packet invalid"),
    "invalid_out": (None, "egress", "conntrack marked the packet invalid"),
    "isolated_in": ("epg", "ingress", "the destination's EPG annotation is invalid: it is isolated"),
    "isolated_out": ("epg", "egress", "the source's EPG annotation is invalid: it is isolated"),
    "unmapped_epg_in": ("epg", "ingress", "the EPG layer's map does not know the local pod"),
    "unmapped_epg_out": ("epg", "egress", "the EPG layer's map does not know the local pod"),
    **{f"none_{kind}": (*KIND_LAYER[kind], "the layer allows the local pod nothing") for kind in KINDS},
    "unknown_in": (None, "ingress", "an address of the node's pod blocks that no known pod has"),
    "unknown_out": (None, "egress", "an address of the node's pod blocks that no known pod has"),
}
HOLD_PLACE = "hold"  # the holding table at agent start: new forwarded connections wait for the first table


def fixed_place(place: str, v: int) -> str:
    """A fixed place's name in the table (its counter and its tag's tail), e.g. `isolated_in_v4`."""
    return f"{place}_v{v}"


def nothing_chain(kind: str, v: int) -> str:
    """The chain a verdict map sends a local pod to when its layer allows it nothing: logs, counts, drops."""
    return f"{kind}_none_v{v}"


def rule_counter(chain: str, line: int) -> str:
    """The counter of line `line` (from 0) of a class chain: new connections that line admitted."""
    return f"{chain}_r{line}"


def drop_counter(chain: str) -> str:
    return f"{chain}_drop"


def tag(kind: str, name: str) -> str:
    """A log prefix: `epgb:d:<class chain>`, `epgb:w:<class chain>` or `epgb:<fixed place>` (kind "")."""
    return f"{TAG_PREFIX}{kind}:{name}" if kind else f"{TAG_PREFIX}{name}"


_CHAIN = re.compile(r"(epg_in|np_in|epg_out|np_out)_[0-9a-f]+_v([46])")
_FIXED = re.compile(r"([a-z_]+)_v([46])")


@dataclass(frozen=True, slots=True)
class Place:
    """Where a logged packet was dropped (or, `audit`, passed as a would-drop), read back from its tag."""

    tag: str
    layer: str | None  # "epg" | "networkPolicy"; None for conntrack, unknown pods and the holding table
    direction: str | None  # "ingress" (the destination is the node's pod) | "egress" (the source is)
    chain: str | None = None  # the class chain, for class drops and would-drops
    what: str = ""  # a fixed place: what happened, in words
    audit: bool = False
    family: int | None = None

    @property
    def counter(self) -> str:
        """The counter (by its name: see drops.read_counters) that counts every packet of this place."""
        if self.chain is not None:
            return drop_counter(self.chain)
        return self.tag.removeprefix(TAG_PREFIX)


def place(prefix: str) -> Place | None:
    """The place a log prefix names; None for a prefix that is not one of ours."""
    if not prefix.startswith(TAG_PREFIX):
        return None
    rest = prefix[len(TAG_PREFIX):]
    kind, sep, chain = rest.partition(":")
    if sep:
        m = _CHAIN.fullmatch(chain)
        if kind not in (DROP_TAG, AUDIT_TAG) or m is None:
            return None
        layer, direction = KIND_LAYER[m.group(1)]
        return Place(prefix, layer, direction, chain, audit=kind == AUDIT_TAG, family=int(m.group(2)))
    if rest == HOLD_PLACE:
        return Place(prefix, None, None, what="the agent has not applied the node's first table yet")
    m = _FIXED.fullmatch(rest)
    if m is None or m.group(1) not in FIXED_PLACES:
        return None
    fixed_layer, fixed_direction, what = FIXED_PLACES[m.group(1)]
    return Place(prefix, fixed_layer, fixed_direction, what=what, family=int(m.group(2)))


def is_class_chain(name: str) -> bool:
    return _CHAIN.fullmatch(name) is not None


def counter_line(chain_counter: str) -> tuple[str, int] | None:
    """A rule counter's chain and line, or None for any other counter."""
    chain, sep, line = chain_counter.rpartition("_r")
    return (chain, int(line)) if sep and line.isdigit() and _CHAIN.fullmatch(chain) else None
