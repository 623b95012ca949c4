"""The inbox page in real headless Chromium against real daphne processes (issue 4).

Driven by Selenium with Debian's chromium and chromium-driver. Skipped where they are
missing; under CI=true they must be there (``.ci/run`` installs them).
"""

import re
import time
from pathlib import Path

import pytest
import requests

from .conftest import ROOT, chromium_paths, need

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

PASSWORD = "pw-Secret-123"
WAIT = 10  # seconds any single browser expectation may take at most


@pytest.fixture
def browser_factory():
    """Factory of headless Chromium sessions; all quit at teardown."""
    paths = chromium_paths()
    need(paths is not None, "chromium and chromedriver are not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    drivers = []

    def make():
        options = webdriver.ChromeOptions()
        options.binary_location = paths[0]
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-quic", "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--window-size=1100,800"):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(paths[1]), options=options)
        driver.set_page_load_timeout(30)
        drivers.append(driver)
        return driver

    yield make
    for driver in drivers:
        driver.quit()


def wait_until(driver, predicate, message, timeout=WAIT):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: predicate(d), message)


def sign_in(driver, server, username, path="/"):
    from selenium.webdriver.common.by import By

    driver.get(f"{server.url}/accounts/login/?next={path}")
    driver.find_element(By.NAME, "username").send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "form [type=submit]").click()
    wait_until(driver, lambda d: "/accounts/login" not in d.current_url, "login did not redirect")


def live(driver, transport=None):
    """Wait until the page's status indicator says it is live; return the transport."""
    status = {}

    def check(d):
        element = d.find_element("id", "transport-status")
        status.update(state=element.get_attribute("data-state"),
                      transport=element.get_attribute("data-transport"))
        ok = status["state"] in ("open", "fallback")
        return ok and (transport is None or status["transport"] == transport)

    wait_until(driver, check, f"page never went live (last status {status})")
    return status["transport"]


def titles(driver):
    return driver.execute_script(
        "return [...document.querySelectorAll('#notification-list li[data-id]')]"
        ".map(li => li.querySelector('.notification__title, h3, strong')?.textContent.trim()"
        " || li.textContent.trim())"
    )


def ids(driver):
    return driver.execute_script(
        "return [...document.querySelectorAll('#notification-list li[data-id]')].map(li => Number(li.dataset.id))"
    )


def shows(driver, title):
    return any(title in text for text in titles(driver))


def badge(driver):
    text = driver.find_element("id", "unread-badge").text.strip()
    return int(text) if text.isdigit() else 0


