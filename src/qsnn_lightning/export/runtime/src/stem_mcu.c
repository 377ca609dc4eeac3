/* stem_mcu.c: the 8-bit conv of the int8 frame on the microcontrollers: the taps of a pixel as
 * int16 pairs, two products per instruction (SMLAD on the Cortex-M4), the LIF of lif_mcu.c.
 * Compiled once for each common kernel (3x3 over one input channel, or over two: the event
 * cameras' polarities) and once for any: with constant shapes the taps are read straight from
 * the padded frame, the pairs stay in registers and the dot products unroll. A pixel whose taps
 * equal the last computed pixel's (a uniform background, an event frame's empty regions) keeps
 * its currents: the dot products are skipped, and its LIF is remembered (lif_mcu.c). A window of
 * zeros has the biases as currents (lif_mcu.c's qsnn_fire_bias); an event frame's window with one or
 * two nonzero pairs takes one or two products a channel, at k = 2 inside the LIF (no currents
 * stored). */
#include <limits.h>
#include <string.h>

#include "qsnn_internal.h"

#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#endif

/* sum of the products of two strings of `count` int16 pairs (tap 2i in the low half, 2i + 1 in the high) */
static QSNN_ALWAYS_INLINE int32_t dot_pairs(const int32_t *weight, const int32_t *taps, const uint32_t count)
{
    int32_t acc = 0;
    uint32_t i;
#if defined(__GNUC__)
#pragma GCC unroll 16
#endif
    for (i = 0; i < count; ++i) {
#if defined(__ARM_FEATURE_DSP)
        acc = i == 0u ? __smuad(weight[0], taps[0]) : __smlad(weight[i], taps[i], acc);   /* two products */
#else
        acc += (int16_t)(weight[i] & 0xFFFF) * (int16_t)(taps[i] & 0xFFFF) + (weight[i] >> 16) * (taps[i] >> 16);
#endif
    }
    return acc;
}

/* ((acc * m) >> 32) + b: the high word of a 64-bit product, plus b (one SMMLA on the Cortex-M4) */
static QSNN_ALWAYS_INLINE int32_t high_product_add(int32_t acc, int32_t m, int32_t b)
{
#if defined(__ARM_FEATURE_DSP) && defined(__GNUC__)
    int32_t result;
    __asm__("smmla %0, %1, %2, %3" : "=r"(result) : "r"(acc), "r"(m), "r"(b));
    return result;
#else
    return (int32_t)(((int64_t)acc * m) >> 32) + b;
#endif
}

/* tap 2i in the low half of an int16 pair, 2i + 1 in the high half */
static inline uint32_t pair_half(int8_t tap, uint32_t t) { return (uint32_t)(uint16_t)tap << (t % 2u * 16u); }

/* The pairs of output pixel (y, x) into `pairs` (the taps in (ci, ky, kx) order, an odd count's
 * last high half 0): read from the padded frame when `channels` and `k` are constant (nonzero),
 * else through qsnn_stem_taps. Returns nonzero if they differ from what `pairs` held. */
static QSNN_ALWAYS_INLINE uint32_t load_pairs(const qsnn_model_t *model, const qsnn_ctx_t *ctx,
                                              const qsnn_stage_t *stage, uint32_t y, uint32_t x, int32_t *pairs,
                                              const uint32_t pair_count, const uint32_t channels, const uint32_t k,
                                              uint32_t padded_height, uint32_t padded_width, const int compare)
{
    const int8_t *corner = ctx->padded + (y * padded_width + x) * stage->stride;
    int8_t *taps = ((const qsnn_packed_scratch_t *)ctx->scratch)->taps;
    uint32_t i, t, changed = 0;
    if (channels == 0u) qsnn_stem_taps(model, ctx, stage, y, x, taps);
#if defined(__GNUC__)
#pragma GCC unroll 16
#endif
    for (i = 0; i < pair_count; ++i) {
        uint32_t pair = 0;
        for (t = 2u * i; t < 2u * i + 2u; ++t) {
            if (channels == 0u) {
                pair |= pair_half(taps[t], t);
            } else if (t < channels * k * k) {
                uint32_t ci = t / (k * k), ky = t / k % k, kx = t % k;
                pair |= pair_half(corner[(ci * padded_height + ky) * padded_width + kx], t);
            }
        }
        changed |= compare ? pair ^ (uint32_t)pairs[i] : 0u;
        pairs[i] = (int32_t)pair;
    }
    return changed;
}

