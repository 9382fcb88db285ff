"""Stage 7: the run report: per-iteration table (Markdown + JSON), gains over the seed judge with
paired bootstrap intervals, data sizes per stage, timings, PNG plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from st_eval.jsonl import write_json, write_text
from st_eval.significance import paired_comparison

#: (metric key, table column suffix, plot title)
_PLOTTED = (
    ("order_averaged", "ord-avg", "order-averaged accuracy (chance 0.5)"),
    ("accuracy", "acc", "accuracy, both orders right (chance 0.25)"),
    ("consistency", "consistency", "position consistency"),
    ("invalid_rate", "invalid", "invalid rate"),
    ("forced_rate", "forced", "verdicts the verdict step wrote"),
)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def iteration_rows(iterations: list[dict[str, Any]], benchmarks: list[str]) -> list[dict[str, Any]]:
    """Flat rows for the table: one per iteration (0 = seed judge), one column per metric."""
    rows = []
    for it in iterations:
        row: dict[str, Any] = {"iteration": it["iteration"], "judge": it.get("judge") or "seed"}
        for name in ["synthetic", *benchmarks]:
            m = it["eval"].get(name) or {}
            for key, column, _ in _PLOTTED:
                row[f"{name} {column}"] = m.get(key)
        ann = it.get("annotation") or {}
        row["kept yield"] = ann["pair_orders_kept"] / (2 * ann["pairs"]) if ann.get("pairs") and "pair_orders_kept" in ann else None
        row["train examples"] = ann.get("examples")
        row["trained"] = it.get("trained")
        rows.append(row)
    return rows


#: per-pair scores compared against the seed: (key in eval's scores lists, metric name)
_COMPARED = ((0, "order_averaged"), (1, "accuracy"))


def gains_over_seed(iterations: list[dict[str, Any]], *, seed: int = 0) -> dict[str, Any]:
    """Per trained iteration, set (and subset) and metric: the paired comparison with the seed
    judge (iteration 0) on the same pairs: gain, paired bootstrap 95% interval, exact McNemar p
    for the right-in-both-orders accuracy."""
    base = iterations[0]["eval"]
    gains: dict[str, Any] = {}
    for it in iterations[1:]:
        if not it.get("trained"):
            continue
        per_set: dict[str, Any] = {}
        for name, figures in it["eval"].items():
            if name not in base or not figures.get("scores"):
                continue
            per_set[name] = _compare(base[name], figures, seed)
            for subset, sub in (figures.get("subsets") or {}).items():
                if subset in (base[name].get("subsets") or {}):
                    per_set[f"{name}/{subset}"] = _compare(base[name]["subsets"][subset], sub, seed)
        gains[str(it["iteration"])] = per_set
    return gains


def _compare(before: dict[str, Any], after: dict[str, Any], seed: int) -> dict[str, Any]:
    ids = [i for i in before["scores"] if i in after["scores"]]
    return {
        metric: paired_comparison([before["scores"][i][k] for i in ids], [after["scores"][i][k] for i in ids], seed=seed).to_dict()
        for k, metric in _COMPARED
    }


def gain_text(comparison: dict[str, Any]) -> str:
    """``+0.123 [+0.080, +0.170]`` (and ``p=...`` when McNemar applies)."""
    ci = comparison["gain_ci"]
    text = f"{comparison['gain']:+.3f} [{ci['low']:+.3f}, {ci['high']:+.3f}]"
    if comparison.get("mcnemar_p") is not None:
        text += f" p={comparison['mcnemar_p']:.2g}"
    return text


def write_report(run_dir: Path, summary: dict[str, Any]) -> dict[str, Path]:
    """Write report.json, report.md and report.png in ``run_dir``; ``summary`` gains the
    ``table`` and ``gains_over_seed`` they show, so the terminal prints the same figures."""
    benchmarks = summary["benchmarks"]
    rows = iteration_rows(summary["iterations"], benchmarks)
    gains = gains_over_seed(summary["iterations"], seed=summary.get("seed", 0))
    summary.update(table=rows, gains_over_seed=gains)
    paths = {"json": write_json(run_dir / "report.json", summary)}
    lines = [f"# st-eval training report: {summary['recipe']}", ""]
    lines += [f"Seed model: `{summary['seed_model']}`; template `{summary['template']}`; best judge: "
              f"iteration {summary['best']['iteration']} (selected on {summary['select_on']}) at `{summary['best']['path']}`.", ""]
    for name, reason in summary.get("skipped_benchmarks", {}).items():
        lines += [f"Benchmark {name} skipped: {reason}", ""]
    for change in summary.get("recipe_changes", []):  # made on resume (loop.PER_ITERATION)
        fields = "; ".join(f"`{name}` {old!r} -> {new!r}" for name, (old, new) in change["changed"].items())
        lines += [f"Recipe changed on resume, from iteration {change['from_iteration']} on: {fields}.", ""]
    headers = list(rows[0]) if rows else []
    lines += ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_fmt(r[h]) for h in headers) + " |" for r in rows]
    if gains:
        lines += ["", "## Gains over the seed judge (same pairs; paired bootstrap 95% interval; exact McNemar p)", ""]
        lines += ["| iteration | set | n | order-averaged (chance 0.5) | gain | both orders right (chance 0.25) | gain |", "|---|---|---|---|---|---|---|"]
        for iteration, per_set in gains.items():
            for name, c in per_set.items():
                avg, both = c["order_averaged"], c["accuracy"]
                lines.append(
                    f"| {iteration} | {name} | {avg['n']} | {avg['baseline']:.3f} -> {avg['candidate']:.3f} | {gain_text(avg)} "
                    f"| {both['baseline']:.3f} -> {both['candidate']:.3f} | {gain_text(both)} |"
                )
    grpo = {it["iteration"]: it["training"]["grpo"] for it in summary["iterations"] if (it.get("training") or {}).get("grpo")}
    if grpo:
        lines += ["", "## GRPO per step (mean over the step's judgments)", ""]
        lines += ["| iteration | step | reward | correct | consistent | invalid |", "|---|---|---|---|---|---|"]
        for iteration, m in grpo.items():
            for step, reward in enumerate(m["reward"], start=1):
                cells = [m.get(key, [])[step - 1] if step <= len(m.get(key, [])) else None for key in ("reward_correct", "reward_consistent", "invalid_rate")]
                lines.append(f"| {iteration} | {step} | {reward:.3f} | " + " | ".join(_fmt(c) for c in cells) + " |")
        paths["grpo_png"] = _plot_grpo(run_dir / "report-grpo.png", grpo)
    lines += ["", "## Data sizes per stage", ""]
    for stage, stats in summary["stages"].items():
        lines.append(f"- **{stage}**: " + ", ".join(f"{k} {_fmt(v)}" for k, v in stats.items()))
    lines += ["", "## Timings (seconds)", ""]
    lines += [f"- {name}: {seconds:.1f}" for name, seconds in summary["timings"].items()]
    paths["md"] = run_dir / "report.md"
    write_text(paths["md"], "\n".join(lines) + "\n")
    if _rates(summary["template"]):
        paths["png"] = _plot_rating(run_dir / "report.png", summary)
    else:
        paths["png"] = _plot(run_dir / "report.png", rows, benchmarks)
    return paths


def _rates(template: str) -> bool:
    """Whether the run's judge rates one answer at a time or reads both orders together (its
    orders agree by construction, so consistency, invalid and forced rates would be flat lines)."""
    from st_eval.errors import InputError
    from st_eval.prompt import load_template

    try:
        loaded = load_template(template)
        return loaded.one_answer or loaded.reads_probabilities
    except InputError:  # a report re-rendered where the run's template file is absent
        return False


def _interval(figures: dict[str, Any], seed: int = 0) -> tuple[float, float, float] | None:
    """(order-averaged accuracy, 95% bootstrap low, high) of one set's per-pair scores."""
    from st_eval.significance import bootstrap_mean

    scores = [s[0] for s in (figures.get("scores") or {}).values()]
    if not scores:
        return None
    ci = bootstrap_mean(scores, resamples=2000, seed=seed)
    return sum(scores) / len(scores), ci.low, ci.high


