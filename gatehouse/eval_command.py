"""``gatehouse eval``: detection quality on labelled data (a contract: other tools call it)."""

from __future__ import annotations

import argparse
import importlib


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="eval_what", metavar="WHAT", required=True)
    skab = sub.add_parser(
        "skab", help="pump testbed benchmark (SKAB protocol: first 400 rows train, rest test)"
    )
    skab.add_argument(
        "dir", help="folder holding the labelled SKAB CSV files (searched recursively)"
    )
    skab.add_argument("--json", action="store_true", help="print one JSON object")
    skab.set_defaults(_eval="edge.evaluation.skab")
    sc = sub.add_parser("scenarios", help="simulated fault scenarios with ground truth")
    sc.add_argument("--json", action="store_true", help="print one JSON object")
    sc.add_argument("--seed", type=int, default=7)
    sc.add_argument("--devices", type=int, default=0, help="devices per kind (0: default)")
    sc.add_argument("--days", type=float, default=0.0, help="simulated days (0: default)")
    sc.set_defaults(_eval="edge.evaluation.scenarios")
    th = sub.add_parser("throwing", help="thrown-object detection over a folder of clips")
    th.add_argument("dir", help="folder of clips (NAME.mp4|NAME.avi beside NAME.json)")
    th.add_argument("--json", action="store_true", help="print one JSON object")
    th.add_argument("--jobs", type=int, default=1,
                    help="clips evaluated in parallel (figures are per clip, so identical)")
    th.set_defaults(_eval="edge.camera.evaluation")


def run(args: argparse.Namespace) -> int:
    module = importlib.import_module(args._eval)
    code: int = module.run(args)
    return code
