"""Sequence-level distillation: `tinylm distill generate` writes the
teacher's greedy completions of a prompt file as a training set that
tinylm.data reads back."""
import json

import pytest

import tinylm
import tinylm.data
from eval_fixtures import model_folder
from tinylm import cli


def test_distill_generate_writes_the_teachers_completions(tmp_path):
    folder = tmp_path / "teacher"
    model_folder(folder, "llama_gqa")
    prompts = tmp_path / "prompts.jsonl"
    chat = [{"role": "user", "content": "Hello"}]
    prompts.write_text(json.dumps({"prompt": "The quick brown"}) + "\n\n" + json.dumps({"prompt": "Paris"}) + "\n"
                       + json.dumps({"prompt": "Hello world"}) + "\n")
    out = tmp_path / "kd.jsonl"
    code = cli.main(["distill", "generate", "--model", str(folder), "--prompts", str(prompts), "--output", str(out),
                     "--max-new-tokens", "5", "--batch-size", "2"])
    assert code == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    teacher, tok = tinylm.Model.from_pretrained(folder), tinylm.Tokenizer.from_pretrained(folder)
    assert [r["prompt"] for r in records] == ["The quick brown", "Paris", "Hello world"]
    for r in records:
        assert r["completion"] == teacher.generate(tok, r["prompt"], max_new_tokens=5)
    splits = tinylm.data.load_dataset(out, tok, seq_len=32, in_memory=True)  # a training set tinylm.data reads
    assert len(splits.train) == 3

    chats = tmp_path / "chats.jsonl"
    chats.write_text(json.dumps({"messages": chat + [{"role": "assistant", "content": "old answer"}]}) + "\n")
    code = cli.main(["distill", "generate", "--model", str(folder), "--prompts", str(chats), "--output", str(out),
                     "--max-new-tokens", "5"])
    assert code == 0
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["messages"] == chat + [{"role": "assistant", "content": teacher.generate(tok, chat, max_new_tokens=5)}]


def test_bad_prompt_files_are_named(tmp_path, capsys):
    folder = tmp_path / "teacher"
    model_folder(folder, "llama_gqa")
    prompts = tmp_path / "prompts.jsonl"
    out = tmp_path / "kd.jsonl"
    cases = [(json.dumps({"text": "no prompt"}), "expected a \"prompt\" string or a \"messages\" chat"),
             (json.dumps({"messages": [{"role": "user", "content": "hi"}]}), "a \"messages\" record after \"prompt\"")]
    for second, message in cases:
        prompts.write_text(json.dumps({"prompt": "ok"}) + "\n" + second + "\n")
        code = cli.main(["distill", "generate", "--model", str(folder), "--prompts", str(prompts), "--output", str(out)])
        assert code == 2 and not out.exists()
        assert f"{prompts}:2: {message}" in capsys.readouterr().err
