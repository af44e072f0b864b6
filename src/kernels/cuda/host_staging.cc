// Pinned staging and the pinned block pool (host_staging.h).
#include "host_staging.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>

#include "moe_common.cuh"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace moe {
namespace {

// Below this a copy is one memcpy/DMA: thread start-up (tens of microseconds) would cost more than it saves.
constexpr size_t kParallelMinBytes = size_t(1) << 20;
// A copy thread per 512 KiB (up to kMaxThreads). 256 KiB (8 threads for T = 256's 2 MiB x instead of 4) staged it in
// 0.084 instead of 0.117 ms in H200 session 8 batch B1 and in 0.155 instead of 0.136 in B2 (a busier host, same
// process each): not shown to pay, so not the default.
constexpr size_t kSliceMinBytes = size_t(512) << 10;
constexpr size_t kPrefaultMinBytes = size_t(64) << 10;
constexpr size_t kInlineUploadBytes = size_t(64) << 10;
constexpr int kMaxThreads = 16;  // page faults on a fresh output array dominate its copy: they scale with threads
// Free pinned blocks kept for reuse (page-locking is slow: about a millisecond per tens of MiB).
constexpr size_t kMaxFreeBytes = size_t(1) << 30;

int threadsFor(size_t bytes) {
  if (bytes < kParallelMinBytes) return 1;
  const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  // TFJS_MOE_CUDA_COPY_SLICE_KIB (benchmark A/B): the bytes per copy thread (default 512 KiB).
  size_t slice = kSliceMinBytes;
  if (const char* v = std::getenv("TFJS_MOE_CUDA_COPY_SLICE_KIB")) {
    slice = std::max<size_t>(4, std::strtoull(v, nullptr, 10)) << 10;
  }
  return static_cast<int>(std::max<size_t>(1, std::min<size_t>({static_cast<size_t>(kMaxThreads),
                                                                static_cast<size_t>(hw), bytes / slice})));
}

// Long-lived helper threads for the host copies: starting 15 std::threads per copy cost tens of microseconds each,
// twice per forward. Jobs queue in order; run() has the caller take part and returns when its job is done, post()
// returns at once (wait() later).
class WorkerPool {
 public:
  struct Job {
    std::function<void(int)> body;
    int n = 0;
    int pending = 0;  // guarded by the pool's mu_
    std::atomic<int> next{0};
  };
  // The copies (run on the JS thread with the caller taking part), and the output prefaults (posted ahead).
  static WorkerPool& copies() {
    static WorkerPool* pool = new WorkerPool();  // never destroyed: its threads sleep until the process ends
    return *pool;
  }
  static WorkerPool& prefaults() {
    static WorkerPool* pool = new WorkerPool();
    return *pool;
  }
  // Runs body(i) for every i in [0, n), on the caller and the pool's threads; returns when all are done.
  void run(int n, const std::function<void(int)>& body) {
    auto job = post(n, body, n - 1);
    work(*job);
    wait(*job);
  }
  // Queues body(i) for i in [0, n) on up to `threads` helper threads.
  std::shared_ptr<Job> post(int n, std::function<void(int)> body, int threads) {
    auto job = std::make_shared<Job>();
    job->body = std::move(body);
    job->n = n;
    job->pending = n;
    {
      std::lock_guard<std::mutex> lock(mu_);
      while (threads_ < threads) {
        std::thread([this] { loop(); }).detach();
        threads_++;
      }
      queue_.push_back(job);
      queued_.store(static_cast<int>(queue_.size()), std::memory_order_release);
    }
    cv_.notify_all();
    return job;
  }
  void wait(Job& job) {
    std::unique_lock<std::mutex> lock(mu_);
    doneCv_.wait(lock, [&] { return job.pending == 0; });
  }

