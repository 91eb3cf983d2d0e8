/** The requests the Deno test makes in both runtimes, and what of their results it compares. */
import type { CaptionResult, EntailmentResult, OfaPipeline } from '../../src/pipeline.js';

export const DENO_REQUESTS = {
  image: 'data/shapes-eval/0003.png',
  hypothesis: 'there is a red circle',
  // Thresholds at which the random-weight demo model stops streams and tokens early.
  exits: { image: 0.85, text: 0.85, decoder: 0.86 },
  beamSize: 2,
};

export interface RequestSummary {
  backend: string;
  adapter: string;
  caption: { tokens: number[]; layersRun: number[][]; computeSaved: number; totalMs: number; msPerToken: number };
  entailment: { label: string; probabilities: Record<string, number>; layersRun: number[][]; totalMs: number };
}

const layersRun = (result: CaptionResult | EntailmentResult): number[][] =>
  [...(result.exitReport?.encoder ?? []), ...(result.exitReport?.decoder ?? [])].map((stream) => stream.layersRun);

export function summarize(ofa: OfaPipeline, caption: CaptionResult, entailment: EntailmentResult): RequestSummary {
  const capabilities = (ofa.backend as { capabilities?: { adapterDescription: string } }).capabilities;
  return {
    backend: ofa.backend.name,
    adapter: capabilities?.adapterDescription ?? 'cpu',
    caption: {
      tokens: caption.tokens,
      layersRun: layersRun(caption),
      computeSaved: caption.exitReport?.computeSaved ?? 0,
      totalMs: caption.timing.totalMs,
      msPerToken: caption.timing.decoderMsPerToken,
    },
    entailment: { label: entailment.label, probabilities: entailment.probabilities, layersRun: layersRun(entailment), totalMs: entailment.timing.totalMs },
  };
}
