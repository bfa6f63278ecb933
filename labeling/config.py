"""The labelling interface: one single choice among the species, plus three verdicts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import quoteattr

from catalog.models import Species

FROM_NAME = "species"
TO_NAME = "image"

NOT_A_FISH = "not-a-fish"
BAD_IMAGE = "bad-image"
UNSURE = "unsure"
REJECT_CHOICES = (NOT_A_FISH, BAD_IMAGE)
VERDICTS = {NOT_A_FISH: "not a fish", UNSURE: "unsure", BAD_IMAGE: "bad image"}

INSTRUCTIONS = """\
<h3>Which fish is this?</h3>
<p>Pick the one species the photo shows. Each choice shows the Latin name and the Chinese name;
hover it for the English name. The preselected choice is a guess (the crawl keyword or the
current model), not an answer: check it.</p>
<ul>
<li><b>not a fish</b>: no fish at all (a dish, a logo, a map, a person, text).</li>
<li><b>bad image</b>: a fish, but nobody could tell the species: blurred, cut off, tiny, several
species in one photo, a watermark covering it.</li>
<li><b>unsure</b>: a usable photo of a fish but you cannot tell which species; someone else will
look at it.</li>
</ul>
<p>Cooked, sliced or filleted fish count only when the species is still recognisable.</p>
"""


class ConfigError(ValueError):
    """A species set that cannot be turned into a labelling config."""


def choice_caption(species: Species) -> str:
    return " · ".join(n for n in (species.latin_name, species.name_zh) if n)


def label_config(species: Sequence[Species]) -> str:
    """Label Studio XML: each choice shows the names and stores the species slug (its alias)."""
    clash = sorted({s.slug for s in species} & set(VERDICTS))
    if clash:
        raise ConfigError(f"species slug(s) {', '.join(clash)} clash with a review verdict")
    lines = [
        "<View>",
        '  <Header value="Which species is this?"/>',
        f'  <Image name="{TO_NAME}" value="$image" zoom="true" zoomControl="true"/>',
        f'  <Choices name="{FROM_NAME}" toName="{TO_NAME}" choice="single-radio" required="true"'
        ' showInline="false">',
    ]
    for s in species:
        hint = f" hint={quoteattr(s.name_en)}" if s.name_en else ""
        lines.append(f"    <Choice value={quoteattr(choice_caption(s))} alias={quoteattr(s.slug)}"
                     f"{hint}/>")
    for alias, caption in VERDICTS.items():
        lines.append(f"    <Choice value={quoteattr(caption)} alias={quoteattr(alias)}/>")
    lines += ["  </Choices>", "</View>"]
    return "\n".join(lines) + "\n"


def choice_result(choice: str) -> list[dict[str, Any]]:
    """The ``result`` of an annotation or prediction that picks ``choice``."""
    return [{"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices",
             "value": {"choices": [choice]}}]


def choice_of(result: Sequence[dict[str, Any]] | None) -> str | None:
    """The chosen alias in an annotation result, or None when it has no choice of ours."""
    for region in result or ():
        if region.get("from_name") != FROM_NAME:
            continue
        choices = (region.get("value") or {}).get("choices") or []
        if choices:
            return str(choices[0])
    return None
