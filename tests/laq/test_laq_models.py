"""Model shapes, the paper-size parameter count on the meta device, exactness of the fast attention / position
bias against the reference formulas, and NSVQ replacement."""
import math

import pytest
import torch
import torch.nn.functional as F

from laq.models import LAQConfig, LatentActionQuantization
from laq.models.attention import Attention, ContinuousPositionBias
from laq.models.nsvq import NSVQ, should_replace

TINY = dict(image_size=32, patch_size=4, dim=32, heads=2, dim_head=16, spatial_depth=1, temporal_depth=1,
            codebook_size=8, code_seq_len=4, quant_dim=8)


def test_laq_lapa_parameter_count_on_meta():
    with torch.device("meta"):
        model = LatentActionQuantization(LAQConfig())
    assert sum(p.numel() for p in model.parameters()) == 343_796_080
    counts = {name: sum(p.numel() for p in child.parameters()) for name, child in model.named_children()}
    assert counts["spatial_rel_pos_bias"] == 1_069_072 and counts["vq"] == 85_344
    assert counts["enc_spatial_transformer"] == counts["enc_temporal_transformer"]


def test_forward_shapes_and_backward():
    torch.manual_seed(0)
    model = LatentActionQuantization(LAQConfig(**TINY))
    first, future = torch.rand(3, 3, 32, 32), torch.rand(3, 3, 32, 32)
    out = model(first, future)
    assert out["recon"].shape == (3, 3, 32, 32) and out["indices"].shape == (3, 4)
    assert out["indices"].dtype == torch.int64 and int(out["indices"].max()) < 8 and out["loss"].ndim == 0
    out["loss"].backward()
    assert model.vq.codebooks.grad is not None and model.vq.codebooks.grad.abs().sum() > 0  # via the residual norm
    assert model.patch_embed.proj.weight.grad.abs().sum() > 0
    assert int(model.vq.hits.sum()) == 12 and int(model.vq.window_batch) == 3


def test_eval_mode_is_deterministic_and_uses_hard_codes():
    torch.manual_seed(0)
    model = LatentActionQuantization(LAQConfig(**TINY)).eval()
    first, future = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    a, b = model(first, future), model(first, future)
    assert torch.equal(a["recon"], b["recon"])
    assert torch.allclose(model.decode_codes(first, a["indices"]), a["recon"], atol=1e-5)


def reference_attention(attn: Attention, x, context=None, bias=None):
    """The reference's einsum formulation (logits = cos-sim * gains * 8 + bias, null kv prepended)."""
    kv_input = attn.context_norm(context) if context is not None else x
    q = attn.to_q(attn.norm(x))
    k, v = attn.to_kv(kv_input).chunk(2, dim=-1)
    q, k, v = (t.unflatten(-1, (attn.heads, attn.dim_head)).transpose(1, 2) for t in (q, k, v))
    if attn.num_null_kv:
        nk, nv = attn.null_kv.unflatten(1, (attn.num_null_kv, 2)).unbind(dim=2)
        k = torch.cat([nk.expand(x.shape[0], -1, -1, -1), k], dim=2)
        v = torch.cat([nv.expand(x.shape[0], -1, -1, -1), v], dim=2)
    q, k = F.normalize(q, dim=-1) * attn.q_scale, F.normalize(k, dim=-1) * attn.k_scale
    sim = torch.einsum("bhid,bhjd->bhij", q, k) * attn.scale
    if bias is not None:
        sim = sim + F.pad(bias, (attn.num_null_kv, 0))
    out = torch.einsum("bhij,bhjd->bhid", sim.softmax(-1), v)
    return attn.to_out(out.transpose(1, 2).flatten(2))


def test_sdpa_attention_matches_reference_formula():
    torch.manual_seed(0)
    x, context = torch.randn(2, 16, 32), torch.randn(2, 4, 32)
    bias = torch.randn(4, 16, 16)
    self_attn = Attention(32, dim_head=8, heads=4)
    torch.nn.init.normal_(self_attn.q_scale, 1.0, 0.3)
    assert torch.allclose(self_attn(x, bias=bias), reference_attention(self_attn, x, bias=bias), atol=1e-5)
    cross = Attention(32, dim_head=8, heads=4, num_null_kv=2, is_cross=True)
    assert torch.allclose(cross(x, context=context), reference_attention(cross, x, context=context), atol=1e-5)


