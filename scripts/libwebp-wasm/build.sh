#!/bin/sh
# Builds libwebp's decoder and demuxer (Debian bookworm's 1.2.4, the release under Debian's Pillow
# 9.4 and in Pillow's own 9.4 wheels) for WebAssembly (WASI libc; no SIMD: libwebp's C paths
# compute the same bytes as its SSE2 ones) with decoder.c as its interface, and writes it inlined
# into src/image/wasm/libwebp.wasm.ts.
#
#   apt-get install clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32 dpkg-dev
#   (with a deb-src line for bookworm main) apt-get source libwebp=1.2.4-0.2+deb12u1
#   sh scripts/libwebp-wasm/build.sh path/to/libwebp-1.2.4
#
# The output is byte-for-byte reproducible with these packages.
set -eu
SOURCE=$(cd "$1" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BUILD=$(mktemp -d)
trap 'rm -rf "$BUILD"' EXIT

OBJECTS=""
for file in "$SOURCE"/src/dec/*.c "$SOURCE"/src/demux/*.c "$SOURCE"/src/utils/*.c "$SOURCE"/src/dsp/*.c "$HERE/decoder.c"; do
  object="$BUILD/$(basename "$(dirname "$file")")-$(basename "$file" .c).o"
  clang-14 --target=wasm32-wasi --sysroot=/usr -isystem /usr/include/wasm32-wasi -O2 -I"$SOURCE" -c "$file" -o "$object"
  OBJECTS="$OBJECTS $object"
done
clang-14 --target=wasm32-wasi --sysroot=/usr -O2 -nostartfiles -Wl,--no-entry -Wl,--strip-all -Wl,--gc-sections \
  -Wl,-L/usr/lib/wasm32-wasi -Wl,-z,stack-size=1048576 -Wl,--export=malloc \
  $OBJECTS -o "$BUILD/libwebp.wasm"
npx --prefix "$ROOT" tsx "$ROOT/scripts/inline-wasm.ts" "$BUILD/libwebp.wasm" "$ROOT/src/image/wasm/libwebp.wasm.ts" LIBWEBP_WASM \
  "scripts/libwebp-wasm/build.sh: libwebp 1.2.4 (Debian bookworm), decoder and demuxer"
