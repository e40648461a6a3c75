/* io/pth: checkpoints written by torch.save (scripts/dev/make_pth_fixtures.py)
 * read back tensor for tensor as the same state dicts saved by the Python
 * safetensors package: names, dtypes, shapes and bytes; non-contiguous views,
 * shared storages and every storage type included. A pickle that would call
 * os.system is refused, the pre-1.6 format reads the same, and broken files
 * (cut short, bytes flipped) give an error, never a crash. */
#include "albef.h"
#include "core/file.h"
#include "io/pth.h"
#include "io/pth_pickle.h"
#include "io/safetensors.h"
#include "model/albef_model.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every tensor of `expected` is in `got` with the same dtype, shape and
 * bytes, and nothing else is. */
static void assert_same_tensors(const safetensors_file *got, const safetensors_file *expected)
{
    char a[96], b[96];
    for (size_t i = 0; i < safetensors_count(expected); i++) {
        const safetensors_tensor *e = safetensors_tensor_at(expected, i);
        const safetensors_tensor *t = safetensors_find(got, e->name);
        if (!t)
            fail_msg("%s: no tensor '%s'", safetensors_path(got), e->name);
        if (t->dtype != e->dtype || t->ndim != e->ndim || memcmp(t->shape, e->shape, sizeof(int64_t) * (size_t)t->ndim))
            fail_msg("%s: '%s' is %s %s, expected %s %s", safetensors_path(got), e->name, dtype_name(t->dtype),
                     safetensors_shape_str(a, sizeof a, t->ndim, t->shape), dtype_name(e->dtype),
                     safetensors_shape_str(b, sizeof b, e->ndim, e->shape));
        if (t->nbytes != e->nbytes || (t->nbytes && memcmp(t->data, e->data, t->nbytes))) {
            size_t k = 0;
            while (k < t->nbytes && ((const uint8_t *)t->data)[k] == ((const uint8_t *)e->data)[k])
                k++;
            fail_msg("%s: '%s' differs from byte %zu of %zu", safetensors_path(got), e->name, k, e->nbytes);
        }
    }
    assert_int_equal(safetensors_count(got), safetensors_count(expected));
}

static void check_fixture(const char *pth, const char *expected, size_t n_tensors)
{
    safetensors_file *got, *want;
    assert_ok(pth_open(testdata_path(pth), &got));
    assert_ok(safetensors_open(testdata_path(expected), &want));
    assert_int_equal(safetensors_count(want), n_tensors);
    assert_same_tensors(got, want);
    printf("# %s: %zu tensors equal to %s\n", pth, safetensors_count(got), expected);
    safetensors_close(want);
    safetensors_close(got);
}

static void test_raw_state_dict(void **state)
{
    (void)state;
    check_fixture("pth/raw.pth", "pth/expected_raw.safetensors", 10);
    safetensors_file *st;
    assert_ok(pth_open(testdata_path("pth/raw.pth"), &st));
    assert_string_equal(safetensors_metadata_get(st, "format"), "pt");
    assert_string_equal(safetensors_metadata_get(st, "pth.keys"), "");
    assert_string_equal(safetensors_metadata_get(st, "pth.skipped"), "0");
    /* the state dict's order is kept */
    assert_string_equal(safetensors_tensor_at(st, 0)->name, "position_ids");
    assert_string_equal(safetensors_tensor_at(st, 9)->name, "norm.bias");
    safetensors_close(st);
}

static void test_wrapped_views_and_shared_storages(void **state)
{
    (void)state;
    check_fixture("pth/wrapped.pth", "pth/expected_wrapped.safetensors", 12);
    safetensors_file *st;
    assert_ok(pth_open(testdata_path("pth/wrapped.pth"), &st));
    assert_string_equal(safetensors_metadata_get(st, "pth.keys"), "model,optimizer,config,epoch");
    const safetensors_tensor *t = safetensors_find(st, "transposed");
    assert_int_equal(t->shape[0], 4);
    assert_int_equal(t->shape[1], 3);
    safetensors_close(st);
}

