/* mmpipe — pipelines: graphs of stages whose edges are typed tensors.
 *
 * A pipeline has two forms:
 *
 *   mmp_pipeline_desc  the graph as written: named stage instances (kind + model path +
 *                      options), edges "a.out -> b.in", named pipeline inputs and outputs,
 *                      and parameters (${model}) substituted into paths and options. Built in
 *                      code or parsed from a pipeline file (docs/pipeline-format.md). No
 *                      weights are read; mmp_pipeline_desc_validate() checks the whole graph
 *                      against the stage kinds' declared port types.
 *   mmp_pipeline       the graph with every stage created (model files opened). Creation
 *                      validates again, then re-checks every connection with the port types
 *                      the loaded models narrowed (embeddings[*,1024] instead of [*,*]).
 *
 * Ownership and lifetimes: a desc owns copies of every string given to it. mmp_pipeline_new
 * copies what it needs from the desc and the registry's kind pointers: the desc may be freed
 * right after; the registry (and any kind tables added to it) must outlive the pipeline.
 * Arrays returned by mmp_pipeline_run belong to the caller (mmp_array_free).
 *
 * Threads: a desc is read-only after building and may be shared. One mmp_pipeline must not be
 * run from two threads at once (its stages hold session state, e.g. the LLM's KV cache);
 * create one pipeline per thread. Models: the stages of a pipeline get their models through a
 * model store (store.h), so a file named by several stages is mapped once and a model two
 * stages need is loaded once; give several pipelines one store (mmp_pipeline_params.store) and
 * they share the files and the read-only models (the LLM) too. See docs/api.md.
 */
#ifndef MMPIPE_PIPELINE_H
#define MMPIPE_PIPELINE_H

#include <stdio.h>

#include "mmpipe/base.h"
#include "mmpipe/stage.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mmp_pipeline_desc mmp_pipeline_desc;
typedef struct mmp_pipeline mmp_pipeline;

/* ---- building a description ---- */

/* An empty pipeline named `name` (may be NULL). NULL + mmp_last_error() on no memory. */
MMP_API mmp_pipeline_desc *mmp_pipeline_desc_new(const char *name);
MMP_API void mmp_pipeline_desc_free(mmp_pipeline_desc *d);

/* Parse a pipeline file's text. `source` names it in messages ("llava.pipe:7: ..."); may be
 * NULL. Syntax errors (with line numbers) fail here; graph errors are found by _validate. */
MMP_API mmp_pipeline_desc *mmp_pipeline_desc_parse(const char *text, const char *source);
/* Read and parse a pipeline file. */
MMP_API mmp_pipeline_desc *mmp_pipeline_desc_load(const char *path);

/* Declare a parameter, referenced as ${name} in model/aux/options values. default_value may
 * be NULL: then the parameter must be set before mmp_pipeline_new. */
MMP_API enum mmp_status mmp_pipeline_desc_add_param(mmp_pipeline_desc *d, const char *name, const char *default_value);
/* Give a declared parameter a value (MMP_ERR_NOT_FOUND, listing the parameters, if the
 * pipeline declares none by that name). */
MMP_API enum mmp_status mmp_pipeline_desc_set_param(mmp_pipeline_desc *d, const char *name, const char *value);

/* A stage instance: a unique name (letters, digits, '_' and '-'), a kind name looked up in the
 * registry, and the model file/folder, an optional second file and "k=v,k=v" options, each
 * may be NULL and may contain ${param}. */
MMP_API enum mmp_status mmp_pipeline_desc_add_stage(mmp_pipeline_desc *d, const char *name, const char *kind,
                                                    const char *model, const char *aux, const char *options);
/* An edge "stage.port -> stage.port". The source may carry a row slice "stage.port[a:b]" over
 * its outermost dim, Python style (negative counts from the end, either bound omitted):
 * "llm.hidden[-4:]" are the last four rows. */
MMP_API enum mmp_status mmp_pipeline_desc_connect(mmp_pipeline_desc *d, const char *from, const char *to);
/* A pipeline input `name` feeding "stage.port" (call again with the same name to feed several
 * ports with one input; their types must agree). */
MMP_API enum mmp_status mmp_pipeline_desc_add_input(mmp_pipeline_desc *d, const char *name, const char *to);
/* A pipeline output `name` taken from "stage.port" (a row slice is allowed, as for edges). */
MMP_API enum mmp_status mmp_pipeline_desc_add_output(mmp_pipeline_desc *d, const char *name, const char *from);

