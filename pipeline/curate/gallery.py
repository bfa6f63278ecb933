"""The curation gallery: one self-contained HTML file, a section per reason, each suspect a
thumbnail with its given and suggested species and its score; every section sorts by score,
given or suggested species (a click on the button)."""

from __future__ import annotations

import base64
import io
from collections import defaultdict
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.models import CurationRun, Image
from catalog.settings import get_settings
from catalog.store import ImageStore
from pipeline.curate.suspects import SuspectQuery, list_suspects

THUMB = 160
TEMPLATES = Path(__file__).parent / "templates"


def thumbnail(path: Path) -> str | None:
    """A small JPEG as a data URI, or None when the file cannot be read."""
    try:
        with PILImage.open(path) as img:
            img.draft("RGB", (THUMB, THUMB))
            img = img.convert("RGB")
            img.thumbnail((THUMB, THUMB))
            out = io.BytesIO()
            img.save(out, "JPEG", quality=80)
    except (OSError, ValueError, PILImage.DecompressionBombError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode()


def suspects(session: Session, run_id: int) -> list[dict[str, Any]]:
    """Every suspect of the run (as the listings show it) with its thumbnail inlined."""
    rows = list_suspects(session, SuspectQuery(run=run_id, limit=0))["suspects"]
    paths = dict(session.execute(select(Image.id, Image.path).where(
        Image.id.in_([r["image_id"] for r in rows]))).all()) if rows else {}
    store = ImageStore(get_settings().image_dir)
    return [{**r, "given": r["given"] or "", "suggested": r["suggested"] or "",
             "thumb": thumbnail(store.path(paths[r["image_id"]]))
             if paths.get(r["image_id"]) else None} for r in rows]


def write_gallery(session: Session, run_id: int, out: Path | None = None) -> Path:
    run = session.get_one(CurationRun, run_id)
    items = suspects(session, run_id)
    by_reason: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in items:
        for reason in item["reasons"]:
            by_reason[reason].append(item)
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape())
    html = env.get_template("gallery.html").render(
        run=run, sections=sorted(by_reason.items(), key=lambda kv: (-len(kv[1]), kv[0])),
        total=len(items))
    out = out or get_settings().data_dir / "curation" / f"run-{run_id}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    run.gallery_path = str(out)
    return out
