/* Any-to-any turns (include/mmpipe/anytoany.h): the LLM generates, the signal tokens' hidden
 * states (after the final norm, at the positions where those tokens are fed in) go through the
 * output projector into the CFG sampling loop, the VAE decodes the final latents.
 *
 * Generation keeps one token "pending": a token is decided (forced or sampled), reported, then
 * fed in with mmp_llm_batch.hidden so its own hidden state is known; the logits of that pass
 * decide the next one. The last decided token is fed in too (the KV cache then holds the whole
 * turn, and a closing signal token gets its hidden state). */
#include "mmpipe/anytoany.h"
#include "mmpipe/store.h"
#include "mmpipe/tokenizer.h"
#include "store-impl.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The LLM and the output projector are read-only: they come from the store (shared by every
 * session on it, under the tags pipelines use too) or are loaded privately through the same
 * refs. The context, UNet and VAE keep per-call state: each session has its own; with a store
 * the UNet and VAE are built on the store's mapping of their files (unet_mf / vae_mf, one
 * reference each, given back on free). */
struct mmp_a2a {
    mmp__model_ref llm_ref, proj_ref;
    const mmp_llm *llm;
    mmp_llm_ctx *ctx;
    const mmp_outproj *proj;
    mmp_unet *unet;
    mmp_vae *vae;
    mmp_store *store;
    const mmp_modelfile *unet_mf, *vae_mf;
    int32_t n_threads;
    int32_t n_signal;
    int32_t signal[MMP_A2A_MAX_SIGNAL];
    bool add_input_embeds;
};

mmp_a2a_params mmp_a2a_params_default(void) {
    mmp_a2a_params p;
    memset(&p, 0, sizeof p);
    p.n_threads = 1;
    p.proj = mmp_outproj_params_default();
    return p;
}

mmp_a2a_turn_params mmp_a2a_turn_params_default(void) {
    mmp_a2a_turn_params p;
    memset(&p, 0, sizeof p);
    p.max_new_tokens = 256;
    p.sampling = mmp_sampler_params_greedy();
    p.complete_signal = true;
    p.eos_id = -1;
    p.sampler = MMP_SCHED_DDIM;
    p.steps = 6;
    p.cfg_scale = 7.5f;
    p.width = p.height = 512;
    return p;
}

void mmp_a2a_free(mmp_a2a *a) {
    if (!a) return;
    mmp_llm_ctx_free(a->ctx);
    mmp__model_put(&a->llm_ref);
    mmp__model_put(&a->proj_ref);
    mmp_unet_free(a->unet);
    mmp_vae_free(a->vae);
    mmp_store_close(a->store, a->unet_mf);
    mmp_store_close(a->store, a->vae_mf);
    free(a);
}

/* Signal ids from the caller or "[IMGk]" in the vocabulary. */
static enum mmp_status find_signal(mmp_a2a *a, const mmp_a2a_params *p) {
    int32_t n_vocab = mmp_llm_get_hparams(a->llm)->n_vocab;
    if (p->n_signal < 0 || p->n_signal > MMP_A2A_MAX_SIGNAL)
        return mmp__error(MMP_ERR_INVALID_ARG, "any-to-any: n_signal %d, expected 1..%d", (int)p->n_signal, MMP_A2A_MAX_SIGNAL);
    if (p->signal_ids) {
        if (p->n_signal < 1) return mmp__error(MMP_ERR_INVALID_ARG, "any-to-any: signal_ids given with n_signal %d", (int)p->n_signal);
        for (int32_t i = 0; i < p->n_signal; i++) {
            if (p->signal_ids[i] < 0 || p->signal_ids[i] >= n_vocab)
                return mmp__error(MMP_ERR_INVALID_ARG, "any-to-any: signal token %d is id %d, outside the vocabulary of %s (%d)", (int)i,
                                  (int)p->signal_ids[i], p->llm_path, (int)n_vocab);
            for (int32_t j = 0; j < i; j++)
                if (p->signal_ids[j] == p->signal_ids[i])
                    return mmp__error(MMP_ERR_INVALID_ARG, "any-to-any: signal tokens %d and %d are both id %d", (int)j, (int)i,
                                      (int)p->signal_ids[i]);
            a->signal[i] = p->signal_ids[i];
        }
        a->n_signal = p->n_signal;
        return MMP_OK;
    }
    const mmp_tokenizer *tok = mmp_llm_get_tokenizer(a->llm);
    if (!tok)
        return mmp__error(MMP_ERR_NOT_FOUND, "any-to-any: %s has no tokenizer to look up the signal tokens [IMG0].. in: give signal_ids",
                          p->llm_path);
    int32_t want = p->n_signal > 0 ? p->n_signal : MMP_A2A_MAX_SIGNAL;
    int32_t n = 0;
    for (; n < want; n++) {
        char name[32];
        int len = snprintf(name, sizeof name, "[IMG%d]", (int)n);
        mmp_token id = mmp_tokenizer_find(tok, name, (size_t)len);
        if (id == MMP_TOKEN_NULL || id < 0 || id >= n_vocab) {
            if (p->n_signal > 0)
                return mmp__error(MMP_ERR_NOT_FOUND, "any-to-any: signal token '%s' is not in the vocabulary of %s", name, p->llm_path);
            break;
        }
        a->signal[n] = id;
    }
    if (n == 0) return mmp__error(MMP_ERR_NOT_FOUND, "any-to-any: no signal token '[IMG0]' in the vocabulary of %s", p->llm_path);
    a->n_signal = n;
    return MMP_OK;
}

