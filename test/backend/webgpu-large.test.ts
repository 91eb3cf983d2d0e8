/**
 * Operands beyond the storage binding limit (OFA's token table: [59457, 768] f32 is 183 MB, the
 * usual limit 128 MiB; the logits of 565 beams; an encoder's position biases for long prompts),
 * against the CPU backend: every op that splits its work (`src/backend/webgpu/ops/chunks.ts`).
 * Backends with a lowered `maxBindingBytes` force 3+ chunks on small operands (on both GEMM
 * kernels, and both attention kernels); one real-size projection runs at the device's own limit.
 * The context refuses any whole binding above the (lowered) limit, so a passing test also shows
 * that only ranges of the big operands were bound.
 */
import { describe, expect, it } from 'vitest';
import type { Activation, Backend, MatmulOptions } from '../../src/backend/backend.js';
import { CpuBackend } from '../../src/backend/cpu/cpu-backend.js';
import type { WebGpuBackend } from '../../src/backend/webgpu/index.js';
import { floatsToHalves } from '../../src/half.js';
import type { Tensor } from '../../src/tensor.js';
import { type Tolerance, expectClose } from '../helpers/compare.js';
import { createRng, randomFloats } from '../helpers/random.js';
import { gemmPaths, webgpuBackend } from '../helpers/webgpu.js';
import { evaluate } from '../helpers/evaluate.js';

const cpu = new CpuBackend();
const gpu = await webgpuBackend();
/** Backends on the same device whose binding limit is `limit` bytes; both GEMM kernels. */
const limited = (limit: number): Promise<[string, WebGpuBackend][]> => gemmPaths({ maxBindingBytes: limit });

const TOLERANCE = { atol: 1e-4, rtol: 1e-4 };

interface MatmulCase {
  batch?: number[];
  m: number;
  k: number;
  n: number;
  f16B?: boolean;
  bias?: 'f32' | 'f16';
  activation?: Activation;
  residual?: boolean;
}

/** b [N, K] of `c`, at a limit that leaves ⌈3.5⌉ = 4+ chunks; compared with the CPU on both kernels. */
async function expectSplitMatmulMatches(c: MatmulCase): Promise<void> {
  const label = JSON.stringify(c);
  const rng = createRng([...label].reduce((h, ch) => (h * 31 + ch.charCodeAt(0)) >>> 0, 11));
  const batch = c.batch ?? [];
  const batchSize = batch.reduce((p, d) => p * d, 1);
  const a = randomFloats(batchSize * c.m * c.k, rng);
  const b = randomFloats(c.n * c.k, rng);
  const bias = c.bias && randomFloats(c.n, rng);
  const residual = c.residual ? randomFloats(batchSize * c.m * c.n, rng) : undefined;
  const bBytes = c.n * c.k * (c.f16B ? 2 : 4);
  const limit = Math.floor(bBytes / 3.5);
  const op = (be: Backend): Tensor => {
    const options: MatmulOptions = { transposeB: true, activation: c.activation ?? 'none' };
    if (bias) options.bias = c.bias === 'f16' ? be.upload(floatsToHalves(bias), [c.n], 'f16') : be.upload(bias, [c.n]);
    if (residual) options.residual = be.upload(residual, [...batch, c.m, c.n]);
    const bTensor = c.f16B ? be.upload(floatsToHalves(b), [c.n, c.k], 'f16') : be.upload(b, [c.n, c.k]);
    return be.matmul(be.upload(a, [...batch, c.m, c.k]), bTensor, options);
  };
  const expected = await evaluate(cpu, op);
  for (const [name, backend] of await limited(limit)) {
    const actual = await evaluate(backend, op);
    expect(actual.length).toBe(batchSize * c.m * c.n);
    expectClose(actual, expected, TOLERANCE, `matmul ${label} on the ${name} at a ${limit}-byte limit`);
  }
}

