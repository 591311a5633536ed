#include "tc.h"

#include <linux/bpf.h>
#include <linux/netlink.h>
#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace weir {

namespace {

/**
 * struct prog_query_attr - the BPF_PROG_QUERY part of union bpf_attr as of Linux
 * 6.6 (tcx). The installed 6.1 headers lack target_ifindex, link_ids and revision;
 * this is the kernel's layout, field for field.
 */
struct prog_query_attr {
	uint32_t target_ifindex; // union with target_fd
	uint32_t attach_type;
	uint32_t query_flags;
	uint32_t attach_flags;
	uint64_t prog_ids;
	uint32_t count; // union with prog_cnt
	uint32_t pad;
	uint64_t prog_attach_flags;
	uint64_t link_ids;
	uint64_t link_attach_flags;
	uint64_t revision;
} __attribute__((aligned(8)));

static_assert(sizeof(prog_query_attr) == 64, "BPF_PROG_QUERY attr layout");

} // namespace

bool ParseTcDir(const std::string &s, TcDir *dir)
{
	if (s == "ingress")
		*dir = TcDir::Ingress;
	else if (s == "egress")
		*dir = TcDir::Egress;
	else
		return false;
	return true;
}

int CheckIfindex(int ifindex)
{
	char name[IF_NAMESIZE];
	if (ifindex <= 0 || !if_indextoname((unsigned)ifindex, name))
		return ENODEV;
	return 0;
}

int TcxQuery(int ifindex, TcDir dir, std::vector<uint32_t> *ids)
{
	std::vector<uint32_t> buf(64);
	for (;;) {
		prog_query_attr attr = {};
		attr.target_ifindex = (uint32_t)ifindex;
		attr.attach_type = dir == TcDir::Ingress ? kBpfTcxIngress : kBpfTcxEgress;
		attr.prog_ids = (uint64_t)(uintptr_t)buf.data();
		attr.count = (uint32_t)buf.size();
		long ret = syscall(__NR_bpf, BPF_PROG_QUERY, &attr, sizeof(attr));
		if (ret < 0) {
			if (errno == ENOSPC && buf.size() < 65536) {
				buf.resize(buf.size() * 4);
				continue;
			}
			return errno;
		}
		ids->assign(buf.begin(), buf.begin() + std::min<size_t>(attr.count, buf.size()));
		return 0;
	}
}

int TcLegacyQuery(int ifindex, TcDir dir, std::vector<uint32_t> *ids)
{
	int err = CheckIfindex(ifindex);
	if (err)
		return err;
	int sock = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (sock < 0)
		return errno;
	struct {
		struct nlmsghdr nh;
		struct tcmsg tc;
	} req = {};
	req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct tcmsg));
	req.nh.nlmsg_type = RTM_GETTFILTER;
	req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	req.nh.nlmsg_seq = 1;
	req.tc.tcm_family = AF_UNSPEC;
	req.tc.tcm_ifindex = ifindex;
	req.tc.tcm_parent = TC_H_MAKE(TC_H_CLSACT, dir == TcDir::Ingress ? TC_H_MIN_INGRESS : TC_H_MIN_EGRESS);
	struct sockaddr_nl sa = {};
	sa.nl_family = AF_NETLINK;
	if (sendto(sock, &req, req.nh.nlmsg_len, 0, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err = errno;
		close(sock);
		return err;
	}
	std::vector<char> buf(64 * 1024);
	bool done = false;
	while (!done) {
		ssize_t len = recv(sock, buf.data(), buf.size(), 0);
		if (len < 0) {
			if (errno == EINTR)
				continue;
			err = errno;
			break;
		}
		for (auto *nh = (struct nlmsghdr *)buf.data(); NLMSG_OK(nh, (size_t)len); nh = NLMSG_NEXT(nh, len)) {
			if (nh->nlmsg_seq != 1)
				continue;
			if (nh->nlmsg_type == NLMSG_DONE) {
				done = true;
				break;
			}
			if (nh->nlmsg_type == NLMSG_ERROR) {
				auto *e = (struct nlmsgerr *)NLMSG_DATA(nh);
				// No clsact qdisc (or no such block) means nothing attached.
				if (e->error && e->error != -EINVAL && e->error != -ENOENT)
					err = -e->error;
				done = true;
				break;
			}
			if (nh->nlmsg_type != RTM_NEWTFILTER)
				continue;
			auto *tc = (struct tcmsg *)NLMSG_DATA(nh);
			int alen = (int)nh->nlmsg_len - NLMSG_LENGTH(sizeof(*tc));
			bool is_bpf = false;
			uint32_t id = 0;
			for (auto *a = (struct rtattr *)((char *)tc + NLMSG_ALIGN(sizeof(*tc))); RTA_OK(a, alen);
			     a = RTA_NEXT(a, alen)) {
				if (a->rta_type == TCA_KIND)
					is_bpf = strncmp((char *)RTA_DATA(a), "bpf", RTA_PAYLOAD(a)) == 0;
				if (a->rta_type != TCA_OPTIONS)
					continue;
				int olen = (int)RTA_PAYLOAD(a);
				for (auto *o = (struct rtattr *)RTA_DATA(a); RTA_OK(o, olen); o = RTA_NEXT(o, olen))
					if (o->rta_type == TCA_BPF_ID && RTA_PAYLOAD(o) >= sizeof(uint32_t))
						memcpy(&id, RTA_DATA(o), sizeof(id));
			}
			if (is_bpf && id)
				ids->push_back(id);
		}
	}
	close(sock);
	return err;
}

} // namespace weir
