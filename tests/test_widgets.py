"""The schedule explorer draws what its sliders say."""

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from ddpm_utils.widgets import (  # noqa: E402
    EXPLORER_CONTROLS,
    explorer_figure,
    explorer_schedules,
    schedule_explorer,
)


def test_explorer_uses_the_chosen_beta_range_for_the_linear_schedule():
    schedules = explorer_schedules("linear", 200, 1e-3, 0.05)
    assert schedules["linear"].T == 200
    assert schedules["linear"].betas[0].item() == pytest.approx(1e-3)
    assert schedules["linear"].betas[-1].item() == pytest.approx(0.05)


def test_explorer_figure_titles_report_alpha_bar_at_paper_t():
    image, noise = torch.zeros(1, 8, 8), torch.randn(1, 8, 8)
    fig = explorer_figure("cosine", 100, 1e-4, 0.02, 40, image, noise)
    ab = explorer_schedules("cosine", 100, 1e-4, 0.02)["cosine"].alpha_bars[39].item()
    titles = [ax.get_title() for ax in fig.axes]
    assert any(f"{ab:.3g} at t=40" in title for title in titles)
    assert "code index 39" in fig._suptitle.get_text()


def test_explorer_rejects_bad_settings():
    with pytest.raises(ValueError, match="t must lie"):
        explorer_figure("linear", 100, 1e-4, 0.02, 0, torch.zeros(1, 8, 8), torch.zeros(1, 8, 8))
    with pytest.raises(ValueError, match="β range"):
        explorer_schedules("linear", 100, 0.0, 0.02)
    with pytest.raises(ValueError, match="unknown schedule"):
        explorer_schedules("quadratic", 100, 1e-4, 0.02)


def test_explorer_widget_builds_and_reacts_to_t():
    pytest.importorskip("ipywidgets")
    panel = schedule_explorer(torch.zeros(1, 8, 8))
    sliders = [w for box in panel.children[:2] for w in box.children]
    t = next(w for w in sliders if w.description == "t")
    T = next(w for w in sliders if w.description == "T")
    T.value = 100
    assert t.max == 100


def test_explorer_widget_takes_ranges_and_defaults_from_the_one_table():
    """min, max, step and starting value of every control are EXPLORER_CONTROLS's, as the static
    explorer's are (tests/test_static_explorer.py); t ends at the current T."""
    widgets = pytest.importorskip("ipywidgets")
    panel = schedule_explorer(torch.zeros(1, 8, 8))
    controls = {w.description: w for box in panel.children[:2] for w in box.children}
    c = EXPLORER_CONTROLS
    assert controls["schedule"].value == c.kind
    # step None: continuous where a browser's slider allows it; ipywidgets' log slider keeps its own.
    default_step = widgets.FloatLogSlider().step
    sliders = {"T": c.T, "t": c.t, "β₁ (linear)": c.beta_start, "β_T (linear)": c.beta_end}
    for description, slider in sliders.items():
        w = controls[description]
        assert w.min == slider.min, description
        assert w.max == (c.T.default if slider.max is None else slider.max), description
        assert w.step == (default_step if slider.step is None else slider.step), description
        assert w.value == slider.default, description
        assert isinstance(w, widgets.FloatLogSlider) == slider.log10, description
