"""A Server-Sent Events reader that works on lines, so the sync and the async client share it.

It follows the WHATWG event-stream rules that matter here: ``event:`` names the event, ``data:`` lines
are joined with newlines, a blank line ends an event, a line starting with ``:`` is a comment (the API's
keep-alive), and one space after the colon is dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from vividflow.client.errors import EventStreamError
from vividflow.client.models import Job, JobEvent


@dataclass(frozen=True)
class ServerEvent:
    name: str
    data: str
    id: str | None = None


class EventParser:
    """Feed it lines (without their line ending); it returns a ``ServerEvent`` when one is complete."""

    def __init__(self) -> None:
        self._name = ""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, line: str) -> ServerEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        key, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if key == "event":
            self._name = value
        elif key == "data":
            self._data.append(value)
        elif key == "id":
            self._id = value
        return None  # `retry:` and unknown keys are ignored, as the standard says

    def _dispatch(self) -> ServerEvent | None:
        if not self._data:
            self._name = ""
            return None
        event = ServerEvent(self._name or "message", "\n".join(self._data), self._id)
        self._name, self._data = "", []
        return event


def job_event(event: ServerEvent) -> JobEvent:
    """The job event an SSE event carries; its data is the job object as JSON."""
    try:
        return JobEvent(event.name, Job.from_json(json.loads(event.data)))
    except (ValueError, KeyError, TypeError) as exc:
        raise EventStreamError(f"unreadable {event.name!r} event: {event.data[:120]!r}") from exc
