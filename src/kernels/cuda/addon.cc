// N-API glue of the tfjs-moe CUDA addon (plain node_api.h: no build-time download, no node-addon-api needed).
// Every entry point is synchronous, validates what it is given before any GPU work, and turns every failure
// (bad argument, CUDA error) into a JS Error; nothing here may abort the process.
#include <node_api.h>

#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "device_buffer.h"
#include "moe_kernels.h"
#include "moe_layer.h"

namespace {

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

Args args(napi_env env, napi_callback_info info, size_t n, const char* fn) {
  Args a{env, std::vector<napi_value>(n), fn};
  size_t argc = n;
  NAPI(napi_get_cb_info(env, info, &argc, a.v.data(), nullptr, nullptr));
  if (argc < n) throw ArgError(std::string(fn) + ": expected " + std::to_string(n) + " arguments, got " + std::to_string(argc));
  return a;
}

bool isNullish(napi_env env, napi_value v) {
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

int integer(const Args& a, size_t i, const char* name, int min) {
  double d;
  if (napi_get_value_double(a.env, a.v[i], &d) != napi_ok || d != static_cast<double>(static_cast<long long>(d)) ||
      d < min || d > 2147483647.0) {
    throw ArgError(std::string(a.fn) + ": argument '" + name + "' must be an integer >= " + std::to_string(min));
  }
  return static_cast<int>(d);
}

double number(const Args& a, size_t i, const char* name) {
  double d;
  if (napi_get_value_double(a.env, a.v[i], &d) != napi_ok) {
    throw ArgError(std::string(a.fn) + ": argument '" + name + "' must be a number");
  }
  return d;
}

bool boolean(const Args& a, size_t i, const char* name) {
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

void setProp(napi_env env, napi_value obj, const char* key, napi_value v) { NAPI(napi_set_named_property(env, obj, key, v)); }
napi_value num(napi_env env, double d) {
  napi_value v;
  NAPI(napi_create_double(env, d, &v));
  return v;
}
napi_value str(napi_env env, const std::string& s) {
  napi_value v;
  NAPI(napi_create_string_utf8(env, s.c_str(), s.size(), &v));
  return v;
}
napi_value boolv(napi_env env, bool b) {
  napi_value v;
  NAPI(napi_get_boolean(env, b, &v));
  return v;
}

// ---- device transfers on the addon's op stream ----
cudaStream_t opStream() {
  static cudaStream_t s = nullptr;
  if (s == nullptr) MOE_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
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
void finish() { MOE_CUDA(cudaStreamSynchronize(opStream())); }

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

// ---- entry points ----
napi_value Status(napi_env env, napi_callback_info) {
  return guarded(env, [&] {
    napi_value o;
    NAPI(napi_create_object(env, &o));
    int runtime = 0, driver = 0, count = 0;
    (void)cudaRuntimeGetVersion(&runtime);
    (void)cudaDriverGetVersion(&driver);  // 0 when no driver is installed
    setProp(env, o, "runtimeVersion", num(env, runtime));
    setProp(env, o, "driverVersion", num(env, driver));
    const cudaError_t st = cudaGetDeviceCount(&count);
    if (st != cudaSuccess || count == 0) {
      (void)cudaGetLastError();
      std::string code, reason;
      if (st == cudaErrorInsufficientDriver || st == cudaErrorNotSupported) {
        code = "no-driver";
        reason = driver == 0 ? std::string("no CUDA driver found (libcuda could not be loaded): ") + cudaGetErrorString(st)
                             : std::string("the CUDA driver is too old for this addon: ") + cudaGetErrorString(st);
      } else if (st == cudaSuccess || st == cudaErrorNoDevice) {
        code = "no-device";
        reason = "no CUDA device: the driver reports no GPU";
      } else {
        code = "cuda-error";
        reason = std::string("CUDA initialization failed: ") + cudaGetErrorString(st);
      }
      setProp(env, o, "available", boolv(env, false));
      setProp(env, o, "code", str(env, code));
      setProp(env, o, "reason", str(env, reason));
      return o;
    }
    int dev = 0;
    MOE_CUDA(cudaGetDevice(&dev));
    cudaDeviceProp prop;
    MOE_CUDA(cudaGetDeviceProperties(&prop, dev));
    setProp(env, o, "available", boolv(env, true));
    setProp(env, o, "device", str(env, prop.name));
    setProp(env, o, "computeCapability", str(env, std::to_string(prop.major) + "." + std::to_string(prop.minor)));
    setProp(env, o, "memoryBytes", num(env, static_cast<double>(prop.totalGlobalMem)));
    setProp(env, o, "multiprocessors", num(env, prop.multiProcessorCount));
    return o;
  });
}

// topkSelect(logits, T, E, bias|null, k, renormalize) -> {ids, weights}
napi_value TopkSelect(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a = args(env, info, 6, "topkSelect");
    const int T = integer(a, 1, "T", 0), E = integer(a, 2, "E", 1), k = integer(a, 4, "k", 1);
    if (k > E) throw ArgError("topkSelect: argument 'k' must be <= E");
    auto logits = typed<float>(a, 0, "logits", napi_float32_array, static_cast<size_t>(T) * E);
    auto bias = typed<float>(a, 3, "bias", napi_float32_array, E, true);
    const bool renormalize = boolean(a, 5, "renormalize");
    napi_value o, idsV, wV;
    int* ids;
    float* w;
    NAPI(napi_create_object(env, &o));
    idsV = newTyped<int>(env, static_cast<size_t>(T) * k, &ids);
    wV = newTyped<float>(env, static_cast<size_t>(T) * k, &w);
    DeviceBuffer dL = upload(logits.data, logits.length), dB = upload(bias.data, bias.length);
    DeviceBuffer dIds(sizeof(int) * T * k, opStream()), dW(sizeof(float) * T * k, opStream());
    moe::launchTopkSelect(dL.as<float>(), T, E, E, bias.data ? dB.as<float>() : nullptr, k, renormalize, dIds.as<int>(),
                          dW.as<float>(), nullptr, opStream());
    download(ids, dIds, static_cast<size_t>(T) * k);
    download(w, dW, static_cast<size_t>(T) * k);
    finish();
    setProp(env, o, "ids", idsV);
    setProp(env, o, "weights", wV);
    return o;
  });
}

// moeScores(logits, T, E, nGroup, topkGroup, k, rsf, bias|null, renormalize) -> {scores, weights, ids}
napi_value MoeScores(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a = args(env, info, 9, "moeScores");
    const int T = integer(a, 1, "T", 0), E = integer(a, 2, "E", 1);
    const int nGroup = integer(a, 3, "nGroup", 1), topkGroup = integer(a, 4, "topkGroup", 1), k = integer(a, 5, "k", 1);
    if (E % nGroup != 0 || topkGroup > nGroup || k > E || k > topkGroup * (E / nGroup)) {
      throw ArgError("moeScores: need E % nGroup == 0, topkGroup <= nGroup, k <= topkGroup * E / nGroup");
    }
    const float rsf = static_cast<float>(number(a, 6, "routedScalingFactor"));
    auto logits = typed<float>(a, 0, "logits", napi_float32_array, static_cast<size_t>(T) * E);
    auto bias = typed<float>(a, 7, "bias", napi_float32_array, E, true);
    const bool renorm = boolean(a, 8, "renormalize");
    napi_value o;
    NAPI(napi_create_object(env, &o));
    float *scores, *w;
    int* ids;
    napi_value sV = newTyped<float>(env, static_cast<size_t>(T) * E, &scores);
    napi_value wV = newTyped<float>(env, static_cast<size_t>(T) * k, &w);
    napi_value iV = newTyped<int>(env, static_cast<size_t>(T) * k, &ids);
    DeviceBuffer dL = upload(logits.data, logits.length), dB = upload(bias.data, bias.length);
    DeviceBuffer dS(sizeof(float) * T * E, opStream()), dW(sizeof(float) * T * k, opStream()),
        dI(sizeof(int) * T * k, opStream());
    moe::launchMoeScores(dL.as<float>(), T, E, E, bias.data ? dB.as<float>() : nullptr, nGroup, topkGroup, k, rsf,
                         renorm, dS.as<float>(), dI.as<int>(), dW.as<float>(), nullptr, opStream());
    download(scores, dS, static_cast<size_t>(T) * E);
    download(w, dW, static_cast<size_t>(T) * k);
    download(ids, dI, static_cast<size_t>(T) * k);
    finish();
    setProp(env, o, "scores", sV);
    setProp(env, o, "weights", wV);
    setProp(env, o, "ids", iV);
    return o;
  });
}

