"""Verdicts on the tutorials' claims: per-seed tables of a replicated run -> shares of seeds, 95% intervals, verdicts."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

KINDS = ("converged_by", "faster_than", "slower_than", "outputs_near", "loss_at_most", "stable_from")


def epochs_or_later(table: pd.DataFrame, epochs: int) -> np.ndarray:
    """Convergence epoch per seed, epochs + 1 for a censored copy (it converges later, if ever)."""
    return np.where(table["converged"], table["convergence_epoch"], epochs + 1)


def km_text(metrics: dict[str, Any]) -> str:
    """`97 [56-161], 99.3% converged` (Kaplan-Meier median [IQR]; '>N' where not reached)."""
    q50, q25, q75 = (metrics[f"convergence_{q}"] or f">{metrics['epochs']}" for q in ("median", "q25", "q75"))
    return f"epoch {q50} [{q25}-{q75}], {metrics['converged_share']:.1%} converged"


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


def interval(judgement: dict[str, Any]) -> str:
    """`23.3% (20.8%-26.0%)`: a share of seeds and its 95% interval."""
    return f"{judgement['share']:.1%} ({judgement['share_ci'][0]:.1%}-{judgement['share_ci'][1]:.1%})"
