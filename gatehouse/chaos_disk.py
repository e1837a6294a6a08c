"""A small filesystem of the edge's own, which the suite fills with ballast and frees again.

The edge's data folder is a tmpfs of a fixed size mounted for the run (root is needed).
A tmpfs is real to the process: a write past its size fails with ``ENOSPC`` exactly as on a
full SD card, which is the condition the edge must survive. What a tmpfs does not simulate
is a power cut (its pages live in RAM); the suite's crashes are process kills (SIGKILL).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path


class MountUnavailable(RuntimeError):
    """The small filesystem could not be mounted (not root, or no permission to mount)."""


class SmallDisk:
    """A tmpfs of ``size_mb`` at ``path``; :meth:`fill` writes ballast to ENOSPC, :meth:`free`
    deletes it. ``mounted`` is False when mounting was impossible (see :meth:`mount`)."""

    def __init__(self, path: Path, size_mb: int) -> None:
        self.path = path
        self.size_mb = size_mb
        self.mounted = False
        self.ballast = path / "chaos-ballast.bin"

    def mount(self) -> None:
        """Mount the tmpfs; raise :class:`MountUnavailable` with the reason if impossible."""
        self.path.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0 or shutil.which("mount") is None:
            raise MountUnavailable("mounting a tmpfs needs root and the mount command")
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size_mb}m", "tmpfs", str(self.path)],
            capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise MountUnavailable(f"mount -t tmpfs failed: {proc.stderr.strip()}")
        self.mounted = True

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True, check=False)
            self.mounted = False

    def free_bytes(self) -> int:
        stat = os.statvfs(self.path)
        return stat.f_bavail * stat.f_frsize

    def fill(self) -> int:
        """Write ballast until the filesystem refuses (ENOSPC); return the bytes written."""
        written = 0
        chunk = b"\0" * (1024 * 1024)
        with open(self.ballast, "ab", buffering=0) as out:
            for size in (1024 * 1024, 64 * 1024, 4096, 512):
                piece = chunk[:size]
                while True:
                    try:
                        out.write(piece)
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
                    written += size
        return written

    def free(self) -> None:
        """Delete the ballast: the space returns at once."""
        self.ballast.unlink(missing_ok=True)
