/* stem_mcu.c: the 8-bit conv of the int8 frame on the microcontrollers: the taps of a pixel as
 * int16 pairs, two products per instruction (SMLAD on the Cortex-M4), the LIF of lif_mcu.c.
 * Compiled once for each common kernel (3x3 over one input channel, or over two: the event
 * cameras' polarities) and once for any: with constant shapes the taps are read straight from
 * the padded frame, the pairs stay in registers and the dot products unroll. A pixel whose taps
 * equal the last computed pixel's (a uniform background, an event frame's empty regions) keeps
 * its currents: the dot products are skipped, and its LIF is remembered (lif_mcu.c). */
#include "qsnn_internal.h"

#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#endif

/* sum of the products of two strings of `count` int16 pairs (tap 2i in the low half, 2i + 1 in the high) */
static QSNN_ALWAYS_INLINE int32_t dot_pairs(const int32_t *weight, const int32_t *taps, const uint32_t count)
{
    int32_t acc = 0;
    uint32_t i;
#if defined(__GNUC__)
#pragma GCC unroll 16
#endif
    for (i = 0; i < count; ++i) {
#if defined(__ARM_FEATURE_DSP)
        acc = i == 0u ? __smuad(weight[0], taps[0]) : __smlad(weight[i], taps[i], acc);   /* two products */
#else
        acc += (int16_t)(weight[i] & 0xFFFF) * (int16_t)(taps[i] & 0xFFFF) + (weight[i] >> 16) * (taps[i] >> 16);
#endif
    }
    return acc;
}

/* tap 2i in the low half of an int16 pair, 2i + 1 in the high half */
static inline uint32_t pair_half(int8_t tap, uint32_t t) { return (uint32_t)(uint16_t)tap << (t % 2u * 16u); }

/* The pairs of output pixel (y, x) into `pairs` (the taps in (ci, ky, kx) order, an odd count's
 * last high half 0): read from the padded frame when `channels` and `k` are constant (nonzero),
 * else through qsnn_stem_taps. Returns nonzero if they differ from what `pairs` held. */
static QSNN_ALWAYS_INLINE uint32_t load_pairs(const qsnn_model_t *model, const qsnn_ctx_t *ctx,
                                              const qsnn_stage_t *stage, uint32_t y, uint32_t x, int32_t *pairs,
                                              const uint32_t pair_count, const uint32_t channels, const uint32_t k)
{
    const uint32_t padded_height = model->input_height + 2u * model->stem_padding;
    const uint32_t padded_width = model->input_width + 2u * model->stem_padding;
    const int8_t *corner = ctx->padded + (y * padded_width + x) * stage->stride;
    int8_t *taps = ((const qsnn_packed_scratch_t *)ctx->scratch)->taps;
    uint32_t i, t, changed = 0;
    if (channels == 0u) qsnn_stem_taps(model, ctx, stage, y, x, taps);
#if defined(__GNUC__)
#pragma GCC unroll 16
#endif
    for (i = 0; i < pair_count; ++i) {
        uint32_t pair = 0;
        for (t = 2u * i; t < 2u * i + 2u; ++t) {
            if (channels == 0u) {
                pair |= pair_half(taps[t], t);
            } else if (t < channels * k * k) {
                uint32_t ci = t / (k * k), ky = t / k % k, kx = t % k;
                pair |= pair_half(corner[(ci * padded_height + ky) * padded_width + kx], t);
            }
        }
        changed |= pair ^ (uint32_t)pairs[i];
        pairs[i] = (int32_t)pair;
    }
    return changed;
}

/* The per-layer constants of the stem's currents, in locals: the stores to the currents alias none */
typedef struct {
    const int32_t *multiplier, *bias;
    int32_t scale;   /* 2^R */
    uint32_t channels;
} stem_constants_t;

/* current[c] = ((acc * 2^R) * M_c) >> 32 + B_c (the high word of one SMULL on the Cortex-M4) for
 * every channel, acc the dot product of `count` pairs with the channel's weights weight[c * stride..] */
