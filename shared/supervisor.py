"""A service's background loops, and the one order every service stops in.

Each loop (timers, the outbox relay, gauge refreshes) runs as a named task. A
loop that raises is logged with its name and started again after a backoff
that doubles up to a cap, so one bad pass neither kills the loop silently nor
spins. `shut_down` stops a service in one order everywhere:

1. stop consuming: the Kafka subscribers finish and commit the batch in hand,
   and the loops that take work in (timers, refreshes) end their pass;
2. drain the relay: its loop ends, then it publishes what those last batches
   and timers wrote to the outbox, so they leave now rather than at the next
   start;
3. stop the producers (the broker's, and any other), which flush as they go.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)

Run = Callable[[], Awaitable[None]]
Stop = Callable[[], None]
Close = Callable[[], Awaitable[None]]


class Subscriber(Protocol):
    async def stop(self) -> None: ...


class Consumers(Protocol):
    """What `stop_consuming` needs of a `faststream.kafka.KafkaBroker`."""

    @property
    def subscribers(self) -> Sequence[Subscriber]: ...


class Relay(Protocol):
    """What the supervisor needs of `shared.outbox.OutboxRelay`."""

    async def run(self) -> None: ...
    def stop(self) -> None: ...
    async def publish_pending(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Backoff:
    """Seconds to wait before restarting a failed loop: doubling from `first` to `most`."""

    first: float = 1.0
    most: float = 30.0

    def after(self, failures: int) -> float:
        return float(min(self.most, self.first * 2 ** max(failures - 1, 0)))


@dataclass(slots=True)
class _Loop:
    name: str
    stop: Stop | None
    task: "asyncio.Task[None]"


class Supervisor:
    """Starts named loops, restarts them with backoff on failure, stops them in order."""

    def __init__(
        self,
        service: str,
        *,
        backoff: Backoff | None = None,
        stop_timeout_seconds: float = 10.0,
        drain_timeout_seconds: float = 5.0,
    ) -> None:
        self._service = service
        self._backoff = backoff or Backoff()
        self._stop_timeout = stop_timeout_seconds
        self._drain_timeout = drain_timeout_seconds
        self._loops: dict[str, _Loop] = {}
        self._relay: Relay | None = None
        self._relay_name: str | None = None
        self._stopping = asyncio.Event()

    @property
    def names(self) -> list[str]:
        return list(self._loops)

    def start(self, name: str, run: Run, stop: Stop | None = None) -> None:
        """Run `run()` until `stop()` (or, without one, until cancelled)."""
        if name in self._loops:
            raise ValueError(f"{self._service} already runs a loop named {name!r}")
        task = asyncio.create_task(self._supervise(name, run), name=f"{self._service} {name}")
        self._loops[name] = _Loop(name, stop, task)

    def every(self, name: str, seconds: float, one_pass: Run) -> None:
        """Run `one_pass()` now and then every `seconds` until stopped."""
        stopped = asyncio.Event()

        async def periodically() -> None:
            while not stopped.is_set():
                await one_pass()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopped.wait(), seconds)

        self.start(name, periodically, stopped.set)

    def start_relay(self, relay: Relay, name: str = "outbox relay") -> None:
        """The outbox relay: stopped after the other loops, then drained (see `shut_down`)."""
        self._relay, self._relay_name = relay, name
        self.start(name, relay.run, relay.stop)

    async def stop(self, name: str) -> None:
        """Stop one loop: ask it to stop, wait for it, cancel it if it will not end in time."""
        loop = self._loops.pop(name)
        if loop.stop is None:
            loop.task.cancel()
        else:
            loop.stop()
        done, _ = await asyncio.wait({loop.task}, timeout=self._stop_timeout)
        if not done:
            log.warning(
                "%s %s did not stop in %ss: cancelled", self._service, name, self._stop_timeout
            )
            loop.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop.task

    @asynccontextmanager
    async def serving(
        self,
        *,
        consumers: Sequence[Consumers] = (),
        producers: Sequence[Close] = (),
        then_close: Sequence[Close] = (),
    ) -> AsyncIterator[None]:
        """A lifespan's `yield` inside this: on the way out, `shut_down`, then `then_close`
        (lag readers, the pool), however the block ends."""
        try:
            yield
        finally:
            await self.shut_down(consumers=consumers, producers=producers)
            for close in then_close:
                await close()

    async def shut_down(
        self,
        *,
        consumers: Sequence[Consumers] = (),
        producers: Sequence[Close] = (),
    ) -> None:
        """Stop consuming, drain the relay, stop the producers: in that order, always."""
        self._stopping.set()
        inputs = [name for name in self._loops if name != self._relay_name]
        await asyncio.gather(
            *(stop_consuming(broker) for broker in consumers),
            *(self.stop(name) for name in inputs),
        )
        if self._relay is not None and self._relay_name is not None:
            if self._relay_name in self._loops:
                await self.stop(self._relay_name)
            await self._drain(self._relay)
        for stop_producer in producers:
            await stop_producer()

    async def _drain(self, relay: Relay) -> None:
        deadline = time.monotonic() + self._drain_timeout
        try:
            while time.monotonic() < deadline and await relay.publish_pending():
                pass
        except Exception:  # what is left goes out at the next start
            log.warning(
                "%s could not drain its outbox; the next start publishes the rest",
                self._service,
                exc_info=True,
            )

    async def _supervise(self, name: str, run: Run) -> None:
        failures = 0
        while not self._stopping.is_set():
            began = time.monotonic()
            try:
                await run()
            except asyncio.CancelledError:
                raise
            except Exception:
                if time.monotonic() - began > self._backoff.most:
                    failures = 0  # it had been working: start the backoff again
                failures += 1
                delay = self._backoff.after(failures)
                log.exception(
                    "%s %s failed (%d in a row); restarting in %gs",
                    self._service,
                    name,
                    failures,
                    delay,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                continue
            return  # it ended because it was asked to


async def stop_consuming(broker: Consumers) -> None:
    """Stop the broker's subscribers only: the batch in hand finishes and commits, and the
    broker's producer stays up for the relay and dead letters until `broker.stop()`."""
    await asyncio.gather(*(subscriber.stop() for subscriber in broker.subscribers))
