/* libFuzzer target: the config reader on arbitrary text, then every typed getter on every
 * member of the root and of nested objects/arrays (the paths a model loader would use). */
#include "mmpipe/mmpipe.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static volatile uint64_t sink;

static void touch(const mmp_json *j, const char *path, int depth) {
    int64_t i, n;
    double d;
    bool b;
    const char *s;
    sink += mmp_json_kind_of(j, path) + mmp_json_has(j, path);
    if (mmp_json_get_int(j, path, &i) == MMP_OK) sink += (uint64_t)i;
    if (mmp_json_get_float(j, path, &d) == MMP_OK) sink += (uint64_t)(d == d);
    if (mmp_json_get_bool(j, path, &b) == MMP_OK) sink += b;
    if (mmp_json_get_string(j, path, &s) == MMP_OK) sink += strlen(s);
    if (depth >= 6) return;
    char sub[512];
    if (mmp_json_array_len(j, path, &n) == MMP_OK)
        for (int64_t k = 0; k < n && k < 64; k++) {
            if (mmp_json_array_int(j, path, k, &i) == MMP_OK) sink += (uint64_t)i;
            if (mmp_json_array_float(j, path, k, &d) == MMP_OK) sink += (uint64_t)(d == d);
            if (mmp_json_array_string(j, path, k, &s) == MMP_OK) sink += strlen(s);
            snprintf(sub, sizeof sub, "%s[%lld]", path, (long long)k);
            touch(j, sub, depth + 1);
        }
    if (mmp_json_object_len(j, path, &n) == MMP_OK)
        for (int64_t k = 0; k < n && k < 64; k++) {
            const char *key;
            if (mmp_json_object_key(j, path, k, &key) != MMP_OK) __builtin_trap();
            /* keys are used as path segments as they are: odd keys just resolve elsewhere */
            snprintf(sub, sizeof sub, "%s%s%s", path, path[0] ? "." : "", key);
            touch(j, sub, depth + 1);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mmp_json *j = mmp_json_parse((const char *)data, size, "fuzz.json");
    if (!j) {
        if (!mmp_last_error()[0]) __builtin_trap();
        return 0;
    }
    touch(j, "", 0);
    double d;
    sink += mmp_json_get_float_alt(j, &d, "rope_theta", "rope_parameters.rope_theta", "text_config.rope_theta", NULL) == MMP_OK;
    mmp_json_free(j);
    return 0;
}
