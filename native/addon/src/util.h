// Small shared helpers: owned fds, argument checks, NativeError construction and
// capture of libbpf's log output for the calling thread.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>
#include <unistd.h>

namespace weir {

/// An fd we own; closed on destruction. Move-only.
class Fd {
public:
	Fd() = default;
	explicit Fd(int fd) : fd_(fd) {}
	Fd(const Fd &) = delete;
	Fd &operator=(const Fd &) = delete;
	Fd(Fd &&o) noexcept : fd_(o.release()) {}
	Fd &operator=(Fd &&o) noexcept
	{
		if (this != &o)
			reset(o.release());
		return *this;
	}
	~Fd() { reset(); }

	int get() const { return fd_; }
	bool valid() const { return fd_ >= 0; }
	int release()
	{
		int fd = fd_;
		fd_ = -1;
		return fd;
	}
	void reset(int fd = -1)
	{
		if (fd_ >= 0)
			::close(fd_);
		fd_ = fd;
	}

private:
	int fd_ = -1;
};

/// errno name ('EPERM'); libbpf's own codes get their LIBBPF_ERRNO__* name.
std::string ErrnoName(int err);
/// strerror, or libbpf_strerror for libbpf's own codes.
std::string ErrnoText(int err);

/// Details of a failure, built off the JS thread and turned into an Error on it.
struct Failure {
	std::string op;	     // failing libbpf function or syscall
	std::string subject; // what it was applied to (object file, map name, path …)
	int err = 0;	     // positive errno
	std::string detail;  // extra explanation appended to the message
	std::string log;     // verifier log / libbpf messages
};

/// A JS Error with code, errno, op and log, message "op(subject): text (CODE)[: detail]".
Napi::Error MakeError(Napi::Env env, const Failure &f);

[[noreturn]] inline void Throw(Napi::Env env, Failure f)
{
	throw MakeError(env, f);
}
[[noreturn]] inline void Throw(Napi::Env env, std::string op, std::string subject, int err, std::string detail = "",
			       std::string log = "")
{
	throw MakeError(env, Failure{std::move(op), std::move(subject), err < 0 ? -err : err, std::move(detail),
				     std::move(log)});
}

/// Converts a libbpf return value (negative errno, or -1 with errno set) to a positive errno.
inline int ErrOf(long ret)
{
	if (ret < -1)
		return (int)-ret;
	return errno ? errno : EINVAL;
}

/**
 * LogCapture - collects libbpf print output for the current thread while alive.
 * libbpf_set_print is process-wide; the callback appends to the capture active on
 * the calling thread, so concurrent loads on different threads don't mix.
 */
class LogCapture {
public:
	LogCapture();
	~LogCapture();
	LogCapture(const LogCapture &) = delete;
	LogCapture &operator=(const LogCapture &) = delete;
	const std::string &text() const { return text_; }
	void append(const char *s) { text_ += s; }

private:
	std::string text_;
	LogCapture *prev_;
};

/// "map", "prog", "link" or "" for an fd from bpf_obj_get (from /proc/self/fd).
std::string BpfFdKind(int fd);

/// Installs the libbpf print callback once per process.
void InstallLibbpfPrint();

// Argument helpers: all throw an EINVAL NativeError (op = the JS method name).
std::string ArgString(const Napi::CallbackInfo &info, size_t i, const char *op, const char *what);
Napi::Buffer<uint8_t> ArgBuffer(const Napi::CallbackInfo &info, size_t i, const char *op, const char *what);
uint32_t ArgU32(const Napi::CallbackInfo &info, size_t i, const char *op, const char *what, bool optional = false,
		uint32_t dflt = 0);
/// info[i] as an options object.
Napi::Object ArgObject(const Napi::CallbackInfo &info, size_t i, const char *op);
/// o[key] as a string; "" when absent (an error when required).
std::string OptString(Napi::Env env, Napi::Object o, const char *key, const char *op, bool required);
/// o[key] as an integer in [0, 2^32); dflt when absent.
int64_t OptInt(Napi::Env env, Napi::Object o, const char *key, const char *op, int64_t dflt);
/// o[key] as a boolean: 1, 0, or -1 when absent.
int OptBool(Napi::Env env, Napi::Object o, const char *key, const char *op);

} // namespace weir
