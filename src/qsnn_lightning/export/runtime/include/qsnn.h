/**
 * @file qsnn.h
 * @brief Integer-only, streaming Q-SNN inference (docs/export.md of qsnn-lightning): the public API.
 *
 * Portable C99: no malloc, no floating point, 32-bit arithmetic in every per-neuron loop. The
 * runtime holds no mutable state of its own: a model is generated const data (a `qsnn_model_t`,
 * one exported symbol per model, named by `qsnn export --c-name`), and everything an inference
 * writes (membrane levels, spike maps, summed logits, scratch) lives in a workspace the caller
 * provides and qsnn_init() binds to a `qsnn_ctx_t`. Several models, each with its own context, run
 * interleaved in one program.
 *
 * Streaming: qsnn_step() runs one time step through the whole network. The membrane level of
 * every spiking neuron persists in the workspace between calls (packed as k-bit fields, or one
 * int8 each in a host build, QSNN_HOST); qsnn_reset() clears it. qsnn_classify() is qsnn_reset()
 * plus T steps.
 *
 * Every call returns a `qsnn_status`; results come back through out-parameters.
 */
#ifndef QSNN_H
#define QSNN_H

#include <stddef.h>
#include <stdint.h>

/** What a call returns: QSNN_OK, or why it did nothing. */
typedef enum {
    QSNN_OK = 0,
    QSNN_ERROR_NULL = -1,        /**< a pointer argument is NULL */
    QSNN_ERROR_CONTEXT = -2,     /**< the context is not initialized, or was initialized for another model */
    QSNN_ERROR_SIZE = -3,        /**< the input holds a number of values the model does not read */
    QSNN_ERROR_BUFFER = -4,      /**< a buffer is too small (or the workspace not aligned to 8 bytes) */
    QSNN_ERROR_MODEL = -5        /**< the model was generated for another runtime version or build path, or is an
                                      event model in a build for static images (QSNN_STATIC_ONLY) */
} qsnn_status;

/** The generated model's layout: bumped whenever the structures below change. */
#define QSNN_MODEL_VERSION 2u

/* ---- the generated model (const data: codegen.py writes it, the kernels read it) ------------- */

/** A spike or count map of one time step: bit planes packed 32 channels per word,
 * [plane][y][x][word]; maps share the arena by liveness (the generated model gives the offsets). */
typedef struct {
    uint16_t channels, height, width;
    uint8_t planes;       /**< 1 for spikes, 3 for 2x2-pooled counts 0..4 */
    uint32_t offset;      /**< first word of the map in the arena */
} qsnn_map_t;

/** Folded LIF constants (int32): U = q * 2^(F - m) + current; spike if U >= Theta; else
 * q = clamp(round_half_even(U / 2^F), -n, n), n = the model's levels. current = M_c * acc + B_c
 * (+ residual) in a binary conv; ((acc * 2^R) * M_c) >> 32 + B_c in the stem (a 64-bit product). */
typedef struct {
    uint8_t fraction_bits;   /**< F */
    uint8_t tau_shift;       /**< m, tau = 2^-m */
    uint8_t acc_shift;       /**< R: the stem's |acc| * 2^R < 2^31 (0 in binary convs) */
    int32_t threshold;       /**< Theta */
    const int32_t *multiplier;  /**< M_c, one per output channel */
    const int32_t *bias;        /**< B_c, one per output channel */
    uint32_t state_offset;      /**< first word of the layer's packed levels in the state, [y][x][word] */
} qsnn_lif_t;

enum { QSNN_STAGE_STEM = 0, QSNN_STAGE_CONV = 1, QSNN_STAGE_POOL = 2 };
enum { QSNN_RESIDUAL_NONE = 0, QSNN_RESIDUAL_IDENTITY = 1, QSNN_RESIDUAL_CONV = 2 };

