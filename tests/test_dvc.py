"""`dvc repro` of the generate stages in a temporary git repository."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

DATASETS = ["xor", "xor_bias", "circles", "moons", "spiral", "gauss", "xor_noisy"]


def dvc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
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
    # The numpy engine's weights file is byte-identical from run to run; the run id is what changes.
    import yaml

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert "results/${key}/run.json" in stages["evaluate"]["do"]["deps"]
    assert "results/${key}/run.json" in stages["train"]["do"]["outs"]
