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
 * shift e, and 2^(e-1) plus the output offset scaled by 2^e (one add per output less). Valid
 * when tn_fast(m, shift). */
typedef struct {
    int32_t m2, e, rnd;
} tn_fast_t;

/* Whether channel (m, shift) takes the fast output stage: a DSP build, a normalised multiplier
 * (every nonzero one is), no left shift and a right shift of 1 to 23. */
TN_INLINE int tn_fast(int32_t m, int32_t shift) {
    return TN_DSP && m >= (1 << 30) && shift <= -1 && shift >= -23;
}

TN_INLINE tn_fast_t tn_fast_of(const tn_out_t *q, int32_t m, int32_t shift) {
    tn_fast_t f = {(int32_t)((uint32_t)m << 1), -shift, (1 << (-shift - 1)) + (int32_t)((uint32_t)q->out_offset << -shift)};
    return f;
}

#if TN_DSP
TN_INLINE int32_t tn_smmulr(int32_t a, int32_t b) {
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
#endif


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

#if TN_DSP
/* tn_out for a tn_fast channel (the offset folded into f->rnd by tn_fast_of), equal to it for
 * every accumulator; `full`: the activation range is all of int8, so one SSAT clamps:
 * - SMMULR of acc and 2m - 2^32 (2m read as a signed word, m in [2^30, 2^31)) is
 *   floor((acc*m + 2^30) / 2^31) - acc, so adding acc back gives tn_srdhm(acc, m) = y;
 * - rounding half away from zero of y / 2^e, plus the offset o, is
 *   (y + 2^(e-1) + o*2^e - [y < 0]) >> e (o*2^e is a multiple of 2^e; |o*2^e| <= 2^30). Where
 *   that sum leaves the int32 range the saturating add stops at its bound, whose shift
 *   (2^(31-e) - 1 >= 255, or -2^(31-e) <= -256, for e <= 23) the int8 clamp sends to the same
 *   end as the exact value. */
TN_INLINE int8_t tn_fast_out(int32_t acc, const tn_fast_t *f, int32_t lo, int32_t hi, int full) {
    int32_t y = tn_smmulr(acc, f->m2) + acc;
    int32_t v = __ssat(__qadd(y, f->rnd + (y >> 31)) >> f->e, 8);
    return (int8_t)(full ? v : tn_clamp(v, lo, hi));
}

/* Output channels o and o + 1 (weight rows w, w + cin) of every pixel, 2 pixels x 2 channels
 * per step: each input and weight word is loaded and sign-extended once per step and feeds four
 * SMLADs. The channels' output constants stay out of the pixel loop. */
TN_INLINE void tn_pw_pair(const int8_t *in, const int8_t *w, int32_t cin, int32_t cout, int32_t n, int8_t *y, int32_t bias0,
                          int32_t bias1, const tn_fast_t *f0, const tn_fast_t *f1) {
    const int32_t oct = cin >> 3, rest = cin & 7;
    const int8_t *x = in;
    int32_t px = n;
    for (; px > 1; px -= 2, x += 2 * cin, y += 2 * cout) {
        int32_t a0 = bias0, a1 = bias1, b0 = bias0, b1 = bias1;
        const int8_t *xp = x, *wp = w;
        if (oct) {
            /* 2 pixels x 2 channels x 8 input channels per iteration in hand-allocated registers:
             * all 14 allocatable ones are live, which the compiler's allocation of the same C
             * loop could not manage without spilling. Pointers advance by post-increment, so
             * the second pixel and the second weight row sit at +cin-4 from them. */
            const int32_t cm4 = cin - 4;
            int32_t k = oct, t0, t1, t2, t3, t4, t5;
#define TN_PW_Q                                                                                   \
    "ldr %[t0], [%[xp]], #4\n\t"                                                                  \
    "ldr %[t2], [%[xp], %[cm4]]\n\t"                                                              \
    "ldr %[t5], [%[wp]], #4\n\t"                                                                  \
    "sxtb16 %[t1], %[t0], ror #8\n\t"                                                             \
    "sxtb16 %[t0], %[t0]\n\t"                                                                     \
    "sxtb16 %[t3], %[t2], ror #8\n\t"                                                             \
    "sxtb16 %[t2], %[t2]\n\t"                                                                     \
    "sxtb16 %[t4], %[t5]\n\t"                                                                     \
    "sxtb16 %[t5], %[t5], ror #8\n\t"                                                             \
    "smlad %[a0], %[t0], %[t4], %[a0]\n\t"                                                        \
    "smlad %[a0], %[t1], %[t5], %[a0]\n\t"                                                        \
    "smlad %[b0], %[t2], %[t4], %[b0]\n\t"                                                        \
    "smlad %[b0], %[t3], %[t5], %[b0]\n\t"                                                        \
    "ldr %[t5], [%[wp], %[cm4]]\n\t"                                                              \
    "sxtb16 %[t4], %[t5]\n\t"                                                                     \
    "sxtb16 %[t5], %[t5], ror #8\n\t"                                                             \
    "smlad %[a1], %[t0], %[t4], %[a1]\n\t"                                                        \
    "smlad %[a1], %[t1], %[t5], %[a1]\n\t"                                                        \
    "smlad %[b1], %[t2], %[t4], %[b1]\n\t"                                                        \
    "smlad %[b1], %[t3], %[t5], %[b1]\n\t"
            __asm__("1:\n\t" TN_PW_Q TN_PW_Q
                    "subs %[k], %[k], #1\n\t"
                    "bne 1b\n\t"
                    : [a0] "+r"(a0), [a1] "+r"(a1), [b0] "+r"(b0), [b1] "+r"(b1), [xp] "+r"(xp), [wp] "+r"(wp), [k] "+r"(k),
                      [t0] "=&r"(t0), [t1] "=&r"(t1), [t2] "=&r"(t2), [t3] "=&r"(t3), [t4] "=&r"(t4), [t5] "=&r"(t5)
                    : [cm4] "r"(cm4)
                    : "cc");
#undef TN_PW_Q
        }
#define TN_PW_QUARTET(off)                                                  \
    do {                                                                    \
        uint32_t xv = tn_ld32(xp + (off)), yv = tn_ld32(xp + (off) + cin);  \
        int32_t xe = __sxtb16(xv), xo = tn_sxtb16_ror8(xv);                 \
        int32_t ye = __sxtb16(yv), yo = tn_sxtb16_ror8(yv);                 \
        uint32_t u = tn_ld32(wp + (off));                                   \
        int32_t ue = __sxtb16(u), uo = tn_sxtb16_ror8(u);                   \
        a0 = __smlad(xe, ue, a0);                                           \
        a0 = __smlad(xo, uo, a0);                                           \
        b0 = __smlad(ye, ue, b0);                                           \
        b0 = __smlad(yo, uo, b0);                                           \
        uint32_t v = tn_ld32(wp + (off) + cin);                             \
        int32_t ve = __sxtb16(v), vo = tn_sxtb16_ror8(v);                   \
        a1 = __smlad(xe, ve, a1);                                           \
        a1 = __smlad(xo, vo, a1);                                           \
        b1 = __smlad(ye, ve, b1);                                           \
        b1 = __smlad(yo, vo, b1);                                           \
    } while (0)
        if (rest & 4) {
            TN_PW_QUARTET(0);
            xp += 4, wp += 4;
        }
#undef TN_PW_QUARTET
        for (int32_t i = rest & 3; i > 0; i--, xp++, wp++) {
            const int32_t xv = xp[0], yv = xp[cin], u = wp[0], v = wp[cin];
            a0 += xv * u, a1 += xv * v, b0 += yv * u, b1 += yv * v;
        }
        /* The four outputs through tn_fast_out (full range), in assembly too: the
         * channels' constants are read once per pair of outputs from f0 and f1 (= f0 + 1), and
         * no output pointer is kept beyond y. */
        {
            int32_t m, e, r, t;
#define TN_PW_OUT(acc, dst)                                                                         \
    "smmulr %[t], " acc ", %[m]\n\t"                                                                  \
    "add " acc ", " acc ", %[t]\n\t"                                                                 \
    "add %[t], %[r], " acc ", asr #31\n\t"                                                         \
    "qadd " acc ", " acc ", %[t]\n\t"                                                                \
    "asr " acc ", " acc ", %[e]\n\t"                                                                 \
    "ssat " acc ", #8, " acc "\n\t"                                                                  \
    "strb " acc ", " dst "\n\t"
            __asm__("ldrd %[m], %[e], [%[f]]\n\t"
                    "ldr %[r], [%[f], #8]\n\t" TN_PW_OUT("%[a0]", "[%[y]]") TN_PW_OUT("%[b0]", "[%[y], %[cout]]")
                    "ldrd %[m], %[e], [%[f], #12]\n\t"
                    "ldr %[r], [%[f], #20]\n\t"
                    "add %[y], %[y], #1\n\t" TN_PW_OUT("%[a1]", "[%[y]]") TN_PW_OUT("%[b1]", "[%[y], %[cout]]")
                    "sub %[y], %[y], #1\n\t"
                    : [a0] "+r"(a0), [a1] "+r"(a1), [b0] "+r"(b0), [b1] "+r"(b1), [m] "=&r"(m), [e] "=&r"(e), [r] "=&r"(r), [t] "=&r"(t),
                      [y] "+r"(y)
                    : [f] "r"(f0), [cout] "r"(cout)
                    : "memory", "cc");
#undef TN_PW_OUT
        }
    }
    if (px) {
        /* An odd pixel count: the last pixel against both rows, a quartet at a time. */
        int32_t a0 = bias0, a1 = bias1, i = 0;
        for (; i + 3 < cin; i += 4) {
            const uint32_t xv = tn_ld32(x + i), u = tn_ld32(w + i), v = tn_ld32(w + cin + i);
            const int32_t xe = __sxtb16(xv), xo = tn_sxtb16_ror8(xv);
            a0 = __smlad(xe, __sxtb16(u), a0);
            a0 = __smlad(xo, tn_sxtb16_ror8(u), a0);
            a1 = __smlad(xe, __sxtb16(v), a1);
            a1 = __smlad(xo, tn_sxtb16_ror8(v), a1);
        }
        for (; i < cin; i++) a0 += x[i] * w[i], a1 += x[i] * w[cin + i];
        y[0] = tn_fast_out(a0, f0, -128, 127, 1);
        y[1] = tn_fast_out(a1, f1, -128, 127, 1);
    }
}
#endif

/* Output channel o of every pixel, one output at a time (the plain C path, and channels the fast
 * output stage does not take). */
static void tn_pw_channel(const tn_out_t *q, const int8_t *in, const int8_t *w, int32_t cin, int32_t cout, int32_t n, int8_t *out,
                          int32_t o) {
    for (int32_t px = 0; px < n; px++) out[px * cout + o] = tn_conv_out(q, tn_dot8(in + px * cin, w, cin, q->bias[o]), o);
}

static void tn_pointwise_flat(const tn_conv_t *p, const int8_t *in, int8_t *out) {
    const tn_out_t q = tn_out_of(p);
    const int8_t *const weight = p->weight;
    const int32_t n = (int32_t)p->out_h * p->out_w;
    const int32_t cin = p->in_c, cout = p->out_c;
    int32_t o = 0;
#if TN_DSP
    /* The paired fast path takes channels of the fast output stage in a layer whose clamp is the
     * whole int8 range (every layer of a calibrated network); others go one channel at a time. */
    const int full = q.act_min == -128 && q.act_max == 127;
    for (; o + 1 < cout; o += 2) {
        const int8_t *w = weight + o * cin;
        const int32_t m0 = q.mult[o], m1 = q.mult[o + 1], s0 = q.shift[o], s1 = q.shift[o + 1];
        if (!(full && tn_fast(m0, s0) && tn_fast(m1, s1))) {
            tn_pw_channel(&q, in, w, cin, cout, n, out, o);
            tn_pw_channel(&q, in, w + cin, cin, cout, n, out, o + 1);
            continue;
        }
        const tn_fast_t f[2] = {tn_fast_of(&q, m0, s0), tn_fast_of(&q, m1, s1)};
        tn_pw_pair(in, w, cin, cout, n, out + o, q.bias[o], q.bias[o + 1], &f[0], &f[1]);
    }
#endif
    for (; o < cout; o++) tn_pw_channel(&q, in, weight + o * cin, cin, cout, n, out, o);
}

void tn_pointwise(const tn_conv_t *p, const int8_t *in, int8_t *out) { tn_pointwise_flat(p, in, out); }

void tn_pointwise_at(const tn_conv_t *p, const int8_t *in, int32_t in_pitch, int8_t *out, int32_t out_pitch) {
    if (in_pitch == p->out_w && out_pitch == p->out_w) {
        tn_pointwise_flat(p, in, out);
        return;
    }
    /* Rows of a tile inside wider tensors: one flat run per row. */
    tn_conv_t r = *p;
    r.in_h = r.out_h = 1;
    for (int32_t y = 0; y < p->out_h; y++) tn_pointwise_flat(&r, in + y * in_pitch * p->in_c, out + y * out_pitch * p->out_c);
}

/* ---- kxk dense convolution --------------------------------------------------------------- */

/* The im2col column of output pixel (oy, ox): input + offset, 0 on the padding, written in order
 * and then (DSP) every full group of 4 swapped into (0, 2, 1, 3) order, two words at a time. */
static void tn_im2col(const tn_conv_t *p, const int8_t *in, int32_t in_pitch, int32_t oy, int32_t ox, int16_t *col) {
    const int32_t k = p->kernel, cin = p->in_c, len = k * k * cin, off = p->in_offset, run = k * cin;
    const int32_t ix0 = ox * p->stride - p->pad_left;
    /* A kernel row inside the image is one contiguous run of k * cin input bytes. */
    const int row_inside = ix0 >= 0 && ix0 + k <= p->in_w;
    int16_t *d = col;
    for (int32_t ky = 0; ky < k; ky++) {
        const int32_t iy = oy * p->stride + ky - p->pad_top;
        if (iy < 0 || iy >= p->in_h) {
            memset(d, 0, (size_t)run * sizeof(int16_t));
            d += run;
            continue;
        }
        const int8_t *x = in + (iy * in_pitch + ix0) * cin;
        if (row_inside) {
            int32_t i = 0;
            for (; i + 1 < run; i += 2) d[i] = (int16_t)(x[i] + off), d[i + 1] = (int16_t)(x[i + 1] + off);
            if (i < run) d[i] = (int16_t)(x[i] + off);
            d += run;
            continue;
        }
        for (int32_t kx = 0; kx < k; kx++, d += cin, x += cin) {
            const int32_t ix = ix0 + kx;
            if (ix < 0 || ix >= p->in_w) {
                memset(d, 0, (size_t)cin * sizeof(int16_t));
                continue;
            }
            for (int32_t c = 0; c < cin; c++) d[c] = (int16_t)(x[c] + off);
        }
    }
#if TN_DSP
    for (int32_t i = 0; i + 3 < len; i += 4) {
        const uint32_t lo = tn_ld32(col + i), hi = tn_ld32(col + i + 2);
        const uint32_t even = (lo & 0xffffu) | (hi << 16), odd = (lo >> 16) | (hi & 0xffff0000u);
        memcpy(col + i, &even, 4);
        memcpy(col + i + 2, &odd, 4);
    }
#else
    (void)len;
#endif
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
    for (; i < len; i++) acc += (int32_t)col[i] * w[i];
    return acc;
}

#if TN_DSP
/* Two columns against two weight rows: each weight word is loaded and sign-extended once for
 * both columns. */
TN_INLINE void tn_dot_col2x2(const int16_t *ca, const int16_t *cb, const int8_t *w0, const int8_t *w1, int32_t len, int32_t *acc) {
    int32_t a0 = acc[0], a1 = acc[1], b0 = acc[2], b1 = acc[3];
    int32_t i = 0;
    for (; i + 3 < len; i += 4) {
        const int32_t xa = (int32_t)tn_ld32(ca + i), xa2 = (int32_t)tn_ld32(ca + i + 2);
        const int32_t xb = (int32_t)tn_ld32(cb + i), xb2 = (int32_t)tn_ld32(cb + i + 2);
        const uint32_t u = tn_ld32(w0 + i), v = tn_ld32(w1 + i);
        const int32_t ue = __sxtb16(u), uo = tn_sxtb16_ror8(u);
        a0 = __smlad(xa, ue, a0);
        a0 = __smlad(xa2, uo, a0);
        b0 = __smlad(xb, ue, b0);
        b0 = __smlad(xb2, uo, b0);
        const int32_t ve = __sxtb16(v), vo = tn_sxtb16_ror8(v);
        a1 = __smlad(xa, ve, a1);
        a1 = __smlad(xa2, vo, a1);
        b1 = __smlad(xb, ve, b1);
        b1 = __smlad(xb2, vo, b1);
    }
    for (; i < len; i++) {
        const int32_t xa = ca[i], xb = cb[i], u = w0[i], v = w1[i];
        a0 += xa * u, a1 += xa * v, b0 += xb * u, b1 += xb * v;
    }
    acc[0] = a0, acc[1] = a1, acc[2] = b0, acc[3] = b1;
}
#endif

/* Output pixel px (row-major over the output's out_h x out_w) in rows `out_pitch` pixels apart. */
#define TN_PIXEL(out, px, ow, pitch, c) ((out) + (((px) / (ow)) * (pitch) + (px) % (ow)) * (c))

void tn_conv_at(const tn_conv_t *p, const int8_t *in, int32_t in_pitch, int8_t *out, int32_t out_pitch, int16_t *scratch) {
    const tn_out_t q = tn_out_of(p);
    const int32_t len = (int32_t)p->kernel * p->kernel * p->in_c;
    const int32_t cout = p->out_c, n = (int32_t)p->out_h * p->out_w;
    int16_t *col_a = scratch, *col_b = scratch + len;
    int32_t px = 0;
#if TN_DSP
    const int full = q.act_min == -128 && q.act_max == 127;
    /* Two pixels per pass, two output channels per step. */
    for (; px + 1 < n; px += 2) {
        tn_im2col(p, in, in_pitch, px / p->out_w, px % p->out_w, col_a);
        tn_im2col(p, in, in_pitch, (px + 1) / p->out_w, (px + 1) % p->out_w, col_b);
        int8_t *ya = TN_PIXEL(out, px, p->out_w, out_pitch, cout), *yb = TN_PIXEL(out, px + 1, p->out_w, out_pitch, cout);
        /* The last channel alone is computed twice when cout is odd. */
        for (int32_t o = 0; o < cout; o += 2) {
            const int32_t o1 = o + 1 < cout ? o + 1 : o;
            const int8_t *w0 = p->weight + o * len;
            int32_t acc[4] = {q.bias[o], q.bias[o1], q.bias[o], q.bias[o1]};
            tn_dot_col2x2(col_a, col_b, w0, p->weight + o1 * len, len, acc);
            const int32_t m0 = q.mult[o], m1 = q.mult[o1], s0 = q.shift[o], s1 = q.shift[o1];
            const int two = o1 != o;
            if (tn_fast(m0, s0) && tn_fast(m1, s1)) {
                const tn_fast_t f0 = tn_fast_of(&q, m0, s0), f1 = tn_fast_of(&q, m1, s1);
                ya[o] = tn_fast_out(acc[0], &f0, q.act_min, q.act_max, full);
                yb[o] = tn_fast_out(acc[2], &f0, q.act_min, q.act_max, full);
                if (two) {
                    ya[o1] = tn_fast_out(acc[1], &f1, q.act_min, q.act_max, full);
                    yb[o1] = tn_fast_out(acc[3], &f1, q.act_min, q.act_max, full);
                }
            } else {
                ya[o] = tn_out(&q, acc[0], m0, s0);
                yb[o] = tn_out(&q, acc[2], m0, s0);
                if (two) {
                    ya[o1] = tn_out(&q, acc[1], m1, s1);
                    yb[o1] = tn_out(&q, acc[3], m1, s1);
                }
            }
        }
    }
#endif
    for (; px < n; px++) {
        tn_im2col(p, in, in_pitch, px / p->out_w, px % p->out_w, col_a);
        int8_t *y = TN_PIXEL(out, px, p->out_w, out_pitch, cout);
        for (int32_t o = 0; o < cout; o++) y[o] = tn_conv_out(&q, tn_dot_col(col_a, p->weight + o * len, len, q.bias[o]), o);
    }
    (void)col_b;
}

void tn_conv(const tn_conv_t *p, const int8_t *in, int8_t *out, int16_t *scratch) { tn_conv_at(p, in, p->in_w, out, p->out_w, scratch); }

/* ---- depthwise convolution ----------------------------------------------------------------- */

/* The padded plane holds the raw input values, the padding the raw zero point (-in_offset): a
 * tap then contributes w * x_raw, and the missing w * in_offset of every tap (padding included,
 * where x_raw + in_offset = 0) is in the bias, which the code generator stores as bias +
 * in_offset * sum(w). Copying a value is then a load and a store, two at a time as one word. */

/* One output channel plane from the padded int16 plane (row pitch pw), kernel K known at compile
 * time so the taps unroll and the weights stay in registers; any output stage. */
#define TN_DW_MAX_K 7

/* A channel's k x k weights (every C-th byte from w) as int16, one row of TN_DW_MAX_K + 1 per
 * kernel row; unrolled where K is a constant. */
TN_INLINE void tn_dw_weights(int16_t *wk, const int8_t *w, int32_t C, const int32_t K) {
#pragma GCC unroll 7
    for (int32_t ky = 0; ky < K; ky++)
#pragma GCC unroll 7
        for (int32_t kx = 0; kx < K; kx++, w += C) wk[ky * (TN_DW_MAX_K + 1) + kx] = *w;
}

TN_INLINE int32_t tn_dw_acc(const int16_t *r, int32_t pw, const int16_t *wk, int32_t acc, const int32_t K) {
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
    return acc;
}

/* Any channel: the general output stage. */
TN_INLINE void tn_dw_plane_k(const tn_out_t *q, int32_t out_h, int32_t out_w, int32_t opitch, int32_t s, int32_t C, const int16_t *plane,
                             int32_t pw, const int16_t *wk, int32_t bias, int32_t c, int8_t *out, const int32_t K) {
    const int32_t m = q->mult[c], sh = q->shift[c];
    for (int32_t oy = 0; oy < out_h; oy++) {
        const int16_t *row0 = plane + oy * s * pw;
        int8_t *y = out + (oy * opitch) * C + c;
        for (int32_t ox = 0; ox < out_w; ox++, y += C) *y = tn_out_inline(q, tn_dw_acc(row0 + ox * s, pw, wk, bias, K), m, sh);
    }
}

/* With the DSP fast stage this serves only the rare channels it does not take, so one copy for
 * every kernel size; the plain C path runs every channel here, with the taps unrolled per size. */
static void tn_dw_plane(const tn_out_t *q, int32_t out_h, int32_t out_w, int32_t opitch, int32_t s, int32_t C, const int16_t *plane,
                        int32_t pw, const int16_t *wk, int32_t bias, int32_t c, int8_t *out, int32_t K) {
#if !TN_DSP
    switch (K) {
    case 3: tn_dw_plane_k(q, out_h, out_w, opitch, s, C, plane, pw, wk, bias, c, out, 3); return;
    case 5: tn_dw_plane_k(q, out_h, out_w, opitch, s, C, plane, pw, wk, bias, c, out, 5); return;
    case 7: tn_dw_plane_k(q, out_h, out_w, opitch, s, C, plane, pw, wk, bias, c, out, 7); return;
    default: break;
    }
#endif
    tn_dw_plane_k(q, out_h, out_w, opitch, s, C, plane, pw, wk, bias, c, out, K);
}

#if TN_DSP
/* The accumulators of two horizontally adjacent outputs, whose windows start at r and r + s: each
 * weight pair is loaded once for both (the second window's pairs are unaligned loads). */
TN_INLINE void tn_dw_acc2(const int16_t *r, int32_t s, int32_t pw, const int16_t *wk, int32_t *acc0, int32_t *acc1, const int32_t K) {
    int32_t a0 = *acc0, a1 = *acc1;
    const int16_t *r1 = r + s;
#pragma GCC unroll 7
    for (int32_t ky = 0; ky < K; ky++, r += pw, r1 += pw) {
        const int16_t *wr = wk + ky * (TN_DW_MAX_K + 1);
#pragma GCC unroll 3
        for (int32_t kx = 0; kx + 1 < K; kx += 2) {
            const int32_t w = (int32_t)tn_ld32(wr + kx);
            a0 = __smlad((int32_t)tn_ld32(r + kx), w, a0);
            a1 = __smlad((int32_t)tn_ld32(r1 + kx), w, a1);
        }
        const int32_t w = wr[K - 1];
        a0 += (int32_t)r[K - 1] * w;
        a1 += (int32_t)r1[K - 1] * w;
    }
    *acc0 = a0, *acc1 = a1;
}

/* A channel of the fast output stage with the whole int8 range as its clamp (every ReLU6 or linear
 * layer of a calibrated network): offset folded, one SSAT; two outputs per step. */
/* The shape of a layer's channel planes, shared by its channels' calls. */
typedef struct {
    int32_t out_h, out_w, s, C, pw, opitch; /* opitch: output row pitch in pixels */
    const int16_t *plane;
} tn_dw_shape_t;

TN_INLINE void tn_dw_plane_fast(const tn_dw_shape_t *g, const int16_t *wk, int32_t bias, const tn_fast_t *fp, int8_t *y, const int32_t K) {
    const tn_fast_t f = *fp;
    const int32_t out_h = g->out_h, out_w = g->out_w, s = g->s, C = g->C, pw = g->pw;
    const int16_t *plane = g->plane;
    const int32_t row_step = s * pw, skip = C * g->opitch;
    for (int32_t oy = out_h; oy > 0; oy--, plane += row_step, y += skip) {
        const int16_t *r = plane;
        int8_t *yy = y;
        int32_t ox = out_w;
        for (; ox > 1; ox -= 2, r += 2 * s, yy += 2 * C) {
            int32_t a0 = bias, a1 = bias;
            tn_dw_acc2(r, s, pw, wk, &a0, &a1, K);
            yy[0] = tn_fast_out(a0, &f, -128, 127, 1);
            yy[C] = tn_fast_out(a1, &f, -128, 127, 1);
        }
        if (ox) *yy = tn_fast_out(tn_dw_acc(r, pw, wk, bias, K), &f, -128, 127, 1);
    }
}

/* Four horizontally adjacent 3x3 stride-1 outputs (windows at r, r+1, r+2, r+3): per kernel row
 * five word loads (input pairs (x0,x1) (x1,x2) (x2,x3) (x3,x4) (x4,x5), the odd ones unaligned)
 * feed four SMLADs with the row's weight pair (w0,w1) and four SMLAxB with w2, so every input
 * word serves two outputs. In assembly: the compiler's allocation of the same C kept the
 * weights and loop state on the stack. */
TN_INLINE void tn_dw3_acc4(const int16_t *r, int32_t pitch, const int16_t *wk, int32_t *a0, int32_t *a1, int32_t *a2, int32_t *a3) {
    int32_t x0 = *a0, x1 = *a1, x2 = *a2, x3 = *a3;
    uint32_t t, w01, w2;
#define TN_DW3_ROW(off)                          \
    "ldr %[w01], [%[wk], #" #off "]\n\t"         \
    "ldr %[w2], [%[wk], #" #off " + 4]\n\t"      \
    "ldr %[t], [%[r]]\n\t"                       \
    "smlad %[x0], %[t], %[w01], %[x0]\n\t"       \
    "ldr %[t], [%[r], #2]\n\t"                   \
    "smlad %[x1], %[t], %[w01], %[x1]\n\t"       \
    "ldr %[t], [%[r], #4]\n\t"                   \
    "smlabb %[x0], %[t], %[w2], %[x0]\n\t"       \
    "smlatb %[x1], %[t], %[w2], %[x1]\n\t"       \
    "smlad %[x2], %[t], %[w01], %[x2]\n\t"       \
    "ldr %[t], [%[r], #6]\n\t"                   \
    "smlad %[x3], %[t], %[w01], %[x3]\n\t"       \
    "ldr %[t], [%[r], #8]\n\t"                   \
    "smlabb %[x2], %[t], %[w2], %[x2]\n\t"       \
    "smlatb %[x3], %[t], %[w2], %[x3]\n\t"       \
    "add %[r], %[r], %[pitch]\n\t"
    __asm__(TN_DW3_ROW(0) TN_DW3_ROW(16) TN_DW3_ROW(32)
            : [x0] "+r"(x0), [x1] "+r"(x1), [x2] "+r"(x2), [x3] "+r"(x3), [r] "+r"(r), [t] "=&r"(t), [w01] "=&r"(w01), [w2] "=&r"(w2)
            : [wk] "r"(wk), [pitch] "r"(pitch), "m"(*(const int16_t(*)[3 * (TN_DW_MAX_K + 1)])wk)
            : "memory");
#undef TN_DW3_ROW
    *a0 = x0, *a1 = x1, *a2 = x2, *a3 = x3;
}

/* A 3x3 stride-1 channel of the fast output stage: four outputs per step, then pairs. */
static void tn_dw_plane_fast3s1(const tn_dw_shape_t *g, const int16_t *wk, int32_t bias, const tn_fast_t *fp, int8_t *y) {
    const tn_fast_t f = *fp;
    const int32_t out_h = g->out_h, out_w = g->out_w, C = g->C, pw = g->pw, pitch = 2 * pw, skip = C * g->opitch;
    const int16_t *plane = g->plane;
    for (int32_t oy = out_h; oy > 0; oy--, plane += pw, y += skip) {
        const int16_t *r = plane;
        int8_t *yy = y;
        int32_t ox = out_w;
        for (; ox > 3; ox -= 4, r += 4, yy += 4 * C) {
            int32_t a0 = bias, a1 = bias, a2 = bias, a3 = bias;
            tn_dw3_acc4(r, pitch, wk, &a0, &a1, &a2, &a3);
            yy[0] = tn_fast_out(a0, &f, -128, 127, 1);
            yy[C] = tn_fast_out(a1, &f, -128, 127, 1);
            yy[2 * C] = tn_fast_out(a2, &f, -128, 127, 1);
            yy[3 * C] = tn_fast_out(a3, &f, -128, 127, 1);
        }
        for (; ox > 1; ox -= 2, r += 2, yy += 2 * C) {
            int32_t a0 = bias, a1 = bias;
            tn_dw_acc2(r, 1, pw, wk, &a0, &a1, 3);
            yy[0] = tn_fast_out(a0, &f, -128, 127, 1);
            yy[C] = tn_fast_out(a1, &f, -128, 127, 1);
        }
        if (ox) *yy = tn_fast_out(tn_dw_acc(r, pw, wk, bias, 3), &f, -128, 127, 1);
    }
}

/* One function per kernel size: each gets the whole register file (inlined into tn_depthwise's
 * channel loop, the row data and weights were spilled to the stack), and no pre-allocation
 * scheduling, which hoisted loads until they spilled. */
#define TN_DW_FAST_K(K)                                                                                                          \
    static __attribute__((noinline, optimize("no-schedule-insns"))) void tn_dw_fast##K(const tn_dw_shape_t *g, const int8_t *w,  \
                                                                                     int32_t bias, const tn_fast_t *fp, int8_t *y) { \
        int16_t wk[TN_DW_MAX_K * (TN_DW_MAX_K + 1)] __attribute__((aligned(4)));                                               \
        tn_dw_weights(wk, w, g->C, K);                                                                                         \
        if (K == 3 && g->s == 1)                                                                                               \
            tn_dw_plane_fast3s1(g, wk, bias, fp, y);                                                                           \
        else                                                                                                                   \
            tn_dw_plane_fast(g, wk, bias, fp, y, K);                                                                           \
    }
