// The "native" backend of bitnet's packed inference: a whole packed MLP as one XLA FFI call on the
// CPU (bitnet/deploy/native.py builds this file with the system C++ compiler, -O3 -march=native,
// and registers it with jax.ffi; issue #24).
//
// Call: inputs float32 [batch, n_in] (a bit is value > 0, as bitnet.deploy.packing.pack_bits), then
// six buffers per layer, a bitnet.deploy.inference.PackedLayer's as they are:
//   sign      uint32 [n_out, words]  bit = 1 where the weight is +1 (bitnet-packed bit order)
//   mask      uint32 [n_out, words]  bit = 1 where the weight is nonzero
//   bias, nonzeros                   int32 [n_out]: b, and popcount of each mask row
//   polarity, threshold              int32 [n_out]: threshold neurons output +1 where
//                                    polarity * a >= threshold (any int32 [n_out] for sign neurons)
// and the attributes `modes` (per layer 0 dense, 1 masked, 2 0/1 inputs) and `thresholds` (per
// layer 1 for threshold neurons, 0 for sign(a), sign(0) = +1). The integers a = base + factor * total
// are those of bitnet.deploy.inference:
//   bipolar inputs, factor -2: total = popcount((x XOR w) AND m), base = b + popcount(m) (n_in if dense)
//   0/1 inputs, factor +1: total = popcount(x AND w) + popcount(NOT(x AND n)) with n = m AND NOT w
//     (the -1 weights), base = b - 32 * words
// The result is the argmax of the last layer's integers, ties to the lowest index: int32 [batch].
//
// Two kernels, both exact:
//   row kernel     (batch <= kRowKernelMaxBatch) each neuron's stored row of words against each
//                  input row, a vector of words at a time: no rearranging of the planes, for a few rows.
//   column kernel  the planes transposed once per call into blocks of kBlockNeurons neurons,
//                  [blocks, words, kPlanes, kBlockNeurons]; a register block of kBlockRows input
//                  rows x kBlockVectors vectors of neurons: each weight vector loaded once for
//                  kBlockRows rows, each input word broadcast once for kBlockVectors vectors (the
//                  register blocking XLA's loop fusion does not do). Popcounts are byte lookups
//                  (AVX2 / AVX-512BW vpshufb) on words stored as nibble planes (kPlanes), added as
//                  bytes and widened to 32-bit lanes every few words; with AVX-512 VPOPCNTDQ, 32-bit
//                  lane counts directly. A hidden layer's outputs are packed into the next layer's
//                  words by a vector compare and movemask.
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

// One layer's operands and, for the column kernel, its planes and per-neuron numbers in blocks.
struct Layer {
  int64_t mode;
  int n_out, words, out_words, blocks;
  const uint32_t* sign;
  const uint32_t* mask;
  std::vector<int32_t> base, polarity, threshold;  // [n_out]
  std::vector<uint32_t> sign_blocks, other_blocks;  // [blocks, words, kPlanes, kBlockNeurons]
  std::vector<int32_t> base_padded, negate_padded, threshold_padded;  // [blocks * kBlockNeurons]
  int factor() const { return mode == kBinary ? 1 : -2; }
  // The word o of WordCount for neuron n, word k: the mask, or the -1 weights for 0/1 inputs.
  uint32_t Other(int n, int k) const {
    size_t i = (size_t)n * words + k;
    return mode == kBinary ? mask[i] & ~sign[i] : mask[i];
  }
};

