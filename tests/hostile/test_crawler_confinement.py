"""The crawler fetches only its source's hosts, and no private address unless allowed.

A hostile page names images and next pages on other loopback ports, under legacy spellings of
127.0.0.1 (decimal, hex, octal), IPv6 loopback and IPv4-mapped loopback, a link-local metadata
address, a name that resolves to loopback, a host that is not the source's, and behind an open
redirect on the source's own site. The other server the page points at must see no request.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from sqlalchemy import select

from catalog.addresses import BadAllowEntry, is_public, parse_allow_list, refusal
from catalog.db import session_scope
from catalog.imaging import Reject
from catalog.models import CrawlJob, ImageSource, JobState
from crawler.hosts import allowed_hosts, host_allowed
from crawler.runner import CrawlFailed, run_crawl
from tests.hostile.conftest import planted_shop

# listed as image hosts by the hostile profile, so only the address check stands in their way
SPELLINGS = ["2130706433", "0x7f000001", "0177.0.0.1", "::1", "::ffff:127.0.0.1", "localhost",
             "169.254.169.254"]


def _url(host: str, port: int | None, path: str) -> str:
    netloc = f"[{host}]" if ":" in host else host
    return f"http://{netloc}:{port}{path}" if port else f"http://{netloc}{path}"


def _job(crawl_job_id: int) -> CrawlJob:
    with session_scope() as s:
        job = s.get(CrawlJob, crawl_job_id)
        assert job is not None
        return job


def _errors(urls: list[str]) -> dict[str, str | None]:
    with session_scope() as s:
        return dict(s.execute(select(ImageSource.url, ImageSource.error)
                              .where(ImageSource.url.in_(urls))).all())


def test_hostile_page_cannot_send_the_crawler_elsewhere(
        crawl_env, other_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site, port = crawl_env.base_url, int(other_server.address.rsplit(":", 1)[1])
    private = {
        f"{other_server.base_url}/secret/other-port.jpg": Reject.PRIVATE_ADDRESS,
        **{_url(h, None if h.startswith("169.") else port, f"/secret/{i}.jpg"):
           Reject.PRIVATE_ADDRESS for i, h in enumerate(SPELLINGS)},
        f"{site}/net/redirect?to={other_server.base_url}/secret/redirected.jpg":
            Reject.PRIVATE_ADDRESS,
        "http://offsite.example/x.jpg": Reject.OFFSITE,
        "http://169.254.169.253/latest/meta-data/": Reject.OFFSITE,  # not even listed
        f"{site}/net/redirect?to=http://offsite.example/redirected.jpg": Reject.OFFSITE,
    }
    good = crawl_env.shop_urls("Amblypharyngodon mola")[:2]
    crawl_env.plant("confine-2", [], next_page=f"{other_server.base_url}/secret/page3")
    base = crawl_env.plant("confine", [*private, *good],
                           next_page=f"{site}/planted/confine-2/search")
    source = planted_shop(tmp_path, monkeypatch, "confineshop", base, image_hosts=SPELLINGS)

    job = _job(run_crawl("mola", source))

    assert other_server.requested() == []  # not one request reached the other port
    assert job.state == JobState.SUCCEEDED
    assert _errors(list(private)) == private
    assert _errors(good) == dict.fromkeys(good)  # the source's own images still come
    assert job.stats["stored"] == len(good)
    refused_images = {r: list(private.values()).count(r) for r in set(private.values())}
    assert job.stats["rejected"] == refused_images
    assert job.stats["page_errors"] == {Reject.PRIVATE_ADDRESS: 1}  # the third page
    assert job.stats["refused"] == {Reject.PRIVATE_ADDRESS: refused_images[Reject.PRIVATE_ADDRESS]
                                    + 1, Reject.OFFSITE: refused_images[Reject.OFFSITE]}


@pytest.mark.parametrize(("next_page", "reason"), [
    ("http://127.0.0.2.nip.example/search", Reject.OFFSITE),
    ("file:///etc/passwd", Reject.UNSUPPORTED_URL),  # Scrapy's file handler would read it
])
def test_next_page_elsewhere_is_not_followed(crawl_env, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch, next_page: str,
                                              reason: str) -> None:
    name = f"confine-next-{reason}"
    base = crawl_env.plant(name, [], next_page=next_page)
    job = _job(run_crawl("mola", planted_shop(tmp_path, monkeypatch, "nextshop", base)))
    assert job.stats["pages"] == 1 and job.stats["page_errors"] == {reason: 1}
    assert job.stats["refused"] == {reason: 1}


def test_loopback_is_refused_unless_allowed(
        crawl_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = crawl_env.plant("confine-loopback", crawl_env.shop_urls("Amblypharyngodon mola")[:1])
    monkeypatch.setenv("SHOAL_CRAWL_ALLOW_PRIVATE_HOSTS", "")
    before = len(crawl_env.requested())
    with pytest.raises(CrawlFailed, match="private_address"):
        run_crawl("mola", planted_shop(tmp_path, monkeypatch, "loopshop", base))
    assert len(crawl_env.requested()) == before  # nothing sent, not even robots.txt


def test_each_source_names_its_hosts_and_an_override_adds_its_own(monkeypatch):
    from crawler.profiles import load_profile

    assert allowed_hosts("wikimedia") == {"en.wikipedia.org", "zh.wikipedia.org",
                                          "commons.wikimedia.org", "upload.wikimedia.org"}
    assert allowed_hosts("inaturalist") == {"api.inaturalist.org", "www.inaturalist.org",
                                            "static.inaturalist.org",
                                            "inaturalist-open-data.s3.amazonaws.com"}
    assert allowed_hosts("baike") == {"baike.baidu.com", *load_profile("baike").image_hosts}
    assert allowed_hosts("gbif") == {"api.gbif.org", "*"}  # media: any public host
    monkeypatch.setenv("SHOAL_CRAWL_SITE_SHOP_MARKET", "http://mirror.example:8080/shop")
    assert allowed_hosts("shop:market") == {"mirror.example", "market.example.com"}
    monkeypatch.setenv("SHOAL_CRAWL_SITE_COMMONS", "http://127.0.0.1:8080/commons")
    assert "127.0.0.1" in allowed_hosts("wikimedia")
    hosts = allowed_hosts("wikimedia")
    assert host_allowed("UPLOAD.wikimedia.org.", hosts)
    assert host_allowed("a.upload.wikimedia.org", hosts)
    assert not host_allowed("wikimedia.org", hosts)
    assert not host_allowed("upload.wikimedia.org.evil.example", hosts)
    assert not host_allowed("", hosts)
    assert host_allowed("media.any-publisher.example", frozenset({"api.gbif.org", "*"}))


def test_address_rules_and_allow_entries():
    for text in ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
                 "100.64.0.1", "0.0.0.0", "224.0.0.1", "::1", "fe80::1", "fc00::1", "::"]:
        assert not is_public(ipaddress.ip_address(text)), text
    assert is_public(ipaddress.ip_address("93.184.215.14"))
    assert is_public(ipaddress.ip_address("2a00:1450:4001:82b::200e"))
    allowed = parse_allow_list(["127.0.0.1:8080", "[::1]:9", "10.0.0.0/8", ""])
    loopback = ipaddress.ip_address("127.0.0.1")
    assert refusal(loopback, 8080, allowed) is None
    assert refusal(loopback, 8081, allowed) is not None
    assert refusal(ipaddress.ip_address("::1"), 9, allowed) is None
    assert refusal(ipaddress.ip_address("10.9.9.9"), 1, allowed) is None
    assert refusal(ipaddress.ip_address("192.168.0.1"), 80, allowed) is not None
    assert refusal(ipaddress.ip_address("192.168.0.1"), 80, parse_allow_list(["*"])) is None
    for bad in ["localhost", "127.0.0.1:0", "127.0.0.1:x", "[::1]:99999", "1.2.3.4/99"]:
        with pytest.raises(BadAllowEntry):
            parse_allow_list([bad])


def test_a_bad_allow_entry_or_image_host_is_refused_with_its_text(monkeypatch, tmp_path):
    from catalog.settings import SettingsInvalid, get_settings
    from crawler.profiles import ProfileError, load_profile

    monkeypatch.setenv("SHOAL_CRAWL_ALLOW_PRIVATE_HOSTS", "127.0.0.1:8080,localhost")
    with pytest.raises(SettingsInvalid, match="SHOAL_CRAWL_ALLOW_PRIVATE_HOSTS=.*'localhost'"):
        get_settings()
    monkeypatch.delenv("SHOAL_CRAWL_ALLOW_PRIVATE_HOSTS")
    monkeypatch.setenv("SHOAL_CRAWL_PROFILE_DIRS", str(tmp_path))
    planted_shop(tmp_path, monkeypatch, "badhosts", "http://shop.example",
                 image_hosts=["https://cdn.example/img"])
    with pytest.raises(ProfileError, match="host names, not URLs"):
        load_profile("badhosts")
