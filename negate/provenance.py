"""Provenance evidence beside the pixels: C2PA Content Credentials, IPTC digital source type, generator metadata.

``read_provenance(path)`` reads what a file says about its own origin and returns a :class:`Provenance`: a tuple of
:class:`Evidence` pieces, each with a one-line ``text`` for people, whether it *declares* AI generation and whether it
is *verified* (only a C2PA manifest whose validation passed). It is evidence shown beside the pixel score and never an
input to the learned model: metadata is easy to strip or forge, so its absence means nothing.

What is read (``kind``: where):

* ``c2pa``: a C2PA manifest store (JPEG APP11, PNG ``caBX``, WebP ``C2PA``, or JUMBF boxes in TIFF/HEIF/AVIF/GIF),
  read and validated by ``c2pa-python``, offline: no remote manifest, OCSP or any other network fetch. Reported: the
  signer (certificate organisation, else common name), the validation state, the claim generator, the actions with a
  digital source type (also in ingredient manifests) and the number of ingredients. A manifest declares AI when an
  action's ``digitalSourceType`` is an AI type (``AI_SOURCE_TYPES``). An XMP ``dcterms:provenance`` reference to a
  remote manifest is reported and not fetched.
* ``iptc``: the IPTC digital source type: XMP ``Iptc4xmpExt:DigitalSourceType`` (any prefix, attribute, element or
  ``rdf:resource`` form; XMP from JPEG APP1 incl. extended XMP, PNG iTXt ``XML:com.adobe.xmp`` and ImageMagick ``Raw
  profile type xmp``, WebP ``XMP``, TIFF tag 700, or the XMP packet of other containers) and IPTC-IIM datasets (JPEG
  APP13 / TIFF tag 33723) whose value is a digital source type code. Declares AI for ``AI_SOURCE_TYPES``.
* ``png``: text chunks (tEXt, zTXt, iTXt): ``parameters`` (AUTOMATIC1111, Forge, Fooocus), ``prompt`` and
  ``workflow`` (ComfyUI), ``invokeai_metadata`` / ``sd-metadata`` / ``Dream`` (InvokeAI), ``Software``. Declares AI
  when the content is recognised as generation settings or a known generator.
* ``exif``: ``Software`` (any value is reported; declares AI only for ``KNOWN_GENERATORS``) and a ``UserComment`` /
  ``ImageDescription`` holding generation parameters (AUTOMATIC1111 writes them there in JPEG/WebP).

Verified (``Evidence.verified``) means the C2PA validation that the library was set up to run passed. Without a trust
list (the default: negate ships none) that is the validation state ``Valid``: the claim signature verifies and the
hashes bind the manifest to these very bytes, but the signer's certificate is not checked against any authority, so
the signer name is what the certificate says. With ``NEGATE_C2PA_TRUST_ANCHORS=/path/bundle.pem`` (PEM root
certificates, e.g. the C2PA trust list) only ``Trusted`` counts: the certificate must also chain to one of those roots.
``Invalid`` (tampered bytes, bad signature, expired or malformed certificate) is never verified.

Bounded work on hostile files: a file over ``max_bytes`` (default: an uncompressed 8-bit RGBA image at the decoder's
``DEFAULT_MAX_PIXELS``) is refused; only container structure and metadata blocks are parsed, pixels are never decoded;
each XMP packet, text chunk and EXIF block is capped (decompression included); every loop checks the deadline
``timeout_s``; the C2PA library runs only when the container holds a manifest, in a thread the caller stops waiting for
at the deadline (at most ``MAX_C2PA_IN_FLIGHT`` such reads run at once; the native call cannot be interrupted).
Nothing here raises on bad input: problems become a one-line ``Provenance.error`` note.
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
import struct
import threading
import time
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

from negate.data.decode import DEFAULT_MAX_PIXELS, _describe_content, _stat_error_reason

DEFAULT_MAX_BYTES = 4 * DEFAULT_MAX_PIXELS  # 256 MB: an uncompressed 8-bit RGBA image at the decoder's pixel cap
DEFAULT_TIMEOUT_S = 10.0
MAX_XMP_BYTES = 4 * 2**20  # per XMP packet (extended XMP assembled)
MAX_TEXT_BYTES = 2 * 2**20  # per PNG text chunk, after decompression (ComfyUI workflows run to hundreds of kB)
MAX_EXIF_BYTES = 2**20  # per EXIF block (JPEG APP1 holds at most 64 kB)
MAX_TEXT_CHUNKS = 256  # PNG text chunks examined per file
MAX_GENERIC_SCAN_BYTES = 16 * 2**20  # containers without a parser here: XMP packet searched in the first 16 MB
MAX_EVIDENCE_CHARS = 240
TRUST_ANCHORS_ENV = "NEGATE_C2PA_TRUST_ANCHORS"

# IPTC digital source types that declare generation by a trained model
# (terms of http://cv.iptc.org/newscodes/digitalsourcetype/).
AI_SOURCE_TYPES = frozenset({"trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia"})
_AI_SOURCE_TYPES_LOWER = {t.lower(): t for t in AI_SOURCE_TYPES}

# Software names that only image generators write (EXIF Software, PNG "Software"): name -> case-insensitive pattern.
# Kept short on purpose; other values are reported as evidence text without declaring AI.
KNOWN_GENERATORS: dict[str, str] = {
    "Stable Diffusion": r"\bstable[\s_-]?diffusion\b",
    "AUTOMATIC1111": r"\bautomatic1111\b|\bstable-diffusion-webui\b",
    "ComfyUI": r"\bcomfy[\s_-]?ui\b",
    "InvokeAI": r"\binvoke[\s_-]?ai\b",
    "NovelAI": r"\bnovel[\s_-]?ai\b",
    "Fooocus": r"\bfooocus\b",
    "Midjourney": r"\bmid[\s_-]?journey\b",
    "DALL-E": r"\bdall[\s·_-]?e\b",
    "OpenAI": r"\bopenai\b",
    "ChatGPT": r"\bchatgpt\b",
    "Adobe Firefly": r"\badobe\s+firefly\b",
    "Leonardo.Ai": r"\bleonardo\.?ai\b",
    "Ideogram": r"\bideogram\b",
    "DreamStudio": r"\bdreamstudio\b",
    "Stability AI": r"\bstability[\s.]?ai\b",
    "Draw Things": r"\bdraw[\s_-]?things\b",
    "DiffusionBee": r"\bdiffusion[\s_-]?bee\b",
}
_GENERATOR_RES = [(name, re.compile(pattern, re.I)) for name, pattern in KNOWN_GENERATORS.items()]

ROW_FIELDS = ("path", "provenance", "declared_ai", "verified_ai", "provenance_error")  # Provenance.as_row() keys
_KIND_ORDER = {"c2pa": 0, "iptc": 1, "png": 2, "exif": 3}


@dataclass(frozen=True)
class Evidence:
    """One piece of provenance evidence."""

    kind: str  # "c2pa" | "iptc" | "png" | "exif"
    text: str  # one line, e.g. "c2pa: OpenAI (valid signature; ...)", "iptc: trainedAlgorithmicMedia"
    declares_ai: bool
    verified: bool  # True only for a C2PA manifest whose validation passed (see the module docstring)


@dataclass(frozen=True)
class Provenance:
    """All the evidence read from one file; ``error`` is a one-line note of what could not be read ("" if none)."""

    path: str
    evidence: tuple[Evidence, ...]
    error: str = ""

    @property
    def summary(self) -> str:
        return "; ".join(e.text for e in self.evidence)

    @property
    def declared_ai(self) -> bool:
        return any(e.declares_ai for e in self.evidence)

    @property
    def verified_ai(self) -> bool:
        return any(e.declares_ai and e.verified for e in self.evidence)

    def as_row(self) -> dict:
        return {"path": self.path, "provenance": self.summary, "declared_ai": self.declared_ai,
                "verified_ai": self.verified_ai, "provenance_error": self.error}


def apply_verdict_rule(pixel_verdict: str, prov: Provenance) -> str:
    """``"synthetic (declared)"`` when the file carries a verified C2PA declaration of AI generation, else the pixel
    verdict unchanged: unverified declarations are shown, never counted, and absent metadata means nothing."""
    return "synthetic (declared)" if prov.verified_ai else pixel_verdict


# ------------------------------------------------------------------------------------------------------ helpers

class _Timeout(Exception):
    pass


class _Unreadable(Exception):
    pass


def _clean(text: str, limit: int = MAX_EVIDENCE_CHARS) -> str:
    """One printable line of at most ``limit`` characters (metadata text is hostile: newlines, escapes, floods)."""
    text = "".join(c if c.isprintable() else " " for c in text[: limit * 4])
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _generator_name(value: str) -> str | None:
    for name, pattern in _GENERATOR_RES:
        if pattern.search(value):
            return name
    return None


def _be16(data: bytes, at: int) -> int:
    return (data[at] << 8) | data[at + 1]


def _be32(data: bytes, at: int) -> int:
    return struct.unpack_from(">I", data, at)[0]


def _inflate(payload: bytes, cap: int) -> tuple[bytes, bool]:
    """zlib-decompressed ``payload`` up to ``cap`` bytes; (bytes, whether it was cut)."""
    d = zlib.decompressobj()
    out = d.decompress(payload, cap)
    return out, bool(d.unconsumed_tail)


def _decode_text(raw: bytes) -> str:
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return raw.decode("utf-16", errors="replace")
    return raw.decode("utf-8", errors="replace")


class _Collector:
    """Evidence and notes of one file, and its deadline."""

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.evidence: list[Evidence] = []
        self.notes: list[str] = []
        self.c2pa_blocks = False  # the container holds a C2PA manifest store
        self.xmp: list[bytes] = []
        self.exif: list[tuple[str, bytes]] = []  # (where, raw EXIF/TIFF bytes)
        self.iim: list[bytes] = []
        self.png_texts: list[tuple[str, str]] = []  # (key, text)

    def add(self, kind: str, text: str, declares_ai: bool = False, verified: bool = False) -> None:
        ev = Evidence(kind, _clean(text), bool(declares_ai), bool(verified))
        if ev not in self.evidence:
            self.evidence.append(ev)

    def note(self, text: str) -> None:
        text = _clean(text, 200)
        if text and text not in self.notes:
            self.notes.append(text)

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise _Timeout


# ---------------------------------------------------------------------------------------------------- reading

def _read_bounded(path: Path, max_bytes: int) -> bytes:
    """The file's bytes, opened once: non-blocking (a FIFO cannot hang us), checked on the open descriptor."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        if isinstance(e, IsADirectoryError):
            raise _Unreadable("is a directory, not a file") from e
        raise _Unreadable(_stat_error_reason(path, e)) from e
    except ValueError as e:  # an embedded NUL byte
        raise _Unreadable(f"invalid path ({e})") from e
    with os.fdopen(fd, "rb", buffering=0) as f:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise _Unreadable("is a directory, not a file")
        if not stat.S_ISREG(st.st_mode):
            raise _Unreadable("not a regular file (FIFO, socket or device)")
        if st.st_size > max_bytes:
            raise _Unreadable(f"file is {st.st_size} bytes, above the {max_bytes}-byte limit for provenance reading")
        try:
            data = f.read(max_bytes + 1)
        except OSError as e:
            raise _Unreadable(f"cannot read file: {e.strerror or e}") from e
    if len(data) > max_bytes:  # grew since fstat
        raise _Unreadable(f"file is above the {max_bytes}-byte limit for provenance reading")
    return data