TN_DW_FAST_K(3)
TN_DW_FAST_K(5)
TN_DW_FAST_K(7)
#undef TN_DW_FAST_K
#endif

void tn_depthwise_at(const tn_conv_t *p, const int8_t *in, int32_t in_pitch, int8_t *out, int32_t out_pitch, int16_t *scratch) {
    const tn_out_t q = tn_out_of(p);
    const int32_t k = p->kernel, s = p->stride, C = p->in_c, oh = p->out_h, ow = p->out_w;
    const int32_t pad_top = p->pad_top, pad_left = p->pad_left, in_offset = p->in_offset;
    const int8_t *const weight = p->weight;
    const int32_t ph = (p->out_h - 1) * s + k, pw = (p->out_w - 1) * s + k;
    /* Input rows / columns that any tap reads. */
    const int32_t rows = p->in_h < ph - p->pad_top ? p->in_h : ph - p->pad_top;
    const int32_t cols = p->in_w < pw - p->pad_left ? p->in_w : pw - p->pad_left;
#if TN_DSP
    const int full = q.act_min == -128 && q.act_max == 127;
    const tn_dw_shape_t g = {oh, ow, s, C, pw, out_pitch, scratch};
#endif
    /* Weights of one channel as int16, one row of TN_DW_MAX_K + 1 per kernel row. */
    int16_t wk[TN_DW_MAX_K * (TN_DW_MAX_K + 1)] __attribute__((aligned(4)));
    /* The padding border is the raw zero point for every channel: fill the plane once. */
    for (int32_t i = 0, n = ph * pw; i < n; i++) scratch[i] = (int16_t)-in_offset;
    for (int32_t c = 0; c < C; c++) {
        for (int32_t y = 0; y < rows; y++) {
            const int8_t *x = in + (y * in_pitch) * C + c;
            int16_t *d = scratch + (y + pad_top) * pw + pad_left;
            int32_t xx = 0;
#if TN_DSP
            for (; xx + 1 < cols; xx += 2, x += 2 * C) {
                const uint32_t pair = ((uint32_t)(int32_t)x[0] & 0xffffu) | ((uint32_t)(int32_t)x[C] << 16);
                memcpy(d + xx, &pair, 4);
            }
#endif
            for (; xx < cols; xx++, x += C) d[xx] = x[0];
        }
        const int32_t bias = q.bias[c];
#if TN_DSP
        const int32_t m = q.mult[c], sh = q.shift[c];
        if (full && tn_fast(m, sh)) {
            const tn_fast_t f = tn_fast_of(&q, m, sh);
            switch (k) {
            case 3: tn_dw_fast3(&g, weight + c, bias, &f, out + c); continue;
            case 5: tn_dw_fast5(&g, weight + c, bias, &f, out + c); continue;
            case 7: tn_dw_fast7(&g, weight + c, bias, &f, out + c); continue;
            default: break;
            }
        }
#endif
        tn_dw_weights(wk, weight + c, C, k);
        tn_dw_plane(&q, oh, ow, out_pitch, s, C, scratch, pw, wk, bias, c, out, k);
    }
}

