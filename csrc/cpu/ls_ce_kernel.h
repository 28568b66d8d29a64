// CPU label-smoothed cross-entropy, compiled once per instruction set (namespace CPU_CAPABILITY).
// Math: ls_ce_math.h. Rows (n, j) of logits viewed as (N, K, M) are spread over threads.
// Few classes (K <= kLaneMaxK): one vector lane per row, W rows at a time; column k of the W rows is
// one load (rows j, j+1, ... of a (N, K, M) map are adjacent), part of an 8 x 8 transpose (AVX2,
// float32 rows of unit class stride), one gather, or W scalar reads, kept in a small buffer so that
// max, exp, sums and log all run on full vectors; gradient rows go back the same way. The AVX2 and
// AVX-512 training pass of float32 rows with 4 to 16 classes keeps a group's columns in registers
// instead (train_in_registers).
// More classes: row by row, a row read in place (contiguous float32 / float64) or through a
// per-thread row buffer (K values, stays in cache); never an N x K temporary.
#pragma once
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <climits>
#include <limits>
#include <utility>

#include "cpu/dispatch.h"
#include "cpu/vec_util.h"
#include "ls_ce_math.h"

namespace lsmia::cpu::CPU_CAPABILITY {

constexpr int64_t kLaneMaxK = 64;
constexpr int64_t kInterleave = 2;  // lane groups processed together (lanes_run)

// Typed view of one call.
template <typename scalar_t>
struct Call {
  using acc_t = at::opmath_type<scalar_t>;
  LsCeCall c;  // a copy: in a lane kernel's own Call (lanes_run) nothing the kernel stores can alias it,
               // so its fields stay in registers instead of being reloaded after every store
  const scalar_t* x;
  const acc_t* w;
  acc_t W, alpha;
  acc_t keep, smooth;  // 1 - alpha and alpha / K, once per call rather than once per row group
  scalar_t* out;
  bool in_place;  // gradient written over the logits (strides of x) instead of a contiguous out

  explicit Call(const LsCeCall& call)
      : c(call), x(static_cast<const scalar_t*>(call.x)), w(static_cast<const acc_t*>(call.w)),
        W(static_cast<acc_t>(call.W)), alpha(static_cast<acc_t>(call.alpha)), keep(acc_t(1) - alpha),
        smooth(alpha / static_cast<acc_t>(call.K)), out(static_cast<scalar_t*>(call.out)), in_place(call.out == call.x) {}

  // row r -> (n, j); M == 1 (plain (N, K) logits) skips the division
  void split(int64_t r, int64_t& n, int64_t& j) const {
    if (c.M == 1) {
      n = r;
      j = 0;
    } else {
      n = r / c.M;
      j = r - n * c.M;
    }
  }
  int64_t x_off(int64_t r) const {
    int64_t n, j;
    split(r, n, j);
    return n * c.xs0 + j * c.xs2;
  }
  int64_t label(int64_t r) const {
    int64_t n, j;
    split(r, n, j);
    return c.y[n * c.ys0 + j * c.ys1];
  }
  acc_t upstream(int64_t r) const {
    int64_t n, j;
    split(r, n, j);
    return static_cast<const acc_t*>(c.g)[n * c.gs0 + j * c.gs1];
  }
  int64_t out_off(int64_t r) const {
    int64_t n, j;
    split(r, n, j);
    return in_place ? n * c.xs0 + j * c.xs2 : (n * c.K) * c.M + j;
  }
  int64_t out_cs() const { return in_place ? c.xs1 : c.M; }
  // W whole (N, K) rows from r0 stored back to back: the logits (out = false), or the gradient
  // (always, unless it is written over the logits)
  bool packed_rows(int64_t count, int64_t W, bool out) const {
    if (c.M != 1 || count != W) return false;
    return (out && !in_place) || (c.xs1 == 1 && c.xs0 == c.K);
  }
  // W rows from r0 are adjacent lanes of one (n, :, j) run when they share n and j has stride 1
  bool adjacent(int64_t r0, int64_t count, int64_t W, bool out) const {
    if (count != W || c.M < W || r0 / c.M != (r0 + W - 1) / c.M) return false;
    return (out && !in_place) || c.xs2 == 1;
  }
  acc_t weight(int64_t k) const { return w == nullptr ? acc_t(1) : w[k]; }
};

// ---- the training pass's loss sum ----

// Sum of n values, in four acc_t vectors (n <= 512: at most 16 additions per float lane), lanes added
// in double.
template <typename acc_t>
double sum_values(const acc_t* p, int64_t n) {
  using Vec = Vectorized<acc_t>;
  constexpr int64_t W = Vec::size();
  Vec v[4] = {Vec(acc_t(0)), Vec(acc_t(0)), Vec(acc_t(0)), Vec(acc_t(0))};
  int64_t i = 0;
  for (; i + 4 * W <= n; i += 4 * W) {
    for (int u = 0; u < 4; ++u) v[u] += Vec::loadu(p + i + u * W);
  }
  alignas(64) acc_t part[W];
  ((v[0] + v[1]) + (v[2] + v[3])).store(part);
  double s = 0.0;
  for (int64_t j = 0; j < W; ++j) s += part[j];
  for (; i < n; ++i) s += p[i];
  return s;
}

// A pass's items (row groups or rows) in blocks of one thread each, for at::parallel_for over count()
// blocks: at most 512 rows and at most the pass's grain (`grain` items: as many threads as before, and a
// block size that does not depend on them). With call.loss_sum set, each block's loss rows are summed
// right after the block wrote them
// (still in cache: summed after the pass, the rows of a large N would be read back from memory), and
// finish() adds the block sums in order: the same result for any number of threads.
template <typename acc_t>
class LossBlocks {
 public:
  static constexpr int64_t kRows = 512;  // rows per block at most: 2 KiB of float loss, in L1
  LossBlocks(const LsCeCall& c, int64_t items, int64_t rows_per_item, int64_t grain)
      : c_(c), items_(items), per_(rows_per_item),
        block_(std::max<int64_t>(1, std::min(kRows / rows_per_item, grain))),
        sums_(c.loss_sum != nullptr ? count() : 0) {}
  int64_t count() const { return (items_ + block_ - 1) / block_; }
  // at::parallel_for's grain in blocks
  int64_t grain(int64_t items) const { return std::max<int64_t>(1, items / block_); }
  // f(begin, end) on the items of blocks [b0, b1), one block at a time
  template <typename F>
  LSMIA_INLINE void each(int64_t b0, int64_t b1, F f) const {
    const acc_t* loss = static_cast<const acc_t*>(c_.loss);
    const int64_t R = c_.N * c_.M;
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t begin = b * block_, end = std::min(items_, begin + block_);
      f(begin, end);
      if (sums_.get() == nullptr) continue;
      const int64_t r0 = begin * per_;
      sums_.get()[b] = sum_values(loss + r0, std::min(end * per_, R) - r0);
    }
  }
  void finish() const {
    if (sums_.get() == nullptr) return;
    double s = 0.0;
    for (int64_t b = 0; b < count(); ++b) s += sums_.get()[b];
    *c_.loss_sum = s;
  }

