/* The --rows option of the benchmarks: which of their rows to run. */
#ifndef ALBEF_BENCH_ROW_LIST_H
#define ALBEF_BENCH_ROW_LIST_H

/* Sets run[r] to 1 for each of the `count` names[r] in the comma-separated
 * list, to 0 for the others. -1, with "PROG: --rows: unknown row ..." on
 * stderr, for a name not among them. */
int row_list_parse(const char *prog, const char *list, const char *const names[], int count, int run[]);

#endif
