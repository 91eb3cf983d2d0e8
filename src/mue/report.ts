/**
 * The exit report of one call: how many layers each stream (and each decoded token) ran, the
 * similarities behind the decisions, and the share of layer computation saved — the paper's
 * "expected time reduction" — beside the measured wall time.
 */
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
 * Reads a tracker's decisions after the forward pass: every layer's flags and similarities are
 * joined on the device and read back in two transfers (a read-back per layer would cost more than
 * the checks themselves). A sample ran layer i when it had not stopped before it.
 */
export async function readStreamReport(stream: string, tracker: ExitTracker, layers: number, tokens: number): Promise<StreamReport> {
  const decisions = tracker.decisions;
  if (decisions.length === 0) return { stream, layers, layersRun: [], tokens, similarities: [] };
  const backend = tracker.backend;
  const ran = decisions.filter((d) => !d.skippedOnHost);
  const joinedFlags = backend.concat(decisions.map((d) => d.done), 0);
  const joinedSimilarities = backend.concat(ran.map((d) => d.similarity), 0);
  let flags: ArrayLike<number>;
  let similarityValues: ArrayLike<number>;
  try {
    [flags, similarityValues] = await Promise.all([joinedFlags.read(), joinedSimilarities.read()]);
  } finally {
    joinedFlags.dispose();
    joinedSimilarities.dispose();
  }
  const samples = decisions[0]!.done.size;
  const layersRun = Array.from({ length: samples }, () => 0);
  const similarities: number[][] = [];
  decisions.forEach((decision, i) => {
    if (decision.skippedOnHost) return;
    for (let b = 0; b < samples; b++) {
      if (i === 0 || flags[(i - 1) * samples + b] === 0) layersRun[b]!++;
    }
    const row = similarities.length;
    similarities.push(Array.from({ length: samples }, (_, b) => similarityValues[row * samples + b]!));
  });
  return { stream, layers, layersRun, tokens, similarities };
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
