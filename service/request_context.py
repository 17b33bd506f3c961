"""Request ids carried through a call (contextvars) and into every log line (service.logs)."""

from __future__ import annotations

import contextvars
import logging
import re
import uuid

REQUEST_ID_HEADER = "x-request-id"
_VALID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def accept_request_id(candidate: str | None) -> str:
    """The client's id if it is a sane token (it is echoed and logged), else a new one."""
    if candidate and _VALID.match(candidate):
        return candidate
    return uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    """Adds the current call's request id to every record (``-`` outside a call)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True
