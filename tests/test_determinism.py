"""Same config and seed, two fresh processes: byte-identical metrics, history and model files, identical weights."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import compose_config, run_cli

from pipeline.stages.generate import generate

EXPERIMENTS = "xor_relu16,xor_relu16x2,xor_relu32,xor_bias_sigmoid_sgd,xor_bias_numpy,circles_tanh4"

pytestmark = pytest.mark.integration


def weights(folder):
    if (folder / "model.npz").exists():
        with np.load(folder / "model.npz") as archive:
            return [archive[k] for k in sorted(archive.files) if k != "activations"]
    import keras

    return keras.saving.load_model(folder / "model.keras", safe_mode=True).get_weights()


def run_twice(tmp_path, *args, second_env: dict | None = None):
    """Run `python -m pipeline.stages.train args` in two fresh folders, the second with `second_env`; return their job folders."""
    outputs = []
    for side in ("a", "b"):
        root = tmp_path / side
        root.mkdir()
        for dataset in ("xor", "xor_bias", "circles"):  # in this process: what must match is training's
            cfg = compose_config(root, f"dataset={dataset}")
            generate(dict(cfg.dataset), cfg.paths.data)
        env = second_env if side == "b" else None
        result = run_cli(
            "train",
            *args,
            "tracking.enabled=false",
            "evaluate_multirun_jobs=false",
            "paths.root=.",
            cwd=root,
            env=env,
            timeout=900,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        outputs.append(sorted((p.parent for p in root.rglob("metrics.json")), key=lambda p: str(p.relative_to(root))))
    return outputs


def assert_identical(first, second):
    assert len(first) == len(second) > 0
    for a, b in zip(first, second):
        model = next(p.name for p in a.iterdir() if p.name in ("model.keras", "model.npz"))
        for name in ("metrics.json", "history.csv", "snapshots.npz", model):  # files too: DVC records their hashes
            assert (a / name).read_bytes() == (b / name).read_bytes(), f"{a / name} differs"
        for wa, wb in zip(weights(a), weights(b), strict=True):
            np.testing.assert_array_equal(wa, wb)


def test_every_named_experiment_is_bitwise_reproducible_across_processes(tmp_path):
    first, second = run_twice(tmp_path, "-m", f"experiment={EXPERIMENTS}")
    assert len(first) == 6
    assert_identical(first, second)


def test_fit_engine_with_shuffled_minibatches_is_reproducible_across_processes(tmp_path):
    first, second = run_twice(tmp_path, "experiment=circles_tanh4", "trainer.engine=fit", "trainer.epochs=3")
    assert_identical(first, second)


def test_one_tensorflow_thread_gives_the_same_numbers(tmp_path):
    # What a job of a parallel sweep gets (sweeps.ThreadsPerJob) must not change its results.
    first, second = run_twice(
        tmp_path,
        "-m",
        "experiment=xor_relu16,circles_tanh4",
        "trainer.engine=compiled,fit",
        "trainer.epochs=10",
        second_env={"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"},
    )
    assert len(first) == 4
    assert_identical(first, second)