mmp_a2a *mmp_a2a_load(const mmp_a2a_params *p) {
    if (!p || !p->llm_path || !p->projector_path || !p->unet_path || !p->vae_path)
        return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_a2a_load: the LLM, projector, UNet and VAE paths are all required");
    mmp_a2a *a = mmp__calloc(1, sizeof *a);
    if (!a) return NULL;
    a->n_threads = p->n_threads > 0 ? p->n_threads : 1;
    a->add_input_embeds = p->add_input_embeds;
    /* scope NULL: only read-only models are taken from the store */
    mmp_stage_params sp = mmp_stage_params_default();
    sp.store = p->store;
    if (mmp__llm_ref(&sp, p->llm_path, &a->llm_ref) != MMP_OK) goto fail;
    a->llm = a->llm_ref.model;
    mmp_llm_ctx_params cp = mmp_llm_ctx_params_default();
    cp.n_ctx = p->n_ctx;
    cp.n_threads = a->n_threads;
    if (!(a->ctx = mmp_llm_ctx_new(a->llm, &cp))) goto fail;
    if (mmp__outproj_ref(&sp, p->projector_path, &p->proj, &a->proj_ref) != MMP_OK) goto fail;
    a->proj = a->proj_ref.model;
    if (p->store) {
        a->store = p->store;
        if (!(a->unet_mf = mmp_store_open(p->store, p->unet_path))) { mmp__error_prefix("unet: "); goto fail; }
        if (!(a->unet = mmp_unet_load_modelfile(a->unet_mf, a->n_threads))) goto fail;
        if (!(a->vae_mf = mmp_store_open(p->store, p->vae_path))) { mmp__error_prefix("vae: "); goto fail; }
        if (!(a->vae = mmp_vae_load_modelfile(a->vae_mf, a->n_threads))) goto fail;
    } else {
        if (!(a->unet = mmp_unet_load(p->unet_path, a->n_threads))) goto fail;
        if (!(a->vae = mmp_vae_load(p->vae_path, a->n_threads))) goto fail;
    }
    const mmp_llm_hparams *hp = mmp_llm_get_hparams(a->llm);
    const mmp_outproj_hparams *ph = mmp_outproj_get_hparams(a->proj);
    if (ph->in_dim != hp->n_embd) {
        mmp__error(MMP_ERR_SHAPE, "any-to-any: the output projector %s takes %d-wide hidden states but the LLM %s has hidden size %d",
                   p->projector_path, (int)ph->in_dim, p->llm_path, (int)hp->n_embd);
        goto fail;
    }
    if (ph->out_dim != mmp_unet_cross_attention_dim(a->unet)) {
        mmp__error(MMP_ERR_SHAPE, "any-to-any: the output projector %s makes %d-wide conditioning but the UNet %s has cross_attention_dim %d",
                   p->projector_path, (int)ph->out_dim, p->unet_path, mmp_unet_cross_attention_dim(a->unet));
        goto fail;
    }
    if (mmp_unet_in_channels(a->unet) != mmp_vae_latent_channels(a->vae) || !mmp_vae_has_decoder(a->vae)) {
        mmp__error(MMP_ERR_SHAPE, "any-to-any: the UNet %s works on %d latent channels but the VAE %s decodes %d%s", p->unet_path,
                   mmp_unet_in_channels(a->unet), p->vae_path, mmp_vae_latent_channels(a->vae),
                   mmp_vae_has_decoder(a->vae) ? "" : " (and has no decoder)");
        goto fail;
    }
    if (find_signal(a, p) != MMP_OK) goto fail;
    return a;
fail:
    mmp_a2a_free(a);
    return NULL;
}

