#!/usr/bin/env python3
# Writes the safetensors fixtures under testdata/safetensors/ with the Python
# `safetensors` package, and checks files written by albef's writer.
#
#   /usr/bin/python3 scripts/dev/make_safetensors_fixtures.py
#       writes dtypes.safetensors (every dtype torch has, with special values),
#       unsigned.safetensors (U16/U32/U64, through numpy), albef_like.safetensors
#       (ALBEF state-dict names, a scalar `temp`, empty tensors, metadata) and
#       expected.json: for every file its metadata and, per tensor, dtype, shape
#       and values as strings ("1.5", "-0.0", "nan", "-inf", "18446744073709551615")
#       so that tests/test_safetensors.c can compare exactly.
#
#   ALBEF_SAFETENSORS_ROUNDTRIP=/tmp/rt.safetensors build/st/tests/test_safetensors
#   /usr/bin/python3 scripts/dev/make_safetensors_fixtures.py --check /tmp/rt.safetensors
#       the test copies every fixture tensor and all metadata through albef's
#       writer into that file; --check loads it with the Python package and
#       demands the same names, dtypes, shapes, bytes and metadata as the
#       fixtures, plus the layout albef promises (header padded to 8 bytes,
#       every tensor aligned to its element size, no gaps).
import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import save_file as save_torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.normpath(os.path.join(HERE, "..", "..", "testdata", "safetensors"))
INF, NAN = float("inf"), float("nan")

CONFIG = json.dumps({"embed_dim": 256, "image_res": 256, "queue_size": 65536, "momentum": 0.995,
                     "temp": 0.07, "alpha": 0.4, "fusion_layer": 6}, separators=(",", ":"))


def dtypes_tensors():
    return {
        "f32": torch.tensor([[0.0, -0.0, 1.5], [-3.25, 3.4028234663852886e38, 1.401298464324817e-45]],
                            dtype=torch.float32),
        "f32_special": torch.tensor([INF, -INF, NAN, 0.1], dtype=torch.float32),
        "f16": torch.tensor([0.0, -0.0, 1.0, -2.5, 65504.0, 2.0 ** -24, 2.0 ** -14, -(2.0 ** -24) * 1023, INF, NAN,
                             0.1], dtype=torch.float16),
        "bf16": torch.tensor([[0.0, 1.0, -1.5, 3.3895313892515355e38], [2.0 ** -133, INF, -INF, NAN]],
                             dtype=torch.bfloat16),
        "f64": torch.tensor([0.1, -1e300, 1e-50, math.pi, -0.0], dtype=torch.float64),
        "i64": torch.tensor([0, -1, 2 ** 40 + 1, -(2 ** 63), 2 ** 63 - 1], dtype=torch.int64),
        "i32": torch.tensor([-(2 ** 31), 0, 2 ** 31 - 1], dtype=torch.int32),
        "i16": torch.tensor([-32768, 7, 32767], dtype=torch.int16),
        "i8": torch.tensor([-128, -1, 0, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 128, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, False, True], dtype=torch.bool),
    }


def unsigned_arrays():
    return {
        "u16": np.array([0, 1, 65535], dtype=np.uint16),
        "u32": np.array([[0], [4294967295]], dtype=np.uint32),
        "u64": np.array([0, 2 ** 64 - 1, 2 ** 53 + 1], dtype=np.uint64),
    }


def albef_like_tensors():
    ramp = lambda n, scale, shift: torch.arange(n, dtype=torch.float64) * scale + shift  # noqa: E731
    return {
        "visual_encoder.blocks.0.attn.qkv.weight": ramp(24, 0.25, -3.0).reshape(6, 4).float(),
        "visual_encoder.blocks.0.attn.qkv.bias": ramp(6, -0.5, 1.0).float(),
        "visual_encoder.pos_embed": ramp(12, 0.125, 0.0).reshape(1, 3, 4).float(),
        "text_encoder.bert.encoder.layer.6.crossattention.self.query.weight":
            ramp(16, 0.0625, -0.5).reshape(4, 4).to(torch.bfloat16),
        "text_encoder.bert.embeddings.LayerNorm.weight": ramp(4, 0.5, 1.0).half(),
        "text_encoder.bert.embeddings.position_ids": torch.arange(8, dtype=torch.int64).reshape(1, 8),
        "temp": torch.tensor(0.07, dtype=torch.float32),
        "queue_ptr": torch.tensor([5], dtype=torch.int64),
        "image_queue": torch.zeros(4, 0, dtype=torch.float32),
        "text_queue": torch.zeros(0, dtype=torch.float16),
    }


def value_strings(values, dtype):
    if dtype in ("F32", "F16", "BF16", "F64"):
        return [repr(float(v)) for v in values]
    return [str(int(v)) for v in values]


