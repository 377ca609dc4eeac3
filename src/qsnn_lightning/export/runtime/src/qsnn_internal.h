/* qsnn_internal.h: what the runtime's files share, not part of the API (include/qsnn.h).
 *
 * A build compiles qsnn.c, stem.c, pool.c, head.c and the files of one path:
 * - the microcontrollers' (the Cortex-M4's and RV32's): stem_mcu.c conv_mcu.c lif_mcu.c
 *   workspace_packed.c: event-driven binary convs, k-bit levels packed in place;
 * - the host's (QSNN_HOST, the export's qsnn_host): stem_host.c conv_host.c lif_host.c
 *   workspace_host.c: dense binary convs by 64-bit popcount, int8 levels, vectorizable loops;
 * - the plain reference: stem_ref.c conv_ref.c lif_ref.c workspace_packed.c: the arithmetic of
 *   docs/export.md in direct loops, the microcontrollers' layout; tests compare the others with it.
 * Each path implements the functions declared under "a path" below. */
#ifndef QSNN_INTERNAL_H
#define QSNN_INTERNAL_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "qsnn.h"

/* Right shifts of negative int32 values must be arithmetic (every C compiler for these targets
 * does so; C99 leaves it to the implementation). */
typedef char qsnn_needs_arithmetic_shift[(-8 >> 1) == -4 ? 1 : -1];

/* a kernel compiled once per constant argument (a field width, a channel count); one compiled once,
 * called from many such */
#if defined(__GNUC__)
#define QSNN_ALWAYS_INLINE __attribute__((always_inline)) inline
#define QSNN_NOINLINE __attribute__((noinline))
#else
#define QSNN_ALWAYS_INLINE inline
#define QSNN_NOINLINE
#endif

/* 1 in the microcontrollers' worst-case build (-DQSNN_WORST_CASE, the measure targets' second
 * image): every spike 1, every pooled count all three planes, and no kernel skips work for a zero
 * or repeated input (docs/export.md, The worst case per inference); 0 in every other build. */
#if defined(QSNN_WORST_CASE)
#define QSNN_WORST 1
#else
#define QSNN_WORST 0
#endif

/* 0 in a build for static images alone (-DQSNN_STATIC_ONLY: `qsnn export` writes it into sources.mk for a
 * static model): the stem's event-frame kernels are left out of the image (their flash), and an event
 * model is refused (QSNN_ERROR_MODEL); 1 in every other build, which runs both kinds. */
#if defined(QSNN_STATIC_ONLY)
#define QSNN_EVENT_KERNELS 0
#else
#define QSNN_EVENT_KERNELS 1
#endif

#define QSNN_PLANES 3u         /* at most: 2x2-pooled counts 0..4 */
#define QSNN_POINTER_BYTES 8u  /* the workspace's budget for one pointer, on every target */

static inline uint32_t qsnn_words_for(uint32_t bits) { return (bits + 31u) / 32u; }

static inline size_t qsnn_round8(size_t bytes) { return (bytes + 7u) & ~(size_t)7u; }

/* The index of the lowest set bit of `bits` (nonzero) */
static inline uint32_t qsnn_lowest_bit(uint32_t bits)
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

/* The words of pixel (y, x), plane p of a map in the arena. */
static inline uint32_t *qsnn_pixel_words(uint32_t *arena, const qsnn_map_t *map, uint32_t plane, uint32_t y,
                                         uint32_t x)
{
    uint32_t index = (plane * map->height + y) * map->width + x;
    return arena + map->offset + index * qsnn_words_for(map->channels);
}

/* The level after a step without a spike: clamp(round_half_even(U / 2^F), -n, n) with
 *   round_half_even(U / 2^F) = (U + 2^(F-1) - 1 + ((U >> F) & 1)) >> F */
static inline int32_t qsnn_next_level(int32_t membrane, uint32_t fraction, int32_t half, int32_t levels)
{
    int32_t level = (membrane + half - 1 + ((membrane >> fraction) & 1)) >> fraction;
    return level > levels ? levels : (level < -levels ? -levels : level);
}

