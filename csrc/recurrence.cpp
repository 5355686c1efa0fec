// The Recurrence primitive: see recurrence.h for its inputs, outputs and math.

#include "recurrence.h"

#include "onednn.h"
#include "parallel.h"
#include "vector_math.h"

#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <stdexcept>
#include <vector>

#include "mlx/ops.h"

// CBLAS, declared here so that the same source builds against OpenBLAS, MKL, the
// reference BLAS or Accelerate: whichever library provides cblas_sgemm in the process.
extern "C" void cblas_sgemm(
    int order, int trans_a, int trans_b, int m, int n, int k, float alpha, const float* a, int lda,
    const float* b, int ldb, float beta, float* c, int ldc);

using SgemmFn = decltype(&cblas_sgemm);
// MKL's packed-weight GEMM (cblas_sgemm_pack_get_size, cblas_sgemm_pack, cblas_sgemm_compute; LP64).
using PackGetSizeFn = size_t (*)(int identifier, int m, int n, int k);
using PackFn = void (*)(int layout, int identifier, int trans, int m, int n, int k, float alpha, const float* src,
                        int ld, float* dest);
using PackedComputeFn = void (*)(int layout, int trans_a, int trans_b, int m, int n, int k, const float* a, int lda,
                                 const float* b, int ldb, float beta, float* c, int ldc);

