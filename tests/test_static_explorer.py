"""The static schedule explorer: its JavaScript computes the schedules of schedules.py, its HTML
is self-contained, built from the package's static files and the one table of the explorers'
controls, and on a built Jupyter Book page, with no kernel, its controls redraw it.

The browser tests build a book with the venv's ``jupyter-book``, serve it on 127.0.0.1 and open
it in Debian's Chromium through Playwright; they skip, saying why, only where Chromium or
Playwright is missing. Screenshots go to tests/artifacts/ (git-ignored).
"""

import importlib.util
import json
import math
import re
import shutil
import subprocess
import sys
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch

from book_build import build_book
from chromium import ARTIFACTS
from chromium import serve as _serve
from ddpm_utils.schedules import make_schedule
from ddpm_utils.static_explorer import SCHEDULE_JS, show_static_explorer, static_explorer_html
from ddpm_utils.widgets import EXPLORER_CONTROLS

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "ddpm_utils" / "static"
STATIC_FILES = ("explorer.css", "explorer.html", "explorer.js", "schedules.js")


def _digit() -> torch.Tensor:
    """A synthetic "0" in [-1, 1], shape (1, 28, 28): a ring, white on black like MNIST."""
    y, x = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    r = (((x - 13.5) / 7) ** 2 + ((y - 13.5) / 9.5) ** 2).sqrt()
    return (2 * torch.exp(-(((r - 1) / 0.18) ** 2)) - 1).unsqueeze(0)


# ---------------------------------------------------------------------------------------------
# Math parity: the JavaScript schedules are the Python ones
# ---------------------------------------------------------------------------------------------

# (kind, T, params of make_schedule)
PARITY_CASES = [
    ("linear", 10, {}),
    ("linear", 1000, {}),
    ("linear", 10, {"beta_start": 1e-3, "beta_end": 0.5}),
    ("linear", 1000, {"beta_start": 1e-5, "beta_end": 0.05}),
    ("cosine", 10, {}),
    ("cosine", 1000, {}),
    ("sigmoid", 10, {}),
    ("sigmoid", 1000, {}),
]

NODE_DRIVER = """
const cases = JSON.parse(process.argv[1]);
const out = cases.map(([kind, T, b1, bT]) => {
  const logAb = logAlphaBars(kind, T, b1, bT);
  return {alphaBars: alphaBars(kind, T, b1, bT), log10Snr: log10Snr(logAb)};
});
process.stdout.write(JSON.stringify(out));
"""


@pytest.fixture(scope="module")
def js_schedules():
    """Every parity case computed by SCHEDULE_JS in one node process."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node not found on PATH: the JavaScript schedules cannot be run")
    cases = [[k, T, p.get("beta_start", 1e-4), p.get("beta_end", 0.02)] for k, T, p in PARITY_CASES]
    done = subprocess.run(
        [node, "-e", SCHEDULE_JS + NODE_DRIVER, json.dumps(cases)],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, f"node failed:\n{done.stderr}"
    return json.loads(done.stdout)


def _case_id(i: int) -> str:
    kind, T, params = PARITY_CASES[i]
    return f"{kind}-T{T}" + "".join(f"-{v:g}" for v in params.values())


@pytest.mark.parametrize("case", range(len(PARITY_CASES)), ids=_case_id)
def test_javascript_alpha_bars_equal_make_schedule(js_schedules, case):
    """ᾱ_t = ∏ (1 - β_s) for the linear, cosine and sigmoid betas, in JS as in schedules.py."""
    kind, T, params = PARITY_CASES[case]
    schedule = make_schedule(kind, T, **params)
    js = torch.tensor(js_schedules[case]["alphaBars"], dtype=torch.float64)
    assert js.shape == (T,)
    torch.testing.assert_close(js, schedule.alpha_bars.double(), atol=1e-6, rtol=0)
    # log₁₀ SNR, the second panel: log ᾱ - log(1 - ᾱ), over ln 10.
    log10_snr = torch.tensor(js_schedules[case]["log10Snr"], dtype=torch.float64)
    torch.testing.assert_close(log10_snr, schedule.log_snr.double() / math.log(10), atol=1e-4, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# The HTML: self-contained, small, unique, carrying the digit
# ---------------------------------------------------------------------------------------------


class _StartTags(HTMLParser):
    """Every start tag of an HTML text with its attributes, unescaped as a browser reads them."""

    def __init__(self, html: str):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _root_attributes(html: str) -> dict[str, str]:
    """The attributes of the explorer's outer ``<div>``."""
    tag, attrs = _StartTags(html).tags[0]
    assert tag == "div" and attrs.get("class") == "ddpm-static-explorer", f"not an explorer: <{tag} {attrs}>"
    return attrs


