"""Label-free pair sources: each one's losers, the mixture draw, the recipe fields, and synthesis over sources."""

from __future__ import annotations

import json
import random
import re

import pytest

from st_eval.errors import InputError
from st_eval.training.config import recipe_from_dict
from st_eval.training.instruction_pool import Instruction
from st_eval.training.pair_sources import Side, drawn, loser_of, make_source, mix_stats, cue_balanced, request_overlap, winner_of
from st_eval.training.pair_sources.assistant_style import OPENINGS, AssistantStyleSource
from st_eval.training.pair_sources.constraint import (
    DEFAULT_CONSTRAINTS, ConstraintSource, json_object, numbered_list, one_sentence, repeat_request, sentences, uppercase, word_limit,
)
from st_eval.training.pair_sources.degraded import DegradedSource, echoed, off_topic_tail, repeated, truncated
from st_eval.training.pair_sources.term_swap import TermSwapSource, swap_for, swap_term
from st_eval.training.pair_sources.weak_policy import WeakPolicySource
from st_eval.training.retrieval_neighbour import nearest_neighbours, synthesize_neighbour_pairs

LONG = "The sea rolls in slowly. Waves break on the rocks. Gulls cry above the foam. The tide turns at dusk and the beach grows quiet again."
ITEMS = [
    Instruction("sea", "Write a short poem about the sea.", "t", answer=LONG),
    Instruction("lake", "Write a short poem about a lake.", "t", answer="Still water holds the sky.\nReeds bend in the wind."),
    Instruction("temp", "Convert the temperature to Celsius.\n\n50 degrees Fahrenheit", "t", answer="50 degrees Fahrenheit is 10 degrees Celsius."),
    Instruction("dist", "Convert the distance to kilometers.\n\n10 miles", "t", answer="10 miles is about 16 kilometers."),
]


def _side(items=ITEMS, generate=None) -> Side:
    return Side(items, nearest_neighbours([i.text for i in items], 2, 0.99), "train", 0, generate)


def test_truncated_cuts_mid_sentence_to_a_quarter_to_a_half_of_the_words():
    for seed in range(20):
        cut = truncated(LONG, random.Random(seed))
        assert cut is not None and LONG.startswith(cut)
        assert 0.25 * len(LONG.split()) - 1 <= len(cut.split()) <= 0.5 * len(LONG.split())
        assert cut[-1] not in ".!?"
    assert truncated("Too short to cut.", random.Random(0)) is None


def test_repeated_repeats_one_unit_three_to_six_times_in_place():
    text = repeated("first line\nsecond line\nthird line", random.Random(1))
    lines = text.split("\n")
    assert 5 <= len(lines) <= 8 and set(lines) == {"first line", "second line", "third line"}
    one_line = repeated("One sentence. Another one.", random.Random(2))
    assert one_line.count("One sentence.") + one_line.count("Another one.") >= 4


def test_echoed_gives_back_the_input_or_the_request_and_never_the_answer_itself():
    assert echoed("Fix the grammar.\n\nhe go home", "He goes home.") == "he go home"
    assert echoed("Name a colour.", "Blue.") == "Name a colour."
    assert echoed("Repeat this.\n\nhello", "hello") is None


def test_off_topic_tail_appends_another_answer():
    assert off_topic_tail("Paris.", "Berlin is big.") == "Paris.\n\nBerlin is big."
    assert off_topic_tail("Paris. Berlin is big.", "Berlin is big.") is None
    assert off_topic_tail("Paris.", None) is None


