"""The ``gatehouse`` command.

Each sub-command lives with the part it belongs to: its module exposes
``configure(parser)`` (cheap to import: heavy libraries are imported inside ``run``) and
``run(args) -> int``. This file is only the table of sub-commands. Only the module of the
sub-command being run is imported (``gatehouse edge`` does not load the demo's or the cloud's
modules: on a gateway box every megabyte of the agent's memory counts).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from gatehouse import __version__

COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("gatehouse.demo", "run a simulated estate end to end on embedded defaults"),
    "simulate": (
        "simulators.commands",
        "simulate devices: an estate over MQTT, a CSV replay, camera clips",
    ),
    "edge": ("edge.commands", "run the gateway agent for one site"),
    "cloud": ("cloud.commands", "run the cloud service, manage its database, users and tokens"),
    "detect": ("edge.detect_command", "stream a CSV through a kind's detector chain"),
    "detect-video": ("edge.camera.command", "find thrown objects in a camera clip"),
    "eval": ("gatehouse.eval_command", "measure detection: skab, scenarios, throwing"),
    "chaos": ("gatehouse.chaos", "fault-injection run: broker restarts, outages, kills, full disk"),
}


def keep_imports_lean() -> None:
    """Stop libraries from importing what no gatehouse command uses.

    httpx imports its command-line client (click, rich, pygments: about 5 MB resident) when
    those happen to be installed, and they are (amqtt, the demo's broker, needs rich). A
    ``None`` in ``sys.modules`` makes that optional import fail, and httpx then defines a
    stub ``httpx.main`` instead; the HTTP client itself is unaffected.
    """
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


def command_of(argv: Sequence[str]) -> str | None:
    """The sub-command named in ``argv`` (``None`` if there is none, or only options)."""
    args = iter(argv)
    for arg in args:
        if arg == "--log-level":
            next(args, None)
        elif not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with ``only``, the options of that sub-command alone (the
    others are listed but their modules are not imported)."""
    parser = argparse.ArgumentParser(
        prog="gatehouse",
        description="IoT edge gateway and device-telemetry platform for residential estates.",
    )
    parser.add_argument("--version", action="version", version=f"gatehouse {__version__}")
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level (default INFO)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        if only is None or name == only:
            importlib.import_module(module_name).configure(sp)
        sp.set_defaults(_module=module_name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    keep_imports_lean()
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(only=command_of(argv))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    module = importlib.import_module(args._module)
    try:
        code: int = module.run(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
