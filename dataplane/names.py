"""Every name in a node's nftables table, spelled once (the renderer, the templates, the updates and the table
model all read them from here).

Fixed names for the table, the base chains and the per-family sets and maps; per-object names derived from
the object's definition, never numbered and parsed back: an address group's set from its definition (the same
selector is the same set on every node and in every update), a service set and a class chain from their
content. Derived names are a short digest, so no label, name or annotation value can reach a script.
"""

from __future__ import annotations

import hashlib

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
