"""A decompression bomb through every path that decodes a user's image: each refuses it with
``too_many_pixels`` before decoding, in one line, with bounded memory.

The bomb is an 875 KB greyscale PNG of 30000 x 30000 pixels: decoded it is 900 MB, and 2.7 GB
as the RGB every path converts to. Each command runs as the real CLI in a subprocess whose
peak resident memory is read back with ``wait4``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline.demo.site.hostile import png_bomb
from tests.hostile.shoal_proc import assert_one_line_error, child_env, python, shoal

pytestmark = pytest.mark.slow

BOUNDED_MB = 1000  # the bomb decoded would take 900 MB before its 2.7 GB RGB copy
# importing torch alone peaks near 900 MB of resident memory (its libraries), so a command that
# loads a model is held to its own peak on ordinary photos plus this margin
MODEL_MARGIN_MB = 400


@pytest.fixture(scope="session")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    path.write_bytes(png_bomb(30000))
    assert path.stat().st_size < 1 << 20
    return path


def _bounded(done, baseline_mb: float | None = None) -> None:  # type: ignore[no-untyped-def]
    limit = BOUNDED_MB if baseline_mb is None else baseline_mb + MODEL_MARGIN_MB
    assert done.peak_rss_mb < limit, f"peak RSS {done.peak_rss_mb:.0f} MB > {limit:.0f} MB"


def test_predict_refuses_a_bomb(trained: dict, bomb: Path) -> None:
    done = shoal("predict", str(bomb), "--run", trained["run"], env=trained["env"])
    assert_one_line_error(done, 2, "too_many_pixels", "bomb.png", "900000000 pixels")
    _bounded(done, trained["peaks"]["predict"])


def test_predict_applies_the_configured_pixel_limit(trained: dict) -> None:
    """Not Pillow's own guard: a 10,000-pixel limit refuses an ordinary photo."""
    env = {**trained["env"], "SHOAL_MAX_PIXELS": "10000"}
    done = shoal("predict", str(trained["photo"]), "--run", trained["run"], env=env)
    assert_one_line_error(done, 2, "too_many_pixels", "> 10000 pixels")


def test_report_refuses_a_bomb_among_its_samples(trained: dict, bomb: Path) -> None:
    victim = next((trained["dataset"] / "val" / "hilsa").iterdir())
    kept = victim.read_bytes()
    try:
        victim.write_bytes(bomb.read_bytes())
        out = trained["base"] / "report.html"
        done = shoal("report", "--run", trained["run"], "--out", str(out), env=trained["env"])
    finally:
        victim.write_bytes(kept)
    assert_one_line_error(done, 2, "too_many_pixels", victim.name)
    _bounded(done, trained["peaks"]["report"])
    assert not out.exists()


@pytest.mark.parametrize("loop", ["fast", "plain"])
def test_training_refuses_a_bomb_in_its_data(trained: dict, bomb: Path, tmp_path: Path,
                                             loop: str) -> None:
    """Both loops: the feature cache (fast) and the decode-every-epoch DataLoader (plain)."""
    dataset = tmp_path / "with-bomb"
    shutil.copytree(trained["dataset"], dataset)
    shutil.copy(bomb, dataset / "train" / "koi" / "bomb.png")
    done = shoal("train", "--dataset", str(dataset), "--arch", "resnet34", "--weights", "none",
                 "--epochs", "1", "--batch-size", "8", "--image-size", "64",
                 *(["--plain"] if loop == "plain" else []), env=trained["env"])
    assert_one_line_error(done, 2, "too_many_pixels", "bomb.png")
    _bounded(done, trained["peaks"]["train"])


def test_import_refuses_a_bomb_and_keeps_the_rest(trained: dict, bomb: Path,
                                                  tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    shutil.copytree(trained["dataset"] / "val" / "koi", folder)
    shutil.copy(bomb, folder / "bomb.png")
    done = shoal("import", str(folder), "--species", "hairtail", "--json", env=trained["env"])
    assert done.rc == 0 and "Traceback" not in done.stderr, done.stderr
    report = done.json()
    [refused] = report["rejected_files"]
    assert refused["file"] == "bomb.png" and refused["reason"] == "too_many_pixels"
    assert report["new"] == report["files"] - 1
    _bounded(done)
    single = shoal("import", str(bomb), "--species", "hairtail", env=trained["env"])
    assert single.rc == 0 and "too_many_pixels" in single.stdout, single.stderr
    assert "bomb.png" in single.stdout


def test_hashing_the_demo_site_and_the_api_refuse_a_bomb(bomb: Path, tmp_path: Path) -> None:
    """The other decoders: perceptual hashing of stored files, the demo site's re-encoder, and
    `shoal serve`'s upload decoder and thumbnails."""
    code = f"""
from pathlib import Path
from catalog.imaging import ImageRejected, Limits, hash_stored
from pipeline.demo.site.server import _reencode
from pipeline.serve.errors import ApiError
from pipeline.serve.thumbnails import make_thumbnail
from pipeline.serve.uploads import decode
path = Path({str(bomb)!r})
raw = path.read_bytes()
for decoder in (hash_stored, lambda b: _reencode(b, 640, 80),
                lambda _b: make_thumbnail(path, "0" * 64, 128)):
    try:
        decoder(raw)
    except ImageRejected as rej:
        print(rej.reason)
try:
    decode(raw, Limits())
except ApiError as exc:
    print(exc.status, exc.code)
"""
    done = python(code, env=child_env(SHOAL_DATA_DIR=str(tmp_path / "data")))
    assert done.rc == 0, done.stderr
    assert done.stdout.split() == ["too_many_pixels"] * 3 + ["413", "too_many_pixels"]
    _bounded(done)


def test_no_import_switches_off_pillows_guard() -> None:
    """Importing every product package leaves Pillow's process-wide settings as Pillow sets
    them (other code in the process keeps its own bomb guard)."""
    code = """
from PIL import Image, ImageFile
before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
import catalog.imaging, catalog.ingest, crawler.pipelines, crawler.ingest_workers
import trainer.data, trainer.predict, trainer.report, trainer.features, trainer.loops
import labeling.push, pipeline.cli, pipeline.importer, pipeline.demo.site.server
import pipeline.serve.app, pipeline.serve.uploads, pipeline.serve.thumbnails
print(before == (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES), before[0])
"""
    done = python(code, env=child_env())
    assert done.rc == 0, done.stderr
    assert done.stdout.split() == ["True", str(89478485)]