// permute(x, T, D, ids, k, E, alignment) -> {permutedX, tokensPerExpert, expertOffsets, rowMap}
napi_value Permute(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a = args(env, info, 7, "permute");
    const int T = integer(a, 1, "T", 0), D = integer(a, 2, "D", 0), k = integer(a, 4, "k", 1);
    const int E = integer(a, 5, "E", 1), alignment = integer(a, 6, "alignment", 1);
    auto x = typed<float>(a, 0, "x", napi_float32_array, static_cast<size_t>(T) * D);
    auto ids = typed<int>(a, 3, "ids", napi_int32_array, static_cast<size_t>(T) * k);
    for (size_t i = 0; i < ids.length; i++) {
      if (ids.data[i] < 0 || ids.data[i] >= E) {
        throw ArgError("moePermute: topkIds values must be in [0, numExperts) = [0, " + std::to_string(E) + "), got " +
                       std::to_string(ids.data[i]) + " at flat index " + std::to_string(i));
      }
    }
    const long long Rll = alignment == 1 ? 1LL * T * k : 1LL * T * k + 1LL * E * (alignment - 1);
    if (Rll > 2147483647LL) throw ArgError("moePermute: too many rows");
    const int R = static_cast<int>(Rll);
    napi_value o;
    NAPI(napi_create_object(env, &o));
    float* px;
    int *tpe, *offs, *rowMap;
    napi_value pxV = newTyped<float>(env, static_cast<size_t>(R) * D, &px);
    napi_value tpeV = newTyped<int>(env, E, &tpe);
    napi_value offV = newTyped<int>(env, E + 1, &offs);
    napi_value rmV = newTyped<int>(env, static_cast<size_t>(T) * k, &rowMap);
    DeviceBuffer dX = upload(x.data, x.length), dIds = upload(ids.data, ids.length);
    DeviceBuffer work(sizeof(int) * (E + (E + 1) + moe::kTileClasses * (E + 1) + R + static_cast<size_t>(T) * k + E), opStream());
    int* w = work.as<int>();
    moe::PermuteBuffers pb{w, w + E, w + 2 * E + 1, nullptr, nullptr, nullptr};
    pb.rowToPair = pb.tilePrefix + moe::kTileClasses * (E + 1);
    pb.rowMap = pb.rowToPair + R;
    pb.scratch = pb.rowMap + static_cast<size_t>(T) * k;
    moe::launchPermute(dIds.as<int>(), T, k, E, alignment, R, pb, opStream());
    DeviceBuffer dPx(sizeof(float) * R * static_cast<size_t>(D), opStream());
    moe::launchGatherRows(dX.as<float>(), D, pb.rowToPair, k, R, dPx.as<float>(), opStream());
    download(px, dPx, static_cast<size_t>(R) * D);
    if (E) MOE_CUDA(cudaMemcpyAsync(tpe, pb.tokensPerExpert, sizeof(int) * E, cudaMemcpyDeviceToHost, opStream()));
    MOE_CUDA(cudaMemcpyAsync(offs, pb.offsets, sizeof(int) * (E + 1), cudaMemcpyDeviceToHost, opStream()));
    if (T > 0) MOE_CUDA(cudaMemcpyAsync(rowMap, pb.rowMap, sizeof(int) * T * k, cudaMemcpyDeviceToHost, opStream()));
    finish();
    setProp(env, o, "permutedX", pxV);
    setProp(env, o, "tokensPerExpert", tpeV);
    setProp(env, o, "expertOffsets", offV);
    setProp(env, o, "rowMap", rmV);
    return o;
  });
}

