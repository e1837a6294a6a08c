"""A resident's problem report end to end in real headless Chromium against a live cloud.

The viewer ``vera`` files a report with a photo from the "Report a problem" page, the
dispatcher ``dana`` sees it (with the photo) on the board and works it to closed, and vera's
"My reports" page turns to closed without reloading and takes her 1-5 rating. Each page is
saved at wall and phone width as ``artifacts/screenshots/report-*.png``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
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
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveCloud]:
    with live_cloud(tmp_path_factory.mktemp("reports")) as c:
        yield c


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def open_page(browser: Any, cloud: LiveCloud, errors: list[str]) -> Any:
    context = browser.new_context(viewport=PHONE, base_url=cloud.base_url)
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page


def sign_in(page: Any, username: str) -> None:
    page.goto("/")
    page.wait_for_selector("#login-form")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#board")


def shoot(page: Any, name: str) -> None:
    """Save the page at phone and wall width, then go back to phone width."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(300)
    page.screenshot(path=str(SCREENSHOTS / f"{name}-phone.png"), full_page=True)
    page.set_viewport_size(WALL)
    page.wait_for_timeout(300)
    page.screenshot(path=str(SCREENSHOTS / f"{name}-wall.png"), full_page=True)
    page.set_viewport_size(PHONE)


def leak_photo() -> bytes:
    """A small JPEG that looks like something: a blue puddle on a grey floor."""
    img = np.full((240, 320, 3), 150, np.uint8)
    cv2.ellipse(img, (160, 150), (100, 50), 0, 0, 360, (200, 120, 40), -1)
    cv2.putText(img, "leak", (120, 60), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (30, 30, 30), 2)
    ok, data = cv2.imencode(".jpg", img)
    assert ok
    return bytes(data.tobytes())


def test_a_resident_reports_with_a_photo_the_dispatcher_closes_and_the_resident_rates(
    browser: Any, cloud: LiveCloud
) -> None:
    errors: list[str] = []
    resident = open_page(browser, cloud, errors)
    sign_in(resident, "vera")
    resident.goto("/#/report")
    resident.wait_for_selector("#report-form")
    resident.fill("#report-title", "Water on the floor by the lift")
    resident.select_option("#report-category", "engineering")
    resident.fill("#report-description", "A puddle keeps coming back since this morning.")
    resident.fill("#report-location", "Building B1, ground floor")
    resident.select_option("#report-device", index=1)
    device_id = resident.eval_on_selector("#report-device", "el => el.value")
    resident.set_input_files("#report-photos", files=[
        {"name": "leak.jpg", "mimeType": "image/jpeg", "buffer": leak_photo()}])
    resident.wait_for_selector("#report-previews img.thumb")
    shoot(resident, "report-form")
    resident.click("#report-submit")
    mine = resident.locator("#my-reports article.report")
    mine.first.wait_for(timeout=LIVE_WITHIN_MS)
    order_id = int(mine.first.get_attribute("data-id"))
    order = cloud.get(f"/api/v1/work-orders/{order_id}", "dana")
    assert (order["source"], order["reporter"], order["device_id"], order["category"]) == (
        "report", "vera", device_id, "engineering")
    assert len(order["photos"]) == 1 and order["photos"][0].startswith("/api/v1/evidence/s1/")

    dispatcher = open_page(browser, cloud, errors)
    sign_in(dispatcher, "dana")
    card = dispatcher.locator(f"#order-{order_id}")
    card.wait_for(timeout=LIVE_WITHIN_MS)
    assert "Water on the floor by the lift" in card.inner_text()
    dispatcher.wait_for_function(
        "sel => { const img = document.querySelector(sel);"
        " return img && img.complete && img.naturalWidth === 320; }",
        arg=f"#order-{order_id} img.thumb", timeout=LIVE_WITHIN_MS)
    shoot(dispatcher, "report-board")

    def step(action: str, state: str, fill: dict[str, str] | None = None) -> None:
        card.locator(f"button[data-action={action}]").click()
        for name, value in (fill or {}).items():
            dispatcher.fill(f"#action-dialog [name={name}]", value)
        dispatcher.click("#confirm")
        dispatcher.wait_for_selector(
            f"#order-{order_id}[data-state={state}]" if state != "closed"
            else f"#order-{order_id}", state="attached" if state != "closed" else "detached")

    step("assign", "assigned", {"assignee": "tom"})
    step("start", "in_progress")
    step("resolve", "resolved", {"note": "drain unblocked"})
    step("close", "closed")

    stars = resident.locator(f"#report-{order_id}[data-state=closed] button.star")
    stars.first.wait_for(timeout=LIVE_WITHIN_MS)
    assert stars.count() == 5
    shoot(resident, "report-closed")
    resident.click(f"#report-{order_id} button.star[data-rating='4']")
    resident.wait_for_selector(f"#report-{order_id} .rated")
    assert resident.locator(f"#report-{order_id} button.star").count() == 0
    shoot(resident, "report-rated")
    assert cloud.get(f"/api/v1/work-orders/{order_id}", "dana")["rating"] == 4
    assert errors == [], f"JavaScript errors on the page: {errors}"
