"""The report's label selector in Debian's headless Chromium, opened from the file (offline): picking a label
shows that label's manifold and hides the others, and the shown pixels are the model's decode of the grid at
that label; with script off the selector is hidden and label 0's picture shows. Nothing is downloaded:
Selenium is given /usr/bin/chromium and /usr/bin/chromedriver."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from browser_testing import chrome, missing_browser
from vaelab.commands.common import open_run
from vaelab.models.registry import model_config
from vaelab.train import train
from vaelab.viz.label_manifold import label_manifold
from vaelab.viz.report import write_report

from vaelab_testing import small_config

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    if why := missing_browser():
        pytest.skip(why)
    run = tmp_path_factory.mktemp("report-labels-browser") / "cvae"
    cfg = model_config("cvae", small_config(**{"train.epochs": 1}))
    train(cfg.replace(**{"model.hidden": (32,), "model.latent_dim": 2}), out=run)
    return run, write_report(run)


@pytest.fixture
def browser(tmp_path, request):
    made = []

    def open_page(url: str, script: bool = True):
        driver = chrome(tmp_path / f"profile{len(made)}", script)
        made.append(driver)
        driver.get(url)
        return driver

    yield open_page
    for driver in made:
        driver.quit()
    shutil.rmtree(tmp_path, ignore_errors=True)


def shown_views(driver) -> list[str]:
    return [
        v.get_attribute("data-view")
        for v in driver.find_elements("css selector", "#label-manifold [data-view]")
        if v.is_displayed()
    ]


def shown_pixels(driver) -> np.ndarray:
    """The grey pixels of the one shown picture, at its own resolution."""
    rgba, w = driver.execute_script(
        """const img = [...document.querySelectorAll('#label-manifold [data-view]')]
            .find(v => !v.hidden).querySelector('img');
        const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
        const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
        return [Array.from(ctx.getImageData(0, 0, c.width, c.height).data), c.width];"""
    )
    return np.array(rgba[0::4], dtype=np.int16).reshape(-1, w)


def test_picking_a_label_shows_the_grid_decoded_at_that_label(report, browser):
    from selenium.webdriver.support.ui import Select

    run, page = report
    driver = browser(page.as_uri())
    pick = driver.find_element("css selector", "#label-manifold select")
    assert pick.is_displayed() and not driver.find_element("css selector", ".pick-static").is_displayed()
    assert [o.get_attribute("value") for o in Select(pick).options] == [str(k) for k in range(10)]
    assert shown_views(driver) == ["0"]
    o = open_run(str(run))
    m = label_manifold(o.model, o.split("test"))
    seen = {}
    for y in (7, 2, 0):
        Select(pick).select_by_value(str(y))
        assert shown_views(driver) == [str(y)]
        seen[y] = shown_pixels(driver)
        k = m.labels.index(y)
        h, w = m.tiles[k].shape[-2:]
        want = m.tiles[k][:, 0].reshape(20, 20, h, w).permute(0, 2, 1, 3).reshape(20 * h, 20 * w)
        assert np.abs(seen[y] - torch.round(want * 255).numpy()).max() <= 1, y
    assert not np.array_equal(seen[7], seen[2])
    img = driver.find_element("css selector", '#label-manifold [data-view="0"] img')
    assert img.rect["width"] == 480  # 160 pixels shown three screen pixels each


def test_without_script_label_0_shows_and_the_selector_is_hidden(report, browser):
    _, page = report
    driver = browser(page.as_uri(), script=False)
    assert shown_views(driver) == ["0"]
    assert not driver.find_element("css selector", "#label-manifold .pick").is_displayed()
    assert driver.find_element("css selector", ".pick-static").text == "label y = 0"
