/*
 * transformer.c -- chapter 3 of "attention, by hand, in C": the Transformer.
 *
 *     cc -O2 transformer.c -lm -o transformer && ./transformer
 *     ./transformer --help
 *
 * The model of Vaswani et al. (2017), "Attention is all you need", forward and
 * backward by hand, in its three shapes:
 *   --arch encdec    the encoder-decoder of the paper, on copy/reverse/sort,
 *                    or on a pair file (--data FILE: CMUdict, letters to
 *                    phonemes); --save / --load keep it, --input WORD and
 *                    stdin's words ask it, --beam K searches
 *   --arch encoder   encoder only, BERT-style: bidirectional attention,
 *                    trained to fill in masked tokens of a built-in text
 *                    (or of any UTF-8 file: --text FILE)
 *   --arch decoder   decoder only, GPT-style: causal attention, trained to
 *                    predict the next character, then samples with temperature
 *                    (after --prompt TEXT); --save / --load keep a model
 *   --load FILE with --steps N or --minutes M (and --text or --data) trains
 *                    a saved model on, with the options it saved: bit for
 *                    bit as one run (section 13, tf_train_resume)
 * The three share every kernel; they differ in the attention mask and in the
 * objective, which is the point the notes ask about.
 *
 * It includes attention.c (chapter 1) for the kernels: matmul, linear,
 * ReLU/GELU, softmax, cross-entropy, Adam, multi-head attention (mha_forward
 * and mha_backward), embeddings, the toy tasks and the heatmaps.
 *
 * Part I, the lesson: the model, in the order NOTES.md teaches it.
 *   1. embeddings and positional encoding
 *   2. LayerNorm
 *   3. the position-wise feed-forward network
 *   4. the encoder layer (sublayers with residual + LayerNorm, post or pre)
 *   5. the decoder layer
 *   6. the model: config, weights, activations, a batch
 *   7. the output and the loss
 *   8. the three archs: forward and backward (what differs: the mask and
 *      the objective)
 *   9. the warm-up schedule and one training step
 *  10. decoding and sampling
 * Part II, the program (after the banner "PART II. THE PROGRAM"):
 *  11. building a model: sizes, checks, layouts
 *  12. tasks and data: copy/reverse/sort, the built-in text, a text file
 *      (--text), BERT masking
 *  13. training and held-out evaluation (the whole held-out part of a file)
 *  13b. keeping a model: the checkpoint file (--save, --load)
 *  13c. tracing one head (--trace): what mha_forward kept, for a reader
 *  14. showing attention: labels, heatmaps, SVG (--svg DIR: all heads of a
 *      layer in one picture, the training curves)
 *  15. experiments (positions, heads, cost) and --bench
 *  16. the runs and the command line: the option table, main
 *
 * Conventions as in attention.c: x_forward(out, cache..., in, params..., dims),
 * x_backward(din, dparams..., dout, in/cache..., params..., dims); every
 * backward ADDS (+=) into its gradients: tf_zero_grad() clears the parameter
 * gradients and tf_backward() clears the activation gradients once.
 *
 * Dimension legend:
 *   B   examples in a batch
 *   S   length of the first stack's input: the encoder's source, or the
 *       window of text BERT and GPT read
 *   T   decoder length (encdec only)
 *   D   d_model, the width of every position's vector
 *   H   heads, dh = D / H the width of one head
 *   F   feed-forward width
 *   V   vocabulary size
 *   P   rows of the positional table, max(S, T)
 *   N   rows processed at once (B*S or B*T)
 *   To  output positions per example (T for encdec, S otherwise)
 *
 * How it gets chapter 1 without chapter 1's main(): it defines
 * ATTENTION_LIBRARY before including attention.c, which then leaves out its
 * tour and main; tests.c defines TESTING, which leaves out sections 14 to 16
 * (the drawing, the experiments and main).
 */
#define ATTENTION_LIBRARY   /* chapter 1's kernels, without its tour and main */
#include "attention.c"
#ifndef TRANSFORMER_C
#define TRANSFORMER_C

/* ************************************************************************
 * PART I. THE LESSON
 *
 * The Transformer, layer by layer, then the model, its loss, one training
 * step and decoding, in the order NOTES.md teaches them.
 * ************************************************************************ */

/* ========================================================================
 * 1. embeddings and positional encoding
 *
 * x_t = sqrt(D) * E[token_t] + PE[t]. Self-attention is permutation-
 * equivariant, so without PE the model cannot tell positions apart.
 * Sinusoidal PE (the paper): PE[p][2i] = sin(p / 10000^(2i/D)),
 * PE[p][2i+1] = cos(p / 10000^(2i/D)); a learned table is the alternative.
 * ======================================================================== */

#define TF_MAX_POS 512  /* the positional table's rows: --len must fit */

/* pe (P,D) = the sinusoidal table */
void posenc_sinusoid(double *pe, int P, int D) {
    for (int p = 0; p < P; p++)
        for (int j = 0; j < D; j++) {
            double freq = pow(10000.0, -(double)(j - j % 2) / D);  /* 10000^(-2i/D) */
            pe[p * D + j] = j % 2 ? cos(p * freq) : sin(p * freq);
        }
}

/* out (B,T,D) = sqrt(D) * tok[tokens] + pos[t]; tokens (B,T), tok (V,D),
 * pos (P>=T, D) or NULL for no positional encoding. */
void tf_embed_forward(double *out, const int *tokens, const double *tok, const double *pos,
                      int B, int T, int D) {
    const double scale = sqrt((double)D);
    embedding_forward(out, tokens, tok, B * T, D);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            double *o = out + (b * T + t) * D;
            for (int j = 0; j < D; j++) o[j] = scale * o[j] + (pos ? pos[t * D + j] : 0.0);
        }
}

/* dtok (V,D), dpos (P,D) or NULL (sinusoidal/none: nothing to learn) +=;
 * dout (B,T,D) is only read. The sqrt(D) scale is folded into dtok's sum
 * (attention.c's embedding_backward would need a scaled copy of dout).
 * forward was: out = sqrt(D) * tok[tokens] + pos[t]
 * so dpos[t] += sum_b dout[b][t] and dtok[tokens] += sqrt(D) * dout. */
void tf_embed_backward(double *dtok, double *dpos, const double *dout, const int *tokens,
                       int B, int T, int D) {
    const double scale = sqrt((double)D);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const double *g = dout + (b * T + t) * D;
            double *dt = dtok + tokens[b * T + t] * D;
            for (int j = 0; j < D; j++) {
                if (dpos) dpos[t * D + j] += g[j];
                dt[j] += scale * g[j];
            }
        }
}

/* ========================================================================
 * 2. LayerNorm
 *
 * Each row x (D) is normalised over its own features, then scaled and shifted:
 *     y = (x - mean) / sqrt(var + eps) * g + b
 * (batch norm would normalise each feature over the batch instead).
 * ======================================================================== */

#define TF_LN_EPS 1e-5

/* Why rows in blocks of TF_LN_ROWS? A row's sum over j is a chain of D
 * additions, each waiting for the last. Summing TF_LN_ROWS rows side by side
 * (j outer, row inner) runs that many chains at once. Each row's sum keeps
 * its own order, so the bits are those of one row at a time; measured 2.4x
 * faster at N = 1024, D = 128. (The backward's two sums per row already
 * overlap, and blocking them measured no faster.) */
enum { TF_LN_ROWS = 4 };

/* One row of LayerNorm whose sums would overflow: the same statistics taken
 * over x / s, s = max|x|, so that out = (x/s - mean/s) / sqrt(var/s^2 +
 * eps/s^2) is computed from numbers near 1. mean = s (mean/s) fits; rstd is
 * tiny and may be subnormal (the backward at such magnitudes is not exact). */
static void layernorm_row_scaled(double *out, double *mean, double *rstd, const double *x,
                                 const double *g, const double *b, int D) {
    double s = 0.0, mu = 0.0, var = 0.0;
    for (int j = 0; j < D; j++) if (fabs(x[j]) > s) s = fabs(x[j]);
    for (int j = 0; j < D; j++) mu += x[j] / s;
    mu /= D;
    for (int j = 0; j < D; j++) var += (x[j] / s - mu) * (x[j] / s - mu);
    const double rs = 1.0 / sqrt(var / D + TF_LN_EPS / s / s);   /* for x / s */
    for (int j = 0; j < D; j++) out[j] = (x[j] / s - mu) * rs * g[j] + b[j];
    *mean = s * mu;
    *rstd = rs / s;
}

/* out (N,D), mean (N), rstd (N) = LayerNorm of x (N,D) with gain g (D) and
 * bias b (D); mean and rstd = 1/sqrt(var + eps) are kept for the backward. */
void layernorm_forward(double *out, double *mean, double *rstd, const double *x,
                       const double *g, const double *b, int N, int D) {
    for (int n0 = 0; n0 < N; n0 += TF_LN_ROWS) {
        const double *xr[TF_LN_ROWS];       /* the block's rows; past N, row N-1 again */
        double mu[TF_LN_ROWS] = {0}, var[TF_LN_ROWS] = {0};
        for (int r = 0; r < TF_LN_ROWS; r++) xr[r] = x + (n0 + r < N ? n0 + r : N - 1) * D;
        for (int j = 0; j < D; j++)
            for (int r = 0; r < TF_LN_ROWS; r++) mu[r] += xr[r][j];
        for (int r = 0; r < TF_LN_ROWS; r++) mu[r] /= D;
        for (int j = 0; j < D; j++)
            for (int r = 0; r < TF_LN_ROWS; r++)
                var[r] += (xr[r][j] - mu[r]) * (xr[r][j] - mu[r]);
        for (int r = 0; r < TF_LN_ROWS && n0 + r < N; r++) {
            const double *xn = xr[r];
            double *on = out + (n0 + r) * D;
            if (!isfinite(var[r])) {             /* the sums overflowed (|x| near 1e308)? */
                layernorm_row_scaled(on, &mean[n0 + r], &rstd[n0 + r], xn, g, b, D);
                continue;
            }
            double rs = 1.0 / sqrt(var[r] / D + TF_LN_EPS);
            for (int j = 0; j < D; j++) on[j] = (xn[j] - mu[r]) * rs * g[j] + b[j];
            mean[n0 + r] = mu[r];
            rstd[n0 + r] = rs;
        }
    }
}

/* dx (N,D), dg (D), db (D) +=.
 * forward was: xhat = (x - mean) * rstd; out = xhat * g + b
 * so dg += sum_n dout * xhat, db += sum_n dout, and with dxhat = dout * g,
 *    dx += rstd * (dxhat - mean_j(dxhat) - xhat * mean_j(dxhat * xhat))
 * (the two means are the paths through mean and var). */
void layernorm_backward(double *dx, double *dg, double *db, const double *dout,
                        const double *x, const double *mean, const double *rstd,
                        const double *g, int N, int D) {
    for (int n = 0; n < N; n++) {
        const double *xn = x + n * D, *dn = dout + n * D;
        const double mu = mean[n], rs = rstd[n];   /* locals: the stores below cannot move them */
        double *dxn = dx + n * D;
        double m1 = 0.0, m2 = 0.0;
        for (int j = 0; j < D; j++) {
            double xhat = (xn[j] - mu) * rs;
            m1 += dn[j] * g[j];
            m2 += dn[j] * g[j] * xhat;
        }
        m1 /= D;
        m2 /= D;
        for (int j = 0; j < D; j++) {
            double xhat = (xn[j] - mu) * rs;
            dg[j] += dn[j] * xhat;
            db[j] += dn[j];
            dxn[j] += rs * (dn[j] * g[j] - m1 - xhat * m2);
        }
    }
}

/* ========================================================================
 * 3. the position-wise feed-forward network
 *
 *     FFN(x) = act(x W1 + b1) W2 + b2,  act = ReLU (the paper) or GELU (BERT, GPT)
 * applied to every position separately: the only place tokens are not mixed.
 * ======================================================================== */

enum { TF_RELU, TF_GELU };
static const char *const tf_act_names[] = { "relu", "gelu", NULL };

typedef struct {
    double *W1, *b1;   /* (D,F), (F) */
    double *W2, *b2;   /* (F,D), (D) */
} TfFfn;

/* out (N,D) = FFN(x (N,D)); u (N,F) = x W1 + b1 and a (N,F) = act(u) are kept */
void ffn_forward(double *out, double *u, double *a, const double *x, const TfFfn *p,
                 int act, int N, int D, int F) {
    linear_forward(u, x, p->W1, p->b1, N, D, F);
    if (act == TF_GELU) gelu_forward(a, u, N * F); else relu_forward(a, u, N * F);
    linear_forward(out, a, p->W2, p->b2, N, F, D);
}

/* dx (N,D) and dp += ; du, da (N,F) are scratch that must be zero on entry.
 * forward was: u = x W1 + b1; a = act(u); out = a W2 + b2 (in reverse below) */
void ffn_backward(double *dx, TfFfn *dp, double *du, double *da, const double *dout,
                  const double *x, const double *u, const double *a, const TfFfn *p,
                  int act, int N, int D, int F) {
    linear_backward(da, dp->W2, dp->b2, dout, a, p->W2, N, F, D);
    if (act == TF_GELU) gelu_backward(du, da, u, N * F); else relu_backward(du, da, u, N * F);
    linear_backward(dx, dp->W1, dp->b1, du, x, p->W1, N, D, F);
}

/* ========================================================================
 * 4. the encoder layer
 *
 * A layer is two sublayers, each wrapped in a residual connection and a
 * LayerNorm, in one of two orders:
 *     post-LN (the paper):  y = LN(x + f(x))
 *     pre-LN  (GPT-2 on):   y = x + f(LN(x))      (+ one final LN per stack)
 * Pre-LN leaves an identity path from output to input, so deep stacks train
 * without a long warm-up; post-LN normalises the residual stream itself.
 * Encoder layer: f1 = multi-head self-attention, f2 = the FFN.
 * ======================================================================== */

enum { TF_POST, TF_PRE };
static const char *const tf_norm_names[] = { "post", "pre", NULL };

typedef struct {
    double *g, *b;     /* (D), (D) LayerNorm gain and bias */
} TfNorm;

/* The activations of one sublayer over N = B*Tq rows (the same struct, bound
 * to the gradient block, holds their gradients and the backward's scratch). */
typedef struct {
    double *n;            /* (N,D) LayerNorm output: pre-LN the sublayer's input,
                             post-LN the sublayer's output */
    double *mean, *rstd;  /* (N), (N) LayerNorm statistics */
    double *f;            /* (N,D) f(.): attention or FFN output */
    double *r;            /* (N,D) residual sum x + f (pre-LN: the output) */
    double *u, *a;        /* (N,F), (N,F) FFN only: pre-activation, activation */
    MhaCache mc;          /* attention only: mha_forward's cache for B examples */
} TfSub;

/* the output (N,D) of a sublayer: LN(x + f) for post-LN, x + f for pre-LN */
static double *tf_sub_out(const TfSub *s, int norm) { return norm == TF_POST ? s->n : s->r; }

/* Attention sublayer. out = tf_sub_out(s): (B,Tq,D) from x (B,Tq,D).
 * mem (B,Tk,D) = the keys and values for cross-attention, NULL for
 * self-attention (keys and values from the same rows as the queries).
 * kmask (B,Tk) marks real keys (NULL = all real); causal hides the future. */
static void tf_attn_sublayer_forward(TfSub *s, const double *x, const double *mem,
                                     const TfNorm *ln, const Mha *m,
                                     const unsigned char *kmask, int causal, int norm,
                                     int B, int Tq, int Tk, int D, int H) {
    const int N = B * Tq;
    const double *q = x;                        /* the attention's query input */
    if (norm == TF_PRE) {
        layernorm_forward(s->n, s->mean, s->rstd, x, ln->g, ln->b, N, D);
        q = s->n;
    }
    mha_forward(s->f, &s->mc, q, mem ? mem : q, m, kmask, causal, B, Tq, Tk, D, H);
    for (int i = 0; i < N * D; i++) s->r[i] = x[i] + s->f[i];
    if (norm == TF_POST) layernorm_forward(s->n, s->mean, s->rstd, s->r, ln->g, ln->b, N, D);
}

/* dx (B,Tq,D), dmem (B,Tk,D) (cross-attention only), dln, dm +=.
 * ds is the gradient twin of s: its output slot holds dout, the rest is zero. */
static void tf_attn_sublayer_backward(double *dx, double *dmem, TfNorm *dln, Mha *dm,
                                      TfSub *ds, const TfSub *s, const double *x,
                                      const double *mem, const TfNorm *ln, const Mha *m,
                                      int causal, int norm, int B, int Tq, int Tk, int D,
                                      int H) {
    const int N = B * Tq;
    /* post-LN, forward was: n = LN(r) */
    if (norm == TF_POST)
        layernorm_backward(ds->r, dln->g, dln->b, ds->n, s->r, s->mean, s->rstd, ln->g, N, D);
    /* forward was: r = x + f, so dx += dr and df = dr */
    for (int i = 0; i < N * D; i++) dx[i] += ds->r[i];
    const double *q = norm == TF_PRE ? s->n : x;
    double *dq = norm == TF_PRE ? ds->n : dx;
    /* forward was: f = MHA(q, mem or q) */
    mha_backward(dq, mem ? dmem : dq, dm, ds->r, q, mem ? mem : q, m, &s->mc, &ds->mc,
                    causal, B, Tq, Tk, D, H);
    /* pre-LN, forward was: n = LN(x) */
    if (norm == TF_PRE)
        layernorm_backward(dx, dln->g, dln->b, ds->n, x, s->mean, s->rstd, ln->g, N, D);
}

/* FFN sublayer: out = tf_sub_out(s) (N,D) from x (N,D) */
static void tf_ffn_sublayer_forward(TfSub *s, const double *x, const TfNorm *ln,
                                    const TfFfn *p, int act, int norm, int N, int D, int F) {
    const double *in = x;
    if (norm == TF_PRE) {
        layernorm_forward(s->n, s->mean, s->rstd, x, ln->g, ln->b, N, D);
        in = s->n;
    }
    ffn_forward(s->f, s->u, s->a, in, p, act, N, D, F);
    for (int i = 0; i < N * D; i++) s->r[i] = x[i] + s->f[i];
    if (norm == TF_POST) layernorm_forward(s->n, s->mean, s->rstd, s->r, ln->g, ln->b, N, D);
}

/* dx (N,D), dln, dp += ; ds as in tf_attn_sublayer_backward */
static void tf_ffn_sublayer_backward(double *dx, TfNorm *dln, TfFfn *dp, TfSub *ds,
                                     const TfSub *s, const double *x, const TfNorm *ln,
                                     const TfFfn *p, int act, int norm, int N, int D, int F) {
    if (norm == TF_POST)                        /* forward was: n = LN(r) */
        layernorm_backward(ds->r, dln->g, dln->b, ds->n, s->r, s->mean, s->rstd, ln->g, N, D);
    for (int i = 0; i < N * D; i++) dx[i] += ds->r[i];   /* forward was: r = x + f */
    if (norm == TF_PRE) {                       /* forward was: f = FFN(LN(x)) */
        ffn_backward(ds->n, dp, ds->u, ds->a, ds->r, s->n, s->u, s->a, p, act, N, D, F);
        layernorm_backward(dx, dln->g, dln->b, ds->n, x, s->mean, s->rstd, ln->g, N, D);
    } else {                                    /* forward was: f = FFN(x) */
        ffn_backward(dx, dp, ds->u, ds->a, ds->r, x, s->u, s->a, p, act, N, D, F);
    }
}

typedef struct {
    TfNorm ln1;        /* (D) x2, around self-attention */
    Mha attn;          /* 4 x (D,D) self-attention */
    TfNorm ln2;        /* (D) x2, around the FFN */
    TfFfn ffn;         /* (D,F), (F), (F,D), (D) */
} TfEncLayer;

/* Encoder layer: out = tf_sub_out(&s[1]) (B,T,D) from x (B,T,D); s[0] is the
 * attention sublayer, s[1] the FFN. kmask (B,T) marks real tokens; CAUSAL
 * turns it into a GPT block (each position sees only itself and the past). */
void tf_encoder_layer_forward(TfSub *s, const double *x, const TfEncLayer *L,
                              const unsigned char *kmask, int causal, int norm, int act,
                              int B, int T, int D, int H, int F) {
    tf_attn_sublayer_forward(&s[0], x, NULL, &L->ln1, &L->attn, kmask, causal, norm,
                             B, T, T, D, H);
    tf_ffn_sublayer_forward(&s[1], tf_sub_out(&s[0], norm), &L->ln2, &L->ffn, act, norm,
                            B * T, D, F);
}

/* dx (B,T,D), dL +=; ds (2) the gradient twins, dout in ds[1]'s output slot */
void tf_encoder_layer_backward(double *dx, TfEncLayer *dL, TfSub *ds, const TfSub *s,
                               const double *x, const TfEncLayer *L, int causal, int norm,
                               int act, int B, int T, int D, int H, int F) {
    tf_ffn_sublayer_backward(tf_sub_out(&ds[0], norm), &dL->ln2, &dL->ffn, &ds[1], &s[1],
                             tf_sub_out(&s[0], norm), &L->ln2, &L->ffn, act, norm,
                             B * T, D, F);
    tf_attn_sublayer_backward(dx, NULL, &dL->ln1, &dL->attn, &ds[0], &s[0], x, NULL,
                              &L->ln1, &L->attn, causal, norm, B, T, T, D, H);
}

/* ========================================================================
 * 5. the decoder layer
 *
 * Three sublayers: causal self-attention over the target so far, cross-
 * attention whose queries come from the decoder and whose keys and values are
 * the encoder's output ("memory"), and the FFN.
 * ======================================================================== */

typedef struct {
    TfNorm ln1;        /* (D) x2, around masked self-attention */
    Mha self;          /* 4 x (D,D) */
    TfNorm ln2;        /* (D) x2, around cross-attention */
    Mha cross;         /* 4 x (D,D): W_q on the decoder, W_k, W_v on the memory */
    TfNorm ln3;        /* (D) x2, around the FFN */
    TfFfn ffn;
} TfDecLayer;

/* Decoder layer: out = tf_sub_out(&s[2]) (B,T,D) from x (B,T,D) and the
 * encoder output mem (B,S,D). tmask (B,T), smask (B,S) mark real tokens. */
void tf_decoder_layer_forward(TfSub *s, const double *x, const double *mem,
                              const TfDecLayer *L, const unsigned char *tmask,
                              const unsigned char *smask, int norm, int act, int B, int T,
                              int S, int D, int H, int F) {
    tf_attn_sublayer_forward(&s[0], x, NULL, &L->ln1, &L->self, tmask, CAUSAL, norm,
                             B, T, T, D, H);
    tf_attn_sublayer_forward(&s[1], tf_sub_out(&s[0], norm), mem, &L->ln2, &L->cross,
                             smask, NOT_CAUSAL, norm, B, T, S, D, H);
    tf_ffn_sublayer_forward(&s[2], tf_sub_out(&s[1], norm), &L->ln3, &L->ffn, act, norm,
                            B * T, D, F);
}

/* dx (B,T,D), dmem (B,S,D), dL +=; ds (3) with dout in ds[2]'s output slot */
void tf_decoder_layer_backward(double *dx, double *dmem, TfDecLayer *dL, TfSub *ds,
                               const TfSub *s, const double *x, const double *mem,
                               const TfDecLayer *L, int norm, int act, int B, int T, int S,
                               int D, int H, int F) {
    tf_ffn_sublayer_backward(tf_sub_out(&ds[1], norm), &dL->ln3, &dL->ffn, &ds[2], &s[2],
                             tf_sub_out(&s[1], norm), &L->ln3, &L->ffn, act, norm,
                             B * T, D, F);
    tf_attn_sublayer_backward(tf_sub_out(&ds[0], norm), dmem, &dL->ln2, &dL->cross, &ds[1],
                              &s[1], tf_sub_out(&s[0], norm), mem, &L->ln2, &L->cross,
                              NOT_CAUSAL, norm, B, T, S, D, H);
    tf_attn_sublayer_backward(dx, NULL, &dL->ln1, &dL->self, &ds[0], &s[0], x, NULL,
                              &L->ln1, &L->self, CAUSAL, norm, B, T, T, D, H);
}

/* ========================================================================
 * 6. the model: config, weights, activations, a batch
 *
 * Config, weights and run state (activations) as three structs. Parameters,
 * their gradients, Adam's m and v, the activations and their gradients each
 * live in one allocation (laid out in Part II, tf_build), so the optimiser
 * and the gradient checker are flat loops.
 * ======================================================================== */

enum { TF_ENCDEC, TF_ENCODER, TF_DECODER };
static const char *const tf_arch_names[] = { "encdec", "encoder", "decoder", NULL };
enum { TF_POS_SIN, TF_POS_LEARNED, TF_POS_NONE };
static const char *const tf_pos_names[] = { "sin", "learned", "none", NULL };

typedef struct {
    int arch;          /* TF_ENCDEC, TF_ENCODER (BERT-style), TF_DECODER (GPT-style) */
    int norm;          /* TF_POST or TF_PRE */
    int pos;           /* TF_POS_SIN, TF_POS_LEARNED, TF_POS_NONE */
    int act;           /* TF_RELU or TF_GELU, in the FFN */
    int V;             /* vocabulary size */
    int D, H, F;       /* d_model, heads (D % H == 0), feed-forward width */
    int n_enc;         /* layers of the first stack (encoder, BERT's or GPT's) */
    int n_dec;         /* decoder layers: encdec only, 0 otherwise */
    int S;             /* length of the first stack's input */
    int T;             /* decoder length: encdec only, 0 otherwise */
    int B;             /* examples per batch (the most a forward call takes) */
    double smoothing;  /* label smoothing eps of the loss, 0 = plain cross-entropy */
} TfConfig;

/* the output positions per example: the decoder's, or the only stack's */
static int tf_out_len(const TfConfig *c) { return c->arch == TF_ENCDEC ? c->T : c->S; }

/* rows of the positional table */
static int tf_pos_rows(const TfConfig *c) { return c->S > c->T ? c->S : c->T; }

typedef struct {
    double *tok;       /* (V,D) token embedding, shared by encoder and decoder */
    double *pos;       /* (P,D) learned positions; NULL unless pos == learned */
    TfEncLayer *enc;   /* n_enc layers of the first stack */
    TfNorm enc_ln;     /* (D) x2 final LayerNorm of the first stack (pre-LN only) */
    TfDecLayer *dec;   /* n_dec decoder layers */
    TfNorm dec_ln;     /* (D) x2 final LayerNorm of the decoder (pre-LN only) */
    double *Wout;      /* (D,V) output projection */
    double *bout;      /* (V) */
} TfWeights;

/* the activations of the whole model for one batch (see TfSub) */
typedef struct {
    double *xe;        /* (B,S,D) embedded input of the first stack */
    TfSub *es;         /* 2*n_enc sublayers of the first stack */
    TfSub ef;          /* its final LayerNorm (pre-LN only): n, mean, rstd */
    double *xd;        /* (B,T,D) embedded decoder input (encdec only) */
    TfSub *ds;         /* 3*n_dec decoder sublayers */
    TfSub df;          /* the decoder's final LayerNorm (pre-LN only) */
    double *logits;    /* (B,To,V) */
    double *probs;     /* (B,To,V) softmax(logits), for the backward */
} TfActs;

typedef struct {
    TfConfig c;
    int np;            /* number of parameters */
    double *params;    /* (np) every weight, laid out by tf_weights_layout */
    double *grads;     /* (np) their gradients, same layout */
    double *adam_m;    /* (np) Adam first moment */
    double *adam_v;    /* (np) Adam second moment */
    int step;          /* Adam steps taken */
    TfWeights w, gw;   /* views into params and grads */
    LayoutSpan *spans; /* (nspans) the named tensors of params, e.g. "dec1.cross.Wk":
                          the gradient checker and tf_init_params walk these */
    int nspans;
    int na;            /* doubles of activations */
    int na_grad;       /* the first na_grad of dacts hold gradients that
                          tf_backward clears; the rest is attention scratch */
    double *acts;      /* (na) forward activations */
    double *dacts;     /* (na) their gradients and the backward's scratch */
    TfActs a, da;      /* views into acts and dacts */
    double *pos_sin;   /* (P,D) sinusoidal table (pos == sin), else NULL */
    int count;         /* targets counted by the last tf_forward's loss */
    int diverged;      /* the step training diverged at (step_diverged), 0 if none */
    double div_loss, div_norm;  /* that step's loss and gradient norm */
} TfModel;

/* the first stack's output (B,S,D) in a (acts or their gradients) */
static double *tf_enc_out(const TfActs *a, const TfConfig *c) {
    if (c->norm == TF_PRE) return a->ef.n;
    return tf_sub_out(&a->es[2 * c->n_enc - 1], c->norm);
}

/* the decoder's output (B,T,D) */
static double *tf_dec_out(const TfActs *a, const TfConfig *c) {
    if (c->norm == TF_PRE) return a->df.n;
    return tf_sub_out(&a->ds[3 * c->n_dec - 1], c->norm);
}

/* grads (np) = 0, before a backward that adds into them */
void tf_zero_grad(TfModel *m) { memset(m->grads, 0, sizeof(double) * (size_t)m->np); }

/* the positional table in use: (P,D) or NULL */
static const double *tf_pos_table(const TfModel *m) {
    return m->c.pos == TF_POS_SIN ? m->pos_sin : m->w.pos;
}

/* the special tokens: encdec padding and start; BERT's [MASK] (text archs) */
#define TF_PAD 0
#define TF_BOS 1
#define TF_MASK 0

/* One batch. Targets y < 0 carry no loss (padding, or BERT's unmasked tokens). */
typedef struct {
    int n;                   /* examples in use, <= B */
    int *src;                /* (B,S) tokens of the first stack */
    unsigned char *smask;    /* (B,S) 1 = real token, 0 = padding */
    int *tgt;                /* (B,T) decoder input (encdec; else unused) */
    unsigned char *tmask;    /* (B,T) */
    int *y;                  /* (B,To) targets */
} TfBatch;

/* room for c->B examples (b->n = B); masks all 1 (no padding). Free with
 * tf_batch_free. */
void tf_batch_alloc(TfBatch *b, const TfConfig *c) {
    const int T = c->T ? c->T : 1;
    b->n = c->B;
    b->src = xmalloc(sizeof(int) * (size_t)(c->B * c->S));
    b->smask = xmalloc((size_t)(c->B * c->S));
    b->tgt = xmalloc(sizeof(int) * (size_t)(c->B * T));
    b->tmask = xmalloc((size_t)(c->B * T));
    b->y = xmalloc(sizeof(int) * (size_t)(c->B * tf_out_len(c)));
    memset(b->smask, 1, (size_t)(c->B * c->S));
    memset(b->tmask, 1, (size_t)(c->B * T));
}

