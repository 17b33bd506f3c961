"""Root logging: text for people at a terminal, one JSON object a line for everything else."""

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


class TextFormatter(logging.Formatter):
    """``time level logger [request id] message``; further lines of the record indented."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\n", "\n" + _INDENT)


def json_wanted(log_format: LogFormat, stream: TextIO) -> bool:
    """``auto``: text when ``stream`` is a terminal, JSON otherwise (containers, CI, files, pipes)."""
    if log_format == "auto":
        return not stream.isatty()
    return log_format == "json"


def configure_logging(level: str, log_format: LogFormat, stream: TextIO | None = None) -> None:
    """Send every record to ``stream`` (stderr), each with its request id, in ``log_format``."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
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
