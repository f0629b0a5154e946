#!/usr/bin/env bash
# Builds the BPF finder (native/ptyfds.bpf.c) into build/Release/ptyfds.bpf.o, beside the scan addon,
# when clang is here. Optional, like the addon: without it `ptyreaper sessions` reads every fd link.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=build/Release/ptyfds.bpf.o
if ! command -v clang >/dev/null 2>&1; then
  echo "ptyreaper: clang not found; BPF pty finder not built (ptyreaper sessions reads every fd link)"
  exit 0
fi
# <linux/types.h> pulls in <asm/types.h>, which Debian keeps under the multiarch include directory.
multiarch=$(gcc -print-multiarch 2>/dev/null || true)
mkdir -p build/Release
if ! clang -O2 -g -target bpf ${multiarch:+-I/usr/include/$multiarch} -Wall -Werror -c native/ptyfds.bpf.c -o "$out"; then
  rm -f "$out"
  echo "ptyreaper: BPF pty finder not built (clang failed above); ptyreaper sessions reads every fd link"
fi
exit 0
