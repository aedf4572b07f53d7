/* mmpipe pipeline: show a pipeline file's typed graph (text or Graphviz DOT), or run it on
 * inputs read from files and write its outputs. Uses only the public API. */
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_SETS 32
#define MAX_INS 32

static void pipeline_usage(FILE *f) {
    fprintf(f,
        "usage: mmpipe pipeline list\n"
        "       mmpipe pipeline show PIPELINE [--set NAME=VALUE ...] [--dot [OUT.dot]] [--load]\n"
        "       mmpipe pipeline run PIPELINE [--set NAME=VALUE ...] --in NAME=SOURCE ... [-o OUTDIR] [-t N]\n"
        "\n"
        "A pipeline (docs/pipeline-format.md) wires stages through typed ports. PIPELINE is a\n"
        "pipeline file, or the name of a stock pipeline built into mmpipe ('list' shows them;\n"
        "their files are in pipelines/). 'show' validates the graph against the stage kinds'\n"
        "port types without reading any model and prints it ('--dot' writes Graphviz DOT\n"
        "instead, to stdout or OUT.dot; '--load' also loads the models and shows the model-sized\n"
        "port types). 'run' loads every stage, feeds the inputs, runs the stages in order and\n"
        "writes every output to OUTDIR/outputs.safetensors (under the output's name); image\n"
        "outputs [3,H,W] in [0,1] are also written as OUTDIR/NAME.png and text outputs as\n"
        "OUTDIR/NAME.txt. Generated text is printed as it comes; without -o only text outputs\n"
        "are kept.\n"
        "\n"
        "options:\n"
        "  --set NAME=VALUE    give a pipeline parameter (e.g. --set model=path/to/model)\n"
        "  --in NAME=SOURCE    a pipeline input. SOURCE is one of:\n"
        "                        FILE.safetensors[:TENSOR]  a tensor (default: the input's name,\n"
        "                                                   or the only tensor in the file)\n"
        "                        FILE.wav/.flac/.mp3/...    audio, for inputs of role 'audio'\n"
        "                                                   (decoded to 16 kHz mono, at most 1 h)\n"
        "                        FILE.png/.jpg/...          an image, for inputs of role 'image'\n"
        "                                                   ([3,H,W] in [0,1])\n"
        "                        ids:1,2,3                  token ids, for inputs of role 'tokens'\n"
        "                        TEXT or @FILE              for inputs of role 'text': the text itself,\n"
        "                                                   or the contents of FILE ('@@' for a text\n"
        "                                                   starting with '@')\n"
        "                        values:0.5,999             f32 numbers [n] (e.g. a timestep)\n"
        "  -o, --out DIR       output folder (created if missing)\n"
        "  -t, --threads N     threads per stage (default 1)\n"
        "  -q, --quiet         no progress on stderr\n"
        "  -h, --help          this help\n"
        "\n"
        "examples:\n"
        "  mmpipe pipeline list\n"
        "  mmpipe pipeline show image-chat --dot graph.dot\n"
        "  mmpipe pipeline run chat --set model=models/stories260K.gguf --set template=none \\\n"
        "      --in text=\"Once upon a time\"\n"
        "  mmpipe pipeline run image-chat --set model=llava-1.5-7b-hf --in image=dog.png \\\n"
        "      --in text=\"What is in the picture?\" -o out/\n");
}

typedef struct pl_opts {
    const char *file, *out, *dot_path;
    const char *sets[MAX_SETS];
    int n_sets;
    const char *ins[MAX_INS];
    int n_ins;
    int n_threads;
    bool dot, load, quiet;
} pl_opts;

static mmp_pipeline_desc *load_desc(const pl_opts *o) {
    mmp_pipeline_desc *d = mmp_pipeline_desc_open(o->file);
    if (!d) { mmp_cli_fail("pipeline", NULL); return NULL; }
    for (int i = 0; i < o->n_sets; i++) {
        char buf[4096];
        snprintf(buf, sizeof buf, "%s", o->sets[i]);
        char *eq = strchr(buf, '=');
        if (!eq || eq == buf) {
            fprintf(stderr, "mmpipe pipeline: --set wants NAME=VALUE, got '%s'\n", o->sets[i]);
            mmp_pipeline_desc_free(d);
            return NULL;
        }
        *eq = 0;
        if (mmp_pipeline_desc_set_param(d, buf, eq + 1) != MMP_OK) {
            mmp_cli_fail("pipeline", "--set");
            mmp_pipeline_desc_free(d);
            return NULL;
        }
    }
    return d;
}

