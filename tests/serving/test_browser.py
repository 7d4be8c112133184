"""End to end: the real server (uvicorn, embedded default model) driven by headless Chromium.

Uploads the shapes scene, presses Detect, checks that boxes are drawn and listed, and saves a
screenshot; with a model that has a mask head, checks that ticking "masks" draws each detection's
mask (and that the box is unavailable for the default model, which has none); with a model that has
a caption head, presses Describe and checks the caption and its phrase boxes; with a model that
has a VQA head, that a question typed in the question box gets its answers listed. It saves the
screenshot (to the test's temporary folder; with ``GLIP_UPDATE_SCREENSHOT=1`` to
docs/serving-screenshot.png, the picture of the README). Skips only where Chromium or chromedriver
is missing.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest

from serving_support import SCENE, uvicorn_server

pytest.importorskip("uvicorn", reason="the browser test needs the serve extra: pip install -e '.[serve]'")

DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "serving-screenshot.png"


def _find(*names: str) -> str | None:
    return next((path for path in map(shutil.which, names) if path), None)


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    binary = _find("chromium", "chromium-browser", "google-chrome")
    driver_path = _find("chromedriver")
    if binary is None or driver_path is None:
        pytest.skip("headless browser test: Chromium or chromedriver not found on PATH "
                    "(apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1100,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver_path), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def server_url():
    """uvicorn on a free loopback port in a background thread, serving the embedded default model."""
    from glip.predictor import GLIPPredictor
    from glip.serving.app import create_app

    with uvicorn_server(create_app(GLIPPredictor.from_pretrained(None, device="cpu"))) as port:
        yield f"http://127.0.0.1:{port}"


def test_page_detects_and_draws_boxes(browser, server_url, tmp_path):
    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server_url + "/")
    WebDriverWait(browser, 10).until(lambda d: "glip-nano" in d.find_element(By.ID, "model-info").text)
    browser.find_element(By.ID, "image-input").send_keys(str(SCENE))
    button = browser.find_element(By.ID, "detect-button")
    WebDriverWait(browser, 10).until(lambda d: button.is_enabled())
    button.click()
    canvas = browser.find_element(By.ID, "canvas")
    WebDriverWait(browser, 120).until(lambda d: int(canvas.get_attribute("data-boxes-drawn")) > 0
                                      or "error" in d.find_element(By.ID, "status").get_attribute("class"))
    status = browser.find_element(By.ID, "status").text
    drawn = int(canvas.get_attribute("data-boxes-drawn"))
    rows = browser.find_elements(By.CSS_SELECTOR, "#detections tbody tr")
    assert drawn > 0, f"no boxes drawn; the page says: {status}"
    assert len(rows) == drawn and f"{drawn} detections" in status
    phrases = {row.find_elements(By.TAG_NAME, "td")[1].text for row in rows}
    assert phrases & {"star", "square", "hexagon", "cross"}, phrases
    assert (canvas.get_property("width"), canvas.get_property("height")) == (512, 512)  # the 320 px scene, enlarged
    assert not browser.find_element(By.ID, "masks-input").is_enabled()  # glip-nano has no mask head
    assert browser.find_element(By.ID, "question-input").is_enabled()  # its answer head ships beside it
    assert canvas.get_attribute("data-masks-drawn") == "0"
    # A small PNG for the docs: the page as seen, reduced to a palette.
    picture = Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("RGB")
    screenshot = DOCS_SCREENSHOT if os.environ.get("GLIP_UPDATE_SCREENSHOT") == "1" else tmp_path / "page.png"
    screenshot.parent.mkdir(exist_ok=True)
    picture.quantize(colors=64).save(screenshot, optimize=True)
    assert screenshot.stat().st_size > 0


@pytest.fixture(scope="module")
def masked_server_url(masked_predictor):
    """uvicorn serving the random glip-tiny with a mask head (64 px input) of the serving conftest."""
    from glip.serving.app import create_app

    with uvicorn_server(create_app(masked_predictor)) as port:
        yield f"http://127.0.0.1:{port}"


def test_page_draws_masks(browser, masked_server_url):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(masked_server_url + "/")
    WebDriverWait(browser, 10).until(lambda d: "glip-tiny" in d.find_element(By.ID, "model-info").text)
    masks = browser.find_element(By.ID, "masks-input")
    assert masks.is_enabled() and not masks.is_selected()
    browser.find_element(By.ID, "image-input").send_keys(str(SCENE))
    button = browser.find_element(By.ID, "detect-button")
    WebDriverWait(browser, 10).until(lambda d: button.is_enabled())
    canvas = browser.find_element(By.ID, "canvas")

    def finished(driver) -> bool:
        return button.is_enabled() and "Detecting" not in driver.find_element(By.ID, "status").text

    button.click()
    WebDriverWait(browser, 60).until(lambda d: finished(d) and int(canvas.get_attribute("data-boxes-drawn")) > 0)
    boxes = int(canvas.get_attribute("data-boxes-drawn"))
    assert canvas.get_attribute("data-masks-drawn") == "0"
    without = browser.execute_script("return arguments[0].toDataURL();", canvas)
    masks.click()  # runs the detection again, with masks
    WebDriverWait(browser, 60).until(lambda d: finished(d) and int(canvas.get_attribute("data-masks-drawn")) > 0)
    status = browser.find_element(By.ID, "status")
    assert "error" not in status.get_attribute("class"), status.text
    assert int(canvas.get_attribute("data-masks-drawn")) == int(canvas.get_attribute("data-boxes-drawn")) == boxes
    assert browser.execute_script("return arguments[0].toDataURL();", canvas) != without


@pytest.fixture(scope="module")
def caption_server_url():
    """uvicorn serving a random glip-tiny with a caption head (64 px input)."""
    from caption_model import caption_glip
    from glip.predictor import GLIPPredictor
    from glip.serving.app import create_app

    with uvicorn_server(create_app(GLIPPredictor(caption_glip(max_tokens=4), device="cpu"))) as port:
        yield f"http://127.0.0.1:{port}"


def test_page_describes_the_picture(browser, caption_server_url, server_url):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    # the embedded model has no caption head: Describe stays disabled
    browser.get(server_url + "/")
    WebDriverWait(browser, 10).until(lambda d: "glip-nano" in d.find_element(By.ID, "model-info").text)
    browser.find_element(By.ID, "image-input").send_keys(str(SCENE))
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "detect-button").is_enabled())
    assert not browser.find_element(By.ID, "describe-button").is_enabled()

    browser.get(caption_server_url + "/")
    WebDriverWait(browser, 10).until(lambda d: "glip-tiny" in d.find_element(By.ID, "model-info").text)
    browser.find_element(By.ID, "image-input").send_keys(str(SCENE))
    button = browser.find_element(By.ID, "describe-button")
    WebDriverWait(browser, 10).until(lambda d: button.is_enabled())
    button.click()
    output = browser.find_element(By.ID, "caption-output")
    status = browser.find_element(By.ID, "status")
    WebDriverWait(browser, 60).until(lambda d: "boxed phrases" in status.text or "error" in status.get_attribute("class"))
    assert "error" not in status.get_attribute("class"), status.text
    caption = browser.execute_script("return arguments[0].textContent;", output)
    assert isinstance(caption, str)  # a random model's caption may be empty
    rows = browser.find_elements(By.CSS_SELECTOR, "#detections tbody tr")
    assert len(rows) == int(browser.find_element(By.ID, "canvas").get_attribute("data-boxes-drawn"))


@pytest.fixture(scope="module")
def vqa_server_url(tmp_path_factory):
    """uvicorn serving a random glip-tiny with a VQA head (`vqa_model.save_vqa_glip`) at a 64 px input."""
    import dataclasses

    from glip.predictor import GLIPPredictor
    from glip.serving.app import create_app
    from vqa_model import save_vqa_glip

    predictor = GLIPPredictor.from_pretrained(save_vqa_glip(tmp_path_factory.mktemp("vqa") / "m.safetensors"),
                                              device="cpu")
    predictor.model.config.input = dataclasses.replace(predictor.model.config.input, min_size=64, max_size=64)
    with uvicorn_server(create_app(predictor)) as port:
        yield f"http://127.0.0.1:{port}"


def test_page_answers_a_question(browser, vqa_server_url):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from vqa_model import ANSWERS

    browser.get(vqa_server_url + "/")
    WebDriverWait(browser, 10).until(lambda d: "glip-tiny" in d.find_element(By.ID, "model-info").text)
    question = browser.find_element(By.ID, "question-input")
    assert question.is_enabled()
    browser.find_element(By.ID, "image-input").send_keys(str(SCENE))
    ask = browser.find_element(By.ID, "ask-button")
    WebDriverWait(browser, 10).until(lambda d: ask.is_enabled())
    question.clear()
    question.send_keys("how many stars are there?")
    ask.click()
    WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#answers tbody tr")
                                     or "error" in d.find_element(By.ID, "vqa-status").get_attribute("class"))
    status = browser.find_element(By.ID, "vqa-status")
    assert "error" not in status.get_attribute("class"), status.text
    rows = browser.find_elements(By.CSS_SELECTOR, "#answers tbody tr")
    cells = [row.find_elements(By.TAG_NAME, "td") for row in rows]
    assert len(rows) == 3 and cells[0][0].text == "how many stars are there?"
    assert {c[1].text for c in cells} <= set(ANSWERS) and status.text.startswith("Answer: " + cells[0][1].text)
