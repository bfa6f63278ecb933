"""The REST API through the test client: the same answers as the CLI's functions, writes only
with the token, reads open on loopback, every client error a 4xx with a JSON reason."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from typer.testing import CliRunner

from catalog.db import session_scope
from catalog.models import Image, ImageStatus
from pipeline.cli import app as cli_app
from tests.serve.conftest import TOKEN, train_small

runner = CliRunner()
DATETIME = re.compile(r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d")


def dates(value):  # type: ignore[no-untyped-def]
    """Datetimes as values: the CLI prints str(datetime), the API ISO 8601."""
    if isinstance(value, dict):
        return {k: dates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [dates(v) for v in value]
    if isinstance(value, str) and DATETIME.match(value):
        return datetime.fromisoformat(value)
    return value


def cli_json(*args: str):  # type: ignore[no-untyped-def]
    result = runner.invoke(cli_app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return dates(json.loads(result.output))


def api(response):  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.text
    return dates(response.json())


def wait_finished(client: TestClient, job_id: int, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {job['state']}")


def test_writes_need_the_token(client: TestClient, auth) -> None:
    body = {"latin_name": "Anabas testudineus"}
    missing = client.put("/v1/species/koi", json=body)
    assert missing.status_code == 401 and "Bearer" in missing.json()["error"]["message"]
    wrong = client.put("/v1/species/koi", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403 and wrong.json()["error"]["message"] == "wrong API token"
    for method, path in [("post", "/v1/jobs/1/cancel"), ("put", "/v1/schedules"),
                         ("delete", "/v1/schedules/koi"), ("post", "/v1/runs/1/promote"),
                         ("post", "/v1/jobs/crawl"), ("post", "/v1/jobs/train"),
                         ("post", "/v1/jobs/dataset-create"), ("post", "/v1/jobs/curate")]:
        assert getattr(client, method)(path).status_code == 401, path
    assert client.put("/v1/species/koi?resolve=false", json=body,
                      headers=auth).status_code == 200


def test_reads_are_open_on_loopback_only(served, client: TestClient) -> None:
    from pipeline.serve.app import create_app

    assert client.get("/v1/species").status_code == 200
    with TestClient(create_app(), client=("192.0.2.7", 40000)) as remote:
        assert remote.get("/v1/species").status_code == 401
        assert remote.get("/v1/species", headers={"Authorization": f"Bearer {TOKEN}"}
                          ).status_code == 200
        remote.cookies.set("shoal_token", TOKEN)
        assert remote.get("/v1/runs").status_code == 200


def test_species_match_the_cli_and_can_be_added(client: TestClient, auth) -> None:
    assert api(client.get("/v1/species")) == cli_json("species", "list")
    r = client.put("/v1/species/climbing-perch?resolve=false", headers=auth,
                   json={"latin_name": "Anabas testudineus", "name_zh": "攀鲈",
                         "name_en": "Climbing perch", "keywords": ["koi fish"]})
    assert r.json() == {"slug": "climbing-perch", "result": "added", "warnings": []}
    shown = client.get("/v1/species/climbing-perch").json()
    assert shown["keywords"] == {"la": ["Anabas testudineus"], "en": ["Climbing perch"],
                                 "zh": ["攀鲈"], "extra": ["koi fish"]}
    assert client.get("/v1/species/no-such-fish").status_code == 404
    bad = client.put("/v1/species/Bad Slug!?resolve=false", headers=auth,
                     json={"latin_name": "X y"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_species"


def test_schedules_set_list_remove(client: TestClient, auth) -> None:
    r = client.put("/v1/schedules", headers=auth,
                   json={"species": "koi", "every": "7d", "sources": ["baike"], "limit": 5})
    assert r.status_code == 200, r.text
    [row] = r.json()
    assert (row["species"], row["source"], row["every"], row["limit"]) == ("koi", "baike",
                                                                           "7d", 5)
    assert api(client.get("/v1/schedules")) == cli_json("schedule", "list")
    bad = client.put("/v1/schedules", headers=auth, json={"species": "koi", "every": "often"})
    assert bad.status_code == 400 and "interval" in bad.json()["error"]["message"]
    unknown = client.put("/v1/schedules", headers=auth, json={"species": "nope", "every": "1d"})
    assert unknown.status_code == 404
    assert client.delete("/v1/schedules/koi", headers=auth).json() == {"species": "koi",
                                                                       "removed": 1}
    assert client.delete("/v1/schedules/koi", headers=auth).status_code == 404
    assert client.get("/v1/schedules").json() == []


def test_dataset_create_job_progress_and_versions(client: TestClient, auth) -> None:
    with session_scope() as session:
        session.execute(update(Image).values(status=ImageStatus.APPROVED))
    r = client.post("/v1/jobs/dataset-create", headers={**auth, "Idempotency-Key": "dc-1"},
                    json={"name": "api-v1", "val_ratio": 0.25})
    assert r.status_code == 202, r.text
    [job] = r.json()
    assert job["kind"] == "dataset_create"
    again = client.post("/v1/jobs/dataset-create", headers={**auth, "Idempotency-Key": "dc-1"},
                        json={"name": "api-v1"})
    assert [j["id"] for j in again.json()] == [job["id"]]
    with client.stream("GET", f"/v1/jobs/{job['id']}/events") as events:
        assert events.headers["content-type"].startswith("text/event-stream")
        states = [json.loads(line[5:])["state"] for line in events.iter_lines()
                  if line.startswith("data:")]
    assert states[-1] == "succeeded"
    done = wait_finished(client, job["id"])
    assert done["result"]["name"] == "api-v1"
    assert api(client.get(f"/v1/jobs/{job['id']}")) == cli_json("jobs", "show",
                                                                   str(job["id"]))
    listed = client.get("/v1/jobs?kind=dataset_create").json()
    assert job["id"] in [j["id"] for j in listed]
    assert client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth).status_code == 400

    assert api(client.get("/v1/datasets")) == cli_json("dataset", "list")
    shown = api(client.get("/v1/datasets/api-v1?items=true&limit=5&offset=2"))
    assert shown == {**cli_json("dataset", "show", "api-v1"), "items": shown["items"]}
    assert shown["matching"] == shown["n_items"] == 18
    assert sum(shown["by_site"].values()) == sum(shown["by_license"].values()) == 18
    assert len(shown["items"]) == 5
    everything = client.get("/v1/datasets/api-v1?items=true&limit=0").json()["items"]
    assert shown["items"] == everything[2:7]
    val = client.get("/v1/datasets/api-v1?split=val&species=koi").json()
    assert list(val["counts"]) == ["koi"] and val["counts"]["koi"]["train"] == 0
    assert client.get("/v1/datasets/api-v1?split=test").status_code == 400
    diff = api(client.get("/v1/datasets/small-v1/diff/api-v1"))
    assert diff == cli_json("dataset", "diff", "small-v1", "api-v1")
    manifest = client.get("/v1/datasets/api-v1/manifest")
    assert manifest.status_code == 200
    lines = manifest.text.splitlines()
    assert len(lines) == 18 and json.loads(lines[0])["sha256"]
    assert client.get("/v1/datasets/nope").status_code == 404
    assert client.get("/v1/datasets/nope/manifest").status_code == 404


def test_crawl_and_train_jobs_are_checked_before_queueing(client: TestClient, auth) -> None:
    r = client.post("/v1/jobs/crawl", headers=auth, json={"species": "koi", "source": "nowhere"})
    assert r.status_code == 400 and "nowhere" in r.json()["error"]["message"]
    r = client.post("/v1/jobs/crawl", headers=auth, json={"species": "nope"})
    assert r.status_code == 404
    r = client.post("/v1/jobs/train", headers=auth, json={"arch": "vgg99"})
    assert r.status_code == 422 and "vgg99" in r.json()["error"]["message"]
    r = client.post("/v1/jobs/train", headers=auth, json={"version": "nope"})
    assert r.status_code == 404
    assert client.get("/v1/jobs/999999").status_code == 404


def test_runs_list_show_compare_and_promote(served, client: TestClient, auth) -> None:
    rid = served.run_id
    assert api(client.get("/v1/runs")) == cli_json("runs", "list")
    shown = api(client.get(f"/v1/runs/{rid}"))
    assert shown == cli_json("runs", "show", str(rid))
    assert [m["epoch"] for m in shown["epoch_metrics"]] == [1]
    assert sorted(c["label"] for c in shown["class_metrics"]) == ["baim", "hilsa", "koi"]
    assert sum(map(sum, shown["confusion"])) == 6
    assert client.get("/v1/runs/999999").status_code == 404
    assert client.get("/v1/runs/compare?ids=999999").status_code == 404

    second = train_small(seed=1)
    compared = api(client.get(f"/v1/runs/compare?ids={rid}&ids={second}"))
    assert compared == cli_json("runs", "compare", str(rid), str(second))
    serving = client.get("/v1/runs/serving").json()
    assert serving["promoted"] is False and serving["run_id"] in (rid, second)
    other = second if serving["run_id"] == rid else rid
    r = client.post(f"/v1/runs/{other}/promote", headers=auth, json={"note": "api test"})
    assert r.status_code == 200 and r.json()["run"] == other
    assert client.get("/v1/runs/serving").json() == {"run_id": other, "promoted": True}
    client.app.state.models.ttl_s = 0  # replicas re-read within seconds; this one at once
    photo = next((served.settings.image_dir).rglob("*.jpg"))
    pred = client.post("/v1/predict", files={"files": ("a.jpg", photo.read_bytes())})
    assert pred.json()["run"]["id"] == other
    # the CLI pins the other one again
    result = runner.invoke(cli_app, ["runs", "promote", str(serving["run_id"])])
    assert result.exit_code == 0, result.output
    assert client.get("/v1/runs/serving").json()["run_id"] == serving["run_id"]
    assert client.post("/v1/runs/999999/promote", headers=auth).status_code == 404


@pytest.mark.parametrize("path", ["/v1/runs/0", "/v1/jobs/99999999999999999999",
                                  "/v1/runs/compare?ids=-1", "/v1/jobs?limit=0"])
def test_out_of_range_ids_are_refused(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
