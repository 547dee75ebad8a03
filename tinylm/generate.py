"""Text generation and token scoring on a tinylm.Model.

The decoder runs in C with a KV cache (tinylm._core.Generator): the prompts
once, then one token per step. Choosing the next token happens here, on the
[B, V] logits of each step, with transformers' logits processors re-stated in
numpy (repetition penalty, then temperature, top-k, top-p), so the same
settings mean the same distribution as `model.generate` in transformers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinylm import _core
from tinylm.batch_inputs import as_ids as _as_ids


@dataclass
class Generation:
    """One row's result: the text (stop string and EOS cut off), the new
    token ids (EOS included when it ended the row), why it ended ("eos",
    "stop" or "length") and the prompt's length in tokens."""
    text: str
    token_ids: list[int]
    finish_reason: str
    prompt_tokens: int


def _is_messages(item) -> bool:
    return isinstance(item, (list, tuple)) and len(item) > 0 and all(isinstance(m, dict) for m in item)


def _prompt_list(prompt) -> tuple[list, bool]:
    """([prompt, ...], whether a single prompt was given). A prompt is a
    string or a chat (a list of {"role", "content"} messages)."""
    if isinstance(prompt, str) or _is_messages(prompt):
        return [prompt], True
    if isinstance(prompt, (list, tuple)) and prompt and all(isinstance(p, str) or _is_messages(p) for p in prompt):
        return list(prompt), False
    raise TypeError("prompt must be a string, a chat (list of {'role', 'content'} dicts), or a non-empty list of "
                    f"those; got {type(prompt).__name__}")


def encode_prompt(tok, prompt) -> list[int]:
    """Token ids of a prompt: a string with the tokenizer's special tokens
    (BOS where it adds one, as training encodes prompts), or a chat rendered
    by its chat template with the generation prompt appended."""
    if isinstance(prompt, str):
        ids = tok.encode(prompt, add_special_tokens=True)
    else:
        ids = tok.apply_chat_template(list(prompt), add_generation_prompt=True, tokenize=True)
        if hasattr(ids, "keys"):  # transformers returns a BatchEncoding (a mapping) by default
            ids = ids["input_ids"]
    ids = [int(i) for i in ids]
    if not ids:
        raise ValueError(f"prompt {prompt!r} encodes to no tokens; a generation needs at least one")
    return ids


def eos_ids(tok, config: dict) -> set[int]:
    """Ids that end a row: the tokenizer's EOS and the model config's
    eos_token_id (an id or a list, as in Hugging Face configs)."""
    ids = set()
    for value in (getattr(tok, "eos_token_id", None), config.get("eos_token_id")):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return ids


# ---------------------------------------------------------------- processors
def apply_repetition_penalty(scores: np.ndarray, seen: list[np.ndarray], penalty: float) -> None:
    """transformers' RepetitionPenaltyLogitsProcessor, in place: the logit of
    every token already in row b (prompt and generated; not padding) is
    divided by penalty when positive, multiplied when negative."""
    for b, ids in enumerate(seen):
        if len(ids):
            picked = np.unique(ids)
            s = scores[b, picked]
            scores[b, picked] = np.where(s < 0, s * penalty, s / penalty)


def apply_top_k(scores: np.ndarray, top_k: int) -> None:
    """transformers' TopKLogitsWarper: keep logits >= the k-th largest (ties kept)."""
    k = min(top_k, scores.shape[-1])
    kth = np.partition(scores, -k, axis=-1)[:, -k][:, None]
    scores[scores < kth] = -np.inf


def apply_top_p(scores: np.ndarray, top_p: float) -> None:
    """transformers' TopPLogitsWarper: drop the least likely tokens whose
    cumulative probability (ascending order) is <= 1 - top_p; the most likely
    token always stays."""
    order = np.argsort(scores, axis=-1, kind="stable")
    ordered = np.take_along_axis(scores, order, axis=-1)
    probs = np.exp(ordered - ordered[:, -1:])
    probs /= probs.sum(axis=-1, keepdims=True)
    drop = np.cumsum(probs, axis=-1) <= 1.0 - top_p
    drop[:, -1] = False
    np.put_along_axis(scores, order, np.where(drop, -np.inf, ordered), axis=-1)