static bool has_ext(const char *path, const char *ext) {
    size_t n = strlen(path), e = strlen(ext);
    return n > e && !strcasecmp(path + n - e, ext);
}

/* A tensor from a safetensors file, converted to the input's element type (f32 from
 * f32/f16/bf16/f64; i32 from integer tensors whose values fit). */
static mmp_array *read_tensor(const char *spec, const char *name, const mmp_port_type *pt, const char *file, const char *tname) {
    mmp_safetensors *st = mmp_safetensors_open(file);
    if (!st) return NULL;
    const mmp_tensor_info *t = NULL;
    if (tname) t = mmp_safetensors_find(st, tname);
    else if (mmp_safetensors_n_tensors(st) == 1) t = mmp_safetensors_tensor(st, 0);
    else if (!(t = mmp_safetensors_find(st, name))) {
        fprintf(stderr, "mmpipe pipeline: --in %s: %s has %" PRId64 " tensors and none is named '%s'; add :TENSOR\n", spec, file,
                mmp_safetensors_n_tensors(st), name);
        mmp_safetensors_free(st);
        return NULL;
    }
    if (!t) { mmp_safetensors_free(st); return NULL; }
    if (t->n_dims > MMP_PORT_MAX_DIMS) {
        fprintf(stderr, "mmpipe pipeline: --in %s: tensor '%s' has %d dims (at most %d)\n", spec, t->name, t->n_dims, MMP_PORT_MAX_DIMS);
        mmp_safetensors_free(st);
        return NULL;
    }
    int64_t dims[MMP_PORT_MAX_DIMS];
    int nd = t->n_dims < 1 ? 1 : t->n_dims;
    for (int k = 0; k < nd; k++) dims[k] = t->n_dims < 1 ? 1 : t->ne[t->n_dims - 1 - k];   /* ggml order -> outermost first */
    mmp_array *a = mmp_array_new(pt->type, nd, dims);
    if (!a) { mmp_safetensors_free(st); return NULL; }
    int64_t n = mmp_array_nelements(a);
    const unsigned char *src = t->data;
    bool ok = true;
    for (int64_t i = 0; i < n && ok; i++) {
        double v = 0;
        int64_t iv = 0;
        bool is_int = true;
        switch (t->type) {
        case MMP_TYPE_F32: { float f; memcpy(&f, src + 4 * i, 4); v = f; is_int = false; break; }
        case MMP_TYPE_F64: memcpy(&v, src + 8 * i, 8); is_int = false; break;
        case MMP_TYPE_F16: { uint16_t h; memcpy(&h, src + 2 * i, 2); v = mmp_fp16_to_fp32(h); is_int = false; break; }
        case MMP_TYPE_BF16: { uint16_t h; memcpy(&h, src + 2 * i, 2); v = mmp_bf16_to_fp32(h); is_int = false; break; }
        case MMP_TYPE_I64: memcpy(&iv, src + 8 * i, 8); v = (double)iv; break;
        case MMP_TYPE_I32: { int32_t x; memcpy(&x, src + 4 * i, 4); iv = x; v = x; break; }
        case MMP_TYPE_I16: { int16_t x; memcpy(&x, src + 2 * i, 2); iv = x; v = x; break; }
        case MMP_TYPE_I8: iv = (int8_t)src[i]; v = (double)iv; break;
        case MMP_TYPE_U8: iv = src[i]; v = (double)iv; break;
        default:
            fprintf(stderr, "mmpipe pipeline: --in %s: tensor '%s' has type %s, which is not readable as an input\n", spec, t->name,
                    mmp_type_name(t->type));
            ok = false;
            continue;
        }
        if (pt->type == MMP_TYPE_F32) ((float *)a->data)[i] = (float)v;
        else if (pt->type == MMP_TYPE_I32 && is_int && iv >= INT32_MIN && iv <= INT32_MAX) ((int32_t *)a->data)[i] = (int32_t)iv;
        else {
            fprintf(stderr, "mmpipe pipeline: --in %s: input '%s' wants %s but element %" PRId64 " of '%s' (%s) is %g\n", spec, name,
                    mmp_type_name(pt->type), i, t->name, mmp_type_name(t->type), v);
            ok = false;
        }
    }
    mmp_safetensors_free(st);
    if (!ok) { mmp_array_free(a); return NULL; }
    return a;
}

