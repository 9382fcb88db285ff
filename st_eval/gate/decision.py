"""From judgments to a release decision: win/tie/loss counts, confidence intervals, policies.

Each prompt ends as a ``win`` (the judge preferred the candidate in both orders), a ``loss``,
a ``tie`` (the judge said tie, or its verdict flipped with the order) or ``failed`` (no
parseable verdict). Rates are over decided prompts (failures excluded; the failure-rate limit
bounds how many may be excluded):

* win rate = (wins + ties / 2) / n, loss rate = losses / n, net = (wins - losses) / n.
  Win rate and net carry the same information (win rate = 0.5 + net / 2).

The decision is ``error`` when the gate cannot be trusted (no decided prompt, judge failure
rate above the limit), else ``fail`` when any policy check fails, else ``pass``, unless there
are fewer decided prompts than :func:`min_decided_prompts` asks for the difference the policy
guards against: then it is ``inconclusive`` (exit 2), since too few prompts cannot show a
difference and a gate that cannot fail must not pass.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Literal

from st_eval.errors import InputError, StEvalError
from st_eval.records import Judgment
from st_eval.significance import Interval, clopper_pearson, percentile_interval

Outcome = Literal["win", "tie", "loss", "failed"]
Status = Literal["pass", "fail", "error", "inconclusive"]
EXIT_CODES = {"pass": 0, "fail": 1, "error": 2, "inconclusive": 2}
CI_METHODS = ("bootstrap", "exact")
#: the net difference (wins - losses) / n a gate without --non-inferiority-margin guards
#: against: the candidate losing two decisive prompts for every one it wins (net -1/3)
GUARDED_NET = 1 / 3
#: chance that the gate sees a difference of the guarded size when there is one
POWER = 0.8
ALL_CATEGORIES = "*"
UNCATEGORIZED = "uncategorized"
_OUTCOME = {"A": "win", "B": "loss", "tie": "tie", None: "failed"}


class GateError(StEvalError):
    """The gate could not reach a trustworthy decision (exit code 2: an error never passes)."""


def outcome(judgment: Judgment) -> Outcome:
    """The candidate's result on one prompt; the candidate is always response A of the pair."""
    return _OUTCOME[judgment.verdict]  # type: ignore[return-value]


@dataclass
class Stats:
    """Counts, rates and confidence intervals over one group of prompts.

    n: decided prompts (wins + ties + losses); failures are counted apart.
    consistent: prompts whose two orders agreed (win or loss or an agreed tie); position
        consistency is ``consistent / n``.
    """

    wins: int
    ties: int
    losses: int
    failures: int
    consistent: int
    win_rate: float | None
    loss_rate: float | None
    net: float | None
    failure_rate: float
    position_consistency: float | None
    win_rate_ci: Interval | None = None
    loss_rate_ci: Interval | None = None
    net_ci: Interval | None = None

    @property
    def n(self) -> int:
        return self.wins + self.ties + self.losses

    def to_dict(self) -> dict:
        return {"n": self.n, **asdict(self)}


@dataclass
class Policy:
    """What a candidate must achieve to pass; every threshold is optional.

    min_win_rate: fail when the win rate (ties count half) is below this.
    max_loss_rate: fail when the share of prompts lost is above this.
    non_inferiority_margin: fail unless the CI's lower bound of net = (wins - losses) / n is at
        least minus this margin (the candidate is shown to be at most this much worse).
    require_not_worse: fail when the CI's upper bound of net is below 0 (the candidate is
        significantly worse than the baseline). On by default so a gate never passes a clear
        regression even when no threshold is set.
    category_min_win_rate / category_max_loss_rate: the same thresholds per category
        (``*`` applies to every category).
    min_decided: decided prompts needed for a pass; None: :func:`min_decided_prompts` of
        :attr:`guarded_difference` (fewer make a would-be pass ``inconclusive``).
    max_failure_rate: share of prompts the judge may fail to decide; above it the gate errors.
    ci: ``bootstrap`` (percentile bootstrap over prompts) or ``exact`` (Clopper-Pearson).
    confidence: two-sided confidence level of the intervals.
    bootstrap_resamples / seed: bootstrap size and its seed (the decision is reproducible).
    """

    min_win_rate: float | None = None
    max_loss_rate: float | None = None
    non_inferiority_margin: float | None = None
    require_not_worse: bool = True
    category_min_win_rate: dict[str, float] = field(default_factory=dict)
    category_max_loss_rate: dict[str, float] = field(default_factory=dict)
    max_failure_rate: float = 0.05
    ci: str = "bootstrap"
    confidence: float = 0.95
    bootstrap_resamples: int = 2000
    seed: int = 0
    min_decided: int | None = None

    @property
    def guarded_difference(self) -> float:
        """The net difference the gate must be able to see: the non-inferiority margin, else
        :data:`GUARDED_NET`."""
        return self.non_inferiority_margin or GUARDED_NET

    @property
    def required_decided(self) -> int:
        """Decided prompts a pass needs (``min_decided``, else the power calculation)."""
        if self.min_decided is not None:
            return self.min_decided
        return min_decided_prompts(self.guarded_difference, self.confidence)

    def __post_init__(self) -> None:
        if self.min_decided is not None and self.min_decided < 1:
            raise InputError(f"--min-decided must be at least 1, got {self.min_decided}")
        if self.ci not in CI_METHODS:
            raise InputError(f"--ci must be one of {', '.join(CI_METHODS)}, got {self.ci!r}")
        if not 0 < self.confidence < 1:
            raise InputError(f"--confidence must be between 0 and 1, got {self.confidence}")
        rates = {
            "--min-win-rate": self.min_win_rate,
            "--max-loss-rate": self.max_loss_rate,
            "--max-failure-rate": self.max_failure_rate,
            "--non-inferiority-margin": self.non_inferiority_margin,
            **{f"--category-min-win-rate {k}": v for k, v in self.category_min_win_rate.items()},
            **{f"--category-max-loss-rate {k}": v for k, v in self.category_max_loss_rate.items()},
        }
        for name, value in rates.items():
            if value is not None and not 0 <= value <= 1:
                raise InputError(f"{name} must be between 0 and 1, got {value}")


