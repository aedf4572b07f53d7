/* mmpipe info FILE|DIR: what a model file or folder holds — format, architecture,
 * hyper-parameters, tokenizer, the tensor table and totals. */
#include "cli.h"

#include <dirent.h>
#include <inttypes.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

static bool mmp__has_suffix(const char *s, const char *suf) {
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && !strcmp(s + n - k, suf);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void info_usage(FILE *f) {
    fprintf(f,
        "usage: mmpipe info [options] FILE|DIR\n"
        "\n"
        "Describe model files: a GGUF file (llama.cpp), a .safetensors file, a Hugging Face\n"
        "folder (config.json + *.safetensors, sharded or not), a diffusers component folder, or a\n"
        "diffusers pipeline folder (model_index.json; every component is described).\n"
        "Prints the architecture, the hyper-parameters, the tokenizer, a table of tensors\n"
        "(name, type, shape in numpy order, bytes) and totals per type.\n"
        "\n"
        "options:\n"
        "  --no-tensors     omit the tensor table (totals are still printed)\n"
        "  --max-tensors N  print at most N rows of the tensor table (default: all)\n"
        "  -h, --help       this help\n");
}

typedef struct info_opts {
    bool tensors;
    int64_t max_tensors;
} info_opts;

/* Shape in numpy order (outermost first), as users know it from PyTorch. */
static void shape_str(const mmp_tensor_info *t, char *buf, size_t size) {
    size_t n = (size_t)snprintf(buf, size, "[");
    for (int d = t->n_dims - 1; d >= 0 && n < size; d--)
        n += (size_t)snprintf(buf + n, size - n, "%s%" PRId64, d == t->n_dims - 1 ? "" : ", ", t->ne[d]);
    if (n < size) snprintf(buf + n, size - n, "]");
}

static void print_tensors(const mmp_modelfile *m, const info_opts *o) {
    int64_t n = mmp_modelfile_n_tensors(m);
    uint64_t bytes_by_type[MMP_TYPE_COUNT] = { 0 }, count_by_type[MMP_TYPE_COUNT] = { 0 };
    uint64_t total_bytes = 0, total_params = 0;
    size_t wname = 4;
    for (int64_t i = 0; i < n; i++) {
        size_t l = strlen(mmp_modelfile_tensor(m, i)->name);
        if (l > wname) wname = l;
    }
    if (wname > 60) wname = 60;
    if (o->tensors && n > 0) {
        printf("\ntensors:\n  %-*s  %-6s  %-22s  %12s\n", (int)wname, "name", "type", "shape", "bytes");
    }
    for (int64_t i = 0; i < n; i++) {
        const mmp_tensor_info *t = mmp_modelfile_tensor(m, i);
        uint64_t ne = 1;
        for (int d = 0; d < t->n_dims; d++) ne *= (uint64_t)t->ne[d];
        total_params += ne;
        total_bytes += t->nbytes;
        if ((int)t->type >= 0 && t->type < MMP_TYPE_COUNT) {
            bytes_by_type[t->type] += t->nbytes;
            count_by_type[t->type]++;
        }
        if (o->tensors && (o->max_tensors < 0 || i < o->max_tensors)) {
            char shape[96];
            shape_str(t, shape, sizeof shape);
            printf("  %-*s  %-6s  %-22s  %12zu\n", (int)wname, t->name, mmp_type_name(t->type), shape, t->nbytes);
        } else if (o->tensors && i == o->max_tensors) {
            printf("  ... %" PRId64 " more (--max-tensors)\n", n - i);
        }
    }
    char b[32];
    printf("\ntotals: %" PRId64 " tensors, %" PRIu64 " parameters (%.3f M), %s\n", n, total_params,
           (double)total_params / 1e6, mmp_cli_bytes((double)total_bytes, b, sizeof b));
    for (int t = 0; t < MMP_TYPE_COUNT; t++)
        if (count_by_type[t])
            printf("  %-6s %5" PRIu64 " tensors  %s\n", mmp_type_name(t), count_by_type[t],
                   mmp_cli_bytes((double)bytes_by_type[t], b, sizeof b));
}

/* One GGUF metadata value as text (arrays summarised). */
static void gguf_value_str(const mmp_gguf_value *v, char *buf, size_t size) {
    enum mmp_gguf_type t = mmp_gguf_value_type(v);
    int64_t i;
    double f;
    bool b;
    const char *s;
    size_t len;
    switch (t) {
    case MMP_GGUF_STRING:
        if (mmp_gguf_value_str(v, &s, &len) == MMP_OK) {
            if (len > 70) snprintf(buf, size, "\"%.60s...\" (%zu bytes)", s, len);
            else snprintf(buf, size, "\"%s\"", s);
            for (char *p = buf; *p; p++) if (*p == '\n' || *p == '\r' || *p == '\t') *p = ' ';
            return;
        }
        break;
    case MMP_GGUF_ARRAY:
        snprintf(buf, size, "[%" PRIu64 " x %s]", mmp_gguf_arr_n(v), mmp_gguf_type_name(mmp_gguf_arr_type(v)));
        return;
    case MMP_GGUF_BOOL:
        if (mmp_gguf_value_bool(v, &b) == MMP_OK) { snprintf(buf, size, "%s", b ? "true" : "false"); return; }
        break;
    case MMP_GGUF_F32:
    case MMP_GGUF_F64:
        if (mmp_gguf_value_f64(v, &f) == MMP_OK) { snprintf(buf, size, "%g", f); return; }
        break;
    default:
        if (mmp_gguf_value_i64(v, &i) == MMP_OK) { snprintf(buf, size, "%" PRId64, i); return; }
        {
            uint64_t u;
            if (mmp_gguf_value_u64(v, &u) == MMP_OK) { snprintf(buf, size, "%" PRIu64, u); return; }
        }
        break;
    }
    snprintf(buf, size, "?");
}

static void print_gguf(const mmp_gguf *g) {
    const char *arch = NULL, *name = NULL;
    mmp_gguf_get_str(g, "general.architecture", &arch);
    mmp_gguf_get_str(g, "general.name", &name);
    printf("format:        GGUF v%u (alignment %u, data at offset %" PRIu64 ")\n", mmp_gguf_version(g),
           mmp_gguf_alignment(g), mmp_gguf_data_offset(g));
    printf("architecture:  %s\n", arch ? arch : "(general.architecture missing)");
    if (name) printf("name:          %s\n", name);
    printf("\nmetadata (%" PRId64 " keys):\n", mmp_gguf_n_kv(g));
    for (int64_t i = 0; i < mmp_gguf_n_kv(g); i++) {
        const char *key = mmp_gguf_kv_key(g, i);
        if (!strncmp(key, "tokenizer.ggml.", 15) && mmp_gguf_value_type(mmp_gguf_kv_value(g, i)) == MMP_GGUF_ARRAY)
            continue; /* summarised below */
        if (!strcmp(key, "tokenizer.chat_template")) continue;
        char val[160];
        gguf_value_str(mmp_gguf_kv_value(g, i), val, sizeof val);
        printf("  %-40s %s\n", key, val);
    }
    const char *tmodel = NULL, *pre = NULL;
    mmp_gguf_get_str(g, "tokenizer.ggml.model", &tmodel);
    if (tmodel) {
        const mmp_gguf_value *toks = NULL;
        mmp_clear_error();
        mmp_gguf_get_arr(g, "tokenizer.ggml.tokens", &toks);
        mmp_gguf_get_str(g, "tokenizer.ggml.pre", &pre);
        printf("\ntokenizer:     %s%s%s%s, %" PRIu64 " tokens", tmodel, pre ? " (pre-tokenizer " : "",
               pre ? pre : "", pre ? ")" : "", toks ? mmp_gguf_arr_n(toks) : 0);
        const mmp_gguf_value *merges = NULL;
        if (mmp_gguf_has(g, "tokenizer.ggml.merges") && mmp_gguf_get_arr(g, "tokenizer.ggml.merges", &merges) == MMP_OK)
            printf(", %" PRIu64 " merges", mmp_gguf_arr_n(merges));
        uint32_t id;
        if (mmp_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &id) == MMP_OK) printf(", bos %u", id);
        if (mmp_gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &id) == MMP_OK) printf(", eos %u", id);
        printf("%s\n", mmp_gguf_has(g, "tokenizer.chat_template") ? ", chat template" : "");
    } else {
        printf("\ntokenizer:     none in this file\n");
    }
    mmp_clear_error();
}

