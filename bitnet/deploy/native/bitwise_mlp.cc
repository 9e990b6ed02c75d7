// The "native" backend of bitnet's packed inference: a whole packed MLP as one XLA FFI call on the
// CPU (bitnet/deploy/native.py builds this file with the system C++ compiler, -O3 -march=native,
// and registers it with jax.ffi; issue #24).
//
// Call: inputs float32 [batch, n_in] (a bit is value > 0, as bitnet.deploy.packing.pack_bits) and
// the model, one uint32 buffer holding every layer's arrays (bitnet.deploy.native.NativeModel: two
// arguments a call, which matters at batch 1), with the attribute `layout`: per layer mode (0 dense,
// 1 masked, 2 0/1 inputs), n_out, padded (n_out rounded up to a multiple of 32), words, and the
// offsets in the buffer of
//   base       int32 [padded]          a = base + factor * total
//   polarity   int32 [padded]          +1 or -1, and
//   threshold  int32 [padded]          a hidden neuron's bit is 1 where polarity * a >= threshold
//                                      (sign neurons +1 and 0: sign(0) = +1; padding never fires)
//   sign       uint32 [padded, words]  bit = 1 where the weight is +1 (bitnet-packed bit order)
//   other      uint32 [padded, words]  bit = 1 where the weight is nonzero (the mask), or for 0/1
//                                      inputs where it is -1; a dense layer's is its sign
// The integers a are those of bitnet.deploy.inference:
//   bipolar inputs, factor -2: total = popcount((x XOR w) AND m), base = b + popcount(m) (n_in if dense)
//   0/1 inputs, factor +1: total = popcount(x AND w) + popcount(NOT(x AND n)) with n = m AND NOT w
//     (the -1 weights), base = b - 32 * words
// The result is the argmax of the last layer's integers, ties to the lowest index: int32 [batch].
//
// Two kernels, both exact:
//   row kernel     (batch <= kRowKernelMaxBatch) each neuron's stored row of words against each
//                  input row, a vector of words at a time, kLanes neurons at a time whose sums are
//                  then added across lanes into one vector: no rearranging of the planes, for a few rows.
//   column kernel  the planes transposed once per call into blocks of kBlockNeurons neurons,
//                  [blocks, words, kPlanes, kBlockNeurons]; a register block of kBlockRows input
//                  rows x kBlockVectors vectors of neurons: each weight vector loaded once for
//                  kBlockRows rows, each input word broadcast once for kBlockVectors vectors (the
//                  register blocking XLA's loop fusion does not do). Popcounts are byte lookups
//                  (AVX2 / AVX-512BW vpshufb) on words stored as nibble planes (kPlanes), added as
//                  bytes and widened to 32-bit lanes every few words; with AVX-512 VPOPCNTDQ, 32-bit
//                  lane counts directly.
// Both kernels pack a hidden layer's outputs into the next layer's words by a vector compare and
// movemask (Emit).
// Batches run in chunks of rows, every layer of a chunk on one thread, the chunks spread over XLA's
// CPU thread pool.

#include <algorithm>
#include <atomic>
#include <climits>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "xla/ffi/api/ffi.h"

#if defined(__AVX2__) || defined(__AVX512BW__)
#include <immintrin.h>
#endif

namespace ffi = xla::ffi;

