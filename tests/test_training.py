"""The training loop (Ho et al. Algorithm 1), EMA and checkpoints."""

import pytest
import torch

import ddpm_utils as du
from ddpm_utils.models import MLPConfig, MLPDenoiser, UNet, UNetConfig
from ddpm_utils.training import EMA, TrainConfig, load_checkpoint, loss_per_timestep, save_checkpoint, train


def _toy(seed=0, n=512):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed)) * 0.5


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    return MLPDenoiser(MLPConfig(data_dim=2, hidden=32, depth=2, time_dim=16, **kw))


def test_training_lowers_the_simple_loss_algorithm_1():
    """A few hundred steps of Algorithm 1 lower L_simple on held-out data."""
    schedule = du.make_schedule("linear", T=100)
    data, held_out = _toy(0), _toy(1, 256)
    model = _model()
    ts = torch.arange(0, 100, 10)
    before = loss_per_timestep(model, schedule, held_out, ts, generator=torch.Generator().manual_seed(2)).mean()
    result = train(model, schedule, data, TrainConfig(steps=300, batch_size=64, lr=2e-3), progress=False)
    after = loss_per_timestep(result.ema_model, schedule, held_out, ts, generator=torch.Generator().manual_seed(2)).mean()
    assert after < 0.8 * before
    assert result.losses.shape == (300,) and torch.isfinite(result.losses).all()


def test_training_is_deterministic_on_cpu_for_a_seed():
    schedule = du.make_schedule("linear", T=50)
    config = TrainConfig(steps=20, batch_size=32, seed=7, precision="fp32")  # "auto" repeats only in its choice
    runs = [train(_model(), schedule, _toy(), config, progress=False) for _ in range(2)]
    assert torch.equal(runs[0].losses, runs[1].losses)
    for a, b in zip(runs[0].ema_model.parameters(), runs[1].ema_model.parameters()):
        assert torch.equal(a, b)
    other = train(_model(), schedule, _toy(), TrainConfig(steps=20, batch_size=32, seed=8, precision="fp32"), progress=False)
    assert not torch.equal(runs[0].losses, other.losses)


def test_ema_is_the_moving_average_of_the_weights():
    """After one update with decay d (ramped: min(d, 2/11)), θ̄ = θ̄₀ + (1 - d)(θ - θ̄₀)."""
    model = _model()
    ema = EMA(model, decay=0.9)
    before = [p.clone() for p in ema.model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)
    d = min(0.9, 2 / 11)
    for p0, p_ema, p in zip(before, ema.model.parameters(), model.parameters()):
        torch.testing.assert_close(p_ema, p0 + (1 - d) * (p - p0))
    assert not any(p.requires_grad for p in ema.model.parameters())


def test_loss_per_t_is_recorded_for_every_timestep():
    schedule = du.make_schedule("linear", T=10)
    result = train(_model(), schedule, _toy(), TrainConfig(steps=50, batch_size=64, record_loss_per_t=True), progress=False)
    assert result.loss_per_t.shape == (10,) and (result.loss_per_t > 0).all()


def test_non_finite_loss_stops_training_naming_the_step():
    schedule = du.make_schedule("linear", T=10)
    data = _toy()
    data[:] = float("nan")
    with pytest.raises(FloatingPointError, match="at step 0"):
        train(_model(), schedule, data, TrainConfig(steps=10, batch_size=8, check_every=5), progress=False)


def test_class_conditional_training_with_label_dropout():
    schedule = du.make_schedule("linear", T=20)
    torch.manual_seed(0)
    model = UNet(UNetConfig(image_size=8, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                            attention=False, num_heads=1, groups=4, num_classes=3))
    images = torch.rand(16, 1, 8, 8) * 2 - 1
    labels = torch.randint(0, 3, (16,))
    result = train(model, schedule, images, TrainConfig(steps=3, batch_size=4, p_uncond=0.5), labels=labels, progress=False)
    assert torch.isfinite(result.losses).all()
    with pytest.raises(ValueError, match="class-conditional"):
        train(model, schedule, images, TrainConfig(steps=1), progress=False)


def test_bad_training_inputs_raise():
    schedule = du.make_schedule("linear", T=10)
    with pytest.raises(ValueError, match="target"):
        TrainConfig(target="score")
    with pytest.raises(ValueError, match="ema_decay"):
        TrainConfig(ema_decay=1.0)
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="labels"):
        train(_model(), schedule, _toy(), TrainConfig(steps=1), labels=torch.zeros(3, dtype=torch.long), progress=False)
    with pytest.raises(ValueError, match="schedule is on"):
        train(_model(), schedule.to("meta"), _toy(), TrainConfig(steps=1), progress=False)


def test_checkpoint_round_trip_loads_with_weights_only(tmp_path):
    schedule = du.make_schedule("cosine", T=30)
    model = _model(1)
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, schedule, TrainConfig(steps=5))
    torch.load(path, weights_only=True)  # nothing but tensors and plain containers
    fresh = _model(2)
    loaded_schedule = load_checkpoint(path, fresh, schedule)
    for a, b in zip(model.parameters(), fresh.parameters()):
        assert torch.equal(a, b)
    assert loaded_schedule.kind == "cosine" and torch.equal(loaded_schedule.betas, schedule.betas)


def test_checkpoint_from_another_configuration_raises(tmp_path):
    schedule = du.make_schedule("linear", T=30)
    path = tmp_path / "model.pt"
    save_checkpoint(path, _model(), schedule)
    torch.manual_seed(0)
    wider = MLPDenoiser(MLPConfig(data_dim=2, hidden=64, depth=2, time_dim=16))
    with pytest.raises(ValueError, match="hidden: saved 32, model 64"):
        load_checkpoint(path, wider)
    with pytest.raises(ValueError, match="trained with"):
        load_checkpoint(path, _model(), du.make_schedule("linear", T=40))
    unet = UNet(UNetConfig(image_size=8, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                           attention=False, num_heads=1, groups=4))
    with pytest.raises(ValueError, match="holds a MLPDenoiser"):
        load_checkpoint(path, unet)


