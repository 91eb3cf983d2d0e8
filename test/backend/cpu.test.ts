import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/backend/cpu/cpu-backend.js';
import { erf, erfc } from '../../src/backend/cpu/erf.js';
import { floatToHalf, floatsToHalves, halfToFloat } from '../../src/half.js';
import { type Shape, type Tensor, sizeOf } from '../../src/tensor.js';
import { expectClose, maxAbsDiff } from '../helpers/compare.js';
import { type Rng, createRng, randomFloats, randomInts } from '../helpers/random.js';

const cpu = new CpuBackend();

function f32(values: readonly number[], shape: Shape): Tensor {
  return cpu.upload(Float32Array.from(values), shape);
}

function i32(values: readonly number[], shape: Shape): Tensor {
  return cpu.upload(Int32Array.from(values), shape);
}

function random(shape: Shape, rng: Rng): Tensor {
  return cpu.upload(randomFloats(sizeOf(shape), rng), shape);
}

async function values(t: Tensor): Promise<number[]> {
  return Array.from(await t.read());
}

/** Expected values are exact math; the op rounds once to f32 (relative error ≤ 2⁻²⁴ ≈ 6e-8). */
const F32_ROUNDING = { rtol: 1e-7 };

describe('upload and read', () => {
  it('round-trips f32 and i32 and infers the dtype from the array', async () => {
    const x = f32([1.5, -2, 3], [3]);
    const ids = i32([7, -1], [2]);
    expect([x.dtype, ids.dtype]).toEqual(['f32', 'i32']);
    expect(await values(x)).toEqual([1.5, -2, 3]);
    expect(await ids.read()).toEqual(Int32Array.from([7, -1]));
  });

  it('widens f16 half bits and keeps the dtype f16', async () => {
    const halves = floatsToHalves(Float32Array.from([0.1, -65504, 1 / 3]));
    const w = cpu.upload(halves, [3]);
    expect(w.dtype).toBe('f16');
    expect(await values(w)).toEqual(Array.from(halves, halfToFloat));
  });

  it('copies on upload and on read', async () => {
    const source = Float32Array.from([1, 2]);
    const x = cpu.upload(source, [2]);
    source[0] = 100;
    const first = await x.read();
    first[1] = 200;
    expect(await values(x)).toEqual([1, 2]);
  });

  it('refuses data that does not match the dtype or the shape', () => {
    expect(() => cpu.upload(new Float32Array(5), [2, 3])).toThrow('upload: 5 values do not fill [2, 3]');
    expect(() => cpu.upload(new Float32Array(2), [2], 'f16')).toThrow(
      'upload: f16 data must be a Uint16Array, got Float32Array',
    );
  });
});

