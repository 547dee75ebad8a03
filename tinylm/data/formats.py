"""Example formats: detection, field checks, and tokenization into ids plus a
loss mask (1 where a token is a training target).

Where the prompt ends and the response begins (docs/data.md says more):
- text: there is no prompt; every token is a target.
- prompt_completion: ids = encode(prompt + completion) + [eos]; the first
  len(encode(prompt)) tokens are prompt. This is TRL's SFTTrainer rule, so
  labels equal TRL's completion-only loss; when encode(prompt) is not a
  prefix of the joint encoding (a merge across the boundary) the example is
  still split by length, as TRL does, and counted in prompt_mismatch.
- alpaca: the prompt is ALPACA_PROMPT (or ALPACA_PROMPT_NO_INPUT when
  "input" is empty) filled in; the completion is "output"; then as above.
- chat: ids = apply_chat_template(messages). The response of assistant
  message k is the tokens from the end of
  apply_chat_template(messages[:k], add_generation_prompt=True) to the end of
  apply_chat_template(messages[:k+1]). Templates that render a turn
  differently once later turns follow it (Qwen3 drops the <think> block of
  earlier turns) leave no stable span for that turn: it is left out of the
  loss and counted in masked_turns. The final turn is always stable.
"""
import numpy as np

FORMATS = ("text", "prompt_completion", "alpaca", "chat")

# The Alpaca template (Stanford Alpaca's wording, with a newline after
# "### Response:" as alpaca-lora and axolotl write it, so the response starts
# on a token boundary).
ALPACA_PROMPT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)

_FIELDS = {
    "text": ("text",),
    "prompt_completion": ("prompt", "completion"),
    "alpaca": ("instruction", "output"),
    "chat": ("messages",),
}


def detect(record):
    """The format a record's fields say, or None. Checked in this order, so a
    record with both "messages" and "text" is chat."""
    for fmt in ("chat", "alpaca", "prompt_completion", "text"):
        if all(k in record for k in _FIELDS[fmt]):
            return fmt
    return None


def describe_fields():
    return ('"text"; "prompt" + "completion"; "instruction" + "output" (+ optional "input", alpaca); '
            'or "messages" (chat)')


def problem(fmt, record):
    """What is wrong with record for fmt, or None."""
    for key in _FIELDS[fmt]:
        if key not in record:
            return f"missing field {key!r} for format {fmt!r} (fields present: {sorted(record)})"
    if fmt == "chat":
        return _chat_problem(record["messages"])
    keys = _FIELDS[fmt] + (("input",) if fmt == "alpaca" and "input" in record else ())
    for key in keys:
        if not isinstance(record[key], str):
            return f"field {key!r} must be a string, got {type(record[key]).__name__}"
    return None


def _chat_problem(messages):
    if not isinstance(messages, list) or not messages:
        return "field 'messages' must be a non-empty list of {\"role\", \"content\"} objects"
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            return f"messages[{i}] must be an object with string fields 'role' and 'content'"
    if not any(m["role"] == "assistant" for m in messages):
        return "no message with role 'assistant', so nothing to learn"
    return None


def alpaca_prompt(record):
    if record.get("input"):
        return ALPACA_PROMPT.format(instruction=record["instruction"], input=record["input"])
    return ALPACA_PROMPT_NO_INPUT.format(instruction=record["instruction"])


class Counts:
    """Per-file tallies the formats report (stored in the cache's attributes)."""

    def __init__(self):
        self.prompt_mismatch = 0
        self.masked_turns = 0


def _with_eos(ids, eos):
    # TRL appends EOS unless the text already ends with it; the model must learn to stop.
    return ids + [eos] if eos is not None and (not ids or ids[-1] != eos) else ids


def _split(tokenizer, prompts, completions, counts):
    eos = tokenizer.eos_token_id
    prompt_ids = tokenizer.encode_batch(prompts, add_special_tokens=True)
    full_ids = tokenizer.encode_batch([p + c for p, c in zip(prompts, completions)], add_special_tokens=True)
    out = []
    for p, f in zip(prompt_ids, full_ids):
        f = _with_eos(list(f), eos)
        if f[:len(p)] != list(p):
            counts.prompt_mismatch += 1
        mask = np.ones(len(f), np.uint8)
        mask[:len(p)] = 0
        out.append((f, mask))
    return out


def _chat(tokenizer, messages, counts):
    full = list(tokenizer.apply_chat_template(messages, add_generation_prompt=False, tokenize=True))
    mask = np.zeros(len(full), np.uint8)
    for k, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        start = list(tokenizer.apply_chat_template(messages[:k], add_generation_prompt=True, tokenize=True)) if k else []
        end = list(tokenizer.apply_chat_template(messages[:k + 1], add_generation_prompt=False, tokenize=True))
        if full[:len(start)] == start and full[:len(end)] == end:
            mask[len(start):len(end)] = 1
        else:
            counts.masked_turns += 1
    return full, mask


def tokenize(fmt, records, tokenizer, counts):
    """[(ids list, mask uint8 array)] for a batch of checked records of format fmt."""
    if fmt == "text":
        eos = tokenizer.eos_token_id
        encoded = tokenizer.encode_batch([r["text"] for r in records], add_special_tokens=True)
        return [(ids, np.ones(len(ids), np.uint8)) for ids in (_with_eos(list(e), eos) for e in encoded)]
    if fmt == "prompt_completion":
        return _split(tokenizer, [r["prompt"] for r in records], [r["completion"] for r in records], counts)
    if fmt == "alpaca":
        return _split(tokenizer, [alpaca_prompt(r) for r in records], [r["output"] for r in records], counts)
    return [_chat(tokenizer, r["messages"], counts) for r in records]
