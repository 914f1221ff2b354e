"""Fused building blocks of the CPU training path: the same mathematics as the MONAI layers, fewer memory passes.

A training step of the CPU profiles' U-Net spends as much time in the element-wise layers (instance
normalization, PReLU) as in the convolutions: each eager operation reads and writes whole feature maps,
and PyTorch's PReLU backward (``aten::_prelu_kernel_backward``) materialises a full-size weight
gradient before reducing it. The autograd functions here compute exactly the functions (and, in exact
arithmetic, the gradients) of

* :func:`prelu`: ``torch.nn.PReLU`` (``y = x`` for ``x > 0``, ``a x`` otherwise; one or per-channel
  ``a``);
* :func:`instance_norm_prelu`: ``InstanceNorm2d(affine=False, track_running_stats=False)`` followed by
  ``PReLU`` (MONAI's ``ADN`` with ordering ``"NDA"`` and no dropout), biased variance as PyTorch;

with the backward pass written as a handful of fused operations. They work for contiguous and
channels-last float tensors ``[B, C, H, W]`` and keep the input's memory format. The
results differ from the unfused layers only by floating-point rounding (tests compare both).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _layout(x: torch.Tensor) -> torch.memory_format:
    """The memory format ``x`` is dense in (channels-last when it is strictly that, else contiguous)."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _flat(x: torch.Tensor) -> torch.Tensor:
    """A flat view of a dense tensor in its own memory order (two tensors of one layout correspond element-wise)."""
    if x.is_contiguous():
        return x.view(-1)
    return x.permute(0, 2, 3, 1).reshape(-1)  # channels-last: a view, no copy


def _prelu_weight_grad(gneg: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """d loss / d a = sum of g * x where x <= 0 (``gneg`` is g there, 0 elsewhere), per channel or in total."""
    if weight.numel() == 1:
        return torch.dot(_flat(gneg), _flat(x)).reshape(weight.shape)
    return (gneg * x).sum(dim=(0, 2, 3)).reshape(weight.shape)


def _channel_weight(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """PReLU weight broadcastable against [B, C, H, W]."""
    return weight.reshape(()) if weight.numel() == 1 else weight.view(1, -1, 1, 1)


def _prelu_input_grad(g: torch.Tensor, x: torch.Tensor, weight: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """(d loss / d x, d loss / d a) of PReLU at ``x`` for the output gradient ``g`` (same layout as ``x``)."""
    gpos = torch.ops.aten.threshold_backward(g, x, 0.0)  # g where x > 0, else 0 (the ReLU backward kernel)
    gneg = g - gpos
    gw = _prelu_weight_grad(gneg, x, weight)
    return torch.addcmul(gpos, gneg, _channel_weight(weight, x)), gw


class _PReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return F.prelu(x, weight)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        x, weight = ctx.saved_tensors
        gx, gw = _prelu_input_grad(g.contiguous(memory_format=_layout(x)), x, weight)
        return gx, gw


class _InstanceNormPReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        b, c, h, w = x.shape
        if _layout(x) is torch.contiguous_format:
            # [B, C, H, W] -> [1, B*C, H, W]: instance statistics are batch statistics of this view, so
            # PyTorch's fused batch-norm kernels (one pass for the statistics, one for the output) apply
            xv = x.contiguous().view(1, b * c, h, w)
            xhat, mean, rstd = torch.native_batch_norm(xv, None, None, None, None, True, 0.0, eps)
            ctx.save_for_backward(xv, xhat, mean, rstd, weight)
            ctx.eps, ctx.native = eps, True
            return F.prelu(xhat.view(b, c, h, w), weight)
        var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=0)
        rstd = torch.rsqrt(var + eps)
        xhat = torch.addcmul(-mean * rstd, x, rstd)  # (x - mean) / std in one pass, the layout of x
        ctx.save_for_backward(xhat, rstd, weight)
        ctx.native = False
        return F.prelu(xhat, weight)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        if ctx.native:
            xv, xhat, mean, rstd, weight = ctx.saved_tensors
            gxh, gw = _prelu_input_grad(g.contiguous(), xhat.view(g.shape), weight)
            gx = torch.ops.aten.native_batch_norm_backward(gxh.view(xv.shape), xv, None, None, None, mean, rstd,
                                                           True, ctx.eps, [True, False, False])[0]
            return gx.view(g.shape), gw, None
        xhat, rstd, weight = ctx.saved_tensors
        gxh, gw = _prelu_input_grad(g.contiguous(memory_format=_layout(xhat)), xhat, weight)
        # instance-norm backward: rstd * (g - mean(g) - xhat * mean(g * xhat)), means over (H, W)
        m1 = gxh.mean(dim=(2, 3), keepdim=True)
        m2 = (gxh * xhat).mean(dim=(2, 3), keepdim=True)
        gx = torch.addcmul(gxh - m1, xhat, -m2).mul_(rstd)
        return gx, gw, None


def prelu(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``torch.nn.functional.prelu`` with a fused backward. x [B, C, H, W]; weight [1] or [C]."""
    return _PReLU.apply(x, weight.to(x.dtype))  # mixed precision: the slope in the activations' dtype


def instance_norm_prelu(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Instance normalization (no affine, biased variance, ``eps``) then PReLU, as one autograd node.

    x [B, C, H, W]; weight [1] or [C] (the PReLU slopes). Same values as
    ``F.prelu(F.instance_norm(x, eps=eps), weight)`` up to rounding."""
    return _InstanceNormPReLU.apply(x, weight.to(x.dtype), eps)
