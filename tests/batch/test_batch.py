"""`onnxforge batch`: RFC 4180 input, row order and ids kept, values vs PyTorch, errors reported, atomic output."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from onnxforge.batch import BatchOptions, batch_file

from tests.runtime_helpers import TINY_MAX_LENGTH, assert_close_rows

# (id, text, note): quoted multi-line fields, quotes, commas, CRLF inside a field,
# Unicode, empty and blank texts, a text longer than the model's maximum.
ROWS = [
    ("r01", "First line\nsecond line of the same field", "multi-line"),
    ("r02", 'She said "hello", then left.', 'carried: "quotes", commas,\nnewlines'),
    ("r03", "", "empty"),
    ("r04", "Grüße aus Köln — naïve café, 東京 🚀", "unicode"),
    ("r05", "line one\r\nline two\r\n\r\nline four", "crlf inside"),
    ("r06", "   ", "blank"),
    ("r07", "A package description: " + "tokens " * 700, "long"),
    ("r08", "x", "one char"),
] + [(f"r{i:02d}", f"Sentence number {i} about Debian packages, {'more words ' * (i % 7)}", "filler") for i in range(9, 30)]


def write_input(path, rows=ROWS, bom=True):
    with open(path, "w", encoding="utf-8-sig" if bom else "utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\r\n")
        writer.writerow(["id", "text", "note"])
        writer.writerows(rows)
    return path


def read_csv(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_batch_csv_matches_pytorch_in_input_order(minilm_artifact, minilm_runtime, minilm_reference, tmp_path):
    src = write_input(tmp_path / "in.csv")
    assert src.read_bytes().startswith(b"\xef\xbb\xbf")
    out = tmp_path / "out.csv"
    # Small chunks and batches: several chunks, each sorted by length, must still come out in order.
    report = batch_file(minilm_artifact, src, out, BatchOptions(batch_size=4, chunk_rows=8), runtime=minilm_runtime)
    rows = read_csv(out)
    assert list(rows[0]) == ["id", "note", "embedding", "error"]
    assert [r["id"] for r in rows] == [r[0] for r in ROWS]
    assert [r["note"] for r in rows] == [r[2] for r in ROWS]
    assert report.rows == len(ROWS) and report.ok_rows == len(ROWS) - 2
    assert report.empty_rows == [3, 6] and report.empty_count == 2 and not report
    assert report.truncated_count == 1
    ok = [i for i, r in enumerate(ROWS) if r[1].strip()]
    for i, r in enumerate(rows):
        if i in ok:
            assert r["error"] == "" and r["embedding"].startswith("[")
        else:
            assert r["embedding"] == "" and r["error"].startswith("empty")
    got = np.array([json.loads(rows[i]["embedding"]) for i in ok])
    assert_close_rows(got, minilm_reference.embeddings([ROWS[i][1] for i in ok]))


def test_batch_cli_formats_agree(minilm_artifact, cli, tmp_path):
    src = write_input(tmp_path / "in.csv")
    outputs = {}
    for fmt in ("csv", "jsonl", "parquet"):
        out = tmp_path / f"out.{fmt}"
        summary = tmp_path / f"{fmt}.json"
        code, stdout, stderr = cli("batch", minilm_artifact, src, "--column", "text", "--out", out, "--keep", "id",
                                   "--json", summary)
        assert code == 0, (stdout, stderr)
        assert "2 empty row(s) (data rows 3, 6)" in stderr
        assert json.loads(summary.read_text())["empty"] == {"count": 2, "rows": [3, 6]}
        outputs[fmt] = out
    csv_rows = read_csv(outputs["csv"])
    assert list(csv_rows[0]) == ["id", "embedding", "error"]
    jsonl = [json.loads(line) for line in outputs["jsonl"].read_text(encoding="utf-8").splitlines()]
    import pyarrow.parquet as pq

    table = pq.read_table(outputs["parquet"]).to_pylist()
    assert [r["id"] for r in jsonl] == [r["id"] for r in table] == [r["id"] for r in csv_rows] == [r[0] for r in ROWS]
    for c, j, p in zip(csv_rows, jsonl, table):
        if c["error"]:
            assert j["embedding"] is None and p["embedding"] is None and j["error"] == p["error"] == c["error"]
        else:
            e = np.array(json.loads(c["embedding"]), dtype=np.float32)
            np.testing.assert_array_equal(e, np.array(j["embedding"], dtype=np.float32))
            np.testing.assert_array_equal(e, np.array(p["embedding"], dtype=np.float32))
            assert j["error"] is None and p["error"] is None


def test_classifier_batch(tiny_cls_artifact, cls_reference, tmp_path):
    rows = [("1", "great stuff"), ("2", ""), ("3", "terrible,\nreally"), ("4", "fine")]
    src = tmp_path / "cls.csv"
    with open(src, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("id", "review")] + rows)
    out = tmp_path / "cls.jsonl"
    report = batch_file(tiny_cls_artifact, src, out, BatchOptions(column="review"))
    assert report.result_columns == ["label", "score", "scores"]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == ["1", "2", "3", "4"]
    texts = [rows[i][1] for i in (0, 2, 3)]
    expected, _ = cls_reference.outputs(texts)
    names = ["neg", "neu", "pos"]
    for r, logits in zip([records[0], records[2], records[3]], expected["logits"]):
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        assert r["label"] == names[int(logits.argmax())]
        np.testing.assert_allclose(r["scores"], probs, atol=1e-5)
        assert r["score"] == pytest.approx(float(probs.max()), abs=1e-5)
    assert records[1]["label"] is None and records[1]["error"].startswith("empty")


def test_undecodable_and_ragged_rows_are_reported(tiny_artifact, tmp_path, cli):
    src = tmp_path / "mixed.csv"
    src.write_bytes(b"id,text\n1,fine text\n2,caf\xe9 latin-1\n3,ok\n4\n5,too,many,fields\n")
    out = tmp_path / "mixed.csv.out.csv"
    code, stdout, stderr = cli("batch", tiny_artifact, src, "--out", out, "--max-length", TINY_MAX_LENGTH)
    assert code == 0, stderr
    assert "1 undecodable row(s) (data rows 2)" in stderr
    assert "2 row(s) had a different number of fields than the header (data rows 4, 5)" in stderr
    rows = read_csv(out)
    assert [r["id"] for r in rows] == ["1", "2", "3", "4", "5"]
    assert rows[1]["error"].startswith("undecodable") and rows[1]["embedding"] == ""
    # Too few or too many fields: the text may be the wrong field, so no result.
    assert rows[3]["error"].startswith("ragged: the row has 1 field(s), the header 2")
    assert rows[4]["error"].startswith("ragged: the row has 4 field(s), the header 2")
    assert rows[3]["embedding"] == rows[4]["embedding"] == ""
    assert rows[0]["embedding"].startswith("[") and rows[2]["embedding"].startswith("[")
    code, _, _ = cli("batch", tiny_artifact, src, "--out", out, "--max-length", TINY_MAX_LENGTH, "--strict")
    assert code == 1


@pytest.mark.parametrize(
    "content, args, needle",
    [
        (b"id,text\n1,a\n", ["--column", "body"], "has no column 'body'; its columns are ['id', 'text']"),
        (b"id,text\n1,a\n", ["--keep", "id,nope"], "--keep names ['nope']"),
        (b"id,text,embedding\n1,a,b\n", [], "would clash with the result columns"),
        (b"", [], "is empty: no header row"),
        ("id,text\n1,a\n".encode("utf-16"), [], "UTF-16-encoded"),
        (b"i\xe9,text\n1,a\n", [], "header row holds undecodable bytes"),
        (b"id,text\n" + b"".join(b"%d,caf\xe9 cr\xe8me\n" % i for i in range(20)), [], "does not look like UTF-8"),
        (b"id,text\n1,a\n", ["--format", "xml"], "--format xml is not known"),
        (b"id,text\n1,a\n", ["--batch-size", "0"], "--batch-size 0"),
    ],
    ids=["missing-column", "missing-keep", "clash", "empty-file", "utf16", "bad-header", "latin1-file", "format", "batch-size"],
)
def test_bad_input_exit_2_and_no_output(tiny_artifact, tmp_path, cli, content, args, needle):
    src = tmp_path / "in.csv"
    src.write_bytes(content)
    out = tmp_path / "out.csv"
    code, stdout, stderr = cli("batch", tiny_artifact, src, "--out", out, "--max-length", TINY_MAX_LENGTH, *args)
    assert code == 2, (stdout, stderr)
    assert needle in stderr and "Traceback" not in stderr
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_missing_input_and_unknown_suffix(tiny_artifact, tmp_path, cli):
    code, _, stderr = cli("batch", tiny_artifact, tmp_path / "nope.csv", "--out", tmp_path / "o.csv")
    assert code == 2 and "does not exist" in stderr
    src = write_input(tmp_path / "in.csv")
    code, _, stderr = cli("batch", tiny_artifact, src, "--out", tmp_path / "o.txt", "--max-length", TINY_MAX_LENGTH)
    assert code == 2 and "cannot tell the output format" in stderr


def test_interrupt_leaves_no_partial_output(tiny_artifact, tiny_runtime, tmp_path, monkeypatch, cli):
    """Ctrl-C half-way: the previous output stays as it was and no temporary file remains."""
    from onnxforge.runtime import runtime as runtime_module

    src = write_input(tmp_path / "in.csv", rows=[(str(i), f"text {i}", "") for i in range(200)])
    out = tmp_path / "out.csv"
    out.write_text("previous results\n")
    calls = {"n": 0}
    real_run = runtime_module.Runtime.run

    def run_then_interrupt(self, feeds, outputs=None):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_run(self, feeds, outputs)

    monkeypatch.setattr(runtime_module.Runtime, "run", run_then_interrupt)
    code, _, stderr = cli("batch", tiny_artifact, src, "--out", out, "--batch-size", "8", "--max-length", TINY_MAX_LENGTH)
    assert code == 130, stderr
    assert out.read_text() == "previous results\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.csv"]


def test_writer_failure_leaves_no_partial_output(tiny_artifact, tiny_runtime, tmp_path, monkeypatch):
    from onnxforge.batch import writer as batch_module

    src = write_input(tmp_path / "in.csv", rows=[(str(i), f"text {i}", "") for i in range(100)])

    def broken(self, chunk, keep_idx):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(batch_module.Writer, "write", broken)
    with pytest.raises(OSError, match="No space left"):
        batch_file(tiny_artifact, src, tmp_path / "out.jsonl", BatchOptions(chunk_rows=32), runtime=tiny_runtime)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_large_file_streams_in_chunks(tiny_artifact, tiny_runtime, tmp_path):
    """Many chunks: order and count survive, and every row gets its own text's embedding."""
    texts = [f"row {i} " + "word " * (i % 37) for i in range(3000)]
    src = write_input(tmp_path / "big.csv", rows=[(str(i), t, str(i % 5)) for i, t in enumerate(texts)], bom=False)
    out = tmp_path / "big.parquet"
    report = batch_file(tiny_artifact, src, out, BatchOptions(batch_size=64, chunk_rows=512), runtime=tiny_runtime)
    assert report.rows == 3000 and report and report.stage_seconds["infer"] > 0
    import pyarrow.parquet as pq

    table = pq.read_table(out)
    assert table.column("id").to_pylist() == [str(i) for i in range(3000)]
    got = np.array(table.column("embedding").to_pylist()[::97], dtype=np.float32)
    np.testing.assert_allclose(got, tiny_runtime.embed(texts[::97]), atol=1e-5)


def test_semicolon_delimiter(tiny_artifact, tmp_path, cli):
    src = tmp_path / "semi.csv"
    src.write_text('id;text\n1;"a; b"\n2;plain\n', encoding="utf-8")
    out = tmp_path / "semi.jsonl"
    code, _, stderr = cli("batch", tiny_artifact, src, "--out", out, "--delimiter", ";", "--max-length", TINY_MAX_LENGTH)
    assert code == 0, stderr
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["1", "2"]
    code, _, stderr = cli("batch", tiny_artifact, src, "--out", out, "--delimiter", ";;")
    assert code == 2 and "--delimiter" in stderr
