/* libFuzzer target: the GGUF reader on arbitrary bytes (from memory), then every accessor on
 * every kv (nested arrays included) and tensor. Anything that opens must be fully readable. */
#include "mmpipe/mmpipe.h"

#include <stdint.h>
#include <string.h>

static volatile uint64_t sink;

static void touch_value(const mmp_gguf_value *v, int depth) {
    int64_t i;
    uint64_t u;
    double d;
    bool b;
    const char *s;
    size_t len;
    if (mmp_gguf_value_i64(v, &i) == MMP_OK) sink += (uint64_t)i;
    if (mmp_gguf_value_u64(v, &u) == MMP_OK) sink += u;
    if (mmp_gguf_value_f64(v, &d) == MMP_OK) sink += (uint64_t)(d == d);
    if (mmp_gguf_value_bool(v, &b) == MMP_OK) sink += b;
    if (mmp_gguf_value_str(v, &s, &len) == MMP_OK) sink += len + (uint64_t)strlen(s);
    uint64_t n = mmp_gguf_arr_n(v);
    const uint8_t *raw = mmp_gguf_arr_data(v);
    for (uint64_t k = 0; k < n && k < 4096; k++) {
        if (mmp_gguf_arr_i64(v, k, &i) == MMP_OK) sink += (uint64_t)i;
        if (mmp_gguf_arr_f64(v, k, &d) == MMP_OK) sink += (uint64_t)(d == d);
        if (mmp_gguf_arr_str(v, k, &s, &len) == MMP_OK && len) sink += (uint8_t)s[len - 1];
        const mmp_gguf_value *sub;
        if (mmp_gguf_arr_arr(v, k, &sub) == MMP_OK && depth < 16) touch_value(sub, depth + 1);
    }
    if (raw && n) sink += raw[0];
    sink += mmp_gguf_arr_i64(v, n, &i) == MMP_OK; /* out of range must fail */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mmp_gguf *g = mmp_gguf_open_memory(data, size, "fuzz.gguf");
    if (!g) {
        if (!mmp_last_error()[0]) __builtin_trap(); /* every failure must say why */
        return 0;
    }
    for (int64_t i = 0; i < mmp_gguf_n_kv(g); i++) {
        const char *key = mmp_gguf_kv_key(g, i);
        if (mmp_gguf_find_kv(g, key) != i) __builtin_trap();
        touch_value(mmp_gguf_kv_value(g, i), 0);
    }
    for (int64_t i = 0; i < mmp_gguf_n_tensors(g); i++) {
        const mmp_tensor_info *t = mmp_gguf_tensor(g, i);
        if (mmp_gguf_find_tensor(g, t->name) != t) __builtin_trap();
        const uint8_t *p = t->data;
        /* the data must lie inside the input */
        if (p < data || p + t->nbytes > data + size) __builtin_trap();
        if (t->nbytes) sink += p[0] + p[t->nbytes - 1];
    }
    uint32_t u32;
    sink += mmp_gguf_get_u32(g, "general.alignment", &u32) == MMP_OK;
    mmp_gguf_free(g);
    return 0;
}
