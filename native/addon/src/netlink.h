// rtnetlink functions for pod wiring (contract: src/bpf/native.ts, wrapper:
// src/bpf/netlink.ts). Each takes an optional netns path as its last argument and
// returns a promise: the work runs on the libuv pool, on a thread inside that netns.
//
// Raw rtnetlink rather than libnl/libmnl: the dozen messages the CNI needs fit in a
// few small files, and the addon keeps libelf as its only dynamic library.
//   netlink_attr.{h,cc}    request building, address/MAC payloads
//   netlink_socket.{h,cc}  the socket (send, ack, dumps) and the pool/netns plumbing
//   netlink_link.cc        veth pairs and links
//   netlink_addr.cc        addresses
//   netlink_route.cc       routes (unicast and local, any table)
//   netlink_rule.cc        policy-routing rules (fwmark -> table)
//   netlink_neigh.cc       neighbours
//   sysctl.cc              per-netns net.* sysctls (procfs, not netlink)
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
Napi::Value NlRuleAdd(const Napi::CallbackInfo &info);
Napi::Value NlRuleDel(const Napi::CallbackInfo &info);
Napi::Value NlRuleList(const Napi::CallbackInfo &info);
Napi::Value NlNeighAdd(const Napi::CallbackInfo &info);
Napi::Value NlNeighList(const Napi::CallbackInfo &info);
Napi::Value NlSysctlWrite(const Napi::CallbackInfo &info);
Napi::Value NlSysctlRead(const Napi::CallbackInfo &info);

} // namespace weir
