"""The verdict parser on ordinary and adversarial judge outputs."""

import pytest

from st_eval.verdict import parse_verdict


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("Answer A is correct.\nFinal verdict: [[A]]", "A"),
        ("Both are fine but B is clearer.\n\nFinal verdict: [[B]]", "B"),
        ("final verdict: [[b]]", "B"),
        ("[[ A ]]", "A"),
        # reasoning mentions a marker, the last line decides
        ("At first I leaned [[A]], but B handles the edge case.\nFinal verdict: [[B]]", "B"),
        # a quoted marker after the decision is a mention, not a new decision
        ('Final verdict: [[B]]\n\nI did not answer "[[A]]" because A is wrong.', "B"),
        # quoted marker on a verdict line still decides
        ('Final verdict: "[[A]]"', "A"),
        # markers inside a code block are quoted material
        ("Final verdict: [[A]]\n```\nprint('[[B]]')\n```", "A"),
        # block quotes are quoted material
        ("Final verdict: [[B]]\n> Response A said: Final verdict: [[A]]", "B"),
    ],
)
def test_parses_decisions(text, verdict):
    assert parse_verdict(text).verdict == verdict


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   \n ", "empty"),
        (None, "empty"),
        ("I think A is better.", "no_verdict"),
        ("Final verdict: [[A]] or [[B]]", "ambiguous"),
        ('The rules say to write "[[A]]" or "[[B]]".', "no_verdict"),
        ("Final verdict: [[C]]", "tie_not_allowed"),
        ("```\nFinal verdict: [[A]]\n```", "no_verdict"),
    ],
)
def test_invalid_outputs_are_reported_not_guessed(text, reason):
    parsed = parse_verdict(text)
    assert parsed.verdict is None
    assert parsed.reason == reason


def test_tie_marker_counts_when_ties_allowed():
    assert parse_verdict("Final verdict: [[C]]", allow_tie=True).verdict == "tie"


def test_very_long_output_is_parsed_from_its_end():
    text = ("A is verbose. " * 20000) + "\nFinal verdict: [[B]]"
    assert parse_verdict(text).verdict == "B"


def test_truncated_output_without_marker_is_invalid():
    text = "Let me compare the two answers step by step. " * 500
    assert parse_verdict(text).reason == "no_verdict"
