"""Decoder generation, one token at a time: the sampling maths and a streaming decoding loop with a KV cache.

A causal language model turns a prefix into a score (logit) for every token of its vocabulary. Generating text is
a loop: score, choose one token, append it, repeat. Everything a "sampling setting" does happens in the choosing:

    repetition penalty -> temperature -> top-k -> top-p -> softmax -> argmax (greedy) or draw (sampling)

in the same order as transformers' logits processors, so the results match `model.generate`. The loop keeps the
attention keys and values of earlier tokens (the KV cache: `cache` in recent transformers, `past_key_values` in
earlier 5.x releases, both supported), so
each step runs the model on one new token only, and records the model's candidates before and after filtering.
"""

from __future__ import annotations

import math
import queue
import threading
from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Literal

import torch

from txgallery.lib.text import clean_text
from txgallery.limits import (
    GENERATION_MAX_BEAMS,
    GENERATION_MAX_NEW_TOKENS,
    GENERATION_MAX_PROMPT_TOKENS,
    GENERATION_TOP_CANDIDATES,
    InputError,
)

Strategy = Literal["greedy", "sample", "beam"]
STRATEGIES: tuple[str, ...] = ("greedy", "sample", "beam")


# --- settings and input checks (pure functions) -------------------------------------------------------------------


@dataclass(frozen=True)
class SamplingSettings:
    """Every control of one generation; the defaults are plain greedy decoding."""

    strategy: Strategy = "greedy"
    max_new_tokens: int = 48
    temperature: float = 1.0
    top_k: int = 0  # 0 = no top-k filtering
    top_p: float = 1.0  # 1 = no nucleus filtering
    repetition_penalty: float = 1.0  # 1 = none
    num_beams: int = 4
    seed: int = 0
    chat: bool = False  # wrap the prompt in the model's chat template (instruct models)


def check_settings(settings: SamplingSettings) -> tuple[SamplingSettings, list[str]]:
    """Validate the controls; returns the settings to use and notices, or raises `InputError` saying what is allowed."""
    notices: list[str] = []
    if settings.strategy not in STRATEGIES:
        raise InputError(f"Unknown decoding strategy {settings.strategy!r}; choose one of {', '.join(STRATEGIES)}.")
    if not 1 <= settings.max_new_tokens <= GENERATION_MAX_NEW_TOKENS:
        raise InputError(f"Max new tokens must be between 1 and {GENERATION_MAX_NEW_TOKENS}; "
                         f"got {settings.max_new_tokens}.")
    if not math.isfinite(settings.temperature) or settings.temperature < 0:
        raise InputError(f"Temperature must be a number ≥ 0 (0 means greedy); got {settings.temperature}.")
    if settings.top_k < 0:
        raise InputError(f"Top-k must be ≥ 0 (0 turns it off); got {settings.top_k}.")
    if not (0 < settings.top_p <= 1):
        raise InputError(f"Top-p must be in (0, 1] (1 turns it off); got {settings.top_p}.")
    if not math.isfinite(settings.repetition_penalty) or settings.repetition_penalty <= 0:
        raise InputError(f"Repetition penalty must be > 0 (1 turns it off); got {settings.repetition_penalty}.")
    if settings.strategy == "beam" and not 1 <= settings.num_beams <= GENERATION_MAX_BEAMS:
        raise InputError(f"Beam search needs 1 to {GENERATION_MAX_BEAMS} beams; got {settings.num_beams}.")
    if settings.strategy == "sample" and settings.temperature == 0:
        # the limit of temperature -> 0 is the argmax: say so instead of dividing by zero
        notices.append("Temperature 0 means always taking the most likely token: this ran as greedy decoding.")
        settings = replace(settings, strategy="greedy")
    return settings, notices


def clean_prompt(text: str | None) -> tuple[str, list[str]]:
    """A prompt checked by the gallery's one text cleaner (`txgallery.lib.text.clean_text`), with its notices."""
    cleaned, notice = clean_text(text, what="prompt text", strip=False)  # "ROMEO:\n" asks for the next line
    return cleaned, [notice] if notice else []


