"""Dataset: examples from cached files laid out in rows of seq_len tokens,
served as numpy batches in a seeded order that can be resumed exactly."""
import hashlib
import json
from dataclasses import dataclass

import numpy as np

from tinylm.data.packing import fit, pack

IGNORE = -100   # the label Hugging Face's loss skips


@dataclass
class DatasetStats:
    """What loading did, for one split.

    examples: examples kept; rows: rows they fill (= examples unless packed);
    tokens: real (non-padding) tokens in those rows; truncated / dropped:
    examples longer than seq_len that were cut / left out; skipped: bad lines
    left out of the source files (on_error="skip"), counted once per file in
    every split drawn from it; prompt_mismatch: prompt/response examples
    whose prompt tokens are not a prefix of the joint encoding; masked_turns:
    chat assistant turns with no stable span (see tinylm.data.formats);
    cache_hit: every source file came from the token cache.
    """
    examples: int
    rows: int
    tokens: int
    truncated: int
    dropped: int
    skipped: int
    prompt_mismatch: int
    masked_turns: int
    cache_hit: bool


class Dataset:
    """Examples (file_of[i], index[i]) of `files`, fitted to seq_len.

    A row is a dict of int32 [seq_len] arrays:
      input_ids       tokens, then pad_id
      labels          the token where it is a target, else -100 (prompt
                      tokens unless train_on_prompt, padding, and in packed
                      rows the first token of every document after the first)
      attention_mask  1 on tokens, 0 on padding; it does not separate packed
                      documents (use position_ids for that)
      position_ids    0, 1, ... restarting at each document; padding
                      continues the last document's count
    and a batch also carries row_ids, int64 [B], the rows it holds (what an
    offline teacher cache, tinylm.distill.cache, is looked up by).
    """

    def __init__(self, files, file_of, index, *, seq_len, packing, train_on_prompt, truncation, seed, pad_id):
        self.files = files
        self.seq_len = seq_len
        self.packing = packing
        self.train_on_prompt = train_on_prompt
        self.pad_id = pad_id
        lengths = np.empty(len(index), np.int64)
        for f, cached in enumerate(files):
            sel = file_of == f
            lengths[sel] = cached.lengths[index[sel]]

        def where(i):
            cached = files[file_of[i]]
            return f"{cached.path}:{cached.lines[index[i]]}"

        keep, used, truncated, dropped = fit(lengths, seq_len, truncation, where)
        file_of, index = file_of[keep], index[keep]
        if packing:
            # neighbours in a packed row are drawn at random, not in file order
            order = np.random.default_rng([seed, 1]).permutation(len(keep))
            file_of, index, used = file_of[order], index[order], used[order]
            self.bounds = pack(used, seq_len)            # int64 [rows+1]
        else:
            self.bounds = np.arange(len(keep) + 1, dtype=np.int64)
        self.file_of, self.index, self.used = file_of, index, used   # [examples], in row order
        self.stats = DatasetStats(
            examples=len(keep), rows=len(self.bounds) - 1, tokens=int(used.sum()), truncated=truncated,
            dropped=dropped, skipped=sum(f.skipped for f in files), cache_hit=all(f.cache_hit for f in files),
            prompt_mismatch=sum(f.prompt_mismatch for f in files), masked_turns=sum(f.masked_turns for f in files))

    def __len__(self):
        return len(self.bounds) - 1

    def fingerprint(self) -> str:
        """A hash of every row's content: the source files' token caches
        (their data and tokenizer), the layout options, and which examples
        fill which row. Equal fingerprints serve equal rows."""
        h = hashlib.blake2b(digest_size=16)
        h.update(json.dumps([[f.cache.attrs["key"] for f in self.files], self.seq_len, self.packing,
                             self.train_on_prompt, self.pad_id]).encode())
        for a in (self.file_of, self.index, self.used, self.bounds):
            h.update(np.ascontiguousarray(a, dtype=np.int64).tobytes())
        return h.hexdigest()

    def _fill(self, r, ids, labels, attn, pos):
        cursor = last = 0
        for j in range(self.bounds[r], self.bounds[r + 1]):
            tokens, mask = self.files[self.file_of[j]].example(self.index[j])
            n = int(self.used[j])
            tokens = tokens[:n]
            ids[cursor:cursor + n] = tokens
            labels[cursor:cursor + n] = tokens if self.train_on_prompt else np.where(mask[:n] != 0, tokens, IGNORE)
            if cursor:
                labels[cursor] = IGNORE   # the previous document's last token must not predict this one
            attn[cursor:cursor + n] = 1
            pos[cursor:cursor + n] = np.arange(n)
            cursor, last = cursor + n, n
        pos[cursor:] = np.arange(last, last + self.seq_len - cursor)

    def rows(self, which):
        """The rows `which` (a sequence of row indices) as a batch dict of int32 [len(which), seq_len]."""
        b, t = len(which), self.seq_len
        batch = {"input_ids": np.full((b, t), self.pad_id, np.int32),
                 "labels": np.full((b, t), IGNORE, np.int32),
                 "attention_mask": np.zeros((b, t), np.int32),
                 "position_ids": np.zeros((b, t), np.int32),
                 "row_ids": np.asarray(which, np.int64).reshape(b)}
        for k, r in enumerate(which):
            self._fill(int(r), batch["input_ids"][k], batch["labels"][k], batch["attention_mask"][k],
                       batch["position_ids"][k])
        return batch

    def batches(self, batch_size, *, shuffle=True, seed=0, epochs=1, drop_last=False, start=None):
        """An iterator of batch dicts (see rows()). Epoch e visits the rows in
        order rng([seed, e]).permutation (or 0..rows-1 without shuffle);
        epochs=None repeats forever. `position` of the iterator is the next
        batch, {"epoch", "batch"}; passing it back as start= resumes there
        with the same batches."""
        return Batches(self, batch_size, shuffle, seed, epochs, drop_last, start)