static mmp_array *read_ids(const char *spec, const char *list) {
    int32_t *ids = NULL;
    size_t n = 0;
    if (!mmp_cli_parse_ids(list, &ids, &n) || n == 0) {
        fprintf(stderr, "mmpipe pipeline: --in %s: want ids:1,2,3\n", spec);
        free(ids);
        return NULL;
    }
    int64_t dims[1] = { (int64_t)n };
    mmp_array *a = mmp_array_new(MMP_TYPE_I32, 1, dims);
    if (a) memcpy(a->data, ids, n * sizeof *ids);
    free(ids);
    return a;
}

/* "0.5,1,999" -> f32 [n] */
static mmp_array *read_values(const char *spec, const char *list) {
    int64_t n = 1;
    for (const char *c = list; *c; c++) n += *c == ',';
    int64_t dims[1] = { n };
    mmp_array *a = mmp_array_new(MMP_TYPE_F32, 1, dims);
    if (!a) return NULL;
    const char *p = list;
    for (int64_t i = 0; i < n; i++) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || (*end != ',' && *end != 0)) {
            fprintf(stderr, "mmpipe pipeline: --in %s: want values:X,Y,... (numbers)\n", spec);
            mmp_array_free(a);
            return NULL;
        }
        ((float *)a->data)[i] = (float)v;
        p = end + (*end == ',');
    }
    return a;
}


/* Text for an input of role text: the value itself, or "@FILE" read whole ("@@..." is text
 * starting with '@'). */
static mmp_array *read_text_input(const char *spec, const char *src) {
    char *owned = NULL;
    size_t n = 0;
    const char *text = src;
    if (src[0] == '@' && src[1] != '@') {
        FILE *f = fopen(src + 1, "rb");
        if (!f) { fprintf(stderr, "mmpipe pipeline: --in %s: cannot open %s: %s\n", spec, src + 1, strerror(errno)); return NULL; }
        size_t cap = 0;
        for (;;) {
            if (n + 4096 > cap) {
                if (cap > ((size_t)64 << 20)) { fprintf(stderr, "mmpipe pipeline: --in %s: %s is larger than 64 MiB\n", spec, src + 1); break; }
                cap = cap ? cap * 2 : 65536;
                char *q = realloc(owned, cap);
                if (!q) break;
                owned = q;
            }
            size_t got = fread(owned + n, 1, cap - n, f);
            n += got;
            if (got == 0) break;
        }
        bool bad = ferror(f) || !feof(f);
        fclose(f);
        if (bad) { free(owned); fprintf(stderr, "mmpipe pipeline: --in %s: cannot read %s\n", spec, src + 1); return NULL; }
        text = owned;
    } else {
        if (src[0] == '@') src++;
        text = src;
        n = strlen(src);
    }
    if (n == 0) {
        free(owned);
        fprintf(stderr, "mmpipe pipeline: --in %s: the text is empty\n", spec);
        return NULL;
    }
    int64_t dims[1] = { (int64_t)n };
    mmp_array *a = mmp_array_new(MMP_TYPE_U8, 1, dims);
    if (a) memcpy(a->data, text, n);
    free(owned);
    return a;
}

