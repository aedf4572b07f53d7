/* Noise schedulers as diffusers defines them: DDIM (eta 0), Euler discrete, Euler ancestral,
 * DPM-Solver++ 2M (midpoint), with the Stable Diffusion betas.
 *
 * diffusers computes the training schedule in torch float32 (linspace, square, 1 - b, cumprod
 * accumulated in double and stored as float) and the sigmas in float32 too; we reproduce
 * those roundings so timesteps and every step agree with the reference to ~1e-7. Step
 * arithmetic on samples is float32 like torch's. */
#include "mmpipe/diffusion.h"
#include "util.h"
#include "rng.h"

#include <math.h>
#include <string.h>

#define MMP_SCHED_MAX_TRAIN 100000

struct mmp_scheduler {
    mmp_sched_params p;
    float *alphas_cumprod;     /* [num_train] */
    float *sigmas_all;         /* [num_train] ((1 - ac) / ac)^0.5, float32 as torch */
    float final_alpha_cumprod; /* DDIM */
    int n;                     /* inference steps */
    double *timesteps;         /* [n] */
    float *sigmas;             /* [n + 1] (Euler, Euler a, DPM) */
    int next_step;             /* steps must be taken in order */
    /* DPM++ 2M history */
    float *prev_x0;            /* [n_elem] model output (x0 prediction) of the previous step */
    int64_t prev_len;
    int lower_order_nums;
    /* Euler a noise */
    uint64_t rng[4];
    bool have_spare;
    double spare;
};

const char *mmp_sched_kind_name(enum mmp_sched_kind k) {
    switch (k) {
    case MMP_SCHED_DDIM: return "ddim";
    case MMP_SCHED_EULER: return "euler";
    case MMP_SCHED_EULER_A: return "euler_a";
    case MMP_SCHED_DPMPP_2M: return "dpmpp_2m";
    default: return "unknown";
    }
}

enum mmp_sched_kind mmp_sched_kind_from_name(const char *name) {
    if (!name) return MMP_SCHED_COUNT;
    for (int k = 0; k < MMP_SCHED_COUNT; k++)
        if (strcmp(name, mmp_sched_kind_name((enum mmp_sched_kind)k)) == 0) return (enum mmp_sched_kind)k;
    return MMP_SCHED_COUNT;
}

mmp_sched_params mmp_sched_params_default(enum mmp_sched_kind kind) {
    mmp_sched_params p;
    memset(&p, 0, sizeof p);
    p.kind = kind;
    p.num_train_timesteps = 1000;
    p.beta_start = 0.00085;
    p.beta_end = 0.012;
    p.beta_schedule = MMP_BETAS_SCALED_LINEAR;
    p.spacing = kind == MMP_SCHED_DDIM ? MMP_SPACING_LEADING : MMP_SPACING_LINSPACE;
    p.steps_offset = 1;
    p.set_alpha_to_one = false;
    p.use_karras_sigmas = false;
    p.lower_order_final = true;
    p.final_sigma_zero = true;
    p.prediction_type = MMP_PREDICT_EPSILON;
    p.seed = 0;
    return p;
}

/* ---- config ---- */

static void join_path(char *buf, size_t size, const char *prefix, const char *key) {
    if (prefix && prefix[0]) snprintf(buf, size, "%s.%s", prefix, key);
    else snprintf(buf, size, "%s", key);
}

enum mmp_status mmp_sched_params_from_json(mmp_sched_params *p, const mmp_json *cfg, const char *prefix) {
    if (!p || !cfg) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_sched_params_from_json: NULL argument");
    const char *file = mmp_json_name(cfg);
    char key[256];
    enum mmp_status st;
    int64_t iv;
    double dv;
    bool bv;
    const char *sv;

#define GET(kind, name, var) (join_path(key, sizeof key, prefix, name), \
        mmp_json_has(cfg, key) ? mmp_json_get_##kind(cfg, key, &var) : MMP_ERR_NOT_FOUND)

