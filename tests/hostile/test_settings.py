"""Bad SHOAL_* settings: every command answers one line naming the setting, exit 2."""

from __future__ import annotations

import pytest

from tests.hostile.shoal_proc import assert_one_line_error, child_env, shoal

BAD = [
    ({"SHOAL_MAX_PIXELS": "abc"}, "SHOAL_MAX_PIXELS='abc'", "integer"),
    ({"SHOAL_MAX_PIXELS": "-1"}, "SHOAL_MAX_PIXELS='-1'", "greater than 0"),
    ({"SHOAL_MAX_LONG_SIDE": "0"}, "SHOAL_MAX_LONG_SIDE='0'", "greater than 0"),
    ({"SHOAL_JPEG_QUALITY": "500"}, "SHOAL_JPEG_QUALITY='500'", "less than or equal to 95"),
    ({"SHOAL_MIN_SIDE": "2000"}, "SHOAL_MIN_SIDE (2000) is larger than SHOAL_MAX_LONG_SIDE"),
    ({"SHOAL_DATABASE_URL": "not a url"}, "SHOAL_DATABASE_URL='not a url'", "not a database"),
    ({"SHOAL_DATABASE_URL": "mysql://root:secret@db/x"}, "'mysql' is not supported"),
    ({"SHOAL_BROKER_URL": "garbage"}, "SHOAL_BROKER_URL='garbage'", "Redis URL"),
    ({"SHOAL_CRAWL_CONCURRENCY": "0"}, "SHOAL_CRAWL_CONCURRENCY='0'", "greater than or equal to 1"),
    ({"SHOAL_CRAWL_DOWNLOAD_TIMEOUT": "-5"}, "SHOAL_CRAWL_DOWNLOAD_TIMEOUT='-5'", "greater than 0"),
    ({"SHOAL_CRAWL_LOG_LEVEL": "LOUD"}, "SHOAL_CRAWL_LOG_LEVEL='LOUD'", "use one of DEBUG"),
    ({"SHOAL_CRAWL_ALLOW_PRIVATE_HOSTS": "localhost"}, "SHOAL_CRAWL_ALLOW_PRIVATE_HOSTS=",
     "'localhost'"),
    ({"SHOAL_CRAWL_SITE_GBIF_API": "ftp://x"}, "SHOAL_CRAWL_SITE_GBIF_API", "http(s) URL"),
    ({"SHOAL_JOB_LEASE_SECONDS": "0"}, "SHOAL_JOB_LEASE_SECONDS='0'", "greater than or equal"),
    ({"SHOAL_VISIBILITY_TIMEOUT": "-1"}, "SHOAL_VISIBILITY_TIMEOUT='-1'", "greater than or equal"),
    ({"SHOAL_MAX_RETRIES": "-1"}, "SHOAL_MAX_RETRIES='-1'", "greater than or equal to 0"),
    ({"SHOAL_SWEEP_INTERVAL": "x"}, "SHOAL_SWEEP_INTERVAL='x'", "number"),
    ({"SHOAL_SERVE_PORT": "70000"}, "SHOAL_SERVE_PORT='70000'", "less than or equal to 65535"),
    ({"SHOAL_SERVE_MAX_BATCH": "0"}, "SHOAL_SERVE_MAX_BATCH='0'", "greater than or equal to 1"),
    ({"SHOAL_TRAIN_WORKERS": "-2"}, "SHOAL_TRAIN_WORKERS='-2'", "greater than or equal to 0"),
    ({"SHOAL_LABEL_STUDIO_URL": "ls.local:8080"}, "SHOAL_LABEL_STUDIO_URL", "http(s) URL"),
]


@pytest.mark.parametrize(("env", *("fragments",)), [(e, f) for e, *f in BAD],
                         ids=[next(iter(e)) + "=" + next(iter(e.values())) for e, *_ in BAD])
@pytest.mark.parametrize("command", [("config",), ("species", "list")])
def test_a_bad_setting_is_one_line_and_exit_2(tmp_path, env, fragments, command) -> None:
    done = shoal(*command, env=child_env(SHOAL_DATA_DIR=str(tmp_path), **env))
    line = assert_one_line_error(done, 2, *fragments)
    assert "secret" not in line  # a password inside a URL is masked


