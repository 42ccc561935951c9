#!/usr/bin/env bash
# Lists every Go module the mobikevpn binary links, with its license, and fails on a
# module whose license is not one we accept (Apache-2.0, MIT, BSD-2-Clause,
# BSD-3-Clause, ISC, MPL-2.0) or whose license file cannot be found or recognised.
#
#   ./scripts/licenses.sh                      modules of ./cmd/mobikevpn for every target
#                                              (linux darwin windows freebsd x amd64 arm64)
#   ./scripts/licenses.sh BINARY               modules linked into a built binary (go version -m)
#   ./scripts/licenses.sh --notices FILE [BINARY]
#                                              also writes FILE: every linked module's license
#                                              text (the notices a binary distribution carries)
#
# License files are read from the module cache (go env GOMODCACHE); missing modules are
# downloaded with `go mod download`. Exit 0: all acceptable; 1: at least one is not.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"

notices=""
if [ "${1:-}" = "--notices" ]; then
	[ $# -ge 2 ] || { echo "usage: $0 [--notices FILE] [BINARY]" >&2; exit 2; }
	notices=$2
	shift 2
fi
binary=${1:-}
[ $# -le 1 ] || { echo "usage: $0 [--notices FILE] [BINARY]" >&2; exit 2; }

self=$(go list -m)
# "PATH VERSION DIR" of every module in the build list already in the module cache.
buildlist=$(go list -m -f '{{.Path}} {{.Version}} {{.Dir}}' all 2>/dev/null || true)

# modules prints "PATH VERSION" per linked module (the replacement's, if replaced), the
# main module with version "(main)".
modules() {
	if [ -n "$binary" ]; then
		# go version -m: "\tdep\tPATH\tVERSION\tSUM" and "\t=>\tPATH\tVERSION\tSUM" after a
		# replaced one; "\tmod\tPATH\t..." is the main module.
		go version -m "$binary" | awk -F'\t' -v self="$self" '
			$2 == "mod" { print $3, "(main)" }
			$2 == "dep" { if (p != "") print p; p = $3 " " $4 }
			$2 == "=>"  { p = ($4 == "" ? $3 " (local)" : $3 " " $4) }
			END { if (p != "") print p }'
	else
		local os arch
		for os in linux darwin windows freebsd; do
			for arch in amd64 arm64; do
				GOOS=$os GOARCH=$arch CGO_ENABLED=0 go list -deps \
					-f '{{with .Module}}{{if .Main}}{{.Path}} (main){{else}}{{with .Replace}}{{.Path}} {{or .Version "(local)"}}{{else}}{{.Path}} {{.Version}}{{end}}{{end}}{{end}}' \
					./cmd/mobikevpn
			done
		done
	fi | sort -u
}

# moddir PATH VERSION: the module's directory.
moddir() {
	local path=$1 version=$2 dir
	case "$version" in
	"(main)") echo "$PWD"; return ;;
	"(local)") echo "$path"; return ;; # a replacement by a local directory
	esac
	# The build list's modules in one go; others (a binary built elsewhere) one by one.
	dir=$(awk -v p="$path" -v v="$version" '$1 == p && $2 == v { print $3; exit }' <<<"$buildlist")
	if [ -z "$dir" ]; then
		dir=$(go list -m -f '{{.Dir}}' "$path@$version" 2>/dev/null || true)
	fi
	if [ -z "$dir" ] || [ ! -d "$dir" ]; then
		go mod download "$path@$version" >&2
		dir=$(go list -m -f '{{.Dir}}' "$path@$version")
	fi
	echo "$dir"
}

# licensefiles DIR: the license files at the module's root.
licensefiles() {
	find "$1" -maxdepth 1 -type f \( -iname 'LICEN[CS]E*' -o -iname 'COPYING*' -o -iname 'UNLICENSE*' \) | sort
}