// batchedGemm(lhs, R, K, rhs, E, N, segments, segmentsAreOffsets, transposeRhs, bias|null) -> Float32Array [R*N]
napi_value BatchedGemm(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a = args(env, info, 10, "batchedGemm");
    const int R = integer(a, 1, "R", 0), K = integer(a, 2, "K", 0), E = integer(a, 4, "E", 1), N = integer(a, 5, "N", 0);
    const bool areOffsets = boolean(a, 7, "segmentsAreOffsets"), transposeRhs = boolean(a, 8, "transposeRhs");
    auto lhs = typed<float>(a, 0, "lhs", napi_float32_array, static_cast<size_t>(R) * K);
    auto rhs = typed<float>(a, 3, "rhs", napi_float32_array, static_cast<size_t>(E) * K * N);
    auto seg = typed<int>(a, 6, "segments", napi_int32_array, areOffsets ? E + 1 : E);
    auto bias = typed<float>(a, 9, "bias", napi_float32_array, static_cast<size_t>(E) * N, true);
    // Segments bound every row the kernel touches: check them here rather than trust them on the device.
    long long total = 0;
    for (int e = 0; e < E; e++) {
      const long long len = areOffsets ? 1LL * seg.data[e + 1] - seg.data[e] : seg.data[e];
      if (len < 0 || (areOffsets && seg.data[0] < 0)) {
        throw ArgError("batchedGemm: argument 'segments' must be non-decreasing offsets (or non-negative counts) starting at >= 0");
      }
      total += len;
    }
    if ((areOffsets ? seg.data[0] + total : total) > R) {
      throw ArgError("batchedGemm: argument 'segments' covers rows past R = " + std::to_string(R));
    }
    float* out;
    napi_value outV = newTyped<float>(env, static_cast<size_t>(R) * N, &out);
    DeviceBuffer dA = upload(lhs.data, lhs.length), dBias = upload(bias.data, bias.length), dSeg = upload(seg.data, seg.length);
    DeviceBuffer dB(sizeof(float) * rhs.length, opStream());
    if (transposeRhs) {
      if (rhs.length) MOE_CUDA(cudaMemcpyAsync(dB.as(), rhs.data, sizeof(float) * rhs.length, cudaMemcpyHostToDevice, opStream()));
    } else {
      DeviceBuffer raw = upload(rhs.data, rhs.length);  // [E][K][N] -> [E][N][K]
      for (int e = 0; e < E; e++) {
        moe::launchPackWeights(raw.as<float>() + static_cast<size_t>(e) * K * N, K, N,
                               dB.as<float>() + static_cast<size_t>(e) * K * N, moe::DType::kFloat32, N, K, 0, opStream());
      }
    }
    DeviceBuffer segs(sizeof(int) * (E + 1) * (1 + moe::kTileClasses), opStream());
    moe::launchSegmentsFrom(dSeg.as<int>(), areOffsets, E, segs.as<int>(), segs.as<int>() + E + 1, opStream());
    DeviceBuffer dC(sizeof(float) * R * static_cast<size_t>(N), opStream());
    if (dC.bytes()) MOE_CUDA(cudaMemsetAsync(dC.as(), 0, dC.bytes(), opStream()));  // rows in no segment are 0
    moe::GemmProblem p;
    p.A = dA.as();
    p.lda = K;
    p.B = dB.as();
    p.bias = bias.data ? dBias.as<float>() : nullptr;
    p.C = dC.as();
    p.ldc = N;
    p.M = R;
    p.N = N;
    p.K = K;
    p.seg = moe::SegmentView{segs.as<int>(), segs.as<int>() + E + 1, E};
    p.rowsPerSegmentHint = 2 * R / std::max(1, std::min(E, std::max(R, 1)));
    moe::launchGroupedGemm(p, opStream());
    download(out, dC, static_cast<size_t>(R) * N);
    finish();
    return outV;
  });
}

