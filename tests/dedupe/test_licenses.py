import pytest

from pipeline.dedupe.licenses import (
    ALL_RIGHTS_RESERVED,
    CC_BY,
    CC_BY_SA,
    OTHER_CC,
    PUBLIC_DOMAIN,
    UNKNOWN,
    license_rank,
)


@pytest.mark.parametrize("text, rank", [
    ("CC0 1.0", PUBLIC_DOMAIN), ("Public domain", PUBLIC_DOMAIN), ("pd", PUBLIC_DOMAIN),
    ("No known copyright restrictions", PUBLIC_DOMAIN),
    ("CC BY 4.0", CC_BY), ("cc-by", CC_BY), ("CC_BY_3.0", CC_BY),
    ("CC BY-SA 3.0", CC_BY_SA), ("by-sa", CC_BY_SA),
    ("CC BY-NC 4.0", OTHER_CC), ("cc-by-nc-sa", OTHER_CC), ("Creative Commons", OTHER_CC),
    (None, UNKNOWN), ("", UNKNOWN), ("shop listing", UNKNOWN),
    ("All rights reserved", ALL_RIGHTS_RESERVED), ("© 2024 Fish Co", ALL_RIGHTS_RESERVED),
])
def test_license_rank(text, rank):
    assert license_rank(text) == rank
