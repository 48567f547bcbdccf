"""CouchDB, Cloudant and PouchDB Server: `_replicator` jobs and `_users` tokens.

`backend` (the driver), `docs` (pure: spec → `_replicator` doc, server answers →
observations), `selector` (Mango → JavaScript filter), `tokens` (users as Tokens).
"""
