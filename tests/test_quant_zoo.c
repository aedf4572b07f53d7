/* The quant zoo: every tensor of quant_zoo.gguf (13 ggml types, sliced byte for byte out of
 * llama-quantize outputs) read with the GGUF reader, checked against quant_zoo.json (type,
 * ne, bytes, offset) and dequantized with mmp_dequantize_row, which must equal gguf-py's
 * float32 dequantization (quant_zoo_dequant.safetensors, bit-identical to ggml's to_float)
 * bit for bit. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Distance in units in the last place between two finite floats. */
static int64_t ulp_diff(float a, float b) {
    int32_t ia, ib;
    memcpy(&ia, &a, 4);
    memcpy(&ib, &b, 4);
    if (ia < 0) ia = INT32_MIN - ia;
    if (ib < 0) ib = INT32_MIN - ib;
    return llabs((long long)ia - (long long)ib);
}

static void test_quant_zoo(void **state) {
    (void)state;
    mmp_gguf *g = mmp_gguf_open(mmpt_data("gguf/quant_zoo.gguf"));
    if (!g) fail_msg("%s", mmp_last_error());
    mmp_safetensors *ref = mmp_safetensors_open(mmpt_data("gguf/quant_zoo_dequant.safetensors"));
    if (!ref) fail_msg("%s", mmp_last_error());
    mmp_json *js = mmp_json_open(mmpt_data("gguf/quant_zoo.json"));
    if (!js) fail_msg("%s", mmp_last_error());

    const char *arch;
    assert_int_equal(mmp_gguf_get_str(g, "general.architecture", &arch), MMP_OK);
    assert_string_equal(arch, "quant_zoo");

    int64_t n;
    assert_int_equal(mmp_json_array_len(js, "tensors", &n), MMP_OK);
    assert_int_equal(n, mmp_gguf_n_tensors(g));
    assert_int_equal(n, mmp_safetensors_n_tensors(ref));
    bool seen_type[MMP_TYPE_COUNT] = {0};
    char p[128];
    for (int64_t i = 0; i < n; i++) {
        const char *name, *tname;
        int64_t type_id, n_bytes, off, nel, nd;
        snprintf(p, sizeof p, "tensors[%lld].name", (long long)i);
        assert_int_equal(mmp_json_get_string(js, p, &name), MMP_OK);
        snprintf(p, sizeof p, "tensors[%lld].ggml_type", (long long)i);
        assert_int_equal(mmp_json_get_string(js, p, &tname), MMP_OK);
        snprintf(p, sizeof p, "tensors[%lld].ggml_type_id", (long long)i);
        assert_int_equal(mmp_json_get_int(js, p, &type_id), MMP_OK);
        snprintf(p, sizeof p, "tensors[%lld].n_bytes", (long long)i);
        assert_int_equal(mmp_json_get_int(js, p, &n_bytes), MMP_OK);
        snprintf(p, sizeof p, "tensors[%lld].data_offset_in_gguf", (long long)i);
        assert_int_equal(mmp_json_get_int(js, p, &off), MMP_OK);
        snprintf(p, sizeof p, "tensors[%lld].n_elements", (long long)i);
        assert_int_equal(mmp_json_get_int(js, p, &nel), MMP_OK);

        const mmp_tensor_info *t = mmp_gguf_find_tensor(g, name);
        if (!t) fail_msg("%s", mmp_last_error());
        assert_int_equal(t->type, type_id);
        assert_int_equal(mmp_type_from_name(tname), type_id);
        assert_int_equal(t->nbytes, n_bytes);
        assert_int_equal(t->offset, off);
        snprintf(p, sizeof p, "tensors[%lld].ne", (long long)i);
        assert_int_equal(mmp_json_array_len(js, p, &nd), MMP_OK);
        assert_int_equal(t->n_dims, nd);
        int64_t count = 1;
        for (int64_t d = 0; d < nd; d++) {
            int64_t ne;
            assert_int_equal(mmp_json_array_int(js, p, d, &ne), MMP_OK);
            assert_int_equal(t->ne[d], ne);
            count *= ne;
        }
        assert_int_equal(count, nel);
        seen_type[t->type] = true;

        /* reference: same name, numpy shape = ne reversed, so the same ggml-order ne */
        const mmp_tensor_info *r = mmp_safetensors_find(ref, name);
        if (!r) fail_msg("%s", mmp_last_error());
        assert_int_equal(r->type, MMP_TYPE_F32);
        assert_int_equal(r->n_dims, t->n_dims);
        for (int d = 0; d < 4; d++) assert_int_equal(r->ne[d], t->ne[d]);
        assert_int_equal(r->nbytes, (size_t)nel * sizeof(float));

        float *out = malloc((size_t)nel * sizeof(float));
        float *want = malloc((size_t)nel * sizeof(float));
        assert_non_null(out);
        assert_non_null(want);
        memcpy(want, r->data, r->nbytes);
        /* row by row, as the kernels will use it */
        int64_t rows = nel / t->ne[0];
        size_t rs = mmp_row_size(t->type, t->ne[0]);
        assert_int_equal(rs * (size_t)rows, t->nbytes);
        for (int64_t row = 0; row < rows; row++) {
            enum mmp_status s = mmp_dequantize_row(t->type, (const uint8_t *)t->data + (size_t)row * rs, out + row * t->ne[0], t->ne[0]);
            if (s) fail_msg("%s row %lld: %s", name, (long long)row, mmp_last_error());
        }
        int64_t worst = 0, bad = 0;
        for (int64_t k = 0; k < nel; k++) {
            if (memcmp(&out[k], &want[k], 4) == 0) continue;
            int64_t u = ulp_diff(out[k], want[k]);
            if (u > worst) worst = u;
            bad++;
        }
        if (bad) fail_msg("%s (%s): %lld of %lld values differ from the reference, worst %lld ULP", name, tname, (long long)bad,
                          (long long)nel, (long long)worst);
        free(out);
        free(want);
    }
    /* every type the json says is present was exercised */
    int64_t n_present;
    assert_int_equal(mmp_json_array_len(js, "ggml_types_present", &n_present), MMP_OK);
    for (int64_t k = 0; k < n_present; k++) {
        const char *tn;
        assert_int_equal(mmp_json_array_string(js, "ggml_types_present", k, &tn), MMP_OK);
        int t = mmp_type_from_name(tn);
        assert_true(t >= 0 && seen_type[t]);
    }
    mmp_json_free(js);
    mmp_safetensors_free(ref);
    mmp_gguf_free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quant_zoo),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
