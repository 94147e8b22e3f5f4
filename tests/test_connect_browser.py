"""The hosted connect page in a real headless browser (Debian's chromium and chromium-driver,
through selenium): an end user opens connect_url, picks GitHub with the keyboard, approves at the
authorization server's consent page and lands on the application's redirect_url with the new
credential's id; the credential then calls the provider's API with the issued token, and refreshes
through the app's client secret once that token has expired.

Screenshots of the page and the consent screen are saved in the test's tmp dir (artifacts).
Skips, saying why, where chromium or chromedriver is absent (`apt-get install -y chromium chromium-driver`).
"""

from __future__ import annotations

import asyncio
import shutil
from urllib.parse import parse_qsl, urlsplit

import pytest
from test_connect import allow_app_origin, github_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="the browser test needs Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver",
)
# Headless, and quiet: no first-run screens, no calls home, no updates fetched meanwhile.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--window-size=900,1000"]


def chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # to read CSP reports
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def connect_in_browser(connect_url: str, artifacts) -> tuple[str, list[str], str]:
    """What the end user does, in chromium (blocking: run it in a thread, the servers share this
    test's loop): the URL it lands on, the browser's console messages, the page's text."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as until
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chromium()
    try:
        driver.get(connect_url)
        WebDriverWait(driver, 10).until(until.presence_of_element_located((By.ID, "connect-github")))
        page_text = driver.find_element(By.TAG_NAME, "main").text
        driver.save_screenshot(str(artifacts / "connect-page.png"))
        # The keyboard reaches the button: Tab until it has the focus, then Enter.
        for _ in range(20):
            driver.switch_to.active_element.send_keys(Keys.TAB)
            if driver.switch_to.active_element.get_attribute("id") == "connect-github":
                break
        else:
            raise AssertionError("Tab never reached the Connect with GitHub button")
        driver.switch_to.active_element.send_keys(Keys.ENTER)
        WebDriverWait(driver, 10).until(until.presence_of_element_located((By.ID, "approve")))
        driver.save_screenshot(str(artifacts / "consent.png"))
        driver.find_element(By.ID, "approve").click()
        WebDriverWait(driver, 10).until(until.url_contains("credential_id="))
        return driver.current_url, [entry["message"] for entry in driver.get_log("browser")], page_text
    finally:
        driver.quit()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_an_end_user_connects_github_in_a_browser_and_the_credential_calls_and_refreshes(
        server, client, oauth_server, upstream, fake_provider, tmp_path):
    app_id = await github_app(client, server, oauth_server)
    stripe = await fake_provider("stripe")  # the page offers an API-key form too
    await allow_app_origin(client, upstream.base_url)
    created = await client.rest.post("/v1/connect/sessions", json={
        "end_user": {"id": "user-42", "email": "paul@arrakis.org", "display_name": "Paul Atreides"},
        "allowed_integrations": ["github", "stripe"], "redirect_url": f"{upstream.base_url}/echo/connected",
        "integration_properties": {"github": {"base_url": f"{oauth_server.base_url}/api"},
                                   "stripe": {"base_url": stripe.base_url}},
    })
    assert created.status_code == 200, created.text

    landed, console, page_text = await asyncio.to_thread(connect_in_browser, created.json()["connect_url"], tmp_path)

    assert landed.startswith(f"{upstream.base_url}/echo/connected?")
    back = dict(parse_qsl(urlsplit(landed).query))
    assert back["integration"] == "github"
    assert not [m for m in console if "Content Security Policy" in m], console
    assert "Connect with GitHub" in page_text and "Stripe" in page_text
    assert (tmp_path / "connect-page.png").stat().st_size > 0 and (tmp_path / "consent.png").exists()
    credential = (await client.rest.get(f"/v1/credentials/{back['credential_id']}")).json()
    assert (credential["external_id"], credential["oauth_app_id"]) == ("user-42", app_id)
    (issued,) = oauth_server.access_tokens

    called = await client.rest.get(f"/v1/proxy/credential/{back['credential_id']}/me")
    reached = oauth_server.requests[-1]
    oauth_server.expire(issued)
    refreshed = await client.rest.get(f"/v1/proxy/credential/{back['credential_id']}/me")

    assert called.status_code == 200 and called.json()["account"] == "user-1"
    assert (reached.path, reached.header("authorization")) == ("/api/me", f"Bearer {issued}")
    assert refreshed.status_code == 200, refreshed.text
    refresh = oauth_server.token_requests[-1]
    assert (refresh["grant_type"], refresh["client_id"], refresh["client_secret"]) == (
        "refresh_token", "client-1", "secret-1")
