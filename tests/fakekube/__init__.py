"""A fake Kubernetes API server speaking the real list/watch wire protocol, for tests that run the
official `kubernetes` client: `FakeKube`, and `ApiError` (what the in-process helpers raise)."""

from .server import CRD_DIR, FakeKube, Request
from .store import ApiError

__all__ = ["CRD_DIR", "ApiError", "FakeKube", "Request"]