def _plot_rating(path: Path, summary: dict[str, Any]) -> Path:
    """A rating judge's run: accuracy per set per iteration with 95% interval bars; per subset
    (benchmark sets, synthetic sources) the seed against the last trained judge; training loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    iterations = summary["iterations"]
    names = ["synthetic", *summary["benchmarks"]]
    fig, axes = plt.subplots(1, 3, figsize=(18, 4.2))
    ax = axes[0]
    for offset, name in enumerate(names):
        points = [(it["iteration"], _interval(it["eval"].get(name) or {})) for it in iterations]
        points = [(x + 0.06 * (offset - len(names) / 2), v) for x, v in points if v is not None]
        if points:
            ax.errorbar([x for x, _ in points], [v[0] for _, v in points],
                        yerr=[[v[0] - v[1] for _, v in points], [v[2] - v[0] for _, v in points]], marker="o", capsize=3, label=name)
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    ax.set_title("accuracy per set, 95% bootstrap interval (chance 0.5)")
    ax.set_xlabel("iteration (0 = seed)")
    ax.set_xticks([it["iteration"] for it in iterations])
    ax.legend(fontsize=8)
    last = next((it for it in reversed(iterations) if it.get("trained")), None)
    ax = axes[1]
    if last is not None:
        labels, bars = [], []
        for name in names:
            for sub, figures in sorted(((last["eval"].get(name) or {}).get("subsets") or {}).items()):
                before = (iterations[0]["eval"].get(name) or {}).get("subsets", {}).get(sub) or {}
                labels.append(f"{name}: {sub.removeprefix(name + '-').removeprefix('adver-')}")
                bars.append((_interval(before), _interval(figures)))
        ys = list(range(len(labels)))
        for shift, index, label in ((-0.2, 0, "seed"), (0.2, 1, f"iteration {last['iteration']}")):
            values = [b[index] or (float("nan"),) * 3 for b in bars]
            ax.barh([y + shift for y in ys], [v[0] for v in values], height=0.4, label=label,
                    xerr=[[v[0] - v[1] for v in values], [v[2] - v[0] for v in values]], capsize=2)
        ax.set_yticks(ys)
        ax.set_yticklabels(labels, fontsize=7)
        ax.axvline(0.5, color="grey", linestyle=":", linewidth=1)
        ax.legend(fontsize=8)
    ax.set_title("per subset: seed vs trained judge")
    ax = axes[2]
    for it in iterations:
        trained = (it.get("training") or {}).get("reward") or {}
        if trained.get("losses"):
            ax.plot(range(1, len(trained["losses"]) + 1), trained["losses"], label=f"iteration {it['iteration']}")
    ax.set_title("training loss (Bradley-Terry) per logged step")
    ax.set_xlabel("logged step")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return _save_figure(fig, path)


def _plot(path: Path, rows: list[dict[str, Any]], benchmarks: list[str]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r["iteration"] for r in rows]
    fig, axes = plt.subplots(1, len(_PLOTTED) + 1, figsize=(20, 3.6))
    for ax, (_, column, title) in zip(axes, _PLOTTED):
        for name in ["synthetic", *benchmarks]:
            ys = [r.get(f"{name} {column}") for r in rows]
            ax.plot(xs, [float("nan") if y is None else y for y in ys], marker="o", label=name)
        ax.set_title(title)
        ax.set_xlabel("iteration (0 = seed)")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xticks(xs)
    axes[0].legend(fontsize=8)
    yields = [float("nan") if r["kept yield"] is None else r["kept yield"] for r in rows]
    axes[-1].bar(xs, yields)
    axes[-1].set_title("kept-judgment yield (pair, order)")
    axes[-1].set_xlabel("iteration")
    axes[-1].set_ylim(0, 1)
    axes[-1].set_xticks(xs)
    return _save_figure(fig, path)


def _plot_grpo(path: Path, grpo: dict[int, dict[str, Any]]) -> Path:
    """Per-step GRPO curves (reward, correctness, consistency, invalid rate), one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("reward", "mean reward"), ("reward_correct", "correct"), ("reward_consistent", "consistent (both orders right)"), ("invalid_rate", "invalid rate"))
    fig, axes = plt.subplots(1, len(panels), figsize=(18, 3.4))
    for ax, (key, title) in zip(axes, panels):
        for iteration, m in grpo.items():
            ys = m.get(key) or []
            ax.plot(range(1, len(ys) + 1), ys, label=f"iteration {iteration}")
        ax.set_title(title)
        ax.set_xlabel("GRPO step")
    axes[0].legend(fontsize=8)
    return _save_figure(fig, path)


def _save_figure(fig: Any, path: Path) -> Path:
    """Write a figure atomically (readers see the old PNG or the whole new one) and free it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    staging = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(staging, dpi=100)
    plt.close(fig)
    staging.replace(path)
    return path
