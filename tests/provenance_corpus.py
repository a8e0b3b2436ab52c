"""Image files carrying provenance metadata, built here with PIL (and c2pa-python + cryptography for C2PA).

Used by ``tests/test_provenance.py`` and as seeds by ``scripts/fuzz_provenance.py``. Every builder returns the file's
bytes; ``strip`` re-encodes only the pixels of a file (no EXIF, XMP, text chunks or manifest), the copy whose evidence
must be absent. Import from tests as ``import provenance_corpus as pc``.
"""

from __future__ import annotations

import datetime
import io
import struct
import zlib

import numpy as np
from PIL import Image, PngImagePlugin, TiffImagePlugin

IPTC_DST = "http://cv.iptc.org/newscodes/digitalsourcetype/"
IPTC_NS = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
SOURCE_TYPES = ["trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia", "digitalCapture",
                "algorithmicMedia", "compositeSynthetic"]
A1111_PARAMETERS = ("a watercolour fox in a forest\nNegative prompt: blurry\nSteps: 20, Sampler: DPM++ 2M Karras, "
                    "CFG scale: 7, Seed: 1234, Size: 512x512, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly")
COMFY_PROMPT = ('{"3": {"inputs": {"seed": 42, "steps": 20, "cfg": 8, "sampler_name": "euler", "model": ["4", 0]}, '
                '"class_type": "KSampler"}, "4": {"inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}, '
                '"class_type": "CheckpointLoaderSimple"}}')
COMFY_WORKFLOW = ('{"last_node_id": 9, "last_link_id": 9, "nodes": [{"id": 3, "type": "KSampler", "pos": [863, 186], '
                  '"widgets_values": [42, "fixed", 20, 8, "euler", "normal", 1]}], "links": [], "version": 0.4}')


