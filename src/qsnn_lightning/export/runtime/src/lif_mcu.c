/* lif_mcu.c: the LIF of one pixel's channels on k-bit levels packed in place (qsnn_internal.h's
 * qsnn_fire_pixel, qsnn_fire_counts), compiled once for each field width (2, 4, 8 bits), so that
 * the field shifts and masks are constants, and a whole word of fields unrolls without a branch
 * per neuron; k = 2 (one level each side) compares instead of rounding. */
#include "qsnn_internal.h"

/* A pixel's currents: current[c], or (`counts` below) from a binary conv's counts, computed as
 * each neuron fires: M_c (total - 2 negative[c]) + B_c */
typedef struct {
    const int32_t *current, *negative, *multiplier, *bias;
    int32_t total;
    const int32_t *raised;     /* `raised`: B_c + 2^(F-1) in place of bias */
    const uint8_t *counters;   /* `counts` 2: negative[c] as a byte, at qsnn_counter_byte(c) */
} currents_t;

/* COUNTERS (`counts` 2): the counts are the bytes of the bit-sliced counters, not int32 */
#define COUNTERS 2

/* The LIF of the `count` neurons of one word of `bits`-bit fields:
 *   U = q * 2^(F-m) + current;  spike = U >= Theta;  q = spike ? 0 : next_level(U)
 * Below Theta a quiet neuron, -2^(F-1) <= U <= 2^(F-1) (level 0, field 0), takes one comparison
 * (quiet_limit: qsnn_fire_raised; the spike first here, where static images fire often). Else
 * next_level for k = 2: clamp(round_half_even(U / 2^F), -1, 1) is -1 (field 11) below -2^(F-1),
 * 1 (01) above: U's sign bit is the field's high bit
 * (|U| + 2^(F-1) < 2^31: docs/export.md); `raised` (from counts, the biases raised by half a level):
 * qsnn_fire_raised of V = U + 2^(F-1), one addition fewer. The neurons' currents: current[i], or
 * (`counts`) those of channels first + i of `in`'s counts. Returns the word of the next levels;
 * their spikes go to bits [0, count) of *spikes. */
static QSNN_ALWAYS_INLINE uint32_t fire_word(const qsnn_lif_constants_t *lif, const int32_t *current,
                                             const currents_t *in, uint32_t first, uint32_t word, uint32_t count,
                                             uint32_t *spikes, const uint32_t bits, const int counts,
                                             const int raised)
{
    const uint32_t mask = (1u << bits) - 1u;
    const int32_t *negative = counts == 1 ? in->negative + first : NULL;
    /* first % 16 == 0: counter first + i at qsnn_counter_byte(first) + qsnn_counter_byte(i) */
    const uint8_t *counters = counts == COUNTERS ? in->counters + qsnn_counter_byte(first) : NULL;
    const int32_t *multiplier = counts ? in->multiplier + first : NULL;
    const int32_t *bias = counts ? (raised ? in->raised : in->bias) + first : NULL;
    uint32_t i, next = 0, fired = 0;
#if defined(__GNUC__)
#pragma GCC unroll 16
#endif
    for (i = 0; i < count; ++i) {
        int32_t level = (int32_t)(word << (32u - bits - i * bits)) >> (32u - bits);   /* two's complement */
        int32_t membrane;
        const int32_t count = counts == COUNTERS ? (int32_t)counters[qsnn_counter_byte(i)] : counts ? negative[i] : 0;
        if (raised) {   /* k = 2 from counts */
            qsnn_fire_raised(multiplier[i] * (in->total - 2 * count) + (level * lif->leak + bias[i]), lif, i, &fired,
                             &next);
            continue;
        }
        membrane = level * lif->leak + (counts ? multiplier[i] * (in->total - 2 * count) + bias[i] : current[i]);
        if (membrane >= lif->threshold) {   /* hard reset: level 0 */
            fired |= 1u << i;
        } else if ((uint32_t)(membrane + lif->half) < lif->quiet_limit) {   /* level 0 */
            continue;
        } else if (bits == 2u) {
            next |= (1u << (2u * i)) | (((uint32_t)membrane >> 31) << (2u * i + 1u));
        } else {
            next |= ((uint32_t)qsnn_next_level(membrane, lif->fraction, lif->half, lif->levels) & mask) << (i * bits);
        }
    }
    *spikes = QSNN_WORST ? ~0u : fired;
    return next;
}

/* The LIF of a pixel's `channels` neurons, a word of fields at a time; a last partial word runs
 * as a whole one on currents padded with 0 (level 0, no spike), its missing fields dropped (from
 * counts, the channels fill whole words: qsnn_fire_counts). */
