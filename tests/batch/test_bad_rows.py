"""No row lost, through the CLI: broken CSV named (exit 2) or reported, every row once, exit 1 when too many fail."""

from __future__ import annotations

import csv
import json
import sys

import pytest

# The tiny fixture's tokenizer_config says 512; its model has 128 positions.
LEN = ["--max-length", "128", "--no-progress"]


def write(path, rows: list[str]) -> str:
    path.write_text("id,text\n" + "".join(r + "\n" for r in rows), encoding="utf-8")
    return str(path)


ISSUE_ROWS = ["1,first", '2,"opens a quote that never closes', "3,third", "4,fourth", "5,fifth"]


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_unterminated_quote_exits_2_naming_the_line_and_writes_nothing(engine, tiny_artifact, cli, tmp_path):
    # The issue's file: 5 rows, row 2 opens a quote that never closes (line 3).
    src = write(tmp_path / "in.csv", ISSUE_ROWS)
    out = tmp_path / "out.csv"
    code, _, err = cli("batch", tiny_artifact, src, "--out", out, "--engine", engine, *LEN)
    assert code == 2, err
    assert "line 3 (data row 2)" in err and "never closed" in err and "--on-bad-rows report" in err
    assert not out.exists() and not list(tmp_path.glob("*.bad-rows.jsonl"))


def test_report_keeps_every_row_once_with_its_id(tiny_artifact, cli, tmp_path):
    src = write(tmp_path / "in.csv", ISSUE_ROWS + ["6,", "7,seventh"])
    out = tmp_path / "out.csv"
    summary = tmp_path / "s.json"
    code, _, err = cli("batch", tiny_artifact, src, "--out", out, "--on-bad-rows", "report", "--json", summary, *LEN)
    assert code == 0, err
    rows = list(csv.DictReader(open(out, encoding="utf-8", newline="")))
    bad = [json.loads(line) for line in (tmp_path / "out.csv.bad-rows.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["1", "3", "4", "5", "6", "7"]  # the rows after the broken one are kept
    assert [(b["row"], b["line"], b["fields"]) for b in bad] == [(2, 3, {"id": "2"})]
    assert sorted([r["id"] for r in rows] + [b["fields"]["id"] for b in bad]) == [str(i) for i in range(1, 8)]
    assert rows[4]["error"].startswith("empty")
    counts = json.loads(summary.read_text())["counts"]
    assert counts == {"read": 7, "written": 6, "reported": 1, "ok": 5, "without_result": 2}
    assert "1 record(s) the CSV format rejects" in err and "lines 3" in err
    # A clean rerun removes the stale report: it would describe rows this output does not have.
    write(tmp_path / "in.csv", ["1,first"])
    assert cli("batch", tiny_artifact, src, "--out", out, "--on-bad-rows", "report", *LEN)[0] == 0
    assert not (tmp_path / "out.csv.bad-rows.jsonl").exists()


def test_every_row_failed_exits_1_with_the_complete_output(tiny_artifact, cli, tmp_path):
    src = write(tmp_path / "in.csv", ["1,", '2,"  "', "3,"])
    out = tmp_path / "out.jsonl"
    code, _, err = cli("batch", tiny_artifact, src, "--out", out, *LEN)
    assert code == 1 and "every row failed: none of the 3 row(s) got a result" in err
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == ["1", "2", "3"]


def test_max_bad_fraction(tiny_artifact, cli, tmp_path):
    src = write(tmp_path / "in.csv", ["1,a", "2,", "3,c", "4,d", "5,e"])
    out = tmp_path / "out.csv"
    code, _, err = cli("batch", tiny_artifact, src, "--out", out, "--max-bad-fraction", "0.1", *LEN)
    assert code == 1 and "1 of 5 row(s) (20.0%) got no result, more than --max-bad-fraction 0.1 allows" in err
    assert cli("batch", tiny_artifact, src, "--out", out, "--max-bad-fraction", "0.2", *LEN)[0] == 0
    code, _, err = cli("batch", tiny_artifact, src, "--out", out, "--max-bad-fraction", "1.5", *LEN)
    assert code == 2 and "between 0 and 1" in err


def test_ray_options_need_the_ray_engine_and_ray_itself(tiny_artifact, cli, tmp_path, monkeypatch):
    src = write(tmp_path / "in.csv", ["1,a"])
    code, _, err = cli("batch", tiny_artifact, src, "--out", tmp_path / "o.csv", "--resume", "--actors", "2", *LEN)
    assert code == 2 and "--actors, --resume only apply to --engine ray" in err
    code, _, err = cli("batch", tiny_artifact, src, "--out", tmp_path / "o.csv", "--engine", "spark", *LEN)
    assert code == 2 and "--engine spark is not known" in err
    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    code, _, err = cli("batch", tiny_artifact, src, "--out", tmp_path / "o", "--engine", "ray", *LEN)
    assert code == 2 and "pip install 'onnxforge[ray]'" in err


def test_ray_cuda_needs_a_gpu_share(tiny_artifact, cli, tmp_path):
    src = write(tmp_path / "in.csv", ["1,a"])
    code, _, err = cli("batch", tiny_artifact, src, "--out", tmp_path / "o", "--engine", "ray", "--device", "cuda", *LEN)
    assert code == 2 and "needs --gpus-per-actor" in err


def test_ray_refuses_an_output_folder_that_holds_the_input(tiny_artifact, cli, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    write(folder / "part-00000.csv", ["1,a"])
    code, _, err = cli("batch", tiny_artifact, folder, "--out", folder, "--engine", "ray", *LEN)
    assert code == 2 and "holds the input" in err
    assert (folder / "part-00000.csv").exists()
