"""The one flow: Shoal's stages in order, each built from job kinds, defined here only.

    crawl -> dedupe -> curate -> review -> dataset -> train -> predict

The demo, the direct commands (`shoal crawl`, `shoal dedupe`, `shoal dataset create`,
`shoal train` ...), `shoal jobs` and beat build their jobs from these stages and run them
through :mod:`pipeline.jobs.submit`: in the calling process on the embedded default (no
``SHOAL_BROKER_URL``), on Celery workers when a broker is set. Either way every step is a
``jobs`` row, so `shoal jobs list` shows what ran, with its timing and result.

A stage is a name and a function that turns a request into branches (each a chain of job
kinds); a stage of plain jobs is one line in ``FLOW``: ``Stage("curate", jobs_of("predict",
"curate"))``, its jobs' arguments in ``FlowRequest.args`` by kind.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from catalog.models import Job, JobState
from catalog.settings import get_settings
from pipeline.errors import ShoalError, UsageError
from pipeline.jobs.runner import Listener, listening
from pipeline.jobs.submit import (
    Step,
    broker_configured,
    dispatch,
    prepare_chain,
    reload,
    submit_chain,
)

Branch = list[Step]  # jobs that run one after the other
Done = dict[str, list[Job]]  # stage name -> its finished jobs, in the order they ran
Watcher = Callable[[Job], None]  # sees each job row as it changes (and once it finished)

POLL_S = 0.5
# review modes: the job kinds of the review stage
REVIEWS: dict[str, tuple[str, ...]] = {
    "none": (),
    "push": ("review_push",),  # send to Label Studio; people decide later
    "accept": ("approve_by_keyword",),  # no people: the crawl keyword is the label
    # one round in Label Studio, then whatever nobody annotated yet is accepted as crawled
    "round": ("review_setup", "review_push", "review_pull", "approve_by_keyword"),
    # no people: the model approves what it is sure of (after curate), then the rest of what
    # curation judged and did not suspect is taken under its keyword; suspects wait. Taking
    # only the model's sure approvals trains on the easy images alone: on web-20 with 10% of
    # the labels wrong that scored 4-5 points below accepting every keyword, this 1.5-1.7 above
    # it (benchmarks/curate.py, seeds 0 and 1)
    "auto": ("auto_accept", "approve_unsuspected"),
    # Label Studio after curate: suspects first (the model approves what it is sure of when
    # review_push has "auto_accept"), then the annotations made so far are pulled
    "curated": ("review_setup", "review_push", "review_pull"),
}


@dataclass(frozen=True)
class FlowRequest:
    """What one pass of the flow is asked to do; each stage reads its own part. Every dict is
    a job's arguments, as `shoal jobs submit KIND --arg` takes them."""

    crawls: tuple[tuple[str, str], ...] = ()  # (species slug, source)
    limit: int | None = None  # images per crawl
    crawl_env: dict[str, str] = field(default_factory=dict)  # SHOAL_CRAWL_* for these crawls
    review: str = "none"  # a key of REVIEWS
    # the arguments of the other stages' jobs, by job kind: {"dedupe": {"radius": 6},
    # "review_push": {"species": [...]}, "dataset_create": {"min_per_class": 20}, ...}
    args: dict[str, dict[str, Any]] = field(default_factory=dict)
    # one training run each: {"run_id"} of a run made already, or {"dataset"?, "arch", ...};
    # without a dataset, the version the dataset stage made (or the chain's parent job)
    runs: tuple[dict[str, Any], ...] = ()


def crawl_steps(req: FlowRequest, _done: Done) -> list[Branch]:
    extra = {"env": dict(req.crawl_env)} if req.crawl_env else {}
    return [[("crawl", {"species": species, "source": source, "limit": req.limit, **extra})]
            for species, source in req.crawls]


def jobs_of(*kinds: str) -> Callable[[FlowRequest, Done], list[Branch]]:
    """A stage that runs these kinds one after the other, each with its ``req.args``."""

    def steps(req: FlowRequest, _done: Done) -> list[Branch]:
        return [[(kind, dict(req.args.get(kind, {}))) for kind in kinds]] if kinds else []

    return steps