 private:
  const LsCeCall& c_;
  int64_t items_, per_, block_;
  Buffer<double> sums_;
};

// ---- few classes: W rows in the lanes of a vector ----

// exp(t) for t <= 0 or -inf (0), the sums of the forward: no special-value fix-ups. A NaN t gives
// some number; callers only use it in rows they mark NaN anyway (a NaN logit makes the max NaN).
template <typename acc_t>
inline Vectorized<acc_t> vexp_nonpos(const Vectorized<acc_t>& t) {
  return t.exp();
}
// float, AVX2 table (kOwnFloatMath): exp(t) = 2^n exp(r), n = round(t / ln 2) (added to a 1.5 * 2^23
// + 127 bias, so that the float's low bits hold n + 127, the exponent of 2^n), r = t - n ln 2 in one
// fma with ln 2 rounded to float (an error of 1.9e-9 n in r: one operation fewer than the two-step
// reduction, which was within 1.03 ULP everywhere), exp(r) = 1 + P with P = r + r^2 Q(r), Q of degree
// 4 fitted for this file (least squares on Chebyshev nodes of [-ln 2 / 2, ln 2 / 2], reweighted
// toward the minimax relative error), and 2^n exp(r) = 2^n + 2^n P in one fma (one rounding). Within
// 1.12 ULP of exp over [-10, 0] and 4.5 ULP over [-87.34, -10), where exp(t) < 5e-5 is a term next
// to the sum's exp(0) = 1 (both checked exhaustively against double exp). t is clamped to
// ln(2^-126) first, so below -87.34 (-inf included) the result is 2^-126 instead of 0: next to the
// sum's largest term, exp(0) = 1, that is nothing, and a gradient term p c - s w rounds to -s w
// unless s w is 0 (alpha = 0), where it leaves about 1e-38 c instead of 0. A NaN t gives NaN or
// garbage; callers mark such rows NaN (a NaN logit makes the sum of t NaN). 12 vector operations,
// against 22 for ATen's exp_u20 (about 20 ULP), which the AVX-512 and DEFAULT tables keep.
#if defined(CPU_CAPABILITY_AVX2)
template <>
inline Vectorized<float> vexp_nonpos(const Vectorized<float>& t) {
  using Vec = Vectorized<float>;
  const Vec bias(12583039.0f);                                 // 1.5 * 2^23 + 127
  const Vec x = at::vec::clamp_min(t, Vec(-87.3365448f));      // ln(2^-126)
  const Vec fx = at::vec::fmadd(x, Vec(1.44269504f), bias);
  const Vec n = fx - bias;
  const Vec r = at::vec::fmadd(n, Vec(-0.693147182f), x);
  Vec q(0.00139088896f);
  for (const float c : {0.00836811467f, 0.0416667228f, 0.166665271f, 0.500000002f}) q = at::vec::fmadd(q, r, Vec(c));
  const Vec scale(_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(fx), 23)));  // 2^n
  return at::vec::fmadd(at::vec::fmadd(r * r, q, r), scale, scale);
}
#else
template <>
inline Vectorized<float> vexp_nonpos(const Vectorized<float>& t) {
  return t.exp_u20();  // about 20 ULP, 0 below -87.3 (-inf included)
}
#endif

// ---- the lane math: W rows in the lanes of a vector, column k of the rows one vector. Shared by
// Lanes (columns in a buffer) and the AVX2 training kernel (columns in registers): the same
// expressions, so both give the same bits.

// Per-lane label data: label as acc_t (-1 where the lane is spare or ignored), w_y, drop mask
// (any_drop: some lane has it).
template <typename acc_t>
struct LaneLabels {
  Vectorized<acc_t> vy, vwy, drop;
  bool any_drop;
};
// The W labels ys[0..W) of which the first m are real; weights w (or null).
template <typename acc_t>
LSMIA_INLINE LaneLabels<acc_t> lane_label_data(const int64_t* ys, int64_t m, int64_t ignore_index, const acc_t* w) {
  using Vec = Vectorized<acc_t>;
  LaneLabels<acc_t> lab;
  lab.vy = lane_labels<acc_t>(ys, m, ignore_index, lab.any_drop);
  const Vec zero(acc_t(0));
  lab.drop = lab.vy == Vec(acc_t(-1));
  Vec wy(acc_t(1));
  if (w != nullptr) {
    const Vec iy = Vec::blendv(lab.vy, zero, lab.drop);  // dropped: class 0
    wy = at::vec::gather<sizeof(acc_t)>(w, at::vec::convert_to_int_of_same_size(iy));
  }
  lab.vwy = Vec::blendv(wy, zero, lab.drop);
  return lab;
}

// The forward's reductions over the K columns col(k) of W rows: vmax, vs = sum exp(z - vmax), vd =
// sum w_k (z_k - vmax), vty = z_y - vmax (0 in dropped lanes; with pick, picked by a compare per
// column: a gather of z_y from columns just stored would wait for those stores; without, left 0 for
// a caller that gathers z_y from the rows in memory), bad = the lanes whose max is not finite.
// keep(k, e) receives exp(z_k - vmax) (for the gradient, or nothing).
template <typename acc_t>
struct LaneSums {
  Vectorized<acc_t> vmax, vs, vd, vty, bad;
};
template <typename acc_t, typename Col, typename Keep>
LSMIA_INLINE LaneSums<acc_t> lane_sums(int64_t K, const acc_t* w, bool smooth, const Vectorized<acc_t>& vy, bool pick,
                                       Col col, Keep keep) {
  using Vec = Vectorized<acc_t>;
  // clamp_min is one max instruction; a NaN logit may leave vmax below the row's max, but its
  // t = z - vmax is NaN, and so is vt, the sum of the t. Two accumulators per sum (AVX2 table,
  // kOwnFloatMath) halve its dependency chain; the max is exact in any order.
  constexpr int64_t kSums = kOwnFloatMath ? 2 : 1;
  const Vec ninf(-std::numeric_limits<acc_t>::infinity()), zero(acc_t(0));
  LaneSums<acc_t> r;
  Vec m0(ninf), m1(ninf);
  int64_t k = 0;
  for (; k + 1 < K; k += 2) {
    m0 = at::vec::clamp_min(col(k), m0);
    m1 = at::vec::clamp_min(col(k + 1), m1);
  }
  if (k < K) m0 = at::vec::clamp_min(col(k), m0);
  r.vmax = at::vec::clamp_min(m0, m1);
  Vec s[kSums], ts[kSums];
  for (int64_t u = 0; u < kSums; ++u) s[u] = ts[u] = zero;
  r.vd = r.vty = zero;
  const bool weighted = smooth && w != nullptr;
  // unrolled: with K fixed at compile time (KC) the accumulator and the class k are constants
#pragma GCC unroll 16
  for (k = 0; k < K; ++k) {
    const Vec t = col(k) - r.vmax;
    const Vec e = vexp_nonpos(t);
    keep(k, e);
    s[k % kSums] += e;
    ts[k % kSums] += t;
    if (weighted) r.vd += t * Vec(w[k]);
    if (pick) r.vty = r.vty | (t & (vy == Vec(static_cast<acc_t>(k))));
  }
  r.vs = s[0];
  Vec vt = ts[0];
  if constexpr (kSums == 2) {
    r.vs += s[1];
    vt += ts[1];
  }
  if (!weighted) r.vd = vt;
  r.bad = ((r.vmax - r.vmax) != zero) | (vt != vt);  // NaN, +inf or only -inf: the row is NaN
  return r;
}

