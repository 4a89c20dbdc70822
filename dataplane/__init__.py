"""The node dataplane: nftables rendering from the policy IR, atomic and incremental apply, and the lab."""

from dataplane.apply import NftError, NodeDataplane, Transaction, run_nft
from dataplane.lab import Lab, LabError, LabExternal, LabPod, Probe, cleanup_leftovers
from dataplane.render import render_node

__all__ = [
    "Lab", "LabError", "LabExternal", "LabPod", "NftError", "NodeDataplane", "Probe", "Transaction",
    "cleanup_leftovers", "render_node", "run_nft",
]
