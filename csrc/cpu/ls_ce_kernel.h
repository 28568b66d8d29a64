// CPU label-smoothed cross-entropy, compiled once per instruction set (namespace CPU_CAPABILITY).
// Rows are spread over threads with at::parallel_for. A row is read as a contiguous run of the
// accumulation type: float32 / float64 contiguous rows in place, any other dtype or stride through
// a per-thread row buffer (K values, stays in cache), so there is never an N x K temporary.
#pragma once
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "ls_ce_math.h"

namespace lsmia::cpu::CPU_CAPABILITY {

using at::vec::Vectorized;

template <typename acc_t>
inline Vectorized<acc_t> vexp(const Vectorized<acc_t>& x) {
  return x.exp();
}
template <>
inline Vectorized<float> vexp(const Vectorized<float>& x) {
  return x.exp_u20();  // Sleef, max error 2 ULP
}

// Enough rows per task that a task touches at least ~16k logits.
inline int64_t rows_per_task(int64_t K) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(K, 1)); }

// Makes row i of `src` (any dtype, any strides) available as a contiguous acc_t pointer.
template <typename scalar_t, typename acc_t>
struct RowReader {
  const scalar_t* base;
  int64_t row_stride, col_stride, K;
  std::vector<acc_t> buffer;
  bool direct;

  RowReader(const at::Tensor& t)
      : base(t.const_data_ptr<scalar_t>()), row_stride(t.stride(0)), col_stride(t.stride(1)),
        K(t.size(1)), direct(std::is_same_v<scalar_t, acc_t> && (t.stride(1) == 1 || t.size(1) == 1)) {
    if (!direct) buffer.resize(K);
  }

  const acc_t* row(int64_t i) {
    const scalar_t* p = base + i * row_stride;
    if (direct) return reinterpret_cast<const acc_t*>(p);
    for (int64_t k = 0; k < K; ++k) buffer[k] = static_cast<acc_t>(p[k * col_stride]);
    return buffer.data();
  }
};

// max (NaN-propagating), sum, and sum of exp(x - max) of a contiguous row.
template <typename acc_t>
inline void row_stats(const acc_t* x, int64_t K, acc_t& mx, acc_t& sum, acc_t& sumexp) {
  using Vec = Vectorized<acc_t>;
  constexpr int64_t W = Vec::size();
  const acc_t ninf = -std::numeric_limits<acc_t>::infinity();
  Vec vmax(ninf), vsum(acc_t(0));
  int64_t k = 0;
  for (; k + W <= K; k += W) {
    Vec v = Vec::loadu(x + k);
    vmax = at::vec::maximum(vmax, v);
    vsum += v;
  }
  if (k < K) {
    const int64_t n = K - k;
    Vec v = Vec::loadu(x + k, n);  // zero filled
    vsum += v;
    vmax = at::vec::maximum(vmax, Vec::set(Vec(ninf), v, n));
  }
  mx = at::vec::vec_reduce_all<acc_t>([](Vec& a, Vec& b) { return at::vec::maximum(a, b); }, vmax);
  sum = at::vec::vec_reduce_all<acc_t>([](Vec& a, Vec& b) { return a + b; }, vsum);
  if (mx != mx || mx == ninf || mx == -ninf) {  // NaN, all -inf, or +inf: no finite shift exists
    sumexp = std::numeric_limits<acc_t>::quiet_NaN();
    if (mx == ninf) sumexp = acc_t(0);
    return;
  }
  const Vec vm(mx);
  Vec vs(acc_t(0));
  k = 0;
  for (; k + W <= K; k += W) vs += vexp(Vec::loadu(x + k) - vm);
  if (k < K) {
    const int64_t n = K - k;
    vs += Vec::set(Vec(acc_t(0)), vexp(Vec::loadu(x + k, n) - vm), n);
  }
  sumexp = at::vec::vec_reduce_all<acc_t>([](Vec& a, Vec& b) { return a + b; }, vs);
}

// Few classes (K <= kSmallK): per-row vectors would be mostly empty lanes and per-row scalar exp is
// slow, so a chunk of rows is laid out as one contiguous run of K * rows shifted logits and
// exponentiated with full vectors; logs of the row sums are vectorised too.
constexpr int64_t kSmallK = 64;
constexpr int64_t kChunkElems = 4096;

