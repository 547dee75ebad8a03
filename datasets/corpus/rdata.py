"""Reads character vectors out of an R package's lazy-load database
(data/Rdata.rdx + data/Rdata.rdb), which is how r-cran-janeaustenr ships
its novels. Standard library only, so no R installation is needed.

Format (R Internals, "Serialization Formats" and "Lazy loading"): the .rdx
is a gzip-compressed serialized list(variables = list(name = c(offset,
length)), references, compressed); each .rdb entry at offset is a 4-byte
big-endian uncompressed length followed by a zlib stream of one serialized
object. Serialization is R's XDR format (version 2 or 3): big-endian
integers, each item a flags word (type in the low byte, attribute and tag
bits) followed by its payload. Only the item types these files hold are
read; anything else raises ValueError naming the type.
"""
import gzip
import struct
import zlib

# SEXP types (R Internals, "SEXPTYPEs"), and the pseudo-types of serialization.
SYMSXP, LISTSXP, CHARSXP, LGLSXP, INTSXP, REALSXP, STRSXP, VECSXP = 1, 2, 9, 10, 13, 14, 16, 19
REFSXP, NILVALUE_SXP = 255, 254
_SINGLETONS = {254, 253, 252, 251, 250, 242, 241}   # nil, global/unbound/missing/base/empty env markers
_HAS_ATTR, _HAS_TAG = 1 << 9, 1 << 10


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos, self.refs = data, 0, []
        if data[:2] != b"X\n":
            raise ValueError(f"not R's XDR serialization (starts with {data[:2]!r})")
        self.pos = 2
        version = self.int()
        self.int(), self.int()              # writer's and minimal reader's R versions
        if version == 3:
            n = self.int()                  # then the native encoding's name
            self.pos += n
        elif version != 2:
            raise ValueError(f"R serialization version {version} is not supported")

    def int(self) -> int:
        (value,) = struct.unpack_from(">i", self.data, self.pos)
        self.pos += 4
        return value

    def item(self):
        """The next object: str/None for a CHARSXP, a list for vectors,
        {"names": [...], "values": [...]} for a named list, a list of
        (tag, value) for a pairlist."""
        flags = self.int()
        kind = flags & 0xFF
        if kind in _SINGLETONS:
            return None
        if kind == REFSXP:
            return self.refs[(flags >> 8 or self.int()) - 1]
        if kind == SYMSXP:
            name = self.item()
            self.refs.append(name)
            return name
        if kind == LISTSXP:
            if flags & _HAS_ATTR:
                self.item()                 # a pairlist cell's own attributes: unused here
            tag = self.item() if flags & _HAS_TAG else None
            head = [(tag, self.item())]
            rest = self.item()
            return head + (rest or [])
        if kind == CHARSXP:
            n = self.int()
            if n == -1:
                return None                 # NA_character_
            text = self.data[self.pos:self.pos + n].decode("utf-8")
            self.pos += n
            return text
        if kind in (STRSXP, VECSXP):
            values = [self.item() for _ in range(self.int())]
        elif kind in (LGLSXP, INTSXP):
            n = self.int()
            values = list(struct.unpack_from(f">{n}i", self.data, self.pos))
            self.pos += 4 * n
        elif kind == REALSXP:
            n = self.int()
            values = list(struct.unpack_from(f">{n}d", self.data, self.pos))
            self.pos += 8 * n
        else:
            raise ValueError(f"R object type {kind} is not supported by this reader")
        if flags & _HAS_ATTR:
            attributes = dict(self.item())
            if "names" in attributes:
                return {"names": attributes["names"], "values": values}
        return values


def unserialize(data: bytes):
    return _Reader(data).item()


def read_lazyload(prefix: str) -> dict:
    """{variable name: object} from prefix + ".rdx" / ".rdb"."""
    with open(prefix + ".rdx", "rb") as f:
        index = unserialize(gzip.decompress(f.read()))
    fields = dict(zip(index["names"], index["values"]))
    variables = fields["variables"]
    with open(prefix + ".rdb", "rb") as f:
        db = f.read()
    out = {}
    for name, (offset, length) in zip(variables["names"], variables["values"]):
        entry = db[offset:offset + length]
        (size,) = struct.unpack_from(">i", entry, 0)
        payload = zlib.decompress(entry[4:])
        if len(payload) != size:
            raise ValueError(f"{prefix}.rdb: {name} inflates to {len(payload)} bytes, the header says {size}")
        out[name] = unserialize(payload)
    return out