namespace mlxseq {

namespace mx = mlx::core;

namespace {

constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;

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

// z (B, 4H) = [i f g o] pre-activations; c (B, H) in, c_new and y out. g = tanh(z_g) = 2 sigmoid(2 z_g) - 1:
// g_scale 2, or 1 where the g rows arrive scaled by 2 already (the xp of mlxseq.layers.scan.project_inputs).
MLXSEQ_CLONES void lstm_cells(int B, int H, const float* z, const float* c, float* c_new, float* y, float g_scale) {
  for (int b = 0; b < B; ++b) {
    const float* zi = z + size_t(b) * 4 * H;
    const float *zf = zi + H, *zg = zi + 2 * H, *zo = zi + 3 * H;
    const float* cb = c + size_t(b) * H;
    float* cn = c_new + size_t(b) * H;
    float* yb = y + size_t(b) * H;
    MLXSEQ_VECTORIZE
    for (int j = 0; j < H; ++j) {
      const float i = fast_sigmoid(zi[j]), f = fast_sigmoid(zf[j]);
      const float g = 2.0f * fast_sigmoid(g_scale * zg[j]) - 1.0f, o = fast_sigmoid(zo[j]);
      const float cj = f * cb[j] + i * g;
      cn[j] = cj;
      yb[j] = o * fast_tanh(cj);
    }
  }
}

// xh (B, 3H) input projections [r z n], hh (B, 3H) = W_hh h + b_hh; h (B, H) the previous state.
// Keeping (a training step), rzn (B, 3H) gets the gates r, z, n and hn (B, H) hh's n part.
template <bool kKeep>
inline __attribute__((always_inline)) void gru_cells_impl(int B, int H, const float* xh, const float* hh, const float* h, float* y, float* rzn,
                    float* hn_kept) {
  for (int b = 0; b < B; ++b) {
    const float* xr = xh + size_t(b) * 3 * H;
    const float *xz = xr + H, *xn = xr + 2 * H;
    const float* hr = hh + size_t(b) * 3 * H;
    const float *hz = hr + H, *hn = hr + 2 * H;
    const float* hb = h + size_t(b) * H;
    float* yb = y + size_t(b) * H;
    float* kr = kKeep ? rzn + size_t(b) * 3 * H : nullptr;
    float* kh = kKeep ? hn_kept + size_t(b) * H : nullptr;
    MLXSEQ_VECTORIZE
    for (int j = 0; j < H; ++j) {
      const float r = fast_sigmoid(xr[j] + hr[j]), z = fast_sigmoid(xz[j] + hz[j]);
      const float n = fast_tanh(xn[j] + r * hn[j]);
      yb[j] = n + z * (hb[j] - n);
      if constexpr (kKeep) {
        kr[j] = r;
        kr[H + j] = z;
        kr[2 * H + j] = n;
        kh[j] = hn[j];
      }
    }
  }
}

MLXSEQ_CLONES void gru_cells(int B, int H, const float* xh, const float* hh, const float* h, float* y) {
  gru_cells_impl<false>(B, H, xh, hh, h, y, nullptr, nullptr);
}

MLXSEQ_CLONES void gru_cells_keeping(int B, int H, const float* xh, const float* hh, const float* h, float* y,
                                     float* rzn, float* hn) {
  gru_cells_impl<true>(B, H, xh, hh, h, y, rzn, hn);
}

MLXSEQ_CLONES void rnn_cells(size_t count, bool relu, const float* z, float* y) {
  if (relu) {
    MLXSEQ_VECTORIZE
    for (size_t j = 0; j < count; ++j) y[j] = 0.5f * (z[j] + std::abs(z[j]));
  } else {
    MLXSEQ_VECTORIZE
    for (size_t j = 0; j < count; ++j) y[j] = fast_tanh(z[j]);
  }
}

// LSTM backward of one step: dz (B, 4H) and dc_{t-1} (B, H) from dy, dc_t and what the forward kept
// (g_scale as in lstm_cells: dg/dz_g = g_scale (1 - g^2) / 2).
MLXSEQ_CLONES void lstm_cells_backward(int B, int H, const float* z, const float* c_prev, const float* c,
                                       const float* dy, const float* dc, float* dz, float* dc_prev, float g_scale) {
  for (int b = 0; b < B; ++b) {
    const size_t r = size_t(b) * H, r4 = size_t(b) * 4 * H;
    const float *zi = z + r4, *zf = zi + H, *zg = zi + 2 * H, *zo = zi + 3 * H;
    float *di = dz + r4, *df = di + H, *dg = di + 2 * H, *d_o = di + 3 * H;
    MLXSEQ_VECTORIZE
    for (int j = 0; j < H; ++j) {
      const float i = fast_sigmoid(zi[j]), f = fast_sigmoid(zf[j]);
      const float g = 2.0f * fast_sigmoid(g_scale * zg[j]) - 1.0f, o = fast_sigmoid(zo[j]);
      const float tc = fast_tanh(c[r + j]);
      const float dct = dc[r + j] + dy[r + j] * o * (1.0f - tc * tc);
      di[j] = dct * g * i * (1.0f - i);
      df[j] = dct * c_prev[r + j] * f * (1.0f - f);
      dg[j] = dct * i * (0.5f * g_scale) * (1.0f - g * g);
      d_o[j] = dy[r + j] * tc * o * (1.0f - o);
      dc_prev[r + j] = dct * f;
    }
  }
}

// GRU backward of one step: d(xh), d(hh) (B, 3H) and the direct part of dh_{t-1}, dy * z, from
// the kept gates r, z, n (B, 3H) and hn = W_hn h + b_hn (B, H).
MLXSEQ_CLONES void gru_cells_backward(int B, int H, const float* rzn, const float* hn_kept, const float* h,
                                      const float* dy, float* dxh, float* dhh, float* dh_direct) {
  for (int b = 0; b < B; ++b) {
    const size_t r = size_t(b) * H, r3 = size_t(b) * 3 * H;
    const float *gr = rzn + r3, *gz = gr + H, *gn = gr + 2 * H;
    const float* hn = hn_kept + r;
    float *dxr = dxh + r3, *dxz = dxr + H, *dxn = dxr + 2 * H;
    float *dhr = dhh + r3, *dhz = dhr + H, *dhn = dhr + 2 * H;
    MLXSEQ_VECTORIZE
    for (int j = 0; j < H; ++j) {
      const float rg = gr[j], z = gz[j], n = gn[j];
      const float d = dy[r + j];
      const float dn = d * (1.0f - z) * (1.0f - n * n);
      const float dr = dn * hn[j] * rg * (1.0f - rg);
      const float dzz = d * (h[r + j] - n) * z * (1.0f - z);
      dxr[j] = dhr[j] = dr;
      dxz[j] = dhz[j] = dzz;
      dxn[j] = dn;
      dhn[j] = dn * rg;
      dh_direct[r + j] = d * z;
    }
  }
}

MLXSEQ_CLONES void rnn_cells_backward(size_t count, bool relu, const float* y, const float* dy, float* dz) {
  if (relu) {
    MLXSEQ_VECTORIZE
    for (size_t j = 0; j < count; ++j) dz[j] = y[j] > 0.0f ? dy[j] : 0.0f;
  } else {
    MLXSEQ_VECTORIZE
    for (size_t j = 0; j < count; ++j) dz[j] = dy[j] * (1.0f - y[j] * y[j]);
  }
}

// The sgemm the steps call: the process's cblas_sgemm unless use_blas chose another library;
// with MKL's packed-weight API the fixed weight of every step is packed once per scan.
// When use_onednn loaded oneDNN, its matmul takes the products instead (onednn.h).
struct Blas {
  bool onednn = false;
  SgemmFn sgemm = &cblas_sgemm;
  PackGetSizeFn pack_get_size = nullptr;
  PackFn pack = nullptr;
  PackedComputeFn compute = nullptr;
  std::string name;
};

Blas& blas() {
  static Blas chosen;
  return chosen;
}

constexpr int kBMatrix = 162, kPacked = 151;  // MKL's CblasBMatrix and CblasPacked
constexpr int kPackMinSteps = 4;  // packing costs about one product: worth it from a few steps on

std::atomic<long> split_steps_run{0};  // how many times a step's loops were split (split_steps())
std::atomic<long> share_scans_run{0};  // how many forward scans ran in shares of rows (scans_in_shares())

// Each step's loops over rows b0 .. b1 - 1, split among the OpenMP threads when the scan's products run on
// oneDNN (their threads are then awake between steps); with sgemm (short scans, MLXSEQ_NATIVE_BLAS=blas)
// those threads sleep, and waking them each step made a decoder's one-step scans nearly 2x slower.
template <typename Body>
void over_step_rows(int steps, int rows, size_t values_per_row, Body body) {
  if (!blas().onednn || steps < kPackMinSteps) return body(0, rows);
  if (over_row_blocks(rows, values_per_row, body)) split_steps_run.fetch_add(1, std::memory_order_relaxed);
}

// c (m, n) = a (m, k) @ op(w) (+ bias (n,) where given and beta is 0) with the same w at every step:
// op(w) = w^T for w (n, k), else w (k, n). `packed_like`: a WeightProduct of the same w whose packed
// copy this one may read (onednn::Product).
class WeightProduct {
 public:
  WeightProduct(int m, int n, int k, const float* w, bool transposed, int steps, const float* bias = nullptr,
                const WeightProduct* packed_like = nullptr)
      : m_(m), n_(n), k_(k), w_(w), bias_(bias), transposed_(transposed) {
    const Blas& b = blas();
    if (b.onednn && steps >= kPackMinSteps) {
      // Only with the weight packed: on plain weights oneDNN's matmul repacks them at every call,
      // which made a decoder's one-step scans (generation, translation) 2.5x slower than sgemm.
      const onednn::Product* like = packed_like && packed_like->onednn_ ? &*packed_like->onednn_ : nullptr;
      onednn_.emplace(m, n, k, w, transposed, true, bias, like);
      if (onednn_->ready()) return;
      onednn_.reset();  // a shape oneDNN refused: sgemm below
    }
    if (b.pack_get_size && steps >= kPackMinSteps && m > 0 && n > 0 && k > 0) {
      const size_t bytes = b.pack_get_size(kBMatrix, m, n, k);
      packed_.reset(static_cast<float*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64)));
      if (packed_) {
        b.pack(kRowMajor, kBMatrix, transposed ? kTrans : kNoTrans, m, n, k, 1.0f, w, transposed ? k : n,
               packed_.get());
      }
    }
  }

  // beta 1 adds the product to what c holds.
  void operator()(const float* a, float beta, float* c) const {
    if (onednn_) return (*onednn_)(a, beta, c);
    if (bias_ && beta == 0.0f) {
      for (int r = 0; r < m_; ++r) std::copy(bias_, bias_ + n_, c + size_t(r) * n_);
      beta = 1.0f;
    }
    if (packed_) {
      blas().compute(kRowMajor, kNoTrans, kPacked, m_, n_, k_, a, k_, packed_.get(), n_, beta, c, n_);
    } else {
      blas().sgemm(kRowMajor, kNoTrans, transposed_ ? kTrans : kNoTrans, m_, n_, k_, 1.0f, a, k_, w_,
                   transposed_ ? k_ : n_, beta, c, n_);
    }
  }

