"""`shoal import` against bad files and bad paths, through the real CLI in a subprocess."""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select

from catalog.db import session_scope
from catalog.models import Image as ImageRow
from catalog.models import ImageSource, ImageStatus
from tests.hostile.shoal_proc import assert_one_line_error, child_env, run, shoal


@pytest.fixture
def photos(fishdata: Path) -> list[Path]:
    return sorted((fishdata / "web-20" / "Koi").iterdir())[:3]


def _import(folder: Path | str, *extra: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    done = shoal("import", str(folder), "--species", "hairtail", *extra,
                 env=child_env(**(env or {})), timeout=120)
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.linear_gradient("L").resize((width, height)).save(out, "PNG")
    return out.getvalue()


def test_a_non_utf8_name_is_imported_and_its_bytes_kept(sqlite_env, tmp_path, photos) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in photos[:2]:
        shutil.copy(p, folder / p.name)
    odd = os.fsencode(folder) + b"/koi-\xff\xfe.jpg"
    with open(odd, "wb") as fh:
        fh.write(photos[2].read_bytes())
    with open(os.fsencode(folder) + b"/bad-\xe9.jpg", "wb") as fh:
        fh.write(b"<html><body>not a photo</body></html>")
    done = _import(folder)
    assert done.rc == 0, done.stderr
    assert "bad-\\xe9.jpg" in done.stdout and "3 new" in done.stdout
    with session_scope() as s:
        source = s.scalar(select(ImageSource).where(ImageSource.url.like("%koi-%")))
        assert source is not None and source.image_id is not None
        assert source.url.endswith("/koi-%FF%FE.jpg") and source.title == "koi-\\xff\\xfe.jpg"
        assert Path(os.fsdecode(_url_bytes(source.url))).read_bytes() == photos[2].read_bytes()
    again = _import(folder, "--json")
    assert again.rc == 0 and again.json()["existing"] == 3
    assert {f["file"] for f in again.json()["rejected_files"]} == {"bad-\\xe9.jpg"}


@pytest.mark.slow
def test_predict_prints_a_non_utf8_name_safely(trained: dict, tmp_path: Path) -> None:
    """`shoal predict` on a file named b'koi-\\xff.jpg': the JSON it prints is valid UTF-8 with
    the byte shown as ``\\xff`` (JSON-escaped), and the table shows the same form."""
    shutil.copy(trained["photo"], os.fsdecode(os.fsencode(tmp_path) + b"/koi-\xff.jpg"))
    argv = [sys.executable, "-m", "pipeline.cli", "predict", os.fsdecode(b"koi-\xff.jpg"),
            "--run", trained["run"]]
    done = run([*argv, "--json"], env=trained["env"], cwd=tmp_path)
    assert done.rc == 0 and "Traceback" not in done.stderr, done.stderr
    [result] = json.loads(done.stdout_bytes.decode("utf-8"))  # strict: no raw \xff byte
    assert result["file"] == "koi-\\xff.jpg" and result["predictions"]
    assert b'"koi-\\\\xff.jpg"' in done.stdout_bytes
    table = run(argv, env=trained["env"], cwd=tmp_path)
    assert table.rc == 0 and "Traceback" not in table.stderr, table.stderr
    assert "koi-\\xff.jpg" in table.stdout_bytes.decode("utf-8")


def _url_bytes(url: str) -> bytes:
    from urllib.parse import unquote_to_bytes

    return unquote_to_bytes(url.removeprefix("file://"))


def test_rich_markup_in_paths_is_printed_verbatim(sqlite_env, tmp_path, photos) -> None:
    folder = tmp_path / "a[/]b [red]c"  # the folders "a[" and "]b [red]c"
    folder.mkdir(parents=True)
    shutil.copy(photos[0], folder / "[bold]good.jpg")
    (folder / "[bold]x.jpg").write_bytes(b"<html>not an image</html>")
    # the bar's description holds the whole temp path, whose length depends on where pytest
    # (or its xdist worker) puts it: wide enough that rich does not cut it short
    done = _import(folder, env={"COLUMNS": "1000"})
    assert done.rc == 0, done.stderr
    assert "[bold]x.jpg" in done.stdout and "1 new" in done.stdout
    assert "/a[/]b" in done.stderr  # the progress bar's description, escaped
    missing = _import(tmp_path / "no[/]such [bold]folder")
    assert_one_line_error(missing, 2, "no[/]such [bold]folder")


def test_the_reject_table_names_each_file_whole_and_relative(sqlite_env, tmp_path) -> None:
    folder = tmp_path / "camera-roll"
    nested = folder / "2024" / "trip-to-the-fish-market" / "second-day"
    nested.mkdir(parents=True)
    names = ["2024/trip-to-the-fish-market/second-day/IMG_20240612_101112_0001.jpg",
             "2024/trip-to-the-fish-market/second-day/IMG_20240612_101113_0002.jpg"]
    (folder / names[0]).write_bytes(b"<html><body>a saved web page</body></html>")
    (folder / names[1]).write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 64)  # a cut-off JPEG
    done = _import(folder)  # COLUMNS=80
    assert done.rc == 0, done.stderr
    lines = done.stdout.splitlines()
    for name in names:
        assert any(name in line for line in lines), done.stdout
    assert str(tmp_path) not in done.stdout and "…" not in done.stdout
    assert "not_an_image: HTML document" in done.stdout


