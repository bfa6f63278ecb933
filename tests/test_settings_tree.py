"""The one settings tree: read in one place, re-read when the environment changes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from catalog.settings import SECTIONS, SettingsInvalid, get_settings, load_settings

REPO = Path(__file__).resolve().parents[1]
PRODUCT = ("catalog", "crawler", "labeling", "pipeline", "trainer")


def test_a_changed_variable_is_seen_without_clearing_a_cache(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SHOAL_DATA_DIR", str(tmp_path / "one"))
    first = get_settings()
    assert get_settings() is first  # cached while nothing changes
    monkeypatch.setenv("SHOAL_DATA_DIR", str(tmp_path / "two"))
    monkeypatch.setenv("SHOAL_CRAWL_CONCURRENCY", "3")
    second = get_settings()
    assert second.catalog.data_dir == tmp_path / "two" and second.crawl.concurrency == 3
    monkeypatch.setenv("SHOAL_DATA_DIR", str(tmp_path / "one"))
    monkeypatch.delenv("SHOAL_CRAWL_CONCURRENCY")
    assert get_settings() is first


def test_the_dotenv_file_is_read_and_a_change_to_it_is_seen(monkeypatch, tmp_path) -> None:
    for key in ("SHOAL_SERVE_PORT", "SHOAL_TRAIN_THREADS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("SHOAL_SERVE_PORT=8123\n")
    assert get_settings().serve.port == 8123
    (tmp_path / ".env").write_text("SHOAL_SERVE_PORT=8124\nSHOAL_TRAIN_THREADS=3\n")
    assert get_settings().serve.port == 8124 and get_settings().train.threads == 3


def test_every_section_names_its_variables(monkeypatch) -> None:
    settings = load_settings()
    for name, section in SECTIONS.items():
        assert isinstance(getattr(settings, name), section)
        for field in section.model_fields:
            assert section.env_name(field).startswith("SHOAL_"), (name, field)
    assert SECTIONS["serve"].env_name("api_token") == "SHOAL_API_TOKEN"
    assert SECTIONS["crawl"].env_name("concurrency") == "SHOAL_CRAWL_CONCURRENCY"
    assert SECTIONS["jobs"].env_name("broker_url") == "SHOAL_BROKER_URL"


def test_site_overrides_are_collected_and_checked(monkeypatch) -> None:
    from crawler.sites import site_url

    monkeypatch.setenv("SHOAL_CRAWL_SITE_SHOP_MARKET", "http://127.0.0.1:9/market/")
    assert get_settings().crawl.sites["SHOP_MARKET"] == "http://127.0.0.1:9/market"
    assert site_url("shop:market") == "http://127.0.0.1:9/market"
    monkeypatch.setenv("SHOAL_CRAWL_SITE_SHOP_MARKET", "file:///etc/passwd")
    with pytest.raises(SettingsInvalid, match="SHOAL_CRAWL_SITE_SHOP_MARKET: not an http"):
        get_settings()


def test_a_secret_is_never_echoed_in_an_error(monkeypatch) -> None:
    monkeypatch.setenv("SHOAL_LABEL_STUDIO_URL", "http://user:pw@ls:8080")
    monkeypatch.setenv("SHOAL_JOB_LEASE_SECONDS", "abc")
    with pytest.raises(SettingsInvalid) as caught:
        get_settings()
    assert str(caught.value).startswith("SHOAL_JOB_LEASE_SECONDS='abc'")


def _environ_reads(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(), str(path))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "putenv") \
                and isinstance(node.value, ast.Name) and node.value.id == "os":
            lines.append(node.lineno)
    return lines


def test_no_product_module_reads_the_environment_but_the_settings() -> None:
    found = {}
    for package in PRODUCT:
        for path in sorted((REPO / package).rglob("*.py")):
            if path == REPO / "catalog" / "settings.py":
                continue
            if lines := _environ_reads(path):
                found[str(path.relative_to(REPO))] = lines
    assert found == {}, f"os.environ read outside catalog/settings.py: {found}"


def test_the_readme_lists_every_setting() -> None:
    readme = (REPO / "README.md").read_text()
    missing = [section.env_name(field) for section in SECTIONS.values()
               for field in section.model_fields
               if field != "sites" and f"`{section.env_name(field)}`" not in readme]
    assert missing == []


def test_the_train_section_sets_loader_processes_and_threads(monkeypatch) -> None:
    import torch

    from trainer.features import torch_threads
    from trainer.runs import loader_workers

    monkeypatch.setenv("SHOAL_TRAIN_WORKERS", "3")
    assert loader_workers({"workers": None}) == 3 and loader_workers({}) == 3
    assert loader_workers({"workers": 1}) == 1  # the recipe's own value wins
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(0):  # 0: torch's own count
        assert torch.get_num_threads() == before
