/* The LIF of a pixel on membranes at and beside each boundary of Eq. 6's rounding and of the
 * threshold: U = -2^(F-1) - 1 .. -2^(F-1) + 1, -1 .. 1, 2^(F-1) - 1 .. 2^(F-1) + 1, 2^F, Theta - 1 ..
 * Theta + 1 and far beyond, from every level -n..n, at field widths 2, 4 and 8, for thresholds
 * above 2^F, between 2^(F-1) and 2^F, at 2^(F-1), below it and below 0 (the microcontrollers' quiet
 * neurons, -2^(F-1) <= U <= 2^(F-1) below Theta, take one comparison: lif_mcu.c):
 *
 *   lif_check
 *
 * prints one line per case (width, threshold, the 32 neurons' next levels and spikes) and, last,
 * "<cases> cases, <mismatches> mismatches". Built with lif_ref.c (the reference) and with lif_mcu.c,
 * whose lines must be the same (tests/test_export.py); on the microcontrollers' path the LIF from
 * counts (qsnn_fire_counts; at k = 2 qsnn_fire_counts_raised, and qsnn_fire_counters_raised on the
 * bit-sliced counters' bytes, from counts 0..255 that differ from neuron to neuron) must also write
 * qsnn_fire_pixel's levels and spikes: the mismatches counted. */
#include <stdio.h>
#include <string.h>

#include "qsnn_internal.h"

#define CHANNELS 32u
#define FRACTION 12u

int main(void)
{
    static const uint8_t widths[3] = {2u, 4u, 8u};
    const int32_t unit = (int32_t)(1u << FRACTION), half = unit / 2;
    const int32_t thresholds[6] = {3 * half, unit - 1, unit / 2 + unit / 4, half, half / 2, -half};
    int32_t multiplier[CHANNELS], bias[CHANNELS], negative[CHANNELS + 31u], current[CHANNELS];
    uint32_t cases = 0, mismatches = 0, width, t, first, c, i;
    for (c = 0; c < CHANNELS; ++c) multiplier[c] = 1;
    memset(negative, 0, sizeof negative);
    for (width = 0; width < 3u; ++width) {
        for (t = 0; t < 6u; ++t) {
            const uint32_t bits = widths[width], per_word = 32u / bits, words = CHANNELS / per_word;
            const int32_t n = (int32_t)(1u << (bits - 1u)) - 1, threshold = thresholds[t];
            const int32_t targets[17] = {-half - 1, -half, -half + 1, -1, 0, 1, half - 1, half, half + 1, unit,
                                         threshold - 1, threshold, threshold + 1, -3 * unit, 3 * unit,
                                         unit + half, -unit - half};
            qsnn_model_t model;
            qsnn_lif_t lif;
            memset(&model, 0, sizeof model);
            memset(&lif, 0, sizeof lif);
            model.field_bits = (uint8_t)bits;
            model.levels = (uint8_t)n;
            lif.fraction_bits = (uint8_t)FRACTION;
            lif.tau_shift = 1u;
            lif.threshold = threshold;
            lif.multiplier = multiplier;
            lif.bias = bias;
            for (first = 0; first < 17u; ++first, ++cases) {   /* neuron c: target first + c, level c % (2n + 1) - n */
                uint32_t levels[CHANNELS] = {0u}, before[CHANNELS], out[1] = {0u};
                for (c = 0; c < CHANNELS; ++c) {
                    const int32_t level = (int32_t)(c % (uint32_t)(2 * n + 1)) - n;
                    current[c] = targets[(first + c) % 17u] - level * (int32_t)(1u << (FRACTION - lif.tau_shift));
                    bias[c] = current[c];   /* from counts: M_c (0 - 2 * 0) + B_c = B_c */
                    levels[c / per_word] |= ((uint32_t)level & ((1u << bits) - 1u)) << (c % per_word * bits);
                }
                memcpy(before, levels, sizeof levels);
                qsnn_fire_pixel(&model, &lif, current, CHANNELS, levels, out);
                printf("%lu %ld %08lx", (unsigned long)bits, (long)threshold, (unsigned long)out[0]);
                for (i = 0; i < words; ++i) printf(" %08lx", (unsigned long)levels[i]);
                putchar('\n');
#if !defined(QSNN_REFERENCE)
                {
                    uint32_t counted[CHANNELS], counted_out[1];
                    int32_t raised[CHANNELS];
                    memcpy(counted, before, sizeof before);
                    qsnn_fire_counts(&model, &lif, negative, 0, CHANNELS, counted, counted_out);
                    mismatches += counted_out[0] != out[0] || memcmp(counted, levels, words * 4u) != 0;
                    if (bits == 2u && qsnn_can_raise(&lif)) {
                        /* counts 0..255, a different one a neuron, the currents unchanged: raised[c] =
                         * current[c] + 2^(F-1) - (total - 2 counts[c]); as ints, then as the conv's counters */
                        int32_t counts[CHANNELS];
                        uint8_t counters[CHANNELS];
                        const int32_t total = 300;
                        for (c = 0; c < CHANNELS; ++c) {
                            counts[c] = (int32_t)((c * 37u + first * 11u) % 256u);
                            counters[qsnn_counter_byte(c)] = (uint8_t)counts[c];
                            raised[c] = bias[c] + half - (total - 2 * counts[c]);
                        }
                        qsnn_lif_constants_t constants;
                        qsnn_lif_constants(&model, &lif, &constants);
                        memcpy(counted, before, sizeof before);
                        qsnn_fire_counts_raised(&constants, multiplier, counts, total, raised, CHANNELS, counted,
                                                counted_out);
                        mismatches += counted_out[0] != out[0] || memcmp(counted, levels, words * 4u) != 0;
                        memcpy(counted, before, sizeof before);
                        qsnn_fire_counters_raised(&constants, multiplier, counters, total, raised, CHANNELS, counted,
                                                  counted_out);
                        mismatches += counted_out[0] != out[0] || memcmp(counted, levels, words * 4u) != 0;
                    }
                }
#endif
            }
        }
    }
    printf("%lu cases, %lu mismatches\n", (unsigned long)cases, (unsigned long)mismatches);
    return mismatches != 0u;
}
