// Registration only: the binding's classes and functions (contract: src/bpf/native.ts).
#include "addon.h"

#include "link.h"
#include "map.h"
#include "netlink.h"
#include "netns.h"
#include "object.h"
#include "pinned.h"
#include "program.h"
#include "ringbuf.h"
#include "transparent.h"
#include "util.h"

namespace weir {

Napi::Object Init(Napi::Env env, Napi::Object exports)
{
	InstallLibbpfPrint();
	auto *data = new AddonData();
	data->object = Napi::Persistent(Object::Define(env));
	data->map = Napi::Persistent(Map::Define(env));
	data->program = Napi::Persistent(Program::Define(env));
	data->link = Napi::Persistent(Link::Define(env));
	data->ringbuf = Napi::Persistent(RingBuffer::Define(env));
	env.SetInstanceData(data);

	exports.Set("libbpfVersion", Napi::Function::New<LibbpfVersion>(env, "libbpfVersion"));
	exports.Set("openObject", Napi::Function::New<Object::Open>(env, "openObject"));
	exports.Set("openPinnedMap", Napi::Function::New<OpenPinnedMap>(env, "openPinnedMap"));
	exports.Set("openPinnedLink", Napi::Function::New<OpenPinnedLink>(env, "openPinnedLink"));
	exports.Set("openPinnedProgram", Napi::Function::New<OpenPinnedProgram>(env, "openPinnedProgram"));
	exports.Set("openRingBuffer", Napi::Function::New<RingBuffer::Open>(env, "openRingBuffer"));
	exports.Set("tcxQuery", Napi::Function::New<TcxQueryJs>(env, "tcxQuery"));
	exports.Set("tcLegacyQuery", Napi::Function::New<TcLegacyQueryJs>(env, "tcLegacyQuery"));
	exports.Set("ifNameToIndex", Napi::Function::New<IfNameToIndex>(env, "ifNameToIndex"));
	exports.Set("numPossibleCpus", Napi::Function::New<NumPossibleCpus>(env, "numPossibleCpus"));
	exports.Set("netnsCookie", Napi::Function::New<NetnsCookieJs>(env, "netnsCookie"));
	// the ztunnel's IP_TRANSPARENT sockets (transparent.h)
	exports.Set("tcpListenTransparent", Napi::Function::New<TcpListenTransparent>(env, "tcpListenTransparent"));
	exports.Set("tcpConnectTransparent", Napi::Function::New<TcpConnectTransparent>(env, "tcpConnectTransparent"));
	// rtnetlink and per-netns sysctls for pod wiring (netlink.h)
	static const struct {
		const char *name;
		Napi::Value (*fn)(const Napi::CallbackInfo &);
	} nl[] = {
		{"nlVethAdd", NlVethAdd},	  {"nlLinkSet", NlLinkSet},	  {"nlLinkDel", NlLinkDel},
		{"nlLinkList", NlLinkList},	  {"nlAddrAdd", NlAddrAdd},	  {"nlAddrDel", NlAddrDel},
		{"nlAddrList", NlAddrList},	  {"nlRouteAdd", NlRouteAdd},	  {"nlRouteDel", NlRouteDel},
		{"nlRouteList", NlRouteList},	  {"nlRuleAdd", NlRuleAdd},	  {"nlRuleDel", NlRuleDel},
		{"nlRuleList", NlRuleList},	  {"nlNeighAdd", NlNeighAdd},	  {"nlNeighList", NlNeighList},
		{"nlSysctlWrite", NlSysctlWrite}, {"nlSysctlRead", NlSysctlRead},
	};
	for (const auto &f : nl)
		exports.Set(f.name, Napi::Function::New(env, f.fn, f.name));
	return exports;
}

} // namespace weir

static Napi::Object InitWeir(Napi::Env env, Napi::Object exports)
{
	return weir::Init(env, exports);
}

NODE_API_MODULE(weir_native, InitWeir)