MMP_API const char *mmp_pipeline_desc_name(const mmp_pipeline_desc *d);

/* ---- stock pipelines ----
 * The .pipe files of pipelines/ are compiled into the library (and installed to
 * share/mmpipe/pipelines for reading): programs get them by name without knowing where mmpipe
 * is installed. Names are the file names without ".pipe": "chat", "image-chat", "txt2img"... */
MMP_API int mmp_pipeline_stock_count(void);
/* Name of stock pipeline i (0 <= i < count, sorted), NULL outside. Static storage. */
MMP_API const char *mmp_pipeline_stock_name(int i);
/* The text of a stock pipeline (static storage, NUL-terminated; *len may be NULL), or NULL +
 * a message listing the names. */
MMP_API const char *mmp_pipeline_stock_text(const char *name, size_t *len);
/* Parse a stock pipeline ("stock:NAME" in its messages). */
MMP_API mmp_pipeline_desc *mmp_pipeline_desc_stock(const char *name);
/* The stock pipeline that turns media of one kind into a model's LLM input embeddings, as
 * mmp_mm_load (mtmd.h) decides the encoder: kind 0 = images ("image-embed": preprocessing, the
 * vision tower, the projector), kind 1 = audio ("qwen2-audio", "ultravox" or "voxtral":
 * log-mel, the Whisper tower, the family's projector). `encoder` is the file holding the
 * encoder + projector (an mmproj GGUF) or NULL for `model` itself (an HF folder holding
 * everything). The pipeline's parameter `model` takes that file; its input is `image` / `audio`
 * and its output `embeddings`. Static string, or NULL + a message (no such encoder in the file:
 * MMP_ERR_NOT_FOUND). */
MMP_API const char *mmp_pipeline_stock_for_media(const char *model, const char *encoder, int kind);
/* A pipeline file when `name_or_path` names an existing file (or has a '/' or ends in .pipe),
 * else the stock pipeline of that name. */
MMP_API mmp_pipeline_desc *mmp_pipeline_desc_open(const char *name_or_path);

/* Check the graph without reading any model file: unknown stage kinds, edges naming missing
 * stages or ports, two sources for one input port, required input ports left unconnected,
 * cycles, unknown ${params}, and every connection against the kinds' declared port types.
 * MMP_OK or the first problem in mmp_last_error(), naming the file line, both ports and their
 * types ("clip.hidden is hidden[*,*] f32 but llm.tokens wants tokens[*] i32: ..."). */
MMP_API enum mmp_status mmp_pipeline_desc_validate(const mmp_pipeline_desc *d, const mmp_registry *r);

/* Print the typed graph (parameters, stages in run order with their typed ports and where each
 * port connects, inputs, outputs) to f, after validating it. Port types are the kinds' declared
 * ones (mmp_pipeline_print shows the model-narrowed types). */
MMP_API enum mmp_status mmp_pipeline_desc_print(const mmp_pipeline_desc *d, const mmp_registry *r, FILE *f);
/* The same as Graphviz DOT ("dot -Tsvg"). */
MMP_API enum mmp_status mmp_pipeline_desc_write_dot(const mmp_pipeline_desc *d, const mmp_registry *r, FILE *f);

/* ---- creating and running ---- */

typedef struct mmp_pipeline_params {
    int n_threads;            /* threads each stage uses; <= 0 means 1 */
    /* Progress: called before each stage with what = "stage NAME (KIND)", done = stages run
     * so far, total = number of stages, and once more with done == total at the end; stages
     * also report their own progress through it. May be NULL. */
    mmp_progress_fn progress;
    /* Checked before each stage and passed to every stage; true stops the run with
     * MMP_ERR_ABORTED. May be NULL. */
    mmp_abort_fn abort_cb;
    void *cb_user;
    /* Model store (store.h) shared with other pipelines: each model file is opened once and
     * read-only models are loaded once for all of them. NULL: the pipeline makes its own store,
     * so its stages still share files and models among themselves. Must outlive the pipeline. */
    struct mmp_store *store;
    /* Streaming text from generating stages (backbone.generate); may be NULL. Uses cb_user. */
    mmp_text_fn on_text;
    /* new fields only at the end */
} mmp_pipeline_params;

MMP_API mmp_pipeline_params mmp_pipeline_params_default(void);