def test_degraded_pairs_keep_the_answer_as_winner_and_name_their_damage():
    pairs, stats = DegradedSource().pairs(_side(), range(len(ITEMS)))
    assert len(pairs) == len(ITEMS)
    for pair in pairs:
        own = next(i for i in ITEMS if i.id == pair.metadata["instruction_id"])
        assert winner_of(pair) == own.answer and loser_of(pair) != own.answer
        assert pair.metadata["subset"] == "degraded" and pair.metadata["degradation"] in stats
    only_echo, _ = DegradedSource(["echoed"]).pairs(_side(), range(len(ITEMS)))
    assert {p.metadata["degradation"] for p in only_echo} == {"echoed"}
    several, _ = DegradedSource(count=3).pairs(_side(), [0])  # the long answer: every damage applies
    assert len(several) == 3 and len({p.metadata["degradation"] for p in several}) == 3 and len({p.id for p in several}) == 3


def test_term_swap_replaces_the_requests_key_term_in_its_answer_keeping_case():
    assert swap_term("Celsius is used. celsius again.", "celsius", "kilometers") == "Kilometers is used. kilometers again."
    item = ITEMS[2]
    assert swap_for(item, ["celsius", "temperature"], ["kilometers", "distance"]) == ("celsius", "kilometers")
    assert swap_for(item, ["absent"], ["kilometers"]) is None  # the answer never uses the term
    pairs, stats = TermSwapSource().pairs(_side(), range(len(ITEMS)))
    swapped = {p.metadata["instruction_id"]: p for p in pairs}
    assert "temp" in swapped
    loser = loser_of(swapped["temp"])
    term = swapped["temp"].metadata["term"]
    assert term.lower() not in loser.lower() and swapped["temp"].metadata["replacement"] in loser.lower()
    assert len(pairs) + stats["no_term"] == len(ITEMS)


def test_weak_policy_asks_the_generator_once_per_drawn_request_hot_and_short():
    calls = []

    def generate(prompts, sampling, tag):
        calls.append((len(prompts), sampling, tag))
        return ["a wandering answer" for _ in prompts]

    pairs, _ = WeakPolicySource(temperature=1.3, max_new_tokens=20).pairs(_side(generate=generate), [0, 2])
    assert [(n, s.temperature, s.max_new_tokens, t) for n, s, t in calls] == [(2, 1.3, 20, "weak_policy-train")]
    assert all(loser_of(p) == "a wandering answer" for p in pairs) and len(pairs) == 2
    with pytest.raises(InputError, match="generator"):
        WeakPolicySource().pairs(_side(), [0])


def test_assistant_style_dresses_the_winner_as_often_as_the_loser():
    items = [Instruction(f"i{n}", f"Write about subject {n} and item {n % 7}.", "t", answer=f"Subject {n} with item {n % 7}.") for n in range(60)]
    side = Side(items, nearest_neighbours([i.text for i in items], 1, 0.99), "train", 0)
    pairs, stats = AssistantStyleSource().pairs(side, range(len(items)))
    assert len(pairs) == 60 and 20 <= stats["winner_dressed"] <= 40 and stats["winner_dressed"] + stats["loser_dressed"] == 60
    for pair in pairs:
        own = next(i for i in items if i.id == pair.metadata["instruction_id"])
        dressed = winner_of(pair) if pair.metadata["dressed"] == "winner" else loser_of(pair)
        plain = loser_of(pair) if pair.metadata["dressed"] == "winner" else winner_of(pair)
        openings = tuple(o.split("{request}")[0] for o in OPENINGS)
        assert dressed.startswith(openings) and not plain.startswith(openings)
        assert own.answer in winner_of(pair) and own.answer not in loser_of(pair)
    restating = [p for p in pairs if own_request_in(p)]
    assert restating and {p.metadata["dressed"] for p in restating} == {"winner", "loser"}  # the request's words go to either side


def own_request_in(pair) -> bool:
    dressed = winner_of(pair) if pair.metadata["dressed"] == "winner" else loser_of(pair)
    return pair.instruction.split("\n")[0][:120] in dressed


