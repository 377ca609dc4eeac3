/* head.c: the 8-bit classifier of a step's integer features, summed into the logits. */
#include <string.h>

#include "qsnn_internal.h"

/* The integer features of this step: counts summed over space per channel (global pooling) or
 * every count in (c, y, x) order (flatten). */
static void head_features(const qsnn_model_t *model, const qsnn_ctx_t *ctx, const qsnn_map_t *in)
{
    int32_t *features = ctx->features;
    uint32_t c, y, x, p;
    memset(features, 0, model->head_features * sizeof *features);
    for (p = 0; p < in->planes; ++p) {
        for (y = 0; y < in->height; ++y) {
            for (x = 0; x < in->width; ++x) {
                const uint32_t *bits = qsnn_pixel_words(ctx->arena, in, p, y, x);
                for (c = 0; c < in->channels; ++c) {
                    int32_t value = (int32_t)(((bits[c / 32u] >> (c % 32u)) & 1u) << p);
                    features[model->head->global_pool ? c : (c * in->height + y) * in->width + x] += value;
                }
            }
        }
    }
}

void qsnn_run_head(const qsnn_model_t *model, const qsnn_ctx_t *ctx)
{
    const qsnn_head_t *head = model->head;
    uint32_t j, i;
    head_features(model, ctx, &model->maps[head->source]);
    for (j = 0; j < model->classes; ++j) {
        const int8_t *row = head->weight + j * model->head_features;
        int32_t sum = head->bias[j];
        for (i = 0; i < model->head_features; ++i) sum += row[i] * ctx->features[i];
        ctx->summed[j] += sum;
    }
}
