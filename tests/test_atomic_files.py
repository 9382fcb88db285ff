"""st-eval's atomic writers: whole files or none, with the permissions a plain write gives."""

from __future__ import annotations

import json
import os
import stat

import pytest

from st_eval.jsonl import read_jsonl, write_json, write_jsonl, write_text


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_file_gets_the_umasks_permissions_not_the_staging_files(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # what open(path, "w") gives under this process's umask
    report = write_json(tmp_path / "report.json", {"a": 1})
    rows = write_jsonl(tmp_path / "rows.jsonl", [{"a": 1}])
    card = write_text(tmp_path / "card.md", "# judge\n")
    assert _mode(report) == _mode(plain) == _mode(rows) == _mode(card)
    assert json.loads(report.read_text()) == {"a": 1} and read_jsonl(rows) == [{"a": 1}]


def test_a_rewritten_file_keeps_its_own_permissions(tmp_path):
    path = write_json(tmp_path / "report.json", {"a": 1})
    os.chmod(path, 0o640)
    write_json(path, {"a": 2})
    assert _mode(path) == 0o640 and json.loads(path.read_text()) == {"a": 2}


def test_a_failed_write_leaves_the_old_file_and_no_staging_file(tmp_path):
    path = write_jsonl(tmp_path / "rows.jsonl", [{"a": 1}])

    def rows():
        yield {"a": 2}
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        write_jsonl(path, rows())
    assert read_jsonl(path) == [{"a": 1}]
    assert [p.name for p in tmp_path.iterdir()] == ["rows.jsonl"]