// ls_ce_finish_row on W lanes: the loss (0 in dropped lanes, NaN in bad ones); vlog = log vs.
template <typename scalar_t, typename acc_t = at::opmath_type<scalar_t>>
LSMIA_INLINE Vectorized<acc_t> lane_loss(const Call<scalar_t>& a, const LaneLabels<acc_t>& lab, const LaneSums<acc_t>& r,
                                         Vectorized<acc_t>& vlog) {
  using Vec = Vectorized<acc_t>;
  vlog = vlog_pos(r.vs);  // vs >= 1 where the max is finite
  const Vec nll = vlog - r.vty;
  Vec vloss = lab.vwy * nll;
  if (a.alpha != acc_t(0)) vloss = Vec(a.keep) * vloss + Vec(a.smooth) * (Vec(a.W) * vlog - r.vd);
  vloss = Vec::blendv(vloss, Vec(std::numeric_limits<acc_t>::quiet_NaN()), r.bad);
  return Vec::blendv(vloss, Vec(acc_t(0)), lab.drop);
}

// Per-lane factors of the gradient g (c p_k - smooth w_k) - g hit [k == y] for upstream gradients
// g: vgc = g c (divided by s1 when p_k is exp(z_k - max) with sum s1: from_exp; NaN in bad lanes),
// vgh = g hit, vgs = g smooth; g is 0 in dropped lanes.
template <typename acc_t>
struct GradFactors {
  Vectorized<acc_t> vgc, vgh, vgs;
};
template <typename scalar_t, typename acc_t = at::opmath_type<scalar_t>>
LSMIA_INLINE GradFactors<acc_t> grad_factors(const Call<scalar_t>& a, const LaneLabels<acc_t>& lab,
                                             const Vectorized<acc_t>& g, bool from_exp,
                                             const Vectorized<acc_t>& s1, const Vectorized<acc_t>& bad) {
  using Vec = Vectorized<acc_t>;
  const Vec vg = Vec::blendv(g, Vec(acc_t(0)), lab.drop);
  const Vec hit = Vec(a.keep) * lab.vwy;
  GradFactors<acc_t> f;
  f.vgc = vg * (hit + Vec(a.smooth * a.W));
  f.vgh = vg * hit;
  f.vgs = vg * Vec(a.smooth);
  if (from_exp) f.vgc = Vec::blendv(f.vgc / s1, Vec(std::numeric_limits<acc_t>::quiet_NaN()), bad);
  return f;
}
// p vgc - s (s: vgs, times w_k with class weights) as one explicit fmsub (one rounding; without FMA,
// as on DEFAULT, a * b - c). Left to GCC's contraction (-ffp-contract=fast, C++'s default), p vgc - vgs
// w_k was an fmsub in the lane path but p vgc rounded and then an fnmadd in the register kernel
// (train_in_registers): the two paths' weighted gradients differed in the last bit.
template <typename acc_t>
LSMIA_INLINE Vectorized<acc_t> grad_column_scaled(const Vectorized<acc_t>& p, const GradFactors<acc_t>& f,
                                                  const Vectorized<acc_t>& s) {
  return at::vec::fmsub(p, f.vgc, s);
}
// Column k of the gradient without class weights, from p_k (any lane may then be dropped); the
// second form leaves out the label's term - g hit, for a caller that subtracts it from the rows.
template <typename acc_t>
LSMIA_INLINE Vectorized<acc_t> grad_column_unlabelled(const Vectorized<acc_t>& p, const GradFactors<acc_t>& f) {
  return grad_column_scaled(p, f, f.vgs);
}
template <typename acc_t>
LSMIA_INLINE Vectorized<acc_t> grad_column(const Vectorized<acc_t>& p, const GradFactors<acc_t>& f,
                                           const Vectorized<acc_t>& vy, int64_t k) {
  return grad_column_unlabelled(p, f) - (f.vgh & (vy == Vectorized<acc_t>(static_cast<acc_t>(k))));
}
// Column k in general: class weights w (or null), the label's term by a compare, dropped lanes 0
// (even where exp overflowed).
template <typename acc_t>
LSMIA_INLINE Vectorized<acc_t> grad_column_any(const Vectorized<acc_t>& p, const GradFactors<acc_t>& f, const acc_t* w,
                                               const LaneLabels<acc_t>& lab, int64_t k) {
  using Vec = Vectorized<acc_t>;
  const Vec zero(acc_t(0));
  Vec e = grad_column_scaled(p, f, w == nullptr ? f.vgs : f.vgs * Vec(w[k]));
  e = e - Vec::blendv(zero, f.vgh, lab.vy == Vec(static_cast<acc_t>(k)));
  return lab.any_drop ? Vec::blendv(e, zero, lab.drop) : e;
}
// The label's term - g hit of W gradient rows o + j K (no lane dropped: labels ys[j] in [0, K)), after
// grad_column_unlabelled: W scalar subtractions instead of a compare, and and subtraction per class
// (the same bits as grad_column).
template <typename acc_t>
LSMIA_INLINE void subtract_label_term(acc_t* o, int64_t K, const int64_t* ys, const GradFactors<acc_t>& f) {
  constexpr int64_t W = Vectorized<acc_t>::size();
  alignas(64) acc_t gh[W];
  f.vgh.store(gh);
  for (int64_t j = 0; j < W; ++j) o[j * K + ys[j]] -= gh[j];
}
// z_y - vmax from the labelled logits zy picked in memory (pick_labelled): 0 in dropped lanes, as the
// compares of lane_sums give it.
template <typename acc_t>
LSMIA_INLINE void set_picked(LaneSums<acc_t>& r, const LaneLabels<acc_t>& lab, const Vectorized<acc_t>& zy) {
  r.vty = Vectorized<acc_t>::blendv(zy - r.vmax, Vectorized<acc_t>(acc_t(0)), lab.drop);
}

