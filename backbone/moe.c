/* Mixture-of-Experts FFN: router, top-k routing, the experts, the shared expert.
 *
 *   x       [n_embd, n]
 *   logits  = router x                          [n_expert, n]   (what HF returns as router_logits)
 *   probs   = softmax(logits)                   over all experts
 *   ids     = top_k(probs, k)                   I32 [k, n]
 *   w       = probs[ids]                        [1, k, n]; mixtral: w /= sum(w) (norm_topk_prob)
 *   y_j     = down_j(silu(gate_j x) * up_j x)   for the k chosen experts j: mmp_mul_mat_id groups
 *                                               the tokens per expert, so decode reads only the
 *                                               k chosen experts and prefill runs one GEMM per
 *                                               used expert
 *   out     = sum_j w_j y_j                     [n_embd, n]
 *   qwen2_moe: out += sigmoid(shexp_gate x) * down_s(silu(gate_s x) * up_s x)
 */
#include "llm-impl.h"

mmp_tensor *mmp__build_moe_ffn(mmp_graph *g, const mmp_llm *m, const mmp__llm_layer *L, int il, mmp_tensor *x,
                               mmp_tensor **router_out) {
    const mmp_llm_hparams *h = &m->hp;
    if (!x) return NULL;
    const int64_t n = x->ne[1], E = h->n_embd, X = h->n_expert, k = h->n_expert_used;

    mmp_tensor *logits = mmp_mul_mat(g, mmp__w_tensor(g, &L->router, "ffn_gate_inp", il), x);   /* [X, n] */
    if (router_out) *router_out = mmp_set_output(mmp_set_name(logits, "router_logits.%d", il));
    mmp_tensor *probs = mmp_softmax(g, logits);                                                /* [X, n] */
    mmp_tensor *ids = mmp_top_k(g, probs, (int)k);                                             /* [k, n] */
    /* weights of the chosen experts: rows of probs viewed as [1, X, n] picked by ids -> [1, k, n] */
    mmp_tensor *w = mmp_get_rows(g, mmp_reshape_3d(g, probs, 1, X, n), ids);
    if (m->norm_topk) {
        mmp_tensor *w2 = mmp_reshape_2d(g, w, k, n);
        w2 = mmp_div(g, w2, mmp_sum_rows(g, w2));                                              /* [k, n] / [1, n] */
        w = mmp_reshape_3d(g, w2, 1, k, n);
    }

    mmp_tensor *xe = mmp_reshape_3d(g, x, E, 1, n);                                            /* same input per slot */
    mmp_tensor *gt = mmp_mul_mat_id(g, mmp__w_tensor(g, &L->gate_exps, "ffn_gate_exps", il), xe, ids); /* [F, k, n] */
    mmp_tensor *up = mmp_mul_mat_id(g, mmp__w_tensor(g, &L->up_exps, "ffn_up_exps", il), xe, ids);
    mmp_tensor *act = mmp_swiglu(g, gt, up);
    mmp_tensor *y = mmp_mul_mat_id(g, mmp__w_tensor(g, &L->down_exps, "ffn_down_exps", il), act, ids); /* [E, k, n] */
    y = mmp_mul(g, y, w);                                                                      /* scale each slot */
    /* sum over the k slots: [E, k, n] -> [k, E, n] -> sum_rows -> [1, E, n] -> [E, n] */
    mmp_tensor *out = mmp_sum_rows(g, mmp_cont(g, mmp_permute(g, y, 1, 0, 2, 3)));
    out = mmp_reshape_2d(g, out, E, n);

    if (L->gate_shexp.data) {
        mmp_tensor *sg = mmp_mul_mat(g, mmp__w_tensor(g, &L->gate_shexp, "ffn_gate_shexp", il), x);
        mmp_tensor *su = mmp_mul_mat(g, mmp__w_tensor(g, &L->up_shexp, "ffn_up_shexp", il), x);
        mmp_tensor *sd = mmp_mul_mat(g, mmp__w_tensor(g, &L->down_shexp, "ffn_down_shexp", il), mmp_swiglu(g, sg, su));
        mmp_tensor *gate = mmp_sigmoid(g, mmp_mul_mat(g, mmp__w_tensor(g, &L->shexp_gate, "ffn_gate_inp_shexp", il), x)); /* [1, n] */
        out = mmp_add(g, out, mmp_mul(g, sd, gate));
    }
    return out;
}
