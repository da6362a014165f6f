"""DVC stage `claims`: each tutorial anecdote against 2000 seeds; reports/claims.md, claims.png, claims.json.

Every experiment a claim names is trained once as a replicated run (copies seeded seed..seed+N-1, so
two experiments' copy r share a seed and compare pairwise), then each claim is judged on its table.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from omegaconf import DictConfig

from pipeline import files
from pipeline.config.overrides import compose_config, resolved
from pipeline.core import convergence
from pipeline.core.verdicts import KINDS, interval, judge
from pipeline.errors import ConfigError
from pipeline.stages import hydra_app


def measure(cfg: dict[str, Any], experiment: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Train `experiment` as cfg['replicates'] copies (in this process); return its per-copy table and metrics."""
    from pipeline.stages import train
    from pipeline.stages.train import train_replicates

    overrides = [f"experiment={experiment}", f"trainer.replicates={cfg['replicates']}", f"trainer.seed={cfg['seed']}"]
    overrides += [f"paths.root={cfg['paths']['root']}", f"tracking.enabled={str(cfg['track']).lower()}"]
    overrides += [
        "tracking.experiment_name=claims",  # apart from the experiment's training runs and their charts
        "tracking.description='The claims stage: each experiment as seeded copies, one run each (reports/claims.md).'",
    ]
    train_cfg = compose_config(overrides)
    dataset = train.check(train_cfg)
    out = Path(cfg["paths"]["results"]) / experiment
    with train.tracked_run(train_cfg, overrides=[]) as run:  # named by the experiment alone, not the claims' overrides
        metrics = train_replicates(resolved(train_cfg), dataset, out, run)
    return pd.read_csv(out / "replicates.csv"), metrics | {"epochs": train_cfg.trainer.epochs}


def markdown(
    cfg: dict[str, Any],
    rows: list[dict[str, Any]],
    claims: list[dict[str, Any]],
    metrics: dict[str, dict[str, Any]],
    seconds: float,
) -> str:
    """reports/claims.md."""
    rule, labels = cfg["verdict"], [part["seeds"] for part in rows[0]["blocks"]]
    agree = all(row["blocks_agree"] for row in rows)
    lines = [
        "# The tutorials' claims, measured",
        "",
        f"Each experiment trained as {cfg['replicates']} copies seeded {cfg['seed']}..{cfg['seed'] + cfg['replicates'] - 1} "
        f"(`python -m pipeline.stages.claims`, {seconds:.0f} s); copy r starts from the weights the tutorial's code gets "
        "after `keras.utils.set_random_seed(r)` (`np.random.seed(r)` for the numpy net). A copy that never reaches "
        "100% training accuracy is censored at the last epoch, never dropped; epochs are Kaplan-Meier median [quartiles].",
        "",
        f"**Verdict rule.** Every share comes with its 95% Wilson interval. A claim about one net is *optimistic* "
        f"(a lucky seed, not a typical one) when the whole interval lies below {rule['consistent']:.0%} of seeds, "
        f"*contradicted* when it lies below {rule['contradicted']:.0%}, else *consistent*. A comparison of two nets is "
        "judged on paired seeds: *consistent* when the interval of the share of seeds where it holds lies above 50%, "
        "*contradicted* when below, *optimistic* when it straddles 50%.",
        "",
        f"**Stability.** The verdict over all seeds is shown beside the verdicts of seeds {' and '.join(labels)} "
        "judged apart: "
        + ("they agree for every claim." if agree else "**they disagree for some claims (marked): those are not settled.**"),
        "",
        f"| claim | tutorial | figure | statement | measured | holds for (95% CI) | {' | '.join('seeds ' + x for x in labels)} "
        "| verdict |",
        "|---|---|---|---|---|---|" + "---|" * len(labels) + "---|",
    ]
    text = {c["id"]: c["claim"] for c in claims}
    for row in rows:
        share = interval(row)
        if "difference_ci" in row:
            share += (
                f"; median difference {row['median_difference']:+.0f} epochs "
                f"(95% CI {row['difference_ci'][0]:+.0f} to {row['difference_ci'][1]:+.0f}); "
                f"100% by epoch {row['figure']}: {row['figure_share']:.1%} of seeds"
            )
        parts = " | ".join(f"{interval(p)} {p['verdict']}" for p in row["blocks"])
        settled = "" if row["blocks_agree"] else " (blocks disagree)"
        lines.append(
            f"| {row['claim']} | {text[row['claim']]} | {row['figure']} | {row['statement']} | "
            f"{row['measured']} | {share} | {parts} | **{row['verdict']}**{settled} |"
        )
    lines += [
        "",
        "Training seconds per experiment (all copies at once): "
        + ", ".join(f"`{name}` {m['train_seconds']:.2f}" for name, m in metrics.items())
        + ".",
        "",
        "![claims](claims.png)",
        "",
    ]
    return "\n".join(lines)


