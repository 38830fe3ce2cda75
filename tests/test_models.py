"""Tests for ddpm_utils.models: the time embedding, the toy MLP, the DDPM UNet, parameter counts."""

from __future__ import annotations

import math

import pytest
import torch

from ddpm_utils.models import (
    MLPConfig,
    MLPDenoiser,
    TimeEmbedding,
    UNet,
    UNetConfig,
    count_parameters,
    parameter_table,
    sinusoidal_embedding,
)

# Small enough that every UNet test runs in well under a second on 2 CPU cores.
TINY = dict(base_channels=8, channel_mults=(1, 2, 2), num_res_blocks=1, groups=4, num_heads=2)


def tiny_unet(**overrides) -> UNet:
    torch.manual_seed(0)
    return UNet(UNetConfig(**{**TINY, **overrides}))


def perturb_final_conv(model: UNet) -> None:
    """Undo the zero-init of the last conv so that everything upstream can reach the output."""
    with torch.no_grad():
        model.conv_out.weight.normal_(0.0, 0.1)
        model.conv_out.bias.normal_(0.0, 0.1)


def batch(config: UNetConfig, b: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(b, config.in_channels, config.image_size, config.image_size, generator=g)
    t = torch.randint(0, 1000, (b,), generator=g)
    return x, t


# ---------------------------------------------------------------------------------------------------
# Sinusoidal time embedding — Vaswani et al. §3.5, Ho et al. App. B


@pytest.mark.parametrize("dim", [2, 8, 33])
def test_sinusoidal_embedding_shape_and_dtype(dim):
    emb = sinusoidal_embedding(torch.arange(5), dim)
    assert emb.shape == (5, dim)
    assert emb.dtype == torch.float32


def test_sinusoidal_embedding_at_t0_is_sin0_cos1():
    emb = sinusoidal_embedding(torch.zeros(3, dtype=torch.long), 16)
    assert torch.equal(emb[:, :8], torch.zeros(3, 8))
    assert torch.equal(emb[:, 8:], torch.ones(3, 8))


def test_sinusoidal_embedding_matches_hand_computed_values():
    # dim = 4, half = 2: ω = (10000^0, 10000^(-1/2)) = (1, 0.01)
    emb = sinusoidal_embedding(torch.tensor([1, 7]), 4)
    expected = torch.tensor([[math.sin(1), math.sin(0.01), math.cos(1), math.cos(0.01)],
                             [math.sin(7), math.sin(0.07), math.cos(7), math.cos(0.07)]])
    torch.testing.assert_close(emb, expected)


def test_sinusoidal_embedding_odd_dim_pads_a_zero_column():
    t = torch.arange(10)
    emb = sinusoidal_embedding(t, 9)
    assert torch.equal(emb[:, -1], torch.zeros(10))
    torch.testing.assert_close(emb[:, :8], sinusoidal_embedding(t, 8))


def test_sinusoidal_embedding_distinguishes_every_timestep():
    emb = sinusoidal_embedding(torch.arange(1000), 32)  # (1000, 32)
    distances = torch.cdist(emb, emb) + torch.eye(1000) * 1e9
    assert distances.min() > 1e-3


def test_sinusoidal_embedding_bad_input():
    with pytest.raises(ValueError, match=r"shape \(B,\)"):
        sinusoidal_embedding(torch.zeros(4, 1), 8)
    with pytest.raises(ValueError, match="at least 2"):
        sinusoidal_embedding(torch.zeros(4), 1)


def test_time_embedding_shape():
    emb = TimeEmbedding(64, sinusoidal_dim=16)(torch.arange(3))
    assert emb.shape == (3, 64)


# ---------------------------------------------------------------------------------------------------
# MLP denoiser


@pytest.mark.parametrize("data_dim, shape", [(1, (7,)), (1, (7, 1)), (2, (7, 2))])
def test_mlp_output_shape_equals_input_shape(data_dim, shape):
    model = MLPDenoiser(MLPConfig(data_dim=data_dim, hidden=32, depth=2, time_dim=16))
    xt = torch.randn(shape)
    assert model(xt, torch.randint(0, 1000, (7,))).shape == shape
    assert model.config.data_dim == data_dim


def test_mlp_flat_and_column_1d_inputs_agree():
    model = MLPDenoiser(MLPConfig(data_dim=1, hidden=32, depth=2, time_dim=16))
    xt, t = torch.randn(7), torch.arange(7)
    torch.testing.assert_close(model(xt, t), model(xt[:, None], t)[:, 0])


def test_mlp_depends_on_t():
    model = MLPDenoiser(MLPConfig(hidden=32, depth=2, time_dim=16))
    xt = torch.randn(1, 2).expand(2, 2)
    out = model(xt, torch.tensor([0, 500]))
    assert not torch.allclose(out[0], out[1])


@pytest.mark.parametrize(
    "xt, t, match",
    [
        (torch.randn(4, 3), torch.arange(4), r"xt must have shape \(B, 2\) for data_dim=2, got \(4, 3\)"),
        (torch.randn(4), torch.arange(4), r"xt must have shape \(B, 2\)"),
        (torch.randn(4, 2, 1), torch.arange(4), r"xt must have shape"),
        (torch.randn(4, 2), torch.arange(4).float(), "integer timestep indices"),
        (torch.randn(4, 2), torch.arange(4)[:, None], r"t must have shape \(4,\)"),
        (torch.randn(4, 2), torch.arange(3), r"t must have shape \(4,\).*got \(3,\)"),
        (torch.randn(4, 2), 5, "torch.Tensor"),
    ],
)
def test_mlp_bad_input_raises(xt, t, match):
    model = MLPDenoiser(MLPConfig(hidden=16, depth=1, time_dim=8))
    with pytest.raises(ValueError, match=match):
        model(xt, t)


def test_mlp_config_validation():
    with pytest.raises(ValueError, match="depth"):
        MLPConfig(depth=0)
    with pytest.raises(ValueError, match="time_dim"):
        MLPConfig(time_dim=1)


# ---------------------------------------------------------------------------------------------------
# UNet


@pytest.mark.parametrize("image_size, in_channels", [(28, 1), (32, 3)])
@pytest.mark.parametrize("attention", [True, False])
@pytest.mark.parametrize("num_classes", [None, 10])
def test_unet_output_shape_equals_input_shape(image_size, in_channels, attention, num_classes):
    model = tiny_unet(image_size=image_size, in_channels=in_channels, attention=attention,
                      num_classes=num_classes)
    x, t = batch(model.config)
    y = None if num_classes is None else torch.tensor([3, 10])
    assert model(x, t, y).shape == x.shape


def test_unet_other_depths_and_sizes():
    model = tiny_unet(image_size=16, channel_mults=(1, 2, 2, 2))
    x, t = batch(model.config)
    assert model(x, t).shape == x.shape


def test_untrained_unet_predicts_zero():
    model = tiny_unet(num_classes=10)
    x, t = batch(model.config)
    assert torch.equal(model(x, t, torch.tensor([1, 2])), torch.zeros_like(x))


def test_class_label_reaches_the_output():
    model = tiny_unet(num_classes=10)
    perturb_final_conv(model)
    x, t = batch(model.config)
    x, t = x[:1].repeat(2, 1, 1, 1), t[:1].repeat(2)  # the same image and t twice
    out = model(x, t, torch.tensor([3, 5]))
    assert not torch.allclose(out[0], out[1])
    # y=None means "unconditional", i.e. the null label num_classes (classifier-free guidance).
    torch.testing.assert_close(model(x, t), model(x, t, torch.full((2,), 10)))


def test_unet_depends_on_t():
    model = tiny_unet()
    perturb_final_conv(model)
    x, _ = batch(model.config)
    x = x[:1].repeat(2, 1, 1, 1)
    out = model(x, torch.tensor([0, 999]))
    assert not torch.allclose(out[0], out[1])


@pytest.mark.parametrize(
    "x_shape, t, y, match",
    [
        ((2, 3, 28, 28), torch.arange(2), None, r"xt must have shape \(B, 1, 28, 28\), got \(2, 3, 28, 28\)"),
        ((2, 1, 32, 32), torch.arange(2), None, r"xt must have shape \(B, 1, 28, 28\), got \(2, 1, 32, 32\)"),
        ((1, 28, 28), torch.arange(1), None, r"xt must have shape \(B, 1, 28, 28\), got \(1, 28, 28\)"),
        ((2, 1, 28, 28), torch.tensor([0.5, 1.0]), None, "integer timestep indices"),
        ((2, 1, 28, 28), torch.arange(2)[:, None], None, r"t must have shape \(2,\)"),
        ((2, 1, 28, 28), torch.arange(2), torch.arange(2), "unconditional"),
    ],
)
def test_unet_bad_input_raises(x_shape, t, y, match):
    model = tiny_unet()
    with pytest.raises(ValueError, match=match):
        model(torch.randn(x_shape), t, y)


@pytest.mark.parametrize(
    "y, match",
    [
        (torch.tensor([1.0, 2.0]), r"integer labels of shape \(2,\)"),
        (torch.tensor([1]), r"integer labels of shape \(2,\)"),
        (torch.tensor([1, 11]), r"\[0, 10\]"),
        (torch.tensor([-1, 2]), r"\[0, 10\]"),
    ],
)
def test_unet_bad_labels_raise(y, match):
    model = tiny_unet(num_classes=10)
    x, t = batch(model.config)
    with pytest.raises(ValueError, match=match):
        model(x, t, y)


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(image_size=30), "divisible by 2"),
        (dict(groups=5), "divisible by groups=5"),
        (dict(num_heads=3), "num_heads=3"),
        (dict(dropout=1.0), "dropout"),
        (dict(channel_mults=()), "channel_mults"),
        (dict(num_classes=0), "num_classes"),
        (dict(num_res_blocks=0), "num_res_blocks"),
    ],
)
def test_unet_config_validation(overrides, match):
    with pytest.raises(ValueError, match=match):
        UNetConfig(**{**TINY, **overrides})


