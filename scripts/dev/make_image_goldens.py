#!/usr/bin/python3
# Produces the image fixtures and Pillow goldens under testdata/images/, read by
# tests/test_image.c and tests/test_resize.c:
#   - small PNG/JPEG fixtures covering every decoder case, plus broken files;
#   - NAME.rgb: Pillow's Image.open(NAME).convert('RGB') as raw bytes (H, W, 3);
#   - decode_goldens.txt: one line per fixture, "ok NAME W H" or "error NAME";
#   - real_goldens.txt: for the photos in ../shared/data/real-images/, the
#     SHA-256 of Pillow's decoded RGB, and per resize case the SHA-256 of
#     img.crop(box).resize(size, BICUBIC) plus rows 0, mid and last (base64).
# Also refreshes the seed corpus fuzz/corpus/fuzz_image/ from the fixtures.
#
# Run from the repository root with Pillow 9.4 on the system libjpeg-turbo:
#   /usr/bin/python3 scripts/dev/make_image_goldens.py
# It needs a C compiler and libjpeg headers for the YCCK and RGB-colourspace JPEGs,
# which Pillow cannot write.
import base64
import hashlib
import io
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import warnings
import zlib

import numpy as np
import PIL
from PIL import Image, ImageFile

OUT = "testdata/images"
CORPUS = "fuzz/corpus/fuzz_image"
REAL = os.environ.get("ALBEF_SHARED_DATA", "../shared/data") + "/real-images"

assert PIL.__version__.startswith("9.4"), f"Pillow 9.4 expected, found {PIL.__version__}"
assert not ImageFile.LOAD_TRUNCATED_IMAGES
warnings.filterwarnings("ignore", "Palette images with Transparency")


def smooth_noise(h, w, channels, seed):
    """Gradients plus noise: enough detail to exercise every JPEG block path."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:h, 0:w]
    planes = []
    for c in range(channels):
        base = 127 + 100 * np.sin(x * (0.3 + 0.1 * c) + y * (0.2 - 0.05 * c) + c)
        planes.append(base + rng.normal(0, 25, (h, w)))
    return np.clip(np.stack(planes, -1), 0, 255).round().astype(np.uint8)


# ---------------------------------------------------------------- PNG writer
# Pillow cannot write 2/4-bit gray, 16-bit gray+alpha, short palettes with
# out-of-range indices, or Adam7 interlacing, so the fixtures are encoded
# here and only *decoded* by Pillow.

def png_chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def pack_row(samples, bit_depth):
    """samples: 1-D array of sample values for one row (pixels * channels)."""
    if bit_depth == 16:
        return b"".join(struct.pack(">H", int(v)) for v in samples)
    if bit_depth == 8:
        return bytes(int(v) for v in samples)
    per_byte = 8 // bit_depth
    out = bytearray()
    for i in range(0, len(samples), per_byte):
        byte = 0
        for j in range(per_byte):
            v = int(samples[i + j]) if i + j < len(samples) else 0
            byte |= v << (8 - bit_depth * (j + 1))
        out.append(byte)
    return bytes(out)


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def filter_rows(rows, bpp):
    """Cycles through the five filter types so the decoder meets each of them."""
    out = bytearray()
    prev = bytes(len(rows[0])) if rows else b""
    for r, row in enumerate(rows):
        ftype = r % 5
        out.append(ftype)
        for i, x in enumerate(row):
            a = row[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            pred = [0, a, b, (a + b) // 2, paeth(a, b, c)][ftype]
            out.append((x - pred) & 0xFF)
        prev = row
    return bytes(out)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def encode_png(pixels, bit_depth, color_type, palette=None, trns=None, interlace=False):
    """pixels: (H, W, C) array of samples already in the bit depth's range."""
    h, w, c = pixels.shape
    bpp = max(1, c * bit_depth // 8)
    if interlace:
        raw = b""
        for x0, y0, dx, dy in ADAM7:
            sub = pixels[y0::dy, x0::dx]
            if sub.shape[0] == 0 or sub.shape[1] == 0:
                continue
            raw += filter_rows([pack_row(row.reshape(-1), bit_depth) for row in sub], bpp)
    else:
        raw = filter_rows([pack_row(row.reshape(-1), bit_depth) for row in pixels], bpp)
    out = b"\x89PNG\r\n\x1a\n"
    out += png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 1 if interlace else 0))
    if palette is not None:
        out += png_chunk(b"PLTE", bytes(palette))
    if trns is not None:
        out += png_chunk(b"tRNS", bytes(trns))
    out += png_chunk(b"IDAT", zlib.compress(raw, 9))
    out += png_chunk(b"IEND", b"")
    return out


