"""Pair source ``term_swap``: the loser answers a similar but different request.

The Self-Taught Evaluator's loser is a good answer to a modified request x' that the model
writes itself. A request's identity often rests on one specific term ("a poem about *cats*",
"convert to *Celsius*"), so x' can be made without a model: swap that term for the matching term
of the nearest other request. The loser is then the request's own answer with the same swap
applied: fluent, on the same task and form, of the same length, and answering x' instead of x.
Only a judge that checks the answer against the request tells the two apart.

The term is the request's highest TF-IDF word (4+ letters, alphabetic) that the answer also
uses; its replacement is the nearest neighbour's highest such word that the request lacks.
Requests without such a pair of terms get no pair (counted).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from st_eval.records import Pair
from st_eval.training.instruction_pool import Instruction
from st_eval.training.pair_sources import Side, contrast_pair

NAME = "term_swap"
_WORD = re.compile(r"[A-Za-z]{4,}")


def ranked_terms(texts: Sequence[str]) -> list[list[str]]:
    """Per text, its alphabetic words of 4+ letters by decreasing TF-IDF weight (lower case)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(stop_words="english", sublinear_tf=True, token_pattern=r"(?u)\b[A-Za-z]{4,}\b", lowercase=True)
    matrix = vectorizer.fit_transform(texts)
    vocabulary = vectorizer.get_feature_names_out()
    ranked = []
    for row in range(matrix.shape[0]):
        weights = matrix.getrow(row)
        order = sorted(zip(weights.data, weights.indices), key=lambda t: (-t[0], vocabulary[t[1]]))
        ranked.append([str(vocabulary[i]) for _, i in order])
    return ranked


def swap_term(text: str, term: str, replacement: str) -> str:
    """``text`` with every whole-word ``term`` (any case) replaced, keeping each one's capitals."""

    def keep_case(match: re.Match[str]) -> str:
        found = match.group(0)
        if found.isupper():
            return replacement.upper()
        if found[0].isupper():
            return replacement[0].upper() + replacement[1:]
        return replacement

    return re.sub(rf"\b{re.escape(term)}\b", keep_case, text, flags=re.IGNORECASE)


def swap_for(item: Instruction, own_terms: Sequence[str], neighbour_terms: Sequence[str]) -> tuple[str, str] | None:
    """(term of the request found in its answer, replacement from the neighbour), or None."""
    answer_words = {w.lower() for w in _WORD.findall(item.answer or "")}
    request_words = {w.lower() for w in _WORD.findall(item.text)}
    term = next((t for t in own_terms if t in answer_words), None)
    replacement = next((t for t in neighbour_terms if t not in request_words and t not in answer_words), None)
    if term is None or replacement is None:
        return None
    return term, replacement


class TermSwapSource:
    """Each drawn request's answer with its key term swapped for the nearest request's."""

    name = NAME

    def pairs(self, side: Side, chosen: Sequence[int]) -> tuple[list[Pair], dict[str, int]]:
        terms = ranked_terms([item.text for item in side.items]) if chosen else []
        pairs: list[Pair] = []
        stats = {"no_term": 0}
        for index in chosen:
            item = side.items[index]
            nearest = side.neighbours[index][0][0] if side.neighbours[index] else None
            found = swap_for(item, terms[index], terms[nearest]) if nearest is not None else None
            if found is None:
                stats["no_term"] += 1
                continue
            term, replacement = found
            loser = swap_term(item.answer or "", term, replacement)
            extra = {"term": term, "replacement": replacement, "neighbour": side.items[nearest].id}  # type: ignore[index]
            pairs.append(contrast_pair(item, item.answer or "", loser, NAME, extra, side.seed, f"{item.id}~{NAME}"))
        return pairs, stats


__all__ = ["TermSwapSource", "ranked_terms", "swap_for", "swap_term"]