void tn_depthwise(const tn_conv_t *p, const int8_t *in, int8_t *out, int16_t *scratch) {
    tn_depthwise_at(p, in, p->in_w, out, p->out_w, scratch);
}

/* ---- residual add, average pool, fully connected ------------------------------------------ */

/* The ADD as its verified linear form (tn_add_t): two multiply-accumulates, a shift and a
 * saturation per element, four elements per step on one index. Element i is read before it is
 * written, so out may be a or b. */
TN_INLINE int8_t tn_add_lin1(int32_t a, int32_t b, int32_t ma, int32_t mb, int32_t c, int32_t k) {
#if TN_DSP
    return (int8_t)__ssat(((a * ma + c) + b * mb) >> k, 8);
#else
    return tn_clamp(((a * ma + c) + b * mb) >> k, -128, 127);
#endif
}

static void tn_add_linear(const tn_add_t *p, const int8_t *a, const int8_t *b, int8_t *out) {
    const int32_t ma = p->lin_a, mb = p->lin_b, c = p->lin_bias, k = p->lin_shift, n = (int32_t)p->size;
    int32_t i = 0;
    for (; i + 3 < n; i += 4) {
        const int32_t a0 = a[i], a1 = a[i + 1], a2 = a[i + 2], a3 = a[i + 3];
        const int32_t b0 = b[i], b1 = b[i + 1], b2 = b[i + 2], b3 = b[i + 3];
        out[i] = tn_add_lin1(a0, b0, ma, mb, c, k);
        out[i + 1] = tn_add_lin1(a1, b1, ma, mb, c, k);
        out[i + 2] = tn_add_lin1(a2, b2, ma, mb, c, k);
        out[i + 3] = tn_add_lin1(a3, b3, ma, mb, c, k);
    }
    for (; i < n; i++) out[i] = tn_add_lin1(a[i], b[i], ma, mb, c, k);
}