def _controls(html: str) -> dict[str, dict[str, str]]:
    """Each ``<input>`` and ``<select>`` of the explorer, by its ``data-role``."""
    return {a["data-role"]: a for tag, a in _StartTags(html).tags if tag in ("input", "select")}


def _embedded(html: str, name: str) -> torch.Tensor:
    """The pixels in the ``data-<name>`` attribute, as the script parses them: shape (1, 28, 28)."""
    attrs = _root_attributes(html)
    assert f"data-{name}" in attrs, f"no data-{name} attribute on the explorer's <div>"
    return torch.tensor(json.loads(attrs[f"data-{name}"]), dtype=torch.float64).reshape(1, 28, 28)


def test_html_is_self_contained_small_and_carries_the_digit_and_noise():
    image = _digit()
    html = static_explorer_html(image, seed=3)
    assert html.startswith("<div") and html.rstrip().endswith("</div>")
    assert 'src="http' not in html and "<link" not in html.lower()
    assert not re.search(r"<script[^>]*\bsrc=", html), "no external script"
    assert "http://" not in html and "https://" not in html, "no network address at all"
    assert len(html.encode()) < 50_000
    for tag in ("<canvas", "<select", 'type="range"', "<script>"):
        assert tag in html
    # Pixels and ε, rounded to 3 decimals; ε is N(0, I) drawn with the seed, as widgets.py does.
    torch.testing.assert_close(_embedded(html, "image"), image.double(), atol=5.01e-4, rtol=0)
    noise = torch.randn(1, 28, 28, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(_embedded(html, "noise"), noise.double(), atol=5.01e-4, rtol=0)
    given = torch.full((1, 28, 28), 0.25)
    torch.testing.assert_close(_embedded(static_explorer_html(image, noise=given), "noise"), given.double())


def test_data_attributes_round_trip():
    """The digit, ε and β range the script reads are the arguments: JSON in escaped data- attributes."""
    image, noise = _digit(), torch.rand(1, 28, 28) * 2 - 1
    html = static_explorer_html(image, noise=noise, beta_start=3e-5, beta_end=0.0123)
    attrs = _root_attributes(html)  # unescaped by the parser, as the browser's dataset is
    assert set(attrs) == {"id", "class", "data-image", "data-noise", "data-beta1", "data-beta-t"}
    assert float(attrs["data-beta1"]) == 3e-5 and float(attrs["data-beta-t"]) == 0.0123
    torch.testing.assert_close(_embedded(html, "image"), image.double(), atol=5.01e-4, rtol=0)
    torch.testing.assert_close(_embedded(html, "noise"), noise.double(), atol=5.01e-4, rtol=0)
    # Each attribute is written escaped: one double-quoted value, no raw quote or bracket inside.
    for name in ("data-image", "data-noise", "data-beta1", "data-beta-t"):
        raw = re.search(rf'\s{name}="([^"]*)"', html).group(1)
        assert not set(raw) & set("<>\"'"), f"{name} is not HTML-escaped: {raw[:60]}…"
    # No value is formatted into the script: but for the id, it is the same for any digit, ε, β and T.
    def script(html: str) -> str:
        uid = _root_attributes(html)["id"]
        return html[html.index("<script>") : html.index("</script>")].replace(uid, "ID")

    assert script(html) == script(static_explorer_html(-image, seed=1, T=20, t=3, kind="sigmoid"))


def test_html_is_made_of_the_package_static_files():
    """explorer.html, .css, .js and schedules.js are read from ddpm_utils/static/ (package data):
    every stretch of each between its __NAME__ placeholders is in the HTML, and no placeholder is left."""
    html = static_explorer_html(_digit())
    assert SCHEDULE_JS == (STATIC / "schedules.js").read_text(encoding="utf-8")
    for name in STATIC_FILES:
        text = (STATIC / name).read_text(encoding="utf-8")
        for piece in re.split(r"__\w+?__", text):
            assert piece.strip() in html, f"ddpm_utils/static/{name} is not what the HTML is made of: {piece[:80]!r}"
    assert not re.search(r"__\w+?__", html), "a placeholder was left unfilled"
    assert sorted(p.name for p in STATIC.iterdir() if p.is_file()) == sorted(STATIC_FILES)


def test_static_sliders_take_ranges_and_defaults_from_the_one_table():
    """Every control's min, max, step and starting value is EXPLORER_CONTROLS's (as the widget's are,
    tests/test_widgets.py); the t slider ends at the current T."""
    c = EXPLORER_CONTROLS
    controls = _controls(static_explorer_html(_digit()))
    for role, slider in (("T", c.T), ("t", c.t), ("beta1", c.beta_start), ("betaT", c.beta_end)):
        attrs = controls[role]
        assert float(attrs["min"]) == slider.min, role
        assert float(attrs["max"]) == (c.T.default if slider.max is None else slider.max), role
        assert attrs["step"] == ("any" if slider.step is None else str(slider.step)), role
        assert float(attrs["value"]) == pytest.approx(slider.position(slider.default), abs=1e-12), role
    selected = re.search(r'<option value="(\w+)" selected>', static_explorer_html(_digit()))
    assert selected.group(1) == c.kind
    # Starting values other than the defaults move the values, never the ranges.
    moved = _controls(static_explorer_html(_digit(), T=300, t=7, beta_end=0.05))
    assert (moved["T"]["value"], moved["t"]["value"], moved["t"]["max"]) == ("300", "7", "300")
    assert float(moved["betaT"]["value"]) == pytest.approx(math.log10(0.05))
    assert moved["T"]["min"] == controls["T"]["min"] and moved["betaT"]["max"] == controls["betaT"]["max"]
    # The range checks are the table's too.
    with pytest.raises(ValueError, match="T must be"):
        static_explorer_html(_digit(), T=c.T.max + 1, t=1)
    with pytest.raises(ValueError, match="beta_start"):
        static_explorer_html(_digit(), beta_start=10 ** c.beta_start.max * 1.01)
    static_explorer_html(_digit(), T=c.T.max, t=1, beta_start=10**c.beta_start.min)  # the ends are allowed


def test_a_wheel_built_from_the_repository_ships_the_static_files(tmp_path):
    """pyproject.toml's package data: `pip install git+…` (Colab) builds such a wheel. Built
    offline, from a copy of the package, with the setuptools of this environment."""
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is not installed here: the wheel cannot be built offline")
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "ddpm_utils", source / "ddpm_utils", ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "--no-index",
         "--quiet", "-w", str(tmp_path / "wheel")],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, f"pip wheel failed:\n{done.stdout}\n{done.stderr}"
    (wheel,) = (tmp_path / "wheel").glob("ddpm_utils-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {n.removeprefix("ddpm_utils/static/"): archive.read(n) for n in archive.namelist()
                   if n.startswith("ddpm_utils/static/")}
    assert sorted(shipped) == sorted(STATIC_FILES), f"the wheel's ddpm_utils/static/ holds {sorted(shipped)}"
    for name in STATIC_FILES:
        assert shipped[name] == (STATIC / name).read_bytes(), name


