"""reports/claims.md, claims.png and claims.json from the judged claims: plain words first, then the measurements."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core import convergence
from pipeline.core.verdicts import interval


def meaning(row: dict[str, Any]) -> str:
    """What a verdict means for a learner who has just done the tutorial."""
    odds = f"about 1 in {max(1, round(1 / row['share']))} runs" if row["share"] > 0 else "no run"
    if row["verdict"] == "contradicted":
        return "on most seeds it is the other way round" if "difference_ci" in row else f"{odds} shows it: do not expect it"
    if row["verdict"] == "optimistic":
        return f"the tutorial's run was a lucky one: {odds} do as well, so a slower run of yours is normal"
    return "expect it: most runs do" if row["share"] >= 0.5 else f"a fair example, not a promise: {odds} do it"


def plain_words(cfg: dict[str, Any], rows: list[dict[str, Any]], claims: list[dict[str, Any]]) -> list[str]:
    """Three sentences per claim: what the tutorial said, what the seeds show, what it means for a learner."""
    lines = ["## In plain words", ""]
    for claim in claims:
        row = next(r for r in rows if r["claim"] == claim["id"] and r["reading"] == "as stated")
        lines.append(
            f"- **Claim {claim['id']}.** The tutorial said: {claim['claim']}. Over {cfg['replicates']} seeds of its "
            f'setup, "{row["statement"]}" held for {row["share"]:.0%} of them. For a learner: {meaning(row)}.'
        )
    return [*lines, ""]


def markdown(
    cfg: dict[str, Any],
    rows: list[dict[str, Any]],
    claims: list[dict[str, Any]],
    differences: dict[str, list[str]],
) -> str:
    """reports/claims.md: in plain words first, then the measurements; `differences`: how each named experiment
    now differs from its tutorial's setup (what the claims measure)."""
    rule, labels = cfg["verdict"], [part["seeds"] for part in rows[0]["blocks"]]
    agree = all(row["blocks_agree"] for row in rows)
    lines = [
        "# The tutorials' claims, measured",
        "",
        *plain_words(cfg, rows, claims),
        "## How they were measured",
        "",
        f"Each tutorial's setup (`conf/tutorial/`) trained as {cfg['replicates']} copies seeded "
        f"{cfg['seed']}..{cfg['seed'] + cfg['replicates'] - 1} (DVC stages `measure`); copy r starts from the weights "
        "the tutorial's code gets after `keras.utils.set_random_seed(r)` (`np.random.seed(r)` for the numpy net). "
        "A copy that never reaches 100% training accuracy is censored at the last epoch, never dropped; "
        "epochs are Kaplan-Meier median [quartiles].",
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
    lines.append("")
    for claim in claims:
        name, changed = claim["experiment"], differences[claim["experiment"]]
        if changed:
            lines.append(
                f"Claim {claim['id']}: the experiment `{name}` now differs from its tutorial's setup ({'; '.join(changed)}); "
                f"the claim is judged on the tutorial's setup, `conf/tutorial/{name}.yaml`, not on the edited experiment."
            )
    if not any(differences.values()):
        lines.append("Every experiment named here matches its tutorial's setup (`conf/tutorial/`).")
    lines += ["", "![claims](claims.png)", ""]
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

    fig, axes = plots.plt.subplots(2, 3, figsize=(18, 9.5), layout="constrained")
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
            ax.set_xlim(left=0)  # epochs: no negative ticks
        elif claim["kind"] == "outputs_near":
            outputs = table[[c for c in table.columns if str(c).startswith("output_")]]
            inputs = metrics[claim["experiment"]]["inputs"]
            ax.boxplot(outputs.to_numpy(), tick_labels=[f"x = {inputs[i]}".replace(",)", ")") for i in range(outputs.shape[1])])
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
        ax.set_title(f"claim {claim['id']}: {claim['experiment']}", fontsize=10, wrap=True)
        ax.legend(fontsize=8)
    plots.save_figure(fig, path)


def claims_metrics(rows: list[dict[str, Any]]) -> dict[str, str]:
    """DVC metrics, one column per claim (plus its figure where it has several): `claim1_epoch54: optimistic 23.3%`."""
    stated = [r for r in rows if r["reading"] == "as stated"]
    per_claim = pd.Series([r["claim"] for r in stated]).value_counts()

    def key(r: dict[str, Any]) -> str:
        figure = f"_epoch{r['figure']}" if per_claim[r["claim"]] > 1 else ""
        return f"claim{r['claim']}{figure}" + ("" if r["reading"] == "as stated" else f"_{r['reading']}")

    return {key(r): f"{r['verdict']} {r['share']:.1%}" for r in rows}
