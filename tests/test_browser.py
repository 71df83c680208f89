"""The page in a real headless browser: upload an example, press Generate, see an angiogram.

Uses Debian's `chromium` (installed by `.ci/run`) through Playwright; never `playwright install`. Skipped on a
machine without it, but in CI (where $CI is set) a missing browser is a failure.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import app
from ffa_pipeline import demo
from ffa_pipeline.model_config import build_pipeline

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
EXAMPLE = app.EXAMPLES_DIR / "diabetic_retinopathy_cfp.png"
TIMEOUT_MS = 90_000


@pytest.fixture
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: CI must run the browser test (.ci/run installs Debian's chromium)")
        pytest.skip(f"no browser: {CHROMIUM} not found (install Debian's `chromium` package to run this test)")
    return CHROMIUM


@pytest.fixture
def app_url():
    pipe = build_pipeline("tiny", seed=0)
    pipe.is_untrained = True
    pipe.set_progress_bar_config(disable=True)
    blocks = app.build_demo(pipe)
    _, url, _ = blocks.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, **app.LAUNCH_OPTIONS)
    yield url
    blocks.close()


def test_upload_generate_and_see_the_angiogram(chromium_path, app_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    screenshot = tmp_path / "app.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            expect.set_options(timeout=TIMEOUT_MS)  # generating takes seconds on a busy CPU
            page.goto(app_url)
            expect(page.get_by_text(demo.UNTRAINED_WARNING)).to_be_visible()
            page.locator("#input-image input[type=file]").set_input_files(str(EXAMPLE))
            expect(page.locator("#input-image img")).to_be_visible()
            page.get_by_text("Advanced").click()
            page.get_by_label("Number of samples").first.fill("3")
            page.locator("#generate").click()
            angiogram = page.locator("#angiogram img")
            expect(angiogram).to_be_visible()
            expect(angiogram).to_have_attribute("src", re.compile(r"ffa_\w+_seed0\.png"))
            assert angiogram.evaluate("image => image.complete && image.naturalWidth") > 0
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert screenshot.stat().st_size > 10_000
    print(f"screenshot: {screenshot}")
