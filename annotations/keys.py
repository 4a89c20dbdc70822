"""Annotation keys epgbridge reads and writes (compatible with the ACI CNI and acikubectl)."""

EPG_ANNOTATION = "opflex.cisco.com/endpoint-group"
