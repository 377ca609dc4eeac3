/* lif_host.c: the LIF of a whole layer on the host: int8 levels, one per neuron [y][x][c], in
 * one loop the compiler vectorizes; then the spikes packed into the layer's map. */
#include <string.h>

#include "qsnn_internal.h"

int8_t *qsnn_host_levels(const qsnn_model_t *model, const qsnn_ctx_t *ctx, const qsnn_stage_t *stage)
{
    uint32_t i, offset = 0;
    for (i = 0; &model->stages[i] != stage; ++i) {
        const qsnn_map_t *map = &model->maps[i];
        if (model->stages[i].kind != QSNN_STAGE_POOL) offset += map->channels * map->height * map->width;
    }
    return (int8_t *)ctx->levels + offset;
}

/* The levels of `neurons` neurons in place, which spiked into `spiked`:
 *   U = q * 2^(F-m) + current;  spike = U >= Theta;  q = spike ? 0 : next_level(U)
 * compiled for `one_level` (k = 2, next_level compares) and for any n. */
static QSNN_ALWAYS_INLINE void fire_neurons(const qsnn_lif_t *lif, int32_t most, const int32_t *currents,
                                            uint32_t neurons, int8_t *levels, uint8_t *spiked, const int one_level)
{
    const uint32_t fraction = lif->fraction_bits, leak_shift = fraction - lif->tau_shift;
    const int32_t threshold = lif->threshold, half = (int32_t)(1u << (fraction - 1u));
    uint32_t n;
    for (n = 0; n < neurons; ++n) {
        int32_t membrane = (int32_t)((uint32_t)levels[n] << leak_shift) + currents[n];
        int32_t spike = membrane >= threshold;
        int32_t level = one_level ? (membrane > half) - (membrane < -half)
                                  : qsnn_next_level(membrane, fraction, half, most);
        spiked[n] = (uint8_t)spike;
        levels[n] = (int8_t)(spike ? 0 : level);
    }
}

/* The LIF of every neuron of a stage, then its spikes into map `out` (channel c in bit c % 32 of
 * word c / 32 of its pixel). */
void qsnn_fire_layer(const qsnn_model_t *model, const qsnn_ctx_t *ctx, const qsnn_lif_t *lif, const qsnn_map_t *out,
                     int8_t *levels)
{
    const qsnn_host_scratch_t *scratch = (const qsnn_host_scratch_t *)ctx->scratch;
    const uint32_t channels = out->channels, pixels = (uint32_t)out->height * out->width;
    const uint32_t words = qsnn_words_for(channels);
    uint8_t *spiked_all = scratch->spiked;
    uint32_t *spikes = qsnn_pixel_words(ctx->arena, out, 0, 0, 0);
    uint32_t pixel, c;
    if (model->levels == 1u) {
        fire_neurons(lif, 1, scratch->currents, channels * pixels, levels, spiked_all, 1);
    } else {
        fire_neurons(lif, model->levels, scratch->currents, channels * pixels, levels, spiked_all, 0);
    }
    memset(spiked_all + channels * pixels, 0, 8u);
    memset(spikes, 0, pixels * words * sizeof *spikes);
    for (pixel = 0; pixel < pixels; ++pixel, spikes += words) {
        const uint8_t *spiked = spiked_all + pixel * channels;
        for (c = 0; c < channels; c += 8u) {   /* eight 0/1 bytes, byte i at bit 8i: the product's top byte has it at bit i */
            uint64_t bytes;
            uint32_t bits, valid = channels - c < 8u ? channels - c : 8u;
            memcpy(&bytes, spiked + c, sizeof bytes);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
            bytes = __builtin_bswap64(bytes);
#endif
            bits = (uint32_t)((bytes * 0x0102040810204080u) >> 56) & ((1u << valid) - 1u);
            spikes[c / 32u] |= bits << (c % 32u);
        }
    }
}
