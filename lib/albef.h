/* albef: ALBEF (Align before Fuse) vision-language models in C.
 * The public API used by the albef-* programs. */
#ifndef ALBEF_H
#define ALBEF_H

#define ALBEF_VERSION "0.1.0"

#include "core/error.h"
#include "core/log.h"

const char *albef_version(void);

#endif
