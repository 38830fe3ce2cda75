"""Denoising networks: time embedding, two toy MLPs, the DDPM UNet, and parameter counts.

Every model is called as ``model(xt, t)`` (the UNet also as ``model(xt, t, y)``), with ``t`` the
integer timestep index of shape ``(B,)``; the prediction has the shape of ``xt``.
"""

from .embedding import TimeEmbedding, sinusoidal_embedding
from .mlp import ConcatMLP, ConcatMLPConfig, MLPConfig, MLPDenoiser
from .summary import count_parameters, parameter_table
from .unet import UNet, UNetConfig

__all__ = [
    "sinusoidal_embedding",
    "TimeEmbedding",
    "ConcatMLPConfig",
    "ConcatMLP",
    "MLPConfig",
    "MLPDenoiser",
    "UNetConfig",
    "UNet",
    "count_parameters",
    "parameter_table",
]
