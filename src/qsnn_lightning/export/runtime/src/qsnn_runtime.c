/* qsnn_runtime.c: integer-only Q-SNN inference, the arithmetic of docs/export.md.
 *
 * Layer by layer. Inside a layer the loops run over output pixels, then time steps, then
 * channels: the k-bit membrane levels of one pixel's channels live in a small array for its T
 * steps, and the input words under the kernel are gathered once per pixel and step. */
#include "qsnn_runtime.h"

#include <stddef.h>
#include <string.h>

static uint32_t qsnn_arena[QSNN_ARENA_WORDS];

static int popcount32(uint32_t v)
{
#if defined(__GNUC__) && defined(__POPCNT__)
    return __builtin_popcount(v);   /* one instruction where the target has it */
#else
    v = v - ((v >> 1) & 0x55555555u);
    v = (v & 0x33333333u) + ((v >> 2) & 0x33333333u);
    return (int)((((v + (v >> 4)) & 0x0F0F0F0Fu) * 0x01010101u) >> 24);
#endif
}

static uint32_t words_for(uint32_t channels) { return (channels + 31u) / 32u; }

/* The words of pixel (y, x), plane p, step t of a map. */
static uint32_t *pixel_words(const qsnn_map_t *map, uint32_t t, uint32_t plane, uint32_t y, uint32_t x)
{
    uint32_t words = words_for(map->channels);
    uint32_t index = ((t * map->planes + plane) * map->height + y) * map->width + x;
    return qsnn_arena + map->offset + index * words;
}

/* floor(v / 2^bits), shifting only non-negative values (>> of a negative is implementation-defined) */
static int64_t floor_shift(int64_t v, unsigned bits)
{
    if (v >= 0) {
        return v >> bits;
    }
    return -((-v + ((int64_t)1 << bits) - 1) >> bits);
}

/* round_half_even(v / 2^bits), exactly */
static int64_t round_half_even_shift(int64_t v, unsigned bits)
{
    int64_t floor = floor_shift(v, bits);
    int64_t remainder = v - floor * ((int64_t)1 << bits);
    int64_t half = (int64_t)1 << (bits - 1);
    if (remainder > half || (remainder == half && floor % 2 != 0)) {
        floor += 1;
    }
    return floor;
}

/* One LIF step on the integer membrane; returns the spike and updates the level q. */
static int lif_step(const qsnn_lif_t *lif, int64_t *q, int64_t current)
{
    int64_t membrane = *q * ((int64_t)1 << (lif->fraction_bits - lif->tau_shift)) + current;
    int64_t level;
    if (membrane >= lif->threshold) {
        *q = 0;
        return 1;
    }
    level = round_half_even_shift(membrane, lif->fraction_bits);
    if (level > lif->levels) {
        level = lif->levels;
    } else if (level < -lif->levels) {
        level = -lif->levels;
    }
    *q = level;
    return 0;
}

static void set_spike(const qsnn_map_t *map, uint32_t t, uint32_t c, uint32_t y, uint32_t x)
{
    pixel_words(map, t, 0, y, x)[c / 32u] |= (uint32_t)1 << (c % 32u);
}

static int map_bit(const qsnn_map_t *map, uint32_t t, uint32_t plane, uint32_t c, uint32_t y, uint32_t x)
{
    return (int)((pixel_words(map, t, plane, y, x)[c / 32u] >> (c % 32u)) & 1u);
}

static void clear_map(const qsnn_map_t *map)
{
    uint32_t size = QSNN_TIMESTEPS * map->planes * map->height * map->width * words_for(map->channels);
    memset(qsnn_arena + map->offset, 0, size * sizeof(uint32_t));
}

static void run_stem(const qsnn_stage_t *stage, const qsnn_map_t *out, const int8_t *input)
{
    uint32_t c, y, x, t;
    for (c = 0; c < out->channels; ++c) {
        for (y = 0; y < out->height; ++y) {
            for (x = 0; x < out->width; ++x) {
                int32_t acc = 0;
                int64_t q = 0, current;
                uint32_t i, ky, kx;
                for (i = 0; i < QSNN_INPUT_CHANNELS; ++i) {
                    for (ky = 0; ky < stage->kernel; ++ky) {
                        int32_t iy = (int32_t)(y * stage->stride + ky) - stage->padding;
                        if (iy < 0 || iy >= (int32_t)QSNN_INPUT_HEIGHT) continue;
                        for (kx = 0; kx < stage->kernel; ++kx) {
                            int32_t ix = (int32_t)(x * stage->stride + kx) - stage->padding;
                            if (ix < 0 || ix >= (int32_t)QSNN_INPUT_WIDTH) continue;
                            acc += (int32_t)stage->weight_int8[((c * QSNN_INPUT_CHANNELS + i) * stage->kernel + ky) * stage->kernel + kx]
                                 * (int32_t)input[(i * QSNN_INPUT_HEIGHT + (uint32_t)iy) * QSNN_INPUT_WIDTH + (uint32_t)ix];
                        }
                    }
                }
                /* a static image gives the same current at every step */
                current = stage->lif.multiplier[c] * acc + stage->lif.bias[c];
                for (t = 0; t < QSNN_TIMESTEPS; ++t) {
                    if (lif_step(&stage->lif, &q, current)) set_spike(out, t, c, y, x);
                }
            }
        }
    }
}

