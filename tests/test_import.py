import json

from sqlalchemy import func, select
from typer.testing import CliRunner

from catalog.db import session_scope
from catalog.models import Image, ImageSource, ImageStatus
from pipeline.cli import app
from pipeline.demo.site.hostile import hostile_files

runner = CliRunner()


def _import(path, species="hairtail"):
    result = runner.invoke(app, ["import", str(path), "--species", species, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout[result.stdout.index("{"):])


def test_import_real_photos_then_reimport_adds_nothing(shoal_env, fishdata):
    folder = fishdata / "web-20" / "Mola"
    first = _import(folder)
    assert first["files"] == len(list(folder.iterdir()))
    assert first["new"] > 0 and first["new"] + first["existing"] + first["rejected"] == first[
        "files"]
    second = _import(folder)
    assert second["new"] == 0
    assert second["existing"] + second["rejected"] == second["files"]
    with session_scope() as s:
        stored = s.scalars(select(Image).where(Image.status != ImageStatus.INVALID)).all()
        assert len(stored) == first["new"]
        for img in stored:
            assert (shoal_env.image_dir / img.path).is_file()
            assert max(img.width, img.height) <= shoal_env.catalog.max_long_side
        assert s.scalar(select(func.count()).select_from(ImageSource)) == first["files"]


def test_import_broken_files_records_reasons_and_keeps_good_ones(shoal_env, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name, (raw, _reason) in hostile_files().items():
        (folder / name).write_bytes(raw)
    report = _import(folder)
    expected = {n: r for n, (_, r) in hostile_files().items()}
    got = {f["file"].rsplit("/", 1)[-1]: f["reason"] for f in report["rejected_files"]}
    assert got == {n: r for n, r in expected.items() if r}
    assert report["new"] == sum(1 for r in expected.values() if r is None)
    with session_scope() as s:
        reasons = dict(s.execute(
            select(Image.reject_reason, func.count()).where(Image.status == ImageStatus.INVALID)
            .group_by(Image.reject_reason)).all())
    assert sum(reasons.values()) == len(got)


def test_import_unknown_species_fails_clearly(shoal_env, tmp_path):
    result = runner.invoke(app, ["import", str(tmp_path), "--species", "not-a-fish"])
    assert result.exit_code == 2
    assert "unknown species 'not-a-fish'" in result.output


def test_import_missing_folder_fails_clearly(shoal_env, tmp_path):
    result = runner.invoke(app, ["import", str(tmp_path / "nope"), "--species", "hairtail"])
    assert result.exit_code == 2
    assert "no such file or folder" in result.output


def test_concurrent_ingest_of_same_bytes_makes_one_row(shoal_env, fishdata):
    import threading

    from catalog.ingest import SourceInfo, ingest_bytes
    from catalog.limits import limits_from_settings
    from catalog.store import ImageStore

    raw = sorted((fishdata / "web-20" / "Koi").iterdir())[0].read_bytes()
    store = ImageStore(shoal_env.image_dir)
    outcomes: list[str] = []

    def worker(i: int) -> None:
        with session_scope() as s:
            res = ingest_bytes(s, store, raw, species_id=None, limits=limits_from_settings(),
                               source=SourceInfo(url=f"http://shop.test/koi-{i}.jpg"))
            outcomes.append(res.outcome)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Image)) == 1
        assert s.scalar(select(func.count()).select_from(ImageSource)) == 6
    assert len(outcomes) == 6 and outcomes.count("new") == 1
