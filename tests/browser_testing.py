"""What the browser tests share: Debian's Chromium driven by Selenium (nothing downloaded), and `vaelab serve`
in a subprocess on a free port."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from vaelab_testing import default_sigint

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def missing_browser() -> str | None:
    """Why the browser tests cannot run here (None: they can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    absent = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if absent:
        return f"{' and '.join(absent)} not found: install Debian's chromium and chromium-driver (make browser-deps)"
    return None


def chrome(profile: Path, script: bool = True):
    """A headless Chromium with its own profile folder; `script=False` turns JavaScript off."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1320,1200",
        f"--user-data-dir={profile}",
    ):
        opts.add_argument(flag)
    if not script:
        opts.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(30)
    return driver


@contextmanager
def serving(root: Path, *args: str) -> Iterator[str]:
    """`vaelab serve ROOT --port 0 ARGS` in a subprocess: yields its URL; Ctrl-C at the end must exit 0."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "vaelab", "serve", str(root), "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        preexec_fn=default_sigint,
    )
    line = proc.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    if not match:
        proc.kill()
        pytest.fail(f"vaelab serve did not start: {line}{proc.stdout.read()}")
    yield f"http://127.0.0.1:{match.group(1)}/"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 0
