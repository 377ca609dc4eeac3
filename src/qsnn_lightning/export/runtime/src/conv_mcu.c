/* conv_mcu.c: binary convs on the microcontrollers, event-driven: per output pixel, the active
 * inputs under the kernel are listed once, and each adds its output-channel masks (32 channels a
 * word) into bit-sliced counters, so the work follows the spikes (a count map's input pixels without
 * a count are skipped before the planes are read); the LIF of lif_mcu.c, from the layer's outcomes at
 * each level for the pixels without input (their currents are the biases: qsnn_fire_bias). */

#include "qsnn_internal.h"

#define QSNN_ROWS 32u   /* the most input rows of a map whose occupied pixels are found by rows */

/* The active inputs under the kernel of one output pixel, plane by plane: one entry per set bit,
 * the offset of its output-channel masks in the weights, (position * groups) for input position
 * (ky * k + kx) * Cin + ci. Plane p's entries end at plane_end[p] (each is worth 2^p). They are
 * cut into chunks whose values sum to at most 255, so that a chunk's counts fit 8 bits. */
typedef struct {
    uint32_t count, chunks;
    uint32_t plane_end[QSNN_PLANES];
    int32_t total;   /* sum of the input values under the kernel */
} active_set_t;

/* The active inputs of `taps` input pixels of `channels` channels (`words` words), `planes` planes
 * each: sources[tap] holds plane 0 of pixel `tap` (NULL in the padding), plane p lies p * plane_words
 * further; a set bit of pixel `tap`, channel ci is input position tap * channels + ci, or, given
 * `offsets` (sources never NULL), the position whose weights start at offsets[tap] + ci * groups. */
static QSNN_ALWAYS_INLINE void gather_words(const qsnn_packed_scratch_t *scratch, uint32_t planes,
                                            uint32_t plane_words, uint32_t taps, uint32_t channels, uint32_t groups,
                                            active_set_t *set, const uint32_t words, const uint32_t *offsets)
{
    const uint32_t *const *sources = scratch->sources;
    uint32_t *const active = scratch->active, *entry = active, *chunk_end = scratch->chunk_end;
    uint32_t p, tap, w, offset, chunks = 0, pending = 0, total = 0;
    for (p = 0; p < planes; ++p) {
        for (tap = 0; tap < taps; ++tap) {
            const uint32_t *bits = sources[tap];
            if (offsets == NULL && bits == NULL) continue;
            offset = offsets != NULL ? offsets[tap] : tap * channels * groups;
            bits += p * plane_words;
            for (w = 0; w < words; ++w) {
                uint32_t word = bits[w], *first = entry, units;
                const uint32_t word_offset = offset + 32u * w * groups;
                if (word == 0u) continue;
                do {
                    *entry++ = word_offset + qsnn_lowest_bit(word) * groups;   /* one multiply-add */
                    word &= word - 1u;
                } while (word != 0u);
                units = (uint32_t)(entry - first) << p;   /* the word's entries: its set bits, each worth 2^p */
                if (pending + units > 255u) {   /* a new chunk starts at the word */
                    chunk_end[chunks++] = (uint32_t)(first - active);
                    pending = 0;
                }
                pending += units;
                total += units;
            }
        }
        set->plane_end[p] = (uint32_t)(entry - active);
    }
    for (; p < QSNN_PLANES; ++p) set->plane_end[p] = (uint32_t)(entry - active);
    set->count = (uint32_t)(entry - active);
    set->chunks = chunks;
    set->total = (int32_t)total;
}

/* gather_words, compiled apart for inputs of at most 32 channels (one word a pixel: no word loop) */
static void gather_active(const qsnn_packed_scratch_t *scratch, uint32_t planes, uint32_t plane_words, uint32_t taps,
                          uint32_t channels, uint32_t groups, active_set_t *set, const uint32_t *offsets)
{
    if (offsets != NULL) {   /* the sources are the occupied input pixels, offsets[] their weights' */
        if (channels <= 32u) {
            gather_words(scratch, planes, plane_words, taps, channels, groups, set, 1u, offsets);
        } else {
            gather_words(scratch, planes, plane_words, taps, channels, groups, set, qsnn_words_for(channels), offsets);
        }
    } else if (channels <= 32u && planes == 3u && taps <= 32u) {   /* count maps: the taps without a count skipped */
        const uint32_t **sources = scratch->sources;
        uint32_t tap, occupied = 0;
        uint32_t kept[32];   /* the weights' offset of each source kept */
        for (tap = 0; tap < taps; ++tap) {
            const uint32_t *bits = sources[tap];
            if (bits != NULL && (bits[0] | bits[plane_words] | bits[2u * plane_words]) != 0u) {
                sources[occupied] = bits;
                kept[occupied++] = tap * channels * groups;
            }
        }
        gather_words(scratch, 3u, plane_words, occupied, channels, groups, set, 1u, kept);
    } else if (channels <= 32u) {
        gather_words(scratch, planes, plane_words, taps, channels, groups, set, 1u, NULL);
    } else {
        gather_words(scratch, planes, plane_words, taps, channels, groups, set, qsnn_words_for(channels), NULL);
    }
}

