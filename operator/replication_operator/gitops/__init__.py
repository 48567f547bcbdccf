"""Bring an existing fleet under GitOps: `export` what is on a server as manifests,
`plan` what applying manifests would do. Both only read: from the cluster (GET and
LIST) and from the servers (connections that refuse every write), and both decide with
the operator's own resolve / observe / plan code, so they cannot disagree with it.
"""
