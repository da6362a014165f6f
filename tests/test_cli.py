"""The installed commands: what --help says, shell completion, where an ad-hoc run writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli

BIN = Path(sys.executable).parent

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("command", "summary"), [("train", "DVC stage `train`"), ("evaluate", "DVC stage `evaluate`")])
def test_help_says_what_the_command_does_and_how_to_enable_completion(command, summary):
    result = subprocess.run([BIN / f"pipeline-{command}", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    first = result.stdout.splitlines()[0]
    assert first.startswith(f"pipeline-{command} (or python -m pipeline.stages.{command}): {summary}")
    assert f'eval "$(pipeline-{command} -sc install=bash)"' in result.stdout
    assert (
        "experiment: circles_tanh4, circles_tanh4_heldout, xor_bias_numpy" in result.stdout
    )  # Hydra's list of config groups follows


@pytest.mark.parametrize(
    ("line", "expected"),
    [("pipeline-train experiment=xor_relu1", "experiment=xor_relu16x2"), ("pipeline-train trainer.epo", "trainer.epochs=")],
)
def test_bash_completion_offers_presets_and_keys(line, expected):
    env = os.environ | {"COMP_LINE": line, "COMP_POINT": str(len(line))}
    result = subprocess.run([BIN / "pipeline-train", "-sc", "query=bash"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0 and expected in result.stdout.split()


def test_an_ad_hoc_run_writes_its_own_folder_never_results(tmp_path):
    assert run_cli("generate", "dataset=xor", "paths.root=.", cwd=tmp_path).returncode == 0
    result = run_cli("train", "experiment=xor_relu16", "trainer.epochs=3", "tracking.enabled=false", "paths.root=.", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "runs" / "xor_relu16" / "model.keras").is_file() and not (tmp_path / "results").exists()
    ignored = subprocess.run(["git", "check-ignore", "-q", "runs/xor_relu16/model.keras"], cwd=Path(__file__).parents[1])
    assert ignored.returncode == 0  # git-ignored in the repository
