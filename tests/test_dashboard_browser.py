"""The ops dashboard end to end in real headless Chromium against a live cloud.

Signs in, watches a fault become an order on the board without reloading, assigns and
closes it with a rating, reads a device's history, the estate, the alarms with their
evidence image and the energy page, and checks another site stays out of reach. Every page
is saved as a screenshot at wall (1920 px) and phone (390 px) width under
``artifacts/screenshots/``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.servers_browser import (
    LIVE_WITHIN_MS,
    PASSWORD,
    PHONE,
    SCREENSHOTS,
    WALL,
    LiveCloud,
    chromium,
    live_cloud,
    make_event,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveCloud]:
    with live_cloud(tmp_path_factory.mktemp("dashboard")) as c:
        yield c


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser: Any, cloud: LiveCloud) -> Iterator[Any]:
    context = browser.new_context(viewport=WALL, base_url=cloud.base_url)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def sign_in(page: Any, username: str) -> None:
    page.goto("/")
    page.wait_for_selector("#login-form")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#board")


def shoot(page: Any, name: str) -> None:
    """Save the page at wall and phone width."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(300)
    page.screenshot(path=str(SCREENSHOTS / f"{name}-wall.png"), full_page=True)
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(300)
    page.screenshot(path=str(SCREENSHOTS / f"{name}-phone.png"), full_page=True)
    page.set_viewport_size(WALL)


def card_of(page: Any, device_id: str, event_type: str) -> Any:
    return page.locator("article.order", has_text=device_id).filter(
        has_text=event_type.split(".", 1)[1].replace("_", " "))


def test_a_wrong_password_is_refused_on_the_login_page(page: Any) -> None:
    page.goto("/")
    page.wait_for_selector("#login-form")
    page.fill("#username", "dana")
    page.fill("#password", "not-the-password")
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#login-error:text('Wrong username or password.')")
    shoot(page, "login")


def test_a_fault_becomes_an_order_on_the_board_within_seconds_without_reload(
    page: Any, cloud: LiveCloud
) -> None:
    sign_in(page, "dana")
    page.wait_for_selector("#live.on")
    page.evaluate("window.__sameDocument = 42")
    sent = time.monotonic()
    cloud.send("s1", [make_event("s1", "b1-elev-1", "elevator", "elevator.entrapment",
                                 "critical")])
    card = card_of(page, "b1-elev-1", "elevator.entrapment")
    card.wait_for(timeout=LIVE_WITHIN_MS)
    seen_after = time.monotonic() - sent
    assert page.evaluate("window.__sameDocument") == 42, "the page reloaded"
    assert seen_after < LIVE_WITHIN_MS / 1000
    assert page.locator(".prio-P1 article.order", has_text="b1-elev-1").count() == 1
    assert "respond" in card.locator(".clock").inner_text().lower()
    first = card.locator(".clock .value").inner_text()
    page.wait_for_function(
        "([sel, first]) => document.querySelector(sel).textContent !== first",
        arg=[f"#{card.get_attribute('id')} .clock .value", first], timeout=5000)
    shoot(page, "board")


def test_a_breached_order_stands_out(page: Any, cloud: LiveCloud) -> None:
    old = time.time() - 3 * 3600
    cloud.send("s1", [make_event("s1", "b2-pump-1", "water_pump", "pump.leak", "critical",
                                 ts=old)])
    sign_in(page, "dana")
    card = card_of(page, "b2-pump-1", "pump.leak")
    card.wait_for(timeout=LIVE_WITHIN_MS)
    # The order opens at the fault's time (3 h ago), so its 2-hour response SLA is over.
    order = next(o for o in cloud.get("/api/v1/work-orders", "dana", site_id="s1")
                 if o["device_id"] == "b2-pump-1")
    assert order["response_due"] < time.time()
    assert "breached" in (card.get_attribute("class") or "")
    assert card.locator(".clock.late .value").inner_text().startswith("-")
    assert page.inner_text("#breached-count") == "1 breached"


