/* The typed JSON config reader: paths, alternatives, arrays, objects, type errors that
 * name file/key/found value, limits, and the real llama / TAESD config.json files. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

static void test_paths(void **state) {
    (void)state;
    mmp_json *j = mmp_json_open(mmpt_data("cfg/nested.json"));
    if (!j) fail_msg("%s", mmp_last_error());
    int64_t i;
    double d;
    bool b;
    const char *s;
    assert_int_equal(mmp_json_get_int(j, "text_config.hidden_size", &i), MMP_OK);
    assert_int_equal(i, 4096);
    assert_int_equal(mmp_json_get_float(j, "text_config.rope_theta", &d), MMP_OK);
    assert_true(d == 1e6);
    assert_int_equal(mmp_json_get_float(j, "text_config.hidden_size", &d), MMP_OK); /* ints are numbers */
    assert_true(d == 4096.0);
    assert_int_equal(mmp_json_get_bool(j, "text_config.tie_word_embeddings", &b), MMP_OK);
    assert_false(b);
    assert_int_equal(mmp_json_get_string(j, "architectures[0]", &s), MMP_OK);
    assert_string_equal(s, "LlavaForConditionalGeneration");
    assert_int_equal(mmp_json_get_int(j, "text_config.eos_token_id[1]", &i), MMP_OK);
    assert_int_equal(i, 32001);
    assert_int_equal(mmp_json_get_int(j, "name with\\.dot", &i), MMP_OK);
    assert_int_equal(i, 7);
    assert_true(mmp_json_has(j, "vision_config.image_size"));
    assert_false(mmp_json_has(j, "torch_dtype")); /* null = unset */
    assert_int_equal(mmp_json_kind_of(j, "torch_dtype"), MMP_JSON_NULL);
    assert_int_equal(mmp_json_kind_of(j, "vision_config"), MMP_JSON_OBJECT);
    assert_int_equal(mmp_json_kind_of(j, "nope"), MMP_JSON_MISSING);
    assert_int_equal(mmp_json_kind_of(j, ""), MMP_JSON_OBJECT);
    /* malformed paths are just missing */
    assert_false(mmp_json_has(j, "architectures[x]"));
    assert_false(mmp_json_has(j, "architectures[5]"));
    assert_false(mmp_json_has(j, "text_config."));
    assert_false(mmp_json_has(j, ".a"));
    assert_false(mmp_json_has(j, "model_type.x"));

    /* alternatives: the first that exists wins */
    assert_int_equal(mmp_json_get_float_alt(j, &d, "rope_theta", "rope_parameters.rope_theta", "text_config.rope_theta", NULL), MMP_OK);
    assert_true(d == 1e6);
    assert_int_equal(mmp_json_get_int_alt(j, &i, "hidden_size", "text_config.hidden_size", NULL), MMP_OK);
    assert_int_equal(i, 4096);
    assert_int_equal(mmp_json_get_string_alt(j, &s, "torch_dtype", "model_type", NULL), MMP_OK);
    assert_string_equal(s, "llava");
    assert_int_equal(mmp_json_get_int_alt(j, &i, "a", "b.c", NULL), MMP_ERR_NOT_FOUND);
    assert_true(strstr(mmp_last_error(), "'a'") && strstr(mmp_last_error(), "'b.c'"));
    assert_int_equal(mmp_json_get_bool_alt(j, &b, "text_config.tie_word_embeddings", NULL), MMP_OK);

    /* arrays */
    int64_t n;
    assert_int_equal(mmp_json_array_len(j, "vision_config.mean", &n), MMP_OK);
    assert_int_equal(n, 3);
    assert_int_equal(mmp_json_array_float(j, "vision_config.mean", 2, &d), MMP_OK);
    assert_true(d == -1.5);
    assert_int_equal(mmp_json_array_float(j, "vision_config.mean", 3, &d), MMP_ERR_INVALID_ARG);
    assert_int_equal(mmp_json_array_int(j, "vision_config.mean", 0, &i), MMP_ERR_FORMAT); /* 0.5 is not an int */
    assert_true(strstr(mmp_last_error(), "vision_config.mean[0]") != NULL);
    assert_int_equal(mmp_json_array_string(j, "architectures", 0, &s), MMP_OK);
    assert_int_equal(mmp_json_array_len(j, "model_type", &n), MMP_ERR_FORMAT);

    /* objects */
    assert_int_equal(mmp_json_object_len(j, "vision_config", &n), MMP_OK);
    assert_int_equal(n, 4);
    assert_int_equal(mmp_json_object_key(j, "vision_config", 1, &s), MMP_OK);
    assert_string_equal(s, "image_size");
    assert_int_equal(mmp_json_object_key(j, "vision_config", 4, &s), MMP_ERR_INVALID_ARG);
    assert_int_equal(mmp_json_object_len(j, "architectures", &n), MMP_ERR_FORMAT);

    /* type errors name the file, the key and what was found */
    assert_int_equal(mmp_json_get_int(j, "model_type", &i), MMP_ERR_FORMAT);
    const char *e = mmp_last_error();
    assert_true(strstr(e, "nested.json") && strstr(e, "'model_type'") && strstr(e, "string") && strstr(e, "llava"));
    assert_int_equal(mmp_json_get_int(j, "text_config.rms_norm_eps", &i), MMP_ERR_FORMAT);
    assert_int_equal(mmp_json_get_string(j, "text_config", &s), MMP_ERR_FORMAT);
    assert_true(strstr(mmp_last_error(), "object") != NULL);
    assert_int_equal(mmp_json_get_bool(j, "image_token_index", &b), MMP_ERR_FORMAT);
    assert_int_equal(mmp_json_get_int(j, "torch_dtype", &i), MMP_ERR_NOT_FOUND);
    assert_int_equal(mmp_json_get_int(j, "missing.key", &i), MMP_ERR_NOT_FOUND);
    assert_true(strstr(mmp_last_error(), "missing.key") != NULL);
    mmp_json_free(j);
    mmp_json_free(NULL);
}

