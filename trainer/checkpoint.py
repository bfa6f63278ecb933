"""Checkpoints: the whole model plus what it takes to trust it later (architecture, classes,
transforms, dataset version and manifest hash), and the optimizer state to resume from."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from trainer.errors import TrainingError

FORMAT = 1


def save_checkpoint(path: Path, payload: dict[str, Any]) -> Path:
    """Written to a temporary file and renamed: a crash never leaves half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        torch.save({"format": FORMAT, **payload}, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def link_as(src: Path, dst: Path) -> Path:
    """``dst`` becomes the same file as ``src`` (a hard link, so no copy of a large model).
    ``save_checkpoint`` replaces ``src`` by rename later, which leaves ``dst`` untouched."""
    tmp = dst.with_suffix(".link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:  # file systems without hard links
        import shutil

        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    return dst


def load_checkpoint(path: Path | str, arch: str | None = None) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - an unreadable file is one user error
        raise TrainingError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "model" not in ckpt:
        raise TrainingError(f"{path} is not a Shoal checkpoint")
    if arch is not None and ckpt["arch"] != arch:
        raise TrainingError(
            f"checkpoint {path} is of architecture {ckpt['arch']}, not {arch}"
        )
    return ckpt
