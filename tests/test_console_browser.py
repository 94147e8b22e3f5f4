"""The console in a real headless browser (Debian's chromium and chromium-driver, through
selenium): an operator signs in with the keyboard, watches a running backfill's records climb as
the page reloads itself (a paged Stripe emulator answering slowly), looks at the credentials' last
hour, redelivers a parked message with the button, and signs out.

Screenshots of each page are saved in the test's tmp dir (artifacts); docs/console.png is one of
them. Skips, saying why, where chromium or chromedriver is absent (`apt-get install -y chromium
chromium-driver`).
"""

from __future__ import annotations

import asyncio
import re
import time

import pytest
from conftest import _client_for, _close_client, finish
from sync_support import create_sync, start_engine_server
from test_connect_browser import CHROMEDRIVER, CHROMIUM, chromium

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="the browser test needs Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver",
)


def by(kind: str, value: str):
    from selenium.webdriver.common.by import By

    return getattr(By, kind), value


def wait_for(driver, condition, seconds: float = 15):
    """`condition` met within `seconds`, else a failure saying where the browser is and what it shows."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, seconds, poll_frequency=0.1).until(condition)
    except TimeoutException:
        raise AssertionError(f"not so after {seconds} s at {driver.current_url}: "
                             f"{driver.find_element(*by('TAG_NAME', 'body')).text[:2000]}") from None


def sign_in(driver, url: str, token: str, artifacts) -> str:
    """Types the token and presses Enter, as an operator would; the page it lands on (its <h1>)."""
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as until

    driver.get(f"{url}/console")
    field = wait_for(driver, until.presence_of_element_located(by("ID", "token")))
    driver.save_screenshot(str(artifacts / "console-sign-in.png"))
    field.send_keys(token)
    field.send_keys(Keys.ENTER)
    wait_for(driver, until.url_contains("/console/syncs"))
    return driver.find_element(*by("TAG_NAME", "h1")).text


def records_seen(driver, url: str, sync_id: str, artifacts, seconds: float = 20) -> list[int]:
    """The sync page's records synced, as it reloads itself (meta refresh), until the count has
    moved while the backfill still runs."""
    driver.get(f"{url}/console/syncs/{sync_id}")
    seen: list[int] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            value = int(driver.find_element(*by("ID", "records-synced")).text.replace(",", ""))
            running = bool(driver.find_elements(*by("ID", "backfill-progress")))
        except Exception:  # the page is reloading between the two reads
            continue
        if not seen or value != seen[-1]:
            seen.append(value)
            if len(seen) == 2:
                driver.save_screenshot(str(artifacts / "console-sync.png"))  # docs/console.png
        if len(seen) >= 2 and running:
            return seen
        time.sleep(0.2)
    return seen


def look_at(driver, url: str, page: str, artifacts) -> tuple[str, bool]:
    """The page's text, and whether it fits a phone's width (390 px) without scrolling sideways
    (its tables scroll within themselves)."""
    driver.get(f"{url}/console/{page}")
    driver.save_screenshot(str(artifacts / f"console-{page}.png"))
    text = driver.find_element(*by("TAG_NAME", "main")).text
    width = driver.get_window_size()
    driver.set_window_size(390, 844)
    try:
        fits = driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        driver.save_screenshot(str(artifacts / f"console-{page}-narrow.png"))
    finally:
        driver.set_window_size(width["width"], width["height"])
    return text, fits


def redeliver(driver, url: str, consumer_id: str, artifacts) -> str:
    from selenium.webdriver.support import expected_conditions as until

    driver.get(f"{url}/console/consumers")
    driver.find_element(*by("LINK_TEXT", "orders")).click()
    button = wait_for(driver, until.element_to_be_clickable(by("CSS_SELECTOR", "button[id^=redeliver-]:not(#redeliver-all)")))
    driver.save_screenshot(str(artifacts / "console-consumer.png"))
    button.click()
    notice = wait_for(driver, until.presence_of_element_located(by("ID", "redelivered")))
    return notice.text + " parked: " + driver.find_element(*by("ID", "num-parked")).text


def sign_out(driver, url: str) -> tuple[str, str]:
    from selenium.webdriver.support import expected_conditions as until

    driver.find_element(*by("ID", "sign-out")).click()
    wait_for(driver, until.url_contains("/console/sign-in"))
    landed = driver.current_url
    driver.get(f"{url}/console/syncs")  # no session any more: back to the form
    return landed, driver.current_url


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_an_operator_signs_in_watches_a_backfill_redelivers_a_parked_message_and_signs_out(
        database_url, fake_provider, tmp_path):
    running = await start_engine_server(database_url)
    client = await _client_for(running, "acme")
    stripe = await fake_provider("stripe")
    stripe.seed("customers", n=800)  # 8 pages of 100
    stripe.delay = 0.8  # each page comes slowly: the backfill runs for several seconds
    driver = await asyncio.to_thread(chromium)
    url = running.http_url
    try:
        sync = await create_sync(client, stripe, "stripe:customer", name="Choam Corp")

        heading = await asyncio.to_thread(sign_in, driver, url, client.token, tmp_path)
        seen = await asyncio.to_thread(records_seen, driver, url, sync["id"], tmp_path)
        stripe.delay = 0.0
        credentials, credentials_fit = await asyncio.to_thread(look_at, driver, url, "credentials", tmp_path)
        calls, calls_fit = await asyncio.to_thread(look_at, driver, url, "calls", tmp_path)

        # A consumer whose first message is parked: delivered once (max_deliver 1), nacked.
        made = await client.rest.post("/v1/http-consumers", json={
            "name": "orders", "filters": [{"sync_id": sync["id"]}], "max_deliver": 1})
        consumer = made.json()
        batch = (await client.rest.get(f"/v1/http-consumers/{consumer['id']}/next")).json()
        await client.rest.post(f"/v1/http-consumers/{consumer['id']}/nack",
                               json={"ack_tokens": [batch["data"][0]["ack_token"]]})
        redelivered = await asyncio.to_thread(redeliver, driver, url, consumer["id"], tmp_path)
        parked = (await client.rest.get(f"/v1/http-consumers/{consumer['id']}/parked")).json()["data"]
        landed, after = await asyncio.to_thread(sign_out, driver, url)
        console_log = await asyncio.to_thread(driver.get_log, "browser")
    finally:
        await asyncio.to_thread(driver.quit)
        await _close_client(client)
        await finish("stopping the server", running.server.stop(grace=1))

    assert heading == "Syncs"
    assert len(seen) >= 2 and seen == sorted(seen) and seen[-1] < 800, seen  # it moved, while running
    assert re.search(r"\d+ requests, \d+ waited", credentials), credentials
    assert "/v1/customers" in calls and "limit=" not in calls
    assert credentials_fit and calls_fit
    assert redelivered == "1 message(s) delivered again. parked: 0"
    assert parked == []
    assert landed.endswith("/console/sign-in") and after.endswith("/console/sign-in")
    assert not [m for m in console_log if "Content Security Policy" in m["message"]], console_log
    for name in ("sign-in", "sync", "credentials", "calls", "consumer"):
        assert (tmp_path / f"console-{name}.png").stat().st_size > 0

