/* Sampler and stop conditions: greedy/ties, limits that must reduce to greedy, seeded
 * reproducibility, draw counts against the softmax (chi-square), each filter against a
 * scalar reference of its definition, the repetition penalty and its window, stop strings
 * split across tokens. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int argmax_ref(const float *l, int n) {
    int b = 0;
    for (int i = 1; i < n; i++) if (l[i] > l[b]) b = i;
    return b;
}

static void test_greedy_and_ties(void **state) {
    (void)state;
    mmp_sampler_params p = mmp_sampler_params_greedy();
    mmp_sampler *s = mmp_sampler_new(6, &p);
    assert_non_null(s);
    float l[6] = { 0.5f, 2.0f, -1.0f, 2.0f, 1.9f, 2.0f };
    assert_int_equal(mmp_sampler_sample(s, l), 1); /* three-way tie at 2.0 -> lowest id */
    float l2[6] = { NAN, -INFINITY, -3.0f, NAN, -2.5f, -INFINITY };
    assert_int_equal(mmp_sampler_sample(s, l2), 4); /* NaN and -inf are never chosen */
    float l3[3] = { NAN, -INFINITY, NAN };
    mmp_sampler *s3 = mmp_sampler_new(3, &p);
    assert_true(mmp_sampler_sample(s3, l3) < 0);
    assert_true(strlen(mmp_last_error()) > 0);
    mmp_sampler_free(s3);
    mmp_sampler_free(s);
}

/* top-k 1, a tiny top-p and temperature -> 0 must all give the arg-max on random logits. */
static void test_limits_are_greedy(void **state) {
    (void)state;
    enum { V = 300 };
    float l[V];
    mmp_sampler_params pk = mmp_sampler_params_default(), pp = pk, pt = pk;
    pk.top_k = 1; pk.top_p = 1.0f; pk.min_p = 0.0f; pk.temperature = 1.5f;
    pp.top_k = 0; pp.top_p = 1e-6f; pp.min_p = 0.0f; pp.temperature = 1.0f;
    /* T = 1e-4: any other id has probability <= V * exp(-gap / T); the logits below keep a
     * gap >= 0.01 to the max, so that bound is 300 * exp(-100) — never seen. */
    pt.top_k = 0; pt.top_p = 1.0f; pt.min_p = 0.0f; pt.temperature = 1e-4f;
    mmp_sampler *sk = mmp_sampler_new(V, &pk), *sp = mmp_sampler_new(V, &pp), *stt = mmp_sampler_new(V, &pt);
    assert_non_null(sk); assert_non_null(sp); assert_non_null(stt);
    for (int trial = 0; trial < 200; trial++) {
        mmpt_rand_fill(l, V, 1000 + (uint64_t)trial, -5.0f, 5.0f);
        int b = argmax_ref(l, V);
        for (int i = 0; i < V; i++) if (i != b && l[i] > l[b] - 0.01f) l[i] = l[b] - 0.01f;
        assert_int_equal(mmp_sampler_sample(sk, l), b);
        assert_int_equal(mmp_sampler_sample(sp, l), b);
        assert_int_equal(mmp_sampler_sample(stt, l), b);
    }
    mmp_sampler_free(sk); mmp_sampler_free(sp); mmp_sampler_free(stt);
}

static void test_seed_repeats(void **state) {
    (void)state;
    enum { V = 50, N = 500 };
    float l[V];
    mmpt_rand_fill(l, V, 7, -2.0f, 2.0f);
    mmp_sampler_params p = mmp_sampler_params_default();
    p.top_k = 0; p.top_p = 1.0f; p.min_p = 0.0f; p.temperature = 1.0f; p.seed = 42;
    mmp_sampler *a = mmp_sampler_new(V, &p), *b = mmp_sampler_new(V, &p);
    p.seed = 43;
    mmp_sampler *c = mmp_sampler_new(V, &p);
    int ids[N], same_c = 0;
    for (int i = 0; i < N; i++) {
        ids[i] = mmp_sampler_sample(a, l);
        int ib = mmp_sampler_sample(b, l), ic = mmp_sampler_sample(c, l);
        assert_int_equal(ids[i], ib);
        same_c += ids[i] == ic;
    }
    assert_true(same_c < N); /* another seed gives another sequence */
    mmp_sampler_reset(a);    /* reset restarts the PRNG from the seed */
    for (int i = 0; i < N; i++) assert_int_equal(mmp_sampler_sample(a, l), ids[i]);
    mmp_sampler_free(a); mmp_sampler_free(b); mmp_sampler_free(c);
}