/* The input words under each kernel tap of output pixel (y, x) at step t, plane by plane
 * (NULL for taps in the zero padding): gathered once and shared by every output channel. */
static uint32_t gather_taps(const qsnn_map_t *in, const uint32_t **taps, uint32_t t, uint32_t kernel,
                            uint32_t stride, uint32_t padding, uint32_t y, uint32_t x)
{
    uint32_t ky, kx, p, count = 0;
    for (ky = 0; ky < kernel; ++ky) {
        int32_t iy = (int32_t)(y * stride + ky) - (int32_t)padding;
        for (kx = 0; kx < kernel; ++kx) {
            int32_t ix = (int32_t)(x * stride + kx) - (int32_t)padding;
            int inside = iy >= 0 && iy < in->height && ix >= 0 && ix < in->width;
            for (p = 0; p < in->planes; ++p) {
                taps[count++] = inside ? pixel_words(in, t, p, (uint32_t)iy, (uint32_t)ix) : NULL;
            }
        }
    }
    return count;
}

/* sum over the receptive field of the input values (value = sum 2^p bit_p): shared by every
 * output channel, since sum sign(w) x = sum x - 2 sum over negative weights of x */
static int32_t input_sum(const uint32_t *const *taps, uint32_t planes, uint32_t count, uint32_t words)
{
    uint32_t tap, w;
    int32_t sum = 0;
    for (tap = 0; tap < count; ++tap) {
        int32_t part = 0;
        if (taps[tap] == NULL) continue;
        for (w = 0; w < words; ++w) part += popcount32(taps[tap][w]);
        sum += part * (int32_t)(1u << (tap % planes));
    }
    return sum;
}

/* sum over the receptive field of sign(w) * input = input_sum - 2 popcount(active AND negative) */
static int32_t binary_accumulate(const uint32_t *const *taps, uint32_t planes, uint32_t count,
                                 const uint32_t *weights, uint32_t words, int32_t total)
{
    uint32_t tap, p, w;
    int32_t negative = 0;
    for (tap = 0; tap < count; tap += planes, weights += words) {
        for (p = 0; p < planes; ++p) {
            const uint32_t *active = taps[tap + p];
            int32_t part = 0;
            if (active == NULL) continue;
            for (w = 0; w < words; ++w) part += popcount32(active[w] & weights[w]);
            negative += part * (int32_t)(1u << p);
        }
    }
    return total - 2 * negative;
}

static void run_conv(const qsnn_stage_t *stage, const qsnn_map_t *out)
{
    static const uint32_t *taps[QSNN_MAX_TAPS];
    static const uint32_t *shortcut_taps[QSNN_MAX_PLANES];
    static int64_t levels[QSNN_MAX_CHANNELS];
    const qsnn_map_t *in = &qsnn_maps[stage->source];
    const qsnn_map_t *shortcut = &qsnn_maps[stage->residual_source];
    uint32_t words = words_for(in->channels), shortcut_words = words_for(shortcut->channels);
    uint32_t per_channel = stage->kernel * stage->kernel * words, c, y, x, t;
    for (y = 0; y < out->height; ++y) {
        for (x = 0; x < out->width; ++x) {
            for (c = 0; c < out->channels; ++c) levels[c] = 0;
            for (t = 0; t < QSNN_TIMESTEPS; ++t) {
                uint32_t count = gather_taps(in, taps, t, stage->kernel, stage->stride, stage->padding, y, x);
                uint32_t shortcut_count = stage->residual == QSNN_RESIDUAL_CONV
                    ? gather_taps(shortcut, shortcut_taps, t, 1, stage->residual_stride, 0, y, x) : 0;
                int32_t total = input_sum(taps, in->planes, count, words);
                int32_t shortcut_total = input_sum(shortcut_taps, shortcut->planes, shortcut_count, shortcut_words);
                for (c = 0; c < out->channels; ++c) {
                    int32_t acc = binary_accumulate(taps, in->planes, count, stage->weight_bits + c * per_channel,
                                                    words, total);
                    int64_t current = stage->lif.multiplier[c] * acc + stage->lif.bias[c];
                    if (stage->residual == QSNN_RESIDUAL_IDENTITY) {
                        current += stage->residual_scale * map_bit(shortcut, t, 0, c, y, x);
                    } else if (stage->residual == QSNN_RESIDUAL_CONV) {
                        int32_t shortcut_acc = binary_accumulate(shortcut_taps, shortcut->planes, shortcut_count,
                                                                 stage->residual_bits + c * shortcut_words,
                                                                 shortcut_words, shortcut_total);
                        current += stage->residual_multiplier[c] * shortcut_acc;
                    }
                    if (lif_step(&stage->lif, &levels[c], current)) set_spike(out, t, c, y, x);
                }
            }
        }
    }
}

