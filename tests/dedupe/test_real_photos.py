"""Real photos through the ingest path, then `shoal dedupe` end to end."""

from __future__ import annotations

import io
import json

from PIL import Image as PILImage
from sqlalchemy import select
from typer.testing import CliRunner

from catalog.db import session_scope
from catalog.ingest import SourceInfo, ingest_bytes
from catalog.models import DuplicateGroup, DuplicateLink, Image
from catalog.store import ImageStore
from pipeline.cli import app
from tests.dedupe.conftest import species_id

runner = CliRunner()


def _variant(raw: bytes) -> bytes:
    """The same photo as a shop would repost it: half size, heavy JPEG."""
    img = PILImage.open(io.BytesIO(raw)).convert("RGB")
    img = img.resize((img.width // 2, img.height // 2), PILImage.Resampling.LANCZOS)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=30)
    return out.getvalue()


def _dedupe(*args: str) -> dict:
    result = runner.invoke(app, ["dedupe", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout[result.stdout.index("{"):])


def test_real_photos_grouped_with_conflict_and_rerun_is_noop(shoal_env, fishdata):
    web = fishdata / "web-20"
    store = ImageStore(shoal_env.image_dir)
    with session_scope() as s:
        hairtail, pomfret = species_id(s, "hairtail"), species_id(s, "silver-pomfret")

        def ingest(raw: bytes, url: str, species: int) -> int:
            return ingest_bytes(s, store, raw, species_id=species,
                                source=SourceInfo(url=url, license="CC BY 4.0")).image_id

        original = (web / "Mola" / "000002.jpg").read_bytes()
        orig_id = ingest(original, "file:mola/2", hairtail)
        copy_id = ingest(_variant(original), "file:mola/2-small", hairtail)
        other_id = ingest((web / "Mola" / "000004.jpg").read_bytes(), "file:mola/4", hairtail)
        # the same file sits under two species in the collection: one row, two labels
        twice = ingest((web / "Bata" / "000032.jpg").read_bytes(), "file:bata/32", hairtail)
        assert ingest((web / "Rui" / "000026.jpg").read_bytes(), "file:rui/26", pomfret) == twice

    dry = _dedupe("--dry-run")
    assert dry["dry_run"] and dry["groups"] == 2
    report = _dedupe()
    assert report["new_images"] == 4 and report["near_pairs"] == 1
    assert report["groups"] == 2 and report["marked_duplicate"] == 1
    assert [c["species_slugs"] for c in report["conflicts"]] == [["hairtail", "silver-pomfret"]]
    with session_scope() as s:
        link = s.scalars(select(DuplicateLink)).one()
        assert (link.image_id, link.canonical_id) == (copy_id, orig_id)
        assert s.get(Image, other_id).status == "unique"
        assert s.get(DuplicateGroup, s.get(Image, twice).duplicate_group_id).conflict
    again = _dedupe("--rescan")
    assert again["groups_created"] == again["groups_changed"] == again["links_written"] == 0
    assert again["marked_unique"] == again["marked_duplicate"] == 0


def test_cli_refuses_bad_radius(shoal_env):
    result = runner.invoke(app, ["dedupe", "--radius", "40"])
    assert result.exit_code == 2 and "--radius must be within" in result.output
