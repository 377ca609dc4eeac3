/* qsnn_runtime.h: integer-only, streaming Q-SNN inference (docs/export.md of qsnn-lightning).
 *
 * Portable C99: no malloc, no floating point, 32-bit arithmetic in every per-neuron loop; static
 * buffers sized at export time. The model (weights and per-layer constants) is generated into
 * qsnn_model.c/.h.
 *
 * Streaming: qsnn_step() runs one time step through the whole network. The membrane level of
 * every spiking neuron persists between calls, packed as k-bit fields in a static buffer
 * (QSNN_STATE_BYTES), or one int8 each in a host build (QSNN_HOST: QSNN_NEURONS bytes);
 * qsnn_reset() clears it. qsnn_classify() is qsnn_reset() plus T steps. */
#ifndef QSNN_RUNTIME_H
#define QSNN_RUNTIME_H

#include <stdint.h>
#include "qsnn_model.h"

/* A spike or count map of one time step: bit planes packed 32 channels per word,
 * [plane][y][x][word]; maps share the arena by liveness (qsnn_model.c gives the offsets). */
typedef struct {
    uint16_t channels, height, width;
    uint8_t planes;       /* 1 for spikes, 3 for 2x2-pooled counts 0..4 */
    uint32_t offset;      /* first word of the map in the arena */
} qsnn_map_t;

/* Folded LIF constants (int32): U = q * 2^(F - m) + current; spike if U >= Theta; else
 * q = clamp(round_half_even(U / 2^F), -n, n), n = QSNN_LEVELS. current = M_c * acc + B_c
 * (+ residual) in a binary conv; ((acc * 2^R) * M_c) >> 32 + B_c in the stem (a 64-bit product). */
typedef struct {
    uint8_t fraction_bits;   /* F */
    uint8_t tau_shift;       /* m, tau = 2^-m */
    uint8_t acc_shift;       /* R: the stem's |acc| * 2^R < 2^31 (0 in binary convs) */
    int32_t threshold;       /* Theta */
    const int32_t *multiplier;  /* M_c, one per output channel */
    const int32_t *bias;        /* B_c, one per output channel */
    uint32_t state_offset;      /* first word of the layer's levels in the state, [y][x][word] */
} qsnn_lif_t;

enum { QSNN_STAGE_STEM = 0, QSNN_STAGE_CONV = 1, QSNN_STAGE_POOL = 2 };
enum { QSNN_RESIDUAL_NONE = 0, QSNN_RESIDUAL_IDENTITY = 1, QSNN_RESIDUAL_CONV = 2 };

/* Stage i reads map `source` (the input frame for the stem) and writes map i. */
typedef struct {
    uint8_t kind;
    uint8_t source;
    uint8_t kernel, stride, padding;
    const int32_t *weight_pairs;    /* stem: [Cout][QSNN_STEM_TAPS / 2] int16 pairs (low half first) of taps
                                     * (ci * k + ky) * k + kx */
    const uint32_t *weight_bits;    /* conv: [(ky * k + kx) * Cin + ci][ceil(Cout/32)], bit c % 32: 1 = -1 */
    qsnn_lif_t lif;
    uint8_t residual;               /* QSNN_RESIDUAL_* */
    uint8_t residual_source;
    uint8_t residual_stride;
    int32_t residual_scale;         /* identity shortcut: R */
    const uint32_t *residual_bits;  /* 1x1 conv shortcut: [Cin][ceil(Cout/32)] */
    const int32_t *residual_multiplier;
} qsnn_stage_t;

/* The 8-bit classifier on summed (global pooling) or flattened counts of map `source`. */
typedef struct {
    uint8_t source;
    uint8_t global_pool;
    const int8_t *weight;   /* [classes][QSNN_HEAD_FEATURES] */
    const int32_t *bias;    /* Bfc_j, added every step */
} qsnn_head_t;

extern const qsnn_map_t qsnn_maps[QSNN_NUM_STAGES];
extern const qsnn_stage_t qsnn_stages[QSNN_NUM_STAGES];
extern const qsnn_head_t qsnn_head;

#if defined(QSNN_HOST)
/* Host builds: a binary conv's weights as one row of bits per output channel, for the dense
 * popcount conv: [Cout][ceil(k * k * Cin / 64)], bit j % 64 of word j / 64 for input position
 * j = (ky * k + kx) * Cin + ci, 1 = -1 (the 1x1 shortcut: [Cout][ceil(Cin / 64)]); zero rows pad
 * Cout to a multiple of 4. Stage i's entry; 0 for the stem and pools. */
typedef struct {
    const uint64_t *bits;
    const uint64_t *residual_bits;
} qsnn_dense_t;

extern const qsnn_dense_t qsnn_dense[QSNN_NUM_STAGES];
#endif

/* Clear the state: every membrane level 0, the summed logits 0. */
void qsnn_reset(void);

/* One time step: `frame` is the int8 input of this step [C][H][W] (for a static-image model, the
 * image itself). Fills QSNN_CLASSES logits summed over the steps since qsnn_reset() and returns
 * the class predicted so far (the first index of the largest). The sums cannot overflow for up to
 * QSNN_MAX_SUMMED_STEPS steps. */
int qsnn_step(const int8_t *frame, int32_t *logits);

/* One sample of QSNN_SAMPLE_SIZE int8 values: qsnn_reset(), then T steps of the image (a static
 * model) or of its T frames [T][C][H][W] (an event model, QSNN_EVENT_FRAMES = 1). Returns the
 * predicted class and fills the T-summed logits. */
int qsnn_classify(const int8_t *sample, int32_t *logits);

#endif
