// Helpers of the per-ISA CPU kernels. Everything lives in namespace CPU_CAPABILITY (one copy per
// instruction set); scratch memory is malloc'd rather than a std::vector, whose out-of-line members
// would be one symbol shared by every ISA object.
#pragma once
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <new>
#include <type_traits>

namespace lsmia::cpu::CPU_CAPABILITY {

using at::vec::Vectorized;

// Forces inlining where GCC's size limits would leave a hot helper of the lane path out of line (a
// call per row group, its arguments no longer constants). LSMIA_INLINE_LAMBDA goes after a lambda's
// parameter list.
// LSMIA_NOINLINE keeps a register-heavy kernel out of a larger caller, whose other locals would take
// its registers (the AVX2 training kernel inlined into the lane pass: 8% slower).
#if defined(__GNUC__)
#define LSMIA_INLINE __attribute__((always_inline)) inline
#define LSMIA_INLINE_LAMBDA __attribute__((always_inline))
#define LSMIA_NOINLINE __attribute__((noinline))
#else
#define LSMIA_INLINE inline
#define LSMIA_INLINE_LAMBDA
#define LSMIA_NOINLINE
#endif
// Around code that inlines AVX-512 intrinsics (the AVX-512 table only): GCC 12 warns that the _mm512_undefined_ps() inside
// many of them "may be used uninitialized" (a false positive, GCC bug 105593), thousands of lines
// in the build log once they are inlined into the unrolled register kernel.
#if defined(__GNUC__) && !defined(__clang__) && defined(CPU_CAPABILITY_AVX512)
#define LSMIA_AVX512_QUIET_BEGIN _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"")
#define LSMIA_AVX512_QUIET_END _Pragma("GCC diagnostic pop")
#else
#define LSMIA_AVX512_QUIET_BEGIN
#define LSMIA_AVX512_QUIET_END
#endif

// The AVX2 table's own float arithmetic in the lane path (issue 30, speed on CPUs without AVX-512):
// exp / log polynomials (vexp_nonpos, vlog_pos) and sums split over two accumulators. The AVX-512
// and DEFAULT tables keep ATen's exp_u20 / Sleef log and one accumulator, so their results stay bit
// for bit those of the studies committed with them.
#if defined(CPU_CAPABILITY_AVX2)
constexpr bool kOwnFloatMath = true;
#else
constexpr bool kOwnFloatMath = false;
#endif

template <typename T>
class Buffer {
 public:
  explicit Buffer(int64_t n) : p_(n > 0 ? static_cast<T*>(std::malloc(sizeof(T) * static_cast<size_t>(n))) : nullptr) {
    if (n > 0 && p_ == nullptr) throw std::bad_alloc();
  }
  ~Buffer() { std::free(p_); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  T* get() const { return p_; }

 private:
  T* p_;
};

// exp with IEEE special values: NaN -> NaN, +inf and overflow -> +inf, -inf -> 0.
template <typename acc_t>
inline Vectorized<acc_t> vexp(const Vectorized<acc_t>& x) {
  return x.exp();  // Sleef (1 ULP) on AVX2 / AVX512, std::exp on DEFAULT
}
template <>
inline Vectorized<float> vexp(const Vectorized<float>& x) {
  // exp_u20 is a fast polynomial (about 20 ULP) that clamps its input to [-87.3, 88.7]: NaN and
  // +inf come out finite. Those lanes are put right here; below -87.3 it already returns 0.
  using Vec = Vectorized<float>;
  Vec r = Vec::blendv(x.exp_u20(), Vec(std::numeric_limits<float>::infinity()), x > Vec(88.72283f));
  return Vec::blendv(r, x, x != x);
}

// log(x) for a positive normal x: what the lane path takes of s = sum exp(z - max), which is about 1
// to K (a row whose max is not finite is marked NaN whatever this returns). Zero, subnormal, inf
// and NaN inputs give garbage. Sleef (1 ULP) for double and on DEFAULT.
template <typename acc_t>
inline Vectorized<acc_t> vlog_pos(const Vectorized<acc_t>& x) {
  return x.log();
}
#if defined(CPU_CAPABILITY_AVX2)  // the AVX2 table only: see kOwnFloatMath
// float: x = 2^e m with m in [sqrt(1/2), sqrt(2)), f = m - 1, log(1 + f) = f - f^2/2 + f^3 P(f) with
// P of degree 7, fitted for this file (least squares on Chebyshev nodes of [sqrt(1/2) - 1,
// sqrt(2) - 1], reweighted toward the minimax relative error); in float32 arithmetic the result is
// within 1 ULP of log(x) on all of [1, 64] (checked exhaustively when fitted). About 25 vector
// operations and no division, against Sleef's logf (1 ULP) at about 90 with one.
template <>
inline Vectorized<float> vlog_pos(const Vectorized<float>& x) {
  using Vec = Vectorized<float>;
  using IVec = Vectorized<int32_t>;
  const IVec bits = at::vec::cast<int32_t>(x);
  Vec m = at::vec::cast<float>((bits & IVec(0x007fffff)) | IVec(0x3f800000));  // in [1, 2)
  Vec e = at::vec::convert_to_fp_of_same_size<float>((bits >> IVec(23)) - IVec(127));
  const Vec big = m > Vec(1.41421356f);
  m = Vec::blendv(m, m * Vec(0.5f), big);
  e = e + (big & Vec(1.0f));
  const Vec f = m - Vec(1.0f), f2 = f * f;
  Vec p(-0.08195447809f);
  for (const float c : {0.1302953011f, -0.1306729616f, 0.1415491889f, -0.1662846201f, 0.2000367235f,
                        -0.2500071969f, 0.3333329755f}) {
    p = at::vec::fmadd(p, f, Vec(c));
  }
  const float ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;  // ln 2 = hi + lo, hi exact in 9 bits
  Vec r = at::vec::fmadd(f2 * f, p, e * Vec(ln2_lo));
  r = at::vec::fmadd(Vec(-0.5f), f2, r);
  return at::vec::fmadd(e, Vec(ln2_hi), r + f);
}
#endif

// Labels of one group of W lanes as acc_t: y[j], or -1 where y[j] == ignore or j >= m (spare lane);
// any_drop: some lane is -1. Labels are in range (checked by the caller), so their low 32 bits are
// the label. Scalar here; AVX2 and AVX-512 float: a few vector operations on the int64 registers.
template <typename acc_t>
inline Vectorized<acc_t> lane_labels(const int64_t* y, int64_t m, int64_t ignore, bool& any_drop) {
  constexpr int64_t W = Vectorized<acc_t>::size();
  alignas(64) acc_t yk[W];
  any_drop = false;
  for (int64_t j = 0; j < W; ++j) {
    const bool drop = j >= m || y[j] == ignore;
    any_drop |= drop;
    yk[j] = drop ? acc_t(-1) : static_cast<acc_t>(y[j]);
  }
  return Vectorized<acc_t>::loadu(yk);
}
#if defined(CPU_CAPABILITY_AVX2)
template <>
inline Vectorized<float> lane_labels(const int64_t* y, int64_t m, int64_t ignore, bool& any_drop) {
  const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y));
  const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y + 4));
  const __m256i ign = _mm256_set1_epi64x(ignore), order = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
  // the low 32-bit halves of a's and b's four int64 each, in lane order
  const auto low32 = [&](__m256i p, __m256i q) {
    return _mm256_permutevar8x32_epi32(_mm256_blend_epi32(p, _mm256_slli_epi64(q, 32), 0xAA), order);
  };
  const __m256i spare = _mm256_cmpgt_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(m - 1));
  const __m256i drop = _mm256_or_si256(low32(_mm256_cmpeq_epi64(a, ign), _mm256_cmpeq_epi64(b, ign)), spare);
  any_drop = !_mm256_testz_si256(drop, drop);
  return _mm256_blendv_ps(_mm256_cvtepi32_ps(low32(a, b)), _mm256_set1_ps(-1.0f), _mm256_castsi256_ps(drop));
}
#endif

