/**
 * Where a forward pass stops being finite. A NaN or an infinity in a checkpoint (or activations
 * that overflow) spreads through every later stage, and beam search then masks every token
 * (fairseq's NaN → −∞) and finishes nothing. This reads back, in order, the output of each stage
 * of the encoder (embedding, layers, final LayerNorm) and of a decoder pass over BOS (embedding,
 * layers, final LayerNorm, logits), names the first one that is not finite, and lists the model's
 * weights that are not. It runs only after a request failed, so the normal path pays nothing.
 */
import { BOS_ID } from '../../text/bpe.js';
import { Tensor } from '../../tensor.js';
import type { EncoderOutput } from './encoder.js';
import type { OfaModel } from './model.js';

/** Weight elements read back at once (64 Mi: 256 MB as f32 on the host). */
const READ_GROUP_ELEMENTS = 2 ** 26;

/** The non-finite values of one tensor. */
export interface NonFiniteCount {
  nan: number;
  infinite: number;
  total: number;
  /** Index of the first non-finite element. */
  first: number;
}

export interface NonFiniteDiagnosis {
  /** The first stage whose output is not finite, e.g. `encoder.layers.2`; undefined when every stage is finite. */
  stage?: string;
  counts?: NonFiniteCount;
  /** The weights holding NaN or infinities, by their place in the model (`encoder.layers.2.ffn.fc1.weight`). */
  weights: { name: string; counts: NonFiniteCount }[];
}

/** The non-finite values of `values`, or undefined when all are finite. */
export function countNonFinite(values: ArrayLike<number>): NonFiniteCount | undefined {
  let nan = 0;
  let infinite = 0;
  let first = -1;
  for (let i = 0; i < values.length; i++) {
    const x = values[i]!;
    if (Number.isFinite(x)) continue;
    if (Number.isNaN(x)) nan++;
    else infinite++;
    if (first < 0) first = i;
  }
  return first < 0 ? undefined : { nan, infinite, total: values.length, first };
}

/** Every tensor in a tree of weight records and arrays with its path; a tensor shared by several places (tied) once. */
export function namedTensors(tree: unknown, path = '', seen = new Set<unknown>()): [string, Tensor][] {
  if (tree instanceof Tensor) {
    if (seen.has(tree.storage)) return [];
    seen.add(tree.storage);
    return [[path, tree]];
  }
  if (typeof tree !== 'object' || tree === null) return [];
  const entries = Array.isArray(tree) ? tree.map((item, i) => [String(i), item] as const) : Object.entries(tree);
  return entries.flatMap(([key, value]) => namedTensors(value, path ? `${path}.${key}` : key, seen));
}

/**
 * The first non-finite stage of `encoded` (as the failed request computed it) and of a decoder
 * pass over BOS from it, and the non-finite weights of `model`.
 */
export async function diagnoseNonFinite(model: OfaModel, encoded: EncoderOutput): Promise<NonFiniteDiagnosis> {
  const weights: NonFiniteDiagnosis['weights'] = [];
  const named = namedTensors({ encoder: model.weights.encoder, decoder: model.weights.decoder });
  // Reads started together share one submission and one wait: in groups of bounded size.
  for (let first = 0; first < named.length; ) {
    let last = first;
    for (let elements = 0; last < named.length && (last === first || elements + named[last]![1].size <= READ_GROUP_ELEMENTS); last++) {
      elements += named[last]![1].size;
    }
    const group = named.slice(first, last);
    const values = await Promise.all(group.map(([, tensor]) => tensor.read()));
    group.forEach(([name], i) => {
      const counts = countNonFinite(values[i]!);
      if (counts) weights.push({ name, counts });
    });
    first = last;
  }
  const layerStages = (stream: string, states: readonly Tensor[]): [string, Tensor][] =>
    states.map((state, l) => [l === 0 ? `${stream}.embedding` : `${stream}.layers.${l - 1}`, state]);
  const rows = encoded.lastHiddenState.shape[0]!;
  const decoded = model.decodeFull(encoded, Array.from({ length: rows }, () => [BOS_ID]));
  try {
    const stages: [string, Tensor][] = [
      ...layerStages('encoder', encoded.hiddenStates),
      ['encoder.layerNorm', encoded.lastHiddenState],
      ...layerStages('decoder', decoded.hiddenStates),
      ['decoder.layerNorm', decoded.lastHiddenState],
      ['decoder.outputProjection', decoded.logits],
    ];
    for (const [stage, tensor] of stages) {
      const counts = countNonFinite(await tensor.read());
      if (counts) return { stage, counts, weights };
    }
    return { weights };
  } finally {
    decoded.dispose();
  }
}

function describeCount({ nan, infinite, total, first }: NonFiniteCount): string {
  const kinds = [nan > 0 ? `${nan} NaN` : '', infinite > 0 ? `${infinite} infinite` : ''].filter(Boolean).join(' and ');
  return `${kinds} of ${total} values, the first at element ${first}`;
}

/** One sentence for an error message. */
export function describeNonFinite({ stage, counts, weights }: NonFiniteDiagnosis): string {
  const where = stage === undefined ? 'every stage of a forward pass is finite' : `${stage} is the first stage whose output is not finite (${describeCount(counts!)})`;
  const shown = weights.slice(0, 3).map(({ name, counts: c }) => `${name} (${describeCount(c)})`);
  if (weights.length > 3) shown.push(`and ${weights.length - 3} more`);
  const what = weights.length === 0 ? 'every weight is finite' : `weights that are not finite: ${shown.join(', ')}`;
  return `${where}; ${what}`;
}
