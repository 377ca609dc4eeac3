/* pool.c: 2x2 sum pooling of spikes into three bit planes of counts 0..4, 32 channels at a time
 * (two half adders and a carry per word: the same in every path). */
#include "qsnn_internal.h"

void qsnn_run_pool(const qsnn_ctx_t *ctx, const qsnn_map_t *in, const qsnn_map_t *out)
{
    uint32_t *arena = ctx->arena, words = qsnn_words_for(in->channels), y, x, w;
    for (y = 0; y < out->height; ++y) {
        for (x = 0; x < out->width; ++x) {
            const uint32_t *a = qsnn_pixel_words(arena, in, 0, 2 * y, 2 * x);
            const uint32_t *b = qsnn_pixel_words(arena, in, 0, 2 * y, 2 * x + 1);
            const uint32_t *c = qsnn_pixel_words(arena, in, 0, 2 * y + 1, 2 * x);
            const uint32_t *d = qsnn_pixel_words(arena, in, 0, 2 * y + 1, 2 * x + 1);
            uint32_t *bit0 = qsnn_pixel_words(arena, out, 0, y, x);
            uint32_t *bit1 = qsnn_pixel_words(arena, out, 1, y, x);
            uint32_t *bit2 = qsnn_pixel_words(arena, out, 2, y, x);
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