const mmp_llm *mmp_a2a_llm(const mmp_a2a *a) { return a ? a->llm : NULL; }
mmp_unet *mmp_a2a_unet(mmp_a2a *a) { return a ? a->unet : NULL; }
mmp_vae *mmp_a2a_vae(mmp_a2a *a) { return a ? a->vae : NULL; }
int32_t mmp_a2a_n_signal(const mmp_a2a *a) { return a ? a->n_signal : 0; }
const int32_t *mmp_a2a_signal_ids(const mmp_a2a *a) { return a ? a->signal : NULL; }

enum mmp_status mmp_a2a_reset(mmp_a2a *a) {
    if (!a) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_a2a_reset: NULL");
    return mmp_llm_ctx_truncate(a->ctx, 0);
}

void mmp_a2a_result_free(mmp_a2a_result *r) {
    if (!r) return;
    free(r->text);
    free(r->tokens);
    free(r->signal_hidden);
    free(r->conditioning);
    free(r->latents);
    free(r->image01);
    memset(r, 0, sizeof *r);
}

static int signal_index(const mmp_a2a *a, int32_t tok) {
    for (int32_t i = 0; i < a->n_signal; i++)
        if (a->signal[i] == tok) return (int)i;
    return -1;
}

/* ---- the image half ---- */

