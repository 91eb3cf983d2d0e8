#!/bin/sh
# Builds libjpeg-turbo's decompressor (Debian bookworm's 2.1.5, the release Pillow 9.4 uses with
# Debian's python3-pil; Pillow's own 9.4 wheels carry 2.1.4) for WebAssembly (WASI libc, no SIMD:
# libjpeg-turbo's C paths compute the same bytes as its SIMD ones) with decoder.c as its
# interface, and writes it inlined into src/image/wasm/libjpeg-turbo.wasm.ts.
#
#   apt-get install clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32 dpkg-dev
#   (with a deb-src line for bookworm main) apt-get source libjpeg-turbo=1:2.1.5-2
#   sh scripts/libjpeg-turbo-wasm/build.sh path/to/libjpeg-turbo-2.1.5
#
# The output is byte-for-byte reproducible with these packages.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BUILD=$(mktemp -d)
trap 'rm -rf "$BUILD"' EXIT

# Integer widths as on x86-64, where Pillow runs: JLONG (the IDCT's and colour conversion's
# intermediates) and the Huffman decoder's bit buffer 64 bits wide. The 32-bit ones wasm32 would
# get decode valid files the same, but overflow and read ahead differently on corrupt data, which
# libjpeg decodes through (as Pillow does).
SOURCE="$BUILD/source"
cp -r "$1" "$SOURCE"
sed -i -e 's/^typedef long JLONG;$/typedef long long JLONG;/' \
  -e 's/^#define LEFT_SHIFT(a, b)  ((JLONG)((unsigned long)(a) << (b)))$/#define LEFT_SHIFT(a, b)  ((JLONG)((unsigned long long)(a) << (b)))/' "$SOURCE/jpegint.h"
grep -q '^typedef long long JLONG;$' "$SOURCE/jpegint.h" && grep -q 'unsigned long long)(a) << (b)' "$SOURCE/jpegint.h"
sed -i 's/(defined(__x86_64__) \&\& defined(__ILP32__))/((defined(__x86_64__) \&\& defined(__ILP32__)) || defined(__wasm32__))/' "$SOURCE/jdhuff.c"
sed -i 's/^#elif defined(__x86_64__) \&\& defined(__ILP32__)$/#elif (defined(__x86_64__) \&\& defined(__ILP32__)) || defined(__wasm32__)/' "$SOURCE/jdhuff.h"
grep -q '__wasm32__' "$SOURCE/jdhuff.c" && grep -q '__wasm32__' "$SOURCE/jdhuff.h"

cat > "$BUILD/jconfig.h" <<'H'
#define JPEG_LIB_VERSION 62
#define LIBJPEG_TURBO_VERSION 2.1.5
#define LIBJPEG_TURBO_VERSION_NUMBER 2001005
#define D_ARITH_CODING_SUPPORTED 1
#define MEM_SRCDST_SUPPORTED 1
#define BITS_IN_JSAMPLE 8
H
cat > "$BUILD/jconfigint.h" <<'H'
#define BUILD "wasm"
#undef inline
#define INLINE __inline__ __attribute__((always_inline))
#define THREAD_LOCAL
#define PACKAGE_NAME "libjpeg-turbo"
#define VERSION "2.1.5"
#define SIZEOF_SIZE_T 4
#define FALLTHROUGH __attribute__((fallthrough));
H
printf '#define JCOPYRIGHT_SHORT "Copyright (C) 1991-2022 The libjpeg-turbo Project and many others"\n#define JVERSION "6b  27-Mar-1998"\n#define JCOPYRIGHT JCOPYRIGHT_SHORT\n' > "$BUILD/jversion.h"

DECODER="jaricom jcomapi jdapimin jdapistd jdarith jdatasrc jdcoefct jdcolor jddctmgr jdhuff jdicc jdinput
  jdmainct jdmarker jdmaster jdmerge jdphuff jdpostct jdsample jerror jidctflt jidctfst jidctint jidctred
  jmemmgr jmemnobs jquant1 jquant2 jsimd_none jutils"
OBJECTS=""
for name in $DECODER; do
  clang-14 --target=wasm32-wasi --sysroot=/usr -isystem /usr/include/wasm32-wasi -O2 -I"$BUILD" -I"$SOURCE" \
    -c "$SOURCE/$name.c" -o "$BUILD/$name.o"
  OBJECTS="$OBJECTS $BUILD/$name.o"
done
clang-14 --target=wasm32-wasi --sysroot=/usr -isystem /usr/include/wasm32-wasi -O2 -I"$BUILD" -I"$SOURCE" \
  -c "$HERE/decoder.c" -o "$BUILD/decoder.o"
clang-14 --target=wasm32-wasi --sysroot=/usr -O2 -nostartfiles -Wl,--no-entry -Wl,--strip-all \
  -Wl,-L/usr/lib/wasm32-wasi -Wl,-z,stack-size=1048576 -Wl,--export=malloc \
  $OBJECTS "$BUILD/decoder.o" -o "$BUILD/libjpeg-turbo.wasm"
npx --prefix "$ROOT" tsx "$ROOT/scripts/inline-wasm.ts" "$BUILD/libjpeg-turbo.wasm" "$ROOT/src/image/wasm/libjpeg-turbo.wasm.ts" LIBJPEG_TURBO_WASM \
  "scripts/libjpeg-turbo-wasm/build.sh: libjpeg-turbo 2.1.5 (Debian bookworm), decompressor only"
