"""Headless Chromium for browser tests: the ``chromium`` fixture (a Selenium WebDriver)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import ARTIFACTS_DIR, missing_service

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = ARTIFACTS_DIR / "browser"


@pytest.fixture
def chromium() -> Iterator:
    """A fresh headless Chromium (own profile) driven through Debian's chromedriver."""
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        missing_service("chromium and chromium-driver are not installed")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing_service("selenium is not installed (pip install -e .[test])")
    profile = tempfile.mkdtemp(prefix="labxblock-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--window-size=1100,700", f"--user-data-dir={profile}",
    ):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


# Back/forward cache: installed before a page's scripts, records how each top-level page was shown
# (``[False, True]``: loaded, then restored from the cache by Back).
PAGESHOW = """
window.addEventListener('pageshow', function (e) {
  if (window.top === window) { window.__shows = (window.__shows || []).concat([e.persisted]); }
});
"""


def screenshot(driver, name: str) -> Path:
    """Save a PNG under test-artifacts/browser/ and print where it is."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    print(f"screenshot: {path} (folder {SCREENSHOTS})")
    return path
