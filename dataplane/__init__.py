"""dataplane."""

from dataplane.lab import Lab, LabError, LabExternal, LabPod, Probe, cleanup_leftovers

__all__ = ["Lab", "LabError", "LabExternal", "LabPod", "Probe", "cleanup_leftovers"]
