/* qsnn_fire_bias (lif_mcu.c: the LIF of a pixel whose currents are the biases, from the layer's
 * outcomes at each level) against qsnn_fire_pixel on the biases, for layers of 1 to 136 channels
 * (partial words of levels and of spikes among them; past 128 the fallback) at field widths 2, 4
 * and 8, random biases around the threshold and the rounding points, and random levels -n..n
 * (every field value, a run of pixels of the same levels among them: the remembered result; pixels
 * of every level 0 among them: the outcome at rest, before and after the outcomes are computed),
 * several pixels a call of the kernel:
 *
 *   fire_bias_check
 *
 * prints "<pixels> pixels, <mismatches> mismatches" and returns 1 on a mismatch. Built with the
 * runtime's mcu path (tests/test_export.py). */
#include <stdio.h>
#include <string.h>

#include "qsnn_internal.h"

#include "next_random.h"

#define MAX_CHANNELS 136u

int main(void)
{
    static const uint8_t widths[3] = {2u, 4u, 8u};
    int32_t multiplier[MAX_CHANNELS], bias[MAX_CHANNELS];
    uint32_t levels[MAX_CHANNELS], expected[MAX_CHANNELS], out[8], expected_out[8];
    uint32_t pixels = 0, mismatches = 0, width, channels, layer, pixel, c, i;
    for (width = 0; width < 3u; ++width) {
        for (channels = 1; channels <= MAX_CHANNELS; channels += channels < 40u ? 1u : 16u) {
            for (layer = 0; layer < 4u; ++layer) {
                qsnn_model_t model;
                qsnn_lif_t lif;
                qsnn_fire_bias_t table;
                const uint32_t bits = widths[width], per_word = 32u / bits;
                const uint32_t words = (channels + per_word - 1u) / per_word;
                const int32_t n = (int32_t)(1u << (bits - 1u)) - 1;
                memset(&model, 0, sizeof model);
                memset(&lif, 0, sizeof lif);
                model.field_bits = (uint8_t)bits;
                model.levels = (uint8_t)n;
                lif.fraction_bits = (uint8_t)(12u + layer);
                lif.tau_shift = (uint8_t)(1u + layer % 2u);
                lif.threshold = (int32_t)(3u << (lif.fraction_bits - 1u));   /* 1.5 levels */
                lif.multiplier = multiplier;
                lif.bias = bias;
                for (c = 0; c < channels; ++c) {   /* biases of -3 to 3 levels, some exactly on a half */
                    int32_t unit = (int32_t)(1u << lif.fraction_bits);
                    bias[c] = (int32_t)(next_random() % (uint32_t)(6 * unit + 1)) - 3 * unit;
                    if (next_random() % 4u == 0u) bias[c] = (bias[c] / (unit / 2)) * (unit / 2);
                    multiplier[c] = 0;
                }
                table.valid = 0;
                for (pixel = 0; pixel < 24u; ++pixel, ++pixels) {
                    if (pixel % 6u != 5u) {   /* every sixth pixel: the last one's levels again */
                        /* a resting pixel (every level 0) now and then, the first of some layers */
                        const int resting = pixel % 6u == 2u || (pixel == 0u && layer % 2u == 1u);
                        memset(levels, 0, sizeof levels);
                        for (c = 0; c < channels && !resting; ++c) {
                            int32_t level = (int32_t)(next_random() % (uint32_t)(2 * n + 1)) - n;
                            levels[c / per_word] |= ((uint32_t)level & ((1u << bits) - 1u)) << (c % per_word * bits);
                        }
                        memcpy(expected, levels, sizeof levels);
                    } else {
                        memcpy(levels, expected, sizeof levels);   /* the levels before the last pixel */
                    }
                    {
                        uint32_t before[MAX_CHANNELS];
                        memcpy(before, levels, sizeof levels);
                        memset(out, 0xA5, sizeof out);
                        memset(expected_out, 0xA5, sizeof expected_out);
                        qsnn_fire_pixel(&model, &lif, bias, channels, expected, expected_out);
                        qsnn_fire_bias(&model, &lif, channels, levels, out, &table);
                        for (i = 0; i < words; ++i) mismatches += levels[i] != expected[i];
                        for (i = 0; i < (channels + 31u) / 32u; ++i) mismatches += out[i] != expected_out[i];
                        memcpy(expected, before, sizeof before);
                    }
                }
            }
        }
    }
    printf("%lu pixels, %lu mismatches\n", (unsigned long)pixels, (unsigned long)mismatches);
    return mismatches != 0u;
}
