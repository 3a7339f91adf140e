"""End to end in Debian's headless Chromium: the explorer's label selector under the latent pad.

`vaelab serve` (a subprocess on a free port) serves a VAE, a CVAE and an M2. The selector is shown for the two
labelled runs only, lists their labels, and sits right under the pad; picking a label redraws the decoded
picture at that label: the page's pixels equal the model's own decode of the pad's z at the picked label.
Nothing is downloaded: Selenium is given /usr/bin/chromium and /usr/bin/chromedriver.
"""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
import torch

from browser_testing import chrome, missing_browser, serving
from vaelab.commands.common import open_run
from vaelab.models.registry import model_config
from vaelab.train import train

from vaelab_testing import small_config

pytestmark = [pytest.mark.browser, pytest.mark.slow]
RUNS = {"cvae": {}, "m2": {"data.labelled": 50}, "vae": {}}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    if why := missing_browser():
        pytest.skip(why)
    root = tmp_path_factory.mktemp("browser-labels") / "runs"
    for name, flat in RUNS.items():
        cfg = model_config(name, small_config(**{"train.epochs": 3})).replace(
            **{"model.hidden": (32,), "model.latent_dim": 2, **flat}
        )
        train(cfg, out=root / name)
    return root


@pytest.fixture(scope="module")
def server(root):
    with serving(root, "--threads", "1") as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory, server):
    profile = tmp_path_factory.mktemp("chromium-profile")
    driver = chrome(profile)
    driver.get(server)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver, condition: str, what: str, timeout: float = 20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = driver.execute_script(condition)
        if value:
            return value
        time.sleep(0.05)
    status = driver.execute_script("return document.getElementById('status').textContent")
    raise AssertionError(f"timed out waiting for {what} (status line: {status!r})")


def open_in_page(driver, name: str) -> None:
    """Pick run `name` in the page and wait until it is loaded and its first picture decoded."""
    from selenium.webdriver.support.ui import Select

    wait_for(driver, "return document.querySelectorAll('#run-select option').length > 0", "the run list")
    Select(driver.find_element("id", "run-select")).select_by_value(name)
    wait_for(
        driver, f"return typeof state !== 'undefined' && state.run === {name!r} && state.z !== null", name
    )
    wait_for(driver, "return !state.inflight && document.getElementById('decoded').complete", "first decode")


def decoded_at(driver, y: int) -> np.ndarray:
    """Pick label y; once the picture at y has loaded, its grey pixels as the page shows them."""
    from selenium.webdriver.support.ui import Select

    n = int(driver.execute_script("return state.decodes"))
    Select(driver.find_element("id", "label")).select_by_value(str(y))
    wait_for(
        driver,
        f"""const img = document.getElementById('decoded');
        return state.decodes > {n} && !state.inflight && !state.pending && img.dataset.label === '{y}'
            && img.complete && img.naturalWidth > 0;""",
        f"the picture at label {y}",
    )
    rgba = driver.execute_script(
        """const img = document.getElementById('decoded');
        const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
        const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
        return Array.from(ctx.getImageData(0, 0, c.width, c.height).data);"""
    )
    return np.array(rgba[0::4], dtype=np.int16).reshape(8, 8)


def test_the_selector_is_shown_for_labelled_runs_only(browser):
    for name in RUNS:
        open_in_page(browser, name)
        shown = browser.find_element("id", "label-pick").is_displayed()
        assert shown == (name != "vae"), name
        if not shown:
            continue
        options = browser.execute_script(
            "return [...document.querySelectorAll('#label option')].map(o => o.value)"
        )
        assert options == [str(k) for k in range(10)]
        assert browser.find_element("id", "label").get_attribute("value") == "0"  # the stated default
        pad, pick = (browser.find_element("id", i).rect for i in ("pad", "label-pick"))
        assert 0 <= pick["y"] - (pad["y"] + pad["height"]) < 60  # right under the pad
        assert pick["x"] >= pad["x"] - 1 and pick["x"] < pad["x"] + pad["width"]


@pytest.mark.parametrize("name", ["cvae", "m2"])
def test_picking_a_label_redraws_the_pads_point_at_that_label(browser, root, name):
    model = open_run(str(root / name)).model
    open_in_page(browser, name)
    z = torch.tensor([browser.execute_script("return state.z")], dtype=torch.float32)
    seen = {}
    for y in (3, 7, 0, 9):
        seen[y] = decoded_at(browser, y)
        with torch.no_grad():
            want = model.decode(z, torch.tensor([y])).mean[0, 0].clamp(0, 1)
        want = (want * 255).round().numpy().astype(np.int16)
        assert np.abs(seen[y] - want).max() <= 1, (name, y)  # the server's threads may round one level apart
        assert int(browser.execute_script("return state.y")) == y
    assert any(not np.array_equal(seen[3], seen[y]) for y in (7, 0, 9)), name  # the picture follows the label
