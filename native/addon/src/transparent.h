// IP_TRANSPARENT TCP sockets for the ztunnel (contract: src/kernel/addon.ts, wrapper:
// src/kernel/transparent.ts). Node cannot set IP_TRANSPARENT (or SO_MARK) itself, so
// the addon makes the socket, configures it and hands its fd to JS, which owns it
// from then on (`server.listen({ fd })`, `new net.Socket({ fd })`): no wrapper object.
#pragma once

#include <napi.h>

namespace weir {

/// tcpListenTransparent({address, port, mark?, backlog?, netns?}) -> fd (listening)
Napi::Value TcpListenTransparent(const Napi::CallbackInfo &info);

/// tcpConnectTransparent({source, sourcePort?, address, port, mark?, timeoutMs?, netns?}) -> Promise<fd> (connected)
Napi::Value TcpConnectTransparent(const Napi::CallbackInfo &info);

} // namespace weir