def test_a_dispatcher_assigns_works_and_closes_an_order_with_a_rating(
    page: Any, cloud: LiveCloud
) -> None:
    cloud.send("s1", [make_event("s1", "b1-elev-2", "elevator", "elevator.door_fault")])
    sign_in(page, "dana")
    card = card_of(page, "b1-elev-2", "elevator.door_fault")
    card.wait_for(timeout=LIVE_WITHIN_MS)
    order_id = int(card.get_attribute("data-id"))

    def step(action: str, state: str, fill: dict[str, str] | None = None) -> None:
        card.locator(f"button[data-action={action}]").click()
        for name, value in (fill or {}).items():
            selector = f"#action-dialog [name={name}]"
            if name == "rating":
                page.select_option(selector, value)
            else:
                page.fill(selector, value)
        page.click("#confirm")
        page.wait_for_selector(f"#order-{order_id}[data-state={state}]"
                               if state != "closed" else f"#order-{order_id}",
                               state="attached" if state != "closed" else "detached")

    step("assign", "assigned", {"assignee": "tom"})
    assert "tom" in card.inner_text()
    step("start", "in_progress")
    step("resolve", "resolved", {"note": "door operator adjusted"})
    card.locator("button[data-action=close]").click()
    shoot(page, "close-dialog")
    page.click("#action-dialog button.link")
    step("close", "closed", {"rating": "5", "comment": "quick fix"})
    order = cloud.get(f"/api/v1/work-orders/{order_id}", "dana")
    assert (order["state"], order["assignee"], order["rating"]) == ("closed", "tom", 5)
    audit = cloud.get(f"/api/v1/work-orders/{order_id}/audit", "dana")
    assert [a["to_state"] for a in audit if a["action"] == "transition"] == [
        "assigned", "in_progress", "resolved", "closed"]
    assert {a["actor"] for a in audit if a["action"] == "transition"} == {"dana"}


def test_each_role_sees_only_the_actions_it_may_take(browser: Any, cloud: LiveCloud) -> None:
    cloud.send("s1", [make_event("s1", "gate-1", "access_gate", "gate.tamper")])
    seen: dict[str, set[str]] = {}
    for username in ("dana", "tom", "vera"):
        context = browser.new_context(viewport=WALL, base_url=cloud.base_url)
        pg = context.new_page()
        sign_in(pg, username)
        card = card_of(pg, "gate-1", "gate.tamper")
        card.wait_for(timeout=LIVE_WITHIN_MS)
        seen[username] = {b.get_attribute("data-action")
                          for b in card.locator("button[data-action]").all()}
        if username == "tom":
            card.locator("button[data-action=take]").click()
            pg.click("#confirm")
            pg.wait_for_selector(f"#{card.get_attribute('id')}[data-state=assigned]")
            now_mine = {b.get_attribute("data-action")
                        for b in card.locator("button[data-action]").all()}
            assert now_mine == {"start", "hold"}
        context.close()
    assert seen["dana"] == {"assign", "hold"}
    assert seen["tom"] == {"take"}
    assert seen["vera"] == set()


def test_a_device_page_shows_readings_events_orders_and_maintenance(
    page: Any, cloud: LiveCloud
) -> None:
    now = time.time()
    start = math.floor((now - 2 * 3600) / 60) * 60
    items = [{"device_id": "b1-pump-1", "kind": "water_pump", "building": "B1",
              "ts": start + 60 * i, "count": 6,
              "values": {"accel1_rms": 0.2 + 0.002 * i, "pressure_bar": 4.0},
              "max": {"accel1_rms": 0.25 + 0.002 * i, "pressure_bar": 4.2}}
             for i in range(120)]
    assert cloud.summaries("s1", items)["stored"] == 120
    cloud.send("s1", [make_event("s1", "b1-pump-1", "water_pump", "pump.bearing_wear",
                                 ts=now - 600)])
    dana = cloud.login("dana")
    import httpx

    httpx.post(f"{cloud.base_url}/api/v1/devices/b1-pump-1/visits", headers=dana,
               json={"notes": "bearing greased", "parts": ["grease cartridge"]},
               timeout=10).raise_for_status()
    sign_in(page, "dana")
    page.click("#board a[href='#/device/b1-pump-1']")
    page.wait_for_selector("#device-charts figure[data-field=accel1_rms] path.series.mean")
    d = page.get_attribute("#device-charts figure[data-field=accel1_rms] path.series.mean", "d")
    assert d is not None and d.count("L") >= 100
    assert page.locator("#device-charts figure[data-field=accel1_rms] line.limit").count() >= 1
    assert "bearing wear" in page.inner_text("#device-events")
    assert "raised" in page.inner_text("#device-events")
    assert "bearing" in page.inner_text("#device-orders").lower()
    assert "bearing greased" in page.inner_text("#device-visits")
    assert "grease cartridge" in page.inner_text("#device-visits")
    shoot(page, "device")


def test_another_sites_device_and_orders_are_refused(page: Any, cloud: LiveCloud) -> None:
    cloud.send("s2", [make_event("s2", "s2-elev-9", "elevator", "elevator.entrapment",
                                 "critical")])
    sign_in(page, "dana")
    assert page.locator("#site option").all_inner_texts() == ["Harbour View"]
    page.wait_for_selector("#live.on")
    cloud.send("s1", [make_event("s1", "b2-elev-2", "elevator", "elevator.leveling_error")])
    card_of(page, "b2-elev-2", "elevator.leveling_error").wait_for(timeout=LIVE_WITHIN_MS)
    assert page.locator("article.order", has_text="s2-elev-9").count() == 0
    page.goto("/#/device/s2-elev-9")
    page.wait_for_selector("main p.error")
    assert "not found" in page.inner_text("main p.error")
    status = page.evaluate("""async () => {
        const h = {Authorization: 'Bearer ' + localStorage.getItem('gatehouse.token')};
        const d = await fetch('/api/v1/devices/s2-elev-9', {headers: h});
        const o = await fetch('/api/v1/work-orders?site_id=s2', {headers: h});
        const e = await fetch('/api/v1/estate?site_id=s2', {headers: h});
        return [d.status, await o.json(), e.status];
    }""")
    assert status == [404, [], 404]
    shoot(page, "refused")