def fit_prompt(ids: list[int], context: int, max_new_tokens: int) -> tuple[list[int], str | None]:
    """Keep the last tokens of the prompt that fit the context beside `max_new_tokens`; notice when cut."""
    room = min(context - max_new_tokens, GENERATION_MAX_PROMPT_TOKENS)
    if room < 1:
        raise InputError(f"This model reads at most {context} tokens in all, so it can add at most {context - 1} "
                         f"new tokens after a one-token prompt; lower max new tokens.")
    if len(ids) <= room:
        return ids, None
    return ids[-room:], (f"The prompt was {len(ids):,} tokens; only its last {room:,} were used (the model reads "
                         f"{context:,} tokens at most, {max_new_tokens} are kept for the answer, and prompts are "
                         f"capped at {GENERATION_MAX_PROMPT_TOKENS:,}).")


# --- the sampling maths -----------------------------------------------------------------------------------------


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """Make tokens already in the text less likely (CTRL's rule, as transformers: divide positive, multiply
    negative)."""
    if penalty == 1.0 or seen.numel() == 0:
        return logits
    scores = logits.gather(-1, seen)
    scores = torch.where(scores < 0, scores * penalty, scores / penalty)
    return logits.scatter(-1, seen, scores)


def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Temperature (> 0), then top-k, then top-p (nucleus): removed tokens get -inf; their softmax sums to 1."""
    scores = logits / temperature if temperature != 1 else logits.clone()
    if 0 < top_k < scores.shape[-1]:
        kth = torch.topk(scores, top_k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        sorted_scores, order = torch.sort(scores, descending=True, dim=-1)
        probs = sorted_scores.softmax(-1)
        # drop a token when the more likely ones already make up top_p of the mass (the first always stays)
        drop_sorted = (probs.cumsum(-1) - probs) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        scores = scores.masked_fill(drop, float("-inf"))
    return scores


# --- what a generation yields ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One possible next token and its probability."""

    token_id: int
    token: str
    probability: float


@dataclass(frozen=True)
class Step:
    """One generated token: the text it added, its log-probability, and the candidates around it."""

    index: int
    token_id: int
    token: str  # the token on its own
    text: str  # what it added to the text (empty while a multi-byte character is incomplete)
    logprob: float  # log p(token | prefix) under the model, before any filtering
    probability_after: float  # its probability in the distribution it was actually chosen from
    kept: int  # how many tokens survived the filtering
    before: list[Candidate]  # the model's top candidates
    after: list[Candidate]  # the top candidates after penalty/temperature/top-k/top-p (empty for beam search)


@dataclass(frozen=True)
class PromptStats:
    """The prompt as the model read it."""

    tokens: int
    perplexity: float | None  # exp(mean negative log-likelihood of each prompt token given those before it)


# --- the decoding loop -----------------------------------------------------------------------------------------------


def top_candidates(probs: torch.Tensor, tokenizer: Any, n: int = GENERATION_TOP_CANDIDATES) -> list[Candidate]:
    """The `n` most likely tokens of a distribution (only those with non-zero probability)."""
    values, ids = torch.topk(probs, min(n, probs.shape[-1]))
    return [Candidate(int(i), tokenizer.decode([int(i)]), float(v)) for v, i in zip(values.tolist(), ids.tolist())
            if v > 0]


def prompt_perplexity(logits: torch.Tensor, ids: torch.Tensor) -> float | None:
    """Perplexity of a prompt from the logits of one forward pass over it (None for a one-token prompt)."""
    if ids.shape[-1] < 2:
        return None
    nll = torch.nn.functional.cross_entropy(logits[0, :-1].float(), ids[0, 1:])
    return float(nll.exp())


class TextAssembler:
    """Turns generated ids into text pieces, holding back bytes of a character that is not complete yet."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer, self.ids, self.text = tokenizer, [], ""

    def add(self, token_id: int) -> str:
        """Append one token; return the text it completes."""
        self.ids.append(token_id)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if text.endswith("\ufffd"):  # byte-level BPE: part of a multi-byte character
            return ""
        piece, self.text = text[len(self.text):], text
        return piece


def eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """Token ids that end a generation (the model's generation config and the tokenizer's end-of-sequence)."""
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    found = set(ids if isinstance(ids, (list, tuple)) else [ids] if ids is not None else [])
    if tokenizer.eos_token_id is not None:
        found.add(tokenizer.eos_token_id)
    return found


def cache_keyword(model: Any) -> str:
    """What this transformers version calls the KV cache in a forward call and its output."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


