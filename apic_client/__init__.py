"""apic_client: talk to a Cisco APIC and keep epgbridge's objects on it in sync.

Public API:
- `ApicSession`: the REST session (login, refresh, retries, rate limit, failover);
- `render_tenants`, `render`: the model as desired MO trees (one fvTenant tree each);
- `plan`, `apply`, `sync`, `Plan`, `OWNER_ANNOTATION`: diff-sync of those trees;
- `ApicError` and its subclasses: every error raised on purpose.
The simulator lives in `apic_client.simulator` (`Simulator`, `Faults`).
"""

from .errors import (
    ApicAuthError,
    ApicConnectionError,
    ApicError,
    ApicRequestError,
    ApicTLSError,
    ApicUnavailableError,
    MoTreeError,
    SyncError,
)
from .render import Rendering, render, render_tenants
from .session import ApicSession
from .sync import OWNER_ANNOTATION, Change, Plan, Post, Skipped, TenantPlan, apply, plan, sync

__all__ = [
    "OWNER_ANNOTATION",
    "ApicAuthError",
    "ApicConnectionError",
    "ApicError",
    "ApicRequestError",
    "ApicSession",
    "ApicTLSError",
    "ApicUnavailableError",
    "Change",
    "MoTreeError",
    "Plan",
    "Post",
    "Rendering",
    "Skipped",
    "SyncError",
    "TenantPlan",
    "apply",
    "plan",
    "render",
    "render_tenants",
    "sync",
]