void tn_add(const tn_add_t *params, const int8_t *a, const int8_t *b, int8_t *out) {
    if (params->lin_shift > 0) {
        /* It reads every parameter before its first store. */
        tn_add_linear(params, a, b, out);
        return;
    }
    /* A layer without a linear form (none measured so far): the fixed-point arithmetic itself.
     * A local copy of the parameters: int8 stores may alias *params. */
    const tn_add_t q = *params, *const p = &q;
    for (uint32_t i = 0; i < p->size; i++) {
        int32_t x1 = tn_requant((a[i] + p->in1_offset) * (1 << 20), p->in1_mult, p->in1_shift);
        int32_t x2 = tn_requant((b[i] + p->in2_offset) * (1 << 20), p->in2_mult, p->in2_shift);
        out[i] = tn_clamp(tn_requant(x1 + x2, p->out_mult, p->out_shift) + p->out_offset, p->act_min, p->act_max);
    }
}

void tn_add_at(const tn_add_t *p, const int8_t *a, int32_t a_pitch, const int8_t *b, int32_t b_pitch, int8_t *out, int32_t out_pitch,
               int32_t rows, int32_t cols, int32_t c) {
    tn_add_t r = *p;
    if (a_pitch == cols && b_pitch == cols && out_pitch == cols) {
        r.size = (uint32_t)(rows * cols * c);
        tn_add(&r, a, b, out);
        return;
    }
    r.size = (uint32_t)(cols * c);
    for (int32_t y = 0; y < rows; y++) tn_add(&r, a + y * a_pitch * c, b + y * b_pitch * c, out + y * out_pitch * c);
}