    if ((st = GET(int, "num_train_timesteps", iv)) == MMP_OK) {
        if (iv < 2 || iv > MMP_SCHED_MAX_TRAIN)
            return mmp__error(MMP_ERR_FORMAT, "%s: '%s' is %lld, expected 2..%d", file, key, (long long)iv, MMP_SCHED_MAX_TRAIN);
        p->num_train_timesteps = (int)iv;
    } else if (st != MMP_ERR_NOT_FOUND) return st;
    if ((st = GET(float, "beta_start", dv)) == MMP_OK) p->beta_start = dv; else if (st != MMP_ERR_NOT_FOUND) return st;
    if ((st = GET(float, "beta_end", dv)) == MMP_OK) p->beta_end = dv; else if (st != MMP_ERR_NOT_FOUND) return st;
    if (!(p->beta_start > 0 && p->beta_start < 1 && p->beta_end > 0 && p->beta_end < 1))
        return mmp__error(MMP_ERR_FORMAT, "%s: beta_start %g / beta_end %g must be in (0, 1)", file, p->beta_start, p->beta_end);
    if ((st = GET(string, "beta_schedule", sv)) == MMP_OK) {
        if (strcmp(sv, "scaled_linear") == 0) p->beta_schedule = MMP_BETAS_SCALED_LINEAR;
        else if (strcmp(sv, "linear") == 0) p->beta_schedule = MMP_BETAS_LINEAR;
        else return mmp__error(MMP_ERR_UNSUPPORTED, "%s: '%s' is \"%s\", supported: scaled_linear, linear", file, key, sv);
    } else if (st != MMP_ERR_NOT_FOUND) return st;
    join_path(key, sizeof key, prefix, "trained_betas");
    if (mmp_json_has(cfg, key))
        return mmp__error(MMP_ERR_UNSUPPORTED, "%s: '%s' is set; explicit trained betas are not supported", file, key);
    if ((st = GET(string, "timestep_spacing", sv)) == MMP_OK) {
        if (strcmp(sv, "leading") == 0) p->spacing = MMP_SPACING_LEADING;
        else if (strcmp(sv, "trailing") == 0) p->spacing = MMP_SPACING_TRAILING;
        else if (strcmp(sv, "linspace") == 0) p->spacing = MMP_SPACING_LINSPACE;
        else return mmp__error(MMP_ERR_UNSUPPORTED, "%s: '%s' is \"%s\", supported: leading, trailing, linspace", file, key, sv);
    } else if (st != MMP_ERR_NOT_FOUND) return st;
    if ((st = GET(int, "steps_offset", iv)) == MMP_OK) {
        if (iv < 0 || iv > 1000) return mmp__error(MMP_ERR_FORMAT, "%s: '%s' is %lld, expected 0..1000", file, key, (long long)iv);
        p->steps_offset = (int)iv;
    } else if (st != MMP_ERR_NOT_FOUND) return st;
    if ((st = GET(bool, "set_alpha_to_one", bv)) == MMP_OK) p->set_alpha_to_one = bv; else if (st != MMP_ERR_NOT_FOUND) return st;
    if ((st = GET(bool, "use_karras_sigmas", bv)) == MMP_OK) p->use_karras_sigmas = bv; else if (st != MMP_ERR_NOT_FOUND) return st;
    if ((st = GET(bool, "lower_order_final", bv)) == MMP_OK) p->lower_order_final = bv; else if (st != MMP_ERR_NOT_FOUND) return st;
    if ((st = GET(string, "final_sigmas_type", sv)) == MMP_OK) {
        if (strcmp(sv, "zero") == 0) p->final_sigma_zero = true;
        else if (strcmp(sv, "sigma_min") == 0) p->final_sigma_zero = false;
        else return mmp__error(MMP_ERR_UNSUPPORTED, "%s: '%s' is \"%s\", supported: zero, sigma_min", file, key, sv);
    } else if (st != MMP_ERR_NOT_FOUND) return st;
    if ((st = GET(string, "prediction_type", sv)) == MMP_OK) {
        if (strcmp(sv, "epsilon") == 0) p->prediction_type = MMP_PREDICT_EPSILON;
        else if (strcmp(sv, "v_prediction") == 0) p->prediction_type = MMP_PREDICT_V;
        else return mmp__error(MMP_ERR_UNSUPPORTED, "%s: '%s' is \"%s\", supported: epsilon, v_prediction", file, key, sv);
    } else if (st != MMP_ERR_NOT_FOUND) return st;
    if (p->kind == MMP_SCHED_DPMPP_2M) {
        if ((st = GET(string, "algorithm_type", sv)) == MMP_OK) {
            if (strcmp(sv, "dpmsolver++") != 0)
                return mmp__error(MMP_ERR_UNSUPPORTED, "%s: '%s' is \"%s\", only dpmsolver++ is supported", file, key, sv);
        } else if (st != MMP_ERR_NOT_FOUND) return st;
        if ((st = GET(int, "solver_order", iv)) == MMP_OK) {
            if (iv != 2) return mmp__error(MMP_ERR_UNSUPPORTED, "%s: '%s' is %lld, only 2 is supported", file, key, (long long)iv);
        } else if (st != MMP_ERR_NOT_FOUND) return st;
        if ((st = GET(string, "solver_type", sv)) == MMP_OK) {
            if (strcmp(sv, "midpoint") != 0)
                return mmp__error(MMP_ERR_UNSUPPORTED, "%s: '%s' is \"%s\", only midpoint is supported", file, key, sv);
        } else if (st != MMP_ERR_NOT_FOUND) return st;
        if ((st = GET(bool, "euler_at_final", bv)) == MMP_OK) {
            if (bv) return mmp__error(MMP_ERR_UNSUPPORTED, "%s: '%s' is true: not supported", file, key);
        } else if (st != MMP_ERR_NOT_FOUND) return st;
    }
    if (p->kind == MMP_SCHED_DDIM) {
        if ((st = GET(bool, "clip_sample", bv)) == MMP_OK) {
            if (bv) return mmp__error(MMP_ERR_UNSUPPORTED, "%s: '%s' is true: sample clipping is not supported", file, key);
        } else if (st != MMP_ERR_NOT_FOUND) return st;
    }
    if ((st = GET(bool, "thresholding", bv)) == MMP_OK) {
        if (bv) return mmp__error(MMP_ERR_UNSUPPORTED, "%s: '%s' is true: dynamic thresholding is not supported", file, key);
    } else if (st != MMP_ERR_NOT_FOUND) return st;
    if ((st = GET(bool, "rescale_betas_zero_snr", bv)) == MMP_OK) {
        if (bv) return mmp__error(MMP_ERR_UNSUPPORTED, "%s: '%s' is true: not supported", file, key);
    } else if (st != MMP_ERR_NOT_FOUND) return st;
#undef GET
    mmp_clear_error();
    return MMP_OK;
}

