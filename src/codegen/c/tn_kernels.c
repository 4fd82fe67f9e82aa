/*
 * tn_kernels.c - int8 kernels of the tinynas C runtime (see tn_kernels.h).
 *
 * Every kernel has one plain C99 path; with __ARM_FEATURE_DSP the inner products run on
 * SXTB16 (sign-extend two bytes into two halfwords) and SMLAD (two 16x16 MACs per instruction).
 * Both paths accumulate the same integers and requantise with the same code, so they agree bit
 * for bit.
 */
#include "tn_kernels.h"

#include <string.h>

/* TN_NO_DSP forces the plain C path (to measure what the DSP path gains). */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && !defined(TN_NO_DSP)
#include <arm_acle.h>
#define TN_DSP 1
#else
#define TN_DSP 0
#endif

#define TN_INLINE static inline __attribute__((always_inline))

/* gemmlowp SaturatingRoundingDoublingHighMul, in one 64-bit expression: its nudge (2^30 for a
 * non-negative product, 1 - 2^30 otherwise) followed by a division truncating towards zero
 * equals, for both signs, adding 2^30 and flooring (an arithmetic shift). The a == b ==
 * INT32_MIN overflow case cannot happen: multipliers are non-negative. */
TN_INLINE int32_t tn_srdhm(int32_t a, int32_t b) {
    return (int32_t)(((int64_t)a * (int64_t)b + (1LL << 30)) >> 31);
}

/* gemmlowp RoundingDivideByPOT: x / 2^e rounding half away from zero. */
TN_INLINE int32_t tn_rdbpot(int32_t x, int32_t e) {
    int32_t mask = (int32_t)((1u << e) - 1u);
    int32_t rem = x & mask;
    int32_t threshold = (mask >> 1) + (x < 0);
    return (x >> e) + (rem > threshold);
}

/* TFLite MultiplyByQuantizedMultiplier (double rounding). */
TN_INLINE int32_t tn_requant(int32_t x, int32_t mult, int32_t shift) {
    int32_t left = shift > 0 ? shift : 0;
    int32_t right = shift > 0 ? 0 : -shift;
    return tn_rdbpot(tn_srdhm((int32_t)((uint32_t)x << left), mult), right);
}

TN_INLINE int8_t tn_clamp(int32_t v, int32_t lo, int32_t hi) {
    return (int8_t)(v < lo ? lo : (v > hi ? hi : v));
}

/* The per-layer constants of a convolution's output stage, copied into locals: int8 stores may
 * alias anything, so reading them through the parameter struct would reload them per output. */
typedef struct {
    const int32_t *bias, *mult, *shift;
    int32_t out_offset, act_min, act_max;
} tn_out_t;

TN_INLINE tn_out_t tn_out_of(const tn_conv_t *p) {
    tn_out_t o = {p->bias, p->mult, p->shift, p->out_offset, p->act_min, p->act_max};
    return o;
}

/* Requantise one accumulator with channel multiplier m and shift sh. */
TN_INLINE int8_t tn_out_inline(const tn_out_t *q, int32_t acc, int32_t m, int32_t sh) {
    return tn_clamp(tn_requant(acc, m, sh) + q->out_offset, q->act_min, q->act_max);
}

/* The same, not inlined under the DSP fast output stage (tn_fast_out), where it serves only the
 * channels tn_fast does not admit: 1 KB less code. The depthwise plane keeps it inline (a call
 * in its pixel loop costs it registers). */
#if TN_DSP
static __attribute__((noinline)) int8_t tn_out(const tn_out_t *q, int32_t acc, int32_t m, int32_t sh) {
    return tn_out_inline(q, acc, m, sh);
}
#else
#define tn_out tn_out_inline
#endif

/* Requantise one accumulator of output channel o. */
TN_INLINE int8_t tn_conv_out(const tn_out_t *q, int32_t acc, int32_t o) {
    return tn_out(q, acc, q->mult[o], q->shift[o]);
}

/* A channel's requantisation in the form of tn_fast_out: 2m read as a signed word, the right
 * shift e, and 2^(e-1), plus the output offset scaled by 2^e when `fold` (worth its two
 * instructions per channel where a channel has many outputs: the depthwise plane). Valid when
 * tn_fast(m, shift). */
