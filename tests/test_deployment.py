"""The compose file is valid for Docker Compose and names every part of the deployment."""

import shutil
import subprocess

import yaml

from tests.conftest import REPO


def _compose_cmd() -> list[str]:
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    exe = shutil.which("docker-compose")
    assert exe, "docker compose (or docker-compose) must be installed: scripts/services.sh does"
    return [exe]


def test_compose_config_passes_without_env_file(tmp_path):
    for name in ("docker-compose.yml", "Dockerfile", ".env.example"):
        shutil.copy(REPO / name, tmp_path / name)
    result = subprocess.run([*_compose_cmd(), "config"], cwd=tmp_path, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert {"postgres", "redis", "label-studio", "worker", "train-worker", "beat",
            "flower", "serve"} <= set(services)
    assert services["serve"]["command"][0] == "serve"
    assert services["serve"]["environment"]["SHOAL_API_TOKEN"]
    assert services["serve"]["environment"]["SHOAL_DATABASE_URL"].startswith("postgresql")
    for name in ("worker", "train-worker", "beat"):
        assert any(v.startswith("shoal-data") or v.get("source") == "shoal-data"
                   if isinstance(v, dict) else v.startswith("shoal-data")
                   for v in services[name]["volumes"])
    assert "train" in services["train-worker"]["command"]


def test_compose_config_passes_with_env_example(tmp_path):
    for name in ("docker-compose.yml", "Dockerfile"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copy(REPO / ".env.example", tmp_path / ".env")
    result = subprocess.run([*_compose_cmd(), "config", "-q"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
