"""--shard i/n: contiguous parts that cover everything once and match datasets' own split."""

from __future__ import annotations

import pytest

from st_eval.errors import InputError
from st_eval.shard import parse_shard, take_shard


@pytest.mark.parametrize("length,count", [(0, 3), (7, 3), (10, 4), (5, 5), (3, 8)])
def test_shards_partition_the_items_in_order(length, count):
    items = list(range(length))
    parts = [take_shard(items, (i, count)) for i in range(count)]
    assert [x for part in parts for x in part] == items
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_split_matches_datasets_contiguous_shard():
    from datasets import Dataset

    table = Dataset.from_dict({"x": list(range(11))})
    for i in range(4):
        assert take_shard(list(range(11)), (i, 4)) == table.shard(num_shards=4, index=i, contiguous=True)["x"]


@pytest.mark.parametrize("bad", ["4/4", "-1/2", "1", "a/b", "0/0"])
def test_bad_shard_names_the_option(bad):
    with pytest.raises(InputError, match="--shard"):
        parse_shard(bad)


def test_judge_cli_judges_only_its_shard(tmp_path, monkeypatch):
    """The judge command passes only its shard to the judge (engine replaced by a fake)."""
    import json

    from typer.testing import CliRunner

    from st_eval import cli_options
    from st_eval.cli import app
    from st_eval.engines.base import Engine

    class Fixed(Engine):
        name = "fake"

        def generate(self, prompts, n=1, sampling=None):
            return [["Final verdict: [[A]]"] * n for _ in prompts]

    monkeypatch.setattr(cli_options, "make_engine", lambda name, model, **o: Fixed("m"))
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"id": str(i), "instruction": "q", "response_a": "a", "response_b": "b"}) + "\n" for i in range(5)))
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(app, ["judge", str(pairs), "--shard", "1/2", "-o", str(out), "--no-cache", "--template", "pairwise-v1"])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["pair_id"] for line in out.read_text().splitlines()] == ["3", "4"]
