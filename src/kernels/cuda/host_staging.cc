// Pinned staging and the pinned block pool (host_staging.h).
#include "host_staging.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>

#include "moe_common.cuh"

namespace moe {
namespace {

// Below this a copy is one memcpy/DMA: thread start-up (tens of microseconds) would cost more than it saves.
constexpr size_t kParallelMinBytes = size_t(1) << 20;
constexpr size_t kSliceMinBytes = size_t(512) << 10;
constexpr int kMaxThreads = 16;  // page faults on a fresh output array dominate its copy: they scale with threads
// Free pinned blocks kept for reuse (page-locking is slow: about a millisecond per tens of MiB).
constexpr size_t kMaxFreeBytes = size_t(1) << 30;

int threadsFor(size_t bytes) {
  if (bytes < kParallelMinBytes) return 1;
  const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return static_cast<int>(std::min<size_t>({static_cast<size_t>(kMaxThreads), static_cast<size_t>(hw),
                                            bytes / kSliceMinBytes}));
}

// Long-lived helper threads for the host copies: starting 15 std::threads per copy cost tens of microseconds each,
// twice per forward. One job at a time (the layer's forward runs on the JS thread); the caller takes part.
class WorkerPool {
 public:
  static WorkerPool& instance() {
    static WorkerPool* pool = new WorkerPool();  // never destroyed: its threads sleep until the process ends
    return *pool;
  }
  // Runs body(i) for every i in [0, n), on the caller and the pool's threads; returns when all are done.
  void run(int n, const std::function<void(int)>& body) {
    std::lock_guard<std::mutex> one(runMu_);
    ensureThreads(n - 1);
    auto job = std::make_shared<Job>();
    job->body = &body;
    job->n = n;
    job->pending = n;
    {
      std::lock_guard<std::mutex> lock(mu_);
      job_ = job;
      generation_++;
    }
    cv_.notify_all();
    work(*job);
    std::unique_lock<std::mutex> lock(mu_);
    doneCv_.wait(lock, [&] { return job->pending == 0; });
    job_.reset();
  }

 private:
  // One run's tasks: a thread that wakes late holds its own reference and finds no index left, so it never
  // calls a later run's body with this one's indices.
  struct Job {
    const std::function<void(int)>* body = nullptr;
    int n = 0;
    int pending = 0;  // guarded by mu_
    std::atomic<int> next{0};
  };

  void ensureThreads(int want) {
    while (threads_ < want) {
      std::thread([this, seen = generation_]() mutable { loop(seen); }).detach();
      threads_++;
    }
  }
  void loop(unsigned long long seen) {
    for (;;) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        job = job_;
      }
      if (job) work(*job);
    }
  }
  // Takes indices until none are left; the last one to finish wakes the caller.
  void work(Job& job) {
    int done = 0;
    for (int i = job.next.fetch_add(1); i < job.n; i = job.next.fetch_add(1)) {
      (*job.body)(i);
      done++;
    }
    if (done == 0) return;
    std::lock_guard<std::mutex> lock(mu_);
    job.pending -= done;
    if (job.pending == 0) doneCv_.notify_all();
  }

  std::mutex runMu_, mu_;
  std::condition_variable cv_, doneCv_;
  std::shared_ptr<Job> job_;
  unsigned long long generation_ = 0;
  int threads_ = 0;
};

// Runs body(begin, end) over [0, bytes) split into `n` 64-byte-aligned slices, one per pool task.
template <typename F>
void forSlices(size_t bytes, int n, F body) {
  const size_t per = (bytes / n + 63) / 64 * 64;
  const std::function<void(int)> task = [&](int i) {
    const size_t b = std::min(bytes, per * i), e = std::min(bytes, per * (i + 1));
    if (b < e) body(b, e);
  };
  if (n <= 1) task(0);
  else WorkerPool::instance().run(n, task);
}

// Writes one byte per page of [p, p + bytes): the page faults of fresh memory, taken ahead of the copy.
void touchPages(char* p, size_t bytes) {
  static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  for (size_t off = 0; off < bytes; off += page) reinterpret_cast<volatile char*>(p)[off] = 0;
}

