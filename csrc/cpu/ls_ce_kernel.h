// CPU label-smoothed cross-entropy, compiled once per instruction set (namespace CPU_CAPABILITY).
// Math: ls_ce_math.h. Rows (n, j) of logits viewed as (N, K, M) are spread over threads.
// Few classes (K <= kLaneMaxK): one vector lane per row, W rows at a time; column k of the W rows is
// one load (rows j, j+1, ... of a (N, K, M) map are adjacent), one gather, or W scalar reads, kept
// in a small buffer so that max, exp, sums and log all run on full vectors.
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

#include "cpu/dispatch.h"
#include "cpu/vec_util.h"
#include "ls_ce_math.h"

namespace lsmia::cpu::CPU_CAPABILITY {

constexpr int64_t kLaneMaxK = 64;

// Typed view of one call.
template <typename scalar_t>
struct Call {
  using acc_t = at::opmath_type<scalar_t>;
  const LsCeCall& c;
  const scalar_t* x;
  const acc_t* w;
  acc_t W, alpha;
  scalar_t* out;
  bool in_place;  // gradient written over the logits (strides of x) instead of a contiguous out

  explicit Call(const LsCeCall& call)
      : c(call), x(static_cast<const scalar_t*>(call.x)), w(static_cast<const acc_t*>(call.w)),
        W(static_cast<acc_t>(call.W)), alpha(static_cast<acc_t>(call.alpha)), out(static_cast<scalar_t*>(call.out)),
        in_place(call.out == call.x) {}

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

// ---- few classes: W rows in the lanes of a vector ----

template <typename scalar_t>
struct Lanes {
  using acc_t = at::opmath_type<scalar_t>;
  using Vec = Vectorized<acc_t>;
  static constexpr int64_t W = Vec::size();
  alignas(64) acc_t cols[kLaneMaxK * W];  // column k of the group at cols + k * W
  int64_t off[W];                          // logits offset of each lane's row
  int64_t y[W];
  int64_t r0, m;                           // first row, real lanes (spare lanes repeat the last row)