@dataclass
class Check:
    """One policy rule applied to one group: the value it saw and whether it held."""

    name: str
    scope: str
    value: float | None
    threshold: float
    passed: bool
    rule: str


@dataclass
class Decision:
    """The gate's verdict with everything that led to it."""

    status: Status
    overall: Stats
    categories: dict[str, Stats]
    checks: list[Check]
    errors: list[str]
    policy: Policy

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    def to_dict(self) -> dict:
        return {
            "status": self.status,
            "exit_code": self.exit_code,
            "errors": self.errors,
            "min_decided": self.policy.required_decided,
            "overall": self.overall.to_dict(),
            "categories": {k: v.to_dict() for k, v in self.categories.items()},
            "checks": [asdict(c) for c in self.checks],
            "policy": asdict(self.policy),
        }


def min_decided_prompts(difference: float, confidence: float = 0.95, power: float = POWER) -> int:
    """Decided prompts needed to see a net difference of ``difference`` with the gate's interval.

    A prompt scores +1 (win), 0 (tie) or -1 (loss); net is their mean. Its standard deviation is
    at most 1 (no ties, wins and losses equally likely), so the two-sided ``confidence``
    interval of net has half-width about z_{1-alpha/2} / sqrt(n). The interval excludes a true
    difference ``d`` with probability ``power`` when
    ``n >= ((z_{1-alpha/2} + z_power) / d) ** 2`` (the normal approximation of a one-sample test
    at sigma = 1, the largest a per-prompt score in [-1, 1] has around net 0). With 95% and
    80%: 71 prompts for d = 1/3, 785 for d = 0.1, 3,140 for d = 0.05.
    """
    if not 0 < difference <= 2:
        raise InputError(f"the guarded difference must be in (0, 2], got {difference}")
    normal = NormalDist()
    z = normal.inv_cdf(1 - (1 - confidence) / 2) + normal.inv_cdf(power)
    return math.ceil((z / difference) ** 2)


def underpowered(decided: int, policy: Policy) -> str | None:
    """The message of an inconclusive gate, when ``decided`` prompts are fewer than needed."""
    needed = policy.required_decided
    if decided >= needed:
        return None
    how = "--min-decided" if policy.min_decided is not None else (
        f"to see a net difference of {policy.guarded_difference:.3f} at {policy.confidence:.0%} confidence with "
        f"{POWER:.0%} power, n >= ((z + z_power) / d)^2; --min-decided overrides"
    )
    return f"inconclusive: {decided} decided prompts, fewer than the {needed} a pass needs ({how}); gate more prompts"


def _rates(wins: int, ties: int, losses: int) -> tuple[float, float, float] | None:
    n = wins + ties + losses
    if n == 0:
        return None
    return (wins + ties / 2) / n, losses / n, (wins - losses) / n


def _intervals(outcomes: Sequence[Outcome], policy: Policy) -> tuple[Interval, Interval, Interval] | None:
    """(win rate, loss rate, net) intervals over the decided outcomes."""
    decided = [o for o in outcomes if o != "failed"]
    n = len(decided)
    if n == 0:
        return None
    wins, losses = decided.count("win"), decided.count("loss")
    if policy.ci == "exact":
        # net given the number of decisive prompts: (w + l) / n * (2p - 1), p = share of wins among them.
        decisive = wins + losses
        p = clopper_pearson(wins, decisive, policy.confidence)
        scale = decisive / n
        net = Interval(scale * (2 * p.low - 1), scale * (2 * p.high - 1)) if decisive else Interval(0.0, 0.0)
        loss = clopper_pearson(losses, n, policy.confidence)
    else:
        rng = random.Random(policy.seed)
        score = {"win": 1, "tie": 0, "loss": -1}
        values = [score[o] for o in decided]
        nets, loss_rates = [], []
        for _ in range(policy.bootstrap_resamples):
            sample = rng.choices(values, k=n)
            nets.append(sum(sample) / n)
            loss_rates.append(sample.count(-1) / n)
        net = percentile_interval(nets, policy.confidence)
        loss = percentile_interval(loss_rates, policy.confidence)
    win = Interval(0.5 + net.low / 2, 0.5 + net.high / 2)
    return win, loss, net


