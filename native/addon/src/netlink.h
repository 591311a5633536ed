// rtnetlink functions for pod wiring (contract: src/bpf/native.ts, wrapper:
// src/bpf/netlink.ts). Each takes an optional netns path as its last argument.
#pragma once

#include <napi.h>

namespace weir {

Napi::Value NlVethAdd(const Napi::CallbackInfo &info);
Napi::Value NlLinkSet(const Napi::CallbackInfo &info);
Napi::Value NlLinkDel(const Napi::CallbackInfo &info);
Napi::Value NlLinkList(const Napi::CallbackInfo &info);
Napi::Value NlAddrAdd(const Napi::CallbackInfo &info);
Napi::Value NlAddrDel(const Napi::CallbackInfo &info);
Napi::Value NlAddrList(const Napi::CallbackInfo &info);
Napi::Value NlRouteAdd(const Napi::CallbackInfo &info);
Napi::Value NlRouteDel(const Napi::CallbackInfo &info);
Napi::Value NlRouteList(const Napi::CallbackInfo &info);
Napi::Value NlNeighAdd(const Napi::CallbackInfo &info);
Napi::Value NlNeighList(const Napi::CallbackInfo &info);
Napi::Value NlSysctlWrite(const Napi::CallbackInfo &info);
Napi::Value NlSysctlRead(const Napi::CallbackInfo &info);

} // namespace weir