/* negative[8b + j] = byte b of level[j] (added to it if `add`) */
static QSNN_ALWAYS_INLINE void store_counters(const uint32_t *level, int32_t *negative, uint32_t add)
{
    uint32_t j, b;
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

/* negative[c] = counter c of the bit-sliced counters (bit c of level[l] is bit l of counter c),
 * added to it if `add`: the 8 x 8 bit blocks of the eight words (one per byte) transposed in
 * place, three rounds of swaps between words l and l + s, so that byte b of word j holds counter
 * 8b + j (unrolled: the words stay in registers); `as_words`: those eight words stored as they are
 * (qsnn_counter_byte's layout, for qsnn_fire_counters_raised) */
static QSNN_ALWAYS_INLINE void add_counters(uint32_t *level, int32_t *negative, uint32_t add, uint32_t as_words)
{
    uint32_t s, l;
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
    if (as_words) {
        for (l = 0; l < 8u; ++l) negative[l] = (int32_t)level[l];
    } else {
        store_counters(level, negative, add);
    }
}

#define QSNN_FEW 4u   /* active sets of at most this many entries skip the bit-sliced counters */

/* count_negatives of a set of at most QSNN_FEW entries: each mask's bits spread straight into byte
 * counters (byte b of word j: channel 8b + j, as add_counters leaves them), worth 2^plane each */
static void count_few(const qsnn_packed_scratch_t *scratch, const active_set_t *set, const uint32_t *weights,
                      uint32_t groups, uint32_t as_words)
{
    uint32_t group, e, j;
    for (group = 0; group < groups; ++group) {
        uint32_t level[8];
#if defined(__GNUC__)
#pragma GCC unroll 8
#endif
        for (j = 0; j < 8u; ++j) level[j] = 0;   /* unrolled: eight stores, not a call to memset */
        for (e = 0; e < set->count; ++e) {
            const uint32_t mask = weights[scratch->active[e] + group];
            const uint32_t plane = e < set->plane_end[0] ? 0u : e < set->plane_end[1] ? 1u : 2u;
#if defined(__GNUC__)
#pragma GCC unroll 8
#endif
            for (j = 0; j < 8u; ++j) level[j] += ((mask >> j) & 0x01010101u) << plane;
        }
        if (as_words) {
            for (j = 0; j < 8u; ++j) scratch->negative[8u * group + j] = (int32_t)level[j];
        } else {
            store_counters(level, scratch->negative + 32u * group, 0u);
        }
    }
}

/* counter ^= a ^ b; returns the carry, the majority of (counter, a, b): a full adder, 32 lanes, in
 * four operations:  majority(a, b, c) = ((a ^ c) & (b ^ c)) ^ c */
static inline uint32_t full_add(uint32_t *counter, uint32_t a, uint32_t b)
{
    const uint32_t c = *counter, a_c = a ^ c;
    *counter = a_c ^ b;
    return (a_c & (b ^ c)) ^ c;
}

/* Adds `carry` (32 lanes of one bit) into the counters from level `from` up; a chunk's counts are
 * <= 255: nothing carries out of level 7. */
static QSNN_ALWAYS_INLINE void ripple(uint32_t *level, uint32_t carry, const uint32_t from)
{
    uint32_t l;
#if defined(__GNUC__)
#pragma GCC unroll 8
#endif
    for (l = from; l < 7u; ++l) {   /* a half adder */
        const uint32_t overflow = level[l] & carry;
        level[l] ^= carry;
        carry = overflow;
    }
    level[7] ^= carry;
}

/* Adds the 32-channel masks weights[entry] of the entries [first, last) of plane `plane`, each worth
 * 2^plane, into the bit-sliced counters level[0..7] (bit c of level[l] is bit l of counter c). Eight
 * masks at a time (as Harley and Seal's popcount): four full adders at level `plane`, whose carries
 * meet in two full adders at plane + 1 and theirs in one at plane + 2, then one carry ripples up; a
 * last four, pair and odd mask the same way. Compiled once per constant plane. */
static QSNN_ALWAYS_INLINE void add_masks(uint32_t *v, const uint32_t *first, const uint32_t *last,
                                         const uint32_t *weights, const uint32_t plane)
{
    for (; first + 7 < last; first += 8) {   /* the tree twice as deep: eight masks, one ripple */
        uint32_t low = full_add(&v[plane], weights[first[0]], weights[first[1]]);
        uint32_t high = full_add(&v[plane], weights[first[2]], weights[first[3]]);
        uint32_t twos = full_add(&v[plane + 1u], low, high);
        low = full_add(&v[plane], weights[first[4]], weights[first[5]]);
        high = full_add(&v[plane], weights[first[6]], weights[first[7]]);
        ripple(v, full_add(&v[plane + 2u], twos, full_add(&v[plane + 1u], low, high)), plane + 3u);
    }
    if (first + 3 < last) {
        uint32_t low = full_add(&v[plane], weights[first[0]], weights[first[1]]);
        uint32_t high = full_add(&v[plane], weights[first[2]], weights[first[3]]);
        ripple(v, full_add(&v[plane + 1u], low, high), plane + 2u);
        first += 4;
    }
    if (first + 1 < last) {
        ripple(v, full_add(&v[plane], weights[first[0]], weights[first[1]]), plane + 1u);
        first += 2;
    }
    if (first < last) ripple(v, weights[first[0]], plane);
}

/* For every output channel c: the sum over active inputs of value x [w_cj = -1], into the
 * scratch's negative. `weights` holds each input position's output-channel bits, [position][groups],
 * groups = ceil(Cout / 32): an active input adds its masks into bit-sliced counters, chunk by chunk
 * (each chunk's three planes in a row: the counters stay in registers). `as_words` (a set of one
 * chunk alone): the counters' words stored as they are (add_counters). */
static void count_negatives(const qsnn_packed_scratch_t *scratch, const active_set_t *set, const uint32_t *weights,
                            uint32_t groups, uint32_t as_words)
{
    const uint32_t *active = scratch->active, *plane_end = set->plane_end;
    uint32_t group, chunk, start = 0, p;
    for (chunk = 0; chunk <= set->chunks; ++chunk) {
        const uint32_t end = chunk < set->chunks ? scratch->chunk_end[chunk] : set->count;
        const uint32_t *bound[4];   /* the chunk's entries of plane p: [bound[p], bound[p + 1]) */
        bound[0] = active + start;
        for (p = 0; p < QSNN_PLANES; ++p) bound[p + 1u] = active + (end < plane_end[p] ? end : plane_end[p]);
        for (p = 1; p < QSNN_PLANES; ++p) bound[p] = bound[p] > active + start ? bound[p] : active + start;
        for (group = 0; group < groups; ++group) {
            uint32_t level[8], l;
#if defined(__GNUC__)
#pragma GCC unroll 8
#endif
            for (l = 0; l < 8u; ++l) level[l] = 0;   /* unrolled: eight stores, not a call to memset */
            add_masks(level, bound[0], bound[1], weights + group, 0u);
            add_masks(level, bound[1], bound[2], weights + group, 1u);
            add_masks(level, bound[2], bound[3], weights + group, 2u);
            add_counters(level, scratch->negative + (as_words ? 8u : 32u) * group, chunk != 0u, as_words);
        }
        start = end;
    }
}

/* Bit x set where pixel x of a row of `width` <= 32 pixels (at `bits`, `words` a pixel) holds a spike or
 * a count in any of its `planes` planes; compiled apart for a count map of at most 32 channels */
static QSNN_ALWAYS_INLINE uint32_t occupied_pixels(const uint32_t *bits, uint32_t plane_words, uint32_t width,
                                                   const uint32_t planes, const uint32_t words)
{
    uint32_t x, p, w, row = 0;
    for (x = 0; x < width; ++x, bits += words) {
        uint32_t any = 0;
        for (p = 0; p < planes; ++p) {
            for (w = 0; w < words; ++w) any |= bits[p * plane_words + w];
        }
        row |= (any != 0u ? 1u : 0u) << x;
    }
    return row;
}

/* Bit ky k + kx set where input pixel (ky, kx) under a kernel whose first column is `first_column` of
 * rows[ky] (the kernel rows' occupied pixels, the padding's columns first) is occupied; compiled apart
 * for 3x3 kernels */
static QSNN_ALWAYS_INLINE uint32_t kernel_occupancy(const uint32_t *rows, uint32_t first_column, const uint32_t k)
{
    uint32_t ky, under = 0;
    for (ky = 0; ky < k; ++ky) under |= ((rows[ky] >> first_column) & ((1u << k) - 1u)) << (k * ky);
    return under;
}

/* kernel_occupancy of rows of more than 32 columns with the padding (64-bit shifts) */
static uint32_t wide_kernel_occupancy(const uint64_t *rows, uint32_t first_column, uint32_t k)
{
    uint32_t ky, under = 0;
    for (ky = 0; ky < k; ++ky) under |= ((uint32_t)(rows[ky] >> first_column) & ((1u << k) - 1u)) << (k * ky);
    return under;
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
    const uint32_t in_words = qsnn_words_for(in->channels), plane_words = in->height * in->width * in_words;
    const uint32_t shortcut_words = shortcut->height * shortcut->width * qsnn_words_for(shortcut->channels);
    const int32_t *multiplier = lif->multiplier, *bias = lif->bias;   /* in locals: `current` aliases none */
    const uint32_t channels = out->channels, groups = qsnn_words_for(channels), k = stage->kernel, taps = k * k;
    int32_t *current = scratch->currents, *negative = scratch->negative;
    /* in locals: the stores to `sources` could alias the maps' and stage's bytes */
    const uint32_t stride = stage->stride, padding = stage->padding, in_height = in->height, in_width = in->width;
    const uint32_t level_words = qsnn_words_for(channels * model->field_bits);
    const uint32_t *in_plane = qsnn_pixel_words(ctx->arena, in, 0, 0, 0);
    uint32_t *levels = qsnn_state_words(model, ctx, lif, channels, out->width, 0, 0);   /* [y][x][word] */
    uint32_t *spikes = qsnn_pixel_words(ctx->arena, out, 0, 0, 0);                      /* [y][x][word] */
    /* maps of at most 32 x 32 pixels: which input pixels hold a spike or count (bit ix of occupied[iy]),
     * found once a step; a kernel's sources are then only those (`wide`: rows of more than 32 columns with
     * the padding) */
    const uint32_t by_rows = in_width <= 32u && in_height <= QSNN_ROWS && k <= 5u;
    const uint32_t wide = in_width + 2u * padding > 32u;
    /* k = 2 from counts: the biases raised by half a level, in `current` (unused on that path) */
    const uint32_t raise = model->field_bits == 2u && stage->residual == QSNN_RESIDUAL_NONE && channels % 16u == 0u
                           && !QSNN_WORST && qsnn_can_raise(lif);
    /* the LIF from the counts (currents unstored): no shortcut, whole words of fields */
    const uint32_t from_counts = stage->residual == QSNN_RESIDUAL_NONE && channels % (32u / model->field_bits) == 0u;
    uint32_t occupied[QSNN_ROWS];
    uint32_t rows[5];              /* by_rows: occupied[y * stride + ky - padding] << padding (0 outside) */
    uint64_t wide_rows[5];         /* the same, `wide` */
    int32_t kernel_offset[25];     /* by_rows: kernel position t's pixel from the kernel's first, ky * W + kx */
    uint32_t weight_offset[25];    /* by_rows: kernel position t's weights, t * Cin * groups */
    uint32_t offsets[25];          /* by_rows: the weights' offset of each source */
    uint32_t y, x, c, ky, kx, tap, count, as_words;
    active_set_t set;
    qsnn_fire_bias_t without_input;   /* the LIF of the pixels without input */
    qsnn_lif_constants_t constants;   /* the raised LIF's, once a step */
    qsnn_lif_constants(model, lif, &constants);
    without_input.valid = 0;
    for (c = 0; c < channels && raise; ++c) current[c] = bias[c] + (int32_t)(1u << (lif->fraction_bits - 1u));
    for (y = 0; y < in_height && by_rows; ++y) {
        const uint32_t *row = in_plane + y * in_width * in_words;
        occupied[y] = in->planes == 3u && in_words == 1u ? occupied_pixels(row, plane_words, in_width, 3u, 1u)
                                                         : occupied_pixels(row, plane_words, in_width, in->planes, in_words);
    }
    for (tap = 0; tap < taps && by_rows; ++tap) {
        kernel_offset[tap] = (int32_t)(tap / k * in_width + tap % k);
        weight_offset[tap] = tap * in->channels * groups;
    }
    for (y = 0; y < out->height; ++y) {
        /* the kernel's first pixel, (y stride - padding, x stride - padding), as a pixel index (negative in
         * the padding) */
        const int32_t row_first = ((int32_t)(y * stride) - (int32_t)padding) * (int32_t)in_width - (int32_t)padding;
        for (ky = 0; ky < k && by_rows; ++ky) {
            const uint32_t iy = y * stride + ky - padding;   /* unsigned: a negative index is out too */
            if (wide) {
                wide_rows[ky] = iy < in_height ? (uint64_t)occupied[iy] << padding : 0u;
            } else {
                rows[ky] = iy < in_height ? occupied[iy] << padding : 0u;
            }
        }
        for (x = 0; x < out->width; ++x, levels += level_words, spikes += groups) {
            if (by_rows) {   /* the occupied input pixels under the kernel: bit ky k + kx of `under` */
                const uint32_t first_column = x * stride;   /* in `rows`, padded */
                const int32_t first = row_first + (int32_t)first_column;
                uint32_t under = wide      ? wide_kernel_occupancy(wide_rows, first_column, k)
                                 : k == 3u ? kernel_occupancy(rows, first_column, 3u)
                                           : kernel_occupancy(rows, first_column, k);
                if (under == 0u && stage->residual == QSNN_RESIDUAL_NONE) {   /* no input: the currents are B_c */
                    qsnn_fire_bias_inline(model, lif, channels, levels, spikes, &without_input);
                    continue;
                }
                for (count = 0; under != 0u; under &= under - 1u, ++count) {
                    tap = qsnn_lowest_bit(under);
                    sources[count] = in_plane + (uint32_t)(first + kernel_offset[tap]) * in_words;
                    offsets[count] = weight_offset[tap];
                }
                gather_active(scratch, in->planes, plane_words, count, in->channels, groups, &set, offsets);
            } else {
                for (ky = 0, tap = 0; ky < k; ++ky) {   /* the input pixels under the kernel, NULL in the padding */
                    uint32_t iy = y * stride + ky - padding, ix = x * stride - padding;
                    const uint32_t *row = iy < in_height ? in_plane + iy * in_width * in_words : NULL;
                    for (kx = 0; kx < k; ++kx, ++ix, ++tap) {   /* unsigned: a negative index is out too */
                        sources[tap] = row != NULL && ix < in_width ? row + ix * in_words : NULL;
                    }
                }
                gather_active(scratch, in->planes, plane_words, taps, in->channels, groups, &set, NULL);
            }
            if (set.total == 0 && stage->residual == QSNN_RESIDUAL_NONE) {   /* no input: the currents are B_c */
                qsnn_fire_bias_inline(model, lif, channels, levels, spikes, &without_input);
                continue;
            }
            /* the counts of at most 255 a chunk, as the counters leave them, for the raised LIF */
            as_words = raise && (set.count <= QSNN_FEW || set.chunks == 0u);
            if (set.count <= QSNN_FEW && !QSNN_WORST) {   /* worst case: the counters */
                count_few(scratch, &set, stage->weight_bits, groups, as_words);
            } else if (set.total != 0) {
                count_negatives(scratch, &set, stage->weight_bits, groups, as_words);
            }
            if (from_counts) {
                if (as_words) {
                    qsnn_fire_counters_raised(&constants, multiplier, (const uint8_t *)negative, set.total, current,
                                              channels, levels, spikes);
                } else if (raise) {
                    qsnn_fire_counts_raised(&constants, multiplier, negative, set.total, current, channels, levels,
                                            spikes);
                } else {
                    qsnn_fire_counts(model, lif, negative, set.total, channels, levels, spikes);   /* currents unstored */
                }
                continue;
            }
            for (c = 0; c < channels; ++c) {
                current[c] = set.total == 0 ? bias[c] : multiplier[c] * (set.total - 2 * negative[c]) + bias[c];
            }
            if (stage->residual == QSNN_RESIDUAL_IDENTITY) {
                qsnn_add_identity(ctx->arena, stage, shortcut, channels, y, x, current);
            } else if (stage->residual == QSNN_RESIDUAL_CONV) {   /* 1x1, strided: one input pixel */
                sources[0] = qsnn_pixel_words(ctx->arena, shortcut, 0, y * stage->residual_stride,
                                              x * stage->residual_stride);
                gather_active(scratch, shortcut->planes, shortcut_words, 1u, shortcut->channels, groups, &set, NULL);
                if (set.total != 0) count_negatives(scratch, &set, stage->residual_bits, groups, 0u);
                for (c = 0; c < channels && set.total != 0; ++c) {
                    current[c] += stage->residual_multiplier[c] * (set.total - 2 * negative[c]);
                }
            }
            qsnn_fire_pixel(model, lif, current, channels, levels, spikes);
        }
    }
}
