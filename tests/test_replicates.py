"""Replicated training: copy r is the standalone run with seed + r; convergence statistics respect censoring."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli
from omegaconf import OmegaConf

from pipeline.core import convergence, data


def standalone_and_replicated(cfg, copies: int):
    """Per-epoch losses of `copies` standalone runs (seeds s, s+1, ...) and of one replicated run."""
    from pipeline.core import keras_mlp as models
    from pipeline.core.engines.compiled import StackedMLP
    from pipeline.stages.train import fit_replicates
    from pipeline.stages.train import fit_model

    plain = OmegaConf.to_container(cfg, resolve=True)
    dataset = data.load(data.csv_path(plain))
    seed = plain["trainer"]["seed"]
    standalone = []
    for r in range(copies):
        one = plain | {"trainer": plain["trainer"] | {"seed": seed + r, "snapshots": 0}}
        model, history = fit_model(one, dataset)
        start = models.seeded_model(plain["model"], dataset.n_features, seed + r).get_weights()
        standalone.append((start, history.columns))
    stacked = StackedMLP(plain["model"], dataset.n_features, seed + np.arange(copies))
    replicated = fit_replicates(plain | {"trainer": plain["trainer"] | {"replicates": copies}}, dataset)
    return standalone, [v.numpy() for v in stacked.variables], replicated


@pytest.mark.parametrize("experiment, copies, bitwise", [("xor_relu16", 6, True), ("circles_tanh4", 4, False)])
def test_copy_r_is_the_standalone_run_with_seed_plus_r(make_config, experiment, copies, bitwise):
    cfg = make_config(f"experiment={experiment}", "trainer.seed=3")
    standalone, start, replicated = standalone_and_replicated(cfg, copies)
    assert replicated.epochs_run == cfg.trainer.epochs
    for r, (weights, columns) in enumerate(standalone):
        for stacked, single in zip(start, weights):
            np.testing.assert_array_equal(stacked[r], single)  # same initial weights
        for name, values in columns.items():
            if not values:
                continue
            if bitwise:  # full batch: bit for bit (the stacked sigmoid as engines/exact_sigmoid.py computes it)
                np.testing.assert_array_equal(replicated.columns[name][:, r], np.float32(values), err_msg=name)
            else:  # mini-batches: the stacked loss is summed in another order; agree to 1e-5 relative
                np.testing.assert_allclose(replicated.columns[name][:, r], values, rtol=1e-5, atol=0, err_msg=name)


def test_numpy_engine_copies_match_standalone_numpy_runs(make_config):
    cfg = make_config("experiment=xor_bias_numpy", "trainer.epochs=300")
    standalone, _, replicated = standalone_and_replicated(cfg, 3)
    for r, (_, columns) in enumerate(standalone):
        np.testing.assert_allclose(replicated.columns["loss"][:, r], columns["loss"], rtol=1e-6)


def test_censored_copies_are_kept_and_quartiles_follow_kaplan_meier():
    # 4 copies over 10 epochs: converge at 2 and 5, one never, one diverges at epoch 4 before converging
    accuracy = np.full((10, 4), 0.75)
    accuracy[1:, 0] = 1.0
    accuracy[4:, 1] = 1.0
    accuracy[4:, 3] = 1.0  # after its divergence: not counted
    epoch, converged = convergence.convergence_epochs(accuracy, np.array([0, 0, 0, 4]))
    assert epoch.tolist() == [2, 5, 10, 4] and converged.tolist() == [True, True, False, False]
    result = convergence.summary(epoch, converged)
    # Kaplan-Meier: S(2) = 3/4, the copy censored at 4 leaves 2 at risk, S(5) = 3/4 * 1/2 = 3/8
    assert result["converged_share"] == 0.5
    assert result["convergence_q25"] == 2 and result["convergence_median"] == 5 and result["convergence_q75"] is None
    assert convergence.stable_epochs(accuracy).tolist() == [2, 5, 0, 5]


def test_no_copy_converged_gives_no_quantiles():
    epoch, converged = convergence.convergence_epochs(np.zeros((5, 3)), np.zeros(3, dtype=int))
    assert convergence.summary(epoch, converged)["convergence_median"] is None
    assert epoch.tolist() == [5, 5, 5]


@pytest.mark.integration
def test_replicated_cli_run_writes_statistics_and_logs_them(tmp_path, make_config):
    make_config("dataset=xor")
    uri = f"sqlite:///{tmp_path}/mlflow.db"  # an earlier in-process sweep may have exported another store
    result = run_cli(
        "train",
        "experiment=xor_relu16",
        "trainer.replicates=50",
        "trainer.epochs=300",
        f"paths.root={tmp_path}",
        cwd=tmp_path,
        env={"MLFLOW_TRACKING_URI": uri},
    )
    assert result.returncode == 0, result.stderr
    out = tmp_path / "runs" / "xor_relu16"  # an ad-hoc run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["copies"] == 50 and 0 < metrics["converged_share"] <= 1
    table = pd.read_csv(out / "replicates.csv")
    assert len(table) == 50 and table["seed"].tolist() == list(range(50))
    assert (out / "plots" / "convergence.png").stat().st_size > 10_000
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    run = client.get_run(json.loads((out / "run.json").read_text())["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["replicates"] == "50"
    assert run.data.metrics["converged_share"] == metrics["converged_share"]
    assert len(client.get_metric_history(run.info.run_id, "converged_share")) == 300
    artifacts = {a.path for folder in ("plots", "results") for a in client.list_artifacts(run.info.run_id, folder)}
    assert {"plots/convergence.png", "results/replicates.csv", "results/weights.npz"} <= artifacts


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["trainer.replicates=0"], "trainer.replicates"),
        (["trainer.replicates=4", "trainer.engine=fit"], "trainer.replicates"),
    ],
)
def test_bad_replicate_settings_are_one_line_errors(tmp_path, make_config, overrides, key, refused):
    from pipeline.stages import train

    make_config("dataset=xor")
    code, error = refused(train.main, "experiment=xor_relu16", *overrides, f"paths.root={tmp_path}")
    error = error.strip()
    assert code == 2 and error.startswith(f"error: {key}=")
    assert len(error.splitlines()) == 1
    assert not (tmp_path / "runs").exists()


@pytest.mark.integration
def test_claims_stage_judges_all_six_claims(tmp_path, make_config):
    from pipeline.config.overrides import compose_config, resolved
    from pipeline.stages import claims

    for dataset in ("xor", "xor_bias", "circles"):
        make_config(f"dataset={dataset}")
    cfg = resolved(compose_config(["replicates=12", f"paths.root={tmp_path}", "track=false"], config_name="claims"))
    for setup in claims.setups(cfg):  # the DVC stages measure@<setup>, in this process
        claims.measure(cfg, setup)
    result = run_cli("claims", "replicates=12", f"paths.root={tmp_path}", "track=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = (tmp_path / "reports" / "claims.md").read_text()
    plain = [line for line in report.splitlines() if line.startswith("- **Claim ")]
    assert len(plain) == 6 and all(" The tutorial said: " in line and " For a learner: " in line for line in plain)
    assert "Every experiment named here matches its tutorial's setup" in report and " s)" not in report  # no seconds
    rows = [line for line in report.splitlines() if line.startswith("| ") and not line.startswith("| claim")]
    assert sorted({row.split("|")[1].strip() for row in rows}) == ["1", "2", "3", "4", "5", "6"]
    assert all(any(f"**{word}**" in row for word in ("consistent", "optimistic", "contradicted")) for row in rows)
    assert "95% CI" in report and (tmp_path / "reports" / "claims.png").stat().st_size > 20_000
    assert "| seeds 0-5 | seeds 6-11 | verdict |" in report  # each verdict beside those of two blocks of seeds
    assert "stricter reading: 100% from epoch 5 to the end" in report  # claim 6 as stated, then stricter
    claims = json.loads((tmp_path / "reports" / "claims.json").read_text())  # DVC metrics: one column per claim
    expected = {"claim1_epoch54", "claim1_epoch55", "claim1_epoch169", "claim6_stricter"} | {f"claim{i}" for i in range(2, 7)}
    assert set(claims) == expected
    for value in claims.values():
        verdict, share = value.split()
        assert verdict in ("consistent", "optimistic", "contradicted") and 0 <= float(share.rstrip("%")) <= 100


def test_unknown_claim_kind_is_a_one_line_error(tmp_path, refused):
    from pipeline.stages import claims

    code, err = refused(claims.main, "claims.0.kind=luckiest", f"paths.root={tmp_path}")
    assert code == 2 and err.strip() == (
        "error: claims.0.kind='luckiest' is not allowed: one of "
        + ", ".join(("converged_by", "faster_than", "slower_than", "outputs_near", "loss_at_most", "stable_from"))
    )
    assert not (tmp_path / "reports").exists()


@pytest.mark.parametrize(
    "hits, expected",
    [(233, "consistent"), (256, "consistent"), (200, "optimistic"), (8, "optimistic"), (1, "contradicted")],
)
def test_a_single_net_verdict_uses_the_95_percent_interval_of_its_share(hits, expected):
    from pipeline.core.verdicts import judged

    holds = pd.Series(np.arange(2000) % 1000 < hits)  # the same share in seeds 0-999 and 1000-1999
    result = judged(holds, pd.Series(np.arange(2000)), {"consistent": 0.25, "contradicted": 0.01}, 2, paired_rule=False)
    low, high = result["share_ci"]
    assert low < hits / 1000 < high and result["verdict"] == expected
    assert [part["seeds"] for part in result["blocks"]] == ["0-999", "1000-1999"]
    assert result["blocks_agree"] and all(part["verdict"] == expected for part in result["blocks"])


def test_blocks_that_disagree_are_marked():
    from pipeline.core.verdicts import judged

    holds = pd.Series(np.r_[np.arange(1000) < 400, np.arange(1000) < 100])  # 40% in seeds 0-999, 10% after
    result = judged(holds, pd.Series(np.arange(2000)), {"consistent": 0.25, "contradicted": 0.01}, 2, paired_rule=False)
    assert [part["verdict"] for part in result["blocks"]] == ["consistent", "optimistic"] and not result["blocks_agree"]
