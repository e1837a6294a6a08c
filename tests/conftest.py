"""Session fixtures: real servers on free ports, private to this test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import Mosquitto, mosquitto, postgres_database


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A Mosquitto broker for the whole session; tests use unique site ids as topic roots."""
    with mosquitto(tmp_path_factory.mktemp("mosquitto")) as b:
        yield b


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    """A fresh PostgreSQL database for one test (SQLAlchemy URL)."""
    with postgres_database(tmp_path) as url:
        yield url
