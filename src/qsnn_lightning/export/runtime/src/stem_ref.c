/* stem_ref.c: the reference stem: per output pixel and channel, the sum of the int8 taps times the
 * int16 weights, one product at a time; the LIF of lif_ref.c. */
#include "qsnn_internal.h"

/* weight of tap t of channel c: the low (t even) or high (t odd) half of pair t / 2 */
static int32_t stem_weight(const qsnn_model_t *model, const qsnn_stage_t *stage, uint32_t c, uint32_t t)
{
    int32_t pair = stage->weight_pairs[c * (model->stem_taps / 2u) + t / 2u];
    return t % 2u ? pair >> 16 : (int16_t)(pair & 0xFFFF);
}

void qsnn_run_stem(const qsnn_model_t *model, const qsnn_ctx_t *ctx, const qsnn_stage_t *stage,
                   const qsnn_map_t *out, const int8_t *frame)
{
    const qsnn_packed_scratch_t *scratch = (const qsnn_packed_scratch_t *)ctx->scratch;
    const qsnn_lif_t *lif = &stage->lif;
    const uint32_t taps = model->input_channels * stage->kernel * stage->kernel;
    uint32_t y, x, c, t;
    qsnn_pad_frame(model, ctx, frame);
    for (y = 0; y < out->height; ++y) {
        for (x = 0; x < out->width; ++x) {
            qsnn_stem_taps(model, ctx, stage, y, x, scratch->taps);
            for (c = 0; c < out->channels; ++c) {
                int32_t acc = 0;
                for (t = 0; t < taps; ++t) acc += stem_weight(model, stage, c, t) * scratch->taps[t];
                /* ((acc * 2^R) * M_c) >> 32 + B_c */
                scratch->currents[c] = (int32_t)(((int64_t)(acc * (int32_t)(1u << lif->acc_shift)) * lif->multiplier[c]) >> 32)
                                       + lif->bias[c];
            }
            qsnn_fire_pixel(model, lif, scratch->currents, out->channels,
                            qsnn_state_words(model, ctx, lif, out->channels, out->width, y, x),
                            qsnn_pixel_words(ctx->arena, out, 0, y, x));
        }
    }
}
