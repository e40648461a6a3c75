/* Parsing numeric command-line arguments strictly: the whole string must be
 * a number within range. The programs report failures as usage errors. */
#ifndef ALBEF_CORE_ARGS_H
#define ALBEF_CORE_ARGS_H

#include <stdint.h>

/* 0 on success, -1 when s is not an integer in [lo, hi]. */
int parse_int64_arg(const char *s, int64_t lo, int64_t hi, int64_t *out);
int parse_int_arg(const char *s, int lo, int hi, int *out);
/* 0 on success, -1 when s is not a finite number in [lo, hi]. */
int parse_double_arg(const char *s, double lo, double hi, double *out);

#endif
