// The addon's layer handle API: a MoeLayer (moe_layer.h) created from the layer config and weights, run, timed,
// profiled and freed through an external handle; and device-resident activations ([T, H] float32 on the GPU) that
// consecutive layers pass to each other without a host round trip.
#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "addon_napi.h"
#include "moe_kernels.h"
#include "moe_layer.h"

namespace moe_napi {
namespace {

// ---- the layer ----
struct LayerHandle {
  std::unique_ptr<moe::MoeLayer> layer;
  // A split forward's arrays (layerForwardStart .. layerForwardFinish), held so that none is collected while the
  // GPU, the prefault threads or the copy-out may still write it (x: a pinned x is read by the DMA itself).
  napi_ref pending[3] = {nullptr, nullptr, nullptr};
  void release(napi_env env) {
    for (napi_ref& r : pending) {
      if (r != nullptr) (void)napi_delete_reference(env, r);
      r = nullptr;
    }
  }
};

void finalizeLayer(napi_env env, void* data, void*) {
  auto* h = static_cast<LayerHandle*>(data);
  h->layer.reset();  // ends an open split forward (into its arrays, still held) before they are let go
  h->release(env);
  delete h;
}

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

// layerCreate(config, weights) -> handle. config: {hidden, numExperts, zeroExperts, topK, moeIntermediateSize,
// topkMethod, nGroup, topkGroup, routedScalingFactor, renormalize, renormalizeEpsilon (absent: the method's rule),
// sparsemixerEpsilon, useCorrectionBias, routerBias, latentSize, withBias, probInAdvance, routingWeightOn, activation,
// swigluAlpha, swigluLimit, sharedExpertIntermediateSize, sharedExpertGate, computeDtype} (the option table's names);
// weights: Float32Arrays named as in RefMoeWeights.
napi_value LayerCreate(napi_env env, napi_callback_info info) {
  return entry(env, info, 2, "layerCreate", [&](Args& a) {
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
    cfg.zeroExperts = static_cast<int>(getNum("zeroExperts", 0));
    cfg.topK = static_cast<int>(getNum("topK", 0));
    cfg.intermediate = static_cast<int>(getNum("moeIntermediateSize", 0));
    const std::string method = getStr("topkMethod", "greedy");
    if (method == "greedy") cfg.topkMethod = moe::TopkMethod::kGreedy;
    else if (method == "noaux_tc") cfg.topkMethod = moe::TopkMethod::kNoauxTc;
    else if (method == "group_limited_greedy") cfg.topkMethod = moe::TopkMethod::kGroupLimitedGreedy;
    else if (method == "sparsemixer") cfg.topkMethod = moe::TopkMethod::kSparsemixer;
    else throw ArgError("layerCreate: config.topkMethod must be 'greedy', 'noaux_tc', 'group_limited_greedy' or 'sparsemixer', got '" + method + "'");
    cfg.nGroup = static_cast<int>(getNum("nGroup", 1));
    cfg.topkGroup = static_cast<int>(getNum("topkGroup", 1));
    cfg.routedScalingFactor = static_cast<float>(getNum("routedScalingFactor", 1));
    cfg.renormalize = getBool("renormalize", true);
    cfg.renormalizeEpsilon = static_cast<float>(getNum("renormalizeEpsilon", -1));
    cfg.sparsemixerEpsilon = static_cast<float>(getNum("sparsemixerEpsilon", 0.01));
    cfg.useCorrectionBias = getBool("useCorrectionBias", false);
    cfg.routerBias = getBool("routerBias", false);
    cfg.latent = static_cast<int>(getNum("latentSize", 0));
    cfg.withBias = getBool("withBias", false);
    // probInAdvance is routingWeightOn 'activation' under its older name.
    const bool probInAdvance = getBool("probInAdvance", false);
    const std::string on = getStr("routingWeightOn", probInAdvance ? "activation" : "output");
    if (on == "output") cfg.routingWeightOn = moe::RoutingWeightOn::kOutput;
    else if (on == "activation") cfg.routingWeightOn = moe::RoutingWeightOn::kActivation;
    else if (on == "input") cfg.routingWeightOn = moe::RoutingWeightOn::kInput;
    else throw ArgError("layerCreate: config.routingWeightOn must be 'output', 'activation' or 'input', got '" + on + "'");
    if (probInAdvance != (on == "activation")) {
      throw ArgError("layerCreate: config.probInAdvance must be " + std::string(on == "activation" ? "true" : "false") +
                     " with routingWeightOn '" + on + "'");
    }
    const std::string act = getStr("activation", "swiglu");
    if (act != "swiglu" && act != "clamped_swiglu") {
      throw ArgError("layerCreate: config.activation must be 'swiglu' or 'clamped_swiglu', got '" + act + "'");
    }
    cfg.activation.clamped = act == "clamped_swiglu";
    cfg.activation.alpha = static_cast<float>(getNum("swigluAlpha", 1.702));
    cfg.activation.limit = static_cast<float>(getNum("swigluLimit", 7));
    cfg.sharedIntermediate = static_cast<int>(getNum("sharedExpertIntermediateSize", 0));
    cfg.sharedGate = getBool("sharedExpertGate", false);
    const std::string dt = getStr("computeDtype", "float32");
    if (dt == "float32") cfg.compute = moe::DType::kFloat32;
    else if (dt == "bfloat16") cfg.compute = moe::DType::kBFloat16;
    else if (dt == "float16") cfg.compute = moe::DType::kFloat16;
    else throw ArgError("layerCreate: config.computeDtype must be 'float32', 'bfloat16' or 'float16', got '" + dt + "'");

    const size_t H = cfg.hidden, E = cfg.numExperts, I = cfg.intermediate, L = cfg.latent, S = cfg.sharedIntermediate;
    const size_t routed = E + static_cast<size_t>(std::max(cfg.zeroExperts, 0));
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
    w.gateWeight = weight("gateWeight", H * routed, true);
    if (cfg.routerBias) w.gateBias = weight("gateBias", routed, true);
    w.gateCorrectionBias = weight("gateCorrectionBias", routed, cfg.useCorrectionBias);
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
    // Optional packed copies of the expert weights (docs/formats.md, [E, K, N] layout): int4 {codes: Int32Array
    // [E][ceil(K/8)][N], scales: Float32Array [E][G][N], zeroPoints: Float32Array | null, groupSize}, int8 {codes:
    // Int32Array [E][ceil(K/4)][N], scales, groupSize} (no zero points).
    auto packed = [&](const char* key, size_t K, size_t N, size_t codesPerWord, bool zeroPoints) {
      moe::Int4Weight q;
      napi_value v = prop(env, wo, key);
      if (isNullish(env, v)) return q;
      const std::string where = std::string("weights.") + key;
      double gs = 0;
      if (napi_get_value_double(env, prop(env, v, "groupSize"), &gs) != napi_ok || gs < 1 || gs != static_cast<int>(gs)) {
        throw ArgError("layerCreate: " + where + ".groupSize must be a positive integer");
      }
      q.groupSize = static_cast<int>(gs);
      const size_t G = (K + q.groupSize - 1) / q.groupSize;
      wa.v = {prop(env, v, "codes")};
      q.codes = typed<int32_t>(wa, 0, (where + ".codes").c_str(), napi_int32_array,
                               E * ((K + codesPerWord - 1) / codesPerWord) * N).data;
      wa.v = {prop(env, v, "scales")};
      q.scales = typed<float>(wa, 0, (where + ".scales").c_str(), napi_float32_array, E * G * N).data;
      if (zeroPoints) {
        wa.v = {prop(env, v, "zeroPoints")};
        q.zeros = typed<float>(wa, 0, (where + ".zeroPoints").c_str(), napi_float32_array, E * G * N, true).data;
      }
      return q;
    };
    w.upGateProjInt4 = packed("upGateProjInt4", D, 2 * I, 8, true);
    w.downProjInt4 = packed("downProjInt4", I, D, 8, true);
    auto int8 = [&](const char* key, size_t K, size_t N) {
      const moe::Int4Weight q = packed(key, K, N, 4, false);
      return moe::Int8Weight{q.codes, q.scales, q.groupSize};
    };
    w.upGateProjInt8 = int8("upGateProjInt8", D, 2 * I);
    w.downProjInt8 = int8("downProjInt8", I, D);
    // Optional mxfp4 copies {codes: Int32Array [E][ceil(K/8)][N], scales: Int32Array [E][ceil(K/32)][ceil(N/4)]
    // (E8M0 bytes)}.
    auto mxfp4 = [&](const char* key, size_t K, size_t N) {
      moe::Mxfp4Weight q;
      napi_value v = prop(env, wo, key);
      if (isNullish(env, v)) return q;
      const std::string where = std::string("weights.") + key;
      wa.v = {prop(env, v, "codes")};
      q.codes = typed<int32_t>(wa, 0, (where + ".codes").c_str(), napi_int32_array, E * ((K + 7) / 8) * N).data;
      wa.v = {prop(env, v, "scales")};
      q.scales = typed<int32_t>(wa, 0, (where + ".scales").c_str(), napi_int32_array, E * ((K + 31) / 32) * ((N + 3) / 4)).data;
      return q;
    };
    w.upGateProjMxfp4 = mxfp4("upGateProjMxfp4", D, 2 * I);
    w.downProjMxfp4 = mxfp4("downProjMxfp4", I, D);

    auto* h = new LayerHandle{std::make_unique<moe::MoeLayer>(cfg, w, opStream())};
    napi_value ext;
    if (napi_create_external(env, h, finalizeLayer, nullptr, &ext) != napi_ok) {
      delete h;
      throw std::runtime_error("layerCreate: napi_create_external failed");
    }
    return ext;
  });
}

// Host milliseconds the last layerForward spent creating its output arrays and result object (benchmark).
double& lastAllocMs() {
  static double ms = 0;
  return ms;
}

// layerForward(handle, x, T, useGraph, wantIds, output, out) -> {output: Float32Array [T*H], pooled: boolean,
// topkIds?: Int32Array [T*k]} (pooled: output is a pooled array, OutputPool).
// output: how y reaches the host: 'staged' (pinned staging, then a threaded copy into a new array), 'pinned' (a new
// array over a pinned block, downloaded into directly), 'pageable' (the path from before pinned staging, x too;
// benchmark A/B only).
// layerForwardStart(same arguments) -> the same object, its arrays not written yet: the forward is enqueued (x may be
// reused on return); layerForwardFinish(handle) waits and fills them. JS makes the output tensor in between.
napi_value layerForwardImpl(napi_env env, napi_callback_info info, bool split) {
  return entry(env, info, 7, split ? "layerForwardStart" : "layerForward", [&](Args& a) {
    LayerHandle* h = handleOf(a);
    if (h->layer->forwardPending()) {  // a start without its finish (an exception in between): finished now
      h->layer->forwardEnd();
      h->release(env);
    }
    const int T = integer(a, 2, "T", 0);
    const size_t n = static_cast<size_t>(T) * h->layer->hidden();
    auto x = typed<float>(a, 1, "x", napi_float32_array, n);
    const bool useGraph = boolean(a, 3, "useGraph"), wantIds = boolean(a, 4, "wantIds");
    char mode[16];
    size_t len = 0;
    if (napi_get_value_string_utf8(env, a.v[5], mode, sizeof(mode), &len) != napi_ok) {
      throw ArgError("layerForward: argument 'output' must be 'staged', 'pinned' or 'pageable'");
    }
    const std::string m(mode, len);
    moe::HostCopy copy;
    if (m == "staged") copy = moe::HostCopy::kStaged;
    else if (m == "pinned") copy = moe::HostCopy::kPinned;
    else if (m == "pageable") copy = moe::HostCopy::kPageable;
    else throw ArgError("layerForward: argument 'output' must be 'staged', 'pinned' or 'pageable', got '" + m + "'");
    const auto a0 = std::chrono::steady_clock::now();
    // 'staged' may bring its output array (JS allocates it uninitialized: N-API buffers come zero-filled).
    auto given = typed<float>(a, 6, "out", napi_float32_array, n, true);
    if (given.data != nullptr && copy != moe::HostCopy::kStaged) {
      throw ArgError("layerForward: argument 'out' is for output 'staged' only");
    }
    float* out;
    // 'staged' without an array: a pooled pinned one when it is large (downloaded into directly), else a new one.
    napi_value pooled = given.data == nullptr && copy == moe::HostCopy::kStaged ? newPooledFloat32(env, n, &out) : nullptr;
    if (pooled != nullptr) copy = moe::HostCopy::kPinned;
    napi_value outV = given.data != nullptr         ? a.v[6]
                    : pooled != nullptr              ? pooled
                    : copy == moe::HostCopy::kPinned ? newPinnedFloat32(env, n, &out)
                    : copy == moe::HostCopy::kStaged ? newUninitializedFloat32(env, n, &out)
                                                     : newTyped<float>(env, n, &out);
    if (given.data != nullptr) out = given.data;
    int* ids = nullptr;
    napi_value result, idsV;
    NAPI(napi_create_object(env, &result));
    setProp(env, result, "output", outV);
    setProp(env, result, "pooled", boolv(env, pooled != nullptr));
    if (wantIds) {
      idsV = newTyped<int>(env, static_cast<size_t>(T) * h->layer->topK(), &ids);
      setProp(env, result, "topkIds", idsV);
    }
    lastAllocMs() = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a0).count();
    if (!split) {
      h->layer->forward(x.data, T, out, ids, useGraph, copy);
      return result;
    }
    h->layer->forwardBegin(x.data, T, out, ids, useGraph, copy);
    if (h->layer->forwardPending()) {
      NAPI(napi_create_reference(env, a.v[1], 1, &h->pending[0]));
      NAPI(napi_create_reference(env, outV, 1, &h->pending[1]));
      if (wantIds) NAPI(napi_create_reference(env, idsV, 1, &h->pending[2]));
    }
    return result;
  });
}

napi_value LayerForward(napi_env env, napi_callback_info info) { return layerForwardImpl(env, info, false); }
napi_value LayerForwardStart(napi_env env, napi_callback_info info) { return layerForwardImpl(env, info, true); }

// layerForwardFinish(handle): completes the forward layerForwardStart began (nothing when none is open).
napi_value LayerForwardFinish(napi_env env, napi_callback_info info) {
  return entry(env, info, 1, "layerForwardFinish", [&](Args& a) {
    LayerHandle* h = handleOf(a);
    struct Release {
      LayerHandle* h;
      napi_env env;
      ~Release() { h->release(env); }
    } release{h, env};
    h->layer->forwardEnd();
    napi_value u;
    NAPI(napi_get_undefined(env, &u));
    return u;
  });
}

// layerLastTimings(handle) -> {uploadHostMs, waitMs, launchMs, prefaultMs, prefaultWaitMs, gpu*Ms} of the last
// host forward (moe::ForwardTimings)
napi_value LayerLastTimings(napi_env env, napi_callback_info info) {
  return entry(env, info, 1, "layerLastTimings", [&](Args& a) {
    const moe::ForwardTimings& t = handleOf(a)->layer->lastTimings();
    napi_value o;
    NAPI(napi_create_object(env, &o));
    setProp(env, o, "uploadHostMs", num(env, t.uploadHostMs));
    setProp(env, o, "waitMs", num(env, t.waitMs));
    setProp(env, o, "copyOutMs", num(env, t.copyOutMs));
    setProp(env, o, "allocMs", num(env, lastAllocMs()));
    setProp(env, o, "launchMs", num(env, t.launchMs));
    setProp(env, o, "prefaultMs", num(env, t.prefaultMs));
    setProp(env, o, "prefaultWaitMs", num(env, t.prefaultWaitMs));
    setProp(env, o, "registerMs", num(env, t.registerMs));
    setProp(env, o, "gpuUploadMs", num(env, t.gpuUploadMs));
    setProp(env, o, "gpuKernelMs", num(env, t.gpuKernelMs));
    setProp(env, o, "gpuDownloadMs", num(env, t.gpuDownloadMs));
    return o;
  });
}

// ---- device-resident activations ----
struct ActivationHandle {
  DeviceBuffer data;  // [rows, cols] float32, allocated and freed in order on the addon's stream
  int rows = 0, cols = 0;
  bool disposed = false;
};

void finalizeActivation(napi_env, void* data, void*) { delete static_cast<ActivationHandle*>(data); }

ActivationHandle* activationOf(const Args& a, size_t i) {
  void* p = nullptr;
  if (napi_get_value_external(a.env, a.v[i], &p) != napi_ok || p == nullptr) {
    throw ArgError(std::string(a.fn) + ": argument 'activation' must be a device activation handle");
  }
  auto* h = static_cast<ActivationHandle*>(p);
  if (h->disposed) throw ArgError(std::string(a.fn) + ": the activation was disposed");
  return h;
}

napi_value newActivation(napi_env env, int rows, int cols, ActivationHandle** out) {
  auto* h = new ActivationHandle{DeviceBuffer(static_cast<size_t>(rows) * cols * sizeof(float), opStream()), rows, cols, false};
  napi_value ext;
  if (napi_create_external(env, h, finalizeActivation, nullptr, &ext) != napi_ok) {
    delete h;
    throw std::runtime_error("napi_create_external failed");
  }
  *out = h;
  return ext;
}

moe::PinnedStaging& uploadStaging() {
  static moe::PinnedStaging* s = new moe::PinnedStaging();
  return *s;
}

// Recorded after the last upload's DMA: the next upload waits for it before it writes the staging buffer again.
cudaEvent_t& uploadDone() {
  static cudaEvent_t e = nullptr;
  return e;
}

// activationUpload(x, rows, cols) -> handle (x copied to the GPU, enqueued; returns once x may be reused). A copy
// of x that the DMA reads later (pinned staging) is not waited for: the upload overlaps what the caller enqueues
// next (the first layer of a stack). TFJS_MOE_CUDA_UPLOAD_SYNC=1 (benchmark A/B): wait for every upload.
napi_value ActivationUpload(napi_env env, napi_callback_info info) {
  return entry(env, info, 3, "activationUpload", [&](Args& a) {
    const int rows = integer(a, 1, "rows", 0), cols = integer(a, 2, "cols", 1);
    auto x = typed<float>(a, 0, "x", napi_float32_array, static_cast<size_t>(rows) * cols);
    ActivationHandle* h;
    napi_value ext = newActivation(env, rows, cols, &h);
    cudaEvent_t& done = uploadDone();
    if (done == nullptr) MOE_CUDA(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
    MOE_CUDA(cudaEventSynchronize(done));  // the previous upload's DMA has read the staging buffer
    const bool readsX = moe::uploadStaged(h->data.as(), x.data, x.length * sizeof(float), opStream(), uploadStaging());
    const char* syncEnv = std::getenv("TFJS_MOE_CUDA_UPLOAD_SYNC");
    if (readsX || (syncEnv != nullptr && syncEnv[0] == '1')) finish();  // the DMA reads x itself (pinned)
    else MOE_CUDA(cudaEventRecord(done, opStream()));
    return ext;
  });
}

// activationDownload(handle, out) -> Float32Array [rows*cols] (out when given; else a pooled array when large, see
// OutputPool), after everything enqueued before it (through pinned staging unless pooled)
napi_value ActivationDownload(napi_env env, napi_callback_info info) {
  return entry(env, info, 2, "activationDownload", [&](Args& a) {
    ActivationHandle* h = activationOf(a, 0);
    const size_t n = static_cast<size_t>(h->rows) * h->cols;
    auto given = typed<float>(a, 1, "out", napi_float32_array, n, true);
    static moe::PinnedStaging* staging = new moe::PinnedStaging();
    static moe::SlicedDownload* sliced = new moe::SlicedDownload();
    // Small: a copy kernel writes the values into a mapped block (no DMA and its latency), then one memcpy.
    static moe::MappedHostBuffer* mapped = new moe::MappedHostBuffer();
    if (n * sizeof(float) <= moe::mappedCopyMaxBytes()) {
      float* out = given.data;
      napi_value outV = out != nullptr ? a.v[1] : newUninitializedFloat32(env, n, &out);
      (void)mapped->ensure(std::max(n * sizeof(float), moe::mappedCopyMaxBytes()));
      moe::launchDeviceCopy(h->data.as<float>(), static_cast<float*>(mapped->device()), static_cast<long long>(n),
                            opStream());
      finish();
      std::memcpy(out, mapped->host(), n * sizeof(float));
      return outV;
    }
    float* out = given.data;
    napi_value outV = out != nullptr ? a.v[1] : newPooledFloat32(env, n, &out);
    const bool pooled = out != nullptr && given.data == nullptr;
    if (outV == nullptr) outV = newUninitializedFloat32(env, n, &out);
    // A pooled array is pinned: the DMA lands in it directly.
    float* landing = pooled ? out : static_cast<float*>(staging->ensure(n * sizeof(float)));
    sliced->run(out, h->data.as(), n * sizeof(float), landing, opStream());
    return outV;
  });
}

// activationDispose(handle): frees the device memory now (stream-ordered) rather than at garbage collection.
napi_value ActivationDispose(napi_env env, napi_callback_info info) {
  return entry(env, info, 1, "activationDispose", [&](Args& a) {
    void* p = nullptr;
    if (napi_get_value_external(env, a.v[0], &p) != napi_ok || p == nullptr) {
      throw ArgError("activationDispose: argument 'activation' must be a device activation handle");
    }
    auto* h = static_cast<ActivationHandle*>(p);
    h->data = DeviceBuffer();
    h->disposed = true;
    napi_value u;
    NAPI(napi_get_undefined(env, &u));
    return u;
  });
}

// layerForwardDevice(handle, activation, useGraph, wantIds) -> {output: activation handle, topkIds?: Int32Array}.
// Enqueued only (no wait) unless wantIds: the next layer's forward or a download orders after it on the stream.
napi_value LayerForwardDevice(napi_env env, napi_callback_info info) {
  return entry(env, info, 4, "layerForwardDevice", [&](Args& a) {
    LayerHandle* h = handleOf(a);
    ActivationHandle* x = activationOf(a, 1);
    if (x->cols != h->layer->hidden()) {
      throw ArgError("layerForwardDevice: argument 'activation' must have " + std::to_string(h->layer->hidden()) +
                     " columns, got " + std::to_string(x->cols));
    }
    const bool useGraph = boolean(a, 2, "useGraph"), wantIds = boolean(a, 3, "wantIds");
    ActivationHandle* y;
    napi_value result, outV = newActivation(env, x->rows, x->cols, &y), idsV;
    NAPI(napi_create_object(env, &result));
    setProp(env, result, "output", outV);
    int* ids = nullptr;
    if (wantIds) {
      idsV = newTyped<int>(env, static_cast<size_t>(x->rows) * h->layer->topK(), &ids);
      setProp(env, result, "topkIds", idsV);
    }
    h->layer->forwardDevice(x->data.as<float>(), x->rows, y->data.as<float>(), ids, useGraph);
    return result;
  });
}

// hostCopyBandwidth(bytes, iters) -> {pinnedH2D, pinnedD2H, pageableH2D, pageableD2H} in GB/s (median), the
// link speeds the end-to-end target is quoted against.
napi_value HostCopyBandwidth(napi_env env, napi_callback_info info) {
  return entry(env, info, 2, "hostCopyBandwidth", [&](Args& a) {
    const size_t bytes = static_cast<size_t>(number(a, 0, "bytes"));
    const int iters = integer(a, 1, "iters", 1);
    DeviceBuffer dev(bytes, nullptr);
    size_t cap = 0;
    void* pinned = moe::PinnedPool::instance().acquire(bytes, &cap);
    std::vector<char> pageable(bytes, 1);
    auto measure = [&](void* dst, const void* src, cudaMemcpyKind kind) {
      std::vector<double> gbs;
      for (int i = 0; i < iters + 1; i++) {
        const auto t0 = std::chrono::steady_clock::now();
        MOE_CUDA(cudaMemcpyAsync(dst, src, bytes, kind, opStream()));
        finish();
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (i > 0) gbs.push_back(bytes / s / 1e9);
      }
      std::sort(gbs.begin(), gbs.end());
      return gbs[gbs.size() / 2];
    };
    napi_value o;
    NAPI(napi_create_object(env, &o));
    try {
      setProp(env, o, "pinnedH2D", num(env, measure(dev.as(), pinned, cudaMemcpyHostToDevice)));
      setProp(env, o, "pinnedD2H", num(env, measure(pinned, dev.as(), cudaMemcpyDeviceToHost)));
      setProp(env, o, "pageableH2D", num(env, measure(dev.as(), pageable.data(), cudaMemcpyHostToDevice)));
      setProp(env, o, "pageableD2H", num(env, measure(pageable.data(), dev.as(), cudaMemcpyDeviceToHost)));
    } catch (...) {
      moe::PinnedPool::instance().release(pinned, cap);
      throw;
    }
    moe::PinnedPool::instance().release(pinned, cap);
    return o;
  });
}

// layerBenchmark(handle, x, T, warmup, iters, useGraph) -> Float32Array of per-iteration kernel milliseconds
napi_value LayerBenchmark(napi_env env, napi_callback_info info) {
  return entry(env, info, 6, "layerBenchmark", [&](Args& a) {
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
  return entry(env, info, 4, "layerProfile", [&](Args& a) {
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
  return entry(env, info, 1, "layerDispose", [&](Args& a) {
    void* p = nullptr;
    if (napi_get_value_external(env, a.v[0], &p) != napi_ok || p == nullptr) {
      throw ArgError("layerDispose: argument 'handle' must be a layer handle from layerCreate");
    }
    auto* h = static_cast<LayerHandle*>(p);
    h->layer.reset();  // ends an open split forward first
    h->release(env);
    napi_value u;
    NAPI(napi_get_undefined(env, &u));
    return u;
  });
}

// layerResidentBytes(handle) -> bytes of weights held on the GPU
napi_value LayerResidentBytes(napi_env env, napi_callback_info info) {
  return entry(env, info, 1, "layerResidentBytes", [&](Args& a) {
    return num(env, static_cast<double>(handleOf(a)->layer->residentBytes()));
  });
}


// outputPoolStats() -> {allocated, reused, declined, heldBytes}: the output pool's counters on this thread
napi_value OutputPoolStats(napi_env env, napi_callback_info info) {
  return entry(env, info, 0, "outputPoolStats", [&](Args&) {
    const OutputPool& p = OutputPool::forThread();
    napi_value o;
    NAPI(napi_create_object(env, &o));
    setProp(env, o, "allocated", num(env, p.stats().allocated));
    setProp(env, o, "reused", num(env, p.stats().reused));
    setProp(env, o, "declined", num(env, p.stats().declined));
    setProp(env, o, "heldBytes", num(env, static_cast<double>(p.heldBytes())));
    return o;
  });
}

}  // namespace

void defineLayer(napi_env env, napi_value exports) {
  // TFJS_MOE_CUDA_MALLOC_REUSE=1 (benchmark A/B, process-wide): glibc serves large blocks from its heap instead of
  // fresh mmaps, so a new output array reuses the pages of one V8 freed (no page faults); freed memory stays in the
  // heap up to the trim threshold.
  if (const char* v = std::getenv("TFJS_MOE_CUDA_MALLOC_REUSE"); v != nullptr && v[0] == '1') {
    (void)mallopt(M_MMAP_MAX, 0);
    (void)mallopt(M_TRIM_THRESHOLD, 1 << 30);
  }
  const napi_property_descriptor props[] = {
      {"layerCreate", nullptr, LayerCreate, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"layerForward", nullptr, LayerForward, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"layerForwardStart", nullptr, LayerForwardStart, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"layerForwardFinish", nullptr, LayerForwardFinish, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"layerForwardDevice", nullptr, LayerForwardDevice, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"layerLastTimings", nullptr, LayerLastTimings, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"activationUpload", nullptr, ActivationUpload, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"activationDownload", nullptr, ActivationDownload, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"activationDispose", nullptr, ActivationDispose, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"hostCopyBandwidth", nullptr, HostCopyBandwidth, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"layerBenchmark", nullptr, LayerBenchmark, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"layerProfile", nullptr, LayerProfile, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"layerDispose", nullptr, LayerDispose, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"layerResidentBytes", nullptr, LayerResidentBytes, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"outputPoolStats", nullptr, OutputPoolStats, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
  };
  NAPI(napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props));
}

}  // namespace moe_napi
