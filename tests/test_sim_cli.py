"""``gatehouse simulate`` argument handling (no broker needed)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from simulators.commands import FaultArgError, build_site, configure, parse_fault_arg, run


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="simulate")
    configure(p)
    return p


def test_fault_argument_with_durations_and_params() -> None:
    assert parse_fault_arg("pump.bearing_wear@b1-pump-1:start=1m,ramp=2h,note=x,k=3") == (
        "pump.bearing_wear",
        "b1-pump-1",
        {"start": 60.0, "ramp": 7200.0, "note": "x", "k": 3.0},
    )
    assert parse_fault_arg("gate.forced_open@gate-1") == ("gate.forced_open", "gate-1", {})


@pytest.mark.parametrize("text", ["gate.forced_open", "@gate-1", "x@y:start", "x@y:start=soon"])
def test_malformed_fault_argument_is_refused(text: str) -> None:
    with pytest.raises(FaultArgError):
        parse_fault_arg(text)


def test_layout_options_build_the_estate() -> None:
    args = parser().parse_args(
        [
            "estate",
            "--site-id",
            "s1",
            "--buildings",
            "3",
            "--elevators",
            "1",
            "--pumps",
            "0",
            "--meters",
            "4",
            "--gates",
            "5",
            "--cameras",
            "0",
            "--floors",
            "9",
        ]
    )
    site = build_site(args)
    kinds = [d.kind for d in site.all_devices()]
    assert site.site_id == "s1"
    assert kinds.count("elevator") == 3
    assert kinds.count("water_pump") == 0
    assert kinds.count("smart_meter") == 12
    assert kinds.count("access_gate") == 5
    assert site.estate is not None and site.estate.floors == 9


def test_config_file_devices_are_used_and_layout_overrides(tmp_path: Path) -> None:
    cfg = tmp_path / "site.yaml"
    cfg.write_text(
        "site_id: from-file\nestate: {buildings: 1, floors: 5}\n"
        "devices:\n  - {id: extra-pump, kind: water_pump}\n",
        encoding="utf-8",
    )
    site = build_site(parser().parse_args(["estate", "--config", str(cfg)]))
    ids = [d.id for d in site.all_devices()]
    assert site.site_id == "from-file" and "extra-pump" in ids and "b1-elev-1" in ids
    site = build_site(parser().parse_args(["estate", "--config", str(cfg), "--buildings", "2"]))
    assert "b2-elev-1" in [d.id for d in site.all_devices()]


def test_bad_fault_or_option_exits_2_before_connecting(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["estate", "--broker", "mqtt://127.0.0.1:1", "--fault", "pump.leak@nope"],
        ["estate", "--broker", "mqtt://127.0.0.1:1", "--fault", "gate.forced_open@b1-pump-1"],
        ["estate", "--broker", "mqtt://127.0.0.1:1", "--speed", "0"],
        ["estate", "--broker", "http://x", "--buildings", "1"],
    ):
        assert run(parser().parse_args(argv)) == 2
    err = capsys.readouterr().err
    assert "unknown device 'nope'" in err
    assert "does not apply to b1-pump-1" in err
    assert "speed must be positive" in err
    assert "mqtt://host:port" in err


def test_unreachable_broker_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    args = parser().parse_args(["estate", "--broker", "mqtt://127.0.0.1:1", "--buildings", "1"])
    assert run(args) == 1
    assert "cannot connect" in capsys.readouterr().err


def test_list_faults(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(parser().parse_args(["estate", "--list-faults"])) == 0
    out = capsys.readouterr().out
    assert "water_pump: pump.bearing_wear" in out and "gate.forced_open" in out
