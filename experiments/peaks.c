/* One CPU core's two peak rates, printed as one JSON line (experiments/peaks.py builds and runs this
 * with -O3 -march=native; issue #24):
 *
 *   float32 FMAs per second: ACCUMULATORS independent vector accumulators, acc = acc * m + c, which
 *     the compiler turns into one fused multiply-add each (-ffp-contract=fast); nothing is loaded.
 *   XOR + popcount words per second: the inner loop of a binary matrix product. 32-bit weight words
 *     are read from an array that stays in the L1 cache, each loaded vector is XORed with the words of
 *     ROWS inputs held in registers, and the popcounts are summed, by the best method this core has:
 *       direct       the popcount of every vector: AVX-512 VPOPCNTDQ, or AVX2's nibble lookup
 *                    (vpshufb) summed in bytes and widened every 31 vectors, or the scalar popcount;
 *       harley-seal  carry-save adders over blocks of 16 vectors, one popcount per block (Mula, Kurz
 *                    and Lemire 2018), as bitnet's column kernel does.
 *     Both methods with 1, 2 and 4 input rows; the peak is the fastest.
 * Each rate is the best of REPEATS timed runs of about 0.1 s. Single-threaded: on a machine of equal
 * cores the ratio of the two rates is the ratio of the whole machine's peaks.
 */
#define _POSIX_C_SOURCE 199309L
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#if defined(__AVX512F__)
#define VECTOR_BYTES 64
#elif defined(__AVX__)
#define VECTOR_BYTES 32
#else
#define VECTOR_BYTES 16
#endif
typedef float vfloat __attribute__((vector_size(VECTOR_BYTES)));
typedef uint32_t vword __attribute__((vector_size(VECTOR_BYTES)));
#define LANES (VECTOR_BYTES / 4)
#define ACCUMULATORS 12 /* FMA latency x FMA units, with room to spare */
#define WEIGHT_WORDS 4096 /* 16 KiB of weights: L1-resident */
#define VECTORS (WEIGHT_WORDS / LANES)
#define REPEATS 5
#define SECONDS 0.1

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static volatile uint64_t sink_words; /* results are stored here so no loop is optimized away */
static volatile float sink_float;

static double fma_rate(void) {
    const vfloat zero = {0};
    vfloat acc[ACCUMULATORS], m = zero + 0.999999f, c = zero + 1e-7f;
    for (int a = 0; a < ACCUMULATORS; a++) acc[a] = zero + (float)(a + 1);
    long iterations = 1 << 16, done = 0;
    double start = now(), elapsed;
    do {
        for (long i = 0; i < iterations; i++) {
#pragma GCC unroll 16
            for (int a = 0; a < ACCUMULATORS; a++) acc[a] = acc[a] * m + c;
        }
        done += iterations;
        elapsed = now() - start;
    } while (elapsed < SECONDS);
    float total = 0;
    for (int a = 0; a < ACCUMULATORS; a++)
        for (int l = 0; l < LANES; l++) total += acc[a][l];
    sink_float = total;
    return (double)done * ACCUMULATORS * LANES / elapsed;
}

/* The popcount of each 32-bit lane. */
static inline vword popcount_lanes(vword v) {
#if defined(__AVX512VPOPCNTDQ__) && VECTOR_BYTES == 64
    return (vword)_mm512_popcnt_epi32((__m512i)v);
#elif defined(__AVX2__) && VECTOR_BYTES == 32
    const __m256i table = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f);
    __m256i x = (__m256i)v;
    __m256i bytes = _mm256_add_epi8(_mm256_shuffle_epi8(table, _mm256_and_si256(x, low)),
                                    _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(x, 4), low)));
    return (vword)_mm256_srli_epi32(_mm256_mullo_epi32(bytes, _mm256_set1_epi32(0x01010101)), 24);
#else
    vword out;
    for (int l = 0; l < LANES; l++) out[l] = (uint32_t)__builtin_popcount(v[l]);
    return out;
#endif
}

static uint32_t weights[WEIGHT_WORDS] __attribute__((aligned(64)));

static inline vword load(int i) {
    vword v;
    memcpy(&v, weights + (long)i * LANES, sizeof v);
    return v;
}

/* One pass of the direct method over the weights for `rows` inputs; returns the summed counts. */
static inline uint64_t direct_pass(const vword *x, int rows) {
    uint64_t total = 0;
#if defined(__AVX2__) && VECTOR_BYTES == 32 && !defined(__AVX512VPOPCNTDQ__)
    const __m256i table = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f);
    __m256i wide[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
    for (int start = 0; start < VECTORS; start += 31) {
        __m256i bytes[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
        int end = start + 31 < VECTORS ? start + 31 : VECTORS;
        for (int i = start; i < end; i++) {
            __m256i w = (__m256i)load(i);
            for (int r = 0; r < rows; r++) {
                __m256i v = _mm256_xor_si256((__m256i)x[r], w);
                bytes[r] = _mm256_add_epi8(bytes[r], _mm256_add_epi8(_mm256_shuffle_epi8(table, _mm256_and_si256(v, low)),
                                                                     _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(v, 4), low))));
            }
        }
        for (int r = 0; r < rows; r++) wide[r] = _mm256_add_epi64(wide[r], _mm256_sad_epu8(bytes[r], _mm256_setzero_si256()));
    }
    for (int r = 0; r < rows; r++)
        for (int l = 0; l < 4; l++) total += (uint64_t)_mm256_extract_epi64(wide[r], l);