def pixels(seed: int = 0, size: tuple[int, int] = (48, 32)) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = size
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def encode(im: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def strip(data: bytes) -> bytes:
    """The same pixels re-encoded in the same format with no metadata at all."""
    with Image.open(io.BytesIO(data)) as im:
        fmt = im.format
        clean = Image.fromarray(np.asarray(im.convert("RGB")))
    return encode(clean, fmt, **({"quality": 95} if fmt == "JPEG" else {}))


# ------------------------------------------------------------------------------------------------------------ XMP

def xmp_packet(source_type: str, form: str = "attribute", full_uri: bool = True) -> bytes:
    """An XMP packet whose Iptc4xmpExt:DigitalSourceType is ``source_type`` in one of the three RDF forms."""
    value = IPTC_DST + source_type if full_uri else source_type
    prop = "Iptc4xmpExt:DigitalSourceType"
    if form == "attribute":
        desc = f'<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="{IPTC_NS}" {prop}="{value}"/>'
    elif form == "element":
        desc = (f'<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="{IPTC_NS}">\n'
                f"   <{prop}>{value}</{prop}>\n  </rdf:Description>")
    elif form == "resource":
        desc = (f'<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="{IPTC_NS}">\n'
                f'   <{prop} rdf:resource="{value}"/>\n  </rdf:Description>')
    else:
        raise ValueError(form)
    return ('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
            '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
            f"  {desc}\n </rdf:RDF>\n</x:xmpmeta>\n<?xpacket end=\"w\"?>").encode("utf-8")


def jpeg_with_xmp(xmp: bytes, seed: int = 0) -> bytes:
    return encode(pixels(seed), "JPEG", quality=90, xmp=xmp)


def png_with_xmp(xmp: bytes, seed: int = 0) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8"))
    return encode(pixels(seed), "PNG", pnginfo=info)


def webp_with_xmp(xmp: bytes, seed: int = 0) -> bytes:
    return encode(pixels(seed), "WEBP", lossless=True, xmp=xmp)


def tiff_with_xmp(xmp: bytes, seed: int = 0) -> bytes:
    ifd = TiffImagePlugin.ImageFileDirectory_v2()
    ifd[700] = xmp
    return encode(pixels(seed), "TIFF", tiffinfo=ifd)


def iim_dataset(record: int, dataset: int, value: bytes) -> bytes:
    return b"\x1c" + bytes([record, dataset]) + struct.pack(">H", len(value)) + value


def jpeg_with_iim(source_type: str, seed: int = 0) -> bytes:
    """A JPEG whose APP13 Photoshop block carries IPTC-IIM with a digital source type URI (dataset 2:228)."""
    iim = iim_dataset(1, 90, b"\x1b%G") + iim_dataset(2, 0, b"\x00\x04") + iim_dataset(2, 228,
                                                                                      (IPTC_DST + source_type).encode())
    resource = b"8BIM" + struct.pack(">H", 0x0404) + b"\x00\x00" + struct.pack(">I", len(iim)) + iim
    resource += b"\x00" * (len(iim) % 2)
    payload = b"Photoshop 3.0\x00" + resource
    segment = b"\xff\xed" + struct.pack(">H", len(payload) + 2) + payload
    jpeg = encode(pixels(seed), "JPEG", quality=90)
    return jpeg[:2] + segment + jpeg[2:]


# ------------------------------------------------------------------------------------------------- PNG text, EXIF

def png_with_text(key: str, value: str, chunk: str = "tEXt", seed: int = 0) -> bytes:
    """A PNG with one text chunk of type ``chunk`` (tEXt, zTXt or iTXt, compressed or not: "iTXt-z")."""
    info = PngImagePlugin.PngInfo()
    if chunk == "tEXt":
        info.add_text(key, value)
    elif chunk == "zTXt":
        info.add_text(key, value, zip=True)
    elif chunk == "iTXt":
        info.add_itxt(key, value)
    elif chunk == "iTXt-z":
        info.add_itxt(key, value, zip=True)
    else:
        raise ValueError(chunk)
    return encode(pixels(seed), "PNG", pnginfo=info)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_insert_after_idat(png: bytes, chunk: bytes) -> bytes:
    """``chunk`` placed right before IEND (after the image data), where some tools write their text."""
    iend = png.rindex(b"IEND") - 4
    return png[:iend] + chunk + png[iend:]


def exif_bytes(software: str | None = None, user_comment: str | None = None) -> bytes:
    exif = Image.Exif()
    if software is not None:
        exif[0x0131] = software
    if user_comment is not None:
        exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + user_comment.encode("utf-16-be")
    return exif.tobytes()


def jpeg_with_exif(software: str | None = None, user_comment: str | None = None, seed: int = 0) -> bytes:
    return encode(pixels(seed), "JPEG", quality=90, exif=exif_bytes(software, user_comment))


def png_with_exif(software: str, seed: int = 0) -> bytes:
    return encode(pixels(seed), "PNG", exif=exif_bytes(software))


def webp_with_exif(software: str, seed: int = 0) -> bytes:
    return encode(pixels(seed), "WEBP", lossless=True, exif=exif_bytes(software))


def tiff_with_software(software: str, seed: int = 0) -> bytes:
    ifd = TiffImagePlugin.ImageFileDirectory_v2()
    ifd[305] = software
    return encode(pixels(seed), "TIFF", tiffinfo=ifd)


# ---------------------------------------------------------------------------------------------------------- C2PA

def make_test_chain(org: str = "Negate Test Generator", days: int = 30) -> tuple[bytes, bytes, bytes]:
    """(leaf + CA certificate chain PEM, leaf private key PEM, CA certificate PEM): a P-256 test CA and an ES256
    signing certificate with the extensions C2PA requires (digitalSignature key usage, emailProtection EKU)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)])

    def usage(sign: bool, ca: bool) -> x509.KeyUsage:
        return x509.KeyUsage(digital_signature=sign, content_commitment=False, key_encipherment=False,
                             data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                             encipher_only=False, decipher_only=False)

    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=days)
    ca = (x509.CertificateBuilder().subject_name(name(f"{org} Test Root")).issuer_name(name(f"{org} Test Root"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(usage(False, True), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(name(f"{org} Signer")).issuer_name(ca.subject)
            .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage(True, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    key_pem = leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return leaf.public_bytes(pem) + ca.public_bytes(pem), key_pem, ca.public_bytes(pem)


def c2pa_manifest(source_type: str | None = "trainedAlgorithmicMedia", action: str = "c2pa.created") -> dict:
    entry = {"action": action, "softwareAgent": {"name": "Negate Test Generator"}}
    if source_type:
        entry["digitalSourceType"] = IPTC_DST + source_type
    return {"claim_generator_info": [{"name": "negate-test-generator", "version": "1.0"}], "title": "generated",
            "assertions": [{"label": "c2pa.actions", "data": {"actions": [entry]}}]}


def sign_c2pa(asset: bytes, mime: str, chain_pem: bytes, key_pem: bytes, manifest: dict | None = None) -> bytes:
    """``asset`` with an embedded C2PA manifest signed (ES256, no timestamp authority, offline) by ``chain_pem``."""
    import c2pa

    info = c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain_pem, key_pem, None)
    settings = {"verify": {"verify_after_sign": False, "remote_manifest_fetch": False, "ocsp_fetch": False},
                "builder": {"thumbnail": {"enabled": False}}}
    with c2pa.Context.from_dict(settings) as ctx, c2pa.Signer.from_info(info) as signer, \
            c2pa.Builder(manifest or c2pa_manifest(), ctx) as builder:
        out = io.BytesIO()
        builder.sign(signer, mime, io.BytesIO(asset), out)
        return out.getvalue()


def sign_c2pa_edit_of(parent: bytes, asset: bytes, chain_pem: bytes, key_pem: bytes) -> bytes:
    """``asset`` (JPEG) signed as an edit (``c2pa.opened`` + a colour adjustment) of the signed JPEG ``parent``: the
    AI declaration then lives only in the ingredient's manifest."""
    import c2pa

    manifest = {"claim_generator_info": [{"name": "negate-test-editor", "version": "2.0"}], "title": "edited",
                "assertions": [{"label": "c2pa.actions", "data": {"actions": [
                    {"action": "c2pa.opened", "parameters": {"ingredientIds": ["parent"]}},
                    {"action": "c2pa.color_adjustments"}]}}]}
    info = c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain_pem, key_pem, None)
    settings = {"verify": {"verify_after_sign": False, "remote_manifest_fetch": False, "ocsp_fetch": False},
                "builder": {"thumbnail": {"enabled": False}}}
    with c2pa.Context.from_dict(settings) as ctx, c2pa.Signer.from_info(info) as signer, \
            c2pa.Builder(manifest, ctx) as builder:
        builder.add_ingredient({"title": "parent.jpg", "relationship": "parentOf", "label": "parent"}, "image/jpeg",
                               io.BytesIO(parent))
        out = io.BytesIO()
        builder.sign(signer, "image/jpeg", io.BytesIO(asset), out)
        return out.getvalue()


