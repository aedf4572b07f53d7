/* Private PRNG shared by the token sampler and the diffusion schedulers (not installed):
 * splitmix64 (to seed) and xoshiro256** (Blackman & Vigna). State: uint64_t s[4]. Inline:
 * both sit in per-token / per-element loops. */
#ifndef MMP_CORE_RNG_H
#define MMP_CORE_RNG_H

#include <stdint.h>

static inline uint64_t mmp__splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t mmp__rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t mmp__xoshiro_next(uint64_t s[4]) {
    uint64_t r = mmp__rotl64(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t; s[3] = mmp__rotl64(s[3], 45);
    return r;
}

#endif