def _tiny_unet_run(**config):
    """Three steps of a tiny UNet on random 8×8 images; returns the TrainResult."""
    torch.manual_seed(0)
    model = UNet(UNetConfig(image_size=8, base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention=False))
    images = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    return train(model, du.make_schedule("linear", T=50), images,
                 TrainConfig(steps=3, batch_size=8, check_every=1, **config), progress=False)


def test_bf16_autocasts_the_forward_pass_and_keeps_float32_weights(monkeypatch):
    """bf16 changes the arithmetic (losses differ slightly) but not the stored weights."""
    import ddpm_utils.precision as precision

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    fp32, bf16 = _tiny_unet_run(precision="fp32"), _tiny_unet_run(precision="bf16")
    assert bf16.precision == "bf16" and fp32.precision == "fp32"
    assert not torch.equal(fp32.losses, bf16.losses)
    torch.testing.assert_close(bf16.losses, fp32.losses, rtol=0.05, atol=0.0)
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())
    assert all(p.dtype == torch.float32 for p in bf16.ema_model.parameters())


def test_bf16_without_bf16_instructions_warns_and_trains_in_float32(monkeypatch):
    import ddpm_utils.precision as precision

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(UserWarning, match="no bf16 instructions"):
        fallback = _tiny_unet_run(precision="bf16")
    assert fallback.precision == "fp32"
    assert torch.equal(fallback.losses, _tiny_unet_run(precision="fp32").losses)


def test_channels_last_trains_the_same_model():
    """NHWC storage is a layout change only: the same losses up to round-off, NHWC weights."""
    nchw, nhwc = _tiny_unet_run(), _tiny_unet_run(channels_last=True)
    torch.testing.assert_close(nhwc.losses, nchw.losses, rtol=1e-4, atol=1e-6)
    conv_weight = nhwc.model.conv_in.weight
    assert conv_weight.is_contiguous(memory_format=torch.channels_last)


def test_channels_last_refuses_data_that_are_not_images():
    with pytest.raises(ValueError, match="channels_last needs image data"):
        train(_model(), du.make_schedule("linear", T=10), _toy(), TrainConfig(steps=1, channels_last=True), progress=False)


def test_timeline_marks_every_loss_check():
    schedule = du.make_schedule("linear", T=10)
    result = train(_model(), schedule, _toy(), TrainConfig(steps=10, batch_size=16, check_every=4), progress=False)
    assert [steps for steps, _ in result.timeline] == [4, 8, 10]
    seconds = [s for _, s in result.timeline]
    assert seconds == sorted(seconds) and 0 < seconds[-1] <= result.seconds


def _eight_bit(seed=0, n=512):
    """2-D points on the 8-bit grid of [-1, 1], as the discretised decoder of the "vlb" loss expects."""
    x = (torch.randn(n, 2, generator=torch.Generator().manual_seed(seed)) * 0.4).clamp(-1, 1)
    return torch.round((x + 1) * 127.5) / 127.5 - 1


@pytest.mark.parametrize("t_sampling", ["uniform", "importance"])
def test_training_on_the_bound_lowers_the_bound(t_sampling):
    """loss="vlb" (with either t sampling) lowers the full bound of nll_bits_per_dim on held-out points,
    and its recorded batch losses estimate the bound minus L_T on the same scale (bits/dim)."""
    schedule = du.make_schedule("linear", T=50)
    data, held_out = _eight_bit(0), _eight_bit(1, 256)
    model = _model()
    before = du.nll_bits_per_dim(model, schedule, held_out, generator=torch.Generator().manual_seed(3)).total.mean()
    config = TrainConfig(steps=400, batch_size=128, lr=2e-3, loss="vlb", t_sampling=t_sampling)
    result = train(model, schedule, data, config, progress=False)
    after = du.nll_bits_per_dim(result.ema_model, schedule, held_out, generator=torch.Generator().manual_seed(3))
    assert after.total.mean() < before - 0.5, (before, after.total.mean())
    recent = result.losses[-100:].mean()
    assert abs(recent - (after.total - after.prior).mean()) < 0.5 * after.total.mean(), (recent, after.total.mean())
    if t_sampling == "importance":
        p = result.t_probabilities
        assert p.shape == (50,) and abs(p.sum() - 1) < 1e-5
        assert p.max() / p.min() > 5  # learned: the bound's terms differ by orders of magnitude across t
    else:
        assert result.t_probabilities is None


def test_importance_sampling_with_the_simple_loss_keeps_its_expectation():
    """Importance-sampled t reweighted by 1/(T p_t): the recorded loss still estimates the mean over t of the
    simple loss, measured on the trained model with every t."""
    schedule = du.make_schedule("linear", T=40)
    config = TrainConfig(steps=300, batch_size=128, lr=2e-3, t_sampling="importance", ema_decay=0.0)
    result = train(_model(), schedule, _toy(), config, progress=False)
    per_t = loss_per_timestep(result.model, schedule, _toy(), torch.arange(40), generator=torch.Generator().manual_seed(4))
    assert abs(result.losses[-100:].mean() - per_t.mean()) < 0.15 * per_t.mean()


def test_bad_loss_or_t_sampling_raise():
    for kwargs in (dict(loss="l2"), dict(t_sampling="stratified"), dict(variance="learned")):
        with pytest.raises(ValueError, match="loss must be one of"):
            TrainConfig(**kwargs)