def _container(data: bytes) -> str | None:
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:2] == b"BM":
        return "bmp"
    if data[4:8] == b"ftyp":
        return "isobmff"  # HEIF, AVIF (and MP4/MOV): C2PA and XMP are read, nothing else
    if data.startswith((b"\xff\x0a", b"\x00\x00\x00\x0cJXL ")):
        return "jxl"
    return None


_MIME = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "tiff": "image/tiff", "gif": "image/gif",
         "jxl": "image/jxl"}

_XMP_APP1 = b"http://ns.adobe.com/xap/1.0/\x00"
# JUMBF description box of a C2PA manifest store: "jumd" + the store's UUID (63327061-0011-0010-8000-00AA00389B71)
_C2PA_JUMD = b"jumdc2pa\x00\x11\x00\x10\x80\x00\x00\xaa\x00\x38\x9b\x71"
_XMP_EXT_APP1 = b"http://ns.adobe.com/xmp/extension/\x00"


def _scan_jpeg(data: bytes, col: _Collector) -> None:
    """Marker segments from SOI up to the first scan (SOS): metadata lives there; entropy-coded data is never read."""
    n, i, segments = len(data), 2, 0
    extended: dict[bytes, list[tuple[int, bytes]]] = {}
    while True:
        if i + 4 > n:
            col.note("JPEG ends inside its header segments (truncated)")
            break
        if data[i] != 0xFF:
            col.note(f"JPEG header is corrupt (no marker at byte {i})")
            break
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        if marker in (0xDA, 0xD9):  # start of scan / end of image: no more metadata segments
            break
        length = _be16(data, i + 2)
        end = i + 2 + length
        if length < 2 or end > n:
            col.note("JPEG ends inside a header segment (truncated)")
            break
        segments += 1
        if segments % 256 == 0:
            col.check_time()
        if marker == 0xE1:  # APP1: EXIF or XMP
            if data.startswith(b"Exif\x00\x00", i + 4):
                col.exif.append(("JPEG APP1", data[i + 4 : min(end, i + 4 + MAX_EXIF_BYTES)]))
            elif data.startswith(_XMP_APP1, i + 4):
                col.xmp.append(data[i + 4 + len(_XMP_APP1) : end][:MAX_XMP_BYTES])
            elif data.startswith(_XMP_EXT_APP1, i + 4):
                at = i + 4 + len(_XMP_EXT_APP1)
                if at + 40 <= end:
                    guid, offset = data[at : at + 32], _be32(data, at + 36)
                    parts = extended.setdefault(guid, [])
                    if sum(len(p) for _, p in parts) < MAX_XMP_BYTES:
                        parts.append((offset, data[at + 40 : end]))
        elif marker == 0xED and data.startswith(b"Photoshop 3.0\x00", i + 4):  # APP13: IPTC-IIM in an 8BIM resource
            iim = _photoshop_iim(data[i + 4 + 14 : end])
            if iim:
                col.iim.append(iim)
        elif marker == 0xEB and _C2PA_JUMD in data[i + 4 : end]:  # APP11: JUMBF holding a C2PA manifest store
            col.c2pa_blocks = True
        i = end
    for parts in extended.values():
        col.xmp.append(b"".join(p for _, p in sorted(parts, key=lambda t: t[0]))[:MAX_XMP_BYTES])