def test_two_explorers_have_different_ids_and_a_rerun_the_same():
    """The id is a digest of the arguments: no counter in the module, so a notebook run again
    gives the same output, and two explorers differ in some argument or in ``instance``."""
    def uid(**kw):
        return re.match(r'<div id="([\w-]+)"', static_explorer_html(_digit(), **kw)).group(1)

    assert uid() == uid() and uid(instance=0) == uid()
    assert len({uid(), uid(instance=1), uid(seed=1), uid(t=10), uid(kind="cosine")}) == 5
    with pytest.raises(ValueError, match="instance"):
        static_explorer_html(_digit(), instance=-1)
    html = static_explorer_html(_digit())
    uid = re.match(r'<div id="([\w-]+)"', html).group(1)
    assert f'const ID = "{uid}"' in html, "the script must find its own div"
    assert f"#{uid} " in html, "the styles must apply to this explorer only"


@pytest.mark.parametrize("shape", [(28, 28), (1, 28, 27), (3, 28, 28), (2, 1, 28, 28)])
def test_bad_image_shape_raises(shape):
    with pytest.raises(ValueError, match=r"\(1, 28, 28\)"):
        static_explorer_html(torch.zeros(shape))


def test_bad_settings_raise():
    image = _digit()
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        static_explorer_html(image * 2)
    with pytest.raises(ValueError, match="noise"):
        static_explorer_html(image, noise=torch.zeros(28, 28))
    with pytest.raises(ValueError, match="unknown schedule"):
        static_explorer_html(image, kind="quadratic")
    with pytest.raises(ValueError, match="t must lie"):
        static_explorer_html(image, T=100, t=101)
    with pytest.raises(ValueError, match="T must be"):
        static_explorer_html(image, T=5, t=1)
    with pytest.raises(ValueError, match="beta_end"):
        static_explorer_html(image, beta_end=0.95)


