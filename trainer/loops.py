"""The two ways one epoch runs: the plain loop over images (the study's recipe as written),
and the fast loop that trains only the head on cached backbone features."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from trainer.data import Record, open_rgb
from trainer.errors import TrainingError
from trainer.model import ShoalNet, body_train_mode
from trainer.transforms import tta_logits

Progress = Callable[[str, int, int], None]


@dataclass
class EpochStats:
    loss: float
    accuracy: float


@dataclass
class EvalStats:
    loss: float
    accuracy: float
    targets: torch.Tensor
    preds: torch.Tensor


def optimise(
    loss: torch.Tensor, optimizer: torch.optim.Optimizer, epoch: int, step: int
) -> None:
    if not torch.isfinite(loss):
        raise TrainingError(
            f"loss became {loss.item()} at epoch {epoch}, batch {step}: training diverged "
            f"(learning rate {optimizer.param_groups[0]['lr']:g}; check the weights and "
            "try a lower rate)"
        )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def train_batches(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer, epoch: int, progress: Progress | None, size: int,
    label_smoothing: float = 0.0,
    class_weight: torch.Tensor | None = None,
) -> EpochStats:
    """One pass of cross-entropy steps; the mean loss and accuracy seen while training."""
    total = correct = 0
    loss_sum = 0.0
    for step, (x, y) in enumerate(batches, 1):
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, y, weight=class_weight,
                                           label_smoothing=label_smoothing)
        optimise(loss, optimizer, epoch, step)
        loss_sum += loss.item() * len(y)
        correct += int((logits.argmax(1) == y).sum())
        total += len(y)
        if progress:
            progress("train", total, size)
    return EpochStats(loss_sum / total, correct / total)


CLASS_WEIGHTS = ("none", "balanced")


def class_weights(labels: torch.Tensor, n_classes: int, how: str) -> torch.Tensor | None:
    """``balanced``: each class's loss weighted by n / (k * its count), so a class of 19
    photos counts as much as one of 60; ``none``: every image counts the same."""
    if how == "none":
        return None
    if how != "balanced":
        raise TrainingError(f"class weight must be one of {', '.join(CLASS_WEIGHTS)}, not {how!r}")
    counts = torch.bincount(labels, minlength=n_classes).clamp(min=1).float()
    return len(labels) / (n_classes * counts)


class ImageDataset(Dataset):
    def __init__(self, records: list[Record], transform) -> None:  # type: ignore[no-untyped-def]
        self.records = records
        self.transform = transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        record = self.records[i]
        return self.transform(open_rgb(record)), record.label


class ImageLoop:
    """A standard PyTorch loop: decode, augment, forward the whole network, every epoch."""

    def __init__(  # type: ignore[no-untyped-def]
        self, model: ShoalNet, optimizer, mode: str, train: list[Record], val: list[Record],
        train_tf, eval_tf, batch_size: int, seed: int, workers: int = 0,
        label_smoothing: float = 0.0, class_weight: torch.Tensor | None = None,
    ) -> None:
        self.model, self.optimizer, self.mode = model, optimizer, mode
        self.train_set = ImageDataset(train, train_tf)
        self.val_set = ImageDataset(val, eval_tf)
        self.batch_size, self.seed, self.workers = batch_size, seed, workers
        self.label_smoothing, self.class_weight = label_smoothing, class_weight

    def train_epoch(self, epoch: int, progress: Progress | None = None) -> EpochStats:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        torch.manual_seed(self.seed * 100_003 + epoch)  # the augmentations draw from it
        loader = DataLoader(self.train_set, self.batch_size, shuffle=True, generator=generator,
                            num_workers=self.workers)
        body_train_mode(self.model, self.mode)
        return train_batches(self.model, loader, self.optimizer, epoch, progress,
                             len(self.train_set), self.label_smoothing, self.class_weight)

    @torch.inference_mode()
    def evaluate(self) -> EvalStats:
        self.model.eval()
        loader = DataLoader(self.val_set, self.batch_size, num_workers=self.workers)
        logits, targets = [], []
        for x, y in loader:
            logits.append(tta_logits(self.model, x))
            targets.append(y)
        return summarise(torch.cat(logits), torch.cat(targets))


class FeatureLoop:
    """The fast path: each epoch draws one cached view per training image and trains the head.
    ``val_x`` holds one feature per image (with TTA, already the mean over the mirror pair)."""

    def __init__(
        self, head: nn.Linear, optimizer: torch.optim.Optimizer, train_x: torch.Tensor,
        train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor, batch_size: int,
        seed: int, label_smoothing: float = 0.0, class_weight: torch.Tensor | None = None,
    ) -> None:
        self.head, self.optimizer = head, optimizer
        self.train_x, self.train_y = train_x, train_y  # [N, views, D], [N]
        self.val_x, self.val_y = val_x, val_y  # [M, D], [M]
        self.batch_size, self.seed = batch_size, seed
        self.label_smoothing, self.class_weight = label_smoothing, class_weight

    def train_epoch(self, epoch: int, progress: Progress | None = None) -> EpochStats:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        n, views = self.train_x.shape[:2]
        order = torch.randperm(n, generator=generator)
        chosen = torch.randint(views, (n,), generator=generator)
        self.head.train()
        batches = (
            (self.train_x[idx, chosen[idx]], self.train_y[idx])
            for idx in order.split(self.batch_size)
        )
        return train_batches(self.head, batches, self.optimizer, epoch, progress, n,
                             self.label_smoothing, self.class_weight)

    @torch.inference_mode()
    def evaluate(self) -> EvalStats:
        self.head.eval()
        return summarise(self.head(self.val_x), self.val_y)


def summarise(logits: torch.Tensor, targets: torch.Tensor) -> EvalStats:
    loss = nn.functional.cross_entropy(logits, targets).item()
    preds = logits.argmax(1)
    return EvalStats(loss, float((preds == targets).float().mean()), targets, preds)
