/* stem_mcu.c: the 8-bit conv of the int8 frame on the microcontrollers: the taps of a pixel as
 * int16 pairs, two products per instruction (SMLAD on the Cortex-M4), the LIF of lif_mcu.c.
 * Compiled once for each common number of pairs (Cin * k * k / 2 rounded up: 5 for one input
 * channel and a 3x3 kernel, 9 for two, the event cameras' polarities) and once for any number:
 * with a constant count the pairs stay in registers and the dot products unroll. */
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
        acc = __smlad(weight[i], taps[i], acc);   /* two 16 x 16 products per instruction */
#else
        acc += (int16_t)(weight[i] & 0xFFFF) * (int16_t)(taps[i] & 0xFFFF) + (weight[i] >> 16) * (taps[i] >> 16);
#endif
    }
    return acc;
}

/* The stem with `pair_count` pairs of taps a pixel, `pairs` room for them. */
static QSNN_ALWAYS_INLINE void run_pixels(const qsnn_model_t *model, const qsnn_ctx_t *ctx, const qsnn_stage_t *stage,
                                          const qsnn_map_t *out, int32_t *pairs, const uint32_t pair_count)
{
    const qsnn_packed_scratch_t *scratch = (const qsnn_packed_scratch_t *)ctx->scratch;
    const qsnn_lif_t *lif = &stage->lif;
    int8_t *taps = scratch->taps;   /* the frame under the kernel, (ci, ky, kx) order; the last 0 */
    int32_t *current = scratch->currents;
    uint32_t y, x, i, c;
    taps[model->stem_taps - 1u] = 0;
    for (y = 0; y < out->height; ++y) {
        for (x = 0; x < out->width; ++x) {
            qsnn_stem_taps(model, ctx, stage, y, x, taps);
#if defined(__GNUC__)
#pragma GCC unroll 16
#endif
            for (i = 0; i < pair_count; ++i) {   /* int16 pairs: tap 2i low, 2i + 1 high */
                pairs[i] = (int32_t)((uint32_t)(uint16_t)taps[2u * i] | ((uint32_t)(uint16_t)taps[2u * i + 1u] << 16));
            }
            for (c = 0; c < out->channels; ++c) {
                /* ((acc * 2^R) * M_c) >> 32 + B_c: the high word of one SMULL on the Cortex-M4 */
                int32_t acc = dot_pairs(stage->weight_pairs + c * pair_count, pairs, pair_count)
                              * (int32_t)(1u << lif->acc_shift);
                current[c] = (int32_t)(((int64_t)acc * lif->multiplier[c]) >> 32) + lif->bias[c];
            }
            qsnn_fire_pixel(model, lif, current, out->channels,
                            qsnn_state_words(model, ctx, lif, out->channels, out->width, y, x),
                            qsnn_pixel_words(ctx->arena, out, 0, y, x));
        }
    }
}

void qsnn_run_stem(const qsnn_model_t *model, const qsnn_ctx_t *ctx, const qsnn_stage_t *stage,
                   const qsnn_map_t *out, const int8_t *frame)
{
    const uint32_t pair_count = model->stem_taps / 2u;
    qsnn_pad_frame(model, ctx, frame);
    if (pair_count == 5u) {
        int32_t pairs[5];
        run_pixels(model, ctx, stage, out, pairs, 5u);
    } else if (pair_count == 9u) {
        int32_t pairs[9];
        run_pixels(model, ctx, stage, out, pairs, 9u);
    } else {
        run_pixels(model, ctx, stage, out, ((const qsnn_packed_scratch_t *)ctx->scratch)->pairs, pair_count);
    }
}