// Per-thread constants of the lane path: gather indices of W whole (N, K) rows, and of the transpose
// of a K x W column block back into W contiguous gradient rows.
template <typename scalar_t>
struct LaneCtx {
  using acc_t = at::opmath_type<scalar_t>;
  using int_t = at::vec::int_same_size_t<acc_t>;
  static constexpr int64_t W = Vectorized<acc_t>::size();
  alignas(64) int_t row_idx[W];
  bool row_gather = false;  // M == 1 and the rows' offsets fit int_t
  bool row_pick = false;    // and so do they plus any class (pick_labelled)
  bool out_gather = false;  // gradient rows contiguous (M == 1, not in place)
  Buffer<int_t> out_idx;

  LaneCtx(const Call<scalar_t>& a, bool grad)
      : out_idx(std::is_same_v<scalar_t, acc_t> && grad && a.c.M == 1 && !a.in_place ? a.c.K * W : 0) {
    if constexpr (std::is_same_v<scalar_t, acc_t>) {
      const int64_t K = a.c.K;
      row_gather = a.c.M == 1 && (W - 1) * a.c.xs0 <= static_cast<int64_t>(std::numeric_limits<int_t>::max());
      row_pick = row_gather && (W - 1) * a.c.xs0 + K - 1 <= static_cast<int64_t>(std::numeric_limits<int_t>::max());
      for (int64_t j = 0; j < W; ++j) row_idx[j] = static_cast<int_t>(row_gather ? j * a.c.xs0 : 0);
      out_gather = out_idx.get() != nullptr;
      for (int64_t i = 0; out_gather && i < K * W; ++i) out_idx.get()[i] = static_cast<int_t>((i % K) * W + i / K);
    }
  }
};

// KC: the number of classes when it is a compile-time constant (kFixedK), 0 when it is a.c.K.
template <typename scalar_t, int64_t KC = 0>
struct Lanes {
  using acc_t = at::opmath_type<scalar_t>;
  using Vec = Vectorized<acc_t>;
  using int_t = at::vec::int_same_size_t<acc_t>;
  static constexpr int64_t W = Vec::size();
  static constexpr int64_t kCols = KC != 0 ? KC : kLaneMaxK;
  static int64_t classes(const Call<scalar_t>& a) { return KC != 0 ? KC : a.c.K; }
  alignas(64) acc_t cols[kCols * W];  // column k of the group at cols + k * W
  int64_t off[W];                          // logits offset of each lane's row (generic loads only)
  int64_t y[W];                            // labels of the lanes, where they are not adjacent in memory
  const int64_t* ys;                       // the W labels: y, or the label tensor itself (a full group
                                           // of adjacent labels: no copy, whose 8-byte stores would stall
                                           // the 32-byte loads of lane_labels)
  int64_t r0, m;                           // first row, real lanes (spare lanes repeat the last row)
  const scalar_t* rows;                    // W whole rows of unit class stride at rows + cx.row_idx[j]
                                           // (z_y is then picked from them, pick_labelled), or null

  // Labels of the lanes: ys = the W labels from `first` when they are adjacent and all real, else a copy.
  void load_labels(const int64_t* first, int64_t stride) {
    if (stride == 1 && m == W) {
      ys = first;
      return;
    }
    for (int64_t j = 0; j < W; ++j) y[j] = first[std::min(j, m - 1) * stride];
    ys = y;
  }

  LSMIA_INLINE void load(const Call<scalar_t>& a, const LaneCtx<scalar_t>& cx, int64_t first, int64_t count) {
    r0 = first;
    m = count;
    rows = nullptr;
    const int64_t K = classes(a), cs = a.c.xs1;
    if constexpr (std::is_same_v<scalar_t, acc_t>) {
      if (cx.row_gather && m == W) {  // W plain rows: transposed, or column k is one gather
        const scalar_t* x = a.x + r0 * a.c.xs0;
        if (cs == 1 && cx.row_pick) rows = x;
        // a transpose of K < 4 classes reads 4 - K values past the last row: only inside the tensor
        const bool fits = K >= 4 || (r0 + W - 1) * a.c.xs0 + 4 <= (a.c.N - 1) * a.c.xs0 + K;
        if (!(cs == 1 && fits && load_cols_transposed(x, a.c.xs0, K, cols))) {
          const Vectorized<int_t> vi = Vectorized<int_t>::loadu(cx.row_idx);
          for (int64_t k = 0; k < K; ++k) at::vec::gather<sizeof(acc_t)>(x + k * cs, vi).store(cols + k * W);
        }
        load_labels(a.c.y + r0 * a.c.ys0, a.c.ys0);
        return;
      }
      if (a.adjacent(r0, m, W, false)) {  // W adjacent rows of one map: column k is one load
        int64_t n, j;
        a.split(r0, n, j);
        const scalar_t* x = a.x + n * a.c.xs0 + j * a.c.xs2;
        for (int64_t k = 0; k < K; ++k) Vec::loadu(x + k * cs).store(cols + k * W);
        load_labels(a.c.y + n * a.c.ys0 + j * a.c.ys1, a.c.ys1);
        return;
      }
    }
    for (int64_t j = 0; j < W; ++j) {
      const int64_t r = r0 + std::min(j, m - 1);
      off[j] = a.x_off(r);
      y[j] = a.label(r);
    }
    ys = y;
    const scalar_t* x = a.x + off[0];
    if constexpr (std::is_same_v<scalar_t, acc_t>) {
      int64_t lo = 0, hi = 0;
      for (int64_t j = 1; j < W; ++j) {
        lo = std::min(lo, off[j] - off[0]);
        hi = std::max(hi, off[j] - off[0]);
      }
      if (lo >= std::numeric_limits<int_t>::min() && hi <= std::numeric_limits<int_t>::max()) {
        alignas(64) int_t idx[W];
        for (int64_t j = 0; j < W; ++j) idx[j] = static_cast<int_t>(off[j] - off[0]);
        const Vectorized<int_t> vi = Vectorized<int_t>::loadu(idx);
        for (int64_t k = 0; k < K; ++k) at::vec::gather<sizeof(acc_t)>(x + k * cs, vi).store(cols + k * W);
        return;
      }
    }
    for (int64_t k = 0; k < K; ++k)
      for (int64_t j = 0; j < W; ++j) cols[k * W + j] = static_cast<acc_t>(a.x[off[j] + k * cs]);
  }

  using Labels = LaneLabels<acc_t>;
  LSMIA_INLINE Labels labels(const Call<scalar_t>& a) const { return lane_label_data<acc_t>(ys, m, a.c.ignore_index, a.w); }

