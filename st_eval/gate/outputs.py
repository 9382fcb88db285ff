"""Loading candidate and baseline outputs keyed by prompt id, and pairing them for the judge.

An outputs file (JSONL, JSON list or parquet) holds one row per prompt:

* MT-Bench ``model_answer`` rows as they are: ``{"question_id", "model_id",
  "choices": [{"turns": [answer_1, answer_2]}]}``;
* or plain rows: an id (``id``, ``prompt_id`` or ``question_id``) and the answer, ``output``
  (``response``, ``answer``) for one turn or ``outputs`` (``responses``) with one answer per
  user turn. A row may also carry its prompt (``prompt``/``instruction``/``input``, ``turns``
  as a list of user turns, or ``conversation``) and a ``category``.

A prompts file (``--prompts``) supplies prompt texts when the outputs carry only ids; MT-Bench's
``question.jsonl`` (``question_id``, ``category``, ``turns``) works as is. Every error names the
file, the line and the field. A prompt that one side did not answer is an error, never a skip.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from st_eval.errors import InputError
from st_eval.pair_files import read_rows
from st_eval.records import Message, Pair

ID_FIELDS = ("id", "prompt_id", "question_id")
PROMPT_FIELDS = ("prompt", "instruction", "input")
ANSWER_FIELDS = ("output", "response", "answer")
ANSWERS_FIELDS = ("outputs", "responses")
_MAX_LISTED = 5


@dataclass
class PromptItem:
    """One prompt of the gated set: the user turns (with an optional system message) and its category.

    conversation: messages the model answered; for multi-turn prompts one user message per turn
        (the model's own earlier answers are not part of the prompt).
    category: used for per-category statistics and thresholds; ``None`` when unknown.
    reference: optional reference answer for the final turn, shown to the judge.
    where: ``file: line N`` of the row that supplied the prompt, for error messages.
    """

    id: str
    conversation: list[Message]
    category: str | None = None
    reference: str | None = None
    where: str = ""

    @property
    def user_turns(self) -> list[str]:
        return [m.content for m in self.conversation if m.role == "user"]

    def to_row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "conversation": [{"role": m.role, "content": m.content} for m in self.conversation],
            "category": self.category,
        }


@dataclass
class Answer:
    """One model's answer to one prompt: one string per user turn."""

    prompt_id: str
    turns: list[str]
    where: str
    prompt: PromptItem | None = None


@dataclass
class ModelOutputs:
    """Everything one outputs file says: answers keyed by prompt id, and the model's name if given."""

    path: Path
    answers: dict[str, Answer]
    model: str | None = None


def _row_id(row: dict[str, Any], where: str) -> str:
    for key in ID_FIELDS:
        value = row.get(key)
        if value is not None:
            if not isinstance(value, (str, int)) or isinstance(value, bool):
                raise InputError(f"{where}: field {key!r} must be a string or an integer, got {value!r}")
            return str(value)
    raise InputError(f"{where}: no prompt id: expected one of the fields {', '.join(map(repr, ID_FIELDS))}")


def _string_list(value: Any, where: str, key: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(t, str) for t in value):
        raise InputError(f"{where}: field {key!r} must be a non-empty list of strings")
    return value


def _prompt_from_row(row: dict[str, Any], where: str, prompt_id: str) -> PromptItem | None:
    """The prompt a row carries, or None when it carries only an id."""
    category = row.get("category")
    if category is not None and not isinstance(category, str):
        raise InputError(f"{where}: field 'category' must be a string, got {category!r}")
    reference = _reference(row, where)
    if row.get("conversation") is not None:
        turns = row["conversation"]
        if not isinstance(turns, list) or not turns:
            raise InputError(f"{where}: field 'conversation' must be a non-empty list of {{role, content}}")
        messages = []
        for index, turn in enumerate(turns):
            if not isinstance(turn, dict) or not isinstance(turn.get("content"), str) or turn.get("role") not in ("system", "user"):
                raise InputError(
                    f"{where}: field 'conversation[{index}]' must be {{role: system|user, content: str}} "
                    "(the models' own answers belong in the outputs)"
                )
            messages.append(Message(turn["role"], turn["content"]))
        if not any(m.role == "user" for m in messages):
            raise InputError(f"{where}: field 'conversation' has no user turn")
        return PromptItem(prompt_id, messages, category, reference, where)
    if row.get("turns") is not None:
        turns = _string_list(row["turns"], where, "turns")
        return PromptItem(prompt_id, [Message("user", t) for t in turns], category, reference, where)
    for key in PROMPT_FIELDS:
        if row.get(key) is not None:
            if not isinstance(row[key], str):
                raise InputError(f"{where}: field {key!r} must be a string")
            return PromptItem(prompt_id, [Message("user", row[key])], category, reference, where)
    if category is not None or reference is not None:
        return PromptItem(prompt_id, [], category, reference, where)
    return None


def _reference(row: dict[str, Any], where: str) -> str | None:
    value = row.get("reference")
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(t, str) for t in value):
        return value[-1]
    raise InputError(f"{where}: field 'reference' must be a string or a list of strings (one per turn)")