/* ---- RNG: splitmix64 seeding xoshiro256** (core/rng.h), Box-Muller ---- */

static void rng_seed(uint64_t s[4], uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) s[i] = mmp__splitmix64(&x);
}
/* uniform in (0, 1] from the top 53 bits */
static double rng_u01(uint64_t s[4]) { return ((double)(mmp__xoshiro_next(s) >> 11) + 1.0) * (1.0 / 9007199254740992.0); }

static double rng_normal(uint64_t s[4], bool *have_spare, double *spare) {
    if (*have_spare) { *have_spare = false; return *spare; }
    double u1 = rng_u01(s), u2 = rng_u01(s);
    double r = sqrt(-2.0 * log(u1)), th = 2.0 * M_PI * u2;
    *spare = r * sin(th);
    *have_spare = true;
    return r * cos(th);
}

void mmp_randn(uint64_t seed, float *out, int64_t n) {
    uint64_t s[4];
    bool have = false;
    double spare = 0;
    rng_seed(s, seed);
    for (int64_t i = 0; i < n; i++) out[i] = (float)rng_normal(s, &have, &spare);
}

/* ---- schedule ---- */

/* torch.linspace(a, b, n, dtype=float32): symmetric halves computed in float. */
static float torch_linspace_f32(float a, float b, int n, int i) {
    if (n == 1) return a;
    float step = (b - a) / (float)(n - 1);
    int half = n / 2;
    return i < half ? a + step * (float)i : b - step * (float)(n - 1 - i);
}

