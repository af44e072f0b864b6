// The addon's op entry points: each validates its arguments, uploads, launches one kernel chain, downloads, and
// returns new host arrays (the kernels registered on host-memory tfjs backends call these).
#include <algorithm>

#include "addon_napi.h"
#include "gemm_sm90.h"
#include "moe_kernels.h"
#include "moe_layer.h"

namespace moe_napi {
namespace {

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
    setProp(env, o, "wgmma", boolv(env, moe::sm90GemmReady()));
    return o;
  });
}

// setTuning({pdl, gemmTiles, fuse, int4Mma, wgmma?}): the tfjs flags MOE_CUDA_PDL, MOE_CUDA_GEMM_TILES, MOE_CUDA_FUSE,
// MOE_CUDA_INT4_MMA and MOE_CUDA_WGMMA
// (kernels/cuda/flags_cuda.ts).
napi_value SetTuning(napi_env env, napi_callback_info info) {
  return entry(env, info, 1, "setTuning", [&](Args& a) {
    napi_value pdlV, tilesV, fuseV, int4V;
    NAPI(napi_get_named_property(env, a.v[0], "pdl", &pdlV));
    NAPI(napi_get_named_property(env, a.v[0], "int4Mma", &int4V));
    NAPI(napi_get_named_property(env, a.v[0], "gemmTiles", &tilesV));
    NAPI(napi_get_named_property(env, a.v[0], "fuse", &fuseV));
    bool pdl;
    if (napi_get_value_bool(env, pdlV, &pdl) != napi_ok) throw ArgError("setTuning: argument 'pdl' must be a boolean");
    bool int4Mma;
    if (napi_get_value_bool(env, int4V, &int4Mma) != napi_ok) {
      throw ArgError("setTuning: argument 'int4Mma' must be a boolean");
    }
    auto text = [&](napi_value v, const char* name) {
      char buf[32];
      size_t len = 0;
      if (napi_get_value_string_utf8(env, v, buf, sizeof(buf), &len) != napi_ok) {
        throw ArgError(std::string("setTuning: argument '") + name + "' must be a string");
      }
      return std::string(buf, len);
    };
    const std::string tiles = text(tilesV, "gemmTiles"), fuse = text(fuseV, "fuse");
    static const std::pair<const char*, moe::DecodeGemm> kTiles[] = {
        {"default", moe::DecodeGemm::kMma},      {"previous", moe::DecodeGemm::kMma},
        {"stream", moe::DecodeGemm::kStream4},   {"stream8", moe::DecodeGemm::kStream8},
        {"mma32", moe::DecodeGemm::kMma32},      {"deep", moe::DecodeGemm::kMmaDeep},
        {"k128", moe::DecodeGemm::kMmaK128},     {"shallow", moe::DecodeGemm::kMmaShallow},
        {"no-preload", moe::DecodeGemm::kMmaNoPreload}, {"int4-previous", moe::DecodeGemm::kInt4Previous},
        {"int4-wide", moe::DecodeGemm::kInt4Wide},
    };
    const auto* tile = std::find_if(std::begin(kTiles), std::end(kTiles), [&](const auto& c) { return tiles == c.first; });
    if (tile == std::end(kTiles)) {
      throw ArgError("setTuning: argument 'gemmTiles' must be 'default', 'previous', 'stream', 'stream8', 'mma32', "
                     "'deep', 'k128', 'shallow', 'no-preload', 'int4-previous' or 'int4-wide', got '" + tiles + "'");
    }
    if (fuse != "all" && fuse != "route" && fuse != "combine" && fuse != "none") {
      throw ArgError("setTuning: argument 'fuse' must be 'none', 'all', 'route' or 'combine', got '" + fuse + "'");
    }
    const bool fuseRoute = fuse == "all" || fuse == "route", fuseCombine = fuse == "all" || fuse == "combine";
    // Optional 'wgmma' ('auto' | 'on' | 'off'): the sm_90a GEMM's switch (gemm_sm90.h).
    moe::Sm90Gemm wgmma = moe::sm90Tuning().mode;
    bool hasWgmma = false;
    NAPI(napi_has_named_property(env, a.v[0], "wgmma", &hasWgmma));
    if (hasWgmma) {
      napi_value wgmmaV;
      NAPI(napi_get_named_property(env, a.v[0], "wgmma", &wgmmaV));
      const std::string w = text(wgmmaV, "wgmma");
      if (w != "auto" && w != "on" && w != "off") {
        throw ArgError("setTuning: argument 'wgmma' must be 'auto', 'on' or 'off', got '" + w + "'");
      }
      wgmma = w == "on" ? moe::Sm90Gemm::kOn : w == "off" ? moe::Sm90Gemm::kOff : moe::Sm90Gemm::kAuto;
    }
    moe::Tuning& t = moe::tuning();
    if (moe::sm90Tuning().mode != wgmma) {
      moe::sm90Tuning().mode = wgmma;
      t.generation++;  // layers drop graphs captured with the other GEMM
    }
    if (t.pdl != pdl || t.previousTiles != (tiles == "previous") || t.decodeGemm != tile->second ||
        t.fuseRoute != fuseRoute || t.fuseCombine != fuseCombine || t.int4Mma != int4Mma) {
      t.pdl = pdl;
      t.previousTiles = tiles == "previous";
      t.decodeGemm = tile->second;
      t.fuseRoute = fuseRoute;
      t.fuseCombine = fuseCombine;
      t.int4Mma = int4Mma;
      t.generation++;
    }
    napi_value u;
    NAPI(napi_get_undefined(env, &u));
    return u;
  });
}

