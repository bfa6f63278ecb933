"""`shoal review`: human review in Label Studio (setup, push, pull, webhooks, status)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from catalog.db import check_migrated, session_scope
from catalog.leases import LeaseHeld
from catalog.settings import get_settings
from labeling.client import LabelStudioError, LabelStudioUnavailable, make_client
from labeling.config import ConfigError
from labeling.project import PROJECT_TITLE
from labeling.push import ORDERS
from labeling.record import Annotators
from labeling.status import SPECIES_COLUMNS, review_status
from labeling.webhooks import Bounds, WebhookServer
from pipeline.cli.common import (
    JSON_OPTION,
    ShoalGroup,
    catalog_session,
    console,
    print_json,
    print_table,
)
from pipeline.errors import ServiceUnavailable, ShoalError, UsageError
from pipeline.jobs.actions import one_job

if TYPE_CHECKING:
    from label_studio_sdk import LabelStudio

review_app = typer.Typer(cls=ShoalGroup, help="Human review in Label Studio.")


@contextmanager
def label_studio_errors() -> Iterator[None]:
    """Label Studio failures as Shoal's user errors: a message and an exit code."""
    try:
        yield
    except LabelStudioUnavailable as exc:
        raise ServiceUnavailable(str(exc)) from exc
    except (LabelStudioError, LeaseHeld) as exc:
        raise ShoalError(str(exc)) from exc
    except ConfigError as exc:
        raise UsageError(str(exc)) from exc


def client_from_settings() -> LabelStudio:
    s = get_settings().review
    token = s.label_studio_token.get_secret_value() if s.label_studio_token else ""
    with label_studio_errors():
        return make_client(s.label_studio_url or "", token)


@review_app.command("setup")
def setup_cmd(
    files_root: Path = typer.Option(
        None, help="The Shoal data dir as the Label Studio server sees it (its "
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT); default: SHOAL_DATA_DIR."),
    overlap: int = typer.Option(1, min=1, help="Annotators per task (majority vote above 1)."),
    webhook_url: str = typer.Option(
        None, help="Register this `shoal review serve-webhooks` URL (needs SHOAL_WEBHOOK_SECRET)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create or update the review project, its image storage and its webhook (idempotent)."""
    args = {"files_root": str(files_root.resolve()) if files_root else None,
            "overlap": overlap, "webhook_url": webhook_url}
    with label_studio_errors():
        report = one_job("review_setup", args).result
    if as_json:
        print_json(report)
        return
    verb = ("created" if report["project_created"] else
            "updated" if report["config_updated"] else "kept")
    console.print(f"{verb} project {PROJECT_TITLE!r} (id {report['project_id']}) with "
                  f"{report['species']} species; image storage {report['storage_id']}"
                  + (f"; webhook {report['webhook_id']}" if report["webhook_id"] else ""))


@review_app.command("push")
def push_cmd(
    species: list[str] = typer.Option([], "--species", "-s", help="Only this species (repeat)."),
    limit: int = typer.Option(None, min=1, help="Push at most this many images."),
    order: str = typer.Option(None, help=f"Which first: {' | '.join(ORDERS)} (default: "
                              "suspicion once `shoal curate` has run, else oldest)."),
    auto_accept: float = typer.Option(None, "--auto-accept", min=0.0, max=1.0, help="First "
                                      "approve, as decided by the model, every image whose "
                                      "keyword is the curation run's out-of-fold top species "
                                      "with at least this probability and nothing suspect."),
    batch_size: int = typer.Option(500, min=1, max=5000, help="Tasks per import request."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Send unique images not yet reviewed to Label Studio, each with a prediction: suspects
    first, pre-annotated with the species (or verdict) the first pass suggests."""
    if order is not None and order not in ORDERS:
        raise UsageError(f"--order must be one of {', '.join(ORDERS)}")
    if auto_accept is not None and auto_accept <= 0:
        raise UsageError("--auto-accept takes a probability above 0 (e.g. 0.9)")
    args = {"species": species or None, "limit": limit, "order": order,
            "batch_size": batch_size, "auto_accept": auto_accept}
    with label_studio_errors():
        r = one_job("review_push", args).result
    if as_json:
        print_json(r)
        return
    if r.get("auto_accepted"):
        a = r["auto_accepted"]
        console.print(f"auto-accepted {a['approved']} images (curation run "
                      f"{a['curation_run_id']}, out-of-fold probability >= {a['threshold']}): "
                      "recorded as decided by the model")
    console.print(f"pushed {r['pushed']} of {r['candidates']} images in "
                  f"{r['requests']} requests ({r['seconds']:.1f}s)"
                  + (f"; settled {r['reconciled'] + r['requeued']} from an interrupted "
                     "push" if r["reconciled"] or r["requeued"] else ""))


@review_app.command("pull")
def pull_cmd(as_json: bool = JSON_OPTION) -> None:
    """Read every annotation from Label Studio and resolve the decisions that changed."""
    with label_studio_errors():
        r = one_job("review_pull", {}).result
    if as_json:
        print_json(r)
        return
    d = r["decisions"]
    console.print(f"{r['annotations']} annotations on {r['tasks']} tasks; "
                  f"{r['changed_tasks']} tasks changed ({r['deleted']} deletions): "
                  f"{d['approved']} approved, {d['rejected']} rejected, {d['pending']} pending")


@review_app.command("serve-webhooks")
def serve_webhooks_cmd(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8765, help="Port to listen on (0: any free port)."),
    timeout: float = typer.Option(Bounds.timeout, min=0.1,
                                  help="Seconds a client has for a request's headers, and again "
                                       "for its body."),
    max_connections: int = typer.Option(Bounds.max_connections, min=1,
                                        help="Open connections before answering 503."),
) -> None:
    """Receive Label Studio webhooks (shared secret in X-Shoal-Webhook-Secret) until Ctrl-C."""
    settings = get_settings().review
    if not settings.webhook_secret:
        raise UsageError("set SHOAL_WEBHOOK_SECRET: the endpoint refuses unsigned calls")
    check_migrated()
    client = client_from_settings() if settings.label_studio_url else None
    try:
        server = WebhookServer((host, port), settings.webhook_secret.get_secret_value(),
                               session_scope, Annotators(client),
                               Bounds(timeout=timeout, max_connections=max_connections))
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    console.print(f"listening on {server.url} (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@review_app.command("status")
def status_cmd(as_json: bool = JSON_OPTION) -> None:
    """Per species: pushed, annotated, approved, rejected, relabelled, pending; per annotator."""
    with catalog_session() as session:
        data = review_status(session)
    if as_json:
        print_json(data)
        return
    print_table("review by species", ["species", *SPECIES_COLUMNS],
                [[r["species"], *(r[c] for c in SPECIES_COLUMNS)] for r in data["species"]])
    if data["auto_accepted"]:
        runs: dict[int, list[float]] = {}
        for d in data["model_decisions"]:
            runs.setdefault(d["curation_run"], []).append(d["probability"])
        print_table(f"{data['auto_accepted']} images approved by the model (auto-accept)",
                    ["curation run", "images", "lowest probability"],
                    [[run, len(ps), f"{min(ps):.3f}"] for run, ps in sorted(runs.items())])
    print_table("annotators", ["annotator", "annotations", "skipped", "compared", "agreement"],
                [[r["annotator"], r["annotations"], r["skipped"], r["compared"],
                  "" if r["agreement"] is None else f"{r['agreement']:.0%}"]
                 for r in data["annotators"]])
