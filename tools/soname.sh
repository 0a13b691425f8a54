#!/bin/sh
# Prints the SONAME of the shared library the linker would use for -lNAME
# (libdir/libNAME.so): the CLI's lazy loader (src/cli/cli-lazy.c) dlopen()s
# the same library the build linked against — libcurl4-openssl-dev gives
# libcurl.so.4, the gnutls flavour libcurl-gnutls.so.4.
set -eu
objdump -p "$1/lib$2.so" | awk '$1 == "SONAME" { print $2; found = 1 } END { exit !found }'
