/*
 * test_sockaddr.h - socket addresses from text, for unit tests (include
 * after cmocka.h: a bad literal fails the test).
 */
#ifndef MSAPROXY_TEST_SOCKADDR_H
#define MSAPROXY_TEST_SOCKADDR_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "lib/ipnet.h"

static inline union sockaddr_ip
v4(const char *ip, unsigned port)
{
	union sockaddr_ip a;

	memset(&a, 0, sizeof(a));
	a.in.sin_family = AF_INET;
	a.in.sin_port = htons((uint16_t)port);
	assert_int_equal(inet_pton(AF_INET, ip, &a.in.sin_addr), 1);
	return a;
}

static inline union sockaddr_ip
v6(const char *ip, unsigned port)
{
	union sockaddr_ip a;

	memset(&a, 0, sizeof(a));
	a.in6.sin6_family = AF_INET6;
	a.in6.sin6_port = htons((uint16_t)port);
	assert_int_equal(inet_pton(AF_INET6, ip, &a.in6.sin6_addr), 1);
	return a;
}

#endif
