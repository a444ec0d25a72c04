"""The playground page in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by selenium) loads ``GET /`` against the running stack, lists the
models, sends a message and sees the streamed answer appear with its timings, and sees the status
panel list the models with their live workers. Skips, saying why, where no browser can be had."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import EMBED_MODEL, TINY
from tests.integration.http import get

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = os.environ.get("PLAYGROUND_SCREENSHOT")  # where to save the page, if set


def chromium() -> tuple[str, str] | None:
    """The browser and its driver, installed from Debian's packages when missing (as root)."""

    def found():
        browser = shutil.which("chromium")
        driver = shutil.which("chromedriver")
        return (browser, driver) if browser and driver else None

    if found() is None and os.geteuid() == 0 and shutil.which("apt-get"):
        try:  # bounded: a slow mirror must not hold the suite up for long
            subprocess.run(["apt-get", "update"], capture_output=True, timeout=180)
            subprocess.run(
                [
                    "apt-get",
                    "install",
                    "-y",
                    "--no-install-recommends",
                    "chromium",
                    "chromium-driver",
                ],
                capture_output=True,
                timeout=300,
            )
        except subprocess.TimeoutExpired:
            pass
    return found()


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    paths = chromium()
    if paths is None:
        pytest.skip("no chromium and chromium-driver here, and they could not be installed")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,800",
    ):
        options.add_argument(flag)
    from selenium.common.exceptions import WebDriverException

    try:
        driver = webdriver.Chrome(service=Service(paths[1]), options=options)
    except WebDriverException as exc:  # installed, but it cannot run here (no display libraries)
        pytest.skip(f"chromium would not start: {exc.msg}")
    yield driver
    driver.quit()


def test_the_front_page_is_the_playground(front):
    status, headers, body = get(front, "/")
    assert status == 200 and "llm-queue playground" in body


def test_the_status_endpoint_lists_models_with_their_workers(front, tiny_worker):
    status, _, body = get(front, "/status")
    rows = {row["model"]: row for row in body["models"]}
    assert rows[TINY]["live_workers"] >= 1
    assert {"running", "waiting", "queued"} <= set(rows[TINY])


def test_a_browser_chats_with_streaming_and_sees_the_workers(
    front, tiny_worker, embed_worker, browser
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser.get(f"{front}/")
    wait = WebDriverWait(browser, 60)
    wait.until(lambda b: TINY in [o.text for o in Select(b.find_element(By.ID, "model")).options])
    # The menu offers only models that chat, and one of them is selected: a first message,
    # sent without touching anything, goes to a model that can answer it.
    menu = Select(browser.find_element(By.ID, "model"))
    offered = [o.get_attribute("value") for o in menu.options]
    chat_models = {
        m["id"] for m in get(front, "/v1/models")[2]["data"] if "chat" in m["capabilities"]
    }
    assert EMBED_MODEL not in offered and set(offered) <= chat_models
    assert menu.first_selected_option.get_attribute("value") == offered[0]
    print(f"\nthe playground offers {offered}, and selects {offered[0]}")
    browser.find_element(By.ID, "prompt").send_keys("Tell me about queues.")
    browser.find_element(By.ID, "send").click()
    answer = (By.CSS_SELECTOR, ".message.assistant .text")
    wait = WebDriverWait(browser, 240)
    wait.until(lambda b: b.find_element(*answer).text.strip())  # streamed text appears
    # No max_tokens (the default): the tiny random model may run to its context, which takes
    # minutes on a busy machine. Stop it, and ask again within a few tokens for the stats.
    browser.find_element(By.ID, "stop").click()
    wait.until(lambda b: b.find_element(By.ID, "send").is_enabled())
    browser.find_element(By.ID, "max-tokens").send_keys("16")
    browser.find_element(By.ID, "prompt").send_keys("And about streams?")
    browser.find_element(By.ID, "send").click()
    wait.until(ready.text_to_be_present_in_element((By.ID, "stats"), "Time to first token"))
    assert "tokens/s" in browser.find_element(By.ID, "stats").text
    assert browser.find_element(By.ID, "error").text == ""

    # The status table is redrawn every few seconds, so it is read in one script, never row by
    # row (a row found before a redraw is stale after it).
    def status_table(b) -> dict:
        return b.execute_script(
            "const t = {};"
            "for (const r of document.querySelectorAll('#status-rows tr[data-model]'))"
            "  t[r.dataset.model] = r.querySelectorAll('td')[1].textContent;"
            "return t;"
        )

    wait.until(lambda b: {TINY, EMBED_MODEL} <= set(status_table(b)))
    workers = status_table(browser)
    assert int(workers[TINY]) >= 1 and int(workers[EMBED_MODEL]) >= 1
    if SCREENSHOT:
        browser.save_screenshot(SCREENSHOT)


def test_models_say_what_they_can_do(front, tiny_worker, embed_worker):
    cards = {m["id"]: m for m in get(front, "/v1/models")[2]["data"]}
    assert "chat" in cards[TINY]["capabilities"] and "tools" in cards[TINY]["capabilities"]
    assert cards[EMBED_MODEL]["capabilities"] == ["embeddings", "rerank", "score"]
