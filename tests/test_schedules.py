"""Tests of ddpm_utils.schedules: β_t, ᾱ_t and the timestep convention.

Reference values are computed here independently of the package: betas written out by hand
and ᾱ as a running product in a Python loop, in float64.
"""

import dataclasses
import math

import pytest
import torch

from ddpm_utils import Schedule, append_dims, check_timesteps, extract, make_schedule, schedule_from_betas
from reference import betas_from_alpha_bar, cosine_alpha_bar, linear_betas, loop_alpha_bars, sigmoid_alpha_bar


def f64(values):
    return torch.tensor(values, dtype=torch.float64)


def test_linear_schedule_has_ho_defaults_beta_1_1e4_beta_T_0p02_at_T1000():
    """Ho et al. Sec. 4: T = 1000, β_1 = 1e-4 rising linearly to β_T = 0.02."""
    s = make_schedule()
    assert s.kind == "linear" and s.T == 1000
    assert s.betas[0].item() == pytest.approx(1e-4, rel=1e-6)
    assert s.betas[-1].item() == pytest.approx(0.02, rel=1e-6)
    torch.testing.assert_close(s.betas.double(), f64(linear_betas(1000)), rtol=1e-6, atol=0)


@pytest.mark.parametrize("T", [1, 7, 1000])
def test_alpha_bar_is_running_product_of_one_minus_beta_eq_alpha_bar(T):
    """Book Eq. (alpha-bar), Ho et al. Sec. 2: ᾱ_t = ∏_{s=1}^t (1 - β_s), against a Python loop."""
    betas = linear_betas(T) if T > 1 else [0.3]
    s = schedule_from_betas(betas)
    # float32 storage of a float64 value: relative error below 2**-24 ≈ 6e-8.
    torch.testing.assert_close(s.alpha_bars.double(), f64(loop_alpha_bars(betas)), rtol=2e-7, atol=0)
    torch.testing.assert_close(s.alphas.double(), 1 - f64(betas), rtol=2e-7, atol=0)


def test_alpha_bar_running_product_for_random_explicit_betas_eq_alpha_bar():
    """Book Eq. (alpha-bar) for arbitrary betas in (0, 1), including large ones."""
    g = torch.Generator().manual_seed(0)
    betas = (torch.rand(50, generator=g, dtype=torch.float64) * 0.5 + 1e-3).tolist()
    s = schedule_from_betas(betas)
    assert s.kind == "custom"
    torch.testing.assert_close(s.alpha_bars.double(), f64(loop_alpha_bars(betas)), rtol=2e-7, atol=0)


def test_timestep_convention_code_t_is_paper_t_plus_1_single_step_chain():
    """Code index 0 is the paper's t = 1: a T = 1 chain has ᾱ_1 = 1 - β_1 at index 0 and ᾱ_0 = 1."""
    s = schedule_from_betas([0.3])
    assert s.T == 1
    assert s.alpha_bars[0].item() == pytest.approx(0.7, rel=1e-7)
    assert s.alpha_bars_prev[0].item() == 1.0
    assert s.posterior_variance[0].item() == 0.0


def test_timestep_convention_three_steps_by_hand():
    """β = (0.1, 0.2, 0.3): ᾱ = (0.9, 0.72, 0.504) at code 0, 1, 2; ᾱ_{t-1} = (1, 0.9, 0.72)."""
    s = schedule_from_betas([0.1, 0.2, 0.3])
    torch.testing.assert_close(s.alpha_bars, torch.tensor([0.9, 0.72, 0.504]))
    torch.testing.assert_close(s.alpha_bars_prev, torch.tensor([1.0, 0.9, 0.72]))
    torch.testing.assert_close(s.betas, torch.tensor([0.1, 0.2, 0.3]))


def test_alpha_bars_prev_is_alpha_bars_shifted_by_one_with_alpha_bar_0_equal_1():
    """alpha_bars_prev[t] = ᾱ_{t-1} (paper indices): 1 at code 0, then alpha_bars[t-1]."""
    s = make_schedule("cosine", T=100)
    assert s.alpha_bars_prev[0].item() == 1.0
    assert torch.equal(s.alpha_bars_prev[1:], s.alpha_bars[:-1])


