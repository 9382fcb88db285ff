"""Hostile input files end with exit 2 and one line naming file, line and field: never a
traceback, never a model load. Run through the real CLI entry point (``cli.main``) for
``judge``, ``bench rewardbench``/``rewardbench2 --data-files``, ``gate`` and ``train --recipe``."""

from __future__ import annotations

import codecs
import json
import sys
import tracemalloc
from pathlib import Path

import pytest

from st_eval import cli, cli_options
from st_eval.errors import InputError
from st_eval.pair_files import load_pairs, read_rows

PAIR = {"id": "1", "instruction": "Name a prime.", "response_a": "7", "response_b": "8"}
RB = {"id": 1, "prompt": "Name a prime.", "chosen": "7", "rejected": "8", "subset": "math-prm"}
RB2 = {"id": "1", "prompt": "Name a prime.", "chosen": ["7"], "rejected": ["8", "9", "10"], "num_correct": 1, "subset": "Math"}
OUTPUT = {"question_id": 1, "model_id": "m", "choices": [{"index": 0, "turns": ["7"]}]}


def line(row: dict) -> bytes:
    return json.dumps(row).encode() + b"\n"


def corpus(good: dict) -> dict[str, tuple[bytes | None, str]]:
    """name -> (file bytes, or None for a folder; what the one error line must say). The
    second row is the hostile one where a row is needed, so messages must name line 2."""
    key = "question_id" if "question_id" in good else "id"
    second = json.dumps({**good, key: 2, "note": "NOTE"})  # a new row, with a note to spoil

    def spoiled(note: str, encoding: str = "utf-8") -> bytes:
        return line(good) + second.replace('"NOTE"', note).encode(encoding) + b"\n"

    return {
        "not-utf8": (spoiled('"caf\xe9"', "latin-1"), "line 2: not UTF-8 text (byte 0xe9)"),
        "nul-byte": (spoiled('"a\x00b"'), "line 2: not valid JSON: Invalid control character"),
        "huge-line": (line(good) + b'{"instruction": "' + b"x" * 50_000_000 + b"\n", "line 2: not valid JSON"),
        "array-row": (line(good) + b"[1, 2]\n", "line 2: expected a JSON object, got list"),
        "scalar-row": (line(good) + b"42\n", "line 2: expected a JSON object, got int"),
        "nan": (spoiled("NaN"), "line 2: not valid JSON: NaN is not a JSON number"),
        "infinity": (spoiled("-Infinity"), "line 2: not valid JSON: -Infinity is not a JSON number"),
        "deep": (line(good) + b"[" * 100_000 + b"\n", "line 2: not valid JSON: nested too deeply"),
        "duplicate-id": (line(good) + line(good), "line 2: field 'id': duplicate"),
        "empty": (b"\n\n", "file is empty"),
        "folder": (None, "is a folder; expected a file"),
    }


def write(tmp_path: Path, name: str, content: bytes | None, suffix: str = ".jsonl") -> Path:
    path = tmp_path / f"{name}{suffix}"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    return path


