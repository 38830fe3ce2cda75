"""The DDPM UNet of Ho et al. (2020) Appendix B, scaled down for 28×28 and 32×32 images.

``model(xt, t, y=None) -> prediction`` with ``xt`` of shape ``(B, C, H, W)``, ``t`` the integer
timestep index of shape ``(B,)`` and ``y`` optional integer class labels of shape ``(B,)``.

Architecture (Ho et al. App. B, following PixelCNN++): conv in; at each resolution ``num_res_blocks``
residual blocks with the time embedding added inside, then a strided-conv downsample; a middle of
residual block → self-attention → residual block; the mirror-image up path whose blocks take the
matching down-path activation concatenated on the channels; GroupNorm → SiLU → conv out.
Ho et al. put self-attention at 16×16; here it sits at the lowest resolution only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
import torch.nn.functional as F

from .embedding import TimeEmbedding, check_labels, check_timestep_batch


@dataclass(frozen=True)
class UNetConfig:
    """Size of a UNet. The defaults give a ~1.6M-parameter model for 28×28 MNIST."""

    image_size: int = 28  # H = W; must be divisible by 2**(len(channel_mults) - 1)
    in_channels: int = 1  # image channels C (1 for MNIST, 3 for CIFAR-10); the output has as many
    base_channels: int = 32  # channels ch of the first level; also the sinusoidal width (time emb. 4·ch)
    channel_mults: tuple[int, ...] = (1, 2, 2)  # level i has ch·mults[i] channels, at size / 2**i
    num_res_blocks: int = 2  # residual blocks per level on the way down (one more on the way up)
    attention: bool = True  # self-attention at the lowest resolution (its blocks and the middle)
    num_heads: int = 4  # attention heads; must divide the channels of the lowest level
    dropout: float = 0.0  # dropout inside every residual block (Ho et al.: 0.1 on CIFAR-10)
    groups: int = 8  # GroupNorm groups; must divide every channel count
    num_classes: int | None = None  # class conditioning; label num_classes is the null (CFG) label

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel_mults", tuple(self.channel_mults))  # lists → hashable
        if not self.channel_mults or min(self.channel_mults) < 1:
            raise ValueError(f"channel_mults must be positive integers, got {self.channel_mults}")
        for name in ("image_size", "in_channels", "base_channels", "num_res_blocks", "num_heads", "groups"):
            if getattr(self, name) < 1:
                raise ValueError(f"UNetConfig.{name} must be ≥ 1, got {getattr(self, name)}")
        factor = 2 ** (len(self.channel_mults) - 1)
        if self.image_size % factor:
            raise ValueError(f"image_size={self.image_size} must be divisible by 2**(levels-1)={factor} "
                             f"for channel_mults={self.channel_mults}")
        for ch in self.channels:
            if ch % self.groups:
                raise ValueError(f"every channel count {self.channels} must be divisible by groups={self.groups}")
        if self.attention and self.channels[-1] % self.num_heads:
            raise ValueError(f"lowest-level channels {self.channels[-1]} must be divisible by "
                             f"num_heads={self.num_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.num_classes is not None and self.num_classes < 1:
            raise ValueError(f"num_classes must be None or ≥ 1, got {self.num_classes}")

    @property
    def channels(self) -> tuple[int, ...]:
        """Channels of each level: base_channels · channel_mults."""
        return tuple(self.base_channels * m for m in self.channel_mults)


# Under bf16 autocast on a CPU, compute softmax(qkᵀ/√d) v in fp32: one training step of the 4M UNet
# is faster so (the performance page measures both), and the softmax is more accurate. GPUs keep bf16.
ATTENTION_FP32_ON_CPU = True


class SelfAttention(nn.Module):
    """x + W_o · MultiHeadAttention(GroupNorm(x)) over the H·W positions (Ho et al.: 1 head; we use several).

    The projections are linear maps of each position's channel vector (a 1×1 convolution, stored as
    ``nn.Linear``): laid out as (B, H·W, C), q, k and v come out in the layout the fused attention
    kernels take, without a copy.
    """

    def __init__(self, channels: int, num_heads: int, groups: int):
        super().__init__()
        self.num_heads = num_heads
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        h = self.norm(x).flatten(2).transpose(1, 2)  # (B, H·W, C)
        qkv = self.qkv(h).reshape(B, H * W, 3, self.num_heads, C // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, H·W, C/heads)
        if ATTENTION_FP32_ON_CPU and q.device.type == "cpu" and q.dtype == torch.bfloat16:
            # The CPU's bf16 attention backward is slower than its fp32 one (benchmark "Where the time goes")
            with torch.autocast("cpu", enabled=False):
                h = F.scaled_dot_product_attention(q.float(), k.float(), v.float()).to(q.dtype)
        else:
            h = F.scaled_dot_product_attention(q, k, v)  # (B, heads, H·W, C/heads), softmax(qkᵀ/√d) v
        h = self.proj(h.transpose(1, 2).reshape(B, H * W, C))  # (B, H·W, C)
        return x + h.transpose(1, 2).reshape(B, C, H, W)


class ResidualBlock(nn.Module):
    """x ↦ skip(x) + conv(drop(SiLU(GN(conv(SiLU(GN(x))) + W·SiLU(emb))))), optionally then self-attention.

    ``emb`` of shape ``(B, emb_dim)`` is the time embedding (plus the class embedding), projected to
    ``out_ch`` and added to every pixel after the first conv. ``skip`` is a 1×1 conv when the channel
    count changes.
    """

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, groups: int, dropout: float,
                 attention_heads: int = 0):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, kernel_size=3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, kernel_size=1) if in_ch != out_ch else nn.Identity()
        self.attention = SelfAttention(out_ch, attention_heads, groups) if attention_heads else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, out_ch, H, W)
        h = h + self.emb_proj(F.silu(emb))[:, :, None, None]  # same shift for every pixel
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))  # (B, out_ch, H, W)
        return self.attention(self.skip(x) + h)


class Upsample(nn.Module):
    """Nearest-neighbour ×2, then a 3×3 conv: (B, C, H, W) → (B, C, 2H, 2W)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """The DDPM noise-prediction UNet; see the module docstring. The final conv starts at zero."""

    def __init__(self, config: UNetConfig = UNetConfig()):
        super().__init__()
        self.config = c = config
        emb_dim = 4 * c.base_channels
        heads = c.num_heads if c.attention else 0

        def block(in_ch: int, out_ch: int, attn: bool = False) -> ResidualBlock:
            return ResidualBlock(in_ch, out_ch, emb_dim, c.groups, c.dropout, heads if attn else 0)

        self.time_embedding = TimeEmbedding(emb_dim, sinusoidal_dim=c.base_channels)
        # Row num_classes is the null label: "no class", for classifier-free guidance.
        self.class_embedding = nn.Embedding(c.num_classes + 1, emb_dim) if c.num_classes is not None else None
        self.conv_in = nn.Conv2d(c.in_channels, c.base_channels, kernel_size=3, padding=1)

        # Down path: remember the channels of every activation the up path will concatenate.
        lowest = len(c.channels) - 1
        ch, skip_channels = c.base_channels, [c.base_channels]
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        for level, out_ch in enumerate(c.channels):
            blocks = nn.ModuleList()
            for _ in range(c.num_res_blocks):
                blocks.append(block(ch, out_ch, level == lowest))
                ch = out_ch
                skip_channels.append(ch)
            self.down.append(blocks)
            if level != lowest:
                self.downsample.append(nn.Conv2d(ch, ch, kernel_size=3, stride=2, padding=1))
                skip_channels.append(ch)

        self.middle = nn.ModuleList([block(ch, ch, attn=True), block(ch, ch)])  # res → attn → res

        # Up path: num_res_blocks + 1 blocks per level, each eating one skip activation.
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for level, out_ch in reversed(list(enumerate(c.channels))):
            blocks = nn.ModuleList()
            for _ in range(c.num_res_blocks + 1):
                blocks.append(block(ch + skip_channels.pop(), out_ch, level == lowest))
                ch = out_ch
            self.up.append(blocks)
            if level != 0:
                self.upsample.append(Upsample(ch))

        self.norm_out = nn.GroupNorm(c.groups, ch)
        self.conv_out = nn.Conv2d(ch, c.in_channels, kernel_size=3, padding=1)
        nn.init.zeros_(self.conv_out.weight)  # the untrained model predicts 0 everywhere
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, xt: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        c = self.config
        expected = (c.in_channels, c.image_size, c.image_size)
        if xt.ndim != 4 or tuple(xt.shape[1:]) != expected:
            raise ValueError(f"xt must have shape (B, {', '.join(map(str, expected))}), got {tuple(xt.shape)}")
        check_timestep_batch(t, xt.shape[0])
        emb = self.time_embedding(t)  # (B, 4·ch)
        if self.class_embedding is not None:
            emb = emb + self.class_embedding(check_labels(y, xt.shape[0], self.config.num_classes, xt.device))  # (B, 4·ch)
        elif y is not None:
            raise ValueError("y was given but this UNet is unconditional (config.num_classes is None)")

        h = self.conv_in(xt)  # (B, ch, H, W)
        skips = [h]
        for level, blocks in enumerate(self.down):
            for res in blocks:
                h = res(h, emb)
                skips.append(h)
            if level < len(self.downsample):
                h = self.downsample[level](h)  # (B, C, H/2, W/2)
                skips.append(h)

        for res in self.middle:
            h = res(h, emb)

        for level, blocks in enumerate(self.up):
            for res in blocks:
                h = res(torch.cat([h, skips.pop()], dim=1), emb)
            if level < len(self.upsample):
                h = self.upsample[level](h)  # (B, C, 2H, 2W)

        return self.conv_out(F.silu(self.norm_out(h)))  # (B, C_in, H, W)
