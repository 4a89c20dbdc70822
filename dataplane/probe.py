"""Probe servers and probe clients for the netns lab, driven from one process.

Every socket is created inside the namespace of the host it belongs to (see `netns.entered`) and then
driven by ordinary threads: one server thread accepts and closes TCP connections, echoes UDP datagrams and
records SCTP INIT chunks for every lab host; `run_probes` sends many probes at once from one event loop.

SCTP: this kernel may have no SCTP sockets (CONFIG_IP_SCTP unset), so the sender writes an SCTP INIT by hand
(IP protocol 132, CRC32c checksum, verification tag 0, as RFC 9260 requires of an INIT) on a raw socket, and
the receiver counts it on a raw socket bound to protocol 132 in its own namespace (IPv6: bound to the host's
address, since an IPv6 raw socket gets no IP header to read it from). A probe passes when the INIT reached a
host that listens on that SCTP port. Connection tracking sees the INIT as a new SCTP flow, exactly as it would
see a real association start, so nftables rules on `sctp dport` and `ct state` apply.

Every probe and server speaks the family of its address: IPv4 or IPv6.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import selectors
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dataplane.netns import LabError, entered

IPPROTO_SCTP = 132
PROTOCOLS = ("TCP", "UDP", "SCTP")
_SOURCE_PORTS = range(20000, 61000)
_next_source_port: dict[tuple[int, str, int, str], int] = {}


def _source_port(job: ProbeJob) -> int:
    """A source port for the next probe of this (source, destination, port, protocol).

    A new probe must be a new flow for connection tracking: a UDP probe that reused the 5-tuple of an earlier
    answered one (conntrack keeps it for 30 s) would pass as established even after a ruleset change.
    Consecutive probes of one flow therefore walk through the whole range, from a random start.
    """
    key = (job.netns_fd, job.dst_ip, job.port, job.protocol)
    port = _next_source_port.get(key, _SOURCE_PORTS.start + secrets.randbelow(len(_SOURCE_PORTS)))
    following = port + 1
    _next_source_port[key] = following if following < _SOURCE_PORTS.stop else _SOURCE_PORTS.start
    return port


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC32C = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the SCTP checksum (RFC 9260 appendix A)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def sctp_init(source_port: int, destination_port: int, initiate_tag: int) -> bytes:
    """An SCTP packet holding one INIT chunk (no IP header), checksum filled in."""
    chunk = struct.pack("!BBHIIHHI", 1, 0, 20, initiate_tag, 65536, 1, 1, initiate_tag)
    header = struct.pack("!HHII", source_port, destination_port, 0, 0)
    packet = header + chunk
    # The checksum goes on the wire least significant byte first (RFC 9260 appendix A, Linux sctp_checksum).
    return packet[:8] + struct.pack("<I", crc32c(packet)) + packet[12:]


def parse_sctp_init(datagram: bytes, destination: str | None = None) -> tuple[str, int, int] | None:
    """(destination IP, destination port, initiate tag) of an IPv4 datagram carrying a valid SCTP INIT; or,
    with `destination` (what an IPv6 raw socket bound to that address reads), of the SCTP packet alone."""
    if destination is None:
        if len(datagram) < 20 or datagram[0] >> 4 != 4 or datagram[9] != IPPROTO_SCTP:
            return None
        packet = datagram[(datagram[0] & 0x0F) * 4 :]
        destination = socket.inet_ntoa(datagram[16:20])
    else:
        packet = datagram
    if len(packet) < 32 or packet[12] != 1:
        return None
    (checksum,) = struct.unpack("<I", packet[8:12])
    if crc32c(packet[:8] + b"\0\0\0\0" + packet[12:]) != checksum:
        return None
    (destination_port,) = struct.unpack("!H", packet[2:4])
    (initiate_tag,) = struct.unpack("!I", packet[16:20])
    return destination, destination_port, initiate_tag


def _family(ip: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


@dataclass(frozen=True)
class ProbeJob:
    """One probe, resolved: the namespace to send from and where to."""

    netns_fd: int
    dst_ip: str
    port: int
    protocol: str


class ProbeServers:
    """The listening side of every lab host: TCP accept-then-close, UDP echo, SCTP INIT counting.

    Add hosts with `listen` before `start`; `stop` closes every socket. One thread serves all hosts.
    """

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._sockets: list[socket.socket] = []
        self._sctp_ports: dict[socket.socket, tuple[frozenset[int], str | None]] = {}
        self._sctp_seen: set[tuple[str, int, int]] = set()
        self._lock = threading.Lock()
        self._stop_r, self._stop_w = os.pipe()
        # Written once per recorded SCTP INIT so a probe loop waiting in select() wakes up.
        self.sctp_notify_fd, self._sctp_notify_w = os.pipe()
        os.set_blocking(self.sctp_notify_fd, False)
        os.set_blocking(self._sctp_notify_w, False)
        self._thread: threading.Thread | None = None

    def listen(self, netns_fd: int, ip: str, ports: Iterable[tuple[int, str]]) -> int:
        """Open the servers for one host (its namespace and address); return how many ports it serves."""
        ports = sorted(set(ports))
        family = _family(ip)
        with entered(netns_fd):
            for port, protocol in ports:
                if protocol == "TCP":
                    server = socket.socket(family, socket.SOCK_STREAM)
                    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    self._bind(server, ip, port, protocol)
                    server.listen(4096)
                    self._register(server, self._accept)
                elif protocol == "UDP":
                    server = socket.socket(family, socket.SOCK_DGRAM)
                    self._bind(server, ip, port, protocol)
                    self._register(server, self._echo)
            sctp_ports = frozenset(port for port, protocol in ports if protocol == "SCTP")
            if sctp_ports:
                receiver = socket.socket(family, socket.SOCK_RAW, IPPROTO_SCTP)
                receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
                if family == socket.AF_INET6:
                    self._bind(receiver, ip, 0, "SCTP")
                self._sctp_ports[receiver] = (sctp_ports, ip if family == socket.AF_INET6 else None)
                self._register(receiver, self._count_sctp)
        return len(ports)

    @staticmethod
    def _bind(server: socket.socket, ip: str, port: int, protocol: str) -> None:
        # Bound to the host's own address, so replies always come from the address the probe was sent to.
        try:
            server.bind((ip, port))
        except OSError as exc:
            server.close()
            raise LabError(f"cannot listen on {ip} {protocol} port {port}: {exc.strerror}") from exc

    def _register(self, sock: socket.socket, handler: object) -> None:
        sock.setblocking(False)
        self._sockets.append(sock)
        self._selector.register(sock, selectors.EVENT_READ, handler)

    def start(self) -> None:
        self._selector.register(self._stop_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._serve, name="epgb-lab-servers", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            os.write(self._stop_w, b"x")
            self._thread.join(timeout=5)
            self._thread = None
        self._selector.close()
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()
        for fd in (self._stop_r, self._stop_w, self.sctp_notify_fd, self._sctp_notify_w):
            os.close(fd)

    def take_sctp(self, key: tuple[str, int, int]) -> bool:
        """Whether an INIT (destination IP, port, initiate tag) arrived at a listener; forget it if so."""
        with self._lock:
            if key in self._sctp_seen:
                self._sctp_seen.discard(key)
                return True
            return False

    def _serve(self) -> None:
        while True:
            for key, _ in self._selector.select():
                if key.data is None:
                    return
                key.data(key.fileobj)

    @staticmethod
    def _accept(server: socket.socket) -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:  # nothing left to accept (or a client gave up): epoll calls again if needed
                return
            connection.close()

    @staticmethod
    def _echo(server: socket.socket) -> None:
        while True:
            try:
                payload, peer = server.recvfrom(2048)
            except OSError:
                return
            with contextlib.suppress(OSError):
                server.sendto(payload, peer)

    def _count_sctp(self, receiver: socket.socket) -> None:
        ports, bound = self._sctp_ports[receiver]
        while True:
            try:
                datagram = receiver.recv(2048)
            except OSError:
                return
            init = parse_sctp_init(datagram, bound)
            if init is not None and init[1] in ports:
                with self._lock:
                    self._sctp_seen.add(init)
                with contextlib.suppress(BlockingIOError):  # a full pipe already means "look again"
                    os.write(self._sctp_notify_w, b"x")


@dataclass
class _InFlight:
    index: int
    job: ProbeJob
    deadline: float
    resend_at: float
    sock: socket.socket | None = None
    payload: bytes = b""
    sctp_key: tuple[str, int, int] | None = None


def run_probes(
    jobs: Sequence[ProbeJob], servers: ProbeServers, *, timeout: float, parallel: int
) -> list[bool]:
    """Send every probe (at most `parallel` at once); True where the destination answered in time."""
    results = [False] * len(jobs)
    pending = deque(enumerate(jobs))
    flights: dict[int, _InFlight] = {}
    sctp_flights: dict[int, _InFlight] = {}
    selector = selectors.DefaultSelector()
    selector.register(servers.sctp_notify_fd, selectors.EVENT_READ, None)

    def finish(flight: _InFlight, passed: bool) -> None:
        results[flight.index] = passed
        flights.pop(flight.index, None)
        sctp_flights.pop(flight.index, None)
        if flight.sock is not None:
            selector.unregister(flight.sock)
            if flight.job.protocol == "TCP":
                # Reset rather than FIN: nothing lingers in TIME_WAIT between probes.
                flight.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            flight.sock.close()

    def launch(index: int, job: ProbeJob) -> None:
        now = time.monotonic()
        flight = _InFlight(index, job, now + timeout, now + timeout / 2)
        flights[index] = flight
        try:
            if job.protocol == "SCTP":
                tag = secrets.randbits(32) | 1
                flight.sctp_key = (job.dst_ip, job.port, tag)
                with entered(job.netns_fd):
                    sender = socket.socket(_family(job.dst_ip), socket.SOCK_RAW, IPPROTO_SCTP)
                with sender:
                    sender.sendto(sctp_init(_source_port(job), job.port, tag), (job.dst_ip, 0))
                sctp_flights[index] = flight
                if servers.take_sctp(flight.sctp_key):
                    finish(flight, True)
                return
            kind = socket.SOCK_STREAM if job.protocol == "TCP" else socket.SOCK_DGRAM
            with entered(job.netns_fd):
                flight.sock = socket.socket(_family(job.dst_ip), kind)
            flight.sock.setblocking(False)
            if job.protocol == "TCP":
                selector.register(flight.sock, selectors.EVENT_WRITE, flight)
                code = flight.sock.connect_ex((job.dst_ip, job.port))
                if code not in (0, errno.EINPROGRESS):
                    finish(flight, False)
            else:
                selector.register(flight.sock, selectors.EVENT_READ, flight)
                flight.payload = b"epgb-probe " + secrets.token_hex(8).encode()
                _bind_source_port(flight.sock, job)
                flight.sock.connect((job.dst_ip, job.port))
                flight.sock.send(flight.payload)
        except OSError:
            finish(flight, False)

    def on_event(flight: _InFlight) -> None:
        assert flight.sock is not None
        if flight.job.protocol == "TCP":
            finish(flight, flight.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0)
            return
        try:
            reply = flight.sock.recv(2048)
        except BlockingIOError:
            return
        except OSError:
            finish(flight, False)
            return
        if reply == flight.payload:
            finish(flight, True)

    try:
        while pending or flights:
            while pending and len(flights) < parallel:
                launch(*pending.popleft())
            if not flights:
                continue
            now = time.monotonic()
            wake = min(min(f.deadline, f.resend_at) for f in flights.values())
            for key, _ in selector.select(max(0.0, wake - now)):
                if key.data is None:
                    _drain(servers.sctp_notify_fd)
                    for flight in list(sctp_flights.values()):
                        assert flight.sctp_key is not None
                        if servers.take_sctp(flight.sctp_key):
                            finish(flight, True)
                elif key.data.index in flights:
                    on_event(key.data)
            now = time.monotonic()
            for flight in list(flights.values()):
                if now >= flight.deadline:
                    finish(flight, False)
                elif now >= flight.resend_at:
                    # One resend of a lost datagram at half time (TCP retransmits itself; an INIT goes once).
                    flight.resend_at = flight.deadline
                    if flight.job.protocol == "UDP" and flight.sock is not None:
                        try:
                            flight.sock.send(flight.payload)
                        except OSError:
                            finish(flight, False)
    finally:
        for flight in list(flights.values()):
            finish(flight, False)
        selector.close()
    return results


def _bind_source_port(sock: socket.socket, job: ProbeJob) -> None:
    for _ in range(8):
        try:
            sock.bind(("", _source_port(job)))
            return
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
    sock.bind(("", 0))


def _drain(fd: int) -> None:
    with contextlib.suppress(BlockingIOError):
        while os.read(fd, 4096):
            pass


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tcp_syn(src_ip: str, dst_ip: str, source_port: int, destination_port: int, sequence: int) -> bytes:
    """A TCP SYN segment (no IP header), checksum filled in."""
    header = struct.pack("!HHIIBBHHH", source_port, destination_port, sequence, 0, 5 << 4, 0x02, 64240, 0, 0)
    pseudo = socket.inet_aton(src_ip) + socket.inet_aton(dst_ip) + struct.pack("!BBH", 0, 6, len(header))
    return header[:16] + struct.pack("!H", _checksum(pseudo + header)) + header[18:]


def syn_flood(netns_fd: int, src_ip: str, dst_ip: str, port: int, *, rate: int, seconds: float) -> int:
    """Send `rate` TCP SYNs a second for `seconds` from a lab host to `dst_ip`:`port`, each from another source
    port (each a new connection for conntrack); return how many were sent. For the flood test and benchmark:
    the packets are written by hand on a raw socket, so the sender keeps no state."""
    total = int(rate * seconds)
    segments = [tcp_syn(src_ip, dst_ip, 1024 + i % 64000, port, secrets.randbits(32)) for i in range(total)]
    with entered(netns_fd):
        sender = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    sent = 0
    started = time.monotonic()
    with sender:
        sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
        for i, segment in enumerate(segments):
            due = started + i / rate
            delay = due - time.monotonic()
            if delay > 0.001:
                time.sleep(delay)
            try:
                sender.sendto(segment, (dst_ip, 0))
                sent += 1
            except BlockingIOError:
                continue
    return sent