/* Validate, substitute parameters, create every stage (in run order) and re-check each
 * connection with the created stages' port types. NULL + mmp_last_error() on failure (nothing
 * is left allocated). `p` may be NULL for the defaults. */
MMP_API mmp_pipeline *mmp_pipeline_new(const mmp_pipeline_desc *d, const mmp_registry *r, const mmp_pipeline_params *p);
MMP_API void mmp_pipeline_free(mmp_pipeline *p);

/* The pipeline's inputs and outputs, in the order they were declared. Names and types are
 * borrowed and live as long as the pipeline. Input types are those of the ports they feed
 * (narrowed by the models); an input is optional when every port it feeds is. */
MMP_API int mmp_pipeline_n_inputs(const mmp_pipeline *p);
MMP_API int mmp_pipeline_n_outputs(const mmp_pipeline *p);
MMP_API const char *mmp_pipeline_input_name(const mmp_pipeline *p, int i);
MMP_API const char *mmp_pipeline_output_name(const mmp_pipeline *p, int i);
MMP_API const mmp_port_type *mmp_pipeline_input_type(const mmp_pipeline *p, int i);
MMP_API const mmp_port_type *mmp_pipeline_output_type(const mmp_pipeline *p, int i);
MMP_API bool mmp_pipeline_input_optional(const mmp_pipeline *p, int i);
/* Index by name; -1 with a message listing the names if there is none. */
MMP_API int mmp_pipeline_find_input(const mmp_pipeline *p, const char *name);
MMP_API int mmp_pipeline_find_output(const mmp_pipeline *p, const char *name);
/* The created stage named `name` (borrowed, lives as long as the pipeline), or NULL. */
MMP_API mmp_stage *mmp_pipeline_stage(const mmp_pipeline *p, const char *name);
/* Print the typed graph with the created stages' (narrowed) port types. */
MMP_API enum mmp_status mmp_pipeline_print(const mmp_pipeline *p, FILE *f);

/* Run every stage once in topological order. inputs[i] is the array for input i (NULL only
 * for an optional input); outputs[i] receive new arrays owned by the caller. Arrays passed
 * between stages are freed as soon as their last consumer has run. On failure every output
 * is NULL and the message names the stage.
 * Branches: a stage may leave an optional output absent (backbone.generate's signal_hidden when
 * the model made no image); a stage whose required input is absent is skipped, and its outputs
 * are absent too. Absent pipeline outputs are NULL with MMP_OK (an any-to-any turn that
 * answered with text only has no `image`). */
MMP_API enum mmp_status mmp_pipeline_run(mmp_pipeline *p, const mmp_array *const *inputs, mmp_array **outputs);

/* ---- inputs from the outside world, outputs back ----
 * Arrays in the forms the stock pipelines' inputs and outputs take. Each returns a new array
 * owned by the caller (mmp_array_free), or NULL + mmp_last_error() naming the file / value. */

/* role text: UTF-8 bytes u8 [len] (len >= 1; no terminating NUL is stored). */
MMP_API mmp_array *mmp_array_from_text(const char *text, size_t len);
/* A u8 [n] text array as a malloc'ed NUL-terminated string (free()). NULL for another type. */
MMP_API char *mmp_array_to_text(const mmp_array *a);
/* role image: [3, H, W] f32 in [0, 1] (x / 255) from RGB bytes (rows of width * 3 bytes). */
MMP_API mmp_array *mmp_array_from_rgb(const uint8_t *rgb, int32_t width, int32_t height);
/* The same from an image file (PNG, JPEG, BMP, GIF, PNM, TGA; alpha over white). */
MMP_API mmp_array *mmp_array_from_image_file(const char *path);
/* role audio: 16 kHz mono f32 [n] from interleaved f32 PCM [n_frames, channels] at
 * sample_rate (channels averaged, resampled). */
MMP_API mmp_array *mmp_array_from_pcm(const float *pcm, int64_t n_frames, int channels, int sample_rate);
/* The same from an audio file (any container / codec FFmpeg reads), at most max_seconds. */
MMP_API mmp_array *mmp_array_from_audio_file(const char *path, double max_seconds);
/* An image output [3, H, W] f32 in [0, 1] as RGB bytes (clamped, rounded): an mmp_image
 * (image.h; mmp_image_free, mmp_image_write_png). */
struct mmp_image;
MMP_API struct mmp_image *mmp_array_to_image(const mmp_array *a);

#ifdef __cplusplus
}
#endif
#endif
