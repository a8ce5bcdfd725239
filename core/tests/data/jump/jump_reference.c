/*
 * Test vectors for chorus_core::partition::jump_consistent_hash.
 *
 * JumpConsistentHash below is the reference function of Lamping and Veach,
 * "A Fast, Minimal Memory, Consistent Hash Algorithm" (2014), Figure 1,
 * written in C (the paper's C++ casts `double(x)` become `(double)(x)`).
 * Everything else only chooses the (key, buckets) pairs and prints
 * "key buckets bucket" lines, key in hex. Regenerate with ./generate.sh.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>

int32_t JumpConsistentHash(uint64_t key, int32_t num_buckets) {
    int64_t b = -1, j = 0;
    while (j < num_buckets) {
        b = j;
        key = key * 2862933555777941757ULL + 1;
        j = (b + 1) * ((double)(1LL << 31) / (double)((key >> 33) + 1));
    }
    return b;
}

/* SplitMix64: a spread of keys over the whole 64-bit range. */
static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

int main(void) {
    static const int32_t buckets[] = {
        1, 2, 3, 4, 5, 7, 8, 10, 16, 31, 100, 1000, 1024, 4095, 65536, 1000000,
        16777216, 1073741824, 2147483646, 2147483647,
    };
    static const uint64_t fixed_keys[] = {
        0ULL, 1ULL, 2ULL, 3ULL, 255ULL, 256ULL, 0xffffffffULL, 0x100000000ULL,
        0x7fffffffffffffffULL, 0x8000000000000000ULL, 0xfffffffffffffffeULL,
        0xffffffffffffffffULL, 0x0123456789abcdefULL, 0xdeadbeefcafebabeULL,
    };
    const size_t bucket_count = sizeof buckets / sizeof buckets[0];
    const size_t fixed_count = sizeof fixed_keys / sizeof fixed_keys[0];
    uint64_t state = 12345;
    for (size_t k = 0; k < fixed_count + 50; k++) {
        uint64_t key = k < fixed_count ? fixed_keys[k] : splitmix64(&state);
        for (size_t b = 0; b < bucket_count; b++) {
            printf("%016" PRIx64 " %" PRId32 " %" PRId32 "\n", key, buckets[b],
                   JumpConsistentHash(key, buckets[b]));
        }
    }
    /* Every bucket count from 1 to 300 for a few keys: the growth path. */
    state = 777;
    for (int k = 0; k < 8; k++) {
        uint64_t key = splitmix64(&state);
        for (int32_t n = 1; n <= 300; n++) {
            printf("%016" PRIx64 " %" PRId32 " %" PRId32 "\n", key, n, JumpConsistentHash(key, n));
        }
    }
    return 0;
}