// swiglu(x, R, I, scale|null) -> Float32Array [R*I]
napi_value Swiglu(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a = args(env, info, 4, "swiglu");
    const int R = integer(a, 1, "R", 0), I = integer(a, 2, "I", 0);
    auto x = typed<float>(a, 0, "x", napi_float32_array, static_cast<size_t>(R) * 2 * I);
    auto scale = typed<float>(a, 3, "scale", napi_float32_array, R, true);
    float* out;
    napi_value outV = newTyped<float>(env, static_cast<size_t>(R) * I, &out);
    DeviceBuffer dX = upload(x.data, x.length), dS = upload(scale.data, scale.length);
    DeviceBuffer dO(sizeof(float) * R * static_cast<size_t>(I), opStream());
    moe::launchSwiglu(dX.as<float>(), R, I, scale.data ? dS.as<float>() : nullptr, dO.as<float>(), opStream());
    download(out, dO, static_cast<size_t>(R) * I);
    finish();
    return outV;
  });
}

// combine(y, R, D, rowMap, weights, ids, T, k, E, bias|null, weightsApplied) -> Float32Array [T*D]
napi_value Combine(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a = args(env, info, 11, "combine");
    const int R = integer(a, 1, "R", 0), D = integer(a, 2, "D", 0), T = integer(a, 6, "T", 0), k = integer(a, 7, "k", 1);
    const int E = integer(a, 8, "E", 0);
    auto y = typed<float>(a, 0, "y", napi_float32_array, static_cast<size_t>(R) * D);
    auto rowMap = typed<int>(a, 3, "rowMap", napi_int32_array, static_cast<size_t>(T) * k);
    auto w = typed<float>(a, 4, "weights", napi_float32_array, static_cast<size_t>(T) * k);
    auto ids = typed<int>(a, 5, "ids", napi_int32_array, static_cast<size_t>(T) * k);
    auto bias = typed<float>(a, 9, "bias", napi_float32_array, static_cast<size_t>(E) * D, true);
    const bool applied = boolean(a, 10, "weightsApplied");
    for (size_t i = 0; i < rowMap.length; i++) {
      if (rowMap.data[i] < 0 || rowMap.data[i] >= R) {
        throw ArgError("moeCombine: rowMap values must be in [0, R) = [0, " + std::to_string(R) + "), got " +
                       std::to_string(rowMap.data[i]) + " at flat index " + std::to_string(i));
      }
      if (bias.data && (ids.data[i] < 0 || ids.data[i] >= E)) {
        throw ArgError("moeCombine: topkIds values must be in [0, E) = [0, " + std::to_string(E) + ") when downProjBias is given, got " +
                       std::to_string(ids.data[i]));
      }
    }
    float* out;
    napi_value outV = newTyped<float>(env, static_cast<size_t>(T) * D, &out);
    DeviceBuffer dY = upload(y.data, y.length), dR = upload(rowMap.data, rowMap.length), dW = upload(w.data, w.length),
                 dI = upload(ids.data, ids.length), dB = upload(bias.data, bias.length);
    DeviceBuffer dO(sizeof(float) * T * static_cast<size_t>(D), opStream());
    moe::launchCombine(dY.as<float>(), R, D, dR.as<int>(), dW.as<float>(), dI.as<int>(), T, k, E,
                       bias.data ? dB.as<float>() : nullptr, applied, dO.as<float>(), opStream());
    download(out, dO, static_cast<size_t>(T) * D);
    finish();
    return outV;
  });
}