/* identity shortcut: current[c] += R * (the block input's spike at channel c of pixel (y, x)) */
static inline void qsnn_add_identity(uint32_t *arena, const qsnn_stage_t *stage, const qsnn_map_t *source,
                                     uint32_t channels, uint32_t y, uint32_t x, int32_t *current)
{
    const uint32_t *spikes = qsnn_pixel_words(arena, source, 0, y, x);
    uint32_t c;
    for (c = 0; c < channels; ++c) current[c] += stage->residual_scale * (int32_t)((spikes[c / 32u] >> (c % 32u)) & 1u);
}

/* ---- stem.c: the input frame, for every stem ------------------------------------------------ */

/* ctx's padded frame: `frame` inside the zero border of the stem's padding (written once at
 * qsnn_init()), so that every tap reads without a check. */
void qsnn_pad_frame(const qsnn_model_t *model, const qsnn_ctx_t *ctx, const int8_t *frame);

/* The taps of the stem's output pixel (y, x): the padded frame under the kernel, (ci, ky, kx) order */
void qsnn_stem_taps(const qsnn_model_t *model, const qsnn_ctx_t *ctx, const qsnn_stage_t *stage, uint32_t y,
                    uint32_t x, int8_t *tap);

/* ---- pool.c, head.c: the same in every path ------------------------------------------------- */

/* 2x2 sum pooling of a spike map into three bit planes of counts 0..4 */
void qsnn_run_pool(const qsnn_ctx_t *ctx, const qsnn_map_t *in, const qsnn_map_t *out);

/* The classifier of this step's counts, added into ctx->summed */
void qsnn_run_head(const qsnn_model_t *model, const qsnn_ctx_t *ctx);

/* ---- a path --------------------------------------------------------------------------------- */

/* Nonzero if `model` carries what the path reads (the host's: the dense weight columns). */
int qsnn_path_accepts(const qsnn_model_t *model);

/* A path's scratch: a struct of pointers (its first part, at most QSNN_SCRATCH_STRUCT_BYTES),
 * then its buffers, each part a multiple of 8 bytes. */
#define QSNN_SCRATCH_PARTS 8u
#define QSNN_SCRATCH_STRUCT_BYTES (8u * QSNN_POINTER_BYTES)   /* codegen.py's budget */

/* The bytes of the path's levels and of its scratch parts for `model` (codegen.py's
 * workspace_bytes sums the same). */
void qsnn_path_parts(const qsnn_model_t *model, size_t *levels, size_t *parts);

/* Writes the path's scratch struct at start[0], pointing at the buffers start[1..], and what the
 * path derives from `model` once (the host's stem weights, tap-major, and tap offsets). */
void qsnn_path_init(const qsnn_model_t *model, uint8_t *const *start);

/* The stem and a binary conv of one step, the LIF inside: map `out` of the arena from the frame,
 * or from map stage->source. */
void qsnn_run_stem(const qsnn_model_t *model, const qsnn_ctx_t *ctx, const qsnn_stage_t *stage,
                   const qsnn_map_t *out, const int8_t *frame);
void qsnn_run_conv(const qsnn_model_t *model, const qsnn_ctx_t *ctx, const qsnn_stage_t *stage,
                   const qsnn_map_t *out);

/* ---- the packed layout (workspace_packed.c), the microcontroller and reference paths ---------- */

/* the entries of the packed scratch's `currents`: a pixel's currents, or the stem's (M_c, B_c + 2^(F-1)) */
#define QSNN_CURRENTS(model) \
    ((model)->max_channels > 2u * (model)->stem_channels ? (model)->max_channels : 2u * (model)->stem_channels)

