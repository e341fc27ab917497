/*
 * attention.c -- chapter 1 of "attention, by hand, in C".
 *
 *     cc -O2 attention.c -lm -o attention && ./attention
 *     ./attention --help
 *
 * The shared kernels every later chapter includes, and the attention
 * mechanism itself. Part I is the lesson, in the order NOTES.md teaches it;
 * Part II is what the programs need around it. A reader who stops at Part
 * II's banner has read every mechanism.
 *
 * Part I, the lesson
 *   0. essentials         checked allocation, a seeded PRNG
 *   1. kernels            matmul (the plain loops, and the products the
 *                         programs call), linear, tanh/sigmoid/ReLU/GELU,
 *                         softmax, masked softmax, log-softmax +
 *                         cross-entropy, embeddings, SGD, Adam, clipping
 *   2. the mechanism      score -> softmax -> weighted sum (attend_forward)
 *   3. score functions    dot, scaled dot, general, additive, concat, cosine
 *   4. soft vs hard       sampling a position, REINFORCE with a baseline
 *   5. global vs local    local-m (window at t), local-p (predicted p_t),
 *                         each computed on its 2D + 1 window only
 *   6. self-attention     Q = XW_q, K = XW_k, V = XW_v; scaled dot-product
 *                         attention with masks; the same in O(T) memory
 *                         (tiled, online softmax); multi-head attention
 * Part II, the programs
 *   7. plumbing           files written whole or not at all, divergence,
 *                         the option table, the Layout cursor, a timer
 *   8. seeing attention   terminal heatmap, SVG heatmap
 *   9. toy tasks          copy/reverse/sort data for chapters 2 and 3
 *  10. real data          pair files (CMUdict, tab-separated), UTF-8 text,
 *                         vocabularies, splits, error rates, checkpoints
 *  11. why sqrt(d_k)?     the measurement behind the scaling (softmax_stats)
 *  12. fast kernels       appendix to section 1: the packed, register-tiled
 *                         matmul, a tanh that vectorises, blocked Adam
 *  13. the tour, report  main(): runs each lesson section on built-in data;
 *                         --bench times the kernels; --report DIR runs every
 *                         chapter's pictures and tables into one HTML page
 *
 * Conventions (the same in every chapter):
 *   - row-major flat arrays of double; a shape comment above every function;
 *   - x_forward(out, cache..., in, params..., dims) and
 *     x_backward(din, dparams..., dout, in/cache..., params..., dims);
 *   - every backward ADDS into its gradients (+=): clear them before a step;
 *   - a NULL gradient pointer means "not needed", where a comment says so;
 *   - no allocation inside a forward or backward: callers own all buffers;
 *   - stdout is deterministic for a given --seed; timings go to stderr.
 *
 * Dimension legend:
 *   T  number of keys (source positions)   Tq number of queries
 *   Dq query size    Dk key size    Dv value size
 *   A  hidden size of the additive / concat score
 *   D  model width   H  heads       dh = D / H, the width of one head
 *   N  rows of a batch               V  vocabulary size (in cross-entropy)
 */
#ifndef ATTENTION_C
#define ATTENTION_C

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <time.h>

#define PI 3.14159265358979323846

/* ************************************************************************
 * PART I. THE LESSON
 *
 * The kernels and the attention mechanisms, in the order NOTES.md teaches
 * them. Everything a model computes is here; Part II only runs it.
 * ************************************************************************ */

/* ========================================================================
 * 0. essentials: checked allocation and a seeded PRNG
 * ======================================================================== */

/* malloc that never returns NULL: on failure it names the caller's file:line
 * and exits 1. The caller owns the block and frees it with free(). */
static void *xmalloc_at(size_t bytes, const char *file, int line) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "%s:%d: out of memory allocating %lu bytes\n",
                file, line, (unsigned long)bytes);
        exit(1);
    }
    return p;
}
#define xmalloc(bytes) xmalloc_at((bytes), __FILE__, __LINE__)

/* n doubles, all zero; checked like xmalloc. */
static double *xcalloc_doubles_at(int n, const char *file, int line) {
    double *p = xmalloc_at(sizeof(double) * (size_t)(n > 0 ? n : 1), file, line);
    memset(p, 0, sizeof(double) * (size_t)(n > 0 ? n : 1));
    return p;
}
#define xcalloc_doubles(n) xcalloc_doubles_at((n), __FILE__, __LINE__)

/* A seeded PRNG of our own (splitmix64): its stream of integers is the same
 * on every platform for a given --seed, which rand()'s is not. The doubles a
 * run computes from it are bit-for-bit reproducible for a given build (same
 * compiler, flags and machine); across builds they can differ in the last
 * bits, e.g. where one compiler fuses a * b + c into one rounding (see FMA
 * below) and another does not. */
typedef struct { uint64_t state; } Rng;

void rng_seed(Rng *r, uint64_t seed) { r->state = seed; }

uint64_t rng_next(Rng *r) {
    uint64_t z = (r->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* uniform in [0, 1), 53 random bits */
double rng_uniform(Rng *r) { return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0); }

/* uniform integer in [0, n) */
int rng_int(Rng *r, int n) { return (int)(rng_uniform(r) * n); }

/* standard normal (Box-Muller; uses two uniforms per call, keeps no state) */
double rng_normal(Rng *r) {
    double u1 = 1.0 - rng_uniform(r);   /* in (0, 1]: log is finite */
    double u2 = rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * PI * u2);
}

/* x (n) ~ N(0, std^2) */
void rng_fill_normal(Rng *r, double *x, int n, double std) {
    for (int i = 0; i < n; i++) x[i] = std * rng_normal(r);
}

/* x (n) ~ U(lo, hi) */
void rng_fill_uniform(Rng *r, double *x, int n, double lo, double hi) {
    for (int i = 0; i < n; i++) x[i] = lo + (hi - lo) * rng_uniform(r);
}

/* ========================================================================
 * 1. kernels
 * ======================================================================== */

/* ---- matmul ------------------------------------------------------------
 * Every layer of every chapter is built on one product,
 *     out[i][j] = sum_k a[i][k] b[k][j]        out (M,N) = a (M,K) @ b (K,N)
 * and its two transposed forms, which the backward passes need:
 *     out = a @ b^T   (dx = dout @ W^T)        out = a^T @ b   (dW = x^T @ dout)
 * These three loops are the whole of it; the tests hold the fast products
 * below against them. */

/* out (M,N) = A (M,K) @ B (K,N), the textbook loop, with A[i][k] at
 * a[i*sai + k*sak] and B[k][j] at b[k*sbk + j*sbj]: a transposed operand
 * is the same numbers read with its two strides swapped */
void matmul_plain_strided(double *out, const double *a, int sai, int sak, const double *b,
                          int sbk, int sbj, int M, int K, int N) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0.0;
            for (int k = 0; k < K; k++) s += a[i * sai + k * sak] * b[k * sbk + j * sbj];
            out[i * N + j] = s;
        }
}

/* out (M,N) = a (M,K) @ b (K,N) */
void matmul_plain(double *out, const double *a, const double *b, int M, int K, int N) {
    matmul_plain_strided(out, a, K, 1, b, N, 1, M, K, N);
}

/* out (M,N) = a (M,K) @ b (N,K)^T: B[k][j] = b[j][k] */
void matmul_nt_plain(double *out, const double *a, const double *b, int M, int K, int N) {
    matmul_plain_strided(out, a, K, 1, b, 1, K, M, K, N);
}

/* out (M,N) = a (K,M)^T @ b (K,N): A[i][k] = a[k][i] */
void matmul_tn_plain(double *out, const double *a, const double *b, int M, int K, int N) {
    matmul_plain_strided(out, a, 1, M, b, N, 1, M, K, N);
}

/* The products the programs call compute the same sums, in a different
 * order that runs 10-50 times faster: gemm() (section 12, the appendix)
 * copies blocks of b and of a, where that pays, into small contiguous
 * panels and computes a tile of out in vector registers, so each value
 * loaded is used many times; a transpose is only a different stride.
 * Writing out = a b directly, rather than clearing out and adding, saves a
 * pass over out. Five names cover every forward and backward: */
static void gemm(double *restrict out, int add, const double *restrict a, int sai, int sak,
                 const double *restrict b, int sbk, int sbj, int M, int K, int N);

/* out (M,N) += a (M,K) @ b (K,N) */
void matmul_nn_add(double *restrict out, const double *restrict a,
                   const double *restrict b, int M, int K, int N) {
    gemm(out, 1, a, K, 1, b, N, 1, M, K, N);
}

/* out (M,N) = a (M,K) @ b (K,N) */
void matmul_forward(double *restrict out, const double *restrict a,
                    const double *restrict b, int M, int K, int N) {
    gemm(out, 0, a, K, 1, b, N, 1, M, K, N);
}

/* out (M,N) += a (M,K) @ b (N,K)^T */
void matmul_nt_add(double *restrict out, const double *restrict a,
                   const double *restrict b, int M, int K, int N) {
    gemm(out, 1, a, K, 1, b, 1, K, M, K, N);
}

/* out (M,N) = a (M,K) @ b (N,K)^T */
void matmul_nt_forward(double *restrict out, const double *restrict a,
                       const double *restrict b, int M, int K, int N) {
    gemm(out, 0, a, K, 1, b, 1, K, M, K, N);
}

/* out (M,N) += a (K,M)^T @ b (K,N) */
void matmul_tn_add(double *restrict out, const double *restrict a,
                   const double *restrict b, int M, int K, int N) {
    gemm(out, 1, a, 1, M, b, N, 1, M, K, N);
}

/* Backward of out = a @ b. da (M,K) and db (K,N) may be NULL.
 * forward was: out[i][j] = sum_k a[i][k] b[k][j]
 * so da = dout @ b^T and db = a^T @ dout. */
void matmul_backward(double *da, double *db, const double *dout,
                     const double *a, const double *b, int M, int K, int N) {
    if (da) matmul_nt_add(da, dout, b, M, N, K);
    if (db) matmul_tn_add(db, a, dout, K, M, N);
}

/* ---- linear layer --------------------------------------------------------
 * out (N,O) = x (N,I) @ W (I,O) + b (O); b may be NULL (no bias). */
void linear_forward(double *out, const double *x, const double *W, const double *b,
                    int N, int I, int O) {
    matmul_forward(out, x, W, N, I, O);
    if (b)
        for (int n = 0; n < N; n++)
            for (int o = 0; o < O; o++) out[n * O + o] += b[o];
}

/* dx (N,I), dW (I,O), db (O) += ...; each may be NULL.
 * forward was: out = x @ W + b, so dx = dout @ W^T, dW = x^T @ dout, db = sum_n dout[n]. */
void linear_backward(double *dx, double *dW, double *db, const double *dout,
                     const double *x, const double *W, int N, int I, int O) {
    matmul_backward(dx, dW, dout, x, W, N, I, O);
    if (db)
        for (int n = 0; n < N; n++)
            for (int o = 0; o < O; o++) db[o] += dout[n * O + o];
}

/* ---- element-wise nonlinearities, x and out of n entries ---------------- */

/* out (n) = tanh(x (n)); out may be x. The plain loop would be
 *     for (int i = 0; i < n; i++) out[i] = tanh(x[i]);
 * but libm's tanh() is a call the compiler cannot vectorise, and the RNN
 * cells and the additive score call it millions of times per second of
 * training, so tanh_fast (section 12) computes it in plain arithmetic that
 * vectorises, within 4 units in the last place of libm's (the tests check). */
static void tanh_fast(double *out, const double *x, int n);
void tanh_forward(double *out, const double *x, int n) { tanh_fast(out, x, n); }
/* forward was: out = tanh(x), so dx += dout * (1 - out^2) */
void tanh_backward(double *dx, const double *dout, const double *out, int n) {
    for (int i = 0; i < n; i++) dx[i] += dout[i] * (1.0 - out[i] * out[i]);
}

/* sigmoid(x) = 1 / (1 + e^-x), written so that exp never overflows */
double sigmoid(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}
/* out (n) = sigmoid(x (n)) */
void sigmoid_forward(double *out, const double *x, int n) {
    for (int i = 0; i < n; i++) out[i] = sigmoid(x[i]);
}
/* forward was: out = sigmoid(x), so dx += dout * out * (1 - out) */
void sigmoid_backward(double *dx, const double *dout, const double *out, int n) {
    for (int i = 0; i < n; i++) dx[i] += dout[i] * out[i] * (1.0 - out[i]);
}

/* out (n) = max(x (n), 0) */
void relu_forward(double *out, const double *x, int n) {
    for (int i = 0; i < n; i++) out[i] = x[i] > 0 ? x[i] : 0.0;
}
/* forward was: out = max(x, 0), so dx += dout where x > 0 */
void relu_backward(double *dx, const double *dout, const double *x, int n) {
    for (int i = 0; i < n; i++) dx[i] += x[i] > 0 ? dout[i] : 0.0;
}

/* GELU, the exact form: x * Phi(x), Phi the standard normal CDF */
void gelu_forward(double *out, const double *x, int n) {
    for (int i = 0; i < n; i++) out[i] = 0.5 * x[i] * (1.0 + erf(x[i] / sqrt(2.0)));
}
/* forward was: out = x Phi(x), so dx += dout * (Phi(x) + x phi(x)) */
void gelu_backward(double *dx, const double *dout, const double *x, int n) {
    for (int i = 0; i < n; i++) {
        double Phi = 0.5 * (1.0 + erf(x[i] / sqrt(2.0)));
        double phi = exp(-0.5 * x[i] * x[i]) / sqrt(2.0 * PI);
        dx[i] += dout[i] * (Phi + x[i] * phi);
    }
}

/* ---- softmax -------------------------------------------------------------
 * p (n) = softmax(x (n)) over the entries with mask[i] != 0 (mask NULL: all).
 * Masked entries get weight 0. A row with nothing left to attend to gets all
 * zeros, on purpose: no 0/0, no NaN, and softmax_backward then gives a zero
 * gradient. Subtracting the row max keeps exp() from overflowing.
 * p may be the same array as x (in-place). */
void masked_softmax_forward(double *p, const double *x, const unsigned char *mask, int n) {
    double max = -INFINITY;
    for (int i = 0; i < n; i++)
        if ((!mask || mask[i]) && x[i] > max) max = x[i];
    if (max == -INFINITY) {                     /* fully masked (or n = 0)? */
        for (int i = 0; i < n; i++) p[i] = 0.0;
        return;
    }
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        p[i] = (!mask || mask[i]) ? exp(x[i] - max) : 0.0;
        sum += p[i];
    }
    for (int i = 0; i < n; i++) p[i] /= sum;    /* sum >= 1: the max term is exp(0) */
}

/* p (n) = softmax(x (n)), no mask; p may be x */
void softmax_forward(double *p, const double *x, int n) {
    masked_softmax_forward(p, x, NULL, n);
}

/* forward was: p_i = exp(x_i) / sum_j exp(x_j)
 * so dp_i/dx_j = p_i (delta_ij - p_j) and dx = p * (dp - sum(p * dp)).
 * Masked entries have p_i = 0 and so receive no gradient. dx must not be dp:
 * it is accumulated into. */
void softmax_backward(double *dx, const double *dp, const double *p, int n) {
    double dot = 0.0;
    for (int i = 0; i < n; i++) dot += p[i] * dp[i];
    for (int i = 0; i < n; i++) dx[i] += p[i] * (dp[i] - dot);
}

/* log(sum_i exp(x_i)) for x (n), n >= 1, without overflow */
double logsumexp(const double *x, int n) {
    double max = x[0];
    for (int i = 1; i < n; i++) if (x[i] > max) max = x[i];
    double s = 0.0;
    for (int i = 0; i < n; i++) s += exp(x[i] - max);
    return max + log(s);
}

/* lp (n) = log softmax(x (n)) = x - logsumexp(x); lp may be x */
void log_softmax_forward(double *lp, const double *x, int n) {
    double lse = logsumexp(x, n);
    for (int i = 0; i < n; i++) lp[i] = x[i] - lse;
}

/* forward was: lp_i = x_i - logsumexp(x), and d logsumexp(x) / dx_j = softmax(x)_j
 * so dx_j += dlp_j - softmax(x)_j * sum_i dlp_i, with softmax(x) = exp(lp)
 * (read back from the forward's output, so no second pass over x).
 * dx must not be dlp: it is accumulated into. */
void log_softmax_backward(double *dx, const double *dlp, const double *lp, int n) {
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += dlp[i];
    for (int i = 0; i < n; i++) dx[i] += dlp[i] - exp(lp[i]) * sum;
}

/* the index of the largest of x (n), n >= 1; the first one on a tie. Greedy
 * decoding, accuracy counts and hard attention at inference all use it. */
int argmax(const double *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) if (x[i] > x[best]) best = i;
    return best;
}

/* One index drawn from softmax(logits (V) / temperature), work (V) scratch:
 * temperature 1 is the model's own distribution, below 1 sharper, above 1
 * flatter; temperature <= 0 is the argmax itself. Both chapters sample with it. */
int sample_softmax(const double *logits, int V, double temperature, double *work, Rng *r) {
    const int best = argmax(logits, V);
    if (temperature <= 0.0) return best;
    for (int v = 0; v < V; v++) work[v] = logits[v] / temperature;
    softmax_forward(work, work, V);                  /* subtracts the max: no overflow */
    const double u = rng_uniform(r);
    double acc = 0.0;
    for (int v = 0; v < V; v++) {
        acc += work[v];
        if (u < acc) return v;
    }
    return best;                                     /* u beyond the rounded sum */
}

/* ---- cross-entropy -------------------------------------------------------
 * Loss of one row of logits (V) against class `target`, with label smoothing
 * eps (0 for plain cross-entropy): the target distribution is
 *     q = (1 - eps) onehot(target) + eps / V
 * and loss = -sum_j q_j log softmax(logits)_j, via log-sum-exp.
 * probs (V) receives softmax(logits) for the backward. target < 0 means
 * "no target here" (padding): the loss is 0 and probs is zeroed. */
double cross_entropy_forward(double *probs, const double *logits, int target, int V,
                             double eps) {
    if (target < 0) {
        for (int j = 0; j < V; j++) probs[j] = 0.0;
        return 0.0;
    }
    double lse = logsumexp(logits, V);
    double loss = -(1.0 - eps) * (logits[target] - lse);
    for (int j = 0; j < V; j++) {
        double lp = logits[j] - lse;
        if (eps > 0) loss -= eps / V * lp;
        probs[j] = exp(lp);
    }
    return loss;
}

/* forward was: loss = -sum_j q_j log p_j with p = softmax(logits)
 * so dlogits += dloss * (p - q). */
void cross_entropy_backward(double *dlogits, double dloss, const double *probs,
                            int target, int V, double eps) {
    if (target < 0) return;
    for (int j = 0; j < V; j++) {
        double q = eps / V + (j == target ? 1.0 - eps : 0.0);
        dlogits[j] += dloss * (probs[j] - q);
    }
}

/* ---- embeddings ---------------------------------------------------------- */

/* out (T,E) = rows tokens[t] of the table (Vocab,E) */
void embedding_forward(double *out, const int *tokens, const double *table, int T, int E) {
    for (int t = 0; t < T; t++)
        memcpy(out + t * E, table + tokens[t] * E, sizeof(double) * (size_t)E);
}

/* forward was: out[t] = table[tokens[t]], so dtable[tokens[t]] += dout[t] */
void embedding_backward(double *dtable, const double *dout, const int *tokens, int T, int E) {
    for (int t = 0; t < T; t++)
        for (int j = 0; j < E; j++) dtable[tokens[t] * E + j] += dout[t * E + j];
}

/* ---- optimisers and clipping (flat arrays of n parameters) --------------- */

/* p -= lr * g */
void sgd_update(double *p, const double *g, int n, double lr) {
    for (int i = 0; i < n; i++) p[i] -= lr * g[i];
}

/* Adam (Kingma & Ba 2014) with decoupled weight decay wd (AdamW; 0 = none).
 * m, v (n) are the moment estimates, zero before step t = 1. Per entry:
 *     m = beta1 m + (1 - beta1) g        mhat = m / (1 - beta1^t)
 *     v = beta2 v + (1 - beta2) g^2      vhat = v / (1 - beta2^t)
 *     p -= lr (mhat / (sqrt(vhat) + eps) + wd p)
 * adam_update_plain is that loop; adam_update, which the programs call, is
 * the same operations in the same order, in blocks that vectorise (section
 * 12): the same bits, twice as fast (the tests check both). */
void adam_update_plain(double *p, const double *g, double *m, double *v, int n, int t,
                       double lr, double beta1, double beta2, double eps, double wd) {
    double c1 = 1.0 - pow(beta1, t), c2 = 1.0 - pow(beta2, t);
    for (int i = 0; i < n; i++) {
        m[i] = beta1 * m[i] + (1.0 - beta1) * g[i];
        v[i] = beta2 * v[i] + (1.0 - beta2) * g[i] * g[i];
        p[i] -= lr * (m[i] / c1 / (sqrt(v[i] / c2) + eps) + wd * p[i]);
    }
}
void adam_update(double *p, const double *g, double *m, double *v, int n, int t,
                 double lr, double beta1, double beta2, double eps, double wd);

/* sqrt(sum g^2) */
double grad_norm(const double *g, int n) {
    double s = 0.0;
    for (int i = 0; i < n; i++) s += g[i] * g[i];
    return sqrt(s);
}

/* If the global norm of g (n) exceeds max_norm, scale g down to max_norm.
 * Returns the norm before clipping (worth printing: it shows explosions). */
double clip_grad_norm(double *g, int n, double max_norm) {
    double norm = grad_norm(g, n);
    if (norm > max_norm) {
        double s = max_norm / norm;
        for (int i = 0; i < n; i++) g[i] *= s;
    }
    return norm;
}

/* ========================================================================
 * 2. the mechanism: score -> softmax -> weighted sum
 *
 * One query q attends over T keys and values:
 *     e_i = score(q, k_i)          step 1: how well does key i match?
 *     a   = softmax(e)             step 2: turn scores into weights
 *     c   = sum_i a_i v_i          step 3: read the values with the weights
 * attend_forward() below is these three lines. The score functions live in
 * section 3; step 3 is the weighted sum here.
 * ======================================================================== */

/* c (Dv) = sum_i a_i v_i, a (T), V (T,Dv) */
void weighted_sum_forward(double *c, const double *a, const double *V, int T, int Dv) {
    for (int j = 0; j < Dv; j++) c[j] = 0.0;
    for (int i = 0; i < T; i++) {
        if (a[i] == 0.0) continue;              /* masked positions cost nothing */
        const double *v = V + i * Dv;
        for (int j = 0; j < Dv; j++) c[j] += a[i] * v[j];
    }
}

/* forward was: c[j] += a[i] * v[i][j]
 * so da[i] += dc . v_i and dv[i][j] += a[i] * dc[j]. da or dV may be NULL. */
void weighted_sum_backward(double *da, double *dV, const double *dc, const double *a,
                           const double *V, int T, int Dv) {
    for (int i = 0; i < T; i++) {
        const double *v = V + i * Dv;
        if (da) {
            double s = 0.0;
            for (int j = 0; j < Dv; j++) s += dc[j] * v[j];
            da[i] += s;
        }
        if (dV) {
            double *dv = dV + i * Dv;
            for (int j = 0; j < Dv; j++) dv[j] += a[i] * dc[j];
        }
    }
}

/* ========================================================================
 * 3. score functions
 *
 *   dot       e = q . k                         (needs Dq = Dk)
 *   scaled    e = q . k / sqrt(Dk)              (Vaswani et al. 2017)
 *   general   e = q^T W k                       (Luong et al. 2015, "bilinear")
 *   additive  e = v^T tanh(W q + U k)           (Bahdanau et al. 2014, an MLP)
 *   concat    e = v^T tanh(W [q; k])            (Luong et al. 2015)
 *   cosine    e = q . k / (|q| |k|)
 *
 * Keys do not change while a decoder asks many queries of them, so each score
 * is split in two: score_keys_forward() prepares the keys once (Kp = K for
 * dot/scaled/cosine, K W^T for general, K U for additive, the key block of W
 * for concat), and score_forward() scores one query against the prepared keys.
 * Concat is additive with the two matrices stacked into one: W [q; k] =
 * W_top q + W_bottom k. The code says so by sharing the additive path.
 * ======================================================================== */

enum { SCORE_DOT, SCORE_SCALED_DOT, SCORE_GENERAL, SCORE_ADDITIVE, SCORE_CONCAT,
       SCORE_COSINE, SCORE_KINDS };
static const char *const score_names[] = {
    "dot", "scaled", "general", "additive", "concat", "cosine", NULL };

/* A score function and its parameters. The same struct, pointed at gradient
 * buffers, holds the parameter gradients. */
typedef struct {
    int kind;        /* SCORE_* */
    int Dq, Dk, A;   /* query size, key size, hidden size (additive, concat) */
    double *W;       /* general (Dk,Dq): row-major so K @ W = rows W_a k_i;
                        additive (Dq,A); concat (Dq+Dk,A), query rows first */
    double *U;       /* additive (Dk,A) */
    double *v;       /* additive, concat (A) */
} Score;

/* number of parameters of a score of this kind */
int score_num_params(int kind, int Dq, int Dk, int A) {
    switch (kind) {
    case SCORE_GENERAL:  return Dk * Dq;
    case SCORE_ADDITIVE: return Dq * A + Dk * A + A;
    case SCORE_CONCAT:   return (Dq + Dk) * A + A;
    default:             return 0;
    }
}

/* Point s at parameters laid out in mem (score_num_params doubles) in the
 * order W, U, v. mem may be NULL for a score without parameters. */
void score_bind(Score *s, double *mem, int kind, int Dq, int Dk, int A) {
    s->kind = kind; s->Dq = Dq; s->Dk = Dk; s->A = A;
    s->W = s->U = s->v = NULL;
    switch (kind) {
    case SCORE_GENERAL:  s->W = mem; break;
    case SCORE_ADDITIVE: s->W = mem; s->U = mem + Dq * A; s->v = s->U + Dk * A; break;
    case SCORE_CONCAT:   s->W = mem; s->v = mem + (Dq + Dk) * A; break;
    default: break;
    }
}

/* width P of one prepared key */
int score_key_width(const Score *s) {
    switch (s->kind) {
    case SCORE_GENERAL:  return s->Dq;
    case SCORE_ADDITIVE: case SCORE_CONCAT: return s->A;
    default:             return s->Dk;
    }
}

/* doubles of per-query cache score_forward needs for T keys */
int score_cache_size(const Score *s, int T) {
    switch (s->kind) {
    case SCORE_ADDITIVE: case SCORE_CONCAT: return (T + 1) * s->A;
    case SCORE_COSINE: return 2 * T + 1;
    default: return 0;
    }
}

/* The matrix that maps a key into the additive hidden space: U for additive,
 * the bottom (key) block of W for concat. */
static double *score_key_matrix(const Score *s) {
    return s->kind == SCORE_ADDITIVE ? s->U : s->W + s->Dq * s->A;
}

/* Kp (T,P) = prepared keys from K (T,Dk). */
void score_keys_forward(double *Kp, const double *K, int T, const Score *s) {
    switch (s->kind) {
    case SCORE_GENERAL:
        linear_forward(Kp, K, s->W, NULL, T, s->Dk, s->Dq); break;
    case SCORE_ADDITIVE: case SCORE_CONCAT:
        linear_forward(Kp, K, score_key_matrix(s), NULL, T, s->Dk, s->A); break;
    default:
        memcpy(Kp, K, sizeof(double) * (size_t)(T * s->Dk));
    }
}

/* dK (T,Dk) and the key-side parameter gradients in g += from dKp (T,P).
 * forward was: Kp = K @ W_key (general, additive, concat) or Kp = K
 * so dK += dKp @ W_key^T and dW_key += K^T @ dKp (linear_backward), or dK += dKp. */
void score_keys_backward(double *dK, Score *g, const double *dKp, const double *K,
                         int T, const Score *s) {
    switch (s->kind) {
    case SCORE_GENERAL:
        linear_backward(dK, g->W, NULL, dKp, K, s->W, T, s->Dk, s->Dq); break;
    case SCORE_ADDITIVE: case SCORE_CONCAT:
        linear_backward(dK, score_key_matrix(g), NULL, dKp, K, score_key_matrix(s),
                        T, s->Dk, s->A); break;
    default:
        if (dK) for (int i = 0; i < T * s->Dk; i++) dK[i] += dKp[i];
    }
}

/* e (T) = score(q, k_i) for the query q (Dq) against prepared keys Kp (T,P).
 * cache (score_cache_size) keeps what the backward needs: for additive and
 * concat the hidden vectors h_i = tanh(W q + Kp_i), (T,A), then W q, (A);
 * for cosine the key norms (T), the scores (T) and |q|. */
/* |x| (n) without overflow or underflow in the squares: the plain sum of
 * squares when |x| is between 1e-150 and 1e150 (then every square is safe
 * and the bits are the textbook ones), else the same sum taken over x / max|x|
 * and scaled back. |x| itself fits in a double whenever the x do. */
double vector_norm(const double *x, int n) {
    double ss = 0.0;
    for (int j = 0; j < n; j++) ss += x[j] * x[j];
    if (ss > 1e-300 && ss < 1e300) return sqrt(ss);
    double m = 0.0;
    for (int j = 0; j < n; j++) if (fabs(x[j]) > m) m = fabs(x[j]);
    if (m == 0.0 || !isfinite(m)) return m;
    ss = 0.0;
    for (int j = 0; j < n; j++) ss += (x[j] / m) * (x[j] / m);
    return m * sqrt(ss);
}

/* May the cosine score of vectors with norms nq and nk be taken the
 * textbook way, q.k / (|q||k|)? Yes unless a norm is below 1e-150 or above
 * 1e150, where products or squares would under- or overflow; those go
 * through the unit vectors instead. */
static int cosine_plain(double nq, double nk) {
    return nq >= 1e-150 && nq <= 1e150 && nk >= 1e-150 && nk <= 1e150;
}