static mmp_array *read_input(const char *spec, const mmp_pipeline *p, int *idx) {
    const char *eqp = strchr(spec, '=');
    if (!eqp || eqp == spec || !eqp[1] || eqp - spec >= 256) { fprintf(stderr, "mmpipe pipeline: --in wants NAME=SOURCE, got '%s'\n", spec); return NULL; }
    char buf[4096];
    snprintf(buf, sizeof buf, "%.*s", (int)(eqp - spec), spec);
    if ((*idx = mmp_pipeline_find_input(p, buf)) < 0) { mmp_cli_fail("pipeline", "--in"); return NULL; }
    const mmp_port_type *pt = mmp_pipeline_input_type(p, *idx);
    if (pt->role == MMP_ROLE_TEXT) return read_text_input(spec, eqp + 1);
    if (strlen(eqp + 1) >= sizeof buf - 256) { fprintf(stderr, "mmpipe pipeline: --in %s: the source is too long\n", buf); return NULL; }
    char *src = buf + strlen(buf) + 1;
    snprintf(src, sizeof buf - (size_t)(src - buf), "%s", eqp + 1);
    mmp_array *a = NULL;
    if (!strncmp(src, "ids:", 4)) {
        if (pt->role != MMP_ROLE_TOKENS) {
            fprintf(stderr, "mmpipe pipeline: --in %s: ids are for inputs of role tokens; '%s' is %s\n", spec, buf, mmp_port_role_name(pt->role));
            return NULL;
        }
        a = read_ids(spec, src + 4);
    } else if (!strncmp(src, "values:", 7)) {
        if (pt->type != MMP_TYPE_F32) {
            fprintf(stderr, "mmpipe pipeline: --in %s: values are for f32 inputs; '%s' is %s\n", spec, buf, mmp_type_name(pt->type));
            return NULL;
        }
        a = read_values(spec, src + 7);
    } else {
        /* "file.safetensors:TENSOR" */
        char *tname = NULL, *sep = strstr(src, ".safetensors:");
        if (sep) { sep[12] = 0; tname = sep + 13; }
        if (has_ext(src, ".safetensors")) a = read_tensor(spec, buf, pt, src, tname);
        else if (pt->role == MMP_ROLE_AUDIO) a = mmp_array_from_audio_file(src, 3600.0);
        else if (pt->role == MMP_ROLE_IMAGE) a = mmp_array_from_image_file(src);
        else if (pt->role == MMP_ROLE_PIXELS) {
            fprintf(stderr, "mmpipe pipeline: --in %s: input '%s' takes an encoder's normalised pixels; to start from an image file, "
                            "use a pipeline with a preprocess.image stage (e.g. the stock image-chat) or give a .safetensors tensor\n", spec, buf);
            return NULL;
        } else {
            fprintf(stderr, "mmpipe pipeline: --in %s: input '%s' is %s; give a .safetensors file (audio and image files are read for "
                            "inputs of role audio / image only)\n", spec, buf, mmp_port_role_name(pt->role));
            return NULL;
        }
    }
    if (!a && *mmp_last_error()) mmp_cli_fail("pipeline", spec);
    return a;
}

typedef struct run_ui {
    bool quiet, streamed, at_line_start;
    int64_t n_tokens;
    double t_first, t_last;
    mmp_cli_bar bar;
} run_ui;

static void progress(const char *what, int64_t done, int64_t total, void *user) {
    run_ui *ui = user;
    if (!strcmp(what, "tokens")) {
        double t = mmp_cli_now();
        if (done <= 1) ui->t_first = t;
        ui->t_last = t;
        ui->n_tokens = done;
        return;
    }
    if (ui->quiet) return;
    if (!strcmp(what, "steps")) {
        mmp_cli_bar_update(&ui->bar, "steps", done, total);
        return;
    }
    if (!strncmp(what, "stage ", 6) || !strcmp(what, "pipeline done")) {
        if (!ui->at_line_start) { fputc('\n', stdout); fflush(stdout); ui->at_line_start = true; }
        fprintf(stderr, "[%" PRId64 "/%" PRId64 "] %s\n", done, total, what);
    }
}

/* Generated text as it comes (backbone.generate streams through the pipeline). */
static bool stream_text(const char *piece, size_t len, void *user) {
    run_ui *ui = user;
    if (len) {
        fwrite(piece, 1, len, stdout);
        fflush(stdout);
        ui->streamed = true;
        ui->at_line_start = piece[len - 1] == '\n';
    }
    return true;
}

static int write_png(const char *dir, const char *name, const mmp_array *a, const char *file) {
    mmp_image *img = mmp_array_to_image(a);
    if (!img) return mmp_cli_fail("pipeline", "image");
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.png", dir, name);
    mmp_png_text txt[] = { { "mmpipe.pipeline", file } };
    enum mmp_status st = mmp_image_write_png(path, img, txt, 1);
    mmp_image_free(img);
    if (st != MMP_OK) return mmp_cli_fail("pipeline", path);
    printf("wrote %s\n", path);
    return 0;
}