// ---- the layer ----
struct LayerHandle {
  std::unique_ptr<moe::MoeLayer> layer;
};

void finalizeLayer(napi_env, void* data, void*) { delete static_cast<LayerHandle*>(data); }

LayerHandle* handleOf(const Args& a) {
  void* p = nullptr;
  if (napi_get_value_external(a.env, a.v[0], &p) != napi_ok || p == nullptr) {
    throw ArgError(std::string(a.fn) + ": argument 'handle' must be a layer handle from layerCreate");
  }
  auto* h = static_cast<LayerHandle*>(p);
  if (!h->layer) throw ArgError(std::string(a.fn) + ": the layer handle was disposed");
  return h;
}

napi_value prop(napi_env env, napi_value obj, const char* key) {
  napi_value v;
  NAPI(napi_get_named_property(env, obj, key, &v));
  return v;
}

// layerCreate(config, weights) -> handle. config: {hidden, numExperts, topK, moeIntermediateSize, topkMethod,
// nGroup, topkGroup, routedScalingFactor, renormalize, useCorrectionBias, latentSize, withBias, probInAdvance,
// sharedExpertIntermediateSize, sharedExpertGate, computeDtype}; weights: Float32Arrays named as in RefMoeWeights.
napi_value LayerCreate(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a = args(env, info, 2, "layerCreate");
    napi_value c = a.v[0], wo = a.v[1];
    auto getNum = [&](const char* key, double dflt) {
      napi_value v = prop(env, c, key);
      if (isNullish(env, v)) return dflt;
      double d;
      if (napi_get_value_double(env, v, &d) != napi_ok) throw ArgError(std::string("layerCreate: config.") + key + " must be a number");
      return d;
    };
    auto getBool = [&](const char* key, bool dflt) {
      napi_value v = prop(env, c, key);
      if (isNullish(env, v)) return dflt;
      bool b;
      if (napi_get_value_bool(env, v, &b) != napi_ok) throw ArgError(std::string("layerCreate: config.") + key + " must be a boolean");
      return b;
    };
    auto getStr = [&](const char* key, const char* dflt) {
      napi_value v = prop(env, c, key);
      if (isNullish(env, v)) return std::string(dflt);
      char buf[64];
      size_t len;
      if (napi_get_value_string_utf8(env, v, buf, sizeof(buf), &len) != napi_ok) {
        throw ArgError(std::string("layerCreate: config.") + key + " must be a string");
      }
      return std::string(buf, len);
    };
    moe::LayerConfig cfg;
    cfg.hidden = static_cast<int>(getNum("hidden", 0));
    cfg.numExperts = static_cast<int>(getNum("numExperts", 0));
    cfg.topK = static_cast<int>(getNum("topK", 0));
    cfg.intermediate = static_cast<int>(getNum("moeIntermediateSize", 0));
    const std::string method = getStr("topkMethod", "greedy");
    if (method != "greedy" && method != "noaux_tc") throw ArgError("layerCreate: config.topkMethod must be 'greedy' or 'noaux_tc'");
    cfg.noauxTc = method == "noaux_tc";
    cfg.nGroup = static_cast<int>(getNum("nGroup", 1));
    cfg.topkGroup = static_cast<int>(getNum("topkGroup", 1));
    cfg.routedScalingFactor = static_cast<float>(getNum("routedScalingFactor", 1));
    cfg.renormalize = getBool("renormalize", true);
    cfg.useCorrectionBias = getBool("useCorrectionBias", false);
    cfg.latent = static_cast<int>(getNum("latentSize", 0));
    cfg.withBias = getBool("withBias", false);
    cfg.probInAdvance = getBool("probInAdvance", false);
    cfg.sharedIntermediate = static_cast<int>(getNum("sharedExpertIntermediateSize", 0));
    cfg.sharedGate = getBool("sharedExpertGate", false);
    const std::string dt = getStr("computeDtype", "float32");
    if (dt == "float32") cfg.compute = moe::DType::kFloat32;
    else if (dt == "bfloat16") cfg.compute = moe::DType::kBFloat16;
    else if (dt == "float16") cfg.compute = moe::DType::kFloat16;
    else throw ArgError("layerCreate: config.computeDtype must be 'float32', 'bfloat16' or 'float16', got '" + dt + "'");

    const size_t H = cfg.hidden, E = cfg.numExperts, I = cfg.intermediate, L = cfg.latent, S = cfg.sharedIntermediate;
    const size_t D = L ? L : H;
    Args wa{env, {}, "layerCreate"};
    auto weight = [&](const char* key, size_t n, bool needed) -> const float* {
      napi_value v = prop(env, wo, key);
      if (isNullish(env, v)) {
        if (needed) throw ArgError(std::string("layerCreate: weights.") + key + " is required by this config");
        return nullptr;
      }
      wa.v = {v};
      return typed<float>(wa, 0, (std::string("weights.") + key).c_str(), napi_float32_array, n).data;
    };
    moe::LayerWeights w;
    w.gateWeight = weight("gateWeight", H * E, true);
    w.gateCorrectionBias = weight("gateCorrectionBias", E, cfg.useCorrectionBias);
    w.upGateProjWeight = weight("upGateProjWeight", E * D * 2 * I, true);
    w.downProjWeight = weight("downProjWeight", E * I * D, true);
    if (cfg.withBias) {
      w.upGateProjBias = weight("upGateProjBias", E * 2 * I, true);
      w.downProjBias = weight("downProjBias", E * D, true);
    }
    if (L) {
      w.fc1LatentProjWeight = weight("fc1LatentProjWeight", H * L, true);
      w.fc2LatentProjWeight = weight("fc2LatentProjWeight", L * H, true);
    }
    if (S) {
      w.sharedUpGateProjWeight = weight("sharedUpGateProjWeight", H * 2 * S, true);
      w.sharedDownProjWeight = weight("sharedDownProjWeight", S * H, true);
    }
    if (cfg.sharedGate) w.sharedExpertGateWeight = weight("sharedExpertGateWeight", H, true);

    auto* h = new LayerHandle{std::make_unique<moe::MoeLayer>(cfg, w)};
    napi_value ext;
    if (napi_create_external(env, h, finalizeLayer, nullptr, &ext) != napi_ok) {
      delete h;
      throw std::runtime_error("layerCreate: napi_create_external failed");
    }
    return ext;
  });
}

