"""Stopping child processes politely: SIGTERM, then SIGKILL when the grace runs out."""

from __future__ import annotations

import signal
import subprocess
from typing import Any


def terminate_process(
    proc: subprocess.Popen[Any], grace: float, kill_wait: float | None = None
) -> int | None:
    """SIGTERM ``proc`` if it runs, SIGKILL it after ``grace`` seconds; its exit code.

    ``kill_wait`` bounds the wait after SIGKILL (``None``: wait until it is gone).
    """
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(kill_wait)
    return proc.returncode
