"""The managers' dashboard in a real browser (Debian's chromium, headless), on the whole
system fed by the council simulator, and every URL `civicpulse dev` prints.

Screenshots of each page land in `artefacts/screenshots/` (gitignored; CI keeps
the folder as the run's artefact). docs/screenshots/ holds the one README.md shows.
"""

import asyncio
import json
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from civicpulse import infra
from civicpulse.dev import printed_addresses
from civicpulse.simulation.plan import SCENARIOS, CouncilSimulation
from civicpulse.simulation.residents import FeedbackTarget
from civicpulse.simulation.run import run_simulation
from civicpulse.simulation.send import Target
from civicpulse.stack import Credentials, RunningSystem, start_prometheus, start_services
from services.complaints.domain import complaint_id_for_contact
from services.metrics.dashboard.context import STATIC_FILES
from services.metrics.dashboard.worklist import end_of_week
from services.metrics.domain import KPIS_BY_NAME
from services.metrics.periods import local_day

# The module's fixture (infrastructure, four services, a simulated week counted) is
# charged to the first test's timeout: the session's 120 s is less than its own count
# deadline below, and a loaded machine took 130 s to get there.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(360)]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artefacts" / "screenshots"
DAYS = 7
HOUSEHOLDS = 8_000
ANSWERING = 15.0  # seconds the residents keep answering after the last record
PAGES = {
    "overview": "/dashboard",
    "kpi": "/dashboard/kpi/contacts_received?period=day",
    "complaints": "/dashboard/complaints",
    "satisfaction": "/dashboard/satisfaction",
    "committee": "/dashboard/committee",
}


def contacts_counted(system: RunningSystem, first: date) -> float:
    response = httpx.get(
        f"{system.url('metrics')}/v1/kpis",
        params={"from": first.isoformat(), "to": date.today().isoformat()},
        headers={"Authorization": f"Bearer {system.credentials.manager_token}"},
        timeout=10,
    )
    response.raise_for_status()
    rows = {row["kpi"]: row for row in response.json()["kpis"]}
    counted: float = rows["contacts_received"]["numerator"]
    return counted


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSystem]:
    """The whole system on its own infrastructure, fed a week of a council's contacts."""
    scratch = tmp_path_factory.mktemp("dashboard")
    stack = infra.infra_up(scratch / "infra", quiet=True)
    running: RunningSystem | None = None
    try:
        # Ports from the kernel, never the usual ones: a service given a port another run
        # took while it started fails to bind, and that run's service answered for it.
        running = start_services(stack, scratch / "logs", Credentials(), preferred_ports=False)
        start_prometheus(running, scratch / "prometheus", preferred_port=None)  # as `dev` does
        start = date.today() - timedelta(days=DAYS - 1)
        plan = CouncilSimulation(
            SCENARIOS["normal"], start, DAYS, households=HOUSEHOLDS, seed=13
        ).plan()
        target = Target(
            stack.kafka_bootstrap, running.url("intake"), running.credentials.intake_key
        )
        feedback = FeedbackTarget(running.url("feedback"), running.credentials.crm_key)
        # Residents answer the surveys the week's resolved cases bring, for the satisfaction page.
        asyncio.run(
            run_simulation(
                plan, target, rate=None, feedback=feedback, seed=13, answer_seconds=ANSWERING
            )
        )
        received = sum(1 for item in plan if item.body.get("record_type") == "contact_received")
        deadline = time.monotonic() + 180
        while contacts_counted(running, start) < received and time.monotonic() < deadline:
            time.sleep(1)
        assert contacts_counted(running, start) > 0, "the simulator's contacts were not counted"
        yield running
    finally:
        if running is not None:
            running.stop()
        infra.infra_down(scratch / "infra", quiet=True)


@pytest.fixture(scope="module")
def browser(system: RunningSystem) -> Iterator[webdriver.Chrome]:
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.fail(
            "Debian's chromium is needed for this test: "
            "apt-get update && apt-get install -y chromium chromium-driver"
        )
    with tempfile.TemporaryDirectory() as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in (
            "--headless",
            "--no-sandbox",  # root in a container has no user namespace sandbox
            "--disable-gpu",
            "--disable-quic",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--window-size=1280,1000",  # a manager's desktop
        ):
            options.add_argument(argument)
        driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
        try:
            driver.get(f"{system.url('metrics')}/dashboard/sign-in")
            driver.find_element(By.ID, "token").send_keys(system.credentials.manager_token)
            driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
            WebDriverWait(driver, 60).until(lambda d: d.title.startswith("Overview"))
            yield driver
        finally:
            driver.quit()


