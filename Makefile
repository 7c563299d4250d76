# tokd's build and packaging. `go test ./...` remains the way to test; this
# file builds release binaries and the .deb and .rpm, and checks them.
#
#   make build           static binaries in dist/
#   make package         dist/tokd_VERSION_ARCH.deb and dist/tokd-VERSION.ARCH.rpm
#   make check-package   inspect the .deb (dpkg-deb) and run lintian on it
#   make check-install   install, check and purge the .deb (root, throwaway machine)
#   make check-boot      boot a container with systemd and run the units for real (root)
#   make check-tools     the packaging/tools module's tests (Kubernetes manifests)
#   make check           check-tools, package and check-package
#
# nfpm and the manifest tests live in their own module, packaging/tools, so
# that their dependencies stay out of go.mod and out of the binaries.

SHELL := /bin/sh
.SUFFIXES:

GO ?= go
# The architecture to build and package for. It is not exported: go tool
# must build nfpm for this machine.
TOKD_ARCH ?= $(shell $(GO) env GOARCH)
export TOKD_ARCH
BUILD_ENV := CGO_ENABLED=0 GOOS=linux GOARCH=$(TOKD_ARCH)

# A tagged commit is its version (v1.2.3 -> 1.2.3); anything else is a
# semver pre-release, 0.0.0-gitYYYYMMDD.COMMIT, which nfpm turns into
# 0.0.0~gitYYYYMMDD.COMMIT, sorting before every release.
VERSION ?= $(shell v=$$(git describe --tags --exact-match --match 'v[0-9]*' 2>/dev/null) && echo "$${v\#v}" || \
	git log -1 --format='0.0.0-git%cd.%h' --date=format:%Y%m%d 2>/dev/null || echo 0.0.0)
export VERSION
# The package's own revision, bumped when only the packaging changes.
RELEASE ?= 1
export RELEASE
MAINTAINER := tokd maintainers <maintainers@users.noreply.r-seed-7fac6310.example>
# Reproducible archives: file times from the last commit (now, outside git).
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || date +%s)
export SOURCE_DATE_EPOCH

NFPM := $(GO) tool -modfile=packaging/tools/go.mod nfpm
DEB_ARCH = $(TOKD_ARCH)
RPM_ARCH = $(if $(filter amd64,$(TOKD_ARCH)),x86_64,$(if $(filter arm64,$(TOKD_ARCH)),aarch64,$(TOKD_ARCH)))
DEB_VERSION = $(subst -,~,$(VERSION))-$(RELEASE)
DEB := dist/tokd_$(DEB_VERSION)_$(DEB_ARCH).deb
RPM := dist/tokd-$(subst -,~,$(VERSION))-$(RELEASE).$(RPM_ARCH).rpm

.PHONY: build generated package check check-package check-install check-installed check-boot check-tools clean

build:
	mkdir -p dist
	$(BUILD_ENV) $(GO) build -trimpath -ldflags='-s -w' -o dist/ ./cmd/tokd ./cmd/tokctl

# Files the packages need that are generated: gzipped man pages (-n: no
# name or time stamp inside); the licence of every module the binaries
# link, in full for the .rpm and pointing at /usr/share/common-licenses
# where Debian has the text; and a changelog entry for this build, which
# Debian requires of a package with a revision.
generated: build
	rm -rf dist/build && mkdir -p dist/build
	gzip -9n <packaging/man/tokd.8 >dist/build/tokd.8.gz
	gzip -9n <packaging/man/tokctl.1 >dist/build/tokctl.1.gz
	$(BUILD_ENV) sh packaging/copyright.sh ./cmd/tokd ./cmd/tokctl >dist/build/LICENSES
	$(BUILD_ENV) sh packaging/copyright.sh --debian ./cmd/tokd ./cmd/tokctl >dist/build/copyright
	{ echo '- semver: "$(VERSION)-$(RELEASE)"'; \
	  echo "  date: \"$$(date -u -d @$(SOURCE_DATE_EPOCH) +%Y-%m-%dT%H:%M:%SZ)\""; \
	  echo '  packager: "$(MAINTAINER)"'; \
	  echo '  deb: {urgency: medium, distributions: [unstable]}'; \
	  echo '  changes:'; \
	  echo "    - note: \"Built from commit $$(git rev-parse --short HEAD 2>/dev/null || echo unknown).\""; \
	} >dist/build/changelog.yaml