/* free what tf_batch_alloc allocated */
void tf_batch_free(TfBatch *b) {
    free(b->src); free(b->smask); free(b->tgt); free(b->tmask); free(b->y);
}

/* ========================================================================
 * 7. the output and the loss
 *
 * logits = x Wout + bout at every output position; loss = mean over counted
 * targets of cross-entropy (with label smoothing eps: the target is
 * (1 - eps) one-hot + eps / V).
 * ======================================================================== */

/* logits, probs (n*To, V) from x (n*To, D); returns the mean loss over the
 * targets y >= 0 and stores their number in m->count (0 targets: loss 0). */
static double tf_head_forward(TfModel *m, const double *x, const int *y, int n) {
    const TfConfig *c = &m->c;
    const int rows = n * tf_out_len(c);
    linear_forward(m->a.logits, x, m->w.Wout, m->w.bout, rows, c->D, c->V);
    double loss = 0.0;
    m->count = 0;
    for (int i = 0; i < rows; i++) {
        int target = y ? y[i] : -1;
        if (target >= 0) m->count++;
        loss += cross_entropy_forward(m->a.probs + i * c->V, m->a.logits + i * c->V,
                                      target, c->V, c->smoothing);
    }
    return m->count ? loss / m->count : 0.0;
}

/* ========================================================================
 * 8. the three archs: forward and backward
 *
 *   encdec   encoder (bidirectional, source padding mask) -> decoder (causal
 *            self-attention + cross-attention) -> next target token
 *   encoder  the same encoder, no decoder; the loss counts only masked
 *            positions (BERT's masked-token objective)
 *   decoder  the encoder's layers with the causal mask and no cross-attention
 *            (a GPT block); the loss is the next token at every position
 * ======================================================================== */

/* Run the first stack on b->src; returns its output (n,S,D). */
const double *tf_encode(TfModel *m, const TfBatch *b) {
    const TfConfig *c = &m->c;
    const int causal = c->arch == TF_DECODER ? CAUSAL : NOT_CAUSAL;   /* GPT: no future */
    tf_embed_forward(m->a.xe, b->src, m->w.tok, tf_pos_table(m), b->n, c->S, c->D);
    const double *x = m->a.xe;
    for (int l = 0; l < c->n_enc; l++) {
        tf_encoder_layer_forward(&m->a.es[2 * l], x, &m->w.enc[l], b->smask, causal,
                                 c->norm, c->act, b->n, c->S, c->D, c->H, c->F);
        x = tf_sub_out(&m->a.es[2 * l + 1], c->norm);
    }
    if (c->norm == TF_PRE)
        layernorm_forward(m->a.ef.n, m->a.ef.mean, m->a.ef.rstd, x, m->w.enc_ln.g,
                          m->w.enc_ln.b, b->n * c->S, c->D);
    return tf_enc_out(&m->a, c);
}

/* Run the decoder on b->tgt against the memory tf_encode left; returns its
 * output (n,T,D). encdec only. */
const double *tf_decode(TfModel *m, const TfBatch *b) {
    const TfConfig *c = &m->c;
    const double *mem = tf_enc_out(&m->a, c);
    tf_embed_forward(m->a.xd, b->tgt, m->w.tok, tf_pos_table(m), b->n, c->T, c->D);
    const double *x = m->a.xd;
    for (int l = 0; l < c->n_dec; l++) {
        tf_decoder_layer_forward(&m->a.ds[3 * l], x, mem, &m->w.dec[l], b->tmask, b->smask,
                                 c->norm, c->act, b->n, c->T, c->S, c->D, c->H, c->F);
        x = tf_sub_out(&m->a.ds[3 * l + 2], c->norm);
    }
    if (c->norm == TF_PRE)
        layernorm_forward(m->a.df.n, m->a.df.mean, m->a.df.rstd, x, m->w.dec_ln.g,
                          m->w.dec_ln.b, b->n * c->T, c->D);
    return tf_dec_out(&m->a, c);
}

/* The whole forward pass on b; returns the mean loss over b->y >= 0
 * (b->y may be NULL: logits only). */
double tf_forward(TfModel *m, const TfBatch *b) {
    const double *x = tf_encode(m, b);
    if (m->c.arch == TF_ENCDEC) x = tf_decode(m, b);
    return tf_head_forward(m, x, b->y, b->n);
}

/* The whole backward pass after tf_forward(m, b): parameter gradients +=
 * (call tf_zero_grad first). Clears the activation gradients itself. */
void tf_backward(TfModel *m, const TfBatch *b) {
    const TfConfig *c = &m->c;
    const int n = b->n, S = c->S, T = c->T, D = c->D, To = tf_out_len(c);
    const int causal = c->arch == TF_DECODER ? CAUSAL : NOT_CAUSAL, pre = c->norm == TF_PRE;
    TfActs *a = &m->a, *da = &m->da;
    memset(m->dacts, 0, sizeof(double) * (size_t)m->na_grad);
    /* forward was: loss = (1/count) sum_i CE(logits_i, y_i) */
    double dloss = m->count ? 1.0 / m->count : 0.0;
    for (int i = 0; i < n * To; i++)
        cross_entropy_backward(da->logits + i * c->V, dloss, a->probs + i * c->V, b->y[i],
                               c->V, c->smoothing);
    /* forward was: logits = x Wout + bout */
    const int encdec = c->arch == TF_ENCDEC;
    double *xo = encdec ? tf_dec_out(a, c) : tf_enc_out(a, c);
    double *dxo = encdec ? tf_dec_out(da, c) : tf_enc_out(da, c);
    linear_backward(dxo, m->gw.Wout, m->gw.bout, da->logits, xo, m->w.Wout, n * To, D, c->V);
    if (encdec) {
        const double *mem = tf_enc_out(a, c);
        double *dmem = tf_enc_out(da, c);
        double *top = tf_sub_out(&a->ds[3 * c->n_dec - 1], c->norm);
        double *dtop = tf_sub_out(&da->ds[3 * c->n_dec - 1], c->norm);
        if (pre)                                /* forward was: out = LN(top) */
            layernorm_backward(dtop, m->gw.dec_ln.g, m->gw.dec_ln.b, da->df.n, top,
                               a->df.mean, a->df.rstd, m->w.dec_ln.g, n * T, D);
        for (int l = c->n_dec - 1; l >= 0; l--) {
            const double *x = l ? tf_sub_out(&a->ds[3 * l - 1], c->norm) : a->xd;
            double *dx = l ? tf_sub_out(&da->ds[3 * l - 1], c->norm) : da->xd;
            tf_decoder_layer_backward(dx, dmem, &m->gw.dec[l], &da->ds[3 * l], &a->ds[3 * l],
                                      x, mem, &m->w.dec[l], c->norm, c->act, n, T, S, D,
                                      c->H, c->F);
        }
        tf_embed_backward(m->gw.tok, m->gw.pos, da->xd, b->tgt, n, T, D);
    }
    double *top = tf_sub_out(&a->es[2 * c->n_enc - 1], c->norm);
    double *dtop = tf_sub_out(&da->es[2 * c->n_enc - 1], c->norm);
    if (pre)                                    /* forward was: out = LN(top) */
        layernorm_backward(dtop, m->gw.enc_ln.g, m->gw.enc_ln.b, da->ef.n, top, a->ef.mean,
                           a->ef.rstd, m->w.enc_ln.g, n * S, D);
    for (int l = c->n_enc - 1; l >= 0; l--) {
        const double *x = l ? tf_sub_out(&a->es[2 * l - 1], c->norm) : a->xe;
        double *dx = l ? tf_sub_out(&da->es[2 * l - 1], c->norm) : da->xe;
        tf_encoder_layer_backward(dx, &m->gw.enc[l], &da->es[2 * l], &a->es[2 * l], x,
                                  &m->w.enc[l], causal, c->norm, c->act, n, S, D, c->H, c->F);
    }
    tf_embed_backward(m->gw.tok, m->gw.pos, da->xe, b->src, n, S, D);
}

/* The attention weights (H,Tq,Tk) of example e in sublayer s of the
 * activations (an attention sublayer with Tq queries and Tk keys). */
const double *tf_attention_map(const TfModel *m, const TfSub *s, int e, int Tq, int Tk) {
    return s->mc.P + e * m->c.H * Tq * Tk;
}

/* ========================================================================
 * 9. the warm-up schedule and one training step
 *
 * Learning rate (Vaswani et al. 2017, section 5.3), with a factor as in The
 * Annotated Transformer:
 *     lr = factor * D^-0.5 * min(step^-0.5, step * warmup^-1.5)
 * rising linearly for `warmup` steps, then decaying as 1/sqrt(step).
 * The alternative GPT-2 and nanoGPT use (--schedule cosine): a linear rise
 * to a peak lr over `warmup` steps, then half a cosine down to lr_min at the
 * last step:
 *     lr = lr_min + (lr - lr_min) * (1 + cos(pi * progress)) / 2
 * and AdamW: Adam plus a decay of every matrix (the weights, the embedding
 * and a learned positional table; not biases or LayerNorm gains, as nanoGPT)
 * by lr * wd each step, and the gradient's norm clipped.
 * ======================================================================== */

enum { TF_SCHED_NOAM, TF_SCHED_COSINE };
static const char *const tf_sched_names[] = { "noam", "cosine", NULL };

/* the hyperparameters of a training run */
typedef struct {
    int task;          /* TASK_COPY, TASK_REVERSE, TASK_SORT (encdec) */
    int steps;         /* the most training steps */
    int warmup;        /* warm-up steps of the schedule */
    double lr_factor;  /* factor of the schedule */
    int n_eval;        /* held-out examples (windows of text for BERT/GPT) */
    int eval_every;    /* steps between held-out evaluations; encdec stops at 100% */
    int log_every;     /* steps between progress lines, 0 = quiet */
    uint64_t seed;     /* data streams: training and held-out never share one */
    double beta2;      /* Adam's beta2: the paper's 0.98; nanoGPT's 0.99 */
    int sched;         /* TF_SCHED_NOAM (the paper's, above) or TF_SCHED_COSINE */
    double lr, lr_min; /* the cosine schedule's peak and floor */
    double wd;         /* AdamW weight decay of the matrices, 0 = none */
    double clip;       /* clip the gradient norm to this, 0 = never */
    double minutes;    /* stop training after this many minutes of wall time, 0 = never */
    struct TfPairs *data;  /* encdec: --data's pairs (section 12), NULL: the task */
    struct TfWatch *watch; /* what the program records as it trains (section 13:
                              curves, an experiment's progress), or NULL */
} TfRun;

/* the learning rate at step (>= 1) of the schedule above */
double tf_lr(int step, int D, int warmup, double factor) {
    double s = step < 1 ? 1.0 : step;
    double a = 1.0 / sqrt(s), b = s * pow((double)warmup, -1.5);
    return factor / sqrt((double)D) * (a < b ? a : b);
}

/* nanoGPT's learning rate at step (>= 1) of `total`: (step / (warmup + 1))
 * of lr while warming up, then the half cosine from lr to lr_min */
double tf_lr_cosine(int step, int total, int warmup, double lr, double lr_min) {
    const int it = step - 1;                    /* nanoGPT counts from 0 */
    if (it < warmup) return lr * (it + 1) / (warmup + 1);
    if (it >= total || total <= warmup) return lr_min;
    const double progress = (double)(it - warmup) / (total - warmup);
    return lr_min + 0.5 * (1.0 + cos(PI * progress)) * (lr - lr_min);
}

/* the learning rate of run at the model's step */
double tf_run_lr(const TfRun *run, int step, int D) {
    if (run->sched == TF_SCHED_COSINE)
        return tf_lr_cosine(step, run->steps, run->warmup, run->lr, run->lr_min);
    return tf_lr(step, D, run->warmup, run->lr_factor);
}

/* One step of Adam (beta1 0.9, beta2 run->beta2: the paper's 0.98, eps
 * 1e-9) on batch b, at the run's schedule. Returns the batch loss. A step
 * that has diverged (step_diverged) is not applied: m->diverged records it.
 * With run->clip the gradient's norm is clipped first; with run->wd the
 * matrices (spans of more than one row and column) decay too (AdamW). */
double tf_train_step(TfModel *m, const TfBatch *b, const TfRun *run) {
    double loss = tf_forward(m, b);
    tf_zero_grad(m);
    tf_backward(m, b);
    m->step++;
    const double gnorm = grad_norm(m->grads, m->np);
    if (step_diverged(loss, gnorm, m->c.V)) {
        m->diverged = m->step; m->div_loss = loss; m->div_norm = gnorm;
        return loss;
    }
    if (run->clip > 0.0 && gnorm > run->clip)   /* as clip_grad_norm, with the norm known */
        for (int i = 0; i < m->np; i++) m->grads[i] *= run->clip / gnorm;
    const double lr = tf_run_lr(run, m->step, m->c.D);
    if (run->wd == 0.0) {
        adam_update(m->params, m->grads, m->adam_m, m->adam_v, m->np, m->step, lr, 0.9,
                    run->beta2, 1e-9, 0.0);
        return loss;
    }
    for (int k = 0; k < m->nspans; k++) {       /* the spans tile params in order */
        const LayoutSpan *s = &m->spans[k];
        const int matrix = s->rows > 1 && s->cols > 1;
        adam_update(m->params + s->off, m->grads + s->off, m->adam_m + s->off,
                    m->adam_v + s->off, s->n, m->step, lr, 0.9, run->beta2, 1e-9,
                    matrix ? run->wd : 0.0);
    }
    return loss;
}

/* ========================================================================
 * 10. decoding and sampling
 * ======================================================================== */

/* Greedy decoding of b's n sources: out (n,T). The encoder runs once; the
 * decoder runs T times, each time on the whole target buffer, reading the
 * prediction at position t only. That is correct because causal masking
 * makes position t depend on positions <= t alone (tests.c checks it), so
 * whatever fills the later positions does not matter. b->tgt is overwritten. */
void tf_greedy_decode(TfModel *m, TfBatch *b, int *out) {
    const TfConfig *c = &m->c;
    tf_encode(m, b);
    for (int e = 0; e < b->n; e++) {
        b->tgt[e * c->T] = TF_BOS;
        for (int t = 1; t < c->T; t++) b->tgt[e * c->T + t] = TF_PAD;
    }
    for (int t = 0; t < c->T; t++) {
        tf_head_forward(m, tf_decode(m, b), NULL, b->n);
        for (int e = 0; e < b->n; e++) {
            const double *l = m->a.logits + (e * c->T + t) * c->V;
            int best = argmax(l, c->V);
            out[e * c->T + t] = best;
            if (t + 1 < c->T) b->tgt[e * c->T + t + 1] = best;
        }
    }
}

/* GPT-style generation: continue `prompt` (tokens, len >= 1) by `n` tokens
 * into out (len + n), one example, a window of the last S tokens. Only
 * tokens lo..V-1 are drawn (lo = 0: any; a file's vocabulary passes its
 * first character, so that no special token is ever written). */
void tf_generate(TfModel *m, const int *prompt, int len, int n, double temperature, int lo,
                 Rng *r, int *out) {
    const TfConfig *c = &m->c;
    TfBatch b;
    tf_batch_alloc(&b, c);
    b.n = 1;
    double *work = xcalloc_doubles(c->V);
    memcpy(out, prompt, sizeof(int) * (size_t)len);
    for (int k = len; k < len + n; k++) {
        int start = k > c->S ? k - c->S : 0, used = k - start;
        for (int t = 0; t < c->S; t++) b.src[t] = t < used ? out[start + t] : TF_MASK;
        tf_head_forward(m, tf_encode(m, &b), NULL, 1);
        out[k] = lo + sample_softmax(m->a.logits + (used - 1) * c->V + lo, c->V - lo, temperature,
                                work, r);
    }
    free(work);
    tf_batch_free(&b);
}

/* ************************************************************************
 * PART II. THE PROGRAM
 *
 * Everything above is the model: a reader who stops here has read all of it.
 * What follows builds a model in memory, makes the data, trains and
 * evaluates, and, when this file is the program rather than included by
 * tests.c (TESTING), draws attention, runs the experiments and --bench, and
 * reads the command line.
 * ************************************************************************ */

/* ========================================================================
 * 11. building a model: sizes, checks, layouts
 *
 * One walk per block (tf_weights_layout, tf_acts_layout) hands out its
 * tensors with attention.c's Layout cursor: run once to count, then once on
 * each block (parameters and their gradients; activations and theirs).
 * ======================================================================== */

/* An upper estimate, in floating point so that it cannot overflow, of the
 * doubles in the largest block tf_build allocates (activations or parameters). */
static double tf_size_estimate(const TfConfig *c) {
    const double B = c->B, S = c->S, T = c->T, D = c->D, H = c->H, F = c->F, V = c->V;
    const double P = S > T ? S : T;
#define TF_MHA_EST(q, k) (4 * (q) * D + 4 * (k) * D + H * (q) * (k) + 2 * (k))
    double acts = B * (c->n_enc * (TF_MHA_EST(S, S) + 10 * S * D + 2 * S * F + 4 * S) +
                       c->n_dec * (TF_MHA_EST(T, T) + TF_MHA_EST(T, S) + 14 * T * D +
                                   2 * T * F + 6 * T) + 4 * P * D + 2 * P * V);
#undef TF_MHA_EST
    double params = V * D + P * D + c->n_enc * (4 * D * D + 2 * D * F + F + 5 * D) +
                    c->n_dec * (8 * D * D + 2 * D * F + F + 7 * D) + D * V + V + 4 * D;
    return acts > params ? acts : params;
}

/* the most doubles one block may hold: offsets are ints (2^31), with room */
#define TF_MAX_DOUBLES 2e8

/* The largest length below c->S (S = T for encdec) whose model fits in
 * TF_MAX_DOUBLES with every other size as in c, or 0 if none does. The
 * estimate grows with the length, so the first that fits, counting down,
 * is the answer. */
int tf_largest_len(const TfConfig *c) {
    TfConfig k = *c;
    for (int len = c->S - 1; len >= 1; len--) {
        k.S = len;
        k.T = c->arch == TF_ENCDEC ? len : 0;
        if (tf_size_estimate(&k) <= TF_MAX_DOUBLES) return len;
    }
    return 0;
}

/* What is wrong with c, or NULL if nothing: the checks the command line and
 * tf_build rely on (messages name the option a user would change). */
const char *tf_config_error(const TfConfig *c) {
    if (c->D < 1 || c->H < 1 || c->F < 1) return "--d-model, --heads and --ff must be >= 1";
    if (c->D % c->H) return "--d-model must be divisible by --heads";
    if (c->n_enc < 1) return "--layers must be >= 1";
    if (c->arch == TF_ENCDEC ? c->n_dec < 1 : c->n_dec != 0)
        return "decoder layers: >= 1 for --arch encdec, 0 otherwise";
    if (c->S < 1 || (c->arch == TF_ENCDEC ? c->T < 1 : c->T != 0))
        return "--len must be >= 1";
    if (tf_pos_rows(c) > TF_MAX_POS) return "--len exceeds the positional table (512 rows)";
    if (c->V < 2) return "--vocab must be >= 2";
    if (c->B < 1) return "--batch must be >= 1";
    if (!(c->smoothing >= 0.0 && c->smoothing < 1.0)) return "--smoothing must be in [0, 1)";
    if (tf_size_estimate(c) > TF_MAX_DOUBLES)    /* sizes are ints; 2e8 doubles = 1.6 GB */
        return "--batch, --len, --d-model, --ff, --heads and --layers together need more "
               "than 2e8 doubles (1.6 GB) of activations or parameters: make one smaller";
    return NULL;
}

/* how a parameter tensor is initialised: the init code of its LayoutSpan */
enum { TF_INIT_XAVIER, TF_INIT_ZERO, TF_INIT_ONE };

/* a LayerNorm's gain g (D) and bias b (D), named "<layer>.<name>.g" and ".b" */
static void tf_norm_layout(TfNorm *n, Layout *L, const char *layer, const char *name, int D) {
    n->g = layout_param(L, D, 1, TF_INIT_ONE, "%s.%s.g", layer, name);
    n->b = layout_param(L, D, 1, TF_INIT_ZERO, "%s.%s.b", layer, name);
}

/* an attention's W_q, W_k, W_v, W_o, each (D,D), contiguous as mha_bind wants */
static void tf_mha_layout(Mha *m, Layout *L, const char *layer, const char *name, int D) {
    static const char *const w[4] = { "Wq", "Wk", "Wv", "Wo" };
    double *first = NULL;
    for (int k = 0; k < 4; k++) {
        double *p = layout_param(L, D, D, TF_INIT_XAVIER, "%s.%s.%s", layer, name, w[k]);
        if (k == 0) first = p;
    }
    if (first) mha_bind(m, first, D);           /* the four are contiguous */
}

/* a feed-forward network: W1 (D,F), b1 (F), W2 (F,D), b2 (D) */
static void tf_ffn_layout(TfFfn *f, Layout *L, const char *layer, int D, int F) {
    f->W1 = layout_param(L, D, F, TF_INIT_XAVIER, "%s.ffn.W1", layer);
    f->b1 = layout_param(L, F, 1, TF_INIT_ZERO, "%s.ffn.b1", layer);
    f->W2 = layout_param(L, F, D, TF_INIT_XAVIER, "%s.ffn.W2", layer);
    f->b2 = layout_param(L, D, 1, TF_INIT_ZERO, "%s.ffn.b2", layer);
}

/* an attention sublayer's parameters: its LayerNorm, then its attention */
static void tf_attn_sub_layout(TfNorm *ln, Mha *m, Layout *L, const char *layer,
                               const char *ln_name, const char *name, int D) {
    tf_norm_layout(ln, L, layer, ln_name, D);
    tf_mha_layout(m, L, layer, name, D);
}

/* Point w at the parameters in L (w->enc and w->dec must hold n_enc and
 * n_dec layers). The one place that decides the parameter layout: run once
 * to count, once on the parameters, once on their gradients (tf_build). */
static void tf_weights_layout(TfWeights *w, Layout *L, const TfConfig *c) {
    const int D = c->D, pre = c->norm == TF_PRE;
    char layer[16];                             /* "enc0", "dec1" */
    w->tok = layout_param(L, c->V, D, TF_INIT_XAVIER, "tok");
    w->pos = c->pos == TF_POS_LEARNED ? layout_param(L, tf_pos_rows(c), D, TF_INIT_XAVIER,
                                                     "pos") : NULL;
    for (int l = 0; l < c->n_enc; l++) {         /* self-attention, FFN */
        TfEncLayer *e = &w->enc[l];
        snprintf(layer, sizeof layer, "enc%d", l);
        tf_attn_sub_layout(&e->ln1, &e->attn, L, layer, "ln1", "attn", D);
        tf_norm_layout(&e->ln2, L, layer, "ln2", D);
        tf_ffn_layout(&e->ffn, L, layer, D, c->F);
    }
    w->enc_ln.g = w->enc_ln.b = NULL;
    if (pre) tf_norm_layout(&w->enc_ln, L, "enc", "ln", D);
    for (int l = 0; l < c->n_dec; l++) {         /* self-attention, cross-attention, FFN */
        TfDecLayer *d = &w->dec[l];
        snprintf(layer, sizeof layer, "dec%d", l);
        tf_attn_sub_layout(&d->ln1, &d->self, L, layer, "ln1", "self", D);
        tf_attn_sub_layout(&d->ln2, &d->cross, L, layer, "ln2", "cross", D);
        tf_norm_layout(&d->ln3, L, layer, "ln3", D);
        tf_ffn_layout(&d->ffn, L, layer, D, c->F);
    }
    w->dec_ln.g = w->dec_ln.b = NULL;
    if (pre && c->n_dec) tf_norm_layout(&w->dec_ln, L, "dec", "ln", D);
    w->Wout = layout_param(L, D, c->V, TF_INIT_XAVIER, "Wout");
    w->bout = layout_param(L, c->V, 1, TF_INIT_ZERO, "bout");
}

/* mha_forward's cache for B examples (Tq queries, Tk keys each): one block of
 * mha_cache_size doubles taken from the layout, bound by mha_cache_bind, so
 * example e's weights are at c->P + e*H*Tq*Tk whatever batch size was run. */
static void tf_mha_cache_layout(MhaCache *c, Layout *L, int B, int Tq, int Tk, int D,
                                int H) {
    double *mem = layout_take(L, mha_cache_size(B, Tq, Tk, D, H));
    if (mem) mha_cache_bind(c, mem, B, Tq, Tk, D, H);
}

/* what a sublayer's activations hold (tf_sub_layout) */
enum { TF_SUB_ATTN, TF_SUB_FFN, TF_SUB_NORM };

/* one sublayer's activations over B*Tq rows: an attention or FFN sublayer
 * (the FFN also takes u and a), or a stack's lone final LayerNorm (n, mean,
 * rstd). The attention caches (mc) are laid out last, by tf_acts_layout. */
static void tf_sub_layout(TfSub *s, Layout *L, const TfConfig *c, int Tq, int kind) {
    const int N = c->B * Tq, D = c->D;
    memset(s, 0, sizeof *s);
    s->n = layout_take(L, N * D);
    s->mean = layout_take(L, N);
    s->rstd = layout_take(L, N);
    if (kind == TF_SUB_NORM) return;
    s->f = layout_take(L, N * D);
    s->r = layout_take(L, N * D);
    if (kind == TF_SUB_FFN) {
        s->u = layout_take(L, N * c->F);
        s->a = layout_take(L, N * c->F);
    }
}

/* Point a at the activations in L (a->es, a->ds hold 2*n_enc, 3*n_dec).
 * Returns where the attention caches begin: in the gradient block they are
 * mha_backward's scratch, which it clears itself, so tf_backward clears
 * only the doubles before them. */
static int tf_acts_layout(TfActs *a, Layout *L, const TfConfig *c) {
    const int S = c->S, T = c->T, D = c->D, To = tf_out_len(c);
    a->xe = layout_take(L, c->B * S * D);
    for (int l = 0; l < c->n_enc; l++) {
        tf_sub_layout(&a->es[2 * l], L, c, S, TF_SUB_ATTN);
        tf_sub_layout(&a->es[2 * l + 1], L, c, S, TF_SUB_FFN);
    }
    memset(&a->ef, 0, sizeof a->ef);
    if (c->norm == TF_PRE) tf_sub_layout(&a->ef, L, c, S, TF_SUB_NORM);
    a->xd = layout_take(L, c->B * T * D);
    for (int l = 0; l < c->n_dec; l++) {
        tf_sub_layout(&a->ds[3 * l], L, c, T, TF_SUB_ATTN);
        tf_sub_layout(&a->ds[3 * l + 1], L, c, T, TF_SUB_ATTN);
        tf_sub_layout(&a->ds[3 * l + 2], L, c, T, TF_SUB_FFN);
    }
    memset(&a->df, 0, sizeof a->df);
    if (c->norm == TF_PRE && c->n_dec) tf_sub_layout(&a->df, L, c, T, TF_SUB_NORM);
    a->logits = layout_take(L, c->B * To * c->V);
    a->probs = layout_take(L, c->B * To * c->V);
    const int grad_end = L->off;               /* the attention caches last */
    for (int l = 0; l < c->n_enc; l++)
        tf_mha_cache_layout(&a->es[2 * l].mc, L, c->B, S, S, D, c->H);
    for (int l = 0; l < c->n_dec; l++) {
        tf_mha_cache_layout(&a->ds[3 * l].mc, L, c->B, T, T, D, c->H);
        tf_mha_cache_layout(&a->ds[3 * l + 1].mc, L, c->B, T, S, D, c->H);
    }
    return grad_end;
}

/* Initialise every tensor: Xavier-uniform matrices (as The Annotated
 * Transformer), LayerNorm gains 1, biases 0. */
static void tf_init_params(TfModel *m, Rng *r) {
    for (int k = 0; k < m->nspans; k++) {
        const LayoutSpan *s = &m->spans[k];
        double *p = m->params + s->off;
        if (s->init == TF_INIT_XAVIER) {
            double lim = sqrt(6.0 / (s->rows + s->cols));
            rng_fill_uniform(r, p, s->n, -lim, lim);
        } else {
            for (int i = 0; i < s->n; i++) p[i] = s->init == TF_INIT_ONE ? 1.0 : 0.0;
        }
    }
}

/* Build a model for config c (which must pass tf_config_error) with weights
 * drawn from seed. Free with tf_free. */
void tf_build(TfModel *m, const TfConfig *c, uint64_t seed) {
    memset(m, 0, sizeof *m);
    m->c = *c;
    m->w.enc = xmalloc(sizeof(TfEncLayer) * (size_t)c->n_enc);
    m->gw.enc = xmalloc(sizeof(TfEncLayer) * (size_t)c->n_enc);
    m->w.dec = xmalloc(sizeof(TfDecLayer) * (size_t)(c->n_dec ? c->n_dec : 1));
    m->gw.dec = xmalloc(sizeof(TfDecLayer) * (size_t)(c->n_dec ? c->n_dec : 1));
    Layout L = { NULL, 0, NULL, 0 };              /* count ... */
    tf_weights_layout(&m->w, &L, c);
    m->np = L.off;
    m->nspans = L.nspans;
    m->spans = xmalloc(sizeof(LayoutSpan) * (size_t)m->nspans);
    m->params = xcalloc_doubles(m->np);
    m->grads = xcalloc_doubles(m->np);
    m->adam_m = xcalloc_doubles(m->np);
    m->adam_v = xcalloc_doubles(m->np);
    Layout Lp = { m->params, 0, m->spans, 0 };    /* ... then bind */
    tf_weights_layout(&m->w, &Lp, c);
    Layout Lg = { m->grads, 0, NULL, 0 };
    tf_weights_layout(&m->gw, &Lg, c);

    m->a.es = xmalloc(sizeof(TfSub) * (size_t)(2 * c->n_enc));
    m->da.es = xmalloc(sizeof(TfSub) * (size_t)(2 * c->n_enc));
    m->a.ds = xmalloc(sizeof(TfSub) * (size_t)(c->n_dec ? 3 * c->n_dec : 1));
    m->da.ds = xmalloc(sizeof(TfSub) * (size_t)(c->n_dec ? 3 * c->n_dec : 1));
    Layout La = { NULL, 0, NULL, 0 };
    m->na_grad = tf_acts_layout(&m->a, &La, c);
    m->na = La.off;
    m->acts = xcalloc_doubles(m->na);
    m->dacts = xcalloc_doubles(m->na);
    Layout La2 = { m->acts, 0, NULL, 0 };
    tf_acts_layout(&m->a, &La2, c);
    Layout Ld = { m->dacts, 0, NULL, 0 };
    tf_acts_layout(&m->da, &Ld, c);

    m->pos_sin = NULL;
    if (c->pos == TF_POS_SIN) {
        m->pos_sin = xcalloc_doubles(tf_pos_rows(c) * c->D);
        posenc_sinusoid(m->pos_sin, tf_pos_rows(c), c->D);
    }
    Rng r;
    rng_seed(&r, seed);
    tf_init_params(m, &r);
}