describe('reshape views', () => {
  it('share storage, infer -1 and are used by ops with their own shape', async () => {
    const x = f32([1, 2, 3, 4, 5, 6], [2, 3]);
    const view = x.reshape([3, -1]);
    expect(view.shape).toEqual([3, 2]);
    expect(view.storage).toBe(x.storage);
    expect(await values(view)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(await values(cpu.argmax(view))).toEqual([1, 1, 1]);
    expect(() => x.reshape([4, -1])).toThrow('cannot reshape [2, 3] (6 elements) to [4, -1]');
  });

  it('do not free the owner when disposed, and die with it', async () => {
    const x = f32([1, 2], [2]);
    const view = x.reshape([1, 2]);
    view.dispose();
    expect(await values(x)).toEqual([1, 2]);
    x.dispose();
    await expect(view.read()).rejects.toThrow('tensor was disposed');
  });
});

describe('lifetime', () => {
  it('disposed tensors cannot be read or used', async () => {
    const x = f32([1, 2], [2]);
    x.dispose();
    expect(x.disposed).toBe(true);
    await expect(x.read()).rejects.toThrow('tensor was disposed');
    expect(() => cpu.relu(x)).toThrow('tensor was disposed');
    x.dispose();
  });

  it('tidy frees intermediates and keeps the result', async () => {
    const x = f32([-1, 2], [2]);
    let intermediate: Tensor | undefined;
    const result = cpu.tidy(() => {
      intermediate = cpu.scale(x, 2);
      return cpu.relu(intermediate);
    });
    expect(intermediate?.disposed).toBe(true);
    expect(x.disposed).toBe(false);
    expect(await values(result)).toEqual([0, 4]);
  });

  it('keeps tensors in arrays and objects, and the owners of returned views', async () => {
    const x = f32([1, 2, 3, 4], [2, 2]);
    const { single, list, view } = cpu.tidy(() => ({
      single: cpu.scale(x, 1),
      list: [cpu.scale(x, 2), cpu.scale(x, 3)],
      view: cpu.scale(x, 4).reshape([4]),
    }));
    const array = cpu.tidy(() => [cpu.scale(x, 5), cpu.scale(x, 6)]);
    for (const t of [single, ...list, view, ...array]) expect(t.disposed).toBe(false);
    expect(await values(view)).toEqual([4, 8, 12, 16]);
  });

  it('moves an inner result to the enclosing scope', () => {
    const x = f32([1], [1]);
    let inner: Tensor | undefined;
    let innerScratch: Tensor | undefined;
    const outer = cpu.tidy(() => {
      inner = cpu.tidy(() => {
        innerScratch = cpu.scale(x, 2);
        return cpu.scale(innerScratch, 2);
      });
      expect(innerScratch?.disposed).toBe(true);
      expect(inner.disposed).toBe(false);
      return cpu.scale(inner, 2);
    });
    expect(inner?.disposed).toBe(true);
    expect(outer.disposed).toBe(false);
  });

  it('frees the scope when fn throws', () => {
    const x = f32([1], [1]);
    let scratch: Tensor | undefined;
    expect(() =>
      cpu.tidy(() => {
        scratch = cpu.scale(x, 2);
        cpu.matmul(x, x);
      }),
    ).toThrow('matmul: operands need rank ≥ 2');
    expect(scratch?.disposed).toBe(true);
  });

  it('destroy frees every tensor', async () => {
    const backend = new CpuBackend();
    const x = backend.upload(Float32Array.from([1]), [1]);
    const y = backend.scale(x, 2);
    backend.destroy();
    expect([x.disposed, y.disposed]).toEqual([true, true]);
    await expect(y.read()).rejects.toThrow('tensor was disposed');
  });

  it('refuses tensors of another backend', () => {
    const other = new CpuBackend().upload(Float32Array.from([1]), [1]);
    expect(() => cpu.relu(other)).toThrow('tensor [1] belongs to another backend');
  });
});

/** out[t] = a[t]·b[t] (or the shared b) in float64, straight from the definition. */
function matmulReference(
  a: Float32Array,
  b: Float32Array,
  [batch, m, k, n]: [number, number, number, number],
  { transposeB, batchedB }: { transposeB: boolean; batchedB: boolean },
): Float64Array {
  const out = new Float64Array(batch * m * n);
  for (let t = 0; t < batch; t++) {
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let sum = 0;
        for (let p = 0; p < k; p++) {
          const bIndex = (batchedB ? t * k * n : 0) + (transposeB ? j * k + p : p * n + j);
          sum += a[(t * m + i) * k + p]! * b[bIndex]!;
        }
        out[(t * m + i) * n + j] = sum;
      }
    }
  }
  return out;
}

describe('matmul', () => {
  const a = f32([1, 2, 3, 4, 5, 6], [2, 3]);
  const b = f32([1, -1, 0, 2, -1, 1], [3, 2]);

  it('applies bias, then the activation, then the residual', async () => {
    // a·b = [[-2, 6], [-2, 12]]; + bias = [[-1, -4], [-1, 2]]; relu = [[0, 0], [0, 2]].
    const bias = f32([1, -10], [2]);
    const residual = f32([0.5, 1, 2, 3], [2, 2]);
    expect(await values(cpu.matmul(a, b))).toEqual([-2, 6, -2, 12]);
    expect(await values(cpu.matmul(a, b, { bias, activation: 'relu', residual }))).toEqual([0.5, 1, 2, 5]);
  });

  it('reads b as [N, K] with transposeB', async () => {
    const bT = f32([1, 0, -1, -1, 2, 1], [2, 3]);
    expect(await values(cpu.matmul(a, bT, { transposeB: true }))).toEqual([-2, 6, -2, 12]);
  });

  it('applies exact GELU and accepts f16 weights and biases', async () => {
    const one = f32([1], [1, 1]);
    const bHalf = cpu.upload(floatsToHalves(Float32Array.from([1, -0.5])), [1, 2]);
    const biasHalf = cpu.upload(Uint16Array.from([floatToHalf(0)]), [1]);
    const out = await values(cpu.matmul(one, bHalf, { activation: 'gelu' }));
    expect(out).toEqual([Math.fround(0.8413447460685429), Math.fround(-0.15426876936299347)]);
    const tenth = cpu.upload(Uint16Array.from([floatToHalf(0.1)]), [1, 1]);
    expect(await values(cpu.matmul(one, tenth, { bias: biasHalf }))).toEqual([halfToFloat(floatToHalf(0.1))]);
  });

  it('multiplies batches by a shared or a per-batch b', async () => {
    const rng = createRng(1);
    const [batch, m, k, n] = [3, 4, 5, 6];
    const x = random([batch, m, k], rng);
    const xs = await x.read();
    for (const transposeB of [false, true]) {
      for (const batchedB of [false, true]) {
        const bShape = transposeB ? [n, k] : [k, n];
        const y = random(batchedB ? [batch, ...bShape] : bShape, rng);
        const expected = matmulReference(xs as Float32Array, (await y.read()) as Float32Array, [batch, m, k, n], {
          transposeB,
          batchedB,
        });
        const out = cpu.matmul(x, y, { transposeB });
        expect(out.shape).toEqual([batch, m, n]);
        expectClose(await out.read(), expected, F32_ROUNDING, `transposeB ${transposeB}, batchedB ${batchedB}`);
      }
    }
  });

  it('refuses mismatched operands', () => {
    expect(() => cpu.matmul(a, f32([1, 2, 3, 4], [2, 2]))).toThrow(
      'matmul: inner dimensions differ: a [2, 3] · b [2, 2]',
    );
    expect(() => cpu.matmul(a, b, { bias: f32([1, 2, 3], [3]) })).toThrow('matmul: bias must be [2], got [3]');
  });
});

