"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against uvicorn
serving `create_app` on a free loopback port and a real redis-server.

Skips, saying why, where Playwright or /usr/bin/chromium is missing (`.ci/run` installs
Chromium with apt where it can). Screenshots of every page land in each test's `tmp_path`
under `screenshots/` (and in $STREAMJOBS_SCREENSHOTS when set, for the README).
"""

from __future__ import annotations

import os
import re
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamjobs import JobStatus
from streamjobs.sync import SyncJobClient

CHROMIUM = "/usr/bin/chromium"
pw_sync = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
uvicorn = pytest.importorskip("uvicorn", reason="the web extra is not installed")
if not os.path.exists(CHROMIUM):
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

from tests._web import HEALED, serving, workers  # noqa: E402

expect = pw_sync.expect


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module."""
    with pw_sync.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context and page per test (its own cookies)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def parts(request: pytest.FixtureRequest) -> int:
    """The test queue's partition count: 1 unless the test asks for more (PARTS)."""
    return int(getattr(request, "param", 1))


#: Run a test on one partition and on three (the dashboard and pools adopt the count).
PARTS = pytest.mark.parametrize("parts", [1, 3], indirect=True)


@pytest.fixture
def client(redis_url: str, queue_name: str, parts: int) -> Iterator[SyncJobClient]:
    """The sync client, submitting to the test's queue (whose partition count it records)."""
    with SyncJobClient(redis_url, name=queue_name, partitions=parts) as c:
        c.get_job_status("-")  # records the partition count before a dashboard or pool adopts it
        yield c


def screenshot(page: Any, tmp_path: Path, name: str) -> None:
    """Save the page as `<tmp_path>/screenshots/<name>.png` (and in $STREAMJOBS_SCREENSHOTS)."""
    target = tmp_path / "screenshots" / f"{name}.png"
    target.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(target), full_page=True)
    if extra := os.environ.get("STREAMJOBS_SCREENSHOTS"):
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copy(target, Path(extra) / target.name)


def wait_status(client: SyncJobClient, job_id: str, status: JobStatus, within: float) -> None:
    """Poll (bounded) until the job reaches `status`."""
    deadline = time.monotonic() + within
    while client.get_job_status(job_id) != status:
        assert time.monotonic() < deadline, f"{job_id} not {status} within {within} s"
        time.sleep(0.05)


