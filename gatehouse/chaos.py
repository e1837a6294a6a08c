"""``gatehouse chaos``: the fault-injection suite that proves "nothing lost, nothing duplicated".

It drives a real Mosquitto, the cloud, the edge and the estate simulator as separate
processes, injects broker restarts, cloud outages, SIGKILLs of the edge and the cloud and
a full disk under load, then compares the ground truth with the cloud and prints a JSON
report (events sent, received, lost, duplicated; duplicate work orders; telemetry evicted
and whether the count equals the edge's own; SQLite integrity). Exit code 0 when every
promise held, 1 when one broke (the report's ``failures`` say which), 2 when the stack
could not be started (for example no ``mosquitto`` binary). See ``docs/chaos.md``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick", action="store_true",
        help="the short run of the tests: fewer events, one of each fault, short outages",
    )
    parser.add_argument(
        "--events", type=int, default=None,
        help="device-native events to publish (default: 20000, or 1500 with --quick)",
    )
    parser.add_argument(
        "--work-dir", type=Path, default=None,
        help="where logs, databases and report.json go (default: a temporary folder, "
        "removed afterwards unless --keep)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--seed", type=int, default=7, help="simulator seed (default 7)")
    parser.add_argument("--json-out", type=Path, default=None,
                        help="also write the JSON report to this file")
    parser.add_argument("--quiet", action="store_true", help="print only the JSON report")
    parser.add_argument(
        "--database-url", default=None,
        help="the cloud's database, e.g. an empty PostgreSQL database "
        "(postgresql+psycopg://...); default: an SQLite file in the work folder",
    )


def run(args: argparse.Namespace) -> int:
    from gatehouse.chaos_plan import FULL, QUICK
    from gatehouse.chaos_procs import ChaosSetupError
    from gatehouse.chaos_run import run_chaos

    plan = (QUICK if args.quick else FULL).with_events(args.events)
    if plan.events < 1:
        print("gatehouse chaos: --events must be at least 1", file=sys.stderr)
        return 2
    workdir = args.work_dir or Path(tempfile.mkdtemp(prefix="gatehouse-chaos-"))
    try:
        report = run_chaos(plan, workdir, seed=args.seed, progress=not args.quiet,
                           database_url=args.database_url)
    except ChaosSetupError as exc:
        print(f"gatehouse chaos: {exc}", file=sys.stderr)
        return 2
    finally:
        if args.work_dir is None and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json_out is not None:
        args.json_out.write_text(text + "\n", encoding="utf-8")
    if not args.quiet:
        verdict = "PASS" if report["ok"] else "FAIL: " + "; ".join(report["failures"])
        print(f"[chaos] {report['events_sent']} events sent, {report['events_received']} "
              f"received, {report['events_lost']} lost, {report['events_duplicated']} "
              f"duplicated, {report['work_orders_duplicated']} duplicate orders, "
              f"{report['telemetry_evicted']} telemetry readings evicted (counted), "
              f"integrity {report['sqlite_integrity']}: {verdict}", file=sys.stderr)
    return 0 if report["ok"] else 1
