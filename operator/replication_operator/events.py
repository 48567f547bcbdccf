"""Kubernetes Events for every action taken on a server.

`kopf.info` drops Events below the posting level, which the operator raises to
WARNING to keep kopf's own handler chatter out of Events; these go through
`kopf.event` directly so they are always posted. Messages name jobs and fields,
never credential values.
"""

from __future__ import annotations

from typing import Any

import kopf


def normal(body: Any, reason: str, message: str) -> None:
    kopf.event(body, type="Normal", reason=reason, message=message)


def warning(body: Any, reason: str, message: str) -> None:
    kopf.event(body, type="Warning", reason=reason, message=message)
