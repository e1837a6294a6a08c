"""The fault-injection suite (`gatehouse chaos`): being written by the chaos engineer.

Drives a real Mosquitto, the cloud and the edge as separate processes under load,
injects broker restarts, cloud outages, SIGKILLs and a full disk, then compares the
ground truth with the cloud and prints a JSON report.
"""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise SystemExit("gatehouse chaos: not implemented yet")
