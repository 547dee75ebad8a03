"""Each format's ids and labels against what the Hugging Face stack produces:
transformers' tokenizers and chat templates, with TRL's SFT masking rules."""
import json
import os

import numpy as np

from tinylm.data import load_dataset
from fixture_paths import tokenizer_fixture

IGNORE = -100


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def rows(ds):
    """All rows of a dataset in file order: (ids, labels) trimmed to their real tokens."""
    b = ds.rows(range(len(ds)))
    return [(ids[m == 1].tolist(), lab[m == 1].tolist())
            for ids, lab, m in zip(b["input_ids"], b["labels"], b["attention_mask"])]


def trl_split(hf, prompt, completion):
    """TRL SFTTrainer on a prompt-completion example: EOS appended as text,
    prompt tokens (by the length of the prompt alone) masked."""
    p = hf.encode(prompt)
    full = hf.encode(prompt + completion + hf.eos_token)
    return full, [IGNORE] * len(p) + full[len(p):]


PAIRS = [
    ("Command: turn on the kitchen lights\nJSON:\n", '{"intent": "lights_on", "room": "kitchen"}'),
    ("Ticket: Order #48213 was delivered to the wrong address.\nCategory:\n", "shipping"),
    ("Q: 12 + 30 =", " 42"),
    ("Translate: naïve café →", " 中文 😀"),
    ("The answer is ", "yes"),   # a space at the boundary: TRL splits by prompt length all the same
]


def test_text(tokenizer_case, tmp_path):
    tok, hf, _ = tokenizer_case
    texts = ["Hello world.", "  two  spaces\nand a newline", "émigré 中文 😀 123"]
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": t} for t in texts])
    train, _ = load_dataset(path, tok, seq_len=48, cache_dir=tmp_path / "c")
    for (ids, labels), text in zip(rows(train), texts):
        expected = hf.encode(text + hf.eos_token)
        assert ids == expected and labels == expected


def test_prompt_completion_masks_like_trl(tokenizer_case, tmp_path):
    tok, hf, _ = tokenizer_case
    path = write_jsonl(tmp_path / "pc.jsonl", [{"prompt": p, "completion": c} for p, c in PAIRS])
    train, _ = load_dataset(path, tok, format="prompt_completion", seq_len=64, cache_dir=tmp_path / "c")
    mismatches = 0
    for (ids, labels), (p, c) in zip(rows(train), PAIRS):
        assert (ids, labels) == trl_split(hf, p, c)
        mismatches += hf.encode(p + c)[:len(hf.encode(p))] != hf.encode(p)
    assert train.stats.prompt_mismatch == mismatches


def test_train_on_prompt_labels_every_token(tokenizer_case, tmp_path):
    tok, hf, _ = tokenizer_case
    path = write_jsonl(tmp_path / "pc.jsonl", [{"prompt": p, "completion": c} for p, c in PAIRS])
    train, _ = load_dataset(path, tok, seq_len=64, train_on_prompt=True, cache_dir=tmp_path / "c")
    for (ids, labels), (p, c) in zip(rows(train), PAIRS):
        assert ids == labels == hf.encode(p + c + hf.eos_token)


def test_alpaca_template(tokenizer_case, tmp_path):
    tok, hf, _ = tokenizer_case
    records = [{"instruction": "Name the colour.", "input": "The sky on a clear day.", "output": "Blue."},
               {"instruction": "Say hi.", "input": "", "output": "Hi!"}]
    prompts = [
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n### Instruction:\nName the colour.\n\n"
        "### Input:\nThe sky on a clear day.\n\n### Response:\n",
        "Below is an instruction that describes a task. Write a response that appropriately completes the "
        "request.\n\n### Instruction:\nSay hi.\n\n### Response:\n",
    ]
    path = write_jsonl(tmp_path / "a.jsonl", records)
    train, _ = load_dataset(path, tok, seq_len=96, cache_dir=tmp_path / "c")
    for (ids, labels), prompt, r in zip(rows(train), prompts, records):
        assert (ids, labels) == trl_split(hf, prompt, r["output"])


CHATS = [
    [{"role": "user", "content": "turn on the kitchen lights"},
     {"role": "assistant", "content": '{"intent": "lights_on", "room": "kitchen"}'}],
    [{"role": "system", "content": "You triage tickets."},
     {"role": "user", "content": "My order never came."}, {"role": "assistant", "content": "shipping"}],
]