void score_forward(double *e, double *cache, const double *q, const double *Kp, int T,
                   const Score *s) {
    const int P = score_key_width(s);
    switch (s->kind) {
    case SCORE_DOT: case SCORE_SCALED_DOT: case SCORE_GENERAL: {
        double scale = s->kind == SCORE_SCALED_DOT ? 1.0 / sqrt((double)s->Dk) : 1.0;
        for (int i = 0; i < T; i++) {
            const double *k = Kp + i * P;
            double d = 0.0;
            for (int j = 0; j < P; j++) d += q[j] * k[j];
            e[i] = d * scale;
        }
        break;
    }
    case SCORE_ADDITIVE: case SCORE_CONCAT: {
        const int A = s->A;
        double *wq = cache + T * A;             /* W q, shared by all keys */
        matmul_forward(wq, q, s->W, 1, s->Dq, A);
        for (int i = 0; i < T; i++)             /* pre-activations W q + Kp_i ... */
            for (int j = 0; j < A; j++) cache[i * A + j] = wq[j] + Kp[i * A + j];
        tanh_forward(cache, cache, T * A);      /* ... h_i = tanh(.), in one pass */
        for (int i = 0; i < T; i++) {
            double d = 0.0;
            for (int j = 0; j < A; j++) d += s->v[j] * cache[i * A + j];
            e[i] = d;
        }
        break;
    }
    case SCORE_COSINE: {                        /* cache: |k_i| (T), e (T), |q| */
        double *nk = cache, *ec = cache + T;
        const double nq = cache[2 * T] = vector_norm(q, P);
        for (int i = 0; i < T; i++) {
            const double *k = Kp + i * P;
            nk[i] = vector_norm(k, P);
            double d = 0.0;
            if (cosine_plain(nq, nk[i])) {       /* products and squares cannot overflow */
                for (int j = 0; j < P; j++) d += q[j] * k[j];
                const double den = nq * nk[i];
                d = den > 1e-300 ? d / den : 0.0;  /* a zero vector matches nothing */
            } else if (nq > 0.0 && nk[i] > 0.0) { /* huge or tiny: the unit vectors' dot */
                for (int j = 0; j < P; j++) d += (q[j] / nq) * (k[j] / nk[i]);
            }
            e[i] = ec[i] = d;
        }
        break;
    }
    }
}

/* dq (Dq), dKp (T,P) and the query-side parameter gradients in g += from
 * de (T). dq or dKp may be NULL. work: A doubles of scratch for additive and
 * concat (NULL is fine for the other kinds). */
void score_backward(double *dq, double *dKp, Score *g, const double *de,
                    const double *q, const double *Kp, const double *cache, int T,
                    const Score *s, double *work) {
    const int P = score_key_width(s);
    switch (s->kind) {
    case SCORE_DOT: case SCORE_SCALED_DOT: case SCORE_GENERAL: {
        /* forward was: e_i = scale * q . k_i, so dq += scale de_i k_i, dk_i += scale de_i q */
        double scale = s->kind == SCORE_SCALED_DOT ? 1.0 / sqrt((double)s->Dk) : 1.0;
        for (int i = 0; i < T; i++) {
            const double *k = Kp + i * P;
            double d = de[i] * scale;
            if (dq) for (int j = 0; j < P; j++) dq[j] += d * k[j];
            if (dKp) for (int j = 0; j < P; j++) dKp[i * P + j] += d * q[j];
        }
        break;
    }
    case SCORE_ADDITIVE: case SCORE_CONCAT: {
        /* forward was: h_i = tanh(W q + Kp_i); e_i = v . h_i
         * so dv += de_i h_i, dz_i = de_i v (1 - h_i^2), dKp_i += dz_i,
         * and with dwq = sum_i dz_i: dq += W dwq, dW += q dwq^T.
         * Key by key, so every inner loop runs along a row (stride 1). */
        const int A = s->A;
        double *dwq = work;
        for (int j = 0; j < A; j++) dwq[j] = 0.0;
        for (int i = 0; i < T; i++) {
            const double *h = cache + i * A;
            if (g->v) for (int j = 0; j < A; j++) g->v[j] += de[i] * h[j];
            for (int j = 0; j < A; j++) {
                double dz = de[i] * s->v[j] * (1.0 - h[j] * h[j]);
                if (dKp) dKp[i * A + j] += dz;
                dwq[j] += dz;
            }
        }
        for (int d = 0; d < s->Dq; d++) {
            const double *Wd = s->W + d * A;
            if (dq) {
                double acc = 0.0;
                for (int j = 0; j < A; j++) acc += Wd[j] * dwq[j];
                dq[d] += acc;
            }
            if (g->W) for (int j = 0; j < A; j++) g->W[d * A + j] += q[d] * dwq[j];
        }
        break;
    }
    case SCORE_COSINE: {
        /* forward was: e_i = q.k / (|q||k|)
         * so de/dq = k/(|q||k|) - e q/|q|^2 and de/dk = q/(|q||k|) - e k/|k|^2 */
        const double *nk = cache, *ec = cache + T, nq = cache[2 * T];
        for (int i = 0; i < T; i++) {
            const double *k = Kp + i * P;
            if (cosine_plain(nq, nk[i])) {
                if (nq * nk[i] <= 1e-300) continue;   /* e was pinned at 0 */
                const double den = nq * nk[i];
                for (int j = 0; j < P; j++) {
                    if (dq) dq[j] += de[i] * (k[j] / den - ec[i] * q[j] / (nq * nq));
                    if (dKp) dKp[i * P + j] += de[i] * (q[j] / den - ec[i] * k[j] / (nk[i] * nk[i]));
                }
            } else if (nq > 0.0 && nk[i] > 0.0) {
                /* the same, as (unit k - e unit q) / |q|: nothing squared */
                for (int j = 0; j < P; j++) {
                    const double uq = q[j] / nq, uk = k[j] / nk[i];
                    if (dq) dq[j] += de[i] * (uk - ec[i] * uq) / nq;
                    if (dKp) dKp[i * P + j] += de[i] * (uq - ec[i] * uk) / nk[i];
                }
            }
        }
        break;
    }
    }
}

/* The whole mechanism for one query:
 *   c (Dv) = sum_i a_i v_i,  a (T) = softmax over mask of score(q, k_i)
 * q (Dq), Kp (T,P) prepared keys, V (T,Dv), mask (T) or NULL, cache as in
 * score_forward. a receives the weights (it holds the raw scores in between). */
void attend_forward(double *c, double *a, double *cache, const double *q,
                    const double *Kp, const double *V, const unsigned char *mask,
                    int T, int Dv, const Score *s) {
    score_forward(a, cache, q, Kp, T, s);       /* step 1: e_i = score(q, k_i) */
    masked_softmax_forward(a, a, mask, T);      /* step 2: a = softmax(e)      */
    weighted_sum_forward(c, a, V, T, Dv);       /* step 3: c = sum_i a_i v_i   */
}

/* Backward of attend_forward, the three steps in reverse. dq, dKp, dV may be
 * NULL; g holds parameter gradients; work (2T + A) is scratch (A: the
 * score's hidden size, 0 for dot, scaled, general and cosine). */
void attend_backward(double *dq, double *dKp, double *dV, Score *g, const double *dc,
                     const double *q, const double *Kp, const double *V,
                     const double *a, const double *cache, int T, int Dv,
                     const Score *s, double *work) {
    double *da = work, *de = work + T;
    for (int i = 0; i < 2 * T; i++) work[i] = 0.0;
    weighted_sum_backward(da, dV, dc, a, V, T, Dv);     /* step 3: da = dc . v_i */
    softmax_backward(de, da, a, T);                     /* step 2: de            */
    score_backward(dq, dKp, g, de, q, Kp, cache, T, s, work + 2 * T); /* step 1 */
}

/* ========================================================================
 * 4. soft vs hard attention
 *
 * Soft attention reads c = sum_i a_i v_i: smooth, trained by backprop.
 * Hard attention picks ONE position i ~ a (argmax at inference) and reads
 * c = v_i. The pick is not differentiable, so the gradient of the expected
 * loss E_{i~a}[L_i] with respect to the scores is estimated with the
 * score-function (REINFORCE) estimator:
 *     grad_e E[L] = E_i[ (L_i - b) grad_e log a_i ],  grad_e log a_i = onehot(i) - a
 * which is unbiased for any baseline b that does not depend on i; a good b
 * (e.g. a running mean of L) lowers the variance.
 * ======================================================================== */

/* sample i ~ Categorical(a (T)); a must sum to 1 */
int hard_attention_sample(Rng *r, const double *a, int T) {
    double u = rng_uniform(r), cum = 0.0;
    for (int i = 0; i < T; i++) {
        cum += a[i];
        if (u < cum) return i;
    }
    for (int i = T - 1; i >= 0; i--) if (a[i] > 0) return i; /* rounding: last nonzero */
    return 0;
}

/* c (Dv) = v_i, the value at the chosen position */
void hard_attention_forward(double *c, int i, const double *V, int Dv) {
    memcpy(c, V + i * Dv, sizeof(double) * (size_t)Dv);
}

/* The value path of hard attention, ordinary backprop with i held fixed:
 * forward was: c = v_i, so dV[i] += dc (dV (T,Dv); every other row untouched). */
void hard_attention_value_backward(double *dV, const double *dc, int i, int Dv) {
    double *dv = dV + i * Dv;
    for (int j = 0; j < Dv; j++) dv[j] += dc[j];
}

/* The score path: REINFORCE for one sample i with advantage (L_i - b):
 *     de (T) += (L_i - b) * (onehot(i) - a)
 * (the value path is hard_attention_value_backward above). */
void hard_attention_backward(double *de, double advantage, int i, const double *a, int T) {
    for (int j = 0; j < T; j++) de[j] += advantage * ((j == i ? 1.0 : 0.0) - a[j]);
}

/* Training hard attention on a toy task: among T keys with N(0,1) entries
 * (width D), pick the one whose first entry is largest. A learned query w (D)
 * scores key i by w . k_i; the loss is 0 for the right pick and 1 otherwise,
 * which has no gradient at all: only REINFORCE can train w.
 * One step on a fresh example: sample i ~ a, then w -= lr * dw with
 * de = (L_i - b)(onehot(i) - a). *baseline is the running mean of L
 * (updated here), or NULL for b = 0. work: T*D + 2T + D doubles. Returns L_i. */
double hard_attention_train_step(Rng *r, double *w, double *baseline, int T, int D,
                                 double lr, double *work) {
    double *K = work, *a = K + T * D, *de = a + T, *dw = de + T;
    Score s;
    score_bind(&s, NULL, SCORE_DOT, D, D, 0);
    rng_fill_normal(r, K, T * D, 1.0);
    int best = 0;
    for (int i = 1; i < T; i++) if (K[i * D] > K[best * D]) best = i;
    score_forward(a, NULL, w, K, T, &s);
    softmax_forward(a, a, T);
    int i = hard_attention_sample(r, a, T);
    double L = i == best ? 0.0 : 1.0, b = baseline ? *baseline : 0.0;
    for (int j = 0; j < T; j++) de[j] = 0.0;
    for (int j = 0; j < D; j++) dw[j] = 0.0;
    hard_attention_backward(de, L - b, i, a, T);
    /* forward was: e_i = w . k_i (score_forward), so dw += sum_i de_i k_i; the
     * dot score has no parameters, so s also serves as its (empty) gradient */
    score_backward(dw, NULL, &s, de, w, K, NULL, T, &s, NULL);
    sgd_update(w, dw, D, lr);
    if (baseline) *baseline = 0.99 * *baseline + 0.01 * L;
    return L;
}

/* fraction of n fresh examples on which the argmax of w . k_i is the key
 * with the largest first entry (chance: 1/T). work: T*D + T doubles. */
double hard_attention_accuracy(Rng *r, const double *w, int T, int D, int n, double *work) {
    double *K = work, *e = K + T * D;
    Score s;
    score_bind(&s, NULL, SCORE_DOT, D, D, 0);
    int right = 0;
    for (int k = 0; k < n; k++) {
        rng_fill_normal(r, K, T * D, 1.0);
        int best = 0;
        for (int i = 1; i < T; i++) if (K[i * D] > K[best * D]) best = i;
        score_forward(e, NULL, w, K, T, &s);
        right += argmax(e, T) == best;
    }
    return (double)right / n;
}

/* ========================================================================
 * 5. global vs local attention (Luong et al. 2015)
 *
 * Global attention looks at every source position. Local attention looks at
 * a window [p - D, p + D] around an aligned position p:
 *   local-m  p = t, the target step (monotonic alignment);
 *   local-p  p = S * sigmoid(v_p^T tanh(W_p h)) is predicted from the decoder
 *            state h, and the window's weights are multiplied by a Gaussian
 *            exp(-(s - p)^2 / (2 sigma^2)), sigma = D / 2, so that the loss
 *            is differentiable in p and W_p, v_p learn where to look.
 * We number source positions 0..S-1, so local-p uses (S - 1) * sigmoid(...)
 * to keep p on the source. (In the functions below, T = S keys.)
 *
 * What the window saves: outside it every weight is 0, so nothing there
 * needs computing. local_window() finds the window's n <= 2D + 1 positions,
 * and local_m_window_forward() / local_p_window_forward() score, normalise
 * and read only those: O(D) work per target step instead of O(T).
 * local_p_attend_forward() below is the same computation written into
 * arrays as long as the source (zeros outside the window), the form chapter
 * 2 keeps. Local-m can also be run as local_window_mask() + attend_forward()
 * with the mask: that scores all T keys and keeps n of them, the same
 * weights and context bit for bit at T/n times the scoring (chapter 2 calls
 * local_m_window_forward(), the window only).
 * ======================================================================== */

/* The window: the positions i of 0..T-1 with |i - p| <= D. They are
 * consecutive, so they are *lo, *lo + 1, .., *lo + n - 1; returns n, which is
 * 2D + 1 in the middle, fewer where the window is clipped at an end of the
 * source, and 0 where it misses the source (local-m at t > T - 1 + D). */
int local_window(int *lo, double p, int D, int T) {
    double first = ceil(p - D) - 1, last = floor(p + D) + 1;   /* a spare each side */
    *lo = 0;
    if (!(first <= T - 1 && last >= 0)) return 0;   /* off the source, or p is NaN */
    int i = first > 0 ? (int)first : 0, h = last < T - 1 ? (int)last : T - 1;
    while (i <= h && !(fabs(i - p) <= D)) i++;      /* the test itself decides the */
    while (h >= i && !(fabs(h - p) <= D)) h--;      /* ends: p - D, i - p are rounded */
    *lo = i;
    return h - i + 1;
}

/* mask (T) = 1 where |i - p| <= D, else 0 */
void local_window_mask(unsigned char *mask, double p, int D, int T) {
    int lo, n = local_window(&lo, p, D, T);
    for (int i = 0; i < T; i++) mask[i] = i >= lo && i < lo + n;
}

/* Local-m attention on its window only: global attention (attend_forward)
 * over the n keys and values from row lo, (lo, n) = local_window(t, D, T):
 *   a (n) = softmax_i score(q, k_{lo+i}),  c (Dv) = sum_i a_i v_{lo+i}
 * q (Dq), Kp (T,P) and V (T,Dv) are the whole source; n scores, not T.
 * cache: score_cache_size(s, n) doubles. n = 0 gives c = 0. */
void local_m_window_forward(double *c, double *a, double *cache, const double *q,
                            const double *Kp, const double *V, int lo, int n, int Dv,
                            const Score *s) {
    const int P = score_key_width(s);
    attend_forward(c, a, cache, q, Kp + lo * P, V + lo * Dv, NULL, n, Dv, s);
}

/* forward was: attend_forward(c, a, cache, q, Kp + lo P, V + lo Dv, NULL, n, ..)
 * so attend_backward on the same rows: dKp (T,P) and dV (T,Dv) receive
 * gradient only in rows lo..lo+n-1. dq, dKp, dV may be NULL; work (2n + A). */
void local_m_window_backward(double *dq, double *dKp, double *dV, Score *g,
                             const double *dc, const double *q, const double *Kp,
                             const double *V, const double *a, const double *cache,
                             int lo, int n, int Dv, const Score *s, double *work) {
    const int P = score_key_width(s);
    attend_backward(dq, dKp ? dKp + lo * P : NULL, dV ? dV + lo * Dv : NULL, g, dc, q,
                    Kp + lo * P, V + lo * Dv, a, cache, n, Dv, s, work);
}

/* local-p's Gaussian at position i: exp(-(i - p)^2 / (2 sigma^2)), sigma = D/2 */
static double local_gaussian(int i, double p, int D) {
    const double sigma = D / 2.0;
    return exp(-(i - p) * (i - p) / (2.0 * sigma * sigma));
}

/* Local-p attention on its window only, (lo, n) = local_window(p, D, T):
 *   align (n) = softmax_i score(q, k_{lo+i})
 *   a (n)     = align_i * gaussian(lo + i),  sigma = D / 2
 *   c (Dv)    = sum_i a_i v_{lo+i}
 * q (Dq), Kp (T,P), V (T,Dv) the whole source; align and a are kept for the
 * backward; cache: score_cache_size(s, n) doubles. D >= 1. c jumps where a
 * position enters or leaves the window (its Gaussian is e^-2 there, not 0);
 * elsewhere it is smooth in p, and the backward is for the current window. */
void local_p_window_forward(double *c, double *a, double *align, double *cache,
                            const double *q, const double *Kp, const double *V, double p,
                            int lo, int n, int D, int Dv, const Score *s) {
    const int P = score_key_width(s);
    score_forward(align, cache, q, Kp + lo * P, n, s);   /* n scores, not T */
    softmax_forward(align, align, n);
    for (int i = 0; i < n; i++) a[i] = align[i] * local_gaussian(lo + i, p, D);
    weighted_sum_forward(c, a, V + lo * Dv, n, Dv);
}

/* Backward of local_p_window_forward; *dp += the gradient through the
 * Gaussian (hand it to local_position_backward). dKp (T,P) and dV (T,Dv)
 * receive gradient only in rows lo..lo+n-1; dq, dKp, dV may be NULL.
 * work (2n + A) is scratch. */
void local_p_window_backward(double *dq, double *dKp, double *dV, double *dp, Score *g,
                             const double *dc, const double *q, const double *Kp,
                             const double *V, const double *a, const double *align,
                             const double *cache, double p, int lo, int n, int D, int Dv,
                             const Score *s, double *work) {
    const int P = score_key_width(s);
    const double sigma = D / 2.0;
    double *da = work, *de = work + n;
    for (int i = 0; i < 2 * n; i++) work[i] = 0.0;
    weighted_sum_backward(da, dV ? dV + lo * Dv : NULL, dc, a, V + lo * Dv, n, Dv);
    for (int i = 0; i < n; i++) {
        /* forward was: a_i = align_i g_i, g_i = exp(-(lo+i-p)^2 / (2 sigma^2))
         * so dalign_i = da_i g_i and dp += da_i align_i g_i (lo+i - p) / sigma^2 */
        double gi = local_gaussian(lo + i, p, D);
        *dp += da[i] * align[i] * gi * (lo + i - p) / (sigma * sigma);
        da[i] *= gi;
    }
    softmax_backward(de, da, align, n);   /* forward was: align = softmax(e) */
    score_backward(dq, dKp ? dKp + lo * P : NULL, g, de, q, Kp + lo * P, cache, n, s,
                   work + 2 * n);
}

/* p = (S - 1) sigmoid(v_p . tanh(h W_p)) for h (H); W_p (H,Ap), v_p (Ap).
 * z (Ap) keeps tanh(h W_p) for the backward. Returns p. */
double local_position_forward(double *z, const double *h, const double *Wp,
                              const double *vp, int S, int H, int Ap) {
    matmul_forward(z, h, Wp, 1, H, Ap);
    tanh_forward(z, z, Ap);
    double u = 0.0;
    for (int j = 0; j < Ap; j++) u += vp[j] * z[j];
    return (S - 1) * sigmoid(u);
}

/* forward was: p = (S-1) sigmoid(u), u = v_p . z, z = tanh(h W_p)
 * so du = dp (S-1) s (1-s) with s = p/(S-1); dv_p += du z;
 * dz = du v_p (1 - z^2); dh += W_p dz; dW_p += h dz^T.
 * dh may be NULL; work (Ap) is scratch. */
void local_position_backward(double *dh, double *dWp, double *dvp, double dp,
                             const double *h, const double *z, double p,
                             const double *Wp, const double *vp, int S, int H, int Ap,
                             double *work) {
    if (S <= 1) return;                         /* p is pinned at 0 */
    double sg = p / (S - 1);
    double du = dp * (S - 1) * sg * (1.0 - sg);
    for (int j = 0; j < Ap; j++) {
        dvp[j] += du * z[j];
        work[j] = du * vp[j] * (1.0 - z[j] * z[j]);
    }
    linear_backward(dh, dWp, NULL, work, h, Wp, 1, H, Ap);
}

/* Local-p attention for one query q against prepared keys Kp (T,P), in
 * arrays over the whole source:
 *   align = softmax over the window |i - p| <= D of score(q, k_i)
 *   a_i   = align_i * exp(-(i - p)^2 / (2 sigma^2)),  sigma = D / 2
 *   c     = sum_i a_i v_i
 * It is local_p_window_forward with zeros written around the window, so it
 * too scores only the window. align, a (T) and mask (T) are kept for the
 * backward; cache as score_forward's for T keys is enough. D >= 1. */
void local_p_attend_forward(double *c, double *a, double *align, unsigned char *mask,
                            double *cache, const double *q, const double *Kp,
                            const double *V, double p, int D, int T, int Dv,
                            const Score *s) {
    int lo, n = local_window(&lo, p, D, T);
    for (int i = 0; i < T; i++) {
        mask[i] = i >= lo && i < lo + n;
        a[i] = align[i] = 0.0;                  /* outside the window: weight 0 */
    }
    local_p_window_forward(c, a + lo, align + lo, cache, q, Kp, V, p, lo, n, D, Dv, s);
}

/* Backward of local_p_attend_forward: local_p_window_backward on the same
 * window; *dp receives the gradient through the Gaussian (hand it to
 * local_position_backward). work (2T + A) is scratch. */
void local_p_attend_backward(double *dq, double *dKp, double *dV, double *dp, Score *g,
                             const double *dc, const double *q, const double *Kp,
                             const double *V, const double *a, const double *align,
                             const double *cache, double p, int D, int T, int Dv,
                             const Score *s, double *work) {
    int lo, n = local_window(&lo, p, D, T);
    local_p_window_backward(dq, dKp, dV, dp, g, dc, q, Kp, V, a + lo, align + lo, cache, p,
                            lo, n, D, Dv, s, work);
}

/* ========================================================================
 * 6. self-attention and multi-head attention
 *
 * In self-attention the queries, keys and values all come from the same
 * sequence X (T,D): Q = X W_q, K = X W_k, V = X W_v, and
 *     out = softmax(Q K^T / sqrt(dk) + mask) V
 * Each row is attend_forward with the scaled dot score (section 2); all rows
 * at once it is two matrix products on the matmul kernel (sdpa_forward).
 * Masks: key_mask (Tk) marks real keys (1) vs padding (0), NULL = all real;
 * causal = 1 lets query i see only keys j <= i.
 * ======================================================================== */

/* the `causal` argument of the functions below, by name */
enum { NOT_CAUSAL = 0, CAUSAL = 1 };

/* out (Tq,dv), P (Tq,Tk) = scaled dot-product attention of Q (Tq,dk) over
 * K (Tk,dk), V (Tk,dv). A causal row i uses keys 0..i only. Row i is the
 * three steps of section 2 for query i (scaled dot score, masked softmax,
 * weighted sum); all rows at once they are two matrix products:
 *     S = Q K^T / sqrt(dk) (masked),  P = softmax(S) by rows,  out = P V */
void sdpa_forward(double *out, double *P, const double *Q, const double *K,
                  const double *V, const unsigned char *key_mask, int causal,
                  int Tq, int Tk, int dk, int dv) {
    const double scale = 1.0 / sqrt((double)dk);
    matmul_nt_forward(P, Q, K, Tq, dk, Tk);            /* S = Q K^T, every row */
    for (int i = 0; i < Tq; i++) {
        const int n = causal && i + 1 < Tk ? i + 1 : Tk;   /* keys row i may see */
        double *p = P + i * Tk;
        for (int j = 0; j < n; j++) p[j] *= scale;
        masked_softmax_forward(p, p, key_mask, n);
        for (int j = n; j < Tk; j++) p[j] = 0.0;      /* the future: weight 0 */
    }
    matmul_forward(out, P, V, Tq, Tk, dv);             /* out = P V */
}

/* Backward of sdpa_forward: dQ (Tq,dk), dK (Tk,dk), dV (Tk,dv) +=.
 * work (Tq*Tk) is scratch. With dP = dout V^T,
 *     dV += P^T dout,   dS = P * (dP - rowsum(P * dP)) / sqrt(dk)   (softmax'),
 *     dQ += dS K,       dK += dS^T Q.
 * Masked weights are 0, so their dS is 0; a causal row i stops at key i.
 * The row loop below is softmax_backward's identity, written inline rather
 * than called: softmax_backward adds into a second array, and dS overwrites
 * dP in place here, so a call would need another (Tk) of scratch in every
 * caller's work (and in mha_cache_size). */
void sdpa_backward(double *dQ, double *dK, double *dV, const double *dout,
                   const double *Q, const double *K, const double *V, const double *P,
                   int causal, int Tq, int Tk, int dk, int dv, double *work) {
    const double scale = 1.0 / sqrt((double)dk);
    double *dS = work;
    matmul_nt_forward(dS, dout, V, Tq, dv, Tk);       /* forward was: out = P V */
    matmul_tn_add(dV, P, dout, Tk, Tq, dv);
    for (int i = 0; i < Tq; i++) {
        /* forward was: masked_softmax_forward(p, p, key_mask, n) on row i of S,
         * so, as in softmax_backward: dS_i = p * (dP_i - sum(p * dP_i)) */
        const int n = causal && i + 1 < Tk ? i + 1 : Tk;
        const double *p = P + i * Tk;
        double *d = dS + i * Tk, dot = 0.0;
        for (int j = 0; j < n; j++) dot += p[j] * d[j];
        for (int j = 0; j < n; j++) d[j] = p[j] * (d[j] - dot) * scale;
        for (int j = n; j < Tk; j++) d[j] = 0.0;
    }
    matmul_nn_add(dQ, dS, K, Tq, Tk, dk);             /* forward was: S = Q K^T scale */
    matmul_tn_add(dK, dS, Q, Tk, Tq, dk);
}

/* ---- tiled attention: the same result in O(T) memory ---------------------
 * sdpa_forward keeps P, the (Tq,Tk) matrix of weights: at Tq = Tk = 16384
 * that is 2 GiB. The tiled version (the idea behind FlashAttention, Dao et
 * al. 2022) never stores it. It walks the keys in blocks of TILE and keeps,
 * for every query row, a running max m, a running sum l of exp(s - m) and an
 * unnormalised output. When a new block raises the max, what was summed so
 * far is rescaled by exp(m_old - m_new) ("online softmax"):
 *     m' = max(m, max_j s_j)    l' = l e^(m - m') + sum_j e^(s_j - m')
 *     o' = o e^(m - m') + sum_j e^(s_j - m') v_j       out = o / l
 * The backward recomputes each block of P from the saved log-sum-exp
 * L_i = m_i + log l_i (P_ij = exp(s_ij - L_i)) instead of reading it back.
 * Working memory: two TILE x TILE blocks, whatever T is. */

enum { TILE = 64 };

/* doubles of scratch tiled_attention_forward/backward need */
int tiled_attention_work_size(void) { return 2 * TILE * TILE + 3 * TILE; }

/* S (bq,bk) = Q_blk K_blk^T * scale, with masked entries set to -inf:
 * key j is visible to query i if key_mask[j] (NULL: all) and, if causal,
 * j <= i. i0, j0 are the blocks' first rows. Returns 1 if any entry is visible. */
static int tiled_scores(double *S, const double *Q, const double *K,
                        const unsigned char *key_mask, int causal, int i0, int j0,
                        int bq, int bk, int dk, double scale) {
    matmul_nt_forward(S, Q + i0 * dk, K + j0 * dk, bq, dk, bk);
    int any = 0;
    for (int i = 0; i < bq; i++)
        for (int j = 0; j < bk; j++) {
            int visible = (!key_mask || key_mask[j0 + j]) && (!causal || j0 + j <= i0 + i);
            S[i * bk + j] = visible ? S[i * bk + j] * scale : -INFINITY;
            any |= visible;
        }
    return any;
}

/* out (Tq,dv) = softmax(Q K^T / sqrt(dk), masked) V, exactly as sdpa_forward,
 * without the (Tq,Tk) matrix. lse (Tq) keeps each row's log-sum-exp for the
 * backward (+inf for a row with no visible key: its output is 0).
 * work: tiled_attention_work_size() doubles. */
void tiled_attention_forward(double *out, double *lse, const double *Q, const double *K,
                             const double *V, const unsigned char *key_mask, int causal,
                             int Tq, int Tk, int dk, int dv, double *work) {
    const double scale = 1.0 / sqrt((double)dk);
    double *S = work, *m = work + 2 * TILE * TILE, *l = m + TILE;
    for (int i0 = 0; i0 < Tq; i0 += TILE) {
        const int bq = Tq - i0 < TILE ? Tq - i0 : TILE;
        double *o = out + i0 * dv;
        memset(o, 0, sizeof(double) * (size_t)(bq * dv));
        for (int i = 0; i < bq; i++) { m[i] = -INFINITY; l[i] = 0.0; }
        for (int j0 = 0; j0 < Tk; j0 += TILE) {
            const int bk = Tk - j0 < TILE ? Tk - j0 : TILE;
            if (causal && j0 > i0 + bq - 1) break;            /* all in the future */
            if (!tiled_scores(S, Q, K, key_mask, causal, i0, j0, bq, bk, dk, scale)) continue;
            for (int i = 0; i < bq; i++) {
                double *s = S + i * bk, mnew = m[i];
                for (int j = 0; j < bk; j++) if (s[j] > mnew) mnew = s[j];
                if (mnew == -INFINITY) {                       /* nothing visible here */
                    for (int j = 0; j < bk; j++) s[j] = 0.0;
                    continue;
                }
                double rescale = exp(m[i] - mnew);             /* 0 on the first block */
                l[i] *= rescale;
                for (int c = 0; c < dv; c++) o[i * dv + c] *= rescale;
                for (int j = 0; j < bk; j++) {                 /* S becomes exp(s - m') */
                    s[j] = exp(s[j] - mnew);
                    l[i] += s[j];
                }
                m[i] = mnew;
            }
            matmul_nn_add(o, S, V + j0 * dv, bq, bk, dv);     /* o += P_blk V_blk */
        }
        for (int i = 0; i < bq; i++) {
            if (l[i] == 0.0) { lse[i0 + i] = INFINITY; continue; } /* fully masked row */
            for (int c = 0; c < dv; c++) o[i * dv + c] /= l[i];
            lse[i0 + i] = m[i] + log(l[i]);
        }
    }
}