 private:
  struct Free {
    void operator()(float* p) const {
      std::free(p);
    }
  };
  int m_, n_, k_;
  const float *w_, *bias_;
  bool transposed_;
  std::unique_ptr<float, Free> packed_;
  std::optional<onednn::Product> onednn_;
};

// The LSTM's g rows: given xp, they arrive scaled by 2 (mlxseq.layers.scan.project_inputs); given
// x and W_ih, the weights are as stored and the cells scale z_g themselves (the same numbers:
// scaling by 2 is exact).
float g_scale(const RecurrenceLayout& layout) {
  return layout.project ? 2.0f : 1.0f;
}

struct Sizes {
  int T, B, G, P, H, D;  // D: the width of x (G when the inputs are xp)
};

// Steps whose input projections (and, going back, whose d(xp)) are formed together: at most
// about 1,024 rows per GEMM, enough for its full speed, and a buffer of a few MB at most, in
// chunks of equal size (a last chunk of one step was a GEMM of B rows at a fraction of that speed).
int chunk_steps(int T, int B) {
  const int most = std::max(1, std::min(T, (1024 + B - 1) / std::max(B, 1)));
  const int chunks = std::max(1, (T + most - 1) / most);
  return std::max(1, (T + chunks - 1) / chunks);
}

// The time indices of the steps k0 .. k1 - 1 (in the order they run) form one block of rows.
int first_time(const RecurrenceLayout& layout, int T, int k0, int k1) {
  return layout.reverse ? T - k1 : k0;
}

void add_column_sums(int rows, int columns, const float* a, float* sums) {
  for (int r = 0; r < rows; ++r) {
    const float* row = a + size_t(r) * columns;
    MLXSEQ_VECTORIZE
    for (int j = 0; j < columns; ++j) sums[j] += row[j];
  }
}

// c (m, n) = op(a) @ op(b) + beta * c (row-major, contiguous) in a scan of `steps` steps: oneDNN's
// matmul where it takes the steps' products (so that all of a scan's products share its threads),
// else the chosen sgemm.
void gemm(int steps, bool trans_a, bool trans_b, int m, int n, int k, const float* a, int lda, const float* b,
          int ldb, float beta, float* c) {
  if (m == 0 || n == 0) return;
  if (blas().onednn && steps >= kPackMinSteps && onednn::gemm(trans_a, trans_b, m, n, k, a, b, beta, c)) return;
  blas().sgemm(kRowMajor, trans_a ? kTrans : kNoTrans, trans_b ? kTrans : kNoTrans, m, n, k, 1.0f, a, lda, b, ldb,
               beta, c, n);
}

// Forward: inputs, outputs and, when kept, the per-step arrays of the backward pass.
struct Pointers {
  const float *x, *h0, *c0, *w_ih, *bias, *w_hh, *b_hh, *w_hr, *mask;
  float *out, *h_n, *c_n;
  float *c_new, *z, *rzn, *hn, *y;  // kept (T, B, ...) or null
};

// Rows per thread below which a scan keeps its rows together (its products then split their
// columns among the threads instead): a product of fewer rows runs well below a core's speed.
// On Zen 4, an LSTM of 512 units over 24 rows ran 10% faster in shares of 12 than together.
constexpr int kMinShareRows = 8;

// How many shares of rows the forward steps run in, each in a thread of its own from the first step to
// the last (1: all rows together). Rows are independent sequences, so shares need no sync between
// steps; each share's products run in its thread and its gate loops right after them, on data still
// in that core's cache. Only with oneDNN's products (their OpenMP threads), enough steps to pack the
// weights, wide steps, and rows for every thread.
int row_shares(Sizes n) {
  const int threads = openmp_threads();
  if (!blas().onednn || n.T < kPackMinSteps || size_t(n.B) * n.G < kSplitWork || threads < 2) return 1;
  return n.B >= threads * kMinShareRows ? threads : 1;
}

// xp rows b0 .. b1 - 1 of `steps` steps from time t0 on (all rows when projected here): x W_ih^T + bias,
// or a copy of the given xp.
void project_rows(const RecurrenceLayout& layout, Sizes n, const Pointers& p, int t0, int steps, int b0, int b1,
                  float* xp) {
  const size_t width = size_t(b1 - b0) * n.G;
  if (!layout.project) {
    for (int s = 0; s < steps; ++s) {
      const float* x = p.x + (size_t(t0 + s) * n.B + b0) * n.G;
      std::copy(x, x + width, xp + s * width);
    }
    return;
  }
  const size_t rows = size_t(steps) * n.B;
  const float* x = p.x + size_t(t0) * n.B * n.D;
  if (p.bias) {
    for (size_t r = 0; r < rows; ++r) std::copy(p.bias, p.bias + n.G, xp + r * n.G);
  }
  gemm(n.T, false, true, int(rows), n.G, n.D, x, n.D, p.w_ih, n.D, p.bias ? 1.0f : 0.0f, xp);
}

// The products a block of `rows` rows makes at each step. A share's are made before the shares start
// (the first share's packed weights are read by the others), and run single-threaded in its thread.
struct StepProducts {
  WeightProduct recurrent;                  // h W_hh^T (+ b_hh: GRU)
  std::optional<WeightProduct> input;       // a share's x_t W_ih^T + bias, one step at a time
  std::optional<WeightProduct> projection;  // LSTM with proj_size: y W_hr^T

  StepProducts(const RecurrenceLayout& layout, Sizes n, const Pointers& p, int rows, bool share,
               const StepProducts* like)
      : recurrent(rows, n.G, n.P, p.w_hh, true, n.T, layout.has_bias_hh ? p.b_hh : nullptr,
                  like ? &like->recurrent : nullptr) {
    if (share && layout.project) {
      input.emplace(rows, n.G, n.D, p.w_ih, true, n.T, p.bias, like && like->input ? &*like->input : nullptr);
    }
    if (layout.projected) {
      projection.emplace(rows, n.P, n.H, p.w_hr, true, n.T, nullptr,
                         like && like->projection ? &*like->projection : nullptr);
    }
  }
};