def test_unet_config_is_frozen_and_hashable():
    config = UNetConfig(channel_mults=[1, 2])  # a list is turned into a tuple
    assert config.channel_mults == (1, 2) and hash(config) == hash(UNetConfig(channel_mults=(1, 2)))
    with pytest.raises(AttributeError):
        config.image_size = 32


def test_unet_runs_in_channels_last():
    model = tiny_unet(image_size=16, in_channels=3, num_classes=10)
    perturb_final_conv(model)
    x, t = batch(model.config)
    y = torch.tensor([0, 7])
    expected = model(x, t, y)
    model = model.to(memory_format=torch.channels_last)
    out = model(x.to(memory_format=torch.channels_last), t, y)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


def test_unet_runs_under_bf16_autocast():
    model = tiny_unet(image_size=16, in_channels=3, num_classes=10)
    perturb_final_conv(model)
    x, t = batch(model.config)
    expected = model(x, t)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, t)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert (out.float() - expected).abs().mean() < 0.05 * expected.abs().mean()
    out.float().square().mean().backward()  # backward through the autocast graph works too


@pytest.mark.parametrize("fp32_on_cpu", [True, False])
def test_unet_attention_precision_under_cpu_bf16_autocast(monkeypatch, fp32_on_cpu):
    """ATTENTION_FP32_ON_CPU: softmax(qkᵀ/√d) v gets fp32 q, k, v inside a bf16 step on a CPU, and
    returns bf16 to the rest of the block; switched off, the attention kernel sees bf16."""
    from ddpm_utils.models import unet as unet_module

    monkeypatch.setattr(unet_module, "ATTENTION_FP32_ON_CPU", fp32_on_cpu)
    seen = []
    kernel = unet_module.F.scaled_dot_product_attention

    def recording(q, k, v):
        seen.append((q.dtype, k.dtype, v.dtype, torch.is_autocast_enabled("cpu")))
        return kernel(q, k, v)

    monkeypatch.setattr(unet_module.F, "scaled_dot_product_attention", recording)
    model = tiny_unet(image_size=16, attention=True)
    perturb_final_conv(model)
    x, t = batch(model.config)
    expected = model(x, t)
    seen.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, t)
    dtype = torch.float32 if fp32_on_cpu else torch.bfloat16
    assert seen and all(s == (dtype, dtype, dtype, not fp32_on_cpu) for s in seen)
    assert torch.isfinite(out).all()
    assert (out.float() - expected).abs().mean() < 0.05 * expected.abs().mean()
    out.float().square().mean().backward()