/* The per-layer constants of the stem's currents, in locals: the stores to the currents alias none */
typedef struct {
    const int32_t *multiplier, *bias;
    const int32_t *raised;   /* B_c + 2^(F-1) (fire_two_pairs), in the scratch's `negative` */
    int32_t scale;   /* 2^R */
    uint32_t channels;
} stem_constants_t;

/* current[c] = ((acc * 2^R) * M_c) >> 32 + B_c (the high word of one SMULL on the Cortex-M4) for
 * every channel, acc the dot product of `count` pairs with the channel's weights weight[c * stride..] */
static QSNN_ALWAYS_INLINE void stem_currents(const stem_constants_t *k, const int32_t *weight, uint32_t stride,
                                             const int32_t *pairs, const uint32_t count, int32_t *current)
{
    uint32_t c;
    for (c = 0; c < k->channels; ++c) {
        int32_t acc = dot_pairs(weight + c * stride, pairs, count) * k->scale;
        current[c] = (int32_t)(((int64_t)acc * k->multiplier[c]) >> 32) + k->bias[c];
    }
}

/* stem_currents of a window with two nonzero pairs, `first` and `second` (values a and b): two products a channel */
static QSNN_ALWAYS_INLINE void stem_currents_two(const stem_constants_t *k, const int32_t *weight, uint32_t stride,
                                                 uint32_t first, uint32_t second, int32_t a, int32_t b,
                                                 int32_t *current)
{
    const int32_t pair[2] = {a, b};
    uint32_t c;
    for (c = 0; c < k->channels; ++c) {
        const int32_t both[2] = {weight[c * stride + first], weight[c * stride + second]};
        int32_t acc = dot_pairs(both, pair, 2u) * k->scale;
        current[c] = (int32_t)(((int64_t)acc * k->multiplier[c]) >> 32) + k->bias[c];
    }
}

/* The LIF at k = 2 (2-bit fields, 16 a word) of a window whose taps are 0 but for pairs a and b
 * (values a_taps, b_taps: `two` 1), for pair a alone (`two` 0), or for one tap alone, the low (`two`
 * 2) or high (3) half of pair a, a_taps then its value * 2^R; the currents computed as each neuron
 * fires: weight points at channel 0's pair a, `stride` pairs a channel, pair b lies b_offset further.
 * The arithmetic of lif_mcu.c's fire_word (k = 2) on the currents of stem_currents. */
