"""The one error hierarchy of apic_client: everything it raises on purpose derives from ApicError.

Messages are written for the person running epgbridge: they name the APIC, the request path and, when the APIC
answered with an error envelope, its code and text. They never contain a password or a session token.
"""

from __future__ import annotations

from epg.errors import EpgbridgeError


class ApicError(EpgbridgeError):
    """Base of every error raised by apic_client (an EpgbridgeError: the CLI shows it as one line, exit 1)."""


class ApicConnectionError(ApicError):
    """No APIC answered: every URL refused, reset or timed out, after all retries."""


class ApicTLSError(ApicConnectionError):
    """The APIC's TLS certificate did not verify (callers say how to give its CA, or to skip the check)."""


class ApicRequestError(ApicError):
    """The APIC answered a request with an error.

    ``status`` is the HTTP status, ``code`` and ``text`` come from the APIC error envelope
    (``{"imdata": [{"error": {"attributes": {"code": .., "text": ..}}}]}``) when there is one.
    """

    def __init__(self, message: str, *, status: int, code: str = "", text: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.text = text


class ApicAuthError(ApicRequestError):
    """Login was refused (wrong user or password), or the APIC kept rejecting our session token."""


class ApicUnavailableError(ApicRequestError):
    """The APIC kept answering 429 or 503 until the retries ran out."""


class MoTreeError(ApicError):
    """A managed-object tree handed to apic_client is malformed: unknown class, no naming property."""


class SyncError(ApicError):
    """A sync could not be completed; rerunning it is safe and converges."""