def test_position_bias_on_distinct_offsets_matches_all_pairs():
    torch.manual_seed(0)
    cpb = ContinuousPositionBias(dim=16, heads=3)
    h, w = 3, 5
    grid = torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")).reshape(2, -1).t()
    rel = (grid[:, None, :] - grid[None, :, :]).float()
    rel = torch.sign(rel) * torch.log(rel.abs() + 1)
    values = rel
    for layer in cpb.net:
        values = layer(values)
    assert torch.allclose(cpb(h, w), values.permute(2, 0, 1), atol=1e-6)


def test_reference_replacement_schedule_has_26_events():
    schedule = [[10, 100], [100, 1000], [500, 5000]]
    events = [s for s in range(1, 20000) if should_replace(s, schedule)]
    assert len(events) == 26 and events[0] == 10 and events[-1] == 4500


def test_replacement_makes_dead_codes_distinct_and_used():
    torch.manual_seed(0)
    vq = NSVQ(dim=16, codebook_size=8, quant_dim=4, code_seq_len=4, grid=(8, 8), threshold=0.1)
    with torch.no_grad():
        vq.codebooks[:] = 100.0  # collapse: seven identical codes far from the data, one code in use
        vq.codebooks[0] = 0.0
    first, future = torch.randn(16, 64, 16), torch.randn(16, 64, 16)
    _, indices, _, _ = vq(first, future)
    assert indices.unique().numel() == 1
    replaced = vq.replace_dead_codes()
    assert replaced == 7 and int(vq.hits.sum()) == 0
    assert torch.unique(vq.codebooks.detach(), dim=0).shape[0] == 8  # all distinct (real noise, not 1e-12)
    vq.eval()
    _, indices, _, _ = vq(first, future)
    assert indices.unique().numel() >= 4  # re-seeded codes sit where the data is, so they get picked


def test_code_seq_len_needs_matching_grid():
    try:
        LatentActionQuantization(LAQConfig(**{**TINY, "image_size": 64}))
    except ValueError as exc:
        assert "8x8" in str(exc) and "16x16" in str(exc)
    else:
        raise AssertionError("a 16x16 grid with code_seq_len 4 must be refused")
    assert math.isclose(LAQConfig().dim, 1024)


def test_peg_matches_causal_conv3d_in_both_layouts():
    from laq.models.attention import PEG
    torch.manual_seed(0)
    peg = PEG(8, causal=True)
    b, t, h, w = 2, 2, 3, 4
    video = torch.randn(b, t, h, w, 8)
    reference = F.conv3d(F.pad(video.permute(0, 4, 1, 2, 3), (1, 1, 1, 1, 2, 0)), peg.dsconv.weight,
                         peg.dsconv.bias, groups=8).permute(0, 2, 3, 4, 1)
    spatial = peg(video.reshape(b * t, h * w, 8), (b, t, h, w), "spatial").reshape(b, t, h, w, 8)
    assert torch.allclose(spatial, reference, atol=1e-5)
    temporal_in = video.permute(0, 2, 3, 1, 4).reshape(b * h * w, t, 8)
    temporal = peg(temporal_in, (b, t, h, w), "temporal").reshape(b, h, w, t, 8).permute(0, 3, 1, 2, 4)
    assert torch.allclose(temporal, reference, atol=1e-5)


def golden_model():
    """TINY at seed 0 with codes placed where this model's (future - first) vectors are (so the eval argmin picks
    several codes and the outputs depend on the encoder), and four seeded input pairs."""
    torch.manual_seed(0)
    model = LatentActionQuantization(LAQConfig(**TINY))
    g = torch.Generator().manual_seed(1)
    first, future = torch.rand(4, 3, 32, 32, generator=g), torch.rand(4, 3, 32, 32, generator=g)
    with torch.no_grad():
        a, b = model.encode(model.patch_embed(first), model.patch_embed(future),
                            model.spatial_rel_pos_bias(*model.grid))
        delta = (model.vq.encode(b) - model.vq.encode(a)).reshape(-1, 8)
        model.vq.codebooks.copy_(delta[torch.randperm(16, generator=g)[:8]])
    return model, first, future