def review_steps(req: FlowRequest, done: Done) -> list[Branch]:
    if req.review not in REVIEWS:
        raise UsageError(f"review must be one of {', '.join(REVIEWS)}, not {req.review!r}")
    return jobs_of(*REVIEWS[req.review])(req, done)


def predict_steps(req: FlowRequest, done: Done) -> list[Branch]:
    """The new model scores what still waits for review: the next round's order."""
    if "predict" not in req.args:
        return []
    return [[("predict", {**req.args["predict"], "run": job.result["run_id"]})]  # type: ignore[index]
            for job in done.get("train", [])]


def train_steps(req: FlowRequest, done: Done) -> list[Branch]:
    made = done.get("dataset")
    branches = []
    for run in req.runs or ({},):
        args = dict(run)
        if made and not args.get("run_id") and not args.get("dataset"):
            args["dataset"] = made[-1].result["version"]  # type: ignore[index]
        branches.append([("train", args)])
    return branches


@dataclass(frozen=True)
class Stage:
    name: str
    steps: Callable[[FlowRequest, Done], list[Branch]]
    # failures (by exception class name) that leave the rest of the flow going: a crawl that
    # fetched nothing is recorded on its crawl job, and the other crawls and dedupe go on
    tolerated: tuple[str, ...] = ()


FLOW: tuple[Stage, ...] = (
    Stage("crawl", crawl_steps, tolerated=("CrawlFailed",)),
    Stage("dedupe", jobs_of("dedupe")),
    # the model's first pass; runs only when the request gives its arguments
    Stage("curate", lambda req, done: jobs_of("curate")(req, done) if "curate" in req.args
          else []),
    Stage("review", review_steps),
    Stage("dataset", jobs_of("dataset_create")),
    Stage("train", train_steps),
    Stage("predict", predict_steps),
)
STAGE_NAMES = tuple(stage.name for stage in FLOW)


def stages(names: Iterable[str] | None = None) -> list[Stage]:
    """The named stages in the flow's order (all of them when ``names`` is None)."""
    if names is None:
        return list(FLOW)
    wanted = set(names)
    unknown = wanted - set(STAGE_NAMES)
    if unknown:
        raise UsageError(f"unknown stage {', '.join(sorted(unknown))}; one of "
                         f"{', '.join(STAGE_NAMES)}")
    return [stage for stage in FLOW if stage.name in wanted]


class JobFailed(ShoalError):
    """A job of the flow failed or was cancelled (on a worker: its row says why)."""


# a failed row's error class -> the exit code the same error has when raised in-process
EXIT_CODE_OF = {"UsageError": 2, "UnknownSpecies": 2, "TrainingError": 2, "WeightsMissing": 2,
                "ServiceUnavailable": 3, "LabelStudioUnavailable": 3}


# --- running it -----------------------------------------------------------------------------
def run_flow(req: FlowRequest, names: Iterable[str] | None = None, *,
             listener: Listener | None = None, watch: Watcher | None = None,
             done: Done | None = None) -> Done:
    """Run the stages one after the other, each once every job of the one before finished;
    returns each stage's jobs. ``done``: the jobs of earlier stages, run before.

    In-process, ``listener`` sees each body's steps (for progress bars) and an error a job
    raised is raised here again once recorded; on workers, ``watch`` sees the polled rows.
    """
    done = dict(done or {})
    for stage in stages(names):
        branches = stage.steps(req, done)
        if branches:
            done[stage.name] = run_jobs(branches, listener=listener, watch=watch,
                                        tolerated=stage.tolerated)
    return done


def run_jobs(branches: Sequence[Branch], *, listener: Listener | None = None,
             watch: Watcher | None = None, tolerated: tuple[str, ...] = ()) -> list[Job]:
    """Submit each branch and wait until all of their jobs finished; returns their rows.

    Raises JobFailed for a failed or cancelled job, unless its error is ``tolerated``.
    """
    jobs: list[Job] = []
    for branch in branches:
        rows, created = prepare_chain(branch)
        if created:
            try:
                with listening(listener):
                    dispatch(rows, reraise=True)
            except Exception as exc:  # in-process: recorded on the row already
                if type(exc).__name__ not in tolerated:
                    raise
        jobs.extend(rows)
    jobs = wait_for(jobs, watch)
    for job in jobs:
        check(job, tolerated)
    return jobs