describe('elementwise', () => {
  it('adds and multiplies with b broadcast over leading dims', async () => {
    const x = f32([1, 2, 3, 4, 5, 6], [2, 3]);
    const row = f32([10, 20, 30], [3]);
    expect(await values(cpu.add(x, row))).toEqual([11, 22, 33, 14, 25, 36]);
    expect(await values(cpu.mul(x, row))).toEqual([10, 40, 90, 40, 100, 180]);
    expect(await values(cpu.add(x, x))).toEqual([2, 4, 6, 8, 10, 12]);
    expect(() => cpu.add(x, f32([1, 2], [2]))).toThrow(
      "add: cannot broadcast [2] to [2, 3] (b must be a suffix of a's shape)",
    );
  });

  it('scales and applies ReLU', async () => {
    expect(await values(cpu.scale(f32([1, -2], [2]), 0.5))).toEqual([0.5, -1]);
    expect(await values(cpu.relu(f32([-1, 0, 2], [3])))).toEqual([0, 0, 2]);
    expect(() => cpu.relu(i32([1], [1]))).toThrow('relu: x must be f32, got i32');
  });

  it('computes the exact GELU', async () => {
    // x·Φ(x) from CPython's math.erfc: 0.5·x·erfc(−x/√2).
    const points = [1, -0.5, 0, 3, -3, -10, 0.1];
    const expected = [
      0.8413447460685429, -0.15426876936299347, 0, 2.99595030590511, -0.004049694094890287, -7.619853024160593e-23,
      0.053982783727702904,
    ];
    expectClose(await cpu.gelu(f32(points, [points.length])).read(), expected, F32_ROUNDING, 'gelu');
  });
});

describe('erf', () => {
  // CPython's math.erf / math.erfc.
  const cases: [number, number, number][] = [
    [0.1, 0.1124629160182849, 0.8875370839817152],
    [0.46875, 0.49261347321793797, 0.507386526782062],
    [0.5, 0.5204998778130465, 0.4795001221869535],
    [1, 0.8427007929497149, 0.15729920705028513],
    [2, 0.9953222650189527, 0.004677734981047265],
    [3.9, 0.9999999652077514, 3.479224859723177e-8],
    [4.5, 0.9999999998033839, 1.9661604415428873e-10],
    [6, 1, 2.1519736712498916e-17],
    [10, 1, 2.088487583762545e-45],
  ];

  it('is accurate to about 1e-15 relative', () => {
    for (const [x, erfX, erfcX] of cases) {
      expectClose([erf(x), erf(-x)], [erfX, -erfX], { rtol: 1e-15 }, `erf(±${x})`);
      expectClose([erfc(x), erfc(-x)], [erfcX, 2 - erfcX], { rtol: 1e-15 }, `erfc(±${x})`);
    }
    expect([erf(0), erf(Infinity), erf(-Infinity), erfc(30)]).toEqual([0, 1, -1, 0]);
    expect(erf(NaN)).toBeNaN();
  });
});