def test_fifos_links_and_hidden_files_are_skipped_and_counted(sqlite_env, tmp_path,
                                                               photos) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(photos[0], folder / "good.jpg")
    os.mkfifo(folder / "pipe.jpg")
    (folder / "gone.jpg").symlink_to(tmp_path / "nothing-here.jpg")
    (folder / "elsewhere").symlink_to(tmp_path)  # a link to a folder (here: a loop)
    (folder / "linked.jpg").symlink_to(folder / "good.jpg")
    (folder / ".hidden.jpg").write_bytes(photos[1].read_bytes())
    done = _import(folder, "--json")
    assert done.rc == 0, done.stderr
    report = done.json()
    assert report["skipped"] == {"not_a_regular_file": 1, "broken_link": 1,
                                 "linked_folder": 1, "hidden": 1}
    assert report["files"] == 2 and report["new"] == 1 and report["existing"] == 1
    text = _import(folder)
    assert "4 skipped (1 broken_link, 1 hidden, 1 linked_folder, 1 not_a_regular_file)" in (
        text.stdout)


def test_an_oversize_file_is_refused_without_being_read(sqlite_env, tmp_path, photos) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    huge = folder / "huge.jpg"
    with huge.open("wb") as fh:  # 8 GiB, sparse: costs no disk
        fh.write(b"\xff\xd8\xff\xe0")
        fh.truncate(8 << 30)
    shutil.copy(photos[0], folder / "good.jpg")
    done = _import(folder, "--json")
    assert done.rc == 0, done.stderr
    report = done.json()
    assert report["new"] == 1
    assert report["rejected_files"] == [{"file": "huge.jpg", "reason": "too_large",
                                         "detail": f"{8 << 30} bytes > {30 * 1024 * 1024}"}]
    assert done.peak_rss_mb < 400, done.peak_rss_mb
    with session_scope() as s:
        source = s.scalar(select(ImageSource).where(ImageSource.url.like("%/huge.jpg")))
        assert source.error == "too_large" and source.image_id is None


def test_a_refusal_by_a_limit_is_judged_again_under_new_limits(sqlite_env, tmp_path,
                                                               photos) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(photos[0], folder / "a.jpg")
    strict = _import(folder, "--json", env={"SHOAL_MAX_PIXELS": "1000"})
    assert [f["reason"] for f in strict.json()["rejected_files"]] == ["too_many_pixels"]
    stricter = _import(folder, "--json", env={"SHOAL_MAX_PIXELS": "500"})
    assert stricter.json()["rejected_files"][0]["detail"].endswith("> 500 pixels")
    relaxed = _import(folder, "--json")
    assert relaxed.json()["new"] == 1 and relaxed.json()["rejected"] == 0
    again = _import(folder, "--json")
    assert again.json()["existing"] == 1
    with session_scope() as s:
        rows = s.scalars(select(ImageRow).order_by(ImageRow.id)).all()
        assert [r.status for r in rows] == [ImageStatus.INVALID, ImageStatus.DOWNLOADED]
        assert rows[0].reject_detail.endswith("> 500 pixels")  # the latest refusal's
        source = s.scalar(select(ImageSource))
        assert source.image_id == rows[1].id


def test_a_long_strip_is_refused_not_stored_one_pixel_high(sqlite_env, tmp_path) -> None:
    folder = tmp_path / "strips"
    folder.mkdir()
    (folder / "strip-70000x40.png").write_bytes(_png(70000, 40))
    (folder / "strip-2000x40.png").write_bytes(_png(2000, 40))
    (folder / "wide-1500x100.png").write_bytes(_png(1500, 100))
    done = _import(folder, "--json")
    assert done.rc == 0, done.stderr
    report = done.json()
    refused = {f["file"]: (f["reason"], f["detail"]) for f in report["rejected_files"]}
    assert refused == {
        "strip-2000x40.png": ("extreme_aspect", "2000x40 would be stored as 1024x20, "
                              "short side < 32 px"),
        "strip-70000x40.png": ("extreme_aspect", "70000x40 would be stored as 1024x1, "
                               "short side < 32 px"),
    }
    assert report["new"] == 1
    with session_scope() as s:
        stored = s.scalar(select(ImageRow).where(ImageRow.status != ImageStatus.INVALID))
        assert (stored.width, stored.height) == (1024, 68)
