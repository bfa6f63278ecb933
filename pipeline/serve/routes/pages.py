"""The web app: server-rendered pages over the same functions as the API and the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from catalog.dataset_versions import ItemFilter, diff_versions, image_sources, list_versions
from catalog.db import session_scope
from catalog.species import list_species
from catalog.stats import catalog_stats
from pipeline.curate.suspects import REASONS, SuspectQuery, by_reason, get_run, run_summary
from pipeline.curate.suspects import list_runs as curation_runs
from pipeline.datasets.versions import get_version, version_detail, version_summary
from pipeline.jobs.schedules import list_schedules
from pipeline.jobs.submit import job_dict, list_jobs
from pipeline.serve.charts import line_chart
from pipeline.serve.deps import READ
from pipeline.serve.errors import ApiError
from pipeline.serve.routes.predict import predict_uploads
from pipeline.serve.schemas import MAX_ID
from trainer.runs import compare_runs, list_runs, promoted_run_id, run_detail

router = APIRouter(include_in_schema=False, dependencies=READ)
templates = Jinja2Templates(directory=Path(__file__).parent.parent / "templates")
PAGE = 48
REASON_PAGE = 24  # suspects shown per reason when every reason is shown
STAGES = ("downloaded", "invalid", "unique", "duplicate", "in_review", "approved", "rejected")


def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, context, status_code=status)


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request) -> HTMLResponse:
    with session_scope() as session:
        stats = catalog_stats(session)
        jobs = [job_dict(j) for j in list_jobs(session, limit=30)]
        versions = [version_summary(v) for v in list_versions(session)][-5:]
        runs = list_runs(session, 5)
        latest = get_run(session, None)
        curation = run_summary(session, latest) if latest is not None else None
    return page(request, "dashboard.html", stats=stats, stages=STAGES, jobs=jobs,
                versions=versions, runs=runs, curation=curation)


@router.get("/species", response_class=HTMLResponse)
def species_page(request: Request) -> HTMLResponse:
    with session_scope() as session:
        species = list_species(session, include_inactive=True)
        schedules = list_schedules(session)
    return page(request, "species.html", species=species, schedules=schedules)


@router.get("/datasets", response_class=HTMLResponse)
def datasets_page(request: Request) -> HTMLResponse:
    with session_scope() as session:
        versions = [version_summary(v) for v in list_versions(session)]
    return page(request, "datasets.html", versions=versions)


@router.get("/datasets/{ref}", response_class=HTMLResponse)
def dataset_page(request: Request, ref: str, species: str | None = Query(None),
                 split: str | None = Query(None), page_no: int = Query(1, alias="page", ge=1,
                                                                       le=1_000_000)
                 ) -> HTMLResponse:
    flt = ItemFilter((species,) if species else (), split or None)
    with session_scope() as session:
        data = version_detail(session, ref, flt, items=True, limit=PAGE,
                              offset=(page_no - 1) * PAGE)
        sources = image_sources(session, [i["image_id"] for i in data["items"]])
    pages = max(1, -(-data["matching"] // PAGE))
    return page(request, "dataset.html", v=data, sources=sources, species=species,
                split=split, page_no=page_no, pages=pages)


@router.get("/datasets/{old}/diff/{new}", response_class=HTMLResponse)
def diff_page(request: Request, old: str, new: str) -> HTMLResponse:
    with session_scope() as session:
        diff = diff_versions(session, get_version(session, old), get_version(session, new))
        names = [v.name for v in list_versions(session)]
    return page(request, "diff.html", diff=diff.as_dict(200), names=names)


@router.get("/suspects", response_class=HTMLResponse)
def suspects_page(request: Request, run: int | None = Query(None, ge=1, le=MAX_ID),
                  reason: str | None = Query(None, max_length=32),
                  species: str | None = Query(None, max_length=64),
                  order: str = Query("desc", max_length=8),
                  page_no: int = Query(1, alias="page", ge=1, le=1_000_000)) -> HTMLResponse:
    """The suspects of a curation run grouped by reason: every group's most doubtful first
    (or least, by ``order``); one reason chosen, that group paged."""
    size = PAGE if reason else REASON_PAGE
    query = SuspectQuery(run=run, reasons=(reason,) if reason else (),
                         species=(species,) if species else (), order=order,  # type: ignore[arg-type]
                         limit=size, offset=(page_no - 1) * size if reason else 0)
    with session_scope() as session:
        data = by_reason(session, query)
        runs = curation_runs(session)
        slugs = [s["slug"] for s in list_species(session, include_inactive=True)]
    total = data["groups"][0]["total"] if reason and data["groups"] else 0
    chosen = {"run": run, "reason": reason, "species": species, "order": order}

    def link(**over: Any) -> str:
        params = {k: v for k, v in {**chosen, **over}.items() if v not in (None, "")}
        if params.get("order") == "desc":
            del params["order"]
        return "?" + urlencode(params)

    return page(request, "suspects.html", run=data["run"], groups=data["groups"], runs=runs,
                reasons=REASONS, slugs=slugs, chosen=chosen, link=link, page_no=page_no,
                pages=max(1, -(-total // size)))


@router.get("/runs", response_class=HTMLResponse)
def runs_page(request: Request) -> HTMLResponse:
    with session_scope() as session:
        runs = list_runs(session, 200)
        promoted = promoted_run_id(session)
    return page(request, "runs.html", runs=runs, promoted=promoted)


def _curves(runs: list[dict[str, Any]], key: str, title: str,
            y_range: tuple[float, float] | None = None) -> Markup:
    series = [(f"run {r['id']}", [(m["epoch"], m[key]) for m in r["epoch_metrics"]])
              for r in runs]
    return Markup(line_chart(title, series, y_range=y_range))


@router.get("/runs/compare", response_class=HTMLResponse)
def compare_page(request: Request, ids: list[int] = Query([])) -> HTMLResponse:
    ids = [i for i in ids if 0 < i <= MAX_ID]
    with session_scope() as session:
        rows = compare_runs(session, ids or None)
        details = [run_detail(session, r["id"]) for r in rows[:8]]
    charts = [_curves(details, "val_accuracy", "validation accuracy", (0, 1)),
              _curves(details, "val_loss", "validation loss")]
    return page(request, "compare.html", rows=rows, charts=charts)


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, run_id: int) -> HTMLResponse:
    if not 0 < run_id <= MAX_ID:
        raise ApiError(404, "not_found", f"no training run {run_id}")
    with session_scope() as session:
        run = run_detail(session, run_id)
    epochs = run["epoch_metrics"]
    loss = Markup(line_chart("loss", [
        ("train", [(m["epoch"], m["train_loss"]) for m in epochs]),
        ("val", [(m["epoch"], m["val_loss"]) for m in epochs])]))
    accuracy = Markup(line_chart("accuracy", [
        ("train", [(m["epoch"], m["train_accuracy"]) for m in epochs]),
        ("val", [(m["epoch"], m["val_accuracy"]) for m in epochs])], y_range=(0, 1)))
    return page(request, "run.html", run=run, charts=[loss, accuracy])


@router.get("/predict", response_class=HTMLResponse)
def predict_form(request: Request) -> HTMLResponse:
    return page(request, "predict.html", result=None, error=None)


@router.post("/predict", response_class=HTMLResponse)
async def predict_page(request: Request, files: list[UploadFile] = File(...),
                       top_k: int = Form(5, ge=1, le=100)) -> HTMLResponse:
    try:
        result = await predict_uploads(request, files, None, top_k)
    except ApiError as exc:
        return page(request, "predict.html", status=exc.status, result=None, error=exc.message)
    return page(request, "predict.html", result=result, error=None)
