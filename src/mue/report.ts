/**
 * The exit report of one call: how many layers each stream (and each decoded token) ran, the
 * similarities behind the decisions, and the share of layer computation saved — the paper's
 * "expected time reduction" — beside the measured wall time.
 */
import type { Tensor } from '../tensor.js';
import type { ExitTracker } from './exit.js';

export interface StreamReport {
  /** `image`, `text`, `joint` (a joint encoder) or `token 3` (the decoder's 4th step). */
  stream: string;
  /** Layers the stream has. */
  layers: number;
  /** Layers run by each sample (beam) of the stream. */
  layersRun: number[];
  /** Tokens per sample the stream's layers process (weights its share of the compute). */
  tokens: number;
  /** Per layer run, each sample's cos(h_i, h_{i−1}) (the trace). */
  similarities: number[][];
}

export interface ExitReport {
  encoder: StreamReport[];
  decoder: StreamReport[];
  /** Layer computation run over the computation of running every layer, token-weighted. */
  layersFraction: number;
  /** 1 − layersFraction: the paper's expected time reduction. */
  computeSaved: number;
  wallMs: number;
}

/**
 * Reads a tracker's decisions after the forward pass: every layer's flags and similarities, read
 * together (on WebGPU one submission of copies and no kernel; joining them on the device first
 * cost more; decisions taken on the host are values already). A sample ran layer i when it had
 * not stopped before it.
 */
export async function readStreamReport(stream: string, tracker: ExitTracker, layers: number, tokens: number): Promise<StreamReport> {
  const decisions = tracker.decisions;
  if (decisions.length === 0) return { stream, layers, layersRun: [], tokens, similarities: [] };
  const read = async (t: Tensor | Float32Array | Int32Array): Promise<number[]> => Array.from(ArrayBuffer.isView(t) ? t : await t.read());
  const [flags, similarities] = await Promise.all([
    Promise.all(decisions.map((d) => read(d.done))),
    Promise.all(decisions.map((d) => read(d.similarity))),
  ]);
  const samples = flags[0]!.length;
  const layersRun = Array.from({ length: samples }, () => 0);
  flags.forEach((_, i) => {
    for (let b = 0; b < samples; b++) {
      if (i === 0 || flags[i - 1]![b] === 0) layersRun[b]!++;
    }
  });
  return { stream, layers, layersRun, tokens, similarities };
}

/**
 * One sample's part of a batch's report: the entries of samples `rows` (of a sample's beams, say),
 * weighted by `tokens` (default: the report's), and the similarities of the layers they ran (the
 * batch may have run more for other samples). A report of one decision for all samples (batch
 * scope) has one entry, which every part keeps.
 */
export function reportOfRows(report: StreamReport, rows: readonly number[], tokens = report.tokens): StreamReport {
  const pick = (values: readonly number[]): number[] => (values.length === 1 ? [...values] : rows.map((r) => values[r]!));
  const layersRun = pick(report.layersRun);
  return {
    stream: report.stream,
    layers: report.layers,
    layersRun,
    tokens,
    similarities: report.similarities.slice(0, Math.max(0, ...layersRun)).map(pick),
  };
}

/** Combines stream reports: compute is token-weighted layers run over token-weighted layers. */
export function exitReport(encoder: StreamReport[], decoder: StreamReport[], wallMs: number): ExitReport {
  let run = 0;
  let full = 0;
  for (const s of [...encoder, ...decoder]) {
    for (const layersRun of s.layersRun) {
      run += layersRun * s.tokens;
      full += s.layers * s.tokens;
    }
  }
  const layersFraction = full === 0 ? 1 : run / full;
  return { encoder, decoder, layersFraction, computeSaved: 1 - layersFraction, wallMs };
}