// layerForward(handle, x, T, useGraph) -> Float32Array [T*H]
napi_value LayerForward(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a = args(env, info, 4, "layerForward");
    LayerHandle* h = handleOf(a);
    const int T = integer(a, 2, "T", 0);
    const size_t n = static_cast<size_t>(T) * h->layer->hidden();
    auto x = typed<float>(a, 1, "x", napi_float32_array, n);
    const bool useGraph = boolean(a, 3, "useGraph");
    float* out;
    napi_value outV = newTyped<float>(env, n, &out);
    h->layer->forward(x.data, T, out, useGraph);
    return outV;
  });
}

// layerBenchmark(handle, x, T, warmup, iters, useGraph) -> Float32Array of per-iteration kernel milliseconds
napi_value LayerBenchmark(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a = args(env, info, 6, "layerBenchmark");
    LayerHandle* h = handleOf(a);
    const int T = integer(a, 2, "T", 1), warmup = integer(a, 3, "warmup", 0), iters = integer(a, 4, "iters", 1);
    auto x = typed<float>(a, 1, "x", napi_float32_array, static_cast<size_t>(T) * h->layer->hidden());
    const bool useGraph = boolean(a, 5, "useGraph");
    const std::vector<float> ms = h->layer->benchmark(x.data, T, warmup, iters, useGraph);
    float* out;
    napi_value outV = newTyped<float>(env, ms.size(), &out);
    std::memcpy(out, ms.data(), ms.size() * sizeof(float));
    return outV;
  });
}

