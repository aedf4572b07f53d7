/* mmpipe stage: list the stage kinds with their typed ports, or run one stage on tensors read
 * from safetensors files and write its outputs to a safetensors file. For debugging, porting a
 * new model, and comparing with other implementations. */
#include "cli.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static void stage_usage(FILE *f) {
    fprintf(f,
        "usage: mmpipe stage --list\n"
        "       mmpipe stage KIND -m MODEL --in PORT=FILE.safetensors[:TENSOR] ... -o OUT.safetensors\n"
        "\n"
        "Every step of a pipeline (encoder, projector, LLM backbone, generator, ...) is a stage\n"
        "kind with typed input and output ports. '--list' prints them. Given a KIND, runs that\n"
        "one stage: each input port is read from a tensor in a safetensors file (TENSOR defaults\n"
        "to the port's name, or to the only tensor of the file), and every output port is written\n"
        "to OUT.safetensors under the port's name.\n"
        "\n"
        "options:\n"
        "  --list              list the stage kinds and their ports\n"
        "  -m, --model PATH    model file or folder the stage loads (GGUF, safetensors, HF folder)\n"
        "  --aux PATH          a second model file when the stage needs one (e.g. an mmproj)\n"
        "  --opt K=V[,K=V]     stage options (see the stage's documentation)\n"
        "  --in PORT=FILE[:T]  an input: tensor T of safetensors FILE (repeat for each port)\n"
        "  -o, --out FILE      where to write the outputs (safetensors)\n"
        "  -t, --threads N     threads (default 1)\n"
        "  -h, --help          this help\n"
        "\n"
        "Shapes are written outermost first (numpy order); '*' is a free dim.\n");
}

static void print_ports(const char *side, const mmp_port *ports, int n) {
    for (int i = 0; i < n; i++) {
        char t[128];
        mmp_port_type_str(&ports[i].type, t, sizeof t);
        printf("    %-3s %-14s %-32s %s%s\n", side, ports[i].name, t, ports[i].optional ? "(optional) " : "",
               ports[i].doc ? ports[i].doc : "");
    }
}

static int list_kinds(void) {
    mmp_registry *r = mmp_registry_new();
    if (!r) return mmp_cli_fail("stage", "registry");
    int n = mmp_registry_count(r);
    printf("%d stage kind%s:\n", n, n == 1 ? "" : "s");
    for (int i = 0; i < n; i++) {
        const mmp_stage_kind *k = mmp_registry_at(r, i);
        printf("\n  %s — %s\n", k->name, k->summary ? k->summary : "");
        print_ports("in", k->inputs, k->n_inputs);
        print_ports("out", k->outputs, k->n_outputs);
    }
    if (n == 0) printf("  (none built in yet)\n");
    mmp_registry_free(r);
    return 0;
}

/* Read one tensor into a new array of the port's element type (converting f16/bf16 -> f32 and
 * between integer widths when the value fits). */