  // The forward in two phases (lanes_pass interleaves two groups phase by phase, so that their
  // dependency chains overlap). reduce: lane_sums of the columns; keep_exp: the columns become
  // exp(z - vmax) for the gradient. finish: the loss (and, with lse != null, the lse) of the real
  // lanes' rows.
  LaneSums<acc_t> sums;
  LSMIA_INLINE void reduce(const Call<scalar_t>& a, const LaneCtx<scalar_t>& cx, const Labels& lab, bool keep_exp) {
    Vec zy;
    const bool picked = rows != nullptr && pick_labelled(rows, Vectorized<int_t>::loadu(cx.row_idx), lab.vy, zy);
    sums = lane_sums<acc_t>(
        classes(a), a.w, a.alpha != acc_t(0), lab.vy, !picked,
        [&](int64_t k) LSMIA_INLINE_LAMBDA { return Vec::loadu(cols + k * W); },
        [&](int64_t k, const Vec& e) LSMIA_INLINE_LAMBDA {
          if (keep_exp) e.store(cols + k * W);
        });
    if (picked) set_picked(sums, lab, zy);
  }
  LSMIA_INLINE void finish(const Call<scalar_t>& a, const Labels& lab, acc_t* loss, double* lse) const {
    Vec vlog;
    lane_loss(a, lab, sums, vlog).store(loss + r0, m);
    if (lse == nullptr) return;
    const Vec zero(acc_t(0));
    alignas(64) acc_t mx[W], ls[W], bd[W], dr[W];
    sums.vmax.store(mx);
    vlog.store(ls);
    Vec::blendv(zero, Vec(acc_t(1)), sums.bad).store(bd);
    Vec::blendv(zero, Vec(acc_t(1)), lab.drop).store(dr);  // real lanes: ignored rows
    for (int64_t j = 0; j < m; ++j) {
      lse[r0 + j] = dr[j] != acc_t(0)   ? 0.0
                    : bd[j] != acc_t(0) ? std::numeric_limits<double>::quiet_NaN()
                                        : static_cast<double>(mx[j]) + static_cast<double>(ls[j]);
    }
  }

  // Gradient of the real lanes' rows scaled by vg (per lane), written to a.out. from_exp: the
  // columns hold exp(z - max) with per-lane sum s1 (reduce(keep_exp)); otherwise they hold z and
  // p = exp((z - s1) - s2) with s1 + s2 = lse.
  LSMIA_INLINE void gradient(const Call<scalar_t>& a, const LaneCtx<scalar_t>& cx, const Labels& lab, bool from_exp, const Vec& s1,
                const Vec& s2, const Vec& g, const Vec& bad) const {
    const int64_t K = classes(a);
    const GradFactors<acc_t> f = grad_factors(a, lab, g, from_exp, s1, bad);
    const int64_t ocs = a.out_cs();
    const bool adjacent = std::is_same_v<scalar_t, acc_t> && a.adjacent(r0, m, W, true);
    const bool packed = !adjacent && a.packed_rows(m, W, true);
    int64_t oo[W];
    if (!adjacent && !packed) {
      for (int64_t j = 0; j < W; ++j) oo[j] = a.out_off(r0 + std::min(j, m - 1));
    }
    alignas(64) acc_t tmp[kCols * W];
    scalar_t* o0 = a.out + (adjacent || packed ? a.out_off(r0) : 0);
    if (packed && from_exp && a.w == nullptr && !lab.any_drop) {  // the training path's usual case
      if constexpr (std::is_same_v<scalar_t, acc_t>) {
        if (rows_transposable<scalar_t>(K)) {  // the label's term after the transpose
#pragma GCC unroll 16
          for (int64_t k = 0; k < K; ++k) grad_column_unlabelled(Vec::loadu(cols + k * W), f).store(tmp + k * W);
          store_rows_transposed(tmp, K, o0, K);
          subtract_label_term(o0, K, ys, f);
          return;
        }
      }
#pragma GCC unroll 16
      for (int64_t k = 0; k < K; ++k) grad_column(Vec::loadu(cols + k * W), f, lab.vy, k).store(tmp + k * W);
    } else {
      for (int64_t k = 0; k < K; ++k) {
        const Vec c = Vec::loadu(cols + k * W);
        const Vec e = grad_column_any(from_exp ? c : vexp(c - s1 - s2), f, a.w, lab, k);
        if (adjacent) {
          e.store(reinterpret_cast<acc_t*>(o0 + k * ocs), m);
        } else if (packed) {
          e.store(tmp + k * W);
        } else {
          e.store(tmp);
          for (int64_t j = 0; j < m; ++j) a.out[oo[j] + k * ocs] = static_cast<scalar_t>(tmp[j]);
        }
      }
    }
    if (!packed) return;
    if constexpr (std::is_same_v<scalar_t, acc_t>) {
      if (store_rows_transposed(tmp, K, o0, K)) return;
      if (cx.out_gather) {  // transpose back: gradient vector v of the W rows is one gather of the block
        const int_t* idx = cx.out_idx.get();
        for (int64_t v = 0; v < K; ++v) {
          at::vec::gather<sizeof(acc_t)>(tmp, Vectorized<int_t>::loadu(idx + v * W)).store(o0 + v * W);
        }
        return;
      }
    }
    for (int64_t j = 0; j < W; ++j)
      for (int64_t k = 0; k < K; ++k) o0[j * K + k] = static_cast<scalar_t>(tmp[k * W + j]);
  }
};

