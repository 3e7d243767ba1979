"""The Ray engine's shard plan: every row of CSV, JSONL and Parquet inputs in exactly one shard, bad records found up front."""

from __future__ import annotations

import json

import pytest

from onnxforge.batch.shards import plan_input, read_shard
from onnxforge.errors import UserInputError

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def all_rows(plan, text_column="text", keep=("id",)):
    rows, texts, errors, ids, bad = [], [], [], [], 0
    for shard in plan.shards:
        got = read_shard(shard, plan.columns, text_column, list(keep))
        rows += got.rows
        texts += got.texts
        errors += got.errors
        ids += list(got.carried["id"]) if not hasattr(got.carried["id"], "to_pylist") else got.carried["id"].to_pylist()
        bad += got.bad
    return rows, texts, errors, ids, bad


def test_csv_shards_cover_every_row_once_and_name_the_broken_one(tmp_path):
    lines = ["id,text"] + [f'{i},"text {i}, with a comma"' for i in range(1, 11)]
    lines[5] = '5,"opens and never closes'  # data row 5, line 6
    lines.append('11,"multi\nline"')
    src = tmp_path / "in.csv"
    src.write_text("\n".join(lines) + "\n")
    plan = plan_input(str(src), None, shard_rows=3)
    assert plan.format == "csv" and plan.columns == ["id", "text"]
    assert plan.rows == 11 and [s.rows for s in plan.shards] == [3, 3, 3, 2]
    assert [(b["row"], b["line"], b["fields"]) for b in plan.bad] == [(5, 6, {"id": "5"})]
    rows, texts, errors, ids, bad = all_rows(plan)
    assert bad == 1 and rows == [1, 2, 3, 4, 6, 7, 8, 9, 10, 11]
    assert ids == [str(r) for r in rows]
    assert texts[-1] == "multi\nline" and all(e is None for e in errors)


def test_jsonl_bad_lines_are_reported_and_missing_texts_are_row_errors(tmp_path):
    src = tmp_path / "in.jsonl"
    records = [json.dumps({"id": i, "text": f"t{i}"}) for i in range(1, 6)]
    records[1] = "{not json"
    records[3] = json.dumps({"id": 4, "text": None})
    src.write_text("\n".join(records) + "\n\n")  # a trailing blank line is not a row
    plan = plan_input(str(src), None, shard_rows=2)
    assert plan.rows == 5 and plan.columns == ["id", "text"]
    assert [(b["row"], b["line"]) for b in plan.bad] == [(2, 2)]
    rows, texts, errors, ids, bad = all_rows(plan)
    assert rows == [1, 3, 4, 5] and ids == ["1", "3", "4", "5"] and bad == 1
    assert errors[2].startswith("empty") and texts[2] is None


def test_parquet_shards_split_row_groups(tmp_path):
    src = tmp_path / "in.parquet"
    table = pa.table({"id": list(range(1, 26)), "text": [f"t{i}" if i != 7 else "  " for i in range(1, 26)]})
    pq.write_table(table, src, row_group_size=10)
    plan = plan_input(str(src), None, shard_rows=4)
    assert plan.rows == 25 and not plan.bad
    assert [s.rows for s in plan.shards] == [4, 4, 2, 4, 4, 2, 4, 1]
    rows, texts, errors, ids, _ = all_rows(plan)
    assert rows == list(range(1, 26)) and ids == list(range(1, 26))
    assert errors[6].startswith("empty")


def test_a_folder_of_files_and_a_missing_input(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for k in range(2):
        (folder / f"part{k}.csv").write_text("id,text\n" + "".join(f"{k}{i},x{i}\n" for i in range(3)))
    (folder / "_SUCCESS").write_text("")
    plan = plan_input(str(folder), None, shard_rows=2)
    assert len(plan.files) == 2 and plan.rows == 6 and [s.file_index for s in plan.shards] == [0, 0, 1, 1]
    assert len({s.name for s in plan.shards}) == 4
    with pytest.raises(UserInputError, match="does not exist"):
        plan_input(str(tmp_path / "nope.csv"), None, shard_rows=2)
