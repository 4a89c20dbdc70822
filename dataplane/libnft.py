"""nft in-process: libnftables (the library the `nft` command is built on) through ctypes.

An update of a node's table is a few set elements; run as an `nft` process it costs a fork and exec, the
process's netlink set-up and, on exit, the socket's teardown, several milliseconds that dwarf the transaction
itself (measured in README, "Dataplane"). A context keeps one netlink socket, opened in the network namespace
the context was made in (the lab's node namespaces: the calling thread enters it just for that), so later
calls need no namespace switch. Where the library is missing, `available()` says so and callers run the `nft`
program instead: the scripts are the same. (Whole tables, too, go to the program: see apply.IN_PROCESS_MAX.)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from types import TracebackType

from dataplane.netns import NETNS_DIR, entered

_LIB: ctypes.CDLL | None = None
OUTPUT_JSON = 1 << 4  # NFT_CTX_OUTPUT_JSON
OUTPUT_TERSE = 1 << 11  # NFT_CTX_OUTPUT_TERSE: no set elements
_LOCK = threading.Lock()


def _load() -> ctypes.CDLL | None:
    global _LIB
    with _LOCK:
        if _LIB is None:
            name = ctypes.util.find_library("nftables") or "libnftables.so.1"
            try:
                lib = ctypes.CDLL(name)
            except OSError:
                return None
            lib.nft_ctx_new.restype = ctypes.c_void_p
            lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
            lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
            lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
            lib.nft_ctx_output_get_flags.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_output_get_flags.restype = ctypes.c_uint
            lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
            lib.nft_ctx_set_dry_run.argtypes = [ctypes.c_void_p, ctypes.c_bool]
            lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
            lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
            _LIB = lib
        return _LIB


def available() -> bool:
    return _load() is not None


class NftContext:
    """One libnftables context, bound to the network namespace `netns` (None: the caller's)."""

    def __init__(self, netns: str | None = None) -> None:
        lib = _load()
        if lib is None:
            raise OSError("libnftables is not installed")
        self._lib = lib
        if netns is None:
            ctx = lib.nft_ctx_new(0)
        else:
            fd = os.open(os.path.join(NETNS_DIR, netns), os.O_RDONLY | os.O_CLOEXEC)
            try:
                with entered(fd):
                    ctx = lib.nft_ctx_new(0)
            finally:
                os.close(fd)
        if not ctx:
            raise OSError("libnftables could not make a context")
        self._ctx: int | None = ctx
        lib.nft_ctx_buffer_output(ctx)
        lib.nft_ctx_buffer_error(ctx)

    def run(self, script: str, *, check: bool = False) -> str | None:
        """Run (or with `check` only check) a script; None when nft took it, else nft's error text."""
        if self._ctx is None:
            raise OSError("the libnftables context is closed")
        self._lib.nft_ctx_set_dry_run(self._ctx, check)
        try:
            status = self._lib.nft_run_cmd_from_buffer(self._ctx, script.encode())
        finally:
            self._lib.nft_ctx_set_dry_run(self._ctx, False)
        if status == 0:
            self._lib.nft_ctx_get_error_buffer(self._ctx)  # reading the buffer empties it
            return None
        return (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode(errors="replace")

    def query(self, command: str, *, terse: bool = False) -> tuple[str | None, str]:
        """Run a listing command with JSON output (`terse`: without set elements): (None, the JSON text) or
        (nft's error text, "")."""
        if self._ctx is None:
            raise OSError("the libnftables context is closed")
        flags = self._lib.nft_ctx_output_get_flags(self._ctx)
        self._lib.nft_ctx_output_set_flags(self._ctx, flags | OUTPUT_JSON | (OUTPUT_TERSE if terse else 0))
        try:
            status = self._lib.nft_run_cmd_from_buffer(self._ctx, command.encode())
        finally:
            self._lib.nft_ctx_output_set_flags(self._ctx, flags)
        output = (self._lib.nft_ctx_get_output_buffer(self._ctx) or b"").decode(errors="replace")
        error = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode(errors="replace")
        return (None, output) if status == 0 else (error or "nft failed", "")

    def close(self) -> None:
        if self._ctx is not None:
            self._lib.nft_ctx_free(self._ctx)
            self._ctx = None

    def __enter__(self) -> NftContext:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_ctx", None) is not None:
            self.close()
