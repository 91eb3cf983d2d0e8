/*
 * libwebp's decoder as Pillow 9.4 drives it (_webp.c): WebPAnimDecoder with its default options
 * (RGBA canvas, no threads), first frame only, exported to WebAssembly for src/image/webp.ts.
 */
#include <stddef.h>
#include <stdint.h>
#include "src/webp/demux.h"

#define EXPORT(name) __attribute__((export_name(#name)))

/*
 * Decodes the first frame of the `size` bytes at `data` onto the canvas; `result` receives the
 * canvas width and height and the address of its RGBA pixels. Returns 0, or Pillow's failure:
 * 1 when no decoder could be created ("could not create decoder object"), 2 when the frame does
 * not decode ("failed to read next frame").
 */
EXPORT(decode_first_frame) int decode_first_frame(const uint8_t *data, size_t size, uint32_t *result) {
  WebPData webp = {data, size};
  WebPAnimDecoder *decoder = WebPAnimDecoderNew(&webp, NULL);
  WebPAnimInfo info;
  if (decoder == NULL || !WebPAnimDecoderGetInfo(decoder, &info)) return 1;
  uint8_t *canvas;
  int timestamp;
  if (!WebPAnimDecoderGetNext(decoder, &canvas, &timestamp)) return 2;
  result[0] = info.canvas_width;
  result[1] = info.canvas_height;
  result[2] = (uint32_t)(uintptr_t)canvas;
  return 0;
}
