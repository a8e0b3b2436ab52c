import io
import pickle

import numpy as np
import pytest
from PIL import Image

import bad_corpus as bc
from negate.data.decode import (
    BACKGROUND,
    DecodeError,
    decode_image,
    has_image_extension,
    image_size,
    read_file_bytes,
    sha256_bytes,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_corpus")
    return root, bc.make_bad_corpus(root)


def _rgb(img: Image.Image) -> np.ndarray:
    assert img.mode == "RGB"
    arr = np.asarray(img)
    assert arr.dtype == np.uint8 and arr.shape == (img.height, img.width, 3)
    return arr


def _encode(im: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def test_every_corpus_item_decodes_or_raises_a_one_line_decode_error(corpus):
    root, expected = corpus
    assert "ok" in expected.values() and "error" in expected.values()
    wrong = []
    for name, outcome in expected.items():
        try:
            img = decode_image(root / name)
        except DecodeError as e:
            message = str(e)
            if outcome == "ok":
                wrong.append(f"{name}: expected an image, got DecodeError {message}")
            elif "\n" in message or not e.reason or e.path != root / name:
                wrong.append(f"{name}: malformed error {message!r} (path {e.path})")
            continue
        if outcome == "error":
            wrong.append(f"{name}: expected DecodeError, got a {img.mode} {img.size} image")
        else:
            _rgb(img)
    assert not wrong, "\n".join(wrong)


def test_bytes_and_path_give_the_same_pixels(corpus):
    root, _ = corpus
    for name in ["cmyk.jpg", "la.png", "animated.webp", bc.UNICODE_PATH]:
        data = (root / name).read_bytes()
        assert np.array_equal(_rgb(decode_image(data)), _rgb(decode_image(root / name))), name
        assert np.array_equal(_rgb(decode_image(bytearray(data))), _rgb(decode_image(str(root / name)))), name


def test_sizes_of_tiny_and_odd_images(corpus):
    root, _ = corpus
    assert np.array_equal(_rgb(decode_image(root / "tiny_1x1.png")), np.array([[bc.TINY_RGB]], np.uint8))
    assert decode_image(root / "small_7x3.jpg").size == (7, 3)
    assert decode_image(root / bc.UNICODE_PATH).size == bc.UNICODE_SIZE


def test_16bit_grey_is_scaled_not_clipped(corpus):
    root, _ = corpus
    arr = _rgb(decode_image(root / "grey16.png"))
    expected = np.rint(bc.GREY16_VALUES.astype(np.float64) * 255 / 65535).astype(np.uint8)
    for c in range(3):
        assert np.array_equal(arr[:, :, c], expected)
    assert arr[0, list(bc.GREY16_VALUES[0]).index(1000), 0] == 4  # clipping would give 255


def test_alpha_is_composited_on_the_documented_background(corpus):
    root, _ = corpus
    la = _rgb(decode_image(root / "la.png")).astype(int)
    for i, (grey, alpha) in enumerate(bc.LA_PIXELS):
        want = grey * alpha / 255 + BACKGROUND[0] * (255 - alpha) / 255
        assert np.all(np.abs(la[0, i] - want) <= 1), (i, la[0, i], want)
    pal = _rgb(decode_image(root / "palette_transparent.png"))
    assert np.all(pal[:, :4] == BACKGROUND)  # index 0 is transparent
    assert np.all(pal[:, 4:] == bc.PALETTE[1])


def test_exif_orientation_6_is_applied(corpus):
    root, _ = corpus
    img = decode_image(root / "exif_rot6.jpg")
    stored_w, stored_h = bc.EXIF_SIZE
    assert img.size == (stored_h, stored_w)
    arr = _rgb(img).astype(int)
    m = bc.EXIF_MARK
    # stored top-left red square ends up top-right after a 90 degree clockwise turn
    top_right = arr[2 : m - 2, stored_h - m + 2 : stored_h - 2].reshape(-1, 3).mean(0)
    top_left = arr[2 : m - 2, 2 : stored_h - m - 2].reshape(-1, 3).mean(0)
    assert top_right[0] > 200 and top_right[2] < 60, top_right
    assert top_left[2] > 200 and top_left[0] < 60, top_left


@pytest.mark.parametrize("name", ["animated.gif", "animated.webp"])
def test_animation_gives_the_first_frame(corpus, name):
    root, _ = corpus
    arr = _rgb(decode_image(root / name))
    assert np.all(arr == bc.FRAME_COLOURS[0])


@pytest.mark.parametrize("text", [
    b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>\n',
    b'<?xml version="1.0" encoding="UTF-8"?>\n<!-- drawn by hand -->\n<svg viewBox="0 0 1 1"></svg>\n',
])
def test_an_svg_is_called_svg_not_html(tmp_path, text):
    (tmp_path / "logo.png").write_bytes(text)
    with pytest.raises(DecodeError) as info:
        decode_image(tmp_path / "logo.png")
    assert "SVG" in info.value.reason and "HTML" not in info.value.reason


def test_image_size_reads_the_header(tmp_path):
    Image.new("RGB", (1, 3)).save(tmp_path / "thin.png")
    assert image_size(tmp_path / "thin.png") == (1, 3)
    with pytest.raises(DecodeError):
        image_size(tmp_path / "missing.png")


def test_cmyk_jpeg_becomes_rgb(corpus):
    root, _ = corpus
    arr = _rgb(decode_image(root / "cmyk.jpg")).astype(int)
    assert np.abs(arr - np.array(bc.CMYK_AS_RGB)).max() <= 10


def test_error_reasons_say_what_is_wrong(corpus):
    root, _ = corpus
    reasons = {}
    for name in ["truncated.jpg", "truncated.png", "truncated_header.jpg", "empty.jpg", "text.jpg", "page.png", "selfloop.jpg",
                 "dangling.jpg", "x.jpg", "fifo.jpg", "bad_crc.png"]:
        with pytest.raises(DecodeError) as info:
            decode_image(root / name)
        reasons[name] = info.value.reason
    for name in ["truncated.jpg", "truncated.png", "truncated_header.jpg"]:
        assert "truncated" in reasons[name], reasons[name]
    assert "empty" in reasons["empty.jpg"]
    assert "text" in reasons["text.jpg"] and "HTML" in reasons["page.png"]
    assert "loop" in reasons["selfloop.jpg"] and "dangling" in reasons["dangling.jpg"]
    assert "directory" in reasons["x.jpg"] and "regular file" in reasons["fifo.jpg"]
    assert "checksum" in reasons["bad_crc.png"]


def test_bomb_header_is_refused_before_decoding_without_touching_pil_globals(corpus):
    root, _ = corpus
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(DecodeError) as info:
        decode_image(root / "bomb_header.png")
    assert info.value.reason == "image is 30000x30000 = 900 Mpx, above the 64 Mpx limit (data.max_pixels)"
    assert Image.MAX_IMAGE_PIXELS == before
    # between our limit and PIL's own: our limit decides
    with pytest.raises(DecodeError, match="9000x8000 = 72 Mpx, above the 64 Mpx"):
        decode_image(bc.png_bytes_with_header(9000, 8000))


def test_max_pixels_is_the_limit(corpus):
    root, _ = corpus
    with pytest.raises(DecodeError, match="7x3"):
        decode_image(root / "small_7x3.jpg", max_pixels=20)
    assert decode_image(root / "small_7x3.jpg", max_pixels=21).size == (7, 3)
    with pytest.raises(ValueError):
        decode_image(root / "small_7x3.jpg", max_pixels=0)


def test_unreadable_file(corpus):
    root, _ = corpus
    if bc.permissions_are_bypassed(root):
        pytest.skip("this process (root) reads mode-000 files; fifo.jpg covers unreadable input here")
    with pytest.raises(DecodeError, match="permission denied"):
        decode_image(root / "unreadable.png")
    with pytest.raises(DecodeError, match="permission denied"):
        read_file_bytes(root / "unreadable.png")


def test_missing_and_wrong_type_inputs(tmp_path):
    with pytest.raises(DecodeError, match="file not found"):
        decode_image(tmp_path / "nope.png")
    with pytest.raises(DecodeError, match="is a directory"):
        read_file_bytes(tmp_path)
    with pytest.raises(DecodeError, match="invalid path"):
        read_file_bytes("a\0b.png")
    with pytest.raises(TypeError):
        decode_image(np.zeros((4, 4, 3), np.uint8))


def test_float_and_int32_tiffs_follow_the_documented_rules():
    unit = np.array([[0.0, 0.5, 1.0, np.nan]], np.float32)
    arr = _rgb(decode_image(_encode(Image.fromarray(unit), "TIFF")))
    assert arr[0, :, 0].tolist() == [0, 128, 255, 0]
    wide = np.array([[-1.0, 1.0, 3.0]], np.float32)  # outside [0, 1]: min-max stretch
    assert _rgb(decode_image(_encode(Image.fromarray(wide), "TIFF")))[0, :, 0].tolist() == [0, 128, 255]
    as16 = np.array([[0, 257, 65535]], np.int32)
    assert _rgb(decode_image(_encode(Image.fromarray(as16), "TIFF")))[0, :, 0].tolist() == [0, 1, 255]
    full = np.array([[-(2**31), 0, 2**31 - 1]], np.int32)
    assert _rgb(decode_image(_encode(Image.fromarray(full), "TIFF")))[0, :, 0].tolist() == [0, 128, 255]


def test_one_bit_and_rgba_and_grey_key_transparency():
    bits = Image.fromarray(np.array([[0, 1, 1, 0]], bool))
    assert _rgb(decode_image(_encode(bits, "BMP")))[0, :, 0].tolist() == [0, 255, 255, 0]
    rgba = Image.new("RGBA", (3, 2), (10, 20, 30, 0))
    assert np.all(_rgb(decode_image(_encode(rgba, "WEBP", lossless=True))) == BACKGROUND)
    grey = Image.fromarray(np.array([[7, 9]], np.uint8))
    arr = _rgb(decode_image(_encode(grey, "PNG", transparency=7)))
    assert arr[0, 0].tolist() == list(BACKGROUND) and arr[0, 1].tolist() == [9, 9, 9]


def test_unsupported_formats_are_named():
    avif_head = b"\x00\x00\x00\x1cftypavif" + bytes(20)
    with pytest.raises(DecodeError, match="HEIF/AVIF files are not supported"):
        decode_image(avif_head)
    with pytest.raises(DecodeError, match="not a JPEG/PNG/GIF/WebP/BMP/TIFF image"):
        decode_image(bytes(range(200, 256)))


def test_decode_error_pickles_with_reason_and_path(corpus):
    root, _ = corpus
    with pytest.raises(DecodeError) as info:
        decode_image(root / "text.jpg")
    copy = pickle.loads(pickle.dumps(info.value))
    assert (copy.reason, copy.path, str(copy)) == (info.value.reason, root / "text.jpg", str(info.value))


def test_helpers():
    assert sha256_bytes(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert has_image_extension("a/B.JPEG") and has_image_extension("x.TiF") and not has_image_extension("x.txt")
