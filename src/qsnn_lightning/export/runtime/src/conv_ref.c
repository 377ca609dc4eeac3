/* conv_ref.c: the reference binary conv: per output pixel and channel, acc = sum over the kernel
 * of sign(w) x, x the input count (sum over the planes p of 2^p bit_p), sign -1 where the weight
 * bit is set; current = M_c acc + B_c (+ the shortcut's); the LIF of lif_ref.c. */
#include "qsnn_internal.h"

/* The input value of channel ci at (iy, ix) of a map: its count over the planes; 0 outside. */
static int32_t input_value(uint32_t *arena, const qsnn_map_t *in, int32_t iy, int32_t ix, uint32_t ci)
{
    int32_t value = 0;
    uint32_t p;
    if (iy < 0 || iy >= (int32_t)in->height || ix < 0 || ix >= (int32_t)in->width) return 0;
    for (p = 0; p < in->planes; ++p) {
        const uint32_t *bits = qsnn_pixel_words(arena, in, p, (uint32_t)iy, (uint32_t)ix);
        value += (int32_t)(((bits[ci / 32u] >> (ci % 32u)) & 1u) << p);
    }
    return value;
}

/* acc[c] = sum sign(w) x for every output channel c of pixel (y, x): the k x k kernel at stride
 * and padding over `in`, weights [(ky * k + kx) * Cin + ci][groups] */
static void binary_sums(uint32_t *arena, const qsnn_map_t *in, const uint32_t *weights, uint32_t groups, uint32_t k,
                        uint32_t stride, uint32_t padding, uint32_t y, uint32_t x, uint32_t channels, int32_t *acc)
{
    uint32_t ky, kx, ci, c;
    for (c = 0; c < channels; ++c) acc[c] = 0;
    for (ky = 0; ky < k; ++ky) {
        for (kx = 0; kx < k; ++kx) {
            int32_t iy = (int32_t)(y * stride + ky) - (int32_t)padding, ix = (int32_t)(x * stride + kx) - (int32_t)padding;
            for (ci = 0; ci < in->channels; ++ci) {
                const uint32_t *negative = weights + ((ky * k + kx) * in->channels + ci) * groups;
                int32_t value = input_value(arena, in, iy, ix, ci);
                if (value == 0) continue;   /* no spike there: nothing to add */
                for (c = 0; c < channels; ++c) acc[c] += (negative[c / 32u] >> (c % 32u)) & 1u ? -value : value;
            }
        }
    }
}

void qsnn_run_conv(const qsnn_model_t *model, const qsnn_ctx_t *ctx, const qsnn_stage_t *stage,
                   const qsnn_map_t *out)
{
    const qsnn_packed_scratch_t *scratch = (const qsnn_packed_scratch_t *)ctx->scratch;
    const qsnn_map_t *in = &model->maps[stage->source], *shortcut = &model->maps[stage->residual_source];
    const qsnn_lif_t *lif = &stage->lif;
    const uint32_t groups = qsnn_words_for(out->channels), channels = out->channels;
    int32_t *current = scratch->currents, *shortcut_acc = scratch->negative;
    uint32_t y, x, c;
    for (y = 0; y < out->height; ++y) {
        for (x = 0; x < out->width; ++x) {
            binary_sums(ctx->arena, in, stage->weight_bits, groups, stage->kernel, stage->stride, stage->padding, y, x,
                        channels, current);
            for (c = 0; c < channels; ++c) current[c] = lif->multiplier[c] * current[c] + lif->bias[c];
            if (stage->residual == QSNN_RESIDUAL_IDENTITY) {
                qsnn_add_identity(ctx->arena, stage, shortcut, channels, y, x, current);
            } else if (stage->residual == QSNN_RESIDUAL_CONV) {   /* 1x1, strided */
                binary_sums(ctx->arena, shortcut, stage->residual_bits, groups, 1u, stage->residual_stride, 0u, y, x,
                            channels, shortcut_acc);
                for (c = 0; c < channels; ++c) current[c] += stage->residual_multiplier[c] * shortcut_acc[c];
            }
            qsnn_fire_pixel(model, lif, current, channels,
                            qsnn_state_words(model, ctx, lif, channels, out->width, y, x),
                            qsnn_pixel_words(ctx->arena, out, 0, y, x));
        }
    }
}
