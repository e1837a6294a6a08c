"""The ``gatehouse`` command imports only what the sub-command being run needs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gatehouse.cli import COMMANDS, build_parser, command_of

REPO = Path(__file__).resolve().parents[1]

_PROBE = """
import json, sys
from gatehouse.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
import edge.runner  # what the agent imports when it starts
print(json.dumps(sorted(sys.modules)))
"""


def modules_after(*argv: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv], cwd=REPO, capture_output=True, text=True,
        check=True, timeout=120,
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["edge", "--config", "site.yaml"], "edge"),
        (["--log-level", "DEBUG", "cloud", "serve"], "cloud"),
        (["--log-level=DEBUG", "demo"], "demo"),
        (["--version"], None),
        (["no-such-command"], None),
        ([], None),
    ],
)
def test_command_of(argv: list[str], command: str | None) -> None:
    assert command_of(argv) == command


def test_the_agent_loads_neither_other_commands_nor_httpx_cli_extras() -> None:
    loaded = modules_after("edge", "--help")
    assert "edge.commands" in loaded
    for unwanted in ("gatehouse.demo", "cloud.commands", "simulators.commands", "asyncio",
                     "rich", "click", "pygments"):
        assert unwanted not in loaded, unwanted
    assert "httpx" in loaded  # the HTTP client itself still works


def test_full_help_still_lists_every_command() -> None:
    help_text = build_parser().format_help()
    for name in COMMANDS:
        assert name in help_text
    edge_only = build_parser(only="edge")
    args = edge_only.parse_args(["edge", "--config", "site.yaml"])
    assert args._module == "edge.commands"