/* free everything tf_build allocated (not m itself) */
void tf_free(TfModel *m) {
    free(m->w.enc); free(m->gw.enc); free(m->w.dec); free(m->gw.dec);
    free(m->spans); free(m->params); free(m->grads); free(m->adam_m); free(m->adam_v);
    free(m->a.es); free(m->da.es); free(m->a.ds); free(m->da.ds);
    free(m->acts); free(m->dacts); free(m->pos_sin);
}

/* ========================================================================
 * 12. tasks and data
 *
 * encdec: the synthetic tasks of The Annotated Transformer. Token 0 is
 * padding, 1 the start symbol, 2..V-1 the symbols; the source is `len`
 * random symbols, the target its copy / reverse / sorted version. The
 * decoder reads [start, y_0 .. y_{T-2}] and predicts y_0 .. y_{T-1}.
 * (The Annotated Transformer's copy task differs: each sequence is the start
 * symbol 1 then len-1 symbols from 1..V-1, the source included, and len-1
 * tokens are predicted. Ours keeps the start symbol for the decoder alone,
 * so it is never also a symbol and the source has no constant first token.)
 * encoder / decoder: a built-in text, one token per character; token 0 is
 * BERT's [MASK] (shown as '_').
 * ======================================================================== */

/* The number of distinct encdec sources, (V-2)^S (capped at 1e12). Below
 * TF_MIN_SOURCES the held-out tenth would be a handful of sequences, or none. */
#define TF_MIN_SOURCES 100.0
double tf_task_space(const TfConfig *c) {
    double n = 1.0;
    for (int t = 0; t < c->S && n < 1e12; t++) n *= c->V - 2;
    return n;
}

/* which side of attention.c's heldout_split() a task source is drawn from */
enum { TF_TRAIN_SPLIT, TF_HELDOUT_SPLIT };

/* Fill the n examples of b with task examples drawn from r, from the training
 * split (TF_TRAIN_SPLIT) or the held-out split (TF_HELDOUT_SPLIT). The split is attention.c's
 * heldout_split() of the source sequence, a hash: about 1 source in 10 is
 * held out, whatever the seed, and a source is redrawn until its split
 * matches (as seq2seq.c's s2s_sample does), so no held-out source is ever
 * trained on. main() refuses task spaces below TF_MIN_SOURCES. */
void tf_task_batch(TfBatch *b, Rng *r, int task, const TfConfig *c, int heldout) {
    for (int e = 0; e < b->n; e++) {
        int *src = b->src + e * c->S, *y = b->y + e * c->T, *tgt = b->tgt + e * c->T;
        int tries = 0;
        do {
            if (++tries > 1000000) {            /* main() refuses such tasks first */
                fprintf(stderr, "transformer: the task has too few distinct sources for a "
                        "held-out split\n");
                exit(2);
            }
            toy_task_fill(r, task, src, y, c->S, 2, c->V - 2);
        } while (heldout_split(src, c->S) != heldout);
        tgt[0] = TF_BOS;
        for (int t = 1; t < c->T; t++) tgt[t] = y[t - 1];   /* shifted right */
    }
}

/* Written for this book; lower case, so that the character vocabulary is small. */
static const char tf_text_raw[] =
    "the query asks a question. every key gives an answer. the key that fits the "
    "question gets a large weight, and the value of that key is what the query "
    "reads. a head is one way of asking. many heads ask in many ways at once, and "
    "their answers are put side by side. the encoder reads the whole source at "
    "once. the decoder writes the target one token at a time. the decoder may "
    "look at the past but never at the future, and the mask hides the future. "
    "the encoder may look both ways, and so it sees the whole sentence. a model "
    "that reads both ways can fill in a word that is hidden. a model that reads "
    "one way can write the next word. both are made of the same layers: "
    "attention, then a small network on each position, with a residual path and "
    "a norm around each. attention does not know the order of the words, so the "
    "model adds the position to each word before the first layer. the sine and "
    "the cosine give each position its own pattern, and a learned table can do "
    "the same. the cost of attention grows with the square of the length, "
    "because every query looks at every key. the query asks, the key answers, "
    "the value is read, and the layer passes it on. "
    "a word on its own means little; a word among other words means more. the "
    "first layer sees words, the next layer sees words that have read their "
    "neighbours, and the last layer sees words that know the whole sentence. "
    "the decoder asks the encoder a question at every step: which source word "
    "should i read now? when the task is to copy, the answer is the word at the "
    "same place. when the task is to reverse, the answer is the word at the "
    "other end. when the task is to sort, the answer is the smallest word that "
    "has not been used. each of these is a pattern of weights that one can draw "
    "as a picture, one row for each query and one column for each key. "
    "training is slow at first and then fast. the rate of learning rises for a "
    "while and then falls, so that the early steps do not throw the model off "
    "its path. the loss is the surprise of the model at the right answer, and "
    "a smoothed target keeps the model from being too sure of itself. ";

/* The text as tokens: the built-in one, or a file's (--text). */
typedef struct {
    int n;             /* characters in the text */
    int *ids;          /* (n) token of each character */
    int split;         /* the first `split` characters train, the rest are held out */
    int V;             /* tokens */
    int first;         /* the first token that is a character: 1 for the built-in
                          text (token 0 is [MASK]), TOK_SPECIALS for a file's */
    char (*sym)[5];    /* (V) each token's UTF-8 text: "_" for [MASK] (token 0) */
    int unknown;       /* held-out characters not in the vocabulary (<unk>) */
} TfText;

/* free what tf_text_build or tf_text_read allocated */
void tf_text_free(TfText *tx) { free(tx->ids); free(tx->sym); }

/* tokenise the built-in text: token 0 is [MASK], the characters follow in order
 * of first appearance (31 of them) */
void tf_text_build(TfText *tx) {
    tx->n = (int)strlen(tf_text_raw);
    tx->split = tx->n * 9 / 10;
    tx->ids = xmalloc(sizeof(int) * (size_t)tx->n);
    tx->sym = xmalloc(sizeof tx->sym[0] * 64);
    tx->V = tx->first = 1;
    tx->unknown = 0;
    strcpy(tx->sym[0], "_");
    for (int i = 0; i < tx->n; i++) {
        int k = 0;
        while (k < tx->V && tx->sym[k][0] != tf_text_raw[i]) k++;
        if (k == tx->V) {                       /* a new character */
            if (tx->V == 64) {
                fprintf(stderr, "transformer: the built-in text has more than 63 distinct "
                        "characters; enlarge TfText's sym\n");
                exit(1);
            }
            tx->sym[tx->V][0] = tf_text_raw[i];
            tx->sym[tx->V++][1] = '\0';
        }
        tx->ids[i] = k;
    }
}

/* the token of the UTF-8 character at s (b bytes) in tx's vocabulary, or
 * TOK_UNK (the vocabulary of a file: token TOK_UNK exists) / -1 (built-in) */
int tf_text_token(const TfText *tx, const char *s, int b) {
    for (int k = tx->first; k < tx->V; k++)
        if ((int)strlen(tx->sym[k]) == b && memcmp(tx->sym[k], s, (size_t)b) == 0) return k;
    return tx->first == TOK_SPECIALS ? TOK_UNK : -1;
}

/* Give tx the vocabulary syms (V entries, the first `first` of them
 * specials), as a checkpoint stores it. */
void tf_text_set_vocab(TfText *tx, char (*syms)[5], int V, int first) {
    tx->V = V;
    tx->first = first;
    tx->sym = xmalloc(sizeof tx->sym[0] * (size_t)V);
    memcpy(tx->sym, syms, sizeof tx->sym[0] * (size_t)V);
}

/* Read the text file at path into tx: its characters (UTF-8 code points),
 * the first 90% for training, the last 10% held out. With vocab NULL the
 * vocabulary is built from the training part (attention.c's text_tokens);
 * else tx takes vocab's (a loaded model's) and a character outside it is
 * <unk>. Held-out characters outside the vocabulary are counted in
 * tx->unknown (they are <unk>). -1 with why if the file is missing, empty,
 * binary or not UTF-8. The file's bytes are freed before returning: what is
 * kept is the tokens, 4 bytes a character. */
int tf_text_read(TfText *tx, const char *path, const TfText *vocab, char *why, size_t nwhy) {
    long len;
    char msg[256];
    char *text = read_text_file(path, 1L << 30, &len, why, nwhy);
    if (!text) return -1;
    if (utf8_check(text, len, msg, sizeof msg) != 0) {
        snprintf(why, nwhy, "'%s': %s", path, msg);
        free(text);
        return -1;
    }
    Vocab v;
    text_tokens(&v, &tx->ids, &tx->n, &tx->split, text, len);
    if (vocab) tf_text_set_vocab(tx, vocab->sym, vocab->V, vocab->first);
    else {
        static const char specials[TOK_SPECIALS][5] = { "_", "^", "$", "\xEF\xBF\xBD" };
        tx->V = v.n;
        tx->first = TOK_SPECIALS;
        tx->sym = xmalloc(sizeof tx->sym[0] * (size_t)v.n);
        for (int k = 0; k < v.n; k++)               /* <unk> shows as U+FFFD */
            strcpy(tx->sym[k], k < TOK_SPECIALS ? specials[k] : v.sym[k]);
    }
    if (vocab)                                      /* the file's tokens, in vocab's ids */
        for (long at = 0, i = 0; i < tx->n; i++) {
            const int b = utf8_char_len(text + at);
            tx->ids[i] = tf_text_token(tx, text + at, b);
            at += b;
        }
    tx->unknown = 0;
    for (int i = tx->split; i < tx->n; i++) tx->unknown += tx->ids[i] == TOK_UNK;
    vocab_free(&v);
    free(text);
    return 0;
}

/* The text archs split the text by position: training windows lie wholly in
 * the first 90% of the characters, held-out windows wholly in the last 10%
 * (tf_text_batch never reads past hi), so no held-out window, nor any of its
 * characters' positions, is trained on. (A hash of each window, as encdec
 * does, would not do: overlapping windows share all but one character.) */
static int tf_text_split(const TfText *tx) { return tx->split; }

/* BERT's masking of src (S) in place: each position is chosen with
 * probability 0.15 (at least one is); a chosen token becomes [MASK] 80% of
 * the time, a random token 10%, stays 10%. y (S) = the original token at the
 * chosen positions, -1 elsewhere: the loss counts only those. A random token
 * is one of the characters, first..V-1. */
void tf_bert_mask(int *src, int *y, int S, int V, int first, Rng *r) {
    int chosen = 0;
    for (int t = 0; t < S; t++) {
        y[t] = -1;
        if (rng_uniform(r) < 0.15) {
            y[t] = src[t];
            chosen++;
            double u = rng_uniform(r);
            if (u < 0.8) src[t] = TF_MASK;
            else if (u < 0.9) src[t] = first + rng_int(r, V - first);
        }
    }
    if (!chosen) {                              /* never a batch with nothing to learn */
        int t = rng_int(r, S);
        y[t] = src[t];
        src[t] = TF_MASK;
    }
}

/* The distinct windows of S characters (and the character after each) that
 * fit in text positions [lo, hi). */
int tf_text_windows(int lo, int hi, int S) { return hi - lo - S; }

/* Windows of S characters from text positions [lo, hi): from random starts
 * (r != NULL), or (r == NULL, for held-out evaluation; mr then masks) the
 * windows first .. first + n - 1 of `total` evenly spaced ones, which are
 * distinct when total <= tf_text_windows(). GPT: y = the next character;
 * BERT: masked as above. */
void tf_text_batch(TfBatch *b, Rng *r, Rng *mr, const TfText *tx, int lo, int hi,
                   int first, int total, const TfConfig *c) {
    const int S = c->S, span = tf_text_windows(lo, hi, S) - 1;
    for (int e = 0; e < b->n; e++) {
        int start = lo + (r ? rng_int(r, span + 1)
                            : (int)((long)span * (first + e) / (total > 1 ? total - 1 : 1)));
        int *src = b->src + e * S, *y = b->y + e * S;
        for (int t = 0; t < S; t++) {
            src[t] = tx->ids[start + t];
            y[t] = tx->ids[start + t + 1];
        }
        if (c->arch == TF_ENCODER) tf_bert_mask(src, y, S, c->V, tx->first, mr ? mr : r);
    }
}

/* --data FILE, for encdec: pairs of sequences (attention.c's pairs_parse:
 * CMUdict's "word PH O NE MES" or "source<TAB>target"), the source read as
 * characters (UTF-8 code points), the target as space-separated symbols.
 * The model shares one embedding between its encoder and decoder, so the
 * two vocabularies share one id space: the four specials (TF_PAD = TOK_PAD,
 * TF_BOS = TOK_BOS; TOK_EOS ends every target; TOK_UNK), the source
 * characters, then the target symbols, each of the training split only, so
 * a dev or test token the training pairs never show is <unk>. The split is
 * data_split() of the source and the seed, so all pronunciations of a word
 * (CMUdict's "word(2)") land in the same split, and a word is scored
 * against the nearest of them. Every pair is kept whole: S is the longest
 * source, T the longest target + 1 (its </s>); nothing is cut. */
typedef struct TfPairs {
    int n;             /* pairs */
    int S, T;          /* longest source; longest target + 1 (for </s>) */
    int *src, *slen;   /* (n,S) source tokens, TF_PAD after slen[i]; (n) lengths */
    int *tgt, *tlen;   /* (n,T) target tokens then TOK_EOS, TF_PAD after; (n) lengths
                          counting the </s> */
    int *split;        /* (n) SPLIT_TRAIN / SPLIT_DEV / SPLIT_TEST */
    int nword;         /* distinct sources (words) */
    int *alt, *wstart; /* (n) pairs sorted by source; (nword+1): word w's pronunciations
                          are alt[wstart[w] .. wstart[w+1]-1] */
    int *words[3], nwords[3];  /* the words of each split, as indices w */
    int *train, ntrain, at;    /* training pairs, shuffled each epoch; the next one */
    int *pick;         /* (B) the pairs of the batch being filled */
    int tsv;           /* 1: the file is tab-separated; 0: CMUdict */
    Vocab lv, pv;      /* source characters and target symbols (each with specials) */
    int V;             /* lv.n + pv.n - TOK_SPECIALS */
    int unk_src, unk_tgt;      /* dev and test tokens not in the vocabulary: <unk> */
    int long_src, long_tgt;    /* the file lines of the longest source and target */
    double *best, best_per;    /* (3 np) the parameters, then Adam's m and v, at the
                                  best dev PER so far */
    int best_step;             /* their step, 0 before the first dev evaluation */
} TfPairs;

/* the text of token k of d's joint vocabulary */
const char *tf_pairs_sym(const TfPairs *d, int k) {
    return k < d->lv.n ? d->lv.sym[k] : d->pv.sym[k - d->lv.n + TOK_SPECIALS];
}

void tf_pairs_free(TfPairs *d) {
    free(d->src); free(d->slen); free(d->tgt); free(d->tlen); free(d->split);
    free(d->alt); free(d->wstart); free(d->train); free(d->best); free(d->pick);
    for (int s = 0; s < 3; s++) free(d->words[s]);
    vocab_free(&d->lv); vocab_free(&d->pv);
}

/* p's pairs as tokens into d (S, T already measured): the sources'
 * characters, the targets' symbols (shifted into the joint id space) then
 * </s>; dev and test tokens outside the vocabulary counted as <unk> */
static void tf_pairs_encode(TfPairs *d, const Pairs *p) {
    d->src = xmalloc(sizeof(int) * (size_t)d->n * (size_t)d->S);
    d->tgt = xmalloc(sizeof(int) * (size_t)d->n * (size_t)d->T);
    for (int i = 0; i < d->n; i++) {
        int *s = d->src + (size_t)i * d->S, *y = d->tgt + (size_t)i * d->T, unk = 0;
        for (int t = 0; t < d->S; t++) s[t] = TF_PAD;
        for (int t = 0; t < d->T; t++) y[t] = TF_PAD;
        vocab_encode_chars(&d->lv, p->src[i], s, d->S, &unk);
        d->unk_src += unk; unk = 0;
        const int n = vocab_encode_words(&d->pv, p->tgt[i], y, d->T - 1, &unk);
        d->unk_tgt += unk;
        for (int t = 0; t < n; t++) if (y[t] >= TOK_SPECIALS) y[t] += d->lv.n - TOK_SPECIALS;
        y[n] = TOK_EOS;
    }
}

/* one pair's source and its index, for sorting pairs by source */
typedef struct { const char *s; int i; } TfKey;
static int tf_key_cmp(const void *a, const void *b) {
    const TfKey *x = a, *y = b;
    const int c = strcmp(x->s, y->s);
    return c ? c : (x->i > y->i) - (x->i < y->i);
}

/* d's words: the pairs sorted by source, runs of one source being one
 * word's pronunciations, and each split's list of words */
static void tf_pairs_words(TfPairs *d, const Pairs *p) {
    TfKey *k = xmalloc(sizeof(TfKey) * (size_t)d->n);
    for (int i = 0; i < d->n; i++) { k[i].s = p->src[i]; k[i].i = i; }
    qsort(k, (size_t)d->n, sizeof *k, tf_key_cmp);
    d->alt = xmalloc(sizeof(int) * (size_t)d->n);
    d->wstart = xmalloc(sizeof(int) * (size_t)(d->n + 1));
    d->nword = 0;
    for (int j = 0; j < d->n; j++) {
        d->alt[j] = k[j].i;
        if (j == 0 || strcmp(k[j].s, k[j - 1].s) != 0) d->wstart[d->nword++] = j;
    }
    d->wstart[d->nword] = d->n;
    for (int s = 0; s < 3; s++) {
        d->words[s] = xmalloc(sizeof(int) * (size_t)d->nword);
        d->nwords[s] = 0;
    }
    for (int w = 0; w < d->nword; w++) {
        const int s = d->split[d->alt[d->wstart[w]]];
        d->words[s][d->nwords[s]++] = w;
    }
    d->train = xmalloc(sizeof(int) * (size_t)d->n);
    d->ntrain = 0;
    for (int i = 0; i < d->n; i++) if (d->split[i] == SPLIT_TRAIN) d->train[d->ntrain++] = i;
    d->at = d->ntrain;                          /* the first batch shuffles */
    free(k);
}

/* the lengths of every pair (slen, and tlen with its </s>) and the longest,
 * into d->S and d->T, with the lines they are on */
static void tf_pairs_measure(TfPairs *d, const Pairs *p) {
    d->slen = xmalloc(sizeof(int) * (size_t)d->n);
    d->tlen = xmalloc(sizeof(int) * (size_t)d->n);
    d->S = d->T = 0;
    for (int i = 0; i < d->n; i++) {
        d->slen[i] = vocab_encode_chars(&d->lv, p->src[i], NULL, 0, NULL);
        d->tlen[i] = vocab_encode_words(&d->pv, p->tgt[i], NULL, 0, NULL) + 1;
        if (d->slen[i] > d->S) { d->S = d->slen[i]; d->long_src = p->line[i]; }
        if (d->tlen[i] > d->T) { d->T = d->tlen[i]; d->long_tgt = p->line[i]; }
    }
}

/* a copy of v into *to (vocab_build keeps a sorted vocabulary as it is) */
static void tf_vocab_copy(Vocab *to, const Vocab *v) {
    vocab_build(to, (const char *const *)v->sym + TOK_SPECIALS, v->n - TOK_SPECIALS);
}

/* Read the pair file at path into d, split by seed. -1 with why (naming the
 * file, and the line where there is one) if it is missing, empty, binary,
 * not UTF-8, has a line with no target, or leaves a split empty; then
 * nothing is allocated. The file's bytes and strings are freed before
 * returning: what is kept is the tokens. With vocab not NULL (a loaded
 * model's: tf_pairs_ckpt_load) the vocabularies are vocab's, not the training split's, and a pair longer than
 * vocab->S or vocab->T, the lengths that model reads, is refused; with vocab
 * NULL it is tf_pairs_read (below). */
int tf_pairs_read_vocab(TfPairs *d, const char *path, uint64_t seed, const TfPairs *vocab,
                        char *why, size_t nwhy) {
    long len;
    char msg[256];
    memset(d, 0, sizeof *d);
    char *text = read_text_file(path, 1L << 30, &len, why, nwhy);
    if (!text) return -1;
    Pairs p;
    if (pairs_parse(&p, text, len, msg, sizeof msg) != 0) {
        snprintf(why, nwhy, "'%s': %s", path, msg);
        free(text);
        return -1;
    }
    free(text);
    d->n = p.n;
    d->tsv = p.tsv;
    d->split = xmalloc(sizeof(int) * (size_t)p.n);
    int per[3] = { 0, 0, 0 };
    for (int i = 0; i < p.n; i++) per[d->split[i] = data_split(p.src[i], seed)]++;
    if (!per[SPLIT_TRAIN] || !per[SPLIT_DEV] || !per[SPLIT_TEST]) {
        snprintf(why, nwhy, "'%s': its %d pair%s leave the %s split empty (90/5/5 by a hash "
                 "of the source and --seed): give a file with more words, or another --seed",
                 path, p.n, p.n == 1 ? "" : "s", !per[SPLIT_TRAIN] ? "training" : !per[SPLIT_DEV]
                 ? "dev" : "test");
        free(d->split); pairs_free(&p);
        return -1;
    }
    if (vocab) { tf_vocab_copy(&d->lv, &vocab->lv); tf_vocab_copy(&d->pv, &vocab->pv); }
    else pairs_vocabs(&d->lv, &d->pv, &p, d->split, SPLIT_TRAIN);
    d->V = d->lv.n + d->pv.n - TOK_SPECIALS;
    tf_pairs_measure(d, &p);
    const int Smax = vocab ? vocab->S : TF_MAX_POS, Tmax = vocab ? vocab->T : TF_MAX_POS;
    if (d->S > Smax || d->T > Tmax) {            /* refused before (n,S) is allocated */
        const int src = d->S > Smax;
        snprintf(why, nwhy, "'%s': line %d has a %s of %d %s, more than the %d %s: leave such "
                 "lines out", path, src ? d->long_src : d->long_tgt, src ? "source" : "target",
                 src ? d->S : d->T - 1, src ? "characters" : "symbols", src ? Smax : Tmax - 1,
                 vocab ? "the loaded model reads" : "positions a model of this program has");
        pairs_free(&p); tf_pairs_free(d); memset(d, 0, sizeof *d);
        return -1;
    }
    tf_pairs_encode(d, &p);
    tf_pairs_words(d, &p);
    pairs_free(&p);
    return 0;
}

int tf_pairs_read(TfPairs *d, const char *path, uint64_t seed, char *why, size_t nwhy) {
    return tf_pairs_read_vocab(d, path, seed, NULL, why, nwhy);
}

/* Example e of b from pair i of d: the source padded to c->S (smask 0 on
 * padding), the decoder reading [<s>, target] and predicting [target,
 * </s>] (tmask 0 and y -1 after). c->S >= d->S and c->T >= d->T. */
static void tf_pairs_fill(TfBatch *b, int e, const TfPairs *d, int i, const TfConfig *c) {
    const int *s = d->src + (size_t)i * d->S, *y = d->tgt + (size_t)i * d->T;
    for (int t = 0; t < c->S; t++) {
        b->src[e * c->S + t] = t < d->slen[i] ? s[t] : TF_PAD;
        b->smask[e * c->S + t] = t < d->slen[i];
    }
    for (int t = 0; t < c->T; t++) {
        const int in = t < d->tlen[i];
        b->tgt[e * c->T + t] = t == 0 ? TF_BOS : in ? y[t - 1] : TF_PAD;
        b->tmask[e * c->T + t] = (unsigned char)in;
        b->y[e * c->T + t] = in ? y[t] : -1;
    }
}

/* Run m on S source and T target positions from now on, at most the
 * lengths it was built with (its buffers hold those). Most words are far
 * shorter than the longest, and a batch padded only to its own longest
 * pair gives its real positions the same numbers as one padded to the
 * data's longest (padding is masked out of every attention and carries no
 * loss; tests.c checks it), in a fraction of the time. Every --data batch
 * sets the lengths it is packed with this way before it is filled. */
static void tf_pairs_fit(TfModel *m, int S, int T) { m->c.S = S; m->c.T = T; }

/* b->n training pairs: every training pair once an epoch, in an order r
 * shuffles anew at the start of each; m's lengths fitted to the batch */
void tf_pairs_batch(TfBatch *b, Rng *r, TfPairs *d, TfModel *m) {
    int S = 1, T = 1;
    if (!d->pick) d->pick = xmalloc(sizeof(int) * (size_t)m->c.B);
    for (int e = 0; e < b->n; e++) {
        if (d->at == d->ntrain) {                   /* a new epoch: Fisher-Yates */
            for (int k = d->ntrain - 1; k > 0; k--) {
                const int j = rng_int(r, k + 1), x = d->train[k];
                d->train[k] = d->train[j]; d->train[j] = x;
            }
            d->at = 0;
        }
        const int i = d->pick[e] = d->train[d->at++];
        if (d->slen[i] > S) S = d->slen[i];
        if (d->tlen[i] > T) T = d->tlen[i];
    }
    tf_pairs_fit(m, S, T);
    for (int e = 0; e < b->n; e++) tf_pairs_fill(b, e, d, d->pick[e], &m->c);
}

/* ========================================================================
 * 13. training and held-out evaluation
 * ======================================================================== */

/* which held-out draw tf_evaluate makes */
enum { TF_EVAL_WATCHED, TF_EVAL_FRESH };

typedef struct {
    double loss;       /* mean held-out loss (teacher forcing) */
    double tok_acc;    /* encdec: greedy tokens; BERT: masked tokens; GPT: next char */
    double seq_acc;    /* encdec: exact sequences under greedy decoding */
} TfEval;

/* correct argmax predictions (and their number, *count) over y >= 0 */
static int tf_correct(const TfModel *m, const TfBatch *b, int *count) {
    const int V = m->c.V, rows = b->n * tf_out_len(&m->c);
    int ok = 0;
    *count = 0;
    for (int i = 0; i < rows; i++) {
        if (b->y[i] < 0) continue;
        const double *l = m->a.logits + i * V;
        int best = argmax(l, V);
        ok += best == b->y[i];
        (*count)++;
    }
    return ok;
}

/* The held-out examples an evaluation uses: n_eval, but for the text archs
 * at most the distinct windows of the held-out text (more would repeat). */
int tf_eval_count(const TfConfig *c, const TfRun *run, const TfText *tx) {
    if (c->arch == TF_ENCDEC) return run->n_eval;
    int w = tf_text_windows(tf_text_split(tx), tx->n, c->S);
    return w < 1 ? 0 : run->n_eval < w ? run->n_eval : w;
}

/* Held-out evaluation: encdec draws n_eval task examples whose sources are
 * in the held-out split (tf_task_batch, TF_HELDOUT_SPLIT: never trained on) and
 * decodes them greedily; BERT and GPT read evenly spaced, distinct windows
 * of the held-out last tenth of the text (tf_eval_count of them).
 * TF_EVAL_WATCHED: the draw tf_train watches (and stops on); TF_EVAL_FRESH: another
 * stream of the same held-out split (other sources, other BERT masks; GPT's
 * windows have nothing random and are the same), for a final figure that
 * early stopping has not selected on. */
TfEval tf_evaluate(TfModel *m, const TfRun *run, const TfText *tx, int draw) {
    const TfConfig *c = &m->c;
    TfBatch b;
    tf_batch_alloc(&b, c);
    Rng r, mr;
    const int fresh = draw == TF_EVAL_FRESH;
    rng_seed(&r, run->seed ^ (fresh ? 0xF4E5B0A7ull : 0x5EEDF00Dull));   /* held-out streams */
    rng_seed(&mr, run->seed ^ (fresh ? 0x7C1Dull : 0x3A5Cull));
    int *pred = xmalloc(sizeof(int) * (size_t)(c->B * tf_out_len(c)));
    const int n_eval = tf_eval_count(c, run, tx);
    double loss = 0.0;
    int tok_ok = 0, toks = 0, seq_ok = 0, seqs = 0, batches = 0;
    for (int done = 0; done < n_eval; done += b.n) {
        b.n = n_eval - done < c->B ? n_eval - done : c->B;
        if (c->arch == TF_ENCDEC) {
            tf_task_batch(&b, &r, run->task, c, TF_HELDOUT_SPLIT);
            loss += tf_forward(m, &b);
            tf_greedy_decode(m, &b, pred);
            for (int e = 0; e < b.n; e++) {
                int all = 1;
                for (int t = 0; t < c->T; t++) {
                    int ok = pred[e * c->T + t] == b.y[e * c->T + t];
                    tok_ok += ok; all &= ok;
                }
                toks += c->T; seq_ok += all; seqs++;
            }
        } else {
            tf_text_batch(&b, NULL, &mr, tx, tf_text_split(tx), tx->n, done, n_eval, c);
            loss += tf_forward(m, &b);
            int cnt;
            tok_ok += tf_correct(m, &b, &cnt);
            toks += cnt;
        }
        batches++;
    }
    TfEval ev;
    ev.loss = batches ? loss / batches : 0.0;
    ev.tok_acc = toks ? (double)tok_ok / toks : 0.0;
    ev.seq_acc = seqs ? (double)seq_ok / seqs : 0.0;
    free(pred);
    tf_batch_free(&b);
    return ev;
}

/* A text file's whole held-out part, tiled into consecutive windows of S
 * characters (the last, partial window left out): GPT predicts every
 * held-out character after the first once; BERT masks at its rate with a
 * fixed stream. Nothing is random but BERT's masks, so the figure is exact,
 * not an estimate. Returns the loss averaged over every counted target (not
 * over batches) and the accuracy; *windows receives how many windows. */
TfEval tf_evaluate_all(TfModel *m, const TfRun *run, const TfText *tx, int *windows) {
    const TfConfig *c = &m->c;
    const int lo = tf_text_split(tx), S = c->S, n = (tx->n - lo - 1) / S;
    TfBatch b;
    tf_batch_alloc(&b, c);
    Rng mr;
    rng_seed(&mr, run->seed ^ 0x7C1Dull);
    double loss = 0.0;
    long count = 0, ok = 0;
    for (int done = 0; done < n; done += b.n) {
        b.n = n - done < c->B ? n - done : c->B;
        for (int e = 0; e < b.n; e++) {
            const int start = lo + (done + e) * S;
            int *src = b.src + e * S, *y = b.y + e * S;
            for (int t = 0; t < S; t++) { src[t] = tx->ids[start + t]; y[t] = tx->ids[start + t + 1]; }
            if (c->arch == TF_ENCODER) tf_bert_mask(src, y, S, c->V, tx->first, &mr);
        }
        loss += tf_forward(m, &b) * m->count;
        count += m->count;
        int cnt;
        ok += tf_correct(m, &b, &cnt);
    }
    TfEval ev = { count ? loss / count : 0.0, count ? (double)ok / count : 0.0, 0.0 };
    *windows = n;
    tf_batch_free(&b);
    return ev;
}