// layerProfile(handle, x, T, iters) -> {stage name: median ms} (eager launches, events between stages)
napi_value LayerProfile(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a = args(env, info, 4, "layerProfile");
    LayerHandle* h = handleOf(a);
    const int T = integer(a, 2, "T", 1), iters = integer(a, 3, "iters", 1);
    auto x = typed<float>(a, 1, "x", napi_float32_array, static_cast<size_t>(T) * h->layer->hidden());
    napi_value o;
    NAPI(napi_create_object(env, &o));
    for (const auto& [name, ms] : h->layer->profile(x.data, T, iters)) setProp(env, o, name.c_str(), num(env, ms));
    return o;
  });
}

// layerDispose(handle): frees the resident weights now rather than at garbage collection.
napi_value LayerDispose(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a = args(env, info, 1, "layerDispose");
    void* p = nullptr;
    if (napi_get_value_external(env, a.v[0], &p) != napi_ok || p == nullptr) {
      throw ArgError("layerDispose: argument 'handle' must be a layer handle from layerCreate");
    }
    static_cast<LayerHandle*>(p)->layer.reset();
    napi_value u;
    NAPI(napi_get_undefined(env, &u));
    return u;
  });
}

// layerResidentBytes(handle) -> bytes of weights held on the GPU
napi_value LayerResidentBytes(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a = args(env, info, 1, "layerResidentBytes");
    return num(env, static_cast<double>(handleOf(a)->layer->residentBytes()));
  });
}

}  // namespace

NAPI_MODULE_INIT() {
  const napi_property_descriptor props[] = {
      {"status", nullptr, Status, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"topkSelect", nullptr, TopkSelect, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"moeScores", nullptr, MoeScores, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"permute", nullptr, Permute, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"batchedGemm", nullptr, BatchedGemm, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"swiglu", nullptr, Swiglu, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"combine", nullptr, Combine, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"layerCreate", nullptr, LayerCreate, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"layerForward", nullptr, LayerForward, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"layerBenchmark", nullptr, LayerBenchmark, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"layerProfile", nullptr, LayerProfile, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"layerDispose", nullptr, LayerDispose, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"layerResidentBytes", nullptr, LayerResidentBytes, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
  };
  if (napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props) != napi_ok) return nullptr;
  return exports;
}
