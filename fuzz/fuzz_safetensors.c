/* libFuzzer target: the safetensors reader on arbitrary bytes (from memory); every tensor's
 * data must lie inside the input, every lookup must find it, metadata must be readable. */
#include "mmpipe/mmpipe.h"

#include <stdint.h>
#include <string.h>

static volatile uint64_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mmp_safetensors *st = mmp_safetensors_open_memory(data, size, "fuzz.safetensors");
    if (!st) {
        if (!mmp_last_error()[0]) __builtin_trap();
        return 0;
    }
    for (int64_t i = 0; i < mmp_safetensors_n_tensors(st); i++) {
        const mmp_tensor_info *t = mmp_safetensors_tensor(st, i);
        if (mmp_safetensors_find(st, t->name) != t) __builtin_trap();
        const uint8_t *p = t->data;
        if (p < data || p + t->nbytes > data + size) __builtin_trap();
        if (t->nbytes) sink += p[0] + p[t->nbytes - 1];
        sink += (uint64_t)(t->ne[0] + t->ne[1] + t->ne[2] + t->ne[3]);
    }
    for (int64_t i = 0; i < mmp_safetensors_n_meta(st); i++)
        sink += strlen(mmp_safetensors_meta_key(st, i)) + strlen(mmp_safetensors_meta_value(st, i));
    mmp_safetensors_free(st);
    return 0;
}