describe('layerNorm', () => {
  it('normalises with the population variance and eps, then applies the affine', async () => {
    // Row [1, 2, 3, 4]: mean 2.5, variance 1.25. Row [5, 5, 5, 5]: variance 0, eps keeps it finite.
    const x = f32([1, 2, 3, 4, 5, 5, 5, 5], [2, 4]);
    const weight = cpu.upload(floatsToHalves(Float32Array.from([1, 1, 2, 1])), [4]);
    const bias = f32([0, 0, 0, 0.5], [4]);
    const inv = 1 / Math.sqrt(1.25 + 1e-5);
    const expected = [-1.5 * inv, -0.5 * inv, 2 * 0.5 * inv, 1.5 * inv + 0.5, 0, 0, 0, 0.5];
    expectClose(await cpu.layerNorm(x, weight, bias, 1e-5).read(), expected, F32_ROUNDING, 'layerNorm');
    expect(() => cpu.layerNorm(x, f32([1, 1, 1], [3]), bias, 1e-5)).toThrow('layerNorm: weight must be [4], got [3]');
  });
});

describe('softmax and logSoftmax', () => {
  it('match known values and stay finite for large inputs', async () => {
    const x = f32([1, 2, 3, 1000, 1001, 1002, -Infinity, 0, -Infinity], [3, 3]);
    const p = [0.09003057317038046, 0.24472847105479767, 0.6652409557748219];
    const logP = [-2.4076059644443806, -1.4076059644443806, -0.4076059644443806];
    expectClose(await cpu.softmax(x).read(), [...p, ...p, 0, 1, 0], F32_ROUNDING, 'softmax');
    const logExpected = [...logP, ...logP, -Infinity, 0, -Infinity];
    expectClose(await cpu.logSoftmax(x).read(), logExpected, F32_ROUNDING, 'logSoftmax');
  });
});

describe('argmax and topk', () => {
  const x = f32([1, 3, 2, 3, 0, 5, 4, 3, 2, 1, 7, 7, 7, 7, 7], [3, 5]);

  it('argmax picks the first of tied maxima', async () => {
    const out = cpu.argmax(x);
    expect([out.shape, out.dtype]).toEqual([[3], 'i32']);
    expect(await values(out)).toEqual([1, 0, 0]);
  });

  it('topk is descending with lower indices first on ties', async () => {
    const { values: top, indices } = cpu.topk(x, 3);
    expect([top.shape, indices.dtype]).toEqual([[3, 3], 'i32']);
    expect(await values(top)).toEqual([3, 3, 2, 5, 4, 3, 7, 7, 7]);
    expect(await values(indices)).toEqual([1, 3, 2, 0, 1, 2, 0, 1, 2]);
    expect(await values(cpu.topk(x, 5).indices)).toEqual([1, 3, 2, 0, 4, 0, 1, 2, 3, 4, 0, 1, 2, 3, 4]);
    expect(() => cpu.topk(x, 6)).toThrow('topk: k = 6 must be in 1..5');
  });
});

describe('cosineSimilarity', () => {
  it('flattens each sample and clamps each norm at 1e-8', async () => {
    const a = f32([1, 0, 0, 1, 3, 4, 0, 0, 0, 0, 0, 0], [3, 2, 2]);
    const b = f32([1, 0, 0, 1, 4, 3, 0, 0, 1, 1, 1, 1], [3, 2, 2]);
    expectClose(await cpu.cosineSimilarity(a, b).read(), [1, 0.96, 0], F32_ROUNDING, 'cosine');
    // ‖a‖ = ‖b‖ ≈ 1e-9: clamped separately, 1e-18 / (1e-8·1e-8) = 0.01 (the product clamp gives 1e-10).
    const tiny = f32([1e-9, 0], [1, 2]);
    const tinyNorm = Math.fround(1e-9);
    expectClose(await cpu.cosineSimilarity(tiny, tiny).read(), [(tinyNorm * tinyNorm) / 1e-16], F32_ROUNDING, 'tiny');
    expect(() => cpu.cosineSimilarity(a, f32([1, 2], [1, 2]))).toThrow(
      'cosineSimilarity: shapes differ: [3, 2, 2] vs [1, 2]',
    );
  });
});