/* Backward of tiled_attention_forward: dQ (Tq,dk), dK (Tk,dk), dV (Tk,dv) +=.
 * Recomputes P block by block; with D_i = dout_i . out_i,
 *     dV += P^T dout,  dP = dout V^T,  dS = P * (dP - D_i),
 *     dQ += dS K / sqrt(dk),  dK += dS^T Q / sqrt(dk).
 * dS is softmax_backward's p * (dp - sum_j p_j dp_j), the same identity: since
 * out_i = sum_j P_ij v_j and dP_ij = dout_i . v_j,
 *     sum_j P_ij dP_ij = dout_i . sum_j P_ij v_j = dout_i . out_i = D_i.
 * The tiled form needs it because a block sees only part of row i of P, so
 * sum_j P_ij dP_ij is not at hand; D_i is, from the saved output, before any
 * block is visited (the FlashAttention backward, Dao et al. 2022).
 * work: tiled_attention_work_size() doubles. */
void tiled_attention_backward(double *dQ, double *dK, double *dV, const double *dout,
                              const double *Q, const double *K, const double *V,
                              const double *out, const double *lse,
                              const unsigned char *key_mask, int causal, int Tq, int Tk,
                              int dk, int dv, double *work) {
    const double scale = 1.0 / sqrt((double)dk);
    double *P = work, *dP = work + TILE * TILE, *D = dP + TILE * TILE;
    for (int i0 = 0; i0 < Tq; i0 += TILE) {
        const int bq = Tq - i0 < TILE ? Tq - i0 : TILE;
        for (int i = 0; i < bq; i++) {                /* D_i = sum_c dout_ic out_ic */
            D[i] = 0.0;
            for (int c = 0; c < dv; c++) D[i] += dout[(i0 + i) * dv + c] * out[(i0 + i) * dv + c];
        }
        for (int j0 = 0; j0 < Tk; j0 += TILE) {
            const int bk = Tk - j0 < TILE ? Tk - j0 : TILE;
            if (causal && j0 > i0 + bq - 1) break;
            if (!tiled_scores(P, Q, K, key_mask, causal, i0, j0, bq, bk, dk, scale)) continue;
            for (int i = 0; i < bq; i++)                  /* P = exp(S - L), recomputed */
                for (int j = 0; j < bk; j++) P[i * bk + j] = exp(P[i * bk + j] - lse[i0 + i]);
            matmul_tn_add(dV + j0 * dv, P, dout + i0 * dv, bk, bq, dv);
            matmul_nt_forward(dP, dout + i0 * dv, V + j0 * dv, bq, dv, bk);
            for (int i = 0; i < bq; i++)                  /* dS, scaled, into dP */
                for (int j = 0; j < bk; j++)
                    dP[i * bk + j] = P[i * bk + j] * (dP[i * bk + j] - D[i]) * scale;
            matmul_nn_add(dQ + i0 * dk, dP, K + j0 * dk, bq, bk, dk);
            matmul_tn_add(dK + j0 * dk, dP, Q + i0 * dk, bk, bq, dk);
        }
    }
}

/* Multi-head attention (Vaswani et al. 2017), over a batch of B examples:
 *     Q = Xq W_q, K = Xkv W_k, V = Xkv W_v                (project)
 *     split each into H heads of width dh = D / H          (split heads)
 *     O_h = sdpa(Q_h, K_h, V_h), per example and head      (attend)
 *     out = concat(O_1..O_H) W_o                            (concatenate, mix)
 * The projections act on each row alone, so they run once over all B*T rows
 * (one large matrix product is faster than B small ones); only the attention
 * core, which mixes the positions of one example, runs per example and head.
 * Self-attention passes Xkv = Xq; cross-attention passes the encoder's output. */
typedef struct {
    double *Wq, *Wk, *Wv, *Wo;  /* each (D,D) */
} Mha;

/* number of parameters of multi-head attention of width D (no biases) */
int mha_num_params(int D) { return 4 * D * D; }

/* point m at 4 D*D parameters in mem, in the order Wq, Wk, Wv, Wo */
void mha_bind(Mha *m, double *mem, int D) {
    m->Wq = mem; m->Wk = mem + D * D; m->Wv = mem + 2 * D * D; m->Wo = mem + 3 * D * D;
}

/* The activations one call keeps for its backward (and the same shapes,
 * in a second block, serve the backward as scratch), example after example,
 * so example b's weights are at P + b*H*Tq*Tk. */
typedef struct {
    double *Q, *K, *V;      /* (B,Tq,D), (B,Tk,D), (B,Tk,D) projections */
    double *Qh, *Kh, *Vh;   /* (B,H,Tq,dh), (B,H,Tk,dh), (B,H,Tk,dh) split into heads */
    double *P;              /* (B,H,Tq,Tk) attention weights of every head */
    double *Oh;             /* (B,H,Tq,dh) per-head outputs */
    double *O;              /* (B,Tq,D) heads concatenated */
    double *work;           /* (Tq,Tk) scratch for sdpa_backward */
} MhaCache;

/* doubles one MhaCache needs: B examples, Tq queries over Tk keys, width D, H heads */
int mha_cache_size(int B, int Tq, int Tk, int D, int H) {
    return B * (4 * Tq * D + 4 * Tk * D + H * Tq * Tk) + Tq * Tk;
}

/* Point c's arrays into mem (mha_cache_size doubles, owned by the caller). */
void mha_cache_bind(MhaCache *c, double *mem, int B, int Tq, int Tk, int D, int H) {
    c->Q = mem;            mem += B * Tq * D;
    c->K = mem;            mem += B * Tk * D;
    c->V = mem;            mem += B * Tk * D;
    c->Qh = mem;           mem += B * Tq * D;
    c->Kh = mem;           mem += B * Tk * D;
    c->Vh = mem;           mem += B * Tk * D;
    c->P = mem;            mem += B * H * Tq * Tk;
    c->Oh = mem;           mem += B * Tq * D;
    c->O = mem;            mem += B * Tq * D;
    c->work = mem;
}

/* Xh (B,H,T,dh) = X (B,T,D) split into heads: Xh[b][h][t][j] = X[b][t][h*dh + j]
 * (a copy; a loop rather than memcpy, since a head's row is short) */
void split_heads(double *Xh, const double *X, int B, int T, int H, int dh) {
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++) {
                double *xh = Xh + ((b * H + h) * T + t) * dh;
                const double *x = X + (b * T + t) * H * dh + h * dh;
                for (int j = 0; j < dh; j++) xh[j] = x[j];
            }
}

/* X (B,T,D) = Xh (B,H,T,dh) with the heads side by side: the inverse copy */
void merge_heads(double *X, const double *Xh, int B, int T, int H, int dh) {
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++) {
                double *x = X + (b * T + t) * H * dh + h * dh;
                const double *xh = Xh + ((b * H + h) * T + t) * dh;
                for (int j = 0; j < dh; j++) x[j] = xh[j];
            }
}

/* out (B,Tq,D) = multi-head attention of each example of Xq (B,Tq,D) over
 * the same example of Xkv (B,Tk,D); key_mask (B,Tk) marks real keys, or NULL. */
void mha_forward(double *out, MhaCache *c, const double *Xq, const double *Xkv,
                 const Mha *m, const unsigned char *key_mask, int causal,
                 int B, int Tq, int Tk, int D, int H) {
    const int dh = D / H;
    matmul_forward(c->Q, Xq, m->Wq, B * Tq, D, D);     /* project: every row at once */
    matmul_forward(c->K, Xkv, m->Wk, B * Tk, D, D);
    matmul_forward(c->V, Xkv, m->Wv, B * Tk, D, D);
    for (int b = 0; b < B; b++) {                      /* attend: per example ... */
        /* split, attend and merge one example at a time, so that its heads
         * are still in cache when they are used (the whole batch's are not) */
        const int q0 = b * Tq * D, k0 = b * Tk * D;    /* example b in (B,T,D) and (B,H,T,dh) */
        split_heads(c->Qh + q0, c->Q + q0, 1, Tq, H, dh);
        split_heads(c->Kh + k0, c->K + k0, 1, Tk, H, dh);
        split_heads(c->Vh + k0, c->V + k0, 1, Tk, H, dh);
        for (int h = 0; h < H; h++) {                  /* ... and per head */
            const int bh = b * H + h;
            sdpa_forward(c->Oh + bh * Tq * dh, c->P + bh * Tq * Tk, c->Qh + bh * Tq * dh,
                         c->Kh + bh * Tk * dh, c->Vh + bh * Tk * dh,
                         key_mask ? key_mask + b * Tk : NULL, causal, Tq, Tk, dh, dh);
        }
        merge_heads(c->O + q0, c->Oh + q0, 1, Tq, H, dh);
    }
    matmul_forward(out, c->O, m->Wo, B * Tq, D, D);    /* mix: every row at once */
}

/* Backward of mha_forward. dXq (B,Tq,D), dXkv (B,Tk,D) += (they may be the
 * same array, for self-attention); dm holds the weight gradients (+=); g is
 * scratch bound like the cache (mha_cache_bind on a second block), which
 * this function overwrites. */
void mha_backward(double *dXq, double *dXkv, Mha *dm, const double *dout,
                  const double *Xq, const double *Xkv, const Mha *m, const MhaCache *c,
                  MhaCache *g, int causal, int B, int Tq, int Tk, int D, int H) {
    const int dh = D / H;
    /* forward was: out = O @ W_o, over every row; so dO = dout @ W_o^T (into
     * scratch: written, not added) and dW_o += O^T @ dout */
    matmul_nt_forward(g->O, dout, m->Wo, B * Tq, D, D);
    matmul_tn_add(dm->Wo, c->O, dout, D, B * Tq, D);
    for (int b = 0; b < B; b++) {                      /* one example at a time, as forward */
        const int q0 = b * Tq * D, k0 = b * Tk * D;
        /* forward was: O = merge(Oh), so dOh = split(dO) */
        split_heads(g->Oh + q0, g->O + q0, 1, Tq, H, dh);
        memset(g->Qh + q0, 0, sizeof(double) * (size_t)(Tq * D));
        memset(g->Kh + k0, 0, sizeof(double) * (size_t)(Tk * D));
        memset(g->Vh + k0, 0, sizeof(double) * (size_t)(Tk * D));
        for (int h = 0; h < H; h++) {
            const int bh = b * H + h;
            sdpa_backward(g->Qh + bh * Tq * dh, g->Kh + bh * Tk * dh, g->Vh + bh * Tk * dh,
                          g->Oh + bh * Tq * dh, c->Qh + bh * Tq * dh, c->Kh + bh * Tk * dh,
                          c->Vh + bh * Tk * dh, c->P + bh * Tq * Tk, causal, Tq, Tk, dh, dh,
                          g->work);
        }
        /* forward was: Qh = split(Q), so dQ = merge(dQh); the same for K, V */
        merge_heads(g->Q + q0, g->Qh + q0, 1, Tq, H, dh);
        merge_heads(g->K + k0, g->Kh + k0, 1, Tk, H, dh);
        merge_heads(g->V + k0, g->Vh + k0, 1, Tk, H, dh);
    }
    /* forward was: Q = Xq W_q, K = Xkv W_k, V = Xkv W_v, over every row */
    matmul_backward(dXq, dm->Wq, g->Q, Xq, m->Wq, B * Tq, D, D);
    matmul_backward(dXkv, dm->Wk, g->K, Xkv, m->Wk, B * Tk, D, D);
    matmul_backward(dXkv, dm->Wv, g->V, Xkv, m->Wv, B * Tk, D, D);
}

/* ************************************************************************
 * PART II. THE PROGRAMS
 *
 * What the chapters' programs need around the lesson: files, options,
 * layouts, pictures, toy data, the fast kernels behind section 1, and
 * chapter 1's tour and benchmark.
 * ************************************************************************ */

/* ========================================================================
 * 7. plumbing: files, divergence, options, layouts, a timer
 * ======================================================================== */

/* text wrapped at its spaces to `width` columns (a run of spaces where a
 * line breaks is dropped), continuation lines starting with indent, in a
 * new block the caller frees; a '\n' in text ends a line. Widths count
 * UTF-8 characters; a word wider than a line (a long path) stays whole. */
char *wrap_text(const char *indent, const char *text, int width) {
    const size_t il = strlen(indent);
    char *out = xmalloc(strlen(text) * (il + 2) + 1), *o = out;   /* room for a break per word */
    int col = 0;
    for (const char *p = text; *p;) {
        if (*p == '\n') { *o++ = *p++; col = 0; continue; }
        const char *sp = p;
        while (*p == ' ') p++;
        const char *w = p;
        int wl = 0;
        for (; *p && *p != ' ' && *p != '\n'; p++) wl += ((unsigned char)*p & 0xC0) != 0x80;
        int nsp = (int)(w - sp);
        if (col > 0 && wl > 0 && col + nsp + wl > width) {
            *o++ = '\n';
            memcpy(o, indent, il); o += il;
            col = (int)il; nsp = 0;
        }
        memset(o, ' ', (size_t)nsp); o += nsp;
        memcpy(o, w, (size_t)(p - w)); o += p - w;
        col += nsp + wl;
    }
    *o = '\0';
    return out;
}

/* vfprintf fmt to f wrapped to 79 columns (continuations indented 2), then
 * a newline: the form of every message on stderr */
void vfprint_wrapped(FILE *f, const char *fmt, va_list ap) {
    va_list aq;
    va_copy(aq, ap);
    const int n = vsnprintf(NULL, 0, fmt, ap);
    char *text = xmalloc((size_t)(n > 0 ? n : 0) + 1);
    vsnprintf(text, (size_t)(n > 0 ? n : 0) + 1, fmt, aq);
    va_end(aq);
    char *w = wrap_text("  ", text, 79);
    fprintf(f, "%s\n", w);
    free(w);
    free(text);
}

void fprint_wrapped(FILE *f, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfprint_wrapped(f, fmt, ap);
    va_end(ap);
}

/* fopen that never returns NULL: on failure it says which file and why, exit 1. */
FILE *xfopen_at(const char *path, const char *mode, const char *file, int line) {
    FILE *f = fopen(path, mode);
    if (!f) {
        fprint_wrapped(stderr, "%s:%d: cannot open '%s' (mode %s): %s",
                file, line, path, mode, strerror(errno));
        exit(1);
    }
    return f;
}
#define xfopen(path, mode) xfopen_at((path), (mode), __FILE__, __LINE__)

/* "dir/name" in a new block the caller frees: no fixed buffer to cut it short */
static char *path_join(const char *dir, const char *name) {
    const size_t n = strlen(dir) + 1 + strlen(name) + 1;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* ---- files that appear whole or not at all --------------------------------
 * Every file the programs write goes first to PATH.partial, created with
 * fopen's exclusive "x" flag (C11, and glibc's long before), so a file of that
 * name that someone else owns is never overwritten; only once every byte is
 * out and fclose succeeded is it renamed over PATH. A failed or interrupted
 * run leaves PATH as it was. Any failure names the file and the reason and
 * exits 1. */
typedef struct {
    FILE *f;        /* write here */
    char *path;     /* the name the user asked for */
    char *tmp;      /* path + ".partial", renamed to path by out_close */
} OutFile;

/* Create path + ".partial" exclusively; *tmp receives its name (the caller
 * frees it). NULL if that fails, with errno saying why. */
static FILE *partial_create(const char *path, char **tmp) {
    *tmp = xmalloc(strlen(path) + sizeof ".partial");
    sprintf(*tmp, "%s.partial", path);
    return fopen(*tmp, "wx");
}

/* What a message adds after strerror(err) when partial_create failed: a
 * hint if the .partial file is already there, else nothing */
static const char *partial_hint(int err) {
    return err == EEXIST ? " (left by an earlier run? remove it)" : "";
}

OutFile out_open(const char *path) {
    OutFile o;
    o.path = xmalloc(strlen(path) + 1);
    strcpy(o.path, path);
    o.f = partial_create(path, &o.tmp);
    if (!o.f) {
        const int err = errno;
        fprint_wrapped(stderr, "error: cannot write '%s': creating '%s' failed: %s%s", path, o.tmp,
                strerror(err), partial_hint(err));
        exit(1);
    }
    return o;
}

void out_close(OutFile *o) {
    const char *why = ferror(o->f) ? "a write failed" : NULL;
    if (fclose(o->f) != 0 && !why) why = strerror(errno);
    if (!why && rename(o->tmp, o->path) != 0) why = strerror(errno);
    if (why) {
        fprint_wrapped(stderr, "error: could not finish writing '%s': %s; it is left as it was",
                o->path, why);
        remove(o->tmp);                          /* ours: created exclusively above */
        exit(1);
    }
    free(o->path); free(o->tmp);
}

/* Can files be written into the existing directory dir? Create a probe file
 * there exclusively (a name nobody else has: ".attention-probe-N", the first
 * N free), then remove that file, which is ours. Exits 2 with a message if
 * not, before minutes of training. */
void check_dir_writable(const char *prog, const char *option, const char *dir) {
    for (int n = 0; n < 1000; n++) {
        char name[32];
        snprintf(name, sizeof name, ".attention-probe-%d", n);
        char *probe = path_join(dir, name);
        FILE *f = fopen(probe, "wx");
        const int err = errno;
        if (f) { fclose(f); remove(probe); free(probe); return; }
        free(probe);
        if (err != EEXIST) {
            fprint_wrapped(stderr, "%s: %s %s: cannot write into that directory (%s); give an "
                    "existing, writable directory", prog, option, dir, strerror(err));
            exit(2);
        }
    }
    fprint_wrapped(stderr, "%s: %s %s: 1000 probe files .attention-probe-N are in the way",
            prog, option, dir);
    exit(2);
}

/* After the first `done` of `total` units of work (training steps, decoded
 * examples), which took `seconds`: if the whole would take over an hour, say
 * so on stderr with the estimate and what would shorten it, so a user can
 * stop the run and choose a smaller one. */
void warn_if_long(const char *what, int done, int total, double seconds,
                  const char *shorter) {
    const double est = done > 0 ? seconds / done * total : 0.0;
    if (est > 3600.0)
        fprint_wrapped(stderr, "note: the first %d %s took %.1f s, so all %d will take about "
                       "%.1f hours (%s to shorten it)", done, what, seconds, total,
                       est / 3600.0, shorter);
}

/* Registered with atexit() by every main: a program whose standard output
 * could not be written (a full disk, a closed pipe, > /dev/full) says so and
 * exits 1 instead of 0, whatever it had printed. */
void check_stdout_at_exit(void) {
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprint_wrapped(stderr, "error: writing the standard output failed (%s): what it shows is "
                "incomplete", strerror(errno));
        _Exit(1);
    }
}

/* Has training diverged? Yes at the first step whose loss or gradient norm
 * is not a finite number (every later step would only spread the NaN or
 * inf), or whose cross-entropy loss is above ten times ln V, the loss of a
 * uniform guess over V classes: a model that wrong is not learning (with
 * V <= 1, e.g. 0 for "no bound", only finiteness counts). */
int step_diverged(double loss, double gnorm, int V) {
    const double bound = V > 1 ? 10.0 * log((double)V) : INFINITY;
    return !(isfinite(loss) && isfinite(gnorm) && loss <= bound);
}

/* Say that training diverged at `step` and what to lower (advice); exit 3. */
void report_divergence(int step, double loss, double gnorm, int V, const char *advice) {
    char chance[64] = "";
    if (V > 1) snprintf(chance, sizeof chance, " (a uniform guess over %d classes: %.2f)", V,
                        log((double)V));
    fprint_wrapped(stderr, "error: training diverged at step %d: loss %g%s, gradient norm "
                   "%g; %s", step, loss, chance, gnorm, advice);
    exit(3);
}

/* Command-line values. Each reads argv[*i + 1] as the value of option
 * argv[*i], advances *i, and on any problem prints what was wrong and what
 * would be right, then exits with status 2. */
static const char *arg_value(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        fprint_wrapped(stderr, "%s: option %s needs a value (see --help)", argv[0], argv[*i]);
        exit(2);
    }
    *i += 1;
    return argv[*i];
}

/* The value of an integer option, which must lie in [lo, hi]. */
long arg_long(int argc, char **argv, int *i, long lo, long hi) {
    const char *name = argv[*i];
    const char *s = arg_value(argc, argv, i);
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);   /* strtol skips leading blanks: we do not */
    if (errno || end == s || *end != '\0' || v < lo || v > hi || isspace((unsigned char)s[0])) {
        fprint_wrapped(stderr, "%s: %s must be an integer between %ld and %ld, got '%s'",
                argv[0], name, lo, hi, s);
        exit(2);
    }
    return v;
}

/* The value of a real option, which must lie in [lo, hi], or in (lo, hi]
 * when lo_open (NaN never does). */
static double arg_real(int argc, char **argv, int *i, double lo, double hi, int lo_open) {
    const char *name = argv[*i];
    const char *s = arg_value(argc, argv, i);
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !((lo_open ? v > lo : v >= lo) && v <= hi) ||
        isspace((unsigned char)s[0])) {
        if (lo_open)
            fprint_wrapped(stderr, "%s: %s must be a number above %g and at most %g, got '%s'",
                    argv[0], name, lo, hi, s);
        else
            fprint_wrapped(stderr, "%s: %s must be a number between %g and %g, got '%s'",
                    argv[0], name, lo, hi, s);
        exit(2);
    }
    return v;
}

/* a real option in [lo, hi] */
double arg_double(int argc, char **argv, int *i, double lo, double hi) {
    return arg_real(argc, argv, i, lo, hi, 0);
}

/* The value of a string option that must be one of `choices` (NULL-ended);
 * returns its index. */
int arg_choice(int argc, char **argv, int *i, const char *const *choices) {
    const char *name = argv[*i];
    const char *s = arg_value(argc, argv, i);
    for (int k = 0; choices[k]; k++)
        if (strcmp(s, choices[k]) == 0) return k;
    char list[1024] = "";
    for (int k = 0; choices[k]; k++) {
        const size_t n = strlen(list);
        snprintf(list + n, sizeof list - n, "%s %s", k ? "," : "", choices[k]);
    }
    fprint_wrapped(stderr, "%s: %s must be one of%s; got '%s'", argv[0], name, list, s);
    exit(2);
}

/* The value of a path option (any non-empty string). */
const char *arg_path(int argc, char **argv, int *i) {
    const char *name = argv[*i];
    const char *s = arg_value(argc, argv, i);
    if (!s[0]) {
        fprint_wrapped(stderr, "%s: %s needs a non-empty file name", argv[0], name);
        exit(2);
    }
    return s;
}

/* Check, once the options are known to make sense, that the file `path`
 * given to `option` can be written the way out_open writes it: if path
 * exists it must be a file we may write (not a directory, not read-only),
 * and path.partial is created exclusively and removed again (it is ours;
 * path itself is not changed). A bad path then fails at once with status 2,
 * not after minutes of training. */
void check_writable(const char *prog, const char *option, const char *path) {
    FILE *e = fopen(path, "r+");                 /* there already? (r+ truncates nothing) */
    if (!e && errno != ENOENT) {                 /* a directory, or not ours to write */
        fprint_wrapped(stderr, "%s: %s: cannot write the file '%s': %s", prog, option, path,
                strerror(errno));
        exit(2);
    }
    if (e) fclose(e);
    char *tmp;
    FILE *f = partial_create(path, &tmp);
    if (!f) {
        const int err = errno;
        fprint_wrapped(stderr, "%s: %s: cannot write the file '%s': creating '%s' failed: %s%s",
                prog, option, path, tmp, strerror(err), partial_hint(err));
        exit(2);
    }
    fclose(f);
    remove(tmp);
    free(tmp);
}

/* ---- one option table per program ---------------------------------------
 * Each program describes its options once, in a table of Opt: the name, the
 * kind of value, the range, the modes it applies to and a line of help. One
 * parser reads argv against it (values checked, each option at most once),
 * one function prints --help from it, and one refuses an option given in a
 * mode that would ignore it. The default of an option is whatever its
 * variable holds when opt_parse is called, so --help always prints the true
 * one. Checks that relate options to each other or to the model stay in the
 * program, next to what they protect; opt_fail gives them one voice. */
typedef enum {
    OPT_INT,      /* an integer in [lo, hi]                 value: int * */
    OPT_REAL,     /* a number in [lo, hi]                   value: double * */
    OPT_RATE,     /* a number in (lo, hi]: zero is useless  value: double * */
    OPT_CHOICE,   /* one of choices[], stored as its index  value: int * */
    OPT_PATH,     /* a non-empty file or directory name     value: const char ** */
    OPT_FLAG      /* no value: set to 1                     value: int * */
} OptKind;

typedef struct {
    const char *name;            /* "--hidden" */
    OptKind kind;
    void *value;                 /* where the value goes (see OptKind) */
    double lo, hi;               /* OPT_INT, OPT_REAL, OPT_RATE: the range */
    const char *const *choices;  /* OPT_CHOICE: the accepted words, NULL-ended */
    unsigned modes;              /* bit m set: applies in mode m; 0: in every mode */
    const char *meta;            /* the value's name in --help: "N", "FILE" */
    const char *help;            /* its help; lines split by '\n'. Unless it
                                    says "default", --help adds the default */
    int given;                   /* set by opt_parse: was it on the command line? */
} Opt;

typedef struct {
    const char *prog;            /* argv[0], for messages */
    const char *about;           /* --help's first lines, after "usage:" */
    const char *after;           /* --help's last lines, or NULL */
    const char *const *modes;    /* mode names, for messages; NULL: one mode */
    Opt *opt;
    int n;
} OptTable;

/* Print "prog: " and the message to stderr, then exit 2: the one way a
 * program refuses its command line. */
void opt_fail(const OptTable *t, const char *fmt, ...) {
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    const int n = snprintf(line, sizeof line, "%s: ", t->prog);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    fprint_wrapped(stderr, "%s", line);
    exit(2);
}

/* The entry of option `name`; a name not in the table is the program's own
 * mistake, and stops it rather than answering "not given". */
Opt *opt_find(const OptTable *t, const char *name) {
    for (int k = 0; k < t->n; k++)
        if (strcmp(t->opt[k].name, name) == 0) return &t->opt[k];
    fprintf(stderr, "%s: internal error: no option %s in the table\n", t->prog, name);
    exit(1);
}

/* was option `name` on the command line? */
int opt_given(const OptTable *t, const char *name) { return opt_find(t, name)->given; }

/* the default an option's variable holds, as --help shows it (buf: 64 bytes) */
static const char *opt_default(const Opt *o, char *buf) {
    switch (o->kind) {
    case OPT_INT:    snprintf(buf, 64, "%d", *(int *)o->value); break;
    case OPT_REAL:
    case OPT_RATE:   snprintf(buf, 64, "%g", *(double *)o->value); break;
    case OPT_CHOICE: snprintf(buf, 64, "%s", o->choices[*(int *)o->value]); break;
    case OPT_PATH:   return *(const char **)o->value;       /* NULL: none */
    case OPT_FLAG:   return NULL;
    }
    return buf;
}

/* --help, generated from the table: one entry per option, its value's
 * name, range or choices, the modes it applies to and its default. */
/* print s at column 21, wrapped at spaces to end by column 80 */
static void opt_usage_wrap(FILE *f, const char *head, const char *s, int len) {
    const char *end = s + len;
    do {
        int n = (int)(end - s);
        if (n > 59) {                                  /* 80 - 21 columns per line */
            n = 59;
            while (n > 0 && s[n] != ' ') n--;
            if (n == 0) n = 59;
        }
        fprintf(f, "  %-18s %.*s\n", head, n, s);
        head = "";
        s += n;
        while (s < end && *s == ' ') s++;
    } while (s < end);
}

/* the modes an option applies to, as "only with A B" or, if shorter, "not
 * with C" (its complement), appended to extra (n bytes) */
static void opt_usage_modes(char *extra, size_t n, const OptTable *t, unsigned modes) {
    int in = 0, out = 0;
    for (int m = 0; t->modes[m]; m++) { if (modes >> m & 1u) in++; else out++; }
    if (out == 0) return;
    size_t len = strlen(extra);
    snprintf(extra + len, n - len, "%s%s", len ? "; " : "", in <= out ? "only with" : "not with");
    for (int m = 0; t->modes[m]; m++)
        if ((modes >> m & 1u) == (in <= out)) {
            len = strlen(extra);
            snprintf(extra + len, n - len, " %s", t->modes[m]);
        }
}

void opt_usage(const OptTable *t, FILE *f) {
    fprintf(f, "usage: %s [options]\n%s\n", t->prog, t->about);
    for (int k = 0; k < t->n; k++) {
        const Opt *o = &t->opt[k];
        char head[48], extra[480] = "", buf[64];
        snprintf(head, sizeof head, "%s %s", o->name, o->kind == OPT_FLAG ? "" : o->meta);
        if (o->kind == OPT_INT || o->kind == OPT_REAL)
            snprintf(extra, sizeof extra, "%.10g..%.10g", o->lo, o->hi);
        else if (o->kind == OPT_RATE)
            snprintf(extra, sizeof extra, "(%.10g, %.10g]", o->lo, o->hi);
        else if (o->kind == OPT_CHOICE)
            for (int c = 0; o->choices[c]; c++) {
                const size_t len = strlen(extra);
                snprintf(extra + len, sizeof extra - len, "%s%s", c ? " | " : "", o->choices[c]);
            }
        /* the help text, line by line; the first line beside the name */
        const char *h = o->help;
        int line = 0;
        while (*h || line == 0) {                      /* each line wrapped at 80 */
            const char *nl = strchr(h, '\n');
            const int len = nl ? (int)(nl - h) : (int)strlen(h);
            opt_usage_wrap(f, line ? "" : head, h, len);
            h += len + (nl != NULL);
            line++;
        }
        /* a default the help states itself may be a sentinel: never read it */
        const char *d = strstr(o->help, "default") ? NULL : opt_default(o, buf);
        if (d) {
            const size_t len = strlen(extra);
            snprintf(extra + len, sizeof extra - len, "%sdefault %s", len ? "; " : "", d);
        }
        if (o->modes && t->modes) opt_usage_modes(extra, sizeof extra, t, o->modes);
        if (extra[0]) {
            char paren[490];
            snprintf(paren, sizeof paren, "(%s)", extra);
            opt_usage_wrap(f, "", paren, (int)strlen(paren));
        }
    }
    fprintf(f, "  %-18s this text\n", "--help");
    if (t->after) fprintf(f, "\n%s", t->after);
}

