"""Root logging: text for people at a terminal, one JSON object a line for everything else.

Every record carries the call's request id; with tracing on, records written while a
span is current also carry its ``trace_id`` and ``span_id`` (W3C hex), so logs and
traces join.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal, TextIO

from pythonjsonlogger.json import JsonFormatter

from service.request_context import RequestIdFilter

LogFormat = Literal["auto", "json", "text"]
# Continuation lines of a multi-line record (the settings, the fallback warning, a
# traceback) are indented, so where one record ends and the next begins stays plain.
_INDENT = "    "


class TraceContextFilter(logging.Filter):
    """Adds ``trace_id`` and ``span_id`` to records written while a sampled span is current."""

    def __init__(self) -> None:
        super().__init__()
        from opentelemetry import trace  # the API only; installed only when tracing is on

        self._current_span = trace.get_current_span

    def filter(self, record: logging.LogRecord) -> bool:
        context = self._current_span().get_span_context()
        if context.is_valid and context.trace_flags.sampled:
            record.trace_id = format(context.trace_id, "032x")
            record.span_id = format(context.span_id, "016x")
        return True


class TextFormatter(logging.Formatter):
    """``time level logger [request id] message``; further lines of the record indented.

    With a span: ``[request id trace_id=... span_id=...]``.
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        self._traced = logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s [%(request_id)s trace_id=%(trace_id)s span_id=%(span_id)s] %(message)s"
        )

    def format(self, record: logging.LogRecord) -> str:
        text = self._traced.format(record) if hasattr(record, "trace_id") else super().format(record)
        return text.replace("\n", "\n" + _INDENT)


def json_wanted(log_format: LogFormat, stream: TextIO) -> bool:
    """``auto``: text when ``stream`` is a terminal, JSON otherwise (containers, CI, files, pipes)."""
    if log_format == "auto":
        return not stream.isatty()
    return log_format == "json"


def configure_logging(
    level: str, log_format: LogFormat, stream: TextIO | None = None, trace_ids: bool = False
) -> None:
    """Send every record to ``stream`` (stderr), each with its request id (and ``trace_ids``), in ``log_format``."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    if trace_ids:
        handler.addFilter(TraceContextFilter())
    if json_wanted(log_format, stream):
        # json.dumps escapes newlines: a multi-line message is still one object on one line.
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries' warnings.warn (torch's ONNX exporter on a first start) become
    # records too, so a JSON log stays one object a line.
    logging.captureWarnings(True)
