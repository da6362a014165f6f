"""Wall time of the test suite and of each tier, as a developer runs them, one after the other in one session.

Run: python3 tools/uv.py run python bench/tests.py  (about 12 minutes on 2 cores; writes bench/tests.md)
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time

from common import ROOT, write_table

TIERS = [
    ("unit", ["-m", "not integration and not system"]),
    ("integration", ["-m", "integration"]),
    ("system", ["-m", "system"]),
    ("whole suite (README command)", []),
]


def timed(args: list[str]) -> tuple[float, str]:
    """(wall seconds, pytest's closing counts) of `pytest args` in the project."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", *args], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    closing = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-300:]
    counts = re.sub(r"\s*in [0-9.]+s.*$", "", closing.strip("= "))
    return wall, counts


def main() -> None:
    rows = []
    for name, args in TIERS:
        wall, counts = timed(args)
        rows.append([name, f"`{shlex.join(['pytest', *args])}`", f"{wall:.0f}", counts])
        print(rows[-1], flush=True)
    notes = (
        "Each row is one `pytest` process with the environment installed (pytest-xdist, `-n auto`: 2 workers here),\n"
        "run one after the other; wall includes starting the workers. Without `chromium` on PATH the MLflow UI test\n"
        "is skipped (and fails under CI=true).\n"
        "Reproduce: `python3 tools/uv.py run python bench/tests.py` from main/."
    )
    write_table("tests", "The test suite's wall time, per tier", ["tier", "command", "wall (s)", "result"], rows, notes)


if __name__ == "__main__":
    main()
