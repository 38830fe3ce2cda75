"""The built website: every internal link and anchor resolves, and the reader's aids are there."""

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest


class _Links(HTMLParser):
    """Collect the href of every <a> and the id of every element of one page."""

    def __init__(self):
        super().__init__()
        self.hrefs, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href"):
            self.hrefs.append(attrs["href"])


def _parse(page: Path) -> _Links:
    links = _Links()
    links.feed(page.read_text(encoding="utf-8"))
    return links


def _pages(html: Path) -> list[Path]:
    return [p for p in sorted(html.rglob("*.html")) if "_static" not in p.parts and p.name not in ("genindex.html", "search.html")]


def test_every_internal_link_and_anchor_resolves(built_book):
    pages = _pages(built_book)
    assert len(pages) >= 5
    parsed = {page: _parse(page) for page in pages}
    broken = []
    for page, links in parsed.items():
        for href in links.hrefs:
            parts = urlsplit(href)
            if parts.scheme or href.startswith(("mailto:", "//")):
                continue  # external: not checked offline
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if not target.exists():
                broken.append(f"{page.relative_to(built_book)} → {href} (no such file)")
                continue
            if parts.fragment and target.suffix == ".html":
                ids = parsed[target].ids if target in parsed else _parse(target).ids
                if parts.fragment not in ids:
                    broken.append(f"{page.relative_to(built_book)} → {href} (no such anchor)")
    assert not broken, "broken internal links:\n" + "\n".join(broken)


@pytest.mark.parametrize("page", ["book/notation.html", "book/glossary.html", "book/running.html", "book/references.html"])
def test_the_readers_aids_are_built(built_book, page):
    assert (built_book / page).exists()


def test_equations_are_cross_referenced_across_pages(built_book):
    """Chapter 1 refers to the introduction's timestep convention; the notebook to chapter 1's equations."""
    chapter = (built_book / "book" / "01_forward_process.html").read_text(encoding="utf-8")
    notebook = (built_book / "notebooks" / "01_forward_process.html").read_text(encoding="utf-8")
    assert re.search(r'href="intro\.html#equation-timestep-convention"', chapter)
    assert re.search(r'href="\.\./book/01_forward_process\.html#equation-forward-closed-form"', notebook)


def test_every_notebook_page_has_a_colab_launch_button(built_book):
    for page in sorted((built_book / "notebooks").glob("*.html")):
        assert "colab.research.google.com/github/" in page.read_text(encoding="utf-8"), page.name


# Each later chapter: the anchors in earlier chapters it must link to, and the anchors of its own that its notebook
# must link back to.
CHAPTER_LINKS = {
    "00_first_ddpm": ([], ["equation-first-forward", "equation-first-reverse-v", "equation-first-guidance"]),
    "02_elbo": (["01_forward_process.html#equation-forward-reparam"],
                ["equation-kl-weight", "thm-gap-decomposition"]),
    "03_posterior": (["02_elbo.html#equation-reverse-mean-eps", "01_forward_process.html#equation-forward-closed-form"],
                     ["equation-posterior-bayes"]),
    "04_samplers": (["02_elbo.html#equation-score-eps", "01_forward_process.html#equation-forward-closed-form"],
                    ["equation-dpm-2m", "equation-ddim-shrink", "equation-pf-ode-lambda"]),
    "05_targets": (["02_elbo.html#equation-kl-weight-x0", "00_first_ddpm.html#equation-first-reverse-v",
                    "03_posterior.html#equation-reverse-mean-x0"],
                   ["equation-target-weights", "equation-zero-snr", "equation-zero-snr-targets"]),
    "06_guidance": (["02_elbo.html#equation-score-eps"],
                    ["equation-cfg-gauss", "equation-cfg-tilt", "equation-cfg-noised-tilt"]),
}


@pytest.mark.parametrize("name", CHAPTER_LINKS)
def test_chapter_links_back_and_quotes_its_notebook(built_book, name):
    """A chapter refers to earlier chapters' equations and shows numbers pasted from its notebook's run; the notebook
    refers to the chapter's equations and theorems."""
    chapter = (built_book / "book" / f"{name}.html").read_text(encoding="utf-8")
    notebook = (built_book / "notebooks" / f"{name}.html").read_text(encoding="utf-8")
    earlier, own = CHAPTER_LINKS[name]
    for target in earlier:
        assert f'href="{target}"' in chapter, target
    for anchor in own:
        assert f'href="../book/{name}.html#{anchor}"' in notebook, anchor
    pasted = re.findall(r'<span class="pasted-text">([^<]*)</span>', chapter)
    assert len(pasted) >= 10 and all(re.fullmatch(r"-?[\d.,e+-]+", p) for p in pasted), pasted[:12]
