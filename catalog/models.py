"""Typed SQLAlchemy 2.0 models of the catalog. One class a table; states are plain strings."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {
        dict[str, Any]: JSON,
        list[Any]: JSON,
        datetime: DateTime(timezone=True),
    }


# --- image life -----------------------------------------------------------------------------
class ImageStatus:
    DOWNLOADED = "downloaded"
    INVALID = "invalid"
    UNIQUE = "unique"
    DUPLICATE = "duplicate"
    IN_REVIEW = "in_review"
    APPROVED = "approved"
    REJECTED = "rejected"
    ALL = (DOWNLOADED, INVALID, UNIQUE, DUPLICATE, IN_REVIEW, APPROVED, REJECTED)


class JobState:
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    FINISHED = (SUCCEEDED, FAILED, CANCELLED)


class Species(Base):
    __tablename__ = "species"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    latin_name: Mapped[str] = mapped_column(String(128))
    name_zh: Mapped[str | None] = mapped_column(String(64))
    name_en: Mapped[str | None] = mapped_column(String(128))
    # {"en": [...], "zh": [...], "la": [...]}: search keywords per language
    keywords: Mapped[dict[str, Any]] = mapped_column(default=dict)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # the name resolved against a taxonomic backbone (GBIF species/match), once, at add/import:
    # status "resolved" | "unresolved" (added without resolution) | "not_fish" (forced in);
    # null: never checked (the shipped list)
    taxon_status: Mapped[str | None] = mapped_column(String(16))
    taxon_match: Mapped[str | None] = mapped_column(String(16))  # EXACT | FUZZY | HIGHERRANK
    gbif_key: Mapped[int | None] = mapped_column(Integer)  # usageKey of the accepted name
    accepted_name: Mapped[str | None] = mapped_column(String(128))
    synonyms: Mapped[list[Any]] = mapped_column(default=list)
    taxon_class: Mapped[str | None] = mapped_column(String(64))
    taxon_order: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def all_keywords(self) -> list[str]:
        seen: dict[str, None] = {}
        for words in (self.keywords or {}).values():
            for word in words:
                seen.setdefault(word, None)
        return list(seen) or [self.latin_name]


class Job(Base):
    """A unit of queued work, mirrored here so `shoal jobs` never has to ask the broker."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    args: Mapped[dict[str, Any]] = mapped_column(default=dict)
    idempotency_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    state: Mapped[str] = mapped_column(String(16), default=JobState.QUEUED, index=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    worker_host: Mapped[str | None] = mapped_column(String(255))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # times the sweeper found the job lost by the broker and sent it again (reset by a retry)
    recoveries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class CrawlJob(Base):
    __tablename__ = "crawl_jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    species_id: Mapped[int] = mapped_column(ForeignKey("species.id"), index=True)
    source: Mapped[str] = mapped_column(String(64))
    keyword: Mapped[str | None] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16), default=JobState.QUEUED)
    limit: Mapped[int | None] = mapped_column(Integer)
    stats: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    # a succeeded crawl that looks wrong (no images from its pages, most items dropped): why
    warning: Mapped[str | None] = mapped_column(Text)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    species: Mapped[Species] = relationship()