static void test_weights_open_takes_both_formats(void **state)
{
    (void)state;
    safetensors_file *st;
    assert_ok(weights_open(testdata_path("pth/wrapped.pth"), &st));
    assert_non_null(safetensors_find(st, "half"));
    safetensors_close(st);
    assert_ok(weights_open(testdata_path("pth/expected_wrapped.safetensors"), &st));
    assert_null(safetensors_metadata_get(st, "pth.keys"));
    safetensors_close(st);
    assert_error(weights_open(tmp_path("absent.pth"), &st), ALBEF_ERR_IO, "absent.pth");
}

static void test_malicious_pickle_is_refused(void **state)
{
    (void)state;
    safetensors_file *st;
    remove("/tmp/albef-pwned");
    assert_error(pth_open(testdata_path("pth/malicious.pth"), &st), ALBEF_ERR_INVALID, "refusing global");
    assert_non_null(strstr(albef_errmsg(), "malicious.pth"));
    assert_non_null(strstr(albef_errmsg(), "system"));
    printf("# %s\n", albef_errmsg());
    assert_null(st);
    assert_null(fopen("/tmp/albef-pwned", "r"));
}

/* The format before PyTorch 1.6 holds the same checkpoint as wrapped.pth. */
static void test_legacy_format(void **state)
{
    (void)state;
    check_fixture("pth/legacy.pth", "pth/expected_wrapped.safetensors", 12);
    safetensors_file *st;
    assert_ok(weights_open(testdata_path("pth/legacy.pth"), &st));
    assert_string_equal(safetensors_metadata_get(st, "pth.keys"), "model,optimizer,config,epoch");
    safetensors_close(st);
    const char junk[] = "not a checkpoint at all";
    assert_error(pth_open_memory(junk, sizeof junk, "junk.pth", &st), ALBEF_ERR_INVALID, "junk.pth");
    static const uint8_t bare[] = {0x80, 2, '}', '.'};
    assert_error(pth_open_memory(bare, sizeof bare, "bare.pkl", &st), ALBEF_ERR_INVALID, "magic number");
    /* every prefix of the legacy file fails cleanly */
    file_mapping m;
    assert_ok(file_map(testdata_path("pth/legacy.pth"), &m));
    for (size_t n = 0; n < m.size; n += 5) {
        assert_int_not_equal(pth_open_memory(m.data, n, "cut.pth", &st), ALBEF_OK);
        assert_non_null(strstr(albef_errmsg(), "cut.pth"));
    }
    file_unmap(&m);
}

/* Every prefix of the file, and the file with each byte in turn changed,
 * either opens or fails with a message: never a crash or a leak (run under
 * SANITIZE=1). */
static void test_broken_files_fail_cleanly(void **state)
{
    (void)state;
    file_mapping m;
    assert_ok(file_map(testdata_path("pth/wrapped.pth"), &m));
    uint8_t *copy = malloc(m.size);
    int failed = 0, opened = 0;
    for (size_t n = 0; n < m.size; n += 7) {
        safetensors_file *st;
        if (pth_open_memory(m.data, n, "cut.pth", &st)) {
            failed++;
            assert_non_null(strstr(albef_errmsg(), "cut.pth"));
        } else {
            safetensors_close(st);
        }
    }
    for (size_t i = 0; i < m.size; i += 3) {
        memcpy(copy, m.data, m.size);
        copy[i] ^= 0x5a;
        safetensors_file *st;
        if (pth_open_memory(copy, m.size, "flipped.pth", &st)) {
            assert_non_null(strstr(albef_errmsg(), "flipped.pth"));
        } else {
            opened++;
            safetensors_close(st);
        }
    }
    printf("# %d of %zu prefixes refused; %d of %zu one-byte changes still open (stored data, names)\n", failed,
           (m.size + 6) / 7, opened, (m.size + 2) / 3);
    assert_int_equal(failed, (int)((m.size + 6) / 7));
    free(copy);
    file_unmap(&m);
}

