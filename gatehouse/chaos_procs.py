"""The processes the fault-injection suite drives: Mosquitto, the cloud, the edge, the simulator.

Each is a real operating-system process started from the installed ``gatehouse`` package (or
the ``mosquitto`` binary), so a SIGKILL is a real crash and a restart is a real cold start.
The helpers only start, stop, kill and wait; they never look inside the processes except
through their public HTTP endpoints (``/healthz``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from gatehouse.processes import terminate_process


class ChaosSetupError(RuntimeError):
    """A process the suite needs could not be started; the message says what is missing."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(predicate: Callable[[], bool], timeout: float, what: str,
               interval: float = 0.2) -> float:
    """Poll ``predicate`` until true; return the seconds it took. Raise naming ``what``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(interval)
    raise ChaosSetupError(f"timed out after {timeout:.0f}s waiting for {what}")


def get_json(url: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """GET ``url`` and decode its JSON body, also for error statuses (a degraded ``/healthz``
    answers 503 with a body). ``None`` when nothing answers or the body is not JSON."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            body = resp.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
    except (OSError, ValueError):
        return None
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def get_text(url: str, timeout: float = 2.0) -> str | None:
    """GET ``url`` as text; ``None`` when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            text: str = resp.read().decode("utf-8", "replace")
            return text
    except (OSError, ValueError):
        return None


class ManagedProcess:
    """One child process with its output appended to a log file.

    ``start`` launches it and waits until ``ready()`` holds (or the process dies, which
    raises with the log's tail). ``kill`` is SIGKILL, ``terminate`` SIGTERM with a grace
    period; both are no-ops on a process that is not running.
    """

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, *,
                 ready: Callable[[], bool] | None = None, ready_timeout: float = 60.0,
                 cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._ready = ready
        self._ready_timeout = ready_timeout
        self._cwd = cwd
        self._env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 1500) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""

    def start(self) -> float:
        """Start and wait until ready; return the seconds it took to become ready."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log: IO[bytes]
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== chaos: start {self.name} at {time.time():.3f}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=log, cwd=self._cwd,
                                         env=self._env, start_new_session=True)
        self.starts += 1
        if self._ready is None:
            return 0.0
        start = time.monotonic()
        while time.monotonic() - start < self._ready_timeout:
            if self._ready():
                return time.monotonic() - start
            if self.proc.poll() is not None:
                raise ChaosSetupError(
                    f"{self.name} exited with {self.proc.returncode} while starting:\n"
                    f"{self.log_tail()}")
            time.sleep(0.1)
        raise ChaosSetupError(f"{self.name} was not ready within {self._ready_timeout:.0f}s:\n"
                              f"{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to flush or close anything."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def terminate(self, grace: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; return the exit code."""
        if self.proc is None:
            return None
        return terminate_process(self.proc, grace, kill_wait=10)


def gatehouse_argv(*args: str) -> list[str]:
    """The command line of a ``gatehouse`` sub-command run by this interpreter."""
    return [sys.executable, "-m", "gatehouse", "--log-level", "WARNING", *args]


def child_env() -> dict[str, str]:
    """The environment of child processes: ours, with this checkout importable."""
    root = str(Path(__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}


def _run_as_line() -> str:
    """As root, keep Mosquitto root. It would drop to the ``mosquitto`` user, which cannot
    reach a folder under a private parent (pytest's ``/tmp/pytest-of-root`` is 0700, so
    chown-ing the folder itself is not enough): every persistence save then fails
    ("Permission denied") and a restart silently forgets every session and queued message,
    losing what the edge had not yet read. The broker is private and on loopback."""
    return "user root\n" if os.geteuid() == 0 else ""


class Broker:
    """A private Mosquitto with persistence; ``restart`` keeps its port and its sessions.

    A graceful stop (SIGTERM) makes Mosquitto write its persistence file, so the queued
    messages of persistent sessions survive the restart, as on a real site's broker.
    """

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        binary = shutil.which("mosquitto") or (
            "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
        if binary is None:
            raise ChaosSetupError(
                "gatehouse chaos needs the mosquitto broker binary: "
                "install it (Debian/Ubuntu: apt-get install mosquitto)")
        self.workdir = workdir
        self.port = port or free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        conf = workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            + _run_as_line()
            + f"persistence true\npersistence_location {workdir}/\n"
            "autosave_interval 5\n"
            "max_queued_messages 0\nmax_inflight_messages 0\n"
            "log_dest stderr\nlog_type error\nlog_type warning\n",
            encoding="utf-8")
        self.process = ManagedProcess("mosquitto", [binary, "-c", str(conf)],
                                      workdir / "mosquitto.log", ready=self._listening,
                                      ready_timeout=20)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _listening(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(
                ("127.0.0.1", self.port), timeout=0.5):
            return True
        return False

    def start(self) -> float:
        return self.process.start()

    def stop(self) -> None:
        self.process.terminate(grace=15)

    def restart(self) -> float:
        self.stop()
        return self.start()

    def errors(self) -> list[str]:
        """Error lines of the broker's log (for example failed persistence saves)."""
        return [line for line in self.process.log_tail(200_000).splitlines()
                if "Error" in line]

    def persistence_failed(self) -> bool:
        """Whether the broker failed to save its state (its restart then lost sessions)."""
        return any(word in line.lower() for line in self.errors()
                   for word in ("permission denied", "persist", "saving"))
