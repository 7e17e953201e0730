"""The attention explorer's logic, without Gradio: real MiniLM and SmolLM2 attention, recomputation, pairs, limits,
exports, positional encodings, the ViT view, and a GPT-2 served from a local directory through the store."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from txgallery_demos.attention.run import (
    AttentionExplorer,
    VitResult,
    check_index,
    clean_inputs,
    demo,
    export_figure,
    export_tensors,
    head_view,
    heatmap_figure,
    positional_figures,
    rollout_maps,
    statistics_table,
)

from txgallery.lib.images import load_image
from txgallery.limits import (
    MAX_ATTENTION_TOKENS_DECODER,
    MAX_ATTENTION_TOKENS_ENCODER,
    InputError,
)
from txgallery.models import store
from txgallery.plugin import page_context

SENTENCE = "The animal didn't cross the street because it was too tired."


@pytest.fixture(scope="module")
def encoder() -> AttentionExplorer:
    return AttentionExplorer(store.resolve("embedded", "feature-extraction"))


@pytest.fixture(scope="module")
def decoder() -> AttentionExplorer:
    return AttentionExplorer(store.resolve("embedded:smollm2-135m", "text-generation"))


# --- bad input --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [None, "", "   \n\t "])
def test_empty_text_is_refused(text):
    with pytest.raises(InputError, match="empty"):
        clean_inputs(text, "")


def test_emoji_only_text_or_second_sentence_is_refused():
    with pytest.raises(InputError, match="The text has no letters or digits"):
        clean_inputs("😀 🎉 🙈", "")
    with pytest.raises(InputError, match="The second sentence has no letters or digits"):
        clean_inputs("A cat.", "😀")


def test_the_second_sentence_is_optional_and_each_change_has_its_notice():
    assert clean_inputs("  A cat.  ", None) == ("A cat.", "", [])
    assert clean_inputs("A cat.", "   ") == ("A cat.", "", [])
    text, pair, notices = clean_inputs("A\u200b cat.", "A dog\u200b.")
    assert (text, pair) == ("A cat.", "A dog.") and len(notices) == 2
    assert "from the text" in notices[0] and "from the second sentence" in notices[1]
    with pytest.raises(InputError, match="must be a string"):
        clean_inputs("A cat.", 5)


@pytest.mark.parametrize("value,count", [(6, 6), (-1, 6), ("x", 12), (None, 12)])
def test_out_of_range_indices_are_refused(value, count):
    with pytest.raises(InputError, match="layer"):
        check_index(value, count, "layer")


def test_non_image_upload_is_refused_by_the_vit_tab(tmp_path):
    import gradio as gr
    from txgallery_demos.attention.run import build

    vit_views = {fn.api_name: fn.fn for fn in build(page_context(demo)).fns.values()}["attention_vit"]
    fake = tmp_path / "photo.png"
    fake.write_text("this is not a picture")
    with pytest.raises(gr.Error, match="not an image|not a picture|could not"):
        vit_views(str(fake), "mean", 0.0)
    with pytest.raises(gr.Error, match="upload an image"):
        vit_views(None, "mean", 0.0)


# --- the encoder (MiniLM-L6) -----------------------------------------------------------------------------------------

def test_encoder_rows_sum_to_one_and_recomputation_matches_every_layer(encoder):
    result = encoder.analyse(SENTENCE)
    assert result.attentions.shape[:2] == (6, 12) and not result.causal
    assert result.tokens[0] == "[CLS]" and result.tokens[-1] == "[SEP]"
    assert np.allclose(result.attentions.sum(-1), 1.0, atol=1e-5)
    errors = encoder.recomputation_errors(SENTENCE)
    assert len(errors) == 6 and max(errors) <= 1e-5
    steps = encoder.steps(SENTENCE, "", 5, 11)
    assert steps.extras["max_abs_diff"] <= 1e-5 and steps.query.shape == (len(result.tokens), 32)
    assert np.allclose(steps.weights, result.attentions[5, 11], atol=1e-5)


def test_statistics_find_a_previous_token_head_and_a_cls_sink_in_minilm(encoder):
    table = statistics_table(encoder.analyse(SENTENCE))
    assert len(table) == 6 * 12
    previous = table.sort_values("to previous token", ascending=False).iloc[0]
    sink = table.sort_values("to first token ([CLS]/BOS)", ascending=False).iloc[0]
    assert previous["to previous token"] > 0.9  # measured: layer 0, head 2
    assert sink["to first token ([CLS]/BOS)"] > 0.8  # measured: layer 4, head 5
    assert (previous["layer"], previous["head"]) != (sink["layer"], sink["head"])


def test_pair_mode_marks_segments(encoder):
    result = encoder.analyse("The cat sat on the mat.", "The dog lay on the rug.")
    first_sep = result.tokens.index("[SEP]")
    assert result.segments[: first_sep + 1] == [0] * (first_sep + 1)
    assert result.segments[first_sep + 1:] == [1] * (len(result.tokens) - first_sep - 1)
    assert result.tokens.count("[SEP]") == 2
    html = head_view(result, 0, [0])
    assert html.count('fill="#fdeee0"') == 2 * (len(result.tokens) - first_sep - 1)  # segment B shaded on both sides


def test_encoder_input_beyond_the_cap_is_cut_with_a_notice(encoder):
    result = encoder.analyse("word " * 300)
    assert len(result.tokens) == MAX_ATTENTION_TOKENS_ENCODER
    assert "302 tokens" in result.notice and str(MAX_ATTENTION_TOKENS_ENCODER) in result.notice


def test_steps_refuse_out_of_range_layer_and_head(encoder):
    with pytest.raises(InputError, match="6 layers"):
        encoder.steps(SENTENCE, "", 6, 0)
    with pytest.raises(InputError, match="12 heads"):
        encoder.steps(SENTENCE, "", 0, 12)
    with pytest.raises(InputError, match="layer"):
        heatmap_figure(encoder.analyse(SENTENCE), 9, 0)


def test_learned_positions_and_figures(encoder):
    info = encoder.position_info()
    assert info["learned"].shape == (512, 384) and info["inv_freq"] is None
    figures = positional_figures(info["dim"], 64, info["learned"], info["inv_freq"], "minilm-l6")
    assert len(figures) == 2


def test_exports_round_trip(encoder, tmp_path):
    result = encoder.analyse("A short sentence.")
    npz = np.load(export_tensors(result, "npz", tmp_path))
    assert np.array_equal(npz["attentions"], result.attentions) and list(npz["tokens"]) == result.tokens
    data = json.loads(export_tensors(result, "json", tmp_path).read_text())
    assert data["shape"] == list(result.attentions.shape) and data["tokens"] == result.tokens
    assert np.allclose(np.array(data["attentions"]), result.attentions, atol=1e-4)
    assert heatmap_figure(result, 1, 2).data[0].type == "heatmap"  # plotly on the page
    figure = heatmap_figure(result, 1, 2, interactive=False)
    assert export_figure(figure, "png", "h", tmp_path).read_bytes().startswith(b"\x89PNG")
    assert b"<svg" in export_figure(figure, "svg", "h", tmp_path).read_bytes()[:500]
    with pytest.raises(InputError, match="npz or json"):
        export_tensors(result, "csv", tmp_path)


# --- a GPT-2 (Conv1D attention) from a local directory, through the store ------------------------------------------

def test_local_gpt2_directory_is_causal_and_recomputed(tmp_path, tiny_classifier_dir):
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=30522, n_embd=32, n_layer=2, n_head=4, n_positions=128)).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(str(tiny_classifier_dir)).save_pretrained(tmp_path)
    explorer = AttentionExplorer(store.resolve(str(tmp_path), "feature-extraction"))
    result = explorer.analyse(SENTENCE)
    assert result.causal and result.attentions.shape[:2] == (2, 4)
    upper = np.triu_indices(len(result.tokens), 1)
    assert (result.attentions[:, :, upper[0], upper[1]] == 0).all()
    assert max(explorer.recomputation_errors(SENTENCE)) <= 1e-5
    assert explorer.position_info()["learned"].shape == (128, 32)  # GPT-2's wpe


# --- the decoder (SmolLM2-135M; converted from GGUF once per cache, hence slow) -------------------------------------

@pytest.mark.slow
def test_decoder_is_causal_and_recomputation_matches_every_layer(decoder):
    result = decoder.analyse(SENTENCE)
    assert result.causal and result.attentions.shape[:2] == (30, 9)
    upper = np.triu_indices(len(result.tokens), 1)
    assert (result.attentions[:, :, upper[0], upper[1]] == 0).all()
    assert np.allclose(result.attentions.sum(-1), 1.0, atol=1e-5)
    errors = decoder.recomputation_errors(SENTENCE)
    assert len(errors) == 30 and max(errors) <= 1e-5
    steps = decoder.steps(SENTENCE, "", 29, 8)  # grouped-query: query head 8 uses key/value head 2
    assert steps.extras["max_abs_diff"] <= 1e-5 and steps.query_before_rotation is not None
    assert len(decoder.position_info()["inv_freq"]) == 32  # RoPE: one frequency per pair of the 64 head dims


@pytest.mark.slow
def test_decoder_limits(decoder):
    assert len(decoder.analyse("word " * 200).tokens) == MAX_ATTENTION_TOKENS_DECODER
    with pytest.raises(InputError, match="pairs are for encoders"):
        decoder.analyse("first", "second")


# --- the ViT view (a tiny random timm ViT until the gallery's ViT is trained) -------------------------------------

def test_vit_rollout_maps_one_normalised_value_per_patch():
    from timm.models.vision_transformer import VisionTransformer

    from txgallery.lib.attention import vit_attentions

    torch.manual_seed(0)
    vit = VisionTransformer(img_size=28, patch_size=7, in_chans=1, embed_dim=32, depth=3, num_heads=4,
                            num_classes=10).eval()
    run = vit_attentions(vit, torch.randn(1, 1, 28, 28))
    result = VitResult(run.attentions, run.grid, run.prefix_tokens, np.zeros((28, 28)), {})
    rollout, per_layer = rollout_maps(result, "max", 0.3)
    assert rollout.shape == (4, 4) and rollout.sum() == pytest.approx(1.0)
    assert len(per_layer) == 3 and all(m.shape == (4, 4) and m.sum() == pytest.approx(1.0) for m in per_layer)
    with pytest.raises(InputError, match="discard ratio"):
        rollout_maps(result, "mean", 1.5)


def test_embedded_vit_through_the_store(tmp_path):
    from PIL import Image
    from txgallery_demos.attention.run import VitExplorer

    source = page_context(demo).model("vision")  # the page's `vision` slot: the embedded ViT by default
    assert not isinstance(source, store.ModelLoadError), source
    assert source.ref == "vit-fashion-mnist"
    picture = tmp_path / "shoe.png"
    Image.fromarray(np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (64, 1))).save(picture)
    result = VitExplorer(source).analyse(load_image(str(picture)))
    assert len(result.attentions) == 4 and result.grid == (4, 4) and result.prefix_tokens == 1
    assert sum(result.top.values()) <= 1.0 + 1e-6 and len(result.top) == 5
    rollout, per_layer = rollout_maps(result, "mean", 0.0)
    assert rollout.shape == (4, 4) and rollout.sum() == pytest.approx(1.0) and len(per_layer) == 4


def test_the_page_declares_its_vit_service_at_build_time():
    # what Ray Serve deploys is what build() connects to; a service first connected per request would run in the UI
    from txgallery_demos.attention.run import VitExplorer, build

    from txgallery.serving.seam import collecting_services

    with collecting_services() as keys:
        build(page_context(demo))
    assert VitExplorer in {key.cls for key in keys}


def test_patch_maps_picture_puts_the_input_beside_each_titled_map():
    from txgallery.lib.attention_views import patch_maps_picture

    hot = np.zeros((4, 4))
    hot[3, 0] = 1.0  # bottom-left patch
    sheet = patch_maps_picture(np.full((28, 28), 100, dtype=np.uint8), [hot, hot.T], ["layer 0", "layer 1"], side=224)
    assert sheet.shape == (224 + 22, 3 * 224 + 2 * 6, 3)
    first_map = sheet[22:, 230:454].astype(float).sum(-1).reshape(4, 56, 4, 56).mean(axis=(1, 3))
    assert np.unravel_index(first_map.argmax(), (4, 4)) == (3, 0)
    title_strip = sheet[:22]
    assert (title_strip < 128).any()  # the titles are drawn


# --- keys and colour bars ----------------------------------------------------------------------------------------------

def test_head_view_key_has_one_swatch_per_shown_head_in_its_line_colour(encoder):
    import re

    from txgallery.lib.attention_views import head_color

    result = encoder.analyse(SENTENCE)
    for heads in ([2, 7], list(range(12))):
        html = head_view(result, 1, heads)
        strokes = re.findall(r'<g stroke="(#[0-9a-f]{6})">', html)
        keys = re.findall(r'class="txa-key" data-head="(\d+)".*?background:(#[0-9a-f]{6})">\s*</span>head (\d+)<', html)
        assert [(int(h), colour) for h, colour, _ in keys] == [(h, head_color(h)) for h in heads]
        assert [colour for _, colour, _ in keys] == strokes and all(h == n for h, _, n in keys)
    assert "color:#fff" not in html  # the numbers are in the text colour: white on #bcbd22 could not be read
    assert len(set(map(head_color, range(12)))) == 12


def test_head_view_key_names_the_sentence_shading_in_pair_mode(encoder):
    from txgallery.lib.attention_views import SEGMENT_COLORS

    html = head_view(encoder.analyse(SENTENCE, "It was late."), 0, [0])
    key = html[html.index('class="txa-segment-key"'):html.index("<svg")]
    assert "sentence A" in key and "sentence B" in key and all(colour in key for colour in SEGMENT_COLORS)
    assert "txa-segment-key" not in head_view(encoder.analyse(SENTENCE), 0, [0])


def test_heads_selector_css_cycles_the_palette_like_head_color():
    import re

    from txgallery.lib.attention_views import HEAD_COLORS, head_color, head_selector_css

    rules = re.findall(r"#sel label:nth-of-type\((\d+)n\+(\d+)\) span::before\{[^}]*background:(#[0-9a-f]{6})\}",
                       head_selector_css("#sel"))
    assert len(rules) == len(HEAD_COLORS)
    for head in range(40):  # the label of head h is the (h+1)-th: the rule that matches it has head h's colour
        matching = [colour for cycle, offset, colour in rules if (head + 1 - int(offset)) % int(cycle) == 0]
        assert matching == [head_color(head)]


def test_model_view_has_a_colour_bar_in_its_colour_map():
    from matplotlib import colormaps

    from txgallery.lib.attention_views import CMAP, model_view_html

    html = model_view_html(np.full((2, 3, 5, 5), 0.2, dtype=np.float32))
    assert html.count('class="txa-colourbar"') == 1 and "largest weight" in html
    first, last = (tuple(round(c * 255) for c in colormaps[CMAP](x)[:3]) for x in (0.0, 1.0))
    assert f"rgb{first} 0%" in html and f"rgb{last} 100%" in html


def test_every_plotly_panel_has_its_own_colour_bar_beside_it(encoder):
    from txgallery.lib.attention_views import (
        interactive_heatmap,
        interactive_steps,
        interactive_vectors,
    )

    result = encoder.analyse(SENTENCE)
    heatmap = interactive_heatmap(result.attentions[0, 0], result.tokens, result.tokens)
    assert heatmap.data[0].showscale is not False and "attention" in heatmap.data[0].colorbar.title.text
    steps = encoder.steps(SENTENCE, "", 0, 0)
    for figure, panels in ((interactive_steps(steps, result.tokens), 4), (interactive_vectors(steps, result.tokens), 4)):
        assert len(figure.data) == panels and all(trace.showscale is not False for trace in figure.data)
        for column, trace in enumerate(figure.data, start=1):
            right = figure.layout[f"xaxis{column if column > 1 else ''}"].domain[1]
            # between its own panel and the next; the last one in the right margin, as plotly's default (x=1.02)
            following = figure.layout[f"xaxis{column + 1}"].domain[0] if column < panels else 1.02
            assert right < trace.colorbar.x < following


def test_the_second_sentence_is_off_for_every_decoder_not_only_the_last_model():
    from txgallery_demos.attention.run import build

    from txgallery.settings import load_settings

    context = page_context(demo, load_settings(["attention.decoder=embedded:smollm2-135m,embedded:gpt2-shakespeare"],
                                               environ={}))
    switch = next(fn.fn for fn in build(context).fns.values() if fn.fn and fn.fn.__name__ == "switch_model")
    names = [source.ref for slot in ("encoder", "decoder") for source in context.models[slot]]
    assert len(names) == 3
    assert [switch(name)[1].interactive for name in names] == [True, False, False]
