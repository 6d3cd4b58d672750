// A fixed set of worker threads that run data-parallel loops. Workers spin briefly between
// loops (a forward pass issues hundreds of small ones per token) and then sleep.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace muse {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Calls fn(task, thread) for every task in [0, n_tasks); tasks are handed out dynamically.
  template <typename Fn>
  void parallel_for(int64_t n_tasks, Fn&& fn) {
    if (n_tasks <= 0) return;
    if (n_threads_ == 1 || n_tasks == 1) {
      for (int64_t t = 0; t < n_tasks; ++t) fn(t, 0);
      return;
    }
    run(n_tasks, [](void* ctx, int64_t task, int thread) { (*static_cast<std::remove_reference_t<Fn>*>(ctx))(task, thread); },
        (void*)&fn);
  }

 private:
  using TaskFn = void (*)(void*, int64_t, int);
  void run(int64_t n_tasks, TaskFn fn, void* ctx);
  void worker(int index);
  void work(int thread);

  int n_threads_;
  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int64_t> next_task_{0};
  std::atomic<int> busy_{0};
  std::atomic<bool> stop_{false};
  int64_t n_tasks_ = 0;
  TaskFn fn_ = nullptr;
  void* ctx_ = nullptr;
};

// Threads to use when the user does not say: the physical cores we may run on.
int default_thread_count();

}  // namespace muse