def _answer_turns(row: dict[str, Any], where: str) -> list[str]:
    if "choices" in row:
        choices = row["choices"]
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise InputError(f"{where}: field 'choices' must be a non-empty list of {{index, turns}}")
        return _string_list(choices[0].get("turns"), where, "choices[0].turns")
    for key in ANSWERS_FIELDS:
        if row.get(key) is not None:
            return _string_list(row[key], where, key)
    for key in ANSWER_FIELDS:
        if key in row:
            if not isinstance(row[key], str):
                raise InputError(f"{where}: field {key!r} must be a string (use 'outputs' for one answer per turn)")
            return [row[key]]
    raise InputError(
        f"{where}: no answer: expected 'choices' (MT-Bench), 'outputs' (one per turn) or 'output'"
    )


def load_outputs(path: str | Path) -> ModelOutputs:
    """Read one model's outputs file; duplicate ids and rows without answers are errors."""
    path = Path(path)
    answers: dict[str, Answer] = {}
    models: set[str] = set()
    for number, row in read_rows(path):
        where = f"{path}: line {number}"
        prompt_id = _row_id(row, where)
        if prompt_id in answers:
            raise InputError(f"{where}: field 'id': duplicate prompt id {prompt_id!r} (first at {answers[prompt_id].where})")
        turns = _answer_turns(row, where)
        prompt = _prompt_from_row(row, where, prompt_id) if "choices" not in row else None
        answers[prompt_id] = Answer(prompt_id, turns, where, prompt)
        for key in ("model_id", "model"):
            if isinstance(row.get(key), str):
                models.add(row[key])
    if not answers:
        raise InputError(f"{path}: file holds no outputs")
    return ModelOutputs(path, answers, model=models.pop() if len(models) == 1 else None)


def load_prompts(path: str | Path) -> dict[str, PromptItem]:
    """Read a prompt set keyed by id (MT-Bench ``question.jsonl`` as is)."""
    path = Path(path)
    prompts: dict[str, PromptItem] = {}
    for number, row in read_rows(path):
        where = f"{path}: line {number}"
        prompt_id = _row_id(row, where)
        if prompt_id in prompts:
            raise InputError(f"{where}: field 'id': duplicate prompt id {prompt_id!r} (first at {prompts[prompt_id].where})")
        prompt = _prompt_from_row(row, where, prompt_id)
        if prompt is None or not prompt.conversation:
            raise InputError(f"{where}: no prompt text: expected 'turns', 'conversation' or one of {', '.join(map(repr, PROMPT_FIELDS))}")
        prompts[prompt_id] = prompt
    if not prompts:
        raise InputError(f"{path}: file holds no prompts")
    return prompts


