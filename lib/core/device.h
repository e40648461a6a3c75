/* Compute devices: which back ends this build has and whether a GPU is usable. */
#ifndef ALBEF_CORE_DEVICE_H
#define ALBEF_CORE_DEVICE_H

#include <stddef.h>

/* 1 when the library was built with the CUDA back end. */
int device_cuda_built(void);

/* Checks for a usable CUDA device. On success returns 0 and a description in
 * the message buffer (albef_errmsg is untouched); otherwise ALBEF_ERR_NODEV
 * with the reason ("built without CUDA", "no CUDA device: ...") set as error. */
int device_cuda_probe(char *desc, size_t cap);

#endif
