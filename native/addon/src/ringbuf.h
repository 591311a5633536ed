// NativeRingBuffer: consumes a BPF_MAP_TYPE_RINGBUF on its own native thread and
// hands batches of record copies to JS through a ThreadSafeFunction. A poller that
// fails (epoll_wait, ring_buffer__consume) stops and says so once, through the same
// ThreadSafeFunction, as an Error (code, errno, op) for the onError callback.
#pragma once

#include "util.h"

#include <napi.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

struct ring_buffer;

namespace weir {

using Record = std::vector<uint8_t>;
using Batch = std::vector<Record>;

/// What the poller hands to JS: a batch of records, or the failure that stopped it.
struct Delivery {
	Batch batch;
	Failure fatal; // fatal.err != 0: the poller has stopped
};

class RingBuffer : public Napi::ObjectWrap<RingBuffer> {
public:
	static Napi::Function Define(Napi::Env env);
	/// binding.openRingBuffer(map, onBatch, onError?)
	static Napi::Value Open(const Napi::CallbackInfo &info);

	explicit RingBuffer(const Napi::CallbackInfo &info);
	~RingBuffer() override;

private:
	static int OnSample(void *ctx, void *data, size_t size);
	static void CallJs(Napi::Env env, Napi::Function cb, RingBuffer *self, Delivery *d);
	using Tsfn = Napi::TypedThreadSafeFunction<RingBuffer, Delivery, &RingBuffer::CallJs>;

	Napi::Value Close(const Napi::CallbackInfo &info);
	void Poll();
	/// Poller thread: queues d to JS. Return: false when the TSFN is closing.
	bool Deliver(Delivery *d);
	/// JS thread: the poller stopped on f; tells onError (stderr without one).
	void ReportFatal(Napi::Env env, const Failure &f);
	void Stop();

	Fd map_fd_;
	Fd wake_fd_; // eventfd: wakes the poller for close()
	Fd epoll_fd_;
	struct ring_buffer *rb_ = nullptr;
	std::string name_;
	Tsfn tsfn_;
	Napi::FunctionReference on_error_; // empty: failures go to stderr
	Napi::ObjectReference self_;	   // keeps us alive while open
	std::thread thread_;
	std::atomic<bool> stop_{false};
	bool closed_ = false; // JS thread only
	Batch pending_;	      // poller thread only
	std::mutex mu_;
	std::condition_variable cv_;
	unsigned inflight_ = 0; // batches queued to JS, guarded by mu_
};

} // namespace weir
