/**
 * `mue verify DIR`: runs the engine on a golden folder (weights.safetensors, manifest.json,
 * outputs.safetensors — see weights/ofa-tiny-random/README.md) and compares every golden tensor.
 *
 * Hidden states, position embeddings and logits must match within an absolute tolerance (1e-4 by
 * default: the reference ran in float32 on the same f16-rounded weights); greedy decoding must
 * pick the same ids. Greedy decoding follows the manifest's `greedy_rule`: start from [BOS]; the
 * next id is the argmax of the last position's logits over ids ≥ 4 (no special tokens) that are
 * not already in the sequence; each step runs through the key/value cache.
 */
import type { Backend } from '../../backend/backend.js';
import { SafetensorsFile, writeSafetensors } from '../../io/safetensors.js';
import { type Shape, type Tensor, sameShape } from '../../tensor.js';
import { OfaModel } from './model.js';

export interface VerifyRow {
  name: string;
  shape: Shape;
  /** Largest |engine − golden|; NaN when any value is NaN on one side only, Infinity on a shape mismatch. */
  maxAbsDiff: number;
  ok: boolean;
}

export interface VerifyResult {
  rows: VerifyRow[];
  greedy: { expected: number[]; actual: number[]; ok: boolean };
  tolerance: number;
  /** Every row within tolerance and the greedy ids equal. */
  ok: boolean;
}

export interface VerifyOptions {
  /** Writes the engine's tensors under the golden names, plus `greedy.tokens` (F32 ids), here. */
  out?: string;
  tolerance?: number;
}

const DEFAULT_TOLERANCE = 1e-4;
/** Ids below this are `<s>`, `<pad>`, `</s>`, `<unk>` (§2), which the greedy rule skips. */
const FIRST_ORDINARY_ID = 4;

interface HostTensor {
  shape: Shape;
  data: Float32Array;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] === b[i] || (Number.isNaN(a[i]!) && Number.isNaN(b[i]!))) continue;
    const diff = Math.abs(a[i]! - b[i]!);
    if (Number.isNaN(diff)) return NaN;
    max = Math.max(max, diff);
  }
  return max;
}

/** Token ids listed in the manifest (its writer stored some as numeric strings). */
function manifestIds(value: unknown, where: string): number[] {
  if (!Array.isArray(value)) throw new Error(`${where} must be a list of token ids, found ${JSON.stringify(value)}`);
  return value.map((item, i) => {
    const id = typeof item === 'string' && /^\d+$/.test(item) ? Number(item) : item;
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) {
      throw new Error(`${where}[${i}] = ${JSON.stringify(item)} is not a token id`);
    }
    return id;
  });
}

function field(value: unknown, key: string): unknown {
  return typeof value === 'object' && value !== null ? Reflect.get(value, key) : undefined;
}

/**
 * Token ids stored as floats in the golden file; when the manifest lists them too, both must
 * agree (a mismatch means the folder mixes files of different runs).
 */
async function readIds(
  golden: SafetensorsFile,
  name: string,
  manifest: unknown,
  manifestPath: string,
): Promise<number[]> {
  const values = [...(await golden.readFloat32(name))];
  const bad = values.findIndex((v) => !Number.isInteger(v) || v < 0);
  if (bad >= 0) throw new Error(`${golden.label}: '${name}'[${bad}] = ${values[bad]} is not a token id`);
  const key = name.replace(/^inputs\./, '');
  const listed = field(field(manifest, 'inputs'), key);
  if (listed !== undefined) {
    const ids = manifestIds(listed, `${manifestPath}: inputs.${key}`);
    if (ids.length !== values.length || ids.some((id, i) => id !== values[i])) {
      throw new Error(`${manifestPath}: inputs.${key} [${ids}] differ from ${golden.label} '${name}' [${values}]`);
    }
  }
  return values;
}

/** The manifest's greedy rule: argmax over ids ≥ 4 not yet in the sequence (the first on ties). */
function greedyNext(logits: Float32Array, sequence: readonly number[]): number {
  const used = new Set(sequence);
  let best = -1;
  for (let id = FIRST_ORDINARY_ID; id < logits.length; id++) {
    if (!used.has(id) && (best < 0 || logits[id]! > logits[best]!)) best = id;
  }
  if (best < 0) throw new Error('greedy rule: every ordinary id is already in the sequence');
  return best;
}

async function toHost(tensor: Tensor): Promise<HostTensor> {
  return { shape: tensor.shape, data: (await tensor.read()) as Float32Array };
}

/**
 * Runs the engine on the golden inputs: the encoder, the teacher-forced decoder and `steps`
 * greedy steps through the key/value cache. Returns its tensors under the golden names and the
 * greedy ids (starting with BOS).
 */