describe('matmul with b [N, K] beyond the binding limit', () => {
  it('f32 b, M = 1, bias, GELU and residual, odd N', () =>
    expectSplitMatmulMatches({ m: 1, k: 96, n: 1001, bias: 'f32', activation: 'gelu', residual: true }));
  it('f32 b, M = 5 with a batch dim, bias, ReLU and residual', () =>
    expectSplitMatmulMatches({ batch: [2], m: 5, k: 96, n: 1001, bias: 'f32', activation: 'relu', residual: true }));
  it('f32 b with odd K, M = 5, f16 bias', () => expectSplitMatmulMatches({ m: 5, k: 97, n: 999, bias: 'f16' }));
  it('f16 b with odd K (128-row granule), M = 5, f16 bias, GELU and residual', () =>
    expectSplitMatmulMatches({ m: 5, k: 97, n: 1001, f16B: true, bias: 'f16', activation: 'gelu', residual: true }));
  it('f16 b, M = 1, no epilogue', () => expectSplitMatmulMatches({ m: 1, k: 128, n: 777, f16B: true }));

  it('refuses b [K, N] beyond the limit with a clear error', async () => {
    const [[, backend]] = (await limited(16 * 1024)) as [[string, WebGpuBackend]];
    const a = backend.upload(new Float32Array(64), [1, 64]);
    const b = backend.upload(new Float32Array(64 * 1000), [64, 1000]);
    expect(() => backend.matmul(a, b)).toThrow(/exceeds the storage binding limit of 16384 bytes .*transposeB/);
    a.dispose();
    b.dispose();
    await backend.sync();
  });
});

describe('gather from a table beyond the binding limit', () => {
  const rows = 3000;
  /** Every row on either side of each multiple of 64 (chunks start there), ids outside the table, repeats. */
  const ids = Int32Array.from([
    ...Array.from({ length: Math.ceil(rows / 64) }, (_, i) => [64 * i - 1, 64 * i]).flat(),
    rows - 1,
    rows,
    rows + 7,
    -3,
    17,
    17,
    1234,
    5,
  ]);

  for (const [dtype, cols] of [['f32', 40], ['f16', 41]] as const) {
    it(`${dtype} table [${rows}, ${cols}], ids in every chunk and at chunk edges`, async () => {
      const rng = createRng(cols);
      const table = randomFloats(rows * cols, rng);
      const limit = Math.floor((rows * cols * (dtype === 'f16' ? 2 : 4)) / 3.5);
      const gather = (be: Backend, which: Int32Array): Tensor => {
        const t = dtype === 'f16' ? be.upload(floatsToHalves(table), [rows, cols], 'f16') : be.upload(table, [rows, cols]);
        return be.gather(t, be.upload(which, [2, which.length / 2]));
      };
      const op = (be: Backend): Tensor => gather(be, ids);
      // The CPU refuses ids outside the table; the WebGPU kernel reads them as zero rows.
      const outside = (id: number): boolean => id < 0 || id >= rows;
      const expected = await evaluate(cpu, (be) => gather(be, ids.map((id) => (outside(id) ? 0 : id))));
      ids.forEach((id, i) => {
        if (outside(id)) expected.fill(0, i * cols, (i + 1) * cols);
      });
      const [[, backend]] = (await limited(limit)) as [[string, WebGpuBackend]];
      // The first result leaves data in the pooled output buffer the second reuses: an output
      // element no chunk wrote would show.
      await evaluate(backend, op);
      expectClose(await evaluate(backend, op), expected, { atol: 0 }, `gather ${dtype} at a ${limit}-byte limit`);
    });
  }
});

describe('OFA-base output projection at the device limit', () => {
  it('5×768 · [59457, 768]ᵀ f32 (183 MB) with bias and residual, checked on columns around the split', async () => {
    const [m, k, n] = [5, 768, 59457];
    const rng = createRng(59457);
    const a = randomFloats(m * k, rng);
    const b = randomFloats(n * k, rng);
    const bias = randomFloats(n, rng);
    const residual = randomFloats(m * n, rng);
    expect(n * k * 4).toBeGreaterThan(Math.min(gpu.device.limits.maxStorageBufferBindingSize, 2 ** 27));
    const actual = await evaluate(gpu, (be) =>
      be.matmul(be.upload(a, [m, k]), be.upload(b, [n, k]), { transposeB: true, bias: be.upload(bias, [n]), residual: be.upload(residual, [m, n]) }),
    );
    expect(actual.length).toBe(m * n);
    // At 128 MiB the chunks are 43648 rows (682 granules of 64 rows × 3072 bytes).
    const columns = [0, 1, 777, 43647, 43648, 43649, 50000, n - 2, n - 1];
    const rowsOfB = new Float32Array(columns.length * k);
    columns.forEach((j, i) => rowsOfB.set(b.subarray(j * k, (j + 1) * k), i * k));
    const pick = (x: ArrayLike<number>): Float32Array => Float32Array.from({ length: m * columns.length }, (_, i) => x[Math.floor(i / columns.length) * n + columns[i % columns.length]!]!);
    const expected = await evaluate(cpu, (be) =>
      be.matmul(be.upload(a, [m, k]), be.upload(rowsOfB, [columns.length, k]), {
        transposeB: true,
        bias: be.upload(Float32Array.from(columns, (j) => bias[j]!), [columns.length]),
        residual: be.upload(pick(residual), [m, columns.length]),
      }),
    );
    expectClose(pick(actual), expected, TOLERANCE, 'OFA-base projection columns');
  });
});