// The steps of rows b0 .. b1 - 1. `share`: one thread's share of the rows, running beside the others'
// (its projections made a step at a time, its loops in this thread); else all the rows, their inputs
// projected a chunk of steps at a time and each step's loops split among the threads.
void run_rows(const RecurrenceLayout& layout, Sizes n, const Pointers& p, int b0, int b1, bool share,
              const StepProducts& products) {
  const auto [T, B, G, P, H, D] = n;
  const int R = b1 - b0;
  const bool lstm = layout.kind == CellKind::lstm, gru = layout.kind == CellKind::gru;
  const int C = share ? 1 : chunk_steps(T, B);
  // The projections land where they are kept (the LSTM's z_t), else in a chunk buffer.
  float* kept_xp = lstm ? p.z : nullptr;
  std::vector<float> chunk(kept_xp ? 0 : size_t(C) * R * G), hh(gru ? size_t(R) * G : 0);
  std::vector<float> y(size_t(R) * H), h_new(layout.projected ? size_t(R) * P : 0);
  std::vector<float> c(lstm ? size_t(R) * H : 0), c_new(c.size());
  float* h = p.h_n + size_t(b0) * P;  // h_n holds the running state
  std::copy(p.h0 + size_t(b0) * P, p.h0 + size_t(b1) * P, h);
  if (lstm) std::copy(p.c0 + size_t(b0) * H, p.c0 + size_t(b1) * H, c.begin());
  // Row b0 of step t in an array stacked over time (T, B, width).
  auto at = [&](auto* base, int t, int width) { return base ? base + (size_t(t) * B + b0) * width : nullptr; };
  // Loops over this block's rows r0 .. r1 - 1 (counted from b0), `width` values a row.
  const auto over_rows = [&](size_t width, auto body) { share ? body(0, R) : over_step_rows(T, R, width, body); };
  float* c_next = c_new.data();  // LSTM: this step's new cell states (in the kept array when there is one)
  int chunk_t0 = 0;
  for (int k = 0; k < T; ++k) {
    const int t = layout.reverse ? T - 1 - k : k;
    if (k % C == 0) {
      const int k1 = std::min(T, k + C);
      chunk_t0 = first_time(layout, T, k, k1);
      float* xp = kept_xp ? at(kept_xp, chunk_t0, G) : chunk.data();
      if (products.input) {
        (*products.input)(at(p.x, t, D), 0.0f, xp);
      } else {
        project_rows(layout, n, p, chunk_t0, k1 - k, b0, b1, xp);
      }
    }
    float* xp_t = kept_xp ? at(kept_xp, t, G) : chunk.data() + size_t(t - chunk_t0) * R * G;
    float* y_t = p.y ? at(p.y, t, H) : y.data();
    if (gru) {  // hh = h W_hh^T + b_hh; the gates add it to xp_t
      products.recurrent(h, 0.0f, hh.data());
    } else {  // z = xp_t + h W_hh^T, accumulated in place
      products.recurrent(h, 1.0f, xp_t);
    }
    if (lstm) c_next = p.c_new ? at(p.c_new, t, H) : c_new.data();
    // The gates of rows r0 .. r1 - 1.
    const auto gates = [&](int r0, int r1) {
      const int rows = r1 - r0;
      const size_t g0 = size_t(r0) * G, h0 = size_t(r0) * H;
      if (gru) {
        if (p.rzn) {
          gru_cells_keeping(rows, H, xp_t + g0, hh.data() + g0, h + h0, y_t + h0, at(p.rzn, t, G) + g0,
                            at(p.hn, t, H) + h0);
        } else {
          gru_cells(rows, H, xp_t + g0, hh.data() + g0, h + h0, y_t + h0);
        }
      } else if (lstm) {
        lstm_cells(rows, H, xp_t + g0, c.data() + h0, c_next + h0, y_t + h0, g_scale(layout));
      } else {
        rnn_cells(size_t(rows) * H, layout.kind == CellKind::rnn_relu, xp_t + g0, y_t + h0);
      }
    };
    const float* next = layout.projected ? h_new.data() : y_t;
    float* out_t = at(p.out, t, P);
    const float* mask_t = layout.masked ? at(p.mask, t, 1) : nullptr;
    // out_t = m * h'_t, and h_t = m ? h'_t : h_{t-1} (likewise c_t) for rows r0 .. r1 - 1.
    const auto update = [&](int r0, int r1) {
      for (int r = r0; r < r1; ++r) {
        const float* src = next + size_t(r) * P;
        float* dst = out_t + size_t(r) * P;
        if (!mask_t || mask_t[r] != 0.0f) {
          std::copy(src, src + P, dst);
          std::copy(src, src + P, h + size_t(r) * P);
          if (lstm) std::copy(c_next + size_t(r) * H, c_next + size_t(r + 1) * H, c.data() + size_t(r) * H);
        } else {
          std::fill(dst, dst + P, 0.0f);
        }
      }
    };
    if (layout.projected) {  // h' = y W_hr^T between the gates and the update
      over_rows(G, gates);
      (*products.projection)(y_t, 0.0f, h_new.data());
      over_rows(P, update);
    } else {  // each row's gates, then its update: a row's h and c are read before they are written
      over_rows(G, [&](int r0, int r1) {
        gates(r0, r1);
        update(r0, r1);
      });
    }
  }
  if (lstm) std::copy(c.begin(), c.end(), p.c_n + size_t(b0) * H);
}

void run(const RecurrenceLayout& layout, Sizes n, const Pointers& p) {
  const int shares = row_shares(n);
  if (shares == 1) {
    const StepProducts products(layout, n, p, n.B, false, nullptr);
    return run_rows(layout, n, p, 0, n.B, false, products);
  }
  auto first_row = [&](int s) { return int(size_t(s) * n.B / shares); };
  std::vector<std::unique_ptr<StepProducts>> products;
  for (int s = 0; s < shares; ++s) {
    const StepProducts* like = products.empty() ? nullptr : products.front().get();
    products.push_back(std::make_unique<StepProducts>(layout, n, p, first_row(s + 1) - first_row(s), true, like));
  }
  in_threads(shares, [&](int s) { run_rows(layout, n, p, first_row(s), first_row(s + 1), true, *products[s]); });
  split_steps_run.fetch_add(n.T, std::memory_order_relaxed);
  share_scans_run.fetch_add(1, std::memory_order_relaxed);
}

