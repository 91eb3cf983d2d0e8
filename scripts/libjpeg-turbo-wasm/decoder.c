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
  struct jpeg_source_mgr source;
  /* Set when libjpeg asked for data past the end of the file. */
  int ran_out;
};

/*
 * The file in memory, as jdatasrc.c's memory source but noting when libjpeg wants more: where
 * Pillow's suspending source would wait for more data and then report the file as truncated.
 */
static void init_source(j_decompress_ptr info) {}
static void term_source(j_decompress_ptr info) {}

static boolean fill_input_buffer(j_decompress_ptr info) {
  static const JOCTET end_of_image[2] = {0xFF, JPEG_EOI};
  struct decoder *decoder = (struct decoder *)info;
  decoder->ran_out = 1;
  info->src->next_input_byte = end_of_image;
  info->src->bytes_in_buffer = 2;
  return TRUE;
}

static void skip_input_data(j_decompress_ptr info, long count) {
  struct jpeg_source_mgr *source = info->src;
  if (count <= 0) return;
  while (count > (long)source->bytes_in_buffer) {
    count -= (long)source->bytes_in_buffer;
    fill_input_buffer(info);
  }
  source->next_input_byte += count;
  source->bytes_in_buffer -= count;
}

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
  decoder->source.init_source = init_source;
  decoder->source.fill_input_buffer = fill_input_buffer;
  decoder->source.skip_input_data = skip_input_data;
  decoder->source.resync_to_restart = jpeg_resync_to_restart;
  decoder->source.term_source = term_source;
  decoder->source.next_input_byte = data;
  decoder->source.bytes_in_buffer = size;
  decoder->ran_out = 0;
  decoder->info.src = &decoder->source;
  jpeg_read_header(&decoder->info, TRUE);
  header[0] = (int)decoder->info.image_width;
  header[1] = (int)decoder->info.image_height;
  header[2] = decoder->info.jpeg_color_space;
  header[3] = decoder->info.num_components;
  return decoder;
}

/*
 * Decodes every row into `pixels` (3 or, with `cmyk`, 4 bytes a pixel) and reads on to the end of
 * the image. Returns 1 if the file ended before the last row was complete (Pillow: "image file is
 * truncated"), 0 otherwise; once every row is there, Pillow accepts the image whatever follows.
 */
EXPORT(decode) int decode(struct decoder *decoder, unsigned char *pixels, int cmyk) {
  struct jpeg_decompress_struct *info = &decoder->info;
  info->out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
  jpeg_start_decompress(info);
  size_t stride = (size_t)info->output_width * info->output_components;
  while (info->output_scanline < info->output_height) {
    JSAMPROW row = pixels + (size_t)info->output_scanline * stride;
    jpeg_read_scanlines(info, &row, 1);
  }
  int truncated = decoder->ran_out;
  jpeg_finish_decompress(info);
  jpeg_destroy_decompress(info);
  return truncated;
}
