"""Render ``/docs`` in headless Chromium with every request off the box refused, check
that Swagger UI shows upload buttons for a media endpoint, and save a screenshot.

    python scripts/docs_screenshot.py [--out docs/swagger-offline.png]

Needs Chromium from Debian (``apt-get install chromium``) and ``pip install playwright``
(its own browser download is not used: ``executable_path`` points at /usr/bin/chromium).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "swagger-offline.png"))
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    os.environ.setdefault("APIPOD_DATA_DIR", tempfile.mkdtemp(prefix="apipod-docs-"))

    from playwright.sync_api import sync_playwright

    from tests.helpers import serve_in_thread
    from tests.services.sync_media import app

    refused: list[str] = []
    with serve_in_thread(app) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1100})

        def offline(route) -> None:  # the box has no internet: refuse what is not ours
            if urlsplit(route.request.url).hostname == "127.0.0.1":
                route.continue_()
            else:
                refused.append(route.request.url)
                route.abort()

        page.route("**/*", offline)
        page.goto(f"{base}/docs", wait_until="networkidle")
        page.click("#operations-default-image_image_post .opblock-summary")
        page.click("#operations-default-image_image_post .try-out__btn")
        uploads = page.locator('#operations-default-image_image_post input[type="file"]')
        uploads.first.wait_for()
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=args.out, full_page=False)
        count = uploads.count()
        browser.close()
    if refused or count < 1:
        raise SystemExit(f"offline docs failed: {count} upload buttons, refused {refused}")
    print(f"{args.out}: {count} upload button(s), no request left the box")


if __name__ == "__main__":
    main()
