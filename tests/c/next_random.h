/* xorshift32: the test programs' reproducible random words (one stream per program). */
#ifndef NEXT_RANDOM_H
#define NEXT_RANDOM_H

#include <stdint.h>

static uint32_t random_state = 2463534242u;

static uint32_t next_random(void)
{
    random_state ^= random_state << 13;
    random_state ^= random_state >> 17;
    random_state ^= random_state << 5;
    return random_state;
}

#endif
