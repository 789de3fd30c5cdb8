"""The status page in a real browser: Debian's headless Chromium driven by selenium,
against the page served by uvicorn over a database of demo runs.

Needs ``chromium`` and ``chromium-driver`` (``ops/test`` installs them). A screenshot
of each page is written under the test's tmp folder; with ``RB_DOCS_SCREENSHOT=PATH``
the runs page's is also written there (how docs/serve-runs.png was made).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy import Engine

from remotebridge.states import RunState
from tests.web.builders import HOSTILE, Demo, move

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
#: the page fetches its fragment every 4 s; a change must show well within this
WAIT_S = 30


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    """Headless Chromium (a private profile under tmp_path), at a laptop's width."""
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.fail("chromium and chromium-driver are needed: apt-get install -y chromium "
                    "chromium-driver (bash ops/test installs them)", pytrace=False)
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1100,800"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def _shot(driver: WebDriver, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    assert driver.save_screenshot(str(path))
    assert path.stat().st_size > 1000
    return path


def _state_cell(driver: WebDriver, rid: int) -> str:
    return driver.find_element(By.CSS_SELECTOR, f"#run-{rid} td.state").text


def test_runs_page_lists_the_runs(browser: WebDriver, served: str, demo: Demo,
                                  tmp_path: Path) -> None:
    browser.get(served + "/runs")
    rows = browser.find_elements(By.CSS_SELECTOR, "#runs tbody tr")
    assert [r.get_attribute("id") for r in rows] == [
        f"run-{rid}" for rid in (demo.new, demo.running, demo.failed, demo.other)]
    assert _state_cell(browser, demo.failed) == "error"
    shot = _shot(browser, tmp_path, "runs")
    if os.environ.get("RB_DOCS_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["RB_DOCS_SCREENSHOT"])


def test_state_change_shows_without_a_reload(browser: WebDriver, served: str,
                                             engine: Engine, demo: Demo,
                                             tmp_path: Path) -> None:
    browser.get(served + "/runs")
    assert _state_cell(browser, demo.new) == "new"
    browser.execute_script("window.rbSamePage = 'yes';")
    move(engine, demo.new, RunState.CANCELLED, "withdrawn by the operator")
    WebDriverWait(browser, WAIT_S).until(
        lambda d: _state_cell(d, demo.new) == "cancelled")
    # the same document: a reload would have dropped the marker
    assert browser.execute_script("return window.rbSamePage;") == "yes"
    assert "live" in browser.find_element(By.ID, "live-status").text
    _shot(browser, tmp_path, "runs-after-change")


def test_run_page_shows_history_and_failed_task_log(browser: WebDriver, served: str,
                                                    demo: Demo, tmp_path: Path) -> None:
    browser.get(f"{served}/runs/{demo.failed}")
    history = browser.find_element(By.ID, "history").text
    assert "definebyquery" in history and "exec: submitted job 4243" in history
    log = browser.find_element(By.CSS_SELECTOR, "details.log pre").text
    assert "ValueError: bad <b>pixel</b>" in log
    assert browser.find_element(By.ID, "failed").text.startswith("chip 6: failed")
    _shot(browser, tmp_path, "run")


def test_script_in_a_note_is_shown_as_text(browser: WebDriver, served: str, demo: Demo,
                                           tmp_path: Path) -> None:
    browser.get(f"{served}/runs/{demo.failed}")
    note = browser.find_element(By.ID, "note").text
    assert note.startswith("poll: " + HOSTILE.split(" \x1b")[0])
    assert "\\x1b[31mred" in note
    assert browser.find_elements(By.CSS_SELECTOR, "#live script, #live b") == []
    # the live update swaps in the same escaped text: still no element made of it
    browser.execute_script("window.rbSamePage = 'yes';")
    WebDriverWait(browser, WAIT_S).until(
        lambda d: "updated" in d.find_element(By.ID, "live-status").text)
    assert browser.find_elements(By.CSS_SELECTOR, "#live script, #live b") == []
    assert browser.execute_script("return window.rbSamePage;") == "yes"
    _shot(browser, tmp_path, "run-hostile")


def test_sites_page_and_phone_width(browser: WebDriver, served: str, demo: Demo,
                                    tmp_path: Path) -> None:
    browser.get(served + "/sites")
    assert "localhost" in browser.find_element(By.ID, "site-demo").text
    _shot(browser, tmp_path, "sites")
    browser.set_window_size(390, 844)
    browser.get(served + "/runs")
    width = browser.execute_script("return document.documentElement.scrollWidth;")
    inner = browser.execute_script("return window.innerWidth;")
    assert width <= inner
    _shot(browser, tmp_path, "runs-phone")
