// PTX wrappers of the sm_90a grouped GEMM (gemm_sm90.cuh): mbarriers, the TMA tile load, cp.async with an
// mbarrier arrival, shared-memory matrix descriptors and wgmma. Only compiled into sm_90a code; every
// wrapper is empty elsewhere so the file still parses for the other architectures.
#pragma once

#include <cuda.h>  // CUtensorMap (a type only: the driver entry point is found at run time, no -lcuda)

#include "grouped_gemm.h"

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define MOE_SM90A 1
#endif

namespace moe {
namespace sm90 {

__device__ __forceinline__ uint32_t smemAddr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void barInit(uint64_t* bar, int count) {
#ifdef MOE_SM90A
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smemAddr(bar)), "r"(count));
#endif
}
// Makes the initialized barriers visible to the async proxy (TMA completes on them).
__device__ __forceinline__ void barInitFence() {
#ifdef MOE_SM90A
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void barWait(uint64_t* bar, uint32_t parity) {
#ifdef MOE_SM90A
  const uint32_t a = smemAddr(bar);
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(a), "r"(parity)
        : "memory");
  } while (!done);
#endif
}
__device__ __forceinline__ void barArrive(uint64_t* bar) {
#ifdef MOE_SM90A
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smemAddr(bar)) : "memory");
#endif
}
__device__ __forceinline__ void barArriveExpectTx(uint64_t* bar, uint32_t bytes) {
#ifdef MOE_SM90A
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smemAddr(bar)), "r"(bytes) : "memory");
#endif
}
// The barrier counts one arrival once every cp.async this thread issued before has landed (.noinc: that arrival
// is one of the barrier's expected arrivals).
__device__ __forceinline__ void cpAsyncArriveNoinc(uint64_t* bar) {
#ifdef MOE_SM90A
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(smemAddr(bar)) : "memory");
#endif
}
__device__ __forceinline__ void cpAsync16(uint32_t dst, const void* src, bool valid) {
#ifdef MOE_SM90A
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0) : "memory");
#endif
}
// 4 or 8 bytes (zeros when !valid), through L1: the int4 GEMM's group scales.
template <int BYTES>
__device__ __forceinline__ void cpAsyncSmall(uint32_t dst, const void* src, bool valid) {
  static_assert(BYTES == 4 || BYTES == 8, "cp.async.ca size");
#ifdef MOE_SM90A
  asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n" ::"r"(dst), "l"(src), "n"(BYTES), "r"(valid ? BYTES : 0)
               : "memory");
#endif
}
__device__ __forceinline__ void cpAsyncCommit() {
#ifdef MOE_SM90A
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}
// Until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cpAsyncWaitGroup() {
#ifdef MOE_SM90A
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}
__device__ __forceinline__ void cpAsyncWaitAll() {
#ifdef MOE_SM90A
  asm volatile("cp.async.wait_all;\n" ::: "memory");
#endif
}
// A 2D box of the tensor map (inner coordinate first) into shared memory, completing on bar's transaction count.
__device__ __forceinline__ void tmaLoad2d(void* dst, const CUtensorMap* map, int c0, int c1, uint64_t* bar) {
#ifdef MOE_SM90A
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(
          smemAddr(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(smemAddr(bar))
      : "memory");
#endif
}
// The same box written into the same shared-memory offset of every block of the cluster in ctaMask (TMA
// multicast), completing on the barrier at bar's offset in each of them.
__device__ __forceinline__ void tmaLoad2dMulticast(void* dst, const CUtensorMap* map, int c0, int c1, uint64_t* bar,
                                                   uint16_t ctaMask) {
#ifdef MOE_SM90A
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster [%0], [%1, {%2, "
      "%3}], [%4], %5;\n" ::"r"(smemAddr(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(smemAddr(bar)), "h"(ctaMask)
      : "memory");
#endif
}
// One arrival on the barrier at bar's offset in block `rank` of this cluster.
__device__ __forceinline__ void barArriveCluster(uint64_t* bar, uint32_t rank) {
#ifdef MOE_SM90A
  asm volatile(
      "{\n.reg .b32 remote;\nmapa.shared::cluster.u32 remote, %0, %1;\n"
      "mbarrier.arrive.release.cluster.shared::cluster.b64 _, [remote];\n}\n" ::"r"(smemAddr(bar)),
      "r"(rank)
      : "memory");
#endif
}
__device__ __forceinline__ uint32_t clusterRank() {
  uint32_t r = 0;
#ifdef MOE_SM90A
  asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
#endif
  return r;
}
// Every thread of every block of the cluster (barrier inits made visible before a peer arrives on them remotely).
__device__ __forceinline__ void clusterSync() {
#ifdef MOE_SM90A
  asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void prefetchTensorMap(const CUtensorMap* map) {
#ifdef MOE_SM90A
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
#endif
}
// Generic-proxy writes (the cp.async rows) before async-proxy reads (wgmma's shared-memory operands).
__device__ __forceinline__ void fenceProxyAsync() {
#ifdef MOE_SM90A
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wgmmaFence() {
#ifdef MOE_SM90A
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wgmmaCommit() {
#ifdef MOE_SM90A
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
template <int N>
__device__ __forceinline__ void wgmmaWait() {
#ifdef MOE_SM90A
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#endif
}
template <int REGS>
__device__ __forceinline__ void setMaxRegs(bool increase) {
#ifdef MOE_SM90A
  if (increase) asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(REGS));
  else asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(REGS));
#endif
}

// Shared-memory matrix descriptor of a K-major operand tile stored with the 128-byte swizzle: rows of 64 half
// elements (128 bytes), 8-row core groups 1024 bytes apart (the stride byte offset), the tile 1024-byte aligned.
// The leading byte offset is unused for this layout (one k16 slice lies within a swizzled row); advancing the
// start address by 32 bytes selects the next k16 slice.
__device__ __forceinline__ uint64_t descriptor128B(uint32_t addr) {
  uint64_t d = 0;
  d |= static_cast<uint64_t>((addr & 0x3FFFF) >> 4);
  d |= static_cast<uint64_t>(1) << 16;
  d |= static_cast<uint64_t>(1024 >> 4) << 32;
  d |= static_cast<uint64_t>(1) << 62;
  return d;
}

// wgmma.mma_async m64nNk16 with both operands from shared memory (K-major), f32 accumulators in registers:
// d (+)= A[64 x 16] * B[N x 16]^T. accumulate = 0 overwrites d.
template <typename Elem, int N> struct Wgmma;
#ifdef MOE_SM90A
#include "gemm_sm90_wgmma.inc"
#else
template <typename Elem, int N> struct Wgmma {
  static __device__ __forceinline__ void run(float (&)[N / 2], uint64_t, uint64_t, int) {}
};
#endif

}  // namespace sm90
}  // namespace moe