def picture(
    cfg: dict[str, Any],
    claims: list[dict[str, Any]],
    tables: dict[str, pd.DataFrame],
    metrics: dict[str, dict[str, Any]],
    path: Path,
) -> None:
    """reports/claims.png: one panel per claim, the tutorial's figure marked on the measured distribution."""
    from pipeline.core import plots

    fig, axes = plots.plt.subplots(2, 3, figsize=(18, 9))
    for ax, claim in zip(axes.ravel(), claims):
        table, epochs = tables[claim["experiment"]], metrics[claim["experiment"]]["epochs"]
        if claim["kind"] in ("converged_by", "faster_than", "slower_than"):
            names = [claim["experiment"]] + ([claim["baseline"]] if "baseline" in claim else [])
            for name in names:
                t = tables[name]
                km = convergence.kaplan_meier(t["observed_epochs"].to_numpy(), t["converged"].to_numpy())
                plots.survival_curve(ax, km, epochs, name)
            for figure in claim["figures"]:
                ax.axvline(figure, color="tab:red", linestyle=":", label=f"tutorial: epoch {figure}")
            ax.set_xscale("symlog", linthresh=10)
        elif claim["kind"] == "outputs_near":
            outputs = table[[c for c in table.columns if str(c).startswith("output_")]]
            ax.boxplot(outputs.to_numpy(), tick_labels=[f"row {i}" for i in range(outputs.shape[1])])
            ax.scatter(range(1, outputs.shape[1] + 1), claim["figures"], color="tab:red", zorder=3, label="tutorial")
            ax.set(ylabel="final output")
        elif claim["kind"] == "loss_at_most":
            loss = table["train_loss"]
            ax.hist(loss, bins=np.geomspace(loss.min(), loss.max(), 40), color="tab:purple")
            ax.axvline(claim["figures"][0], color="tab:red", linestyle=":", label="tutorial")
            ax.set(xscale="log", xlabel="final training loss", ylabel="seeds")
        elif claim["kind"] == "stable_from":
            stable = table["stable_epoch"].replace(0, epochs + 1)
            ax.hist(stable, bins=np.arange(0.5, epochs + 2.5), color="tab:green")
            ax.axvline(claim["figures"][0], color="tab:red", linestyle=":", label="tutorial")
            ax.set(xlabel=f"epoch from which 100% holds ({epochs + 1} = not at the end)", ylabel="seeds")
        ax.set_title(f"claim {claim['id']}: {claim['experiment']}", fontsize=10)
        ax.legend(fontsize=8)
    plots.save_figure(fig, path)


def check(cfg: dict[str, Any]) -> None:
    """Reject a malformed claims config before anything trains."""
    if not isinstance(cfg.get("replicates"), int) or cfg["replicates"] < 2:
        raise ConfigError("replicates", cfg.get("replicates"), "an integer >= 2")
    if not isinstance(cfg.get("blocks"), int) or not 1 <= cfg["blocks"] <= cfg["replicates"] // 2:
        raise ConfigError("blocks", cfg.get("blocks"), f"an integer from 1 to replicates/2 ({cfg['replicates'] // 2})")
    for i, claim in enumerate(cfg["claims"]):
        if claim.get("kind") not in KINDS:
            raise ConfigError(f"claims.{i}.kind", claim.get("kind"), f"one of {', '.join(KINDS)}")
        for j, kind in enumerate(claim.get("stricter", [])):
            if kind not in ("converged_by", "stable_from", "loss_at_most"):
                raise ConfigError(f"claims.{i}.stricter.{j}", kind, "one of converged_by, stable_from, loss_at_most")
        if claim["kind"] in ("faster_than", "slower_than") and "baseline" not in claim:
            raise ConfigError(f"claims.{i}.baseline", None, "the experiment this claim compares with")


def claims_metrics(rows: list[dict[str, Any]]) -> dict[str, str]:
    """DVC metrics, one column per claim (plus its figure where it has several): `claim1_epoch54: optimistic 23.3%`."""
    stated = [r for r in rows if r["reading"] == "as stated"]
    per_claim = pd.Series([r["claim"] for r in stated]).value_counts()

    def key(r: dict[str, Any]) -> str:
        figure = f"_epoch{r['figure']}" if per_claim[r["claim"]] > 1 else ""
        return f"claim{r['claim']}{figure}" + ("" if r["reading"] == "as stated" else f"_{r['reading']}")

    return {key(r): f"{r['verdict']} {r['share']:.1%}" for r in rows}


def run(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Measure every experiment the claims name, judge them, write the report; return the rows."""
    check(cfg)
    start = time.perf_counter()
    names = list(dict.fromkeys(n for c in cfg["claims"] for n in (c.get("baseline"), c["experiment"]) if n))
    tables, metrics = {}, {}
    for name in names:
        tables[name], metrics[name] = measure(cfg, name)
    path = Path(cfg["paths"]["tutorial_reference"])  # the tutorial code's own epoch-1 accuracies, where measured
    reference = pd.read_csv(path) if path.is_file() else None
    rows = [row for claim in cfg["claims"] for row in judge(claim, tables, metrics, cfg, reference)]
    reports = Path(cfg["paths"]["reports"])
    picture(cfg, cfg["claims"], tables, metrics, reports / "claims.png")
    seconds = time.perf_counter() - start
    files.write_text(reports / "claims.md", markdown(cfg, rows, cfg["claims"], metrics, seconds))
    files.write_json(reports / "claims.json", claims_metrics(rows))
    for row in rows:
        blocks_text = ", ".join(f"{p['seeds']}: {p['verdict']}" for p in row["blocks"])
        label = f"claim {row['claim']} ({row['figure']}, {row['reading']})"
        print(f"{label}: holds for {row['share']:.1%} -> {row['verdict']} ({blocks_text})")
    return rows


def task(cfg: DictConfig) -> list[dict[str, Any]]:
    """Hydra task: judge every claim of conf/claims.yaml."""
    return run(resolved(cfg))


main = hydra_app(task, lambda cfg: check(resolved(cfg)), config_name="claims")

if __name__ == "__main__":
    main()