// topkSelect(logits, T, E, bias|null, k, renormalize, nGroup, topkGroup, routedScalingFactor, renormalizeEpsilon,
// sparsemixer, sparsemixerEpsilon) -> {ids, weights}
napi_value TopkSelect(napi_env env, napi_callback_info info) {
  return entry(env, info, 12, "topkSelect", [&](Args& a) {
    const int T = integer(a, 1, "T", 0), E = integer(a, 2, "E", 1), k = integer(a, 4, "k", 1);
    if (k > E) throw ArgError("topkSelect: argument 'k' must be <= E");
    auto logits = typed<float>(a, 0, "logits", napi_float32_array, static_cast<size_t>(T) * E);
    auto bias = typed<float>(a, 3, "bias", napi_float32_array, E, true);
    moe::RoutingParams rp;
    rp.k = k;
    rp.renormalize = boolean(a, 5, "renormalize");
    rp.nGroup = integer(a, 6, "nGroup", 1);
    rp.topkGroup = integer(a, 7, "topkGroup", 1);
    rp.routedScalingFactor = static_cast<float>(number(a, 8, "routedScalingFactor"));
    rp.renormalizeEpsilon = static_cast<float>(number(a, 9, "renormalizeEpsilon"));
    rp.sparsemixer = boolean(a, 10, "sparsemixer");
    rp.sparsemixerEpsilon = static_cast<float>(number(a, 11, "sparsemixerEpsilon"));
    if (E % rp.nGroup != 0 || rp.topkGroup > rp.nGroup || (rp.nGroup > 1 && bias.data)) {
      throw ArgError("topkSelect: need E % nGroup == 0, topkGroup <= nGroup and no bias when nGroup > 1");
    }
    if (rp.sparsemixer && (k != 2 || rp.nGroup != 1 || bias.data)) {
      throw ArgError("topkSelect: sparsemixer needs k == 2, nGroup == 1 and no bias");
    }
    napi_value o, idsV, wV;
    int* ids;
    float* w;
    NAPI(napi_create_object(env, &o));
    idsV = newTyped<int>(env, static_cast<size_t>(T) * k, &ids);
    wV = newTyped<float>(env, static_cast<size_t>(T) * k, &w);
    DeviceBuffer dL = upload(logits.data, logits.length), dB = upload(bias.data, bias.length);
    DeviceBuffer dIds(sizeof(int) * T * k, opStream()), dW(sizeof(float) * T * k, opStream());
    moe::launchTopkSelect(dL.as<float>(), T, E, E, bias.data ? dB.as<float>() : nullptr, rp, dIds.as<int>(),
                          dW.as<float>(), nullptr, opStream());
    download(ids, dIds, static_cast<size_t>(T) * k);
    download(w, dW, static_cast<size_t>(T) * k);
    finish();
    setProp(env, o, "ids", idsV);
    setProp(env, o, "weights", wV);
    return o;
  });
}

