"""DVC: the committed lock matches the code, each stage's deps are the code it runs, `dvc exp run -S` reruns one
experiment, `dvc plots show` draws every learning curve; pipelines run in temporary git repositories."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, import_graph

DATASETS = ["xor", "xor_bias", "circles", "moons", "spiral", "gauss", "xor_noisy"]


def dvc_env(cwd: Path) -> dict[str, str]:
    # The stages' `python` is this environment's; PYTHONPATH: they import the copy's package and read its conf/,
    # not the installed checkout's.
    return {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "PYTHONPATH": str(cwd / "src"),
    }


def dvc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "dvc", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=900, env=dvc_env(cwd))


def tracked_names(root: Path, experiment: str) -> list[str]:
    """The MLflow run names of `experiment` in the store under `root`, oldest first; its registered versions are
    checked to carry their run's final metrics."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    found = client.search_runs([client.get_experiment_by_name(experiment).experiment_id], order_by=["attributes.start_time"])
    for version in client.search_model_versions(f"name = '{experiment}'"):
        run = client.get_run(version.run_id)
        assert float(version.tags["final_train_loss"]) == run.data.metrics["final_train_loss"]
    return [run.info.run_name for run in found]


def pipeline_copy(root: Path, experiments: list[str], claims: bool = False) -> None:
    """A git repository at `root` holding this pipeline cut down to `experiments` (their datasets, train, evaluate),
    and with `claims` the report and the claims about them, measured over 20 seeds."""
    shutil.copytree(ROOT / "conf", root / "conf")
    shutil.copytree(ROOT / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__"))
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    for name in ("tutorial_reference", *([] if claims else ["report", "measure", "claims"])):
        del stages["stages"][name]
    if claims:
        kept = {f"results/claims/{name}/replicates.csv" for name in experiments}
        deps = stages["stages"]["claims"]["deps"]
        datasets = {
            f"data/{yaml.safe_load((ROOT / 'params.yaml').read_text())['tutorials'][n]['dataset']}.csv" for n in experiments
        }
        deps[:] = [d for d in deps if not d.startswith(("results/claims/", "reports/tutorial", "data/")) or d in kept | datasets]
        claims_cfg = yaml.safe_load((root / "conf" / "claims.yaml").read_text())
        claims_cfg["claims"] = [c for c in claims_cfg["claims"] if {c["experiment"], c.get("baseline")} <= {*experiments, None}]
        claims_cfg |= {"replicates": 20, "track": False}
        (root / "conf" / "claims.yaml").write_text(yaml.safe_dump(claims_cfg, sort_keys=False))
    for plot in stages["plots"]:
        (spec,) = plot.values()
        spec["y"] = {path: columns for path, columns in spec["y"].items() if path.split("/")[1] in experiments}
    (root / "dvc.yaml").write_text(yaml.safe_dump(stages, sort_keys=False))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["experiments"] = {name: params["experiments"][name] for name in experiments}
    params["datasets"] = sorted({spec["dataset"] for spec in params["experiments"].values()})
    params["tutorials"] = {name: spec for name, spec in params["tutorials"].items() if name in experiments}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / ".gitignore").write_text("mlflow.db\nmlartifacts/\n")
    for command in (["git", "init", "-q"], ["git", "config", "user.email", "t@t"], ["git", "config", "user.name", "t"]):
        subprocess.run(command, cwd=root, check=True)
    assert dvc("init", "-q", cwd=root).returncode == 0
    commit(root, "pipeline")


def commit(root: Path, message: str) -> None:
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-qm", message], cwd=root, check=True)


def ran(result: subprocess.CompletedProcess) -> set[str]:
    """The stages a `dvc repro` or `dvc exp run` ran."""
    return set(re.findall(r"Running stage '([^']+)'", result.stdout))


