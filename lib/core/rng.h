/* Random numbers: xoshiro256** seeded through splitmix64.
 * One seed drives every random choice in the project. Independent streams
 * (rng_seed_stream) give each sample, worker or step its own sequence that
 * depends only on (seed, stream id), so results do not depend on how work is
 * split across threads. */
#ifndef ALBEF_CORE_RNG_H
#define ALBEF_CORE_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
} rng_state;

void rng_seed(rng_state *r, uint64_t seed);
void rng_seed_stream(rng_state *r, uint64_t seed, uint64_t stream);

uint64_t rng_u64(rng_state *r);
uint32_t rng_u32(rng_state *r);
double rng_uniform(rng_state *r);                       /* [0, 1), 53 bits */
double rng_uniform_range(rng_state *r, double lo, double hi); /* [lo, hi) */
uint32_t rng_below(rng_state *r, uint32_t n);           /* [0, n), unbiased; n > 0 */
int rng_bernoulli(rng_state *r, double p);              /* 1 with probability p */
double rng_normal(rng_state *r);                        /* standard normal */

uint64_t splitmix64(uint64_t *x);

#endif
