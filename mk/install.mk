# mk/install.mk - `make install` and `make uninstall`, included by the
# Makefile.
#
#   make install   [PREFIX=/usr/local] [DESTDIR=]
#   make uninstall [PREFIX=/usr/local] [DESTDIR=]
#
# What goes where (PREFIX=/usr/local, the default):
#
#   $(BUILD)/msaproxy              /usr/local/sbin/msaproxy
#   $(BUILD)/msaproxyctl           /usr/local/sbin/msaproxyctl
#   man/msaproxy.8                 /usr/local/share/man/man8/msaproxy.8.gz
#   man/msaproxyctl.8              /usr/local/share/man/man8/msaproxyctl.8.gz
#   man/msaproxy.yaml.5            /usr/local/share/man/man5/msaproxy.yaml.5.gz
#   packaging/msaproxy.service     /usr/local/lib/systemd/system/msaproxy.service
#                                  (/lib/systemd/system with PREFIX=/usr)
#   packaging/msaproxy.sysusers    /usr/local/lib/sysusers.d/msaproxy.conf
#   packaging/msaproxy.tmpfiles    /usr/local/lib/tmpfiles.d/msaproxy.conf
#   packaging/msaproxy.yaml.example /etc/msaproxy/msaproxy.yaml.example
#
# /etc is not under PREFIX.  The configuration itself,
# /etc/msaproxy/msaproxy.yaml, is never written: the example is the one to
# start from (ports 587 and 465 on every address, /etc/msaproxy and
# /run/msaproxy paths, a backend on a private address; it passes -t once
# its certificate and users file exist).  conf/msaproxy.yaml, the demo
# with every key, stays in the source tree for `make run`.
# The unit's paths follow SBINDIR and SYSCONFDIR (sed at install time).
#
# Installing for real (no DESTDIR) also creates the msaproxy user and
# /etc/msaproxy's owner and mode (systemd-sysusers, systemd-tmpfiles) and
# reloads systemd when it runs; with DESTDIR it only lays out files, for a
# package or a test.  uninstall removes exactly the files install put,
# and /etc/msaproxy only if nothing else is left in it; never the
# configuration, never the user.

PREFIX     ?= /usr/local
DESTDIR    ?=
BUILD      ?= build
Q          ?= @
SBINDIR    ?= $(PREFIX)/sbin
MANDIR     ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
ifeq ($(PREFIX),/usr)
SYSTEMDUNITDIR ?= /lib/systemd/system
else
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
endif
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
INSTALL    ?= install

INSTALL_FILES := \
	$(SBINDIR)/msaproxy \
	$(SBINDIR)/msaproxyctl \
	$(MANDIR)/man8/msaproxy.8.gz \
	$(MANDIR)/man8/msaproxyctl.8.gz \
	$(MANDIR)/man5/msaproxy.yaml.5.gz \
	$(SYSTEMDUNITDIR)/msaproxy.service \
	$(SYSUSERSDIR)/msaproxy.conf \
	$(TMPFILESDIR)/msaproxy.conf \
	$(SYSCONFDIR)/msaproxy/msaproxy.yaml.example

.PHONY: install uninstall

# The binaries are whatever $(BUILD)/msaproxy and $(BUILD)/msaproxyctl are
# (built first if missing or stale); `make -o $(BUILD)/msaproxy -o
# $(BUILD)/msaproxyctl install` installs them as they are.
install: $(BUILD)/msaproxy $(BUILD)/msaproxyctl
	@echo "  INSTALL $(DESTDIR)$(PREFIX)"
	$(Q)$(INSTALL) -d -m 755 $(DESTDIR)$(SBINDIR) \
		$(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 \
		$(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(SYSUSERSDIR) \
		$(DESTDIR)$(TMPFILESDIR)
	$(Q)[ -d $(DESTDIR)$(SYSCONFDIR)/msaproxy ] || \
		$(INSTALL) -d -m 750 $(DESTDIR)$(SYSCONFDIR)/msaproxy
	$(Q)$(INSTALL) -m 755 $(BUILD)/msaproxy $(DESTDIR)$(SBINDIR)/msaproxy
	$(Q)$(INSTALL) -m 755 $(BUILD)/msaproxyctl \
		$(DESTDIR)$(SBINDIR)/msaproxyctl
	$(Q)gzip -9 -n -c man/msaproxy.8 > $(DESTDIR)$(MANDIR)/man8/msaproxy.8.gz
	$(Q)gzip -9 -n -c man/msaproxyctl.8 \
		> $(DESTDIR)$(MANDIR)/man8/msaproxyctl.8.gz
	$(Q)gzip -9 -n -c man/msaproxy.yaml.5 \
		> $(DESTDIR)$(MANDIR)/man5/msaproxy.yaml.5.gz
	$(Q)chmod 644 $(DESTDIR)$(MANDIR)/man8/msaproxy.8.gz \
		$(DESTDIR)$(MANDIR)/man8/msaproxyctl.8.gz \
		$(DESTDIR)$(MANDIR)/man5/msaproxy.yaml.5.gz
	$(Q)sed -e 's|/usr/local/sbin/msaproxy|$(SBINDIR)/msaproxy|g' \
		-e 's|/etc/msaproxy/|$(SYSCONFDIR)/msaproxy/|g' \
		packaging/msaproxy.service \
		> $(DESTDIR)$(SYSTEMDUNITDIR)/msaproxy.service
	$(Q)chmod 644 $(DESTDIR)$(SYSTEMDUNITDIR)/msaproxy.service
	$(Q)$(INSTALL) -m 644 packaging/msaproxy.sysusers \
		$(DESTDIR)$(SYSUSERSDIR)/msaproxy.conf
	$(Q)sed -e 's|/etc/msaproxy|$(SYSCONFDIR)/msaproxy|g' \
		packaging/msaproxy.tmpfiles > $(DESTDIR)$(TMPFILESDIR)/msaproxy.conf
	$(Q)chmod 644 $(DESTDIR)$(TMPFILESDIR)/msaproxy.conf
	$(Q)$(INSTALL) -m 644 packaging/msaproxy.yaml.example \
		$(DESTDIR)$(SYSCONFDIR)/msaproxy/msaproxy.yaml.example
	$(Q)if [ -z "$(DESTDIR)" ]; then \
		if command -v systemd-sysusers >/dev/null; then \
			systemd-sysusers $(SYSUSERSDIR)/msaproxy.conf; fi; \
		if command -v systemd-tmpfiles >/dev/null; then \
			systemd-tmpfiles --create $(TMPFILESDIR)/msaproxy.conf; fi; \
		if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi; \
		[ -e $(SYSCONFDIR)/msaproxy/msaproxy.yaml ] || echo "install:" \
			"now write $(SYSCONFDIR)/msaproxy/msaproxy.yaml (see the" \
			".example next to it), then: systemctl enable --now msaproxy"; \
	fi

uninstall:
	@echo "  UNINSTALL $(DESTDIR)$(PREFIX)"
	$(Q)rm -f $(addprefix $(DESTDIR),$(INSTALL_FILES))
	$(Q)rmdir $(DESTDIR)$(SYSCONFDIR)/msaproxy 2>/dev/null || true
	$(Q)if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
		systemctl daemon-reload; fi
