"""The web pages in a real headless Chromium (Debian's `chromium`, driven by Playwright), against a real
`ledger serve` process over a database holding an example scenario. Screenshots of every page go to
$LEDGER_TEST_ARTIFACTS (default tests/artifacts/web, git-ignored)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.api.conftest import start_service, stop_service
from tests.conftest import LEDGER_BIN, ROOT, clone_database, drop_databases, with_dbname

CHROMIUM = os.environ.get("LEDGER_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("LEDGER_TEST_ARTIFACTS") or ROOT / "tests" / "artifacts") / "web"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: `apt-get install -y chromium chromium-driver` (.ci/run does)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield launched
        launched.close()


class Pages:
    """A signed-in browser context per role on one service, and screenshots."""

    def __init__(self, service, browser, name: str):
        self.service, self.browser, self.name = service, browser, name
        self.contexts: dict[str, object] = {}
        ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def page(self, role: str):
        """A page of a browser context signed in as ROLE (through the sign-in form)."""
        if role not in self.contexts:
            context = self.browser.new_context(base_url=self.service.url, viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            sign_in(page, self.service.tokens[role])
            self.contexts[role] = context
            return page
        return self.contexts[role].new_page()

    def shot(self, page, label: str) -> Path:
        path = ARTIFACTS / f"{self.name}-{re.sub(r'[^A-Za-z0-9_.-]', '_', label)}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    def close(self) -> None:
        for context in self.contexts.values():
            context.close()


def sign_in(page, token: str, next_path: str = "/web/"):
    page.goto(f"/web/signin?next={next_path}")
    page.fill("#token", token)
    page.click("#signin")
    page.wait_for_load_state()
    return page


def facts_count(db_url: str) -> int:
    with psycopg.connect(db_url, autocommit=True) as conn:
        return conn.execute("SELECT (SELECT count(*) FROM ledger_events) + (SELECT count(*) FROM usage_facts)"
                            ).fetchone()[0]


@pytest.fixture(scope="module")
def basic_db(pg_admin, example_template) -> str:
    name = clone_database(pg_admin, example_template)
    yield with_dbname(pg_admin, name)
    drop_databases(pg_admin, [name])


@pytest.fixture(scope="module")
def basic_service(basic_db, tmp_path_factory):
    # thresholds low enough that the example's small usage has spikes for the daily chart to mark
    running = start_service(basic_db, tmp_path_factory.mktemp("web-basic"),
                            {"LEDGER_ANOMALY_SCORE": "1.5", "LEDGER_ANOMALY_MIN_UNITS": "1"})
    # what the invoice's badge shows: the last `ledger verify`
    verified = subprocess.run([LEDGER_BIN, "verify", "--json"], env=running.env, capture_output=True, text=True)
    assert verified.returncode == 0, verified.stderr
    yield running
    stop_service(running)


@pytest.fixture(scope="module")
def basic_pages(basic_service, browser):
    pages = Pages(basic_service, browser, "basic")
    yield pages
    pages.close()


@pytest.fixture(scope="module")
def calculations_db(pg_admin, template_db, tmp_path_factory) -> str:
    """The calculations example up to the moment Finance defines a candidate (its first eleven steps)."""
    from tests.scenarios import Replay, example_steps

    name = clone_database(pg_admin, template_db)
    url = with_dbname(pg_admin, name)
    with Replay(url, tmp_path_factory.mktemp("calc-example"), example="calculations") as feeding:
        for step in example_steps("calculations")[:11]:
            feeding.step(step)
    yield url
    drop_databases(pg_admin, [name])


@pytest.fixture(scope="module")
def calculations_service(calculations_db, tmp_path_factory):
    running = start_service(calculations_db, tmp_path_factory.mktemp("web-calc"))
    yield running
    stop_service(running)


@pytest.fixture(scope="module")
def calculations_pages(calculations_service, browser):
    pages = Pages(calculations_service, browser, "calculations")
    yield pages
    pages.close()


def new_db_name() -> str:
    return f"ledger_web_{uuid.uuid4().hex[:10]}"
