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

from tinylm.errors import FormatError

# Names a message's reasoning is given under; templates read the first.
_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


def load_chat_template(path: str) -> tuple[str | dict[str, str] | None, str | None]:
    """The folder's chat template(s) (a string, {name: template}, or None)
    and the file they came from. A file that is not UTF-8 JSON, or a
    chat_template that is neither a string nor a list of {"name", "template"}
    strings, is a FormatError naming the file and the field."""
    templates: dict[str, str] = {}
    source = None
    config_file = os.path.join(path, "tokenizer_config.json")
    if os.path.exists(config_file):
        config = _read_json(config_file)
        found = config.get("chat_template") if isinstance(config, dict) else None
        if isinstance(found, str):
            templates["default"] = found
        elif isinstance(found, list):
            for k, t in enumerate(found):
                if not (isinstance(t, dict) and isinstance(t.get("name"), str) and isinstance(t.get("template"), str)):
                    raise FormatError(f"{config_file}: chat_template[{k}] must be "
                                      f"{{\"name\": string, \"template\": string}}")
                templates[t["name"]] = t["template"]
        elif found is not None:
            raise FormatError(f"{config_file}: chat_template must be a string or a list of named templates, "
                              f"got {type(found).__name__}")
        source = config_file
    jinja_file = os.path.join(path, "chat_template.jinja")
    if os.path.exists(jinja_file):
        templates["default"] = _read_text(jinja_file)
        source = jinja_file
    if not templates:
        return None, None
    if list(templates) == ["default"]:
        return templates["default"], source
    return templates, source


def _read_text(path: str) -> str:
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"{path}: not valid UTF-8 (byte {exc.start})") from None


def _read_json(path: str):
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise FormatError(f"{path}: not valid JSON: {exc}") from None
    except RecursionError:
        raise FormatError(f"{path}: not valid JSON: nested too deeply") from None


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


class ChatTemplateError(FormatError, jinja2.exceptions.TemplateError):
    """A chat template that does not compile or fails while rendering
    (raise_exception, the sandbox, an error in its own code). A FormatError
    naming the template's file, and a jinja2 TemplateError, which is what
    transformers raises, so code written for either catches it."""


# What a template's own code can raise while rendering (besides jinja2's
# errors): the template is at fault, not the caller.
_TEMPLATE_FAULTS = (jinja2.exceptions.TemplateError, TypeError, ValueError, AttributeError, LookupError,
                    ArithmeticError, RecursionError)


def render_chat_template(template, messages, *, chat_template: str | None = None, add_generation_prompt: bool = False,
                         tools=None, documents=None, special_tokens: Mapping[str, str] | None = None,
                         source: str = "chat template", **kwargs) -> str:
    """The text of one conversation (a list of {"role", "content", ...}).
    source names where the template came from in errors: a template that
    does not compile or fails while rendering (raise_exception included) is
    a ChatTemplateError naming it."""
    if not messages:
        raise ValueError("cannot apply a chat template to an empty conversation")
    if tools is not None and not all(isinstance(t, dict) for t in tools):
        raise TypeError("tools must be JSON schemas (dicts)")
    if documents is not None and not all(isinstance(d, dict) for d in documents):
        raise TypeError("documents must be dicts with 'title' and 'text' keys")
    text = _select(template, chat_template, tools)
    if chat_template is not None and text == chat_template:
        source = "the chat_template argument"
    variables = {**dict(special_tokens or {}), **kwargs}
    plain_messages = _messages(messages)
    try:
        compiled = _compile(text)
    except jinja2.exceptions.TemplateSyntaxError as exc:
        raise ChatTemplateError(f"{source}: chat_template line {exc.lineno}: {exc.message}") from None
    try:
        return compiled.render(messages=plain_messages, tools=_plain(tools), documents=_plain(documents),
                               add_generation_prompt=add_generation_prompt, **_plain(variables))
    except FormatError:
        raise
    except _TEMPLATE_FAULTS as exc:
        raise ChatTemplateError(f"{source}: chat_template failed while rendering: {type(exc).__name__}: {exc}") from None
