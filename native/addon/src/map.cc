#include "map.h"

#include "addon.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

namespace weir {

namespace {

constexpr int kEnotsupp = 524;

bool IsPerCpu(uint32_t type)
{
	switch (type) {
	case BPF_MAP_TYPE_PERCPU_HASH:
	case BPF_MAP_TYPE_PERCPU_ARRAY:
	case BPF_MAP_TYPE_LRU_PERCPU_HASH:
	case BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE:
		return true;
	default:
		return false;
	}
}

bool Unsupported(int err)
{
	return err == EINVAL || err == kEnotsupp || err == EOPNOTSUPP;
}

struct MapInit {
	Fd fd;
	std::string name;
};

} // namespace

Napi::Function Map::Define(Napi::Env env)
{
	return DefineClass(env, "NativeMap",
			   {
				   InstanceAccessor<&Map::GetFd>("fd"),
				   InstanceMethod<&Map::Lookup>("lookup"),
				   InstanceMethod<&Map::Update>("update"),
				   InstanceMethod<&Map::Delete>("delete"),
				   InstanceMethod<&Map::Keys>("keys"),
				   InstanceMethod<&Map::Entries>("entries"),
				   InstanceMethod<&Map::UpdateBatch>("updateBatch"),
				   InstanceMethod<&Map::DeleteBatch>("deleteBatch"),
				   InstanceMethod<&Map::Pin>("pin"),
				   InstanceMethod<&Map::Close>("close"),
			   });
}

Napi::Object Map::New(Napi::Env env, Fd fd, const std::string &name)
{
	MapInit init{std::move(fd), name};
	return Data(env).map.New({Napi::External<MapInit>::New(env, &init)});
}

Map::Map(const Napi::CallbackInfo &info) : Napi::ObjectWrap<Map>(info)
{
	Napi::Env env = info.Env();
	if (!IsNativeInit<Map>(info))
		Throw(env, "NativeMap", "", EINVAL, "use openObject().map() or openPinnedMap()");
	auto *init = info[0].As<Napi::External<MapInit>>().Data();
	fd_ = std::move(init->fd);

	struct bpf_map_info mi = {};
	__u32 len = sizeof(mi);
	int ret = bpf_obj_get_info_by_fd(fd_.get(), &mi, &len);
	if (ret)
		Throw(env, "bpf_obj_get_info_by_fd", init->name, ErrOf(ret));
	name_ = init->name.empty() ? std::string(mi.name) : init->name;
	type_ = mi.type;
	key_size_ = mi.key_size;
	value_size_ = mi.value_size;
	max_entries_ = mi.max_entries;
	id_ = mi.id;
	value_bytes_ = value_size_;
	if (IsPerCpu(type_)) {
		int ncpu = libbpf_num_possible_cpus();
		if (ncpu < 0)
			Throw(env, "libbpf_num_possible_cpus", name_, -ncpu);
		value_bytes_ = (size_t)ncpu * ((value_size_ + 7) & ~7u);
	}

	Napi::Object self = info.This().As<Napi::Object>();
	auto ro = napi_enumerable;
	self.DefineProperties({
		Napi::PropertyDescriptor::Value("name", Napi::String::New(env, name_), ro),
		Napi::PropertyDescriptor::Value("type", Napi::Number::New(env, type_), ro),
		Napi::PropertyDescriptor::Value("keySize", Napi::Number::New(env, key_size_), ro),
		Napi::PropertyDescriptor::Value("valueSize", Napi::Number::New(env, value_size_), ro),
		Napi::PropertyDescriptor::Value("maxEntries", Napi::Number::New(env, max_entries_), ro),
		Napi::PropertyDescriptor::Value("id", Napi::Number::New(env, id_), ro),
	});
}

Napi::Value Map::GetFd(const Napi::CallbackInfo &info)
{
	return Napi::Number::New(info.Env(), fd_.get());
}

void Map::CheckOpen(Napi::Env env, const char *op) const
{
	if (!fd_.valid())
		Throw(env, op, name_, EBADF, "the map handle is closed");
}

void Map::CheckKey(Napi::Env env, const char *op, size_t given) const
{
	if (given != key_size_)
		Throw(env, op, name_, EINVAL,
		      "key must be " + std::to_string(key_size_) + " bytes, got " + std::to_string(given));
}

void Map::CheckValue(Napi::Env env, const char *op, size_t given) const
{
	if (given != value_bytes_)
		Throw(env, op, name_, EINVAL,
		      "value must be " + std::to_string(value_bytes_) + " bytes, got " + std::to_string(given));
}

Napi::Value Map::Lookup(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	const char *op = "bpf_map_lookup_elem";
	CheckOpen(env, op);
	auto key = ArgBuffer(info, 0, op, "key");
	CheckKey(env, op, key.Length());
	std::vector<uint8_t> value(value_bytes_);
	int ret = bpf_map_lookup_elem(fd_.get(), key_size_ ? key.Data() : nullptr, value.data());
	if (ret) {
		int err = ErrOf(ret);
		if (err == ENOENT)
			return env.Null();
		Throw(env, op, name_, err);
	}
	return Napi::Buffer<uint8_t>::Copy(env, value.data(), value.size());
}

Napi::Value Map::Update(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	const char *op = "bpf_map_update_elem";
	CheckOpen(env, op);
	auto key = ArgBuffer(info, 0, op, "key");
	auto value = ArgBuffer(info, 1, op, "value");
	uint32_t flags = ArgU32(info, 2, op, "flags", true, BPF_ANY);
	CheckKey(env, op, key.Length());
	CheckValue(env, op, value.Length());
	int ret = bpf_map_update_elem(fd_.get(), key_size_ ? key.Data() : nullptr, value.Data(), flags);
	if (ret)
		Throw(env, op, name_, ErrOf(ret));
	return env.Undefined();
}

Napi::Value Map::Delete(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	const char *op = "bpf_map_delete_elem";
	CheckOpen(env, op);
	auto key = ArgBuffer(info, 0, op, "key");
	CheckKey(env, op, key.Length());
	int ret = bpf_map_delete_elem(fd_.get(), key.Data());
	if (ret) {
		int err = ErrOf(ret);
		if (err == ENOENT)
			return Napi::Boolean::New(env, false);
		Throw(env, op, name_, err);
	}
	return Napi::Boolean::New(env, true);
}

Napi::Value Map::Keys(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	const char *op = "bpf_map_get_next_key";
	CheckOpen(env, op);
	Napi::Array out = Napi::Array::New(env);
	if (type_ == BPF_MAP_TYPE_RINGBUF) // no addressable entries
		return out;
	std::vector<uint8_t> prev(key_size_), next(key_size_);
	bool first = true;
	// A hash walk restarts if the current key is deleted meanwhile: bound it.
	uint64_t limit = (uint64_t)max_entries_ * 2 + 16;
	for (uint32_t n = 0; n < limit; n++) {
		int ret = bpf_map_get_next_key(fd_.get(), first ? nullptr : prev.data(), next.data());
		if (ret) {
			int err = ErrOf(ret);
			if (err == ENOENT)
				break;
			Throw(env, op, name_, err);
		}
		out.Set(n, Napi::Buffer<uint8_t>::Copy(env, next.data(), next.size()));
		prev.swap(next);
		first = false;
	}
	return out;
}

Napi::Value Map::EntriesByWalk(Napi::Env env)
{
	const char *op = "bpf_map_get_next_key";
	Napi::Array out = Napi::Array::New(env);
	if (type_ == BPF_MAP_TYPE_RINGBUF) // no addressable entries
		return out;
	std::vector<uint8_t> prev(key_size_), next(key_size_), value(value_bytes_);
	bool first = true;
	uint32_t count = 0;
	uint64_t limit = (uint64_t)max_entries_ * 2 + 16;
	for (uint64_t n = 0; n < limit; n++) {
		int ret = bpf_map_get_next_key(fd_.get(), first ? nullptr : prev.data(), next.data());
		if (ret) {
			int err = ErrOf(ret);
			if (err == ENOENT)
				break;
			Throw(env, op, name_, err);
		}
		first = false;
		prev.swap(next);
		ret = bpf_map_lookup_elem(fd_.get(), prev.data(), value.data());
		if (ret) {
			int err = ErrOf(ret);
			if (err == ENOENT) // deleted between the two calls
				continue;
			Throw(env, "bpf_map_lookup_elem", name_, err);
		}
		Napi::Array pair = Napi::Array::New(env, 2);
		pair.Set(0u, Napi::Buffer<uint8_t>::Copy(env, prev.data(), prev.size()));
		pair.Set(1u, Napi::Buffer<uint8_t>::Copy(env, value.data(), value.size()));
		out.Set(count++, pair);
	}
	return out;
}

Napi::Value Map::Entries(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	const char *op = "bpf_map_lookup_batch";
	CheckOpen(env, op);
	if (type_ == BPF_MAP_TYPE_LPM_TRIE || type_ == BPF_MAP_TYPE_RINGBUF || key_size_ == 0)
		return EntriesByWalk(env);

	uint32_t chunk = std::max<uint32_t>(1, std::min<uint32_t>(max_entries_, 1024));
	// The batch cursor is a bucket index for hash maps and a key for arrays.
	std::vector<uint8_t> in_batch(std::max<uint32_t>(key_size_, 8)), out_batch(in_batch.size());
	std::vector<uint8_t> keys, values;
	std::vector<uint8_t> all_keys, all_values;
	bool first = true;
	for (;;) {
		keys.resize((size_t)chunk * key_size_);
		values.resize((size_t)chunk * value_bytes_);
		__u32 count = chunk;
		DECLARE_LIBBPF_OPTS(bpf_map_batch_opts, opts);
		int ret = bpf_map_lookup_batch(fd_.get(), first ? nullptr : in_batch.data(), out_batch.data(),
					       keys.data(), values.data(), &count, &opts);
		int err = ret ? ErrOf(ret) : 0;
		if (err && err != ENOENT) {
			if (err == ENOSPC && chunk < (1u << 20)) { // a bucket bigger than the chunk
				chunk *= 2;
				continue;
			}
			if (first && Unsupported(err))
				return EntriesByWalk(env);
			Throw(env, op, name_, err);
		}
		all_keys.insert(all_keys.end(), keys.begin(), keys.begin() + (size_t)count * key_size_);
		all_values.insert(all_values.end(), values.begin(), values.begin() + (size_t)count * value_bytes_);
		if (err == ENOENT)
			break;
		in_batch.swap(out_batch);
		first = false;
	}
	size_t n = key_size_ ? all_keys.size() / key_size_ : 0;
	Napi::Array out = Napi::Array::New(env, n);
	for (size_t i = 0; i < n; i++) {
		Napi::Array pair = Napi::Array::New(env, 2);
		pair.Set(0u, Napi::Buffer<uint8_t>::Copy(env, all_keys.data() + i * key_size_, key_size_));
		pair.Set(1u, Napi::Buffer<uint8_t>::Copy(env, all_values.data() + i * value_bytes_, value_bytes_));
		out.Set((uint32_t)i, pair);
	}
	return out;
}

Napi::Value Map::UpdateBatch(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	const char *op = "bpf_map_update_batch";
	CheckOpen(env, op);
	auto keys = ArgBuffer(info, 0, op, "keys");
	auto values = ArgBuffer(info, 1, op, "values");
	uint32_t flags = ArgU32(info, 2, op, "flags", true, BPF_ANY);
	if (key_size_ == 0 || keys.Length() % key_size_)
		Throw(env, op, name_, EINVAL,
		      "keys must be a multiple of " + std::to_string(key_size_) + " bytes, got " +
			      std::to_string(keys.Length()));
	size_t n = keys.Length() / key_size_;
	if (values.Length() != n * value_bytes_)
		Throw(env, op, name_, EINVAL,
		      "values must be " + std::to_string(n) + " x " + std::to_string(value_bytes_) + " = " +
			      std::to_string(n * value_bytes_) + " bytes, got " + std::to_string(values.Length()));
	if (n == 0)
		return Napi::Number::New(env, 0);

	__u32 count = (__u32)n;
	DECLARE_LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = flags);
	int ret = bpf_map_update_batch(fd_.get(), keys.Data(), values.Data(), &count, &opts);
	if (!ret)
		return Napi::Number::New(env, count);
	int err = ErrOf(ret);
	size_t done = 0;
	if (!(err == kEnotsupp || err == EOPNOTSUPP || (err == EINVAL && count == 0)))
		Throw(env, op, name_, err, "after " + std::to_string(count) + " of " + std::to_string(n) + " entries");
	// Fallback: one update per key (also gives a precise error for the bad entry).
	for (size_t i = done; i < n; i++) {
		ret = bpf_map_update_elem(fd_.get(), keys.Data() + i * key_size_, values.Data() + i * value_bytes_,
					  flags);
		if (ret)
			Throw(env, "bpf_map_update_elem", name_, ErrOf(ret),
			      "entry " + std::to_string(i) + " of " + std::to_string(n));
	}
	return Napi::Number::New(env, (double)n);
}