/* Counts over N draws against expected N * p_i: Pearson's chi-square with k-1 degrees of
 * freedom. With 9 categories (8 dof) the 1e-4 upper quantile of chi2(8) is 31.83: a correct
 * sampler fails this with probability 1e-4 for a random seed (and the seed is fixed, so the
 * test is deterministic); a sampler that is off by 2% of probability in a category with
 * p = 0.2 over 200000 draws adds ~ (800)^2/40000 = 16 per such category. */
static double chi2_of(const int *cnt, const double *p, int k, int n) {
    double x = 0.0;
    for (int i = 0; i < k; i++) {
        if (p[i] == 0.0) { if (cnt[i]) return 1e30; continue; }
        double e = n * p[i];
        x += (cnt[i] - e) * (cnt[i] - e) / e;
    }
    return x;
}

static void softmax_ref(const float *l, int n, float t, double *p) {
    double mx = -INFINITY, s = 0.0;
    for (int i = 0; i < n; i++) if (l[i] / t > mx) mx = l[i] / t;
    for (int i = 0; i < n; i++) { p[i] = exp(l[i] / t - mx); s += p[i]; }
    for (int i = 0; i < n; i++) p[i] /= s;
}

static void test_counts_follow_softmax(void **state) {
    (void)state;
    enum { V = 9, N = 200000 };
    const float l[V] = { 1.0f, 0.2f, -0.5f, 2.0f, 1.5f, 0.0f, -1.0f, 0.7f, 1.1f };
    const float temps[2] = { 1.0f, 0.7f };
    for (int ti = 0; ti < 2; ti++) {
        mmp_sampler_params p = mmp_sampler_params_default();
        p.top_k = 0; p.top_p = 1.0f; p.min_p = 0.0f; p.temperature = temps[ti]; p.seed = 1234 + (uint64_t)ti;
        mmp_sampler *s = mmp_sampler_new(V, &p);
        int cnt[V] = { 0 };
        for (int i = 0; i < N; i++) {
            int id = mmp_sampler_sample(s, l);
            assert_true(id >= 0 && id < V);
            cnt[id]++;
        }
        double pr[V];
        softmax_ref(l, V, temps[ti], pr);
        double x = chi2_of(cnt, pr, V, N);
        if (x > 31.83) fail_msg("T=%g: chi-square %.2f > 31.83 (8 dof, p = 1e-4)", (double)temps[ti], x);
        mmp_sampler_free(s);
    }
}

/* Each filter against its definition, through mmp_sampler_probs, and draws through top-k
 * (5 survivors: 4 dof, 1e-4 quantile 23.51). */
