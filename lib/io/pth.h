/* PyTorch checkpoints (torch.save) read without Python.
 *
 * torch.save (PyTorch >= 1.6) writes a zip archive: <prefix>/data.pkl holds
 * the pickled object, and each tensor storage is a raw little-endian entry
 * <prefix>/data/<key>. The pickle is run by a restricted unpickler
 * (pth_pickle.h) that builds values and never calls anything; the state dict
 * is `obj['model']` (ALBEF's and LAVIS's training scripts), `obj['state_dict']`,
 * or `obj` itself, and its tensors (any strides, shared storages, float32,
 * float16, bfloat16, float64, integer and bool) are copied out contiguous.
 *
 * The result is a safetensors_file held in memory, so every reader of
 * safetensors (model loading, renaming, conversion) takes .pth files as they
 * are. Its metadata says where it came from: "format" = "pt", "pth.keys" =
 * the top-level keys of the pickled dict (comma-separated), and
 * "pth.skipped" = the number of state-dict entries that are not tensors.
 *
 * The format before PyTorch 1.6 (_use_new_zipfile_serialization=False:
 * pickles one after another, then the storages' bytes) is read the same
 * way; the tar format of PyTorch before 0.4 is refused with a message
 * saying how to re-save the file. */
#ifndef ALBEF_IO_PTH_H
#define ALBEF_IO_PTH_H

#include "io/safetensors.h"

#include <stddef.h>

/* Reads `path` (a torch.save zip) into *st (NULL on failure). */
int pth_open(const char *path, safetensors_file **st);

/* The same over bytes in memory (copied from; they may be freed after the
 * call); `name` stands for the file in messages. */
int pth_open_memory(const void *buf, size_t len, const char *name, safetensors_file **st);

/* Any weights file: safetensors, or a torch.save checkpoint (.pth, .pt, .bin),
 * told apart by their first bytes, not by the file name. */
int weights_open(const char *path, safetensors_file **st);

#endif
