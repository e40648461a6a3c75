/* Model configurations: the presets equal the JSON files under
 * testdata/configs, JSON round-trips, and bad files give messages naming
 * the file and the key. */
#include "albef.h"
#include "model/config.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void assert_same_config(const albef_config *a, const albef_config *b)
{
    /* every field is a number: compare them through the JSON form */
    char *ja = config_to_json(a), *jb = config_to_json(b);
    if (strcmp(ja, jb))
        fail_msg("configurations differ:\n%s\n%s", ja, jb);
    free(ja), free(jb);
}

static void test_presets_match_files(void **state)
{
    (void)state;
    const char *names[] = {"albef-base", "albef-base-384", "tiny"};
    for (int i = 0; i < 3; i++) {
        albef_config p, f;
        char path[128];
        snprintf(path, sizeof path, "testdata/configs/%s.json", names[i]);
        assert_ok(config_preset(names[i], &p));
        assert_ok(config_load(path, &f));
        assert_same_config(&p, &f);
    }
    albef_config base;
    assert_ok(config_load("albef-base", &base));
    assert_int_equal(base.image_res, 256);
    assert_int_equal(base.bert.fusion_layer, 6);
    assert_int_equal(config_num_patches(&base), 256);
}

static void test_json_round_trip(void **state)
{
    (void)state;
    albef_config a, b;
    assert_ok(config_preset("tiny", &a));
    char *json = config_to_json(&a);
    assert_ok(config_parse(json, "round-trip", &b));
    assert_same_config(&a, &b);
    assert_non_null(strstr(json, "\"layer_norm_eps\":\t1e-12"));
    free(json);
}

static void test_bad_configurations(void **state)
{
    (void)state;
    albef_config c;
    assert_error(config_parse("{\"image_res\": \"big\"}", "a.json", &c), ALBEF_ERR_INVALID, "a.json: 'image_res'");
    assert_error(config_parse("{\"bert_config\": {\"hidden_size\": 1.5}}", "b.json", &c), ALBEF_ERR_INVALID,
                 "'bert_config.hidden_size'");
    assert_error(config_parse("{\"image_res\": 250}", "c.json", &c), ALBEF_ERR_INVALID, "multiple of patch_size");
    assert_error(config_parse("{\"vision_width\": 384}", "d.json", &c), ALBEF_ERR_INVALID, "encoder_width");
    assert_error(config_parse("[1, 2]", "e.json", &c), ALBEF_ERR_INVALID, "must be a JSON object");
    assert_error(config_parse("{", "f.json", &c), ALBEF_ERR_INVALID, "f.json: not valid JSON");
    assert_error(config_parse("{\"bert_config\": \"configs/config_bert.json\"}", "g.json", &c), ALBEF_ERR_UNSUPPORTED,
                 "inline");
    assert_error(config_preset("huge", &c), ALBEF_ERR_INVALID, "unknown configuration preset 'huge'");
    assert_error(config_load("/nonexistent/h.json", &c), ALBEF_ERR_IO, "h.json");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_presets_match_files),
        cmocka_unit_test(test_json_round_trip),
        cmocka_unit_test(test_bad_configurations),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
