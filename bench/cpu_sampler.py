"""Where a benchmark phase's CPU goes, by function, sampled on CPU time (SIGPROF).

cProfile's per-call cost distorts small functions, and a wall-clock sampler (py-spy)
counts a process waiting for a core, or blocked in a loopback `send`, as busy, so on a
shared 2-core machine its figures are mostly other processes' time. SIGPROF fires only
as this process uses CPU. The kernel delivers it at its tick (about 4 ms here, whatever
is asked), so each phase's samples are scaled to its measured CPU per record. Time in
C code (pydantic-core, hashlib, lz4) lands on the Python frame that called it, or on
the first Python function it calls back (an after-validator such as `_as_utc`).

    sampler = CpuSampler()
    with sampler.phase("intake", records=50_000):
        ...
    sampler.write(path, measured={"intake": 45e-6})
"""

import collections
import contextlib
import signal
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import FrameType

Stack = tuple[str, ...]
INTERVAL_S = 0.001


def _where(frame: FrameType) -> str:
    return f"{frame.f_code.co_qualname} ({frame.f_code.co_filename.rsplit('/', 1)[-1]})"


class CpuSampler:
    def __init__(self) -> None:
        self._stacks: dict[str, collections.Counter[Stack]] = {}
        self._records: dict[str, int] = {}
        self._current: collections.Counter[Stack] | None = None

    def _sample(self, _: int, frame: FrameType | None) -> None:
        if self._current is None:
            return
        stack = []
        while frame is not None:
            stack.append(_where(frame))
            frame = frame.f_back
        self._current[tuple(reversed(stack))] += 1

    @contextlib.contextmanager
    def phase(self, name: str, *, records: int) -> Iterator[None]:
        self._current = self._stacks.setdefault(name, collections.Counter())
        self._records[name] = self._records.get(name, 0) + records
        previous = signal.signal(signal.SIGPROF, self._sample)
        signal.setitimer(signal.ITIMER_PROF, INTERVAL_S, INTERVAL_S)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0, 0)
            signal.signal(signal.SIGPROF, previous)
            self._current = None

    def table(self, name: str, seconds_per_record: float, top: int = 40) -> str:
        """Functions by CPU per record in the phase, inclusive and self."""
        stacks = self._stacks.get(name, collections.Counter())
        total = sum(stacks.values())
        if not total:
            return f"== {name}: no samples\n"
        per_sample = seconds_per_record * 1e6 / total  # us per record a sample stands for
        inclusive: collections.Counter[str] = collections.Counter()
        own: collections.Counter[str] = collections.Counter()
        for stack, count in stacks.items():
            own[stack[-1]] += count
            for where in set(stack):
                inclusive[where] += count
        lines = [
            f"== {name}: {seconds_per_record * 1e6:.1f} us CPU a record, {total} samples",
            "-- inclusive (us a record)",
            *(f"{count * per_sample:7.2f}  {where}" for where, count in inclusive.most_common(top)),
            "-- self (us a record)",
            *(f"{count * per_sample:7.2f}  {where}" for where, count in own.most_common(top)),
        ]
        return "\n".join(lines) + "\n"

    def write(self, path: Path, measured: Mapping[str, float]) -> None:
        """Each phase's table, scaled to `measured` CPU seconds per record."""
        path.write_text("\n".join(self.table(name, measured[name]) for name in measured))
