import csv
import io
import json
import threading
import time
import zlib

import pytest

import bad_corpus as bc
import provenance_corpus as pc
from negate import provenance as prov_mod
from negate.provenance import (
    AI_SOURCE_TYPES,
    ROW_FIELDS,
    TRUST_ANCHORS_ENV,
    Evidence,
    Provenance,
    apply_verdict_rule,
    read_provenance,
    read_provenance_bytes,
)
from negate.provenance_cmd import run as run_cmd


def _write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _only(prov: Provenance, kind: str) -> Evidence:
    found = [e for e in prov.evidence if e.kind == kind]
    assert len(found) == 1, prov
    return found[0]


def _check_pair(tmp_path, name: str, data: bytes, kind: str, text: str, declares_ai: bool) -> Provenance:
    """The evidence is in the file and absent from its stripped copy; returns the file's Provenance."""
    prov = read_provenance(_write(tmp_path, name, data))
    assert prov.error == "", prov
    ev = _only(prov, kind)
    assert text in ev.text and ev.declares_ai is declares_ai and prov.declared_ai is declares_ai, prov
    stripped = read_provenance(_write(tmp_path, "stripped_" + name, pc.strip(data)))
    assert stripped.evidence == () and stripped.error == "" and stripped.summary == "", stripped
    assert not stripped.declared_ai and not stripped.verified_ai
    return prov


# ------------------------------------------------------------------------------------------------------- IPTC XMP

@pytest.mark.parametrize("source_type", pc.SOURCE_TYPES)
@pytest.mark.parametrize("container", ["jpeg", "png"])
def test_xmp_digital_source_type_each_type(tmp_path, source_type, container):
    xmp = pc.xmp_packet(source_type)
    data = pc.jpeg_with_xmp(xmp) if container == "jpeg" else pc.png_with_xmp(xmp)
    prov = _check_pair(tmp_path, f"x.{container}", data, "iptc", f"iptc: {source_type}",
                       declares_ai=source_type in AI_SOURCE_TYPES)
    assert prov.evidence[0].text == f"iptc: {source_type}"
    assert not prov.verified_ai  # XMP is a declaration, never a verified one


@pytest.mark.parametrize("form", ["attribute", "element", "resource"])
@pytest.mark.parametrize("builder", [pc.jpeg_with_xmp, pc.png_with_xmp, pc.webp_with_xmp, pc.tiff_with_xmp])
def test_xmp_forms_and_containers(tmp_path, form, builder):
    data = builder(pc.xmp_packet("compositeWithTrainedAlgorithmicMedia", form))
    _check_pair(tmp_path, f"x_{builder.__name__}", data, "iptc", "iptc: compositeWithTrainedAlgorithmicMedia", True)


def test_extended_xmp_and_gif_xmp(tmp_path):
    main = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            b'<rdf:Description xmlns:xmpNote="http://ns.adobe.com/xmp/note/" xmpNote:HasExtendedXMP="0"/>'
            b"</rdf:RDF></x:xmpmeta>")
    ext = pc.xmp_packet("trainedAlgorithmicMedia", "element").replace(b"</rdf:RDF>", b" " * 70000 + b"</rdf:RDF>")
    data = pc.jpeg_with_extended_xmp(main, ext)  # 70 kB: two extension segments, written out of order
    _check_pair(tmp_path, "ext.jpg", data, "iptc", "iptc: trainedAlgorithmicMedia", True)
    _check_pair(tmp_path, "x.gif", pc.gif_with_xmp(pc.xmp_packet("trainedAlgorithmicMedia")), "iptc",
                "iptc: trainedAlgorithmicMedia", True)


def test_xmp_bare_term_and_unknown_values(tmp_path):
    prov = read_provenance_bytes(pc.jpeg_with_xmp(pc.xmp_packet("trainedAlgorithmicMedia", full_uri=False)))
    assert prov.summary == "iptc: trainedAlgorithmicMedia" and prov.declared_ai
    odd = pc.xmp_packet("x").replace(pc.IPTC_DST.encode() + b"x", b"made by a person, honest")
    prov = read_provenance_bytes(pc.jpeg_with_xmp(odd))
    assert prov.summary == "iptc: DigitalSourceType=made by a person, honest" and not prov.declared_ai