 private:
  // How long an idle helper polls for the next job before it sleeps: 300 us unless TFJS_MOE_CUDA_POOL_SPIN_US says
  // otherwise (0: sleep at once; benchmark A/B, read per idle spell). Waking a sleeping vCPU costs tens of
  // microseconds on the H200 host (a VM), which a 2 MiB upload pays on each of its threads; a helper still polling
  // when the next call's copy arrives starts at once. Back-to-back forwards (a decode or prefill loop) come well
  // within 300 us of each other; an idle process stops polling after that.
  static long long spinNs() {
    const char* v = std::getenv("TFJS_MOE_CUDA_POOL_SPIN_US");
    return v == nullptr || v[0] == '\0' ? 300000 : std::strtoll(v, nullptr, 10) * 1000;
  }
  void loop() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      if (queue_.empty()) {
        if (const long long spin = spinNs(); spin > 0) {
          lock.unlock();
          const auto until = std::chrono::steady_clock::now() + std::chrono::nanoseconds(spin);
          for (int i = 0; queued_.load(std::memory_order_acquire) == 0; i++) {
#if defined(__SSE2__)
            _mm_pause();
#endif
            // Now and then: the clock, and the CPU handed to whoever else is runnable (the JS thread).
            if ((i & 63) == 63) {
              if (std::chrono::steady_clock::now() >= until) break;
              std::this_thread::yield();
            }
          }
          lock.lock();
        }
      }
      cv_.wait(lock, [&] { return !queue_.empty(); });
      std::shared_ptr<Job> job = queue_.front();
      lock.unlock();
      work(*job);
      lock.lock();
      // Every index is taken: later arrivals go on to the next job (the taken ones finish on their threads).
      auto it = std::find(queue_.begin(), queue_.end(), job);
      if (it != queue_.end()) queue_.erase(it);
      queued_.store(static_cast<int>(queue_.size()), std::memory_order_release);
    }
  }
  // Takes indices until none are left; the last one to finish wakes the waiters.
  void work(Job& job) {
    int done = 0;
    for (int i = job.next.fetch_add(1); i < job.n; i = job.next.fetch_add(1)) {
      job.body(i);
      done++;
    }
    if (done == 0) return;
    std::lock_guard<std::mutex> lock(mu_);
    job.pending -= done;
    if (job.pending == 0) doneCv_.notify_all();
  }

  std::mutex mu_;
  std::condition_variable cv_, doneCv_;
  std::deque<std::shared_ptr<Job>> queue_;
  std::atomic<int> queued_{0};  // queue_.size(), read by polling helpers without the lock
  int threads_ = 0;
};

// The chunk the copies move at a time: small enough that the first DMA starts early and the copy-out trails the
// last DMA by little; TFJS_MOE_CUDA_COPY_CHUNK_KIB (benchmark A/B; 0 = one slice per thread, the earlier split).
size_t chunkBytes(size_t bytes, int threads) {
  size_t c = std::min(size_t(1) << 20, std::max(size_t(256) << 10, bytes / 32));
  if (const char* v = std::getenv("TFJS_MOE_CUDA_COPY_CHUNK_KIB")) c = static_cast<size_t>(std::strtoull(v, nullptr, 10)) << 10;
  if (c == 0) c = (bytes / threads + 63) / 64 * 64;
  return std::max<size_t>(c, 4096);
}

// Writes one byte per page of [p, p + bytes): the page faults of fresh memory, taken ahead of the copy.
void touchPages(char* p, size_t bytes) {
  static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  for (size_t off = 0; off < bytes; off += page) reinterpret_cast<volatile char*>(p)[off] = 0;
}

// Copies into pinned staging that only the DMA reads next. Large (threaded) uploads use non-temporal stores: the
// staging lines are not read into the cache first (less memory traffic than a plain copy; H200 batch O, same
// process: T = 4096 staging 1.11-1.19 vs 1.37 ms, T = 256 0.145-0.173 vs 0.187); the fence makes them visible
// before the DMA is enqueued. A small upload's data stays in the cache, where a plain copy is quicker. TFJS_MOE_CUDA_COPY_STORES=plain / stream (benchmark A/B): one kind
// for every size.
bool streamStores(bool threaded) {
  const char* v = std::getenv("TFJS_MOE_CUDA_COPY_STORES");
  if (v == nullptr || v[0] == '\0') return threaded;
  return std::strcmp(v, "stream") == 0;
}

