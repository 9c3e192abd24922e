/*
 * version.h - the version both binaries print for --version.
 *
 * Bumped by hand at a release (README.md, "Versions"); a build from a
 * git tree between releases says so with "+git".  A build may set its own
 * with -DMSAPROXY_VERSION='"..."' (a distribution package's version).
 */
#ifndef MSAPROXY_VERSION_H
#define MSAPROXY_VERSION_H

#ifndef MSAPROXY_VERSION
#define MSAPROXY_VERSION "0.1.0+git"
#endif

#endif