#else
    vword acc[4] = {0};
    for (int i = 0; i < VECTORS; i++) {
        vword w = load(i);
        for (int r = 0; r < rows; r++) acc[r] += popcount_lanes(x[r] ^ w);
    }
    for (int r = 0; r < rows; r++)
        for (int l = 0; l < LANES; l++) total += acc[r][l];
#endif
    return total;
}

#define CARRY_SAVE(carry, sum, a, b, c) \
    do {                                \
        vword u_ = (a) ^ (b);           \
        carry = ((a) & (b)) | (u_ & (c)); \
        sum = u_ ^ (c);                 \
    } while (0)

/* One pass of the Harley-Seal method over the weights for `rows` inputs; returns the summed counts. */
static inline uint64_t harley_seal_pass(const vword *x, int rows) {
    uint64_t total = 0;
    for (int r = 0; r < rows; r++) {
        vword ones = {0}, twos = {0}, fours = {0}, eights = {0}, sixteens_count = {0};
        vword twos_a, twos_b, fours_a, fours_b, sixteens;
        for (int i = 0; i < VECTORS; i += 16) {
            vword d[16];
            for (int k = 0; k < 16; k++) d[k] = x[r] ^ load(i + k);
            vword eights_half[2];
            for (int h = 0; h < 2; h++) { /* two halves of 8 vectors, each ending in an eights carry */
                const vword *e = d + 8 * h;
                CARRY_SAVE(twos_a, ones, ones, e[0], e[1]);
                CARRY_SAVE(twos_b, ones, ones, e[2], e[3]);
                CARRY_SAVE(fours_a, twos, twos, twos_a, twos_b);
                CARRY_SAVE(twos_a, ones, ones, e[4], e[5]);
                CARRY_SAVE(twos_b, ones, ones, e[6], e[7]);
                CARRY_SAVE(fours_b, twos, twos, twos_a, twos_b);
                CARRY_SAVE(eights_half[h], fours, fours, fours_a, fours_b);
            }
            CARRY_SAVE(sixteens, eights, eights, eights_half[0], eights_half[1]);
            sixteens_count += popcount_lanes(sixteens);
        }
        vword lanes = 16 * sixteens_count + 8 * popcount_lanes(eights) + 4 * popcount_lanes(fours) + 2 * popcount_lanes(twos) + popcount_lanes(ones);
        for (int l = 0; l < LANES; l++) total += lanes[l];
    }
    return total;
}

/* XOR + popcount words per second of one method with `rows` inputs. The rows are interleaved by
 * running the method once per row block: a pass reads every weight vector for all rows. */
static double words_rate(int harley_seal, int rows) {
    vword x[4];
    for (int r = 0; r < 4; r++)
        for (int l = 0; l < LANES; l++) x[r][l] = 0x9e3779b9u * (uint32_t)(r * LANES + l + 1);
    long passes = 0;
    uint64_t total = 0;
    double start = now(), elapsed;
    do {
        for (int p = 0; p < 64; p++) {
            x[0][0] ^= (uint32_t)p; /* a new input each pass: nothing to hoist out of the loop */
            switch (rows) {
                case 1: total += harley_seal ? harley_seal_pass(x, 1) : direct_pass(x, 1); break;
                case 2: total += harley_seal ? harley_seal_pass(x, 2) : direct_pass(x, 2); break;
                default: total += harley_seal ? harley_seal_pass(x, 4) : direct_pass(x, 4); break;
            }
        }
        passes += 64;
        elapsed = now() - start;
    } while (elapsed < SECONDS);
    sink_words = total;
    return (double)passes * rows * WEIGHT_WORDS / elapsed;
}

int main(void) {
    for (int i = 0; i < WEIGHT_WORDS; i++) weights[i] = 0x85ebca6bu * (uint32_t)(i + 7);
    double fma = 0, words = 0;
    const char *method = "";
    int best_rows = 0;
    for (int repeat = 0; repeat < REPEATS; repeat++) {
        double rate = fma_rate();
        if (rate > fma) fma = rate;
        for (int harley_seal = 0; harley_seal < 2; harley_seal++)
            for (int rows = 1; rows <= 4; rows *= 2) {
                rate = words_rate(harley_seal, rows);
                if (rate > words) words = rate, method = harley_seal ? "harley-seal" : "direct", best_rows = rows;
            }
    }
#if defined(__AVX512VPOPCNTDQ__) && VECTOR_BYTES == 64
    const char *isa = "avx512 vpopcntdq";
#elif defined(__AVX2__)
    const char *isa = "avx2 (vpshufb nibble lookup)";
#else
    const char *isa = "portable C (scalar popcount)";
#endif
    printf("{\"float32_fmas_per_s\": %.6g, \"xor_popcount_words_per_s\": %.6g, \"popcount_method\": \"%s\", \"rows\": %d, "
           "\"popcount_isa\": \"%s\", \"vector_bits\": %d}\n",
           fma, words, method, best_rows, isa, VECTOR_BYTES * 8);
    return 0;
}
