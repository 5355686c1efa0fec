// The Recurrence primitive: see recurrence.h for its inputs, outputs and math.

#include "recurrence.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "mlx/allocator.h"
#include "mlx/backend/cpu/encoder.h"
#include "mlx/ops.h"

// CBLAS, declared here so that the same source builds against OpenBLAS, MKL, the
// reference BLAS or Accelerate: whichever library provides cblas_sgemm in the process.
extern "C" void cblas_sgemm(
    int order, int trans_a, int trans_b, int m, int n, int k, float alpha, const float* a, int lda,
    const float* b, int ldb, float beta, float* c, int ldc);

namespace mlxseq {

namespace mx = mlx::core;

namespace {

constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;

// Gate loops are compiled for several instruction sets and picked at load time on x86-64.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__APPLE__)
#define MLXSEQ_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MLXSEQ_CLONES
#endif

// mlxseq.layers.activations.tanh: Eigen's rational approximation, |error| < 4e-7.
constexpr float kClamp = 7.90531110763549805f;
constexpr float kP0 = 4.89352455891786e-03f, kP1 = 6.37261928875436e-04f, kP2 = 1.48572235717979e-05f,
                kP3 = 5.12229709037114e-08f, kP4 = -8.60467152213735e-11f, kP5 = 2.00018790482477e-13f,
                kP6 = -2.76076847742355e-16f;
constexpr float kQ0 = 4.89352518554385e-03f, kQ1 = 2.26843463243900e-03f, kQ2 = 1.18534705686654e-04f,
                kQ3 = 1.19825839466702e-06f;

inline float fast_tanh(float x) {
  x = std::min(std::max(x, -kClamp), kClamp);
  const float y = x * x, y2 = y * y, y4 = y2 * y2;
  float p = (kP0 + kP1 * y) + (kP2 + kP3 * y) * y2;
  p = p + ((kP4 + kP5 * y) + kP6 * y2) * y4;
  const float q = (kQ0 + kQ1 * y) + (kQ2 + kQ3 * y) * y2;
  return x * p / q;
}

inline float fast_sigmoid(float x) {
  return 0.5f + 0.5f * fast_tanh(0.5f * x);
}

// z (B, 4H) = [i f g o] pre-activations (g rows scaled by 2); c (B, H) in, c_new and y out.
MLXSEQ_CLONES void lstm_cells(int B, int H, const float* z, const float* c, float* c_new, float* y) {
  for (int b = 0; b < B; ++b) {
    const float* zi = z + size_t(b) * 4 * H;
    const float *zf = zi + H, *zg = zi + 2 * H, *zo = zi + 3 * H;
    const float* cb = c + size_t(b) * H;
    float* cn = c_new + size_t(b) * H;
    float* yb = y + size_t(b) * H;
    for (int j = 0; j < H; ++j) {
      const float i = fast_sigmoid(zi[j]), f = fast_sigmoid(zf[j]);
      const float g = 2.0f * fast_sigmoid(zg[j]) - 1.0f, o = fast_sigmoid(zo[j]);
      const float cj = f * cb[j] + i * g;
      cn[j] = cj;
      yb[j] = o * fast_tanh(cj);
    }
  }
}

// xh (B, 3H) input projections [r z n], hh (B, 3H) = W_hh h + b_hh; h (B, H) the previous state.
MLXSEQ_CLONES void gru_cells(int B, int H, const float* xh, const float* hh, const float* h, float* y) {
  for (int b = 0; b < B; ++b) {
    const float* xr = xh + size_t(b) * 3 * H;
    const float *xz = xr + H, *xn = xr + 2 * H;
    const float* hr = hh + size_t(b) * 3 * H;
    const float *hz = hr + H, *hn = hr + 2 * H;
    const float* hb = h + size_t(b) * H;
    float* yb = y + size_t(b) * H;
    for (int j = 0; j < H; ++j) {
      const float r = fast_sigmoid(xr[j] + hr[j]), z = fast_sigmoid(xz[j] + hz[j]);
      const float n = fast_tanh(xn[j] + r * hn[j]);
      yb[j] = n + z * (hb[j] - n);
    }
  }
}

MLXSEQ_CLONES void rnn_cells(size_t count, bool relu, const float* z, float* y) {
  if (relu) {
    for (size_t j = 0; j < count; ++j) y[j] = 0.5f * (z[j] + std::abs(z[j]));
  } else {
    for (size_t j = 0; j < count; ++j) y[j] = fast_tanh(z[j]);
  }
}

// c = a @ b^T with a (m, k), b (n, k), c (m, n); beta 1 adds to what c holds.
inline void gemm_nt(int m, int n, int k, const float* a, const float* b, float beta, float* c) {
  cblas_sgemm(kRowMajor, kNoTrans, kTrans, m, n, k, 1.0f, a, k, b, k, beta, c, n);
}

struct Pointers {
  const float *xp, *h0, *c0, *w_hh, *b_hh, *w_hr, *mask;
  float *out, *h_n, *c_n;
};

void run(const RecurrenceLayout& layout, int T, int B, int G, int P, int H, const Pointers& p) {
  const bool lstm = layout.kind == CellKind::lstm, gru = layout.kind == CellKind::gru;
  std::vector<float> gates(size_t(B) * G), hh(gru ? size_t(B) * G : 0);
  std::vector<float> y(size_t(B) * H), h_new(layout.projected ? size_t(B) * P : 0);
  std::vector<float> c(lstm ? size_t(B) * H : 0), c_new(c.size());
  std::copy(p.h0, p.h0 + size_t(B) * P, p.h_n);  // h_n holds the running state
  if (lstm) std::copy(p.c0, p.c0 + c.size(), c.begin());
  float* h = p.h_n;
  for (int k = 0; k < T; ++k) {
    const int t = layout.reverse ? T - 1 - k : k;
    const float* xp_t = p.xp + size_t(t) * B * G;
    if (gru) {  // hh = h W_hh^T + b_hh; the gates add it to xp_t
      if (layout.has_bias_hh) {
        for (int b = 0; b < B; ++b) std::copy(p.b_hh, p.b_hh + G, hh.data() + size_t(b) * G);
      }
      gemm_nt(B, G, P, h, p.w_hh, layout.has_bias_hh ? 1.0f : 0.0f, hh.data());
      gru_cells(B, H, xp_t, hh.data(), h, y.data());
    } else {  // z = xp_t + h W_hh^T, accumulated in place
      std::copy(xp_t, xp_t + size_t(B) * G, gates.begin());
      gemm_nt(B, G, P, h, p.w_hh, 1.0f, gates.data());
      if (lstm) {
        lstm_cells(B, H, gates.data(), c.data(), c_new.data(), y.data());
      } else {
        rnn_cells(size_t(B) * H, layout.kind == CellKind::rnn_relu, gates.data(), y.data());
      }
    }
    const float* next = y.data();
    if (layout.projected) {  // h' = y W_hr^T
      gemm_nt(B, P, H, y.data(), p.w_hr, 0.0f, h_new.data());
      next = h_new.data();
    }
    float* out_t = p.out + size_t(t) * B * P;
    for (int b = 0; b < B; ++b) {
      const bool valid = !layout.masked || p.mask[size_t(t) * B + b] != 0.0f;
      const float* src = next + size_t(b) * P;
      float* dst = out_t + size_t(b) * P;
      if (valid) {
        std::copy(src, src + P, dst);
        std::copy(src, src + P, h + size_t(b) * P);
        if (lstm) std::copy(c_new.data() + size_t(b) * H, c_new.data() + size_t(b + 1) * H, c.data() + size_t(b) * H);
      } else {
        std::fill(dst, dst + P, 0.0f);
      }
    }
  }
  if (lstm) std::copy(c.begin(), c.end(), p.c_n);
}

const float* data_or_null(const std::vector<mx::array>& inputs, int index) {
  return index < 0 ? nullptr : inputs[index].data<float>();
}

} // namespace

void Recurrence::eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  const bool lstm = layout_.kind == CellKind::lstm;
  int i = 2;
  const int c0 = lstm ? i++ : -1;
  const int w_hh = i++;
  const int b_hh = layout_.has_bias_hh ? i++ : -1;
  const int w_hr = layout_.projected ? i++ : -1;
  const int mask = layout_.masked ? i++ : -1;
  for (const auto& a : inputs) {
    if (!a.flags().row_contiguous || a.dtype() != mx::float32) {
      throw std::invalid_argument("MlxseqRecurrence: inputs must be row-contiguous float32 arrays");
    }
  }
  for (auto& out : outputs) out.set_data(mx::allocator::malloc(out.nbytes()));
  const auto& xp = inputs[0];
  const int T = xp.shape(0), B = xp.shape(1), G = xp.shape(2);
  const int P = inputs[1].shape(1);
  const int H = lstm ? inputs[c0].shape(1) : (layout_.kind == CellKind::gru ? G / 3 : G);
  Pointers p{xp.data<float>(), inputs[1].data<float>(), data_or_null(inputs, c0), inputs[w_hh].data<float>(),
             data_or_null(inputs, b_hh), data_or_null(inputs, w_hr), data_or_null(inputs, mask),
             outputs[0].data<float>(), outputs[1].data<float>(), lstm ? outputs[2].data<float>() : nullptr};
  auto& encoder = mx::cpu::get_command_encoder(stream());
  for (const auto& a : inputs) encoder.set_input_array(a);
  for (auto& a : outputs) encoder.set_output_array(a);
  encoder.dispatch([layout = layout_, T, B, G, P, H, p]() { run(layout, T, B, G, P, H, p); });
}

