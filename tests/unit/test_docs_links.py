"""The README is the front door and docs/ holds the rest: every relative link in them leads
somewhere (a file, and for `#anchor` a heading of it), the README links to every doc, each
doc's contents list reaches each of its sections, and the README stays short.

Anchors follow GitHub's rule: the heading's text lowercased, punctuation other than `-` and
spaces dropped, spaces turned into `-`, and `-1`, `-2`, ... added to a repeated slug.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
README_MAX_LINES = 180


def docs() -> list[Path]:
    return sorted(p for p in (ROOT / "docs").rglob("*.md") if "_fragments" not in p.relative_to(ROOT).parts)


FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")


def prose_lines(text: str):
    """(line number, line) outside fenced and indented code blocks, code spans blanked."""
    in_fence = False
    previous_blank = True
    in_indented = False
    for number, line in enumerate(text.split("\n"), 1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        blank = not line.strip()
        if line.startswith("    ") and (previous_blank or in_indented) and not line.lstrip().startswith(("-", "*", "|")):
            in_indented = True
        elif not blank:
            in_indented = False
        previous_blank = blank
        if in_indented:
            continue
        yield number, CODE_SPAN.sub("", line)


def slug(heading: str) -> str:
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)    # a link in a heading: its text
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def headings(path: Path) -> list[tuple[int, str]]:
    """(level, anchor) of every heading outside fenced code, repeated slugs numbered."""
    seen: dict[str, int] = {}
    found = []
    in_fence = False
    for line in path.read_text(encoding="utf-8").split("\n"):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        match = None if in_fence else HEADING.match(line)
        if match:
            base = slug(match.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.append((len(match.group(1)), base if n == 0 else f"{base}-{n}"))
    return found


def anchors(path: Path) -> set[str]:
    return {anchor for _, anchor in headings(path)}


def links(path: Path) -> list[tuple[int, str]]:
    found = []
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        found += [(number, m.group(1)) for m in INLINE_LINK.finditer(line)]
        ref = REFERENCE_DEF.match(line)
        if ref:
            found.append((number, ref.group(1)))
    return found


def broken_links(path: Path) -> list[str]:
    problems = []
    for number, target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):    # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        where = f"{path.relative_to(ROOT)}:{number}: {target}"
        if not dest.exists():
            problems.append(f"{where}: no such file")
        elif ROOT not in dest.parents and dest != ROOT:
            problems.append(f"{where}: leads out of the repository")
        elif anchor and (dest.suffix != ".md" or anchor not in anchors(dest)):
            problems.append(f"{where}: no heading with the anchor #{anchor}")
    return problems


@pytest.mark.parametrize("path", [README] + docs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path):
    problems = broken_links(path)
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_readme_links_every_doc():
    assert docs(), "docs/ holds no document"
    linked = {(README.parent / target.partition("#")[0]).resolve() for _, target in links(README)}
    missing = [str(d.relative_to(ROOT)) for d in docs() if d.resolve() not in linked]
    assert not missing, f"README.md does not link to {missing}"


@pytest.mark.parametrize("path", docs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_each_doc_opens_with_a_contents_list_reaching_every_section(path):
    text = path.read_text(encoding="utf-8")
    sections = [anchor for level, anchor in headings(path) if level == 2]
    listed = {target[1:] for _, target in links(path) if target.startswith("#")}
    assert text.startswith("# "), f"{path.name} does not open with its title"
    missing = [s for s in sections if s not in listed]
    assert not missing, f"{path.name}: sections not in its contents list: {missing}"


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES})"


def test_the_checks_catch_a_broken_link_and_anchor(tmp_path, monkeypatch):
    """The checker itself: a missing file and a missing heading are both reported."""
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "other.md").write_text("# Other\n\n## A heading, with `code`\n")
    page = tmp_path / "page.md"
    page.write_text("[ok](other.md#a-heading-with-code) [gone](nowhere.md) [bad](other.md#nope)\n"
                    "`[in code](nowhere.md)`\n\n    [indented code](nowhere.md)\n")
    problems = broken_links(page)
    assert len(problems) == 2, problems
    assert "nowhere.md: no such file" in problems[0] and "#nope" in problems[1]