// Backward: the forward's inputs and kept arrays, the cotangents, and the gradients it writes.
struct BackwardPointers {
  const float *x, *w_ih, *w_hh, *w_hr, *mask, *c0;
  const float *h0, *out, *c_new, *z, *rzn, *hn, *y;
  const float *d_out, *d_h, *d_c;
  float *dx, *d_h0, *d_c0, *dw_ih, *d_bias, *dw_hh, *d_b_hh, *dw_hr;
};

// One chunk's d(xp) (and GRU d(hh), projected d(h')) into dx and the weight gradients; h_prev: the
// chunk's h_{t-1} (steps * B, P).
void flush_chunk(const RecurrenceLayout& layout, Sizes n, const BackwardPointers& p, int t0, int steps,
                 const float* d_xp, const float* d_hh, const float* d_new, const float* h_prev) {
  const auto [T, B, G, P, H, D] = n;
  const int rows = steps * B;
  const size_t first = size_t(t0) * B;
  if (layout.project) {
    gemm(T, false, false, rows, D, G, d_xp, G, p.w_ih, D, 0.0f, p.dx + first * D);  // dx = d(xp) W_ih
    gemm(T, true, false, G, D, rows, d_xp, G, p.x + first * D, D, 1.0f, p.dw_ih);  // dW_ih += d(xp)^T x
    if (p.d_bias) add_column_sums(rows, G, d_xp, p.d_bias);
  } else {
    std::copy(d_xp, d_xp + size_t(rows) * G, p.dx + first * G);
  }
  const float* d_gates = d_hh ? d_hh : d_xp;  // what multiplied W_hh
  gemm(T, true, false, G, P, rows, d_gates, G, h_prev, P, 1.0f, p.dw_hh);  // dW_hh += d^T h_{t-1}
  if (p.d_b_hh) add_column_sums(rows, G, d_hh, p.d_b_hh);
  if (p.dw_hr) gemm(T, true, false, P, H, rows, d_new, P, p.y + first * H, H, 1.0f, p.dw_hr);  // dW_hr += dh'^T y
}

