"""End to end: `vaelab serve` in a subprocess on a free loopback port, driven by Debian's headless Chromium.

It drags on the latent pad and checks the decoded picture changed, uploads an image and sees its
reconstruction and posterior, draws samples and an interpolation strip, and saves a screenshot. Nothing is
downloaded: Selenium is given /usr/bin/chromium and /usr/bin/chromedriver (Selenium Manager stays off).
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from browser_testing import chrome, missing_browser, serving
from vaelab.config import Config
from vaelab.train import train

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def small_config(**flat) -> Config:
    """sklearn's 8x8 digits, a 32-unit MLP, a 2-D latent space: trains in about a second.

    (Defined here rather than imported from tests/conftest.py: another folder's conftest module can
    shadow that name when the whole suite runs.)
    """
    base = {
        "data.name": "digits",
        "model.hidden": (32,),
        "model.latent_dim": 2,
        "train.epochs": 2,
        "train.batch_size": 64,
        "train.progress": False,
        "train.threads": 1,
    }
    return Config().replace(**{**base, **flat})


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`vaelab serve` on a folder of two runs, on port 0 (a free port), in a subprocess."""
    if why := missing_browser():
        pytest.skip(why)
    root = tmp_path_factory.mktemp("browser") / "runs"
    train(small_config(**{"train.epochs": 4}), out=root / "digits-vae")
    train(small_config(**{"model.name": "autoencoder", "train.epochs": 2}), out=root / "digits-ae")
    with serving(root) as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory, server):
    profile = tmp_path_factory.mktemp("chromium-profile")
    driver = chrome(profile)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def image_pixels(driver, element_id: str) -> list[int]:
    """The RGBA pixels of an <img> as the page shows it (read back through a canvas)."""
    return driver.execute_script(
        """const img = document.getElementById(arguments[0]);
        const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
        const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
        return Array.from(ctx.getImageData(0, 0, c.width, c.height).data);""",
        element_id,
    )


def png_pixels(uri: str) -> np.ndarray:
    """The grey pixels [H, W] of a grey PNG given as a data: URI (what the API answers for a picture)."""
    head, data = uri.split(",", 1)
    assert head == "data:image/png;base64", head
    with Image.open(io.BytesIO(base64.b64decode(data))) as im:
        assert im.mode == "L", im.mode
        return np.asarray(im).copy()


def wait_for(driver, condition, what: str, timeout: float = 20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = driver.execute_script(condition)
        if value:
            return value
        time.sleep(0.05)
    status = driver.execute_script("return document.getElementById('status').textContent")
    raise AssertionError(f"timed out waiting for {what} (status line: {status!r})")


def decodes(driver) -> int:
    return int(
        driver.execute_script("return Number(document.getElementById('decoded').dataset.decodes || 0)")
    )


def test_drag_sample_interpolate_upload(server, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    url = server
    browser.get(url)
    wait_for(
        browser, "return Number(document.getElementById('decoded').dataset.decodes || 0) > 0", "first decode"
    )
    options = [o.text for o in browser.find_elements(By.CSS_SELECTOR, "#run-select option")]
    assert options == ["digits-ae", "digits-vae"]
    assert browser.find_element(By.ID, "badge").is_displayed()  # the autoencoder comes first: not generative
    browser.find_element(By.CSS_SELECTOR, "#run-select option[value='digits-vae']").click()
    wait_for(browser, "return document.getElementById('run-info').textContent.startsWith('vae')", "vae run")
    wait_for(browser, "return !document.getElementById('status').textContent.startsWith('loading')", "load")
    assert not browser.find_element(By.ID, "badge").is_displayed()
    time.sleep(0.3)

    # drag across the pad: the decoded picture follows the pointer
    pad = browser.find_element(By.ID, "pad")
    side = pad.size["width"]
    n0 = decodes(browser)
    ActionChains(browser).move_to_element_with_offset(pad, -side // 3, side // 3).click_and_hold().perform()
    wait_for(browser, f"return Number(document.getElementById('decoded').dataset.decodes) > {n0}", "decode")
    time.sleep(0.3)
    before = image_pixels(browser, "decoded")
    z_before = browser.find_element(By.ID, "z-readout").text
    chain = ActionChains(browser)
    for _ in range(8):
        chain.move_by_offset(side // 12, -side // 12)
    chain.release().perform()
    n1 = decodes(browser)
    wait_for(browser, "return document.getElementById('decoded').complete", "image load")
    time.sleep(0.5)
    after = image_pixels(browser, "decoded")
    assert browser.find_element(By.ID, "z-readout").text != z_before
    assert decodes(browser) >= n1 > n0 + 1
    assert before != after, "dragging across the pad did not change the decoded image"

    # samples and an interpolation strip
    browser.find_element(By.ID, "sample-btn").click()
    wait_for(browser, "return document.querySelectorAll('#samples img').length === 16", "samples")
    assert "p(z)" in browser.find_element(By.ID, "sample-note").text
    browser.find_element(By.ID, "interp-btn").click()
    ActionChains(browser).move_to_element_with_offset(pad, -side // 4, -side // 4).click().perform()
    ActionChains(browser).move_to_element_with_offset(pad, side // 4, side // 4).click().perform()
    wait_for(browser, "return document.querySelectorAll('#strip img').length === 10", "interpolation strip")

    # upload a test digit: its reconstruction and posterior appear
    digit = (np.kron(np.eye(8), np.ones((1, 1))) * 255).astype(np.uint8)
    digit[:, 3:5] = 255
    upload = tmp_path / "digit.png"
    Image.fromarray(np.kron(digit, np.ones((8, 8), np.uint8))).save(upload)
    browser.find_element(By.ID, "upload").send_keys(str(upload))
    wait_for(browser, "return !document.getElementById('encoded').hidden", "reconstruction")
    wait_for(browser, "return document.getElementById('recon').complete", "reconstruction image")
    # the page shows, pixel for pixel, what /api/encode answers for the same image (the model's 8x8 input,
    # binarized as the run's test data were, and its reconstruction), grey in RGBA, opaque
    shown = {name: np.array(image_pixels(browser, name)).reshape(8, 8, 4) for name in ("input-seen", "recon")}
    with upload.open("rb") as f:
        answer = httpx.post(
            url + "api/encode",
            data={"run": "digits-vae", "invert": "false"},
            files={"file": ("digit.png", f, "image/png")},
            timeout=60,
        )
    assert answer.status_code == 200, answer.text
    expect = {
        name: png_pixels(answer.json()[key])
        for name, key in (("input-seen", "input"), ("recon", "reconstruction"))
    }
    assert set(np.unique(expect["input-seen"])) <= {0, 255}  # binarized, as the run's test data were
    # a grey reconstruction, unlike the binary input: a page showing one for the other fails below
    assert not np.array_equal(expect["recon"], expect["input-seen"])
    for name, grey in expect.items():
        rgba = np.concatenate([np.repeat(grey[..., None], 3, -1), np.full((8, 8, 1), 255, np.uint8)], -1)
        assert np.array_equal(shown[name], rgba), (
            f"{name}: the page shows\n{shown[name][..., 0]}\nnot\n{grey}"
        )
    assert "±" in browser.find_element(By.ID, "posterior").text
    assert "error" not in browser.find_element(By.ID, "status").get_attribute("class")

    shot = Path(os.environ.get("VAELAB_SCREENSHOT_DIR", tmp_path)) / "explorer.png"
    browser.save_screenshot(str(shot))
    with Image.open(io.BytesIO(shot.read_bytes())) as im:
        assert im.size[0] >= 1000
