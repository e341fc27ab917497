/*
 * seq2seq.c -- chapter 2 of "attention, by hand, in C": the RNN
 * encoder-decoder, then Bahdanau and Luong attention, trained and compared.
 *
 *     cc -O2 seq2seq.c -lm -o seq2seq && ./seq2seq
 *     ./seq2seq --help
 *     ./seq2seq --attention none            the vanilla encoder-decoder
 *     ./seq2seq --task date --svg figs      a non-monotonic alignment and the curves, as SVG
 *     ./seq2seq --experiment length         the bottleneck table of NOTES.md, then the
 *                                           attention weights' entropy by source length
 *     ./seq2seq --experiment pooling        last vs mean vs attention pooling
 *     ./seq2seq --experiment cnn            the same beside a CNN: max, mean, attention
 *     ./seq2seq --experiment pair           two texts: attention before or after the
 *                                           convolution, against a siamese CNN
 *     ./seq2seq --experiment exposure       teacher forcing's cost; greedy, beam, sampling
 *     ./seq2seq --experiment params         each decoder at 9 sizes: the fewest parameters
 *                                           that reach 90% held-out exact
 *     ./seq2seq --experiment encoder        each decoder over uni/bi encoders of 1 and 2 layers
 *     ./seq2seq --encoder bi --layers 2 --score general
 *                                           an encoder's direction and depth, for any decoder
 *     ./seq2seq --bench                     ms per training step
 *     ./seq2seq --data cmudict-en-us.dict --attention bahdanau --minutes 4 --save g2p.ckpt
 *                                           grapheme-to-phoneme on a real dictionary
 *     ./seq2seq --load g2p.ckpt --input knife   its phonemes for a word, and the attention
 *
 * It includes attention.c (chapter 1) for every kernel: matmul, linear,
 * tanh/sigmoid, softmax, cross-entropy, Adam, clipping, the score functions
 * and attend_forward/backward. What is new here is recurrence: three cells,
 * an encoder that runs them over a padded batch, three decoders, decoding,
 * and training. Part I is the lesson, in the order NOTES.md teaches it; a
 * reader who stops at the PART II banner has read every model. Part II is
 * the program around it. Sections:
 *
 *  Part I, the lesson
 *   1. cells              vanilla RNN, LSTM, GRU: one step over a batch
 *   2. the model          config, parameters, activations: the structs
 *   3. encoder            embeddings, L (bidirectional) RNN layers over padded batches
 *   4. decoders           none (fixed context), Bahdanau, Luong: a pair each
 *   5. whole model        forward and backward through time (BPTT), the loss
 *   6. one training step  teacher forcing, clipping, Adam
 *   7. decoding           sampling, greedy and beam search
 *   8. pooling            last vs mean vs attention over RNN states
 *   9. CNN + attention    a 1-D convolution; max, mean or attention pooling;
 *                         two texts: attention before / after the convolution
 *  Part II, the program
 *  10. layouts            one Layout walk per model: count, bind, initialise
 *  11. tasks              copy, reverse, sort, date, pooling, CNN, pair; held-out split
 *  12. training loop      progress, divergence, held-out evaluation
 *  12b. real data         a pair file as examples, PER/WER, checkpoints, training
 *  13. options            the option table and the checks between options
 *  14. the default run    train, evaluate, examples, the alignment
 *  14b. real data         --data: train, dev/test PER and WER, --save; --load: answer
 *  15. experiments        length bottleneck and the weights' entropy, pooling, cnn,
 *                         gradient by distance, exposure bias and decoding rules, RNN
 *                         vs self-attention time, parameters at equal accuracy,
 *                         encoder direction and depth, attention between two texts
 *  16. --bench and main
 *
 * Dimension legend:
 *   B  batch rows (sequences)        T  source length (max over the batch)
 *   S  decoder steps (target length + EOS, max over the batch)
 *   E  embedding size    H  hidden size of every RNN    V  vocabulary size
 *   He encoder annotation width: 2H bidirectional (Bahdanau's own, or --encoder bi), else H
 *   L  encoder RNN layers (--layers): layer 1 reads E, the others He
 *   A  hidden size of the additive/concat score and of local-p's predictor
 *   G  gate blocks of a cell (each H wide): 1 (RNN), 3 (GRU), 4 (LSTM)
 *   Din  decoder cell input: E + He (none, Bahdanau), E + H (Luong)
 *   Dout output layer input: H + He (none, Bahdanau), H (Luong: h~)
 *
 * Layouts: per-step activations are time-major (T,B,.) so one step is one
 * (B,I) @ (I,O) matmul; encoder annotations are batch-major (B,T,He) so the
 * keys of one sequence are contiguous for attention. Every backward ADDS into
 * its gradients; s2s_backward clears the activation gradients once, the
 * caller clears the parameter gradients (s2s_zero_grad).
 */
#define ATTENTION_LIBRARY   /* chapter 1's kernels, without its tour and main */
#include "attention.c"

#ifndef SEQ2SEQ_C
#define SEQ2SEQ_C

/* ************************************************************************
 * PART I. THE LESSON
 *
 * Recurrent cells, the encoder, the three decoders, the whole model's
 * forward and backward through time, one training step and decoding, then
 * pooling and the CNN, in the order NOTES.md teaches them.
 * ************************************************************************ */

/* ========================================================================
 * 1. cells: one step of a recurrent cell over a batch
 *
 * Every cell computes its gate pre-activations as two matmuls,
 *     gx = x @ Wx + bx   (B, G*H)      gh = h_prev @ Wh + bh   (B, G*H)
 * and then, row by row (gate blocks side by side in the G*H columns):
 *   RNN   h = tanh(gx + gh)
 *   GRU   r = s(gx_r + gh_r), z = s(gx_z + gh_z), n = tanh(gx_n + r * gh_n)
 *         h = (1 - z) * n + z * h_prev          (the PyTorch form)
 *   LSTM  i = s(.), f = s(.), g = tanh(.), o = s(.) of gx + gh
 *         c = f * c_prev + i * g,  h = o * tanh(c)
 * (s = sigmoid). A row whose mask is 0 is padding: it keeps its state
 * (h = h_prev, c = c_prev) and passes its gradient straight through.
 * ======================================================================== */

enum { CELL_RNN, CELL_GRU, CELL_LSTM };
static const char *const cell_names[] = { "rnn", "gru", "lstm", NULL };

/* A cell's parameters; the same struct pointed at gradients holds those. */
typedef struct {
    int kind;       /* CELL_RNN | CELL_GRU | CELL_LSTM */
    int I, H;       /* input size, hidden size */
    double *Wx;     /* (I, G*H) input weights, gate blocks side by side */
    double *Wh;     /* (H, G*H) recurrent weights */
    double *bx;     /* (G*H) input bias */
    double *bh;     /* (G*H) recurrent bias (GRU needs it apart; kept for all) */
} S2sCell;

/* G: the number of H-wide gate blocks */
int cell_gates(int kind) { return kind == CELL_RNN ? 1 : kind == CELL_GRU ? 3 : 4; }

/* doubles of cache one step keeps per batch row: gx (G*H) holding the gate
 * activations, gh (G*H) the raw recurrent part, and tanh(c) (H) for LSTM */
int cell_cache_size(int kind, int H) {
    return 2 * cell_gates(kind) * H + (kind == CELL_LSTM ? H : 0);
}

/* ---- the three gate functions: one row, pre-activations to new state ---- */

/* RNN row: gx (H) pre-activations in, tanh out (kept in gx); h (H) */
void rnn_gates_forward(double *h, double *gx, const double *gh, int H) {
    for (int j = 0; j < H; j++) gx[j] += gh[j];
    tanh_forward(gx, gx, H);                      /* h = tanh(gx + gh) */
    memcpy(h, gx, sizeof(double) * (size_t)H);
}

/* forward was: h = tanh(a), a = gx + gh; so da = dh (1 - h^2) = dgx = dgh */
void rnn_gates_backward(double *dgx, double *dgh, const double *dh, const double *gx, int H) {
    for (int j = 0; j < H; j++) dgx[j] = dgh[j] = dh[j] * (1.0 - gx[j] * gx[j]);
}

/* GRU row: gx (3H) = [r | z | n] pre-activations from x (kept as r, z, n),
 * gh (3H) the recurrent part h_prev Wh + bh, h_prev (H), h (H). */
void gru_gates_forward(double *h, double *gx, const double *gh, const double *h_prev,
                       int H) {
    double *r = gx, *z = gx + H, *n = gx + 2 * H;
    const double *hr = gh, *hz = gh + H, *hn = gh + 2 * H;
    for (int j = 0; j < H; j++) {
        r[j] = sigmoid(r[j] + hr[j]);                 /* reset gate  */
        z[j] = sigmoid(z[j] + hz[j]);                 /* update gate */
        n[j] += r[j] * hn[j];
    }
    tanh_forward(n, n, H);                        /* candidate n = tanh(gx_n + r gh_n) */
    for (int j = 0; j < H; j++) h[j] = (1.0 - z[j]) * n[j] + z[j] * h_prev[j];
}

/* dgx, dgh (3H) = gradients of the pre-activations; dh_prev (H) += the
 * direct path through z * h_prev. No two arrays overlap (restrict), which
 * lets the compiler run the loop on several j at a time (four with AVX2). */
void gru_gates_backward(double *restrict dgx, double *restrict dgh, double *restrict dh_prev,
                        const double *restrict dh, const double *restrict gx,
                        const double *restrict gh, const double *restrict h_prev, int H) {
    const double *r = gx, *z = gx + H, *n = gx + 2 * H, *hn = gh + 2 * H;
    for (int j = 0; j < H; j++) {
        /* forward was: h = (1 - z) n + z h_prev */
        double dn = dh[j] * (1.0 - z[j]);
        double dz = dh[j] * (h_prev[j] - n[j]);
        dh_prev[j] += dh[j] * z[j];
        /* forward was: n = tanh(gx_n + r * gh_n) */
        double dan = dn * (1.0 - n[j] * n[j]);
        double dr = dan * hn[j];
        dgx[2 * H + j] = dan;
        dgh[2 * H + j] = dan * r[j];
        /* forward was: z = s(gx_z + gh_z), r = s(gx_r + gh_r); ds = s (1 - s) */
        dgx[H + j] = dgh[H + j] = dz * z[j] * (1.0 - z[j]);
        dgx[j] = dgh[j] = dr * r[j] * (1.0 - r[j]);
    }
}

/* LSTM row: gx (4H) = [i | f | g | o] pre-activations (kept as activations),
 * gh (4H) the recurrent part, c_prev (H) -> c (H), tc (H) = tanh(c), h (H). */
void lstm_gates_forward(double *h, double *c, double *tc, double *gx, const double *gh,
                        const double *c_prev, int H) {
    double *i = gx, *f = gx + H, *g = gx + 2 * H, *o = gx + 3 * H;
    for (int j = 0; j < H; j++) {
        i[j] = sigmoid(i[j] + gh[j]);                 /* input gate: how much to write */
        f[j] = sigmoid(f[j] + gh[H + j]);             /* forget gate: how much to keep */
        g[j] += gh[2 * H + j];
        o[j] = sigmoid(o[j] + gh[3 * H + j]);         /* output gate: how much to show */
    }
    tanh_forward(g, g, H);                        /* candidate values g = tanh(.)  */
    for (int j = 0; j < H; j++) c[j] = f[j] * c_prev[j] + i[j] * g[j];
    tanh_forward(tc, c, H);
    for (int j = 0; j < H; j++) h[j] = o[j] * tc[j];  /* h = o tanh(c) */
}

/* dgx = dgh (4H) = gradients of the pre-activations; dc_prev (H) +=.
 * dc (H) is the gradient arriving at c from the next step (may be NULL). */
void lstm_gates_backward(double *dgx, double *dgh, double *dc_prev, const double *dh,
                         const double *dc, const double *gx, const double *tc,
                         const double *c_prev, int H) {
    const double *i = gx, *f = gx + H, *g = gx + 2 * H, *o = gx + 3 * H;
    for (int j = 0; j < H; j++) {
        /* forward was: h = o tanh(c), so do = dh tanh(c), dc += dh o (1 - tanh(c)^2) */
        double dO = dh[j] * tc[j];
        double dC = (dc ? dc[j] : 0.0) + dh[j] * o[j] * (1.0 - tc[j] * tc[j]);
        /* forward was: c = f c_prev + i g */
        double dF = dC * c_prev[j], dI = dC * g[j], dG = dC * i[j];
        dc_prev[j] += dC * f[j];
        dgx[j] = dI * i[j] * (1.0 - i[j]);
        dgx[H + j] = dF * f[j] * (1.0 - f[j]);
        dgx[2 * H + j] = dG * (1.0 - g[j] * g[j]);
        dgx[3 * H + j] = dO * o[j] * (1.0 - o[j]);
        dgh[j] = dgx[j]; dgh[H + j] = dgx[H + j];
        dgh[2 * H + j] = dgx[2 * H + j]; dgh[3 * H + j] = dgx[3 * H + j];
    }
}

/* ---- one step over a batch --------------------------------------------
 * h (B,H) [and c (B,H), LSTM only, else NULL] = cell(x (B,I), h_prev (B,H)
 * [, c_prev (B,H)]). cache (B * cell_cache_size) is kept for the backward.
 * mask (B) or NULL: rows with mask 0 keep h_prev (and c_prev). */
void cell_forward(double *h, double *c, double *cache, const double *x,
                  const double *h_prev, const double *c_prev, const unsigned char *mask,
                  const S2sCell *cl, int B) {
    const int H = cl->H, G = cell_gates(cl->kind) * H;
    double *gx = cache, *gh = cache + B * G, *tc = cache + 2 * B * G;
    linear_forward(gx, x, cl->Wx, cl->bx, B, cl->I, G);      /* x @ Wx + bx      */
    linear_forward(gh, h_prev, cl->Wh, cl->bh, B, H, G);     /* h_prev @ Wh + bh */
    for (int b = 0; b < B; b++) {
        double *hb = h + b * H, *gxb = gx + b * G;
        const double *ghb = gh + b * G, *hp = h_prev + b * H;
        switch (cl->kind) {
        case CELL_RNN:  rnn_gates_forward(hb, gxb, ghb, H); break;
        case CELL_GRU:  gru_gates_forward(hb, gxb, ghb, hp, H); break;
        default: lstm_gates_forward(hb, c + b * H, tc + b * H, gxb, ghb, c_prev + b * H, H);
        }
        if (mask && !mask[b]) {                 /* padding: the state passes through */
            memcpy(hb, hp, sizeof(double) * (size_t)H);
            if (c) memcpy(c + b * H, c_prev + b * H, sizeof(double) * (size_t)H);
        }
    }
}

/* Backward of cell_forward. dx (B,I) may be NULL; dh_prev (B,H) and, for
 * LSTM, dc_prev (B,H) +=; g holds the parameter gradients; dh (B,H) and dc
 * (B,H, LSTM only) are the gradients arriving at h and c. work is scratch of
 * 2 * B * G * H doubles. */
void cell_backward(double *dx, double *dh_prev, double *dc_prev, S2sCell *g,
                   const double *dh, const double *dc, const double *x,
                   const double *h_prev, const double *c_prev, const double *cache,
                   const unsigned char *mask, const S2sCell *cl, int B, double *work) {
    const int H = cl->H, G = cell_gates(cl->kind) * H;
    const double *gx = cache, *gh = cache + B * G, *tc = cache + 2 * B * G;
    double *dgx = work, *dgh = work + B * G;
    for (int b = 0; b < B; b++) {
        double *dgxb = dgx + b * G, *dghb = dgh + b * G;
        const double *dhb = dh + b * H;
        if (mask && !mask[b]) {
            /* forward was: h = h_prev (and c = c_prev) for a padding row */
            for (int j = 0; j < H; j++) dh_prev[b * H + j] += dhb[j];
            if (dc) for (int j = 0; j < H; j++) dc_prev[b * H + j] += dc[b * H + j];
            for (int j = 0; j < G; j++) dgxb[j] = dghb[j] = 0.0;
            continue;
        }
        switch (cl->kind) {
        case CELL_RNN: rnn_gates_backward(dgxb, dghb, dhb, gx + b * G, H); break;
        case CELL_GRU:
            gru_gates_backward(dgxb, dghb, dh_prev + b * H, dhb, gx + b * G, gh + b * G,
                               h_prev + b * H, H);
            break;
        default:
            lstm_gates_backward(dgxb, dghb, dc_prev + b * H, dhb, dc ? dc + b * H : NULL,
                                gx + b * G, tc + b * H, c_prev + b * H, H);
        }
    }
    /* forward was: gx = x Wx + bx, gh = h_prev Wh + bh */
    linear_backward(dx, g->Wx, g->bx, dgx, x, cl->Wx, B, cl->I, G);
    linear_backward(dh_prev, g->Wh, g->bh, dgh, h_prev, cl->Wh, B, H, G);
}

/* ========================================================================
 * 2. the model: config, parameters, activations (their layouts are in section 10)
 * ======================================================================== */

enum { S2S_NONE, S2S_BAHDANAU, S2S_LUONG };
static const char *const s2s_attention_names[] = { "none", "bahdanau", "luong", NULL };
enum { S2S_GLOBAL, S2S_LOCAL_M, S2S_LOCAL_P };
static const char *const s2s_align_names[] = { "global", "local-m", "local-p", NULL };
/* the score functions Luong et al. offer (dot, general, concat), then the
 * other three of chapter 1 in their place, by name, and their SCORE_* kinds */
static const char *const s2s_luong_scores[] = { "dot", "general", "concat", "scaled",
                                                "additive", "cosine", NULL };
static const int s2s_luong_score_kind[] = { SCORE_DOT, SCORE_GENERAL, SCORE_CONCAT,
                                            SCORE_SCALED_DOT, SCORE_ADDITIVE, SCORE_COSINE };
enum { S2S_N_SCORES = 6 };

enum { S2S_PAD = 0, S2S_BOS = 1, S2S_EOS = 2, S2S_FIRST = 3 };  /* special tokens */
/* the two splits of every task, as heldout_split() answers for a source */
enum { S2S_TRAINING = 0, S2S_HELDOUT = 1 };

typedef struct {
    int attention;  /* S2S_NONE | S2S_BAHDANAU | S2S_LUONG */
    int cell;       /* CELL_* of the encoder and the decoder */
    int score;      /* Luong: a SCORE_* of s2s_luong_score_kind (Bahdanau: additive) */
    int align;      /* Luong: S2S_GLOBAL | S2S_LOCAL_M | S2S_LOCAL_P */
    int window;     /* D of local attention: the window is [p - D, p + D] */
    int V, E, H, A; /* vocabulary, embedding, hidden, attention hidden sizes */
    int Vsrc;       /* the source vocabulary, if it is not V (0: the same): --data's
                       letters in, phonemes out; the toy tasks share one */
    int encoder;    /* S2S_ENC_AUTO (the decoder's own: bi for Bahdanau, uni for none
                       and Luong) | S2S_ENC_UNI | S2S_ENC_BI */
    int layers;     /* encoder RNN layers, 1 .. S2S_MAX_LAYERS (0: one) */
} S2sConfig;

enum { S2S_ENC_AUTO, S2S_ENC_UNI, S2S_ENC_BI };
static const char *const s2s_encoder_names[] = { "auto", "uni", "bi", NULL };
enum { S2S_MAX_LAYERS = 4 };

/* does the encoder read the source both ways? */
int s2s_enc_bi(const S2sConfig *c) {
    return c->encoder == S2S_ENC_BI || (c->encoder == S2S_ENC_AUTO && c->attention == S2S_BAHDANAU);
}
/* the encoder's RNN layers L */
int s2s_enc_layers(const S2sConfig *c) { return c->layers > 0 ? c->layers : 1; }

/* rows of the source embedding: Vsrc, or V when the two sides share one */
int s2s_src_vocab(const S2sConfig *c) { return c->Vsrc ? c->Vsrc : c->V; }

int s2s_enc_width(const S2sConfig *c) { return s2s_enc_bi(c) ? 2 * c->H : c->H; }
/* Din: [emb; c_t] (none, Bahdanau) or [emb; h~_{t-1}] (Luong's input feeding) */
int s2s_dec_input(const S2sConfig *c) {
    return c->E + (c->attention == S2S_LUONG ? c->H : s2s_enc_width(c));
}
int s2s_out_input(const S2sConfig *c) {
    return c->attention == S2S_LUONG ? c->H : c->H + s2s_enc_width(c);
}
/* the score kind the decoder uses */
int s2s_score_kind(const S2sConfig *c) {
    return c->attention == S2S_BAHDANAU ? SCORE_ADDITIVE
         : c->attention == S2S_LUONG ? c->score : SCORE_DOT;
}
/* the decoder's score, its sizes only (no parameters): query H, key He */
static Score s2s_score_shape(const S2sConfig *c) {
    Score s;
    memset(&s, 0, sizeof s);
    s.kind = s2s_score_kind(c); s.Dq = c->H; s.Dk = s2s_enc_width(c); s.A = c->A;
    return s;
}
/* width P of a prepared key (score_keys_forward) */
int s2s_key_width(const S2sConfig *c) {
    const Score s = s2s_score_shape(c);
    return score_key_width(&s);
}
/* doubles of score cache per query over T keys (score_cache_size) */
int s2s_score_cache(const S2sConfig *c, int T) {
    const Score s = s2s_score_shape(c);
    return score_cache_size(&s, T);
}

/* The parameters, as views into one block (or the gradients, into another). */
typedef struct {
    double *src_emb, *tgt_emb; /* (Vsrc,E) (s2s_src_vocab), (V,E) */
    S2sCell enc_f[S2S_MAX_LAYERS];  /* encoder layers, forward direction: input E, then He */
    S2sCell enc_b[S2S_MAX_LAYERS];  /* and the backward direction (bidirectional only) */
    S2sCell dec;               /* decoder cell, input Din */
    Score score;               /* Bahdanau: additive (Dq H, Dk 2H); Luong: dot/general/concat */
    double *Wc, *bc;           /* Luong: (He+H, H), (H): h~ = tanh([c; h] Wc + bc) */
    double *Wp, *vp;           /* Luong local-p: (H,A), (A): p = (slen-1) sigmoid(vp . tanh(h Wp)),
                                  slen = the row's source length (at most T) */
    double *Wo, *bo;           /* (Dout,V), (V): logits = out_in @ Wo + bo */
} S2sWeights;

/* the most parameter tensors a model of this file has (the spans below) */
#define S2S_MAX_TENSORS 48

/* The blocks every model of this file keeps its parameters in, one
 * allocation each, so that clipping, Adam and the gradient checker are
 * single flat loops; the spans say which tensor lives where. */
typedef struct {
    int num_params;                       /* doubles in each block below */
    double *params, *grads, *m, *v;       /* (num_params) each: weights, dL/dw, Adam moments */
    int nspans;                           /* parameter tensors laid out */
    LayoutSpan spans[S2S_MAX_TENSORS];    /* each one's name, place and shape */
} S2sParams;

typedef struct {
    S2sConfig cfg;
    S2sParams p;                          /* the parameter blocks */
    S2sWeights w, g;                      /* views into p.params and p.grads */
    int step;                             /* Adam steps taken */
    int diverged;                         /* the step training diverged at, 0 if none */
    double div_loss, div_norm;            /* that step's loss and gradient norm */
} S2sModel;

/* clear the parameter gradients (every backward adds into them) */
void s2s_zero_grad(S2sModel *m) {
    memset(m->p.grads, 0, sizeof(double) * (size_t)m->p.num_params);
}

/* ---- activations ---------------------------------------------------------
 * Everything one forward keeps for its backward, as views into one block;
 * the gradients of the activations live in a second block bound the same
 * way. Unused fields (LSTM c without LSTM, ...) are NULL. */
typedef struct {
    int B, T, S;      /* the dimensions this view was bound for */
    double *x_src;    /* (T,B,E) source embeddings */
    double *hf, *cf;  /* (L,T,B,H) forward-direction states h and (LSTM) c, per layer */
    double *kf;       /* (L,T, B*cell_cache_size) forward-direction cell caches */
    double *hb, *cb, *kb;  /* the same for the backward direction (bidirectional) */
    double *xl;       /* (L-1,T,B,2H) bidirectional, L > 1: [h_fwd; h_bwd] of each layer
                         below the top, the next layer's input (uni: hf is) */
    double *enc;      /* (B,T,He) annotations [h_fwd; h_bwd]: keys and values */
    double *Kp;       /* (B,T,P) keys prepared by score_keys_forward */
    double *zero;     /* (B,H) the state before the first step: zeros (its
                         gradient is a sink nobody reads) */
    double *x_tgt;    /* (S,B,E) decoder input embeddings */
    double *din;      /* (S,B,Din) decoder cell inputs [emb; context or h~_prev] */
    double *hd, *cd, *kd;  /* (S,B,H), (S,B,H), (S, B*cache) decoder states, caches */
    double *att;      /* (S,B,T) attention weights (0 beyond a row's length) */
    double *align;    /* (S,B,T) local-p: the window softmax before the Gaussian */
    double *scache;   /* (S,B,score cache) per-query score caches */
    double *pz;       /* (S,B,A) local-p: tanh(h Wp) */
    double *pos;      /* (S,B) local-p: the predicted position p_t */
    double *ctx;      /* (S,B,He) context vectors */
    double *hcat;     /* (S,B,He+H) Luong: [c_t; h_t] */
    double *ht;       /* (S,B,H) Luong: the attentional hidden state h~_t */
    double *oin;      /* (S,B,Dout) none/Bahdanau: the output layer input [s_t; c_t] */
    double *logits;   /* (S,B,V) */
    double *probs;    /* (S,B,V) softmax(logits), for the backward */
    double *work;     /* scratch: (B*8H) cell, (B*H) tanh, (2T) attention, (A) local-p */
} S2sActs;

/* A forward/backward workspace for batches up to (Bmax, Tmax, Smax). */
typedef struct {
    int Bmax, Tmax, Smax;
    int cap;                 /* doubles in amem and in gmem */
    int used;                /* doubles the views of the current batch span */
    double *amem, *gmem;     /* activations, and their gradients */
    S2sActs a, g;            /* views, rebound for each batch's (B,T,S) */
    unsigned char *mask;     /* (Tmax*Bmax) encoder step masks, then (Tmax) window scratch */
    int *tok;                /* (max(Smax, Tmax+1) * Bmax) decoder inputs while decoding;
                                beam search keeps its K copies of the source here */
    int *ytok;               /* (Bmax) beam search: the K beams' input tokens of one step */
    int *lens;               /* (Bmax) s2s_evaluate: the decoded lengths of one batch */
    int *hist;               /* (2*Bmax*Smax + Bmax) beam hypotheses (two generations), parents */
    int *cidx;               /* (Bmax*V) beam search candidate order */
    double *beam;            /* (2*Bmax + Bmax*V) beam scores, candidate scores */
    int ntok, ncorrect;      /* target tokens and teacher-forced argmax hits of the last forward */
} S2sRun;

/* Point r's views at its blocks for a batch of (B,T,S), no allocation
 * (section 10; every forward and decode below starts with it). */
static void s2s_run_bind(S2sRun *r, const S2sConfig *c, int B, int T, int S);

/* A padded batch of examples, time-major. */
typedef struct {
    int B, T, S;     /* rows; source length and decoder steps of the longest row */
    int Bcap, Tcap, Scap;  /* capacity of the arrays below */
    int *src;        /* (Tcap,B) source tokens, PAD beyond a row's length */
    int *tin;        /* (Scap,B) decoder inputs: BOS y_1 .. y_n, PAD beyond */
    int *tout;       /* (Scap,B) targets: y_1 .. y_n EOS, -1 (no loss) beyond */
    int *slen;       /* (B) source lengths, >= 1 */
    int *tlen;       /* (B) target lengths, EOS included */
} S2sBatch;

/* ========================================================================
 * 3. encoder: embeddings, then a (bidirectional) RNN over a padded batch
 *
 * The forward direction reads x_1 .. x_T; a padding row keeps its state, so
 * h_T of every row is its last real state: the "context vector" of the
 * vanilla model. The backward direction (Bahdanau's, or any decoder's with
 * --encoder bi) reads x_T .. x_1 from a zero state that padding leaves
 * untouched. Annotation h_j = [h_fwd_j; h_bwd_j] summarises the whole
 * sentence with a focus around word j. With --layers L, layer l runs over
 * layer l-1's states (both directions joined) instead of the embeddings;
 * the top layer's are the annotations, its forward h_T the decoder's s_0.
 * ======================================================================== */

/* ---- a cell run over time ---------------------------------------------
 * h_t = cell(x_t, h_prev) for every step of a sequence kept time-major:
 * left to right (h_prev = h_{t-1}) or right to left (h_prev = h_{t+1}),
 * from the zero state. The encoder runs it both ways, the pooling and CNN
 * classifiers of sections 8 and 9 left to right. */
enum { RNN_LEFT_TO_RIGHT, RNN_RIGHT_TO_LEFT };

/* the time row t that step `step` (0 .. T-1, in the run's order) reads */
static int s2s_rnn_row(int step, int T, int dir) {
    return dir == RNN_LEFT_TO_RIGHT ? step : T - 1 - step;
}

/* The state step `step` of a run starts from: the rows (T,B,H) `states` of
 * the step before, or the zero state (B,H) at the first; NULL if there are
 * no such states (c without LSTM). Like strchr, it hands back a pointer
 * into what it was given, so it serves values and gradients alike. */
static double *s2s_rnn_prev(const double *states, const double *zero, int step, int T, int BH,
                            int dir) {
    if (!states) return NULL;
    return (double *)(step == 0 ? zero : states + s2s_rnn_row(step - 1, T, dir) * BH);
}

/* h (T,B,H) [and c (T,B,H), LSTM only, else NULL] = the cell cl run over
 * x (T,B,I) in direction dir from the zero state; zero (B,H) is set to
 * zeros here, k (T, B*cell_cache_size) keeps every step's cache. mask
 * (T,B) or NULL: a row with mask 0 at a step keeps its state. */
void s2s_rnn_forward(double *h, double *c, double *k, double *zero, const double *x,
                     const unsigned char *mask, const S2sCell *cl, int T, int B, int dir) {
    const int BH = B * cl->H, cs = B * cell_cache_size(cl->kind, cl->H);
    memset(zero, 0, sizeof(double) * (size_t)BH);
    for (int step = 0; step < T; step++) {
        const int t = s2s_rnn_row(step, T, dir);
        const double *h_prev = s2s_rnn_prev(h, zero, step, T, BH, dir);
        const double *c_prev = s2s_rnn_prev(c, zero, step, T, BH, dir);
        cell_forward(h + t * BH, c ? c + t * BH : NULL, k + t * cs, x + t * B * cl->I, h_prev,
                     c_prev, mask ? mask + t * B : NULL, cl, B);
    }
}

/* Backward through time of s2s_rnn_forward: the last step first. dx (T,B,I),
 * dzero (B,H) and the cell's parameter gradients g +=. dh (T,B,H) holds the
 * gradient arriving at every state from above (and receives the recurrent
 * part as the loop walks back); dc (T,B,H) the same for LSTM cells (else
 * NULL). work: scratch of 2 * B * G * H doubles, as cell_backward. */
void s2s_rnn_backward(double *dx, double *dzero, S2sCell *g, double *dh, double *dc,
                      const double *x, const double *h, const double *c, const double *k,
                      const double *zero,
                      const unsigned char *mask, const S2sCell *cl, int T, int B, int dir,
                      double *work) {
    const int BH = B * cl->H, cs = B * cell_cache_size(cl->kind, cl->H);
    for (int step = T - 1; step >= 0; step--) {  /* forward was: h_t = cell(x_t, h_prev) */
        const int t = s2s_rnn_row(step, T, dir);
        double *dh_prev = s2s_rnn_prev(dh, dzero, step, T, BH, dir);
        double *dc_prev = c ? s2s_rnn_prev(dc, dzero, step, T, BH, dir) : NULL;
        const double *h_prev = s2s_rnn_prev(h, zero, step, T, BH, dir);
        const double *c_prev = s2s_rnn_prev(c, zero, step, T, BH, dir);
        cell_backward(dx + t * B * cl->I, dh_prev, dc_prev, g, dh + t * BH,
                      c ? dc + t * BH : NULL, x + t * B * cl->I, h_prev, c_prev, k + t * cs,
                      mask ? mask + t * B : NULL, cl, B, work);
    }
}

/* out (B, n1+n2) = rows [x1 (B,n1) ; x2 (B,n2)] side by side */
static void s2s_concat(double *out, const double *x1, int n1, const double *x2, int n2, int B) {
    for (int b = 0; b < B; b++) {
        memcpy(out + b * (n1 + n2), x1 + b * n1, sizeof(double) * (size_t)n1);
        memcpy(out + b * (n1 + n2) + n1, x2 + b * n2, sizeof(double) * (size_t)n2);
    }
}

/* dx1 (B,n1), dx2 (B,n2) += the two halves of dout (B, n1+n2) */
static void s2s_split_add(double *dx1, double *dx2, const double *dout, int n1, int n2, int B) {
    for (int b = 0; b < B; b++) {
        const double *d = dout + b * (n1 + n2);
        for (int j = 0; j < n1; j++) dx1[b * n1 + j] += d[j];
        for (int j = 0; j < n2; j++) dx2[b * n2 + j] += d[n1 + j];
    }
}

/* Layer l's input (T,B,I) in a (the activations or their gradients): the
 * source embeddings under the first layer, above it the layer below's
 * states, both directions joined when the encoder is bidirectional. */
static double *s2s_layer_input(const S2sActs *a, const S2sConfig *c, int l) {
    const int TBH = a->T * a->B * c->H;
    if (l == 0) return a->x_src;
    return s2s_enc_bi(c) ? a->xl + (l - 1) * 2 * TBH : a->hf + (l - 1) * TBH;
}

/* a->enc (B,T,He) and a->Kp from the source tokens src (T,B), lengths slen (B);
 * mask (T*B) receives the step masks. L layers, each run over the one below
 * (each direction of a bidirectional layer reads both directions below). */
void s2s_encoder_forward(S2sActs *a, unsigned char *mask, const int *src, const int *slen,
                         const S2sModel *m) {
    const S2sConfig *c = &m->cfg;
    const S2sWeights *w = &m->w;
    const int B = a->B, T = a->T, E = c->E, H = c->H, He = s2s_enc_width(c), BH = B * H;
    const int L = s2s_enc_layers(c), TBH = T * BH, TC = T * B * cell_cache_size(c->cell, H);
    for (int t = 0; t < T; t++)
        for (int b = 0; b < B; b++) mask[t * B + b] = t < slen[b];
    embedding_forward(a->x_src, src, w->src_emb, T * B, E);
    for (int l = 0; l < L; l++) {
        const double *x = s2s_layer_input(a, c, l);
        s2s_rnn_forward(a->hf + l * TBH, a->cf ? a->cf + l * TBH : NULL, a->kf + l * TC,
                        a->zero, x, mask, &w->enc_f[l], T, B, RNN_LEFT_TO_RIGHT);
        if (a->hb)                                /* bidirectional: the other direction too */
            s2s_rnn_forward(a->hb + l * TBH, a->cb ? a->cb + l * TBH : NULL, a->kb + l * TC,
                            a->zero, x, mask, &w->enc_b[l], T, B, RNN_RIGHT_TO_LEFT);
        if (a->hb && l < L - 1)                   /* (T,B,H) x 2 -> (T,B,2H) */
            s2s_concat(s2s_layer_input(a, c, l + 1), a->hf + l * TBH, H, a->hb + l * TBH, H,
                       T * B);
    }
    const double *hf = a->hf + (L - 1) * TBH, *hb = a->hb ? a->hb + (L - 1) * TBH : NULL;
    for (int b = 0; b < B; b++)                   /* the top layer, (T,B,H) -> (B,T,He) */
        for (int t = 0; t < T; t++) {
            double *e = a->enc + (b * T + t) * He;
            memcpy(e, hf + t * BH + b * H, sizeof(double) * (size_t)H);
            if (hb) memcpy(e + H, hb + t * BH + b * H, sizeof(double) * (size_t)H);
        }
    if (a->Kp) score_keys_forward(a->Kp, a->enc, B * T, &w->score); /* once per source */
}

/* Backward of s2s_encoder_forward: g holds the activation gradients (g->enc
 * and g->Kp filled by the decoder, the top layer's g->hf at the last step by
 * the decoder's initial state); adds into the parameter gradients gw. */
void s2s_encoder_backward(S2sWeights *gw, S2sActs *g, const S2sActs *a,
                          const unsigned char *mask, const int *src, const S2sModel *m) {
    const S2sConfig *c = &m->cfg;
    const S2sWeights *w = &m->w;
    const int B = a->B, T = a->T, E = c->E, H = c->H, He = s2s_enc_width(c), BH = B * H;
    const int L = s2s_enc_layers(c), TBH = T * BH, TC = T * B * cell_cache_size(c->cell, H);
    if (a->Kp) score_keys_backward(g->enc, &gw->score, g->Kp, a->enc, B * T, &w->score);
    double *dhf = g->hf + (L - 1) * TBH, *dhb = a->hb ? g->hb + (L - 1) * TBH : NULL;
    for (int b = 0; b < B; b++)                   /* (B,T,He) -> the top layer's (T,B,H) */
        for (int t = 0; t < T; t++) {
            const double *e = g->enc + (b * T + t) * He;
            for (int j = 0; j < H; j++) dhf[t * BH + b * H + j] += e[j];
            if (dhb) for (int j = 0; j < H; j++) dhb[t * BH + b * H + j] += e[H + j];
        }
    for (int l = L - 1; l >= 0; l--) {            /* forward was: layer l reads layer l-1 */
        const double *x = s2s_layer_input(a, c, l);
        double *dx = s2s_layer_input(g, c, l);
        const int o = l * TBH;
        if (a->hb)
            s2s_rnn_backward(dx, g->zero, &gw->enc_b[l], g->hb + o, g->cb ? g->cb + o : NULL, x,
                             a->hb + o, a->cb ? a->cb + o : NULL, a->kb + l * TC, a->zero,
                             mask, &w->enc_b[l], T, B, RNN_RIGHT_TO_LEFT, a->work);
        s2s_rnn_backward(dx, g->zero, &gw->enc_f[l], g->hf + o, g->cf ? g->cf + o : NULL, x,
                         a->hf + o, a->cf ? a->cf + o : NULL, a->kf + l * TC, a->zero, mask,
                         &w->enc_f[l], T, B, RNN_LEFT_TO_RIGHT, a->work);
        if (a->hb && l > 0)                       /* forward was: x_l = [h_fwd; h_bwd] of l-1 */
            s2s_split_add(g->hf + o - TBH, g->hb + o - TBH, dx, H, H, T * B);
    }
    embedding_backward(gw->src_emb, g->x_src, src, T * B, E);
}

/* ========================================================================
 * 4. decoders: none, Bahdanau, Luong; then the output layer
 *
 * Each decoder is one forward/backward pair for step t of every row, with
 * its equations above it. All three start from the encoder's last forward
 * state (s_0 = h_T; for LSTM also its cell state). Attention over row b
 * reads only its slen[b] real annotations: the padding is never a key.
 * ======================================================================== */

/* The rows of step t a decoder reads and writes, named once: bound to the
 * activations they are the values, bound to their gradients the gradients
 * (both blocks share one layout). */
typedef struct {
    double *h, *c;            /* (B,H) the new state s_t (Luong: h_t), its LSTM cell or NULL */
    double *h_prev, *c_prev;  /* (B,H) the state before: step t-1's; at t = 0 the encoder's last */
    double *h_last;           /* (B,H) the encoder's last forward state h_T (top layer) */
    double *h_first;          /* (B,H) bidirectional: the last backward state, at j = 1 */
    double *x;                /* (B,E) the embedding of the input y_{t-1} */
    double *din;              /* (B,Din) the cell's input */
    double *cache;            /* (B * cell_cache_size) the cell's cache */
    double *ctx;              /* (B,He) the context vector c_t */
    double *oin;              /* none, Bahdanau: (B,H+He) the output layer's input [s_t; c_t] */
    double *hcat, *ht;        /* Luong: (B,He+H) [c_t; h_t], (B,H) h~_t */
    double *ht_prev;          /* Luong: (B,H) h~_{t-1}, the input fed back; zeros at t = 0 */
    double *logits;           /* (B,V) */
} S2sStep;

/* the rows of step t in a (the activations, or their gradients) */
static S2sStep s2s_step(const S2sActs *a, const S2sConfig *c, int t) {
    const int B = a->B, H = c->H, BH = B * H, He = s2s_enc_width(c);
    S2sStep s;
    s.h = a->hd + t * BH;
    s.c = a->cd ? a->cd + t * BH : NULL;
    const int top = (s2s_enc_layers(c) - 1) * a->T * BH;   /* the top layer's states */
    s.h_last = a->hf + top + (a->T - 1) * BH;
    s.h_first = a->hb ? a->hb + top : NULL;
    s.h_prev = t ? s.h - BH : s.h_last;
    s.c_prev = NULL;
    if (s.c) s.c_prev = t ? s.c - BH : a->cf + top + (a->T - 1) * BH;
    s.x = a->x_tgt + t * B * c->E;
    s.din = a->din + t * B * s2s_dec_input(c);
    s.cache = a->kd + t * B * cell_cache_size(c->cell, H);
    s.ctx = a->ctx + t * B * He;
    s.oin = a->oin ? a->oin + t * B * (H + He) : NULL;
    s.hcat = a->hcat ? a->hcat + t * B * (He + H) : NULL;
    s.ht = a->ht ? a->ht + t * BH : NULL;
    s.ht_prev = NULL;
    if (s.ht) s.ht_prev = t ? s.ht - BH : a->zero;
    s.logits = a->logits + t * B * c->V;
    return s;
}

/* One row's attention at step t: ctx (He), att (T) from query q (H) over the
 * slen real annotations of row b. lmask (T) is scratch for local windows. */
static void s2s_attend_row(S2sActs *a, const S2sModel *m, unsigned char *lmask, int t, int b,
                           int slen, const double *q) {
    const S2sConfig *c = &m->cfg;
    const int B = a->B, T = a->T, He = s2s_enc_width(c), P = s2s_key_width(c);
    const int tb = t * B + b;
    double *ctx = a->ctx + tb * He, *att = a->att + tb * T;
    double *cache = a->scache + tb * s2s_score_cache(c, T);
    const double *Kp = a->Kp + b * T * P, *enc = a->enc + b * T * He;
    for (int j = 0; j < T; j++) att[j] = 0.0;   /* padding keys: weight 0 */
    if (c->attention == S2S_LUONG && c->align == S2S_LOCAL_P) {
        double *align = a->align + tb * T;
        for (int j = 0; j < T; j++) align[j] = 0.0;
        a->pos[tb] = local_position_forward(a->pz + tb * c->A, q, m->w.Wp, m->w.vp, slen,
                                            c->H, c->A);
        local_p_attend_forward(ctx, att, align, lmask, cache, q, Kp, enc, a->pos[tb],
                               c->window, slen, He, &m->w.score);
    } else if (c->attention == S2S_LUONG && c->align == S2S_LOCAL_M) {
        int lo, n = local_window(&lo, t, c->window, slen);   /* p_t = t: monotonic */
        local_m_window_forward(ctx, att + lo, cache, q, Kp, enc, lo, n, He, &m->w.score);
    } else {
        attend_forward(ctx, att, cache, q, Kp, enc, NULL, slen, He, &m->w.score);
    }
}

/* Backward of s2s_attend_row: dq (H) +=, g->Kp, g->enc and the score (and
 * local-p) parameter gradients +=, from g->ctx of (t, b). */
static void s2s_attend_row_backward(S2sActs *g, S2sWeights *gw, double *dq, S2sActs *a,
                                    const S2sModel *m, int t, int b, int slen,
                                    const double *q) {
    const S2sConfig *c = &m->cfg;
    const int B = a->B, T = a->T, He = s2s_enc_width(c), P = s2s_key_width(c);
    const int tb = t * B + b;
    const double *cache = a->scache + tb * s2s_score_cache(c, T);
    double *work = a->work + B * 9 * c->H;
    if (c->attention == S2S_LUONG && c->align == S2S_LOCAL_P) {
        double dp = 0.0;
        local_p_attend_backward(dq, g->Kp + b * T * P, g->enc + b * T * He, &dp, &gw->score,
                                g->ctx + tb * He, q, a->Kp + b * T * P, a->enc + b * T * He,
                                a->att + tb * T, a->align + tb * T, cache, a->pos[tb],
                                c->window, slen, He, &m->w.score, work);
        local_position_backward(dq, gw->Wp, gw->vp, dp, q, a->pz + tb * c->A, a->pos[tb],
                                m->w.Wp, m->w.vp, slen, c->H, c->A, work + 2 * T);
    } else if (c->attention == S2S_LUONG && c->align == S2S_LOCAL_M) {
        int lo, n = local_window(&lo, t, c->window, slen);   /* the forward's window */
        local_m_window_backward(dq, g->Kp + b * T * P, g->enc + b * T * He, &gw->score,
                                g->ctx + tb * He, q, a->Kp + b * T * P, a->enc + b * T * He,
                                a->att + tb * T + lo, cache, lo, n, He, &m->w.score, work);
    } else {
        attend_backward(dq, g->Kp + b * T * P, g->enc + b * T * He, &gw->score,
                             g->ctx + tb * He, q, a->Kp + b * T * P, a->enc + b * T * He,
                             a->att + tb * T, cache, slen, He, &m->w.score, work);
    }
}

/* ---- none and Bahdanau: the context is an input of the step ------------
 *     s_t = cell([emb(y_{t-1}); c_t], s_{t-1}),   logits = [s_t; c_t] Wo + bo
 * The two differ only in where c_t comes from (below). */
static void s2s_context_step_forward(const S2sStep *s, const S2sModel *m, int B) {
    const S2sConfig *c = &m->cfg;
    const int E = c->E, H = c->H, He = s2s_enc_width(c);
    s2s_concat(s->din, s->x, E, s->ctx, He, B);                    /* [emb; c_t] */
    cell_forward(s->h, s->c, s->cache, s->din, s->h_prev, s->c_prev, NULL, &m->w.dec, B);
    s2s_concat(s->oin, s->h, H, s->ctx, He, B);                    /* [s_t; c_t] */
    linear_forward(s->logits, s->oin, m->w.Wo, m->w.bo, B, H + He, c->V);
}

/* Backward of s2s_context_step_forward: d holds the gradient rows of the
 * step (d->logits given); d->ctx, d->x, d->h_prev, d->c_prev and gw +=. */
static void s2s_context_step_backward(S2sWeights *gw, const S2sStep *d, const S2sStep *s,
                                      const S2sModel *m, int B, double *work) {
    const S2sConfig *c = &m->cfg;
    const int E = c->E, H = c->H, He = s2s_enc_width(c);
    /* forward was: logits = [s_t; c_t] Wo + bo */
    linear_backward(d->oin, gw->Wo, gw->bo, d->logits, s->oin, m->w.Wo, B, H + He, c->V);
    s2s_split_add(d->h, d->ctx, d->oin, H, He, B);
    /* forward was: s_t = cell([emb; c_t], s_{t-1}) */
    cell_backward(d->din, d->h_prev, d->c_prev, &gw->dec, d->h, d->c, s->din, s->h_prev,
                  s->c_prev, s->cache, NULL, &m->w.dec, B, work);
    s2s_split_add(d->x, d->ctx, d->din, E, He, B);
}

/* ---- none: the vanilla encoder-decoder (Cho et al. 2014) ---------------
 *     c_t = h_T for every t: the whole source squeezed into one vector
 * (bidirectional: c_t = [h_fwd_T; h_bwd_1], each direction's last state) */
static void s2s_vanilla_step_forward(S2sActs *a, int t, const S2sModel *m) {
    const S2sStep s = s2s_step(a, &m->cfg, t);
    const int B = a->B, H = m->cfg.H;
    if (s.h_first) s2s_concat(s.ctx, s.h_last, H, s.h_first, H, B);   /* He = 2H */
    else memcpy(s.ctx, s.h_last, sizeof(double) * (size_t)(B * H));   /* He = H */
    s2s_context_step_forward(&s, m, B);
}

/* Backward of s2s_vanilla_step_forward: g->logits at t given; g and gw += */
static void s2s_vanilla_step_backward(S2sWeights *gw, S2sActs *g, const S2sActs *a, int t,
                                      const S2sModel *m) {
    const S2sStep s = s2s_step(a, &m->cfg, t), d = s2s_step(g, &m->cfg, t);
    const int BH = a->B * m->cfg.H;
    s2s_context_step_backward(gw, &d, &s, m, a->B, a->work);
    if (s.h_first) s2s_split_add(d.h_last, d.h_first, d.ctx, m->cfg.H, m->cfg.H, a->B);
    else for (int i = 0; i < BH; i++) d.h_last[i] += d.ctx[i];   /* forward was: c_t = h_T */
}

/* ---- Bahdanau: attention before the step, from the previous state ------
 *     e_tj = v . tanh(W s_{t-1} + U h_j)     h_j = [h_fwd_j; h_bwd_j], additive score
 *     a_t  = softmax(e_t),   c_t = sum_j a_tj h_j           (Bahdanau et al. 2015)
 * then the step above with this c_t as an input. */
static void s2s_bahdanau_step_forward(S2sActs *a, unsigned char *lmask, const int *slen,
                                      int t, const S2sModel *m) {
    const S2sStep s = s2s_step(a, &m->cfg, t);
    for (int b = 0; b < a->B; b++)                     /* the query is s_{t-1} */
        s2s_attend_row(a, m, lmask, t, b, slen[b], s.h_prev + b * m->cfg.H);
    s2s_context_step_forward(&s, m, a->B);
}

/* Backward of s2s_bahdanau_step_forward: g->logits at t given; g and gw += */
static void s2s_bahdanau_step_backward(S2sWeights *gw, S2sActs *g, S2sActs *a,
                                       const int *slen, int t, const S2sModel *m) {
    const S2sStep s = s2s_step(a, &m->cfg, t), d = s2s_step(g, &m->cfg, t);
    const int H = m->cfg.H;
    s2s_context_step_backward(gw, &d, &s, m, a->B, a->work);
    /* forward was: c_t = attend(s_{t-1}, h_1..h_T): d.ctx flows back into the
     * query s_{t-1} and into the annotations (keys and values) */
    for (int b = 0; b < a->B; b++)
        s2s_attend_row_backward(g, gw, d.h_prev + b * H, a, m, t, b, slen[b], s.h_prev + b * H);
}

/* ---- Luong: attention after the step, from the new state ----------------
 *     h_t  = cell([emb(y_{t-1}); h~_{t-1}], h_{t-1})          input feeding
 *     e_tj = score(h_t, h_j): dot | general | concat (or chapter 1's others)
 *     c_t  = sum_j a_tj h_j over all j (global) or a window (local-m, local-p)
 *     h~_t = tanh([c_t; h_t] Wc + bc),   logits = h~_t Wo + bo  (Luong et al. 2015) */
static void s2s_luong_step_forward(S2sActs *a, unsigned char *lmask, const int *slen, int t,
                                   const S2sModel *m) {
    const S2sConfig *c = &m->cfg;
    const S2sWeights *w = &m->w;
    const int B = a->B, E = c->E, H = c->H, He = s2s_enc_width(c);
    const S2sStep s = s2s_step(a, c, t);
    s2s_concat(s.din, s.x, E, s.ht_prev, H, B);                    /* [emb; h~_{t-1}] */
    cell_forward(s.h, s.c, s.cache, s.din, s.h_prev, s.c_prev, NULL, &w->dec, B);
    for (int b = 0; b < B; b++) s2s_attend_row(a, m, lmask, t, b, slen[b], s.h + b * H);
    s2s_concat(s.hcat, s.ctx, He, s.h, H, B);                      /* [c_t; h_t] */
    linear_forward(s.ht, s.hcat, w->Wc, w->bc, B, He + H, H);
    tanh_forward(s.ht, s.ht, B * H);                               /* h~_t */
    linear_forward(s.logits, s.ht, w->Wo, w->bo, B, H, c->V);
}

/* Backward of s2s_luong_step_forward: g->logits at t given; g and gw += */
static void s2s_luong_step_backward(S2sWeights *gw, S2sActs *g, S2sActs *a, const int *slen,
                                    int t, const S2sModel *m) {
    const S2sConfig *c = &m->cfg;
    const S2sWeights *w = &m->w;
    const int B = a->B, E = c->E, H = c->H, He = s2s_enc_width(c), BH = B * H;
    const S2sStep s = s2s_step(a, c, t), d = s2s_step(g, c, t);
    double *dpre = a->work + 8 * BH;
    /* forward was: logits = h~_t Wo + bo */
    linear_backward(d.ht, gw->Wo, gw->bo, d.logits, s.ht, w->Wo, B, H, c->V);
    /* forward was: h~_t = tanh([c_t; h_t] Wc + bc); dpre = dh~ (1 - h~^2) */
    for (int i = 0; i < BH; i++) dpre[i] = 0.0;
    tanh_backward(dpre, d.ht, s.ht, BH);
    linear_backward(d.hcat, gw->Wc, gw->bc, dpre, s.hcat, w->Wc, B, He + H, H);
    s2s_split_add(d.ctx, d.h, d.hcat, He, H, B);
    /* forward was: c_t = attend(h_t, h_1..h_T): the query is the new state */
    for (int b = 0; b < B; b++)
        s2s_attend_row_backward(g, gw, d.h + b * H, a, m, t, b, slen[b], s.h + b * H);
    /* forward was: h_t = cell([emb; h~_{t-1}], h_{t-1}) */
    cell_backward(d.din, d.h_prev, d.c_prev, &gw->dec, d.h, d.c, s.din, s.h_prev, s.c_prev,
                  s.cache, NULL, &w->dec, B, a->work);
    s2s_split_add(d.x, d.ht_prev, d.din, E, H, B);
}

/* Decoder step t for all B rows, by the model's decoder: a->x_tgt at t must
 * hold the input embeddings; writes the state, the context, the attention
 * and a->logits at t. Used by training (teacher forcing), greedy decoding
 * and beam search. lmask (T) is scratch for local windows. */
void s2s_decoder_step_forward(S2sActs *a, unsigned char *lmask, const int *slen, int t,
                              const S2sModel *m) {
    switch (m->cfg.attention) {
    case S2S_NONE:     s2s_vanilla_step_forward(a, t, m); break;
    case S2S_BAHDANAU: s2s_bahdanau_step_forward(a, lmask, slen, t, m); break;
    default:           s2s_luong_step_forward(a, lmask, slen, t, m);
    }
}

/* Backward of decoder step t: g->logits at t holds dL/dlogits; adds into
 * g (the states, contexts and annotations of earlier steps) and gw. */
void s2s_decoder_step_backward(S2sWeights *gw, S2sActs *g, S2sActs *a, const int *slen,
                               int t, const S2sModel *m) {
    switch (m->cfg.attention) {
    case S2S_NONE:     s2s_vanilla_step_backward(gw, g, a, t, m); break;
    case S2S_BAHDANAU: s2s_bahdanau_step_backward(gw, g, a, slen, t, m); break;
    default:           s2s_luong_step_backward(gw, g, a, slen, t, m);
    }
}

/* ========================================================================
 * 5. the whole model: forward and backward through time
 *
 * The loss is the sequence negative log-likelihood with teacher forcing
 * (the decoder reads the true y_{t-1}, not its own guess):
 *     -log P(y | x) = -sum_t log P(y_t | y_<t, x)
 * averaged over the target tokens of the batch (EOS included).
 * ======================================================================== */

/* Mean loss of the batch; keeps every activation in r for s2s_backward.
 * Also sets r->ntok and r->ncorrect (teacher-forced argmax hits). */
double s2s_forward(S2sRun *r, const S2sBatch *bt, const S2sModel *m) {
    const S2sConfig *c = &m->cfg;
    const int B = bt->B, S = bt->S, V = c->V, E = c->E;
    s2s_run_bind(r, c, B, bt->T, S);
    S2sActs *a = &r->a;
    s2s_encoder_forward(a, r->mask, bt->src, bt->slen, m);
    embedding_forward(a->x_tgt, bt->tin, m->w.tgt_emb, S * B, E);
    double loss = 0.0;
    r->ntok = r->ncorrect = 0;
    for (int t = 0; t < S; t++) {
        s2s_decoder_step_forward(a, r->mask + r->Tmax * r->Bmax, bt->slen, t, m);
        for (int b = 0; b < B; b++) {
            int y = bt->tout[t * B + b];
            const double *lg = a->logits + (t * B + b) * V;
            loss += cross_entropy_forward(a->probs + (t * B + b) * V, lg, y, V, 0.0);
            if (y < 0) continue;
            r->ntok++;
            int best = argmax(lg, V);
            r->ncorrect += best == y;
        }
    }
    return loss / (r->ntok > 0 ? r->ntok : 1);
}

/* Backward of s2s_forward (run it first, on the same batch): adds dL/dw into
 * m->p.grads. Clears the activation gradients itself. */
void s2s_backward(S2sModel *m, S2sRun *r, const S2sBatch *bt) {
    const S2sConfig *c = &m->cfg;
    const int B = bt->B, S = bt->S, V = c->V;
    S2sActs *a = &r->a, *g = &r->g;
    memset(r->gmem, 0, sizeof(double) * (size_t)r->used);   /* this batch's part */
    double scale = 1.0 / (r->ntok > 0 ? r->ntok : 1);
    /* forward was: loss = (1/N) sum CE(logits, y), so dlogits = (p - onehot(y)) / N */
    for (int t = 0; t < S; t++)
        for (int b = 0; b < B; b++)
            cross_entropy_backward(g->logits + (t * B + b) * V, scale,
                                   a->probs + (t * B + b) * V, bt->tout[t * B + b], V, 0.0);
    for (int t = S - 1; t >= 0; t--) s2s_decoder_step_backward(&m->g, g, a, bt->slen, t, m);
    embedding_backward(m->g.tgt_emb, g->x_tgt, bt->tin, S * B, c->E);
    s2s_encoder_backward(&m->g, g, a, r->mask, bt->src, m);
}

/* ========================================================================
 * 6. one training step: teacher forcing, clipping by global norm, Adam
 * ======================================================================== */

/* What every training loop of this file does after its backward: clip the
 * gradients of p to global norm clip (0: no clipping), then Adam step
 * number step (1-based) with learning rate lr on p's parameters and moments.
 * A step that has diverged (step_diverged: V classes, 0 for no loss bound)
 * is not applied: the gradient norm goes to *diverged_norm and the result
 * is 1 (else 0). */
int s2s_clip_adam(S2sParams *p, int step, double lr, double clip, double loss, int V,
                  double *diverged_norm) {
    const int n = p->num_params;
    const double norm = clip > 0 ? clip_grad_norm(p->grads, n, clip) : grad_norm(p->grads, n);
    if (step_diverged(loss, norm, V)) { *diverged_norm = norm; return 1; }
    adam_update(p->params, p->grads, p->m, p->v, n, step, lr, 0.9, 0.999, 1e-8, 0.0);
    return 0;
}

/* One step on batch bt: zero grads, forward, backward, clip, Adam.
 * Returns the loss before the update. */
double s2s_train_step(S2sModel *m, S2sRun *r, const S2sBatch *bt, double lr, double clip) {
    s2s_zero_grad(m);
    double loss = s2s_forward(r, bt, m);
    s2s_backward(m, r, bt);
    m->step++;
    if (s2s_clip_adam(&m->p, m->step, lr, clip, loss, m->cfg.V, &m->div_norm)) {
        m->diverged = m->step;
        m->div_loss = loss;
    }
    return loss;
}

/* ========================================================================
 * 7. decoding: sampling, greedy and beam search
 *
 * Sampling draws every token from the model's distribution (sharpened or
 * flattened by a temperature) and feeds it back; greedy is sampling at
 * temperature 0, the argmax at every step: fast, but a locally best token can
 * lead to a worse sequence. Beam search keeps the K best prefixes by total
 * log-probability sum_t log P(y_t | y_<t, x); a prefix that emits EOS is
 * finished. Greedy and beam search return the mode, sampling a variety. Log-probabilities only fall as a prefix grows, so once the best
 * finished hypothesis beats every live prefix nothing can overtake it: we
 * stop there, and with K large enough the search is exhaustive (a test
 * checks it against enumeration). K = 1 is greedy. No length normalisation.
 * ======================================================================== */

/* out (B, maxlen) and len (B): every row of bt decoded by drawing each token
 * from softmax(logits / temperature) (attention.c's sample_softmax, rng) and
 * feeding the draw back, len = tokens before EOS (maxlen if none); a row that
 * has emitted EOS draws no more. Temperature 1 is the model's own
 * distribution, below 1 sharper, above 1 flatter; at 0 each draw is the
 * argmax: greedy decoding, which needs no rng. Only bt's sources are read.
 * The attention and logits of each step stay in r->a (the heatmap,
 * s2s_decoded_logp). */
void s2s_sample_decode(int *out, int *len, S2sRun *r, const S2sModel *m, const S2sBatch *bt,
                       int maxlen, double temperature, Rng *rng) {
    const S2sConfig *c = &m->cfg;
    const int B = bt->B, V = c->V, E = c->E;
    s2s_run_bind(r, c, B, bt->T, maxlen);
    S2sActs *a = &r->a;
    s2s_encoder_forward(a, r->mask, bt->src, bt->slen, m);
    for (int b = 0; b < B; b++) len[b] = -1;
    for (int t = 0; t < maxlen; t++) {
        int *tok = r->tok + t * B, done = 1;
        for (int b = 0; b < B; b++) tok[b] = t ? out[b * maxlen + t - 1] : S2S_BOS;
        embedding_forward(a->x_tgt + t * B * E, tok, m->w.tgt_emb, B, E);
        s2s_decoder_step_forward(a, r->mask + r->Tmax * r->Bmax, bt->slen, t, m);
        for (int b = 0; b < B; b++) {
            const double *lg = a->logits + (t * B + b) * V;
            /* r->beam (2 Bmax + Bmax V doubles) is beam search's; V of it is scratch here */
            const int y = len[b] < 0 ? sample_softmax(lg, V, temperature, r->beam, rng) : S2S_EOS;
            out[b * maxlen + t] = y;
            if (len[b] < 0 && y == S2S_EOS) len[b] = t;
            if (len[b] < 0) done = 0;
        }
        if (done) break;
    }
    for (int b = 0; b < B; b++) if (len[b] < 0) len[b] = maxlen;
}

/* Greedy decoding: the argmax at every step, s2s_sample_decode at temperature 0. */
void s2s_greedy_decode(int *out, int *len, S2sRun *r, const S2sModel *m, const S2sBatch *bt,
                       int maxlen) {
    s2s_sample_decode(out, len, r, m, bt, maxlen, 0.0, NULL);
}

/* permute rows (K,n) of X: row j becomes old row parent[j], j < nn */
static void s2s_permute_rows(double *X, const int *parent, int nn, int n, double *work) {
    for (int j = 0; j < nn; j++)
        memcpy(work + j * n, X + parent[j] * n, sizeof(double) * (size_t)n);
    memcpy(X, work, sizeof(double) * (size_t)(nn * n));
}

/* One step of a selection sort over the nc candidates cand, in the order
 * cidx: move the i-th best (ties: the lower index) to cidx[i], return it. */
static int s2s_beam_pick(int *cidx, const double *cand, int i, int nc) {
    int bi = i;
    for (int j = i + 1; j < nc; j++) {
        int x = cidx[j], y = cidx[bi];
        if (cand[x] > cand[y] || (cand[x] == cand[y] && x < y)) bi = j;
    }
    int id = cidx[bi];
    cidx[bi] = cidx[i]; cidx[i] = id;
    return id;
}

/* Beam search with K beams for ONE source src (slen): the best hypothesis
 * goes to out (maxlen), its log-probability to *logp; returns its length
 * (tokens before EOS; maxlen if it ended without EOS). The K beams are the
 * K rows of a batch; r must hold K rows. */
int s2s_beam_search(int *out, double *logp, S2sRun *r, const S2sModel *m, const int *src,
                    int slen, int K, int maxlen) {
    const S2sConfig *c = &m->cfg;
    const int V = c->V, E = c->E, H = c->H, BH = K * H;
    s2s_run_bind(r, c, K, slen, maxlen);
    S2sActs *a = &r->a;
    int *bsrc = r->tok, *bslen = r->tok + slen * K;   /* tok has Smax*Bmax >= this */
    int *hist = r->hist, *nhist = r->hist + K * maxlen, *parent = r->hist + 2 * K * maxlen;
    double *score = r->beam, *nscore = r->beam + K, *cand = r->beam + 2 * K;
    for (int t = 0; t < slen; t++) for (int k = 0; k < K; k++) bsrc[t * K + k] = src[t];
    for (int k = 0; k < K; k++) bslen[k] = slen;
    s2s_encoder_forward(a, r->mask, bsrc, bslen, m);
    int nk = 1, bestlen = 0;
    double best = -INFINITY;
    score[0] = 0.0;
    int *tok = r->ytok;                                /* K <= r->Bmax: s2s_run_bind */
    for (int t = 0; t < maxlen; t++) {
        for (int k = 0; k < K; k++)       /* rows past the nk live beams repeat beam 0 */
            tok[k] = t ? hist[(k < nk ? k : 0) * maxlen + t - 1] : S2S_BOS;
        embedding_forward(a->x_tgt + t * K * E, tok, m->w.tgt_emb, K, E);
        s2s_decoder_step_forward(a, r->mask + r->Tmax * r->Bmax, bslen, t, m);
        for (int k = 0; k < nk; k++) {                 /* score + log P(v | prefix k) */
            log_softmax_forward(cand + k * V, a->logits + (t * K + k) * V, V);
            for (int v = 0; v < V; v++) cand[k * V + v] += score[k];
        }
        int nc = nk * V, nn = 0;
        for (int i = 0; i < nc; i++) r->cidx[i] = i;
        for (int i = 0; i < nc && nn < K; i++) {      /* the candidates, best first */
            const int id = s2s_beam_pick(r->cidx, cand, i, nc), k = id / V, v = id % V;
            if (v == S2S_EOS || t == maxlen - 1) {     /* a finished hypothesis */
                if (cand[id] > best) {
                    best = cand[id];
                    bestlen = v == S2S_EOS ? t : maxlen;
                    memcpy(out, hist + k * maxlen, sizeof(int) * (size_t)t);
                    if (v != S2S_EOS) out[t] = v;
                }
                if (t == maxlen - 1) break;            /* sorted: the rest are worse */
                continue;
            }
            memcpy(nhist + nn * maxlen, hist + k * maxlen, sizeof(int) * (size_t)t);
            nhist[nn * maxlen + t] = v;
            nscore[nn] = cand[id];
            parent[nn++] = k;
        }
        if (nn == 0) break;
        /* the survivors' states become rows 0..nn-1 for the next step */
        s2s_permute_rows(a->hd + t * BH, parent, nn, H, a->work);
        if (a->cd) s2s_permute_rows(a->cd + t * BH, parent, nn, H, a->work);
        if (a->ht) s2s_permute_rows(a->ht + t * BH, parent, nn, H, a->work);
        int *ti = hist; hist = nhist; nhist = ti;
        double *ts = score; score = nscore; nscore = ts;
        nk = nn;
        if (best >= score[0]) break;                   /* nothing alive can win */
    }
    *logp = best;
    return bestlen;
}

/* ========================================================================
 * 8. pooling: one vector from all the RNN states, for classification
 *
 * The notes' "LSTM + attention": to classify a sequence from its states
 * h_1 .. h_T an RNN can
 *   last       r = h_T                 (what is left at the end)
 *   mean       r = (1/T) sum_t h_t     (every step the same weight)
 *   attention  e_t = v . tanh(W u + U h_t),  a = softmax(e),  r = sum_t a_t h_t
 *              with u a learned query ("which step matters?")
 * then logits = r Wo + bo. The attention is attention.c's additive score and
 * attend_forward(), with keys = values = the states. The toy task: the label
 * is the symbol at position 2 of a long sequence, so what matters is far
 * from the end and diluted in the mean.
 * ======================================================================== */

/* The classifier head both pooled models (RNN here, CNN in 9) end with:
 * logits (B,C) = r (B,R) Wo (R,C) + bo (C), probs (B,C) their softmax, and
 * the mean cross-entropy over the B labels, which it returns. */
double s2s_head_forward(double *logits, double *probs, const double *r, const double *Wo,
                        const double *bo, const int *labels, int B, int R, int C) {
    linear_forward(logits, r, Wo, bo, B, R, C);
    double loss = 0.0;
    for (int b = 0; b < B; b++)
        loss += cross_entropy_forward(probs + b * C, logits + b * C, labels[b], C, 0.0);
    return loss / B;
}

/* Backward of s2s_head_forward: dr (B,R), dWo, dbo +=; dlogits (B,C) must be
 * zero on entry (it receives the loss's gradient).
 * forward was: loss = (1/B) sum_b CE(logits_b), logits = r Wo + bo */
void s2s_head_backward(double *dr, double *dWo, double *dbo, double *dlogits,
                       const double *probs, const double *r, const double *Wo,
                       const int *labels, int B, int R, int C) {
    for (int b = 0; b < B; b++)
        cross_entropy_backward(dlogits + b * C, 1.0 / B, probs + b * C, labels[b], C, 0.0);
    linear_backward(dr, dWo, dbo, dlogits, r, Wo, B, R, C);
}

enum { POOL_LAST, POOL_MEAN, POOL_ATTENTION };
static const char *const pool_names[] = { "last", "mean", "attention", NULL };

typedef struct {
    int pool;              /* POOL_LAST | POOL_MEAN | POOL_ATTENTION */
    int cell;              /* CELL_* */
    int V, E, H, A, C;     /* vocabulary, embedding, hidden, score hidden, classes */
} PoolConfig;

typedef struct {
    double *emb;    /* (V,E) */
    S2sCell enc;    /* the RNN, input E */
    double *u;      /* (H) attention: the learned query */
    Score score;    /* attention: additive, Dq = Dk = H */
    double *Wo, *bo; /* (H,C), (C) */
} PoolWeights;

typedef struct {
    PoolConfig cfg;
    S2sParams p;                     /* the parameter blocks */
    PoolWeights w, g;                /* views into p.params and p.grads */
    int step;
} PoolModel;

/* The activations of one batch of B sequences of length T (no padding). */
typedef struct {
    int B, T;
    int n;            /* doubles this view spans in its block (pool_acts_bind) */
    double *x;        /* (T,B,E) embeddings */
    double *h, *c, *k; /* (T,B,H) states, (T,B,H) LSTM cells, (T, B*cache) cell caches */
    double *hs;       /* (B,T,H) the states batch-major: keys and values */
    double *Kp;       /* (B,T,A) prepared keys U h_t */
    double *att;      /* (B,T) attention weights */
    double *sc;       /* (B,(T+1)A) score caches */
    double *r;        /* (B,H) the pooled vector */
    double *logits, *probs; /* (B,C) each */
    double *zero;     /* (B,H) the initial state */
    double *work;     /* (B*8H + 2T + A) scratch */
} PoolActs;

/* Mean cross-entropy of the labels (B) given tokens (T,B); a keeps every
 * activation (bound by the caller with pool_acts_bind). */
double pool_forward(PoolActs *a, const int *tokens, const int *labels, const PoolModel *m) {
    const PoolConfig *c = &m->cfg;
    const PoolWeights *w = &m->w;
    const int B = a->B, T = a->T, H = c->H, BH = B * H;
    embedding_forward(a->x, tokens, w->emb, T * B, c->E);
    s2s_rnn_forward(a->h, a->c, a->k, a->zero, a->x, NULL, &w->enc, T, B,
                    RNN_LEFT_TO_RIGHT);
    if (c->pool == POOL_LAST) {
        memcpy(a->r, a->h + (T - 1) * BH, sizeof(double) * (size_t)BH);
    } else if (c->pool == POOL_MEAN) {
        for (int i = 0; i < BH; i++) a->r[i] = 0.0;
        for (int t = 0; t < T; t++)
            for (int i = 0; i < BH; i++) a->r[i] += a->h[t * BH + i] / T;
    } else {
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++)
                memcpy(a->hs + (b * T + t) * H, a->h + t * BH + b * H, sizeof(double) * (size_t)H);
        score_keys_forward(a->Kp, a->hs, B * T, &w->score);
        for (int b = 0; b < B; b++)
            attend_forward(a->r + b * H, a->att + b * T, a->sc + b * (T + 1) * c->A, w->u,
                           a->Kp + b * T * c->A, a->hs + b * T * H, NULL, T, H, &w->score);
    }
    return s2s_head_forward(a->logits, a->probs, a->r, w->Wo, w->bo, labels, B, H, c->C);
}

/* Backward of pool_forward: adds into the parameter gradients gw (m->g);
 * g is a second PoolActs bound like a, for the activation gradients
 * (cleared here). */
void pool_backward(PoolWeights *gw, PoolActs *g, const PoolActs *a, const int *tokens,
                   const int *labels, const PoolModel *m) {
    const PoolConfig *c = &m->cfg;
    const PoolWeights *w = &m->w;
    const int B = a->B, T = a->T, H = c->H, BH = B * H;
    memset(g->x, 0, sizeof(double) * (size_t)g->n);         /* the whole view */
    s2s_head_backward(g->r, gw->Wo, gw->bo, g->logits, a->probs, a->r, w->Wo, labels, B, H,
                      c->C);
    if (c->pool == POOL_LAST) {      /* forward was: r = h_T */
        for (int i = 0; i < BH; i++) g->h[(T - 1) * BH + i] += g->r[i];
    } else if (c->pool == POOL_MEAN) { /* forward was: r = (1/T) sum_t h_t */
        for (int t = 0; t < T; t++)
            for (int i = 0; i < BH; i++) g->h[t * BH + i] += g->r[i] / T;
    } else {                         /* forward was: r = attend(u, U h_t, h_t) */
        for (int b = 0; b < B; b++)
            attend_backward(gw->u, g->Kp + b * T * c->A, g->hs + b * T * H, &gw->score,
                            g->r + b * H, w->u, a->Kp + b * T * c->A, a->hs + b * T * H,
                            a->att + b * T, a->sc + b * (T + 1) * c->A, T, H, &w->score,
                            a->work + B * 8 * H);
        score_keys_backward(g->hs, &gw->score, g->Kp, a->hs, B * T, &w->score);
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++)
                for (int j = 0; j < H; j++) g->h[t * BH + b * H + j] += g->hs[(b * T + t) * H + j];
    }
    s2s_rnn_backward(g->x, g->zero, &gw->enc, g->h, g->c, a->x, a->h, a->c, a->k, a->zero,
                     NULL, &w->enc, T, B, RNN_LEFT_TO_RIGHT, a->work);
    embedding_backward(gw->emb, g->x, tokens, T * B, c->E);
}

/* ========================================================================
 * 9. CNN + attention: a 1-D convolution, then max, mean or attention pooling
 *
 * The notes' "CNN + attention" puts attention in one of three places: before
 * the convolution (two texts attend to each other and the result is appended
 * to the inputs), after it (the two texts' feature maps attend to each
 * other, and that feeds the pooling), or in place of the pooling. The first
 * two need a pair of texts (entailment): they close this section, after
 * the third, which classifies one sequence, beside max and mean pooling:
 *
 *   x_t    = emb[token_t]                                  (T,E)
 *   feat_n = relu([x_n; x_n+1; ..; x_n+K-1] W + b)          (N,F), N = T-K+1
 *   max        r_f = max_n feat_n,f
 *   mean       r   = (1/N) sum_n feat_n
 *   attention  a = softmax_n(v . tanh(W q + U feat_n)),  r = sum_n a_n feat_n
 *              q = u, a learned vector (F), or q = h_T, the last state of an
 *              LSTM over the same embeddings (H): the notes' sentence vector
 *   control    r = [max_n feat_n; h_T]   (F+H): the same LSTM, no attention
 *   logits = r Wo + bo
 *
 * The convolution is one matmul: im2col copies the K embeddings under each
 * window into one row, then (B*N, K*E) @ (K*E, F). The attention is
 * attention.c's additive score and attend_forward() with keys = values =
 * the feature rows; the LSTM is section 1's cell run by s2s_rnn_forward().
 * Extra legend: K kernel width, F channels (filters), N = T-K+1 windows,
 * C classes.
 *
 * The task (cnn_task_batch): the sequence holds "x" then a class letter
 * once, "y" then a different class letter once, filler letters everywhere
 * else, and ends with a question X or Y: which letter followed x (or y)? A
 * pattern detector finds both pairs; only something that has read the
 * question can pick between them. A fixed query weighs the two pairs the
 * same whatever the question, and a readout linear in "which pairs, which
 * question" cannot beat 50%; the h_T of an LSTM has just read the question.
 * ======================================================================== */

/* ---- the convolution ---------------------------------------------------- */

/* feat (B*N,F) = relu(pre), pre (B*N,F) = cols @ W (K*E,F) + b (F), where
 * row b*N+n of cols (B*N,K*E) holds x_n .. x_n+K-1 of sequence b side by
 * side (im2col). x (T,B,E) is time-major, as the RNNs use it. Needs K <= T. */
void conv1d_forward(double *feat, double *pre, double *cols, const double *x,
                    const double *W, const double *b, int T, int B, int E, int K, int F) {
    const int N = T - K + 1, KE = K * E;
    for (int s = 0; s < B; s++)
        for (int n = 0; n < N; n++)
            for (int j = 0; j < K; j++)   /* window slot j of row (s,n) is x_{n+j} */
                memcpy(cols + (s * N + n) * KE + j * E, x + ((n + j) * B + s) * E,
                       sizeof(double) * (size_t)E);
    linear_forward(pre, cols, W, b, B * N, KE, F);
    relu_forward(feat, pre, B * N * F);
}

/* Backward of conv1d_forward. dx (T,B,E) (may be NULL), dW (K*E,F) and db
 * (F) +=; dpre (B*N,F) and dcols (B*N,K*E) are scratch, overwritten; dfeat
 * (B*N,F) is the gradient arriving at feat. */
void conv1d_backward(double *dx, double *dW, double *db, double *dpre, double *dcols,
                     const double *dfeat, const double *pre, const double *cols,
                     const double *W, int T, int B, int E, int K, int F) {
    const int N = T - K + 1, KE = K * E;
    memset(dpre, 0, sizeof(double) * (size_t)(B * N * F));
    relu_backward(dpre, dfeat, pre, B * N * F);   /* forward was: feat = relu(pre) */
    if (dx) memset(dcols, 0, sizeof(double) * (size_t)(B * N * KE));
    /* forward was: pre = cols @ W + b, so dcols = dpre W^T, dW += cols^T dpre */
    linear_backward(dx ? dcols : NULL, dW, db, dpre, cols, W, B * N, KE, F);
    if (!dx) return;
    /* forward was: cols[s*N+n][j*E + e] = x[n+j][s][e]; an x_t sits in up to K
     * windows, so its gradient is the sum over them (col2im) */
    for (int s = 0; s < B; s++)
        for (int n = 0; n < N; n++)
            for (int j = 0; j < K; j++) {
                const double *dc = dcols + (s * N + n) * KE + j * E;
                double *dxt = dx + ((n + j) * B + s) * E;
                for (int e = 0; e < E; e++) dxt[e] += dc[e];
            }
}

/* ---- the classifier ----------------------------------------------------- */

/* CNN_MAX_RNN is a control, not a pooling of the notes: max pooling with
 * the RNN's h_T concatenated to r, so the classifier reads the same RNN as
 * CNN_ATT_RNN does, without attention (8452 parameters at the experiment's
 * defaults, 19% fewer than CNN_ATT_RNN's 10404). */
enum { CNN_MAX, CNN_MEAN, CNN_ATT_LEARNED, CNN_ATT_RNN, CNN_MAX_RNN };
static const char *const cnn_pool_names[] = { "max", "mean", "attention, learned query",
                                              "attention, query = RNN h_T",
                                              "max, RNN h_T concatenated", NULL };


typedef struct {
    int pool;           /* CNN_MAX | CNN_MEAN | CNN_ATT_LEARNED | CNN_ATT_RNN | CNN_MAX_RNN */
    int cell;           /* CELL_* of the RNN (CNN_ATT_RNN, CNN_MAX_RNN only) */
    int V, E, K, F;     /* vocabulary, embedding, kernel width, channels */
    int H, A, C;        /* RNN hidden (CNN_ATT_RNN, CNN_MAX_RNN), score hidden, classes */
} CnnConfig;

/* width R of the pooled vector r the classifier reads: F, or F + H with
 * the RNN's h_T concatenated (CNN_MAX_RNN) */
int cnn_pooled_width(const CnnConfig *c) { return c->F + (c->pool == CNN_MAX_RNN ? c->H : 0); }

/* does pooling c->pool run the RNN (h_T as query or as extra features)? */
int cnn_has_rnn(const CnnConfig *c) { return c->pool == CNN_ATT_RNN || c->pool == CNN_MAX_RNN; }

/* does pooling c->pool attend (a learned query or h_T)? */
int cnn_has_attention(const CnnConfig *c) {
    return c->pool == CNN_ATT_LEARNED || c->pool == CNN_ATT_RNN;
}

typedef struct {
    double *emb;        /* (V,E), read by the convolution and the query RNN */
    double *W, *b;      /* (K*E,F), (F): the convolution */
    S2sCell enc;        /* CNN_ATT_RNN, CNN_MAX_RNN: the RNN, input E, hidden H */
    double *u;          /* CNN_ATT_LEARNED: (F) the learned query */
    Score score;        /* attention: additive, Dq = F (learned) or H (RNN), Dk = F */
    double *Wo, *bo;    /* (R,C), (C); R = cnn_pooled_width(): F, or F + H */
} CnnWeights;

typedef struct {
    CnnConfig cfg;
    S2sParams p;                     /* the parameter blocks */
    CnnWeights w, g;                 /* views into p.params and p.grads */
    int step;
} CnnModel;

/* The activations of one batch of B sequences of length T (no padding). */
typedef struct {
    int B, T, N;
    int n;               /* doubles this view spans in its block (cnn_acts_bind) */
    double *x;           /* (T,B,E) embeddings */
    double *cols;        /* (B*N,K*E) im2col rows */
    double *pre, *feat;  /* (B*N,F) each: before and after the ReLU */
    double *h, *c, *k;   /* RNN: (T,B,H) states, (T,B,H) LSTM cells, (T, B*cache) */
    double *zero;        /* RNN query: (B,H) the initial state */
    double *Kp;          /* attention: (B*N,A) prepared keys U feat_n */
    double *att;         /* attention: (B,N) the pooling weights */
    double *sc;          /* attention: (B,(N+1)A) score caches */
    double *r;           /* (B,R) the pooled vector, R = F (+ H: CNN_MAX_RNN) */
    double *logits, *probs; /* (B,C) each */
    double *work;        /* attention or RNN: scratch, max(2N + A, 2 B G H with the RNN) */
} CnnActs;

/* Max pooling over the N windows of each of B sequences: r_f = max_n
 * feat_n,f, feat (B*N,F) as conv1d_forward leaves it; sequence s's r is
 * the first F of row s of r (B,ldr) (ldr = F, or wider when more follows). */
void maxpool_forward(double *r, int ldr, const double *feat, int B, int N, int F) {
    for (int s = 0; s < B; s++)
        for (int f = 0; f < F; f++) {
            double best = feat[s * N * F + f];
            for (int n = 1; n < N; n++)
                if (feat[(s * N + n) * F + f] > best) best = feat[(s * N + n) * F + f];
            r[s * ldr + f] = best;
        }
}

/* Backward of maxpool_forward: dfeat (B*N,F) +=, dr (B,ldr).
 * forward was: r_f = max_n feat_n,f; the gradient goes to the winner only
 * (found again: the first maximum, as in the forward). */
void maxpool_backward(double *dfeat, const double *dr, int ldr, const double *feat, int B,
                      int N, int F) {
    for (int s = 0; s < B; s++)
        for (int f = 0; f < F; f++) {
            int best = 0;
            for (int n = 1; n < N; n++)
                if (feat[(s * N + n) * F + f] > feat[(s * N + best) * F + f]) best = n;
            dfeat[(s * N + best) * F + f] += dr[s * ldr + f];
        }
}

/* Mean cross-entropy of the labels (B) given tokens (T,B); a keeps every
 * activation (bound by the caller with cnn_acts_bind). */
double cnn_forward(CnnActs *a, const int *tokens, const int *labels, const CnnModel *m) {
    const CnnConfig *c = &m->cfg;
    const CnnWeights *w = &m->w;
    const int B = a->B, T = a->T, N = a->N, F = c->F, A = c->A, H = c->H;
    const int R = cnn_pooled_width(c);
    embedding_forward(a->x, tokens, w->emb, T * B, c->E);
    conv1d_forward(a->feat, a->pre, a->cols, a->x, w->W, w->b, T, B, c->E, c->K, F);
    if (c->pool == CNN_MAX || c->pool == CNN_MAX_RNN) {
        maxpool_forward(a->r, R, a->feat, B, N, F);             /* r_f = max_n feat_n,f */
        if (c->pool == CNN_MAX_RNN) {  /* the control: r = [max_n feat_n; h_T] */
            s2s_rnn_forward(a->h, a->c, a->k, a->zero, a->x, NULL, &w->enc, T, B,
                            RNN_LEFT_TO_RIGHT);
            for (int b = 0; b < B; b++)
                memcpy(a->r + b * R + F, a->h + ((T - 1) * B + b) * H,
                       sizeof(double) * (size_t)H);
        }
    } else if (c->pool == CNN_MEAN) {
        for (int i = 0; i < B * F; i++) a->r[i] = 0.0;
        for (int b = 0; b < B; b++)
            for (int n = 0; n < N; n++)
                for (int f = 0; f < F; f++) a->r[b * F + f] += a->feat[(b * N + n) * F + f] / N;
    } else {
        if (c->pool == CNN_ATT_RNN)
            s2s_rnn_forward(a->h, a->c, a->k, a->zero, a->x, NULL, &w->enc, T, B,
                            RNN_LEFT_TO_RIGHT);
        score_keys_forward(a->Kp, a->feat, B * N, &w->score);
        for (int b = 0; b < B; b++) {
            const double *q = c->pool == CNN_ATT_RNN ? a->h + ((T - 1) * B + b) * H : w->u;
            attend_forward(a->r + b * F, a->att + b * N, a->sc + b * (N + 1) * A, q,
                           a->Kp + b * N * A, a->feat + b * N * F, NULL, N, F, &w->score);
        }
    }
    return s2s_head_forward(a->logits, a->probs, a->r, w->Wo, w->bo, labels, B, R, c->C);
}

/* Backward of cnn_forward: adds into the parameter gradients gw (m->g); g
 * is a second CnnActs bound like a, for the activation gradients (cleared
 * here). */
void cnn_backward(CnnWeights *gw, CnnActs *g, const CnnActs *a, const int *tokens,
                  const int *labels, const CnnModel *m) {
    const CnnConfig *c = &m->cfg;
    const CnnWeights *w = &m->w;
    const int B = a->B, T = a->T, N = a->N, F = c->F, A = c->A, H = c->H;
    const int R = cnn_pooled_width(c);
    memset(g->x, 0, sizeof(double) * (size_t)g->n);         /* the whole view */
    s2s_head_backward(g->r, gw->Wo, gw->bo, g->logits, a->probs, a->r, w->Wo, labels, B, R,
                      c->C);
    if (c->pool == CNN_MAX || c->pool == CNN_MAX_RNN) {
        /* forward was: r_f = max_n feat_n,f */
        maxpool_backward(g->feat, g->r, R, a->feat, B, N, F);
        if (c->pool == CNN_MAX_RNN) {  /* forward was: r[F..] = h_T of the RNN over x */
            for (int b = 0; b < B; b++)
                for (int j = 0; j < H; j++)
                    g->h[((T - 1) * B + b) * H + j] += g->r[b * R + F + j];
            s2s_rnn_backward(g->x, g->zero, &gw->enc, g->h, g->c, a->x, a->h, a->c, a->k,
                             a->zero, NULL, &w->enc, T, B, RNN_LEFT_TO_RIGHT, a->work);
        }
    } else if (c->pool == CNN_MEAN) {  /* forward was: r = (1/N) sum_n feat_n */
        for (int b = 0; b < B; b++)
            for (int n = 0; n < N; n++)
                for (int f = 0; f < F; f++) g->feat[(b * N + n) * F + f] += g->r[b * F + f] / N;
    } else {                           /* forward was: r = attend(q, U feat_n, feat_n) */
        for (int b = 0; b < B; b++) {
            const int rnn = c->pool == CNN_ATT_RNN;
            const double *q = rnn ? a->h + ((T - 1) * B + b) * H : w->u;
            double *dq = rnn ? g->h + ((T - 1) * B + b) * H : gw->u;
            attend_backward(dq, g->Kp + b * N * A, g->feat + b * N * F, &gw->score,
                            g->r + b * F, q, a->Kp + b * N * A, a->feat + b * N * F,
                            a->att + b * N, a->sc + b * (N + 1) * A, N, F, &w->score, a->work);
        }
        score_keys_backward(g->feat, &gw->score, g->Kp, a->feat, B * N, &w->score);
        if (c->pool == CNN_ATT_RNN)    /* forward was: q = h_T of the RNN over x */
            s2s_rnn_backward(g->x, g->zero, &gw->enc, g->h, g->c, a->x, a->h, a->c, a->k,
                             a->zero, NULL, &w->enc, T, B, RNN_LEFT_TO_RIGHT, a->work);
    }
    conv1d_backward(g->x, gw->W, gw->b, g->pre, g->cols, g->feat, a->pre, a->cols, w->W, T,
                    B, c->E, c->K, F);
    embedding_backward(gw->emb, g->x, tokens, T * B, c->E);
}

/* ---- two texts: attention before and after the convolution ----------------
 * The notes' first two placements need a pair of texts A (Ta tokens) and B
 * (Tb tokens), both read by the same embedding and the same convolution (a
 * siamese pair), and compare them through a match matrix
 *   M_ij = 1 / (1 + |a_i - b_j|^2)                              (Ta,Tb)
 * 1 when the two rows are equal, falling towards 0 as they move apart. (Yin
 * et al.'s ABCNN uses 1/(1 + |a - b|); squaring the distance keeps the
 * score differentiable at a_i = b_j, which is the case that matters: the
 * gradient of |a - b| there is 0/0. A dot product would not do: its value
 * for two equal tokens is the embedding's squared norm, so a short token
 * matching itself can score below two long tokens that differ.)
 *   siamese  ra = max_n conv(A)_n, rb = max_n conv(B)_n: no interaction
 *   before   (ABCNN-1) A's rows become [a_i; (M Wa)_i], B's [b_j; (M^T Wb)_j],
 *            Wa (Tb,E), Wb (Ta,E): token i's extra E columns are the match
 *            row M_i read through a learned map, so the convolution sees
 *            how well each token is matched in the other text; then max
 *            pooling as in the siamese
 *   after    (ABCNN-2) the match matrix of the two feature maps,
 *            M2_nm = 1/(1 + |fa_n - fb_m|^2) (Na,Nb); window n of A weighs
 *            wa_n = sum_m M2_nm (how well it is matched anywhere in B), B's
 *            wb_m = sum_n M2_nm, and ra = sum_n wa_n fa_n, rb = sum_m wb_m fb_m
 *            replace the max pooling
 * and every model ends in the same classifier over
 *   z = [ra; rb; ra * rb; |ra - rb|]    (4F)   logits = z Wo + bo
 * Extra legend: Ta, Tb the texts' lengths, Na = Ta-K+1, Nb = Tb-K+1 their
 * windows, Ein the convolution's input width (E, or 2E before).
 * ---------------------------------------------------------------------- */

/* M (Ta,Tb) = 1 / (1 + |a_i - b_j|^2) for rows a_i = a + i*sa, b_j = b + j*sb
 * of D doubles each (the strides let a time-major (T,B,D) batch be read in
 * place: sa = B*D). */
void match_forward(double *M, const double *a, int sa, const double *b, int sb, int Ta,
                   int Tb, int D) {
    for (int i = 0; i < Ta; i++)
        for (int j = 0; j < Tb; j++) {
            double s = 0.0;
            for (int d = 0; d < D; d++) {
                const double e = a[i * sa + d] - b[j * sb + d];
                s += e * e;
            }
            M[i * Tb + j] = 1.0 / (1.0 + s);
        }
}

/* Backward of match_forward: da (rows of stride sa), db (stride sb) +=.
 * forward was: M_ij = 1 / (1 + s_ij), s_ij = |a_i - b_j|^2, so
 * dM/ds = -M^2 and ds/da_i = 2 (a_i - b_j) = -ds/db_j. */
void match_backward(double *da, double *db, const double *dM, const double *M,
                    const double *a, int sa, const double *b, int sb, int Ta, int Tb, int D) {
    for (int i = 0; i < Ta; i++)
        for (int j = 0; j < Tb; j++) {
            const double g = -2.0 * dM[i * Tb + j] * M[i * Tb + j] * M[i * Tb + j];
            for (int d = 0; d < D; d++) {
                const double e = g * (a[i * sa + d] - b[j * sb + d]);
                da[i * sa + d] += e;
                db[j * sb + d] -= e;
            }
        }
}

/* One text's side of ABCNN-1, pair s of B: for its n rows,
 * w_i (2E) = [x_i; sum_j M_ij W_j], j over the other text's m positions,
 * with M_ij = Ms[i*mi + j*mj] (so either text's side reads the same (Ta,Tb)
 * match matrix), x (n,B,E), w (n,B,2E), W (m,E). */
static void abcnn1_side_forward(double *w, const double *x, const double *Ms, int mi, int mj,
                                const double *W, int s, int B, int n, int m, int E) {
    for (int i = 0; i < n; i++) {
        double *row = w + (i * B + s) * 2 * E;
        memcpy(row, x + (i * B + s) * E, sizeof(double) * (size_t)E);
        for (int e = 0; e < E; e++) row[E + e] = 0.0;
        for (int j = 0; j < m; j++)
            for (int e = 0; e < E; e++) row[E + e] += Ms[i * mi + j * mj] * W[j * E + e];
    }
}

/* Backward of abcnn1_side_forward: dx, dW, dMs +=; dw (n,B,2E) the gradient
 * at w. forward was: w_i = [x_i; sum_j M_ij W_j], so dx_i += dw_i[:E],
 * dM_ij += dw_i[E:] . W_j and dW_j += M_ij dw_i[E:] */
static void abcnn1_side_backward(double *dx, double *dW, double *dMs, const double *dw,
                                 const double *Ms, int mi, int mj, const double *W, int s,
                                 int B, int n, int m, int E) {
    for (int i = 0; i < n; i++) {
        const double *g = dw + (i * B + s) * 2 * E;
        for (int e = 0; e < E; e++) dx[(i * B + s) * E + e] += g[e];
        for (int j = 0; j < m; j++)
            for (int e = 0; e < E; e++) {
                dMs[i * mi + j * mj] += g[E + e] * W[j * E + e];
                dW[j * E + e] += Ms[i * mi + j * mj] * g[E + e];
            }
    }
}

/* Attention before the convolution (ABCNN-1), a batch of B pairs:
 * xa (Ta,B,E), xb (Tb,B,E) the embeddings, M (B,Ta,Tb) their match
 * matrices, and the widened rows the convolution reads,
 * wa (Ta,B,2E) = [xa_i; sum_j M_ij Wa_j], wb (Tb,B,2E) = [xb_j; sum_i M_ij Wb_i],
 * with Wa (Tb,E) and Wb (Ta,E). */
void abcnn1_forward(double *wa, double *wb, double *M, const double *xa, const double *xb,
                    const double *Wa, const double *Wb, int B, int Ta, int Tb, int E) {
    for (int s = 0; s < B; s++) {
        double *Ms = M + s * Ta * Tb;
        match_forward(Ms, xa + s * E, B * E, xb + s * E, B * E, Ta, Tb, E);
        abcnn1_side_forward(wa, xa, Ms, Tb, 1, Wa, s, B, Ta, Tb, E);   /* M_ij */
        abcnn1_side_forward(wb, xb, Ms, 1, Tb, Wb, s, B, Tb, Ta, E);   /* M^T: M_ji */
    }
}

/* Backward of abcnn1_forward: dxa (Ta,B,E), dxb (Tb,B,E), dWa, dWb +=; dM
 * (B,Ta,Tb) is scratch, overwritten; dwa, dwb the gradients at wa, wb. */
void abcnn1_backward(double *dxa, double *dxb, double *dWa, double *dWb, double *dM,
                     const double *dwa, const double *dwb, const double *M, const double *xa,
                     const double *xb, const double *Wa, const double *Wb, int B, int Ta,
                     int Tb, int E) {
    for (int s = 0; s < B; s++) {
        const double *Ms = M + s * Ta * Tb;
        double *dMs = dM + s * Ta * Tb;
        for (int k = 0; k < Ta * Tb; k++) dMs[k] = 0.0;
        /* forward was: wa = side(xa, M, Wa), wb = side(xb, M^T, Wb) */
        abcnn1_side_backward(dxa, dWa, dMs, dwa, Ms, Tb, 1, Wa, s, B, Ta, Tb, E);
        abcnn1_side_backward(dxb, dWb, dMs, dwb, Ms, 1, Tb, Wb, s, B, Tb, Ta, E);
        /* forward was: M = match(xa, xb) */
        match_backward(dxa + s * E, dxb + s * E, dMs, Ms, xa + s * E, B * E, xb + s * E, B * E,
                       Ta, Tb, E);
    }
}

/* Attention after the convolution (ABCNN-2) as the pooling, a batch of B
 * pairs: fa (B*Na,F), fb (B*Nb,F) the feature rows as conv1d_forward
 * leaves them, M2 (B,Na,Nb) their match, the pooling weights pa (B,Na) =
 * M2's row sums and pb (B,Nb) its column sums, and the pooled vectors
 * ra (B,F) = sum_n pa_n fa_n, rb (B,F) = sum_m pb_m fb_m. */
void abcnn2_forward(double *ra, double *rb, double *M2, double *pa, double *pb,
                    const double *fa, const double *fb, int B, int Na, int Nb, int F) {
    for (int s = 0; s < B; s++) {
        const double *fas = fa + s * Na * F, *fbs = fb + s * Nb * F;
        double *Ms = M2 + s * Na * Nb, *pas = pa + s * Na, *pbs = pb + s * Nb;
        match_forward(Ms, fas, F, fbs, F, Na, Nb, F);
        for (int n = 0; n < Na; n++) pas[n] = 0.0;
        for (int m = 0; m < Nb; m++) pbs[m] = 0.0;
        for (int n = 0; n < Na; n++)
            for (int m = 0; m < Nb; m++) { pas[n] += Ms[n * Nb + m]; pbs[m] += Ms[n * Nb + m]; }
        for (int f = 0; f < F; f++) ra[s * F + f] = rb[s * F + f] = 0.0;
        for (int n = 0; n < Na; n++)
            for (int f = 0; f < F; f++) ra[s * F + f] += pas[n] * fas[n * F + f];
        for (int m = 0; m < Nb; m++)
            for (int f = 0; f < F; f++) rb[s * F + f] += pbs[m] * fbs[m * F + f];
    }
}

/* Backward of abcnn2_forward: dfa (B*Na,F), dfb (B*Nb,F) +=; dM2 (B,Na,Nb)
 * is scratch, overwritten; dra, drb (B,F) the gradients at ra, rb. */
void abcnn2_backward(double *dfa, double *dfb, double *dM2, const double *dra,
                     const double *drb, const double *M2, const double *pa, const double *pb,
                     const double *fa, const double *fb, int B, int Na, int Nb, int F) {
    for (int s = 0; s < B; s++) {
        const double *fas = fa + s * Na * F, *fbs = fb + s * Nb * F;
        const double *pas = pa + s * Na, *pbs = pb + s * Nb;
        const double *dras = dra + s * F, *drbs = drb + s * F;
        double *dfas = dfa + s * Na * F, *dfbs = dfb + s * Nb * F, *dMs = dM2 + s * Na * Nb;
        for (int n = 0; n < Na; n++)
            for (int m = 0; m < Nb; m++) {
                /* forward was: ra = sum_n pa_n fa_n, pa_n = sum_m M2_nm (and rb,
                 * pb_m = sum_n M2_nm), so dM2_nm = dra . fa_n + drb . fb_m */
                double g = 0.0;
                for (int f = 0; f < F; f++)
                    g += dras[f] * fas[n * F + f] + drbs[f] * fbs[m * F + f];
                dMs[n * Nb + m] = g;
            }
        /* forward was: ra = sum_n pa_n fa_n, so dfa_n += pa_n dra (B alike) */
        for (int n = 0; n < Na; n++)
            for (int f = 0; f < F; f++) dfas[n * F + f] += pas[n] * dras[f];
        for (int m = 0; m < Nb; m++)
            for (int f = 0; f < F; f++) dfbs[m * F + f] += pbs[m] * drbs[f];
        /* forward was: M2 = match(fa, fb) */
        match_backward(dfas, dfbs, dMs, M2 + s * Na * Nb, fas, F, fbs, F, Na, Nb, F);
    }
}

/* What the classifier reads of a pair, z (B,4F) = [ra; rb; ra * rb; |ra - rb|],
 * from ra, rb (B,F): each text's vector, what they share, where they differ. */
void pair_combine_forward(double *z, const double *ra, const double *rb, int B, int F) {
    for (int s = 0; s < B; s++)
        for (int f = 0; f < F; f++) {
            const double x = ra[s * F + f], y = rb[s * F + f];
            double *zs = z + s * 4 * F;
            zs[f] = x; zs[F + f] = y; zs[2 * F + f] = x * y; zs[3 * F + f] = fabs(x - y);
        }
}

/* Backward of pair_combine_forward: dra, drb (B,F) +=.
 * forward was: z = [x; y; x*y; |x-y|], so dx += dz0 + dz2 y + dz3 sign(x-y)
 * and dy += dz1 + dz2 x - dz3 sign(x-y) (sign(0) = 0: at x = y |x-y| has
 * no derivative, and 0 lies between the two one-sided ones). */
void pair_combine_backward(double *dra, double *drb, const double *dz, const double *ra,
                           const double *rb, int B, int F) {
    for (int s = 0; s < B; s++)
        for (int f = 0; f < F; f++) {
            const double x = ra[s * F + f], y = rb[s * F + f], *g = dz + s * 4 * F;
            const double sg = x > y ? 1.0 : x < y ? -1.0 : 0.0;
            dra[s * F + f] += g[f] + g[2 * F + f] * y + g[3 * F + f] * sg;
            drb[s * F + f] += g[F + f] + g[2 * F + f] * x - g[3 * F + f] * sg;
        }
}

/* ---- the pair classifier -------------------------------------------------- */

enum { PAIR_SIAMESE, PAIR_BEFORE, PAIR_AFTER };
static const char *const pair_model_names[] = { "siamese, no interaction",
                                                "attention before the conv",
                                                "attention after the conv", NULL };

typedef struct {
    int model;          /* PAIR_SIAMESE | PAIR_BEFORE | PAIR_AFTER */
    int V, E, K, F, C;  /* vocabulary, embedding, kernel width, channels, classes */
    int Ta, Tb;         /* the two texts' lengths (every pair the same) */
} PairConfig;

/* the convolution's input width: E, or 2E with the attention features */
int pair_conv_input(const PairConfig *c) { return c->model == PAIR_BEFORE ? 2 * c->E : c->E; }

typedef struct {
    double *emb;        /* (V,E), both texts */
    double *Wa, *Wb;    /* PAIR_BEFORE: (Tb,E), (Ta,E): match rows -> attention features */
    double *W, *b;      /* (K*Ein,F), (F): the convolution, both texts */
    double *Wo, *bo;    /* (4F,C), (C) */
} PairWeights;

typedef struct {
    PairConfig cfg;
    S2sParams p;                     /* the parameter blocks */
    PairWeights w, g;                /* views into p.params and p.grads */
} PairModel;

/* The activations of one batch of B pairs. Fields a model does not use are NULL. */
typedef struct {
    int B;
    int n;                   /* doubles this view spans in its block (pair_acts_bind) */
    double *xa, *xb;         /* (Ta,B,E), (Tb,B,E) embeddings */
    double *M;               /* PAIR_BEFORE: (B,Ta,Tb) the token match matrices */
    double *wa, *wb;         /* PAIR_BEFORE: (Ta,B,2E), (Tb,B,2E) the widened rows */
    double *cola, *pra, *fa; /* (B*Na,K*Ein) im2col, (B*Na,F) before and after the ReLU */
    double *colb, *prb, *fb; /* the same for B: (B*Nb,K*Ein), (B*Nb,F) each */
    double *M2;              /* PAIR_AFTER: (B,Na,Nb) the window match matrices */
    double *pa, *pb;         /* PAIR_AFTER: (B,Na), (B,Nb) the pooling weights */
    double *ra, *rb;         /* (B,F) each text's pooled vector */
    double *z;               /* (B,4F) what the classifier reads */
    double *logits, *probs;  /* (B,C) each */
} PairActs;

/* Mean cross-entropy of the labels (B) given the texts ta (Ta,B) and tb
 * (Tb,B); a keeps every activation (bound with pair_acts_bind). */
double pair_forward(PairActs *a, const int *ta, const int *tb, const int *labels,
                    const PairModel *m) {
    const PairConfig *c = &m->cfg;
    const PairWeights *w = &m->w;
    const int B = a->B, E = c->E, K = c->K, F = c->F, Ein = pair_conv_input(c);
    const int Na = c->Ta - K + 1, Nb = c->Tb - K + 1;
    embedding_forward(a->xa, ta, w->emb, c->Ta * B, E);
    embedding_forward(a->xb, tb, w->emb, c->Tb * B, E);
    if (c->model == PAIR_BEFORE)
        abcnn1_forward(a->wa, a->wb, a->M, a->xa, a->xb, w->Wa, w->Wb, B, c->Ta, c->Tb, E);
    const int before = c->model == PAIR_BEFORE;
    conv1d_forward(a->fa, a->pra, a->cola, before ? a->wa : a->xa, w->W, w->b, c->Ta, B, Ein,
                   K, F);
    conv1d_forward(a->fb, a->prb, a->colb, before ? a->wb : a->xb, w->W, w->b, c->Tb, B, Ein,
                   K, F);
    if (c->model == PAIR_AFTER) {
        abcnn2_forward(a->ra, a->rb, a->M2, a->pa, a->pb, a->fa, a->fb, B, Na, Nb, F);
    } else {
        maxpool_forward(a->ra, F, a->fa, B, Na, F);
        maxpool_forward(a->rb, F, a->fb, B, Nb, F);
    }
    pair_combine_forward(a->z, a->ra, a->rb, B, F);
    return s2s_head_forward(a->logits, a->probs, a->z, w->Wo, w->bo, labels, B, 4 * F, c->C);
}

/* Backward of pair_forward: adds into the parameter gradients gw (m->g); g
 * is a second PairActs bound like a, for the activation gradients (cleared
 * here; its M, M2, pra, prb, cola, colb serve as the layers' scratch). */
void pair_backward(PairWeights *gw, PairActs *g, const PairActs *a, const int *ta,
                   const int *tb, const int *labels, const PairModel *m) {
    const PairConfig *c = &m->cfg;
    const PairWeights *w = &m->w;
    const int B = a->B, E = c->E, K = c->K, F = c->F, Ein = pair_conv_input(c);
    const int Na = c->Ta - K + 1, Nb = c->Tb - K + 1, before = c->model == PAIR_BEFORE;
    memset(g->xa, 0, sizeof(double) * (size_t)g->n);        /* the whole view */
    s2s_head_backward(g->z, gw->Wo, gw->bo, g->logits, a->probs, a->z, w->Wo, labels, B,
                      4 * F, c->C);
    pair_combine_backward(g->ra, g->rb, g->z, a->ra, a->rb, B, F);
    if (c->model == PAIR_AFTER) {      /* forward was: ra, rb = abcnn2(fa, fb) */
        abcnn2_backward(g->fa, g->fb, g->M2, g->ra, g->rb, a->M2, a->pa, a->pb, a->fa, a->fb,
                        B, Na, Nb, F);
    } else {                           /* forward was: ra = max_n fa_n, rb likewise */
        maxpool_backward(g->fa, g->ra, F, a->fa, B, Na, F);
        maxpool_backward(g->fb, g->rb, F, a->fb, B, Nb, F);
    }
    /* forward was: fa = conv(xa or wa), fb = conv(xb or wb), the same W and b */
    conv1d_backward(before ? g->wa : g->xa, gw->W, gw->b, g->pra, g->cola, g->fa, a->pra,
                    a->cola, w->W, c->Ta, B, Ein, K, F);
    conv1d_backward(before ? g->wb : g->xb, gw->W, gw->b, g->prb, g->colb, g->fb, a->prb,
                    a->colb, w->W, c->Tb, B, Ein, K, F);
    if (before)                        /* forward was: wa, wb = abcnn1(xa, xb) */
        abcnn1_backward(g->xa, g->xb, gw->Wa, gw->Wb, g->M, g->wa, g->wb, a->M, a->xa, a->xb,
                        w->Wa, w->Wb, B, c->Ta, c->Tb, E);
    embedding_backward(gw->emb, g->xa, ta, c->Ta * B, E);
    embedding_backward(gw->emb, g->xb, tb, c->Tb * B, E);
}

/* ************************************************************************
 * PART II. THE PROGRAM
 *
 * Part I above is the whole model. What follows runs it: the layouts that
 * count, allocate and bind its blocks, the tasks and their held-out
 * splits, the training loop and the evaluation, then (not in the tests'
 * build) the options, the default run, the experiments and --bench.
 * ************************************************************************ */

/* ========================================================================
 * 10. layouts: one Layout walk per model counts, binds and initialises
 *
 * Every model of Part I keeps its parameters, their gradients, Adam's two
 * moments and its activations in one block each. One walk per model, over
 * attention.c's Layout cursor, runs once to count (mem NULL), once to bind
 * the parameters (drawing their initial values in the walk's order) and
 * once to bind the gradients: the optimizer and the gradient checker see
 * one flat array, and no tensor can be missed or looked up by a wrong name.
 * ======================================================================== */

/* The next (rows, cols) parameter of a Layout walk, named by printf's fmt:
 * counted, or bound (and recorded, when L->spans is set); when r is given,
 * also drawn uniform in [-k, k], so a model's random draws follow its
 * layout. Every model of this file lays out its parameters with it. */
double *s2s_param(Layout *L, Rng *r, int rows, int cols, double k, const char *fmt, ...) {
    char name[32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    double *p = layout_param(L, rows, cols, 0, "%s", name);
    if (p && r) rng_fill_uniform(r, p, rows * cols, -k, k);
    return p;
}

/* Lay out a cell's parameters Wx, Wh, bx, bh (named "name.Wx", ...), each
 * uniform in [-1/sqrt(H), 1/sqrt(H)] when r is given. */
void cell_layout(S2sCell *c, Layout *L, Rng *r, int kind, int I, int H, const char *name) {
    const int G = cell_gates(kind) * H;
    const double k = 1.0 / sqrt((double)H);
    c->kind = kind; c->I = I; c->H = H;
    c->Wx = s2s_param(L, r, I, G, k, "%s.Wx", name);
    c->Wh = s2s_param(L, r, H, G, k, "%s.Wh", name);
    c->bx = s2s_param(L, r, 1, G, k, "%s.bx", name);
    c->bh = s2s_param(L, r, 1, G, k, "%s.bh", name);
}

/* parameters of one cell with input size I and hidden size H (its layout, counted) */
int cell_num_params(int kind, int I, int H) {
    S2sCell c;
    Layout L = { NULL, 0, NULL, 0 };
    cell_layout(&c, &L, NULL, kind, I, H, "cell");
    return L.off;
}

/* point c at cell_num_params doubles in mem, in the order Wx, Wh, bx, bh */
void cell_bind(S2sCell *c, double *mem, int kind, int I, int H) {
    Layout L = { mem, 0, NULL, 0 };
    cell_layout(c, &L, NULL, kind, I, H, "cell");
}

/* Lay out the parameters of a score (attention.c's Score) in score_bind's
 * order W, U, v, each uniform in [-1/sqrt(fan-in), 1/sqrt(fan-in)]. */
void s2s_score_layout(Score *s, Layout *L, Rng *r, int kind, int Dq, int Dk, int A) {
    s->kind = kind; s->Dq = Dq; s->Dk = Dk; s->A = A;
    s->W = s->U = s->v = NULL;
    if (kind == SCORE_GENERAL) s->W = s2s_param(L, r, Dk, Dq, 1.0 / sqrt((double)Dk), "score.W");
    if (kind == SCORE_ADDITIVE) {
        s->W = s2s_param(L, r, Dq, A, 1.0 / sqrt((double)Dq), "score.W");
        s->U = s2s_param(L, r, Dk, A, 1.0 / sqrt((double)Dk), "score.U");
    }
    if (kind == SCORE_CONCAT)
        s->W = s2s_param(L, r, Dq + Dk, A, 1.0 / sqrt((double)(Dq + Dk)), "score.W");
    if (kind == SCORE_ADDITIVE || kind == SCORE_CONCAT)
        s->v = s2s_param(L, r, 1, A, 1.0 / sqrt((double)A), "score.v");
}

/* The walk over the parameters of config c, in the order of the block (and
 * of the random draws): count (L->mem NULL), or bind w, and with r also
 * initialise: uniform in [-k, k], k = 1/sqrt(fan-in), embeddings k = 1. */
static void s2s_weights_layout(void *views, Layout *L, Rng *r, const void *cfg) {
    S2sWeights *w = views;
    const S2sConfig *c = cfg;
    const int V = c->V, E = c->E, H = c->H, He = s2s_enc_width(c);
    const int Dout = s2s_out_input(c);
    memset(w, 0, sizeof *w);
    w->src_emb = s2s_param(L, r, s2s_src_vocab(c), E, 1.0, "src_emb");
    w->tgt_emb = s2s_param(L, r, V, E, 1.0, "tgt_emb");
    for (int l = 0; l < s2s_enc_layers(c); l++) {   /* layer 0 reads E, the others He */
        char nf[16], nb[16];
        snprintf(nf, sizeof nf, l ? "enc%d_f" : "enc_f", l);
        snprintf(nb, sizeof nb, l ? "enc%d_b" : "enc_b", l);
        cell_layout(&w->enc_f[l], L, r, c->cell, l ? He : E, H, nf);
        if (s2s_enc_bi(c)) cell_layout(&w->enc_b[l], L, r, c->cell, l ? He : E, H, nb);
    }
    cell_layout(&w->dec, L, r, c->cell, s2s_dec_input(c), H, "dec");
    s2s_score_layout(&w->score, L, r, s2s_score_kind(c), H, He, c->A);
    if (c->attention == S2S_LUONG) {
        w->Wc = s2s_param(L, r, He + H, H, 1.0 / sqrt((double)(He + H)), "Wc");
        w->bc = s2s_param(L, r, 1, H, 1.0 / sqrt((double)(He + H)), "bc");
        if (c->align == S2S_LOCAL_P) {
            w->Wp = s2s_param(L, r, H, c->A, 1.0 / sqrt((double)H), "Wp");
            w->vp = s2s_param(L, r, 1, c->A, 1.0 / sqrt((double)c->A), "vp");
        }
    }
    w->Wo = s2s_param(L, r, Dout, V, 1.0 / sqrt((double)Dout), "Wo");
    w->bo = s2s_param(L, r, 1, V, 1.0 / sqrt((double)Dout), "bo");
}

/* One pass of a model's parameter walk, typed as qsort's comparators are:
 * lay out the views (S2sWeights, PoolWeights or CnnWeights) of config cfg
 * (S2sConfig, PoolConfig or CnnConfig) over L, drawing initial values from
 * r if it is given. */
typedef void S2sWalk(void *views, Layout *L, Rng *r, const void *cfg);

/* The three passes every model makes over its walk: count, allocate the
 * four blocks of p, bind w to the parameters (drawing their initial values
 * and recording the spans), then g to the gradients. A walk that laid out
 * more tensors than p->spans holds is the program's own mistake. */
static void s2s_params_build(S2sParams *p, void *w, void *g, S2sWalk *walk, const void *cfg,
                             Rng *r) {
    Layout L = { NULL, 0, NULL, 0 };
    walk(w, &L, NULL, cfg);
    if (L.nspans > S2S_MAX_TENSORS) {
        fprintf(stderr, "seq2seq: internal error: %d parameter tensors, room for %d\n",
                L.nspans, S2S_MAX_TENSORS);
        exit(1);
    }
    const int n = p->num_params = L.off;
    p->params = xcalloc_doubles(n); p->grads = xcalloc_doubles(n);
    p->m = xcalloc_doubles(n); p->v = xcalloc_doubles(n);
    L = (Layout){ p->params, 0, p->spans, 0 };
    walk(w, &L, r, cfg);
    p->nspans = L.nspans;
    L = (Layout){ p->grads, 0, NULL, 0 };
    walk(g, &L, NULL, cfg);
}

static void s2s_params_free(S2sParams *p) {
    free(p->params); free(p->grads); free(p->m); free(p->v);
}

/* Allocate and initialise a model for cfg: weights uniform in [-k, k] with
 * k = 1/sqrt(fan-in) (embeddings k = 1), the LSTM forget-gate biases at 1.
 * The caller frees it with s2s_free. */
void s2s_build(S2sModel *m, const S2sConfig *cfg, Rng *r) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    s2s_params_build(&m->p, &m->w, &m->g, s2s_weights_layout, cfg, r);
    if (cfg->cell == CELL_LSTM) {               /* remember by default (Jozefowicz 2015) */
        S2sCell *cs[2 * S2S_MAX_LAYERS + 1] = { &m->w.dec };
        for (int l = 0; l < S2S_MAX_LAYERS; l++) {
            cs[1 + 2 * l] = &m->w.enc_f[l];
            cs[2 + 2 * l] = &m->w.enc_b[l];
        }
        for (int k = 0; k < 2 * S2S_MAX_LAYERS + 1; k++)
            if (cs[k]->bx)
                for (int j = 0; j < cfg->H; j++) {
                    cs[k]->bx[cfg->H + j] = 1.0;
                    cs[k]->bh[cfg->H + j] = 0.0;
                }
    }
}

/* free what s2s_build allocated */
void s2s_free(S2sModel *m) { s2s_params_free(&m->p); }

/* Bind a (may be NULL: count only) to mem for (B,T,S); returns the doubles. */
int s2s_acts_bind(S2sActs *a, double *mem, const S2sConfig *c, int B, int T, int S) {
    const int E = c->E, H = c->H, A = c->A, He = s2s_enc_width(c), V = c->V;
    const int cs = B * cell_cache_size(c->cell, H), lstm = c->cell == CELL_LSTM;
    const int bi = s2s_enc_bi(c), att = c->attention != S2S_NONE, nl = s2s_enc_layers(c);
    const int luong = c->attention == S2S_LUONG, lp = luong && c->align == S2S_LOCAL_P;
    Layout L = { mem, 0, NULL, 0 };
    S2sActs dummy;
    if (!a) a = &dummy;
    a->B = B; a->T = T; a->S = S;
    a->x_src = layout_take(&L, T * B * E);
    a->hf = layout_take(&L, nl * T * B * H);
    a->cf = lstm ? layout_take(&L, nl * T * B * H) : NULL;
    a->kf = layout_take(&L, nl * T * cs);
    a->hb = bi ? layout_take(&L, nl * T * B * H) : NULL;
    a->cb = bi && lstm ? layout_take(&L, nl * T * B * H) : NULL;
    a->kb = bi ? layout_take(&L, nl * T * cs) : NULL;
    a->xl = bi && nl > 1 ? layout_take(&L, (nl - 1) * T * B * 2 * H) : NULL;
    a->enc = layout_take(&L, B * T * He);
    a->Kp = att ? layout_take(&L, B * T * s2s_key_width(c)) : NULL;
    a->zero = layout_take(&L, B * H);
    a->x_tgt = layout_take(&L, S * B * E);
    a->din = layout_take(&L, S * B * s2s_dec_input(c));
    a->hd = layout_take(&L, S * B * H);
    a->cd = lstm ? layout_take(&L, S * B * H) : NULL;
    a->kd = layout_take(&L, S * cs);
    a->att = att ? layout_take(&L, S * B * T) : NULL;
    a->align = lp ? layout_take(&L, S * B * T) : NULL;
    a->scache = att ? layout_take(&L, S * B * s2s_score_cache(c, T)) : NULL;
    a->pz = lp ? layout_take(&L, S * B * A) : NULL;
    a->pos = lp ? layout_take(&L, S * B) : NULL;
    a->ctx = layout_take(&L, S * B * He);
    a->hcat = luong ? layout_take(&L, S * B * (He + H)) : NULL;
    a->ht = luong ? layout_take(&L, S * B * H) : NULL;
    a->oin = !luong ? layout_take(&L, S * B * s2s_out_input(c)) : NULL;
    a->logits = layout_take(&L, S * B * V);
    a->probs = layout_take(&L, S * B * V);
    a->work = layout_take(&L, B * 9 * H + 2 * T + A);
    return L.off;
}

/* Allocate r's activations and their gradients (one block each) for batches
 * up to (Bmax, Tmax, Smax) of model config c; r owns them: s2s_run_free(). */
void s2s_run_build(S2sRun *r, const S2sConfig *c, int Bmax, int Tmax, int Smax) {
    memset(r, 0, sizeof *r);
    r->Bmax = Bmax; r->Tmax = Tmax; r->Smax = Smax;
    r->cap = s2s_acts_bind(NULL, NULL, c, Bmax, Tmax, Smax);
    r->amem = xcalloc_doubles(r->cap);
    r->gmem = xcalloc_doubles(r->cap);
    r->mask = xmalloc((size_t)(Tmax * Bmax + Tmax));
    r->tok = xmalloc(sizeof(int) * (size_t)((Smax > Tmax ? Smax : Tmax + 1) * Bmax));
    r->ytok = xmalloc(sizeof(int) * (size_t)Bmax);
    r->lens = xmalloc(sizeof(int) * (size_t)Bmax);
    r->hist = xmalloc(sizeof(int) * (size_t)(2 * Bmax * Smax + Bmax));
    r->cidx = xmalloc(sizeof(int) * (size_t)(Bmax * c->V));
    r->beam = xcalloc_doubles(2 * Bmax + Bmax * c->V);
}

/* The most doubles one block may hold (as in chapter 3: offsets are ints,
 * and 2e8 doubles are 1.6 GB, twice over for activations and gradients). */
#define S2S_MAX_DOUBLES 2e8

/* Doubles of each of the two blocks s2s_run_build would allocate for
 * batches up to (B, T, S): the layout counted for one example and times B,
 * an upper bound (only a few scratch doubles do not grow with B) that
 * cannot overflow an int however large B is. */
double s2s_acts_estimate(const S2sConfig *c, int B, int T, int S) {
    return (double)B * s2s_acts_bind(NULL, NULL, c, 1, T, S);
}

void s2s_run_free(S2sRun *r) {
    free(r->amem); free(r->gmem); free(r->mask); free(r->tok); free(r->ytok); free(r->lens);
    free(r->hist);
    free(r->cidx); free(r->beam);
}

/* Rebind the views for a batch of (B,T,S); no allocation. */
static void s2s_run_bind(S2sRun *r, const S2sConfig *c, int B, int T, int S) {
    if (B > r->Bmax || T > r->Tmax || S > r->Smax) {
        fprintf(stderr, "seq2seq: batch (%d,%d,%d) exceeds the workspace (%d,%d,%d)\n",
                B, T, S, r->Bmax, r->Tmax, r->Smax);
        exit(1);
    }
    r->used = s2s_acts_bind(&r->a, r->amem, c, B, T, S);
    s2s_acts_bind(&r->g, r->gmem, c, B, T, S);
}

/* The walk over the pooling classifier's parameters (count, bind, and with
 * r initialise), in the order of its block and of its random draws. */
static void pool_weights_layout(void *views, Layout *L, Rng *r, const void *cfg) {
    PoolWeights *w = views;
    const PoolConfig *c = cfg;
    const double s = 1.0 / sqrt((double)c->H);
    memset(w, 0, sizeof *w);
    w->emb = s2s_param(L, r, c->V, c->E, 1.0, "emb");
    cell_layout(&w->enc, L, r, c->cell, c->E, c->H, "enc");
    if (c->pool == POOL_ATTENTION) {
        w->u = s2s_param(L, r, 1, c->H, 1.0, "u");
        s2s_score_layout(&w->score, L, r, SCORE_ADDITIVE, c->H, c->H, c->A);
    }
    w->Wo = s2s_param(L, r, c->H, c->C, s, "Wo");
    w->bo = s2s_param(L, r, 1, c->C, s, "bo");
}

/* Allocate and initialise the pooling classifier of config c (parameters,
 * gradients, Adam state: one block each); m owns them: pool_free(). */
void pool_build(PoolModel *m, const PoolConfig *c, Rng *r) {
    memset(m, 0, sizeof *m);
    m->cfg = *c;
    s2s_params_build(&m->p, &m->w, &m->g, pool_weights_layout, c, r);
}

/* Bind a (NULL mem: count only) for B sequences of length T; returns doubles. */
int pool_acts_bind(PoolActs *a, double *mem, const PoolConfig *c, int B, int T) {
    const int H = c->H, lstm = c->cell == CELL_LSTM, att = c->pool == POOL_ATTENTION;
    Layout L = { mem, 0, NULL, 0 };
    PoolActs dummy;
    if (!a) a = &dummy;
    a->B = B; a->T = T;
    a->x = layout_take(&L, T * B * c->E);
    a->h = layout_take(&L, T * B * H);
    a->c = lstm ? layout_take(&L, T * B * H) : NULL;
    a->k = layout_take(&L, T * B * cell_cache_size(c->cell, H));
    a->hs = att ? layout_take(&L, B * T * H) : NULL;
    a->Kp = att ? layout_take(&L, B * T * c->A) : NULL;
    a->att = att ? layout_take(&L, B * T) : NULL;
    a->sc = att ? layout_take(&L, B * (T + 1) * c->A) : NULL;
    a->r = layout_take(&L, B * H);
    a->logits = layout_take(&L, B * c->C);
    a->probs = layout_take(&L, B * c->C);
    a->zero = layout_take(&L, B * H);
    a->work = layout_take(&L, B * 8 * H + 2 * T + c->A);
    a->n = L.off;
    return L.off;
}

/* free what pool_build allocated */
void pool_free(PoolModel *m) { s2s_params_free(&m->p); }

/* The walk over the CNN classifier's parameters (count, bind, and with r
 * initialise), in the order of its block and of its random draws. */
static void cnn_weights_layout(void *views, Layout *L, Rng *r, const void *cfg) {
    CnnWeights *w = views;
    const CnnConfig *c = cfg;
    const int R = cnn_pooled_width(c), Dq = cnn_has_rnn(c) ? c->H : c->F;
    memset(w, 0, sizeof *w);
    w->emb = s2s_param(L, r, c->V, c->E, 1.0, "emb");
    w->W = s2s_param(L, r, c->K * c->E, c->F, 1.0 / sqrt((double)(c->K * c->E)), "conv.W");
    w->b = s2s_param(L, r, 1, c->F, 0.1, "conv.b");
    if (cnn_has_rnn(c)) cell_layout(&w->enc, L, r, c->cell, c->E, c->H, "rnn");
    if (c->pool == CNN_ATT_LEARNED) w->u = s2s_param(L, r, 1, c->F, 1.0, "u");
    if (cnn_has_attention(c)) s2s_score_layout(&w->score, L, r, SCORE_ADDITIVE, Dq, c->F, c->A);
    w->Wo = s2s_param(L, r, R, c->C, 1.0 / sqrt((double)R), "Wo");
    w->bo = s2s_param(L, r, 1, c->C, 1.0 / sqrt((double)R), "bo");
}

/* Build m for c: the four blocks (params, grads, Adam m and v), uniform
 * init from r, and the views w and g. Free with cnn_free. */
void cnn_build(CnnModel *m, const CnnConfig *c, Rng *r) {
    memset(m, 0, sizeof *m);
    m->cfg = *c;
    s2s_params_build(&m->p, &m->w, &m->g, cnn_weights_layout, c, r);
}

/* Bind a (NULL mem: count only) for B sequences of length T >= K; returns
 * the number of doubles. Fields a pooling does not use are NULL. */
int cnn_acts_bind(CnnActs *a, double *mem, const CnnConfig *c, int B, int T) {
    const int N = T - c->K + 1, H = c->H, A = c->A;
    const int att = cnn_has_attention(c);
    const int rnn = cnn_has_rnn(c);
    Layout L = { mem, 0, NULL, 0 };
    CnnActs dummy;
    if (!a) a = &dummy;
    a->B = B; a->T = T; a->N = N;
    a->x = layout_take(&L, T * B * c->E);
    a->cols = layout_take(&L, B * N * c->K * c->E);
    a->pre = layout_take(&L, B * N * c->F);
    a->feat = layout_take(&L, B * N * c->F);
    a->h = rnn ? layout_take(&L, T * B * H) : NULL;
    a->c = rnn && c->cell == CELL_LSTM ? layout_take(&L, T * B * H) : NULL;
    a->k = rnn ? layout_take(&L, T * B * cell_cache_size(c->cell, H)) : NULL;
    a->zero = rnn ? layout_take(&L, B * H) : NULL;
    a->Kp = att ? layout_take(&L, B * N * A) : NULL;
    a->att = att ? layout_take(&L, B * N) : NULL;
    a->sc = att ? layout_take(&L, B * (N + 1) * A) : NULL;
    a->r = layout_take(&L, B * cnn_pooled_width(c));
    a->logits = layout_take(&L, B * c->C);
    a->probs = layout_take(&L, B * c->C);
    /* scratch: the query RNN's backward needs 2 B G H (cell_backward), the
     * attention's 2N + A (attend_backward); they run one after the other */
    const int rnn_work = rnn ? 2 * B * cell_gates(c->cell) * H : 0;
    const int att_work = att ? 2 * N + A : 0;
    a->work = att || rnn ? layout_take(&L, rnn_work > att_work ? rnn_work : att_work) : NULL;
    a->n = L.off;
    return L.off;
}

/* free what cnn_build allocated */
void cnn_free(CnnModel *m) { s2s_params_free(&m->p); }

/* The walk over the pair classifier's parameters (count, bind, and with r
 * initialise), in the order of its block and of its random draws. */
static void pair_weights_layout(void *views, Layout *L, Rng *r, const void *cfg) {
    PairWeights *w = views;
    const PairConfig *c = cfg;
    const int Ein = pair_conv_input(c);
    memset(w, 0, sizeof *w);
    w->emb = s2s_param(L, r, c->V, c->E, 1.0, "emb");
    if (c->model == PAIR_BEFORE) {
        w->Wa = s2s_param(L, r, c->Tb, c->E, 1.0 / sqrt((double)c->Tb), "att.Wa");
        w->Wb = s2s_param(L, r, c->Ta, c->E, 1.0 / sqrt((double)c->Ta), "att.Wb");
    }
    w->W = s2s_param(L, r, c->K * Ein, c->F, 1.0 / sqrt((double)(c->K * Ein)), "conv.W");
    w->b = s2s_param(L, r, 1, c->F, 0.1, "conv.b");
    w->Wo = s2s_param(L, r, 4 * c->F, c->C, 1.0 / sqrt((double)(4 * c->F)), "Wo");
    w->bo = s2s_param(L, r, 1, c->C, 1.0 / sqrt((double)(4 * c->F)), "bo");
}

/* Build m for c: the four blocks (params, grads, Adam m and v), uniform
 * init from r, and the views w and g. Free with pair_free. */
void pair_build(PairModel *m, const PairConfig *c, Rng *r) {
    memset(m, 0, sizeof *m);
    m->cfg = *c;
    s2s_params_build(&m->p, &m->w, &m->g, pair_weights_layout, c, r);
}

/* Bind a (NULL mem: count only) for B pairs (K <= Tb, Ta); returns the
 * number of doubles. Fields the model does not use are NULL. */
int pair_acts_bind(PairActs *a, double *mem, const PairConfig *c, int B) {
    const int Na = c->Ta - c->K + 1, Nb = c->Tb - c->K + 1, E = c->E, F = c->F;
    const int KE = c->K * pair_conv_input(c);
    const int before = c->model == PAIR_BEFORE, after = c->model == PAIR_AFTER;
    Layout L = { mem, 0, NULL, 0 };
    PairActs dummy;
    if (!a) a = &dummy;
    a->B = B;
    a->xa = layout_take(&L, c->Ta * B * E);
    a->xb = layout_take(&L, c->Tb * B * E);
    a->M = before ? layout_take(&L, B * c->Ta * c->Tb) : NULL;
    a->wa = before ? layout_take(&L, c->Ta * B * 2 * E) : NULL;
    a->wb = before ? layout_take(&L, c->Tb * B * 2 * E) : NULL;
    a->cola = layout_take(&L, B * Na * KE);
    a->pra = layout_take(&L, B * Na * F);
    a->fa = layout_take(&L, B * Na * F);
    a->colb = layout_take(&L, B * Nb * KE);
    a->prb = layout_take(&L, B * Nb * F);
    a->fb = layout_take(&L, B * Nb * F);
    a->M2 = after ? layout_take(&L, B * Na * Nb) : NULL;
    a->pa = after ? layout_take(&L, B * Na) : NULL;
    a->pb = after ? layout_take(&L, B * Nb) : NULL;
    a->ra = layout_take(&L, B * F);
    a->rb = layout_take(&L, B * F);
    a->z = layout_take(&L, B * 4 * F);
    a->logits = layout_take(&L, B * c->C);
    a->probs = layout_take(&L, B * c->C);
    a->n = L.off;
    return L.off;
}

/* free what pair_build allocated */
void pair_free(PairModel *m) { s2s_params_free(&m->p); }

/* ========================================================================
 * 11. tasks: copy, reverse, sort (attention.c's toy_task_fill) and a small
 *    "translation" with a non-monotonic alignment: dates
 *
 *    date:  "mar 1 4 2 0 2 3"  ->  "2 0 2 3 0 3 1 4"   (month day year -> ISO)
 *
 * The year comes first in the output but last in the input, the month
 * word becomes two digits, and a one-digit day gains a leading zero: the
 * alignment jumps. An example is held out if a hash of its source is 0
 * mod 10, so training never sees a held-out source (not even by chance).
 * Then the padded batches, and the tasks of the pooling (section 8) and
 * CNN (section 9) classifiers, and of section 9's pair classifiers.
 * ======================================================================== */

/* Allocate a batch of B sequences, sources up to Tcap tokens and targets up to
 * Scap (EOS included); bt owns them: s2s_batch_free(). */
void s2s_batch_build(S2sBatch *bt, int B, int Tcap, int Scap) {
    bt->B = bt->Bcap = B; bt->T = bt->S = 0; bt->Tcap = Tcap; bt->Scap = Scap;
    bt->src = xmalloc(sizeof(int) * (size_t)(Tcap * B));
    bt->tin = xmalloc(sizeof(int) * (size_t)(Scap * B));
    bt->tout = xmalloc(sizeof(int) * (size_t)(Scap * B));
    bt->slen = xmalloc(sizeof(int) * (size_t)B);
    bt->tlen = xmalloc(sizeof(int) * (size_t)B);
}

void s2s_batch_free(S2sBatch *bt) {
    free(bt->src); free(bt->tin); free(bt->tout); free(bt->slen); free(bt->tlen);
}

/* Put one example in row b: src (slen) and tgt (n, without EOS). Row 0
 * resets the batch's T and S; later rows grow them. */
void s2s_batch_row(S2sBatch *bt, int b, const int *src, int slen, const int *tgt, int n) {
    const int B = bt->B;
    if (b == 0) bt->T = bt->S = 0;
    for (int t = 0; t < bt->Tcap; t++) bt->src[t * B + b] = t < slen ? src[t] : S2S_PAD;
    for (int t = 0; t < bt->Scap; t++) {
        bt->tin[t * B + b] = t == 0 ? S2S_BOS : t <= n ? tgt[t - 1] : S2S_PAD;
        bt->tout[t * B + b] = t < n ? tgt[t] : t == n ? S2S_EOS : -1;
    }
    bt->slen[b] = slen;
    bt->tlen[b] = n + 1;
    if (slen > bt->T) bt->T = slen;
    if (n + 1 > bt->S) bt->S = n + 1;
}

enum { S2S_TASK_DATE = TASK_SORT + 1 };
static const char *const s2s_task_names[] = { "copy", "reverse", "sort", "date", NULL };
static const char *const s2s_months[12] = { "jan", "feb", "mar", "apr", "may", "jun",
                                            "jul", "aug", "sep", "oct", "nov", "dec" };
static const int s2s_month_days[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
enum { S2S_DATE_DIGIT = S2S_FIRST, S2S_DATE_MONTH = S2S_FIRST + 10, S2S_DATE_V = S2S_FIRST + 22 };

typedef struct {
    int task;              /* TASK_COPY | TASK_REVERSE | TASK_SORT | S2S_TASK_DATE */
    int min_len, max_len;  /* source lengths (copy/reverse/sort) */
    int V;                 /* vocabulary: 3 specials + symbols (date: 25) */
} S2sTask;

/* longest source and longest target (without EOS) the task makes */
void s2s_task_dims(const S2sTask *tk, int *Tmax, int *Nmax) {
    *Tmax = tk->task == S2S_TASK_DATE ? 7 : tk->max_len;
    *Nmax = tk->task == S2S_TASK_DATE ? 8 : tk->max_len;
}

/* One random example: src (returned length), tgt (*n tokens, no EOS). */
int s2s_task_example(int *src, int *tgt, int *n, Rng *r, const S2sTask *tk) {
    if (tk->task != S2S_TASK_DATE) {
        int len = tk->min_len + rng_int(r, tk->max_len - tk->min_len + 1);
        toy_task_fill(r, tk->task, src, tgt, len, S2S_FIRST, tk->V - S2S_FIRST);
        *n = len;
        return len;
    }
    int month = rng_int(r, 12), day = 1 + rng_int(r, s2s_month_days[month]);
    int year = 1900 + rng_int(r, 200), k = 0;
    src[k++] = S2S_DATE_MONTH + month;
    if (day >= 10) src[k++] = S2S_DATE_DIGIT + day / 10;
    src[k++] = S2S_DATE_DIGIT + day % 10;
    for (int p = 1000; p >= 1; p /= 10) src[k++] = S2S_DATE_DIGIT + year / p % 10;
    int iso[8] = { year / 1000, year / 100 % 10, year / 10 % 10, year % 10,
                   (month + 1) / 10, (month + 1) % 10, day / 10, day % 10 };
    for (int i = 0; i < 8; i++) tgt[i] = S2S_DATE_DIGIT + iso[i];
    *n = 8;
    return k;
}

/* An example from the training (heldout = 0) or held-out (1) split. */
int s2s_sample(int *src, int *tgt, int *n, Rng *r, const S2sTask *tk, int heldout) {
    for (int tries = 0; tries < 1000000; tries++) {
        int slen = s2s_task_example(src, tgt, n, r, tk);
        if (heldout_split(src, slen) == heldout) return slen;
    }
    fprintf(stderr, "seq2seq: the task has too few distinct sources for a held-out split\n");
    exit(1);
}

/* the number of distinct sources a copy/reverse/sort task can draw (capped) */
double s2s_task_space(const S2sTask *tk) {
    if (tk->task == S2S_TASK_DATE) return 365.0 * 200;
    double n = 0.0;
    for (int L = tk->min_len; L <= tk->max_len && n < 1e12; L++)
        n += pow((double)(tk->V - S2S_FIRST), L);
    return n;
}

/* A fixed set of n examples (the held-out set), row-major with strides. */
typedef struct {
    int n, Tmax, Nmax;
    int *src;   /* (n,Tmax) */
    int *slen;  /* (n) */
    int *tgt;   /* (n,Nmax) without EOS */
    int *tlen;  /* (n) */
} S2sData;

/* Draw n examples of task tk from the training (heldout = 0) or held-out (1)
 * split into d, which owns them: s2s_data_free(). */
void s2s_data_build(S2sData *d, int n, Rng *r, const S2sTask *tk, int heldout) {
    d->n = n;
    s2s_task_dims(tk, &d->Tmax, &d->Nmax);
    d->src = xmalloc(sizeof(int) * (size_t)(n * d->Tmax));
    d->tgt = xmalloc(sizeof(int) * (size_t)(n * d->Nmax));
    d->slen = xmalloc(sizeof(int) * (size_t)n);
    d->tlen = xmalloc(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++)
        d->slen[i] = s2s_sample(d->src + i * d->Tmax, d->tgt + i * d->Nmax, &d->tlen[i], r,
                                tk, heldout);
}

void s2s_data_free(S2sData *d) { free(d->src); free(d->tgt); free(d->slen); free(d->tlen); }

/* Rows start .. start+B-1 of d into bt (B <= its capacity). */
void s2s_batch_from_data(S2sBatch *bt, const S2sData *d, int start, int B) {
    bt->B = B;
    for (int b = 0; b < B; b++)
        s2s_batch_row(bt, b, d->src + (start + b) * d->Tmax, d->slen[start + b],
                      d->tgt + (start + b) * d->Nmax, d->tlen[start + b]);
}

/* A fresh training batch of bt->B examples. */
void s2s_batch_sample(S2sBatch *bt, Rng *r, const S2sTask *tk) {
    int Tmax, Nmax, n;
    s2s_task_dims(tk, &Tmax, &Nmax);
    int *src = xmalloc(sizeof(int) * (size_t)(Tmax + Nmax)), *tgt = src + Tmax;
    for (int b = 0; b < bt->B; b++) {
        int slen = s2s_sample(src, tgt, &n, r, tk, S2S_TRAINING);
        s2s_batch_row(bt, b, src, slen, tgt, n);
    }
    free(src);
}

/* printable name of a token (buf has room for 8 chars) */
const char *s2s_token_name(char *buf, int task, int tok) {
    static const char sym[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    if (tok == S2S_PAD) return "_";
    if (tok == S2S_BOS) return "<s>";
    if (tok == S2S_EOS) return "</s>";
    if (task == S2S_TASK_DATE) {
        if (tok >= S2S_DATE_MONTH) return s2s_months[tok - S2S_DATE_MONTH];
        buf[0] = (char)('0' + tok - S2S_DATE_DIGIT); buf[1] = 0;
        return buf;
    }
    buf[0] = tok - S2S_FIRST < (int)sizeof sym - 1 ? sym[tok - S2S_FIRST] : '?';
    buf[1] = 0;
    return buf;
}

/* The pooling task: tokens (T,B) random symbols, labels (B) = the symbol at
 * position 1 (the second), as a class 0..C-1; held-out split as in section 11. */
void pool_task_batch(int *tokens, int *labels, Rng *r, int B, int T, int C, int heldout) {
    int *seq = xmalloc(sizeof(int) * (size_t)T);     /* one sequence, contiguous */
    for (int b = 0; b < B; b++) {
        do {
            for (int t = 0; t < T; t++) seq[t] = S2S_FIRST + rng_int(r, C);
        } while (heldout_split(seq, T) != heldout);
        for (int t = 0; t < T; t++) tokens[t * B + b] = seq[t];
        labels[b] = seq[1] - S2S_FIRST;
    }
    free(seq);
}

/* ---- the task ----------------------------------------------------------- */

/* symbols, as offsets from S2S_FIRST: a-d the classes, e-g filler, the
 * markers x y, and the questions X ("which letter followed x?") and Y */
enum { CNN_LETTERS = 7, CNN_MARK_X = 7, CNN_MARK_Y = 8, CNN_ASK_X = 9, CNN_ASK_Y = 10,
       CNN_SYMBOLS = 11, CNN_CLASSES = 4 };
static const char cnn_symbol_chars[CNN_SYMBOLS + 1] = "abcdefgxyXY";

/* tokens (T,B) and labels (B) of B examples of length T (5 or more; from 8
 * on there are enough distinct sequences for a held-out split) from the
 * training (heldout = 0) or held-out (1) split, as heldout_split() splits. */
void cnn_task_batch(int *tokens, int *labels, Rng *r, int B, int T, int heldout) {
    int *seq = xmalloc(sizeof(int) * (size_t)T);     /* one sequence, contiguous */
    for (int b = 0; b < B; b++) {
        int lx, ly;
        do {
            for (int t = 0; t < T - 1; t++) seq[t] = rng_int(r, CNN_LETTERS);
            int px, py;                                   /* pairs in 0..T-2, apart */
            do {
                px = rng_int(r, T - 2);
                py = rng_int(r, T - 2);
            } while (py - px < 2 && px - py < 2);
            lx = rng_int(r, CNN_CLASSES);
            do ly = rng_int(r, CNN_CLASSES); while (ly == lx);
            seq[px] = CNN_MARK_X; seq[px + 1] = lx;
            seq[py] = CNN_MARK_Y; seq[py + 1] = ly;
            seq[T - 1] = rng_int(r, 2) ? CNN_ASK_Y : CNN_ASK_X;
            for (int t = 0; t < T; t++) seq[t] += S2S_FIRST;
        } while (heldout_split(seq, T) != heldout);
        for (int t = 0; t < T; t++) tokens[t * B + b] = seq[t];
        labels[b] = seq[T - 1] == S2S_FIRST + CNN_ASK_X ? lx : ly;
    }
    free(seq);
}

/* the character of token tok of the CNN task */
char cnn_symbol(int tok) { return cnn_symbol_chars[tok - S2S_FIRST]; }

/* ---- the pair task ------------------------------------------------------- */

/* Two texts over 52 symbols (a-z, A-Z, as offsets from S2S_FIRST), A of 8
 * and B of 6, no symbol twice in one text; label 1 if they share exactly
 * one symbol (anywhere), 0 if none. */
enum { PAIR_SYMBOLS = 52, PAIR_TA = 8, PAIR_TB = 6, PAIR_CLASSES = 2 };
static const char pair_symbol_chars[PAIR_SYMBOLS + 1] =
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/* does seq (n tokens) hold tok? */
static int pair_holds(const int *seq, int n, int tok) {
    for (int i = 0; i < n; i++) if (seq[i] == tok) return 1;
    return 0;
}

/* ta (PAIR_TA,B), tb (PAIR_TB,B) and labels (B) of B pairs from the training
 * (heldout = 0) or held-out (1) split: heldout_split() of A and B side by
 * side. Each text alone is a uniform draw of distinct symbols whatever the
 * label (so neither text says anything about it); the label is the coin
 * that decided whether one of B's symbols, at a uniform position, is a
 * uniform one of A's. */
void pair_task_batch(int *ta, int *tb, int *labels, Rng *r, int B, int heldout) {
    int seq[PAIR_TA + PAIR_TB], *a = seq, *b = seq + PAIR_TA;
    for (int s = 0; s < B; s++) {
        int lab;
        do {
            for (int i = 0; i < PAIR_TA; i++)
                do a[i] = S2S_FIRST + rng_int(r, PAIR_SYMBOLS); while (pair_holds(a, i, a[i]));
            for (int j = 0; j < PAIR_TB; j++)   /* distinct, and none of A's */
                do b[j] = S2S_FIRST + rng_int(r, PAIR_SYMBOLS);
                while (pair_holds(b, j, b[j]) || pair_holds(a, PAIR_TA, b[j]));
            lab = rng_int(r, 2);
            if (lab) b[rng_int(r, PAIR_TB)] = a[rng_int(r, PAIR_TA)];
        } while (heldout_split(seq, PAIR_TA + PAIR_TB) != heldout);
        for (int i = 0; i < PAIR_TA; i++) ta[i * B + s] = a[i];
        for (int j = 0; j < PAIR_TB; j++) tb[j * B + s] = b[j];
        labels[s] = lab;
    }
}

/* the character of token tok of the pair task */
char pair_symbol(int tok) { return pair_symbol_chars[tok - S2S_FIRST]; }

/* ========================================================================
 * 12. training loop, progress and evaluation
 * ======================================================================== */

typedef struct {
    int steps;      /* Adam steps */
    double lr;      /* peak learning rate; it decays linearly to lr/10 */
    double clip;    /* max global gradient norm (0: no clipping) */
    int log_every;  /* progress line every this many steps (0: silent) */
} S2sTrainConfig;

/* The advice every divergence message of this file gives */
static const char *const s2s_divergence_advice = "lower --lr, or clip harder (--clip)";

/* A run that must not go on after divergence: say so and exit 3. */
void s2s_stop_if_diverged(const S2sModel *m) {
    if (m->diverged)
        report_divergence(m->diverged, m->div_loss, m->div_norm, m->cfg.V,
                          s2s_divergence_advice);
}

/* lr of step s (1-based) of n: linear decay from lr to lr / 10 */
double s2s_lr_at(double lr, int s, int n) {
    return lr * (1.0 - 0.9 * (s - 1) / (n > 1 ? n - 1 : 1));
}

/* One line naming the model into buf (n chars), e.g.
 * "luong (dot score, global) attention, gru cells, hidden 64, embedding 32, vocabulary 16". */
const char *s2s_describe(char *buf, size_t n, const S2sConfig *c) {
    char att[96];
    if (c->attention == S2S_LUONG) {
        int k = 0;
        while (s2s_luong_score_kind[k] != c->score) k++;
        char win[32] = "";
        if (c->align != S2S_GLOBAL) snprintf(win, sizeof win, ", window %d", c->window);
        snprintf(att, sizeof att, "luong (%s score, %s%s) attention", s2s_luong_scores[k],
                 s2s_align_names[c->align], win);
    } else {
        snprintf(att, sizeof att, "%s", c->attention == S2S_NONE
                 ? "no attention (fixed context)" : "bahdanau (additive) attention");
    }
    char enc[48] = "";         /* only what differs from the decoder's own encoder */
    if (c->encoder != S2S_ENC_AUTO || s2s_enc_layers(c) > 1)
        snprintf(enc, sizeof enc, ", %s encoder of %d layer%s", s2s_enc_bi(c) ? "bi" : "uni",
                 s2s_enc_layers(c), s2s_enc_layers(c) > 1 ? "s" : "");
    snprintf(buf, n, "%s, %s cells, hidden %d, embedding %d, vocabulary %d%s", att,
             cell_names[c->cell], c->H, c->E, c->V, enc);
    return buf;
}

const char *s2s_attention_name(int attention) { return s2s_attention_names[attention]; }

typedef struct {
    double tok_acc;  /* fraction of target tokens (EOS excluded) predicted in place */
    double seq_acc;  /* fraction of outputs exactly equal to the target */
} S2sAccuracy;

/* Decode every example of d (greedy if beam <= 1) and score it. If
 * ok_by_len, n_by_len (indexed by source length) are given, count exact
 * matches per length into them (+=). out is scratch of min(r->Bmax, bt->Bcap)
 * rows of Nmax+1 tokens. With what (may be NULL), progress on stderr. */
S2sAccuracy s2s_evaluate(S2sRun *r, S2sBatch *bt, const S2sModel *m, const S2sData *d,
                         int beam, int *out, int *ok_by_len, int *n_by_len, const char *what) {
    const int maxlen = d->Nmax + 1;
    const int Bc = r->Bmax < bt->Bcap ? r->Bmax : bt->Bcap;
    int *lens = r->lens;                               /* (Bc <= r->Bmax) */
    long tok_ok = 0, tok_n = 0, seq_ok = 0;
    const double t0 = seconds();
    Progress pr;
    if (what) progress_begin(&pr, what, d->n);
    for (int start = 0; start < d->n; start += Bc) {
        int B = d->n - start < Bc ? d->n - start : Bc;
        if (what) progress_step(&pr, start, NULL);
        if (start == Bc)                               /* after the first batch */
            warn_if_long("held-out example(s)", Bc, d->n, seconds() - t0,
                         "a smaller --test or --beam");
        s2s_batch_from_data(bt, d, start, B);
        if (beam <= 1) s2s_greedy_decode(out, lens, r, m, bt, maxlen);
        else
            for (int b = 0; b < B; b++) {
                double lp;
                lens[b] = s2s_beam_search(out + b * maxlen, &lp, r, m,
                                          d->src + (start + b) * d->Tmax, d->slen[start + b],
                                          beam, maxlen);
            }
        for (int b = 0; b < B; b++) {
            const int *tg = d->tgt + (start + b) * d->Nmax, n = d->tlen[start + b];
            int same = lens[b] == n;
            for (int i = 0; i < n; i++) {
                int ok = i < lens[b] && out[b * maxlen + i] == tg[i];
                tok_ok += ok;
                same &= ok;
            }
            tok_n += n;
            seq_ok += same;
            if (ok_by_len) {
                ok_by_len[d->slen[start + b]] += same;
                n_by_len[d->slen[start + b]]++;
            }
        }
    }
    if (what) progress_step(&pr, d->n, NULL);
    S2sAccuracy acc = { (double)tok_ok / (tok_n ? tok_n : 1), (double)seq_ok / (d->n ? d->n : 1) };
    return acc;
}

/* What a training run shows and records beside its stdout, all optional: a
 * progress line on stderr (Progress: step/total, elapsed, time left) named
 * what, and the curves of a --svg picture: the mean training loss of each
 * window, and after each window the greedy held-out accuracy on test. */
typedef struct {
    const char *what;      /* progress "what step/total" on stderr, or NULL: none */
    Curve *loss;           /* if not NULL: (step, mean loss of the window) */
    Curve *exact, *token;  /* if not NULL: (step, held-out exact / token accuracy, %) */
    const S2sData *test;   /* the held-out set exact and token are measured on */
    int *out;              /* scratch for s2s_evaluate */
} S2sWatch;

/* After the window ending at step s (mean loss `loss`): w's curves, the
 * held-out set decoded greedily for them. The decode fills bt with
 * held-out rows (the next step draws a fresh batch into it anyway) and
 * leaves the model alone; bt's row count is put back, so training and
 * stdout are the same with or without (tests.c checks it). */
static void s2s_watch_window(const S2sWatch *w, S2sModel *m, S2sRun *r, S2sBatch *bt, int s,
                             double loss) {
    if (!w) return;
    if (w->loss) curve_add(w->loss, s, loss);
    if (!w->exact) return;
    const int B = bt->B;
    const S2sAccuracy acc = s2s_evaluate(r, bt, m, w->test, 1, w->out, NULL, NULL, NULL);
    bt->B = B;
    curve_add(w->exact, s, 100 * acc.seq_acc);
    curve_add(w->token, s, 100 * acc.tok_acc);
}

/* Train on fresh batches of the task's training split. Every log_every
 * steps (if > 0) a progress line: step, mean loss and teacher-forced token
 * accuracy of the window to stdout; with w (may be NULL) its progress on
 * stderr (tokens/s, elapsed, time left: they differ run to run) and its
 * curves. Returns the mean loss of the last window (a tenth of the steps
 * when silent). Stops at a diverged step (m->diverged). */
double s2s_train(S2sModel *m, S2sRun *r, S2sBatch *bt, Rng *rng, const S2sTask *tk,
                 const S2sTrainConfig *tc, const S2sWatch *w) {
    const int window = tc->log_every > 0 ? tc->log_every : tc->steps >= 10 ? tc->steps / 10 : 1;
    double t0 = seconds(), wloss = 0.0, last = 0.0;
    long wtok = 0, wok = 0, alltok = 0;
    int wn = 0;
    Progress pr;
    if (w && w->what) progress_begin(&pr, w->what, tc->steps);
    for (int s = 1; s <= tc->steps; s++) {
        s2s_batch_sample(bt, rng, tk);
        wloss += s2s_train_step(m, r, bt, s2s_lr_at(tc->lr, s, tc->steps), tc->clip);
        if (m->diverged) return wloss / (wn + 1);  /* the caller says so */
        if (s == 1)
            warn_if_long("training step(s)", 1, tc->steps, seconds() - t0,
                         "fewer --steps, or a smaller model,");
        wtok += r->ntok; wok += r->ncorrect; alltok += r->ntok; wn++;
        if (w && w->what) {
            char rate[32];
            const double el = seconds() - t0;
            snprintf(rate, sizeof rate, "%.0f tok/s", alltok / (el > 0 ? el : 1e-9));
            progress_step(&pr, s, rate);
        }
        if (s % window != 0 && s != tc->steps) continue;
        last = wloss / wn;
        if (tc->log_every) {
            printf("step %5d/%d  loss %.4f  token acc %5.1f%%\n", s, tc->steps, last,
                   100.0 * wok / (wtok ? wtok : 1));
            fflush(stdout);
        }
        s2s_watch_window(w, m, r, bt, s, last);
        wloss = 0.0; wtok = wok = 0; wn = 0;
    }
    return last;
}

/* ========================================================================
 * 12b. real data: a pair file as examples, PER/WER, checkpoints
 *
 * --data FILE reads attention.c's pair files (CMUdict "word PH O NE MES"
 * lines, or "source<TAB>target"): a source's tokens are its characters
 * (UTF-8 code points), a target's its space-separated symbols. Each pair
 * goes to train, dev or test by data_split (a hash of the source and the
 * seed), so every pronunciation of a word is in the same part. Training
 * sees every pronunciation of a training word as an example; a dev or test
 * word is decoded once and scored against the nearest of its
 * pronunciations (error_rate_add). The vocabularies are the training
 * part's; a dev/test letter or phoneme outside them becomes <unk> (counted,
 * and a <unk> in a reference can never be matched: an honest error).
 * ======================================================================== */

enum { S2S_DATA_MAX_LEN = 64 };     /* longest source (characters) and target (symbols) */
enum { S2S_CKPT_DESC_VERSION = 1 }; /* the layout of the description below */
enum { S2S_CKPT_DESC_ENCODER = 2 }; /* the same and the encoder's two settings */

typedef struct {
    S2sModel m;              /* the model, with its Adam state and step count */
    Vocab src_v, tgt_v;      /* its vocabularies */
    int Tmax, Nmax;          /* the longest source and target it was built for */
    int seed;                /* the --seed of the split it was trained on */
} S2sSaved;

typedef struct {
    Vocab src_v, tgt_v;      /* letters and phonemes of the training part */
    S2sData part[3];         /* SPLIT_TRAIN, SPLIT_DEV, SPLIT_TEST; rows sorted by source */
    int *group[3];           /* (ngroup + 1) the row where each word's pronunciations start */
    int ngroup[3];           /* distinct sources (words) of each part */
    int unk_src, unk_tgt;    /* dev/test tokens outside the vocabularies */
} S2sPairData;

static const Pairs *s2s_sort_pairs;       /* qsort's context: the pairs being sorted */
static int s2s_cmp_pair(const void *a, const void *b) {
    const int i = *(const int *)a, j = *(const int *)b;
    const int c = strcmp(s2s_sort_pairs->src[i], s2s_sort_pairs->src[j]);
    return c ? c : (i > j) - (i < j);                 /* alternates keep the file's order */
}

/* Part k of pd from the pairs rows[0..n-1] of p (sorted by source): the
 * token ids, and where each word's pronunciations start. */
static void s2s_pair_part(S2sPairData *pd, int k, const Pairs *p, const int *rows, int n,
                          int Tmax, int Nmax) {
    S2sData *d = &pd->part[k];
    d->n = n; d->Tmax = Tmax; d->Nmax = Nmax;
    d->src = xmalloc(sizeof(int) * (size_t)(n * Tmax + 1));
    d->tgt = xmalloc(sizeof(int) * (size_t)(n * Nmax + 1));
    d->slen = xmalloc(sizeof(int) * (size_t)(n + 1));
    d->tlen = xmalloc(sizeof(int) * (size_t)(n + 1));
    pd->group[k] = xmalloc(sizeof(int) * (size_t)(n + 1));
    memset(d->src, 0, sizeof(int) * (size_t)(n * Tmax + 1));   /* PAD beyond a row's end */
    memset(d->tgt, 0, sizeof(int) * (size_t)(n * Nmax + 1));
    int ng = 0, *us = k == SPLIT_TRAIN ? NULL : &pd->unk_src, *ut = us ? &pd->unk_tgt : NULL;
    for (int i = 0; i < n; i++) {
        const int e = rows[i];
        d->slen[i] = vocab_encode_chars(&pd->src_v, p->src[e], d->src + i * Tmax, Tmax, us);
        d->tlen[i] = vocab_encode_words(&pd->tgt_v, p->tgt[e], d->tgt + i * Nmax, Nmax, ut);
        if (i == 0 || strcmp(p->src[e], p->src[rows[i - 1]]) != 0) pd->group[k][ng++] = i;
    }
    pd->group[k][ng] = n;
    pd->ngroup[k] = ng;
}

/* Split the pairs p by seed into pd (which owns what it holds:
 * s2s_pair_data_free), with the vocabularies of the training part, or of
 * the saved model sv if it is given. -1 with why for a source or target
 * longer than S2S_DATA_MAX_LEN (naming the line), or a part left empty. */
int s2s_pair_data_build(S2sPairData *pd, const Pairs *p, uint64_t seed, const S2sSaved *sv,
                        char *why, size_t nwhy) {
    memset(pd, 0, sizeof *pd);
    int *split = xmalloc(sizeof(int) * (size_t)p->n), *rows = xmalloc(sizeof(int) * (size_t)p->n);
    int Tmax = 1, Nmax = 1, count[3] = { 0, 0, 0 };
    for (int i = 0; i < p->n; i++) {
        int ns = 0, nt = 0;
        for (const char *s = p->src[i]; *s; ns++) { const int b = utf8_char_len(s); s += b ? b : 1; }
        for (const char *s = p->tgt[i]; *s; s++) nt += s == p->tgt[i] || (s[-1] == ' ' && *s != ' ');
        if (ns > S2S_DATA_MAX_LEN || nt > S2S_DATA_MAX_LEN) {
            snprintf(why, nwhy, "line %d: a %s of %d %s; the most this program trains on is %d",
                     p->line[i], ns > S2S_DATA_MAX_LEN ? "source" : "target",
                     ns > S2S_DATA_MAX_LEN ? ns : nt, ns > S2S_DATA_MAX_LEN ? "characters" :
                     "symbols", S2S_DATA_MAX_LEN);
            free(split); free(rows);
            return -1;
        }
        if (ns > Tmax) Tmax = ns;
        if (nt > Nmax) Nmax = nt;
        count[split[i] = data_split(p->src[i], seed)]++;
    }
    if (!count[SPLIT_TRAIN] || !count[SPLIT_DEV] || !count[SPLIT_TEST]) {
        snprintf(why, nwhy, "%d pairs split into %d train, %d dev and %d test: every part "
                 "needs one (the split is 90/5/5 by word; give a file of more words)", p->n,
                 count[0], count[1], count[2]);
        free(split); free(rows);
        return -1;
    }
    if (sv) {                                          /* the model's own: copies */
        vocab_build(&pd->src_v, (const char *const *)sv->src_v.sym + TOK_SPECIALS,
                    sv->src_v.n - TOK_SPECIALS);
        vocab_build(&pd->tgt_v, (const char *const *)sv->tgt_v.sym + TOK_SPECIALS,
                    sv->tgt_v.n - TOK_SPECIALS);
    } else {
        pairs_vocabs(&pd->src_v, &pd->tgt_v, p, split, SPLIT_TRAIN);
    }
    for (int k = SPLIT_TRAIN; k <= SPLIT_TEST; k++) {
        int n = 0;
        for (int i = 0; i < p->n; i++) if (split[i] == k) rows[n++] = i;
        s2s_sort_pairs = p;
        qsort(rows, (size_t)n, sizeof(int), s2s_cmp_pair);
        s2s_pair_part(pd, k, p, rows, n, Tmax, Nmax);
    }
    free(split); free(rows);
    return 0;
}

void s2s_pair_data_free(S2sPairData *pd) {
    for (int k = 0; k < 3; k++) { s2s_data_free(&pd->part[k]); free(pd->group[k]); }
    vocab_free(&pd->src_v); vocab_free(&pd->tgt_v);
}

/* A training batch of bt->B rows drawn uniformly from d (with replacement). */
void s2s_batch_pick(S2sBatch *bt, Rng *r, const S2sData *d) {
    for (int b = 0; b < bt->B; b++) {
        const int e = rng_int(r, d->n);
        s2s_batch_row(bt, b, d->src + e * d->Tmax, d->slen[e], d->tgt + e * d->Nmax, d->tlen[e]);
    }
}

/* Decode the first source of each of the ng words of d (group: where each
 * word's rows start; greedy if beam <= 1) and score it against the nearest
 * of its pronunciations. out is scratch of min(r->Bmax, bt->Bcap) rows of
 * d->Nmax + 1 tokens. With what (may be NULL), progress on stderr. */
ErrorRate s2s_error_rates(S2sRun *r, S2sBatch *bt, const S2sModel *m, const S2sData *d,
                          const int *group, int ng, int beam, int *out, const char *what) {
    const int maxlen = d->Nmax + 1, Bc = r->Bmax < bt->Bcap ? r->Bmax : bt->Bcap;
    ErrorRate e = { 0, 0, 0, 0 };
    int most = 1;
    for (int g = 0; g < ng; g++) if (group[g + 1] - group[g] > most) most = group[g + 1] - group[g];
    const int **ref = xmalloc(sizeof(int *) * (size_t)most);
    int *work = xmalloc(sizeof(int) * (size_t)(maxlen + 1));
    Progress pr;
    if (what) progress_begin(&pr, what, ng);
    for (int start = 0; start < ng; start += Bc) {
        const int B = ng - start < Bc ? ng - start : Bc;
        if (what) progress_step(&pr, start, NULL);
        bt->B = B;
        for (int b = 0; b < B; b++) {
            const int row = group[start + b];
            s2s_batch_row(bt, b, d->src + row * d->Tmax, d->slen[row], NULL, 0);
            if (beam > 1) {
                double lp;
                r->lens[b] = s2s_beam_search(out + b * maxlen, &lp, r, m, d->src + row * d->Tmax,
                                             d->slen[row], beam, maxlen);
            }
        }
        if (beam <= 1) s2s_greedy_decode(out, r->lens, r, m, bt, maxlen);
        for (int b = 0; b < B; b++) {
            const int g = start + b, nref = group[g + 1] - group[g];
            for (int k = 0; k < nref; k++) ref[k] = d->tgt + (group[g] + k) * d->Nmax;
            error_rate_add(&e, out + b * maxlen, r->lens[b], ref, d->tlen + group[g], nref, work);
        }
    }
    if (what) progress_step(&pr, ng, NULL);
    free(ref); free(work);
    return e;
}

/* Decode one source src (slen) into out (maxlen) and *len, greedily (beam
 * <= 1) or by beam search, and leave the attention weights of every output
 * step in r->a.att, rows (step, T) of a batch of one: greedy decoding keeps
 * them; for the beam's output a teacher-forced pass over it recomputes them
 * (step i attends given the beam's own y_<i, as it did in the search). bt
 * must hold one row of maxlen - 1 target tokens. */
void s2s_decode_one(int *out, int *len, S2sRun *r, S2sBatch *bt, const S2sModel *m,
                    const int *src, int slen, int beam, int maxlen) {
    bt->B = 1;
    s2s_batch_row(bt, 0, src, slen, NULL, 0);
    if (beam <= 1) {
        s2s_greedy_decode(out, len, r, m, bt, maxlen);
        return;
    }
    double lp;
    len[0] = s2s_beam_search(out, &lp, r, m, src, slen, beam, maxlen);
    /* the teacher-forced pass: at most maxlen - 1 tokens fit with the EOS step */
    s2s_batch_row(bt, 0, src, slen, out, len[0] < maxlen - 1 ? len[0] : maxlen - 1);
    s2s_forward(r, bt, m);
}

/* ---- checkpoints -------------------------------------------------------------
 * attention.c's format (magic, version, tag "S2S1", checksum) around this
 * chapter's description, all little-endian:
 *     u32 x 15   description version (1), attention, cell, score kind, align,
 *                window, V, E, H, A, Vsrc, Tmax, Nmax, --seed of the split, Adam steps
 *     u32 x 2    version 2 only: --encoder (S2S_ENC_*) and --layers, written
 *                when either is not the default (so older files, version 1,
 *                load as the decoder's own one-layer encoder)
 *     vocab x 2  the source's then the target's symbols after the 4 specials:
 *                u32 count, then each as u32 bytes + its UTF-8 bytes
 * and 3N parameters: the N weights, then Adam's first and second moments,
 * so a loaded model predicts and trains on exactly as the saved one would. */

static void s2s_put_vocab(Bytes *y, const Vocab *v) {
    bytes_put_u32(y, (uint32_t)(v->n - TOK_SPECIALS));
    for (int k = TOK_SPECIALS; k < v->n; k++) bytes_put_str(y, v->sym[k]);
}

/* Write model m, its vocabularies, sizes and split seed to path, whole or not at all. */
void s2s_save(const char *path, const S2sModel *m, const Vocab *src_v, const Vocab *tgt_v,
              int Tmax, int Nmax, int seed) {
    const S2sConfig *c = &m->cfg;
    const uint32_t f[15] = { S2S_CKPT_DESC_VERSION, (uint32_t)c->attention, (uint32_t)c->cell,
        (uint32_t)c->score, (uint32_t)c->align, (uint32_t)c->window, (uint32_t)c->V,
        (uint32_t)c->E, (uint32_t)c->H, (uint32_t)c->A, (uint32_t)c->Vsrc, (uint32_t)Tmax,
        (uint32_t)Nmax, (uint32_t)seed, (uint32_t)m->step };
    const int enc = c->encoder != S2S_ENC_AUTO || s2s_enc_layers(c) > 1;
    Bytes y = { NULL, 0, 0 };
    bytes_put_u32(&y, enc ? S2S_CKPT_DESC_ENCODER : S2S_CKPT_DESC_VERSION);
    for (int i = 1; i < 15; i++) bytes_put_u32(&y, f[i]);
    if (enc) {
        bytes_put_u32(&y, (uint32_t)c->encoder);
        bytes_put_u32(&y, (uint32_t)s2s_enc_layers(c));
    }
    s2s_put_vocab(&y, src_v);
    s2s_put_vocab(&y, tgt_v);
    const int N = m->p.num_params;
    double *all = xcalloc_doubles(3 * N);
    state_pack(all, m->p.params, m->p.m, m->p.v, N);
    ckpt_write(path, "S2S1", &y, all, 3 * N);
    free(all); free(y.b);
}

/* A vocabulary of the description, or -1 if it is cut short or not one */
static int s2s_get_vocab(Reader *r, Vocab *v) {
    const uint32_t n = reader_u32(r);
    if (!r->ok || n > 100000) return -1;
    char **s = xmalloc(sizeof(char *) * (size_t)(n + 1));
    memset(s, 0, sizeof(char *) * (size_t)(n + 1));
    uint32_t k = 0;
    for (; k < n && (s[k] = reader_str(r, 1000)) != NULL; k++) {}
    const int ok = k == n;
    if (ok) vocab_build(v, (const char *const *)s, (int)n);
    for (uint32_t i = 0; i < k; i++) free(s[i]);
    free(s);
    return ok ? 0 : -1;
}

/* Is config c (from a description) one this program could have written? */
static int s2s_config_sane(const S2sConfig *c) {
    return c->attention >= 0 && c->attention <= S2S_LUONG && c->cell >= 0 && c->cell <= 2 &&
           c->score >= 0 && c->score < SCORE_KINDS &&
           c->align >= 0 && c->align <= S2S_LOCAL_P && c->window >= 1 && c->window <= 20 &&
           c->E >= 1 && c->E <= 512 && c->H >= 1 && c->H <= 512 && c->A >= 1 && c->A <= 512;
}

/* Read a checkpoint of this chapter from path into sv (s2s_saved_free).
 * -1 with why, and nothing allocated, if the file is missing, truncated,
 * corrupted, of another version or chapter, or describes a model whose
 * parameters it does not hold. */
int s2s_load(S2sSaved *sv, const char *path, char *why, size_t nwhy) {
    Bytes desc;
    double *p;
    int n;
    if (ckpt_read(path, "S2S1", &desc, &p, &n, why, nwhy) != 0) return -1;
    Reader r = { desc.b, desc.n, 0, 1 };
    uint32_t f[15];
    for (int i = 0; i < 15; i++) f[i] = reader_u32(&r);
    S2sConfig c = { (int)f[1], (int)f[2], (int)f[3], (int)f[4], (int)f[5], (int)f[6], (int)f[7],
                    (int)f[8], (int)f[9], (int)f[10], S2S_ENC_AUTO, 1 };
    if (r.ok && f[0] == S2S_CKPT_DESC_ENCODER) {
        const uint32_t enc = reader_u32(&r), layers = reader_u32(&r);
        c.encoder = enc <= S2S_ENC_BI ? (int)enc : -1;
        c.layers = layers >= 1 && layers <= S2S_MAX_LAYERS ? (int)layers : -1;
    }
    const char *bad = NULL;
    int vs = -1, vt = -1;
    if (!r.ok || (f[0] != S2S_CKPT_DESC_VERSION && f[0] != S2S_CKPT_DESC_ENCODER))
        bad = "its description is not version 1 or 2";
    else if (c.encoder < 0 || c.layers < 0)
        bad = "its encoder's direction or layer count is not one this program writes";
    else if (f[6] > 100000 || f[10] > 100000 || f[11] < 1 || f[11] > S2S_DATA_MAX_LEN ||
             f[12] < 1 || f[12] > S2S_DATA_MAX_LEN || !s2s_config_sane(&c))
        bad = "its description holds sizes this program never writes";
    else if ((vs = s2s_get_vocab(&r, &sv->src_v)) != 0 || (vt = s2s_get_vocab(&r, &sv->tgt_v)) != 0)
        bad = "its vocabularies are cut short";
    else if (sv->src_v.n != (int)c.Vsrc || sv->tgt_v.n != c.V || r.at != r.n)
        bad = "its vocabularies do not match the sizes it gives";
    if (!bad) {
        s2s_build(&sv->m, &c, NULL);
        if (n != 3 * sv->m.p.num_params) { bad = "it holds a number of parameters its model "
                                           "does not have"; s2s_free(&sv->m); }
    }
    if (bad) {
        snprintf(why, nwhy, "'%s': %s", path, bad);
        if (vs == 0) vocab_free(&sv->src_v);
        if (vt == 0) vocab_free(&sv->tgt_v);
        free(desc.b); free(p);
        return -1;
    }
    const int N = sv->m.p.num_params;
    state_unpack(p, sv->m.p.params, sv->m.p.m, sv->m.p.v, N);
    sv->m.step = (int)f[14];
    sv->Tmax = (int)f[11]; sv->Nmax = (int)f[12]; sv->seed = (int)f[13];
    free(desc.b); free(p);
    return 0;
}

void s2s_saved_free(S2sSaved *sv) {
    s2s_free(&sv->m); vocab_free(&sv->src_v); vocab_free(&sv->tgt_v);
}

/* ---- training on a pair file ---------------------------------------------------
 * Random batches of the training part; every eval_every steps (and at the
 * end) the dev PER and WER (greedy), and the parameters with the best dev
 * PER so far are kept: at the end they are put back. The test part is not
 * looked at here. The learning rate decays linearly to lr/10 over the run:
 * over --steps, or over the --minutes budget of wall-clock time if that is
 * the shorter.
 *
 * Training on from a checkpoint: a model that has taken m->step steps goes
 * on from step m->step + 1 to steps (the total), its Adam moments and step
 * count as they were, its dev PER the one to beat. The learning rate decays
 * again from lr over this run (a warm restart), and the caller draws the
 * batches of the model's first m->step steps again (s2s_data_skip), so the
 * run sees the batches that would have come next: training on from a file
 * gives the bits of training on in memory (tests.c). */
typedef struct {
    int steps;          /* train up to this step (counting a loaded model's steps) */
    int batch;          /* pairs a step (at most the S2sBatch's rows) */
    double lr, clip;    /* peak learning rate, max global gradient norm (0: off) */
    double minutes;     /* budget of wall-clock minutes (wall_since), 0 = none: the
                           run ends at whichever of it and steps comes first */
    int eval_every;     /* dev PER every this many steps */
    int progress;       /* a progress line on stderr every this many steps, 0 = silent */
    FILE *log;          /* CSV: step,train_loss,dev_per,dev_wer,seconds; or NULL */
    Curve *loss;        /* if not NULL: (step, mean loss of each S2S_CURVE_EVERY steps) */
    Curve *per, *wer;   /* if not NULL: (step, dev PER / WER in %) at each evaluation */
} S2sDataTrain;

enum { S2S_CURVE_EVERY = 100 };   /* steps per point of a --data loss curve */

typedef struct {
    int first;          /* the step it started from: 0, or a loaded model's */
    int steps;          /* the last step taken (steps - first were taken here) */
    int best_step;      /* the step of the best dev PER: the parameters kept */
    double per, wer;    /* dev PER and WER at best_step */
    double first_per;   /* a loaded model's dev PER before training on (else 0) */
    double first_loss, last_loss;  /* mean training loss of the first and last eval window */
    double seconds;     /* training time (wall clock), dev evaluations included */
} S2sDataResult;

/* The state of a run between its evaluations. */
typedef struct {
    S2sDataResult res;
    double *best;       /* (3N) the best step's weights and Adam moments */
    double wloss;       /* loss summed over the current window */
    int wn;             /* steps in it */
    double closs;       /* loss summed over the current S2S_CURVE_EVERY steps */
    int cn;             /* steps in it */
    int evals;          /* dev evaluations so far */
    long tokens;        /* target tokens trained on */
    time_t start;       /* wall clock at the first step */
    double t0;          /* seconds() then: tokens/s is a speed of the computation */
} S2sDataRun;

/* Keep m's weights and Adam moments as the best yet: step s, dev per and wer. */
static void s2s_data_keep(S2sDataRun *st, const S2sModel *m, int s, double per, double wer) {
    state_pack(st->best, m->p.params, m->p.m, m->p.v, m->p.num_params);
    st->res.best_step = s; st->res.per = per; st->res.wer = wer;
}

/* Dev PER/WER after step s: log it, keep the parameters if they are the best yet. */
static void s2s_data_checkpoint(S2sDataRun *st, S2sModel *m, S2sRun *r, S2sBatch *bt,
                                const S2sPairData *pd, const S2sDataTrain *tc, int s, int *out) {
    const ErrorRate e = s2s_error_rates(r, bt, m, &pd->part[SPLIT_DEV], pd->group[SPLIT_DEV],
                                        pd->ngroup[SPLIT_DEV], 1, out, NULL);
    const double per = error_rate_per(&e), wer = error_rate_wer(&e), el = wall_since(st->start);
    const double loss = st->wloss / (st->wn ? st->wn : 1);
    const int better = st->res.best_step < 0 || per < st->res.per;
    if (st->evals++ == 0) st->res.first_loss = loss;
    st->res.last_loss = loss;
    if (better) s2s_data_keep(st, m, s, per, wer);
    if (tc->log) {
        fprintf(tc->log, "%d,%.6f,%.6f,%.6f,%.0f\n", s, loss, per, wer, el);
        fflush(tc->log);                 /* the .partial file grows as the run goes */
    }
    if (tc->per) { curve_add(tc->per, s, 100 * per); curve_add(tc->wer, s, 100 * wer); }
    if (tc->progress)
        fprintf(stderr, "  step %d/%d: dev PER %.2f%%, WER %.2f%%%s\n", s, tc->steps,
                100 * per, 100 * wer, better ? " (the best so far: kept)" : "");
    st->wloss = 0.0; st->wn = 0;
}

/* the share of a run from step first done after step s and el wall
 * seconds: of its steps to tc->steps, or of its budget */
static double s2s_data_done(const S2sDataTrain *tc, int first, int s, double el) {
    const double f = (double)(s - first) / (tc->steps - first),
                 g = tc->minutes > 0 ? el / (60 * tc->minutes) : 0;
    return f > g ? f : g;
}

/* The progress line after step s (el wall seconds, share done): the loss
 * since the last dev evaluation, tokens/s, elapsed and time left. */
static void s2s_data_progress(const S2sDataRun *st, const S2sDataTrain *tc, int s, double el,
                              double done) {
    char e[32], l[32];
    const double busy = seconds() - st->t0;
    fprintf(stderr, "  step %d/%d: loss %.4f, %.0f tok/s, %s elapsed, about %s left\n", s,
            tc->steps, st->wloss / st->wn, busy > 0 ? st->tokens / busy : 0.0,
            duration_text(e, sizeof e, el),
            duration_text(l, sizeof l, done > 0 ? el / done - el : 0.0));
}

/* Draw (and drop) the batches of n steps of B pairs from rng: where a run
 * that has taken n steps left it. */
void s2s_data_skip(S2sBatch *bt, Rng *rng, const S2sPairData *pd, int B, int n) {
    bt->B = B;
    for (int s = 0; s < n; s++) s2s_batch_pick(bt, rng, &pd->part[SPLIT_TRAIN]);
}

/* The run's state before its first step: a model that has trained already
 * (m->step > 0) has its dev PER as the one to beat. */
static S2sDataRun s2s_data_start(S2sModel *m, S2sRun *r, S2sBatch *bt, const S2sPairData *pd,
                                 int *out) {
    S2sDataRun st;
    memset(&st, 0, sizeof st);
    st.res.first = st.res.steps = m->step;
    st.res.best_step = -1;
    st.best = xcalloc_doubles(3 * m->p.num_params);
    if (m->step > 0) {
        const ErrorRate e = s2s_error_rates(r, bt, m, &pd->part[SPLIT_DEV], pd->group[SPLIT_DEV],
                                            pd->ngroup[SPLIT_DEV], 1, out, NULL);
        s2s_data_keep(&st, m, m->step, error_rate_per(&e), error_rate_wer(&e));
        st.res.first_per = st.res.per;
    }
    st.start = time(NULL);
    st.t0 = seconds();
    return st;
}

/* Train m on pd's training part as tc says, from step m->step + 1 to
 * tc->steps (> m->step), then put back the parameters (and Adam state) of the step with
 * the best dev PER. out is scratch as s2s_error_rates wants it. Stops at a
 * diverged step (m->diverged). */
S2sDataResult s2s_data_train(S2sModel *m, S2sRun *r, S2sBatch *bt, Rng *rng,
                             const S2sPairData *pd, const S2sDataTrain *tc, int *out) {
    const int N = m->p.num_params;
    S2sDataRun st = s2s_data_start(m, r, bt, pd, out);
    int s = m->step;
    for (double done = 0; done < 1.0 && !m->diverged;) {
        bt->B = tc->batch;                 /* a dev evaluation leaves it at its own */
        s2s_batch_pick(bt, rng, &pd->part[SPLIT_TRAIN]);
        const double loss = s2s_train_step(m, r, bt, tc->lr * (1.0 - 0.9 * done), tc->clip);
        st.wloss += loss; st.closs += loss;
        st.wn++; st.cn++; st.tokens += r->ntok; s++;
        const double el = wall_since(st.start);
        done = s2s_data_done(tc, st.res.first, s, el);
        if (s == st.res.first + 1 && tc->progress && tc->minutes == 0)   /* a budget bounds it */
            warn_if_long("training step(s)", 1, tc->steps - st.res.first, seconds() - st.t0,
                         "fewer --steps, or --minutes,");
        if (tc->loss && (s % S2S_CURVE_EVERY == 0 || done >= 1.0)) {
            curve_add(tc->loss, s, st.closs / st.cn);
            st.closs = 0.0; st.cn = 0;
        }
        if (tc->progress && s % tc->progress == 0) s2s_data_progress(&st, tc, s, el, done);
        if (s % tc->eval_every == 0 || done >= 1.0)
            s2s_data_checkpoint(&st, m, r, bt, pd, tc, s, out);
    }
    if (st.res.best_step >= 0) {
        state_unpack(st.best, m->p.params, m->p.m, m->p.v, N);
        m->step = st.res.best_step;
    }
    st.res.steps = s;
    st.res.seconds = wall_since(st.start);
    free(st.best);
    return st.res;
}

/* ---- --trace: one decoder step of the trained model, in the five steps ----
 * What the model computed at decoder step t of row 0 of its last forward (a
 * batch of one, as s2s_decode_one leaves it), read from its activations.
 * Only the scores e_{t,i} are not kept there (the weights overwrite them in
 * place): they are taken again by the model's own score_forward, on the
 * query and the prepared keys the forward cached. */
typedef struct {
    int t, T;              /* the step (0-based) and the source length */
    int lo, n;             /* the positions scored: lo .. lo+n-1 (global: 0, T) */
    double pos;            /* local-m, local-p: the window's centre p_t (0-based), else -1 */
    const double *q;       /* (H) the query: Bahdanau s_{t-1}, Luong h_t */
    const double *h;       /* (H) the state after the step, hd row t: s_t (h_t) */
    const double *att;     /* (T) the model's attention row att[t] */
    const double *ctx;     /* (He) the context c_t, ctx row t */
    const double *comb;    /* Luong: h~_t (H), ht row t; else [s_t; c_t] (H+He), oin row t */
    double *e;             /* (T) the scores e_{t,i}, 0 outside lo..lo+n-1 */
    double *a;             /* (T) softmax of e over lo..lo+n-1 (local-p: times the Gaussian) */
    double *p;             /* (V) softmax of the logits at t: P(y_t | y_<t, x) */
    double *mem;           /* the block e, a, p and the score cache live in */
} S2sTrace;

/* tr = step t of r's last forward of model m (a batch of one row) */
static void s2s_trace_build(S2sTrace *tr, const S2sRun *r, const S2sModel *m, int t) {
    const S2sConfig *c = &m->cfg;
    const S2sActs *a = &r->a;
    const int T = a->T, P = s2s_key_width(c), V = c->V;
    const S2sStep s = s2s_step(a, c, t);
    tr->t = t; tr->T = T; tr->lo = 0; tr->n = T;
    tr->q = c->attention == S2S_BAHDANAU ? s.h_prev : s.h;
    tr->h = s.h; tr->att = a->att + t * T; tr->ctx = s.ctx;
    tr->comb = c->attention == S2S_LUONG ? s.ht : s.oin;
    tr->mem = xcalloc_doubles(2 * T + V + s2s_score_cache(c, T) + 1);
    tr->e = tr->mem; tr->a = tr->e + T; tr->p = tr->a + T;
    const int local = c->attention == S2S_LUONG && c->align != S2S_GLOBAL;
    const double pos = c->align == S2S_LOCAL_P ? a->pos[t] : t;  /* local-m: p_t = t */
    if (local) tr->n = local_window(&tr->lo, pos, c->window, T);
    tr->pos = local ? pos : -1.0;
    /* e_{t,i} = score(q, k_i), by the function attend_forward calls, then a = softmax(e) */
    score_forward(tr->e + tr->lo, tr->p + V, tr->q, a->Kp + tr->lo * P, tr->n, &m->w.score);
    softmax_forward(tr->a + tr->lo, tr->e + tr->lo, tr->n);
    for (int i = tr->lo; local && c->align == S2S_LOCAL_P && i < tr->lo + tr->n; i++)
        tr->a[i] *= local_gaussian(i, pos, c->window);
    softmax_forward(tr->p, s.logits, V);                        /* the output layer */
}

static void s2s_trace_free(S2sTrace *tr) { free(tr->mem); }

/* ---- the gradient experiment's measurement (section 15) ------------------
 * g (T) += the mean over rows start .. start+B-1 of d (sources of one
 * length T) of |d(-log P(y_b | x_b)) / d x_{b,i}|, at g[T - 1 - i]: the
 * gradient of one sequence's loss at the embedding of its source token i,
 * by the distance from the end of the source, from the model's own
 * s2s_forward and s2s_backward. bt receives the rows; m's parameter
 * gradients are cleared before and after. */
void s2s_gradient_by_distance(double *g, S2sModel *m, S2sRun *r, S2sBatch *bt,
                              const S2sData *d, int start, int B) {
    s2s_batch_from_data(bt, d, start, B);
    s2s_zero_grad(m);
    s2s_forward(r, bt, m);
    s2s_backward(m, r, bt);
    /* the loss is the mean over the batch's ntok tokens, and rows do not mix, so
     * d(-log P(y_b | x_b)) / d x_b = ntok * dloss / d x_b */
    const int T = bt->T, E = m->cfg.E;
    for (int i = 0; i < T; i++)
        for (int b = 0; b < B; b++)
            g[T - 1 - i] += r->ntok * vector_norm(r->g.x_src + (i * B + b) * E, E) / B;
    s2s_zero_grad(m);
}

/* ---- the length experiment's spread measurement (section 15) -----------
 * How spread out a trained model's attention is, by source length.
 * A teacher-forced pass over held-out data (the decoder reads the true
 * y_<t, so every model is measured on the same steps, wrong guesses or
 * not): for each decoder step t of each example (its target tokens and the
 * EOS step) the weights a_t over the L source positions, summed into the
 * slot of L. Global attention only (every row sums to 1 over L). */
enum { SPREAD_STEPS, SPREAD_LOGT, SPREAD_ENTROPY, SPREAD_SHARE, SPREAD_MAX, SPREAD_N };

/* Add to st (L1, SPREAD_N), by source length L of d's examples: the steps,
 * the sum of log L (a uniform row's entropy), of the weights' entropy
 * (nats, weights_entropy), of entropy / log L (for L >= 2: one position
 * has no spread) and of the largest weight. bt, r: batches of up to
 * min(r->Bmax, bt->Bcap) rows of d's sizes. */
void s2s_attention_spread(double *st, S2sRun *r, S2sBatch *bt, const S2sModel *m,
                          const S2sData *d) {
    const int Bc = r->Bmax < bt->Bcap ? r->Bmax : bt->Bcap;
    for (int start = 0; start < d->n; start += Bc) {
        const int B = d->n - start < Bc ? d->n - start : Bc;
        s2s_batch_from_data(bt, d, start, B);
        s2s_forward(r, bt, m);
        const int T = r->a.T;
        for (int b = 0; b < B; b++) {
            const int L = bt->slen[b];
            double *sl = st + L * SPREAD_N;
            for (int t = 0; t < bt->tlen[b]; t++) {
                const double *a = r->a.att + (t * B + b) * T;   /* (L) of (T) */
                double mx = 0.0;
                for (int i = 0; i < L; i++) if (a[i] > mx) mx = a[i];
                const double H = weights_entropy(a, L);
                sl[SPREAD_STEPS] += 1;
                sl[SPREAD_LOGT] += log((double)L);
                sl[SPREAD_ENTROPY] += H;
                if (L >= 2) sl[SPREAD_SHARE] += H / log((double)L);
                sl[SPREAD_MAX] += mx;
            }
        }
    }
}

/* ---- the exposure experiment's measurements (section 15) ----------------
 * Sampling itself (s2s_sample_decode) is in section 7, beside greedy. */

/* logp (B) = log P(out_b | x_b) under the model, read from the logits a
 * greedy or sampling decode of r's batch left in r->a: the sum over steps
 * t <= len_b of log softmax(logits)[out_b,t] (EOS included; an output that
 * never ended counts its maxlen tokens). work (V) is scratch. */
void s2s_decoded_logp(double *logp, const S2sRun *r, const int *out, const int *len, int B,
                      int maxlen, int V, double *work) {
    for (int b = 0; b < B; b++) {
        logp[b] = 0.0;
        for (int t = 0; t <= len[b] && t < maxlen; t++) {
            log_softmax_forward(work, r->a.logits + (t * B + b) * V, V);
            logp[b] += work[out[b * maxlen + t]];
        }
    }
}

enum { S2S_POSITIONS = 61 };   /* output positions: up to 60 target tokens, then EOS */

/* Error by output position t (0-based; a target of n tokens has positions
 * 0..n, n its EOS), counted over a held-out set, teacher-forced and free
 * running: the counts s2s_exposure_count adds into. */
typedef struct {
    int P;                        /* positions seen: the longest target + 1 */
    long n[S2S_POSITIONS];        /* rows that have a position t */
    long tf[S2S_POSITIONS];       /* teacher-forced: argmax P(. | true y_<t, x) != y_t */
    long fr[S2S_POSITIONS];       /* free running (greedy): output_t != y_t */
    long first[S2S_POSITIONS];    /* rows whose first free-running error is at t */
    long late[S2S_POSITIONS];     /* rows with a free-running error before t */
    long fr_late[S2S_POSITIONS];  /* of those, wrong at t free running */
    long tf_late[S2S_POSITIONS];  /* of those, wrong at t teacher-forced */
} S2sExposure;

/* Row b of a batch of B: its errors at positions 0..n (n target tokens
 * tg), teacher-forced from tf_best (S,B) argmaxes and free running from
 * out (maxlen) and len, into x. */
static void s2s_exposure_row(S2sExposure *x, const int *tf_best, int B, int b, const int *tg,
                             int n, const int *out, int len) {
    int wrong_before = 0;
    for (int t = 0; t <= n; t++) {
        const int y = t < n ? tg[t] : S2S_EOS;
        const int tf = tf_best[t * B + b] != y;
        const int fr = t < n ? !(t < len && out[t] == y) : len != n;
        x->n[t]++; x->tf[t] += tf; x->fr[t] += fr;
        if (wrong_before) { x->late[t]++; x->fr_late[t] += fr; x->tf_late[t] += tf; }
        if (fr && !wrong_before) x->first[t]++;
        wrong_before |= fr;
    }
    if (n + 1 > x->P) x->P = n + 1;
}

/* x += the per-position errors of model m on d: each batch of up to r->Bmax
 * rows (bt receives them) once through s2s_forward (teacher forcing: its
 * logits at t read the true y_<t) and once through s2s_greedy_decode (its
 * own outputs). out is scratch of r->Bmax rows of d->Nmax + 1 tokens,
 * tf_best of r->Bmax * (d->Nmax + 1) ints. */
void s2s_exposure_count(S2sExposure *x, S2sRun *r, S2sBatch *bt, const S2sModel *m,
                        const S2sData *d, int *out, int *tf_best) {
    const int maxlen = d->Nmax + 1, V = m->cfg.V;
    const int Bc = r->Bmax < bt->Bcap ? r->Bmax : bt->Bcap;
    for (int start = 0; start < d->n; start += Bc) {
        const int B = d->n - start < Bc ? d->n - start : Bc;
        s2s_batch_from_data(bt, d, start, B);
        s2s_forward(r, bt, m);
        for (int i = 0; i < bt->S * B; i++) tf_best[i] = argmax(r->a.logits + i * V, V);
        s2s_greedy_decode(out, r->lens, r, m, bt, maxlen);
        for (int b = 0; b < B; b++)
            s2s_exposure_row(x, tf_best, B, b, d->tgt + (start + b) * d->Nmax,
                             d->tlen[start + b], out + b * maxlen, r->lens[b]);
    }
}

#ifndef TESTING   /* the program: tests.c includes this file without it */

/* ========================================================================
 * 13. options: one table, the checks that relate options
 * ======================================================================== */

/* The thirteen things ./seq2seq can do: the mode. An option applies to some of
 * them; opt_check_mode refuses it in the others. The experiments' modes
 * follow S2S_MODE_LENGTH in the order of s2s_experiment_names. */
enum { S2S_MODE_RUN, S2S_MODE_LENGTH, S2S_MODE_POOLING, S2S_MODE_CNN, S2S_MODE_GRADIENT,
       S2S_MODE_EXPOSURE, S2S_MODE_PARALLEL, S2S_MODE_PARAMS, S2S_MODE_ENCODER,
       S2S_MODE_PAIR, S2S_MODE_BENCH, S2S_MODE_DATA, S2S_MODE_USE };
static const char *const s2s_mode_names[] = { "the default run", "--experiment length",
    "--experiment pooling", "--experiment cnn", "--experiment gradient",
    "--experiment exposure", "--experiment parallel", "--experiment params",
    "--experiment encoder", "--experiment pair", "--bench", "--data", "--load without --data",
    NULL };
static const char *const s2s_experiment_names[] = { "length", "pooling", "cnn", "gradient",
                                                     "exposure", "parallel", "params",
                                                     "encoder", "pair", NULL };
/* --experiment params trains each decoder at these hidden sizes (section 15) */
static const int s2s_params_hidden[] = { 4, 8, 16, 24, 32, 48, 64, 96, 128 };
enum { S2S_PARAMS_NH = (int)(sizeof s2s_params_hidden / sizeof s2s_params_hidden[0]) };

typedef struct {
    int mode;          /* S2S_MODE_* */
    S2sConfig cfg;
    S2sTask task;
    S2sTrainConfig train;
    int batch;         /* training batch rows */
    int test;          /* held-out examples */
    int beam;          /* 1 = greedy */
    int kernel;        /* --experiment cnn and pair: convolution width K */
    int channels;      /* --experiment cnn and pair: convolution channels F */
    int seed;
    const char *svg;   /* alignment picture, or NULL */
    int score;         /* --score, an index into s2s_luong_scores */
    int experiment;    /* --experiment, an index into s2s_experiment_names */
    int bench;         /* --bench */
    const char *data;  /* --data: the pair file, or NULL */
    const char *load;  /* --load: a checkpoint to use instead of training, or NULL */
    const char *save;  /* --save: where to write the trained model, or NULL */
    const char *log;   /* --log: the CSV of the dev evaluations, or NULL */
    const char *input; /* --input: the word to convert, or NULL (then stdin) */
    double minutes;    /* --minutes: the training budget, 0 = none */
    int eval_every;    /* --eval-every: steps between dev evaluations */
    S2sSaved *saved;   /* the model --load read, or NULL */
    const char *prog;  /* argv[0], for messages */
    int trace;         /* --trace: print one decoder step, the five steps of attention */
    int resume;        /* --load with --data and --steps or --minutes: train on */
    int samples;       /* --experiment exposure: decodes of each source per rule */
} S2sOptions;

/* Append the nadd options add to opt (n so far, room for cap); returns the
 * new count. Too small an array is the program's own mistake. */
static int s2s_options_add(Opt *opt, int n, int cap, const Opt *add, int nadd) {
    if (n + nadd > cap) {
        fprintf(stderr, "seq2seq: internal error: %d options, room for %d\n", n + nadd, cap);
        exit(1);
    }
    memcpy(opt + n, add, sizeof *add * (size_t)nadd);
    return n + nadd;
}

/* The option table of ./seq2seq, in two halves (the task and the model,
 * then training and the program), pointing into o, which holds the defaults
 * --help shows (the experiments' own defaults are in the help text). The
 * modes an option applies to: */
#define RUN    (1u << S2S_MODE_RUN)
#define LENGTH (1u << S2S_MODE_LENGTH)
#define CNN    (1u << S2S_MODE_CNN)
#define GRAD   (1u << S2S_MODE_GRADIENT)
#define EXPO   (1u << S2S_MODE_EXPOSURE)
#define PAR    (1u << S2S_MODE_PARALLEL)              /* times, trains nothing */
#define PARAMS (1u << S2S_MODE_PARAMS)                /* its own ladder of --hidden */
#define PAIR   (1u << S2S_MODE_PAIR)                  /* fixed lengths, no RNN, no picture */
#define EXPS   (LENGTH | 1u << S2S_MODE_POOLING | CNN | GRAD | EXPO | 1u << S2S_MODE_ENCODER)
#define TRAIN  (RUN | EXPS | PARAMS)                 /* everything that trains */
#define DATA   (1u << S2S_MODE_DATA)
#define USE    (1u << S2S_MODE_USE)
#define MODEL  (DATA | USE)    /* checked against a --load'ed model's own */
static int s2s_model_options(Opt *opt, int n, int cap, S2sOptions *o) {
    const Opt table[] = {
        { "--task", OPT_CHOICE, &o->task.task, 0, 0, s2s_task_names, RUN | EXPO, "T", "the task",
          0 },
        { "--len", OPT_INT, &o->task.max_len, 1, 60, NULL, TRAIN, "N", "longest source "
          "(copy/reverse/sort); default 10,\nlength 44, pooling 60, cnn 40, exposure and\n"
          "params 12", 0 },
        { "--min-len", OPT_INT, &o->task.min_len, 1, 60, NULL, RUN | LENGTH, "N",
          "shortest source, at most --len; default = --len, length 5", 0 },
        { "--vocab", OPT_INT, &o->task.V, 5, 64, NULL, RUN | EXPO, "V",
          "vocabulary incl. 3 specials (copy/reverse/sort)", 0 },
        { "--attention", OPT_CHOICE, &o->cfg.attention, 0, 0, s2s_attention_names,
          RUN | EXPO | MODEL, "A", "the decoder; exposure: the one beside none", 0 },
        { "--score", OPT_CHOICE, &o->score, 0, 0, s2s_luong_scores, RUN | MODEL, "S",
          "luong only: the score function: Luong's three\n(dot, general, concat) or "
          "chapter 1's others", 0 },
        { "--align", OPT_CHOICE, &o->cfg.align, 0, 0, s2s_align_names, RUN | MODEL, "A",
          "luong only: attend to every source position or to a window", 0 },
        { "--window", OPT_INT, &o->cfg.window, 1, 20, NULL, RUN | MODEL, "D",
          "local-m/local-p only: the window [p-D, p+D]", 0 },
        { "--cell", OPT_CHOICE, &o->cfg.cell, 0, 0, cell_names, (TRAIN & ~GRAD) | MODEL, "C",
          "the recurrent cell; default gru, pooling rnn, cnn lstm", 0 },
        { "--hidden", OPT_INT, &o->cfg.H, 1, 512, NULL, (TRAIN & ~PARAMS) | PAR | MODEL, "H",
          "hidden size (parallel: the width of both); default 64,\ncnn 32, --data 128", 0 },
        { "--embed", OPT_INT, &o->cfg.E, 1, 512, NULL, TRAIN | PAIR | MODEL, "E",
          "embedding size; default 32, cnn and pair 16, --data 64", 0 },
        { "--attn-hidden", OPT_INT, &o->cfg.A, 1, 512, NULL, RUN | MODEL, "A", "hidden size of the "
          "additive/concat score and local-p;\ndefault = --hidden", 0 },
        { "--encoder", OPT_CHOICE, &o->cfg.encoder, 0, 0, s2s_encoder_names, RUN | MODEL, "D",
          "the encoder's directions: uni, bi, or auto (the\ndecoder's own: bi for bahdanau, "
          "uni otherwise)", 0 },
        { "--layers", OPT_INT, &o->cfg.layers, 1, S2S_MAX_LAYERS, NULL, RUN | MODEL, "N",
          "encoder RNN layers, each over the one below", 0 },
    };
    return s2s_options_add(opt, n, cap, table, (int)(sizeof table / sizeof table[0]));
}

static int s2s_program_options(Opt *opt, int n, int cap, S2sOptions *o) {
    const Opt table[] = {
        { "--batch", OPT_INT, &o->batch, 1, 512, NULL, TRAIN | PAIR | DATA, "B",
          "training batch; default 32, --data 64", 0 },
        { "--steps", OPT_INT, &o->train.steps, 1, 1000000, NULL, TRAIN | PAIR | DATA, "N",
          "training steps; default 600, length 1200, --data 100000", 0 },
        { "--lr", OPT_RATE, &o->train.lr, 0, 1, NULL, TRAIN | PAIR | DATA, "X",
          "Adam learning rate; it decays linearly to lr/10;\ndefault 0.005, --data 0.002", 0 },
        { "--clip", OPT_REAL, &o->train.clip, 0, 1000, NULL, TRAIN | PAIR | DATA, "X",
          "max global gradient norm, 0 = off", 0 },
        { "--test", OPT_INT, &o->test, 1, 100000, NULL, RUN | LENGTH | EXPO | PARAMS, "N",
          "held-out examples", 0 },
        { "--beam", OPT_INT, &o->beam, 1, 64, NULL, RUN | EXPO | MODEL, "K",
          "beam search width for the held-out decode (1 = greedy;\n--data: the test part is "
          "scored greedy and with K;\nexposure: the beam row, default 4)", 0 },
        { "--samples", OPT_INT, &o->samples, 2, 64, NULL, EXPO, "K",
          "exposure: decodes of each held-out source per rule", 0 },
        { "--seed", OPT_INT, &o->seed, 0, 2147483647, NULL, TRAIN | PAIR | DATA, "N",
          "seed; stdout is identical for a seed (--data: also\nthe split; with --minutes, "
          "where the run stops is not)", 0 },
        { "--svg", OPT_PATH, &o->svg, 0, 0, NULL, (TRAIN & ~PARAMS) | PAR | MODEL, "DIR",
          "write every "
          "picture of the run as SVG into the\nexisting directory DIR, as seq2seq-<what>.svg "
          "(a\nfile of that name is replaced): the alignment,\nthe training curves, an "
          "experiment's chart", 0 },
        { "--experiment", OPT_CHOICE, &o->experiment, 0, 0, s2s_experiment_names,
          EXPS | PAR | PARAMS | PAIR, "X",
          "instead of the default run, an experiment (below)", 0 },
        { "--kernel", OPT_INT, &o->kernel, 1, 60, NULL, CNN | PAIR, "K",
          "convolution width, at most --len (pair: at most 6,\nthe shorter text)", 0 },
        { "--channels", OPT_INT, &o->channels, 1, 512, NULL, CNN | PAIR, "F",
          "convolution channels; F is also the hidden size\nof the CNN's attention score", 0 },
        { "--bench", OPT_FLAG, &o->bench, 0, 0, NULL, 1u << S2S_MODE_BENCH, "", "ms per "
          "training step (and target tokens/s) of the two\nbenchmark configurations, then "
          "the default example's time", 0 },
    };
    return s2s_options_add(opt, n, cap, table, (int)(sizeof table / sizeof table[0]));
}

static int s2s_data_options(Opt *opt, int n, int cap, S2sOptions *o) {
    const Opt table[] = {
        { "--data", OPT_PATH, &o->data, 0, 0, NULL, DATA, "FILE", "train on the pairs of FILE "
          "(below), or with --load\nscore that model on FILE's dev and test words (and\n"
          "with --steps or --minutes train it on first)", 0 },
        { "--minutes", OPT_REAL, &o->minutes, 0, 10000, NULL, DATA, "M",
          "stop training after M minutes of wall-clock time\n(0 = only --steps); the "
          "learning rate decays over\nwhichever ends the run first", 0 },
        { "--eval-every", OPT_INT, &o->eval_every, 1, 1000000, NULL, DATA, "N",
          "dev PER/WER every N steps: the best is kept", 0 },
        { "--log", OPT_PATH, &o->log, 0, 0, NULL, DATA, "FILE", "a CSV of every dev evaluation: "
          "step,train_loss,\ndev_per,dev_wer,seconds (wall); its rows appear in\nFILE.partial "
          "as they come, FILE when training ends", 0 },
        { "--save", OPT_PATH, &o->save, 0, 0, NULL, DATA, "FILE", "write the trained model (the "
          "best on dev) to FILE", 0 },
        { "--load", OPT_PATH, &o->load, 0, 0, NULL, MODEL, "FILE", "use the model saved in FILE "
          "instead of training one;\nwith --data and --steps N (the total, its own\nsteps "
          "included) or --minutes M, train it on", 0 },
        { "--input", OPT_PATH, &o->input, 0, 0, NULL, USE, "WORD", "with --load: convert WORD "
          "(default: one word a line\nfrom stdin)", 0 },
        { "--trace", OPT_FLAG, &o->trace, 0, 0, NULL, RUN | USE, "", "after the run, print "
          "one decoder step (the middle one\nof held-out example 1, or of --input's word) "
          "as\nthe model computed it: the query, every score, the\nweights, the context, "
          "the combined state, the top 5\noutputs", 0 },
    };
    return s2s_options_add(opt, n, cap, table, (int)(sizeof table / sizeof table[0]));
}
#undef DATA
#undef USE
#undef MODEL
#undef RUN
#undef LENGTH
#undef CNN
#undef EXPS
#undef GRAD
#undef EXPO
#undef PAR
#undef PARAMS
#undef PAIR
#undef TRAIN

/* The checks that relate the model's options to each other: each names the
 * option, what it needs and what would be accepted. */
static void s2s_check_model(const OptTable *t, S2sOptions *o) {
    S2sConfig *c = &o->cfg;
    if (opt_given(t, "--score") && c->attention != S2S_LUONG)
        opt_fail(t, "--score applies only to --attention luong (Bahdanau's score is additive; "
                 "none has no score)");
    if (opt_given(t, "--align") && c->attention != S2S_LUONG)
        opt_fail(t, "--align applies only to --attention luong");
    if (opt_given(t, "--window") && c->align == S2S_GLOBAL)
        opt_fail(t, "--window needs --align local-m or --align local-p (global attention has "
                 "no window)");
    if (o->mode == S2S_MODE_EXPOSURE && c->attention == S2S_NONE)
        opt_fail(t, "--experiment exposure compares no attention with an attention decoder: "
                 "give --attention bahdanau or luong (the default), or drop --attention");
    if (o->trace && o->mode == S2S_MODE_RUN && c->attention == S2S_NONE)
        opt_fail(t, "--trace shows a step of attention, and --attention none has none: give "
                 "--attention bahdanau or luong");
    c->score = s2s_luong_score_kind[o->score];
    const int has_A = c->attention == S2S_BAHDANAU || (c->attention == S2S_LUONG &&
                      (c->score == SCORE_CONCAT || c->score == SCORE_ADDITIVE ||
                       c->align == S2S_LOCAL_P));
    if (opt_given(t, "--attn-hidden") && !has_A)
        opt_fail(t, "--attn-hidden sizes the additive score (bahdanau's or luong's), the concat "
                 "score or local-p; this model has none of them");
    if (!opt_given(t, "--attn-hidden")) c->A = c->H;
    /* Luong with a bidirectional encoder: the query h_t is H wide and the
     * annotations 2H, so a score must bridge the two widths itself
     * (general's W is (2H, H); concat and additive project both); dot,
     * scaled and cosine compare equal widths, and are refused. (A --load'ed
     * model is checked against its own settings in s2s_check_saved.) */
    if (!o->load && c->attention == S2S_LUONG && c->encoder == S2S_ENC_BI &&
        (c->score == SCORE_DOT || c->score == SCORE_SCALED_DOT || c->score == SCORE_COSINE))
        opt_fail(t, "--encoder bi makes luong's keys 2H wide against a query of H, and --score "
                 "%s compares vectors of one width: give --score general, concat or additive, "
                 "or --encoder uni", s2s_luong_scores[o->score]);
    /* the decoder's own direction is stored as auto, so a model and its
     * checkpoint are the same whether or not --encoder named it (with
     * --load, s2s_check_saved reads --encoder against the loaded decoder) */
    const S2sConfig own = { .attention = c->attention };
    if (!o->load && c->encoder != S2S_ENC_AUTO && s2s_enc_bi(c) == s2s_enc_bi(&own))
        c->encoder = S2S_ENC_AUTO;
}

/* The experiments' own defaults, for what the command line did not give. */
static void s2s_mode_defaults(const OptTable *t, S2sOptions *o) {
    S2sTask *tk = &o->task;
    if (o->mode == S2S_MODE_LENGTH) {
        if (!opt_given(t, "--len")) tk->max_len = 44;
        if (!opt_given(t, "--min-len")) tk->min_len = 5;
        if (!opt_given(t, "--steps")) o->train.steps = 1200;
    }
    if (o->mode == S2S_MODE_POOLING) {
        if (!opt_given(t, "--len")) tk->max_len = 60;
        if (!opt_given(t, "--cell")) o->cfg.cell = CELL_RNN;
    }
    if (o->mode == S2S_MODE_CNN) {
        if (!opt_given(t, "--len")) tk->max_len = 40;
        if (!opt_given(t, "--cell")) o->cfg.cell = CELL_LSTM;
        if (!opt_given(t, "--hidden")) o->cfg.H = 32;
        if (!opt_given(t, "--embed")) o->cfg.E = 16;
    }
    if (o->mode == S2S_MODE_GRADIENT) {
        if (!opt_given(t, "--len")) tk->max_len = 20;
        if (!opt_given(t, "--steps")) o->train.steps = 200;
        o->test = o->batch;                  /* one held-out batch is measured */
    }
    if (o->mode == S2S_MODE_EXPOSURE || o->mode == S2S_MODE_PARAMS) {
        if (!opt_given(t, "--len")) tk->max_len = 12;
        if (!opt_given(t, "--beam")) o->beam = 4;
    }
    if (o->mode == S2S_MODE_PAIR && !opt_given(t, "--embed")) o->cfg.E = 16;
    if (o->mode == S2S_MODE_ENCODER) {
        if (opt_given(t, "--svg"))
            opt_fail(t, "--experiment encoder prints a table and draws no picture: drop --svg");
        if (!opt_given(t, "--len")) tk->max_len = 16;
        if (!opt_given(t, "--steps")) o->train.steps = 400;
        if (!opt_given(t, "--hidden")) o->cfg.H = 32;
        if (!opt_given(t, "--embed")) o->cfg.E = 16;
        o->cfg.A = o->cfg.H;
    }
    if (!opt_given(t, "--min-len") && o->mode != S2S_MODE_LENGTH) tk->min_len = tk->max_len;
}

/* The task's sizes: date has its own; the lengths must hold a held-out
 * split; the pooling and CNN tasks need a few symbols to work with. */
static void s2s_check_task(const OptTable *t, S2sOptions *o) {
    S2sTask *tk = &o->task;
    if (tk->task == S2S_TASK_DATE) {
        if (opt_given(t, "--len") || opt_given(t, "--min-len") || opt_given(t, "--vocab"))
            opt_fail(t, "--len, --min-len and --vocab do not apply to --task date "
                     "(its sources are 6-7 tokens over 25 symbols)");
        tk->min_len = 6; tk->max_len = 7; tk->V = S2S_DATE_V;
        return;
    }
    if (o->mode == S2S_MODE_POOLING && tk->max_len < 4)  /* 4^4 = 256 sources */
        opt_fail(t, "--len must be at least 4 for --experiment pooling (fewer gives too few "
                 "distinct sequences to hold some out)");
    if (o->mode == S2S_MODE_CNN && tk->max_len < 8)      /* 8: 164640 sequences */
        opt_fail(t, "--len must be at least 8 for --experiment cnn (two marker-letter pairs, "
                 "the question and enough filler for a held-out split)");
    if (o->mode == S2S_MODE_PAIR && o->kernel > PAIR_TB)
        opt_fail(t, "--kernel must be at most %d for --experiment pair (its shorter text has "
                 "%d tokens), got %d", PAIR_TB, PAIR_TB, o->kernel);
    if (o->mode == S2S_MODE_CNN && o->kernel > tk->max_len)
        opt_fail(t, "--kernel must be at most the sequence length --len (%d), got %d",
                 tk->max_len, o->kernel);
    if (tk->min_len > tk->max_len) {
        if (opt_given(t, "--min-len"))
            opt_fail(t, "--min-len must be at most --len (%d), got %d", tk->max_len,
                     tk->min_len);
        opt_fail(t, "--len %d is below the shortest source of --experiment length (%d by "
                 "default); give --min-len 1..%d too, or --len %d..60", tk->max_len,
                 tk->min_len, tk->max_len, tk->min_len);
    }
    if (s2s_task_space(tk) < 200)
        opt_fail(t, "--vocab %d with lengths %d..%d gives only %.0f distinct sources; a "
                 "held-out split needs at least 200 (raise --vocab or --len)", tk->V,
                 tk->min_len, tk->max_len, s2s_task_space(tk));
}

/* Does the workspace of the default run (or of an experiment's largest
 * model) fit in S2S_MAX_DOUBLES? If not, say which --batch would. */
static void s2s_check_workspace(const OptTable *t, const S2sOptions *o) {
    if (o->mode != S2S_MODE_RUN && o->mode != S2S_MODE_LENGTH && o->mode != S2S_MODE_GRADIENT &&
        o->mode != S2S_MODE_EXPOSURE && o->mode != S2S_MODE_PARAMS &&
        o->mode != S2S_MODE_ENCODER)
        return;
    int Tmax, Nmax;
    s2s_task_dims(&o->task, &Tmax, &Nmax);
    const int Bmax = o->batch > o->beam ? o->batch : o->beam;
    double per = 0.0;                              /* doubles per example, worst model */
    for (int k = S2S_NONE; k <= S2S_LUONG; k++) {
        S2sConfig w = o->cfg;
        if (o->mode != S2S_MODE_RUN) w.attention = k;
        if (o->mode == S2S_MODE_GRADIENT) w.cell = CELL_LSTM;   /* the largest cell */
        if (o->mode == S2S_MODE_PARAMS) w.H = w.A = s2s_params_hidden[S2S_PARAMS_NH - 1];
        if (o->mode == S2S_MODE_ENCODER) {                      /* its largest encoder */
            w.encoder = S2S_ENC_BI; w.layers = 2;
            if (k == S2S_LUONG) w.score = SCORE_GENERAL;
        }
        const double e = s2s_acts_estimate(&w, 1, Tmax, Nmax + 1);
        if (e > per) per = e;
    }
    if (per * Bmax > S2S_MAX_DOUBLES)
        opt_fail(t, "this model needs about %.2g doubles (%.1f GB, twice: activations and "
                 "their gradients) for --batch %d (or --beam) at --len %d; the limit is %.0e "
                 "(%.1f GB). The largest --batch that fits is %d; or make --hidden, --embed, "
                 "--attn-hidden or --len smaller", per * Bmax, 8e-9 * per * Bmax, Bmax,
                 o->task.max_len, S2S_MAX_DOUBLES, 8e-9 * S2S_MAX_DOUBLES,
                 (int)(S2S_MAX_DOUBLES / per));
}

/* A value of a model option, as the command line spells it, into buf */
static const char *s2s_option_value(char *buf, size_t n, const char *name, int v) {
    const char *const *names = !strcmp(name, "--attention") ? s2s_attention_names
                             : !strcmp(name, "--cell") ? cell_names
                             : !strcmp(name, "--align") ? s2s_align_names
                             : !strcmp(name, "--encoder") ? s2s_encoder_names : NULL;
    if (!strcmp(name, "--score"))
        for (int k = 0; k < S2S_N_SCORES; k++)
            if (s2s_luong_score_kind[k] == v) return s2s_luong_scores[k];
    if (names) return names[v];
    snprintf(buf, n, "%d", v);
    return buf;
}

/* --load: read the checkpoint now (refusing a bad one), refuse every model
 * option that disagrees with it, naming both values, and take its model. */
static void s2s_check_saved(const OptTable *t, S2sOptions *o) {
    static const char *const train[] = { "--steps", "--lr", "--batch", "--clip", "--minutes",
                                         "--eval-every", "--log", "--save", NULL };
    o->resume = o->mode == S2S_MODE_DATA && (opt_given(t, "--steps") ||
                                             opt_given(t, "--minutes"));
    for (int k = 0; o->mode == S2S_MODE_DATA && !o->resume && train[k]; k++)
        if (opt_given(t, train[k]))
            opt_fail(t, "%s is for training, and --load with --data only scores the saved "
                     "model on the file's dev and test words unless told to train on: add "
                     "--steps N (the total, the model's own steps included) or --minutes M, "
                     "or drop %s", train[k], train[k]);
    char why[600], b1[16], b2[16];
    S2sSaved *sv = xmalloc(sizeof *sv);
    if (s2s_load(sv, o->load, why, sizeof why) != 0) opt_fail(t, "--load: %s", why);
    const S2sConfig *c = &sv->m.cfg, *g = &o->cfg;
    S2sConfig ge = *g;              /* --encoder auto means the loaded decoder's own */
    ge.attention = c->attention;
    const char *name[] = { "--attention", "--cell", "--score", "--align", "--window", "--hidden",
                           "--embed", "--attn-hidden", "--seed", "--encoder", "--layers" };
    const int mine[] = { g->attention, g->cell, g->score, g->align, g->window, g->H, g->E, g->A,
                         o->seed, s2s_enc_bi(&ge) + 1, s2s_enc_layers(g) };
    const int its[] = { c->attention, c->cell, c->score, c->align, c->window, c->H, c->E, c->A,
                        sv->seed, s2s_enc_bi(c) + 1, s2s_enc_layers(c) };
    for (int k = 0; k < 11; k++)
        if (opt_given(t, name[k]) && mine[k] != its[k]) {
            char given[48];            /* as typed: auto says what it means here */
            snprintf(given, sizeof given, k == 9 && g->encoder == S2S_ENC_AUTO ? "auto (%s "
                     "for %s)" : "%s", s2s_option_value(b1, sizeof b1, name[k], mine[k]),
                     s2s_attention_names[c->attention]);
            opt_fail(t, "%s %s conflicts with the model in '%s', which has %s %s (%s): drop "
                     "%s (a loaded model keeps its own), or load another file", name[k],
                     given, o->load, name[k], s2s_option_value(b2, sizeof b2, name[k], its[k]),
                     k == 8 ? "the split it was trained on" : "its shape", name[k]);
        }
    o->cfg = *c;
    o->seed = sv->seed;
    o->saved = sv;
}

/* --data and --load: their defaults and checks. Files are checked before
 * any training: a bad checkpoint, or a --save, --log or --svg that cannot be
 * written, fails now, not after the minutes of training. */
static void s2s_check_data(const OptTable *t, S2sOptions *o) {
    if (!o->load) {
        if (!opt_given(t, "--hidden")) o->cfg.H = 128;
        if (!opt_given(t, "--embed")) o->cfg.E = 64;
        if (!opt_given(t, "--attn-hidden")) o->cfg.A = o->cfg.H;
    } else {
        s2s_check_saved(t, o);
    }
    if (!o->load || o->resume) {
        if (!opt_given(t, "--batch")) o->batch = 64;
        if (!opt_given(t, "--lr")) o->train.lr = 2e-3;
        if (!opt_given(t, "--steps")) o->train.steps = 100000;
    }
    if (o->resume && o->train.steps <= o->saved->m.step)
        opt_fail(t, "--steps %d counts every step, and the model in '%s' has taken %d "
                 "already: give --steps above %d", o->train.steps, o->load,
                 o->saved->m.step, o->saved->m.step);
    if (o->svg && o->mode == S2S_MODE_USE && o->cfg.attention == S2S_NONE)
        opt_fail(t, "--svg draws the alignment, and this model (--attention none) has none: "
                 "drop --svg");
    if (o->svg && o->mode == S2S_MODE_USE && !o->input)
        opt_fail(t, "--svg draws the alignment of --input's word; words from stdin get none: "
                 "give --input WORD, or drop --svg");
    if (o->trace && (o->cfg.attention == S2S_NONE || !o->input))
        opt_fail(t, o->input ? "--trace shows a step of attention, and this model "
                 "(--attention none) has none: drop --trace" : "--trace shows a step of "
                 "--input's word; words from stdin get none: give --input WORD");
    const char *name[] = { "--save", "--log" }, *path[] = { o->save, o->log };
    for (int k = 0; k < 2; k++) if (path[k]) check_writable(t->prog, name[k], path[k]);
    if (o->svg) check_dir_writable(t->prog, "--svg", o->svg);
}

static const char s2s_about[] =
    "  Trains an RNN encoder-decoder on a toy task and shows what it learned.\n"
    "  The default: Luong attention (dot, global), GRU cells, reverse of length 10.";
static const char s2s_after[] =
    "  The experiments:\n"
    "  length   accuracy by source length, none vs bahdanau vs luong\n"
    "           (+ attention entropy)\n"
    "           (reverse, lengths 5..44, 1200 steps unless given)\n"
    "  pooling  last vs mean vs attention pooling for classification\n"
    "           (rnn cells, length 60 unless given)\n"
    "  cnn      the pooling table with a CNN beside the RNN: max, mean and\n"
    "           attention pooling (a learned query, or the RNN's h_T), and max\n"
    "           pooling + the RNN's h_T as a control\n"
    "           (lstm cells, length 40, hidden 32, embedding 16 unless given)\n"
    "  gradient the gradient of the loss at each source token by its distance\n"
    "           from the end, rnn/gru/lstm without and with bahdanau attention,\n"
    "           at initialisation and after a short training (reverse, length\n"
    "           20, 200 steps unless given)\n"
    "  exposure token error by output position, teacher-forced and free running,\n"
    "           none and --attention (luong) after N/4 and N --steps; then greedy,\n"
    "           beam and sampling at T = 0.5, 1, 1.5 (--samples each): distinct\n"
    "           outputs, accuracy, log P (reverse, length 12, 600 steps)\n"
    "  parallel one forward pass over n = 16..512 positions, batch 8: a GRU\n"
    "           encoder (n steps, each waiting for the one before) against one\n"
    "           self-attention layer (4 heads, every position at once), width\n"
    "           --hidden: dependent steps and ms; run ./seq2seq-omp (make omp)\n"
    "           too to see what more cores do for each\n"
    "  params   each decoder at hidden 4..128: the fewest parameters\n"
    "           for 90% held-out exact (reverse, length 12, 600 steps)\n"
    "  encoder  each decoder over uni and bi encoders of 1 and 2 layers\n"
    "           (reverse, 16 symbols, hidden 32, Luong's general score, 400\n"
    "           steps unless given)\n"
    "  pair     two texts (8 and 6 of 52 symbols): do they share one? A siamese\n"
    "           CNN, attention before the convolution (ABCNN-1) and after it\n"
    "           (ABCNN-2), then one example's match matrices (embedding 16)\n";
/* the rest of --help's last lines (C99 promises string literals of 4095
 * characters, so the text is in two; s2s_parse joins them) */
static const char s2s_after_data[] =
    "\n"
    "  Real data: --data FILE reads one pair a line, in the format of its first\n"
    "  pair line: 'source<TAB>target' if it has a tab, else CMUdict's 'word PH O NE\n"
    "  MES' (a word's alternates 'word(2)' are the same word). The source's tokens\n"
    "  are its characters (UTF-8), the target's its space-separated symbols; blank,\n"
    "  ';;;' and '#' lines are skipped. 90/5/5 train/dev/test by a hash of the word\n"
    "  and --seed; dev picks the parameters kept, test is scored once, at the end\n"
    "  (PER = edits / reference phonemes, WER = share of words with any error,\n"
    "  against the nearest pronunciation). Words up to 64 characters; a dev/test\n"
    "  character the training words lack becomes <unk>. --load FILE --input WORD\n"
    "  prints WORD's phonemes and the attention; with no --input, one word a line\n"
    "  from stdin gives 'word  PH O NE MES' lines, and a word with a character the\n"
    "  model never saw is refused on stderr (exit 2 at the end), the others go on.\n"
    "  --load FILE --data FILE2 --minutes M (or --steps N) trains the saved model\n"
    "  on: its weights, Adam's moments and step count as saved, the batches that\n"
    "  would have come next, its dev PER the one to beat; the learning rate\n"
    "  decays again from --lr (give a smaller --lr to go on where it ended).\n"
    "\n"
    "  Progress while training: step, loss and teacher-forced token accuracy on\n"
    "  stdout, which is identical for a --seed; step/total, tokens/s, elapsed and\n"
    "  time left on stderr, at most every 5 s (they differ run to run; 2>/dev/null\n"
    "  hides them). Experiments show each model's progress the same way.\n"
    "\n"
    "  --svg DIR writes (<model>: the attention, luong's score and alignment if not\n"
    "  dot and global, the cell if not gru; <data>: --data's file name; sizes,\n"
    "  --window and --seed are not in the names, so a run that differs from an\n"
    "  earlier one only in them replaces its files):\n"
    "    seq2seq-<task>-<model>-alignment.svg, -curve.svg    the default run\n"
    "    seq2seq-<data>-<model>-alignment.svg, -curve.svg    --data\n"
    "    seq2seq-<checkpoint>-<word>-alignment.svg           --load, --input WORD\n"
    "    seq2seq-length.svg, seq2seq-pooling.svg, seq2seq-cnn.svg (and\n"
    "    seq2seq-cnn-weights.svg), seq2seq-gradient.svg, seq2seq-exposure.svg\n"
    "    (and seq2seq-exposure-diversity.svg), each with its -curve.svg\n"
    "                                                        the experiments\n";

/* Parse and check argv into o: the defaults, the table, the mode, then the
 * checks that relate options. Exits 2 with a message on any bad input. */
static void s2s_parse(S2sOptions *o, int argc, char **argv) {
    const S2sOptions defaults = {
        S2S_MODE_RUN, { S2S_LUONG, CELL_GRU, SCORE_DOT, S2S_GLOBAL, 2, 16, 32, 64, 0, 0,
                         S2S_ENC_AUTO, 1 },
        { TASK_REVERSE, 10, 10, 16 }, { 600, 5e-3, 1.0, 60 },
        32, 500, 1, 3, 32, 1, NULL, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, 0.0, 1000, NULL, argv[0], 0, 0,
        8 };
    *o = defaults;
    Opt opt[40];
    char after[sizeof s2s_after + sizeof s2s_after_data];
    snprintf(after, sizeof after, "%s%s", s2s_after, s2s_after_data);
    OptTable t = { argv[0], s2s_about, after, s2s_mode_names, opt, 0 };
    const int cap = (int)(sizeof opt / sizeof opt[0]);
    t.n = s2s_model_options(opt, 0, cap, o);
    t.n = s2s_program_options(opt, t.n, cap, o);
    t.n = s2s_data_options(opt, t.n, cap, o);
    opt_parse(&t, argc, argv);
    o->mode = o->bench ? S2S_MODE_BENCH
            : opt_given(&t, "--experiment") ? S2S_MODE_LENGTH + o->experiment
            : o->data ? S2S_MODE_DATA : o->load ? S2S_MODE_USE : S2S_MODE_RUN;
    opt_check_mode(&t, o->mode);
    s2s_check_model(&t, o);
    if (o->mode == S2S_MODE_DATA || o->mode == S2S_MODE_USE) {
        s2s_check_data(&t, o);
        return;
    }
    s2s_mode_defaults(&t, o);
    s2s_check_task(&t, o);
    o->cfg.V = o->task.V;
    o->train.log_every = o->train.steps >= 10 ? o->train.steps / 10 : 1;
    s2s_check_workspace(&t, o);
    if (o->svg) check_dir_writable(argv[0], "--svg", o->svg);   /* now, not after training */
}

/* ========================================================================
 * 14. the default run: train, evaluate, show examples and the alignment
 * ======================================================================== */

/* ---- 80 columns, and the names of the pictures -------------------------------- */

enum { S2S_COLUMNS = 79 };   /* the widest line this program prints: 80 columns, one spare */

/* printf fmt to stdout, wrapped at S2S_COLUMNS (wrap_text), continuations after indent */
static void s2s_wrapf(const char *indent, const char *fmt, ...) {
    va_list ap, aq;
    va_start(ap, fmt);
    va_copy(aq, ap);
    const int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *text = xmalloc((size_t)n + 1);
    vsnprintf(text, (size_t)n + 1, fmt, aq);
    va_end(aq);
    char *w = wrap_text(indent, text, S2S_COLUMNS);
    fputs(w, stdout);
    free(w); free(text);
}

/* print_heatmap with its title wrapped to S2S_COLUMNS */
static void s2s_heatmap(const char *title, const double *W, int R, int C,
                        const char *const *rows, const char *const *cols) {
    char *t = wrap_text("", title, S2S_COLUMNS);
    print_heatmap(stdout, t, W, R, C, rows, cols);
    free(t);
}

/* A line being built piece by piece, then printed wrapped (s2s_line_end). */
typedef struct {
    char *s;
    size_t n, cap;
} S2sLine;

/* append printf fmt to l, growing it */
static void s2s_cat(S2sLine *l, const char *fmt, ...) {
    va_list ap, aq;
    va_start(ap, fmt);
    va_copy(aq, ap);
    const size_t k = (size_t)vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (l->n + k + 1 > l->cap) {
        l->cap = 2 * (l->n + k + 1);
        char *s = xmalloc(l->cap);
        if (l->n) memcpy(s, l->s, l->n);
        free(l->s);
        l->s = s;
    }
    vsnprintf(l->s + l->n, k + 1, fmt, aq);
    va_end(aq);
    l->n += k;
}

/* print l and a newline, wrapped, continuation lines starting with indent; empty l */
static void s2s_line_end(S2sLine *l, const char *indent) {
    s2s_wrapf(indent, "%s\n", l->n ? l->s : "");
    l->n = 0;
}

/* s (a file's name, its directory and extension dropped, if strip; else a
 * word) as part of a file name into buf (n >= 2 bytes): letters, digits,
 * '.', '_', '-' and non-ASCII characters kept, anything else '_', cut
 * short at a character's boundary if it is long. */
static const char *s2s_name_part(char *buf, size_t n, const char *s, int strip) {
    const char *base = strip && strrchr(s, '/') ? strrchr(s, '/') + 1 : s;
    const char *dot = strrchr(base, '.');
    size_t len = strip && dot && dot > base ? (size_t)(dot - base) : strlen(base), k = 0;
    if (len > n - 1) len = n - 1;
    while (len > 0 && len < strlen(base) && ((unsigned char)base[len] & 0xC0) == 0x80) len--;
    for (; k < len; k++) {
        const unsigned char ch = (unsigned char)base[k];
        buf[k] = ch >= 0x80 || isalnum(ch) || ch == '.' || ch == '_' || ch == '-' ? (char)ch : '_';
    }
    buf[k] = '\0';
    if (!k) snprintf(buf, n, "_");
    return buf;
}

/* The configuration part of a picture's name into buf: where (the task, or
 * the data file's name), the attention, and what differs from the
 * defaults: "reverse-luong", "date-bahdanau", "cmudict-luong-general-local-p-lstm". */
static const char *s2s_svg_stem(char *buf, size_t n, const char *where, const S2sConfig *c) {
    char w[80];
    int k = snprintf(buf, n, "%s-%s", s2s_name_part(w, sizeof w, where, 1),
                     s2s_attention_names[c->attention]);
    for (int i = 0; c->attention == S2S_LUONG && i < S2S_N_SCORES; i++)
        if (s2s_luong_score_kind[i] == c->score && c->score != SCORE_DOT)
            k += snprintf(buf + k, n - (size_t)k, "-%s", s2s_luong_scores[i]);
    if (c->attention == S2S_LUONG && c->align != S2S_GLOBAL)
        k += snprintf(buf + k, n - (size_t)k, "-%s", s2s_align_names[c->align]);
    if (c->cell != CELL_GRU) snprintf(buf + k, n - (size_t)k, "-%s", cell_names[c->cell]);
    return buf;
}

/* DIR/seq2seq-<stem><kind>.svg in a new block (the caller frees it) */
static char *s2s_svg_path(const char *dir, const char *stem, const char *kind) {
    char *name = xmalloc(strlen(stem) + strlen(kind) + 16);
    sprintf(name, "seq2seq-%s%s.svg", stem, kind);
    char *path = path_join(dir, name);
    free(name);
    return path;
}

/* say that the picture at path was written, and free the name */
static void s2s_wrote(char *path) {
    printf("  wrote %s\n", path);
    free(path);
}

/* --svg: the training loss (above) and what was measured on held-out data
 * (below: nm curves, names mname, in %, of what `metric` names) against
 * the step, as DIR/seq2seq-<stem>-curve.svg, titled title. */
static void s2s_write_curve(const char *dir, const char *stem, const char *title,
                            const Curve *loss, const char *metric, const Curve *m,
                            const char *const *mname, int nm) {
    ChartSeries l = curve_series(loss, "training loss"), ms[4];
    for (int k = 0; k < nm; k++) ms[k] = curve_series(&m[k], mname[k]);
    const ChartPanel p[2] = { { "training loss (log)", 1, &l, 1 }, { metric, 0, ms, nm } };
    char *path = s2s_svg_path(dir, stem, "-curve");
    write_svg_panels(path, title, "training step", 0, p, nm ? 2 : 1);
    s2s_wrote(path);
}


/* A model with everything it trains and is evaluated with: built from the
 * options the same way by the default run, the length experiment and
 * --bench, so their random draws are the same: s2s_session_free(). */
typedef struct {
    S2sModel m;
    S2sRun run;        /* the workspace, for batches up to max(--batch, --beam) rows */
    S2sBatch bt;       /* a training batch of --batch rows */
    S2sData test;      /* the held-out set */
    Rng r;             /* the model's init, then the training batches */
    Rng rt;            /* the held-out set's own stream */
    int *out;          /* (Bmax, Nmax+1) decoded tokens */
} S2sSession;

static void s2s_session_build(S2sSession *s, const S2sOptions *o, const S2sConfig *c) {
    int Tmax, Nmax;
    s2s_task_dims(&o->task, &Tmax, &Nmax);
    const int Bmax = o->batch > o->beam ? o->batch : o->beam;
    rng_seed(&s->r, (uint64_t)o->seed);
    rng_seed(&s->rt, (uint64_t)o->seed ^ 0x5EEDu);
    s2s_build(&s->m, c, &s->r);
    s2s_run_build(&s->run, c, Bmax, Tmax, Nmax + 1);
    s2s_batch_build(&s->bt, o->batch, Tmax, Nmax + 1);
    s2s_data_build(&s->test, o->test, &s->rt, &o->task, S2S_HELDOUT);
    s->out = xmalloc(sizeof(int) * (size_t)(Bmax * (Nmax + 1)));
}

static void s2s_session_free(S2sSession *s) {
    free(s->out);
    s2s_data_free(&s->test); s2s_batch_free(&s->bt); s2s_run_free(&s->run); s2s_free(&s->m);
}

/* Decode held-out example e of d into out (maxlen = d->Nmax + 1) and *len,
 * greedily (beam <= 1) or by beam search, the attention weights of every
 * output step left in r->a.att (s2s_decode_one). bt must hold one row of
 * d's sizes. */
static void s2s_show_decode(int *out, int *len, S2sRun *r, S2sBatch *bt, const S2sModel *m,
                            const S2sData *d, int e, int beam) {
    s2s_decode_one(out, len, r, bt, m, d->src + e * d->Tmax, d->slen[e], beam, d->Nmax + 1);
}

/* The first five held-out examples, decoded one by one as the held-out set
 * was: source -> output, and the target where they differ. */
static void s2s_show_examples(S2sSession *s, const S2sOptions *o) {
    const S2sData *d = &s->test;
    const int *out = s->out;
    char nb[8];
    int len;
    S2sLine l = { NULL, 0, 0 };
    printf("examples (source -> output, target), %s:\n",
           o->beam > 1 ? "beam search decoding" : "greedy decoding");
    for (int e = 0; e < 5 && e < d->n; e++) {
        s2s_show_decode(s->out, &len, &s->run, &s->bt, &s->m, d, e, o->beam);
        const int *tg = d->tgt + e * d->Nmax;
        int ok = len == d->tlen[e];
        for (int i = 0; ok && i < len; i++) ok = out[i] == tg[i];
        s2s_cat(&l, "  %s ", ok ? "ok  " : "MISS");
        for (int i = 0; i < d->slen[e]; i++)
            s2s_cat(&l, "%s ", s2s_token_name(nb, o->task.task, d->src[e * d->Tmax + i]));
        s2s_cat(&l, "->");
        for (int i = 0; i < len; i++) s2s_cat(&l, " %s", s2s_token_name(nb, o->task.task, out[i]));
        if (!ok) {
            s2s_cat(&l, "   (target:");
            for (int i = 0; i < d->tlen[e]; i++)
                s2s_cat(&l, " %s", s2s_token_name(nb, o->task.task, tg[i]));
            s2s_cat(&l, ")");
        }
        s2s_line_end(&l, "         ");
    }
    free(l.s);
}

/* The alignment of held-out example 1 as a heatmap (rows: output tokens
 * and EOS, columns: source tokens), and with --svg as
 * DIR/seq2seq-<stem>-alignment.svg titled by desc. */
static void s2s_show_alignment(S2sSession *s, const S2sOptions *o, const char *desc,
                               const char *stem) {
    const S2sConfig *c = &o->cfg;
    const int maxlen = s->test.Nmax + 1, task = o->task.task;
    int len;
    s2s_show_decode(s->out, &len, &s->run, &s->bt, &s->m, &s->test, 0, o->beam);
    const int R = len < maxlen ? len + 1 : maxlen, C = s->test.slen[0];
    double *W = xcalloc_doubles(R * C);
    char (*names)[8] = xmalloc(sizeof *names * (size_t)(R + C)), nb[8], title[400];
    const char **rows = xmalloc(sizeof *rows * (size_t)(R + C)), **cols = rows + R;
    for (int i = 0; i < R; i++) {
        memcpy(W + i * C, s->run.a.att + i * s->run.a.T, sizeof(double) * (size_t)C);
        rows[i] = strcpy(names[i], s2s_token_name(nb, task, i < len ? s->out[i] : S2S_EOS));
    }
    for (int j = 0; j < C; j++)
        cols[j] = strcpy(names[R + j], s2s_token_name(nb, task, s->test.src[j]));
    const char *rule = c->attention == S2S_LUONG && c->align == S2S_LOCAL_P
                       ? "window softmax times the Gaussian"
                     : c->attention == S2S_LUONG && c->align == S2S_LOCAL_M
                       ? "a row sums to 1, or is all 0 where its window [t-D, t+D] misses the "
                         "source" : "each row sums to 1";
    printf("\n");
    snprintf(title, sizeof title, "alignment of example 1 (row: output token, column: source "
             "token;\n%s)", rule);
    s2s_heatmap(title, W, R, C, rows, cols);
    if (o->svg) {
        char *path = s2s_svg_path(o->svg, stem, "-alignment");
        snprintf(title, sizeof title, "alignment of held-out example 1 (%s): %s", rule, desc);
        const HeatmapSvg hs = { title, "output token", "source token", rows, cols, NULL, 0 };
        write_svg_heatmaps(path, &hs, W, NULL, 1, R, C, 1);
        s2s_wrote(path);
    }
    free(W); free(names); free(rows);
}

/* x (n), named name, of the given shape: its norm, then its first values */
static void s2s_trace_vector(const char *name, const char *shape, const double *x, int n) {
    printf("     %s = %s, norm %.4f\n       first %d:", name, shape, vector_norm(x, n),
           n < 6 ? n : 6);
    for (int j = 0; j < n && j < 6; j++) printf(" %8.4f", x[j]);
    printf("\n");
}

/* the five steps' lines: src (T) names the source positions */
static void s2s_trace_attention(const S2sTrace *tr, const S2sConfig *c,
                                const char *const *src) {
    const int bah = c->attention == S2S_BAHDANAU, He = s2s_enc_width(c);
    char shape[40];
    printf("  step 1. the encoder ran: annotations h_i = enc (T = %d, He = %d), keys Kp\n"
           "  step 2. the query against every h_i; the query is\n     %s\n", tr->T, He,
           bah ? "the state before the step, s_{t-1} (Bahdanau attends first)" :
           "the new state h_t = cell([emb(y_{t-1}); h~_{t-1}], h_{t-1})");
    snprintf(shape, sizeof shape, "%s (H = %d)", bah ? "hd[t-1]" : "hd[t]", c->H);
    s2s_trace_vector(bah ? "s_{t-1}" : "h_t", shape, tr->q, c->H);
    printf("     scores e_{t,i} = %s(query, h_i) over Kp (T = %d, P = %d),\n"
           "     weights a_{t,i} = softmax_i(e_{t,i}) = att[t] (T = %d)\n",
           score_names[s2s_score_kind(c)], tr->T, s2s_key_width(c), tr->T);
    if (tr->pos >= 0)
        printf("     local-%s: only |i - p_t| <= D = %d is scored, p_t = %.4f (numbered as i)%s\n",
               c->align == S2S_LOCAL_P ? "p" : "m", c->window, tr->pos + 1,
               c->align == S2S_LOCAL_P ? ";\n     a_{t,i} is the softmax times "
               "exp(-(i - p_t)^2 / (2 (D/2)^2))" : "");
    printf("       i  source     e_{t,i}    a_{t,i}\n");
    double sum = 0.0;
    for (int i = 0; i < tr->T; i++) {
        sum += tr->att[i];
        if (i < tr->lo || i >= tr->lo + tr->n)
            printf("     %3d  %-8s         --     0.0000  (outside the window)\n", i + 1,
                   src[i]);
        else printf("     %3d  %-8s %10.4f %10.4f\n", i + 1, src[i], tr->e[i], tr->att[i]);
    }
    printf("          sum of the weights %.6f\n", sum);
    printf("  step 3. the context c_t = sum_i a_{t,i} h_i\n");
    snprintf(shape, sizeof shape, "ctx[t] (He = %d)", He);
    s2s_trace_vector("c_t", shape, tr->ctx, He);
}

/* the step after the context, and the output's top 5 (vocab names V tokens) */
static void s2s_trace_output(const S2sTrace *tr, const S2sConfig *c,
                             const char *const *vocab) {
    const int luong = c->attention == S2S_LUONG, He = s2s_enc_width(c);
    char shape[40];
    if (luong) {
        printf("  step 4. the attentional state h~_t = tanh([c_t; h_t] Wc + bc)\n");
        snprintf(shape, sizeof shape, "ht[t] (H = %d)", c->H);
        s2s_trace_vector("h~_t", shape, tr->comb, c->H);
    } else {
        printf("  step 4. c_t enters the cell: s_t = cell([emb(y_{t-1}); c_t], s_{t-1})\n");
        snprintf(shape, sizeof shape, "hd[t] (H = %d)", c->H);
        s2s_trace_vector("s_t", shape, tr->h, c->H);
        snprintf(shape, sizeof shape, "oin[t] (H+He = %d)", c->H + He);
        s2s_trace_vector("[s_t; c_t]", shape, tr->comb, c->H + He);
    }
    printf("  step 5. P(y_t) = softmax(%s Wo + bo), logits[t] (V = %d), top 5:\n    ",
           luong ? "h~_t" : "[s_t; c_t]", c->V);
    int done[5] = { -1, -1, -1, -1, -1 };
    for (int k = 0; k < 5 && k < c->V; k++) {
        int best = -1;
        for (int v = 0; v < c->V; v++) {
            int taken = 0;
            for (int j = 0; j < k; j++) taken |= done[j] == v;
            if (!taken && (best < 0 || tr->p[v] > tr->p[best])) best = v;
        }
        done[k] = best;
        printf("  '%s' %.4f", vocab[best], tr->p[best]);
    }
    printf("\n");
}

/* --trace: print step t of r's last forward (a batch of one: the source
 * src names (T), the output so far out (t tokens), vocab names V tokens),
 * one of `steps` decoder steps; where names the example. */
static void s2s_trace_print(const S2sRun *r, const S2sModel *m, int t, int steps,
                            const char *where, const char *const *src,
                            const int *out, const char *const *vocab) {
    S2sTrace tr;
    s2s_trace_build(&tr, r, m, t);
    char desc[200];
    printf("\n");
    s2s_wrapf("  ", "trace of decoder step t = %d of %d (the middle one) of %s; %s; every "
              "number read from the model's own forward (the names are seq2seq.c's)\n",
              t + 1, steps, where, s2s_describe(desc, sizeof desc, &m->cfg));
    printf("  input y_{t-1} = %s\n", t ? vocab[out[t - 1]] : "<s> (the first step)");
    s2s_trace_attention(&tr, &m->cfg, src);
    s2s_trace_output(&tr, &m->cfg, vocab);
    s2s_trace_free(&tr);
}

/* --trace in the default run: the middle decoder step of held-out example
 * 1, decoded as the held-out set was (greedy, or --beam's teacher-forced
 * pass over the beam's output) */
static void s2s_show_trace(S2sSession *s, const S2sOptions *o) {
    const S2sData *d = &s->test;
    const int V = o->cfg.V, maxlen = d->Nmax + 1;
    int len;
    s2s_show_decode(s->out, &len, &s->run, &s->bt, &s->m, d, 0, o->beam);
    char (*nm)[8] = xmalloc(sizeof *nm * (size_t)(V + d->slen[0]));
    const char **names = xmalloc(sizeof *names * (size_t)(V + d->slen[0]));
    for (int v = 0; v < V; v++) names[v] = s2s_token_name(nm[v], o->task.task, v);
    for (int i = 0; i < d->slen[0]; i++)
        names[V + i] = s2s_token_name(nm[V + i], o->task.task, d->src[i]);
    const int steps = len < maxlen ? len + 1 : maxlen;
    s2s_trace_print(&s->run, &s->m, (steps - 1) / 2, steps, "held-out example 1",
                    names + V, s->out, names);
    free(nm); free(names);
}

/* Train the model of o on its task and report: held-out accuracy, a few
 * decoded examples, the alignment of one as a heatmap; with --svg, the
 * alignment and the training curves as pictures. */
static void s2s_main_run(const S2sOptions *o) {
    const S2sConfig *c = &o->cfg;
    const S2sTask *tk = &o->task;
    char desc[200], stem[160], title[300];
    S2sSession s;
    s2s_session_build(&s, o, c);
    s2s_svg_stem(stem, sizeof stem, s2s_task_names[tk->task], c);
    printf("seq2seq.c: %s, source length %d..%d, seed %d\n", s2s_task_names[tk->task],
           tk->min_len, tk->max_len, o->seed);
    s2s_wrapf("  ", "model: %s; %d parameters\n", s2s_describe(desc, sizeof desc, c),
              s.m.p.num_params);
    s2s_wrapf("  ", "training: %d steps of %d sequences, Adam lr %g (linear decay to lr/10), "
              "clip %g, teacher forcing\n\n", o->train.steps, o->batch, o->train.lr,
              o->train.clip);
    Curve loss = { 0 }, acc_c[2] = { { 0 }, { 0 } };
    const int rec = o->svg != NULL;
    const S2sWatch w = { "training, step", rec ? &loss : NULL, rec ? &acc_c[0] : NULL,
                         rec ? &acc_c[1] : NULL, &s.test, s.out };
    double t0 = seconds();
    s2s_train(&s.m, &s.run, &s.bt, &s.r, tk, &o->train, &w);
    s2s_stop_if_diverged(&s.m);
    double t1 = seconds();
    S2sAccuracy acc = s2s_evaluate(&s.run, &s.bt, &s.m, &s.test, o->beam, s.out, NULL, NULL,
                                   "held-out decode, example");
    fprintf(stderr, "training took %.1f s, the held-out decode %.1f s\n", t1 - t0,
            seconds() - t1);
    printf("\nheld-out (%d sources never trained on), %s decoding:\n", s.test.n,
           o->beam > 1 ? "beam search" : "greedy");
    if (o->beam > 1) printf("  beam width %d\n", o->beam);
    printf("  token accuracy %.2f%%   exact-sequence accuracy %.2f%%\n\n", 100 * acc.tok_acc,
           100 * acc.seq_acc);
    s2s_show_examples(&s, o);
    if (c->attention != S2S_NONE) s2s_show_alignment(&s, o, desc, stem);
    else printf("\n(no attention, so no alignment: the decoder sees only %s)\n",
                s2s_enc_bi(c) ? "[h_T forward; h_1 backward]" : "h_T");
    if (o->trace) s2s_show_trace(&s, o);
    if (rec) {
        static const char *const names[2] = { "exact sequence", "token" };
        snprintf(title, sizeof title, "%s: training loss, and held-out accuracy (greedy, %d "
                 "sources) after every %d steps; %s", s2s_task_names[tk->task], s.test.n,
                 o->train.log_every, desc);
        s2s_write_curve(o->svg, stem, title, &loss, "held-out accuracy (%)", acc_c, names, 2);
    }
    curve_free(&loss); curve_free(&acc_c[0]); curve_free(&acc_c[1]);
    s2s_session_free(&s);
}

/* ========================================================================
 * 14b. real data: train on a pair file, score it, keep it, answer words
 * ======================================================================== */

/* The table opt_fail speaks for: a bad input file or word is refused as a
 * bad option is, "prog: " and the message, then exit 2. */
static const OptTable *s2s_voice(const S2sOptions *o) {
    static OptTable t;
    t.prog = o->prog;
    return &t;
}

/* Read and split --data (the saved model's vocabularies if sv is given). */
static void s2s_read_data(S2sPairData *pd, Pairs *p, const S2sOptions *o) {
    char why[600];
    long len;
    char *text = read_text_file(o->data, 1L << 30, &len, why, sizeof why);
    if (!text) opt_fail(s2s_voice(o), "--data: %s", why);
    if (pairs_parse(p, text, len, why, sizeof why) != 0)
        opt_fail(s2s_voice(o), "--data '%s': %s", o->data, why);
    free(text);
    if (s2s_pair_data_build(pd, p, (uint64_t)o->seed, o->saved, why, sizeof why) != 0)
        opt_fail(s2s_voice(o), "--data '%s': %s", o->data, why);
}

/* The attention of the word just decoded by s2s_decode_one (out, len) as a
 * heatmap, rows the output symbols and </s>, columns the letters; with
 * svg (a path, freed here) an SVG titled desc too. */
static void s2s_word_alignment(const S2sRun *r, const Vocab *sv, const Vocab *tv, const int *src,
                               int slen, const int *out, int len, int maxlen, char *svg,
                               const char *desc) {
    const int R = len < maxlen ? len + 1 : maxlen, C = slen;
    double *W = xcalloc_doubles(R * C);
    const char **rows = xmalloc(sizeof(char *) * (size_t)(R + C)), **cols = rows + R;
    for (int i = 0; i < R; i++) {
        memcpy(W + i * C, r->a.att + i * r->a.T, sizeof(double) * (size_t)C);
        rows[i] = tv->sym[i < len ? out[i] : TOK_EOS];
    }
    for (int j = 0; j < C; j++) cols[j] = sv->sym[src[j]];
    print_heatmap(stdout, "alignment (row: output symbol, column: letter)", W, R, C, rows, cols);
    if (svg) {
        S2sLine t = { NULL, 0, 0 };
        s2s_cat(&t, "alignment of '");
        for (int j = 0; j < C; j++) s2s_cat(&t, "%s", cols[j]);
        s2s_cat(&t, "' (each row sums to 1): %s", desc);
        const HeatmapSvg hs = { t.s, "output symbol", "letter", rows, cols, NULL, 0 };
        write_svg_heatmaps(svg, &hs, W, NULL, 1, R, C, 1);
        s2s_wrote(svg);
        free(t.s);
    }
    free(W); free(rows);
}

/* The test words' PER and WER, greedy and (--beam K) by beam search. */
static void s2s_data_test(S2sRun *r, S2sBatch *bt, const S2sModel *m, const S2sPairData *pd,
                          int beam, int *out) {
    const S2sData *d = &pd->part[SPLIT_TEST];
    printf("test: %d words, each scored against the nearest of its pronunciations\n",
           pd->ngroup[SPLIT_TEST]);
    for (int k = 1; k <= beam; k += beam > 1 ? beam - 1 : 1) {
        const double t0 = seconds();
        const ErrorRate e = s2s_error_rates(r, bt, m, d, pd->group[SPLIT_TEST],
                                            pd->ngroup[SPLIT_TEST], k, out, k == 1
                                            ? "test, greedy, word" : "test, beam, word");
        char head[80], tail[160];                /* one line, or two if that is too wide */
        snprintf(head, sizeof head, "  %-7s PER %6.2f%%  WER %6.2f%%", k == 1 ? "greedy" : "beam",
                 100 * error_rate_per(&e), 100 * error_rate_wer(&e));
        snprintf(tail, sizeof tail, "(%ld edits / %ld phonemes, %d of %d words wrong)", e.edits,
                 e.ref_len, e.wrong, e.words);
        printf("%s%s%s\n", head, strlen(head) + 2 + strlen(tail) > S2S_COLUMNS ? "\n          "
               : "  ", tail);
        if (k > 1) printf("  (beam width %d)\n", k);
        fprintf(stderr, "the %s test decode took %.1f s\n", k == 1 ? "greedy" : "beam",
                seconds() - t0);
    }
}

/* Five test words, predicted (with --beam) beside their pronunciations,
 * then the alignment of the first (--svg: DIR/seq2seq-<stem>-alignment.svg). */
static void s2s_data_examples(S2sRun *r, S2sBatch *bt, const S2sModel *m, const S2sPairData *pd,
                              const S2sOptions *o, int *out, const char *desc, const char *stem) {
    const S2sData *d = &pd->part[SPLIT_TEST];
    const int maxlen = d->Nmax + 1;
    S2sLine l = { NULL, 0, 0 };
    printf("\nexamples (word -> prediction; the dictionary's where it differs):\n");
    for (int g = 0; g < 5 && g < pd->ngroup[SPLIT_TEST]; g++) {
        const int row = pd->group[SPLIT_TEST][g], *src = d->src + row * d->Tmax;
        int len, ok = 0;
        s2s_decode_one(out, &len, r, bt, m, src, d->slen[row], o->beam, maxlen);
        for (int k = row; k < pd->group[SPLIT_TEST][g + 1]; k++)
            ok |= d->tlen[k] == len && !memcmp(d->tgt + k * d->Nmax, out, sizeof(int) * (size_t)len);
        s2s_cat(&l, "  %s ", ok ? "ok  " : "MISS");
        for (int i = 0; i < d->slen[row]; i++) s2s_cat(&l, "%s", pd->src_v.sym[src[i]]);
        s2s_cat(&l, " ->");
        for (int i = 0; i < len; i++) s2s_cat(&l, " %s", pd->tgt_v.sym[out[i]]);
        if (!ok) {
            s2s_cat(&l, "   (dictionary:");
            for (int i = 0; i < d->tlen[row]; i++)
                s2s_cat(&l, " %s", pd->tgt_v.sym[d->tgt[row * d->Nmax + i]]);
            s2s_cat(&l, ")");
        }
        s2s_line_end(&l, "         ");
    }
    free(l.s);
    if (m->cfg.attention == S2S_NONE) return;
    const int row = pd->group[SPLIT_TEST][0];
    int len;
    s2s_decode_one(out, &len, r, bt, m, d->src + row * d->Tmax, d->slen[row], o->beam, maxlen);
    printf("\n");
    s2s_word_alignment(r, &pd->src_v, &pd->tgt_v, d->src + row * d->Tmax, d->slen[row], out, len,
                       maxlen, o->svg ? s2s_svg_path(o->svg, stem, "-alignment") : NULL, desc);
}

/* Train m on --data's training part, logging to --log, and say what was
 * kept; with --svg, the loss and dev PER/WER as DIR/seq2seq-<stem>-curve.svg. */
static void s2s_data_fit(S2sModel *m, S2sRun *r, S2sBatch *bt, const S2sPairData *pd,
                         const S2sOptions *o, int *out, const char *desc, const char *stem) {
    char from[600] = "";
    if (o->resume)
        snprintf(from, sizeof from, " on from step %d of %s (its dev PER the one to beat; "
                 "the learning rate decays again), to step %d in all,", m->step, o->load,
                 o->train.steps);
    else
        snprintf(from, sizeof from, ": up to %d steps", o->train.steps);
    s2s_wrapf("  ", "training%s of %d pairs%s, Adam lr %g (linear decay to lr/10), clip %g; "
              "dev PER every %d steps, the best kept\n", from, o->batch, o->minutes > 0 ?
              " or the --minutes budget" : "", o->train.lr, o->train.clip, o->eval_every);
    OutFile log = { NULL, NULL, NULL };
    if (o->log) {
        log = out_open(o->log);
        fprintf(log.f, "step,train_loss,dev_per,dev_wer,seconds\n");
    }
    Curve loss = { 0 }, rate[2] = { { 0 }, { 0 } };
    const int rec = o->svg != NULL;
    const S2sDataTrain tc = { o->train.steps, o->batch, o->train.lr, o->train.clip, o->minutes,
                              o->eval_every, 100, log.f, rec ? &loss : NULL,
                              rec ? &rate[0] : NULL, rec ? &rate[1] : NULL };
    Rng rng;
    rng_seed(&rng, (uint64_t)o->seed ^ 0xDA7Au);
    s2s_data_skip(bt, &rng, pd, o->batch, m->step);  /* 0 steps unless trained on */
    const S2sDataResult res = s2s_data_train(m, r, bt, &rng, pd, &tc, out);
    if (o->log) out_close(&log);
    s2s_stop_if_diverged(m);
    fprintf(stderr, "training took %.0f s of wall-clock time (%d steps)\n", res.seconds,
            res.steps - res.first);
    if (o->resume)
        s2s_wrapf("  ", "trained on from step %d (dev PER %.2f%%) to step %d; kept step %d, "
                  "the best dev PER: %.2f%% (WER %.2f%%)\n", res.first, 100 * res.first_per,
                  res.steps, res.best_step, 100 * res.per, 100 * res.wer);
    else
        printf("trained %d steps; kept step %d, the best dev PER: %.2f%% (WER %.2f%%)\n",
               res.steps, res.best_step, 100 * res.per, 100 * res.wer);
    if (rec) {
        static const char *const names[2] = { "dev PER", "dev WER" };
        char title[400];
        snprintf(title, sizeof title, "%s: training loss (mean of %d steps), and dev PER and "
                 "WER (greedy) every %d steps; %s", o->data,
                 S2S_CURVE_EVERY, o->eval_every, desc);
        s2s_write_curve(o->svg, stem, title, &loss, "dev error rate (%)", rate, names, 2);
    }
    printf("\n");
    curve_free(&loss); curve_free(&rate[0]); curve_free(&rate[1]);
}

/* Train on --data (or take --load's model), report dev and test, save. */
static void s2s_data_report(S2sModel *m, S2sRun *r, S2sBatch *bt, const S2sPairData *pd,
                            const S2sOptions *o, int *out) {
    char desc[200], stem[200];
    s2s_svg_stem(stem, sizeof stem, o->data, &m->cfg);
    s2s_wrapf("  ", "model: %s; %d parameters\n", s2s_describe(desc, sizeof desc, &m->cfg),
              m->p.num_params);
    if (o->saved && !o->resume) {
        s2s_wrapf("  ", "loaded from %s (%d Adam steps)\n", o->load, m->step);
        const ErrorRate e = s2s_error_rates(r, bt, m, &pd->part[SPLIT_DEV], pd->group[SPLIT_DEV],
                                            pd->ngroup[SPLIT_DEV], 1, out, "dev, greedy, word");
        printf("dev: PER %.2f%%  WER %.2f%% (greedy)\n\n", 100 * error_rate_per(&e),
               100 * error_rate_wer(&e));
    } else {
        s2s_data_fit(m, r, bt, pd, o, out, desc, stem);
    }
    s2s_data_test(r, bt, m, pd, o->beam, out);
    s2s_data_examples(r, bt, m, pd, o, out, desc, stem);
    if (o->save) {
        s2s_save(o->save, m, &pd->src_v, &pd->tgt_v, pd->part[0].Tmax, pd->part[0].Nmax, o->seed);
        s2s_wrapf("  ", "\nsaved the model to %s\n", o->save);
    }
}

static void s2s_main_data(const S2sOptions *o) {
    S2sPairData pd;
    Pairs p;
    s2s_read_data(&pd, &p, o);
    const int Tmax = pd.part[0].Tmax, Nmax = pd.part[0].Nmax;
    int words = 0;
    for (int k = 0; k < 3; k++) words += pd.ngroup[k];
    s2s_wrapf("  ", "seq2seq.c --data %s: %d pairs (%s), %d words; split by seed %d: train "
              "%d pairs (%d words), dev %d words, test %d words\n", o->data, p.n, p.tsv ?
              "tab-separated" : "CMUdict", words, o->seed, pd.part[0].n, pd.ngroup[0],
              pd.ngroup[1], pd.ngroup[2]);
    s2s_wrapf("  ", "vocabularies (%s): %d source characters, %d target symbols, and 4 "
              "specials; dev/test tokens outside them (<unk>): %d source, %d target\n",
           o->saved ? "the loaded model's" : "the training part's", pd.src_v.n - TOK_SPECIALS,
           pd.tgt_v.n - TOK_SPECIALS, pd.unk_src, pd.unk_tgt);
    pairs_free(&p);
    S2sModel m;
    S2sConfig c = o->cfg;
    c.V = pd.tgt_v.n; c.Vsrc = pd.src_v.n;
    const int Bmax = o->batch > o->beam ? o->batch : o->beam;
    if (s2s_acts_estimate(&c, Bmax, Tmax, Nmax + 1) > S2S_MAX_DOUBLES)
        opt_fail(s2s_voice(o), "this model needs more than %.0e doubles of workspace for --batch %d on words "
                   "of %d letters; make --batch, --hidden or --embed smaller", S2S_MAX_DOUBLES,
                   Bmax, Tmax);
    Rng r;
    rng_seed(&r, (uint64_t)o->seed);
    if (o->saved) m = o->saved->m; else s2s_build(&m, &c, &r);
    S2sRun run;
    S2sBatch bt;
    s2s_run_build(&run, &c, Bmax, Tmax, Nmax + 1);
    s2s_batch_build(&bt, Bmax, Tmax, Nmax + 1);
    int *out = xmalloc(sizeof(int) * (size_t)(Bmax * (Nmax + 1)));
    s2s_data_report(&m, &run, &bt, &pd, o, out);
    free(out);
    s2s_run_free(&run); s2s_batch_free(&bt); s2s_pair_data_free(&pd);
    if (!o->saved) s2s_free(&m);
    else { s2s_saved_free(o->saved); free(o->saved); }
}

/* --svg DIR of --load --input WORD: DIR/seq2seq-<checkpoint>-<word>-alignment.svg
 * (a new block: s2s_word_alignment frees it), or NULL without --svg */
static char *s2s_use_svg(const S2sOptions *o) {
    if (!o->svg) return NULL;
    char stem[200], ck[80], w[80];
    snprintf(stem, sizeof stem, "%s-%s", s2s_name_part(ck, sizeof ck, o->load, 1),
             s2s_name_part(w, sizeof w, o->input, 0));
    return s2s_svg_path(o->svg, stem, "-alignment");
}

/* --trace of --load --input WORD: the middle decoder step of the word's
 * decode (run: its last forward, a batch of one) */
static void s2s_word_trace(const S2sRun *run, const S2sSaved *sv, const int *src, int slen,
                           const int *out, int len, int maxlen, const char *word) {
    const char **names = xmalloc(sizeof *names * (size_t)slen);
    for (int i = 0; i < slen; i++) names[i] = sv->src_v.sym[src[i]];
    const int steps = len < maxlen ? len + 1 : maxlen;
    char where[120];
    snprintf(where, sizeof where, "the word '%s'", word);
    s2s_trace_print(run, &sv->m, (steps - 1) / 2, steps, where, names,
                    out, (const char *const *)sv->tgt_v.sym);
    free(names);
}

/* --load without --data: convert --input's word (phonemes and the
 * attention), or each line of stdin ("word  PH O NE MES", a dictionary);
 * a word the model cannot read is refused with the reason, the rest go on. */
static void s2s_main_use(const S2sOptions *o) {
    const S2sSaved *sv = o->saved;
    const S2sModel *m = &sv->m;
    const int Bmax = o->beam, maxlen = sv->Nmax + 1;
    S2sRun run;
    S2sBatch bt;
    s2s_run_build(&run, &m->cfg, Bmax, S2S_DATA_MAX_LEN, maxlen);
    s2s_batch_build(&bt, Bmax, S2S_DATA_MAX_LEN, maxlen);
    int src[S2S_DATA_MAX_LEN], *out = xmalloc(sizeof(int) * (size_t)maxlen), slen, len, bad = 0;
    char line[4096], why[300], desc[200];
    for (int ln = 1; o->input ? ln == 1 : fgets(line, sizeof line, stdin) != NULL; ln++) {
        if (o->input) snprintf(line, sizeof line, "%s", o->input);
        else if (!strchr(line, '\n') && !feof(stdin)) opt_fail(s2s_voice(o), "stdin line %d: longer than "
                 "%d bytes: not a word", ln, (int)sizeof line - 1);
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0] && !o->input) continue;
        if (vocab_encode_input(&sv->src_v, line, src, S2S_DATA_MAX_LEN, &slen, why,
                               sizeof why) != 0) {
            if (o->input) opt_fail(s2s_voice(o), "--input '%s': %s", line, why);
            fprintf(stderr, "%s: stdin line %d: %s; skipped\n", o->prog, ln, why);
            bad = 1;
            continue;
        }
        s2s_decode_one(out, &len, &run, &bt, m, src, slen, o->beam, maxlen);
        printf("%s ", line);
        for (int i = 0; i < len; i++) printf(" %s", sv->tgt_v.sym[out[i]]);
        printf("\n");
        if (o->input && m->cfg.attention != S2S_NONE)
            s2s_word_alignment(&run, &sv->src_v, &sv->tgt_v, src, slen, out, len, maxlen,
                               s2s_use_svg(o), s2s_describe(desc, sizeof desc, &m->cfg));
        if (o->trace) s2s_word_trace(&run, sv, src, slen, out, len, maxlen, o->input);
        fflush(stdout);
    }
    free(out);
    s2s_run_free(&run); s2s_batch_free(&bt);
    s2s_saved_free(o->saved); free(o->saved);
    if (bad) exit(2);
}

/* ========================================================================
 * 15. experiments: the length bottleneck (and how spread out the weights
 *     are), pooling, CNN + attention, the gradient reaching each source
 *     token, exposure bias, how long an RNN and a self-attention layer take
 *     over the same source, and the parameters each decoder needs
 * ======================================================================== */

/* What training one decoder for an experiment gave. */
typedef struct {
    int params;        /* its parameter count */
    int diverged;      /* the step it diverged at, or 0 */
    double div_loss;   /* that step's loss */
    double final;      /* mean training loss of the last window */
    S2sAccuracy acc;   /* held-out, greedy; not measured if it diverged */
} S2sTrained;

/* Train model c with o's task, steps, batch and seed, then decode the
 * held-out set greedily, counting exact matches by source length into ok
 * and n (may be NULL); the training loss per window into loss, and if the
 * model attends the spread of its weights into spread
 * (s2s_attention_spread), each if not NULL. Progress on stderr, named
 * what (the experiment and the model). */
static S2sTrained s2s_train_one(const S2sOptions *o, const S2sConfig *c, int *ok, int *n,
                                Curve *loss, double *spread, const char *what) {
    S2sTrainConfig tr = o->train;
    tr.log_every = 0;
    S2sSession s;
    s2s_session_build(&s, o, c);
    char msg[96];
    snprintf(msg, sizeof msg, "%s, step", what);
    const S2sWatch w = { msg, loss, NULL, NULL, NULL, NULL };
    S2sTrained res = { s.m.p.num_params, 0, 0.0, 0.0, { 0.0, 0.0 } };
    res.final = s2s_train(&s.m, &s.run, &s.bt, &s.r, &o->task, &tr, &w);
    res.diverged = s.m.diverged;
    res.div_loss = s.m.div_loss;
    if (!res.diverged) {
        snprintf(msg, sizeof msg, "%s, held-out example", what);
        res.acc = s2s_evaluate(&s.run, &s.bt, &s.m, &s.test, 1, s.out, ok, n, msg);
        if (spread && c->attention != S2S_NONE)
            s2s_attention_spread(spread, &s.run, &s.bt, &s.m, &s.test);
    }
    s2s_session_free(&s);
    return res;
}

/* o's model as decoder `attention` with a dot score, global, at hidden
 * size H (and score hidden H): the length and parameters experiments' */
static S2sConfig s2s_dot_model(const S2sOptions *o, int attention, int H) {
    S2sConfig c = o->cfg;
    c.attention = attention; c.score = SCORE_DOT; c.align = S2S_GLOBAL;
    if (H != c.H) { c.H = H; c.A = H; }
    return c;
}

/* The end of an experiment's row for a trained model: final loss, held-out
 * exact and token accuracy, or that it diverged */
static void s2s_trained_print(const S2sTrained *q) {
    if (q->diverged)
        printf("diverged at step %d (loss %g): no accuracy\n", q->diverged, q->div_loss);
    else
        printf("%10.4f  %14.1f%%  %6.1f%%\n", q->final, 100 * q->acc.seq_acc,
               100 * q->acc.tok_acc);
    fflush(stdout);
}

/* One model of the length table (attention none, bahdanau or luong with a
 * dot score): trained like the others, then decoded greedily, its exact
 * matches counted by source length into ok and n, the spread of its
 * weights into spread (s2s_attention_spread); its training loss per
 * window into loss if it is not NULL. Prints its row; returns 1 if it
 * diverged. */
static int s2s_length_model(const S2sOptions *o, int attention, int *ok, int *n, Curve *loss,
                            double *spread) {
    const double t0 = seconds();
    const char *name = s2s_attention_names[attention];
    const S2sConfig c = s2s_dot_model(o, attention, o->cfg.H);
    char what[64];
    snprintf(what, sizeof what, "length: %s", name);
    const S2sTrained res = s2s_train_one(o, &c, ok, n, loss, spread, what);
    printf("  %-9s %10d  ", name, res.params);   /* a diverged row says so: no column below */
    s2s_trained_print(&res);
    fprintf(stderr, "  (%s: %.1f s)\n", name, seconds() - t0);
    return res.diverged != 0;
}

/* The table: exact-sequence accuracy of the three models by source length
 * (buckets of 5 when the range is wide); ok, n (3, L1) by length. With
 * --svg, the same as a line chart, DIR/seq2seq-length.svg (a diverged
 * model has no line). */
static void s2s_length_table(const S2sOptions *o, const int *ok, const int *n,
                             const int *diverged, int L1) {
    const S2sTask *tk = &o->task;
    printf("\nheld-out exact-sequence accuracy by source length (%d held-out sources):\n",
           o->test);
    printf("  %-8s | %9s | %9s | %9s | %s\n", "length", "none", "bahdanau", "luong", "n");
    int w = (tk->max_len - tk->min_len + 1) > 12 ? 5 : 1;   /* bucket width */
    Curve cv[3] = { { 0 }, { 0 }, { 0 } };
    for (int lo = tk->min_len; lo <= tk->max_len; lo += w) {
        int hi = lo + w - 1 < tk->max_len ? lo + w - 1 : tk->max_len, cnt = 0;
        char col[3][16];                       /* each model's cell: a share, or "diverged" */
        for (int k = 0; k < 3; k++) {
            int o2 = 0, n2 = 0;
            for (int L = lo; L <= hi; L++) { o2 += ok[k * L1 + L]; n2 += n[k * L1 + L]; }
            snprintf(col[k], sizeof col[k], "%8.1f%%", n2 ? 100.0 * o2 / n2 : 0.0);
            if (diverged[k]) snprintf(col[k], sizeof col[k], "%9s", "diverged");
            else { cnt = n2; if (n2) curve_add(&cv[k], 0.5 * (lo + hi), 100.0 * o2 / n2); }
        }
        char lab[16];
        if (lo == hi) snprintf(lab, sizeof lab, "%d", lo);
        else snprintf(lab, sizeof lab, "%d-%d", lo, hi);
        printf("  %-8s | %s | %s | %s | %d\n", lab, col[0], col[1], col[2], cnt);
    }
    if (o->svg) {
        ChartSeries s[3];
        int ns = 0;
        for (int k = 0; k < 3; k++)
            if (!diverged[k]) s[ns++] = curve_series(&cv[k], s2s_attention_names[k]);
        char title[200], xa[64], *path = s2s_svg_path(o->svg, "length", "");
        snprintf(title, sizeof title, "held-out exact-sequence accuracy by source length: "
                 "%s, %d steps of %d each, %s cells, hidden %d%s", s2s_task_names[tk->task],
                 o->train.steps, o->batch, cell_names[o->cfg.cell], o->cfg.H,
                 ns ? "" : " (every model diverged: no lines)");
        snprintf(xa, sizeof xa, w > 1 ? "source length (centre of a bucket of %d)"
                 : "source length", w);
        const ChartSvg cs = { title, xa, "exact-sequence accuracy (%)", 0, 0 };
        write_svg_chart(path, &cs, s, ns);
        s2s_wrote(path);
    }
    for (int k = 0; k < 3; k++) curve_free(&cv[k]);
}

/* The second table: how spread out the attention models' weights are, by
 * source length (the length table's buckets); st (3, L1, SPREAD_N) from
 * s2s_attention_spread, model 0 (none) unused. */
static void s2s_spread_table(const S2sOptions *o, const double *st, const int *diverged,
                             int L1) {
    const S2sTask *tk = &o->task;
    printf("\nattention weights per decoder step, teacher-forced over the held-out targets:\n"
           "entropy in nats (uniform over the T source positions: log T), share = entropy /\n"
           "log T (1 = uniform, 0 = one position), max = the largest weight:\n");
    printf("  %-8s | %7s | %23s | %23s |\n", "", "uniform", "bahdanau", "luong");
    printf("  %-8s | %7s | %7s %7s %7s | %7s %7s %7s | %s\n", "length", "log T", "entropy",
           "share", "max", "entropy", "share", "max", "steps");
    const int w = (tk->max_len - tk->min_len + 1) > 12 ? 5 : 1;   /* as the length table */
    for (int lo = tk->min_len; lo <= tk->max_len; lo += w) {
        const int hi = lo + w - 1 < tk->max_len ? lo + w - 1 : tk->max_len;
        double sum[3][SPREAD_N] = { { 0 } }, share_n[3] = { 0 };
        for (int k = S2S_BAHDANAU; k <= S2S_LUONG; k++)
            for (int L = lo; L <= hi; L++) {
                for (int f = 0; f < SPREAD_N; f++) sum[k][f] += st[(k * L1 + L) * SPREAD_N + f];
                if (L >= 2) share_n[k] += st[(k * L1 + L) * SPREAD_N + SPREAD_STEPS];
            }
        const int ref = diverged[S2S_BAHDANAU] ? S2S_LUONG : S2S_BAHDANAU;
        const double steps = sum[ref][SPREAD_STEPS];
        char lab[16], col[3][32];
        if (lo == hi) snprintf(lab, sizeof lab, "%d", lo);
        else snprintf(lab, sizeof lab, "%d-%d", lo, hi);
        for (int k = S2S_BAHDANAU; k <= S2S_LUONG; k++) {
            const double *q = sum[k], ns = q[SPREAD_STEPS] > 0 ? q[SPREAD_STEPS] : 1;
            if (diverged[k]) snprintf(col[k], sizeof col[k], "%23s", "diverged");
            else if (share_n[k] > 0)
                snprintf(col[k], sizeof col[k], "%7.3f %7.3f %7.3f", q[SPREAD_ENTROPY] / ns,
                         q[SPREAD_SHARE] / share_n[k], q[SPREAD_MAX] / ns);
            else snprintf(col[k], sizeof col[k], "%7.3f %7s %7.3f", q[SPREAD_ENTROPY] / ns,
                          "--", q[SPREAD_MAX] / ns);
        }
        printf("  %-8s | %7.3f | %s | %s | %.0f\n", lab,
               sum[ref][SPREAD_LOGT] / (steps > 0 ? steps : 1), col[1], col[2], steps);
    }
}

/* --svg: the training loss of each model of an experiment, against the
 * step (nc curves named names; a diverged model's curve ends where it did)
 * as DIR/seq2seq-<experiment>-curve.svg, in np panels of per[k] curves each */
static void s2s_experiment_curves(const S2sOptions *o, const char *experiment, const Curve *c,
                                  const char *const *names, const int *per, const char *const *
                                  panel, int np) {
    ChartSeries s[8];
    ChartPanel p[2];
    int k = 0;
    for (int q = 0; q < np; q++) {
        p[q] = (ChartPanel){ panel[q], 1, s + k, per[q] };
        for (int i = 0; i < per[q]; i++, k++) s[k] = curve_series(&c[k], names[k]);
    }
    char title[200], *path = s2s_svg_path(o->svg, experiment, "-curve");
    snprintf(title, sizeof title, "the %s experiment: training loss of each model (mean of "
             "each window), %d steps of %d, seed %d", experiment, o->train.steps, o->batch,
             o->seed);
    write_svg_panels(path, title, "training step", 0, p, np);
    s2s_wrote(path);
}

/* Train none / bahdanau / luong with the same sizes and step budget on
 * reverse over a range of lengths; print exact-sequence accuracy by length. */
static void s2s_experiment_length(const S2sOptions *o) {
    const S2sTask *tk = &o->task;
    const int L1 = tk->max_len + 1;            /* counts indexed by source length */
    int *ok = xmalloc(sizeof(int) * (size_t)(6 * L1)), *n = ok + 3 * L1, diverged[3];
    memset(ok, 0, sizeof(int) * (size_t)(6 * L1));
    double *spread = xcalloc_doubles(3 * L1 * SPREAD_N);   /* (3, L1, SPREAD_N) */
    s2s_wrapf("  ", "the bottleneck experiment: %s, source lengths %d..%d, %d steps of %d, %s "
              "cells, hidden %d, embedding %d, vocabulary %d, seed %d; none: a fixed context "
              "(no attention), bahdanau: additive attention, luong: dot score, global\n\n",
              s2s_task_names[tk->task], tk->min_len, tk->max_len, o->train.steps, o->batch,
              cell_names[o->cfg.cell], o->cfg.H, o->cfg.E, o->cfg.V, o->seed);
    printf("  %-9s %10s  %10s  %15s  %7s\n", "model", "parameters", "final loss",
           "held-out exact", "tokens");
    Curve loss[3] = { { 0 }, { 0 }, { 0 } };
    for (int k = S2S_NONE; k <= S2S_LUONG; k++)
        diverged[k] = s2s_length_model(o, k, ok + k * L1, n + k * L1, o->svg ? &loss[k] : NULL,
                                       spread + k * L1 * SPREAD_N);
    s2s_length_table(o, ok, n, diverged, L1);
    if (!diverged[S2S_BAHDANAU] || !diverged[S2S_LUONG]) s2s_spread_table(o, spread, diverged, L1);
    if (o->svg) {
        static const char *const panel[1] = { "training loss (log)" };
        const int per[1] = { 3 };
        s2s_experiment_curves(o, "length", loss, s2s_attention_names, per, panel, 1);
    }
    for (int k = 0; k < 3; k++) curve_free(&loss[k]);
    free(ok); free(spread);
}

/* ---- the parameters experiment: at equal accuracy, who needs fewer? ------
 * Each decoder at a ladder of hidden sizes (the embedding stays --embed),
 * the same task, steps, batch and seed; then, per decoder, the smallest
 * parameter count whose held-out exact accuracy reaches the target. */
#define S2S_PARAMS_TARGET 0.90   /* the held-out exact accuracy to reach */

static void s2s_experiment_params(const S2sOptions *o) {
    const S2sTask *tk = &o->task;
    S2sTrained res[3][S2S_PARAMS_NH];
    s2s_wrapf("  ", "the parameters experiment: %s, source length %d, %d steps of %d, %s "
              "cells, embedding %d, vocabulary %d, seed %d; none, bahdanau (additive score "
              "of width H) and luong (dot, global) at hidden sizes H = %d..%d; held-out "
              "exact accuracy (%d sources, greedy)\n\n", s2s_task_names[tk->task],
              tk->max_len, o->train.steps, o->batch, cell_names[o->cfg.cell], o->cfg.E,
              o->cfg.V, o->seed, s2s_params_hidden[0], s2s_params_hidden[S2S_PARAMS_NH - 1],
              o->test);
    printf("  %-9s %6s %10s  %10s  %15s  %7s\n", "model", "hidden", "parameters",
           "final loss", "held-out exact", "tokens");
    for (int k = S2S_NONE; k <= S2S_LUONG; k++)
        for (int h = 0; h < S2S_PARAMS_NH; h++) {
            const double t0 = seconds();
            const S2sConfig c = s2s_dot_model(o, k, s2s_params_hidden[h]);
            char what[64];
            snprintf(what, sizeof what, "params: %s", s2s_attention_names[k]);
            res[k][h] = s2s_train_one(o, &c, NULL, NULL, NULL, NULL, what);
            printf("  %-9s %6d %10d  ", s2s_attention_names[k], s2s_params_hidden[h],
                   res[k][h].params);
            s2s_trained_print(&res[k][h]);
            fprintf(stderr, "  (%s, hidden %d: %.1f s)\n", s2s_attention_names[k],
                    s2s_params_hidden[h], seconds() - t0);
        }
    printf("\nthe fewest parameters that reach %.0f%% held-out exact:\n",
           100 * S2S_PARAMS_TARGET);
    for (int k = S2S_NONE; k <= S2S_LUONG; k++) {
        int best = -1, top = -1;          /* the smallest that reaches it; the most accurate */
        for (int h = 0; h < S2S_PARAMS_NH; h++) {
            const S2sTrained *q = &res[k][h];
            if (q->diverged) continue;
            if (top < 0 || q->acc.seq_acc > res[k][top].acc.seq_acc) top = h;
            if (q->acc.seq_acc >= S2S_PARAMS_TARGET &&
                (best < 0 || q->params < res[k][best].params)) best = h;
        }
        if (best >= 0)
            printf("  %-9s %10d parameters (hidden %d, %.1f%%)\n", s2s_attention_names[k],
                   res[k][best].params, s2s_params_hidden[best],
                   100 * res[k][best].acc.seq_acc);
        else if (top >= 0)
            printf("  %-9s not reached (best %.1f%% at hidden %d, %d parameters)\n",
                   s2s_attention_names[k], 100 * res[k][top].acc.seq_acc,
                   s2s_params_hidden[top], res[k][top].params);
        else printf("  %-9s not reached (every size diverged)\n", s2s_attention_names[k]);
    }
}

/* ---- the classifiers of the pooling tables ---------------------------------
 * The RNN classifier of section 8 or the CNN of section 9, with its
 * activation blocks: the pooling and CNN experiments train and evaluate
 * every model through these four functions. */
typedef struct {
    int rnn;                         /* 1: the RNN classifier, 0: the CNN */
    int C;                           /* classes */
    PoolConfig pc; PoolModel pm; PoolActs pa, pg;
    CnnConfig cc;  CnnModel cm;  CnnActs ca, cg;
    double *amem, *gmem;             /* activations and their gradients, up to Bmax rows */
    S2sParams *p;                    /* the model's parameter blocks */
} S2sClassifier;

/* Build the RNN classifier of pc (cc NULL) or the CNN of cc (pc NULL),
 * initialised from r, with room for batches up to Bmax rows of length T. */
static void s2s_classifier_build(S2sClassifier *k, const PoolConfig *pc, const CnnConfig *cc,
                                 Rng *r, int Bmax, int T) {
    memset(k, 0, sizeof *k);
    k->rnn = pc != NULL;
    int cap;
    if (k->rnn) {
        k->pc = *pc; k->C = pc->C;
        pool_build(&k->pm, pc, r);
        cap = pool_acts_bind(NULL, NULL, pc, Bmax, T);
        k->p = &k->pm.p;
    } else {
        k->cc = *cc; k->C = cc->C;
        cnn_build(&k->cm, cc, r);
        cap = cnn_acts_bind(NULL, NULL, cc, Bmax, T);
        k->p = &k->cm.p;
    }
    k->amem = xcalloc_doubles(cap);
    k->gmem = xcalloc_doubles(cap);
}

static void s2s_classifier_free(S2sClassifier *k) {
    free(k->amem); free(k->gmem);
    if (k->rnn) pool_free(&k->pm); else cnn_free(&k->cm);
}

/* The mean loss of labels lab (B) given tokens tok (T,B); the activations
 * stay in k (probs and the pooling weights att, NULL without attention). */
static double s2s_classifier_forward(S2sClassifier *k, const int *tok, const int *lab, int B,
                                     int T, const double **probs, const double **att) {
    double loss;
    if (k->rnn) {
        pool_acts_bind(&k->pa, k->amem, &k->pc, B, T);
        loss = pool_forward(&k->pa, tok, lab, &k->pm);
        *probs = k->pa.probs; *att = k->pa.att;
    } else {
        cnn_acts_bind(&k->ca, k->amem, &k->cc, B, T);
        loss = cnn_forward(&k->ca, tok, lab, &k->cm);
        *probs = k->ca.probs; *att = k->ca.att;
    }
    return loss;
}

enum { S2S_POOL_TASK, S2S_CNN_TASK };   /* which task a classifier trains on */

/* Train k for --steps on fresh batches of --batch rows drawn from rb, of
 * the pooling task or the CNN task, its progress on stderr named what, and
 * the mean loss of each tenth of the steps into loss if it is not NULL.
 * Returns the step it diverged at (0: none); *tail_loss = the mean loss of
 * the last tail steps. */
static int s2s_classifier_train(S2sClassifier *k, Rng *rb, int task, int tail,
                                double *tail_loss, int *btok, int *blab, const S2sOptions *o,
                                const char *what, Curve *loss) {
    const int T = o->task.max_len, B = o->batch, steps = o->train.steps;
    const int window = steps >= 10 ? steps / 10 : 1;
    const double *probs, *att;
    double wsum = 0.0;
    Progress pr;
    progress_begin(&pr, what, steps);
    *tail_loss = 0.0;
    for (int s = 1; s <= steps; s++) {
        if (task == S2S_CNN_TASK) cnn_task_batch(btok, blab, rb, B, T, S2S_TRAINING);
        else pool_task_batch(btok, blab, rb, B, T, k->C, S2S_TRAINING);
        memset(k->p->grads, 0, sizeof(double) * (size_t)k->p->num_params);
        const double l = s2s_classifier_forward(k, btok, blab, B, T, &probs, &att);
        if (s > steps - tail) *tail_loss += l / tail;
        wsum += l;
        if (loss && (s % window == 0 || s == steps)) {
            curve_add(loss, s, wsum / (s % window ? s % window : window));
            wsum = 0.0;
        }
        if (k->rnn) {
            pool_acts_bind(&k->pg, k->gmem, &k->pc, B, T);
            pool_backward(&k->pm.g, &k->pg, &k->pa, btok, blab, &k->pm);
        } else {
            cnn_acts_bind(&k->cg, k->gmem, &k->cc, B, T);
            cnn_backward(&k->cm.g, &k->cg, &k->ca, btok, blab, &k->cm);
        }
        double gn;
        if (s2s_clip_adam(k->p, s, s2s_lr_at(o->train.lr, s, steps), o->train.clip, l, k->C,
                          &gn))
            return s;
        progress_step(&pr, s, NULL);
    }
    return 0;
}

/* How many of the n held-out examples tok (T,n), lab (n) k classifies
 * right, chunk rows at a time (btok: room for chunk rows; a single chunk is
 * read in place). The pooling weights of example ex go to att_ex if k
 * attends (T of them for the RNN, N = T-K+1 for the CNN); *attends says. */
static int s2s_classifier_eval(S2sClassifier *k, const int *tok, const int *lab, int n, int T,
                               int chunk, int *btok, int ex, double *att_ex, int *attends) {
    int ok = 0;
    *attends = 0;
    for (int start = 0; start < n; start += chunk) {
        const int nb = n - start < chunk ? n - start : chunk;
        const int *bt = tok;
        if (nb < n) {
            for (int t = 0; t < T; t++)
                memcpy(btok + t * nb, tok + t * n + start, sizeof(int) * (size_t)nb);
            bt = btok;
        }
        const double *pr, *att;
        s2s_classifier_forward(k, bt, lab + start, nb, T, &pr, &att);
        for (int b = 0; b < nb; b++) ok += argmax(pr + b * k->C, k->C) == lab[start + b];
        *attends = att != NULL;
        if (att && att_ex && start <= ex && ex < start + nb) {
            const int W = k->rnn ? T : k->ca.N;
            memcpy(att_ex, att + (ex - start) * W, sizeof(double) * (size_t)W);
        }
    }
    return ok;
}

/* ---- the pooling experiment ---------------------------------------------- */

/* --svg: an experiment's held-out accuracy as bars, DIR/seq2seq-<experiment>.svg
 * (groups: the poolings; a series per model kind, NAN where it has none) */
static void s2s_experiment_bars(const S2sOptions *o, const char *experiment, const char *title,
                                const char *const *group, int ng, const char *const *series,
                                int ns, const double *acc) {
    char *path = s2s_svg_path(o->svg, experiment, "");
    const ChartSvg cs = { title, "pooling", "held-out accuracy (%)", 0, 0 };
    write_svg_bars(path, &cs, group, ng, series, ns, acc);
    s2s_wrote(path);
}

/* --svg: the pooling table as bars, DIR/seq2seq-pooling.svg, and the three
 * models' training loss, DIR/seq2seq-pooling-curve.svg (C classes) */
static void s2s_pooling_pictures(const S2sOptions *o, int C, const double *acc,
                                 const Curve *loss) {
    static const char *const series[1] = { "held-out accuracy" };
    static const char *const panel[1] = { "training loss (log)" };
    const int per[1] = { 3 };
    char title[200];
    snprintf(title, sizeof title, "the pooling experiment: classify %d symbols by the one at "
             "position 2 (chance %.0f%%), %s cells, hidden %d, %d steps", o->task.max_len,
             100.0 / C, cell_names[o->cfg.cell], o->cfg.H, o->train.steps);
    s2s_experiment_bars(o, "pooling", title, pool_names, 3, series, 1, acc);
    s2s_experiment_curves(o, "pooling", loss, pool_names, per, panel, 1);
}

/* Last vs mean vs attention pooling on the pooling task (section 8). */
static void s2s_experiment_pooling(const S2sOptions *o) {
    const int T = o->task.max_len, C = 4, B = o->batch, NT = 1000;
    s2s_wrapf("  ", "the pooling experiment: classify a sequence of %d symbols (of %d) by its "
              "symbol at position 2; %s cells, hidden %d, %d steps of %d, seed %d; chance is "
              "%.0f%%\n\n", T, C, cell_names[o->cfg.cell], o->cfg.H, o->train.steps, B, o->seed,
              100.0 / C);
    int *tok = xmalloc(sizeof(int) * (size_t)(T * NT)), *lab = xmalloc(sizeof(int) * NT);
    int *btok = xmalloc(sizeof(int) * (size_t)(T * B)), *blab = xmalloc(sizeof(int) * (size_t)B);
    const int tail = o->train.steps < 50 ? o->train.steps : 50;  /* loss: mean of these */
    double acc[3] = { NAN, NAN, NAN };
    Curve loss[3] = { { 0 }, { 0 }, { 0 } };
    printf("  %-9s  %8s  %13s  %s\n", "pooling", "held-out", "training loss",
           "mean weight on position 2");
    for (int p = POOL_LAST; p <= POOL_ATTENTION; p++) {
        PoolConfig c = { p, o->cfg.cell, S2S_FIRST + C, o->cfg.E, o->cfg.H, o->cfg.H, C };
        Rng r, rt, rb;   /* init, held-out set, training batches: one stream each, so */
        rng_seed(&r, (uint64_t)o->seed);              /* every pooling sees the same  */
        rng_seed(&rt, (uint64_t)o->seed ^ 0x5EEDu);   /* batches whatever its size    */
        rng_seed(&rb, (uint64_t)o->seed ^ 0xBA7Cu);
        pool_task_batch(tok, lab, &rt, NT, T, C, S2S_HELDOUT);
        S2sClassifier k;
        s2s_classifier_build(&k, &c, NULL, &r, NT, T);
        char what[48];
        snprintf(what, sizeof what, "pooling: %s, step", pool_names[p]);
        double t0 = seconds(), l;
        const int div = s2s_classifier_train(&k, &rb, S2S_POOL_TASK, tail, &l, btok, blab, o,
                                             what, o->svg ? &loss[p] : NULL);
        if (div) {                                        /* a row that says so */
            printf("  %-9s  diverged at step %d: no accuracy\n", pool_names[p], div);
            s2s_classifier_free(&k);
            continue;
        }
        int attends;                                      /* the held-out set, one batch */
        const int ok = s2s_classifier_eval(&k, tok, lab, NT, T, NT, btok, -1, NULL, &attends);
        double w1 = 0.0;
        for (int b = 0; attends && b < NT; b++) w1 += k.pa.att[b * T + 1] / NT;
        acc[p] = 100.0 * ok / NT;
        printf("  %-9s  %7.1f%%  %13.3f", pool_names[p], acc[p], l);
        if (attends) printf("  %.2f (uniform 1/%d = %.2f)", w1, T, 1.0 / T);
        printf("\n");
        fflush(stdout);
        fprintf(stderr, "  (%s: %.1f s)\n", pool_names[p], seconds() - t0);
        s2s_classifier_free(&k);
    }
    printf("  (training loss: the mean of the last %d steps)\n", tail);
    if (o->svg) s2s_pooling_pictures(o, C, acc, loss);
    for (int p = 0; p < 3; p++) curve_free(&loss[p]);
    free(tok); free(lab); free(btok); free(blab);
}

/* ---- the CNN experiment -------------------------------------------------- */

/* The held-out example whose pooling weights the CNN experiment shows: the
 * first of n (tok (T,n)) whose two pairs both end K or more positions
 * before the question, so no window holds a pair and the question
 * (*found = 1); else the first (*found = 0). */
static int s2s_cnn_pick_example(const int *tok, int n, int T, int K, int *found) {
    for (int e = 0; e < n; e++) {
        int far = 1;   /* marker at p, letter at p + 1, question at T - 1 */
        for (int t = 0; t < T; t++) {
            int sym = tok[t * n + e] - S2S_FIRST;
            if ((sym == CNN_MARK_X || sym == CNN_MARK_Y) && (T - 1) - (t + 1) < K) far = 0;
        }
        if (far) { *found = 1; return e; }
    }
    *found = 0;
    return 0;
}

/* Model v (0..7) of the CNN table: the RNN with last / mean / attention
 * pooling, then the CNN with each pooling of section 9. Trains it on the
 * held-out-free batches of its own stream (its loss curve into loss, if
 * not NULL), prints its row, its held-out accuracy (%) to *acc (NAN if it
 * diverged); if it attends, its pooling weights of example ex go to heat
 * (T, a CNN window n under column n + (K-1)/2) and its row name to name
 * (48 chars): returns 1. */
static int s2s_cnn_model(const S2sOptions *o, int v, const int *tok, const int *lab, int NT,
                         int *btok, int *blab, int ex, double *heat, char *name, double *acc,
                         Curve *loss) {
    const int T = o->task.max_len, C = CNN_CLASSES, B = o->batch, V = S2S_FIRST + CNN_SYMBOLS;
    const int K = o->kernel, F = o->channels, H = o->cfg.H, E = o->cfg.E, cell = o->cfg.cell;
    const char *cn = cell_names[cell];
    const int rnn = v <= POOL_ATTENTION, p = rnn ? v : v - POOL_ATTENTION - 1;
    PoolConfig pc = { p, cell, V, E, H, H, C };
    CnnConfig cc = { p, cell, V, E, K, F, H, F, C };
    Rng r, rb;                                     /* init; training batches */
    rng_seed(&r, (uint64_t)o->seed);
    rng_seed(&rb, (uint64_t)o->seed ^ 0xBA7Cu);
    S2sClassifier k;
    s2s_classifier_build(&k, rnn ? &pc : NULL, rnn ? NULL : &cc, &r, B, T);
    const double t0 = seconds();
    double unused;
    char what[48];
    snprintf(what, sizeof what, "cnn: model %d/8 (%s), step", v + 1, rnn ? cn : "cnn");
    const int div = s2s_classifier_train(&k, &rb, S2S_CNN_TASK, 0, &unused, btok, blab, o,
                                         what, loss);
    const double secs = seconds() - t0;
    char pool[48];
    if (!rnn && p == CNN_ATT_RNN) snprintf(pool, sizeof pool, "attention, query = %s h_T", cn);
    else if (!rnn && p == CNN_MAX_RNN) snprintf(pool, sizeof pool, "max + %s h_T (control)", cn);
    else snprintf(pool, sizeof pool, "%s", rnn ? pool_names[p] : cnn_pool_names[p]);
    *acc = NAN;
    if (div) {                                     /* a row that says so, no weights */
        printf("  %-5s | %-28s | diverged at step %d\n", rnn ? cn : "cnn", pool, div);
        s2s_classifier_free(&k);
        return 0;
    }
    double *att_ex = xcalloc_doubles(T);           /* held-out, B examples at a time */
    int attends;
    const int ok = s2s_classifier_eval(&k, tok, lab, NT, T, B, btok, ex, att_ex, &attends);
    if (attends) {
        const int W = rnn ? T : T - K + 1, shift = rnn ? 0 : (K - 1) / 2;
        for (int t = 0; t < W; t++) heat[t + shift] = att_ex[t];
        snprintf(name, 48, "%s, %s", rnn ? cn : "cnn",
                 rnn ? "attention" : p == CNN_ATT_RNN ? "query h_T" : "learned query");
    }
    *acc = 100.0 * ok / NT;
    printf("  %-5s | %-28s | %7.1f%% | %10d | %5.1f s\n", rnn ? cn : "cnn", pool, *acc,
           k.p->num_params, secs);
    fflush(stdout);
    free(att_ex);
    s2s_classifier_free(&k);
    return attends;
}

/* The pooling weights of held-out example ex (nh rows of heat (nh,T)) as a
 * heatmap turned on its side to fit 80 columns (a row per position, a
 * column per model), and with --svg as DIR/seq2seq-cnn-weights.svg (a row
 * per model). */
static void s2s_cnn_show_weights(const S2sOptions *o, const int *tok, const int *lab, int NT,
                                 int ex, int found, const double *heat, int nh,
                                 const char *const *rows) {
    const int T = o->task.max_len, K = o->kernel;
    char (*pos)[16] = xmalloc(sizeof *pos * (size_t)T), num[3][4], where[96] = "", title[300];
    const char **plab = xmalloc(sizeof *plab * (size_t)(2 * T)), **chars = plab + T, *mlab[3];
    double *side = xcalloc_doubles(T * (nh ? nh : 1));     /* heat transposed: (T, nh) */
    for (int t = 0; t < T; t++) {
        snprintf(pos[t], sizeof pos[t], "%2d %c", t + 1, cnn_symbol(tok[t * NT + ex]));
        plab[t] = pos[t]; chars[t] = pos[t] + 3;
        for (int m = 0; m < nh; m++) side[t * nh + m] = heat[m * T + t];
    }
    for (int m = 0; m < nh; m++) { snprintf(num[m], sizeof num[m], "%d", m + 1); mlab[m] = num[m]; }
    if (K % 2 == 0)
        snprintf(where, sizeof where, "; K = %d is even, so its true centre is half a position "
                 "further on", K);
    if (found)
        snprintf(title, sizeof title, "the pooling weights of held-out example %d, the first "
                 "whose pairs end %d or more positions before the question", ex + 1, K);
    else
        snprintf(title, sizeof title, "the pooling weights of held-out example 1 (no held-out "
                 "example has its pairs end %d or more positions before the question)", K);
    s2s_wrapf("", "\n%s (label %c; a CNN window is drawn at its centre position%s):\n", title,
              cnn_symbol_chars[lab[ex]], where);
    for (int m = 0; m < nh; m++) printf("  column %d: %s\n", m + 1, rows[m]);
    if (nh) s2s_heatmap("row: position and input token, column: model; each column sums to 1",
                        side, T, nh, plab, mlab);
    else printf("  (every attending model diverged: no weights to show)\n");
    if (o->svg && nh) {
        char *path = s2s_svg_path(o->svg, "cnn", "-weights");
        snprintf(title, sizeof title, "pooling weights of held-out example %d (label %c; a CNN "
                 "window under column n + (K-1)/2%s), each row sums to 1", ex + 1,
                 cnn_symbol_chars[lab[ex]], K % 2 ? "" : ", rounded down: K even");
        const HeatmapSvg hs = { title, "model", "input token", rows, chars, NULL, 0 };
        write_svg_heatmaps(path, &hs, heat, NULL, 1, nh, T, 1);
        s2s_wrote(path);
    }
    free(pos); free(plab); free(side);
}

/* --svg: the CNN table's held-out accuracy as bars, DIR/seq2seq-cnn.svg
 * (a group per pooling, a bar for the RNN and one for the CNN where it has
 * that pooling), and the eight models' training loss, DIR/seq2seq-cnn-curve.svg */
static void s2s_cnn_pictures(const S2sOptions *o, const double *acc, const Curve *loss) {
    static const char *const group[6] = { "last", "mean", "max", "attn, learned q",
                                          "attn, q = h_T", "max + h_T" };
    static const int where[8] = { 0, 1, 3, 2, 1, 3, 4, 5 };   /* model v's group */
    const char *series[2] = { cell_names[o->cfg.cell], "cnn" }, *names[8], *panel[2];
    double v[12];
    for (int i = 0; i < 12; i++) v[i] = NAN;
    for (int m = 0; m < 8; m++) v[where[m] * 2 + (m > POOL_ATTENTION)] = acc[m];
    char title[240], pl[2][48];
    snprintf(title, sizeof title, "the CNN + attention experiment: held-out accuracy of each "
             "pooling (chance %.0f%%; h_T: the %s's last state), %d steps", 100.0 / CNN_CLASSES,
             series[0], o->train.steps);
    s2s_experiment_bars(o, "cnn", title, group, 6, series, 2, v);
    for (int m = 0; m < 8; m++) names[m] = m <= POOL_ATTENTION ? pool_names[m] : group[where[m]];
    snprintf(pl[0], sizeof pl[0], "%s: training loss (log)", series[0]);
    snprintf(pl[1], sizeof pl[1], "cnn: training loss (log)");
    panel[0] = pl[0]; panel[1] = pl[1];
    const int per[2] = { 3, 5 };
    s2s_experiment_curves(o, "cnn", loss, names, per, panel, 2);
}

/* Every pooling of sections 8 and 9 on the CNN task (cnn_task_batch): the
 * RNN classifier with last / mean / attention pooling, the CNN with max /
 * mean / attention pooling, the attention's query learned or the h_T of an
 * RNN over the same input, and a control that hands the same RNN's h_T to
 * the classifier beside max pooling (the RNN's parameters, no attention).
 * Same held-out set, same training batches (their own generator, untouched
 * by the model's init), steps and learning rate for all. One table (times
 * on stdout: it is an experiment), then the pooling weights of the
 * attention-pooled models for one held-out example (and --svg). */
static void s2s_experiment_cnn(const S2sOptions *o) {
    enum { NV = 8, NT = 1000 };
    const int T = o->task.max_len, C = CNN_CLASSES, B = o->batch;
    s2s_wrapf("", "the CNN + attention experiment: %d symbols hold \"x\" then a letter, \"y\" "
              "then another, and end with the question X (which letter followed x?) or Y; %d "
              "classes, chance %.0f%%, without the question 50%%\n", T, C, 100.0 / C);
    s2s_wrapf("", "%s: hidden %d; cnn: kernel %d, %d channels, ReLU; embedding %d; %d steps "
              "of %d, lr %g, seed %d\n\n", cell_names[o->cfg.cell], o->cfg.H, o->kernel,
              o->channels, o->cfg.E, o->train.steps, B, o->train.lr, o->seed);
    int *tok = xmalloc(sizeof(int) * (size_t)(T * NT)), *lab = xmalloc(sizeof(int) * NT);
    int *btok = xmalloc(sizeof(int) * (size_t)(T * B)), *blab = xmalloc(sizeof(int) * (size_t)B);
    Rng rt;
    rng_seed(&rt, (uint64_t)o->seed ^ 0x5EEDu);        /* the held-out set's own stream */
    cnn_task_batch(tok, lab, &rt, NT, T, S2S_HELDOUT);
    int found;
    const int ex = s2s_cnn_pick_example(tok, NT, T, o->kernel, &found);
    double *heat = xcalloc_doubles(3 * T), acc[NV];    /* (3,T): the attending models */
    char names[3][48];
    const char *rows[3] = { names[0], names[1], names[2] };
    Curve loss[NV];
    memset(loss, 0, sizeof loss);
    int nh = 0;
    printf("  %-5s | %-28s | %8s | %10s | %s\n", "model", "pooling", "held-out", "parameters",
           "time");
    for (int v = 0; v < NV; v++)
        nh += s2s_cnn_model(o, v, tok, lab, NT, btok, blab, ex, heat + nh * T, names[nh],
                            &acc[v], o->svg ? &loss[v] : NULL);
    s2s_cnn_show_weights(o, tok, lab, NT, ex, found, heat, nh, rows);
    if (o->svg) s2s_cnn_pictures(o, acc, loss);
    for (int v = 0; v < NV; v++) curve_free(&loss[v]);
    free(heat); free(tok); free(lab); free(btok); free(blab);
}

/* ---- the gradient experiment: how much of the loss reaches each source token ----
 * For rnn, gru and lstm cells, each without attention and with Bahdanau's:
 * the norm of d(-log P(y | x)) / d x_i, the gradient of one sequence's loss
 * at the embedding of source token i, by its distance T - i from the end of
 * the source (0: the last token, the one next to the decoder), averaged over
 * the rows of one held-out batch, at initialisation and after a short
 * training. Without attention every path from x_i to the loss runs through
 * the T - i encoder steps after it; attention adds a path of a few steps. */

enum { S2S_GRAD_MODELS = 6 };   /* 3 cells x (none, bahdanau) */

/* g (T) += the gradient reaching each source token of s's held-out
 * examples 1..B: s2s_gradient_by_distance */
static void s2s_gradient_measure(double *g, S2sSession *s, int B) {
    s2s_gradient_by_distance(g, &s->m, &s->run, &s->bt, &s->test, 0, B);
}

/* Model k (cell k / 2, attention none or bahdanau by k % 2): g0, g1 (T) the
 * gradients at initialisation and after o's training; loss its training
 * curve or NULL. Returns the step it diverged at, 0 if none. */
static int s2s_gradient_model(const S2sOptions *o, int k, double *g0, double *g1,
                              Curve *loss) {
    S2sConfig c = o->cfg;
    c.cell = k / 2;
    c.attention = k % 2 ? S2S_BAHDANAU : S2S_NONE;
    S2sTrainConfig tr = o->train;
    tr.log_every = 0;
    S2sSession s;
    s2s_session_build(&s, o, &c);
    s2s_gradient_measure(g0, &s, o->batch);
    char what[64];
    snprintf(what, sizeof what, "gradient: %s %s, step", cell_names[c.cell],
             s2s_attention_names[c.attention]);
    const S2sWatch w = { what, loss, NULL, NULL, NULL, NULL };
    s2s_train(&s.m, &s.run, &s.bt, &s.r, &o->task, &tr, &w);
    const int diverged = s.m.diverged;
    s2s_gradient_measure(g1, &s, o->batch);
    s2s_session_free(&s);
    return diverged;
}

/* One table of the six models' gradients g (6, T), when names when. */
static void s2s_gradient_table(const double *g, int T, const char *when) {
    printf("\n|dL/dx_i|, L = -log P(y|x), %s, by distance T - i from the end:\n", when);
    printf("  %8s", "distance");
    for (int k = 0; k < S2S_GRAD_MODELS; k++)
        printf(" %10s", k % 2 ? "+bahdanau" : cell_names[k / 2]);
    printf("\n");
    for (int d = 0; d < T; d++) {
        if (!(d < 4 || d % 4 == 0 || d == T - 1)) continue;
        printf("  %8d", d);
        for (int k = 0; k < S2S_GRAD_MODELS; k++) printf(" %10.2e", g[k * T + d]);
        printf("\n");
    }
    printf("  %8s", "far/near");
    for (int k = 0; k < S2S_GRAD_MODELS; k++)
        printf(" %10.2e", g[k * T] > 0 ? g[k * T + T - 1] / g[k * T] : 0.0);
    printf("\n");
}

/* --svg: the two tables as one picture, DIR/seq2seq-gradient.svg: two
 * panels (at initialisation, after training) on one distance axis, log y */
static void s2s_gradient_chart(const S2sOptions *o, const double *g, int T) {
    Curve cv[2 * S2S_GRAD_MODELS];
    ChartSeries s[2 * S2S_GRAD_MODELS];
    char names[S2S_GRAD_MODELS][32], title[300], y0[64], y1[64];
    for (int k = 0; k < 2 * S2S_GRAD_MODELS; k++) {
        const int m = k % S2S_GRAD_MODELS;
        snprintf(names[m], sizeof names[m], "%s, %s", cell_names[m / 2],
                 m % 2 ? "bahdanau" : "no attention");
        cv[k] = (Curve){ 0 };
        for (int d = 0; d < T; d++) curve_add(&cv[k], d, g[k * T + d]);
        s[k] = curve_series(&cv[k], names[m]);
    }
    snprintf(y0, sizeof y0, "|dL/dx_i| at init (log)");
    snprintf(y1, sizeof y1, "after %d steps (log)", o->train.steps);
    const ChartPanel p[2] = { { y0, 1, s, S2S_GRAD_MODELS },
                              { y1, 1, s + S2S_GRAD_MODELS, S2S_GRAD_MODELS } };
    snprintf(title, sizeof title, "the gradient of one sequence's loss at each source "
             "token's embedding, mean over %d held-out sources: %s, length %d, hidden %d, "
             "seed %d", o->batch, s2s_task_names[o->task.task], T, o->cfg.H, o->seed);
    char *path = s2s_svg_path(o->svg, "gradient", "");
    write_svg_panels(path, title, "distance T - i from the end of the source", 0, p, 2);
    s2s_wrote(path);
    for (int k = 0; k < 2 * S2S_GRAD_MODELS; k++) curve_free(&cv[k]);
}

/* rnn / gru / lstm, without and with attention: the gradient reaching each
 * source token, before and after training; the tables, and with --svg the
 * chart and the training curves. */
static void s2s_experiment_gradient(const S2sOptions *o) {
    const int T = o->task.max_len, n = S2S_GRAD_MODELS;
    double *g = xcalloc_doubles(2 * n * T);     /* (2, 6, T): before, after training */
    Curve loss[S2S_GRAD_MODELS];
    s2s_wrapf("  ", "the gradient experiment: %s, source length %d, hidden %d, embedding "
              "%d, vocabulary %d, seed %d; each model measured on the same %d held-out "
              "sources at initialisation, then after %d training steps of %d (Adam lr %g); "
              "+bahdanau: the same cell with additive attention (and a bidirectional "
              "encoder)\n", s2s_task_names[o->task.task], T, o->cfg.H, o->cfg.E, o->cfg.V,
              o->seed, o->batch, o->train.steps, o->batch, o->train.lr);
    for (int k = 0; k < n; k++) {
        loss[k] = (Curve){ 0 };
        const int dv = s2s_gradient_model(o, k, g + k * T, g + (n + k) * T,
                                          o->svg ? &loss[k] : NULL);
        if (dv) printf("  (%s%s diverged at step %d: measured after training where it "
                       "stopped)\n", cell_names[k / 2], k % 2 ? " +bahdanau" : "", dv);
    }
    s2s_gradient_table(g, T, "at initialisation");
    char when[64];
    snprintf(when, sizeof when, "after %d steps", o->train.steps);
    s2s_gradient_table(g + n * T, T, when);
    if (o->svg) {
        static const char *const panel[1] = { "training loss (log)" };
        const char *names[S2S_GRAD_MODELS] = { "rnn", "rnn +bahdanau", "gru", "gru +bahdanau",
                                               "lstm", "lstm +bahdanau" };
        const int per[1] = { S2S_GRAD_MODELS };
        s2s_gradient_chart(o, g, T);
        s2s_experiment_curves(o, "gradient", loss, names, per, panel, 1);
    }
    for (int k = 0; k < n; k++) curve_free(&loss[k]);
    free(g);
}

/* ---- the exposure experiment: what teacher forcing costs, what decoding picks ----
 * Training reads the true y_<t (teacher forcing); greedy decoding reads
 * its own outputs, so after its first mistake every later step sees a
 * history it never trained on (exposure bias). Four models, attention none
 * and o's decoder, each trained N/4 and N steps: on the same held-out
 * sources, the token error at each output position teacher-forced and
 * free running, and how free running fares after its first error. Then
 * the N-step attention model decodes each source K times by greedy, beam
 * and sampling at three temperatures: what each rule returns. */

enum { S2S_EXPO_MODELS = 4 };   /* (none, o's attention) x (N/4, N steps) */

/* the steps model k trains: N/4 (k even, at least 1) or N */
static int s2s_exposure_steps(const S2sOptions *o, int k) {
    const int quarter = o->train.steps / 4;
    return k % 2 ? o->train.steps : quarter > 0 ? quarter : 1;
}

/* Model k of the exposure experiment (attention none for k < 2, else o's)
 * trained s2s_exposure_steps(o, k) steps into s, which the caller frees
 * (s2s_session_free); its counts into x; loss its training curve or NULL.
 * Returns the step it diverged at, 0 if none. */
static int s2s_exposure_model(S2sSession *s, const S2sOptions *o, int k, S2sExposure *x,
                              Curve *loss) {
    S2sConfig c = o->cfg;
    if (k < 2) c.attention = S2S_NONE;
    S2sTrainConfig tr = o->train;
    tr.steps = s2s_exposure_steps(o, k);
    tr.log_every = 0;
    s2s_session_build(s, o, &c);
    char what[64];
    snprintf(what, sizeof what, "exposure: %s %d, step", s2s_attention_names[c.attention],
             tr.steps);
    const S2sWatch w = { what, loss, NULL, NULL, NULL, NULL };
    s2s_train(&s->m, &s->run, &s->bt, &s->r, &o->task, &tr, &w);
    int *tf_best = xmalloc(sizeof(int) * (size_t)(s->run.Bmax * s->run.Smax));
    memset(x, 0, sizeof *x);
    s2s_exposure_count(x, &s->run, &s->bt, &s->m, &s->test, s->out, tf_best);
    free(tf_best);
    return s->m.diverged;
}

/* a count as a percentage of n, or "-" when n is 0, right-aligned in w */
static const char *s2s_pct(char *buf, size_t nb, long k, long n, int w) {
    if (n > 0) snprintf(buf, nb, "%*.1f%%", w - 1, 100.0 * k / n);
    else snprintf(buf, nb, "%*s", w, "-");
    return buf;
}

/* One model's table: the error at each output position t (1-based, EOS
 * last), teacher-forced and free running, the share of rows wrong by t,
 * and the rows already wrong before t: how many, their error at t free
 * running and teacher-forced. */
static void s2s_exposure_table(const S2sExposure *x, const char *name) {
    char a[16], b[16], c[16], d[16], e[16];
    long wrong = 0;
    printf("\n%s: token error at output position t\n", name);
    printf("            teacher     free  wrong by t |  rows already wrong before t:\n");
    printf("         t   forced  running  (all rows) |   rows     free   forced\n");
    for (int t = 0; t < x->P; t++) {
        char lab[16];
        if (t == x->P - 1) snprintf(lab, sizeof lab, "EOS");
        else snprintf(lab, sizeof lab, "%d", t + 1);
        wrong += x->first[t];
        printf("  %8s %s %s  %s | %6ld %s %s\n", lab, s2s_pct(a, sizeof a, x->tf[t], x->n[t], 8),
               s2s_pct(b, sizeof b, x->fr[t], x->n[t], 8), s2s_pct(c, sizeof c, wrong, x->n[t], 10),
               x->late[t], s2s_pct(d, sizeof d, x->fr_late[t], x->late[t], 8),
               s2s_pct(e, sizeof e, x->tf_late[t], x->late[t], 8));
    }
}

/* The four models side by side: token error over every position,
 * teacher-forced and free running, the gap (points) and ratio between
 * them, and free running's exact sequences. */
static void s2s_exposure_summary(const S2sExposure *x, char names[][48]) {
    printf("\nover every position (token error) and whole sequences:\n");
    printf("  %-20s %8s %8s %8s %7s %8s\n", "", "teacher", "free", "gap", "ratio", "exact");
    printf("  %-20s %8s %8s %8s %7s %8s\n", "model", "forced", "running", "(points)", "",
           "(free)");
    for (int k = 0; k < S2S_EXPO_MODELS; k++) {
        long n = 0, tf = 0, fr = 0, wrong = 0;
        for (int t = 0; t < x[k].P; t++) {
            n += x[k].n[t]; tf += x[k].tf[t]; fr += x[k].fr[t]; wrong += x[k].first[t];
        }
        const long rows = x[k].P ? x[k].n[0] : 0;
        char ratio[16];
        if (tf > 0) snprintf(ratio, sizeof ratio, "%7.2f", (double)fr / tf);
        else snprintf(ratio, sizeof ratio, "%7s", "-");
        const double ptf = 100.0 * tf / (n ? n : 1), pfr = 100.0 * fr / (n ? n : 1);
        printf("  %-20s %7.1f%% %7.1f%% %8.1f %s %7.1f%%\n", names[k], ptf, pfr, pfr - ptf, ratio,
               100.0 * (rows - wrong) / (rows ? rows : 1));
    }
}

/* ---- the diversity table: K decodes of each source by each rule ---------- */

typedef struct {
    const char *name;     /* as printed */
    int beam;             /* > 1: beam search of this width */
    double temperature;   /* > 0: sampling at it; else greedy (when beam <= 1) */
} S2sRule;

typedef struct {
    double distinct;  /* mean distinct outputs per source (of K) */
    double exact;     /* share of the n K outputs equal to their target */
    double any;       /* share of sources with at least one exact output */
    double logp;      /* mean log P(output | x) under the model */
    double len;       /* mean output length (tokens before EOS) */
} S2sDiversity;

/* Rows start .. start+B-1 of s's held-out set (put in s->bt) decoded by
 * rule u: out (B, maxlen), len (B), logp (B) = log P(out | x). */
static void s2s_rule_decode(int *out, int *len, double *logp, S2sSession *s, const S2sRule *u,
                            int start, int B, Rng *rng) {
    const S2sData *d = &s->test;
    const int maxlen = d->Nmax + 1;
    s2s_batch_from_data(&s->bt, d, start, B);
    if (u->beam > 1) {
        for (int b = 0; b < B; b++)
            len[b] = s2s_beam_search(out + b * maxlen, &logp[b], &s->run, &s->m,
                                     d->src + (start + b) * d->Tmax, d->slen[start + b], u->beam,
                                     maxlen);
        return;
    }
    if (u->temperature > 0) s2s_sample_decode(out, len, &s->run, &s->m, &s->bt, maxlen,
                                              u->temperature, rng);
    else s2s_greedy_decode(out, len, &s->run, &s->m, &s->bt, maxlen);
    s2s_decoded_logp(logp, &s->run, out, len, B, maxlen, s->m.cfg.V, s->run.beam);
}

/* do a (la tokens) and b (lb) say the same? */
static int s2s_same_output(const int *a, int la, const int *b, int lb) {
    if (la != lb) return 0;
    for (int i = 0; i < la; i++) if (a[i] != b[i]) return 0;
    return 1;
}

/* v += the figures of the B sources from start of s's held-out set (sums,
 * not yet means), their K outputs each in out (B, K, maxlen), len (B, K) */
static void s2s_diversity_add(S2sDiversity *v, const S2sData *d, int start, int B, int K,
                              const int *out, const int *len) {
    const int maxlen = d->Nmax + 1;
    for (int b = 0; b < B; b++) {
        const int e = start + b;
        int hit = 0;
        for (int k = 0; k < K; k++) {
            const int i = b * K + k, *y = out + i * maxlen;
            const int ok = s2s_same_output(y, len[i], d->tgt + e * d->Nmax, d->tlen[e]);
            int seen = 0;
            for (int j = 0; j < k && !seen; j++)
                seen = s2s_same_output(y, len[i], out + (b * K + j) * maxlen, len[b * K + j]);
            v->distinct += !seen; v->exact += ok; v->len += len[i]; hit |= ok;
        }
        v->any += hit;
    }
}

/* The figures of rule u over s's held-out set, each source decoded K
 * times, a batch of sources at a time (sampling draws from a stream
 * seeded by seed). */
static S2sDiversity s2s_diversity(S2sSession *s, const S2sRule *u, int K, uint64_t seed) {
    const S2sData *d = &s->test;
    const int n = d->n, maxlen = d->Nmax + 1;
    const int Bc = s->bt.Bcap < s->run.Bmax ? s->bt.Bcap : s->run.Bmax;
    int *out = xmalloc(sizeof(int) * (size_t)(Bc * K * maxlen));
    int *len = xmalloc(sizeof(int) * (size_t)(Bc * K));
    double *logp = xcalloc_doubles(Bc);
    S2sDiversity v = { 0, 0, 0, 0, 0 };
    Rng rng;
    rng_seed(&rng, seed);
    for (int start = 0; start < n; start += Bc) {
        const int B = n - start < Bc ? n - start : Bc;
        for (int k = 0; k < K; k++) {
            s2s_rule_decode(s->out, s->run.lens, logp, s, u, start, B, &rng);
            for (int b = 0; b < B; b++) {
                len[b * K + k] = s->run.lens[b];
                memcpy(out + (b * K + k) * maxlen, s->out + b * maxlen,
                       sizeof(int) * (size_t)maxlen);
                v.logp += logp[b];
            }
        }
        s2s_diversity_add(&v, d, start, B, K, out, len);
    }
    v.distinct /= n; v.exact /= (double)n * K; v.any /= n; v.logp /= (double)n * K;
    v.len /= (double)n * K;
    free(out); free(len); free(logp);
    return v;
}

enum { S2S_RULES = 5 };   /* greedy, beam, sampling at three temperatures */

/* Each rule's figures for model s into v (S2S_RULES), progress on stderr
 * named what. */
static void s2s_diversity_rules(S2sSession *s, const S2sOptions *o, const char *what,
                                const S2sRule *rule, S2sDiversity *v) {
    Progress pr;
    progress_begin(&pr, what, S2S_RULES);
    for (int u = 0; u < S2S_RULES; u++) {
        progress_step(&pr, u, rule[u].name);
        v[u] = s2s_diversity(s, &rule[u], o->samples,
                             (uint64_t)o->seed ^ 0xD1CEu ^ (uint64_t)u << 20);
    }
    progress_step(&pr, S2S_RULES, NULL);
}

/* The diversity table of the model named name: v (S2S_RULES) by rule. */
static void s2s_diversity_table(const S2sOptions *o, const char *name, const S2sRule *rule,
                                const S2sDiversity *v) {
    char any[16];
    snprintf(any, sizeof any, "any of %d", o->samples);
    printf("\n%s, each held-out source decoded %d times:\n", name, o->samples);
    printf("  %-14s %9s %7s %9s %12s %7s\n", "rule", "distinct", "exact", any, "log P(y|x)",
           "length");
    for (int u = 0; u < S2S_RULES; u++)
        printf("  %-14s %9.2f %6.1f%% %8.1f%% %12.3f %7.2f\n", rule[u].name, v[u].distinct,
               100 * v[u].exact, 100 * v[u].any, v[u].logp, v[u].len);
}

/* --svg: DIR/seq2seq-exposure.svg, the error by position of the four
 * models x: a panel per decoder, teacher-forced and free running after
 * N/4 and N steps */
static void s2s_exposure_chart(const S2sOptions *o, const S2sExposure *x) {
    Curve cv[2 * S2S_EXPO_MODELS];
    ChartSeries s[2 * S2S_EXPO_MODELS];
    char sn[2 * S2S_EXPO_MODELS][64], title[300], y[2][64];
    for (int k = 0; k < 2 * S2S_EXPO_MODELS; k++) {
        const S2sExposure *e = &x[k / 2];
        snprintf(sn[k], sizeof sn[k], "%s, %d steps", k % 2 ? "free running" : "teacher-forced",
                 s2s_exposure_steps(o, k / 2));
        cv[k] = (Curve){ 0 };
        for (int t = 0; t < e->P; t++)
            curve_add(&cv[k], t + 1, 100.0 * (k % 2 ? e->fr[t] : e->tf[t]) /
                                     (e->n[t] ? e->n[t] : 1));
        s[k] = curve_series(&cv[k], sn[k]);
    }
    snprintf(y[0], sizeof y[0], "no attention: token error (%%)");
    snprintf(y[1], sizeof y[1], "%s: token error (%%)", s2s_attention_names[o->cfg.attention]);
    const ChartPanel pn[2] = { { y[0], 0, s, 4 }, { y[1], 0, s + 4, 4 } };
    snprintf(title, sizeof title, "exposure bias: token error at each output position, the "
             "decoder reading the true y_<t (teacher-forced) or its own outputs (free "
             "running), %d held-out sources: %s, length %d, %s cells, hidden %d, seed %d",
             o->test, s2s_task_names[o->task.task], x[0].P - 1, cell_names[o->cfg.cell],
             o->cfg.H, o->seed);
    char *path = s2s_svg_path(o->svg, "exposure", "");
    write_svg_panels(path, title, "output position t (the last one is EOS)", 0, pn, 2);
    s2s_wrote(path);
    for (int k = 0; k < 2 * S2S_EXPO_MODELS; k++) curve_free(&cv[k]);
}

/* --svg: DIR/seq2seq-exposure-diversity.svg, the two attention models'
 * tables v (2, S2S_RULES) as bars: exact-sequence accuracy and distinct
 * outputs (as a share of K) by rule */
static void s2s_diversity_chart(const S2sOptions *o, const S2sRule *rule,
                                const S2sDiversity *v) {
    const char *group[S2S_RULES], *series[4];
    char sn[4][64], title[300];
    double bars[4 * S2S_RULES];
    for (int q = 0; q < 4; q++) {
        snprintf(sn[q], sizeof sn[q], "%s, %d steps", q < 2 ? "exact (%)" : "distinct (% of K)",
                 s2s_exposure_steps(o, q % 2));
        series[q] = sn[q];
    }
    for (int u = 0; u < S2S_RULES; u++) {
        group[u] = rule[u].name;
        for (int q = 0; q < 2; q++) {
            const S2sDiversity *d = &v[q * S2S_RULES + u];
            bars[4 * u + q] = 100 * d->exact;
            bars[4 * u + 2 + q] = 100 * d->distinct / o->samples;
        }
    }
    snprintf(title, sizeof title, "what each decoding rule returns: %s attention after %d and "
             "%d steps, each of %d held-out sources decoded K = %d times (%s, length %d)",
             s2s_attention_names[o->cfg.attention], s2s_exposure_steps(o, 0), o->train.steps,
             o->test, o->samples, s2s_task_names[o->task.task], o->task.max_len);
    char *path = s2s_svg_path(o->svg, "exposure-diversity", "");
    const ChartSvg cs = { title, "decoding rule", "exact or distinct (%)", 0, 0 };
    write_svg_bars(path, &cs, group, S2S_RULES, series, 4, bars);
    s2s_wrote(path);
}

/* none and o's attention, after N/4 and N steps: exposure bias by output
 * position; then the two attention models' outputs by decoding rule. */
static void s2s_experiment_exposure(const S2sOptions *o) {
    S2sExposure x[S2S_EXPO_MODELS];
    S2sDiversity v[2 * S2S_RULES];                       /* the two attention models */
    Curve loss[S2S_EXPO_MODELS];
    char names[S2S_EXPO_MODELS][48], beam[32], what[256];
    snprintf(beam, sizeof beam, "beam %d", o->beam);
    const S2sRule rule[S2S_RULES] = { { "greedy", 1, 0 }, { beam, o->beam, 0 },
        { "sample T=0.5", 1, 0.5 }, { "sample T=1.0", 1, 1.0 }, { "sample T=1.5", 1, 1.5 } };
    s2s_wrapf("  ", "the exposure experiment: %s, length %d, %s cells, hidden %d, embedding "
              "%d, vocabulary %d, seed %d; no attention and %s, each trained %d and %d steps "
              "of %d (Adam lr %g), measured on the same %d held-out sources\n",
              s2s_task_names[o->task.task], o->task.max_len, cell_names[o->cfg.cell], o->cfg.H,
              o->cfg.E, o->cfg.V, o->seed, s2s_attention_names[o->cfg.attention],
              s2s_exposure_steps(o, 0), o->train.steps, o->batch, o->train.lr, o->test);
    for (int k = 0; k < S2S_EXPO_MODELS; k++) {
        S2sSession s;
        snprintf(names[k], sizeof names[k], "%s, %d steps",
                 k < 2 ? "none" : s2s_attention_names[o->cfg.attention], s2s_exposure_steps(o, k));
        loss[k] = (Curve){ 0 };
        const int dv = s2s_exposure_model(&s, o, k, &x[k], o->svg ? &loss[k] : NULL);
        if (dv) printf("  (%s diverged at step %d: measured where it stopped)\n", names[k], dv);
        s2s_exposure_table(&x[k], names[k]);
        snprintf(what, sizeof what, "exposure: %s %d, rule", s2s_attention_names[o->cfg.attention],
                 s2s_exposure_steps(o, k));
        if (k >= 2) s2s_diversity_rules(&s, o, what, rule, v + (k - 2) * S2S_RULES);
        s2s_session_free(&s);
    }
    s2s_exposure_summary(x, names);
    for (int k = 2; k < S2S_EXPO_MODELS; k++)
        s2s_diversity_table(o, names[k], rule, v + (k - 2) * S2S_RULES);
    if (o->svg) {
        static const char *const panel[1] = { "training loss (log)" };
        const char *cn[S2S_EXPO_MODELS] = { names[0], names[1], names[2], names[3] };
        const int per[1] = { S2S_EXPO_MODELS };
        s2s_exposure_chart(o, x);
        s2s_diversity_chart(o, rule, v);
        s2s_experiment_curves(o, "exposure", loss, cn, per, panel, 1);
    }
    for (int k = 0; k < S2S_EXPO_MODELS; k++) curve_free(&loss[k]);
}

/* ---- parallel: an RNN encoder against a self-attention layer --------------
 * The same source, n positions of width H, batch 8: a GRU reads them in n
 * steps, each of which needs the state the one before it made, so however
 * many cores there are the chain is n steps long; one self-attention layer
 * (attention.c's mha_forward) projects every position at once, scores every
 * pair at once and averages: 4 dependent steps whatever n is (Q, K, V; the
 * scores; softmax and the weighted sum; the output projection). What each
 * does per position differs too: the GRU O(H^2) work, attention O(n H) more.
 * The times are of the forward pass alone, random weights, median of 5. */
enum { S2S_PAR_B = 8, S2S_PAR_HEADS = 4, S2S_PAR_SIZES = 6 };
static const int s2s_par_n[S2S_PAR_SIZES] = { 16, 32, 64, 128, 256, 512 };

/* ms of one GRU encoder pass and one self-attention layer over n positions */
static void s2s_parallel_time(int n, int H, Rng *r, double *ms_rnn, double *ms_att) {
    const int B = S2S_PAR_B, G = cell_gates(CELL_GRU) * H, heads = S2S_PAR_HEADS;
    const int nw = 2 * H * G + 2 * G + mha_num_params(H), cs = B * cell_cache_size(CELL_GRU, H);
    double *w = xcalloc_doubles(nw), *x = xcalloc_doubles(n * B * H);
    double *h = xcalloc_doubles(n * B * H + B * H + n * cs + n * B * H);
    double *zero = h + n * B * H, *k = zero + B * H, *out = k + n * cs;
    double *cmem = xcalloc_doubles(mha_cache_size(B, n, n, H, heads));
    rng_fill_normal(r, w, nw, 1.0 / sqrt((double)H));
    rng_fill_normal(r, x, n * B * H, 1.0);
    const S2sCell cl = { CELL_GRU, H, H, w, w + H * G, w + 2 * H * G, w + 2 * H * G + G };
    Mha m;
    MhaCache mc;
    mha_bind(&m, w + 2 * H * G + 2 * G, H);
    mha_cache_bind(&mc, cmem, B, n, n, H, heads);
    double t[2][5];
    for (int rep = 0; rep < 5; rep++) {
        double t0 = seconds();
        s2s_rnn_forward(h, NULL, k, zero, x, NULL, &cl, n, B, RNN_LEFT_TO_RIGHT);  /* (n,B,H) */
        t[0][rep] = 1e3 * (seconds() - t0);
        t0 = seconds();
        mha_forward(out, &mc, x, x, &m, NULL, NOT_CAUSAL, B, n, n, H, heads);      /* (B,n,H) */
        t[1][rep] = 1e3 * (seconds() - t0);
    }
    *ms_rnn = median(t[0], 5);
    *ms_att = median(t[1], 5);
    free(w); free(x); free(h); free(cmem);
}

static void s2s_parallel_chart(const S2sOptions *o, const double *ms) {
    Curve cv[2] = { { 0 }, { 0 } };
    for (int i = 0; i < S2S_PAR_SIZES; i++) {
        curve_add(&cv[0], s2s_par_n[i], ms[2 * i]);
        curve_add(&cv[1], s2s_par_n[i], ms[2 * i + 1]);
    }
    const ChartSeries sr[2] = { curve_series(&cv[0], "GRU encoder (n dependent steps)"),
                                curve_series(&cv[1], "self-attention layer (4 steps)") };
    char title[300];
    snprintf(title, sizeof title, "one forward pass over n positions, batch %d, width %d, "
             "%d thread(s): ms, median of 5 (this machine's times: compare the slopes)",
             S2S_PAR_B, o->cfg.H, threads());
    const ChartSvg c = { title, "positions n", "ms per forward pass", 1, 1 };
    char *path = s2s_svg_path(o->svg, "parallel", "");
    write_svg_chart(path, &c, sr, 2);
    s2s_wrote(path);
    curve_free(&cv[0]); curve_free(&cv[1]);
}

static void s2s_experiment_parallel(const S2sOptions *o) {
    const int H = o->cfg.H;
    printf("parallel vs sequential: one forward pass over n positions, batch %d, width %d,\n"
           "  random weights; a GRU encoder against one self-attention layer (%d heads);\n"
           "  %d thread(s) (make omp builds ./seq2seq-omp, which uses every core)\n\n",
           S2S_PAR_B, H, S2S_PAR_HEADS, threads());
    printf("     n | dependent steps | ms, median of 5     | GRU / attention\n"
           "       |   GRU attention |     GRU   attention |\n");
    Rng r;
    rng_seed(&r, (uint64_t)o->seed);
    double ms[2 * S2S_PAR_SIZES];
    Progress pr;
    progress_begin(&pr, "parallel: sizes", S2S_PAR_SIZES);
    for (int i = 0; i < S2S_PAR_SIZES; i++) {
        const int n = s2s_par_n[i];
        s2s_parallel_time(n, H, &r, &ms[2 * i], &ms[2 * i + 1]);
        printf("  %4d | %5d %9d | %7.3f %11.3f | %8.2f\n", n, n, 4, ms[2 * i], ms[2 * i + 1],
               ms[2 * i] / ms[2 * i + 1]);
        progress_step(&pr, i + 1, NULL);
    }
    printf("\n  The GRU's chain of dependent steps grows with n, and no core can shorten\n"
           "  it; attention's stays at 4, but its work grows as n^2. Compare how the\n"
           "  two columns grow, here and in ./seq2seq-omp --experiment parallel.\n"
           "  (The times are this machine's: on stdout in this experiment only.)\n");
    if (o->svg) s2s_parallel_chart(o, ms);
}

/* ---- the encoder: direction and depth apart from the decoder ----------
 * Every decoder over a one- and a two-direction encoder, of one and two
 * layers, with the same sizes, task, steps and seed: what the direction
 * does is then the difference between two rows of one decoder. Luong uses
 * the general score throughout (a bidirectional encoder's keys are 2H wide,
 * which dot cannot compare with a query of H). */

/* Train one model of the experiment and print its row. */
static void s2s_encoder_row(const S2sOptions *o, int attention, int bi, int layers) {
    S2sConfig c = o->cfg;
    c.attention = attention; c.align = S2S_GLOBAL;
    c.score = attention == S2S_LUONG ? SCORE_GENERAL : SCORE_DOT;
    c.encoder = bi ? S2S_ENC_BI : S2S_ENC_UNI; c.layers = layers;
    const double t0 = seconds();
    char what[80];
    snprintf(what, sizeof what, "encoder: %s, %s, %d layer(s)", s2s_attention_names[attention],
             bi ? "bi" : "uni", layers);
    const S2sTrained res = s2s_train_one(o, &c, NULL, NULL, NULL, NULL, what);
    printf("  %-9s %-4s %6d %10d  ", s2s_attention_names[attention], bi ? "bi" : "uni", layers,
           res.params);
    s2s_trained_print(&res);
    fprintf(stderr, "  (%s: %.1f s)\n", what, seconds() - t0);
}

/* The table: decoder x direction x layers, held-out accuracy and size. */
static void s2s_experiment_encoder(const S2sOptions *o) {
    const S2sTask *tk = &o->task;
    s2s_wrapf("  ", "the encoder experiment: %s, source lengths %d..%d, %d steps of %d, %s "
              "cells, hidden %d, embedding %d, vocabulary %d, seed %d, %d held-out sources; "
              "luong: general score, global; uni: left to right, bi: both ways joined (2H)\n\n",
              s2s_task_names[tk->task], tk->min_len, tk->max_len, o->train.steps, o->batch,
              cell_names[o->cfg.cell], o->cfg.H, o->cfg.E, o->cfg.V, o->seed, o->test);
    printf("  %-9s %-4s %6s %10s  %10s  %15s  %7s\n", "decoder", "enc", "layers", "parameters",
           "final loss", "held-out exact", "tokens");
    for (int k = S2S_NONE; k <= S2S_LUONG; k++)
        for (int layers = 1; layers <= 2; layers++)
            for (int bi = 0; bi <= 1; bi++) s2s_encoder_row(o, k, bi, layers);
}

/* ---- the pair experiment: attention before or after the convolution ------- */

/* Pairs start .. start+n-1 of ta (PAIR_TA,NT), tb (PAIR_TB,NT) into ba
 * (PAIR_TA,n), bb (PAIR_TB,n), time-major as the batches are. */
static void s2s_pair_rows(int *ba, int *bb, const int *ta, const int *tb, int NT, int start,
                          int n) {
    for (int i = 0; i < PAIR_TA; i++)
        memcpy(ba + i * n, ta + i * NT + start, sizeof(int) * (size_t)n);
    for (int j = 0; j < PAIR_TB; j++)
        memcpy(bb + j * n, tb + j * NT + start, sizeof(int) * (size_t)n);
}

/* A trained pair classifier and its two activation blocks, B rows of each */
typedef struct {
    PairModel m;
    PairActs a, g;
    double *amem, *gmem;
} S2sPair;

/* Train s->m for --steps on batches of --batch pairs from rb; returns the
 * step it diverged at (0: none). */
static int s2s_pair_train(S2sPair *s, Rng *rb, const S2sOptions *o, int *bta, int *btb,
                          int *blab, int v) {
    const int B = o->batch, steps = o->train.steps;
    char what[48];
    snprintf(what, sizeof what, "pair: model %d/3, step", v + 1);
    Progress pr;
    progress_begin(&pr, what, steps);
    for (int st = 1; st <= steps; st++) {
        pair_task_batch(bta, btb, blab, rb, B, S2S_TRAINING);
        memset(s->m.p.grads, 0, sizeof(double) * (size_t)s->m.p.num_params);
        const double l = pair_forward(&s->a, bta, btb, blab, &s->m);
        pair_backward(&s->m.g, &s->g, &s->a, bta, btb, blab, &s->m);
        double gn;
        if (s2s_clip_adam(&s->m.p, st, s2s_lr_at(o->train.lr, st, steps), o->train.clip, l,
                          PAIR_CLASSES, &gn))
            return st;
        progress_step(&pr, st, NULL);
    }
    return 0;
}

/* Held-out pairs s classifies right, --batch at a time; the match matrices
 * of pair ex go to Mex (Ta,Tb) (attention before) or Mex (Na,Nb) and its
 * pooling weights to pex (Na + Nb) (attention after). */
static int s2s_pair_eval(S2sPair *s, const int *ta, const int *tb, const int *lab, int NT,
                         int B, int *bta, int *btb, int ex, double *Mex, double *pex) {
    const PairConfig *c = &s->m.cfg;
    const int Na = c->Ta - c->K + 1, Nb = c->Tb - c->K + 1;
    int ok = 0;
    for (int start = 0; start < NT; start += B) {
        const int nb = NT - start < B ? NT - start : B;
        s2s_pair_rows(bta, btb, ta, tb, NT, start, nb);
        pair_acts_bind(&s->a, s->amem, c, nb);
        pair_forward(&s->a, bta, btb, lab + start, &s->m);
        for (int b = 0; b < nb; b++) ok += argmax(s->a.probs + b * c->C, c->C) == lab[start + b];
        if (ex < start || ex >= start + nb) continue;
        const int e = ex - start;
        if (c->model == PAIR_BEFORE)
            memcpy(Mex, s->a.M + e * c->Ta * c->Tb, sizeof(double) * (size_t)(c->Ta * c->Tb));
        if (c->model == PAIR_AFTER) {
            memcpy(Mex, s->a.M2 + e * Na * Nb, sizeof(double) * (size_t)(Na * Nb));
            memcpy(pex, s->a.pa + e * Na, sizeof(double) * (size_t)Na);
            memcpy(pex + Na, s->a.pb + e * Nb, sizeof(double) * (size_t)Nb);
        }
    }
    return ok;
}

/* Model v (PAIR_*) of the pair table: built from the seed, trained on the
 * batches of its own stream (the same for every model), its row printed;
 * what s2s_pair_eval keeps of held-out pair ex into Mex, pex. Returns 0 if
 * it diverged (a row says so), else 1. */
static int s2s_pair_model(const S2sOptions *o, int v, const int *ta, const int *tb,
                          const int *lab, int NT, int *bta, int *btb, int *blab, int ex,
                          double *Mex, double *pex) {
    const PairConfig c = { v, S2S_FIRST + PAIR_SYMBOLS, o->cfg.E, o->kernel, o->channels,
                           PAIR_CLASSES, PAIR_TA, PAIR_TB };
    Rng r, rb;                                     /* init; training batches */
    rng_seed(&r, (uint64_t)o->seed);
    rng_seed(&rb, (uint64_t)o->seed ^ 0xBA7Cu);
    S2sPair s;
    pair_build(&s.m, &c, &r);
    const int cap = pair_acts_bind(NULL, NULL, &c, o->batch);
    s.amem = xcalloc_doubles(cap); s.gmem = xcalloc_doubles(cap);
    pair_acts_bind(&s.a, s.amem, &c, o->batch);
    pair_acts_bind(&s.g, s.gmem, &c, o->batch);
    const double t0 = seconds();
    const int div = s2s_pair_train(&s, &rb, o, bta, btb, blab, v);
    const double secs = seconds() - t0;
    if (div)
        printf("  %-27s | diverged at step %d\n", pair_model_names[v], div);
    else {
        const int ok = s2s_pair_eval(&s, ta, tb, lab, NT, o->batch, bta, btb, ex, Mex, pex);
        printf("  %-27s | %7.1f%% | %10d | %5.1f s\n", pair_model_names[v], 100.0 * ok / NT,
               s.m.p.num_params, secs);
    }
    fflush(stdout);
    free(s.amem); free(s.gmem); pair_free(&s.m);
    return !div;
}

/* The match matrices of held-out pair ex (ta, tb as in s2s_pair_rows):
 * the tokens' (attention before, M (Ta,Tb), if shown[0]) and the windows'
 * with their pooling weights (attention after, M2 (Na,Nb), p (Na+Nb), if
 * shown[1]). */
static void s2s_pair_show(const S2sOptions *o, const int *ta, const int *tb, int NT, int ex,
                          const double *M, const double *M2, const double *p,
                          const int *shown) {
    const int K = o->kernel, Na = PAIR_TA - K + 1, Nb = PAIR_TB - K + 1;
    char sa[PAIR_TA][8], sb[PAIR_TB][8];         /* a window's K <= 6 tokens, or one */
    const char *la[PAIR_TA], *lb[PAIR_TB];
    for (int i = 0; i < PAIR_TA; i++) la[i] = sa[i];
    for (int j = 0; j < PAIR_TB; j++) lb[j] = sb[j];
    printf("\nheld-out pair %d (the first that shares a symbol):\n  A:", ex + 1);
    for (int i = 0; i < PAIR_TA; i++) printf(" %c", pair_symbol(ta[i * NT + ex]));
    printf("\n  B:");
    for (int j = 0; j < PAIR_TB; j++) printf(" %c", pair_symbol(tb[j * NT + ex]));
    printf("\n");
    for (int i = 0; i < PAIR_TA; i++) snprintf(sa[i], 8, "%c", pair_symbol(ta[i * NT + ex]));
    for (int j = 0; j < PAIR_TB; j++) snprintf(sb[j], 8, "%c", pair_symbol(tb[j * NT + ex]));
    if (shown[0])
        s2s_heatmap("\nattention before the conv: the token match 1/(1+|a_i-b_j|^2), a row per "
                    "token of A, a column per token of B", M, PAIR_TA, PAIR_TB, la, lb);
    if (!shown[1]) return;
    for (int i = 0; i < Na; i++) {                 /* now a window's K tokens */
        for (int k = 0; k < K; k++) sa[i][k] = pair_symbol(ta[(i + k) * NT + ex]);
        sa[i][K] = '\0';
    }
    for (int j = 0; j < Nb; j++) {
        for (int k = 0; k < K; k++) sb[j][k] = pair_symbol(tb[(j + k) * NT + ex]);
        sb[j][K] = '\0';
    }
    s2s_heatmap("\nattention after the conv: the window match 1/(1+|fa_n-fb_m|^2), a row per "
                "window of A, a column per window of B (read down)", M2, Na, Nb, la, lb);
    printf("  pooling weights (row sums) of A's windows:");
    for (int i = 0; i < Na; i++) printf(" %.2f", p[i]);
    printf("\n  pooling weights (column sums) of B's windows:");
    for (int j = 0; j < Nb; j++) printf(" %.2f", p[Na + j]);
    printf("\n");
}

/* Three CNNs on the pair task (pair_task_batch): siamese (each text
 * convolved and max-pooled alone), attention before the convolution
 * (ABCNN-1) and after it (ABCNN-2), the same classifier on
 * [ra; rb; ra*rb; |ra-rb|] for all. Same held-out set, same training
 * batches, steps and learning rate. One table (a time column: it is an
 * experiment), then one held-out pair's match matrices. */
static void s2s_experiment_pair(const S2sOptions *o) {
    enum { NT = 1000 };
    const int B = o->batch, Na = PAIR_TA - o->kernel + 1, Nb = PAIR_TB - o->kernel + 1;
    s2s_wrapf("", "the pair experiment: text A holds %d symbols, text B %d, of %d, none twice "
              "in a text; the label says whether they share one (half of the pairs do); "
              "either text alone says nothing about it: chance 50%%\n", PAIR_TA, PAIR_TB,
              PAIR_SYMBOLS);
    s2s_wrapf("", "cnn: kernel %d, %d channels, ReLU, max pooling unless attention pools; "
              "embedding %d; classifier on [ra; rb; ra*rb; |ra-rb|]; %d steps of %d, lr %g, "
              "seed %d\n\n", o->kernel, o->channels, o->cfg.E, o->train.steps, B, o->train.lr,
              o->seed);
    int *ta = xmalloc(sizeof(int) * (size_t)((PAIR_TA + PAIR_TB + 1) * NT));   /* A, B, label */
    int *tb = ta + PAIR_TA * NT, *lab = tb + PAIR_TB * NT;
    int *bta = xmalloc(sizeof(int) * (size_t)((PAIR_TA + PAIR_TB + 1) * B));   /* a batch */
    int *btb = bta + PAIR_TA * B, *blab = btb + PAIR_TB * B;
    Rng rt;
    rng_seed(&rt, (uint64_t)o->seed ^ 0x5EEDu);        /* the held-out set's own stream */
    pair_task_batch(ta, tb, lab, &rt, NT, S2S_HELDOUT);
    int ex = 0;
    while (ex < NT - 1 && !lab[ex]) ex++;
    double *M = xcalloc_doubles(PAIR_TA * PAIR_TB + Na * Nb + Na + Nb);   /* M, M2, weights */
    double *M2 = M + PAIR_TA * PAIR_TB;
    int shown[2];
    printf("  %-27s | %8s | %10s | %s\n", "model", "held-out", "parameters", "time");
    s2s_pair_model(o, PAIR_SIAMESE, ta, tb, lab, NT, bta, btb, blab, ex, NULL, NULL);
    shown[0] = s2s_pair_model(o, PAIR_BEFORE, ta, tb, lab, NT, bta, btb, blab, ex, M, NULL);
    shown[1] = s2s_pair_model(o, PAIR_AFTER, ta, tb, lab, NT, bta, btb, blab, ex, M2,
                              M2 + Na * Nb);
    s2s_pair_show(o, ta, tb, NT, ex, M, M2, M2 + Na * Nb, shown);
    free(M); free(ta); free(bta);
}

/* ========================================================================
 * 16. --bench and main
 * ======================================================================== */

/* ms per training step of one of the issue's two configurations (k = 0:
 * Bahdanau, 1: none), median of `steps` after `warm` */
static void s2s_bench_config(int k, int warm, int steps) {
    S2sTask tk = { TASK_REVERSE, 12, 12, 16 };
    S2sConfig c = { k ? S2S_NONE : S2S_BAHDANAU, CELL_GRU, SCORE_DOT, S2S_GLOBAL, 2,
                    16, 32, 64, 64, 0, S2S_ENC_AUTO, 1 };
    Rng r;
    rng_seed(&r, 1);
    S2sModel m;
    S2sRun run;
    S2sBatch bt;
    s2s_build(&m, &c, &r);
    s2s_run_build(&run, &c, 32, 12, 13);
    s2s_batch_build(&bt, 32, 12, 13);
    double *ms = xcalloc_doubles(steps);
    for (int s = 0; s < warm + steps; s++) {
        s2s_batch_sample(&bt, &r, &tk);
        double t0 = seconds();
        s2s_train_step(&m, &run, &bt, 1e-3, 1.0);
        if (s >= warm) ms[s - warm] = 1000.0 * (seconds() - t0);
    }
    char desc[200];
    const double med = median(ms, steps);   /* run.ntok: target tokens (EOS too) */
    s2s_wrapf("           ", "  %7.2f ms/step  %6.0f target tokens/s  %s (%d parameters)\n",
              med, run.ntok / (med / 1000.0), s2s_describe(desc, sizeof desc, &c),
              m.p.num_params);
    printf("           ./seq2seq --attention %s --cell gru --hidden 64 --embed 32 \\\n"
           "               --vocab 16 --len 12 --batch 32\n", k ? "none" : "bahdanau");
    free(ms);
    s2s_run_free(&run); s2s_batch_free(&bt); s2s_free(&m);
}

/* The default example, evaluated every 50 steps (evaluation not timed):
 * the training time it takes to reach 99% held-out exact-sequence accuracy */
static void s2s_bench_default(void) {
    S2sOptions o;
    char *argv[1] = { "seq2seq" };
    s2s_parse(&o, 1, argv);
    S2sSession se;
    s2s_session_build(&se, &o, &o.cfg);
    double train_s = 0.0, hit = -1;
    int s;
    Progress pr;
    progress_begin(&pr, "bench: the default example, step", o.train.steps);
    for (s = 1; s <= o.train.steps; s++) {
        progress_step(&pr, s - 1, NULL);
        se.bt.B = o.batch;
        s2s_batch_sample(&se.bt, &se.r, &o.task);
        double t0 = seconds();
        s2s_train_step(&se.m, &se.run, &se.bt, s2s_lr_at(o.train.lr, s, o.train.steps),
                       o.train.clip);
        train_s += seconds() - t0;
        if (s % 50 == 0 && s2s_evaluate(&se.run, &se.bt, &se.m, &se.test, 1, se.out, NULL,
                                         NULL, NULL).seq_acc >= 0.99) {
            hit = train_s;
            break;
        }
    }
    if (hit >= 0)
        s2s_wrapf("    ", "  the default example (./seq2seq) reached 99%% held-out "
                  "exact-sequence accuracy after %d steps, %.1f s of training\n", s, hit);
    else
        s2s_wrapf("    ", "  the default example did not reach 99%% in its %d steps (%.1f s)\n",
                  o.train.steps, train_s);
    s2s_session_free(&se);
}

/* ms per training step of the issue's two configurations, and the time the
 * default example takes to reach 99% held-out exact-sequence accuracy. */
static void s2s_bench(void) {
    enum { WARM = 3, STEPS = 21 };
    printf("seq2seq.c --bench: one training step (forward, backward, clip, Adam) on reverse,\n"
           "length 12, vocabulary 16, batch 32, teacher forcing; median of %d steps\n", STEPS);
    for (int k = 0; k < 2; k++) s2s_bench_config(k, WARM, STEPS);
    s2s_bench_default();
}

int main(int argc, char **argv) {
    atexit(check_stdout_at_exit);
    S2sOptions o;
    s2s_parse(&o, argc, argv);
    switch (o.mode) {
    case S2S_MODE_BENCH:   s2s_bench(); break;
    case S2S_MODE_LENGTH:  s2s_experiment_length(&o); break;
    case S2S_MODE_POOLING: s2s_experiment_pooling(&o); break;
    case S2S_MODE_CNN:     s2s_experiment_cnn(&o); break;
    case S2S_MODE_GRADIENT: s2s_experiment_gradient(&o); break;
    case S2S_MODE_EXPOSURE: s2s_experiment_exposure(&o); break;
    case S2S_MODE_PARALLEL: s2s_experiment_parallel(&o); break;
    case S2S_MODE_PARAMS:  s2s_experiment_params(&o); break;
    case S2S_MODE_ENCODER: s2s_experiment_encoder(&o); break;
    case S2S_MODE_PAIR:    s2s_experiment_pair(&o); break;
    case S2S_MODE_DATA:    s2s_main_data(&o); break;
    case S2S_MODE_USE:     s2s_main_use(&o); break;
    default:               s2s_main_run(&o);
    }
    return 0;
}
#endif /* the program */

#endif /* SEQ2SEQ_C */