/* The length of a greedy prediction (T tokens): up to its first </s> */
static int tf_pred_len(const int *out, int T) {
    int n = 0;
    while (n < T && out[n] != TOK_EOS) n++;
    return n;
}

/* Greedy decoding of b's n sources (packed at m's source length S) into
 * out (n,Tmax), as tf_greedy_decode does, but in less time: step t runs the
 * decoder on its first t+1 positions only (causal: the later ones are never
 * read, so the numbers are the same; tests.c checks it), and it stops once
 * every example has written </s> (out is then unset after each one's </s>).
 * b->tgt and b->tmask are overwritten; m's target length is left at the
 * last step's. */
void tf_pairs_decode(TfModel *m, TfBatch *b, int Tmax, int *out) {
    const int S = m->c.S, V = m->c.V;
    tf_encode(m, b);
    for (int t = 0, done = 0; t < Tmax && !done; t++) {
        tf_pairs_fit(m, S, t + 1);
        for (int e = 0; e < b->n; e++)
            for (int k = 0; k <= t; k++) {
                b->tgt[e * (t + 1) + k] = k ? out[e * Tmax + k - 1] : TF_BOS;
                b->tmask[e * (t + 1) + k] = 1;
            }
        tf_head_forward(m, tf_decode(m, b), NULL, b->n);
        done = 1;
        for (int e = 0; e < b->n; e++) {
            out[e * Tmax + t] = argmax(m->a.logits + (e * (t + 1) + t) * V, V);
            done &= tf_pred_len(out + e * Tmax, t + 1) <= t;
        }
    }
}

/* One step of a selection sort over the nc candidate scores cand, in the
 * order cidx: move the i-th best (ties: the lower index) to cidx[i] and
 * return it (as seq2seq.c's beam search does). */
static int tf_beam_pick(int *cidx, const double *cand, int i, int nc) {
    int bi = i;
    for (int j = i + 1; j < nc; j++) {
        const int x = cidx[j], y = cidx[bi];
        if (cand[x] > cand[y] || (cand[x] == cand[y] && x < y)) bi = j;
    }
    const int id = cidx[bi];
    cidx[bi] = cidx[i]; cidx[i] = id;
    return id;
}

/* Beam search with K beams (K <= m->c.B) for ONE source src (slen tokens):
 * the K hypotheses are K rows of b; at step t the decoder reads each one's
 * [<s>, its t tokens] (as tf_pairs_decode does, so K = 1 is greedy) and
 * every hypothesis + one token is scored by its summed log-probability; the
 * K best go on, one ending in </s> (or at Tmax) is finished, and the search
 * stops once no live hypothesis can beat the best finished one (scores only
 * fall). The best goes to out (Tmax); returns its length before </s> (Tmax
 * if it never wrote one). m's lengths are left at the last step's. */
int tf_pairs_beam(TfModel *m, TfBatch *b, const int *src, int slen, int K, int Tmax, int *out) {
    const int V = m->c.V;
    int *const ib = xmalloc(sizeof(int) * (size_t)(2 * K * Tmax + K * V));   /* one block */
    int *hist = ib, *nhist = ib + K * Tmax, *cidx = ib + 2 * K * Tmax, nk = 1, bestlen = 0;
    double *const db = xmalloc(sizeof(double) * (size_t)(2 * K + K * V));
    double *score = db, *nscore = db + K, *cand = db + 2 * K, best = -INFINITY;
    tf_pairs_fit(m, slen, 1);
    b->n = K;
    for (int e = 0; e < K; e++)
        for (int t = 0; t < slen; t++) { b->src[e * slen + t] = src[t]; b->smask[e * slen + t] = 1; }
    tf_encode(m, b);
    score[0] = 0.0;
    for (int t = 0; t < Tmax; t++) {
        tf_pairs_fit(m, slen, t + 1);
        for (int e = 0; e < K; e++)               /* rows past the nk live ones repeat 0 */
            for (int k = 0; k <= t; k++) {
                b->tgt[e * (t + 1) + k] = k ? hist[(e < nk ? e : 0) * Tmax + k - 1] : TF_BOS;
                b->tmask[e * (t + 1) + k] = 1;
            }
        tf_head_forward(m, tf_decode(m, b), NULL, K);
        for (int e = 0; e < nk; e++) {            /* score + log P(v | hypothesis e) */
            log_softmax_forward(cand + e * V, m->a.logits + (e * (t + 1) + t) * V, V);
            for (int v = 0; v < V; v++) cand[e * V + v] += score[e];
        }
        const int nc = nk * V;
        int nn = 0;
        for (int i = 0; i < nc; i++) cidx[i] = i;
        for (int i = 0; i < nc && nn < K; i++) {  /* the candidates, best first */
            const int id = tf_beam_pick(cidx, cand, i, nc), e = id / V, v = id % V;
            if (v == TOK_EOS || t == Tmax - 1) {  /* a finished hypothesis */
                if (cand[id] > best) {
                    best = cand[id];
                    bestlen = v == TOK_EOS ? t : Tmax;
                    memcpy(out, hist + e * Tmax, sizeof(int) * (size_t)t);
                    out[t] = v;
                }
                if (t == Tmax - 1) break;         /* sorted: the rest are worse */
                continue;
            }
            memcpy(nhist + nn * Tmax, hist + e * Tmax, sizeof(int) * (size_t)t);
            nhist[nn * Tmax + t] = v;
            nscore[nn++] = cand[id];
        }
        int *ti = hist; hist = nhist; nhist = ti;
        double *ts = score; score = nscore; nscore = ts;
        nk = nn;
        if (nn == 0 || best >= score[0]) break;  /* nothing alive can win */
    }
    free(ib); free(db);
    return bestlen;
}

/* --data --beam K: beam search (tf_pairs_beam) of every word of split
 * `split` of d, one at a time, scored into *er against the nearest of its
 * pronunciations as tf_pairs_evaluate scores greedy decoding */
void tf_pairs_evaluate_beam(TfModel *m, const TfPairs *d, int split, int K, ErrorRate *er) {
    tf_pairs_fit(m, d->S, d->T);
    TfBatch b;
    tf_batch_alloc(&b, &m->c);
    int *out = xmalloc(sizeof(int) * (size_t)d->T), *work = xmalloc(sizeof(int) *
                       (size_t)(d->T + 1));
    const int **refs = xmalloc(sizeof(int *) * (size_t)d->n);
    int *lens = xmalloc(sizeof(int) * (size_t)d->n);
    memset(er, 0, sizeof *er);
    for (int k = 0; k < d->nwords[split]; k++) {
        const int w = d->words[split][k], i = d->alt[d->wstart[w]];
        const int len = tf_pairs_beam(m, &b, d->src + (size_t)i * d->S, d->slen[i], K, d->T, out);
        int nref = 0;
        for (int j = d->wstart[w]; j < d->wstart[w + 1]; j++, nref++) {
            refs[nref] = d->tgt + (size_t)d->alt[j] * d->T;
            lens[nref] = d->tlen[d->alt[j]] - 1;
        }
        error_rate_add(er, out, len, refs, lens, nref, work);
    }
    free(out); free(work); free(refs); free(lens);
    tf_batch_free(&b);
    tf_pairs_fit(m, d->S, d->T);
}

/* --data: greedy decoding of the words of split `split` of d (at most
 * `most`, evenly spaced through the sorted words; 0 = all of them), each
 * once, scored into *er (attention.c's error_rate_add) against the nearest
 * of its pronunciations. The loss is teacher-forced against the word's
 * first pronunciation. TfEval: loss, tok_acc = 1 - PER, seq_acc = 1 - WER. */
TfEval tf_pairs_evaluate(TfModel *m, const TfPairs *d, int split, int most, ErrorRate *er) {
    const TfConfig *c = &m->c;
    const int all = d->nwords[split], n = most && most < all ? most : all;
    tf_pairs_fit(m, d->S, d->T);                /* the buffers below hold any batch */
    TfBatch b;
    tf_batch_alloc(&b, c);
    int *out = xmalloc(sizeof(int) * (size_t)(c->B * c->T)), *work = xmalloc(sizeof(int) *
                       (size_t)(c->T + 1)), *w = xmalloc(sizeof(int) * (size_t)c->B);
    const int **refs = xmalloc(sizeof(int *) * (size_t)d->n);
    int *lens = xmalloc(sizeof(int) * (size_t)d->n);
    double loss = 0.0;
    int batches = 0;
    memset(er, 0, sizeof *er);
    for (int done = 0; done < n; done += b.n) {
        b.n = n - done < c->B ? n - done : c->B;
        int S = 1;
        for (int e = 0; e < b.n; e++) {
            w[e] = d->words[split][(int)((long)(done + e) * all / n)];
            const int i = d->alt[d->wstart[w[e]]];
            if (d->slen[i] > S) S = d->slen[i];
        }
        tf_pairs_fit(m, S, d->T);                /* the loss: the whole first pronunciation */
        for (int e = 0; e < b.n; e++) tf_pairs_fill(&b, e, d, d->alt[d->wstart[w[e]]], c);
        loss += tf_forward(m, &b);
        batches++;
        tf_pairs_decode(m, &b, d->T, out);
        for (int e = 0; e < b.n; e++) {
            int nref = 0;
            for (int j = d->wstart[w[e]]; j < d->wstart[w[e] + 1]; j++, nref++) {
                refs[nref] = d->tgt + (size_t)d->alt[j] * d->T;
                lens[nref] = d->tlen[d->alt[j]] - 1;     /* without its </s> */
            }
            error_rate_add(er, out + e * d->T, tf_pred_len(out + e * d->T, d->T), refs, lens,
                           nref, work);
        }
    }
    TfEval ev = { batches ? loss / batches : 0.0, 1.0 - error_rate_per(er),
                  1.0 - error_rate_wer(er) };
    free(out); free(work); free(w); free(refs); free(lens);
    tf_batch_free(&b);
    tf_pairs_fit(m, d->S, d->T);                /* as after any evaluation: the longest */
    return ev;
}

/* What a run records as it trains, when its TfRun points here (run->watch):
 * the curves of --svg's <...>-curve.svg, one point per held-out evaluation
 * (recording prints nothing), and an experiment's progress line on stderr
 * (prog, at most every few seconds, with `detail`, e.g. "--pos learned"). */
typedef struct TfWatch {
    Curve train;       /* mean training loss since the last evaluation */
    Curve loss;        /* held-out (validation, dev) loss */
    Curve m1, m2;      /* token and exact-sequence accuracy; --data: dev PER, WER (%) */
    Progress *prog;    /* NULL: no progress line from here */
    const char *detail;
} TfWatch;

void tf_watch_free(TfWatch *w) {
    curve_free(&w->train); curve_free(&w->loss); curve_free(&w->m1); curve_free(&w->m2);
}

/* the points of one held-out evaluation, if run->watch records them */
static void tf_watch_eval(const TfRun *run, int step, double train_loss, const TfEval *ev,
                          double m1, double m2) {
    TfWatch *w = run->watch;
    if (!w) return;
    curve_add(&w->train, step, train_loss);
    curve_add(&w->loss, step, ev->loss);
    curve_add(&w->m1, step, m1);
    curve_add(&w->m2, step, m2);
}

/* keep m's state (parameters, Adam's m and v) in d->best as the best so
 * far: step `step`, dev PER per */
static void tf_pairs_keep(TfPairs *d, const TfModel *m, int step, double per) {
    if (!d->best) d->best = xcalloc_doubles(3 * m->np);
    state_pack(d->best, m->params, m->adam_m, m->adam_v, m->np);
    d->best_per = per;
    d->best_step = step;
}

/* put back the state d->best kept (tf_pairs_keep), at its step */
void tf_pairs_restore(TfModel *m, const TfPairs *d) {
    if (!d->best) return;
    state_unpack(d->best, m->params, m->adam_m, m->adam_v, m->np);
    m->step = d->best_step;
}

/* --data: the dev evaluation tf_train makes at `step` (run->n_eval dev
 * words, the same each time): its line on log, its CSV row (step, train
 * loss, dev loss, dev PER, dev WER, lr, seconds), and, if its PER is the
 * best so far, a copy of the model's state (model selection on dev only) */
static TfEval tf_pairs_train_eval(TfModel *m, const TfRun *run, FILE *log, FILE *csv,
                                  int step, double train_loss, double wall) {
    TfPairs *d = run->data;
    ErrorRate er;
    const TfEval ev = tf_pairs_evaluate(m, d, SPLIT_DEV, run->n_eval, &er);
    const double per = error_rate_per(&er), wer = error_rate_wer(&er);
    const int best = !d->best_step || per < d->best_per;
    if (best) tf_pairs_keep(d, m, step, per);
    if (log)
        fprintf(log, "step %5d  dev (%d words): loss %.4f  PER %.2f%%  WER %.2f%%%s\n", step,
                er.words, ev.loss, 100.0 * per, 100.0 * wer, best ? "  (best so far)" : "");
    if (csv) fprintf(csv, "%d,%.6f,%.6f,%.6f,%.6f,%.6e,%.0f\n", step, train_loss, ev.loss,
                     per, wer, tf_run_lr(run, m->step, m->c.D), wall);
    tf_watch_eval(run, step, train_loss, &ev, 100.0 * per, 100.0 * wer);
    return ev;
}

/* The progress line on stderr after `step` of run->steps (this run began
 * after step `first`): the loss since the last line, tokens per second
 * (over `busy` seconds of batches and steps), the wall time so far and an
 * estimate of what is left (to the last step,
 * or to the --minutes budget if that comes first). At most 79 columns: the
 * tokens per second go first if the numbers grow too wide. */
static void tf_progress(const TfRun *run, int first, int step, double loss, double tokens,
                        double busy, double wall) {
    char el[32], left[32], rate[40], line[160];
    double rest = wall / (step - first) * (run->steps - step);
    if (run->minutes > 0.0 && run->minutes * 60.0 - wall < rest) rest = run->minutes * 60.0 - wall;
    snprintf(rate, sizeof rate, ", %.0f tokens/s", busy > 0.0 ? tokens / busy : 0.0);
    for (int pass = 0; pass < 2; pass++) {
        snprintf(line, sizeof line, "  step %d/%d: loss %.4f%s, %s elapsed, about %s left", step,
                 run->steps, loss, pass ? "" : rate, duration_text(el, sizeof el, wall),
                 duration_text(left, sizeof left, rest > 0 ? rest : 0));
        if (strlen(line) <= 79) break;
    }
    fprintf(stderr, "%s\n", line);
}

/* The held-out evaluation tf_train makes at `step` (the watched draw): its
 * line on log and its row in csv (each if not NULL), with the mean training
 * loss since the last row and the wall seconds so far. */
static TfEval tf_train_eval(TfModel *m, const TfRun *run, const TfText *tx, FILE *log,
                            FILE *csv, int step, double train_loss, double wall) {
    if (run->data) return tf_pairs_train_eval(m, run, log, csv, step, train_loss, wall);
    const TfEval ev = tf_evaluate(m, run, tx, TF_EVAL_WATCHED);
    const int encdec = m->c.arch == TF_ENCDEC;
    if (log)
        fprintf(log, "step %5d  held-out: loss %.4f  token acc %.4f%s", step, ev.loss,
                ev.tok_acc, encdec ? "" : "\n");
    if (log && encdec) fprintf(log, "  exact-sequence acc %.4f\n", ev.seq_acc);
    if (csv) fprintf(csv, "%d,%.6f,%.6f,%.6f,%.6e,%.0f\n", step, train_loss, ev.loss,
                     ev.tok_acc, tf_run_lr(run, m->step, m->c.D), wall);
    tf_watch_eval(run, step, train_loss, &ev, ev.tok_acc, ev.seq_acc);
    return ev;
}

/* one training batch into b from r: --data's pairs, the task's, or
 * training windows of tx */
static void tf_train_batch(TfBatch *b, Rng *r, TfModel *m, const TfRun *run, const TfText *tx) {
    if (run->data) tf_pairs_batch(b, r, run->data, m);
    else if (m->c.arch == TF_ENCDEC) tf_task_batch(b, r, run->task, &m->c, TF_TRAIN_SPLIT);
    else tf_text_batch(b, r, NULL, tx, 0, tf_text_split(tx), 0, 0, &m->c);
}

/* Training on from a model that has taken m->step steps (a checkpoint's):
 * the batches of those steps are drawn again from r and dropped, so that
 * step m->step + 1 gets the batch it would have had in one run, and with
 * the schedule a function of the step, k steps, saved, loaded and trained
 * on to n are n steps straight, bit for bit (tests.c checks it). (Storing
 * r in the checkpoint would not do alone: --data's shuffled order of the
 * training pairs is state too; drawing again costs a fraction of a step
 * each.) --data: the loaded model's dev PER is the one to beat, and its
 * state the one kept until a step beats it, as in the run that saved it. */
static void tf_train_resume(TfModel *m, const TfRun *run, const TfText *tx, TfBatch *b,
                            Rng *r, FILE *log) {
    for (int s = 0; s < m->step; s++) tf_train_batch(b, r, m, run, tx);
    if (!run->data || m->step == 0) return;
    ErrorRate er;
    const TfEval ev = tf_pairs_evaluate(m, run->data, SPLIT_DEV, run->n_eval, &er);
    tf_pairs_keep(run->data, m, m->step, error_rate_per(&er));
    if (log)
        fprintf(log, "step %5d  dev (%d words): loss %.4f  PER %.2f%%  WER %.2f%%  (loaded)\n",
                m->step, er.words, ev.loss, 100.0 * error_rate_per(&er),
                100.0 * error_rate_wer(&er));
}

/* Train from step m->step + 1 (0 for a new model; a loaded one trains on:
 * tf_train_resume) up to step run->steps; progress lines (step, loss, training
 * accuracy, learning rate) to `log` when it is not NULL, and with them, on
 * stderr, tokens per second (tokens over the seconds spent drawing batches
 * and in training steps since the last line; held-out evaluations are not
 * counted), the wall time and the time left. Every held-out evaluation adds
 * a row to the CSV file csv if it is not NULL: step, train loss (mean since
 * the last row), held-out loss and token accuracy, learning rate, elapsed
 * wall seconds. encdec stops early once held-out exact-sequence accuracy is
 * 100% on the draw tf_evaluate(.., TF_EVAL_WATCHED) makes, every arch once
 * run->minutes of wall time have passed (the step in progress is finished),
 * and at a diverged step (m->diverged: tf_stop_if_diverged, or an
 * experiment's "diverged" row). Returns the model's step count after (the
 * steps taken, a loaded model's included); *ev receives the last held-out
 * evaluation (callers report a fresh draw). */
int tf_train(TfModel *m, const TfRun *run, const TfText *tx, FILE *log, FILE *csv, TfEval *ev) {
    const TfConfig *c = &m->c;
    TfBatch b;
    tf_batch_alloc(&b, c);
    Rng r;
    rng_seed(&r, run->seed);                    /* the training stream */
    double loss_sum = 0.0, busy = 0.0, csv_sum = 0.0;  /* busy: seconds in steps only */
    int ok_sum = 0, cnt_sum = 0, since = 0, csv_since = 0, step;
    tf_train_resume(m, run, tx, &b, &r, log);
    const int first = m->step;
    const time_t start = time(NULL);
    ev->loss = ev->tok_acc = ev->seq_acc = 0.0;
    for (step = first + 1; step <= run->steps; step++) {
        double t0 = seconds();                  /* time the batch and the step, not the
                                                   held-out evaluations below */
        tf_train_batch(&b, &r, m, run, tx);
        const double loss = tf_train_step(m, &b, run);
        loss_sum += loss; csv_sum += loss; csv_since++;
        busy += seconds() - t0;
        if (m->diverged) break;                 /* the caller says so */
        const int left = run->steps - first;
        if (step == first + 1 && !(run->minutes > 0.0 && run->minutes * 60.0 < busy * left))
            warn_if_long("training step(s)", 1, left, busy,   /* not within --minutes */
                         "fewer --steps, or a smaller model,");
        if (run->watch && run->watch->prog)
            progress_step(run->watch->prog, step, run->watch->detail);
        int cnt;
        ok_sum += tf_correct(m, &b, &cnt);      /* logits from before the update */
        cnt_sum += cnt;
        since++;
        const double wall = wall_since(start);
        const int out_of_time = run->minutes > 0.0 && wall >= run->minutes * 60.0;
        const int last = step == run->steps || out_of_time;
        if (log && run->log_every && (step % run->log_every == 0 || last)) {
            fprintf(log, "step %5d  loss %.4f  train acc %.3f  lr %.2e\n", step,
                    loss_sum / since, cnt_sum ? (double)ok_sum / cnt_sum : 0.0,
                    tf_run_lr(run, m->step, c->D));
            tf_progress(run, first, step, loss_sum / since, (double)since * b.n * (c->S + c->T),
                        busy, wall);
            loss_sum = busy = 0.0; ok_sum = cnt_sum = since = 0;
        }
        if ((run->eval_every && step % run->eval_every == 0) || last) {
            *ev = tf_train_eval(m, run, tx, log, csv, step, csv_sum / csv_since,
                                wall_since(start));
            csv_sum = 0.0; csv_since = 0;
            if (c->arch == TF_ENCDEC && ev->seq_acc == 1.0) break;
        }
        if (out_of_time && step < run->steps) {
            fprintf(stderr, "  --minutes %g: the time is up after step %d of %d\n", run->minutes,
                    step, run->steps);
            break;
        }
    }
    tf_batch_free(&b);
    return m->step;
}

/* ========================================================================
 * 13b. keeping a model: the checkpoint file
 *
 * --save writes, and --load reads, attention.c's checkpoint (section 10:
 * magic "ATTNCKPT", version, the tag "TFM1", a description, the doubles,
 * a checksum; written whole under NAME.partial and renamed). The
 * description, all little-endian u32 unless marked:
 *     arch norm pos act V D H F n_enc n_dec S T B     the TfConfig
 *     f64 smoothing, u32 step (Adam steps taken), u32 first
 *     encdec only: u32 nsrc (the specials + the source characters)
 *     V strings (u32 length, bytes): each token's text, sym[0..V-1]
 *     description version 2 on (TF_CKPT_RUN): u32 2, then the training
 *     options of the run that saved it, for training on (--load with
 *     --steps or --minutes): u32 steps (the total it was given), u32
 *     warmup, f64 lr_factor, u32 n_eval, u32 eval_every, u32 seed,
 *     f64 beta2, u32 sched, f64 lr, f64 lr_min, f64 wd, f64 clip
 * and the doubles are the parameters, then Adam's m, then Adam's v (3 np),
 * so that a loaded model predicts, and takes its next step, bit for bit as
 * the saved one would. A text arch's vocabulary (--arch encoder, decoder) is
 * its text's characters; an encdec model (trained with --data) keeps its
 * joint vocabulary: the four specials, the nsrc - 4 source characters, then
 * the target symbols, each part sorted, as tf_pairs_read builds it; its S
 * and T are the longest source and target + </s> it reads. An encdec model
 * is saved as it was at its best dev PER: that step's parameters, Adam
 * state and step count. A version-1 description (no training section;
 * files written before it existed) still loads; training on from one uses
 * the command line's options, and a version-1 encdec file holds the best
 * step's parameters with the last step's Adam state and count.
 * ======================================================================== */

#define TF_CKPT_TAG "TFM1"
enum { TF_CKPT_RUN = 2 };   /* the description version that keeps the training options */

/* the training section of a description (version TF_CKPT_RUN) from run */
static void tf_ckpt_put_run(Bytes *d, const TfRun *run) {
    bytes_put_u32(d, TF_CKPT_RUN);
    bytes_put_u32(d, (uint32_t)run->steps);
    bytes_put_u32(d, (uint32_t)run->warmup);
    bytes_put_f64(d, run->lr_factor);
    bytes_put_u32(d, (uint32_t)run->n_eval);
    bytes_put_u32(d, (uint32_t)run->eval_every);
    bytes_put_u32(d, (uint32_t)run->seed);
    bytes_put_f64(d, run->beta2);
    bytes_put_u32(d, (uint32_t)run->sched);
    const double x[] = { run->lr, run->lr_min, run->wd, run->clip };
    for (int k = 0; k < 4; k++) bytes_put_f64(d, x[k]);
}

/* The training section tf_ckpt_put_run wrote, from r into the fields of
 * run it sets (the rest of run is left as it was); NULL, or what is wrong */
static const char *tf_ckpt_get_run(Reader *r, TfRun *run) {
    if (reader_u32(r) != TF_CKPT_RUN) return "its description holds an unknown version";
    const uint32_t steps = reader_u32(r), warmup = reader_u32(r);
    const double lr_factor = reader_f64(r);
    const uint32_t n_eval = reader_u32(r), every = reader_u32(r), seed = reader_u32(r);
    const double beta2 = reader_f64(r);
    const uint32_t sched = reader_u32(r);
    const double lr = reader_f64(r), lr_min = reader_f64(r), wd = reader_f64(r),
                 clip = reader_f64(r);
    if (!r->ok) return "its training options are cut short";
    if (steps < 1 || steps > 1000000 || warmup < 1 || warmup > 1000000 ||
        n_eval > 100000 || every > 1000000 || seed > 2147483647u ||
        sched > TF_SCHED_COSINE || !(lr_factor > 0 && lr_factor <= 100) ||
        !(beta2 >= 0 && beta2 < 1) || !(lr >= 0 && lr <= 10) || !(lr_min >= 0 &&
        lr_min <= 10) || !(wd >= 0 && wd <= 1) || !(clip >= 0 && clip <= 1e6))
        return "its training options hold values no run of this program has";
    *run = (TfRun){ run->task, (int)steps, (int)warmup, lr_factor, (int)n_eval, (int)every,
                    run->log_every, seed, beta2, (int)sched, lr, lr_min, wd, clip,
                    run->minutes, run->data, run->watch };
    return NULL;
}

/* write m with its vocabulary, V strings sym (the first `first` specials;
 * encdec: the first nsrc of them the source's), and run's training options
 * (run NULL: a version-1 description, without them), to path */
static void tf_ckpt_put(const char *path, const TfModel *m, const TfRun *run, int first,
                        int nsrc, const char *const *sym) {
    const TfConfig *c = &m->c;
    Bytes d = { NULL, 0, 0 };
    const int f[] = { c->arch, c->norm, c->pos, c->act, c->V, c->D, c->H, c->F, c->n_enc,
                      c->n_dec, c->S, c->T, c->B };
    for (size_t k = 0; k < sizeof f / sizeof f[0]; k++) bytes_put_u32(&d, (uint32_t)f[k]);
    bytes_put_f64(&d, c->smoothing);
    bytes_put_u32(&d, (uint32_t)m->step);
    bytes_put_u32(&d, (uint32_t)first);
    if (c->arch == TF_ENCDEC) bytes_put_u32(&d, (uint32_t)nsrc);
    for (int k = 0; k < c->V; k++) bytes_put_str(&d, sym[k]);
    if (run) tf_ckpt_put_run(&d, run);
    double *all = xmalloc(sizeof(double) * 3 * (size_t)m->np);
    state_pack(all, m->params, m->adam_m, m->adam_v, m->np);
    ckpt_write(path, TF_CKPT_TAG, &d, all, 3 * m->np);
    free(all);
    free(d.b);
}

/* write m (a text arch, with tx's vocabulary, trained by run: NULL writes
 * version 1) to path; exits 1 if it cannot be written, leaving path as it
 * was */
void tf_ckpt_save(const char *path, const TfModel *m, const TfText *tx, const TfRun *run) {
    const char **sym = xmalloc(sizeof(char *) * (size_t)m->c.V);
    for (int k = 0; k < m->c.V; k++) sym[k] = tx->sym[k];
    tf_ckpt_put(path, m, run, tx->first, 0, sym);
    free(sym);
}

/* write m (encdec, trained on --data d by run: d's joint vocabulary) to
 * path; m's config must be the one it was built with (not fitted to a
 * batch) */
void tf_pairs_ckpt_save(const char *path, const TfModel *m, const TfPairs *d,
                        const TfRun *run) {
    const char **sym = xmalloc(sizeof(char *) * (size_t)d->V);
    for (int k = 0; k < d->V; k++) sym[k] = tf_pairs_sym(d, k);
    tf_ckpt_put(path, m, run, TOK_SPECIALS, d->lv.n, sym);
    free(sym);
}

/* The config, step, first and (encdec) nsrc a description holds, r then at
 * its vocabulary; NULL, or what is wrong */
static const char *tf_ckpt_head(Reader *r, TfConfig *c, int *step, int *first, int *nsrc) {
    uint32_t f[13];
    for (int k = 0; k < 13; k++) f[k] = reader_u32(r);
    *c = (TfConfig){ (int)f[0], (int)f[1], (int)f[2], (int)f[3], (int)f[4], (int)f[5],
                     (int)f[6], (int)f[7], (int)f[8], (int)f[9], (int)f[10], (int)f[11],
                     (int)f[12], reader_f64(r) };
    *step = (int)reader_u32(r);
    *first = (int)reader_u32(r);
    *nsrc = f[0] == TF_ENCDEC ? (int)reader_u32(r) : 0;
    if (!r->ok) return "its description is cut short";
    if (f[0] > TF_DECODER || f[1] > TF_PRE || f[2] > TF_POS_NONE || f[3] > TF_GELU ||
        f[4] > 1u << 20 || f[5] > 4096 || f[6] > 4096 || f[7] > 1u << 16 || f[8] > 64 ||
        f[9] > 64 || f[10] > TF_MAX_POS || f[11] > TF_MAX_POS || f[12] > 1u << 16 ||
        f[12] == 0 || *step < 0 || (*first != 1 && *first != TOK_SPECIALS) ||
        (int)f[4] <= *first || (f[0] == TF_ENCDEC && (*first != TOK_SPECIALS ||
        *nsrc <= TOK_SPECIALS || *nsrc >= (int)f[4])))
        return "its description holds values no model of this program has";
    return tf_config_error(c);
}

/* The V strings of a text model's vocabulary from r into syms (a new block
 * the caller frees), each one character (but the first `first`); NULL, or
 * what is wrong (nothing allocated then) */