static int write_text(const char *dir, const char *name, const mmp_array *a) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.txt", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) { fprintf(stderr, "mmpipe pipeline: cannot write %s: %s\n", path, strerror(errno)); return 1; }
    size_t n = (size_t)mmp_array_nbytes(a);
    bool ok = fwrite(a->data, 1, n, f) == n;
    if (fclose(f) != 0 || !ok) { fprintf(stderr, "mmpipe pipeline: writing %s failed\n", path); return 1; }
    printf("wrote %s\n", path);
    return 0;
}

static int cmd_run(const pl_opts *o) {
    int rc = 1;
    run_ui ui = { .quiet = o->quiet, .at_line_start = true };
    mmp_cli_bar_init(&ui.bar, o->quiet);
    mmp_registry *reg = mmp_registry_new();
    mmp_pipeline_desc *d = reg ? load_desc(o) : NULL;
    mmp_pipeline *p = NULL;
    mmp_array *in[MAX_INS] = { 0 }, **out = NULL;
    mmp_safetensors_writer *w = NULL;
    if (!reg) { mmp_cli_fail("pipeline", "registry"); goto done; }
    if (!d) goto done;
    if (mmp_pipeline_desc_validate(d, reg) != MMP_OK) { mmp_cli_fail("pipeline", NULL); goto done; }
    mmp_pipeline_params pp = mmp_pipeline_params_default();
    pp.n_threads = o->n_threads;
    pp.progress = progress;
    pp.on_text = stream_text;
    pp.cb_user = &ui;
    double t0 = mmp_cli_now();
    if (!(p = mmp_pipeline_new(d, reg, &pp))) { mmp_cli_fail("pipeline", "loading"); goto done; }
    if (!o->quiet) fprintf(stderr, "loaded in %.2f s\n", mmp_cli_now() - t0);
    int ni = mmp_pipeline_n_inputs(p), no = mmp_pipeline_n_outputs(p);
    bool any_text = false;
    for (int i = 0; i < no; i++) any_text |= mmp_pipeline_output_type(p, i)->role == MMP_ROLE_TEXT;
    if (!o->out && !any_text) {
        fprintf(stderr, "mmpipe pipeline run: this pipeline has no text output: give -o OUTDIR to keep its outputs\n");
        rc = 2;
        goto done;
    }
    if (!o->out && !o->quiet)
        for (int i = 0; i < no; i++)
            if (mmp_pipeline_output_type(p, i)->role != MMP_ROLE_TEXT)
                fprintf(stderr, "(output '%s' is not kept: give -o OUTDIR to keep it)\n", mmp_pipeline_output_name(p, i));
    if (ni > MAX_INS) { fprintf(stderr, "mmpipe pipeline: more than %d inputs\n", MAX_INS); goto done; }
    for (int i = 0; i < o->n_ins; i++) {
        int idx = -1;
        mmp_array *a = read_input(o->ins[i], p, &idx);
        if (!a) { rc = idx < 0 ? 2 : 1; goto done; }
        if (in[idx]) {
            fprintf(stderr, "mmpipe pipeline: input '%s' given twice\n", mmp_pipeline_input_name(p, idx));
            mmp_array_free(a);
            rc = 2;
            goto done;
        }
        in[idx] = a;
    }
    for (int i = 0; i < ni; i++)
        if (!in[i] && !mmp_pipeline_input_optional(p, i)) {
            char t[128];
            fprintf(stderr, "mmpipe pipeline: input '%s' (%s) needs --in %s=...\n", mmp_pipeline_input_name(p, i),
                    mmp_port_type_str(mmp_pipeline_input_type(p, i), t, sizeof t), mmp_pipeline_input_name(p, i));
            rc = 2;
            goto done;
        }
    if (!(out = calloc((size_t)no, sizeof *out))) goto done;
    t0 = mmp_cli_now();
    mmp_cli_bar_init(&ui.bar, o->quiet);   /* time the steps from the start of the run */
    enum mmp_status rs = mmp_pipeline_run(p, (const mmp_array *const *)in, out);
    mmp_cli_bar_done(&ui.bar);
    if (!ui.at_line_start) { fputc('\n', stdout); fflush(stdout); }
    if (rs != MMP_OK) { mmp_cli_fail("pipeline", "run"); goto done; }
    if (!o->quiet) {
        fprintf(stderr, "ran in %.2f s", mmp_cli_now() - t0);
        if (ui.n_tokens > 1 && ui.t_last > ui.t_first)
            fprintf(stderr, " (%" PRId64 " tokens generated, %.1f tokens/s)", ui.n_tokens, (double)(ui.n_tokens - 1) / (ui.t_last - ui.t_first));
        fputc('\n', stderr);
    }
    /* text outputs: printed unless they were streamed already */
    for (int i = 0; i < no; i++)
        if (mmp_pipeline_output_type(p, i)->role == MMP_ROLE_TEXT && !ui.streamed && out[i]) {
            fwrite(out[i]->data, 1, (size_t)mmp_array_nbytes(out[i]), stdout);
            fputc('\n', stdout);
        }
    if (!o->out) { rc = 0; goto done; }
    if (mkdir(o->out, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "mmpipe pipeline: cannot create %s: %s\n", o->out, strerror(errno));
        goto done;
    }
    if (!(w = mmp_safetensors_writer_new())) { mmp_cli_fail("pipeline", "writer"); goto done; }
    for (int i = 0; i < no; i++) {
        const mmp_array *a = out[i];
        char t[128];
        if (!a) {
            /* a branch that did not happen (e.g. no image in an any-to-any answer) */
            printf("%s: absent (its branch of the pipeline did not run)\n", mmp_pipeline_output_name(p, i));
            continue;
        }
        mmp_port_type ty = { .role = mmp_pipeline_output_type(p, i)->role, .type = a->type, .n_dims = a->n_dims };
        memcpy(ty.dims, a->dims, sizeof ty.dims);
        printf("%s: %s\n", mmp_pipeline_output_name(p, i), mmp_port_type_str(&ty, t, sizeof t));
        if (mmp_safetensors_writer_add(w, mmp_pipeline_output_name(p, i), a->type, a->n_dims, a->dims, a->data) != MMP_OK) {
            mmp_cli_fail("pipeline", "writing outputs");
            goto done;
        }
        if (ty.role == MMP_ROLE_IMAGE && a->type == MMP_TYPE_F32 && a->n_dims == 3 && a->dims[0] == 3 &&
            write_png(o->out, mmp_pipeline_output_name(p, i), a, o->file))
            goto done;
        if (ty.role == MMP_ROLE_TEXT && write_text(o->out, mmp_pipeline_output_name(p, i), a)) goto done;
    }
    mmp_safetensors_writer_add_meta(w, "mmpipe.pipeline", o->file);
    char path[4096];
    snprintf(path, sizeof path, "%s/outputs.safetensors", o->out);
    if (mmp_safetensors_writer_write(w, path) != MMP_OK) { mmp_cli_fail("pipeline", path); goto done; }
    printf("wrote %s\n", path);
    rc = 0;
done:
    for (int i = 0; i < MAX_INS; i++) mmp_array_free(in[i]);
    if (out)
        for (int i = 0; i < mmp_pipeline_n_outputs(p); i++) mmp_array_free(out[i]);
    free(out);
    mmp_safetensors_writer_free(w);
    mmp_pipeline_free(p);
    mmp_pipeline_desc_free(d);
    mmp_registry_free(reg);
    return rc;
}

