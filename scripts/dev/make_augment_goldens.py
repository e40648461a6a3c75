#!/usr/bin/env python3
# Produces the goldens under testdata/augment/ that tests/test_randaugment.c
# and tests/test_transform.c compare against:
#   manifest.json      index of everything below (image sizes, cases, offsets)
#   images.bin         small input images (uint8 HWC), concatenated
#   ops.bin            RandomAugment op outputs (uint8 HWC), concatenated
#   crop_params.json   RandomResizedCrop.get_params results for given uniform draws
#   test_transform_64.f32   Resize((64,64), BICUBIC) + ToTensor + Normalize of
#                           chelsea.png, float32 (3, 64, 64) little-endian
#   pipeline_*.u8      crop + resize + flip + ops, before ToTensor, uint8 HWC
#
# The op reference below re-states ALBEF's dataset/randaugment.py (numpy and
# OpenCV, quirks included); set ALBEF_REPO=/path/to/ALBEF to also check it
# against the original file. Run from the repository root:
#   /usr/bin/python3 scripts/dev/make_augment_goldens.py
# Needs numpy, OpenCV (apt-get install python3-opencv), Pillow, torch and
# torchvision; ../shared/data/real-images (or ALBEF_SHARED_DATA).
import json
import math
import os
import sys
import warnings

import cv2
import numpy as np
import torch
import torchvision.transforms as T
import torchvision.transforms.transforms as T_impl
from PIL import Image, ImageOps

OUT = "testdata/augment"
SHARED = os.environ.get("ALBEF_SHARED_DATA", "../shared/data")
MAX_LEVEL = 10
FILL = (128, 128, 128)
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)

warnings.filterwarnings("ignore", category=RuntimeWarning)  # uint8 negation wraps, on purpose


# ---- reference ops: the behaviour of ALBEF's numpy/OpenCV functions ----

def ref_autocontrast(img):
    def one(ch):
        lo, hi = ch.min(), ch.max()  # numpy uint8 scalars, as in ALBEF
        if hi <= lo:
            return ch
        scale = 255 / (hi - lo)
        lut = np.arange(256) * scale + (-lo) * scale  # -lo wraps to 256 - lo
        lut = np.clip(lut, 0, 255).astype(np.uint8)
        return lut[ch]
    return np.stack([one(img[:, :, c]) for c in range(img.shape[2])], axis=2)


