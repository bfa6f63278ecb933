"""What can go wrong in training that a user can fix; the message is recorded on the run."""

from __future__ import annotations


class TrainingError(Exception):
    """Bad input or a diverged run: recorded as ``TrainingRun.error`` with state ``failed``."""


class WeightsMissing(TrainingError):
    """Pretrained weights asked for but not on this machine (and nothing is downloaded)."""