def test_iim_digital_source_type_in_photoshop_block(tmp_path):
    _check_pair(tmp_path, "iim.jpg", pc.jpeg_with_iim("trainedAlgorithmicMedia"), "iptc",
                "iptc: trainedAlgorithmicMedia (IIM 2:228)", True)


# ------------------------------------------------------------------------------------------------------ PNG text

@pytest.mark.parametrize("chunk", ["tEXt", "zTXt", "iTXt", "iTXt-z"])
@pytest.mark.parametrize(("key", "value", "text"), [
    ("parameters", pc.A1111_PARAMETERS, "png: generation parameters (Model: v1-5-pruned-emaonly)"),
    ("prompt", pc.COMFY_PROMPT, "png: comfyui prompt"),
    ("workflow", pc.COMFY_WORKFLOW, "png: comfyui workflow"),
])
def test_png_text_chunks(tmp_path, chunk, key, value, text):
    prov = _check_pair(tmp_path, f"{key}.png", pc.png_with_text(key, value, chunk), "png", text, True)
    assert prov.summary == text


def test_png_text_after_image_data_and_unrecognised_text(tmp_path):
    base = pc.encode(pc.pixels(), "PNG")
    late = pc.png_insert_after_idat(base, pc.png_chunk(b"tEXt", b"workflow\x00" + pc.COMFY_WORKFLOW.encode()))
    assert read_provenance_bytes(late).summary == "png: comfyui workflow"
    prov = read_provenance_bytes(pc.png_with_text("parameters", "just some words"))
    assert not prov.declared_ai and "not recognised as generation settings" in prov.summary
    prov = read_provenance_bytes(pc.png_with_text("Software", "NovelAI"))
    assert prov.summary == "png: Software=NovelAI (generator: NovelAI)" and prov.declared_ai
    assert read_provenance_bytes(pc.png_with_text("Title", "holiday")).evidence == ()


def test_png_text_chunk_with_bad_checksum_is_skipped_with_a_note():
    png = pc.png_with_text("workflow", pc.COMFY_WORKFLOW)
    at = png.index(b"tEXtworkflow") + 10
    broken = png[:at] + bytes([png[at] ^ 1]) + png[at + 1 :]
    prov = read_provenance_bytes(broken)
    assert prov.evidence == () and "bad checksum" in prov.error


# ---------------------------------------------------------------------------------------------------------- EXIF

@pytest.mark.parametrize(("builder", "ext"), [(pc.jpeg_with_exif, "jpg"), (pc.png_with_exif, "png"),
                                              (pc.webp_with_exif, "webp"), (pc.tiff_with_software, "tif")])
def test_exif_software_known_generator(tmp_path, builder, ext):
    _check_pair(tmp_path, f"sw.{ext}", builder("ComfyUI"), "exif", "exif: Software=ComfyUI (generator: ComfyUI)", True)


def test_exif_software_other_values_are_evidence_text_only(tmp_path):
    prov = _check_pair(tmp_path, "gimp.jpg", pc.jpeg_with_exif("GIMP 2.10.36"), "exif", "exif: Software=GIMP 2.10.36",
                       False)
    assert prov.summary == "exif: Software=GIMP 2.10.36"
    for software in ["DALL-E 3", "Midjourney v6", "stable-diffusion-webui", "Adobe Firefly Image 3", "NovelAI"]:
        assert read_provenance_bytes(pc.jpeg_with_exif(software)).declared_ai, software
    for software in ["Adobe Photoshop 25.0 (Macintosh)", "Firefly Cam 2", "Editor de imagen", "darktable 4.6"]:
        assert not read_provenance_bytes(pc.jpeg_with_exif(software)).declared_ai, software


def test_exif_user_comment_with_generation_parameters(tmp_path):
    data = pc.jpeg_with_exif(user_comment=pc.A1111_PARAMETERS)
    _check_pair(tmp_path, "a1111.jpg", data, "exif", "exif: UserComment holds generation parameters", True)