def ref_equalize(img):
    def one(ch):
        hist = cv2.calcHist([ch], [0], None, [256], [0, 256]).reshape(-1)
        occupied = hist[hist != 0]
        step = np.sum(occupied[:-1]) // 255
        if step == 0:
            return ch
        shifted = np.concatenate([[step // 2], hist[:-1]]).astype(np.float32)
        lut = (np.cumsum(shifted) // step).clip(0, 255).astype(np.uint8)
        return lut[ch]
    return np.stack([one(img[:, :, c]) for c in range(img.shape[2])], axis=2)


def enhance_factor(m):
    return (m / MAX_LEVEL) * 1.8 + 0.1


def ref_brightness(img, factor):
    lut = (np.arange(256, dtype=np.float32) * factor).clip(0, 255).astype(np.uint8)
    return lut[img]


def ref_sharpness(img, factor):
    kernel = np.ones((3, 3), dtype=np.float32)
    kernel[1, 1] = 5
    kernel /= 13
    smooth = cv2.filter2D(img, -1, kernel)
    if factor == 1.0:
        return img
    out = img.astype(np.float32)
    inner = smooth.astype(np.float32)[1:-1, 1:-1, :]
    out[1:-1, 1:-1, :] = inner + factor * (out[1:-1, 1:-1, :] - inner)
    return out.astype(np.uint8)  # no clip: numpy's cast wraps


def warp(img, M):
    h, w = img.shape[:2]
    return cv2.warpAffine(img, M, (w, h), borderValue=FILL, flags=cv2.INTER_LINEAR)


def signed(value, negate):
    return -value if negate else value


def ref_op(img, op, m, negate):
    if op == "Identity":
        return img.copy()
    if op == "AutoContrast":
        return ref_autocontrast(img)
    if op == "AutoContrastPIL":
        return np.array(ImageOps.autocontrast(Image.fromarray(img)))
    if op == "Equalize":
        return ref_equalize(img)
    if op == "Brightness":
        return ref_brightness(img, enhance_factor(m))
    if op == "Sharpness":
        return ref_sharpness(img, enhance_factor(m))
    if op in ("ShearX", "ShearY"):
        s = signed((m / MAX_LEVEL) * 0.3, negate)
        M = np.float32([[1, s, 0], [0, 1, 0]]) if op == "ShearX" else np.float32([[1, 0, 0], [s, 1, 0]])
        return warp(img, M)
    if op in ("TranslateX", "TranslateY"):
        t = signed((m / MAX_LEVEL) * 10.0, negate)
        M = np.float32([[1, 0, -t], [0, 1, 0]]) if op == "TranslateX" else np.float32([[1, 0, 0], [0, 1, -t]])
        return warp(img, M)
    if op == "Rotate":
        deg = signed((m / MAX_LEVEL) * 30, negate)
        h, w = img.shape[:2]
        return warp(img, cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1))
    raise ValueError(op)


def albef_op(mod, img, op, m, negate):
    """The same op through ALBEF's own functions (argument and sign fixed)."""
    if op == "AutoContrastPIL":
        return None
    factor = enhance_factor(m)
    if op in ("Brightness", "Sharpness"):
        return mod.func_dict[op](img, factor)
    if op in ("ShearX", "ShearY"):
        return mod.func_dict[op](img, signed((m / MAX_LEVEL) * 0.3, negate), FILL)
    if op in ("TranslateX", "TranslateY"):
        return mod.func_dict[op](img, signed((m / MAX_LEVEL) * 10.0, negate), FILL)
    if op == "Rotate":
        return mod.func_dict[op](img, signed((m / MAX_LEVEL) * 30, negate), FILL)
    return mod.func_dict[op](img)


# ---- inputs ----

def load_rgb(name):
    return Image.open(os.path.join(SHARED, "real-images", name)).convert("RGB")


def make_images():
    rng = np.random.RandomState(1234)
    ys, xs = np.mgrid[0:16, 0:24]
    gradient = np.stack([xs * 11, ys * 17, (xs + ys) * 6], axis=2).astype(np.uint8)
    constant = np.empty((16, 24, 3), np.uint8)
    constant[:] = (200, 17, 128)
    # Smooth, channel minima above zero except in blue: ALBEF's AutoContrast
    # whitens the first two channels and stretches the third.
    low = cv2.resize(rng.randint(0, 256, (4, 6, 3)).astype(np.uint8), (24, 16), interpolation=cv2.INTER_LINEAR)
    low = (40 + low.astype(np.float32) * (160 / 255)).astype(np.uint8)
    low[:, :, 2] = low[:, :, 2] - low[:, :, 2].min()
    return [
        ("photo", np.array(load_rgb("chelsea.png").resize((32, 24), Image.BICUBIC))),
        ("photo_odd", np.array(load_rgb("astronaut.png").resize((33, 25), Image.BICUBIC))),
        ("noise", rng.randint(0, 256, (24, 32, 3)).astype(np.uint8)),
        ("gradient", gradient),
        ("constant", constant),
        ("lowcontrast", low),
        ("tiny", rng.randint(0, 256, (3, 2, 3)).astype(np.uint8)),
    ]


ALL_OPS = ["Identity", "AutoContrast", "Equalize", "Brightness", "Sharpness"]
SIGNED_OPS = ["ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"]


def op_cases(images):
    cases = []
    for name, _ in images:
        for op in ALL_OPS + ["AutoContrastPIL"]:
            cases.append((name, 7, [(op, 0)]))
        for op in SIGNED_OPS:
            for neg in (0, 1):
                cases.append((name, 7, [(op, neg)]))
    for name, m in (("photo", 5), ("photo", 10), ("photo_odd", 3)):
        for op in ["Brightness", "Sharpness"]:
            cases.append((name, m, [(op, 0)]))
        for op in SIGNED_OPS:
            for neg in (0, 1):
                cases.append((name, m, [(op, neg)]))
    for op in SIGNED_OPS:
        cases.append(("photo", 0, [(op, 0)]))
    for steps in ([("Equalize", 0), ("Rotate", 1)], [("ShearX", 0), ("Sharpness", 0)],
                  [("Rotate", 0), ("Rotate", 0)], [("AutoContrast", 0), ("TranslateY", 1)]):
        cases.append(("photo", 7, steps))
    return cases


# ---- RandomResizedCrop.get_params, fed fixed uniform draws ----

class DrawFeed:
    """Stands in for the torch module inside torchvision's transforms so that
    get_params runs its own arithmetic on our uniform draws: a uniform_(a, b)
    sample is float32(a + (b - a) * u) and randint(lo, hi) is lo + floor(u * (hi - lo))."""

    def __init__(self, draws):
        self.draws = list(draws)
        self.used = 0

    def next(self):
        u = self.draws[self.used]
        self.used += 1
        return u

    def __getattr__(self, name):
        return getattr(torch, name)

    def empty(self, *shape, **kw):
        feed = self

        class Sample:
            def uniform_(self, a, b):
                a, b = float(a), float(b)
                return torch.tensor([a + (b - a) * feed.next()], dtype=torch.float32)
        return Sample()

    def randint(self, lo, hi, size):
        k = min(int(math.floor(self.next() * (hi - lo))), hi - lo - 1)
        return torch.tensor([lo + k])


def crop_params(width, height, scale, ratio, draws):
    feed = DrawFeed(draws)
    real = T_impl.torch
    T_impl.torch = feed
    try:
        i, j, h, w = T.RandomResizedCrop.get_params(Image.new("L", (width, height)), scale, ratio)
    finally:
        T_impl.torch = real
    return [i, j, h, w], feed.used


def crop_cases():
    rng = np.random.RandomState(99)
    out = []
    settings = [((0.2, 1.0), (3 / 4, 4 / 3)), ((0.5, 1.0), (3 / 4, 4 / 3)), ((0.08, 1.0), (3 / 4, 4 / 3))]
    sizes = [(451, 300), (640, 427), (512, 512), (1411, 1411), (300, 451), (17, 13), (1, 1), (2, 3)]
    sizes += [(int(rng.randint(1, 2000)), int(rng.randint(1, 2000))) for _ in range(20)]
    for (w, h) in sizes:
        for scale, ratio in settings:
            out.append((w, h, scale, ratio, list(rng.uniform(0, 1, 22))))
    # All ten tries fail: the central crop with the ratio clamped.
    for (w, h) in [(1000, 10), (10, 1000), (3000, 40), (5, 100), (100, 5)]:
        out.append((w, h, (0.2, 1.0), (3 / 4, 4 / 3), list(rng.uniform(0, 1, 22))))
    # Half-way roundings in the fallback: round(2.5) is 2 in Python.
    out.append((5, 100, (0.2, 1.0), (2.0, 3.0), list(rng.uniform(0, 1, 22))))
    out.append((100, 5, (0.2, 1.0), (0.1, 0.5), list(rng.uniform(0, 1, 22))))
    out.append((7, 100, (0.2, 1.0), (2.0, 3.0), list(rng.uniform(0, 1, 22))))
    # Draws at the ends of [0, 1).
    out.append((451, 300, (0.2, 1.0), (3 / 4, 4 / 3), [0.0, 0.0, 0.0, 0.0] + [0.5] * 18))
    out.append((451, 300, (0.2, 1.0), (3 / 4, 4 / 3), [1 - 2 ** -53] * 22))
    cases = []
    for w, h, scale, ratio, draws in out:
        expect, used = crop_params(w, h, scale, ratio, draws)
        cases.append({"width": w, "height": h, "scale": list(scale), "ratio": list(ratio),
                      "draws": [float(d) for d in draws[:used]], "expect_ijhw": expect})
    return cases


# ---- transforms on a real photo ----


def test_transform_golden():
    tf = T.Compose([T.Resize((64, 64), interpolation=T.InterpolationMode.BICUBIC), T.ToTensor(), T.Normalize(MEAN, STD)])
    return tf(load_rgb("chelsea.png")).numpy().astype("<f4")


PIPELINES = [
    # name, photo, crop (i, j, h, w), flip, steps at M = 7
    ("pipeline_equalize_rotate", "chelsea.png", (31, 80, 211, 260), 1, [("Equalize", 0), ("Rotate", 1)]),
    ("pipeline_shear_sharpen", "chelsea.png", (0, 0, 300, 300), 0, [("ShearY", 0), ("Sharpness", 0)]),
]


def pipeline_golden(photo, crop, flip, steps, res=64):
    i, j, h, w = crop
    img = load_rgb(photo).crop((j, i, j + w, i + h)).resize((res, res), Image.BICUBIC)
    if flip:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    arr = np.array(img)
    for op, neg in steps:
        arr = ref_op(arr, op, 7, neg)
    return arr


def main():
    os.makedirs(OUT, exist_ok=True)
    images = make_images()
    by_name = dict(images)
    albef = None
    if os.environ.get("ALBEF_REPO"):
        sys.path.insert(0, os.path.join(os.environ["ALBEF_REPO"], "dataset"))
        import randaugment as albef  # noqa: E402

    manifest = {"images": [], "cases": [], "pipelines": []}
    blob = bytearray()
    for name, img in images:
        manifest["images"].append({"name": name, "width": img.shape[1], "height": img.shape[0], "offset": len(blob)})
        blob += img.tobytes()
    with open(os.path.join(OUT, "images.bin"), "wb") as f:
        f.write(blob)

    blob = bytearray()
    checked = 0
    for name, m, steps in op_cases(images):
        img = by_name[name]
        for op, neg in steps:
            out = ref_op(img, op, m, neg)
            if albef is not None and op != "AutoContrastPIL":
                theirs = albef_op(albef, img, op, m, neg)
                assert np.array_equal(out, theirs), (name, m, op, neg)
                checked += 1
            if op == "Equalize":  # ALBEF's claim: the same as PIL's
                assert np.array_equal(out, np.array(ImageOps.equalize(Image.fromarray(img)))), name
            img = out
        manifest["cases"].append({"image": name, "magnitude": m, "steps": [[op, neg] for op, neg in steps],
                                  "offset": len(blob)})
        blob += img.tobytes()
    with open(os.path.join(OUT, "ops.bin"), "wb") as f:
        f.write(blob)

    for name, photo, crop, flip, steps in PIPELINES:
        arr = pipeline_golden(photo, crop, flip, steps)
        arr.tofile(os.path.join(OUT, name + ".u8"))
        manifest["pipelines"].append({"name": name, "photo": photo, "crop_ijhw": list(crop), "flip": flip,
                                      "magnitude": 7, "res": 64, "steps": [[op, neg] for op, neg in steps]})
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        f.write("{\n" + ",\n".join(
            f'"{key}": [\n' + ",\n".join(json.dumps(v) for v in manifest[key]) + "\n]" for key in manifest) + "\n}\n")

    with open(os.path.join(OUT, "crop_params.json"), "w") as f:
        f.write("[\n" + ",\n".join(json.dumps(c) for c in crop_cases()) + "\n]\n")

    test_transform_golden().tofile(os.path.join(OUT, "test_transform_64.f32"))
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"{len(manifest['cases'])} op cases, {checked} checked against ALBEF's file; {total} bytes in {OUT}")


if __name__ == "__main__":
    main()