static int cmd_show(const pl_opts *o) {
    int rc = 1;
    mmp_registry *reg = mmp_registry_new();
    mmp_pipeline_desc *d = reg ? load_desc(o) : NULL;
    mmp_pipeline *p = NULL;
    FILE *f = NULL;
    if (!reg) { mmp_cli_fail("pipeline", "registry"); goto done; }
    if (!d) goto done;
    if (o->dot) {
        f = o->dot_path ? fopen(o->dot_path, "w") : stdout;
        if (!f) { fprintf(stderr, "mmpipe pipeline: cannot write %s: %s\n", o->dot_path, strerror(errno)); goto done; }
        if (mmp_pipeline_desc_write_dot(d, reg, f) != MMP_OK) { mmp_cli_fail("pipeline", NULL); goto done; }
        if (o->dot_path) fprintf(stderr, "wrote %s\n", o->dot_path);
    } else if (o->load) {
        mmp_pipeline_params pp = mmp_pipeline_params_default();
        pp.n_threads = o->n_threads;
        if (!(p = mmp_pipeline_new(d, reg, &pp))) { mmp_cli_fail("pipeline", "loading"); goto done; }
        mmp_pipeline_print(p, stdout);
    } else if (mmp_pipeline_desc_print(d, reg, stdout) != MMP_OK) {
        mmp_cli_fail("pipeline", NULL);
        goto done;
    }
    rc = 0;
done:
    if (f && f != stdout && fclose(f) != 0 && rc == 0) { fprintf(stderr, "mmpipe pipeline: writing %s failed\n", o->dot_path); rc = 1; }
    mmp_pipeline_free(p);
    mmp_pipeline_desc_free(d);
    mmp_registry_free(reg);
    return rc;
}