def process_logits(logits: np.ndarray, seen: list[np.ndarray], temperature: float, top_k: int, top_p: float,
                   repetition_penalty: float) -> np.ndarray:
    """The scores the next token is chosen from (float32 [B, V]), in
    transformers' order: repetition penalty (greedy too), then for sampling
    temperature, top-k and top-p."""
    scores = np.array(logits, dtype=np.float32)
    if repetition_penalty != 1.0:
        apply_repetition_penalty(scores, seen, np.float32(repetition_penalty))
    if temperature > 0.0:
        if temperature != 1.0:
            scores /= np.float32(temperature)
        if top_k > 0:
            apply_top_k(scores, top_k)
        if top_p < 1.0:
            apply_top_p(scores, top_p)
    return scores


def choose(scores: np.ndarray, sample: bool, rng: np.random.Generator) -> np.ndarray:
    """argmax per row, or a draw from softmax(scores) by inverse CDF (one
    uniform number per row, rows in order, so a seed fixes the result)."""
    if not sample:
        return np.argmax(scores, axis=-1)
    out = np.empty(scores.shape[0], dtype=np.int64)
    for b, row in enumerate(scores.astype(np.float64)):
        p = np.exp(row - row.max())
        cdf = np.cumsum(p)
        out[b] = min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), len(cdf) - 1)
    return out