/* Flattened scalar entries of a JSON object ("text_config.hidden_size  64"). */
static void print_json_object(const mmp_json *j, const char *path, int depth) {
    int64_t n = 0;
    if (mmp_json_object_len(j, path, &n) != MMP_OK) return;
    for (int64_t i = 0; i < n; i++) {
        const char *key;
        if (mmp_json_object_key(j, path, i, &key) != MMP_OK) continue;
        char sub[256];
        snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", key);
        if (strchr(key, '.')) continue; /* not addressable by path; HF never writes such keys */
        char val[160];
        const char *s;
        double f;
        bool b;
        int64_t len;
        switch (mmp_json_kind_of(j, sub)) {
        case MMP_JSON_OBJECT:
            if (depth < 3) print_json_object(j, sub, depth + 1);
            continue;
        case MMP_JSON_STRING:
            mmp_json_get_string(j, sub, &s);
            snprintf(val, sizeof val, "\"%.70s\"", s);
            break;
        case MMP_JSON_NUMBER:
            mmp_json_get_float(j, sub, &f);
            snprintf(val, sizeof val, "%.9g", f);
            break;
        case MMP_JSON_BOOL:
            mmp_json_get_bool(j, sub, &b);
            snprintf(val, sizeof val, "%s", b ? "true" : "false");
            break;
        case MMP_JSON_NULL:
            snprintf(val, sizeof val, "null");
            break;
        case MMP_JSON_ARRAY: {
            mmp_json_array_len(j, sub, &len);
            size_t o = (size_t)snprintf(val, sizeof val, "[");
            for (int64_t k = 0; k < len && k < 8 && o < sizeof val; k++) {
                if (mmp_json_array_string(j, sub, k, &s) == MMP_OK)
                    o += (size_t)snprintf(val + o, sizeof val - o, "%s\"%.60s\"", k ? ", " : "", s);
                else if (mmp_json_array_float(j, sub, k, &f) == MMP_OK)
                    o += (size_t)snprintf(val + o, sizeof val - o, "%s%.6g", k ? ", " : "", f);
                else
                    o += (size_t)snprintf(val + o, sizeof val - o, "%s...", k ? ", " : "");
            }
            if (o < sizeof val) snprintf(val + o, sizeof val - o, "%s]", len > 8 ? ", ..." : "");
            break;
        }
        default:
            continue;
        }
        printf("  %-40s %s\n", sub, val);
    }
    mmp_clear_error();
}

