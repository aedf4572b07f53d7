/* mmpipe — stages, typed ports and the stage registry.
 *
 * A stage is one pluggable step of a pipeline (an image encoder, a projector, the LLM
 * backbone, a diffusion generator, ...). Each stage kind implements the small interface
 * `mmp_stage_kind` below and is found in a registry by its name ("encoder.clip",
 * "projector.mlp", "backbone.moe", ...). A stage has named input and output ports; each port
 * has a type: a role (what the numbers mean), an element type and a shape with free dims.
 * Connecting an output to an input checks the types and says exactly what does not fit.
 *
 * Shapes of ports and arrays are written in the human (numpy / PyTorch) order, outermost
 * first: embeddings[*, 4096] is a list of any number of 4096-wide vectors, the last dim being
 * contiguous in memory. (The op graph, graph.h, uses ggml's order: ne[0] contiguous.) */
#ifndef MMPIPE_STAGE_H
#define MMPIPE_STAGE_H

#include "mmpipe/base.h"
#include "mmpipe/types.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MMP_PORT_MAX_DIMS 4
#define MMP_DIM_ANY (-1)        /* a free dim in a port shape: any size >= 1 */
#define MMP_STAGE_MAX_PORTS 8

/* What the numbers on a port mean. Values are fixed forever. */
enum mmp_port_role {
    MMP_ROLE_ANY          = 0,  /* accepts any role (debug/utility stages) */
    MMP_ROLE_PIXELS       = 1,  /* normalised image tensor [C, H, W] for an encoder */
    MMP_ROLE_AUDIO        = 2,  /* PCM samples [n] at the stage's sample rate */
    MMP_ROLE_MEL          = 3,  /* log-mel features [n_mels, n_frames] */
    MMP_ROLE_TOKENS       = 4,  /* token ids [n] (i32) */
    MMP_ROLE_EMBEDDINGS   = 5,  /* vectors in a model's input embedding space [n, d] */
    MMP_ROLE_HIDDEN       = 6,  /* hidden states of an encoder or decoder [n, d] */
    MMP_ROLE_LOGITS       = 7,  /* next-token scores [n, vocab] */
    MMP_ROLE_CONDITIONING = 8,  /* diffusion conditioning (cross-attention context) [n, d] */
    MMP_ROLE_LATENTS      = 9,  /* diffusion latents [C, H, W] */
    MMP_ROLE_IMAGE        = 10, /* decoded image [3, H, W] in [0, 1] or [-1, 1] (the port says) */
    MMP_ROLE_TIMESTEP     = 11, /* diffusion timestep(s) [n] */
    MMP_ROLE_TEXT         = 12, /* UTF-8 text [n bytes] (u8, no terminating NUL) */
    MMP_ROLE_COUNTS       = 13, /* sizes of the items of a list [k] (i32), e.g. rows per media item */
    MMP_ROLE_COUNT        = 14
};

MMP_API const char *mmp_port_role_name(enum mmp_port_role r);

/* The type of a port: role, element type and shape (MMP_DIM_ANY for free dims). */
typedef struct mmp_port_type {
    enum mmp_port_role role;
    enum mmp_type type;
    int n_dims;                          /* 1..MMP_PORT_MAX_DIMS */
    int64_t dims[MMP_PORT_MAX_DIMS];     /* outermost first; MMP_DIM_ANY = free */
} mmp_port_type;

typedef struct mmp_port {
    const char *name;     /* "pixels", "embeddings", ... unique among a stage's inputs/outputs */
    mmp_port_type type;
    bool optional;        /* input: may be left unconnected; output: may be absent after a run
                           * (the kind leaves it NULL, e.g. no image in an any-to-any turn) */
    const char *doc;      /* one line for `mmpipe stage --list` */
} mmp_port;

/* "embeddings[*,4096] f32" into buf; returns buf. */
MMP_API char *mmp_port_type_str(const mmp_port_type *t, char *buf, size_t size);

/* Can an output of type `from` feed an input of type `to`? MMP_OK, or MMP_ERR_SHAPE with a
 * message naming both ports ("clip.out is embeddings[*,1024] f32 but mlp.in wants
 * embeddings[*,768] f32: dim 1 is 1024, expected 768"). from_name/to_name are used only for
 * the message ("stage.port"). A free dim matches any size; ROLE_ANY matches any role. */
MMP_API enum mmp_status mmp_port_check_connect(const char *from_name, const mmp_port_type *from,
                                               const char *to_name, const mmp_port_type *to);

/* ---- arrays: the dense host tensors that flow between stages ----
 * An mmp_array owns its data (unless created with mmp_array_wrap). Shape is outermost first. */
typedef struct mmp_array {
    enum mmp_type type;
    int n_dims;
    int64_t dims[MMP_PORT_MAX_DIMS];
    void *data;
    bool owns_data;
} mmp_array;

/* New zero-filled array; NULL + mmp_last_error() for bad dims or too large a size. Every dim
 * is >= 1 except the outermost, which may be 0 (an empty list, e.g. an answer of no tokens). */
