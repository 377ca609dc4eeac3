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

/* sum sign(w) x for output channel c of pixel (y, x): the k x k kernel at stride and padding over
 * `in`, weights [(ky * k + kx) * Cin + ci][groups] */
static int32_t binary_sum(uint32_t *arena, const qsnn_map_t *in, const uint32_t *weights, uint32_t groups, uint32_t k,
                          uint32_t stride, uint32_t padding, uint32_t y, uint32_t x, uint32_t c)
{
    int32_t acc = 0;
    uint32_t ky, kx, ci;
    for (ky = 0; ky < k; ++ky) {
        for (kx = 0; kx < k; ++kx) {
            int32_t iy = (int32_t)(y * stride + ky) - (int32_t)padding, ix = (int32_t)(x * stride + kx) - (int32_t)padding;
            for (ci = 0; ci < in->channels; ++ci) {
                uint32_t negative = (weights[((ky * k + kx) * in->channels + ci) * groups + c / 32u] >> (c % 32u)) & 1u;
                int32_t value = input_value(arena, in, iy, ix, ci);
                acc += negative ? -value : value;
            }
        }
    }
    return acc;
}

void qsnn_run_conv(const qsnn_model_t *model, const qsnn_ctx_t *ctx, const qsnn_stage_t *stage,
                   const qsnn_map_t *out)
{
    const qsnn_packed_scratch_t *scratch = (const qsnn_packed_scratch_t *)ctx->scratch;
    const qsnn_map_t *in = &model->maps[stage->source], *shortcut = &model->maps[stage->residual_source];
    const qsnn_lif_t *lif = &stage->lif;
    const uint32_t groups = qsnn_words_for(out->channels);
    int32_t *current = scratch->currents;
    uint32_t y, x, c;
    for (y = 0; y < out->height; ++y) {
        for (x = 0; x < out->width; ++x) {
            for (c = 0; c < out->channels; ++c) {
                int32_t acc = binary_sum(ctx->arena, in, stage->weight_bits, groups, stage->kernel, stage->stride,
                                         stage->padding, y, x, c);
                current[c] = lif->multiplier[c] * acc + lif->bias[c];
                if (stage->residual == QSNN_RESIDUAL_CONV) {   /* 1x1, strided */
                    current[c] += stage->residual_multiplier[c] * binary_sum(ctx->arena, shortcut, stage->residual_bits,
                                                                             groups, 1u, stage->residual_stride, 0u, y, x, c);
                }
            }
            if (stage->residual == QSNN_RESIDUAL_IDENTITY) {
                qsnn_add_identity(ctx->arena, stage, shortcut, out->channels, y, x, current);
            }
            qsnn_fire_pixel(model, lif, current, out->channels,
                            qsnn_state_words(model, ctx, lif, out->channels, out->width, y, x),
                            qsnn_pixel_words(ctx->arena, out, 0, y, x));
        }
    }
}