#if defined(CPU_CAPABILITY_AVX512)
// 16 lanes: two registers of 8 int64 labels, compared in masks, their low halves packed (vpmovqd).
template <>
inline Vectorized<float> lane_labels(const int64_t* y, int64_t m, int64_t ignore, bool& any_drop) {
  const __m512i a = _mm512_loadu_si512(y), b = _mm512_loadu_si512(y + 8), ign = _mm512_set1_epi64(ignore);
  const unsigned spare = ~((1u << m) - 1u);  // lanes j >= m (m in 1..16)
  const unsigned hits = _mm512_cmpeq_epi64_mask(a, ign) | (static_cast<unsigned>(_mm512_cmpeq_epi64_mask(b, ign)) << 8);
  const __mmask16 drop = static_cast<__mmask16>((hits | spare) & 0xFFFFu);
  any_drop = drop != 0;
  const __m256i lo = _mm512_cvtepi64_epi32(a), hi = _mm512_cvtepi64_epi32(b);
  const __m512i low32 = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
  return _mm512_mask_blend_ps(drop, _mm512_cvtepi32_ps(low32), _mm512_set1_ps(-1.0f));
}
#endif

// z[j] = x[rows[j] + y[j]] for the W lanes of a group whose rows start at x + rows[j] (unit class
// stride; y: labels as float, -1 in dropped lanes, which read class 0; every offset fits int32):
// the labelled logits in one gather from the rows in memory, instead of a compare, and and or per
// class on the columns. AVX2 float only (the table whose lane path owns its float math, see
// kOwnFloatMath; on AVX-512 a gather was no faster here, and it is slow on CPUs with the Downfall
// microcode fix); elsewhere false, and the caller picks by compares.
template <typename S, typename T, typename I>
inline bool pick_labelled(const S*, const Vectorized<I>&, const Vectorized<T>&, Vectorized<T>&) {
  return false;
}
#if defined(CPU_CAPABILITY_AVX2)
template <>
LSMIA_INLINE bool pick_labelled(const float* x, const Vectorized<int32_t>& rows, const Vectorized<float>& y,
                                Vectorized<float>& z) {
  const __m256i cls = _mm256_cvttps_epi32(_mm256_max_ps(y, _mm256_setzero_ps()));  // dropped: class 0
  z = _mm256_i32gather_ps(x, _mm256_add_epi32(rows, cls), 4);
  return true;
}
#endif

