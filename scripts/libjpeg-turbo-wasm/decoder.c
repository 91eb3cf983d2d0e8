/*
 * libjpeg-turbo's decompressor as Pillow 9.4 drives it (JpegDecode.c: islow IDCT and fancy
 * upsampling, the defaults; output RGB, or CMYK for CMYK and YCCK files), exported to
 * WebAssembly for src/image/jpeg.ts. A fatal error goes to the host with libjpeg's message text;
 * `fatal` does not return (the host throws, which unwinds the WebAssembly stack, so no setjmp is
 * needed) and the host discards the instance. Warnings (corrupt data that libjpeg decodes
 * through) are ignored, as Pillow ignores them.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include "jpeglib.h"

#define EXPORT(name) __attribute__((export_name(#name)))
#define IMPORT(name) __attribute__((import_module("env"), import_name(#name)))

IMPORT(fatal) void host_fatal(const char *message);

struct decoder {
  struct jpeg_decompress_struct info;
  struct jpeg_error_mgr errors;
};

static void error_exit(j_common_ptr info) {
  char message[JMSG_LENGTH_MAX];
  (*info->err->format_message)(info, message);
  host_fatal(message);
  __builtin_unreachable();
}

static void emit_message(j_common_ptr info, int level) {}

/*
 * Reads the headers of `size` bytes at `data`; `header` receives width, height, the JPEG colour
 * space (J_COLOR_SPACE) and the component count.
 */
EXPORT(open_decoder) struct decoder *open_decoder(const unsigned char *data, unsigned long size, int *header) {
  struct decoder *decoder = malloc(sizeof(struct decoder));
  decoder->info.err = jpeg_std_error(&decoder->errors);
  decoder->errors.error_exit = error_exit;
  decoder->errors.emit_message = emit_message;
  jpeg_create_decompress(&decoder->info);
  jpeg_mem_src(&decoder->info, data, size);
  jpeg_read_header(&decoder->info, TRUE);
  header[0] = (int)decoder->info.image_width;
  header[1] = (int)decoder->info.image_height;
  header[2] = decoder->info.jpeg_color_space;
  header[3] = decoder->info.num_components;
  return decoder;
}

/* Decodes every row into `pixels` (3 or, with `cmyk`, 4 bytes a pixel) and reads to the end of the image. */
EXPORT(decode) void decode(struct decoder *decoder, unsigned char *pixels, int cmyk) {
  struct jpeg_decompress_struct *info = &decoder->info;
  info->out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
  jpeg_start_decompress(info);
  size_t stride = (size_t)info->output_width * info->output_components;
  while (info->output_scanline < info->output_height) {
    JSAMPROW row = pixels + (size_t)info->output_scanline * stride;
    jpeg_read_scanlines(info, &row, 1);
  }
  jpeg_finish_decompress(info);
  jpeg_destroy_decompress(info);
}
