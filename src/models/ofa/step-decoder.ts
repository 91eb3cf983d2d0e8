/**
 * The generators' view of an OFA model (src/generate/decoder.ts): a `StepDecoder` over one
 * `DecodingSession`. Each step runs the decoder through its key/value cache, takes the
 * log-softmax of the logits on the device (fp32, as fairseq does) and reads back `[B, V]`.
 */
import type { StepDecoder } from '../../generate/decoder.js';
import type { EncoderOutput } from './encoder.js';
import type { DecodingSession } from './decoder.js';
import type { OfaModel } from './model.js';

export class OfaStepDecoder implements StepDecoder {
  readonly vocabSize: number;
  readonly #model: OfaModel;
  readonly #session: DecodingSession;

  /**
   * A decoder for `beams` sequences attending to `encoderOutput` (which the caller keeps alive
   * until `dispose`). Beam search needs `beams` = its beam size from the first step on.
   */
  constructor(model: OfaModel, encoderOutput: EncoderOutput, beams: number) {
    this.#model = model;
    this.vocabSize = model.config.vocabSize;
    this.#session = model.startDecoding(encoderOutput, beams);
  }

  /** Tokens fed so far per sequence (the number of steps run). */
  get length(): number {
    return this.#session.length;
  }

  async step(tokens: Int32Array, step: number): Promise<Float32Array> {
    if (step !== this.#session.length) {
      throw new Error(
        `OFA step decoder: step ${step} was requested, but ${this.#session.length} tokens were fed so far ` +
          `(steps must run in order from 0)`,
      );
    }
    const backend = this.#model.backend;
    const logits = this.#session.step(Array.from(tokens));
    const logProbs = backend.logSoftmax(logits);
    logits.dispose();
    try {
      const values = await logProbs.read();
      if (!(values instanceof Float32Array)) {
        throw new Error(`OFA step decoder: log-probabilities read back as ${logProbs.dtype}, expected f32`);
      }
      return values;
    } finally {
      logProbs.dispose();
    }
  }

  reorder(indices: Int32Array): void {
    this.#session.reorder(Array.from(indices));
  }

  /** Frees the session's caches (not the encoder output). */
  dispose(): void {
    this.#session.dispose();
  }
}
