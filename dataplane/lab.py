"""The netns lab: nodes and pods as real network namespaces, so rulesets meet real packets.

Topology (Calico-style routed pod networking):

    pod ns (eth0: POD_IP/32 [and POD_IP6/128], default via 169.254.1.1 [and via fe80::1])
      | veth, IPv4: static neighbour for the gateway on the pod side and for POD_IP on the node side;
      | IPv6: neighbour discovery both ways, as on a real node (the node's table must let it through)
    node ns (podN: one per local pod, route POD_IP/32 dev podN, fe80::1/64; fabric0: 198.18.x.y/16 and
      | fd00:eb::x/64; forwarding on; route REMOTE_POD/32 via OWNING_NODE, EXTERNAL/32 via that external's
      | fabric address, the same per family)
    fabric ns (br0: a plain bridge joining every node and external)
      | veth
    external ns (eth0: EXTERNAL_IP/32 or /128 and its fabric address, route POD_IP via the pod's node)

Pod-to-pod traffic, on one node or across nodes, is routed through the node namespaces' forward path; traffic
from a node to its own pods leaves through the node's output path. A pod has one address per family (a
dual-stack pod two, each routed); an external host has one. Address plan:

    198.18.0.0/16    fabric (RFC 2544 benchmarking range: never routed, never a pod CIDR).
                     Node i is 198.18.0.0 + 1 + i, external k is 198.18.128.0 + 1 + k.
    fd00:eb::/64     the IPv6 fabric (a unique-local prefix, only in labs with an IPv6 address): node i is
                     fd00:eb:: + 1 + i, external k is fd00:eb::1:0:0 + 1 + k.
    169.254.1.1      every pod's IPv4 default gateway (link-local, as Calico), answered by a static neighbour.
    fe80::1          every pod's IPv6 default gateway: the node's side of the pod's veth holds it.
    02:eb:TT:xx:xx:xx  locally administered MACs: TT=01 pod eth0, 02 node-side pod veth, 03 node fabric0,
                     04 external eth0. Fabric neighbours are static, and so are the IPv4 ones of pods: no ARP,
                     no warm-up.

Pod and external IPs are the caller's and may not fall in 198.18.0.0/16, 169.254.0.0/16, 127.0.0.0/8,
fd00:eb::/64, fe80::/10 or ::1, nor be multicast, unspecified or IPv4-mapped.
Namespace names are `<prefix>fabric`, `<prefix>n<i>-<node>`, `<prefix>p<j>-<namespace>.<pod>` and
`<prefix>x<k>-<external>`; the prefix (`epgb-<6 hex>-` unless given) is unique per run. Every link is created
directly inside lab namespaces (`ip link add ... netns`), so the host's namespace never holds a lab interface,
route or socket, and deleting the namespaces removes everything.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from types import FrameType, TracebackType

from dataplane.netns import (
    LabError,
    delete_host_links,
    delete_netns,
    interfaces_running,
    ip_batch,
    ip_batches,
    list_netns,
    open_netns,
    require_tools,
    run_in_netns,
    write_sysctl,
)
from dataplane.probe import PROTOCOLS, ProbeJob, ProbeServers, run_probes

__all__ = ["Lab", "LabError", "LabExternal", "LabPod", "Probe", "cleanup_leftovers"]

FABRIC = ipaddress.IPv4Network("198.18.0.0/16")
FABRIC6 = ipaddress.IPv6Network("fd00:eb::/64")
POD_GATEWAY = "169.254.1.1"
POD_GATEWAY6 = "fe80::1"
_RESERVED = (FABRIC, ipaddress.IPv4Network("169.254.0.0/16"), ipaddress.IPv4Network("127.0.0.0/8"),
             FABRIC6, ipaddress.IPv6Network("fe80::/10"), ipaddress.IPv6Network("::1/128"))
_NODE_BASE = int(FABRIC.network_address) + 1
_EXTERNAL_BASE = int(FABRIC.network_address) + (1 << 15) + 1
_NODE_BASE6 = int(FABRIC6.network_address) + 1
_EXTERNAL_BASE6 = int(FABRIC6.network_address) + (1 << 32) + 1
_PREFIX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,23}$")
_IFINDEX_BASE = 1000
_NODE_SOURCE = "node:"
_EXTERNAL_SOURCE = "external:"

Progress = Callable[[str], None]
Port = tuple[int, str]


@dataclass(frozen=True)
class LabPod:
    key: str  # "namespace/name"
    ip: str  # the pod's primary address from the snapshot (IPv4 or IPv6)
    node: str
    ports: tuple[Port, ...] = ()  # listening ports: (port, "TCP" | "UDP" | "SCTP")
    ips: tuple[str, ...] = ()  # every address, `ip` first, at most one per family (default: `ip` alone)

    @property
    def addresses(self) -> tuple[str, ...]:
        return self.ips or (self.ip,)


@dataclass(frozen=True)
class LabExternal:
    """A host outside the cluster, attached to the fabric. No ports: it listens on every pod port."""

    name: str
    ip: str
    ports: tuple[Port, ...] = ()


@dataclass(frozen=True)
class Probe:
    src: str  # a pod key, or "node:NAME" / "external:NAME" to send from a node or an external host
    dst_ip: str
    port: int
    protocol: str  # "TCP" | "UDP" | "SCTP"


@dataclass(frozen=True)
class _Veth:
    """A veth pair: each end's namespace, interface name and MAC (None: let the kernel pick)."""

    netns: str
    ifname: str
    mac: str | None
    peer_netns: str
    peer_ifname: str
    peer_mac: str