def test_sentences_split_prose_and_refuse_what_a_rule_cannot_shorten():
    assert sentences(LONG) == ["The sea rolls in slowly.", "Waves break on the rocks.", "Gulls cry above the foam.", "The tide turns at dusk and the beach grows quiet again."]
    assert sentences("Line one ends here.\nLine two ends here.") == ["Line one ends here.", "Line two ends here."]
    assert sentences("Steps:\n- mix\n- bake") == []  # a list
    assert sentences("Here is the plan: first we go. Then we stop.") == ["Here is the plan: first we go.", "Then we stop."]
    assert sentences("It has two parts:\nOne. Two.") == []  # an introduction ends in a colon
    assert sentences("Still water holds the sky\nReeds bend") == []  # lines without a sentence end


def test_length_constraints_keep_leading_whole_sentences_within_the_stated_bound():
    constraint, first = one_sentence(LONG)
    assert constraint == "Answer in one sentence." and first == "The sea rolls in slowly."
    assert one_sentence("Yes. No.") is None  # a first sentence too short to stand alone
    long = " ".join(f"Sentence number {n} has exactly six words." for n in range(8))  # 56 words
    constraint, kept = word_limit(long)
    limit = int(re.search(r"at most (\d+) words", constraint).group(1))
    assert limit == 30 and len(kept.split()) <= limit and long.startswith(kept) and kept.endswith(".")
    assert len(kept.split()) > limit - 6  # as many whole sentences as fit
    assert word_limit(LONG) is None  # under 30 words: nothing to bound
    assert uppercase(LONG)[1] == LONG.upper() and uppercase("OK FINE.") is None


def test_constraint_pairs_flip_the_winner_with_the_request_and_keep_the_same_two_texts():
    items = ITEMS + [Instruction("caps", "Name two colours.", "t", answer="Blue and green, and sometimes teal.")]
    pairs, stats = ConstraintSource().pairs(_side(items), range(len(items)))
    by_id = {p.id: p for p in pairs}
    sea, sea_mirror = by_id["sea~constraint-one_sentence"], by_id["sea~constraint-one_sentence-mirror"]  # a length constraint first
    assert sea.instruction == "Write a short poem about the sea.\n\nAnswer in one sentence." and sea_mirror.instruction == ITEMS[0].text
    assert winner_of(sea) == loser_of(sea_mirror) == "The sea rolls in slowly." and loser_of(sea) == winner_of(sea_mirror) == LONG
    assert sea_mirror.metadata["mirror"] and "mirror" not in sea.metadata and sea.metadata["subset"] == "constraint"
    caps = next(p for p in pairs if p.metadata["instruction_id"] == "caps" and "mirror" not in p.metadata)
    assert caps.metadata["constraint"] in {"uppercase", "lowercase"} and loser_of(caps) == items[-1].answer
    assert len(pairs) == 2 * sum(v for k, v in stats.items() if k != "not_applicable")
    assert stats["not_applicable"] == 0  # every answer here has letters to change the case of
    spec = recipe_from_dict({"name": "t", "synthesis": {"method": "pair_sources", "sources": [{"kind": "constraint", "constraints": ["uppercase"], "mirror": False}]}}).synthesis.sources[0]
    plain, _ = make_source(spec, 1).pairs(_side(items), range(len(items)))
    assert all(p.metadata["constraint"] == "uppercase" and p.instruction.endswith("capital letters.") for p in plain) and len(plain) == len(items)
    mix = mix_stats(pairs)["constraint"]
    assert mix["winner_log_length_ratio"] == pytest.approx(0.0, abs=1e-9)  # the same texts on both sides


