/* One view of the model files a user points at: a GGUF file, a safetensors file or index, an
 * HF / diffusers folder or a diffusers pipeline root. See include/mmpipe/modelfile.h. */
#include "mmpipe/modelfile.h"
#include "mapfile.h"
#include "util.h"

#include <string.h>

struct mmp_modelfile {
    enum mmp_modelfile_format format;
    char *path, *dir;
    mmp_gguf *g;
    mmp_safetensors *st;
    mmp_json *cfg, *gen;
    int n_comp;
    char **comp_name, **comp_class;
    mmp_modelfile **comp;
};

const char *mmp_modelfile_format_name(enum mmp_modelfile_format f) {
    switch (f) {
    case MMP_MODELFILE_GGUF: return "gguf";
    case MMP_MODELFILE_SAFETENSORS: return "safetensors";
    case MMP_MODELFILE_HF: return "hf";
    case MMP_MODELFILE_DIFFUSERS: return "diffusers";
    case MMP_MODELFILE_PIPELINE: return "pipeline";
    case MMP_MODELFILE_FORMAT_COUNT: break;
    }
    return "unknown";
}

void mmp_modelfile_free(mmp_modelfile *m) {
    if (!m) return;
    mmp_gguf_free(m->g);
    mmp_safetensors_free(m->st);
    mmp_json_free(m->cfg);
    mmp_json_free(m->gen);
    for (int i = 0; i < m->n_comp; i++) {
        free(m->comp_name[i]);
        free(m->comp_class[i]);
        mmp_modelfile_free(m->comp[i]);
    }
    free(m->comp_name);
    free(m->comp_class);
    free(m->comp);
    free(m->path);
    free(m->dir);
    free(m);
}

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* Weight files a folder may hold, in the order they are preferred. */
static const struct {
    const char *file;
    enum mmp_modelfile_format format;
} weight_files[] = {
    {"model.safetensors.index.json", MMP_MODELFILE_HF},
    {"model.safetensors", MMP_MODELFILE_HF},
    {"diffusion_pytorch_model.safetensors.index.json", MMP_MODELFILE_DIFFUSERS},
    {"diffusion_pytorch_model.safetensors", MMP_MODELFILE_DIFFUSERS},
    {"diffusion_pytorch_model.fp16.safetensors.index.json", MMP_MODELFILE_DIFFUSERS},
    {"diffusion_pytorch_model.fp16.safetensors", MMP_MODELFILE_DIFFUSERS},
    {"model.fp16.safetensors", MMP_MODELFILE_HF},
};
#define N_WEIGHT_FILES (int)(sizeof weight_files / sizeof weight_files[0])

/* Index of the first weight file present in dir, or -1. */
static int find_weights(const char *dir) {
    for (int i = 0; i < N_WEIGHT_FILES; i++) {
        char *p = mmp__path_join(dir, weight_files[i].file);
        bool ok = p && mmp__is_file(p);
        free(p);
        if (ok) return i;
    }
    return -1;
}

/* Load dir/name as JSON into *out if the file exists (a broken file is an error). */
static enum mmp_status load_json_opt(const char *dir, const char *name, mmp_json **out) {
    char *p = mmp__path_join(dir, name);
    if (!p) return MMP_ERR_NOMEM;
    enum mmp_status s = MMP_OK;
    if (mmp__is_file(p)) {
        *out = mmp_json_open(p);
        if (!*out) s = MMP_ERR_FORMAT;
    }
    free(p);
    return s;
}

static mmp_modelfile *open_impl(const char *path, int depth);