def test_show_static_explorer_displays_the_html(monkeypatch):
    IPython_display = pytest.importorskip("IPython.display")
    shown = []
    monkeypatch.setattr(IPython_display, "display", shown.append)
    assert show_static_explorer(_digit(), kind="cosine", t=10) is None
    assert len(shown) == 1 and isinstance(shown[0], IPython_display.HTML)
    assert 'value="cosine" selected' in shown[0].data


# ---------------------------------------------------------------------------------------------
# In a browser, on a built Jupyter Book page
# ---------------------------------------------------------------------------------------------


def _notebook(cells: list[dict]) -> dict:
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def _html_output_cell(html: str, count: int, tags: tuple[str, ...] = ()) -> dict:
    """An executed code cell whose output is the explorer, as IPython.display.HTML stores it."""
    return {
        "cell_type": "code",
        "execution_count": count,
        "id": f"explorer-{count}",
        "metadata": {"tags": list(tags)},
        "source": ["from ddpm_utils.static_explorer import show_static_explorer\n", "show_static_explorer(image)"],
        "outputs": [
            {
                "output_type": "display_data",
                "metadata": {},
                "data": {"text/html": html, "text/plain": "<IPython.core.display.HTML object>"},
            }
        ],
    }


@pytest.fixture(scope="module")
def tiny_book(tmp_path_factory) -> Path:
    """A one-page book whose notebook shows two explorers; its _build/html.

    The first, linear, sits in a ``full-width`` cell (900 px wide on a desktop screen), the
    second, sigmoid, in a plain cell (scaled down to the theme's column).
    """
    book = tmp_path_factory.mktemp("tiny_book")
    shutil.copy(ROOT / "_config.yml", book / "_config.yml")
    (book / "book").mkdir()
    shutil.copy(ROOT / "book" / "references.bib", book / "book" / "references.bib")
    (book / "_toc.yml").write_text("format: jb-book\nroot: explorer\n")
    def markdown(text: str, n: int) -> dict:
        return {"cell_type": "markdown", "id": f"text-{n}", "metadata": {}, "source": [text]}

    # Sections give the page its "contents" sidebar, as a chapter has; the theme's script for
    # full-width cells expects that sidebar.
    cells = [
        markdown("# Static schedule explorer\n", 1),
        markdown("## Full width\n", 2),
        _html_output_cell(static_explorer_html(_digit(), T=1000, t=250, kind="linear"), 1, ("full-width",)),
        markdown("## In the text column\n", 3),
        _html_output_cell(static_explorer_html(_digit(), T=500, t=100, kind="sigmoid", seed=1), 2),
    ]
    (book / "explorer.ipynb").write_text(json.dumps(_notebook(cells), indent=1))
    build_book([str(book)])
    return book / "_build" / "html"


