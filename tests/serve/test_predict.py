"""`POST /v1/predict` through the test client: answers, names, the run, and every bad input
refused with a 4xx and a clear JSON error."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from catalog.db import session_scope
from catalog.species import SpeciesSpec, upsert_species
from pipeline.demo.site.hostile import hostile_files
from pipeline.serve.uploads import STATUS
from tests.serve.conftest import photo


def _error(response, status: int, code: str) -> str:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["code"] == code
    assert body["message"]
    return body["message"]


def test_predicts_top_k_with_names_run_and_version(client, served, fishdata: Path) -> None:
    with session_scope() as session:
        upsert_species(session, [SpeciesSpec(slug="koi", latin_name="Anabas testudineus",
                                             name_zh="攀鲈", name_en="Climbing perch")])
    # the served model read the names when it loaded: a fresh cache sees the new ones
    client.app.state.models.close()
    path = photo(fishdata, "Koi", 10)
    r = client.post("/v1/predict?top_k=3",
                    files=[("files", (path.name, path.read_bytes(), "image/jpeg"))])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["run"]["id"] == served.run_id
    assert body["run"]["dataset_version"]["name"] == "small-v1"
    assert len(body["run"]["dataset_version"]["manifest_sha256"]) == 64
    [result] = body["results"]
    assert result["file"] == path.name and len(result["sha256"]) == 64
    preds = result["predictions"]
    assert [p["species"] for p in preds] and len(preds) == 3
    assert sorted(p["species"] for p in preds) == ["baim", "hilsa", "koi"]
    assert abs(sum(p["probability"] for p in preds) - 1) < 1e-3
    assert preds == sorted(preds, key=lambda p: -p["probability"])
    koi = next(p for p in preds if p["species"] == "koi")
    assert (koi["latin_name"], koi["name_zh"], koi["name_en"]) == (
        "Anabas testudineus", "攀鲈", "Climbing perch")


def test_several_images_in_one_request_match_single_requests(client, fishdata: Path) -> None:
    paths = [photo(fishdata, "Baim", 8), photo(fishdata, "Hilsa", 8), photo(fishdata, "Koi", 8)]
    many = client.post("/v1/predict", files=[("files", (p.name, p.read_bytes(), "image/jpeg"))
                                             for p in paths])
    assert many.status_code == 200, many.text
    assert [r["file"] for r in many.json()["results"]] == [p.name for p in paths]
    for path, result in zip(paths, many.json()["results"], strict=True):
        one = client.post("/v1/predict", files={"files": (path.name, path.read_bytes())})
        assert one.status_code == 200
        a, b = one.json()["results"][0]["predictions"], result["predictions"]
        assert [p["species"] for p in a] == [p["species"] for p in b]
        assert all(abs(x["probability"] - y["probability"]) < 1e-4 for x, y in zip(a, b,
                                                                                strict=True))


def test_agrees_with_the_cli_predictor(client, served, fishdata: Path) -> None:
    from trainer.predict import predict_files

    path = photo(fishdata, "Hilsa", 9)
    with session_scope() as session:
        [cli] = predict_files(session, served.run_id, [path], top_k=3)
    r = client.post(f"/v1/predict?run={served.run_id}",
                    files={"files": (path.name, path.read_bytes(), "image/jpeg")})
    api = r.json()["results"][0]["predictions"]
    assert [p["label"] for p in cli["predictions"]] == [p["species"] for p in api]
    for c, a in zip(cli["predictions"], api, strict=True):
        assert abs(c["probability"] - a["probability"]) < 1e-4


def _jpeg(size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (10, 80, 160)).save(out, "JPEG")
    return out.getvalue()


def test_bad_input_gets_a_4xx_with_a_reason(client, served, fishdata: Path) -> None:
    post = client.post
    _error(post("/v1/predict", files={"files": ("a.html", b"<!doctype html><p>hi", "image/jpeg")}),
           415, "not_an_image")
    _error(post("/v1/predict", files={"files": ("a.svg", b"<svg xmlns='x'/>", "image/svg+xml")}),
           415, "unsupported_format")
    _error(post("/v1/predict", files={"files": ("a.txt", _jpeg((64, 64)), "text/plain")}),
           415, "wrong_content_type")
    for name, (raw, reason) in hostile_files().items():
        r = post("/v1/predict", files={"files": (name, raw, "application/octet-stream")})
        if reason is None:  # CMYK, alpha, EXIF-rotated: repaired, then predicted
            assert r.status_code == 200, (name, r.text)
        else:
            message = _error(r, STATUS.get(reason, 422), reason)
            assert message.startswith(f"{name}: ")
    cut = photo(fishdata, "Koi", 3).read_bytes()
    _error(post("/v1/predict", files={"files": ("cut.jpg", cut[: len(cut) // 3], "image/jpeg")}),
           422, "truncated")
    _error(post("/v1/predict", files={"files": ("big.jpg", b"\xff\xd8\xff" + b"0" * (31 << 20),
                                                "image/jpeg")}), 413, "too_large")
    _error(post("/v1/predict", files=[("files", ("x.jpg", _jpeg((64, 64)), "image/jpeg"))] * 17),
           413, "too_many_files")
    _error(post("/v1/predict?run=999999",
                files={"files": ("x.jpg", _jpeg((64, 64)), "image/jpeg")}), 404, "unknown_run")
    _error(post("/v1/predict?top_k=0", files={"files": ("x.jpg", _jpeg((64, 64)))}),
           422, "invalid_request")
    _error(post("/v1/predict", json={"files": []}), 422, "invalid_request")
    _error(post("/v1/predict", content=b"garbage", headers={"content-type": "multipart/form-data"}),
           400, "http_error")
