/* conv_host.c: binary convs on the host, dense: the input bits under the kernel AND each output
 * channel's weight bits, counted by popcount over 64-bit words; the LIF of lif_host.c over the
 * whole layer. */
#include <string.h>

#include "qsnn_internal.h"

#define QSNN_WORDS64(bits) (((bits) + 63u) / 64u)

static uint32_t popcount64(uint64_t v)
{
#if defined(__GNUC__)
    return (uint32_t)__builtin_popcountll(v);
#else
    v = v - ((v >> 1) & 0x5555555555555555u);
    v = (v & 0x3333333333333333u) + ((v >> 2) & 0x3333333333333333u);
    return (uint32_t)((((v + (v >> 4)) & 0x0F0F0F0F0F0F0F0Fu) * 0x0101010101010101u) >> 56);
#endif
}

/* The input bits under the kernel of output pixel (y, x): bit j % 64 of window[p * words + j / 64]
 * is plane p of input position j = (ky * k + kx) * Cin + ci, 0 in the padding. */
static void gather_window(uint32_t *arena, const qsnn_map_t *in, uint32_t k, uint32_t stride, uint32_t padding,
                          uint32_t y, uint32_t x, uint64_t *window, uint32_t words)
{
    uint32_t p, ky, kx, w, in_words = qsnn_words_for(in->channels);
    memset(window, 0, in->planes * words * sizeof *window);
    for (p = 0; p < in->planes; ++p, window += words) {
        for (ky = 0; ky < k; ++ky) {
            int32_t iy = (int32_t)(y * stride + ky) - (int32_t)padding;
            if (iy < 0 || iy >= (int32_t)in->height) continue;
            for (kx = 0; kx < k; ++kx) {
                int32_t ix = (int32_t)(x * stride + kx) - (int32_t)padding;
                const uint32_t *bits;
                uint32_t position = (ky * k + kx) * in->channels;
                if (ix < 0 || ix >= (int32_t)in->width) continue;
                bits = qsnn_pixel_words(arena, in, p, (uint32_t)iy, (uint32_t)ix);
                for (w = 0; w < in_words; ++w, position += 32u) {   /* a word's unused high bits are 0 */
                    uint32_t at = position / 64u, shift = position % 64u;
                    window[at] |= (uint64_t)bits[w] << shift;
                    if (shift > 32u && at + 1u < words) window[at + 1u] |= (uint64_t)bits[w] >> (64u - shift);
                }
            }
        }
    }
}

/* On x86-64 built without -mpopcnt: one copy with POPCNT, one without, chosen at load time. */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__POPCNT__)
#define QSNN_POPCOUNT_CLONES __attribute__((target_clones("popcnt", "default")))
#else
#define QSNN_POPCOUNT_CLONES
#endif

/* acc[c] = sum over the planes p of 2^p (popcount(window_p) - 2 popcount(window_p & row_c)) = sum sign(w) x
 * over the window, with row_c output channel c's weight bits (1 = -1), held as columns: word w of
 * the channels' rows at columns[w * Cout' ...], Cout' = `channels` rounded up to a multiple of 4.
 * A window word that is 0 (no input active there, or the padding) costs nothing. `negative` holds
 * QSNN_PLANES rows of `stride` counts. */
QSNN_POPCOUNT_CLONES
static void dense_acc(const uint64_t *window, uint32_t planes, uint32_t words, const uint64_t *columns,
                      uint32_t channels, int32_t *negative, size_t row, int32_t *acc)
{
    const size_t stride = (channels + 3u) & ~3u;
    int32_t total[QSNN_PLANES] = {0};
    size_t p, c, w;
    for (p = 0; p < planes; ++p, window += words) {
        int32_t *count = negative + p * row;
        for (c = 0; c < stride; ++c) count[c] = 0;
        for (w = 0; w < words; ++w) {
            const uint64_t bits = window[w], *column = columns + w * stride;
            if (bits == 0u) continue;
            total[p] += (int32_t)popcount64(bits);
            for (c = 0; c < stride; c += 4u) {
                count[c] += (int32_t)popcount64(bits & column[c]);
                count[c + 1u] += (int32_t)popcount64(bits & column[c + 1u]);
                count[c + 2u] += (int32_t)popcount64(bits & column[c + 2u]);
                count[c + 3u] += (int32_t)popcount64(bits & column[c + 3u]);
            }
        }
    }
    for (c = 0; c < channels; ++c) acc[c] = 0;
    for (p = 0; p < planes; ++p) {   /* counts >= 0: shifts, not products */
        const int32_t *count = negative + p * row, unit_total = (int32_t)((uint32_t)total[p] << p);
        for (c = 0; c < channels; ++c) acc[c] += unit_total - (int32_t)((uint32_t)count[c] << (p + 1u));
    }
}

void qsnn_run_conv(const qsnn_model_t *model, const qsnn_ctx_t *ctx, const qsnn_stage_t *stage,
                   const qsnn_map_t *out)
{
    const qsnn_host_scratch_t *scratch = (const qsnn_host_scratch_t *)ctx->scratch;
    const qsnn_map_t *in = &model->maps[stage->source], *shortcut = &model->maps[stage->residual_source];
    const qsnn_dense_t *dense = &model->dense[stage - model->stages];
    const qsnn_lif_t *lif = &stage->lif;
    const uint32_t channels = out->channels, k = stage->kernel;
    const uint32_t words = QSNN_WORDS64(k * k * in->channels), shortcut_words = QSNN_WORDS64(shortcut->channels);
    const size_t row = model->max_channels + 3u;
    uint64_t *window = scratch->window;
    int32_t *current = scratch->currents, *acc = scratch->acc;
    uint32_t y, x, c;
    for (y = 0; y < out->height; ++y) {
        for (x = 0; x < out->width; ++x, current += channels) {
            gather_window(ctx->arena, in, k, stage->stride, stage->padding, y, x, window, words);
            dense_acc(window, in->planes, words, dense->bits, channels, scratch->negative, row, acc);
            for (c = 0; c < channels; ++c) current[c] = lif->multiplier[c] * acc[c] + lif->bias[c];
            if (stage->residual == QSNN_RESIDUAL_IDENTITY) {
                qsnn_add_identity(ctx->arena, stage, shortcut, channels, y, x, current);
            } else if (stage->residual == QSNN_RESIDUAL_CONV) {   /* 1x1, strided */
                gather_window(ctx->arena, shortcut, 1u, stage->residual_stride, 0u, y, x, window, shortcut_words);
                dense_acc(window, shortcut->planes, shortcut_words, dense->residual_bits, channels, scratch->negative,
                          row, acc);
                for (c = 0; c < channels; ++c) current[c] += stage->residual_multiplier[c] * acc[c];
            }
        }
    }
    qsnn_fire_layer(model, ctx, lif, out, qsnn_host_levels(model, ctx, stage));
}
