"""DVC stage `claims`: each tutorial anecdote against 2000 seeds; reports/claims.md, claims.png, claims.json.

Every experiment a claim names is trained once as a replicated run (copies seeded seed..seed+N-1, so
two experiments' copy r share a seed and compare pairwise), then each claim is judged on its table.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from pipeline import files
from pipeline.config.overrides import compose_config, resolved
from pipeline.core import convergence
from pipeline.errors import ConfigError, PipelineError
from pipeline.stages import exit_with, raise_on_sigterm, skip_final_collection

KINDS = ("converged_by", "faster_than", "slower_than", "outputs_near", "loss_at_most", "stable_from")


def measure(cfg: dict[str, Any], experiment: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Train `experiment` as cfg['replicates'] copies (in this process); return its per-copy table and metrics."""
    from pipeline.stages import train
    from pipeline.stages.replicates import train_replicates

    overrides = [
        f"experiment={experiment}",
        f"trainer.replicates={cfg['replicates']}",
        f"trainer.seed={cfg['seed']}",
        f"paths.root={cfg['paths']['root']}",
        f"tracking.enabled={str(cfg['track']).lower()}",
        "tracking.experiment_name=claims",  # apart from the experiment's training runs and their charts
        "tracking.description='The claims stage: each experiment as seeded copies, one run each (reports/claims.md).'",
    ]
    train_cfg = compose_config(overrides)
    dataset = train.check(train_cfg)
    out = Path(cfg["paths"]["results"]) / experiment
    with train.tracked_run(train_cfg) as run:
        metrics = train_replicates(resolved(train_cfg), dataset, out, run)
    return pd.read_csv(out / "replicates.csv"), metrics | {"epochs": train_cfg.trainer.epochs}


def epochs_or_later(table: pd.DataFrame, epochs: int) -> np.ndarray:
    """Convergence epoch per seed, epochs + 1 for a censored copy (it converges later, if ever)."""
    return np.where(table["converged"], table["convergence_epoch"], epochs + 1)


def km_text(metrics: dict[str, Any]) -> str:
    """`97 [56-161], 99.3% converged` (Kaplan-Meier median [IQR]; '>N' where not reached)."""

    def show(value):
        return str(value) if value is not None else f">{metrics['epochs']}"

    return (
        f"epoch {show(metrics['convergence_median'])} [{show(metrics['convergence_q25'])}-"
        f"{show(metrics['convergence_q75'])}], {metrics['converged_share']:.1%} converged"
    )


def quartiles(values: pd.Series, fmt: str = "{:.3g}") -> str:
    q25, q50, q75 = values.quantile([0.25, 0.5, 0.75])
    return f"{fmt.format(q50)} [{fmt.format(q25)}-{fmt.format(q75)}]"


def wilson(holds: pd.Series) -> tuple[float, float]:
    """The 95% Wilson interval of the share of seeds where a statement holds."""
    ci = stats.binomtest(int(holds.sum()), len(holds)).proportion_ci(method="wilson")
    return round(float(ci.low), 4), round(float(ci.high), 4)


def verdict(low: float, high: float, rule: dict[str, float]) -> str:
    """One net: optimistic when the whole 95% interval lies below rule.consistent, contradicted when below
    rule.contradicted, else consistent (the seeds do not show the figure to be atypical)."""
    if high < rule["contradicted"]:
        return "contradicted"
    return "optimistic" if high < rule["consistent"] else "consistent"


def paired_verdict(low: float, high: float) -> str:
    """consistent if the 95% CI of the share lies above 1/2, contradicted if below, optimistic if it spans 1/2."""
    return "consistent" if low > 0.5 else "contradicted" if high < 0.5 else "optimistic"


def blocks(seeds: pd.Series, count: int) -> list[tuple[str, np.ndarray]]:
    """`count` equal runs of consecutive seeds: ("0-999", mask), ("1000-1999", mask), ..."""
    edges = np.linspace(seeds.min(), seeds.max() + 1, count + 1).round().astype(int)
    return [(f"{lo}-{hi - 1}", ((seeds >= lo) & (seeds < hi)).to_numpy()) for lo, hi in zip(edges[:-1], edges[1:])]


def judged(holds: pd.Series, seeds: pd.Series, rule: dict[str, float], count: int, paired_rule: bool) -> dict[str, Any]:
    """Share, 95% interval and verdict over all seeds and over each block of seeds; whether the blocks agree."""

    def one(mask: pd.Series) -> dict[str, Any]:
        low, high = wilson(mask)
        word = paired_verdict(low, high) if paired_rule else verdict(low, high, rule)
        return {"share": float(mask.mean()), "share_ci": (low, high), "verdict": word}

    every = one(holds)
    parts = [{"seeds": label} | one(holds[mask]) for label, mask in blocks(seeds, count)]
    return every | {"blocks": parts, "blocks_agree": len({part["verdict"] for part in parts}) == 1}


def epoch_one_text(claim: dict[str, Any], table: pd.DataFrame, reference: pd.DataFrame | None) -> str:
    """Epoch-1 accuracy against the tutorial's figure and, where measured, the tutorial code's own runs (KS test)."""
    text = f"after epoch 1: {quartiles(table['accuracy_epoch_1'], '{:.1%}')} (tutorial {claim['first_epoch_accuracy']:.1%})"
    if reference is not None:
        test = stats.ks_2samp(table["accuracy_epoch_1"], reference["accuracy_epoch_1"])
        text += (
            f"; the tutorial's code over seeds 0-{len(reference) - 1}: "
            f"{quartiles(reference['accuracy_epoch_1'], '{:.1%}')}, two-sample KS p = {test.pvalue:.2f}"
        )
    return text