void copyToStaging(char* dst, const char* src, size_t bytes, bool nonTemporal) {
#if defined(__SSE2__)
  if (nonTemporal && bytes >= 4096) {
    const size_t head = (16 - (reinterpret_cast<uintptr_t>(dst) & 15)) & 15;
    std::memcpy(dst, src, head);
    size_t i = head;
    for (; i + 64 <= bytes; i += 64) {
      const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
      const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + 16));
      const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + 32));
      const __m128i d = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + 48));
      _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i), a);
      _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i + 16), b);
      _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i + 32), c);
      _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i + 48), d);
    }
    std::memcpy(dst + i, src + i, bytes - i);
    _mm_sfence();
    return;
  }
#endif
  (void)nonTemporal;
  std::memcpy(dst, src, bytes);
}

// A fresh output array of 4 MiB or more asks for transparent huge pages on its 2 MiB-aligned interior before its
// first touch: 512x fewer page faults and, when V8 frees the array, an unmap of a few huge pages instead of
// thousands of small ones (H200 host, THP 'madvise', batch O: a T = 4096 call 6.16 -> 3.87 ms, the GC's unmapping
// 2.4 -> 0.76 ms; the faults themselves stay costly there, 2.6 ms on 8 threads, as the VM backs fresh memory).
// Where THP is off the advice does nothing. TFJS_MOE_CUDA_HUGEPAGES=0 (benchmark A/B, read per call): no advice.
void adviseHugePages(void* dst, size_t bytes) {
  if (bytes < (size_t(4) << 20)) return;
  const char* v = std::getenv("TFJS_MOE_CUDA_HUGEPAGES");
  if (v != nullptr && v[0] == '0') return;
  const uintptr_t huge = uintptr_t(2) << 20, lo = reinterpret_cast<uintptr_t>(dst), hi = lo + bytes;
  const uintptr_t a = (lo + huge - 1) & ~(huge - 1), z = hi & ~(huge - 1);
  if (z > a) (void)madvise(reinterpret_cast<void*>(a), z - a, MADV_HUGEPAGE);
}

}  // namespace

PinnedPool& PinnedPool::instance() {
  static PinnedPool* pool = new PinnedPool();  // never destroyed: blocks may come back during process teardown
  return *pool;
}

void* PinnedPool::acquire(size_t bytes, size_t* capacity) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    // The smallest free block that fits and wastes at most half of itself.
    int best = -1;
    for (size_t i = 0; i < free_.size(); i++) {
      if (free_[i].second >= bytes && free_[i].second <= 2 * bytes + 4096 &&
          (best < 0 || free_[i].second < free_[best].second)) {
        best = static_cast<int>(i);
      }
    }
    if (best >= 0) {
      auto b = free_[best];
      free_.erase(free_.begin() + best);
      freeBytes_ -= b.second;
      *capacity = b.second;
      return b.first;
    }
  }
  void* p = nullptr;
  const size_t cap = std::max<size_t>(bytes, 64);
  MOE_CUDA(cudaHostAlloc(&p, cap, cudaHostAllocDefault));
  *capacity = cap;
  return p;
}

void PinnedPool::release(void* block, size_t capacity) {
  if (block == nullptr) return;
  std::vector<void*> drop;
  {
    std::lock_guard<std::mutex> lock(mu_);
    free_.emplace_back(block, capacity);
    freeBytes_ += capacity;
    while (freeBytes_ > kMaxFreeBytes && !free_.empty()) {  // oldest first
      drop.push_back(free_.front().first);
      freeBytes_ -= free_.front().second;
      free_.erase(free_.begin());
    }
  }
  for (void* p : drop) (void)cudaFreeHost(p);
}

PinnedPool::~PinnedPool() {
  for (auto& b : free_) (void)cudaFreeHost(b.first);
}