def test_the_estate_shows_buildings_floors_and_device_states(
    page: Any, cloud: LiveCloud
) -> None:
    cloud.send("s1", [make_event("s1", "b2-elev-1", "elevator", "elevator.entrapment",
                                 "critical")])
    sign_in(page, "vera")
    page.click("nav a[data-view=estate]")
    page.wait_for_selector("#estate .building")
    assert page.locator("#estate .building h2").all_inner_texts() == ["B1", "B2", "estate"]
    assert page.get_attribute("a.chip[data-device=b2-elev-1]", "data-state") == "alarm"
    floors = page.locator("#estate .building").first.locator(".floor-name").all_inner_texts()
    assert floors == ["F2", "F1", "-1", "all"]
    page.click("a.chip[data-device=b2-elev-1]")
    page.wait_for_selector("#device-orders")
    assert "Entrapment".lower() in page.inner_text("#device-orders").lower() or \
        "entrapment" in page.inner_text("#device-events")
    page.goto("/#/estate")
    page.wait_for_selector("#estate .building")
    shoot(page, "estate")


def test_a_thrown_object_alarm_shows_floor_position_and_evidence_image(
    page: Any, cloud: LiveCloud
) -> None:
    import cv2
    import numpy as np

    frame = np.full((240, 320, 3), (60, 70, 80), np.uint8)
    for floor in range(6):
        cv2.line(frame, (0, 40 * floor), (320, 40 * floor), (120, 120, 120), 1)
    cv2.circle(frame, (200, 95), 9, (40, 40, 230), -1)
    cv2.rectangle(frame, (180, 75), (220, 115), (0, 255, 255), 2)
    ok, jpeg = cv2.imencode(".jpg", frame)
    assert ok
    name = f"b1-cam-1/{int(time.time())}.jpg"
    cloud.upload("s1", name, jpeg.tobytes())
    sign_in(page, "dana")
    page.click("nav a[data-view=alarms]")
    page.wait_for_selector("#thrown")
    page.wait_for_selector("#live.on")
    cloud.send("s1", [make_event(
        "s1", "b1-cam-1", "camera", "camera.object_thrown", "critical",
        evidence={"floor": 5, "window_column": 2, "x": 200.0, "y": 95.0, "snapshot": name})])
    img = page.locator("#thrown img.evidence").first
    img.wait_for(timeout=LIVE_WITHIN_MS)
    page.wait_for_function(
        "() => { const i = document.querySelector('#thrown img.evidence');"
        " return i && i.complete && i.naturalWidth === 320; }", timeout=LIVE_WITHIN_MS)
    text = page.inner_text("#thrown article")
    assert "Floor 5" in text and "window column 2" in text
    shoot(page, "alarms")


def test_the_energy_page_compares_each_building_with_its_baseline(
    page: Any, cloud: LiveCloud
) -> None:
    now = time.time()
    hour0 = math.floor(now / 3600) * 3600 - 23 * 3600
    items: list[dict[str, Any]] = []
    for h in range(24):
        for m in range(0, 60, 10):
            for back in (0, 7 * 86400):
                ts = hour0 + h * 3600 + m * 60 - back
                if ts > now:
                    continue
                for b in (1, 2):
                    daily = 2.0 + 1.5 * math.sin((h / 24) * 2 * math.pi) + b
                    spike = 4.0 if back == 0 and b == 1 and h in (18, 19) else 0.0
                    items.append({"device_id": f"b{b}-meter-1", "kind": "smart_meter",
                                  "building": f"B{b}", "ts": ts,
                                  "values": {"power_kw": daily + spike, "energy_kwh": 1.0}})
    for i in range(0, len(items), 2000):
        cloud.summaries("s1", items[i:i + 2000])
    sign_in(page, "vera")
    page.click("nav a[data-view=energy]")
    page.wait_for_selector("#energy figure[data-building=B1] path.series.baseline")
    for building in ("B1", "B2"):
        fig = page.locator(f"#energy figure[data-building={building}]")
        assert (fig.locator("path.series.mean").get_attribute("d") or "").count("L") >= 20
        assert (fig.locator("path.series.baseline").get_attribute("d") or "").count("L") >= 20
    assert page.locator("#energy figure[data-building=B1] rect.band.spike").count() == 2
    assert page.locator("#energy figure[data-building=B2] rect.band.spike").count() == 0
    shoot(page, "energy")
