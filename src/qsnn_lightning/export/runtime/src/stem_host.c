/* stem_host.c: the 8-bit conv of the int8 frame on the host: for each output pixel, the products
 * of its taps with every channel's weights, tap by tap (int16 x int16 products the compiler
 * vectorizes); the LIF of lif_host.c over the whole layer. */
#include "qsnn_internal.h"

void qsnn_run_stem(const qsnn_model_t *model, const qsnn_ctx_t *ctx, const qsnn_stage_t *stage,
                   const qsnn_map_t *out, const int8_t *frame)
{
    const qsnn_host_scratch_t *scratch = (const qsnn_host_scratch_t *)ctx->scratch;
    const qsnn_lif_t *lif = &stage->lif;
    const int32_t scale = (int32_t)(1u << lif->acc_shift);
    const uint32_t taps_count = model->stem_taps, channels = out->channels;
    int16_t *weight = scratch->stem_weight;   /* the int16 pairs, tap-major [tap][channel] */
    int32_t *current = scratch->currents;
    int8_t *taps = scratch->taps;   /* the pixel's taps; the last stays 0 where the pairs are padded */
    uint32_t y, x, t, c;
    for (c = 0; c < channels; ++c) {
        for (t = 0; t < taps_count; ++t) {
            int32_t pair = stage->weight_pairs[c * (taps_count / 2u) + t / 2u];
            weight[t * channels + c] = (int16_t)(t % 2u ? pair >> 16 : pair & 0xFFFF);
        }
    }
    taps[taps_count - 1u] = 0;
    qsnn_pad_frame(model, ctx, frame);
    for (y = 0; y < out->height; ++y) {
        for (x = 0; x < out->width; ++x, current += channels) {   /* acc_c, then the current, in place */
            qsnn_stem_taps(model, ctx, stage, y, x, taps);
            for (c = 0; c < channels; ++c) current[c] = 0;
            for (t = 0; t < taps_count; ++t) {   /* int16 x int16 products: SSE2's pmullw and pmulhw */
                const int16_t tap = taps[t];
                const int16_t *row = weight + t * channels;
                for (c = 0; c < channels; ++c) current[c] += row[c] * tap;
            }
            for (c = 0; c < channels; ++c) {   /* ((acc * 2^R) * M_c) >> 32 + B_c */
                current[c] = (int32_t)(((int64_t)(current[c] * scale) * lif->multiplier[c]) >> 32) + lif->bias[c];
            }
        }
    }
    qsnn_fire_layer(model, ctx, lif, out, qsnn_host_levels(model, ctx, stage));
}
