"""The bad-input matrix: every command fed what training and CI really produce.

Each case builds its inputs in the test's own folder, runs the CLI in-process, and checks:
the exact exit code (2 bad input, 1 failed check; never 0, never 3 = a bug), the message
class (a key phrase), no traceback, and nothing half-written: no file appeared or vanished
in the folder, no temporary name survived, and inputs that must stay intact kept their
bytes.
"""

from __future__ import annotations

import errno
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from .conftest import ROOT, TINY_POSITIONS, leftovers, tree

FACTORY = "tests.fixtures.custom_models"


@dataclass
class Ctx:
    tmp: Path
    src: Path
    artifact: Path
    ext_artifact: Path
    package: Path
    places: object
    intact: list[Path] = field(default_factory=list)  # files/folders whose bytes must not change

    def copy(self, which: str = "artifact", name: str = "art") -> Path:
        dst = self.tmp / name
        shutil.copytree(getattr(self, which), dst)
        return dst

    def csv(self, data: bytes, name: str = "in.csv") -> Path:
        path = self.tmp / name
        path.write_bytes(data)
        return path

    def keep(self, *paths: Path) -> None:
        self.intact.extend(paths)


@dataclass(frozen=True)
class Case:
    build: Callable[[Ctx], list]
    code: int
    phrase: str
    # Complete outputs a failed check still writes (batch --strict: every row, with why).
    creates: tuple[str, ...] = ()


CASES: dict[str, Case] = {}


def case(name: str, code: int, phrase: str, creates: tuple[str, ...] = ()):
    def register(fn):
        CASES[name] = Case(fn, code, phrase, creates)
        return fn

    return register


def edit_manifest(art: Path, change: Callable[[dict], None]) -> None:
    path = art / "onnxforge.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def flip_bytes(path: Path, start: int, count: int = 4096) -> None:
    data = bytearray(path.read_bytes())
    for i in range(start, min(start + count, len(data))):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


