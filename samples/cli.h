/* The mmpipe CLI: one cli_<command>.c per subcommand, dispatched from mmpipe.c. Commands use
 * only the public API (include/mmpipe). Each returns the process exit code: 0 ok, 1 failure
 * (the message is printed), 2 bad usage. */
#ifndef MMP_CLI_H
#define MMP_CLI_H

#include "mmpipe/mmpipe.h"
#include "mmpipe/llm.h"       /* run, chat, tokenize */
#include "mmpipe/tokenizer.h"
#include <stdio.h>

typedef struct mmp_cli_command {
    const char *name;
    const char *summary;
    int (*main)(int argc, char **argv);   /* argv[0] is the command name */
} mmp_cli_command;

int mmp_cli_info(int argc, char **argv);
int mmp_cli_stage(int argc, char **argv);
int mmp_cli_convert(int argc, char **argv);
int mmp_cli_run(int argc, char **argv);
int mmp_cli_chat(int argc, char **argv);
int mmp_cli_tokenize(int argc, char **argv);
int mmp_cli_caption(int argc, char **argv);
int mmp_cli_pipeline(int argc, char **argv);
int mmp_cli_txt2img(int argc, char **argv);

/* Shared by run / chat / tokenize (samples/cli_run.c). */
#define MMP_CLI_MAX_STOP 16
#define MMP_CLI_MIN(a, b) ((a) < (b) ? (a) : (b))
#define MMP_CLI_MAXD(a, b) ((a) > (b) ? (a) : (b))
typedef struct mmp_cli_llm_opts {
    const char *model;
    mmp_sampler_params sp;
    bool seed_set;
    int n_predict;            /* -1: the command's default */
    int n_ctx, n_threads;
    const char *stop[MMP_CLI_MAX_STOP];
    int n_stop;
} mmp_cli_llm_opts;
void mmp_cli_llm_opts_init(mmp_cli_llm_opts *o);
/* If argv[*i] is a model/sampling/context option, consume it (and its value): 1; not one: 0;
 * bad value (message printed): -1. */
int mmp_cli_llm_opt(const char *cmd, int argc, char **argv, int *i, mmp_cli_llm_opts *o);
const char *mmp_cli_llm_opts_help(void);
/* "1,2,3" -> malloc'ed ids; false on anything else. */
bool mmp_cli_parse_ids(const char *s, int32_t **ids, size_t *n);
/* Load a model (message printed on failure). */
mmp_llm *mmp_cli_llm_load(const char *cmd, const char *path, bool vocab_only);
/* The text of token id after token prev (SentencePiece leading space dropped after BOS). */
int64_t mmp_cli_piece(const mmp_tokenizer *tok, int32_t prev, int32_t id, char *buf, size_t size);
double mmp_cli_now(void);
uint64_t mmp_cli_random_seed(void);

/* chat and caption as thin wrappers over stock pipelines (samples/cli_session.c): the "chat"
 * pipeline for the conversation and one media pipeline per kind ("image-embed", or the audio
 * one of the model), on one model store. Functions print their message and return 0 ok, 1
 * failure (2: bad usage). */
typedef struct mmp_cli_session {
    const char *cmd, *model, *mmproj;
    int n_threads;
    mmp_registry *reg;
    mmp_store *store;
    mmp_pipeline *chat;
    mmp_pipeline *media_pipe[2];          /* [0] images, [1] audio; made on first use */
    mmp_array **media;                    /* embeddings of every attached item, in order */
    int n_media, cap_media;
    mmp_llm *vocab;                       /* tokenizer only: the template's BOS / EOS text */
    const mmp_tokenizer *tok;
    enum mmp_chat_template tmpl;
    bool raw;                             /* no template: messages are concatenated as is */
    const char *bos_text, *eos_text;
    double t0, t_prompt, t_last;          /* timings of the last answer (progress events) */
    int64_t n_prompt, n_reused, n_tokens;
} mmp_cli_session;
/* tmpl_name: --chat-template (NULL: the model's; "none": raw text); raw_fallback: a model
 * without a template gets raw text (caption) instead of an error (chat). */
int mmp_cli_session_open(mmp_cli_session *s, const char *cmd, const mmp_cli_llm_opts *o, const char *tmpl_name, bool raw_fallback,
                         const char *mmproj);
/* Encode an image (kind 0) or audio file (kind 1, at most max_seconds) and keep its embeddings. */
int mmp_cli_session_add_media(mmp_cli_session *s, int kind, const char *path, double max_seconds);
int mmp_cli_session_n_media(const mmp_cli_session *s);
void mmp_cli_session_truncate_media(mmp_cli_session *s, int n);
/* The conversation as the prompt text (malloc'ed; NULL + message on failure). */
char *mmp_cli_session_render(mmp_cli_session *s, const mmp_chat_msg *msgs, size_t n);
/* Generate the answer to the rendered text with every attached item, streaming it to stdout;
 * *answer gets the text (malloc'ed). */
int mmp_cli_session_answer(mmp_cli_session *s, const char *text, char **answer);
void mmp_cli_session_close(mmp_cli_session *s);
/* Media markers ("<image>", "<audio>", "<__media__>") in a message. */
int mmp_cli_count_markers(const char *text);

/* Print "mmpipe CMD: <what>: <mmp_last_error()>" to stderr and return 1. */
int mmp_cli_fail(const char *cmd, const char *what);
/* True if argv[i] is -h/--help. */
int mmp_cli_is_help(const char *arg);
/* Format n bytes as "1.5 MiB" into buf. */
const char *mmp_cli_bytes(double n, char *buf, size_t size);
/* The chat template of a model: tokenizer.chat_template of a GGUF file or chat_template of an
 * HF folder's tokenizer_config.json (malloc'ed copy; NULL when there is none or the model
 * cannot be opened; the last error is cleared). */
char *mmp_cli_model_template(const char *path);
/* Strict number parsing: the whole string must be a number in [lo, hi]; false otherwise
 * (*out untouched). */
/* A progress bar on stderr for long work (diffusion steps):
 *   [##########....................] 4/12 steps, 0.52 s/step, 4.2 s left
 * update() redraws it in place; done() ends the line if one was drawn. Quiet: draws nothing. */
typedef struct mmp_cli_bar {
    bool quiet, drawn;
    double t0;
    int64_t last_done;
} mmp_cli_bar;
void mmp_cli_bar_init(mmp_cli_bar *b, bool quiet);
void mmp_cli_bar_update(mmp_cli_bar *b, const char *what, int64_t done, int64_t total);
void mmp_cli_bar_done(mmp_cli_bar *b);

bool mmp_cli_parse_long(const char *s, long lo, long hi, long *out);
bool mmp_cli_parse_float(const char *s, float lo, float hi, float *out);

#endif
