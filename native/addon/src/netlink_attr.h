// rtnetlink message building and attribute payloads: a request (nlmsghdr, fixed
// header, attributes, nested attributes) and the address/MAC forms the attributes
// carry. No I/O here (netlink_socket.h sends and receives).
#pragma once

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace weir {

/// A request under construction: nlmsghdr + fixed header + attributes.
class NlMsg {
public:
	NlMsg(uint16_t type, uint16_t flags) : buf_(NLMSG_HDRLEN, 0)
	{
		hdr()->nlmsg_type = type;
		hdr()->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
		hdr()->nlmsg_len = NLMSG_HDRLEN;
	}
	template <typename T> T *Fixed()
	{
		size_t off = buf_.size();
		buf_.resize(off + NLMSG_ALIGN(sizeof(T)), 0);
		hdr()->nlmsg_len = buf_.size();
		return reinterpret_cast<T *>(buf_.data() + off);
	}
	void Attr(uint16_t type, const void *data, size_t len)
	{
		size_t off = buf_.size();
		buf_.resize(off + RTA_ALIGN(RTA_LENGTH(len)), 0);
		auto *rta = reinterpret_cast<struct rtattr *>(buf_.data() + off);
		rta->rta_type = type;
		rta->rta_len = RTA_LENGTH(len);
		if (len)
			memcpy(RTA_DATA(rta), data, len);
		hdr()->nlmsg_len = buf_.size();
	}
	void U32(uint16_t type, uint32_t v) { Attr(type, &v, sizeof(v)); }
	void Str(uint16_t type, const std::string &s) { Attr(type, s.c_str(), s.size() + 1); }
	/// Opens a nested attribute; returns its offset for End().
	size_t Begin(uint16_t type)
	{
		size_t off = buf_.size();
		Attr(type, nullptr, 0);
		return off;
	}
	void End(size_t off) { reinterpret_cast<struct rtattr *>(buf_.data() + off)->rta_len = buf_.size() - off; }
	struct nlmsghdr *hdr() { return reinterpret_cast<struct nlmsghdr *>(buf_.data()); }
	size_t size() const { return buf_.size(); }

private:
	std::vector<char> buf_;
};

/// "aa:bb:cc:dd:ee:ff" -> 6 bytes; false for anything else.
bool ParseMac(const std::string &s, uint8_t out[6]);
/// len bytes as "aa:bb:…".
std::string MacString(const uint8_t *m, size_t len);

/// An address with its family and bytes ("10.0.0.1" or "fd00::1").
struct Ip {
	int family = 0;
	uint8_t bytes[16] = {};
	size_t len() const { return family == AF_INET ? 4 : 16; }
};

bool ParseIp(const std::string &s, Ip *ip);
/// "10.0.0.1/32" (a bare address means a host prefix).
bool ParseCidr(const std::string &s, Ip *ip, int *plen);
/// inet_ntop of an attribute's payload.
std::string IpString(int family, const void *data);

} // namespace weir
