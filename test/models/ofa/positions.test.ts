import { describe, expect, it } from 'vitest';
import { OFA_PRESETS } from '../../../src/models/ofa/config.js';
import {
  decoderRelativeIndex,
  encoderRelativeIndex,
  encoderRelativeTableLayout,
  imageBucketIndex,
  imagePositionIds,
  tokenBucketIndex,
  tokenBucketTable,
} from '../../../src/models/ofa/positions.js';
import { resnetOutputSize } from '../../../src/models/ofa/resnet.js';

const config = OFA_PRESETS.tiny;

describe('1-D token buckets (ofa-arch.md §4.6)', () => {
  it('keeps distances up to 128 in their own bucket, offset by 255', () => {
    expect(tokenBucketIndex(0)).toBe(255);
    expect(tokenBucketIndex(1)).toBe(256);
    expect(tokenBucketIndex(-1)).toBe(254);
    expect(tokenBucketIndex(127)).toBe(382);
    expect(tokenBucketIndex(128)).toBe(383);
    expect(tokenBucketIndex(-128)).toBe(127);
  });

  it('shares buckets on a log scale beyond 128 (values of the reference formula in float32)', () => {
    // ceil(ln(a/128) / ln(1023/128) · 127) + 128, signed, + 255.
    expect(tokenBucketIndex(129)).toBe(384);
    expect(tokenBucketIndex(130)).toBe(384);
    expect(tokenBucketIndex(-129)).toBe(126);
    expect(tokenBucketIndex(200)).toBe(411);
    expect(tokenBucketIndex(-200)).toBe(99);
    expect(tokenBucketIndex(500)).toBe(467);
    expect(tokenBucketIndex(1023)).toBe(510);
    expect(tokenBucketIndex(-1023)).toBe(0);
  });

  it('is antisymmetric around bucket 255, monotone, and fills exactly the 511 table rows', () => {
    const table = tokenBucketTable();
    expect(table.length).toBe(2047);
    for (let rel = 0; rel < 1024; rel++) {
      expect(table[1023 + rel]! - 255).toBe(255 - table[1023 - rel]!);
    }
    for (let i = 1; i < table.length; i++) expect(table[i]!).toBeGreaterThanOrEqual(table[i - 1]!);
    expect(new Set(table).size).toBe(511);
  });

  it('refuses distances the position range does not cover', () => {
    expect(() => tokenBucketIndex(1024)).toThrow(/outside the ±1023/);
  });
});

describe('2-D image buckets and position ids (§4.2, §4.6)', () => {
  it('indexes (dRow + 41)·83 + (dCol + 41)', () => {
    expect(imageBucketIndex(0, 0)).toBe(41 * 83 + 41);
    expect(imageBucketIndex(-41, -41)).toBe(0);
    expect(imageBucketIndex(41, 41)).toBe(6888);
    expect(imageBucketIndex(1, -2)).toBe(42 * 83 + 39);
  });

  it('numbers patches r·42 + c + 1, row-major', () => {
    expect([...imagePositionIds(2, 3)]).toEqual([1, 2, 3, 43, 44, 45]);
    expect(imagePositionIds(42, 42).at(-1)).toBe(1764);
  });

  it('refuses a grid beyond the 42×42 buckets', () => {
    expect(() => imagePositionIds(43, 10)).toThrow(/43×10 patch grid.*at most 42×42/);
  });

  it('gives the backbone grid of the golden image size and the largest one', () => {
    expect(resnetOutputSize(256)).toBe(16);
    expect(resnetOutputSize(480)).toBe(30);
    expect(resnetOutputSize(672)).toBe(42);
  });
});

describe('encoder relative index table', () => {
  /** The reference's `image_rp_bucket[pid_i][pid_j]` built from position ids, as in the HF port. */
  function referenceImageBucket(p: number, q: number): number {
    const [rp, cp] = [Math.floor((p - 1) / 42), (p - 1) % 42];
    const [rq, cq] = [Math.floor((q - 1) / 42), (q - 1) % 42];
    return (rp - rq + 41) * 83 + (cp - cq + 41);
  }

  it('maps image pairs to image rows, text pairs to text rows and cross pairs to the zero row', () => {
    const [rows, cols, textLength] = [3, 4, 5];
    const layout = encoderRelativeTableLayout(config);
    expect(layout).toEqual({ textRows: 511, imageOffset: 511, imageRows: 6892, zeroRow: 7403, rows: 7404 });
    const index = encoderRelativeIndex(config, rows, cols, textLength);
    const ids = imagePositionIds(rows, cols);
    const patches = rows * cols;
    const n = patches + textLength;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        const got = index[i * n + j];
        if (i < patches && j < patches) expect(got).toBe(511 + referenceImageBucket(ids[i]!, ids[j]!));
        else if (i >= patches && j >= patches) expect(got).toBe(tokenBucketIndex(i - j));
        else expect(got).toBe(layout.zeroRow);
      }
    }
  });

  it('refuses text longer than the position buckets allow', () => {
    expect(() => encoderRelativeIndex(config, 1, 1, 1025)).toThrow(/1025 tokens is longer than the 1024 positions/);
  });
});

describe('decoder relative index table', () => {
  it('gives the last row of the full square for a cached step', () => {
    const full = decoderRelativeIndex(config, 6, 6);
    expect([...decoderRelativeIndex(config, 1, 6)]).toEqual([...full.subarray(30, 36)]);
    expect([...full.subarray(0, 6)]).toEqual([255, 254, 253, 252, 251, 250]);
  });
});
