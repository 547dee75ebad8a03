"""Extracts the pretraining corpus of the embedded demo model: Jane Austen's
six novels as Debian's r-cran-janeaustenr package ships them.

    python datasets/corpus/make_corpus.py [--out DIR] [--package-dir DIR]

The package's data (an R lazy-load database) is read from an installed
copy (/usr/lib/R/site-library/janeaustenr), else from the .deb that
`apt-get download r-cran-janeaustenr` fetches and `dpkg-deb -x` unpacks:
neither R nor root is needed. Output, in tinylm's `text` JSONL format:

    DIR/train.jsonl        {"text": ...} documents: runs of whole paragraphs
    DIR/validation.jsonl   the same, from held-out chapters

Chapters are the unit of the split (5% held out, drawn with a fixed seed),
so no validation document shares a chapter with training text. Running it
again writes the same bytes.
"""
import argparse
import glob
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rdata import read_lazyload  # noqa: E402

PACKAGE = "r-cran-janeaustenr"
INSTALLED = "/usr/lib/R/site-library/janeaustenr"
SEED = 20240620
VALIDATION_SHARE = 0.05
# A document is whole paragraphs up to this many characters (about 250
# tokens of the demo tokenizer, so most fit a 256-token row whole).
MAX_CHARS = 1000
CHAPTER = re.compile(r"^chapter\s+[0-9ivxlc]+\.?$", re.IGNORECASE)
SENTENCE_END = re.compile(r'(?:(?<=[.!?])|(?<=[.!?]["\']))\s+(?=["\']?[A-Z])')
# sha256 of the files this script wrote from r-cran-janeaustenr 1.0.0-1 (Debian 12).
EXPECTED = {
    "train.jsonl": "7ee77e8de310a2079ec20de96cb0fa6b3814f0a17d5e40141e2bad3022485012",
    "validation.jsonl": "d0440faa90133c3581bc0757ae1204c78c749a998eb76987c0f6fac220077e95",
}


def package_data(package_dir: str | None, workdir: str) -> str:
    """The path prefix of the package's data/Rdata.{rdx,rdb}."""
    if package_dir is None and os.path.isdir(INSTALLED):
        package_dir = INSTALLED
    if package_dir is None:
        try:
            subprocess.run(["apt-get", "download", PACKAGE], cwd=workdir, check=True, capture_output=True, text=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            detail = getattr(exc, "stderr", "") or str(exc)
            sys.exit(f"make_corpus: `apt-get download {PACKAGE}` failed ({detail.strip()}); on Debian run "
                     f"`apt-get update` first, or pass --package-dir with an unpacked copy of the package")
        (deb,) = glob.glob(os.path.join(workdir, f"{PACKAGE}_*.deb"))
        subprocess.run(["dpkg-deb", "-x", deb, os.path.join(workdir, "root")], check=True)
        package_dir = os.path.join(workdir, "root", INSTALLED.lstrip("/"))
    return os.path.join(package_dir, "data", "Rdata")


def paragraphs(lines: list) -> list[str]:
    """Blank-line separated paragraphs, hard line breaks unwrapped, the
    _underscore_ emphasis of the Gutenberg transcription dropped."""
    out, current = [], []
    for line in lines + [""]:
        line = (line or "").strip()
        if line:
            current.append(line)
        elif current:
            out.append(" ".join(" ".join(current).replace("_", "").split()))
            current = []
    return out


def chapters(lines: list) -> list[list[str]]:
    """The novel's chapters as lists of paragraphs. Front matter before the
    first chapter and headings (no lower-case letter, at most 40
    characters: titles, "VOLUME II", "THE END", "* * *") are left out."""
    found = []
    for para in paragraphs(lines):
        if CHAPTER.match(para):
            found.append([])
        elif found and not (len(para) <= 40 and not re.search("[a-z]", para)):
            found[-1].append(para)
    return [c for c in found if c]


def documents(chapter: list[str]) -> list[str]:
    """Consecutive paragraphs joined by blank lines, up to MAX_CHARS each; a
    longer paragraph is cut at sentence ends into pieces that fit."""
    pieces = []
    for para in chapter:
        if len(para) <= MAX_CHARS:
            pieces.append(para)
            continue
        part = ""
        for sentence in SENTENCE_END.split(para):
            if part and len(part) + 1 + len(sentence) > MAX_CHARS:
                pieces.append(part)
                part = sentence
            else:
                part = f"{part} {sentence}" if part else sentence
        pieces.append(part)
    docs, current = [], ""
    for piece in pieces:
        if current and len(current) + 2 + len(piece) > MAX_CHARS:
            docs.append(current)
            current = piece
        else:
            current = f"{current}\n\n{piece}" if current else piece
    return docs + [current] if current else docs


def write_jsonl(path: str, texts: list[str]) -> str:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for text in texts:
            f.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "austen"))
    parser.add_argument("--package-dir", help=f"an unpacked {INSTALLED} (default: the installed one, else the .deb)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        novels = read_lazyload(package_data(args.package_dir, workdir))
    all_chapters = [(name, c) for name in sorted(novels) for c in chapters(novels[name])]
    held_out = set(random.Random(SEED).sample(range(len(all_chapters)),
                                              round(VALIDATION_SHARE * len(all_chapters))))
    splits = {"train": [], "validation": []}
    for i, (_, chapter) in enumerate(all_chapters):
        splits["validation" if i in held_out else "train"].extend(documents(chapter))
    os.makedirs(args.out, exist_ok=True)
    for split, docs in splits.items():
        name = f"{split}.jsonl"
        digest = write_jsonl(os.path.join(args.out, name), docs)
        chars = sum(len(d) for d in docs)
        print(f"{os.path.join(args.out, name)}: {len(docs)} documents, {chars} characters, sha256 {digest}")
        if digest != EXPECTED[name]:
            print(f"make_corpus: warning: {name} differs from the file the demo model was trained on "
                  f"(another version of {PACKAGE}?)", file=sys.stderr)
    print(f"{len(all_chapters)} chapters, {len(held_out)} held out for validation")


if __name__ == "__main__":
    main()