@dataclass
class _Running:
    fds: dict[str, int] = field(default_factory=dict)  # namespace name -> open descriptor
    servers: ProbeServers | None = None


def _mac(kind: int, index: int) -> str:
    return f"02:eb:{kind:02x}:{(index >> 16) & 0xFF:02x}:{(index >> 8) & 0xFF:02x}:{index & 0xFF:02x}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text.replace("/", "."))[:40]


def _ports(ports: Iterable[Sequence[object]], owner: str) -> tuple[Port, ...]:
    checked = set()
    for entry in ports:
        port, protocol = entry
        protocol = str(protocol).upper()
        if not isinstance(port, int) or not 1 <= port <= 65535 or protocol not in PROTOCOLS:
            raise LabError(f"{owner}: bad port {port}/{protocol} (want 1-65535 and TCP, UDP or SCTP)")
        checked.add((port, protocol))
    return tuple(sorted(checked))


def _address(ip: str, owner: str) -> str:
    try:
        if not isinstance(ip, str) or "%" in ip:
            raise ValueError(ip)
        address = ipaddress.ip_address(ip)
    except ValueError:
        raise LabError(f"{owner}: {ip!r} is not an IP address") from None
    mapped = isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None
    if any(address in net for net in _RESERVED) or address.is_multicast or address.is_unspecified or mapped:
        raise LabError(f"{owner}: address {ip} is reserved by the lab ({FABRIC}, {FABRIC6}, link-local, loopback, "
                       "multicast, unspecified, IPv4-mapped)")
    return str(address)


def _family(ip: str) -> int:
    return ipaddress.ip_address(ip).version


