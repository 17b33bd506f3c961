"""The try-it page (GET /): its routes, then a person's path through it in headless Chromium
against a real `classify serve` and its pretrained model, with a screenshot as an artifact."""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from bench.harness import REPO, ServerProcess, skimage_photo

# Debian's packages (`apt-get install chromium chromium-driver`): same version, no download.
CHROMIUM = Path(os.environ.get("CLASSIFY_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("CLASSIFY_CHROMEDRIVER", "/usr/bin/chromedriver"))
ARTIFACTS = REPO / "test-artifacts"






@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:  # fail, not skip: CI must really drive a browser
        pytest.fail(f"headless browser test needs {' and '.join(missing)}: "
                    "apt-get install -y chromium chromium-driver", pytrace=False)
    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", "--window-size=1100,900",
                     f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: Selenium Manager (which would download drivers) never runs.
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    yield driver
    driver.quit()


def open_page(browser: WebDriver, server: ServerProcess) -> None:
    page = httpx.get(f"{server.http_url}/", timeout=10)
    assert page.status_code == 200, (
        f"`classify serve` does not serve GET / (add_try_it_page(app) in create_app?): {page.text[:200]}")
    browser.get(f"{server.http_url}/")
    wait_for_state(browser, "ready", 30)


def wait(browser: WebDriver, timeout: float) -> WebDriverWait[WebDriver]:
    """A wait that polls again when the page redraws an element between finding and reading it."""
    return WebDriverWait(browser, timeout, ignored_exceptions=(StaleElementReferenceException,))


def wait_for_state(browser: WebDriver, state: str, timeout: float) -> None:
    """The page's <body data-state>: ready once wired, busy while a request runs, done after."""
    body = (By.TAG_NAME, "body")
    wait(browser, timeout).until(lambda d: d.find_element(*body).get_attribute("data-state") == state)


def upload(browser: WebDriver, path: Path) -> None:
    browser.find_element(By.ID, "file").send_keys(str(path))  # what picking a file does
    wait_for_state(browser, "done", 120)


def labels(browser: WebDriver) -> list[str]:
    return [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#predictions .prediction .label")]


def test_a_real_photo_gets_its_labels_as_bars(
    browser: WebDriver, models_server: ServerProcess, tmp_path: Path
) -> None:
    photo = tmp_path / "coffee.png"
    photo.write_bytes(skimage_photo("coffee.png"))
    open_page(browser, models_server)
    upload(browser, photo)

    error = browser.find_element(By.ID, "error")
    assert not error.is_displayed(), error.text
    assert labels(browser)[0] == "espresso"
    assert len(labels(browser)) == 5  # the selector's default top-K
    assert browser.find_element(By.ID, "model-name").text == "efficientnet_lite0"
    assert re.fullmatch(r"[0-9a-f]{12}", browser.find_element(By.ID, "model-version").text)
    assert re.fullmatch(r"\d+ ms round trip", browser.find_element(By.ID, "latency").text)
    probabilities = browser.find_elements(By.CSS_SELECTOR, "#predictions .probability")
    shown = [float(e.text.rstrip("%")) for e in probabilities]
    assert shown == sorted(shown, reverse=True) and shown[0] > 0
    widths = [e.size["width"] for e in browser.find_elements(By.CSS_SELECTOR, "#predictions .fill")]
    assert widths[0] > widths[-1] >= 0, "bar lengths do not follow the probabilities"
    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "try_it.png"))

    # It used the public route, from this origin only, and the console stayed clean (no CSP report).
    fetched: list[str] = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")
    assert f"{models_server.http_url}/v1/classify" in fetched
    assert all(url.startswith(models_server.http_url) for url in fetched), fetched
    problems = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not problems, problems

    Select(browser.find_element(By.ID, "top-k")).select_by_visible_text("3")
    wait(browser, 60).until(lambda d: len(labels(d)) == 3)
    assert labels(browser)[0] == "espresso"


def test_an_error_shows_the_status_code_and_message(
    browser: WebDriver, models_server: ServerProcess, tmp_path: Path
) -> None:
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_bytes(b"these are words, not pixels")
    open_page(browser, models_server)
    upload(browser, not_an_image)
    ARTIFACTS.mkdir(exist_ok=True)

    error = browser.find_element(By.ID, "error")
    assert error.is_displayed()
    assert error.find_element(By.TAG_NAME, "strong").text == "INVALID_ARGUMENT (HTTP 400)"
    assert len(error.text.splitlines()) == 2 and error.text.splitlines()[1], "no message from the server"
    assert not browser.find_element(By.ID, "result").is_displayed()
    browser.save_screenshot(str(ARTIFACTS / "try_it_error.png"))


DROP = """
const [bytes, name] = arguments;
const data = new DataTransfer();
data.items.add(new File([Uint8Array.from(atob(bytes), c => c.charCodeAt(0))], name, {type: "image/png"}));
const drop = new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true});
document.getElementById("drop").dispatchEvent(drop);
"""


def test_a_dropped_photo_is_classified_and_another_model_can_answer(
    browser: WebDriver, models_server: ServerProcess
) -> None:
    open_page(browser, models_server)
    wait(browser, 30).until(lambda d: len(Select(d.find_element(By.ID, "model")).options) > 1)
    browser.execute_script(DROP, base64.b64encode(skimage_photo("chelsea.png")).decode(), "chelsea.png")
    wait_for_state(browser, "done", 120)
    first = browser.find_element(By.CSS_SELECTOR, "#predictions .prediction")
    # tabby, tiger cat or Egyptian cat, as tests/e2e/models/test_pretrained_accuracy.py accepts
    assert int(first.get_attribute("data-class-index")) in {281, 282, 285}, labels(browser)

    Select(browser.find_element(By.ID, "model")).select_by_value("resnet18")
    wait(browser, 60).until(lambda d: d.find_element(By.ID, "model-name").text == "resnet18")
    assert len(labels(browser)) == 5
