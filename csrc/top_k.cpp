// The TopK primitive: see top_k.h.

#include "top_k.h"

#include <limits>
#include <stdexcept>

#include "mlx/ops.h"
#include "parallel.h"

namespace mlxseq {

namespace mx = mlx::core;

namespace {

// Rows [first, last): the best k so far, sorted (values[k - 1] the smallest); a later entry
// enters only if strictly larger than that, before the first kept value it exceeds.
void top_rows(const float* x, int M, int k, int* indices, float* values, int first, int last) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  for (int n = first; n < last; ++n) {
    const float* row = x + size_t(n) * M;
    int* ids = indices + size_t(n) * k;
    float* vals = values + size_t(n) * k;
    int filled = 0;
    for (int m = 0; m < M; ++m) {
      const float v = row[m] == row[m] ? row[m] : kNegInf;
      if (filled == k && !(v > vals[k - 1])) continue;
      int p = filled < k ? filled++ : k - 1;
      while (p > 0 && vals[p - 1] < v) {
        vals[p] = vals[p - 1];
        ids[p] = ids[p - 1];
        --p;
      }
      vals[p] = v;
      ids[p] = m;
    }
  }
}

} // namespace

void TopK::eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  const auto& x = inputs[0];
  if (!x.flags().row_contiguous || x.dtype() != mx::float32) {
    throw std::invalid_argument("MlxseqTopK: x must be row-contiguous float32");
  }
  allocate(outputs);
  dispatch(inputs, outputs, [N = int(x.shape(0)), M = int(x.shape(1)), k = setting_, data = x.data<float>(),
                    ids = outputs[0].data<int>(), vals = outputs[1].data<float>()]() {
    auto body = [&](int first, int last) { top_rows(data, M, k, ids, vals, first, last); };
    if (size_t(N) * M < (size_t(1) << 18)) return body(0, N);  // too little to share
    over_rows(N, body);
  });
}

std::vector<mx::array> top_k(const mx::array& x, int k) {
  if (x.ndim() != 2 || k < 1 || k > x.shape(1)) {
    throw std::invalid_argument("top_k: expected x (N, M) and 1 <= k <= M");
  }
  auto s = mx::default_stream(mx::default_device());
  const int N = x.shape(0);
  return mx::array::make_arrays({{N, k}, {N, k}}, {mx::int32, mx::float32}, std::make_shared<TopK>(s, k),
                                {mx::contiguous(mx::astype(x, mx::float32, s), false, s)});
}

} // namespace mlxseq
