"""The web-20 photo folders by scientific name (from ../shared/fishdata/README.md)."""

from __future__ import annotations

from pathlib import Path

WEB20_LATIN: dict[str, str] = {
    "Baim": "Mastacembelus armatus",
    "Bata": "Labeo bata",
    "Boal": "Wallago attu",
    "Chitol": "Chitala chitala",
    "Gajar": "Channa marulius",
    "Hilsa": "Tenualosa ilisha",
    "Kachki": "Corica soborna",
    "Katla": "Catla catla",
    "Koi": "Anabas testudineus",
    "Loitta": "Harpadon nehereus",
    "Magur": "Clarias batrachus",
    "Mola": "Amblypharyngodon mola",
    "Mrigal": "Cirrhinus cirrhosus",
    "Pabda": "Ompok pabda",
    "Pangas": "Pangasius pangasius",
    "Rui": "Labeo rohita",
    "Shing": "Heteropneustes fossilis",
    "Shoal": "Channa striata",
    "Taki": "Channa punctata",
    "Tilapia": "Oreochromis niloticus",
}


def latin_species_map(web20: Path, folders: list[str] | None = None) -> dict[str, Path]:
    """``{Latin name: folder}`` for the web-20 folders (all, or the ones named)."""
    names = folders or list(WEB20_LATIN)
    return {WEB20_LATIN[name]: web20 / name for name in names if (web20 / name).is_dir()}