static QSNN_ALWAYS_INLINE void fire_two_pairs(const qsnn_model_t *model, const qsnn_lif_t *lif,
                                              const stem_constants_t *k, const int32_t *weight, const uint32_t stride,
                                              uint32_t b_offset, int32_t a_taps, int32_t b_taps, uint32_t *levels,
                                              uint32_t *out, const int two)
{
    const uint32_t fraction = lif->fraction_bits, unit = 1u << fraction;
    int32_t leak = (int32_t)(1u << (fraction - lif->tau_shift));
    const int32_t threshold = lif->threshold + (int32_t)(unit / 2u), scale = k->scale;
    uint32_t c, i;
    (void)model;
#if defined(__GNUC__)
    __asm__("" : "+r"(leak));   /* a multiplier, not a shift: level * leak + x is one MLA */
#endif
    for (c = 0; c < k->channels; c += 16u) {
        const int32_t *w = weight + c * stride, *w_b = w + b_offset, *multiplier = k->multiplier + c;
        const int32_t *bias = k->raised + c;
        const uint32_t word = levels[c / 16u];
        uint32_t up = 0, down = 0, fired = 0;
#if defined(__GNUC__)
        if (two == 1) __asm__("" : "+r"(w_b));   /* a base of its own: pair b at immediate offsets, not 16 offsets kept */
#endif
#if defined(__GNUC__)
#pragma GCC unroll 16
#endif
        for (i = 0; i < 16u; ++i) {
            const int32_t pair[2] = {a_taps, b_taps}, both[2] = {w[i * stride], two == 1 ? w_b[i * stride] : 0};
            /* one tap: its weight (the pair's low or high half) times the tap's value, already * 2^R */
            const int32_t acc = two == 2 ? (int32_t)(int16_t)w[i * stride] * a_taps
                                : two == 3 ? (w[i * stride] >> 16) * a_taps
                                           : dot_pairs(both, pair, two == 1 ? 2u : 1u) * scale;
            const int32_t level = (int32_t)(word << (30u - 2u * i)) >> 30;
            /* U + 2^(F-1): U >= Theta, U > 2^(F-1) and U < -2^(F-1) of lif_mcu.c's fire_word */
            const int32_t raised = high_product_add(acc, multiplier[i], level * leak + bias[i]);
            if (raised >= threshold) {
                fired |= 1u << i;
            } else {
                up |= ((unit - (uint32_t)raised) >> 31) << (2u * i);
                down |= ((uint32_t)raised >> 31) << (2u * i);
            }
        }
        levels[c / 16u] = up | 3u * down;
        if (c % 32u == 0u) {
            out[c / 32u] = fired;
        } else {
            out[c / 32u] |= fired << 16;
        }
    }
}

/* The nonzero values of one row of the padded frame, `width` <= 64 bytes: bit i of *low (i < 32) or
 * of *high (i >= 32) set where row[i] is not 0; four bytes at a time (an event frame's rows are mostly 0). */
static void row_occupancy(const int8_t *row, uint32_t width, uint32_t *low, uint32_t *high)
{
    uint32_t i, b, bits[2] = {0u, 0u};
    for (i = 0; i + 4u <= width; i += 4u) {
        uint32_t word;
        memcpy(&word, row + i, sizeof word);
        for (b = 0; word != 0u; ++b, word >>= 8) {
            if ((word & 0xFFu) != 0u) bits[(i + b) / 32u] |= 1u << ((i + b) % 32u);
        }
    }
    for (; i < width; ++i) {
        if (row[i] != 0) bits[i / 32u] |= 1u << (i % 32u);
    }
    *low = bits[0];
    *high = bits[1];
}

/* The stem with `pair_count` pairs of taps a pixel, `pairs` room for them; `channels` and `k`
 * the constant input channels and kernel size, or 0 for any. A window of an event frame with one
 * or two nonzero pairs (a lone event) takes one or two products a channel. */
