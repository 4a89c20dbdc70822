"""Annotation keys epgbridge reads and writes (compatible with the ACI CNI and acikubectl)."""

EPG_ANNOTATION = "opflex.cisco.com/endpoint-group"

# On a NetworkPolicy: "audit" evaluates it without enforcing it (what it alone would drop passes, reported as
# "would drop"); "enforce" (or no annotation) enforces it.
MODE_ANNOTATION = "epgbridge.io/mode"
MODES = ("enforce", "audit")
