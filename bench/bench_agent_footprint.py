"""Where the idle edge agent's resident memory goes, step by step, for the 5,000-device estate.

Each figure is the process's ``VmRSS`` after one more step, in a fresh interpreter per row:

* Python alone, then the modules ``gatehouse edge`` imports (``edge.runner``,
  ``edge.commands``);
* the same with httpx's optional command-line extras (click, rich, pygments) made
  unimportable, to show what httpx pulls in when they are installed;
* plus the TSDB writer's client library (influxdb-client's write API, which imports numpy),
  and numpy alone on top of the agent's imports;
* the agent constructed for the memory benchmark's estate (``bench_memory.layout``: 498
  buildings, 20 gates) without connecting anywhere: every device's validator, monitors and
  outputs built, plus ``--tracemalloc`` lines: the largest allocation sites of that
  construction, by file.

    .venv/bin/python bench/bench_agent_footprint.py [--buildings 498] [--tracemalloc]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_RSS = """
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS'):
            return int(line.split()[1]) / 1024
"""

STEPS: dict[str, str] = {
    "python": "pass",
    "agent_imports": "import edge.runner, edge.commands",
    "agent_imports_without_httpx_cli_extras": (
        "import sys; sys.modules['click'] = None\nimport edge.runner, edge.commands"
    ),
    "agent_imports_plus_numpy": "import edge.runner, edge.commands, numpy",
    "agent_imports_plus_influxdb_client": (
        "import edge.runner, edge.commands\n"
        "from influxdb_client.client.influxdb_client import InfluxDBClient\n"
        "from influxdb_client.service.write_service import WriteService"
    ),
}

AGENT = """
import gc, sys, tempfile, tracemalloc
sys.path.insert(0, {repo!r})
import edge.runner, edge.commands
from device_profiles.loader import load_profiles
from device_profiles.site import CloudConfig, EstateLayout, MqttConfig, SiteConfig, TsdbConfig
from edge.runner import Agent, AgentOptions
profiles = load_profiles()
site = SiteConfig(
    site_id="footprint", gateway_id="gw", data_dir=tempfile.mkdtemp(prefix="gh-footprint-"),
    mqtt=MqttConfig(url="mqtt://127.0.0.1:1", client_id="footprint"),
    cloud=CloudConfig(url="http://127.0.0.1:1", token="t"),
    tsdb=TsdbConfig(url="http://127.0.0.1:1") if {tsdb} else None,
    estate=EstateLayout(buildings={buildings}, floors=18, elevators_per_building=2,
                        pumps_per_building=2, meters_per_building=5, cameras_per_building=1,
                        gates={gates}),
)
before = rss()
if {trace}:
    tracemalloc.start()
agent = Agent(site, profiles=profiles, options=AgentOptions(forward=False))
gc.collect()
out = {{"before_agent": before, "agent_built": rss(), "numpy_loaded": "numpy" in sys.modules,
        "devices": len(site.all_devices())}}
if {trace}:
    stats = tracemalloc.take_snapshot().statistics("filename")[:12]
    out["top_files_mib"] = [
        [s.traceback[0].filename.replace({repo!r} + "/", ""), round(s.size / 2**20, 2)]
        for s in stats
    ]
print(json.dumps(out))
"""


def run(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, check=True)
    return proc.stdout.strip().splitlines()[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--buildings", type=int, default=498)
    parser.add_argument("--gates", type=int, default=20)
    parser.add_argument("--tracemalloc", action="store_true")
    args = parser.parse_args()
    result: dict[str, object] = {}
    for name, step in STEPS.items():
        result[name] = float(run(_RSS + step + "\nprint(round(rss(), 1))"))
    for tsdb in (True, False):
        code = "import json\n" + _RSS + AGENT.format(
            repo=str(REPO), buildings=args.buildings, gates=args.gates, trace=False, tsdb=tsdb)
        result["agent_with_tsdb" if tsdb else "agent_without_tsdb"] = json.loads(run(code))
    if args.tracemalloc:
        code = "import json\n" + _RSS + AGENT.format(
            repo=str(REPO), buildings=args.buildings, gates=args.gates, trace=True, tsdb=True)
        result["tracemalloc_agent_with_tsdb"] = json.loads(run(code))
    print(json.dumps({"bench": "agent_footprint", **result}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
