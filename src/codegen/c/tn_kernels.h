/*
 * tn_kernels.h - int8 kernels of the tinynas C runtime.
 *
 * Tensors are batch-1 NHWC int8. Arithmetic is TFLite's int8 arithmetic (gemmlowp fixed-point
 * requantisation), so the outputs are bit-identical to the tinynas Rust reference executor and
 * to LiteRT's reference kernels. Plain C99; on cores with the DSP extension (__ARM_FEATURE_DSP:
 * Cortex-M4, M7, M33 with DSP) the MAC loops use SXTB16/SMLAD through ACLE intrinsics.
 * No dependency besides <stdint.h> and <string.h>.
 */
#ifndef TN_KERNELS_H
#define TN_KERNELS_H

#include <stdint.h>

/* A dense (kxk or 1x1) or depthwise convolution with its requantisation. */
typedef struct {
    uint16_t in_h, in_w, in_c;
    uint16_t out_h, out_w, out_c;
    uint8_t kernel, stride, pad_top, pad_left;
    int16_t in_offset;  /* minus the input zero point */
    int16_t out_offset; /* the output zero point */
    int16_t act_min, act_max;
    const int8_t *weight;   /* dense: [out_c][k][k][in_c]; depthwise: [k][k][c] */
    const int32_t *bias;    /* per output channel; 1x1 and depthwise: in_offset * sum(weights) folded in */
    const int32_t *mult;    /* per output channel Q31 multiplier */
    const int32_t *shift;   /* per output channel power-of-two exponent */
} tn_conv_t;

/* Residual addition (TFLite int8 ADD). With lin_shift > 0 the layer's ADD equals
 * sat8((a * lin_a + lin_bias + b * lin_b) >> lin_shift) on every int8 input pair (found and
 * checked on all 65,536 pairs by the code generator), which the kernel then computes. */
typedef struct {
    uint32_t size;
    int16_t in1_offset, in2_offset, out_offset;
    int16_t act_min, act_max;
    int32_t in1_mult, in1_shift, in2_mult, in2_shift, out_mult, out_shift;
    int32_t lin_a, lin_b, lin_bias, lin_shift;
} tn_add_t;

/* Fully connected layer on 1x1xC, per-tensor weights [out][in]. */
typedef struct {
    uint16_t in_c, out_c;
    int16_t out_offset;
    int16_t act_min, act_max;
    int32_t mult, shift;
    const int8_t *weight;
    const int32_t *bias; /* in_offset * sum(weights) folded in */
} tn_fc_t;

/* One layer of a patch stage on one tile (MCUNetV2 patch-based inference): where the tile's
 * input and output regions lie in the arena, their row pitches (pixels) inside the buffers that
 * hold them, and the tile's window geometry. Written by the code generator, one per tile and
 * stage layer. */
typedef struct {
    uint32_t in, in2, out; /* arena offsets: first input, second input (add), output */
    uint16_t in_h, in_w, out_h, out_w;
    uint16_t in_pitch, in2_pitch, out_pitch;
    uint8_t pad_top, pad_left; /* zero padding of this tile's window (0 inside the tensor) */
} tn_step_t;

/* 1x1 stride-1 convolution; no scratch. */
void tn_pointwise(const tn_conv_t *p, const int8_t *in, int8_t *out);
/* kxk dense convolution; scratch: 2 int16 columns of k*k*in_c (4*k*k*in_c bytes). */
void tn_conv(const tn_conv_t *p, const int8_t *in, int8_t *out, int16_t *scratch);
/* Depthwise convolution, channel by channel through one padded int16 plane
 * (scratch: 2*((out_h-1)*stride+k)*((out_w-1)*stride+k) bytes). `out` may equal `in`
 * (in-place): output (pixel, c) overwrites input (pixel, c), already copied to the plane. */
void tn_depthwise(const tn_conv_t *p, const int8_t *in, int8_t *out, int16_t *scratch);
/* Element-wise residual addition; `out` may equal `a` or `b`. */
void tn_add(const tn_add_t *p, const int8_t *a, const int8_t *b, int8_t *out);
/* A residual block's 1x1 project conv with its add fused (tn_pointwise, then tn_add into the
 * shortcut), `chunk` pixels at a time through `scratch` (chunk * out_c bytes): the sum
 * overwrites `skip`, and the conv output never exists as a whole. `conv_first`: the conv output
 * is input 1 of `add` (else input 2). `conv_layer` (the conv's; the add is conv_layer + 1) is
 * used by TN_PROFILE builds only. */
void tn_pointwise_add(const tn_conv_t *conv, const tn_add_t *add, int conv_first, const int8_t *in, int8_t *skip, int8_t *scratch,
                      int32_t chunk, int conv_layer);
/* The same on a region of wider tensors: input rows `in_pitch` pixels apart, output rows
 * `out_pitch` (the functions above are these with the descriptor's widths). */
void tn_pointwise_at(const tn_conv_t *p, const int8_t *in, int32_t in_pitch, int8_t *out, int32_t out_pitch);
void tn_conv_at(const tn_conv_t *p, const int8_t *in, int32_t in_pitch, int8_t *out, int32_t out_pitch, int16_t *scratch);
void tn_depthwise_at(const tn_conv_t *p, const int8_t *in, int32_t in_pitch, int8_t *out, int32_t out_pitch, int16_t *scratch);
void tn_add_at(const tn_add_t *p, const int8_t *a, int32_t a_pitch, const int8_t *b, int32_t b_pitch, int8_t *out, int32_t out_pitch,
               int32_t rows, int32_t cols, int32_t c);
/* A patch-stage layer on one tile: the layer's descriptor with the step's geometry, at the
 * step's arena offsets. */
void tn_tile_pointwise(const tn_conv_t *p, const tn_step_t *s, int8_t *arena);
void tn_tile_conv(const tn_conv_t *p, const tn_step_t *s, int8_t *arena, int16_t *scratch);
void tn_tile_depthwise(const tn_conv_t *p, const tn_step_t *s, int8_t *arena, int16_t *scratch);
void tn_tile_add(const tn_add_t *p, const tn_step_t *s, int8_t *arena, int32_t c);
/* Global average pool over h*w; output parameters equal the input's. scratch: 4*c bytes. */
void tn_avgpool(uint16_t h, uint16_t w, uint16_t c, const int8_t *in, int8_t *out, int32_t *scratch);
/* Fully connected. */
void tn_fully_connected(const tn_fc_t *p, const int8_t *in, int8_t *out);

#endif