enum mmp_status mmp_a2a_generate_image(mmp_a2a *a, const float *signal_hidden, int32_t n_signal, const mmp_a2a_turn_params *p,
                                       mmp_a2a_result *out) {
    if (!a || !signal_hidden || !p || !out || n_signal < 1)
        return mmp__error(MMP_ERR_INVALID_ARG, "mmp_a2a_generate_image: NULL or empty argument");
    const mmp_outproj_hparams *ph = mmp_outproj_get_hparams(a->proj);
    int32_t n_embd = ph->in_dim, T = ph->n_queries, D = ph->out_dim;
    int C = mmp_unet_in_channels(a->unet), sc = mmp_vae_scale(a->vae), mult = sc * mmp_unet_size_multiple(a->unet);
    if (p->width < 1 || p->height < 1 || p->width > 8192 || p->height > 8192 || p->width % mult || p->height % mult)
        return mmp__error(MMP_ERR_INVALID_ARG, "any-to-any: image size %dx%d (WxH) must be positive multiples of %d (at most 8192)",
                          (int)p->width, (int)p->height, mult);
    if (p->steps < 1 || p->steps > 1000) return mmp__error(MMP_ERR_INVALID_ARG, "any-to-any: %d denoising steps, expected 1..1000", (int)p->steps);
    if (!p->sched && (p->sampler < 0 || p->sampler >= MMP_SCHED_COUNT))
        return mmp__error(MMP_ERR_INVALID_ARG, "any-to-any: sampler %d is not a scheduler kind", (int)p->sampler);
    int h = p->height / sc, w = p->width / sc;
    size_t nl = (size_t)C * (size_t)h * (size_t)w, npix = (size_t)3 * (size_t)p->width * (size_t)p->height;
    size_t nh = (size_t)n_signal * (size_t)n_embd, nc = (size_t)T * (size_t)D;
    enum mmp_status st = MMP_OK;
    float *hid = mmp__malloc(nh * sizeof(float)), *cond = mmp__malloc(nc * sizeof(float)), *zeros = NULL, *emb = NULL, *noise = NULL;
    float *lat = mmp__malloc(nl * sizeof(float)), *img = mmp__malloc(npix * sizeof(float));
    mmp_scheduler *sched = NULL;
    if (!hid || !cond || !lat || !img) { st = MMP_ERR_NOMEM; goto done; }
    memcpy(hid, signal_hidden, nh * sizeof(float));
    const float *add = NULL;
    if (a->add_input_embeds) {
        /* the embeddings of the signal ids in group order */
        if (n_signal != a->n_signal) {
            st = mmp__error(MMP_ERR_INVALID_ARG, "any-to-any: %d signal hidden states for a group of %d", (int)n_signal, (int)a->n_signal);
            goto done;
        }
        if (!(emb = mmp__malloc(nh * sizeof(float)))) { st = MMP_ERR_NOMEM; goto done; }
        if ((st = mmp_llm_embed_tokens(a->llm, a->signal, n_signal, emb)) != MMP_OK) goto done;
        add = emb;
    }
    if ((st = mmp_outproj_run(a->proj, hid, add, n_signal, cond, a->n_threads, p->abort_cb, p->cb_user)) != MMP_OK) {
        mmp__error_prefix("any-to-any: output projector: ");
        goto done;
    }
    mmp_sched_params sp = p->sched ? *p->sched : mmp_sched_params_default(p->sampler);
    if (!p->sched) sp.seed = p->seed;
    if (!(sched = mmp_scheduler_new(&sp))) { st = MMP_ERR_INVALID_ARG; goto done; }
    const float *x0 = p->latents_init, *unc = p->uncond;
    if (!x0) {
        if (!(noise = mmp__malloc(nl * sizeof(float)))) { st = MMP_ERR_NOMEM; goto done; }
        mmp_randn(p->seed, noise, (int64_t)nl);
        x0 = noise;
    }
    if (!unc && p->cfg_scale > 1.0f) {
        /* NExT-GPT's negative conditioning: a zero context of the same shape */
        if (!(zeros = mmp__calloc(nc, sizeof(float)))) { st = MMP_ERR_NOMEM; goto done; }
        unc = zeros;
    }
    mmp_txt2img_params tp = mmp_txt2img_params_default();
    tp.width = p->width;
    tp.height = p->height;
    tp.steps = p->steps;
    tp.cfg_scale = p->cfg_scale;
    tp.progress = p->progress;
    tp.abort_cb = p->abort_cb;
    tp.cb_user = p->cb_user;
    if ((st = mmp_txt2img_sample(a->unet, sched, a->vae, &tp, T, D, cond, unc, x0, lat, img)) != MMP_OK) {
        mmp__error_prefix("any-to-any: sampling: ");
        goto done;
    }
    out->has_image = true;
    out->n_signal = n_signal;
    out->n_embd = n_embd;
    out->signal_hidden = hid; hid = NULL;
    out->t_ctx = T;
    out->d_ctx = D;
    out->conditioning = cond; cond = NULL;
    out->lat_c = C; out->lat_h = h; out->lat_w = w;
    out->latents = lat; lat = NULL;
    out->width = p->width; out->height = p->height;
    out->image01 = img; img = NULL;
done:
    mmp_scheduler_free(sched);
    free(hid); free(cond); free(zeros); free(emb); free(noise); free(lat); free(img);
    return st;
}

/* ---- the turn ---- */

/* Text of the response: the tokenizer's detokenization of the non-signal tokens. */
static enum mmp_status response_text(const mmp_a2a *a, const int32_t *toks, int32_t n, char **out) {
    const mmp_tokenizer *tok = mmp_llm_get_tokenizer(a->llm);
    int32_t *keep = mmp__malloc(((size_t)n + 1) * sizeof(int32_t));
    if (!keep) return MMP_ERR_NOMEM;
    size_t k = 0;
    for (int32_t i = 0; i < n; i++)
        if (signal_index(a, toks[i]) < 0) keep[k++] = toks[i];
    enum mmp_status st = MMP_OK;
    if (!tok || k == 0) {
        *out = mmp__calloc(1, 1);
        if (!*out) st = MMP_ERR_NOMEM;
    } else {
        st = mmp_tokenizer_decode(tok, keep, k, false, false, out, NULL);
    }
    free(keep);
    return st;
}

