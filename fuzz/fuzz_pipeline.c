/* libFuzzer target: the pipeline file parser on arbitrary text, then validation against the
 * built-in stage kinds, the typed-graph printers (text and DOT), and the stage-option splitter
 * on the same bytes. Creating the pipeline is left out: it would open whatever paths the input
 * names. */
#include "mmpipe/mmpipe.h"
#include "stage-impl.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > (1u << 16)) return 0;
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    mmp_registry *r = mmp_registry_new();
    mmp_pipeline_desc *d = mmp_pipeline_desc_parse(text, "fuzz.pipe");
    if (d && r) {
        /* parameters may name each other: give every declared one a value with a reference */
        mmp_pipeline_desc_set_param(d, "model", "${model}");
        FILE *f = fopen("/dev/null", "w");
        if (f) {
            mmp_pipeline_desc_print(d, r, f);
            mmp_pipeline_desc_write_dot(d, r, f);
            fclose(f);
        }
        mmp_pipeline_desc_validate(d, r);
    }
    mmp_pipeline_desc_free(d);
    mmp_registry_free(r);
    mmp__opt items[16];
    char *store = NULL;
    int n = mmp__opts_parse("fuzz", text, items, 16, &store);
    for (int i = 0; i < n; i++)
        if (!items[i].key[0]) __builtin_trap();   /* an empty key is reported, never returned */
    free(store);
    free(text);
    return 0;
}
