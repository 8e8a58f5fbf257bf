"""`make bench` runs every benchmark (issue 15: it once stopped at the fourth)."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_make_bench_runs_every_benchmark_even_after_one_fails() -> None:
    benchmarks = sorted(
        path.stem for path in (ROOT / "bench").glob("*.py") if "def main(" in path.read_text()
    )
    recipe = subprocess.run(
        ["make", "-n", "bench", "PYTHON=python3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    listed = re.search(r"for name in ([\w ]+); do", recipe)

    assert listed is not None, recipe
    assert sorted(listed.group(1).split()) == benchmarks
    # A failing benchmark is noted and the loop goes on; make fails at the end.
    assert '|| failed="$failed $name"' in recipe
    assert "exit 1" in recipe
