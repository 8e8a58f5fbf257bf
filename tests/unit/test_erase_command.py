"""`civicpulse erase`: one receipt from every service, and a plain refusal of what fails."""

import argparse
import json
from datetime import UTC, datetime

import httpx
import pytest

from civicpulse import erase
from civicpulse.cli import main
from shared.erasure import DeletedRows, ErasureReceipt, remaining_copy
from shared.topics import FEEDBACK

ERASED_AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def args(**changes: str | None) -> argparse.Namespace:
    values: dict[str, str | None] = {
        "customer_ref": "CUST-1",
        "feedback_url": "http://feedback:8003/",
        "feedback_api_key": "fk",
        "complaints_url": "http://complaints:8002",
        "complaints_api_key": "ck",
        **changes,
    }
    return argparse.Namespace(**values)


def service_receipt(service: str, rows: int) -> ErasureReceipt:
    return ErasureReceipt.of(
        "CUST-1",
        ERASED_AT,
        [DeletedRows(service=service, table=f"{service}_table", rows=rows)],
        [remaining_copy(service, FEEDBACK, ERASED_AT, personal_data=False, note="n")],
    )


def transport(answers: dict[str, httpx.Response]) -> httpx.MockTransport:
    def serve(request: httpx.Request) -> httpx.Response:
        assert request.method == "DELETE"
        assert request.url.path == "/v1/customers/CUST-1"
        host = request.url.host
        assert request.headers["X-API-Key"] == {"feedback": "fk", "complaints": "ck"}[host]
        return answers[host]

    return httpx.MockTransport(serve)


async def test_the_receipts_of_every_service_are_combined_with_intake_s_topic_copies() -> None:
    answers = {
        "feedback": httpx.Response(200, content=service_receipt("feedback", 2).model_dump_json()),
        "complaints": httpx.Response(
            200, content=service_receipt("complaints", 1).model_dump_json()
        ),
    }
    async with httpx.AsyncClient(transport=transport(answers)) as client:
        receipt, failures = await erase.erase(args(), client)

    assert failures == []
    assert receipt.erased_rows == 3
    assert [d.service for d in receipt.deleted] == ["feedback", "complaints"]
    assert {c.service for c in receipt.remaining} == {"intake", "feedback", "complaints"}
    raw = [c for c in receipt.remaining if c.topic == "civicpulse.contacts.raw"]
    assert raw[0].personal_data is True
    assert "NOT ERASED" not in erase.as_text(receipt, failures)


async def test_a_service_that_fails_is_named_and_the_others_still_erase() -> None:
    answers = {
        "feedback": httpx.Response(401, json={"detail": "missing or unknown API key"}),
        "complaints": httpx.Response(
            200, content=service_receipt("complaints", 1).model_dump_json()
        ),
    }
    async with httpx.AsyncClient(transport=transport(answers)) as client:
        receipt, failures = await erase.erase(args(), client)

    assert [d.service for d in receipt.deleted] == ["complaints"]
    assert len(failures) == 1
    assert failures[0].startswith("feedback: answered 401")
    assert "NOT ERASED: feedback" in erase.as_text(receipt, failures)


async def test_a_missing_key_is_a_failure_not_a_call() -> None:
    answers = {
        "complaints": httpx.Response(
            200, content=service_receipt("complaints", 0).model_dump_json()
        )
    }
    async with httpx.AsyncClient(transport=transport(answers)) as client:
        _, failures = await erase.erase(args(feedback_api_key=None), client)

    assert failures == ["feedback: no API key (--feedback-api-key)"]


@pytest.mark.parametrize("ref", ["bad ref", "", "ref/with/slash", "x" * 65])
def test_a_bad_reference_exits_2_naming_the_field(
    ref: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["erase", ref]) == 2
    assert capsys.readouterr().err.startswith("customer_ref: ")


def test_the_receipt_is_json_an_operator_can_keep(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            *("erase", "CUST-1"),
            *("--feedback-url", "http://127.0.0.1:9", "--feedback-api-key", "k"),
            *("--complaints-url", "http://127.0.0.1:9", "--complaints-api-key", "k"),
        ]
    )

    out = capsys.readouterr()
    assert code == 1  # nothing listens on port 9
    receipt = json.loads(out.out)
    assert receipt["customer_ref"] == "CUST-1"
    assert "NOT ERASED: feedback: not reached" in out.err