def test_config_masks_passwords_inside_urls(tmp_path) -> None:
    done = shoal("config", "--json", env=child_env(
        SHOAL_DATA_DIR=str(tmp_path), SHOAL_LABEL_STUDIO_URL="http://ann:hunter2@ls.local:8080",
        SHOAL_BROKER_URL="redis://:s3cret@127.0.0.1:6379/0",
        SHOAL_DATABASE_URL=f"sqlite:///{tmp_path}/c.db"))
    assert done.rc == 0, done.stderr
    shown = done.json()
    assert "hunter2" not in done.stdout and "s3cret" not in done.stdout
    assert shown["review"]["SHOAL_LABEL_STUDIO_URL"].startswith("http://ann:")
    assert "ls.local:8080" in shown["review"]["SHOAL_LABEL_STUDIO_URL"]
    assert shown["jobs"]["SHOAL_BROKER_URL"].startswith("redis://")


def test_config_prints_every_section_and_setting(tmp_path) -> None:
    from catalog.settings import SECTIONS

    done = shoal("config", "--json", env=child_env(
        SHOAL_DATA_DIR=str(tmp_path), SHOAL_API_TOKEN="tok-0123456789",
        SHOAL_WEBHOOK_SECRET="hook-secret-value", SHOAL_CRAWL_CONCURRENCY="3",
        SHOAL_CRAWL_SITE_GBIF_API="http://127.0.0.1:9/v1", SHOAL_TRAIN_THREADS="2"))
    assert done.rc == 0, done.stderr
    shown = done.json()
    assert list(shown) == list(SECTIONS)
    for name, section in SECTIONS.items():
        expected = {section.env_name(f) for f in section.model_fields if f != "sites"}
        assert expected <= set(shown[name]), name
    assert shown["crawl"]["SHOAL_CRAWL_CONCURRENCY"] == 3
    assert shown["crawl"]["SHOAL_CRAWL_SITE_GBIF_API"] == "http://127.0.0.1:9/v1"
    assert shown["train"]["SHOAL_TRAIN_THREADS"] == 2
    assert shown["serve"]["SHOAL_API_TOKEN"] == "tok-…"
    assert shown["review"]["SHOAL_WEBHOOK_SECRET"] == "hook…"
    assert "0123456789" not in done.stdout and "secret-value" not in done.stdout
    assert shown["jobs"]["SHOAL_BROKER_URL"] == "(in-process)"


def test_a_data_dir_that_cannot_be_written_is_refused(tmp_path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    done = shoal("config", env=child_env(SHOAL_DATA_DIR=str(blocker / "data")))
    assert_one_line_error(done, 2, "SHOAL_DATA_DIR=", "is not a directory")


def test_a_bad_job_argument_is_one_line_and_exit_2(tmp_path) -> None:
    env = child_env(SHOAL_DATA_DIR=str(tmp_path))
    assert shoal("db", "upgrade", env=env).rc == 0
    done = shoal("jobs", "submit", "dedupe", "-a", "radius=abc", env=env)
    assert done.rc == 2 and "Traceback" not in done.stdout + done.stderr
    assert "dedupe argument radius must be a whole number, not 'abc'" in done.stdout
    assert len([line for line in done.stdout.splitlines() if line.strip()]) == 1


def test_review_without_people_before_any_curation_run_is_refused_in_one_line(tmp_path) -> None:
    env = child_env(SHOAL_DATA_DIR=str(tmp_path))
    assert shoal("db", "upgrade", env=env).rc == 0
    cases = ((("approve_unsuspected",), "no curation run to hold suspects back by"),
             (("approve_unsuspected", "-a", "run=7"), "no curation run 7 in the catalog"))
    for args, says in cases:
        done = shoal("jobs", "submit", *args, env=env)
        assert done.rc == 2 and "Traceback" not in done.stdout + done.stderr, done
        assert says in done.stdout
        assert len([line for line in done.stdout.splitlines() if line.strip()]) == 1