static void test_filters(void **state) {
    (void)state;
    enum { V = 9, N = 100000 };
    const float l[V] = { 1.0f, 0.2f, -0.5f, 2.0f, 1.5f, 0.0f, -1.0f, 0.7f, 1.1f };
    double full[V];
    softmax_ref(l, V, 1.0f, full);
    /* sorted ids by logit: 3 (2.0), 4 (1.5), 8 (1.1), 0 (1.0), 7 (0.7), 1, 5, 2, 6 */
    const int order[V] = { 3, 4, 8, 0, 7, 1, 5, 2, 6 };
    float probs[V];
    for (int k = 1; k <= V; k++) {
        mmp_sampler_params p = mmp_sampler_params_default();
        p.top_k = k; p.top_p = 1.0f; p.min_p = 0.0f; p.temperature = 1.0f;
        mmp_sampler *s = mmp_sampler_new(V, &p);
        assert_int_equal(mmp_sampler_probs(s, l, probs), MMP_OK);
        double mass = 0.0;
        for (int i = 0; i < k; i++) mass += full[order[i]];
        for (int i = 0; i < V; i++) {
            double want = 0.0;
            for (int j = 0; j < k; j++) if (order[j] == i) want = full[i] / mass;
            assert_true(fabs(probs[i] - want) < 1e-6);
        }
        if (k == 5) {
            int cnt[V] = { 0 };
            for (int i = 0; i < N; i++) cnt[mmp_sampler_sample(s, l)]++;
            double pr[V];
            for (int i = 0; i < V; i++) pr[i] = probs[i];
            double x = chi2_of(cnt, pr, V, N);
            if (x > 23.51) fail_msg("top-k 5: chi-square %.2f > 23.51 (4 dof, p = 1e-4)", x);
        }
        mmp_sampler_free(s);
    }
    /* top-p: smallest prefix of the sorted probabilities whose mass reaches p */
    const float tops[4] = { 0.3f, 0.5f, 0.8f, 0.99f };
    for (int t = 0; t < 4; t++) {
        mmp_sampler_params p = mmp_sampler_params_default();
        p.top_k = 0; p.top_p = tops[t]; p.min_p = 0.0f; p.temperature = 1.0f;
        mmp_sampler *s = mmp_sampler_new(V, &p);
        assert_int_equal(mmp_sampler_probs(s, l, probs), MMP_OK);
        int keep = 0;
        double acc = 0.0;
        while (keep < V && acc < tops[t]) acc += full[order[keep++]];
        for (int i = 0; i < V; i++) {
            double want = 0.0;
            for (int j = 0; j < keep; j++) if (order[j] == i) want = full[i] / acc;
            assert_true(fabs(probs[i] - want) < 1e-6);
        }
        mmp_sampler_free(s);
    }
    /* min-p: keep p_i >= min_p * p_max */
    const float minps[3] = { 0.1f, 0.4f, 0.9f };
    for (int t = 0; t < 3; t++) {
        mmp_sampler_params p = mmp_sampler_params_default();
        p.top_k = 0; p.top_p = 1.0f; p.min_p = minps[t]; p.temperature = 1.0f;
        mmp_sampler *s = mmp_sampler_new(V, &p);
        assert_int_equal(mmp_sampler_probs(s, l, probs), MMP_OK);
        double mass = 0.0;
        for (int i = 0; i < V; i++) if (full[i] >= minps[t] * full[3]) mass += full[i];
        for (int i = 0; i < V; i++) {
            double want = full[i] >= minps[t] * full[3] ? full[i] / mass : 0.0;
            assert_true(fabs(probs[i] - want) < 1e-6);
        }
        mmp_sampler_free(s);
    }
}

static void test_repeat_penalty(void **state) {
    (void)state;
    enum { V = 6 };
    const float l[V] = { 2.0f, -1.0f, 0.5f, 1.0f, -0.2f, 0.3f };
    mmp_sampler_params p = mmp_sampler_params_default();
    p.top_k = 0; p.top_p = 1.0f; p.min_p = 0.0f; p.temperature = 1.0f;
    p.repeat_penalty = 2.0f; p.repeat_last_n = 3;
    mmp_sampler *s = mmp_sampler_new(V, &p);
    /* history 0 0 1 4 5: the window of 3 holds 1, 4, 5 (0 fell out) */
    const int hist[5] = { 0, 0, 1, 4, 5 };
    for (int i = 0; i < 5; i++) mmp_sampler_accept(s, hist[i]);
    float probs[V], pl[V];
    memcpy(pl, l, sizeof pl);
    pl[1] = -1.0f * 2.0f; pl[4] = -0.2f * 2.0f; pl[5] = 0.3f / 2.0f; /* CTRL rule, once per id */
    double want[V];
    softmax_ref(pl, V, 1.0f, want);
    assert_int_equal(mmp_sampler_probs(s, l, probs), MMP_OK);
    for (int i = 0; i < V; i++) assert_true(fabs(probs[i] - want[i]) < 1e-6);
    /* a repeated id is penalised once, not once per occurrence */
    mmp_sampler_accept(s, 5); mmp_sampler_accept(s, 5); mmp_sampler_accept(s, 5);
    memcpy(pl, l, sizeof pl);
    pl[5] = 0.3f / 2.0f;
    softmax_ref(pl, V, 1.0f, want);
    assert_int_equal(mmp_sampler_probs(s, l, probs), MMP_OK);
    for (int i = 0; i < V; i++) assert_true(fabs(probs[i] - want[i]) < 1e-6);
    /* greedy with a penalty: the top token 0 repeated enough falls below 3 */
    mmp_sampler_params g = mmp_sampler_params_greedy();
    g.repeat_penalty = 4.0f; g.repeat_last_n = 64;
    mmp_sampler *sg = mmp_sampler_new(V, &g);
    assert_int_equal(mmp_sampler_sample(sg, l), 0);
    mmp_sampler_accept(sg, 0);
    assert_int_equal(mmp_sampler_sample(sg, l), 3); /* 2.0 / 4 = 0.5 < 1.0 */
    mmp_sampler_reset(sg);
    assert_int_equal(mmp_sampler_sample(sg, l), 0);
    mmp_sampler_free(sg);
    mmp_sampler_free(s);
}