// ---- the AVX2 and AVX-512 training pass with the columns in registers ----
#if defined(CPU_CAPABILITY_AVX2) || defined(CPU_CAPABILITY_AVX512)
LSMIA_AVX512_QUIET_BEGIN
constexpr bool kTrainInRegisters = true;
// Float32, KC >= 4 classes fixed at compile time, W = 8 (AVX2, ymm) or 16 (AVX-512, zmm) whole rows
// stored back to back (logits and gradient, M == 1): rows_to_cols puts the group's columns in
// registers, they become exp(z - max) and then the gradient there, and cols_to_rows writes them back;
// Lanes would store and reload them between the phases (a column buffer: K is not fixed there, or the
// layout takes gathers). The lane math is Lanes' on the same Vectorized<float> (lane_sums, lane_loss,
// grad_factors, the grad columns; z_y picked as Lanes picks it): the same bits, and on AVX-512 still
// exp_u20 and one accumulator (kOwnFloatMath). Groups [begin, end) of full rows; returns the first
// group it left (a last, partial one) to Lanes.
// G groups from row r0, phase by phase (their dependency chains overlap; the registers of the
// columns may spill). kWeighted: a.w is not null (a constant, so that no class loop tests it).
template <int64_t KC, int64_t G, bool kWeighted>
LSMIA_INLINE void train_groups_in_registers(const Call<float>& a, int64_t r0, const Vectorized<float>& scale) {
  using Vec = Vectorized<float>;
  constexpr int64_t W = Vec::size();
  const float* w = kWeighted ? a.w : nullptr;
  const auto row_idx = Vectorized<int32_t>::arange(0, static_cast<int32_t>(KC));  // offsets of the rows
  Vec c[G][KC], zy[G];
  bool picked[G];
  int64_t y[G][W];
  const int64_t* ys[G];
  LaneLabels<float> lab[G];
  LaneSums<float> sums[G];
#pragma GCC unroll 4
  for (int64_t u = 0; u < G; ++u) {
    const float* x = a.x + (r0 + u * W) * KC;
    // k < KC always; the test tells GCC, which otherwise warns about the 8-wide block that K < 8 never runs
    rows_to_cols(x, KC, KC, [&](int64_t k, FloatReg v) LSMIA_INLINE_LAMBDA {
      if (k < KC) c[u][k] = v;
    });
    ys[u] = a.c.y + (r0 + u * W) * a.c.ys0;
    if (a.c.ys0 != 1) {
      for (int64_t j = 0; j < W; ++j) y[u][j] = ys[u][j * a.c.ys0];
      ys[u] = y[u];
    }
    lab[u] = lane_label_data<float>(ys[u], W, a.c.ignore_index, w);
    picked[u] = pick_labelled(x, row_idx, lab[u].vy, zy[u]);  // AVX2: a gather; AVX-512: compares below
  }
#pragma GCC unroll 4
  for (int64_t u = 0; u < G; ++u) {
    sums[u] = lane_sums<float>(
        KC, w, a.alpha != 0.0f, lab[u].vy, !picked[u], [&](int64_t k) LSMIA_INLINE_LAMBDA { return c[u][k]; },
        [&](int64_t k, const Vec& e) LSMIA_INLINE_LAMBDA { c[u][k] = e; });
    if (picked[u]) set_picked(sums[u], lab[u], zy[u]);
  }
#pragma GCC unroll 4
  for (int64_t u = 0; u < G; ++u) {
    Vec vlog;
    lane_loss(a, lab[u], sums[u], vlog).store(static_cast<float*>(a.c.loss) + r0 + u * W);
  }
#pragma GCC unroll 4
  for (int64_t u = 0; u < G; ++u) {
    const GradFactors<float> f = grad_factors(a, lab[u], scale, true, sums[u].vs, sums[u].bad);
    float* o = a.out + (r0 + u * W) * KC;
    const auto col = [&](int64_t k) LSMIA_INLINE_LAMBDA { return FloatReg(c[u][k]); };
    if (!kWeighted && !lab[u].any_drop) {  // the usual case: the label's term after the transpose
#pragma GCC unroll 16
      for (int64_t k = 0; k < KC; ++k) c[u][k] = grad_column_unlabelled(c[u][k], f);
      cols_to_rows(col, KC, o, KC);
      subtract_label_term(o, KC, ys[u], f);
    } else {
#pragma GCC unroll 16
      for (int64_t k = 0; k < KC; ++k) c[u][k] = grad_column_any(c[u][k], f, w, lab[u], k);
      cols_to_rows(col, KC, o, KC);
    }
  }
}

// Float32, KC >= 4 classes fixed at compile time, W = 8 whole rows stored back to back (logits and
// gradient, M == 1): rows_to_cols puts a group's columns in registers, they become exp(z - max)
// and then the gradient there, and cols_to_rows writes them back; Lanes would store and reload them
// between the phases (a column buffer: K is not fixed there, or the layout takes gathers). The lane
// math is Lanes' (lane_sums, lane_loss, grad_factors, the grad columns): the same bits. Groups
// [begin, end) of full rows; returns the first group it left (a last, partial one) to Lanes.
template <int64_t KC>
LSMIA_NOINLINE int64_t train_in_registers(const Call<float>& a, int64_t begin, int64_t end) {
  using Vec = Vectorized<float>;
  constexpr int64_t W = Vec::size();
  static_assert(KC >= 4, "rows_to_cols of fewer classes reads past a row");
  if (!a.packed_rows(W, W, false)) return begin;  // in place too: the rows are read before the stores
  end = std::min(end, a.c.N / W);
  const Vec scale(static_cast<float>(a.c.grad_scale));
  const auto run = [&](auto weighted) {
    int64_t gi = begin;
    for (; gi + kInterleave <= end; gi += kInterleave) {
      train_groups_in_registers<KC, kInterleave, weighted>(a, gi * W, scale);
    }
    for (; gi < end; ++gi) train_groups_in_registers<KC, 1, weighted>(a, gi * W, scale);
  };
  if (a.w == nullptr) {
    run(std::false_type{});
  } else {
    run(std::true_type{});
  }
  return std::max(begin, end);
}
LSMIA_AVX512_QUIET_END
#else
constexpr bool kTrainInRegisters = false;
#endif

// One pass of the lane path: the forward (kFwd: loss, and lse unless kGrad), the gradient (kGrad:
// from the forward's exponentials when kFwd, else from the saved lse), or both.
template <typename scalar_t, int64_t KC, bool kFwd, bool kGrad>
void lanes_pass(const Call<scalar_t>& call) {
  using L = Lanes<scalar_t, KC>;
  using acc_t = typename L::acc_t;
  using Vec = typename L::Vec;
  const int64_t R = call.c.N * call.c.M, groups = (R + L::W - 1) / L::W;
  const int64_t grain = std::max<int64_t>(1, 16384 / (call.c.K * L::W));
  acc_t* loss = static_cast<acc_t*>(call.c.loss);
  double* lse = static_cast<double*>(call.c.lse);
  const LossBlocks<acc_t> blocks(call.c, groups, L::W, grain);
  at::parallel_for(0, blocks.count(), blocks.grain(grain), [&](int64_t b0, int64_t b1) {
    const Call<scalar_t> a = call;  // this thread's own copy: see Call::c
    const LaneCtx<scalar_t> cx(a, kGrad);
    L lanes[kInterleave];  // groups per step, phase by phase: their dependency chains overlap
    typename L::Labels lab[kInterleave];
    alignas(64) acc_t hi[L::W], lo[L::W], g[L::W];
    const Vec scale(static_cast<acc_t>(a.c.grad_scale)), zero(acc_t(0));
    blocks.each(b0, b1, [&](int64_t begin, int64_t end) LSMIA_INLINE_LAMBDA {
#if defined(CPU_CAPABILITY_AVX2) || defined(CPU_CAPABILITY_AVX512)
      if constexpr (kFwd && kGrad && std::is_same_v<scalar_t, float> && KC >= 4) {
        begin = train_in_registers<KC>(a, begin, end);
      }
#endif
      for (int64_t gi = begin; gi < end; gi += kInterleave) {
        const int64_t step = std::min(kInterleave, end - gi);
        for (int64_t u = 0; u < step; ++u) {
          const int64_t r0 = (gi + u) * L::W;
          lanes[u].load(a, cx, r0, std::min(L::W, R - r0));
          lab[u] = lanes[u].labels(a);
        }
        if constexpr (kFwd) {
          for (int64_t u = 0; u < step; ++u) lanes[u].reduce(a, cx, lab[u], kGrad);
          for (int64_t u = 0; u < step; ++u) lanes[u].finish(a, lab[u], loss, lse);
        }
        for (int64_t u = 0; kGrad && u < step; ++u) {
          L& l = lanes[u];
          if constexpr (kFwd) {
            l.gradient(a, cx, lab[u], true, l.sums.vs, zero, scale, l.sums.bad);
          } else {
            for (int64_t j = 0; j < L::W; ++j) {
              const int64_t r = l.r0 + std::min(j, l.m - 1);
              g[j] = a.upstream(r);
              lsmia::ls_ce_split_lse(lse[r], hi[j], lo[j]);
            }
            l.gradient(a, cx, lab[u], false, Vec::loadu(hi), Vec::loadu(lo), Vec::loadu(g), zero);
          }
        }
      }
    });
  });
  blocks.finish();
}