void run_backward(const RecurrenceLayout& layout, Sizes n, const BackwardPointers& p) {
  const auto [T, B, G, P, H, D] = n;
  const bool lstm = layout.kind == CellKind::lstm, gru = layout.kind == CellKind::gru;
  const int C = chunk_steps(T, B);
  if (p.dw_ih) std::fill(p.dw_ih, p.dw_ih + size_t(G) * D, 0.0f);  // the weight gradients are sums over chunks
  if (p.d_bias) std::fill(p.d_bias, p.d_bias + G, 0.0f);
  std::fill(p.dw_hh, p.dw_hh + size_t(G) * P, 0.0f);
  if (p.d_b_hh) std::fill(p.d_b_hh, p.d_b_hh + G, 0.0f);
  if (p.dw_hr) std::fill(p.dw_hr, p.dw_hr + size_t(P) * H, 0.0f);
  std::vector<float> d_xp_chunk(size_t(C) * B * G), d_hh_chunk(gru ? d_xp_chunk.size() : 0);
  std::vector<float> d_new_chunk(layout.projected ? size_t(C) * B * P : 0);
  std::vector<float> dh(p.d_h, p.d_h + size_t(B) * P), dh_keep(size_t(B) * P), d_new(size_t(B) * P);
  std::vector<float> dc(lstm ? size_t(B) * H : 0), dc_keep(dc.size()), dc_new(dc.size()), dc_prev(dc.size());
  if (lstm) std::copy(p.d_c, p.d_c + dc.size(), dc.begin());
  std::vector<float> dy(layout.projected ? size_t(B) * H : 0), dh_direct(gru ? size_t(B) * H : 0);
  const WeightProduct recurrent(B, P, G, p.w_hh, false, T);  // d(gates) W_hh
  const std::optional<WeightProduct> projection =
      layout.projected ? std::optional<WeightProduct>(std::in_place, B, H, P, p.w_hr, false, T) : std::nullopt;
  auto time_of = [&](int k) { return layout.reverse ? T - 1 - k : k; };
  // h_{t-1} and the LSTM's c_{t-1} are not kept. Row b's states before step k are those of its last
  // valid step before k (out holds every valid step's h_t, c_new every step's c_t), or h0 and c0:
  // that step found once per row and step.
  std::vector<int> last_valid(size_t(T) * B);
  std::vector<int> last(B, -1);
  for (int k = 0; k < T; ++k) {
    for (int b = 0; b < B; ++b) {
      last_valid[size_t(k) * B + b] = last[b];
      if (!layout.masked || p.mask[size_t(time_of(k)) * B + b] != 0.0f) last[b] = k;
    }
  }
  // Row b's `width` values before step k, from an array stacked over time or its initial value.
  auto state_before = [&](const float* stacked, const float* initial, int width, int k, int b) {
    const int j = last_valid[size_t(k) * B + b];
    return j < 0 ? initial + size_t(b) * width : stacked + (size_t(time_of(j)) * B + b) * width;
  };
  std::vector<float> c_prev(lstm ? size_t(B) * H : 0), h_prev_chunk(size_t(C) * B * P);
  for (int k = T - 1; k >= 0; --k) {
    const int t = time_of(k);
    const size_t tb = size_t(t) * B;
    const int k0 = k / C * C, k1 = std::min(T, k0 + C);
    const int chunk_t0 = first_time(layout, T, k0, k1);
    const size_t slot = size_t(t - chunk_t0) * B;  // this step's rows in the chunk buffers
    if (k == k1 - 1) {  // the chunk's h_{t-1}, in the order of its rows
      for (int j = k0; j < k1; ++j) {
        float* rows = h_prev_chunk.data() + size_t(time_of(j) - chunk_t0) * B * P;
        for (int b = 0; b < B; ++b) {
          const float* row = state_before(p.out, p.h0, P, j, b);
          std::copy(row, row + P, rows + size_t(b) * P);
        }
      }
    }
    // out_t = m * h'_t, and h_t = m ? h'_t : h_{t-1} (likewise c_t): the cotangents of rows b0 .. b1 - 1
    // split between this step's output (d_new, dc_new) and the state it passed on (dh_keep, dc_keep).
    const auto split_cotangents = [&](int b0, int b1) {
      for (int b = b0; b < b1; ++b) {
        const bool valid = !layout.masked || p.mask[tb + b] != 0.0f;
        const size_t r = size_t(b) * P;
        for (int j = 0; j < P; ++j) {
          d_new[r + j] = valid ? p.d_out[tb * P + r + j] + dh[r + j] : 0.0f;
          dh_keep[r + j] = valid ? 0.0f : dh[r + j];
        }
        if (lstm) {
          const size_t rc = size_t(b) * H;
          for (int j = 0; j < H; ++j) {
            dc_new[rc + j] = valid ? dc[rc + j] : 0.0f;
            dc_keep[rc + j] = valid ? 0.0f : dc[rc + j];
          }
        }
      }
    };
    const float* dy_t = layout.projected ? dy.data() : d_new.data();
    float* d_xp = d_xp_chunk.data() + slot * G;
    float* d_hh = gru ? d_hh_chunk.data() + slot * G : nullptr;
    const float* d_gates = gru ? d_hh : d_xp;  // what multiplies W_hh on the way back
    // The gates' gradients of rows b0 .. b1 - 1.
    const auto gates_backward = [&](int b0, int b1) {
      const int rows = b1 - b0;
      const size_t g0 = size_t(b0) * G, h0 = size_t(b0) * H;
      if (lstm) {
        for (int b = b0; b < b1; ++b) {
          const float* row = state_before(p.c_new, p.c0, H, k, b);
          std::copy(row, row + H, c_prev.begin() + size_t(b) * H);
        }
        lstm_cells_backward(rows, H, p.z + tb * G + g0, c_prev.data() + h0, p.c_new + tb * H + h0, dy_t + h0,
                            dc_new.data() + h0, d_xp + g0, dc_prev.data() + h0, g_scale(layout));
      } else if (gru) {
        gru_cells_backward(rows, H, p.rzn + tb * G + g0, p.hn + tb * H + h0, h_prev_chunk.data() + slot * P + h0,
                           dy_t + h0,
                           d_xp + g0, d_hh + g0, dh_direct.data() + h0);
      } else {
        rnn_cells_backward(size_t(rows) * H, layout.kind == CellKind::rnn_relu, p.y + tb * H + h0, dy_t + h0,
                           d_xp + g0);
      }
    };
    if (layout.projected) {  // h' = y W_hr^T: dy = dh' W_hr; dW_hr comes from d_new over the chunk
      over_step_rows(T, B, P, split_cotangents);
      std::copy(d_new.begin(), d_new.end(), d_new_chunk.begin() + slot * P);
      (*projection)(d_new.data(), 0.0f, dy.data());
      over_step_rows(T, B, G, gates_backward);
    } else {
      over_step_rows(T, B, G, [&](int b0, int b1) {
        split_cotangents(b0, b1);
        gates_backward(b0, b1);
      });
    }
    recurrent(d_gates, 0.0f, dh.data());  // dh_{t-1} = d(gates) W_hh
    over_step_rows(T, B, P, [&](int b0, int b1) {
      for (size_t j = size_t(b0) * P; j < size_t(b1) * P; ++j) dh[j] += dh_keep[j] + (gru ? dh_direct[j] : 0.0f);
      for (size_t j = size_t(b0) * H; lstm && j < size_t(b1) * H; ++j) dc[j] = dc_prev[j] + dc_keep[j];
    });
    if (k == k0) {
      flush_chunk(layout, n, p, chunk_t0, k1 - k0, d_xp_chunk.data(), gru ? d_hh_chunk.data() : nullptr,
                  layout.projected ? d_new_chunk.data() : nullptr, h_prev_chunk.data());
    }
  }
  std::copy(dh.begin(), dh.end(), p.d_h0);
  if (lstm) std::copy(dc.begin(), dc.end(), p.d_c0);
}

const float* data_or_null(const std::vector<mx::array>& arrays, int index) {
  return index < 0 ? nullptr : arrays[index].data<float>();
}

float* data_or_null(std::vector<mx::array>& arrays, int index) {
  return index < 0 ? nullptr : arrays[index].data<float>();
}

// Positions of the optional inputs and kept outputs of a Recurrence.
struct Positions {
  int c0 = -1, w_ih = -1, bias = -1, w_hh = -1, b_hh = -1, w_hr = -1, mask = -1;
  int c_n = -1, c_new = -1, z = -1, rzn = -1, hn = -1, y = -1;

  explicit Positions(const RecurrenceLayout& l) {
    const bool lstm = l.kind == CellKind::lstm, gru = l.kind == CellKind::gru;
    int i = 2;
    if (lstm) c0 = i++;
    if (l.project) w_ih = i++;
    if (l.has_bias) bias = i++;
    w_hh = i++;
    if (l.has_bias_hh) b_hh = i++;
    if (l.projected) w_hr = i++;
    if (l.masked) mask = i++;
    int o = 2;
    if (lstm) c_n = o++;
    if (l.keep) {  // the RNN keeps nothing: its y_t is out_t (where out_t is 0, so is the gradient)
      if (lstm) {
        c_new = o++;
        z = o++;
        if (l.projected) y = o++;
      } else if (gru) {
        rzn = o++;
        hn = o++;
      }
    }
  }
};

void check_inputs(const std::vector<mx::array>& inputs, const char* name) {
  for (const auto& a : inputs) {
    if (!a.flags().row_contiguous || a.dtype() != mx::float32) {
      throw std::invalid_argument(std::string(name) + ": inputs must be row-contiguous float32 arrays");
    }
  }
}

} // namespace

