"""The documentation holds together: every relative link and image in README.md, CHANGELOG.md and
docs/*.md points at a file or folder that exists, and the README stays a short front door."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README_MAX_LINES = 250

# [text](target) and ![alt](target), with an optional "title"; the text may hold `code` and \|,
# but not a nested ] (Markdown's own rule for inline links)
LINK = re.compile(r"!?\[(?P<text>[^\]]*)\]\(\s*<?(?P<target>[^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")
EXTERNAL = ("http://", "https://", "mailto:")


def markdown_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
    return [f for f in files if f.is_file()]


def links(text: str):
    """(line number, link as written, target) of every Markdown link and image outside fenced code
    blocks and inline code spans."""
    in_fence = False
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        prose = re.sub(r"`[^`]*`", lambda m: " " * len(m.group()), line)  # `[a](b)` in code is no link
        for match in LINK.finditer(prose):
            yield number, line[match.start() : match.end()], match.group("target")


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """One line per relative link of `path` whose file or folder (relative to the page's folder,
    without its #fragment) does not exist: where it is, the link as written, and what is missing."""
    problems = []
    for number, written, target in links(path.read_text(encoding="utf-8")):
        if target.startswith(EXTERNAL) or target.startswith("#"):
            continue
        relative = target.split("#", 1)[0].split("?", 1)[0]
        if not relative:
            continue
        if not (path.parent / relative).exists():
            problems.append(f"{path.relative_to(root)}:{number}: {written} -> {relative} does not exist")
    return problems


def test_the_docs_exist():
    names = {f.relative_to(ROOT).as_posix() for f in markdown_files()}
    assert {"README.md", "CHANGELOG.md"} <= names
    assert any(name.startswith("docs/") for name in names)


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(path):
    problems = broken_links(path)
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines, at most {README_MAX_LINES}"


@pytest.mark.parametrize("page", ["README.md", "docs/development.md"])
def test_extending_is_linked(page):
    targets = [t.split("#", 1)[0] for _, _, t in links((ROOT / page).read_text(encoding="utf-8"))]
    resolved = {(ROOT / page).parent.joinpath(t).resolve() for t in targets if t}
    assert (ROOT / "docs" / "extending.md").resolve() in resolved, f"{page} does not link docs/extending.md"


def test_the_link_checker_finds_a_broken_link(tmp_path):
    (tmp_path / "there.md").write_text("x")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](there.md#part) ![gone](missing.png) [web](https://example.org) [top](#top)\n"
        "`[code](nowhere.md)`\n```\n[fenced](nowhere.md)\n```\n"
    )
    found = [target for _, _, target in links(page.read_text())]
    assert found == ["there.md#part", "missing.png", "https://example.org", "#top"]
    assert broken_links(page, tmp_path) == ["page.md:1: ![gone](missing.png) -> missing.png does not exist"]


# ---------------------------------------------------------------------------------------------
# measured tables are generated, not typed: each sits in a block that names the file a committed
# command wrote (`w2s report ... --out`, a benchmark's --out), and must equal that file, which ends
# in its provenance line (w2s version, KEY_VERSION, machine, precision, seeds, wall time)

GENERATED = re.compile(
    r"<!-- generated: (?P<file>\S+) by `(?P<command>[^`]+)` -->\n(?P<body>.*?)<!-- end generated -->", re.S
)
# the header of a table of measured PGRs (not of a table that only names PGR, or shows figures)
TABLE_HEADER = re.compile(r"^\|.*(PGR \[|\bpgr_\w+|\|\s*PGR\s*\|)")
SEPARATOR = re.compile(r"^\|(\s*:?-+:?\s*\|)+\s*$")


