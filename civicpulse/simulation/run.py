"""A simulation run: the council's records, and its residents answering surveys."""

import asyncio
import contextlib
import sys

from civicpulse.simulation.plan import Outgoing
from civicpulse.simulation.residents import FeedbackTarget, answer_surveys, register_contact_routes
from civicpulse.simulation.send import SendReport, Target, send_plan


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def run_simulation(
    plan: list[Outgoing],
    target: Target,
    *,
    rate: float | None,
    feedback: FeedbackTarget | None,
    seed: int,
    answer_seconds: float | None,
) -> SendReport:
    """Send the plan; with a feedback service, residents get contact routes and answer.

    Residents keep answering `answer_seconds` after the last record (None:
    until cancelled, as `civicpulse dev` does).
    """
    if feedback is None:
        return await send_plan(plan, target, rate=rate)
    customers = {ref for item in plan if (ref := item.body.get("customer_ref"))}
    routes = await register_contact_routes(feedback, customers, seed=seed)
    _say(f"simulate: the CRM gave the feedback service contact routes for {routes} customers")
    stop = asyncio.Event()
    answered = 0
    residents = asyncio.create_task(
        answer_surveys(target.kafka, feedback.url, seed=seed, stop=stop)
    )
    try:
        report = await send_plan(plan, target, rate=rate)
        _say(f"simulate: {report.describe()}; residents are answering their surveys")
        if answer_seconds is None:
            await residents
        else:
            await asyncio.sleep(answer_seconds)
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            answered = await residents
    _say(f"simulate: residents answered {answered} surveys")
    return report