void Recurrence::eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  check_inputs(inputs, name());
  const Positions at(layout_);
  allocate(outputs);
  const auto& w_hh = inputs[at.w_hh];
  const int G = w_hh.shape(0), P = w_hh.shape(1), D = inputs[0].shape(2);
  const int H = layout_.projected ? inputs[at.w_hr].shape(1) : (layout_.kind == CellKind::lstm ? G / 4
                                                                : layout_.kind == CellKind::gru ? G / 3 : G);
  Pointers p{inputs[0].data<float>(), inputs[1].data<float>(), data_or_null(inputs, at.c0),
             data_or_null(inputs, at.w_ih), data_or_null(inputs, at.bias), w_hh.data<float>(),
             data_or_null(inputs, at.b_hh), data_or_null(inputs, at.w_hr), data_or_null(inputs, at.mask),
             outputs[0].data<float>(), outputs[1].data<float>(), data_or_null(outputs, at.c_n),
             data_or_null(outputs, at.c_new), data_or_null(outputs, at.z),
             data_or_null(outputs, at.rzn), data_or_null(outputs, at.hn), data_or_null(outputs, at.y)};
  const Sizes n{int(inputs[0].shape(0)), int(inputs[0].shape(1)), G, P, H, D};
  dispatch(inputs, outputs, [layout = layout_, n, p]() { run(layout, n, p); });
}

std::vector<mx::array> Recurrence::vjp(
    const std::vector<mx::array>& primals,
    const std::vector<mx::array>& cotangents,
    const std::vector<int>& argnums,
    const std::vector<mx::array>& outputs) {
  if (!layout_.keep) {
    throw std::runtime_error("MlxseqRecurrence: differentiate a call made with keep=True");
  }
  const Positions at(layout_);
  const bool lstm = layout_.kind == CellKind::lstm, gru = layout_.kind == CellKind::gru;
  auto s = stream();
  const auto& x = primals[0];
  const auto& w_hh = primals[at.w_hh];
  const int T = x.shape(0), B = x.shape(1), D = x.shape(2), G = w_hh.shape(0), P = w_hh.shape(1);
  const int H = lstm ? outputs[at.c_n].shape(1) : (gru ? G / 3 : G);
  // Cotangents of out, h_T and c_T (those of the kept arrays are not used: nothing reads them).
  auto cotangent = [&](int i) { return mx::contiguous(mx::astype(cotangents[i], mx::float32, s), false, s); };
  // x and W_ih where the backward reads them (the projection's gradients): not xp, which can be
  // freed once the forward ran.
  std::vector<mx::array> inputs;
  if (layout_.project) inputs.insert(inputs.end(), {x, primals[at.w_ih]});
  inputs.push_back(w_hh);
  if (layout_.projected) inputs.push_back(primals[at.w_hr]);
  if (layout_.masked) inputs.push_back(primals[at.mask]);
  inputs.push_back(primals[1]);  // h0 and out: the states h_{t-1}
  inputs.push_back(outputs[0]);
  if (lstm) inputs.push_back(primals[at.c0]);
  for (int o : {at.c_new, at.z, at.rzn, at.hn, at.y}) {
    if (o >= 0) inputs.push_back(outputs[o]);
  }
  inputs.push_back(cotangent(0));
  inputs.push_back(cotangent(1));
  if (lstm) inputs.push_back(cotangent(at.c_n));
  // dx, dh0, [dc0], [dW_ih], [d(bias)], dW_hh, [d(b_hh)], [dW_hr]
  std::vector<mx::Shape> shapes{{T, B, D}, {B, P}};
  int g = 2;
  const int g_c0 = lstm ? g++ : -1;
  const int g_w_ih = layout_.project ? g++ : -1;
  const int g_bias = layout_.has_bias ? g++ : -1;
  const int g_w_hh = g++;
  const int g_b_hh = layout_.has_bias_hh ? g++ : -1;
  const int g_w_hr = layout_.projected ? g++ : -1;
  if (lstm) shapes.push_back({B, H});
  if (layout_.project) shapes.push_back({G, D});
  if (layout_.has_bias) shapes.push_back({G});
  shapes.push_back({G, P});
  if (layout_.has_bias_hh) shapes.push_back({G});
  if (layout_.projected) shapes.push_back({P, H});
  std::vector<mx::Dtype> dtypes(shapes.size(), mx::float32);
  auto grads = mx::array::make_arrays(std::move(shapes), dtypes, std::make_shared<RecurrenceBackward>(s, layout_),
                                      inputs);
  std::vector<mx::array> result;
  for (int arg : argnums) {
    const int from = arg == 0 ? 0 : arg == 1 ? 1 : arg == at.c0 ? g_c0 : arg == at.w_ih ? g_w_ih
                   : arg == at.bias ? g_bias : arg == at.w_hh ? g_w_hh : arg == at.b_hh ? g_b_hh
                   : arg == at.w_hr ? g_w_hr : -1;
    result.push_back(from >= 0 ? grads[from] : mx::zeros_like(primals[arg], s));  // -1: the mask
  }
  return result;
}

bool Recurrence::is_equivalent(const mx::Primitive& other) const {
  const auto& o = static_cast<const Recurrence&>(other).layout_;
  return o.kind == layout_.kind && o.reverse == layout_.reverse && o.has_bias_hh == layout_.has_bias_hh &&
      o.projected == layout_.projected && o.masked == layout_.masked && o.keep == layout_.keep &&
      o.project == layout_.project && o.has_bias == layout_.has_bias;
}

