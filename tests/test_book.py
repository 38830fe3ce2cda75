"""The book and its notebooks agree with the code: every equation names a test that exists,
every notebook installs from the repository named in _config.yml and imports only what
requirements.txt installs."""

import ast
import json
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "book").glob("[0-9]*.md"))
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
LABELLED_EQUATION = re.compile(r"^\$\$ \(([\w-]+)\)\s*$", re.M)
TESTED = re.compile(r"^[ \t]*:::\{admonition\} Tested (by|with)$|\*Tested (by|with)\*", re.M)
TEST_REFERENCE = re.compile(r"`(tests/test_\w+\.py)?::(test_\w+)")


def _test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


def test_there_are_chapters_and_notebooks():
    assert CHAPTERS and NOTEBOOKS


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_every_labelled_equation_is_followed_by_the_test_that_checks_it(chapter):
    """After each numbered equation, before the next one, the chapter says "Tested by/with" (a box or a line)."""
    text = chapter.read_text()
    matches = list(LABELLED_EQUATION.finditer(text))
    assert matches, f"{chapter.name} has no numbered equations"
    for here, after in zip(matches, matches[1:] + [None]):
        following = text[here.end() : after.start() if after else len(text)]
        assert TESTED.search(following), f"equation ({here.group(1)}) in {chapter.name} names no test"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_every_test_a_chapter_names_exists(chapter):
    """`tests/test_x.py::test_name` and the short form `::test_name` (same file as the last full one)."""
    current = None
    found = 0
    for match in TEST_REFERENCE.finditer(chapter.read_text()):
        current = match.group(1) or current
        assert current is not None, f"{match.group(0)} in {chapter.name} names no file"
        assert match.group(2) in _test_functions(ROOT / current), f"{current}::{match.group(2)} does not exist"
        found += 1
    assert found > 0


def _code_cells(notebook: Path) -> list[str]:
    cells = json.loads(notebook.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_colab_install_cell_uses_the_repository_of_config(notebook):
    """The first code cell installs ddpm_utils from _config.yml's repository.url, only in Colab."""
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    first = _code_cells(notebook)[0]
    assert '"google.colab" in sys.modules' in first
    assert f"git+{url}" in first, f"{notebook.name} installs from another URL than {url}"


# Import name → the requirement that provides it, where the two differ.
PROVIDED_BY = {"IPython": "ipykernel", "sklearn": "scikit-learn", "yaml": "jupyter-book"}


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_import_only_the_standard_library_and_requirements(notebook):
    lines = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    requirements = {re.split(r"[<>=!~\[ ]", line)[0].lower() for line in lines if line and line[0] not in "#-"}
    if "-e ." in lines:  # the checkout itself
        requirements.add("ddpm_utils")
    for source in _code_cells(notebook):
        code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names:
                    continue
                needed = PROVIDED_BY.get(top, top).lower()
                assert needed in requirements, f"{notebook.name} imports {top}, which requirements.txt does not install"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_directives_nested_in_exercises_use_fewer_colons(chapter):
    """A `:::{admonition}` inside a `:::{solution}` would close the solution early and spill its rest onto the page:
    an exercise or solution holding another directive must open with more colons than the directive inside."""
    opening = re.compile(r"^(:{3,})\{(\w[\w:-]*)\}")
    stack = []  # (colons, name) of the directives open at this line
    for number, line in enumerate(chapter.read_text().splitlines(), 1):
        fence = re.match(r"^(:{3,})\s*$", line)
        if fence and stack and len(fence.group(1)) == stack[-1][0]:
            stack.pop()
            continue
        match = opening.match(line)
        if match:
            colons = len(match.group(1))
            for outer_colons, outer in stack:
                assert colons < outer_colons, (
                    f"{chapter.name}:{number}: {match.group(2)} opens with {colons} colons inside {outer} "
                    f"({outer_colons}); give the outer block more colons")
            stack.append((colons, match.group(2)))
    assert not stack, f"{chapter.name}: unclosed {stack}"


def _markdown_sources():
    for chapter in CHAPTERS:
        yield chapter.name, chapter.read_text()
    for notebook in NOTEBOOKS:
        cells = json.loads(notebook.read_text())["cells"]
        for i, cell in enumerate(cells):
            if cell["cell_type"] == "markdown":
                yield f"{notebook.name} cell {i}", "".join(cell["source"])


def test_no_line_inside_inline_maths_starts_a_list():
    """A line that begins with "- " or "+ " while a `$…$` is open turns into a bullet and breaks the maths."""
    problems = []
    for name, text in _markdown_sources():
        for paragraph in re.split(r"\n\s*\n", text):
            if paragraph.lstrip().startswith(("$$", "```")):
                continue
            open_dollars = 0
            for line in paragraph.splitlines():
                if open_dollars % 2 and re.match(r"\s*[-+*] ", line):
                    problems.append(f"{name}: {line.strip()[:60]}")
                open_dollars += len(re.findall(r"(?<![\\$])\$(?!\$)", line))
    assert not problems, problems