static void print_hf(const mmp_modelfile *m) {
    const mmp_json *cfg = mmp_modelfile_config(m);
    const char *arch = NULL, *mtype = NULL, *cls = NULL;
    if (cfg) {
        mmp_json_get_string(cfg, "architectures[0]", &arch);
        mmp_json_get_string(cfg, "model_type", &mtype);
        mmp_json_get_string(cfg, "_class_name", &cls);
        mmp_clear_error();
    }
    const mmp_safetensors *st = mmp_modelfile_safetensors(m);
    printf("format:        %s (%d safetensors file%s%s)\n", mmp_modelfile_format_name(mmp_modelfile_format(m)),
           st ? mmp_safetensors_n_files(st) : 0, st && mmp_safetensors_n_files(st) == 1 ? "" : "s",
           cfg ? " + config.json" : "");
    if (arch || cls || mtype)
        printf("architecture:  %s%s%s%s\n", arch ? arch : (cls ? cls : mtype), mtype && (arch || cls) ? " (model_type " : "",
               mtype && (arch || cls) ? mtype : "", mtype && (arch || cls) ? ")" : "");
    else
        printf("architecture:  unknown (no config.json with architectures / model_type / _class_name)\n");
    if (cfg) {
        printf("\nhyper-parameters (config.json):\n");
        print_json_object(cfg, "", 0);
    }
    if (st && mmp_safetensors_n_meta(st) > 0) {
        printf("\nsafetensors metadata:\n");
        for (int64_t i = 0; i < mmp_safetensors_n_meta(st); i++)
            printf("  %-40s %.80s\n", mmp_safetensors_meta_key(st, i), mmp_safetensors_meta_value(st, i));
    }
    const char *tokfiles[] = { "tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json" };
    int found = 0;
    for (size_t i = 0; i < sizeof tokfiles / sizeof tokfiles[0]; i++) {
        if (mmp_modelfile_has_file(m, tokfiles[i])) {
            printf("%s%s", found ? ", " : "\ntokenizer:     ", tokfiles[i]);
            found++;
        }
    }
    printf("%s\n", found ? "" : "\ntokenizer:     none in this folder");
    mmp_clear_error();
}

