"""Chat templates rendered by tinylm against transformers' apply_chat_template.

Qwen3's own template (tools, reasoning, enable_thinking) and templates written
here to use every helper transformers defines (bos/eos tokens, raise_exception,
loop controls, tojson, namespace, dict, strftime_now, {% generation %}) must
render to the same text, and tokenize to the ids `tokenizers` gives that text.
"""
from __future__ import annotations

import json
import os

import jinja2
import pytest
from tokenizers import Tokenizer as HFTokenizer
from transformers import AutoTokenizer

import tinylm
from fixture_paths import tokenizer_fixture



WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city, °C",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}

CONVERSATIONS = {
    "system_user": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi <b>there</b> — ça va?"}],
    "multi_turn_think": [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "<think>\nadd them\n</think>\n\n4"},
        {"role": "user", "content": "and 3+3?"},
    ],
    "reasoning_field": [
        {"role": "user", "content": "why?"},
        {"role": "assistant", "content": "because", "reasoning_content": "thinking hard"},
    ],
    "thinking_alias": [
        {"role": "user", "content": "why?"},
        {"role": "assistant", "content": "because", "thinking": "aliased reasoning"},
    ],
    "tool_calls": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "{\"temp\": 21}"},
        {"role": "tool", "content": "{\"wind\": 3}"},
    ],
}


@pytest.fixture(scope="module")
def qwen():
    path = tokenizer_fixture("qwen3")
    return tinylm.Tokenizer.from_pretrained(path), AutoTokenizer.from_pretrained(path), HFTokenizer.from_file(
        os.path.join(path, "tokenizer.json"))


@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
@pytest.mark.parametrize("generation_prompt", [False, True])
def test_qwen3_template(qwen, name, generation_prompt):
    ours, ref, hf = qwen
    messages = CONVERSATIONS[name]
    tools = [WEATHER_TOOL] if name == "tool_calls" else None
    kwargs = dict(add_generation_prompt=generation_prompt, tools=tools)
    text = ours.apply_chat_template(messages, tokenize=False, **kwargs)
    assert text == ref.apply_chat_template(messages, tokenize=False, **kwargs)
    ids = ours.apply_chat_template(messages, **kwargs)
    assert ids == hf.encode(text, add_special_tokens=False).ids
    assert ids == ref.apply_chat_template(messages, tokenize=True, return_dict=False, **kwargs)


def test_qwen3_template_kwargs(qwen):
    """Extra keyword arguments are template variables (Qwen3's enable_thinking)."""
    ours, ref, _ = qwen
    messages = CONVERSATIONS["system_user"]
    for flag in (False, True):
        got = ours.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, enable_thinking=flag)
        assert got == ref.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, enable_thinking=flag)
    assert "<think>\n\n</think>" in ours.apply_chat_template(messages, True, False, enable_thinking=False)


def test_none_values_are_dropped(qwen):
    """Keys whose value is None are removed before rendering, as transformers
    does: Qwen3's template then finds no content and fails the same way."""
    ours, ref, _ = qwen
    messages = [dict(m) for m in CONVERSATIONS["tool_calls"]]
    messages[1]["content"] = None
    for tok in (ours, ref):
        # transformers raises jinja2's UndefinedError, tinylm a ChatTemplateError (a TemplateError) naming the file
        with pytest.raises(jinja2.TemplateError, match="no attribute 'content'"):
            tok.apply_chat_template(messages, tools=[WEATHER_TOOL], tokenize=False)
    messages = [{"role": "user", "content": "hi", "name": None}]
    assert ours.apply_chat_template(messages, tokenize=False, chat_template="{{ messages[0] | tojson }}") == \
        '{"role": "user", "content": "hi"}'


HELPERS_TEMPLATE = (
    "{{ bos_token }}"
    "{% set ns = namespace(n=0) %}"
    "{% for m in messages %}"
    "{% if m.role == 'system' %}{% continue %}{% endif %}"
    "{% if m.role == 'stop' %}{% break %}{% endif %}"
    "{% if m.role not in ['user', 'assistant'] %}{{ raise_exception('bad role ' + m.role) }}{% endif %}"
    "{% set ns.n = ns.n + 1 %}"
    "  [{{ ns.n }}] {{ m.role }}: {% if m.role == 'assistant' %}{% generation %}{{ m.content }}{% endgeneration %}"
    "{{ eos_token }}{% else %}{{ m.content | trim }}{% endif %}\n"
    "{% endfor %}"
    "{{ meta | tojson }} {{ meta | tojson(indent=2) }} {{ dict(a=1, b=[1, 2]) | tojson }}"
    "{{ strftime_now('%Y') | length }} {{ custom_var }}"
    "{% if add_generation_prompt %}[{{ ns.n + 1 }}] assistant:{% endif %}"
)