  void load(const Call<scalar_t>& a, int64_t first, int64_t count) {
    r0 = first;
    m = count;
    for (int64_t j = 0; j < W; ++j) {
      const int64_t r = r0 + std::min(j, m - 1);
      off[j] = a.x_off(r);
      y[j] = a.label(r);
    }
    const int64_t K = a.c.K, cs = a.c.xs1;
    const scalar_t* x = a.x + off[0];
    if constexpr (std::is_same_v<scalar_t, acc_t>) {
      if (a.adjacent(r0, m, W, false)) {
        for (int64_t k = 0; k < K; ++k) Vec::loadu(x + k * cs).store(cols + k * W);
        return;
      }
      if (a.packed_rows(m, W, false)) {  // transpose the W x K block
        for (int64_t j = 0; j < W; ++j)
          for (int64_t k = 0; k < K; ++k) cols[k * W + j] = x[j * K + k];
        return;
      }
      int64_t lo = 0, hi = 0;
      for (int64_t j = 1; j < W; ++j) {
        lo = std::min(lo, off[j] - off[0]);
        hi = std::max(hi, off[j] - off[0]);
      }
      if (lo >= INT32_MIN && hi <= INT32_MAX) {
        using int_t = at::vec::int_same_size_t<acc_t>;
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

  // Per-lane label data: label as acc_t (-1 where the lane is spare or ignored), w_y, keep mask.
  void lane_labels(const Call<scalar_t>& a, Vec& vy, Vec& vwy, Vec& drop) const {
    alignas(64) acc_t yk[W], wy[W];
    for (int64_t j = 0; j < W; ++j) {
      const bool real = j < m && y[j] != a.c.ignore_index;
      yk[j] = real ? static_cast<acc_t>(y[j]) : acc_t(-1);
      wy[j] = real ? a.weight(y[j]) : acc_t(0);
    }
    vy = Vec::loadu(yk);
    vwy = Vec::loadu(wy);
    drop = vy == Vec(acc_t(-1));
  }

  // Loss and lse of the real lanes' rows; vmax and vlog (log sum exp(z - max)) stay for the gradient.
  void forward(const Call<scalar_t>& a, acc_t* loss, double* lse, Vec& vmax, Vec& vlog) const {
    const int64_t K = a.c.K;
    vmax = Vec(-std::numeric_limits<acc_t>::infinity());
    for (int64_t k = 0; k < K; ++k) vmax = at::vec::maximum(vmax, Vec::loadu(cols + k * W));
    Vec vs(acc_t(0)), vd(acc_t(0));
    const bool smooth = a.alpha != acc_t(0);
    for (int64_t k = 0; k < K; ++k) {
      const Vec t = Vec::loadu(cols + k * W) - vmax;
      vs += vexp(t);
      if (smooth) vd = a.w == nullptr ? vd + t : vd + t * Vec(a.w[k]);
    }
    vlog = vs.log();  // NaN wherever the max is not finite (z - max has a NaN there)
    alignas(64) acc_t zy[W], mx[W], ls[W];
    for (int64_t j = 0; j < W; ++j) zy[j] = cols[(y[j] == a.c.ignore_index ? 0 : y[j]) * W + j];
    Vec vy, vwy, drop;
    lane_labels(a, vy, vwy, drop);
    // ls_ce_finish_row on W lanes
    const Vec nll = vlog - (Vec::loadu(zy) - vmax);
    Vec vloss = vwy * nll;
    if (smooth) {
      vloss = Vec(acc_t(1) - a.alpha) * vloss + Vec(a.alpha / static_cast<acc_t>(K)) * (Vec(a.W) * vlog - vd);
    }
    const Vec nan(std::numeric_limits<acc_t>::quiet_NaN()), zero(acc_t(0));
    vloss = Vec::blendv(vloss, nan, (vmax - vmax) != zero);  // NaN / inf max: the row is NaN
    Vec::blendv(vloss, zero, drop).store(loss + r0, m);
    vmax.store(mx);
    vlog.store(ls);
    for (int64_t j = 0; j < m; ++j) {
      lse[r0 + j] = y[j] == a.c.ignore_index ? 0.0 : static_cast<double>(mx[j]) + static_cast<double>(ls[j]);
    }
  }

  // Gradient of the real lanes' rows, p = exp((z - s1) - s2) with s1 + s2 = lse per lane, lane j
  // scaled by g[j], written to a.out.
  void gradient(const Call<scalar_t>& a, const Vec& s1, const Vec& s2, const acc_t* g) const {
    const int64_t K = a.c.K;
    Vec vy, vwy, drop;
    lane_labels(a, vy, vwy, drop);
    const Vec zero(acc_t(0)), vg = Vec::blendv(Vec::loadu(g), zero, drop);
    const acc_t smooth = a.alpha / static_cast<acc_t>(K);
    const Vec hit = Vec(acc_t(1) - a.alpha) * vwy;
    const Vec vgc = vg * (hit + Vec(smooth * a.W)), vgh = vg * hit, vgs = vg * Vec(smooth);
    const int64_t ocs = a.out_cs();
    int64_t oo[W];
    for (int64_t j = 0; j < W; ++j) oo[j] = a.out_off(r0 + std::min(j, m - 1));
    const bool adjacent = std::is_same_v<scalar_t, acc_t> && a.adjacent(r0, m, W, true);
    const bool packed = !adjacent && a.packed_rows(m, W, true);
    alignas(64) acc_t tmp[kLaneMaxK * W];
    for (int64_t k = 0; k < K; ++k) {
      Vec e = vexp(Vec::loadu(cols + k * W) - s1 - s2) * vgc - (a.w == nullptr ? vgs : vgs * Vec(a.w[k]));
      e = e - Vec::blendv(zero, vgh, vy == Vec(static_cast<acc_t>(k)));
      e = Vec::blendv(e, zero, drop);  // ignored rows: 0 even where exp overflowed
      if (adjacent) {
        e.store(reinterpret_cast<acc_t*>(a.out + oo[0] + k * ocs), m);
      } else if (packed) {
        e.store(tmp + k * W);
      } else {
        e.store(tmp);
        for (int64_t j = 0; j < m; ++j) a.out[oo[j] + k * ocs] = static_cast<scalar_t>(tmp[j]);
      }
    }
    if (packed) {  // transpose back into the W x K block of the output
      scalar_t* o = a.out + oo[0];
      for (int64_t j = 0; j < W; ++j)
        for (int64_t k = 0; k < K; ++k) o[j * K + k] = static_cast<scalar_t>(tmp[k * W + j]);
    }
  }
};

template <typename scalar_t>
void lanes_run(const Call<scalar_t>& a, bool fwd, bool grad) {
  using L = Lanes<scalar_t>;
  using acc_t = typename L::acc_t;
  const int64_t R = a.c.N * a.c.M, groups = (R + L::W - 1) / L::W;
  const int64_t grain = std::max<int64_t>(1, 16384 / (a.c.K * L::W));
  acc_t* loss = static_cast<acc_t*>(a.c.loss);
  double* lse = static_cast<double*>(a.c.lse);
  at::parallel_for(0, groups, grain, [&](int64_t begin, int64_t end) {
    using Vec = typename L::Vec;
    L lanes;
    alignas(64) acc_t hi[L::W], lo[L::W], g[L::W];
    Vec s1, s2;
    for (int64_t gi = begin; gi < end; ++gi) {
      const int64_t r0 = gi * L::W;
      lanes.load(a, r0, std::min(L::W, R - r0));
      if (fwd) lanes.forward(a, loss, lse, s1, s2);
      if (!grad) continue;
      for (int64_t j = 0; j < L::W; ++j) {
        const int64_t r = r0 + std::min(j, lanes.m - 1);
        g[j] = fwd ? static_cast<acc_t>(a.c.grad_scale) : a.upstream(r);
        if (!fwd) lsmia::ls_ce_split_lse(lse[r], hi[j], lo[j]);
      }
      if (!fwd) {
        s1 = Vec::loadu(hi);
        s2 = Vec::loadu(lo);
      }
      lanes.gradient(a, s1, s2, g);
    }
  });
}

// ---- many classes: row by row ----

template <typename acc_t>
inline void row_forward(const acc_t* x, int64_t K, const acc_t* w, acc_t& mx, acc_t& log_s, acc_t& d, bool smooth) {
  using Vec = Vectorized<acc_t>;
  constexpr int64_t W = Vec::size();
  const acc_t ninf = -std::numeric_limits<acc_t>::infinity();
  Vec vmax(ninf);
  int64_t k = 0;
  for (; k + W <= K; k += W) vmax = at::vec::maximum(vmax, Vec::loadu(x + k));
  if (k < K) vmax = at::vec::maximum(vmax, Vec::set(Vec(ninf), Vec::loadu(x + k, K - k), K - k));
  mx = at::vec::vec_reduce_all<acc_t>([](Vec& p, Vec& q) { return at::vec::maximum(p, q); }, vmax);
  if (!lsmia::ls_ce_finite(mx)) return;  // the row is NaN whatever the sums
  const Vec vm(mx), zero(acc_t(0));
  Vec vs(zero), vd(zero);
  for (k = 0; k < K; k += W) {
    const int64_t n = std::min(W, K - k);
    const Vec t = Vec::loadu(x + k, n) - vm;
    Vec e = vexp(t), dt = t;
    if (w != nullptr) dt = t * Vec::loadu(w + k, n);
    if (n < W) {
      e = Vec::set(zero, e, n);
      dt = Vec::set(zero, dt, n);
    }
    vs += e;
    if (smooth) vd += dt;
  }
  const auto sum = [](Vec& p, Vec& q) { return p + q; };
  log_s = lsmia::ls_ce_log(at::vec::vec_reduce_all<acc_t>(sum, vs));
  d = at::vec::vec_reduce_all<acc_t>(sum, vd);
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

template <typename scalar_t>
void rows_run(const Call<scalar_t>& a, bool fwd, bool grad) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t R = a.c.N * a.c.M, K = a.c.K, cs = a.c.xs1;
  const bool direct = std::is_same_v<scalar_t, acc_t> && (cs == 1 || K == 1);
  const int64_t ocs = a.out_cs();
  const bool out_direct = std::is_same_v<scalar_t, acc_t> && (ocs == 1 || K == 1);
  acc_t* loss = static_cast<acc_t*>(a.c.loss);
  double* lse = static_cast<double*>(a.c.lse);
  at::parallel_for(0, R, std::max<int64_t>(1, 16384 / K), [&](int64_t begin, int64_t end) {
    Buffer<acc_t> in(direct ? 0 : K), tmp(out_direct ? 0 : K);
    for (int64_t r = begin; r < end; ++r) {
      const scalar_t* xr = a.x + a.x_off(r);
      const int64_t y = a.label(r);
      const bool ignored = y == a.c.ignore_index;
      if (ignored && !grad) {
        loss[r] = acc_t(0);
        lse[r] = 0.0;
        continue;
      }
      const acc_t* x = reinterpret_cast<const acc_t*>(xr);
      if (!direct) {
        for (int64_t k = 0; k < K; ++k) in.get()[k] = static_cast<acc_t>(xr[k * cs]);
        x = in.get();
      }
      double l = 0.0;
      if (fwd && !ignored) {
        acc_t mx, log_s = acc_t(0), d = acc_t(0);
        row_forward(x, K, a.w, mx, log_s, d, a.alpha != acc_t(0));
        loss[r] = lsmia::ls_ce_finish_row(mx, log_s, d, x[y], a.weight(y), a.W, a.alpha, K, l);
        lse[r] = l;
      } else if (fwd) {
        loss[r] = acc_t(0);
        lse[r] = 0.0;
      } else {
        l = lse[r];
      }
      if (!grad) continue;
      scalar_t* orow = a.out + a.out_off(r);
      acc_t* o = out_direct ? reinterpret_cast<acc_t*>(orow) : tmp.get();
      if (ignored) {
        std::fill(o, o + K, acc_t(0));
      } else {
        const acc_t g = fwd ? static_cast<acc_t>(a.c.grad_scale) : a.upstream(r);
        row_gradient(x, K, a.w, l, g, lsmia::ls_ce_grad_row(a.weight(y), a.W, a.alpha, K), y, o);
      }
      if (!out_direct) {
        for (int64_t k = 0; k < K; ++k) orow[k * ocs] = static_cast<scalar_t>(o[k]);
      }
    }
  });
}

template <typename scalar_t>
void ls_ce_run(const LsCeCall& call, bool fwd, bool grad) {
  const Call<scalar_t> a(call);
  if (call.K <= kLaneMaxK) {
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

inline void ls_ce_forward_kernel(const LsCeCall& call) { ls_ce_dispatch(call, true, false); }
inline void ls_ce_backward_kernel(const LsCeCall& call) { ls_ce_dispatch(call, false, true); }
inline void ls_ce_forward_grad_kernel(const LsCeCall& call) { ls_ce_dispatch(call, true, true); }

}  // namespace lsmia::cpu::CPU_CAPABILITY