Napi::Value Map::DeleteBatch(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	const char *op = "bpf_map_delete_batch";
	CheckOpen(env, op);
	auto keys = ArgBuffer(info, 0, op, "keys");
	if (key_size_ == 0 || keys.Length() % key_size_)
		Throw(env, op, name_, EINVAL,
		      "keys must be a multiple of " + std::to_string(key_size_) + " bytes, got " +
			      std::to_string(keys.Length()));
	size_t n = keys.Length() / key_size_;
	size_t pos = 0, deleted = 0;
	bool batch = true;
	while (pos < n) {
		if (batch) {
			__u32 count = (__u32)(n - pos);
			DECLARE_LIBBPF_OPTS(bpf_map_batch_opts, opts);
			int ret = bpf_map_delete_batch(fd_.get(), keys.Data() + pos * key_size_, &count, &opts);
			if (!ret) {
				deleted += count;
				break;
			}
			int err = ErrOf(ret);
			deleted += count;
			pos += count;
			if (err == ENOENT) { // missing key: skip it, go on
				pos++;
				continue;
			}
			if (err == kEnotsupp || err == EOPNOTSUPP || (err == EINVAL && count == 0)) {
				batch = false;
				continue;
			}
			Throw(env, op, name_, err);
		}
		int ret = bpf_map_delete_elem(fd_.get(), keys.Data() + pos * key_size_);
		if (ret) {
			int err = ErrOf(ret);
			if (err != ENOENT)
				Throw(env, "bpf_map_delete_elem", name_, err,
				      "entry " + std::to_string(pos) + " of " + std::to_string(n));
		} else {
			deleted++;
		}
		pos++;
	}
	return Napi::Number::New(env, (double)deleted);
}

Napi::Value Map::Pin(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	CheckOpen(env, "bpf_obj_pin");
	std::string path = ArgString(info, 0, "bpf_obj_pin", "path");
	int ret = bpf_obj_pin(fd_.get(), path.c_str());
	if (ret)
		Throw(env, "bpf_obj_pin", path, ErrOf(ret), "pinning map " + name_);
	return env.Undefined();
}

Napi::Value Map::Close(const Napi::CallbackInfo &info)
{
	fd_.reset();
	return info.Env().Undefined();
}

} // namespace weir
