// tc hooks: tcx links (bpf_link_create with BPF_TCX_*, which libbpf 1.1 has no API
// for), legacy clsact filters, and the queries for both.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace weir {

// enum bpf_attach_type values newer than the 6.1 uapi headers installed here.
constexpr uint32_t kBpfTcxIngress = 46;
constexpr uint32_t kBpfTcxEgress = 47;
// enum bpf_link_type values newer than those headers.
constexpr uint32_t kBpfLinkTypeTcx = 11;

enum class TcDir { Ingress, Egress };

/// Parses 'ingress'/'egress'; false otherwise.
bool ParseTcDir(const std::string &s, TcDir *dir);

/// BPF_PROG_QUERY for tcx at ifindex: 0 and ids, or a positive errno.
int TcxQuery(int ifindex, TcDir dir, std::vector<uint32_t> *ids);

/// RTM_GETTFILTER dump of the clsact hook: 0 and the bpf filters' prog ids, or a positive errno.
int TcLegacyQuery(int ifindex, TcDir dir, std::vector<uint32_t> *ids);

/// 0 if ifindex names an interface in this netns, else ENODEV.
int CheckIfindex(int ifindex);

} // namespace weir