class Batches:
    def __init__(self, dataset, batch_size, shuffle, seed, epochs, drop_last, start):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if epochs is not None and epochs < 0:
            raise ValueError(f"epochs must be >= 0 or None, got {epochs}")
        self.dataset, self.batch_size, self.shuffle, self.seed, self.epochs = dataset, batch_size, shuffle, seed, epochs
        n = len(dataset)
        self.per_epoch = n // batch_size if drop_last else -(-n // batch_size)
        if self.per_epoch == 0:
            raise ValueError(f"{n} rows make no batch of {batch_size} with drop_last=True")
        start = start or {"epoch": 0, "batch": 0}
        epoch, batch = int(start["epoch"]), int(start["batch"])
        if epoch < 0 or not 0 <= batch < self.per_epoch:
            raise ValueError(f"start {start} is outside epochs of {self.per_epoch} batches")
        self.epoch, self.batch = epoch, batch
        self._order_epoch, self._order = None, None

    @property
    def position(self):
        return {"epoch": self.epoch, "batch": self.batch}

    def __len__(self):
        """Batches left to yield (undefined when epochs=None)."""
        if self.epochs is None:
            raise TypeError("an endless batch iterator (epochs=None) has no length")
        return max(0, (self.epochs - self.epoch) * self.per_epoch - self.batch)

    def __iter__(self):
        return self

    def __next__(self):
        if self.epochs is not None and self.epoch >= self.epochs:
            raise StopIteration
        if self._order_epoch != self.epoch:
            n = len(self.dataset)
            self._order = (np.random.default_rng([self.seed, self.epoch]).permutation(n) if self.shuffle
                           else np.arange(n))
            self._order_epoch = self.epoch
        first = self.batch * self.batch_size
        out = self.dataset.rows(self._order[first:first + self.batch_size])
        self.batch += 1
        if self.batch == self.per_epoch:
            self.epoch, self.batch = self.epoch + 1, 0
        return out