bool isPinnedHost(const void* p) {
  cudaPointerAttributes attr;
  if (cudaPointerGetAttributes(&attr, p) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return attr.type == cudaMemoryTypeHost;
}

PinnedStaging::~PinnedStaging() { PinnedPool::instance().release(ptr_, capacity_); }

void* PinnedStaging::ensure(size_t bytes) {
  if (bytes > capacity_) {
    PinnedPool::instance().release(ptr_, capacity_);
    ptr_ = nullptr;
    capacity_ = 0;
    ptr_ = PinnedPool::instance().acquire(bytes, &capacity_);
  }
  return ptr_;
}

MappedHostBuffer::~MappedHostBuffer() {
  if (host_ != nullptr) (void)cudaFreeHost(host_);
}

bool MappedHostBuffer::ensure(size_t bytes) {
  if (bytes <= capacity_) return false;
  if (host_ != nullptr) (void)cudaFreeHost(host_);
  host_ = device_ = nullptr;
  capacity_ = 0;
  void* p = nullptr;
  MOE_CUDA(cudaHostAlloc(&p, bytes, cudaHostAllocMapped | cudaHostAllocPortable));
  void* d = nullptr;
  const cudaError_t st = cudaHostGetDevicePointer(&d, p, 0);
  if (st != cudaSuccess) (void)cudaFreeHost(p);
  MOE_CUDA(st);
  host_ = p;
  device_ = d;
  capacity_ = bytes;
  return true;
}

size_t mappedCopyMaxBytes() {
  const char* v = std::getenv("TFJS_MOE_CUDA_MAPPED_KIB");
  return v == nullptr || v[0] == '\0' ? size_t(256) << 10 : static_cast<size_t>(std::strtoull(v, nullptr, 10)) << 10;
}

bool uploadStaged(void* dst, const void* src, size_t bytes, cudaStream_t stream, PinnedStaging& staging) {
  if (bytes == 0) return false;
  if (isPinnedHost(src)) {
    MOE_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream));
    return true;
  }
  const int n = threadsFor(bytes);
  if (n <= 1) {
    // A few KiB go straight from pageable memory (the driver puts them in its command stream: 3.5 us for 8 KiB
    // against 6.5 staged, H200 batch J); mid-size ones through staging, whose DMA is asynchronous where the
    // driver's pageable path is not (9.9 against 12.5 us for 128 KiB). TFJS_MOE_CUDA_SMALL_UPLOAD=pageable /
    // staged: one path for every small size (benchmark A/B).
    const char* v = std::getenv("TFJS_MOE_CUDA_SMALL_UPLOAD");
    const bool pageable = v != nullptr ? std::strcmp(v, "pageable") == 0 : bytes <= kInlineUploadBytes;
    if (pageable) {  // the driver has read src when this returns
      MOE_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream));
      return false;
    }
    void* stage = staging.ensure(bytes);
    copyToStaging(static_cast<char*>(stage), static_cast<const char*>(src), bytes, streamStores(false));
    MOE_CUDA(cudaMemcpyAsync(dst, stage, bytes, cudaMemcpyHostToDevice, stream));
    return false;
  }
  char* stage = static_cast<char*>(staging.ensure(bytes));
  const size_t chunk = chunkBytes(bytes, n);
  const int chunks = static_cast<int>((bytes + chunk - 1) / chunk);
  std::atomic<int> next{0};
  std::atomic<int> failed{static_cast<int>(cudaSuccess)};
  const bool nonTemporal = streamStores(true);
  WorkerPool::copies().run(n, [&](int) {
    for (int c = next.fetch_add(1); c < chunks; c = next.fetch_add(1)) {
      const size_t b = chunk * c, e = std::min(bytes, b + chunk);
      copyToStaging(stage + b, static_cast<const char*>(src) + b, e - b, nonTemporal);
      // cudaMemcpyAsync is thread-safe; the chunks are disjoint, so their order on the stream does not matter.
      const cudaError_t st =
          cudaMemcpyAsync(static_cast<char*>(dst) + b, stage + b, e - b, cudaMemcpyHostToDevice, stream);
      if (st != cudaSuccess) failed.store(static_cast<int>(st));
    }
  });
  MOE_CUDA(static_cast<cudaError_t>(failed.load()));
  return false;
}