@pytest.mark.integration
def test_dvc_repro_generates_every_dataset_then_has_nothing_to_do(tmp_path):
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "conf", tmp_path / "conf")
    shutil.copytree(ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    assert dvc("init", "-q", cwd=tmp_path).returncode == 0

    first = dvc("repro", "generate", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    for name in DATASETS:
        assert (tmp_path / "data" / f"{name}.csv").stat().st_size > 0
        assert (tmp_path / "data" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    second = dvc("repro", "generate", cwd=tmp_path)
    assert second.returncode == 0 and "Running stage" not in second.stdout
    status = dvc("status", "generate", cwd=tmp_path)
    assert "up to date" in status.stdout


def test_a_new_training_run_is_evaluated_into_its_own_mlflow_run():
    # A model is byte-identical from run to run of one config; the run id (run.json) changes, so it is no DVC
    # output (the lock would change on every machine): evaluate instead reruns on everything train reruns on.
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    train, evaluate = stages["train"]["do"], stages["evaluate"]["do"]
    assert set(train["deps"]) <= set(evaluate["deps"]) and train["params"] == evaluate["params"]
    assert not [out for out in train["outs"] if str(out).endswith(("run.json", "timing.json"))]


@pytest.mark.integration
def test_the_committed_lock_matches_the_committed_code_and_configs():
    # On a fresh clone only outputs are missing (built by `dvc repro`); a modified dependency or param means
    # someone changed code or config without rerunning `dvc repro` and committing dvc.lock.
    result = dvc("status", "--json", cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    stale = {
        stage: entry["changed deps"]
        for stage, entries in json.loads(result.stdout or "{}").items()
        for entry in entries
        if isinstance(entry, dict) and any(change != "deleted" for change in entry.get("changed deps", {}).values())
    }
    assert not stale, f"run `dvc repro` and commit dvc.lock: {stale}"


def imported_modules(module: str) -> set[str]:
    """The pipeline's source files `module` imports, directly or not, at any depth (function-level imports too)."""
    modules, graph = import_graph()
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parents = [".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)]  # Python imports them first
        todo += [*graph[name], *parents]
    return {str(modules[name].relative_to(ROOT)) for name in seen}


# Imported only on paths the DVC stage never takes: train evaluates and plots multirun jobs and replicated runs.
NOT_RUN_BY_STAGE = {"train": {"src/pipeline/stages/evaluate.py"}, "measure": {"src/pipeline/stages/evaluate.py"}}
# The claims stage only judges the measured tables: the training code is its `measure` stages'.
NOT_RUN_BY_STAGE["claims"] = {"src/pipeline/stages/evaluate.py", "src/pipeline/stages/train.py", "src/pipeline/tracking"}
MODULE = {"measure": "claims"}  # stages that run another stage's module


@pytest.mark.parametrize("stage", ["generate", "train", "evaluate", "report", "measure", "claims"])
def test_each_stage_depends_on_the_code_it_runs_and_not_the_rest(stage):
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]
    deps = set((spec.get("do") or spec)["deps"])
    not_run = NOT_RUN_BY_STAGE.get(stage, set())
    needed = {m for m in imported_modules(f"pipeline.stages.{MODULE.get(stage, stage)}") if not m.startswith(tuple(not_run))}
    missing = {module for module in needed if module not in deps and not {str(p) for p in Path(module).parents} & deps}
    assert not missing, f"dvc.yaml stage {stage} lacks deps {missing}"
    code = {dep for dep in deps if dep.startswith("src/")}
    assert "src/pipeline" not in code and not code & not_run


@pytest.mark.integration
def test_dvc_exp_run_changes_one_experiment_and_shows_it_with_its_metrics_and_learning_curves(tmp_path):
    pipeline_copy(tmp_path, ["xor_relu16", "xor_relu32"])
    first = dvc("repro", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    assert ran(first) == {"generate@xor"} | {f"{s}@{e}" for s in ("train", "evaluate") for e in ("xor_relu16", "xor_relu32")}
    commit(tmp_path, "repro")
    preset = tmp_path / "conf" / "experiment" / "xor_relu16.yaml"
    before = preset.read_text()

    shell_env = dvc_env(tmp_path)
    shell = [sys.executable, "-m", "pipeline.stages.train", "experiment=xor_relu16", "trainer.epochs=300", "paths.root=."]
    assert subprocess.run(shell, cwd=tmp_path, env=shell_env, capture_output=True).returncode == 0
    run = dvc("exp", "run", "-n", "faster", "-S", "conf/experiment/xor_relu16.yaml:optimizer.learning_rate=0.02", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    names = tracked_names(tmp_path, "xor_relu16")  # the preset's run, a shell run, an experiment's: told apart
    assert names == ["xor_relu16", "xor_relu16 trainer.epochs=300", "xor_relu16 (dvc exp faster) optimizer.learning_rate=0.02"]
    assert ran(run) == {"train@xor_relu16", "evaluate@xor_relu16"}  # not xor_relu32, not the data
    changed = [line for line in preset.read_text().splitlines() if line not in before.splitlines()]
    assert changed == ["  learning_rate: 0.02"]  # DVC rewrote the one value, the file's layout kept

    shown = json.loads(dvc("exp", "show", "--json", cwd=tmp_path).stdout)
    experiment = next(e for e in shown if e["rev"] != "workspace")["experiments"][0]["revs"][0]["data"]
    params = experiment["params"]["conf/experiment/xor_relu16.yaml"]["data"]
    assert params["optimizer"]["learning_rate"] == 0.02
    assert experiment["params"]["conf/experiment/xor_relu32.yaml"]["data"]["optimizer"]["learning_rate"] == 0.001
    metrics = experiment["metrics"]["results/xor_relu16/metrics.json"]["data"]
    assert metrics["train_accuracy"] == 1.0 and metrics["convergence_epoch"] < 202  # faster than at lr 0.001
    diff = dvc("params", "diff", cwd=tmp_path)
    assert "optimizer.learning_rate" in diff.stdout and "0.02" in diff.stdout

    plots = json.loads(dvc("plots", "show", "--json", cwd=tmp_path).stdout)["data"]
    for name in ("loss", "accuracy"):
        (plot,) = plots[name]
        rows = plot["content"]["data"]["values"]
        # DVC names a series `file` when each file gives one column, `file::column` otherwise
        files = {row.get("filename") or row["filename::field"].split("::")[0] for row in rows}
        assert files == {f"{e}/history.csv" for e in ("xor_relu16", "xor_relu32")}
        assert len(rows) == 2000 and all(float(row[name]) >= 0 for row in rows)  # 1000 epochs of each
    assert not [key for key in plots if key.endswith("history.csv")]  # drawn once, in the loss and accuracy plots


def claim_rows(root: Path) -> list[str]:
    return [line for line in (root / "reports" / "claims.md").read_text().splitlines() if line.startswith("| 1 |")]


@pytest.mark.integration
def test_an_edited_preset_reruns_its_experiment_and_the_reports_and_the_claims_keep_the_tutorials_setup(tmp_path):
    pipeline_copy(tmp_path, ["xor_relu16"], claims=True)
    first = dvc("repro", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    assert ran(first) == {"generate@xor", "train@xor_relu16", "evaluate@xor_relu16", "report", "measure@xor_relu16", "claims"}
    commit(tmp_path, "repro")
    rows = claim_rows(tmp_path)
    assert len(rows) == 3  # claim 1's three figures
    preset = tmp_path / "conf" / "experiment" / "xor_relu16.yaml"
    preset.write_text(preset.read_text().replace("learning_rate: 0.001", "learning_rate: 0.01"))
    dry = dvc("repro", "--dry", cwd=tmp_path)
    # not measure@xor_relu16: the tutorial's setup is pinned (report: once evaluate's row has changed, unseen by --dry)
    assert (
        {"train@xor_relu16", "evaluate@xor_relu16", "claims"}
        <= ran(dry)
        <= {"train@xor_relu16", "evaluate@xor_relu16", "report", "claims"}
    )
    subprocess.run(["git", "checkout", "conf"], cwd=tmp_path, check=True)

    run = dvc("exp", "run", "-S", "conf/experiment/xor_relu16.yaml:optimizer.learning_rate=0.01", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert ran(run) == {"train@xor_relu16", "evaluate@xor_relu16", "report", "claims"}
    assert claim_rows(tmp_path) == rows  # judged on the tutorial's setup, byte for byte
    note = "Claim 1: the experiment `xor_relu16` now differs from its tutorial's setup "
    note += "(optimizer.learning_rate: 0.01 (tutorial: 0.001)); the claim is judged on the tutorial's setup"
    assert note in (tmp_path / "reports" / "claims.md").read_text()
