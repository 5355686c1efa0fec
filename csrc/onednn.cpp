// See onednn.h.

#include "onednn.h"

#include <dlfcn.h>

#include <atomic>
#include <mutex>
#include <stdexcept>

#ifdef MLXSEQ_HAVE_ONEDNN
#include "oneapi/dnnl/dnnl.h"
#endif

namespace mlxseq::onednn {

#ifdef MLXSEQ_HAVE_ONEDNN

namespace {

// The C API functions used, resolved from the library opened by load().
#define MLXSEQ_DNNL_FUNCTIONS(X)                                                                        \
  X(dnnl_engine_create) X(dnnl_stream_create) X(dnnl_memory_desc_create_with_tag)                       \
  X(dnnl_memory_desc_destroy) X(dnnl_memory_desc_clone) X(dnnl_memory_desc_equal)                       \
  X(dnnl_memory_desc_get_size)                                                                          \
  X(dnnl_primitive_attr_create) X(dnnl_primitive_attr_destroy) X(dnnl_post_ops_create)                  \
  X(dnnl_post_ops_append_sum) X(dnnl_post_ops_destroy) X(dnnl_primitive_attr_set_post_ops)              \
  X(dnnl_matmul_primitive_desc_create) X(dnnl_reorder_primitive_desc_create)                            \
  X(dnnl_primitive_desc_query_md) X(dnnl_primitive_desc_destroy) X(dnnl_primitive_create)               \
  X(dnnl_primitive_destroy) X(dnnl_primitive_execute) X(dnnl_memory_create) X(dnnl_memory_destroy)      \
  X(dnnl_memory_set_data_handle) X(dnnl_stream_wait) X(dnnl_version)

struct Library {
#define MLXSEQ_DNNL_POINTER(f) decltype(&::f) f = nullptr;
  MLXSEQ_DNNL_FUNCTIONS(MLXSEQ_DNNL_POINTER)
#undef MLXSEQ_DNNL_POINTER
  dnnl_engine_t engine = nullptr;
  std::string name;
};

Library* library = nullptr;  // set once by load(), never freed (the process keeps the library)
std::atomic<long> made{0};  // products made ready

dnnl_memory_desc_t matrix(const Library& l, int rows, int cols, dnnl_format_tag_t tag) {
  dnnl_memory_desc_t md = nullptr;
  const dnnl_dims_t dims{rows, cols};
  if (l.dnnl_memory_desc_create_with_tag(&md, 2, dims, dnnl_f32, tag) != dnnl_success) return nullptr;
  return md;
}

// This thread's stream (products of one scan may run in several threads at once), made at its first use
// and, like the library, kept for the life of the process: a stream destroyed at a thread's exit could
// outlive oneDNN's own state at the process's.
dnnl_stream_t stream_of_this_thread(const Library& l) {
  thread_local dnnl_stream_t stream = nullptr;
  if (!stream && l.dnnl_stream_create(&stream, l.engine, dnnl_stream_default_flags) != dnnl_success) stream = nullptr;
  return stream;
}

} // namespace

std::string load(const std::string& path) {
  static std::mutex guard;
  std::lock_guard<std::mutex> lock(guard);
  if (library) return "";
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) return std::string("cannot open ") + path + ": " + dlerror();
  auto l = std::make_unique<Library>();
#define MLXSEQ_DNNL_RESOLVE(f)                                                 \
  l->f = reinterpret_cast<decltype(&::f)>(dlsym(handle, #f));                 \
  if (!l->f) return std::string(path) + " has no " #f " (oneDNN 3.x needed)";
  MLXSEQ_DNNL_FUNCTIONS(MLXSEQ_DNNL_RESOLVE)
#undef MLXSEQ_DNNL_RESOLVE
  const dnnl_version_t* v = l->dnnl_version();
  if (v->major != DNNL_VERSION_MAJOR) {
    return path + " is oneDNN " + std::to_string(v->major) + ".x; built for " + std::to_string(DNNL_VERSION_MAJOR) + ".x";
  }
  if (l->dnnl_engine_create(&l->engine, dnnl_cpu, 0) != dnnl_success) {
    return path + ": no CPU engine";
  }
  l->name = "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
            std::to_string(v->patch) + " (" + path + ")";
  library = l.release();
  return "";
}

bool loaded() {
  return library != nullptr;
}

std::string name() {
  return library ? library->name : "";
}

long products_made() {
  return made.load();
}

struct Product::State {
  const Library& l;
  int m, n, k;
  dnnl_memory_desc_t a_md = nullptr, c_md = nullptr, w_md = nullptr;  // w_md: the layout the primitives read
  dnnl_memory_desc_t bias_md = nullptr;  // (1, n) when a bias is given: the beta-0 primitive adds it
  dnnl_memory_t a = nullptr, c = nullptr, w = nullptr, bias = nullptr;
  dnnl_primitive_t product[2] = {nullptr, nullptr};  // beta 0 and beta 1 (a sum post-op)
  void* packed = nullptr;

  explicit State(const Library& library) : l(library) {}
  ~State() {
    for (auto p : product) {
      if (p) l.dnnl_primitive_destroy(p);
    }
    for (auto mem : {a, c, w, bias}) {
      if (mem) l.dnnl_memory_destroy(mem);
    }
    for (auto md : {a_md, c_md, w_md, bias_md}) {
      if (md) l.dnnl_memory_desc_destroy(md);
    }
    std::free(packed);
  }

  // The matmul primitive with weights in `weights`, adding to c when sum; its weight layout in chosen.
  dnnl_primitive_t make(const_dnnl_memory_desc_t weights, bool sum, dnnl_memory_desc_t* chosen) const {
    dnnl_primitive_attr_t attr = nullptr;
    dnnl_post_ops_t ops = nullptr;
    dnnl_primitive_desc_t pd = nullptr;
    dnnl_primitive_t primitive = nullptr;
    bool ok = l.dnnl_primitive_attr_create(&attr) == dnnl_success;
    if (ok && sum) {
      ok = l.dnnl_post_ops_create(&ops) == dnnl_success &&
           l.dnnl_post_ops_append_sum(ops, 1.0f, 0, dnnl_data_type_undef) == dnnl_success &&
           l.dnnl_primitive_attr_set_post_ops(attr, ops) == dnnl_success;
    }
    ok = ok && l.dnnl_matmul_primitive_desc_create(&pd, l.engine, a_md, weights, sum ? nullptr : bias_md, c_md,
                                                   attr) == dnnl_success;
    if (ok && chosen) ok = l.dnnl_memory_desc_clone(chosen, l.dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0)) == dnnl_success;
    if (ok && l.dnnl_primitive_create(&primitive, pd) != dnnl_success) primitive = nullptr;
    if (pd) l.dnnl_primitive_desc_destroy(pd);
    if (ops) l.dnnl_post_ops_destroy(ops);
    if (attr) l.dnnl_primitive_attr_destroy(attr);
    return primitive;
  }

  // Reorders w (plain) into w_md's layout, in a buffer of its own.
  bool pack(const float* source, dnnl_memory_desc_t plain) {
    packed = std::aligned_alloc(64, (l.dnnl_memory_desc_get_size(w_md) + 63) / 64 * 64);
    dnnl_memory_t from = nullptr, to = nullptr;
    dnnl_primitive_desc_t pd = nullptr;
    dnnl_primitive_t reorder = nullptr;
    bool ok = packed && l.dnnl_memory_create(&from, plain, l.engine, const_cast<float*>(source)) == dnnl_success &&
              l.dnnl_memory_create(&to, w_md, l.engine, packed) == dnnl_success &&
              l.dnnl_reorder_primitive_desc_create(&pd, plain, l.engine, w_md, l.engine, nullptr) == dnnl_success &&
              l.dnnl_primitive_create(&reorder, pd) == dnnl_success;
    if (ok) {
      const dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
      dnnl_stream_t stream = stream_of_this_thread(l);
      ok = stream && l.dnnl_primitive_execute(reorder, stream, 2, args) == dnnl_success &&
           l.dnnl_stream_wait(stream) == dnnl_success;
    }
    if (reorder) l.dnnl_primitive_destroy(reorder);
    if (pd) l.dnnl_primitive_desc_destroy(pd);
    if (from) l.dnnl_memory_destroy(from);
    if (to) l.dnnl_memory_destroy(to);
    return ok && l.dnnl_memory_create(&w, w_md, l.engine, packed) == dnnl_success;
  }
};

Product::Product(int m, int n, int k, const float* w, bool transposed, bool pack, const float* bias,
                 const Product* packed_like) {
  if (!library || m <= 0 || n <= 0 || k <= 0) return;
  auto s = std::make_unique<State>(*library);
  s->m = m, s->n = n, s->k = k;
  if (bias) {
    s->bias_md = matrix(*library, 1, n, dnnl_ab);
    auto* values = const_cast<float*>(bias);
    if (!s->bias_md || library->dnnl_memory_create(&s->bias, s->bias_md, library->engine, values) != dnnl_success) return;
  }
  // Weights as oneDNN sees them: (k, n); w (n, k) row-major is that matrix in "ba" order.
  dnnl_memory_desc_t plain = matrix(*library, k, n, transposed ? dnnl_ba : dnnl_ab);
  s->a_md = matrix(*library, m, k, dnnl_ab);
  s->c_md = matrix(*library, m, n, dnnl_ab);
  if (!plain || !s->a_md || !s->c_md) {
    if (plain) library->dnnl_memory_desc_destroy(plain);
    return;
  }
  bool ok = true;
  if (pack) {  // let oneDNN choose the weight layout, then reorder into it once (or read packed_like's)
    dnnl_memory_desc_t any = matrix(*library, k, n, dnnl_format_tag_any);
    s->product[0] = any ? s->make(any, false, &s->w_md) : nullptr;
    if (any) library->dnnl_memory_desc_destroy(any);
    const State* like = packed_like ? packed_like->state_.get() : nullptr;
    if (s->product[0] && like && like->packed && library->dnnl_memory_desc_equal(s->w_md, like->w_md)) {
      ok = library->dnnl_memory_create(&s->w, s->w_md, library->engine, like->packed) == dnnl_success;
    } else {
      ok = s->product[0] && s->pack(w, plain);
    }
    library->dnnl_memory_desc_destroy(plain);
  } else {
    s->w_md = plain;
    s->product[0] = s->make(plain, false, nullptr);
    ok = s->product[0] && library->dnnl_memory_create(&s->w, plain, library->engine, const_cast<float*>(w)) == dnnl_success;
  }
  ok = ok && (s->product[1] = s->make(s->w_md, true, nullptr)) != nullptr;
  ok = ok && library->dnnl_memory_create(&s->a, s->a_md, library->engine, DNNL_MEMORY_NONE) == dnnl_success &&
       library->dnnl_memory_create(&s->c, s->c_md, library->engine, DNNL_MEMORY_NONE) == dnnl_success;
  if (ok) {
    state_ = std::move(s);
    ++made;
  }
}

Product::~Product() = default;

bool Product::ready() const {
  return state_ != nullptr;
}

void Product::operator()(const float* a, float beta, float* c) const {
  const State& s = *state_;
  s.l.dnnl_memory_set_data_handle(s.a, const_cast<float*>(a));
  s.l.dnnl_memory_set_data_handle(s.c, c);
  const bool sum = beta != 0.0f;
  const dnnl_exec_arg_t args[4] = {
      {DNNL_ARG_SRC, s.a}, {DNNL_ARG_WEIGHTS, s.w}, {DNNL_ARG_DST, s.c}, {DNNL_ARG_BIAS, s.bias}};
  const int count = s.bias && !sum ? 4 : 3;  // the sum primitive takes no bias
  dnnl_stream_t stream = stream_of_this_thread(s.l);
  if (!stream || s.l.dnnl_primitive_execute(s.product[sum ? 1 : 0], stream, count, args) != dnnl_success ||
      s.l.dnnl_stream_wait(stream) != dnnl_success) {
    throw std::runtime_error("oneDNN matmul failed");
  }
}

bool gemm(bool trans_a, bool trans_b, int m, int n, int k, const float* a, const float* b, float beta, float* c) {
  if (!library || m <= 0 || n <= 0 || k <= 0 || (beta != 0.0f && beta != 1.0f)) return false;
  const Library& l = *library;
  dnnl_memory_desc_t a_md = matrix(l, m, k, trans_a ? dnnl_ba : dnnl_ab);
  dnnl_memory_desc_t b_md = matrix(l, k, n, trans_b ? dnnl_ba : dnnl_ab);
  dnnl_memory_desc_t c_md = matrix(l, m, n, dnnl_ab);
  dnnl_primitive_attr_t attr = nullptr;
  dnnl_post_ops_t ops = nullptr;
  dnnl_primitive_desc_t pd = nullptr;
  dnnl_primitive_t primitive = nullptr;
  dnnl_memory_t a_mem = nullptr, b_mem = nullptr, c_mem = nullptr;
  bool ok = a_md && b_md && c_md && l.dnnl_primitive_attr_create(&attr) == dnnl_success;
  if (ok && beta != 0.0f) {
    ok = l.dnnl_post_ops_create(&ops) == dnnl_success &&
         l.dnnl_post_ops_append_sum(ops, 1.0f, 0, dnnl_data_type_undef) == dnnl_success &&
         l.dnnl_primitive_attr_set_post_ops(attr, ops) == dnnl_success;
  }
  // oneDNN keeps compiled kernels in its primitive cache: a shape seen before is made again in microseconds.
  ok = ok && l.dnnl_matmul_primitive_desc_create(&pd, l.engine, a_md, b_md, nullptr, c_md, attr) == dnnl_success &&
       l.dnnl_primitive_create(&primitive, pd) == dnnl_success &&
       l.dnnl_memory_create(&a_mem, a_md, l.engine, const_cast<float*>(a)) == dnnl_success &&
       l.dnnl_memory_create(&b_mem, b_md, l.engine, const_cast<float*>(b)) == dnnl_success &&
       l.dnnl_memory_create(&c_mem, c_md, l.engine, c) == dnnl_success;
  if (ok) {
    const dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, a_mem}, {DNNL_ARG_WEIGHTS, b_mem}, {DNNL_ARG_DST, c_mem}};
    dnnl_stream_t stream = stream_of_this_thread(l);
    ok = stream && l.dnnl_primitive_execute(primitive, stream, 3, args) == dnnl_success &&
         l.dnnl_stream_wait(stream) == dnnl_success;
  }
  for (auto mem : {a_mem, b_mem, c_mem}) {
    if (mem) l.dnnl_memory_destroy(mem);
  }
  if (primitive) l.dnnl_primitive_destroy(primitive);
  if (pd) l.dnnl_primitive_desc_destroy(pd);
  if (ops) l.dnnl_post_ops_destroy(ops);
  if (attr) l.dnnl_primitive_attr_destroy(attr);
  for (auto md : {a_md, b_md, c_md}) {
    if (md) l.dnnl_memory_desc_destroy(md);
  }
  return ok;
}

#else  // built without oneDNN's headers: never loaded, products always use sgemm

std::string load(const std::string&) {
  return "this build of mlxseq._native has no oneDNN support (its headers were not found at build time)";
}
bool loaded() {
  return false;
}
std::string name() {
  return "";
}
long products_made() {
  return 0;
}
bool gemm(bool, bool, int, int, int, const float*, const float*, float, float*) {
  return false;
}
struct Product::State {};
Product::Product(int, int, int, const float*, bool, bool, const float*, const Product*) {}
Product::~Product() = default;
bool Product::ready() const {
  return false;
}
void Product::operator()(const float*, float, float*) const {}

#endif

} // namespace mlxseq::onednn