typedef struct {
    int32_t *currents;          /* one pixel's output channels, before its LIF; the stem's (M_c, B_c + 2^(F-1))
                                   (stem_mcu.c): [QSNN_CURRENTS(model)] */
    int32_t *negative;          /* per-channel counts of negative weights met: [max_channels + 31] */
    uint32_t *active;           /* an active set's weight offsets: [max_active] */
    uint32_t *chunk_end;        /* where its chunks end: [max_chunks] */
    const uint32_t **sources;   /* the input pixels under a kernel (plane 0): [max_taps] */
    int8_t *taps;               /* the stem's taps of one pixel: [stem_taps] */
    int32_t *pairs;             /* as int16 pairs: [stem_taps / 2] */
} qsnn_packed_scratch_t;

/* The packed levels of pixel (y, x) of a layer with `channels` output channels (lif_*.c's fields). */
static inline uint32_t *qsnn_state_words(const qsnn_model_t *model, const qsnn_ctx_t *ctx, const qsnn_lif_t *lif,
                                         uint32_t channels, uint32_t width, uint32_t y, uint32_t x)
{
    return (uint32_t *)ctx->levels + lif->state_offset + (y * width + x) * qsnn_words_for(channels * model->field_bits);
}

/* lif_mcu.c, lif_ref.c: the LIF of every output channel of one pixel: levels q in the packed fields
 * at `levels` (two's complement, field_bits each, channel c in field c % (32 / field_bits) of word
 * c / (32 / field_bits)), spikes to `out` (channel c in bit c % 32 of word c / 32).
 *   U = q * 2^(F-m) + current;  spike = U >= Theta;  q = spike ? 0 : next_level(U) */
void qsnn_fire_pixel(const qsnn_model_t *model, const qsnn_lif_t *lif, const int32_t *current, uint32_t channels,
                     uint32_t *levels, uint32_t *out);

/* Nonzero if Theta + 2^(F-1) fits int32: the layer's LIF at k = 2 may run on U + 2^(F-1) (qsnn_fire_raised) */
static inline int qsnn_can_raise(const qsnn_lif_t *lif)
{
    return lif->threshold <= INT32_MAX - (int32_t)(1u << (lif->fraction_bits - 1u));
}

/* lif_mcu.c, stem_mcu.c: the constants of a layer's LIF on the microcontrollers */
typedef struct {
    int32_t leak;               /* 2^(F-m): level * leak is the level's share of U */
    int32_t threshold, half, levels;
    uint32_t fraction;          /* F */
    int32_t raised_threshold;   /* Theta + 2^(F-1) where qsnn_can_raise (else INT32_MAX: unused) */
    uint32_t quiet_limit;       /* V = U + 2^(F-1) below it, as unsigned: no spike, level 0 (qsnn_fire_raised) */
} qsnn_lif_constants_t;

static inline void qsnn_lif_constants(const qsnn_model_t *model, const qsnn_lif_t *lif, qsnn_lif_constants_t *out)
{
    out->fraction = lif->fraction_bits;
    out->leak = (int32_t)(1u << (out->fraction - lif->tau_shift));
    out->threshold = lif->threshold;
    out->half = (int32_t)(1u << (out->fraction - 1u));
    out->levels = model->levels;
    out->raised_threshold = qsnn_can_raise(lif) ? lif->threshold + out->half : INT32_MAX;
    /* 0 <= V <= 2^F (level 0 next) and V < Theta + 2^(F-1) (no spike) */
    {
        const uint32_t rounding_limit = 2u * (uint32_t)out->half + 1u;
        out->quiet_limit = out->raised_threshold <= 0 ? 0u
                           : (uint32_t)out->raised_threshold < rounding_limit ? (uint32_t)out->raised_threshold
                                                                              : rounding_limit;
    }
#if QSNN_WORST && defined(__GNUC__)
    /* the worst case: never quiet, never a spike, each comparison still made (the constants opaque) */
    out->quiet_limit = 0u;
    out->threshold = INT32_MAX;
    out->raised_threshold = INT32_MAX;
    __asm__("" : "+r"(out->quiet_limit), "+r"(out->threshold), "+r"(out->raised_threshold));
#endif
}

