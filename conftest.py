"""Repository-wide pytest set-up.

A plain ``pytest`` runs the unit tests in ``tests/`` and, through nbmake, every
notebook in ``notebooks/`` (see ``[tool.pytest.ini_options]`` in pyproject.toml).
Notebooks choose their size from the environment variable ``DDPM_RUN``, and
without it they would pick ``full`` on a GPU machine or ``cpu`` otherwise: a
15- to 20-minute training run per notebook. The tests are meant to run the
``ci`` preset instead, a real but tiny run of about two minutes per notebook.

nbmake starts each notebook's kernel as a child process of pytest, and child
processes inherit pytest's environment, so setting the variable here, when
pytest loads this file and before any kernel starts, is enough. ``setdefault``
keeps an explicit choice: ``DDPM_RUN=cpu pytest notebooks`` still runs the
``cpu`` preset.
"""

import os

import pytest

os.environ.setdefault("DDPM_RUN", "ci")


# Every test belongs to one group, a marker registered in pyproject.toml, so that each group runs
# alone: `pytest -m math`, `-m book`, `-m browser`, `-m benchmark`, `-m notebooks` (README, "Tests").
# The groups are given here, by file, rather than in each file, so that no test goes unmarked: a
# test file missing from this table stops the collection. A test that takes the `browser` fixture
# (headless Chromium, tests/conftest.py) is in `browser` whatever its file says.
TEST_FILE_MARKERS = {
    "tests/test_schedules.py": "math",
    "tests/test_forward.py": "math",
    "tests/test_posterior.py": "math",
    "tests/test_targets.py": "math",
    "tests/test_targets_weights.py": "math",
    "tests/test_losses.py": "math",
    "tests/test_elbo.py": "math",
    "tests/test_timesteps.py": "math",
    "tests/test_oracle.py": "math",
    "tests/test_samplers.py": "math",
    "tests/test_dpm_solver.py": "math",
    "tests/test_sampler_contract.py": "math",
    "tests/test_syncs.py": "math",
    "tests/test_models.py": "math",
    "tests/test_training.py": "math",
    "tests/test_first_ddpm.py": "math",
    "tests/test_guidance.py": "math",
    "tests/test_recipe.py": "math",
    "tests/test_precision.py": "math",
    "tests/test_data.py": "math",
    "tests/test_metrics.py": "math",
    "tests/test_run.py": "math",
    "tests/test_widgets.py": "math",  # ipywidgets objects in Python; no browser
    "tests/test_static_explorer.py": "math",  # JavaScript parity (node) and HTML; its Chromium tests: browser
    "tests/test_book.py": "book",
    "tests/test_site.py": "book",
    "tests/test_pages.py": "browser",
    "tests/test_benchmarks.py": "benchmark",
}


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config, items):
    unlisted = set()
    for item in items:
        path = item.path.relative_to(config.rootpath).as_posix()
        if item.path.suffix == ".ipynb":
            marker = "notebooks"
        elif "browser" in getattr(item, "fixturenames", ()):
            marker = "browser"
        elif path in TEST_FILE_MARKERS:
            marker = TEST_FILE_MARKERS[path]
        else:
            unlisted.add(path)
            continue
        item.add_marker(marker)
    if unlisted:
        raise pytest.UsageError(
            f"{', '.join(sorted(unlisted))}: not in TEST_FILE_MARKERS in conftest.py. Add each test file there "
            "with its group (math, book, browser, benchmark), so that `pytest -m GROUP` runs it."
        )
