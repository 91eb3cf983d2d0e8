/**
 * Position ids and relative-position bucket indices (ofa-arch.md §4.2, §4.6, §5.2).
 *
 * Everything here depends only on the request's shape (patch grid, text length, decoder
 * positions), never on its content, so the tables are built once on the host as Int32 index
 * tables and cached on the device per shape. The bias values themselves are looked up on the
 * device by `gather` from the learned tables.
 */
import type { Backend } from '../../backend/backend.js';
import type { Tensor } from '../../tensor.js';
import type { OfaConfig } from './config.js';

/** OFA's defaults (§1): 1-D buckets and position range of `make_token_bucket_position(256, 1024)`. */
const DEFAULT_TOKEN_BUCKETS = 256;
const DEFAULT_MAX_POSITION = 1024;
const DEFAULT_IMAGE_BUCKETS = 42;

/**
 * The 1-D relative bucket of query-minus-key distance `rel` (§4.6, `make_token_bucket_position`):
 * distances up to half the bucket count keep their own bucket, longer ones share buckets on a
 * log scale that reaches the last bucket at `maxPosition − 1`. Returns a row of the
 * `[2·bucketSize − 1, H]` table.
 */
export function tokenBucketIndex(
  rel: number,
  bucketSize: number = DEFAULT_TOKEN_BUCKETS,
  maxPosition: number = DEFAULT_MAX_POSITION,
): number {
  if (!Number.isInteger(rel) || Math.abs(rel) >= maxPosition) {
    throw new Error(`relative distance ${rel} is outside the ±${maxPosition - 1} the token buckets cover`);
  }
  const middle = bucketSize / 2;
  const distance = Math.abs(rel);
  const bucket =
    distance <= middle
      ? rel
      : Math.sign(rel) *
        (Math.ceil((Math.log(distance / middle) / Math.log((maxPosition - 1) / middle)) * (middle - 1)) + middle);
  return bucket + bucketSize - 1;
}

/** `tokenBucketIndex` for every rel in `[−(maxPosition − 1), maxPosition − 1]`, at `rel + maxPosition − 1`. */
export function tokenBucketTable(
  bucketSize: number = DEFAULT_TOKEN_BUCKETS,
  maxPosition: number = DEFAULT_MAX_POSITION,
): Int32Array {
  const table = new Int32Array(2 * maxPosition - 1);
  for (let rel = -(maxPosition - 1); rel < maxPosition; rel++) {
    table[rel + maxPosition - 1] = tokenBucketIndex(rel, bucketSize, maxPosition);
  }
  return table;
}

/**
 * The 2-D relative bucket of two patches `dRow = ri − rj`, `dCol = ci − cj` apart (§4.6,
 * `make_image_bucket_position`): a row of the `[(2·bucketSize − 1)² + 3, H]` table. (The three
 * extra rows serve position id 0, which image patches never use.)
 */
export function imageBucketIndex(dRow: number, dCol: number, bucketSize: number = DEFAULT_IMAGE_BUCKETS): number {
  const span = 2 * bucketSize - 1;
  return (dRow + bucketSize - 1) * span + (dCol + bucketSize - 1);
}

/** Rows of the image relative table, including the three rows for position id 0. */
export function imageBucketCount(bucketSize: number): number {
  return (2 * bucketSize - 1) ** 2 + 3;
}

/** Absolute position ids of a row-major patch grid: `r · bucketSize + c + 1` (§4.2; 0 is reserved). */
export function imagePositionIds(rows: number, cols: number, bucketSize: number = DEFAULT_IMAGE_BUCKETS): Int32Array {
  checkGrid(rows, cols, bucketSize);
  const ids = new Int32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) ids[r * cols + c] = r * bucketSize + c + 1;
  }
  return ids;
}

function checkGrid(rows: number, cols: number, bucketSize: number): void {
  if (rows > bucketSize || cols > bucketSize) {
    throw new Error(
      `the image gives a ${rows}×${cols} patch grid; the image position buckets allow at most ` +
        `${bucketSize}×${bucketSize} (an image side of at most ${bucketSize * 16} pixels)`,
    );
  }
}

