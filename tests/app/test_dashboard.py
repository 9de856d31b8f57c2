"""The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright,
against a real service with an API key. Load the page, give the key, submit jobs and see
them finish, cancel a running job and retry a failed one from the page."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import ServiceProcess, http_client, running_service, wait_for_status
from tests.supervisor.support import ready_workers, submit

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("APIPOD_TEST_CHROMIUM", "/usr/bin/chromium")
KEY = "dashboard-key"
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"
GREEN_PIXELS = """() => {
  const c = document.getElementById('throughput');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && d[i + 1] > 120 && d[i] < 100) n++;
  return n;
}"""


@pytest.fixture
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).is_file() and not shutil.which(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[ServiceProcess]:
    with running_service(tmp_path, "queue_ops.py", api_key=KEY) as running:
        yield running


def test_the_dashboard_shows_jobs_and_cancels_and_retries_them(
    browser: object, service: ServiceProcess, tmp_path: Path
) -> None:
    expect = playwright_api.expect
    headers = {"Authorization": f"Bearer {KEY}"}
    client = http_client(service.url, timeout=30, headers=headers)
    ready_workers(client)
    assert httpx.get(service.url + "/dashboard/data").status_code == 401
    page = browser.new_page(viewport={"width": 1400, "height": 1000})  # type: ignore[attr-defined]
    page.goto(service.url + "/dashboard")
    expect(page.locator("#key-form")).to_be_visible()
    page.fill("#key-input", KEY)
    page.click("#key-save")
    expect(page.locator("#board")).to_be_visible()
    expect(page.locator("#workers tbody tr[data-worker]")).to_have_count(1)

    marker = tmp_path / "marker"
    done = [submit(client, "/work", {"steps": 4, "delay": 0.1}) for _ in range(3)]
    failed = submit(client, "/flaky", {"marker": str(marker)})
    for job_id in done:
        expect(page.locator(f'#recent tr[data-job="{job_id}"] .status')).to_have_text(
            "finished", timeout=30_000
        )
    failed_row = page.locator(f'#recent tr[data-job="{failed}"]')
    expect(failed_row.locator(".status")).to_have_text("failed", timeout=30_000)
    expect(failed_row.locator("td.error")).to_contain_text("is missing")
    page.wait_for_function(f"({GREEN_PIXELS})() > 20")  # the throughput chart has bars

    # a running job shows live progress and is cancelled from the page
    long = submit(client, "/work", {"steps": 400, "delay": 0.05})
    running_row = page.locator(f'#running tr[data-job="{long}"]')
    expect(running_row).to_be_visible(timeout=30_000)
    expect(running_row).to_contain_text("step ")
    if os.environ.get("APIPOD_UPDATE_SCREENSHOT"):  # the picture in the README
        page.wait_for_timeout(1500)
        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)
    running_row.locator("button.cancel").click()
    assert wait_for_status(client, long, {"cancelled"}, timeout=10)["status"] == "cancelled"
    expect(page.locator(f'#recent tr[data-job="{long}"] .status')).to_have_text("cancelled")
    expect(running_row).to_have_count(0)

    # a failed job is retried from the page and now finishes
    marker.write_text("present")
    failed_row.locator("button.retry").click()
    assert wait_for_status(client, failed, {"finished"}, timeout=20)["result"] == {
        "marker": str(marker)
    }
    expect(failed_row.locator(".status")).to_have_text("finished", timeout=10_000)
    expect(page.locator("#key-form")).to_be_hidden()
    page.close()
    client.close()


def test_the_page_is_public_but_its_data_needs_the_key(service: ServiceProcess) -> None:
    page = httpx.get(service.url + "/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<script>" in page.text and "http://" not in page.text and "https://" not in page.text
    assert httpx.get(service.url + "/dashboard/data").status_code == 401
    assert httpx.post(service.url + "/retry/0123abcd").status_code == 401
    data = httpx.get(
        service.url + "/dashboard/data", headers={"Authorization": f"Bearer {KEY}"}
    ).json()
    assert set(data) == {"now", "queue", "running", "recent", "workers", "charts"}
    assert len(data["charts"]["minutes"]) == 60
