// N-API marshalling shared by the addon's entry points (addon_ops.cc: one per op; addon_layer.cc: the layer handle):
// argument access with checks, results, transfers on the addon's op stream, and the guarded entry-point wrapper.
#pragma once

#include <node_api.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "device_buffer.h"
#include "host_staging.h"

namespace moe_napi {

using moe::DeviceBuffer;

struct ArgError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

#define NAPI(call)                                                                          \
  do {                                                                                      \
    if ((call) != napi_ok) throw std::runtime_error(std::string("N-API call failed: ") + #call); \
  } while (0)

// ---- argument access ----
struct Args {
  napi_env env;
  std::vector<napi_value> v;
  const char* fn;
};

inline Args args(napi_env env, napi_callback_info info, size_t n, const char* fn) {
  Args a{env, std::vector<napi_value>(n), fn};
  size_t argc = n;
  NAPI(napi_get_cb_info(env, info, &argc, a.v.data(), nullptr, nullptr));
  if (argc < n) throw ArgError(std::string(fn) + ": expected " + std::to_string(n) + " arguments, got " + std::to_string(argc));
  return a;
}

inline bool isNullish(napi_env env, napi_value v) {
  napi_valuetype t;
  NAPI(napi_typeof(env, v, &t));
  return t == napi_null || t == napi_undefined;
}

template <typename T>
struct View {
  T* data = nullptr;
  size_t length = 0;
};

template <typename T>
View<T> typed(const Args& a, size_t i, const char* name, napi_typedarray_type want, size_t expected, bool optional = false) {
  View<T> out;
  napi_value v = a.v[i];
  if (optional && isNullish(a.env, v)) return out;
  bool isTyped = false;
  NAPI(napi_is_typedarray(a.env, v, &isTyped));
  const char* wantName = want == napi_float32_array ? "Float32Array" : "Int32Array";
  if (!isTyped) throw ArgError(std::string(a.fn) + ": argument '" + name + "' must be a " + wantName);
  napi_typedarray_type type;
  size_t length;
  void* data;
  NAPI(napi_get_typedarray_info(a.env, v, &type, &length, &data, nullptr, nullptr));
  if (type != want) throw ArgError(std::string(a.fn) + ": argument '" + name + "' must be a " + wantName);
  if (length != expected) {
    throw ArgError(std::string(a.fn) + ": argument '" + name + "' must have " + std::to_string(expected) +
                   " elements, got " + std::to_string(length));
  }
  out.data = static_cast<T*>(data);
  out.length = length;
  return out;
}

inline int integer(const Args& a, size_t i, const char* name, int min) {
  double d;
  if (napi_get_value_double(a.env, a.v[i], &d) != napi_ok || d != static_cast<double>(static_cast<long long>(d)) ||
      d < min || d > 2147483647.0) {
    throw ArgError(std::string(a.fn) + ": argument '" + name + "' must be an integer >= " + std::to_string(min));
  }
  return static_cast<int>(d);
}

inline double number(const Args& a, size_t i, const char* name) {
  double d;
  if (napi_get_value_double(a.env, a.v[i], &d) != napi_ok) {
    throw ArgError(std::string(a.fn) + ": argument '" + name + "' must be a number");
  }
  return d;
}

inline bool boolean(const Args& a, size_t i, const char* name) {
  bool b;
  if (napi_get_value_bool(a.env, a.v[i], &b) != napi_ok) {
    throw ArgError(std::string(a.fn) + ": argument '" + name + "' must be a boolean");
  }
  return b;
}

// ---- results ----
template <typename T>
napi_value newTyped(napi_env env, size_t n, T** data) {
  napi_value ab, out;
  void* raw = nullptr;
  NAPI(napi_create_arraybuffer(env, n * sizeof(T), &raw, &ab));
  NAPI(napi_create_typedarray(env, std::is_same<T, float>::value ? napi_float32_array : napi_int32_array, n, ab, 0, &out));
  *data = static_cast<T*>(raw);
  return out;
}

// A Float32Array of n elements in memory that is not zero-filled (a Node Buffer's): every element is written by the
// caller. Falls back to a zeroed array where the Buffer's offset does not suit a Float32Array.
inline napi_value newUninitializedFloat32(napi_env env, size_t n, float** data) {
  napi_value buf, ab, out;
  void* raw = nullptr;
  NAPI(napi_create_buffer(env, n * sizeof(float), &raw, &buf));
  size_t offset = 0;
  NAPI(napi_get_typedarray_info(env, buf, nullptr, nullptr, nullptr, &ab, &offset));
  if (offset % sizeof(float) != 0) return newTyped<float>(env, n, data);
  NAPI(napi_create_typedarray(env, napi_float32_array, n, ab, offset, &out));
  *data = static_cast<float*>(raw);
  return out;
}

// A Float32Array of n elements in a pinned block (the device copies into it at the link's full speed, and a later
// upload of it is direct); the block returns to the pool when the array is collected. Where the runtime refuses
// external buffers (a V8 sandbox), a plain array (pageable) instead.
inline void releasePinned(napi_env env, void* data, void* hint) {
  const size_t capacity = reinterpret_cast<size_t>(hint);
  moe::PinnedPool::instance().release(data, capacity);
  int64_t adjusted;
  (void)napi_adjust_external_memory(env, -static_cast<int64_t>(capacity), &adjusted);
}
inline napi_value newPinnedFloat32(napi_env env, size_t n, float** data) {
  size_t capacity = 0;
  void* block = moe::PinnedPool::instance().acquire(n * sizeof(float), &capacity);
  napi_value ab, out;
  if (napi_create_external_arraybuffer(env, block, n * sizeof(float), releasePinned, reinterpret_cast<void*>(capacity),
                                       &ab) != napi_ok) {
    moe::PinnedPool::instance().release(block, capacity);
    const napi_extended_error_info* info;
    (void)napi_get_last_error_info(env, &info);  // clears the failed call's error state
    return newTyped<float>(env, n, data);
  }
  int64_t adjusted;
  // Tells V8 how much memory the array holds, so that collecting it (and returning the block) is not put off.
  NAPI(napi_adjust_external_memory(env, static_cast<int64_t>(capacity), &adjusted));
  NAPI(napi_create_typedarray(env, napi_float32_array, n, ab, 0, &out));
  *data = static_cast<float*>(block);
  return out;
}

// ---- pooled output arrays (opt-in) ----
// Large output arrays (a host forward's y, an activation's download) in pinned blocks that a later call reuses once
// the array is garbage collected. The device writes into them directly (no staging copy-out) and no call takes a
// fresh array's page faults, nor V8's unmapping of it: at T = 4096 (32 MiB) those were 1.7 ms waited for and 2.5 ms
// of GC per call by default (H200 batch J), the cost TFJS_MOE_CUDA_MALLOC_REUSE removes process-wide. Reuse is
// decided by a weak reference to the ArrayBuffer, which reads empty from the collection that freed it on: Node runs
// an external buffer's finalizer only when the event loop turns, which a synchronous decode or prefill loop never
// lets happen (so finalizers alone would give no block back). The JS side marks each such buffer untransferable:
// a transfer would move the block to a buffer this reference does not see. Where ArrayBuffer.prototype.transfer
// exists (newer Node) JS does not ask for pooled arrays at all.
// Opt-in: the collections that free the arrays come seldom in a synchronous loop (V8 collects under external memory
// pressure only: every ~19 calls at T = 4096, over a hundred at T = 256, H200 batch N), so a pool of a few blocks
// misses most calls, and a miss that grows the pool pays cudaHostAlloc (0.8 ms for 2 MiB): as the default it made
// T = 256 slower (0.74 -> 1.42 ms) while T = 4096 gained (5.5 -> 3.9-5.2).
// TFJS_MOE_CUDA_OUTPUT_POOL_MIB: the most pinned memory the pool holds (default 0: off, new arrays through staging);
// TFJS_MOE_CUDA_OUTPUT_POOL_MIN_KIB: the smallest array pooled (default 1024). Both read per call (A/B).
class OutputPool {
 public:
  static OutputPool& forThread() {  // an env's JS and its finalizers run on one thread
    static thread_local OutputPool* pool = new OutputPool();  // kept: finalizers may still reach it at teardown
    return *pool;
  }
  static size_t envBytes(const char* name, size_t fallback, int shift) {
    const char* v = std::getenv(name);
    return v != nullptr && v[0] != '\0' ? static_cast<size_t>(std::strtoull(v, nullptr, 10)) << shift : fallback;
  }
  static size_t capBytes() { return envBytes("TFJS_MOE_CUDA_OUTPUT_POOL_MIB", 0, 20); }
  static size_t minBytes() { return envBytes("TFJS_MOE_CUDA_OUTPUT_POOL_MIN_KIB", size_t(1) << 20, 10); }

  // An ArrayBuffer of `bytes` over a pooled pinned block (its data in *data), or nullptr when the array is too
  // small, the pool is off or full, or the runtime refuses external buffers (a V8 sandbox).
  napi_value acquire(napi_env env, size_t bytes, void** data) {
    const size_t cap = capBytes();
    if (cap == 0 || bytes == 0 || bytes < minBytes() || refused_) return nullptr;
    if (!hooked_) {  // a worker's env ends before the process: its blocks go back then
      NAPI(napi_add_env_cleanup_hook(env, teardown, this));
      hooked_ = true;
    }
    Entry* best = nullptr;
    for (Entry* e : entries_) {
      if (!collected(env, e)) continue;
      if (e->capacity >= bytes && e->capacity <= 2 * bytes + 4096 && (best == nullptr || e->capacity < best->capacity)) {
        best = e;
      }
    }
    if (best == nullptr) {
      // Room for a new block: free blocks that do not fit go back to the pinned pool, oldest first.
      for (size_t i = 0; i < entries_.size() && heldBytes_ + bytes > cap;) {
        if (entries_[i]->ref == nullptr) retire(i);
        else i++;
      }
      if (heldBytes_ + bytes > cap) {
        stats_.declined++;
        return nullptr;
      }
      best = new Entry();
      best->block = moe::PinnedPool::instance().acquire(bytes, &best->capacity);
      heldBytes_ += best->capacity;
      entries_.push_back(best);
      stats_.allocated++;
    } else {
      stats_.reused++;
    }
    napi_value ab;
    if (napi_create_external_arraybuffer(env, best->block, bytes, finalize, best, &ab) != napi_ok) {
      const napi_extended_error_info* info;
      (void)napi_get_last_error_info(env, &info);  // clears the failed call's error state
      refused_ = true;
      return nullptr;
    }
    best->pendingFinalizers++;
    NAPI(napi_create_reference(env, ab, 0, &best->ref));
    int64_t adjusted;
    // Tells V8 the array holds the block, so that an unreachable one is collected (and its block reused) soon.
    NAPI(napi_adjust_external_memory(env, static_cast<int64_t>(best->capacity), &adjusted));
    *data = best->block;
    return ab;
  }

  struct Stats {
    double allocated = 0, reused = 0, declined = 0;
  };
  const Stats& stats() const { return stats_; }
  size_t heldBytes() const { return heldBytes_; }

 private:
  struct Entry {
    void* block = nullptr;
    size_t capacity = 0;
    napi_ref ref = nullptr;  // weak, to the array handed out last; nullptr once seen collected
    int pendingFinalizers = 0;
    bool retired = false;
  };

  // Whether e's last array is gone (then e is free): its weak reference reads empty.
  bool collected(napi_env env, Entry* e) {
    if (e->ref == nullptr) return true;
    napi_value v = nullptr;
    if (napi_get_reference_value(env, e->ref, &v) != napi_ok || v != nullptr) return false;
    (void)napi_delete_reference(env, e->ref);
    e->ref = nullptr;
    int64_t adjusted;
    (void)napi_adjust_external_memory(env, -static_cast<int64_t>(e->capacity), &adjusted);
    return true;
  }

  // Drops free entry i: its block goes back now (no array over it is reachable), the entry itself once the
  // finalizers of its earlier arrays have run.
  void retire(size_t i) {
    Entry* e = entries_[i];
    entries_.erase(entries_.begin() + static_cast<std::ptrdiff_t>(i));
    heldBytes_ -= e->capacity;
    moe::PinnedPool::instance().release(e->block, e->capacity);
    e->block = nullptr;
    e->retired = true;
    if (e->pendingFinalizers == 0) delete e;
  }

  static void finalize(napi_env, void*, void* hint) {
    Entry* e = static_cast<Entry*>(hint);
    if (--e->pendingFinalizers == 0 && e->retired) delete e;
  }

  // The env is ending (no JavaScript runs any more): every block goes back, the entries once their finalizers ran.
  static void teardown(void* arg) {
    OutputPool* p = static_cast<OutputPool*>(arg);
    for (Entry* e : p->entries_) e->ref = nullptr;  // the env's references go with it
    while (!p->entries_.empty()) p->retire(p->entries_.size() - 1);
    p->hooked_ = false;
  }

  std::vector<Entry*> entries_;
  size_t heldBytes_ = 0;
  bool refused_ = false, hooked_ = false;
  Stats stats_;
};

// A pooled Float32Array of n elements (see OutputPool), or nullptr (the caller makes a plain one).
inline napi_value newPooledFloat32(napi_env env, size_t n, float** data) {
  void* block = nullptr;
  napi_value ab = OutputPool::forThread().acquire(env, n * sizeof(float), &block);
  if (ab == nullptr) return nullptr;
  napi_value out;
  NAPI(napi_create_typedarray(env, napi_float32_array, n, ab, 0, &out));
  *data = static_cast<float*>(block);
  return out;
}

inline void setProp(napi_env env, napi_value obj, const char* key, napi_value v) { NAPI(napi_set_named_property(env, obj, key, v)); }
inline napi_value num(napi_env env, double d) {
  napi_value v;
  NAPI(napi_create_double(env, d, &v));
  return v;
}
inline napi_value str(napi_env env, const std::string& s) {
  napi_value v;
  NAPI(napi_create_string_utf8(env, s.c_str(), s.size(), &v));
  return v;
}
inline napi_value boolv(napi_env env, bool b) {
  napi_value v;
  NAPI(napi_get_boolean(env, b, &v));
  return v;
}

// ---- device transfers on the addon's op stream ----
// Freed stream-ordered memory the device's default pool keeps across synchronisations. The pool's own default (0)
// hands everything back at each synchronisation, so the next call's cudaMallocAsync maps fresh memory: a
// device-resident stack's new activation per layer, each call after the download (session 4: 70-90 us of host
// time per layer enqueued at T <= 16). TFJS_MOE_CUDA_POOL_KEEP_MIB (read once, at the stream's creation) sets it
// for A/B; 0 is the pool's default.
inline uint64_t poolKeepBytes() {
  const char* v = std::getenv("TFJS_MOE_CUDA_POOL_KEEP_MIB");
  const uint64_t mib = v != nullptr && v[0] != '\0' ? std::strtoull(v, nullptr, 10) : 1024;
  return mib << 20;
}

inline cudaStream_t opStream() {
  static cudaStream_t s = nullptr;
  if (s == nullptr) {
    MOE_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    int device = 0;
    cudaMemPool_t pool = nullptr;
    MOE_CUDA(cudaGetDevice(&device));
    MOE_CUDA(cudaDeviceGetDefaultMemPool(&pool, device));
    uint64_t keep = poolKeepBytes();
    MOE_CUDA(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
  }
  return s;
}

template <typename T>
DeviceBuffer upload(const T* host, size_t n) {
  DeviceBuffer b(n * sizeof(T), opStream());
  if (n) MOE_CUDA(cudaMemcpyAsync(b.as(), host, n * sizeof(T), cudaMemcpyHostToDevice, opStream()));
  return b;
}
template <typename T>
void download(T* host, const DeviceBuffer& b, size_t n) {
  if (n) MOE_CUDA(cudaMemcpyAsync(host, b.as(), n * sizeof(T), cudaMemcpyDeviceToHost, opStream()));
}
inline void finish() { MOE_CUDA(cudaStreamSynchronize(opStream())); }

// Runs body, converting C++ exceptions into a thrown JS Error (code ERR_CUDA for CUDA failures).
template <typename F>
napi_value guarded(napi_env env, F body) {
  try {
    return body();
  } catch (const moe::CudaError& e) {
    napi_throw_error(env, "ERR_CUDA", e.what());
  } catch (const ArgError& e) {
    napi_throw_type_error(env, "ERR_INVALID_ARG", e.what());
  } catch (const std::exception& e) {
    napi_throw_error(env, nullptr, e.what());
  } catch (...) {
    napi_throw_error(env, nullptr, "tfjs-moe cuda addon: unknown native error");
  }
  return nullptr;
}

// One entry point: the argument count and name checked, then body(args) under guarded (the shared prologue of
// every entry point; the body uploads, launches and downloads).
template <typename F>
napi_value entry(napi_env env, napi_callback_info info, size_t n, const char* fn, F body) {
  return guarded(env, [&] {
    Args a = args(env, info, n, fn);
    return body(a);
  });
}

void defineOps(napi_env env, napi_value exports);
void defineLayer(napi_env env, napi_value exports);

}  // namespace moe_napi
