#include "model/layers.h"

#include "core/error.h"

int linear_register(param_set *ps, linear_params *w, linear_params *g, int64_t out, int64_t in, const char *name)
{
    int rc = params_add(ps, &w->weight, g ? &g->weight : NULL, 2, TENSOR_SHAPE(out, in), "%s.weight", name);
    if (!rc)
        rc = params_add(ps, &w->bias, g ? &g->bias : NULL, 1, TENSOR_SHAPE(out), "%s.bias", name);
    return rc;
}

int norm_register(param_set *ps, norm_params *w, norm_params *g, int64_t width, const char *name)
{
    int rc = params_add(ps, &w->weight, g ? &g->weight : NULL, 1, TENSOR_SHAPE(width), "%s.weight", name);
    if (!rc)
        rc = params_add(ps, &w->bias, g ? &g->bias : NULL, 1, TENSOR_SHAPE(width), "%s.bias", name);
    return rc;
}
