"""Disk-space guard of the data folder: a low-water mark and a reserve for critical events.

At start the guard writes a *reserve* file (ballast) of ``reserve_bytes`` next to the
stores. When a write of critical events fails because the disk is full, the runner calls
:meth:`DiskGuard.release_reserve`, which deletes the ballast so that those events fit; when
space returns, :meth:`ensure_reserve` puts the ballast back. Below ``low_water_bytes`` of
free space the agent reports itself degraded and stops spooling telemetry.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

RESERVE_NAME = "reserve.bin"


def statvfs_free(path: Path) -> int:
    """Bytes available to this process on the filesystem holding ``path``."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


class DiskGuard:
    """Watches free space in ``directory`` and holds a deletable reserve file."""

    def __init__(
        self,
        directory: Path,
        *,
        reserve_bytes: int = 8 * 1024 * 1024,
        low_water_bytes: int = 16 * 1024 * 1024,
        free_bytes: Callable[[Path], int] = statvfs_free,
    ) -> None:
        if reserve_bytes < 0 or low_water_bytes < 0:
            raise ValueError("reserve_bytes and low_water_bytes must not be negative")
        self.directory = directory
        self.reserve_bytes = reserve_bytes
        self.low_water_bytes = low_water_bytes
        self._free_bytes = free_bytes
        self.reserve_path = directory / RESERVE_NAME
        self.releases = 0

    def free(self) -> int:
        """Free bytes now (0 if the filesystem cannot be asked)."""
        try:
            return self._free_bytes(self.directory)
        except OSError:
            return 0

    def low(self) -> bool:
        """Whether free space is under the low-water mark."""
        return self.free() < self.low_water_bytes

    @property
    def reserve_held(self) -> bool:
        """Whether the reserve file is in place (always, when no reserve is configured)."""
        if self.reserve_bytes == 0:
            return True
        try:
            return self.reserve_path.stat().st_size >= self.reserve_bytes
        except OSError:
            return False

    def ensure_reserve(self) -> bool:
        """Put the reserve in place if there is room beyond the low-water mark.

        Returns whether the reserve is held afterwards. Never raises for lack of space.
        """
        if self.reserve_held:
            return True
        if self.free() < self.reserve_bytes + self.low_water_bytes:
            return False
        tmp = self.reserve_path.with_suffix(".tmp")
        try:
            with open(tmp, "wb") as f:
                chunk = b"\0" * (1024 * 1024)
                left = self.reserve_bytes
                while left > 0:
                    f.write(chunk[: min(left, len(chunk))])
                    left -= min(left, len(chunk))
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(self.reserve_path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            return False
        return True

    def release_reserve(self) -> int:
        """Delete the reserve; return the bytes it gave back (0 if none was held)."""
        try:
            size = self.reserve_path.stat().st_size
            self.reserve_path.unlink()
        except OSError:
            return 0
        self.releases += 1
        return size
