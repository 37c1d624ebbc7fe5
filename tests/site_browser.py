"""A headless Chromium for the site tests: the system's browser and driver, never a download.

``browser()`` returns a selenium driver, or raises ``NoBrowser`` with the reason (no selenium,
no /usr/bin/chromium, no chromedriver) so tests skip with that reason. Run as a script it
writes the README's screenshot of the built-in digits-appearance page:

    python tests/site_browser.py docs/leaderboard-digits-appearance.png
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
DRIVERS = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--force-device-scale-factor=1")


class NoBrowser(RuntimeError):
    pass


def _first(paths: tuple[str, ...], what: str) -> str:
    for p in paths:
        if Path(p).is_file():
            return p
    raise NoBrowser(f"no {what} at {' or '.join(paths)} (install it: apt-get install chromium chromium-driver)")


def browser(width: int = 1200, height: int = 900, profile: str | None = None):
    """A headless Chromium driven by selenium, with the browser console log enabled."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise NoBrowser("selenium is not installed (pip install -e '.[test]')") from None
    binary, driver = _first(CHROMIUM, "chromium"), _first(DRIVERS, "chromedriver")
    os.environ["SE_OFFLINE"] = "true"  # selenium manager must never fetch a browser or driver
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={profile or tempfile.mkdtemp(prefix='dgbench-chromium-')}")
    opts.add_argument(f"--window-size={width},{height}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=opts, service=Service(executable_path=driver))


def main(out: str) -> None:
    """Build the built-in site into a temp folder and screenshot the digits-appearance page."""
    import io

    from PIL import Image

    from dgbench.config import data_dir
    from dgbench.results.site import build_site, leaderboard_csvs

    tmp = Path(tempfile.mkdtemp(prefix="dgbench-site-"))
    try:
        build_site(leaderboard_csvs([data_dir("leaderboards")]), tmp / "site")
        drv = browser(1000, 840, profile=str(tmp / "profile"))
        try:
            drv.get((tmp / "site" / "digits-appearance.html").as_uri())
            png = drv.get_screenshot_as_png()
        finally:
            drv.quit()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    img = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=64)  # small, still legible
    img.save(out, optimize=True)
    print(f"wrote {out} ({Path(out).stat().st_size} bytes)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/leaderboard-digits-appearance.png")
