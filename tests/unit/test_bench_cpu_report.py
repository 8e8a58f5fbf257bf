"""bench.support's "where the CPU went" table and bench.replicas' phase lines built on it."""

from datetime import date

import pytest

from bench.replicas import Phase, busiest, report
from bench.support import CpuAccount, where_the_cpu_went


def account(seconds: dict[str, float], *, wall: float = 20.0, busy: float = 36.0) -> CpuAccount:
    """A phase of `wall` seconds on a 2-core machine (capacity 2 x wall)."""
    return CpuAccount(seconds, wall, busy, 2 * wall, (3.5, 2.0, 1.0))


def test_each_process_gets_its_cpu_per_thousand_contacts_and_share_of_the_cores() -> None:
    cpu = account({"intake#1": 10.0, "metrics#1": 14.0, "kafka": 6.0})

    rows = cpu.where_it_went(5000)

    assert rows["intake#1"] == pytest.approx((2.0, 0.25))  # 10 s / 5 thousand; 10 s of 2 x 20 s
    assert rows["metrics#1"] == pytest.approx((2.8, 0.35))
    assert rows["all tracked"] == pytest.approx((6.0, 0.75))
    assert rows["other processes"] == pytest.approx((1.2, 0.15))  # busy 36 s less the 30 s tracked
    assert rows["machine idle"] == pytest.approx((0.8, 0.1))
    assert cpu.cores == 2.0


def test_a_replica_missing_from_a_phase_shows_a_dash_and_the_processes_come_first() -> None:
    one = account({"intake#1": 10.0})
    two = account({"intake#1": 5.0, "intake#2": 5.0})

    lines = where_the_cpu_went([("one-1", one, 5000), ("two-1", two, 5000)])

    labels = [line.split()[0] for line in lines[2:]]
    assert labels[:3] == ["intake#1", "intake#2", "all"]
    intake_2 = next(line for line in lines if line.startswith("intake#2"))
    assert intake_2.split()[1:] == ["-", "1.00", "12%"]
    assert "2 cores" in lines[0]


def test_the_phase_line_names_the_busiest_replica_as_a_share_of_one_core() -> None:
    cpu = account({"intake#1": 8.0, "metrics#1": 19.0, "kafka": 30.0}, busy=38.0)
    phase = Phase("one-1", 1, date(2026, 12, 1), sent=5000, counted=5000, cpu=cpu)

    line = busiest(phase)

    assert "machine 95% busy (1.90 of 2 cores)" in line
    assert "busiest replica metrics#1 at 0.95 of a core" in line  # not Kafka, not a replica


def test_the_report_has_a_cpu_column_per_phase() -> None:
    phases = [
        Phase("one-1", 1, date(2026, 12, 1), sent=5000, counted=5000, cpu=account({"a#1": 1.0})),
        Phase("two-1", 2, date(2026, 12, 2), sent=5000, counted=5000, cpu=account({"a#1": 1.0})),
    ]

    text = report(phases)

    header = next(line for line in text.splitlines() if "one-1" in line and "two-1" in line)
    assert header.split() == ["one-1", "two-1"]
