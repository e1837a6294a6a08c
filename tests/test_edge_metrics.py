"""The agent's /metrics text: values at full precision in Prometheus' number format."""

from __future__ import annotations

from edge.metrics import Metrics


def _samples(text: str) -> dict[str, str]:
    return dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))


def test_large_counters_and_timestamps_keep_every_digit() -> None:
    m = Metrics()
    m.inc("messages_received", 3_644_021.0)
    m.set("last_ack_timestamp_seconds", 1_795_280_123.456)
    m.set("ratio", 0.1 + 0.2)
    got = _samples(m.render())
    assert got["gatehouse_edge_messages_received_total"] == "3644021"
    assert float(got["gatehouse_edge_last_ack_timestamp_seconds"]) == 1_795_280_123.456
    assert float(got["gatehouse_edge_ratio"]) == 0.1 + 0.2


def test_infinities_and_nan_use_prometheus_spellings() -> None:
    m = Metrics()
    m.set("up", float("inf"))
    m.set("down", float("-inf"))
    m.set("unknown", float("nan"))
    got = _samples(m.render())
    assert got["gatehouse_edge_up"] == "+Inf"
    assert got["gatehouse_edge_down"] == "-Inf"
    assert got["gatehouse_edge_unknown"] == "NaN"
