/*
 * qsnn_host: run the exported integer Q-SNN on a file of int8 images.
 *
 *   usage: qsnn_host SAMPLES.bin
 *
 * SAMPLES.bin holds N samples of the model's sample_size int8 values each (an
 * image [C][H][W], or T frames [T][C][H][W] for an event model), concatenated,
 * no header. Each sample is streamed through the runtime by qsnn_classify() (a
 * reset, then T steps: the image at every step, or frame t at step t) in a
 * context whose workspace is a static buffer. For every sample one line is
 * printed to stdout:
 *
 *   <predicted class> <logit_0> ... <logit_{classes-1}>
 *
 * (decimal, single spaces, newline-terminated), the format of expected.txt.
 * Exit status: 0 on success, 2 on a usage or input error (one line on stderr naming the
 * problem and the fix: a samples file that is missing, unreadable, empty, or not a whole
 * number of samples), 1 if the runtime returns an error status or stdout cannot be written.
 *
 * Build (from DIR/): `make host` (-DQSNN_HOST and the host path's kernels, sources.mk); `make
 * qsnn_mcu` and `make qsnn_reference` build it, without -DQSNN_HOST, on the microcontroller and
 * reference paths' kernels.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qsnn.h"
#include "qsnn_model.h"

/* The whole file at `path` (NULL with errno set when it cannot be read). */
static int8_t *read_all(const char *path, size_t *size_out)
{
    FILE *f = fopen(path, "rb");
    int8_t *buf = NULL;
    size_t size = 0, cap = 0;

    if (f == NULL) {
        return NULL;
    }
    for (;;) {
        size_t got;
        if (size == cap) {
            size_t new_cap = cap ? cap * 2 : (size_t)1 << 16;
            int8_t *grown = (int8_t *)realloc(buf, new_cap);
            if (grown == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = grown;
            cap = new_cap;
        }
        got = fread(buf + size, 1, cap - size, f);
        size += got;
        if (got == 0) {
            break;
        }
    }
    if (ferror(f)) {
        int error = errno;
        free(buf);
        fclose(f);
        errno = error;
        return NULL;
    }
    fclose(f);
    *size_out = size;
    return buf;
}

int main(int argc, char **argv)
{
    static uint64_t workspace[(QSNN_EXPORT_CTX_BYTES + 7u) / 8u];
    static int32_t logits[QSNN_EXPORT_CLASSES];
    const qsnn_model_t *model = &QSNN_EXPORT_MODEL;
    qsnn_ctx_t ctx;
    qsnn_status status;
    int8_t *data;
    size_t size = 0, n, count, j;

    if (argc != 2) {
        fprintf(stderr, "usage: %s SAMPLES.bin\n", argc > 0 ? argv[0] : "qsnn_host");
        return 2;
    }
    errno = 0;
    data = read_all(argv[1], &size);
    if (data == NULL) {
        fprintf(stderr, "qsnn_host: cannot read %s: %s; give the samples file of this export (samples.bin)\n",
                argv[1], errno ? strerror(errno) : "out of memory");
        return 2;
    }
    if (size == 0 || size % (size_t)model->sample_size != 0) {
        fprintf(stderr, "qsnn_host: %s has %lu bytes, not a whole number of samples of %lu bytes "
                "(%s int8): give samples exported with this model (samples.bin)\n", argv[1], (unsigned long)size,
                (unsigned long)model->sample_size, model->event_frames ? "T x C x H x W" : "C x H x W");
        free(data);
        return 2;
    }
    status = qsnn_init(&ctx, model, workspace, sizeof workspace);
    count = size / (size_t)model->sample_size;
    for (n = 0; n < count && status == QSNN_OK; ++n) {
        int pred = 0;
        status = qsnn_classify(model, &ctx, data + n * (size_t)model->sample_size, model->sample_size, logits,
                               QSNN_EXPORT_CLASSES, &pred);
        if (status != QSNN_OK) break;
        printf("%d", pred);
        for (j = 0; j < (size_t)model->classes; ++j) {
            printf(" %ld", (long)logits[j]);
        }
        putchar('\n');
    }
    free(data);
    if (status != QSNN_OK) {
        fprintf(stderr, "qsnn_host: sample %lu: the runtime returned status %d (include/qsnn.h)\n", (unsigned long)n,
                (int)status);
        return 1;
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "qsnn_host: error writing stdout\n");
        return 1;
    }
    return 0;
}
