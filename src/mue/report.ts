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
 * Reads a tracker's decisions (one read-back per tensor, after the forward pass): a sample ran
 * layer i when it had not stopped before it.
 */
export async function readStreamReport(stream: string, tracker: ExitTracker, layers: number, tokens: number): Promise<StreamReport> {
  const similarities: number[][] = [];
  let layersRun: number[] | undefined;
  let doneBefore: ArrayLike<number> | undefined;
  for (const decision of tracker.decisions) {
    const done = await decision.done.read();
    layersRun ??= Array.from(done, () => 0);
    if (!decision.skippedOnHost) {
      layersRun.forEach((_, b) => {
        if (!doneBefore || doneBefore[b % doneBefore.length] === 0) layersRun![b]!++;
      });
      similarities.push(Array.from(await decision.similarity.read()));
    }
    doneBefore = done;
  }
  return { stream, layers, layersRun: layersRun ?? [], tokens, similarities };
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
