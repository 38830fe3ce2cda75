"""precision="auto": the choice on given timings, the candidates per device, the fallbacks, and the
trial inside ``train`` and the samplers. Timings are faked where the test is about the choice;
speed itself is measured in benchmarks/, never asserted here."""

import pytest
import torch

import ddpm_utils as du
import ddpm_utils.precision as precision
from ddpm_utils.models import UNet, UNetConfig
from ddpm_utils.precision import MARGIN, PrecisionModel, candidates, choose, resolve, sampling_precision
from ddpm_utils.samplers import SAMPLERS
from ddpm_utils.training import TrainConfig, forget_precision_choices, train

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def fresh_choices():
    """Every test starts with no earlier "auto" choice in the session."""
    forget_precision_choices()
    yield
    forget_precision_choices()


# --- the choice on fake timings ------------------------------------------------------------------


def test_the_fastest_precision_is_chosen_when_it_beats_fp32_by_more_than_the_margin():
    choice = choose({"fp32": 3.55, "bf16": 2.03})
    assert choice.precision == "bf16" and "1.75×" in str(choice) and "3550.0 ms/step" in str(choice)


def test_a_slower_lower_precision_is_not_chosen():
    # the Intel Xeon of the issue: bf16 matrix products at 0.6× float32's speed
    choice = choose({"fp32": 1.0, "bf16": 1 / 0.6})
    assert choice.precision == "fp32" and "float32 was the fastest" in choice.reason


def test_a_gain_within_the_margin_keeps_fp32():
    assert choose({"fp32": 1.0, "bf16": 1 / (1 + MARGIN / 2)}).precision == "fp32"
    assert choose({"fp32": 1.0, "bf16": 1 / (1 + 2 * MARGIN)}).precision == "bf16"
    assert choose({"fp32": 1.0, "fp16": 0.5}).precision == "fp16"


@pytest.mark.parametrize("seconds", [{}, {"bf16": 1.0}, {"fp32": 0.0, "bf16": 1.0}, {"fp32": 1.0, "bf16": float("nan")}])
def test_choose_refuses_timings_it_cannot_compare(seconds):
    with pytest.raises(ValueError, match="positive timings including fp32"):
        choose(seconds)


# --- candidates and explicit precisions per device ----------------------------------------------