def open_page(driver: webdriver.Chrome, url: str) -> None:
    """Open a page and wait until vega-embed has drawn (or failed to draw) every chart."""
    driver.get(url)
    WebDriverWait(driver, 60).until(
        lambda d: d.execute_script(
            "return [...document.querySelectorAll('[data-chart]')].every(e => e.dataset.rendered)"
        )
    )


def chart_states(driver: webdriver.Chrome) -> list[tuple[str, bool]]:
    """(data-rendered, has an svg) of each chart of the page."""
    states: list[list[object]] = driver.execute_script(
        "return [...document.querySelectorAll('[data-chart]')]"
        ".map(e => [e.dataset.rendered, e.querySelector('svg') !== null])"
    )
    return [(str(state), bool(svg)) for state, svg in states]


def spec_of(driver: webdriver.Chrome, chart: str) -> dict[str, object]:
    spec: dict[str, object] = json.loads(
        str(driver.find_element(By.ID, f"{chart}-spec").get_attribute("text"))
    )
    return spec


def test_every_url_civicpulse_dev_prints_answers_200(system: RunningSystem) -> None:
    text = printed_addresses(system)
    urls = re.findall(r"https?://[^\s)]+", text)
    token = {"Authorization": f"Bearer {system.credentials.manager_token}"}

    # As a browser opens them: Prometheus' front page redirects to its query page.
    answers = {
        url: httpx.get(url, headers=token, timeout=120, follow_redirects=True).status_code
        for url in urls
    }

    assert f"{system.url('metrics')}/dashboard/sign-in" in urls
    assert f"{system.url('metrics')}/dashboard/committee" in urls
    assert any("/v1/reports/committee" in url for url in urls)
    assert system.prometheus_url in urls
    assert len(urls) >= 4 + 3 * len(system.services)
    assert answers == dict.fromkeys(urls, 200)


@pytest.mark.parametrize("name", list(PAGES))
def test_each_page_loads_and_its_charts_draw(
    system: RunningSystem, browser: webdriver.Chrome, name: str
) -> None:
    open_page(browser, system.url("metrics") + PAGES[name])

    assert "CivicPulse dashboard" in browser.title
    states = chart_states(browser)
    if name != "overview":  # the overview is the RAG matrix; the others have charts
        assert states
    assert all(state == ("true", True) for state in states), states
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
    assert (SCREENSHOTS / f"{name}.png").stat().st_size > 0


def test_a_filter_changes_the_chart(system: RunningSystem, browser: webdriver.Chrome) -> None:
    open_page(browser, system.url("metrics") + PAGES["kpi"])
    before_data = spec_of(browser, "kpi-chart")
    before_svg = browser.find_element(By.CSS_SELECTOR, "#kpi-chart svg").get_attribute("outerHTML")

    Select(browser.find_element(By.ID, "service_area")).select_by_value("waste")
    browser.find_element(By.ID, "apply").click()
    WebDriverWait(browser, 20).until(lambda d: "service_area=waste" in d.current_url)
    open_page(browser, browser.current_url)

    after_data = spec_of(browser, "kpi-chart")
    after_svg = browser.find_element(By.CSS_SELECTOR, "#kpi-chart svg").get_attribute("outerHTML")
    assert chart_states(browser) == [("true", True)]
    assert after_data["data"] != before_data["data"]  # all areas' contacts, then waste's only
    assert after_svg != before_svg
    assert "Waste" in browser.find_element(By.TAG_NAME, "main").text


def test_the_rag_matrix_links_to_the_kpi_page(
    system: RunningSystem, browser: webdriver.Chrome
) -> None:
    open_page(browser, system.url("metrics") + PAGES["overview"])
    cell = browser.find_element(By.CSS_SELECTOR, "#rag-matrix tbody td a")
    href = str(cell.get_attribute("href"))
    kpi = href.split("/dashboard/kpi/")[1].split("?")[0]

    cell.click()
    WebDriverWait(browser, 20).until(lambda d: "/dashboard/kpi/" in d.current_url)
    open_page(browser, browser.current_url)

    assert browser.find_element(By.TAG_NAME, "h1").text == KPIS_BY_NAME[kpi].title
    chosen = Select(browser.find_element(By.ID, "service_area")).first_selected_option
    assert str(chosen.get_attribute("value")) in href
    assert chart_states(browser) == [("true", True)]


