import json

from torchvision.datasets import ImageFolder
from typer.testing import CliRunner

from pipeline.cli import app

runner = CliRunner()


def shoal(*args, code=0):
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result


def test_dataset_commands_end_to_end(sqlite_cat, tmp_path):
    cat = sqlite_cat
    for slug in ("mola", "shing"):
        cat.set_status(cat.ingest(slug, 0, 6))
    cat.set_status(cat.ingest("gajar", 0, 5, site="local", license=None))

    refused = shoal("dataset", "create", "--min-per-class", "6", code=2)
    assert "gajar (5)" in refused.output and "Traceback" not in refused.output
    v1 = json.loads(shoal("dataset", "create", "--json").stdout)
    assert (v1["name"], v1["n_items"], v1["classes"]) == ("v1", 17, ["gajar", "mola", "shing"])
    cat.set_status(cat.ingest("loitta", 0, 3))
    v2 = json.loads(shoal("dataset", "create", "--name", "more", "--json").stdout)
    assert v2["n_items"] == 20
    assert "exists already" in shoal("dataset", "create", "--name", "v1", code=2).output

    listed = json.loads(shoal("dataset", "list", "--json").stdout)
    assert [v["name"] for v in listed] == ["v1", "more"]
    assert "2 dataset versions" in shoal("dataset", "list").stdout

    shown = json.loads(shoal("dataset", "show", "more", "--site", "local", "--items",
                             "--json").stdout)
    assert shown["matching"] == 5 and list(shown["counts"]) == ["gajar"]
    assert {i["label"] for i in shown["items"]} == {"gajar"}
    licensed = json.loads(shoal("dataset", "show", "more", "--license", "CC BY-SA 4.0",
                                "--split", "val", "--json").stdout)
    assert licensed["matching"] == sum(c["val"] for s, c in licensed["counts"].items())
    assert "gajar" not in licensed["counts"]
    by_species = json.loads(shoal("dataset", "show", "latest", "-s", "mola", "-s", "loitta",
                                  "--json").stdout)
    assert by_species["matching"] == 9 and set(by_species["counts"]) == {"mola", "loitta"}
    assert "matching images" in shoal("dataset", "show", "v1", "--items").stdout
    assert "--split" in shoal("dataset", "show", "v1", "--split", "test", code=2).output

    diff = json.loads(shoal("dataset", "diff", "v1", "more", "--json").stdout)
    assert diff["counts"] == {"added": 3, "removed": 0, "relabelled": 0, "moved": 0}
    assert "3 added" in shoal("dataset", "diff", "v1", "more").stdout
    assert "no dataset version" in shoal("dataset", "diff", "v1", "v7", code=2).output

    out = tmp_path / "export"
    exported = json.loads(shoal("dataset", "export", "more", "--out", str(out), "--json").stdout)
    assert exported["out"] == str(out)
    assert len(ImageFolder(str(out / "train"))) == v2["n_train"]
    shoal("dataset", "export", "v1", "--format", "manifest", "--out", str(tmp_path / "m"))
    assert len((tmp_path / "m" / "manifest.jsonl").read_text().splitlines()) == 17