template <typename acc_t>
inline void vexp_inplace(acc_t* p, int64_t n) {
  using Vec = Vectorized<acc_t>;
  int64_t k = 0;
  for (; k + Vec::size() <= n; k += Vec::size()) vexp(Vec::loadu(p + k)).store(p + k);
  if (k < n) vexp(Vec::loadu(p + k, n - k)).store(p + k, n - k);
}

// Forward for few classes with one vector lane per row: W rows at a time, column k of all W rows
// is one gather, so max, sum, exp and log all run on full vectors without any buffer.
template <typename acc_t>
inline void small_k_rows(const acc_t* x, int64_t n, int64_t K, const int64_t* y, int64_t ystride, acc_t alpha,
                         int64_t ignore_index, acc_t* loss, acc_t* lse) {
  using Vec = Vectorized<acc_t>;
  using int_t = at::vec::int_same_size_t<acc_t>;
  using IVec = Vectorized<int_t>;
  constexpr int64_t W = Vec::size();
  const acc_t ninf = -std::numeric_limits<acc_t>::infinity();
  alignas(64) acc_t columns[kSmallK * W];  // column k of the W rows of a group at columns + k * W
  for (int64_t r0 = 0; r0 < n; r0 += W) {
    const int64_t m = std::min(W, n - r0);
    alignas(64) int_t row_idx[W];
    alignas(64) int_t y_idx[W];
    for (int64_t j = 0; j < W; ++j) {
      const int64_t row = r0 + (j < m ? j : 0);  // spare lanes repeat a real row
      const int64_t label = y[row * ystride];
      row_idx[j] = static_cast<int_t>(row * K);
      y_idx[j] = static_cast<int_t>(row * K + (label == ignore_index ? 0 : label));
    }
    const IVec vi = IVec::loadu(row_idx);
    Vec vmax(ninf), vsum(acc_t(0)), vs(acc_t(0));
    for (int64_t k = 0; k < K; ++k) {  // gathered columns are kept, so each logit is gathered once
      const Vec v = at::vec::gather<sizeof(acc_t)>(x + k, vi);
      v.store(columns + k * W);
      vmax = at::vec::maximum(vmax, v);
      vsum += v;
    }
    for (int64_t k = 0; k < K; ++k) vs += vexp(Vec::loadu(columns + k * W) - vmax);
    const Vec vl = vmax + vs.log();  // all -inf, +inf or NaN rows: NaN
    Vec vloss = vl;
    if (alpha != acc_t(1)) vloss = vloss - Vec(acc_t(1) - alpha) * at::vec::gather<sizeof(acc_t)>(x, IVec::loadu(y_idx));
    if (alpha != acc_t(0)) vloss = vloss - Vec(alpha / static_cast<acc_t>(K)) * vsum;
    vl.store(lse + r0, m);
    vloss.store(loss + r0, m);
    for (int64_t j = 0; j < m; ++j) {
      if (y[(r0 + j) * ystride] == ignore_index) loss[r0 + j] = lse[r0 + j] = acc_t(0);
    }
  }
}

template <typename scalar_t>
void ls_ce_forward_small_k(const at::Tensor& logits, const at::Tensor& target, double alpha_d,
                           int64_t ignore_index, at::Tensor& loss, at::Tensor& lse) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t N = logits.size(0), K = logits.size(1);
  const int64_t chunk = std::max<int64_t>(1, kChunkElems / K);
  const acc_t alpha = static_cast<acc_t>(alpha_d);
  const int64_t* tgt = target.const_data_ptr<int64_t>();
  const int64_t tstride = target.stride(0);
  const scalar_t* base = logits.const_data_ptr<scalar_t>();
  const int64_t rs = logits.stride(0), cs = logits.stride(1);
  // float32/float64 rows packed back to back are read in place; anything else is packed per chunk.
  const bool in_place = std::is_same_v<scalar_t, acc_t> && (cs == 1 || K == 1) && (rs == K || N == 1);
  acc_t* loss_p = loss.data_ptr<acc_t>();
  acc_t* lse_p = lse.data_ptr<acc_t>();
  at::parallel_for(0, N, chunk, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> packed(in_place ? 0 : chunk * K);
    for (int64_t c = begin; c < end; c += chunk) {
      const int64_t n = std::min(chunk, end - c);
      const acc_t* x;
      if (in_place) {
        x = reinterpret_cast<const acc_t*>(base + c * rs);
      } else {
        for (int64_t r = 0; r < n; ++r)
          for (int64_t k = 0; k < K; ++k) packed[r * K + k] = static_cast<acc_t>(base[(c + r) * rs + k * cs]);
        x = packed.data();
      }
      small_k_rows(x, n, K, tgt + c * tstride, tstride, alpha, ignore_index, loss_p + c, lse_p + c);
    }
  });
}

