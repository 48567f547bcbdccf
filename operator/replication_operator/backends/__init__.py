"""One package per server type, all speaking the protocols in `base`.

Backends know nothing of Kubernetes: they take plain requests (what should exist)
and answer with observations (what exists, whether it matches, what state it is in).

Shared here: `base` (the replication protocol), `policies` and `tokens` (the policy
and token protocols), `snapshot` (batched, age-bounded list calls), `factory` (server
type → backend). Each server type is a package with the same inner shape: `backend`
(the driver), a pure module turning specs into server documents and answers into
observations, and `tokens`.
"""