/* ---- patch-based inference ------------------------------------------------------------------ */

/* The layer descriptor with the tile's geometry. */
static tn_conv_t tn_tile_geometry(const tn_conv_t *p, const tn_step_t *s) {
    tn_conv_t g = *p;
    g.in_h = s->in_h, g.in_w = s->in_w, g.out_h = s->out_h, g.out_w = s->out_w;
    g.pad_top = s->pad_top, g.pad_left = s->pad_left;
    return g;
}

void tn_tile_pointwise(const tn_conv_t *p, const tn_step_t *s, int8_t *arena) {
    const tn_conv_t g = tn_tile_geometry(p, s);
    tn_pointwise_at(&g, arena + s->in, s->in_pitch, arena + s->out, s->out_pitch);
}

void tn_tile_conv(const tn_conv_t *p, const tn_step_t *s, int8_t *arena, int16_t *scratch) {
    const tn_conv_t g = tn_tile_geometry(p, s);
    tn_conv_at(&g, arena + s->in, s->in_pitch, arena + s->out, s->out_pitch, scratch);
}

void tn_tile_depthwise(const tn_conv_t *p, const tn_step_t *s, int8_t *arena, int16_t *scratch) {
    const tn_conv_t g = tn_tile_geometry(p, s);
    tn_depthwise_at(&g, arena + s->in, s->in_pitch, arena + s->out, s->out_pitch, scratch);
}