@torch.inference_mode()
def decode_steps(model: Any, tokenizer: Any, input_ids: torch.Tensor, settings: SamplingSettings,
                 stop_ids: set[int] | None = None) -> Iterator[PromptStats | Step]:
    """Greedy or sampled decoding with the KV cache: yields the prompt's stats, then one `Step` per token.

    Each step is yielded before the next forward pass, so a consumer that stops iterating stops the computation.
    """
    if settings.strategy == "beam":
        raise ValueError("beam search runs through beam_search(), not the step loop")
    stop_ids = eos_ids(model, tokenizer) if stop_ids is None else stop_ids
    device = input_ids.device
    generator = torch.Generator(device=device).manual_seed(settings.seed)
    keyword = cache_keyword(model)
    output = model(input_ids=input_ids, use_cache=True)
    yield PromptStats(int(input_ids.shape[-1]), prompt_perplexity(output.logits, input_ids))
    cache, logits = output[keyword], output.logits[0, -1].float()
    seen = input_ids[0].clone()
    assembler = TextAssembler(tokenizer)
    for index in range(settings.max_new_tokens):
        probs_before = logits.softmax(-1)
        scores = apply_repetition_penalty(logits, torch.unique(seen), settings.repetition_penalty)
        if settings.strategy == "greedy":
            token = int(scores.argmax())
            probs_after = torch.zeros_like(probs_before).index_fill_(0, torch.tensor([token], device=device), 1.0)
        else:
            probs_after = filter_logits(scores, settings.temperature, settings.top_k, settings.top_p).softmax(-1)
            token = int(torch.multinomial(probs_after, 1, generator=generator))
        yield Step(index=index, token_id=token, token=tokenizer.decode([token]), text=assembler.add(token),
                   logprob=float(probs_before[token].clamp_min(1e-45).log()),
                   probability_after=float(probs_after[token]), kept=int((probs_after > 0).sum()),
                   before=top_candidates(probs_before, tokenizer), after=top_candidates(probs_after, tokenizer))
        if token in stop_ids or index == settings.max_new_tokens - 1:
            return
        seen = torch.cat([seen, torch.tensor([token], device=device)])
        output = model(input_ids=torch.tensor([[token]], device=device), use_cache=True, **{keyword: cache})
        cache, logits = output[keyword], output.logits[0, -1].float()


def steps_for_sequence(model: Any, tokenizer: Any, input_ids: torch.Tensor, new_ids: list[int]) -> list[Step]:
    """Per-token log-probabilities and candidates of a finished continuation (one forward pass), e.g. a beam."""
    if not new_ids:
        return []
    full = torch.cat([input_ids, torch.tensor([new_ids], device=input_ids.device)], dim=-1)
    with torch.inference_mode():
        probs = model(input_ids=full).logits[0, input_ids.shape[-1] - 1:-1].float().softmax(-1)
    assembler, steps = TextAssembler(tokenizer), []
    for index, (token, p) in enumerate(zip(new_ids, probs)):
        steps.append(Step(index=index, token_id=token, token=tokenizer.decode([token]), text=assembler.add(token),
                          logprob=float(p[token].clamp_min(1e-45).log()), probability_after=float("nan"), kept=0,
                          before=top_candidates(p, tokenizer), after=[]))
    return steps


class _Interrupt:
    """A stopping criterion for `generate`: reports each step and ends generation once `event` is set."""

    def __init__(self, event: threading.Event, progress: queue.Queue) -> None:
        self.event, self.progress = event, progress

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        try:
            self.progress.put_nowait(int(input_ids.shape[-1]))
        except queue.Full:
            pass
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


