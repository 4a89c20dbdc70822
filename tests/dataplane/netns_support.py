"""Shared by the tests that need real network namespaces: why they would be skipped here, if at all."""

from __future__ import annotations

import os
import shutil
import sys

import pytest


def why_not() -> str | None:
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth pairs, nftables)"
    missing = [tool for tool in ("ip", "nft") if shutil.which(tool) is None]
    if missing:
        return f"needs {' and '.join(missing)} on PATH"
    return None


WHY_NOT = why_not()
requires_netns = pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")
