"""Bad input gives clear errors that name file:line, or is skipped and counted."""
import json

import pytest

from tinylm.data import load_dataset
from tinylm.errors import FormatError

GOOD = json.dumps({"prompt": "Q: hi\n", "completion": "hello"})


def load(path, tok, tmp_path, **kw):
    kw.setdefault("seq_len", 32)
    return load_dataset(path, tok, cache_dir=tmp_path / "cache", **kw)


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


@pytest.mark.parametrize("line, message", [
    ('{"prompt": "a", ', r"bad.jsonl:3: malformed JSON: .* at column \d+"),
    ('[1, 2]', r"bad.jsonl:3: expected a JSON object, got list"),
    ('{"prompt": "a"}', r"bad.jsonl:3: missing field 'completion' for format 'prompt_completion' "
                        r"\(fields present: \['prompt'\]\)"),
    ('{"prompt": "a", "completion": 7}', r"bad.jsonl:3: field 'completion' must be a string, got int"),
])
def test_bad_line_names_file_and_line(mistral, tmp_path, line, message):
    path = write(tmp_path, "bad.jsonl", f"{GOOD}\n\n{line}\n{GOOD}\n")   # line 2 is blank: not an example
    with pytest.raises(FormatError, match=message):
        load(path, mistral, tmp_path)
    train, _ = load(path, mistral, tmp_path, on_error="skip")
    assert train.stats.skipped == 1 and train.stats.examples == 2


def test_non_utf8(mistral, tmp_path):
    path = write(tmp_path, "latin1.jsonl", GOOD.encode() + b"\n" + '{"prompt": "caf\u00e9", "completion": "x"}\n'.encode("latin-1"))
    with pytest.raises(FormatError, match=r"latin1.jsonl:2: not valid UTF-8 \(byte 0xe9 at column 16\)"):
        load(path, mistral, tmp_path)
    assert load(path, mistral, tmp_path, on_error="skip").train.stats.skipped == 1


def test_byte_order_mark_is_not_content(mistral, tmp_path):
    path = write(tmp_path, "bom.jsonl", b"\xef\xbb\xbf" + GOOD.encode() + b"\n")
    assert load(path, mistral, tmp_path).train.stats.examples == 1


def test_unknown_fields(mistral, tmp_path):
    path = write(tmp_path, "odd.jsonl", '{"question": "a", "answer": "b"}\n')
    with pytest.raises(FormatError, match=r"odd.jsonl:1: cannot tell the format from fields \['answer', 'question'\]"):
        load(path, mistral, tmp_path)


@pytest.mark.parametrize("messages, message", [
    ([{"role": "user", "content": "hi"}], "no message with role 'assistant'"),
    ("hi", "field 'messages' must be a non-empty list"),
    ([{"role": "user"}], r"messages\[0\] must be an object with string fields"),
])
def test_bad_chat_records(mistral, tmp_path, messages, message):
    path = write(tmp_path, "chat.jsonl", json.dumps({"messages": messages}) + "\n")
    with pytest.raises(FormatError, match="chat.jsonl:1: " + message):
        load(path, mistral, tmp_path)


def test_empty_dataset(mistral, tmp_path):
    with pytest.raises(FormatError, match=r"empty.jsonl: no examples in the file$"):
        load(write(tmp_path, "empty.jsonl", "\n  \n"), mistral, tmp_path)
    path = write(tmp_path, "allbad.jsonl", "{oops\n{oops\n")
    with pytest.raises(FormatError, match=r"allbad.jsonl: no examples in the file; 2 lines skipped, the first: "
                                         r".*allbad.jsonl:1: malformed JSON"):
        load(path, mistral, tmp_path, on_error="skip")


def test_truncation_policies(mistral, tmp_path):
    long = json.dumps({"prompt": "word " * 40, "completion": "end"})
    path = write(tmp_path, "long.jsonl", f"{GOOD}\n{GOOD}\n\n{long}\n")
    with pytest.raises(ValueError, match=r"long.jsonl:4: example has \d+ tokens, more than seq_len=16 "
                                         r"\(1 such examples; pass truncation='truncate' or 'drop'\)"):
        load(path, mistral, tmp_path, seq_len=16, truncation="error")
    cut = load(path, mistral, tmp_path, seq_len=16).train
    assert (cut.stats.examples, cut.stats.truncated, cut.stats.dropped) == (3, 1, 0)
    assert cut.rows(range(3))["attention_mask"].sum(axis=1).max() == 16
    dropped = load(path, mistral, tmp_path, seq_len=16, truncation="drop").train
    assert (dropped.stats.examples, dropped.stats.truncated, dropped.stats.dropped) == (2, 0, 1)
    only_long = write(tmp_path, "only_long.jsonl", long + "\n")
    with pytest.raises(ValueError, match="the train split is empty"):
        load(only_long, mistral, tmp_path, seq_len=16, truncation="drop")


@pytest.mark.parametrize("kw, exc, message", [
    ({"truncation": "cut"}, ValueError, "truncation must be one of"),
    ({"on_error": "ignore"}, ValueError, "on_error must be one of"),
    ({"format": "sharegpt"}, ValueError, "format must be None"),
    ({"seq_len": 0}, ValueError, "seq_len must be a positive integer"),
    ({"validation": 1.5}, ValueError, r"validation as a fraction must be in \(0, 1\)"),
])
def test_bad_arguments(mistral, tmp_path, kw, exc, message):
    path = write(tmp_path, "ok.jsonl", GOOD + "\n" + GOOD + "\n")
    with pytest.raises(exc, match=message):
        load(path, mistral, tmp_path, **kw)


def test_missing_file_and_txt_with_a_json_format(mistral, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load(tmp_path / "nope.jsonl", mistral, tmp_path)
    with pytest.raises(ValueError, match=r"notes.txt: a .txt file holds plain text; format='chat'"):
        load(write(tmp_path, "notes.txt", "hello\n"), mistral, tmp_path, format="chat")
