"""Benchmark plumbing: machine description and the committed Markdown tables."""

from __future__ import annotations

import datetime as dt
import os
import platform
from importlib import metadata
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent


def machine() -> str:
    """CPU model, core count, Python and library versions, date."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = ", ".join(
        f"{name} {metadata.version(name)}" for name in ("tensorflow-cpu", "keras", "mlflow", "numpy") if _installed(name)
    )
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {versions}; {dt.date.today().isoformat()}"


def _installed(name: str) -> bool:
    try:
        metadata.version(name)
        return True
    except metadata.PackageNotFoundError:
        return False


def write_table(name: str, title: str, header: list[str], rows: list[list[str]], notes: str = "") -> Path:
    """Write bench/<name>.md: title, machine line, a Markdown table and notes."""
    lines = [f"# {title}", "", f"Machine: {machine()}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    path = BENCH_DIR / f"{name}.md"
    path.write_text("\n".join(lines) + ("\n\n" + notes.strip() + "\n" if notes else "\n"))
    print(path.read_text())
    return path