def test_cosine_alpha_bar_matches_nichol_dhariwal_f_t_over_f_0_eq17():
    """Nichol & Dhariwal 2021 Eq. 17: ᾱ_t = f(t/T)/f(0), f(τ) = cos²((τ+s)/(1+s) · π/2), s = 0.008.

    The last β is clipped at 0.999 (ᾱ_T would be 0), so the comparison stops before the clip.
    """
    T, s_ = 1000, 0.008
    sched = make_schedule("cosine", T=T)

    def f(tau):
        return math.cos((tau + s_) / (1 + s_) * math.pi / 2) ** 2

    clipped = sched.betas >= 0.999 * (1 - 1e-6)
    assert clipped.sum() == 1 and clipped[-1]  # only the last step hits the clip
    paper = f64([f((t + 1) / T) / f(0.0) for t in range(T - 1)])  # code t is paper t + 1
    torch.testing.assert_close(sched.alpha_bars[:-1].double(), paper, rtol=1e-5, atol=0)
    assert sched.betas.max().item() == pytest.approx(0.999, rel=1e-6)


@pytest.mark.parametrize(
    "T, params",
    [(1000, {}), (1000, dict(start=0.0, end=3.0, tau=0.3)), (50, dict(start=-2.0, end=5.0, tau=0.7, max_beta=0.2))],
    ids=["chen_defaults", "start0_end3_tau0.3", "clip_binds_at_11_steps"],
)
def test_sigmoid_alpha_bar_matches_chen_eq_sigmoid_schedule(T, params):
    """Book Eq. (sigmoid-schedule), Chen 2023 Alg. 1, against scipy's expit in float64.

    Reference: ᾱ(τ) of the equation at τ = t/T, β_t = min(1 - ᾱ(t/T)/ᾱ((t-1)/T), max_beta), and ᾱ_t
    recomputed as the running product of (1 - β) (a Python loop). The formula itself reaches ᾱ(1) = 0,
    so the last β is clipped; in the third case max_beta = 0.2 clips the last 11 steps, and there the
    recomputed ᾱ must leave the formula. float32 storage: rtol 1e-6.
    """
    sched = make_schedule("sigmoid", T=T, **params)
    max_beta = params.get("max_beta", 0.999)
    shape = dict(start=params.get("start", -3.0), end=params.get("end", 3.0), temp=params.get("tau", 1.0))
    formula = [sigmoid_alpha_bar(t / T, **shape) for t in range(T + 1)]  # index = paper t; ᾱ(0) = 1
    assert formula[0] == 1.0 and formula[T] == 0.0
    raw_betas = [1 - formula[t] / formula[t - 1] for t in range(1, T + 1)]
    betas = [min(b, max_beta) for b in raw_betas]
    n_clipped = sum(b > max_beta for b in raw_betas)
    assert n_clipped == (11 if max_beta == 0.2 else 1)

    torch.testing.assert_close(sched.betas.double(), f64(betas), rtol=1e-6, atol=0)
    assert int((sched.betas.double() >= max_beta * (1 - 1e-6)).sum()) == n_clipped
    # ᾱ is ∏(1 - β) of the clipped betas, at every step
    torch.testing.assert_close(sched.alpha_bars.double(), f64(loop_alpha_bars(betas)), rtol=1e-6, atol=0)
    # before the first clip, that product telescopes to the equation itself: ᾱ_t = ᾱ(t/T) (code t = paper t + 1)
    unclipped = T - n_clipped
    torch.testing.assert_close(sched.alpha_bars[:unclipped].double(), f64(formula[1 : unclipped + 1]), rtol=1e-6, atol=0)
    # after it, ᾱ is not the equation (which ends at 0) but the product with the clipped betas
    assert sched.alpha_bars[-1].item() > 0
    assert sched.alpha_bars[-1].item() == pytest.approx((1 - max_beta) * sched.alpha_bars[-2].item(), rel=1e-6)
    if n_clipped > 1:
        assert sched.alpha_bars[-2].item() > 1.5 * formula[T - 1]  # clipping keeps more signal than the formula


def test_snr_crosses_1_after_paper_t_259_for_linear_and_at_paper_t_500_for_sigmoid_eq_snr():
    """Book Eq. (snr) at the crossing SNR = 1, against float64 Python loops.

    Linear (Ho et al., T = 1000): SNR(t=259) = 1.000979 (code 258) and SNR(t=260) = 0.990501 (code
    259), so 259 steps have SNR > 1 (the count the notebook prints). Sigmoid (defaults): ᾱ(1/2) = 1/2
    exactly, so SNR(t=500) = 1 (code 499) to float precision; the steps either side are above and below 1.
    """
    lin = make_schedule("linear", T=1000)
    abar = loop_alpha_bars(linear_betas(1000))
    ref = [a / (1 - a) for a in abar]
    assert ref[258] == pytest.approx(1.000979, abs=1e-6) and ref[259] == pytest.approx(0.990501, abs=1e-6)
    torch.testing.assert_close(lin.snr[257:261].double(), f64(ref[257:261]), rtol=1e-5, atol=0)
    assert lin.snr[258] > 1 > lin.snr[259]
    assert int((lin.snr > 1).sum()) == 259

    sig = make_schedule("sigmoid", T=1000)
    abar = loop_alpha_bars(betas_from_alpha_bar(sigmoid_alpha_bar, 1000))
    assert abar[499] == pytest.approx(0.5, abs=1e-12)
    assert abar[499] / (1 - abar[499]) == pytest.approx(1.0, abs=1e-12)
    assert sig.snr[499].item() == pytest.approx(1.0, abs=1e-6)
    assert abs(sig.log_snr[499].item()) < 1e-6
    assert sig.snr[498] > 1 > sig.snr[500]


