#!/usr/bin/env python3
# Measures the PyTorch side of bench/bench_image_pipeline.c on one thread:
# Pillow decode (from bytes in memory) and ALBEF's pretrain transform as the
# original builds it: torchvision RandomResizedCrop(256, scale=(0.2, 1),
# BICUBIC), RandomHorizontalFlip, ALBEF's RandomAugment(2, 7) on numpy/OpenCV
# (the op reference in make_augment_goldens.py), ToTensor, Normalize.
# Prints "decode R", "transform R", "decode+transform R" (images/s) and an
# optional "note ..." line; each rate is the best of three trials. Run by the C benchmark, or by hand from the
# repository root:
#   /usr/bin/python3 scripts/dev/bench_pillow_pipeline.py [SECONDS_PER_ROW]
import io
import os
import sys
import time

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image

PHOTOS = ["astronaut.png", "camera.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg", "retina.jpg",
          "rocket.jpg"]
OPS = ["Identity", "AutoContrast", "Equalize", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX",
       "TranslateY", "Rotate"]
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    torch.set_num_threads(1)
    note = ""
    try:
        import cv2
        cv2.setNumThreads(1)
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from make_augment_goldens import ref_op
    except ImportError:
        ref_op = None
        note = "no OpenCV: RandomAugment left out of the PyTorch pipeline"

    def random_augment(img):
        arr = np.array(img)
        if ref_op is None:
            return arr
        for op in np.random.choice(OPS, 2):
            if np.random.random() > 0.5:
                continue
            negate = np.random.random() < 0.5 if op == "Rotate" else np.random.random() > 0.5
            arr = ref_op(arr, op, 7, negate)
        return arr

    transform = T.Compose([
        T.RandomResizedCrop(256, scale=(0.2, 1.0), interpolation=T.InterpolationMode.BICUBIC),
        T.RandomHorizontalFlip(),
        random_augment,
        T.ToTensor(),
        T.Normalize(MEAN, STD),
    ])
    base = os.environ.get("ALBEF_SHARED_DATA", "../shared/data")
    blobs = [open(os.path.join(base, "real-images", p), "rb").read() for p in PHOTOS]

    def decode(b):
        return Image.open(io.BytesIO(b)).convert("RGB")

    decoded = [decode(b) for b in blobs]
    torch.manual_seed(0)
    np.random.seed(0)

    def trial(work, limit):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < limit:
            for k in range(len(blobs)):
                work(k)
                n += 1
        return n / (time.perf_counter() - t0)

    def rate(work):
        # The best of three, as the C benchmark does.
        return max(trial(work, seconds / 3) for _ in range(3))

    print("decode %.2f" % rate(lambda k: decode(blobs[k])))
    print("transform %.2f" % rate(lambda k: transform(decoded[k])))
    print("decode+transform %.2f" % rate(lambda k: transform(decode(blobs[k]))))
    if note:
        print("note " + note)


if __name__ == "__main__":
    main()