# classify FILE: prints the SPDX identifiers the text holds ("A AND B" for a file that
# puts parts under different licenses), or "unknown".
classify() {
	# One line, lower case, single spaces, markdown quoting and emphasis gone.
	local t found=()
	t=$(tr '\r\n\t' '   ' <"$1" | tr -s ' ' | tr '[:upper:]' '[:lower:]' | sed -e 's/ > / /g' -e 's/[*#`]//g')
	# Licenses we do not accept: report them by name (and fail), even next to another.
	# The MPL 2.0 names the GNU licenses itself (its "Secondary License" definition):
	# that mention is not a GNU license.
	local g=${t//'"secondary license" means either the gnu general public license, version 2.0, the gnu lesser general public license, version 2.1, the gnu affero general public license, version 3.0, or any later versions of those licenses'/}
	case "$g" in
	*"gnu general public license"* | *"gnu lesser general public"* | *"gnu library general public"* | *"gnu affero"*) found+=("GPL-family") ;;
	esac
	case "$t" in *"server side public license"*) found+=("SSPL") ;; esac
	case "$t" in *"business source license"*) found+=("BUSL") ;; esac
	case "$t" in *"commons clause"*) found+=("Commons-Clause") ;; esac
	case "$t" in *"creative commons"*) found+=("CC-family") ;; esac
	case "$t" in *"elastic license"*) found+=("Elastic") ;; esac
	case "$t" in
	*"apache license"*"version 2.0"*"terms and conditions for use, reproduction, and distribution"*) found+=("Apache-2.0") ;;
	*"licensed under the apache license, version 2.0"*) found+=("Apache-2.0") ;;
	esac
	case "$t" in
	*"permission is hereby granted, free of charge, to any person obtaining a copy"*"the above copyright notice and this permission notice shall be included in all copies or substantial portions of the software"*) found+=("MIT") ;;
	esac
	case "$t" in
	*"permission to use, copy, modify, and"*"distribute this software for any purpose with or without fee is hereby granted, provided that the above copyright notice and this permission notice appear in all copies"*) found+=("ISC") ;;
	esac
	case "$t" in
	*"mozilla public license version 2.0"* | *"mozilla public license, version 2.0"* | *"mozilla public license, v. 2.0"*) found+=("MPL-2.0") ;;
	esac
	case "$t" in
	*"redistribution and use in source and binary forms, with or without modification, are permitted provided that the following conditions are met"*)
		case "$t" in
		*"all advertising materials mentioning features or use of this software"*) found+=("BSD-4-Clause") ;;
		*"may be used to endorse or promote products derived from this software without specific prior written permission"*) found+=("BSD-3-Clause") ;;
		*) found+=("BSD-2-Clause") ;;
		esac
		;;
	esac
	if [ ${#found[@]} -eq 0 ]; then
		echo unknown
	else
		local IFS=' '
		echo "${found[*]}" | sed 's/ / AND /g'
	fi
}

acceptable() {
	local id
	for id in ${1// AND / }; do
		case "$id" in
		Apache-2.0 | MIT | BSD-2-Clause | BSD-3-Clause | ISC | MPL-2.0) ;;
		*) return 1 ;;
		esac
	done
}

if [ -n "$notices" ]; then
	{
		echo "mobikevpn links the following Go modules, under these licenses."
		echo
	} >"$notices"
fi

bad=0
rows=()
rows+=("MODULE	VERSION	LICENSE	FILE")
# The Go standard library and runtime are linked into every binary.
goroot=$(go env GOROOT)
std_lic=$(classify "$goroot/LICENSE")
rows+=("std (Go)	$(go env GOVERSION)	$std_lic	$goroot/LICENSE")
acceptable "$std_lic" || bad=1
if [ -n "$notices" ]; then
	{ printf '==== Go standard library %s (%s)\n\n' "$(go env GOVERSION)" "$std_lic"; cat "$goroot/LICENSE"; echo; } >>"$notices"
fi

while read -r path version; do
	dir=$(moddir "$path" "$version")
	files=$(licensefiles "$dir")
	if [ -z "$files" ]; then
		rows+=("$path	$version	NONE	-")
		bad=1
		continue
	fi
	ids=()
	while read -r f; do
		ids+=("$(classify "$f")")
	done <<<"$files"
	# Every identifier once, in order: "MIT AND Apache-2.0" for a LICENSE and a LICENSE-MIT.
	lic=$(printf '%s\n' "${ids[@]}" | awk '{ n = split($0, a, / AND /); for (i = 1; i <= n; i++) if (!seen[a[i]]++) out = out (out == "" ? "" : " AND ") a[i] } END { print out }')
	acceptable "$lic" || bad=1
	shown=$(echo "$files" | sed "s#^$dir/##" | paste -sd, -)
	rows+=("$path	$version	$lic	$shown")
	if [ -n "$notices" ] && [ "$path" != "$self" ]; then
		while read -r f; do
			{ printf '==== %s %s: %s (%s)\n\n' "$path" "$version" "${f#"$dir"/}" "$(classify "$f")"; cat "$f"; echo; } >>"$notices"
		done <<<"$files"
	fi
done < <(modules)

printf '%s\n' "${rows[@]}" | awk -F'\t' '
	{ for (i = 1; i <= NF; i++) { cell[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) } ; nf[NR] = NF }
	END { for (r = 1; r <= NR; r++) { line = ""; for (i = 1; i <= nf[r]; i++) line = line sprintf(i < nf[r] ? "%-" w[i] "s  " : "%s", cell[r, i]); print line } }'
if [ $bad != 0 ]; then
	echo >&2
	echo "licenses: some modules have no license file, an unrecognised one, or one not in the accepted list (Apache-2.0, MIT, BSD-2-Clause, BSD-3-Clause, ISC, MPL-2.0)" >&2
	exit 1
fi
echo
echo "licenses: all $((${#rows[@]} - 1)) acceptable"
