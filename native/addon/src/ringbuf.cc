#include "ringbuf.h"

#include "addon.h"
#include "map.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>

namespace weir {

namespace {

// Batches handed to JS and not yet delivered. Beyond this the poller stops
// reading, the kernel ring fills and producers see reserve failures: that is the
// back-pressure, not unbounded memory here.
constexpr unsigned kMaxInflight = 64;

struct RingInit {
	Fd fd;
	std::string name;
	Napi::Function cb;
	Napi::Function on_error; // may be empty
};

} // namespace

Napi::Function RingBuffer::Define(Napi::Env env)
{
	return DefineClass(env, "NativeRingBuffer", {InstanceMethod<&RingBuffer::Close>("close")});
}

Napi::Value RingBuffer::Open(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	const char *op = "openRingBuffer";
	if (info.Length() < 1 || !info[0].IsObject() || !info[0].As<Napi::Object>().InstanceOf(Data(env).map.Value()))
		Throw(env, op, "", EINVAL, "expected a NativeMap");
	if (info.Length() < 2 || !info[1].IsFunction())
		Throw(env, op, "", EINVAL, "onBatch must be a function");
	bool has_on_error = info.Length() >= 3 && !info[2].IsUndefined() && !info[2].IsNull();
	if (has_on_error && !info[2].IsFunction())
		Throw(env, op, "", EINVAL, "onError must be a function");
	Map *map = Map::Unwrap(info[0].As<Napi::Object>());
	if (map->fd() < 0)
		Throw(env, op, map->name(), EBADF, "the map handle is closed");
	if (map->type() != BPF_MAP_TYPE_RINGBUF)
		Throw(env, op, map->name(), EINVAL, "not a ring buffer (map type " + std::to_string(map->type()) + ")");
	RingInit init{Fd(fcntl(map->fd(), F_DUPFD_CLOEXEC, 3)), map->name(), info[1].As<Napi::Function>(),
		      has_on_error ? info[2].As<Napi::Function>() : Napi::Function()};
	if (!init.fd.valid())
		Throw(env, "fcntl", map->name(), errno, "duplicating the map fd");
	return Data(env).ringbuf.New({Napi::External<RingInit>::New(env, &init)});
}

RingBuffer::RingBuffer(const Napi::CallbackInfo &info) : Napi::ObjectWrap<RingBuffer>(info)
{
	Napi::Env env = info.Env();
	if (!IsNativeInit<RingBuffer>(info))
		Throw(env, "NativeRingBuffer", "", EINVAL, "use openRingBuffer()");
	auto *init = info[0].As<Napi::External<RingInit>>().Data();
	map_fd_ = std::move(init->fd);
	name_ = init->name;
	if (!init->on_error.IsEmpty())
		on_error_ = Napi::Persistent(init->on_error);

	{
		LogCapture cap;
		rb_ = ring_buffer__new(map_fd_.get(), &RingBuffer::OnSample, this, nullptr);
		if (!rb_)
			Throw(env, Failure{"ring_buffer__new", name_, errno ? errno : EINVAL, "", cap.text()});
	}
	wake_fd_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
	epoll_fd_.reset(epoll_create1(EPOLL_CLOEXEC));
	struct epoll_event ev = {};
	ev.events = EPOLLIN;
	ev.data.u32 = 0;
	bool ok = wake_fd_.valid() && epoll_fd_.valid() &&
		  epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, ring_buffer__epoll_fd(rb_), &ev) == 0;
	ev.data.u32 = 1;
	ok = ok && epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, wake_fd_.get(), &ev) == 0;
	if (!ok) {
		int err = errno;
		ring_buffer__free(rb_);
		rb_ = nullptr;
		Throw(env, "epoll_ctl", name_, err);
	}

	// The TSFN's finalizer drops our self-reference: until then queued batches may
	// still reach CallJs, which touches this object.
	self_ = Napi::Persistent(info.This().As<Napi::Object>());
	tsfn_ = Tsfn::New(env, init->cb, "weir:ringbuf", 0 /* unbounded: see kMaxInflight */, 1, this,
			  [](Napi::Env, void *, RingBuffer *self) {
				  self->Stop(); // env teardown with the ring still open
				  self->self_.Reset();
			  });
	thread_ = std::thread([this] { Poll(); });
}

