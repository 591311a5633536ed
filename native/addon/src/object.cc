#include "object.h"

#include "addon.h"
#include "map.h"
#include "program.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <map>
#include <vector>

namespace weir {

namespace {

// The verifier log buffer: reserved address space, not memory, until the kernel
// writes to it. Large, because a log the kernel must truncate turns the load's
// error into ENOSPC (hiding EACCES), and level-1 logs of big programs are tens of MB.
constexpr size_t kLogSize = 128u << 20;

struct ObjectInit {
	std::string path;
	std::string pin_root;
	std::map<std::string, std::vector<uint8_t>> rodata;
	std::map<std::string, uint32_t> max_entries;
	uint32_t log_level = 0;
};

std::string Basename(const std::string &path)
{
	size_t slash = path.rfind('/');
	return slash == std::string::npos ? path : path.substr(slash + 1);
}

bool EndsWith(const std::string &s, const std::string &suffix)
{
	return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/**
 * ApplyRodata() - write load-time values of `const volatile` globals.
 * Finds each variable in the object's BTF DATASEC ".rodata" and copies the value
 * into the .rodata map's initial image (what the kernel gets at load).
 * Return: an empty Failure on success.
 */
Failure ApplyRodata(struct bpf_object *obj, const std::string &file,
		    const std::map<std::string, std::vector<uint8_t>> &values)
{
	if (values.empty())
		return {};
	struct bpf_map *rodata = nullptr, *m;
	bpf_object__for_each_map(m, obj) {
		if (EndsWith(bpf_map__name(m), ".rodata")) {
			rodata = m;
			break;
		}
	}
	const struct btf *btf = bpf_object__btf(obj);
	int sec_id = btf ? btf__find_by_name_kind(btf, ".rodata", BTF_KIND_DATASEC) : -ENOENT;
	if (!rodata || sec_id < 0)
		return {"rodata", file, EINVAL,
			"the object has no .rodata section (no const volatile globals) but rodata '" +
				values.begin()->first + "' was given"};
	size_t image_size = 0;
	auto *image = (uint8_t *)bpf_map__initial_value(rodata, &image_size);
	if (!image)
		return {"bpf_map__initial_value", file, EINVAL, "no initial image for .rodata"};
	const struct btf_type *sec = btf__type_by_id(btf, sec_id);
	const struct btf_var_secinfo *vs = btf_var_secinfos(sec);
	std::map<std::string, const struct btf_var_secinfo *> vars;
	for (int i = 0; i < btf_vlen(sec); i++, vs++) {
		const struct btf_type *var = btf__type_by_id(btf, vs->type);
		vars[btf__name_by_offset(btf, var->name_off)] = vs;
	}
	for (const auto &[name, value] : values) {
		auto it = vars.find(name);
		if (it == vars.end())
			return {"rodata", file, EINVAL, "no const volatile global named '" + name + "' in .rodata"};
		const struct btf_var_secinfo *v = it->second;
		if (value.size() != v->size)
			return {"rodata", file, EINVAL,
				"'" + name + "' is " + std::to_string(v->size) + " bytes, got " +
					std::to_string(value.size())};
		if ((size_t)v->offset + v->size > image_size)
			return {"rodata", file, EINVAL, "'" + name + "' lies outside the .rodata image"};
		memcpy(image + v->offset, value.data(), value.size());
	}
	return {};
}

/**
 * ApplyMaxEntries() - size maps before load (bpf_map__set_max_entries).
 * A map reused from a pin keeps its size only if it matches: libbpf refuses a
 * pinned map whose max_entries differs, so a changed size shows at load.
 * Return: an empty Failure on success.
 */
Failure ApplyMaxEntries(struct bpf_object *obj, const std::string &file, const std::map<std::string, uint32_t> &sizes)
{
	for (const auto &[name, n] : sizes) {
		struct bpf_map *m = bpf_object__find_map_by_name(obj, name.c_str());
		if (!m)
			return {"bpf_map__set_max_entries", file + ":" + name, ENOENT,
				"no map named '" + name + "' to size"};
		if (n == 0)
			return {"bpf_map__set_max_entries", file + ":" + name, EINVAL,
				"max entries must be at least 1"};
		int ret = bpf_map__set_max_entries(m, n);
		if (ret)
			return {"bpf_map__set_max_entries", file + ":" + name, ErrOf(ret)};
	}
	return {};
}

/// Calls fn(name, value) for each property of the object option o[key] (absent: none).
void ForEachOption(Napi::Env env, Napi::Object o, const char *key, const std::string &path, const char *kind,
		   const std::function<void(const std::string &, Napi::Value)> &fn)
{
	Napi::Value opt = o.Get(key);
	if (opt.IsUndefined() || opt.IsNull())
		return;
	if (!opt.IsObject())
		Throw(env, "openObject", path, EINVAL, std::string(key) + " must be " + kind);
	Napi::Object r = opt.As<Napi::Object>();
	Napi::Array names = r.GetPropertyNames();
	for (uint32_t i = 0; i < names.Length(); i++) {
		std::string name = names.Get(i).ToString().Utf8Value();
		fn(name, r.Get(name));
	}
}

} // namespace

/**
 * LoadWorker - runs bpf_object__load (the verifier) off the JS thread. Holds a
 * reference to its Object so neither is collected while the kernel works.
 */
class LoadWorker : public Napi::AsyncWorker {
public:
	LoadWorker(Object *o, Napi::Promise::Deferred deferred)
		: Napi::AsyncWorker(o->Env(), "weir:load"), o_(o), self_(Napi::Persistent(o->Value())),
		  deferred_(deferred)
	{
	}