DTYPE_NAMES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
               torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
               torch.uint8: "U8", torch.bool: "BOOL",
               np.dtype(np.uint16): "U16", np.dtype(np.uint32): "U32", np.dtype(np.uint64): "U64"}


def describe_torch(tensors):
    out = {}
    for name, t in tensors.items():
        dtype = DTYPE_NAMES[t.dtype]
        flat = t.reshape(-1)
        # int64 through Python ints keeps all 64 bits; floats through float64 are exact
        values = flat.tolist() if not t.dtype.is_floating_point else flat.double().tolist()
        out[name] = {"dtype": dtype, "shape": list(t.shape), "values": value_strings(values, dtype)}
    return out


def describe_numpy(arrays):
    out = {}
    for name, a in arrays.items():
        dtype = DTYPE_NAMES[a.dtype]
        out[name] = {"dtype": dtype, "shape": list(a.shape), "values": value_strings(a.reshape(-1).tolist(), dtype)}
    return out


def write_fixtures():
    os.makedirs(OUT, exist_ok=True)
    manifest = {}
    files = [
        ("dtypes.safetensors", dtypes_tensors(), None, "torch"),
        ("unsigned.safetensors", unsigned_arrays(), None, "numpy"),
        ("albef_like.safetensors", albef_like_tensors(), {"format": "pt", "config": CONFIG}, "torch"),
    ]
    for fname, tensors, metadata, api in files:
        path = os.path.join(OUT, fname)
        if api == "torch":
            save_torch(tensors, path, metadata=metadata)
            described = describe_torch(tensors)
        else:
            save_numpy(tensors, path, metadata=metadata)
            described = describe_numpy(tensors)
        os.chmod(path, 0o644)  # the package creates files readable by their owner only
        manifest[fname] = {"metadata": metadata or {}, "tensors": described}
        print(f"{path}: {len(tensors)} tensors, {os.path.getsize(path)} bytes")
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    print(os.path.join(OUT, "expected.json"))


def tensor_bytes(handle, name):
    """dtype name, shape and raw little-endian bytes of one tensor, via the package."""
    dtype = handle_dtypes(handle)[name]
    if dtype == "BF16":
        t = handle["pt"].get_tensor(name)
        return dtype, list(t.shape), t.view(torch.int16).numpy().tobytes()
    a = handle["np"].get_tensor(name)
    return dtype, list(a.shape), np.ascontiguousarray(a).tobytes()


_header_cache = {}


def read_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return n, json.loads(f.read(n))


def handle_dtypes(handle):
    path = handle["path"]
    if path not in _header_cache:
        _header_cache[path] = {k: v["dtype"] for k, v in read_header(path)[1].items() if k != "__metadata__"}
    return _header_cache[path]


def open_both(path):
    return {"path": path, "np": safe_open(path, framework="np"), "pt": safe_open(path, framework="pt")}


ELEMENT_SIZE = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2,
                "U16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def check(paths):
    with open(os.path.join(OUT, "expected.json")) as f:
        manifest = json.load(f)
    reference = {}
    metadata = {}
    for fname, entry in manifest.items():
        handle = open_both(os.path.join(OUT, fname))
        for name in entry["tensors"]:
            reference[name] = tensor_bytes(handle, name)
        metadata.update(entry["metadata"])
    failures = 0
    for path in paths:
        problems = []
        header_len, header = read_header(path)
        if header_len % 8:
            problems.append(f"header length {header_len} is not a multiple of 8")
        for name, info in header.items():
            if name == "__metadata__":
                continue
            begin = info["data_offsets"][0]
            if begin % ELEMENT_SIZE[info["dtype"]]:
                problems.append(f"{name}: offset {begin} not aligned to its {info['dtype']} elements")
        handle = open_both(path)
        names = set(handle["np"].keys())
        if names != set(reference):
            problems.append(f"names differ: missing {sorted(set(reference) - names)}, "
                            f"extra {sorted(names - set(reference))}")
        for name in sorted(names & set(reference)):
            got, want = tensor_bytes(handle, name), reference[name]
            if got != want:
                problems.append(f"{name}: got dtype {got[0]} shape {got[1]} {got[2][:16].hex()}..., "
                                f"expected {want[0]} {want[1]} {want[2][:16].hex()}...")
        got_meta = handle["np"].metadata() or {}
        if got_meta != metadata:
            problems.append(f"metadata {got_meta} != expected {metadata}")
        if problems:
            failures += 1
            print(f"FAIL {path}")
            for p in problems:
                print(f"  {p}")
        else:
            print(f"ok {path}: {len(names)} tensors (every dtype, scalar, empty) and {len(got_meta)} metadata "
                  f"entries match the fixtures byte for byte; header {header_len} bytes, data aligned")
    return 1 if failures else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", nargs="+", metavar="FILE", help="verify files written by albef's writer")
    args = parser.parse_args()
    if args.check:
        sys.exit(check(args.check))
    write_fixtures()


if __name__ == "__main__":
    main()
