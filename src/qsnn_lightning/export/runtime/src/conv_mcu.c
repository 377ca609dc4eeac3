/* conv_mcu.c: binary convs on the microcontrollers, event-driven: per output pixel, the active
 * inputs under the kernel are listed once, and each adds its output-channel masks (32 channels a
 * word) into bit-sliced counters, so the work follows the spikes; the LIF of lif_mcu.c, remembered
 * for the pixels without input (their currents are the biases). */
#include "qsnn_internal.h"

/* The active inputs under the kernel of one output pixel, plane by plane: one entry per set bit,
 * the offset of its output-channel masks in the weights, (position * groups) for input position
 * (ky * k + kx) * Cin + ci. Plane p's entries end at plane_end[p] (each is worth 2^p). They are
 * cut into chunks whose values sum to at most 255, so that a chunk's counts fit 8 bits. */
typedef struct {
    uint32_t count, chunks;
    uint32_t plane_end[QSNN_PLANES];
    int32_t total;   /* sum of the input values under the kernel */
} active_set_t;

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

/* The active inputs of `taps` input pixels of `channels` channels, `planes` planes each:
 * sources[tap] holds plane 0 of pixel `tap` (NULL in the padding), plane p lies p * plane_words
 * further; a set bit of pixel `tap`, channel ci is input position tap * channels + ci. */
static void gather_active(const qsnn_packed_scratch_t *scratch, uint32_t planes, uint32_t plane_words, uint32_t taps,
                          uint32_t channels, uint32_t groups, active_set_t *set)
{
    const uint32_t *const *sources = scratch->sources;
    uint32_t *active = scratch->active, *chunk_end = scratch->chunk_end;
    uint32_t p, tap, w, count = 0, chunks = 0, pending = 0, words = qsnn_words_for(channels);
    int32_t total = 0;
    for (p = 0; p < planes; ++p) {
        for (tap = 0; tap < taps; ++tap) {
            const uint32_t *bits = sources[tap];
            if (bits == NULL) continue;
            bits += p * plane_words;
            for (w = 0; w < words; ++w) {
                uint32_t word = bits[w], first = count, units, offset = (tap * channels + 32u * w) * groups;
                for (; word != 0u; word &= word - 1u) active[count++] = offset + lowest_bit(word) * groups;
                units = (count - first) << p;   /* the word's entries: its set bits, each worth 2^p */
                if (units == 0u) continue;
                if (pending + units > 255u) {   /* a new chunk starts at the word */
                    chunk_end[chunks++] = first;
                    pending = 0;
                }
                pending += units;
                total += (int32_t)units;
            }
        }
        set->plane_end[p] = count;
    }
    for (; p < QSNN_PLANES; ++p) set->plane_end[p] = count;
    set->count = count;
    set->chunks = chunks;
    set->total = total;
}

/* negative[c] = counter c of the bit-sliced counters (bit c of level[l] is bit l of counter c),
 * added to it if `add`: the 8 x 8 bit blocks of the eight words (one per byte) transposed in
 * place, three rounds of swaps between words l and l + s, so that byte b of word j holds counter
 * 8b + j (unrolled: the words stay in registers). */
