"""TransUNet R50-ViT-B/16 with the SyntheX heads: the network of the NMI version of the paper.

The architecture follows TransUNet (Chen et al. 2021, arXiv:2102.04306; the reference code is
``networks/vit_seg_modeling*.py`` of github.com/Beckschen/TransUNet, of which the official SyntheX
code keeps a copy), written here as small plain torch modules:

* **Hybrid encoder, ResNet part** (BiT ResNetV2 as in Google's R50+ViT-B/16): root = weight-
  standardized 7x7/2 convolution, GroupNorm(32), ReLU, then a 3x3/2 max-pool without padding; three
  stages of (3, 4, 9) bottleneck units (1x1, 3x3 with the stride, 1x1; each weight-standardized and
  followed by GroupNorm(32, eps 1e-6); a projection shortcut where the shape changes). The features
  after the root (1/2, 64 channels), stage 1 (1/4, 256) and stage 2 (1/8, 512) are the skips; stage 1
  comes out one pixel short (the unpadded max-pool) and is zero-padded at the bottom and right, as
  the reference does.
* **Hybrid encoder, ViT part**: a 1x1 patch embedding of the 1/16 map (1024 -> 768 channels; grid
  24 x 24 for 384 px), learned position embeddings (no class token), 12 pre-LayerNorm transformer
  layers (hidden 768, 12 heads, MLP 3072 with exact GELU, LayerNorm eps 1e-6, dropout 0.1 on the
  embeddings and in the MLP, none on the attention), a final LayerNorm.
* **Cascaded upsampler**: 3x3 conv to 512 channels, then four blocks (bilinear x2 with aligned
  corners, concatenation with the skip, two conv3x3-BatchNorm-ReLU) with decoder channels
  (256, 128, 64, 16) and skips (512, 256, 64, none) (``n_skip=3``).
* **Heads** as :class:`~synthex_lib.learning.models.multitask.MultiTaskUNet` and the official
  SyntheX code: a 3x3 segmentation convolution, and two bias-free 1x1 convolutions on
  ``[decoder features, segmentation logits]`` giving one heatmap per landmark.

**Input.** ``[B, 1, H, W]`` z-scored X-rays of any size. The network pads them itself, as the paper
does for its 360 px images: each side is reflect-padded (the official code's padding mode)
symmetrically to ``max(img_size, H rounded up to 16)`` (so a 360 x 360 batch is seen as 384 x 384,
12 px on every side; :attr:`TransUNet.input_size`), and the outputs are cropped back to H x W, so the
loss and the metrics see the original pixels only (:meth:`TransUNet.pad_input`; the network proper is
:meth:`TransUNet.forward_padded`). :attr:`TransUNet.size_multiple` is therefore 1: callers need not
pad. The single channel is **repeated to 3 channels** before the first convolution, as the official
code does (summing the pretrained RGB weights of the first convolution is not equivalent here,
because the convolution standardizes its weights over all input channels). Inputs larger than
``img_size`` are padded to the next multiple of 16 and work too, the position embeddings being resized
bilinearly (aligned corners, as ``ndimage.zoom(order=1)`` in the reference) to the input's grid at every
forward pass.

**Output.** ``{"seg_logits": [B, C, H, W], "heatmaps": [B, L, H, W]}``.

**Pretrained weights.** :func:`load_vit_npz` loads Google's ImageNet-21k ``R50+ViT-B_16.npz`` (the
file the TransUNet and SyntheX code use), declared in ``data_manifests/transunet-weights.yaml``, into
the encoder (ResNet and transformer); the decoder and heads start from random weights, as in the
official code. Known differences to the pretraining network (kept because the paper's network has
them): the PyTorch port pads symmetrically where the JAX original pads "SAME", and uses exact GELU
where the original uses the tanh approximation. The reference normalizes the projection shortcut with
``GroupNorm(C, C)`` (one group per channel); ``proj_norm="bit"`` uses the original's GroupNorm(32).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from synthex_lib.core.errors import ConfigError, DataError
from synthex_lib.learning.models.heads import MultiTaskHeads
from synthex_lib.realdata.manifest import dataset_dir

#: The manifest (``data_manifests/<name>.yaml``) declaring the pretrained weights, and its file.
WEIGHTS_DATASET = "transunet-weights"
WEIGHTS_FILE = "R50+ViT-B_16.npz"
WEIGHTS_URL = "https://storage.googleapis.com/vit_models/imagenet21k/R50+ViT-B_16.npz"
#: Total stride of the hybrid encoder: inputs must be multiples of this.
PATCH = 16


class StdConv2d(nn.Conv2d):
    """Convolution with weight standardization (BiT): each filter zero mean, unit variance."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var, mean = torch.var_mean(self.weight, dim=(1, 2, 3), keepdim=True, unbiased=False)
        w = (self.weight - mean) / torch.sqrt(var + 1e-5)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