/** Stage i reads map `source` (the input frame for the stem) and writes map i. */
typedef struct {
    uint8_t kind;
    uint8_t source;
    uint8_t kernel, stride, padding;
    const int32_t *weight_pairs;    /**< stem: [Cout][stem_taps / 2] int16 pairs (low half first) of taps
                                     * (ci * k + ky) * k + kx */
    const uint32_t *weight_bits;    /**< conv: [(ky * k + kx) * Cin + ci][ceil(Cout/32)], bit c % 32: 1 = -1 */
    qsnn_lif_t lif;
    uint8_t residual;               /**< QSNN_RESIDUAL_* */
    uint8_t residual_source;
    uint8_t residual_stride;
    int32_t residual_scale;         /**< identity shortcut: R */
    const uint32_t *residual_bits;  /**< 1x1 conv shortcut: [Cin][ceil(Cout/32)] */
    const int32_t *residual_multiplier;
} qsnn_stage_t;

/** The 8-bit classifier on summed (global pooling) or flattened counts of map `source`. */
typedef struct {
    uint8_t source;
    uint8_t global_pool;
    const int8_t *weight;   /**< [classes][head_features] */
    const int32_t *bias;    /**< Bfc_j, added every step */
} qsnn_head_t;

/** Host builds: a binary conv's weights as one row of bits per output channel, for the dense
 * popcount conv, transposed to columns [ceil(k * k * Cin / 64)][Cout'] (Cout' = Cout rounded up to
 * a multiple of 4, zero rows): bit j % 64 of word j / 64 for input position
 * j = (ky * k + kx) * Cin + ci, 1 = -1 (the 1x1 shortcut: over Cin). NULL for the stem and pools. */
typedef struct {
    const uint64_t *bits;
    const uint64_t *residual_bits;
} qsnn_dense_t;

/** One exported model: its shapes, the worst cases its workspace is sized by, and its tables. */
typedef struct {
    uint32_t version;                      /**< QSNN_MODEL_VERSION */
    uint16_t timesteps;                    /**< T */
    uint8_t event_frames;                  /**< 1: a sample is T frames [T][C][H][W]; 0: one image, every step */
    uint8_t levels;                        /**< n = 2^(k-1) - 1: levels -n..n of the membranes */
    uint8_t field_bits;                    /**< bits of a packed level: 2, 4 or 8 */
    uint8_t stem_padding;
    uint16_t input_channels, input_height, input_width;
    uint16_t stem_channels;
    uint16_t stem_taps;                    /**< Cin * k * k of the stem, rounded up to even */
    uint16_t classes;
    uint16_t num_stages;
    uint32_t frame_size;                   /**< int8 values of one frame, C * H * W */
    uint32_t sample_size;                  /**< int8 values of one sample (T frames, or the image) */
    uint32_t head_features;
    uint32_t max_summed_steps;             /**< steps the summed logits hold without overflow (>= T) */
    uint32_t arena_words;                  /**< 32-bit words of the spike arena */
    uint32_t state_words;                  /**< 32-bit words of the packed membrane levels */
    uint32_t neurons;                      /**< neurons of the spiking stages (host builds: int8 levels) */
    uint32_t max_layer_neurons;            /**< the largest spiking stage */
    uint32_t max_channels;                 /**< the most channels of any map */
    uint32_t max_taps;                     /**< the largest binary conv's k * k */
    uint32_t max_active;                   /**< set input bits under a binary conv's kernel, at most */
    uint32_t max_chunks;                   /**< chunks of at most 255 units they are cut into, at most */
    uint32_t max_window_words;             /**< 64-bit words of the largest window (host builds) */
    const qsnn_map_t *maps;                /**< [num_stages] */
    const qsnn_stage_t *stages;            /**< [num_stages] */
    const qsnn_head_t *head;
    const qsnn_dense_t *dense;             /**< [num_stages] in host builds (QSNN_HOST), else NULL */
} qsnn_model_t;

/* ---- the caller's context ------------------------------------------------------------------ */

/** A model's mutable state, in the caller's workspace; filled by qsnn_init(), read by the other
 * calls. The fields are the runtime's: a caller only declares the struct. */
typedef struct {
    const qsnn_model_t *model;   /**< the model qsnn_init() bound it to */
    uint32_t *arena;             /**< the spike and count maps of one step, [arena_words] */
    void *levels;                /**< the membrane levels (packed k-bit fields; int8 in a host build) */
    size_t levels_bytes;         /**< their bytes in the workspace */
    int32_t *summed;             /**< the logits summed since the last reset, [classes] */
    int32_t *features;           /**< the head's features of one step, [head_features] */
    int8_t *padded;              /**< the frame with the stem's zero border, [Cin][H + 2p][W + 2p] */
    void *scratch;               /**< the build path's scratch (src/qsnn_internal.h) */
} qsnn_ctx_t;

