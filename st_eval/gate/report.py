"""Gate reports: a JSON document for machines and Markdown for people (and CI job summaries).

The Markdown is also appended to ``$GITHUB_STEP_SUMMARY`` when that variable is set, so a
GitHub Actions run shows the decision, the statistics and the worst regressions on its page.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from st_eval.gate.decision import Stats, outcome
from st_eval.gate.run import GateResult
from st_eval.jsonl import write_json, write_text
from st_eval.records import Judgment, Pair

_SNIPPET = 600


def _clip(text: str, limit: int = _SNIPPET) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit].rstrip() + " …"


def worst_regressions(pairs: list[Pair], judgments: list[Judgment], limit: int) -> list[dict[str, Any]]:
    """Prompts the candidate lost, most confident first, with the judge's own reasoning.

    The rationale is the judge's text for one presentation order; ``rationale_candidate_is``
    says whether "A" in that text means the candidate (given order) or the baseline (swapped).
    """
    by_id = {p.id: p for p in pairs}
    lost = sorted((j for j in judgments if outcome(j) == "loss"), key=lambda j: -j.confidence)
    rows = []
    for judgment in lost[:limit]:
        pair = by_id[judgment.pair_id]
        shown = next((r for r in judgment.orders if r.rationale == judgment.rationale), judgment.orders[0])
        rows.append(
            {
                "id": judgment.pair_id,
                "category": judgment.metadata.get("category"),
                "confidence": judgment.confidence,
                "prompt": _clip(pair.instruction),
                "turns": len(pair.turns_a) if pair.turns_a else 1,
                "candidate": _clip(pair.response_a),
                "baseline": _clip(pair.response_b),
                "rationale": _clip(judgment.rationale, 2000),
                "rationale_candidate_is": "A" if shown.order == "given" else "B",
            }
        )
    return rows


def judge_failures(judgments: list[Judgment], limit: int) -> list[dict[str, Any]]:
    """Prompts without a verdict, with the end of what the judge wrote instead (to debug a judge)."""
    rows = []
    for judgment in (j for j in judgments if outcome(j) == "failed"):
        for result in judgment.orders:
            if result.verdict is None:
                rows.append({
                    "id": judgment.pair_id,
                    "category": judgment.metadata.get("category"),
                    "order": result.order,
                    "output_tail": _tail(result.raw[0] if result.raw else ""),
                })
                break
        if len(rows) >= limit:
            break
    return rows


def _tail(text: str, limit: int = 400) -> str:
    text = text.strip()
    return text if len(text) <= limit else "… " + text[-limit:].lstrip()


def build_report(result: GateResult, worst: int = 5, command: str | None = None) -> dict[str, Any]:
    """The JSON report: decision, statistics, checks, qualification, timings, worst regressions."""
    report: dict[str, Any] = {
        "status": result.status,
        "exit_code": result.exit_code,
        "errors": result.errors,
        "command": command,
        **result.info,
    }
    if result.qualification is not None:
        report["qualification"] = result.qualification.to_dict()
    if result.decision is not None:
        report.update({k: v for k, v in result.decision.to_dict().items() if k not in ("status", "exit_code", "errors")})
        report["worst_regressions"] = worst_regressions(result.pairs, result.judgments, worst)
        report["judge_failures"] = judge_failures(result.judgments, worst)
    return report


def error_report(message: str, command: str | None = None) -> dict[str, Any]:
    """The report of a gate that stopped on an error before deciding."""
    return {"status": "error", "exit_code": 2, "errors": [message], "command": command}


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _ci(stats: dict[str, Any], key: str, scale: float = 100.0, signed: bool = False) -> str:
    interval = stats.get(key)
    if not interval:
        return ""
    fmt = "{:+.1f}" if signed else "{:.1f}"
    return f" [{fmt.format(scale * interval['low'])}, {fmt.format(scale * interval['high'])}]"


def _stats_row(name: str, s: dict[str, Any]) -> str:
    net = "–" if s["net"] is None else f"{100 * s['net']:+.1f}"
    return (
        f"| {name} | {s['n']} | {s['wins']} | {s['ties']} | {s['losses']} | {s['failures']} | "
        f"{_pct(s['win_rate'])}{_ci(s, 'win_rate_ci')} | {_pct(s['loss_rate'])} | {net}{_ci(s, 'net_ci', signed=True)} | "
        f"{_pct(s['position_consistency'])} |"
    )


def render_markdown(report: dict[str, Any]) -> str:
    """A Markdown summary: decision first, then why."""
    icon = {"pass": "✅ PASS", "fail": "❌ FAIL", "error": "⚠️ ERROR", "inconclusive": "⚠️ INCONCLUSIVE"}[report["status"]]
    lines = [f"## st-eval gate: {icon}", ""]
    cand, base = report.get("candidate"), report.get("baseline")
    if cand and base:
        lines += [f"Candidate **{cand.get('model') or cand['source']}** vs baseline **{base.get('model') or base['source']}**, "
                  f"judged by `{report.get('judge')}` in both orders.", ""]
    for error in report.get("errors", []):
        lines.append(f"> **{'Inconclusive' if report['status'] == 'inconclusive' else 'Error'}:** {error}")
    if report.get("errors"):
        lines.append("")
    qual = report.get("qualification")
    if qual:
        mark = "passed" if qual["passed"] else "FAILED"
        lines += [f"Judge qualification {mark}: accuracy {qual['accuracy']:.3f} on `{qual['benchmark']}` "
                  f"({qual['n']} pairs, threshold {qual['min_accuracy']}).", ""]
    if "overall" in report:
        level = report["policy"]["confidence"]
        lines += [
            f"| scope | n | wins | ties | losses | failed | win rate [{100 * level:.0f}% CI] | loss rate | net (W−L)/n [{100 * level:.0f}% CI] | position consistency |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            _stats_row("**overall**", report["overall"]),
        ]
        lines += [_stats_row(name, s) for name, s in report["categories"].items()]
        lines.append("")
        if report["checks"]:
            lines += ["| check | scope | value | threshold | result |", "|---|---|---:|---:|---|"]
            for c in report["checks"]:
                value = "–" if c["value"] is None else f"{c['value']:.3f}"
                lines.append(f"| {c['rule']} | {c['scope']} | {value} | {c['threshold']:.3f} | {'pass' if c['passed'] else '**FAIL**'} |")
            lines.append("")
        worst = report.get("worst_regressions") or []
        if worst:
            lines += ["### Worst regressions", ""]
            for row in worst:
                lines += [
                    f"<details><summary><b>{row['id']}</b> ({row['category'] or 'uncategorized'}, confidence {row['confidence']:.2f}): "
                    f"{_escape(_clip(row['prompt'], 120))}</summary>",
                    "",
                    f"**Prompt** ({row['turns']} turn(s), final turn shown):\n\n{_quote(row['prompt'])}",
                    f"**Candidate:**\n\n{_quote(row['candidate'])}",
                    f"**Baseline:**\n\n{_quote(row['baseline'])}",
                    f"**Judge's rationale** (here answer {row['rationale_candidate_is']} is the candidate):\n\n{_quote(row['rationale'])}",
                    "</details>",
                    "",
                ]
    failures = report.get("judge_failures") or []
    if failures:
        lines += ["### Judge failures (no parseable verdict)", ""]
        for row in failures:
            lines += [
                f"<details><summary><b>{row['id']}</b> ({row['category'] or 'uncategorized'}, {row['order']} order)</summary>",
                "",
                f"End of the judge's output:\n\n{_quote(row['output_tail'])}",
                "</details>",
                "",
            ]
    timings = report.get("timings_s")
    if timings:
        cached = report.get("gate_outputs_cached")
        reuse = f"; {cached} of {cached + report['gate_outputs_generated']} judge outputs came from the cache" if cached is not None else ""
        lines.append("Timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()) + reuse + ".")
    return "\n".join(lines).rstrip() + "\n"


def _escape(text: str) -> str:
    return text.replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


def _quote(text: str) -> str:
    return "\n".join("> " + line for line in _escape_block(text).splitlines()) + "\n"


def _escape_block(text: str) -> str:
    return text.replace("<", "&lt;").replace(">", "&gt;") or "(empty)"


def write_reports(report: dict[str, Any], json_path: Path | None, md_path: Path | None) -> list[Path]:
    """Write the requested reports atomically and append the Markdown to ``$GITHUB_STEP_SUMMARY``."""
    written = []
    if json_path:
        written.append(write_json(json_path, report))
    markdown = render_markdown(report)
    if md_path:
        written.append(write_text(md_path, markdown))
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(markdown + "\n")
    return written


def stats_line(stats: Stats) -> str:
    """One line for the terminal."""
    if stats.n == 0:
        return f"no decided prompts ({stats.failures} failed)"
    return (
        f"{stats.wins} wins, {stats.ties} ties, {stats.losses} losses, {stats.failures} failed; "
        f"win rate {stats.win_rate:.3f}, net {stats.net:+.3f} "
        f"[{stats.net_ci.low:+.3f}, {stats.net_ci.high:+.3f}], position consistency {stats.position_consistency:.3f}"  # type: ignore[union-attr]
    )