// Transposes between the W rows and the columns of float32 for the lane path (gathers are slow on AMD
// before Zen 4 and cost several cycles on Intel too). A column register of W = 8 (AVX2, ymm) or 16
// (AVX-512, zmm) rows is made of W / 4 pieces of 128 bits: piece q holds rows 4q..4q+3. The rows are
// loaded 4 columns at a time, rows i, i + 4, i + 8, ... into the pieces of register i (i < 4), so that
// the transpose needs only in-piece shuffles. load_cols_transposed / store_rows_transposed (columns
// in memory, the AVX2 lane path): other ISAs and types false, the caller gathers.
template <typename T>
inline bool load_cols_transposed(const T*, int64_t, int64_t, T*) {
  return false;
}
template <typename T>
inline bool store_rows_transposed(const T*, int64_t, T*, int64_t) {
  return false;
}
// Whether store_rows_transposed takes K columns of T (known before they are computed).
template <typename T>
constexpr bool rows_transposable(int64_t K) {
#if defined(CPU_CAPABILITY_AVX2)
  return std::is_same_v<T, float> && K >= 4;
#else
  return false;
#endif
}
#if defined(CPU_CAPABILITY_AVX2) || defined(CPU_CAPABILITY_AVX512)
// The register of a float column: Vectorized<float>'s own.
#if defined(CPU_CAPABILITY_AVX512)
using FloatReg = __m512;
#else
using FloatReg = __m256;
#endif