// An output array's prefault, running on the prefault pool: the job, and when it started and ended.
struct PrefaultJob {
  std::shared_ptr<WorkerPool::Job> job;
  void* dst = nullptr;
  std::chrono::steady_clock::time_point start;
  std::atomic<long long> endNs{0};  // steady-clock nanoseconds at which its last range was done
};

SlicedDownload::~SlicedDownload() {
  if (pending_.active) (void)cudaStreamSynchronize(pending_.stream);
  waitPrefault();
  for (cudaEvent_t e : events_) (void)cudaEventDestroy(e);
}

void SlicedDownload::prefault(void* dst, size_t bytes) {
  waitPrefault();
  // Above kParallelMinBytes on up to 8 threads; a mid-size array on one (its faults cost tens of microseconds,
  // against a forward of hundreds); a few pages not at all (posting the job would cost more).
  // TFJS_MOE_CUDA_PREFAULT_THREADS: benchmark A/B of the large arrays' thread count.
  int most = 8;
  if (const char* v = std::getenv("TFJS_MOE_CUDA_PREFAULT_THREADS")) most = std::max(1, std::atoi(v));
  const int n = bytes >= kParallelMinBytes ? std::min(most, threadsFor(bytes)) : bytes >= kPrefaultMinBytes ? 1 : 0;
  if (n == 0) return;
  adviseHugePages(dst, bytes);
  auto p = std::make_shared<PrefaultJob>();
  p->dst = dst;
  p->start = std::chrono::steady_clock::now();
  // One slice per thread; TFJS_MOE_CUDA_PREFAULT_SPLIT=huge (benchmark A/B): the threads take the array's aligned
  // 2 MiB blocks one at a time instead (a huge page is faulted by one thread, not shared by two neighbouring slices).
  const char* split = std::getenv("TFJS_MOE_CUDA_PREFAULT_SPLIT");
  const bool byHuge = split != nullptr && std::strcmp(split, "huge") == 0 && bytes >= (size_t(4) << 20);
  const size_t huge = size_t(2) << 20, lo = reinterpret_cast<uintptr_t>(dst), base = lo & ~(huge - 1);
  const size_t per = byHuge ? huge : (bytes / n + 4095) / 4096 * 4096;
  const size_t first = byHuge ? lo - base : 0;  // the first block starts before dst
  const int items = byHuge ? static_cast<int>((first + bytes + huge - 1) / huge) : n;
  PrefaultJob* raw = p.get();  // outlives the job: waitPrefault() waits before dropping it
  p->job = WorkerPool::prefaults().post(items, [raw, dst, bytes, per, first](int i) {
    const size_t b = std::min(bytes, per * i > first ? per * i - first : 0);
    const size_t e = std::min(bytes, per * (i + 1) - first);
    if (b < e) touchPages(static_cast<char*>(dst) + b, e - b);
    const long long now = std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::steady_clock::now().time_since_epoch()).count();
    long long seen = raw->endNs.load();
    while (seen < now && !raw->endNs.compare_exchange_weak(seen, now)) {}
  }, n);
  prefault_ = std::move(p);
}

void SlicedDownload::waitPrefault() {
  if (!prefault_) return;
  const auto w0 = std::chrono::steady_clock::now();
  WorkerPool::prefaults().wait(*prefault_->job);
  const auto w1 = std::chrono::steady_clock::now();
  prefaultWaitMs_ = std::chrono::duration<double, std::milli>(w1 - w0).count();
  prefaultMs_ = (prefault_->endNs.load() - std::chrono::duration_cast<std::chrono::nanoseconds>(
                     prefault_->start.time_since_epoch()).count()) / 1e6;
  prefault_.reset();
}

void SlicedDownload::run(void* dst, const void* src, size_t bytes, void* landing, cudaStream_t stream,
                         cudaEvent_t after) {
  begin(dst, src, bytes, landing, stream, after);
  end();
}