mmp_scheduler *mmp_scheduler_new(const mmp_sched_params *p) {
    if (!p) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_scheduler_new: NULL params");
    if ((int)p->kind < 0 || p->kind >= MMP_SCHED_COUNT)
        return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_scheduler_new: unknown scheduler kind %d", (int)p->kind);
    if (p->num_train_timesteps < 2 || p->num_train_timesteps > MMP_SCHED_MAX_TRAIN)
        return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_scheduler_new: num_train_timesteps %d, expected 2..%d",
                               p->num_train_timesteps, MMP_SCHED_MAX_TRAIN);
    if (!(p->beta_start > 0 && p->beta_start < 1 && p->beta_end > 0 && p->beta_end < 1))
        return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_scheduler_new: betas %g..%g must be in (0, 1)", p->beta_start, p->beta_end);
    if ((int)p->spacing < 0 || p->spacing >= MMP_SPACING_COUNT || (int)p->beta_schedule < 0 || p->beta_schedule >= MMP_BETAS_COUNT ||
        (int)p->prediction_type < 0 || p->prediction_type >= MMP_PREDICT_COUNT)
        return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_scheduler_new: bad spacing / beta schedule / prediction type");
    mmp_scheduler *s = mmp__calloc(1, sizeof *s);
    if (!s) return NULL;
    s->p = *p;
    int N = p->num_train_timesteps;
    s->alphas_cumprod = mmp__malloc((size_t)N * sizeof(float));
    s->sigmas_all = mmp__malloc((size_t)N * sizeof(float));
    if (!s->alphas_cumprod || !s->sigmas_all) { mmp_scheduler_free(s); return NULL; }
    double acc = 1.0; /* torch.cumprod on CPU accumulates in double, stores float */
    for (int i = 0; i < N; i++) {
        float beta;
        if (p->beta_schedule == MMP_BETAS_SCALED_LINEAR) {
            float b = torch_linspace_f32((float)sqrt(p->beta_start), (float)sqrt(p->beta_end), N, i);
            beta = b * b;
        } else {
            beta = torch_linspace_f32((float)p->beta_start, (float)p->beta_end, N, i);
        }
        float alpha = 1.0f - beta;
        acc *= (double)alpha;
        s->alphas_cumprod[i] = (float)acc;
        float ac = s->alphas_cumprod[i];
        s->sigmas_all[i] = sqrtf((1.0f - ac) / ac);
    }
    s->final_alpha_cumprod = p->set_alpha_to_one ? 1.0f : s->alphas_cumprod[0];
    return s;
}

void mmp_scheduler_free(mmp_scheduler *s) {
    if (!s) return;
    free(s->alphas_cumprod);
    free(s->sigmas_all);
    free(s->timesteps);
    free(s->sigmas);
    free(s->prev_x0);
    free(s);
}

/* numpy.linspace(a, b, n)[i] (float64; the last element is exactly b) */
static double np_linspace(double a, double b, int n, int i) {
    if (n == 1) return a;
    if (i == n - 1) return b;
    double step = (b - a) / (double)(n - 1);
    return (double)i * step + a;
}

/* np.interp(x, arange(N), table) */
static double interp_table(const float *tab, int N, double x) {
    if (x <= 0) return tab[0];
    if (x >= N - 1) return tab[N - 1];
    int lo = (int)floor(x);
    double w = x - lo;
    return (double)tab[lo] + w * ((double)tab[lo + 1] - (double)tab[lo]);
}

/* EulerDiscreteScheduler._sigma_to_t: fractional timestep of a sigma via log-sigma interpolation. */
static double sigma_to_t(const mmp_scheduler *s, double sigma) {
    int N = s->p.num_train_timesteps;
    double ls = log(sigma > 1e-10 ? sigma : 1e-10);
    int low = 0;
    for (int j = 0; j < N; j++)
        if (ls - (double)logf(s->sigmas_all[j]) >= 0) low = j;  /* log_sigmas are float32 (np.log of float32) */
    if (low > N - 2) low = N - 2;
    double lo = (double)logf(s->sigmas_all[low]), hi = (double)logf(s->sigmas_all[low + 1]);
    double w = (lo - ls) / (lo - hi);
    if (w < 0) w = 0;
    if (w > 1) w = 1;
    return (1 - w) * low + w * (low + 1);
}

/* Karras et al. (2022) rho = 7 schedule from sigma_max down to sigma_min, n values. */
static double karras(double smin, double smax, int n, int i) {
    double ramp = np_linspace(0, 1, n, i);
    double mn = pow(smin, 1.0 / 7.0), mx = pow(smax, 1.0 / 7.0);
    return pow(mx + ramp * (mn - mx), 7.0);
}

