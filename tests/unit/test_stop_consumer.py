"""`shared.kafka.stop_consumer`: stopping through aiokafka's race (aio-libs/aiokafka#647)."""

import asyncio
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaConsumer

from shared.kafka import stop_consumer


class FakeClient:
    def __init__(self) -> None:
        self.closed = 0

    async def close(self) -> None:
        self.closed += 1


class FakeConsumer:
    """Stops as aiokafka's does when its fetcher awaits a fetch it has just cancelled."""

    def __init__(self, stop: Any) -> None:
        self._client = FakeClient()
        self._stop = stop

    async def stop(self) -> None:
        await self._stop()


async def fetch_cancelled_inside() -> None:
    backing_off = asyncio.ensure_future(asyncio.sleep(3600))
    await asyncio.sleep(0)
    backing_off.cancel()
    await backing_off  # aiokafka's Fetcher.close: the CancelledError is not ours


async def stops_cleanly() -> None:
    return None


async def test_a_fetch_cancelled_inside_stop_is_not_raised_and_the_client_is_closed() -> None:
    consumer = FakeConsumer(fetch_cancelled_inside)
    await stop_consumer(cast(AIOKafkaConsumer, consumer))
    assert consumer._client.closed == 1


async def test_a_clean_stop_leaves_the_client_to_stop() -> None:
    consumer = FakeConsumer(stops_cleanly)
    await stop_consumer(cast(AIOKafkaConsumer, consumer))
    assert consumer._client.closed == 0


async def test_cancelling_the_stopping_task_still_cancels_it() -> None:
    entered = asyncio.Event()

    async def hangs() -> None:
        entered.set()
        await asyncio.Event().wait()

    consumer = FakeConsumer(hangs)
    stopping = asyncio.ensure_future(stop_consumer(cast(AIOKafkaConsumer, consumer)))
    await entered.wait()
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    assert stopping.cancelled()
    assert consumer._client.closed == 0
