// Debian's libbpf.a is compiled as PIE, not PIC: its default print function refers
// to glibc's `stderr` with a PC-relative relocation, which a shared object (this
// .node) cannot carry against a symbol from another library. We give the link a
// hidden `stderr` of our own, so that reference resolves inside this object, and
// copy glibc's value into it before anything runs. Everything else in libbpf.a is
// position-independent. (This file deliberately includes no stdio header.)
#include <dlfcn.h>

extern "C" {
__attribute__((visibility("hidden"))) void *stderr = nullptr;
}

namespace {

struct CopyStderr {
	CopyStderr()
	{
		if (auto *real = static_cast<void **>(dlsym(RTLD_DEFAULT, "stderr")))
			stderr = *real;
	}
} copy_stderr;

} // namespace
