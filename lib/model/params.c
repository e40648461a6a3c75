#include "model/params.h"

#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void params_init(param_set *ps) { memset(ps, 0, sizeof *ps); }

void params_free(param_set *ps)
{
    for (int i = 0; i < ps->count; i++)
        free(ps->items[i].name);
    free(ps->items);
    if (ps->be) {
        if (ps->values)
            ps->be->ops->free(ps->be, ps->values);
        if (ps->grads)
            ps->be->ops->free(ps->be, ps->grads);
    }
    memset(ps, 0, sizeof *ps);
}

static param_info *params_push(param_set *ps, const char *name)
{
    if (ps->count == ps->cap) {
        int cap = ps->cap ? ps->cap * 2 : 256;
        param_info *items = realloc(ps->items, sizeof *items * (size_t)cap);
        if (!items)
            return NULL;
        ps->items = items;
        ps->cap = cap;
    }
    param_info *p = &ps->items[ps->count];
    memset(p, 0, sizeof *p);
    p->name = strdup(name);
    if (!p->name)
        return NULL;
    p->alias_of = -1;
    ps->count++;
    return p;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

int params_add(param_set *ps, tensor *value_slot, tensor *grad_slot, int ndim, const int64_t *shape,
               const char *fmt, ...)
{
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    if (params_index(ps, name) >= 0)
        return albef_error(ALBEF_ERR_INVALID, "parameter '%s' registered twice", name);
    param_info *p = params_push(ps, name);
    if (!p)
        return albef_error(ALBEF_ERR_NOMEM, "out of memory registering '%s'", name);
    p->ndim = ndim;
    p->numel = 1;
    for (int i = 0; i < ndim; i++) {
        p->shape[i] = shape[i];
        p->numel *= (size_t)shape[i];
    }
    /* ALBEF's optimizer groups: no decay for 1-D tensors and biases; 0-dim
     * `temp`, pos_embed and cls_token do decay. */
    p->no_decay = ndim == 1 || ends_with(name, ".bias");
    p->offset = ps->numel;
    /* keep every parameter 16-float aligned, for vector loads on any back end */
    ps->numel += (p->numel + 15) & ~(size_t)15;
    p->value_slot = value_slot;
    p->grad_slot = grad_slot;
    return ALBEF_OK;
}

int params_alias(param_set *ps, tensor *value_slot, tensor *grad_slot, const char *target, const char *alias)
{
    int t = params_index(ps, target);
    if (t < 0)
        return albef_error(ALBEF_ERR_INVALID, "alias '%s': no parameter '%s'", alias, target);
    while (ps->items[t].alias_of >= 0)
        t = ps->items[t].alias_of;
    param_info *p = params_push(ps, alias);
    if (!p)
        return albef_error(ALBEF_ERR_NOMEM, "out of memory registering '%s'", alias);
    param_info *tp = &ps->items[t];
    p->ndim = tp->ndim;
    memcpy(p->shape, tp->shape, sizeof p->shape);
    p->numel = tp->numel;
    p->offset = tp->offset;
    p->no_decay = tp->no_decay;
    p->alias_of = t;
    p->value_slot = value_slot;
    p->grad_slot = grad_slot;
    return ALBEF_OK;
}

int params_index(const param_set *ps, const char *name)
{
    for (int i = 0; i < ps->count; i++)
        if (!strcmp(ps->items[i].name, name))
            return i;
    return -1;
}

static tensor param_tensor(const param_set *ps, float *base, int i)
{
    const param_info *p = &ps->items[i];
    return tensor_make(base ? base + p->offset : NULL, DTYPE_F32, p->ndim, p->shape);
}

tensor params_value(const param_set *ps, int index) { return param_tensor(ps, ps->values, index); }
tensor params_grad(const param_set *ps, int index) { return param_tensor(ps, ps->grads, index); }

tensor params_all_values(const param_set *ps) { return tensor_make(ps->values, DTYPE_F32, 1, TENSOR_SHAPE((int64_t)ps->numel)); }
tensor params_all_grads(const param_set *ps) { return tensor_make(ps->grads, DTYPE_F32, 1, TENSOR_SHAPE((int64_t)ps->numel)); }

int params_alloc(param_set *ps, backend *be, int with_grads)
{
    ps->be = be;
    size_t bytes = ps->numel * sizeof(float);
    if (be->kind != BACKEND_NULL) {
        ps->values = be->ops->alloc(be, bytes);
        if (!ps->values)
            return albef_error(ALBEF_ERR_NOMEM, "cannot allocate %.1f MiB for %zu parameters", bytes / 1048576.0,
                               ps->numel);
        be->ops->zero(be, ps->values, bytes);
        if (with_grads) {
            ps->grads = be->ops->alloc(be, bytes);
            if (!ps->grads)
                return albef_error(ALBEF_ERR_NOMEM, "cannot allocate %.1f MiB for gradients", bytes / 1048576.0);
            be->ops->zero(be, ps->grads, bytes);
        }
    }
    for (int i = 0; i < ps->count; i++) {
        if (ps->items[i].value_slot)
            *ps->items[i].value_slot = params_value(ps, i);
        if (ps->items[i].grad_slot)
            *ps->items[i].grad_slot = params_grad(ps, i);
    }
    return ALBEF_OK;
}

void params_zero_grads(param_set *ps)
{
    if (ps->grads)
        ps->be->ops->zero(ps->be, ps->grads, ps->numel * sizeof(float));
}