namespace {

#if defined(__AVX512BW__)
#define BITNET_VECTOR_BYTES 64
#elif defined(__AVX2__)
#define BITNET_VECTOR_BYTES 32
#else
#define BITNET_VECTOR_BYTES 16
#endif

typedef uint32_t Vec __attribute__((vector_size(BITNET_VECTOR_BYTES)));
typedef int32_t IVec __attribute__((vector_size(BITNET_VECTOR_BYTES)));

constexpr int kLanes = BITNET_VECTOR_BYTES / 4;
#ifndef BITNET_BLOCK_VECTORS
#define BITNET_BLOCK_VECTORS 2
#endif
#ifndef BITNET_BLOCK_ROWS
#define BITNET_BLOCK_ROWS 4
#endif
constexpr int kBlockVectors = BITNET_BLOCK_VECTORS;
constexpr int kBlockRows = BITNET_BLOCK_ROWS;
constexpr int kBlockNeurons = kLanes * kBlockVectors;
static_assert(32 % kBlockNeurons == 0, "a block's output bits must fill whole words or divide them");
constexpr int kRowKernelMaxBatch = 8;
constexpr int kChunkRows = 64;  // rows of one task: a chunk's packed inputs stay in L1 / L2
enum Mode : int64_t { kDense = 0, kMasked = 1, kBinary = 2 };

inline Vec Load(const uint32_t* p) {
  Vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline IVec LoadI(const int32_t* p) {
  IVec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Count(v): popcounts of v in a form that adds up, Widen(c): their per-lane (32-bit) sums.
#if defined(__AVX512VPOPCNTDQ__) && BITNET_VECTOR_BYTES == 64
constexpr bool kLaneCounts = true;
inline Vec Count(Vec v) { return (Vec)_mm512_popcnt_epi32((__m512i)v); }
#elif BITNET_VECTOR_BYTES == 64 || (defined(__AVX2__) && BITNET_VECTOR_BYTES == 32)
#define BITNET_BYTE_COUNTS 1
constexpr bool kLaneCounts = false;  // byte counts (at most 8 per byte per word counted)
// The popcount of each nibble value, repeated for every 16-byte lane of a vector.
alignas(64) constexpr uint8_t kNibbleCounts[64] = {0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                                   0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4};
// ... and of each nibble value's complement (4 - popcount).
alignas(64) constexpr uint8_t kNibbleZeros[64] = {4, 3, 3, 2, 3, 2, 2, 1, 3, 2, 2, 1, 2, 1, 1, 0, 4, 3, 3, 2, 3, 2, 2, 1, 3, 2, 2, 1, 2, 1, 1, 0,
                                                  4, 3, 3, 2, 3, 2, 2, 1, 3, 2, 2, 1, 2, 1, 1, 0, 4, 3, 3, 2, 3, 2, 2, 1, 3, 2, 2, 1, 2, 1, 1, 0};

// The per-byte entries of `table` at bytes holding nibble values (0-15): one shuffle.
inline Vec Lookup(const uint8_t* table, Vec nibbles) {
  Vec entries;
  std::memcpy(&entries, table, sizeof entries);
#if BITNET_VECTOR_BYTES == 64
  return (Vec)_mm512_shuffle_epi8((__m512i)entries, (__m512i)nibbles);
#else
  return (Vec)_mm256_shuffle_epi8((__m256i)entries, (__m256i)nibbles);
#endif
}

// Byte counts of v: a lookup of its low and of its high nibbles.
inline Vec Count(Vec v) { return Lookup(kNibbleCounts, v & 0x0f0f0f0fu) + Lookup(kNibbleCounts, (v >> 4) & 0x0f0f0f0fu); }
#else
constexpr bool kLaneCounts = true;
inline Vec Count(Vec v) {
  Vec out;
  for (int l = 0; l < kLanes; l++) out[l] = (uint32_t)__builtin_popcount(v[l]);
  return out;
}
#endif

inline Vec Widen(Vec counts) {
#if defined(BITNET_BYTE_COUNTS) && BITNET_VECTOR_BYTES == 64
  // bytes x 1 summed in pairs (16 bits; at most 510), those pairs x 1 summed in pairs (32 bits)
  return (Vec)_mm512_madd_epi16(_mm512_maddubs_epi16((__m512i)counts, _mm512_set1_epi8(1)), _mm512_set1_epi16(1));
#elif defined(BITNET_BYTE_COUNTS)
  return (Vec)_mm256_madd_epi16(_mm256_maddubs_epi16((__m256i)counts, _mm256_set1_epi8(1)), _mm256_set1_epi16(1));
#else
  return counts;
#endif
}

// One bit per lane, lane l at bit l, of a vector compare's result (-1 / 0 lanes).
inline uint32_t LaneBits(IVec on) {
#if BITNET_VECTOR_BYTES == 64
  return (uint32_t)_mm512_cmpneq_epi32_mask((__m512i)on, _mm512_setzero_si512());
#elif defined(__AVX2__) && BITNET_VECTOR_BYTES == 32
  return (uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps((__m256i)on));
#else
  uint32_t bits = 0;
  for (int l = 0; l < kLanes; l++) bits |= (on[l] != 0 ? 1u : 0u) << l;
  return bits;
#endif
}

// The module comment's total for one input word x against weight words s and o (o: the mask, or
// for 0/1 inputs the -1 weights), words or vectors of words, each popcount taken by `count`.
template <int64_t M, typename Word, typename Counter>
inline auto Counted(Word x, Word s, Word o, Counter count) {
  if constexpr (M == kDense) return count(x ^ s);
  else if constexpr (M == kMasked) return count((x ^ s) & o);
  else return count(x & s) + count(~(x & o));
}

template <int64_t M>
inline Vec WordCount(Vec x, Vec s, Vec o) { return Counted<M>(x, s, o, [](Vec v) { return Count(v); }); }

template <int64_t M>
inline int ScalarCount(uint32_t x, uint32_t s, uint32_t o) { return Counted<M>(x, s, o, [](uint32_t v) { return __builtin_popcount(v); }); }

// The column kernel's planes: with byte counts every word is stored as two words of nibbles, its
// low and its high ones (w & 0x0f0f0f0f, (w >> 4) & 0x0f0f0f0f), the inputs too. XOR and AND act
// on nibbles alike, so each counted vector is then one lookup per nibble plane, without the shift
// and the masks of Count (6 vector operations per vector counted instead of 8).
#ifdef BITNET_BYTE_COUNTS
constexpr int kPlanes = 2;
#else
constexpr int kPlanes = 1;
#endif

inline uint32_t Plane(uint32_t word, int plane) { return kPlanes == 1 ? word : (plane ? word >> 4 : word) & 0x0f0f0f0fu; }

// WordCount on the planes of x, s and o.
template <int64_t M>
inline Vec PlaneCount(const Vec* x, const Vec* s, const Vec* o) {
#ifdef BITNET_BYTE_COUNTS
  Vec sum = Vec{};
  for (int p = 0; p < kPlanes; p++) {
    if constexpr (M == kDense) sum += Lookup(kNibbleCounts, x[p] ^ s[p]);
    if constexpr (M == kMasked) sum += Lookup(kNibbleCounts, (x[p] ^ s[p]) & o[p]);
    if constexpr (M == kBinary) sum += Lookup(kNibbleCounts, x[p] & s[p]) + Lookup(kNibbleZeros, x[p] & o[p]);
  }
  return sum;
#else
  return WordCount<M>(x[0], s[0], o[0]);
#endif
}

int Words(int64_t n) { return (int)((n + 31) / 32); }

// Words counted between widenings of byte counts (at most 8 per byte per popcount, 255 at most):
// as few widenings as that allows, in steps of equal length.
template <int64_t M>
int WidenEvery(int words) {
  constexpr int most = M == kBinary ? 255 / 16 : 255 / 8;
  if (kLaneCounts || words <= most) return std::max(words, 1);
  const int widenings = (words + most - 1) / most;
  return (words + widenings - 1) / widenings;
}

// One layer: views of its arrays in the model buffer and, for the column kernel, its planes in blocks.
struct Layer {
  int64_t mode;
  int n_out, padded, words, out_words;
  const int32_t* base;  // [padded]: a = base + factor * total
  const int32_t* polarity;  // [padded]: +1 or -1
  const int32_t* threshold;  // [padded]: a hidden neuron's bit is 1 where polarity * a >= threshold
  const uint32_t* sign;  // [padded, words]
  const uint32_t* other;  // [padded, words]: the mask, or the -1 weights for 0/1 inputs (sign if dense)
  std::vector<uint32_t> sign_blocks, other_blocks;  // [padded / kBlockNeurons, words, kPlanes, kBlockNeurons]
  int blocks() const { return padded / kBlockNeurons; }
};

void PrepareColumns(Layer& layer) {
  const size_t size = (size_t)layer.padded * layer.words * kPlanes;
  layer.sign_blocks.resize(size);
  if (layer.mode != kDense) layer.other_blocks.resize(size);
  for (int n = 0; n < layer.padded; n++) {
    const size_t block = n / kBlockNeurons, lane = n % kBlockNeurons;
    for (int k = 0; k < layer.words; k++) {
      for (int p = 0; p < kPlanes; p++) {
        const size_t at = ((block * layer.words + k) * kPlanes + p) * kBlockNeurons + lane, word = (size_t)n * layer.words + k;
        layer.sign_blocks[at] = Plane(layer.sign[word], p);
        if (layer.mode != kDense) layer.other_blocks[at] = Plane(layer.other[word], p);
      }
    }
  }
}

// The numbers of outputs [first, first + kLanes), loaded once for every input row.
struct Outputs {
  int first;
  IVec base, negate, threshold;  // negate: -1 where the polarity is -1, else 0
};

inline Outputs LoadOutputs(const Layer& layer, int first) {
  return {first, LoadI(layer.base + first), LoadI(layer.polarity + first) >> 31, LoadI(layer.threshold + first)};
}

// Those outputs for one input row from their totals: the scores of the last layer (scores [padded]
// of the row), else the bits of the next layer's words (next [out_words] of the row).
template <int64_t M>
inline void Emit(const Outputs& out, IVec total, bool last, uint32_t* next, int32_t* scores) {
  const IVec a = M == kBinary ? out.base + total : out.base - (total + total);
  if (last)
    std::memcpy(scores + out.first, &a, sizeof a);
  else
    next[out.first / 32] |= LaneBits(((a ^ out.negate) - out.negate) >= out.threshold) << (out.first % 32);
}

// Totals of kBlockRows (or fewer, R) rows of x [rows, words, kPlanes] against one block of neurons.
template <int64_t M, int R>
inline void BlockTotals(const Layer& layer, const uint32_t* x, int block, Vec totals[R][kBlockVectors]) {
  const int words = layer.words;
  const size_t first = (size_t)block * words * kPlanes * kBlockNeurons;
  const uint32_t* s = layer.sign_blocks.data() + first;
  const uint32_t* o = M == kDense ? s : layer.other_blocks.data() + first;
  const int step = WidenEvery<M>(words);
  for (int r = 0; r < R; r++)
    for (int v = 0; v < kBlockVectors; v++) totals[r][v] = Vec{};
  for (int k0 = 0; k0 < words; k0 += step) {
    const int k1 = std::min(words, k0 + step);
    Vec acc[R][kBlockVectors] = {};
    for (int k = k0; k < k1; k++) {
      Vec sv[kBlockVectors][kPlanes], ov[kBlockVectors][kPlanes];
      for (int v = 0; v < kBlockVectors; v++)
        for (int p = 0; p < kPlanes; p++) {
          const size_t at = ((size_t)k * kPlanes + p) * kBlockNeurons + v * kLanes;
          sv[v][p] = Load(s + at);
          ov[v][p] = M == kDense ? sv[v][p] : Load(o + at);
        }
      for (int r = 0; r < R; r++) {
        Vec xb[kPlanes];
        for (int p = 0; p < kPlanes; p++) xb[p] = Vec{} + x[((size_t)r * words + k) * kPlanes + p];
        for (int v = 0; v < kBlockVectors; v++) acc[r][v] += PlaneCount<M>(xb, sv[v], ov[v]);
      }
    }
    for (int r = 0; r < R; r++)
      for (int v = 0; v < kBlockVectors; v++) totals[r][v] += Widen(acc[r][v]);
  }
}

// R rows of the column kernel against every block: the next layer's words [R, out_words] (zeroed
// by the caller) of a hidden layer, or the scores [R, padded] of the last.
template <int64_t M, int R>
void ColumnRows(const Layer& layer, const uint32_t* x, bool last, uint32_t* next, int32_t* scores) {
  for (int block = 0; block < layer.blocks(); block++) {
    Vec totals[R][kBlockVectors];
    BlockTotals<M, R>(layer, x, block, totals);
    for (int v = 0; v < kBlockVectors; v++) {
      const Outputs out = LoadOutputs(layer, block * kBlockNeurons + v * kLanes);
      for (int r = 0; r < R; r++)
        Emit<M>(out, (IVec)totals[r][v], last, next + (size_t)r * layer.out_words, scores + (size_t)r * layer.padded);
    }
  }
}

template <int64_t M>
void ColumnLayer(const Layer& layer, const uint32_t* x, int rows, bool last, uint32_t* next, int32_t* scores) {
  const size_t stride = (size_t)layer.words * kPlanes;
  thread_local std::vector<uint32_t> planes;  // x [rows, words, kPlanes]
  planes.resize(rows * stride);
  for (size_t i = 0; i < (size_t)rows * layer.words; i++)
    for (int p = 0; p < kPlanes; p++) planes[i * kPlanes + p] = Plane(x[i], p);
  int r = 0;
  for (; r + kBlockRows <= rows; r += kBlockRows)
    ColumnRows<M, kBlockRows>(layer, planes.data() + r * stride, last, next + (size_t)r * layer.out_words, scores + (size_t)r * layer.padded);
  for (; r < rows; r++)
    ColumnRows<M, 1>(layer, planes.data() + r * stride, last, next + (size_t)r * layer.out_words, scores + (size_t)r * layer.padded);
}

// Lane j of the result: the sum of the lanes of v[j] (the totals of kLanes neurons in one vector).
inline Vec LaneSums(const Vec* v) {
#if defined(__AVX2__) && BITNET_VECTOR_BYTES == 32
  // pairwise sums within each 128-bit half, twice, then the halves of neurons 0-3 and 4-7 added
  const __m256i a = _mm256_hadd_epi32(_mm256_hadd_epi32((__m256i)v[0], (__m256i)v[1]), _mm256_hadd_epi32((__m256i)v[2], (__m256i)v[3]));
  const __m256i b = _mm256_hadd_epi32(_mm256_hadd_epi32((__m256i)v[4], (__m256i)v[5]), _mm256_hadd_epi32((__m256i)v[6], (__m256i)v[7]));
  return (Vec)_mm256_add_epi32(_mm256_permute2x128_si256(a, b, 0x20), _mm256_permute2x128_si256(a, b, 0x31));
#else
  Vec sums = {};
  for (int j = 0; j < kLanes; j++)
    for (int l = 0; l < kLanes; l++) sums[j] += v[j][l];
  return sums;
#endif
}

// The row kernel: kLanes neurons at a time, each neuron's stored row of words against each input row
// a vector of words at a time (the words left over one by one), the neurons' sums then added across
// lanes into one vector: no rearranging of the planes, for a few rows. Same outputs as ColumnLayer.
template <int64_t M>
void RowLayer(const Layer& layer, const uint32_t* x, int rows, bool last, uint32_t* next, int32_t* scores) {
  const int words = layer.words, full = words / kLanes * kLanes;
  const int step = WidenEvery<M>(full / kLanes) * kLanes;  // a vector adds to each byte what a word does in ColumnLayer
  for (int first = 0; first < layer.padded; first += kLanes) {
    const Outputs out = LoadOutputs(layer, first);
    for (int r = 0; r < rows; r++) {
      const uint32_t* xr = x + (size_t)r * words;
      Vec sums[kLanes];
      for (int j = 0; j < kLanes; j++) {
        const uint32_t* s = layer.sign + (size_t)(first + j) * words;
        const uint32_t* o = layer.other + (size_t)(first + j) * words;
        Vec lanes = {};
        for (int k0 = 0; k0 < full; k0 += step) {
          const int k1 = std::min(full, k0 + step);
          Vec acc = {};
          for (int k = k0; k < k1; k += kLanes) acc += WordCount<M>(Load(xr + k), Load(s + k), Load(o + k));
          lanes += Widen(acc);
        }
        for (int k = full; k < words; k++) lanes[0] += ScalarCount<M>(xr[k], s[k], o[k]);
        sums[j] = lanes;
      }
      Emit<M>(out, (IVec)LaneSums(sums), last, next + (size_t)r * layer.out_words, scores + (size_t)r * layer.padded);
    }
  }
}

template <int64_t M>
void RunLayer(const Layer& layer, bool columns, const uint32_t* x, int rows, bool last, uint32_t* next, int32_t* scores) {
  if (columns)
    ColumnLayer<M>(layer, x, rows, last, next, scores);
  else
    RowLayer<M>(layer, x, rows, last, next, scores);
}

// Buffers of one thread's chunk, kept between calls.
struct Scratch {
  std::vector<uint32_t> current, next;
  std::vector<int32_t> scores;
};

// Input rows as words, a bit set where the value is > 0 (without branches: the bits are random).
void PackInputs(const float* inputs, int64_t n_in, int rows, uint32_t* words) {
  const int count = Words(n_in);
  for (int r = 0; r < rows; r++) {
    const float* row = inputs + (size_t)r * n_in;
    for (int k = 0; k < count; k++) {
      const int64_t first = (int64_t)k * 32, bits = std::min<int64_t>(32, n_in - first);
      uint32_t word = 0;
#if defined(__AVX2__)
      if (bits == 32) {
        for (int q = 0; q < 4; q++) {
          const __m256 values = _mm256_loadu_ps(row + first + 8 * q);
          word |= (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(values, _mm256_setzero_ps(), _CMP_GT_OQ)) << (8 * q);
        }
        words[(size_t)r * count + k] = word;
        continue;
      }
#endif
      for (int64_t b = 0; b < bits; b++) word |= (uint32_t)(row[first + b] > 0.0f) << b;
      words[(size_t)r * count + k] = word;
    }
  }
}

// A call's layers and the sizes of one row's scratch buffers.
struct Network {
  std::vector<Layer> layers;
  int64_t n_in;
  size_t most_words, most_scores;  // words of any layer's input, scores of the last layer, per row
  bool columns;  // the column kernel, else the row kernel
};

// Predictions of rows [start, start + rows): every layer, then the argmax (ties to the lowest index).
void PredictChunk(const Network& network, const float* inputs, int64_t start, int rows, int32_t* out) {
  thread_local Scratch scratch;
  scratch.current.resize(network.most_words * rows);
  scratch.next.resize(network.most_words * rows);
  scratch.scores.resize(network.most_scores * rows);
  PackInputs(inputs + start * network.n_in, network.n_in, rows, scratch.current.data());
  const std::vector<Layer>& layers = network.layers;
  for (size_t l = 0; l < layers.size(); l++) {
    const Layer& layer = layers[l];
    const bool last = l + 1 == layers.size();
    if (!last) std::memset(scratch.next.data(), 0, sizeof(uint32_t) * rows * layer.out_words);
    uint32_t* x = scratch.current.data();
    uint32_t* next = scratch.next.data();
    int32_t* scores = scratch.scores.data();
    switch (layer.mode) {
      case kDense: RunLayer<kDense>(layer, network.columns, x, rows, last, next, scores); break;
      case kMasked: RunLayer<kMasked>(layer, network.columns, x, rows, last, next, scores); break;
      default: RunLayer<kBinary>(layer, network.columns, x, rows, last, next, scores); break;
    }
    std::swap(scratch.current, scratch.next);
  }
  const Layer& output = layers.back();
  for (int r = 0; r < rows; r++) {
    const int32_t* row = scratch.scores.data() + (size_t)r * output.padded;
    out[start + r] = (int32_t)(std::max_element(row, row + output.n_out) - row);
  }
}

// Runs body(0 .. tasks - 1) on the calling thread and the pool's threads. The caller takes tasks
// too and waits only for tasks that started, so a busy pool cannot deadlock it.
template <typename Body>
void ParallelFor(ffi::ThreadPool& pool, int64_t tasks, const Body& body) {
  const int64_t helpers = std::min<int64_t>(pool.num_threads(), tasks) - 1;
  if (helpers <= 0) {
    for (int64_t t = 0; t < tasks; t++) body(t);
    return;
  }
  struct State {
    std::atomic<int64_t> next{0};
    int64_t done = 0;
    std::mutex mutex;
    std::condition_variable finished;
  };
  auto state = std::make_shared<State>();
  auto work = [state, tasks, &body]() {
    for (int64_t t; (t = state->next.fetch_add(1)) < tasks;) {
      body(t);
      std::lock_guard<std::mutex> lock(state->mutex);
      if (++state->done == tasks) state->finished.notify_all();
    }
  };
  for (int64_t h = 0; h < helpers; h++) pool.Schedule([work]() { work(); });
  work();
  std::unique_lock<std::mutex> lock(state->mutex);
  state->finished.wait(lock, [&] { return state->done == tasks; });
}

ffi::Error Invalid(const std::string& message) { return ffi::Error::InvalidArgument("bitnet native kernel: " + message); }

constexpr int kLayoutFields = 9;  // per layer: mode, n_out, padded, words, then the offsets of base, polarity,
                                  // threshold, sign and other in the model buffer (uint32 words)

ffi::Error BitwiseMlp(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> inputs, ffi::Buffer<ffi::U32> model,
                      ffi::ResultBuffer<ffi::S32> predictions, ffi::Span<const int64_t> layout) {
  const auto dims = inputs.dimensions();
  if (dims.size() != 2) return Invalid("inputs must be [batch, n_in]");
  const int64_t batch = dims[0], n_in = dims[1];
  if (layout.size() == 0 || layout.size() % kLayoutFields != 0) return Invalid("layout must have 9 entries per layer");
  const uint32_t* words = model.typed_data();
  const int64_t size = (int64_t)model.element_count();
  Network network{std::vector<Layer>(layout.size() / kLayoutFields), n_in, (size_t)Words(n_in), 0, batch > kRowKernelMaxBatch};
  int64_t fan_in = n_in;
  for (size_t l = 0; l < network.layers.size(); l++) {
    const int64_t* field = layout.begin() + kLayoutFields * l;
    const int64_t mode = field[0], n_out = field[1], padded = field[2], row_words = field[3];
    const std::string name = "layer " + std::to_string(l) + ": ";
    if (mode < kDense || mode > kBinary || (mode == kBinary && l > 0))
      return Invalid(name + "mode must be 0 (dense) or 1 (masked), or 2 (0/1 inputs) for the first layer");
    if (row_words != Words(fan_in)) return Invalid(name + "rows must have ceil(n_in / 32) words for n_in " + std::to_string(fan_in));
    if (n_out <= 0 || padded < n_out || padded % 32 != 0 || padded - n_out >= 32)
      return Invalid(name + "padded must be n_out rounded up to a multiple of 32");
    for (int i = 4; i < kLayoutFields; i++) {
      const int64_t length = i < 7 ? padded : padded * row_words;
      if (field[i] < 0 || field[i] > size - length) return Invalid(name + "an array lies outside the model buffer");
    }
    Layer& layer = network.layers[l];
    layer.mode = mode;
    layer.n_out = (int)n_out;
    layer.padded = (int)padded;
    layer.words = (int)row_words;
    layer.out_words = Words(n_out);
    layer.base = reinterpret_cast<const int32_t*>(words + field[4]);
    layer.polarity = reinterpret_cast<const int32_t*>(words + field[5]);
    layer.threshold = reinterpret_cast<const int32_t*>(words + field[6]);
    layer.sign = words + field[7];
    layer.other = words + field[8];
    network.most_words = std::max<size_t>(network.most_words, layer.out_words);
    fan_in = n_out;
  }
  network.most_scores = network.layers.back().padded;
  if (predictions->element_count() != (size_t)batch) return Invalid("predictions must be [batch]");
  if (batch == 0) return ffi::Error::Success();
  if (network.columns)
    for (Layer& layer : network.layers) PrepareColumns(layer);
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  const int64_t per_thread = (batch + threads - 1) / threads;
  const int64_t chunk = std::min<int64_t>(kChunkRows, (per_thread + kBlockRows - 1) / kBlockRows * kBlockRows);
  const int64_t tasks = (batch + chunk - 1) / chunk;
  const float* data = inputs.typed_data();
  int32_t* out = predictions->typed_data();
  ParallelFor(pool, tasks, [&](int64_t task) {
    const int64_t start = task * chunk;
    PredictChunk(network, data, start, (int)std::min<int64_t>(chunk, batch - start), out);
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(BitnetBitwiseMlp, BitwiseMlp,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::U32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Attr<ffi::Span<const int64_t>>("layout"));