RingBuffer::~RingBuffer()
{
	Stop();
}

int RingBuffer::OnSample(void *ctx, void *data, size_t size)
{
	auto *self = static_cast<RingBuffer *>(ctx);
	auto *p = static_cast<uint8_t *>(data);
	try {
		self->pending_.emplace_back(p, p + size);
	} catch (const std::bad_alloc &) {
		return -ENOMEM; // ring_buffer__consume stops and returns it (no exception through libbpf)
	}
	return 0;
}

bool RingBuffer::Deliver(Delivery *d)
{
	{
		std::lock_guard<std::mutex> lk(mu_);
		inflight_++;
	}
	if (tsfn_.NonBlockingCall(d) != napi_ok) {
		delete d; // closing
		return false;
	}
	return true;
}

void RingBuffer::Poll()
{
	static const char *const kStopped = "the ring buffer poller stopped: no more events until it is reopened";
	struct epoll_event evs[2];
	Failure fatal;
	while (!stop_.load()) {
		{
			std::unique_lock<std::mutex> lk(mu_);
			cv_.wait(lk, [this] { return stop_.load() || inflight_ < kMaxInflight; });
		}
		if (stop_.load())
			break;
		int n = epoll_wait(epoll_fd_.get(), evs, 2, 1000);
		if (n < 0 && errno != EINTR) {
			fatal = {"epoll_wait", name_, errno, kStopped};
			break;
		}
		if (stop_.load())
			break;
		int ret = ring_buffer__consume(rb_);
		if (ret < 0 && ret != -EINTR)
			fatal = {"ring_buffer__consume", name_, -ret, kStopped};
		if (!pending_.empty()) { // what was read before a failure still goes out
			auto *d = new Delivery{std::move(pending_), {}};
			pending_.clear();
			if (!Deliver(d))
				return;
		}
		if (fatal.err)
			break;
	}
	if (fatal.err && !stop_.load())
		Deliver(new Delivery{{}, fatal});
}

void RingBuffer::CallJs(Napi::Env env, Napi::Function cb, RingBuffer *self, Delivery *d)
{
	std::unique_ptr<Delivery> owned(d);
	if (!env || !self) // the TSFN is being torn down: just free
		return;
	{
		std::lock_guard<std::mutex> lk(self->mu_);
		self->inflight_--;
	}
	self->cv_.notify_all();
	if (self->closed_ || !d)
		return;
	if (d->fatal.err) {
		self->ReportFatal(env, d->fatal);
		return;
	}
	const Batch &batch = d->batch;
	Napi::Array records = Napi::Array::New(env, batch.size());
	for (size_t i = 0; i < batch.size(); i++) {
		const Record &r = batch[i];
		records.Set((uint32_t)i, Napi::Buffer<uint8_t>::Copy(env, r.data(), r.size()));
	}
	cb.Call({records});
}

void RingBuffer::ReportFatal(Napi::Env env, const Failure &f)
{
	Napi::Error e = MakeError(env, f);
	if (on_error_.IsEmpty()) {
		fprintf(stderr, "weir: ring buffer %s: %s\n", name_.c_str(), e.Message().c_str());
		return;
	}
	on_error_.Call({e.Value()});
}

void RingBuffer::Stop()
{
	if (thread_.joinable()) {
		stop_.store(true);
		uint64_t one = 1;
		if (write(wake_fd_.get(), &one, sizeof(one)) < 0) {
			// the poller still sees stop_ within its epoll timeout
		}
		cv_.notify_all();
		thread_.join();
	}
	if (rb_) {
		ring_buffer__free(rb_);
		rb_ = nullptr;
	}
	map_fd_.reset();
	wake_fd_.reset();
	epoll_fd_.reset();
}

Napi::Value RingBuffer::Close(const Napi::CallbackInfo &info)
{
	if (closed_)
		return info.Env().Undefined();
	closed_ = true;
	Stop();
	// Releasing the TSFN lets the event loop end; queued batches are dropped.
	tsfn_.Release();
	return info.Env().Undefined();
}

} // namespace weir
