"""A resident answers the survey in a real browser (Debian's chromium, headless)."""

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from services.feedback.notifications import NotifyMessage
from shared.events import SatisfactionResponded, parse_event
from shared.topics import COMPLAINTS, CONTACTS, FEEDBACK, NOTIFICATIONS
from tests.support.feedback import (
    DELAY,
    RunningService,
    contact_resolved,
    decisions,
    feedback_settings,
    new_id,
    publish,
    served_feedback,
)
from tests.support.kafka import new_group_at_end, read_topic

pytestmark = pytest.mark.integration
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
async def feedback(
    kafka_bootstrap: str, database_url: str, topics: None
) -> AsyncIterator[RunningService]:
    group = await new_group_at_end(
        kafka_bootstrap, [CONTACTS.name, COMPLAINTS.name], "test-browser"
    )
    async with served_feedback(feedback_settings(kafka_bootstrap, database_url, group)) as service:
        yield service


def chromium(user_data_dir: str) -> webdriver.Chrome:
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.fail(
            "Debian's chromium is needed for this test: "
            "apt-get update && apt-get install -y chromium chromium-driver"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless",
        "--no-sandbox",  # root in a container has no user namespace sandbox
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        f"--user-data-dir={user_data_dir}",
        "--window-size=412,915",  # a phone: residents answer on their phones
    ):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


def page_shows(driver: webdriver.Chrome, selector: str) -> None:
    WebDriverWait(driver, 20).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, selector))
    )


def answer_in_the_browser(link: str) -> tuple[str, list[str], str, str, str]:
    """Submit once empty (to see the errors), then answer; returns what the resident saw,
    and the header's colour: the stylesheet applied under the page's CSP."""
    with tempfile.TemporaryDirectory() as profile:
        driver = chromium(profile)
        try:
            driver.get(link)
            title = driver.find_element(By.TAG_NAME, "h1").text
            header_colour = str(
                driver.execute_script(
                    "return getComputedStyle(document.querySelector('header')).backgroundColor"
                )
            )
            driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
            # A click does not wait for the page it submits to: wait for the answer.
            page_shows(driver, ".error-summary li")
            errors = [
                item.text for item in driver.find_elements(By.CSS_SELECTOR, ".error-summary li")
            ]
            # Click the labels, as a resident taps them.
            driver.find_element(By.CSS_SELECTOR, "label[for=overall-4]").click()
            driver.find_element(By.CSS_SELECTOR, "label[for=ease-6]").click()
            driver.find_element(By.CSS_SELECTOR, "label[for=resolved-partly]").click()
            driver.find_element(By.ID, "comment").send_keys("The bin was collected the next day")
            driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
            page_shows(driver, ".panel h1")
            final = driver.find_element(By.TAG_NAME, "h1").text
            return title, errors, final, driver.title, header_colour
        finally:
            driver.quit()


async def test_a_resident_answers_the_survey_in_a_browser_and_sees_the_thank_you_page(
    feedback: RunningService, kafka_bootstrap: str
) -> None:
    customer, contact = new_id("CUST"), new_id("C")
    route = await feedback.client.put(
        f"/v1/customers/{customer}/contact-route", json={"mobile": "07700 900123"}
    )
    assert route.status_code == 204
    await publish(kafka_bootstrap, contact_resolved(contact, customer, feedback.clock()))
    request_id = (await decisions(feedback, "contact", contact))["request"]["request_id"]
    feedback.clock.advance(DELAY + timedelta(minutes=1))
    await feedback.fire_timers()
    await feedback.publish_outbox()
    records = await read_topic(
        kafka_bootstrap,
        NOTIFICATIONS.name,
        until=lambda rs: any(r.key == request_id.encode() for r in rs),
    )
    [message] = [
        NotifyMessage.model_validate_json(r.value) for r in records if r.key == request_id.encode()
    ]

    first_title, errors, final_title, page_title, header_colour = await asyncio.to_thread(
        answer_in_the_browser, message.personalisation.survey_link
    )
    await feedback.publish_outbox()

    assert message.notification_type == "sms"
    assert message.phone_number == "07700900123"
    assert first_title == "Tell us about your recent contact with us"
    # The inline stylesheet is allowed by its hash in the CSP: GOV.UK black (#0b0c0c).
    assert header_colour == "rgb(11, 12, 12)"
    assert errors == [
        "Select how satisfied you are overall, from 1 to 5",
        "Select how easy it was, from 1 to 7",
        "Select whether your enquiry or problem was resolved",
    ]
    assert final_title == "Thank you for your feedback"
    assert page_title.startswith("Thank you for your feedback")
    answered = await read_topic(
        kafka_bootstrap,
        FEEDBACK.name,
        until=lambda rs: any(
            r.key == request_id.encode() and b"SatisfactionResponded" in r.value for r in rs
        ),
    )
    [response] = [
        event
        for event in (parse_event(r.value) for r in answered if r.key == request_id.encode())
        if isinstance(event, SatisfactionResponded)
    ]
    assert (response.payload.overall, response.payload.ease) == (4, 6)
    assert response.payload.resolved == "partly"
    assert response.payload.comment_ref == request_id  # the text stays in feedback
    kept = await feedback.client.get(f"/v1/comments/{request_id}")
    assert kept.json()["comment"] == "The bin was collected the next day"
