/* qsnn_runtime.c: integer-only, streaming Q-SNN inference, the arithmetic of docs/export.md.
 *
 * One call of qsnn_step() runs the network's stages in order for one time step. Inside a stage
 * the loops run over output pixels, then output channels. Two implementations of the stem, the
 * binary convs and the LIF compute the same integers:
 * - the portable one (the default; the Cortex-M4's): a binary conv is event-driven, it lists the
 *   active inputs under the kernel once per pixel, and each adds its output-channel masks (32
 *   channels a word) into bit-sliced counters, so the work follows the spikes; the k-bit membrane
 *   levels of a pixel's channels are read and written in place in the packed state;
 * - the host one (QSNN_HOST defined, as the export's Makefile does for qsnn_host): a binary conv
 *   is dense, the input bits under the kernel AND each output channel's weight bits, counted by
 *   popcount over 64-bit words; the levels are int8, one per neuron; the stem and the LIF loop
 *   over a pixel's channels, which the compiler vectorizes. */
#include "qsnn_runtime.h"

#include <stddef.h>
#include <string.h>

#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#endif

/* Right shifts of negative int32 values must be arithmetic (every C compiler for these targets
 * does so; C99 leaves it to the implementation). */
typedef char qsnn_needs_arithmetic_shift[(-8 >> 1) == -4 ? 1 : -1];

static uint32_t qsnn_arena[QSNN_ARENA_WORDS];
static int32_t qsnn_summed[QSNN_CLASSES];

static uint32_t words_for(uint32_t bits) { return (bits + 31u) / 32u; }

/* The words of pixel (y, x), plane p of a map. */
static uint32_t *pixel_words(const qsnn_map_t *map, uint32_t plane, uint32_t y, uint32_t x)
{
    uint32_t index = (plane * map->height + y) * map->width + x;
    return qsnn_arena + map->offset + index * words_for(map->channels);
}

/* The level after a step without a spike: clamp(round_half_even(U / 2^F), -n, n) with
 *   round_half_even(U / 2^F) = (U + 2^(F-1) - 1 + ((U >> F) & 1)) >> F */
static inline int32_t next_level(int32_t membrane, uint32_t fraction, int32_t half)
{
#if QSNN_LEVELS == 1   /* k = 2: clamp(round_half_even(U / 2^F), -1, 1) = [U > 2^(F-1)] - [U < -2^(F-1)] */
    (void)fraction;
    return (membrane > half) - (membrane < -half);
#else
    int32_t level = (membrane + half - 1 + ((membrane >> fraction) & 1)) >> fraction;
    return level > QSNN_LEVELS ? QSNN_LEVELS : (level < -QSNN_LEVELS ? -QSNN_LEVELS : level);
#endif
}

/* identity shortcut: current[c] += R * (the block input's spike at channel c of pixel (y, x)) */
static void add_identity(const qsnn_stage_t *stage, uint32_t channels, uint32_t y, uint32_t x, int32_t *current)
{
    const uint32_t *spikes = pixel_words(&qsnn_maps[stage->residual_source], 0, y, x);
    uint32_t c;
    for (c = 0; c < channels; ++c) {
        current[c] += stage->residual_scale * (int32_t)((spikes[c / 32u] >> (c % 32u)) & 1u);
    }
}

/* ---- the stem: 8-bit conv of the int8 frame ------------------------------------------------ */

/* The frame with a zero border of the stem's padding: every tap reads without a check. */
#define QSNN_PADDED_HEIGHT (QSNN_INPUT_HEIGHT + 2u * QSNN_STEM_PADDING)
#define QSNN_PADDED_WIDTH (QSNN_INPUT_WIDTH + 2u * QSNN_STEM_PADDING)
static int8_t qsnn_padded[QSNN_INPUT_CHANNELS * QSNN_PADDED_HEIGHT * QSNN_PADDED_WIDTH];

static void pad_frame(const int8_t *frame)
{
    uint32_t i, y;
    for (i = 0; i < QSNN_INPUT_CHANNELS; ++i) {
        for (y = 0; y < QSNN_INPUT_HEIGHT; ++y) {
            memcpy(qsnn_padded + (i * QSNN_PADDED_HEIGHT + y + QSNN_STEM_PADDING) * QSNN_PADDED_WIDTH + QSNN_STEM_PADDING,
                   frame + (i * QSNN_INPUT_HEIGHT + y) * QSNN_INPUT_WIDTH, QSNN_INPUT_WIDTH);
        }
    }
}

