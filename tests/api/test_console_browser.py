"""The console in a real browser: Debian's headless Chromium, driven by Selenium through
Debian's chromedriver (given explicitly, so Selenium Manager never looks for or downloads a
driver), against the real stack and a real password-checking PostgreSQL.

Screenshots go to .pytest-output/console/ (git-ignored); docs/console.png is one of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.ui import WebDriverWait

from tests.servers.postgres import PostgresServer
from tests.servers.stack import Stack
from tests.servers.tcp import HostPort

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
OUTPUT = Path(__file__).resolve().parents[2] / ".pytest-output" / "console"


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    for path in (CHROMIUM, CHROMEDRIVER):
        assert Path(path).exists(), f"{path} is missing: apt-get install chromium chromium-driver (.ci/run does)"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the page's console, for failures
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    OUTPUT.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: WebDriver, until: Callable[[WebDriver], Any], seconds: float = 20) -> Any:
    """``until``'s first true answer; on a time-out, a screenshot and what the page said."""
    try:
        return WebDriverWait(driver, seconds, poll_frequency=0.05).until(until)
    except TimeoutException:
        _screenshot(driver, "timed-out.png")
        shown = [driver.find_element(By.ID, i).text for i in ("status", "form-error", "sign-in-error")]
        raise AssertionError(f"timed out; the page shows {shown}, its console: {driver.get_log('browser')}") from None


def _screenshot(driver: WebDriver, name: str) -> None:
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(str(OUTPUT / name))


def _idle(driver: WebDriver) -> None:
    """Once the page has drawn what it was loading (the workspace's aria-busy is gone)."""
    _wait(driver, lambda d: d.find_element(By.ID, "workspace").get_attribute("aria-busy") is None)


def _field(driver: WebDriver, path: str) -> WebElement:
    _idle(driver)
    return driver.find_element(By.CSS_SELECTOR, f'[data-path="{path}"]')


def _source_button(driver: WebDriver, source_id: str) -> WebElement:
    _idle(driver)
    return driver.find_element(By.CSS_SELECTOR, f'#source-list button[data-source-id="{source_id}"]')


def _status(driver: WebDriver) -> str:
    return str(driver.find_element(By.ID, "status").text)


def _signed_in(driver: WebDriver, stack: Stack) -> None:
    """A fresh page, signed in with the keyboard (the key typed, then Enter), on a new source."""
    # Forget the last test's key on a page of the same origin that runs no script (the
    # console, loaded with a key, signs in again and would store it back).
    driver.get(f"{stack.base_url}/healthz")
    driver.execute_script("sessionStorage.clear()")
    driver.get(f"{stack.base_url}/console")
    key = driver.find_element(By.ID, "api-key")
    key.send_keys(stack.token, Keys.ENTER)
    _wait(driver, lambda d: d.find_element(By.ID, "workspace").is_displayed())
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#config-fields [data-path]"))
    _idle(driver)
    assert stack.token not in driver.current_url


def _fill_postgres(driver: WebDriver, config: dict[str, Any]) -> None:
    Select(driver.find_element(By.ID, "definition")).select_by_value("postgres")
    _wait(driver, lambda d: _field(d, "database"))
    for name, value in config.items():
        field = _field(driver, name)
        field.clear()
        field.send_keys(str(value))


def _test_and_wait(driver: WebDriver, seconds: float = 30) -> str:
    driver.find_element(By.ID, "test-button").click()
    return str(_wait(driver, lambda d: _status(d).split(" ")[0] in ("succeeded", "failed") and _status(d), seconds))


def _steps(driver: WebDriver) -> dict[str, tuple[str, str]]:
    """Each step shown: its status and its duration text."""
    return {
        item.get_attribute("data-step"): (
            item.get_attribute("data-status"),
            item.find_element(By.CLASS_NAME, "step-duration").text,
        )
        for item in driver.find_elements(By.CSS_SELECTOR, "#steps li")
    }


