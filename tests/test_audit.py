"""The reliability audit (issue 36) as a table: each bad input is one `error:` line, exit status 2, nothing written.

A case damages a copy of a trained and evaluated root (or passes an override), runs a command's `main()` in this
process, and checks the exit status, the single line naming the problem, and that no file changed or appeared
(`outputs/`, `runs/` and Hydra's folders included).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import snapshot

from pipeline.stages import evaluate, generate, train

ARGS = ["experiment=xor_relu16", "paths.root=.", "paths.results=results", "tracking.enabled=false"]
ARGS += ["hydra/job_logging=none", "hydra/hydra_logging=none"]  # Hydra's logging setup, exited in-process, breaks pytest's


def drop_column(root: Path) -> None:
    csv = root / "data" / "xor.csv"
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join(",".join(line.split(",")[1:]) for line in lines) + "\n")  # x1 removed


def add_column(root: Path) -> None:
    csv = root / "data" / "xor.csv"
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join([lines[0].replace("x2,", "x2,x3,")] + [line.replace(",", ",0,", 1) for line in lines[1:]]) + "\n")


def wider_data(root: Path) -> None:
    """Data of 3 features whose record agrees: only the model's width is wrong."""
    add_column(root)
    record = json.loads((root / "data" / "xor.json").read_text())
    (root / "data" / "xor.json").write_text(json.dumps(record | {"features": ["x1", "x2", "x3"]}))


def data_folder(root: Path) -> None:
    (root / "data" / "xor.csv").unlink()
    (root / "data" / "xor.csv").mkdir()


def training_in_progress(root: Path) -> None:
    """A live process (this one's parent) staging a set for results/xor_relu16, as a training does."""
    import os
    import socket

    stage = root / "results" / ".staging" / "xor_relu16" / f"{socket.gethostname()}.{os.getppid()}.abc.tmp"
    (stage / "files").mkdir(parents=True)


def dvc_made_the_data(root: Path) -> None:
    (root / "dvc.lock").write_text("stages:\n  generate@xor:\n    outs:\n    - path: data/xor.csv\n")


def garbage_manifest(root: Path) -> None:
    commit = root / "results" / ".staging" / "xor_relu16" / "host.1.abc.commit"
    commit.mkdir(parents=True)
    (commit / "manifest.json").write_text("{garbage")


def other_snapshots(root: Path) -> None:
    import numpy as np

    np.savez(root / "results" / "xor_relu16" / "snapshots.npz", epoch0_w0=np.zeros((3, 16)), epoch0_w1=np.zeros(16))


def mismatched_npz(root: Path) -> None:
    """A numpy model (read before model.keras) whose layers do not chain: 2 -> 16, then 8 -> 1."""
    import numpy as np

    layers = {"W0": np.zeros((2, 16)), "b0": np.zeros(16), "W1": np.zeros((8, 1)), "b1": np.zeros(1)}
    np.savez(root / "results" / "xor_relu16" / "model.npz", activations=np.array(["relu", "sigmoid"]), **layers)


def nothing(root: Path) -> None:
    pass


LONG_NAME = "a" * 300
CASES = {  # id: (command, damage, extra overrides, what the line must say)
    "train: data column removed": (train, drop_column, [], "xor.csv: has 1 feature columns, but was generated with 2"),
    "train: data column added": (train, add_column, [], "xor.csv: has 3 feature columns, but was generated with 2"),
    "evaluate: data column removed": (evaluate, drop_column, [], "has 1 feature columns, but was generated with 2"),
    "evaluate: model of another width": (evaluate, wider_data, [], "model.keras: takes 2 features, the data 3"),
    "evaluate: while a training writes": (evaluate, training_in_progress, [], "xor_relu16: a training (process"),
    "evaluate: snapshots of another shape": (evaluate, other_snapshots, [], "snapshots.npz: epoch 0's weights do not fit"),
    "evaluate: a model.npz whose layers do not chain": (evaluate, mismatched_npz, [], "weights of mismatched shapes"),
    "train: data path is a folder": (train, data_folder, [], "xor.csv: a folder, not a data file"),
    "generate: data path is a folder": (generate, data_folder, [], "paths.data='./data' is not allowed"),
    "evaluate: a garbage staging manifest": (evaluate, garbage_manifest, [], "manifest.json: an unreadable record of a set"),
    "train: a file: store": (train, nothing, ["tracking.enabled=true", "tracking.uri=file:///tmp/mlruns"], "not a store MLflow"),
    "train: a garbage:// store": (train, nothing, ["tracking.enabled=true", "tracking.uri=garbage://x"], "not a store MLflow"),
    "train: an empty sweep": (train, nothing, ["-m", "trainer.seed=range(0)"], "a sweep of at least one value"),
    "train: joblib with 0 workers": (
        train,
        nothing,
        ["-m", "trainer.seed=0,1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=0"],
        "hydra.launcher.n_jobs='0' is not allowed",
    ),
    "train: an Optuna range outside the allowed values": (
        train,
        nothing,
        ["-m", "hparams_search=xor_optuna", "optimizer.learning_rate=interval(-1,0.1)"],
        "optimizer.learning_rate=-1.0 is not allowed: a positive finite number",
    ),
    "train: an output folder under /dev/null": (train, nothing, ["hydra.run.dir=/dev/null/out"], "/dev/null is a file"),
    "train: an output folder under /proc": (
        train,
        nothing,
        ["hydra.run.dir=/proc/out"],
        "hydra.run.dir='/proc/out' is not allowed",
    ),
    "train: a 300-character name": (train, nothing, [f"name={LONG_NAME}"], "name='aaaa"),
    "train: unset environment variable": (train, nothing, ["trainer.epochs=${oc.env:UNSET_42}"], "trainer.epochs="),
    "train: missing interpolation key": (train, nothing, ["trainer.epochs=${no.such}"], "'no.such' not found"),
    "train: self-reference": (train, nothing, ["trainer.epochs=${trainer.epochs}"], "Recursive interpolation"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_exit_2_and_nothing_written(case, complete, monkeypatch, refused):
    command, damage, overrides, message = CASES[case]
    root = complete[1].parent.parent
    damage(root)
    before = snapshot(root)
    monkeypatch.chdir(root)
    flags = [o for o in overrides if o.startswith("-")]  # Hydra's parser takes its flags before the overrides
    code, err = refused(command.main, *flags, *ARGS, *[o for o in overrides if o not in flags])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert snapshot(root) == before


def test_shell_generate_keeps_off_dvc_outputs(complete, monkeypatch, capsys):
    root = complete[1].parent.parent
    dvc_made_the_data(root)
    (root / "data" / "xor.csv").write_text("made by dvc repro\n")
    monkeypatch.chdir(root)
    monkeypatch.delenv("DVC_STAGE", raising=False)
    monkeypatch.setattr("sys.argv", ["pipeline-generate", "paths.root=.", "paths.results=./runs", "dataset=xor", *ARGS[-2:]])
    generate.main()
    assert (root / "data" / "xor.csv").read_text() == "made by dvc repro\n"
    assert (root / "runs" / "data" / "xor.csv").read_text().startswith("x1,x2,")
    assert "train on this one with paths.data=./runs/data" in capsys.readouterr().out
