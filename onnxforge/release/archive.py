"""Reproducible .tar.gz archives, and unpacking that refuses anything but plain files.

Same inputs give the same bytes: entries sorted by name, every timestamp, owner and
permission fixed, and a gzip header with mtime 0 and no file name (the gzip module
otherwise stamps both in). The archive is written beside its destination and renamed
into place, so a crash never leaves a truncated .tar.gz that looks finished.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..artifact import atomic_path
from ..errors import CheckFailed, UserInputError

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")
# Float weights barely compress: on MiniLM, zlib level 1 keeps 91.3% of the bytes at
# ~44 MB/s, level 6 keeps 90.8% at ~31 MB/s. Level 1 saves the build seconds.
COMPRESS_LEVEL = 1
FILE_MODE = 0o644
DIR_MODE = 0o755


def fixed_mtime() -> int:
    """SOURCE_DATE_EPOCH (the reproducible-builds convention) when set, else 0."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not value:
        return 0
    try:
        return max(0, int(value))
    except ValueError:
        raise UserInputError(f"SOURCE_DATE_EPOCH={value!r} is not an integer", hint="unset it or set seconds since 1970") from None


def archive_stem(path: Path) -> str:
    """``minilm.tar.gz`` -> ``minilm``: the name of the one top-level folder inside."""
    name = Path(path).name
    for suffix in ARCHIVE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def check_archive_name(path: Path) -> None:
    if not Path(path).name.endswith(ARCHIVE_SUFFIXES) or not archive_stem(path):
        raise UserInputError(f"--out {path} does not end in .tar.gz or .tgz", hint="e.g. --out artifacts/minilm.tar.gz")


def _info(name: str, *, size: int = 0, directory: bool = False, mtime: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.size = 0 if directory else size
    info.mode = DIR_MODE if directory else FILE_MODE
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_archive(out: Path, top: str, files: dict[str, Path | bytes]) -> None:
    """Write ``files`` (name inside ``top/`` -> a file path or bytes) as a reproducible tar.gz."""
    mtime = fixed_mtime()
    dirs = {top}
    for name in files:
        parent = PurePosixPath(top, name).parent
        while str(parent) not in (".", ""):
            dirs.add(str(parent))
            parent = parent.parent
    entries = sorted([(d, None) for d in dirs] + [(f"{top}/{n}", src) for n, src in files.items()], key=lambda e: e[0])
    with atomic_path(Path(out)) as tmp:
        with open(tmp, "wb") as raw:
            # filename="" keeps the temporary file's name out of the gzip header.
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=COMPRESS_LEVEL, mtime=0) as gz:
                with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
                    for name, src in entries:
                        if src is None:
                            tar.addfile(_info(name, directory=True, mtime=mtime))
                        elif isinstance(src, bytes):
                            tar.addfile(_info(name, size=len(src), mtime=mtime), io.BytesIO(src))
                        else:
                            with open(src, "rb") as f:
                                tar.addfile(_info(name, size=os.fstat(f.fileno()).st_size, mtime=mtime), f)
            raw.flush()
            os.fsync(raw.fileno())


@dataclass(frozen=True)
class Refusal:
    member: str
    reason: str

    def message(self) -> str:
        return f"archive member {self.member!r}: {self.reason}"


def _member_problem(member: tarfile.TarInfo) -> str | None:
    name = member.name
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if "\\" in name:
        return "backslash in the path (a Windows-style path)"
    if ".." in PurePosixPath(name).parts:
        return "path traversal (a '..' component)"
    if member.issym():
        return f"symbolic link (-> {member.linkname})"
    if member.islnk():
        return f"hard link (-> {member.linkname})"
    if member.isdev() or member.isfifo():
        return "device or FIFO"
    if not (member.isfile() or member.isdir()):
        return f"unsupported member type {member.type!r}"
    return None


def inspect_members(archive: Path) -> tuple[list[tarfile.TarInfo], list[Refusal]]:
    """Read the member list; every member that is not a plain file or folder is refused."""
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            members = tar.getmembers()
    except (tarfile.TarError, OSError, EOFError, gzip.BadGzipFile) as e:
        raise CheckFailed(f"{archive} is not a readable tar archive ({type(e).__name__}: {e})",
                          hint="the download or copy may be truncated; fetch it again") from None
    refusals = []
    seen: set[str] = set()
    tops: set[str] = set()
    for m in members:
        problem = _member_problem(m)
        normalized = str(PurePosixPath(m.name))
        if problem is None and normalized in seen and not m.isdir():
            problem = "appears twice"
        if problem:
            refusals.append(Refusal(m.name, problem))
            continue
        seen.add(normalized)
        tops.add(PurePosixPath(normalized).parts[0])
    if not refusals and len(tops) != 1:
        refusals.append(Refusal(", ".join(sorted(tops)) or "(none)", "expected every member under one top-level folder"))
    return members, refusals


def safe_extract(archive: Path, dest: Path) -> Path:
    """Unpack ``archive`` into ``dest``; return the one top-level folder.

    Refuses (CheckFailed, exit 1, naming the member) absolute paths, ``..``, links,
    devices and duplicates before writing anything; then extracts with tarfile's
    ``data`` filter as a second line of defence.
    """
    members, refusals = inspect_members(archive)
    if refusals:
        raise CheckFailed("; ".join(r.message() for r in refusals), hint="this archive was not written by `onnxforge package`; do not unpack it")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    # A small archive may claim huge members (a "tar bomb"): check the space first.
    total, free = sum(m.size for m in members if m.isfile()), shutil.disk_usage(dest).free
    if total > free:
        raise CheckFailed(f"{archive} unpacks to {total / 1e9:.1f} GB but {dest} has {free / 1e9:.1f} GB free",
                          hint="free some space or unpack elsewhere (TMPDIR)")
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            tar.extractall(dest, members=members, filter="data")
    except tarfile.FilterError as e:  # pragma: no cover - our own checks run first
        raise CheckFailed(f"archive member refused by tarfile's data filter: {e}") from None
    except (tarfile.TarError, OSError, EOFError) as e:
        raise CheckFailed(f"{archive} could not be unpacked ({type(e).__name__}: {e})", hint="the archive may be truncated") from None
    top = PurePosixPath(members[0].name).parts[0]
    return dest / top
