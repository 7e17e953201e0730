"""The CLIP demo's logic, without Gradio: labels and templates, bad input, zero-shot results, search, the matrix."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
from PIL import Image
from txgallery_demos.clip.run import (
    apply_template,
    gallery_images,
    parse_labels,
    parse_query,
    parse_texts,
    rank,
    read_images,
    similarity_figure,
)
from txgallery_demos.clip.service import ClipMatcher, EmbeddingCache, zero_shot

from txgallery.lib.images import sample_photos
from txgallery.limits import (
    MAX_CLIP_GALLERY_UPLOADS,
    MAX_CLIP_LABELS,
    MAX_CLIP_TEXT_CHARS,
    InputError,
)
from txgallery.models import store


@pytest.fixture(scope="module")
def matcher() -> ClipMatcher:
    return ClipMatcher(store.resolve("embedded", "zero-shot-image-classification"))


# --- bad input --------------------------------------------------------------------------------------------------------

def test_labels_are_split_on_commas_or_lines():
    assert parse_labels("cat, dog ,car,") == ["cat", "dog", "car"]
    assert parse_labels("a cat, sitting\na car\n") == ["a cat, sitting", "a car"]


@pytest.mark.parametrize("text, message", [
    (None, "enter some labels"), ("  ,\n ", "enter some labels"), ("cat,,dog", "Label 2 is empty"),
    ("cat, Dog, dog", "'dog' appears twice"), ("cat", "at least 2 labels"),
    ("cat, " + "x" * (MAX_CLIP_TEXT_CHARS + 1), f"limit is {MAX_CLIP_TEXT_CHARS}"),
    (", ".join(f"label {i}" for i in range(MAX_CLIP_LABELS + 1)), f"limit is {MAX_CLIP_LABELS} per request"),
])
def test_bad_labels_are_refused_with_a_message(text, message):
    with pytest.raises(InputError, match=message):
        parse_labels(text)


def test_texts_and_queries():
    assert parse_texts("a cat\n\n a dog \n") == ["a cat", "a dog"]
    assert parse_query("  something   to drink ") == "something to drink"
    with pytest.raises(InputError, match="describe what to look for"):
        parse_query(" ")


def test_templates():
    assert apply_template("a photo of a {}", ["cat", "car"]) == ["a photo of a cat", "a photo of a car"]
    assert apply_template("{} {style}", ["cat"]) == ["cat {style}"]  # other braces are left alone
    for bad in ("a photo of a cat", "", None, "a photo of {0}"):
        with pytest.raises(InputError, match=r'needs a "\{\}"'):
            apply_template(bad, ["cat"])


def test_uploads_are_validated_and_capped(tmp_path):
    good = tmp_path / "chelsea.png"
    Image.fromarray(skimage.data.chelsea()).save(good)
    ((name, array),) = read_images([good])
    assert name == "chelsea.png" and array.ndim == 3 and array.shape[2] == 3
    text = tmp_path / "notes.png"
    text.write_text("not an image at all")
    with pytest.raises(InputError):
        read_images([text])
    with pytest.raises(InputError, match=f"at most {MAX_CLIP_GALLERY_UPLOADS}"):
        read_images([good] * (MAX_CLIP_GALLERY_UPLOADS + 1))


# --- model logic ----------------------------------------------------------------------------------------------------

def test_zero_shot_on_chelsea_prefers_cat(matcher):
    labels = parse_labels("cat, car, rocket")
    result = matcher.classify(skimage.data.chelsea(), apply_template("a photo of a {}", labels))
    assert labels[int(np.argmax(result.probabilities))] == "cat"
    assert sum(result.probabilities) == pytest.approx(1.0)
    assert np.argmax(result.similarities) == np.argmax(result.probabilities)


def test_similarity_matrix_has_n_by_m_entries(matcher, tmp_path):
    upload = tmp_path / "upload.jpg"
    Image.fromarray(skimage.data.coffee()).save(upload)
    images = gallery_images([upload])
    assert len(images) == len(sample_photos()) + 1
    texts = parse_texts("a cat\na cup of coffee\na rocket")
    matrix = matcher.similarity([array for _, array in images], texts)
    assert matrix.shape == (len(images), 3)
    figure = similarity_figure(matrix, [name for name, _ in images], texts)
    assert len(figure.axes[0].texts) == matrix.size  # one printed value per cell


def test_text_to_image_search_finds_the_coffee(matcher):
    images = gallery_images(None)
    scores = matcher.similarity([array for _, array in images], [parse_query("a cup of coffee")])[:, 0]
    best, _ = rank(scores, [name for name, _ in images])[0]
    assert "coffee" in best


def test_repeated_images_are_embedded_once(matcher):
    picture = skimage.data.rocket()
    first = matcher.embed_images([picture])
    cached = len(matcher._images)
    again = matcher.embed_images([picture, picture])
    assert len(matcher._images) == cached
    np.testing.assert_array_equal(again[1], first[0])


def test_repeated_texts_are_embedded_once_and_only_new_ones_reach_the_model(matcher, monkeypatch):
    from txgallery.models import clip

    prompts = apply_template("a picture of a {}", ["teapot", "volcano"])
    first = matcher.embed_texts(prompts)
    seen = []
    real = clip.embed_texts
    monkeypatch.setattr(clip, "embed_texts", lambda loaded, texts: seen.append(list(texts)) or real(loaded, texts))
    again = matcher.embed_texts([prompts[1], "a picture of a lighthouse", prompts[0]])
    assert seen == [["a picture of a lighthouse"]]
    np.testing.assert_array_equal(again[[2, 0]], first)
    np.testing.assert_allclose(again[1], real(matcher.loaded, ["a picture of a lighthouse"])[0], atol=1e-5)


def test_the_embedding_cache_drops_the_least_recently_used_beyond_its_size():
    cache, batches = EmbeddingCache(size=3), []

    def compute(keys):
        def embed(missing):
            batches.append([keys[i] for i in missing])
            return np.array([[float(ord(keys[i]))] for i in missing])
        return embed

    def get(*keys):
        return cache.get(list(keys), compute(list(keys)))[:, 0].tolist()

    assert get("a", "b", "c") == [97, 98, 99] and batches == [["a", "b", "c"]]
    assert get("a") == [97] and len(batches) == 1  # a hit, and "a" is now the most recently used
    assert get("d", "a") == [100, 97] and batches[-1] == ["d"]  # "b" goes
    assert len(cache) == 3
    get("b", "c")  # "b" was dropped and is computed again; "c" is still there
    assert batches[-1] == ["b"]


def test_zero_shot_of_an_uploaded_file_equals_classifying_the_decoded_picture(matcher, tmp_path):
    upload = tmp_path / "chelsea.png"
    Image.fromarray(skimage.data.chelsea()).save(upload)
    prompts = apply_template("a photo of a {}", ["cat", "car", "rocket", f"{tmp_path.name} thing"])
    from_file = zero_shot(matcher, upload, prompts)  # new prompts: embedded beside the picture
    from_picture = matcher.classify(skimage.data.chelsea(), prompts)
    np.testing.assert_allclose(from_file.probabilities, from_picture.probabilities, atol=1e-6)
    (tmp_path / "notes.png").write_text("not a picture")
    with pytest.raises(InputError, match="not an image"):
        zero_shot(matcher, tmp_path / "notes.png", prompts)


def test_badge_names_the_standin_honestly(matcher):
    badge = matcher.describe()
    assert "not CLIP" in badge and "embedded" in badge


def test_rank_is_best_first():
    assert rank(np.array([0.1, 0.7, 0.3]), ["a", "b", "c"]) == [("b", 0.7), ("c", pytest.approx(0.3)),
                                                              ("a", pytest.approx(0.1))]


def test_one_picture_and_new_prompts_run_both_encoders_side_by_side(matcher, monkeypatch, tmp_path):
    import threading

    import torch
    from threadpoolctl import ThreadpoolController
    from txgallery_demos.clip import service as clip_service

    from txgallery.models import clip

    text_threads = []
    embed_texts = clip.embed_texts

    def recorded(loaded, texts, **kwargs):
        text_threads.append(threading.current_thread().name)
        return embed_texts(loaded, texts, **kwargs)

    monkeypatch.setattr(clip, "embed_texts", recorded)

    def openmp_threads() -> int:
        return ThreadpoolController().select(user_api="openmp").info()[0]["num_threads"]

    picture = skimage.data.coffee()
    prompts = apply_template("a photo of {}", ["a cup of coffee", "a cat", f"{tmp_path.name} on a table"])
    before = openmp_threads()
    side_by_side = matcher.similarity([picture], prompts)
    assert openmp_threads() == before  # this thread's OpenMP team is given back
    expected = clip.cosine_matrix(clip.embed_images(matcher.loaded, [Image.fromarray(picture)]),
                                         embed_texts(matcher.loaded, prompts))
    np.testing.assert_allclose(side_by_side, expected, atol=1e-5)
    assert int(np.argmax(side_by_side[0])) == 0
    if torch.get_num_threads() >= 2:  # on one thread there is nothing to share
        assert text_threads == ["clip-text_0"]
    # cached prompts, or many pictures: no second thread (the image encoder is then the whole cost)
    matcher.similarity([skimage.data.astronaut()], prompts)
    matcher.similarity([picture, skimage.data.astronaut()], [f"{p}, twice" for p in prompts])
    assert text_threads[-1] == threading.current_thread().name and len(text_threads) <= 2
    # a large model: one encoder after the other
    monkeypatch.setattr(clip_service, "SIDE_BY_SIDE_MAX_WEIGHTS", 1_000_000)
    matcher.similarity([picture], [f"{p}, again" for p in prompts])
    assert text_threads[-1] == threading.current_thread().name


def test_a_label_with_its_own_article_does_not_double_the_templates():
    assert apply_template("a photo of a {}", ["red plate", "a red plate", "an apple", "the moon"]) == [
        "a photo of a red plate", "a photo of a red plate", "a photo of an apple", "a photo of the moon"]
    assert apply_template("{} on a table", ["a cup"]) == ["a cup on a table"]


def test_the_page_handlers_answer_and_a_model_that_cannot_load_says_why(tmp_path):
    """What the page's buttons run (`Handlers`), without a browser: an answer from the embedded model, and a message
    (not a stack trace) for a configured model that does not exist."""
    import gradio as gr
    from txgallery_demos.clip.run import Handlers, demo

    from txgallery import settings
    from txgallery.plugin import page_context

    upload = tmp_path / "chelsea.png"
    Image.fromarray(skimage.data.chelsea()).save(upload)
    handlers = Handlers(page_context(demo, settings.Settings()))
    probabilities, rows = handlers.classify(str(upload), "car, cat, rocket", "a photo of a {}")
    assert max(probabilities, key=probabilities.get) == "cat" and rows[0][0] == "a photo of a cat"
    assert "not CLIP" in handlers.badge() and handlers.badge() is handlers.badge()  # made once per page
    broken = Handlers(page_context(demo, settings.load_settings([f"clip={tmp_path / 'no-such-model'}"], environ={})))
    assert "chelsea" in handlers.text_to_image("a cat", None)[0][1]
    with pytest.raises(gr.Error, match="no-such-model"):
        broken.text_to_image("a cat", None)
    assert "unavailable" in broken.badge().lower()
