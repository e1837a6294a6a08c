"""``gatehouse simulate``: ``estate`` over MQTT, ``replay`` of a CSV, ``camera`` clips.

Cheap to import: models, numpy and paho are imported inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

from device_profiles.durations import parse_duration

log = logging.getLogger("gatehouse.simulate")

_TIME_KEYS = ("start", "end", "duration", "ramp")


class FaultArgError(ValueError):
    """A ``--fault`` argument is malformed."""


def parse_fault_arg(text: str) -> tuple[str, str, dict[str, Any]]:
    """``TYPE@DEVICE[:k=v,...]`` -> (type, device, options).

    ``start``, ``end``, ``duration`` and ``ramp`` accept durations (``90``, ``10m``, ``2h``);
    other values become numbers when they look like numbers, else stay strings.
    """
    head, _, rest = text.partition(":")
    fault_type, at, device = head.partition("@")
    if not at or not fault_type or not device:
        raise FaultArgError(f"--fault {text!r}: expected TYPE@DEVICE[:start=S,end=S,...]")
    options: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise FaultArgError(f"--fault {text!r}: option {item!r} must be key=value")
        if key in _TIME_KEYS:
            try:
                options[key] = parse_duration(value)
            except ValueError as exc:
                raise FaultArgError(f"--fault {text!r}: {key}: {exc}") from exc
        else:
            try:
                options[key] = float(value)
            except ValueError:
                options[key] = value
    return fault_type.strip(), device.strip(), options


def _start_time(text: str | None) -> float:
    if not text:
        return time.time()
    try:
        return float(text)
    except ValueError:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="sim_command", metavar="SUBCOMMAND", required=True)
    est = sub.add_parser(
        "estate",
        help="publish a simulated estate's telemetry to a broker",
        description="Publish a simulated estate (elevators, pumps, meters, gates, cameras) "
        "with optional injected faults and their ground truth.",
    )
    est.add_argument(
        "--broker",
        default=None,
        help="mqtt://host:port (default: the config's mqtt.url or 127.0.0.1:1883)",
    )
    est.add_argument("--config", help="site YAML: its site_id and devices/estate layout")
    est.add_argument("--site-id", default=None, help="site id (default: config's or estate-1)")
    est.add_argument("--buildings", type=int, help="buildings (default 2)")
    est.add_argument("--floors", type=int, help="floors per building (default 18)")
    est.add_argument("--elevators", type=int, help="elevators per building (default 2)")
    est.add_argument("--pumps", type=int, help="water pumps per building (default 2)")
    est.add_argument("--meters", type=int, help="smart meters per building (default 3)")
    est.add_argument("--gates", type=int, help="access gates of the estate (default 2)")
    est.add_argument("--cameras", type=int, help="cameras per building (default 1)")
    est.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    est.add_argument(
        "--duration",
        type=float,
        default=0.0,
        help="wall-clock seconds to run; 0 runs until Ctrl-C (default)",
    )
    est.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="simulated seconds per wall second (default 1: timestamps = now)",
    )
    est.add_argument(
        "--start", default=None, help="simulated start time, epoch seconds or ISO (default: now)"
    )
    est.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="TYPE@DEVICE[:k=v,...]",
        help="inject a fault; start/end/duration relative to the run start, e.g. "
        "pump.bearing_wear@b1-pump-1:start=60,ramp=10m (repeatable)",
    )
    est.add_argument(
        "--random-faults",
        type=int,
        default=0,
        metavar="N",
        help="inject N faults at random devices, types and times",
    )
    est.add_argument(
        "--random-horizon",
        type=float,
        default=3600.0,
        metavar="S",
        help="random faults start and end within S simulated seconds (default 3600)",
    )
    est.add_argument(
        "--truth",
        default=None,
        metavar="FILE.jsonl",
        help="write the ground truth of every injected fault here",
    )
    est.add_argument(
        "--qos",
        type=int,
        choices=[0, 1, 2],
        default=0,
        help="QoS of telemetry (default 0; status and events use 1)",
    )
    est.add_argument(
        "--rate-limit",
        type=float,
        default=None,
        metavar="MSG_S",
        help="publish at most this many samples per second",
    )
    est.add_argument(
        "--protocol",
        choices=["v5", "v311"],
        default=None,
        help="MQTT protocol (default: the config's, else v5)",
    )
    est.add_argument(
        "--stats-every",
        type=float,
        default=10.0,
        metavar="S",
        help="log counters every S seconds (0: never)",
    )
    est.add_argument(
        "--list-faults",
        action="store_true",
        help="print the injectable fault types per kind and exit",
    )
    est.set_defaults(_sim_run=run_estate)

    rep = sub.add_parser(
        "replay",
        help="replay a CSV recording as one device's telemetry",
        description="Publish the rows of a CSV recording (such as a SKAB file) as a device's "
        "telemetry, keeping their recorded time offsets.",
    )
    rep.add_argument("file", help="CSV file")
    rep.add_argument("--device", required=True, help="device id to publish as")
    rep.add_argument("--kind", default="water_pump", help="device kind (default water_pump)")
    rep.add_argument("--site-id", required=True, help="site id")
    rep.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="mqtt://host:port")
    rep.add_argument("--sep", default=";", help="column separator (default ';')")
    rep.add_argument("--time-column", default="datetime", help="time column (default datetime)")
    rep.add_argument(
        "--label-column",
        default="anomaly",
        help="0/1 anomaly label column, if present (default anomaly)",
    )
    rep.add_argument(
        "--anomaly-type",
        default=None,
        help="event type of labelled anomalies in the truth (default {prefix}.anomaly)",
    )
    rep.add_argument("--speed", type=float, default=1.0, help="replay speed (default 1)")
    rep.add_argument("--loop", action="store_true", help="start over at the end, forever")
    rep.add_argument(
        "--truth",
        default=None,
        metavar="FILE.jsonl",
        help="write the labelled anomaly intervals as ground truth",
    )
    rep.add_argument("--qos", type=int, choices=[0, 1, 2], default=0)
    rep.add_argument("--protocol", choices=["v5", "v311"], default="v5")
    rep.set_defaults(_sim_run=run_replay)

    cam = sub.add_parser("camera", help="render camera clips with thrown objects and distractors")
    _delegate_camera(cam)


def _delegate_camera(parser: argparse.ArgumentParser) -> None:
    try:
        module = importlib.import_module("simulators.camera.command")
    except ImportError as exc:
        message = f"the camera simulator is not available: {exc}"

        def unavailable(args: argparse.Namespace) -> int:
            print(message, file=sys.stderr)
            return 2

        parser.set_defaults(_sim_run=unavailable)
        return
    module.configure(parser)
    parser.set_defaults(_sim_run=module.run)


def run(args: argparse.Namespace) -> int:
    code: int = args._sim_run(args)
    return code


# -- estate ---------------------------------------------------------------------------


def build_site(args: argparse.Namespace) -> Any:
    """The site to simulate: the config file's, with layout options overriding it."""
    from device_profiles.site import EstateLayout, SiteConfig, load_site

    site = load_site(args.config) if args.config else SiteConfig(site_id="estate-1")
    layout_opts = {
        "buildings": args.buildings,
        "floors": args.floors,
        "elevators_per_building": args.elevators,
        "pumps_per_building": args.pumps,
        "meters_per_building": args.meters,
        "gates": args.gates,
        "cameras_per_building": args.cameras,
    }
    given = {k: v for k, v in layout_opts.items() if v is not None}
    updates: dict[str, Any] = {}
    if given or (site.estate is None and not site.devices):
        base = site.estate.model_dump() if site.estate is not None else {}
        updates["estate"] = EstateLayout.model_validate(base | given)
    if args.site_id:
        updates["site_id"] = args.site_id
    if updates:
        site = SiteConfig.model_validate(site.model_dump() | updates)
    return site


