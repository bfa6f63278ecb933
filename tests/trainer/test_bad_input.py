"""Bad input fails loudly: the reason is recorded on the run, which ends in state failed."""

from __future__ import annotations

import pytest
import torch
from sqlalchemy import select

from catalog.db import session_scope
from catalog.models import DatasetItem, DatasetVersion, Image, JobState, TrainingRun
from tests.trainer.test_training import new_run
from trainer.errors import TrainingError, WeightsMissing
from trainer.registry import get_arch
from trainer.runs import create_run
from trainer.train import train_run


def fails_with(run_id: int, *fragments: str) -> None:
    with pytest.raises(TrainingError) as info:
        train_run(run_id)
    with session_scope() as session:
        run = session.get(TrainingRun, run_id)
    assert run.state == JobState.FAILED
    for fragment in fragments:
        assert fragment in run.error and fragment in str(info.value)


def _store_file(settings, label: str):  # type: ignore[no-untyped-def]
    with session_scope() as session:
        item = session.scalars(select(DatasetItem).where(DatasetItem.label == label)).first()
        return settings.image_dir / session.get(Image, item.image_id).path, item.sha256


def test_empty_class(small_env) -> None:
    with session_scope() as session:
        small = session.scalars(select(DatasetVersion)).one()
        items = session.scalars(select(DatasetItem).where(DatasetItem.version_id == small.id))
        version = DatasetVersion(name="with-empty", classes=[*small.classes, "shing"],
                                 manifest_sha256=small.manifest_sha256)
        session.add(version)
        session.flush()
        session.add_all(DatasetItem(version_id=version.id, image_id=i.image_id, sha256=i.sha256,
                                    label=i.label, split=i.split) for i in items.all())
    fails_with(new_run(dataset="with-empty"), "empty class", "shing")


def test_missing_image(small_env) -> None:
    path, sha = _store_file(small_env, "koi")
    path.unlink()
    fails_with(new_run(), "missing", sha[:12])


def test_corrupt_image(small_env) -> None:
    path, sha = _store_file(small_env, "hilsa")
    path.write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG any more")
    fails_with(new_run(), "corrupt or unreadable image", sha[:12])


def test_checkpoint_of_another_architecture(small_env) -> None:
    donor = train_run(new_run())
    fails_with(new_run(arch="efficientnet_lite0", weights=donor.checkpoint_path),
               "checkpoint of resnet34, not efficientnet_lite0")


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "plain-loop"])
def test_nan_loss(small_env, tmp_path, fast: bool) -> None:
    state = get_arch("resnet34").build().state_dict()
    state["conv1.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, tmp_path / "poisoned.pth")
    fails_with(new_run(weights=str(tmp_path / "poisoned.pth"), fast=fast),
               "loss became nan at epoch 1, batch 1", "training diverged")


def test_imagenet_weights_missing_names_file_and_folder(small_env, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    expected = get_arch("resnet34").imagenet_file()
    assert not expected.exists()
    with pytest.raises(WeightsMissing) as info:
        train_run(new_run(weights="imagenet"))
    assert expected.name in str(info.value) and str(expected.parent) in str(info.value)


def test_unknown_arch_mode_and_dataset_are_refused(small_env) -> None:
    with session_scope() as session:
        for kwargs, fragment in [
            ({"arch": "vgg11"}, "unknown architecture"),
            ({"mode": "half"}, "unknown mode"),
            ({"dataset": "no-such-version"}, "no dataset version"),
        ]:
            args = {"dataset": "small-v1", "arch": "resnet34", **kwargs}
            with pytest.raises(TrainingError, match=fragment):
                create_run(session, **args)