/**
 * @brief The workspace bytes a context for @p model needs in this build: the generated
 *        `<NAME>_CTX_BYTES` (the build's path chooses the layout: QSNN_HOST or not).
 * @param[in]  model  a generated model
 * @param[out] bytes  the size in bytes; the workspace must also be aligned to 8 bytes
 * @return QSNN_OK; QSNN_ERROR_NULL; QSNN_ERROR_MODEL if @p model is of another runtime version or build path (or an
 *         event model in a QSNN_STATIC_ONLY build)
 */
qsnn_status qsnn_workspace_bytes(const qsnn_model_t *model, size_t *bytes);

/**
 * @brief Bind @p ctx to @p model and the caller's @p workspace, then qsnn_reset() it.
 * @param[out] ctx        the context to fill
 * @param[in]  model      a generated model
 * @param[in]  workspace  caller memory aligned to 8 bytes (e.g. `static uint64_t ws[(<NAME>_CTX_BYTES + 7) / 8]`),
 *                        owned by @p ctx until it is initialized again
 * @param[in]  bytes      the size of @p workspace in bytes, at least qsnn_workspace_bytes()
 * @return QSNN_OK; QSNN_ERROR_NULL; QSNN_ERROR_MODEL; QSNN_ERROR_BUFFER if @p workspace is too small
 *         or not aligned to 8 bytes. On an error @p ctx (when not NULL) is left unbound.
 */
qsnn_status qsnn_init(qsnn_ctx_t *ctx, const qsnn_model_t *model, void *workspace, size_t bytes);

/**
 * @brief Clear the state: every membrane level 0, the summed logits 0.
 * @param[in]     model  the model @p ctx was initialized for
 * @param[in,out] ctx    an initialized context
 * @return QSNN_OK; QSNN_ERROR_NULL; QSNN_ERROR_CONTEXT if @p ctx is not initialized for @p model
 */
qsnn_status qsnn_reset(const qsnn_model_t *model, qsnn_ctx_t *ctx);

/**
 * @brief One time step of the whole network.
 * @param[in]     model       the model @p ctx was initialized for
 * @param[in,out] ctx         an initialized context: its membrane levels go on from the last step
 * @param[in]     frame       the int8 input of this step [C][H][W] (a static-image model: the image itself)
 * @param[in]     frame_size  values in @p frame: the model's frame_size
 * @param[out]    logits      receives the classes' logits summed over the steps since the last reset
 *                            (int32; they cannot overflow for up to max_summed_steps steps)
 * @param[in]     capacity    room in @p logits, at least the model's classes
 * @param[out]    predicted   the class predicted so far: the first index of the largest logit
 * @return QSNN_OK; QSNN_ERROR_NULL; QSNN_ERROR_CONTEXT; QSNN_ERROR_SIZE if @p frame_size is not the
 *         model's; QSNN_ERROR_BUFFER if @p capacity is too small. On an error nothing is changed.
 */
qsnn_status qsnn_step(const qsnn_model_t *model, qsnn_ctx_t *ctx, const int8_t *frame, size_t frame_size,
                      int32_t *logits, size_t capacity, int *predicted);

/**
 * @brief One sample: qsnn_reset(), then T steps of the image (a static model) or of its T frames
 *        [T][C][H][W] (an event model).
 * @param[in]     model        the model @p ctx was initialized for
 * @param[in,out] ctx          an initialized context
 * @param[in]     sample       the int8 sample
 * @param[in]     sample_size  values in @p sample: the model's sample_size
 * @param[out]    logits       receives the T-summed logits (int32)
 * @param[in]     capacity     room in @p logits, at least the model's classes
 * @param[out]    predicted    the predicted class: the first index of the largest logit
 * @return as qsnn_step(), QSNN_ERROR_SIZE naming @p sample_size
 */
qsnn_status qsnn_classify(const qsnn_model_t *model, qsnn_ctx_t *ctx, const int8_t *sample, size_t sample_size,
                          int32_t *logits, size_t capacity, int *predicted);

#endif
