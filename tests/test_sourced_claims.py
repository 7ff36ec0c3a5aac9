"""Claims about other projects and papers cite what they were read in, or say "unverified".

Mechanical checks only, so they catch the forms that went wrong before (issue 21 §5): a number
quoted "as we recall it", and a reported FID/IS/accuracy in a blueprint header with nothing to
check it against. Whether a cited line says what the header says is for a reader, not a regex.
"""

from __future__ import annotations

import re

import pytest

from support import BLUEPRINTS, ROOT

FROM_MEMORY = re.compile(r"as we recall|from memory|recall(ed)? it\b|as remembered", re.I)
# A reported score: a metric name with a decimal number near it, in one clause.
REPORTED = re.compile(r"\b(IS|FID|KID|Inception score|accuracy)\b[^.;]{0,40}\d+\.\d+"
                      r"|\d+\.\d+%?[^.;]{0,12}\b(IS|FID|accuracy)\b")
# What counts as a source: file:line, "FILE.log ... lines N", a URL or host/path, or "unverified".
CITED = re.compile(r"[\w./-]+\.(py|yaml|yml|md|sh|log|txt|json):\d+"
                   r"|\.(py|log|md|yaml|sh)\b.*\blines? \d+"
                   r"|https?://|\b[\w-]+(\.[\w-]+)+/[\w/.?=&-]+"
                   r"|\bunverified\b", re.I)
HEADERS = sorted([*BLUEPRINTS.glob("*.yaml"), *BLUEPRINTS.glob("zoo/*.yaml")])


def header(path) -> str:
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(lines)


def sentences(text: str) -> list[str]:
    """Sentences, and the items of "- " lists, of a header joined into one line."""
    return [s for s in re.split(r"(?<=\.)\s+(?=[A-Z(])|\s-\s", text) if s.strip()]


def unsourced(text: str) -> list[str]:
    return [s for s in sentences(text) if REPORTED.search(s) and not CITED.search(s)]


@pytest.mark.parametrize("path", HEADERS, ids=lambda p: p.relative_to(BLUEPRINTS).as_posix())
def test_reported_numbers_in_blueprint_headers_are_cited_or_unverified(path):
    assert not unsourced(header(path))


def test_nothing_is_quoted_from_memory():
    texts = {p.relative_to(ROOT).as_posix(): p.read_text() for p in
             [ROOT / "README.md", *HEADERS, *sorted((ROOT / "ganforge").rglob("*.py"))]}
    assert [name for name, text in texts.items() if FROM_MEMORY.search(text)] == []


@pytest.mark.parametrize("text, flagged", [
    # The forms issue 21 found, as they were written (sagan_cifar10.yaml, sagan_imagenet128.yaml).
    ("Reported: StudioGAN FID 10.35 / IS 8.64 (as quoted in the project's SAGAN reference notes; "
     "not re-read in StudioGAN's README).", True),
    ("The paper reports FID 22.96, IS 42.87 for it on ImageNet 128×128.", True),
    ("Reported: StudioGAN IS 8.680 / FID 14.009 (StudioGAN README.md:379 at 77ab4ee).", False),
    ("It has best FID 45.57 at step 14,000 (logs/CIFAR10/ACGAN.log, lines 311, 313).", False),
    ("Table 1 gives FID 18.28 / IS 51.43: unverified.", False),
    ("Parameters: G 4,386,308, D 1,075,586, max |Δ| 1.07e-4.", False),  # not a reported score
])
def test_the_check_tells_cited_from_uncited(text, flagged):
    assert bool(unsourced(text)) is flagged
