/* stem.c: the input frame under the stem's kernel, for every stem (stem_*.c). */
#include <string.h>

#include "qsnn_internal.h"

void qsnn_pad_frame(const qsnn_model_t *model, const qsnn_ctx_t *ctx, const int8_t *frame)
{
    const uint32_t padding = model->stem_padding, height = model->input_height, width = model->input_width;
    const uint32_t padded_height = height + 2u * padding, padded_width = width + 2u * padding;
    uint32_t i, y;
    for (i = 0; i < model->input_channels; ++i) {
        for (y = 0; y < height; ++y) {
            memcpy(ctx->padded + (i * padded_height + y + padding) * padded_width + padding,
                   frame + (i * height + y) * width, width);
        }
    }
}

void qsnn_stem_taps(const qsnn_model_t *model, const qsnn_ctx_t *ctx, const qsnn_stage_t *stage, uint32_t y,
                    uint32_t x, int8_t *tap)
{
    const uint32_t padded_height = model->input_height + 2u * model->stem_padding;
    const uint32_t padded_width = model->input_width + 2u * model->stem_padding;
    uint32_t i, ky, kx, k = stage->kernel;
    for (i = 0; i < model->input_channels; ++i) {
        for (ky = 0; ky < k; ++ky) {
            const int8_t *row = ctx->padded + (i * padded_height + y * stage->stride + ky) * padded_width
                                + x * stage->stride;
            for (kx = 0; kx < k; ++kx) *tap++ = row[kx];
        }
    }
}
