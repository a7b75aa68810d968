"""The control page in a real headless Chromium (Debian's package, driven by Playwright):
it asks for the token, shows preview frames, and switches the restorer."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from .conftest import TOKEN, wait_for

sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (the test extra)")

CHROMIUM = next(
    (found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))), None
)
#: Where the screenshot goes; docs/serve-control-page.png is made with
#: SMOKECLEAR_SERVE_SCREENSHOT=docs/serve-control-page.png (docs/operations.md).
SCREENSHOT_ENV = "SMOKECLEAR_SERVE_SCREENSHOT"


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no chromium binary on PATH (Debian: apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


def test_control_page_asks_for_the_token_shows_frames_and_switches(browser, daemon, tmp_path):
    page = browser.new_page(viewport={"width": 760, "height": 560})
    page.goto(f"http://127.0.0.1:{daemon.port}/")
    token = page.locator("#token")
    token.wait_for(state="visible", timeout=10_000)
    token.fill("wrong-token-0000000000")
    page.click("#login")
    page.locator("#login-message").filter(has_text="wrong token").wait_for(timeout=10_000)
    token.fill(TOKEN)
    page.click("#login")
    card = page.locator('.pipeline[data-name="or1"]')
    card.wait_for(timeout=10_000)
    assert page.locator("#login-form").is_hidden()
    cookie = {c["name"]: c for c in page.context.cookies()}["smokeclear_token"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict", cookie

    preview = card.locator("img.preview")
    wait_for(
        lambda: preview.evaluate("img => img.complete && img.naturalWidth") == 160,
        15,
        "a preview frame in the page",
    )
    card.locator(".mode.PROCESSED, .mode.BYPASS").wait_for(timeout=10_000)

    card.locator(".restorer-input").fill("lowlight")
    card.locator(".switch").click()
    card.locator(".message", has_text="switched to lowlight").wait_for(timeout=60_000)
    card.locator(".stats", has_text="lowlight").wait_for(timeout=5_000)
    assert daemon.pipelines.get("or1").restorer == "lowlight"
    page.wait_for_timeout(1000)  # a few more preview frames for the screenshot
    screenshot = Path(os.environ.get(SCREENSHOT_ENV) or tmp_path / "control-page.png")
    page.screenshot(path=str(screenshot))
    assert screenshot.stat().st_size > 10_000, "the screenshot shows the page"

    card.locator(".restorer-input").fill("nope")
    card.locator(".switch").click()
    card.locator(".message", has_text="unknown restorer 'nope'").wait_for(timeout=10_000)
    card.locator(".restorer-input").fill("desmoke")
    card.locator(".switch").click()
    card.locator(".message", has_text="switched to desmoke").wait_for(timeout=60_000)
    page.close()
