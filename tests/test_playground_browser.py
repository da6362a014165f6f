"""The playground in a real browser: a shared link trains live, matches its MLflow run and the shown command, is saved
as an experiment and reproduced by `dvc repro`; bad links train nothing; other hosts and origins are refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import installed, serving

from pipeline import files
from test_dvc import dvc, dvc_env, pipeline_copy

pytestmark = pytest.mark.system

CIRCLES = "dataset=circles&hidden=8:tanh&loss=binary_crossentropy&optimizer=sgd&lr=0.5&epochs=15"


@pytest.fixture(scope="module")
def browser() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    return installed(path, "the chromium browser", "apt-get install chromium")


@pytest.fixture(scope="module")
def playground(tmp_path_factory, browser):
    """A pipeline copy (git + DVC, experiment circles_tanh4) with its playground serving; yields (root, url)."""
    root = tmp_path_factory.mktemp("playground")
    pipeline_copy(root, ["circles_tanh4"])
    command = [sys.executable, "-m", "pipeline.playground.server", "--port", "{port}"]
    with serving(command, "/api/options", root, env=dvc_env(root)) as url:
        yield root, url


@pytest.fixture(scope="module")
def page(browser):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=browser, args=["--no-sandbox"])
        yield chromium.new_page(viewport={"width": 1280, "height": 800})
        chromium.close()


def client(root: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{root / 'mlflow.db'}")


def playground_runs(root: Path) -> list:
    experiment = client(root).get_experiment_by_name("playground") if (root / "mlflow.db").exists() else None
    return client(root).search_runs([experiment.experiment_id]) if experiment else []


def test_a_link_trains_live_as_its_mlflow_run_says_and_dvc_repro_reproduces_it_once_saved(playground, page):
    root, url = playground
    page.goto(f"{url}/?{CIRCLES}&play=1")
    page.wait_for_function("window.playgroundStats.done !== null", timeout=240_000)
    stats = page.evaluate("window.playgroundStats")
    assert stats["frames"] >= 10  # drawn live: a frame per epoch at least
    shown = {key: page.inner_text(f"#{key}") for key in ("final-accuracy", "final-loss", "convergence-epoch", "mlflow-link")}
    run = client(root).get_run(shown["mlflow-link"])
    assert float(shown["final-accuracy"]) == run.data.metrics["final_train_accuracy"]
    assert float(shown["final-loss"]) == run.data.metrics["final_train_loss"]
    assert run.data.tags["source"] == "playground" and run.data.tags["playground_query"] == CIRCLES
    assert run.info.status == "FINISHED" and "epoch_loss" in run.data.metrics
    assert run.data.tags["model_sha256"] == files.digest(root / "runs" / "playground" / "circles" / "model.keras")  # logged
    assert len(client(root).get_metric_history(run.info.run_id, "epoch_loss")) == 15
    assert page.get_attribute("#mlflow-link", "href").endswith(f"/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}")

    # The command the page shows is the same run: the same params and final metrics, from the shell.
    shell = subprocess.run(page.inner_text("#command"), shell=True, cwd=root, env=dvc_env(root), capture_output=True, text=True)
    assert shell.returncode == 0, shell.stderr[-2000:]
    (cli,) = [r for r in playground_runs(root) if r.info.run_id != run.info.run_id and "source" not in r.data.tags]
    assert cli.data.params == run.data.params
    assert {k: v for k, v in cli.data.metrics.items() if "seconds" not in k} == {
        k: v for k, v in run.data.metrics.items() if "seconds" not in k
    }
    artifacts = {a.path for a in client(root).list_artifacts(run.info.run_id, "plots")}
    assert "plots/decision_boundary.png" in artifacts  # logged just after the end

    # Saved as an experiment, then reproduced by DVC: the same final loss and convergence epoch.
    page.fill("#save-name", "circles_tanh8")
    page.click("#save")
    page.wait_for_function("document.getElementById('save-status').textContent.startsWith('saved')")
    assert (root / "conf" / "experiment" / "circles_tanh8.yaml").is_file()
    page.click("#save")  # again: the page asks before overwriting (the driver dismisses the dialog)
    page.wait_for_function("document.getElementById('save-status').textContent.includes('exists')")
    repro = dvc("repro", "train@circles_tanh8", cwd=root)
    assert repro.returncode == 0, repro.stderr[-2000:]
    metrics = json.loads((root / "results" / "circles_tanh8" / "metrics.json").read_text())
    assert metrics["train_loss"] == float(shown["final-loss"])
    assert str(metrics["convergence_epoch"]) == shown["convergence-epoch"]


def test_1000_seeds_place_the_current_seed_on_the_convergence_curve(playground, page):
    root, url = playground
    page.goto(f"{url}/?{CIRCLES}&seed=2")
    page.click("#seeds")
    page.wait_for_selector("#seed-epoch", timeout=240_000)
    run_id = page.inner_text("#seeds-status").rsplit("run ", 1)[1].rstrip(")")
    replicated = client(root).get_run(run_id)
    assert replicated.data.params["trainer.replicates"] == "1000" and replicated.data.metrics["copies"] == 1000
    assert page.is_visible("#km")


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("lr=-1", "optimizer.learning_rate=-1 "),
        ("hidden=0:relu", "model.hidden.0.units=0 "),
        ("dataset=circles&noise=-1", "dataset.noise=-1 "),
        ("features=x1,x9", "model.features=['x1', 'x9'] "),
        ("epochs=ten", "trainer.epochs='ten' "),
    ],
)
def test_a_bad_link_shows_the_one_line_message_naming_its_value_and_trains_nothing(playground, page, query, named):
    root, url = playground
    before = len(playground_runs(root))
    page.goto(f"{url}/?{query}&play=1")
    page.wait_for_function("[...document.querySelectorAll('.error')].some(e => e.textContent.startsWith('error: '))")
    (message,) = [m for m in page.locator(".error").all_inner_texts() if m]
    assert "\n" not in message and message.startswith(f"error: {named}is not allowed: ")
    page.wait_for_timeout(500)
    assert len(playground_runs(root)) == before
    assert page.evaluate("window.playgroundStats.frames") == 0


def test_play_1_alone_trains_the_defaults_live(playground, page):
    root, url = playground
    page.goto(f"{url}/?play=1")
    page.wait_for_function("window.playgroundStats.done !== null", timeout=240_000)
    assert page.evaluate("window.playgroundStats.frames") >= 10
    run = client(root).get_run(page.inner_text("#mlflow-link"))
    assert run.data.params["model.hidden.0.units"] == "16" and run.data.params["trainer.epochs"] == "1000"
    assert str(int(run.data.metrics["final_convergence_epoch"])) == page.inner_text("#convergence-epoch")


def test_keyboard_steps_and_resets_a_try(playground, page):
    _, url = playground
    page.goto(f"{url}/?epochs=200")
    page.wait_for_function("document.getElementById('status').textContent === 'ready'", timeout=120_000)
    page.keyboard.press("s")  # one chunk, then paused
    page.wait_for_function("window.playgroundStats.frames >= 1")
    page.wait_for_function("document.getElementById('play').textContent.includes('Play')")
    page.keyboard.press("r")
    page.wait_for_function("document.getElementById('now-epoch').textContent === '0'")


@pytest.mark.parametrize("headers", [{"Host": "evil.example"}, {"Origin": "http://evil.example"}, {"Content-Type": "text/plain"}])
def test_requests_from_another_host_or_origin_are_refused(playground, headers):
    root, url = playground
    payload = json.dumps({"query": {}, "name": "from_elsewhere"}).encode()
    request = urllib.request.Request(f"{url}/api/save", payload, {"Content-Type": "application/json", **headers})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request)
    assert refused.value.code in (403, 415)
    assert not (root / "conf" / "experiment" / "from_elsewhere.yaml").exists()


@pytest.mark.parametrize("payload", [b"[1]", b"not json", b'{"query": ["lr"]}', b'{"query": {"lr": {"x": 1}}}'])
def test_a_body_that_is_not_the_controls_gets_a_one_line_error(playground, payload):
    _, url = playground
    request = urllib.request.Request(f"{url}/api/check", payload, {"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request)
    assert refused.value.code == 400
    message = json.loads(refused.value.read())["error"]
    assert message.startswith("error: ") and "\n" not in message


def test_another_host_needs_the_flag(playground):
    refused = subprocess.run(
        [sys.executable, "-m", "pipeline.playground.server", "--host", "0.0.0.0"],
        capture_output=True, text=True, env=os.environ | {"PYTHONPATH": str(playground[0] / "src")}, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        "error: --host='0.0.0.0' is not allowed: 127.0.0.1 or localhost (another host needs --allow-remote)"
    )


def test_the_page_is_served_whole_by_the_app_and_fits_1280x800_and_a_phone(playground, page):
    _, url = playground
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{url}/?{CIRCLES}")
    page.wait_for_function("document.getElementById('command').textContent.startsWith('pipeline-generate')")
    assert requested and all(r.startswith(url) for r in requested)  # no CDN: scripts, styles and fonts are the app's
    for box in ("#play", "#boundary", "#command", "#seeds", "#save"):  # all in the first screen at 1280x800
        assert page.locator(box).bounding_box()["y"] + page.locator(box).bounding_box()["height"] <= 800, box
    page.set_viewport_size({"width": 390, "height": 844})
    try:
        assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than a phone
        assert page.locator("#boundary").bounding_box()["width"] <= 390
    finally:
        page.set_viewport_size({"width": 1280, "height": 800})


def test_a_bad_control_value_shows_the_message_beside_it_and_play_trains_nothing(playground, page):
    root, url = playground
    page.goto(f"{url}/?{CIRCLES}")
    page.wait_for_function("document.getElementById('status').textContent === 'ready'", timeout=120_000)
    before = len(playground_runs(root))
    page.fill("#lr", "-1")
    page.dispatch_event("#lr", "change")
    beside = page.locator(".error[data-for~='lr']")
    beside.wait_for()
    assert beside.inner_text() == "error: optimizer.learning_rate=-1 is not allowed: a positive finite number"
    assert "lr=-1" in page.url  # the URL follows the controls
    page.click("#play")
    page.wait_for_timeout(1000)
    assert len(playground_runs(root)) == before and page.evaluate("window.playgroundStats.frames") == 0
