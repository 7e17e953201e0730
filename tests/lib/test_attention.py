"""txgallery.lib.attention and txgallery.lib.attention_views: rollout, statistics, positions, step-by-step recomputation on
tiny random BERT, GPT-2 and Llama models saved locally, and timm ViT attention capture."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from txgallery.lib import attention as att
from txgallery.lib import attention_views as views
from txgallery.lib import threads


def random_attention(layers: int, heads: int, size: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.dirichlet(np.ones(size), size=(heads, size)) for _ in range(layers)]


# --- rollout -----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fusion", att.HEAD_FUSIONS)
@pytest.mark.parametrize("discard", [0.0, 0.5, 0.9])
def test_rollout_rows_are_distributions(fusion, discard):
    rollout = att.attention_rollout(random_attention(4, 3, 10), fusion, discard)
    assert rollout.shape == (10, 10)
    assert np.allclose(rollout.sum(-1), 1.0) and (rollout >= 0).all()


def test_rollout_of_one_layer_is_attention_plus_residual():
    (layer,) = random_attention(1, 2, 6)
    expected = (layer.mean(0) + np.eye(6)) / 2  # rows of both already sum to 1
    assert np.allclose(att.attention_rollout([torch.tensor(layer)[None]]), expected)


def test_rollout_multiplies_layers_in_order():
    first, second = random_attention(2, 1, 5, seed=3)
    step = lambda a: (a[0] + np.eye(5)) / 2  # noqa: E731
    assert np.allclose(att.attention_rollout([first, second]), step(second) @ step(first))
    assert not np.allclose(att.attention_rollout([first, second]), att.attention_rollout([second, first]))


def test_head_fusion_and_discard_change_the_result():
    layers = random_attention(3, 4, 8)
    mean, maximum = att.attention_rollout(layers, "mean"), att.attention_rollout(layers, "max")
    assert not np.allclose(mean, maximum)
    assert not np.allclose(mean, att.attention_rollout(layers, "mean", discard_ratio=0.8))
    with pytest.raises(ValueError, match="head_fusion"):
        att.attention_rollout(layers, "median")
    with pytest.raises(ValueError, match="discard_ratio"):
        att.attention_rollout(layers, discard_ratio=1.0)


@pytest.mark.parametrize("discard", [0.0, 0.3, 0.9])
@pytest.mark.parametrize("token", [0, 4])
def test_one_row_of_the_rollout_equals_that_row_of_the_matrix(discard, token):
    layers = random_attention(5, 3, 12, seed=7)
    expected = att.attention_rollout(layers, "max", discard)[token]
    assert np.allclose(att.rollout_row(layers, "max", discard, token=token), expected, atol=1e-12)


@pytest.mark.parametrize("fusion", att.HEAD_FUSIONS)
def test_heads_fused_on_the_device_give_the_same_rollout(fusion):
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(1)
    vit = VisionTransformer(img_size=28, patch_size=7, in_chans=1, embed_dim=32, depth=3, num_heads=4,
                            num_classes=10).eval()
    pixels = torch.randn(1, 1, 28, 28)
    heads, fused = att.vit_attentions(vit, pixels), att.vit_attentions(vit, pixels, head_fusion=fusion)
    assert [a.shape for a in fused.attentions] == [(1, 17, 17)] * 3
    assert np.allclose(att.rollout_row(fused.attentions, fusion, 0.5), att.rollout_row(heads.attentions, fusion, 0.5))
    assert np.allclose(fused.logits, heads.logits)


def test_a_vit_whose_layers_have_different_head_counts_keeps_each_layers_heads():
    from timm.layers import Attention
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(2)
    vit = VisionTransformer(img_size=28, patch_size=7, in_chans=1, embed_dim=32, depth=2, num_heads=4,
                            num_classes=10).eval()
    vit.blocks[1].attn = Attention(32, num_heads=2).eval()
    run = att.vit_attentions(vit, torch.randn(1, 1, 28, 28))
    assert [a.shape for a in run.attentions] == [(4, 17, 17), (2, 17, 17)]
    assert all(np.allclose(a.sum(-1), 1, atol=1e-5) for a in run.attentions)
    fused = att.vit_attentions(vit, torch.randn(1, 1, 28, 28), head_fusion="max")
    assert [a.shape for a in fused.attentions] == [(1, 17, 17)] * 2


@pytest.mark.parametrize("path", ["graph", "qkv", "eager"])
def test_attention_maps_are_read_from_this_threads_forward_while_another_thread_runs_the_model(path, monkeypatch):
    import copy
    import threading

    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(3)
    vit = VisionTransformer(img_size=28, patch_size=7, in_chans=1, embed_dim=32, depth=4, num_heads=4,
                            num_classes=10).eval()
    if path != "graph":  # a model too large for the traced graph
        monkeypatch.setattr(threads, "TINY_CPU_WEIGHTS", 0)
    if path == "eager":  # as a ViT whose blocks are not timm's standard Attention would go
        monkeypatch.setattr(att, "_timm_attentions_from_qkv", att._timm_attentions_eager)
    mine, other = torch.randn(1, 1, 28, 28), torch.randn(3, 1, 28, 28)
    expected = att.vit_attentions(copy.deepcopy(vit), mine).attentions  # `vit` itself is first read (traced) below
    stop, failures = threading.Event(), []

    def other_service():  # e.g. the ViT page's predict and classify while the attention explorer reads maps
        with torch.inference_mode():
            while not stop.is_set():
                vit(other)
                att.vit_attentions(vit, other[:1])  # the same traced graph as this thread's, where there is one

    thread = threading.Thread(target=other_service)
    thread.start()
    try:
        for _ in range(60):
            try:
                got = att.vit_attentions(vit, mine).attentions
                if len(got) != 4 or not all(np.allclose(a, b, atol=1e-6) for a, b in zip(got, expected)):
                    failures.append("wrong maps")
            except RuntimeError as exc:
                failures.append(str(exc))
    finally:
        stop.set()
        thread.join()
    assert failures == []
    graphs = att._graphs[vit]  # None: the model gets no graph
    assert (graphs is not None and graphs[((1, 1, 28, 28), torch.float32)] is not None) == (path == "graph")


def small_vit(seed: int = 0):
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(seed)
    return VisionTransformer(img_size=28, patch_size=7, in_chans=1, embed_dim=32, depth=3, num_heads=4,
                             num_classes=10).eval()


def test_a_small_cpu_vit_is_read_through_a_traced_graph_that_equals_the_eager_path(monkeypatch):
    import copy

    vit, pixels = small_vit(), torch.randn(1, 1, 28, 28)
    twin = copy.deepcopy(vit)
    traced = att.vit_attentions(vit, pixels, "max")
    assert att._graphs[vit][((1, 1, 28, 28), torch.float32)] is not None
    monkeypatch.setattr(threads, "TINY_CPU_WEIGHTS", 0)
    eager = att.vit_attentions(twin, pixels, "max")
    assert att._graphs[twin] is None
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(traced.attentions, eager.attentions))
    assert np.allclose(traced.logits, eager.logits, atol=1e-5)

    # the graph reads the model's own parameters: a change to the weights shows in the next read, without retracing
    monkeypatch.setattr(att, "_trace_attention_graph", lambda *args: pytest.fail("traced again"))
    with torch.no_grad():
        for model in (vit, twin):
            model.head.weight.mul_(-2.0)
            model.blocks[0].attn.qkv.weight.mul_(3.0)
    again, eager = att.vit_attentions(vit, pixels, "max"), att.vit_attentions(twin, pixels, "max")
    assert not np.allclose(again.logits, traced.logits)
    assert np.allclose(again.logits, eager.logits, atol=1e-5)
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(again.attentions, eager.attentions))


def test_where_tracing_fails_the_attention_is_read_eagerly_and_the_log_says_why(monkeypatch, caplog):
    def refuse(*args, **kwargs):
        raise RuntimeError("TorchScript is gone")

    monkeypatch.setattr(torch.jit, "trace", refuse)
    vit, pixels = small_vit(1), torch.randn(1, 1, 28, 28)
    with caplog.at_level("WARNING", logger="txgallery.lib.attention"):
        run = att.vit_attentions(vit, pixels)
    assert "TorchScript is gone" in caplog.text
    assert att._graphs[vit][((1, 1, 28, 28), torch.float32)] is None
    with torch.no_grad():
        assert np.allclose(run.logits, vit(pixels)[0].numpy(), atol=1e-5)


def test_discard_drops_exactly_what_a_stable_sort_would_even_with_ties():
    values = np.array([0.5, 0.1, 0.3, 0.1, 0.1, 0.9, 0.3, 0.0])
    for count in range(len(values) + 1):
        expected = np.argsort(values, kind="stable")[:count]
        assert sorted(att._weakest(values, count)) == sorted(expected)


def test_cls_patch_map_has_one_normalised_value_per_patch():
    rollout = att.attention_rollout(random_attention(2, 2, 1 + 16))
    patch_map = att.cls_patch_map(rollout, (4, 4))
    assert patch_map.shape == (4, 4) and patch_map.sum() == pytest.approx(1.0)
    assert np.allclose(patch_map.ravel(), rollout[0, 1:] / rollout[0, 1:].sum())
    with pytest.raises(ValueError, match="grid"):
        att.cls_patch_map(rollout, (3, 3))


def test_timm_vit_attention_is_captured_without_changing_the_model():
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(img_size=28, patch_size=7, in_chans=1, embed_dim=32, depth=3, num_heads=4,
                            num_classes=10).eval()
    fused_before = [block.attn.fused_attn for block in vit.blocks]
    pixels = torch.randn(1, 1, 28, 28)
    run = att.vit_attentions(vit, pixels)
    assert len(run.attentions) == 3 and run.attentions[0].shape == (4, 17, 17)
    assert run.grid == (4, 4) and run.prefix_tokens == 1
    assert all(np.allclose(a.sum(-1), 1.0, atol=1e-5) for a in run.attentions)
    with torch.no_grad():
        assert np.allclose(run.logits, vit(pixels)[0].numpy(), atol=1e-5)
    assert [block.attn.fused_attn for block in vit.blocks] == fused_before
    patch_map = att.cls_patch_map(att.attention_rollout(run.attentions, "min", 0.5), run.grid, run.prefix_tokens)
    assert patch_map.shape == (4, 4) and patch_map.sum() == pytest.approx(1.0)



@pytest.mark.parametrize("qk_norm", [False, True])
def test_timm_vit_attention_from_qkv_equals_the_eager_softmax(qk_norm):
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(img_size=28, patch_size=7, in_chans=1, embed_dim=32, depth=3, num_heads=4,
                            num_classes=10, qk_norm=qk_norm).eval()
    pixels = torch.randn(1, 1, 28, 28)
    with torch.inference_mode():
        fast, fast_logits = att._timm_attentions_from_qkv(vit, vit, pixels)
        eager, eager_logits = att._timm_attentions_eager(vit, vit, pixels)
    assert len(fast) == len(eager) == 3
    for a, b in zip(fast, eager):
        assert a.shape == b.shape == (4, 17, 17)
        assert torch.allclose(a, b, atol=1e-6)
    assert torch.allclose(fast_logits, eager_logits, atol=1e-5)

# --- statistics, masks, positions ---------------------------------------------------------------------------------------

def test_head_statistics_find_previous_token_heads_and_sinks():
    size = 6
    previous = np.eye(size, k=-1)
    previous[0, 0] = 1.0
    sink = np.zeros((size, size))
    sink[:, -1] = 1.0  # every token looks at the final [SEP]
    attentions = np.stack([previous, sink])[None]  # 1 layer, 2 heads
    special = [True, False, False, False, False, True]
    prev_head, sink_head = att.head_statistics(attentions, special)
    assert prev_head.to_previous == pytest.approx(1.0) and prev_head.entropy == pytest.approx(0.0, abs=1e-9)
    assert sink_head.to_separators == pytest.approx(1.0) and sink_head.to_previous == 0.0
    assert sink_head.to_self == pytest.approx(1 / size)  # only the [SEP] itself
    uniform = np.full((1, 1, size, size), 1 / size)
    (stats,) = att.head_statistics(uniform)
    assert stats.entropy == pytest.approx(math.log(size)) and stats.to_self == pytest.approx(1 / size)


def test_causal_mask():
    mask = att.causal_mask(4)
    assert np.isinf(mask[0, 1:]).all() and (mask[np.tril_indices(4)] == 0).all()


def test_sinusoidal_encoding_follows_the_formula():
    encoding = att.sinusoidal_encoding(50, 16)
    p, i = 7, 3
    assert encoding[p, 2 * i] == pytest.approx(math.sin(p / 10_000 ** (2 * i / 16)))
    assert encoding[p, 2 * i + 1] == pytest.approx(math.cos(p / 10_000 ** (2 * i / 16)))


def test_rope_similarity_depends_only_on_distance():
    inv_freq = 1.0 / 10_000 ** (np.arange(0, 16, 2) / 16)
    similarity = att.rope_similarity(20, inv_freq)
    assert np.allclose(np.diag(similarity), 1.0)
    assert np.allclose(similarity[3, 7], similarity[10, 14]) and not np.allclose(similarity[3, 7], similarity[3, 12])


def test_steps_match_torch_scaled_dot_product_attention():
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 7, 16).unbind(0)
    steps = att.scaled_dot_product_steps(q, k, v, att.causal_mask(7))
    expected = torch.nn.functional.scaled_dot_product_attention(q[None], k[None], v[None], is_causal=True)[0]
    assert np.allclose(steps.output, expected.numpy(), atol=1e-6)
    assert steps.scale == pytest.approx(16 ** -0.5) and np.allclose(steps.weights.sum(-1), 1.0)
    assert (steps.weights[np.triu_indices(7, 1)] == 0).all()


# --- recomputation on tiny random models saved with save_pretrained --------------------------------------------------

def _tiny(kind: str, out):
    from transformers import (
        BertConfig,
        BertModel,
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
    )

    torch.manual_seed(0)
    if kind == "bert":
        model = BertModel(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64))
    elif kind == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4, n_positions=64))
    else:  # Llama with grouped-query attention and RoPE, like SmolLM2
        model = LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=48, num_hidden_layers=2, num_attention_heads=6,
                                             num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64))
    model.save_pretrained(out)
    return out


@pytest.mark.parametrize("kind,causal", [("bert", False), ("gpt2", True), ("llama", True)])
def test_recomputation_matches_a_tiny_saved_model(tmp_path, kind, causal):
    from transformers import AutoModel

    model = AutoModel.from_pretrained(_tiny(kind, tmp_path), attn_implementation="eager").eval()
    ids = torch.tensor([[5, 17, 42, 8, 99, 3, 61]])
    trace = att.trace_attention(model, {"input_ids": ids}, causal=causal)
    assert len(trace.attentions) == 2
    for layer in range(2):
        assert att.recompute_layer_error(trace, model, layer) <= 1e-5
        weights = trace.attentions[layer].numpy()
        assert np.allclose(weights.sum(-1), 1.0, atol=1e-5)
        if causal:
            rows, cols = np.triu_indices(7, 1)
            assert (weights[:, rows, cols] == 0).all()
    steps = att.recompute_head(trace, model, 1, 3)
    assert steps.extras["max_abs_diff"] <= 1e-5
    assert (steps.query_before_rotation is not None) == (kind == "llama")


def test_recomputation_check_catches_a_missing_rotation(tmp_path):
    """The comparison is not vacuous: leaving RoPE out of the recomputation is caught."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(_tiny("llama", tmp_path), attn_implementation="eager").eval()
    trace = att.trace_attention(model, {"input_ids": torch.tensor([[5, 17, 42, 8, 99, 3, 61]])}, causal=True)
    trace.position_embeddings = [None] * len(trace.position_embeddings)
    assert att.recompute_layer_error(trace, model, 0) > 1e-3