async function runEngine(
  model: OfaModel,
  pixels: Tensor,
  inputIds: readonly number[],
  decoderIds: readonly number[],
  steps: number,
): Promise<{ tensors: Map<string, HostTensor>; tokens: number[] }> {
  const tensors = new Map<string, HostTensor>();
  const encoded = model.encode(pixels, inputIds);
  for (const [l, state] of encoded.hiddenStates.entries()) {
    tensors.set(`encoder.hidden_states.${l}`, await toHost(state));
  }
  tensors.set('encoder.last_hidden_state', await toHost(encoded.lastHiddenState));
  tensors.set('encoder.position_embedding', await toHost(encoded.positionEmbedding));

  const decoded = model.decodeFull(encoded, [decoderIds]);
  for (const [l, state] of decoded.hiddenStates.entries()) {
    tensors.set(`decoder.hidden_states.${l}`, await toHost(state));
  }
  tensors.set('decoder.logits', await toHost(decoded.logits));
  decoded.dispose();

  const session = model.startDecoding(encoded, 1);
  const tokens = [model.config.bosTokenId];
  const vocab = model.config.vocabSize;
  const stepLogits = new Float32Array(steps * vocab);
  for (let step = 0; step < steps; step++) {
    const logits = session.step([tokens[step]!]);
    const values = (await logits.read()) as Float32Array;
    logits.dispose();
    stepLogits.set(values, step * vocab);
    tokens.push(greedyNext(values, tokens));
  }
  tensors.set('greedy.step_logits', { shape: [steps, vocab], data: stepLogits });
  session.dispose();
  encoded.dispose();
  return { tensors, tokens };
}

/** Runs the engine on the golden folder `dir` and compares every golden tensor and the greedy ids. */
export async function verifyGolden(backend: Backend, dir: string, options: VerifyOptions = {}): Promise<VerifyResult> {
  const { join } = await import('node:path');
  const { readFile } = await import('node:fs/promises');
  const tolerance = options.tolerance ?? DEFAULT_TOLERANCE;
  const manifestPath = join(dir, 'manifest.json');
  const manifest: unknown = JSON.parse(await readFile(manifestPath, 'utf8'));
  const expectedTokens = manifestIds(field(manifest, 'greedy_tokens'), `${manifestPath}: greedy_tokens`);

  const model = await OfaModel.load(backend, { weights: join(dir, 'weights.safetensors'), manifest: manifestPath });
  const golden = await SafetensorsFile.open(join(dir, 'outputs.safetensors'));
  try {
    const pixelsInfo = golden.info('inputs.patch_images');
    const pixels = backend.upload(await golden.readFloat32(pixelsInfo.name), pixelsInfo.shape, 'f32');
    const inputIds = await readIds(golden, 'inputs.input_ids', manifest, manifestPath);
    const decoderIds = await readIds(golden, 'inputs.decoder_input_ids', manifest, manifestPath);
    const steps = Math.max(expectedTokens.length - 1, 0);
    const engine = await runEngine(model, pixels, inputIds, decoderIds, steps);
    pixels.dispose();

    const rows: VerifyRow[] = [];
    for (const [name, info] of golden.tensors) {
      if (name.startsWith('inputs.')) continue;
      const ours = engine.tensors.get(name);
      if (!ours) throw new Error(`${golden.label}: golden tensor '${name}' is not one the engine computes`);
      const sameShapes = sameShape(ours.shape, info.shape);
      const maxDiff = sameShapes ? maxAbsDiff(ours.data, await golden.readFloat32(name)) : Infinity;
      rows.push({ name, shape: info.shape, maxAbsDiff: maxDiff, ok: maxDiff <= tolerance });
    }
    const actualTokens = engine.tokens;
    const greedyOk =
      expectedTokens.length === actualTokens.length && expectedTokens.every((id, i) => id === actualTokens[i]);

    if (options.out !== undefined) {
      const entries = [...engine.tensors].map(([name, { shape, data }]) => {
        return { name, dtype: 'F32' as const, shape, data };
      });
      const tokens = Float32Array.from(actualTokens);
      entries.push({ name: 'greedy.tokens', dtype: 'F32', shape: [tokens.length], data: tokens });
      await writeSafetensors(options.out, entries);
    }
    return {
      rows,
      greedy: { expected: expectedTokens, actual: actualTokens, ok: greedyOk },
      tolerance,
      ok: greedyOk && rows.every((row) => row.ok),
    };
  } finally {
    await golden.close();
    model.dispose();
  }
}
