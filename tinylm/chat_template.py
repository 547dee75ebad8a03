"""Chat templates rendered the way transformers renders them.

The template comes from chat_template.jinja (which transformers prefers)
or tokenizer_config.json's chat_template: one template, or a list of named
ones of which "default" (or "tool_use" when tools are given) is used. It runs
in Jinja2's ImmutableSandboxedEnvironment with trim_blocks, lstrip_blocks and
the loopcontrols extension; raise_exception, strftime_now, a tojson that
does not escape HTML, dict and an underscore-refusing namespace are defined,
and the {% generation %} block renders its body. The named special tokens
(bos_token, eos_token, ...) and the caller's keyword arguments are template
variables, next to messages, tools, documents and add_generation_prompt.
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.utils
import numpy as np
from jinja2.sandbox import ImmutableSandboxedEnvironment

# Names a message's reasoning is given under; templates read the first.
_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


def load_chat_template(path: str) -> str | dict[str, str] | None:
    """The folder's chat template(s): a string, {name: template}, or None."""
    templates: dict[str, str] = {}
    config_file = os.path.join(path, "tokenizer_config.json")
    if os.path.exists(config_file):
        with open(config_file, encoding="utf-8") as f:
            config = json.load(f)
        found = config.get("chat_template")
        if isinstance(found, str):
            templates["default"] = found
        elif isinstance(found, list):
            templates.update({t["name"]: t["template"] for t in found})
    jinja_file = os.path.join(path, "chat_template.jinja")
    if os.path.exists(jinja_file):
        with open(jinja_file, encoding="utf-8") as f:
            templates["default"] = f.read()
    if not templates:
        return None
    if list(templates) == ["default"]:
        return templates["default"]
    return templates


def _select(template: str | dict[str, str] | None, chosen: str | None, tools) -> str:
    if isinstance(template, dict):
        if chosen is not None and chosen in template:
            return template[chosen]
        if chosen is None:
            if tools is not None and "tool_use" in template:
                return template["tool_use"]
            if "default" in template:
                return template["default"]
            raise ValueError(f"this tokenizer has several chat templates and none is 'default'; "
                             f"pass chat_template= one of {sorted(template)}")
    if chosen is not None:
        return chosen
    if template is None:
        raise ValueError("this tokenizer has no chat template (tokenizer_config.json has no chat_template "
                         "and there is no chat_template.jinja); pass chat_template=")
    return template


class _Generation(jinja2.ext.Extension):
    """{% generation %}...{% endgeneration %}: marks assistant text for
    transformers' assistant masks; rendering only emits the body."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

    def _body(self, caller):
        return caller()


def _raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # Jinja's own tojson escapes HTML characters; transformers' does not.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(format):
    return datetime.now().strftime(format)


class _TemplateDict:
    """dict(...) and dict.fromkeys(...) without attribute access to the type."""

    def __call__(self, *args, **kwargs):
        return dict(*args, **kwargs)

    def fromkeys(self, *args, **kwargs):
        return dict.fromkeys(*args, **kwargs)


class _Namespace(jinja2.utils.Namespace):
    """namespace() that refuses underscore names (CPython internals)."""

    def __init__(*args, **kwargs):
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            _Namespace._check(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name, value):
        _Namespace._check(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name):
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(
                f"chat templates cannot store underscore-prefixed attributes on a namespace, got {name!r}")


@lru_cache(maxsize=32)
def _compile(template: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[_Generation, jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["dict"] = _TemplateDict()
    env.globals["namespace"] = _Namespace
    return env.from_string(template)


def _plain(value):
    """Plain JSON-like data for the sandbox: rich objects' methods are never
    reachable from a template (numpy scalars become Python ones, dataclasses
    and pydantic models dicts, anything else a "<TypeName>" placeholder)."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, Mapping):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, np.generic):
        return _plain(value.item())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if callable(getattr(value, "model_dump", None)):
        return _plain(value.model_dump())
    return f"<{type(value).__name__}>"


def _messages(messages) -> list[dict]:
    """Messages as templates see them: None-valued keys dropped, and the
    reasoning given under any of its names available as reasoning_content
    and thinking."""
    out = []
    for message in _plain([{k: v for k, v in m.items() if v is not None} for m in messages]):
        if not isinstance(message, dict):
            raise TypeError(f"chat messages must be dicts, got {message!r}")
        reasoning = next((message[k] for k in _REASONING_FIELDS if message.get(k) is not None), None)
        if reasoning is not None:
            message = {"thinking": reasoning, **message, "reasoning_content": reasoning}
        out.append(message)
    return out


def render_chat_template(template, messages, *, chat_template: str | None = None, add_generation_prompt: bool = False,
                         tools=None, documents=None, special_tokens: Mapping[str, str] | None = None, **kwargs) -> str:
    """The text of one conversation (a list of {"role", "content", ...})."""
    if not messages:
        raise ValueError("cannot apply a chat template to an empty conversation")
    if tools is not None and not all(isinstance(t, dict) for t in tools):
        raise TypeError("tools must be JSON schemas (dicts)")
    if documents is not None and not all(isinstance(d, dict) for d in documents):
        raise TypeError("documents must be dicts with 'title' and 'text' keys")
    source = _select(template, chat_template, tools)
    variables = {**dict(special_tokens or {}), **kwargs}
    return _compile(source).render(messages=_messages(messages), tools=_plain(tools), documents=_plain(documents),
                                   add_generation_prompt=add_generation_prompt, **_plain(variables))