def admin_post(server, staff, path, fields):
    """Post an admin add form over real HTTP as the staff user would."""
    session = requests.Session()
    login = session.get(f"{server.url}/admin/login/", timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
    session.post(f"{server.url}/admin/login/?next=/admin/",
                 data={"csrfmiddlewaretoken": token, "username": staff.username, "password": PASSWORD,
                       "next": "/admin/"}, headers={"Referer": f"{server.url}/admin/login/"}, timeout=10)
    form = session.get(f"{server.url}{path}", timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
    response = session.post(f"{server.url}{path}", data={"csrfmiddlewaretoken": token, **fields},
                            headers={"Referer": f"{server.url}{path}"}, timeout=10, allow_redirects=False)
    assert response.status_code == 302, response.text[:2000]


def test_announcement_from_admin_and_notify_send_appear_live(
    browser_factory, daphne_factory, make_user, manage, redis_url
):
    user = make_user("carol")
    staff = make_user("staff", is_staff=True, is_superuser=True)
    server = daphne_factory(redis_url=redis_url)
    driver = browser_factory()
    sign_in(driver, server, user.username)
    assert live(driver) == "websocket"

    started = time.monotonic()
    admin_post(server, staff, "/admin/notify/announcement/add/",
               {"title": "Maintenance tonight", "body": "22:00 UTC", "level": "warning", "url": ""})
    wait_until(driver, lambda d: shows(d, "Maintenance tonight"), "announcement not shown", timeout=2)
    assert time.monotonic() - started < 2 + 1  # the admin round trip included

    result = manage("notify_send", "--to", "carol", "--title", "Build finished", "--level", "success",
                    redis_url=redis_url)
    assert result.returncode == 0, result.stderr
    wait_until(driver, lambda d: shows(d, "Build finished"), "notify_send item not shown", timeout=3)
    wait_until(driver, lambda d: badge(d) == 2, "badge did not count both")
    assert driver.title.startswith("(2)")
    toasts = driver.find_elements("css selector", "#toasts [data-id]")
    assert toasts, "no toast for the new items"


@pytest.mark.parametrize("flag,transport", [("transport=poll", "poll"), ("transport=sse", "sse")])
def test_without_websocket_the_page_falls_back_and_says_so(
    browser_factory, daphne_factory, make_user, flag, transport
):
    make_user("dave")
    staff = make_user("staff", is_staff=True, is_superuser=True)
    server = daphne_factory()
    driver = browser_factory()
    sign_in(driver, server, "dave", path=f"/?{flag}")
    assert live(driver, transport) == transport
    status_text = driver.find_element("id", "transport-status").text.lower()
    assert {"poll": "poll", "sse": "sse"}[transport] in status_text.replace("-", "")
    admin_post(server, staff, "/admin/notify/announcement/add/",
               {"title": f"Via {transport}", "body": "", "level": "info", "url": ""})
    wait_until(driver, lambda d: shows(d, f"Via {transport}"), f"item not received over {transport}")


def test_page_reconnects_after_a_server_restart_and_shows_what_it_missed(
    browser_factory, daphne_factory, make_user, manage
):
    make_user("erin")
    server = daphne_factory()
    driver = browser_factory()
    sign_in(driver, server, "erin")
    live(driver, "websocket")
    server.stop()
    wait_until(driver, lambda d: d.find_element("id", "transport-status").get_attribute("data-state")
               != "open", "page did not notice the server went away")
    for n in range(3):
        result = manage("notify_send", "--to", "erin", "--title", f"While down {n}")
        assert result.returncode == 0, result.stderr
    server.start()
    wait_until(driver, lambda d: all(shows(d, f"While down {n}") for n in range(3)),
               "missed items not shown after restart", timeout=45)
    shown = ids(driver)
    assert len(shown) == len(set(shown)) == 3


@pytest.mark.parametrize("transport", ["websocket", "sse", "poll"])
def test_page_never_shows_offline_through_a_drain_and_restart(browser_factory, daphne_factory, make_user, manage,
                                                             transport):
    """Issue 13: SIGTERM drains the server (1012 / reconnect / reconnect_ms); the page
    waits the delay, says "connecting" (not "offline") while the server restarts, and
    then shows what was sent meanwhile, once."""
    import signal

    make_user("gina")
    server = daphne_factory(NOTIFY_DRAIN_SECONDS="2")
    driver = browser_factory()
    sign_in(driver, server, "gina", f"/?transport={transport}")
    live(driver, transport)
    driver.execute_script(
        "window.__states = [];"
        "const el = document.getElementById('transport-status');"
        "new MutationObserver(() => window.__states.push(el.dataset.state))"
        ".observe(el, {attributes: true, attributeFilter: ['data-state']});"
    )
    server.signal(signal.SIGTERM)
    assert server.wait_exit(20) == 0
    result = manage("notify_send", "--to", "gina", "--title", "Sent during the deploy")
    assert result.returncode == 0, result.stderr
    server.start()
    wait_until(driver, lambda d: shows(d, "Sent during the deploy"), "item not shown after the restart", timeout=45)
    live(driver, transport)
    states = driver.execute_script("return window.__states")
    assert "connecting" in states and "offline" not in states, " ".join(states)
    assert len(ids(driver)) == len(set(ids(driver))) == 1


def test_mark_read_in_one_tab_drops_the_badge_in_another(browser_factory, daphne_factory, make_user, manage):
    frank = make_user("frank")
    server = daphne_factory()
    first, second = browser_factory(), browser_factory()
    for driver in (first, second):
        sign_in(driver, server, "frank")
        live(driver, "websocket")
    staff = make_user("staff", is_staff=True, is_superuser=True)
    for n in range(2):
        admin_post(server, staff, "/admin/notify/notification/add/",
                   {"recipient": str(frank.pk), "kind": "message", "title": f"Item {n}", "body": "", "level": "info",
                    "url": "", "data": "{}", "dedupe_key": ""})
    for driver in (first, second):
        wait_until(driver, lambda d: badge(d) == 2, "badge did not reach 2")
    first.find_element("css selector", "#notification-list li.unread .mark-read").click()
    wait_until(second, lambda d: badge(d) == 1, "second tab's badge did not drop to 1")
    first.find_element("id", "mark-all-read").click()
    wait_until(second, lambda d: badge(d) == 0, "second tab's badge did not drop to 0")


def test_screenshot_of_the_inbox(browser_factory, daphne_factory, make_user):
    """Saves docs/inbox.png (committed, shown in the README)."""
    from notify import api

    user = make_user("grace")
    api.send(user, title="Welcome to notify", body="Live notifications for Django.", level="info")
    api.send(user, title="Invoice paid", body="Invoice #1042 was paid.", level="success", url="/invoices/1042")
    api.send(user, title="Disk almost full", body="92% used on db-1.", level="warning")
    api.send(user, title="Deploy failed", body="Build 981 failed its tests.", level="error")
    server = daphne_factory()
    driver = browser_factory()
    sign_in(driver, server, "grace")
    live(driver, "websocket")
    wait_until(driver, lambda d: len(ids(d)) == 4, "list not loaded")
    driver.execute_script(
        "const id = document.querySelector('#notification-list li[data-id]').dataset.id;"
        "return window.notifyClient.markRead([Number(id)]);"
    )
    wait_until(driver, lambda d: badge(d) == 3, "mark read not applied")
    time.sleep(0.3)  # let the CSS transition of the read item settle for the picture
    target = Path(ROOT) / "docs" / "inbox.png"
    target.parent.mkdir(exist_ok=True)
    assert driver.save_screenshot(str(target))
    assert target.stat().st_size > 10_000