def beam_search(model: Any, tokenizer: Any, input_ids: torch.Tensor, settings: SamplingSettings,
                ) -> Iterator[int | tuple[list[int], float]]:
    """Beam search with `model.generate`, on a helper thread so that it can be interrupted.

    Yields the running length after each step, then `(new token ids, length-normalised log-probability)`. Closing
    the iterator stops `generate` at its next step.
    """
    from transformers import StoppingCriteriaList

    stop, progress, result = threading.Event(), queue.Queue(maxsize=64), {}

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def run() -> None:
        try:
            with torch.inference_mode():
                out = model.generate(
                    input_ids=input_ids, attention_mask=torch.ones_like(input_ids), do_sample=False,
                    num_beams=settings.num_beams, max_new_tokens=settings.max_new_tokens,
                    repetition_penalty=settings.repetition_penalty, early_stopping=True,
                    pad_token_id=pad_id,
                    stopping_criteria=StoppingCriteriaList([_Interrupt(stop, progress)]),
                    return_dict_in_generate=True, output_scores=True)
            score = out.sequences_scores[0] if getattr(out, "sequences_scores", None) is not None else None
            result["value"] = (out.sequences[0, input_ids.shape[-1]:].tolist(),
                               float(score) if score is not None else float("nan"))
        except BaseException as exc:  # handed to the consumer
            result["error"] = exc
        finally:
            progress.put(None)

    worker = threading.Thread(target=run, name="txgallery-beam-search", daemon=True)
    worker.start()
    try:
        while (item := progress.get()) is not None:
            yield item - int(input_ids.shape[-1])
        if "error" in result:
            raise result["error"]
        new_ids, stop_ids = result["value"][0], eos_ids(model, tokenizer)
        # finished beams are padded after their end-of-sequence token: cut there
        end = next((i for i, t in enumerate(new_ids) if t in stop_ids), None)
        new_ids = new_ids if end is None else new_ids[:end + 1]
        yield new_ids, result["value"][1]
    finally:
        stop.set()
        worker.join()


# --- streaming with timings -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerationUpdate:
    """What a streaming generation hands the UI each time: new steps, the text so far and live timings."""

    steps: list[Step]  # steps since the previous update
    text: str  # the whole continuation so far
    prompt: PromptStats | None = None
    tokens: int = 0
    ttft_s: float | None = None  # time to first token, from the request (tokenisation included)
    tokens_per_s: float | None = None  # decoding speed after the first token
    done: bool = False
    finish_reason: str = ""  # "end of sequence", "max new tokens"
    beam_score: float | None = None
    status: str = ""
    notices: list[str] = field(default_factory=list)


def stream_generation(model: Any, tokenizer: Any, input_ids: torch.Tensor, settings: SamplingSettings,
                      notices: list[str] | None = None, started: float | None = None) -> Iterator[GenerationUpdate]:
    """Run one generation and yield a `GenerationUpdate` per token (beam search: per search step, then the result)."""
    import time

    started = time.perf_counter() if started is None else started
    notices = list(notices or [])
    stop_ids = eos_ids(model, tokenizer)
    if settings.strategy == "beam":
        prompt = PromptStats(int(input_ids.shape[-1]), None)
        for item in beam_search(model, tokenizer, input_ids, settings):
            if isinstance(item, int):
                yield GenerationUpdate([], "", prompt, status=f"beam search with {settings.num_beams} beams: "
                                       f"{item} of at most {settings.max_new_tokens} tokens", notices=notices)
                continue
            new_ids, score = item
            steps = steps_for_sequence(model, tokenizer, input_ids, new_ids)
            elapsed = time.perf_counter() - started
            reason = "end of sequence" if new_ids and new_ids[-1] in stop_ids else "max new tokens"
            yield GenerationUpdate(steps, "".join(s.text for s in steps), prompt, len(steps), ttft_s=elapsed,
                                   tokens_per_s=len(steps) / elapsed if elapsed > 0 else None, done=True,
                                   finish_reason=reason, beam_score=score, notices=notices)
        return
    prompt, text, first, count, last = None, "", None, 0, None
    for item in decode_steps(model, tokenizer, input_ids, settings, stop_ids):
        if isinstance(item, PromptStats):
            prompt = item
            continue
        now = time.perf_counter()
        first = now if first is None else first
        count, text, last = count + 1, text + item.text, item
        speed = (count - 1) / (now - first) if count > 1 and now > first else None
        yield GenerationUpdate([item], text, prompt, count, ttft_s=first - started, tokens_per_s=speed,
                               notices=notices)
    reason = "end of sequence" if last is not None and last.token_id in stop_ids else "max new tokens"
    yield GenerationUpdate([], text, prompt, count, ttft_s=None if first is None else first - started,
                           tokens_per_s=speed if count > 1 else None, done=True, finish_reason=reason,
                           notices=notices)


def interleave(*streams: Iterator[GenerationUpdate]) -> Iterator[tuple[int, GenerationUpdate]]:
    """Advance several generations in turn, one update each, yielding (which, update) until all are done."""
    live = dict(enumerate(streams))
    try:
        while live:
            for which in list(live):
                try:
                    yield which, next(live[which])
                except StopIteration:
                    del live[which]
    finally:
        for stream in streams:
            close = getattr(stream, "close", None)
            if close:
                close()