def truncate(path: Path, fraction: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def word_level_tokenizer(path: Path, size: int, specials: bool = False) -> Path:
    """A tokenizer of another vocabulary (tok0..tokN), saved as tokenizer.json."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {f"tok{i}": i for i in range(size)}
    vocab["[UNK]"] = size
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    return path


def state_dict(ctx: Ctx, change: Callable[[dict], None], name: str) -> Path:
    import torch

    from tests.fixtures.custom_models import DictBert

    sd = DictBert().state_dict()
    change(sd)
    path = ctx.tmp / name
    torch.save(sd, path)
    return path


# -- export --------------------------------------------------------------------------
@case("export-factory-raises", 2, "raised RuntimeError: factory exploded on purpose")
def _(ctx):
    return ["export", f"{FACTORY}:build_raises", "--out", ctx.tmp / "out"]


@case("export-forward-returns-nothing", 2, "forward returned NoneType, with no tensors")
def _(ctx):
    return ["export", f"{FACTORY}:build_nothing_useful", "--num-heads", 2, "--hidden-size", 8, "--num-layers", 1,
            "--out", ctx.tmp / "out"]


@case("export-state-dict-missing-keys", 2, "does not fit the model: missing 1")
def _(ctx):
    weights = state_dict(ctx, lambda sd: sd.pop("encoder.embeddings.word_embeddings.weight"), "missing.pt")
    return ["export", f"{FACTORY}:build_dict_bert", "--weights", weights, "--tokenizer", ctx.src, "--out", ctx.tmp / "out"]


@case("export-state-dict-extra-keys", 2, "unexpected 1 (e.g. bogus.weight)")
def _(ctx):
    import torch

    weights = state_dict(ctx, lambda sd: sd.__setitem__("bogus.weight", torch.zeros(3)), "extra.pt")
    return ["export", f"{FACTORY}:build_dict_bert", "--weights", weights, "--tokenizer", ctx.src, "--out", ctx.tmp / "out"]


@case("export-state-dict-truncated", 2, "is not a readable state_dict file")
def _(ctx):
    weights = state_dict(ctx, lambda sd: None, "cut.pt")
    truncate(weights)
    return ["export", f"{FACTORY}:build_dict_bert", "--weights", weights, "--tokenizer", ctx.src, "--out", ctx.tmp / "out"]


@case("export-tokenizer-not-json", 2, "is not a valid tokenizer.json")
def _(ctx):
    bad = ctx.tmp / "tok" / "tokenizer.json"
    bad.parent.mkdir()
    bad.write_text('{"version": "1.0", "model": ')  # cut off mid-file
    return ["export", ctx.src, "--tokenizer", bad, "--out", ctx.tmp / "out"]


@case("export-tokenizer-of-another-vocabulary", 2, "but the model's embedding table has 30522 rows")
def _(ctx):
    tok = word_level_tokenizer(ctx.tmp / "tok" / "tokenizer.json", 40_000)
    return ["export", ctx.src, "--tokenizer", tok, "--out", ctx.tmp / "out"]


@case("export-out-is-the-model-folder", 2, "is the model folder")
def _(ctx):
    src = ctx.copy("src", "model")
    ctx.keep(src)
    return ["export", src, "--out", src, "--force"]


@case("export-out-holds-the-weights", 2, "holds the --weights file")
def _(ctx):
    weights = state_dict(ctx, lambda sd: None, "w.pt")
    ctx.keep(weights)
    return ["export", f"{FACTORY}:build_dict_bert", "--weights", weights, "--tokenizer", ctx.src, "--out", ctx.tmp, "--force"]


@case("export-out-read-only", 2, "cannot use")
def _(ctx):
    return ["export", ctx.src, "--out", ctx.places.readonly() / "art"]


@case("export-out-full", 2, "No space left on device")
def _(ctx):
    return ["export", ctx.src, "--out", ctx.places.full() / "art"]


@case("export-out-under-a-file", 2, "is a file, not a folder")
def _(ctx):
    (ctx.tmp / "plain.txt").write_text("a file")
    return ["export", ctx.src, "--out", ctx.tmp / "plain.txt" / "art"]


# -- optimize ------------------------------------------------------------------------
@case("optimize-truncated-onnx", 2, "is not a readable ONNX model")
def _(ctx):
    art = ctx.copy()
    truncate(art / "model.onnx", 0.3)
    return ["optimize", art]


@case("optimize-truncated-onnx-data", 2, "model.onnx.data is truncated")
def _(ctx):
    art = ctx.copy("ext_artifact")
    truncate(art / "model.onnx.data")
    return ["optimize", art]


@case("optimize-base-changed-since-export", 2, "changed after its stage recorded it")
def _(ctx):
    art = ctx.copy()
    # Same size, different weights: parses fine, so only the recorded hash can tell.
    flip_bytes(art / "model.onnx", (art / "model.onnx").stat().st_size // 2)
    return ["optimize", art]


@case("optimize-manifest-files-not-a-table", 2, "'files' table is not an object")
def _(ctx):
    art = ctx.copy()
    edit_manifest(art, lambda m: m.__setitem__("files", None))
    return ["optimize", art]


# -- validate ------------------------------------------------------------------------
@case("validate-manifest-not-json", 2, "is not valid JSON")
def _(ctx):
    art = ctx.copy()
    text = (art / "onnxforge.json").read_text()
    (art / "onnxforge.json").write_text(text[: len(text) // 2])
    return ["validate", art]


@case("validate-manifest-missing-key", 2, "the model spec is invalid ('outputs')")
def _(ctx):
    art = ctx.copy()
    edit_manifest(art, lambda m: m["spec"].pop("outputs"))
    return ["validate", art]


@case("validate-variant-outside-the-folder", 2, "does not name a model file inside the folder")
def _(ctx):
    art = ctx.copy()
    edit_manifest(art, lambda m: m["variants"].__setitem__("base", {"file": "../../etc/passwd", "precision": "fp32"}))
    return ["validate", art]


@case("validate-corrupted-onnx-header", 2, "cannot load model.onnx")
def _(ctx):
    art = ctx.copy()
    flip_bytes(art / "model.onnx", 0, 64)
    return ["validate", art]


@case("validate-more-positions-than-the-model-has", 2, f"longer than the model's {TINY_POSITIONS} positions")
def _(ctx):
    return ["validate", ctx.copy(), "--shape", "2x1000"]


# -- smoke ---------------------------------------------------------------------------
SMOKE = ["--no-torch", "--no-record", "--batch-sizes", "1", "--iterations", "1"]


@case("smoke-tokenizer-not-json", 2, "is not a valid tokenizer.json")
def _(ctx):
    art = ctx.copy()
    (art / "tokenizer.json").write_bytes(b"\xff\xfe not json")
    return ["smoke", art, *SMOKE]


@case("smoke-tokenizer-of-another-vocabulary", 2, "special tokens its vocabulary lacks")
def _(ctx):
    art = ctx.copy()
    word_level_tokenizer(art / "tokenizer.json", 1000)  # ids fit, but no [CLS]/[SEP]/[PAD]
    return ["smoke", art, *SMOKE]


@case("smoke-max-length-past-positions", 2, f"--max-length 1000 is outside 1..{TINY_POSITIONS}")
def _(ctx):
    return ["smoke", ctx.copy(), *SMOKE, "--max-length", 1000]


@case("smoke-config-max-length-past-positions", 2, "sets model_max_length 512 but the model has only 128")
def _(ctx):
    art = ctx.copy()
    cfg = json.loads((art / "tokenizer_config.json").read_text())
    cfg["model_max_length"] = 512
    (art / "tokenizer_config.json").write_text(json.dumps(cfg))
    return ["smoke", art, *SMOKE]


@case("smoke-empty-text", 2, "--text number 1 is empty")
def _(ctx):
    return ["smoke", ctx.copy(), *SMOKE, "--text", ""]


@case("smoke-whitespace-text", 2, "--text number 2 is empty")
def _(ctx):
    return ["smoke", ctx.copy(), *SMOKE, "--text", "fine", "--text", " \t\n\u3000 "]


@case("smoke-control-character-text", 2, "--text number 1 is empty")
def _(ctx):
    return ["smoke", ctx.copy(), *SMOKE, "--text", "\x00\x01\x1b\u200b\ufeff"]


@case("smoke-json-over-the-manifest", 2, "is the manifest of the artifact")
def _(ctx):
    art = ctx.copy()
    ctx.keep(art / "onnxforge.json")
    return ["smoke", art, *SMOKE, "--json", art / "onnxforge.json"]


# -- batch ---------------------------------------------------------------------------
def rows(n: int, text=lambda i: f"sentence {i} about packages") -> bytes:
    return ("id,text\n" + "".join(f"{i},{text(i)}\n" for i in range(n))).encode()


@case("batch-latin-1-file", 2, "does not look like UTF-8")
def _(ctx):
    src = ctx.csv(b"id,text\n" + b"".join(b"%d,caf\xe9 cr\xe8me br\xfbl\xe9e\n" % i for i in range(20)))
    return ["batch", ctx.artifact, src, "--out", ctx.tmp / "out.csv"]


@case("batch-invalid-utf-8-rows-strict", 1, "1 undecodable row(s) (data rows 2)", creates=("out.csv",))
def _(ctx):
    src = ctx.csv(b"id,text\n0,fine\n1,bad \xff\xfe bytes\n2,also fine\n")
    return ["batch", ctx.artifact, src, "--out", ctx.tmp / "out.csv", "--strict"]


@case("batch-ragged-rows-strict", 1, "1 row(s) had a different number of fields", creates=("out.csv",))
def _(ctx):
    src = ctx.csv(b"id,text\n0,fine\n1,an unquoted, comma\n2,fine again\n")
    return ["batch", ctx.artifact, src, "--out", ctx.tmp / "out.csv", "--strict"]


@case("batch-blank-rows-strict", 1, "3 empty row(s) (data rows 2, 3, 4)", creates=("out.csv",))
def _(ctx):
    src = ctx.csv('id,text\n0,fine\n1,\n2,"  \t "\n3,\x01\x02\u200b\n4,fine\n'.encode())
    return ["batch", ctx.artifact, src, "--out", ctx.tmp / "out.csv", "--strict"]


@case("batch-1mb-text", 2, "field larger than field limit")
def _(ctx):
    src = ctx.csv(b"id,text\n0,short\n1," + b"word " * 200_000 + b"\n")
    return ["batch", ctx.artifact, src, "--out", ctx.tmp / "out.csv"]


@case("batch-unclosed-quote", 2, "line 2 (data row 1): a quoted field begins here and is never closed")
def _(ctx):
    src = ctx.csv(b'id,text\n0,"never closed\n' + rows(30_000)[8:])
    return ["batch", ctx.artifact, src, "--out", ctx.tmp / "out.csv"]


@case("batch-out-is-the-input", 2, "is the input file")
def _(ctx):
    src = ctx.csv(rows(3))
    ctx.keep(src)
    return ["batch", ctx.artifact, src, "--out", src]


@case("batch-out-is-the-manifest", 2, "is the manifest of the artifact")
def _(ctx):
    art = ctx.copy()
    ctx.keep(art / "onnxforge.json")
    return ["batch", art, ctx.csv(rows(3)), "--out", art / "onnxforge.json", "--format", "jsonl"]


@case("batch-out-is-the-model", 2, "is a file of the artifact")
def _(ctx):
    art = ctx.copy()
    ctx.keep(art / "model.onnx")
    return ["batch", art, ctx.csv(rows(3)), "--out", art / "model.onnx", "--format", "csv"]


@case("batch-out-is-a-folder", 2, "it is a folder")
def _(ctx):
    (ctx.tmp / "results").mkdir()
    return ["batch", ctx.artifact, ctx.csv(rows(3)), "--out", ctx.tmp / "results", "--format", "csv"]


@case("batch-out-read-only", 2, "cannot use")
def _(ctx):
    return ["batch", ctx.artifact, ctx.csv(rows(3)), "--out", ctx.places.readonly() / "out.csv"]


@case("batch-out-full", 2, "No space left on device")
def _(ctx):
    return ["batch", ctx.artifact, ctx.csv(rows(500)), "--out", ctx.places.full() / "out.csv"]


# -- package -------------------------------------------------------------------------
@case("package-file-changed-since-recorded", 1, "changed after its stage recorded it")
def _(ctx):
    art = ctx.copy()
    flip_bytes(art / "goldens.npz", 2000, 16)
    return ["package", art, "--out", ctx.tmp / "p.tar.gz"]


@case("package-out-inside-the-artifact", 2, "is inside the artifact folder")
def _(ctx):
    art = ctx.copy()
    return ["package", art, "--out", art / "p.tar.gz"]


@case("package-out-full", 2, "No space left on device")
def _(ctx):
    return ["package", ctx.copy(), "--out", ctx.places.full() / "p.tar.gz"]


@case("package-out-read-only", 2, "cannot use")
def _(ctx):
    return ["package", ctx.copy(), "--out", ctx.places.readonly() / "p.tar.gz"]


# -- verify --------------------------------------------------------------------------
@case("verify-manifest-with-a-wrong-hash", 1, "differs from the manifest's")
def _(ctx):
    art = ctx.copy()
    edit_manifest(art, lambda m: m["files"]["tokenizer.json"].__setitem__("sha256", "0" * 64))
    return ["verify", art, "--no-goldens"]


@case("verify-truncated-archive", 1, "is not a readable tar archive")
def _(ctx):
    cut = ctx.tmp / "cut.tar.gz"
    cut.write_bytes(ctx.package.read_bytes()[: ctx.package.stat().st_size // 2])
    return ["verify", cut]


@case("verify-variant-outside-the-folder", 1, "names a file the manifest does not list")
def _(ctx):
    art = ctx.copy()
    edit_manifest(art, lambda m: m["variants"].__setitem__("base", {"file": "../../etc/passwd"}))
    return ["verify", art, "--no-goldens"]


# -- inspect -------------------------------------------------------------------------
@case("inspect-truncated-onnx", 2, "is not a readable ONNX model")
def _(ctx):
    art = ctx.copy()
    truncate(art / "model.onnx", 0.1)
    return ["inspect", art]


@case("inspect-missing-onnx-data", 2, "keeps its weights in model.onnx.data, which is missing")
def _(ctx):
    art = ctx.copy("ext_artifact")
    (art / "model.onnx.data").unlink()
    return ["inspect", art]


@case("inspect-json-under-a-file", 2, "is a file, not a folder")
def _(ctx):
    (ctx.tmp / "plain.txt").write_text("a file")
    return ["inspect", ctx.artifact, "--json", ctx.tmp / "plain.txt" / "report.json"]


# -- build ---------------------------------------------------------------------------
@case("build-factory-raises", 2, "raised RuntimeError: factory exploded on purpose")
def _(ctx):
    return ["build", f"{FACTORY}:build_raises", "--out", ctx.tmp / "out", "--no-smoke"]


@case("build-out-is-the-model-folder", 2, "is the model folder")
def _(ctx):
    src = ctx.copy("src", "model")
    ctx.keep(src)
    return ["build", src, "--out", src, "--force"]


# -- the test ------------------------------------------------------------------------
@pytest.fixture
def ctx(tmp_path, places, hard_src, hard_artifact, hard_ext_artifact, hard_package, monkeypatch):
    # Factories are imported from the repository root (their --app-dir); outputs go to tmp.
    monkeypatch.chdir(ROOT)
    work = tmp_path / "work"
    work.mkdir()
    places.tmp_path = work
    return Ctx(tmp=work, src=hard_src, artifact=hard_artifact, ext_artifact=hard_ext_artifact,
               package=hard_package, places=places)


def test_matrix_is_large_enough():
    assert len(CASES) >= 30
    commands = {name.split("-")[0] for name in CASES}
    assert commands == {"export", "optimize", "validate", "smoke", "batch", "package", "verify", "inspect", "build"}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, ctx, cli):
    c = CASES[name]
    args = c.build(ctx)
    before = tree(ctx.tmp)
    kept = {p: tree(p) if p.is_dir() else p.read_bytes() for p in ctx.intact}

    code, out, err = cli(*args)

    assert code == c.code, f"exit {code}, expected {c.code}\nstdout: {out[-2000:]}\nstderr: {err[-2000:]}"
    assert c.phrase in err, err[-2000:]
    assert "Traceback" not in out + err and "internal error" not in err
    assert ("check failed" if c.code == 1 else "error:") in err
    after = tree(ctx.tmp)
    assert not leftovers(ctx.tmp), leftovers(ctx.tmp)
    assert sorted(after) == sorted([*before, *c.creates]), f"files appeared or vanished: {sorted(set(after) ^ set(before))}"
    for path, content in kept.items():
        assert (tree(path) if path.is_dir() else path.read_bytes()) == content, f"{path} changed"
    if c.creates:
        _complete_output(ctx)


def _complete_output(ctx: Ctx) -> None:
    """batch --strict exits 1 after writing every row: a complete file with an error column, never a partial one."""
    import csv

    src = list(csv.reader(open(ctx.tmp / "in.csv", encoding="utf-8", errors="replace", newline="")))
    out = list(csv.DictReader(open(ctx.tmp / "out.csv", encoding="utf-8", newline="")))
    assert [r["id"] for r in out] == [r[0] for r in src[1:]]
    assert any(r["error"] for r in out) or len({len(r) for r in src[1:]}) > 1


def test_enospc_in_process(hard_artifact, tmp_path, cli, monkeypatch):
    """A full disk, simulated in-process (runs where no small file system can be mounted):
    the output's first write fails with ENOSPC after the temporary file was opened. The
    CLI names the output (exit 2), the previous results stay, and nothing is left."""
    from onnxforge.batch import writer as batch_module

    src = tmp_path / "in.csv"
    src.write_bytes(rows(300))
    out = tmp_path / "out.jsonl"
    out.write_text("previous results\n")

    def disk_full(self, chunk, keep_idx):
        assert list(tmp_path.glob(".out.jsonl.*.partial")), "the temporary file should exist by now"
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(batch_module.Writer, "write", disk_full)
    code, _, err = cli("batch", hard_artifact, src, "--out", out)
    assert code == 2, err
    assert f"cannot use {out}: No space left on device" in err and "Traceback" not in err
    assert out.read_text() == "previous results\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.jsonl"]
