"""Stage 7: the run report: per-iteration table (Markdown + JSON), data sizes per stage, timings, PNG plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from st_eval.jsonl import write_json

#: (metric key, table column suffix, plot title)
_PLOTTED = (
    ("accuracy", "acc", "accuracy"),
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
        row["kept yield"] = ann["pair_orders_kept"] / (2 * ann["pairs"]) if ann.get("pairs") else None
        row["train examples"] = ann.get("examples")
        row["trained"] = it.get("trained")
        rows.append(row)
    return rows


def write_report(run_dir: Path, summary: dict[str, Any]) -> dict[str, Path]:
    """Write report.json, report.md and report.png in ``run_dir``."""
    benchmarks = summary["benchmarks"]
    rows = iteration_rows(summary["iterations"], benchmarks)
    summary = {**summary, "table": rows}
    paths = {"json": write_json(run_dir / "report.json", summary)}
    lines = [f"# st-eval training report: {summary['recipe']}", ""]
    lines += [f"Seed model: `{summary['seed_model']}`; template `{summary['template']}`; best judge: "
              f"iteration {summary['best']['iteration']} (selected on {summary['select_on']}) at `{summary['best']['path']}`.", ""]
    for name, reason in summary.get("skipped_benchmarks", {}).items():
        lines += [f"Benchmark {name} skipped: {reason}", ""]
    headers = list(rows[0]) if rows else []
    lines += ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_fmt(r[h]) for h in headers) + " |" for r in rows]
    lines += ["", "## Data sizes per stage", ""]
    for stage, stats in summary["stages"].items():
        lines.append(f"- **{stage}**: " + ", ".join(f"{k} {_fmt(v)}" for k, v in stats.items()))
    lines += ["", "## Timings (seconds)", ""]
    lines += [f"- {name}: {seconds:.1f}" for name, seconds in summary["timings"].items()]
    paths["md"] = run_dir / "report.md"
    _atomic_text(paths["md"], "\n".join(lines) + "\n")
    paths["png"] = _plot(run_dir / "report.png", rows, benchmarks)
    return paths


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
    fig.tight_layout()
    staging = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(staging, dpi=100)
    plt.close(fig)
    staging.replace(path)
    return path


def _atomic_text(path: Path, text: str) -> None:
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(text, encoding="utf-8")
    staging.replace(path)
