"""The search page in a real browser (Debian's chromium through chromedriver, headless)
against the live user group: the key asked for once, counters, dead letters, alerts, a query
typed and its results, filter errors, "more like this". Screenshots go to test-artifacts/page/."""

from __future__ import annotations

import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from streamvec import Client
from tests.support.users import PARTITIONS, Users
from tests.support.workers import REPO

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SHOTS = REPO / "test-artifacts" / "page"
LION = "big wild cat with a mane"


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if missing:
        pytest.fail(f"{missing} not installed: `make install` installs Debian's chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
                     "--lang=en-US"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver: WebDriver, what: str, condition: object, timeout: float = 20) -> object:
    try:
        return WebDriverWait(driver, timeout).until(lambda d: condition(d))  # type: ignore[operator]
    except TimeoutException:
        shot = SHOTS / f"timeout-{int(time.time())}.png"
        driver.save_screenshot(str(shot))
        raise AssertionError(f"the page did not show {what} within {timeout} s (screenshot {shot})") from None


def text(driver: WebDriver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def shoot(driver: WebDriver, name: str) -> Path:
    path = SHOTS / name
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def dialog_open(driver: WebDriver) -> bool:
    return driver.find_element(By.ID, "key-dialog").get_attribute("open") is not None


def enter_key(driver: WebDriver, key: str) -> None:
    field = driver.find_element(By.ID, "key-input")
    field.clear()
    field.send_keys(key)
    driver.find_element(By.ID, "key-button").click()


def run_search(driver: WebDriver, query: str, k: int = 5, filter_text: str = "", mode: str = "text") -> None:
    Select(driver.find_element(By.ID, "mode")).select_by_value(mode)
    for element_id, value in (("query", query), ("k", str(k)), ("filter", filter_text)):
        field = driver.find_element(By.ID, element_id)
        field.clear()
        field.send_keys(value)
    driver.find_element(By.ID, "search-button").click()


def result_ids(driver: WebDriver) -> list[str]:
    """Read in one script: the list is replaced whole when new results arrive."""
    return driver.execute_script(  # type: ignore[no-any-return]
        "return [...document.querySelectorAll('#results li .id')].map(e => e.textContent)")


def test_the_page_asks_for_the_key_once_then_shows_the_groups_counters(browser: WebDriver, user_group: Users) -> None:
    browser.get(user_group.urls[0] + "/")
    wait(browser, "the API key dialog", dialog_open)
    enter_key(browser, "not-the-key")
    wait(browser, "that the key was refused", lambda d: "refused" in text(d, "key-message"))
    enter_key(browser, user_group.api_key)
    wait(browser, "the document count", lambda d: text(d, "count-documents").replace(",", "").isdigit())
    assert int(text(browser, "count-documents").replace(",", "")) == len(user_group.documents)
    assert text(browser, "count-partitions") == f"{PARTITIONS} of {PARTITIONS}"
    assert text(browser, "count-workers") == "2 of 2 answering"
    # Lag is live (high watermark − last offset read, refreshed every few seconds): a counter read
    # in the page's first refresh once showed 1 on a clean-clone CI run; it must reach 0 and stay.
    wait(browser, "a lag of 0", lambda d: text(d, "count-lag") == "0")
    assert text(browser, "count-dead_lettered") == str(sum(user_group.refused.values()))
    wait(browser, "the dead letters", lambda d: len(d.find_elements(By.CSS_SELECTOR, "#dead-letter-list li")) == 2)
    reasons = {item.text for item in browser.find_elements(By.CSS_SELECTOR, "#dead-letter-list .reason")}
    assert reasons == set(user_group.refused)
    assert "{not json" in text(browser, "dead-letter-list")
    shoot(browser, "counters.png")
    browser.refresh()  # asked once: the tab keeps the key
    wait(browser, "the counters after a reload", lambda d: text(d, "count-documents").replace(",", "").isdigit())
    assert not dialog_open(browser)


def test_the_page_shows_the_latest_alerts(browser: WebDriver, user_group: Users) -> None:
    browser.get(user_group.urls[0] + "/")
    if dialog_open(browser):
        enter_key(browser, user_group.api_key)
    wait(browser, "the alerts", lambda d: len(d.find_elements(By.CSS_SELECTOR, "#alert-list li")) == len(user_group.alerts))
    assert text(browser, "alerts-watchlist") == str(len(user_group.alerts))
    assert (text(browser, "alerts-novel"), text(browser, "alerts-drift")) == ("0", "0")
    shown = text(browser, "alert-list")
    for doc_id, pattern in user_group.alerts.items():
        assert doc_id in shown and f"matches pattern {pattern} [cats]" in shown, shown
    assert not browser.find_element(By.ID, "alerts-empty").is_displayed()
    shoot(browser, "alerts.png")


def test_a_typed_query_shows_the_same_results_as_the_api(browser: WebDriver, user_group: Users) -> None:
    run_search(browser, LION, k=5, filter_text='{"category": "animal"}')
    wait(browser, "5 results", lambda d: len(result_ids(d)) == 5)
    with Client(user_group.urls, api_key=user_group.api_key) as client:
        expected = client.search(LION, k=5, filter={"category": "animal"})
    assert result_ids(browser) == [hit.id for hit in expected]
    first = browser.find_element(By.CSS_SELECTOR, "#results li")
    assert first.find_element(By.CSS_SELECTOR, ".score").text == f"{expected.hits[0].score:.4f}"
    assert "category\nanimal" in first.find_element(By.CSS_SELECTOR, ".metadata").text.replace(":", "")
    shown_texts = [item.text for item in browser.find_elements(By.CSS_SELECTOR, "#results .text")]
    assert shown_texts == [hit.text for hit in expected if hit.text is not None]  # text when the workers return it
    assert text(browser, "summary").startswith("5 results in")
    assert not browser.find_element(By.ID, "partial").is_displayed()
    shoot(browser, "search-results.png")


def test_filter_errors_are_shown_under_the_filter(browser: WebDriver) -> None:
    run_search(browser, LION, filter_text='{"category": ')
    wait(browser, "the JSON error", lambda d: text(d, "filter-message").startswith("filter: not JSON"))
    run_search(browser, LION, filter_text='{"category": {"$gtx": "animal"}}')
    wait(browser, "the worker's filter error", lambda d: 'unknown operator "$gtx"' in text(d, "filter-message"))
    assert result_ids(browser) == []
    shoot(browser, "filter-error.png")


def test_more_like_this_searches_by_document_id(browser: WebDriver) -> None:
    run_search(browser, LION, k=3, filter_text='{"category": "animal"}')
    wait(browser, "3 results", lambda d: len(result_ids(d)) == 3)
    chosen = result_ids(browser)[0]
    browser.find_element(By.CSS_SELECTOR, "#results li .more").click()
    wait(browser, "the neighbours of the chosen document",
         lambda d: d.find_element(By.ID, "query").get_attribute("value") == chosen and len(result_ids(d)) == 3
         and chosen not in result_ids(d))
    assert Select(browser.find_element(By.ID, "mode")).first_selected_option.get_attribute("value") == "id"


def test_stored_markup_is_shown_as_text(browser: WebDriver, user_group: Users) -> None:
    doc_id = f"<b>markup-{time.time_ns()}</b>"
    with Client(user_group.urls, api_key=user_group.api_key, broker=user_group.broker,
                app_id=user_group.app_id) as client:
        client.upsert([{"id": doc_id, "text": "an accordion with a bellows",
                        "metadata": {"note": '<img src="x" id="injected">'}}], wait=True)
        try:
            run_search(browser, "accordion bellows", k=1)
            wait(browser, "the document", lambda d: result_ids(d) == [doc_id])
            assert '<img src="x" id="injected">' in text(browser, "results")
            assert not browser.find_elements(By.ID, "injected")
        finally:
            client.delete([doc_id], wait=True)


def test_everything_the_page_loads_comes_from_the_worker(browser: WebDriver, user_group: Users) -> None:
    loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded and all(name.startswith(user_group.urls[0] + "/") for name in loaded), loaded
    with urllib.request.urlopen(user_group.urls[0] + "/", timeout=10) as response:  # no key needed for the page
        assert response.headers["Content-Type"].startswith("text/html")
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
