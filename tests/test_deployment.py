"""The compose file is valid for Docker Compose, names every part of the deployment, refuses
to start without its secrets and publishes operator tools on loopback only."""

import re
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

SECRETS = ["POSTGRES_PASSWORD", "SHOAL_LABEL_STUDIO_TOKEN", "LABEL_STUDIO_PASSWORD",
           "SHOAL_WEBHOOK_SECRET", "FLOWER_BASIC_AUTH", "SHOAL_API_TOKEN"]
OPERATOR_TOOLS = {"flower": 5555, "webhooks": 8090, "label-studio": 8080}
SHORT_PORT = re.compile(r"(?:(?P<host_ip>[0-9.]+):)?(?:\d+:)?(?P<target>\d+)(?:/\w+)?")


def _compose_cmd() -> list[str]:
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    exe = shutil.which("docker-compose")
    assert exe, "docker compose (or docker-compose) must be installed: scripts/services.sh does"
    return [exe]


def _project(tmp_path: Path, env: dict[str, str] | None) -> Path:
    for name in ("docker-compose.yml", "Dockerfile"):
        shutil.copy(REPO / name, tmp_path / name)
    if env is not None:
        (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    return tmp_path


def _filled_example() -> dict[str, str]:
    """.env.example with every empty secret filled in, as the operator is told to."""
    env = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value or (f"ops:{secrets.token_hex(8)}" if key == "FLOWER_BASIC_AUTH"
                                 else secrets.token_hex(20))
    return env


def _config(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*_compose_cmd(), "config"], cwd=project, capture_output=True,
                          text=True)


def _services(tmp_path: Path) -> dict:
    result = _config(_project(tmp_path, _filled_example()))
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


def test_compose_config_passes_with_the_example_filled_in(tmp_path):
    services = _services(tmp_path)
    assert {"postgres", "redis", "label-studio", "worker", "train-worker", "beat",
            "flower", "serve", "webhooks"} <= set(services)
    assert services["serve"]["command"][0] == "serve"
    assert services["serve"]["environment"]["SHOAL_API_TOKEN"]
    assert services["serve"]["environment"]["SHOAL_DATABASE_URL"].startswith("postgresql")
    for name in ("worker", "train-worker", "beat"):
        assert any(v.startswith("shoal-data") or v.get("source") == "shoal-data"
                   if isinstance(v, dict) else v.startswith("shoal-data")
                   for v in services[name]["volumes"])
    assert "train" in services["train-worker"]["command"]


def test_compose_refuses_to_start_without_its_secrets(tmp_path):
    result = _config(_project(tmp_path, None))  # no .env at all
    assert result.returncode != 0
    assert "set " in result.stderr and ".env" in result.stderr  # names what is missing
    example = _filled_example()
    for name in SECRETS:  # each one alone, unset or left empty as in the example
        for value in (None, ""):
            env = {k: v for k, v in example.items() if k != name}
            if value is not None:
                env[name] = value
            folder = tmp_path / f"{name}-{'empty' if value == '' else 'unset'}"
            folder.mkdir()
            result = _config(_project(folder, env))
            assert result.returncode != 0, (name, value)
            assert name in result.stderr, result.stderr


def test_the_example_holds_no_secret_and_the_file_no_default():
    example = dict(line.partition("=")[::2] for line in
                   (REPO / ".env.example").read_text().splitlines()
                   if line.strip() and not line.startswith("#"))
    assert all(example[name] == "" for name in SECRETS)
    text = (REPO / "docker-compose.yml").read_text()
    for name in SECRETS:
        uses = re.findall(r"\$\{" + name + r"([^}]*)\}", text)
        assert uses and all(use.startswith(":?") for use in uses), (name, uses)


@pytest.mark.parametrize(("service", "port"), sorted(OPERATOR_TOOLS.items()))
def test_operator_tools_are_published_on_loopback_only(tmp_path, service, port):
    published = _services(tmp_path)[service].get("ports") or []
    assert published, service
    for entry in published:
        if isinstance(entry, dict):  # long syntax (docker compose v2)
            host_ip, target = entry.get("host_ip"), int(entry["target"])
        else:  # short syntax (docker-compose v1): [HOST_IP:][PUBLISHED:]TARGET[/PROTOCOL]
            short = SHORT_PORT.fullmatch(str(entry))
            assert short, entry
            host_ip, target = short["host_ip"], int(short["target"])
        assert host_ip == "127.0.0.1", (service, entry)
        assert target == port


def test_flower_asks_for_a_login_and_gets_no_catalog_secret(tmp_path):
    flower = _services(tmp_path)["flower"]
    env = flower["environment"]
    assert re.fullmatch(r"ops:[0-9a-f]{16}", env["FLOWER_BASIC_AUTH"])
    assert not any(k.startswith("SHOAL_") or k == "POSTGRES_PASSWORD" for k in env)
