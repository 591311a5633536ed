#include "netlink_attr.h"

#include <arpa/inet.h>

#include <cstdio>

namespace weir {

bool ParseMac(const std::string &s, uint8_t out[6])
{
	unsigned v[6];
	char tail;
	if (sscanf(s.c_str(), "%x:%x:%x:%x:%x:%x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &tail) != 6)
		return false;
	for (int i = 0; i < 6; i++) {
		if (v[i] > 255)
			return false;
		out[i] = (uint8_t)v[i];
	}
	return true;
}

std::string MacString(const uint8_t *m, size_t len)
{
	std::string s;
	char b[4];
	for (size_t i = 0; i < len; i++) {
		snprintf(b, sizeof(b), i ? ":%02x" : "%02x", m[i]);
		s += b;
	}
	return s;
}

bool ParseIp(const std::string &s, Ip *ip)
{
	if (inet_pton(AF_INET, s.c_str(), ip->bytes) == 1) {
		ip->family = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, s.c_str(), ip->bytes) == 1) {
		ip->family = AF_INET6;
		return true;
	}
	return false;
}

bool ParseCidr(const std::string &s, Ip *ip, int *plen)
{
	size_t slash = s.find('/');
	if (!ParseIp(s.substr(0, slash), ip))
		return false;
	int max = ip->family == AF_INET ? 32 : 128;
	if (slash == std::string::npos) {
		*plen = max;
		return true;
	}
	std::string p = s.substr(slash + 1);
	if (p.empty() || p.size() > 3 || p.find_first_not_of("0123456789") != std::string::npos)
		return false;
	*plen = std::stoi(p);
	return *plen <= max;
}

std::string IpString(int family, const void *data)
{
	char b[INET6_ADDRSTRLEN] = {};
	inet_ntop(family, data, b, sizeof(b));
	return b;
}

} // namespace weir