# --- views ---------------------------------------------------------------------------------------------------------

def test_heatmap_exports_png_and_svg_for_cross_attention():
    matrix = np.random.default_rng(0).dirichlet(np.ones(5), size=3)
    figure = views.attention_heatmap(matrix, ["a", "b", "c"], ["v", "w", "x", "y", "z"], "cross-attention")
    assert views.figure_bytes(figure, "png").startswith(b"\x89PNG")
    assert b"<svg" in views.figure_bytes(figure, "svg")[:500]
    with pytest.raises(ValueError, match="does not match"):
        views.attention_heatmap(matrix, ["a", "b"], ["v", "w", "x", "y", "z"])


def test_head_view_draws_lines_by_weight_and_escapes_tokens():
    attention = np.zeros((2, 3, 3))
    attention[0] = np.eye(3)
    attention[1] = np.full((3, 3), 1 / 3)
    html = views.head_view_html(["<script>", "b", "c"], attention, heads=[0], layer=4)
    assert html.count("<path") == 3 and 'data-layer="4"' in html  # head 0 only: one line per token
    assert "<script>" not in html and "&lt;script&gt;" in html
    both = views.head_view_html(["a", "b", "c"], attention, heads=[0, 1], layer=0, segments=[0, 0, 1])
    assert both.count("<path") == 3 + 9 and both.count("<rect") == 6  # segment shading on both sides


def test_model_view_has_a_thumbnail_per_layer_and_head():
    html = views.model_view_html(np.stack([np.stack(random_attention(1, 3, 5)[0])] * 2), selected=(1, 2))
    assert html.count("data-head=") == 6 and html.count("<img") == 1  # one sprite, one clickable cell per head
    assert 'data-layer="1" data-head="2"' in html and html.count("outline:3px") == 1  # the opened one is ringed


def test_one_outlier_does_not_wash_the_position_heatmap_grey():
    rng = np.random.default_rng(0)
    encoding = rng.normal(size=(64, 32))
    encoding[3, 7] = 500.0  # one outlier dimension, as BERT's learned position vectors have
    figure = views.positions_figure(encoding, np.eye(64), "learned", "dimension")
    low, high = figure.axes[0].images[0].get_clim()
    assert high < 5 and low == -high  # the colours span the ordinary values, not the outlier
    assert "clipped" in figure.axes[0].get_title()
    encoding[3, 7] = 0.0
    calm = views.positions_figure(encoding, np.eye(64), "learned", "dimension")  # no outlier: the full range
    assert calm.axes[0].images[0].get_clim()[1] == np.abs(encoding).max() and "clipped" not in calm.axes[0].get_title()