def test_format_constraints_rewrite_by_rule_and_the_list_mirror_states_the_opposite():
    constraint, listed = numbered_list(LONG)
    assert "numbered list" in constraint and listed.splitlines() == [f"{n}. {s}" for n, s in enumerate(sentences(LONG), 1)]
    assert numbered_list("One sentence. Two sentences.") is None  # under three points
    assert json.loads(json_object("Line one.\nLine \"two\".")[1]) == {"answer": "Line one.\nLine \"two\"."}
    assert repeat_request("Ten.", "What is 5 + 5?\n") == ("First repeat the request word for word, then answer it.", "What is 5 + 5?\n\nTen.")
    pairs, stats = ConstraintSource(["numbered_list"]).pairs(_side(), range(len(ITEMS)))
    assert stats == {"not_applicable": 3, "numbered_list": 1}  # only the poem is prose of 3+ sentences
    asked, opposite = sorted(pairs, key=lambda p: "mirror" in p.metadata)
    assert asked.instruction.endswith("one point per line.") and winner_of(asked) == loser_of(opposite) == listed
    assert opposite.instruction.endswith("without a list.") and winner_of(opposite) == loser_of(asked) == LONG
    repeated_pairs, _ = ConstraintSource(["repeat_request"]).pairs(_side(), range(len(ITEMS)))
    temp = next(p for p in repeated_pairs if p.metadata["instruction_id"] == "temp" and "mirror" not in p.metadata)
    assert winner_of(temp) == ITEMS[2].text + "\n\n" + ITEMS[2].answer  # the plain request, not the one stating the constraint
    mirror = next(p for p in repeated_pairs if p.metadata["instruction_id"] == "temp" and p.metadata.get("mirror"))
    assert mirror.instruction == ITEMS[2].text and winner_of(mirror) == ITEMS[2].answer
    default, _ = ConstraintSource().pairs(_side(), range(len(ITEMS)))
    assert {p.metadata["constraint"] for p in default} <= set(DEFAULT_CONSTRAINTS)  # format constraints only when named


def test_draws_are_seeded_per_source_and_share():
    items = [Instruction(f"i{n}", f"request {n}", "t", answer="x") for n in range(400)]
    half = drawn(items, "degraded", 0.5, seed=0)
    assert half == drawn(items, "degraded", 0.5, seed=0) and 150 < len(half) < 250
    assert set(drawn(items, "degraded", 0.25, seed=0)) <= set(half)  # a smaller share keeps a subset
    assert half != drawn(items, "term_swap", 0.5, seed=0)
    assert len(drawn(items, "degraded", 1.0, seed=0)) == 400


def test_mix_stats_count_pairs_and_how_often_the_loser_is_longer_or_overlaps_more():
    pairs, _ = DegradedSource(["off_topic_tail"]).pairs(_side(), range(len(ITEMS)))
    assert mix_stats(pairs)["degraded"]["pairs"] == len(pairs) and mix_stats(pairs)["degraded"]["loser_longer_share"] == 1.0
    grammar = [Instruction("g", "Fix the grammar.\n\nhe go home quickly", "t", answer="He goes home fast."), *ITEMS[:2]]
    echoes, _ = DegradedSource(["echoed"]).pairs(_side(grammar), [0])  # the input given back: the request's own words
    assert mix_stats(echoes)["degraded"]["loser_overlaps_more_share"] == 1.0
    swaps, _ = TermSwapSource().pairs(_side(), range(len(ITEMS)))  # the request's term taken out of the answer
    assert mix_stats(swaps)["term_swap"]["loser_overlaps_more_share"] == 0.0
    assert request_overlap("Convert the distance to kilometers", "10 miles is 16 kilometers") == 0.25


def test_synthesis_over_sources_covers_both_sides_and_names_each_source(tmp_path):
    items = [Instruction(f"i{n}", f"Write a note about topic {n} and colour {n % 5}.", "t", answer=f"A note on topic {n}, colour {n % 5}, in several words here.") for n in range(24)]
    recipe = recipe_from_dict({
        "name": "t", "synthesis": {"method": "pair_sources", "heldout": 6, "neighbours": 1,
                                     "sources": [{"kind": "neighbour"}, {"kind": "degraded", "share": 0.5}]},
    })

    def no_engine():
        raise AssertionError("no model should be needed")

    train, held, stats = synthesize_neighbour_pairs(items, no_engine, recipe.synthesis, seed=0, partial=tmp_path / "s.partial.jsonl", count_tokens=lambda: None, batch=4)
    for side in (train, held):
        assert {p.metadata["subset"] for p in side} == {"neighbour", "degraded"}
    assert stats["sources"]["train"]["neighbour"]["pairs"] == 18 and 0 < stats["sources"]["train"]["degraded"]["pairs"] < 18
    assert set(stats["mix"]) == {"neighbour", "degraded"}
    train_ids = {p.metadata["instruction_id"] for p in train}
    assert not train_ids & {p.metadata["instruction_id"] for p in held}


