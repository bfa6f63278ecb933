"""Bad images by cleanvision's image-property checks: blurred, dark, washed out, hardly any
information, an odd aspect ratio. cleanvision decodes each stored file once (thumbnails for the
blur check) and scores every property; an issue is a score under its threshold."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# cleanvision issue type -> the flag Shoal records
ISSUES = {
    "blurry": "blurred",
    "dark": "dark",
    "light": "washed_out",
    "low_information": "low_information",
    "odd_aspect_ratio": "odd_aspect",
}
# flags that are noted but make no suspect: a long fish (an eel, a hairtail) photographed
# whole has an odd aspect ratio (24 of web-20's 731 photos are under 0.35)
NOTED_ONLY = {"odd_aspect"}


@dataclass
class QualityFlags:
    reasons: list[list[str]]  # per image
    scores: dict[str, np.ndarray]  # cleanvision's score per issue (1 = fine)


def quality_flags(paths: Sequence[Path], n_jobs: int = 1) -> QualityFlags:
    """The issues cleanvision finds in each file (in order). ``n_jobs`` 1: the checks run in
    this process, beside whatever else shares the cores."""
    if not paths:
        return QualityFlags([], {})
    from cleanvision import Imagelab

    logging.getLogger("cleanvision").setLevel(logging.WARNING)
    with open(os.devnull, "w") as quiet, redirect_stdout(quiet), redirect_stderr(quiet):
        # it prints progress bars
        lab = Imagelab(filepaths=[str(p) for p in paths], verbose=False)
        lab.find_issues({name: {} for name in ISSUES}, n_jobs=n_jobs, verbose=False)
    frame = lab.issues.reindex([str(p) for p in paths])
    reasons: list[list[str]] = [[] for _ in paths]
    scores = {}
    for name, reason in ISSUES.items():
        flagged = frame[f"is_{name}_issue"].fillna(False).to_numpy(bool)
        scores[reason] = frame[f"{name}_score"].fillna(1.0).to_numpy(float)
        for i in np.flatnonzero(flagged):
            reasons[i].append(reason)
    return QualityFlags(reasons, scores)