MMP_API mmp_array *mmp_array_new(enum mmp_type type, int n_dims, const int64_t *dims);
/* Array over caller memory (not freed by mmp_array_free). */
MMP_API mmp_array *mmp_array_wrap(enum mmp_type type, int n_dims, const int64_t *dims, void *data);
MMP_API void mmp_array_free(mmp_array *a);
MMP_API int64_t mmp_array_nelements(const mmp_array *a);
MMP_API size_t mmp_array_nbytes(const mmp_array *a);
/* Does the array fit the port type? MMP_OK or MMP_ERR_SHAPE naming `what` and the difference. */
MMP_API enum mmp_status mmp_array_check(const char *what, const mmp_array *a, const mmp_port_type *t);

/* ---- stages ---- */

typedef struct mmp_stage mmp_stage;

/* Options given to a stage when it is created. */
typedef struct mmp_stage_params {
    const char *model_path;   /* file or folder the stage loads (GGUF, safetensors, HF folder) */
    const char *aux_path;     /* optional second file (e.g. an mmproj next to an LLM); NULL */
    const char *options;      /* optional "key=value,key=value" stage options; NULL */
    int n_threads;            /* threads for run(); <= 0 means 1 */
    mmp_progress_fn progress; /* may be NULL */
    mmp_abort_fn abort_cb;    /* may be NULL */
    void *cb_user;
    /* Model store (store.h): stages created with the same store open each model file once and
     * share the models loaded from it. NULL: the stage opens its files itself. */
    struct mmp_store *store;
    /* Sharing scope for models that keep scratch state while running (ViT, UNet, VAE, ...):
     * stages with the same non-NULL scope share them (a pipeline passes itself: its stages
     * run one at a time). NULL: such models are not shared. Read-only models (the LLM) are
     * shared through the store regardless. */
    const void *scope;
    /* Streaming text of generating stages (backbone.generate); may be NULL. Uses cb_user. */
    mmp_text_fn on_text;
    /* new fields only at the end */
} mmp_stage_params;

MMP_API mmp_stage_params mmp_stage_params_default(void);

/* What a stage kind implements. Kinds are plain constant tables: the registry holds
 * pointers to them. All callbacks are required unless marked optional. */
typedef struct mmp_stage_kind {
    const char *name;         /* "encoder.clip" */
    const char *summary;      /* one line */
    /* Ports as the kind declares them before any model is read (free dims where the model
     * decides the size). */
    int n_inputs, n_outputs;
    mmp_port inputs[MMP_STAGE_MAX_PORTS];
    mmp_port outputs[MMP_STAGE_MAX_PORTS];
    /* Open the model files and read hyper-parameters; weights are mapped, not copied.
     * Returns the kind's private state or NULL + mmp_last_error(). It may narrow the port
     * types to the model's sizes by writing *in_types / *out_types (arrays of n_inputs /
     * n_outputs, pre-filled with the declared types). */
    void *(*create)(const mmp_stage_params *p, mmp_port_type *in_types, mmp_port_type *out_types);
    /* Compute outputs from inputs. inputs[i] may be NULL for an optional port. outputs[i]
     * are set to new arrays owned by the caller; an optional output may be left NULL (absent). */
    enum mmp_status (*run)(void *state, const mmp_stage_params *p,
                           const mmp_array *const *inputs, mmp_array **outputs);
    void (*destroy)(void *state);
} mmp_stage_kind;

/* A registry of stage kinds. mmp_registry_new() holds every kind built into the library;
 * programs add their own kinds with mmp_registry_add. Not thread-safe for adding; lookups
 * from several threads are fine once adding is done. */
typedef struct mmp_registry mmp_registry;
MMP_API mmp_registry *mmp_registry_new(void);
MMP_API void mmp_registry_free(mmp_registry *r);
/* Adds a kind (the table must outlive the registry). MMP_ERR_INVALID_ARG on a duplicate name
 * or a malformed table (no name, too many ports, duplicate port names). */
MMP_API enum mmp_status mmp_registry_add(mmp_registry *r, const mmp_stage_kind *kind);
MMP_API int mmp_registry_count(const mmp_registry *r);
MMP_API const mmp_stage_kind *mmp_registry_at(const mmp_registry *r, int i);
/* NULL + message listing the known kinds if there is none by that name. */
MMP_API const mmp_stage_kind *mmp_registry_find(const mmp_registry *r, const char *name);

/* Create a stage of a kind from model files. NULL + mmp_last_error() on failure. */
MMP_API mmp_stage *mmp_stage_new(const mmp_stage_kind *kind, const mmp_stage_params *p);
MMP_API void mmp_stage_free(mmp_stage *s);
MMP_API const mmp_stage_kind *mmp_stage_get_kind(const mmp_stage *s);
/* The port types after loading (model sizes filled in). Borrowed; live as long as the stage. */
MMP_API int mmp_stage_n_inputs(const mmp_stage *s);
MMP_API int mmp_stage_n_outputs(const mmp_stage *s);
MMP_API const mmp_port *mmp_stage_input(const mmp_stage *s, int i);
MMP_API const mmp_port *mmp_stage_output(const mmp_stage *s, int i);
/* Index of a port by name, -1 if none (with a message listing the ports). */
MMP_API int mmp_stage_find_input(const mmp_stage *s, const char *name);
MMP_API int mmp_stage_find_output(const mmp_stage *s, const char *name);
/* Check every given input against its port type, then run. outputs[] receive new arrays
 * owned by the caller (free with mmp_array_free). */
MMP_API enum mmp_status mmp_stage_run(mmp_stage *s, const mmp_array *const *inputs, mmp_array **outputs);

#ifdef __cplusplus
}
#endif
#endif
