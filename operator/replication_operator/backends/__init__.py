"""One module per server type, all speaking the protocols in `base`.

Backends know nothing of Kubernetes: they take plain requests (what should exist)
and answer with observations (what exists, whether it matches, what state it is in).
"""