void SlicedDownload::begin(void* dst, const void* src, size_t bytes, void* landing, cudaStream_t stream,
                           cudaEvent_t after) {
  if (pending_.active) end();  // an earlier download left open (its caller failed in between)
  prefaultMs_ = prefaultWaitMs_ = 0;
  if (prefault_ && prefault_->dst != dst) waitPrefault();
  Pending p;
  p.dst = dst;
  p.landing = landing;
  p.bytes = bytes;
  p.stream = stream;
  if (bytes == 0) {
    pending_ = p;
    pending_.active = true;
    return;
  }
  const int n = threadsFor(bytes);
  p.threads = n;
  const bool copy = landing != dst;
  if (n <= 1 || !copy) {  // pinned dst: one DMA straight into it
    MOE_CUDA(cudaMemcpyAsync(landing, src, bytes, cudaMemcpyDeviceToHost, stream));
    if (after != nullptr) MOE_CUDA(cudaEventRecord(after, stream));
    p.single = true;
    pending_ = p;
    pending_.active = true;
    return;
  }
  // Not prefaulted ahead (an activation's download, with no kernels left to hide behind): each copy thread
  // faults in its chunk's pages while that chunk's DMA is still running (a separate prefault, which must end
  // before any copy, measured 6.4 against 5.1 ms for 32 MiB in batch J).
  p.touchHere = !prefault_;
  if (p.touchHere) adviseHugePages(dst, bytes);
  p.chunk = chunkBytes(bytes, n);
  p.chunks = static_cast<int>((bytes + p.chunk - 1) / p.chunk);
  try {
    while (static_cast<int>(events_.size()) < p.chunks) {
      cudaEvent_t e;
      MOE_CUDA(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
      events_.push_back(e);
    }
    for (int c = 0; c < p.chunks; c++) {
      const size_t b = p.chunk * c, e = std::min(bytes, b + p.chunk);
      MOE_CUDA(cudaMemcpyAsync(static_cast<char*>(landing) + b, static_cast<const char*>(src) + b, e - b,
                               cudaMemcpyDeviceToHost, stream));
      MOE_CUDA(cudaEventRecord(events_[c], stream));
    }
    if (after != nullptr) MOE_CUDA(cudaEventRecord(after, stream));
  } catch (...) {
    (void)cudaStreamSynchronize(stream);  // no DMA into landing outlives this call
    waitPrefault();
    throw;
  }
  pending_ = p;
  pending_.active = true;
}

void SlicedDownload::end() {
  if (!pending_.active) return;
  const Pending p = pending_;
  pending_ = Pending();
  if (p.bytes == 0) {
    const cudaError_t st = cudaStreamSynchronize(p.stream);
    waitPrefault();  // before an error leaves dst to the caller
    MOE_CUDA(st);
    return;
  }
  if (p.single) {
    const cudaError_t st = cudaStreamSynchronize(p.stream);
    waitPrefault();  // before the copy into dst, and before an error leaves dst to the caller
    MOE_CUDA(st);
    if (p.landing != p.dst) std::memcpy(p.dst, p.landing, p.bytes);
    return;
  }
  // No chunk is copied into dst before its prefault (which writes a byte per page) is over.
  waitPrefault();
  std::atomic<int> next{0};
  std::atomic<int> failed{static_cast<int>(cudaSuccess)};
  WorkerPool::copies().run(p.threads, [&](int) {
    for (int c = next.fetch_add(1); c < p.chunks; c = next.fetch_add(1)) {
      const size_t b = p.chunk * c, e = std::min(p.bytes, b + p.chunk);
      if (p.touchHere) touchPages(static_cast<char*>(p.dst) + b, e - b);  // only this thread writes this chunk
      const cudaError_t st = cudaEventSynchronize(events_[c]);
      if (st != cudaSuccess) {
        failed.store(static_cast<int>(st));
        continue;
      }
      std::memcpy(static_cast<char*>(p.dst) + b, static_cast<const char*>(p.landing) + b, e - b);
    }
  });
  MOE_CUDA(static_cast<cudaError_t>(failed.load()));
  // Errors of the kernels before the copy surface here, as a synchronize would report them.
  MOE_CUDA(cudaStreamSynchronize(p.stream));
}

}  // namespace moe