/** The limit of the op tests below: 4096 f32, so that tensors of a few dozen KB take 3+ chunks. */
const LIMIT = 16 * 1024;
const lowered = await limited(LIMIT);

/** `op` on the CPU and on both lowered backends (register-blocked GEMM + GEMM attention, tiled GEMM + fused attention). */
async function expectChunkedMatches(label: string, op: (be: Backend) => Tensor, tolerance: Tolerance = TOLERANCE): Promise<void> {
  const expected = await evaluate(cpu, op);
  for (const [name, backend] of lowered) {
    expectClose(await evaluate(backend, op), expected, tolerance, `${label} on the ${name} at a ${LIMIT}-byte limit`);
  }
}

const rng = createRng(2024);
const floats = (shape: number[], lo = -1, hi = 1): [Float32Array, number[]] => [randomFloats(shape.reduce((p, d) => p * d, 1), rng, lo, hi), shape];
const up = (be: Backend, [data, shape]: [Float32Array, number[]]): Tensor => be.upload(data, shape);

describe('row ops beyond the binding limit', () => {
  const x = floats([37, 301], -4, 4);
  const weight = floats([301]);
  const bias = floats([301]);
  it('softmax, log-softmax and layer norm of [37, 301] in chunks of rows', async () => {
    await expectChunkedMatches('softmax', (be) => be.softmax(up(be, x)));
    await expectChunkedMatches('logSoftmax', (be) => be.logSoftmax(up(be, x)));
    await expectChunkedMatches('layerNorm', (be) => be.layerNorm(up(be, x), up(be, weight), up(be, bias), 1e-5));
  });

  it('add and mul with a broadcast or a whole operand, scale and GELU in chunks', async () => {
    const y = floats([37, 301]);
    await expectChunkedMatches('add (broadcast)', (be) => be.add(up(be, x), up(be, bias)));
    await expectChunkedMatches('mul (same shape)', (be) => be.mul(up(be, x), up(be, y)));
    await expectChunkedMatches('scale', (be) => be.scale(up(be, x), 0.37));
    await expectChunkedMatches('gelu', (be) => be.gelu(up(be, x)));
  });

  it('top-k and argmax over [11, 1000], where per sample and shared', async () => {
    const rows = floats([11, 1000]);
    await expectChunkedMatches('topk values', (be) => be.topk(up(be, rows), 5).values);
    await expectChunkedMatches('topk indices', (be) => be.topk(up(be, rows), 5).indices, { atol: 0 });
    await expectChunkedMatches('argmax', (be) => be.argmax(up(be, rows)), { atol: 0 });
    const [a, b] = [floats([40, 37, 11]), floats([40, 37, 11])];
    const condition = Int32Array.from({ length: 40 }, (_, i) => (i * 7) % 3 === 0 ? 1 : 0);
    await expectChunkedMatches('where', (be) => be.where(be.upload(condition, [40], 'i32'), up(be, a), up(be, b)), { atol: 0 });
    await expectChunkedMatches('where (shared)', (be) => be.where(be.upload(Int32Array.of(0), [1], 'i32'), up(be, a), up(be, b)), { atol: 0 });
  });
});

describe('exit decisions beyond the binding limit', () => {
  it('decideExit and cosineSimilarity over [12, 1000] states in chunks of samples', async () => {
    const [previous, computed] = [floats([12, 1000]), floats([12, 1000])];
    // Half the samples close to their previous state, so that some exceed the threshold.
    previous[0].forEach((p, i) => (i % 2000 < 1000 ? (computed[0][i] = p + 0.1 * computed[0][i]!) : 0));
    const doneBefore = Int32Array.from({ length: 12 }, (_, i) => (i % 5 === 0 ? 1 : 0));
    const decide = (be: Backend) => be.decideExit(up(be, previous), up(be, computed), 0.9, be.upload(doneBefore, [12], 'i32'));
    await expectChunkedMatches('decideExit state', (be) => decide(be).state, { atol: 0 });
    await expectChunkedMatches('decideExit similarity', (be) => decide(be).similarity, { atol: 1e-6 });
    await expectChunkedMatches('decideExit done', (be) => decide(be).done, { atol: 0 });
    await expectChunkedMatches('decideExit allDone', (be) => decide(be).allDone, { atol: 0 });
    await expectChunkedMatches('cosineSimilarity', (be) => be.cosineSimilarity(up(be, computed), up(be, previous)), { atol: 1e-6 });
  });
});