// moeScores(logits, T, E, nGroup, topkGroup, k, rsf, bias|null, renormalize, renormalizeEpsilon)
// -> {scores, weights, ids}
napi_value MoeScores(napi_env env, napi_callback_info info) {
  return entry(env, info, 10, "moeScores", [&](Args& a) {
    const int T = integer(a, 1, "T", 0), E = integer(a, 2, "E", 1);
    const int nGroup = integer(a, 3, "nGroup", 1), topkGroup = integer(a, 4, "topkGroup", 1), k = integer(a, 5, "k", 1);
    if (E % nGroup != 0 || topkGroup > nGroup || k > E || k > topkGroup * (E / nGroup)) {
      throw ArgError("moeScores: need E % nGroup == 0, topkGroup <= nGroup, k <= topkGroup * E / nGroup");
    }
    const float rsf = static_cast<float>(number(a, 6, "routedScalingFactor"));
    auto logits = typed<float>(a, 0, "logits", napi_float32_array, static_cast<size_t>(T) * E);
    auto bias = typed<float>(a, 7, "bias", napi_float32_array, E, true);
    moe::RoutingParams rp;
    rp.k = k;
    rp.nGroup = nGroup;
    rp.topkGroup = topkGroup;
    rp.routedScalingFactor = rsf;
    rp.renormalize = boolean(a, 8, "renormalize");
    rp.renormalizeEpsilon = static_cast<float>(number(a, 9, "renormalizeEpsilon"));
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
    moe::launchMoeScores(dL.as<float>(), T, E, E, bias.data ? dB.as<float>() : nullptr, rp, dS.as<float>(),
                         dI.as<int>(), dW.as<float>(), nullptr, opStream());
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

// permute(x, T, D, ids, k, E, alignment, weights|null, zeroExperts) -> {permutedX, tokensPerExpert, expertOffsets,
// rowMap}; with weights [T*k] (routingWeightOn 'input') row rowMap[t*k+j] holds x[t] * weights[t*k+j]; ids in
// [E, E + zeroExperts) get no row (rowMap -1).
napi_value Permute(napi_env env, napi_callback_info info) {
  return entry(env, info, 9, "permute", [&](Args& a) {
    const int T = integer(a, 1, "T", 0), D = integer(a, 2, "D", 0), k = integer(a, 4, "k", 1);
    const int E = integer(a, 5, "E", 1), alignment = integer(a, 6, "alignment", 1);
    auto x = typed<float>(a, 0, "x", napi_float32_array, static_cast<size_t>(T) * D);
    auto ids = typed<int>(a, 3, "ids", napi_int32_array, static_cast<size_t>(T) * k);
    auto pairWeights = typed<float>(a, 7, "weights", napi_float32_array, static_cast<size_t>(T) * k, true);
    const int Z = integer(a, 8, "zeroExperts", 0);
    for (size_t i = 0; i < ids.length; i++) {
      if (ids.data[i] < 0 || ids.data[i] >= E + Z) {
        throw ArgError("moePermute: topkIds values must be in [0, numExperts + zeroExperts) = [0, " + std::to_string(E + Z) + "), got " +
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
    DeviceBuffer dX = upload(x.data, x.length), dIds = upload(ids.data, ids.length),
                 dPw = upload(pairWeights.data, pairWeights.length);
    DeviceBuffer work(sizeof(int) * (E + (E + 1) + moe::kTileClasses * (E + 1) + R + static_cast<size_t>(T) * k + E), opStream());
    int* w = work.as<int>();
    moe::PermuteBuffers pb{w, w + E, w + 2 * E + 1, nullptr, nullptr, nullptr};
    pb.rowToPair = pb.tilePrefix + moe::kTileClasses * (E + 1);
    pb.rowMap = pb.rowToPair + R;
    pb.scratch = pb.rowMap + static_cast<size_t>(T) * k;
    moe::launchPermute(dIds.as<int>(), T, k, E, alignment, R, pb, opStream());
    DeviceBuffer dPx(sizeof(float) * R * static_cast<size_t>(D), opStream());
    moe::launchGatherRows(dX.as<float>(), D, pb.rowToPair, k, R, pairWeights.data ? dPw.as<float>() : nullptr,
                          dPx.as<float>(), opStream());
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
  return entry(env, info, 10, "batchedGemm", [&](Args& a) {
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

// swiglu(x, R, I, scale|null, clamped, swigluAlpha, swigluLimit) -> Float32Array [R*I]
napi_value Swiglu(napi_env env, napi_callback_info info) {
  return entry(env, info, 7, "swiglu", [&](Args& a) {
    const int R = integer(a, 1, "R", 0), I = integer(a, 2, "I", 0);
    moe::SwigluActivation act;
    act.clamped = boolean(a, 4, "clamped");
    act.alpha = static_cast<float>(number(a, 5, "swigluAlpha"));
    act.limit = static_cast<float>(number(a, 6, "swigluLimit"));
    auto x = typed<float>(a, 0, "x", napi_float32_array, static_cast<size_t>(R) * 2 * I);
    auto scale = typed<float>(a, 3, "scale", napi_float32_array, R, true);
    float* out;
    napi_value outV = newTyped<float>(env, static_cast<size_t>(R) * I, &out);
    DeviceBuffer dX = upload(x.data, x.length), dS = upload(scale.data, scale.length);
    DeviceBuffer dO(sizeof(float) * R * static_cast<size_t>(I), opStream());
    moe::launchSwiglu(dX.as<float>(), R, I, scale.data ? dS.as<float>() : nullptr, act, dO.as<float>(), opStream());
    download(out, dO, static_cast<size_t>(R) * I);
    finish();
    return outV;
  });
}

// combine(y, R, D, rowMap, weights, ids, T, k, E, bias|null, weightsApplied, identityInput|null) -> Float32Array
// [T*D]. identityInput [T*D]: the zero-computation experts' input; a slot with no row (rowMap -1) adds w * it[t].
napi_value Combine(napi_env env, napi_callback_info info) {
  return entry(env, info, 12, "combine", [&](Args& a) {
    const int R = integer(a, 1, "R", 0), D = integer(a, 2, "D", 0), T = integer(a, 6, "T", 0), k = integer(a, 7, "k", 1);
    const int E = integer(a, 8, "E", 0);
    auto y = typed<float>(a, 0, "y", napi_float32_array, static_cast<size_t>(R) * D);
    auto rowMap = typed<int>(a, 3, "rowMap", napi_int32_array, static_cast<size_t>(T) * k);
    auto w = typed<float>(a, 4, "weights", napi_float32_array, static_cast<size_t>(T) * k);
    auto ids = typed<int>(a, 5, "ids", napi_int32_array, static_cast<size_t>(T) * k);
    auto bias = typed<float>(a, 9, "bias", napi_float32_array, static_cast<size_t>(E) * D, true);
    const bool applied = boolean(a, 10, "weightsApplied");
    auto identityX = typed<float>(a, 11, "identityInput", napi_float32_array, static_cast<size_t>(T) * D, true);
    for (size_t i = 0; i < rowMap.length; i++) {
      if (identityX.data && rowMap.data[i] == -1) continue;  // an identity expert's slot
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
                 dI = upload(ids.data, ids.length), dB = upload(bias.data, bias.length),
                 dX = upload(identityX.data, identityX.length);
    DeviceBuffer dO(sizeof(float) * T * static_cast<size_t>(D), opStream());
    moe::launchCombine(dY.as<float>(), R, D, dR.as<int>(), dW.as<float>(), dI.as<int>(), T, k, E,
                       bias.data ? dB.as<float>() : nullptr, applied, identityX.data ? dX.as<float>() : nullptr,
                       dO.as<float>(), opStream());
    download(out, dO, static_cast<size_t>(T) * D);
    finish();
    return outV;
  });
}

}  // namespace

void defineOps(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
      {"status", nullptr, Status, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"setTuning", nullptr, SetTuning, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"topkSelect", nullptr, TopkSelect, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"moeScores", nullptr, MoeScores, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"permute", nullptr, Permute, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"batchedGemm", nullptr, BatchedGemm, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"swiglu", nullptr, Swiglu, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"combine", nullptr, Combine, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
  };
  NAPI(napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props));
}

}  // namespace moe_napi