def _photoshop_iim(irb: bytes) -> bytes:
    """The IPTC-IIM block (8BIM resource 0x0404) of a Photoshop image resource block, or b""."""
    i, n = 0, len(irb)
    while i + 12 <= n and irb[i : i + 4] == b"8BIM":
        rid = _be16(irb, i + 4)
        name_len = irb[i + 6]
        j = i + 6 + 1 + name_len
        j += j % 2  # the Pascal name is padded to an even length
        if j + 4 > n:
            break
        size = _be32(irb, j)
        start, end = j + 4, j + 4 + size
        if end > n:
            break
        if rid == 0x0404:
            return irb[start:end]
        i = end + (size % 2)
    return b""


_PNG_TEXT_TYPES = {b"tEXt", b"zTXt", b"iTXt"}


def _png_text(ctype: bytes, payload: bytes) -> tuple[str, bytes, int, bool] | None:
    """(key, text bytes, cap, whether cut at the cap) of a tEXt/zTXt/iTXt chunk, or None when malformed."""
    nul = payload.find(b"\x00", 0, 80)
    if nul < 1:
        return None
    key = payload[:nul].decode("latin-1")
    cap = MAX_XMP_BYTES if key == "XML:com.adobe.xmp" else MAX_TEXT_BYTES
    rest = payload[nul + 1 :]
    if ctype == b"tEXt":
        return key, rest[:cap], cap, len(rest) > cap
    if ctype == b"zTXt":
        if not rest or rest[0] != 0:
            return None
        out, cut = _inflate(rest[1:], cap)
        return key, out, cap, cut
    if len(rest) < 2:  # iTXt: compression flag, method, language\0, translated key\0, text
        return None
    flag, method = rest[0], rest[1]
    lang_end = rest.find(b"\x00", 2)
    tkey_end = rest.find(b"\x00", lang_end + 1) if lang_end >= 0 else -1
    if tkey_end < 0:
        return None
    text = rest[tkey_end + 1 :]
    if flag:
        if method != 0:
            return None
        out, cut = _inflate(text, cap)
        return key, out, cap, cut
    return key, text[:cap], cap, len(text) > cap


