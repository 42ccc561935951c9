#!/usr/bin/env bash
# Builds release archives and Debian packages into dist/.
#
#   ./scripts/package.sh [VERSION]
#
# VERSION defaults to `git describe --tags --always --dirty`. For every target (default
# linux darwin windows freebsd x amd64 arm64) a static binary (CGO_ENABLED=0, -trimpath,
# version and commit stamped) goes into mobikevpn-VERSION-OS-ARCH.tar.gz (.zip for
# Windows) with LICENSE, README.md, THIRD_PARTY_LICENSES and the default configuration;
# for linux/amd64 and linux/arm64 also mobikevpn_DEBVERSION_ARCH.deb. Then SHA256SUMS.
#
# Environment:
#   PACKAGE_TARGETS  targets to build, e.g. "linux/amd64" or "linux/amd64,darwin/arm64"
#   DIST             output folder (default dist/ in the repository; emptied of earlier
#                    mobikevpn artifacts first)
#   PACKAGE_DEB=0    no .deb packages (dpkg-deb is needed otherwise)
#   DEB_MAINTAINER   the .deb's Maintainer field
#   SOURCE_DATE_EPOCH  timestamps in the archives (default: the last commit's time)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export PATH="/usr/local/go/bin:$PATH"

die() { echo "package.sh: $*" >&2; exit 1; }
log() { printf '== %s\n' "$*"; }

[ $# -le 1 ] || die "usage: $0 [VERSION]"
if [ $# = 1 ]; then
	version=$1
else
	version=$(git describe --tags --always --dirty 2>/dev/null) || die "no VERSION given and git describe failed (not a git checkout?)"
fi
# The version names files and goes into -ldflags -X: no spaces, slashes or quotes.
[[ "$version" =~ ^[A-Za-z0-9][A-Za-z0-9._+~-]*$ ]] || die "version $version: use letters, digits and . _ + ~ - only"
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ "$commit" != unknown ] && [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
	commit="$commit-dirty"
fi
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}

targets=${PACKAGE_TARGETS:-linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64 freebsd/amd64 freebsd/arm64}
targets=${targets//,/ }
for t in $targets; do
	case "$t" in
	linux/amd64 | linux/arm64 | darwin/amd64 | darwin/arm64 | windows/amd64 | windows/arm64 | freebsd/amd64 | freebsd/arm64) ;;
	*) die "unknown target $t (linux darwin windows freebsd x amd64 arm64, as OS/ARCH)" ;;
	esac
done

dist=${DIST:-$root/dist}
mkdir -p "$dist"
dist=$(cd "$dist" && pwd)
want_deb=${PACKAGE_DEB:-1}
if [ "$want_deb" != 0 ] && [[ " $targets " == *" linux/"* ]]; then
	command -v dpkg-deb >/dev/null || die "dpkg-deb not found (apt-get install dpkg); PACKAGE_DEB=0 skips the .deb packages"
fi
maintainer=${DEB_MAINTAINER:-The mobikevpn Authors <mobikevpn@example.org>}