void PrepareColumns(Layer& layer) {
  const int padded = layer.blocks * kBlockNeurons;
  layer.sign_blocks.assign((size_t)padded * layer.words * kPlanes, 0);
  if (layer.mode != kDense) layer.other_blocks.assign((size_t)padded * layer.words * kPlanes, 0);
  for (int n = 0; n < layer.n_out; n++) {
    const size_t block = n / kBlockNeurons, lane = n % kBlockNeurons;
    for (int k = 0; k < layer.words; k++) {
      for (int p = 0; p < kPlanes; p++) {
        const size_t at = ((block * layer.words + k) * kPlanes + p) * kBlockNeurons + lane;
        layer.sign_blocks[at] = Plane(layer.sign[(size_t)n * layer.words + k], p);
        if (layer.mode != kDense) layer.other_blocks[at] = Plane(layer.Other(n, k), p);
      }
    }
  }
  layer.base_padded.assign(padded, 0);
  layer.negate_padded.assign(padded, 0);
  layer.threshold_padded.assign(padded, INT_MAX);  // padding neurons never fire: their bits stay 0
  for (int n = 0; n < layer.n_out; n++) {
    layer.base_padded[n] = layer.base[n];
    layer.negate_padded[n] = layer.polarity[n] < 0 ? -1 : 0;
    layer.threshold_padded[n] = layer.threshold[n];
  }
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
// by the caller) of a hidden layer, or the scores [R, blocks * kBlockNeurons] of the last.
template <int64_t M, int R>
void ColumnRows(const Layer& layer, const uint32_t* x, bool last, uint32_t* next, int32_t* scores) {
  const int padded = layer.blocks * kBlockNeurons;
  for (int block = 0; block < layer.blocks; block++) {
    Vec totals[R][kBlockVectors];
    BlockTotals<M, R>(layer, x, block, totals);
    for (int v = 0; v < kBlockVectors; v++) {
      const int first = block * kBlockNeurons + v * kLanes;
      const IVec base = LoadI(layer.base_padded.data() + first);
      const IVec negate = LoadI(layer.negate_padded.data() + first);
      const IVec threshold = LoadI(layer.threshold_padded.data() + first);
      for (int r = 0; r < R; r++) {
        const IVec total = (IVec)totals[r][v];
        const IVec a = M == kBinary ? base + total : base - (total + total);
        if (last)
          std::memcpy(scores + (size_t)r * padded + first, &a, sizeof a);
        else
          next[(size_t)r * layer.out_words + first / 32] |= LaneBits(((a ^ negate) - negate) >= threshold) << (first % 32);
      }
    }
  }
}

template <int64_t M>
void ColumnLayer(const Layer& layer, const uint32_t* x, int rows, bool last, uint32_t* next, int32_t* scores) {
  const int padded = layer.blocks * kBlockNeurons;
  const size_t stride = (size_t)layer.words * kPlanes;
  thread_local std::vector<uint32_t> planes;  // x [rows, words, kPlanes]
  planes.resize(rows * stride);
  for (size_t i = 0; i < (size_t)rows * layer.words; i++)
    for (int p = 0; p < kPlanes; p++) planes[i * kPlanes + p] = Plane(x[i], p);
  int r = 0;
  for (; r + kBlockRows <= rows; r += kBlockRows)
    ColumnRows<M, kBlockRows>(layer, planes.data() + r * stride, last, next + (size_t)r * layer.out_words, scores + (size_t)r * padded);
  for (; r < rows; r++)
    ColumnRows<M, 1>(layer, planes.data() + r * stride, last, next + (size_t)r * layer.out_words, scores + (size_t)r * padded);
}

// The row kernel: every neuron's row of words against each input row, a vector of words at a time
// (the words left over one by one); same outputs as ColumnLayer (scores [rows, n_out] for the last layer).
template <int64_t M>
void RowLayer(const Layer& layer, const uint32_t* x, int rows, bool last, uint32_t* next, int32_t* scores) {
  const int words = layer.words, full = words / kLanes * kLanes;
  const int step = WidenEvery<M>(full / kLanes) * kLanes;  // a vector adds to each byte what a word does in ColumnLayer
  for (int n = 0; n < layer.n_out; n++) {
    const uint32_t* s = layer.sign + (size_t)n * words;
    const uint32_t* m = layer.mask + (size_t)n * words;
    for (int r = 0; r < rows; r++) {
      const uint32_t* xr = x + (size_t)r * words;
      Vec lanes = {};
      for (int k0 = 0; k0 < full; k0 += step) {
        const int k1 = std::min(full, k0 + step);
        Vec acc = {};
        for (int k = k0; k < k1; k += kLanes) {
          const Vec sv = Load(s + k), mv = Load(m + k);
          acc += WordCount<M>(Load(xr + k), sv, M == kBinary ? mv & ~sv : mv);
        }
        lanes += Widen(acc);
      }
      int total = 0;
      for (int l = 0; l < kLanes; l++) total += (int)lanes[l];
      for (int k = full; k < words; k++) total += ScalarCount<M>(xr[k], s[k], layer.Other(n, k));
      const int a = layer.base[n] + layer.factor() * total;
      if (last)
        scores[(size_t)r * layer.n_out + n] = a;
      else  // without a branch: the bits are as good as random
        next[(size_t)r * layer.out_words + n / 32] |= (uint32_t)(layer.polarity[n] * a >= layer.threshold[n]) << (n % 32);
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

// Predictions of rows [start, start + rows): every layer, then the argmax (ties to the lowest index).
void PredictChunk(const std::vector<Layer>& layers, bool columns, const float* inputs, int64_t n_in, int64_t start, int rows, int32_t* out) {
  thread_local Scratch scratch;
  size_t most_words = Words(n_in), most_scores = 0;
  for (const Layer& layer : layers) {
    most_words = std::max<size_t>(most_words, layer.out_words);
    most_scores = std::max<size_t>(most_scores, (size_t)layer.blocks * kBlockNeurons);
  }
  scratch.current.resize(most_words * rows);
  scratch.next.resize(most_words * rows);
  scratch.scores.resize(most_scores * rows);
  PackInputs(inputs + start * n_in, n_in, rows, scratch.current.data());
  for (size_t l = 0; l < layers.size(); l++) {
    const Layer& layer = layers[l];
    const bool last = l + 1 == layers.size();
    if (!last) std::memset(scratch.next.data(), 0, sizeof(uint32_t) * rows * layer.out_words);
    uint32_t* x = scratch.current.data();
    uint32_t* next = scratch.next.data();
    int32_t* scores = scratch.scores.data();
    switch (layer.mode) {
      case kDense: RunLayer<kDense>(layer, columns, x, rows, last, next, scores); break;
      case kMasked: RunLayer<kMasked>(layer, columns, x, rows, last, next, scores); break;
      default: RunLayer<kBinary>(layer, columns, x, rows, last, next, scores); break;
    }
    std::swap(scratch.current, scratch.next);
  }
  const Layer& output = layers.back();
  const int stride = columns ? output.blocks * kBlockNeurons : output.n_out;
  for (int r = 0; r < rows; r++) {
    const int32_t* row = scratch.scores.data() + (size_t)r * stride;
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

ffi::Error BitwiseMlp(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> inputs, ffi::RemainingArgs operands,
                      ffi::ResultBuffer<ffi::S32> predictions, ffi::Span<const int64_t> modes,
                      ffi::Span<const int64_t> thresholds) {
  const auto dims = inputs.dimensions();
  if (dims.size() != 2) return Invalid("inputs must be [batch, n_in]");
  const int64_t batch = dims[0], n_in = dims[1];
  if (modes.size() == 0 || thresholds.size() != modes.size() || operands.size() != 6 * modes.size())
    return Invalid("expected 6 buffers per layer (sign, mask, bias, nonzeros, polarity, threshold), one mode and one threshold flag each");
  std::vector<Layer> layers(modes.size());
  int64_t fan_in = n_in;
  for (size_t l = 0; l < modes.size(); l++) {
    const std::string name = "layer " + std::to_string(l) + ": ";
    auto sign = operands.get<ffi::Buffer<ffi::U32>>(6 * l);
    auto mask = operands.get<ffi::Buffer<ffi::U32>>(6 * l + 1);
    std::vector<ffi::ErrorOr<ffi::Buffer<ffi::S32>>> numbers;
    for (size_t i = 2; i < 6; i++) numbers.push_back(operands.get<ffi::Buffer<ffi::S32>>(6 * l + i));
    if (sign.has_error() || mask.has_error() || std::any_of(numbers.begin(), numbers.end(), [](auto& b) { return b.has_error(); }))
      return Invalid(name + "buffers must be uint32 sign and mask, int32 bias, nonzeros, polarity and threshold");
    const auto planes = sign->dimensions();
    if (planes.size() != 2 || !(mask->dimensions() == planes) || planes[1] != Words(fan_in))
      return Invalid(name + "planes must be [n_out, ceil(n_in / 32)] for n_in " + std::to_string(fan_in));
    const int64_t n_out = planes[0];
    if (std::any_of(numbers.begin(), numbers.end(), [&](auto& b) { return b->element_count() != (size_t)n_out; }))
      return Invalid(name + "bias, nonzeros, polarity and threshold must have n_out entries");
    if (modes[l] < kDense || modes[l] > kBinary || (modes[l] == kBinary && l > 0))
      return Invalid(name + "mode must be 0 (dense) or 1 (masked), or 2 (0/1 inputs) for the first layer");
    Layer& layer = layers[l];
    layer.mode = modes[l];
    layer.n_out = (int)n_out;
    layer.words = (int)planes[1];
    layer.out_words = Words(n_out);
    layer.blocks = (int)((n_out + kBlockNeurons - 1) / kBlockNeurons);
    layer.sign = sign->typed_data();
    layer.mask = mask->typed_data();
    const int32_t* bias = numbers[0]->typed_data();
    const int32_t* nonzeros = numbers[1]->typed_data();
    layer.base.resize(n_out);
    layer.polarity.assign(n_out, 1);
    layer.threshold.assign(n_out, 0);
    for (int64_t n = 0; n < n_out; n++) {
      const int64_t count = layer.mode == kBinary ? -32 * (int64_t)layer.words : layer.mode == kDense ? fan_in : nonzeros[n];
      layer.base[n] = (int32_t)(bias[n] + count);
      if (thresholds[l]) {
        layer.polarity[n] = numbers[2]->typed_data()[n];
        layer.threshold[n] = numbers[3]->typed_data()[n];
      }
    }
    fan_in = n_out;
  }
  if (predictions->element_count() != (size_t)batch) return Invalid("predictions must be [batch]");
  if (batch == 0) return ffi::Error::Success();
  const bool columns = batch > kRowKernelMaxBatch;
  if (columns)
    for (Layer& layer : layers) PrepareColumns(layer);
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  const int64_t per_thread = (batch + threads - 1) / threads;
  const int64_t chunk = std::min<int64_t>(kChunkRows, (per_thread + kBlockRows - 1) / kBlockRows * kBlockRows);
  const int64_t tasks = (batch + chunk - 1) / chunk;
  const float* data = inputs.typed_data();
  int32_t* out = predictions->typed_data();
  ParallelFor(pool, tasks, [&](int64_t task) {
    const int64_t start = task * chunk;
    PredictChunk(layers, columns, data, n_in, start, (int)std::min<int64_t>(chunk, batch - start), out);
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(BitnetBitwiseMlp, BitwiseMlp,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .RemainingArgs()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Attr<ffi::Span<const int64_t>>("modes")
                                  .Attr<ffi::Span<const int64_t>>("thresholds"));