/* Read argv[1..] against the table: every option known, given at most once,
 * its value of the right kind and in range (arg_* above say what would be
 * right). --help or -h prints opt_usage and exits 0; any problem exits 2. */
void opt_parse(OptTable *t, int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            opt_usage(t, stdout);
            exit(0);
        }
        int k = 0;
        while (k < t->n && strcmp(argv[i], t->opt[k].name) != 0) k++;
        if (k == t->n) {
            char list[2048] = "";
            for (int j = 0; j < t->n; j++) {
                const size_t n = strlen(list);
                snprintf(list + n, sizeof list - n, " %s", t->opt[j].name);
            }
            fprint_wrapped(stderr, "%s: unknown option '%s'; the options are%s and --help",
                           t->prog, argv[i], list);
            exit(2);
        }
        Opt *o = &t->opt[k];
        if (o->given++)
            opt_fail(t, "%s given twice (give each option at most once)", o->name);
        switch (o->kind) {
        case OPT_INT:    *(int *)o->value = (int)arg_long(argc, argv, &i, (long)o->lo,
                                                          (long)o->hi); break;
        case OPT_REAL:   *(double *)o->value = arg_double(argc, argv, &i, o->lo, o->hi); break;
        case OPT_RATE:   *(double *)o->value = arg_real(argc, argv, &i, o->lo, o->hi, 1); break;
        case OPT_CHOICE: *(int *)o->value = arg_choice(argc, argv, &i, o->choices); break;
        case OPT_PATH:   *(const char **)o->value = arg_path(argc, argv, &i); break;
        case OPT_FLAG:   *(int *)o->value = 1; break;
        }
    }
}

/* Refuse every given option that does not apply in `mode` (an index into
 * t->modes): a mode never silently ignores what the user asked for. */
void opt_check_mode(const OptTable *t, int mode) {
    for (int k = 0; k < t->n; k++) {
        const Opt *o = &t->opt[k];
        if (!o->given || !o->modes || (o->modes >> mode & 1u)) continue;
        char list[512] = "";
        for (int m = 0; t->modes[m]; m++)
            if (o->modes >> m & 1u) {
                const size_t n = strlen(list);
                snprintf(list + n, sizeof list - n, " %s", t->modes[m]);
            }
        fprint_wrapped(stderr, "%s: %s does not apply to %s; it applies only to%s", t->prog,
                       o->name, t->modes[mode], list);
        exit(2);
    }
}

/* ---- one layout for every block of doubles --------------------------------
 * Every model keeps its parameters, their gradients and its activations in
 * one block each. One function per model walks its tensors in order and asks
 * a Layout cursor for each: run once with mem NULL it only counts (then the
 * caller allocates L.off doubles), run again with mem set it points every
 * tensor into the block. The same walk over the gradient block binds the
 * gradients, so the optimizer and the gradient checker see one flat array,
 * and a parameter that is laid out can never be missed by them. With spans
 * set, layout_param also records each parameter's name, shape and how to
 * initialise it. */
typedef struct {
    char name[32];               /* "enc0.ffn.W1" */
    int off, n, rows, cols;      /* where in the block, and its shape */
    int init;                    /* the model's own initialisation code */
} LayoutSpan;

typedef struct {
    double *mem;                 /* the block; NULL: only count */
    int off;                     /* doubles handed out so far */
    LayoutSpan *spans;           /* NULL: do not record */
    int nspans;                  /* parameters laid out so far */
} Layout;

/* the next n doubles of the block (NULL while only counting) */
double *layout_take(Layout *L, int n) {
    double *p = L->mem ? L->mem + L->off : NULL;
    L->off += n;
    return p;
}

/* a (rows, cols) parameter named by printf's fmt, e.g. ("enc%d.ffn.W1", l) */
double *layout_param(Layout *L, int rows, int cols, int init, const char *fmt, ...) {
    if (L->spans) {
        LayoutSpan *s = &L->spans[L->nspans];
        va_list ap;
        va_start(ap, fmt);
        const int len = vsnprintf(s->name, sizeof s->name, fmt, ap);
        va_end(ap);
        if (len < 0 || len >= (int)sizeof s->name) {     /* a name cut short: no */
            fprintf(stderr, "internal error: parameter name '%s...' is longer than %d "
                    "characters\n", s->name, (int)sizeof s->name - 1);
            exit(1);
        }
        s->off = L->off; s->n = rows * cols; s->rows = rows; s->cols = cols; s->init = init;
    }
    L->nspans++;
    return layout_take(L, rows * cols);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of the n values in x (n >= 1); sorts x in place. Benchmarks
 * quote medians: one slow run (another process, a page fault) moves it little. */
double median(double *x, int n) {
    qsort(x, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

/* Seconds, for progress lines and benchmarks, never for anything on stdout
 * that a determinism check compares. The plain build counts processor time
 * (clock(), C99: on one core, wall time without the noise of other
 * processes); the OpenMP build counts wall time, since several threads'
 * processor time would add up. */
#ifdef _OPENMP
#include <omp.h>
double seconds(void) { return omp_get_wtime(); }
int threads(void) { return omp_get_max_threads(); }    /* the cores the products may use */
#else
double seconds(void) { return (double)clock() / CLOCKS_PER_SEC; }
int threads(void) { return 1; }
#endif

/* Wall-clock seconds since `start` (a time(NULL)), for what a user waits
 * for: the elapsed time and time left of progress lines, and --minutes
 * budgets. C99's time() counts whole seconds, enough for minutes of work. */
double wall_since(time_t start) { return difftime(time(NULL), start); }

/* "1h02m", "3m05s" or "12s": a duration for progress lines */
const char *duration_text(char *buf, size_t n, double secs) {
    const long t = (long)(secs > 0 ? secs + 0.5 : 0);
    if (t >= 3600) snprintf(buf, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60) snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, n, "%lds", t);
    return buf;
}

/* Progress of a long piece of work on stderr, at most one line every
 * PROGRESS_EVERY wall seconds and one at the end: what, done/total, a
 * detail (a model's name, a loss), elapsed and time left, in 80 columns.
 * stderr, not stdout: the times differ from run to run, stdout must not. */
enum { PROGRESS_EVERY = 5 };
typedef struct {
    const char *what;
    long total;
    time_t start;
    double last;            /* wall seconds after start of the last line */
} Progress;

void progress_begin(Progress *p, const char *what, long total) {
    p->what = what;
    p->total = total;
    p->start = time(NULL);
    p->last = 0.0;
}

void progress_step(Progress *p, long done, const char *detail) {
    const double el = wall_since(p->start);
    if (done < p->total && el - p->last < PROGRESS_EVERY) return;
    p->last = el;
    char e[32], l[32], tail[96], head[160];
    const double left = done > 0 ? el / done * (double)(p->total - done) : 0.0;
    const int tn = snprintf(tail, sizeof tail, ", %s elapsed, about %s left",
                            duration_text(e, sizeof e, el), duration_text(l, sizeof l, left));
    snprintf(head, sizeof head, "  %s %ld/%ld%s%s", p->what, done, p->total,
             detail && *detail ? ", " : "", detail ? detail : "");
    if ((int)strlen(head) > 79 - tn) strcpy(head + 76 - tn, "...");   /* the times stay */
    fprintf(stderr, "%s%s\n", head, tail);
}

/* ========================================================================
 * 8. seeing attention
 *
 * print_heatmap() draws a weight matrix in the terminal with Unicode shades
 * (no colour needed): blank for exactly 0 (a masked weight), a faint dot for
 * a weight below a fifth of the largest, then four shades;
 * write_svg_heatmaps() writes the same picture as a self-contained SVG file
 * that any browser opens, one map or several (the heads of a layer) in one
 * picture, with axis titles, masked cells and one shared scale if asked;
 * write_svg_chart(), write_svg_panels() and write_svg_bars() draw curves
 * and tables.
 * Heatmaps scale to the largest entry and say so. Later chapters reuse them
 * for alignments, heads, training curves and experiment results.
 * ======================================================================== */

static const char *const heat_shades[6] = { " ", "\u00b7", "\u2591", "\u2592", "\u2593",
                                            "\u2588" };

/* shade index of w on a scale whose top is max: 0 (blank) only for w <= 0,
 * so a small weight never looks like a masked one; 1 (a dot) for
 * 0 < w < max/5, then 2..5 for each further fifth of max */
static int heat_level(double w, double max) {
    if (!(max > 0) || !(w > 0)) return 0;
    int l = 1 + (int)(5.0 * w / max);
    return l > 5 ? 5 : l;
}

static double matrix_max(const double *W, int n) {
    double m = 0.0;
    for (int i = 0; i < n; i++) if (W[i] > m) m = W[i];
    return m;
}

/* characters (UTF-8 code points) of s: its width on screen, in columns */
static int text_columns(const char *s) {
    int n = 0;
    for (; s && *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* A token as a label a reader can see: the space, newline and tab
 * characters (tokens of a character-level model) get visible symbols. */
static const char *label_visible(const char *s) {
    return !strcmp(s, " ") ? "\u2423" : !strcmp(s, "\n") ? "\u21b5"
         : !strcmp(s, "\t") ? "\u21e5" : s;
}

/* columns of the widest of the n labels (0 if labels is NULL) */
static int longest_label(const char *const *labels, int n) {
    int m = 0;
    for (int i = 0; labels && i < n; i++) {
        const int l = text_columns(label_visible(labels[i]));
        if (l > m) m = l;
    }
    return m;
}

/* s padded with spaces to `width` columns (right-aligned if right) */
static void print_padded(FILE *f, const char *s, int width, int right) {
    const int pad = width - text_columns(s);
    if (right) fprintf(f, "%*s%s", pad > 0 ? pad : 0, "", s);
    else fprintf(f, "%s%*s", s, pad > 0 ? pad : 0, "");
}

/* the column labels above a heatmap whose cells are 2 columns wide: one
 * character each in one line; labels of two characters ("10") in two
 * staggered lines, even columns above odd ones, so that each has four
 * columns and "10" never runs into its neighbour; longer ones written
 * downwards, one character (code point) a line */
static void print_column_labels(FILE *f, const char *const *labels, int C, int indent) {
    const int ch = longest_label(labels, C);
    const int lines = ch <= 1 ? ch : ch == 2 ? 2 : ch;
    for (int k = 0; k < lines; k++) {
        fprintf(f, "%*s", indent, "");
        for (int j = 0; j < C; j++) {
            const char *l = label_visible(labels[j]);
            if (ch <= 1) { print_padded(f, l, 2, 0); continue; }
            if (ch == 2) {                         /* staggered: j % 2 on line j % 2 */
                if (j % 2 == k) print_padded(f, l, j + 1 < C ? 4 : 2, 0);
                else if (j == 0) fprintf(f, "  ");
                continue;
            }
            int cp = 0;                            /* find the k-th code point */
            while (*l && cp < k) { l++; cp += ((unsigned char)*l & 0xC0) != 0x80; }
            size_t len = 0;
            while (l[len] && (len == 0 || ((unsigned char)l[len] & 0xC0) == 0x80)) len++;
            fprintf(f, "%.*s%s", (int)len, l, len ? " " : "  ");
        }
        fprintf(f, "\n");
    }
}

/* Print W (R,C) under `title`: one row per line, two characters per cell,
 * darker = larger, blank = exactly 0. Row labels (R strings) on the left;
 * column labels (C strings) above their columns. Either may be NULL. */
void print_heatmap(FILE *f, const char *title, const double *W, int R, int C,
                   const char *const *row_labels, const char *const *col_labels) {
    const int rw = longest_label(row_labels, R);
    double max = matrix_max(W, R * C);
    fprintf(f, "%s\n", title);
    if (col_labels) print_column_labels(f, col_labels, C, rw + 2);
    for (int i = 0; i < R; i++) {
        print_padded(f, row_labels ? label_visible(row_labels[i]) : "", rw, 1);
        fprintf(f, " |");
        for (int j = 0; j < C; j++) {
            const char *s = heat_shades[heat_level(W[i * C + j], max)];
            fprintf(f, "%s%s", s, s);
        }
        fprintf(f, "|\n");
    }
    fprintf(f, "%*sscale: ' ' =0 (masked) %s <%.2f %s <%.2f %s <%.2f %s <%.2f %s <=%.2f (max)\n",
            rw + 2 < 12 ? rw + 2 : 12, "", heat_shades[1], 0.2 * max, heat_shades[2],
            0.4 * max, heat_shades[3], 0.6 * max, heat_shades[4], 0.8 * max, heat_shades[5], max);
}

/* write s with the five XML special characters escaped */
static void svg_escape(FILE *f, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&apos;", f); break;
        default: fputc(*s, f);
        }
    }
}

/* white (0) to dark blue (max), as "rgb(r,g,b)" into buf */
static void heat_colour(char *buf, size_t n, double t) {
    if (!(t > 0)) t = 0;
    if (t > 1) t = 1;
    int r = (int)(247 + t * (8 - 247)), g = (int)(251 + t * (48 - 251)),
        b = (int)(255 + t * (107 - 255));
    snprintf(buf, n, "rgb(%d,%d,%d)", r, g, b);
}

/* ---- SVG pictures: heatmaps in a grid, line charts, bar charts ------------
 * Plain SVG written by hand. Every size is computed from what is drawn (the
 * characters of the title and of the labels, at a monospace font's 0.6 em
 * per character, rounded up), so nothing is clipped at the default size. */

/* px: the font's size, the width of one of its characters, and of one of a
 * title's (14 px bold) */
enum { SVG_FONT = 12, SVG_CHAR_W = 8, SVG_TITLE_W = 9 };

/* <text> at (x, y) with the given anchor and extra attributes, s escaped */
static void svg_text(FILE *f, double x, double y, const char *anchor, const char *extra,
                     const char *s) {
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\"%s%s>", x, y, anchor,
            extra[0] ? " " : "", extra);
    svg_escape(f, s);
    fprintf(f, "</text>\n");
}

/* the SVG header and a white background */
static void svg_begin(FILE *f, int width, int height) {
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "viewBox=\"0 0 %d %d\" font-family=\"monospace\" font-size=\"%d\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            width, height, width, height, SVG_FONT);
}

/* How many lines `title` takes when wrapped at `cols` characters, at spaces;
 * if out is not NULL, draws them there from y (one line per 18 px). */
static int svg_title_lines(FILE *out, const char *title, int cols, int x, int y) {
    int lines = 0;
    const char *s = title;
    while (*s) {
        const char *end = s, *cut = NULL;
        int n = 0;
        while (*end && n < cols) { if (*end == ' ') cut = end; n += ((unsigned char)*end & 0xC0) != 0x80; end++; }
        while (*end && ((unsigned char)*end & 0xC0) == 0x80) end++;   /* whole characters */
        if (*end && cut) end = cut;              /* break at the last space */
        if (out) {
            char line[512];
            const int len = (int)(end - s) < 511 ? (int)(end - s) : 511;
            memcpy(line, s, (size_t)len);
            line[len] = '\0';
            svg_text(out, x, y + 18 * lines + 14, "start", "font-size=\"14\" font-weight=\"bold\"",
                     line);
        }
        lines++;
        s = *end == ' ' ? end + 1 : end;
    }
    return lines;
}

/* One picture of nmaps heatmaps side by side (per_row in a row), e.g. every
 * head of a layer, under one title. W is (nmaps, R, C); masked (R, C), or
 * NULL, marks cells no weight can reach (a causal future, padding): they
 * are drawn grey and crossed, unlike a weight that is merely small. With
 * shared_scale, one colour scale (0 to the largest weight of all maps)
 * serves every map, so maps compare at a glance; else each map runs from 0
 * to its own largest, which its caption gives. Labels (R and C strings, or
 * NULL for numbers) longer than two characters are written at an angle. */
typedef struct {
    const char *title;              /* the whole title */
    const char *row_axis;           /* what the rows are, e.g. "query (target step)" */
    const char *col_axis;           /* what the columns are, e.g. "key (source position)" */
    const char *const *row_labels;  /* (R), or NULL */
    const char *const *col_labels;  /* (C), or NULL */
    const char *const *map_titles;  /* (nmaps), or NULL */
    int shared_scale;               /* 1: one scale for every map */
} HeatmapSvg;

/* the label of row/column i: labels[i], or the number i */
static const char *heat_label(const char *const *labels, int i, char *buf, size_t n) {
    if (labels) return label_visible(labels[i]);
    snprintf(buf, n, "%d", i);
    return buf;
}

/* widest label of n, in characters (numbers if labels is NULL) */
static int heat_label_chars(const char *const *labels, int n) {
    char buf[16];
    int m = 1;
    for (int i = 0; i < n; i++) {
        const int c = text_columns(heat_label(labels, i, buf, sizeof buf));
        if (c > m) m = c;
    }
    return m;
}

/* one map of a grid, its top-left corner at (x0, y0) */
static void svg_heatmap_one(FILE *f, const HeatmapSvg *s, const double *W,
                            const unsigned char *masked, int R, int C, int cell, int rlw,
                            int slanted, double max, const char *caption, int x0, int y0) {
    char buf[16], colour[32];
    svg_text(f, x0 + rlw, y0 + 12, "start", "", caption);
    const int top = y0 + 20, left = x0 + rlw;
    for (int i = 0; i < R; i++) {
        svg_text(f, left - 4, top + i * cell + cell / 2 + 4, "end", "",
                 heat_label(s->row_labels, i, buf, sizeof buf));
        for (int j = 0; j < C; j++) {
            const int x = left + j * cell, y = top + i * cell;
            if (masked && masked[i * C + j]) {
                fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#e0e0e0\" "
                        "stroke=\"#ccc\"><title>masked</title></rect>\n<path d=\"M%d %dL%d %d\" "
                        "stroke=\"#bbb\"/>\n", x, y, cell, cell, x, y + cell, x + cell, y);
                continue;
            }
            const double w = W[i * C + j];
            heat_colour(colour, sizeof colour, max > 0 ? w / max : 0);
            fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"%s\" "
                    "stroke=\"#ddd\"><title>", x, y, cell, cell, colour);
            svg_escape(f, heat_label(s->row_labels, i, buf, sizeof buf));
            fprintf(f, " -&gt; ");
            svg_escape(f, heat_label(s->col_labels, j, buf, sizeof buf));
            fprintf(f, ": %.4f</title></rect>\n", w);
        }
    }
    const int yb = top + R * cell + 4;               /* column labels, below the map */
    for (int j = 0; j < C; j++) {
        const char *l = heat_label(s->col_labels, j, buf, sizeof buf);
        const double x = left + j * cell + cell / 2.0;
        if (!slanted) { svg_text(f, x, yb + 12, "middle", "", l); continue; }
        char rot[64];
        snprintf(rot, sizeof rot, "transform=\"rotate(-60 %.1f %d)\"", x + 4, yb + 6);
        svg_text(f, x + 4, yb + 6, "end", rot, l);
    }
}

/* the legend of a heatmap at (lx, ly): a colour bar from 0 to the top of the
 * scale (max if shared, else "map max"), and the masked swatch if masked */
static void svg_heat_legend(FILE *f, int lx, int ly, int shared, double max, int masked) {
    const int lh = 120;
    char colour[32], top[32];
    for (int k = 0; k < 20; k++) {
        heat_colour(colour, sizeof colour, 1.0 - k / 19.0);
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"14\" height=\"%d\" fill=\"%s\"/>\n", lx,
                ly + k * lh / 20, lh / 20 + 1, colour);
    }
    if (shared) snprintf(top, sizeof top, "%.3f", max);
    else snprintf(top, sizeof top, "map max");
    svg_text(f, lx + 18, ly + 10, "start", "", top);
    svg_text(f, lx + 18, ly + lh, "start", "", "0");
    if (masked) {
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"14\" height=\"14\" fill=\"#e0e0e0\" "
                "stroke=\"#bbb\"/>\n", lx, ly + lh + 12);
        svg_text(f, lx + 18, ly + lh + 24, "start", "", "masked");
    }
}

void write_svg_heatmaps(const char *path, const HeatmapSvg *s, const double *W,
                        const unsigned char *masked, int nmaps, int R, int C, int per_row) {
    if (per_row < 1 || per_row > nmaps) per_row = nmaps;
    const int rows = (nmaps + per_row - 1) / per_row;
    const int cell = C > 40 || R > 40 ? 10 : C > 20 || R > 20 ? 16 : 24;
    const int rlw = SVG_CHAR_W * heat_label_chars(s->row_labels, R) + 8;
    const int clc = heat_label_chars(s->col_labels, C);
    const int slanted = clc > 2 || (clc > 1 && cell < 20);
    const int clh = slanted ? (int)(0.87 * SVG_CHAR_W * clc) + 14 : 18;   /* sin 60 */
    double gmax = matrix_max(W, nmaps * R * C);
    /* one map: caption, cells, column labels; width at least its caption's */
    char caption[160];
    int capw = 0;
    for (int m = 0; m < nmaps; m++) {
        const double mx = matrix_max(W + m * R * C, R * C);
        snprintf(caption, sizeof caption, "%s%s(max %.3f)", s->map_titles ? s->map_titles[m] : "",
                 s->map_titles ? " " : "", mx);
        if (text_columns(caption) > capw) capw = text_columns(caption);
    }
    int mapw = rlw + C * cell + 16;
    if (capw * SVG_CHAR_W + rlw + 8 > mapw) mapw = capw * SVG_CHAR_W + rlw + 8;
    const int maph = 20 + R * cell + clh + 8;
    const int axis_left = s->row_axis ? 22 : 4, legend_w = 96;
    int width = axis_left + per_row * mapw + legend_w;
    if (width < 320) width = 320;
    const int cols = (width - 16) / SVG_TITLE_W;     /* title characters per line */
    const int title_h = 18 * svg_title_lines(NULL, s->title, cols, 0, 0) + 8;
    int height = title_h + rows * maph + (s->col_axis ? 24 : 8);
    const int legend_h = 20 + 120 + (masked ? 30 : 8);   /* svg_heat_legend's extent */
    if (height < title_h + legend_h) height = title_h + legend_h;
    OutFile o = out_open(path);
    FILE *f = o.f;
    svg_begin(f, width, height);
    svg_title_lines(f, s->title, cols, 8, 4);
    for (int m = 0; m < nmaps; m++) {
        const double mx = matrix_max(W + m * R * C, R * C);
        snprintf(caption, sizeof caption, "%s%s(max %.3f)", s->map_titles ? s->map_titles[m] : "",
                 s->map_titles ? " " : "", mx);
        svg_heatmap_one(f, s, W + m * R * C, masked, R, C, cell, rlw, slanted,
                        s->shared_scale ? gmax : mx, caption, axis_left + (m % per_row) * mapw,
                        title_h + (m / per_row) * maph);
    }
    if (s->row_axis) {                               /* axis titles */
        char rot[64];
        const int yc = title_h + rows * maph / 2;
        snprintf(rot, sizeof rot, "transform=\"rotate(-90 14 %d)\"", yc);
        svg_text(f, 14, yc, "middle", rot, s->row_axis);
    }
    if (s->col_axis)
        svg_text(f, axis_left + per_row * mapw / 2.0, height - 8, "middle", "", s->col_axis);
    svg_heat_legend(f, width - legend_w + 16, title_h + 20, s->shared_scale, gmax,
                    masked != NULL);
    fprintf(f, "</svg>\n");
    out_close(&o);
}

/* ---- charts: lines and bars --------------------------------------------------- */

/* a "nice" tick step for a range: 1, 2 or 5 times a power of ten, giving
 * about 4-8 ticks */
static double chart_step(double range) {
    if (!(range > 0)) return 1.0;
    const double p = pow(10.0, floor(log10(range / 5.0)));
    const double r = range / 5.0 / p;
    return (r < 1.5 ? 1 : r < 3.5 ? 2 : r < 7.5 ? 5 : 10) * p;
}

/* One series of a line chart: n points (x[i], y[i]); a non-finite y is a gap. */
typedef struct {
    const char *name;
    const double *x, *y;
    int n;
} ChartSeries;

typedef struct {
    const char *title, *x_axis, *y_axis;
    int log_x, log_y;          /* 1: that axis is logarithmic (all values > 0) */
} ChartSvg;

static const char *const chart_colours[6] = { "#1f77b4", "#d62728", "#2ca02c", "#9467bd",
                                              "#ff7f0e", "#17becf" };

/* the axis range of values v (n), padded, as [*lo, *hi] (logs if log) */
static void chart_range(const double *v, int n, int log_scale, double *lo, double *hi) {
    *lo = INFINITY; *hi = -INFINITY;
    for (int i = 0; i < n; i++) {
        if (!isfinite(v[i]) || (log_scale && !(v[i] > 0))) continue;
        const double t = log_scale ? log10(v[i]) : v[i];
        if (t < *lo) *lo = t;
        if (t > *hi) *hi = t;
    }
    if (*lo > *hi) { *lo = 0; *hi = 1; }
    if (*hi - *lo < 1e-12) { *lo -= 0.5; *hi += 0.5; }
    if (log_scale) { *lo = floor(*lo); *hi = ceil(*hi); }
}

/* ticks and grid lines of one axis from lo to hi (in log10 if log_scale),
 * mapped to pixels p0..p1; vertical: the y axis */
static void chart_ticks(FILE *f, double lo, double hi, int log_scale, int vertical, int p0,
                        int p1, int a0, int a1) {
    const double step = log_scale ? 1.0 : chart_step(hi - lo);
    for (double t = ceil(lo / step - 1e-9) * step; t <= hi + 1e-9 * step; t += step) {
        const double p = p0 + (t - lo) / (hi - lo) * (p1 - p0);
        char lab[32];
        const double v = log_scale ? pow(10.0, t) : t;
        snprintf(lab, sizeof lab, "%g", fabs(v) < 1e-12 * step ? 0.0 : v);
        if (vertical) {
            fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#eee\"/>\n",
                    a0, p, a1, p);
            svg_text(f, a0 - 4, p + 4, "end", "", lab);
        } else {
            fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#eee\"/>\n",
                    p, a0, p, a1);
            svg_text(f, p, a1 + 14, "middle", "", lab);
        }
    }
}

/* Open a chart's file at path: width px wide, the title wrapped at the top
 * and below_title px under it; *top gets where the plot area starts. */
static OutFile chart_open(const char *path, const ChartSvg *c, int width, int below_title,
                          int *top) {
    const int cols = (width - 16) / SVG_TITLE_W;
    *top = 18 * svg_title_lines(NULL, c->title, cols, 0, 0) + 16;
    OutFile o = out_open(path);
    svg_begin(o.f, width, *top + below_title);
    svg_title_lines(o.f, c->title, cols, 8, 4);
    return o;
}

/* A chart's axis titles (the x one centred at (xc, xy), the y one turned
 * upright at height yc), then the end of the file */
static void chart_close(OutFile *o, const ChartSvg *c, double xc, int xy, int yc) {
    char rot[64];
    svg_text(o->f, xc, xy, "middle", "", c->x_axis);
    snprintf(rot, sizeof rot, "transform=\"rotate(-90 16 %d)\"", yc);
    if (c->y_axis && *c->y_axis) svg_text(o->f, 16, yc, "middle", rot, c->y_axis);
    fprintf(o->f, "</svg>\n");
    out_close(o);
}

/* One panel of a line chart: its series against a shared x axis. */
typedef struct {
    const char *y_axis;
    int log_y;
    const ChartSeries *s;
    int ns;
} ChartPanel;

/* the axis range over every series of ns, x (want_x) or y, padded when linear */
static void chart_span(const ChartSeries *s, int ns, int want_x, int log_scale, double *lo,
                       double *hi) {
    double a, b;
    *lo = INFINITY; *hi = -INFINITY;
    for (int k = 0; k < ns; k++) {
        chart_range(want_x ? s[k].x : s[k].y, s[k].n, log_scale, &a, &b);
        if (a < *lo) *lo = a;
        if (b > *hi) *hi = b;
    }
    if (!want_x && !log_scale) { const double pad = 0.05 * (*hi - *lo); *lo -= pad; *hi += pad; }
}

/* Draw panel p's plot area (pw x ph at left, top) with its grid, ticks,
 * lines, markers, y-axis title and legend; x runs from xlo to xhi. */
static void chart_panel(FILE *f, const ChartPanel *p, int log_x, double xlo, double xhi,
                        int left, int top, int pw, int ph) {
    double ylo, yhi;
    chart_span(p->s, p->ns, 0, p->log_y, &ylo, &yhi);
    chart_ticks(f, xlo, xhi, log_x, 0, left, left + pw, top, top + ph);
    chart_ticks(f, ylo, yhi, p->log_y, 1, top + ph, top, left, left + pw);
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
            "stroke=\"#888\"/>\n", left, top, pw, ph);
    for (int k = 0; k < p->ns; k++) {
        const ChartSeries *sk = &p->s[k];
        const char *col = chart_colours[k % 6];
        int pen = 0;
        fprintf(f, "<path fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" d=\"", col);
        for (int pass = 0; pass < 2; pass++) {      /* 0: the line, 1: the markers */
            for (int i = 0; i < sk->n; i++) {
                const double xv = log_x ? log10(sk->x[i]) : sk->x[i];
                const double yv = p->log_y ? log10(sk->y[i]) : sk->y[i];
                if (!isfinite(xv) || !isfinite(yv)) { pen = 0; continue; }
                const double px = left + (xv - xlo) / (xhi - xlo) * pw;
                const double py = top + ph - (yv - ylo) / (yhi - ylo) * ph;
                if (pass == 0) fprintf(f, "%s%.1f %.1f", pen ? "L" : "M", px, py);
                else if (sk->n <= 60)          /* markers only where they stay apart */
                    fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\">"
                            "<title>%g, %g</title></circle>\n", px, py, col, sk->x[i], sk->y[i]);
                pen = 1;
            }
            if (pass == 0) fprintf(f, "\"/>\n");
        }
        const int ly = top + 10 + 18 * k;
        fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" "
                "stroke-width=\"3\"/>\n", left + pw + 20, ly - 4, left + pw + 40, ly - 4, col);
        svg_text(f, left + pw + 46, ly, "start", "", sk->name);
    }
    char rot[64];
    snprintf(rot, sizeof rot, "transform=\"rotate(-90 16 %d)\"", top + ph / 2);
    svg_text(f, 16, top + ph / 2, "middle", rot, p->y_axis);
}