static QSNN_ALWAYS_INLINE void fire_fields(const qsnn_lif_constants_t *lif, const currents_t *in, uint32_t channels,
                                           uint32_t *levels, uint32_t *out, const uint32_t bits, const int counts,
                                           const int raised)
{
    const uint32_t per_word = 32u / bits;
    int32_t tail[16];
    uint32_t c, i, fired, spikes = 0;
    for (c = 0; c < channels; c += per_word, ++levels) {
        const int32_t *current = counts ? NULL : in->current + c;
        /* from counts: whole words */
        uint32_t count = counts || channels - c >= per_word ? per_word : channels - c, fields = ~0u;
        if (!counts && count < per_word) {
            for (i = 0; i < per_word; ++i) tail[i] = c + i < channels ? in->current[c + i] : 0;
            current = tail;
            fields = (1u << (count * bits)) - 1u;
        }
        *levels = fire_word(lif, current, in, c, *levels, per_word, &fired, bits, counts, raised) & fields;
        spikes |= (fired & ((1u << count) - 1u)) << (c % 32u);
        if ((c + per_word) % 32u == 0u || c + per_word >= channels) {   /* 32 spikes, or the last */
            out[c / 32u] = spikes;
            spikes = 0;
        }
    }
}

/* fire_fields for the model's field width */
static QSNN_ALWAYS_INLINE void fire(const qsnn_model_t *model, const qsnn_lif_t *lif, const currents_t *in,
                                    uint32_t channels, uint32_t *levels, uint32_t *out, const int counts)
{
    qsnn_lif_constants_t constants;
    qsnn_lif_constants(model, lif, &constants);
#if defined(__GNUC__)
    __asm__("" : "+r"(constants.leak));   /* a multiplier, not a shift: level * leak + x is one MLA */
#endif
    if (model->field_bits == 2u) {
        fire_fields(&constants, in, channels, levels, out, 2u, counts, 0);
    } else if (model->field_bits == 4u) {
        fire_fields(&constants, in, channels, levels, out, 4u, counts, 0);
    } else {
        fire_fields(&constants, in, channels, levels, out, 8u, counts, 0);
    }
}

void qsnn_fire_pixel(const qsnn_model_t *model, const qsnn_lif_t *lif, const int32_t *current, uint32_t channels,
                     uint32_t *levels, uint32_t *out)
{
    currents_t in;
    in.current = current;
    fire(model, lif, &in, channels, levels, out, 0);
}

void qsnn_fire_counts(const qsnn_model_t *model, const qsnn_lif_t *lif, const int32_t *negative, int32_t total,
                      uint32_t channels, uint32_t *levels, uint32_t *out)
{
    currents_t in;
    in.negative = negative;
    in.multiplier = lif->multiplier;
    in.bias = lif->bias;
    in.total = total;
    fire(model, lif, &in, channels, levels, out, 1);
}

/* qsnn_fire_counts_raised (`counts` 1: int32 negatives) and qsnn_fire_counters_raised (COUNTERS: bytes) */
static QSNN_ALWAYS_INLINE void fire_counts_raised(const qsnn_lif_constants_t *constants, const int32_t *multiplier,
                                                  const int32_t *negative, const uint8_t *counters, int32_t total,
                                                  const int32_t *raised, uint32_t channels, uint32_t *levels,
                                                  uint32_t *out, const int counts)
{
    const qsnn_lif_constants_t lif = *constants;   /* in registers: the stores alias none */
    currents_t in;
    in.negative = negative;
    in.counters = counters;
    in.multiplier = multiplier;
    in.raised = raised;
    in.total = total;
    fire_fields(&lif, &in, channels, levels, out, 2u, counts, 1);
}

void qsnn_fire_counts_raised(const qsnn_lif_constants_t *constants, const int32_t *multiplier, const int32_t *negative,
                             int32_t total, const int32_t *raised, uint32_t channels, uint32_t *levels, uint32_t *out)
{
    fire_counts_raised(constants, multiplier, negative, NULL, total, raised, channels, levels, out, 1);
}

void qsnn_fire_counters_raised(const qsnn_lif_constants_t *constants, const int32_t *multiplier,
                               const uint8_t *counters, int32_t total, const int32_t *raised, uint32_t channels,
                               uint32_t *levels, uint32_t *out)
{
    fire_counts_raised(constants, multiplier, NULL, counters, total, raised, channels, levels, out, COUNTERS);
}

