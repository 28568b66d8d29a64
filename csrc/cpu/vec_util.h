// Helpers of the per-ISA CPU kernels. Everything lives in namespace CPU_CAPABILITY (one copy per
// instruction set); scratch memory is malloc'd rather than a std::vector, whose out-of-line members
// would be one symbol shared by every ISA object.
#pragma once
#include <ATen/cpu/vec/vec.h>

#include <cstdlib>
#include <limits>
#include <new>

namespace lsmia::cpu::CPU_CAPABILITY {

using at::vec::Vectorized;

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

}  // namespace lsmia::cpu::CPU_CAPABILITY
