/* qsnn_runtime.h: integer-only Q-SNN inference (docs/export.md of qsnn-lightning).
 *
 * Portable C99: no malloc, no floating point; static buffers sized at export time.
 * The model (weights and per-layer constants) is generated into qsnn_model.c/.h. */
#ifndef QSNN_RUNTIME_H
#define QSNN_RUNTIME_H

#include <stdint.h>
#include "qsnn_model.h"

/* A spike or count map: bit planes packed 32 channels per word, [t][plane][y][x][word]. */
typedef struct {
    uint16_t channels, height, width;
    uint8_t planes;       /* 1 for spikes, 3 for 2x2-pooled counts 0..4 */
    uint32_t offset;      /* first word of the map in the arena */
} qsnn_map_t;

/* Folded LIF constants: U = q * 2^(F - m) + M_c * acc + B_c (+ residual); spike if U >= Theta. */
typedef struct {
    uint8_t fraction_bits;   /* F */
    uint8_t tau_shift;       /* m, tau = 2^-m */
    int16_t levels;          /* n = 2^(k-1) - 1 */
    int64_t threshold;       /* Theta */
    const int64_t *multiplier;  /* M_c, one per output channel */
    const int64_t *bias;        /* B_c, one per output channel */
} qsnn_lif_t;

enum { QSNN_STAGE_STEM = 0, QSNN_STAGE_CONV = 1, QSNN_STAGE_POOL = 2 };
enum { QSNN_RESIDUAL_NONE = 0, QSNN_RESIDUAL_IDENTITY = 1, QSNN_RESIDUAL_CONV = 2 };

/* Stage i reads map `source` (the image for the stem) and writes map i. */
typedef struct {
    uint8_t kind;
    uint8_t source;
    uint8_t kernel, stride, padding;
    const int8_t *weight_int8;      /* stem: [Cout][Cin][k][k] */
    const uint32_t *weight_bits;    /* conv: [Cout][k][k][ceil(Cin/32)], bit 1 = weight -1 */
    qsnn_lif_t lif;
    uint8_t residual;               /* QSNN_RESIDUAL_* */
    uint8_t residual_source;
    uint8_t residual_stride;
    int64_t residual_scale;         /* identity shortcut: R */
    const uint32_t *residual_bits;  /* 1x1 conv shortcut: [Cout][ceil(Cin/32)] */
    const int64_t *residual_multiplier;
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

/* Classify one int8 image [C][H][W]: fills QSNN_CLASSES T-summed integer logits and returns
 * the predicted class (the first index of the largest logit). */
int qsnn_classify(const int8_t *input, int32_t *logits);

#endif