static void test_parse_errors(void **state) {
    (void)state;
    static const char *bad[] = {
        "", "{", "{\"a\": }", "[1, 2", "{\"a\": 1} x", "{\"a\": \"unterminated}", "nul", "{\"a\": 1,}", "\xff\xfe{}",
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        mmp_json *j = mmp_json_parse(bad[k], strlen(bad[k]), "bad.json");
        if (j) fail_msg("accepted malformed JSON #%zu", k);
        assert_true(strstr(mmp_last_error(), "bad.json") != NULL);
    }
    /* a line/column is reported */
    const char *t3 = "{\n  \"a\": 1,\n  \"b\": ]\n}";
    mmp_json *j = mmp_json_parse(t3, strlen(t3), "cfg.json");
    assert_null(j);
    assert_true(strstr(mmp_last_error(), "line 3") != NULL);
    /* deep nesting is refused before it reaches the parser */
    size_t depth = 100000;
    char *deep = malloc(2 * depth);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    j = mmp_json_parse(deep, 2 * depth, "deep.json");
    assert_null(j);
    assert_true(strstr(mmp_last_error(), "deeper") != NULL);
    /* exactly at the limit is fine */
    memset(deep, '[', MMP_JSON_MAX_DEPTH);
    memset(deep + MMP_JSON_MAX_DEPTH, ']', MMP_JSON_MAX_DEPTH);
    j = mmp_json_parse(deep, 2 * MMP_JSON_MAX_DEPTH, "deep.json");
    assert_non_null(j);
    mmp_json_free(j);
    free(deep);
    /* brackets inside strings do not count */
    {
        char str[256];
        size_t k = 0;
        str[k++] = '{'; str[k++] = '"'; str[k++] = 'a'; str[k++] = '"'; str[k++] = ':'; str[k++] = '"';
        for (int q = 0; q < 2 * MMP_JSON_MAX_DEPTH; q++) str[k++] = '[';
        str[k++] = '\\'; str[k++] = '"'; /* an escaped quote does not end the string */
        str[k++] = '['; str[k++] = '"'; str[k++] = '}';
        j = mmp_json_parse(str, k, "s.json");
    }
    assert_non_null(j);
    mmp_json_free(j);
    /* a top-level scalar parses, and paths into it are missing */
    j = mmp_json_parse("42", 2, "scalar.json");
    assert_non_null(j);
    assert_false(mmp_json_has(j, "a"));
    mmp_json_free(j);
    /* no NUL terminator needed */
    const char txt[] = {'{', '"', 'a', '"', ':', '1', '}'};
    j = mmp_json_parse(txt, sizeof txt, "nonul.json");
    assert_non_null(j);
    int64_t v;
    assert_int_equal(mmp_json_get_int(j, "a", &v), MMP_OK);
    assert_int_equal(v, 1);
    mmp_json_free(j);
    /* big ints and non-integers */
    {
        const char *t = "{\"big\": 1e300, \"neg\": -5, \"f\": 2.5}";
        j = mmp_json_parse(t, strlen(t), "n.json");
    }
    assert_non_null(j);
    assert_int_equal(mmp_json_get_int(j, "big", &v), MMP_ERR_FORMAT);
    assert_int_equal(mmp_json_get_int(j, "neg", &v), MMP_OK);
    assert_int_equal(v, -5);
    assert_int_equal(mmp_json_get_int(j, "f", &v), MMP_ERR_FORMAT);
    mmp_json_free(j);
    /* files: missing, directory */
    assert_null(mmp_json_open(mmpt_data("cfg/does-not-exist.json")));
    assert_true(strstr(mmp_last_error(), "does-not-exist.json") != NULL);
    assert_null(mmp_json_open(mmpt_data("cfg")));
    assert_true(strstr(mmp_last_error(), "directory") != NULL);
}

static void test_real_configs(void **state) {
    (void)state;
    mmp_json *j = mmp_json_open(mmpt_data("st/llama/config.json"));
    if (!j) fail_msg("%s", mmp_last_error());
    double theta, eps;
    /* this config uses the newer rope_parameters block */
    assert_false(mmp_json_has(j, "rope_theta"));
    assert_int_equal(mmp_json_get_float_alt(j, &theta, "rope_theta", "rope_parameters.rope_theta", NULL), MMP_OK);
    assert_true(theta > 0);
    assert_int_equal(mmp_json_get_float(j, "rms_norm_eps", &eps), MMP_OK);
    assert_true(eps > 0 && eps < 1);
    const char *mt;
    assert_int_equal(mmp_json_get_string(j, "model_type", &mt), MMP_OK);
    assert_string_equal(mt, "llama");
    mmp_json_free(j);
    j = mmp_json_open(mmpt_data("st/taesd_tiny/config.json"));
    assert_non_null(j);
    const char *cls;
    assert_int_equal(mmp_json_get_string(j, "_class_name", &cls), MMP_OK);
    assert_string_equal(cls, "AutoencoderTiny");
    int64_t n;
    assert_int_equal(mmp_json_array_len(j, "block_out_channels", &n), MMP_OK);
    assert_true(n > 0);
    mmp_json_free(j);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_real_configs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
