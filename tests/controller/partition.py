"""A TCP proxy in front of the fake API server that a test can cut, as a network partition does: while cut,
nothing passes in either direction and nothing is refused or reset (requests hang until the client's own
timeout), which is how a replica cut off from the API server experiences it."""

from __future__ import annotations

import contextlib
import socket
import threading

import kubernetes

from tests.fakekube import FakeKube


class Partition:
    def __init__(self, kube: FakeKube) -> None:
        self.upstream = ("127.0.0.1", int(kube.url.rsplit(":", 1)[1]))
        self.kube = kube
        self.cut = threading.Event()
        self._closed = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.1)
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._thread = threading.Thread(target=self._accept, name="partition", daemon=True)
        self._thread.start()

    def api_client(self) -> kubernetes.client.ApiClient:
        config = self.kube.client_config()
        config.host = self.url
        return kubernetes.client.ApiClient(config)

    def __enter__(self) -> Partition:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5)
        self._server.close()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.close()

    def _keep(self, s: socket.socket) -> None:
        with self._lock:
            self._sockets.add(s)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except (TimeoutError, OSError):
                continue
            self._keep(client)
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            self._keep(upstream)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(0.1)
        while not self._closed.is_set():
            try:
                data = src.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            if self.cut.is_set():
                continue  # lost in the partition
            try:
                dst.sendall(data)
            except OSError:
                break
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