static QSNN_ALWAYS_INLINE void run_pixels(const qsnn_model_t *model, const qsnn_ctx_t *ctx, const qsnn_stage_t *stage,
                                          const qsnn_map_t *out, int32_t *pairs, const uint32_t pair_count,
                                          const uint32_t channels, const uint32_t k)
{
    const qsnn_packed_scratch_t *scratch = (const qsnn_packed_scratch_t *)ctx->scratch;
    const qsnn_lif_t *lif = &stage->lif;
    int32_t *current = scratch->currents;
    qsnn_fire_memo_t memo;
    qsnn_fire_bias_t zeros;   /* the LIF of the windows of zeros: the currents are the biases */
    stem_constants_t constants;
    const uint32_t padded_height = model->input_height + 2u * model->stem_padding;
    const uint32_t padded_width = model->input_width + 2u * model->stem_padding;
    /* constant 3x3 shapes at stride 1, rows of at most 32 outputs and 64 padded columns: the windows of
     * zeros found from the rows' nonzero columns, without reading their taps (not in the worst case) */
    const uint32_t skip_zeros = channels != 0u && k == 3u && stage->stride == 1u && out->width <= 32u
                                && padded_width <= 64u && !QSNN_WORST;
    const uint32_t level_words = qsnn_words_for(out->channels * model->field_bits);
    const uint32_t spike_words = qsnn_words_for(out->channels);
    uint32_t *levels = qsnn_state_words(model, ctx, lif, out->channels, out->width, 0, 0);   /* [y][x][word] */
    uint32_t *spikes = qsnn_pixel_words(ctx->arena, out, 0, 0, 0);                          /* [y][x][word] */
    /* event frames at k = 2 whose windows of one or two nonzero pairs take the LIF of fire_two_pairs
     * (Theta + 2^(F-1) within int32; not in the worst case) */
    const uint32_t fused = model->event_frames && model->field_bits == 2u && out->channels % 16u == 0u
                           && channels != 0u && !QSNN_WORST
                           && lif->threshold <= INT32_MAX - (int32_t)(1u << (lif->fraction_bits - 1u));
    const uint32_t one_tap = lif->acc_shift <= 24u;   /* a tap (|tap| <= 127) * 2^R within int32 */
    uint32_t y, x, i, occupied_low[4], occupied_high[4];   /* the nonzero columns of the k rows */
    constants.multiplier = lif->multiplier;
    constants.bias = lif->bias;
    constants.raised = scratch->negative;
    for (i = 0; i < out->channels && fused; ++i) scratch->negative[i] = lif->bias[i] + (int32_t)(1u << (lif->fraction_bits - 1u));
    constants.scale = (int32_t)(1u << lif->acc_shift);
    constants.channels = out->channels;
    scratch->taps[model->stem_taps - 1u] = 0;   /* the generic path's odd last tap */
    memo.valid = 0;
    zeros.valid = 0;
    for (y = 0; y < out->height; ++y) {
        uint32_t windows = ~0u;   /* bit x: output pixel x of the row may have a nonzero tap */
        if (skip_zeros) {   /* the rows under the kernel, their nonzero columns spread over the kernel's width */
            uint32_t low = 0, high = 0, ci, ky, row_low, row_high;
            for (ky = y == 0u ? 0u : k - 1u; ky < k; ++ky) {   /* rows y + ky of every channel; the others kept */
                occupied_low[ky % 4u] = occupied_high[ky % 4u] = 0u;
                for (ci = 0; ci < channels; ++ci) {
                    row_occupancy(ctx->padded + (ci * padded_height + y + ky) * padded_width, padded_width, &row_low,
                                  &row_high);
                    occupied_low[ky % 4u] |= row_low;
                    occupied_high[ky % 4u] |= row_high;
                }
            }
            for (ky = 0; ky < k; ++ky) {
                low |= occupied_low[ky];
                high |= occupied_high[ky];
            }
            for (ky = 0; ky + 1u < k; ++ky) {   /* the next row's first rows */
                occupied_low[ky] = occupied_low[ky + 1u];
                occupied_high[ky] = occupied_high[ky + 1u];
            }
            windows = 0;
            for (i = 0; i < k; ++i) windows |= i == 0u ? low : (low >> i) | (high << (32u - i));
        }
        for (x = 0; x < out->width; ++x, levels += level_words, spikes += spike_words) {
            uint32_t changed, any = 0;
            if (skip_zeros && ((windows >> x) & 1u) == 0u) {   /* every tap 0: the currents are the biases */
                qsnn_fire_bias_inline(model, lif, out->channels, levels, spikes, &zeros);
                continue;
            }
            if (model->event_frames) {   /* sparse windows: their nonzero pairs found, nothing remembered */
                uint32_t nonzero = 0, first = 0, last = 0;
                load_pairs(model, ctx, stage, y, x, pairs, pair_count, channels, k, padded_height, padded_width, 0);
#if defined(__GNUC__)
#pragma GCC unroll 16
#endif
                for (i = 0; i < pair_count; ++i) {
                    if (pairs[i] != 0) {
                        first = nonzero == 0u ? i : first;
                        ++nonzero;
                        last = i;
                    }
                }
                if (nonzero == 0u && !QSNN_WORST) {   /* worst case: every pixel computed */
                    qsnn_fire_bias_inline(model, lif, out->channels, levels, spikes, &zeros);
                } else if ((nonzero == 1u || nonzero == 2u) && fused) {   /* one or two products a neuron, as it fires */
                    if (nonzero == 1u) {   /* a lone pair */
                        const int32_t low = (int16_t)(pairs[first] & 0xFFFF), high = pairs[first] >> 16;
                        if (high == 0 && one_tap) {   /* one tap: the low half */
                            fire_two_pairs(model, lif, &constants, stage->weight_pairs + first, pair_count, 0u,
                                           low * constants.scale, 0, levels, spikes, 2);
                        } else if (low == 0 && one_tap) {
                            fire_two_pairs(model, lif, &constants, stage->weight_pairs + first, pair_count, 0u,
                                           high * constants.scale, 0, levels, spikes, 3);
                        } else {
                            fire_two_pairs(model, lif, &constants, stage->weight_pairs + first, pair_count, 0u,
                                           pairs[first], 0, levels, spikes, 0);
                        }
                    } else {
                        fire_two_pairs(model, lif, &constants, stage->weight_pairs + first, pair_count, last - first,
                                       pairs[first], pairs[last], levels, spikes, 1);
                    }
                } else {
                    if (nonzero == 1u) {
                        stem_currents(&constants, stage->weight_pairs + last, pair_count, &pairs[last], 1u, current);
                    } else if (nonzero == 2u) {
                        stem_currents_two(&constants, stage->weight_pairs, pair_count, first, last, pairs[first],
                                          pairs[last], current);
                    } else {
                        stem_currents(&constants, stage->weight_pairs, pair_count, pairs, pair_count, current);
                    }
                    qsnn_fire_pixel(model, lif, current, out->channels, levels, spikes);
                }
                continue;
            }
            changed = load_pairs(model, ctx, stage, y, x, pairs, pair_count, channels, k, padded_height, padded_width,
                                 1);
#if defined(__GNUC__)
#pragma GCC unroll 16
#endif
            for (i = 0; i < pair_count; ++i) any |= (uint32_t)pairs[i];
            if (any == 0u && !QSNN_WORST) {   /* worst case: every pixel computed */
                qsnn_fire_bias_inline(model, lif, out->channels, levels, spikes, &zeros);
                continue;
            }
            if (changed != 0u || y + x == 0u || QSNN_WORST) {   /* worst case: every pixel computed */
                stem_currents(&constants, stage->weight_pairs, pair_count, pairs, pair_count, current);
                memo.valid = 0;
            }
            qsnn_fire_pixel_memo(model, lif, current, out->channels, levels, spikes, &memo);
        }
    }
}

void qsnn_run_stem(const qsnn_model_t *model, const qsnn_ctx_t *ctx, const qsnn_stage_t *stage,
                   const qsnn_map_t *out, const int8_t *frame)
{
    qsnn_pad_frame(model, ctx, frame);
    if (stage->kernel == 3u && model->input_channels == 1u) {
        int32_t pairs[5] = {0};
        run_pixels(model, ctx, stage, out, pairs, 5u, 1u, 3u);
    } else if (stage->kernel == 3u && model->input_channels == 2u) {
        int32_t pairs[9] = {0};
        run_pixels(model, ctx, stage, out, pairs, 9u, 2u, 3u);
    } else {
        run_pixels(model, ctx, stage, out, ((const qsnn_packed_scratch_t *)ctx->scratch)->pairs, model->stem_taps / 2u,
                   0u, 0u);
    }
}
