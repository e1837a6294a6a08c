"""The ``gatehouse`` command.

Each sub-command lives with the part it belongs to: its module exposes
``configure(parser)`` (cheap to import: heavy libraries are imported inside ``run``) and
``run(args) -> int``. This file is only the table of sub-commands.
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


def build_parser() -> argparse.ArgumentParser:
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
        module = importlib.import_module(module_name)
        sp = sub.add_parser(name, help=help_text, description=help_text)
        module.configure(sp)
        sp.set_defaults(_module=module_name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
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
