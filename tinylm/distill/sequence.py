"""Sequence-level distillation (Kim and Rush, 2016): the teacher's own
completions of a prompt file, written as a JSONL training set the student
then fine-tunes on with plain cross-entropy (`tinylm train`)."""
from __future__ import annotations

import json
import os

from tqdm import tqdm

from tinylm.atomic import atomic_open
from tinylm.data.reader import Skips, read_jsonl
from tinylm.errors import FormatError


def _prompt_of(record: dict, path: str, line: int):
    """A record's prompt: "prompt" (text) or "messages" (a chat, the
    assistant's answer to come). Returns (prompt for generate, kind)."""
    if isinstance(record.get("prompt"), str):
        return record["prompt"], "prompt"
    messages = record.get("messages")
    if isinstance(messages, list) and messages and all(isinstance(m, dict) for m in messages):
        if messages[-1].get("role") == "assistant":  # a full chat: the teacher answers its last turn again
            messages = messages[:-1]
        if messages:
            return messages, "messages"
    raise FormatError(f"{path}:{line}: expected a \"prompt\" string or a \"messages\" chat")


def generate_dataset(teacher, tok, prompts: str | os.PathLike, output: str | os.PathLike, *,
                     max_new_tokens: int = 128, batch_size: int = 8, temperature: float = 0.0, top_k: int = 0,
                     top_p: float = 1.0, seed: int = 0, progress: bool = True) -> int:
    """Writes one training record per prompt of `prompts` (JSONL): the
    prompt with the teacher's completion, as {"prompt", "completion"} or a
    chat with the teacher's reply appended. Greedy by default; the file
    appears whole or not at all. Returns the number of records."""
    prompts, output = os.fspath(prompts), os.fspath(output)
    rows = [(line, *_prompt_of(rec, prompts, line)) for line, rec in read_jsonl(prompts, "raise", Skips())]
    if not rows:
        raise FormatError(f"{prompts}: no prompt")
    for line, _, kind in rows:  # one format per file, as tinylm.data reads a training set
        if kind != rows[0][2]:
            raise FormatError(f"{prompts}:{line}: a \"{kind}\" record after \"{rows[0][2]}\" ones (line "
                              f"{rows[0][0]}): a prompt file holds one kind")
    with atomic_open(output) as out, tqdm(total=len(rows), desc="teacher", unit="prompt", disable=not progress) as bar:
        for i in range(0, len(rows), batch_size):
            batch = rows[i:i + batch_size]
            texts = teacher.generate(tok, [p for _, p, _ in batch], max_new_tokens=max_new_tokens,
                                     temperature=temperature, top_k=top_k, top_p=top_p, seed=seed + i)
            for (_, prompt, kind), text in zip(batch, texts):
                record = ({"prompt": prompt, "completion": text} if kind == "prompt"
                          else {"messages": [*prompt, {"role": "assistant", "content": text}]})
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            bar.update(len(batch))
    return len(rows)