def test_a_postgres_source_filled_in_the_form_succeeds_step_by_step(
    browser: WebDriver, stack: Stack, postgres_server: PostgresServer
) -> None:
    _signed_in(browser, stack)
    _fill_postgres(browser, postgres_server.config())
    status = _test_and_wait(browser)
    assert status.startswith("succeeded"), (status, browser.find_element(By.ID, "form-error").text)
    steps = _steps(browser)
    assert list(steps) == ["resolve", "tcp", "tls", "authenticate", "access"]
    assert all(s in ("succeeded", "skipped") for s, _ in steps.values()) and steps["authenticate"][0] == "succeeded"
    assert all(duration.endswith(" ms") for _, duration in steps.values())
    _screenshot(browser, "succeeded.png")
    # The password typed for the test is gone from the page once it has run.
    assert _field(browser, "password").get_attribute("value") == ""
    # Nothing the page does needs what its Content-Security-Policy forbids.
    assert [e for e in browser.get_log("browser") if "Content Security Policy" in e["message"]] == []


def test_a_wrong_password_fails_with_the_password_field_highlighted(
    browser: WebDriver, stack: Stack, postgres_server: PostgresServer
) -> None:
    _signed_in(browser, stack)
    _fill_postgres(browser, postgres_server.config(password="not-the-password"))
    _field(browser, "password").send_keys(Keys.ENTER)  # Enter in the form runs the test
    status = str(_wait(browser, lambda d: _status(d).startswith(("succeeded", "failed")) and _status(d), 30))
    assert status.startswith("failed")
    assert browser.find_element(By.ID, "failure-type").text == "authentication_failed"
    assert browser.find_element(By.ID, "failure-hint").text  # what to fix
    password = _field(browser, "password")
    assert password.get_attribute("aria-invalid") == "true" and "invalid" in str(password.get_attribute("class"))
    assert _field(browser, "host").get_attribute("aria-invalid") is None  # only the fields it names
    assert _steps(browser)["authenticate"][0] == "failed"
    assert password.get_attribute("value") == ""
    _screenshot(browser, "authentication_failed.png")
    assert "not-the-password" not in browser.page_source


def test_a_stored_source_is_saved_listed_opened_and_tested_with_its_password_unchanged(
    browser: WebDriver, stack: Stack, postgres_server: PostgresServer
) -> None:
    _signed_in(browser, stack)
    _fill_postgres(browser, postgres_server.config())
    browser.find_element(By.ID, "source-name").send_keys("warehouse (browser)")
    browser.find_element(By.ID, "save-button").click()
    _wait(browser, lambda d: _status(d).startswith("saved"))
    _idle(browser)
    entry = next(
        b for b in browser.find_elements(By.CSS_SELECTOR, "#source-list button") if "warehouse (browser)" in b.text
    )
    source_id = entry.get_attribute("data-source-id")
    # The page reopened it as stored: the secret is not shown, only that it is kept.
    password = _field(browser, "password")
    assert password.get_attribute("value") == "" and password.get_attribute("placeholder") == "unchanged"

    browser.find_element(By.ID, "new-source").click()
    _wait(browser, lambda d: d.find_element(By.ID, "editor-title").text == "New source")
    _source_button(browser, source_id).click()
    _wait(browser, lambda d: d.find_element(By.ID, "editor-title").text == "Source warehouse (browser)")
    assert _field(browser, "host").get_attribute("value") == postgres_server.host
    assert _field(browser, "password").get_attribute("placeholder") == "unchanged"
    assert _test_and_wait(browser).startswith("succeeded")  # the stored password was used
    listed = _source_button(browser, source_id)
    assert "succeeded" in listed.text
    _screenshot(browser, "stored-succeeded.png")  # docs/console.png

    # Edit and save: the schema name changes, the stored password stays.
    schema = _field(browser, "schema_name")
    schema.clear()
    schema.send_keys("locked")
    browser.find_element(By.ID, "save-button").click()
    _wait(browser, lambda d: _status(d).startswith("saved"))
    with stack.client() as client:
        saved = client.get(stack.url(f"/sources/{source_id}")).json()
    assert saved["configuration"]["schema_name"] == "locked" and saved["configuration"]["password"] == "**********"
    assert _test_and_wait(browser).startswith("failed")  # reader has no USAGE on "locked"
    assert _field(browser, "schema_name").get_attribute("aria-invalid") == "true"

    # A new session (this tab's results forgotten) lists the source with its last result, from its history.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with stack.client() as client:
            last = client.get(stack.url(f"/sources/{source_id}")).json()["last_test"]
        if last and last["status"] == "failed":
            break
        time.sleep(0.2)
    _signed_in(browser, stack)
    assert _source_button(browser, source_id).text.endswith(f"failed: {last['type']}")


