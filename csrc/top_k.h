// The k largest entries of each row, best first, as one MLX primitive: beam search's choice of
// candidates among K x V scores per source. MLX's CPU argpartition takes about 11 ns per element
// (18 ms per step of a beam of 5 over 64 sources and 5,000 words); one pass that keeps the best k
// seen so far takes about one comparison per element.
//
// Input: x (N, M) float32. Outputs: indices (N, k) int32 and values (N, k) float32, each row
// sorted by value, largest first; equal values keep the lower index first; NaN counts as -inf.
// Not differentiable (decoding only).

#pragma once

#include <vector>

#include "mlx/array.h"
#include "cpu_primitive.h"
#include "mlx/primitives.h"

namespace mlxseq {

class TopK : public CpuPrimitive {
 public:
  TopK(mlx::core::Stream stream, int k) : CpuPrimitive(stream), k_(k) {}

  void eval_cpu(const std::vector<mlx::core::array>& inputs, std::vector<mlx::core::array>& outputs) override;

  const char* name() const override {
    return "MlxseqTopK";
  }
  bool is_equivalent(const mlx::core::Primitive& other) const override {
    return static_cast<const TopK&>(other).k_ == k_;
  }

 private:
  int k_;
};

// (indices (N, k), values (N, k)) of x (N, M), 1 <= k <= M, on the default stream.
std::vector<mlx::core::array> top_k(const mlx::core::array& x, int k);

} // namespace mlxseq