def generated_blocks(path: Path):
    yield from GENERATED.finditer(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_generated_tables_equal_the_files_their_commands_wrote(path):
    for block in generated_blocks(path):
        source = ROOT / block["file"]
        assert source.is_file(), f"{path.name}: {block['file']} (from `{block['command']}`) does not exist"
        assert block["body"].strip() == source.read_text(encoding="utf-8").strip(), (
            f"{path.name}: the block from {block['file']} differs from the file; copy it again after `{block['command']}`"
        )
        assert "KEY_VERSION" in block["body"] and "machine:" in block["body"], f"{block['file']}: no provenance line"


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_measured_pgr_table_is_typed_by_hand(path):
    text = path.read_text(encoding="utf-8")
    spans = [block.span() for block in generated_blocks(path)]
    offset, typed, lines = 0, [], text.splitlines(keepends=True)
    for number, line in enumerate(lines, start=1):
        inside = any(start <= offset < end for start, end in spans)
        header = TABLE_HEADER.match(line) and number < len(lines) and SEPARATOR.match(lines[number])
        if header and not inside:
            typed.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:80]}")
        offset += len(line)
    assert not typed, "PGR tables outside a generated block:\n" + "\n".join(typed)


def test_a_stale_generated_table_is_caught(tmp_path, monkeypatch):
    (tmp_path / "summary.md").write_text(
        "| a | PGR |\n|---|---|\n| x | 0.5 |\n\nw2s 0.1.0 · KEY_VERSION 5 · machine: m\n"
    )
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- generated: summary.md by `w2s report r` -->\n| a | PGR |\n|---|---|\n| x | 0.6 |\n\n"
        "w2s 0.1.0 · KEY_VERSION 5 · machine: m\n<!-- end generated -->\n| b | PGR |\n|---|---|\n"
    )
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    with pytest.raises(AssertionError, match="differs from the file"):
        test_generated_tables_equal_the_files_their_commands_wrote(page)
    with pytest.raises(AssertionError, match=r"page.md:8: \| b \| PGR \|"):
        test_no_measured_pgr_table_is_typed_by_hand(page)


def heading_anchors(path: Path) -> set[str]:
    """The #fragments GitHub gives the page's headings: lower case, punctuation dropped, spaces as -."""
    anchors, in_fence = set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and line.startswith("#"):
            anchors.add(re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-"))
    return anchors


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_link_fragments_name_a_heading(path):
    missing = []
    for number, written, target in links(path.read_text(encoding="utf-8")):
        if target.startswith(EXTERNAL) or "#" not in target:
            continue
        page, fragment = target.split("#", 1)
        linked = (path.parent / page) if page else path
        if linked.suffix == ".md" and linked.is_file() and fragment not in heading_anchors(linked):
            missing.append(f"{path.relative_to(ROOT)}:{number}: {written}: no heading #{fragment} in {linked.name}")
    assert not missing, "\n".join(missing)


def test_a_fragment_without_its_heading_is_caught(tmp_path, monkeypatch):
    (tmp_path / "other.md").write_text("# Title\n## results.jsonl\n```\n# not a heading\n```\n")
    page = tmp_path / "page.md"
    page.write_text("[a](other.md#resultsjsonl) [b](other.md#title) [c](other.md#not-a-heading) [d](#top)\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    with pytest.raises(AssertionError) as caught:
        test_link_fragments_name_a_heading(page)
    reported = str(caught.value).split("\nassert ")[0]  # the message, without pytest's repr of the list
    assert [line.strip() for line in reported.splitlines()] == [
        "page.md:1: [c](other.md#not-a-heading): no heading #not-a-heading in other.md",
        "page.md:1: [d](#top): no heading #top in page.md",
    ]


UNQUOTED_SET = re.compile(r"--set [A-Za-z_.0-9]+=[\[{]")  # zsh refuses it; bash may expand it as a glob


@pytest.mark.parametrize("path", [*markdown_files(), *sorted((ROOT / "experiments").rglob("*.yaml"))], ids=str)
def test_no_set_with_brackets_goes_unquoted(path):
    assert not UNQUOTED_SET.findall(path.read_text()), f"{path}: quote it: --set 'key=[...]'"


def test_the_quoting_check_finds_an_unquoted_set():
    assert UNQUOTED_SET.findall("w2s run spec.yaml --set seeds=[0,1]")
    assert not UNQUOTED_SET.findall("w2s run spec.yaml --set 'seeds=[0,1]' --set train.lr=1e-4")