// TFJS_MOE_CUDA_HUGEPAGES=1 (benchmark A/B): ask for transparent huge pages on the 2 MiB-aligned interior of a
// large output array before its first touch (512x fewer faults where the kernel's THP mode allows it).
bool adviseHugePages() {
  static const bool on = [] {
    const char* v = std::getenv("TFJS_MOE_CUDA_HUGEPAGES");
    return v != nullptr && v[0] == '1';
  }();
  return on;
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

void uploadStaged(void* dst, const void* src, size_t bytes, cudaStream_t stream, PinnedStaging& staging) {
  if (bytes == 0) return;
  if (bytes < kParallelMinBytes || isPinnedHost(src)) {
    MOE_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream));
    return;
  }
  char* stage = static_cast<char*>(staging.ensure(bytes));
  const int n = threadsFor(bytes);
  std::vector<cudaError_t> status(n, cudaSuccess);
  const size_t per = (bytes / n + 63) / 64 * 64;
  forSlices(bytes, n, [&](size_t b, size_t e) {
    std::memcpy(stage + b, static_cast<const char*>(src) + b, e - b);
    // cudaMemcpyAsync is thread-safe; the slices are disjoint, so their order on the stream does not matter.
    status[b / per] = cudaMemcpyAsync(static_cast<char*>(dst) + b, stage + b, e - b, cudaMemcpyHostToDevice, stream);
  });
  for (cudaError_t s : status) MOE_CUDA(s);
}

SlicedDownload::~SlicedDownload() {
  for (cudaEvent_t e : events_) (void)cudaEventDestroy(e);
}

void SlicedDownload::run(void* dst, const void* src, size_t bytes, void* landing, cudaStream_t stream) {
  if (bytes == 0) {
    MOE_CUDA(cudaStreamSynchronize(stream));
    return;
  }
  const int n = threadsFor(bytes);
  if (n <= 1) {
    MOE_CUDA(cudaMemcpyAsync(landing, src, bytes, cudaMemcpyDeviceToHost, stream));
    MOE_CUDA(cudaStreamSynchronize(stream));
    if (landing != dst) std::memcpy(dst, landing, bytes);
    return;
  }
  while (static_cast<int>(events_.size()) < n) {
    cudaEvent_t e;
    MOE_CUDA(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    events_.push_back(e);
  }
  const size_t per = (bytes / n + 63) / 64 * 64;
  for (int i = 0; i < n; i++) {
    const size_t b = std::min(bytes, per * i), e = std::min(bytes, per * (i + 1));
    if (b < e) {
      MOE_CUDA(cudaMemcpyAsync(static_cast<char*>(landing) + b, static_cast<const char*>(src) + b, e - b,
                               cudaMemcpyDeviceToHost, stream));
    }
    MOE_CUDA(cudaEventRecord(events_[i], stream));
  }
  if (adviseHugePages() && bytes >= (size_t(4) << 20)) {
    const uintptr_t huge = uintptr_t(2) << 20, lo = reinterpret_cast<uintptr_t>(dst), hi = lo + bytes;
    const uintptr_t a = (lo + huge - 1) & ~(huge - 1), z = hi & ~(huge - 1);
    if (z > a) (void)madvise(reinterpret_cast<void*>(a), z - a, MADV_HUGEPAGE);
  }
  std::vector<cudaError_t> status(n, cudaSuccess);
  const bool copy = landing != dst;
  forSlices(bytes, n, [&](size_t b, size_t e) {
    if (copy) touchPages(static_cast<char*>(dst) + b, e - b);
    const int i = static_cast<int>(b / per);
    status[i] = cudaEventSynchronize(events_[i]);
    if (status[i] == cudaSuccess && copy) {
      std::memcpy(static_cast<char*>(dst) + b, static_cast<const char*>(landing) + b, e - b);
    }
  });
  for (cudaError_t s : status) MOE_CUDA(s);
  // Errors of the kernels before the copy surface here, as a synchronize would report them.
  MOE_CUDA(cudaStreamSynchronize(stream));
}

void parallelCopy(void* dst, const void* src, size_t bytes) {
  const int n = threadsFor(bytes);
  if (n <= 1) {
    if (bytes) std::memcpy(dst, src, bytes);
    return;
  }
  forSlices(bytes, n, [&](size_t b, size_t e) {
    std::memcpy(static_cast<char*>(dst) + b, static_cast<const char*>(src) + b, e - b);
  });
}

}  // namespace moe
