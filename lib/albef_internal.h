/* Library-internal entry points of the public API, for the trainers: a
 * context over a model that something else owns (the online model of a
 * fine-tuning run, evaluated between epochs without a trip through a file). */
#ifndef ALBEF_INTERNAL_H
#define ALBEF_INTERNAL_H

#include "albef.h"
#include "model/albef_model.h"

/* The context reads `model` and runs on `be`; both must outlive it and
 * albef_free() leaves them alone. params->device is ignored. */
int albef_wrap_model(albef_model *model, backend *be, const albef_params *params, albef_ctx **out);

#endif