/* np line-chart panels stacked one above the other on one x axis (a loss
 * above a held-out metric, say), with the title on top and the x-axis title
 * below, to the file at path. */
void write_svg_panels(const char *path, const char *title, const char *x_axis, int log_x,
                      const ChartPanel *p, int np) {
    double xlo = INFINITY, xhi = -INFINITY, lo, hi;
    int legend = 0;
    for (int k = 0; k < np; k++) {
        chart_span(p[k].s, p[k].ns, 1, log_x, &lo, &hi);
        if (lo < xlo) xlo = lo;
        if (hi > xhi) xhi = hi;
        for (int i = 0; i < p[k].ns; i++)
            if (text_columns(p[k].s[i].name) > legend) legend = text_columns(p[k].s[i].name);
    }
    const int pw = 440, ph = np > 1 ? 200 : 260, gap = 48, left = 70;   /* gap: x tick labels */
    const int width = left + pw + 20 + legend * SVG_CHAR_W + 40;
    const ChartSvg c = { title, x_axis, "", log_x, 0 };
    int top;
    OutFile o = chart_open(path, &c, width, np * (ph + gap) - gap + 50, &top);
    for (int k = 0; k < np; k++)
        chart_panel(o.f, &p[k], log_x, xlo, xhi, left, top + k * (ph + gap), pw, ph);
    chart_close(&o, &c, left + pw / 2.0, top + np * (ph + gap) - gap + 36, top);
}

/* A line chart of ns series (markers on every point) with axis titles,
 * ticks, grid lines and a legend, to the file at path: one panel. */
void write_svg_chart(const char *path, const ChartSvg *c, const ChartSeries *s, int ns) {
    const ChartPanel p = { c->y_axis, c->log_y, s, ns };
    write_svg_panels(path, c->title, c->x_axis, c->log_x, &p, 1);
}

/* A series that grows as a run goes: (x, y) points appended one at a time,
 * such as the training loss at each progress line; curve_series() lends
 * it to a chart. */
typedef struct {
    double *x, *y;
    int n, cap;
} Curve;

void curve_add(Curve *c, double x, double y) {
    if (c->n == c->cap) {
        const int cap = c->cap ? 2 * c->cap : 64;
        double *nx = xmalloc(2 * (size_t)cap * sizeof(double));
        if (c->n) { memcpy(nx, c->x, (size_t)c->n * sizeof(double));
                    memcpy(nx + cap, c->y, (size_t)c->n * sizeof(double)); }
        free(c->x);                       /* x and y share one allocation */
        c->x = nx; c->y = nx + cap; c->cap = cap;
    }
    c->x[c->n] = x; c->y[c->n] = y; c->n++;
}

ChartSeries curve_series(const Curve *c, const char *name) {
    const ChartSeries s = { name, c->x, c->y, c->n };
    return s;
}

void curve_free(Curve *c) { free(c->x); c->x = c->y = NULL; c->n = c->cap = 0; }

/* A grouped bar chart: ngroups groups (labels group[g]) of ns bars each
 * (names series[k]), heights v (ngroups, ns) from 0, a non-finite one drawn
 * as "n/a"; axis titles, ticks and a legend, to the file at path. */
void write_svg_bars(const char *path, const ChartSvg *c, const char *const *group, int ngroups,
                    const char *const *series, int ns, const double *v) {
    double lo = 0.0, hi = 0.0;
    for (int i = 0; i < ngroups * ns; i++) if (isfinite(v[i]) && v[i] > hi) hi = v[i];
    if (!(hi > 0)) hi = 1.0;
    hi *= 1.08;
    int legend = 0, glab = 0;
    for (int k = 0; k < ns; k++) if (text_columns(series[k]) > legend) legend = text_columns(series[k]);
    for (int g = 0; g < ngroups; g++) if (text_columns(group[g]) > glab) glab = text_columns(group[g]);
    const int bar = 18, gw = ns * bar + 16 > glab * SVG_CHAR_W + 8 ? ns * bar + 16
                                                                     : glab * SVG_CHAR_W + 8;
    const int pw = ngroups * gw, ph = 240, left = 70, legend_w = legend * SVG_CHAR_W + 40;
    const int width = left + pw + 20 + legend_w;
    int top;
    OutFile o = chart_open(path, c, width > 360 ? width : 360, ph + 54, &top);
    FILE *f = o.f;
    chart_ticks(f, lo, hi, 0, 1, top + ph, top, left, left + pw);
    for (int g = 0; g < ngroups; g++) {
        for (int k = 0; k < ns; k++) {
            const double x = left + g * gw + (gw - ns * bar) / 2.0 + k * bar,  /* centred */
                         val = v[g * ns + k];
            if (!isfinite(val)) { svg_text(f, x + bar / 2.0, top + ph - 4, "middle",
                                           "font-size=\"9\"", "n/a"); continue; }
            const double h = val / hi * ph;
            fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%d\" height=\"%.1f\" fill=\"%s\">"
                    "<title>", x, top + ph - h, bar - 2, h, chart_colours[k % 6]);
            svg_escape(f, group[g]);
            fprintf(f, ", ");
            svg_escape(f, series[k]);
            fprintf(f, ": %g</title></rect>\n", val);
        }
        svg_text(f, left + g * gw + gw / 2.0, top + ph + 16, "middle", "", group[g]);
    }
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#888\"/>\n", left,
            top + ph, left + pw, top + ph);
    for (int k = 0; k < ns; k++) {
        const int ly = top + 10 + 18 * k;
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"14\" height=\"10\" fill=\"%s\"/>\n",
                left + pw + 20, ly - 9, chart_colours[k % 6]);
        svg_text(f, left + pw + 40, ly, "start", "", series[k]);
    }
    chart_close(&o, c, left + pw / 2.0, top + ph + 40, top + ph / 2);
}

/* ========================================================================
 * 9. toy tasks, shared by chapters 2 and 3
 * ======================================================================== */

/* Toy sequence tasks (toy_task_fill): src (len) gets random symbols from
 * [first, first + nsym), tgt (len) the answer: a copy, the reverse, or the
 * symbols in ascending order. Chapters add their own start/end tokens. */
enum { TASK_COPY, TASK_REVERSE, TASK_SORT };
const char *const task_names[] = { "copy", "reverse", "sort", NULL };

void toy_task_fill(Rng *r, int task, int *src, int *tgt, int len, int first, int nsym) {
    for (int i = 0; i < len; i++) src[i] = first + rng_int(r, nsym);
    for (int i = 0; i < len; i++) tgt[i] = task == TASK_REVERSE ? src[len - 1 - i] : src[i];
    if (task == TASK_SORT)                      /* insertion sort: len is small */
        for (int i = 1; i < len; i++)
            for (int j = i; j > 0 && tgt[j - 1] > tgt[j]; j--) {
                int x = tgt[j]; tgt[j] = tgt[j - 1]; tgt[j - 1] = x;
            }
}

/* Is this source sequence (len tokens) in the held-out split? A hash of its
 * tokens, so the split is a fixed property of the sequence: a held-out
 * source is never trained on, whatever the seed, and about 1 in 10 sources
 * is held out. (FNV-1a, then a final mix so that every token matters.) */
/* FNV-1a's offset basis and prime, and a final mix (MurmurHash3's) that
 * makes every input bit matter in the low bits too */
#define FNV_BASIS 1469598103934665603ull
#define FNV_PRIME 1099511628211ull
static uint64_t hash_mix(uint64_t h) {
    h ^= h >> 33; h *= 0xff51afd7ed558ccdull; h ^= h >> 33;
    return h;
}

int heldout_split(const int *src, int len) {
    uint64_t h = FNV_BASIS;
    for (int i = 0; i < len; i++) h = (h ^ (uint64_t)src[i]) * FNV_PRIME;
    return hash_mix(h) % 10 == 0;
}

/* ========================================================================
 * 10. real data: pair files, text files, splits, error rates, checkpoints
 *
 * What chapters 2 and 3 need to leave the toy tasks: read a file of
 * source -> target pairs (grapheme-to-phoneme: CMUdict's "word PH O NE MES"
 * lines, or "source<TAB>target" lines), or a UTF-8 text; split it the same
 * way for a given seed; build the vocabularies from the training part; score
 * predictions by edit distance; and keep a model in a checkpoint file.
 * Everything that can be wrong with a file comes back as a message, never a
 * crash: the functions return -1 and fill why (the caller prints it and
 * exits), so the tests can try every refusal.
 * ======================================================================== */

/* ---- reading a whole file -------------------------------------------------- */

/* The whole of the file at path into a new NUL-terminated block (the caller
 * frees it), its size in *len. NULL, with why filled, for a file that is
 * missing or unreadable (a directory), empty, over max_bytes, or not text (a
 * NUL byte: binary garbage). */
