"""The playground's figures (issue 37) in headless Chromium: start, first frame, live run, frame rate, reset, idle CPU.

Run: python3 tools/uv.py run python bench/playground.py   (writes bench/playground.md; needs Debian's chromium)
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, write_table  # noqa: E402

TRIES = 5
XOR = "epochs=1000"  # the defaults: xor_relu16, 1000 epochs


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def post(url: str, path: str) -> float:
    """Seconds a POST with an empty JSON body takes to answer."""
    start = time.perf_counter()
    request = urllib.request.Request(url + path, b"{}", {"Content-Type": "application/json"})
    urllib.request.urlopen(request).read()
    return time.perf_counter() - start


def main() -> None:
    from playwright.sync_api import sync_playwright

    root = Path(tempfile.mkdtemp(prefix="playground-bench-"))
    shutil.copytree(ROOT / "conf", root / "conf")
    shutil.copytree(ROOT / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "params.yaml", root)
    env = os.environ | {"PYTHONPATH": str(root / "src")}
    started = time.perf_counter()
    app = subprocess.Popen([sys.executable, "-m", "pipeline.playground.server", "--port", "0"], cwd=root, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    url = app.stdout.readline().split()[1].rstrip("/")
    printed = time.perf_counter() - started
    while True:
        try:
            urllib.request.urlopen(url + "/").read()
            break
        except OSError:
            time.sleep(0.02)
    page_served = time.perf_counter() - started
    while not json.loads(urllib.request.urlopen(url + "/api/status").read())["ready"]:
        time.sleep(0.1)
    ready = time.perf_counter() - started
    rows = []
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{url}/?{XOR}")
        page.wait_for_function("document.getElementById('status').textContent === 'ready'")
        for attempt in range(TRIES + 1):  # the first try warms the app
            page.click("#play")
            page.wait_for_function("window.playgroundStats.done !== null", timeout=120_000)
            s = page.evaluate("window.playgroundStats")
            first, last = (s["firstFrameAt"] - s["playAt"]) / 1000, (s["lastFrameAt"] - s["playAt"]) / 1000
            rows.append((attempt, first, last, (s["frames"] - 1) / (last - first), s["frames"]))
        page.goto(f"{url}/?epochs=1000000&play=1")
        page.wait_for_function("window.playgroundStats.frames > 5", timeout=120_000)
        reset = post(url, "/api/reset")  # answers once the training thread has stopped
        page.wait_for_timeout(2000)
        before, t0 = cpu_seconds(app.pid), time.perf_counter()
        time.sleep(30)  # the page stays open, its event stream connected
        idle = (cpu_seconds(app.pid) - before) / (time.perf_counter() - t0)
        browser.close()
    app.terminate()
    app.wait()
    warm = rows[1:]
    table = [
        [f"{'first (warms the app)' if a == 0 else a}", f"{f:.3f}", f"{l:.2f}", f"{fps:.1f}", str(n)] for a, f, l, fps, n in rows
    ]
    medians = [statistics.median(r[i] for r in warm) for i in (1, 2, 3)]
    table.append(["median of the warm tries", f"{medians[0]:.3f}", f"{medians[1]:.2f}", f"{medians[2]:.1f}", ""])
    notes = f"""
Tries of the default setup (xor_relu16: Dense(16, relu), adam 0.001, mse, 1000 epochs) in headless Chromium at
1280x800, pressing Play on one page; times from the click, as the page records them (`window.playgroundStats`).
Acceptance: first frame <= 0.5 s, last frame <= 3 s, >= 10 frames/s, idle below 1% CPU.

- App start: URL printed after {printed:.2f} s, page served after {page_served:.2f} s; TensorFlow, MLflow and Hydra
  imported and a 2-epoch warm-up done after {ready:.1f} s (in the background; Play waits for it).
- Reset during a 1,000,000-epoch try: {1000 * reset:.0f} ms from the request to the training thread stopped (its
  run ends KILLED).
- Idle app, page open with its event stream: {100 * idle:.2f}% of one core over 30 s.

Reproduce: `python3 tools/uv.py run python bench/playground.py` from main/.
"""
    header = ["try", "first frame (s)", "last frame (s)", "frames drawn per s", "frames drawn"]
    write_table("playground", "The playground: XOR relu16, 1000 epochs, drawn live", header, table, notes)


if __name__ == "__main__":
    main()