def _check_settings(max_new_tokens, temperature, top_k, top_p, repetition_penalty, stop):
    if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if not temperature >= 0.0:
        raise ValueError(f"temperature must be >= 0 (0 is greedy), got {temperature!r}")
    if not isinstance(top_k, (int, np.integer)) or top_k < 0:
        raise ValueError(f"top_k must be an integer >= 0 (0 is off), got {top_k!r}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
    if not repetition_penalty > 0.0:
        raise ValueError(f"repetition_penalty must be > 0, got {repetition_penalty!r}")
    if any(not isinstance(s, str) or not s for s in stop):
        raise ValueError(f"stop must be a list of non-empty strings, got {stop!r}")


class _Row:
    """Bookkeeping of one batch row while it generates."""

    def __init__(self, prompt_ids: list[int]):
        self.prompt = prompt_ids
        self.new: list[int] = []
        self.finish: str | None = None
        self.cut: int | None = None  # where a stop string starts in the decoded text

    def text(self, tok) -> str:
        ids = self.new[:-1] if self.finish == "eos" else self.new
        text = tok.decode(ids, skip_special_tokens=True)
        return text if self.cut is None else text[:self.cut]


def _stop_at(text: str, stop: list[str]) -> int | None:
    hits = [i for i in (text.find(s) for s in stop) if i >= 0]
    return min(hits) if hits else None


class GenerationMixin:
    """generate() and token_logprobs() of tinylm.Model."""

    def generate(self, tok, prompt, max_new_tokens: int = 64, temperature: float = 0.0, top_k: int = 0,
                 top_p: float = 1.0, repetition_penalty: float = 1.0, stop=None, seed: int = 0,
                 return_details: bool = False):
        """Continues a prompt, or a batch of prompts, with the active adapter.

        prompt: a string, a chat (list of {"role", "content"} messages,
        rendered by tok's chat template with the generation prompt), or a
        list of those (a batch: rows are left-padded, each keeping positions
        0, 1, ... for its own tokens). temperature=0 is greedy decoding
        (deterministic); otherwise tokens are sampled from the scores after
        top_k (0: off) and top_p (1: off), seeded by `seed`.
        repetition_penalty as transformers defines it. A row ends at an EOS
        token (the tokenizer's or the config's), at the first stop string
        (cut from the text), or after max_new_tokens.

        Returns the generated text (a list for a list of prompts), or
        Generation records with return_details=True.
        """
        prompts, single = _prompt_list(prompt)
        stop = [stop] if isinstance(stop, str) else list(stop or [])
        _check_settings(max_new_tokens, temperature, top_k, top_p, repetition_penalty, stop)
        rows = [_Row(encode_prompt(tok, p)) for p in prompts]
        eos = eos_ids(tok, self._config)
        if max_new_tokens > 0:
            self._decode(rows, tok, int(max_new_tokens), float(temperature), int(top_k), float(top_p),
                         float(repetition_penalty), stop, eos, np.random.default_rng(seed))
        out = [Generation(r.text(tok), list(r.new), r.finish or "length", len(r.prompt)) for r in rows]
        if not return_details:
            out = [g.text for g in out]
        return out[0] if single else out

    def generate_ids(self, prompts: list, max_new_tokens: int = 64, temperature: float = 0.0, top_k: int = 0,
                     top_p: float = 1.0, seed: int = 0, eos=None) -> list[list[int]]:
        """generate() on token ids: each prompt a list of ids, each result the
        new ids (ending with the EOS that stopped it, if one did). eos: ids
        that end a row (default: the config's eos_token_id)."""
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("generate_ids needs at least one prompt, each of at least one token")
        _check_settings(max_new_tokens, temperature, top_k, top_p, 1.0, [])
        rows = [_Row([int(t) for t in p]) for p in prompts]
        stops = eos_ids(None, self._config) if eos is None else {int(e) for e in eos}
        if max_new_tokens > 0:
            self._decode(rows, None, int(max_new_tokens), float(temperature), int(top_k), float(top_p), 1.0, [],
                         stops, np.random.default_rng(seed))
        return [list(r.new) for r in rows]

    def _decode(self, rows, tok, max_new, temperature, top_k, top_p, penalty, stop, eos, rng) -> None:
        B, V = len(rows), self._config["vocab_size"]
        P = max(len(r.prompt) for r in rows)
        pad = np.array([P - len(r.prompt) for r in rows], dtype=np.int32)
        ids = np.zeros((B, P), dtype=np.int32)  # padding is never attended, so its id does not matter
        for b, r in enumerate(rows):
            ids[b, pad[b]:] = r.prompt
        session = _core.Generator(self._core, B, P + max_new)
        session.begin(pad)
        logits = np.empty((B, V), dtype=np.float32)
        session.feed(ids, P, logits)
        seen = [np.asarray(r.prompt, dtype=np.int64) for r in rows]
        for step in range(max_new):
            scores = process_logits(logits, seen, temperature, top_k, top_p, penalty)
            nxt = choose(scores, temperature > 0.0, rng)
            for b, r in enumerate(rows):
                if r.finish:
                    nxt[b] = 0  # a finished row keeps stepping with the batch; its tokens are dropped
                    continue
                token = int(nxt[b])
                r.new.append(token)
                seen[b] = np.append(seen[b], token)
                if token in eos:
                    r.finish = "eos"
                elif stop:
                    r.cut = _stop_at(tok.decode(r.new, skip_special_tokens=True), stop)
                    r.finish = "stop" if r.cut is not None else None
            if all(r.finish for r in rows) or step == max_new - 1:
                break
            ids = np.concatenate([ids, nxt.astype(np.int32)[:, None]], axis=1)
            if ids.shape[1] == self._reencode_at:
                # LongRoPE: the cached keys were rotated with the short
                # factors; once the sequence passes the original context the
                # whole of it is encoded again with the long ones (as
                # transformers' Phi3 does at that step)
                session.begin(pad)
                session.feed(ids, ids.shape[1], logits)
            else:
                session.feed(ids[:, -1:].copy(), 1, logits)

    def token_logprobs(self, input_ids, labels, attention_mask=None, position_ids=None) -> np.ndarray:
        """Log-likelihood of each label under the model, float32 [B, T], with
        loss()'s conventions: entry t is log p(labels[t] | tokens before t)
        (Hugging Face's shift), 0 at t = 0 and where labels are -100. So
        -sum() / count equals loss() on the same batch. Inference only:
        nothing is kept for backward."""
        ids = _as_ids(input_ids, "input_ids")
        labs = _as_ids(labels, "labels", ids.shape)
        mask = None if attention_mask is None else _as_ids(attention_mask, "attention_mask", ids.shape)
        pos = None if position_ids is None else _as_ids(position_ids, "position_ids", ids.shape)
        B, T = ids.shape
        targets = np.full((B, T), -100, dtype=np.int32)
        targets[:, :-1] = labs[:, 1:]  # logits at t score labels[t + 1]
        scored = np.empty((B, T), dtype=np.float32)
        _core.logprobs(self._core, ids, mask, pos, targets, B, T, scored)
        out = np.zeros((B, T), dtype=np.float32)
        out[:, 1:] = scored[:, :-1]
        return out
