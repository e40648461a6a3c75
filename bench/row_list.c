#include "row_list.h"

#include <stdio.h>
#include <string.h>

int row_list_parse(const char *prog, const char *list, const char *const names[], int count, int run[])
{
    memset(run, 0, sizeof(int) * (size_t)count);
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int found = 0;
        for (int r = 0; r < count; r++)
            if (!strcmp(tok, names[r]))
                run[r] = found = 1;
        if (!found) {
            fprintf(stderr, "%s: --rows: unknown row '%s' (known: ", prog, tok);
            for (int r = 0; r < count; r++)
                fprintf(stderr, "%s%s", r ? "," : "", names[r]);
            fprintf(stderr, ")\n");
            return -1;
        }
    }
    return 0;
}