def jpeg_with_extended_xmp(main_xmp: bytes, extended_xmp: bytes, seed: int = 0, parts: int = 2) -> bytes:
    """A JPEG whose XMP continues in ExtendedXMP APP1 segments (``parts`` of them, given out of order), as
    Photoshop writes a packet too big for one segment."""
    import hashlib

    guid = hashlib.md5(extended_xmp).hexdigest().upper().encode()
    step = -(-len(extended_xmp) // parts)
    segments = []
    for offset in range(0, len(extended_xmp), step):
        payload = (b"http://ns.adobe.com/xmp/extension/\x00" + guid + struct.pack(">II", len(extended_xmp), offset)
                   + extended_xmp[offset : offset + step])
        segments.append(b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload)
    jpeg = jpeg_with_xmp(main_xmp, seed)
    return jpeg[:2] + b"".join(reversed(segments)) + jpeg[2:]


def gif_with_xmp(xmp: bytes, seed: int = 0) -> bytes:
    """A GIF with an "XMP DataXMP" application extension (the packet, then the 258-byte magic trailer)."""
    gif = encode(pixels(seed).quantize(16), "GIF")
    trailer = bytes([1]) + bytes(range(255, -1, -1)) + b"\x00"
    extension = b"\x21\xff\x0bXMP DataXMP" + xmp + trailer
    return gif[:-1] + extension + gif[-1:]  # before the GIF trailer byte ";"