describe('gather', () => {
  const table = f32([0, 1, 10, 11, 20, 21], [3, 2]);

  it('picks rows by id into [...ids, C]', async () => {
    const out = cpu.gather(table, i32([2, 0, 1, 2], [2, 2]));
    expect(out.shape).toEqual([2, 2, 2]);
    expect(await values(out)).toEqual([20, 21, 0, 1, 10, 11, 20, 21]);
    const halfTable = cpu.upload(floatsToHalves(Float32Array.from([0.1, 0.2])), [2, 1]);
    const fromHalf = cpu.gather(halfTable, i32([1], [1]));
    expect([fromHalf.dtype, await values(fromHalf)]).toEqual(['f32', [halfToFloat(floatToHalf(0.2))]]);
  });

  it('names an out-of-range id, its position and the table rows', () => {
    expect(() => cpu.gather(table, i32([0, 3], [2]))).toThrow(
      'gather: id 3 at position 1 is out of range for a table of 3 rows',
    );
    expect(() => cpu.gather(table, i32([-1], [1]))).toThrow(
      'gather: id -1 at position 0 is out of range for a table of 3 rows',
    );
    expect(() => cpu.gather(table, f32([0], [1]))).toThrow('gather: ids must be i32, got f32');
  });
});

describe('slice, concat, transpose', () => {
  const x = f32(Array.from({ length: 12 }, (_, i) => i), [2, 3, 2]);

  it('slice keeps a range of one axis', async () => {
    const out = cpu.slice(x, 1, 1, 3);
    expect(out.shape).toEqual([2, 2, 2]);
    expect(await values(out)).toEqual([2, 3, 4, 5, 8, 9, 10, 11]);
    expect(await values(cpu.slice(x, -1, 1, 2))).toEqual([1, 3, 5, 7, 9, 11]);
    const ids = cpu.slice(i32([1, 2, 3], [3]), 0, 2, 3);
    expect([ids.dtype, await values(ids)]).toEqual(['i32', [3]]);
    expect(() => cpu.slice(x, 1, 2, 4)).toThrow('slice: range 2..4 out of bounds for axis 1 of [2, 3, 2]');
  });

  it('concat joins along an axis and keeps the dtype', async () => {
    const left = f32([1, 2], [2, 1]);
    const right = f32([3, 4, 5, 6], [2, 2]);
    expect(await values(cpu.concat([left, right], 1))).toEqual([1, 3, 4, 2, 5, 6]);
    expect(await values(cpu.concat([right, right], 0))).toEqual([3, 4, 5, 6, 3, 4, 5, 6]);
    const halves = cpu.upload(floatsToHalves(Float32Array.from([0.5])), [1]);
    expect(cpu.concat([halves, halves], 0).dtype).toBe('f16');
    expect(() => cpu.concat([left, right], 0)).toThrow('concat: shapes [2, 1] and [2, 2] differ outside axis 0');
  });

  /** out[c] = x[c permuted back], for any rank. */
  function transposeReference(data: ArrayLike<number>, shape: Shape, perm: readonly number[]): number[] {
    const outShape = perm.map((p) => shape[p]!);
    return Array.from({ length: data.length }, (_, flat) => {
      const outCoord: number[] = [];
      let rest = flat;
      for (let d = outShape.length - 1; d >= 0; d--) {
        outCoord[d] = rest % outShape[d]!;
        rest = Math.floor(rest / outShape[d]!);
      }
      const inCoord: number[] = [];
      perm.forEach((p, d) => (inCoord[p] = outCoord[d]!));
      return data[inCoord.reduce((index, c, d) => index * shape[d]! + c, 0)]!;
    });
  }

  it('transpose reorders dims of rank 1 to 4', async () => {
    expect(await values(cpu.transpose(f32([1, 2, 3, 4, 5, 6], [2, 3]), [1, 0]))).toEqual([1, 4, 2, 5, 3, 6]);
    const rng = createRng(2);
    const cases: [Shape, number[]][] = [
      [[5], [0]],
      [[2, 3, 4], [2, 0, 1]],
      [[2, 3, 4, 5], [2, 0, 3, 1]],
      [[2, 3, 4, 5], [0, 2, 1, 3]],
    ];
    for (const [shape, perm] of cases) {
      const data = randomFloats(sizeOf(shape), rng);
      const out = cpu.transpose(cpu.upload(data, shape), perm);
      expect(out.shape).toEqual(perm.map((p) => shape[p]));
      expect(await values(out)).toEqual(transposeReference(data, shape, perm));
    }
    const ids = cpu.transpose(i32([1, 2, 3, 4], [2, 2]), [1, 0]);
    expect([ids.dtype, await values(ids)]).toEqual(['i32', [1, 3, 2, 4]]);
    expect(() => cpu.transpose(x, [0, 0, 1])).toThrow(
      'transpose: [0, 0, 1] is not a permutation of the 3 dims of [2, 3, 2]',
    );
  });
});

