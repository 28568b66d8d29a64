#include "cpu/dispatch.h"

#include <ATen/Version.h>
#include <torch/library.h>

#include <string>

namespace lsmia::cpu {

namespace {
struct Choice {
  const Kernels* table;
  const char* name;
};

Choice choose() {
#ifndef LSMIA_NO_X86_ISA
  const std::string cap = at::get_cpu_capability();  // e.g. "AVX512", "AVX2", "DEFAULT"
  if (cap.rfind("AVX512", 0) == 0) return {&AVX512::kernels, "AVX512"};
  if (cap.rfind("AVX2", 0) == 0) return {&AVX2::kernels, "AVX2"};
#endif
  return {&DEFAULT::kernels, "DEFAULT"};
}

const Choice& choice() {
  static const Choice c = choose();
  return c;
}
}  // namespace

const Kernels& kernels() { return *choice().table; }
const char* kernels_isa() { return choice().name; }

}  // namespace lsmia::cpu

namespace {
std::string cpu_kernel_isa() { return lsmia::cpu::kernels_isa(); }
}  // namespace

TORCH_LIBRARY_FRAGMENT(lsmia, m) {
  m.def("cpu_kernel_isa() -> str", &cpu_kernel_isa);
}
