"""`while_in_flight`: the batch's planning runs while its statement is with PostgreSQL."""

import asyncio

import pytest

from services.metrics.applier import while_in_flight


async def test_the_statement_is_sent_before_the_work_runs_and_both_results_come_back() -> None:
    steps: list[str] = []
    answered = asyncio.Event()

    async def statement() -> str:
        steps.append("sent")
        await answered.wait()  # PostgreSQL working
        steps.append("answered")
        return "rows"

    def work() -> str:
        steps.append("planned")
        answered.set()
        return "plan"

    assert await while_in_flight(statement(), work) == ("rows", "plan")
    assert steps == ["sent", "planned", "answered"]


async def test_work_that_fails_cancels_the_statement_and_raises() -> None:
    cancelled = asyncio.Event()

    async def statement() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    def work() -> None:
        raise ValueError("bad plan")

    with pytest.raises(ValueError, match="bad plan"):
        await while_in_flight(statement(), work)
    await asyncio.wait_for(cancelled.wait(), timeout=5)


async def test_a_statement_that_fails_raises_after_the_work() -> None:
    async def statement() -> None:
        raise ConnectionError("gone")

    with pytest.raises(ConnectionError, match="gone"):
        await while_in_flight(statement(), lambda: None)
