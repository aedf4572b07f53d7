/* A worked example of a new stage kind (docs/adding-a-stage.md quotes this file, and
 * tests/test_pipeline.c compiles it, so the document stays true).
 *
 * "example.scale" multiplies its input by a constant: y = k * x. It shows the parts every kind
 * has: typed ports with free dims, create() reading options and narrowing the port types,
 * run() making the output arrays, destroy(); then registering it and wiring two instances
 * into a pipeline built in code. Uses only the public API (mmpipe/mmpipe.h). */
#include <mmpipe/mmpipe.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* [example-state] */
typedef struct scale_state {
    float k;          /* the factor (option k=F, default 2) */
    int64_t width;    /* option width=N narrows the ports to [*, N]; 0 leaves them free */
} scale_state;
/* [/example-state] */

/* [example-create] */
/* Read the options ("k=0.5,width=4"); no model file is needed. Narrow the ports when the width
 * is known, so that the pipeline can check the neighbours' widths after loading. */
static void *scale_create(const mmp_stage_params *p, mmp_port_type *in_types, mmp_port_type *out_types) {
    scale_state *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->k = 2.0f;
    const char *o = p->options;
    while (o && *o) {
        char *end = NULL;
        if (!strncmp(o, "k=", 2)) s->k = strtof(o + 2, &end);
        else if (!strncmp(o, "width=", 6)) s->width = strtoll(o + 6, &end, 10);
        if (!end || (*end != ',' && *end != 0) || s->width < 0) {
            /* A kind outside the library cannot set mmp_last_error() (no public setter yet):
             * mmp_stage_new then reports that the stage failed without saying why. */
            fprintf(stderr, "example.scale: bad option in '%s'\n", p->options);
            free(s);
            return NULL;
        }
        o = *end ? end + 1 : end;
    }
    if (s->width > 0) {
        in_types[0].dims[1] = s->width;               /* hidden[*, width] f32 */
        out_types[0].dims[1] = s->width;
    }
    return s;
}
/* [/example-create] */

/* [example-run] */
/* inputs[0] has already been checked against the (narrowed) input port type by the library.
 * The output is a new array that the caller owns. */
static enum mmp_status scale_run(void *state, const mmp_stage_params *p, const mmp_array *const *inputs,
                                 mmp_array **outputs) {
    (void)p;
    const scale_state *s = state;
    const mmp_array *x = inputs[0];
    mmp_array *y = mmp_array_new(MMP_TYPE_F32, x->n_dims, x->dims);
    if (!y) return MMP_ERR_NOMEM;                    /* mmp_last_error() already says why */
    const float *xs = x->data;
    float *ys = y->data;
    for (int64_t i = 0; i < mmp_array_nelements(x); i++) ys[i] = s->k * xs[i];
    outputs[0] = y;
    return MMP_OK;
}

static void scale_destroy(void *state) { free(state); }
/* [/example-run] */

/* [example-kind] */
/* The kind: a constant table. Shapes are outermost first; MMP_DIM_ANY is a free dim. */
const mmp_stage_kind example_scale_kind = {
    .name = "example.scale",
    .summary = "multiply by a constant (options k=F, width=N)",
    .n_inputs = 1,
    .n_outputs = 1,
    .inputs = { { "x", { MMP_ROLE_HIDDEN, MMP_TYPE_F32, 2, { MMP_DIM_ANY, MMP_DIM_ANY } }, false, "any hidden states [n, d]" } },
    .outputs = { { "y", { MMP_ROLE_HIDDEN, MMP_TYPE_F32, 2, { MMP_DIM_ANY, MMP_DIM_ANY } }, false, "k * x [n, d]" } },
    .create = scale_create,
    .run = scale_run,
    .destroy = scale_destroy,
};
/* [/example-kind] */

#ifndef EXAMPLE_NO_MAIN
int main(void) {
    int rc = 1;
    /* [example-use] */
    mmp_registry *reg = mmp_registry_new();              /* the built-in kinds ... */
    mmp_pipeline_desc *d = mmp_pipeline_desc_new("twice-scaled");
    mmp_pipeline *p = NULL;
    mmp_array *x = NULL, *y = NULL;
    if (!reg || !d || mmp_registry_add(reg, &example_scale_kind) != MMP_OK) goto done;   /* ... plus ours */
    if (mmp_pipeline_desc_add_stage(d, "a", "example.scale", NULL, NULL, "k=3") != MMP_OK ||
        mmp_pipeline_desc_add_stage(d, "b", "example.scale", NULL, NULL, "k=0.5,width=4") != MMP_OK ||
        mmp_pipeline_desc_add_input(d, "x", "a.x") != MMP_OK ||
        mmp_pipeline_desc_connect(d, "a.y", "b.x") != MMP_OK ||
        mmp_pipeline_desc_add_output(d, "y", "b.y") != MMP_OK)
        goto done;
    if (!(p = mmp_pipeline_new(d, reg, NULL))) goto done;
    mmp_pipeline_print(p, stdout);                        /* b's ports now read hidden[*,4] f32 */

    int64_t dims[2] = { 2, 4 };
    if (!(x = mmp_array_new(MMP_TYPE_F32, 2, dims))) goto done;
    for (int i = 0; i < 8; i++) ((float *)x->data)[i] = (float)i;
    const mmp_array *ins[1] = { x };
    if (mmp_pipeline_run(p, ins, &y) != MMP_OK) goto done;
    /* [/example-use] */
    rc = 0;
    for (int i = 0; i < 8; i++) {
        float want = 0.5f * (3.0f * (float)i);
        printf("%g%s", ((float *)y->data)[i], i == 7 ? "\n" : " ");
        if (((float *)y->data)[i] != want) rc = 1;
    }
    if (rc) fprintf(stderr, "custom_stage: wrong result\n");
done:
    if (rc && *mmp_last_error()) fprintf(stderr, "custom_stage: %s\n", mmp_last_error());
    mmp_array_free(x);
    mmp_array_free(y);
    mmp_pipeline_free(p);
    mmp_pipeline_desc_free(d);
    mmp_registry_free(reg);
    return rc;
}
#endif
