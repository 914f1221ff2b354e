"""TransUNet R50-ViT-B/16 (network 'transunet'): build, load the official npz layout, train a step, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from synthex_lib.core.errors import ConfigError, DataError
from synthex_lib.learning.losses import multitask_loss
from synthex_lib.learning.models import TransUNet, build_model, default_weights_path, load_vit_npz

# a reduced configuration: ResNet width 32 with (2, 1, 2) units, 2 transformer layers, hidden 64, 4 heads
SMALL = {"width": 32, "resnet_layers": (2, 1, 2), "hidden_size": 64, "num_layers": 2, "num_heads": 4, "mlp_dim": 128,
         "decoder_channels": (32, 16, 16, 16), "head_channels": 32}
ENCODER = ("resnet.", "patch_embed.", "pos_embed", "blocks.", "encoder_norm.")


def official_npz(path, width=32, layers=(2, 1, 2), hidden=64, heads=4, mlp=128, depth=2, grid=14, seed=0):
    """Random weights in the key layout and shapes of Google's R50+ViT-B_16.npz (Flax names, HWIO kernels)."""
    rng = np.random.default_rng(seed)

    def a(*shape):
        return rng.standard_normal(shape).astype(np.float32) * 0.2

    w = {"conv_root/kernel": a(7, 7, 3, width), "gn_root/scale": 1 + a(width), "gn_root/bias": a(width)}
    cin = width
    for b, n in enumerate(layers):
        cout, cmid = width * 4 * 2 ** b, width * 2 ** b
        for u in range(1, n + 1):
            p = f"block{b + 1}/unit{u}/"
            w[p + "conv1/kernel"] = a(1, 1, cin if u == 1 else cout, cmid)
            w[p + "conv2/kernel"] = a(3, 3, cmid, cmid)
            w[p + "conv3/kernel"] = a(1, 1, cmid, cout)
            for g, c in (("gn1", cmid), ("gn2", cmid), ("gn3", cout)):
                w[p + g + "/scale"], w[p + g + "/bias"] = 1 + a(c), a(c)
            if u == 1:
                w[p + "conv_proj/kernel"] = a(1, 1, cin, cout)
                w[p + "gn_proj/scale"], w[p + "gn_proj/bias"] = 1 + a(cout), a(cout)
        cin = cout
    w.update({"embedding/kernel": a(1, 1, cin, hidden), "embedding/bias": a(hidden), "cls": a(1, 1, hidden),
              "Transformer/posembed_input/pos_embedding": a(1, 1 + grid * grid, hidden),
              "Transformer/encoder_norm/scale": 1 + a(hidden), "Transformer/encoder_norm/bias": a(hidden),
              "head/kernel": a(hidden, 5), "head/bias": a(5)})
    for i in range(depth):
        r = f"Transformer/encoderblock_{i}/"
        for ln in ("LayerNorm_0", "LayerNorm_2"):
            w[r + ln + "/scale"], w[r + ln + "/bias"] = 1 + a(hidden), a(hidden)
        att = r + "MultiHeadDotProductAttention_1/"
        for q in ("query", "key", "value"):
            w[att + q + "/kernel"], w[att + q + "/bias"] = a(hidden, heads, hidden // heads), a(heads, hidden // heads)
        w[att + "out/kernel"], w[att + "out/bias"] = a(heads, hidden // heads, hidden), a(hidden)
        w[r + "MlpBlock_3/Dense_0/kernel"], w[r + "MlpBlock_3/Dense_0/bias"] = a(hidden, mlp), a(mlp)
        w[r + "MlpBlock_3/Dense_1/kernel"], w[r + "MlpBlock_3/Dense_1/bias"] = a(mlp, hidden), a(hidden)
    np.savez(path, **w)
    return w


def test_full_size_parameter_count():
    """R50-ViT-B/16 at 384 px: 105,568,631 parameters as the TransUNet reference (7 classes), plus the landmark head."""
    model = TransUNet(7, 14)
    n = sum(p.numel() for p in model.parameters())
    land = (16 + 7) * (14 + 7) + (14 + 7) * 14
    assert n == 105_568_631 + land == 105_569_408
    assert model.grid == (24, 24) and model.pos_embed.shape == (1, 576, 768)
    assert len(model.blocks) == 12 and tuple(model.resnet.body) == ("block1", "block2", "block3")
    assert [len(s) for s in model.resnet.body.values()] == [3, 4, 9]
    assert model.size_multiple == 1 and model.input_size == 384 and model.padded_size(360, 360) == (384, 384)


def test_official_npz_layout_lands_transposed(tmp_path):
    path = tmp_path / "R50+ViT-B_16.npz"
    w = official_npz(path)
    model = TransUNet(7, 14, img_size=224, **SMALL)  # grid 14 x 14: the file's, no resizing
    n = load_vit_npz(model, path)
    assert n == sum(1 for k, _ in model.named_parameters() if k.startswith(ENCODER))  # every encoder tensor
    t = lambda p: p.detach().numpy()  # noqa: E731
    np.testing.assert_array_equal(t(model.resnet.conv_root.weight), w["conv_root/kernel"].transpose(3, 2, 0, 1))
    unit = model.resnet.body["block2"]["unit1"]
    np.testing.assert_array_equal(t(unit.conv2.weight), w["block2/unit1/conv2/kernel"].transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(t(unit.conv_proj.weight), w["block2/unit1/conv_proj/kernel"].transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(t(unit.gn_proj.bias), w["block2/unit1/gn_proj/bias"])
    np.testing.assert_array_equal(t(model.patch_embed.weight), w["embedding/kernel"].transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(t(model.pos_embed), w["Transformer/posembed_input/pos_embedding"][:, 1:])
    r = "Transformer/encoderblock_1/"
    blk = model.blocks[1]
    np.testing.assert_array_equal(t(blk.attn.query.weight),
                                  w[r + "MultiHeadDotProductAttention_1/query/kernel"].reshape(64, 64).T)
    np.testing.assert_array_equal(t(blk.attn.out.weight),
                                  w[r + "MultiHeadDotProductAttention_1/out/kernel"].reshape(64, 64).T)
    np.testing.assert_array_equal(t(blk.fc1.weight), w[r + "MlpBlock_3/Dense_0/kernel"].T)
    np.testing.assert_array_equal(t(blk.ln_mlp.weight), w[r + "LayerNorm_2/scale"])
    np.testing.assert_array_equal(t(model.encoder_norm.bias), w["Transformer/encoder_norm/bias"])

    # the attention computes what Flax's MultiHeadDotProductAttention computes with these kernels
    x = np.random.default_rng(1).standard_normal((5, 64)).astype(np.float32)
    a = r + "MultiHeadDotProductAttention_1/"
    q, k, v = (np.einsum("nd,dhk->nhk", x, w[a + p + "/kernel"]) + w[a + p + "/bias"]
               for p in ("query", "key", "value"))
    logits = np.einsum("qhk,nhk->hqn", q, k) / np.sqrt(16)
    att = np.exp(logits - logits.max(-1, keepdims=True))
    att /= att.sum(-1, keepdims=True)
    expected = np.einsum("hqn,nhd,hdo->qo", att, v, w[a + "out/kernel"]) + w[a + "out/bias"]
    with torch.no_grad():
        got = blk.attn.eval()(torch.from_numpy(x)[None])[0].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_position_embeddings_resized_to_the_input_grid(tmp_path):
    path = tmp_path / "w.npz"
    w = official_npz(path)
    model = TransUNet(7, 14, img_size=64, **SMALL)  # grid 4 x 4: resized from 14 x 14, corners kept
    load_vit_npz(model, path)
    grid = w["Transformer/posembed_input/pos_embedding"][0, 1:].reshape(14, 14, 64)
    ours = model.pos_embed.detach().numpy().reshape(4, 4, 64)
    np.testing.assert_allclose(ours[[0, 0, -1, -1], [0, -1, 0, -1]], grid[[0, 0, -1, -1], [0, -1, 0, -1]], atol=1e-6)
    np.testing.assert_allclose(ours.mean(), grid.mean(), atol=0.05)


def test_one_training_step_on_cpu(tmp_path):
    path = tmp_path / "R50+ViT-B_16.npz"
    official_npz(path)
    torch.manual_seed(0)
    model = build_model(7, 14, network="transunet", weights=path, img_size=64, **SMALL)
    assert isinstance(model, TransUNet)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-4)
    image = torch.randn(2, 1, 64, 64)
    labels = torch.randint(0, 7, (2, 64, 64))
    heat = torch.rand(2, 14, 64, 64)
    visible = torch.ones(2, 14, dtype=torch.bool)
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    model.train()
    out = model(image)
    assert out["seg_logits"].shape == (2, 7, 64, 64) and out["heatmaps"].shape == (2, 14, 64, 64)
    loss, parts = multitask_loss(out, labels, heat, visible)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert np.isfinite(parts["loss"])
    for name in ("resnet.conv_root.weight", "blocks.1.attn.query.weight", "pos_embed", "decoder.3.conv2.0.weight",
                 "heads.land_head.1.weight"):
        assert not torch.equal(before[name], dict(model.named_parameters())[name]), name
    # another multiple of 16, not square: the position embeddings follow the input grid
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(1, 1, 32, 48))
    assert out["seg_logits"].shape == (1, 7, 32, 48) and out["heatmaps"].shape == (1, 14, 32, 48)


def test_absent_weights_stop_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHEX_DATA", str(tmp_path))
    expected = tmp_path / "real" / "transunet-weights" / "R50+ViT-B_16.npz"
    assert default_weights_path() == expected
    with pytest.raises(DataError) as err:
        build_model(7, 14, network="transunet", **SMALL)  # the paper's default: pretrained
    msg = str(err.value)
    assert "\n" not in msg and str(expected) in msg
    assert "synthex data fetch transunet-weights" in msg
    assert "https://storage.googleapis.com/vit_models/imagenet21k/R50+ViT-B_16.npz" in msg
    assert "synthex data import transunet-weights FILE" in msg
    assert isinstance(build_model(7, 14, network="transunet", pretrained=False, **SMALL), TransUNet)


def test_bad_weights_and_parameters_are_named(tmp_path):
    path = tmp_path / "w.npz"
    official_npz(path, hidden=32, heads=4, mlp=64)  # another hidden size
    with pytest.raises(DataError, match=r"w\.npz: 'embedding/kernel' gives shape \(32, 512, 1, 1\)"):
        load_vit_npz(TransUNet(7, 14, img_size=64, **SMALL), path)
    official_npz(path, depth=1)  # one transformer layer in the file, two in the model
    with pytest.raises(DataError, match="'Transformer/encoderblock_1/LayerNorm_0/scale' missing"):
        load_vit_npz(TransUNet(7, 14, img_size=64, **SMALL), path)
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="broken.npz: not a readable npz"):
        load_vit_npz(TransUNet(7, 14, img_size=64, **SMALL), tmp_path / "broken.npz")
    with pytest.raises(ConfigError, match="parameter 'network'"):
        build_model(7, 14, network="vit")
    with pytest.raises(ConfigError, match="no pretrained weights"):
        build_model(7, 14, network="unet", pretrained=True)
    with pytest.raises(ConfigError, match="multiples of 16"):
        TransUNet(7, 14, img_size=64, **SMALL).forward_padded(torch.zeros(1, 1, 40, 40))


def test_360_px_batch_is_padded_to_384_and_cropped_back():
    """The paper's 360 px images: the encoder sees 384 x 384 (12 px reflected on every side), the outputs are
    the 360 x 360 centre of the padded network's outputs."""
    torch.manual_seed(0)
    model = TransUNet(7, 14, img_size=384, **SMALL).eval()
    seen: list[torch.Tensor] = []
    model.resnet.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach().clone()))
    image = torch.randn(1, 1, 360, 360)
    with torch.no_grad():
        out = model(image)
        full = model.forward_padded(F.pad(image, (12, 12, 12, 12), mode="reflect"))
    assert out["seg_logits"].shape == (1, 7, 360, 360) and out["heatmaps"].shape == (1, 14, 360, 360)
    enc = seen[0]
    assert enc.shape == (1, 3, 384, 384)  # 3 channels: the grey image repeated
    assert torch.equal(enc[:, :, 12:372, 12:372], image.expand(1, 3, 360, 360))  # symmetric: 12 px each side
    assert torch.equal(enc[0, 0, 11, 12:372], image[0, 0, 1])  # reflected about the first row (not repeated)
    assert torch.equal(enc[0, 0, 12:372, 383], image[0, 0, :, 347])  # ... and about the last column
    for k in out:
        assert torch.equal(out[k], full[k][..., 12:372, 12:372])
    # an odd difference puts the extra pixel at the bottom / right; a 384 px input is not padded
    padded, (top, left, h, w) = model.pad_input(torch.randn(2, 1, 361, 384))
    assert padded.shape[-2:] == (384, 384) and (top, left, h, w) == (11, 0, 361, 384)