def test_the_event_parser_reads_events_however_the_stream_is_cut(browser: WebDriver, stack: Stack) -> None:
    browser.get(f"{stack.base_url}/console")
    events = browser.execute_script(
        """const parser = new SCEvents.EventParser();
           const stream = ': keepalive\\r\\nid: 1\\r\\nevent: plan\\r\\ndata: {"steps":\\r\\ndata: ["tcp"]}\\r\\n\\r\\n'
             + 'id: 2\\nevent: step\\ndata:{"name":"tcp","status":"running"}\\n\\n'
             + 'id: 3\\revent: result\\rdata: {}\\r\\r: keepalive\\n';
           const out = [];
           for (let i = 0; i < stream.length; i += 3) out.push(...parser.feed(stream.slice(i, i + 3)));
           return out;"""
    )
    assert events == [
        {"id": "1", "event": "plan", "data": '{"steps":\n["tcp"]}'},
        {"id": "2", "event": "step", "data": '{"name":"tcp","status":"running"}'},
        {"id": "3", "event": "result", "data": "{}"},
    ]


def test_the_event_parser_bounds_what_a_stream_makes_it_hold(browser: WebDriver, stack: Stack) -> None:
    browser.get(f"{stack.base_url}/console")
    outcome = browser.execute_script(
        """const parser = new SCEvents.EventParser();
           const started = performance.now();
           parser.feed(':\\n'.repeat(300000));  // many lines in one chunk: one pass
           const took = performance.now() - started;
           const tooLong = (chunks) => {
             const p = new SCEvents.EventParser();
             try { chunks.forEach((c) => p.feed(c)); return false; } catch (e) { return true; }
           };
           const line = 'x'.repeat(SCEvents.MAX_EVENT_CHARS / 4);
           return {took, oneLine: tooLong([line, line, line, line, line]),
                   manyLines: tooLong(Array(5).fill('data: ' + line + '\\n'))};"""
    )
    assert outcome["oneLine"] and outcome["manyLines"]  # an endless line or event ends the stream
    assert outcome["took"] < 1000, outcome


def test_a_stored_password_is_not_sent_to_a_new_host_unless_retyped(
    browser: WebDriver, stack: Stack, postgres_server: PostgresServer
) -> None:
    with stack.client() as client:
        body = {
            "source_definition_id": "postgres",
            "name": "bound (browser)",
            "configuration": postgres_server.config(),
        }
        source_id = client.post(stack.url("/sources"), json=body).json()["id"]
    _signed_in(browser, stack)
    _source_button(browser, source_id).click()
    _wait(browser, lambda d: d.find_element(By.ID, "editor-title").text == "Source bound (browser)")
    host = _field(browser, "host")
    host.clear()
    host.send_keys("localhost")
    browser.find_element(By.ID, "test-button").click()
    _wait(browser, lambda d: "secrets again" in d.find_element(By.ID, "form-error").text)
    assert _field(browser, "password").get_attribute("aria-invalid") == "true"
    _field(browser, "password").send_keys(postgres_server.password)  # retyped: it may go there
    assert _test_and_wait(browser).startswith("succeeded")


def test_the_key_lives_in_the_tabs_session_storage_only(browser: WebDriver, stack: Stack) -> None:
    _signed_in(browser, stack)
    browser.refresh()  # the tab remembers it...
    _wait(browser, lambda d: d.find_element(By.ID, "workspace").is_displayed())
    assert browser.execute_script("return sessionStorage.getItem('sourcecheck.apiKey')") == stack.token
    assert browser.get_cookies() == [] and browser.execute_script("return localStorage.length") == 0
    _idle(browser)
    browser.find_element(By.ID, "sign-out").click()  # ...until signing out
    _wait(browser, lambda d: d.find_element(By.ID, "api-key").is_displayed())
    assert browser.execute_script("return sessionStorage.getItem('sourcecheck.apiKey')") is None