char *read_text_file(const char *path, long max_bytes, long *len, char *why, size_t nwhy) {
    FILE *f = fopen(path, "rb");
    if (!f) { snprintf(why, nwhy, "cannot open '%s': %s", path, strerror(errno)); return NULL; }
    long cap = max_bytes < (1 << 16) ? max_bytes + 1 : 1 << 16, n = 0;
    char *buf = xmalloc((size_t)cap + 1);
    for (;;) {
        n += (long)fread(buf + n, 1, (size_t)(cap - n), f);
        if (n < cap || n > max_bytes) break;      /* the end (or an error), or too big */
        cap = cap < (max_bytes + 1) / 2 ? cap * 2 : max_bytes + 1;
        char *bigger = realloc(buf, (size_t)cap + 1);
        if (!bigger) {
            free(buf); fclose(f);
            snprintf(why, nwhy, "'%s': out of memory reading it", path);
            return NULL;
        }
        buf = bigger;
    }
    const int err = ferror(f) ? errno : 0;
    fclose(f);
    const char *bad = NULL;
    char num[64];
    if (err) bad = strerror(err);
    else if (n == 0) bad = "the file is empty";
    else if (n > max_bytes) {
        snprintf(num, sizeof num, "larger than %ld bytes, the most this reads", max_bytes);
        bad = num;
    } else if (memchr(buf, 0, (size_t)n)) {
        snprintf(num, sizeof num, "a NUL byte at offset %ld: not a text file",
                 (long)((char *)memchr(buf, 0, (size_t)n) - buf));
        bad = num;
    }
    if (bad) { snprintf(why, nwhy, "'%s': %s", path, bad); free(buf); return NULL; }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* ---- UTF-8 ---------------------------------------------------------------
 * Tokens are characters, and a character is a UTF-8 code point (1-4 bytes),
 * so that a token is never half a letter and nothing printed is ever a
 * broken character. */

/* bytes of the well-formed UTF-8 character at s (1-4), or 0 if s does not
 * start one (a stray continuation byte, an overlong form, a surrogate, past
 * U+10FFFF, or cut short by the NUL at the end) */
int utf8_char_len(const char *s) {
    const unsigned char *u = (const unsigned char *)s;
    if (u[0] < 0x80) return u[0] ? 1 : 0;
    int n = u[0] >= 0xF0 ? 4 : u[0] >= 0xE0 ? 3 : u[0] >= 0xC2 ? 2 : 0;
    if (n == 0 || u[0] > 0xF4) return 0;
    for (int i = 1; i < n; i++) if ((u[i] & 0xC0) != 0x80) return 0;
    if (n == 3 && ((u[0] == 0xE0 && u[1] < 0xA0) || (u[0] == 0xED && u[1] >= 0xA0))) return 0;
    if (n == 4 && ((u[0] == 0xF0 && u[1] < 0x90) || (u[0] == 0xF4 && u[1] >= 0x90))) return 0;
    return n;
}

/* 0 if text is well-formed UTF-8; else -1 with why naming the line and byte */
int utf8_check(const char *text, long len, char *why, size_t nwhy) {
    long line = 1;
    for (long i = 0; i < len;) {
        const int n = utf8_char_len(text + i);
        if (n == 0) {
            snprintf(why, nwhy, "line %ld, byte %ld: not UTF-8 (byte 0x%02x)", line, i,
                     (unsigned char)text[i]);
            return -1;
        }
        if (text[i] == '\n') line++;
        i += n;
    }
    return 0;
}

/* ---- vocabularies ----------------------------------------------------------
 * A vocabulary is a sorted list of symbols (characters, or phoneme names)
 * after four specials. Token ids are positions in it. */
enum { TOK_PAD, TOK_BOS, TOK_EOS, TOK_UNK, TOK_SPECIALS };
static const char *const tok_special_names[TOK_SPECIALS] = { "<pad>", "<s>", "</s>", "<unk>" };

typedef struct {
    int n;              /* symbols, the TOK_SPECIALS first */
    char **sym;         /* (n) each symbol's text; sym[TOK_SPECIALS..] sorted */
    char *text;         /* the symbols' bytes, one block */
} Vocab;

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Build v from the given symbols (duplicates allowed, nsyms of them): the
 * specials, then each distinct symbol once, sorted. */
void vocab_build(Vocab *v, const char *const *syms, int nsyms) {
    char **tmp = xmalloc(sizeof(char *) * (size_t)(nsyms + 1));
    size_t bytes = 0;
    for (int i = 0; i < nsyms; i++) { tmp[i] = (char *)syms[i]; bytes += strlen(syms[i]) + 1; }
    qsort(tmp, (size_t)nsyms, sizeof(char *), cmp_str);
    int distinct = 0;
    for (int i = 0; i < nsyms; i++)
        if (i == 0 || strcmp(tmp[i], tmp[i - 1]) != 0) tmp[distinct++] = tmp[i];
    for (int k = 0; k < TOK_SPECIALS; k++) bytes += strlen(tok_special_names[k]) + 1;
    v->n = TOK_SPECIALS + distinct;
    v->sym = xmalloc(sizeof(char *) * (size_t)v->n);
    v->text = xmalloc(bytes);
    char *w = v->text;
    for (int k = 0; k < v->n; k++) {
        const char *s = k < TOK_SPECIALS ? tok_special_names[k] : tmp[k - TOK_SPECIALS];
        v->sym[k] = w;
        strcpy(w, s);
        w += strlen(s) + 1;
    }
    free(tmp);
}

void vocab_free(Vocab *v) { free(v->sym); free(v->text); }

/* the id of symbol s, or TOK_UNK if it is not in v (s of len bytes) */
int vocab_id(const Vocab *v, const char *s, int len) {
    int lo = TOK_SPECIALS, hi = v->n - 1;
    while (lo <= hi) {                           /* binary search of the sorted part */
        const int mid = (lo + hi) / 2;
        int c = strncmp(v->sym[mid], s, (size_t)len);
        if (c == 0 && v->sym[mid][len] != '\0') c = 1;
        if (c == 0) return mid;
        if (c < 0) lo = mid + 1; else hi = mid - 1;
    }
    return TOK_UNK;
}

/* The characters of s as ids (at most max; *unk counts those not in v,
 * which become TOK_UNK). Returns how many characters s has, which may be
 * more than max: the caller refuses what does not fit. */
int vocab_encode_chars(const Vocab *v, const char *s, int *out, int max, int *unk) {
    int n = 0;
    for (int b; *s; s += b, n++) {
        b = utf8_char_len(s);
        if (b == 0) b = 1;                       /* checked before; never split a byte */
        const int id = vocab_id(v, s, b);
        if (id == TOK_UNK && unk) (*unk)++;
        if (n < max) out[n] = id;
    }
    return n;
}

/* A word a user typed as the source tokens of v: its characters into src
 * (at most max), their number in *len. 0 if it is one the model can read;
 * -1, with why filled, if it is empty, not UTF-8, longer than max, or has a
 * character v lacks (named, with the letters v has). */
int vocab_encode_input(const Vocab *v, const char *w, int *src, int max, int *len, char *why,
                      size_t nwhy) {
    if (!*w) { snprintf(why, nwhy, "an empty word"); return -1; }
    if (utf8_check(w, (long)strlen(w), why, nwhy) != 0) return -1;
    int unk = 0;
    *len = vocab_encode_chars(v, w, src, max, &unk);
    if (*len > max) {
        snprintf(why, nwhy, "%d letters; the most this model reads is %d", *len, max);
        return -1;
    }
    for (int i = 0; unk && i < *len; i++) {
        if (src[i] != TOK_UNK) continue;
        const char *c = w;
        for (int k = 0; k < i; k++) c += utf8_char_len(c);
        snprintf(why, nwhy, "the character '%.*s' is not one the model was trained on (its "
                 "%d letters are %s .. %s; it never learned any other)", utf8_char_len(c), c,
                 v->n - TOK_SPECIALS, v->sym[TOK_SPECIALS], v->sym[v->n - 1]);
        return -1;
    }
    return 0;
}

/* The space-separated symbols of s as ids, like vocab_encode_chars. */
int vocab_encode_words(const Vocab *v, const char *s, int *out, int max, int *unk) {
    int n = 0;
    while (*s) {
        while (*s == ' ') s++;
        if (!*s) break;
        int b = 0;
        while (s[b] && s[b] != ' ') b++;
        const int id = vocab_id(v, s, b);
        if (id == TOK_UNK && unk) (*unk)++;
        if (n < max) out[n] = id;
        n++;
        s += b;
    }
    return n;
}

/* ---- pair files -------------------------------------------------------------
 * One pair per line, in one of two formats, chosen by the first line that
 * is not blank or a comment:
 *     source<TAB>target     tab-separated: any file of your own
 *     word PH O NE MES      CMUdict: the word, then its symbols
 * The source's tokens are its characters; the target's are its
 * space-separated symbols. CMUdict writes a word's alternate pronunciations
 * as "word(2)", "word(3)": the "(N)" is dropped, so all pronunciations of a
 * word have the same source, and pairs with the same source are alternates
 * of each other, wherever they are in the file. Blank lines and lines that
 * begin with ";;;" or "#" are skipped. */
typedef struct {
    int n;              /* pairs */
    const char **src;   /* (n) the source (its characters are the tokens) */
    const char **tgt;   /* (n) the target, symbols separated by one space */
    int *line;          /* (n) the pair's line in the file, for messages */
    int tsv;            /* 1: tab-separated; 0: CMUdict */
    char *mem;          /* the strings, one block */
} Pairs;

void pairs_free(Pairs *p) { free(p->src); free(p->tgt); free(p->line); free(p->mem); }

/* Parse text (len bytes, as read_text_file gives it) into p. -1 with why
 * naming the line for a line with no target, a bad "(N)", no pairs at all,
 * or text that is not UTF-8. */
/* One pair from the line s..end (blanks trimmed, not empty), number ln, in
 * the format (1 tab-separated, 0 CMUdict), its strings written at *w.
 * -1 with why if the line has no source or no target. */
static int pairs_line(Pairs *p, char **w, const char *s, const char *end, int ln,
                      int format, char *why, size_t nwhy) {
    const char *sep = format ? memchr(s, '\t', (size_t)(end - s)) : s;
    if (!format) while (sep < end && *sep != ' ' && *sep != '\t') sep++;
    if (!sep) {
        snprintf(why, nwhy, "line %d: no tab (this file is tab-separated, source<TAB>"
                 "target, as its first pair is)", ln);
        return -1;
    }
    const char *t = sep + (sep < end);
    while (t < end && (*t == ' ' || *t == '\t')) t++;
    if (t >= end || sep == s) {
        snprintf(why, nwhy, "line %d: %s (want %s)", ln, sep == s ? "no source" :
                 "no target", format ? "source<TAB>target" : "a word, then its symbols");
        return -1;
    }
    const char *se = sep;
    if (!format && se[-1] == ')') {                   /* CMUdict's "word(2)": drop the "(2)" */
        const char *o = se - 1;
        while (o > s && isdigit((unsigned char)o[-1])) o--;
        if (o > s + 1 && o[-1] == '(' && o < se - 1) se = o - 1;
    }
    p->src[p->n] = *w;
    memcpy(*w, s, (size_t)(se - s)); *w += se - s; *(*w)++ = '\0';
    p->tgt[p->n] = *w;
    for (const char *c = t; c < end; c++) {           /* runs of blanks -> one space */
        const int blank = *c == ' ' || *c == '\t';
        if (!blank) *(*w)++ = *c;
        else if (c[1] != ' ' && c[1] != '\t' && c + 1 < end) *(*w)++ = ' ';
    }
    *(*w)++ = '\0';
    p->line[p->n++] = ln;
    return 0;
}

int pairs_parse(Pairs *p, const char *text, long len, char *why, size_t nwhy) {
    memset(p, 0, sizeof *p);
    if (utf8_check(text, len, why, nwhy) != 0) return -1;
    int lines = 1;
    for (long i = 0; i < len; i++) lines += text[i] == '\n';
    p->src = xmalloc(sizeof(char *) * (size_t)lines);
    p->tgt = xmalloc(sizeof(char *) * (size_t)lines);
    p->line = xmalloc(sizeof(int) * (size_t)lines);
    p->mem = xmalloc((size_t)len + 2 * (size_t)lines + 1);
    char *w = p->mem;
    int format = -1;                                  /* unknown until the first pair */
    const char *s = text;
    for (int ln = 1; *s; ln++) {
        const char *end = strchr(s, '\n');
        if (!end) end = s + strlen(s);
        const char *next = *end ? end + 1 : end;
        while (end > s && (end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t')) end--;
        while (s < end && *s == ' ') s++;
        const int skip = s == end || *s == '#' || (end - s >= 3 && strncmp(s, ";;;", 3) == 0);
        if (!skip && format < 0) format = memchr(s, '\t', (size_t)(end - s)) != NULL;
        if (!skip && pairs_line(p, &w, s, end, ln, format, why, nwhy) != 0) {
            pairs_free(p);
            return -1;
        }
        s = next;
    }
    p->tsv = format == 1;
    if (p->n == 0) {
        snprintf(why, nwhy, "no pairs in it (only blank or comment lines)");
        pairs_free(p);
        return -1;
    }
    return 0;
}

/* ---- text files -------------------------------------------------------------
 * A text for a language model is its characters (UTF-8 code points): the
 * first 90% train, the last 10% validate. The vocabulary is built from the
 * training part; a validation character it lacks becomes TOK_UNK. */

/* Tokenise text (len bytes, checked UTF-8) into *tok, a new block of *n ids
 * (the caller frees it), *ntrain of them the training part; v is built. The
 * distinct characters are gathered in a sorted list as they come, so the
 * memory beyond the text is the ids and the list. */
void text_tokens(Vocab *v, int **tok, int *n, int *ntrain, const char *text, long len) {
    int count = 0, nd = 0, cap = 64;
    for (long i = 0; i < len; count++) { const int b = utf8_char_len(text + i); i += b ? b : 1; }
    const int train = (int)(0.9 * count);
    char (*d)[5] = xmalloc(5 * (size_t)cap);      /* distinct characters, sorted */
    long at = 0;
    for (int c = 0; c < train; c++) {
        int b = utf8_char_len(text + at);
        if (b == 0) b = 1;
        char ch[5] = { 0 };
        memcpy(ch, text + at, (size_t)b);
        at += b;
        int lo = 0, hi = nd;                      /* where ch goes in d */
        while (lo < hi) { const int mid = (lo + hi) / 2;
                          if (strcmp(d[mid], ch) < 0) lo = mid + 1; else hi = mid; }
        if (lo < nd && strcmp(d[lo], ch) == 0) continue;
        if (nd == cap) {
            char (*bigger)[5] = realloc(d, 5 * (size_t)(cap *= 2));
            if (!bigger) { fprintf(stderr, "error: out of memory\n"); exit(1); }
            d = bigger;
        }
        memmove(d[lo + 1], d[lo], 5 * (size_t)(nd - lo));
        memcpy(d[lo], ch, 5);
        nd++;
    }
    const char **syms = xmalloc(sizeof(char *) * (size_t)(nd + 1));
    syms[0] = NULL;
    for (int k = 0; k < nd; k++) syms[k] = d[k];
    vocab_build(v, syms, nd);
    free(syms); free(d);
    *tok = xmalloc(sizeof(int) * (size_t)(count ? count : 1));
    at = 0;
    for (int c = 0; c < count; c++) {
        int b = utf8_char_len(text + at);
        if (b == 0) b = 1;
        (*tok)[c] = vocab_id(v, text + at, b);
        at += b;
    }
    *n = count;
    *ntrain = train;
}

/* The vocabularies of the pairs of p in part `part` of split (split[i] the
 * part of pair i, as data_split gives it): every character of their sources
 * into src, every symbol of their targets into tgt. */
void pairs_vocabs(Vocab *src, Vocab *tgt, const Pairs *p, const int *split, int part) {
    size_t bytes = 1, count = 1;
    for (int i = 0; i < p->n; i++)
        if (split[i] == part) {
            bytes += 2 * strlen(p->src[i]) + strlen(p->tgt[i]) + 1;
            count += strlen(p->src[i]) + strlen(p->tgt[i]) + 1;
        }
    char *buf = xmalloc(bytes), *w = buf;
    const char **syms = xmalloc(sizeof(char *) * count);
    int ns = 0;
    for (int i = 0; i < p->n; i++) {
        if (split[i] != part) continue;
        for (const char *s = p->src[i]; *s;) {       /* one string per character */
            const int b = utf8_char_len(s) ? utf8_char_len(s) : 1;
            syms[ns++] = w; memcpy(w, s, (size_t)b); w += b; *w++ = '\0'; s += b;
        }
    }
    vocab_build(src, syms, ns);
    ns = 0; w = buf;
    for (int i = 0; i < p->n; i++) {
        if (split[i] != part) continue;
        syms[ns++] = w;                              /* "A B C" -> "A" "B" "C" */
        for (const char *s = p->tgt[i]; *s; s++) {
            if (*s != ' ') { *w++ = *s; continue; }
            *w++ = '\0'; syms[ns++] = w;
        }
        *w++ = '\0';
    }
    vocab_build(tgt, syms, ns);
    free(syms); free(buf);
}

/* ---- splits -------------------------------------------------------------------
 * Which part a pair goes to is a hash of its source and the seed, so all
 * alternates of a word land in the same part, the parts never overlap, and
 * the split is the same on every run and machine for a seed: 90% train,
 * 5% dev (for choosing when to stop), 5% test (reported once, at the end). */
enum { SPLIT_TRAIN, SPLIT_DEV, SPLIT_TEST };

int data_split(const char *key, uint64_t seed) {
    uint64_t h = FNV_BASIS ^ (seed * 0x9E3779B97F4A7C15ull);
    for (const unsigned char *c = (const unsigned char *)key; *c; c++) h = (h ^ *c) * FNV_PRIME;
    const int r = (int)(hash_mix(h) % 100);
    return r < 90 ? SPLIT_TRAIN : r < 95 ? SPLIT_DEV : SPLIT_TEST;
}

/* ---- error rates -----------------------------------------------------------------
 * Grapheme-to-phoneme systems are scored by the edit distance (insertions,
 * deletions, substitutions) between the predicted and the true symbols:
 *     phoneme error rate PER = sum of edit distances / sum of reference lengths
 *     word error rate    WER = share of words with any error
 * A word with alternate pronunciations is scored against the nearest of
 * them (fewest edits; on a tie the shorter), so a prediction equal to any
 * of them is right. */

/* the edit distance between a (na) and b (nb); work holds nb + 1 ints */
int edit_distance(const int *a, int na, const int *b, int nb, int *work) {
    for (int j = 0; j <= nb; j++) work[j] = j;        /* row 0: insert b's first j */
    for (int i = 1; i <= na; i++) {
        int diag = work[0];                           /* d[i-1][j-1] */
        work[0] = i;
        for (int j = 1; j <= nb; j++) {
            const int up = work[j];                   /* d[i-1][j] */
            int d = diag + (a[i - 1] != b[j - 1]);    /* substitute (or match) */
            if (up + 1 < d) d = up + 1;               /* delete a[i-1] */
            if (work[j - 1] + 1 < d) d = work[j - 1] + 1;   /* insert b[j-1] */
            diag = up;
            work[j] = d;
        }
    }
    return work[nb];
}

typedef struct {
    long edits;         /* sum of edit distances */
    long ref_len;       /* sum of the chosen references' lengths */
    int words, wrong;   /* words scored, words with any error */
} ErrorRate;

/* Score prediction pred (np) against the nref references ref[r] (len[r]):
 * the nearest one counts. work holds (longest reference + 1) ints. */
void error_rate_add(ErrorRate *e, const int *pred, int np, const int *const *ref,
                    const int *len, int nref, int *work) {
    int best = -1, bd = 0;
    for (int r = 0; r < nref; r++) {
        const int d = edit_distance(pred, np, ref[r], len[r], work);
        if (best < 0 || d < bd || (d == bd && len[r] < len[best])) { best = r; bd = d; }
    }
    e->edits += bd;
    e->ref_len += len[best];
    e->words++;
    e->wrong += bd > 0;
}

double error_rate_per(const ErrorRate *e) { return e->ref_len ? (double)e->edits / e->ref_len : 0.0; }
double error_rate_wer(const ErrorRate *e) { return e->words ? (double)e->wrong / e->words : 0.0; }

/* ---- checkpoints -------------------------------------------------------------------
 * A checkpoint holds everything needed to rebuild a model: the chapter's
 * own description of it (its config and vocabularies, as bytes the chapter
 * writes and reads) and its parameters. The format, all little-endian:
 *     8 bytes   magic "ATTNCKPT"
 *     u32       format version (1)
 *     4 bytes   the chapter's tag, e.g. "S2S1": a file of another chapter is refused
 *     u64       bytes of the description, then the description
 *     u64       number of parameters, then each as an IEEE double (f64)
 *     u64       FNV-1a 64 checksum of every byte before it
 * The file is written under NAME.partial and renamed when whole (out_open),
 * and read whole and checked before anything is given back: a truncated,
 * corrupted, foreign or wrong-version file is refused with the reason. */
enum { CKPT_VERSION = 1 };
static const char ckpt_magic[8] = { 'A', 'T', 'T', 'N', 'C', 'K', 'P', 'T' };

/* a growing byte buffer, for writing a description (and a checkpoint) */
typedef struct { unsigned char *b; size_t n, cap; } Bytes;

void bytes_put(Bytes *y, const void *p, size_t n) {
    if (n == 0) return;
    if (y->n + n > y->cap) {
        size_t cap = y->cap ? y->cap : 256;
        while (cap < y->n + n) cap *= 2;
        unsigned char *b = realloc(y->b, cap);
        if (!b) { fprintf(stderr, "error: out of memory (%lu bytes)\n", (unsigned long)cap); exit(1); }
        y->b = b; y->cap = cap;
    }
    memcpy(y->b + y->n, p, n);
    y->n += n;
}
void bytes_put_u64(Bytes *y, uint64_t v) {
    unsigned char b[8];
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
    bytes_put(y, b, 8);
}
void bytes_put_u32(Bytes *y, uint32_t v) {
    unsigned char b[4];
    for (int i = 0; i < 4; i++) b[i] = (unsigned char)(v >> (8 * i));
    bytes_put(y, b, 4);
}
void bytes_put_f64(Bytes *y, double x) {
    uint64_t v;
    memcpy(&v, &x, 8);
    bytes_put_u64(y, v);
}
void bytes_put_str(Bytes *y, const char *s) {
    bytes_put_u32(y, (uint32_t)strlen(s));
    bytes_put(y, s, strlen(s));
}

/* reading back: a cursor that refuses to run past the end (ok drops to 0) */
typedef struct { const unsigned char *b; size_t n, at; int ok; } Reader;

static const unsigned char *reader_take(Reader *r, size_t n) {
    if (!r->ok || n > r->n - r->at) { r->ok = 0; return NULL; }
    r->at += n;
    return r->b + r->at - n;
}
uint64_t reader_u64(Reader *r) {
    const unsigned char *b = reader_take(r, 8);
    uint64_t v = 0;
    for (int i = 0; b && i < 8; i++) v |= (uint64_t)b[i] << (8 * i);
    return v;
}
uint32_t reader_u32(Reader *r) {
    const unsigned char *b = reader_take(r, 4);
    uint32_t v = 0;
    for (int i = 0; b && i < 4; i++) v |= (uint32_t)b[i] << (8 * i);
    return v;
}
double reader_f64(Reader *r) {
    const uint64_t v = reader_u64(r);
    double x;
    memcpy(&x, &v, 8);
    return x;
}
/* a string written by bytes_put_str, into a new block the caller frees (NULL if cut short) */
char *reader_str(Reader *r, uint32_t max) {
    const uint32_t n = reader_u32(r);
    const unsigned char *b = n <= max ? reader_take(r, n) : (r->ok = 0, NULL);
    if (!b) return NULL;
    char *s = xmalloc(n + 1);
    memcpy(s, b, n);
    s[n] = '\0';
    return s;
}

static uint64_t fnv1a64(const unsigned char *b, size_t n) {
    uint64_t h = FNV_BASIS;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * FNV_PRIME;
    return h;
}

/* A model's training state as one block of 3n doubles: its n weights w,
 * then Adam's first and second moments m and v. Checkpoints hold it, and a
 * run keeps its best step's in one; state_unpack puts it back. */
void state_pack(double *all, const double *w, const double *m, const double *v, int n) {
    const size_t b = sizeof(double) * (size_t)n;
    memcpy(all, w, b);
    memcpy(all + n, m, b);
    memcpy(all + 2 * (size_t)n, v, b);
}

void state_unpack(const double *all, double *w, double *m, double *v, int n) {
    const size_t b = sizeof(double) * (size_t)n;
    memcpy(w, all, b);
    memcpy(m, all + n, b);
    memcpy(v, all + 2 * (size_t)n, b);
}

/* Write a checkpoint of chapter `tag` (4 characters) to path: the
 * description desc and the n parameters p. Exits 1 with a message if the
 * file cannot be written; path is then left as it was. */
void ckpt_write(const char *path, const char *tag, const Bytes *desc, const double *p, int n) {
    Bytes y = { NULL, 0, 0 };
    bytes_put(&y, ckpt_magic, 8);
    bytes_put_u32(&y, CKPT_VERSION);
    bytes_put(&y, tag, 4);
    bytes_put_u64(&y, desc->n);
    bytes_put(&y, desc->b, desc->n);
    bytes_put_u64(&y, (uint64_t)n);
    for (int i = 0; i < n; i++) bytes_put_f64(&y, p[i]);
    bytes_put_u64(&y, fnv1a64(y.b, y.n));
    OutFile o = out_open(path);
    fwrite(y.b, 1, y.n, o.f);
    out_close(&o);
    free(y.b);
}

/* Read the checkpoint at path, which must be chapter `tag`'s. On success 0,
 * *desc a copy of the description (free desc->b), *p a new block of *n
 * parameters (free it). Else -1, nothing allocated, and why says what is
 * wrong: missing, truncated, not a checkpoint, another version, another
 * chapter's, or corrupted (the checksum). */
int ckpt_read(const char *path, const char *tag, Bytes *desc, double **p, int *n,
              char *why, size_t nwhy) {
    FILE *f = fopen(path, "rb");
    if (!f) { snprintf(why, nwhy, "cannot open '%s': %s", path, strerror(errno)); return -1; }
    Bytes y = { NULL, 0, 0 };
    unsigned char chunk[1 << 14];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) bytes_put(&y, chunk, got);
    const int err = ferror(f) ? errno : 0;
    fclose(f);
    Reader r = { y.b, y.n, 0, 1 };
    const unsigned char *magic = reader_take(&r, 8);
    const char *bad = NULL;
    char msg[160];
    if (err) bad = strerror(err);
    else if (!magic || memcmp(magic, ckpt_magic, 8) != 0)
        bad = "not a checkpoint of these programs (its first bytes are not \"ATTNCKPT\")";
    uint32_t version = bad ? 0 : reader_u32(&r);
    const unsigned char *t = bad ? NULL : reader_take(&r, 4);
    if (!bad && r.ok && version != CKPT_VERSION) {
        snprintf(msg, sizeof msg, "format version %lu; this program reads version %d",
                 (unsigned long)version, CKPT_VERSION);
        bad = msg;
    } else if (!bad && t && memcmp(t, tag, 4) != 0) {
        snprintf(msg, sizeof msg, "a checkpoint of another program (tag %.4s, this one "
                 "reads %.4s)", (const char *)t, tag);
        bad = msg;
    }
    const uint64_t nd = bad ? 0 : reader_u64(&r);
    const unsigned char *d = bad || nd > y.n ? NULL : reader_take(&r, (size_t)nd);
    const uint64_t np = bad ? 0 : reader_u64(&r);
    const size_t body = r.at;
    if (!bad && (!r.ok || !d || np > (y.n - body) / 8 || np > 2147483647u ||
                 y.n - body - np * 8 < 8))
        bad = "truncated: it ends before the parameters and the checksum it announces";
    else if (!bad && y.n - body - np * 8 > 8)
        bad = "longer than it announces: bytes follow the checksum";
    if (!bad) {
        Reader c = { y.b + body + np * 8, 8, 0, 1 };
        if (reader_u64(&c) != fnv1a64(y.b, body + np * 8))
            bad = "corrupted: its checksum does not match its contents";
    }
    if (bad) { snprintf(why, nwhy, "'%s': %s", path, bad); free(y.b); return -1; }
    desc->b = xmalloc((size_t)nd + 1); desc->n = desc->cap = (size_t)nd;
    memcpy(desc->b, d, (size_t)nd);
    *n = (int)np;
    *p = xmalloc(sizeof(double) * (size_t)(np ? np : 1));
    for (uint64_t i = 0; i < np; i++) (*p)[i] = reader_f64(&r);
    free(y.b);
    return 0;
}

/* ========================================================================
 * 11. why divide by sqrt(d_k)? the measurement (section 3b of the tour)
 *
 * With q, k of d_k entries ~ N(0,1), q . k has variance d_k: the scores grow
 * like sqrt(d_k), the softmax saturates towards one-hot, and its Jacobian
 * diag(a) - a a^T, the only path a gradient has back to the scores, goes to
 * zero. Dividing by sqrt(d_k) keeps the scores at unit variance for every d_k.
 * ======================================================================== */

typedef struct {
    double score_std;  /* standard deviation of the scores */
    double max_weight; /* mean of the largest softmax weight */
    double entropy;    /* mean entropy of the weights, nats (uniform: log T) */
    double jac_norm;   /* mean Frobenius norm of the softmax Jacobian */
} SoftmaxStats;

/* The entropy of weights a (T, non-negative, summing to 1), in nats:
 * -sum_i a_i log a_i, a zero weight adding 0. Uniform gives log T, one-hot 0. */
double weights_entropy(const double *a, int T) {
    double H = 0.0;
    for (int i = 0; i < T; i++)
        if (a[i] > 0) H -= a[i] * log(a[i]);
    return H;
}

/* Averages over `trials` draws of one query and T keys of width dk, entries
 * N(0,1), of the softmax of (q . k_i) * scale. Allocates its own scratch. */
SoftmaxStats softmax_stats(Rng *r, int dk, int T, int trials, double scale) {
    SoftmaxStats st = {0, 0, 0, 0};
    double *q = xcalloc_doubles(dk), *K = xcalloc_doubles(T * dk), *a = xcalloc_doubles(T);
    Score s;
    score_bind(&s, NULL, SCORE_DOT, dk, dk, 0);
    double sum2 = 0.0;
    for (int n = 0; n < trials; n++) {
        rng_fill_normal(r, q, dk, 1.0);
        rng_fill_normal(r, K, T * dk, 1.0);
        score_forward(a, NULL, q, K, T, &s);
        for (int i = 0; i < T; i++) { a[i] *= scale; sum2 += a[i] * a[i]; }
        softmax_forward(a, a, T);
        double mx = 0.0, H = weights_entropy(a, T), J = 0.0;
        for (int i = 0; i < T; i++) {
            if (a[i] > mx) mx = a[i];
            for (int j = 0; j < T; j++) {
                double Jij = (i == j ? a[i] : 0.0) - a[i] * a[j];
                J += Jij * Jij;
            }
        }
        st.max_weight += mx / trials;
        st.entropy += H / trials;
        st.jac_norm += sqrt(J) / trials;
    }
    st.score_std = sqrt(sum2 / ((double)trials * T));
    free(q); free(K); free(a);
    return st;
}

/* ========================================================================
 * 12. fast kernels: an appendix to section 1
 *
 * The matmul products, tanh_forward and adam_update of section 1 run the
 * code here. Each computes what its plain form in section 1 computes (the
 * same bits for matmul and Adam; within 4 ulp for tanh), only faster.
 * ======================================================================== */

/* ---- matmul: gemm -------------------------------------------------------
 * Three products cover every forward and backward pass:
 *     matmul_forward  out  = a @ b        (forward)
 *     matmul_nt_add   out += a @ b^T      (backward: dx = dout @ W^T)
 *     matmul_tn_add   out += a^T @ b      (backward: dW = x^T @ dout)
 * (and matmul_nn_add, matmul_nt_forward: the other two combinations). All
 * are one routine, gemm(): out += A B, or out = A B, where A and B are read
 * through strides, so a transpose costs nothing but a different stride.
 * Writing out = A B directly, rather than clearing out and adding, saves a
 * pass over out: at d_model 128 the clears were ~5% of a training step.
 *
 * Why not three plain loops? A textbook i-k-j loop keeps reloading and
 * storing out, and its transposed forms walk memory with a large stride; it
 * runs at a fraction of the machine's speed. The speed comes from two ideas:
 *   1. Register tile. The innermost kernel computes an MR x NR block of out
 *      in accumulators that stay in vector registers for the whole k loop:
 *      per k it loads NR values of B and MR of A and does MR * NR fused
 *      multiply-adds, instead of loading and storing out every time.
 *   2. Packing. Before the kernel runs, the slice of B it needs (KC x NC)
 *      is copied into NR-wide column panels, so the kernel walks B with
 *      stride 1 whatever the transpose, and the panels stay in cache while
 *      every row block reuses them. A mostly needs no copy: the kernel reads
 *      one number of each of its MR rows per k, in place; a short last block
 *      (zero-padded, so that nothing past A is read) is copied, and so,
 *      in gemm, are a wide product's blocks and, at 128 columns or more, a
 *      transposed A's (a whole KC slice at once when it has at most 256
 *      rows), where the copy pays for itself. A short product (at most 64
 *      rows: a recurrent step's batch, one head's sequence) uses each panel
 *      of B too few times to pay for packing it, and mostly reads B in
 *      place too (gemm_short); a single row needs no tile at all
 *      (gemm_row).
 * The tile is chosen for the vector unit the compiler targets, so that the
 * accumulators, one vector of B per VL columns and one broadcast of A fit
 * in its registers (VL = doubles per vector register):
 *     AVX-512   32 registers x 8 doubles: 8 x 16 tile, 16 accumulators
 *     AVX2/AVX  16 registers x 4:         6 x 8 tile,  12 accumulators
 *     NEON      32 registers x 2:         6 x 8 tile,  24 accumulators
 *     SSE2      16 registers x 2:         4 x 4 tile,   8 accumulators
 * (a tile too big for the registers spills them to memory every k: the 8 x
 * 16 tile on 16 AVX2 registers ran at a third of this one's speed).
 * Every tile gives the same bits: each element of out is one chain of
 * fused multiply-adds over a KC slice of k in order, added to out.
 * gcc and clang get the tile as their vector type (vector_size): C99 has
 * no way to say "keep these in registers", and gcc spills a plain-array
 * tile. Other compilers get the same loops on plain doubles.
 * The B panel and the A^T slice are gemm's own static scratch (512 KB and
 * 270 KB: too much for the stack, and reused by every call, so there is no
 * allocation here), written only outside its parallel loop (`make omp`);
 * the programs call gemm from one thread. `./attention --bench` prints the
 * kernel's speed beside the core's peak; the tests hold it against a plain
 * loop at odd sizes. */

#if defined(__AVX512F__)
#define GEMM_ISA "AVX-512"
#define GEMM_VL 8    /* doubles per vector register */
#define GEMM_MR 8
#define GEMM_NR 16
#elif defined(__AVX__)
#if defined(__AVX2__) && defined(__FMA__)
#define GEMM_ISA "AVX2+FMA"
#else
#define GEMM_ISA "AVX"
#endif
#define GEMM_VL 4    /* doubles per vector register */
#define GEMM_MR 6
#define GEMM_NR 8
#elif defined(__aarch64__)    /* 64-bit ARM: NEON with doubles (32-bit ARM's has none) */
#define GEMM_ISA "NEON"
#define GEMM_VL 2    /* doubles per vector register */
#define GEMM_MR 6
#define GEMM_NR 8
#elif defined(__SSE2__)
#define GEMM_ISA "SSE2"
#define GEMM_VL 2    /* doubles per vector register */
#define GEMM_MR 4
#define GEMM_NR 4
#else
#define GEMM_ISA "scalar"
#define GEMM_VL 1    /* doubles per vector register */
#define GEMM_MR 4
#define GEMM_NR 4
#endif
enum { GEMM_KC = 128, GEMM_NC = 512, GEMM_WIDE = 256,   /* GEMM_WIDE: see gemm() */
       GEMM_SHORT = 64,                                    /* see gemm_short() */
       GEMM_AT = 256 };                                    /* see gemm_pack_at() */

/* a*b + c in one rounding where the hardware has a fused multiply-add (C99's
 * fma(), a single instruction there); elsewhere the plain expression, since a
 * software fma() would be slow. C99 says FP_FAST_FMA when fma() is fast;
 * gcc's math.h says it under -march=native, clang's does not, so we also ask
 * the compiler itself (__FMA__ on x86, __ARM_FEATURE_FMA on ARM). */
#if defined(FP_FAST_FMA) || defined(__FMA__) || defined(__ARM_FEATURE_FMA)
#define GEMM_FUSED 1
#define FMA(a, b, c) fma(a, b, c)
#else
#define GEMM_FUSED 0
#define FMA(a, b, c) ((a) * (b) + (c))
#endif

/* The accumulators' type: GEMM_VL doubles in one register. On vector types
 * fma() does not apply, so the kernel writes c = a * b + c and asks for it
 * to be contracted into one fused instruction where the hardware has one:
 * gcc takes a per-function option, clang the C99 pragma inside the body.
 * (The build's -ffp-contract=off keeps every other a * b + c unfused.) */
#if defined(__GNUC__) && GEMM_VL > 1 && !defined(GEMM_PLAIN)
#define GEMM_VECTOR 1
typedef double gemm_vec __attribute__((vector_size(GEMM_VL * sizeof(double))));
#if defined(__clang__) || !GEMM_FUSED
#define GEMM_CONTRACT
#else     /* gcc contracts only in its -O2 passes: this function gets them at any -O */
#define GEMM_CONTRACT __attribute__((optimize("O3", "fp-contract=fast")))
#endif
#else
#define GEMM_VECTOR 0
typedef double gemm_vec;
#define GEMM_CONTRACT
#endif
enum { GEMM_NV = GEMM_NR / (GEMM_VECTOR ? GEMM_VL : 1) };   /* vectors per tile row */

/* A hint to the cache: start fetching the line that holds *p. gcc and clang
 * have one; elsewhere it is nothing (a hint changes no result). */
#if defined(__GNUC__)
#define GEMM_PREFETCH(p) __builtin_prefetch(p)
#else
#define GEMM_PREFETCH(p) ((void)(p))
#endif

/* Ask for part `part` of `parts` (split along k) of the block A (rows, kc),
 * A[r][k] = a[r*sai + k*sak]: one hint per 8 doubles (each multiple of 8
 * of k falls in one part, so the parts together ask once). A row-major
 * block's rows are stride-1; A^T's rows lie across its columns, so each k
 * needs the lines of its first and last row. */
static void gemm_prefetch(const double *a, int sai, int sak, int rows, int kc, int part,
                          int parts) {
    const int kb = part * kc / parts, ke = (part + 1) * kc / parts;
    if (sak == 1)
        for (int r = 0; r < rows; r++)
            for (int k = (kb + 7) / 8 * 8; k < ke; k += 8) GEMM_PREFETCH(a + r * sai + k);
    else
        for (int k = kb; k < ke; k++) {
            GEMM_PREFETCH(a + k * sak);
            GEMM_PREFETCH(a + (rows - 1) * sai + k * sak);
        }
}

/* out (mr,nr) += A (MR,K) @ B (K,NR), or, if add is 0, out = the product,
 * where A[r][k] = ap[r*ars + k*aks]: the packed panel (ars 1, aks MR) or A
 * itself, and B[k][j] = bp[k*bks + j]: the packed panel (bks NR) or a
 * row-major B itself; it accumulates a full MR x NR tile, and only mr x nr
 * of it is written back. */
GEMM_CONTRACT
static void gemm_kernel(double *restrict out, int ldo, const double *restrict ap, int ars,
                        int aks, const double *restrict bp, int bks, int K, int mr, int nr,
                        int add) {
#if defined(__clang__) && GEMM_FUSED
#pragma STDC FP_CONTRACT ON
#endif
    gemm_vec c[GEMM_MR][GEMM_NV];
    for (int r = 0; r < GEMM_MR; r++)
        for (int v = 0; v < GEMM_NV; v++)
            c[r][v] = (gemm_vec){ 0 };
    for (int k = 0; k < K; k++) {
        /* Row k of the B panel, a vector at a time. One memcpy of the whole
         * row, as this was first written, made gcc 12 keep that row in
         * memory and store the whole tile there too on every k (18 vector
         * stores per k on AVX-512): that build ran at 25 GFLOPS on a Zen 5
         * core whose peak for it is 98-124, and at 84-96 written this way
         * (`./attention --bench`, 2026-12-02). */
        gemm_vec b[GEMM_NV];
        for (int v = 0; v < GEMM_NV; v++)
            memcpy(&b[v], bp + k * bks + v * (GEMM_NR / GEMM_NV), sizeof b[v]);
        for (int r = 0; r < GEMM_MR; r++) {
#if GEMM_VECTOR
            /* A[r][k] in every lane (x - 0 is x, even for -0: one broadcast) */
            const gemm_vec a = ap[r * ars + k * aks] - (gemm_vec){ 0 };
            for (int v = 0; v < GEMM_NV; v++)
                c[r][v] = a * b[v] + c[r][v];
#else
            const double a = ap[r * ars + k * aks];
            for (int v = 0; v < GEMM_NV; v++)
                c[r][v] = FMA(a, b[v], c[r][v]);
#endif
        }
    }
    /* out = 0.0 + tile, not out = tile: the very bits clearing out and adding
     * gave (an underflowing fma can leave -0 in a tile, and 0.0 + -0 is +0).
     * A whole tile goes back a vector at a time: with K = 16, as in a head of
     * d_model 128, element by element took as long as the k loop. */
    if (mr == GEMM_MR && nr == GEMM_NR) {
        for (int r = 0; r < GEMM_MR; r++)
            for (int v = 0; v < GEMM_NV; v++) {
                double *o = out + r * ldo + v * (GEMM_NR / GEMM_NV);
                gemm_vec x = { 0 };
                if (add) memcpy(&x, o, sizeof x);
                x = x + c[r][v];
                memcpy(o, &x, sizeof x);
            }
        return;
    }
    double tile[GEMM_MR][GEMM_NR];
    memcpy(tile, c, sizeof tile);
    for (int r = 0; r < mr; r++)
        for (int j = 0; j < nr; j++)
            out[r * ldo + j] = (add ? out[r * ldo + j] : 0.0) + tile[r][j];
}

/* bp = B (kc, nc), B[k][j] = b[k*sbk + j*sbj], as NR-wide column panels,
 * each (kc, NR) contiguous (bp[j0*kc + k*NR + j] = B[k][j0 + j]), the last
 * one zero-padded. Row-major B is read a row at a time, front to back, a
 * pattern the hardware prefetches well (panel by panel read one line of
 * every row, and stalled on each when B came from memory); B^T (sbk == 1)
 * is read in 4 x 4 blocks, four of its rows at a time, so that the panel is
 * written four adjacent values at a time, not one value per line, by a
 * transpose gcc -O3 turns into vector shuffles (e.g. the dx = dY W^T
 * products of every backward, and Q K^T: an AVX2 build's `./seq2seq` took
 * 0.97 of its time, the same bits). */
static void gemm_pack_b(double *restrict bp, const double *restrict b, int sbk, int sbj,
                        int kc, int nc) {
    const int nfull = nc - nc % GEMM_NR;           /* columns in whole panels */
    if (sbj == 1)
        for (int k = 0; k < kc; k++)
            for (int j0 = 0; j0 < nfull; j0 += GEMM_NR)
                memcpy(bp + j0 * kc + k * GEMM_NR, b + k * sbk + j0, sizeof(double) * GEMM_NR);
    else if (sbk == 1) {                           /* B^T, NR % 4 == 0 on every path */
        const int k4 = kc - kc % 4;
        for (int j0 = 0; j0 < nfull; j0 += GEMM_NR) {
            double *restrict p = bp + j0 * kc;
            for (int k = 0; k < k4; k += 4)
                for (int j = 0; j < GEMM_NR; j += 4)
                    for (int x = 0; x < 4; x++)
                        for (int y = 0; y < 4; y++)
                            p[(k + x) * GEMM_NR + j + y] = b[k + x + (j0 + j + y) * sbj];
            for (int k = k4; k < kc; k++)
                for (int j = 0; j < GEMM_NR; j++) p[k * GEMM_NR + j] = b[k + (j0 + j) * sbj];
        }
    } else
        for (int j0 = 0; j0 < nfull; j0 += GEMM_NR)
            for (int j = 0; j < GEMM_NR; j++)
                for (int k = 0; k < kc; k++)
                    bp[j0 * kc + k * GEMM_NR + j] = b[k * sbk + (j0 + j) * sbj];
    if (nfull < nc)                                /* the last, padded panel */
        for (int k = 0; k < kc; k++)
            for (int j = 0; j < GEMM_NR; j++)
                bp[nfull * kc + k * GEMM_NR + j] =
                    nfull + j < nc ? b[k * sbk + (nfull + j) * sbj] : 0.0;
}

/* ap (kc, MR) = the block A (mr, kc), A[r][k] = a[r*sai + k*sak], packed
 * k-major (ap[k*MR + r] = A[r][k]) and zero-padded to MR rows, so that the
 * kernel reads it with stride 1 and never past A. gemm() copies a block
 * - when the product is wide (nc >= 256): the copy is shared by nc / NR
 *   kernel calls, and in place the MR rows sit a whole row of A apart, at
 *   512 or 1024 columns a multiple of 4 KB, and fight over one set of the
 *   L1 cache (at n = 1024, a^T @ b went from 69% of OpenBLAS to 84%);
 * - when A is A^T (sak > 1) and nc >= 128, and A has more than GEMM_AT
 *   rows (with at most GEMM_AT, gemm_pack_at() packs the whole slice,
 *   short block included): in place each k of the block is on its own
 *   cache line, a row of A from the last (1 KB at 128 columns: four sets
 *   of the L1), and the kc lines evict each other between kernel calls
 *   (the d_model 128 Transformer step, AVX2 on Zen 3: 0.96 and 0.97 of its
 *   time in two runs, 1.01 in a third);
 *   narrower, the copy is shared by too few kernel calls (128 x 1024 x 16
 *   ran at 26 GFLOPS copied, 36 in place);
 * - when the block is short (mr < MR): its zero rows keep the kernel
 *   inside A. */
static void gemm_pack_a(double *restrict ap, const double *restrict a, int sai, int sak,
                        int mr, int kc) {
    for (int k = 0; k < kc; k++)
        for (int r = 0; r < GEMM_MR; r++)
            ap[k * GEMM_MR + r] = r < mr ? a[r * sai + k * sak] : 0.0;
}

/* ap = every block of the slice A (M, kc) of an A^T (sak > 1), M <= GEMM_AT,
 * each packed as gemm_pack_a packs it (block i0 at ap + i0*kc), but read a
 * row of A^T at a time, front to back, whereas packing block by block
 * reads MR values from each of kc rows. Inside a training step A^T mostly
 * comes from memory (a weight gradient's X^T, 1024 x 128 at d_model 128),
 * and a stream of whole rows is what the hardware prefetches well: the
 * 128 x 1024 x 128 product, cold, ran 5-13% faster (AVX2 on Zen 3; the
 * same bits). */
static void gemm_pack_at(double *restrict ap, const double *restrict a, int sai, int sak,
                         int M, int kc) {
    const int mfull = M - M % GEMM_MR;
    for (int k = 0; k < kc; k++) {
        const double *row = a + k * sak;
        for (int i0 = 0; i0 < mfull; i0 += GEMM_MR)
            for (int r = 0; r < GEMM_MR; r++)
                ap[i0 * kc + k * GEMM_MR + r] = row[(i0 + r) * sai];
        if (mfull < M)                                  /* the last, padded block */
            for (int r = 0; r < GEMM_MR; r++)
                ap[mfull * kc + k * GEMM_MR + r] = mfull + r < M ? row[(mfull + r) * sai] : 0.0;
    }
}

/* gemm() for a short A: M <= GEMM_SHORT rows, as in a recurrent step (a
 * batch of 32) or one head (a sequence of 32), and N <= NC. Each panel of B
 * then serves only M / MR kernel calls, too few to pay for packing it: so a
 * row-major B whose columns fill whole panels is read in place (the
 * kernel's bks is its row stride), and the loops are turned round, every
 * row block walking one panel while it sits in L1. Only a short last block
 * of A is copied, once per slice. The same sums in the same order as gemm,
 * so the same bits. (An AVX2 build on a Zen 5 core: chapter 2's GRU steps
 * took 0.93 of the time they took before this path, a Transformer step
 * 0.98; README, "Speed".) */
static void gemm_short(double *restrict out, int add, const double *restrict a, int sai,
                       int sak, const double *restrict b, int sbk, int sbj, int M, int K,
                       int N, double *restrict bpanel) {
    /* In place, unless B's rows are a multiple of 4 KB apart (512 columns)
     * and many row blocks reuse each panel: a panel's rows then crowd into
     * one or two sets of the L1 cache and evict each other before the next
     * block reads them. The rule is measured, not derived (Zen 5, AVX2 and
     * AVX-512 tiles): 64 x 512 x 512 ran at 0.8 of its packed speed, 48 rows
     * about even, 16 x 512 x 512 at 1.4-1.8 (too little reuse to pay for
     * packing); shorter strides (N = 384) ran faster in place. */
    const int inplace = sbj == 1 && N % GEMM_NR == 0 && (sbk % 512 != 0 || M < 6 * GEMM_MR);
    const int mfull = M - M % GEMM_MR;
    double apanel[GEMM_KC * GEMM_MR];
    for (int k0 = 0; k0 < K; k0 += GEMM_KC) {
        const int kc = K - k0 < GEMM_KC ? K - k0 : GEMM_KC;
        const double *bp = b + k0 * sbk;               /* panel j0: bp + j0 * pstep */
        int bks = sbk, pstep = 1;
        if (!inplace) {
            gemm_pack_b(bpanel, bp, sbk, sbj, kc, N);
            bp = bpanel; bks = GEMM_NR; pstep = kc;
        }
        if (mfull < M) gemm_pack_a(apanel, a + mfull * sai + k0 * sak, sai, sak, M - mfull, kc);
        for (int j0 = 0; j0 < N; j0 += GEMM_NR) {
            const int nr = N - j0 < GEMM_NR ? N - j0 : GEMM_NR;
            for (int i0 = 0; i0 < M; i0 += GEMM_MR) {
                const int full = i0 < mfull;
                gemm_kernel(out + i0 * N + j0, N, full ? a + i0 * sai + k0 * sak : apanel,
                            full ? sai : 1, full ? sak : GEMM_MR, bp + j0 * pstep, bks, kc,
                            full ? GEMM_MR : M - mfull, nr, add || k0 > 0);
            }
        }
    }
}

/* out (1,N) = or += a (1,K) @ B (K,N), a[k*sak], B[k][j] = b[k*sbk + j],
 * N <= NC: gemm() for one row of A, as the additive score's W q for one
 * query, where the kernel would compute MR rows to keep one. The same
 * chains, one per column, run side by side along k instead (at -O3 the
 * compiler vectorises the loop over j; gcc's -O2 leaves it scalar), so the
 * same bits. */
static void gemm_row(double *restrict out, int add, const double *restrict a, int sak,
                     const double *restrict b, int sbk, int K, int N) {
    double s[GEMM_NC];                                 /* N <= NC */
    for (int k0 = 0; k0 < K; k0 += GEMM_KC) {
        const int ke = K - k0 < GEMM_KC ? K : k0 + GEMM_KC;
        for (int j = 0; j < N; j++) s[j] = 0.0;
        for (int k = k0; k < ke; k++)
            for (int j = 0; j < N; j++) s[j] = FMA(a[k * sak], b[k * sbk + j], s[j]);
        for (int j = 0; j < N; j++) out[j] = (add || k0 > 0 ? out[j] : 0.0) + s[j];
    }
}

/* `make omp` builds with OpenMP: the row blocks of a large product then run
 * on several cores. The plain build never sees the pragma (C99 _Pragma inside
 * #ifdef), so it stays single-threaded, warning-free and bit-identical. */
#ifdef _OPENMP    /* parallel only when the local `big` is true */
#define OMP_PARALLEL_FOR_IF_BIG _Pragma("omp parallel for if(big) schedule(static)")
#define GEMM_OMP 1    /* gemm_short is serial: a big product stays in gemm */
#else
#define OMP_PARALLEL_FOR_IF_BIG
#define GEMM_OMP 0
#endif

/* Is a slice (M, kc, nc) worth splitting across cores? */
static int gemm_big(int M, int kc, int nc) { return M >= 64 && (double)M * kc * nc >= 1e6; }

/* out (M,N) += A (M,K) @ B (K,N) if add, else out = A B, where
 * A[i][k] = a[i*sai + k*sak] and B[k][j] = b[k*sbk + j*sbj]. out must not
 * overlap a or b. Without add, the first slice of the sum writes out and the
 * later ones add to it: the same sums in the same order as clearing first. */
static void gemm(double *restrict out, int add, const double *restrict a, int sai, int sak,
                 const double *restrict b, int sbk, int sbj, int M, int K, int N) {
    static double bpanel[GEMM_KC * GEMM_NC],           /* see the note above */
        aslice[GEMM_KC * (GEMM_AT + GEMM_MR)];         /* see gemm_pack_at() */
    if (K <= 0 && !add)                                /* an empty sum: out = 0 */
        memset(out, 0, sizeof(double) * (size_t)M * (size_t)N);
    if (M == 1 && sbj == 1 && N <= GEMM_NC) {
        gemm_row(out, add, a, sak, b, sbk, K, N);
        return;
    }
    if (M <= GEMM_SHORT && N <= GEMM_NC && !(GEMM_OMP && gemm_big(M, GEMM_KC, N))) {
        gemm_short(out, add, a, sai, sak, b, sbk, sbj, M, K, N, bpanel);
        return;
    }
    for (int jc = 0; jc < N; jc += GEMM_NC) {          /* a block of NC columns */
        const int nc = N - jc < GEMM_NC ? N - jc : GEMM_NC;
        for (int k0 = 0; k0 < K; k0 += GEMM_KC) {      /* a slice of KC of the sum */
            const int kc = K - k0 < GEMM_KC ? K - k0 : GEMM_KC;
            gemm_pack_b(bpanel, b + k0 * sbk + jc * sbj, sbk, sbj, kc, nc);
            const int at = sak > 1 && nc >= 128 && M <= GEMM_AT;   /* A^T, packed whole */
            if (at) gemm_pack_at(aslice, a + k0 * sak, sai, sak, M, kc);
            const int big = gemm_big(M, kc, nc);
            (void)big;
            OMP_PARALLEL_FOR_IF_BIG
            for (int i0 = 0; i0 < M; i0 += GEMM_MR) {  /* MR rows of out at a time */
                double apanel[GEMM_KC * GEMM_MR];      /* 8 KB at most: on the stack */
                const int mr = M - i0 < GEMM_MR ? M - i0 : GEMM_MR;
                /* A block of MR rows is read in place when the product is
                 * narrow: copying it cost as much as the kernel when N is
                 * small (a head's 32 x 16 x 32). It is copied when the
                 * product is wide, when A is A^T and nc >= 128 (all blocks
                 * at once above if M <= GEMM_AT), and when the block is
                 * short (gemm_pack_a() says why). */
                const double *ap = a + i0 * sai + k0 * sak;
                int ars = sai, aks = sak;
                if (at) {
                    ap = aslice + i0 * kc; ars = 1; aks = GEMM_MR;
                } else if (mr < GEMM_MR || nc >= GEMM_WIDE || (sak > 1 && nc >= 128)) {
                    gemm_pack_a(apanel, ap, sai, sak, mr, kc);
                    ap = apanel; ars = 1; aks = GEMM_MR;
                }
                /* While this block's kernels run, the next block of A (if
                 * not in aslice) is fetched, a slice of k per call: in a
                 * step A mostly comes from memory (the products before it
                 * pushed it out of the caches), and waiting for it cost the
                 * d_model 128 step 7% (README, "Speed"). */
                const int mnext = M - i0 - GEMM_MR < GEMM_MR ? M - i0 - GEMM_MR : GEMM_MR;
                const int calls = (nc + GEMM_NR - 1) / GEMM_NR;
                for (int j0 = 0; j0 < nc; j0 += GEMM_NR) {
                    const int nr = nc - j0 < GEMM_NR ? nc - j0 : GEMM_NR;
                    if (mnext > 0 && !at)
                        gemm_prefetch(a + (i0 + GEMM_MR) * sai + k0 * sak, sai, sak, mnext, kc,
                                      j0 / GEMM_NR, calls);
                    gemm_kernel(out + i0 * N + jc + j0, N, ap, ars, aks, bpanel + j0 * kc,
                                GEMM_NR, kc, mr, nr, add || k0 > 0);
                }
            }
        }
    }
}

/* ---- tanh ---------------------------------------------------------------- */

/* tanh_forward's loop (section 1): out (n) = tanh(x (n)), out may be x, in
 * plain arithmetic that the compiler vectorises:
 *     tanh|x| = -m / (2 + m)  with  m = e^(-2|x|) - 1
 * and e^y - 1 is computed by range reduction: y = k ln2 + r, |r| <= ln2/2,
 * e^y - 1 = 2^k (e^r - 1) + (2^k - 1), e^r - 1 by its Taylor series to r^13
 * (the next term is below 1e-17). 2^k is built from its IEEE bits. The tests
 * hold it to libm's tanh within 4 units in the last place.
 * gcc (12) keeps this loop scalar, "control flow in loop", unless it may
 * treat the clamp's comparison as unable to trap: TANH_SELECTS tells it so
 * for this function (clang vectorises it as it is). No result changes: a
 * trap is only an exception flag, which nothing here reads. */
#if defined(__GNUC__) && !defined(__clang__)
#define TANH_SELECTS __attribute__((optimize("no-trapping-math")))
#else
#define TANH_SELECTS
#endif
TANH_SELECTS
static void tanh_fast(double *out, const double *x, int n) {
    const double shift = 0x1.8p52;                     /* adding it rounds to an integer */
    const double inv_ln2 = 0x1.71547652b82fep0;        /* 1 / ln 2 */
    const double ln2_hi = 0x1.62e42fefa3800p-1, ln2_lo = 0x1.ef35793c76730p-45; /* ln 2 */
    for (int i = 0; i < n; i++) {
        double xi = x[i], y = -2.0 * fabs(xi);
        y = y < -40.0 ? -40.0 : y;                     /* tanh(20) is 1 in double */
        double kd = y * inv_ln2 + shift;               /* k = round(y / ln2), in the low bits */
        uint64_t bits;
        memcpy(&bits, &kd, sizeof bits);
        kd -= shift;
        double r = (y - kd * ln2_hi) - kd * ln2_lo;    /* y - k ln2, in two parts for accuracy */
        double p = r * (1.0 + r * (1.0 / 2 + r * (1.0 / 6 + r * (1.0 / 24 + r * (1.0 / 120
                 + r * (1.0 / 720 + r * (1.0 / 5040 + r * (1.0 / 40320 + r * (1.0 / 362880
                 + r * (1.0 / 3628800 + r * (1.0 / 39916800 + r * (1.0 / 479001600
                 + r * (1.0 / 6227020800.0)))))))))))));   /* e^r - 1 */
        uint64_t sbits = (bits - 0x4338000000000000ull + 1023u) << 52;  /* bits of 2^k */
        double sc;
        memcpy(&sc, &sbits, sizeof sc);
        double m = sc * p + (sc - 1.0);                /* e^y - 1 */
        double t = -m / (2.0 + m);
        out[i] = xi < 0 ? -t : t;
    }
}

/* ---- Adam, blocked --------------------------------------------------------- */

/* adam_update (section 1) in blocks of ADAM_BLOCK, with the square roots in
 * a loop of their own. Why? sqrt() may set errno, so the compiler keeps any
 * loop that calls it scalar, divisions included; apart, the other two loops
 * vectorise. Same operations in the same order as adam_update_plain, so the
 * same bits; twice as fast at 0.2M-0.7M entries. */
enum { ADAM_BLOCK = 128 };

void adam_update(double *p, const double *g, double *m, double *v, int n, int t,
                 double lr, double beta1, double beta2, double eps, double wd) {
    double c1 = 1.0 - pow(beta1, t), c2 = 1.0 - pow(beta2, t);
    double den[ADAM_BLOCK];                    /* sqrt(vhat) + eps, for one block */
    for (int i0 = 0; i0 < n; i0 += ADAM_BLOCK) {
        const int nb = n - i0 < ADAM_BLOCK ? n - i0 : ADAM_BLOCK;
        double *pb = p + i0, *mb = m + i0, *vb = v + i0;
        const double *gb = g + i0;
        for (int i = 0; i < nb; i++) {
            mb[i] = beta1 * mb[i] + (1.0 - beta1) * gb[i];
            vb[i] = beta2 * vb[i] + (1.0 - beta2) * gb[i] * gb[i];
            den[i] = vb[i] / c2;                                  /* vhat */
        }
        for (int i = 0; i < nb; i++) den[i] = sqrt(den[i]) + eps;
        for (int i = 0; i < nb; i++) pb[i] -= lr * (mb[i] / c1 / den[i] + wd * pb[i]);
    }
}

/* ========================================================================
 * 13. the tour and the report: ./attention runs each lesson section on
 *     built-in data; ./attention --report DIR runs every chapter's figures
 * ======================================================================== */
#if !defined(TESTING) && !defined(ATTENTION_LIBRARY)
/* chapter 1's own program: compiled only when attention.c is the file being
 * built. Chapters 2 and 3 define ATTENTION_LIBRARY before including this
 * file (they want its kernels, not its tour); tests.c defines TESTING. */

static void print_vec(const char *name, const double *x, int n) {
    printf("  %-10s [", name);
    for (int i = 0; i < n; i++) printf("%s%7.4f", i ? " " : "", x[i]);
    printf(" ]\n");
}

/* built-in data for sections 2-5: four keys, their values, one query that
 * resembles key 2 ("sat") most */
static const char *const tour_words[4] = { "the", "cat", "sat", "down" };
static const double tour_K[4 * 3] = { 0.1, 0.0, 0.2,   1.0, 0.2, -0.3,
                                      0.3, 1.1, 0.4,  -0.6, 0.4, 0.9 };
static const double tour_V[4 * 2] = { 1, 0,  0, 1,  1, 1,  -1, 0.5 };
static const double tour_q[3] = { 0.2, 1.0, 0.5 };

static void tour_three_steps(void) {
    printf("== 2. the mechanism: score -> softmax -> weighted sum\n");
    printf("One query q attends over four keys k_i with values v_i (dot score).\n");
    Score s;
    score_bind(&s, NULL, SCORE_DOT, 3, 3, 0);
    double e[4], a[4], c[2];
    score_forward(e, NULL, tour_q, tour_K, 4, &s);
    print_vec("scores e", e, 4);
    softmax_forward(a, e, 4);
    print_vec("weights a", a, 4);
    weighted_sum_forward(c, a, tour_V, 4, 2);
    print_vec("context c", c, 2);
    printf("  The weights sum to 1 and are largest for '%s'; c is the weighted average\n"
           "  of the values.\n\n",
           tour_words[argmax(a, 4)]);
}

static void tour_scores(Rng *r) {
    printf("== 3. score functions: the same query and keys, six ways to compare them\n");
    printf("  (general, additive and concat have random parameters here, A = 4)\n");
    for (int kind = 0; kind < SCORE_KINDS; kind++) {
        int np = score_num_params(kind, 3, 3, 4);
        double *params = xcalloc_doubles(np), *Kp = xcalloc_doubles(4 * 4);
        double cache[5 * 4], a[4], c[2];
        rng_fill_normal(r, params, np, 0.5);
        Score s;
        score_bind(&s, params, kind, 3, 3, 4);
        score_keys_forward(Kp, tour_K, 4, &s);
        attend_forward(c, a, cache, tour_q, Kp, tour_V, NULL, 4, 2, &s);
        print_vec(score_names[kind], a, 4);
        free(params); free(Kp);
    }
    printf("\n");
}

/* section 3b's measurement as a picture: the largest weight and |J| against
 * d_k, raw and scaled, in DIR/attention-sqrt-dk.svg */
static void tour_scaling_svg(const char *dir, const double *dk, const double *v, int n) {
    const ChartSeries mw[2] = { { "raw q.k", dk, v, n }, { "scaled", dk, v + n, n } };
    const ChartSeries jn[2] = { { "raw q.k", dk, v + 2 * n, n }, { "scaled", dk, v + 3 * n, n } };
    const ChartPanel p[2] = { { "largest weight", 0, mw, 2 }, { "|J| (Frobenius)", 1, jn, 2 } };
    char *path = path_join(dir, "attention-sqrt-dk.svg");
    write_svg_panels(path, "why divide by sqrt(d_k): unscaled, the softmax turns one-hot and "
                     "its Jacobian vanishes as d_k grows (16 keys, 400 draws)", "d_k", 1, p, 2);
    printf("  wrote %s\n", path);
    free(path);
}

static void tour_scaling(Rng *r, const char *dir) {
    printf("== 3b. why divide by sqrt(d_k)?  T = 16 keys, 400 draws per row,\n"
           "   q and k with N(0,1) entries; |J| = Frobenius norm of the softmax Jacobian\n");
    printf("   each pair: raw q.k, then scaled q.k/sqrt(d_k); uniform entropy log 16 = 2.77\n");
    printf("  %5s | %13s | %13s | %13s | %17s\n", "", "score std", "max weight", "entropy",
           "|J|");
    printf("  %5s | %6s %6s | %6s %6s | %6s %6s | %8s %8s\n", "d_k", "raw", "scaled", "raw",
           "scaled", "raw", "scaled", "raw", "scaled");
    double dks[5], v[4 * 5];     /* v: max weight raw, scaled; |J| raw, scaled */
    for (int i = 0, dk = 4; dk <= 1024; dk *= 4, i++) {
        SoftmaxStats raw = softmax_stats(r, dk, 16, 400, 1.0);
        SoftmaxStats sc = softmax_stats(r, dk, 16, 400, 1.0 / sqrt((double)dk));
        printf("  %5d | %6.2f %6.2f | %6.3f %6.3f | %6.3f %6.3f | %8.2e %8.2e\n",
               dk, raw.score_std, sc.score_std, raw.max_weight, sc.max_weight,
               raw.entropy, sc.entropy, raw.jac_norm, sc.jac_norm);
        dks[i] = dk;
        v[i] = raw.max_weight; v[5 + i] = sc.max_weight;
        v[10 + i] = raw.jac_norm; v[15 + i] = sc.jac_norm;
    }
    if (dir) tour_scaling_svg(dir, dks, v, 5);
    printf("  Unscaled, the scores' spread grows like sqrt(d_k): the softmax turns\n"
           "  one-hot and its Jacobian (the gradient path) vanishes. Scaled, nothing moves.\n\n");
}

/* section 4's REINFORCE estimator of the gradient of E[L] for the weights
 * a (4) of the tour's query: its error with and without a baseline */
static void tour_reinforce_variance(Rng *r, const double *a) {
    /* REINFORCE: loss L_i = |v_i - target|^2; exact grad_e E[L] = a (L - E[L]) */
    const double target[2] = { 0.0, 1.0 };
    double L[4], EL = 0.0, exact[4];
    for (int i = 0; i < 4; i++) {
        double d0 = tour_V[2 * i] - target[0], d1 = tour_V[2 * i + 1] - target[1];
        L[i] = d0 * d0 + d1 * d1;
        EL += a[i] * L[i];
    }
    for (int i = 0; i < 4; i++) exact[i] = a[i] * (L[i] - EL);
    print_vec("exact dE[L]/de", exact, 4);
    /* One estimate from N samples is one draw of a random vector: a single
     * run's error says little, so each N is repeated R times and the table
     * shows the root-mean-square error over the repeats. */
    enum { R = 40 };
    printf("  REINFORCE estimates, mean over N samples of (L_i - b)(onehot(i) - a);\n"
           "  error = |estimate - exact| (Euclidean), RMS over %d independent runs:\n", R);
    printf("  %7s | %17s | %19s | %6s\n", "N", "RMS error, b = 0", "RMS error, b = E[L]",
           "ratio");
    double ratio_lo = INFINITY, ratio_hi = 0.0;
    for (int N = 100; N <= 10000; N *= 10) {
        double ms0 = 0.0, ms1 = 0.0;
        for (int rep = 0; rep < R; rep++) {
            double est0[4] = {0, 0, 0, 0}, est1[4] = {0, 0, 0, 0}, e0 = 0.0, e1 = 0.0;
            for (int n = 0; n < N; n++) {   /* the same samples for both estimators */
                int i = hard_attention_sample(r, a, 4);
                hard_attention_backward(est0, L[i] / N, i, a, 4);
                hard_attention_backward(est1, (L[i] - EL) / N, i, a, 4);
            }
            for (int i = 0; i < 4; i++) {
                e0 += (est0[i] - exact[i]) * (est0[i] - exact[i]);
                e1 += (est1[i] - exact[i]) * (est1[i] - exact[i]);
            }
            ms0 += e0 / R;
            ms1 += e1 / R;
        }
        double ratio = sqrt(ms0 / ms1);
        ratio_lo = fmin(ratio_lo, ratio);
        ratio_hi = fmax(ratio_hi, ratio);
        printf("  %7d | %17.5f | %19.5f | %5.1fx\n", N, sqrt(ms0), sqrt(ms1), ratio);
    }
    printf("  Both errors shrink like 1/sqrt(N) (100x the samples, 10x less error) with\n"
           "  no floor: both estimators are unbiased. With the baseline the error is\n"
           "  %.1f-%.1fx smaller at the same N (lower variance): without it, the same\n"
           "  error takes about %.0fx the samples.\n", ratio_lo, ratio_hi, ratio_lo * ratio_lo);
}

/* section 4's hard attention trained by REINFORCE, with and without a baseline */
static void tour_reinforce_training(Rng *r) {
    /* training: a 0/1 loss has no gradient, REINFORCE trains the query anyway */
    enum { T = 6, D = 4 };
    printf("  Training hard attention with REINFORCE: among %d random keys pick the one\n"
           "  whose first entry is largest; loss 0 if right, 1 if wrong; query w learned,\n"
           "  SGD lr 0.5. Argmax accuracy on 1000 new examples (chance %.3f):\n", T, 1.0 / T);
    printf("  %7s | %10s | %20s\n", "step", "b = 0", "b = running mean L");
    double w0[D] = {0}, w1[D] = {0}, b = 0.5, work[T * D + 2 * T + D];
    Rng r0 = *r, r1 = *r, ev;
    for (int step = 0, chk = 100; chk <= 3200; chk *= 2) {
        for (; step < chk; step++) {
            hard_attention_train_step(&r0, w0, NULL, T, D, 0.5, work);
            hard_attention_train_step(&r1, w1, &b, T, D, 0.5, work);
        }
        rng_seed(&ev, 99);
        double acc0 = hard_attention_accuracy(&ev, w0, T, D, 1000, work);
        rng_seed(&ev, 99);
        printf("  %7d | %10.3f | %20.3f\n", chk, acc0, hard_attention_accuracy(&ev, w1, T, D, 1000, work));
    }
}

static void tour_hard(Rng *r) {
    printf("== 4. soft vs hard attention\n");
    Score s;
    score_bind(&s, NULL, SCORE_DOT, 3, 3, 0);
    double a[4], c[2];
    attend_forward(c, a, NULL, tour_q, tour_K, tour_V, NULL, 4, 2, &s);
    print_vec("soft c", c, 2);
    int counts[4] = {0, 0, 0, 0};
    for (int n = 0; n < 10000; n++) counts[hard_attention_sample(r, a, 4)]++;
    printf("  hard attention samples one position i ~ a (10000 draws):\n");
    for (int i = 0; i < 4; i++)
        printf("    %-5s a = %.4f  drawn %.4f\n", tour_words[i], a[i], counts[i] / 10000.0);
    int best = argmax(a, 4);
    hard_attention_forward(c, best, tour_V, 2);
    printf("  at inference it takes the argmax, '%s', and reads its value:\n", tour_words[best]);
    print_vec("hard c", c, 2);
    tour_reinforce_variance(r, a);
    tour_reinforce_training(r);
    printf("\n");
}

/* section 5's three maps side by side in DIR/attention-local.svg */
static void tour_local_svg(const char *dir, const double *glob, const double *locm,
                           const double *locp, int S, const char *const *tgt,
                           const char *const *src) {
    double *W = xcalloc_doubles(3 * S * S);
    memcpy(W, glob, sizeof(double) * (size_t)(S * S));
    memcpy(W + S * S, locm, sizeof(double) * (size_t)(S * S));
    memcpy(W + 2 * S * S, locp, sizeof(double) * (size_t)(S * S));
    const char *caps[3] = { "global", "local-m (p_t = t)", "local-p (predicted p_t)" };
    const HeatmapSvg h = { "global vs local attention (window D = 2, untrained scores): "
                           "local attention puts weight only near p_t",
                           "target step t", "source position", tgt, src, caps, 1 };
    char *path = path_join(dir, "attention-local.svg");
    write_svg_heatmaps(path, &h, W, NULL, 3, S, S, 3);
    printf("  wrote %s\n", path);
    free(path);
    free(W);
}

/* what section 5's window and section 4's hard pick save, counted: per
 * target step, the keys each form scores and the value rows it reads into c,
 * for local-m with D = 8 (timings: ./attention --bench) */
static void tour_local_saving(void) {
    enum { DW = 8 };
    printf("  What each form computes per target step, local-m with D = %d (mean over\n"
           "  t = 0..S-1; 'masked' scores all S keys and keeps the window's weights):\n", DW);
    printf("  %6s | %-30s | %s\n", "", "keys scored", "value rows read");
    printf("  %6s | %6s %7s %7s %7s | %6s %7s %7s\n", "S", "global", "masked", "window",
           "hard", "global", "local", "hard");
    for (int S = 64; S <= 4096; S *= 4) {
        long total = 0;                 /* window sizes n, summed over t */
        for (int t = 0; t < S; t++) {
            int lo;
            total += local_window(&lo, t, DW, S);
        }
        const double n = (double)total / S;
        printf("  %6d | %6d %7d %7.3f %7d | %6d %7.3f %7d\n", S, S, S, n, S, S, n, 1);
    }
    printf("  The window scores at most 2D + 1 = %d keys whatever S is (fewer where it\n"
           "  is clipped at the ends); masking scores all S and discards the rest.\n"
           "  Hard attention still scores every key but reads one value row, not S.\n",
           2 * DW + 1);
}

static void tour_local(Rng *r, const char *dir) {
    enum { S = 12, DIM = 4, D = 2, AP = 4 };
    printf("== 5. global vs local attention: %d source positions, window D = %d\n", S, D);
    double K[S * DIM], V[S * DIM], Q[S * DIM], Wp[DIM * AP], vp[AP], z[AP];
    double glob[S * S], locm[S * S], locp[S * S], align[S], c[DIM], pt[S];
    unsigned char mask[S];
    rng_fill_normal(r, K, S * DIM, 1.0);
    rng_fill_normal(r, V, S * DIM, 1.0);
    rng_fill_normal(r, Q, S * DIM, 1.0);
    rng_fill_normal(r, Wp, DIM * AP, 1.0);
    rng_fill_normal(r, vp, AP, 1.0);
    Score s;
    score_bind(&s, NULL, SCORE_DOT, DIM, DIM, 0);
    for (int t = 0; t < S; t++) {
        const double *q = Q + t * DIM;
        attend_forward(c, glob + t * S, NULL, q, K, V, NULL, S, DIM, &s);
        int lo, n = local_window(&lo, t, D, S);                 /* local-m: p = t */
        for (int i = 0; i < S; i++) locm[t * S + i] = 0.0;
        local_m_window_forward(c, locm + t * S + lo, NULL, q, K, V, lo, n, DIM, &s);
        pt[t] = local_position_forward(z, q, Wp, vp, S, DIM, AP); /* local-p */
        local_p_attend_forward(c, locp + t * S, align, mask, NULL, q, K, V, pt[t], D, S,
                               DIM, &s);
    }
    const char *src[S] = {"s0","s1","s2","s3","s4","s5","s6","s7","s8","s9","s10","s11"};
    const char *tgt[S] = {"t0","t1","t2","t3","t4","t5","t6","t7","t8","t9","t10","t11"};
    print_heatmap(stdout, "global: every target step t sees all source positions",
                  glob, S, S, tgt, src);
    print_heatmap(stdout, "local-m: window [t-D, t+D] around p_t = t", locm, S, S, tgt, src);
    print_heatmap(stdout, "local-p: window around a predicted p_t, Gaussian-weighted",
                  locp, S, S, tgt, src);
    printf("  predicted p_t:");
    for (int t = 0; t < S; t++) printf(" %.1f", pt[t]);
    printf("\n  (untrained W_p, v_p: the positions are arbitrary until training moves them)\n");
    if (dir) tour_local_svg(dir, glob, locm, locp, S, tgt, src);
    tour_local_saving();
    printf("\n");
}

/* section 6's maps as pictures in DIR: the causal head with its mask drawn,
 * the padded one, and the two heads on one shared scale */
static void tour_self_svg(const char *dir, const double *causal, const double *padded,
                          const unsigned char *pad, const double *heads, int T,
                          const char *const *words) {
    unsigned char *m = xmalloc((size_t)(T * T));
    const char *caps[2] = { "head 1", "head 2" };
    const char *name[3] = { "attention-self-causal.svg", "attention-self-padding.svg",
                            "attention-self-heads.svg" };
    const HeatmapSvg h[3] = {
        { "causal self-attention, one head: query t sees keys 0..t only (grey: masked)",
          "query", "key", words, words, NULL, 0 },
        { "self-attention with a padding mask: the last two positions are padding",
          "query", "key", words, words, NULL, 0 },
        { "two heads of one layer on one colour scale: each head attends its own way",
          "query", "key", words, words, caps, 1 } };
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < T; i++)
            for (int j = 0; j < T; j++) m[i * T + j] = k == 0 ? j > i : k == 1 ? !pad[j] : 0;
        char *path = path_join(dir, name[k]);
        write_svg_heatmaps(path, &h[k], k == 0 ? causal : k == 1 ? padded : heads,
                           k < 2 ? m : NULL, k == 2 ? 2 : 1, T, T, 2);
        printf("  wrote %s\n", path);
        free(path);
    }
    free(m);
}