void Recurrence::eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) {
  throw std::runtime_error("MlxseqRecurrence runs on CPU streams only; mlxseq uses its MLX graph on GPUs");
}

std::vector<mx::array> Recurrence::vjp(
    const std::vector<mx::array>&, const std::vector<mx::array>&, const std::vector<int>&,
    const std::vector<mx::array>&) {
  throw std::runtime_error("MlxseqRecurrence has no gradient yet; mlxseq differentiates its MLX graph instead");
}

bool Recurrence::is_equivalent(const mx::Primitive& other) const {
  const auto& o = static_cast<const Recurrence&>(other);
  return o.layout_.kind == layout_.kind && o.layout_.reverse == layout_.reverse &&
      o.layout_.has_bias_hh == layout_.has_bias_hh && o.layout_.projected == layout_.projected &&
      o.layout_.masked == layout_.masked;
}

std::vector<mx::array> recurrence(
    int kind,
    const mx::array& xp,
    const mx::array& h0,
    const std::optional<mx::array>& c0,
    const mx::array& w_hh,
    const std::optional<mx::array>& b_hh,
    const std::optional<mx::array>& w_hr,
    const std::optional<mx::array>& mask,
    bool reverse) {
  if (kind < 0 || kind > 3) throw std::invalid_argument("recurrence: kind must be 0-3");
  const auto cell = static_cast<CellKind>(kind);
  if ((cell == CellKind::lstm) != c0.has_value()) {
    throw std::invalid_argument("recurrence: c0 is given exactly for the LSTM");
  }
  if (xp.ndim() != 3 || h0.ndim() != 2 || w_hh.ndim() != 2 || xp.shape(1) != h0.shape(0) ||
      w_hh.shape(0) != xp.shape(2) || w_hh.shape(1) != h0.shape(1)) {
    throw std::invalid_argument("recurrence: expected xp (T, B, G), h0 (B, P), w_hh (G, P)");
  }
  auto s = mx::default_stream(mx::default_device());
  auto prepare = [&](const mx::array& a) { return mx::contiguous(mx::astype(a, mx::float32, s), false, s); };
  std::vector<mx::array> inputs{prepare(xp), prepare(h0)};
  if (c0) inputs.push_back(prepare(*c0));
  inputs.push_back(prepare(w_hh));
  if (b_hh) inputs.push_back(prepare(*b_hh));
  if (w_hr) inputs.push_back(prepare(*w_hr));
  if (mask) inputs.push_back(prepare(mx::reshape(*mask, {xp.shape(0), xp.shape(1)}, s)));
  const int T = xp.shape(0), B = xp.shape(1), P = h0.shape(1);
  std::vector<mx::Shape> shapes{{T, B, P}, {B, P}};
  if (c0) shapes.push_back(c0->shape());
  std::vector<mx::Dtype> dtypes(shapes.size(), mx::float32);
  RecurrenceLayout layout{cell, reverse, b_hh.has_value(), w_hr.has_value(), mask.has_value()};
  return mx::array::make_arrays(std::move(shapes), dtypes, std::make_shared<Recurrence>(s, layout), inputs);
}

const char* blas_name() {
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&cblas_sgemm), &info) && info.dli_fname) return info.dli_fname;
  return "unknown";
}

} // namespace mlxseq