def stats(outcomes: Sequence[Outcome], consistent: Sequence[bool], policy: Policy) -> Stats:
    """Counts, rates and intervals for one group of prompts (``consistent`` aligned with outcomes)."""
    wins, ties, losses, failures = (outcomes.count(k) for k in ("win", "tie", "loss", "failed"))  # type: ignore[attr-defined]
    rates = _rates(wins, ties, losses)
    n = wins + ties + losses
    agreed = sum(1 for o, c in zip(outcomes, consistent) if o != "failed" and c)
    intervals = _intervals(outcomes, policy)
    return Stats(
        wins=wins,
        ties=ties,
        losses=losses,
        failures=failures,
        consistent=agreed,
        win_rate=rates[0] if rates else None,
        loss_rate=rates[1] if rates else None,
        net=rates[2] if rates else None,
        failure_rate=failures / len(outcomes) if outcomes else 0.0,
        position_consistency=agreed / n if n else None,
        win_rate_ci=intervals[0] if intervals else None,
        loss_rate_ci=intervals[1] if intervals else None,
        net_ci=intervals[2] if intervals else None,
    )


def _checks(scope: str, s: Stats, policy: Policy, min_win: float | None, max_loss: float | None, overall: bool) -> list[Check]:
    checks = []
    if s.n == 0:
        return checks
    if min_win is not None:
        checks.append(Check("min_win_rate", scope, s.win_rate, min_win, s.win_rate >= min_win, "win rate >= threshold"))  # type: ignore[operator]
    if max_loss is not None:
        checks.append(Check("max_loss_rate", scope, s.loss_rate, max_loss, s.loss_rate <= max_loss, "loss rate <= threshold"))  # type: ignore[operator]
    if overall and policy.non_inferiority_margin is not None:
        low = s.net_ci.low  # type: ignore[union-attr]
        checks.append(
            Check("non_inferiority", scope, low, -policy.non_inferiority_margin, low >= -policy.non_inferiority_margin,
                  "lower CI bound of net >= -margin")
        )
    if overall and policy.require_not_worse:
        high = s.net_ci.high  # type: ignore[union-attr]
        checks.append(Check("not_significantly_worse", scope, high, 0.0, high >= 0, "upper CI bound of net >= 0"))
    return checks


def check_categories(policy: Policy, categories: set[str]) -> None:
    """Category thresholds must name categories the prompts have (a typo must not pass silently)."""
    for option, thresholds in (("--category-min-win-rate", policy.category_min_win_rate), ("--category-max-loss-rate", policy.category_max_loss_rate)):
        unknown = sorted(set(thresholds) - categories - {ALL_CATEGORIES})
        if unknown:
            raise InputError(
                f"{option}: unknown categor{'ies' if len(unknown) > 1 else 'y'} {', '.join(unknown)}; "
                f"the prompts have: {', '.join(sorted(categories))}"
            )


def decide(judgments: Sequence[Judgment], policy: Policy) -> Decision:
    """Apply the policy to the judgments (one per prompt; the candidate is response A)."""
    outcomes = [outcome(j) for j in judgments]
    consistent = [j.consistent is not False for j in judgments]
    overall = stats(outcomes, consistent, policy)
    groups: dict[str, list[int]] = {}
    for index, judgment in enumerate(judgments):
        groups.setdefault(str(judgment.metadata.get("category") or UNCATEGORIZED), []).append(index)
    categories = {
        name: stats([outcomes[i] for i in idx], [consistent[i] for i in idx], policy) for name, idx in sorted(groups.items())
    }
    check_categories(policy, set(categories))

    errors = []
    if not judgments:
        errors.append("no prompts were judged")
    elif overall.n == 0:
        errors.append("the judge gave no usable verdict on any prompt")
    if judgments and overall.failure_rate > policy.max_failure_rate:
        errors.append(
            f"judge failure rate {overall.failure_rate:.3f} ({overall.failures} of {len(judgments)} prompts without a "
            f"parseable verdict) is above --max-failure-rate {policy.max_failure_rate}"
        )
    checks = _checks("overall", overall, policy, policy.min_win_rate, policy.max_loss_rate, overall=True)
    for name, s in categories.items():
        min_win = policy.category_min_win_rate.get(name, policy.category_min_win_rate.get(ALL_CATEGORIES))
        max_loss = policy.category_max_loss_rate.get(name, policy.category_max_loss_rate.get(ALL_CATEGORIES))
        checks.extend(_checks(name, s, policy, min_win, max_loss, overall=False))
    status: Status = "error" if errors else ("pass" if all(c.passed for c in checks) else "fail")
    short = underpowered(overall.n, policy) if status == "pass" else None
    if short:
        status, errors = "inconclusive", [short]
    return Decision(status, overall, categories, checks, errors, policy)