/**
 * Where each table lives in an encoder layer's relative-bias table, which stacks
 * `[text table; image table; one zero row]` so that one `gather` serves the whole joint
 * sequence: text×text pairs index the text rows, image×image pairs the image rows, and the
 * cross-modal pairs the zero row (they get the absolute bias only).
 */
export interface EncoderRelativeTableLayout {
  textRows: number;
  imageOffset: number;
  imageRows: number;
  zeroRow: number;
  rows: number;
}

export function encoderRelativeTableLayout(config: OfaConfig): EncoderRelativeTableLayout {
  const textRows = 2 * config.tokenBucketSize - 1;
  const imageRows = imageBucketCount(config.imageBucketSize);
  return { textRows, imageOffset: textRows, imageRows, zeroRow: textRows + imageRows, rows: textRows + imageRows + 1 };
}

/**
 * The `[N, N]` row indices into the stacked encoder table for the joint sequence
 * `[rows·cols image patches, textLength text tokens]` (image first, §4.4): the image×image block
 * is `imageRelativeIndex`, the text×text block `textRelativeIndex`, the cross-modal blocks the
 * zero row.
 */
export function encoderRelativeIndex(config: OfaConfig, rows: number, cols: number, textLength: number): Int32Array {
  const layout = encoderRelativeTableLayout(config);
  const image = imageRelativeIndex(config, rows, cols);
  const text = textRelativeIndex(config, textLength);
  const patches = rows * cols;
  const n = patches + textLength;
  const index = new Int32Array(n * n).fill(layout.zeroRow);
  for (let i = 0; i < patches; i++) index.set(image.subarray(i * patches, (i + 1) * patches), i * n);
  for (let i = 0; i < textLength; i++) {
    index.set(text.subarray(i * textLength, (i + 1) * textLength), (patches + i) * n + patches);
  }
  return index;
}

/**
 * The `[Ni, Ni]` rows of the stacked encoder table for a row-major `rows×cols` patch grid on its
 * own: the image×image block of `encoderRelativeIndex` (the decomposed encoder's image stream
 * with its relative bias switched on, mue-spec §1).
 */
export function imageRelativeIndex(config: OfaConfig, rows: number, cols: number): Int32Array {
  checkGrid(rows, cols, config.imageBucketSize);
  const { imageOffset } = encoderRelativeTableLayout(config);
  const patches = rows * cols;
  const index = new Int32Array(patches * patches);
  for (let i = 0; i < patches; i++) {
    const [ri, ci] = [Math.floor(i / cols), i % cols];
    for (let j = 0; j < patches; j++) {
      const [rj, cj] = [Math.floor(j / cols), j % cols];
      index[i * patches + j] = imageOffset + imageBucketIndex(ri - rj, ci - cj, config.imageBucketSize);
    }
  }
  return index;
}

/**
 * The `[L, L]` rows of the stacked encoder table for `textLength` text tokens on their own, with
 * text-local positions: the text×text block of `encoderRelativeIndex` (the decomposed encoder's
 * text stream, mue-spec §1).
 */
export function textRelativeIndex(config: OfaConfig, textLength: number): Int32Array {
  checkTextLength(config, textLength, 'text');
  const tokenBuckets = tokenBucketTable(config.tokenBucketSize, config.maxPositions);
  const index = new Int32Array(textLength * textLength);
  for (let i = 0; i < textLength; i++) {
    for (let j = 0; j < textLength; j++) {
      index[i * textLength + j] = tokenBuckets[i - j + config.maxPositions - 1]!;
    }
  }
  return index;
}

/**
 * The `[Tq, Tk]` rows of the decoder's 1-D bucket table for queries at positions
 * `Tk − Tq … Tk − 1` over keys `0 … Tk − 1` (§5.2): the full square in a teacher-forced pass,
 * the last row only in a cached step (§5.5).
 */