// Each 128-bit piece of a, b, c, d is a 4 x 4 block (row per register); transpose every block.
LSMIA_INLINE void transpose4_pieces(__m256& a, __m256& b, __m256& c, __m256& d) {
  const __m256 t0 = _mm256_unpacklo_ps(a, b), t1 = _mm256_unpackhi_ps(a, b);
  const __m256 t2 = _mm256_unpacklo_ps(c, d), t3 = _mm256_unpackhi_ps(c, d);
  a = _mm256_shuffle_ps(t0, t2, 0x44);
  b = _mm256_shuffle_ps(t0, t2, 0xEE);
  c = _mm256_shuffle_ps(t1, t3, 0x44);
  d = _mm256_shuffle_ps(t1, t3, 0xEE);
}
// Columns k..k+3 of the W rows s + r * ld: v[i] = row i | row i + 4 (| row i + 8 | row i + 12).
LSMIA_INLINE void load_rows4(const float* s, int64_t ld, __m256* v) {
  for (int i = 0; i < 4; ++i) {
    v[i] = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(s + i * ld)), _mm_loadu_ps(s + (i + 4) * ld), 1);
  }
}
// The inverse: v[i] as load_rows4 leaves them, 4 columns, into the rows o + r * ld.
LSMIA_INLINE void store_rows4(const __m256* v, float* o, int64_t ld) {
  for (int i = 0; i < 4; ++i) {
    _mm_storeu_ps(o + i * ld, _mm256_castps256_ps128(v[i]));
    _mm_storeu_ps(o + (i + 4) * ld, _mm256_extractf128_ps(v[i], 1));
  }
}
// 8 columns: v[0..3] the first 4 as store_rows4 takes them, v[4..7] the next 4 (one 32-byte store a row).
LSMIA_INLINE void store_rows8(const __m256* v, float* o, int64_t ld) {
  for (int i = 0; i < 4; ++i) {
    _mm256_storeu_ps(o + i * ld, _mm256_permute2f128_ps(v[i], v[i + 4], 0x20));
    _mm256_storeu_ps(o + (i + 4) * ld, _mm256_permute2f128_ps(v[i], v[i + 4], 0x31));
  }
}
#if defined(CPU_CAPABILITY_AVX512)
LSMIA_AVX512_QUIET_BEGIN
LSMIA_INLINE void transpose4_pieces(__m512& a, __m512& b, __m512& c, __m512& d) {
  const __m512 t0 = _mm512_unpacklo_ps(a, b), t1 = _mm512_unpackhi_ps(a, b);
  const __m512 t2 = _mm512_unpacklo_ps(c, d), t3 = _mm512_unpackhi_ps(c, d);
  a = _mm512_shuffle_ps(t0, t2, 0x44);
  b = _mm512_shuffle_ps(t0, t2, 0xEE);
  c = _mm512_shuffle_ps(t1, t3, 0x44);
  d = _mm512_shuffle_ps(t1, t3, 0xEE);
}
LSMIA_INLINE void load_rows4(const float* s, int64_t ld, __m512* v) {
  for (int i = 0; i < 4; ++i) {
    __m512 r = _mm512_castps128_ps512(_mm_loadu_ps(s + i * ld));
    r = _mm512_insertf32x4(r, _mm_loadu_ps(s + (i + 4) * ld), 1);
    r = _mm512_insertf32x4(r, _mm_loadu_ps(s + (i + 8) * ld), 2);
    v[i] = _mm512_insertf32x4(r, _mm_loadu_ps(s + (i + 12) * ld), 3);
  }
}
LSMIA_INLINE void store_rows4(const __m512* v, float* o, int64_t ld) {
  for (int i = 0; i < 4; ++i) {
    _mm_storeu_ps(o + i * ld, _mm512_castps512_ps128(v[i]));
    _mm_storeu_ps(o + (i + 4) * ld, _mm512_extractf32x4_ps(v[i], 1));
    _mm_storeu_ps(o + (i + 8) * ld, _mm512_extractf32x4_ps(v[i], 2));
    _mm_storeu_ps(o + (i + 12) * ld, _mm512_extractf32x4_ps(v[i], 3));
  }
}
LSMIA_INLINE void store_rows8(const __m512* v, float* o, int64_t ld) {
  store_rows4(v, o, ld);
  store_rows4(v + 4, o + 4, ld);
}
LSMIA_AVX512_QUIET_END
#endif