def _std_conv(cin: int, cout: int, k: int, stride: int = 1) -> StdConv2d:
    return StdConv2d(cin, cout, kernel_size=k, stride=stride, padding=k // 2, bias=False)


def _group_norm(channels: int) -> nn.GroupNorm:
    if channels % 32:
        raise ConfigError(f"parameter 'width': ResNet channels must be multiples of 32 (GroupNorm(32)), got {channels}")
    return nn.GroupNorm(32, channels, eps=1e-6)


class Bottleneck(nn.Module):
    """A ResNetV2 bottleneck unit (conv-GroupNorm-ReLU; the stride on the 3x3). Sub-module names
    are those of the npz (``conv1``, ``gn1``, ..., ``conv_proj``, ``gn_proj``)."""

    def __init__(self, cin: int, cout: int, cmid: int, stride: int = 1, proj_norm: str = "transunet") -> None:
        super().__init__()
        self.conv1, self.gn1 = _std_conv(cin, cmid, 1), _group_norm(cmid)
        self.conv2, self.gn2 = _std_conv(cmid, cmid, 3, stride), _group_norm(cmid)
        self.conv3, self.gn3 = _std_conv(cmid, cout, 1), _group_norm(cout)
        self.conv_proj: nn.Module | None = None
        self.gn_proj: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.conv_proj = _std_conv(cin, cout, 1, stride)
            self.gn_proj = nn.GroupNorm(cout, cout) if proj_norm == "transunet" else _group_norm(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.conv_proj is None else self.gn_proj(self.conv_proj(x))
        y = F.relu(self.gn1(self.conv1(x)))
        y = F.relu(self.gn2(self.conv2(y)))
        return F.relu(residual + self.gn3(self.conv3(y)))


class ResNetV2(nn.Module):
    """The ResNet part of the hybrid encoder: root and three stages (``block1..3`` of ``unit1..n``)."""

    def __init__(self, layers: tuple[int, ...] = (3, 4, 9), width: int = 64, in_channels: int = 3,
                 proj_norm: str = "transunet") -> None:
        super().__init__()
        if len(layers) != 3 or any(n < 1 for n in layers):
            raise ConfigError(f"parameter 'resnet_layers' must be 3 positive unit counts, got {layers!r}")
        self.width = width
        self.conv_root = _std_conv(in_channels, width, 7, 2)
        self.gn_root = _group_norm(width)
        self.body = nn.ModuleDict()
        cin = width
        for i, n in enumerate(layers):
            cout, cmid = width * 4 * 2 ** i, width * 2 ** i
            self.body[f"block{i + 1}"] = nn.ModuleDict({
                f"unit{j + 1}": Bottleneck(cin if j == 0 else cout, cout, cmid, 2 if (i > 0 and j == 0) else 1,
                                           proj_norm)
                for j in range(n)})
            cin = cout
        self.out_channels = cin

    @property
    def skip_channels(self) -> tuple[int, int, int]:
        """Channels of the skips, deepest first: stage 2, stage 1, root."""
        return self.width * 8, self.width * 4, self.width

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h, w = x.shape[-2:]
        x = F.relu(self.gn_root(self.conv_root(x)))
        skips = [x]
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        stages = list(self.body.values())
        for i, stage in enumerate(stages):
            for unit in stage.values():
                x = unit(x)
            if i < len(stages) - 1:
                th, tw = h // (4 * 2 ** i), w // (4 * 2 ** i)
                skips.append(F.pad(x, (0, tw - x.shape[-1], 0, th - x.shape[-2])))
        return x, skips[::-1]


class Attention(nn.Module):
    """Multi-head self-attention with separate query, key, value and output projections (as the npz)."""

    def __init__(self, hidden: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if hidden % heads:
            raise ConfigError(f"parameter 'hidden_size' ({hidden}) must be a multiple of 'num_heads' ({heads})")
        self.heads, self.dropout = heads, dropout
        self.query, self.key, self.value, self.out = (nn.Linear(hidden, hidden) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = (proj(x).view(b, n, self.heads, d // self.heads).transpose(1, 2)
                   for proj in (self.query, self.key, self.value))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, n, d))


class EncoderBlock(nn.Module):
    """A pre-LayerNorm transformer layer: ``x + attn(ln_0(x))``, then ``x + mlp(ln_2(x))``."""

    def __init__(self, hidden: int, heads: int, mlp_dim: int, dropout: float, attention_dropout: float) -> None:
        super().__init__()
        self.ln_attn = nn.LayerNorm(hidden, eps=1e-6)
        self.attn = Attention(hidden, heads, attention_dropout)
        self.ln_mlp = nn.LayerNorm(hidden, eps=1e-6)
        self.fc1, self.fc2 = nn.Linear(hidden, mlp_dim), nn.Linear(mlp_dim, hidden)
        self.drop = nn.Dropout(dropout)
        for fc in (self.fc1, self.fc2):
            nn.init.xavier_uniform_(fc.weight)
            nn.init.normal_(fc.bias, std=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_attn(x))
        return x + self.drop(self.fc2(self.drop(F.gelu(self.fc1(self.ln_mlp(x))))))


def resize_pos_embed(pos: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int]) -> torch.Tensor:
    """Resize ``[1, gh*gw, D]`` position embeddings bilinearly (aligned corners) to another grid."""
    if tuple(old_grid) == tuple(new_grid):
        return pos
    d = pos.shape[-1]
    grid = pos.reshape(1, old_grid[0], old_grid[1], d).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=tuple(new_grid), mode="bilinear", align_corners=True)
    return grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], d)


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DecoderBlock(nn.Module):
    def __init__(self, cin: int, cout: int, skip: int = 0) -> None:
        super().__init__()
        self.conv1, self.conv2 = _conv_bn_relu(cin + skip, cout), _conv_bn_relu(cout, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class TransUNet(nn.Module):
    """TransUNet R50-ViT-B/16 (defaults: the paper's network) with the SyntheX segmentation and landmark heads.

    Args:
        num_classes: segmentation classes (with background).
        num_landmarks: heatmaps.
        img_size: input size the position embeddings are made for (paper: 384, i.e. a 24 x 24 grid);
            smaller inputs are padded to it, larger ones to the next multiple of 16.
        width: channels of the ResNet root (64; stages have 4, 8, 16 times this).
        resnet_layers: bottleneck units per stage, (3, 4, 9) for R50.
        hidden_size, num_layers, num_heads, mlp_dim: the transformer (ViT-B: 768, 12, 12, 3072).
        dropout: on the embeddings and in the MLPs (0.1); ``attention_dropout`` on the attention (0).
        decoder_channels: of the four upsampling blocks, (256, 128, 64, 16).
        head_channels: of the convolution between the transformer and the decoder (512).
        n_skip: skips used, deepest first (3: all).
        proj_norm: ``"transunet"`` (GroupNorm(C, C) on the projection shortcuts, as the reference
            and the official SyntheX code) or ``"bit"`` (GroupNorm(32), as the pretraining network).
    """

    def __init__(self, num_classes: int, num_landmarks: int, *, img_size: int = 384, width: int = 64,
                 resnet_layers: tuple[int, ...] = (3, 4, 9), hidden_size: int = 768, num_layers: int = 12,
                 num_heads: int = 12, mlp_dim: int = 3072, dropout: float = 0.1, attention_dropout: float = 0.0,
                 decoder_channels: tuple[int, ...] = (256, 128, 64, 16), head_channels: int = 512,
                 n_skip: int = 3, proj_norm: str = "transunet") -> None:
        super().__init__()
        if img_size < PATCH or img_size % PATCH:
            raise ConfigError(f"parameter 'img_size' must be a positive multiple of {PATCH}, got {img_size}")
        if len(decoder_channels) != 4:
            raise ConfigError(f"parameter 'decoder_channels' must have 4 entries, got {decoder_channels!r}")
        if not 0 <= n_skip <= 3:
            raise ConfigError(f"parameter 'n_skip' must be 0 to 3, got {n_skip}")
        if proj_norm not in ("transunet", "bit"):
            raise ConfigError(f"parameter 'proj_norm' must be 'transunet' or 'bit', got {proj_norm!r}")
        self.num_classes, self.num_landmarks = num_classes, num_landmarks
        self.img_size, self.n_skip = img_size, n_skip
        self.grid = (img_size // PATCH, img_size // PATCH)
        # encoder: ResNet, patch embedding, position embeddings, transformer
        self.resnet = ResNetV2(tuple(resnet_layers), width, in_channels=3, proj_norm=proj_norm)
        self.patch_embed = nn.Conv2d(self.resnet.out_channels, hidden_size, kernel_size=1)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid[0] * self.grid[1], hidden_size))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.embed_drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(EncoderBlock(hidden_size, num_heads, mlp_dim, dropout, attention_dropout)
                                    for _ in range(num_layers))
        self.encoder_norm = nn.LayerNorm(hidden_size, eps=1e-6)
        # cascaded upsampler
        self.conv_more = _conv_bn_relu(hidden_size, head_channels)
        skips = [*self.resnet.skip_channels[:n_skip], *(0,) * (4 - n_skip)]
        cins = [head_channels, *decoder_channels[:-1]]
        self.decoder = nn.ModuleList(DecoderBlock(ci, co, sk) for ci, co, sk in
                                     zip(cins, decoder_channels, skips, strict=True))
        # SyntheX heads
        self.heads = MultiTaskHeads(decoder_channels[-1], num_classes, num_landmarks)

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this: 1, the network pads its input itself
        (:meth:`pad_input`; the encoder's total stride is :data:`PATCH`)."""
        return 1

    @property
    def input_size(self) -> int:
        """The input size the position embeddings are made for (the paper pads 360 px to 384)."""
        return self.img_size

    def padded_size(self, h: int, w: int) -> tuple[int, int]:
        """The size (px) the encoder sees for an ``h x w`` input: each side at least :attr:`input_size`,
        rounded up to a multiple of :data:`PATCH`."""
        def up(n: int) -> int:
            return max(self.img_size, -(-n // PATCH) * PATCH)
        return up(h), up(w)

    def pad_input(self, image: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
        """Reflect-pad ``[B, C, H, W]`` symmetrically to :meth:`padded_size` (the extra pixel of an odd
        difference at the bottom / right); returns the padded batch and ``(top, left, H, W)`` for the crop.
        Where a pad is wider than the image (reflection impossible) the edge is replicated."""
        h, w = image.shape[-2:]
        th, tw = self.padded_size(h, w)
        top, left = (th - h) // 2, (tw - w) // 2
        pads = (left, tw - w - left, top, th - h - top)
        if any(pads):
            mode = "reflect" if max(pads[:2]) < w and max(pads[2:]) < h else "replicate"
            image = F.pad(image, pads, mode=mode)
        return image, (top, left, h, w)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """``[B, 1, H, W]`` -> outputs ``[B, *, H, W]``: padded as :meth:`pad_input`, run, cropped back."""
        if image.dim() != 4:
            raise ConfigError(f"TransUNet input must be [B, 1, H, W], got shape {tuple(image.shape)}")
        padded, (top, left, h, w) = self.pad_input(image)
        out = self.forward_padded(padded)
        return {k: v[..., top:top + h, left:left + w] for k, v in out.items()}

    def forward_padded(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """The network on an input whose height and width are multiples of :data:`PATCH`."""
        h, w = image.shape[-2:]
        if h % PATCH or w % PATCH:
            raise ConfigError(f"TransUNet input {h} x {w}: height and width must be multiples of {PATCH} "
                              f"(use forward, which pads; the paper pads 360 px to 384)")
        x = image.repeat(1, 3, 1, 1) if image.shape[1] == 1 else image
        x, skips = self.resnet(x)
        x = self.patch_embed(x)
        gh, gw = x.shape[-2:]
        tokens = x.flatten(2).transpose(1, 2) + resize_pos_embed(self.pos_embed, self.grid, (gh, gw))
        tokens = self.embed_drop(tokens)
        for block in self.blocks:
            tokens = block(tokens)
        tokens = self.encoder_norm(tokens)
        x = self.conv_more(tokens.transpose(1, 2).reshape(tokens.shape[0], -1, gh, gw))
        for i, block in enumerate(self.decoder):
            x = block(x, skips[i] if i < self.n_skip else None)
        return self.heads(x)


# --- the official ImageNet-21k weights ------------------------------------------------------------

def default_weights_path() -> Path:
    """Where ``synthex data fetch transunet-weights`` puts the file: ``$SYNTHEX_DATA/real/transunet-weights/``."""
    return dataset_dir(WEIGHTS_DATASET) / WEIGHTS_FILE


def _hwio(a: np.ndarray) -> np.ndarray:
    return a.transpose(3, 2, 0, 1)


def _vit_tensors(model: TransUNet, weights, path: Path) -> dict[str, tuple[str, np.ndarray]]:
    """Map every encoder tensor of ``model`` to ``(npz key, array in the model's layout)``."""

    def get(key: str) -> np.ndarray:
        if key not in weights:
            raise DataError(f"{path}: key {key!r} missing: not the R50+ViT-B_16 npz layout (get {WEIGHTS_URL})")
        return np.asarray(weights[key], dtype=np.float32)

    out: dict[str, tuple[str, np.ndarray]] = {}
    for name, module in model.resnet.named_modules():
        if not name:
            continue
        prefix = name.replace("body.", "").replace(".", "/")
        target = f"resnet.{name}"
        if isinstance(module, StdConv2d):
            out[f"{target}.weight"] = (f"{prefix}/kernel", _hwio(get(f"{prefix}/kernel")))
        elif isinstance(module, nn.GroupNorm):
            out[f"{target}.weight"] = (f"{prefix}/scale", get(f"{prefix}/scale").reshape(-1))
            out[f"{target}.bias"] = (f"{prefix}/bias", get(f"{prefix}/bias").reshape(-1))
    out["patch_embed.weight"] = ("embedding/kernel", _hwio(get("embedding/kernel")))
    out["patch_embed.bias"] = ("embedding/bias", get("embedding/bias"))
    key = "Transformer/posembed_input/pos_embedding"
    pos = get(key)
    pos = pos.reshape(-1, pos.shape[-1])
    n = math.isqrt(pos.shape[0])
    if n * n != pos.shape[0]:  # a class token first: dropped (the segmentation network has none)
        pos = pos[1:]
        n = math.isqrt(pos.shape[0])
    if n * n != pos.shape[0]:
        raise DataError(f"{path}: {key!r} has {pos.shape[0] + 1} tokens, not a square grid plus a class token")
    resized = resize_pos_embed(torch.from_numpy(np.ascontiguousarray(pos))[None], (n, n), model.grid)
    out["pos_embed"] = (key, resized.numpy())
    for i in range(len(model.blocks)):
        root, t = f"Transformer/encoderblock_{i}", f"blocks.{i}"
        attn = f"{root}/MultiHeadDotProductAttention_1"
        for ours, theirs in (("ln_attn", "LayerNorm_0"), ("ln_mlp", "LayerNorm_2")):
            out[f"{t}.{ours}.weight"] = (f"{root}/{theirs}/scale", get(f"{root}/{theirs}/scale"))
            out[f"{t}.{ours}.bias"] = (f"{root}/{theirs}/bias", get(f"{root}/{theirs}/bias"))
        for proj in ("query", "key", "value"):  # kernel [hidden, heads, head_dim], bias [heads, head_dim]
            k = get(f"{attn}/{proj}/kernel")
            out[f"{t}.attn.{proj}.weight"] = (f"{attn}/{proj}/kernel", k.reshape(k.shape[0], -1).T)
            out[f"{t}.attn.{proj}.bias"] = (f"{attn}/{proj}/bias", get(f"{attn}/{proj}/bias").reshape(-1))
        k = get(f"{attn}/out/kernel")  # [heads, head_dim, hidden]
        out[f"{t}.attn.out.weight"] = (f"{attn}/out/kernel", k.reshape(-1, k.shape[-1]).T)
        out[f"{t}.attn.out.bias"] = (f"{attn}/out/bias", get(f"{attn}/out/bias").reshape(-1))
        for ours, theirs in (("fc1", "Dense_0"), ("fc2", "Dense_1")):  # kernel [in, out]
            dense = f"{root}/MlpBlock_3/{theirs}"
            out[f"{t}.{ours}.weight"] = (f"{dense}/kernel", get(f"{dense}/kernel").T)
            out[f"{t}.{ours}.bias"] = (f"{dense}/bias", get(f"{dense}/bias"))
    for ours, theirs in (("weight", "scale"), ("bias", "bias")):
        out[f"encoder_norm.{ours}"] = (f"Transformer/encoder_norm/{theirs}", get(f"Transformer/encoder_norm/{theirs}"))
    return out


def load_vit_npz(model: TransUNet, path: str | os.PathLike[str] | None = None) -> int:
    """Load Google's ImageNet-21k ``R50+ViT-B_16.npz`` into the encoder of ``model``; return the tensors loaded.

    The official layout (Flax names): ``conv_root/kernel``, ``gn_root/{scale,bias}``,
    ``block{1..3}/unit{j}/{conv1..3, conv_proj}/kernel`` and ``{gn1..3, gn_proj}/{scale,bias}``,
    ``embedding/{kernel,bias}``, ``Transformer/posembed_input/pos_embedding`` ``[1, 1 + 14*14, 768]``,
    ``Transformer/encoderblock_{i}/{LayerNorm_0, LayerNorm_2}/{scale,bias}``,
    ``.../MultiHeadDotProductAttention_1/{query,key,value,out}/{kernel,bias}``,
    ``.../MlpBlock_3/{Dense_0,Dense_1}/{kernel,bias}``, ``Transformer/encoder_norm/{scale,bias}``
    (``cls``, ``head``, ``pre_logits`` are ignored). Convolution kernels are HWIO (-> OIHW), dense
    kernels ``[in, out]`` (-> ``[out, in]``), query/key/value kernels ``[hidden, heads, head_dim]``;
    the class token of the position embeddings is dropped and the 14 x 14 grid resized to the model's.
    A model with fewer layers than the file takes the first ones. ``path`` defaults to
    :func:`default_weights_path`; a missing file, a missing key or a shape that does not fit raise
    :class:`DataError` in one line.
    """
    path = Path(path) if path is not None else default_weights_path()
    if not path.is_file():
        raise DataError(f"TransUNet weights {path} not found: run 'synthex data fetch {WEIGHTS_DATASET}', or download "
                        f"{WEIGHTS_URL} and run 'synthex data import {WEIGHTS_DATASET} FILE'")
    try:
        with np.load(path, allow_pickle=False) as weights:
            tensors = _vit_tensors(model, weights, path)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: not a readable npz file ({exc}); delete it and fetch it again") from exc
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, (key, array) in tensors.items():
            param = params[name]
            if tuple(array.shape) != tuple(param.shape):
                raise DataError(f"{path}: {key!r} gives shape {tuple(array.shape)}, the model's {name} is "
                                f"{tuple(param.shape)} (a model built with another configuration?)")
            param.copy_(torch.from_numpy(np.ascontiguousarray(array)))
    return len(tensors)