describe('data movement beyond the binding limit', () => {
  it('gather with both the table and the output split', async () => {
    const table = floats([3000, 40]);
    const ids = Int32Array.from({ length: 1800 }, (_, i) => (i * 7919) % 3000);
    await expectChunkedMatches('gather', (be) => be.gather(up(be, table), be.upload(ids, [2, 900], 'i32')), { atol: 0 });
  });

  it('concat along the last axis and a slice whose one segment exceeds a binding', async () => {
    const [left, right] = [floats([37, 150]), floats([37, 151])];
    await expectChunkedMatches('concat', (be) => be.concat([up(be, left), up(be, right)], 1), { atol: 0 });
    const x = floats([1, 40, 301]);
    await expectChunkedMatches('slice (parts of a segment)', (be) => be.slice(up(be, x), 1, 3, 39), { atol: 0 });
    await expectChunkedMatches('slice (odd offsets)', (be) => be.slice(up(be, x), 2, 1, 300), { atol: 0 });
  });

  it('relativeBias of [4, 45, 45] heads: odd blocks, staged through copies (no aligned chunk of heads fits)', async () => {
    const [table, base] = [floats([300, 4]), floats([4, 45, 45])];
    const index = Int32Array.from({ length: 45 * 45 }, (_, i) => (i * 7919) % 300);
    await expectChunkedMatches('relativeBias', (be) => be.relativeBias(up(be, table), be.upload(index, [45, 45], 'i32'), up(be, base)));
  });

  it('transpose with the first axis moved, kept, and behind a size-1 axis', async () => {
    const x = floats([61, 37, 5]);
    await expectChunkedMatches('transpose [2, 0, 1]', (be) => be.transpose(up(be, x), [2, 0, 1]), { atol: 0 });
    await expectChunkedMatches('transpose [0, 2, 1]', (be) => be.transpose(up(be, x), [0, 2, 1]), { atol: 0 });
    await expectChunkedMatches('transpose [0, 3, 1, 2] of [1, 61, 37, 5]', (be) => be.transpose(up(be, x).reshape([1, 61, 37, 5]), [0, 3, 1, 2]), { atol: 0 });
  });
});

describe('vision ops beyond the binding limit', () => {
  it('conv2d (bias, residual, ReLU) and max pooling of a batch in chunks of images', async () => {
    const [x, w, bias, residual] = [floats([6, 4, 15, 17]), floats([8, 4, 3, 3]), floats([8]), floats([6, 8, 15, 17])];
    await expectChunkedMatches('conv2d', (be) =>
      be.conv2d(up(be, x), up(be, w), { padding: 1, bias: up(be, bias), residual: up(be, residual), activation: 'relu' }),
    );
    await expectChunkedMatches('maxPool2d', (be) => be.maxPool2d(up(be, residual), { kernel: 3, stride: 2, padding: 1 }), { atol: 0 });
  });
});

describe('matmul with outputs beyond the binding limit', () => {
  it('shared b [N, K]: output rows and b columns both split, bias, GELU and residual', async () => {
    const [a, b, bias, residual] = [floats([3, 13, 64]), floats([300, 64]), floats([300]), floats([3, 13, 300])];
    await expectChunkedMatches('matmul', (be) =>
      be.matmul(up(be, a), up(be, b), { transposeB: true, bias: up(be, bias), activation: 'gelu', residual: up(be, residual) }),
    );
  });

  it('shared b [K, N]: output rows split', async () => {
    const [a, b] = [floats([3, 40, 64]), floats([64, 50])];
    await expectChunkedMatches('matmul', (be) => be.matmul(up(be, a), up(be, b)));
  });

  it('batched b: chunks of batch entries, staged through copies where their ranges cannot start aligned', async () => {
    const [a, b] = [floats([6, 40, 16]), floats([6, 16, 30])];
    await expectChunkedMatches('matmul (aligned entries)', (be) => be.matmul(up(be, a), up(be, b)));
    // [35, 33] f32 entries (4620 bytes): 4 of them, the least that start aligned, exceed the limit.
    const [queries, keys, residual] = [floats([4, 35, 16]), floats([4, 33, 16]), floats([4, 35, 33])];
    await expectChunkedMatches('matmul (unaligned entries)', (be) =>
      be.matmul(up(be, queries), up(be, keys), { transposeB: true, residual: up(be, residual) }),
    );
  });
});