// The three passes are separate instantiations: no test of fwd / grad per group or per column.
// kTrainOnly: the caller runs only the training pass (fwd && grad) with this KC; the others are not
// instantiated.
template <typename scalar_t, int64_t KC = 0, bool kTrainOnly = false>
void lanes_run(const Call<scalar_t>& a, bool fwd, bool grad) {
  if (kTrainOnly || (fwd && grad)) return lanes_pass<scalar_t, KC, true, true>(a);
  if constexpr (!kTrainOnly) {
    if (fwd) return lanes_pass<scalar_t, KC, true, false>(a);
    lanes_pass<scalar_t, KC, false, true>(a);
  }
}

// ---- many classes: row by row ----

// Max of a row, NaN if it holds a NaN (four accumulators: the row is read from memory here).
template <typename acc_t>
inline acc_t row_max(const acc_t* x, int64_t K) {
  using Vec = Vectorized<acc_t>;
  constexpr int64_t W = Vec::size();
  const Vec ninf(-std::numeric_limits<acc_t>::infinity());
  Vec m0(ninf), m1(ninf), m2(ninf), m3(ninf);
  int64_t k = 0;
  for (; k + 4 * W <= K; k += 4 * W) {
    m0 = at::vec::maximum(m0, Vec::loadu(x + k));
    m1 = at::vec::maximum(m1, Vec::loadu(x + k + W));
    m2 = at::vec::maximum(m2, Vec::loadu(x + k + 2 * W));
    m3 = at::vec::maximum(m3, Vec::loadu(x + k + 3 * W));
  }
  for (; k + W <= K; k += W) m0 = at::vec::maximum(m0, Vec::loadu(x + k));
  if (k < K) m1 = at::vec::maximum(m1, Vec::set(ninf, Vec::loadu(x + k, K - k), K - k));
  m0 = at::vec::maximum(at::vec::maximum(m0, m1), at::vec::maximum(m2, m3));
  return at::vec::vec_reduce_all<acc_t>([](Vec& p, Vec& q) { return at::vec::maximum(p, q); }, m0);
}

// With mx = the (finite) max of the row: s = sum exp(x - mx), d = sum w_k (x_k - mx) (smooth
// only); e != null also receives exp(x - mx) (e may be x).
template <typename acc_t>
inline void row_sums(const acc_t* x, int64_t K, const acc_t* w, acc_t mx, acc_t* e, acc_t& s, acc_t& d,
                     bool smooth) {
  using Vec = Vectorized<acc_t>;
  constexpr int64_t W = Vec::size();
  const Vec vm(mx), zero(acc_t(0));
  Vec s0(zero), s1(zero), d0(zero), d1(zero);
  int64_t k = 0;
  for (; k + 2 * W <= K; k += 2 * W) {
    const Vec t0 = Vec::loadu(x + k) - vm, t1 = Vec::loadu(x + k + W) - vm;
    const Vec e0 = vexp_nonpos(t0), e1 = vexp_nonpos(t1);
    if (e != nullptr) {
      e0.store(e + k);
      e1.store(e + k + W);
    }
    s0 += e0;
    s1 += e1;
    if (smooth) {
      d0 = w == nullptr ? d0 + t0 : d0 + t0 * Vec::loadu(w + k);
      d1 = w == nullptr ? d1 + t1 : d1 + t1 * Vec::loadu(w + k + W);
    }
  }
  for (; k < K; k += W) {
    const int64_t n = std::min(W, K - k);
    const Vec t = Vec::loadu(x + k, n) - vm;
    Vec ek = vexp_nonpos(t), dt = w == nullptr ? t : t * Vec::loadu(w + k, n);
    if (n < W) {
      ek = Vec::set(zero, ek, n);
      dt = Vec::set(zero, dt, n);
    }
    if (e != nullptr) ek.store(e + k, n);
    s0 += ek;
    if (smooth) d0 += dt;
  }
  const auto sum = [](Vec& p, Vec& q) { return p + q; };
  s = at::vec::vec_reduce_all<acc_t>(sum, s0 + s1);
  d = at::vec::vec_reduce_all<acc_t>(sum, d0 + d1);
}

// o[k] = g (c exp(x_k - lse) - smooth w_k) - g hit [k == y]; o may be x.
template <typename acc_t>
inline void row_gradient(const acc_t* x, int64_t K, const acc_t* w, double lse, acc_t g,
                         const lsmia::LsCeGradRow<acc_t>& f, int64_t y, acc_t* o) {
  using Vec = Vectorized<acc_t>;
  constexpr int64_t W = Vec::size();
  acc_t hi, lo;
  lsmia::ls_ce_split_lse(lse, hi, lo);
  const Vec vh(hi), vlo(lo), vgc(g * f.c), vgs(g * f.smooth);
  for (int64_t k = 0; k < K; k += W) {
    const int64_t n = std::min(W, K - k);
    const Vec s = w == nullptr ? vgs : vgs * Vec::loadu(w + k, n);
    (vexp(Vec::loadu(x + k, n) - vh - vlo) * vgc - s).store(o + k, n);
  }
  o[y] -= g * f.hit;
}

// e holds exp(x_k - max) with sum s: o[k] = g (c e_k / s - smooth w_k) - g hit [k == y]; o may be e.
template <typename acc_t>
inline void row_gradient_from_exp(const acc_t* e, int64_t K, const acc_t* w, acc_t s, acc_t g,
                                  const lsmia::LsCeGradRow<acc_t>& f, int64_t y, acc_t* o) {
  using Vec = Vectorized<acc_t>;
  constexpr int64_t W = Vec::size();
  const Vec va(g * f.c / s), vgs(g * f.smooth);
  int64_t k = 0;
  if (w == nullptr) {
    for (; k + W <= K; k += W) (Vec::loadu(e + k) * va - vgs).store(o + k);
  }
  for (; k < K; k += W) {
    const int64_t n = std::min(W, K - k);
    const Vec sw = w == nullptr ? vgs : vgs * Vec::loadu(w + k, n);
    (Vec::loadu(e + k, n) * va - sw).store(o + k, n);
  }
  o[y] -= g * f.hit;
}