# debversion V: a Debian upstream version for V (a native package: no revision).
#   v1.2.3 -> 1.2.3, 1.2.3-rc1 -> 1.2.3~rc1 (before 1.2.3),
#   v1.2.3-4-gabcdef0[-dirty] (git describe) -> 1.2.3+git4.gabcdef0[.dirty] (after 1.2.3),
#   abcdef0[-dirty] (no tag: HEAD's abbreviated hash) -> 0.0.0+gabcdef0.dirty,
#   other versions not starting with a digit (nightly) -> 0.0.0+nightly
debversion() {
	local v=${1#v} dirty=""
	if [[ "$v" == *-dirty ]]; then
		v=${v%-dirty}
		dirty=dirty
	fi
	if [[ "$v" =~ ^(.+)-([0-9]+)-g([0-9a-f]+)$ ]]; then
		v="${BASH_REMATCH[1]}+git${BASH_REMATCH[2]}.g${BASH_REMATCH[3]}"
	elif [[ "$v" =~ ^[0-9a-f]{4,40}$ && "$commit" == "$v"* ]]; then
		v="0.0.0+g$v" # git describe --always in a repository without tags: the commit
	elif [[ ! "$v" =~ ^[0-9] ]]; then
		v="0.0.0+$v"
	fi
	if [ -n "$dirty" ]; then
		if [[ "$v" == *+* ]]; then v="$v.$dirty"; else v="$v+$dirty"; fi
	fi
	v=${v//-/\~}
	v=${v//_/\~}
	echo "$v"
}
debver=$(debversion "$version")

# Earlier artifacts of ours go (of any version); nothing else in DIST is touched.
rm -f "$dist"/mobikevpn-*.tar.gz "$dist"/mobikevpn-*.zip "$dist"/mobikevpn_*.deb "$dist"/SHA256SUMS

work=$(mktemp -d "${TMPDIR:-/tmp}/mobikevpn-package.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Files get the same timestamp (reproducible archives).
stamp() { find "$@" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +; }

log "mobikevpn $version (commit $commit), Debian version $debver, into $dist"
for t in $targets; do
	os=${t%/*}
	arch=${t#*/}
	name="mobikevpn-$version-$os-$arch"
	exe=mobikevpn
	[ "$os" = windows ] && exe=mobikevpn.exe
	stage="$work/$name"
	mkdir -p "$stage"
	log "build $t"
	CGO_ENABLED=0 GOOS=$os GOARCH=$arch go build -trimpath \
		-ldflags "-s -w -X main.version=$version -X main.commit=$commit" \
		-o "$stage/$exe" ./cmd/mobikevpn
	# The modules this binary links, each license checked (fails on an unacceptable one),
	# their texts shipped beside it.
	"$root/scripts/licenses.sh" --notices "$stage/THIRD_PARTY_LICENSES" "$stage/$exe" >"$work/licenses-$os-$arch.txt" ||
		{ cat "$work/licenses-$os-$arch.txt" >&2; die "license check failed for $t"; }
	install -m 0644 LICENSE README.md "$stage/"
	install -m 0600 packaging/mobikevpn.yaml "$stage/mobikevpn.yaml"
	chmod 0755 "$stage/$exe"
	stamp "$stage"
	if [ "$os" = windows ]; then
		(cd "$work" && find "$name" -print | LC_ALL=C sort | zip -q -X -@ "$dist/$name.zip")
	else
		tar -C "$work" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" -cf - "$name" |
			gzip -9 -n >"$dist/$name.tar.gz"
	fi

	if [ "$os" = linux ] && [ "$want_deb" != 0 ]; then
		log "deb $debver $arch"
		deb="$work/deb-$arch"
		install -d -m 0755 "$deb/DEBIAN" "$deb/usr/bin" "$deb/lib/systemd/system" "$deb/usr/share/doc/mobikevpn"
		install -d -m 0700 "$deb/etc/mobikevpn"
		install -m 0755 "$stage/$exe" "$deb/usr/bin/mobikevpn"
		install -m 0644 packaging/mobikevpn.service "$deb/lib/systemd/system/mobikevpn.service"
		install -m 0600 packaging/mobikevpn.yaml "$deb/etc/mobikevpn/mobikevpn.yaml"
		install -m 0644 README.md "$deb/usr/share/doc/mobikevpn/README.md"
		{
			cat <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: mobikevpn
Source: https://github.com/mobikevpn/mobikevpn

Files: *
Copyright: 2026 The mobikevpn Authors
License: Apache-2.0
 Licensed under the Apache License, Version 2.0 (the "License"); you may not
 use this software except in compliance with the License.
 .
 On Debian systems, the complete text of the Apache License, Version 2.0 can be
 found in /usr/share/common-licenses/Apache-2.0.
Comment:
 /usr/bin/mobikevpn is a static Go binary: it contains the Go standard library
 and the Go modules listed below, whose license texts follow.
 .
EOF
			sed -e 's/^[[:space:]]*$/./' -e 's/^/ /' "$stage/THIRD_PARTY_LICENSES"
		} >"$deb/usr/share/doc/mobikevpn/copyright"
		chmod 0644 "$deb/usr/share/doc/mobikevpn/copyright"
		echo /etc/mobikevpn/mobikevpn.yaml >"$deb/DEBIAN/conffiles"
		install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$deb/DEBIAN/"
		size=$(du -sk --exclude=DEBIAN "$deb" | cut -f1)
		cat >"$deb/DEBIAN/control" <<EOF
Package: mobikevpn
Version: $debver
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $size
Recommends: nftables
Suggests: systemd-resolved | resolvconf
Section: net
Priority: optional
Homepage: https://github.com/mobikevpn/mobikevpn
Description: userspace IKEv2/IPsec VPN with MOBIKE
 A client and gateway for IKEv2 (RFC 7296) with MOBIKE (RFC 4555) and R-MOBIKE,
 carrying ESP in UDP itself through a TUN device: no kernel XFRM, no kernel
 modules, no strongSwan. One static binary with a hardened systemd unit.
 .
 The service is installed but neither enabled nor started: edit
 /etc/mobikevpn/mobikevpn.yaml, then systemctl enable --now mobikevpn.
EOF
		chmod 0644 "$deb/DEBIAN/control" "$deb/DEBIAN/conffiles"
		stamp "$deb"
		dpkg-deb --root-owner-group -Zxz --build "$deb" "$dist/mobikevpn_${debver}_$arch.deb" >/dev/null
		rm -rf "$deb"
	fi
done

log "SHA256SUMS"
(cd "$dist" && find . -maxdepth 1 -type f \( -name 'mobikevpn-*.tar.gz' -o -name 'mobikevpn-*.zip' -o -name 'mobikevpn_*.deb' \) -printf '%f\n' |
	LC_ALL=C sort | xargs sha256sum >SHA256SUMS)
cat "$dist/SHA256SUMS"