def judge(
    claim: dict[str, Any],
    tables: dict[str, pd.DataFrame],
    metrics: dict[str, dict[str, Any]],
    cfg: dict[str, Any],
    reference: pd.DataFrame | None = None,
) -> list[dict[str, Any]]:
    """One row per tutorial figure and reading: figure, measured distribution, share of seeds (95% CI), verdict."""
    table, m = tables[claim["experiment"]], metrics[claim["experiment"]]
    rule, count, epochs = cfg["verdict"], cfg["blocks"], m["epochs"]
    rows = []
    readings = [(claim["kind"], "as stated")] + [(kind, "stricter") for kind in claim.get("stricter", [])]
    for kind, reading in readings:
        for figure in [claim["figures"]] if kind == "outputs_near" else claim["figures"]:  # a vector is one figure
            row = {"claim": claim["id"], "experiment": claim["experiment"], "figure": figure, "reading": reading}
            if kind in ("converged_by", "faster_than", "slower_than"):
                holds = table["converged"] & (table["convergence_epoch"] <= figure)
                row |= {"statement": f"100% training accuracy by epoch {figure}", "measured": km_text(m)}
            elif kind == "outputs_near":
                outputs = table[[c for c in table.columns if str(c).startswith("output_")]].to_numpy()
                holds = pd.Series(np.abs(outputs - np.asarray(claim["figures"])).max(axis=1) <= claim["tolerance"])
                medians = ", ".join(f"{v:.3f}" for v in np.median(outputs, axis=0))
                row |= {
                    "figure": str(claim["figures"]),
                    "statement": f"every output within {claim['tolerance']} of it",
                    "measured": f"median outputs [{medians}]; {(table['train_accuracy'] >= 1).mean():.1%} classify all 4",
                }
            elif kind == "loss_at_most":
                holds = (table["train_loss"] <= figure) & (table["train_accuracy"] >= 1.0)
                row |= {
                    "statement": f"final loss <= {figure:g} and predictions [0, 1, 1, 0]",
                    "measured": f"final loss {quartiles(table['train_loss'])}; "
                    f"{(table['train_accuracy'] >= 1).mean():.1%} predict [0, 1, 1, 0]",
                }
            elif kind == "stable_from":
                holds = (table["stable_epoch"] > 0) & (table["stable_epoch"] <= figure)
                stable = table.loc[table["stable_epoch"] > 0, "stable_epoch"]
                row |= {
                    "statement": f"100% from epoch {figure} to the end (epoch {epochs})",
                    "measured": f"100% from epoch {quartiles(stable, '{:.0f}')} ({len(stable) / len(table):.1%} end at 100%)",
                }
            if "first_epoch_accuracy" in claim:
                row["measured"] += "; " + epoch_one_text(claim, table, reference)
            if reading != "as stated":
                row["statement"] = f"{reading} reading: {row['statement']}"
            row |= judged(holds, table["seed"], rule, count, paired_rule=False)
            if kind in ("faster_than", "slower_than"):  # judged on the comparison; the figure's share stays shown
                comparison = paired(claim, table, tables[claim["baseline"]], epochs)
                compared = judged(comparison.pop("holds"), table["seed"], rule, count, paired_rule=True)
                row |= {"figure_share": row["share"]} | comparison | compared
            rows.append(row)
    return rows


def paired(claim: dict[str, Any], table: pd.DataFrame, baseline: pd.DataFrame, epochs: int) -> dict[str, Any]:
    """The comparison with the baseline net, seed by seed: where it holds, and the median difference (95% CI)."""
    mine, theirs = epochs_or_later(table, epochs), epochs_or_later(baseline, epochs)
    holds = pd.Series(mine < theirs if claim["kind"] == "faster_than" else mine > theirs)
    difference = mine - theirs
    boot = stats.bootstrap((difference,), np.median, method="percentile", n_resamples=2000, random_state=0)
    word = "sooner" if claim["kind"] == "faster_than" else "later"
    return {
        "statement": f"{word} than {claim['baseline']} with the same seed (tutorial: epoch {claim['figures'][0]})",
        "holds": holds,
        "median_difference": float(np.median(difference)),
        "difference_ci": (float(boot.confidence_interval.low), float(boot.confidence_interval.high)),
    }


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


def interval(judgement: dict[str, Any]) -> str:
    """`23.3% (20.8%-26.0%)`: a share of seeds and its 95% interval."""
    return f"{judgement['share']:.1%} ({judgement['share_ci'][0]:.1%}-{judgement['share_ci'][1]:.1%})"


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


def read_reference(cfg: dict[str, Any]) -> pd.DataFrame | None:
    """The tutorial code's own epoch-1 accuracies (stage tutorial_reference), or None where not measured."""
    path = Path(cfg["paths"]["tutorial_reference"])
    return pd.read_csv(path) if path.is_file() else None


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
    reference = read_reference(cfg)
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


def main() -> None:
    raise_on_sigterm()
    skip_final_collection()
    try:
        cfg = resolved(compose_config(sys.argv[1:], config_name="claims"))
        run(cfg)
    except PipelineError as error:
        exit_with(error)


if __name__ == "__main__":
    main()