def _close_to_3_digits(text: str, expected: float) -> bool:
    """``text`` is ``expected`` written to 3 significant digits (float32 vs float64 allowed for)."""
    shown = float(text)
    unit = 10 ** (math.floor(math.log10(abs(expected))) - 2)
    return abs(shown - expected) <= 0.5 * unit + 1e-6 * abs(expected)


class Explorer:
    """One explorer on a page, driven the way a reader drives it."""

    def __init__(self, root):
        self.root = root

    def control(self, role):
        return self.root.locator(f'[data-role="{role}"]')

    def canvas(self) -> str:
        return self.control("canvas").evaluate("c => c.toDataURL()")

    def readout(self) -> str:
        return self.control("ab").inner_text()

    def settings(self) -> tuple[str, int, int, float, float]:
        kind = self.control("kind").input_value()
        T, t = int(self.control("T").input_value()), int(self.control("t").input_value())
        beta1 = 10 ** float(self.control("beta1").input_value())
        betaT = 10 ** float(self.control("betaT").input_value())
        return kind, T, t, beta1, betaT

    def check_readout(self, what: str) -> None:
        """The ᾱ_t readout is what make_schedule gives at the current settings."""
        kind, T, t, beta1, betaT = self.settings()
        params = {"beta_start": beta1, "beta_end": betaT} if kind == "linear" else {}
        expected = make_schedule(kind, T, **params).alpha_bars[t - 1].item()
        shown = self.readout()
        assert _close_to_3_digits(shown, expected), (
            f"after {what}: the page shows ᾱ_t = {shown} for {kind}, T={T}, t={t}, "
            f"but make_schedule gives {expected:.6g}"
        )


# Errors that every Jupyter Book 1 page logs, with or without an explorer; any other one fails.
THEME_ERRORS = (
    # sphinx-thebe's settings script is inlined twice in each page's <head>.
    "Identifier 'THEBE_JS_URL' has already been declared",
    # pydata-sphinx-theme, on a first visit (empty localStorage), before it settles on "auto".
    "Got invalid theme mode: . Resetting to auto.",
)


def _open(page, url: str, base: str) -> list[str]:
    """Load ``url`` with every request off 127.0.0.1 refused; return the list JS errors go to."""
    errors: list[str] = []

    def record(text: str) -> None:
        if any(known in text for known in THEME_ERRORS):
            print(f"ignored, from the theme: {text}")
        else:
            errors.append(text)

    page.on("pageerror", lambda err: record(f"uncaught: {err.stack or err}"))

    def on_console(msg):
        if msg.type != "error":
            return
        # A refused outside request (a CDN the theme names) is not the page's fault.
        outside = msg.text.startswith("Failed to load resource") and not msg.location.get("url", "").startswith(base)
        if not outside:
            record(f"console: {msg.text} ({msg.location.get('url')})")

    page.on("console", on_console)
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(base) else route.abort())
    page.goto(url, wait_until="load")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.ddpm-static-explorer [data-role=ab]')].every(e => e.textContent)",
        timeout=10_000,
    )
    return errors