void RecurrenceBackward::eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  check_inputs(inputs, name());
  const bool lstm = layout_.kind == CellKind::lstm, gru = layout_.kind == CellKind::gru;
  allocate(outputs);
  int i = 0;
  auto next = [&](bool present) { return present ? inputs[i++].data<float>() : nullptr; };
  BackwardPointers p{};
  p.x = next(layout_.project);
  p.w_ih = next(layout_.project);
  const auto& w_hh = inputs[i];
  p.w_hh = next(true);
  const int w_hr_at = i;
  p.w_hr = next(layout_.projected);
  p.mask = next(layout_.masked);
  p.h0 = next(true);
  p.out = next(true);
  p.c0 = next(lstm);
  p.c_new = next(lstm);
  p.z = next(lstm);
  p.rzn = next(gru);
  p.hn = next(gru);
  p.y = lstm ? next(layout_.projected) : gru ? nullptr : p.out;  // the RNN's y_t: out_t
  p.d_out = next(true);
  p.d_h = next(true);
  p.d_c = next(lstm);
  int o = 0;
  p.dx = outputs[o++].data<float>();
  p.d_h0 = outputs[o++].data<float>();
  p.d_c0 = lstm ? outputs[o++].data<float>() : nullptr;
  p.dw_ih = layout_.project ? outputs[o++].data<float>() : nullptr;
  p.d_bias = layout_.has_bias ? outputs[o++].data<float>() : nullptr;
  p.dw_hh = outputs[o++].data<float>();
  p.d_b_hh = layout_.has_bias_hh ? outputs[o++].data<float>() : nullptr;
  p.dw_hr = layout_.projected ? outputs[o++].data<float>() : nullptr;
  const int G = w_hh.shape(0), P = w_hh.shape(1), D = outputs[0].shape(2);
  const int H = layout_.projected ? inputs[w_hr_at].shape(1) : (lstm ? G / 4 : gru ? G / 3 : G);
  const Sizes n{int(outputs[0].shape(0)), int(outputs[0].shape(1)), G, P, H, D};
  dispatch(inputs, outputs, [layout = layout_, n, p]() { run_backward(layout, n, p); });
}

std::vector<mx::array> recurrence(
    int kind,
    const mx::array& x,
    const mx::array& h0,
    const std::optional<mx::array>& c0,
    const std::optional<mx::array>& w_ih,
    const std::optional<mx::array>& bias,
    const mx::array& w_hh,
    const std::optional<mx::array>& b_hh,
    const std::optional<mx::array>& w_hr,
    const std::optional<mx::array>& mask,
    bool reverse,
    bool keep) {
  if (kind < 0 || kind > 3) throw std::invalid_argument("recurrence: kind must be 0-3");
  const auto cell = static_cast<CellKind>(kind);
  const bool lstm = cell == CellKind::lstm, gru = cell == CellKind::gru;
  if (lstm != c0.has_value()) throw std::invalid_argument("recurrence: c0 is given exactly for the LSTM");
  if (w_hr && !lstm) throw std::invalid_argument("recurrence: only the LSTM has a projection");
  if (bias && !w_ih) throw std::invalid_argument("recurrence: an input bias needs w_ih");
  const int G = w_hh.ndim() == 2 ? w_hh.shape(0) : -1;
  const int D = w_ih ? (w_ih->ndim() == 2 ? w_ih->shape(1) : -1) : G;
  if (x.ndim() != 3 || h0.ndim() != 2 || w_hh.ndim() != 2 || x.shape(1) != h0.shape(0) || x.shape(2) != D ||
      w_hh.shape(1) != h0.shape(1) || (w_ih && w_ih->shape(0) != G) || (bias && bias->size() != size_t(G))) {
    throw std::invalid_argument("recurrence: expected x (T, B, D), h0 (B, P), w_ih (G, D), w_hh (G, P) "
                                "(or xp (T, B, G) without w_ih)");
  }
  auto s = mx::default_stream(mx::default_device());
  auto prepare = [&](const mx::array& a) { return mx::contiguous(mx::astype(a, mx::float32, s), false, s); };
  std::vector<mx::array> inputs{prepare(x), prepare(h0)};
  if (c0) inputs.push_back(prepare(*c0));
  if (w_ih) inputs.push_back(prepare(*w_ih));
  if (bias) inputs.push_back(prepare(mx::reshape(*bias, {G}, s)));
  inputs.push_back(prepare(w_hh));
  if (b_hh) inputs.push_back(prepare(*b_hh));
  if (w_hr) inputs.push_back(prepare(*w_hr));
  if (mask) inputs.push_back(prepare(mx::reshape(*mask, {x.shape(0), x.shape(1)}, s)));
  const int T = x.shape(0), B = x.shape(1), P = h0.shape(1);
  const int H = w_hr ? w_hr->shape(1) : (lstm ? G / 4 : gru ? G / 3 : G);
  std::vector<mx::Shape> shapes{{T, B, P}, {B, P}};
  if (lstm) shapes.push_back({B, H});
  if (keep) {  // h_{t-1} is not kept: the backward finds it in out and h0
    if (lstm) {
      shapes.insert(shapes.end(), {{T, B, H}, {T, B, G}});  // c_t, z_t
      if (w_hr) shapes.push_back({T, B, H});  // y_t
    } else if (gru) {
      shapes.insert(shapes.end(), {{T, B, G}, {T, B, H}});  // r, z, n and W_hn h + b_hn
    }
  }
  std::vector<mx::Dtype> dtypes(shapes.size(), mx::float32);
  RecurrenceLayout layout{cell, reverse, b_hh.has_value(), w_hr.has_value(), mask.has_value(), keep,
                          w_ih.has_value(), bias.has_value()};
  return mx::array::make_arrays(std::move(shapes), dtypes, std::make_shared<Recurrence>(s, layout), inputs);
}

void use_blas(uintptr_t sgemm, uintptr_t pack_get_size, uintptr_t pack, uintptr_t compute, const std::string& name) {
  Blas chosen;
  if (sgemm) {
    chosen.sgemm = reinterpret_cast<SgemmFn>(sgemm);
    chosen.name = name;
  }
  if (pack_get_size && pack && compute) {
    chosen.pack_get_size = reinterpret_cast<PackGetSizeFn>(pack_get_size);
    chosen.pack = reinterpret_cast<PackFn>(pack);
    chosen.compute = reinterpret_cast<PackedComputeFn>(compute);
  }
  blas() = chosen;
}

std::string use_onednn(const std::string& path) {
  std::string why = onednn::load(path);
  if (why.empty()) {
    blas() = Blas{};
    blas().onednn = true;
    blas().name = onednn::name();
  }
  return why;
}

std::string blas_name() {
  if (!blas().name.empty()) return blas().name;
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&cblas_sgemm), &info) && info.dli_fname) return info.dli_fname;
  return "unknown";
}

long split_steps() {
  return split_steps_run.load();
}

long scans_in_shares() {
  return share_scans_run.load();
}

} // namespace mlxseq
