#include "util.h"

#include <bpf/libbpf.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace weir {

namespace {

constexpr int kEnotsupp = 524; // kernel-internal ENOTSUPP, leaks out of some bpf() paths

thread_local LogCapture *tls_capture = nullptr;

int LibbpfPrint(enum libbpf_print_level level, const char *fmt, va_list args)
{
	LogCapture *cap = tls_capture;
	if (level == LIBBPF_DEBUG && !cap)
		return 0;
	char small[1024];
	va_list copy;
	va_copy(copy, args);
	int n = vsnprintf(small, sizeof(small), fmt, copy);
	va_end(copy);
	std::string line;
	if (n < 0)
		return 0;
	if ((size_t)n < sizeof(small)) {
		line.assign(small, n);
	} else {
		line.resize(n + 1);
		vsnprintf(line.data(), n + 1, fmt, args);
		line.resize(n);
	}
	if (cap) {
		if (level != LIBBPF_DEBUG)
			cap->append(line.c_str());
		return 0;
	}
	// Outside a capture: warnings go to stderr only when asked for.
	static const bool verbose = std::getenv("WEIR_LIBBPF_VERBOSE") != nullptr;
	if (verbose)
		fputs(line.c_str(), stderr);
	return 0;
}

} // namespace

std::string ErrnoName(int err)
{
	if (err == kEnotsupp)
		return "ENOTSUPP";
	if (err >= __LIBBPF_ERRNO__START && err < __LIBBPF_ERRNO__END) {
		static const char *const names[] = {
			"LIBBPF_ERRNO__LIBELF", "LIBBPF_ERRNO__FORMAT",	  "LIBBPF_ERRNO__KVERSION",
			"LIBBPF_ERRNO__ENDIAN", "LIBBPF_ERRNO__INTERNAL", "LIBBPF_ERRNO__RELOC",
			"LIBBPF_ERRNO__LOAD",	"LIBBPF_ERRNO__VERIFY",	  "LIBBPF_ERRNO__PROG2BIG",
			"LIBBPF_ERRNO__KVER",	"LIBBPF_ERRNO__PROGTYPE", "LIBBPF_ERRNO__WRNGPID",
			"LIBBPF_ERRNO__INVSEQ", "LIBBPF_ERRNO__NLPARSE",
		};
		size_t i = err - __LIBBPF_ERRNO__START;
		if (i < sizeof(names) / sizeof(names[0]))
			return names[i];
	}
	const char *name = strerrorname_np(err);
	return name ? name : "E" + std::to_string(err);
}

std::string ErrnoText(int err)
{
	if (err == kEnotsupp)
		return "Operation not supported";
	char buf[256];
	if (libbpf_strerror(err, buf, sizeof(buf)) == 0)
		return buf;
	return strerror(err);
}

Napi::Error MakeError(Napi::Env env, const Failure &f)
{
	int err = f.err > 0 ? f.err : EINVAL;
	std::string code = ErrnoName(err);
	std::string msg = f.op;
	if (!f.subject.empty())
		msg += "(" + f.subject + ")";
	msg += ": " + ErrnoText(err) + " (" + code + ")";
	if (!f.detail.empty())
		msg += ": " + f.detail;
	Napi::Error e = Napi::Error::New(env, msg);
	Napi::Object o = e.Value();
	o.Set("code", code);
	o.Set("errno", err);
	o.Set("op", f.op);
	o.Set("log", f.log);
	return e;
}

LogCapture::LogCapture() : prev_(tls_capture)
{
	tls_capture = this;
}
LogCapture::~LogCapture()
{
	tls_capture = prev_;
}

std::string BpfFdKind(int fd)
{
	char link[64], target[128];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		return "";
	target[n] = '\0';
	std::string t(target);
	if (t == "anon_inode:bpf-map")
		return "map";
	if (t == "anon_inode:bpf-prog")
		return "prog";
	if (t == "anon_inode:bpf_link" || t == "anon_inode:bpf-link")
		return "link";
	return "";
}

void InstallLibbpfPrint()
{
	static std::once_flag once;
	std::call_once(once, [] { libbpf_set_print(LibbpfPrint); });
}

std::string ArgString(const Napi::CallbackInfo &info, size_t i, const char *op, const char *what)
{
	if (info.Length() <= i || !info[i].IsString())
		Throw(info.Env(), op, "", EINVAL, std::string(what) + " must be a string");
	return info[i].As<Napi::String>().Utf8Value();
}

Napi::Buffer<uint8_t> ArgBuffer(const Napi::CallbackInfo &info, size_t i, const char *op, const char *what)
{
	if (info.Length() <= i || !info[i].IsBuffer())
		Throw(info.Env(), op, "", EINVAL, std::string(what) + " must be a Buffer");
	return info[i].As<Napi::Buffer<uint8_t>>();
}

uint32_t ArgU32(const Napi::CallbackInfo &info, size_t i, const char *op, const char *what, bool optional,
		uint32_t dflt)
{
	if (info.Length() <= i || info[i].IsUndefined() || info[i].IsNull()) {
		if (optional)
			return dflt;
		Throw(info.Env(), op, "", EINVAL, std::string(what) + " is required");
	}
	if (!info[i].IsNumber())
		Throw(info.Env(), op, "", EINVAL, std::string(what) + " must be a number");
	double d = info[i].As<Napi::Number>().DoubleValue();
	if (!(d >= 0 && d <= 4294967295.0) || d != (double)(uint64_t)d)
		Throw(info.Env(), op, "", EINVAL, std::string(what) + " must be an integer in [0, 2^32)");
	return (uint32_t)d;
}

Napi::Object ArgObject(const Napi::CallbackInfo &info, size_t i, const char *op)
{
	if (info.Length() <= i || !info[i].IsObject())
		Throw(info.Env(), op, "", EINVAL, "options object expected");
	return info[i].As<Napi::Object>();
}

std::string OptString(Napi::Env env, Napi::Object o, const char *key, const char *op, bool required)
{
	Napi::Value v = o.Get(key);
	if (v.IsUndefined() || v.IsNull()) {
		if (required)
			Throw(env, op, "", EINVAL, std::string(key) + " is required");
		return "";
	}
	if (!v.IsString())
		Throw(env, op, "", EINVAL, std::string(key) + " must be a string");
	return v.As<Napi::String>().Utf8Value();
}

int64_t OptInt(Napi::Env env, Napi::Object o, const char *key, const char *op, int64_t dflt)
{
	Napi::Value v = o.Get(key);
	if (v.IsUndefined() || v.IsNull())
		return dflt;
	if (!v.IsNumber())
		Throw(env, op, "", EINVAL, std::string(key) + " must be a number");
	double d = v.As<Napi::Number>().DoubleValue();
	if (d != (double)(int64_t)d || d < 0 || d > 4294967295.0)
		Throw(env, op, "", EINVAL, std::string(key) + " must be a non-negative integer");
	return (int64_t)d;
}

int OptBool(Napi::Env env, Napi::Object o, const char *key, const char *op)
{
	Napi::Value v = o.Get(key);
	if (v.IsUndefined() || v.IsNull())
		return -1;
	if (!v.IsBoolean())
		Throw(env, op, "", EINVAL, std::string(key) + " must be a boolean");
	return v.As<Napi::Boolean>().Value() ? 1 : 0;
}

} // namespace weir