// Blocks of columns covering 0..K-1, f(first column, wide): 8 wide, then a last block of 8 (tail
// > 4) or 4 that ends at K and may overlap the one before; K < 8: blocks of 4 (one at 0 when K < 4).
template <typename F>
LSMIA_INLINE void for_blocks(int64_t K, F f) {
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) f(k, true);
  if (k == K) return;
  if (K - k > 4) {
    if (K >= 8) return f(K - 8, true);
    f(0, false);
  }
  f(std::max<int64_t>(K - 4, 0), false);
}

// Columns 0..K-1 of the W rows x + r * ld, column k (rows 0..W-1) handed to put(k, v) (a column of an
// overlapping last block twice). K < 4 reads 4 - K floats past the last row: the caller allows it
// only where they lie inside the tensor.
template <typename Put>
LSMIA_INLINE void rows_to_cols(const float* x, int64_t ld, int64_t K, Put put) {
  for_blocks(K, [&](int64_t k, bool wide) LSMIA_INLINE_LAMBDA {
    FloatReg v[8];
    load_rows4(x + k, ld, v);
    transpose4_pieces(v[0], v[1], v[2], v[3]);  // v[c]: column k + c
    if (wide) {
      load_rows4(x + k + 4, ld, v + 4);
      transpose4_pieces(v[4], v[5], v[6], v[7]);
    }
    for (int c = 0; c < (wide ? 8 : 4); ++c) put(k + c, v[c]);
  });
}

// The inverse for K >= 4: the K columns get(k) (W rows each) into the rows o + r * ld (columns 0..K-1).
template <typename Get>
LSMIA_INLINE void cols_to_rows(Get get, int64_t K, float* o, int64_t ld) {
  for_blocks(K, [&](int64_t k, bool wide) LSMIA_INLINE_LAMBDA {
    FloatReg v[8];
    for (int c = 0; c < (wide ? 8 : 4); ++c) v[c] = get(k + c);
    transpose4_pieces(v[0], v[1], v[2], v[3]);  // v[i]: row i | row i + 4 ..., columns k..k+3
    if (!wide) return store_rows4(v, o + k, ld);
    transpose4_pieces(v[4], v[5], v[6], v[7]);  // columns k+4..k+7
    store_rows8(v, o + k, ld);
  });
}
#endif

#if defined(CPU_CAPABILITY_AVX2)
// rows_to_cols into memory: column k at cols + 8 k.
template <>
LSMIA_INLINE bool load_cols_transposed(const float* x, int64_t ld, int64_t K, float* cols) {
  rows_to_cols(x, ld, K, [&](int64_t k, __m256 v) LSMIA_INLINE_LAMBDA { _mm256_storeu_ps(cols + k * 8, v); });
  return true;
}
// cols_to_rows from memory: column k at cols + 8 k.
template <>
LSMIA_INLINE bool store_rows_transposed(const float* cols, int64_t K, float* o, int64_t ld) {
  if (!rows_transposable<float>(K)) return false;
  cols_to_rows([&](int64_t k) LSMIA_INLINE_LAMBDA { return _mm256_loadu_ps(cols + k * 8); }, K, o, ld);
  return true;
}
#endif

}  // namespace lsmia::cpu::CPU_CAPABILITY