void tn_tile_add(const tn_add_t *p, const tn_step_t *s, int8_t *arena, int32_t c) {
    tn_add_at(p, arena + s->in, s->in_pitch, arena + s->in2, s->in2_pitch, arena + s->out, s->out_pitch, s->out_h, s->out_w, c);
}

#ifdef TN_PROFILE
void tn_profile_layer(int layer, int end);
#define TN_KMARK(i, e) tn_profile_layer(i, e)
#else
#define TN_KMARK(i, e) ((void)0)
#endif

void tn_pointwise_add(const tn_conv_t *conv, const tn_add_t *add, int conv_first, const int8_t *in, int8_t *skip, int8_t *scratch,
                      int32_t chunk, int conv_layer) {
    tn_conv_t c = *conv;
    tn_add_t a = *add;
    const int32_t n = (int32_t)conv->out_h * conv->out_w, cin = conv->in_c, cout = conv->out_c;
    (void)conv_layer;
    c.in_h = c.out_h = 1;
    for (int32_t px = 0; px < n; px += chunk) {
        const int32_t m = n - px < chunk ? n - px : chunk;
        int8_t *const s = skip + px * cout;
        c.in_w = c.out_w = (uint16_t)m;
        a.size = (uint32_t)(m * cout);
        /* The chunk's pixels of the conv input are read before any of the chunk's shortcut bytes
         * is written, so the conv may read the shortcut itself. */
        TN_KMARK(conv_layer, 0);
        tn_pointwise(&c, in + px * cin, scratch);
        TN_KMARK(conv_layer, 1);
        TN_KMARK(conv_layer + 1, 0);
        if (conv_first)
            tn_add(&a, scratch, s, s);
        else
            tn_add(&a, s, scratch, s);
        TN_KMARK(conv_layer + 1, 1);
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
    const int32_t cin = p->in_c, cout = p->out_c;
#if TN_DSP
    /* Two outputs per step (the last alone computed twice when cout is odd): each input word is
     * loaded and sign-extended once for both. */
    for (int32_t o = 0; o < cout; o += 2) {
        const int8_t *w0 = p->weight + o * cin, *w1 = o + 1 < cout ? w0 + cin : w0;
        int32_t a0 = p->bias[o], a1 = p->bias[o + 1 < cout ? o + 1 : o], i = 0;
#define TN_FC_QUARTET(j)                                                                              \
    do {                                                                                              \
        const uint32_t x = tn_ld32(in + i + (j)), u = tn_ld32(w0 + i + (j)), v = tn_ld32(w1 + i + (j)); \
        const int32_t xe = __sxtb16(x), xo = tn_sxtb16_ror8(x);                                       \
        a0 = __smlad(xe, __sxtb16(u), a0);                                                            \
        a0 = __smlad(xo, tn_sxtb16_ror8(u), a0);                                                      \
        a1 = __smlad(xe, __sxtb16(v), a1);                                                            \
        a1 = __smlad(xo, tn_sxtb16_ror8(v), a1);                                                      \
    } while (0)
        for (; i + 7 < cin; i += 8) {
            TN_FC_QUARTET(0);
            TN_FC_QUARTET(4);
        }
        if (i + 3 < cin) {
            TN_FC_QUARTET(0);
            i += 4;
        }
#undef TN_FC_QUARTET
        for (; i < cin; i++) a0 += in[i] * w0[i], a1 += in[i] * w1[i];
        out[o] = tn_clamp(tn_requant_single(a0, p->mult, p->shift) + p->out_offset, p->act_min, p->act_max);
        if (o + 1 < cout) out[o + 1] = tn_clamp(tn_requant_single(a1, p->mult, p->shift) + p->out_offset, p->act_min, p->act_max);
    }
#else
    for (int32_t o = 0; o < cout; o++) {
        const int32_t acc = tn_dot8(in, p->weight + o * cin, cin, p->bias[o]);
        out[o] = tn_clamp(tn_requant_single(acc, p->mult, p->shift) + p->out_offset, p->act_min, p->act_max);
    }
#endif
}