def test_hostile_metadata_text_is_one_short_printable_line():
    prov = read_provenance_bytes(pc.jpeg_with_exif("ComfyUI\n\x1b[31mred\r\n" + "x" * 5000))
    text = prov.evidence[0].text
    assert "\n" not in text and "\x1b" not in text and len(text) <= prov_mod.MAX_EVIDENCE_CHARS and prov.declared_ai


# ---------------------------------------------------------------------------------------------------------- C2PA

@pytest.fixture(scope="module")
def chain():
    pytest.importorskip("c2pa")
    pytest.importorskip("cryptography")
    return pc.make_test_chain()


@pytest.fixture(scope="module")
def signed_jpeg(chain):
    chain_pem, key_pem, _ = chain
    return pc.sign_c2pa(pc.encode(pc.pixels(5), "JPEG", quality=90), "image/jpeg", chain_pem, key_pem)


@pytest.fixture(autouse=True)
def _no_trust_list(monkeypatch):
    monkeypatch.delenv(TRUST_ANCHORS_ENV, raising=False)


def test_library_reports_valid_for_a_self_made_chain(signed_jpeg):
    """The rule documented in negate/provenance.py: c2pa-python calls a manifest signed by an unknown CA "Valid"
    (signature and hash binding check out) with signingCredential.untrusted; only a configured anchor gives
    "Trusted"."""
    import c2pa

    reader = c2pa.Reader("image/jpeg", io.BytesIO(signed_jpeg))
    assert reader.get_validation_state() == "Valid"
    failures = [f["code"] for f in reader.get_validation_results()["activeManifest"]["failure"]]
    assert failures == ["signingCredential.untrusted"]
    reader.close()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_c2pa_manifest_declaring_ai_is_verified(tmp_path, chain, fmt):
    chain_pem, key_pem, _ = chain
    data = pc.sign_c2pa(pc.encode(pc.pixels(6), fmt), f"image/{fmt.lower()}", chain_pem, key_pem)
    prov = _check_pair(tmp_path, f"c2pa.{fmt.lower()}", data, "c2pa",
                       "c2pa: Negate Test Generator (valid signature; signer not on a trust list), "
                       "c2pa.created trainedAlgorithmicMedia, generator negate-test-generator 1.0", True)
    ev = _only(prov, "c2pa")
    assert ev.verified and prov.verified_ai
    assert apply_verdict_rule("human", prov) == "synthetic (declared)"
    assert apply_verdict_rule("uncertain", prov) == "synthetic (declared)"


def test_c2pa_evidence_comes_first(chain):
    chain_pem, key_pem, _ = chain
    asset = pc.jpeg_with_exif("ComfyUI")
    prov = read_provenance_bytes(pc.sign_c2pa(asset, "image/jpeg", chain_pem, key_pem))
    assert [e.kind for e in prov.evidence] == ["c2pa", "exif"]


def test_tampered_c2pa_file_is_invalid_and_not_verified(signed_jpeg):
    tampered = bytearray(signed_jpeg)
    tampered[-40] ^= 0xFF  # a byte of the image data, which the manifest's hash covers
    prov = read_provenance_bytes(bytes(tampered))
    ev = _only(prov, "c2pa")
    assert "invalid: assertion.dataHash.mismatch" in ev.text
    assert ev.declares_ai and not ev.verified and prov.declared_ai and not prov.verified_ai
    assert apply_verdict_rule("human", prov) == "human"


def test_c2pa_without_ai_source_type_is_verified_but_declares_nothing(chain):
    chain_pem, key_pem, _ = chain
    data = pc.sign_c2pa(pc.encode(pc.pixels(7), "JPEG"), "image/jpeg", chain_pem, key_pem,
                        pc.c2pa_manifest("digitalCapture"))
    prov = read_provenance_bytes(data)
    ev = _only(prov, "c2pa")
    assert ev.verified and not ev.declares_ai and "c2pa.created digitalCapture" in ev.text
    assert apply_verdict_rule("synthetic", prov) == "synthetic" and apply_verdict_rule("human", prov) == "human"