/* Pickles by hand: the opcodes a state dict needs work, the rest is refused. */
static void test_pickle_opcodes(void **state)
{
    (void)state;
    pickle_result r;
    /* PROTO 2, EMPTY_DICT, BINPUT 0, MARK, 'a' BININT1 5, 'b' LONG1 -2, SETITEMS, STOP */
    static const uint8_t ok[] = {0x80, 2, '}', 'q', 0, '(', 'X', 1, 0, 0, 0, 'a', 'K', 5,
                                 'X', 1, 0, 0, 0, 'b', 0x8a, 1, 0xfe, 'u', '.'};
    assert_ok(pickle_load(ok, sizeof ok, "ok", &r));
    assert_int_equal(pickle_dict_get(r.root, "a")->i, 5);
    assert_int_equal(pickle_dict_get(r.root, "b")->i, -2);
    pickle_free(&r);
    /* a list appended to itself through the memo: no recursion, no leak */
    static const uint8_t cycle[] = {']', 'q', 0, 'h', 0, 'a', '.'};
    assert_ok(pickle_load(cycle, sizeof cycle, "cycle", &r));
    assert_int_equal(r.root->n, 1);
    assert_ptr_equal(r.root->items[0], r.root);
    pickle_free(&r);
    static const uint8_t os_system[] = "cos\nsystem\n(X\x02\0\0\0idtR.";
    assert_error(pickle_load(os_system, sizeof os_system - 1, "evil", &r), ALBEF_ERR_INVALID, "os.system");
    static const uint8_t builtins[] = "\x80\x04\x8c\x08" "builtins" "\x8c\x04" "eval" "\x93.";
    assert_error(pickle_load(builtins, sizeof builtins - 1, "evil", &r), ALBEF_ERR_INVALID, "builtins.eval");
    static const uint8_t newobj[] = {0x80, 2, ')', ')', 0x81, '.'};
    assert_error(pickle_load(newobj, sizeof newobj, "x", &r), ALBEF_ERR_UNSUPPORTED, "NEWOBJ");
    static const uint8_t no_stop[] = {0x80, 2, '}'};
    assert_error(pickle_load(no_stop, sizeof no_stop, "x", &r), ALBEF_ERR_INVALID, "without STOP");
    static const uint8_t underflow[] = {'(', 's', '.'};
    assert_error(pickle_load(underflow, sizeof underflow, "x", &r), ALBEF_ERR_INVALID, "underflow");
    static const uint8_t far_memo[] = {'}', 'r', 0xff, 0xff, 0xff, 0x7f, '.'};
    assert_error(pickle_load(far_memo, sizeof far_memo, "x", &r), ALBEF_ERR_INVALID, "memo index");
}

/* The reference model saved by torch.save (with the tied decoder sharing the
 * word embeddings' storage, queues and an optimizer) loads into the C model
 * with exactly the golden weights. */
static void test_albef_checkpoint_loads(void **state)
{
    (void)state;
    albef_config cfg;
    assert_ok(config_load(testdata_path("reference/small/config.json"), &cfg));
    backend *be = backend_cpu();
    albef_model a, b;
    albef_model_options opt = {.layout = LAYOUT_PRETRAIN};
    assert_ok(albef_model_init(&a, &cfg, be, &opt));
    assert_ok(albef_model_init(&b, &cfg, be, &opt));
    load_report rep;
    assert_ok(albef_model_load(&a, testdata_path("pth/albef_small.pth"), 1, &rep));
    assert_int_equal(rep.missing, 0);
    printf("# albef_small.pth: %d parameters loaded, %d tensors unexpected (%s)\n", rep.loaded, rep.unexpected,
           rep.unexpected_names);
    assert_int_equal(rep.unexpected, 7); /* 4 momentum projections, 2 queues, queue_ptr */
    assert_ok(albef_model_load(&b, testdata_path("reference/small/weights.safetensors"), 1, NULL));
    float *ha = albef_model_download(&a), *hb = albef_model_download(&b);
    assert_memory_equal(ha, hb, sizeof(float) * a.params.numel);
    free(ha);
    free(hb);
    albef_model_free(&a);
    albef_model_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_raw_state_dict),
        cmocka_unit_test(test_wrapped_views_and_shared_storages),
        cmocka_unit_test(test_weights_open_takes_both_formats),
        cmocka_unit_test(test_malicious_pickle_is_refused),
        cmocka_unit_test(test_legacy_format),
        cmocka_unit_test(test_broken_files_fail_cleanly),
        cmocka_unit_test(test_pickle_opcodes),
        cmocka_unit_test(test_albef_checkpoint_loads),
    };
    return cmocka_run_group_tests_name("pth", tests, NULL, NULL);
}