interface ConvCase {
  x: Float32Array;
  xShape: [number, number, number, number];
  w: Float32Array;
  wShape: [number, number, number, number];
  stride: number;
  padding: number;
  bias?: Float32Array;
  residual?: Float32Array;
  relu: boolean;
}

/** The textbook definition, one output at a time, with explicit bounds checks for the padding. */
function conv2dReference(c: ConvCase): { values: number[]; shape: Shape } {
  const [batch, cin, h, w] = c.xShape;
  const [cout, , kh, kw] = c.wShape;
  const ho = Math.floor((h + 2 * c.padding - kh) / c.stride) + 1;
  const wo = Math.floor((w + 2 * c.padding - kw) / c.stride) + 1;
  const out: number[] = [];
  for (let b = 0; b < batch; b++) {
    for (let o = 0; o < cout; o++) {
      for (let oh = 0; oh < ho; oh++) {
        for (let ow = 0; ow < wo; ow++) {
          let sum = c.bias ? c.bias[o]! : 0;
          for (let i = 0; i < cin; i++) {
            for (let ky = 0; ky < kh; ky++) {
              for (let kx = 0; kx < kw; kx++) {
                const ih = oh * c.stride - c.padding + ky;
                const iw = ow * c.stride - c.padding + kx;
                if (ih < 0 || ih >= h || iw < 0 || iw >= w) continue;
                sum += c.w[((o * cin + i) * kh + ky) * kw + kx]! * c.x[((b * cin + i) * h + ih) * w + iw]!;
              }
            }
          }
          if (c.residual) sum += c.residual[out.length]!;
          out.push(c.relu ? Math.max(sum, 0) : sum);
        }
      }
    }
  }
  return { values: out, shape: [batch, cout, ho, wo] };
}

describe('conv2d', () => {
  const x = f32([1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 1, 3, 3]);
  const w = f32([1, 2, 3, 4], [1, 1, 2, 2]);

  it('matches hand-computed outputs, with stride 2 and padding 1', async () => {
    expect(await values(cpu.conv2d(x, w))).toEqual([37, 47, 67, 77]);
    // Output (oh, ow) reads rows 2·oh − 1 + ky and columns 2·ow − 1 + kx; the padding adds nothing.
    expect(await values(cpu.conv2d(x, w, { stride: 2, padding: 1 }))).toEqual([4, 18, 36, 77]);
  });

  it('adds the residual after the bias and before the ReLU', async () => {
    const one = f32([1], [1, 1, 1, 1]);
    const out = cpu.conv2d(one, f32([-2], [1, 1, 1, 1]), {
      bias: f32([0.5], [1]),
      residual: f32([1], [1, 1, 1, 1]),
      activation: 'relu',
    });
    expect(await values(out)).toEqual([0]);
  });

  it('matches the textbook formula on random data', async () => {
    const rng = createRng(3);
    const cases: Omit<ConvCase, 'x' | 'w' | 'bias' | 'residual'>[] = [
      { xShape: [2, 3, 7, 6], wShape: [5, 3, 3, 3], stride: 2, padding: 1, relu: true },
      { xShape: [1, 4, 5, 5], wShape: [6, 4, 1, 1], stride: 1, padding: 0, relu: false },
      { xShape: [1, 2, 9, 8], wShape: [3, 2, 2, 3], stride: 3, padding: 2, relu: true },
      { xShape: [1, 3, 11, 11], wShape: [4, 3, 7, 7], stride: 2, padding: 3, relu: true },
    ];
    for (const shapes of cases) {
      const c: ConvCase = {
        ...shapes,
        x: randomFloats(sizeOf(shapes.xShape), rng),
        w: randomFloats(sizeOf(shapes.wShape), rng),
        bias: randomFloats(shapes.wShape[0], rng),
      };
      const { shape } = conv2dReference(c);
      c.residual = randomFloats(sizeOf(shape), rng);
      const expected = conv2dReference(c).values;
      const out = cpu.conv2d(cpu.upload(c.x, c.xShape), cpu.upload(c.w, c.wShape), {
        stride: c.stride,
        padding: c.padding,
        bias: cpu.upload(c.bias!, [shapes.wShape[0]]),
        residual: cpu.upload(c.residual, shape),
        activation: c.relu ? 'relu' : 'none',
      });
      expectClose(await out.read(), expected, { atol: 1e-6, rtol: 1e-6 }, `conv2d ${JSON.stringify(shapes)}`);
    }
  });

  it('refuses mismatched channels', () => {
    expect(() => cpu.conv2d(x, f32([1, 1], [1, 2, 1, 1]))).toThrow('conv2d: x has 1 channels but w expects 2');
  });
});

