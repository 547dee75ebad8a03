"""Multiple-choice scoring with lm-evaluation-harness' conventions.

Each choice is scored by the summed log-likelihood of target_delimiter +
choice (default " ") after the context. Tokenization follows the harness'
Hugging Face backend: the context's trailing whitespace moves to the
continuation, context and context+continuation are encoded without special
tokens, and the continuation's tokens are what the joint encoding adds after
the context's; an empty context is replaced by the BOS id (EOS when there is
none). acc is the argmax of the log-likelihoods, acc_norm the argmax of the
log-likelihoods divided by each choice's length in characters.
"""
from __future__ import annotations

import numpy as np

from tinylm.evaluate.golden import Case


def prefix_token_id(tok) -> int:
    """The harness' stand-in for an empty context: BOS, else EOS."""
    for token in (getattr(tok, "bos_token_id", None), getattr(tok, "eos_token_id", None)):
        if token is not None:
            return int(token)
    raise ValueError("the tokenizer has neither a BOS nor an EOS token to stand for an empty context")


def encode_pair(tok, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) as the harness' _encode_pair makes them."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    if not context:
        return [prefix_token_id(tok)], list(tok.encode(continuation, add_special_tokens=False))
    whole = list(tok.encode(context + continuation, add_special_tokens=False))
    ctx = list(tok.encode(context, add_special_tokens=False))
    return ctx, whole[len(ctx):]


def context_text(tok, case: Case) -> str:
    """The prompt, or the chat rendered by the template with the generation prompt."""
    if case.messages is None:
        return case.prompt
    return tok.apply_chat_template(case.messages, add_generation_prompt=True, tokenize=False)


def choice_loglikelihoods(model, tok, case: Case) -> list[float]:
    """Summed log-likelihood of each choice, scored in one right-padded batch."""
    context = context_text(tok, case)
    pairs = [encode_pair(tok, context, case.target_delimiter + choice) for choice in case.choices]
    for choice, (_, cont) in zip(case.choices, pairs):
        if not cont:
            raise ValueError(f"{case.source}: choice {choice!r} adds no token after the context")
    T = max(len(c) + len(x) for c, x in pairs)
    ids = np.zeros((len(pairs), T), dtype=np.int32)
    mask = np.zeros_like(ids)
    labels = np.full_like(ids, -100)
    for i, (ctx, cont) in enumerate(pairs):
        row = ctx + cont
        ids[i, :len(row)] = row
        mask[i, :len(row)] = 1
        labels[i, len(ctx):len(row)] = cont
    lp = model.token_logprobs(ids, labels, attention_mask=mask)
    return [float(v) for v in lp.astype(np.float64).sum(axis=1)]


def score_choice(model, tok, case: Case) -> dict:
    """The case's log-likelihoods, predictions (acc and acc_norm) and pass."""
    lls = choice_loglikelihoods(model, tok, case)
    lengths = np.array([float(len(c)) for c in case.choices])
    pred = int(np.argmax(lls))
    pred_norm = int(np.argmax(np.array(lls) / lengths))
    acc, acc_norm = float(pred == case.expected), float(pred_norm == case.expected)
    return {"loglikelihoods": lls, "pred": pred, "pred_norm": pred_norm, "acc": acc, "acc_norm": acc_norm,
            "passed": bool(acc if case.metric == "acc" else acc_norm),
            "output": case.choices[pred if case.metric == "acc" else pred_norm]}