def test_c2pa_ai_declaration_in_an_ingredient(chain, signed_jpeg):
    editor_chain, editor_key, _ = pc.make_test_chain("Photo Editor Inc")
    data = pc.sign_c2pa_edit_of(signed_jpeg, pc.encode(pc.pixels(8), "JPEG"), editor_chain, editor_key)
    ev = _only(read_provenance_bytes(data), "c2pa")
    assert ev.text.startswith("c2pa: Photo Editor Inc (valid signature")
    assert "c2pa.created trainedAlgorithmicMedia in an ingredient" in ev.text and "1 ingredient" in ev.text
    assert ev.declares_ai and ev.verified


def test_trust_anchors_make_trusted_and_strict(tmp_path, monkeypatch, chain, signed_jpeg):
    _, _, ca_pem = chain
    anchors = _write(tmp_path, "anchors.pem", ca_pem)
    monkeypatch.setenv(TRUST_ANCHORS_ENV, str(anchors))
    prov = read_provenance_bytes(signed_jpeg)
    assert "(trusted signature)" in prov.summary and prov.verified_ai
    _, _, other_ca = pc.make_test_chain("Someone Else")
    monkeypatch.setenv(TRUST_ANCHORS_ENV, str(_write(tmp_path, "other.pem", other_ca)))
    prov = read_provenance_bytes(signed_jpeg)
    assert "valid signature; signer not on the configured trust list" in prov.summary
    assert prov.declared_ai and not prov.verified_ai
    monkeypatch.setenv(TRUST_ANCHORS_ENV, str(tmp_path / "missing.pem"))
    prov = read_provenance_bytes(signed_jpeg)
    assert not prov.verified_ai and TRUST_ANCHORS_ENV in prov.error


def test_c2pa_reader_unavailable(monkeypatch, signed_jpeg):
    monkeypatch.setattr(prov_mod, "_c2pa_state", {"module": None, "why": "ImportError: no module named c2pa"})
    prov = read_provenance_bytes(signed_jpeg)
    ev = _only(prov, "c2pa")
    assert ev.text == "c2pa: manifest present, reader unavailable (c2pa-python not installed)"
    assert not ev.verified and not ev.declares_ai and "c2pa reader unavailable" in prov.error


def _wait_for_c2pa_threads(seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(t.name == "negate-c2pa-reader" and t.is_alive()
                                              for t in threading.enumerate()):
        time.sleep(0.01)


def test_c2pa_reader_that_hangs_is_abandoned_at_the_deadline(monkeypatch, signed_jpeg):
    pytest.importorskip("c2pa")
    release = threading.Event()

    class SlowReader:
        def __init__(self, *args, **kwargs):
            release.wait(10)
            raise RuntimeError("late")

    fake = type("FakeC2pa", (), {"Reader": SlowReader, "Context": object})
    monkeypatch.setattr(prov_mod, "_c2pa_state", {"module": fake, ("context", None): object()})
    t0 = time.monotonic()
    try:
        prov = read_provenance_bytes(signed_jpeg, timeout_s=0.3)
    finally:
        release.set()
    assert time.monotonic() - t0 < 1.5
    assert "not validated within the time limit" in prov.summary and "timed out" in prov.error
    _wait_for_c2pa_threads()


def test_slow_manifests_take_at_most_a_few_threads(monkeypatch, signed_jpeg):
    pytest.importorskip("c2pa")
    _wait_for_c2pa_threads()
    release = threading.Event()

    class StuckReader:
        def __init__(self, *args, **kwargs):
            release.wait(10)
            raise RuntimeError("never mind")

    fake = type("FakeC2pa", (), {"Reader": StuckReader, "Context": object})
    monkeypatch.setattr(prov_mod, "_c2pa_state", {"module": fake, ("context", None): object()})
    try:
        slots = prov_mod.MAX_C2PA_IN_FLIGHT
        notes = [read_provenance_bytes(signed_jpeg, timeout_s=0.05).error for _ in range(slots + 2)]
        assert notes[:slots] == ["c2pa reader timed out"] * slots
        assert notes[-1] == "c2pa reader busy"
    finally:
        release.set()
    _wait_for_c2pa_threads()
    prov = read_provenance_bytes(signed_jpeg, timeout_s=1)  # the slots are free again
    assert "never mind" in prov.error


def test_corrupt_manifest_is_reported_not_raised(signed_jpeg):
    at = signed_jpeg.index(b"c2pa.signature") if b"c2pa.signature" in signed_jpeg else signed_jpeg.index(b"jumd") + 40
    broken = signed_jpeg[:at] + b"\x00" * 64 + signed_jpeg[at + 64 :]
    prov = read_provenance_bytes(broken)
    ev = _only(prov, "c2pa")
    assert not ev.verified and ("manifest present but unreadable" in ev.text or "(invalid:" in ev.text), prov
    assert "\n" not in prov.error


def test_remote_manifest_reference_is_shown_not_fetched():
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           b'<rdf:Description xmlns:dcterms="http://purl.org/dc/terms/" '
           b'dcterms:provenance="https://example.invalid/manifest.c2pa"/></rdf:RDF></x:xmpmeta>')
    prov = read_provenance_bytes(pc.jpeg_with_xmp(xmp))
    assert prov.summary == "c2pa: remote manifest referenced, not fetched (https://example.invalid/manifest.c2pa)"
    assert not prov.declared_ai and not prov.verified_ai