static int describe(const mmp_modelfile *m, const info_opts *o) {
    switch (mmp_modelfile_format(m)) {
    case MMP_MODELFILE_GGUF:
        print_gguf(mmp_modelfile_gguf(m));
        break;
    case MMP_MODELFILE_PIPELINE: {
        const mmp_json *idx = mmp_modelfile_config(m);
        const char *cls = NULL;
        if (idx) mmp_json_get_string(idx, "_class_name", &cls);
        mmp_clear_error();
        printf("format:        diffusers pipeline (model_index.json)\n");
        printf("architecture:  %s\n", cls ? cls : "unknown (_class_name missing)");
        int n = mmp_modelfile_n_components(m);
        printf("components:    %d\n", n);
        for (int i = 0; i < n; i++) {
            const char *name = mmp_modelfile_component_name(m, i);
            printf("\n=== component %s (%s)\n", name, mmp_modelfile_component_class(m, i));
            const mmp_modelfile *c = mmp_modelfile_component(m, name);
            if (!c) {
                printf("no weights (%s)\n", mmp_last_error());
                mmp_clear_error();
                continue;
            }
            describe(c, o);
        }
        return 0;
    }
    default:
        print_hf(m);
        break;
    }
    print_tensors(m, o);
    return 0;
}

/* When `path` is a folder that holds model folders, describe each and return 0; otherwise
 * print the error of opening `path` itself and return 1. */
static int describe_subfolders(const char *path, const info_opts *o) {
    char saved[1024];
    snprintf(saved, sizeof saved, "%s", mmp_last_error());
    DIR *d = opendir(path);
    if (!d) { fprintf(stderr, "mmpipe info: %s\n", saved); return 1; }
    char *names[64];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 64) {
        if (e->d_name[0] == '.') continue;
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        struct stat sb;
        if (stat(sub, &sb) == 0 && S_ISDIR(sb.st_mode)) names[n++] = strdup(e->d_name);
    }
    closedir(d);
    int found = 0;
    qsort(names, (size_t)n, sizeof names[0], cmp_str);
    for (int i = 0; i < n; i++) {
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/%s", path, names[i]);
        mmp_modelfile *m = mmp_modelfile_open(sub);
        if (m) {
            printf("%s=== %s\nmodel:         %s\n", found ? "\n" : "", names[i], sub);
            describe(m, o);
            mmp_modelfile_free(m);
            found++;
        }
        free(names[i]);
    }
    mmp_clear_error();
    if (!found) { fprintf(stderr, "mmpipe info: %s\n", saved); return 1; }
    return 0;
}

/* llama2.c files (karpathy's run.c format) have no magic: a checkpoint is recognised by its
 * header matching the file size exactly, which the converter checks; it is shown as the GGUF
 * file it converts to (tensor names as llama.cpp's). A tokenizer.bin is shown as a tokenizer.
 * Returns -1 when `path` is neither. */