def test_cue_balance_leaves_neither_length_nor_word_overlap_a_cue():
    from st_eval.training.pair_sources import contrast_pair

    item = Instruction("r", "Name the largest planet of the solar system.", "t", answer="Jupiter")
    made = {  # (winner, loser) by (loser longer, which one shares more of the request's words)
        (False, "winner"): ("The largest planet is Jupiter.", "Mars."),
        (False, "loser"): ("Jupiter, I think.", "The solar system."),
        (False, "same"): ("Jupiter is big.", "Mars."),
        (True, "winner"): ("The largest planet is Jupiter.", "It is Saturn, the ringed one, or so I heard."),
        (True, "loser"): ("Jupiter.", "The largest planet of the solar system is Saturn."),
        (True, "same"): ("Jupiter is big.", "Mars is small and red."),
    }
    counts = {(False, "winner"): 30, (False, "loser"): 10, (False, "same"): 4, (True, "winner"): 20, (True, "loser"): 5, (True, "same"): 3}
    pairs = [contrast_pair(item, *made[c], "t", {}, 0, f"{c}-{n}") for c, count in counts.items() for n in range(count)]
    kept = cue_balanced(pairs, seed=0)
    assert kept == cue_balanced(pairs, seed=0) and {p.id for p in kept} <= {p.id for p in pairs}

    def cell(p):
        lead = request_overlap(p.instruction, winner_of(p)) - request_overlap(p.instruction, loser_of(p))
        return (len(loser_of(p)) > len(winner_of(p)), "winner" if lead > 0 else "loser" if lead < 0 else "same")

    assert {c: cell(p) for c, p in ((c, next(p for p in pairs if p.id.startswith(str(c)))) for c in counts)} == {c: c for c in counts}
    kept_cells = [cell(p) for p in kept]
    # the smallest decided cell (5) sets every decided cell, the smaller tie cell (3) both tie cells
    assert {c: kept_cells.count(c) for c in counts} == {(False, "winner"): 5, (False, "loser"): 5, (False, "same"): 3, (True, "winner"): 5, (True, "loser"): 5, (True, "same"): 3}
    kept_ids = {p.id for p in kept}
    assert [p.id for p in kept] == [p.id for p in pairs if p.id in kept_ids]  # the sources' order kept