// What both backward kernels read: row pointers and the per-call constants.
template <typename scalar_t>
struct BackwardArgs {
  using acc_t = at::opmath_type<scalar_t>;
  int64_t N, K, tstride, gstride;
  acc_t alpha, smooth, hit;
  const int64_t* tgt;
  const acc_t* g;
  const acc_t* lse;
  scalar_t* out;

  BackwardArgs(const at::Tensor& grad_loss, const at::Tensor& logits, const at::Tensor& target,
               const at::Tensor& lse_t, double alpha_d, at::Tensor& grad_logits)
      : N(logits.size(0)), K(logits.size(1)), tstride(target.stride(0)), gstride(grad_loss.stride(0)),
        alpha(static_cast<acc_t>(alpha_d)), smooth(alpha / static_cast<acc_t>(K)), hit(acc_t(1) - alpha),
        tgt(target.const_data_ptr<int64_t>()), g(grad_loss.const_data_ptr<acc_t>()),
        lse(lse_t.const_data_ptr<acc_t>()), out(grad_logits.data_ptr<scalar_t>()) {}
};

template <typename scalar_t>
void ls_ce_backward_small_k(const at::Tensor& grad_loss, const at::Tensor& logits, const at::Tensor& target,
                            const at::Tensor& lse, double alpha_d, int64_t ignore_index, at::Tensor& grad_logits) {
  using acc_t = at::opmath_type<scalar_t>;
  const BackwardArgs<scalar_t> a(grad_loss, logits, target, lse, alpha_d, grad_logits);
  const int64_t N = a.N, K = a.K;
  const int64_t chunk = std::max<int64_t>(1, kChunkElems / K);
  constexpr bool write_direct = std::is_same_v<scalar_t, acc_t>;
  at::parallel_for(0, N, chunk, [&](int64_t begin, int64_t end) {
    RowReader<scalar_t, acc_t> reader(logits);
    std::vector<acc_t> buffer(write_direct ? 0 : chunk * K);
    for (int64_t c = begin; c < end; c += chunk) {
      const int64_t n = std::min(chunk, end - c);
      acc_t* e = write_direct ? reinterpret_cast<acc_t*>(a.out + c * K) : buffer.data();
      for (int64_t r = 0; r < n; ++r) {
        const acc_t* x = reader.row(c + r);
        const acc_t l = a.lse[c + r];
        for (int64_t k = 0; k < K; ++k) e[r * K + k] = x[k] - l;
      }
      vexp_inplace(e, n * K);
      for (int64_t r = 0; r < n; ++r) {
        const int64_t i = c + r, y = a.tgt[i * a.tstride];
        acc_t* row = e + r * K;
        if (y == ignore_index) {
          std::fill(row, row + K, acc_t(0));
          continue;
        }
        const acc_t g = a.g[i * a.gstride];
        for (int64_t k = 0; k < K; ++k) row[k] = g * (row[k] - a.smooth);
        row[y] -= g * a.hit;
      }
      if constexpr (!write_direct) {
        scalar_t* out = a.out + c * K;
        for (int64_t j = 0; j < n * K; ++j) out[j] = static_cast<scalar_t>(e[j]);
      }
    }
  });
}