def wait_for(jobs: Sequence[Job], watch: Watcher | None = None, poll_s: float = POLL_S,
             timeout_s: float | None = None) -> list[Job]:
    """Poll the rows until every job finished (in-process they already have: one read)."""
    polling = broker_configured()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    seen: dict[int, tuple[Any, ...]] = {}
    while True:
        rows = reload(jobs)
        for row in rows:
            now = (row.state, row.progress, row.message)
            if watch is not None and seen.get(row.id) != now:
                watch(row)
            seen[row.id] = now
        if not polling or all(row.state in JobState.FINISHED for row in rows):
            return rows
        if deadline is not None and time.monotonic() > deadline:
            raise JobFailed(f"jobs {', '.join(str(r.id) for r in rows)} still running after "
                            f"{timeout_s:.0f}s")
        time.sleep(poll_s)


def error_class(job: Job) -> str:
    """The exception class a failed job's error starts with (see runner.describe)."""
    return (job.error or "").split(":", 1)[0].strip()


def check(job: Job, tolerated: tuple[str, ...] = ()) -> None:
    if job.state == JobState.SUCCEEDED:
        return
    if job.state == JobState.FAILED and error_class(job) in tolerated:
        return
    why = (job.error or job.message or "").strip().splitlines()
    raise JobFailed(f"{job.kind} job {job.id} {job.state}" + (f": {why[0]}" if why else ""),
                    exit_code=EXIT_CODE_OF.get(error_class(job), 1))


# --- queueing it without waiting -------------------------------------------------------------
def chains(req: FlowRequest, names: Iterable[str] | None = None) -> list[Branch]:
    """The stages as chains that run unattended (beat, `shoal jobs`): one per branch of the
    first stage, each followed by the later stages (which must then be one branch each)."""
    chosen = [(stage, stage.steps(req, {})) for stage in stages(names)]
    chosen = [(stage, branches) for stage, branches in chosen if branches]
    if not chosen:
        raise UsageError("nothing to submit")
    (_first, heads), rest = chosen[0], chosen[1:]
    tail: Branch = []
    for stage, branches in rest:
        if len(branches) != 1:
            raise UsageError(f"stage {stage.name} has {len(branches)} branches: a chain can "
                             "only fan out at its first stage")
        tail.extend(branches[0])
    return [[*head, *tail] for head in heads]


def submit_flow(req: FlowRequest, names: Iterable[str] | None = None) -> list[list[Job]]:
    """Queue the stages as chains and return at once (in-process they have run)."""
    return [submit_chain(chain) for chain in chains(req, names)]


def crawl_chain(species: str, source: str, limit: int | None = None,
                review: bool | None = None) -> Branch:
    """crawl -> dedupe -> review push (the push only when Label Studio is configured,
    unless ``review`` says otherwise): what beat queues for a due schedule."""
    if review is None:
        review = bool(get_settings().review.label_studio_url)
    req = FlowRequest(crawls=((species, source),), limit=limit,
                      review="push" if review else "none",
                      args={"review_push": {"species": [species]}})
    [chain] = chains(req, ("crawl", "dedupe", "review"))
    return chain


def train_chain(version: str | None, arch: str, mode: str, weights: str,
                hyper: dict[str, Any]) -> Branch:
    """[dataset create ->] train: a new version first when none is named."""
    run = {"dataset": version, "arch": arch, "mode": mode, "weights": weights, "hyper": hyper}
    [chain] = chains(FlowRequest(runs=(run,)), ("train",) if version else ("dataset", "train"))
    return chain


def curate_chain(args: dict[str, Any]) -> Branch:
    """The curate stage alone: one pass of the model over the pool (``shoal curate``'s
    arguments: run, folds, species, quality)."""
    [chain] = chains(FlowRequest(args={"curate": dict(args)}), ("curate",))
    return chain


def where_jobs_run() -> str:
    return "queued" if broker_configured() else "ran in-process"
