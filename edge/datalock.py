"""One agent per data folder: an exclusive ``flock`` on ``agent.lock`` in the folder.

Two agents writing the same outbox would each forward the other's events and race on the
disk reserve. The lock is taken when the agent is built and released when it stops; the
kernel drops it when the process dies (even by SIGKILL), so a crash never leaves it stale.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from edge.sqlite_store import StoreError

LOCK_NAME = "agent.lock"


class DataDirLock:
    """Holds the lock of ``directory`` from construction until :meth:`release`."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_NAME
        self._file: IO[str] | None = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "unknown"
            self._file.close()
            self._file = None
            raise StoreError(
                f"{directory}: another gatehouse edge (pid {holder}) is using this data folder; "
                "stop it first or give this one its own --data-dir"
            ) from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(f"{os.getpid()}\n")
        self._file.flush()

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