static void tour_self_attention(Rng *r, const char *dir) {
    enum { T = 6, D = 8, H = 2 };
    const char *words[T] = { "the", "cat", "sat", "on", "the", "mat" };
    printf("== 6. self-attention: Q = X W_q, K = X W_k, V = X W_v over one sentence\n");
    double X[T * D], out[T * D], params[4 * D * D];
    double *cmem = xcalloc_doubles(mha_cache_size(1, T, T, D, H));
    int emb[T] = { 0, 1, 2, 3, 0, 4 };   /* the two "the" share an embedding */
    double table[5 * D];
    rng_fill_normal(r, table, 5 * D, 1.0);
    for (int t = 0; t < T; t++) memcpy(X + t * D, table + emb[t] * D, sizeof(double) * D);
    rng_fill_normal(r, params, 4 * D * D, 1.0 / sqrt((double)D) * 1.5);
    Mha m;
    MhaCache c;
    mha_bind(&m, params, D);
    mha_cache_bind(&c, cmem, 1, T, T, D, 1);
    mha_forward(out, &c, X, X, &m, NULL, NOT_CAUSAL, 1, T, T, D, 1);
    print_heatmap(stdout, "one head, bidirectional (row = query, column = key)", c.P, T, T,
                  words, words);
    mha_forward(out, &c, X, X, &m, NULL, CAUSAL, 1, T, T, D, 1);
    print_heatmap(stdout, "one head, causal mask: query t sees keys 0..t only", c.P, T, T,
                  words, words);
    double causal[T * T], padded[T * T];
    memcpy(causal, c.P, sizeof causal);
    unsigned char pad[T] = { 1, 1, 1, 1, 0, 0 };
    mha_forward(out, &c, X, X, &m, pad, NOT_CAUSAL, 1, T, T, D, 1);
    print_heatmap(stdout, "padding mask: the last two positions are padding", c.P, T, T,
                  words, words);
    memcpy(padded, c.P, sizeof padded);
    mha_cache_bind(&c, cmem, 1, T, T, D, H);
    mha_forward(out, &c, X, X, &m, NULL, NOT_CAUSAL, 1, T, T, D, H);
    for (int h = 0; h < H; h++) {
        char title[64];
        snprintf(title, sizeof title, "multi-head, H = %d: head %d (width %d)", H, h, D / H);
        print_heatmap(stdout, title, c.P + h * T * T, T, T, words, words);
    }
    printf("  The two 'the' rows are identical: without positions, self-attention\n"
           "  cannot tell equal tokens apart (it is permutation-equivariant).\n");
    if (dir) tour_self_svg(dir, causal, padded, pad, c.P, T, words);
    free(cmem);
}

