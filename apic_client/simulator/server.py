"""The `Simulator`: an HTTPS (or HTTP) server on Werkzeug around one SQLite state file."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import secrets
import socket
import ssl
import threading
from pathlib import Path
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .app import ApicApp
from .auth import Authenticator
from .faults import Counters, Faults
from .store import MoStore, Transaction
from .writes import SYSTEM_UID, apply_post, seed_tree


class _Handler(WSGIRequestHandler):
    """Tracks open connections (so `stop` can cut them) and keeps request logging out of stderr."""

    def setup(self) -> None:
        super().setup()
        connections: set[socket.socket] = getattr(self.server, "apic_connections", set())
        connections.add(self.connection)

    def finish(self) -> None:
        connections: set[socket.socket] = getattr(self.server, "apic_connections", set())
        connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def handle(self) -> None:
        with contextlib.suppress(OSError):
            super().handle()

    def version_string(self) -> str:
        # aci-go-client recognises an APIC by this Server header on 404 pages.
        return "Cisco APIC"

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def log_error(self, format: str, *args: Any) -> None:
        pass


class Simulator:
    """An APIC REST simulator whose state survives restarts.

    >>> sim = Simulator("/tmp/apic.sqlite", tls=False, password="secret")
    >>> url = sim.start("127.0.0.1", 0)
    >>> sim.stop()
    """

    def __init__(
        self,
        state_path: str | os.PathLike[str],
        *,
        tls: bool = True,
        password: str | None = None,
        username: str = "admin",
        faults: Faults | None = None,
    ) -> None:
        self.state_path = Path(state_path)
        self.tls = tls
        self.username = username
        self.password = password if password is not None else secrets.token_urlsafe(12)
        self.faults = faults if faults is not None else Faults()
        self.counters = Counters()
        self.cert_path = Path(f"{self.state_path}.crt")
        self.key_path = Path(f"{self.state_path}.key")
        self.url = ""
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._app: ApicApp | None = None
        self._store: MoStore | None = None

    def __repr__(self) -> str:
        return f"Simulator(state_path={str(self.state_path)!r}, tls={self.tls}, url={self.url!r})"

    def __enter__(self) -> Simulator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Load the state and serve on host:port (0 picks a free port); returns the URL clients should use."""
        if self._server is not None:
            raise RuntimeError("simulator already running")
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        store = MoStore(self.state_path)
        if store.get("uni") is None:
            _seed(store)
        self._store = store
        auth = Authenticator(self.username, self.password)
        self._app = ApicApp(store, auth, self.faults, self.counters, self.tls)
        # Our own listening socket: werkzeug exits the process when a bind fails, we raise instead.
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((host, port))
            listener.listen(128)
            server = make_server(
                host,
                port,
                self._app,
                threaded=True,
                request_handler=_Handler,
                ssl_context=self._ssl_context(host) if self.tls else None,
                fd=listener.fileno(),
            )
        except BaseException:
            store.close()
            raise
        finally:
            listener.close()
        server.apic_connections = set()  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="apic-sim", daemon=True
        )
        self._thread.start()
        bound_host = f"[{host}]" if ":" in host else host
        self.url = f"{'https' if self.tls else 'http'}://{bound_host}:{server.port}"
        return self.url

    def stop(self) -> None:
        """Stop serving, cut open connections and close the state file (idempotent)."""
        server, self._server = self._server, None
        if server is None:
            return
        if self._app is not None:
            self._app.stopped = True
        server.shutdown()
        for connection in list(getattr(server, "apic_connections", ())):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._store is not None:
            with self._store.lock:
                self._store.close()
        self._store = None

    def restart(self) -> str:
        """Stop and start again on the same address, as an APIC process restart would."""
        if self._server is None:
            raise RuntimeError("simulator is not running")
        host, port = self._server.host, self._server.port
        self.stop()
        return self.start(host, port)

    def expire_sessions(self) -> None:
        """Invalidate every session token now: the next request of each client gets 403 (token timeout)."""
        if self._app is not None:
            self._app.auth.expire_all()

    @property
    def object_count(self) -> int:
        return len(self._store) if self._store is not None else 0

    def _ssl_context(self, host: str) -> ssl.SSLContext:
        if not (self.cert_path.exists() and self.key_path.exists()):
            _write_self_signed(self.cert_path, self.key_path, host)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.cert_path), str(self.key_path))
        return context


def _seed(store: MoStore) -> None:
    """What a factory-fresh APIC holds, written by the system (uid 0)."""
    txn = Transaction(store)
    apply_post(txn, "", {"polUni": {"attributes": {"dn": "uni"}}}, uid=SYSTEM_UID)
    for tenant in seed_tree():
        apply_post(txn, "uni", tenant, uid=SYSTEM_UID)
    store.commit(txn.changes)


def _write_self_signed(cert_path: Path, key_path: Path, host: str) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    try:
        address = ipaddress.ip_address(host)
        if not address.is_unspecified and str(address) not in ("127.0.0.1", "::1"):
            names.append(x509.IPAddress(address))
    except ValueError:
        if host and host != "localhost":
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "epgbridge APIC simulator")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_bytes)
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
