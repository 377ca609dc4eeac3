/* One export's part of tests/c/two_models_mcu.c, compiled against that export's mcu/samples.h and
 * src/qsnn_model.h with -DPREFIX=first or second: its samples, their count and its workspace. */
#include <stddef.h>

#include "samples.h"

#define PASTE(a, b) a##b
#define NAME(prefix, part) PASTE(prefix, part)

const int8_t *const NAME(PREFIX, _samples) = &qsnn_samples[0][0];
const uint32_t NAME(PREFIX, _count) = QSNN_NUM_SAMPLES;
uint64_t NAME(PREFIX, _workspace)[(QSNN_EXPORT_CTX_BYTES + 7u) / 8u];
const size_t NAME(PREFIX, _workspace_bytes) = sizeof NAME(PREFIX, _workspace);
