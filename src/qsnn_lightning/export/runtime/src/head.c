/* head.c: the 8-bit classifier of a step's integer features, summed into the logits; both loops
 * follow the spikes: set bits only, then nonzero features only (each cleared once used, so that
 * the features are all 0 between steps: qsnn_init clears them once). */
#include "qsnn_internal.h"

/* The integer features of this step, into the cleared features: counts summed over space per
 * channel (global pooling) or every count in (c, y, x) order (flatten). */
static void head_features(const qsnn_model_t *model, const qsnn_ctx_t *ctx, const qsnn_map_t *in)
{
    /* in locals: the stores to the features could alias the maps' and the head's bytes */
    int32_t *features = ctx->features;
    const uint32_t words = qsnn_words_for(in->channels), pixels = (uint32_t)in->height * in->width;
    const uint32_t planes = in->planes, global_pool = model->head->global_pool;
    const uint32_t *bits = qsnn_pixel_words(ctx->arena, in, 0, 0, 0);   /* [plane][y][x][word] */
    uint32_t w, pixel, p;
    for (p = 0; p < planes; ++p) {
        for (pixel = 0; pixel < pixels; ++pixel, bits += words) {
            for (w = 0; w < words; ++w) {
                uint32_t word;
                for (word = bits[w]; word != 0u; word &= word - 1u) {
                    uint32_t c = 32u * w + qsnn_lowest_bit(word);
                    features[global_pool ? c : c * pixels + pixel] += (int32_t)(1u << p);
                }
            }
        }
    }
}

/* summed[j] += B_j + sum over the nonzero features i of W'_ji * feature_i; the features cleared */
void qsnn_run_head(const qsnn_model_t *model, const qsnn_ctx_t *ctx)
{
    const qsnn_head_t *head = model->head;
    int32_t *features = ctx->features;
    const uint32_t classes = model->classes, count = model->head_features;   /* locals: `summed` aliases none */
    int32_t *summed = ctx->summed;
    uint32_t j, i;
    head_features(model, ctx, &model->maps[head->source]);
    for (j = 0; j < classes; ++j) summed[j] += head->bias[j];
    for (i = 0; i < count; ++i) {
        const int8_t *column = head->weight + i;
        const int32_t feature = features[i];
        if (feature == 0) continue;
        for (j = 0; j < classes; ++j) summed[j] += column[j * count] * feature;
        features[i] = 0;
    }
}