def test_length_bands_balance_how_much_longer_the_winner_is_not_only_whether():
    """Balanced in sign, these pairs still tell length: where the gap is large (a cut copy) the
    winner is the longer one; with bands, each band holds as many longer winners as longer losers."""
    from st_eval.training.pair_sources import contrast_pair, length_bin, log_length_ratio as gap

    item = Instruction("r", "Name the largest planet of the solar system.", "t", answer="Jupiter")
    made = {  # (winner, loser), neither using the request's words
        ("near", "winner longer"): ("Jupiter it is.", "Mars, sure."),
        ("near", "loser longer"): ("Jupiter it is.", "Mars, I would say."),
        ("far", "winner longer"): ("Jupiter is by far biggest, as everyone knows.", "Mars."),
        ("far", "loser longer"): ("Jupiter.", "Mars, a red one, or maybe Venus, or Mercury, I heard."),
    }
    counts = {("near", "winner longer"): 6, ("near", "loser longer"): 20, ("far", "winner longer"): 20, ("far", "loser longer"): 6}
    pairs = [contrast_pair(item, *made[c], "t", {}, 0, f"{c}-{n}") for c, count in counts.items() for n in range(count)]

    assert {c: length_bin(next(p for p in pairs if p.id.startswith(str(c))), [0.5]) for c in counts} == {
        ("near", "winner longer"): 0, ("near", "loser longer"): 0, ("far", "winner longer"): 1, ("far", "loser longer"): 1}
    by_sign = cue_balanced(pairs, seed=0)
    assert sum(gap(p) > 0 for p in by_sign) == sum(gap(p) < 0 for p in by_sign) == 26
    assert sum(gap(p) for p in by_sign) / len(by_sign) > 0.2  # the winner is longer by more than the loser is
    banded = cue_balanced(pairs, seed=0, length_bins=[0.5])
    assert sorted(p.id.rsplit("-", 1)[0] for p in banded) == sorted([str(c) for c in counts for _ in range(6)])
    assert abs(sum(gap(p) for p in banded) / len(banded)) < abs(sum(gap(p) for p in by_sign) / len(by_sign)) / 3
    assert cue_balanced(pairs, seed=0, length_bins=[]) == by_sign


@pytest.mark.parametrize(
    ("synthesis", "field"),
    [
        ({"method": "pair_sources"}, "synthesis.sources"),
        ({"method": "retrieval_neighbour", "sources": [{"kind": "degraded"}]}, "synthesis.sources"),
        ({"method": "pair_sources", "sources": [{"kind": "degraded", "share": 0}]}, "synthesis.sources[0].share"),
        ({"method": "pair_sources", "sources": [{"kind": "degraded", "degradations": ["melted"]}]}, "synthesis.sources[0].degradations[0]"),
        ({"method": "pair_sources", "sources": [{"kind": "degraded"}, {"kind": "degraded"}]}, "synthesis.sources"),
        ({"method": "pair_sources", "sources": [{"kind": "paraphrase"}]}, "synthesis.sources[0].kind"),
        ({"method": "pair_sources", "sources": [{"kind": "degraded", "count": 5}]}, "synthesis.sources[0].count"),
        ({"method": "pair_sources", "sources": [{"kind": "constraint", "constraints": ["rhyming"]}]}, "synthesis.sources[0].constraints[0]"),
        ({"method": "similar_instruction", "balance_cues": True}, "synthesis.balance_cues"),
        ({"method": "retrieval_neighbour", "length_bins": [0.3]}, "synthesis.length_bins"),
        ({"method": "retrieval_neighbour", "balance_cues": True, "length_bins": [0.7, 0.3]}, "synthesis.length_bins"),
        ({"method": "retrieval_neighbour", "balance_cues": True, "length_bins": [0.0]}, "synthesis.length_bins"),
    ],
)
def test_bad_source_fields_are_refused_naming_the_field(synthesis, field):
    with pytest.raises(InputError, match=re.escape(f"field '{field}'")):
        recipe_from_dict({"name": "t", "synthesis": synthesis})


def test_a_runs_pair_file_reads_back_with_its_sources_as_subsets(tmp_path):
    """A run's pairs.heldout.jsonl (Pair.to_dict rows) can be judged as a benchmark, per source."""
    import json

    from st_eval.pair_files import load_pairs

    pairs, _ = DegradedSource(["echoed"]).pairs(_side(), range(len(ITEMS)))
    path = tmp_path / "pairs.heldout.jsonl"
    path.write_text("".join(json.dumps({**p.to_dict(), "note": "kept"}) + "\n" for p in pairs))
    loaded = load_pairs(path)
    assert [p.metadata["subset"] for p in loaded] == ["degraded"] * len(pairs)
    assert loaded[0].metadata["degradation"] == "echoed" and loaded[0].metadata["note"] == "kept"
    assert [(p.response_a, p.response_b, p.label) for p in loaded] == [(p.response_a, p.response_b, p.label) for p in pairs]