void qsnn_fire_pixel_memo(const qsnn_model_t *model, const qsnn_lif_t *lif, const int32_t *current, uint32_t channels,
                          uint32_t *levels, uint32_t *out, qsnn_fire_memo_t *memo)
{
    const uint32_t words = qsnn_words_for(channels * model->field_bits), spike_words = qsnn_words_for(channels);
    uint32_t i, same = QSNN_WORST ? 0u : memo->valid;   /* worst case: never remembered */
    if (words > QSNN_MEMO_WORDS) {
        qsnn_fire_pixel(model, lif, current, channels, levels, out);
        return;
    }
    for (i = 0; i < words && same; ++i) same = levels[i] == memo->before[i];
    if (same) {
        for (i = 0; i < words; ++i) levels[i] = memo->after[i];
        for (i = 0; i < spike_words; ++i) out[i] = memo->spikes[i];
        return;
    }
    for (i = 0; i < words; ++i) memo->before[i] = levels[i];
    qsnn_fire_pixel(model, lif, current, channels, levels, out);
    for (i = 0; i < words; ++i) memo->after[i] = levels[i];
    for (i = 0; i < spike_words; ++i) memo->spikes[i] = out[i];
    memo->valid = 1;
}

/* Bits 0, 2, ..., 30 of x to bits 0..15, bits 1, 3, ..., 31 to bits 16..31 (an unshuffle: four
 * swaps of bit groups) */
static inline uint32_t unzip_bits(uint32_t x)
{
    uint32_t t;
    t = (x ^ (x >> 1)) & 0x22222222u;
    x ^= t ^ (t << 1);
    t = (x ^ (x >> 2)) & 0x0C0C0C0Cu;
    x ^= t ^ (t << 2);
    t = (x ^ (x >> 4)) & 0x00F000F0u;
    x ^= t ^ (t << 4);
    t = (x ^ (x >> 8)) & 0x0000FF00u;
    x ^= t ^ (t << 8);
    return x;
}

void qsnn_fire_bias(const qsnn_model_t *model, const qsnn_lif_t *lif, uint32_t channels, uint32_t *levels,
                    uint32_t *out, qsnn_fire_bias_t *table)
{
    const uint32_t words = qsnn_words_for(channels * model->field_bits), spike_words = qsnn_words_for(channels);
    static const uint32_t every[3] = {0u, 0x55555555u, 0xFFFFFFFFu};   /* all fields 0, 1, -1 */
    uint32_t w, q, i, same, any_level;
    if (QSNN_WORST || model->field_bits != 2u || words > QSNN_MEMO_WORDS) {
        if (!table->valid) table->memo.valid = 0;
        table->valid = 1;
        qsnn_fire_pixel_memo(model, lif, lif->bias, channels, levels, out, &table->memo);
        return;
    }
    if (!table->valid) table->memo.valid = 0;
    for (i = 0, same = table->memo.valid; i < words && same; ++i) same = levels[i] == table->memo.before[i];
    if (same) {   /* the levels of the last such pixel: its result */
        for (i = 0; i < words; ++i) levels[i] = table->memo.after[i];
        for (i = 0; i < spike_words; ++i) out[i] = table->memo.spikes[i];
        return;
    }
    for (i = 0, any_level = 0; i < words; ++i) {
        table->memo.before[i] = levels[i];
        any_level |= levels[i];
    }
    if (any_level == 0u && table->valid) {   /* every neuron at level 0: that outcome */
        for (i = 0; i < words; ++i) levels[i] = table->memo.after[i] = table->next[0][i];
        for (i = 0; i < spike_words; ++i) out[i] = table->memo.spikes[i] = table->spikes[0][i];
        table->memo.valid = 1;
        return;
    }
    if (!table->valid) {   /* the three outcomes: the LIF of every neuron at one level */
        for (q = 0; q < 3u; ++q) {
            for (i = 0; i < words; ++i) table->next[q][i] = every[q];
            qsnn_fire_pixel(model, lif, lif->bias, channels, table->next[q], table->spikes[q]);
        }
        table->valid = 1;
    }
    for (i = 0; i < spike_words; ++i) out[i] = 0;
    for (w = 0; w < words; ++w) {
        /* fields 00 (level 0), 01 (1), 11 (-1): `low` marks the nonzero ones, `high` those at -1 */
        const uint32_t level = levels[w], low = level & 0x55555555u, high = (level >> 1) & 0x55555555u;
        const uint32_t one = low & ~high, packed = unzip_bits(level), nonzero = packed & 0xFFFFu, minus = packed >> 16;
        const uint32_t shift = 16u * (w % 2u);
        uint32_t spikes;
        levels[w] = (table->next[0][w] & ~(3u * low)) | (table->next[1][w] & 3u * one) | (table->next[2][w] & 3u * high);
        spikes = ((table->spikes[0][w / 2u] >> shift) & ~nonzero)
                 | ((table->spikes[1][w / 2u] >> shift) & nonzero & ~minus) | ((table->spikes[2][w / 2u] >> shift) & minus);
        out[w / 2u] |= (spikes & 0xFFFFu) << shift;
    }
    for (i = 0; i < words; ++i) table->memo.after[i] = levels[i];
    for (i = 0; i < spike_words; ++i) table->memo.spikes[i] = out[i];
    table->memo.valid = 1;
}
