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
    assert shown["SHOAL_LABEL_STUDIO_URL"].startswith("http://ann:")
    assert "ls.local:8080" in shown["SHOAL_LABEL_STUDIO_URL"]


def test_a_bad_job_argument_is_one_line_and_exit_2(tmp_path) -> None:
    env = child_env(SHOAL_DATA_DIR=str(tmp_path))
    assert shoal("db", "upgrade", env=env).rc == 0
    done = shoal("jobs", "submit", "dedupe", "-a", "radius=abc", env=env)
    assert done.rc == 2 and "Traceback" not in done.stdout + done.stderr
    assert "dedupe argument radius must be a whole number, not 'abc'" in done.stdout
    assert len([line for line in done.stdout.splitlines() if line.strip()]) == 1