describe('attention beyond the binding limit', () => {
  const options = (be: Backend, heads: number, bias?: [Float32Array, number[]], mask?: Int32Array, kb = 1, tk = 0) => ({
    heads,
    scale: 0.25,
    bias: bias && up(be, bias),
    keyPaddingMask: mask && be.upload(mask, [kb, tk], 'i32'),
  });

  it('many samples with their own keys (a decoding step of 12 beams and 8 queries each), causal and masked', async () => {
    const [beams, tk, width] = [12, 20, 32];
    const [k, v] = [floats([beams, tk, width]), floats([beams, tk, width])];
    const mask = Int32Array.from({ length: beams * tk }, (_, i) => (i % tk === 19 && i % 3 === 0 ? 1 : 0));
    for (const tq of [1, 8]) {
      const q = floats([beams, tq, width]);
      await expectChunkedMatches(`attention tq ${tq}`, (be) =>
        be.attention(up(be, q), up(be, k), up(be, v), { ...options(be, 2, undefined, mask, beams, tk), causal: true }),
      );
    }
  });

  it('a bias [H, T, T] beyond the limit (groups of heads), shared and per sample, with shared keys', async () => {
    const [t, width, heads] = [40, 32, 4];
    const [q, k, v] = [floats([1, t, width]), floats([1, t, width]), floats([1, t, width])];
    const mask = Int32Array.from({ length: t }, (_, i) => (i === t - 1 ? 1 : 0));
    const [shared, perSample] = [floats([heads, t, t]), floats([2, heads, t, t])];
    await expectChunkedMatches('attention (shared bias)', (be) => be.attention(up(be, q), up(be, k), up(be, v), options(be, heads, shared, mask, 1, t)));
    const twoQueries = floats([2, t, width]);
    await expectChunkedMatches('attention (bias per sample)', (be) =>
      be.attention(up(be, twoQueries), up(be, k), up(be, v), options(be, heads, perSample, mask, 1, t)),
    );
  });
});

describe('the demo model with a 3 MiB binding limit', () => {
  it('captions and entails as at the device limit (logits, token table, position biases and attention split)', async () => {
    const { OfaPipeline } = await import('../../src/pipeline.js');
    const demo = new URL('../../weights/ofa-tiny-demo', import.meta.url).pathname;
    const image = new URL('../fixtures/preprocess/photo-97x61.png', import.meta.url).pathname;
    // 45 words of random letters, ~11 tokens each: the encoder's [4, N, N] position biases exceed 3 MiB.
    const letters = createRng(80);
    const hypothesis = Array.from({ length: 45 }, () => Array.from({ length: 14 }, () => 'qxzjkvwbp'[Math.floor(letters() * 9)]).join('')).join(' ');
    const run = async (backend: WebGpuBackend) => {
      const ofa = await OfaPipeline.load(demo, { backend, imageSize: 32 });
      try {
        // 14 beams: the logits [14, 59457] f32 exceed 3 MiB.
        const caption = await ofa.caption(image, { beamSize: 14 });
        const entailment = await ofa.entail(image, hypothesis);
        return { caption, entailment };
      } finally {
        ofa.dispose();
      }
    };
    const [[, small]] = (await limited(3 * 1024 * 1024)) as [[string, WebGpuBackend]];
    const [expected, actual] = [await run(gpu), await run(small)];
    expect(actual.entailment.promptTokens.length).toBeGreaterThan(440);
    expect(actual.caption.tokens).toEqual(expected.caption.tokens);
    expect(actual.caption.score).toBeCloseTo(expected.caption.score, 4);
    expect(actual.entailment.label).toBe(expected.entailment.label);
    expectClose(Object.values(actual.entailment.logProbs), Object.values(expected.entailment.logProbs), { atol: 1e-4 }, 'entailment log-probabilities');
  });
});
