"""An APIC REST simulator for tests, demos and interoperability checks (``epgbridge apic-sim``).

It follows docs/apic-rest-facts.md: aaaLogin/aaaRefresh/aaaLogout with the ``APIC-cookie`` (``Secure`` only
over HTTPS), 403 for a missing or timed-out token, writes with ``status`` and the APIC's error codes, DN and
class queries with the query options, paging with ``totalCount`` over all pages, an unknown DN answering 200
with no objects, relations resolved to ``tDn``/``state``, and SQLite persistence.

Choices where the facts file is silent: the login throttle (aaaLogin and aaaRefresh limited per client
address, 2/s with bursts of 10 by default, `--login-rate` and `--login-burst`, answered with 503),
"modified" alone on a missing object answering 102, a child class not allowed under its parent answering code
400, and tokens kept in memory (a restart logs everybody out). XML, websockets and certificate (signature)
authentication are not simulated. docs/apic.md section 9 lists what is covered.
"""

from .faults import Counters, Faults
from .server import Simulator

__all__ = ["Counters", "Faults", "Simulator"]