	void Execute() override
	{
		LogCapture cap;
		if (o_->log_buf_)
			o_->log_buf_[0] = '\0';
		int ret = bpf_object__load(o_->obj_);
		if (ret) {
			f_.op = "bpf_object__load";
			f_.subject = o_->file_;
			f_.err = ErrOf(ret);
			std::string kernel = o_->log_buf_ ? std::string(o_->log_buf_.get(),
									strnlen(o_->log_buf_.get(), o_->log_size_))
							  : "";
			f_.log = kernel;
			if (!kernel.empty() && !cap.text().empty())
				f_.log += "\n";
			f_.log += cap.text();
			if (f_.err == ENOSPC && !kernel.empty())
				f_.detail = "the verifier log outgrew its " + std::to_string(kLogSize >> 20) +
					    " MiB buffer, which the kernel reports as ENOSPC; the log keeps its tail";
			if (f_.err == EPERM)
				f_.detail = "loading BPF programs needs CAP_BPF/CAP_SYS_ADMIN and enough "
					    "RLIMIT_MEMLOCK";
		}
	}

	void OnOK() override
	{
		Napi::Env env = Env();
		o_->state_ = f_.err ? Object::State::Failed : Object::State::Loaded;
		if (o_->close_pending_)
			o_->Destroy();
		// The kernel log is only needed for a failure: give the pages back.
		o_->log_buf_.reset();
		if (f_.err)
			deferred_.Reject(MakeError(env, f_).Value());
		else
			deferred_.Resolve(env.Undefined());
	}

private:
	Object *o_;
	Napi::ObjectReference self_;
	Napi::Promise::Deferred deferred_;
	Failure f_;
};

Napi::Function Object::Define(Napi::Env env)
{
	return DefineClass(env, "NativeObject",
			   {
				   InstanceMethod<&Object::Load>("load"),
				   InstanceMethod<&Object::MapNames>("mapNames"),
				   InstanceMethod<&Object::ProgramNames>("programNames"),
				   InstanceMethod<&Object::GetMap>("map"),
				   InstanceMethod<&Object::GetProgram>("program"),
				   InstanceMethod<&Object::Close>("close"),
			   });
}

Napi::Value Object::Open(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	const char *op = "openObject";
	ObjectInit init;
	init.path = ArgString(info, 0, op, "path");
	if (info.Length() > 1 && !info[1].IsUndefined() && !info[1].IsNull()) {
		if (!info[1].IsObject())
			Throw(env, op, init.path, EINVAL, "options must be an object");
		Napi::Object o = info[1].As<Napi::Object>();
		Napi::Value pin = o.Get("pinRoot");
		if (!pin.IsUndefined() && !pin.IsNull()) {
			if (!pin.IsString())
				Throw(env, op, init.path, EINVAL, "pinRoot must be a string");
			init.pin_root = pin.As<Napi::String>().Utf8Value();
		}
		ForEachOption(env, o, "rodata", init.path, "an object of Buffers",
			      [&](const std::string &name, Napi::Value v) {
				      if (!v.IsBuffer())
					      Throw(env, "rodata", init.path, EINVAL,
						    "value of '" + name + "' must be a Buffer");
				      auto b = v.As<Napi::Buffer<uint8_t>>();
				      init.rodata[name].assign(b.Data(), b.Data() + b.Length());
			      });
		ForEachOption(env, o, "maxEntries", init.path, "an object of numbers",
			      [&](const std::string &name, Napi::Value v) {
				      double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
				      if (!(d >= 1 && d <= 4294967295.0) || d != (double)(uint64_t)d)
					      Throw(env, "bpf_map__set_max_entries", init.path + ":" + name, EINVAL,
						    "max entries of '" + name + "' must be an integer in [1, 2^32)");
				      init.max_entries[name] = (uint32_t)d;
			      });
		Napi::Value ll = o.Get("logLevel");
		if (!ll.IsUndefined() && !ll.IsNull()) {
			if (!ll.IsNumber())
				Throw(env, op, init.path, EINVAL, "logLevel must be a number");
			init.log_level = ll.As<Napi::Number>().Uint32Value();
		}
	}
	return Data(env).object.New({Napi::External<ObjectInit>::New(env, &init)});
}

Object::Object(const Napi::CallbackInfo &info) : Napi::ObjectWrap<Object>(info)
{
	Napi::Env env = info.Env();
	if (!IsNativeInit<Object>(info))
		Throw(env, "NativeObject", "", EINVAL, "use openObject()");
	auto *init = info[0].As<Napi::External<ObjectInit>>().Data();
	file_ = Basename(init->path);

	// A missing pin root would only fail at load, with a vaguer error.
	if (!init->pin_root.empty()) {
		Fd dir(open(init->pin_root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
		if (!dir.valid())
			Throw(env, "open", init->pin_root, errno, "the pinRoot directory must exist in bpffs");
	}

	log_size_ = kLogSize;
	log_buf_.reset(new char[log_size_]);
	log_buf_[0] = '\0';
	DECLARE_LIBBPF_OPTS(bpf_object_open_opts, opts,
			    .pin_root_path = init->pin_root.empty() ? nullptr : init->pin_root.c_str(),
			    .kernel_log_buf = log_buf_.get(), .kernel_log_size = log_size_,
			    .kernel_log_level = init->log_level);
	LogCapture cap;
	struct bpf_object *obj = bpf_object__open_file(init->path.c_str(), &opts);
	if (!obj) {
		int err = errno ? errno : EINVAL;
		Throw(env, Failure{"bpf_object__open_file", init->path, err, "", cap.text()});
	}
	// Without a pinRoot nothing is pinned: libbpf would otherwise pin
	// LIBBPF_PIN_BY_NAME maps under /sys/fs/bpf itself, shared by every caller.
	if (init->pin_root.empty()) {
		struct bpf_map *m;
		bpf_object__for_each_map(m, obj) {
			if (bpf_map__pin_path(m))
				bpf_map__set_pin_path(m, nullptr);
		}
	}
	Failure f = ApplyRodata(obj, file_, init->rodata);
	if (!f.err)
		f = ApplyMaxEntries(obj, file_, init->max_entries);
	if (f.err) {
		bpf_object__close(obj);
		Throw(env, f);
	}
	obj_ = obj;
}

Object::~Object()
{
	Destroy();
}

void Object::Destroy()
{
	if (obj_)
		bpf_object__close(obj_);
	obj_ = nullptr;
	log_buf_.reset();
	state_ = State::Closed;
}

void Object::CheckUsable(Napi::Env env, const char *op) const
{
	if (state_ == State::Closed || close_pending_)
		Throw(env, op, file_, EBADF, "the object is closed");
}

void Object::CheckLoaded(Napi::Env env, const char *op, const std::string &what) const
{
	CheckUsable(env, op);
	if (state_ != State::Loaded)
		Throw(env, op, file_ + ":" + what, EINVAL,
		      state_ == State::Failed ? "the object failed to load"
					      : "the object is not loaded; await load() first");
}

Napi::Value Object::Load(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	auto deferred = Napi::Promise::Deferred::New(env);
	if (state_ == State::Closed || close_pending_) {
		deferred.Reject(MakeError(env, {"bpf_object__load", file_, EBADF, "the object is closed"}).Value());
	} else if (state_ != State::Opened) {
		deferred.Reject(
			MakeError(env, {"bpf_object__load", file_, EALREADY, "load() may be called once"}).Value());
	} else {
		state_ = State::Loading;
		(new LoadWorker(this, deferred))->Queue();
	}
	return deferred.Promise();
}

Napi::Value Object::MapNames(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	CheckUsable(env, "mapNames");
	Napi::Array out = Napi::Array::New(env);
	struct bpf_map *m;
	uint32_t i = 0;
	bpf_object__for_each_map(m, obj_)
		out.Set(i++, bpf_map__name(m));
	return out;
}

Napi::Value Object::ProgramNames(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	CheckUsable(env, "programNames");
	Napi::Array out = Napi::Array::New(env);
	struct bpf_program *p;
	uint32_t i = 0;
	bpf_object__for_each_program(p, obj_)
		out.Set(i++, bpf_program__name(p));
	return out;
}

Napi::Value Object::GetMap(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	std::string name = ArgString(info, 0, "map", "name");
	CheckLoaded(env, "map", name);
	struct bpf_map *m = bpf_object__find_map_by_name(obj_, name.c_str());
	if (!m)
		Throw(env, "bpf_object__find_map_by_name", file_ + ":" + name, ENOENT, "no map named '" + name + "'");
	// Each handle owns a duplicate fd, so it outlives the object's close().
	Fd fd(fcntl(bpf_map__fd(m), F_DUPFD_CLOEXEC, 3));
	if (!fd.valid())
		Throw(env, "fcntl", file_ + ":" + name, errno, "duplicating the map fd");
	return Map::New(env, std::move(fd), name);
}

Napi::Value Object::GetProgram(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	std::string name = ArgString(info, 0, "program", "name");
	CheckLoaded(env, "program", name);
	struct bpf_program *p = bpf_object__find_program_by_name(obj_, name.c_str());
	if (!p)
		Throw(env, "bpf_object__find_program_by_name", file_ + ":" + name, ENOENT,
		      "no program named '" + name + "'");
	if (bpf_program__fd(p) < 0)
		Throw(env, "bpf_program__fd", file_ + ":" + name, EINVAL, "the program was not loaded (autoload off?)");
	Fd fd(fcntl(bpf_program__fd(p), F_DUPFD_CLOEXEC, 3));
	if (!fd.valid())
		Throw(env, "fcntl", file_ + ":" + name, errno, "duplicating the program fd");
	return Program::New(env, std::move(fd), name);
}

Napi::Value Object::Close(const Napi::CallbackInfo &info)
{
	if (state_ == State::Loading)
		close_pending_ = true; // the worker closes it when the kernel is done
	else
		Destroy();
	return info.Env().Undefined();
}

} // namespace weir
