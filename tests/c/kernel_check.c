/* The stem and binary conv kernels of one build path on random inputs (tests/test_export.py builds
 * it for every path against one export and compares the outputs, the reference path's with the
 * others'):
 *
 *   kernel_check
 *
 * For every stem or conv stage of the model, in a fresh context: six calls on random inputs (a
 * random int8 frame, nonzero at a density of 1, 1/2, 1/4 then 1/8: windows of zeros, of one, two
 * or more nonzero pairs of taps; or random input maps, spikes at a density of 1/2, 1/4, 1/8 then
 * 1/16 and pooled counts 0..4, the shortcut's map too), the last two with the left half of the
 * input uniform (the frame 0 then another value, the maps empty: pixels the runtime may skip or
 * remember), the membrane levels carried from call to call; after each call the line
 * "<stage> <call> <word> <word> ..." of the output spike map. */
#include <stdio.h>
#include <string.h>

#include "qsnn_internal.h"
#include "qsnn_model.h"

#include "next_random.h"

/* a word with each bit set with probability 2^-sparsity */
static uint32_t random_bits(uint32_t sparsity)
{
    uint32_t bits = ~0u, i;
    for (i = 0; i < sparsity; ++i) bits &= next_random();
    return bits;
}

/* Random values in every pixel of `map` (0 in its left half if `half`): spikes, or counts 0..4 in
 * three planes (4 only alone). */
static void fill_map(const qsnn_ctx_t *ctx, const qsnn_map_t *map, uint32_t sparsity, int half)
{
    const uint32_t words = qsnn_words_for(map->channels);
    const uint32_t last = map->channels % 32u ? (1u << (map->channels % 32u)) - 1u : ~0u;
    uint32_t y, x, w;
    for (y = 0; y < map->height; ++y) {
        for (x = 0; x < map->width; ++x) {
            for (w = 0; w < words; ++w) {
                uint32_t valid = half && 2u * x < map->width ? 0u : w + 1u == words ? last : ~0u;
                uint32_t bit0 = random_bits(sparsity) & valid, bit1 = random_bits(sparsity) & valid;
                qsnn_pixel_words(ctx->arena, map, 0, y, x)[w] = bit0;
                if (map->planes == 3u) {
                    qsnn_pixel_words(ctx->arena, map, 1, y, x)[w] = bit1;
                    qsnn_pixel_words(ctx->arena, map, 2, y, x)[w] = random_bits(sparsity) & valid & ~(bit0 | bit1);
                }
            }
        }
    }
}

int main(void)
{
    static uint64_t workspace[(QSNN_EXPORT_CTX_BYTES + 7u) / 8u];
    static int8_t frame[QSNN_EXPORT_SAMPLE_SIZE];
    const qsnn_model_t *model = &QSNN_EXPORT_MODEL;
    qsnn_ctx_t ctx;
    uint32_t i, call, n;
    for (i = 0; i < model->num_stages; ++i) {
        const qsnn_stage_t *stage = &model->stages[i];
        const qsnn_map_t *out = &model->maps[i];
        if (stage->kind == QSNN_STAGE_POOL) continue;
        if (qsnn_init(&ctx, model, workspace, sizeof workspace) != QSNN_OK) return 1;
        for (call = 0; call < 6u; ++call) {
            int half = call >= 4u;
            if (stage->kind == QSNN_STAGE_STEM) {
                for (n = 0; n < model->frame_size; ++n) {
                    int left = 2u * (n % model->input_width) < model->input_width;
                    int8_t value = (int8_t)((int32_t)(next_random() % 255u) - 127);
                    frame[n] = half && left ? (call == 4u ? 0 : (int8_t)(call * 23u) - 51)
                                            : (random_bits(call % 4u) & 1u) ? value : 0;
                }
                qsnn_run_stem(model, &ctx, stage, out, frame);
            } else {
                fill_map(&ctx, &model->maps[stage->source], call % 4u + 1u, half);
                if (stage->residual != QSNN_RESIDUAL_NONE) {
                    fill_map(&ctx, &model->maps[stage->residual_source], 2u, half);
                }
                qsnn_run_conv(model, &ctx, stage, out);
            }
            printf("%lu %lu", (unsigned long)i, (unsigned long)call);
            for (n = 0; n < (uint32_t)out->height * out->width * qsnn_words_for(out->channels); ++n) {
                printf(" %lx", (unsigned long)ctx.arena[out->offset + n]);
            }
            putchar('\n');
        }
    }
    return 0;
}
