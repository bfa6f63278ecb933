"""Against real `shoal serve` processes: predictions over HTTP, concurrent requests batched,
a second replica behind the same catalog following a promotion, a clean stop."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from pipeline.serve.process import ServeProcess
from tests.serve.conftest import TOKEN, photo, train_small


def _predict(url: str, path: Path) -> httpx.Response:
    name = f"{path.parent.name}-{path.name}"
    return httpx.post(f"{url}/v1/predict", timeout=60,
                      files={"files": (name, path.read_bytes(), "image/jpeg")})


def test_concurrent_requests_are_answered_and_batched(server: ServeProcess, served,
                                                      fishdata: Path) -> None:
    paths = [photo(fishdata, folder, n) for folder in ("Baim", "Hilsa", "Koi")
             for n in range(6, 14)]
    first = _predict(server.url, paths[0])  # loads the model
    assert first.status_code == 200, first.text
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda p: _predict(server.url, p), paths * 2))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers][:3]
    assert {a.json()["run"]["id"] for a in answers} == {served.run_id}
    by_file: dict[str, list[dict[str, float]]] = {}
    for a in answers:  # the same photo gets the same answer whichever batch it landed in
        result = a.json()["results"][0]
        by_file.setdefault(result["file"], []).append(
            {p["species"]: p["probability"] for p in result["predictions"]})
    assert len(by_file) == len(paths)
    for first_answer, second_answer in by_file.values():
        assert all(abs(first_answer[k] - second_answer[k]) < 1e-4 for k in first_answer)
    [model] = httpx.get(f"{server.url}/v1/health").json()["models"]
    assert model["images"] == 1 + len(paths) * 2
    assert model["batches"] < model["images"], model  # some requests shared a forward pass
    bad = httpx.post(f"{server.url}/v1/predict", files={"files": ("a.jpg", b"<html>")})
    assert bad.status_code == 415 and bad.json()["error"]["code"] == "not_an_image"
    openapi = httpx.get(f"{server.url}/openapi.json").json()
    assert "/v1/predict" in openapi["paths"] and "/v1/jobs/{job_id}/events" in openapi["paths"]


def test_replicas_share_only_the_catalog(server: ServeProcess, served, fishdata: Path,
                                         tmp_path: Path) -> None:
    other = train_small(seed=2)
    koi = photo(fishdata, "Koi", 20)
    with ServeProcess(tmp_path / "replica.log") as replica:
        before = {_predict(u, koi).json()["run"]["id"] for u in (server.url, replica.url)}
        assert len(before) == 1
        target = served.run_id if other in before else other
        r = httpx.post(f"{replica.url}/v1/runs/{target}/promote",
                       headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 30
        seen: set[int] = set()
        while time.monotonic() < deadline:
            seen = {_predict(u, koi).json()["run"]["id"] for u in (server.url, replica.url)}
            if seen == {target}:
                break
            time.sleep(1)
        assert seen == {target}
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it (exit status -15)
    assert replica.popen.returncode in (0, -signal.SIGTERM), replica.text()[-2000:]
    assert "Traceback" not in replica.text()


def test_serve_refuses_an_unmigrated_catalog_in_one_line(tmp_path: Path) -> None:
    proc = ServeProcess(tmp_path / "bad.log", env={
        "SHOAL_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}",
        "SHOAL_DATA_DIR": str(tmp_path / "data")})
    assert proc.popen.wait(timeout=120) == 3
    text = proc.text()
    assert "shoal db upgrade" in text and "Traceback" not in text
