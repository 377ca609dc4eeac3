/* stem_host.c: the 8-bit conv of the int8 frame on the host: for each output pixel, the products
 * of its taps with every channel's weights, tap by tap (int16 x int16 products the compiler
 * vectorizes); the LIF of lif_host.c over the whole layer. Compiled once for each common number
 * of channels (16, 32, 64) and once for any: with a constant count the channel loops vectorize
 * without remainders. */
#include "qsnn_internal.h"

/* The stem's currents for `channels` channels; `weight` holds the int16 weights tap-major; `acc`
 * room for a pixel's sums (a local array where `channels` is constant: registers). */
static QSNN_ALWAYS_INLINE void run_pixels(const qsnn_model_t *model, const qsnn_ctx_t *ctx, const qsnn_stage_t *stage,
                                          const qsnn_map_t *out, const int16_t *weight, int32_t *acc,
                                          const uint32_t channels)
{
    const qsnn_host_scratch_t *scratch = (const qsnn_host_scratch_t *)ctx->scratch;
    const qsnn_lif_t *lif = &stage->lif;
    const int32_t scale = (int32_t)(1u << lif->acc_shift);
    const uint32_t taps = model->input_channels * stage->kernel * stage->kernel;
    const uint32_t padded_width = model->input_width + 2u * model->stem_padding;
    const uint32_t *offset = scratch->tap_offsets;
    int32_t *current = scratch->currents;
    uint32_t y, x, c, t;
    for (y = 0; y < out->height; ++y) {
        for (x = 0; x < out->width; ++x, current += channels) {
            const int8_t *corner = ctx->padded + (y * padded_width + x) * stage->stride;
            const int16_t *row = weight;
            for (c = 0; c < channels; ++c) acc[c] = 0;
            for (t = 0; t < taps; ++t, row += channels) {   /* int16 x int16 products: SSE2's pmullw and pmulhw */
                const int16_t tap = corner[offset[t]];
                for (c = 0; c < channels; ++c) acc[c] += row[c] * tap;
            }
            for (c = 0; c < channels; ++c) {   /* ((acc * 2^R) * M_c) >> 32 + B_c */
                current[c] = (int32_t)(((int64_t)(acc[c] * scale) * lif->multiplier[c]) >> 32) + lif->bias[c];
            }
        }
    }
}

void qsnn_host_stem_init(const qsnn_model_t *model, const qsnn_host_scratch_t *scratch)
{
    const qsnn_stage_t *stage = model->stages;   /* the stem is stage 0 */
    const uint32_t taps = model->stem_taps, channels = model->stem_channels;
    const uint32_t padded_height = model->input_height + 2u * model->stem_padding;
    const uint32_t padded_width = model->input_width + 2u * model->stem_padding;
    uint32_t t, c, ci, ky, kx;
    for (c = 0; c < channels; ++c) {   /* the int16 pairs, tap-major [tap][channel] */
        for (t = 0; t < taps; ++t) {
            int32_t pair = stage->weight_pairs[c * (taps / 2u) + t / 2u];
            scratch->stem_weight[t * channels + c] = (int16_t)(t % 2u ? pair >> 16 : pair & 0xFFFF);
        }
    }
    for (t = 0, ci = 0; ci < model->input_channels; ++ci) {   /* tap t's place in the padded frame, (ci, ky, kx) */
        for (ky = 0; ky < stage->kernel; ++ky) {
            for (kx = 0; kx < stage->kernel; ++kx) scratch->tap_offsets[t++] = (ci * padded_height + ky) * padded_width + kx;
        }
    }
}

void qsnn_run_stem(const qsnn_model_t *model, const qsnn_ctx_t *ctx, const qsnn_stage_t *stage,
                   const qsnn_map_t *out, const int8_t *frame)
{
    const qsnn_host_scratch_t *scratch = (const qsnn_host_scratch_t *)ctx->scratch;
    const int16_t *weight = scratch->stem_weight;   /* tap-major [tap][channel], from qsnn_host_stem_init */
    const uint32_t channels = out->channels;
    qsnn_pad_frame(model, ctx, frame);
    if (channels == 16u) {
        int32_t acc[16];
        run_pixels(model, ctx, stage, out, weight, acc, 16u);
    } else if (channels == 32u) {
        int32_t acc[32];
        run_pixels(model, ctx, stage, out, weight, acc, 32u);
    } else if (channels == 64u) {
        int32_t acc[64];
        run_pixels(model, ctx, stage, out, weight, acc, 64u);
    } else {
        run_pixels(model, ctx, stage, out, weight, scratch->acc, channels);
    }
    qsnn_fire_layer(model, ctx, &stage->lif, out, qsnn_host_levels(model, ctx, stage));
}
