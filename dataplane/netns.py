"""Network namespaces for the lab: create and delete them, run iproute2 inside them, enter them per thread.

Everything here acts on named namespaces under /run/netns (the ones `ip netns` manages). Entering one uses
setns(2) on the calling thread only, and always switches back: a socket keeps the namespace it was created
in, so the lab creates its sockets inside pod namespaces and drives them from ordinary threads.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import shutil
import socket
import struct
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed

from epg.errors import EpgbridgeError

NETNS_DIR = "/run/netns"
_CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS = 0x8913
_IFF_RUNNING = 0x40
_libc = ctypes.CDLL(None, use_errno=True)


class LabError(EpgbridgeError):
    """The lab could not be built, driven or torn down; the message says what failed and why."""


def require_tools(*tools: str) -> None:
    """Raise LabError unless we are root and every named program is on PATH."""
    if os.geteuid() != 0:
        raise LabError("the netns lab needs root (network namespaces, veth pairs, nftables)")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        raise LabError(f"the netns lab needs {', '.join(missing)} on PATH (iproute2, nftables)")


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


def open_netns(name: str) -> int:
    """Open a named namespace for entering; the caller closes the descriptor."""
    try:
        return os.open(os.path.join(NETNS_DIR, name), os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise LabError(f"network namespace {name} is missing: {exc.strerror}") from exc


@contextlib.contextmanager
def entered(netns_fd: int) -> Iterator[None]:
    """Run the body with the calling thread in the namespace `netns_fd` refers to, then switch back.

    If switching back fails the thread would keep running in a lab namespace, so that is a hard error.
    """
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            _setns(netns_fd)
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)


def write_sysctl(netns_fd: int, settings: dict[str, str]) -> None:
    """Write /proc/sys/net keys (e.g. "net/ipv4/ip_forward") as seen from inside one namespace."""
    with entered(netns_fd):
        for key, value in settings.items():
            with open(os.path.join("/proc/sys", key), "w") as handle:
                handle.write(value)


def interfaces_running(netns_fd: int, ifnames: Iterable[str]) -> list[str]:
    """Which of these interfaces inside the namespace are operationally up (IFF_RUNNING)?

    The kernel sets IFF_RUNNING from its link-watch work, in the same step in which it activates the
    interface's queue and tells a bridge that the port has carrier: until then packets are dropped.
    """
    up = []
    with entered(netns_fd):
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with probe:
        for name in ifnames:
            request = struct.pack("16sH14x", name.encode(), 0)
            try:
                (flags,) = struct.unpack_from("H", fcntl.ioctl(probe.fileno(), _SIOCGIFFLAGS, request), 16)
            except OSError:
                continue
            if flags & _IFF_RUNNING:
                up.append(name)
    return up


def list_netns() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def ip_batch(commands: Sequence[str], *, netns: str | None = None, force: bool = False) -> None:
    """Run iproute2 commands in one `ip -batch` process (inside `netns` when given)."""
    if not commands:
        return
    argv = ["ip"] + (["-n", netns] if netns else []) + (["-force"] if force else []) + ["-batch", "-"]
    done = subprocess.run(argv, input="\n".join(commands) + "\n", capture_output=True, text=True)
    if done.returncode != 0 and not force:
        where = f" in {netns}" if netns else ""
        raise LabError(f"ip{where} failed: {done.stderr.strip() or done.stdout.strip()}")


def ip_batches(per_netns: dict[str, list[str]], *, workers: int = 8) -> Iterator[str]:
    """Run one `ip -n NS -batch` per namespace concurrently; yield each namespace name as it completes."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(ip_batch, commands, netns=name): name for name, commands in per_netns.items()}
        for future in as_completed(futures):
            future.result()
            yield futures[future]


def delete_netns(names: Iterable[str]) -> None:
    """Delete namespaces by name; missing ones are ignored."""
    ip_batch([f"netns del {name}" for name in names], force=True)


def delete_host_links(prefix: str) -> list[str]:
    """Delete links in the caller's namespace whose name starts with `prefix` (left by an interrupted run)."""
    shown = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=False)
    names = []
    for line in shown.stdout.splitlines():
        fields = line.split(":", 2)
        if len(fields) == 3:
            name = fields[1].strip().split("@", 1)[0]
            if name.startswith(prefix):
                names.append(name)
    ip_batch([f"link del {name}" for name in names], force=True)
    return names


def run_in_netns(
    name: str, argv: Sequence[str], input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a program inside a named namespace, capturing its output as text."""
    return subprocess.run(
        ["ip", "netns", "exec", name, *argv], input=input, capture_output=True, text=True, check=False
    )