static const char *tf_ckpt_text_vocab(Reader *r, int V, int first, char (**syms)[5]) {
    const char *err = NULL;
    *syms = xmalloc(5 * (size_t)V);
    for (int k = 0; k < V && !err; k++) {
        char *s = reader_str(r, 4);
        if (!s || (utf8_char_len(s) != (int)strlen(s) && k >= first))
            err = "its vocabulary is not one character per token";
        else strcpy((*syms)[k], s);
        free(s);
    }
    if (err) free(*syms);
    return err;
}

/* The V strings of an encdec model's joint vocabulary from r into d->lv
 * (the specials and nsrc - 4 source characters) and d->pv (the specials and
 * the target symbols), each sorted as tf_pairs_read makes them, and d->V;
 * NULL, or what is wrong (nothing allocated then) */
static const char *tf_ckpt_pairs_vocab(Reader *r, int V, int nsrc, TfPairs *d) {
    char **s = xmalloc(sizeof(char *) * (size_t)V);
    memset(s, 0, sizeof(char *) * (size_t)V);
    const char *err = NULL;
    int k = 0;
    for (; k < V && !err; k++) {
        s[k] = reader_str(r, 255);
        if (!s[k]) err = "its vocabulary is cut short";
        else if (k >= TOK_SPECIALS && k < nsrc && utf8_char_len(s[k]) != (int)strlen(s[k]))
            err = "its source vocabulary is not one character per token";
        else if (k >= nsrc && (!s[k][0] || strchr(s[k], ' ')))
            err = "its target vocabulary holds an empty symbol or a space";
    }
    if (!err) {
        vocab_build(&d->lv, (const char *const *)s + TOK_SPECIALS, nsrc - TOK_SPECIALS);
        vocab_build(&d->pv, (const char *const *)s + nsrc, V - nsrc);
        d->V = V;
        for (int j = TOK_SPECIALS; j < V && !err; j++)   /* sorted, each once */
            if (d->lv.n != nsrc || d->pv.n != V - nsrc + TOK_SPECIALS ||
                strcmp(tf_pairs_sym(d, j), s[j]) != 0)
                err = "its vocabulary is not sorted, or lists a symbol twice";
        if (err) { vocab_free(&d->lv); vocab_free(&d->pv); }
    }
    for (int j = 0; j < k; j++) free(s[j]);
    free(s);
    return err;
}

/* Load the model at path into m (built here: free with tf_free) and its
 * vocabulary: a text model's into tx (no text: tx->n 0, tx->ids NULL; free
 * with tf_text_free), an encdec model's into d (no pairs, d->n 0: only the
 * vocabularies and the lengths S, T it reads; free with tf_pairs_free).
 * tx or d NULL: that kind is refused. The training options a version-2
 * description holds go into run's fields (if run is not NULL; a version-1
 * file leaves run as it was). Returns the description's version (1 or
 * TF_CKPT_RUN), or -1 with why if the file is missing, not a checkpoint,
 * another version or another chapter's, of the other kind, truncated,
 * corrupted, or holds a model this program cannot build; then nothing is
 * allocated and m, tx, d and run are untouched. */
static int tf_ckpt_load_any(const char *path, TfModel *m, TfText *tx, TfPairs *d, TfRun *run,
                            char *why, size_t nwhy) {
    Bytes b;
    double *p;
    int n, step, first, nsrc;
    TfConfig c;
    char (*syms)[5] = NULL, msg[200];
    TfPairs v;
    memset(&v, 0, sizeof v);
    if (ckpt_read(path, TF_CKPT_TAG, &b, &p, &n, why, nwhy) != 0) return -1;
    Reader r = { b.b, b.n, 0, 1 };
    const char *err = tf_ckpt_head(&r, &c, &step, &first, &nsrc);
    const int encdec = c.arch == TF_ENCDEC;
    if (!err && encdec && !d)
        err = "it holds an encoder-decoder (--arch encdec, trained with --data), not a "
              "text model: use it with --input WORD, stdin or --data FILE";
    if (!err && !encdec && !tx)
        err = "it holds a text model (--arch encoder or decoder), not an encoder-decoder";
    if (!err) err = encdec ? tf_ckpt_pairs_vocab(&r, c.V, nsrc, &v)
                           : tf_ckpt_text_vocab(&r, c.V, first, &syms);
    const int version = err || r.at == r.n ? 1 : TF_CKPT_RUN;   /* a training section? */
    TfRun saved = run ? *run : (TfRun){ 0 };
    const char *bad = version == 1 ? NULL : tf_ckpt_get_run(&r, &saved);
    if (!err && !bad && r.at != r.n) bad = "its description is longer than its vocabulary "
                                           "and training options";
    if (!err && bad) { err = bad; free(syms); tf_pairs_free(&v); }
    free(b.b);
    snprintf(msg, sizeof msg, "%s", err ? err : "");
    if (!err) {
        tf_build(m, &c, 0);
        if (n != 3 * m->np) {
            snprintf(msg, sizeof msg, "it holds %d doubles; its model needs %d (3 x %d "
                     "parameters)", n, 3 * m->np, m->np);
            tf_free(m); free(syms); tf_pairs_free(&v); err = msg;
        }
    }
    if (err) { snprintf(why, nwhy, "'%s': %s", path, msg); free(p); return -1; }
    state_unpack(p, m->params, m->adam_m, m->adam_v, m->np);
    m->step = step;
    if (encdec) { v.S = c.S; v.T = c.T; *d = v; }
    else { memset(tx, 0, sizeof *tx); tf_text_set_vocab(tx, syms, c.V, first); free(syms); }
    if (run) *run = saved;
    free(p);
    return version;
}

/* Load a text model (--arch encoder or decoder) and its vocabulary: see
 * tf_ckpt_load_any; an encdec checkpoint is refused. */
int tf_ckpt_load(const char *path, TfModel *m, TfText *tx, char *why, size_t nwhy) {
    return tf_ckpt_load_any(path, m, tx, NULL, NULL, why, nwhy) < 0 ? -1 : 0;
}

/* Load an encdec model and its pair vocabularies: see tf_ckpt_load_any; a
 * text model's checkpoint is refused. */
int tf_pairs_ckpt_load(const char *path, TfModel *m, TfPairs *d, char *why, size_t nwhy) {
    return tf_ckpt_load_any(path, m, NULL, d, NULL, why, nwhy) < 0 ? -1 : 0;
}

/* A loaded model m made ready to train on with c's batch size and label
 * smoothing (the command line's): rebuilt if the batch size differs (the
 * activations are sized by it), its parameters, Adam state and step kept.
 * (Another batch size draws other batches: not the run that saved it.) */
void tf_refit(TfModel *m, const TfConfig *c) {
    m->c.smoothing = c->smoothing;
    if (m->c.B == c->B) return;
    TfConfig k = m->c;
    k.B = c->B;
    TfModel n;
    tf_build(&n, &k, 0);
    memcpy(n.params, m->params, sizeof(double) * (size_t)m->np);
    memcpy(n.adam_m, m->adam_m, sizeof(double) * (size_t)m->np);
    memcpy(n.adam_v, m->adam_v, sizeof(double) * (size_t)m->np);
    n.step = m->step;
    tf_free(m);
    *m = n;
}

/* What is wrong with training on from the model m read from `load` as
 * the options given in t ask (opt_given), into why, or NULL if nothing:
 * --steps N or --minutes M trains on (N the total, above m->step), and
 * needs the file it trained on (has_file: --text for a text arch, --data
 * for encdec); without either, a training option is refused; --task and
 * --vocab never apply. steps: --steps' value. */
const char *tf_resume_refusal(const OptTable *t, const char *load, const TfModel *m,
                              int has_file, int steps, char *why, size_t nwhy) {
    static const char *const training[] = { "--warmup", "--lr-factor", "--smoothing",
        "--batch", "--eval-every", "--schedule", "--lr", "--lr-min", "--beta2",
        "--weight-decay", "--clip", "--log", "--save" }, *const task[] = { "--task", "--vocab" };
    const char *file = m->c.arch == TF_ENCDEC ? "--data" : "--text";
    const int given = opt_given(t, "--steps"), resume = given || opt_given(t, "--minutes");
    for (int k = 0; k < 2; k++)
        if (opt_given(t, task[k])) {
            snprintf(why, nwhy, "%s sets up a synthetic task; a model read with --load has "
                     "its own data and vocabulary: leave %s out", task[k], task[k]);
            return why;
        }
    for (size_t k = 0; !resume && k < sizeof training / sizeof training[0]; k++)
        if (opt_given(t, training[k])) {
            snprintf(why, nwhy, "%s is for training: a model read with --load is used as it "
                     "is unless it trains on: add --steps N (the total, its %d steps "
                     "included) or --minutes M, with %s FILE (the file it trained on); or "
                     "leave %s out", training[k], m->step, file, training[k]);
            return why;
        }
    if (resume && !has_file)
        snprintf(why, nwhy, "%s: training on from '%s' needs the file it trained on: add %s "
                 "FILE", given ? "--steps" : "--minutes", load, file);
    else if (given && steps <= m->step)
        snprintf(why, nwhy, "--steps %d counts every step: '%s' has taken %d steps already; "
                 "give --steps above %d", steps, load, m->step, m->step);
    else return NULL;
    return why;
}

/* the model options a checkpoint fixes, and the TfConfig field each sets */
enum { TF_N_MODEL_OPTS = 9 };
static const char *const tf_model_opts[TF_N_MODEL_OPTS] = { "--arch", "--norm", "--pos",
    "--act", "--d-model", "--heads", "--layers", "--ff", "--len" };

/* field k of c, in the order of tf_model_opts */
static int tf_model_field(const TfConfig *c, int k) {
    const int f[TF_N_MODEL_OPTS] = { c->arch, c->norm, c->pos, c->act, c->D, c->H, c->n_enc,
                                     c->F, c->S };
    return f[k];
}

/* 0 if every model option the user gave (given[k] for tf_model_opts[k])
 * agrees with the loaded model `have`; else -1 with why naming the option,
 * the value asked (in want) and the checkpoint's */
int tf_ckpt_conflict(const TfConfig *have, const TfConfig *want, const int *given,
                     const char *path, char *why, size_t nwhy) {
    static const char *const *const names[TF_N_MODEL_OPTS] = { tf_arch_names, tf_norm_names,
        tf_pos_names, tf_act_names, NULL, NULL, NULL, NULL, NULL };
    for (int k = 0; k < TF_N_MODEL_OPTS; k++) {
        const int h = tf_model_field(have, k), w = tf_model_field(want, k);
        if (!given[k] || h == w) continue;
        char hs[16], ws[16];                    /* a choice's name, or the number */
        if (names[k]) { snprintf(hs, sizeof hs, "%s", names[k][h]);
                        snprintf(ws, sizeof ws, "%s", names[k][w]); }
        else { snprintf(hs, sizeof hs, "%d", h); snprintf(ws, sizeof ws, "%d", w); }
        snprintf(why, nwhy, "%s %s conflicts with the model in '%s', which has %s %s: leave "
                 "%s out (the checkpoint sets it), or train a new model", tf_model_opts[k],
                 ws, path, tf_model_opts[k], hs, tf_model_opts[k]);
        return -1;
    }
    return 0;
}

/* ========================================================================
 * 13c. tracing one head: what mha_forward kept, laid out for a reader
 *
 * --trace prints one head of one attention sublayer on one example, after
 * the run's last forward pass, from that pass's own caches (TfSub's input
 * rows, mha_forward's MhaCache): nothing here recomputes the model but the
 * scores Q K^T / sqrt(dh), which sdpa_forward overwrites in place with the
 * weights; they are made again from the cached Q and K by the same matmul
 * and scale, and tests.c checks that their masked softmax is the cached P.
 * ======================================================================== */

/* which attention of a layer: the encoder's (or a text arch's only stack),
 * the decoder's causal self-attention, or its cross-attention */
enum { TF_SHOW_ENC, TF_SHOW_SELF, TF_SHOW_CROSS };

/* One head h of one attention sublayer for example e of the last forward
 * pass. Q, K, V, P, O point into the model's activations (read only); S and
 * vis are the trace's own (free with tf_trace_free). */
typedef struct {
    int Tq, Tk, D, H, dh, head, causal;
    const double *Xq;      /* (Tq,D) the rows the queries are projected from */
    const double *Xkv;     /* (Tk,D) the rows of the keys and values (= Xq: self) */
    const double *Q;       /* (Tq,dh) head h of Q = Xq W_q: the cache's Qh */
    const double *K, *V;   /* (Tk,dh) head h of K = Xkv W_k, V = Xkv W_v */
    double *S;             /* (Tq,Tk) Q K^T / sqrt(dh), every cell (masked ones too) */
    unsigned char *vis;    /* (Tq,Tk) 1: key j is visible to query i (mask and causal) */
    const double *P;       /* (Tq,Tk) the cached weights softmax(S + mask) */
    const double *O;       /* (Tq,dh) the head's output P V: the cache's Oh */
    const unsigned char *kmask;  /* (Tk) the example's real keys */
} TfTrace;

void tf_trace_free(TfTrace *tr) { free(tr->S); free(tr->vis); }

/* Fill tr for head `head` (0-based) of attention `attn` (TF_SHOW_*) of layer
 * `layer` (1-based) on example e of b, which the model's last forward pass
 * ran (a text arch's only stack is TF_SHOW_ENC, causal for GPT). */
void tf_trace_fill(TfTrace *tr, const TfModel *m, const TfBatch *b, int attn, int layer,
                   int head, int e) {
    const TfConfig *c = &m->c;
    const TfActs *a = &m->a;
    const int l = layer - 1, pre = c->norm == TF_PRE, enc = attn == TF_SHOW_ENC;
    const TfSub *s = enc ? &a->es[2 * l] : &a->ds[3 * l + (attn == TF_SHOW_CROSS)];
    const double *x = enc ? (l ? tf_sub_out(&a->es[2 * l - 1], c->norm) : a->xe)
                    : attn == TF_SHOW_SELF ? (l ? tf_sub_out(&a->ds[3 * l - 1], c->norm) : a->xd)
                    : tf_sub_out(&a->ds[3 * l], c->norm);   /* the sublayer's input */
    memset(tr, 0, sizeof *tr);
    tr->Tq = enc ? c->S : c->T;
    tr->Tk = attn == TF_SHOW_SELF ? c->T : c->S;
    tr->D = c->D; tr->H = c->H; tr->dh = c->D / c->H; tr->head = head;
    tr->causal = attn == TF_SHOW_SELF || (enc && c->arch == TF_DECODER);
    const int Tq = tr->Tq, Tk = tr->Tk, D = tr->D, dh = tr->dh, bh = e * c->H + head;
    tr->Xq = (pre ? s->n : x) + e * Tq * D;             /* mha_forward's Xq */
    tr->Xkv = attn == TF_SHOW_CROSS ? tf_enc_out(a, c) + e * Tk * D : tr->Xq;
    tr->kmask = (attn == TF_SHOW_SELF ? b->tmask : b->smask) + e * Tk;
    tr->Q = s->mc.Qh + bh * Tq * dh;
    tr->K = s->mc.Kh + bh * Tk * dh;
    tr->V = s->mc.Vh + bh * Tk * dh;
    tr->P = s->mc.P + bh * Tq * Tk;
    tr->O = s->mc.Oh + bh * Tq * dh;
    tr->S = xcalloc_doubles(Tq * Tk);
    tr->vis = xmalloc((size_t)(Tq * Tk));
    matmul_nt_forward(tr->S, tr->Q, tr->K, Tq, dh, Tk);    /* as sdpa_forward: S = Q K^T */
    const double scale = 1.0 / sqrt((double)dh);
    for (int i = 0; i < Tq; i++)
        for (int j = 0; j < Tk; j++) {
            tr->S[i * Tk + j] *= scale;
            tr->vis[i * Tk + j] = tr->kmask[j] && !(tr->causal && j > i);
        }
}

/* ========================================================================
 * 14. showing attention: labels, heatmaps, SVG
 *
 * Only ./transformer uses sections 14 to 16: they are compiled only when this
 * file is the program, not when tests.c (TESTING) includes it.
 * ======================================================================== */

#ifndef TESTING

/* "s" unless n is 1: "1 step", "2 steps" */
static const char *tf_plural(int n) { return n == 1 ? "" : "s"; }

/* --show-attn: which attention of a layer is drawn (TF_SHOW_*, section 13c) */
static const char *const tf_attn_names[] = { "enc", "self", "cross", NULL };

/* a printable label for token k: "_" padding, "s" start, digits for symbols;
 * text archs: the character itself, a newline or tab as \n or \t */
static void tf_label(char *buf, size_t n, int k, const TfConfig *c, const TfText *tx) {
    if (c->arch != TF_ENCDEC || tx)             /* a text's, or --data's (tf_pairs_labels) */
        snprintf(buf, n, "%s", !strcmp(tx->sym[k], "\n") ? "\\n" : !strcmp(tx->sym[k], "\t")
                                ? "\\t" : tx->sym[k]);
    else if (k == TF_PAD) snprintf(buf, n, "_");
    else if (k == TF_BOS) snprintf(buf, n, "s");
    else snprintf(buf, n, "%d", k);
}

/* print s (UTF-8) with `indent` spaces before each line, a line break
 * after every `width` characters (code points) of a line, and at s's own
 * newlines; ends with a newline */
static void tf_print_wrapped(const char *s, int indent, int width) {
    int col = 0;
    for (int b; *s; s += b) {
        b = utf8_char_len(s);
        if (b < 1) b = 1;
        if (col == 0) printf("%*s", indent, "");
        if (*s == '\n') { printf("\n"); col = 0; continue; }
        printf("%.*s", b, s);
        if (++col == width) { printf("\n"); col = 0; }
    }
    if (col) printf("\n");
}

/* print tokens (len) as labels separated by spaces (encdec) or as text
 * (newlines as they are) */
static void tf_print_tokens(const int *tok, int len, const TfConfig *c, const TfText *tx) {
    char buf[16];
    for (int t = 0; t < len; t++) {
        if (c->arch != TF_ENCDEC) snprintf(buf, sizeof buf, "%s", tx->sym[tok[t]]);
        else tf_label(buf, sizeof buf, tok[t], c, tx);
        printf("%s%s", c->arch == TF_ENCDEC && t ? " " : "", buf);
    }
}

/* What a picture of one layer's heads shows: the start of its title, the
 * axis titles, whether every key after its query is masked (causal), and
 * the SVG's file name, transformer-<arch>-<task, text or data>-<what>.svg,
 * which tf_pic_name() makes */
typedef struct {
    char what[80];             /* e.g. "cross-attention, decoder layer 2" */
    const char *rows, *cols;   /* axis titles: what the queries and the keys are */
    int causal;                /* 1: key j > query i is masked */
    char name[96];             /* the file name, without the directory */
} TfPic;

/* pic->name = "transformer-<arch>-<source>-<attn>-L<layer>.svg" (source: the
 * task, "text", "data", ...) */
static void tf_pic_name(TfPic *pic, const char *arch, const char *source, int attn, int layer) {
    snprintf(pic->name, sizeof pic->name, "transformer-%s-%s-%s-L%d.svg", arch, source,
             tf_attn_names[attn], layer);
}

/* *pic for attention `attn` (TF_SHOW_ENC, _SELF, _CROSS) of layer `layer` of
 * an encdec model, named for `source` (the task, "data", ...) */
static void tf_pic_encdec(TfPic *pic, int attn, int layer, const char *source) {
    static const char *const titles[] = { "encoder self-attention, layer %d",
        "decoder causal self-attention, layer %d", "cross-attention, decoder layer %d" };
    snprintf(pic->what, sizeof pic->what, titles[attn], layer);
    pic->rows = attn == TF_SHOW_ENC ? "query (source position)" : "query (decoder step)";
    pic->cols = attn == TF_SHOW_SELF ? "key (decoder step)" : "key (source position)";
    pic->causal = attn == TF_SHOW_SELF;
    tf_pic_name(pic, "encdec", source, attn, layer);
}

/* how many of n maps of R x C cells write_svg_heatmaps should put in a row:
 * all of them if the maps stay within about 800 px (the picture, with
 * its legend, within a 900 px window), else fewer, in rows of
 * equal length (cells as attention.c sizes them) */
static int tf_maps_per_row(int n, int R, int C) {
    const int cell = C > 40 || R > 40 ? 10 : C > 20 || R > 20 ? 16 : 24;
    int per = n;
    while (per > 1 && per * (C * cell + 60) > 800) per = (per + 1) / 2;
    return per;
}

/* Every head of one attention sublayer for one example: P (H,Tq,Tk), e.g.
 * tf_attention_map(), with row tokens rt (Tq) and column tokens ct (Tk),
 * as one terminal heatmap a head; and with svg_dir, all heads in ONE SVG
 * picture, DIR/pic->name, on one shared colour scale (a diffuse head looks
 * paler than a sharp one), masked cells drawn as masked. */
static void tf_show_heads(const TfModel *m, const double *P, int Tq, int Tk, const int *rt,
                          const int *ct, const TfPic *pic, const char *svg_dir,
                          const TfText *tx) {
    const TfConfig *c = &m->c;
    char (*rl)[16] = xmalloc(sizeof(char[16]) * (size_t)Tq);
    char (*cl)[16] = xmalloc(sizeof(char[16]) * (size_t)Tk);
    char (*cap)[16] = xmalloc(sizeof(char[16]) * (size_t)c->H);
    const char **rp = xmalloc(sizeof(char *) * (size_t)(Tq + Tk + c->H));
    const char **cp = rp + Tq, **caps = cp + Tk;
    for (int i = 0; i < Tq; i++) { tf_label(rl[i], 16, rt[i], c, tx); rp[i] = rl[i]; }
    for (int j = 0; j < Tk; j++) { tf_label(cl[j], 16, ct[j], c, tx); cp[j] = cl[j]; }
    printf("%s: %d head%s\n(rows: queries, columns: keys)\n", pic->what, c->H, tf_plural(c->H));
    for (int h = 0; h < c->H; h++) {
        char title[128];
        snprintf(title, sizeof title, "%s, head %d of %d", pic->what, h + 1, c->H);
        print_heatmap(stdout, title, P + h * Tq * Tk, Tq, Tk, rp, cp);
        snprintf(cap[h], 16, "head %d", h + 1);
        caps[h] = cap[h];
    }
    if (svg_dir) {
        unsigned char *mask = NULL;
        if (pic->causal) {
            mask = xmalloc((size_t)(Tq * Tk));
            for (int i = 0; i < Tq; i++)
                for (int j = 0; j < Tk; j++) mask[i * Tk + j] = j > i;
        }
        char title[256];
        snprintf(title, sizeof title, "transformer: %s, all %d heads on one colour scale "
                 "(darker = more weight%s)", pic->what, c->H, pic->causal ? "; grey: masked, "
                 "the future a causal query may not read" : "");
        const HeatmapSvg hs = { title, pic->rows, pic->cols, rp, cp, caps, 1 };
        char *path = path_join(svg_dir, pic->name);
        write_svg_heatmaps(path, &hs, P, mask, c->H, Tq, Tk, tf_maps_per_row(c->H, Tq, Tk));
        printf("  wrote %s\n", path);
        free(path); free(mask);
    }
    free(rl); free(cl); free(cap); free(rp);
}

/* tf_label, but a space as ' ' (a blank label would be lost in a table) */
static void tf_trace_label(char *buf, size_t n, int k, const TfConfig *c, const TfText *tx) {
    tf_label(buf, n, k, c, tx);
    if (!strcmp(buf, " ")) snprintf(buf, n, "' '");
}

/* --trace shows at most this many positions (rows and columns): 10 columns
 * of 7 characters and a row label fit 80 */
enum { TF_TRACE_MAX = 10 };

/* rows 0..min(T, TF_TRACE_MAX)-1 of A (T, cols), each labelled by its
 * position and token, its first min(cols, 8) values */
static void tf_trace_rows(const double *A, int T, int cols, const int *tok, const TfConfig *c,
                          const TfText *tx) {
    const int nt = T < TF_TRACE_MAX ? T : TF_TRACE_MAX, nc = cols < 8 ? cols : 8;
    char lab[16];
    printf("   t tok ");
    for (int j = 0; j < nc; j++) printf("%7s", (snprintf(lab, sizeof lab, "[%d]", j), lab));
    printf("%s\n", nc < cols ? "  ..." : "");
    for (int t = 0; t < nt; t++) {
        tf_trace_label(lab, sizeof lab, tok[t], c, tx);
        printf("  %2d %-4s", t, lab);
        for (int j = 0; j < nc; j++) printf("%7.3f", A[t * cols + j]);
        printf("\n");
    }
}

/* the (Tq,Tk) matrix M of a trace, at most TF_TRACE_MAX x TF_TRACE_MAX,
 * rows labelled by the query tokens rt, columns by the key tokens ct;
 * cells the mask hides as '.', or (vis NULL) the 0/1 mask itself */
static void tf_trace_matrix(const TfTrace *tr, const double *M, int show_mask, const int *rt,
                            const int *ct, const TfConfig *c, const TfText *tx) {
    const int nq = tr->Tq < TF_TRACE_MAX ? tr->Tq : TF_TRACE_MAX;
    const int nk = tr->Tk < TF_TRACE_MAX ? tr->Tk : TF_TRACE_MAX;
    char lab[16];
    printf("  q \\ k  ");
    for (int j = 0; j < nk; j++) { tf_trace_label(lab, sizeof lab, ct[j], c, tx); printf("%7s", lab); }
    printf("\n");
    for (int i = 0; i < nq; i++) {
        tf_trace_label(lab, sizeof lab, rt[i], c, tx);
        printf("  %2d %-4s", i, lab);
        for (int j = 0; j < nk; j++) {
            const int v = tr->vis[i * tr->Tk + j];
            if (show_mask) printf("%7s", v ? "1" : ".");
            else if (v) printf("%7.3f", M[i * tr->Tk + j]);
            else printf("%7s", ".");
        }
        printf("\n");
    }
}

/* the second half of a trace: the scores, the mask, the weights and the
 * head's output */
static void tf_trace_steps(const TfTrace *tr, const int *qt, const int *kt, const TfConfig *c,
                           const TfText *tx) {
    const int Tq = tr->Tq, Tk = tr->Tk, dh = tr->dh;
    int hidden = 0;
    for (int i = 0; i < Tq * Tk; i++) hidden += !tr->vis[i];
    printf("\nscores Q_h K_h^T / sqrt(dh), sqrt(%d) = %.3f: (Tq,Tk) = (%d,%d), rows the\n"
           "  queries, columns the keys ('.': masked, left out of the softmax)\n", dh,
           sqrt((double)dh), Tq, Tk);
    tf_trace_matrix(tr, tr->S, 0, qt, kt, c, tx);
    if (!hidden) printf("mask: none; every key is visible to every query (no padding%s)\n",
                        tr->causal ? "" : ", not causal");
    else {
        printf("mask (Tq,Tk): 1 = the query may read the key; %s\n", tr->causal
               ? "causal, key j <= query i" : "padded keys hidden");
        tf_trace_matrix(tr, NULL, 1, qt, kt, c, tx);
    }
    double worst = 0.0;
    for (int i = 0; i < Tq; i++) {
        double sum = 0.0;
        for (int j = 0; j < Tk; j++) sum += tr->P[i * Tk + j];
        if (fabs(sum - 1.0) > worst) worst = fabs(sum - 1.0);
    }
    printf("\nweights A = softmax(scores) along each row over the visible keys,\n"
           "  mha_forward's P (Tq,Tk) = (%d,%d):\n", Tq, Tk);
    tf_trace_matrix(tr, tr->P, 0, qt, kt, c, tx);
    printf("every row sums to 1 over its %d keys (largest |sum - 1|: %.1e)\n", Tk, worst);
    printf("\noutput O_h = A V_h (Tq,dh) = (%d,%d), the cache's Oh:\n", Tq, dh);
    tf_trace_rows(tr->O, Tq, dh, qt, c, tx);
    printf("then the H heads side by side (merge_heads) give O (Tq,D), and O W_o is the\n"
           "  sublayer's f; the residual and LayerNorm follow (tf_attn_sublayer_forward)\n");
}

/* --trace: head `head` (0-based) of attention `attn` in layer `layer` on
 * example 0 of b, the model's last forward pass (tf_trace_fill), laid out
 * step by step: X, Q, K, V of the head, the scores, the mask, the weights
 * (their rows' sums), the head's output; `what` names the sublayer */
static void tf_trace_show(const TfModel *m, const TfBatch *b, int attn, int layer, int head,
                          const char *what, const TfText *tx) {
    const TfConfig *c = &m->c;
    TfTrace tr;
    tf_trace_fill(&tr, m, b, attn, layer, head, 0);
    const int *qt = attn == TF_SHOW_ENC ? b->src : b->tgt;
    const int *kt = attn == TF_SHOW_SELF ? b->tgt : b->src;
    const int Tq = tr.Tq, Tk = tr.Tk, D = tr.D, dh = tr.dh, cross = attn == TF_SHOW_CROSS;
    printf("\n--trace: head %d of %d, %s\n  (the example above, read from "
           "mha_forward's cache of that pass: B = 1\n  example, Tq = %d queries, Tk = %d keys, "
           "D = %d, H = %d, dh = D / H = %d;\n  at most %d positions shown)\n", head + 1, tr.H,
           what, Tq, Tk, D, tr.H, dh, TF_TRACE_MAX);
    printf("\nX (Tq,D) = (%d,%d), the rows the queries come from:\n  %s\n", Tq, D,
           c->norm == TF_PRE ? "LN(x), the LayerNorm of the sublayer's input x (pre-LN)"
           : cross ? "the output of this layer's (causal) self-attention sublayer"
           : layer > 1 ? "the previous layer's output" : "sqrt(D) E[token] + PE[t]");
    tf_trace_rows(tr.Xq, Tq, D, qt, c, tx);
    if (cross) {
        printf("memory (Tk,D) = (%d,%d), the encoder's output: keys and values\n", Tk, D);
        tf_trace_rows(tr.Xkv, Tk, D, kt, c, tx);
    }
    printf("\nQ = X W_q (Tq,D); head %d is its columns %d..%d: Q_h (Tq,dh) = (%d,%d)\n",
           head + 1, head * dh, head * dh + dh - 1, Tq, dh);
    tf_trace_rows(tr.Q, Tq, dh, qt, c, tx);
    printf("K_h = (%s W_k), columns %d..%d (Tk,dh) = (%d,%d)\n", cross ? "memory" : "X",
           head * dh, head * dh + dh - 1, Tk, dh);
    tf_trace_rows(tr.K, Tk, dh, kt, c, tx);
    printf("V_h = (%s W_v), columns %d..%d (Tk,dh) = (%d,%d)\n", cross ? "memory" : "X",
           head * dh, head * dh + dh - 1, Tk, dh);
    tf_trace_rows(tr.V, Tk, dh, kt, c, tx);
    tf_trace_steps(&tr, qt, kt, c, tx);
    tf_trace_free(&tr);
}

