"""Extracts the pretraining corpus of the embedded demo model from two Debian
packages: Jane Austen's six novels (r-cran-janeaustenr) and the Python 3.11
documentation sources (python3.11-doc).

    python datasets/corpus/make_corpus.py [--out DIR]

Each package is read from its installed files, else from the .deb that
`apt-get download PACKAGE` fetches and `dpkg-deb -x` unpacks (neither root
nor R is needed). Output, in tinylm's `text` JSONL format:

    DIR/train.jsonl        {"text": ..., "source": "austen" | "python-docs"} documents
    DIR/validation.jsonl   the same, from held-out chapters and doc pages

The novels give English prose; the documentation gives technical English
with code, numbers, JSON and identifiers to copy, which a model fine-tuned
to write JSON needs. The unit of the split is a chapter or a doc page (5%
of each source held out, drawn with a fixed seed), so no validation
document shares one with training text. A document is a run of whole
paragraphs of at most MAX_CHARS characters. Running it again writes the
same bytes (the SHA-256 of both files is checked).
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

AUSTEN = ("r-cran-janeaustenr", "/usr/lib/R/site-library/janeaustenr")
PYDOCS = ("python3.11-doc", "/usr/share/doc/python3.11/html/_sources")
# The documentation's prose and examples; release notes, the C API and
# packaging guides are left out.
PYDOCS_SECTIONS = ("tutorial", "library", "howto", "faq", "reference", "using")
SEED = 20240620
VALIDATION_SHARE = 0.05
# About 250 tokens of the demo tokenizer, so most documents fit a 256-token row whole.
MAX_CHARS = 1000
CHAPTER = re.compile(r"^chapter\s+[0-9ivxlc]+\.?$", re.IGNORECASE)
SENTENCE_END = re.compile(r'(?:(?<=[.!?])|(?<=[.!?]["\']))\s+(?=["\']?[A-Z])')
# sha256 of the files written from r-cran-janeaustenr 1.0.0-1 and python3.11-doc 3.11.2-6+deb12u9 (Debian 12).
EXPECTED = {
    "train.jsonl": "fd87a5bff53e3e341ca269f53b432c4b8c7d3fd09e66b210ac59227d1dd8b7ca",
    "validation.jsonl": "d8f98661b4aa27822ca2e081dacef5e5fcae221c3d9efe71e9cc9df11ed46f6b",
}


def package_root(package: str, installed: str, workdir: str) -> str:
    """The installed folder of a package, or the same folder unpacked from
    its downloaded .deb."""
    if os.path.isdir(installed):
        return installed
    try:
        subprocess.run(["apt-get", "download", package], cwd=workdir, check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        sys.exit(f"make_corpus: `apt-get download {package}` failed ({detail.strip()}); on Debian run "
                 f"`apt-get update` first, or install {package}")
    (deb,) = glob.glob(os.path.join(workdir, f"{package}_*.deb"))
    subprocess.run(["dpkg-deb", "-x", deb, os.path.join(workdir, package)], check=True)
    return os.path.join(workdir, package, installed.lstrip("/"))


# ------------------------------------------------------------------ Austen
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


def austen_units(root: str) -> list[list[str]]:
    novels = read_lazyload(os.path.join(root, "data", "Rdata"))
    return [chapter for name in sorted(novels) for chapter in chapters(novels[name])]


# ------------------------------------------------------------- Python docs
def blocks(text: str) -> list[str]:
    """Blank-line separated blocks of a reStructuredText page, lines kept
    (code is indented), trailing spaces dropped."""
    out = []
    for block in re.split(r"\n\s*\n", text):
        block = "\n".join(line.rstrip() for line in block.strip("\n").split("\n"))
        if block.strip():
            out.append(block)
    return out


def pydocs_units(root: str) -> list[list[str]]:
    pages = sorted(p for section in PYDOCS_SECTIONS
                   for p in glob.glob(os.path.join(root, section, "**", "*.rst.txt"), recursive=True))
    if not pages:
        sys.exit(f"make_corpus: no documentation pages under {root}")
    units = []
    for page in pages:
        with open(page, encoding="utf-8") as f:
            units.append(blocks(f.read()))
    return [u for u in units if u]


# --------------------------------------------------------------- documents
def join_up_to(pieces: list[str], sep: str) -> list[str]:
    """Consecutive pieces joined by sep into runs of at most MAX_CHARS (a
    single piece longer than that stays whole)."""
    runs, run = [], ""
    for piece in pieces:
        if run and len(run) + len(sep) + len(piece) > MAX_CHARS:
            runs.append(run)
            run = piece
        else:
            run = f"{run}{sep}{piece}" if run else piece
    return runs + [run] if run else runs


def split_long(piece: str) -> list[str]:
    """A paragraph longer than MAX_CHARS in parts that fit: at sentence ends
    for prose, at line ends for code and lists."""
    if "\n" in piece:
        return join_up_to(piece.split("\n"), "\n")
    return join_up_to(SENTENCE_END.split(piece), " ")


def documents(unit: list[str]) -> list[str]:
    """Consecutive paragraphs joined by blank lines, up to MAX_CHARS each; a
    longer paragraph is cut into pieces that fit (split_long)."""
    pieces = [p for para in unit for p in ([para] if len(para) <= MAX_CHARS else split_long(para))]
    return join_up_to(pieces, "\n\n")


def write_jsonl(path: str, rows: list[dict]) -> str:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "data"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        sources = {"austen": austen_units(package_root(*AUSTEN, workdir)),
                   "python-docs": pydocs_units(package_root(*PYDOCS, workdir))}
    splits = {"train": [], "validation": []}
    rng = random.Random(SEED)
    for source, units in sources.items():
        held_out = set(rng.sample(range(len(units)), round(VALIDATION_SHARE * len(units))))
        for i, unit in enumerate(units):
            split = "validation" if i in held_out else "train"
            splits[split] += [{"text": doc, "source": source} for doc in documents(unit)]
        print(f"{source}: {len(units)} units, {len(held_out)} held out for validation")
    os.makedirs(args.out, exist_ok=True)
    for split, rows in splits.items():
        name = f"{split}.jsonl"
        digest = write_jsonl(os.path.join(args.out, name), rows)
        chars = {s: sum(len(r["text"]) for r in rows if r["source"] == s) for s in sources}
        print(f"{os.path.join(args.out, name)}: {len(rows)} documents, characters {chars}, sha256 {digest}")
        if digest != EXPECTED[name]:
            print(f"make_corpus: warning: {name} differs from the file the demo model was trained on "
                  f"(other versions of the packages?)", file=sys.stderr)


if __name__ == "__main__":
    main()
