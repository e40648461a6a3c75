#include "albef.h"

const char *albef_version(void) { return ALBEF_VERSION; }