def _listed(ids: list[str]) -> str:
    shown = ", ".join(ids[:_MAX_LISTED])
    return shown + (f" and {len(ids) - _MAX_LISTED} more" if len(ids) > _MAX_LISTED else "")


def _id_order(prompt_id: str) -> tuple[int, int | str]:
    return (0, int(prompt_id)) if prompt_id.isdigit() else (1, prompt_id)


def resolve_prompts(
    candidate: ModelOutputs, baseline: ModelOutputs, prompts: dict[str, PromptItem] | None = None
) -> list[PromptItem]:
    """The gated prompt set, with texts from ``--prompts`` or else from the outputs themselves.

    Without a prompts file the set is every id either side answered. Both sides must answer
    every prompt: a missing output is an error naming the file and the ids.
    """
    ids = list(prompts) if prompts is not None else sorted({*candidate.answers, *baseline.answers}, key=_id_order)
    for side in (candidate, baseline):
        missing = [i for i in ids if i not in side.answers]
        if missing:
            raise InputError(f"{side.path}: missing outputs for {len(missing)} prompt id(s): {_listed(missing)}")
    resolved = []
    for prompt_id in ids:
        given = prompts[prompt_id] if prompts is not None else None
        carried = [a.prompt for a in (candidate.answers[prompt_id], baseline.answers[prompt_id]) if a.prompt is not None]
        texts = [p for p in carried if p.conversation]
        if given is None and len(texts) == 2 and texts[0].conversation != texts[1].conversation:
            raise InputError(
                f"{texts[1].where}: field 'prompt' differs from {texts[0].where} for prompt id {prompt_id!r}: "
                "candidate and baseline must answer the same prompt"
            )
        item = given or (texts[0] if texts else None)
        if item is None:
            raise InputError(
                f"{candidate.answers[prompt_id].where}: prompt id {prompt_id!r} has no prompt text: "
                "give --prompts FILE (MT-Bench question.jsonl works as is)"
            )
        category = item.category or next((p.category for p in carried if p.category), None)
        reference = item.reference or next((p.reference for p in carried if p.reference), None)
        resolved.append(PromptItem(prompt_id, item.conversation, category, reference, item.where))
    return resolved


def apply_references(prompts: list[PromptItem], references: ModelOutputs) -> list[PromptItem]:
    """Attach reference answers (an outputs file, e.g. MT-Bench ``reference_answer``) by prompt id.

    Prompts without a reference keep none; the final turn's reference is the one shown.
    """
    out = []
    for item in prompts:
        found = references.answers.get(item.id)
        reference = found.turns[min(len(found.turns), len(item.user_turns)) - 1] if found else item.reference
        out.append(PromptItem(item.id, item.conversation, item.category, reference, item.where))
    return out


def build_pairs(prompts: list[PromptItem], candidate: ModelOutputs, baseline: ModelOutputs) -> list[Pair]:
    """One pair per prompt: response A is the candidate's answer, response B the baseline's.

    Multi-turn prompts carry every turn's answers (``turns_a``/``turns_b``) so the judge reads
    both whole conversations and decides on the final turn.
    """
    pairs = []
    for item in prompts:
        users = len(item.user_turns)
        sides = []
        for side in (candidate, baseline):
            answer = side.answers[item.id]
            if len(answer.turns) != users:
                raise InputError(
                    f"{answer.where}: field 'turns': prompt id {item.id!r} has {users} user turn(s) "
                    f"but {len(answer.turns)} answer(s)"
                )
            sides.append(answer.turns)
        multi = users > 1
        pairs.append(
            Pair(
                id=item.id,
                conversation=item.conversation,
                response_a=sides[0][-1],
                response_b=sides[1][-1],
                reference=item.reference,
                turns_a=sides[0] if multi else None,
                turns_b=sides[1] if multi else None,
                metadata={"category": item.category},
            )
        )
    return pairs