static mmp_array *read_input(const char *spec, const mmp_port *port, const char *file, const char *tname) {
    mmp_safetensors *st = mmp_safetensors_open(file);
    if (!st) return NULL;
    const mmp_tensor_info *t = NULL;
    if (tname) t = mmp_safetensors_find(st, tname);
    else if (mmp_safetensors_n_tensors(st) == 1) t = mmp_safetensors_tensor(st, 0);
    else {
        mmp_clear_error();
        t = mmp_safetensors_find(st, port->name);
        if (!t) {
            fprintf(stderr, "mmpipe stage: --in %s: %s has %" PRId64 " tensors and none is named '%s'; add :TENSOR\n",
                    spec, file, mmp_safetensors_n_tensors(st), port->name);
            mmp_safetensors_free(st);
            return NULL;
        }
    }
    if (!t) { mmp_safetensors_free(st); return NULL; }
    int64_t dims[MMP_PORT_MAX_DIMS];
    int nd = t->n_dims < 1 ? 1 : t->n_dims;
    for (int d = 0; d < nd; d++) dims[d] = t->n_dims < 1 ? 1 : t->ne[t->n_dims - 1 - d];
    enum mmp_type want = port->type.type;
    mmp_array *a = mmp_array_new(want, nd, dims);
    if (!a) { mmp_safetensors_free(st); return NULL; }
    int64_t n = mmp_array_nelements(a);
    const unsigned char *src = t->data;
    bool ok = true;
    for (int64_t i = 0; i < n && ok; i++) {
        double v;
        int64_t iv = 0;
        bool is_int = false;
        switch (t->type) {
        case MMP_TYPE_F32: { float f; memcpy(&f, src + 4 * i, 4); v = f; break; }
        case MMP_TYPE_F64: memcpy(&v, src + 8 * i, 8); break;
        case MMP_TYPE_F16: { uint16_t h; memcpy(&h, src + 2 * i, 2); v = mmp_fp16_to_fp32(h); break; }
        case MMP_TYPE_BF16: { uint16_t h; memcpy(&h, src + 2 * i, 2); v = mmp_bf16_to_fp32(h); break; }
        case MMP_TYPE_I64: memcpy(&iv, src + 8 * i, 8); is_int = true; v = (double)iv; break;
        case MMP_TYPE_I32: { int32_t x; memcpy(&x, src + 4 * i, 4); iv = x; is_int = true; v = x; break; }
        case MMP_TYPE_I16: { int16_t x; memcpy(&x, src + 2 * i, 2); iv = x; is_int = true; v = x; break; }
        case MMP_TYPE_I8: iv = (int8_t)src[i]; is_int = true; v = (double)iv; break;
        case MMP_TYPE_U8: iv = src[i]; is_int = true; v = (double)iv; break;
        default:
            fprintf(stderr, "mmpipe stage: --in %s: tensor '%s' has type %s, which is not readable as an input\n",
                    spec, t->name, mmp_type_name(t->type));
            ok = false;
            continue;
        }
        switch (want) {
        case MMP_TYPE_F32: ((float *)a->data)[i] = (float)v; break;
        case MMP_TYPE_I32:
            if (!is_int || iv < INT32_MIN || iv > INT32_MAX) {
                fprintf(stderr, "mmpipe stage: --in %s: port '%s' wants i32 but element %" PRId64 " of '%s' is %g\n",
                        spec, port->name, i, t->name, v);
                ok = false;
            } else ((int32_t *)a->data)[i] = (int32_t)iv;
            break;
        default:
            fprintf(stderr, "mmpipe stage: port '%s' has element type %s, which this command cannot fill\n",
                    port->name, mmp_type_name(want));
            ok = false;
        }
    }
    mmp_safetensors_free(st);
    if (!ok) { mmp_array_free(a); return NULL; }
    return a;
}

