/* stem_mcu.c: the 8-bit conv of the int8 frame on the microcontrollers: the taps of a pixel as
 * int16 pairs, two products per instruction (SMLAD on the Cortex-M4), the LIF of lif_mcu.c.
 * Compiled once for each common kernel (a static image's 3x3 over one input channel, an event
 * frame's over two: the polarities) and once for any shape of each kind, each a function of its
 * own (a build for static images, QSNN_STATIC_ONLY, leaves the event frames' out): with constant
 * shapes the taps are read straight from the padded frame, the pairs stay in registers and the
 * dot products unroll. A static image's pixel whose taps equal the last computed pixel's (a
 * uniform background) keeps its currents: the dot products are skipped, and its LIF is remembered
 * (lif_mcu.c). A window of zeros has the biases as currents (lif_mcu.c's qsnn_fire_bias). An
 * event frame's window at k = 2 takes the products of its nonzero pairs alone (up to four; its taps
 * found from the rows' nonzero columns, only those read), 16 neurons at a time, their LIF from
 * (M_c, B_c) pairs (one LDRD), without the leak term where the 16 levels are 0 (no currents stored):
 * the products of one or two pairs computed as each neuron fires, of more into a buffer first. */
#include <string.h>

#include "qsnn_internal.h"

#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#endif

/* acc + the two products of a weight pair and a tap pair (acc unused when `first`: the products alone) */
static QSNN_ALWAYS_INLINE int32_t add_pair_products(int32_t acc, int32_t weight, int32_t taps, const int first)
{
#if defined(__ARM_FEATURE_DSP)
    return first ? __smuad(weight, taps) : __smlad(weight, taps, acc);   /* two products */
#else
    return (first ? 0 : acc) + (int16_t)(weight & 0xFFFF) * (int16_t)(taps & 0xFFFF) + (weight >> 16) * (taps >> 16);
#endif
}

