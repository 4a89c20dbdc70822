"""Read the kernel's netfilter log (NFLOG) with the standard library: a netlink socket, no other dependency.

The node table logs every drop to one NFLOG group (dataplane/names.py: LOG_GROUP, rate-limited in the kernel);
`NflogReader` binds that group in a network namespace (the host's for the agent, a node namespace in the lab:
the socket is made there and keeps it) and turns each message into a `LoggedPacket`: the log prefix (our tag),
the addresses, protocol and ports of the packet's first bytes.

Why the standard library and not a netlink package: pyroute2, the well-kept netlink library for Python, has no
NFLOG messages (its nfnetlink package speaks nftables, conntrack and ipset); with it we would still write the
NFLOG message layout ourselves and carry a large dependency for the framing only. The older NFLOG bindings on
PyPI are unmaintained or wrap libnetfilter_log in C. NFLOG's wire format is a stable kernel ABI (nfnetlink_log.h,
unchanged since 2.6.14 but for added attributes): a netlink header, an nfgenmsg, then type-length-value
attributes, about a hundred lines to read, tested against real packets in the lab (tests/dataplane/test_drops.py).
What we give up is pyroute2's handling of netlink corner cases we do not use (multipart dumps, extended acks).

A reader that falls behind loses messages, never blocks the kernel: the socket's buffer overflows and the next
read fails with ENOBUFS, which is counted (`lost`); NFULNL_CFG_F_SEQ numbers the messages of the group, so gaps
are counted too. The exact numbers of drops are the table's counters, not the log.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import select
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType

from dataplane.netns import NETNS_DIR, entered

NETLINK_NETFILTER = 12
NFNL_SUBSYS_ULOG = 4
NFULNL_MSG_PACKET = NFNL_SUBSYS_ULOG << 8 | 0
NFULNL_MSG_CONFIG = NFNL_SUBSYS_ULOG << 8 | 1
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLMSG_ERROR, NLMSG_DONE = 2, 3
# Configuration attributes and values (include/uapi/linux/netfilter/nfnetlink_log.h).
NFULA_CFG_CMD, NFULA_CFG_MODE, NFULA_CFG_NLBUFSIZ, NFULA_CFG_TIMEOUT, NFULA_CFG_QTHRESH, NFULA_CFG_FLAGS = range(1, 7)
NFULNL_CFG_CMD_BIND, NFULNL_CFG_CMD_UNBIND = 1, 2
NFULNL_COPY_PACKET = 2
NFULNL_CFG_F_SEQ = 0x1
# Packet attributes.
NFULA_PACKET_HDR, NFULA_IFINDEX_INDEV, NFULA_IFINDEX_OUTDEV, NFULA_PAYLOAD, NFULA_PREFIX, NFULA_SEQ = 1, 4, 5, 9, 10, 12
_NLMSG = struct.Struct("=IHHII")  # length, type, flags, sequence, port id (host byte order)
_NFGEN = struct.Struct("!BBH")  # family, version, resource id (the group, big-endian)
_NLA = struct.Struct("=HH")
COPY_RANGE = 128  # bytes of each packet: the IP header and the transport ports, with room for IPv6 options
PORTED = {6, 17, 132}  # TCP, UDP, SCTP: ports in the first four bytes of the transport header
_IPV6_EXTENSIONS = {0, 43, 60}  # hop-by-hop, routing, destination options: skipped to the transport header


class NflogError(OSError):
    """The group could not be bound (no netlink netfilter support, another reader holds it, no privilege)."""


@dataclass(frozen=True, slots=True)
class LoggedPacket:
    """One logged packet: where (the prefix), and what (addresses, protocol, ports), as the reader saw it."""

    prefix: str
    src: ipaddress.IPv4Address | ipaddress.IPv6Address
    dst: ipaddress.IPv4Address | ipaddress.IPv6Address
    protocol: int
    sport: int | None
    dport: int | None
    at: float  # time.time() when read

    @property
    def family(self) -> int:
        return self.src.version


def _attributes(data: bytes, offset: int) -> Iterator[tuple[int, bytes]]:
    while offset + 4 <= len(data):
        length, kind = _NLA.unpack_from(data, offset)
        if length < 4:
            return
        yield kind & 0x3FFF, data[offset + 4:offset + length]
        offset += (length + 3) & ~3


def _attribute(kind: int, value: bytes) -> bytes:
    return _NLA.pack(4 + len(value), kind) + value + b"\0" * (-len(value) % 4)


def parse_payload(payload: bytes) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address,
                                           ipaddress.IPv4Address | ipaddress.IPv6Address, int,
                                           int | None, int | None] | None:
    """(source, destination, protocol, source port, destination port) of an IP packet's first bytes; None when
    they are too short or not IP. Ports only for TCP, UDP and SCTP, and not for a fragment past the first."""
    if not payload:
        return None
    src: ipaddress.IPv4Address | ipaddress.IPv6Address
    dst: ipaddress.IPv4Address | ipaddress.IPv6Address
    version = payload[0] >> 4
    if version == 4 and len(payload) >= 20:
        header = (payload[0] & 0x0F) * 4
        proto = payload[9]
        src, dst = ipaddress.IPv4Address(payload[12:16]), ipaddress.IPv4Address(payload[16:20])
        fragment = struct.unpack_from("!H", payload, 6)[0] & 0x1FFF
        transport = header if fragment == 0 else None
    elif version == 6 and len(payload) >= 40:
        src, dst = ipaddress.IPv6Address(payload[8:24]), ipaddress.IPv6Address(payload[24:40])
        proto, offset = payload[6], 40
        while proto in _IPV6_EXTENSIONS and offset + 8 <= len(payload):
            proto, offset = payload[offset], offset + (payload[offset + 1] + 1) * 8
        if proto == 44 and offset + 8 <= len(payload):  # a fragment header: ports in the first fragment only
            first = struct.unpack_from("!H", payload, offset + 2)[0] >> 3 == 0
            proto, offset = payload[offset], offset + 8
            transport = offset if first else None
        else:
            transport = offset
    else:
        return None
    if proto in PORTED and transport is not None and transport + 4 <= len(payload):
        sport, dport = struct.unpack_from("!HH", payload, transport)
        return src, dst, proto, sport, dport
    return src, dst, proto, None, None


class NflogReader:
    """A bound NFLOG group in one network namespace. Use as a context manager (or `close()`); `fileno()` lets
    a caller wait on several readers at once."""

    def __init__(self, group: int, *, netns: str | None = None, copy_range: int = COPY_RANGE,
                 buffer: int = 1 << 21, flush_ms: int = 20) -> None:
        """Bind `group` (0-65535) in `netns` (None: the caller's namespace). `buffer`: the socket's receive
        buffer in bytes (what a burst can hold before messages are lost); `flush_ms`: how long the kernel may
        hold logged packets to send several in one message."""
        if not 0 <= group <= 0xFFFF:
            raise NflogError(errno.EINVAL, f"NFLOG group {group} is not 0-65535")
        self.group = group
        self.lost = 0  # messages lost: the socket buffer overflowed (ENOBUFS), or gaps in the sequence
        self.received = 0
        self._seq = 0
        self._next_log_seq: int | None = None
        self._pending: list[LoggedPacket] = []
        try:
            if netns is None:
                self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                           NETLINK_NETFILTER)
            else:
                fd = os.open(os.path.join(NETNS_DIR, netns), os.O_RDONLY | os.O_CLOEXEC)
                try:
                    with entered(fd):
                        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                                   NETLINK_NETFILTER)
                finally:
                    os.close(fd)
        except OSError as exc:
            raise NflogError(exc.errno, f"cannot open a netfilter netlink socket: {exc.strerror}") from None
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
            self._sock.bind((0, 0))
            self._configure(_attribute(NFULA_CFG_CMD, bytes([NFULNL_CFG_CMD_BIND])), "bind")
            self._configure(_attribute(NFULA_CFG_MODE, struct.pack("!IBx", copy_range, NFULNL_COPY_PACKET))
                            + _attribute(NFULA_CFG_FLAGS, struct.pack("!H", NFULNL_CFG_F_SEQ))
                            + _attribute(NFULA_CFG_TIMEOUT, struct.pack("!I", max(1, flush_ms // 10)))
                            + _attribute(NFULA_CFG_NLBUFSIZ, struct.pack("!I", 65536)), "configure")
            self._sock.setblocking(False)
        except BaseException:
            self._sock.close()
            raise

    def fileno(self) -> int:
        return self._sock.fileno()

    def _configure(self, attributes: bytes, what: str) -> None:
        """One configuration request, acknowledged (packets that arrive meanwhile are kept for `read`)."""
        self._seq += 1
        body = _NFGEN.pack(socket.AF_UNSPEC, 0, self.group) + attributes
        self._sock.send(_NLMSG.pack(_NLMSG.size + len(body), NFULNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK,
                                    self._seq, 0) + body)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self._sock], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            data = self._sock.recv(1 << 16)
            for kind, seq, body in self._messages(data):
                if kind == NLMSG_ERROR and seq == self._seq:
                    code = -struct.unpack_from("=i", body, 0)[0]
                    if code == 0:
                        return
                    hint = (" (another reader holds this group in this network namespace)"
                            if code in (errno.EBUSY, errno.EPERM) else "")
                    raise NflogError(code, f"NFLOG group {self.group}: {what} failed: {os.strerror(code)}{hint}")
                if kind == NFULNL_MSG_PACKET:
                    self._packet(body)
        raise NflogError(errno.ETIMEDOUT, f"NFLOG group {self.group}: no answer to {what}")

    @staticmethod
    def _messages(data: bytes) -> Iterator[tuple[int, int, bytes]]:
        offset = 0
        while offset + _NLMSG.size <= len(data):
            length, kind, _flags, seq, _pid = _NLMSG.unpack_from(data, offset)
            if length < _NLMSG.size:
                return
            yield kind, seq, data[offset + _NLMSG.size:offset + length]
            offset += (length + 3) & ~3

    def _packet(self, body: bytes) -> None:
        if len(body) < _NFGEN.size:
            return
        prefix, payload, log_seq = "", b"", None
        for kind, value in _attributes(body, _NFGEN.size):
            if kind == NFULA_PREFIX:
                prefix = value.split(b"\0", 1)[0].decode("ascii", "replace")
            elif kind == NFULA_PAYLOAD:
                payload = value
            elif kind == NFULA_SEQ and len(value) >= 4:
                log_seq = struct.unpack_from("!I", value)[0]
        if log_seq is not None:
            if self._next_log_seq is not None and log_seq > self._next_log_seq:
                self.lost += log_seq - self._next_log_seq
            self._next_log_seq = log_seq + 1
        self.received += 1
        parsed = parse_payload(payload)
        if parsed is not None:
            self._pending.append(LoggedPacket(prefix, *parsed, at=time.time()))

    def read(self, timeout: float = 0.0, limit: int = 4096) -> list[LoggedPacket]:
        """The packets logged since the last read, waiting up to `timeout` seconds for the first; at most about
        `limit` per call (the rest stay in the socket's buffer)."""
        if not self._pending and timeout > 0:
            select.select([self._sock], [], [], timeout)
        while len(self._pending) < limit:
            try:
                data = self._sock.recv(1 << 16)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # the buffer overflowed: messages were lost; reading goes on
                    self.lost += 1
                    continue
                raise
            for kind, _seq, body in self._messages(data):
                if kind == NFULNL_MSG_PACKET:
                    self._packet(body)
        out, self._pending = self._pending, []
        return out

    def close(self) -> None:
        if self._sock.fileno() < 0:
            return
        with contextlib.suppress(OSError):
            self._sock.setblocking(True)
            self._sock.settimeout(1.0)
            self._configure(_attribute(NFULA_CFG_CMD, bytes([NFULNL_CFG_CMD_UNBIND])), "unbind")
        self._sock.close()

    def __enter__(self) -> NflogReader:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