class Lab:
    """Nodes, pods and external hosts as network namespaces; `probe` sends real packets between them.

    Use as a context manager: the namespaces are removed on exit, also when the body raises or the process
    gets SIGINT or SIGTERM. `up` (or `attach`, for a lab another process built with the same prefix and the
    same pods) starts the probe servers; concurrent `probe` calls on one lab run one after the other.
    """

    def __init__(
        self,
        pods: Iterable[LabPod],
        *,
        externals: Iterable[LabExternal | tuple[str, str] | tuple[str, str, Sequence[Port]]] = (),
        nodes: Iterable[str] = (),
        prefix: str | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.prefix = prefix if prefix is not None else f"epgb-{secrets.token_hex(3)}-"
        if not _PREFIX_RE.match(self.prefix):
            raise LabError(
                f"bad lab prefix {self.prefix!r}: want 1-24 of [A-Za-z0-9._-], not starting with - or ."
            )
        self._progress = progress
        self.pods: dict[str, LabPod] = {}
        owners: dict[str, str] = {}
        for pod in pods:
            if pod.key in self.pods:
                raise LabError(f"pod {pod.key} appears twice")
            if pod.ips and pod.ips[0] != pod.ip:
                raise LabError(f"pod {pod.key}: its addresses {', '.join(pod.ips)} do not start with {pod.ip}")
            ips = tuple(_address(a, f"pod {pod.key}") for a in pod.addresses)
            if len({_family(a) for a in ips}) != len(ips):
                raise LabError(f"pod {pod.key}: more than one address of a family ({', '.join(ips)})")
            for ip in ips:
                if ip in owners:
                    raise LabError(f"pod {pod.key}: address {ip} is also used by {owners[ip]}")
                owners[ip] = f"pod {pod.key}"
            self.pods[pod.key] = LabPod(pod.key, ips[0], pod.node, _ports(pod.ports, f"pod {pod.key}"), ips)
        every_pod_port = tuple(sorted({port for pod in self.pods.values() for port in pod.ports}))
        self.externals: dict[str, LabExternal] = {}
        for entry in externals:
            external = entry if isinstance(entry, LabExternal) else LabExternal(*entry)
            owner = f"external {external.name}"
            if external.name in self.externals:
                raise LabError(f"{owner} appears twice")
            ip = _address(external.ip, owner)
            if ip in owners:
                raise LabError(f"{owner}: address {ip} is also used by {owners[ip]}")
            owners[ip] = owner
            ports = _ports(external.ports, owner) or every_pod_port
            self.externals[external.name] = LabExternal(external.name, ip, ports)
        self.nodes: list[str] = sorted({pod.node for pod in self.pods.values()} | set(nodes))
        # IPv6 on the fabric and the nodes only where some host has an IPv6 address: IPv4 labs stay as they were.
        self.ipv6 = any(_family(ip) == 6 for ip in owners)

        self._node_index = {node: i for i, node in enumerate(self.nodes)}
        self._pod_index = {key: j for j, key in enumerate(self.pods)}
        self._external_index = {name: k for k, name in enumerate(self.externals)}
        self.fabric_netns = f"{self.prefix}fabric"
        self._node_ns = {n: f"{self.prefix}n{i}-{_slug(n)}" for n, i in self._node_index.items()}
        self._pod_ns = {p: f"{self.prefix}p{j}-{_slug(p)}" for p, j in self._pod_index.items()}
        self._external_ns = {x: f"{self.prefix}x{k}-{_slug(x)}" for x, k in self._external_index.items()}
        self._running: _Running | None = None
        self._probing = threading.Lock()
        self._old_sigterm: object = None

    # -- names and addresses -------------------------------------------------------------------------------

    def node_netns(self, node: str) -> str:
        if node not in self._node_ns:
            raise LabError(f"no node {node} in this lab (nodes: {', '.join(self.nodes) or 'none'})")
        return self._node_ns[node]

    def pod_netns(self, key: str) -> str:
        if key not in self._pod_ns:
            raise LabError(f"no pod {key} in this lab")
        return self._pod_ns[key]

    def external_netns(self, name: str) -> str:
        if name not in self._external_ns:
            raise LabError(f"no external host {name} in this lab")
        return self._external_ns[name]

    def node_ip(self, node: str, family: int = 4) -> str:
        """The node's fabric address of a family: the source of traffic the node itself sends to its pods."""
        self.node_netns(node)
        if family == 6:
            return str(ipaddress.IPv6Address(_NODE_BASE6 + self._node_index[node]))
        return str(ipaddress.IPv4Address(_NODE_BASE + self._node_index[node]))

    def _external_fabric_ip(self, name: str) -> str:
        k = self._external_index[name]
        if _family(self.externals[name].ip) == 6:
            return str(ipaddress.IPv6Address(_EXTERNAL_BASE6 + k))
        return str(ipaddress.IPv4Address(_EXTERNAL_BASE + k))

    def namespaces(self) -> list[str]:
        return [
            self.fabric_netns,
            *self._node_ns.values(),
            *self._pod_ns.values(),
            *self._external_ns.values(),
        ]

    # -- lifecycle -----------------------------------------------------------------------------------------

    def __enter__(self) -> Lab:
        if threading.current_thread() is threading.main_thread():
            # SIGTERM would otherwise end the process without unwinding, leaving the namespaces behind.
            self._old_sigterm = signal.getsignal(signal.SIGTERM)
            if self._old_sigterm == signal.SIG_DFL:
                signal.signal(signal.SIGTERM, _raise_on_sigterm)
        try:
            self.up()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.down()
        finally:
            if self._old_sigterm == signal.SIG_DFL and signal.getsignal(signal.SIGTERM) is _raise_on_sigterm:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def up(self) -> None:
        """Create every namespace, link, address and route, then start the probe servers."""
        if self._running is not None:
            raise LabError(f"lab {self.prefix} is already up")
        require_tools("ip")
        started = time.monotonic()
        names = self.namespaces()
        taken = [name for name in list_netns() if name.startswith(self.prefix)]
        if taken:
            # Not ours to tear down: another lab lives under this prefix.
            raise LabError(f"lab prefix {self.prefix} is in use ({len(taken)} namespaces, e.g. {taken[0]})")
        self._report(
            f"lab {self.prefix}: {len(self.nodes)} nodes, {len(self.pods)} pods, {len(self.externals)} "
            f"external hosts: creating {len(names)} network namespaces"
        )
        try:
            ip_batch([f"netns add {name}" for name in names])
            ip_batch(self._veth_commands())
            per_netns = self._netns_commands()
            step = max(1, len(per_netns) // 5)
            for configured, _ in enumerate(ip_batches(per_netns), start=1):
                if configured % step == 0 or configured == len(per_netns):
                    self._report(f"lab {self.prefix}: configured {configured}/{len(per_netns)} namespaces")
            self._start(enable_forwarding=True)
        except BaseException:
            self.down()
            raise
        self._report(f"lab {self.prefix}: up in {time.monotonic() - started:.2f}s")

    def attach(self) -> None:
        """Start the probe servers in a lab that is already built (e.g. by `up` in another process)."""
        if self._running is not None:
            raise LabError(f"lab {self.prefix} is already up")
        missing = sorted(set(self.namespaces()) - set(list_netns()))
        if missing:
            raise LabError(f"lab {self.prefix} is not built: missing namespaces {', '.join(missing[:5])}")
        try:
            self._start(enable_forwarding=False)
        except BaseException:
            self._stop()
            raise

    def down(self) -> None:
        """Stop the servers and delete every namespace of this lab (by prefix). Safe to call at any time."""
        with _signals_deferred():
            self._stop()
            leftovers = [name for name in list_netns() if name.startswith(self.prefix)]
            delete_netns(leftovers)
            remaining = [name for name in list_netns() if name.startswith(self.prefix)]
            if remaining:
                self._report(f"lab {self.prefix}: could not delete {', '.join(remaining)}")
            elif leftovers:
                self._report(f"lab {self.prefix}: removed {len(leftovers)} namespaces")

    def _start(self, *, enable_forwarding: bool) -> None:
        running = self._running = _Running()
        for name in self.namespaces():
            running.fds[name] = open_netns(name)
        if enable_forwarding:
            forwarding = {"net/ipv4/ip_forward": "1"}
            if self.ipv6:
                forwarding["net/ipv6/conf/all/forwarding"] = "1"
            for node in self.nodes:
                write_sysctl(running.fds[self._node_ns[node]], forwarding)
        self._wait_running(running.fds)
        servers = running.servers = ProbeServers()
        listening = 0
        for key, pod in self.pods.items():
            for ip in pod.addresses:
                listening += servers.listen(running.fds[self._pod_ns[key]], ip, pod.ports)
        for name, external in self.externals.items():
            listening += servers.listen(running.fds[self._external_ns[name]], external.ip, external.ports)
        servers.start()
        self._report(f"lab {self.prefix}: probe servers listening on {listening} ports")

    def detach(self) -> None:
        """Stop this process's probe servers and close its namespace handles; the lab itself stays up (for
        `lab up` / `lab probe`, which run in separate processes; `down` removes it)."""
        self._stop()

    def _stop(self) -> None:
        running, self._running = self._running, None
        if running is None:
            return
        if running.servers is not None:
            running.servers.stop()
        for fd in running.fds.values():
            _close(fd)

    # -- topology as iproute2 commands ---------------------------------------------------------------------

    def _veth_pairs(self) -> list[_Veth]:
        pairs = []
        for node, i in self._node_index.items():
            pairs.append(
                _Veth(self.fabric_netns, f"node{i}", None, self._node_ns[node], "fabric0", _mac(3, i))
            )
        for key, j in self._pod_index.items():
            node_ns = self._node_ns[self.pods[key].node]
            pairs.append(_Veth(self._pod_ns[key], "eth0", _mac(1, j), node_ns, f"pod{j}", _mac(2, j)))
        for name, k in self._external_index.items():
            pairs.append(
                _Veth(self.fabric_netns, f"ext{k}", None, self._external_ns[name], "eth0", _mac(4, k))
            )
        return pairs

    def _veth_commands(self) -> list[str]:
        """Create every veth pair with both ends already inside lab namespaces.

        Both ends get explicit, distinct interface indexes: the kernel handles a veth's carrier change at
        once only when the interface's index differs from its peer's (which lives in another namespace and
        would otherwise often have the same small index); if not, it may wait up to a second.
        """
        commands = []
        for n, veth in enumerate(self._veth_pairs()):
            address = f"address {veth.mac} " if veth.mac else ""
            commands.append(
                f"link add name {veth.ifname} index {_IFINDEX_BASE + 2 * n} netns {veth.netns} {address}"
                f"type veth peer name {veth.peer_ifname} index {_IFINDEX_BASE + 2 * n + 1} "
                f"netns {veth.peer_netns} address {veth.peer_mac}"
            )
        return commands

    def _wait_running(self, fds: dict[str, int], timeout: float = 5.0) -> None:
        """Return once every lab interface is operationally up (see netns.interfaces_running)."""
        wanted: dict[str, set[str]] = {self.fabric_netns: {"br0"}} if self._veth_pairs() else {}
        for veth in self._veth_pairs():
            wanted.setdefault(veth.netns, set()).add(veth.ifname)
            wanted.setdefault(veth.peer_netns, set()).add(veth.peer_ifname)
        deadline = time.monotonic() + timeout
        while True:
            for netns in list(wanted):
                wanted[netns] -= set(interfaces_running(fds[netns], wanted[netns]))
                if not wanted[netns]:
                    del wanted[netns]
            if not wanted:
                return
            if time.monotonic() > deadline:
                down = ", ".join(f"{ns}:{','.join(sorted(ifs))}" for ns, ifs in sorted(wanted.items()))
                raise LabError(f"lab {self.prefix}: interfaces did not come up within {timeout:.0f}s: {down}")
            time.sleep(0.005)

    def _netns_commands(self) -> dict[str, list[str]]:
        node_ips = {node: self.node_ip(node) for node in self.nodes}
        node_ips6 = {node: self.node_ip(node, 6) for node in self.nodes} if self.ipv6 else {}
        external_fabric_ips = {name: self._external_fabric_ip(name) for name in self.externals}
        fabric_neighbours = [(ip, _mac(3, self._node_index[node])) for node, ip in (*node_ips.items(),
                                                                                  *node_ips6.items())] + [
            (ip, _mac(4, self._external_index[name])) for name, ip in external_fabric_ips.items()
        ]
        prefixlen = FABRIC.prefixlen

        def via(node: str, ip: str) -> str:
            """The node's fabric address of the family of `ip`: the next hop towards the node's pods."""
            return node_ips6[node] if _family(ip) == 6 else node_ips[node]

        fabric = ["link set lo up", "link add br0 type bridge", "link set br0 up"]
        ports = [f"node{i}" for i in self._node_index.values()] + [
            f"ext{k}" for k in self._external_index.values()
        ]
        for port in ports:
            fabric += [f"link set {port} master br0", f"link set {port} up"]
        commands = {self.fabric_netns: fabric}

        for node in self.nodes:
            own = {node_ips[node], node_ips6.get(node)}
            lines = ["link set lo up", f"addr add {node_ips[node]}/{prefixlen} dev fabric0"]
            if self.ipv6:
                lines.append(f"addr add {node_ips6[node]}/{FABRIC6.prefixlen} dev fabric0 nodad")
            lines.append("link set fabric0 up")
            lines += [
                f"neigh replace {ip} lladdr {mac} dev fabric0 nud permanent"
                for ip, mac in fabric_neighbours
                if ip not in own
            ]
            for key, pod in self.pods.items():
                j = self._pod_index[key]
                if pod.node == node:
                    if self.ipv6:  # the pods' IPv6 gateway (neighbour discovery answers for it)
                        lines.append(f"addr add {POD_GATEWAY6}/64 dev pod{j} nodad")
                    lines.append(f"link set pod{j} up")
                    for ip in pod.addresses:
                        if _family(ip) == 4:
                            lines += [f"route add {ip}/32 dev pod{j} scope link",
                                      f"neigh replace {ip} lladdr {_mac(1, j)} dev pod{j} nud permanent"]
                        else:
                            lines.append(f"route add {ip}/128 dev pod{j}")
                else:
                    lines += [f"route add {ip}/{_host_bits(ip)} via {via(pod.node, ip)} dev fabric0"
                              for ip in pod.addresses]
            for name, external in self.externals.items():
                lines.append(f"route add {external.ip}/{_host_bits(external.ip)} via {external_fabric_ips[name]} "
                             "dev fabric0")
            commands[self._node_ns[node]] = lines

        for key, pod in self.pods.items():
            j = self._pod_index[key]
            lines = ["link set lo up"]
            lines += [f"addr add {ip}/{_host_bits(ip)} dev eth0" + (" nodad" if _family(ip) == 6 else "")
                      for ip in pod.addresses]
            lines.append("link set eth0 up")
            if any(_family(ip) == 4 for ip in pod.addresses):
                lines += [f"neigh replace {POD_GATEWAY} lladdr {_mac(2, j)} dev eth0 nud permanent",
                          f"route add {POD_GATEWAY} dev eth0 scope link",
                          f"route add default via {POD_GATEWAY} dev eth0"]
            if any(_family(ip) == 6 for ip in pod.addresses):
                lines.append(f"route add default via {POD_GATEWAY6} dev eth0")
            commands[self._pod_ns[key]] = lines

        for name, external in self.externals.items():
            family = _family(external.ip)
            fabric_len = FABRIC6.prefixlen if family == 6 else prefixlen
            nodad = " nodad" if family == 6 else ""
            lines = [
                "link set lo up",
                f"addr add {external.ip}/{_host_bits(external.ip)} dev eth0{nodad}",
                f"addr add {external_fabric_ips[name]}/{fabric_len} dev eth0{nodad}",
                "link set eth0 up",
            ]
            lines += [
                f"neigh replace {ip} lladdr {_mac(3, self._node_index[n])} dev eth0 nud permanent"
                for n, ip in (node_ips6 if family == 6 else node_ips).items()
            ]
            # `src`: the external host speaks from its own address, not from its fabric address.
            lines += [
                f"route add {ip}/{_host_bits(ip)} via {via(pod.node, ip)} dev eth0 src {external.ip}"
                for pod in self.pods.values() for ip in pod.addresses if _family(ip) == family
            ]
            commands[self._external_ns[name]] = lines
        return commands

    # -- using the lab -------------------------------------------------------------------------------------

    def run_in_node(
        self, node: str, argv: list[str], input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a program inside a node's namespace (output captured as text, exit status not checked)."""
        return run_in_netns(self.node_netns(node), argv, input=input)

    def apply_nft(self, node: str, script: str) -> None:
        """Apply an nft script in the node's namespace in one transaction (`nft -f -`): all or nothing."""
        require_tools("nft")
        done = self.run_in_node(node, ["nft", "-f", "-"], input=script)
        if done.returncode != 0:
            message = (done.stderr or done.stdout).strip()
            raise LabError(f"nft rejected the ruleset for node {node}; the previous one stays:\n{message}")

    def probe(self, probes: Sequence[Probe], *, timeout: float = 0.5, parallel: int = 64) -> list[bool]:
        """Send every probe as real packets; True where the destination answered within `timeout` seconds.

        TCP: the connection is established. UDP: the echo comes back. SCTP: the INIT reached a host listening
        on that port (see dataplane.probe).
        """
        running = self._running
        if running is None:
            raise LabError(f"lab {self.prefix} is not up")
        if parallel < 1 or timeout <= 0:
            raise LabError("probe: parallel must be >= 1 and timeout > 0")
        jobs = []
        for probe in probes:
            protocol = probe.protocol.upper()
            if protocol not in PROTOCOLS or not 1 <= probe.port <= 65535:
                raise LabError(f"probe from {probe.src}: bad port {probe.port}/{probe.protocol}")
            try:
                dst_ip = str(ipaddress.ip_address(probe.dst_ip))
            except ValueError:
                raise LabError(f"probe from {probe.src}: {probe.dst_ip!r} is not an IP address") from None
            jobs.append(ProbeJob(running.fds[self._source_netns(probe.src)], dst_ip, probe.port, protocol))
        assert running.servers is not None
        with self._probing:
            return run_probes(jobs, running.servers, timeout=timeout, parallel=parallel)

    def _source_netns(self, src: str) -> str:
        if src.startswith(_NODE_SOURCE):
            return self.node_netns(src.removeprefix(_NODE_SOURCE))
        if src.startswith(_EXTERNAL_SOURCE):
            return self.external_netns(src.removeprefix(_EXTERNAL_SOURCE))
        return self.pod_netns(src)

    def _report(self, message: str) -> None:
        if self._progress is not None:
            self._progress(message)


def _host_bits(ip: str) -> int:
    """The prefix length of one address of the family of `ip` (32 or 128)."""
    return 128 if _family(ip) == 6 else 32


def cleanup_leftovers(prefix: str = "epgb-") -> list[str]:
    """Remove every namespace (and stray host link) whose name starts with `prefix`; return the names."""
    require_tools("ip")
    if not prefix:
        raise LabError("cleanup_leftovers needs a non-empty prefix")
    with _signals_deferred():
        names = [name for name in list_netns() if name.startswith(prefix)]
        delete_netns(names)
        return names + delete_host_links(prefix)


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the body is done, then deliver them: teardown is never cut short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    saved = {
        sig: signal.signal(sig, lambda signum, _frame: received.append(signum))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        if received:
            signal.raise_signal(received[0])


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