/* 2x2 sum pooling of spikes into three bit planes of counts 0..4, a word (32 channels) at a time */
static void run_pool(const qsnn_stage_t *stage, const qsnn_map_t *out)
{
    const qsnn_map_t *in = &qsnn_maps[stage->source];
    uint32_t words = words_for(in->channels), t, y, x, w;
    for (t = 0; t < QSNN_TIMESTEPS; ++t) {
        for (y = 0; y < out->height; ++y) {
            for (x = 0; x < out->width; ++x) {
                const uint32_t *a = pixel_words(in, t, 0, 2 * y, 2 * x);
                const uint32_t *b = pixel_words(in, t, 0, 2 * y, 2 * x + 1);
                const uint32_t *c = pixel_words(in, t, 0, 2 * y + 1, 2 * x);
                const uint32_t *d = pixel_words(in, t, 0, 2 * y + 1, 2 * x + 1);
                uint32_t *bit0 = pixel_words(out, t, 0, y, x);
                uint32_t *bit1 = pixel_words(out, t, 1, y, x);
                uint32_t *bit2 = pixel_words(out, t, 2, y, x);
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
}

static int32_t count_at(const qsnn_map_t *map, uint32_t t, uint32_t c, uint32_t y, uint32_t x)
{
    int32_t value = 0;
    uint32_t p;
    for (p = 0; p < map->planes; ++p) {
        value += map_bit(map, t, p, c, y, x) * (int32_t)(1u << p);
    }
    return value;
}

static int32_t qsnn_features[QSNN_HEAD_FEATURES];

/* The head's integer features of step t: counts summed over space per channel (global pooling)
 * or every count in (c, y, x) order (flatten). */
static void head_features(const qsnn_map_t *in, uint32_t t)
{
    uint32_t c, y, x;
    for (c = 0; c < in->channels; ++c) {
        int32_t pooled = 0;
        for (y = 0; y < in->height; ++y) {
            for (x = 0; x < in->width; ++x) {
                int32_t value = count_at(in, t, c, y, x);
                if (qsnn_head.global_pool) {
                    pooled += value;
                } else {
                    qsnn_features[(c * in->height + y) * in->width + x] = value;
                }
            }
        }
        if (qsnn_head.global_pool) qsnn_features[c] = pooled;
    }
}

static int run_head(int32_t *logits)
{
    const qsnn_map_t *in = &qsnn_maps[qsnn_head.source];
    uint32_t t, j, i;
    int best = 0;
    for (j = 0; j < QSNN_CLASSES; ++j) logits[j] = 0;
    for (t = 0; t < QSNN_TIMESTEPS; ++t) {
        head_features(in, t);
        for (j = 0; j < QSNN_CLASSES; ++j) {
            const int8_t *row = qsnn_head.weight + j * QSNN_HEAD_FEATURES;
            int32_t sum = qsnn_head.bias[j];
            for (i = 0; i < QSNN_HEAD_FEATURES; ++i) sum += row[i] * qsnn_features[i];
            logits[j] += sum;
        }
    }
    for (j = 1; j < QSNN_CLASSES; ++j) {
        if (logits[j] > logits[best]) best = (int)j;
    }
    return best;
}

int qsnn_classify(const int8_t *input, int32_t *logits)
{
    uint32_t i;
    for (i = 0; i < QSNN_NUM_STAGES; ++i) {
        const qsnn_stage_t *stage = &qsnn_stages[i];
        const qsnn_map_t *out = &qsnn_maps[i];
        clear_map(out);
        if (stage->kind == QSNN_STAGE_STEM) {
            run_stem(stage, out, input);
        } else if (stage->kind == QSNN_STAGE_CONV) {
            run_conv(stage, out);
        } else {
            run_pool(stage, out);
        }
    }
    return run_head(logits);
}
