"""A Docker daemon for the image tests: the one that already answers, else a dockerd started here.

A daemon a test session started is stopped when the last session using it ends: each session
holds a shared lock while it uses the daemon, and only a session that gets the lock exclusively
stops it. A daemon someone else started is never stopped.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pytest

STATE = Path(os.environ.get("CLASSIFY_TEST_DOCKERD_STATE", "/run/classify-test-dockerd"))
STARTED = STATE / "started.pid"  # the dockerd a test session started (absent: none)


def answers(docker: str) -> bool:
    """Whether a daemon answers the docker CLI."""
    try:
        return subprocess.run([docker, "version", "--format", "{{.Server.Version}}"],
                              capture_output=True, timeout=30).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    zombie = any(line.startswith("State:") and "Z" in line for line in status.splitlines())
    return b"dockerd" in cmdline and not zombie


def _start(docker: str, log_path: Path) -> None:
    dockerd = shutil.which("dockerd")
    if dockerd is None or os.geteuid() != 0:
        pytest.fail("no Docker daemon answers and none can be started here (needs root and dockerd: "
                    "`make docker-engine` installs Debian's docker.io)", pytrace=False)
    with log_path.open("ab") as log:
        # Its own session: a Ctrl-C of pytest does not kill the daemon half way through a build.
        process = subprocess.Popen([dockerd], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    STARTED.write_text(str(process.pid))
    deadline = time.monotonic() + 120
    while not answers(docker):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            STARTED.unlink(missing_ok=True)
            pytest.fail(f"dockerd did not come up (exit {process.poll()}):\n{log_path.read_text()[-3000:]}",
                        pytrace=False)
        time.sleep(0.5)


def _stop_started() -> None:
    """Stop the dockerd a test session started, if any; it stops its containers and containerd."""
    try:
        pid = int(STARTED.read_text())
    except (OSError, ValueError):
        return
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while _alive(pid) and time.monotonic() < deadline:
            try:
                os.waitpid(pid, os.WNOHANG)  # reaps it when this process started it
            except ChildProcessError:
                pass
            time.sleep(0.2)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    STARTED.unlink(missing_ok=True)


@contextmanager
def docker_daemon(docker: str, log_path: Path) -> Iterator[None]:
    """A daemon answering ``docker`` for the duration; stopped after if a test session started it."""
    STATE.mkdir(parents=True, exist_ok=True)
    with (STATE / "users.lock").open("a") as users:
        fcntl.flock(users, fcntl.LOCK_SH)
        try:
            with (STATE / "start.lock").open("a") as start:
                fcntl.flock(start, fcntl.LOCK_EX)  # one session starts it, the others wait and use it
                if not answers(docker):
                    _start(docker, log_path)
            yield
        finally:
            fcntl.flock(users, fcntl.LOCK_UN)
            if _last_user(users):  # else another session still uses it: the last one out stops it
                _stop_started()


def _last_user(users: IO[str]) -> bool:
    try:
        fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