/* The taps of the stem's output pixel (y, x): the padded frame under the kernel, (ci, ky, kx) order */
static void stem_taps(const qsnn_stage_t *stage, uint32_t y, uint32_t x, int8_t *tap)
{
    uint32_t i, ky, kx, k = stage->kernel;
    for (i = 0; i < QSNN_INPUT_CHANNELS; ++i) {
        for (ky = 0; ky < k; ++ky) {
            const int8_t *row = qsnn_padded + (i * QSNN_PADDED_HEIGHT + y * stage->stride + ky) * QSNN_PADDED_WIDTH
                                + x * stage->stride;
            for (kx = 0; kx < k; ++kx) *tap++ = row[kx];
        }
    }
}

#define QSNN_PLANES 3u   /* at most: 2x2-pooled counts 0..4 */

#if defined(QSNN_HOST)
/* ---- the host path: dense binary convs by popcount, int8 levels, vectorizable loops -------- */

static int8_t qsnn_state[QSNN_NEURONS];   /* the levels of the spiking stages in order, each [y][x][c] */

/* The levels of `stage`'s neurons: after those of the spiking stages before it. */
static int8_t *stage_levels(const qsnn_stage_t *stage)
{
    uint32_t i, offset = 0;
    for (i = 0; &qsnn_stages[i] != stage; ++i) {
        if (qsnn_stages[i].kind != QSNN_STAGE_POOL) offset += qsnn_maps[i].channels * qsnn_maps[i].height * qsnn_maps[i].width;
    }
    return qsnn_state + offset;
}

/* A stage's currents [y][x][c] before its LIF, and which of its neurons spiked (0 past the last). */
static int32_t qsnn_layer_currents[QSNN_MAX_LAYER_NEURONS];
static uint8_t qsnn_spiked[QSNN_MAX_LAYER_NEURONS + 8u];

/* The LIF of every neuron of a stage, int8 levels in place, one loop over the whole layer; then
 * its spikes into the map `out` (channel c in bit c % 32 of word c / 32 of its pixel).
 *   U = q * 2^(F-m) + current;  spike = U >= Theta;  q = spike ? 0 : next_level(U) */