# ---------------------------------------------------------------------------------------------- rule and the row

def test_verdict_rule_and_row():
    iptc = Evidence("iptc", "iptc: trainedAlgorithmicMedia", declares_ai=True, verified=False)
    signed = Evidence("c2pa", "c2pa: X (valid signature)", declares_ai=False, verified=True)
    cases = [((), "human"), ((iptc,), "human"), ((iptc, signed), "human"),
             ((Evidence("c2pa", "c2pa: X", True, True),), "synthetic (declared)")]
    for evidence, expected in cases:
        assert apply_verdict_rule("human", Provenance("a.jpg", evidence)) == expected
    prov = Provenance("a.jpg", (iptc, signed), error="note")
    assert prov.summary == "iptc: trainedAlgorithmicMedia; c2pa: X (valid signature)"
    assert prov.declared_ai and not prov.verified_ai
    row = prov.as_row()
    assert tuple(row) == ROW_FIELDS
    assert row == {"path": "a.jpg", "provenance": prov.summary, "declared_ai": True, "verified_ai": False,
                   "provenance_error": "note"}
    assert Provenance("b.png", ()).as_row()["provenance"] == ""


# ------------------------------------------------------------------------------------------------ hostile inputs

@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_corpus_provenance")
    return root, bc.make_bad_corpus(root)


def test_bad_corpus_never_raises(corpus):
    root, expected = corpus
    unreadable = {"empty.jpg", "text.jpg", "page.png", "truncated_header.jpg", "selfloop.jpg", "dangling.jpg",
                  "loop/back", "x.jpg", "fifo.jpg"}
    if not bc.permissions_are_bypassed(root):
        unreadable.add("unreadable.png")
    for name in expected:
        t0 = time.monotonic()
        prov = read_provenance(root / name)
        assert time.monotonic() - t0 < 2, name
        assert isinstance(prov, Provenance) and prov.path == str(root / name)
        assert "\n" not in prov.error and "\n" not in prov.summary, (name, prov)
        assert not prov.declared_ai, (name, prov)
        if name in unreadable:
            assert prov.error and prov.evidence == (), (name, prov)
        else:  # pixels are not our business: truncated data, a 900 Mpx header or a bad IHDR checksum read fine
            assert prov.error == "" or name in {"truncated.png"}, (name, prov)
    assert "empty" in read_provenance(root / "empty.jpg").error
    assert "directory" in read_provenance(root / "x.jpg").error
    assert "regular file" in read_provenance(root / "fifo.jpg").error
    assert "truncated" in read_provenance(root / "truncated_header.jpg").error