static QSNN_ALWAYS_INLINE void add_counters(uint32_t *level, int32_t *negative, uint32_t add)
{
    uint32_t s, l, j, b;
#if defined(__GNUC__)
#pragma GCC unroll 3
#endif
    for (s = 4u; s != 0u; s >>= 1) {
        const uint32_t columns = s == 4u ? 0x0F0F0F0Fu : s == 2u ? 0x33333333u : 0x55555555u;   /* bit s clear */
#if defined(__GNUC__)
#pragma GCC unroll 8
#endif
        for (l = 0; l < 8u; ++l) {
            if ((l & s) == 0u) {
                uint32_t t = ((level[l] >> s) ^ level[l + s]) & columns;
                level[l + s] ^= t;
                level[l] ^= t << s;
            }
        }
    }
#if defined(__GNUC__)
#pragma GCC unroll 8
#endif
    for (j = 0; j < 8u; ++j) {
#if defined(__GNUC__)
#pragma GCC unroll 4
#endif
        for (b = 0; b < 4u; ++b) {
            int32_t count = (int32_t)((level[j] >> (8u * b)) & 0xFFu);
            negative[8u * b + j] = add ? negative[8u * b + j] + count : count;
        }
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
static inline void add_masks(uint32_t *level, const uint32_t *first, const uint32_t *last, const uint32_t *weights,
                             uint32_t plane)
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

/* For every output channel c: the sum over active inputs of value x [w_cj = -1], into the
 * scratch's negative. `weights` holds each input position's output-channel bits, [position][groups],
 * groups = ceil(Cout / 32): an active input adds its masks into bit-sliced counters, chunk by chunk. */
static void count_negatives(const qsnn_packed_scratch_t *scratch, const active_set_t *set, const uint32_t *weights,
                            uint32_t groups)
{
    uint32_t group, chunk, p;
    for (group = 0; group < groups; ++group) {
        int32_t *negative = scratch->negative + 32u * group;
        uint32_t start = 0;
        for (chunk = 0; chunk <= set->chunks; ++chunk) {
            uint32_t end = chunk < set->chunks ? scratch->chunk_end[chunk] : set->count, plane_start = 0;
            uint32_t level[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (p = 0; p < QSNN_PLANES; plane_start = set->plane_end[p++]) {
                uint32_t first = start > plane_start ? start : plane_start;
                uint32_t last = end < set->plane_end[p] ? end : set->plane_end[p];
                const uint32_t *from = scratch->active + first, *to = scratch->active + last;
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
            add_counters(level, negative, chunk != 0u);
            start = end;
        }
    }
}

/* acc_c = sum sign(w) x = total - 2 * negative_c, then the currents and the LIF */
void qsnn_run_conv(const qsnn_model_t *model, const qsnn_ctx_t *ctx, const qsnn_stage_t *stage,
                   const qsnn_map_t *out)
{
    const qsnn_packed_scratch_t *scratch = (const qsnn_packed_scratch_t *)ctx->scratch;
    const qsnn_map_t *in = &model->maps[stage->source];
    const qsnn_map_t *shortcut = &model->maps[stage->residual_source];
    const qsnn_lif_t *lif = &stage->lif;
    const uint32_t **sources = scratch->sources;
    const uint32_t plane_words = in->height * in->width * qsnn_words_for(in->channels);
    const uint32_t shortcut_words = shortcut->height * shortcut->width * qsnn_words_for(shortcut->channels);
    const int32_t *multiplier = lif->multiplier, *bias = lif->bias;   /* in locals: `current` aliases none */
    const uint32_t channels = out->channels, groups = qsnn_words_for(channels), k = stage->kernel, taps = k * k;
    int32_t *current = scratch->currents, *negative = scratch->negative;
    uint32_t y, x, c, ky, kx;
    active_set_t set;
    qsnn_fire_memo_t memo;   /* the LIF of the pixels without input */
    memo.valid = 0;
    for (y = 0; y < out->height; ++y) {
        for (x = 0; x < out->width; ++x) {
            uint32_t *levels = qsnn_state_words(model, ctx, lif, channels, out->width, y, x);
            uint32_t *spikes = qsnn_pixel_words(ctx->arena, out, 0, y, x);
            for (ky = 0; ky < k; ++ky) {   /* the input pixels under the kernel, NULL in the padding */
                int32_t iy = (int32_t)(y * stage->stride + ky) - stage->padding;
                for (kx = 0; kx < k; ++kx) {
                    int32_t ix = (int32_t)(x * stage->stride + kx) - stage->padding;
                    int inside = iy >= 0 && iy < (int32_t)in->height && ix >= 0 && ix < (int32_t)in->width;
                    sources[ky * k + kx] =
                        inside ? qsnn_pixel_words(ctx->arena, in, 0, (uint32_t)iy, (uint32_t)ix) : NULL;
                }
            }
            gather_active(scratch, in->planes, plane_words, taps, in->channels, groups, &set);
            if (set.total == 0 && stage->residual == QSNN_RESIDUAL_NONE) {   /* no input: the currents are B_c */
                qsnn_fire_pixel_memo(model, lif, bias, channels, levels, spikes, &memo);
                continue;
            }
            if (set.total == 0) {
                for (c = 0; c < channels; ++c) current[c] = bias[c];
            } else {
                const int32_t total = set.total;
                count_negatives(scratch, &set, stage->weight_bits, groups);
                for (c = 0; c < channels; ++c) current[c] = multiplier[c] * (total - 2 * negative[c]) + bias[c];
            }
            if (stage->residual == QSNN_RESIDUAL_IDENTITY) {
                qsnn_add_identity(ctx->arena, stage, shortcut, channels, y, x, current);
            } else if (stage->residual == QSNN_RESIDUAL_CONV) {   /* 1x1, strided: one input pixel */
                sources[0] = qsnn_pixel_words(ctx->arena, shortcut, 0, y * stage->residual_stride,
                                              x * stage->residual_stride);
                gather_active(scratch, shortcut->planes, shortcut_words, 1u, shortcut->channels, groups, &set);
                if (set.total != 0) count_negatives(scratch, &set, stage->residual_bits, groups);
                for (c = 0; c < channels && set.total != 0; ++c) {
                    current[c] += stage->residual_multiplier[c] * (set.total - 2 * negative[c]);
                }
            }
            qsnn_fire_pixel(model, lif, current, channels, levels, spikes);
        }
    }
}