template <typename scalar_t>
void ls_ce_forward_typed(const at::Tensor& logits, const at::Tensor& target, double alpha_d,
                         int64_t ignore_index, at::Tensor& loss, at::Tensor& lse) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t N = logits.size(0), K = logits.size(1);
  const acc_t alpha = static_cast<acc_t>(alpha_d);
  const int64_t* tgt = target.const_data_ptr<int64_t>();
  const int64_t tstride = target.stride(0);
  acc_t* loss_p = loss.data_ptr<acc_t>();
  acc_t* lse_p = lse.data_ptr<acc_t>();
  at::parallel_for(0, N, rows_per_task(K), [&](int64_t begin, int64_t end) {
    RowReader<scalar_t, acc_t> reader(logits);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t y = tgt[i * tstride];
      if (y == ignore_index) {
        loss_p[i] = acc_t(0);
        lse_p[i] = acc_t(0);
        continue;
      }
      const acc_t* x = reader.row(i);
      acc_t mx, sum, sumexp;
      row_stats(x, K, mx, sum, sumexp);
      const acc_t l = (mx == -std::numeric_limits<acc_t>::infinity())
                          ? std::numeric_limits<acc_t>::quiet_NaN()
                          : lsmia::logsumexp_from(mx, sumexp);
      lse_p[i] = l;
      loss_p[i] = lsmia::ls_ce_row_loss(l, x[y], sum, alpha, K);
    }
  });
}

template <typename scalar_t>
void ls_ce_backward_typed(const at::Tensor& grad_loss, const at::Tensor& logits,
                          const at::Tensor& target, const at::Tensor& lse, double alpha_d,
                          int64_t ignore_index, at::Tensor& grad_logits) {
  using acc_t = at::opmath_type<scalar_t>;
  using Vec = Vectorized<acc_t>;
  constexpr int64_t W = Vec::size();
  const BackwardArgs<scalar_t> a(grad_loss, logits, target, lse, alpha_d, grad_logits);
  const int64_t N = a.N, K = a.K;
  constexpr bool write_direct = std::is_same_v<scalar_t, acc_t>;
  at::parallel_for(0, N, rows_per_task(K), [&](int64_t begin, int64_t end) {
    RowReader<scalar_t, acc_t> reader(logits);
    std::vector<acc_t> out_buffer(write_direct ? 0 : K);
    for (int64_t i = begin; i < end; ++i) {
      scalar_t* out_row = a.out + i * K;
      const int64_t y = a.tgt[i * a.tstride];
      if (y == ignore_index) {
        std::fill(out_row, out_row + K, scalar_t(0));
        continue;
      }
      const acc_t* x = reader.row(i);
      acc_t* o = write_direct ? reinterpret_cast<acc_t*>(out_row) : out_buffer.data();
      const acc_t g = a.g[i * a.gstride];
      const Vec vg(g), vl(a.lse[i]), vc(a.smooth);
      int64_t k = 0;
      for (; k + W <= K; k += W) ((vexp(Vec::loadu(x + k) - vl) - vc) * vg).store(o + k);
      if (k < K) ((vexp(Vec::loadu(x + k, K - k) - vl) - vc) * vg).store(o + k, K - k);
      o[y] -= g * a.hit;
      if constexpr (!write_direct) {
        for (int64_t j = 0; j < K; ++j) out_row[j] = static_cast<scalar_t>(o[j]);
      }
    }
  });
}

inline void ls_ce_forward_kernel(const at::Tensor& logits, const at::Tensor& target, double alpha,
                                 int64_t ignore_index, at::Tensor& loss, at::Tensor& lse) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "ls_ce_forward", [&] {
    if (logits.size(1) <= kSmallK) {
      ls_ce_forward_small_k<scalar_t>(logits, target, alpha, ignore_index, loss, lse);
    } else {
      ls_ce_forward_typed<scalar_t>(logits, target, alpha, ignore_index, loss, lse);
    }
  });
}

inline void ls_ce_backward_kernel(const at::Tensor& grad_loss, const at::Tensor& logits,
                                  const at::Tensor& target, const at::Tensor& lse, double alpha,
                                  int64_t ignore_index, at::Tensor& grad_logits) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "ls_ce_backward", [&] {
    if (logits.size(1) <= kSmallK) {
      ls_ce_backward_small_k<scalar_t>(grad_loss, logits, target, lse, alpha, ignore_index, grad_logits);
    } else {
      ls_ce_backward_typed<scalar_t>(grad_loss, logits, target, lse, alpha, ignore_index, grad_logits);
    }
  });
}

}  // namespace lsmia::cpu::CPU_CAPABILITY