def test_gradients_reach_every_parameter():
    model = tiny_unet(num_classes=10)
    perturb_final_conv(model)
    x, t = batch(model.config)
    model(x, t, torch.tensor([2, 10])).square().mean().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient for {missing}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


# ---------------------------------------------------------------------------------------------------
# Parameter counts


def test_count_parameters_counts_trainable_scalars():
    model = tiny_unet(num_classes=10)
    by_hand = sum(v.numel() for k, v in model.state_dict().items() if "running" not in k)
    assert count_parameters(model) == by_hand
    model.time_embedding.requires_grad_(False)
    frozen = sum(p.numel() for p in model.time_embedding.parameters())
    assert count_parameters(model) == by_hand - frozen


def test_count_parameters_linear_by_formula():
    assert count_parameters(torch.nn.Linear(3, 5)) == 3 * 5 + 5


def number(line: str) -> int:
    """The last column of a table line, "1,234" → 1234."""
    return int(line.split()[-1].replace(",", ""))


def test_parameter_table_lists_children_and_total():
    model = tiny_unet()
    lines = parameter_table(model).splitlines()  # header, rule, one row per child, rule, total
    rows = {line.split()[0]: number(line) for line in lines[2:-2]}
    assert list(rows) == [name for name, _ in model.named_children()]
    assert lines[-1].startswith("total")
    assert number(lines[-1]) == sum(rows.values()) == sum(p.numel() for p in model.parameters())
