"""bench.cpu_sampler: the CPU-time sampler behind `bench.intake_throughput --sample`."""

import time
from pathlib import Path

from bench.cpu_sampler import CpuSampler


def spin(seconds: float) -> int:
    """Burns CPU (not wall time) for about `seconds`."""
    started, count = time.process_time(), 0
    while time.process_time() - started < seconds:
        count += sum(range(200))
    return count


def test_a_phase_samples_the_functions_that_used_its_cpu(tmp_path: Path) -> None:
    sampler = CpuSampler()
    with sampler.phase("busy", records=1000):
        spin(0.4)
    time.sleep(0.05)  # outside any phase: not sampled, and no signal left armed
    spin(0.05)

    path = tmp_path / "samples.txt"
    sampler.write(path, {"busy": 400e-6})
    text = path.read_text()

    inclusive = text.split("-- inclusive")[1].split("-- self")[0]
    assert "spin (test_cpu_sampler.py)" in inclusive
    assert text.startswith("== busy: 400.0 us CPU a record")
    # Nearly every sample was in `spin` (a tick may land while the phase starts or ends).
    spin_line = next(line for line in inclusive.splitlines() if "spin (" in line)
    assert 0.9 * 400 <= float(spin_line.split()[0]) <= 400


def test_a_phase_without_samples_says_so() -> None:
    assert CpuSampler().table("idle", 1e-6) == "== idle: no samples\n"