enum mmp_status mmp_scheduler_set_timesteps(mmp_scheduler *s, int n) {
    if (!s) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_scheduler_set_timesteps: NULL scheduler");
    int N = s->p.num_train_timesteps;
    if (n < 1 || n > N)
        return mmp__error(MMP_ERR_INVALID_ARG, "scheduler %s: %d steps requested, expected 1..%d (num_train_timesteps)",
                          mmp_sched_kind_name(s->p.kind), n, N);
    double *ts = mmp__malloc((size_t)n * sizeof(double));
    float *sig = mmp__malloc((size_t)(n + 1) * sizeof(float));
    if (!ts || !sig) { free(ts); free(sig); return MMP_ERR_NOMEM; }
    enum mmp_sched_kind k = s->p.kind;
    enum mmp_timestep_spacing sp = s->p.spacing;
    if (k == MMP_SCHED_DPMPP_2M) {
        /* lambda_min_clipped = -inf: last_timestep = N. linspace/leading take n+1 points and drop the last. */
        for (int i = 0; i < n; i++) {
            if (sp == MMP_SPACING_LINSPACE) ts[i] = rint(np_linspace(0, N - 1, n + 1, n - i));
            else if (sp == MMP_SPACING_LEADING) ts[i] = (double)((n - i) * (N / (n + 1)) + s->p.steps_offset);
            else ts[i] = rint((double)N - i * ((double)N / n)) - 1;
        }
    } else if (k == MMP_SCHED_DDIM) {
        for (int i = 0; i < n; i++) {
            if (sp == MMP_SPACING_LINSPACE) ts[i] = rint(np_linspace(0, N - 1, n, n - 1 - i));
            else if (sp == MMP_SPACING_LEADING) ts[i] = (double)((n - 1 - i) * (N / n) + s->p.steps_offset);
            else ts[i] = rint((double)N - i * ((double)N / n)) - 1;
        }
    } else { /* Euler, Euler a: timesteps are float32, linspace ones fractional */
        for (int i = 0; i < n; i++) {
            double t;
            if (sp == MMP_SPACING_LINSPACE) t = np_linspace(0, N - 1, n, n - 1 - i);
            else if (sp == MMP_SPACING_LEADING) t = (double)((n - 1 - i) * (N / n) + s->p.steps_offset);
            else t = rint((double)N - i * ((double)N / n)) - 1;
            ts[i] = (double)(float)t;
        }
    }
    for (int i = 0; i < n; i++) {
        if (!(ts[i] >= 0 && ts[i] <= N - 1)) {
            double bad = ts[i];
            free(ts); free(sig);
            return mmp__error(MMP_ERR_INVALID_ARG, "scheduler %s: %d steps with steps_offset %d give timestep %g outside 0..%d",
                              mmp_sched_kind_name(k), n, s->p.steps_offset, bad, N - 1);
        }
    }
    if (k != MMP_SCHED_DDIM) {
        if (s->p.use_karras_sigmas) {
            double smin, smax;
            if (k == MMP_SCHED_DPMPP_2M) { smin = s->sigmas_all[0]; smax = s->sigmas_all[N - 1]; }
            else { smin = interp_table(s->sigmas_all, N, ts[n - 1]); smax = interp_table(s->sigmas_all, N, ts[0]); }
            for (int i = 0; i < n; i++) {
                double sg = karras(smin, smax, n, i);
                sig[i] = (float)sg;
                double t = sigma_to_t(s, sg);
                ts[i] = k == MMP_SCHED_DPMPP_2M ? rint(t) : (double)(float)t;
            }
        } else {
            for (int i = 0; i < n; i++) sig[i] = (float)interp_table(s->sigmas_all, N, ts[i]);
        }
        if (k == MMP_SCHED_DPMPP_2M && !s->p.final_sigma_zero)
            sig[n] = sqrtf((1.0f - s->alphas_cumprod[0]) / s->alphas_cumprod[0]);
        else
            sig[n] = 0.0f;
    } else {
        for (int i = 0; i <= n; i++) sig[i] = 0;
    }
    free(s->timesteps);
    free(s->sigmas);
    s->timesteps = ts;
    s->sigmas = sig;
    s->n = n;
    s->next_step = 0;
    s->lower_order_nums = 0;
    s->prev_len = 0;
    rng_seed(s->rng, s->p.seed);
    s->have_spare = false;
    return MMP_OK;
}