static enum mmp_status open_pipeline(mmp_modelfile *m, int depth) {
    const mmp_json *idx = m->cfg;
    int64_t n;
    enum mmp_status s = mmp_json_object_len(idx, "", &n);
    if (s) return s;
    m->comp_name = mmp__calloc((size_t)(n ? n : 1), sizeof(char *));
    m->comp_class = mmp__calloc((size_t)(n ? n : 1), sizeof(char *));
    m->comp = mmp__calloc((size_t)(n ? n : 1), sizeof(mmp_modelfile *));
    if (!m->comp_name || !m->comp_class || !m->comp) return MMP_ERR_NOMEM;
    for (int64_t i = 0; i < n; i++) {
        const char *key;
        if ((s = mmp_json_object_key(idx, "", i, &key))) return s;
        /* components are "name": [library, class]; "_class_name" etc. are not */
        if (key[0] == '_' || mmp_json_kind_of(idx, key) != MMP_JSON_ARRAY) continue;
        if (strchr(key, '/') || strchr(key, '.')) continue; /* not addressable as a folder */
        char cp[300];
        snprintf(cp, sizeof cp, "%s[1]", key);
        const char *cls = NULL;
        if (mmp_json_kind_of(idx, cp) == MMP_JSON_STRING) mmp_json_get_string(idx, cp, &cls);
        int k = m->n_comp;
        m->comp_name[k] = mmp__strdup(key);
        m->comp_class[k] = mmp__strdup(cls ? cls : "");
        m->n_comp++;
        if (!m->comp_name[k] || !m->comp_class[k]) return MMP_ERR_NOMEM;
        char *sub = mmp__path_join(m->dir, key);
        if (!sub) return MMP_ERR_NOMEM;
        if (mmp__is_dir(sub) && find_weights(sub) >= 0) {
            m->comp[k] = open_impl(sub, depth + 1);
            if (!m->comp[k]) {
                mmp__error_prefix("%s: component '%s': ", m->path, key);
                free(sub);
                return MMP_ERR_FORMAT;
            }
        }
        free(sub);
    }
    return MMP_OK;
}

static mmp_modelfile *open_impl(const char *path, int depth) {
    if (!path) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_modelfile_open: NULL path");
    mmp_modelfile *m = mmp__calloc(1, sizeof *m);
    if (!m || !(m->path = mmp__strdup(path))) {
        free(m);
        return NULL;
    }
    enum mmp_status s = MMP_OK;
    if (mmp__is_dir(path)) {
        if (!(m->dir = mmp__strdup(path))) goto fail;
        char *mi = mmp__path_join(path, "model_index.json");
        if (!mi) goto fail;
        bool pipeline = mmp__is_file(mi) && depth == 0;
        free(mi);
        if (pipeline) {
            m->format = MMP_MODELFILE_PIPELINE;
            if (load_json_opt(path, "model_index.json", &m->cfg) || open_pipeline(m, depth)) goto fail;
            return m;
        }
        int w = find_weights(path);
        if (w < 0) {
            mmp__error(MMP_ERR_NOT_FOUND,
                       "%s: folder has no model weights (looked for model_index.json, model.safetensors[.index.json], "
                       "diffusion_pytorch_model.safetensors[.index.json])",
                       path);
            goto fail;
        }
        m->format = weight_files[w].format;
        char *wp = mmp__path_join(path, weight_files[w].file);
        if (!wp) goto fail;
        m->st = mmp_safetensors_open(wp);
        free(wp);
        if (!m->st) goto fail;
    } else {
        /* a file: GGUF by magic, else safetensors (file or index) */
        mmp__mapfile mf;
        if (mmp__mapfile_open(&mf, path)) goto fail;
        bool is_gguf = mf.size >= 4 && memcmp(mf.data, "GGUF", 4) == 0;
        mmp__mapfile_close(&mf);
        const char *slash = strrchr(path, '/');
        size_t dl = slash ? (size_t)(slash - path) : 1;
        if (!(m->dir = mmp__malloc(dl + 1))) goto fail;
        memcpy(m->dir, slash ? path : ".", dl);
        m->dir[dl] = 0;
        if (is_gguf) {
            m->format = MMP_MODELFILE_GGUF;
            if (!(m->g = mmp_gguf_open(path))) goto fail;
            return m;
        }
        if (!ends_with(path, ".safetensors") && !ends_with(path, ".safetensors.index.json")) {
            mmp__error(MMP_ERR_UNSUPPORTED, "%s: not a model file (expected a .gguf, a .safetensors, a *.safetensors.index.json or a folder)", path);
            goto fail;
        }
        m->format = MMP_MODELFILE_SAFETENSORS;
        if (!(m->st = mmp_safetensors_open(path))) goto fail;
    }
    if ((s = load_json_opt(m->dir, "config.json", &m->cfg)) || (s = load_json_opt(m->dir, "generation_config.json", &m->gen))) goto fail;
    return m;
fail:
    mmp_modelfile_free(m);
    return NULL;
}

