"""The dashboard in a real browser (Debian's headless Chromium driven by Playwright)
against ``python -m aqueue web`` and a runner ``python -m aqueue run`` in subprocesses:
overview -> filter failed -> job detail -> retry -> the job runs again (seen by the
page's live polling); a cross-site form and a token-less POST refused; the read-only
role; a job whose arguments hold markup rendered inert. Screenshots of each page are
kept in the test's tmp dir (and copied to docs/img/ when AQUEUE_DOCS_SCREENSHOTS=1).

The HTTP API with plain httpx against the same server: enqueue, then the result."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .live import ADMIN, ROOT, VIEWER, Live, chromium, live_server

pytest.importorskip("playwright.sync_api", reason="the test extra installs playwright")
from playwright.sync_api import Browser, Page, expect, sync_playwright

XSS = '<script>window.__xss = 1</script><img src="x" onerror="window.__xss = 2">'


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_server(tmp_path_factory.mktemp("live")) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    path = chromium()
    if path is None:
        pytest.skip("no chromium, and apt-get cannot install it here (not root, or no apt)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("screenshots")
    yield folder
    if os.environ.get("AQUEUE_DOCS_SCREENSHOTS") == "1":
        for png in sorted(folder.glob("*.png")):
            shutil.copy(png, ROOT / "docs" / "img" / png.name)


def page_as(browser: Browser, user: tuple[str, str]) -> Page:
    ctx = browser.new_context(
        http_credentials={"username": user[0], "password": user[1]},
        viewport={"width": 1280, "height": 800},
    )
    page = ctx.new_page()
    page.set_default_timeout(15_000)
    return page


def enqueue(live: Live, task: str, *args: object) -> str:
    with live.api() as api:
        r = api.post("/api/jobs", json={"task": task, "args": list(args)})
        assert r.status_code == 201, r.text
        return str(r.json()["id"])


def wait_status(live: Live, job_id: str, status: str, timeout: float = 20.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    with live.api() as api:
        while True:
            job: dict[str, object] = api.get(f"/api/jobs/{job_id}").json()
            if job["status"] == status:
                return job
            assert time.monotonic() < deadline, f"job {job_id} is {job['status']}, not {status}"
            time.sleep(0.05)


def test_http_api_enqueue_and_result_with_a_runner(live: Live) -> None:
    job_id = enqueue(live, "add", 20, 22)
    assert wait_status(live, job_id, "done")["result"] == 42
    with live.api() as api:
        assert api.get("/api/openapi.json").json()["paths"]["/jobs"]["post"]
        r = api.post("/api/jobs/" + job_id + "/cancel")
        assert r.status_code == 200 and r.json()["cancelled"] is False


def test_operator_tour_retry_runs_the_job_again(live: Live, browser: Browser, shots: Path) -> None:
    flag = live.tmp / "flaky.flag"
    for i in range(3):
        enqueue(live, "add", i, i)
    flaky = enqueue(live, "flaky", str(flag))
    wait_status(live, flaky, "failed")
    page = page_as(browser, ADMIN)

    page.goto(live.url + "/")
    expect(page.locator(".card.st-failed .n")).to_have_text("1")
    expect(page.locator("#throughput")).to_be_visible()
    page.screenshot(path=shots / "overview.png", full_page=True)

    page.click("header nav >> text=Jobs")
    page.select_option("select[name=status]", "failed")
    page.click("button:has-text('Filter')")
    expect(page).to_have_url(f"{live.url}/jobs?status=failed&task=&job_id=&text=&from=&to=")
    rows = page.locator("table.jobs tbody tr")
    expect(rows).to_have_count(1)
    page.screenshot(path=shots / "jobs-failed.png", full_page=True)

    page.click(f"a:has-text('{flaky}')")
    expect(page.locator("#job-status")).to_have_text("failed")
    expect(page.locator(".traceback")).to_contain_text("the flag file")
    page.screenshot(path=shots / "job-failed.png", full_page=True)

    flag.write_text("fixed")
    page.once("dialog", lambda d: d.accept())
    page.click("#action-retry")
    expect(page.locator(".flash")).to_contain_text("retried")
    # the page polls: the status turns done without a reload
    expect(page.locator("#job-status")).to_have_text("done", timeout=20_000)
    expect(page.locator("#job-result")).to_contain_text("fixed")
    page.screenshot(path=shots / "job-retried.png", full_page=True)

    page.goto(live.url + "/runners")
    alive = page.locator("table.grid tbody tr.alive")
    expect(alive).to_have_count(1)
    expect(alive.locator("td").nth(7)).to_contain_text(" s ago")  # last heartbeat
    page.screenshot(path=shots / "runners.png", full_page=True)
    page.goto(live.url + "/schedules")
    expect(page.locator("table.grid")).to_contain_text("hourly_report")
    page.screenshot(path=shots / "schedules.png", full_page=True)
    page.context.close()


def test_overview_updates_itself_while_open(live: Live, browser: Browser) -> None:
    page = page_as(browser, ADMIN)
    page.goto(live.url + "/")
    todo = page.locator(".card.st-todo .n")
    before = int(todo.inner_text())
    with live.api() as api:
        body = {"task": "add", "args": [1, 1], "options": {"delay": 3600}}
        assert api.post("/api/jobs", json=body).status_code == 201
    # polled, not reloaded (the counts are read again every 5 s at most)
    expect(todo).to_have_text(str(before + 1), timeout=20_000)
    # a hidden tab stops polling, and starts again (at once) when shown
    body = page.locator("body")
    expect(body).to_have_attribute("data-polling", "on")
    visibility = """hidden => {
        Object.defineProperty(document, "hidden", {value: hidden, configurable: true});
        document.dispatchEvent(new Event("visibilitychange"));
    }"""
    page.evaluate(visibility, True)
    expect(body).to_have_attribute("data-polling", "off")
    with page.expect_request(lambda r: r.headers.get("x-aqueue-poll") == "1"):
        page.evaluate(visibility, False)
    expect(body).to_have_attribute("data-polling", "on")
    page.context.close()


def test_failed_page_bulk_retry_with_confirmation(
    live: Live, browser: Browser, shots: Path
) -> None:
    ids = [enqueue(live, "boom", f"bulk-{i}") for i in range(3)]
    for job_id in ids:
        wait_status(live, job_id, "failed")
    page = page_as(browser, ADMIN)
    page.goto(live.url + "/failed?text=bulk-")
    expect(page.locator("table.jobs tbody tr")).to_have_count(3)
    page.check("#select-all")
    page.screenshot(path=shots / "failed-bulk.png", full_page=True)
    messages: list[str] = []
    page.once("dialog", lambda d: (messages.append(d.message), d.dismiss()))
    page.click("button[value='delete:selected']")  # dismissed: nothing happens
    assert messages and "(3 selected)" in messages[0]
    expect(page.locator("table.jobs tbody tr")).to_have_count(3)
    page.once("dialog", lambda d: d.accept())
    page.click("button[value='retry:filter']")
    expect(page.locator(".flash")).to_contain_text("3 job(s) retried")
    for job_id in ids:  # they ran again (and failed again)
        job = wait_status(live, job_id, "failed")
        assert job["attempts"] == 1
    page.context.close()


def test_cross_site_and_tokenless_posts_are_refused(
    live: Live, browser: Browser, shots: Path
) -> None:
    job_id = enqueue(live, "flaky", str(live.tmp / "never"))
    wait_status(live, job_id, "failed")
    page = page_as(browser, ADMIN)
    page.goto(f"{live.url}/jobs/{job_id}")  # the browser holds its CSRF cookie now
    # another site's page posting to the dashboard: refused (and its cookie not sent)
    evil = "http://evil.test/"
    form = (
        f'<form id="f" method="post" action="{live.url}/jobs/{job_id}/delete">'
        '<input name="csrf" value="guess"></form><script>f.submit()</script>'
    )
    page.route(evil, lambda route: route.fulfill(content_type="text/html", body=form))
    with page.expect_response(f"{live.url}/jobs/{job_id}/delete") as posted:
        page.goto(evil)
    assert posted.value.status == 403
    page.screenshot(path=shots / "csrf-refused.png", full_page=True)
    # the dashboard's own origin without the form token: refused too
    page.goto(f"{live.url}/jobs/{job_id}")
    status = page.evaluate(
        "fetch(location.pathname + '/delete', {method: 'POST'}).then(r => r.status)"
    )
    assert status == 403
    assert wait_status(live, job_id, "failed")["id"] == job_id  # still there
    page.context.close()


def test_read_only_role_has_no_actions(live: Live, browser: Browser, shots: Path) -> None:
    job_id = enqueue(live, "boom", "read-only")
    wait_status(live, job_id, "failed")
    page = page_as(browser, VIEWER)
    page.goto(f"{live.url}/jobs/{job_id}")
    expect(page.locator(".badge.ro")).to_have_text("read-only")
    expect(page.locator("#action-retry")).to_have_count(0)
    page.screenshot(path=shots / "read-only.png", full_page=True)
    page.goto(f"{live.url}/failed")
    expect(page.locator("#bulk-form")).to_have_count(0)
    status = page.evaluate(f"fetch('/jobs/{job_id}/retry', {{method: 'POST'}}).then(r => r.status)")
    assert status == 403
    page.context.close()


def test_markup_in_arguments_renders_inert(live: Live, browser: Browser, shots: Path) -> None:
    job_id = enqueue(live, "boom", XSS)
    wait_status(live, job_id, "failed")
    page = page_as(browser, ADMIN)
    for path in (f"/jobs/{job_id}", "/failed", "/jobs"):
        page.goto(live.url + path)
        page.wait_for_load_state("load")
        assert page.evaluate("window.__xss") is None, path
        assert page.locator("img[src='x']").count() == 0, path
    page.goto(f"{live.url}/jobs/{job_id}")
    expect(page.locator("#job-args")).to_contain_text("<script>window.__xss = 1</script>")
    page.screenshot(path=shots / "xss-inert.png", full_page=True)
    page.context.close()