@pytest.mark.parametrize("betas", [linear_betas(1000), [0.5, 0.9, 0.999, 0.3]], ids=["linear", "large"])
def test_snr_is_alpha_bar_over_one_minus_alpha_bar_and_log_snr_its_log(betas):
    """SNR_t = ᾱ_t / (1-ᾱ_t) (Kingma et al. 2021), with log SNR accurate at both ends."""
    s = schedule_from_betas(betas)
    abar = f64(loop_alpha_bars(betas))
    snr = abar / (1 - abar)
    torch.testing.assert_close(s.snr.double(), snr, rtol=1e-6, atol=0)
    torch.testing.assert_close(s.log_snr.double(), torch.log(snr), rtol=0, atol=1e-6)
    torch.testing.assert_close(torch.exp(s.log_snr.double()), s.snr.double(), rtol=1e-6, atol=0)


def test_signal_and_noise_scales_are_sqrt_alpha_bar_and_sqrt_one_minus_alpha_bar():
    """√ᾱ_t and √(1-ᾱ_t) of q(x_t | x_0), accurate even where ᾱ_t ≈ 1 (code index 0)."""
    betas = linear_betas(1000)
    s = schedule_from_betas(betas)
    abar = f64(loop_alpha_bars(betas))
    torch.testing.assert_close(s.sqrt_alpha_bars.double(), abar.sqrt(), rtol=2e-7, atol=0)
    torch.testing.assert_close(s.sqrt_one_minus_alpha_bars.double(), (1 - abar).sqrt(), rtol=1e-6, atol=0)
    assert s.sqrt_one_minus_alpha_bars[0].item() == pytest.approx(0.01, rel=1e-6)  # √β_1


@pytest.mark.parametrize("kind", ["linear", "cosine", "sigmoid"])
def test_every_coefficient_is_float32_of_shape_T(kind):
    """Coefficients are built in float64 and stored as float32, one value per timestep."""
    s = make_schedule(kind, T=37)
    tensors = [getattr(s, f.name) for f in dataclasses.fields(s) if f.name not in ("kind", "zero_terminal_snr")]
    assert len(tensors) == 13 and s.zero_terminal_snr is False
    for v in tensors:
        assert v.dtype == torch.float32 and v.shape == (37,)
        assert torch.isfinite(v).all()


def test_to_returns_a_new_schedule_and_leaves_the_original_unchanged():
    s = make_schedule(T=10)
    moved = s.to("cpu")
    assert moved is not s and isinstance(moved, Schedule)
    assert torch.equal(moved.alpha_bars, s.alpha_bars) and moved.kind == s.kind
    meta = s.to("meta")
    assert meta.device.type == "meta" and meta.betas.device.type == "meta"
    assert s.device.type == "cpu"


