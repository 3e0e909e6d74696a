"""The monitor page in a real browser (issue 13): headless Chromium (Debian's build, driven
by Playwright) opens the page a real `siip-watcher start` serves, finds the last snapshot,
presses the button and sees the new snapshot appear without a reload, while every request
stays on 127.0.0.1 and the Content-Security-Policy blocks nothing the page needs.

One browser for the whole session; ``SIIP_WATCHER_SCREENSHOT=FILE`` also saves the
screenshot there (docs/monitor.png is made that way).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, sync_playwright

from tests.fakes.monitor import MonitorService, monitor_with_folder
from watcher.state.catalog import Catalog

CHROMIUM = "/usr/bin/chromium"   # Debian's package; ./scripts/test installs it
WAIT_MS = 30_000


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM)
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MonitorService]:
    with monitor_with_folder(tmp_path_factory.mktemp("web-browser")) as svc:
        yield svc


class Watched:
    """A page with everything it requests, every navigation and every CSP complaint."""

    def __init__(self, browser: Browser, *, width: int = 1000, height: int = 800) -> None:
        self.page: Page = browser.new_page(viewport={"width": width, "height": height})
        self.requests: list[str] = []
        self.navigations: list[str] = []
        self.console: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("framenavigated", lambda f: self.navigations.append(f.url))
        self.page.on("console", self._console)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.console.append(message.text)


def _first_row(page: Page) -> str | None:
    return page.locator("table.snapshots tbody tr").first.get_attribute("data-id")


def test_button_backs_up_and_the_new_snapshot_appears_without_reload(
        browser: Browser, service: MonitorService, tmp_path: Path) -> None:
    w = Watched(browser)
    w.page.goto(service.url + "/")
    newest = Catalog(service.local).newest_snapshot()
    assert newest is not None
    assert _first_row(w.page) == newest.id                      # the last snapshot is listed
    assert w.page.locator("#backup").inner_text() == "Respaldar ahora"
    assert w.page.locator("svg.chart rect.bar").count() >= 1   # the chart is drawn
    loaded = list(w.navigations)

    w.page.click("#backup")
    w.page.wait_for_function(
        "old => { const r = document.querySelector('table.snapshots tbody tr');"
        " return r && r.dataset.id !== old; }", arg=newest.id, timeout=WAIT_MS)
    new_id = _first_row(w.page)
    assert new_id != newest.id and Catalog(service.local).snapshot(new_id or "") is not None
    # the result, in plain words, where the button is
    w.page.wait_for_function(
        "() => document.getElementById('backup-note').textContent.startsWith('Última copia')",
        timeout=WAIT_MS)
    assert "Correcta" in w.page.locator("#backup-note").inner_text()
    assert w.navigations == loaded, "the page reloaded"
    assert not w.page.locator("#backup").is_disabled()

    shot = tmp_path / "monitor.png"
    w.page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("SIIP_WATCHER_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["SIIP_WATCHER_SCREENSHOT"])

    assert w.requests and all(u.startswith(service.url + "/") for u in w.requests), w.requests
    assert not w.console, w.console     # a CSP violation would be reported here
    w.page.close()


def test_forbidden_paths_from_the_page(browser: Browser, service: MonitorService) -> None:
    w = Watched(browser)
    w.page.goto(service.url + "/?lang=en")
    assert w.page.locator("#backup").inner_text() == "Back up now"
    before = Catalog(service.local).snapshot_count()
    statuses = w.page.evaluate("""async () => {
        const asks = [{}, {"X-CSRF-Token": "0".repeat(64)}, {"Authorization": "Bearer x"}];
        const out = [];
        for (const headers of asks) {
            const r = await fetch("/api/backup", {method: "POST", headers});
            out.push(r.status);
        }
        return out;
    }""")
    assert statuses == [403, 403, 403]
    assert Catalog(service.local).snapshot_count() == before
    # the policy itself: an inline script injected into the page does not run
    ran = w.page.evaluate("""() => {
        const s = document.createElement("script");
        s.textContent = "window.injected = true";
        document.body.appendChild(s);
        return window.injected === true;
    }""")
    assert ran is False
    assert any("Content Security Policy" in line for line in w.console), w.console
    w.page.close()


def test_readable_on_a_phone(browser: Browser, service: MonitorService) -> None:
    w = Watched(browser, width=390, height=844)
    w.page.goto(service.url + "/")
    overflow = w.page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the page is {overflow} px wider than a phone's screen"
    box = w.page.locator("#backup").bounding_box()
    assert box is not None and box["width"] <= 390 and box["height"] >= 40
    w.page.close()


def test_signing_in_with_the_token_then_backing_up(browser: Browser,
                                                   tmp_path_factory: pytest.TempPathFactory
                                                   ) -> None:
    token = "a-long-random-monitor-token-for-the-browser"
    svc = MonitorService(tmp_path_factory.mktemp("web-browser-token"),
                         web={"token_env": "MONITOR_TOKEN"}, env={"MONITOR_TOKEN": token})
    try:
        svc.wait_ready()
        context = browser.new_context()
        page = context.new_page()
        page.goto(svc.url + "/")
        page.fill("#token", "wrong")
        page.click("main.login button")
        assert "Token incorrecto" in page.content()
        page.fill("#token", token)
        page.click("main.login button")
        page.wait_for_selector("#backup")
        cookie = next(c for c in context.cookies() if c["name"] == "siip_watcher_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert token not in page.content() and token not in cookie["value"]
        newest = Catalog(svc.local).newest_snapshot()
        assert newest is not None and _first_row(page) == newest.id
        page.click("#backup")
        page.wait_for_function(
            "old => { const r = document.querySelector('table.snapshots tbody tr');"
            " return r && r.dataset.id !== old; }", arg=newest.id, timeout=WAIT_MS)
        page.click("nav button.link")          # sign out
        page.wait_for_selector("#token")
        context.close()
    finally:
        assert svc.stop() == 0, svc.log()
