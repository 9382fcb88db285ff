"""Rating judgments: one answer at a time, rated from the judge's next-token probabilities.

A rating template asks a question about one answer whose reply is one of a few verdict tokens
(``Yes``/``No``). The judge does not write a reply: the engine returns the most likely next
tokens with their log-probabilities (``Engine.next_token_logprobs``), and the choices' own
tokens wherever they rank where it holds the whole distribution (the hf engine), and the rating
is the expected value of the choices under those probabilities, renormalised over the choices
found (the probability-weighted score of G-Eval, Liu et al. 2023). Reading probabilities instead
of a sampled token gives a continuous rating, so two answers almost never tie, and there is
nothing to parse or to force. From a server that returns the top 20 alone, a judge sure of one
choice can push the other out of them: its rating is then exactly 1 (or 0), and two such answers
tie. An output in which no choice appears at all is invalid: counted, never guessed.

Two ratings make a pairwise verdict: the higher-rated answer wins; equal ratings are a tie.

A choice template reads the same probabilities from a prompt that shows both answers: those of
the token naming the answer shown first against the one naming the second. Read with the pair
shown in both orders, the log-odds for the pair's answer A are averaged over the orders
(:func:`choice_ratings`): a judge's constant preference for a position adds to one order's log-odds
what it takes from the other's, so it cancels, and the two orders always agree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from st_eval.records import Verdict

#: how many of the most likely next tokens an engine returns (the OpenAI API's maximum).
TOP_LOGPROBS = 20


def choice_key(text: str) -> str:
    """What a token and a choice are compared by: equal ignoring surrounding whitespace and case
    (``"Yes"``, ``" yes"``, ``"YES"``); engines that add the choices' tokens find them by it too."""
    return text.strip().casefold()


def choice_probabilities(top: Mapping[str, float], choices: Mapping[str, float]) -> dict[str, float]:
    """Probabilities of each choice among the top tokens, renormalised over the choices.

    A token matches a choice when their :func:`choice_key` is equal; matching tokens add up.
    Choices absent from ``top`` get 0. Empty when no choice is present at all.
    """
    keys = {choice_key(choice): choice for choice in choices}
    mass = dict.fromkeys(choices, 0.0)
    found = False
    for token, logprob in top.items():
        choice = keys.get(choice_key(token))
        if choice is not None and logprob is not None and not math.isnan(logprob):
            mass[choice] += math.exp(logprob)
            found = True
    total = sum(mass.values())
    if not found or total <= 0:
        return {}
    return {choice: value / total for choice, value in mass.items()}


def rating_from_logprobs(top: Mapping[str, float], choices: Mapping[str, float]) -> float | None:
    """The expected value of the choices under the judge's probabilities; None when invalid."""
    probabilities = choice_probabilities(top, choices)
    if not probabilities:
        return None
    return sum(probabilities[c] * choices[c] for c in choices)


#: the largest log-odds one order can contribute: a server's top 20 alone may hold one choice only
#: (probability exactly 1), whose log-odds would be infinite
MAX_LOG_ODDS = 30.0


def first_shown_log_odds(top: Mapping[str, float], choices: Mapping[str, float]) -> float | None:
    """Log-odds that the answer shown first wins (the higher-valued choice against the other),
    within :data:`MAX_LOG_ODDS`; None when neither choice is among the tokens."""
    probabilities = choice_probabilities(top, choices)
    if not probabilities:
        return None
    first, second = sorted(choices, key=choices.__getitem__, reverse=True)
    if probabilities[second] == 0:
        return MAX_LOG_ODDS
    if probabilities[first] == 0:
        return -MAX_LOG_ODDS
    return max(-MAX_LOG_ODDS, min(MAX_LOG_ODDS, math.log(probabilities[first]) - math.log(probabilities[second])))


def choice_ratings(top_given: Mapping[str, float], top_swapped: Mapping[str, float], choices: Mapping[str, float]) -> tuple[float | None, float | None]:
    """Ratings of the pair's answers A and B from a choice judge's two readings (the pair shown as
    given, then swapped): ``sigmoid(d)`` and ``sigmoid(-d)`` with ``d`` the mean over the orders of
    the log-odds that A wins. (None, None) when either reading names neither choice."""
    given, swapped = first_shown_log_odds(top_given, choices), first_shown_log_odds(top_swapped, choices)
    if given is None or swapped is None:
        return None, None
    d = (given - swapped) / 2
    return 1 / (1 + math.exp(-d)), 1 / (1 + math.exp(d))


def verdict_from_ratings(rating_a: float | None, rating_b: float | None) -> Verdict | None:
    """The higher-rated answer wins; equal ratings tie; a missing rating gives no verdict."""
    if rating_a is None or rating_b is None:
        return None
    if rating_a > rating_b:
        return "A"
    if rating_b > rating_a:
        return "B"
    return "tie"


__all__ = [
    "MAX_LOG_ODDS", "TOP_LOGPROBS", "choice_key", "choice_probabilities", "choice_ratings", "first_shown_log_odds",
    "rating_from_logprobs", "verdict_from_ratings",
]