/* The stock pipelines with the first line of each one's leading comment. */
static int cmd_list(void) {
    int n = mmp_pipeline_stock_count();
    for (int i = 0; i < n; i++) {
        const char *name = mmp_pipeline_stock_name(i), *t = mmp_pipeline_stock_text(name, NULL);
        const char *line = "";
        size_t len = 0;
        if (t && t[0] == '#') {
            line = t + 1;
            while (*line == ' ') line++;
            len = strcspn(line, "\n");
            while (len > 0 && (line[len - 1] == ':' || line[len - 1] == ',' || line[len - 1] == ' ')) len--;
        }
        printf("  %-22s %.*s\n", name, (int)len, line);
    }
    printf("(%d stock pipelines; 'mmpipe pipeline show NAME' prints one's graph)\n", n);
    return 0;
}

int mmp_cli_pipeline(int argc, char **argv) {
    pl_opts o = { .n_threads = 1 };
    if (argc < 2) { pipeline_usage(stderr); return 2; }
    if (mmp_cli_is_help(argv[1])) { pipeline_usage(stdout); return 0; }
    const char *sub = argv[1];
    if (!strcmp(sub, "list")) {
        if (argc > 2) { fprintf(stderr, "mmpipe pipeline list: takes no arguments\n"); return 2; }
        return cmd_list();
    }
    if (strcmp(sub, "show") && strcmp(sub, "run")) {
        fprintf(stderr, "mmpipe pipeline: unknown subcommand '%s' (list, show, run)\n", sub);
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        bool has_val = i + 1 < argc;
        if (mmp_cli_is_help(a)) { pipeline_usage(stdout); return 0; }
        else if (!strcmp(a, "--set") && has_val) {
            if (o.n_sets == MAX_SETS) { fprintf(stderr, "mmpipe pipeline: too many --set\n"); return 2; }
            o.sets[o.n_sets++] = argv[++i];
        } else if (!strcmp(a, "--in") && has_val) {
            if (o.n_ins == MAX_INS) { fprintf(stderr, "mmpipe pipeline: too many --in\n"); return 2; }
            o.ins[o.n_ins++] = argv[++i];
        } else if ((!strcmp(a, "-o") || !strcmp(a, "--out")) && has_val) o.out = argv[++i];
        else if (!strcmp(a, "--dot")) {
            o.dot = true;
            if (has_val && argv[i + 1][0] != '-') o.dot_path = argv[++i];
        } else if (!strcmp(a, "--load")) o.load = true;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) o.quiet = true;
        else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && has_val) {
            char *end;
            long t = strtol(argv[++i], &end, 10);
            if (*end || t < 1 || t > 1024) { fprintf(stderr, "mmpipe pipeline: --threads wants 1..1024, got '%s'\n", argv[i]); return 2; }
            o.n_threads = (int)t;
        } else if (a[0] == '-') {
            fprintf(stderr, "mmpipe pipeline: unknown option or missing value '%s' (see 'mmpipe pipeline --help')\n", a);
            return 2;
        } else if (o.file) {
            fprintf(stderr, "mmpipe pipeline: one FILE at a time ('%s' and '%s' given)\n", o.file, a);
            return 2;
        } else o.file = a;
    }
    if (!o.file) { fprintf(stderr, "mmpipe pipeline %s: PIPELINE (a file or a stock name) is required\n", sub); return 2; }
    if (!strcmp(sub, "show")) {
        if (o.n_ins || o.out) { fprintf(stderr, "mmpipe pipeline show: --in and -o are for 'run'\n"); return 2; }
        return cmd_show(&o);
    }
    if (o.dot || o.load) { fprintf(stderr, "mmpipe pipeline run: --dot and --load are for 'show'\n"); return 2; }
    return cmd_run(&o);
}
