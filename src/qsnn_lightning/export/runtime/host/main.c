/*
 * qsnn_host: run the exported integer Q-SNN on a file of int8 images.
 *
 *   usage: qsnn_host SAMPLES.bin
 *
 * SAMPLES.bin holds N samples of QSNN_SAMPLE_SIZE int8 values each (an image
 * [C][H][W], or T frames [T][C][H][W] for an event model), concatenated, no
 * header. Each sample is streamed through the runtime: qsnn_reset(), then
 * QSNN_TIMESTEPS calls of qsnn_step() (the image at every step, or frame t at
 * step t). For every sample one line is printed to stdout:
 *
 *   <predicted class> <logit_0> ... <logit_{QSNN_CLASSES-1}>
 *
 * (decimal, single spaces, newline-terminated), the format of expected.txt.
 * Exit status: 0 on success, 2 on a usage or input error (one line on stderr naming the
 * problem and the fix: a samples file that is missing, unreadable, empty, or not a whole
 * number of samples), 1 if the runtime returns an out-of-range class or stdout cannot be written.
 *
 * Build (from DIR/; `make host` does this; without -DQSNN_HOST the runtime takes its portable,
 * Cortex-M4 path):
 *   gcc -std=c99 -Wall -Wextra -Werror -O3 -DQSNN_HOST -Isrc host/main.c src/qsnn_runtime.c \
 *       src/qsnn_model.c -o qsnn_host
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qsnn_runtime.h"

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
    static int32_t logits[QSNN_CLASSES];
    int8_t *data;
    size_t size = 0, n, count, j, t;

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
    if (size == 0 || size % (size_t)QSNN_SAMPLE_SIZE != 0) {
        fprintf(stderr, "qsnn_host: %s has %lu bytes, not a whole number of samples of %lu bytes "
                "(%s int8): give samples exported with this model (samples.bin)\n", argv[1], (unsigned long)size,
                (unsigned long)QSNN_SAMPLE_SIZE, QSNN_EVENT_FRAMES ? "T x C x H x W" : "C x H x W");
        free(data);
        return 2;
    }
    count = size / (size_t)QSNN_SAMPLE_SIZE;
    for (n = 0; n < count; ++n) {
        const int8_t *sample = data + n * (size_t)QSNN_SAMPLE_SIZE;
        int pred = 0;
        qsnn_reset();
        for (t = 0; t < QSNN_TIMESTEPS; ++t) {
            pred = qsnn_step(sample + (QSNN_EVENT_FRAMES ? t * (size_t)QSNN_FRAME_SIZE : 0u), logits);
        }
        if (pred < 0 || pred >= (int)QSNN_CLASSES) {
            fprintf(stderr, "qsnn_host: sample %lu: qsnn_step returned %d\n",
                    (unsigned long)n, pred);
            free(data);
            return 1;
        }
        printf("%d", pred);
        for (j = 0; j < (size_t)QSNN_CLASSES; ++j) {
            printf(" %ld", (long)logits[j]);
        }
        putchar('\n');
    }
    free(data);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "qsnn_host: error writing stdout\n");
        return 1;
    }
    return 0;
}