/* Does the queue already go on with [IMG1]..[IMGn-1] (a forced full group)? */
static bool queued_group(const mmp_a2a *a, const int32_t *q, int32_t n) {
    if (n < a->n_signal - 1) return false;
    for (int32_t k = 1; k < a->n_signal; k++)
        if (q[k - 1] != a->signal[k]) return false;
    return true;
}

static void report_token(const mmp_a2a *a, const mmp_a2a_turn_params *p, int32_t id, bool *stop) {
    if (!p->on_token) return;
    const mmp_tokenizer *tok = mmp_llm_get_tokenizer(a->llm);
    char buf[256];
    int64_t len = 0;
    if (tok && signal_index(a, id) < 0) {
        len = mmp_tokenizer_token_to_piece(tok, id, false, buf, sizeof buf);
        if (len < 0 || len > (int64_t)sizeof buf) len = 0;  /* (pieces longer than 256 bytes are not streamed) */
    }
    if (!p->on_token(id, buf, (size_t)len, p->cb_user)) *stop = true;
}

/* prompt: either ids or an mm prompt. */
static enum mmp_status turn_common(mmp_a2a *a, const int32_t *ids, int32_t n_ids, const mmp_mm_prompt *mm, const mmp_a2a_turn_params *p,
                                   mmp_a2a_result *out) {
    if (!a || !p || !out) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_a2a_turn: NULL argument");
    memset(out, 0, sizeof *out);
    if (p->max_new_tokens < 0 || p->n_forced < 0 || (p->n_forced > 0 && !p->forced))
        return mmp__error(MMP_ERR_INVALID_ARG, "any-to-any: max_new_tokens %d / n_forced %d", (int)p->max_new_tokens, (int)p->n_forced);
    const mmp_llm_hparams *hp = mmp_llm_get_hparams(a->llm);
    const mmp_tokenizer *tok = mmp_llm_get_tokenizer(a->llm);
    int32_t V = hp->n_vocab, E = hp->n_embd, max_new = p->max_new_tokens;
    int32_t n_prompt = mm ? mmp_mm_prompt_n_pos(mm) : n_ids;
    if (n_prompt < 1) return mmp__error(MMP_ERR_INVALID_ARG, "any-to-any: empty prompt");
    int32_t room = mmp_llm_ctx_n_ctx(a->ctx) - mmp_llm_ctx_n_past(a->ctx);
    if (n_prompt > room)
        return mmp__error(MMP_ERR_LIMIT, "any-to-any: a prompt of %d positions does not fit the %d left in the context", (int)n_prompt, (int)room);
    if (max_new > room - n_prompt) max_new = room - n_prompt;
    enum mmp_status st = MMP_OK;
    float *logits = mmp__malloc((size_t)V * sizeof(float)), *hid = mmp__malloc((size_t)E * sizeof(float));
    float *sig = mmp__calloc((size_t)a->n_signal * (size_t)E, sizeof(float)), *embd = NULL;
    int32_t *toks = mmp__malloc(((size_t)max_new + 1) * sizeof(int32_t));
    int32_t *queue = mmp__malloc(((size_t)p->n_forced + MMP_A2A_MAX_SIGNAL + 1) * sizeof(int32_t));
    mmp_sampler *smp = mmp_sampler_new(V, &p->sampling);
    bool seen[MMP_A2A_MAX_SIGNAL] = { 0 };
    int32_t n_seen = 0, n_tok = 0, q_head = 0, q_len = 0;
    if (!logits || !hid || !sig || !toks || !queue || !smp) { st = smp ? MMP_ERR_NOMEM : MMP_ERR_INVALID_ARG; goto done; }
    if (p->n_forced > 0) memcpy(queue, p->forced, (size_t)p->n_forced * sizeof(int32_t));
    q_len = p->n_forced;
    for (int32_t i = 0; i < q_len; i++)
        if (queue[i] < 0 || queue[i] >= V) { st = mmp__error(MMP_ERR_INVALID_ARG, "any-to-any: forced token %d is id %d, outside 0..%d", (int)i, (int)queue[i], (int)V - 1); goto done; }

    /* prefill: logits of the last prompt position */
    if (mm) {
        const int32_t nb = 512;
        if (!(embd = mmp__malloc((size_t)nb * (size_t)E * sizeof(float)))) { st = MMP_ERR_NOMEM; goto done; }
        for (int32_t from = 0; from < n_prompt; from += nb) {
            int32_t n = n_prompt - from < nb ? n_prompt - from : nb;
            if ((st = mmp_mm_prompt_embed(mm, a->llm, from, n, embd)) != MMP_OK) goto done;
            mmp_llm_batch b = { .n = n, .embd = embd, .logits = from + n == n_prompt ? logits : NULL };
            if ((st = mmp_llm_decode(a->ctx, &b)) != MMP_OK) goto done;
        }
    } else {
        for (int32_t i = 0; i < n_ids; i++)
            if (ids[i] < 0 || ids[i] >= V) { st = mmp__error(MMP_ERR_INVALID_ARG, "any-to-any: prompt token %d is id %d, outside 0..%d", (int)i, (int)ids[i], (int)V - 1); goto done; }
        mmp_llm_batch b = { .n = n_ids, .tokens = ids, .logits = logits };
        if ((st = mmp_llm_decode(a->ctx, &b)) != MMP_OK) goto done;
    }

    bool stop = false;
    while (!stop && n_tok < max_new) {
        if (p->abort_cb && p->abort_cb(p->cb_user)) { st = mmp__error(MMP_ERR_ABORTED, "any-to-any: aborted after %d tokens", (int)n_tok); goto done; }
        int32_t id;
        if (q_head < q_len) id = queue[q_head++];
        else {
            id = mmp_sampler_sample(smp, logits);
            if (id < 0) { st = (enum mmp_status)id; goto done; }
        }
        mmp_sampler_accept(smp, id);
        if ((tok && mmp_tokenizer_is_eog(tok, id)) || (p->eos_id >= 0 && id == p->eos_id)) break;
        toks[n_tok++] = id;
        int si = signal_index(a, id);
        if (si == 0 && p->complete_signal && n_seen == 0 && !queued_group(a, queue + q_head, q_len - q_head)) {
            /* GILL / NExT-GPT: [IMG0] is followed by the rest of the group, forced, ahead of
             * whatever else was queued */
            int32_t nq = q_len - q_head, add = a->n_signal - 1;
            memmove(queue + add, queue + q_head, (size_t)nq * sizeof(int32_t));
            for (int32_t k = 0; k < add; k++) queue[k] = a->signal[k + 1];
            q_head = 0;
            q_len = nq + add;
        }
        report_token(a, p, id, &stop);
        /* feed it in: its own hidden state (signal tokens) and the next logits */
        mmp_llm_batch b = { .n = 1, .tokens = &id, .logits = logits, .hidden = hid };
        if ((st = mmp_llm_decode(a->ctx, &b)) != MMP_OK) goto done;
        if (si >= 0 && !seen[si]) {
            memcpy(sig + (size_t)si * E, hid, (size_t)E * sizeof(float));
            seen[si] = true;
            n_seen++;
            if (n_seen == a->n_signal && p->stop_after_image) stop = true;
        }
        if (p->progress) p->progress("tokens", n_tok, max_new, p->cb_user);
    }
    if ((st = response_text(a, toks, n_tok, &out->text)) != MMP_OK) goto done;
    if (n_seen == a->n_signal) {
        if ((st = mmp_a2a_generate_image(a, sig, a->n_signal, p, out)) != MMP_OK) goto done;
    }
    out->tokens = toks; toks = NULL;
    out->n_tokens = n_tok;
done:
    if (st != MMP_OK) mmp_a2a_result_free(out);
    mmp_sampler_free(smp);
    free(logits); free(hid); free(sig); free(embd); free(toks); free(queue);
    return st;
}

enum mmp_status mmp_a2a_turn(mmp_a2a *a, const int32_t *prompt, int32_t n_prompt, const mmp_a2a_turn_params *p, mmp_a2a_result *out) {
    if (!prompt && n_prompt > 0) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_a2a_turn: NULL prompt");
    return turn_common(a, prompt, n_prompt, NULL, p, out);
}

enum mmp_status mmp_a2a_turn_mm(mmp_a2a *a, const mmp_mm_prompt *prompt, const mmp_a2a_turn_params *p, mmp_a2a_result *out) {
    if (!prompt) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_a2a_turn_mm: NULL prompt");
    return turn_common(a, NULL, 0, prompt, p, out);
}