static QSNN_ALWAYS_INLINE void stem_currents(const stem_constants_t *k, const int32_t *weight, uint32_t stride,
                                             const int32_t *pairs, const uint32_t count, int32_t *current)
{
    uint32_t c;
    for (c = 0; c < k->channels; ++c) {
        int32_t acc = dot_pairs(weight + c * stride, pairs, count) * k->scale;
        current[c] = (int32_t)(((int64_t)acc * k->multiplier[c]) >> 32) + k->bias[c];
    }
}

/* The stem with `pair_count` pairs of taps a pixel, `pairs` room for them; `channels` and `k`
 * the constant input channels and kernel size, or 0 for any. A window of an event frame with one
 * nonzero pair (a lone event) takes one product a channel. */
static QSNN_ALWAYS_INLINE void run_pixels(const qsnn_model_t *model, const qsnn_ctx_t *ctx, const qsnn_stage_t *stage,
                                          const qsnn_map_t *out, int32_t *pairs, const uint32_t pair_count,
                                          const uint32_t channels, const uint32_t k)
{
    const qsnn_packed_scratch_t *scratch = (const qsnn_packed_scratch_t *)ctx->scratch;
    const qsnn_lif_t *lif = &stage->lif;
    int32_t *current = scratch->currents;
    qsnn_fire_memo_t memo;
    stem_constants_t constants;
    uint32_t y, x, i;
    constants.multiplier = lif->multiplier;
    constants.bias = lif->bias;
    constants.scale = (int32_t)(1u << lif->acc_shift);
    constants.channels = out->channels;
    scratch->taps[model->stem_taps - 1u] = 0;   /* the generic path's odd last tap */
    memo.valid = 0;
    for (y = 0; y < out->height; ++y) {
        for (x = 0; x < out->width; ++x) {
            if (load_pairs(model, ctx, stage, y, x, pairs, pair_count, channels, k) != 0u || y + x == 0u
                || QSNN_WORST) {   /* worst case: every pixel computed */
                uint32_t nonzero = 0, last = 0;
                int32_t value = 0;
                if (model->event_frames) {   /* images are dense: nothing to find */
#if defined(__GNUC__)
#pragma GCC unroll 16
#endif
                    for (i = 0; i < pair_count; ++i) {
                        if (pairs[i] != 0) {
                            ++nonzero;
                            last = i;
                            value = pairs[i];
                        }
                    }
                }
                if (nonzero == 1u) {
                    stem_currents(&constants, stage->weight_pairs + last, pair_count, &value, 1u, current);
                } else {
                    stem_currents(&constants, stage->weight_pairs, pair_count, pairs, pair_count, current);
                }
                memo.valid = 0;
            }
            qsnn_fire_pixel_memo(model, lif, current, out->channels,
                                 qsnn_state_words(model, ctx, lif, out->channels, out->width, y, x),
                                 qsnn_pixel_words(ctx->arena, out, 0, y, x), &memo);
        }
    }
}

void qsnn_run_stem(const qsnn_model_t *model, const qsnn_ctx_t *ctx, const qsnn_stage_t *stage,
                   const qsnn_map_t *out, const int8_t *frame)
{
    qsnn_pad_frame(model, ctx, frame);
    if (stage->kernel == 3u && model->input_channels == 1u) {
        int32_t pairs[5] = {0};
        run_pixels(model, ctx, stage, out, pairs, 5u, 1u, 3u);
    } else if (stage->kernel == 3u && model->input_channels == 2u) {
        int32_t pairs[9] = {0};
        run_pixels(model, ctx, stage, out, pairs, 9u, 2u, 3u);
    } else {
        run_pixels(model, ctx, stage, out, ((const qsnn_packed_scratch_t *)ctx->scratch)->pairs, model->stem_taps / 2u,
                   0u, 0u);
    }
}