describe('maxPool2d', () => {
  it('never lets padded cells win', async () => {
    // All values negative: zero padding would make every border window 0.
    const x = f32(
      Array.from({ length: 16 }, (_, i) => -(i + 1)),
      [1, 1, 4, 4],
    );
    const out = cpu.maxPool2d(x, { kernel: 3, stride: 2, padding: 1 });
    expect(out.shape).toEqual([1, 1, 2, 2]);
    expect(await values(out)).toEqual([-1, -2, -5, -6]);
    expect(() => cpu.maxPool2d(x, { kernel: 3, stride: 0, padding: 1 })).toThrow(
      'maxPool2d: stride must be a positive integer, got 0',
    );
  });
});

interface AttentionCase {
  batch: number;
  kvBatch: number;
  tq: number;
  tk: number;
  heads: number;
  headDim: number;
  scale: number;
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  bias?: { data: Float32Array; batched: boolean };
  mask?: Int32Array;
  causal: boolean;
}

/** Per (sample, head): S = scale·Q·Kᵀ + B, masked entries −∞, O = softmax(S)·V; no visible key → zeros. */
function attentionReference(c: AttentionCase): Float64Array {
  const width = c.heads * c.headDim;
  const out = new Float64Array(c.batch * c.tq * width);
  for (let b = 0; b < c.batch; b++) {
    const kb = c.kvBatch === 1 ? 0 : b;
    for (let h = 0; h < c.heads; h++) {
      const at = (t: Float32Array, sample: number, length: number, row: number, d: number): number =>
        t[(sample * length + row) * width + h * c.headDim + d]!;
      for (let i = 0; i < c.tq; i++) {
        const scores: number[] = [];
        for (let j = 0; j < c.tk; j++) {
          let s = 0;
          for (let d = 0; d < c.headDim; d++) s += at(c.q, b, c.tq, i, d) * at(c.k, kb, c.tk, j, d);
          s *= c.scale;
          if (c.bias) s += c.bias.data[(((c.bias.batched ? b : 0) * c.heads + h) * c.tq + i) * c.tk + j]!;
          if (c.mask && c.mask[kb * c.tk + j] !== 0) s = -Infinity;
          if (c.causal && j > i + c.tk - c.tq) s = -Infinity;
          scores.push(s);
        }
        const max = Math.max(...scores);
        if (max === -Infinity) continue;
        const exps = scores.map((s) => Math.exp(s - max));
        const sum = exps.reduce((x, y) => x + y, 0);
        for (let d = 0; d < c.headDim; d++) {
          let o = 0;
          for (let j = 0; j < c.tk; j++) o += (exps[j]! / sum) * at(c.v, kb, c.tk, j, d);
          out[(b * c.tq + i) * width + h * c.headDim + d] = o;
        }
      }
    }
  }
  return out;
}

