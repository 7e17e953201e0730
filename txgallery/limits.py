"""Explicit limits, one table for the whole gallery (documented in the README), and the error users see."""

from __future__ import annotations

MAX_INPUT_CHARS = 10_000  # longer text is truncated, with a visible notice
MAX_TOKENS = 256  # tokens a classifier sees; the rest is cut, with a notice
MAX_ATTRIBUTION_TOKENS = 128  # integrated gradients cost grows with length
MAX_BATCH_TEXTS = 500  # lines or CSV rows per batch request
MAX_UPLOAD_BYTES = 2 * 1024 * 1024  # per uploaded file (also Gradio's max_file_size)
MAX_UPLOAD_SIZE = "2mb"  # the same limit in Gradio's notation
QUEUE_SIZE = 64  # requests waiting per app before new ones are turned away
DEFAULT_CONCURRENCY = 2  # events of one demo running at once (one model thread serves them in turn)


class InputError(ValueError):
    """Bad user input; the message says what was wrong and what is allowed."""


def truncate_text(text: str, limit: int = MAX_INPUT_CHARS) -> tuple[str, str | None]:
    """Cut `text` to `limit` characters; return it with a notice when something was cut."""
    if len(text) <= limit:
        return text, None
    return text[:limit], f"Input was {len(text):,} characters; only the first {limit:,} were used."

# --- clip ---
MAX_CLIP_LABELS = 50  # labels (or texts) compared with one image; each is one text forward
MAX_CLIP_TEXT_CHARS = 200  # per label or text; CLIP reads at most 77 tokens anyway
MAX_CLIP_GALLERY_UPLOADS = 12  # images a user adds to the search gallery

# --- finetune ---
MAX_FINETUNE_STEPS = 1000  # optimizer steps per run (the UI slider stops lower)
MAX_FINETUNE_LR = 1.0  # above this no method trains; 1e9 is refused, not tried
MAX_FINETUNE_BATCH = 64  # examples per step
MAX_FINETUNE_TOKENS = 256  # tokens per training example
MAX_FINETUNE_SECONDS = 600  # wall time of one run; it stops with a message when reached
MAX_FINETUNE_MEMORY_MB = 4096  # growth of the process's memory (or CUDA memory) during one run
MAX_FINETUNE_CONCURRENT = 1  # training jobs running at once (each uses every core); others wait in the queue
MAX_FINETUNE_QUEUED = 4  # jobs waiting; beyond it a new job is refused with a message
MAX_FINETUNE_RUNS_PER_SESSION = 8  # trained runs a browser session keeps (oldest dropped first)
MAX_CSV_ROWS = 5000  # rows of an uploaded CSV used for training; the rest is ignored, with a notice
MIN_CSV_ROWS = 10  # fewer rows cannot give a training and a held-out part
MAX_CSV_CLASSES = 20  # distinct labels in an uploaded CSV
