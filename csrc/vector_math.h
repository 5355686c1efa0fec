// What the element loops share: instruction-set clones, the no-alias hint, a vectorisable exp.

#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>

// Element loops are compiled for several instruction sets and picked at load time on x86-64.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__APPLE__)
#define MLXSEQ_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MLXSEQ_CLONES
#endif

// The gate loops read and write several arrays the compiler cannot prove apart (more than
// its runtime alias checks cover), so it would leave them scalar: they never overlap.
#if defined(__clang__)
#define MLXSEQ_VECTORIZE _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define MLXSEQ_VECTORIZE _Pragma("GCC ivdep")
#else
#define MLXSEQ_VECTORIZE
#endif

namespace mlxseq {

// mlxseq.layers.activations.exp_nonpositive: exp(x) for x <= 0, relative error < 2e-7 above
// x = -87 (below it exp(-87)). exp(x) = 2^n exp(r), n = round(x / ln 2), r = x - n ln 2 (a
// Cody-Waite split of ln 2), exp(r) by Cephes' expf polynomial, 2^n written into the exponent.
inline float exp_nonpositive(float x) {
  constexpr float kLog2e = 1.4426950408889634f, kLn2Hi = 0.693145751953125f, kLn2Lo = 1.428606765330187e-06f;
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding and subtracting it rounds to an integer
  constexpr float kC0 = 1.9875691500e-4f, kC1 = 1.3981999507e-3f, kC2 = 8.3334519073e-3f, kC3 = 4.1665795894e-2f,
                  kC4 = 1.6666665459e-1f, kC5 = 5.0000001201e-1f;
  x = std::max(x, -87.0f);
  const float n = (x * kLog2e + kRound) - kRound;
  const float r = (x - n * kLn2Hi) - n * kLn2Lo;
  const float z = r * r;
  float p = (kC0 * r + kC1) * z + (kC2 * r + kC3);
  p = (p * z + (kC4 * r + kC5)) * z + r + 1.0f;
  return p * std::bit_cast<float>((static_cast<int32_t>(n) + 127) << 23);
}

} // namespace mlxseq
