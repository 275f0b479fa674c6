"""Bottleneck adapters for a frozen vision transformer (FashionBLIP-2, FACap paper section 4).

Each adapter maps x -> x + W_u GELU(W_d x) with W_d: width -> width / reduction. One adapter sits
after the MLP of every ViT layer, before the layer's residual sum. W_u starts at zero, so at
initialisation the adapted ViT computes exactly the pretrained function.

The adapters hook onto the layers' MLPs instead of replacing modules: the ViT's parameter names,
and so the loading of its pretrained weights, stay those of transformers.
"""

from __future__ import annotations

from torch import Tensor, nn


class BottleneckAdapter(nn.Module):
    def __init__(self, width: int, reduction: int = 16):
        super().__init__()
        if width % reduction:
            raise ValueError(f"adapter width {width} is not divisible by the reduction factor {reduction}")
        self.down = nn.Linear(width, width // reduction)
        self.up = nn.Linear(width // reduction, width)
        self.activation = nn.GELU()
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.up(self.activation(self.down(x)))

    def after_mlp(self, module: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
        """Forward hook: adapts the MLP's output."""
        return self(output)


class VisionAdapters(nn.Module):
    """One adapter per ViT layer, applied to each layer's ``mlp`` output."""

    def __init__(self, layers: nn.ModuleList, width: int, reduction: int = 16):
        super().__init__()
        self.adapters = nn.ModuleList(BottleneckAdapter(width, reduction) for _ in layers)
        for layer, adapter in zip(layers, self.adapters, strict=True):
            layer.mlp.register_forward_hook(adapter.after_mlp)