def _raw_profile(text: bytes, cap: int) -> bytes:
    """ImageMagick's "Raw profile type NAME" text: "\\nNAME\\n   LENGTH\\nHEX..." -> the profile bytes."""
    lines = text.split(b"\n", 3)
    if len(lines) < 4:
        return b""
    hexdigits = re.sub(rb"[^0-9a-fA-F]", b"", lines[3][: 2 * cap + cap // 16 + 64])
    try:
        return bytes.fromhex(hexdigits[: 2 * (len(hexdigits) // 2)].decode("ascii"))[:cap]
    except ValueError:
        return b""


def _chunk_name(ctype: bytes) -> str:
    name = ctype.decode("latin-1")
    return f"a {name.strip()} chunk" if re.fullmatch(r"[A-Za-z0-9 ]{4}", name) else "a chunk with a corrupt type"


def _scan_png(data: bytes, col: _Collector) -> None:
    """Chunks from the signature to IEND; IDAT payloads are skipped by their length, never inflated."""
    n, i, chunks, texts = len(data), 8, 0, 0
    while True:
        if i + 12 > n:
            col.note("PNG ends before its IEND chunk (truncated)")
            break
        length, ctype = _be32(data, i), data[i + 4 : i + 8]
        start, end = i + 8, i + 8 + length
        if end + 4 > n:
            col.note(f"PNG ends inside {_chunk_name(ctype)} (truncated)")
            break
        chunks += 1
        if chunks % 1024 == 0:
            col.check_time()
        if ctype in _PNG_TEXT_TYPES or ctype in (b"eXIf", b"caBX"):
            name = ctype.decode("latin-1")
            if zlib.crc32(data[i + 4 : end]) != _be32(data, end):
                col.note(f"PNG {name} chunk has a bad checksum (skipped)")
            elif ctype == b"caBX":
                col.c2pa_blocks = True
            elif ctype == b"eXIf":
                col.exif.append(("PNG eXIf", data[start : min(end, start + MAX_EXIF_BYTES)]))
            elif texts < MAX_TEXT_CHUNKS:
                texts += 1
                try:
                    parsed = _png_text(ctype, data[start:end])
                except zlib.error as e:
                    col.note(f"PNG {name} chunk does not inflate ({e})")
                    parsed = None
                if parsed is not None:
                    key, text, cap, cut = parsed
                    if key == "XML:com.adobe.xmp":
                        col.xmp.append(text)
                    elif key.startswith("Raw profile type "):
                        kind = key[len("Raw profile type ") :].lower()
                        if kind == "xmp":
                            col.xmp.append(_raw_profile(text, MAX_XMP_BYTES))
                        elif kind in ("exif", "app1"):
                            col.exif.append(("PNG raw profile", _raw_profile(text, MAX_EXIF_BYTES)))
                        elif kind in ("iptc", "8bim"):
                            col.iim.append(_photoshop_iim(_raw_profile(text, MAX_EXIF_BYTES)))
                    else:
                        col.png_texts.append((key, text.decode("utf-8" if ctype == b"iTXt" else "latin-1",
                                                               errors="replace")))
                    if cut:
                        col.note(f"PNG {name} chunk {key!r} read up to {cap} bytes")
        i = end + 4
        if ctype == b"IEND":
            break


def _scan_webp(data: bytes, col: _Collector) -> None:
    n, i, chunks = len(data), 12, 0
    while i + 8 <= n:
        ctype, size = data[i : i + 4], struct.unpack_from("<I", data, i + 4)[0]
        start, end = i + 8, i + 8 + size
        if end > n:
            col.note(f"WebP ends inside {_chunk_name(ctype)} (truncated)")
            break
        chunks += 1
        if chunks % 1024 == 0:
            col.check_time()
        if ctype == b"EXIF":
            col.exif.append(("WebP EXIF", data[start : min(end, start + MAX_EXIF_BYTES)]))
        elif ctype == b"XMP ":
            col.xmp.append(data[start : min(end, start + MAX_XMP_BYTES)])
        elif ctype == b"C2PA":
            col.c2pa_blocks = True
        i = end + (size & 1)


_XMP_STARTS = (b"<x:xmpmeta", b"<x:xapmeta", b"<rdf:RDF")


def _scan_generic(data: bytes, col: _Collector, xmp: bool = True) -> None:
    """Containers without a parser here: the first XMP packet within the first MAX_GENERIC_SCAN_BYTES, and whether a
    C2PA manifest store (its JUMBF description box) is anywhere in the file."""
    if xmp:
        head = data[:MAX_GENERIC_SCAN_BYTES]
        starts = [at for at in (head.find(mark) for mark in _XMP_STARTS) if at >= 0]
        if starts:
            start = min(starts)
            end = head.find(b"</x:xmpmeta>", start)
            end = head.find(b"</rdf:RDF>", start) if end < 0 else end
            stop = len(head) if end < 0 else end + 12
            col.xmp.append(head[start : min(stop, start + MAX_XMP_BYTES)])
    if _C2PA_JUMD in data:
        col.c2pa_blocks = True


# ------------------------------------------------------------------------------------------------ interpreting

_DST_VALUE = re.compile(r"""\s*=\s*["']([^"'<>]{0,400})["']""")
_DST_ELEMENT = re.compile(r"""([^<>]{0,400})>\s*([^<]{0,400})<""")
_DST_RESOURCE = re.compile(r"""rdf:resource\s*=\s*["']([^"'<>]{0,400})["']""")
_DST_LIST = re.compile(r"[^<>]{0,400}>\s*<rdf:(?:Bag|Seq|Alt)>\s*<rdf:li[^<>]{0,200}>([^<]{0,400})<")
_TERM = re.compile(r"(?:\S{0,200}?digitalsourcetype/)?([A-Za-z]{3,64})/?", re.I)


def _source_type_term(value: str) -> str | None:
    """``trainedAlgorithmicMedia`` from a full IPTC URI or a bare term; None when it is neither."""
    m = _TERM.fullmatch(value.strip())
    if not m:
        return None
    term = m.group(1)
    return _AI_SOURCE_TYPES_LOWER.get(term.lower(), term)


def _iptc_evidence(term_or_value: str, where: str, col: _Collector) -> None:
    term = _source_type_term(term_or_value)
    suffix = f" ({where})" if where else ""
    if term is None:
        col.add("iptc", f"iptc: DigitalSourceType={term_or_value}{suffix}")
    else:
        col.add("iptc", f"iptc: {term}{suffix}", declares_ai=term in AI_SOURCE_TYPES)


_PREFIX_BEFORE = re.compile(r"([\w.-]{1,64}):$")


def _xmp_values(text: str, local_name: str, prefix: str | None = None, limit: int = 32) -> list[str]:
    """Values of an XMP property (any namespace prefix, or only ``prefix``): attribute, element or rdf:resource form.

    Occurrences are found by plain substring search and each is examined in a bounded window, so the work stays
    linear in the packet size whatever the packet holds.
    """
    values, at, seen = [], 0, 0
    while len(values) < limit and seen < 4 * limit:
        at = text.find(":" + local_name, at)
        if at < 0:
            break
        start, at = at, at + 1 + len(local_name)
        seen += 1
        if at < len(text) and (text[at].isalnum() or text[at] in "_.-"):
            continue  # a longer name
        before = _PREFIX_BEFORE.search(text[max(0, start - 64) : start + 1])
        if before is None or (prefix is not None and before.group(1) != prefix):
            continue
        after = text[at : at + 900]
        if text[start - len(before.group(1)) - 1 : start - len(before.group(1))] == "<":
            tag = _DST_ELEMENT.match(after)
            if tag is None:
                continue
            resource = _DST_RESOURCE.search(tag.group(1))
            value = resource.group(1) if resource else tag.group(2)
            if not value.strip():  # <prop><rdf:Bag><rdf:li>value</rdf:li>... or an empty element
                inner = _DST_LIST.match(after)
                value = inner.group(1) if inner else ""
        else:
            attr = _DST_VALUE.match(after)
            value = attr.group(1) if attr else ""
        value = value.strip()
        if value and value not in values:
            values.append(value)
    return values


def _read_xmp(raw: bytes, col: _Collector) -> None:
    text = _decode_text(raw)
    for value in _xmp_values(text, "DigitalSourceType"):
        _iptc_evidence(value, "", col)
    for value in _xmp_values(text, "provenance", prefix="dcterms", limit=2):  # C2PA's pointer to a remote manifest
        col.add("c2pa", f"c2pa: remote manifest referenced, not fetched ({value[:80]})")


def _read_iim(iim: bytes, col: _Collector) -> None:
    """IPTC-IIM records (0x1C, record, dataset, length, value): any record-2 value that is a digital source type."""
    i, n, count = 0, len(iim), 0
    while i + 5 <= n and iim[i] == 0x1C and count < 4096:
        record, dataset, length = iim[i + 1], iim[i + 2], _be16(iim, i + 3)
        i += 5
        if length & 0x8000:  # extended dataset: the next (length & 0x7FFF) bytes hold the real length
            k = length & 0x7FFF
            if k > 4 or i + k > n:
                break
            length = int.from_bytes(iim[i : i + k], "big")
            i += k
        value = iim[i : i + length]
        i += length
        count += 1
        if record == 2 and length < 1024:
            text = value.decode("utf-8", errors="replace").strip()
            lowered = text.lower()
            if "digitalsourcetype/" in lowered or lowered in _AI_SOURCE_TYPES_LOWER:
                _iptc_evidence(text, f"IIM 2:{dataset}", col)


_SD_PARAMS = re.compile(r"\bSteps:\s*\d+.{0,400}?\b(?:Sampler|Seed|CFG scale):", re.S)
_SD_MODEL = re.compile(r"\bModel:\s*([^,\n]{1,80})")


def _generation_parameters(text: str) -> str | None:
    """A short description when ``text`` looks like generation settings, else None."""
    head = text[:20000]
    if _SD_PARAMS.search(head):
        model = _SD_MODEL.search(head)
        return "generation parameters" + (f" (Model: {model.group(1).strip()})" if model else "")
    lowered = head.lower()
    if head.lstrip().startswith("{") and '"prompt"' in lowered and ('"seed"' in lowered or '"sampler' in lowered):
        return "generation parameters (JSON)"
    return None


def _read_png_texts(col: _Collector) -> None:
    for key, text in col.png_texts:
        lowered_key = key.lower()
        if lowered_key == "parameters":
            described = _generation_parameters(text)
            if described:
                col.add("png", f"png: {described}", declares_ai=True)
            else:
                col.add("png", f"png: parameters text ({len(text)} chars, not recognised as generation settings)")
        elif lowered_key == "prompt":
            if '"class_type"' in text[:200000] or '"inputs"' in text[:2000]:
                col.add("png", "png: comfyui prompt", declares_ai=True)
            else:
                col.add("png", f"png: prompt text ({len(text)} chars)")
        elif lowered_key == "workflow":
            if '"nodes"' in text[:200000]:
                col.add("png", "png: comfyui workflow", declares_ai=True)
            else:
                col.add("png", f"png: workflow text ({len(text)} chars)")
        elif lowered_key in ("invokeai_metadata", "invokeai_graph", "sd-metadata", "dream"):
            col.add("png", f"png: invokeai {key}", declares_ai=True)
        elif lowered_key == "software":
            generator = _generator_name(text[:500])
            col.add("png", f"png: Software={_clean(text, 100)}" + (f" (generator: {generator})" if generator else ""),
                    declares_ai=generator is not None)


def _user_comment(raw) -> str:
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, (bytes, bytearray)):
        return ""
    raw = bytes(raw[: 64 * 1024])
    head, body = raw[:8], raw[8:]
    if head.startswith(b"UNICODE"):
        candidates = [body.decode("utf-16-be", errors="replace"), body.decode("utf-16-le", errors="replace")]
        return max(candidates, key=lambda s: sum(c.isascii() and c.isprintable() for c in s))
    if head.startswith(b"ASCII") or head == b"\x00" * 8:
        return body.decode("latin-1")
    return raw.decode("utf-8", errors="replace")


def _read_exif(where: str, raw: bytes, col: _Collector, tiff_file: bool = False) -> None:
    from PIL import Image

    exif = Image.Exif()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            exif.load(raw)
            tags = dict(exif)
            sub = dict(exif.get_ifd(0x8769)) if 0x8769 in tags else {}
        except Exception as e:  # Pillow is the boundary with hostile bytes here
            col.note(f"{where}: unreadable EXIF ({type(e).__name__}: {e})")
            return
    software = tags.get(0x0131)
    if isinstance(software, bytes):
        software = software.decode("latin-1")
    if isinstance(software, str) and software.strip():
        generator = _generator_name(software[:500])
        col.add("exif", f"exif: Software={_clean(software, 100)}" + (f" (generator: {generator})" if generator else ""),
                declares_ai=generator is not None)
    for tag, name in ((0x9286, "UserComment"), (0x010E, "ImageDescription")):
        value = sub.get(tag) if tag == 0x9286 else tags.get(tag)
        text = _user_comment(value) if tag == 0x9286 else (value if isinstance(value, str) else "")
        described = _generation_parameters(text) if text else None
        if described:
            col.add("exif", f"exif: {name} holds {described}", declares_ai=True)
    if tiff_file:  # a TIFF file's own IFD0 carries XMP (700) and IPTC-IIM (33723)
        xmp, iim = tags.get(700), tags.get(33723)
        if isinstance(xmp, (bytes, bytearray)):
            col.xmp.append(bytes(xmp[:MAX_XMP_BYTES]))
        if isinstance(iim, (bytes, bytearray)):
            col.iim.append(bytes(iim[:MAX_EXIF_BYTES]))


# ---------------------------------------------------------------------------------------------------------- C2PA

MAX_C2PA_IN_FLIGHT = 4  # C2PA reads running at once, abandoned ones included: a flood of slow manifests stays bounded
_c2pa_lock = threading.Lock()
_c2pa_slots = threading.BoundedSemaphore(MAX_C2PA_IN_FLIGHT)
_c2pa_state: dict = {}


def _c2pa_module():
    """The c2pa module, or None when c2pa-python is not installed (or fails to load its native library)."""
    with _c2pa_lock:
        if "module" not in _c2pa_state:
            try:
                import c2pa

                _c2pa_state["module"] = c2pa if hasattr(c2pa, "Context") and hasattr(c2pa, "Reader") else None
                _c2pa_state["why"] = "" if _c2pa_state["module"] else f"c2pa-python {c2pa.__version__} lacks Context"
            except Exception as e:  # ImportError, or OSError from loading the native library
                _c2pa_state["module"] = None
                _c2pa_state["why"] = f"{type(e).__name__}: {e}"
        return _c2pa_state["module"]


def _trust_anchors() -> tuple[str | None, str]:
    """(PEM text or None when no trust list is configured, problem note)."""
    where = os.environ.get(TRUST_ANCHORS_ENV, "").strip()
    if not where:
        return None, ""
    try:
        pem = Path(where).read_text()
    except (OSError, UnicodeDecodeError) as e:
        return "", f"{TRUST_ANCHORS_ENV}={where} cannot be read ({type(e).__name__}); no signer is trusted"
    return pem, ""


def _c2pa_context(c2pa, anchors: str | None):
    key = ("context", anchors)
    with _c2pa_lock:
        ctx = _c2pa_state.get(key)
        if ctx is None:
            settings = {
                "verify": {"verify_after_reading": True, "verify_trust": True, "ocsp_fetch": False,
                           "remote_manifest_fetch": False},
                "core": {"allowed_network_hosts": [], "decode_identity_assertions": False,
                         "max_decompressed_manifest_size_in_mb": 16, "backing_store_memory_threshold_in_mb": 64},
            }
            if anchors:
                settings["trust"] = {"trust_anchors": anchors}
            ctx = c2pa.Context.from_dict(settings)
            _c2pa_state[key] = ctx
        return ctx


def _as_dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _as_list(value) -> list:
    return value if isinstance(value, list) else []


def _manifest_actions(manifest: dict) -> list[tuple[str, str]]:
    """(action, digital source type term or "") of every action in a manifest's actions assertions."""
    out = []
    for assertion in _as_list(manifest.get("assertions"))[:256]:
        assertion = _as_dict(assertion)
        if not str(assertion.get("label", "")).startswith("c2pa.actions"):
            continue
        for action in _as_list(_as_dict(assertion.get("data")).get("actions"))[:256]:
            action = _as_dict(action)
            source = action.get("digitalSourceType")
            term = (_source_type_term(source) or _clean(source, 80)) if isinstance(source, str) else ""
            out.append((_clean(str(action.get("action", "?")), 60), term))
    return out


def _describe_store(store: dict, anchors: str | None) -> Evidence:
    manifests = _as_dict(store.get("manifests"))
    active_label = store.get("active_manifest")
    active = _as_dict(manifests.get(active_label)) if isinstance(active_label, str) else {}
    sig = _as_dict(active.get("signature_info"))
    signer = sig.get("issuer") or sig.get("common_name") or "unknown signer"
    state = store.get("validation_state")
    results = _as_dict(store.get("validation_results"))
    failures = [_as_dict(f).get("code") for f in _as_list(_as_dict(results.get("activeManifest")).get("failure"))]
    for delta in _as_list(results.get("ingredientDeltas")):
        failures += [_as_dict(f).get("code") for f in
                     _as_list(_as_dict(_as_dict(delta).get("validationDeltas")).get("failure"))]
    failures = [str(code) for code in failures if code]
    if state == "Trusted":
        status, verified = "trusted signature", True
    elif state == "Valid":
        untrusted = "signingCredential.untrusted" in failures
        if anchors is None:
            status, verified = "valid signature" + ("; signer not on a trust list" if untrusted else ""), True
        else:
            status, verified = "valid signature; signer not on the configured trust list", False
    elif state == "Invalid":
        shown = [code for code in failures if code != "signingCredential.untrusted"] or failures
        status, verified = "invalid: " + (", ".join(shown[:3]) or "validation failed"), False
    else:
        status, verified = f"validation state {state!r}", False

    # actions of the active manifest, then of its ingredients' manifests (an AI image opened and edited elsewhere)
    ai_actions, first_actions, seen, queue = [], [], set(), [(active_label, 0)]
    while queue and len(seen) < 64:
        label, depth = queue.pop(0)
        if not isinstance(label, str) or label in seen:
            continue
        seen.add(label)
        manifest = _as_dict(manifests.get(label))
        for action, term in _manifest_actions(manifest):
            entry = (action, term, depth > 0)
            if term in AI_SOURCE_TYPES:
                ai_actions.append(entry)
            elif term and not first_actions:
                first_actions.append(entry)
        if depth < 8:
            for ingredient in _as_list(manifest.get("ingredients"))[:256]:
                queue.append((_as_dict(ingredient).get("active_manifest"), depth + 1))

    parts = [f"c2pa: {_clean(str(signer), 80)} ({status})"]
    for action, term, in_ingredient in (ai_actions or first_actions)[:1]:
        parts.append(f"{action} {term}" + (" in an ingredient" if in_ingredient else ""))
    generators = _as_list(active.get("claim_generator_info"))
    generator = _as_dict(generators[0]) if generators else {}
    name = generator.get("name") or active.get("claim_generator")
    if name:
        version = generator.get("version")
        parts.append(f"generator {_clean(str(name), 60)}" + (f" {_clean(str(version), 20)}" if version else ""))
    n_ingredients = len(_as_list(active.get("ingredients")))
    if n_ingredients:
        parts.append(f"{n_ingredients} ingredient{'s' if n_ingredients > 1 else ''}")
    return Evidence("c2pa", _clean(", ".join(parts)), declares_ai=bool(ai_actions), verified=verified)


def _read_c2pa(data: bytes, container: str, col: _Collector) -> None:
    c2pa = _c2pa_module()
    if c2pa is None:
        col.add("c2pa", "c2pa: manifest present, reader unavailable (c2pa-python not installed)")
        col.note(f"c2pa reader unavailable ({_c2pa_state.get('why', '')})")
        return
    anchors, problem = _trust_anchors()
    if problem:
        col.note(problem)
    result: dict = {}
    if not _c2pa_slots.acquire(timeout=max(0.0, min(1.0, col.deadline - time.monotonic()))):
        col.add("c2pa", "c2pa: manifest present, not validated (reader busy with earlier slow manifests)")
        col.note("c2pa reader busy")
        return

    def work():
        try:
            ctx = _c2pa_context(c2pa, anchors)
            with c2pa.Reader(_MIME.get(container), io.BytesIO(data), context=ctx) as reader:
                result["store"] = json.loads(reader.json())
        except BaseException as e:  # noqa: BLE001 - reported below, whatever the native side raised
            result["error"] = e
        finally:
            _c2pa_slots.release()

    worker = threading.Thread(target=work, name="negate-c2pa-reader", daemon=True)
    try:
        worker.start()
    except BaseException:  # e.g. RuntimeError: can't start new thread
        _c2pa_slots.release()
        raise
    worker.join(max(0.0, col.deadline - time.monotonic()))
    if worker.is_alive():  # the native call cannot be interrupted; it finishes in the background
        col.add("c2pa", "c2pa: manifest present, not validated within the time limit")
        col.note("c2pa reader timed out")
        return
    error = result.get("error")
    if error is not None:
        if type(error).__name__ == "_C2paManifestNotFound":
            return  # JUMBF boxes that are not a C2PA manifest store
        reason = _clean(str(error) or type(error).__name__, 120)
        col.add("c2pa", f"c2pa: manifest present but unreadable ({reason})")
        col.note(f"c2pa: {reason}")
        return
    col.evidence.append(_describe_store(_as_dict(result.get("store")), anchors))


# -------------------------------------------------------------------------------------------------------- entry

def read_provenance_bytes(data: bytes, path: str = "", *, timeout_s: float = DEFAULT_TIMEOUT_S) -> Provenance:
    """:func:`read_provenance` on a file's bytes already in memory (``path`` is only reported)."""
    col = _Collector(time.monotonic() + timeout_s)
    try:
        if not data:
            raise _Unreadable("empty file (0 bytes)")
        container = _container(data)
        if container is None:
            raise _Unreadable(_describe_content(data))
        if container == "jpeg":
            _scan_jpeg(data, col)
        elif container == "png":
            _scan_png(data, col)
        elif container == "webp":
            _scan_webp(data, col)
        elif container == "tiff":  # XMP (tag 700) and IIM (33723) come from its IFD0 below
            _scan_generic(data, col, xmp=False)
        elif container != "bmp":  # BMP has no metadata blocks
            _scan_generic(data, col)
        col.check_time()
        if container == "tiff":
            _read_exif("TIFF", data, col, tiff_file=True)
        for where, raw in col.exif[:8]:
            _read_exif(where, raw, col)
            col.check_time()
        for raw in col.xmp[:8]:
            _read_xmp(raw, col)
            col.check_time()
        for raw in col.iim[:8]:
            _read_iim(raw, col)
        _read_png_texts(col)
        col.check_time()
        if col.c2pa_blocks:
            _read_c2pa(data, container, col)
    except _Unreadable as e:
        col.note(str(e))
    except _Timeout:
        col.note(f"provenance reading stopped at the {timeout_s:g} s time limit")
    except MemoryError:
        col.note("out of memory while reading metadata")
    except Exception as e:  # a bug or a parser surprise on hostile bytes: a note, never a crash of the caller
        col.note(f"metadata reader failed ({type(e).__name__}: {e})")
    evidence = sorted(col.evidence, key=lambda ev: _KIND_ORDER.get(ev.kind, 9))  # stable: C2PA first
    return Provenance(path=path, evidence=tuple(evidence), error="; ".join(col.notes))


def read_provenance(path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES,
                    timeout_s: float = DEFAULT_TIMEOUT_S) -> Provenance:
    """The provenance evidence of one file (see the module docstring); never raises on a bad or hostile file."""
    shown = os.fspath(path) if isinstance(path, (str, os.PathLike)) else str(path)
    shown = shown.decode("utf-8", errors="replace") if isinstance(shown, bytes) else shown
    try:
        data = _read_bounded(Path(path), max_bytes)
    except _Unreadable as e:
        return Provenance(path=shown, evidence=(), error=_clean(str(e), 200))
    except Exception as e:  # noqa: BLE001 - e.g. a path of the wrong type
        return Provenance(path=shown, evidence=(), error=_clean(f"cannot read file ({type(e).__name__}: {e})", 200))
    return read_provenance_bytes(data, shown, timeout_s=timeout_s)