/* The LIF at k = 2 of neuron i of a word of 2-bit fields from its membrane raised by half a level,
 * V = U + 2^(F-1) (|V| < 2^31):
 *   spike = V >= Theta + 2^(F-1);  else next level 1 at V > 2^F (field 01), -1 at V < 0 (field 11), else 0
 * (clamp(round_half_even(U / 2^F), -1, 1), Eq. 6): adds the spike to bit i of *fired, or the level's
 * field to field i of *fields; a quiet neuron (V below quiet_limit, as unsigned: no spike, level 0)
 * first, in one comparison. Not in the worst case (its builds take the unraised LIF). */
static QSNN_ALWAYS_INLINE void qsnn_fire_raised(int32_t raised, const qsnn_lif_constants_t *lif, uint32_t i,
                                                uint32_t *fired, uint32_t *fields)
{
    if ((uint32_t)raised < lif->quiet_limit) return;   /* field 00, no spike */
    if (raised >= lif->raised_threshold) {
        *fired |= 1u << i;
    } else {   /* V < 0 (field 11: the sign bit) or V > 2^F (01) */
        *fields |= (1u << (2u * i)) | (((uint32_t)raised >> 31) << (2u * i + 1u));
    }
}

/* lif_mcu.c: qsnn_fire_pixel of a binary conv's pixel from its counts, current_c =
 * M_c (total - 2 negative[c]) + B_c computed as each neuron fires (no currents stored); `channels`
 * a multiple of 32 / field_bits (whole words of fields). */
void qsnn_fire_counts(const qsnn_model_t *model, const qsnn_lif_t *lif, const int32_t *negative, int32_t total,
                      uint32_t channels, uint32_t *levels, uint32_t *out);

/* lif_mcu.c: qsnn_fire_counts at k = 2 (field_bits 2, `channels` a multiple of 16) from the biases
 * raised by half a level, raised[c] = B_c + 2^(F-1), for Theta + 2^(F-1) within int32: V = U + 2^(F-1)
 * is compared as U is (one addition fewer a neuron); the layer's `constants` (qsnn_lif_constants) and
 * multipliers M_c computed once by the caller. */
void qsnn_fire_counts_raised(const qsnn_lif_constants_t *constants, const int32_t *multiplier, const int32_t *negative,
                             int32_t total, const int32_t *raised, uint32_t channels, uint32_t *levels, uint32_t *out);

/* The bit-sliced counters of a binary conv's 32 output channels (conv_mcu.c) leave counter c in byte
 * c / 8 of word c % 8: eight words a group of 32, stored as they are, hold counter c at byte */
static inline uint32_t qsnn_counter_byte(uint32_t c) { return c / 32u * 32u + c % 8u * 4u + c % 32u / 8u; }

/* lif_mcu.c: qsnn_fire_counts_raised from counts of at most 255 as such stored counters (byte
 * qsnn_counter_byte(c) of `counters`: negative[c]), little-endian words */
void qsnn_fire_counters_raised(const qsnn_lif_constants_t *constants, const int32_t *multiplier,
                               const uint8_t *counters, int32_t total, const int32_t *raised, uint32_t channels,
                               uint32_t *levels, uint32_t *out);

/* lif_mcu.c: a pixel's LIF remembered for the next pixels of the same currents (a uniform
 * background, a pixel without input spikes), which reach the same levels from the same levels:
 * the levels before and after, and the spikes, of pixels of up to QSNN_MEMO_WORDS level words. */
#define QSNN_MEMO_WORDS 8u
typedef struct {
    uint32_t valid;   /* 0: nothing remembered, or for other currents */
    uint32_t before[QSNN_MEMO_WORDS], after[QSNN_MEMO_WORDS], spikes[QSNN_MEMO_WORDS];
} qsnn_fire_memo_t;

/* qsnn_fire_pixel for currents equal to those of memo's last pixel (when memo->valid): the
 * remembered result if `levels` are the remembered ones, else the LIF, remembered. */
