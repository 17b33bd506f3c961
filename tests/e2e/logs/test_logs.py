"""`classify serve`'s logs: readable text at a terminal, one JSON object a line in a pipe (--log-format auto)."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.harness import ServerProcess, free_port

CLASSIFY = str(Path(sys.executable).parent / "classify")
FRAME = "=" * 78


def _drain(fd: int, log_path: Path) -> None:
    """Copy the server's output to a file as it comes (a full pty or pipe would block the server)."""
    with log_path.open("wb") as log:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the pty's other side closed
                break
            if not chunk:
                break
            log.write(chunk)
            log.flush()


@contextmanager
def _serve(tmp_path: Path, *, terminal: bool) -> Iterator[ServerProcess]:
    """`classify serve` without ResNet18 weights (the fallback warning) with stderr on a pty or a pipe."""
    grpc_port, http_port = free_port(), free_port()
    read_fd, write_fd = pty.openpty() if terminal else os.pipe()
    process = subprocess.Popen(
        [CLASSIFY, "serve", "--host", "127.0.0.1", "--grpc-port", str(grpc_port), "--http-port", str(http_port)],
        cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=write_fd, stderr=write_fd,  # no weights/ here
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    os.close(write_fd)
    server = ServerProcess(process, grpc_port, http_port, tmp_path / "serve.log")
    reader = threading.Thread(target=_drain, args=(read_fd, server.log_path), daemon=True)
    reader.start()
    try:
        server.wait_serving()
        yield server
    finally:
        code = server.stop()
        reader.join(30)
        os.close(read_fd)
        assert code == 0, server.log()


def test_text_at_a_terminal_with_multi_line_messages_indented(tmp_path: Path) -> None:
    """On a terminal the settings and the fallback warning read as text, each continuation line indented."""
    with _serve(tmp_path, terminal=True) as server:
        pass
    lines = server.log().replace("\r\n", "\n").splitlines()
    assert not [line for line in lines if line.lstrip().startswith("{")], "JSON on a terminal"
    settings = next(i for i, line in enumerate(lines) if line.endswith("[-] starting with settings:"))
    assert "      host = 127.0.0.1" in lines[settings + 1 : settings + 40]
    warning = next(i for i, line in enumerate(lines) if " WARNING service.core.model_options [-] " in line)
    assert lines[warning + 1] == "    " + FRAME, lines[warning : warning + 3]
    # the framed message is as long as its text: read up to the closing frame line
    end = lines.index("    " + FRAME, warning + 2)
    frame = lines[warning + 1 : end + 1]
    assert all(line.startswith("    ") for line in frame), frame
    assert any(line.startswith("    ResNet18 weights weights/resnet18-f37072fd.pth are not present") for line in frame)
    assert "      classify weights fetch resnet18" in frame


def test_json_lines_in_a_pipe_with_multi_line_messages_kept_whole(tmp_path: Path) -> None:
    """In a pipe every line is one JSON object; the settings and the warning are one record each."""
    with _serve(tmp_path, terminal=False) as server:
        pass
    records = [json.loads(line) for line in server.log().splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message", "request_id"} <= record.keys() for record in records)
    (settings,) = [r for r in records if r["message"].startswith("starting with settings:\n")]
    assert "\n  host = 127.0.0.1\n" in settings["message"]
    (warning,) = [r for r in records if r["logger"] == "service.core.model_options" and r["level"] == "WARNING"]
    assert warning["message"].startswith(f"\n{FRAME}\nResNet18 weights ") and warning["message"].endswith(FRAME)
    assert "\n  classify weights fetch resnet18\n" in warning["message"]