int mmp_scheduler_n_steps(const mmp_scheduler *s) { return s ? s->n : 0; }

double mmp_scheduler_timestep(const mmp_scheduler *s, int i) {
    if (!s || i < 0 || i >= s->n) return NAN;
    return s->timesteps[i];
}

double mmp_scheduler_init_noise_sigma(const mmp_scheduler *s) {
    if (!s) return NAN;
    if (s->p.kind == MMP_SCHED_DDIM || s->p.kind == MMP_SCHED_DPMPP_2M) return 1.0;
    if (s->n == 0) return NAN;
    float mx = 0;
    for (int i = 0; i <= s->n; i++) if (s->sigmas[i] > mx) mx = s->sigmas[i];
    if (s->p.spacing == MMP_SPACING_LINSPACE || s->p.spacing == MMP_SPACING_TRAILING) return mx;
    return (double)sqrtf(mx * mx + 1.0f);
}

double mmp_scheduler_input_scale(const mmp_scheduler *s, int i) {
    if (!s || i < 0 || i >= s->n) return NAN;
    if (s->p.kind == MMP_SCHED_DDIM || s->p.kind == MMP_SCHED_DPMPP_2M) return 1.0;
    float sg = s->sigmas[i];
    return 1.0 / (double)sqrtf(sg * sg + 1.0f);
}

/* ---- steps ---- */

static enum mmp_status step_ddim(mmp_scheduler *s, int i, const float *eps, float *x, int64_t n) {
    int N = s->p.num_train_timesteps;
    int t = (int)s->timesteps[i];
    int prev = t - N / s->n;
    float a_t = s->alphas_cumprod[t];
    float a_prev = prev >= 0 ? s->alphas_cumprod[prev] : s->final_alpha_cumprod;
    float b_t = 1.0f - a_t;
    float sa_t = sqrtf(a_t), sb_t = sqrtf(b_t), sa_prev = sqrtf(a_prev), dir = sqrtf(1.0f - a_prev);
    for (int64_t j = 0; j < n; j++) {
        float x0, e;
        if (s->p.prediction_type == MMP_PREDICT_EPSILON) { x0 = (x[j] - sb_t * eps[j]) / sa_t; e = eps[j]; }
        else { x0 = sa_t * x[j] - sb_t * eps[j]; e = sa_t * eps[j] + sb_t * x[j]; }
        x[j] = sa_prev * x0 + dir * e;
    }
    return MMP_OK;
}

static enum mmp_status step_euler(mmp_scheduler *s, int i, const float *eps, float *x, int64_t n, bool ancestral) {
    float sigma = s->sigmas[i], sigma_next = s->sigmas[i + 1];
    float sigma_up = 0, sigma_down = sigma_next;
    if (ancestral) {
        float su2 = sigma_next * sigma_next * (sigma * sigma - sigma_next * sigma_next) / (sigma * sigma);
        sigma_up = sqrtf(su2 > 0 ? su2 : 0);
        float sd2 = sigma_next * sigma_next - sigma_up * sigma_up;
        sigma_down = sqrtf(sd2 > 0 ? sd2 : 0);
    }
    float dt = sigma_down - sigma;
    float vden = sqrtf(sigma * sigma + 1.0f), vden2 = sigma * sigma + 1.0f;
    for (int64_t j = 0; j < n; j++) {
        float x0 = s->p.prediction_type == MMP_PREDICT_EPSILON ? x[j] - sigma * eps[j]
                                                                : eps[j] * (-sigma / vden) + x[j] / vden2;
        float d = (x[j] - x0) / sigma;
        x[j] = x[j] + d * dt;
        if (ancestral) x[j] += (float)rng_normal(s->rng, &s->have_spare, &s->spare) * sigma_up;
    }
    return MMP_OK;
}