def run_estate(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from device_profiles.site import SiteConfigError
    from simulators.models import FAULT_TYPES, MODELS, FaultError, FaultSpec, default_duration
    from simulators.mqtt_client import BrokerError
    from simulators.publisher import EstatePublisher

    if args.list_faults:
        for kind, types in FAULT_TYPES.items():
            print(f"{kind}: {', '.join(types)}")
        return 0
    try:
        site = build_site(args)
    except (SiteConfigError, ValidationError) as exc:
        print(f"gatehouse simulate: {exc}", file=sys.stderr)
        return 2
    kinds = {d.id: d.kind for d in site.all_devices()}
    start_ts = _start_time(args.start)
    faults = []
    try:
        for text in args.fault:
            fault_type, device, opts = parse_fault_arg(text)
            if device not in kinds:
                raise FaultError(f"--fault {text!r}: unknown device {device!r}")
            start = float(opts.pop("start", 0.0))
            end = opts.pop("end", None)
            duration = opts.pop("duration", None)
            if end is None:
                model = MODELS[kinds[device]]
                duration = (
                    duration if duration is not None else default_duration(model, fault_type, opts)
                )
                end = start + float(duration)
            faults.append(
                FaultSpec(device, fault_type, start_ts + start, start_ts + float(end), opts)
            )
        broker = args.broker or site.mqtt.url
        pub = EstatePublisher(
            site,
            broker,
            seed=args.seed,
            speed=args.speed,
            faults=faults,
            truth_path=args.truth,
            random_faults=args.random_faults,
            random_horizon=args.random_horizon,
            duration=args.duration,
            start_ts=start_ts,
            qos=args.qos,
            rate_limit=args.rate_limit,
            protocol=args.protocol,
        )
    except (FaultArgError, FaultError, ValueError, BrokerError) as exc:
        print(f"gatehouse simulate: {exc}", file=sys.stderr)
        return 2
    try:
        pub.start()
    except BrokerError as exc:
        print(f"gatehouse simulate: {exc}", file=sys.stderr)
        return 1
    log.info(
        "simulating %d devices of site %s on %s at speed %g",
        len(pub.devices),
        site.site_id,
        broker,
        args.speed,
    )
    _wait(pub, args.stats_every)
    pub.stop()
    print(json.dumps(pub.stats(), sort_keys=True))
    return 0


def _wait(pub: Any, stats_every: float) -> None:
    """Run until the publisher ends, Ctrl-C or SIGTERM; log counters now and then."""
    stop = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        next_log = time.monotonic() + stats_every
        while not stop.is_set() and not pub.wait(0.2):
            if stats_every > 0 and time.monotonic() >= next_log:
                next_log += stats_every
                log.info("stats %s", json.dumps(pub.stats(), sort_keys=True))
    except KeyboardInterrupt:
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


# -- replay ---------------------------------------------------------------------------


def run_replay(args: argparse.Namespace) -> int:
    from device_profiles.loader import load_profiles
    from device_profiles.messages import telemetry_topic
    from simulators.models import KIND_PREFIX, FaultSpec
    from simulators.mqtt_client import BrokerError, connect_client
    from simulators.replay import RecordingError, RowPublisher, read_recording
    from simulators.truth import GroundTruth

    profiles = load_profiles()
    if args.kind not in profiles:
        print(f"gatehouse simulate replay: unknown kind {args.kind!r}", file=sys.stderr)
        return 2
    profile = profiles[args.kind]
    try:
        recording = read_recording(
            args.file,
            profile,
            sep=args.sep,
            time_column=args.time_column,
            label_column=args.label_column,
        )
    except RecordingError as exc:
        print(f"gatehouse simulate replay: {exc}", file=sys.stderr)
        return 2
    if not args.speed > 0:
        print("gatehouse simulate replay: --speed must be positive", file=sys.stderr)
        return 2
    anomaly_type = args.anomaly_type or next(
        (e for e in profile.events if e.endswith(".anomaly")), f"{KIND_PREFIX[args.kind]}.anomaly"
    )
    topic = telemetry_topic(args.site_id, args.kind, args.device)
    status = telemetry_topic(args.site_id, args.kind, args.device, "status")
    try:
        client = connect_client(
            args.broker,
            client_id_prefix=f"gatehouse-replay-{args.device}",
            protocol=args.protocol,
            on_connect=lambda c: c.publish(status, "online", qos=1, retain=True),
        )
    except BrokerError as exc:
        print(f"gatehouse simulate replay: {exc}", file=sys.stderr)
        return 1
    truth = GroundTruth(args.truth) if args.truth else None
    failed = 0

    def publish(ts: float, values: dict[str, float]) -> None:
        nonlocal failed
        payload = {"ts": round(ts, 3)}
        payload.update(values)
        if client.publish(topic, json.dumps(payload, separators=(",", ":")), args.qos).rc:
            failed += 1

    def on_pass(index: int, base: float) -> None:
        if truth is None:
            return
        for a, b in recording.anomalies:
            spec = FaultSpec(
                args.device,
                anomaly_type,
                base + a,
                base + b,
                {"source": str(args.file), "pass": index},
            )
            truth.record(spec, args.kind)

    stop = threading.Event()
    rows = RowPublisher(
        recording, publish, start_ts=time.time(), speed=args.speed, loop=args.loop, stop=stop
    )
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        rows.run(on_pass)
    except KeyboardInterrupt:
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        client.publish(status, "offline", qos=1, retain=True).wait_for_publish(timeout=10)
        client.disconnect()
        client.loop_stop()
        if truth is not None:
            truth.close()
    summary = {
        "rows": len(recording.rows),
        "published": rows.published,
        "publish_failed": failed,
        "passes": rows.passes,
        "fields": list(recording.fields),
        "ignored_columns": list(recording.ignored_columns),
        "bad_cells": recording.bad_cells,
        "anomalies": len(recording.anomalies),
    }
    print(json.dumps(summary, sort_keys=True))
    return 0