def test_a_cpu_without_bf16_instructions_has_only_fp32_to_time(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert candidates(CPU) == ("fp32",)
    assert resolve("bf16", CPU)[0] == "fp32" and "no bf16 instructions" in resolve("bf16", CPU)[1]
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert candidates(CPU) == ("fp32", "bf16")
    assert resolve("bf16", CPU) == ("bf16", "")


def test_a_gpu_without_bf16_times_fp16_instead(monkeypatch):
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert candidates(cuda) == ("fp32", "fp16")
    with pytest.raises(ValueError, match="no bf16; use precision='fp16'"):
        resolve("bf16", cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert candidates(cuda) == ("fp32", "bf16")


def test_fp16_and_unknown_precisions_are_refused_early():
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        resolve("fp16", CPU)
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig(precision="half")
    with pytest.raises(ValueError, match="auto_trial_steps"):
        TrainConfig(auto_trial_steps=0)


# --- the trial inside train ----------------------------------------------------------------------


def _unet():
    torch.manual_seed(0)
    return UNet(UNetConfig(image_size=8, base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention=False))


IMAGES = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
SCHEDULE = du.make_schedule("linear", T=50)


def test_auto_trains_every_step_and_keeps_the_faster_of_the_timed_precisions(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)  # bf16 autocast runs on any CPU, slowly or not
    result = train(_unet(), SCHEDULE, IMAGES, TrainConfig(steps=12, batch_size=8, check_every=4), progress=False)
    assert len(result.losses) == 12 and torch.isfinite(result.losses).all()  # the trial steps are training steps
    assert result.precision in ("fp32", "bf16")
    assert "fp32" in result.precision_note and "bf16" in result.precision_note and "ms/step" in result.precision_note


def test_auto_follows_the_timings_it_measures(monkeypatch):
    # a clock under the test's control: every bf16 step "takes" 1 s, every fp32 step 3 s
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    import ddpm_utils.training as training

    clock = {"now": 0.0}
    real_autocast = training.autocast

    def slow_autocast(device, p):
        clock["now"] += 1.0 if p == "bf16" else 3.0
        return real_autocast(device, p)

    monkeypatch.setattr(training, "autocast", slow_autocast)
    monkeypatch.setattr(training.time, "perf_counter", lambda: clock["now"])
    result = train(_unet(), SCHEDULE, IMAGES, TrainConfig(steps=10, batch_size=8), progress=False)
    assert result.precision == "bf16" and "3.00× float32's speed" in result.precision_note


def test_auto_is_not_fooled_by_slow_first_steps(monkeypatch):
    # the first four steps of a run take 2 s longer whatever their precision (caches and buffers
    # being set up); after them fp32 takes 1.03 s and bf16 1.00 s, within the 5 % margin. Timing
    # one candidate's steps after the other's would charge the cold steps to fp32 alone.
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    import ddpm_utils.training as training

    clock = {"now": 0.0, "steps": 0}
    real_autocast = training.autocast

    def cold_then_steady(device, p):
        clock["now"] += (1.00 if p == "bf16" else 1.03) + (2.0 if clock["steps"] < 4 else 0.0)
        clock["steps"] += 1
        return real_autocast(device, p)

    monkeypatch.setattr(training, "autocast", cold_then_steady)
    monkeypatch.setattr(training.time, "perf_counter", lambda: clock["now"])
    result = train(_unet(), SCHEDULE, IMAGES, TrainConfig(steps=10, batch_size=8), progress=False)
    assert result.precision == "fp32" and "within the 5% margin" in result.precision_note


def test_auto_reuses_its_choice_for_the_same_model_and_batch(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    import ddpm_utils.training as training

    seen = []
    real_autocast = training.autocast

    def recording(device, p):
        seen.append(p)
        return real_autocast(device, p)

    monkeypatch.setattr(training, "autocast", recording)
    first = train(_unet(), SCHEDULE, IMAGES, TrainConfig(steps=12, batch_size=8), progress=False)
    assert seen[:8] == ["fp32", "bf16"] * 4  # the trial: a warm-up round, then three alternating timed rounds
    seen.clear()
    again = train(_unet(), SCHEDULE, IMAGES, TrainConfig(steps=12, batch_size=8, seed=1), progress=False)
    assert seen == [first.precision] * 12 and again.precision == first.precision
    assert "earlier run" in again.precision_note
    seen.clear()
    other_batch = train(_unet(), SCHEDULE, IMAGES, TrainConfig(steps=12, batch_size=4), progress=False)
    assert seen[:8] == ["fp32", "bf16"] * 4 and "earlier run" not in other_batch.precision_note


def test_auto_without_enough_steps_or_candidates_trains_in_fp32(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    short = train(_unet(), SCHEDULE, IMAGES, TrainConfig(steps=8, batch_size=8), progress=False)
    assert short.precision == "fp32" and "too few to time" in short.precision_note
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    single = train(_unet(), SCHEDULE, IMAGES, TrainConfig(steps=12, batch_size=8), progress=False)
    assert single.precision == "fp32" and "no bf16 instructions" in single.precision_note
    explicit = train(_unet(), SCHEDULE, IMAGES, TrainConfig(steps=12, batch_size=8, precision="fp32"), progress=False)
    assert torch.equal(single.losses, explicit.losses)  # nothing was timed: the same run as fp32


# --- samplers ------------------------------------------------------------------------------------


class Recording(torch.nn.Module):
    """ε̂ = x_t / 2 through one linear layer, recording the autocast state of each call."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 2)
        with torch.no_grad():
            self.lin.weight.copy_(torch.eye(2) / 2)
            self.lin.bias.zero_()
        self.dtypes, self.inference = [], []

    def forward(self, xt, t):
        out = self.lin(xt)
        self.dtypes.append(out.dtype)
        self.inference.append(torch.is_inference_mode_enabled())
        return out


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_samplers_run_the_model_in_the_asked_precision_and_return_float32_samples(name, monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    model = Recording()
    xT = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    fp32 = SAMPLERS[name](model, SCHEDULE, xT, steps=5, generator=torch.Generator().manual_seed(1))
    assert set(model.dtypes) == {torch.float32} and fp32.dtype == torch.float32
    model.dtypes.clear()
    bf16 = SAMPLERS[name](model, SCHEDULE, xT, steps=5, precision="bf16", generator=torch.Generator().manual_seed(1))
    assert set(model.dtypes) == {torch.bfloat16} and bf16.dtype == torch.float32
    assert (bf16 - fp32).abs().max() < 0.05 and not torch.equal(bf16, fp32)
    assert all(model.inference) and not fp32.is_inference()  # the loop in inference mode, an ordinary result
    fp32.clamp_(-1, 1)  # which later code may modify in place
    with pytest.raises(ValueError, match="precision must be one of"):
        SAMPLERS[name](model, SCHEDULE, xT, steps=5, precision="half")


def test_sampling_auto_times_the_first_call_without_moving_x_T(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(precision, "time_calls", lambda fn, device, options, repeats=3: {"fp32": 2.0, "bf16": 1.0})
    model = Recording()
    xT = torch.randn(4, 2)
    before = xT.clone()
    wrapped, choice = sampling_precision(model, "auto", xT, 49)
    assert choice.precision == "bf16" and isinstance(wrapped, PrecisionModel) and torch.equal(xT, before)
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    forget_precision_choices()
    unwrapped, choice = sampling_precision(model, "auto", xT, 49)
    assert unwrapped is model and choice.precision == "fp32"


def test_sampling_auto_times_once_per_network_and_batch_shape(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    timed = []

    def fake_time_calls(fn, device, options, repeats=3):
        timed.append(options)
        return {"fp32": 2.0, "bf16": 1.0}

    monkeypatch.setattr(precision, "time_calls", fake_time_calls)
    model = Recording()
    first = sampling_precision(model, "auto", torch.randn(4, 2), 49)[1]
    again = sampling_precision(model, "auto", torch.randn(4, 2), 10)[1]
    assert len(timed) == 1 and again.precision == first.precision == "bf16" and "earlier" in again.reason
    sampling_precision(model, "auto", torch.randn(8, 2), 49)  # another batch shape: timed again
    assert len(timed) == 2


def test_time_calls_warms_every_candidate_then_alternates_and_keeps_each_fastest_call(monkeypatch):
    clock = {"now": 0.0}
    order = []
    cost = iter([9.0, 9.0, 3.0, 2.0, 1.5, 2.5, 2.0, 1.0])  # warm-ups first (untimed), then fp32/bf16 in turns
    real_autocast = precision.autocast

    def recording(device, p):
        order.append(p)
        return real_autocast(device, p)

    def call():
        clock["now"] += next(cost)

    monkeypatch.setattr(precision, "autocast", recording)
    monkeypatch.setattr(precision.time, "perf_counter", lambda: clock["now"])
    seconds = precision.time_calls(call, torch.device("cpu"), ("fp32", "bf16"), repeats=3)
    assert order == ["fp32", "bf16", "fp32", "bf16", "fp32", "bf16", "fp32", "bf16"]
    assert seconds == {"fp32": 1.5, "bf16": 1.0}