/* DPM-Solver++ (data prediction) multistep, order 2 with the midpoint rule. */
static enum mmp_status step_dpmpp_2m(mmp_scheduler *s, int i, const float *out, float *x, int64_t n) {
    if (s->prev_len != n) {
        float *b = realloc(s->prev_x0, (size_t)n * sizeof(float));
        if (!b) return mmp__error(MMP_ERR_NOMEM, "scheduler dpmpp_2m: out of memory for %lld values", (long long)n);
        s->prev_x0 = b;
        if (s->prev_len != 0 && i > 0)
            return mmp__error(MMP_ERR_INVALID_ARG, "scheduler dpmpp_2m: sample size changed from %lld to %lld mid-run",
                              (long long)s->prev_len, (long long)n);
        s->prev_len = n;
    }
    double sg_s0 = s->sigmas[i], sg_t = s->sigmas[i + 1];
    double a_s0 = 1.0 / sqrt(sg_s0 * sg_s0 + 1), s_s0 = sg_s0 * a_s0;
    double a_t = 1.0 / sqrt(sg_t * sg_t + 1), s_t = sg_t * a_t;
    bool lower_final = (i == s->n - 1) && ((s->p.lower_order_final && s->n < 15) || s->p.final_sigma_zero);
    /* (lower_order_second only matters for order 3: with order 2 the second-order update runs
     * whenever there is one step of history and this is not the lower-order final step) */
    bool first = s->lower_order_nums < 1 || lower_final;
    double lam_s0 = log(a_s0) - log(s_s0);
    /* sigma_t = 0 (final step, final_sigmas_type zero): h = inf, exp(-h) = 0, x_t = x0. */
    double ratio = sg_t > 0 ? s_t / s_s0 : 0.0;
    double em1 = sg_t > 0 ? exp(-((log(a_t) - log(s_t)) - lam_s0)) - 1.0 : -1.0;
    double c0 = -a_t * em1, c1 = 0;
    float r_inv = 0;
    if (!first) {
        double sg_s1 = s->sigmas[i - 1];
        double a_s1 = 1.0 / sqrt(sg_s1 * sg_s1 + 1), s_s1 = sg_s1 * a_s1;
        double lam_s1 = log(a_s1) - log(s_s1);
        double h = (log(a_t) - log(s_t)) - lam_s0, h0 = lam_s0 - lam_s1;
        r_inv = (float)(h / h0);  /* D1 = (1/r0) (m0 - m1), r0 = h0 / h */
        c1 = -0.5 * a_t * em1;
    }
    float fr = (float)ratio, fc0 = (float)c0, fc1 = (float)c1;
    float fa = (float)a_s0, fs = (float)s_s0;
    for (int64_t j = 0; j < n; j++) {
        float m0 = s->p.prediction_type == MMP_PREDICT_EPSILON ? (x[j] - fs * out[j]) / fa : fa * x[j] - fs * out[j];
        float v = fr * x[j] + fc0 * m0;
        if (!first) v += fc1 * (r_inv * (m0 - s->prev_x0[j]));
        x[j] = v;
        s->prev_x0[j] = m0;
    }
    if (s->lower_order_nums < 2) s->lower_order_nums++;
    return MMP_OK;
}

enum mmp_status mmp_scheduler_step(mmp_scheduler *s, int i, const float *model_output, float *sample, int64_t n) {
    if (!s || !model_output || !sample || n <= 0)
        return mmp__error(MMP_ERR_INVALID_ARG, "mmp_scheduler_step: NULL or empty argument");
    if (s->n == 0) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_scheduler_step: set_timesteps was not called");
    if (i != s->next_step || i >= s->n)
        return mmp__error(MMP_ERR_INVALID_ARG, "scheduler %s: step %d taken, expected step %d of %d (steps go in order)",
                          mmp_sched_kind_name(s->p.kind), i, s->next_step, s->n);
    enum mmp_status st;
    switch (s->p.kind) {
    case MMP_SCHED_DDIM: st = step_ddim(s, i, model_output, sample, n); break;
    case MMP_SCHED_EULER: st = step_euler(s, i, model_output, sample, n, false); break;
    case MMP_SCHED_EULER_A: st = step_euler(s, i, model_output, sample, n, true); break;
    case MMP_SCHED_DPMPP_2M: st = step_dpmpp_2m(s, i, model_output, sample, n); break;
    default: return mmp__error(MMP_ERR_INTERNAL, "scheduler: bad kind");
    }
    if (st == MMP_OK) s->next_step = i + 1;
    return st;
}