typedef struct {
    int32_t m2, e, rnd;
} tn_fast_t;

/* Whether channel (m, shift) takes the fast output stage: a DSP build, a normalised multiplier
 * (every nonzero one is), no left shift and a right shift of 1 to 23. */
TN_INLINE int tn_fast(int32_t m, int32_t shift) {
    return TN_DSP && m >= (1 << 30) && shift <= -1 && shift >= -23;
}

TN_INLINE tn_fast_t tn_fast_of(const tn_out_t *q, int32_t m, int32_t shift, const int fold) {
    tn_fast_t f = {(int32_t)((uint32_t)m << 1), -shift, (1 << (-shift - 1)) + (fold ? (int32_t)((uint32_t)q->out_offset << -shift) : 0)};
    return f;
}

#if TN_DSP
TN_INLINE int32_t tn_smmulr(int32_t a, int32_t b) {
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
#endif

/* tn_out for a tn_fast channel, equal to it for every accumulator:
 * - SMMULR of acc and 2m - 2^32 (2m read as a signed word, m in [2^30, 2^31)) is
 *   floor((acc*m + 2^30) / 2^31) - acc, so adding acc back gives tn_srdhm(acc, m) = y;
 * - rounding half away from zero of y / 2^e, plus the offset o, is
 *   (y + 2^(e-1) + o*2^e - [y < 0]) >> e (o*2^e is a multiple of 2^e; |o*2^e| <= 2^30). Where
 *   that sum leaves the int32 range the saturating add stops at its bound, whose shift
 *   (2^(31-e) - 1 >= 255, or -2^(31-e) <= -256, for e <= 23) the int8 clamp sends to the same
 *   end as the exact value. */
TN_INLINE int8_t tn_fast_out(const tn_out_t *q, int32_t acc, const tn_fast_t *f, const int fold) {
#if TN_DSP
    int32_t y = tn_smmulr(acc, f->m2) + acc;
    int32_t v = __qadd(y, f->rnd + (y >> 31)) >> f->e;
    return tn_clamp(fold ? v : v + q->out_offset, q->act_min, q->act_max);
#else
    (void)q, (void)acc, (void)f, (void)fold;
    return 0; /* unreachable: tn_fast is 0 without the DSP extension */
#endif
}

#if TN_DSP
/* 4 bytes from any address (the M4/M7 allow unaligned LDR; memcpy compiles to one). */
TN_INLINE uint32_t tn_ld32(const void *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
/* Bytes 1 and 3 sign-extended into two halfwords: SXTB16 with its ROR #8 operand. */
TN_INLINE int32_t tn_sxtb16_ror8(uint32_t x) {
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
#endif

/* ---- 1x1 convolution ------------------------------------------------------------------- */

/* Inner product of cin int8 values (plain C path and tails). */
TN_INLINE int32_t tn_dot8(const int8_t *x, const int8_t *w, int32_t n, int32_t acc) {
    for (int32_t i = 0; i < n; i++) acc += (int32_t)x[i] * (int32_t)w[i];
    return acc;
}

void tn_pointwise(const tn_conv_t *p, const int8_t *in, int8_t *out) {
    const tn_out_t q = tn_out_of(p);
    const int8_t *const weight = p->weight;
    const int32_t n = (int32_t)p->out_h * p->out_w;
    const int32_t cin = p->in_c, cout = p->out_c;
    int32_t px = 0;
#if TN_DSP
    /* 2 pixels x 2 output channels per step, 4 input channels per SMLAD quartet. */
    const int32_t cin4 = cin & ~3;
    for (; px + 1 < n; px += 2) {
        const int8_t *xa = in + px * cin;
        const int8_t *xb = xa + cin;
        int8_t *ya = out + px * cout;
        int8_t *yb = ya + cout;
        int32_t o = 0;
        for (; o + 1 < cout; o += 2) {
            const int8_t *w0 = weight + o * cin;
            int32_t a0 = q.bias[o], a1 = q.bias[o + 1], b0 = a0, b1 = a1;
            const int8_t *x = xa;
            const int8_t *w = w0;
            /* Two quartets per iteration; a down-counter keeps the loop state in registers. */
#define TN_PW_QUARTET(off)                                                  \
    do {                                                                    \
        uint32_t xv = tn_ld32(x + (off)), yv = tn_ld32(x + (off) + cin);    \
        int32_t xe = __sxtb16(xv), xo = tn_sxtb16_ror8(xv);                 \
        int32_t ye = __sxtb16(yv), yo = tn_sxtb16_ror8(yv);                 \
        uint32_t u = tn_ld32(w + (off));                                    \
        int32_t ue = __sxtb16(u), uo = tn_sxtb16_ror8(u);                   \
        a0 = __smlad(xe, ue, a0);                                           \
        a0 = __smlad(xo, uo, a0);                                           \
        b0 = __smlad(ye, ue, b0);                                           \
        b0 = __smlad(yo, uo, b0);                                           \
        uint32_t v = tn_ld32(w + (off) + cin);                              \
        int32_t ve = __sxtb16(v), vo = tn_sxtb16_ror8(v);                   \
        a1 = __smlad(xe, ve, a1);                                           \
        a1 = __smlad(xo, vo, a1);                                           \
        b1 = __smlad(ye, ve, b1);                                           \
        b1 = __smlad(yo, vo, b1);                                           \
    } while (0)
            for (int32_t k = cin4 >> 3; k > 0; k--, x += 8, w += 8) {
                TN_PW_QUARTET(0);
                TN_PW_QUARTET(4);
            }
            if (cin4 & 4) {
                TN_PW_QUARTET(0);
            }
#undef TN_PW_QUARTET
            for (int32_t i = cin4; i < cin; i++) {
                int32_t xv = xa[i], yv = xb[i];
                a0 += xv * w0[i];
                a1 += xv * w0[cin + i];
                b0 += yv * w0[i];
                b1 += yv * w0[cin + i];
            }
            const int32_t m0 = q.mult[o], m1 = q.mult[o + 1], s0 = q.shift[o], s1 = q.shift[o + 1];
            if (tn_fast(m0, s0) && tn_fast(m1, s1)) {
                const tn_fast_t f0 = tn_fast_of(&q, m0, s0, 0), f1 = tn_fast_of(&q, m1, s1, 0);
                ya[o] = tn_fast_out(&q, a0, &f0, 0);
                yb[o] = tn_fast_out(&q, b0, &f0, 0);
                ya[o + 1] = tn_fast_out(&q, a1, &f1, 0);
                yb[o + 1] = tn_fast_out(&q, b1, &f1, 0);
            } else {
                ya[o] = tn_out(&q, a0, m0, s0);
                yb[o] = tn_out(&q, b0, m0, s0);
                ya[o + 1] = tn_out(&q, a1, m1, s1);
                yb[o + 1] = tn_out(&q, b1, m1, s1);
            }
        }
        for (; o < cout; o++) {
            const int8_t *w0 = weight + o * cin;
            ya[o] = tn_conv_out(&q, tn_dot8(xa, w0, cin, q.bias[o]), o);
            yb[o] = tn_conv_out(&q, tn_dot8(xb, w0, cin, q.bias[o]), o);
        }
    }
#endif
    for (; px < n; px++) {
        const int8_t *x = in + px * cin;
        int8_t *y = out + px * cout;
        for (int32_t o = 0; o < cout; o++) y[o] = tn_conv_out(&q, tn_dot8(x, weight + o * cin, cin, q.bias[o]), o);
    }
}

/* ---- kxk dense convolution --------------------------------------------------------------- */

/* Position of element i in a column whose groups of 4 are stored as (0, 2, 1, 3): one 32-bit
 * load then yields the halfword pairs SXTB16 makes of 4 weight bytes. The tail (len % 4)
 * stays in order. */
TN_INLINE int32_t tn_col_pos(int32_t i, int32_t len) {
    static const uint8_t perm[4] = {0, 2, 1, 3};
    return (i < (len & ~3)) ? ((i & ~3) | perm[i & 3]) : i;
}

/* The im2col column of output pixel (oy, ox): input + offset, 0 on the padding. */
static void tn_im2col(const tn_conv_t *p, const int8_t *in, int32_t oy, int32_t ox, int16_t *col) {
    const int32_t k = p->kernel, cin = p->in_c, len = k * k * cin;
    int32_t i = 0;
    for (int32_t ky = 0; ky < k; ky++) {
        int32_t iy = oy * p->stride + ky - p->pad_top;
        for (int32_t kx = 0; kx < k; kx++) {
            int32_t ix = ox * p->stride + kx - p->pad_left;
            int inside = iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w;
            const int8_t *x = in + (iy * p->in_w + ix) * cin;
            for (int32_t c = 0; c < cin; c++, i++) col[tn_col_pos(i, len)] = inside ? (int16_t)(x[c] + p->in_offset) : 0;
        }
    }
}

/* Inner product of a reordered int16 column and int8 weights. */
TN_INLINE int32_t tn_dot_col(const int16_t *col, const int8_t *w, int32_t len, int32_t acc) {
    int32_t i = 0;
#if TN_DSP
    for (; i + 3 < len; i += 4) {
        uint32_t u = tn_ld32(w + i);
        acc = __smlad((int32_t)tn_ld32(col + i), __sxtb16(u), acc);
        acc = __smlad((int32_t)tn_ld32(col + i + 2), tn_sxtb16_ror8(u), acc);
    }
#endif
    for (; i < len; i++) acc += (int32_t)col[tn_col_pos(i, len)] * w[i];
    return acc;
}

void tn_conv(const tn_conv_t *p, const int8_t *in, int8_t *out, int16_t *scratch) {
    const tn_out_t q = tn_out_of(p);
    const int32_t len = (int32_t)p->kernel * p->kernel * p->in_c;
    const int32_t cout = p->out_c, n = (int32_t)p->out_h * p->out_w;
    int16_t *col_a = scratch, *col_b = scratch + len;
    int32_t px = 0;
    /* Two pixels per pass: each weight row is loaded once for both columns. */
    for (; px + 1 < n; px += 2) {
        tn_im2col(p, in, px / p->out_w, px % p->out_w, col_a);
        tn_im2col(p, in, (px + 1) / p->out_w, (px + 1) % p->out_w, col_b);
        for (int32_t o = 0; o < cout; o++) {
            const int8_t *w = p->weight + o * len;
            const int32_t acc_a = tn_dot_col(col_a, w, len, q.bias[o]), acc_b = tn_dot_col(col_b, w, len, q.bias[o]);
            const int32_t m = q.mult[o], sh = q.shift[o];
            if (tn_fast(m, sh)) {
                const tn_fast_t f = tn_fast_of(&q, m, sh, 0);
                out[px * cout + o] = tn_fast_out(&q, acc_a, &f, 0);
                out[(px + 1) * cout + o] = tn_fast_out(&q, acc_b, &f, 0);
            } else {
                out[px * cout + o] = tn_out(&q, acc_a, m, sh);
                out[(px + 1) * cout + o] = tn_out(&q, acc_b, m, sh);
            }
        }
    }
    for (; px < n; px++) {
        tn_im2col(p, in, px / p->out_w, px % p->out_w, col_a);
        for (int32_t o = 0; o < cout; o++) out[px * cout + o] = tn_conv_out(&q, tn_dot_col(col_a, p->weight + o * len, len, q.bias[o]), o);
    }
}

/* ---- depthwise convolution ----------------------------------------------------------------- */

/* One output channel plane from the padded int16 input plane (row pitch pw), kernel K known at
 * compile time so the taps unroll and the weights stay in registers. */
#define TN_DW_MAX_K 7
TN_INLINE void tn_dw_plane(const tn_out_t *q, int32_t out_h, int32_t out_w, int32_t s, int32_t C, const int16_t *plane, int32_t pw,
                           const int16_t *wk, int32_t c, int8_t *out, const int32_t K) {
    const int32_t bias = q->bias[c], m = q->mult[c], sh = q->shift[c];
    const int fast = tn_fast(m, sh);
    const tn_fast_t f = tn_fast_of(q, fast ? m : 1 << 30, fast ? sh : -1, 1);
    for (int32_t oy = 0; oy < out_h; oy++) {
        const int16_t *row0 = plane + oy * s * pw;
        int8_t *y = out + (oy * out_w) * C + c;
        for (int32_t ox = 0; ox < out_w; ox++, y += C) {
            const int16_t *r = row0 + ox * s;
            int32_t acc = bias;
#pragma GCC unroll 7
            for (int32_t ky = 0; ky < K; ky++, r += pw) {
                const int16_t *wr = wk + ky * (TN_DW_MAX_K + 1);
                int32_t kx = 0;
#if TN_DSP
#pragma GCC unroll 3
                for (; kx + 1 < K; kx += 2) acc = __smlad((int32_t)tn_ld32(r + kx), (int32_t)tn_ld32(wr + kx), acc);
#endif
#pragma GCC unroll 7
                for (; kx < K; kx++) acc += (int32_t)r[kx] * wr[kx];
            }
            *y = fast ? tn_fast_out(q, acc, &f, 1) : tn_out_inline(q, acc, m, sh);
        }
    }
}

void tn_depthwise(const tn_conv_t *p, const int8_t *in, int8_t *out, int16_t *scratch) {
    const tn_out_t q = tn_out_of(p);
    const int32_t k = p->kernel, s = p->stride, C = p->in_c, oh = p->out_h, ow = p->out_w;
    const int32_t in_w = p->in_w, pad_top = p->pad_top, pad_left = p->pad_left, in_offset = p->in_offset;
    const int8_t *const weight = p->weight;
    const int32_t ph = (p->out_h - 1) * s + k, pw = (p->out_w - 1) * s + k;
    /* Input rows / columns that any tap reads. */
    const int32_t rows = p->in_h < ph - p->pad_top ? p->in_h : ph - p->pad_top;
    const int32_t cols = p->in_w < pw - p->pad_left ? p->in_w : pw - p->pad_left;
    /* Weights of one channel as int16, one row of TN_DW_MAX_K + 1 per kernel row. */
    int16_t wk[TN_DW_MAX_K * (TN_DW_MAX_K + 1)] __attribute__((aligned(4)));
    /* The padding border is zero for every channel: clear the plane once. */
    memset(scratch, 0, (size_t)ph * (size_t)pw * sizeof(int16_t));
    for (int32_t c = 0; c < C; c++) {
        for (int32_t y = 0; y < rows; y++) {
            const int8_t *x = in + (y * in_w) * C + c;
            int16_t *d = scratch + (y + pad_top) * pw + pad_left;
            for (int32_t xx = 0; xx < cols; xx++) d[xx] = (int16_t)(x[xx * C] + in_offset);
        }
        for (int32_t ky = 0; ky < k; ky++)
            for (int32_t kx = 0; kx < k; kx++) wk[ky * (TN_DW_MAX_K + 1) + kx] = weight[(ky * k + kx) * C + c];
        switch (k) {
        case 3: tn_dw_plane(&q, oh, ow, s, C, scratch, pw, wk, c, out, 3); break;
        case 5: tn_dw_plane(&q, oh, ow, s, C, scratch, pw, wk, c, out, 5); break;
        case 7: tn_dw_plane(&q, oh, ow, s, C, scratch, pw, wk, c, out, 7); break;
        default: tn_dw_plane(&q, oh, ow, s, C, scratch, pw, wk, c, out, k); break;
        }
    }
}

/* ---- residual add, average pool, fully connected ------------------------------------------ */

#if TN_DSP
/* MultiplyByQuantizedMultiplier(x, m, -e) for m in [2^30, 2^31), e in 0..23 and |x| < 2^29
 * (m2 = 2m read as a signed word; rnd = 2^(e-1) and smask = -1 for e > 0, both 0 for e = 0):
 * the SMMULR identity of tn_fast_out, and here the rounding sum cannot overflow (|y| <= |x|), so
 * it is exact without saturation. */
TN_INLINE int32_t tn_fast_rq(int32_t x, int32_t m2, int32_t e, int32_t rnd, int32_t smask) {
    const int32_t y = tn_smmulr(x, m2) + x;
    return (y + rnd + ((y >> 31) & smask)) >> e;
}

/* Whether (m, shift) suits tn_fast_rq: the larger-scale input of an add has multiplier 0.5
 * exactly, i.e. shift 0. */
TN_INLINE int tn_fast_add(int32_t m, int32_t shift) {
    return m >= (1 << 30) && shift <= 0 && shift >= -23;
}

/* The add with all three requantisations in the fast form: the inputs' (v + offset) * 2^20 stay
 * below 2^28 in magnitude, their requantised sum below 2^29. */
static void tn_add_fast(const tn_add_t *p, const int8_t *a, const int8_t *b, int8_t *out) {
#define TN_RQ_CONSTS(m, sh, M, E, R, S)                   \
    const int32_t M = (int32_t)((uint32_t)(m) << 1), E = -(sh); \
    const int32_t R = E > 0 ? 1 << (E - 1) : 0, S = E > 0 ? -1 : 0
    TN_RQ_CONSTS(p->in1_mult, p->in1_shift, m1, e1, r1, s1);
    TN_RQ_CONSTS(p->in2_mult, p->in2_shift, m2, e2, r2, s2);
    TN_RQ_CONSTS(p->out_mult, p->out_shift, mo, eo, ro, so);
#undef TN_RQ_CONSTS
    const int32_t o1 = p->in1_offset, o2 = p->in2_offset, oo = p->out_offset, lo = p->act_min, hi = p->act_max;
    for (uint32_t i = 0, n = p->size; i < n; i++) {
        const int32_t x1 = tn_fast_rq((a[i] + o1) * (1 << 20), m1, e1, r1, s1);
        const int32_t x2 = tn_fast_rq((b[i] + o2) * (1 << 20), m2, e2, r2, s2);
        out[i] = tn_clamp(tn_fast_rq(x1 + x2, mo, eo, ro, so) + oo, lo, hi);
    }
}
#endif

void tn_add(const tn_add_t *params, const int8_t *a, const int8_t *b, int8_t *out) {
    const tn_add_t q = *params, *const p = &q; /* a local copy: int8 stores may alias *params */
#if TN_DSP
    if (tn_fast_add(p->in1_mult, p->in1_shift) && tn_fast_add(p->in2_mult, p->in2_shift) && tn_fast_add(p->out_mult, p->out_shift)) {
        tn_add_fast(p, a, b, out);
        return;
    }
#endif
    for (uint32_t i = 0; i < p->size; i++) {
        int32_t x1 = tn_requant((a[i] + p->in1_offset) * (1 << 20), p->in1_mult, p->in1_shift);
        int32_t x2 = tn_requant((b[i] + p->in2_offset) * (1 << 20), p->in2_mult, p->in2_shift);
        out[i] = tn_clamp(tn_requant(x1 + x2, p->out_mult, p->out_shift) + p->out_offset, p->act_min, p->act_max);
    }
}

void tn_avgpool(uint16_t h, uint16_t w, uint16_t c, const int8_t *in, int8_t *out, int32_t *acc) {
    const int32_t n = (int32_t)h * w;
    for (int32_t ch = 0; ch < c; ch++) acc[ch] = 0;
    for (int32_t px = 0; px < n; px++)
        for (int32_t ch = 0; ch < c; ch++) acc[ch] += in[px * c + ch];
    /* TFLite's int8 average pool: round half away from zero, then saturate. */
    for (int32_t ch = 0; ch < c; ch++) {
        int32_t v = acc[ch] > 0 ? (acc[ch] + n / 2) / n : (acc[ch] - n / 2) / n;
        out[ch] = tn_clamp(v, -128, 127);
    }
}

/* x * mult * 2^(shift - 31) with one rounding (what LiteRT's FULLY_CONNECTED computes). */
TN_INLINE int32_t tn_requant_single(int32_t x, int32_t mult, int32_t shift) {
    int32_t total = 31 - shift;
    return (int32_t)(((int64_t)x * mult + (1LL << (total - 1))) >> total);
}

void tn_fully_connected(const tn_fc_t *p, const int8_t *in, int8_t *out) {
    const int32_t cin = p->in_c;
    for (int32_t o = 0; o < p->out_c; o++) {
        const int8_t *w = p->weight + o * cin;
        int32_t acc = p->bias[o], i = 0;
#if TN_DSP
        for (; i + 3 < cin; i += 4) {
            uint32_t x = tn_ld32(in + i), u = tn_ld32(w + i);
            acc = __smlad(__sxtb16(x), __sxtb16(u), acc);
            acc = __smlad(tn_sxtb16_ror8(x), tn_sxtb16_ror8(u), acc);
        }
#endif
        acc = tn_dot8(in + i, w + i, cin - i, acc);
        out[o] = tn_clamp(tn_requant_single(acc, p->mult, p->shift) + p->out_offset, p->act_min, p->act_max);
    }
}
