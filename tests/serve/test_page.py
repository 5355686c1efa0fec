"""The server's page in a real browser (Chromium, headless, driven by selenium): it loads, a
translation appears with its attention heatmap, a streamed generation grows.

Needs Chromium and its driver (Debian: ``apt-get install chromium chromium-driver``) and
selenium; skipped with a message without them."""

from __future__ import annotations

import shutil
import threading

import pytest

webdriver = pytest.importorskip("selenium.webdriver", reason="the page test drives Chromium with selenium")
DRIVER = shutil.which("chromedriver")
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
if DRIVER is None or BROWSER is None:
    pytest.skip("the page test needs Chromium and chromedriver (Debian: apt-get install chromium chromium-driver)",
                allow_module_level=True)

import mlxseq  # noqa: E402
from mlxseq.pipelines.generator import BUNDLED_MODEL as CHAR_MODEL  # noqa: E402
from mlxseq.pipelines.translator import BUNDLED_MODEL as TRANSLATOR  # noqa: E402
from mlxseq.serve import Service, load_models, make_server  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def page():
    service = Service(load_models([str(TRANSLATOR), str(CHAR_MODEL)]))
    server = make_server(service, "127.0.0.1", 0, quiet=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=options)
    browser.get(f"http://127.0.0.1:{server.server_address[1]}/")
    yield browser
    browser.quit()
    server.shutdown()
    server.server_close()
    service.close()


def test_the_page_lists_the_models(page):
    WebDriverWait(page, 30).until(lambda b: "Served:" in b.find_element(By.ID, "models").text)
    assert "multi30k-de-en (translation)" in page.find_element(By.ID, "models").text


def test_a_translation_appears_with_its_heatmap(page):
    WebDriverWait(page, 30).until(lambda b: b.find_element(By.ID, "translate-section").is_displayed())
    source = page.find_element(By.ID, "source")
    source.clear()
    source.send_keys("Zwei Hunde spielen im Schnee.")
    page.find_element(By.ID, "translate").click()
    best = mlxseq.Translator.load().translate(["Zwei Hunde spielen im Schnee."])[0][0]
    WebDriverWait(page, 60).until(lambda b: b.find_element(By.ID, "translation").text == best.text)
    rows = page.find_elements(By.CSS_SELECTOR, "#attention table.att tbody tr")
    assert len(rows) == len(best.tokens) + 1  # one row per output token, and </s>
    assert "beam:" in page.find_element(By.ID, "translate-settings").text


def test_a_streamed_generation_grows(page):
    prompt = page.find_element(By.ID, "prompt")
    prompt.clear()
    prompt.send_keys("ROMEO:")
    tokens = page.find_element(By.ID, "max-tokens")
    tokens.clear()
    tokens.send_keys("300")
    page.find_element(By.ID, "generate").click()
    seen = []

    def grew(browser):
        seen.append(len(browser.find_element(By.ID, "completion").text))
        return seen[-1] >= len("ROMEO:") + 250

    WebDriverWait(page, 120, poll_frequency=0.05).until(grew)
    lengths = sorted(set(seen))
    assert len(lengths) >= 3, f"the text appeared at once, not as a stream: lengths seen {lengths}"
