"""``gatehouse edge``: run the gateway agent for one site (or check its configuration).

Exit codes: 0 after a clean stop (SIGTERM/SIGINT) or a passing ``--check``; 2 when the
configuration, the profiles or the data folder are unusable (the message says what to fix).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from device_profiles.schema import DeviceProfile
    from device_profiles.site import SiteConfig

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="the site YAML file")
    parser.add_argument("--data-dir", type=Path, help="outbox and dead letters (default: site)")
    parser.add_argument("--http-port", type=int, help="serve /healthz and /metrics on this port")
    parser.add_argument("--http-host", default="127.0.0.1", help="address of /healthz, /metrics")
    parser.add_argument(
        "--check", action="store_true",
        help="validate the site file, the profiles and the detectors, then exit",
    )
    parser.add_argument(
        "--drain-rate", type=float, default=None,
        help="events per second sent to the cloud at most (default: unlimited)",
    )
    parser.add_argument(
        "--telemetry-spool-mb", type=float, default=64.0,
        help="bound of the telemetry spool (oldest evicted first; default 64)",
    )
    parser.add_argument(
        "--reserve-mb", type=float, default=8.0,
        help="disk reserve kept for critical events (default 8)",
    )
    parser.add_argument(
        "--low-water-mb", type=float, default=16.0,
        help="free space below which the agent reports degraded (default 16)",
    )


MALLOC_ARENAS = 2
"""C allocator arenas the agent process uses at most (glibc's default is 8 per core): its
threads share the GIL, so more arenas buy no speed, only freed memory spread over more heaps
(see :mod:`edge.allocator`)."""


def run(args: argparse.Namespace) -> int:
    from edge.allocator import limit_arenas

    limit_arenas(MALLOC_ARENAS)  # before any thread starts
    from device_profiles.loader import ProfileError, load_profiles
    from device_profiles.site import SiteConfigError, load_site
    from edge.detectors.base import DetectorConfigError
    from edge.mqtt_input import MqttConfigError
    from edge.runner import Agent, AgentOptions
    from edge.sqlite_store import StoreError

    try:
        site = load_site(args.config)
        profiles = load_profiles(site.profiles_dir)
    except (SiteConfigError, ProfileError) as exc:
        print(f"error: {exc}\nfix the file, then check it with "
              f"'gatehouse edge --config {args.config} --check'", file=sys.stderr)
        return 2
    mb = 1024 * 1024
    try:
        options = AgentOptions(
            data_dir=args.data_dir, http_port=args.http_port, http_host=args.http_host,
            drain_rate=args.drain_rate, telemetry_max_bytes=int(args.telemetry_spool_mb * mb),
            reserve_bytes=int(args.reserve_mb * mb), low_water_bytes=int(args.low_water_mb * mb),
        )
        if args.check:
            return _check(site, profiles, args.data_dir)
        agent = Agent(site, profiles=profiles, options=options)
    except (DetectorConfigError, MqttConfigError, StoreError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.getLogger("httpx").setLevel(logging.WARNING)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    agent.start()
    if agent.http_port is not None:
        log.info("health on http://%s:%d/healthz and /metrics", args.http_host, agent.http_port)
    while not stop.wait(1.0):
        pass
    agent.stop()
    log.info("edge agent stopped: %s", agent.stats())
    return 0


def _check(
    site: SiteConfig, profiles: Mapping[str, DeviceProfile], data_dir: Path | None
) -> int:
    """Build everything the agent would build and check the data folder is writable,
    without touching the network or the stores."""
    import tempfile

    from edge.detection import Detection
    from edge.diskguard import statvfs_free
    from edge.mqtt_input import parse_broker_url, read_password
    from edge.validate import Validator

    Validator(site, profiles)
    detection = Detection(site, profiles)
    parse_broker_url(site.mqtt.url)
    if site.mqtt.username:
        read_password(site.mqtt)
    token = site.cloud.resolve_token()
    folder = Path(data_dir or site.data_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError as exc:
        print(f"error: data folder {folder} is not writable ({exc.strerror}); create it for "
              "the agent's user or pass --data-dir", file=sys.stderr)
        return 2
    print(
        f"ok: site {site.site_id} (gateway {site.gateway_id}): "
        f"{len(site.all_devices())} devices, {detection.monitor_count} monitors, "
        f"broker {site.mqtt.url}, cloud {site.cloud.url}, data {folder} "
        f"({statvfs_free(folder) // (1024 * 1024)} MiB free)"
        + ("" if token else " (warning: no gateway token configured)")
    )
    return 0