/* --svg: DIR/transformer-<arch>-<source>-curve.svg from what w recorded:
 * the training loss (and the held-out loss) above the held-out metric, both
 * against the step. `data`: --data's dev PER and WER; `text`: the text
 * archs' validation loss alone below; else token and exact-sequence
 * accuracy. Nothing if w holds no point. */
static void tf_write_curve(const char *dir, const char *arch, const char *source,
                           const TfWatch *w, int data, int text) {
    if (!dir || !w->train.n) return;
    char name[96], title[160];
    snprintf(name, sizeof name, "transformer-%s-%s-curve.svg", arch, source);
    snprintf(title, sizeof title, "transformer --arch %s (%s): the training loss and the %s "
             "against the step", arch, source, data ? "dev PER and WER" : text
             ? "validation loss" : "held-out accuracy");
    ChartSeries top[2] = { curve_series(&w->train, "training loss"),
                           curve_series(&w->loss, data ? "dev loss" : "held-out loss") };
    ChartSeries low[2] = { curve_series(&w->m1, data ? "dev PER (%)" : "token acc"),
                           curve_series(&w->m2, data ? "dev WER (%)" : "exact-sequence acc") };
    if (text) low[0] = curve_series(&w->loss, "validation loss");
    const ChartPanel p[2] = { { "loss", 1, top, text ? 1 : 2 },
                              { data ? "dev error (%)" : text ? "validation loss" : "accuracy",
                                0, low, text ? 1 : 2 } };
    char *path = path_join(dir, name);
    write_svg_panels(path, title, "step", 0, p, 2);
    printf("  wrote %s\n", path);
    free(path);
}

/* ========================================================================
 * 15. experiments (positions, heads, cost) and --bench
 * ======================================================================== */

/* A run that must not go on after divergence: say so and exit 3. */
static void tf_stop_if_diverged(const TfModel *m) {
    if (m->diverged)
        report_divergence(m->diverged, m->div_loss, m->div_norm, m->c.V,
                          "lower --lr-factor or lengthen --warmup");
}

/* Build and train one encdec model quietly, model k of n of experiment
 * `exp` (its progress on stderr: "positions 2/3, step 1200/3000, --pos
 * learned, ..."); returns the evaluation on a fresh held-out draw (not the
 * one training stopped on) and the steps taken (*steps). The caller frees m
 * with tf_free. */
static TfEval tf_quiet_run(TfModel *m, const TfConfig *c, const TfRun *run0, uint64_t seed,
                           int *steps, const char *exp, int k, int n, const char *detail) {
    TfEval ev;
    TfRun run = *run0;
    TfWatch w;
    Progress p;
    char what[48];
    memset(&w, 0, sizeof w);
    snprintf(what, sizeof what, "%s %d/%d, step", exp, k, n);
    progress_begin(&p, what, run.steps);
    w.prog = &p;
    w.detail = detail;
    run.watch = &w;
    tf_build(m, c, seed);
    *steps = tf_train(m, &run, NULL, NULL, NULL, &ev);
    if (*steps < run.steps && !m->diverged) progress_step(&p, run.steps, "stopped: 100%");
    tf_watch_free(&w);
    return tf_evaluate(m, &run, NULL, TF_EVAL_FRESH);
}

/* One row of the positions and heads tables: the model's steps and its
 * fresh held-out accuracies, or that it diverged; v (2) receives the two
 * accuracies for the chart (NAN if it diverged). */
static void tf_experiment_row(const char *name, const TfModel *m, int steps, const TfEval *ev,
                              double *v) {
    if (m->diverged) {
        printf("  %s  diverged at step %d (loss %g): no accuracy\n", name, m->diverged,
               m->div_loss);
        v[0] = v[1] = NAN;
        return;
    }
    printf("  %s  steps %5d  token acc %.4f  exact-sequence acc %.4f\n", name, steps,
           ev->tok_acc, ev->seq_acc);
    v[0] = ev->tok_acc;
    v[1] = ev->seq_acc;
}

/* --svg: an experiment's table as bars, DIR/transformer-<exp>.svg: for each
 * of n models (names) its token and exact-sequence accuracy (v, (n,2)) */
static void tf_experiment_bars(const char *dir, const char *exp, const char *title,
                               const char *x_axis, const char *const *names, int n,
                               const double *v) {
    if (!dir) return;
    static const char *const series[2] = { "token acc", "exact-sequence acc" };
    char name[64];
    snprintf(name, sizeof name, "transformer-%s.svg", exp);
    const ChartSvg cs = { title, x_axis, "held-out accuracy (fresh draw)", 0, 0 };
    char *path = path_join(dir, name);
    write_svg_bars(path, &cs, names, n, series, 2, v);
    printf("  wrote %s\n", path);
    free(path);
}

/* Position matters: the reverse task with no, sinusoidal and learned positions. */
static void tf_experiment_positions(const TfConfig *c0, const TfRun *run0, uint64_t seed,
                                    const char *svg_dir) {
    TfRun run = *run0;
    run.task = TASK_REVERSE;
    printf("experiment positions: task reverse, d_model %d, %d heads, %d+%d layers,\n"
           "  up to %d step%s\n", c0->D, c0->H, c0->n_enc, c0->n_dec, run.steps,
           tf_plural(run.steps));
    printf("  chance: token accuracy %.3f (1 of %d symbols)\n", 1.0 / (c0->V - 2), c0->V - 2);
    printf("  held-out accuracy (greedy decoding, a fresh held-out draw):\n");
    const char *names[3];
    double v[6];
    for (int p = TF_POS_NONE; p >= TF_POS_SIN; p--) {
        const int k = TF_POS_NONE - p;
        TfConfig c = *c0;
        c.pos = p;
        TfModel m;
        int steps;
        char name[32], detail[32];
        snprintf(name, sizeof name, "--pos %-8s", tf_pos_names[p]);
        snprintf(detail, sizeof detail, "--pos %s", tf_pos_names[p]);
        TfEval ev = tf_quiet_run(&m, &c, &run, seed, &steps, "positions", k + 1, 3, detail);
        tf_experiment_row(name, &m, steps, &ev, v + 2 * k);
        names[k] = tf_pos_names[p];
        tf_free(&m);
    }
    printf("  without positions the encoder's output is the same for any order of the\n"
           "  source (self-attention is permutation-equivariant), so the decoder cannot\n"
           "  know which symbol came last: reversing fails.\n");
    tf_experiment_bars(svg_dir, "positions", "transformer --experiment positions: the reverse "
                       "task's held-out accuracy with each positional encoding (--pos)",
                       "--pos", names, 3, v);
}

/* the heads of the last decoder layer's cross-attention of model m (config
 * c, the experiment's last) on the first held-out example, drawn */
static void tf_heads_picture(TfModel *m, const TfConfig *c, const TfRun *run,
                             const char *svg_dir) {
    TfBatch b;
    tf_batch_alloc(&b, c);
    b.n = 1;
    Rng r;
    rng_seed(&r, run->seed ^ 0x5EEDF00Dull);
    tf_task_batch(&b, &r, run->task, c, TF_HELDOUT_SPLIT);
    int *out = xmalloc(sizeof(int) * (size_t)c->T);
    tf_greedy_decode(m, &b, out);
    TfPic pic;
    tf_pic_encdec(&pic, TF_SHOW_CROSS, c->n_dec, task_names[run->task]);
    snprintf(pic.name, sizeof pic.name, "transformer-heads-%s-cross-L%d.svg",
             task_names[run->task], c->n_dec);
    tf_show_heads(m, tf_attention_map(m, &m->a.ds[3 * (c->n_dec - 1) + 1], 0, c->T, c->S),
                  c->T, c->S, b.tgt, b.src, &pic, svg_dir, NULL);
    free(out);
    tf_batch_free(&b);
}

/* Heads: the same d_model split into 1, 2, 4, 8 heads (where D allows). */
static void tf_experiment_heads(const TfConfig *c0, const TfRun *run0, uint64_t seed,
                                const char *svg_dir) {
    TfRun run = *run0;
    printf("experiment heads: task %s, d_model %d, %d+%d layers, up to %d step%s\n",
           task_names[run.task], c0->D, c0->n_enc, c0->n_dec, run.steps, tf_plural(run.steps));
    printf("  held-out accuracy (greedy decoding, a fresh held-out draw):\n");
    int last = 0, n = 0, k = 0;
    for (int h = 1; h <= 8 && h <= c0->D; h *= 2) if (c0->D % h == 0) { last = h; n++; }
    char names[4][32];
    const char *np[4];
    double v[8];
    for (int h = 1; h <= last; h *= 2) {
        if (c0->D % h) continue;
        TfConfig c = *c0;
        c.H = h;
        TfModel m;
        int steps;
        char name[32], detail[32];
        snprintf(name, sizeof name, "--heads %d (dh %2d)", h, c.D / h);
        snprintf(detail, sizeof detail, "--heads %d", h);
        TfEval ev = tf_quiet_run(&m, &c, &run, seed, &steps, "heads", k + 1, n, detail);
        tf_experiment_row(name, &m, steps, &ev, v + 2 * k);
        snprintf(names[k], sizeof names[k], "%d (dh %d)", h, c.D / h);
        np[k] = names[k];
        k++;
        if (h == last && !m.diverged) tf_heads_picture(&m, &c, &run, svg_dir);
        tf_free(&m);
    }
    tf_experiment_bars(svg_dir, "heads", "transformer --experiment heads: held-out accuracy "
                       "by the number of heads, d_model fixed", "--heads (and the width of "
                       "one head, dh)", np, k, v);
}

/* --experiment extrapolate: sources longer than any trained on. The model
 * is built for lengths up to 2L (c->S = c->T = 2L), so a learned table has
 * 2L rows; each training batch holds one length drawn from lo..L and the
 * model runs at that length (as --data's batches do, tf_pairs_fit), so rows
 * L..2L-1 of a learned table are never read in training and keep their
 * random initial values. The sinusoidal table is a formula: every row is
 * defined. Trains run->steps steps (no early stopping); returns the steps
 * taken (fewer if it diverged) and the mean loss of the last 100 (*loss). */
static int tf_extrap_train(TfModel *m, const TfRun *run, int lo, int L, Progress *p,
                           const char *detail, double *loss) {
    TfBatch b;
    tf_batch_alloc(&b, &m->c);
    Rng r;
    rng_seed(&r, run->seed);                    /* the training stream */
    TfConfig cn = m->c;
    double sum = 0.0;
    int step, n_sum = 0;
    for (step = 1; step <= run->steps; step++) {
        cn.S = cn.T = lo + rng_int(&r, L - lo + 1);
        tf_pairs_fit(m, cn.S, cn.T);
        tf_task_batch(&b, &r, run->task, &cn, TF_TRAIN_SPLIT);
        const double l = tf_train_step(m, &b, run);
        if (m->diverged) break;
        if (step > run->steps - 100) { sum += l; n_sum++; }
        progress_step(p, step, detail);
    }
    *loss = n_sum ? sum / n_sum : NAN;
    tf_batch_free(&b);
    return m->step;
}

/* held-out accuracy of m at source length n (<= its built length): run->n_eval
 * held-out sources of length n, decoded greedily at that length */
static TfEval tf_extrap_eval(TfModel *m, const TfRun *run, int n) {
    TfConfig cn = m->c;
    cn.S = cn.T = n;
    tf_pairs_fit(m, n, n);
    TfBatch b;
    tf_batch_alloc(&b, &m->c);
    int *out = xmalloc(sizeof(int) * (size_t)(m->c.B * n));
    Rng r;
    rng_seed(&r, run->seed ^ 0xE7A9u ^ (uint64_t)n * 0x9E3779B97F4A7C15ull);
    int tok = 0, seq = 0;
    for (int done = 0; done < run->n_eval; done += b.n) {
        b.n = run->n_eval - done < cn.B ? run->n_eval - done : cn.B;
        tf_task_batch(&b, &r, run->task, &cn, TF_HELDOUT_SPLIT);
        tf_greedy_decode(m, &b, out);
        for (int e = 0; e < b.n; e++) {
            int all = 1;
            for (int t = 0; t < n; t++) {
                const int ok = out[e * n + t] == b.y[e * n + t];
                tok += ok; all &= ok;
            }
            seq += all;
        }
    }
    free(out);
    tf_batch_free(&b);
    TfEval ev = { 0.0, (double)tok / ((double)run->n_eval * n), (double)seq / run->n_eval };
    return ev;
}

/* --svg: DIR/transformer-extrapolate.svg, token accuracy (top) and
 * exact-sequence accuracy (below) against the source length, one line per
 * encoding; acc (2 encodings, 2 measures, nl lengths) */
static void tf_extrap_chart(const char *dir, const char *task, int L, const double *len,
                            const double *acc, int nl) {
    if (!dir) return;
    char title[200];
    snprintf(title, sizeof title, "transformer --experiment extrapolate: %s, trained on "
             "lengths up to %d, held-out accuracy at lengths up to %d", task, L, 2 * L);
    ChartSeries tok[2], seq[2];
    for (int k = 0; k < 2; k++) {
        tok[k] = (ChartSeries){ k ? "--pos learned" : "--pos sin", len, acc + (2 * k) * nl, nl };
        seq[k] = (ChartSeries){ k ? "--pos learned" : "--pos sin", len, acc + (2 * k + 1) * nl,
                                nl };
    }
    const ChartPanel p[2] = { { "token accuracy", 0, tok, 2 },
                              { "exact-sequence accuracy", 0, seq, 2 } };
    char *path = path_join(dir, "transformer-extrapolate.svg");
    write_svg_panels(path, title, "source length", 0, p, 2);
    printf("  wrote %s\n", path);
    free(path);
}

/* the extrapolate table: for each length lo..lo+nl-1 the token and
 * exact-sequence accuracy of each encoding (acc as tf_extrap_chart's), a
 * rule after the longest trained length L */
static void tf_extrap_table(int lo, int L, int nl, const double *acc, int n_eval) {
    printf("  held-out accuracy (greedy decoding, %d held-out sources of each length):\n"
           "  %8s %19s %19s\n  %8s %9s %9s %9s %9s\n", n_eval, "", "--pos sin",
           "--pos learned", "length", "token", "exact", "token", "exact");
    for (int i = 0; i < nl; i++) {
        if (lo + i == L + 1) printf("  ---- longer than every source trained on ----\n");
        printf("  %8d", lo + i);
        for (int k = 0; k < 4; k++) {
            const double v = acc[k * nl + i];
            if (isfinite(v)) printf(" %9.4f", v); else printf(" %9s", "-");
        }
        printf("\n");
    }
}

/* Positions beyond the trained length: a model with --pos sin and one with
 * --pos learned, each trained on lengths lo..L (L = --len, lo the shortest
 * length whose task space allows a held-out split) and measured on
 * held-out sources of every length lo..2L. c0 is built for 2L (tf_cli). */
static void tf_experiment_extrapolate(const TfConfig *c0, const TfRun *run, uint64_t seed,
                                      const char *svg_dir) {
    const int L = c0->S / 2;
    TfConfig tc = *c0;
    int lo = 2;
    for (tc.S = lo; lo < L && tf_task_space(&tc) < TF_MIN_SOURCES; tc.S = ++lo) {}
    const int nl = 2 * L - lo + 1;
    printf("experiment extrapolate: task %s, trained on lengths %d..%d (one length a\n"
           "  batch), tested on lengths %d..%d; d_model %d, %d heads, %d+%d layers, %d step%s\n"
           "  each. Both models are built for length %d: a learned table has %d rows,\n"
           "  but training reads only its first %d; the sinusoidal one is a formula.\n",
           task_names[run->task], lo, L, lo, 2 * L, c0->D, c0->H, c0->n_enc, c0->n_dec,
           run->steps, tf_plural(run->steps), 2 * L, 2 * L, L);
    double *len = xcalloc_doubles(nl), *acc = xcalloc_doubles(4 * nl);
    for (int i = 0; i < nl; i++) len[i] = lo + i;
    for (int k = 0; k < 2; k++) {
        TfConfig c = *c0;
        c.pos = k ? TF_POS_LEARNED : TF_POS_SIN;
        TfModel m;
        tf_build(&m, &c, seed);
        double *rows = k ? xmalloc(sizeof(double) * (size_t)(L * c.D)) : NULL;
        if (k) memcpy(rows, m.w.pos + L * c.D, sizeof(double) * (size_t)(L * c.D));
        char what[48], detail[32];
        snprintf(what, sizeof what, "extrapolate %d/2, step", k + 1);
        snprintf(detail, sizeof detail, "--pos %s", tf_pos_names[c.pos]);
        Progress p;
        progress_begin(&p, what, run->steps);
        double loss;
        const int steps = tf_extrap_train(&m, run, lo, L, &p, detail, &loss);
        for (int i = 0; i < 2 * nl; i++) acc[2 * k * nl + i] = NAN;
        if (m.diverged)
            printf("  --pos %-7s diverged at step %d (loss %g): no accuracy\n",
                   tf_pos_names[c.pos], m.diverged, m.div_loss);
        else {
            printf("  --pos %-7s %d step%s, mean training loss, last 100 steps, %.4f\n",
                   tf_pos_names[c.pos], steps, tf_plural(steps), loss);
            if (k) printf("    rows %d..%d of its table after training: %s\n", L, 2 * L - 1,
                          memcmp(rows, m.w.pos + L * c.D, sizeof(double) * (size_t)(L * c.D))
                          ? "changed" : "unchanged, as built (never trained)");
            progress_begin(&p, "extrapolate, held-out lengths", nl);
            for (int i = 0; i < nl; i++) {
                const TfEval ev = tf_extrap_eval(&m, run, lo + i);
                acc[2 * k * nl + i] = ev.tok_acc;
                acc[(2 * k + 1) * nl + i] = ev.seq_acc;
                progress_step(&p, i + 1, detail);
            }
        }
        free(rows);
        tf_free(&m);
    }
    tf_extrap_table(lo, L, nl, acc, run->n_eval);
    tf_extrap_chart(svg_dir, task_names[run->task], L, len, acc, nl);
    free(len); free(acc);
}

/* --svg: the cost table as DIR/transformer-cost.svg, time (ms) and memory
 * (MB) against n (6 lengths) on log-log axes, the fitted slopes (fit: time,
 * memory) in the title and the legend */
static void tf_cost_chart(const char *svg_dir, int D, int H, const double *n, const double *ms,
                          const double *mb, const double *fit) {
    if (!svg_dir) return;
    char title[200], st[48], sm[48];
    snprintf(title, sizeof title, "transformer --experiment cost: one self-attention forward "
             "(d_model %d, %d heads) against the length n; fitted slopes (n >= 256): time "
             "n^%.2f, memory n^%.2f", D, H, fit[0], fit[1]);
    snprintf(st, sizeof st, "time (ms), slope %.2f", fit[0]);
    snprintf(sm, sizeof sm, "memory (MB), slope %.2f", fit[1]);
    const ChartSeries cs[2] = { { st, n, ms, 6 }, { sm, n, mb, 6 } };
    const ChartSvg chart = { title, "length n (log scale)", "ms or MB (log scale)", 1, 1 };
    char *path = path_join(svg_dir, "transformer-cost.svg");
    write_svg_chart(path, &chart, cs, 2);
    printf("  wrote %s\n", path);
    free(path);
}

/* Cost: one multi-head self-attention forward (D 64, H 4) as n grows.
 * Prints the time seconds() measures (processor time, clock(), in the plain
 * build; wall time in the OpenMP build: this experiment's stdout is timing,
 * not deterministic) and the cache memory, with exponents fitted by least
 * squares on log-log. */
static void tf_experiment_cost(uint64_t seed, const char *svg_dir) {
    const int D = 64, H = 4;
    const int ns[6] = { 64, 128, 256, 512, 1024, 2048 };
    double lt[6], lm[6], ln[6], nx[6], ms_n[6], mb_n[6];
    Rng r;
    rng_seed(&r, seed);
    double *W = xcalloc_doubles(mha_num_params(D));
    rng_fill_normal(&r, W, mha_num_params(D), 1.0 / sqrt((double)D));
    Mha m;
    mha_bind(&m, W, D);
    printf("experiment cost: one self-attention forward, d_model %d, %d heads\n"
           "  (times are measured: they differ run to run)\n", D, H);
    printf("  %6s %12s %14s\n", "n", "time (ms)", "memory (MB)");
    for (int k = 0; k < 6; k++) {
        const int n = ns[k];
        double *x = xcalloc_doubles(n * D), *out = xcalloc_doubles(n * D);
        double *mem = xcalloc_doubles(mha_cache_size(1, n, n, D, H));
        rng_fill_normal(&r, x, n * D, 1.0);
        MhaCache c;
        mha_cache_bind(&c, mem, 1, n, n, D, H);
        int reps = n <= 256 ? 5 : 1;
        double t0 = seconds();
        for (int i = 0; i < reps; i++)
            mha_forward(out, &c, x, x, &m, NULL, NOT_CAUSAL, 1, n, n, D, H);
        double ms = 1000.0 * (seconds() - t0) / reps;
        double mb = 8.0 * mha_cache_size(1, n, n, D, H) / 1e6;
        printf("  %6d %12.2f %14.2f\n", n, ms, mb);
        ln[k] = log(n); lt[k] = log(ms > 1e-3 ? ms : 1e-3); lm[k] = log(mb);
        nx[k] = n; ms_n[k] = ms > 1e-3 ? ms : 1e-3; mb_n[k] = mb;
        free(x); free(out); free(mem);
    }
    /* slope of the least-squares line through the points n >= 256 */
    double fit[2];
    for (int which = 0; which < 2; which++) {
        const double *yv = which ? lm : lt;
        double sx = 0, sy = 0, sxx = 0, sxy = 0;
        for (int k = 2; k < 6; k++) {
            sx += ln[k]; sy += yv[k]; sxx += ln[k] * ln[k]; sxy += ln[k] * yv[k];
        }
        fit[which] = (4 * sxy - sx * sy) / (4 * sxx - sx * sx);
    }
    printf("  fitted exponent (n >= 256): time ~ n^%.2f, memory ~ n^%.2f\n", fit[0], fit[1]);
    printf("  the (n,n) score matrix of every head dominates both once n >> d_model:\n"
           "  self-attention is O(n^2 d) in time and O(n^2) in memory.\n");
    free(W);
    tf_cost_chart(svg_dir, D, H, nx, ms_n, mb_n, fit);
}

/* ms per training step (forward, backward, Adam), the median of 9 timed steps
 * after 2 warm-up steps, for the encdec copy task in config c */
static double tf_bench_step(const TfConfig *c, const TfRun *run) {
    TfModel m;
    tf_build(&m, c, 1);
    TfBatch b;
    tf_batch_alloc(&b, c);
    Rng r;
    rng_seed(&r, 1);
    double ms[9];
    for (int i = 0; i < 11; i++) {
        tf_task_batch(&b, &r, TASK_COPY, c, TF_TRAIN_SPLIT);
        double t0 = seconds();
        tf_train_step(&m, &b, run);
        if (i >= 2) ms[i - 2] = 1000.0 * (seconds() - t0);
    }
    tf_batch_free(&b);
    tf_free(&m);
    return median(ms, 9);
}

/* --bench: the two configurations of the chapter's speed targets (NOTES.md,
 * chapter 3, "Speed"), then the default example */
static void tf_bench(const TfConfig *dflt, const TfRun *run) {
    TfConfig c = *dflt;
    c.arch = TF_ENCDEC; c.norm = TF_POST; c.pos = TF_POS_SIN; c.act = TF_RELU;
    c.V = 16; c.D = 64; c.H = 4; c.F = 256; c.n_enc = c.n_dec = 2; c.S = c.T = 12; c.B = 32;
    printf("bench: ms per training step (forward, backward, Adam), median of 9; tokens/s\n"
           "counts source + target tokens, as the training progress does\n"
           "  (2+2 layers, ff 256, vocab 16, batch 32)\n"
           "  %7s %5s %4s %10s %10s\n", "d_model", "heads", "len", "ms/step", "tokens/s");
    for (int k = 0; k < 2; k++) {
        if (k) { c.D = 128; c.H = 8; c.S = c.T = 32; }   /* the rest as in the first */
        const double ms = tf_bench_step(&c, run);
        printf("  %7d %5d %4d %10.2f %10.0f\n", c.D, c.H, c.S, ms, c.B * (c.S + c.T) / (ms / 1e3));
    }
    TfModel m;
    TfEval ev;
    tf_build(&m, dflt, run->seed);
    double t0 = seconds();
    int steps = tf_train(&m, run, NULL, NULL, NULL, &ev);
    tf_stop_if_diverged(&m);
    printf("  the default example (copy): %d steps, held-out exact-sequence acc %.4f\n"
           "  in %.2f s\n", steps, ev.seq_acc, seconds() - t0);
    tf_free(&m);
}

/* ========================================================================
 * 16. the runs and the command line: the option table, main
 * ======================================================================== */

/* What one run does: train one arch, run one experiment, or --bench. Every
 * option names the modes it applies to, and opt_check_mode refuses one given
 * in a mode that would ignore or override it. */
enum { TF_M_ENCDEC, TF_M_ENCODER, TF_M_DECODER,   /* = TF_ENCDEC .. TF_DECODER */
       TF_M_POSITIONS, TF_M_HEADS, TF_M_COST,     /* = TF_M_POSITIONS + --experiment */
       TF_M_EXTRAP, TF_M_BENCH };
static const char *const tf_mode_names[] = { "--arch encdec", "--arch encoder",
    "--arch decoder", "--experiment positions", "--experiment heads", "--experiment cost",
    "--experiment extrapolate", "--bench", NULL };
static const char *const tf_experiment_names[] = { "positions", "heads", "cost",
                                                   "extrapolate", NULL };
#define TF_M(m) (1u << TF_M_##m)
#define TF_ARCHS (TF_M(ENCDEC) | TF_M(ENCODER) | TF_M(DECODER))
#define TF_TRAINS (TF_ARCHS | TF_M(POSITIONS) | TF_M(HEADS) | TF_M(EXTRAP))   /* all that train */
#define TF_TASKS (TF_M(ENCDEC) | TF_M(POSITIONS) | TF_M(HEADS) | TF_M(EXTRAP))  /* encdec tasks */

enum { TF_N_OPTS = 43 };

/* everything the command line sets, and the option table that reads it */
typedef struct {
    TfConfig c;        /* the model; arch-dependent fields set by tf_cli_resolve */
    TfRun run;
    int seed, layers, len, vocab, show, attn, experiment, bench, mode;
    double temperature;
    const char *svg;   /* --svg DIR, or NULL */
    const char *text;  /* --text FILE, or NULL: the built-in text */
    const char *log;   /* --log FILE (CSV), or NULL */
    const char *save, *load;   /* --save FILE, --load FILE, or NULL */
    int version;       /* --load: its description's version (1, or TF_CKPT_RUN) */
    int resume;        /* --load with --steps or --minutes: train on from it */
    const char *prompt;        /* --prompt TEXT, or NULL */
    const char *data;  /* --data FILE (encdec), or NULL: the task */
    TfPairs pairs;     /* --data's pairs; run.data points here */
    TfPairs loaded;    /* --load of an encdec model: its vocabularies alone */
    const char *input; /* --input WORD (encdec, with --load), or NULL: stdin */
    int beam;          /* --beam K: beams of the encdec search, 1 = greedy */
    int trace, trace_head;     /* --trace, --trace-head K (1-based) */
    int trace_attn, trace_layer;   /* what --trace traces (tf_cli_check_show) */
    int chars;         /* --chars: characters to generate */
    int *prompt_ids, plen;     /* the prompt as tokens (plen), checked before training */
    Opt opt[TF_N_OPTS];
    OptTable t;
} TfCli;

/* --trace (if given), after the run's last forward pass on example 0 of b:
 * the head, attention and layer tf_cli_check_show settled; tx labels a
 * text's tokens (NULL: the toy tasks' numbers) */
static void tf_trace_run(const TfModel *m, const TfCli *o, const TfBatch *b, const TfText *tx) {
    if (!o->trace) return;
    TfPic pic;
    if (m->c.arch == TF_ENCDEC) tf_pic_encdec(&pic, o->trace_attn, o->trace_layer, "trace");
    else snprintf(pic.what, sizeof pic.what, "%s self-attention, layer %d", m->c.arch ==
                  TF_ENCODER ? "bidirectional" : "causal", o->trace_layer);
    tf_trace_show(m, b, m->c.arch == TF_ENCDEC ? o->trace_attn : TF_SHOW_ENC, o->trace_layer,
                  o->trace_head - 1, pic.what, tx);
}

/* the encdec run: train, held-out accuracy, decoded examples, cross-attention */
static void tf_main_encdec(TfModel *m, const TfCli *o, FILE *csv) {
    const TfConfig *c = &m->c;
    const TfRun *run = &o->run;
    const int show = o->show, attn = o->attn;
    TfEval ev;
    int steps = tf_train(m, run, NULL, stdout, csv, &ev);
    tf_stop_if_diverged(m);
    ev = tf_evaluate(m, run, NULL, TF_EVAL_FRESH);   /* not the draw training stopped on */
    printf("\nafter %d step%s, on a fresh held-out draw of %d example%s (not the one\n"
           "training watched), greedy decoding:\n  token acc %.4f, exact-sequence acc %.4f "
           "(chance per token %.3f)\n", steps, tf_plural(steps), run->n_eval,
           tf_plural(run->n_eval), ev.tok_acc, ev.seq_acc, 1.0 / (c->V - 2));
    TfBatch b;
    tf_batch_alloc(&b, c);
    b.n = 4 < c->B ? 4 : c->B;
    Rng r;
    rng_seed(&r, run->seed ^ 0x5EEDF00Dull);     /* the first held-out examples */
    tf_task_batch(&b, &r, run->task, c, TF_HELDOUT_SPLIT);
    int *out = xmalloc(sizeof(int) * (size_t)(b.n * c->T));
    int *y = xmalloc(sizeof(int) * (size_t)(b.n * c->T));
    memcpy(y, b.y, sizeof(int) * (size_t)(b.n * c->T));
    tf_greedy_decode(m, &b, out);               /* leaves example 0 last in the caches */
    printf("\nheld-out examples (task %s):\n", task_names[run->task]);
    for (int e = b.n - 1; e >= 0; e--) {
        printf("  source  "); tf_print_tokens(b.src + e * c->S, c->S, c, NULL);
        printf("\n  target  "); tf_print_tokens(y + e * c->T, c->T, c, NULL);
        printf("\n  greedy  "); tf_print_tokens(out + e * c->T, c->T, c, NULL);
        printf("%s\n", memcmp(out + e * c->T, y + e * c->T, sizeof(int) * (size_t)c->T)
                           ? "   (wrong)" : "   (right)");
    }
    printf("\n");
    b.n = 1;                                    /* redo example 0 alone, then draw it */
    tf_greedy_decode(m, &b, out);               /* the caches hold its last decoder pass */
    /* the sublayer drawn, its queries (rows) and keys (columns), by attn */
    const TfSub *s = attn == TF_SHOW_ENC ? &m->a.es[2 * (show - 1)]
                   : &m->a.ds[3 * (show - 1) + (attn == TF_SHOW_CROSS)];
    const int *rows = attn == TF_SHOW_ENC ? b.src : b.tgt;
    const int *cols = attn == TF_SHOW_SELF ? b.tgt : b.src;
    TfPic pic;
    tf_pic_encdec(&pic, attn, show, task_names[run->task]);
    const int Tq = attn == TF_SHOW_ENC ? c->S : c->T, Tk = attn == TF_SHOW_SELF ? c->T : c->S;
    tf_show_heads(m, tf_attention_map(m, s, 0, Tq, Tk), Tq, Tk, rows, cols, &pic, o->svg, NULL);
    tf_trace_run(m, o, &b, NULL);
    free(out); free(y);
    tf_batch_free(&b);
}