# ---------------------------------------------------------------- JPEG writer in C
# Pillow writes CMYK JPEGs (Adobe, transform 0) but neither YCCK nor
# RGB-colourspace ones; a throwaway libjpeg program writes those.
JPEG_WRITER_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>
int main(int argc, char **argv)
{
    /* usage: writer in.raw out.jpg W H C colourspace(ycck|rgb) */
    int w = atoi(argv[3]), h = atoi(argv[4]), c = atoi(argv[5]);
    FILE *in = fopen(argv[1], "rb"), *out = fopen(argv[2], "wb");
    unsigned char *buf = malloc((size_t)w * h * c);
    if (!in || !out || fread(buf, 1, (size_t)w * h * c, in) != (size_t)w * h * c) return 1;
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr err;
    ci.err = jpeg_std_error(&err);
    jpeg_create_compress(&ci);
    jpeg_stdio_dest(&ci, out);
    ci.image_width = w; ci.image_height = h; ci.input_components = c;
    ci.in_color_space = c == 4 ? JCS_CMYK : JCS_RGB;
    jpeg_set_defaults(&ci);
    jpeg_set_colorspace(&ci, strcmp(argv[6], "ycck") == 0 ? JCS_YCCK : JCS_RGB);
    jpeg_set_quality(&ci, 90, TRUE);
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < ci.image_height) {
        JSAMPROW row = buf + (size_t)ci.next_scanline * w * c;
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    fclose(out);
    return 0;
}
"""


def libjpeg_write(pixels, colourspace):
    h, w, c = pixels.shape
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = os.path.join(tmp, "w.c"), os.path.join(tmp, "w")
        with open(src, "w") as f:
            f.write(JPEG_WRITER_C)
        subprocess.check_call(["cc", "-O1", src, "-o", exe, "-ljpeg"])
        raw, jpg = os.path.join(tmp, "in.raw"), os.path.join(tmp, "out.jpg")
        with open(raw, "wb") as f:
            f.write(pixels.tobytes())
        subprocess.check_call([exe, raw, jpg, str(w), str(h), str(c), colourspace])
        with open(jpg, "rb") as f:
            return f.read()


def pillow_jpeg(img, **kw):
    b = io.BytesIO()
    img.save(b, "JPEG", **kw)
    return b.getvalue()


def pillow_png(img, **kw):
    b = io.BytesIO()
    img.save(b, "PNG", **kw)
    return b.getvalue()


def sof_offset(data):
    """Offset of the first SOFn marker segment in a JPEG."""
    i = 2
    while i < len(data):
        marker = data[i + 1]
        if marker in (0xC0, 0xC1, 0xC2):
            return i
        i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
    raise ValueError("no SOF")


def fixtures():
    """(name, bytes, pillow_must_fail) for every decoder case."""
    out = []
    # PNG gray, 1/2/4/8/16 bits.
    g = smooth_noise(7, 13, 1, 1)
    out.append(("png_gray1.png", encode_png(g >> 7, 1, 0), False))
    g = smooth_noise(9, 15, 1, 2)
    out.append(("png_gray2.png", encode_png(g >> 6, 2, 0), False))
    g = smooth_noise(11, 17, 1, 3)
    out.append(("png_gray4.png", encode_png(g >> 4, 4, 0), False))
    out.append(("png_gray8.png", pillow_png(Image.fromarray(smooth_noise(14, 20, 1, 4)[..., 0], "L")), False))
    # 16-bit gray: Pillow opens it as mode I and convert('RGB') clips at 255,
    # so keep a band of small values to make the clip visible.
    g16 = smooth_noise(13, 19, 1, 5).astype(np.uint16) * 257
    g16[:4] //= 300
    out.append(("png_gray16.png", encode_png(g16, 16, 0), False))
    out.append(("png_gray16_adam7.png", encode_png(g16, 16, 0, interlace=True), False))
    # Gray + alpha, 8 and 16 bits.
    la = smooth_noise(10, 16, 2, 6)
    out.append(("png_gray_alpha8.png", encode_png(la, 8, 4), False))
    # 16-bit samples with random low bytes: only a high-byte reduction matches.
    low = np.random.RandomState(60).randint(0, 256, (10, 16, 2))
    out.append(("png_gray_alpha16.png", encode_png(la.astype(np.uint16) * 256 + low, 16, 4), False))
    # Gray with tRNS (ignored by convert('RGB')).
    out.append(("png_gray8_trns.png", encode_png(smooth_noise(8, 12, 1, 7), 8, 0, trns=b"\x00\x40"), False))
    # Palette: full, with tRNS, short palette with indices past its end.
    rng = np.random.RandomState(8)
    pal = rng.randint(0, 256, 3 * 256).astype(np.uint8)
    idx = rng.randint(0, 256, (12, 21, 1))
    out.append(("png_palette8.png", encode_png(idx, 8, 3, palette=pal), False))
    out.append(("png_palette8_trns.png",
                encode_png(idx, 8, 3, palette=pal, trns=rng.randint(0, 256, 40).astype(np.uint8)), False))
    idx4 = rng.randint(0, 16, (9, 14, 1))
    out.append(("png_palette4_short.png", encode_png(idx4, 4, 3, palette=pal[:5 * 3]), False))
    idx1 = rng.randint(0, 2, (6, 11, 1))
    out.append(("png_palette1.png", encode_png(idx1, 1, 3, palette=pal[:6]), False))
    idx2 = rng.randint(0, 4, (13, 10, 1))
    out.append(("png_palette2_adam7.png", encode_png(idx2, 2, 3, palette=pal[:12], interlace=True), False))
    # RGB / RGBA, 8 and 16 bits, plain and interlaced.
    rgb = smooth_noise(15, 22, 3, 9)
    out.append(("png_rgb8.png", pillow_png(Image.fromarray(rgb, "RGB")), False))
    out.append(("png_rgb8_trns.png", encode_png(rgb, 8, 2, trns=struct.pack(">HHH", 10, 20, 30)), False))
    out.append(("png_rgb8_adam7.png", encode_png(smooth_noise(17, 23, 3, 10), 8, 2, interlace=True), False))
    out.append(("png_rgb8_adam7_tiny.png", encode_png(smooth_noise(3, 2, 3, 11), 8, 2, interlace=True), False))
    rgba = smooth_noise(11, 18, 4, 12)
    out.append(("png_rgba8.png", pillow_png(Image.fromarray(rgba, "RGBA")), False))
    rgb16 = smooth_noise(12, 16, 3, 13).astype(np.uint16) * 256 + np.random.RandomState(14).randint(0, 256, (12, 16, 3))
    out.append(("png_rgb16.png", encode_png(rgb16, 16, 2), False))
    low = np.random.RandomState(61).randint(0, 256, (9, 13, 4))
    out.append(("png_rgba16.png", encode_png(smooth_noise(9, 13, 4, 15).astype(np.uint16) * 256 + low, 16, 6), False))
    out.append(("png_1x1.png", pillow_png(Image.fromarray(smooth_noise(1, 1, 3, 16), "RGB")), False))

    # JPEG: odd sizes so that partial MCUs and fancy upsampling edges matter.
    rgb = Image.fromarray(smooth_noise(23, 37, 3, 20), "RGB")
    base = pillow_jpeg(rgb, quality=85)  # 4:2:0
    out.append(("jpeg_420.jpg", base, False))
    out.append(("jpeg_422.jpg", pillow_jpeg(rgb, quality=85, subsampling=1), False))
    out.append(("jpeg_444.jpg", pillow_jpeg(rgb, quality=95, subsampling=0), False))
    out.append(("jpeg_progressive.jpg", pillow_jpeg(rgb, quality=85, progressive=True), False))
    out.append(("jpeg_restart.jpg", pillow_jpeg(rgb, quality=85, restart_marker_blocks=2), False))
    out.append(("jpeg_gray.jpg", pillow_jpeg(Image.fromarray(smooth_noise(19, 26, 1, 21)[..., 0], "L")), False))
    cmyk = smooth_noise(17, 24, 4, 22)
    out.append(("jpeg_cmyk.jpg", pillow_jpeg(Image.fromarray(cmyk, "CMYK"), quality=90), False))
    out.append(("jpeg_ycck.jpg", libjpeg_write(cmyk, "ycck"), False))
    out.append(("jpeg_rgb_colourspace.jpg", libjpeg_write(smooth_noise(16, 21, 3, 23), "rgb"), False))
    out.append(("jpeg_1x1.jpg", pillow_jpeg(Image.fromarray(smooth_noise(1, 1, 3, 24), "RGB")), False))

    # Broken files: Pillow refuses every one of them (even the one that lacks
    # only its EOI marker: "image file is truncated").
    out.append(("jpeg_no_eoi.jpg", base[:-2], True))
    out.append(("jpeg_truncated.jpg", base[: len(base) * 2 // 3], True))
    prog = pillow_jpeg(rgb, quality=85, progressive=True)
    out.append(("jpeg_progressive_truncated.jpg", prog[: len(prog) * 3 // 4], True))
    out.append(("jpeg_header_only.jpg", base[: sof_offset(base) + 4], True))
    huge = bytearray(base)
    sof = sof_offset(base)
    huge[sof + 5:sof + 9] = struct.pack(">HH", 65000, 65000)  # height, width
    out.append(("jpeg_huge.jpg", bytes(huge), True))
    png = pillow_png(Image.fromarray(smooth_noise(15, 22, 3, 9), "RGB"))
    bad_crc = bytearray(png)
    bad_crc[29] ^= 0xFF  # last byte of IHDR's CRC
    out.append(("png_bad_crc.png", bytes(bad_crc), True))
    bad_zlib = bytearray(encode_png(smooth_noise(15, 22, 3, 9), 8, 2))
    idat = bytes(bad_zlib).index(b"IDAT")
    n = struct.unpack(">I", bad_zlib[idat - 4:idat])[0]
    for i in range(idat + 4 + 2, idat + 4 + n, 7):  # keep the zlib header, spoil the stream
        bad_zlib[i] ^= 0x5A
    bad_zlib[idat + 4 + n:idat + 8 + n] = struct.pack(">I", zlib.crc32(bytes(bad_zlib[idat:idat + 4 + n])) & 0xFFFFFFFF)
    out.append(("png_corrupt_data.png", bytes(bad_zlib), True))
    out.append(("png_truncated.png", png[: len(png) // 2], True))
    huge_png = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0))
    huge_png += png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + png_chunk(b"IEND", b"")
    out.append(("png_huge.png", huge_png, True))
    out.append(("empty.jpg", b"", True))
    out.append(("text.jpg", b"This is a text file, not a JPEG.\n", True))
    return out


def pillow_rgb(data):
    im = Image.open(io.BytesIO(data))
    return np.asarray(im.convert("RGB"))


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def sha256(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def make_fixtures():
    lines = []
    for name, data, must_fail in fixtures():
        write(os.path.join(OUT, name), data)
        try:
            rgb = pillow_rgb(data)
        except Exception as e:  # noqa: BLE001 - any Pillow failure is the point here
            if not must_fail:
                raise
            lines.append(f"error {name}")
            print(f"{name}: Pillow fails as expected ({type(e).__name__}: {e})", file=sys.stderr)
            continue
        if must_fail:
            sys.exit(f"{name}: Pillow decoded a file meant to be broken")
        h, w, _ = rgb.shape
        write(os.path.join(OUT, name.rsplit(".", 1)[0] + ".rgb"), rgb.tobytes())
        lines.append(f"ok {name} {w} {h}")
    with open(os.path.join(OUT, "decode_goldens.txt"), "w") as f:
        f.write("# status file [width height]; NAME.rgb holds Pillow's convert('RGB') bytes\n")
        f.write("\n".join(lines) + "\n")
    os.makedirs(CORPUS, exist_ok=True)
    for name, data, _ in fixtures():
        if data and name not in ("png_huge.png", "jpeg_huge.jpg"):
            write(os.path.join(CORPUS, name), data)


def resize_cases(w, h):
    """(x0, y0, cw, ch, out_w, out_h): crop box, then output size."""
    return [
        (0, 0, w, h, 384, 384),
        (0, 0, w, h, 256, 256),
        (0, 0, w, h, 224, 224),
        (0, 0, w, h, 97, 61),
        (0, 0, w, h, w, h),                               # identity
        (w // 5, h // 7, w // 2, h // 2, 256, 256),       # RandomResizedCrop-like
        (10, 20, 50, 30, 384, 384),                       # strong upscale
        (w // 3, h // 4, 120, 200, 300, 50),              # up in x, down in y
        (w // 2, h // 2, 1, 1, 3, 3),                     # single pixel
        (w // 4, 5, 1, 40, 9, 17),                        # one column
        (3, h // 3, 40, 1, 17, 9),                        # one row
        (w - 7, h - 5, 7, 5, 8, 6),                       # bottom-right corner, slight upscale
        (w - 100, 0, 100, h, 100, 77),                    # vertical pass only
        (0, h - 50, w, 50, 123, 50),                      # horizontal pass only
    ]


def sweep_cases(w, h, seed):
    """Random crops and output sizes (small, so the rows stay short): scale
    factors from far below 1 to far above, odd and even, 1-pixel sides."""
    rng = np.random.RandomState(seed)
    cases = [(0, 0, w, h, 1, 1), (0, 0, w, h, 2, 3), (0, 0, 3, 2, 64, 64), (5, 7, 64, 64, 32, 32),
             (5, 7, 64, 64, 21, 43), (0, 0, 60, 60, 40, 40)]
    while len(cases) < 40:
        cw, ch = int(rng.randint(1, w + 1)), int(rng.randint(1, h + 1))
        x0, y0 = int(rng.randint(0, w - cw + 1)), int(rng.randint(0, h - ch + 1))
        cases.append((x0, y0, cw, ch, int(rng.randint(1, 65)), int(rng.randint(1, 65))))
    return cases


def make_real_goldens():
    names = sorted(f for f in os.listdir(REAL) if f.endswith((".png", ".jpg")))
    lines = ["# decode NAME W H SHA256(rgb)",
             "# resize NAME X0 Y0 W H OUT_W OUT_H SHA256 ROW0 ROWMID ROWLAST (rows: base64 RGB)"]
    for name in names:
        with open(os.path.join(REAL, name), "rb") as f:
            im = Image.open(io.BytesIO(f.read())).convert("RGB")
        w, h = im.size
        lines.append(f"decode {name} {w} {h} {sha256(np.asarray(im))}")
        cases = resize_cases(w, h) + (sweep_cases(w, h, 70) if name == "rocket.jpg" else [])
        for x0, y0, cw, ch, ow, oh in cases:
            r = np.asarray(im.crop((x0, y0, x0 + cw, y0 + ch)).resize((ow, oh), Image.BICUBIC))
            rows = " ".join(base64.b64encode(r[y].tobytes()).decode() for y in (0, oh // 2, oh - 1))
            lines.append(f"resize {name} {x0} {y0} {cw} {ch} {ow} {oh} {sha256(r)} {rows}")
    with open(os.path.join(OUT, "real_goldens.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    if not os.path.isdir(REAL):
        sys.exit(f"{REAL}: not found (run from the repository root or set ALBEF_SHARED_DATA)")
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    make_fixtures()
    make_real_goldens()


if __name__ == "__main__":
    main()