def test_every_control_has_a_label(browser: WebDriver, stack: Stack) -> None:
    _signed_in(browser, stack)
    Select(browser.find_element(By.ID, "definition")).select_by_value("postgres")
    toggle = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '[data-path="ssh_tunnel"] input[type=checkbox]'))
    toggle[0].send_keys(Keys.SPACE)  # the keyboard opens the optional tunnel's fields
    _wait(browser, lambda d: _field(d, "ssh_tunnel.host").is_displayed())
    unlabelled = browser.execute_script(
        """return [...document.querySelectorAll('input, select, textarea')]
             .filter((c) => c.offsetParent !== null && !(c.labels && c.labels.length))
             .map((c) => c.id || c.name);"""
    )
    assert unlabelled == []
    assert browser.find_element(By.ID, "steps").get_attribute("aria-live") == "polite"


# --- these two need the test's event stream and its cancel (GET .../sources/test/{job_id}/events,
# DELETE .../sources/test/{job_id}). Until the API has them they must fail (strict xfail: a
# pass would be reported as a failure); once it has them they run as ordinary tests.


def _api_streams_tests() -> bool:
    from api.main import app

    return any(path.endswith("/sources/test/{job_id}/events") for path in app.openapi()["paths"])


NEEDS_THE_EVENT_STREAM = pytest.mark.xfail(
    not _api_streams_tests(),
    reason="the API has no GET .../sources/test/{job_id}/events nor DELETE yet (issue 17's stream, branch h/stream)",
    strict=True,
)


@NEEDS_THE_EVENT_STREAM
def test_steps_appear_while_the_test_runs(browser: WebDriver, stack: Stack, postgres_server: PostgresServer) -> None:
    """Each step is shown running before it is shown ended: the page follows the event stream
    (a page that only polled would show the steps once, ended)."""
    _signed_in(browser, stack)
    _fill_postgres(browser, postgres_server.config())
    browser.execute_script(
        """window.seenStatuses = [];
           new MutationObserver((records) => records.forEach((r) => {
             if (r.attributeName === 'data-status') window.seenStatuses.push([r.target.dataset.step, r.oldValue]);
           })).observe(document.getElementById('steps'),
                       {subtree: true, attributes: true, attributeOldValue: true, attributeFilter: ['data-status']});"""
    )
    assert _test_and_wait(browser).startswith("succeeded")
    seen = {tuple(pair) for pair in browser.execute_script("return window.seenStatuses")}
    assert {("tcp", "running"), ("authenticate", "running"), ("access", "running")} <= seen, seen


@NEEDS_THE_EVENT_STREAM
def test_cancel_stops_a_test_hanging_on_an_unanswering_server(
    browser: WebDriver, stack: Stack, hung_server: HostPort
) -> None:
    _signed_in(browser, stack)
    _fill_postgres(browser, {"host": hung_server.host, "port": hung_server.port, "database": "app", "user": "reader"})
    _field(browser, "password").send_keys("whatever")
    browser.find_element(By.ID, "test-button").click()
    # The TCP connection is made, then the server says nothing: the next step stays running.
    _wait(browser, lambda d: _steps(d).get("tcp", ("",))[0] == "succeeded" and "running" in dict(_steps(d).values()))
    assert _status(browser).startswith("running")
    assert browser.find_element(By.ID, "cancel-button").is_enabled()
    _screenshot(browser, "running.png")
    browser.find_element(By.ID, "cancel-button").click()
    _wait(browser, lambda d: _status(d).startswith("failed"), seconds=3)
    assert browser.find_element(By.ID, "failure-type").text == "cancelled"
    assert not browser.find_element(By.ID, "cancel-button").is_enabled()
    assert browser.find_element(By.ID, "test-button").is_enabled()
