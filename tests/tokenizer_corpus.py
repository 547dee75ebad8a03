"""Texts the tokenizer tests encode with tinylm and with `tokenizers`.

CORPUS covers, on purpose: ASCII prose, code, whitespace runs (long ones
too), CRLF, digits, punctuation, English contractions in every case (and the
long s that case-folds to s), accented Latin in composed and decomposed
form, CJK, emoji with skin tones and zero-width joiners, flags, control
characters and Unicode spaces the regex engines disagree on, and special
tokens inside text. fuzz_texts() adds random mixtures of the same material.
"""
from __future__ import annotations

import random

PROSE = (
    "The quick brown fox jumps over the lazy dog. It wasn't the first time; it won't be the last.\n"
    "Tiny language models fine-tune on laptops: a LoRA adapter of rank 16 adds ~0.5% parameters."
)
CODE = (
    "def fib(n: int) -> int:\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n\n"
    "for (int i = 0; i < n; ++i) { x[i] = a * x[i] + b; }  // saxpy\n"
    "\tconst s = `${a}+${b}`; if (x !== null && y >= 3) return {ok: true, v: [1, 2, 3]};\n"
    "SELECT name, COUNT(*) FROM users WHERE age>=18 GROUP BY name;  -- comment\n"
    "#include <stdio.h>\nint main(void){printf(\"%d\\n\", 42);}\n"
)
WHITESPACE = [
    " ", "  ", "\t", "\n", "\n\n\n", "a  b", "a   b    c", "   leading", "trailing   ", "  both  ",
    "tab\tseparated\tvalues", "mixed \t \n \r\n  end", " " * 40 + "x", "\n" * 12 + "y", "x" + " " * 33,
    " \n \n \n ", "a\u00a0b\u00a0\u00a0c", "\u3000\u3000full width", "a \u2003 b",
]
CRLF = ["line one\r\nline two\r\n", "\r\n\r\n", "a\rb\r\n\rc", "windows\r\n  indented\r\n\ttab\r\n"]
DIGITS = [
    "0", "12", "123", "1234", "12345678901234567890", "3.14159", "1,000,000", "2024-01-31T12:34:56Z",
    "v1.2.3", "x=10; y=-20.5e+3", "٣٤٥ and １２３ and ²³", "0x1F 0b1010 1e-9",
]
PUNCT = [
    "Hello, world!", "Wait... what?!", "(a) [b] {c} <d>", "\"quoted\" and 'single'", "e-mail: a.b@c.de",
    "#hashtag @mention $100 50% ^_^ ~tilde~ |pipe| \\back\\slash", "!!!???...,,,;;;:::", "--- *** ___ ===",
    "«guillemets» „quotes“ ‘curly’ — dash – en…", "¡Hola! ¿Qué tal?",
]
CONTRACTIONS = [
    "I'm you're he's she'd we'll they've don't can't won't",
    "I'M YOU'RE HE'S SHE'D WE'LL THEY'VE DON'T CAN'T",
    "It'S wE'Ll tHeY'vE", "rock 'n' roll, 'tis, y'all, o'clock", "'s 't 're 've 'm 'll 'd",
    "Jack'ſ hat", "don’t (curly apostrophe)", "''double''",
]
LATIN = [
    "café naïve résumé façade jalapeño Ångström Ærø Øre straße", "Crème brûlée à la française",
    "cafe\u0301 nai\u0308ve re\u0301sume\u0301",  # decomposed: NFC changes these
    "Đặng Thị Ngọc Hà, Việt Nam", "Zażółć gęślą jaźń", "Ελληνικά και Русский текст", "ǅungla Ǆ ǆ",
    "ﬁnal ﬂow ﬀ", "ẞ ß SS",
]
CJK = [
    "日本語のテキストです。", "中文文本，包含标点符号！", "한국어 텍스트입니다", "混合 mixed テキスト 123",
    "東京都渋谷区", "ｶﾀｶﾅ ﾃｽﾄ", "𠀀𠀁 extension B",
]
EMOJI = [
    "😀", "😀😃😄", "👍🏽 👍🏿", "👨‍👩‍👧‍👦 family", "🏳️‍🌈 flag", "🇫🇷🇯🇵🇺🇸", "❤️‍🔥", "🧑🏻‍💻 coder",
    "emoji😀inline", "keycap 1️⃣ #️⃣", "🫠🫡🪿",
]
CONTROL = [
    "\x00", "a\x00b", "\x01\x02\x03\x1f", "bell\x07 esc\x1b[31m red", "\x7f del", "\x0b\x0c vt ff",
    "nel\x85line", "mongolian\u180evowel", "\u180e\u180e x 1\u180e2 !\u180e? \u180e\n", "zero\u200bwidth", "line\u2028sep\u2029para", "bom\ufeffhere",
    "rtl \u202eevil\u202c", "soft\u00adhyphen", "\ufffd replacement", "a\u0301\u0301\u0301 stacked",
]
LONG = [
    PROSE * 8,
    "word " * 200,
    " " * 1000 + "end",
    "\n" * 300,
    "a" * 500,
    "🙂" * 100,
    "1234567890" * 30,
]


def corpus(specials: list[str]) -> list[str]:
    """CORPUS plus the given special tokens placed inside, around and next to text."""
    out = [PROSE, CODE, "", "a", " a", "a "]
    for group in (WHITESPACE, CRLF, DIGITS, PUNCT, CONTRACTIONS, LATIN, CJK, EMOJI, CONTROL, LONG):
        out += group
    for s in specials:
        out += [
            s, s + s, f"{s}Hello", f"Hello{s}", f"Hello {s} world", f"Hello{s}world", f"  {s}  x  ",
            f"{s}\n{s}", f"{PROSE}{s}{CODE}", f"日本{s}語", f"x{s[:-1]}", f"{s} {s[1:]}",
        ]
    return out


def fuzz_texts(specials: list[str], n: int, seed: int) -> list[str]:
    """n random concatenations of corpus fragments, single code points from
    awkward ranges, whitespace and special tokens."""
    rng = random.Random(seed)
    base = corpus(specials)
    points = [
        (0x20, 0x7E), (0x00, 0x1F), (0x80, 0xFF), (0x100, 0x24F), (0x300, 0x36F), (0x370, 0x3FF),
        (0x400, 0x4FF), (0x590, 0x6FF), (0x900, 0x97F), (0x1100, 0x11FF), (0x1E00, 0x1EFF), (0x2000, 0x206F),
        (0x3000, 0x30FF), (0x4E00, 0x4FFF), (0xAC00, 0xACFF), (0xFE00, 0xFE0F), (0xFF00, 0xFFEF),
        (0x1F300, 0x1F6FF), (0x1F900, 0x1F9FF), (0x20000, 0x2001F),
    ]
    pieces = [" ", "  ", "\n", "\r\n", "\t", "'s", "'LL", "123", "4567", "..", "\u200d", "\u0301"] + specials
    texts = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 12)):
            r = rng.random()
            if r < 0.35:
                t = rng.choice(base)
                a = rng.randint(0, len(t))
                parts.append(t[a:a + rng.randint(0, 40)])
            elif r < 0.7:
                lo, hi = rng.choice(points)
                parts.append("".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 6))))
            else:
                parts.append(rng.choice(pieces))
        texts.append("".join(parts))
    return texts