describe('attention', () => {
  // One head, dh 1: scores [0, ln 3] give weights [1/4, 3/4] over values [4, 8] → 7.
  const q = f32([1], [1, 1, 1]);
  const k = f32([0, Math.log(3)], [1, 2, 1]);
  const v = f32([4, 8], [1, 2, 1]);

  it('matches hand-computed single-head cases', async () => {
    const attend = async (options: object): Promise<number> =>
      (await values(cpu.attention(q, k, v, { heads: 1, scale: 1, ...options })))[0]!;
    expect(await attend({})).toBeCloseTo(7, 6);
    expect(await attend({ bias: f32([Math.log(3), 0], [1, 1, 2]) })).toBeCloseTo(6, 6);
    expect(await attend({ keyPaddingMask: i32([0, 1], [1, 2]) })).toBeCloseTo(4, 6);
    expect(await attend({ causal: true })).toBeCloseTo(7, 6);
    expect(await attend({ scale: 0 })).toBeCloseTo(6, 6);
  });

  function randomCase(rng: Rng, shape: Omit<AttentionCase, 'q' | 'k' | 'v' | 'scale'>): AttentionCase {
    const width = shape.heads * shape.headDim;
    return {
      ...shape,
      scale: 1 / Math.sqrt(2 * shape.headDim),
      q: randomFloats(shape.batch * shape.tq * width, rng, -2, 2),
      k: randomFloats(shape.kvBatch * shape.tk * width, rng, -2, 2),
      v: randomFloats(shape.kvBatch * shape.tk * width, rng),
    };
  }

  async function check(c: AttentionCase, label: string): Promise<void> {
    const width = c.heads * c.headDim;
    const out = cpu.attention(
      cpu.upload(c.q, [c.batch, c.tq, width]),
      cpu.upload(c.k, [c.kvBatch, c.tk, width]),
      cpu.upload(c.v, [c.kvBatch, c.tk, width]),
      {
        heads: c.heads,
        scale: c.scale,
        causal: c.causal,
        bias: c.bias && cpu.upload(c.bias.data, [...(c.bias.batched ? [c.batch] : []), c.heads, c.tq, c.tk]),
        keyPaddingMask: c.mask && cpu.upload(c.mask, [c.kvBatch, c.tk]),
      },
    );
    expect(out.shape).toEqual([c.batch, c.tq, width]);
    expectClose(await out.read(), attentionReference(c), { atol: 1e-6, rtol: 1e-6 }, label);
  }

  it('matches the per-head formula with bias, padding mask and causal Tq < Tk', async () => {
    const rng = createRng(4);
    const shape = { batch: 2, kvBatch: 2, tq: 3, tk: 5, heads: 2, headDim: 3 };
    const c = randomCase(rng, { ...shape, causal: true });
    c.bias = { data: randomFloats(shape.heads * shape.tq * shape.tk, rng), batched: false };
    c.mask = Int32Array.from([0, 0, 1, 0, 0, 1, 0, 0, 0, 0]);
    await check(c, 'bias + mask + causal');
    await check({ ...c, causal: false }, 'bias + mask');
    await check({ ...c, bias: undefined, mask: undefined }, 'causal only');
  });

  it('shares k and v of batch 1 across the query batch, with a per-sample bias', async () => {
    const rng = createRng(5);
    const shape = { batch: 3, kvBatch: 1, tq: 2, tk: 4, heads: 4, headDim: 2 };
    const c = randomCase(rng, { ...shape, causal: false });
    c.bias = { data: randomFloats(shape.batch * shape.heads * shape.tq * shape.tk, rng), batched: true };
    c.mask = Int32Array.from([0, 1, 0, 0]);
    await check(c, 'shared kv');
  });

  it('outputs zeros for a query row that sees no key', async () => {
    const rng = createRng(6);
    // Causal with Tq > Tk: query 0 may see keys j ≤ 0 + (2 − 3), i.e. none.
    const c = randomCase(rng, { batch: 1, kvBatch: 1, tq: 3, tk: 2, heads: 2, headDim: 2, causal: true });
    await check(c, 'causal Tq > Tk');
    const out = await values(
      cpu.attention(cpu.upload(c.q, [1, 3, 4]), cpu.upload(c.k, [1, 2, 4]), cpu.upload(c.v, [1, 2, 4]), {
        heads: 2,
        scale: c.scale,
        causal: true,
      }),
    );
    expect(out.slice(0, 4)).toEqual([0, 0, 0, 0]);
    await check({ ...c, causal: false, mask: Int32Array.from([1, 1]) }, 'every key padded');
  });

  it('refuses widths that do not split into the heads', () => {
    const q6 = f32([1, 2, 3, 4, 5, 6], [1, 1, 6]);
    expect(() => cpu.attention(q6, q6, q6, { heads: 4, scale: 1 })).toThrow(
      'attention: width 6 is not divisible into 4 heads',
    );
  });
});

describe('test helpers', () => {
  it('draw reproducible data', () => {
    expect(randomFloats(4, createRng(7))).toEqual(randomFloats(4, createRng(7)));
    const ints = randomInts(1000, -3, 4, createRng(8));
    expect(Math.min(...ints)).toBe(-3);
    expect(Math.max(...ints)).toBe(3);
  });

  it('report the worst element', () => {
    expect(maxAbsDiff([1, 2, Infinity, NaN], [1, 2.5, Infinity, NaN])).toBe(0.5);
    expect(maxAbsDiff([1], [NaN])).toBeNaN();
    expect(() => expectClose([1, 2, 3], [1, 2.1, 3.5], { atol: 0.2 }, 'demo')).toThrow(
      'demo: 1 of 3 values differ beyond atol 0.2, rtol 0; worst at index 2: got 3, expected 3.5',
    );
    expectClose([1, 2.1], [1, 2], { rtol: 0.06 }, 'within rtol');
  });
});