/* sum of the products of two strings of `count` int16 pairs (tap 2i in the low half, 2i + 1 in the high) */
static QSNN_ALWAYS_INLINE int32_t dot_pairs(const int32_t *weight, const int32_t *taps, const uint32_t count)
{
    int32_t acc = 0;
    uint32_t i;
#if defined(__GNUC__)
#pragma GCC unroll 16
#endif
    for (i = 0; i < count; ++i) acc = add_pair_products(acc, weight[i], taps[i], i == 0u);
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

/* The most pairs of a pixel's taps in a constant shape (3x3 over two channels), and their offsets */
#define QSNN_STEM_PAIRS 9u
static const uint32_t every_pair[QSNN_STEM_PAIRS] = {0u, 1u, 2u, 3u, 4u, 5u, 6u, 7u, 8u};

/* The per-layer constants of the stem's currents and (fire_pairs) LIF, in locals: the stores to the
 * currents alias none */
typedef struct {
    const int32_t *multiplier, *bias;
    const int32_t *scaled;   /* M_c, B_c + 2^(F-1) (fire_pairs): [channels][2], in the scratch's `currents` */
    int32_t scale;   /* 2^R */
    uint32_t channels;
    qsnn_lif_constants_t lif;
} stem_constants_t;

/* current[c] = ((acc * 2^R) * M_c) >> 32 + B_c (the high word of one SMULL on the Cortex-M4) for
 * every channel, acc the dot product of `count` pairs with the channel's weights weight[c * stride..] */
static QSNN_ALWAYS_INLINE void stem_currents(const stem_constants_t *k, const int32_t *weight, uint32_t stride,
                                             const int32_t *pairs, const uint32_t count, int32_t *current)
{
    const int32_t *multiplier = k->multiplier, *bias = k->bias, scale = k->scale;
    const int32_t *const end = current + k->channels;   /* one register for the loop: few are left */
    for (; current != end; ++current, ++multiplier, ++bias, weight += stride) {
        int32_t acc = dot_pairs(weight, pairs, count) * scale;
        *current = (int32_t)(((int64_t)acc * *multiplier) >> 32) + *bias;
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

/* acc[i] = neuron i's products (* 2^R) of a window whose taps are 0 but for `count` pairs, pair
 * j at offsets[j] from neuron i's weights (weight + i * stride) with value values[j] */
static QSNN_ALWAYS_INLINE void window_products(const int32_t *weight, const uint32_t stride, const uint32_t *offsets,
                                               const int32_t *values, const uint32_t count, int32_t scale,
                                               int32_t *acc)
{
    const int32_t *w[QSNN_STEM_PAIRS];
    int32_t v[QSNN_STEM_PAIRS];   /* in registers: the stores to acc alias no value */
    uint32_t i, j;
#if defined(__GNUC__)
#pragma GCC unroll 16
#endif
    for (j = 0; j < count; ++j) {
        w[j] = weight + offsets[j];   /* a base each: immediate offsets */
        v[j] = values[j];
    }
#if defined(__GNUC__)
#pragma GCC unroll 16
#endif
    for (i = 0; i < 16u; ++i) {
        int32_t sum = 0;
#if defined(__GNUC__)
#pragma GCC unroll 16
#endif
        for (j = 0; j < count; ++j) sum = add_pair_products(sum, w[j][i * stride], v[j], j == 0u);
        acc[i] = sum * scale;
    }
}

/* The LIF at k = 2 (2-bit fields, 16 a word) of 16 neurons from their products (* 2^R): acc[i]
 * (`count` 0: a buffer's), or those of a window of `count` (1 or 2) nonzero pairs (window_products'
 * arguments; `half` 1 or 2: one tap alone) computed as each neuron fires (no buffer: one or two pairs
 * leave registers enough). The currents of stem_currents, raised by half a level for qsnn_fire_raised:
 *   U + 2^(F-1) = ((acc * 2^R) * M_c) >> 32 + level * leak + B_c + 2^(F-1)   (Eq. 4, 8)
 * `resting`: every level 0 (*word 0), no leak term. Returns the spikes (bit i: neuron i); *word
 * the levels, in place. */
static QSNN_ALWAYS_INLINE uint32_t fire_sixteen(const stem_constants_t *k, const int32_t *scaled, const int32_t *acc,
                                                const int32_t *weight, const uint32_t stride, const uint32_t *offsets,
                                                const int32_t *values, const uint32_t count, const int half,
                                                uint32_t *word, const int resting)
{
    const qsnn_lif_constants_t lif = k->lif;   /* in registers */
    const int32_t *first = count != 0u ? weight + offsets[0] : NULL, *second = count == 2u ? weight + offsets[1] : NULL;
    const int32_t a = count != 0u ? values[0] : 0, b = count == 2u ? values[1] : 0, scale = k->scale;
    const uint32_t before = *word;
    uint32_t i, fields = 0, fired = 0;
#if defined(__GNUC__)
#pragma GCC unroll 16
#endif
    for (i = 0; i < 16u; ++i) {
        const int32_t level = (int32_t)(before << (30u - 2u * i)) >> 30;
        const int32_t multiplier = scaled[2u * i], raised_bias = scaled[2u * i + 1u];   /* one LDRD */
        int32_t sum;
        if (count == 0u) {
            sum = acc[i];
        } else if (half == 1) {
            sum = (int32_t)(int16_t)first[i * stride] * a;
        } else if (half == 2) {
            sum = (first[i * stride] >> 16) * a;
        } else {
            sum = add_pair_products(0, first[i * stride], a, 1);
            if (count == 2u) sum = add_pair_products(sum, second[i * stride], b, 0);
            sum *= scale;
        }
        qsnn_fire_raised(high_product_add(sum, multiplier, resting ? raised_bias : level * lif.leak + raised_bias),
                         &lif, i, &fired, &fields);
    }
    *word = fields;
    return fired;
}

/* fire_sixteen from a buffer, of 16 resting neurons (most of a stem's) and of any: compiled once each */
static QSNN_NOINLINE uint32_t fire_sixteen_resting(const stem_constants_t *k, const int32_t *scaled,
                                                   const int32_t *acc, uint32_t *word)
{
    return fire_sixteen(k, scaled, acc, NULL, 0u, NULL, NULL, 0u, 0, word, 1);
}

static QSNN_NOINLINE uint32_t fire_sixteen_any(const stem_constants_t *k, const int32_t *scaled, const int32_t *acc,
                                               uint32_t *word)
{
    return fire_sixteen(k, scaled, acc, NULL, 0u, NULL, NULL, 0u, 0, word, 0);
}

/* fire_sixteen of each window of one or two pairs (`count`, `half`), resting (every level 0) or not:
 * compiled once each */
#define FIRE_PRODUCTS(name, count, half)                                                                          \
    static QSNN_NOINLINE uint32_t name(const stem_constants_t *k, const int32_t *scaled, const int32_t *weight,  \
                                       uint32_t stride, const uint32_t *offsets, const int32_t *values,          \
                                       uint32_t *word)                                                           \
    {                                                                                                            \
        return *word == 0u ? fire_sixteen(k, scaled, NULL, weight, stride, offsets, values, count, half, word, 1) \
                           : fire_sixteen(k, scaled, NULL, weight, stride, offsets, values, count, half, word, 0); \
    }
FIRE_PRODUCTS(fire_low_tap, 1u, 1)
FIRE_PRODUCTS(fire_high_tap, 1u, 2)
FIRE_PRODUCTS(fire_one_pair, 1u, 0)
FIRE_PRODUCTS(fire_two_pairs, 2u, 0)

/* window_products of three, four and nine pairs, compiled once each (every kernel calls them) */
#define WINDOW_PRODUCTS(name, count)                                                                             \
    static QSNN_NOINLINE void name(const int32_t *weight, uint32_t stride, const uint32_t *offsets,             \
                                   const int32_t *values, int32_t scale, int32_t *acc)                         \
    {                                                                                                          \
        window_products(weight, stride, offsets, values, count, scale, acc);                                   \
    }
WINDOW_PRODUCTS(three_pair_products, 3u)
WINDOW_PRODUCTS(four_pair_products, 4u)
WINDOW_PRODUCTS(nine_pair_products, 9u)

/* The LIF at k = 2 of a window whose taps are 0 but for `count` pairs (window_products' arguments;
 * or, `half` 1 (the low half) or 2 (the high), of one tap alone, of the pair at offsets[0], values[0]
 * then its value * 2^R), 16 neurons at a time: one or two pairs, their products as each neuron fires;
 * three, four or nine (every pair), their products into a buffer, then their LIF (two passes, each a
 * function of its own: few registers each, and the products compiled once). `channels`: a multiple of
 * 16, constant where the caller knows it. */
static QSNN_ALWAYS_INLINE void fire_pairs(const stem_constants_t *k, const int32_t *weight, const uint32_t stride,
                                          const uint32_t *offsets, const int32_t *values, const uint32_t count,
                                          const int half, uint32_t *levels, uint32_t *out, const uint32_t channels)
{
    int32_t acc[16];
    uint32_t c;
    for (c = 0; c < channels; c += 16u) {
        uint32_t fired, *word = &levels[c / 16u];
        const int32_t *scaled = k->scaled + 2u * c;
        if (count == 1u && half == 1) {
            fired = fire_low_tap(k, scaled, weight + c * stride, stride, offsets, values, word);
        } else if (count == 1u && half == 2) {
            fired = fire_high_tap(k, scaled, weight + c * stride, stride, offsets, values, word);
        } else if (count == 1u) {
            fired = fire_one_pair(k, scaled, weight + c * stride, stride, offsets, values, word);
        } else if (count == 2u) {
            fired = fire_two_pairs(k, scaled, weight + c * stride, stride, offsets, values, word);
        } else {
            if (count == 3u) {
                three_pair_products(weight + c * stride, stride, offsets, values, k->scale, acc);
            } else if (count == 4u) {
                four_pair_products(weight + c * stride, stride, offsets, values, k->scale, acc);
            } else {   /* QSNN_STEM_PAIRS */
                nine_pair_products(weight + c * stride, stride, offsets, values, k->scale, acc);
            }
            fired = *word == 0u ? fire_sixteen_resting(k, scaled, acc, word) : fire_sixteen_any(k, scaled, acc, word);
        }
        if (c % 32u == 0u) {
            out[c / 32u] = fired;
        } else {
            out[c / 32u] |= fired << 16;
        }
    }
}

/* Bit j of 4 set where bytes[j] is not 0, without a branch:
 *   top bit of byte j of ((w & 0x7F..) + 0x7F..) | w:  byte j of w nonzero
 *   (those top bits >> 7) * 0x10204080 >> 28:  bit j of 4 (the products add without a carry) */
static inline uint32_t nonzero_bytes(const int8_t *bytes)
{
    uint32_t word;
    memcpy(&word, bytes, sizeof word);
    return ((((((word & 0x7F7F7F7Fu) + 0x7F7F7F7Fu) | word) & 0x80808080u) >> 7) * 0x10204080u) >> 28;
}

/* Bit i - from set where row[i] is not 0, i in [from, to), to - from <= 32: four bytes at a time */
static inline uint32_t nonzero_columns(const int8_t *row, uint32_t from, uint32_t to)
{
    uint32_t i, bits = 0;
    for (i = from; i + 4u <= to; i += 4u) bits |= nonzero_bytes(row + i) << (i - from);
    for (; i < to; ++i) bits |= (row[i] != 0 ? 1u : 0u) << (i - from);
    return bits;
}

/* The nonzero values of one row of the padded frame, `width` <= 64 bytes: bit i of *low (i < 32) or
 * of *high (i >= 32) set where row[i] is not 0 (an event frame's rows are mostly 0) */
static void row_occupancy(const int8_t *row, uint32_t width, uint32_t *low, uint32_t *high)
{
    *low = nonzero_columns(row, 0u, width < 32u ? width : 32u);
    *high = width > 32u ? nonzero_columns(row, 32u, width) : 0u;
}

/* The nonzero columns of the rows of the padded frame under a row of windows (3x3 kernels at stride 1,
 * at most two input channels): [ci][ky], columns 0..31 in `low`, 32..63 in `high` */
typedef struct {
    uint32_t low[2][3], high[2][3];
} row_columns_t;

/* Whether the windows of the stem's output row y may hold a nonzero tap (bit x % 32 of windows[x / 32]),
 * from the nonzero columns of the rows under them: row y - 1's rows 1.. kept as rows 0.., the new rows
 * y + ky read (y = 0: all). For constant 3x3 shapes at stride 1 and rows of at most 64 padded columns. */
static QSNN_ALWAYS_INLINE void row_windows(const qsnn_ctx_t *ctx, uint32_t y, row_columns_t *rows,
                                           const uint32_t channels, const uint32_t k, uint32_t padded_height,
                                           uint32_t padded_width, uint32_t *windows)
{
    uint32_t low = 0, high = 0, ci, ky, i;
    for (ci = 0; ci < channels; ++ci) {
        for (ky = 0; ky + 1u < k && y != 0u; ++ky) {
            rows->low[ci][ky] = rows->low[ci][ky + 1u];
            rows->high[ci][ky] = rows->high[ci][ky + 1u];
        }
        for (ky = y == 0u ? 0u : k - 1u; ky < k; ++ky) {
            row_occupancy(ctx->padded + (ci * padded_height + y + ky) * padded_width, padded_width, &rows->low[ci][ky],
                          &rows->high[ci][ky]);
        }
        for (ky = 0; ky < k; ++ky) {
            low |= rows->low[ci][ky];
            high |= rows->high[ci][ky];
        }
    }
    windows[0] = low;
    windows[1] = high;
    for (i = 1; i < k; ++i) {   /* spread over kx */
        windows[0] |= (low >> i) | (high << (32u - i));
        windows[1] |= high >> i;
    }
}

/* Nonzero where row_windows applies (constant 3x3 shapes at stride 1, padded rows of at most 64
 * columns): the windows of zeros found without reading their taps (not in the worst case) */
static inline uint32_t finds_zero_windows(const qsnn_stage_t *stage, uint32_t channels, uint32_t k,
                                          uint32_t padded_width)
{
    return channels != 0u && k == 3u && stage->stride == 1u && padded_width <= 64u && !QSNN_WORST;
}

/* The constants of stem_currents and, given `scaled` (room for 2 x channels), of fire_pairs: the
 * (M_c, B_c + 2^(F-1)) pairs written there (inlined: the window loops keep the constants in registers) */
static QSNN_ALWAYS_INLINE void init_constants(stem_constants_t *constants, const qsnn_model_t *model,
                                              const qsnn_lif_t *lif, uint32_t channels, int32_t *scaled)
{
    uint32_t c;
    constants->multiplier = lif->multiplier;
    constants->bias = lif->bias;
    constants->scale = (int32_t)(1u << lif->acc_shift);
    constants->channels = channels;
    constants->scaled = scaled;
    qsnn_lif_constants(model, lif, &constants->lif);
    for (c = 0; c < channels && scaled != NULL; ++c) {
        scaled[2u * c] = lif->multiplier[c];
        scaled[2u * c + 1u] = lif->bias[c] + constants->lif.half;
    }
}

/* Where a stem reads and writes: the padded frame's rows and columns, and the levels and spikes of
 * its first output pixel ([y][x][word], level_words and spike_words a pixel) */
typedef struct {
    uint32_t padded_height, padded_width, level_words, spike_words;
    uint32_t *levels, *spikes;
} stem_frame_t;

static inline stem_frame_t stem_frame(const qsnn_model_t *model, const qsnn_ctx_t *ctx, const qsnn_stage_t *stage,
                                      const qsnn_map_t *out)
{
    stem_frame_t frame;
    frame.padded_height = model->input_height + 2u * model->stem_padding;
    frame.padded_width = model->input_width + 2u * model->stem_padding;
    frame.level_words = qsnn_words_for(out->channels * model->field_bits);
    frame.spike_words = qsnn_words_for(out->channels);
    frame.levels = qsnn_state_words(model, ctx, &stage->lif, out->channels, out->width, 0, 0);
    frame.spikes = qsnn_pixel_words(ctx->arena, out, 0, 0, 0);
    return frame;
}

/* The stem of a static image with `pair_count` pairs of taps a pixel, `pairs` room for them; `channels`
 * and `k` the constant input channels and kernel size, or 0 for any. A window of zeros has the biases
 * as currents; a window of the last computed window's taps keeps its currents, its LIF remembered. */
static QSNN_ALWAYS_INLINE void run_image_pixels(const qsnn_model_t *model, const qsnn_ctx_t *ctx,
                                                const qsnn_stage_t *stage, const qsnn_map_t *out, int32_t *pairs,
                                                const uint32_t pair_count, const uint32_t channels, const uint32_t k)
{
    const qsnn_packed_scratch_t *scratch = (const qsnn_packed_scratch_t *)ctx->scratch;
    const qsnn_lif_t *lif = &stage->lif;
    int32_t *current = scratch->currents;
    qsnn_fire_memo_t memo;
    qsnn_fire_bias_t zeros;   /* the LIF of the windows of zeros: the currents are the biases */
    stem_constants_t constants;
    row_columns_t rows;
    stem_frame_t at = stem_frame(model, ctx, stage, out);
    const uint32_t skip_zeros = finds_zero_windows(stage, channels, k, at.padded_width);
    uint32_t y, x, i;
    init_constants(&constants, model, lif, out->channels, NULL);
    scratch->taps[model->stem_taps - 1u] = 0;   /* the generic path's odd last tap */
    memo.valid = 0;
    zeros.valid = 0;
    for (y = 0; y < out->height; ++y) {
        uint32_t windows[2] = {~0u, ~0u};
        if (skip_zeros) row_windows(ctx, y, &rows, channels, k, at.padded_height, at.padded_width, windows);
        for (x = 0; x < out->width; ++x, at.levels += at.level_words, at.spikes += at.spike_words) {
            uint32_t changed, any = 0;
            if (skip_zeros && ((windows[x / 32u] >> (x % 32u)) & 1u) == 0u) {   /* every tap 0: the biases */
                qsnn_fire_bias_inline(model, lif, out->channels, at.levels, at.spikes, &zeros);
                continue;
            }
            changed = load_pairs(model, ctx, stage, y, x, pairs, pair_count, channels, k, at.padded_height,
                                 at.padded_width, 1);
#if defined(__GNUC__)
#pragma GCC unroll 16
#endif
            for (i = 0; i < pair_count; ++i) any |= (uint32_t)pairs[i];
            if (any == 0u && !QSNN_WORST) {   /* worst case: every pixel computed */
                qsnn_fire_bias_inline(model, lif, out->channels, at.levels, at.spikes, &zeros);
                continue;
            }
            if (changed != 0u || y + x == 0u || QSNN_WORST) {   /* worst case: every pixel computed */
                stem_currents(&constants, stage->weight_pairs, pair_count, pairs, pair_count, current);
                memo.valid = 0;
            }
            qsnn_fire_pixel_memo(model, lif, current, out->channels, at.levels, at.spikes, &memo);
        }
    }
}

/* The LIF at k = 2 of an event window of the 3x3 kernel over two channels (nine pairs a neuron,
 * weight[c * 9..]), 16 neurons at a time, from its `count` nonzero pairs (fire_pairs' arguments): one
 * tap alone, one, two, three or four pairs their products alone, more every pair (`pairs`). `channels`
 * as fire_pairs'. */
static QSNN_ALWAYS_INLINE void fire_window(const stem_constants_t *constants, const int32_t *weight,
                                           const uint32_t *offsets, const int32_t *values, uint32_t count,
                                           const int32_t *pairs, uint32_t one_tap, uint32_t *levels, uint32_t *spikes,
                                           const uint32_t channels)
{
    const uint32_t pair_count = QSNN_STEM_PAIRS;
    if (count == 1u) {
        const int32_t low = (int16_t)(values[0] & 0xFFFF), high = values[0] >> 16;
        const int32_t tap[1] = {(high == 0 ? low : high) * constants->scale};
        if (one_tap && (high == 0 || low == 0)) {   /* one tap: one product a neuron */
            fire_pairs(constants, weight, pair_count, offsets, tap, 1u, high == 0 ? 1 : 2, levels, spikes, channels);
        } else {
            fire_pairs(constants, weight, pair_count, offsets, values, 1u, 0, levels, spikes, channels);
        }
    } else if (count == 2u) {
        fire_pairs(constants, weight, pair_count, offsets, values, 2u, 0, levels, spikes, channels);
    } else if (count == 3u) {
        fire_pairs(constants, weight, pair_count, offsets, values, 3u, 0, levels, spikes, channels);
    } else if (count == 4u) {
        fire_pairs(constants, weight, pair_count, offsets, values, 4u, 0, levels, spikes, channels);
    } else {   /* every pair: one base, immediate offsets */
        fire_pairs(constants, weight, pair_count, every_pair, pairs, pair_count, 0, levels, spikes, channels);
    }
}

/* The stem of an event frame, arguments as run_image_pixels': each window's nonzero pairs found
 * (nothing remembered: an event frame's windows rarely repeat; windows of zeros found from the rows'
 * nonzero columns where row_windows applies), their currents, then qsnn_fire_pixel; at k = 2 and a
 * constant shape (`fused`) the products of those pairs alone, as each neuron fires (fire_window). The
 * worst case and shapes that run_event_windows does not take (4- and 8-bit fields among them). */
static QSNN_ALWAYS_INLINE void run_event_pixels(const qsnn_model_t *model, const qsnn_ctx_t *ctx,
                                                const qsnn_stage_t *stage, const qsnn_map_t *out, int32_t *pairs,
                                                const uint32_t pair_count, const uint32_t channels, const uint32_t k)
{
    const qsnn_lif_t *lif = &stage->lif;
    int32_t *const scaled_or_current = ((const qsnn_packed_scratch_t *)ctx->scratch)->currents;   /* fused or not */
    stem_constants_t constants;
    row_columns_t rows;
    qsnn_fire_bias_t zeros;   /* the LIF of the windows of zeros: the currents are the biases */
    stem_frame_t at = stem_frame(model, ctx, stage, out);
    const uint32_t skip_zeros = finds_zero_windows(stage, channels, k, at.padded_width);
    /* k = 2 on whole words of 16 neurons, on U + 2^(F-1), of the 3x3 kernel over two channels (not in the
     * worst case) */
    const uint32_t fused = model->field_bits == 2u && out->channels % 16u == 0u && pair_count == QSNN_STEM_PAIRS
                           && channels == 2u && !QSNN_WORST && qsnn_can_raise(lif);
    const uint32_t one_tap = lif->acc_shift <= 24u;   /* a tap (|tap| <= 127) * 2^R within int32 */
    uint32_t y, x, i;
    init_constants(&constants, model, lif, out->channels, fused ? scaled_or_current : NULL);
    ((const qsnn_packed_scratch_t *)ctx->scratch)->taps[model->stem_taps - 1u] = 0;   /* the generic path's odd last tap */
    zeros.valid = 0;
    for (y = 0; y < out->height; ++y) {
        uint32_t windows[2] = {~0u, ~0u};
        if (skip_zeros) row_windows(ctx, y, &rows, channels, k, at.padded_height, at.padded_width, windows);
        for (x = 0; x < out->width; ++x, at.levels += at.level_words, at.spikes += at.spike_words) {
            uint32_t nonzero = 0, offsets[QSNN_STEM_PAIRS];   /* the nonzero pairs: offsets and values */
            int32_t values[QSNN_STEM_PAIRS];
            if (skip_zeros && ((windows[x / 32u] >> (x % 32u)) & 1u) == 0u) {   /* every tap 0: the biases */
                qsnn_fire_bias_inline(model, lif, out->channels, at.levels, at.spikes, &zeros);
                continue;
            }
            load_pairs(model, ctx, stage, y, x, pairs, pair_count, channels, k, at.padded_height, at.padded_width, 0);
#if defined(__GNUC__)
#pragma GCC unroll 16
#endif
            for (i = 0; i < pair_count; ++i) {
                offsets[nonzero] = i;
                values[nonzero] = pairs[i];
                nonzero += pairs[i] != 0 ? 1u : 0u;
            }
            if (nonzero == 0u && !QSNN_WORST) {   /* worst case: every pixel computed */
                qsnn_fire_bias_inline(model, lif, out->channels, at.levels, at.spikes, &zeros);
            } else if (fused) {
                fire_window(&constants, stage->weight_pairs, offsets, values, nonzero, pairs, one_tap, at.levels,
                            at.spikes, out->channels);
            } else {
                if (nonzero == 1u) {
                    stem_currents(&constants, stage->weight_pairs + offsets[0], pair_count, values, 1u,
                                  scaled_or_current);
                } else if (nonzero == 2u) {
                    stem_currents_two(&constants, stage->weight_pairs, pair_count, offsets[0], offsets[1], values[0],
                                      values[1], scaled_or_current);
                } else {
                    stem_currents(&constants, stage->weight_pairs, pair_count, pairs, pair_count, scaled_or_current);
                }
                qsnn_fire_pixel(model, lif, scaled_or_current, out->channels, at.levels, at.spikes);
            }
        }
    }
}

/* code[X] of run_event_windows one row down, X < columns <= 32: bit X of `first` and `second` the new
 * rows' nonzero columns of channels 0 and 1 */
static inline void shift_codes(uint32_t *code, uint32_t first, uint32_t second, uint32_t columns)
{
    uint32_t x;
    for (x = 0; x < columns; ++x, first >>= 1, second >>= 1) {
        code[x] = ((code[x] >> 3) & ~((1u << 6) | (1u << 15))) | (first & 1u) << 6 | (second & 1u) << 15;
    }
}

/* An event frame's 3x3 stem over two channels at stride 1 (18 taps, 9 pairs), k = 2 on whole words of
 * 16 neurons (`channels` 16, or 0: any multiple of 16), padded rows of at most 64 columns, not in the
 * worst case: each window's nonzero taps found from the rows' nonzero columns, only those read.
 * Per output row, column X of the padded frame has a code with bit 3r set where row r = 3 ci + ky
 * under the row (channel ci, row y + ky) is nonzero at X; going down a row, ky - 1 <- ky:
 *   code = ((code >> 3) & ~(bit 6 | bit 15)) | new(ci 0) << 6 | new(ci 1) << 15
 * and window x's taps, bit t = 3 (3 ci + ky) + kx in (ci, ky, kx) order:
 *   taps = code[x] | code[x + 1] << 1 | code[x + 2] << 2
 * A window of zeros has the biases as currents; one of up to four nonzero pairs takes their products
 * alone (fire_window). */
static QSNN_ALWAYS_INLINE void run_event_windows(const qsnn_model_t *model, const qsnn_ctx_t *ctx,
                                                 const qsnn_stage_t *stage, const qsnn_map_t *out,
                                                 const uint32_t channels)
{
    const qsnn_lif_t *lif = &stage->lif;
    const uint32_t words = channels != 0u ? channels / 16u : out->channels / 16u;   /* level words: 16 neurons each */
    const stem_frame_t at = stem_frame(model, ctx, stage, out);
    uint32_t *levels = at.levels, *spikes = at.spikes;   /* [y][x][word] */
    const uint32_t width = out->width, one_tap = lif->acc_shift <= 24u;   /* a tap (|tap| <= 127) * 2^R within int32 */
    const int8_t *padded = ctx->padded;
    const int32_t *weight = stage->weight_pairs;
    int32_t *const scaled = ((const qsnn_packed_scratch_t *)ctx->scratch)->currents;
    uint32_t code[64];   /* per column of the padded frame, for the output row */
    uint32_t tap_offset[18];   /* tap t from a window's corner */
    stem_constants_t constants;
    qsnn_fire_bias_t zeros;   /* the LIF of the windows of zeros: the currents are the biases */
    uint32_t y, x, i, even_bits = 0x15555u;   /* the pairs' bits of 18 taps */
    for (i = 0; i < 18u; ++i) tap_offset[i] = (i / 9u * at.padded_height + i / 3u % 3u) * at.padded_width + i % 3u;
    init_constants(&constants, model, lif, out->channels, scaled);
    for (x = 0; x < at.padded_width; ++x) code[x] = 0;
#if defined(__GNUC__)
    __asm__("" : "+r"(even_bits));   /* a register, not four immediate operations a window */
#endif
    zeros.valid = 0;
    for (y = 0; y < out->height; ++y) {
        uint32_t ky;
        for (ky = y == 0u ? 0u : 2u; ky < 3u; ++ky) {   /* the rows new under output row y */
            uint32_t low[2], high[2];
            row_occupancy(padded + (y + ky) * at.padded_width, at.padded_width, &low[0], &high[0]);
            row_occupancy(padded + (at.padded_height + y + ky) * at.padded_width, at.padded_width, &low[1], &high[1]);
            shift_codes(code, low[0], low[1], at.padded_width < 32u ? at.padded_width : 32u);
            if (at.padded_width > 32u) shift_codes(code + 32, high[0], high[1], at.padded_width - 32u);
        }
        for (x = 0; x < width; ++x, levels += words, spikes += (words + 1u) / 2u) {
            const uint32_t taps = code[x] | code[x + 1u] << 1 | code[x + 2u] << 2;
            uint32_t pairs, few, count = 0, offsets[QSNN_STEM_PAIRS];   /* the nonzero pairs: offsets and values */
            int32_t values[QSNN_STEM_PAIRS];
            const int8_t *corner = padded + y * at.padded_width + x;
            if (taps == 0u) {   /* every tap 0: the biases */
                qsnn_fire_bias_inline(model, lif, out->channels, levels, spikes, &zeros);
                continue;
            }
            pairs = (taps | taps >> 1) & even_bits;   /* bit 2i: pair i (taps 2i and 2i + 1) */
            few = pairs & (pairs - 1u);
            few &= few - 1u;
            few &= few - 1u;
            few &= few - 1u;   /* 0: at most four pairs */
            if (few == 0u) {   /* those pairs alone read */
                for (; pairs != 0u; pairs &= pairs - 1u, ++count) {
                    const uint32_t t = qsnn_lowest_bit(pairs);   /* even: pair t / 2 */
                    offsets[count] = t / 2u;
                    values[count] = (int32_t)(pair_half(corner[tap_offset[t]], 0u)
                                              | pair_half(corner[tap_offset[t + 1u]], 1u));
                }
            } else {   /* five pairs or more: every pair */
                for (i = 0; i < QSNN_STEM_PAIRS; ++i) {
                    values[i] = (int32_t)(pair_half(corner[tap_offset[2u * i]], 0u)
                                          | pair_half(corner[tap_offset[2u * i + 1u]], 1u));
                }
                count = QSNN_STEM_PAIRS;
            }
            fire_window(&constants, weight, offsets, values, count, values, one_tap, levels, spikes,
                        channels != 0u ? channels : out->channels);
        }
    }
}

/* The stem of a static image (`events` 0) or of an event frame in a constant shape (`channels`,
 * `k` and `pair_count` nonzero: the pairs in registers) or in any (0: the pairs in the scratch) */
static QSNN_ALWAYS_INLINE void run_shape(const qsnn_model_t *model, const qsnn_ctx_t *ctx, const qsnn_stage_t *stage,
                                         const qsnn_map_t *out, const int events, const uint32_t pair_count,
                                         const uint32_t channels, const uint32_t k)
{
    int32_t constant_shape[QSNN_STEM_PAIRS] = {0};
    int32_t *pairs = channels != 0u ? constant_shape : ((const qsnn_packed_scratch_t *)ctx->scratch)->pairs;
    const uint32_t count = channels != 0u ? pair_count : model->stem_taps / 2u;
    if (events) {
        run_event_pixels(model, ctx, stage, out, pairs, count, channels, k);
    } else {
        run_image_pixels(model, ctx, stage, out, pairs, count, channels, k);
    }
}

/* Each kind and shape a function of its own: a build for static images alone (QSNN_EVENT_KERNELS 0)
 * compiles a static image's alike and leaves the event frames' out. The common shapes: a static
 * image's 3x3 over one channel, an event frame's over two (the polarities). */
#define STEM_KERNEL(name, events, pair_count, channels, k)                                                       \
    static QSNN_NOINLINE void name(const qsnn_model_t *model, const qsnn_ctx_t *ctx, const qsnn_stage_t *stage, \
                                   const qsnn_map_t *out)                                                      \
    {                                                                                                          \
        run_shape(model, ctx, stage, out, events, pair_count, channels, k);                                    \
    }
STEM_KERNEL(run_image_3x3x1, 0, 5u, 1u, 3u)
STEM_KERNEL(run_image_any, 0, 0u, 0u, 0u)
STEM_KERNEL(run_event_3x3x2, 1, 9u, 2u, 3u)
STEM_KERNEL(run_event_any, 1, 0u, 0u, 0u)

/* run_event_windows for 16 output channels (the 16 neurons of one word in registers) and for any multiple of 16 */
static QSNN_NOINLINE void run_event_windows_16(const qsnn_model_t *model, const qsnn_ctx_t *ctx,
                                               const qsnn_stage_t *stage, const qsnn_map_t *out)
{
    run_event_windows(model, ctx, stage, out, 16u);
}

static QSNN_NOINLINE void run_event_windows_any(const qsnn_model_t *model, const qsnn_ctx_t *ctx,
                                                const qsnn_stage_t *stage, const qsnn_map_t *out)
{
    run_event_windows(model, ctx, stage, out, 0u);
}

/* Nonzero where run_event_windows applies: a 3x3 kernel over two channels at stride 1, padded rows of at
 * most 64 columns, k = 2 on whole words of 16 neurons and Theta + 2^(F-1) within int32, not the worst case */
static int takes_event_windows(const qsnn_model_t *model, const qsnn_stage_t *stage, const qsnn_map_t *out)
{
    return !QSNN_WORST && stage->kernel == 3u && stage->stride == 1u && model->input_channels == 2u
           && model->input_width + 2u * model->stem_padding <= 64u && model->field_bits == 2u
           && out->channels % 16u == 0u && qsnn_can_raise(&stage->lif);
}

void qsnn_run_stem(const qsnn_model_t *model, const qsnn_ctx_t *ctx, const qsnn_stage_t *stage,
                   const qsnn_map_t *out, const int8_t *frame)
{
    const int three_by_three = stage->kernel == 3u;
    qsnn_pad_frame(model, ctx, frame);
    if (QSNN_EVENT_KERNELS && model->event_frames) {
        if (takes_event_windows(model, stage, out)) {
            if (out->channels == 16u) {
                run_event_windows_16(model, ctx, stage, out);
            } else {
                run_event_windows_any(model, ctx, stage, out);
            }
        } else if (three_by_three && model->input_channels == 2u) {
            run_event_3x3x2(model, ctx, stage, out);
        } else {
            run_event_any(model, ctx, stage, out);
        }
    } else if (three_by_three && model->input_channels == 1u) {
        run_image_3x3x1(model, ctx, stage, out);
    } else {
        run_image_any(model, ctx, stage, out);
    }
}
