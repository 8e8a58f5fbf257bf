"""The background-loop supervisor: restarts with backoff, logs, and one shutdown order."""

import asyncio
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from shared.supervisor import Backoff, Subscriber, Supervisor

FAST = Backoff(first=0.01, most=0.04)


@dataclass
class Journal:
    """What happened, in order, across the fakes below."""

    entries: list[str] = field(default_factory=list)

    def __call__(self, entry: str) -> None:
        self.entries.append(entry)


@dataclass
class FakeSubscriber:
    journal: Journal
    name: str

    async def stop(self) -> None:
        await asyncio.sleep(0.01)  # the batch in hand finishing
        self.journal(f"stopped consuming {self.name}")


@dataclass
class FakeBroker:
    journal: Journal
    names: Sequence[str] = ("contacts",)

    @property
    def subscribers(self) -> Sequence[Subscriber]:
        return [FakeSubscriber(self.journal, name) for name in self.names]

    async def stop(self) -> None:
        self.journal("stopped the producer")


class FakeLoop:
    """A loop like `TimerScheduler`: `run()` until `stop()`."""

    def __init__(self, journal: Journal, name: str) -> None:
        self.journal = journal
        self.name = name
        self.stopping = asyncio.Event()

    async def run(self) -> None:
        await self.stopping.wait()
        self.journal(f"{self.name} ended")

    def stop(self) -> None:
        self.stopping.set()


class FakeRelay(FakeLoop):
    def __init__(self, journal: Journal, pending: int) -> None:
        super().__init__(journal, "relay")
        self.pending = pending

    async def publish_pending(self) -> int:
        published, self.pending = min(self.pending, 2), max(self.pending - 2, 0)
        self.journal(f"relay published {published}")
        return published


def test_the_backoff_doubles_up_to_its_cap() -> None:
    backoff = Backoff(first=1, most=30)

    assert [backoff.after(failures) for failures in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


async def test_a_failing_loop_is_logged_by_name_and_restarted_after_a_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs: list[float] = []
    third_run = asyncio.Event()

    async def flaky() -> None:
        runs.append(asyncio.get_running_loop().time())
        if len(runs) < 3:
            raise ValueError("bad pass")
        third_run.set()
        await asyncio.Event().wait()  # then runs until cancelled

    loops = Supervisor("intake", backoff=FAST)
    with caplog.at_level(logging.ERROR, logger="shared.supervisor"):
        loops.start("flaky loop", flaky)
        await asyncio.wait_for(third_run.wait(), 5)
        await loops.shut_down()

    failures = [r for r in caplog.records if "flaky loop failed" in r.getMessage()]
    assert [r.getMessage() for r in failures] == [
        "intake flaky loop failed (1 in a row); restarting in 0.01s",
        "intake flaky loop failed (2 in a row); restarting in 0.02s",
    ]
    assert all(r.exc_info is not None for r in failures)
    assert runs[1] - runs[0] >= FAST.after(1) * 0.9
    assert runs[2] - runs[1] >= FAST.after(2) * 0.9
    assert loops.names == []


async def test_shutdown_stops_consuming_then_drains_the_relay_then_stops_the_producer() -> None:
    journal = Journal()
    broker = FakeBroker(journal, names=("contacts", "actions"))
    timers, relay = FakeLoop(journal, "timers"), FakeRelay(journal, pending=3)
    loops = Supervisor("complaints")
    loops.start("timers", timers.run, timers.stop)
    loops.start_relay(relay)
    await asyncio.sleep(0)

    await loops.shut_down(consumers=[broker], producers=[broker.stop])

    consuming = {"stopped consuming contacts", "stopped consuming actions", "timers ended"}
    assert set(journal.entries[:3]) == consuming
    assert journal.entries[3:] == [
        "relay ended",
        "relay published 2",
        "relay published 1",
        "relay published 0",
        "stopped the producer",
    ]


async def test_a_loop_that_will_not_stop_is_cancelled_after_the_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cancelled = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    loops = Supervisor("metrics", stop_timeout_seconds=0.05)
    loops.start("stubborn", stubborn, stop=lambda: None)  # asks, but it never listens
    await asyncio.sleep(0)

    with caplog.at_level(logging.WARNING, logger="shared.supervisor"):
        await loops.shut_down()

    assert cancelled.is_set()
    assert "metrics stubborn did not stop in 0.05s: cancelled" in caplog.text


async def test_a_periodic_pass_runs_again_after_its_interval_until_stopped() -> None:
    passes: list[float] = []
    third_pass = asyncio.Event()

    async def refresh() -> None:
        passes.append(asyncio.get_running_loop().time())
        if len(passes) == 3:
            third_pass.set()

    loops = Supervisor("complaints")
    loops.every("gauges", 0.01, refresh)
    await asyncio.wait_for(third_pass.wait(), 5)
    await loops.stop("gauges")

    assert loops.names == []  # its task has ended: no pass can follow
    assert all(later - earlier >= 0.009 for earlier, later in itertools.pairwise(passes))


async def test_a_drain_that_fails_is_logged_and_the_producer_still_stops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    journal = Journal()
    broker = FakeBroker(journal)

    class BrokenRelay(FakeRelay):
        async def publish_pending(self) -> int:
            raise ConnectionRefusedError("PostgreSQL is down")

    relay = BrokenRelay(journal, pending=1)
    loops = Supervisor("feedback")
    loops.start_relay(relay)
    await asyncio.sleep(0)

    with caplog.at_level(logging.WARNING, logger="shared.supervisor"):
        await loops.shut_down(consumers=[broker], producers=[broker.stop])

    assert journal.entries[-1] == "stopped the producer"
    assert "feedback could not drain its outbox" in caplog.text


async def test_two_loops_may_not_share_a_name() -> None:
    loops = Supervisor("intake")
    first = FakeLoop(Journal(), "timers")
    loops.start("timers", first.run, first.stop)

    with pytest.raises(ValueError, match="already runs a loop named 'timers'"):
        loops.start("timers", first.run, first.stop)

    await loops.shut_down()


async def test_serving_shuts_down_then_closes_even_when_the_block_fails() -> None:
    journal = Journal()
    broker = FakeBroker(journal)
    loops = Supervisor("metrics")

    async def close_pool() -> None:
        journal("closed the pool")

    with pytest.raises(RuntimeError, match="lifespan failed"):
        async with loops.serving(
            consumers=[broker], producers=[broker.stop], then_close=[close_pool]
        ):
            raise RuntimeError("lifespan failed")

    assert journal.entries == [
        "stopped consuming contacts",
        "stopped the producer",
        "closed the pool",
    ]
