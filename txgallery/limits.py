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
MAX_SESSIONS = 200  # sessions whose state the server keeps (each browser tab; each plain API call is one); the least recently used is dropped
DOWNLOAD_RETENTION_S = 3600  # seconds a file offered for download stays in the temp dir (Gradio keeps its own copy)
GRADIO_CACHE_AGE_S = 3600  # seconds Gradio's copy of a result or an upload is kept (its cache dir); older ones are deleted
GRADIO_CACHE_SWEEP_S = 600  # how often the server deletes those older copies; all of them go when it stops
MAX_LINK_INDEX = 255  # a layer or head index a deep link may name; the model it runs then checks its own count
MAX_PRESENTER_URL_CHARS = 4000  # a presenter page URL (path and query) that followers open; longer ones are not shared
HEALTH_PROBE_TIMEOUT_S = 20  # a model replica's health probe (a small forward) that takes longer marks it unhealthy (Ray Serve replaces it)
SERVICE_CALL_MAX_S = 1800  # a model replica's thread on one call this long is taken as stuck by its health check; a shorter call only delays the probe


def limits_table() -> list[tuple[str, str, str, str]]:
    """(section, NAME, value, what it limits) for every limit in this module, read from its source and comments."""
    import inspect
    import re
    import sys

    rows, section = [], "gallery"
    for line in inspect.getsource(sys.modules[__name__]).splitlines():
        if header := re.match(r"^# --- (.+?) ---", line):
            section = header.group(1)
        elif match := re.match(r"^([A-Z][A-Z0-9_]+) = (.+?)\s+# (.+)$", line):
            rows.append((section, match.group(1), match.group(2), match.group(3)))
    return rows


def limits_markdown() -> str:
    """Every limit as a Markdown table (what `txgallery limits` prints and the README shows)."""
    lines = ["| demo | limit | value | what it limits, and what happens beyond it |", "|---|---|---|---|"]
    lines += [f"| {section} | `{name}` | `{value}` | {text} |" for section, name, value, text in limits_table()]
    return "\n".join(lines)


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
MAX_CLIP_CACHED_EMBEDDINGS = 4096  # image embeddings, and text embeddings, kept per model; the least recently used go first

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
MAX_FINETUNE_RUNS_KEPT = 24  # trained runs the server keeps over all sessions (oldest dropped, with its files)
MAX_CSV_ROWS = 5000  # rows of an uploaded CSV used for training; the rest is ignored, with a notice
MIN_CSV_ROWS = 10  # fewer rows cannot give a training and a held-out part
MAX_CSV_CLASSES = 20  # distinct labels in an uploaded CSV

# --- seq2seq ---
MAX_SEQ2SEQ_SOURCE_TOKENS = 256  # tokens the encoder reads; the rest is cut, with a notice
MAX_SEQ2SEQ_NEW_TOKENS = 128  # tokens the decoder may generate per request
MAX_SEQ2SEQ_BEAMS = 8  # beams for beam search

# --- attention ---
MAX_ATTENTION_TOKENS_ENCODER = 128  # tokens (specials included) an encoder's attention is shown for; the rest is cut
MAX_ATTENTION_TOKENS_DECODER = 64  # the decoder's views (30 layers × 9 heads) stay responsive up to this length
MAX_POSITIONS_SHOWN = 512  # positions drawn by the positional-encoding view

# --- generation ---
GENERATION_MAX_NEW_TOKENS = 256  # tokens one request may generate (the slider's maximum; more is refused)
GENERATION_MAX_PROMPT_TOKENS = 1024  # prompt tokens read; a longer prompt keeps its end, with a notice
GENERATION_MAX_BEAMS = 8  # beams for beam search
GENERATION_TOP_CANDIDATES = 10  # candidates recorded per step (before and after filtering)

# --- vision ---
MAX_IMAGE_BYTES = MAX_UPLOAD_BYTES  # an image file larger than this is refused before it is opened
MAX_IMAGE_PIXELS = 40_000_000  # width × height read from the header; larger images are refused before decoding
MAX_IMAGE_SIDE = 1024  # longer side kept after decoding (larger images are downscaled; models read 224 or less)
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")  # what PIL may decode from an upload

# --- vit ---
VIT_TOP_K = 5  # classes shown in the bar plot
MAX_DISCARD_RATIO = 0.95  # share of the weakest attention weights a rollout may drop (more leaves too little to trace)

# --- efficiency ---
MAX_EFFICIENCY_RUNS_KEPT = 4  # runs whose saved variants stay on disk (hundreds of MB each); a new run deletes older ones (their zips were already offered)
MAX_DISTIL_STEPS = 600  # training steps of one distillation run (each run trains two students)
MAX_STUDENT_LAYERS = 4  # layers of a distilled student (the teacher has 6)
