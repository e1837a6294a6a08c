"""Real servers for integration tests, started by the test session on free ports.

Each helper installs its server from Debian packages when the binary is missing (the
tests run as root on the CI machine), starts a private instance in a temporary folder,
waits until it answers and stops it at the end. Nothing is shared between test sessions:
a server already running on a standard port is never used, except PostgreSQL, where each
test takes a fresh database of its own on the running server.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from gatehouse.processes import terminate_process

_APT_UPDATED = False


class ServerUnavailable(RuntimeError):
    """A server could not be installed or started; the message says what to do."""


def ensure_debian_package(binary: str, package: str) -> str:
    """Path of ``binary``, installing Debian ``package`` first when it is missing."""
    global _APT_UPDATED
    found = shutil.which(binary) or (binary if os.path.exists(binary) else None)
    if found:
        return found
    if os.geteuid() != 0:
        raise ServerUnavailable(f"{binary} is missing: install it with 'apt-get install {package}'")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if not _APT_UPDATED:
        subprocess.run(["apt-get", "update", "-q"], check=False, env=env, capture_output=True)
        _APT_UPDATED = True
    proc = subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", package],
        env=env,
        capture_output=True,
        text=True,
    )
    found = shutil.which(binary) or (binary if os.path.exists(binary) else None)
    if proc.returncode != 0 or not found:
        raise ServerUnavailable(
            f"could not install {package} for {binary}: {proc.stderr.strip()[-500:]}"
        )
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 20.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise ServerUnavailable(f"nothing answered on {host}:{port} within {timeout:.0f}s")


@dataclass
class Mosquitto:
    """A private Mosquitto broker. ``restart()`` keeps its port and persistence."""

    workdir: Path
    port: int = field(default_factory=free_port)
    extra_conf: str = ""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = ensure_debian_package("mosquitto", "mosquitto")
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        if not self.extra_conf.strip().startswith("listener"):
            listener = f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
        else:
            listener = ""
        # As root, Mosquitto drops to its own user and then cannot write its persistence
        # into a root-owned temporary folder: sessions would be lost on restart.
        sets_user = any(
            line.strip().startswith("user ") for line in self.extra_conf.splitlines()
        )
        run_as = "user root\n" if os.geteuid() == 0 and not sets_user else ""
        conf.write_text(
            listener
            + run_as
            + f"persistence true\npersistence_location {self.workdir}/\n"
            + "max_queued_messages 1000000\nmax_inflight_messages 0\n"
            + "log_dest stderr\nlog_type error\nlog_type warning\n"
            + self.extra_conf
        )
        log = open(self.workdir / "mosquitto.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=log)
        try:
            wait_for_port(self.port)
        except ServerUnavailable as exc:
            raise ServerUnavailable(
                f"mosquitto did not start: {(self.workdir / 'mosquitto.log').read_text()[-800:]}"
            ) from exc

    def stop(self) -> None:
        if self.proc is not None:
            terminate_process(self.proc, 10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@contextlib.contextmanager
def mosquitto(workdir: Path, extra_conf: str = "") -> Iterator[Mosquitto]:
    broker = Mosquitto(workdir=workdir, extra_conf=extra_conf)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def _pg_admin_dsn() -> str:
    return os.environ.get(
        "GATEHOUSE_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres"
    )


def _start_private_postgres(workdir: Path) -> str:
    """Start a throwaway PostgreSQL cluster (used when none runs on this machine)."""
    bindirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    if not bindirs:
        ensure_debian_package("/usr/lib/postgresql", "postgresql")
        bindirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    bindir = bindirs[-1]
    datadir = workdir / "pgdata"
    port = free_port()
    user = "postgres"
    run_as: list[str] = []
    if os.geteuid() == 0:
        run_as = ["runuser", "-u", "postgres", "--"]
        workdir.mkdir(parents=True, exist_ok=True)
        shutil.chown(workdir, "postgres")
    subprocess.run(
        [*run_as, str(bindir / "initdb"), "-D", str(datadir), "-U", user, "--auth=trust"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *run_as,
            str(bindir / "pg_ctl"),
            "-D",
            str(datadir),
            "-l",
            str(workdir / "pg.log"),
            "-o",
            f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1",
            "start",
            "-w",
        ],
        check=True,
        capture_output=True,
    )
    return f"postgresql://{user}@127.0.0.1:{port}/postgres"


@contextlib.contextmanager
def postgres_database(workdir: Path) -> Iterator[str]:
    """A fresh, empty database; yields its SQLAlchemy URL (``postgresql+psycopg://...``)."""
    import psycopg

    admin = _pg_admin_dsn()
    try:
        with psycopg.connect(admin, connect_timeout=3):
            pass
    except psycopg.OperationalError:
        admin = _start_private_postgres(workdir)
    name = f"gh_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin.rsplit("/", 1)[0]
    try:
        yield f"{base.replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
