"""Harbor API v2.0: replication policies, executions, registries and robot accounts.

`backend` (the driver), `docs` (pure: spec → policy / registry bodies, answers →
diffs), `registries` (the remote side as a Harbor endpoint), `paging` (lists and
Location headers), `tokens` (robot accounts as Tokens).
"""
