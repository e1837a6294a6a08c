"""The cloud's ``/metrics`` (Grafana's work-order panels) and its answer to overload."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.servers_cloud import event, harness


def _gauge(text: str, name: str, site: str, priority: str) -> float:
    prefix = f'{name}{{site="{site}",priority="{priority}"}} '
    (line,) = [ln for ln in text.splitlines() if ln.startswith(prefix)]
    return float(line[len(prefix):])


def test_metrics_count_open_orders_per_site_and_priority(tmp_path: Path) -> None:
    with harness(f"sqlite:///{tmp_path}/cloud.db") as cloud:
        entrapment = event(type_="elevator.entrapment", severity="critical")
        assert cloud.send("s1", [entrapment]).is_success
        assert cloud.send("s1", [event(type_="elevator.door_fault")]).is_success
        assert cloud.send("s2", [event(site_id="s2", type_="elevator.door_fault")]).is_success
        reply = cloud.client.get("/metrics")
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/plain")
        text = reply.text
        assert _gauge(text, "gatehouse_work_orders_open", "s1", "P1") == 1
        assert _gauge(text, "gatehouse_work_orders_open", "s1", "P2") == 1
        assert _gauge(text, "gatehouse_work_orders_open", "s1", "P3") == 0
        assert _gauge(text, "gatehouse_work_orders_open", "s2", "P2") == 1
        assert _gauge(text, "gatehouse_work_orders_breached", "s1", "P1") == 0
        assert "gatehouse_intake_accepted_total 3" in text


def test_metrics_token_is_enforced_when_set(tmp_path: Path) -> None:
    with harness(f"sqlite:///{tmp_path}/cloud.db", metrics_token="scrape-me") as cloud:
        assert cloud.client.get("/metrics").status_code == 401
        assert cloud.client.get(
            "/metrics", headers={"Authorization": "Bearer wrong"}
        ).status_code == 401
        ok = cloud.client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert ok.status_code == 200 and "gatehouse_work_orders_open" in ok.text


@pytest.mark.integration
def test_an_exhausted_database_pool_answers_503_with_retry_after(pg_url: str) -> None:
    with harness(pg_url, pool_size=1, pool_timeout=0.3) as cloud:
        admin = cloud.user("ada", "admin", ["s1"])
        engine = cloud.client.app.state.ctx.db.engine  # type: ignore[attr-defined]
        held = [engine.connect(), engine.connect()]
        try:
            reply = cloud.client.get("/api/v1/work-orders", headers=admin)
            sent = cloud.send("s1", [event()])
        finally:
            for conn in held:
                conn.close()
        assert reply.status_code == 503 and reply.headers["retry-after"] == "2"
        assert sent.status_code == 503
        again = cloud.send("s1", [event()])
        assert again.status_code == 200 and again.json()["accepted"]
