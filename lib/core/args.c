#include "core/args.h"

#include <errno.h>
#include <stdlib.h>

int parse_int64_arg(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int parse_int_arg(const char *s, int lo, int hi, int *out)
{
    int64_t v;
    if (parse_int64_arg(s, lo, hi, &v))
        return -1;
    *out = (int)v;
    return 0;
}

int parse_double_arg(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        return -1;
    *out = v;
    return 0;
}