template <typename scalar_t>
void rows_run(const Call<scalar_t>& a, bool fwd, bool grad) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t R = a.c.N * a.c.M, K = a.c.K, cs = a.c.xs1;
  const bool direct = std::is_same_v<scalar_t, acc_t> && (cs == 1 || K == 1);
  const int64_t ocs = a.out_cs();
  const bool out_direct = std::is_same_v<scalar_t, acc_t> && (ocs == 1 || K == 1);
  acc_t* loss = static_cast<acc_t*>(a.c.loss);
  double* lse = static_cast<double*>(a.c.lse);
  const acc_t nan = std::numeric_limits<acc_t>::quiet_NaN();
  const int64_t grain = std::max<int64_t>(1, 16384 / K);
  const LossBlocks<acc_t> blocks(a.c, R, 1, grain);
  at::parallel_for(0, blocks.count(), blocks.grain(grain), [&](int64_t b0, int64_t b1) {
    Buffer<acc_t> in(direct ? 0 : K), tmp(out_direct ? 0 : K);
    blocks.each(b0, b1, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const scalar_t* xr = a.x + a.x_off(r);
        const int64_t y = a.label(r);
        const bool ignored = y == a.c.ignore_index;
        if (fwd) {
          loss[r] = acc_t(0);
          if (lse != nullptr) lse[r] = 0.0;
        }
        if (ignored && !grad) continue;
        scalar_t* orow = grad ? a.out + a.out_off(r) : nullptr;
        acc_t* o = grad ? (out_direct ? reinterpret_cast<acc_t*>(orow) : tmp.get()) : nullptr;
        if (ignored) {
          std::fill(o, o + K, acc_t(0));
        } else {
          const acc_t* x = reinterpret_cast<const acc_t*>(xr);
          if (!direct) {
            for (int64_t k = 0; k < K; ++k) in.get()[k] = static_cast<acc_t>(xr[k * cs]);
            x = in.get();
          }
          const auto f = lsmia::ls_ce_grad_row(a.weight(y), a.W, a.alpha, K);
          if (fwd) {
            const acc_t mx = row_max(x, K), z_y = x[y];
            double l = 0.0;
            acc_t s = acc_t(1), d = acc_t(0);
            const bool finite = lsmia::ls_ce_finite(mx);
            // the exponentials go straight into the gradient row (o may be x itself: read first)
            if (finite) row_sums(x, K, a.w, mx, grad ? o : nullptr, s, d, a.alpha != acc_t(0));
            loss[r] = lsmia::ls_ce_finish_row(mx, lsmia::ls_ce_log(s), d, z_y, a.weight(y), a.W, a.alpha, K, l);
            if (lse != nullptr) lse[r] = l;
            if (grad) {
              if (finite) {
                row_gradient_from_exp(o, K, a.w, s, static_cast<acc_t>(a.c.grad_scale), f, y, o);
              } else {
                std::fill(o, o + K, nan);
              }
            }
          } else {
            row_gradient(x, K, a.w, lse[r], a.upstream(r), f, y, o);
          }
        }
        if (grad && !out_direct) {
          for (int64_t k = 0; k < K; ++k) orow[k * ocs] = static_cast<scalar_t>(o[k]);
        }
      }
    });
  });
  blocks.finish();
}

// lanes_run with K a compile-time constant when it is one of Ks (loops unrolled, the group's
// columns in registers where they fit); false when it is not.
template <bool kTrainOnly = false, typename scalar_t, int64_t... Ks>
bool lanes_run_fixed(const Call<scalar_t>& a, bool fwd, bool grad, std::integer_sequence<int64_t, Ks...>) {
  return ((a.c.K == Ks && (lanes_run<scalar_t, Ks, kTrainOnly>(a, fwd, grad), true)) || ...);
}

// Class counts with their own lane kernel: the AVX2 table's float32 (issue 30), 2 to 16 classes, every
// pass; the AVX-512 table's float32 training pass of whole packed rows, 4 to 16 classes (for its
// register kernel; other layouts and passes keep the lane path of any K there).
template <typename scalar_t>
constexpr bool kFixedK = kOwnFloatMath && std::is_same_v<scalar_t, float>;
template <typename scalar_t>
constexpr bool kFixedTrainK = kTrainInRegisters && std::is_same_v<scalar_t, float>;
constexpr int64_t kFixedMaxK = 16;

template <typename scalar_t>
void ls_ce_run(const LsCeCall& call, bool fwd, bool grad) {
  const Call<scalar_t> a(call);
  if (call.K <= kLaneMaxK) {
    if constexpr (kFixedK<scalar_t>) {
      using Ks = std::integer_sequence<int64_t, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, kFixedMaxK>;
      if (lanes_run_fixed(a, fwd, grad, Ks{})) return;
    } else if constexpr (kFixedTrainK<scalar_t>) {
      using Ks = std::integer_sequence<int64_t, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, kFixedMaxK>;
      if (fwd && grad && a.packed_rows(1, 1, false) && lanes_run_fixed<true>(a, fwd, grad, Ks{})) return;
    }
    lanes_run(a, fwd, grad);
  } else {
    rows_run(a, fwd, grad);
  }
}

inline void ls_ce_dispatch(const LsCeCall& call, bool fwd, bool grad) {
  if (call.N * call.M == 0 || call.K == 0) return;
  switch (call.dtype) {
    case at::kFloat:
      return ls_ce_run<float>(call, fwd, grad);
    case at::kDouble:
      return ls_ce_run<double>(call, fwd, grad);
    case at::kHalf:
      return ls_ce_run<at::Half>(call, fwd, grad);
    case at::kBFloat16:
      return ls_ce_run<at::BFloat16>(call, fwd, grad);
    default:
      return;  // the caller checked the dtype
  }
}

// Contiguous labels y[0..n): how many differ from ignore; *bad: whether any of those lies outside
// [0, K) (the caller then finds the first for its error message).
inline int64_t ls_ce_count_labels_kernel(const int64_t* y, int64_t n, int64_t K, int64_t ignore, bool* bad) {
  using V = Vectorized<int64_t>;
  const V vign(ignore), vk(K), zero(0), ones(-1);
  V ignored(0), out(0);
  int64_t i = 0;
  for (; i + V::size() <= n; i += V::size()) {
    const V v = V::loadu(y + i), skip = v == vign;
    ignored = ignored - skip;  // a mask lane is -1
    out = out | (((v < zero) | (v >= vk)) & (skip ^ ones));
  }
  alignas(64) int64_t part[V::size()], flag[V::size()];
  ignored.store(part);
  out.store(flag);
  int64_t count = n, any = 0;
  for (int64_t j = 0; j < V::size(); ++j) {
    count -= part[j];
    any |= flag[j];
  }
  for (; i < n; ++i) {
    const bool skip = y[i] == ignore;
    count -= skip;
    any |= !skip && static_cast<uint64_t>(y[i]) >= static_cast<uint64_t>(K);
  }
  *bad = any != 0;
  return count;
}

inline void ls_ce_forward_kernel(const LsCeCall& call) { ls_ce_dispatch(call, true, false); }
inline void ls_ce_backward_kernel(const LsCeCall& call) { ls_ce_dispatch(call, false, true); }
inline void ls_ce_forward_grad_kernel(const LsCeCall& call) { ls_ce_dispatch(call, true, true); }

}  // namespace lsmia::cpu::CPU_CAPABILITY
