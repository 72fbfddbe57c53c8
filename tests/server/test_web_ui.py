"""The web page at /ui (issue 13, acceptance 2), in headless Chromium (Debian's package, driven by
Playwright): sign in with an API key, see the endpoint, watch a running job's progress change live
and reach Completed without a reload, open its errors, save a screenshot. An anonymous browser gets
the sign-in page and no data; a cross-site POST without the session's CSRF token is refused."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright import sync_api

from conftest import record_secret
from fixtures.components import ALLOW_MISSING_ENV
from fixtures.observe import invoke, make_endpoint

pytestmark = pytest.mark.timeout(300)

CHROMIUM = os.environ.get("BATCHPOINT_TEST_CHROMIUM", "/usr/bin/chromium")
ENDPOINT = "observe-ui"
FAILING_FILE = "heart-unlabeled-2.csv"

if not shutil.which(CHROMIUM):
    missing = f"{CHROMIUM} is missing: scripts/test.sh installs Debian's chromium package"
    if os.environ.get(ALLOW_MISSING_ENV) == "1":
        pytest.skip(missing, allow_module_level=True)
    pytest.fail(missing, pytrace=False)


@pytest.fixture(scope="module")
def endpoint(ml_client: Any, heart_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    make_endpoint(ml_client, ENDPOINT, heart_model_dir, tmp_path_factory.mktemp("ui-code"), {
        "watched": {"environment_variables": {"SLEEP_S": "1.5", "FAIL_ON": FAILING_FILE}},
        "retrying": {"retry_settings": {"max_retries": 1, "timeout": 120}, "mini_batch_size": 2,
                     "max_concurrency_per_instance": 2, "error_threshold": 5, "output_action": "summary_only",
                     "environment_variables": {"FAIL_ON": FAILING_FILE}}})
    return ENDPOINT


@pytest.fixture(scope="module")
def browser() -> Any:
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                      args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield chromium
        chromium.close()


def owner_key(server: Any) -> str:
    return (server.home / "owner.key").read_text().strip()


def sign_in(page: Any, server: Any, key: str, target: str = "/ui/endpoints") -> None:
    page.goto(server.url + target)
    assert "/ui/sign-in" in page.url, page.url
    page.fill("input[name=api_key]", key)
    page.click("#sign-in button[type=submit]")
    page.wait_for_url(f"**{target}")


def test_watch_a_job_live_in_the_browser(server: Any, ml_client: Any, endpoint: str, browser: Any,
                                         tmp_path: Path) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 1400})
    page = context.new_page()
    sign_in(page, server, owner_key(server))
    section = page.locator(f"#endpoint-{ENDPOINT}")
    assert section.locator(".default").inner_text() == "watched"
    assert section.locator("tr.deployment", has_text="watched (default)").count() == 1
    watched = section.locator("tr.deployment", has_text="watched")
    retrying = section.locator("tr.deployment", has_text="retrying")
    cells = [(row.locator(".mini-batch-size").inner_text(), row.locator(".concurrency").inner_text(),
              row.locator(".error-threshold").inner_text(), row.locator(".output").inner_text())
             for row in (watched, retrying)]  # the deployments' settings, as make_endpoint and the fixture set them
    assert cells == [("1", "1 × 1", "-1 (no limit)", "append_row → predictions.csv"),
                     ("2", "1 × 2", "5", "summary_only")], cells
    cookie = next(c for c in context.cookies() if c["name"] == "bp_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and "bpk_" not in cookie["value"]

    name = invoke(ml_client, endpoint, "watched")
    page.goto(f"{server.url}/ui/jobs/{name}")
    assert page.locator("#status").inner_text() != "Completed", "the job ended before the page could watch it"
    page.evaluate("window.__notReloaded = true")
    seen = []
    deadline = time.monotonic() + 240
    while page.locator("#status").get_attribute("data-status") != "Completed":  # pushed by the stream: no reload
        assert time.monotonic() < deadline, f"the page did not reach Completed; it showed {seen}"
        shown = (page.locator("#mb-done").inner_text(), page.locator("#status").inner_text())
        if not seen or seen[-1] != shown:
            seen.append(shown)
        time.sleep(0.1)
    assert page.evaluate("window.__notReloaded") is True, "the page was reloaded"
    assert any(status == "Running" for _, status in seen), seen
    assert len({done for done, status in seen if status == "Running"}) >= 2, f"no live progress: {seen}"
    assert page.locator("#mb-done").inner_text() == "4" and page.locator("#mb-total").inner_text() == "4"
    assert page.locator("#files-done").inner_text() == "3" and page.locator("#files-failed").inner_text() == "1", \
        str(ml_client.jobs.get(name).errors["first"][0])
    page.wait_for_selector("#errors-summary li")
    assert FAILING_FILE in page.locator("#errors-summary").inner_text()
    phases = page.locator("#phases").inner_text()
    assert all(step in phases for step in ("Queued", "Preparing", "Running", "Finalizing", "Completed")), phases
    assert page.locator("a.download", has_text="predictions.csv").count() == 1
    assert page.locator("#logs a", has_text="worker-0.log").count() == 1
    # completed with a failed file: said so, with the count, not plain green
    page.wait_for_function("document.getElementById('status').textContent.startsWith('Completed with')")
    assert page.locator("#status").inner_text() == "Completed with 1 failed file"
    assert "status-completed" not in (page.locator("#status").get_attribute("class") or "").split()
    # the pictures are drawn on the server: reload for them
    page.reload()
    assert page.locator("#status").inner_text() == "Completed with 1 failed file"
    assert page.locator("#server").inner_text() == ml_client.jobs.get(name).server != ""
    assert page.locator("#done-chart polyline.series").count() == 1
    assert page.locator("#done-chart circle.point").count() >= 4  # one per finished mini-batch (4), maybe more
    assert page.locator("#rate-chart polyline.series").count() == 1
    lanes = page.locator("#worker-timeline")
    assert lanes.locator("text.lane").all_text_contents() == ["worker-0"]
    assert lanes.locator("rect.init").count() == 1
    assert lanes.locator("rect.mb.ok").count() == 3 and lanes.locator("rect.mb.failed").count() == 1
    assert lanes.locator("rect.mb.failed").get_attribute("data-key") is not None
    page.screenshot(path=str(tmp_path / "job-completed.png"), full_page=True)

    page.click("#errors-link")
    page.wait_for_url(f"**/ui/jobs/{name}/errors")
    rows = page.locator("tr.error-line")
    assert rows.count() == 1
    line = rows.first.inner_text()
    assert FAILING_FILE in line and "user" in line and "KeyError" in line and "no column 'thal'" in line, line
    page.screenshot(path=str(tmp_path / "job-errors.png"), full_page=True)
    assert (tmp_path / "job-completed.png").stat().st_size > 10_000
    context.close()


def test_an_anonymous_browser_gets_the_sign_in_page_and_no_data(server: Any, ml_client: Any, endpoint: str,
                                                                browser: Any) -> None:
    name = invoke(ml_client, endpoint, "watched", environment_variables={"SLEEP_S": "0"})
    context = browser.new_context()
    page = context.new_page()
    for path in ("/ui/endpoints", f"/ui/jobs/{name}", f"/ui/jobs/{name}/errors", "/ui/assets",
                 f"/ui/jobs/{name}/summary.json"):
        page.goto(server.url + path)
        assert "/ui/sign-in" in page.url, (path, page.url)
        back_to = page.locator("input[name=next]").get_attribute("value")  # where the sign-in returns to
        body = page.content().replace(back_to, "").replace(page.url, "")
        assert ENDPOINT not in body and name not in body and "Running" not in body, (path, body)
        assert page.locator("#job, #jobs, .endpoint, #data, #models").count() == 0, path
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get(f"/ui/jobs/{name}/events").status_code == 401
        assert http.get(f"/ui/jobs/{name}/outputs/score/files/predictions.csv").status_code == 401
        forged = http.get("/ui/endpoints", cookies={"bp_session": "e30.forged"}, follow_redirects=False)
        assert forged.status_code == 303 and "/ui/sign-in" in forged.headers["location"]
        wrong = http.post("/ui/sign-in", data={"api_key": owner_key(server), "csrf": "guess"})
        assert wrong.status_code == 403 and "bp_session" not in wrong.cookies  # no sign-in without the form's token
    context.close()


def test_a_cross_site_post_without_the_csrf_token_is_refused(server: Any, ml_client: Any, endpoint: str,
                                                             browser: Any) -> None:
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, server, owner_key(server))
    session = next(c["value"] for c in context.cookies() if c["name"] == "bp_session")
    name = invoke(ml_client, endpoint, "watched", environment_variables={"SLEEP_S": "5"})
    page.goto(f"{server.url}/ui/jobs/{name}")
    token = page.locator("#cancel input[name=csrf]").get_attribute("value")
    with httpx.Client(base_url=server.url, cookies={"bp_session": session}, timeout=30) as http:
        evil = {"Origin": "https://evil.example"}
        assert http.post(f"/ui/jobs/{name}/cancel", data={}, headers=evil).status_code == 403
        assert http.post(f"/ui/jobs/{name}/cancel", data={"csrf": token}, headers=evil).status_code == 403
        assert http.post(f"/ui/jobs/{name}/cancel", data={"csrf": "x" * 43}).status_code == 403
        assert ml_client.jobs.get(name).status not in ("Canceled",)
        assert http.post("/ui/sign-out", data={}, headers=evil).status_code == 403
        same = http.post(f"/ui/jobs/{name}/cancel", data={"csrf": token}, headers={"Origin": server.url},
                         follow_redirects=False)
        assert same.status_code == 303, same.text  # the page's own form, with its token, works
    assert ml_client.jobs.wait(name, timeout=120).status == "Canceled"
    context.close()


def test_a_reader_sees_metadata_but_no_data(server: Any, ml_client: Any, endpoint: str, browser: Any) -> None:
    ml_client.principals.create("user:ui-reader")
    ml_client.role_assignments.create("user:ui-reader", "Reader", "workspace")
    key = record_secret(ml_client.principals.create_key("user:ui-reader")["key"])
    name = invoke(ml_client, endpoint, "watched", environment_variables={"SLEEP_S": "0"})
    ml_client.jobs.wait(name, timeout=120)
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, server, key, f"/ui/jobs/{name}")
    assert page.locator("#status").get_attribute("data-status") == "Completed"
    assert page.locator("#status").inner_text() == "Completed with 1 failed file"  # the deployment's FAIL_ON
    assert "needs jobs/outputs/read" in page.locator("#timeline").inner_text()  # read from the worker logs
    assert page.locator("a.download").count() == 0 and page.locator("#cancel").count() == 0
    assert "needs jobs/outputs/read" in page.content()
    session = next(c["value"] for c in context.cookies() if c["name"] == "bp_session")
    with httpx.Client(base_url=server.url, cookies={"bp_session": session}, timeout=30) as http:
        assert http.get(f"/ui/jobs/{name}/outputs/score/files/predictions.csv").status_code == 403
        assert http.get(f"/ui/jobs/{name}/logs/worker-0.log").status_code == 403
    context.close()


def _texts(page: Any, selector: str) -> list[str]:
    return [t.strip() for t in page.locator(selector).all_inner_texts()]


def test_retries_filters_paging_and_the_servers_page(server: Any, ml_client: Any, endpoint: str, browser: Any) -> None:
    retried = invoke(ml_client, endpoint, "retrying")  # 2 files a mini-batch, 2 workers, the bad file's retried once
    canceled = invoke(ml_client, endpoint, "watched", environment_variables={"SLEEP_S": "5"})
    ml_client.jobs.begin_cancel(canceled)
    assert ml_client.jobs.wait(retried, timeout=180).status == "Completed"
    assert ml_client.jobs.wait(canceled, timeout=120).status == "Canceled"
    context = browser.new_context(viewport={"width": 1280, "height": 1400})
    page = context.new_page()
    sign_in(page, server, owner_key(server), f"/ui/jobs/{retried}")
    lanes = page.locator("#worker-timeline")
    assert sorted(lanes.locator("text.lane").all_text_contents()) == ["worker-0", "worker-1"]
    # the failing file's mini-batch (2 files): tried twice, then split into single files (Azure's way):
    # its failed tries are marked retried, the bad file's last try failed, the good file scored
    bad = lanes.locator("rect.mb.failed")
    assert bad.count() == 1, lanes.inner_html()
    index = bad.get_attribute("data-key").split("-")[0]
    retried_keys = [r.get_attribute("data-key") for r in lanes.locator("rect.mb.retried").all()]
    assert len(retried_keys) >= 2 and {k.split("-")[0] for k in retried_keys} == {index}, retried_keys
    assert lanes.locator("rect.mb.ok").count() == 2  # the other mini-batch, and the good file's piece
    assert "retried" in lanes.locator("rect.mb.retried").first.text_content()
    assert page.locator("#status").inner_text() == "Completed with 1 failed file"

    page.goto(f"{server.url}/ui/jobs?status=Canceled")
    assert canceled in _texts(page, "#jobs tr.job td:first-child") and retried not in page.content()
    assert set(_texts(page, "#jobs td.status")) == {"Canceled"}
    page.select_option("#filters select[name=status]", "Completed")
    page.fill("#filters input[name=user]", "user:nobody")
    page.click("#filters button[type=submit]")
    assert page.locator("#jobs tr.job").count() == 0 and "match these filters" in page.locator("#no-jobs").inner_text()
    page.goto(f"{server.url}/ui/jobs?endpoint={ENDPOINT}&size=1")
    first = _texts(page, "#jobs tr.job td:first-child")
    assert len(first) == 1 and page.locator("#prev-page").count() == 0
    assert page.locator("#jobs td.duration").inner_text().strip() != ""
    page.click("#next-page")
    second = _texts(page, "#jobs tr.job td:first-child")
    assert len(second) == 1 and second != first and page.locator("#page").inner_text() == "page 2"

    page.goto(f"{server.url}/ui/servers")
    with server.rest() as http:
        this = http.get("/health").json()["server"]
    assert f"{this} (this one)" in _texts(page, "#servers td.server-id")
    assert "alive" in page.locator("#servers tr.server", has_text=this).inner_text()
    # this server's warm workers (none unless its workers are fenced): the table, or the line saying none
    assert page.locator("#warm-workers").count() + page.locator("#no-warm-workers").count() == 1
    with server.rest() as http:  # the Ray tests may have left computes of type ray on the session's server
        rays = sorted(c["name"] for c in http.get("/computes").json() if c.get("type") == "ray")
    if rays:
        assert sorted(_texts(page, "#clusters tr.cluster td:first-child")) == rays
        assert page.locator("#no-clusters").count() == 0
    else:
        assert page.locator("#no-clusters").count() == 1 and page.locator("#clusters").count() == 0
    context.close()


def test_an_invoker_of_one_endpoint_sees_that_endpoint(server: Any, ml_client: Any, endpoint: str,
                                                       browser: Any) -> None:
    from batchpoint import BatchEndpoint

    ml_client.batch_endpoints.begin_create_or_update(BatchEndpoint(name="observe-hidden")).result()
    ml_client.principals.create("user:ui-invoker")
    ml_client.role_assignments.create("user:ui-invoker", "Invoker", f"endpoint:{ENDPOINT}")
    key = record_secret(ml_client.principals.create_key("user:ui-invoker")["key"])
    exe = str(Path(sys.executable).parent / "batchpoint")
    listed = subprocess.run([exe, "batch-endpoint", "list", "--query", "[].name", "-o", "tsv"], capture_output=True,
                            text=True, timeout=120, env={**server.env, "BATCHPOINT_SERVER_URL": server.url,
                                                         "BATCHPOINT_API_KEY": key})
    assert listed.returncode == 0 and listed.stdout.split() == [ENDPOINT], (listed.stdout, listed.stderr)
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, server, key)
    assert page.locator(".endpoint").count() == 1 and page.locator(f"#endpoint-{ENDPOINT}").count() == 1
    assert page.locator(f"#endpoint-{ENDPOINT} tr.deployment").count() == 2  # deployments/read on its endpoint
    assert "observe-hidden" not in page.content()
    context.close()