HELPER_MESSAGES = [
    {"role": "system", "content": "skipped"},
    {"role": "user", "content": "  <tags> & \"quotes\" é  "},
    {"role": "assistant", "content": "réponse"},
    {"role": "stop", "content": ""},
    {"role": "user", "content": "never rendered"},
]


def write_template_dir(path, mistral: str, config_template, jinja_file: str | None = None) -> str:
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(mistral, "tokenizer.json"), encoding="utf-8") as f:
        tok = f.read()
    with open(os.path.join(path, "tokenizer.json"), "w", encoding="utf-8") as f:
        f.write(tok)
    config = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    if config_template is not None:
        config["chat_template"] = config_template
    with open(os.path.join(path, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f)
    if jinja_file is not None:
        with open(os.path.join(path, "chat_template.jinja"), "w", encoding="utf-8") as f:
            f.write(jinja_file)
    return str(path)


@pytest.mark.parametrize("generation_prompt", [False, True])
def test_template_helpers(tmp_path, generation_prompt):
    path = write_template_dir(tmp_path, tokenizer_fixture("mistral-7b"), HELPERS_TEMPLATE)
    ours, ref = tinylm.Tokenizer.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    kwargs = dict(add_generation_prompt=generation_prompt, meta={"k": "ü<>", "n": [1, None]}, custom_var="cv")
    text = ours.apply_chat_template(HELPER_MESSAGES, tokenize=False, **kwargs)
    assert text == ref.apply_chat_template(HELPER_MESSAGES, tokenize=False, **kwargs)
    assert text.startswith("<s>") and "réponse</s>" in text and "never" not in text
    hf = HFTokenizer.from_file(os.path.join(path, "tokenizer.json"))
    assert ours.apply_chat_template(HELPER_MESSAGES, **kwargs) == hf.encode(text, add_special_tokens=False).ids


def test_template_errors(tmp_path):
    path = write_template_dir(tmp_path, tokenizer_fixture("mistral-7b"), HELPERS_TEMPLATE)
    ours, ref = tinylm.Tokenizer.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    bad = [{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}]
    for tok in (ours, ref):
        with pytest.raises(jinja2.TemplateError, match="bad role robot"):
            tok.apply_chat_template(bad, tokenize=False, meta=1, custom_var=1)
    with pytest.raises(tinylm.FormatError, match=r"tokenizer_config.json: chat_template failed while rendering: "
                                                 r"TemplateError: bad role robot"):
        ours.apply_chat_template(bad, tokenize=False)
    sneaky = "{% set ns = namespace(_x=1) %}{{ ns._x }}"
    with pytest.raises(tinylm.FormatError, match="the chat_template argument: .*SecurityError: .*underscore"):
        ours.apply_chat_template(bad, tokenize=False, chat_template=sneaky)
    with pytest.raises(jinja2.TemplateError, match="SecurityError"):   # the sandbox refuses internals
        ours.apply_chat_template(bad, tokenize=False, chat_template="{{ messages.__class__.__mro__ }}")
    with pytest.raises(tinylm.FormatError, match="the chat_template argument: chat_template line 1: "):
        ours.apply_chat_template(bad, tokenize=False, chat_template="{% for %}")
    with pytest.raises(ValueError, match="empty conversation"):
        ours.apply_chat_template([], tokenize=False)
    bare = tinylm.Tokenizer.from_pretrained(tokenizer_fixture("mistral-7b"))
    assert bare.chat_template is None
    with pytest.raises(ValueError, match="no chat template"):
        bare.apply_chat_template(bad)


def test_template_sources(tmp_path):
    """Named templates pick "default" or, with tools, "tool_use"; a
    chat_template.jinja file wins over tokenizer_config.json's template."""
    mistral = tokenizer_fixture("mistral-7b")
    named = [{"name": "default", "template": "D{{ messages[0].content }}"},
             {"name": "tool_use", "template": "T{{ tools | length }}"}]
    path = write_template_dir(tmp_path / "named", mistral, named)
    ours, ref = tinylm.Tokenizer.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    msgs = [{"role": "user", "content": "x"}]
    for kwargs in ({}, {"tools": [WEATHER_TOOL]}, {"chat_template": "tool_use", "tools": []}):
        assert ours.apply_chat_template(msgs, tokenize=False, **kwargs) == ref.apply_chat_template(
            msgs, tokenize=False, **kwargs)
    assert ours.apply_chat_template(msgs, tokenize=False, tools=[WEATHER_TOOL]) == "T1"

    path = write_template_dir(tmp_path / "file", mistral, "config {{ messages[0].content }}", "file {{ messages[0].content }}")
    ours, ref = tinylm.Tokenizer.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    assert ours.chat_template == "file {{ messages[0].content }}"
    assert ours.apply_chat_template(msgs, tokenize=False) == ref.apply_chat_template(msgs, tokenize=False) == "file x"