/* ---- ./attention --bench: kernel speed, and attention's O(n^2) memory ---- */

/* The core's own ceiling for the kernel: CHAINS independent chains of
 * c = a * c + b on the kernel's vector type, more than the 8 that hide the
 * latency of a fused multiply-add on the cores we know (4 cycles, 2 per
 * cycle). In the plain-doubles build the compiler may vectorise the chains,
 * so that figure is only a rough ceiling. GFLOPS = 2 flops x lanes x chains x steps / median time of 5. */
GEMM_CONTRACT
static double bench_peak_gflops(void) {
#if defined(__clang__) && GEMM_FUSED
#pragma STDC FP_CONTRACT ON
#endif
    enum { CHAINS = 12, STEPS = 4000000 };
    const int lanes = GEMM_VECTOR ? GEMM_VL : 1;
    double t[5], sink = 0.0;
    for (int rep = 0; rep < 5; rep++) {
        gemm_vec c[CHAINS];
        const gemm_vec a = (gemm_vec){ 0 } + 0.999999, b = (gemm_vec){ 0 } + 1e-6;
        for (int i = 0; i < CHAINS; i++) c[i] = (gemm_vec){ 0 } + (double)i;
        double t0 = seconds();
        for (int s = 0; s < STEPS; s++)
            for (int i = 0; i < CHAINS; i++)
#if GEMM_VECTOR
                c[i] = a * c[i] + b;
#else
                c[i] = FMA(a, c[i], b);
#endif
        t[rep] = seconds() - t0;
        for (int i = 0; i < CHAINS; i++) {
            double lane[GEMM_VL];
            memcpy(lane, &c[i], sizeof c[i]);
            sink += lane[0];
        }
    }
    if (sink != sink) printf("(peak loop: NaN)\n");      /* keeps the loop alive */
    return 2.0 * lanes * CHAINS * STEPS / median(t, 5) / 1e9;
}

static void bench_matmul(Rng *r) {
    printf("matmul kernel: %s build, %d x %d tile of %s, %s\n", GEMM_ISA, GEMM_MR, GEMM_NR,
           GEMM_VECTOR ? "vectors" : "doubles", GEMM_FUSED ? "fused" : "not fused");
    const double peak = bench_peak_gflops();
    printf("this core's peak for that code: %.1f GFLOPS (independent multiply-add chains)\n",
           peak);
#ifdef _OPENMP
    printf("matmul kernels, double, %d OpenMP threads: GFLOPS (2 n^3 flops / median time\n"
           "of 5 runs), and %% of the one-core peak\n", omp_get_max_threads());
#else
    printf("matmul kernels, double, one core: GFLOPS (2 n^3 flops / median time of 5 runs)\n"
           "and %% of that peak\n");
#endif
    printf("  %6s %12s %12s %12s\n", "n", "a@b", "a@b^T", "a^T@b");
    for (int n = 64; n <= 1024; n *= 2) {
        double *a = xcalloc_doubles(n * n), *b = xcalloc_doubles(n * n), *c = xcalloc_doubles(n * n);
        rng_fill_normal(r, a, n * n, 1.0);
        rng_fill_normal(r, b, n * n, 1.0);
        int inner = 1 + (int)(5e7 / (2.0 * n * n * n));   /* ~0.05 GFLOP per timed run */
        printf("  %6d", n);
        for (int kind = 0; kind < 3; kind++) {
            double t[5];
            for (int rep = 0; rep < 5; rep++) {
                double t0 = seconds();
                for (int i = 0; i < inner; i++) {
                    if (kind == 0) matmul_forward(c, a, b, n, n, n);
                    else if (kind == 1) matmul_nt_add(c, a, b, n, n, n);
                    else matmul_tn_add(c, a, b, n, n, n);
                }
                t[rep] = (seconds() - t0) / inner;
            }
            const double g = 2.0 * n * n * n / median(t, 5) / 1e9;
            printf(" %7.1f %3.0f%%", g, 100.0 * g / peak);
        }
        printf("\n");
        free(a); free(b); free(c);
    }
}

static void bench_attention(Rng *r) {
    const int d = 64;
    printf("\nself-attention forward, d = %d: plain sdpa_forward keeps the (n,n) weights,\n"
           "tiled_attention_forward does not. Memory = what each needs beyond Q, K, V, out.\n", d);
    printf("  %6s | %9s %10s %4s | %9s %10s %4s | %8s\n", "n", "plain ms", "plain MiB", "runs",
           "tiled ms", "tiled MiB", "runs", "speed-up");
    for (int n = 256; n <= 16384; n *= 4) {
        double *Q = xcalloc_doubles(n * d), *K = xcalloc_doubles(n * d);
        double *V = xcalloc_doubles(n * d), *out = xcalloc_doubles(n * d);
        rng_fill_normal(r, Q, n * d, 1.0);
        rng_fill_normal(r, K, n * d, 1.0);
        rng_fill_normal(r, V, n * d, 1.0);
        double mib_plain = ((double)n * n) * sizeof(double) / 1048576.0;
        double mib_tiled = (double)(n + tiled_attention_work_size()) * sizeof(double) / 1048576.0;
        int runs_plain = n <= 4096 ? 5 : 1, runs_tiled = n <= 4096 ? 5 : 3;
        double tp[5], tt[5];
        double *P = xcalloc_doubles(n * n);
        for (int k = 0; k < runs_plain; k++) {
            double t0 = seconds();
            sdpa_forward(out, P, Q, K, V, NULL, NOT_CAUSAL, n, n, d, d);
            tp[k] = seconds() - t0;
        }
        free(P);
        double *lse = xcalloc_doubles(n), *work = xcalloc_doubles(tiled_attention_work_size());
        for (int k = 0; k < runs_tiled; k++) {
            double t0 = seconds();
            tiled_attention_forward(out, lse, Q, K, V, NULL, NOT_CAUSAL, n, n, d, d, work);
            tt[k] = seconds() - t0;
        }
        double mp = median(tp, runs_plain), mt = median(tt, runs_tiled);
        printf("  %6d | %9.1f %10.3f %4d | %9.1f %10.3f %4d | %7.1fx\n", n, 1e3 * mp,
               mib_plain, runs_plain, 1e3 * mt, mib_tiled, runs_tiled, mp / mt);
        free(lse); free(work); free(Q); free(K); free(V); free(out);
    }
    printf("  Plain memory grows 16x per 4x in n (O(n^2)); tiled needs two fixed 64 x 64\n"
           "  blocks plus one number per row (O(n)). Both do the same arithmetic on the\n"
           "  matmul kernel, so they take the same time until the plain (n,n) matrix no\n"
           "  longer fits in the caches and every pass over it goes to main memory.\n");
}

/* ---- ./attention --bench: what local and hard attention save, timed ---- */

/* One query (row k of Q (nt, d)) attends over S keys K and values V (S, d)
 * with the scaled dot score, at target step t: the forms of the tour's
 * section 5 table. a (S), c (d), mask (S) are scratch. */
typedef struct {
    const double *Q, *K, *V;
    double *a, *c;
    unsigned char *mask;
    int S, d, nt, D;
    Score s;
} BenchLocal;

enum { BL_GLOBAL, BL_MASKED, BL_WINDOW, BL_HARD, BL_FORMS };

static void bench_local_step(BenchLocal *b, int form, int k, int t) {
    const double *q = b->Q + k * b->d;
    int lo, n;
    switch (form) {
    case BL_GLOBAL:         /* every score, every value row */
        attend_forward(b->c, b->a, NULL, q, b->K, b->V, NULL, b->S, b->d, &b->s); break;
    case BL_MASKED:         /* every score, then the mask (what chapter 2 ran before) */
        local_window_mask(b->mask, t, b->D, b->S);
        attend_forward(b->c, b->a, NULL, q, b->K, b->V, b->mask, b->S, b->d, &b->s); break;
    case BL_WINDOW:         /* the window's n <= 2D + 1 scores only */
        n = local_window(&lo, t, b->D, b->S);
        local_m_window_forward(b->c, b->a, NULL, q, b->K, b->V, lo, n, b->d, &b->s); break;
    default:                /* hard, at inference: every score, argmax, one value row
                               (the softmax keeps the order, so it is not needed) */
        score_forward(b->a, NULL, q, b->K, b->S, &b->s);
        hard_attention_forward(b->c, argmax(b->a, b->S), b->V, b->d);
    }
}

/* seconds per target step of one form: the nt steps t = k S / nt, repeated
 * until 5 ms have passed; the median of 5 such runs. *sink += a result. */
static double bench_local_time(BenchLocal *b, int form, double *sink) {
    double t[5];
    for (int rep = 0; rep < 5; rep++) {
        double t0 = seconds(), el;
        long steps = 0;
        do {
            for (int k = 0; k < b->nt; k++) bench_local_step(b, form, k, k * b->S / b->nt);
            steps += b->nt;
            *sink += b->c[0];
        } while ((el = seconds() - t0) < 0.005);
        t[rep] = el / steps;
    }
    return median(t, 5);
}

static void bench_local(Rng *r) {
    enum { D = 8, d = 64, STEPS = 256 };
    printf("\nlocal and hard attention, one target step: scaled dot score, d = %d, local-m\n"
           "with D = %d, up to %d steps t spread over 0..S-1; microseconds per step (median\n"
           "of 5 runs). Keys scored per step: global, masked and hard S, window <= %d.\n",
           d, D, STEPS, 2 * D + 1);
    printf("  %6s | %9s %9s %9s %9s | %13s\n", "S", "global", "masked", "window", "hard",
           "masked/window");
    double sink = 0.0;
    for (int S = 64; S <= 4096; S *= 2) {
        BenchLocal b = { NULL, NULL, NULL, xcalloc_doubles(S), xcalloc_doubles(d),
                         xmalloc((size_t)S), S, d, S < STEPS ? S : STEPS, D, { 0 } };
        double *Q = xcalloc_doubles(b.nt * d), *K = xcalloc_doubles(S * d);
        double *V = xcalloc_doubles(S * d), us[BL_FORMS];
        rng_fill_normal(r, Q, b.nt * d, 1.0);
        rng_fill_normal(r, K, S * d, 1.0);
        rng_fill_normal(r, V, S * d, 1.0);
        b.Q = Q; b.K = K; b.V = V;
        score_bind(&b.s, NULL, SCORE_SCALED_DOT, d, d, 0);
        for (int f = 0; f < BL_FORMS; f++) us[f] = 1e6 * bench_local_time(&b, f, &sink);
        printf("  %6d | %9.2f %9.2f %9.2f %9.2f | %12.1fx\n", S, us[BL_GLOBAL], us[BL_MASKED],
               us[BL_WINDOW], us[BL_HARD], us[BL_MASKED] / us[BL_WINDOW]);
        free(Q); free(K); free(V); free(b.a); free(b.c); free(b.mask);
    }
    if (sink != sink) printf("(local attention: NaN)\n");   /* keeps the work alive */
    printf("  Masked local-m and hard attention skip the exp() and the value rows of\n"
           "  the positions they drop, but still score all S keys: their cost grows with\n"
           "  S like global's. The window's does not: it scores and reads <= 2D + 1.\n");
}

/* the tour runs on built-in data; --bench times the kernels instead */
/* ---- the report: every picture and table of NOTES.md on one page -----------
 * `./attention --report DIR` (what `make report` runs) runs each command of
 * report_runs[] with --svg DIR, keeps what it printed in DIR/<output>.txt,
 * and writes DIR/index.html: one self-contained XHTML page (inline SVG, no
 * script, nothing fetched) with each run's figures, the command that made
 * them, a line on what they show, and the tables the run printed. The
 * figures of a run are the files it reports as "  wrote DIR/name.svg"; each
 * needs a line in report_figures[], so a new picture cannot go unexplained. */

typedef struct {
    const char *chapter;    /* a chapter's heading where one starts, else NULL */
    const char *title;      /* what the run shows */
    const char *command;    /* as a reader types it; DIR is the report's folder */
    const char *output;     /* its stdout is kept as DIR/<output>.txt */
    int open;               /* 1: its printed tables shown open, 0: folded */
    const char *reading;    /* what to look at, in one line */
} ReportRun;

static const ReportRun report_runs[] = {
    { "Chapter 1: the attention mechanism (attention.c)", "The tour of chapter 1",
      "./attention --svg DIR", "attention", 0,
      "the three steps on one query, the six score functions, why sqrt(d_k), soft vs "
      "hard, global vs local, self-attention with its masks and heads" },
    { "Chapter 2: seq2seq, Bahdanau and Luong (seq2seq.c)",
      "A GRU encoder-decoder with Bahdanau attention learns to reverse",
      "./seq2seq --svg DIR", "seq2seq", 0,
      "the loss falls, the accuracy reaches 100%, and the alignment is the anti-diagonal "
      "of reversal" },
    { NULL, "Dates: a non-monotonic alignment", "./seq2seq --task date --svg DIR",
      "seq2seq-date", 0,
      "each output digit attends to the source word that holds it, wherever it is" },
    { NULL, "Without attention, long sources fail", "./seq2seq --experiment length --svg DIR",
      "seq2seq-length", 1,
      "exact accuracy by source length: none falls as the source grows, Bahdanau holds" },
    { NULL, "Attention as pooling for classification",
      "./seq2seq --experiment pooling --svg DIR", "seq2seq-pooling", 1,
      "last state, mean and attention pooling of an RNN's states on the same task" },
    { NULL, "CNN + attention", "./seq2seq --experiment cnn --svg DIR", "seq2seq-cnn", 1,
      "max, mean and attention pooling over a CNN's features beside the RNN's" },
    { NULL, "Gradients vanish with distance, unless attention shortens the path",
      "./seq2seq --experiment gradient --svg DIR", "seq2seq-gradient", 1,
      "the gradient reaching each source token against its distance from the end, rnn, "
      "gru and lstm, without and with attention" },
    { NULL, "Parallel and sequential: an RNN against self-attention",
      "./seq2seq --experiment parallel --svg DIR", "seq2seq-parallel", 1,
      "one forward pass over 16 to 512 positions: the GRU's chain of dependent steps grows "
      "with n, attention's stays at 4 while its work grows as n^2" },
    { NULL, "Teacher forcing's cost, and what each decoding rule returns",
      "./seq2seq --experiment exposure --svg DIR", "seq2seq-exposure", 1,
      "error by output position with the true history and with the model's own, without "
      "and with attention; then greedy, beam and sampling at three temperatures" },
    { "Chapter 3: the Transformer (transformer.c)",
      "The three Transformers on their toy tasks", "./transformer --svg DIR", "transformer", 0,
      "encoder-decoder, BERT-style encoder and GPT-style decoder train; every head of "
      "a layer in one picture" },
    { NULL, "Positional encoding", "./transformer --experiment positions --steps 1500 --svg DIR",
      "transformer-positions", 1,
      "reversal needs positions: none fails, learned and sinusoidal succeed" },
    { NULL, "How many heads?",
      "./transformer --experiment heads --task sort --steps 1000 --svg DIR",
      "transformer-heads", 1, "1, 2, 4 and 8 heads at the same width on sort" },
    { NULL, "Self-attention costs O(n^2)", "./transformer --experiment cost --svg DIR",
      "transformer-cost", 1,
      "time and memory against length on log-log axes: the slope is the exponent" },
    { NULL, "Positions beyond the trained length",
      "./transformer --experiment extrapolate --svg DIR", "transformer-extrapolate", 1,
      "trained on sources up to 10 long, tested up to 20: accuracy by length for "
      "sinusoidal and learned positions" },
};

typedef struct {
    const char *file, *reading;
} ReportFigure;

static const ReportFigure report_figures[] = {
    { "attention-sqrt-dk.svg", "unscaled, the largest weight goes to 1 and the Jacobian "
      "shrinks as d_k grows; divided by sqrt(d_k), neither moves" },
    { "attention-local.svg", "global spreads weight over every source position; local-m "
      "and local-p only inside a window of 2D+1 around p_t" },
    { "attention-self-causal.svg", "the causal mask: query t reads keys 0..t, the rest is "
      "masked (grey), so every row sums to 1 over its past" },
    { "attention-self-padding.svg", "the padding mask: no query reads the two padded keys" },
    { "attention-self-heads.svg", "two heads of one layer on one colour scale attend in "
      "different ways; the two 'the' rows are equal in each" },
    { "seq2seq-reverse-luong-alignment.svg", "each output step attends to the source "
      "position it copies: reversal is the anti-diagonal" },
    { "seq2seq-reverse-luong-curve.svg", "the training loss falls by orders of magnitude "
      "while held-out accuracy climbs to 100%" },
    { "seq2seq-date-luong-alignment.svg", "the year's digits attend to the year, the "
      "month's to the month word: the alignment jumps, it is not monotonic" },
    { "seq2seq-date-luong-curve.svg", "loss and held-out accuracy of the date model" },
    { "seq2seq-length.svg", "without attention exact accuracy collapses beyond 10 "
      "symbols; Bahdanau stays at 100%, Luong's dot score sags at the longest" },
    { "seq2seq-length-curve.svg", "the three models' training loss: without attention it "
      "stalls high, with attention it keeps falling" },
    { "seq2seq-pooling.svg", "the label sits at position 2 of 60: the last state is at "
      "chance, the mean halfway, attention pooling finds it (100%)" },
    { "seq2seq-pooling-curve.svg", "only attention pooling drives the training loss "
      "towards 0" },
    { "seq2seq-cnn.svg", "a CNN's pooling cannot tell which pair was asked for until the "
      "LSTM's last state, which has read the question, becomes the query" },
    { "seq2seq-parallel.svg", "on one core the GRU's time grows as n and attention's "
      "faster, as n^2: fewer dependent steps is not less work" },
    { "seq2seq-exposure.svg", "without attention free running falls further behind "
      "teacher forcing at every position; with attention both stay near 0" },
    { "seq2seq-exposure-diversity.svg", "greedy and beam give one output per source; "
      "sampling gives more distinct outputs as T rises, and fewer right ones" },
    { "seq2seq-exposure-curve.svg", "training loss of the four models of the exposure "
      "experiment" },
    { "seq2seq-cnn-weights.svg", "where each attention pooling puts its weight on one "
      "held-out example: the h_T query lands on the letter asked for" },
    { "seq2seq-cnn-curve.svg", "training loss of each of the CNN experiment's models" },
    { "seq2seq-gradient.svg", "at initialisation the plain RNN's gradient falls by orders "
      "of magnitude over 20 positions; with attention every position keeps a short path" },
    { "seq2seq-gradient-curve.svg", "training loss of the six models of the gradient "
      "experiment" },
    { "transformer-encdec-copy-cross-L2.svg", "cross-attention of the last decoder layer, "
      "all heads on one scale: on copy, output i reads source position i" },
    { "transformer-encdec-copy-curve.svg", "training and held-out loss, then token and "
      "exact-sequence accuracy, of the encoder-decoder on copy" },
    { "transformer-positions.svg", "without positional encoding reversal fails (no "
      "exact answer); learned and sinusoidal positions both reach 100%" },
    { "transformer-heads.svg", "accuracy on sort with 1 to 8 heads at the same width: "
      "more heads are not steadily better (one seed)" },
    { "transformer-heads-sort-cross-L2.svg", "the 8 heads of the last decoder layer on "
      "one scale: some sharp, some diffuse" },
    { "transformer-cost.svg", "self-attention's time and memory against length on "
      "log-log axes: slopes near 2, the O(n^2) of the score matrix" },
    { "transformer-extrapolate.svg", "both encodings hold inside the trained lengths and "
      "fail beyond them on reverse; sinusoidal degrades one step later (one seed)" },
};

/* the reading of figure file, or NULL */
static const char *report_reading(const char *file) {
    const int n = (int)(sizeof report_figures / sizeof report_figures[0]);
    for (int i = 0; i < n; i++)
        if (!strcmp(report_figures[i].file, file)) return report_figures[i].reading;
    return NULL;
}

/* cmd with every "DIR" replaced by dir, into buf (n bytes) */
static void report_command(char *buf, size_t n, const char *cmd, const char *dir) {
    size_t k = 0;
    for (const char *p = cmd; *p && k + 1 < n; ) {
        if (!strncmp(p, "DIR", 3)) {
            k += (size_t)snprintf(buf + k, n - k, "%s", dir);
            p += 3;
        } else buf[k++] = *p++;
    }
    buf[k < n ? k : n - 1] = '\0';
}

/* Run report_runs[k] with its stdout into DIR/<output>.txt (whole or not at
 * all: written as .partial and renamed); exits 1 if the command fails. */
static void report_run(const char *prog, const char *dir, int k, int n, time_t start) {
    const ReportRun *r = &report_runs[k];
    char cmd[1024], shell[2560], el[32], left[32];
    report_command(cmd, sizeof cmd, r->command, dir);
    const double t = wall_since(start);
    fprintf(stderr, "report %d/%d: %s (%s elapsed, about %s left)\n", k + 1, n, cmd,
            duration_text(el, sizeof el, t),
            k ? duration_text(left, sizeof left, t / k * (n - k)) : "?");
    snprintf(shell, sizeof shell, "%s > %s/%s.txt.partial", cmd, dir, r->output);
    const int status = system(shell);
    char *base = path_join(dir, r->output);
    char *txt = xmalloc(strlen(base) + 16), *path = xmalloc(strlen(base) + 16);
    sprintf(txt, "%s.txt", base);
    sprintf(path, "%s.txt.partial", base);
    free(base);
    if (status != 0) {
        fprint_wrapped(stderr, "%s: --report: '%s' failed (its message is above); what it "
                "printed is in %s", prog, cmd, path);
        exit(1);
    }
    if (rename(path, txt) != 0) {
        fprint_wrapped(stderr, "%s: --report: cannot rename %s: %s", prog, path, strerror(errno));
        exit(1);
    }
    free(path);
    free(txt);
}

/* the figures of one run: every "  wrote DIR/NAME.svg" line of its output
 * txt, inlined (without the XML declaration) with its reading; counts the
 * figures without a reading in *unread */
static void report_figures_of(FILE *f, const char *dir, char *txt, int *unread) {
    for (char *line = txt; line && *line; ) {
        char *end = strchr(line, '\n');
        if (end) *end = '\0';
        const size_t n = strlen(line);
        if (!strncmp(line, "  wrote ", 8) && n > 12 && !strcmp(line + n - 4, ".svg")) {
            const char *name = strrchr(line, '/') ? strrchr(line, '/') + 1 : line + 8;
            const char *reading = report_reading(name);
            char why[512], *path = path_join(dir, name);
            long len;
            char *svg = read_text_file(path, 1L << 24, &len, why, sizeof why);
            if (!svg) { fprint_wrapped(stderr, "error: --report: %s", why); exit(1); }
            const char *body = strstr(svg, "<svg");
            fprintf(f, "<figure id=\"%.*s\">\n%s<figcaption><code>", (int)strlen(name) - 4,
                    name, body ? body : "");
            svg_escape(f, name);
            fprintf(f, "</code>: ");
            svg_escape(f, reading ? reading : "(no reading: add one to report_figures[])");
            fprintf(f, "</figcaption></figure>\n");
            if (!reading) {
                fprint_wrapped(stderr, "error: --report: %s has no reading in report_figures[] "
                        "(attention.c)", name);
                ++*unread;
            }
            free(svg);
            free(path);
        }
        if (end) *end = '\n';
        line = end ? end + 1 : NULL;
    }
}

/* one run's section of the page: title, command, reading, figures, output */
static void report_section(FILE *f, const char *dir, int k, int *unread) {
    const ReportRun *r = &report_runs[k];
    char cmd[1024], why[512], name[256];
    report_command(cmd, sizeof cmd, r->command, dir);
    if (r->chapter) {
        fprintf(f, "<h2>");
        svg_escape(f, r->chapter);
        fprintf(f, "</h2>\n");
    }
    fprintf(f, "<section id=\"%s\">\n<h3>", r->output);
    svg_escape(f, r->title);
    fprintf(f, "</h3>\n<p class=\"cmd\"><code>");
    svg_escape(f, cmd);
    fprintf(f, "</code></p>\n<p>");
    svg_escape(f, r->reading);
    fprintf(f, "</p>\n");
    snprintf(name, sizeof name, "%s.txt", r->output);
    char *path = path_join(dir, name);
    long len;
    char *txt = read_text_file(path, 1L << 24, &len, why, sizeof why);
    if (!txt) { fprint_wrapped(stderr, "error: --report: %s", why); exit(1); }
    report_figures_of(f, dir, txt, unread);
    fprintf(f, "<details%s><summary>what <code>", r->open ? " open=\"open\"" : "");
    svg_escape(f, cmd);
    fprintf(f, "</code> printed</summary>\n<pre>");
    svg_escape(f, txt);
    fprintf(f, "</pre></details>\n</section>\n");
    free(txt);
    free(path);
}

static const char report_style[] =
    "body{font-family:sans-serif;max-width:1200px;margin:1em auto;padding:0 1em;"
    "line-height:1.4}pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:13px}"
    "figure{margin:1em 0}figure svg{max-width:100%;height:auto;border:1px solid #ddd}"
    "figcaption{font-size:14px;color:#333}p.cmd code{background:#eef;padding:2px 4px}"
    "h2{border-bottom:2px solid #ccc;margin-top:2em}";

/* DIR/index.html from the runs' outputs and pictures; returns how many
 * figures lack a reading */
static int report_page(const char *dir) {
    const int n = (int)(sizeof report_runs / sizeof report_runs[0]);
    int unread = 0;
    char *path = path_join(dir, "index.html");
    OutFile o = out_open(path);
    fprintf(o.f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE html>\n"
            "<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n"
            "<meta charset=\"UTF-8\"/>\n<title>attention, by hand, in C: the report</title>\n"
            "<style>%s</style>\n</head>\n<body>\n<h1>attention, by hand, in C: the report"
            "</h1>\n<p>Every picture and table of NOTES.md's toy-data entries, made by the "
            "commands shown (run from the repository: <code>make report</code>), in the "
            "order of the chapters. Each run's printed output is kept beside its figures; "
            "timings in it depend on the machine.</p>\n<ul>\n", report_style);
    for (int k = 0; k < n; k++) {
        fprintf(o.f, "<li><a href=\"#%s\">", report_runs[k].output);
        svg_escape(o.f, report_runs[k].title);
        fprintf(o.f, "</a></li>\n");
    }
    fprintf(o.f, "</ul>\n");
    for (int k = 0; k < n; k++) report_section(o.f, dir, k, &unread);
    fprintf(o.f, "</body>\n</html>\n");
    out_close(&o);
    free(path);
    return unread;
}

/* ./attention --report DIR: refuse a folder name the shell would read as
 * more than a name, or programs not built; then run everything, then the page */
static void report_main(const char *prog, const char *dir) {
    for (const char *c = dir; *c; c++)
        if (!isalnum((unsigned char)*c) && !strchr("._/-", *c)) {
            fprint_wrapped(stderr, "%s: --report %s: the folder's name may hold only letters, "
                    "digits and . _ / - (it goes into shell commands)", prog, dir);
            exit(2);
        }
    check_dir_writable(prog, "--report", dir);
    const char *need[3] = { "./attention", "./seq2seq", "./transformer" };
    for (int i = 0; i < 3; i++) {
        FILE *f = fopen(need[i], "rb");
        if (!f) {
            fprintf(stderr, "%s: --report: %s is not here: build the programs first "
                    "(make), and run this from the folder that holds them\n", prog, need[i]);
            exit(2);
        }
        fclose(f);
    }
    const int n = (int)(sizeof report_runs / sizeof report_runs[0]);
    const time_t start = time(NULL);
    for (int k = 0; k < n; k++) report_run(prog, dir, k, n, start);
    const int unread = report_page(dir);
    printf("wrote %s/index.html: %d runs\n", dir, n);
    if (unread) exit(1);
}

enum { MODE_TOUR, MODE_BENCH, MODE_REPORT };
static const char *const tour_modes[] = { "the tour", "--bench", "--report", NULL };

/* the tour, section by section (pictures into svg if not NULL), or --bench */
static void tour_or_bench(int seed, int bench, const char *svg) {
    Rng r;
    rng_seed(&r, (uint64_t)seed);
    if (bench) {
        bench_matmul(&r);
        bench_attention(&r);
        bench_local(&r);
        return;
    }
    printf("attention.c: a tour of chapter 1 (seed %d)\n\n", seed);
    tour_three_steps();
    tour_scores(&r);
    tour_scaling(&r, svg);
    tour_hard(&r);
    tour_local(&r, svg);
    tour_self_attention(&r, svg);
}

int main(int argc, char **argv) {
    atexit(check_stdout_at_exit);
    int seed = 1, bench = 0;
    const char *svg = NULL, *report = NULL;
    Opt opts[] = {
        { "--seed", OPT_INT, &seed, 0, 2147483647, NULL, 0, "N",
          "seed of the random data", 0 },
        { "--svg", OPT_PATH, &svg, 0, 0, NULL, 1u << MODE_TOUR, "DIR",
          "also draw the tour's pictures as SVG files attention-*.svg in the existing "
          "directory DIR (files of those names there are replaced)", 0 },
        { "--bench", OPT_FLAG, &bench, 0, 0, NULL, 0, "",
          "instead, time the matmul kernels, plain vs tiled attention, and local and "
          "hard attention against global", 0 },
        { "--report", OPT_PATH, &report, 0, 0, NULL, 0, "DIR",
          "instead, run every chapter's pictures and tables into DIR/index.html (what "
          "make report does; needs ./seq2seq and ./transformer built)", 0 },
    };
    OptTable t = { argv[0], "  A guided tour of chapter 1 on built-in data.", NULL,
                   tour_modes, opts, (int)(sizeof opts / sizeof opts[0]) };
    opt_parse(&t, argc, argv);
    if (bench && report) opt_fail(&t, "--bench and --report are two different runs: give one");
    opt_check_mode(&t, report ? MODE_REPORT : bench ? MODE_BENCH : MODE_TOUR);
    if (report) { report_main(argv[0], report); return 0; }
    if (svg) check_dir_writable(argv[0], "--svg", svg);
    tour_or_bench(seed, bench, svg);
    return 0;
}
#endif /* chapter 1's program */

#endif /* ATTENTION_C */
