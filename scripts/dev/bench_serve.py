# What the PyTorch sides of the C benchmarks (bench_model_torch.py,
# bench_pretrain_torch.py) share: thread settings, timing, and the --serve
# line protocol that bench/torch_side.c speaks. One JSON line answers each
# command line:
#   (start)   {"ready": true, "torch_version", "threads", "openblas_threads"}
#   ...       what the script's answer function returns for the words of the line
#   quit      {"peak_rss_kb"}, then the loop ends
# Errors (a command the script does not know included) answer {"error": "..."}.
import ctypes
import ctypes.util
import json
import resource
import sys
import time

import torch


def openblas():
    """The OpenBLAS library torch's generic BLAS resolves to, or None."""
    for name in ("openblas", "blas"):
        path = ctypes.util.find_library(name)
        if not path:
            continue
        try:
            lib = ctypes.CDLL(path)
            lib.openblas_get_num_threads.restype = ctypes.c_int
            return lib
        except (OSError, AttributeError):
            continue
    return None


def set_threads(threads):
    """Sets torch's and OpenBLAS's thread counts; returns what they are:
    {"torch_version", "threads", "openblas_threads"}."""
    torch.set_num_threads(threads)
    blas = openblas()
    if blas is not None and hasattr(blas, "openblas_set_num_threads"):
        blas.openblas_set_num_threads(threads)
    return {
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "openblas_threads": blas.openblas_get_num_threads() if blas is not None else None,
    }


def peak_rss_kb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def reply(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def timed(fn, min_iters, min_time, max_iters):
    """Calls until both min_iters and min_time are reached (at most
    max_iters). Returns the per-call times."""
    times = []
    while len(times) < max_iters and (len(times) < min_iters or sum(times) < min_time):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def summary(times, batch):
    """The by-hand result of one row: {"batch", "iters", "best_s", "median_s", "rate"}."""
    s = sorted(times)
    median = s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2
    return {"batch": batch, "iters": len(s), "best_s": s[0], "median_s": median, "rate": batch / s[0]}


def pick(ap, text, known, what):
    """The comma-separated names of `text`; an argparse error for unknown ones."""
    names = [n for n in text.split(",") if n]
    unknown = [n for n in names if n not in known]
    if unknown:
        ap.error("unknown %s: %s (known: %s)" % (what, ",".join(unknown), ",".join(known)))
    return names


def serve(info, answer):
    """The line protocol of the header comment; answer(words) returns the
    reply to a command line, or None for a command it does not know."""
    reply(dict(ready=True, **info))
    for line in sys.stdin:
        words = line.split()
        try:
            if not words:
                continue
            if words[0] == "quit":
                break
            out = answer(words)
            if out is None:
                raise ValueError("bad command %r" % line.strip())
            reply(out)
        except Exception as e:  # the C side reads the message and goes on without PyTorch
            reply({"error": "%s: %s" % (type(e).__name__, e)})
    reply({"peak_rss_kb": peak_rss_kb()})
