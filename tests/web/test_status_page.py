"""The admin status page in Chromium: refused without an admin token, then the figures, the queues,
a dead letter with its reason and its replay."""

from __future__ import annotations

from typing import Any

from tests.web.conftest import WebData
from tests.web.test_pages import console_errors, open_page, screenshot, wait_until


def _show(browser: Any, token: str) -> None:
    field = browser.find_element("id", "token")
    field.clear()
    field.send_keys(token)
    browser.find_element("id", "show").click()


def test_status_page_for_admins_with_a_dead_letter_replayed(web_data: WebData, browser: Any) -> None:
    system = web_data.system
    bus = system.context.bus
    bus.publish("catalogue.received", b"not json", message_id="poison-web")
    wait_until(
        lambda: [e for e in bus.dead_letters("calibrate") if e.message_id == "poison-web"], what="dead"
    )

    browser.get_log("browser")
    open_page(browser, f"{web_data.base_url}/admin/status")
    _show(browser, system.observer_token)
    message = wait_until(lambda: browser.find_element("id", "status-message").text, what="refusal")
    assert message.startswith("Not shown (403)") and "admin" in message
    assert not browser.find_element("id", "status").is_displayed()

    _show(browser, system.admin_token)
    wait_until(lambda: browser.find_element("id", "status").is_displayed(), what="the status tables")
    hour = browser.find_elements("css selector", "#windows tbody tr")[0].find_elements("tag name", "td")
    assert hour[0].text == "last hour" and int(hour[1].text) == len(web_data.observation_ids)
    p50 = float(hour[5].text.split(" / ")[0])
    assert 0 <= p50 < 60  # seconds, shown to 0.1 s: a quiet machine calibrates in well under that
    queues = {
        row.find_elements("tag name", "td")[0].text: row.find_elements("tag name", "td")[3].text
        for row in browser.find_elements("css selector", "#queues tbody tr")
    }
    assert queues == {"calibrate": "1", "reduce": "0", "catalog-cache": "0", "api": "0"}
    (letter,) = browser.find_elements("css selector", "#dead-letters tbody tr")
    cells = [c.text for c in letter.find_elements("tag name", "td")]
    assert cells[0] == "calibrate" and cells[1] == "poison-web" and "unreadable" in cells[5]
    screenshot(browser, "page-status")

    letter.find_element("css selector", "button.replay").click()
    wait_until(
        lambda: browser.find_element("id", "status-message").text.startswith("Replayed 1 message"),
        what="replay",
    )
    errors = console_errors(browser)
    assert all("403" in e for e in errors), errors  # only the observer's refused request
