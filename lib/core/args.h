/* Parsing numeric command-line arguments strictly: the whole string must be
 * a number within range. The programs report failures as usage errors. */
#ifndef ALBEF_CORE_ARGS_H
#define ALBEF_CORE_ARGS_H

#include <stdint.h>
#include <stdio.h>

/* 0 on success, -1 when s is not an integer in [lo, hi]. */
int parse_int64_arg(const char *s, int64_t lo, int64_t hi, int64_t *out);
int parse_int_arg(const char *s, int lo, int hi, int *out);
/* 0 on success, -1 when s is not a finite number in [lo, hi]. */
int parse_double_arg(const char *s, double lo, double hi, double *out);

/* Prints "prog: message" and "Try 'prog --help'." on stderr; returns 2,
 * the programs' exit status for a usage error. */
int usage_fail(const char *prog, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The command word of a program with sub-commands (argv[1], one of the n
 * names): --help / -h and --version / -V in its place are answered here
 * (usage on stdout, or "prog version"; exit 0). The index of the command,
 * or -1 after a usage error was printed. */
int args_command(int argc, char **argv, const char *prog, const char *version, const char *const *names, int n,
                 void (*usage)(FILE *));

#endif
