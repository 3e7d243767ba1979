"""Reproducible archives, and unpacking that refuses traversal, links, absolute paths and devices."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest

from onnxforge.errors import CheckFailed
from onnxforge.release.archive import inspect_members, safe_extract, write_archive


def _files(tmp_path: Path) -> dict:
    (tmp_path / "b.bin").write_bytes(bytes(range(256)) * 40)
    (tmp_path / "a.txt").write_text("hello\n")
    return {"z/last.txt": b"last", "b.bin": tmp_path / "b.bin", "a.txt": tmp_path / "a.txt"}


def test_same_inputs_same_bytes_and_fixed_metadata(tmp_path, monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    files = _files(tmp_path)
    one, two = tmp_path / "one" / "pkg.tar.gz", tmp_path / "two" / "pkg.tar.gz"
    write_archive(one, "pkg", files)
    (tmp_path / "a.txt").touch()  # a newer mtime on disk must not matter
    write_archive(two, "pkg", dict(reversed(list(files.items()))))
    assert one.read_bytes() == two.read_bytes()
    raw = one.read_bytes()
    # gzip header: magic, method, flags (no FNAME), mtime 0
    assert raw[:3] == b"\x1f\x8b\x08" and raw[3] & 0x08 == 0 and raw[4:8] == b"\0\0\0\0"
    with tarfile.open(one) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names) == ["pkg", "pkg/a.txt", "pkg/b.bin", "pkg/z", "pkg/z/last.txt"]
    for m in members:
        assert (m.uid, m.gid, m.uname, m.gname, m.mtime) == (0, 0, "", "", 0)
        assert m.mode == (0o755 if m.isdir() else 0o644)
    # no temporary file left beside the archive
    assert sorted(p.name for p in one.parent.iterdir()) == ["pkg.tar.gz"]


def test_source_date_epoch_sets_the_mtime(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    write_archive(tmp_path / "x.tar.gz", "x", {"a": b"1"})
    with tarfile.open(tmp_path / "x.tar.gz") as tar:
        assert {m.mtime for m in tar.getmembers()} == {1700000000}


def _evil(path: Path, build) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        ok = tarfile.TarInfo("pkg/ok.txt")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"ok"))
        build(tar)
    return path


def _add_file(name: str):
    def build(tar):
        info = tarfile.TarInfo(name)
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))

    return build


def _add_link(name: str, target: str, kind=tarfile.SYMTYPE):
    def build(tar):
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = target
        tar.addfile(info)

    return build


def _add_device(name: str):
    def build(tar):
        info = tarfile.TarInfo(name)
        info.type = tarfile.CHRTYPE
        info.devmajor, info.devminor = 1, 3
        tar.addfile(info)

    return build


EVIL = {
    "traversal": (_add_file("pkg/../../escaped.txt"), "pkg/../../escaped.txt", "traversal"),
    "absolute": (_add_file("/tmp/onnxforge-absolute.txt"), "/tmp/onnxforge-absolute.txt", "absolute"),
    "symlink": (_add_link("pkg/link", "/etc/passwd"), "pkg/link", "symbolic link"),
    "hardlink": (_add_link("pkg/hard", "pkg/ok.txt", tarfile.LNKTYPE), "pkg/hard", "hard link"),
    "device": (_add_device("pkg/null"), "pkg/null", "device"),
    "second top folder": (_add_file("other/x.txt"), "other", "one top-level folder"),
}


@pytest.mark.parametrize("case", list(EVIL))
def test_unpacking_refuses_and_names_the_member(tmp_path, case):
    build, member, reason = EVIL[case]
    archive = _evil(tmp_path / "evil.tar.gz", build)
    _, refusals = inspect_members(archive)
    assert any(member in r.member and reason in r.reason for r in refusals), refusals
    dest = tmp_path / "dest"
    with pytest.raises(CheckFailed) as err:
        safe_extract(archive, dest)
    assert member in err.value.message
    # nothing was unpacked, inside or outside the destination
    assert not dest.exists() or not any(dest.rglob("*"))
    assert not (tmp_path / "escaped.txt").exists() and not Path("/tmp/onnxforge-absolute.txt").exists()


@pytest.mark.parametrize("case", ["traversal", "symlink"])
def test_verify_cli_exits_1_naming_the_member(tmp_path, cli, case):
    build, member, _ = EVIL[case]
    archive = _evil(tmp_path / "evil.tar.gz", build)
    code, out, err = cli("verify", archive, "--json", tmp_path / "report.json")
    assert code == 1, (out, err)
    assert member in err
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["passed"] is False and member in report["failed"]


def test_not_an_archive_is_a_failed_check(tmp_path, cli):
    bad = tmp_path / "truncated.tar.gz"
    bad.write_bytes(gzip.compress(b"not a tar at all" * 10)[:20])
    code, out, err = cli("verify", bad)
    assert code == 1
    assert "truncated.tar.gz" in err and "Traceback" not in err


def test_verify_missing_path_is_bad_input(tmp_path, cli):
    code, _, err = cli("verify", tmp_path / "nope.tar.gz")
    assert code == 2 and "does not exist" in err