static void fire_layer(const qsnn_lif_t *lif, const qsnn_map_t *out, int8_t *levels)
{
    const uint32_t fraction = lif->fraction_bits, leak_shift = fraction - lif->tau_shift;
    const int32_t threshold = lif->threshold, half = (int32_t)(1u << (fraction - 1u));
    const uint32_t channels = out->channels, pixels = (uint32_t)out->height * out->width, words = words_for(channels);
    uint32_t *spikes = pixel_words(out, 0, 0, 0);
    uint32_t n, pixel, c;
    for (n = 0; n < channels * pixels; ++n) {
        int32_t membrane = (int32_t)((uint32_t)levels[n] << leak_shift) + qsnn_layer_currents[n];
        int32_t spike = membrane >= threshold;
        qsnn_spiked[n] = (uint8_t)spike;
        levels[n] = (int8_t)(spike ? 0 : next_level(membrane, fraction, half));
    }
    memset(qsnn_spiked + channels * pixels, 0, 8u);
    memset(spikes, 0, pixels * words * sizeof *spikes);
    for (pixel = 0; pixel < pixels; ++pixel, spikes += words) {
        const uint8_t *spiked = qsnn_spiked + pixel * channels;
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

/* The stem: for each output pixel, the products of its taps with every channel's weights, tap by tap. */
static void run_stem(const qsnn_stage_t *stage, const qsnn_map_t *out, const int8_t *frame)
{
    static int16_t weight[QSNN_STEM_TAPS][QSNN_STEM_CHANNELS];   /* the int16 pairs, tap-major */
    const qsnn_lif_t *lif = &stage->lif;
    const int32_t scale = (int32_t)(1u << lif->acc_shift);
    int32_t *current = qsnn_layer_currents;
    int8_t taps[QSNN_STEM_TAPS] = {0};   /* the last stays 0 where the pairs are padded */
    uint32_t y, x, t, c;
    for (c = 0; c < QSNN_STEM_CHANNELS; ++c) {
        for (t = 0; t < QSNN_STEM_TAPS; ++t) {
            int32_t pair = stage->weight_pairs[c * (QSNN_STEM_TAPS / 2u) + t / 2u];
            weight[t][c] = (int16_t)(t % 2u ? pair >> 16 : pair & 0xFFFF);
        }
    }
    pad_frame(frame);
    for (y = 0; y < out->height; ++y) {
        for (x = 0; x < out->width; ++x, current += QSNN_STEM_CHANNELS) {   /* acc_c, then the current, in place */
            stem_taps(stage, y, x, taps);
            for (c = 0; c < QSNN_STEM_CHANNELS; ++c) current[c] = 0;
            for (t = 0; t < QSNN_STEM_TAPS; ++t) {   /* int16 x int16 products: SSE2's pmullw and pmulhw */
                const int16_t tap = taps[t];
                for (c = 0; c < QSNN_STEM_CHANNELS; ++c) current[c] += weight[t][c] * tap;
            }
            for (c = 0; c < QSNN_STEM_CHANNELS; ++c) {   /* ((acc * 2^R) * M_c) >> 32 + B_c */
                current[c] = (int32_t)(((int64_t)(current[c] * scale) * lif->multiplier[c]) >> 32) + lif->bias[c];
            }
        }
    }
    fire_layer(lif, out, stage_levels(stage));
}

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
static void gather_window(const qsnn_map_t *in, uint32_t k, uint32_t stride, uint32_t padding, uint32_t y,
                              uint32_t x, uint64_t *window, uint32_t words)
{
    uint32_t p, ky, kx, w, in_words = words_for(in->channels);
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
                bits = pixel_words(in, p, (uint32_t)iy, (uint32_t)ix);
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
 * A window word that is 0 (no input active there, or the padding) costs nothing. */
QSNN_POPCOUNT_CLONES
static void dense_acc(const uint64_t *window, uint32_t planes, uint32_t words, const uint64_t *columns,
                      uint32_t channels, int32_t *acc)
{
    static int32_t negative[QSNN_PLANES][QSNN_MAX_CHANNELS + 3u];
    const size_t stride = (channels + 3u) & ~3u;
    int32_t total[QSNN_PLANES] = {0};
    size_t p, c, w;
    for (p = 0; p < planes; ++p, window += words) {
        int32_t *count = negative[p];
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
        const int32_t *count = negative[p], unit_total = (int32_t)((uint32_t)total[p] << p);
        for (c = 0; c < channels; ++c) acc[c] += unit_total - (int32_t)((uint32_t)count[c] << (p + 1u));
    }
}

static void run_conv(const qsnn_stage_t *stage, const qsnn_map_t *out)
{
    static uint64_t window[QSNN_PLANES * QSNN_MAX_WINDOW_WORDS];
    const qsnn_map_t *in = &qsnn_maps[stage->source], *shortcut = &qsnn_maps[stage->residual_source];
    const qsnn_dense_t *dense = &qsnn_dense[stage - qsnn_stages];
    const qsnn_lif_t *lif = &stage->lif;
    const uint32_t channels = out->channels, k = stage->kernel;
    const uint32_t words = QSNN_WORDS64(k * k * in->channels), shortcut_words = QSNN_WORDS64(shortcut->channels);
    int32_t *current = qsnn_layer_currents, acc[QSNN_MAX_CHANNELS + 3u];
    uint32_t y, x, c;
    for (y = 0; y < out->height; ++y) {
        for (x = 0; x < out->width; ++x, current += channels) {
            gather_window(in, k, stage->stride, stage->padding, y, x, window, words);
            dense_acc(window, in->planes, words, dense->bits, channels, acc);
            for (c = 0; c < channels; ++c) current[c] = lif->multiplier[c] * acc[c] + lif->bias[c];
            if (stage->residual == QSNN_RESIDUAL_IDENTITY) {
                add_identity(stage, channels, y, x, current);
            } else if (stage->residual == QSNN_RESIDUAL_CONV) {   /* 1x1, strided */
                gather_window(shortcut, 1u, stage->residual_stride, 0u, y, x, window, shortcut_words);
                dense_acc(window, shortcut->planes, shortcut_words, dense->residual_bits, channels, acc);
                for (c = 0; c < channels; ++c) current[c] += stage->residual_multiplier[c] * acc[c];
            }
        }
    }
    fire_layer(lif, out, stage_levels(stage));
}

#else   /* the portable path */

static uint32_t qsnn_state[QSNN_STATE_WORDS];

/* The currents of one pixel's output channels, before its LIF. */
static int32_t qsnn_currents[QSNN_MAX_CHANNELS];

#define QSNN_FIELDS_PER_WORD (32u / QSNN_FIELD_BITS)
#define QSNN_FIELD_MASK ((1u << QSNN_FIELD_BITS) - 1u)
#define QSNN_FIELD_SIGN (1u << (QSNN_FIELD_BITS - 1u))

/* The LIF of every output channel of one pixel: levels q in the packed fields at `levels`
 * (two's complement, QSNN_FIELD_BITS each, channel c in field c % (32 / QSNN_FIELD_BITS) of word
 * c / (32 / QSNN_FIELD_BITS)), spikes to `out` (channel c in bit c % 32 of word c / 32).
 *   U = q * 2^(F-m) + current;  spike = U >= Theta;  q = spike ? 0 : next_level(U) */
static void fire_pixel(const qsnn_lif_t *lif, uint32_t channels, uint32_t *levels, uint32_t *out)
{
    const uint32_t fraction = lif->fraction_bits;
    const int32_t leak = (int32_t)(1u << (fraction - lif->tau_shift)), threshold = lif->threshold;
    const int32_t half = (int32_t)(1u << (fraction - 1u));
    const int32_t *current = qsnn_currents;
    uint32_t c, i, spikes = 0;
    for (c = 0; c < channels; c += QSNN_FIELDS_PER_WORD, current += QSNN_FIELDS_PER_WORD) {
        uint32_t word = *levels, next = 0;
        uint32_t count = channels - c < QSNN_FIELDS_PER_WORD ? channels - c : QSNN_FIELDS_PER_WORD;
        for (i = 0; i < count; ++i) {
            uint32_t field = (word >> (i * QSNN_FIELD_BITS)) & QSNN_FIELD_MASK;
            int32_t level = (int32_t)(field ^ QSNN_FIELD_SIGN) - (int32_t)QSNN_FIELD_SIGN;   /* two's complement */
            int32_t membrane = level * leak + current[i];
            if (membrane >= threshold) {
                spikes |= 1u << ((c + i) % 32u);
                continue;   /* hard reset: level 0, the field stays 0 in `next` */
            }
            level = next_level(membrane, fraction, half);
            next |= ((uint32_t)level & QSNN_FIELD_MASK) << (i * QSNN_FIELD_BITS);
        }
        *levels++ = next;
        if ((c + QSNN_FIELDS_PER_WORD) % 32u == 0u || c + QSNN_FIELDS_PER_WORD >= channels) {   /* 32 spikes, or the last */
            out[c / 32u] = spikes;
            spikes = 0;
        }
    }
}

/* The state words of pixel (y, x) of a layer with `channels` output channels. */
static uint32_t *state_words(const qsnn_lif_t *lif, uint32_t channels, uint32_t width, uint32_t y, uint32_t x)
{
    return qsnn_state + lif->state_offset + (y * width + x) * words_for(channels * QSNN_FIELD_BITS);
}

/* ---- the stem: 8-bit conv of the int8 frame, int16 pairs (SMLAD on the Cortex-M4) ------- */

/* sum of the products of two strings of int16 pairs (tap 2i in the low half, 2i + 1 in the high) */
static int32_t dot_pairs(const int32_t *weight, const int32_t *taps)
{
    int32_t acc = 0;
    uint32_t i;
#if defined(__GNUC__)
#pragma GCC unroll 16
#endif
    for (i = 0; i < QSNN_STEM_TAPS / 2u; ++i) {
#if defined(__ARM_FEATURE_DSP)
        acc = __smlad(weight[i], taps[i], acc);   /* two 16 x 16 products per instruction */
#else
        acc += (int16_t)(weight[i] & 0xFFFF) * (int16_t)(taps[i] & 0xFFFF) + (weight[i] >> 16) * (taps[i] >> 16);
#endif
    }
    return acc;
}

static void run_stem(const qsnn_stage_t *stage, const qsnn_map_t *out, const int8_t *frame)
{
    static int8_t taps[QSNN_STEM_TAPS];   /* the frame under the kernel, (ci, ky, kx) order; the last 0 */
    const qsnn_lif_t *lif = &stage->lif;
    uint32_t y, x, i, c;
    pad_frame(frame);
    for (y = 0; y < out->height; ++y) {
        for (x = 0; x < out->width; ++x) {
            int32_t pairs[QSNN_STEM_TAPS / 2u];
            stem_taps(stage, y, x, taps);
            for (i = 0; i < QSNN_STEM_TAPS / 2u; ++i) {   /* int16 pairs: tap 2i low, 2i + 1 high */
                pairs[i] = (int32_t)((uint32_t)(uint16_t)taps[2u * i] | ((uint32_t)(uint16_t)taps[2u * i + 1u] << 16));
            }
            for (c = 0; c < out->channels; ++c) {
                /* ((acc * 2^R) * M_c) >> 32 + B_c: the high word of one SMULL on the Cortex-M4 */
                int32_t acc = dot_pairs(stage->weight_pairs + c * (QSNN_STEM_TAPS / 2u), pairs) * (int32_t)(1u << lif->acc_shift);
                qsnn_currents[c] = (int32_t)(((int64_t)acc * lif->multiplier[c]) >> 32) + lif->bias[c];
            }
            fire_pixel(lif, out->channels, state_words(lif, out->channels, out->width, y, x), pixel_words(out, 0, y, x));
        }
    }
}

/* ---- binary convs: event-driven over the active inputs under the kernel ------------------- */

/* The active inputs under the kernel of one output pixel, plane by plane: one entry per set bit,
 * the offset of its output-channel masks in the weights, (position * groups) for input position
 * (ky * k + kx) * Cin + ci. Plane p's entries end at plane_end[p] (each is worth 2^p). They are
 * cut into chunks whose values sum to at most 255, so that a chunk's counts fit 8 bits. */
typedef struct {
    uint32_t count, chunks;
    uint32_t plane_end[QSNN_PLANES];
    int32_t total;   /* sum of the input values under the kernel */
} active_set_t;

static QSNN_ACTIVE_TYPE qsnn_active[QSNN_MAX_ACTIVE];   /* uint16_t where every offset fits */
static uint32_t qsnn_chunk_end[QSNN_MAX_CHUNKS];

static uint32_t lowest_bit(uint32_t bits)
{
#if defined(__riscv) && !defined(__riscv_zbb)
    /* no count-trailing-zeros instruction (GCC calls libgcc's __ctzsi2): the lowest set bit times a
     * de Bruijn sequence puts a distinct 5-bit pattern in the top bits, indexing the bit's position */
    static const uint8_t position[32] = {0, 1, 28, 2, 29, 14, 24, 3, 30, 22, 20, 15, 25, 17, 4, 8,
                                         31, 27, 13, 23, 21, 19, 16, 7, 26, 12, 18, 6, 11, 5, 10, 9};
    return position[((bits & (0u - bits)) * 0x077CB531u) >> 27];
#elif defined(__GNUC__)
    return (uint32_t)__builtin_ctz(bits);   /* RBIT + CLZ on the Cortex-M4 */
#else
    uint32_t bit = 0;
    while ((bits & 1u) == 0u) {
        bits >>= 1;
        ++bit;
    }
    return bit;
#endif
}

static uint32_t popcount32(uint32_t v)
{
#if defined(__GNUC__) && defined(__POPCNT__)
    return (uint32_t)__builtin_popcount(v);
#else
    v = v - ((v >> 1) & 0x55555555u);
    v = (v & 0x33333333u) + ((v >> 2) & 0x33333333u);
    return (((v + (v >> 4)) & 0x0F0F0F0Fu) * 0x01010101u) >> 24;
#endif
}

/* The active inputs of `taps` input pixels of `channels` channels, `planes` planes each:
 * sources[p * taps + tap] holds plane p of pixel `tap` (NULL in the padding); a set bit of pixel
 * `tap`, channel ci is input position tap * channels + ci. */
static void gather_active(const uint32_t *const *sources, uint32_t planes, uint32_t taps, uint32_t channels,
                          uint32_t groups, active_set_t *set)
{
    uint32_t p, tap, w, count = 0, chunks = 0, pending = 0, words = words_for(channels);
    int32_t total = 0;
    for (p = 0; p < planes; ++p) {
        for (tap = 0; tap < taps; ++tap) {
            const uint32_t *bits = sources[p * taps + tap];
            if (bits == NULL) continue;
            for (w = 0; w < words; ++w) {
                uint32_t word = bits[w], units, offset;
                if (word == 0u) continue;
                units = popcount32(word) << p;
                if (pending + units > 255u) {
                    qsnn_chunk_end[chunks++] = count;
                    pending = 0;
                }
                pending += units;
                total += (int32_t)units;
                offset = (tap * channels + 32u * w) * groups;
                do {
                    qsnn_active[count++] = (QSNN_ACTIVE_TYPE)(offset + lowest_bit(word) * groups);
                    word &= word - 1u;
                } while (word != 0u);
            }
        }
        set->plane_end[p] = count;
    }
    for (; p < QSNN_PLANES; ++p) set->plane_end[p] = count;
    set->count = count;
    set->chunks = chunks;
    set->total = total;
}

/* Per-channel counts of negative weights met, 32 channels per group, plus room for a last partial group. */
static int32_t qsnn_negative[QSNN_MAX_CHANNELS + 31u];

/* spread4[n]: bit i of n in byte i */
static const uint32_t spread4[16] = {
    0x00000000u, 0x00000001u, 0x00000100u, 0x00000101u, 0x00010000u, 0x00010001u, 0x00010100u, 0x00010101u,
    0x01000000u, 0x01000001u, 0x01000100u, 0x01000101u, 0x01010000u, 0x01010001u, 0x01010100u, 0x01010101u,
};

/* negative[c] += counter c of the bit-sliced counters (bit c of level[l] is bit l of counter c) */
static void add_counters(const uint32_t *level, int32_t *negative)
{
    uint32_t group, l, i;
    for (group = 0; group < 32u; group += 4u) {   /* four counters at a time, one per byte */
        uint32_t bytes = 0;
        for (l = 0; l < 8u; ++l) bytes += spread4[(level[l] >> group) & 15u] << l;
        for (i = 0; i < 4u; ++i) negative[group + i] += (int32_t)((bytes >> (8u * i)) & 0xFFu);
    }
}

/* Adds the 32-channel masks weights[entry] of entries [first, last), each worth 2^plane, into the
 * bit-sliced counters level[0..7] (bit c of level[l] is bit l of counter c). Two masks a, b at a
 * time: a full adder at level `plane` (sum v ^ a ^ b, carry (a & b) | (v & (a ^ b))), then the
 * carry ripples up; a last odd mask ripples up alone. */
#define QSNN_RIPPLE(counter) t = (counter) & carry; (counter) ^= carry; carry = t
#define QSNN_FULL_ADD(counter) u = a ^ b; carry = (a & b) | ((counter) & u); (counter) ^= u
#if defined(__GNUC__)
__attribute__((always_inline))   /* one copy per constant plane: the switches below fold away */
#endif
static inline void add_masks(uint32_t *level, const QSNN_ACTIVE_TYPE *first, const QSNN_ACTIVE_TYPE *last,
                             const uint32_t *weights, uint32_t plane)
{
    uint32_t v0 = level[0], v1 = level[1], v2 = level[2], v3 = level[3];
    uint32_t v4 = level[4], v5 = level[5], v6 = level[6], v7 = level[7], a, b, u, carry, t;
    for (; first + 1 < last; first += 2) {
        a = weights[first[0]];
        b = weights[first[1]];
        switch (plane) {
        case 0: QSNN_FULL_ADD(v0); QSNN_RIPPLE(v1); QSNN_RIPPLE(v2); break;
        case 1: QSNN_FULL_ADD(v1); QSNN_RIPPLE(v2); break;
        default: QSNN_FULL_ADD(v2); break;
        }
        QSNN_RIPPLE(v3);
        QSNN_RIPPLE(v4);
        QSNN_RIPPLE(v5);
        QSNN_RIPPLE(v6);
        v7 ^= carry;   /* a chunk's counts are <= 255: no carry out of level 7 */
    }
    if (first < last) {
        carry = weights[*first];
        switch (plane) {
        case 0: QSNN_RIPPLE(v0); /* fall through */
        case 1: QSNN_RIPPLE(v1); /* fall through */
        default: QSNN_RIPPLE(v2);
        }
        QSNN_RIPPLE(v3);
        QSNN_RIPPLE(v4);
        QSNN_RIPPLE(v5);
        QSNN_RIPPLE(v6);
        v7 ^= carry;
    }
    level[0] = v0; level[1] = v1; level[2] = v2; level[3] = v3;
    level[4] = v4; level[5] = v5; level[6] = v6; level[7] = v7;
}

/* For every output channel c: the sum over active inputs of value x [w_cj = -1], into qsnn_negative.
 * `weights` holds each input position's output-channel bits, [position][groups], groups =
 * ceil(Cout / 32): an active input adds its masks into bit-sliced counters, chunk by chunk. */
static void count_negatives(const active_set_t *set, const uint32_t *weights, uint32_t groups)
{
    uint32_t group, chunk, p;
    for (group = 0; group < groups; ++group) {
        int32_t *negative = qsnn_negative + 32u * group;
        uint32_t start = 0;
        memset(negative, 0, 32u * sizeof *negative);
        for (chunk = 0; chunk <= set->chunks; ++chunk) {
            uint32_t end = chunk < set->chunks ? qsnn_chunk_end[chunk] : set->count, plane_start = 0;
            uint32_t level[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (p = 0; p < QSNN_PLANES; plane_start = set->plane_end[p++]) {
                uint32_t first = start > plane_start ? start : plane_start;
                uint32_t last = end < set->plane_end[p] ? end : set->plane_end[p];
                const QSNN_ACTIVE_TYPE *from = qsnn_active + first, *to = qsnn_active + last;
                const uint32_t *masks = weights + group;
                if (first >= last) continue;
                if (p == 0) {
                    add_masks(level, from, to, masks, 0);
                } else if (p == 1) {
                    add_masks(level, from, to, masks, 1);
                } else {
                    add_masks(level, from, to, masks, 2);
                }
            }
            add_counters(level, negative);
            start = end;
        }
    }
}

/* acc_c = sum sign(w) x = total - 2 * negative_c, then the currents and the LIF */
static void run_conv(const qsnn_stage_t *stage, const qsnn_map_t *out)
{
    static const uint32_t *sources[QSNN_PLANES * QSNN_MAX_TAPS];
    const qsnn_map_t *in = &qsnn_maps[stage->source];
    const qsnn_map_t *shortcut = &qsnn_maps[stage->residual_source];
    const qsnn_lif_t *lif = &stage->lif;
    uint32_t groups = words_for(out->channels), k = stage->kernel, taps = k * k, y, x, c, p, ky, kx;
    active_set_t set;
    for (y = 0; y < out->height; ++y) {
        for (x = 0; x < out->width; ++x) {
            for (p = 0; p < in->planes; ++p) {   /* the input pixels under the kernel, NULL in the padding */
                for (ky = 0; ky < k; ++ky) {
                    int32_t iy = (int32_t)(y * stage->stride + ky) - stage->padding;
                    for (kx = 0; kx < k; ++kx) {
                        int32_t ix = (int32_t)(x * stage->stride + kx) - stage->padding;
                        int inside = iy >= 0 && iy < (int32_t)in->height && ix >= 0 && ix < (int32_t)in->width;
                        sources[p * taps + ky * k + kx] = inside ? pixel_words(in, p, (uint32_t)iy, (uint32_t)ix) : NULL;
                    }
                }
            }
            gather_active(sources, in->planes, taps, in->channels, groups, &set);
            if (set.total != 0) count_negatives(&set, stage->weight_bits, groups);
            for (c = 0; c < out->channels; ++c) {
                int32_t acc = set.total == 0 ? 0 : set.total - 2 * qsnn_negative[c];
                qsnn_currents[c] = lif->multiplier[c] * acc + lif->bias[c];
            }
            if (stage->residual == QSNN_RESIDUAL_IDENTITY) {
                add_identity(stage, out->channels, y, x, qsnn_currents);
            } else if (stage->residual == QSNN_RESIDUAL_CONV) {   /* 1x1, strided: one input pixel */
                for (p = 0; p < shortcut->planes; ++p) {
                    sources[p] = pixel_words(shortcut, p, y * stage->residual_stride, x * stage->residual_stride);
                }
                gather_active(sources, shortcut->planes, 1u, shortcut->channels, groups, &set);
                if (set.total != 0) count_negatives(&set, stage->residual_bits, groups);
                for (c = 0; c < out->channels && set.total != 0; ++c) {
                    qsnn_currents[c] += stage->residual_multiplier[c] * (set.total - 2 * qsnn_negative[c]);
                }
            }
            fire_pixel(lif, out->channels, state_words(lif, out->channels, out->width, y, x), pixel_words(out, 0, y, x));
        }
    }
}

#endif

/* ---- 2x2 sum pooling of spikes into three bit planes of counts 0..4, 32 channels at a time --- */

static void run_pool(const qsnn_stage_t *stage, const qsnn_map_t *out)
{
    const qsnn_map_t *in = &qsnn_maps[stage->source];
    uint32_t words = words_for(in->channels), y, x, w;
    for (y = 0; y < out->height; ++y) {
        for (x = 0; x < out->width; ++x) {
            const uint32_t *a = pixel_words(in, 0, 2 * y, 2 * x);
            const uint32_t *b = pixel_words(in, 0, 2 * y, 2 * x + 1);
            const uint32_t *c = pixel_words(in, 0, 2 * y + 1, 2 * x);
            const uint32_t *d = pixel_words(in, 0, 2 * y + 1, 2 * x + 1);
            uint32_t *bit0 = pixel_words(out, 0, y, x);
            uint32_t *bit1 = pixel_words(out, 1, y, x);
            uint32_t *bit2 = pixel_words(out, 2, y, x);
            for (w = 0; w < words; ++w) {
                uint32_t low1 = a[w] ^ b[w], high1 = a[w] & b[w];   /* a + b */
                uint32_t low2 = c[w] ^ d[w], high2 = c[w] & d[w];   /* c + d */
                uint32_t carry = low1 & low2;
                bit0[w] = low1 ^ low2;
                bit1[w] = high1 ^ high2 ^ carry;
                bit2[w] = (high1 & high2) | (carry & (high1 ^ high2));
            }
        }
    }
}

/* ---- the head ------------------------------------------------------------------------------ */

static int32_t qsnn_features[QSNN_HEAD_FEATURES];

/* The integer features of this step: counts summed over space per channel (global pooling) or
 * every count in (c, y, x) order (flatten). */
static void head_features(const qsnn_map_t *in)
{
    uint32_t c, y, x, p;
    memset(qsnn_features, 0, sizeof qsnn_features);
    for (p = 0; p < in->planes; ++p) {
        for (y = 0; y < in->height; ++y) {
            for (x = 0; x < in->width; ++x) {
                const uint32_t *bits = pixel_words(in, p, y, x);
                for (c = 0; c < in->channels; ++c) {
                    int32_t value = (int32_t)(((bits[c / 32u] >> (c % 32u)) & 1u) << p);
                    qsnn_features[qsnn_head.global_pool ? c : (c * in->height + y) * in->width + x] += value;
                }
            }
        }
    }
}

static void run_head(void)
{
    uint32_t j, i;
    head_features(&qsnn_maps[qsnn_head.source]);
    for (j = 0; j < QSNN_CLASSES; ++j) {
        const int8_t *row = qsnn_head.weight + j * QSNN_HEAD_FEATURES;
        int32_t sum = qsnn_head.bias[j];
        for (i = 0; i < QSNN_HEAD_FEATURES; ++i) sum += row[i] * qsnn_features[i];
        qsnn_summed[j] += sum;
    }
}

/* ---- the API ------------------------------------------------------------------------------- */

void qsnn_reset(void)
{
    memset(qsnn_state, 0, sizeof qsnn_state);   /* level 0 is the all-zero field */
    memset(qsnn_summed, 0, sizeof qsnn_summed);
}

int qsnn_step(const int8_t *frame, int32_t *logits)
{
    uint32_t i;
    int best = 0;
    for (i = 0; i < QSNN_NUM_STAGES; ++i) {
        const qsnn_stage_t *stage = &qsnn_stages[i];
        if (stage->kind == QSNN_STAGE_STEM) {
            run_stem(stage, &qsnn_maps[i], frame);
        } else if (stage->kind == QSNN_STAGE_CONV) {
            run_conv(stage, &qsnn_maps[i]);
        } else {
            run_pool(stage, &qsnn_maps[i]);
        }
    }
    run_head();
    for (i = 0; i < QSNN_CLASSES; ++i) {
        logits[i] = qsnn_summed[i];
        if (qsnn_summed[i] > qsnn_summed[best]) best = (int)i;
    }
    return best;
}

int qsnn_classify(const int8_t *sample, int32_t *logits)
{
    uint32_t t;
    int best = 0;
    qsnn_reset();
    for (t = 0; t < QSNN_TIMESTEPS; ++t) {
        best = qsnn_step(sample + (QSNN_EVENT_FRAMES ? t * QSNN_FRAME_SIZE : 0u), logits);
    }
    return best;
}