def worklist_due(system: RunningSystem, before: date) -> list[str]:
    """The complaints the complaints service's own worklist has due before `before`, in order."""
    ids: list[str] = []
    cursor: str | None = None
    while True:
        params = {"state": "open", "due_before": before.isoformat(), "limit": "200"}
        response = httpx.get(
            f"{system.url('complaints')}/v1/complaints",
            params=params if cursor is None else {**params, "cursor": cursor},
            headers={"X-API-Key": system.credentials.dashboard_key},
            timeout=30,
        )
        response.raise_for_status()
        body = response.json()
        ids += [row["complaint_id"] for row in body["complaints"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return ids


def open_overdue_complaint(system: RunningSystem) -> str:
    """A corporate complaint received three weeks ago and never acknowledged, through
    intake's API, until the worklist has it: whether the simulated week leaves one due
    by Sunday depends on the weekday and the hour the test runs (on a Wednesday
    afternoon every one of its complaints had been acknowledged, and the next deadline
    of each fell after the week)."""
    received = datetime.now(UTC) - timedelta(days=21)
    contact = f"DASH-OVERDUE-{received:%Y%m%d%H%M%S}"
    record = {
        "record_type": "contact_received",
        "idempotency_key": f"{contact}:received",
        "contact_id": contact,
        "source": "simulator",
        "occurred_at": received.isoformat(),
        "channel": "phone",
        "service_area": "waste",
        "kind": "complaint",
        "customer_ref": "CUST-OVERDUE",
        "answered_by_team": "waste",
        "resolved_at_first_contact": False,
    }
    response = httpx.post(
        f"{system.url('intake')}/v1/contacts",
        json=record,
        headers={"X-API-Key": system.credentials.intake_key},
        timeout=30,
    )
    assert response.status_code in {200, 201, 202}, response.text
    complaint = complaint_id_for_contact(contact)
    before = end_of_week(local_day(datetime.now(UTC)))
    deadline = time.monotonic() + 60
    while complaint not in worklist_due(system, before) and time.monotonic() < deadline:
        time.sleep(0.5)
    return complaint


def test_the_complaints_page_lists_the_complaints_due_this_week(
    system: RunningSystem, browser: webdriver.Chrome
) -> None:
    """Issue 13: the Complaints page shows "due this week, overdue (from the complaints
    worklist …)": the same complaints, in the same order, as the worklist gives."""
    overdue = open_overdue_complaint(system)
    before = end_of_week(local_day(datetime.now(UTC)))
    # Case actions may still be landing after the simulation: compare with a worklist
    # read that did not change while the page was drawn.
    expected = worklist_due(system, before)
    for _ in range(30):
        open_page(browser, system.url("metrics") + PAGES["complaints"])
        rows = browser.find_elements(By.CSS_SELECTOR, "#due-this-week tbody tr")
        shown = [row.find_element(By.TAG_NAME, "td").text for row in rows]
        after = worklist_due(system, before)
        if after == expected:
            break
        expected = after

    assert overdue in expected, "the overdue complaint is not on the worklist"
    assert shown == expected
    summary = browser.find_element(By.ID, "due-this-week-summary").text
    assert summary.startswith(f"{len(expected)} due this week")
    assert browser.find_elements(By.ID, "due-this-week-problem") == []


AXE = STATIC_FILES["axe.min.js"]


@pytest.mark.parametrize("name", [*PAGES, "sign-in"])
def test_axe_finds_no_serious_or_critical_violation(
    system: RunningSystem, browser: webdriver.Chrome, name: str
) -> None:
    path = PAGES.get(name, "/dashboard/sign-in")
    open_page(browser, system.url("metrics") + path)
    browser.execute_script(AXE.read_text())

    result = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']})"
        ".then(r => done(r.violations.map(v => [v.id, v.impact, v.nodes.length,"
        " v.nodes.slice(0, 3).map(n => n.target.join(' '))])))"
        ".catch(e => done([['axe-error', 'critical', 0, [String(e)]]]));"
    )

    serious = [v for v in result if v[1] in ("serious", "critical")]
    assert serious == [], serious
