"""Skip the pauses of the code under test and write down the delays it asked for.

Every test of a session shares one event loop (pytest-asyncio's loop scope is
"session" in pyproject.toml), so patching `asyncio.sleep` itself would also
catch every other task on that loop, such as a Kafka client an earlier test
left running, and record its sleeps as the code's. The patch replaces only the
named modules' `asyncio`, with one whose `sleep` is instant and recorded.
"""

import asyncio
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

import pytest


class _AsyncioWithSleep:
    """The `asyncio` module as one module sees it, with `sleep` replaced."""

    def __init__(self, sleep: Callable[..., Awaitable[None]]) -> None:
        self.sleep = sleep

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)


def record_sleeps(monkeypatch: pytest.MonkeyPatch, *modules: ModuleType) -> list[float]:
    """Make `asyncio.sleep` instant in `modules`; returns the list of delays they asked for."""
    delays: list[float] = []
    real_sleep = asyncio.sleep

    async def instant(delay: float, *args: Any, **kwargs: Any) -> None:
        delays.append(delay)
        await real_sleep(0)

    for module in modules:
        assert module.asyncio is asyncio, f"{module.__name__} does not `import asyncio`"
        monkeypatch.setattr(module, "asyncio", _AsyncioWithSleep(instant))
    return delays