void qsnn_fire_pixel_memo(const qsnn_model_t *model, const qsnn_lif_t *lif, const int32_t *current, uint32_t channels,
                          uint32_t *levels, uint32_t *out, qsnn_fire_memo_t *memo);

/* lif_mcu.c: the LIF of the pixels whose currents are the biases B_c (a conv pixel without input
 * spikes, a stem window of zeros). At k = 2 a neuron's next level and spike then follow from its
 * level alone (-1, 0 or 1): the layer's three outcomes (every neuron at level 0, at 1, at -1) are
 * computed once, at the first such pixel of a kernel's call, and each pixel selects its neurons'
 * from them, 16 neurons a word with a few bit operations; a pixel of the last one's levels reuses
 * its result (as qsnn_fire_pixel_memo), a pixel at rest (every level 0) takes the outcome at 0.
 * Pixels of more than QSNN_MEMO_WORDS words of levels, other field widths and the worst-case build
 * take qsnn_fire_pixel_memo. */
typedef struct {
    uint32_t valid;   /* 0: not computed yet (set it to 0 before a kernel's first pixel) */
    uint32_t next[3][QSNN_MEMO_WORDS];              /* the levels after, from every level 0, 1, -1 */
    uint32_t spikes[3][(QSNN_MEMO_WORDS + 1u) / 2u];   /* the spikes, from every level 0, 1, -1 */
    qsnn_fire_memo_t memo;   /* the fallback's */
} qsnn_fire_bias_t;

void qsnn_fire_bias(const qsnn_model_t *model, const qsnn_lif_t *lif, uint32_t channels, uint32_t *levels,
                    uint32_t *out, qsnn_fire_bias_t *table);

/* qsnn_fire_bias, the remembered result of a pixel of one word of levels and of spikes taken inline */
static inline void qsnn_fire_bias_inline(const qsnn_model_t *model, const qsnn_lif_t *lif, uint32_t channels,
                                         uint32_t *levels, uint32_t *out, qsnn_fire_bias_t *table)
{
    if (!QSNN_WORST && table->valid && table->memo.valid && channels * model->field_bits <= 32u
        && levels[0] == table->memo.before[0]) {
        levels[0] = table->memo.after[0];
        out[0] = table->memo.spikes[0];
        return;
    }
    qsnn_fire_bias(model, lif, channels, levels, out, table);
}

/* ---- the host layout (workspace_host.c) ------------------------------------------------------- */

typedef struct {
    int32_t *currents;          /* a layer's currents [y][x][c] before its LIF: [max_layer_neurons] */
    uint8_t *spiked;            /* which of them spiked (0 past the last): [max_layer_neurons + 8] */
    int16_t *stem_weight;       /* the stem's int16 pairs, tap-major: [stem_taps][stem_channels] */
    int32_t *negative;          /* per-plane counts of negative weights met: [QSNN_PLANES][max_channels + 3] */
    int32_t *acc;               /* one pixel's sums: [max_channels + 3] */
    uint64_t *window;           /* the input bits under a kernel: [QSNN_PLANES * max_window_words] */
    uint32_t *tap_offsets;      /* the stem's taps in the padded frame from a pixel's corner: [stem_taps] */
} qsnn_host_scratch_t;

/* stem_host.c: the stem's int16 weights tap-major and its taps' offsets in the padded frame into
 * the scratch (at qsnn_init). */
void qsnn_host_stem_init(const qsnn_model_t *model, const qsnn_host_scratch_t *scratch);

/* lif_host.c: the levels of `stage`'s neurons (int8, [y][x][c], after those of the spiking
 * stages before it) */
int8_t *qsnn_host_levels(const qsnn_model_t *model, const qsnn_ctx_t *ctx, const qsnn_stage_t *stage);

/* lif_host.c: the LIF of every neuron of a stage, int8 levels in place, from the scratch's
 * currents; then its spikes into map `out`. */
void qsnn_fire_layer(const qsnn_model_t *model, const qsnn_ctx_t *ctx, const qsnn_lif_t *lif, const qsnn_map_t *out,
                     int8_t *levels);

#endif
