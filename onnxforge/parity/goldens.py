"""``goldens.npz``, written and read in this one place.

Export stores a few real texts' tokenized inputs and PyTorch's fp32 outputs as
``input.<name>`` and ``output.<name>`` arrays, and records ``{"file", "texts",
"reference"}`` in the manifest's ``goldens`` entry. Optimize, smoke, package and verify
read them back with ``read_goldens`` and judge a variant against them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..artifact import GOLDENS_NAME

REFERENCE = "pytorch-fp32"


class GoldensUnreadable(ValueError):
    """The manifest names goldens that are missing or cannot be read (a failed check, not bad input)."""


@dataclass(frozen=True)
class Goldens:
    file: str
    texts: list[str] = field(default_factory=list)
    inputs: dict[str, Any] = field(default_factory=dict)   # name -> np.ndarray (int64 ids, masks)
    outputs: dict[str, Any] = field(default_factory=dict)  # name -> np.ndarray (PyTorch fp32)

    def missing_inputs(self, names) -> list[str]:
        return [n for n in names if n not in self.inputs]

    def missing_outputs(self, names) -> list[str]:
        return [n for n in names if n not in self.outputs]


def write_goldens(folder: Path, texts: list[str], inputs: Mapping[str, Any], outputs: Mapping[str, Any]) -> dict[str, Any]:
    """Write ``goldens.npz`` into ``folder``; returns the manifest's ``goldens`` entry."""
    import numpy as np

    arrays = {f"input.{k}": v for k, v in inputs.items()} | {f"output.{k}": v for k, v in outputs.items()}
    np.savez(Path(folder) / GOLDENS_NAME, **arrays)
    return {"file": GOLDENS_NAME, "texts": list(texts), "reference": REFERENCE}


def goldens_path(folder: Path, entry: Mapping[str, Any] | None) -> Path:
    return Path(folder) / ((entry or {}).get("file") or GOLDENS_NAME)


def read_goldens(folder: Path, entry: Mapping[str, Any] | None) -> Goldens | None:
    """The goldens the manifest's ``entry`` names, or None when it names none.

    Raises ``GoldensUnreadable`` when the entry names a file that is missing or unreadable.
    """
    import zipfile

    import numpy as np

    if not entry:
        return None
    path = goldens_path(folder, entry)
    if not path.is_file():
        raise GoldensUnreadable(f"{path.name} is listed in the manifest but missing")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise GoldensUnreadable(f"{path.name} cannot be read ({e})") from None
    return Goldens(
        file=path.name,
        texts=list(entry.get("texts") or []),
        inputs={k[len("input."):]: v for k, v in arrays.items() if k.startswith("input.")},
        outputs={k[len("output."):]: v for k, v in arrays.items() if k.startswith("output.")},
    )