def test_size_limit_is_checked_before_reading(tmp_path):
    path = _write(tmp_path, "big.png", pc.png_with_text("workflow", pc.COMFY_WORKFLOW))
    prov = read_provenance(path, max_bytes=100)
    assert prov.evidence == () and "above the 100-byte limit" in prov.error
    assert read_provenance(path, max_bytes=path.stat().st_size).declared_ai
    assert prov_mod.DEFAULT_MAX_BYTES == 4 * 64_000_000


def test_compressed_text_bomb_is_capped():
    bomb = b"parameters\x00\x00" + zlib.compress(b"Steps: 1, Seed: 2 " + b"\x00" * (200 * 2**20), 9)
    png = pc.png_insert_after_idat(pc.encode(pc.pixels(), "PNG"), pc.png_chunk(b"zTXt", bomb))
    t0 = time.monotonic()
    prov = read_provenance_bytes(png)
    assert time.monotonic() - t0 < 5
    assert "read up to" in prov.error


def test_pathological_xmp_stays_fast():
    word = b"a" * (3 * 2**20)
    colons = b"x:DigitalSourceType" * 150_000
    for body in [word, colons, b"<" * (3 * 2**20), b'Iptc4xmpExt:DigitalSourceType="' + word,
                 b"<Iptc4xmpExt:DigitalSourceType " + word]:
        t0 = time.monotonic()
        prov = read_provenance_bytes(pc.png_with_xmp(b"<x:xmpmeta>" + body + b"</x:xmpmeta>"))
        assert time.monotonic() - t0 < 3, body[:40]
        assert prov.error == "" and not prov.declared_ai, prov
    huge = read_provenance_bytes(pc.png_with_xmp(b"<x:xmpmeta>" + word * 2 + b"</x:xmpmeta>"))
    assert "read up to 4194304 bytes" in huge.error


def test_deadline_stops_a_long_scan(monkeypatch):
    png = pc.encode(pc.pixels(), "PNG")
    many = png[:-12] + pc.png_chunk(b"tIME", b"\x07\xe8\x01\x01\x00\x00\x00") * 200_000 + png[-12:]
    prov = read_provenance_bytes(many, timeout_s=0.001)
    assert "time limit" in prov.error


def test_pixels_are_never_decoded(monkeypatch, tmp_path):
    from PIL import Image, ImageFile

    def refuse(*args, **kwargs):
        raise AssertionError("pixels decoded")

    files = [pc.jpeg_with_xmp(pc.xmp_packet("trainedAlgorithmicMedia")), pc.png_with_text("prompt", pc.COMFY_PROMPT),
             pc.tiff_with_software("ComfyUI"), pc.webp_with_exif("ComfyUI"), pc.jpeg_with_exif("ComfyUI")]
    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)
    monkeypatch.setattr(Image.Image, "load", refuse)
    monkeypatch.setattr(Image, "open", refuse)
    for data in files:
        prov = read_provenance_bytes(data)
        assert prov.declared_ai and prov.error == "", prov


def test_unknown_bytes_and_odd_paths():
    assert "not a JPEG/PNG" in read_provenance_bytes(bytes(range(200, 256))).error
    assert read_provenance("a\0b.png").error.startswith("invalid path")
    prov = read_provenance(123)  # not a path: a note, not an exception
    assert prov.error and prov.path == "123"


# ------------------------------------------------------------------------------------------------------- command

@pytest.fixture
def folder(tmp_path, signed_jpeg):
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    (root / "ai.jpg").write_bytes(signed_jpeg)
    (root / "sub" / "flow.png").write_bytes(pc.png_with_text("workflow", pc.COMFY_WORKFLOW))
    (root / "plain.jpg").write_bytes(pc.encode(pc.pixels(), "JPEG"))
    (root / "broken.png").write_bytes(b"<html>not an image</html>")
    return root