/* BERT: a held-out window b (example 0) as the model saw it, and its guess
 * at every masked position (the logits of the last tf_forward on b) */
static void tf_show_guesses(const TfModel *m, const TfBatch *b, const TfText *tx) {
    const TfConfig *c = &m->c;
    printf("\na held-out window as the model sees it ('_' = [MASK]; a masked position may\n"
           "also hold a random or the original character) and its guesses:\n  input   \"");
    tf_print_tokens(b->src, c->S, c, tx);
    printf("\"\n");
    for (int t = 0; t < c->S; t++) {
        if (b->y[t] < 0) continue;
        const double *l = m->a.logits + t * c->V;
        int best = argmax(l, c->V);
        char in[16], ans[16], guess[16];
        tf_label(in, 16, b->src[t], c, tx);
        tf_label(ans, 16, b->y[t], c, tx);
        tf_label(guess, 16, best, c, tx);
        printf("  position %2d: input '%s', answer '%s', guess '%s'%s\n", t, in, ans, guess,
               best == b->y[t] ? "" : "  (wrong)");
    }
}

/* GPT: o->chars characters sampled after the prompt (--prompt; else the
 * text's first 4); with --prompt the text printed is the prompt and what
 * follows it, as it is, newlines included, but a line longer than 80
 * characters is broken at 80 (tf_print_wrapped) */
static void tf_show_sample(TfModel *m, const TfCli *o, const TfText *tx) {
    const int given = o->prompt != NULL, plen = given ? o->plen : 4, n = o->chars;
    const int *prompt = given ? o->prompt_ids : tx->ids;
    int *out = xmalloc(sizeof(int) * (size_t)(plen + n));
    Rng sr;
    rng_seed(&sr, o->run.seed ^ 0x5A3Dull);
    tf_generate(m, prompt, plen, n, o->temperature, o->text || o->load ? tx->first : 0, &sr,
                out);
    if (given) printf("%s%d characters sampled at temperature %.2f after the prompt:\n",
                      tx->n ? "\n" : "", n, o->temperature);
    else {
        printf("\nsampled at temperature %.2f from the prompt \"", o->temperature);
        tf_print_tokens(tx->ids, plen, &m->c, tx);
        printf("\":\n");
    }
    char *text = xmalloc(5 * (size_t)(plen + n) + 1);   /* 80 columns: wrapped */
    size_t at = 0;
    for (int k = 0; k < plen + n; k++) at += (size_t)sprintf(text + at, "%s", tx->sym[out[k]]);
    tf_print_wrapped(text, given ? 0 : 2, given ? 80 : 76);
    free(text); free(out);
}

/* --prompt: the heads of layer o->show as they read the prompt (its last S
 * characters, from position 0; causal, so the positions after it, which
 * hold [MASK], are never read) */
static void tf_show_prompt_heads(TfModel *m, const TfCli *o, const TfText *tx) {
    const TfConfig *c = &m->c;
    const int S = c->S, H = c->H, L = o->plen < S ? o->plen : S;
    const int *p = o->prompt_ids + o->plen - L;
    TfBatch b;
    tf_batch_alloc(&b, c);
    b.n = 1;
    for (int t = 0; t < S; t++) b.src[t] = t < L ? p[t] : TF_MASK;
    tf_encode(m, &b);
    const double *P = tf_attention_map(m, &m->a.es[2 * (o->show - 1)], 0, S, S);
    double *Pc = xcalloc_doubles(H * L * L);    /* the (L, L) corner of each head */
    for (int h = 0; h < H; h++)
        for (int i = 0; i < L; i++)
            memcpy(Pc + (h * L + i) * L, P + (h * S + i) * S, sizeof(double) * (size_t)L);
    TfPic pic = { "", "query (prompt position)", "key (prompt position)", 1, "" };
    snprintf(pic.what, sizeof pic.what, "causal self-attention over the prompt, layer %d",
             o->show);
    tf_pic_name(&pic, "decoder", "prompt", TF_SHOW_SELF, o->show);
    printf("\n");
    tf_show_heads(m, Pc, L, L, p, p, &pic, o->svg, tx);
    tf_trace_run(m, o, &b, tx);
    free(Pc);
    tf_batch_free(&b);
}

/* the text's lines before training: its size and split, its vocabulary, and
 * how the held-out part is read */
static void tf_text_header(const TfCli *o, const TfText *tx, int n_eval) {
    const TfConfig *c = &o->c;
    const int split = tf_text_split(tx);
    if (o->text)
        printf("text: %s, %d characters: %d for training, %d held out\n  (%d of those not in "
               "the vocabulary: <unk>)\nvocabulary %d (%d specials):\n", o->text, tx->n,
               split, tx->n - split, tx->unknown, tx->V, tx->first);
    else printf("text: %d characters (%d for training, %d held out)\nvocabulary %d:\n",
                tx->n, split, tx->n - split, tx->V);
    size_t at = 0;
    char *voc = xmalloc(16 * (size_t)tx->V + 3);   /* the vocabulary, quoted */
    voc[at++] = '"';
    for (int k = o->text ? tx->first : 0; k < tx->V; k++) {
        tf_label(voc + at, 16, k, c, tx);
        at += strlen(voc + at);
    }
    strcpy(voc + at, "\"");
    tf_print_wrapped(voc, 2, 78);
    free(voc);
    printf("held-out: %d window%s of %d characters, evenly spaced%s\n", n_eval,
           tf_plural(n_eval), c->S, n_eval < o->run.n_eval ? "\n  (--eval capped at the "
           "distinct windows the held-out text holds)" : "");
    if (o->text)
        printf("  (what training watches; the figure after training reads every window\n"
               "  that tiles the held-out part)\n");
}

/* After training (or loading): held-out accuracy and loss. The built-in
 * text: a fresh draw (BERT: fresh masks) against always guessing the
 * commonest character; a file: every window of its held-out part
 * (tf_evaluate_all), beside the estimate training watched. */
static void tf_text_report(TfModel *m, const TfCli *o, const TfText *tx, int steps) {
    const TfConfig *c = &m->c;
    const int split = tf_text_split(tx), bert = c->arch == TF_ENCODER;
    const char *what = bert ? "masked-token" : "next-character";
    if (o->text) {
        int windows;
        TfEval all = tf_evaluate_all(m, &o->run, tx, &windows);
        TfEval ev = tf_evaluate(m, &o->run, tx, TF_EVAL_WATCHED);
        printf("\n%s %d step%s: validation loss %.4f (perplexity %.2f),\n  %s accuracy %.4f, "
               "over all %d windows of %d that tile\n  the held-out %d characters; the %d "
               "windows training watched give %.4f\n", o->load && !o->resume ? "loaded, trained" : "after",
               steps, tf_plural(steps), all.loss, exp(all.loss), what, all.tok_acc, windows,
               c->S, tx->n - split, tf_eval_count(c, &o->run, tx), ev.loss);
        return;
    }
    int *freq = xmalloc(sizeof(int) * (size_t)tx->V), top = 0;   /* held-out counts */
    memset(freq, 0, sizeof(int) * (size_t)tx->V);
    for (int i = split; i < tx->n; i++) freq[tx->ids[i]]++;
    for (int k = 1; k < tx->V; k++) if (freq[k] > freq[top]) top = k;
    TfEval ev = tf_evaluate(m, &o->run, tx, TF_EVAL_FRESH);     /* BERT: fresh masks */
    printf("\nafter %d step%s%s: held-out %s accuracy %.4f,\n  loss %.4f (perplexity %.2f); "
           "always guessing '%s' scores %.4f\n", steps, tf_plural(steps),
           bert ? ", fresh masks" : "", what, ev.tok_acc, ev.loss, exp(ev.loss),
           tx->sym[top], (double)freq[top] / (tx->n - split));
    free(freq);
}

/* the BERT-style and GPT-style runs on a text: train (a new model, or
 * --load's on from its step: o->resume; a loaded model is otherwise used),
 * report held-out accuracy and loss, save (--save), show BERT's guesses or
 * GPT's sample, then the heads of layer `show` on a held-out window (on the
 * prompt, with --prompt). A loaded model without --text only samples. */
static void tf_main_text(TfModel *m, const TfCli *o, const TfText *tx, FILE *csv) {
    const TfConfig *c = &m->c;
    const int bert = c->arch == TF_ENCODER;
    int steps = m->step;
    if (tx->n) tf_text_header(o, tx, tf_eval_count(c, &o->run, tx));
    if (!o->load || o->resume) {
        TfEval ev;
        const double t0 = seconds();
        const int from = m->step;
        steps = tf_train(m, &o->run, tx, stdout, csv, &ev);
        tf_stop_if_diverged(m);
        fprintf(stderr, "trained %d step%s%s in %.1f s of processor time\n", steps - from,
                tf_plural(steps - from), from ? ", on from a checkpoint's," : "",
                seconds() - t0);
    }
    if (tx->n) tf_text_report(m, o, tx, steps);
    if (o->save) {
        tf_ckpt_save(o->save, m, tx, &o->run);
        printf("saved the model to %s\n", o->save);
    }
    TfBatch b;
    tf_batch_alloc(&b, c);
    b.n = 1;
    if (tx->n) {
        Rng mr;
        rng_seed(&mr, o->run.seed ^ 0x3A5Cull);
        tf_text_batch(&b, NULL, &mr, tx, tf_text_split(tx), tx->n, 0, 1, c);
        tf_forward(m, &b);
    }
    if (bert) tf_show_guesses(m, &b, tx);
    else if (o->prompt || !o->load) tf_show_sample(m, o, tx);
    if (o->prompt) tf_show_prompt_heads(m, o, tx);
    else if (tx->n) {
        if (!bert) tf_forward(m, &b);           /* the held-out window again, to draw */
        TfPic pic = { "", "query (position in the window)", "key (position in the window)",
                      !bert, "" };
        snprintf(pic.what, sizeof pic.what, "%s self-attention, layer %d", bert
                 ? "bidirectional" : "causal", o->show);
        tf_pic_name(&pic, tf_arch_names[c->arch], "text", bert ? TF_SHOW_ENC : TF_SHOW_SELF,
                    o->show);
        printf("\n");
        tf_show_heads(m, tf_attention_map(m, &m->a.es[2 * (o->show - 1)], 0, c->S, c->S), c->S,
                      c->S, b.src, b.src, &pic, o->svg, tx);
        tf_trace_run(m, o, &b, tx);
    }
    tf_batch_free(&b);
}

/* print tokens (n) of d's vocabulary: source characters as a word, target
 * symbols separated by spaces */
static void tf_pairs_print(const TfPairs *d, const int *tok, int n, int target) {
    for (int t = 0; t < n; t++) printf("%s%s", target && t ? " " : "", tf_pairs_sym(d, tok[t]));
}

/* d's vocabulary as a TfText's (labels of at most 4 bytes, for tf_label):
 * a symbol longer than that shows as '#' and its id */
static void tf_pairs_labels(TfText *tx, const TfPairs *d) {
    static const char specials[TOK_SPECIALS][5] = { "_", "^", "$", "\xEF\xBF\xBD" };
    memset(tx, 0, sizeof *tx);
    tx->V = d->V;
    tx->first = TOK_SPECIALS;
    tx->sym = xmalloc(sizeof tx->sym[0] * (size_t)d->V);
    for (int k = 0; k < d->V; k++) {
        if (k < TOK_SPECIALS) strcpy(tx->sym[k], specials[k]);
        else if (strlen(tf_pairs_sym(d, k)) <= 4) strcpy(tx->sym[k], tf_pairs_sym(d, k));
        else snprintf(tx->sym[k], 5, "#%d", k % 1000);
    }
}

/* the heads of layer o->show (attention o->attn) as the model decoded
 * example 0 of b greedily (the caches hold its last decoder pass), cut to
 * its letters and to the decoder's steps up to the one that wrote </s> */
static void tf_show_pairs_heads(TfModel *m, const TfCli *o, const TfBatch *b, const int *out,
                                const char *source) {
    const TfConfig *c = &m->c;
    TfText tx;
    tf_pairs_labels(&tx, o->run.data);
    int Ls = 0, Lt = tf_pred_len(out, c->T) + 1;
    while (Ls < c->S && b->smask[Ls]) Ls++;
    if (Lt > c->T) Lt = c->T;
    const int enc = o->attn == TF_SHOW_ENC, self = o->attn == TF_SHOW_SELF;
    const int Tq = enc ? c->S : c->T, Tk = self ? c->T : c->S;
    const int Lq = enc ? Ls : Lt, Lk = self ? Lt : Ls;
    const TfSub *s = enc ? &m->a.es[2 * (o->show - 1)]
                         : &m->a.ds[3 * (o->show - 1) + (o->attn == TF_SHOW_CROSS)];
    const double *P = tf_attention_map(m, s, 0, Tq, Tk);
    double *Pc = xcalloc_doubles(c->H * Lq * Lk);
    for (int h = 0; h < c->H; h++)
        for (int i = 0; i < Lq; i++)
            memcpy(Pc + (h * Lq + i) * Lk, P + (h * Tq + i) * Tk, sizeof(double) * (size_t)Lk);
    TfPic pic;
    tf_pic_encdec(&pic, o->attn, o->show, source);
    printf("\n");
    tf_show_heads(m, Pc, Lq, Lk, enc ? b->src : b->tgt, self ? b->tgt : b->src, &pic, o->svg,
                  &tx);
    tf_trace_run(m, o, b, &tx);
    free(Pc);
    tf_text_free(&tx);
}

/* --data: the first k test words (in sorted order), their greedy
 * predictions and pronunciations, then the heads drawn for the first */
static void tf_show_pairs(TfModel *m, const TfCli *o, int k, const char *source) {
    const TfPairs *d = o->run.data;
    const TfConfig *c = &m->c;
    tf_pairs_fit(m, d->S, d->T);
    TfBatch b;
    tf_batch_alloc(&b, c);
    int *out = xmalloc(sizeof(int) * (size_t)(c->B * c->T));
    b.n = k < d->nwords[SPLIT_TEST] ? k : d->nwords[SPLIT_TEST];
    b.n = b.n < c->B ? b.n : c->B;
    printf("\ntest words, greedy decoding:\n");
    for (int pass = 0; pass < 2; pass++) {       /* all k, then the first alone, to draw */
        for (int e = 0; e < b.n; e++)
            tf_pairs_fill(&b, e, d, d->alt[d->wstart[d->words[SPLIT_TEST][e]]], c);
        memset(b.tmask, 1, (size_t)(c->B * c->T));
        tf_greedy_decode(m, &b, out);
        for (int e = 0; pass == 0 && e < b.n; e++) {
            const int w = d->words[SPLIT_TEST][e], i = d->alt[d->wstart[w]];
            printf("  ");
            tf_pairs_print(d, d->src + (size_t)i * d->S, d->slen[i], 0);
            printf("  ->  ");
            tf_pairs_print(d, out + e * c->T, tf_pred_len(out + e * c->T, c->T), 1);
            for (int j = d->wstart[w]; j < d->wstart[w + 1]; j++) {
                printf("%s", j == d->wstart[w] ? "   (reference: " : " | ");
                tf_pairs_print(d, d->tgt + (size_t)d->alt[j] * d->T, d->tlen[d->alt[j]] - 1, 1);
            }
            printf(")\n");
        }
        b.n = 1;
    }
    tf_show_pairs_heads(m, o, &b, out, source);
    free(out);
    tf_batch_free(&b);
}

/* the --data lines before training: the file, its split and vocabularies */
static void tf_pairs_header(const TfCli *o) {
    const TfPairs *d = o->run.data;
    printf("data: %s, %d pairs (%s), %d words\n  split 90/5/5 by a hash of the word and "
           "--seed %d, a word's pronunciations\n  together: train %d words (%d pairs), dev %d "
           "words, test %d words\n", o->data, d->n, d->tsv ? "source<TAB>target" : "CMUdict",
           d->nword, o->seed, d->nwords[SPLIT_TRAIN], d->ntrain, d->nwords[SPLIT_DEV],
           d->nwords[SPLIT_TEST]);
    printf("vocabulary (%s): %d source characters, %d target symbols,\n  4 "
           "specials (one id space, one shared embedding)\n", o->load ? "the loaded model's"
           : "training split", d->lv.n - TOK_SPECIALS, d->pv.n - TOK_SPECIALS);
    printf("lengths: longest source %d characters (line %d), longest target %d symbols\n"
           "  + </s> (line %d); the model's source %d, target %d\n", d->S, d->long_src,
           d->T - 1, d->long_tgt, o->c.S, o->c.T);
    printf("%s tokens the %s lacks (read as <unk>):\n  %d source, %d target\n", o->load
           ? "the file's" : "dev and test", o->load ? "loaded vocabulary" : "training split",
           d->unk_src, d->unk_tgt);
    if (o->load && !o->resume) { printf("\n"); return; }   /* no dev evaluations */
    printf("dev: every %d steps, greedy PER on %d dev words (evenly spaced);\n  the best "
           "parameters are kept\n\n", o->run.eval_every, o->run.n_eval < d->nwords[SPLIT_DEV]
           ? o->run.n_eval : d->nwords[SPLIT_DEV]);
}

/* --data: test PER and WER on every test word, greedy and (--beam K) by
 * beam search, each scored against the nearest of the word's
 * pronunciations */
static void tf_pairs_test(TfModel *m, const TfCli *o) {
    TfPairs *d = o->run.data;
    printf("test, %d words (each decoded once; scored against the nearest of its\n"
           "  pronunciations):\n", d->nwords[SPLIT_TEST]);
    for (int k = 1; k <= o->beam; k += o->beam > 1 ? o->beam - 1 : 1) {
        ErrorRate er;
        char how[16];
        const double t1 = seconds();
        if (k == 1) tf_pairs_evaluate(m, d, SPLIT_TEST, 0, &er);
        else tf_pairs_evaluate_beam(m, d, SPLIT_TEST, k, &er);
        snprintf(how, sizeof how, k == 1 ? "greedy" : "beam %d", k);
        printf("  %-8s PER %.2f%% (%ld edits / %ld reference symbols), WER %.2f%%\n"
               "           (%d words wrong), in %.1f s\n", how, 100.0 * error_rate_per(&er),
               er.edits, er.ref_len, 100.0 * error_rate_wer(&er), er.wrong, seconds() - t1);
    }
}

/* the --data run: train with model selection on dev and restore the best
 * state (a new model, or --load's on from its step: o->resume; a loaded
 * model is otherwise measured as it is), then test PER and WER on every test
 * word, examples and heads, and --save */
static void tf_main_pairs(TfModel *m, const TfCli *o, FILE *csv) {
    TfPairs *d = o->run.data;
    tf_pairs_header(o);
    if (!o->load || o->resume) {
        TfEval ev;
        const double t0 = seconds();
        const int from = m->step, steps = tf_train(m, &o->run, NULL, stdout, csv, &ev);
        tf_stop_if_diverged(m);
        const double secs = seconds() - t0;
        tf_pairs_restore(m, d);                 /* the best dev PER's state and step */
        printf("\ntrained %s%d%s (%.2f epochs) in %.1f s of processor time;\n  kept the "
               "parameters of step %d, the best dev PER (%.2f%%)\n", from ? "on to step " :
               "", steps, from ? "" : steps == 1 ? " step" : " steps",
               (double)steps * o->c.B / d->ntrain, secs, d->best_step, 100.0 * d->best_per);
    }
    tf_pairs_test(m, o);
    tf_show_pairs(m, o, 6, "data");
    if (o->save) {
        m->c.S = o->c.S; m->c.T = o->c.T;       /* the lengths it was built with */
        tf_pairs_ckpt_save(o->save, m, d, &o->run);
        printf("\nsaved the model to %s\n", o->save);
    }
}

/* Decode one source src (slen) into out (T = m's built target length) with
 * --beam's search or greedily; returns the length before </s>. Then a
 * teacher-forced pass over [<s>, out] leaves in the caches the attention
 * that wrote each symbol, for tf_show_pairs_heads (b: example 0). */
static int tf_decode_word(TfModel *m, TfBatch *b, const int *src, int slen, int beam, int T,
                          int *out) {
    int len;
    if (beam > 1) len = tf_pairs_beam(m, b, src, slen, beam, T, out);
    else {
        tf_pairs_fit(m, slen, T);
        b->n = 1;
        for (int t = 0; t < slen; t++) { b->src[t] = src[t]; b->smask[t] = 1; }
        tf_pairs_decode(m, b, T, out);
        len = tf_pred_len(out, T);
    }
    const int Lt = len + 1 < T ? len + 1 : T;
    tf_pairs_fit(m, slen, Lt);
    b->n = 1;
    for (int t = 0; t < slen; t++) { b->src[t] = src[t]; b->smask[t] = 1; }
    for (int t = 0; t < Lt; t++) { b->tgt[t] = t ? out[t - 1] : TF_BOS; b->tmask[t] = 1; }
    tf_encode(m, b);
    tf_decode(m, b);
    return len;
}

/* "input-WORD" into buf (n bytes), for --input's picture: WORD's ASCII
 * letters, digits and '-' as they are, any other byte as '_', at most 24 */
static const char *tf_input_name(char *buf, size_t n, const char *word) {
    size_t at = (size_t)snprintf(buf, n, "input-");
    for (; *word && at + 1 < n && at < 30; word++)
        buf[at++] = isalnum((unsigned char)*word) || *word == '-' ? *word : '_';
    buf[at] = '\0';
    return buf;
}

/* --load of an encdec model without --data: the symbols of --input's word
 * and its attention heads (as tf_show_pairs_heads draws them; with --svg
 * into DIR/transformer-encdec-input-WORD-<attn>-L<k>.svg), or of each line of
 * stdin, one "word  PH O NE MES" line each, a dictionary. A word the model
 * cannot read is refused with the reason: --input's exits 2; stdin's is
 * skipped, said on stderr, and the run exits 2 at the end. */
static void tf_main_use(TfCli *o, TfModel *m) {
    const TfPairs *d = &o->loaded;
    const int S = m->c.S, T = m->c.T;
    o->run.data = &o->loaded;                   /* the labels of the heads */
    TfBatch b;
    tf_batch_alloc(&b, &m->c);
    int *src = xmalloc(sizeof(int) * (size_t)S), *out = xmalloc(sizeof(int) * (size_t)T);
    char line[4096], why[300], name[40];
    int bad = 0, slen;
    for (int ln = 1; o->input ? ln == 1 : fgets(line, sizeof line, stdin) != NULL; ln++) {
        if (o->input) snprintf(line, sizeof line, "%s", o->input);
        else if (!strchr(line, '\n') && !feof(stdin))
            opt_fail(&o->t, "stdin line %d: longer than %d bytes: not a word", ln,
                     (int)sizeof line - 1);
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0] && !o->input) continue;
        if (vocab_encode_input(&d->lv, line, src, S, &slen, why, sizeof why) != 0) {
            if (o->input) opt_fail(&o->t, "--input '%s': %s", line, why);
            fprintf(stderr, "%s: stdin line %d: %s; skipped\n", o->t.prog, ln, why);
            bad = 1;
            continue;
        }
        const int len = tf_decode_word(m, &b, src, slen, o->beam, T, out);
        printf("%s ", line);
        for (int i = 0; i < len; i++) printf(" %s", tf_pairs_sym(d, out[i]));
        printf("\n");
        if (o->input) tf_show_pairs_heads(m, o, &b, out, tf_input_name(name, sizeof name, line));
        fflush(stdout);
    }
    free(src); free(out);
    tf_batch_free(&b);
    tf_free(m);
    if (bad) exit(2);
}

static const char tf_about[] =
    "  The Transformer of chapter 3, trained by hand. Default: the encoder-decoder\n"
    "  on a copy task after The Annotated Transformer's, vocabulary 11: 0 padding,\n"
    "  1 the start symbol, 2..10 the symbols. Here the source is 10 symbols from\n"
    "  2..10 and all 10 are predicted (the decoder reads start + the first 9). In\n"
    "  The Annotated Transformer every sequence is start symbol 1 then 9 symbols\n"
    "  from 1..10, and 9 are predicted. We keep the start symbol out of the source\n"
    "  and out of the symbols, so it marks only the decoder's first step and the\n"
    "  source has no constant first token to align on.";
static const char tf_after[] =
    "An option applies only where it is used (\"only with\" above), and is refused\n"
    "elsewhere: --experiment positions sets --task and --pos itself, heads sets\n"
    "--heads, extrapolate sets --pos (sin, then learned), cost reads only --seed\n"
    "and --svg; --bench runs fixed configurations and the default example and\n"
    "takes no other option.\n"
    "\n"
    "--svg DIR writes every picture of the run into DIR, named for what it shows:\n"
    "transformer-<arch>-<task, text or data>-<attention>-L<layer>.svg (all heads of\n"
    "a layer), ...-curve.svg (training loss above the held-out metric), and\n"
    "transformer-<experiment>.svg; a file of that name already in DIR is replaced.\n";

/* The option table's second half: drawing, sampling and seeds, then real
 * data (a text file, a budget, a log, checkpoints) and the schedule and
 * rates of nanoGPT's recipe (tf_cli_table_more; its decay and clipping open
 * tf_cli_table_data). */
enum { TF_N_TABLE1 = 20, TF_N_TABLE2 = 36 };

/* The option table's last rows: the rest of nanoGPT's optimiser options,
 * the encdec on a pair file (--data), and a saved one's words (--input,
 * --beam). */
static void tf_cli_table_data(TfCli *o) {
    const Opt all[] = {
        { "--weight-decay", OPT_REAL, &o->run.wd, 0, 1, NULL, TF_TRAINS, "X", "AdamW's "
          "decay of the weight matrices (biases and\nLayerNorm gains do not decay)", 0 },
        { "--clip", OPT_REAL, &o->run.clip, 0, 1e6, NULL, TF_TRAINS, "X",
          "clip the gradient norm to X (0: never)", 0 },
        { "--data", OPT_PATH, &o->data, 0, 0, NULL, TF_M(ENCDEC), "FILE", "train on CMUdict "
          "(word PH O NE MES) or source<TAB>\ntarget lines: letters in, symbols out; 90/5/5 "
          "by word\nand --seed; best dev PER kept; test PER, WER at the\nend (README, \"Real "
          "data\", says more)", 0 },
        { "--input", OPT_PATH, &o->input, 0, 0, NULL, TF_M(ENCDEC), "WORD", "with --load of "
          "an encdec model: WORD's symbols\nand its attention (default: one word a line from\n"
          "stdin, 'word  PH O NE MES')", 0 },
        { "--beam", OPT_INT, &o->beam, 1, 64, NULL, TF_M(ENCDEC), "K", "--data, --input and "
          "stdin: beam search with K\nbeams (1: greedy); --data gives the test PER and\nWER "
          "both ways", 0 },
        { "--trace", OPT_FLAG, &o->trace, 0, 0, NULL, TF_ARCHS, "", "after the run, print "
          "one head step by step: X, Q,\nK, V, the scores, the mask, the weights, the output;"
          "\n--show-attn's attention (default: the arch's\nself-attention, encdec's encoder) "
          "in --show-layer\n(default: layer 1)", 0 },
        { "--trace-head", OPT_INT, &o->trace_head, 1, 64, NULL, TF_ARCHS, "K",
          "the head --trace prints", 0 },
    };
    (void)sizeof(char[sizeof all == (TF_N_OPTS - TF_N_TABLE2) * sizeof(Opt) ? 1 : -1]);
    memcpy(o->opt + TF_N_TABLE2, all, sizeof all);
}