mmp_modelfile *mmp_modelfile_open(const char *path) { return open_impl(path, 0); }

enum mmp_modelfile_format mmp_modelfile_format(const mmp_modelfile *m) { return m ? m->format : MMP_MODELFILE_FORMAT_COUNT; }
const char *mmp_modelfile_path(const mmp_modelfile *m) { return m ? m->path : NULL; }
const char *mmp_modelfile_dir(const mmp_modelfile *m) { return m ? m->dir : NULL; }

int64_t mmp_modelfile_n_tensors(const mmp_modelfile *m) {
    if (!m) return 0;
    if (m->g) return mmp_gguf_n_tensors(m->g);
    if (m->st) return mmp_safetensors_n_tensors(m->st);
    return 0;
}

const mmp_tensor_info *mmp_modelfile_tensor(const mmp_modelfile *m, int64_t i) {
    if (!m) return NULL;
    if (m->g) return mmp_gguf_tensor(m->g, i);
    if (m->st) return mmp_safetensors_tensor(m->st, i);
    return NULL;
}

const mmp_tensor_info *mmp_modelfile_find(const mmp_modelfile *m, const char *name) {
    if (!m || !name) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_modelfile_find: NULL argument");
    if (m->g) return mmp_gguf_find_tensor(m->g, name);
    if (m->st) return mmp_safetensors_find(m->st, name);
    return mmp__error_null(MMP_ERR_NOT_FOUND, "%s: tensor '%s' not found (a pipeline root has no tensors: open a component)", m->path, name);
}

const mmp_gguf *mmp_modelfile_gguf(const mmp_modelfile *m) { return m ? m->g : NULL; }
const mmp_safetensors *mmp_modelfile_safetensors(const mmp_modelfile *m) { return m ? m->st : NULL; }
const mmp_json *mmp_modelfile_config(const mmp_modelfile *m) { return m ? m->cfg : NULL; }
const mmp_json *mmp_modelfile_generation_config(const mmp_modelfile *m) { return m ? m->gen : NULL; }

bool mmp_modelfile_has_file(const mmp_modelfile *m, const char *name) {
    if (!m || !name) return false;
    char *p = mmp__path_join(m->dir, name);
    bool ok = p && mmp__is_file(p);
    free(p);
    return ok;
}

char *mmp_modelfile_file_path(const mmp_modelfile *m, const char *name) {
    if (!m || !name) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_modelfile_file_path: NULL argument");
    char *p = mmp__path_join(m->dir, name);
    if (p && !mmp__is_file(p)) {
        free(p);
        return mmp__error_null(MMP_ERR_NOT_FOUND, "%s: no file '%s' next to the model", m->dir, name);
    }
    return p;
}

int mmp_modelfile_n_components(const mmp_modelfile *m) { return m ? m->n_comp : 0; }
const char *mmp_modelfile_component_name(const mmp_modelfile *m, int i) { return m && i >= 0 && i < m->n_comp ? m->comp_name[i] : NULL; }
const char *mmp_modelfile_component_class(const mmp_modelfile *m, int i) { return m && i >= 0 && i < m->n_comp ? m->comp_class[i] : NULL; }

const mmp_modelfile *mmp_modelfile_component(const mmp_modelfile *m, const char *name) {
    if (!m || !name) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_modelfile_component: NULL argument");
    for (int i = 0; i < m->n_comp; i++)
        if (strcmp(m->comp_name[i], name) == 0) {
            if (m->comp[i]) return m->comp[i];
            return mmp__error_null(MMP_ERR_NOT_FOUND, "%s: component '%s' has no weights", m->path, name);
        }
    return mmp__error_null(MMP_ERR_NOT_FOUND, "%s: no component '%s' in model_index.json", m->path, name);
}
