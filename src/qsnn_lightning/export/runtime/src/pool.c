/* pool.c: 2x2 sum pooling of spikes into three bit planes of counts 0..4, 32 channels at a time
 * (two half adders and a carry per word: the same in every path). */
#include "qsnn_internal.h"

/* The pooling of maps of `words` words a pixel (constant 1: inputs of at most 32 channels) */
static inline void pool_words(const qsnn_ctx_t *ctx, const qsnn_map_t *in, const qsnn_map_t *out, const uint32_t words)
{
    /* in locals, the pixels' words by pointer steps: the stores could alias the maps' bytes */
    const uint32_t height = out->height, width = out->width;
    const uint32_t in_row = (uint32_t)in->width * words, plane = height * width * words;
    const uint32_t *first = qsnn_pixel_words(ctx->arena, in, 0, 0, 0);
    uint32_t *bit0 = qsnn_pixel_words(ctx->arena, out, 0, 0, 0), y, x, w;
    for (y = 0; y < height; ++y) {
        const uint32_t *a = first + 2u * y * in_row;
        for (x = 0; x < width; ++x, a += 2u * words, bit0 += words) {
            const uint32_t *b = a + words, *c = a + in_row, *d = c + words;
            uint32_t *bit1 = bit0 + plane, *bit2 = bit1 + plane;
            for (w = 0; w < words; ++w) {
                uint32_t low1 = a[w] ^ b[w], high1 = a[w] & b[w];   /* a + b */
                uint32_t low2 = c[w] ^ d[w], high2 = c[w] & d[w];   /* c + d */
                uint32_t carry = low1 & low2;
                bit0[w] = low1 ^ low2;
                bit1[w] = high1 ^ high2 ^ carry;
                bit2[w] = (high1 & high2) | (carry & (high1 ^ high2));
#if QSNN_WORST
                {   /* count 7 wherever a spike is: the bits of both 3 and 4 (the sums above still computed) */
                    const uint32_t any = a[w] | b[w] | c[w] | d[w];
                    bit0[w] |= any;
                    bit1[w] |= any;
                    bit2[w] |= any;
                }
#endif
            }
        }
    }
}

void qsnn_run_pool(const qsnn_ctx_t *ctx, const qsnn_map_t *in, const qsnn_map_t *out)
{
    if (in->channels <= 32u) {
        pool_words(ctx, in, out, 1u);
    } else {
        pool_words(ctx, in, out, qsnn_words_for(in->channels));
    }
}