def _drive(explorer: Explorer, others: list[Explorer]) -> None:
    """Move t, the schedule, T and β₁; after each, the figure and the ᾱ_t readout change as they should."""
    before_others = [(o.canvas(), o.readout()) for o in others]
    explorer.check_readout("loading")
    kind, T, t, _, _ = explorer.settings()
    other_kind = "cosine" if kind != "cosine" else "sigmoid"  # neither is linear

    steps = [
        ("moving t", lambda: explorer.control("t").fill(str(T // 2 + 1 if t <= T // 2 else T // 5 + 1))),
        ("choosing another schedule", lambda: explorer.control("kind").select_option(other_kind)),
        ("moving T", lambda: explorer.control("T").fill(str(max(10, T // 4)))),
        ("choosing the linear schedule", lambda: explorer.control("kind").select_option("linear")),
        ("moving t again", lambda: explorer.control("t").fill("3")),
        ("moving β₁", lambda: explorer.control("beta1").fill("-2")),
    ]
    for what, act in steps:
        canvas, readout = explorer.canvas(), explorer.readout()
        act()
        assert explorer.canvas() != canvas, f"the figure did not change after {what}"
        explorer.check_readout(what)
        if what.startswith("moving t") or "schedule" in what:
            assert explorer.readout() != readout, f"the ᾱ_t readout did not change after {what}"
    _, T, t, _, _ = explorer.settings()
    assert t <= T and explorer.control("t").get_attribute("max") == str(T), "t must stay within 1 … T"
    for other, (canvas, readout) in zip(others, before_others):
        assert (other.canvas(), other.readout()) == (canvas, readout), "moving one explorer changed another"


def _check_page(browser, html_dir: Path, page_path: str, screenshot: Path) -> None:
    """Drive every explorer on the page on a desktop screen, then check the layout on a phone's."""
    ARTIFACTS.mkdir(exist_ok=True)
    with _serve(html_dir) as base:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        try:
            errors = _open(page, f"{base}/{page_path}", base)
            explorers = [Explorer(r) for r in page.locator(".ddpm-static-explorer").all()]
            assert explorers, f"no explorer on {page_path}"
            explorers[0].root.screenshot(path=str(screenshot))  # as a reader first sees it
            for i, explorer in enumerate(explorers):
                _drive(explorer, explorers[:i] + explorers[i + 1 :])
            explorers[0].root.screenshot(path=str(screenshot.with_name(screenshot.stem + "_after.png")))
            print(f"screenshots: {screenshot} (and _after, _narrow)")
            assert not errors, "JavaScript errors on the page:\n" + "\n".join(errors)
        finally:
            page.close()

        # A phone-sized screen: the explorer stays inside the page and scrolls sideways.
        page = browser.new_page(viewport={"width": 400, "height": 800})
        try:
            errors = _open(page, f"{base}/{page_path}", base)
            box = page.locator(".ddpm-static-explorer").first.evaluate(
                """e => ({right: e.getBoundingClientRect().right, inner: innerWidth,
                          page: document.documentElement.scrollWidth, scrolls: e.scrollWidth > e.clientWidth})"""
            )
            assert box["right"] <= box["inner"] + 1, f"on a narrow screen the explorer sticks out of the page: {box}"
            assert box["page"] <= box["inner"] + 1, f"on a narrow screen the page scrolls sideways: {box}"
            assert box["scrolls"], f"on a narrow screen the explorer should scroll sideways: {box}"
            page.locator(".ddpm-static-explorer").first.scroll_into_view_if_needed()
            page.screenshot(path=str(screenshot.with_name(screenshot.stem + "_narrow.png")))
            assert not errors, "JavaScript errors on the page (narrow screen):\n" + "\n".join(errors)
        finally:
            page.close()


def test_explorer_works_on_a_built_book_page_without_a_kernel(browser, tiny_book):
    _check_page(browser, tiny_book, "explorer.html", ARTIFACTS / "static_explorer_tiny_book.png")


def _notebooks_with_explorer() -> list:
    """The notebooks whose code shows a static explorer; a skip that says so where there are none."""
    calls = re.compile(r"\b(show_static_explorer|static_explorer_html)\(")
    found = []
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(notebook.read_text())["cells"]
        if any(calls.search("".join(c["source"])) for c in cells if c["cell_type"] == "code"):
            found.append(pytest.param(notebook, id=notebook.stem))
    if not found:
        reason = "no notebook in notebooks/ calls show_static_explorer yet; this check starts when one does"
        found.append(pytest.param(None, id="none-yet", marks=pytest.mark.skip(reason=reason)))
    return found


@pytest.mark.parametrize("notebook", _notebooks_with_explorer())
def test_explorer_works_on_the_real_book_page(browser, built_book, notebook):
    real_book = built_book
    page_path = notebook.relative_to(ROOT).with_suffix(".html").as_posix()
    page = real_book / page_path
    if not page.exists():
        pytest.fail(f"{notebook.name} shows a static explorer but the book has no page {page_path}: is it in _toc.yml?")
    if 'class="ddpm-static-explorer"' not in page.read_text():
        pytest.fail(
            f"{notebook.name} shows a static explorer but its page {page_path} has none: run the notebook "
            "and commit it with its outputs (the book shows stored outputs; it does not execute notebooks)"
        )
    _check_page(browser, real_book, page_path, ARTIFACTS / f"static_explorer_{notebook.stem}.png")