static int describe_llama2c(const char *path, const info_opts *o) {
    const char *tmp = getenv("TMPDIR");
    char out[4096];
    snprintf(out, sizeof out, "%s/mmpipe-info-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(out);
    if (fd < 0) return -1;
    close(fd);
    mmp_convert_params cp = mmp_convert_params_default();
    if (mmp_convert_llama2c_to_gguf(path, NULL, out, &cp) == MMP_OK) {
        mmp_modelfile *m = mmp_modelfile_open(out);
        unlink(out);
        if (!m) return -1;
        printf("model:         %s\n", path);
        printf("format:        llama2.c checkpoint (run.c layout, f32); shown as its GGUF conversion\n");
        printf("               (mmpipe convert --llama2c %s --tokenizer TOKENIZER.bin OUT.gguf)\n", path);
        describe(m, o);
        mmp_modelfile_free(m);
        return 0;
    }
    unlink(out);
    mmp_tokenizer *t = mmp_tokenizer_from_llama2c(path, 0);
    if (!t) return -1;
    int32_t n = mmp_tokenizer_n_vocab(t);
    printf("model:         %s\n", path);
    printf("format:        llama2.c tokenizer (scores + pieces)\n");
    printf("tokenizer:     %s, %d tokens, bos %d, eos %d\n", mmp_tokenizer_model_name(t), (int)n,
           (int)mmp_tokenizer_bos(t), (int)mmp_tokenizer_eos(t));
    if (o->tensors) {
        printf("\npieces (first %d):\n", n < 12 ? (int)n : 12);
        for (int32_t i = 0; i < n && i < 12; i++) {
            char piece[64];
            size_t len = 0;
            const char *txt = mmp_tokenizer_token_text(t, i, &len);
            if (!txt) len = 0;
            if (len > sizeof piece - 1) len = sizeof piece - 1;
            memcpy(piece, txt ? txt : "", len);
            piece[len] = 0;
            for (char *c = piece; *c; c++) if ((unsigned char)*c < 32) *c = '?';
            printf("  %5d  %-16s score %g\n", (int)i, piece, (double)mmp_tokenizer_token_score(t, i));
        }
    }
    mmp_tokenizer_free(t);
    return 0;
}

int mmp_cli_info(int argc, char **argv) {
    info_opts o = { .tensors = true, .max_tensors = -1 };
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (mmp_cli_is_help(argv[i])) { info_usage(stdout); return 0; }
        else if (!strcmp(argv[i], "--no-tensors")) o.tensors = false;
        else if (!strcmp(argv[i], "--max-tensors") && i + 1 < argc) {
            char *end;
            o.max_tensors = strtoll(argv[++i], &end, 10);
            if (*end || o.max_tensors < 0) { fprintf(stderr, "mmpipe info: --max-tensors wants a number >= 0, got '%s'\n", argv[i]); return 2; }
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "mmpipe info: unknown option '%s' (see 'mmpipe info --help')\n", argv[i]);
            return 2;
        } else if (path) {
            fprintf(stderr, "mmpipe info: one path at a time ('%s' and '%s' given)\n", path, argv[i]);
            return 2;
        } else path = argv[i];
    }
    if (!path) { info_usage(stderr); return 2; }
    mmp_modelfile *m = mmp_modelfile_open(path);
    if (!m && mmp__has_suffix(path, ".bin")) {
        char saved[1024];
        snprintf(saved, sizeof saved, "%s", mmp_last_error());
        if (describe_llama2c(path, &o) == 0) return 0;
        fprintf(stderr, "mmpipe info: %s (and it is neither a llama2.c checkpoint nor a llama2.c tokenizer: %s)\n", saved, mmp_last_error());
        return 1;
    }
    if (!m) {
        /* A folder that holds model folders (e.g. an any-to-any checkpoint with llm/ and
         * output_projector/): describe each of them. */
        return describe_subfolders(path, &o);
    }
    printf("model:         %s\n", path);
    int rc = describe(m, &o);
    mmp_modelfile_free(m);
    return rc;
}
