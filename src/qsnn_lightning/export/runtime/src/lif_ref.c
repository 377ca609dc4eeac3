/* lif_ref.c: the reference LIF of one pixel's channels, channel by channel, on the packed levels
 * of lif_mcu.c (any field width read at run time; the rounding of qsnn_next_level for every k). */
#include "qsnn_internal.h"

/*   U = q * 2^(F-m) + current;  spike = U >= Theta;  q = spike ? 0 : next_level(U) */
void qsnn_fire_pixel(const qsnn_model_t *model, const qsnn_lif_t *lif, const int32_t *current, uint32_t channels,
                     uint32_t *levels, uint32_t *out)
{
    const uint32_t bits = model->field_bits, per_word = 32u / bits, mask = (1u << bits) - 1u;
    const uint32_t fraction = lif->fraction_bits;
    const int32_t leak = (int32_t)(1u << (fraction - lif->tau_shift)), half = (int32_t)(1u << (fraction - 1u));
    uint32_t c;
    for (c = 0; c < channels; c += 32u) out[c / 32u] = 0;
    for (c = 0; c < channels; ++c) {
        uint32_t *word = &levels[c / per_word], shift = (c % per_word) * bits;
        uint32_t field = (*word >> shift) & mask;
        int32_t level = field >= (1u << (bits - 1u)) ? (int32_t)field - (int32_t)(1u << bits) : (int32_t)field;
        int32_t membrane = level * leak + current[c];
        if (membrane >= lif->threshold) {
            out[c / 32u] |= 1u << (c % 32u);
            level = 0;
        } else {
            level = qsnn_next_level(membrane, fraction, half, model->levels);
        }
        *word = (*word & ~(mask << shift)) | (((uint32_t)level & mask) << shift);
    }
}