def run_cli(monkeypatch, capsys, args: list[str]) -> tuple[int, str]:
    def no_engine(*a, **k):
        raise AssertionError("no judge may be built for bad input")

    monkeypatch.setattr(cli_options, "build_engine", no_engine)
    monkeypatch.setattr(sys, "argv", ["st-eval", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    return exit_info.value.code, capsys.readouterr().err


def assert_one_line_error(code: int, err: str, path: Path, expected: str) -> None:
    lines = [row for row in err.splitlines() if row.strip()]
    assert code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1 and str(path) in lines[0] and expected in lines[0], err


COMMANDS = {
    "judge": (PAIR, lambda p, d: ["judge", str(p)]),
    "bench-rewardbench": (RB, lambda p, d: ["bench", "rewardbench", "--data-files", str(p)]),
    "bench-rewardbench2": (RB2, lambda p, d: ["bench", "rewardbench2", "--data-files", str(p)]),
    "gate": (OUTPUT, lambda p, d: ["gate", "--candidate", str(p), "--baseline", str(d / "base.jsonl"), "--prompts", str(d / "q.jsonl"),
                                   "--report-json", str(d / "report.json"), "--outputs-dir", str(d / "out")]),
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("hostile", list(corpus(PAIR)))
def test_hostile_files_exit_2_with_one_line(tmp_path, monkeypatch, capsys, command, hostile):
    good, args = COMMANDS[command]
    content, expected = corpus(good)[hostile]
    if command == "gate":
        (tmp_path / "base.jsonl").write_bytes(line({**OUTPUT, "model_id": "base"}))
        (tmp_path / "q.jsonl").write_bytes(line({"question_id": 1, "turns": ["Name a prime."]}))
        if hostile == "duplicate-id":
            expected = "line 2: field 'id': duplicate prompt id"
    if command == "bench-rewardbench" and hostile == "folder":
        expected = "no LLMBar files"  # a folder is read as the LLMBar release layout
    path = write(tmp_path, hostile, content)
    code, err = run_cli(monkeypatch, capsys, args(path, tmp_path))
    assert_one_line_error(code, err, path, expected)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("instruction", 5, "field 'instruction'"),
        ("response_a", ["7"], "field 'response_a' is missing or not a string"),
        ("response_b", None, "field 'response_b' is missing or not a string"),
        ("label", "maybe", "field 'label' must be A or B"),
        ("id", {"n": 1}, "field 'id' must be a string or a whole number, got dict"),
        ("id", True, "field 'id' must be a string or a whole number, got bool"),
        ("conversation", "hi", "field 'conversation' must be a non-empty list"),
        ("turns_a", [1], "field 'turns_a' must be a list of strings"),
        ("reference", 3, "field 'reference' must be a string"),
    ],
)
def test_each_pair_field_with_a_wrong_type_is_named(tmp_path, monkeypatch, capsys, field, value, expected):
    row = {**PAIR, field: value}
    if field == "instruction":
        row.pop("instruction")
        row["input"] = value
    path = write(tmp_path, "pairs", line(PAIR | {"id": "0"}) + line(row))
    code, err = run_cli(monkeypatch, capsys, ["judge", str(path)])
    assert_one_line_error(code, err, path, f"line 2: {expected}")


def test_parquet_with_missing_columns_and_a_broken_parquet_file(tmp_path, monkeypatch, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "pairs.parquet"
    pq.write_table(pa.Table.from_pylist([{"instruction": "q", "response_a": "a"}]), path)
    code, err = run_cli(monkeypatch, capsys, ["judge", str(path)])
    assert_one_line_error(code, err, path, "line 1: field 'response_b' is missing or not a string")
    broken = write(tmp_path, "broken", b"PAR1 not really", ".parquet")
    code, err = run_cli(monkeypatch, capsys, ["judge", str(broken)])
    assert_one_line_error(code, err, broken, "not a readable parquet file")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"seed_model: x\nname: \xff\xfe\n", "line 2: not UTF-8 text"),
        (None, "is a folder; expected a file"),
        (b"- a\n- b\n", "a recipe must be a mapping of fields"),
        (b"name: [unclosed\n", "not valid YAML"),
    ],
    ids=["not-utf8", "folder", "a-list", "broken-yaml"],
)
def test_hostile_recipes_exit_2_with_one_line(tmp_path, monkeypatch, capsys, content, expected):
    path = write(tmp_path, "recipe", content, ".yaml")
    code, err = run_cli(monkeypatch, capsys, ["train", "--recipe", str(path), "--run-dir", str(tmp_path / "run")])
    assert code == 2 and "Traceback" not in err and str(path) in err and expected in " ".join(err.split()), err


def test_a_bom_and_crlf_line_ends_are_read(tmp_path):
    path = write(tmp_path, "windows", codecs.BOM_UTF8 + line(PAIR).replace(b"\n", b"\r\n") + line({**PAIR, "id": "2"}).replace(b"\n", b"\r\n"))
    pairs = load_pairs(path)
    assert [p.id for p in pairs] == ["1", "2"] and pairs[0].instruction == "Name a prime." and pairs[1].response_b == "8"


def test_jsonl_is_read_streaming_with_memory_bounded_by_the_longest_line(tmp_path):
    """Rows come out one at a time: the first row is yielded before a bad last line is read,
    and iterating a 24 MB file costs a small fraction of its size in memory."""
    path = tmp_path / "big.jsonl"
    row = line({**PAIR, "response_a": "x" * 200})
    with path.open("wb") as handle:
        for i in range(100_000):
            handle.write(row)
        handle.write(b"{broken\n")
    rows = read_rows(path)
    assert next(rows)[1]["id"] == "1"
    tracemalloc.start()
    with pytest.raises(InputError, match=r"big.jsonl: line 100001: not valid JSON"):
        for _ in rows:
            pass
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert path.stat().st_size > 20_000_000 and peak < 1_000_000