def post(url: str, data: bytes, headers: dict[str, str] | None = None) -> int:
    """POST outside the browser; the HTTP status."""
    request = urllib.request.Request(url, data=data, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@PARTS
def test_overview_counts_follow_jobs_as_workers_run_them(
    page: Any, client: SyncJobClient, redis_url: str, queue_name: str, tmp_path: Path
) -> None:
    ids = client.submit_many([{"handler": "quick"} for _ in range(7)])
    with serving(redis_url, queue_name) as base:
        page.goto(f"{base}/")
        expect(page.locator("#total-pending")).to_have_text("7")
        expect(page.locator("#total-completed")).to_have_text("0")
        expect(page.locator("#oldest-pending")).to_have_text(re.compile(r"^\d+\.\d s$"))
        screenshot(page, tmp_path, "overview-pending")
        with workers(redis_url, queue_name):
            # no reload: the page refreshes itself
            expect(page.locator("#total-completed")).to_have_text("7", timeout=10_000)
            expect(page.locator("#total-pending")).to_have_text("0")
            expect(page.locator("#oldest-pending")).to_have_text("\u2013")
            expect(page.locator("#workers")).to_have_text("2", timeout=10_000)
            screenshot(page, tmp_path, "overview")
            page.click("nav >> text=Workers")
            expect(page.locator("#pools tr")).to_have_count(2)  # header and the one pool
            expect(page.locator("#pools")).to_contain_text("healthy")
            screenshot(page, tmp_path, "workers")
        page.click("nav >> text=Jobs")
        page.select_option("select[name=status]", "completed")
        page.click("text=Show")
        for job_id in ids:
            expect(page.locator("#jobs")).to_contain_text(job_id)
        screenshot(page, tmp_path, "jobs")


def test_job_page_progress_bar_moves_while_the_handler_reports(
    page: Any, client: SyncJobClient, redis_url: str, queue_name: str, tmp_path: Path
) -> None:
    job_id = client.submit_job("stepping")
    with serving(redis_url, queue_name) as base, workers(redis_url, queue_name):
        page.goto(f"{base}/jobs/{job_id}")
        seen: list[float] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(seen) < 3:
            raw = page.locator("#progress").get_attribute("data-percent") or ""
            if raw and (not seen or float(raw) > seen[-1]):
                seen.append(float(raw))
                if len(seen) == 2:
                    screenshot(page, tmp_path, "job-running")
            time.sleep(0.1)
        assert len(seen) >= 3 and seen == sorted(seen), f"the bar did not move: {seen}"
        expect(page.locator("#status")).to_have_text("COMPLETED", timeout=10_000)
        page.reload()
        expect(page.locator("#timeline")).to_contain_text("job.completed")
        expect(page.locator("#timeline")).to_contain_text("job.progress")
        screenshot(page, tmp_path, "job")


@PARTS
def test_dead_letter_retried_by_clicking_retry_leaves_the_list_and_completes(
    page: Any, client: SyncJobClient, redis_url: str, queue_name: str, tmp_path: Path
) -> None:
    job_id = client.submit_job("healable", max_retries=0)
    with serving(redis_url, queue_name) as base, workers(redis_url, queue_name):
        wait_status(client, job_id, JobStatus.DEAD_LETTER, 10)
        page.goto(f"{base}/dead-letters")
        row = page.locator(f"tr.dead-row[data-id='{job_id}']")
        expect(row).to_contain_text("not healed yet")
        expect(page.locator("#retry-all")).to_have_text("Retry all (1)")
        screenshot(page, tmp_path, "dead-letters")
        HEALED.add(job_id)
        row.locator("button.retry").click()
        expect(row).to_have_count(0)
        wait_status(client, job_id, JobStatus.COMPLETED, 10)
        page.goto(f"{base}/jobs/{job_id}")
        expect(page.locator("#timeline")).to_contain_text("dashboard.action")
        expect(page.locator("#timeline")).to_contain_text("user=anonymous action=retry")
        # the error of the attempt that failed, with where the handler raised it
        expect(page.locator("#error")).to_have_text("RuntimeError: not healed yet")
        expect(page.locator("#traceback")).to_contain_text("in healable\n    raise RuntimeError")


def test_read_only_refuses_actions_with_403_and_shows_no_buttons(
    page: Any, client: SyncJobClient, redis_url: str, queue_name: str, tmp_path: Path
) -> None:
    job_id = client.submit_job("healable", max_retries=0)
    waiting = client.submit_job("quick", delay=3600)
    with serving(redis_url, queue_name, read_only=True) as base:
        with workers(redis_url, queue_name):
            wait_status(client, job_id, JobStatus.DEAD_LETTER, 10)
        page.goto(f"{base}/dead-letters")
        expect(page.locator(f"tr.dead-row[data-id='{job_id}']")).to_have_count(1)
        expect(page.locator("main button")).to_have_count(0)
        screenshot(page, tmp_path, "dead-letters-read-only")
        page.goto(f"{base}/jobs/{waiting}")
        expect(page.locator("#status")).to_have_text("SCHEDULED")
        expect(page.locator("main button")).to_have_count(0)
        page.goto(f"{base}/")  # the page has set its CSRF cookie: send a well-formed POST
        cookie = next(c["value"] for c in page.context.cookies() if c["name"] == "streamjobs_csrf")
        for path in (f"/jobs/{waiting}/cancel", f"/jobs/{job_id}/retry", "/dead-letters/purge"):
            answer = page.request.post(f"{base}{path}", form={"csrf": cookie})
            assert answer.status == 403, path
    assert client.get_job_status(waiting) == JobStatus.SCHEDULED
    assert client.get_job_status(job_id) == JobStatus.DEAD_LETTER


def test_post_without_the_csrf_token_gets_403_and_changes_nothing(
    page: Any, client: SyncJobClient, redis_url: str, queue_name: str
) -> None:
    waiting = client.submit_job("quick", delay=3600)
    with serving(redis_url, queue_name) as base:
        page.goto(f"{base}/jobs/{waiting}")
        token = next(c["value"] for c in page.context.cookies() if c["name"] == "streamjobs_csrf")
        # the browser sends its cookie, the form leaves the token out
        assert page.request.post(f"{base}/jobs/{waiting}/cancel", form={}).status == 403
        # a token with a forged signature, in form and cookie alike
        forged = token.split(".")[0] + ".0000"
        headers = {"Cookie": f"streamjobs_csrf={forged}",
                   "Content-Type": "application/x-www-form-urlencoded"}  # fmt: skip
        assert post(f"{base}/jobs/{waiting}/cancel", f"csrf={forged}".encode(), headers) == 403
        assert client.get_job_status(waiting) == JobStatus.SCHEDULED
        # another dashboard process on the same queue accepts this one's token
        with serving(redis_url, queue_name) as other:
            headers["Cookie"] = f"streamjobs_csrf={token}"
            assert post(f"{other}/jobs/{waiting}/cancel", f"csrf={token}".encode(), headers) in (
                200, 303,
            )  # fmt: skip
    assert client.get_job_status(waiting) == JobStatus.CANCELLED


@PARTS
def test_retry_selected_retry_all_and_purge_ask_first_and_act_on_what_they_said(
    page: Any, client: SyncJobClient, redis_url: str, queue_name: str, tmp_path: Path
) -> None:
    ids = [client.submit_job("healable", max_retries=0) for _ in range(3)]
    with serving(redis_url, queue_name) as base, workers(redis_url, queue_name):
        for job_id in ids:
            wait_status(client, job_id, JobStatus.DEAD_LETTER, 10)
        HEALED.update(ids)
        page.goto(f"{base}/dead-letters")
        page.check(f"tr.dead-row[data-id='{ids[0]}'] input[type=checkbox]")
        page.click("#retry-selected")
        expect(page.locator("tr.dead-row")).to_have_count(2)
        wait_status(client, ids[0], JobStatus.COMPLETED, 10)
        dialogs: list[str] = []

        def answer(dialog: Any) -> None:
            dialogs.append(dialog.message)
            dialog.accept()

        page.on("dialog", answer)
        page.click("#retry-all")
        expect(page.locator("tr.dead-row")).to_have_count(0)
        assert dialogs == ["Retry all 2 dead letters?"]
        for job_id in ids[1:]:
            wait_status(client, job_id, JobStatus.COMPLETED, 10)
        doomed = [client.submit_job("healable", max_retries=0) for _ in range(2)]
        for job_id in doomed:
            wait_status(client, job_id, JobStatus.DEAD_LETTER, 10)
        page.remove_listener("dialog", answer)
        page.once("dialog", lambda dialog: dialog.dismiss())
        page.reload()
        page.click("#purge")
        expect(page.locator("tr.dead-row")).to_have_count(2)
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("#purge")
        expect(page.locator("#dead")).to_contain_text("No dead letters.")
        assert [client.get_job_status(j) for j in doomed] == [None, None]
