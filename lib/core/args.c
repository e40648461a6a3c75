#include "core/args.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

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

int usage_fail(const char *prog, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry '%s --help'.\n", prog);
    va_end(ap);
    return 2;
}

int args_command(int argc, char **argv, const char *prog, const char *version, const char *const *names, int n,
                 void (*usage)(FILE *))
{
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        exit(0);
    }
    if (argc >= 2 && (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V"))) {
        printf("%s %s\n", prog, version);
        exit(0);
    }
    char list[256] = "";
    for (int i = 0; i < n; i++) {
        if (argc >= 2 && !strcmp(argv[1], names[i]))
            return i;
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", names[i]);
    }
    if (argc < 2)
        usage_fail(prog, "a command is required: %s", list);
    else
        usage_fail(prog, "unknown command '%s' (commands: %s)", argv[1], list);
    return -1;
}