static void test_bad_params(void **state) {
    (void)state;
    mmp_sampler_params p = mmp_sampler_params_default();
    assert_null(mmp_sampler_new(0, &p));
    assert_non_null(strstr(mmp_last_error(), "n_vocab"));
    p.repeat_penalty = 0.0f;
    assert_null(mmp_sampler_new(10, &p));
    assert_non_null(strstr(mmp_last_error(), "repeat_penalty"));
    p = mmp_sampler_params_default();
    p.temperature = NAN;
    assert_null(mmp_sampler_new(10, &p));
    p = mmp_sampler_params_default();
    p.top_p = 0.0f;
    assert_null(mmp_sampler_new(10, &p));
    mmp_sampler_free(NULL);
    mmp_stop_free(NULL);
}

/* Push pieces, collect everything emitted, return the reason of the last push. */
static enum mmp_stop_reason run_stop(mmp_stop *st, const char *const *pieces, const int *ids, int n, char *out, size_t cap) {
    size_t o = 0;
    enum mmp_stop_reason r = MMP_STOP_NONE;
    out[0] = '\0';
    for (int i = 0; i < n && r == MMP_STOP_NONE; i++) {
        const char *e;
        size_t el;
        r = mmp_stop_push(st, ids ? ids[i] : 100 + i, pieces[i], strlen(pieces[i]), &e, &el);
        assert_true(o + el < cap);
        memcpy(out + o, e, el);
        o += el;
        out[o] = '\0';
    }
    return r;
}

static void test_stop_strings(void **state) {
    (void)state;
    char out[256];
    const char *stops[2] = { "world", "<|end|>" };
    mmp_stop *st = mmp_stop_new(NULL, 0, stops, 2, 0);
    assert_non_null(st);
    /* "world" split over three tokens */
    const char *p1[4] = { "Hello", " wo", "rl", "d! more" };
    assert_int_equal(run_stop(st, p1, NULL, 4, out, sizeof out), MMP_STOP_STRING);
    assert_string_equal(out, "Hello ");
    /* a held-back prefix that turns out not to be a stop string is emitted later */
    mmp_stop_reset(st);
    const char *p2[3] = { "a wo", "nderful", " day" };
    assert_int_equal(run_stop(st, p2, NULL, 3, out, sizeof out), MMP_STOP_NONE);
    const char *e;
    size_t el;
    mmp_stop_flush(st, &e, &el);
    assert_int_equal(el, 0);
    assert_string_equal(out, "a wonderful day");
    /* a stop string inside one piece, after other text */
    mmp_stop_reset(st);
    const char *p3[2] = { "ok", ". <|end|> trailing" };
    assert_int_equal(run_stop(st, p3, NULL, 2, out, sizeof out), MMP_STOP_STRING);
    assert_string_equal(out, "ok. ");
    mmp_stop_free(st);

    /* EOG flushes held-back text; its own piece is not added */
    const int32_t eog[2] = { 2, 7 };
    st = mmp_stop_new(eog, 2, stops, 2, 0);
    const char *p4[3] = { "ab", "<|e", "</s>" };
    const int ids4[3] = { 10, 11, 7 };
    assert_int_equal(run_stop(st, p4, ids4, 3, out, sizeof out), MMP_STOP_EOG);
    assert_string_equal(out, "ab<|e");
    mmp_stop_free(st);

    /* max tokens: the last token's text is included and everything is flushed */
    st = mmp_stop_new(NULL, 0, stops, 2, 3);
    const char *p5[5] = { "x", "y", "wor", "z", "w" };
    assert_int_equal(run_stop(st, p5, NULL, 5, out, sizeof out), MMP_STOP_MAX_TOKENS);
    assert_string_equal(out, "xywor");
    assert_int_equal(mmp_stop_n_tokens(st), 3);
    mmp_stop_free(st);
    assert_string_equal(mmp_stop_reason_name(MMP_STOP_STRING), "stop string");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_and_ties),
        cmocka_unit_test(test_limits_are_greedy),
        cmocka_unit_test(test_seed_repeats),
        cmocka_unit_test(test_counts_follow_softmax),
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_repeat_penalty),
        cmocka_unit_test(test_bad_params),
        cmocka_unit_test(test_stop_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
