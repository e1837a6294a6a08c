"""10,000 malformed or hostile MQTT messages from a property-based generator, through a
real Mosquitto: every one is refused with a counted reason (the counts sum to the number
sent), the agent does not crash, and good telemetry sent alongside is unaffected."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device_profiles.loader import load_profiles
from edge.runner import Agent, AgentOptions
from tests.servers import Mosquitto
from tests.servers_edge import FakeCloud, Publisher, make_site, pump_payload

pytestmark = pytest.mark.integration
PROFILES = load_profiles()
N = 10_000

LEVEL = st.text(
    # what MQTT topics may carry (Mosquitto drops the connection of a client sending
    # control characters or non-characters in a topic: those never reach a subscriber)
    alphabet=st.characters(
        blacklist_categories=("Cs", "Cc", "Cn", "Co"), blacklist_characters="/+#"
    ),
    min_size=0, max_size=20,
)
JSONISH = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=5)
    | st.dictionaries(st.text(max_size=10), kids, max_size=5),
    max_leaves=15,
)


def _mutations(site_id: str) -> st.SearchStrategy[tuple[str, bytes]]:
    """Strategies that each produce a message the agent must refuse."""
    pump = f"gh/{site_id}/water_pump/pump-1/"
    good: dict[str, Any] = json.loads(pump_payload(1000.0))

    def mutate(field: str, value: object) -> bytes:
        return json.dumps({**good, field: value}).encode()

    bad_value = st.one_of(
        st.text(max_size=10), st.booleans(), st.none(), st.lists(st.integers(), max_size=3),
        st.floats(min_value=1e3, max_value=1e300), st.floats(max_value=-3, min_value=-1e300),
    )
    return st.one_of(
        # random topic levels under the site: unknown kinds/devices/channels, empty levels
        st.tuples(LEVEL, LEVEL, LEVEL).filter(
            lambda t: not (t[0] in ("water_pump",) and t[1] == "pump-1")
        ).map(lambda t: (f"gh/{site_id}/{t[0]}/{t[1]}/{t[2]}", b"{}")),
        # random bytes on a telemetry topic
        st.binary(max_size=200).map(lambda b: (pump + "telemetry", b)),
        # random JSON values (never a complete pump reading: no required fields)
        JSONISH.map(lambda v: (pump + "telemetry", json.dumps(v).encode())),
        # a good reading with one field broken
        st.tuples(
            st.sampled_from(["accel1_rms", "current_a", "pressure_bar"]), bad_value
        ).map(lambda fv: (pump + "telemetry", mutate(*fv))),
        st.sampled_from(["ts"]).flatmap(
            lambda f: st.one_of(st.text(max_size=5), st.none(), st.floats(max_value=0))
            .map(lambda v: (pump + "telemetry", mutate(f, v)))
        ),
        st.text(min_size=1, max_size=12).filter(lambda k: k not in good and k not in (
            "site_id", "kind", "device_id", "seq", "ts", "temperature_c", "thermocouple_c",
            "voltage_v", "flow_lpm")).map(lambda k: (pump + "telemetry", mutate(k, 1))),
        # status and native events that are not valid
        st.text(max_size=20).filter(lambda s: s.strip().lower() not in ("online", "offline"))
        .map(lambda s: (pump + "status", s.encode())),
        st.text(max_size=20).filter(lambda s: s not in ("forced_open", "tamper"))
        .map(lambda s: (f"gh/{site_id}/access_gate/gate-1/event",
                        json.dumps({"ts": 5, "type": s}).encode())),
        # huge payloads
        st.integers(min_value=65 * 1024, max_value=200 * 1024)
        .map(lambda n: (pump + "telemetry", b"{" + b" " * n + b"}")),
        # identity spoofing: a payload naming another device
        st.sampled_from(["pump-2", "gate-1", "elev-1"])
        .map(lambda d: (pump + "telemetry", mutate("device_id", d))),
    )


def test_ten_thousand_hostile_messages_are_each_refused_and_counted(
    broker: Mosquitto, tmp_path: Path
) -> None:
    site_id = f"h{uuid.uuid4().hex[:10]}"
    site = make_site(site_id, data_dir=tmp_path, mqtt_url=broker.url)
    agent = Agent(
        site, profiles=PROFILES, options=AgentOptions(reserve_bytes=0, low_water_bytes=0),
        outputs={}, http_client=FakeCloud().client(),
    )
    agent.start()
    pub = Publisher(broker.port)
    sent = {"hostile": 0, "good": 0}
    t0 = time.time() - 5000
    try:
        deadline = time.monotonic() + 30
        while not agent.stats()["mqtt_connected"] and time.monotonic() < deadline:
            time.sleep(0.02)

        @settings(
            max_examples=N, deadline=None, database=None, derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(_mutations(site_id))
        def publish(message: tuple[str, bytes]) -> None:
            pub.publish(*message)
            sent["hostile"] += 1
            if sent["hostile"] % 50 == 0:
                pub.publish(f"gh/{site_id}/water_pump/pump-1/telemetry",
                            pump_payload(t0 + sent["good"]))
                sent["good"] += 1
            if sent["hostile"] % 1000 == 0:
                pub.flush()

        publish()
        pub.flush()
        total = sent["hostile"] + sent["good"]
        deadline = time.monotonic() + 120
        while agent.stats()["received"] < total and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = agent.stats()
        assert stats["received"] == total
        assert sum(stats["rejects"].values()) == stats["rejected"] == sent["hostile"]
        assert stats["readings"] == sent["good"]
        assert sent["hostile"] >= N * 0.9
        assert stats["mqtt_connected"]
    finally:
        pub.close()
        agent.stop()
