"""Sahana Eden: sync repositories, sync tasks and scheduler jobs (no tokens).

`backend` (the driver), `docs` (pure: spec → S3JSON bodies, answers checked and
compared), `logs` (pure: sync_log rows, tasks and jobs → status and executions),
`schedule` (pure: cron → Eden's fixed job period).
"""