static void tf_cli_table_more(TfCli *o) {
    const Opt all[] = {
        { "--temperature", OPT_REAL, &o->temperature, 0, 10, NULL, TF_M(DECODER), "X",
          "sampling temperature (0: greedy)", 0 },
        { "--svg", OPT_PATH, &o->svg, 0, 0, NULL, TF_ARCHS | TF_M(POSITIONS) | TF_M(HEADS) |
          TF_M(COST) | TF_M(EXTRAP), "DIR", "write pictures into the existing DIR: a layer's\nheads, "
          "the training curve, an experiment's\nchart (transformer-*.svg; same name: "
          "replaced)", 0 },
        { "--seed", OPT_INT, &o->seed, 0, 2147483647, NULL, TF_TRAINS | TF_M(COST), "N",
          "seed of the weights and the data", 0 },
        { "--experiment", OPT_CHOICE, &o->experiment, 0, 0, tf_experiment_names,
          TF_M(POSITIONS) | TF_M(HEADS) | TF_M(COST) | TF_M(EXTRAP), "E", "instead of one "
          "run (the default): positions\n(reverse with --pos none, sin, learned), heads (1..8\n"
          "heads, same d_model), cost (self-attention time\nand memory vs length; timings on "
          "stdout) or\nextrapolate (--pos sin vs learned, trained on\nlengths up to --len, "
          "tested up to twice that;\n--task: default reverse)", 0 },
        { "--bench", OPT_FLAG, &o->bench, 0, 0, NULL, TF_M(BENCH), "", "ms per training "
          "step in two configurations, and the\ntime the default example takes to reach "
          "100%", 0 },
        { "--text", OPT_PATH, &o->text, 0, 0, NULL, TF_M(ENCODER) | TF_M(DECODER), "FILE",
          "train on this UTF-8 text file instead of the\nbuilt-in text: one token per "
          "character (code\npoint), first 90% train, last 10% held out", 0 },
        { "--minutes", OPT_RATE, &o->run.minutes, 0, 1e6, NULL, TF_ARCHS, "M", "stop training "
          "after M minutes of wall time\n(default: no limit; the schedule still spans "
          "--steps;\nthis session's: --load ... --minutes M trains on\nfor M more)", 0 },
        { "--log", OPT_PATH, &o->log, 0, 0, NULL, TF_ARCHS, "FILE", "write a CSV row at each "
          "held-out evaluation: step,\ntrain loss, held-out loss and accuracy, lr, seconds", 0 },
        { "--prompt", OPT_PATH, &o->prompt, 0, 0, NULL, TF_M(DECODER), "TEXT", "sample after "
          "TEXT (every character must be in the\nvocabulary; the model reads the last --len of "
          "them\nas its context, as it does while sampling;\ndefault: the text's first 4)", 0 },
        { "--chars", OPT_INT, &o->chars, 1, 1000000, NULL, TF_M(DECODER), "N",
          "characters to sample", 0 },
        { "--save", OPT_PATH, &o->save, 0, 0, NULL, TF_ARCHS, "FILE", "after training on "
          "a text or --data, write the model\n(config, vocabulary, weights, Adam state, "
          "step,\nthe training options) to FILE", 0 },
        { "--load", OPT_PATH, &o->load, 0, 0, NULL, TF_ARCHS, "FILE", "use the model in FILE "
          "instead of training one:\n--prompt samples from it, --text measures it; an\n"
          "encdec model converts --input or stdin's words,\nor --data FILE measures it; it "
          "sets --arch and\nthe model's size. With --steps N (the total, its\nown steps "
          "included) or --minutes M and the file\nit trained on (--text, --data): trains "
          "on from\nits weights, Adam state and step, with the\ntraining options and "
          "--seed it saved (those\ngiven replace them; --data refuses another\n--seed): "
          "bit for bit one run, if N is its saved\n--steps or the schedule is noam; --save "
          "may\nname FILE itself", 0 },
        { "--schedule", OPT_CHOICE, &o->run.sched, 0, 0, tf_sched_names, TF_TRAINS, "S",
          "noam: the paper's warm-up (--lr-factor);\ncosine: nanoGPT's (--lr, --lr-min)", 0 },
        { "--lr", OPT_RATE, &o->run.lr, 0, 10, NULL, TF_TRAINS, "X",
          "peak learning rate of --schedule cosine", 0 },
        { "--lr-min", OPT_REAL, &o->run.lr_min, 0, 10, NULL, TF_TRAINS, "X",
          "final learning rate of --schedule cosine", 0 },
        { "--beta2", OPT_REAL, &o->run.beta2, 0, 0.99999, NULL, TF_TRAINS, "X",
          "Adam's beta2 (nanoGPT: 0.99)", 0 },
    };
    (void)sizeof(char[sizeof all == (TF_N_TABLE2 - TF_N_TABLE1) * sizeof(Opt) ? 1 : -1]);
    memcpy(o->opt + TF_N_TABLE1, all, sizeof all);
    tf_cli_table_data(o);
}

/* The option table: name, kind, where the value goes, range or choices, the
 * modes it applies to, and its help. The defaults are what o holds now. */
static void tf_cli_table(TfCli *o) {
    const Opt all[] = {
        { "--arch", OPT_CHOICE, &o->c.arch, 0, 0, tf_arch_names, TF_ARCHS, "A", "encdec: the "
          "paper's; encoder: BERT-style masked tokens\non a built-in text; decoder: "
          "GPT-style next character", 0 },
        { "--task", OPT_CHOICE, &o->run.task, 0, 0, task_names, TF_M(ENCDEC) | TF_M(HEADS) |
          TF_M(EXTRAP),
          "T", "what the encoder-decoder learns to output", 0 },
        { "--norm", OPT_CHOICE, &o->c.norm, 0, 0, tf_norm_names, TF_TRAINS, "N",
          "post (the paper) or pre LayerNorm", 0 },
        { "--pos", OPT_CHOICE, &o->c.pos, 0, 0, tf_pos_names, TF_ARCHS | TF_M(HEADS), "P",
          "positional encoding", 0 },
        { "--act", OPT_CHOICE, &o->c.act, 0, 0, tf_act_names, TF_TRAINS, "A",
          "activation of the feed-forward network", 0 },
        { "--d-model", OPT_INT, &o->c.D, 1, 1024, NULL, TF_TRAINS, "D", "model width", 0 },
        { "--heads", OPT_INT, &o->c.H, 1, 64, NULL, TF_ARCHS | TF_M(POSITIONS) | TF_M(EXTRAP),
          "H",
          "attention heads; must divide --d-model", 0 },
        { "--layers", OPT_INT, &o->layers, 1, 16, NULL, TF_TRAINS, "N",
          "encoder and decoder layers each", 0 },
        { "--ff", OPT_INT, &o->c.F, 1, 8192, NULL, TF_TRAINS, "F", "feed-forward width", 0 },
        { "--len", OPT_INT, &o->len, 2, TF_MAX_POS, NULL, TF_TRAINS, "L",
          "sequence length (default 10; text archs 32)", 0 },
        { "--vocab", OPT_INT, &o->vocab, 4, 1000, NULL, TF_TASKS, "V",
          "symbols + 2 of the encdec tasks", 0 },
        { "--batch", OPT_INT, &o->c.B, 1, 4096, NULL, TF_TRAINS, "B", "examples per step", 0 },
        { "--steps", OPT_INT, &o->run.steps, 1, 1000000, NULL, TF_TRAINS, "N", "the most "
          "training steps; encdec stops at 100% held-out\naccuracy (default 3000; "
          "encoder 1000, decoder 300;\nwith --load: the total, its steps included)", 0 },
        { "--warmup", OPT_INT, &o->run.warmup, 1, 1000000, NULL, TF_TRAINS, "N",
          "warm-up steps of the learning-rate schedule", 0 },
        { "--lr-factor", OPT_RATE, &o->run.lr_factor, 0, 100, NULL, TF_TRAINS, "X",
          "factor of the schedule", 0 },
        { "--smoothing", OPT_REAL, &o->c.smoothing, 0, 0.5, NULL, TF_TRAINS, "E",
          "label smoothing", 0 },
        { "--eval", OPT_INT, &o->run.n_eval, 1, 100000, NULL, TF_TRAINS, "N",
          "held-out examples", 0 },
        { "--eval-every", OPT_INT, &o->run.eval_every, 1, 1000000, NULL,
          TF_TRAINS & ~TF_M(EXTRAP), "N",
          "steps between held-out evaluations", 0 },
        { "--show-layer", OPT_INT, &o->show, 1, 16, NULL, TF_ARCHS, "K", "layer whose heads "
          "are drawn, at most --layers\n(default: the last)", 0 },
        { "--show-attn", OPT_CHOICE, &o->attn, 0, 0, tf_attn_names, TF_ARCHS, "W", "enc "
          "(encoder), self (decoder, causal) or cross\n(decoder to encoder) attention is "
          "drawn; default: the\narch's own; each needs the stack it names", 0 },
    };
    (void)sizeof(char[sizeof all == TF_N_TABLE1 * sizeof(Opt) ? 1 : -1]);
    memcpy(o->opt, all, sizeof all);
    tf_cli_table_more(o);
}

/* --data: the vocabulary and the lengths are the data's (S the longest
 * source, T the longest target + 1); --len, if given, must hold both and
 * then sets both; --task and --vocab, which only the synthetic tasks use,
 * are refused */
static void tf_cli_resolve_data(TfCli *o) {
    TfConfig *c = &o->c;
    const TfPairs *d = &o->pairs;
    static const char *const task_opts[] = { "--task", "--vocab" };
    for (int k = 0; k < 2; k++)
        if (opt_given(&o->t, task_opts[k]))
            opt_fail(&o->t, "%s sets up a synthetic task; --data %s brings its own pairs and "
                     "vocabulary: leave %s out", task_opts[k], o->data, task_opts[k]);
    c->V = d->V;
    c->S = d->S;
    c->T = d->T;
    if (opt_given(&o->t, "--len")) {
        if (o->len < d->S || o->len < d->T)
            opt_fail(&o->t, "--len %d is too short for --data %s: its longest source (line %d) "
                     "has %d characters and its longest target (line %d) %d symbols + </s>; "
                     "give --len %d or more, or leave --len out (it is then sized from the data)",
                     o->len, o->data, d->long_src, d->S, d->long_tgt, d->T - 1,
                     d->S > d->T ? d->S : d->T);
        c->S = c->T = o->len;
    }                                           /* tf_pairs_read refused S, T > TF_MAX_POS */
}

/* Settle what depends on the arch: the task's vocabulary and length, or the
 * built-in text's; each refused when it leaves no held-out split. */
static void tf_cli_resolve(TfCli *o, const TfText *tx) {
    TfConfig *c = &o->c;
    c->n_enc = c->n_dec = o->layers;
    if (c->arch == TF_ENCDEC && o->data) { tf_cli_resolve_data(o); return; }
    if (c->arch == TF_ENCDEC) {
        c->V = o->vocab;
        c->S = c->T = o->len;
        if (tf_task_space(c) < TF_MIN_SOURCES)
            opt_fail(&o->t, "--vocab %d with --len %d gives only %.0f distinct sources; a "
                     "held-out split (1 in 10 held out) needs at least %.0f: raise --len or "
                     "--vocab", c->V, c->S, tf_task_space(c), TF_MIN_SOURCES);
        if (o->mode != TF_M_EXTRAP) return;
        if (2 * o->len > TF_MAX_POS)            /* built for 2L: tested up to twice --len */
            opt_fail(&o->t, "--experiment extrapolate tests up to twice --len; --len %d "
                     "would need %d positions, more than %d: give --len %d or less", o->len,
                     2 * o->len, TF_MAX_POS, TF_MAX_POS / 2);
        c->S = c->T = 2 * o->len;
        if (!opt_given(&o->t, "--task")) o->run.task = TASK_REVERSE;
        return;
    }
    c->V = tx->V;
    c->S = opt_given(&o->t, "--len") ? o->len : 32;
    c->T = c->n_dec = 0;
    if (!opt_given(&o->t, "--steps")) o->run.steps = c->arch == TF_ENCODER ? 1000 : 300;
    const int most = tx->n - tf_text_split(tx) - 2;     /* one held-out window, and its next */
    if (c->S > most)
        opt_fail(&o->t, "--len %d is longer than the held-out text allows (at most %d for "
                 "--arch %s)", c->S, most, tf_arch_names[c->arch]);
}

/* The model's own checks: every head gets D / H features, and the largest
 * block fits (tf_size_estimate; the refusal says which --len would). */
static void tf_cli_check_model(TfCli *o) {
    TfConfig *c = &o->c;
    if (o->mode == TF_M_HEADS) {                /* the experiment picks the head counts */
        if (c->D % 2)
            opt_fail(&o->t, "--experiment heads runs 1, 2, 4 and 8 heads, those that divide "
                     "--d-model; --d-model %d allows only 1 head, nothing to compare: give an "
                     "even --d-model (a multiple of 8 runs all four)", c->D);
        c->H = c->D % 8 == 0 ? 8 : c->D % 4 == 0 ? 4 : 2;  /* the most it runs: sized below */
    }
    if (c->D % c->H)
        opt_fail(&o->t, "--d-model %d is not divisible by --heads %d (each head gets d_model / "
                 "heads features): give a multiple of %d", c->D, c->H, c->H);
    const double need = tf_size_estimate(c);
    if (need > TF_MAX_DOUBLES) {
        const int fits = tf_largest_len(c);
        if (fits >= 2)
            opt_fail(&o->t, "--len %d: this model needs about %.2g doubles (%.1f GB) in its "
                     "largest block (activations or parameters); the limit is %.0e (%.1f GB). "
                     "With the other options as given the largest --len that fits is %d; or "
                     "make --batch, --d-model, --ff or --layers smaller", c->S, need,
                     8e-9 * need, TF_MAX_DOUBLES, 8e-9 * TF_MAX_DOUBLES, fits);
        opt_fail(&o->t, "this model needs about %.2g doubles (%.1f GB) in its largest block "
                 "(activations or parameters); the limit is %.0e (%.1f GB). Even --len 2 does "
                 "not fit: make --batch, --d-model, --ff or --layers smaller", need,
                 8e-9 * need, TF_MAX_DOUBLES, 8e-9 * TF_MAX_DOUBLES);
    }
    const char *err = tf_config_error(c);
    if (err) opt_fail(&o->t, "%s", err);
}

/* --show-layer and --show-attn: a layer the model has, an attention its arch has */
static void tf_cli_check_show(TfCli *o) {
    const TfConfig *c = &o->c;
    if (!opt_given(&o->t, "--show-layer")) o->show = c->n_enc;
    if (o->show > c->n_enc)
        opt_fail(&o->t, "--show-layer must be between 1 and --layers (%d), got %d", c->n_enc,
                 o->show);
    if (!opt_given(&o->t, "--show-attn"))
        o->attn = c->arch == TF_ENCDEC ? TF_SHOW_CROSS : c->arch == TF_ENCODER ? TF_SHOW_ENC
                                                                               : TF_SHOW_SELF;
    static const int has[3][3] = {               /* [arch][attn]: does the arch have it? */
        { 1, 1, 1 }, { 1, 0, 0 }, { 0, 1, 0 } };
    if (!has[c->arch][o->attn])
        opt_fail(&o->t, "--show-attn %s needs %s; --arch %s has %s", tf_attn_names[o->attn],
                 o->attn == TF_SHOW_ENC ? "an encoder" : o->attn == TF_SHOW_SELF ? "a decoder"
                 : "an encoder and a decoder (--arch encdec)", tf_arch_names[c->arch],
                 c->arch == TF_ENCODER ? "only an encoder: use enc"
                                       : "only a (causal) decoder: use self");
    o->trace_attn = opt_given(&o->t, "--show-attn") ? o->attn : TF_SHOW_ENC;
    o->trace_layer = opt_given(&o->t, "--show-layer") ? o->show : 1;
    if (opt_given(&o->t, "--trace-head") && !o->trace)
        opt_fail(&o->t, "--trace-head picks the head --trace prints: add --trace");
    if (o->trace_head > c->H)
        opt_fail(&o->t, "--trace-head %d: the model has %d head%s", o->trace_head, c->H,
                 c->H == 1 ? "" : "s");
    if (o->trace && c->arch == TF_ENCDEC && o->load && !o->data && !o->input)
        opt_fail(&o->t, "--trace follows --input's word; words from stdin get none: give "
                 "--input WORD, or drop --trace");
}

/* The training options that belong to one schedule are refused with the
 * other, and the cosine's floor may not exceed its peak. */
static void tf_cli_check_run(TfCli *o) {
    const TfRun *run = &o->run;
    const int cosine = run->sched == TF_SCHED_COSINE;
    if (!cosine && (opt_given(&o->t, "--lr") || opt_given(&o->t, "--lr-min")))
        opt_fail(&o->t, "--lr and --lr-min set --schedule cosine's rates; the default "
                 "--schedule noam takes --lr-factor: add --schedule cosine or use --lr-factor");
    if (cosine && opt_given(&o->t, "--lr-factor"))
        opt_fail(&o->t, "--lr-factor scales --schedule noam; --schedule cosine takes --lr and "
                 "--lr-min instead");
    if (cosine && run->lr_min > run->lr)
        opt_fail(&o->t, "--lr-min %g is above --lr %g: the cosine decays from --lr down to "
                 "--lr-min", run->lr_min, run->lr);
}

/* The training options a version-2 checkpoint saved (in saved), for
 * those not given: a model read with --load trains on, and is measured,
 * with the options it was trained with (its seed picks --data's split). */
static void tf_cli_saved_run(TfCli *o, const TfRun *saved) {
    TfRun *r = &o->run;
    const OptTable *t = &o->t;
    if (!opt_given(t, "--seed")) o->seed = (int)saved->seed;
    if (!opt_given(t, "--warmup")) r->warmup = saved->warmup;
    if (!opt_given(t, "--lr-factor")) r->lr_factor = saved->lr_factor;
    if (!opt_given(t, "--eval")) r->n_eval = saved->n_eval;
    if (!opt_given(t, "--eval-every")) r->eval_every = saved->eval_every;
    if (!opt_given(t, "--beta2")) r->beta2 = saved->beta2;
    if (!opt_given(t, "--schedule")) r->sched = saved->sched;
    if (!opt_given(t, "--lr")) r->lr = saved->lr;
    if (!opt_given(t, "--lr-min")) r->lr_min = saved->lr_min;
    if (!opt_given(t, "--weight-decay")) r->wd = saved->wd;
    if (!opt_given(t, "--clip")) r->clip = saved->clip;
}

/* --load with --steps N or --minutes M trains on (o->resume): the
 * refusals are tf_resume_refusal's, and with --data a --seed other than the
 * saved one (it picks the split). The total N defaults to the saved run's
 * if the model has not reached it, else to no limit but --minutes'. The
 * batch and smoothing given (in want) replace the checkpoint's; the other
 * training options not given are the saved run's (saved; version 2). */
static void tf_cli_resume(TfCli *o, const TfModel *m, const TfConfig *want,
                          const TfRun *saved) {
    char why[600];
    const int steps = opt_given(&o->t, "--steps"), encdec = m->c.arch == TF_ENCDEC;
    o->resume = steps || opt_given(&o->t, "--minutes");
    if (tf_resume_refusal(&o->t, o->load, m, (encdec ? o->data : o->text) != NULL,
                          o->run.steps, why, sizeof why))
        opt_fail(&o->t, "%s", why);
    if (o->version == TF_CKPT_RUN && encdec && o->data && opt_given(&o->t, "--seed") &&
        o->seed != (int)saved->seed)            /* --seed picks the split */
        opt_fail(&o->t, "--seed %d: '%s' was trained on the split of --seed %d; another "
                 "split's dev and test words include words it trained on: leave --seed out",
                 o->seed, o->load, (int)saved->seed);
    if (o->version == TF_CKPT_RUN) tf_cli_saved_run(o, saved);
    if (!o->resume) return;
    if (!steps)
        o->run.steps = o->version == TF_CKPT_RUN && saved->steps > m->step ? saved->steps
                                                                          : 1000000;
    if (opt_given(&o->t, "--batch")) o->c.B = want->B;
    if (opt_given(&o->t, "--smoothing")) o->c.smoothing = want->smoothing;
}

/* --load FILE: the model and its vocabulary from the checkpoint (into m and
 * tx; --text is then read with that vocabulary), refused if unreadable or if
 * a model option given conflicts with it; the training options as
 * tf_cli_resume says. o->c becomes the checkpoint's config (but a batch
 * size or smoothing given to train on with). */
static void tf_cli_load(TfCli *o, TfText *tx, TfModel *m) {
    char why[600];
    TfText voc;
    memset(&voc, 0, sizeof voc);
    TfRun saved = o->run;
    o->version = tf_ckpt_load_any(o->load, m, &voc, &o->loaded, &saved, why, sizeof why);
    if (o->version < 0) opt_fail(&o->t, "--load: %s", why);
    int given[TF_N_MODEL_OPTS];
    for (int k = 0; k < TF_N_MODEL_OPTS; k++) given[k] = opt_given(&o->t, tf_model_opts[k]);
    TfConfig want = o->c;
    want.n_enc = o->layers;
    want.S = o->len;
    if (tf_ckpt_conflict(&m->c, &want, given, o->load, why, sizeof why) != 0)
        opt_fail(&o->t, "%s", why);
    o->c = m->c;
    o->layers = m->c.n_enc;
    o->len = m->c.S;
    tf_cli_resume(o, m, &want, &saved);
    memset(tx, 0, sizeof *tx);
    if (m->c.arch == TF_ENCDEC) return;         /* --data, --input or stdin: main decides */
    if (o->text && tf_text_read(tx, o->text, &voc, why, sizeof why) != 0)
        opt_fail(&o->t, "--text: %s", why);
    if (!o->text) *tx = voc;                    /* the vocabulary alone, no text */
    else tf_text_free(&voc);
    if (o->text && tx->n - tf_text_split(tx) - 2 < o->c.S)
        opt_fail(&o->t, "--text %s: its held-out part (%d characters) is shorter than one "
                 "window of the model's --len %d", o->text, tx->n - tf_text_split(tx), o->c.S);
    if (o->input)
        opt_fail(&o->t, "--input converts a word with an encdec model; '%s' holds a text "
                 "model (--arch %s): give --prompt TEXT or --text FILE", o->load,
                 tf_arch_names[o->c.arch]);
    if (!o->text && (o->c.arch == TF_ENCODER || !o->prompt))
        opt_fail(&o->t, "--load %s: nothing to do; give %s", o->load, o->c.arch == TF_ENCODER
                 ? "--text FILE (to measure the model on it)"
                 : "--prompt TEXT (to sample from it) or --text FILE (to measure it)");
}

/* The encdec options of real data: --input only converts with --load and
 * without --data; --beam searches --data's test words or --load's words;
 * --save keeps a model trained on --data; --svg needs a word to draw
 * (--input: stdin's words get no picture); the beams are rows of a batch. */
static void tf_cli_check_use(TfCli *o) {
    if (o->c.arch != TF_ENCDEC) return;
    const int use = o->load && !o->data;
    if (o->input && !use)
        opt_fail(&o->t, "--input converts WORD with a saved encdec model: give --load FILE "
                 "(a model trained with --data ... --save FILE)%s", o->data ? ", without "
                 "--data (which measures the model on a file)" : "");
    if (o->beam > 1 && !o->data && !o->load)
        opt_fail(&o->t, "--beam %d searches --data's test words or a loaded model's words; "
                 "the toy tasks decode greedily: give --data FILE or --load FILE", o->beam);
    if (o->save && !o->data)
        opt_fail(&o->t, "--save keeps an encdec model trained on --data FILE (or a text "
                 "arch's); the toy tasks' model is not kept: add --data FILE");
    if (use && o->svg && !o->input)
        opt_fail(&o->t, "--svg draws the attention of --input's word; words from stdin get "
                 "none: give --input WORD, or drop --svg");
    if (o->beam > o->c.B)
        opt_fail(&o->t, "--beam %d is more than the %d examples of a batch (--batch%s), which "
                 "hold the beams: give --beam %d or less", o->beam, o->c.B, o->load
                 ? ", the loaded model's" : "", o->c.B);
}

/* --prompt: as tokens of tx's vocabulary into o->prompt_ids, every
 * character checked before any training; one the model does not know is
 * refused by name */
static void tf_cli_prompt(TfCli *o, const TfText *tx) {
    char why[200];
    const char *p = o->prompt;
    if (utf8_check(p, (long)strlen(p), why, sizeof why) != 0)
        opt_fail(&o->t, "--prompt: %s", why);
    o->prompt_ids = xmalloc(sizeof(int) * (strlen(p) + 1));
    o->plen = 0;
    for (int b; *p; p += b) {
        b = utf8_char_len(p);
        const int k = tf_text_token(tx, p, b);
        uint32_t cp = b == 1 ? (unsigned char)p[0]   /* the code point, for the message */
                    : ((unsigned char)p[0] & (0x7Fu >> b));
        for (int i = 1; i < b; i++) cp = cp << 6 | ((unsigned char)p[i] & 0x3Fu);
        if (k < tx->first)
            opt_fail(&o->t, "--prompt: character %d, '%.*s' (U+%04lX), is not in the model's "
                     "vocabulary (the %d characters of its training text); leave it out",
                     o->plen + 1, cp < 0x20 ? 0 : b, p, (unsigned long)cp, tx->V - tx->first);
        o->prompt_ids[o->plen++] = k;
    }
}

/* Read and check the whole command line (exit 2 with a message on bad
 * input, 0 after --help); on return o says what to run, tx holds the text
 * (the built-in one, --text's, or only --load's vocabulary) and, with
 * --load, m the loaded model. */
static void tf_cli_parse(TfCli *o, int argc, char **argv, TfText *tx, TfModel *m) {
    memset(o, 0, sizeof *o);
    o->c = (TfConfig){ TF_ENCDEC, TF_POST, TF_POS_SIN, TF_RELU, 11, 32, 4, 64, 2, 2, 10, 10,
                       32, 0.0 };
    o->run = (TfRun){ TASK_COPY, 3000, 400, 1.0, 256, 100, 100, 1, 0.98, TF_SCHED_NOAM,
                      1e-3, 1e-4, 0.0, 0.0, 0.0, NULL, NULL };
    o->seed = 1; o->layers = 2; o->len = 10; o->vocab = 11; o->temperature = 0.8; o->beam = 1;
    o->trace_head = 1;
    o->chars = 160;
    tf_cli_table(o);
    o->t = (OptTable){ argv[0], tf_about, tf_after, tf_mode_names, o->opt, TF_N_OPTS };
    opt_parse(&o->t, argc, argv);
    if (o->load) tf_cli_load(o, tx, m);
    o->mode = o->bench ? TF_M_BENCH : opt_given(&o->t, "--experiment")
            ? TF_M_POSITIONS + o->experiment : o->c.arch;
    opt_check_mode(&o->t, o->mode);
    tf_cli_check_run(o);
    char why[600];
    if (!o->load && o->text && tf_text_read(tx, o->text, NULL, why, sizeof why) != 0)
        opt_fail(&o->t, "--text: %s", why);
    if (!o->load && !o->text) tf_text_build(tx);
    if (o->data && tf_pairs_read_vocab(&o->pairs, o->data, (uint64_t)o->seed, o->load ?
                                       &o->loaded : NULL, why, sizeof why) != 0)
        opt_fail(&o->t, "--data: %s", why);
    tf_cli_check_use(o);
    if (o->data) o->run.data = &o->pairs;
    if (!o->load) tf_cli_resolve(o, tx);
    tf_cli_check_model(o);
    tf_cli_check_show(o);
    if (o->prompt) tf_cli_prompt(o, tx);
    if (o->svg) check_dir_writable(argv[0], "--svg", o->svg);   /* now, not after training */
    if (o->save) check_writable(argv[0], "--save", o->save);
    if (o->log) check_writable(argv[0], "--log", o->log);
    o->run.seed = (uint64_t)o->seed;
}

/* the line saying what a run trains on from (--load with --steps or
 * --minutes), and with which options */
static void tf_resume_line(const TfCli *o, const TfModel *m) {
    printf("training on from %s at step %d to step %d", o->load, m->step, o->run.steps);
    if (o->run.minutes > 0.0) printf(", or for %g minutes", o->run.minutes);
    printf("\n");
    if (o->version == TF_CKPT_RUN)
        printf("  with the training options it was saved with, but those given here\n");
    else
        printf("  a version-1 file keeps no training options: the command line's are used%s\n",
               m->c.arch == TF_ENCDEC ? ";\n  its Adam state is its last step's, not its "
               "weights': an inexact restart" : "");
}

/* the default run: one model of --arch, trained (or loaded, and trained on
 * with o->resume), evaluated and drawn; m is the loaded model with --load */
static void tf_main_run(TfCli *o, const TfText *tx, TfModel *m) {
    const TfConfig *c = &o->c;
    const TfRun *run = &o->run;
    printf("transformer.c: --arch %s, %s-LN, %s positions, %s, seed %d\n  d_model %d, %d "
           "heads, %d layer%s%s, ff %d, vocab %d, len %d, batch %d\n",
           tf_arch_names[c->arch], tf_norm_names[c->norm], tf_pos_names[c->pos],
           tf_act_names[c->act], o->seed, c->D, c->H, c->n_enc, c->n_enc > 1 ? "s" : "",
           c->arch == TF_ENCDEC ? " each side" : "", c->F, c->V, c->S, c->B);
    if (o->load && !o->resume)
        printf("model: read from %s (trained %d steps)\n", o->load, m->step);
    else {
        if (o->resume) tf_resume_line(o, m);
        printf("training: Adam (0.9, %g, 1e-9), label smoothing %g\n", run->beta2,
               c->smoothing);
        if (run->sched == TF_SCHED_NOAM)
            printf("  lr = %g * d_model^-0.5 * min(step^-0.5, step * %d^-1.5)\n",
                   run->lr_factor, run->warmup);
        else printf("  lr %g rising over %d steps, then a cosine to %g at step %d\n", run->lr,
                    run->warmup, run->lr_min, run->steps);
        if (run->wd > 0.0) printf("  weight decay %g%s", run->wd, run->clip > 0.0 ? ", " : "\n");
        if (run->clip > 0.0) printf("%sgradient norm clipped to %g\n", run->wd > 0.0 ? ""
                                    : "  ", run->clip);
    }
    if (!o->load) tf_build(m, c, run->seed);
    else if (o->resume) tf_refit(m, c);
    printf("parameters: %d\n\n", m->np);
    OutFile log = { NULL, NULL, NULL };
    if (o->log) {
        log = out_open(o->log);
        fprintf(log.f, run->data ? "step,train_loss,dev_loss,dev_per,dev_wer,lr,seconds\n"
                               : "step,train_loss,heldout_loss,heldout_acc,lr,seconds\n");
    }
    TfWatch watch;
    memset(&watch, 0, sizeof watch);
    if (o->svg && (!o->load || o->resume)) o->run.watch = &watch;   /* the run's curves */
    if (run->data) tf_main_pairs(m, o, log.f);
    else if (c->arch == TF_ENCDEC) tf_main_encdec(m, o, log.f);
    else tf_main_text(m, o, tx, log.f);
    if (o->log) out_close(&log);
    tf_write_curve(o->svg, tf_arch_names[c->arch], run->data ? "data" : c->arch == TF_ENCDEC
                   ? task_names[run->task] : "text", &watch, run->data != NULL,
                   c->arch != TF_ENCDEC);
    tf_watch_free(&watch);
    o->run.watch = NULL;
    tf_free(m);
}

/* parse and check every option, then run one of: the default training run,
 * an experiment, or --bench */
int main(int argc, char **argv) {
    atexit(check_stdout_at_exit);
    TfText tx;
    TfModel m;
    TfCli o;
    memset(&tx, 0, sizeof tx);
    tf_cli_parse(&o, argc, argv, &tx, &m);
    switch (o.mode) {
    case TF_M_POSITIONS: tf_experiment_positions(&o.c, &o.run, o.run.seed, o.svg); break;
    case TF_M_HEADS:     tf_experiment_heads(&o.c, &o.run, o.run.seed, o.svg); break;
    case TF_M_COST:      tf_experiment_cost(o.run.seed, o.svg); break;
    case TF_M_EXTRAP:    tf_experiment_extrapolate(&o.c, &o.run, o.run.seed, o.svg); break;
    case TF_M_BENCH:     tf_bench(&o.c, &o.run); break;
    default:
        if (o.load && o.c.arch == TF_ENCDEC && !o.data) tf_main_use(&o, &m);  /* words */
        else tf_main_run(&o, &tx, &m);
    }
    tf_text_free(&tx);
    if (o.data) tf_pairs_free(&o.pairs);
    tf_pairs_free(&o.loaded);
    free(o.prompt_ids);
    return 0;
}
#endif /* TESTING */
#endif /* TRANSFORMER_C */
