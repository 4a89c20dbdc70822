"""``epgbridge apic-sim``: run the APIC simulator in the foreground until interrupted.

The password of user ``admin`` comes from ``--password-file`` when given, else from ``APIC_PASSWORD`` (the rule
of ``push`` and ``controller`` too: an explicit flag beats the environment); with neither, one is generated and
printed. Never from a command-line argument, where other users could read it.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import threading
from types import FrameType

from .faults import Faults
from .server import Simulator

DEFAULT_LISTEN = "127.0.0.1:8443"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the apic-sim options to `parser`."""
    parser.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"address to serve on (default {DEFAULT_LISTEN}; port 0 picks a free one)",
    )
    parser.add_argument(
        "--state",
        default="apic-sim.sqlite",
        metavar="FILE",
        help="SQLite state file, kept across restarts (default apic-sim.sqlite)",
    )
    parser.add_argument("--no-tls", action="store_true", help="serve plain HTTP instead of HTTPS")
    parser.add_argument(
        "--password-file",
        metavar="FILE",
        help="file holding the admin password (given, it wins over APIC_PASSWORD)",
    )
    defaults = Faults()
    parser.add_argument(
        "--login-rate",
        type=float,
        default=defaults.login_rate,
        metavar="PER_SECOND",
        help=f"logins and token refreshes allowed per second and client address; beyond it the simulator "
        f"answers 503, as a throttled APIC does (default {defaults.login_rate:g}; 0: no limit)",
    )
    parser.add_argument(
        "--login-burst",
        type=int,
        default=defaults.login_burst,
        metavar="N",
        help=f"logins allowed at once before the rate applies (default {defaults.login_burst})",
    )


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` -> (host, port); raises ValueError with a message for the user."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--listen must be HOST:PORT, got {value!r}")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return host or "127.0.0.1", int(port)


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM. Exit status: 0 stopped, 1 could not start, 2 usage error."""
    try:
        host, port = parse_listen(args.listen)
    except ValueError as error:
        print(f"epgbridge apic-sim: {error}", file=sys.stderr)
        return 2
    password = None if args.password_file else os.environ.get("APIC_PASSWORD")
    generated = False
    if args.password_file:
        try:
            with open(args.password_file, encoding="utf-8") as handle:
                password = handle.read().strip()
        except OSError as error:
            print(f"epgbridge apic-sim: cannot read the password file: {error.strerror}", file=sys.stderr)
            return 1
        if not password:
            print(f"epgbridge apic-sim: the password file {args.password_file} is empty", file=sys.stderr)
            return 1
    if not password:
        password, generated = secrets.token_urlsafe(12), True

    if args.login_rate < 0 or args.login_burst < 1:
        print("epgbridge apic-sim: --login-rate must be >= 0 and --login-burst >= 1", file=sys.stderr)
        return 2
    faults = Faults(login_rate=args.login_rate, login_burst=args.login_burst)
    simulator = Simulator(args.state, tls=not args.no_tls, password=password, faults=faults)
    try:
        url = simulator.start(host, port)
    except OSError as error:
        print(
            f"epgbridge apic-sim: cannot listen on {args.listen}: {error.strerror or error}", file=sys.stderr
        )
        return 1
    print(f"APIC simulator listening on {url} (state {args.state})", flush=True)
    if simulator.tls:
        print(f"self-signed certificate: {simulator.cert_path} (use it as --ca)", flush=True)
    if generated:
        print(f"user admin, generated password: {password}", flush=True)

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(1.0):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        simulator.stop()
    return 0