package: generated
	rm -f dist/*.deb dist/*.rpm
	$(NFPM) package --config packaging/nfpm.yaml --packager deb --target $(DEB)
	$(NFPM) package --config packaging/nfpm.yaml --packager rpm --target $(RPM)

# What the .deb must hold, in `dpkg-deb -c` form (symlinks with their
# targets), and what its control data must say.
DEB_FILES := \
	./usr/bin/tokd ./usr/bin/tokctl \
	'./usr/bin/docker-credential-tokd -> tokctl' \
	./usr/lib/systemd/system/tokd.service ./usr/lib/systemd/system/tokd.socket \
	./usr/lib/systemd/user/tokd.service ./usr/lib/systemd/user/tokd.socket \
	./usr/lib/sysusers.d/tokd.conf \
	./etc/tokd/tokd.toml \
	./usr/share/bash-completion/completions/tokctl \
	./usr/share/zsh/vendor-completions/_tokctl \
	./usr/share/fish/vendor_completions.d/tokctl.fish \
	./usr/share/man/man8/tokd.8.gz ./usr/share/man/man1/tokctl.1.gz \
	'./usr/share/man/man1/docker-credential-tokd.1.gz -> tokctl.1.gz' \
	./usr/share/doc/tokd/copyright

check-package:
	@test -f $(DEB) || { echo "$(DEB) is missing: run make package" >&2; exit 1; }
	@test -s $(RPM) || { echo "$(RPM) is missing: run make package" >&2; exit 1; }
	dpkg-deb --info $(DEB)
	dpkg-deb --contents $(DEB)
	@dpkg-deb --contents $(DEB) | awk '{ $$1 = $$2 = $$3 = $$4 = $$5 = ""; sub(/^ +/, ""); print }' >dist/contents.txt
	@for f in $(DEB_FILES); do \
		grep -qxF "$$f" dist/contents.txt || { echo "check-package: $(DEB) lacks $$f" >&2; exit 1; }; \
	done
	@dpkg-deb --contents $(DEB) | grep -E ' \./usr/bin/(tokd|tokctl)$$' | grep -q '^-rwxr-xr-x root/root' || \
		{ echo "check-package: binaries are not 0755 root:root" >&2; exit 1; }
	@dpkg-deb --info $(DEB) conffiles | grep -qxF /etc/tokd/tokd.toml || \
		{ echo "check-package: /etc/tokd/tokd.toml is not a conffile" >&2; exit 1; }
	@for s in postinst prerm postrm; do \
		dpkg-deb --info $(DEB) $$s >/dev/null || { echo "check-package: no $$s script" >&2; exit 1; }; \
	done
	@test "$$(dpkg-deb --field $(DEB) Package Version Architecture | tr '\n' ' ')" = \
		"Package: tokd Version: $(DEB_VERSION) Architecture: $(DEB_ARCH) " || \
		{ echo "check-package: unexpected control fields" >&2; dpkg-deb --field $(DEB); exit 1; }
	@echo "check-package: .deb contents, modes, conffiles and scripts ok"
	@if command -v rpm >/dev/null 2>&1; then \
		rpm -qp --qf '[%{FILENAMES} %{FILEFLAGS:fflags} %{FILEMODES:perms}\n]' $(RPM) >dist/rpm-contents.txt && \
		for f in /usr/bin/tokd /usr/bin/tokctl /usr/bin/docker-credential-tokd \
			/usr/lib/systemd/system/tokd.service /usr/lib/systemd/system/tokd.socket \
			/usr/lib/systemd/user/tokd.service /usr/lib/systemd/user/tokd.socket \
			/usr/share/zsh/site-functions/_tokctl /usr/share/licenses/tokd/LICENSES; do \
			grep -q "^$$f " dist/rpm-contents.txt || { echo "check-package: $(RPM) lacks $$f" >&2; exit 1; }; \
		done && \
		grep -qx '/etc/tokd/tokd.toml cn -rw-r--r--' dist/rpm-contents.txt || \
			{ echo "check-package: /etc/tokd/tokd.toml is not %config(noreplace) 0644 in $(RPM)" >&2; exit 1; }; \
		rpm -qp --scripts $(RPM) | grep -q '^postinstall scriptlet' || \
			{ echo "check-package: $(RPM) has no %post" >&2; exit 1; }; \
		echo "check-package: .rpm contents, config and scripts ok"; \
	else \
		echo "check-package: rpm is not installed; the .rpm is not inspected"; \
	fi
	lintian --fail-on error,warning --display-info --tag-display-limit 0 $(DEB)

# Installs the .deb on this machine, checks what the maintainer scripts
# did, then purges it. Needs root; meant for a throwaway CI machine.
check-install:
	@test "$$(id -u)" = 0 || { echo "check-install: needs root" >&2; exit 1; }
	@! dpkg -s tokd >/dev/null 2>&1 || { echo "check-install: tokd is already installed here" >&2; exit 1; }
	dpkg -i $(DEB)
	$(MAKE) --no-print-directory check-installed || { dpkg --purge tokd; exit 1; }
	dpkg --purge tokd
	test ! -e /usr/bin/tokd && test ! -e /etc/tokd/tokd.toml && test ! -e /var/lib/tokd
	@echo "check-install: install and purge ok"

# The installed package: the user the postinst created, the binaries, the
# symlink, the man pages, and the packaged configuration, which must be
# valid as the tokd user reads it, with its relative paths resolved in
# $$CREDENTIALS_DIRECTORY (openssl makes the key it names).
check-installed:
	getent passwd tokd | grep -E '^tokd:x:[0-9]+:[0-9]+:[^:]*:/var/lib/tokd:(/usr)?/s?bin/nologin$$'
	getent group tokd
	tokd --version
	tokctl help >/dev/null
	test "$$(readlink /usr/bin/docker-credential-tokd)" = tokctl
	man -w tokd tokctl docker-credential-tokd
	d=$$(mktemp -d) && trap 'rm -rf "$$d"' EXIT && \
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$$d/ci-user.pem" 2>/dev/null && \
	echo not-a-secret >"$$d/ci.secret" && chmod 0755 "$$d" && chmod 0600 "$$d"/* && chown tokd:tokd "$$d"/* && \
	runuser -u tokd -- env CREDENTIALS_DIRECTORY="$$d" tokd --config /etc/tokd/tokd.toml --check

# Boots this machine's root file system under a throwaway overlay as a
# container with systemd as PID 1, installs the .deb and runs the system
# and user units there (see packaging/boot-test.sh). Needs root and
# systemd-nspawn (Debian: systemd-container). SKIP="watchdog activation"
# leaves out the watchdog and socket-activation checks, the slowest.
check-boot:
	@test -f $(DEB) || { echo "$(DEB) is missing: run make package" >&2; exit 1; }
	sh packaging/boot-test.sh $(DEB)

check-tools:
	cd packaging/tools && $(GO) vet ./... && $(GO) test -count=1 ./...

check: check-tools package check-package

clean:
	rm -rf dist
