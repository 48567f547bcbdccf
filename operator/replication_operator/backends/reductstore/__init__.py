"""ReductStore HTTP API v1: replications and API tokens.

`backend` (the driver), `settings` (pure: spec → replication settings, answers →
observations), `tokens` (API tokens as Tokens).
"""