def test_schedule_is_frozen():
    s = make_schedule(T=10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.betas = torch.zeros(10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.kind = "other"


def test_repr_names_kind_T_and_device():
    text = repr(make_schedule("cosine", T=12))
    assert "cosine" in text and "T=12" in text and "cpu" in text


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(T=0), "T must be an integer of at least 1"),
        (dict(T=-1), "T must be an integer of at least 1"),
        (dict(T=2.5), "T must be an integer of at least 1"),
        (dict(T=True), "T must be an integer of at least 1"),
        (dict(kind="quadratic"), "unknown schedule kind"),
        (dict(kind="linear", T=10, beta_max=0.02), "bad parameters for the 'linear' schedule"),
        (dict(kind="cosine", T=10, beta_start=1e-4), "bad parameters for the 'cosine' schedule"),
        (dict(kind="linear", T=10, beta_end=1.5), r"open interval \(0, 1\)"),
        (dict(kind="linear", T=10, beta_start=0.0), r"open interval \(0, 1\)"),
        (dict(kind="sigmoid", T=10, start=3.0, end=-3.0), "start < end"),
        (dict(kind="sigmoid", T=10, tau=0.0), "tau > 0"),
    ],
)
def test_make_schedule_rejects_bad_input_with_a_message(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_schedule(**kwargs)


@pytest.mark.parametrize(
    "betas, message",
    [
        ([0.1, 0.0, 0.2], r"open interval \(0, 1\)"),
        ([0.1, 1.5], r"open interval \(0, 1\), the last one in \(0, 1\]"),
        ([1.0, 0.1], r"beta = 1 is allowed only at the last step .* code index 0 of 2"),
        ([0.1, 1.0, 0.2], r"beta = 1 is allowed only at the last step .* code index 1 of 3"),
        ([0.1, 1.0, 1.0], r"beta = 1 is allowed only at the last step .* code index 1 of 3"),
        ([0.1, -0.2], r"open interval \(0, 1\)"),
        ([0.1, float("nan")], "finite"),
        ([0.1, float("inf")], "finite"),
        ([[0.1, 0.2], [0.3, 0.4]], "1-D"),
        ([], "non-empty"),
    ],
)
def test_schedule_from_betas_rejects_betas_outside_open_unit_interval(betas, message):
    with pytest.raises(ValueError, match=message):
        schedule_from_betas(betas)


@pytest.mark.parametrize("betas", [[0.1, 1.0], [1.0], [0.1, 0.5, 1.0]])
def test_schedule_from_betas_accepts_beta_1_at_the_last_step_only_eq_zero_snr(betas):
    """β_T = 1 (zero terminal SNR): ᾱ_T = 0 exactly and the flag is set; by hand, β̃_T = (1-ᾱ_{T-1}) · 1 / 1 and
    μ̃_T = √ᾱ_{T-1} x_0 + 0 · x_T; log SNR(T) = -inf and every other coefficient is finite."""
    s = schedule_from_betas(betas)
    ab_prev = loop_alpha_bars(betas)[-2] if len(betas) > 1 else 1.0  # ᾱ_{T-1}, ᾱ_0 = 1
    assert s.zero_terminal_snr and s.alpha_bars[-1].item() == 0.0 and s.snr[-1].item() == 0.0
    assert s.log_snr[-1].item() == -math.inf and s.sqrt_one_minus_alpha_bars[-1].item() == 1.0
    assert s.posterior_variance[-1].item() == pytest.approx(1 - ab_prev, rel=1e-7)
    assert s.posterior_mean_coef_x0[-1].item() == pytest.approx(math.sqrt(ab_prev), rel=1e-7)
    assert s.posterior_mean_coef_xt[-1].item() == 0.0
    for f in dataclasses.fields(s):
        value = getattr(s, f.name)
        if isinstance(value, torch.Tensor):
            assert torch.isfinite(value if f.name != "log_snr" else value[:-1]).all(), f.name
    assert s.to("meta").zero_terminal_snr and not schedule_from_betas([0.1, 0.999]).zero_terminal_snr


def test_check_timesteps_accepts_valid_indices():
    s = make_schedule(T=10)
    check_timesteps(s, torch.tensor([0, 5, 9]), torch.zeros(3, 2))
    check_timesteps(s, torch.tensor([0, 9], dtype=torch.int32))
    check_timesteps(s, torch.zeros(0, dtype=torch.long), torch.zeros(0, 4))


@pytest.mark.parametrize(
    "t, x, message",
    [
        (torch.tensor([0, -1]), None, r"\[0, 9\]"),
        (torch.tensor([0, 10]), None, r"\[0, 9\]"),
        (torch.tensor([1.0, 2.0]), None, "integer"),
        (torch.tensor([True, False]), None, "integer"),
        (torch.tensor([[1, 2]]), None, r"shape \(B,\)"),
        ([1, 2], None, "must be a tensor"),
        (torch.tensor([1, 2, 3]), torch.zeros(2, 5), "one timestep per example"),
        (torch.tensor([1, 2]), torch.zeros(()), "one timestep per example"),
    ],
)
def test_check_timesteps_rejects_bad_t(t, x, message):
    s = make_schedule(T=10)
    with pytest.raises(ValueError, match=message):
        check_timesteps(s, t, x)


def test_check_timesteps_rejects_data_or_t_on_another_device():
    """Nothing moves between devices silently (STYLE §10); `meta` stands in for a GPU on CPU."""
    s = make_schedule(T=10)
    t = torch.tensor([1, 2])
    with pytest.raises(ValueError, match="schedule.to"):
        check_timesteps(s, t, torch.zeros(2, 3, device="meta"))
    with pytest.raises(ValueError, match="schedule.to"):
        check_timesteps(s, t.to("meta"), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="schedule.to"):
        check_timesteps(s.to("meta"), t, torch.zeros(2, 3))


def test_extract_broadcasts_a_per_timestep_coefficient_to_any_rank():
    """One helper serves (B,), (B, D) and (B, C, H, W) data (STYLE §4)."""
    coef = torch.arange(10.0)
    t = torch.tensor([3, 7])
    for shape in [(2,), (2, 5), (2, 3, 4, 4)]:
        x = torch.zeros(shape, dtype=torch.float64)
        out = extract(coef, t, x)
        assert out.shape == (2,) + (1,) * (len(shape) - 1) and out.dtype == torch.float64
        assert out.flatten().tolist() == [3.0, 7.0]
    with pytest.raises(ValueError):
        append_dims(torch.zeros(2, 3), 1)


@pytest.mark.parametrize("index", [-1, 10])
def test_extract_fails_for_an_index_out_of_range_at_either_end(index):
    """check_timesteps reads the range of a CPU t only; elsewhere the gather must fail on its own:
    a -1 must not wrap around to the last coefficient as ``coef[t]`` would."""
    with pytest.raises(RuntimeError, match="out of bounds"):
        extract(torch.arange(10.0), torch.tensor([3, index]), torch.zeros(2, 4))


def test_log_alpha_bar_T_is_minus_sum_beta_minus_half_sum_beta_squared_eq_log_alpha_bar():
    """Book Eq. (log-alpha-bar): log ᾱ_T ≈ -Σβ - ½Σβ², and for Ho et al.'s linear schedule ≈ -10.12.

    The neglected terms are -Σβ³/3 - …, below 3·10⁻³ here; so are the numbers quoted in the chapter
    (Σβ = 10.05, ½Σβ² ≈ 0.07, ᾱ_T ≈ 4.0·10⁻⁵).
    """
    s = make_schedule("linear", T=1000)
    betas = [1e-4 + (0.02 - 1e-4) * i / 999 for i in range(1000)]
    sum_beta, half_sum_beta2 = sum(betas), 0.5 * sum(b * b for b in betas)
    assert sum_beta == pytest.approx(10.05)
    assert half_sum_beta2 == pytest.approx(0.067, abs=0.005)
    log_alpha_bar_T = math.log(s.alpha_bars[-1].item())
    assert abs(log_alpha_bar_T - (-sum_beta - half_sum_beta2)) < 3e-3
    assert s.alpha_bars[-1].item() == pytest.approx(4.0e-5, rel=0.02)


def test_log_alpha_bar_approximation_needs_small_beta_eq_log_alpha_bar():
    """Eq. (log-alpha-bar) drops -Σβ³/3 - Σβ⁴/4 - …, which is small only when every β is small.

    Linear (β ≤ 0.02): the gap to the exact log ᾱ_T is -6.8·10⁻⁴, the first dropped term -Σβ³/3.
    Cosine (T = 1000, β up to 0.999 at the clipped last step): the approximation gives -13.863 against
    the exact -19.836; the last step alone contributes log(0.001) = -6.908 against -0.999 - 0.499.
    Exact values: a float64 loop of log(1 - β) over betas computed here; the package's log ᾱ_T must agree.
    """
    for kind, betas in [("linear", linear_betas(1000)), ("cosine", betas_from_alpha_bar(cosine_alpha_bar, 1000))]:
        exact = sum(math.log1p(-b) for b in betas)
        approx = -sum(betas) - 0.5 * sum(b * b for b in betas)
        assert math.log(make_schedule(kind, T=1000).alpha_bars[-1].item()) == pytest.approx(exact, abs=1e-5)
        package_betas = make_schedule(kind, T=1000).betas.double()
        assert (-package_betas.sum() - 0.5 * (package_betas**2).sum()).item() == pytest.approx(approx, abs=1e-4)
        if kind == "linear":
            assert exact == pytest.approx(-10.1177, abs=1e-4) and approx == pytest.approx(-10.1170, abs=1e-4)
            assert exact - approx == pytest.approx(-sum(b**3 for b in betas) / 3, rel=0.02)
        else:
            assert max(betas) == 0.999 and sum(b > 0.5 for b in betas) == 3
            assert exact == pytest.approx(-19.836, abs=1e-3) and approx == pytest.approx(-13.863, abs=1e-3)
            assert exact - approx < -5