int mmp_cli_stage(int argc, char **argv) {
    const char *kind_name = NULL, *out = NULL;
    mmp_stage_params p = mmp_stage_params_default();
    const char *ins[MMP_STAGE_MAX_PORTS * 2];
    int n_ins = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_val = i + 1 < argc;
        if (mmp_cli_is_help(a)) { stage_usage(stdout); return 0; }
        else if (!strcmp(a, "--list")) return list_kinds();
        else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && has_val) p.model_path = argv[++i];
        else if (!strcmp(a, "--aux") && has_val) p.aux_path = argv[++i];
        else if (!strcmp(a, "--opt") && has_val) p.options = argv[++i];
        else if ((!strcmp(a, "-o") || !strcmp(a, "--out")) && has_val) out = argv[++i];
        else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && has_val) {
            char *end;
            long t = strtol(argv[++i], &end, 10);
            if (*end || t < 1 || t > 1024) { fprintf(stderr, "mmpipe stage: --threads wants 1..1024, got '%s'\n", argv[i]); return 2; }
            p.n_threads = (int)t;
        } else if (!strcmp(a, "--in") && has_val) {
            if (n_ins == (int)(sizeof ins / sizeof ins[0])) { fprintf(stderr, "mmpipe stage: too many --in\n"); return 2; }
            ins[n_ins++] = argv[++i];
        } else if (a[0] == '-') {
            fprintf(stderr, "mmpipe stage: unknown option or missing value '%s' (see 'mmpipe stage --help')\n", a);
            return 2;
        } else if (kind_name) {
            fprintf(stderr, "mmpipe stage: one KIND at a time ('%s' and '%s' given)\n", kind_name, a);
            return 2;
        } else kind_name = a;
    }
    if (!kind_name) { stage_usage(stderr); return 2; }
    if (!out) { fprintf(stderr, "mmpipe stage: -o OUT.safetensors is required\n"); return 2; }

    int rc = 1;
    mmp_registry *reg = mmp_registry_new();
    mmp_stage *s = NULL;
    mmp_array *in_arr[MMP_STAGE_MAX_PORTS] = { 0 }, *out_arr[MMP_STAGE_MAX_PORTS] = { 0 };
    mmp_safetensors_writer *w = NULL;
    if (!reg) { mmp_cli_fail("stage", "registry"); goto done; }
    const mmp_stage_kind *kind = mmp_registry_find(reg, kind_name);
    if (!kind) { mmp_cli_fail("stage", NULL); rc = 2; goto done; }
    s = mmp_stage_new(kind, &p);
    if (!s) { mmp_cli_fail("stage", "loading the stage"); goto done; }
    for (int i = 0; i < n_ins; i++) {
        char spec[4096];
        snprintf(spec, sizeof spec, "%s", ins[i]);
        char *eq = strchr(spec, '=');
        if (!eq || eq == spec || !eq[1]) { fprintf(stderr, "mmpipe stage: --in wants PORT=FILE[:TENSOR], got '%s'\n", ins[i]); rc = 2; goto done; }
        *eq = 0;
        char *file = eq + 1, *tname = NULL;
        char *colon = strrchr(file, ':');
        if (colon && colon > file) { *colon = 0; tname = colon + 1; }
        int idx = mmp_stage_find_input(s, spec);
        if (idx < 0) { mmp_cli_fail("stage", NULL); rc = 2; goto done; }
        if (in_arr[idx]) { fprintf(stderr, "mmpipe stage: input '%s' given twice\n", spec); rc = 2; goto done; }
        in_arr[idx] = read_input(ins[i], mmp_stage_input(s, idx), file, tname);
        if (!in_arr[idx]) { mmp_cli_fail("stage", ins[i]); goto done; }
    }
    for (int i = 0; i < mmp_stage_n_inputs(s); i++) {
        if (!in_arr[i] && !mmp_stage_input(s, i)->optional) {
            fprintf(stderr, "mmpipe stage: input port '%s' needs --in %s=FILE.safetensors\n",
                    mmp_stage_input(s, i)->name, mmp_stage_input(s, i)->name);
            rc = 2;
            goto done;
        }
    }
    if (mmp_stage_run(s, (const mmp_array *const *)in_arr, out_arr) != MMP_OK) { mmp_cli_fail("stage", "run"); goto done; }
    w = mmp_safetensors_writer_new();
    if (!w) { mmp_cli_fail("stage", "writer"); goto done; }
    for (int i = 0; i < mmp_stage_n_outputs(s); i++) {
        const mmp_array *a = out_arr[i];
        if (mmp_safetensors_writer_add(w, mmp_stage_output(s, i)->name, a->type, a->n_dims, a->dims, a->data) != MMP_OK) {
            mmp_cli_fail("stage", "writing outputs");
            goto done;
        }
    }
    mmp_safetensors_writer_add_meta(w, "mmpipe.stage", kind_name);
    if (mmp_safetensors_writer_write(w, out) != MMP_OK) { mmp_cli_fail("stage", out); goto done; }
    for (int i = 0; i < mmp_stage_n_outputs(s); i++) {
        char t[128];
        mmp_port_type ty = { .role = mmp_stage_output(s, i)->type.role, .type = out_arr[i]->type, .n_dims = out_arr[i]->n_dims };
        memcpy(ty.dims, out_arr[i]->dims, sizeof ty.dims);
        printf("%s: %s\n", mmp_stage_output(s, i)->name, mmp_port_type_str(&ty, t, sizeof t));
    }
    printf("wrote %s\n", out);
    rc = 0;
done:
    for (int i = 0; i < MMP_STAGE_MAX_PORTS; i++) { mmp_array_free(in_arr[i]); mmp_array_free(out_arr[i]); }
    mmp_safetensors_writer_free(w);
    mmp_stage_free(s);
    mmp_registry_free(reg);
    return rc;
}
