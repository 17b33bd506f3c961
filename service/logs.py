"""Root logging: text for people at a terminal, one JSON object a line for everything else.

Every record carries the call's request id; with tracing on, records written while a
span is current also carry its ``trace_id`` and ``span_id`` (W3C hex), so logs and
traces join.
"""

from __future__ import annotations

import atexit
import io
import logging
import os
import re
import sys
import threading
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


# absl / gRPC core's prefix: severity letter, MMDD, time, thread id, then file:line].
_NATIVE_LINE = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ (.*)$")
_NATIVE_LEVELS = {"I": logging.INFO, "W": logging.WARNING, "E": logging.ERROR, "F": logging.CRITICAL}


class _DropColour(logging.Filter):
    """uvicorn adds ``color_message`` (the message with ANSI colour codes) to its records: not for a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__.pop("color_message", None)
        return True


class NativeStderr:
    """What C and C++ libraries write to file descriptor 2 (gRPC core's "I1206 ... Handshake failed",
    ONNX Runtime, OpenMP), read back line by line and logged as records of the ``native`` logger.

    File descriptor 2 becomes a pipe that a daemon thread reads; the process's own records go to
    the original stderr through ``self.stream``. Only for JSON logs: there a raw line would break
    "one object a line"; a person at a terminal reads the raw lines as they are.
    """

    def __init__(self) -> None:
        sys.stderr.flush()
        self._saved = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        self.stream: TextIO = io.TextIOWrapper(
            io.FileIO(self._saved, "w", closefd=False), encoding="utf-8", errors="backslashreplace", line_buffering=True
        )
        sys.stderr = self.stream  # Python's own writes (warnings, faulthandler text) skip the pipe
        self._logger = logging.getLogger("native")
        self._thread = threading.Thread(target=self._pump, args=(read_end,), name="native-stderr", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def _pump(self, read_end: int) -> None:
        with open(read_end, "rb") as pipe:
            for raw in pipe:
                line = raw.decode("utf-8", "backslashreplace").rstrip()
                if not line:
                    continue
                match = _NATIVE_LINE.match(line)
                if match:
                    self._logger.log(_NATIVE_LEVELS[match.group(1)], "%s", match.group(2))
                else:
                    self._logger.warning("%s", line)

    def close(self) -> None:
        """Give fd 2 back to the original stderr; the reader logs what is left in the pipe, then ends."""
        os.dup2(self._saved, 2)  # closes the pipe's last write end: the reader sees end of file
        self._thread.join(timeout=2)


_native: NativeStderr | None = None


def json_wanted(log_format: LogFormat, stream: TextIO) -> bool:
    """``auto``: text when ``stream`` is a terminal, JSON otherwise (containers, CI, files, pipes)."""
    if log_format == "auto":
        return not stream.isatty()
    return log_format == "json"


def configure_logging(
    level: str, log_format: LogFormat, stream: TextIO | None = None, trace_ids: bool = False
) -> None:
    """Send every record to ``stream`` (stderr), each with its request id (and ``trace_ids``), in ``log_format``."""
    global _native
    stream = stream or sys.stderr
    json_lines = json_wanted(log_format, stream)
    if json_lines and stream is sys.__stderr__ and _native is None:
        _native = NativeStderr()
    if _native is not None and stream is sys.__stderr__:
        stream = _native.stream
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.addFilter(_DropColour())
    if trace_ids:
        handler.addFilter(TraceContextFilter())
    if json_lines:
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