def test_golden_outputs_at_a_seeded_tiny_config():
    """Stored outputs (recorded from this implementation, which matches LAPA's code in lapa_compat mode and the
    reference formulas above): a change anywhere in the forward (a dropped layer, a lost detach's numerics, a
    reordered reshape) moves them."""
    model, first, future = golden_model()
    torch.manual_seed(2)  # NSVQ's noise substitution in train mode
    out = model(first, future)
    assert abs(float(out["loss"].detach()) - 0.677102) < 1e-4
    assert torch.allclose(out["recon"][0, 0, 0, :4], torch.tensor([-0.212290, -0.335317, -0.756320, -0.405727]),
                          atol=1e-4)
    assert torch.allclose(out["recon"][3, 2, 31, -4:], torch.tensor([-0.151243, 0.152292, -0.821061, -0.247758]),
                          atol=1e-4)
    model.eval()
    with torch.no_grad():
        hard = model(first, future)
    assert hard["indices"].tolist() == [[5, 6, 5, 5], [2, 6, 1, 1], [2, 4, 3, 7], [6, 5, 0, 4]]
    assert torch.allclose(hard["recon"][1, 1, 5, :4], torch.tensor([-0.630661, -0.127772, -0.007537, 0.122741]),
                          atol=1e-4)


def test_decoder_path_sends_no_gradient_into_the_patch_embedding():
    """The decoder's queries are the first frame's patch embeddings *detached* (LAPA): with the encoder's outputs cut
    off, the reconstruction has no gradient with respect to the patch embedding at all."""
    model, first, future = golden_model()
    encode = model.encode
    model.encode = lambda *args: tuple(t.detach() for t in encode(*args))  # only the decoder path is left
    out = model(first, future)
    grads = torch.autograd.grad(out["recon"].square().sum(), list(model.patch_embed.parameters()), allow_unused=True)
    assert all(g is None or float(g.abs().max()) == 0.0 for g in grads)
    model.encode = encode
    out = model(first, future)  # through the encoder it does get gradient (the embedding is trained)
    grads = torch.autograd.grad(out["loss"], list(model.patch_embed.parameters()), allow_unused=True)
    assert any(g is not None and float(g.abs().max()) > 0 for g in grads)


def test_encoder_mixes_time_first_frame_tokens_see_the_future():
    """The temporal transformer is not causal: the first frame's encoder tokens depend on the future frame (and
    both depend on it through the temporal stack, not only the spatial one)."""
    model, first, future = golden_model()
    bias = model.spatial_rel_pos_bias(*model.grid)
    with torch.no_grad():
        a1, _ = model.encode(model.patch_embed(first), model.patch_embed(future), bias)
        a2, _ = model.encode(model.patch_embed(first), model.patch_embed(future.flip(-1)), bias)
    assert (a1 - a2).abs().max() > 1e-3
    assert len(model.enc_temporal_transformer.layers) == model.cfg.temporal_depth >= 1


def test_warp_residual_scale_multiplies_the_residual_only():
    """decoder_output=warp: future = warp(first, flow) + warp_residual_scale * residual; 0 leaves a pure warp,
    which a zero flow makes exactly frame t. A negative scale is an error naming the key."""
    torch.manual_seed(0)
    first, future = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    outputs = {}
    for scale in (1.0, 0.25, 0.0):
        torch.manual_seed(1)
        model = LatentActionQuantization(LAQConfig(**TINY, decoder_output="warp", warp_residual_scale=scale)).eval()
        torch.nn.init.normal_(model.to_pixels.proj.weight, std=0.1)  # a non-zero residual, a zero flow
        outputs[scale] = model(first, future)["recon"]
    residual = outputs[1.0] - first
    assert residual.abs().max() > 0.01
    assert torch.allclose(outputs[0.25] - first, 0.25 * residual, atol=1e-5)
    assert torch.allclose(outputs[0.0], first, atol=1e-5)
    with pytest.raises(ValueError, match="model.warp_residual_scale"):
        LatentActionQuantization(LAQConfig(**TINY, decoder_output="warp", warp_residual_scale=-1.0))