def test_command_outputs_each_file_once(folder, capsys):
    code = run_cmd([str(folder), str(folder / "ai.jpg"), str(folder / "**" / "*.png"), "-o", "csv"])
    out, err = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(out)))
    paths = [r["path"] for r in rows]
    assert sorted(paths) == sorted({str(folder / n) for n in ["ai.jpg", "sub/flow.png", "plain.jpg", "broken.png"]})
    assert len(paths) == len(set(paths)) == 4
    by_name = {r["path"].rsplit("/", 1)[1]: r for r in rows}
    assert by_name["ai.jpg"]["verified_ai"] == "True" and by_name["flow.png"]["declared_ai"] == "True"
    assert by_name["flow.png"]["provenance"] == "png: comfyui workflow"
    assert by_name["plain.jpg"]["provenance"] == "" and by_name["plain.jpg"]["provenance_error"] == ""
    assert "HTML" in by_name["broken.png"]["provenance_error"]
    assert code == 1 and err.count("\n") == 1 and "1 unreadable" in err


@pytest.mark.parametrize("fmt", ["json", "jsonl", "table"])
def test_command_formats(folder, capsys, fmt):
    spelled = ["output=jsonl"] if fmt == "jsonl" else ["-o", fmt]  # `output=FMT` as negate infer spells it
    code = run_cmd([str(folder / "ai.jpg"), str(folder / "sub"), *spelled])
    out, err = capsys.readouterr()
    assert code == 0, err
    if fmt == "json":
        rows = json.loads(out)
    elif fmt == "jsonl":
        rows = [json.loads(line) for line in out.splitlines()]
    else:
        assert "negate provenance" in out and "comfyui workflow" in out
        return
    assert [tuple(r) for r in rows] == [ROW_FIELDS] * 2 and rows[0]["verified_ai"] is True


def test_command_exit_codes_and_usage_errors(folder, tmp_path, capsys):
    assert run_cmd([str(folder / "broken.png"), str(tmp_path / "nope.jpg"), "-q"]) == 2
    _, err = capsys.readouterr()
    assert err.count("\n") == 1 and "nothing readable" in err and "Traceback" not in err
    for argv in [[], ["-o", "xml", "x"], ["output=xml", "x"], ["--timeout", "0", "x"], ["--bogus", "x"]]:
        assert run_cmd(argv) == 2, argv
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and err.startswith("negate provenance: error:"), (argv, err)
    assert run_cmd([str(tmp_path / "*.nothing")]) == 2
    assert "no file matches" in capsys.readouterr().err
    assert run_cmd([str(folder / "plain.jpg"), "-q"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and out.startswith("path,provenance,declared_ai,verified_ai,provenance_error")


def test_infer_rows_get_evidence_and_the_verdict_rule(tmp_path, chain):
    """negate.infer.add_provenance: evidence columns on every row; only a verified C2PA AI declaration changes
    a pixel verdict; error rows keep their verdict."""
    from negate.infer import add_provenance

    chain_pem, key_pem, _ = chain
    files = {"signed.jpg": pc.sign_c2pa(pc.encode(pc.pixels(7), "JPEG", quality=90), "image/jpeg", chain_pem, key_pem),
             "comfy.png": pc.png_with_text("workflow", json.dumps({"nodes": [{"type": "KSampler"}]})),
             "plain.jpg": pc.strip(pc.encode(pc.pixels(8), "JPEG", quality=90))}
    rows = []
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        rows.append({"path": str(tmp_path / name), "prob_synthetic": 0.1, "verdict": "human", "reason": "", "error": ""})
    rows.append({"path": str(tmp_path / "gone.jpg"), "prob_synthetic": None, "verdict": "error", "reason": "",
                 "error": "no such file"})
    add_provenance(rows)
    signed, comfy, plain, gone = rows
    assert signed["verdict"] == "synthetic (declared)" and signed["verified_ai"] and "c2pa:" in signed["provenance"]
    assert comfy["verdict"] == "human" and comfy["declared_ai"] and "png:" in comfy["provenance"]
    assert plain["verdict"] == "human" and plain["provenance"] == "" and not plain["declared_ai"]
    assert gone["verdict"] == "error" and set(gone) >= {"provenance", "declared_ai", "verified_ai", "provenance_error"}
