"""What a chaos run does: how much load, which faults, how long, in which order.

Two plans ship: :data:`FULL` (the issue's promise: >= 20,000 events, broker restarted 5
times, cloud down 3 times for >= 30 s, edge SIGKILLed 5 times, cloud SIGKILLed twice, disk
filled once, 10,000 hostile messages) and :data:`QUICK` (one of each fault, short outages,
1,000 hostile messages, for the test suite).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

FaultKind = Literal[
    "broker_restart", "cloud_outage", "edge_kill", "cloud_kill", "disk_fill", "hostile"
]


@dataclass(frozen=True)
class ChaosPlan:
    """Parameters of a run. Durations are wall-clock seconds."""

    name: str
    events: int
    broker_restarts: int
    cloud_outages: int
    cloud_outage_s: float
    edge_kills: int
    cloud_kills: int
    disk_fills: int
    disk_full_s: float
    broker_down_s: float
    edge_down_s: float
    gap_s: float
    gates: int
    buildings: int
    floors: int
    sim_speed: float
    random_faults: int
    disk_mb: int
    spool_mb: float
    reserve_mb: float
    low_water_mb: float
    drain_timeout_s: float
    retry_max_s: float
    hostile: int = 0
    """Hostile or malformed messages published in one burst (0: no hostile step)."""
    recover_timeout_s: float = 120.0

    def schedule(self) -> list[FaultKind]:
        """The faults in the order they are injected: the kinds interleaved round-robin so
        that every kind meets a different backlog, the disk fill in the middle."""
        queues: list[list[FaultKind]] = [
            ["broker_restart"] * self.broker_restarts,
            ["edge_kill"] * self.edge_kills,
            ["cloud_outage"] * self.cloud_outages,
            ["cloud_kill"] * self.cloud_kills,
        ]
        order: list[FaultKind] = []
        while any(queues):
            for queue in queues:
                if queue:
                    order.append(queue.pop())
        middle = len(order) // 2
        order = order[:middle] + ["disk_fill"] * self.disk_fills + order[middle:]
        if self.hostile:
            order.insert(min(1, len(order)), "hostile")
        return order

    def step_seconds(self, kind: FaultKind) -> float:
        """The expected wall time of one fault (its outage plus restart), without the gap."""
        return {
            "broker_restart": self.broker_down_s + 2.0,
            "cloud_outage": self.cloud_outage_s + 3.0,
            "edge_kill": self.edge_down_s + 4.0,
            "cloud_kill": 4.0,
            "disk_fill": self.disk_full_s + 5.0,
            "hostile": self.hostile / 1000.0 + 5.0,
        }[kind]

    def expected_seconds(self) -> float:
        """Expected wall time of the fault schedule (the load is spread over it)."""
        steps = self.schedule()
        return sum(self.step_seconds(k) for k in steps) + self.gap_s * (len(steps) + 1)

    def with_events(self, events: int | None) -> ChaosPlan:
        return self if events is None else replace(self, events=events)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


FULL = ChaosPlan(
    name="full", events=20_000, broker_restarts=5, cloud_outages=3, cloud_outage_s=32.0,
    edge_kills=5, cloud_kills=2, disk_fills=1, disk_full_s=20.0, broker_down_s=3.0,
    edge_down_s=3.0, gap_s=10.0, gates=24, buildings=2, floors=10, sim_speed=5.0,
    random_faults=40, disk_mb=64, spool_mb=0.25, reserve_mb=1.0, low_water_mb=2.0,
    drain_timeout_s=600.0, retry_max_s=5.0, hostile=10_000,
)

QUICK = ChaosPlan(
    name="quick", events=1_500, broker_restarts=1, cloud_outages=1, cloud_outage_s=8.0,
    edge_kills=1, cloud_kills=1, disk_fills=1, disk_full_s=6.0, broker_down_s=2.0,
    edge_down_s=2.0, gap_s=4.0, gates=8, buildings=1, floors=6, sim_speed=5.0,
    random_faults=8, disk_mb=32, spool_mb=0.05, reserve_mb=1.0, low_water_mb=2.0,
    drain_timeout_s=90.0, retry_max_s=2.0, hostile=1_000, recover_timeout_s=30.0,
)