class CrawlSchedule(Base):
    __tablename__ = "crawl_schedules"
    __table_args__ = (UniqueConstraint("species_id", "source"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    species_id: Mapped[int] = mapped_column(ForeignKey("species.id"))
    source: Mapped[str] = mapped_column(String(64))
    every_seconds: Mapped[int] = mapped_column(Integer)
    limit: Mapped[int | None] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    next_run_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_run_at: Mapped[datetime | None]
    last_job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    species: Mapped[Species] = relationship()


class Lease(Base):
    """A named lock with an expiry: held by one process (one beat) at a time."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime]


class DuplicateGroup(Base):
    __tablename__ = "duplicate_groups"

    id: Mapped[int] = mapped_column(primary_key=True)
    canonical_image_id: Mapped[int | None] = mapped_column(Integer)  # images.id, kept loose: cycle
    # fixed when the group is born and never changed: the split of every member derives from it
    split_key: Mapped[str] = mapped_column(String(64), unique=True)
    size: Mapped[int] = mapped_column(Integer, default=1)
    conflict: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    species_slugs: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Image(Base):
    __tablename__ = "images"
    __table_args__ = (Index("ix_images_status_species", "status", "expected_species_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # sha256 of the stored (normalised) file; of the raw bytes for an image that was rejected
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    raw_sha256: Mapped[str] = mapped_column(String(64), index=True)
    pixel_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    phash: Mapped[str | None] = mapped_column(String(16))
    dhash: Mapped[str | None] = mapped_column(String(16))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    source_width: Mapped[int | None] = mapped_column(Integer)
    source_height: Mapped[int | None] = mapped_column(Integer)
    format: Mapped[str | None] = mapped_column(String(16))
    byte_size: Mapped[int | None] = mapped_column(BigInteger)
    path: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default=ImageStatus.DOWNLOADED)
    reject_reason: Mapped[str | None] = mapped_column(String(64))
    reject_detail: Mapped[str | None] = mapped_column(Text)
    expected_species_id: Mapped[int | None] = mapped_column(ForeignKey("species.id"))
    label_species_id: Mapped[int | None] = mapped_column(ForeignKey("species.id"))
    duplicate_group_id: Mapped[int | None] = mapped_column(
        ForeignKey("duplicate_groups.id"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    expected_species: Mapped[Species | None] = relationship(foreign_keys=[expected_species_id])
    label_species: Mapped[Species | None] = relationship(foreign_keys=[label_species_id])
    sources: Mapped[list[ImageSource]] = relationship(back_populates="image")


class ImageSource(Base):
    """One place an image was found, or a URL that failed (then image_id is null)."""

    __tablename__ = "image_sources"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2048), unique=True)
    image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id"), index=True)
    page_url: Mapped[str | None] = mapped_column(String(2048))
    # the page link as found when page_url was unwrapped from it (a click-tracking redirect)
    link_url: Mapped[str | None] = mapped_column(String(2048))
    site: Mapped[str | None] = mapped_column(String(255), index=True)
    license: Mapped[str | None] = mapped_column(String(128), index=True)
    license_url: Mapped[str | None] = mapped_column(String(2048))
    artist: Mapped[str | None] = mapped_column(Text)
    title: Mapped[str | None] = mapped_column(Text)
    keyword: Mapped[str | None] = mapped_column(String(255))
    species_id: Mapped[int | None] = mapped_column(ForeignKey("species.id"))
    crawl_job_id: Mapped[int | None] = mapped_column(ForeignKey("crawl_jobs.id"), index=True)
    error: Mapped[str | None] = mapped_column(String(64))
    error_detail: Mapped[str | None] = mapped_column(Text)
    http_status: Mapped[int | None] = mapped_column(Integer)
    first_seen: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)

    image: Mapped[Image | None] = relationship(back_populates="sources")


class DuplicateLink(Base):
    __tablename__ = "duplicate_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), unique=True)
    canonical_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("duplicate_groups.id"), index=True)
    distance: Mapped[int] = mapped_column(Integer)
    method: Mapped[str] = mapped_column(String(16))  # "pixels" | "phash" | "features"
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReviewTask(Base):
    __tablename__ = "review_tasks"

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), unique=True)
    ls_project_id: Mapped[int | None] = mapped_column(Integer)
    ls_task_id: Mapped[int | None] = mapped_column(Integer, unique=True)
    prediction_label: Mapped[str | None] = mapped_column(String(64))
    prediction_score: Mapped[float | None] = mapped_column(Float)
    prediction_source: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    decided_label: Mapped[str | None] = mapped_column(String(64))
    agreement: Mapped[float | None] = mapped_column(Float)
    pushed_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Annotation(Base):
    __tablename__ = "annotations"

    id: Mapped[int] = mapped_column(primary_key=True)
    review_task_id: Mapped[int] = mapped_column(ForeignKey("review_tasks.id"), index=True)
    ls_annotation_id: Mapped[int] = mapped_column(Integer, unique=True)
    annotator: Mapped[str] = mapped_column(String(255))
    choice: Mapped[str | None] = mapped_column(String(64))
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[str] = mapped_column(String(16))  # "pull" | "webhook"
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ReviewDecision(Base):
    """Every decision the resolver takes, kept as history (the latest one is in force)."""

    __tablename__ = "review_decisions"

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    review_task_id: Mapped[int] = mapped_column(ForeignKey("review_tasks.id"), index=True)
    outcome: Mapped[str] = mapped_column(String(16))  # approved | rejected | pending
    label: Mapped[str | None] = mapped_column(String(64))
    relabelled: Mapped[bool] = mapped_column(Boolean, default=False)
    agreement: Mapped[float | None] = mapped_column(Float)
    n_annotations: Mapped[int] = mapped_column(Integer, default=0)
    annotators: Mapped[list[Any]] = mapped_column(default=list)
    source: Mapped[str] = mapped_column(String(16))  # pull | webhook | model
    # a decision the model took (auto-accept): the curation run and its out-of-fold probability
    curation_run_id: Mapped[int | None] = mapped_column(ForeignKey("curation_runs.id"))
    model_probability: Mapped[float | None] = mapped_column(Float)
    decided_at: Mapped[datetime] = mapped_column(default=utcnow)


class DatasetVersion(Base):
    __tablename__ = "dataset_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    classes: Mapped[list[Any]] = mapped_column(default=list)  # ordered species slugs
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    manifest_sha256: Mapped[str | None] = mapped_column(String(64))
    n_items: Mapped[int] = mapped_column(Integer, default=0)
    n_train: Mapped[int] = mapped_column(Integer, default=0)
    n_val: Mapped[int] = mapped_column(Integer, default=0)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DatasetItem(Base):
    __tablename__ = "dataset_items"
    __table_args__ = (
        UniqueConstraint("version_id", "image_id"),
        Index("ix_dataset_items_version_split", "version_id", "split"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"))
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(64))
    split: Mapped[str] = mapped_column(String(8))  # train | val


class TrainingRun(Base):
    __tablename__ = "training_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_version_id: Mapped[int | None] = mapped_column(ForeignKey("dataset_versions.id"))
    dataset_path: Mapped[str | None] = mapped_column(String(1024))
    arch: Mapped[str] = mapped_column(String(64))
    weights: Mapped[str] = mapped_column(String(1024), default="imagenet")
    mode: Mapped[str] = mapped_column(String(16), default="frozen")
    hyperparams: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(16), default=JobState.QUEUED, index=True)
    classes: Mapped[list[Any]] = mapped_column(default=list)
    checkpoint_path: Mapped[str | None] = mapped_column(String(1024))
    best_checkpoint_path: Mapped[str | None] = mapped_column(String(1024))
    tensorboard_dir: Mapped[str | None] = mapped_column(String(1024))
    best_val_accuracy: Mapped[float | None] = mapped_column(Float)
    best_epoch: Mapped[int | None] = mapped_column(Integer)
    final_val_loss: Mapped[float | None] = mapped_column(Float)
    train_seconds: Mapped[float | None] = mapped_column(Float)
    confusion: Mapped[list[Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    host: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class EpochMetric(Base):
    __tablename__ = "epoch_metrics"
    __table_args__ = (UniqueConstraint("run_id", "epoch"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("training_runs.id"))
    epoch: Mapped[int] = mapped_column(Integer)
    train_loss: Mapped[float | None] = mapped_column(Float)
    train_accuracy: Mapped[float | None] = mapped_column(Float)
    val_loss: Mapped[float | None] = mapped_column(Float)
    val_accuracy: Mapped[float | None] = mapped_column(Float)
    lr: Mapped[float | None] = mapped_column(Float)
    seconds: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ClassMetric(Base):
    __tablename__ = "class_metrics"
    __table_args__ = (UniqueConstraint("run_id", "label"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("training_runs.id"))
    epoch: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(String(64))
    precision: Mapped[float] = mapped_column(Float)
    recall: Mapped[float] = mapped_column(Float)
    f1: Mapped[float] = mapped_column(Float)
    support: Mapped[int] = mapped_column(Integer)


class ImagePrediction(Base):
    """A trained model's opinion of an image: feeds review predictions and uncertainty order."""

    __tablename__ = "image_predictions"
    __table_args__ = (UniqueConstraint("image_id", "run_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    run_id: Mapped[int] = mapped_column(ForeignKey("training_runs.id"), index=True)
    label: Mapped[str] = mapped_column(String(64))
    confidence: Mapped[float] = mapped_column(Float)
    # the run's k most probable species, most probable first: [{"label", "probability"}, ...]
    top_k: Mapped[list[Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RunPromotion(Base):
    """A run pinned as the one `shoal serve` predicts with; the latest row is in force, the
    earlier ones are the history of what served when."""

    __tablename__ = "run_promotions"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("training_runs.id"), index=True)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CurationRun(Base):
    """One pass of the model over the pool (``shoal curate``): what it read and what it found.

    ``input_sha256`` hashes the pool (each image's sha256, given label and split key) and the
    parameters: a second pass over the same input finds this row and writes nothing."""

    __tablename__ = "curation_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    input_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    model_run_id: Mapped[int | None] = mapped_column(ForeignKey("training_runs.id"))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    stats: Mapped[dict[str, Any]] = mapped_column(default=dict)
    gallery_path: Mapped[str | None] = mapped_column(String(1024))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ImageSuspicion(Base):
    """A curation run's view of one image: how doubtful it is, why, and what it suggests.

    Every image of the run's pool has a row (``suspect`` false when nothing was found), so
    review can order by ``score`` and auto-accept can read ``given_probability``."""

    __tablename__ = "image_suspicions"
    __table_args__ = (UniqueConstraint("run_id", "image_id"),
                      Index("ix_image_suspicions_run_suspect", "run_id", "suspect"))

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("curation_runs.id"))
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    suspect: Mapped[bool] = mapped_column(Boolean, default=False)
    score: Mapped[float] = mapped_column(Float)  # 0 (nothing doubtful) .. 1 (surely wrong)
    reasons: Mapped[list[Any]] = mapped_column(default=list)  # label | not_a_fish | copy | ...
    given_label: Mapped[str | None] = mapped_column(String(64))
    suggested_label: Mapped[str | None] = mapped_column(String(64))
    suggested_probability: Mapped[float | None] = mapped_column(Float)
    # out-of-fold probability of the given label (the image's own fold never saw it)
    given_probability: Mapped[float | None] = mapped_column(Float)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
