/* lif_mcu.c: the LIF of one pixel's channels on k-bit levels packed in place (qsnn_internal.h's
 * qsnn_fire_pixel), compiled once for each field width (2, 4, 8 bits), so that the field shifts
 * and masks are constants, as they were when the width was a build-time macro; k = 2 (one level
 * each side) compares instead of rounding. */
#include "qsnn_internal.h"

/*   U = q * 2^(F-m) + current;  spike = U >= Theta;  q = spike ? 0 : next_level(U)
 * next_level for k = 2: clamp(round_half_even(U / 2^F), -1, 1) = [U > 2^(F-1)] - [U < -2^(F-1)] */
static QSNN_ALWAYS_INLINE void fire_fields(const qsnn_lif_t *lif, int32_t levels_max, const int32_t *current,
                                           uint32_t channels, uint32_t *levels, uint32_t *out, const uint32_t bits)
{
    const uint32_t per_word = 32u / bits, mask = (1u << bits) - 1u, sign = 1u << (bits - 1u);
    const uint32_t fraction = lif->fraction_bits;
    const int32_t leak = (int32_t)(1u << (fraction - lif->tau_shift)), threshold = lif->threshold;
    const int32_t half = (int32_t)(1u << (fraction - 1u));
    uint32_t c, i, spikes = 0;
    for (c = 0; c < channels; c += per_word, current += per_word) {
        uint32_t word = *levels, next = 0;
        uint32_t count = channels - c < per_word ? channels - c : per_word;
        for (i = 0; i < count; ++i) {
            uint32_t field = (word >> (i * bits)) & mask;
            int32_t level = (int32_t)(field ^ sign) - (int32_t)sign;   /* two's complement */
            int32_t membrane = level * leak + current[i];
            if (membrane >= threshold) {
                spikes |= 1u << ((c + i) % 32u);
                continue;   /* hard reset: level 0, the field stays 0 in `next` */
            }
            level = bits == 2u ? (membrane > half) - (membrane < -half)
                               : qsnn_next_level(membrane, fraction, half, levels_max);
            next |= ((uint32_t)level & mask) << (i * bits);
        }
        *levels++ = next;
        if ((c + per_word) % 32u == 0u || c + per_word >= channels) {   /* 32 spikes, or the last */
            out[c / 32u] = spikes;
            spikes = 0;
        }
    }
}

void qsnn_fire_pixel(const qsnn_model_t *model, const qsnn_lif_t *lif, const int32_t *current, uint32_t channels,
                     uint32_t *levels, uint32_t *out)
{
    if (model->field_bits == 2u) {
        fire_fields(lif, model->levels, current, channels, levels, out, 2u);
    } else if (model->field_bits == 4u) {
        fire_fields(lif, model->levels, current, channels, levels, out, 4u);
    } else {
        fire_fields(lif, model->levels, current, channels, levels, out, 8u);
    }
}