export function decoderRelativeIndex(config: OfaConfig, queryLength: number, keyLength: number): Int32Array {
  checkTextLength(config, keyLength, 'decoder sequence');
  const tokenBuckets = tokenBucketTable(config.tokenBucketSize, config.maxPositions);
  const firstQuery = keyLength - queryLength;
  const index = new Int32Array(queryLength * keyLength);
  for (let i = 0; i < queryLength; i++) {
    for (let j = 0; j < keyLength; j++) {
      index[i * keyLength + j] = tokenBuckets[firstQuery + i - j + config.maxPositions - 1]!;
    }
  }
  return index;
}

/** Text and decoder positions run 0 … L − 1 and must stay within the position buckets. */
export function checkTextLength(config: OfaConfig, length: number, what: string): void {
  if (length > config.maxPositions) {
    throw new Error(
      `${what} of ${length} tokens is longer than the ${config.maxPositions} positions the position ` +
        `tables and buckets allow (max_position_embeddings)`,
    );
  }
}

/**
 * The index tables above as i32 device tensors, built on first use per shape and kept until
 * `dispose`. A cached tensor that was freed meanwhile (for instance by an enclosing `tidy`) is
 * rebuilt.
 */
export class PositionTables {
  readonly #cache = new Map<string, Tensor>();

  constructor(
    private readonly backend: Backend,
    private readonly config: OfaConfig,
  ) {}

  #get(key: string, shape: readonly number[], build: () => Int32Array): Tensor {
    const cached = this.#cache.get(key);
    if (cached && !cached.disposed) return cached;
    const tensor = this.backend.upload(build(), shape, 'i32');
    this.#cache.set(key, tensor);
    return tensor;
  }

  /** Positions `start … start + length − 1` (text tokens, decoder tokens), i32 `[length]`. */
  positionRange(start: number, length: number): Tensor {
    checkTextLength(this.config, start + length, 'text or decoder sequence');
    return this.#get(`range:${start}:${length}`, [length], () => Int32Array.from({ length }, (_, i) => start + i));
  }

  /** Image position ids of a patch grid, i32 `[rows·cols]`. */
  imagePositions(rows: number, cols: number): Tensor {
    return this.#get(`image:${rows}x${cols}`, [rows * cols], () =>
      imagePositionIds(rows, cols, this.config.imageBucketSize),
    );
  }

  /** Encoder relative-bias rows, i32 `[N, N]`. */
  encoderRelativeIndex(rows: number, cols: number, textLength: number): Tensor {
    const n = rows * cols + textLength;
    return this.#get(`encoder:${rows}x${cols}:${textLength}`, [n, n], () =>
      encoderRelativeIndex(this.config, rows, cols, textLength),
    );
  }

  /** Relative-bias rows of the image stream alone (decomposed encoder), i32 `[Ni, Ni]`. */
  imageRelativeIndex(rows: number, cols: number): Tensor {
    const patches = rows * cols;
    return this.#get(`encoder-image:${rows}x${cols}`, [patches, patches], () =>
      imageRelativeIndex(this.config, rows, cols),
    );
  }

  /** Relative-bias rows of the text stream alone (decomposed encoder), i32 `[L, L]`. */
  textRelativeIndex(textLength: number): Tensor {
    return this.#get(`encoder-text:${textLength}`, [textLength, textLength], () =>
      textRelativeIndex(this.config, textLength),
    );
  }

  /** Decoder relative-bias rows, i32 `[Tq, Tk]`. */
  decoderRelativeIndex(queryLength: number, keyLength: number): Tensor {
    return this.#get(`decoder:${queryLength}:${keyLength}`, [queryLength, keyLength], () =>
      decoderRelativeIndex(this.config, queryLength, keyLength),
    );
  }

  dispose(): void {
    for (const tensor of this.#cache.values()) tensor.dispose();
    this.#cache.clear();
  }
}