def test_chat_single_turn_equals_transformers(qwen3_case, tmp_path):
    tok, hf = qwen3_case
    path = write_jsonl(tmp_path / "chat.jsonl", [{"messages": m} for m in CHATS])
    train, _ = load_dataset(path, tok, seq_len=64, cache_dir=tmp_path / "c")
    for (ids, labels), messages in zip(rows(train), CHATS):
        full = hf.hf.apply_chat_template(messages, tokenize=True, return_dict=False)
        prompt = hf.hf.apply_chat_template(messages[:-1], tokenize=True, add_generation_prompt=True,
                                           return_dict=False)
        assert ids == full
        # TRL's conversational prompt-completion rule
        assert labels == [IGNORE] * len(prompt) + full[len(prompt):]
    assert train.stats.masked_turns == 0


# ChatML with {% generation %} blocks: transformers' return_assistant_tokens_mask
# then marks the assistant spans independently of tinylm's prefix rendering.
GENERATION_TEMPLATE = (
    "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' }}"
    "{%- if message.role == 'assistant' %}{%- generation %}{{- message.content + '<|im_end|>\\n' }}"
    "{%- endgeneration %}{%- else %}{{- message.content + '<|im_end|>\\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
MULTI_TURN = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
              {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "2+2?"},
              {"role": "assistant", "content": "4"}]


def test_chat_multi_turn_equals_assistant_mask(load_tokenizer, tmp_path):
    from transformers import PreTrainedTokenizerFast
    src = tokenizer_fixture("qwen3")
    tdir = tmp_path / "tok"
    tdir.mkdir()
    (tdir / "tokenizer.json").write_bytes(open(os.path.join(src, "tokenizer.json"), "rb").read())
    config = json.load(open(os.path.join(src, "tokenizer_config.json")))
    config["chat_template"] = GENERATION_TEMPLATE
    (tdir / "tokenizer_config.json").write_text(json.dumps(config))
    hf = PreTrainedTokenizerFast.from_pretrained(str(tdir))
    out = hf.apply_chat_template(MULTI_TURN, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], np.array(out["assistant_masks"])
    assert mask.sum() > 0

    path = write_jsonl(tmp_path / "chat.jsonl", [{"messages": MULTI_TURN}])
    train, _ = load_dataset(path, load_tokenizer(str(tdir)), seq_len=64, cache_dir=tmp_path / "c")
    [(got_ids, got_labels)] = rows(train)
    assert got_ids == ids
    assert got_labels == np.where(mask == 1, ids, IGNORE).tolist()
    assert train.stats.masked_turns == 0


def test_chat_template_that_rewrites_history(qwen3_case, tmp_path):
    """Qwen3 renders an assistant turn with a <think> block only while it is
    the last; once a user turn follows, the block is gone. That earlier turn
    has no stable span: it is left out of the loss and counted."""
    tok, hf = qwen3_case
    path = write_jsonl(tmp_path / "chat.jsonl", [{"messages": MULTI_TURN}])
    train, _ = load_dataset(path, tok, seq_len=96, cache_dir=tmp_path / "c")
    [(ids, labels)] = rows(train)
    full = hf.hf.apply_chat_template(MULTI_TURN, tokenize=True, return_dict=False)
    prompt = hf.hf.apply_chat_template(MULTI_TURN[:-1], tokenize=True, add_generation_prompt=True,
                                       return_dict=False)
    assert ids == full
    assert labels == [IGNORE] * len(prompt) + full[len(prompt):]
    assert train.stats.masked_turns == 1


def test_format_detection_matches_declared(mistral, tmp_path):
    files = {
        "text": [{"text": "plain words"}],
        "prompt_completion": [{"prompt": "Q:", "completion": " A"}],
        "alpaca": [{"instruction": "Do it.", "output": "Done."}],
    }
    for fmt, records in files.items():
        path = write_jsonl(tmp_path / f"{fmt}.jsonl", records)
        detected, _ = load_dataset(path, mistral, seq_len=80, cache_dir=tmp_path / "c")
        declared, _ = load_dataset(path, mistral, format=fmt, seq_len=80, cache_dir=tmp_path / "c")
        assert rows(detected) == rows(declared)
        assert detected.files[0].format == fmt


def test_plain_text_file_is_paragraphs(tokenizer_case, tmp_path):
    tok, hf, _ = tokenizer_case
    path = tmp_path / "notes.txt"
    path.write_text("First paragraph,\nstill first.\n\n\nSecond one.\n", encoding="utf-8")
    train, _ = load_dataset(path, tok, seq_len=32, cache_dir=tmp_path / "c")
    got = rows(train)
    assert [ids for ids, _ in got] == [hf.encode("First paragraph,\nstill first." + hf.eos_token),
                                       hf.encode("Second one." + hf.eos_token)]
    assert train.files[0].lines.tolist() == [1, 5]
